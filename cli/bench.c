/* bench.c — `sockit bench`: a load generator that verifies every reply byte
 * and measures throughput and latency. One event loop per thread,
 * connections spread over the threads, closed loop by default (each
 * connection keeps --pipeline requests in flight) or open loop (--rate:
 * requests at fixed intended times, latency counted from those times, so a
 * stalled server is not hidden by coordinated omission). */
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "histogram.h"

enum mode { M_FRAME, M_RAW, M_LINE, M_CONNECT, M_IDLE, M_UDP, M_REDIS };
static const char *const mode_names[] = {"frame", "raw", "line", "connect", "idle", "udp", "redis"};

/* In-flight requests one connection may have: the ring of send times. In
 * open loop a connection that falls this far behind counts errors instead of
 * queueing more. */
#define RING        4096
#define MAX_THREADS 64
/* The Redis request and reply of the redis mode (an inline PING). */
static const char redis_req[] = "*1\r\n$4\r\nPING\r\n";
static const char redis_rep[] = "+PONG\r\n";

typedef struct bench_cfg {
    enum mode mode;
    sk_addr addr;
    struct sockaddr_storage sa;
    socklen_t salen;
    unsigned conns, pipeline, threads;
    uint32_t duration_ms, warmup_ms;
    size_t size;
    double rate;
    bool json, quiet;
    int server_pid;
    uint32_t timeout_ms; /* --timeout: connecting, and each reply owed */
    cli_tls tls;         /* tls://: --ca, --pin or --insecure, as for every client */
} bench_cfg;

struct bthread;

typedef struct client {
    struct bthread *t;
    unsigned index;
    sk_conn *conn;
    sk_dgram *dgram;
    uint64_t next_seq; /* sequence number of the next request sent */
    uint64_t done_seq; /* sequence number of the next reply expected */
    uint64_t rx_bytes; /* raw/redis: bytes of the reply stream verified */
    uint64_t sent_at[RING];
    uint64_t last_rx_ns;
    uint32_t source; /* connect mode: which 127.0.0.x to bind */
} client;

typedef struct bthread {
    int id;
    const bench_cfg *cfg;
    sk_loop *loop;
    sk_timer *tick;
    client *clients;
    unsigned nclients;
    uint8_t *payload; /* scratch for building one request */
    histogram hist;
    uint64_t reqs, bytes, errors;
    uint64_t issued;  /* open loop: requests issued so far */
    uint64_t open_t0; /* open loop: the first intended time */
    bool measuring, stopping;
    uint64_t t_measure, t_end;
    char failure[300]; /* the first verification failure, fatal */
    pthread_t thread;
} bthread;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sockit bench ADDR [--mode MODE] [-c CONNS] [--pipeline D] [-d SEC] [--warmup SEC]\n"
        "                         [--size BYTES] [--threads T] [--rate R] [--json]\n"
        "                         [--server-pid PID] [--quiet] [--timeout SEC]\n"
        "\n"
        "modes:\n"
        "  frame    4-byte big-endian length + payload, each reply checked (default)\n"
        "  raw      a byte stream; every byte of the echo checked\n"
        "  line     lines of --size letters\n"
        "  connect  connect, one frame exchanged, close; -c connectors (source 127.0.0.x rotated)\n"
        "  idle     open -c connections and hold them for -d seconds\n"
        "  udp      datagrams of --size bytes (a sockit server needs --udp-rate 0)\n"
        "  redis    Redis PING requests (+PONG replies), as redis-benchmark -t ping_inline\n"
        "options:\n"
        "  -c N             connections (default 50)\n"
        "  --pipeline D     requests in flight per connection (default 1)\n"
        "  -d SEC           measured duration (default 5)\n"
        "  --warmup SEC     unmeasured run-in first (default 1)\n"
        "  --size BYTES     payload size (default 64)\n"
        "  --threads T      load-generator threads, each with its own loop (default 1)\n"
        "  --rate R         open loop: R requests/s in total at fixed intended times;\n"
        "                   latency counts from the intended time (no coordinated omission)\n"
        "  --server-pid PID also report the server's resident memory (idle mode: per\n"
        "                   connection held)\n"
        "  --json           one JSON object on stdout instead of the table\n"
        "  --timeout SEC    time allowed to connect, and for each reply owed, counted from\n"
        "                   its request (default 10); past it the run fails with exit 1\n"
        "  --ca FILE, --pin SHA256, --insecure\n"
        "                   tls://: how to verify the server, as for sockit connect; every\n"
        "                   connection after the first resumes the TLS session\n"
        "Every reply byte is verified; a mismatch stops the run with exit 1.\n");
}

/* ------------------------------------------------------------ payloads */

