/* sk_bulk.c — one-way bulk transfer over one stream with libsockit at both
 * ends, to put beside iperf3 (which also measures one direction, its own
 * sender into its own receiver). Benchmark-only; uses the public API alone.
 *
 *   sk_bulk recv ADDR            a sink: raw framing, every chunk dropped in
 *                                on_message; prints "sk_bulk listening on X"
 *   sk_bulk send ADDR [-d SEC] [--warmup SEC] [--chunk BYTES]
 *                                keeps the connection's output queue above
 *                                its high-water mark with sk_conn_send
 *                                (copied, as an application would) and
 *                                refills on on_drain; prints one JSON line
 *                                with the bytes the kernel accepted while
 *                                measuring: {"bytes":..,"seconds":..,"gb_per_s":..}
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sockit.h"

#define HIGH_WATER (4u * 1024u * 1024u)

static uint8_t *chunk;
static size_t chunk_len = 128u * 1024u; /* iperf3's default write size */
static uint64_t b0, t0ns, b1, t1ns;
static int failed;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sink_message(sk_conn *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
}

static void ready(const char *bound, void *ud)
{
    (void)ud;
    printf("sk_bulk listening on %s\n", bound);
    fflush(stdout);
}

static void fill(sk_conn *c)
{
    while (sk_conn_queued(c) <= HIGH_WATER)
        if (sk_conn_send(c, chunk, chunk_len) < 0)
            return;
}

static void on_open(sk_conn *c) { fill(c); }
static void on_drain(sk_conn *c) { fill(c); }
static void on_message(sk_conn *c, const uint8_t *d, size_t n)
{
    (void)c;
    (void)d;
    (void)n;
}
static void on_close(sk_conn *c, int err)
{
    if (t1ns == 0) {
        fprintf(stderr, "sk_bulk: connection closed early: %s\n",
                sk_conn_reason(c)[0] ? sk_conn_reason(c) : sk_strerror(err));
        failed = 1;
        sk_loop_stop(sk_conn_loop(c));
    }
}

typedef struct phase {
    sk_conn *conn;
    int step;
} phase;

static void on_timer(sk_timer *t, void *ud)
{
    phase *p = ud;
    if (p->conn == NULL)
        return;
    if (p->step++ == 0) {
        b0 = sk_conn_bytes_out(p->conn); /* bytes the kernel took */
        t0ns = now_ns();
        return;
    }
    b1 = sk_conn_bytes_out(p->conn);
    t1ns = now_ns();
    sk_timer_stop(t);
    sk_loop_stop(sk_conn_loop(p->conn));
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "recv") != 0 && strcmp(argv[1], "send") != 0)) {
        fprintf(stderr, "usage: sk_bulk recv ADDR | sk_bulk send ADDR [-d SEC] [--warmup SEC] "
                        "[--chunk BYTES]\n");
        return 2;
    }
    if (strcmp(argv[1], "recv") == 0) {
        sk_server_opts o;
        sk_server_opts_init(&o);
        o.conn.framing = SK_FRAMING_RAW;
        o.cbs.on_message = sink_message;
        char err[300];
        int rc = sk_serve(argv[2], &o, 1000, ready, NULL, err, sizeof err);
        if (rc < 0)
            fprintf(stderr, "sk_bulk: %s\n", err);
        return rc < 0;
    }
    double dur = 5, warm = 1;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "-d") == 0)
            dur = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--warmup") == 0)
            warm = atof(argv[i + 1]);
        else if (strcmp(argv[i], "--chunk") == 0)
            chunk_len = (size_t)atol(argv[i + 1]);
    }
    chunk = calloc(1, chunk_len);
    sk_addr addr;
    char err[300];
    sk_loop *loop;
    if (chunk == NULL || sk_addr_parse(argv[2], &addr, err, sizeof err) < 0 ||
        sk_loop_new(&loop) < 0) {
        fprintf(stderr, "sk_bulk: bad address or out of memory\n");
        return 1;
    }
    sk_conn_opts so;
    sk_conn_opts_init(&so);
    so.framing = SK_FRAMING_RAW;
    so.out_high_water = HIGH_WATER;
    so.out_low_water = HIGH_WATER / 2;
    static const sk_conn_callbacks cbs = {
        .on_open = on_open, .on_message = on_message, .on_drain = on_drain, .on_close = on_close};
    phase p = {0};
    int rc = sk_conn_connect(loop, &addr, &so, &cbs, NULL, 5000, &p.conn);
    sk_timer *t;
    if (rc < 0 || sk_timer_new(loop, on_timer, &p, &t) < 0) {
        fprintf(stderr, "sk_bulk: connect: %s\n", sk_strerror(rc));
        return 1;
    }
    sk_timer_start(t, (uint64_t)(warm * 1000), (uint64_t)(dur * 1000));
    sk_loop_run(loop);
    if (!failed) {
        double secs = (double)(t1ns - t0ns) / 1e9;
        printf("{\"bytes\":%llu,\"seconds\":%.3f,\"gb_per_s\":%.4f}\n",
               (unsigned long long)(b1 - b0), secs, (double)(b1 - b0) / secs / 1e9);
    }
    sk_timer_free(t);
    sk_loop_free(loop);
    free(chunk);
    return failed;
}
