/* test_outq.c — sk_conn_sendfile: file ranges in order with copied bytes
 * and shared slices, large ranges through a slow reader (partial sendfiles),
 * the caller's descriptor closed at once, a file truncated while queued,
 * water marks, descriptors released on every way out, and the errors. */
#include <criterion/criterion.h>

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(outq, .init = unit_alarm);

/* ---------------------------------------------------------------- fixture */

/* The far end of a socketpair, read by a thread until EOF (then it shuts
 * down its side so a lingering close ends at once). */
typedef struct reader {
    int fd;
    unsigned delay_ms;
    size_t chunk;
    uint8_t *buf;
    size_t len, cap;
    pthread_t thread;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    if (r->delay_ms)
        unit_sleep_ms(r->delay_ms);
    for (;;) {
        if (r->cap - r->len < r->chunk) {
            r->cap = r->cap * 2 + r->chunk;
            r->buf = realloc(r->buf, r->cap);
            if (r->buf == NULL)
                abort();
        }
        ssize_t n = recv(r->fd, r->buf + r->len, r->chunk, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
    shutdown(r->fd, SHUT_WR);
    return NULL;
}

typedef struct fx {
    sk_loop *loop;
    reader rd;
    unit_watchdog wd;
    void (*on_open)(struct fx *x, sk_conn *c);
    int closed, close_err, drains;
    size_t queued_at_open, queued_at_drain;
    char reason[200];
} fx;

static void fx_open(sk_conn *c)
{
    fx *x = sk_conn_data(c);
    x->on_open(x, c);
}

static void fx_message(sk_conn *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
}

static void fx_drain(sk_conn *c)
{
    fx *x = sk_conn_data(c);
    x->drains++;
    x->queued_at_drain = sk_conn_queued(c);
}

static void fx_close(sk_conn *c, int err)
{
    fx *x = sk_conn_data(c);
    x->closed++;
    x->close_err = err;
    strncpy(x->reason, sk_conn_reason(c), sizeof x->reason - 1);
}

/* Adopts one end of a socketpair, starts the reader on the other (when
 * start_reader), runs the loop until the connection is gone. */
static void fx_run(fx *x, const sk_conn_opts *opts, int start_reader)
{
    static const sk_conn_callbacks cbs = {
        .on_open = fx_open,
        .on_message = fx_message,
        .on_drain = fx_drain,
        .on_close = fx_close,
    };
    cr_assert_eq(sk_loop_new(&x->loop), 0);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    x->rd.fd = sv[1];
    if (x->rd.chunk == 0)
        x->rd.chunk = 65536;
    sk_conn *conn = NULL;
    cr_assert_eq(sk_conn_adopt(x->loop, sv[0], opts, &cbs, x, &conn), 0);
    if (start_reader)
        cr_assert_eq(pthread_create(&x->rd.thread, NULL, reader_main, &x->rd), 0);
    unit_watchdog_start(&x->wd, x->loop, 15000);
    cr_assert_eq(sk_loop_run(x->loop), 0);
    cr_assert_eq(unit_watchdog_end(&x->wd), 0, "watchdog fired: the loop did not finish");
    if (start_reader)
        pthread_join(x->rd.thread, NULL);
    sk_loop_free(x->loop);
    close(x->rd.fd);
}

/* An unlinked temporary file of len bytes of the test pattern. */
static int pattern_file(size_t len)
{
    char path[] = "/tmp/sk-sendfile-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    uint8_t *buf = malloc(65536);
    cr_assert_not_null(buf);
    for (size_t off = 0; off < len;) {
        size_t n = len - off < 65536 ? len - off : 65536;
        unit_pattern(buf, n, off);
        cr_assert_eq(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
        off += n;
    }
    free(buf);
    return fd;
}

/* ---------------------------------------------------------------- ordering */

static int g_file;
static sk_shared *g_sh;

static void order_open(fx *x, sk_conn *c)
{
    cr_assert_eq(sk_conn_send(c, "[", 1), 0);
    cr_assert_eq(sk_conn_sendfile(c, g_file, 0, 10), 0); /* "0123456789" */
    cr_assert_eq(sk_conn_send(c, "|", 1), 0);
    cr_assert_eq(sk_conn_send_shared(c, g_sh, 0, 3), 0); /* "abc" */
    cr_assert_eq(sk_conn_sendfile(c, g_file, 20, 6), 0); /* "klmnop" */
    cr_assert_eq(sk_conn_sendfile(c, g_file, 4, 2), 0);  /* "45", back to back */
    cr_assert_eq(sk_conn_sendfile(c, g_file, 0, 0), 0);  /* empty: nothing */
    cr_assert_eq(sk_conn_send_shared(c, g_sh, 3, 2), 0); /* "de" */
    cr_assert_eq(sk_conn_send(c, "]", 1), 0);
    x->queued_at_open = sk_conn_queued(c);
    sk_conn_close(c);
}

Test(outq, ranges_interleave_with_bytes_and_slices_in_order)
{
    int fds = unit_count_fds();
    size_t base = sk_mem_in_use();
    char path[] = "/tmp/sk-sendfile-XXXXXX";
    g_file = mkstemp(path);
    cr_assert_geq(g_file, 0);
    unlink(path);
    const char *text = "0123456789abcdefghijklmnopqrstuvwxyz";
    cr_assert_eq(write(g_file, text, strlen(text)), (ssize_t)strlen(text));
    cr_assert_eq(sk_shared_new(5, &g_sh), 0);
    memcpy(sk_shared_data(g_sh), "abcde", 5);
    fx x = {.on_open = order_open};
    fx_run(&x, NULL, 1);
    const char *want = "[0123456789|abcklmnop45de]";
    cr_assert_eq(x.queued_at_open, strlen(want), "queued %zu", x.queued_at_open);
    cr_assert_eq(x.rd.len, strlen(want), "peer got %zu bytes", x.rd.len);
    cr_assert(memcmp(x.rd.buf, want, strlen(want)) == 0, "got %.*s", (int)x.rd.len, x.rd.buf);
    cr_assert_eq(x.close_err, 0, "close: %s", x.reason);
    sk_shared_unref(g_sh);
    close(g_file);
    free(x.rd.buf);
    cr_assert_eq(sk_mem_in_use(), base, "memory left charged");
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak: the duplicates were not closed");
}

/* ---------------------------------------- large ranges through a slow reader */

#define BIG (24u * 1024u * 1024u)

static void big_open(fx *x, sk_conn *c)
{
    int fd = pattern_file(BIG);
    /* Three ranges out of order with frame-like headers between them, and
     * the caller's descriptor closed at once: the queue holds its own. */
    uint8_t hdr[4];
    sk_frame_header(hdr, BIG / 2);
    cr_assert_eq(sk_conn_send(c, hdr, 4), 0);
    cr_assert_eq(sk_conn_sendfile(c, fd, BIG / 2, BIG / 2), 0);
    sk_frame_header(hdr, BIG / 2);
    cr_assert_eq(sk_conn_send(c, hdr, 4), 0);
    cr_assert_eq(sk_conn_sendfile(c, fd, 0, BIG / 2), 0);
    close(fd);
    x->queued_at_open = sk_conn_queued(c);
    sk_conn_close(c);
}

Test(outq, large_ranges_survive_partial_writes_and_early_close)
{
    int fds = unit_count_fds();
    fx x = {.on_open = big_open, .rd = {.delay_ms = 50, .chunk = 100003}};
    fx_run(&x, NULL, 1);
    cr_assert_eq(x.close_err, 0, "close: %s", x.reason);
    cr_assert_eq(x.queued_at_open, (size_t)BIG + 8);
    cr_assert_eq(x.rd.len, (size_t)BIG + 8, "peer got %zu bytes", x.rd.len);
    const uint8_t *p = x.rd.buf;
    cr_assert_eq(p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3], BIG / 2);
    cr_assert(unit_pattern_ok(p + 4, BIG / 2, BIG / 2), "first range differs");
    p += 4 + BIG / 2;
    cr_assert_eq(p[0] << 24 | p[1] << 16 | p[2] << 8 | p[3], BIG / 2);
    cr_assert(unit_pattern_ok(p + 4, BIG / 2, 0), "second range differs");
    free(x.rd.buf);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

/* ------------------------------------------------ a file that shrank meanwhile */

static void shrink_open(fx *x, sk_conn *c)
{
    (void)x;
    int fd = pattern_file(1024 * 1024);
    cr_assert_eq(sk_conn_send(c, "head", 4), 0);
    cr_assert_eq(sk_conn_sendfile(c, fd, 0, 1024 * 1024), 0);
    cr_assert_eq(sk_conn_send(c, "tail", 4), 0);
    /* Truncated before its turn: the range cannot be sent whole. */
    cr_assert_eq(ftruncate(fd, 100 * 1024), 0);
    close(fd);
}

Test(outq, truncated_file_aborts_the_connection)
{
    int fds = unit_count_fds();
    fx x = {.on_open = shrink_open};
    fx_run(&x, NULL, 1);
    cr_assert_eq(x.closed, 1);
    cr_assert_eq(x.close_err, -EIO, "close: %d %s", x.close_err, x.reason);
    cr_assert(strstr(x.reason, "shorter") != NULL, "reason: %s", x.reason);
    /* What the file still had went out; "tail" never did. */
    cr_assert_eq(x.rd.len, 4u + 100u * 1024u, "peer got %zu bytes", x.rd.len);
    cr_assert(memcmp(x.rd.buf, "head", 4) == 0);
    cr_assert(unit_pattern_ok(x.rd.buf + 4, 100 * 1024, 0));
    free(x.rd.buf);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

/* -------------------------------------------------------------- water marks */

static int g_bulk;

static void hw_open(fx *x, sk_conn *c)
{
    for (size_t off = 0; off < 4u * 1024u * 1024u; off += 512u * 1024u)
        cr_assert_eq(sk_conn_sendfile(c, g_bulk, off, 512u * 1024u), 0);
    x->queued_at_open = sk_conn_queued(c);
    sk_conn_close(c);
}

Test(outq, ranges_count_for_queued_and_drain)
{
    size_t base = sk_mem_in_use();
    g_bulk = pattern_file(4u * 1024u * 1024u);
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.out_high_water = 256 * 1024;
    o.out_low_water = 64 * 1024;
    fx x = {.on_open = hw_open, .rd = {.delay_ms = 100}};
    fx_run(&x, &o, 1);
    cr_assert_eq(x.queued_at_open, 4u * 1024u * 1024u);
    cr_assert_geq(x.drains, 1, "on_drain never ran: ranges did not count for the high-water mark");
    cr_assert_leq(x.queued_at_drain, o.out_low_water);
    cr_assert_eq(x.rd.len, 4u * 1024u * 1024u);
    cr_assert(unit_pattern_ok(x.rd.buf, 4u * 1024u * 1024u, 0));
    /* Ranges hold no memory: only the ring and queue were charged, and are
     * given back. */
    cr_assert_eq(sk_mem_in_use(), base);
    close(g_bulk);
    free(x.rd.buf);
}

/* ------------------------------------------------- descriptors on abort etc. */

static void abort_open(fx *x, sk_conn *c)
{
    (void)x;
    for (int i = 0; i < 40; i++)
        cr_assert_eq(sk_conn_sendfile(c, g_bulk, 0, 1024 * 1024), 0);
    /* Nobody reads: nearly all of it is still queued when it goes. */
    sk_conn_abort(c, -ECONNABORTED);
}

Test(outq, abort_closes_queued_duplicates)
{
    g_bulk = pattern_file(1024 * 1024);
    int fds = unit_count_fds();
    fx x = {.on_open = abort_open};
    fx_run(&x, NULL, 0);
    cr_assert_eq(x.closed, 1);
    cr_assert_eq(x.close_err, -ECONNABORTED);
    cr_assert_eq(unit_count_fds(), fds, "a queue kept a duplicate after abort");
    close(g_bulk);
}

static int g_einval, g_epipe, g_emfile, g_after;

static void errors_open(fx *x, sk_conn *c)
{
    (void)x;
    g_einval = sk_conn_sendfile(c, -1, 0, 10) == -EINVAL &&
               sk_conn_sendfile(c, g_bulk, UINT64_MAX - 5, 10) == -EINVAL &&
               sk_conn_sendfile(c, g_bulk, (uint64_t)INT64_MAX, 1) == -EINVAL;
    /* Every descriptor in use: the duplicate cannot be made, nothing is
     * queued, and the connection goes on as it was. */
    int held[4096];
    int n = 0;
    while (n < 4096) {
        int d = dup(g_bulk);
        if (d < 0)
            break;
        held[n++] = d;
    }
    cr_assert_lt(n, 4096, "RLIMIT_NOFILE was not lowered");
    int rc = sk_conn_sendfile(c, g_bulk, 0, 10);
    g_emfile = rc == -EMFILE && sk_conn_queued(c) == 0;
    while (n > 0)
        close(held[--n]);
    g_after = sk_conn_sendfile(c, g_bulk, 0, 4) == 0 && sk_conn_queued(c) == 4;
    sk_conn_close(c);
    g_epipe = sk_conn_sendfile(c, g_bulk, 0, 4) == -EPIPE;
}

Test(outq, errors_leave_the_connection_usable)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = 256;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    g_bulk = pattern_file(64);
    fx x = {.on_open = errors_open};
    fx_run(&x, NULL, 1);
    cr_assert(g_einval, "a bad descriptor or range was not -EINVAL");
    cr_assert(g_emfile, "no descriptor left was not -EMFILE with nothing queued");
    cr_assert(g_after, "the connection was not usable after -EMFILE");
    cr_assert(g_epipe, "a range after sk_conn_close was accepted");
    cr_assert_eq(x.close_err, 0, "close: %s", x.reason);
    cr_assert_eq(x.rd.len, 4u, "peer got %zu bytes", x.rd.len);
    cr_assert(unit_pattern_ok(x.rd.buf, 4, 0));
    close(g_bulk);
    free(x.rd.buf);
}

/* ----------------------------------------------------- a peer that is gone */

static void gone_open(fx *x, sk_conn *c)
{
    (void)x;
    /* sendfile raises SIGPIPE on a closed peer (it has no MSG_NOSIGNAL);
     * with the default disposition this test process would die of it. */
    close(x->rd.fd);
    x->rd.fd = -1;
    for (int i = 0; i < 8; i++)
        cr_assert_eq(sk_conn_sendfile(c, g_bulk, 0, 1024 * 1024), 0);
}

Test(outq, closed_peer_is_an_error_not_a_signal)
{
    cr_assert_eq(signal(SIGPIPE, SIG_DFL) == SIG_ERR, 0);
    g_bulk = pattern_file(1024 * 1024);
    int fds = unit_count_fds();
    fx x = {.on_open = gone_open};
    fx_run(&x, NULL, 0);
    cr_assert_eq(x.closed, 1);
    cr_assert(x.close_err == -EPIPE || x.close_err == -ECONNRESET, "close: %d %s", x.close_err,
              x.reason);
    sigset_t pend;
    cr_assert_eq(sigpending(&pend), 0);
    cr_assert_eq(sigismember(&pend, SIGPIPE), 0, "a SIGPIPE was left pending");
    cr_assert_eq(unit_count_fds(), fds + 0, "descriptor leak");
    close(g_bulk);
}

/* A connected loopback TCP pair (blocking). */
static void unit_tcp_pair(int sv[2])
{
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(ls, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    cr_assert_eq(bind(ls, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(listen(ls, 1), 0);
    cr_assert_eq(getsockname(ls, (struct sockaddr *)&a, &al), 0);
    sv[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(sv[0], (struct sockaddr *)&a, sizeof a), 0);
    sv[1] = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(sv[1], 0);
    close(ls);
}

/* A peer that reads a little, then goes, while ranges are being sent:
 * sendfile then reports a short count and raises SIGPIPE in the same call. */
static void *close_after_some(void *arg)
{
    reader *r = arg;
    static _Thread_local uint8_t buf[256 * 1024];
    size_t got = 0;
    while (got < r->chunk) {
        ssize_t n = recv(r->fd, buf, sizeof buf, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    /* As a relay drops a connection: a FIN, then (data unread) a reset.
     * The sender's writes fail in the middle of a sendfile call, which
     * then raises SIGPIPE and returns what it had sent. */
    shutdown(r->fd, SHUT_RDWR);
    close(r->fd);
    r->fd = -1;
    return NULL;
}

static void midway_open(fx *x, sk_conn *c)
{
    (void)x;
    for (int i = 0; i < 64; i++)
        cr_assert_eq(sk_conn_sendfile(c, g_bulk, 0, 1024 * 1024), 0);
}

Test(outq, peer_gone_midway_is_an_error_not_a_signal)
{
    cr_assert_eq(signal(SIGPIPE, SIG_DFL) == SIG_ERR, 0);
    g_bulk = pattern_file(1024 * 1024);
    int fds = unit_count_fds();
    for (int round = 0; round < 40; round++) {
        static const sk_conn_callbacks cbs = {
            .on_open = fx_open, .on_message = fx_message, .on_close = fx_close};
        fx x = {.on_open = midway_open};
        cr_assert_eq(sk_loop_new(&x.loop), 0);
        /* TCP over loopback: it moves a range in many pieces per call, so
         * the reset lands inside calls. */
        int sv[2];
        unit_tcp_pair(sv);
        x.rd.fd = sv[1];
        x.rd.chunk = 1000u + (size_t)round * 997001u;
        sk_conn *conn = NULL;
        cr_assert_eq(sk_conn_adopt(x.loop, sv[0], NULL, &cbs, &x, &conn), 0);
        cr_assert_eq(pthread_create(&x.rd.thread, NULL, close_after_some, &x.rd), 0);
        unit_watchdog_start(&x.wd, x.loop, 10000);
        cr_assert_eq(sk_loop_run(x.loop), 0);
        cr_assert_eq(unit_watchdog_end(&x.wd), 0);
        pthread_join(x.rd.thread, NULL);
        sk_loop_free(x.loop);
        cr_assert_eq(x.closed, 1);
        cr_assert(x.close_err == -EPIPE || x.close_err == -ECONNRESET, "round %d: %d %s", round,
                  x.close_err, x.reason);
    }
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
    close(g_bulk);
}