/* Payloads are a fixed pseudo-random block with the request's sequence
 * number stamped over its first 8 bytes: a reply from the wrong request, a
 * shifted stream or a flipped byte is caught, and checking costs a memcmp
 * (a byte-by-byte pattern would make the generator the bottleneck at 4 KiB).
 * Line payloads use letters only. Raw mode is one stream whose byte k is
 * table[k % STREAM_PERIOD]: a prime period, so no chunking lines up with it. */
#define STAMP         8
#define STREAM_PERIOD 65521u
static uint8_t *block; /* cfg.size bytes */
static uint8_t stream_table[STREAM_PERIOD];

static void make_patterns(const bench_cfg *cfg)
{
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t i = 0; i < cfg->size; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        block[i] = cfg->mode == M_LINE ? (uint8_t)('a' + x % 26u) : (uint8_t)x;
    }
    for (size_t i = 0; i < STREAM_PERIOD; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        stream_table[i] = (uint8_t)x;
    }
}

/* Binary payloads carry the sequence number as 8 little-endian bytes (one
 * store, one compare); line payloads spell it in letters, base 26. */
static void stamp(uint8_t *p, size_t size, uint64_t seq, enum mode m)
{
    if (m != M_LINE && size >= STAMP) {
        uint64_t le = htole64(seq);
        memcpy(p, &le, STAMP);
        return;
    }
    for (size_t i = 0; i < STAMP && i < size; i++) {
        p[i] = m == M_LINE ? (uint8_t)('a' + seq % 26u) : (uint8_t)seq;
        seq = m == M_LINE ? seq / 26u : seq >> 8;
    }
}

static void fill_payload(uint8_t *p, size_t size, uint64_t seq, enum mode m)
{
    memcpy(p, block, size);
    stamp(p, size, seq, m);
}

/* Index of the first byte that differs from request seq's payload, or -1. */
static long check_payload(const uint8_t *data, size_t size, uint64_t seq, enum mode m)
{
    uint8_t head[STAMP];
    size_t n = size < STAMP ? size : STAMP;
    if (m != M_LINE && n == STAMP) {
        uint64_t le = htole64(seq);
        memcpy(head, &le, STAMP);
    } else {
        memcpy(head, block, n);
        stamp(head, n, seq, m);
    }
    if (memcmp(data, head, n) != 0 || (size > n && memcmp(data + n, block + n, size - n) != 0)) {
        for (size_t i = 0; i < size; i++)
            if (data[i] != (i < n ? head[i] : block[i]))
                return (long)i;
    }
    return -1;
}

static void fail(bthread *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(bthread *t, const char *fmt, ...)
{
    if (t->failure[0] == '\0') {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(t->failure, sizeof t->failure, fmt, ap);
        va_end(ap);
    }
    t->stopping = true;
    sk_loop_stop(t->loop);
}

static void send_request(client *cl, uint64_t intended)
{
    bthread *t = cl->t;
    const bench_cfg *cfg = t->cfg;
    uint64_t seq = cl->next_seq++;
    cl->sent_at[seq % RING] = intended;
    switch (cfg->mode) {
    case M_RAW: {
        uint8_t *p = sk_conn_prepare_msg(cl->conn, cfg->size, NULL);
        for (uint64_t k = seq * cfg->size, left = cfg->size; p && left > 0;) {
            size_t off = (size_t)(k % STREAM_PERIOD);
            size_t n = STREAM_PERIOD - off < left ? STREAM_PERIOD - off : (size_t)left;
            memcpy(p, stream_table + off, n);
            p += n, k += n, left -= n;
        }
        break;
    }
    case M_REDIS: sk_conn_send(cl->conn, redis_req, sizeof redis_req - 1); break;
    case M_UDP:
        fill_payload(t->payload, cfg->size, seq, cfg->mode);
        if (sk_dgram_send(cl->dgram, t->payload, cfg->size, NULL, 0) < 0)
            t->errors++;
        break;
    default: {
        uint8_t *p = sk_conn_prepare_msg(cl->conn, cfg->size, NULL);
        if (p)
            fill_payload(p, cfg->size, seq, cfg->mode);
        break;
    }
    }
}

static void complete(client *cl, uint64_t now)
{
    bthread *t = cl->t;
    uint64_t seq = cl->done_seq++;
    if (t->measuring && now < t->t_end) {
        hist_add(&t->hist, now - cl->sent_at[seq % RING]);
        t->reqs++;
        t->bytes += t->cfg->size;
    }
}

static unsigned in_flight(const client *cl) { return (unsigned)(cl->next_seq - cl->done_seq); }

/* Closed loop: a reply frees a slot for the next request. */
static void refill(client *cl, uint64_t now)
{
    if (cl->t->cfg->rate > 0 || cl->t->stopping)
        return;
    while (in_flight(cl) < cl->t->cfg->pipeline)
        send_request(cl, now);
}

/* ---------------------------------------------------------- callbacks */

static void on_message(sk_conn *c, const uint8_t *data, size_t len)
{
    client *cl = sk_conn_data(c);
    bthread *t = cl->t;
    const bench_cfg *cfg = t->cfg;
    uint64_t now = now_ns();
    cl->last_rx_ns = now;
    if (cfg->mode == M_RAW || cfg->mode == M_REDIS) {
        size_t per = cfg->mode == M_RAW ? cfg->size : sizeof redis_rep - 1;
        while (len > 0) {
            /* Check up to the end of the current reply, or of the table. */
            uint64_t k = cl->rx_bytes;
            size_t to_reply_end = per - (size_t)(k % per);
            size_t n = len < to_reply_end ? len : to_reply_end;
            const uint8_t *want;
            if (cfg->mode == M_RAW) {
                size_t off = (size_t)(k % STREAM_PERIOD);
                if (STREAM_PERIOD - off < n)
                    n = STREAM_PERIOD - off;
                want = stream_table + off;
            } else {
                want = (const uint8_t *)redis_rep + k % per;
            }
            if (memcmp(data, want, n) != 0) {
                size_t i = 0;
                while (data[i] == want[i])
                    i++;
                fail(t,
                     "reply mismatch on connection %u at stream byte %llu: expected 0x%02x, got "
                     "0x%02x",
                     cl->index, (unsigned long long)(k + i), want[i], data[i]);
                return;
            }
            cl->rx_bytes += n;
            data += n;
            len -= n;
            if (cl->rx_bytes % per == 0) {
                if (cl->done_seq == cl->next_seq) {
                    fail(t, "connection %u: reply without a request", cl->index);
                    return;
                }
                complete(cl, now);
            }
        }
        refill(cl, now);
        return;
    }
    if (cl->done_seq == cl->next_seq) {
        fail(t, "connection %u: reply without a request", cl->index);
        return;
    }
    uint64_t seq = cl->done_seq;
    if (len != cfg->size) {
        fail(t, "reply mismatch on connection %u, request %llu: %zu bytes instead of %zu",
             cl->index, (unsigned long long)seq, len, cfg->size);
        return;
    }
    long bad = check_payload(data, len, seq, cfg->mode);
    if (bad >= 0) {
        fail(t, "reply mismatch on connection %u, request %llu, byte %ld", cl->index,
             (unsigned long long)seq, bad);
        return;
    }
    complete(cl, now);
    if (cfg->mode == M_CONNECT) {
        sk_conn_close(c); /* the client closes first: TIME_WAIT stays here */
        return;
    }
    refill(cl, now);
}

static void start_connect(client *cl);

static void on_open(sk_conn *c)
{
    client *cl = sk_conn_data(c);
    if (cl->t->cfg->mode == M_CONNECT) {
        send_request(cl, cl->sent_at[cl->next_seq % RING]);
        return;
    }
    if (cl->t->cfg->mode == M_IDLE)
        return;
    refill(cl, now_ns());
}

static void on_close(sk_conn *c, int err)
{
    client *cl = sk_conn_data(c);
    bthread *t = cl->t;
    cl->conn = NULL;
    if (t->stopping)
        return;
    if (t->cfg->mode == M_CONNECT && err == 0) {
        cl->done_seq = cl->next_seq; /* nothing carries over to the next connection */
        start_connect(cl);
        return;
    }
    t->errors++;
    fail(t, "connection %u closed: %s", cl->index,
         sk_conn_reason(c)[0] ? sk_conn_reason(c) : sk_strerror(err));
}

static void on_datagram(sk_dgram *d, const uint8_t *data, size_t len, const struct sockaddr *peer,
                        socklen_t peerlen, void *ud)
{
    (void)d;
    (void)peer;
    (void)peerlen;
    client *cl = ud;
    bthread *t = cl->t;
    uint64_t now = now_ns();
    cl->last_rx_ns = now;
    if (cl->done_seq == cl->next_seq)
        return; /* a late reply to a request given up on */
    uint64_t seq = cl->done_seq;
    if (len != t->cfg->size || check_payload(data, len, seq, M_UDP) >= 0) {
        /* Datagrams may be lost; a reply that does not match the oldest
         * request is most likely for a later one after a loss: count it. */
        t->errors++;
        return;
    }
    complete(cl, now);
    refill(cl, now);
}

static const sk_conn_callbacks client_cbs = {
    .on_open = on_open,
    .on_message = on_message,
    .on_close = on_close,
};

static int conn_opts(const bench_cfg *cfg, sk_conn_opts *o)
{
    sk_conn_opts_init(o);
    switch (cfg->mode) {
    case M_FRAME:
    case M_CONNECT:
    case M_IDLE: o->framing = SK_FRAMING_FRAME; break;
    case M_LINE: o->framing = SK_FRAMING_LINE; break;
    default: o->framing = SK_FRAMING_RAW; break;
    }
    o->max_frame = cfg->size > 0 ? cfg->size : 1;
    o->max_line = cfg->size > 0 ? cfg->size : 1;
    /* The generator must never be the one applying backpressure first. */
    o->out_high_water = 64u * 1024u * 1024u;
    o->tls = cfg->tls.ctx;
    return 0;
}

static void start_connect(client *cl)
{
    bthread *t = cl->t;
    const bench_cfg *cfg = t->cfg;
    sk_conn_opts o;
    conn_opts(cfg, &o);
    cl->sent_at[cl->next_seq % RING] = now_ns();
    if (o.tls != NULL) {
        /* By address, so that the server's name is verified (and sent as
         * SNI); no source rotation then. */
        int err = sk_conn_connect(t->loop, &cfg->addr, &o, &client_cbs, cl, (int)cfg->timeout_ms,
                                  &cl->conn);
        if (err < 0)
            fail(t, "connect: %s", sk_strerror(err));
        return;
    }
    int fd = socket(cfg->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(t, "socket: %s", strerror(errno));
        return;
    }
    /* Rotating the source over 127.0.0.x spreads TIME_WAIT over many
     * address pairs, so a long run does not exhaust ephemeral ports. */
    if (cfg->mode == M_CONNECT && cfg->sa.ss_family == AF_INET &&
        (ntohl(((const struct sockaddr_in *)&cfg->sa)->sin_addr.s_addr) >> 24) == 127) {
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000001u + (cl->source++ % 250u));
        (void)bind(fd, (struct sockaddr *)&src, sizeof src);
    }
    cl->sent_at[cl->next_seq % RING] = now_ns();
    int err = sk_conn_connect_fd(t->loop, fd, (const struct sockaddr *)&cfg->sa, cfg->salen, &o,
                                 &client_cbs, cl, (int)cfg->timeout_ms, &cl->conn);
    if (err < 0) {
        close(fd);
        fail(t, "connect: %s", sk_strerror(err));
    }
}

/* A stream reply later than --timeout after its request fails the run, as
 * in every client: a server that stopped answering is reported, not waited
 * on. (Lost datagrams are written off after 1 s instead: loss, not a stall.) */
static int check_replies_owed(bthread *t, uint64_t now)
{
    const bench_cfg *cfg = t->cfg;
    if (cfg->mode == M_UDP || cfg->mode == M_IDLE)
        return 0;
    uint64_t limit_ns = (uint64_t)cfg->timeout_ms * 1000000u;
    for (unsigned i = 0; i < t->nclients; i++) {
        client *cl = &t->clients[i];
        if (cl->conn == NULL || in_flight(cl) == 0)
            continue;
        uint64_t since = cl->sent_at[cl->done_seq % RING];
        if (now > since && now - since > limit_ns) {
            fail(t, "no reply within %.1f s on connection %u (--timeout)", cfg->timeout_ms / 1000.0,
                 cl->index);
            return -1;
        }
    }
    return 0;
}

/* Every 1 ms (closed loop) or continuously (open loop): phase changes, lost
 * datagrams, and in open loop the requests now due. */
static void on_tick(sk_timer *tm, void *ud)
{
    bthread *t = ud;
    uint64_t now = now_ns();
    if (!t->measuring && now >= t->t_measure)
        t->measuring = true;
    if (now >= t->t_end) {
        t->stopping = true;
        sk_loop_stop(t->loop);
        return;
    }
    const bench_cfg *cfg = t->cfg;
    if (check_replies_owed(t, now) < 0)
        return;
    if (cfg->mode == M_UDP && cfg->rate <= 0) {
        /* A lost datagram would stall its client forever: after 1 s without
         * a reply, write the requests off and start again. */
        for (unsigned i = 0; i < t->nclients; i++) {
            client *cl = &t->clients[i];
            if (in_flight(cl) > 0 && now - cl->last_rx_ns > 1000000000u) {
                t->errors += in_flight(cl);
                cl->done_seq = cl->next_seq;
                cl->last_rx_ns = now;
                refill(cl, now);
            }
        }
    }
    if (cfg->rate <= 0)
        return;
    /* Open loop sends at the intended times, not in 1 ms bursts: the tick
     * re-arms itself at once, so the thread polls (it is a load generator
     * on a core of its own) and latency is not inflated by the tick. */
    sk_timer_start(tm, 0, 0);
    double per_thread = cfg->rate / cfg->threads;
    uint64_t due = (uint64_t)((double)(now - t->open_t0) * per_thread / 1e9);
    while (t->issued < due) {
        uint64_t intended = t->open_t0 + (uint64_t)((double)t->issued * 1e9 / per_thread);
        client *cl = &t->clients[t->issued % t->nclients];
        t->issued++;
        if ((cl->conn == NULL && cl->dgram == NULL) || in_flight(cl) >= RING) {
            t->errors++; /* this connection is too far behind to take more */
            continue;
        }
        send_request(cl, intended);
    }
}

/* ------------------------------------------------------------- threads */

static int thread_setup(bthread *t, const bench_cfg *cfg, unsigned first, unsigned count)
{
    t->cfg = cfg;
    hist_init(&t->hist);
    int err = sk_loop_new(&t->loop);
    if (err < 0)
        return err;
    t->clients = calloc(count ? count : 1, sizeof *t->clients);
    t->payload = malloc(cfg->size + 1);
    if (t->clients == NULL || t->payload == NULL)
        return -ENOMEM;
    t->nclients = count;
    err = sk_timer_new(t->loop, on_tick, t, &t->tick);
    if (err < 0)
        return err;
    for (unsigned i = 0; i < count; i++) {
        client *cl = &t->clients[i];
        cl->t = t;
        cl->index = first + i;
        cl->source = first + i;
        cl->last_rx_ns = now_ns();
    }
    return 0;
}

static int thread_connect(bthread *t)
{
    const bench_cfg *cfg = t->cfg;
    char err[300];
    for (unsigned i = 0; i < t->nclients; i++) {
        client *cl = &t->clients[i];
        if (cfg->mode == M_UDP) {
            int rc =
                sk_dgram_connect(t->loop, &cfg->addr, on_datagram, cl, &cl->dgram, err, sizeof err);
            if (rc < 0) {
                cli_err("%s", err);
                return rc;
            }
        } else if (cfg->mode == M_CONNECT) {
            /* started by thread_main, after the clock starts */
        } else if (cfg->tls.ctx != NULL) {
            /* TLS: connected and handshaken by the thread's loop, during
             * the warm-up. */
            sk_conn_opts o;
            conn_opts(cfg, &o);
            int rc = sk_conn_connect(t->loop, &cfg->addr, &o, &client_cbs, cl, (int)cfg->timeout_ms,
                                     &cl->conn);
            if (rc < 0) {
                cli_err("connection %u: %s", cl->index, sk_strerror(rc));
                return rc;
            }
        } else {
            sk_sock *sock = NULL;
            int fd = sk_sock_dial(&cfg->addr, NULL, 5000, &sock, err, sizeof err);
            if (fd == 0)
                fd = sk_sock_release(sock);
            if (fd < 0) {
                cli_err("connection %u: %s", cl->index, err);
                return fd;
            }
            sk_conn_opts o;
            conn_opts(cfg, &o);
            int rc = sk_conn_adopt(t->loop, fd, &o, &client_cbs, cl, &cl->conn);
            if (rc < 0) {
                close(fd);
                cli_err("connection %u: %s", cl->index, sk_strerror(rc));
                return rc;
            }
        }
    }
    return 0;
}

static void *thread_main(void *arg)
{
    bthread *t = arg;
    if (t->cfg->mode == M_CONNECT)
        for (unsigned i = 0; i < t->nclients && !t->stopping; i++)
            start_connect(&t->clients[i]);
    if (t->cfg->mode == M_UDP && t->cfg->rate <= 0)
        for (unsigned i = 0; i < t->nclients; i++)
            refill(&t->clients[i], now_ns());
    sk_timer_start(t->tick, 1, 1);
    int err = sk_loop_run(t->loop);
    if (err < 0)
        fail(t, "event loop: %s", sk_strerror(err));
    return NULL;
}

static void thread_free(bthread *t)
{
    if (t->loop) {
        t->stopping = true;
        sk_loop_free(t->loop); /* closes connections without callbacks */
    }
    sk_timer_free(t->tick);
    free(t->clients);
    free(t->payload);
}

/* ------------------------------------------------------------- report */

/* The server's resident memory. (Syscall counts are not taken from
 * /proc/PID/io: its syscr/syscw count read/write but not recv/send, so they
 * would compare servers unfairly; bench/ counts syscalls with strace -c.) */
typedef struct server_stats {
    bool ok;
    long rss_kb;
} server_stats;

static server_stats read_server(int pid)
{
    server_stats s = {0};
    if (pid <= 0)
        return s;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return s;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &s.rss_kb) == 1)
            break;
    fclose(f);
    s.ok = true;
    return s;
}

static void report(const bench_cfg *cfg, const histogram *h, uint64_t reqs, uint64_t bytes,
                   uint64_t errors, double secs, const server_stats *s0, const server_stats *s1,
                   long idle_rss0)
{
    double rps = secs > 0 ? (double)reqs / secs : 0;
    double mbs = secs > 0 ? (double)bytes * 2 / secs / 1e6 : 0; /* both directions */
    double p50 = (double)hist_percentile(h, 50) / 1e3, p90 = (double)hist_percentile(h, 90) / 1e3;
    double p99 = (double)hist_percentile(h, 99) / 1e3,
           p999 = (double)hist_percentile(h, 99.9) / 1e3;
    double pmax = (double)h->max / 1e3, mean = hist_mean(h) / 1e3;
    bool srv = s0->ok && s1->ok;
    double idle_bytes = 0;
    if (cfg->mode == M_IDLE && srv && cfg->conns)
        idle_bytes = (double)(s1->rss_kb - idle_rss0) * 1024.0 / cfg->conns;
    char addr[300];
    sk_addr_format(&cfg->addr, addr, sizeof addr);
    if (cfg->json) {
        printf("{\"addr\":\"%s\",\"mode\":\"%s\",\"conns\":%u,\"pipeline\":%u,\"size\":%zu,"
               "\"threads\":%u,\"rate\":%.0f,\"duration_s\":%.3f,\"requests\":%llu,"
               "\"req_per_s\":%.1f,\"mb_per_s\":%.3f,\"errors\":%llu,"
               "\"latency_us\":{\"mean\":%.2f,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,"
               "\"p999\":%.2f,\"max\":%.2f}",
               addr, mode_names[cfg->mode], cfg->conns, cfg->pipeline, cfg->size, cfg->threads,
               cfg->rate, secs, (unsigned long long)reqs, rps, mbs, (unsigned long long)errors,
               mean, p50, p90, p99, p999, pmax);
        if (srv)
            printf(",\"server\":{\"pid\":%d,\"rss_kb\":%ld%s", cfg->server_pid, s1->rss_kb,
                   cfg->mode == M_IDLE ? "" : "}");
        if (srv && cfg->mode == M_IDLE)
            printf(",\"rss_bytes_per_idle_conn\":%.1f}", idle_bytes);
        printf("}\n");
        return;
    }
    printf("sockit bench %s  mode=%s conns=%u pipeline=%u size=%zu threads=%u%s\n", addr,
           mode_names[cfg->mode], cfg->conns, cfg->pipeline, cfg->size, cfg->threads,
           cfg->rate > 0 ? " (open loop)" : "");
    if (cfg->mode == M_IDLE) {
        printf("  held %u connections for %.1f s, errors %llu\n", cfg->conns, secs,
               (unsigned long long)errors);
    } else {
        printf("  requests   %llu in %.2f s: %.0f req/s, %.2f MB/s, errors %llu\n",
               (unsigned long long)reqs, secs, rps, mbs, (unsigned long long)errors);
        printf("  latency us mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n", mean,
               p50, p90, p99, p999, pmax);
    }
    if (srv) {
        printf("  server     pid %d: RSS %ld KiB", cfg->server_pid, s1->rss_kb);
        if (cfg->mode == M_IDLE)
            printf(", %.0f bytes per idle connection", idle_bytes);
        printf("\n");
    }
}

/* What a failure most likely means when the server is not an echo of the
 * mode's framing: the raw message ("frame too large (1416126830 ...)") is
 * true but does not tell a new user what to change. */
static const char *failure_hint(const bench_cfg *cfg, const char *failure)
{
    bool tls = cfg->addr.kind == SK_ADDR_TLS;
    if (strstr(failure, "frame too large") != NULL)
        return " (the server does not answer in frames: not an echo service? greet and upper "
               "need --mode raw or line; a TLS port needs tls://)";
    if (strstr(failure, "byte 0") != NULL)
        return " (the server does not echo what it is sent, as greet and upper do not: bench "
               "measures echo services such as sockit serve echo)";
    if (!tls && (strstr(failure, "reset") != NULL || strstr(failure, "closed: ") != NULL))
        return " (the server closed the connection: a service that closes, like greet, or a "
               "TLS port without tls://?)";
    return "";
}

/* ------------------------------------------------------------- parsing */

static int parse(bench_cfg *cfg, int argc, char **argv)
{
    *cfg = (bench_cfg){.mode = M_FRAME,
                       .conns = 50,
                       .pipeline = 1,
                       .threads = 1,
                       .duration_ms = 5000,
                       .warmup_ms = 1000,
                       .size = 64,
                       .timeout_ms = CLI_TIMEOUT_MS};
    enum {
        O_MODE = 256,
        O_PIPE,
        O_WARM,
        O_SIZE,
        O_THREADS,
        O_RATE,
        O_JSON,
        O_PID,
        O_QUIET,
        O_TIMEOUT
    };
    static const struct option longopts[] = {
        {"mode", required_argument, NULL, O_MODE},
        {"pipeline", required_argument, NULL, O_PIPE},
        {"warmup", required_argument, NULL, O_WARM},
        {"size", required_argument, NULL, O_SIZE},
        {"threads", required_argument, NULL, O_THREADS},
        {"rate", required_argument, NULL, O_RATE},
        {"json", no_argument, NULL, O_JSON},
        {"server-pid", required_argument, NULL, O_PID},
        {"quiet", no_argument, NULL, O_QUIET},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        CLI_TLS_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":hc:d:", longopts, NULL)) != -1) {
        const char *v = optarg;
        int bad = 0;
        unsigned u;
        int tl = cli_tls_option(&cfg->tls, ch, optarg);
        if (tl < 0)
            return -1;
        if (tl > 0)
            continue;
        switch (ch) {
        case 'h': usage(stdout); return 1;
        case O_MODE:
            bad = 1;
            for (int i = 0; i < (int)(sizeof mode_names / sizeof mode_names[0]); i++)
                if (strcmp(v, mode_names[i]) == 0) {
                    cfg->mode = (enum mode)i;
                    bad = 0;
                }
            break;
        case 'c': bad = cli_parse_uint(v, 1, 1000000, &cfg->conns); break;
        case O_PIPE: bad = cli_parse_uint(v, 1, RING / 2, &cfg->pipeline); break;
        case 'd': bad = cli_parse_seconds(v, &cfg->duration_ms) || cfg->duration_ms == 0; break;
        case O_WARM: bad = cli_parse_seconds(v, &cfg->warmup_ms); break;
        case O_SIZE: bad = cli_parse_size(v, &cfg->size) || cfg->size > SK_DEFAULT_MAX_FRAME; break;
        case O_THREADS: bad = cli_parse_uint(v, 1, MAX_THREADS, &cfg->threads); break;
        case O_RATE: {
            char *end;
            cfg->rate = strtod(v, &end);
            bad = *end != '\0' || !(cfg->rate > 0) || cfg->rate > 1e9;
            break;
        }
        case O_JSON: cfg->json = true; break;
        case O_QUIET: cfg->quiet = true; break;
        case O_TIMEOUT: bad = cli_parse_seconds(v, &cfg->timeout_ms) || cfg->timeout_ms == 0; break;
        case O_PID:
            bad = cli_parse_uint(v, 1, 1u << 30, &u);
            cfg->server_pid = (int)u;
            break;
        case ':': cli_err("option %s needs a value", argv[optind - 1]); return -1;
        default:
            cli_err("unknown option \"%s\" (try: sockit bench --help)", argv[optind - 1]);
            return -1;
        }
        if (bad) {
            cli_err("bad value \"%s\" for %s", v, argv[optind - 1]);
            return -1;
        }
    }
    if (argc - optind != 1) {
        if (!cli_host_port_slip("bench", argc - optind, argv + optind))
            cli_err("bench needs one address (try: sockit bench --help)");
        return -1;
    }
    char err[300];
    if (sk_addr_parse(argv[optind], &cfg->addr, err, sizeof err) < 0) {
        cli_err("bad address: %s%s", err, cli_addr_hint(argv[optind]));
        return -1;
    }
    bool dgram = cfg->addr.kind == SK_ADDR_UDP || cfg->addr.kind == SK_ADDR_UNIXGRAM;
    if (dgram != (cfg->mode == M_UDP)) {
        cli_err(dgram ? "a datagram address needs --mode udp"
                      : "--mode udp needs udp:// or unixgram:");
        return -1;
    }
    if (cfg->mode == M_UDP && cfg->size > SK_DGRAM_MAX) {
        cli_err("--size %zu is larger than a datagram (max %d)", cfg->size, SK_DGRAM_MAX);
        return -1;
    }
    if ((cfg->mode == M_RAW || cfg->mode == M_LINE) && cfg->size == 0) {
        cli_err("--size must be at least 1 in %s mode", mode_names[cfg->mode]);
        return -1;
    }
    if (cfg->threads > cfg->conns)
        cfg->threads = cfg->conns;
    if (cfg->mode == M_CONNECT || cfg->mode == M_IDLE)
        cfg->pipeline = 1;
    struct sockaddr_storage ss[4];
    socklen_t sl[4];
    int n = sk_addr_resolve(&cfg->addr, 0, ss, sl, 4, err, sizeof err);
    if (n < 0) {
        cli_err("%s", err);
        return -2;
    }
    cfg->sa = ss[0];
    cfg->salen = sl[0];
    /* Last: nothing after it may fail, so the context needs no freeing here. */
    int rc = cli_tls_prepare(&cfg->tls, &cfg->addr);
    return rc == 0 ? 0 : rc == EXIT_USAGE ? -1 : -2;
}

int cmd_bench(int argc, char **argv)
{
    bench_cfg cfg;
    int rc = parse(&cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : (rc == -2 ? EXIT_RUNTIME : EXIT_USAGE);
    cli_log_to_stderr(SK_LOG_WARN);
    bthread *ts = calloc(cfg.threads, sizeof *ts);
    if (ts == NULL) {
        cli_err("out of memory");
        cli_tls_free(&cfg.tls);
        return EXIT_RUNTIME;
    }
    int status = EXIT_RUNTIME;
    unsigned started = 0;
    block = malloc(cfg.size + 1);
    if (block == NULL) {
        free(ts);
        cli_tls_free(&cfg.tls);
        cli_err("out of memory");
        return EXIT_RUNTIME;
    }
    make_patterns(&cfg);
    server_stats base = read_server(cfg.server_pid);
    for (unsigned i = 0, first = 0; i < cfg.threads; i++) {
        unsigned count = cfg.conns / cfg.threads + (i < cfg.conns % cfg.threads ? 1 : 0);
        ts[i].id = (int)i;
        int err = thread_setup(&ts[i], &cfg, first, count);
        if (err == 0)
            err = thread_connect(&ts[i]);
        if (err < 0) {
            if (err != -ENOMEM)
                cli_err("setting up the load failed: %s", sk_strerror(err));
            goto out;
        }
        first += count;
    }
    uint64_t t0 = now_ns();
    uint64_t t_measure = t0 + (uint64_t)cfg.warmup_ms * 1000000u;
    uint64_t t_end = t_measure + (uint64_t)cfg.duration_ms * 1000000u;
    for (unsigned i = 0; i < cfg.threads; i++) {
        ts[i].t_measure = t_measure;
        ts[i].t_end = t_end;
        ts[i].open_t0 = t0;
        if (pthread_create(&ts[i].thread, NULL, thread_main, &ts[i]) != 0) {
            cli_err("cannot start thread %u", i);
            for (unsigned j = 0; j < started; j++) {
                sk_loop_stop(ts[j].loop);
                pthread_join(ts[j].thread, NULL);
            }
            goto out;
        }
        started++;
    }
    /* The server's counters are read at the start of the measured phase. */
    server_stats s0 = base;
    bool tty = isatty(STDERR_FILENO) && !cfg.quiet && !cfg.json;
    for (;;) {
        uint64_t now = now_ns();
        if (now >= t_end)
            break;
        bool failed = false;
        for (unsigned i = 0; i < cfg.threads; i++)
            failed |= ts[i].failure[0] != '\0';
        if (failed)
            break;
        uint64_t until = now + 200000000u;
        if (now < t_measure && until > t_measure)
            until = t_measure;
        if (until > t_end)
            until = t_end;
        struct timespec ts_sleep = {.tv_sec = 0, .tv_nsec = (long)(until - now)};
        nanosleep(&ts_sleep, NULL);
        if (now < t_measure && now_ns() >= t_measure)
            s0 = read_server(cfg.server_pid);
        if (tty) {
            uint64_t reqs = 0;
            for (unsigned i = 0; i < cfg.threads; i++)
                reqs += __atomic_load_n(&ts[i].reqs, __ATOMIC_RELAXED);
            double el = now_ns() > t_measure ? (double)(now_ns() - t_measure) / 1e9 : 0;
            fprintf(stderr, "\r%s %5.1f s  %llu requests  %.0f req/s   ",
                    now_ns() < t_measure ? "warming up" : "measuring ", el,
                    (unsigned long long)reqs, el > 0 ? (double)reqs / el : 0.0);
        }
    }
    server_stats s1 = read_server(cfg.server_pid);
    for (unsigned i = 0; i < cfg.threads; i++) {
        sk_loop_stop(ts[i].loop);
        pthread_join(ts[i].thread, NULL);
    }
    started = 0;
    if (tty)
        fprintf(stderr, "\r%60s\r", "");
    histogram *all = malloc(sizeof *all);
    if (all == NULL)
        goto out;
    hist_init(all);
    uint64_t reqs = 0, bytes = 0, errors = 0;
    const char *failure = NULL;
    for (unsigned i = 0; i < cfg.threads; i++) {
        hist_merge(all, &ts[i].hist);
        reqs += ts[i].reqs;
        bytes += ts[i].bytes;
        errors += ts[i].errors;
        if (ts[i].failure[0] && failure == NULL)
            failure = ts[i].failure;
    }
    if (failure) {
        cli_err("FAILED: %s%s", failure, failure_hint(&cfg, failure));
        free(all);
        goto out;
    }
    double secs = (double)cfg.duration_ms / 1000.0;
    report(&cfg, all, reqs, bytes, errors, secs, &s0, &s1, base.rss_kb);
    free(all);
    status = EXIT_OK;
out:
    for (unsigned j = 0; j < started; j++) {
        sk_loop_stop(ts[j].loop);
        pthread_join(ts[j].thread, NULL);
    }
    for (unsigned i = 0; i < cfg.threads; i++)
        thread_free(&ts[i]);
    free(ts);
    free(block);
    block = NULL;
    cli_tls_free(&cfg.tls);
    return status;
}
