/* test_conn.c — stream connections on a socketpair adopted with sk_conn_adopt: framing, protocol
 * errors, backpressure, graceful close, half-close. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(conn, .init = unit_alarm);

/* --------------------------------------------------------------- fixture */

/* The test's end of the socketpair, driven by an sk_io on the same loop:
 * writes `out` (then optionally shuts down its write side) and collects what
 * the connection sends until EOF. */
typedef struct peer {
    int fd;
    sk_io *io;
    const uint8_t *out;
    size_t out_len, out_off;
    int shut_after;
    int reading; /* collect input (else leave it in the socket) */
    uint8_t *in;
    size_t in_len, in_cap;
    int eof;
    int rd_err; /* errno of a failed read (e.g. ECONNRESET) */
    sk_timer *reaper;
    struct sctx *ctx;
} peer;

typedef struct sctx {
    sk_loop *loop;
    sk_conn *conn;
    sk_timer *watchdog;
    int timed_out;
    peer p;
    /* what the connection saw */
    int opened, closed, close_err, errors, error_err, eofs, drains;
    int counted; /* messages echo_count_message saw (not kept in msgs) */
    int msg_before_open;
    char reason[256];
    uint8_t *msgs[64];
    size_t lens[64];
    int nmsgs;
    uint64_t bytes_in, bytes_out;
    /* per-test knobs */
    int close_after; /* sk_conn_close after this many messages (0: never) */
    int echo;        /* send every message back with sk_conn_send_msg */
    int done_needs_peer_eof;
    const char *error_reply;
    size_t queued_at_drain;
} sctx;

static void maybe_done(sctx *x)
{
    if (x->closed && (!x->done_needs_peer_eof || x->p.eof))
        sk_loop_stop(x->loop);
}

static void peer_update(peer *p);

static void on_reap(sk_timer *t, void *ud)
{
    peer *p = ud;
    if (p->io != NULL) {
        sk_io_free(p->io);
        p->io = NULL;
    }
    sk_timer_free(t);
    p->reaper = NULL;
}

static void peer_cb(sk_io *io, int fd, int ready, void *ud)
{
    peer *p = ud;
    (void)io;
    cr_assert_eq(fd, p->fd);
    if (p->eof || p->rd_err)
        return;
    if ((ready & SK_WRITABLE) && p->out_off < p->out_len) {
        for (;;) {
            ssize_t n =
                send(fd, p->out + p->out_off, p->out_len - p->out_off, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                p->out_off += (size_t)n;
                if (p->out_off == p->out_len)
                    break;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            cr_assert(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "peer send: %s",
                      strerror(errno));
            break;
        }
        if (p->out_off == p->out_len && p->shut_after)
            cr_assert_eq(shutdown(fd, SHUT_WR), 0);
    }
    if ((ready & (SK_READABLE | SK_ERROR)) && p->reading) {
        for (;;) {
            if (p->in_cap - p->in_len < 65536) {
                p->in_cap = p->in_cap * 2 + 65536;
                p->in = realloc(p->in, p->in_cap);
                cr_assert_not_null(p->in);
            }
            ssize_t n = recv(fd, p->in + p->in_len, p->in_cap - p->in_len, MSG_DONTWAIT);
            if (n > 0) {
                p->in_len += (size_t)n;
                continue;
            }
            if (n == 0) {
                p->eof = 1;
                break;
            }
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                p->rd_err = errno;
            break;
        }
        if (p->eof || p->rd_err) {
            /* Tell a lingering connection we are done too. */
            (void)shutdown(fd, SHUT_WR);
            /* Free the watcher from a timer, not from inside its callback. */
            cr_assert_eq(sk_timer_new(p->ctx->loop, on_reap, p, &p->reaper), 0);
            sk_timer_start(p->reaper, 0, 0);
            maybe_done(p->ctx);
            return;
        }
    }
    peer_update(p);
}

static void peer_start(struct sctx *x);

static void peer_update(peer *p)
{
    if (p->io == NULL && !p->eof && !p->rd_err) {
        peer_start(p->ctx);
        return;
    }
    if (p->io == NULL || p->eof || p->rd_err)
        return;
    int ev = 0;
    if (p->out_off < p->out_len)
        ev |= SK_WRITABLE;
    if (p->reading)
        ev |= SK_READABLE;
    cr_assert_eq(sk_io_set_events(p->io, ev), 0);
}

/* Starts the peer watcher with the current out/reading settings. */
static void peer_start(struct sctx *x)
{
    peer *p = &x->p;
    int ev = (p->out_off < p->out_len ? SK_WRITABLE : 0) | (p->reading ? SK_READABLE : 0);
    cr_assert_eq(sk_io_new(x->loop, p->fd, ev, peer_cb, p, &p->io), 0);
}

static sctx *ctx_of(sk_conn *c)
{
    sctx *x = sk_conn_data(c);
    cr_assert_not_null(x);
    cr_assert_eq(x->conn, c);
    return x;
}

static void on_open(sk_conn *c)
{
    sctx *x = ctx_of(c);
    x->opened++;
}

static void on_message(sk_conn *c, const uint8_t *data, size_t len)
{
    sctx *x = ctx_of(c);
    if (!x->opened)
        x->msg_before_open = 1;
    cr_assert(x->nmsgs < 64, "too many messages");
    x->msgs[x->nmsgs] = malloc(len + 1);
    cr_assert_not_null(x->msgs[x->nmsgs]);
    if (len > 0)
        memcpy(x->msgs[x->nmsgs], data, len);
    x->lens[x->nmsgs] = len;
    x->nmsgs++;
    if (x->echo)
        cr_assert_eq(sk_conn_send_msg(c, data, len), 0);
    if (x->close_after && x->nmsgs == x->close_after)
        sk_conn_close(c);
}

static void on_drain(sk_conn *c)
{
    sctx *x = ctx_of(c);
    x->drains++;
    x->queued_at_drain = sk_conn_queued(c);
}

static void on_error(sk_conn *c, int err)
{
    sctx *x = ctx_of(c);
    x->errors++;
    x->error_err = err;
    if (x->error_reply != NULL)
        cr_assert_eq(sk_conn_send(c, x->error_reply, strlen(x->error_reply)), 0);
}

static void on_close(sk_conn *c, int err)
{
    sctx *x = ctx_of(c);
    x->closed++;
    x->close_err = err;
    const char *r = sk_conn_reason(c);
    cr_assert_not_null(r, "sk_conn_reason returned NULL");
    snprintf(x->reason, sizeof x->reason, "%s", r);
    x->bytes_in = sk_conn_bytes_in(c);
    x->bytes_out = sk_conn_bytes_out(c);
    x->conn = NULL;
    maybe_done(x);
}

static void on_watchdog(sk_timer *t, void *ud)
{
    sctx *x = ud;
    (void)t;
    x->timed_out = 1;
    sk_loop_stop(x->loop);
}

static const sk_conn_callbacks base_cbs = {
    .on_open = on_open,
    .on_message = on_message,
    .on_drain = on_drain,
    .on_eof = NULL,
    .on_error = on_error,
    .on_close = on_close,
};

/* Creates the loop, the socketpair, adopts one end with opts and cbs, and
 * arms a 5 s watchdog timer. */
static void setup(sctx *x, const sk_conn_opts *opts, const sk_conn_callbacks *cbs)
{
    memset(x, 0, sizeof *x);
    cr_assert_eq(sk_loop_new(&x->loop), 0);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    x->p.fd = sv[1];
    x->p.ctx = x;
    unit_set_nonblock(sv[1], 1);
    int r = sk_conn_adopt(x->loop, sv[0], opts, cbs, x, &x->conn);
    cr_assert_eq(r, 0, "sk_conn_adopt: %d %s", r, sk_strerror(r));
    cr_assert_not_null(x->conn);
    cr_assert_eq(sk_conn_data(x->conn), x);
    cr_assert_eq(sk_timer_new(x->loop, on_watchdog, x, &x->watchdog), 0);
    sk_timer_start(x->watchdog, 5000, 0);
}

static void run(sctx *x)
{
    cr_assert_eq(sk_loop_run(x->loop), 0);
    cr_assert(!x->timed_out,
              "watchdog: the test did not finish in 5 s (msgs %d, closed %d, "
              "peer eof %d, peer in %zu)",
              x->nmsgs + x->counted, x->closed, x->p.eof, x->p.in_len);
}

static void teardown(sctx *x)
{
    sk_timer_free(x->watchdog);
    if (x->p.reaper != NULL)
        sk_timer_free(x->p.reaper);
    if (x->p.io != NULL)
        sk_io_free(x->p.io);
    close(x->p.fd);
    sk_loop_free(x->loop);
    for (int i = 0; i < x->nmsgs; i++)
        free(x->msgs[i]);
    free(x->p.in);
}

static void put_frame(uint8_t *dst, size_t *off, const void *payload, uint32_t n)
{
    dst[*off + 0] = (uint8_t)(n >> 24);
    dst[*off + 1] = (uint8_t)(n >> 16);
    dst[*off + 2] = (uint8_t)(n >> 8);
    dst[*off + 3] = (uint8_t)n;
    if (n > 0)
        memcpy(dst + *off + 4, payload, n);
    *off += 4 + (size_t)n;
}

/* ------------------------------------------------------- frames in pieces */

typedef struct dribble {
    sctx *x;
    const uint8_t *data;
    size_t len, off;
    unsigned step;
} dribble;

/* Piece sizes: tiny pieces first (headers split every way), then large. */
static size_t piece_size(unsigned step)
{
    static const size_t small[] = {1, 2, 3, 1, 1, 5, 7, 2, 4, 1, 3, 6};
    if (step < 48)
        return small[step % 12];
    return 8191 + step;
}

static void on_dribble(sk_timer *t, void *ud)
{
    dribble *d = ud;
    if (d->off == d->len) {
        sk_timer_stop(t);
        return;
    }
    size_t n = piece_size(d->step);
    if (n > d->len - d->off)
        n = d->len - d->off;
    ssize_t w = send(d->x->p.fd, d->data + d->off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
        d->off += (size_t)w;
        d->step++;
    } else {
        cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "dribble send: %s", strerror(errno));
    }
}

Test(conn, frames_written_in_pieces)
{
    int fds = unit_count_fds();
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_FRAME;
    sctx x;
    setup(&x, &o, &base_cbs);
    cr_assert_eq(sk_conn_framing(x.conn), SK_FRAMING_FRAME);
    cr_assert_eq(sk_conn_loop(x.conn), x.loop);
    int cfd = sk_conn_fd(x.conn);
    cr_assert(cfd >= 0);
    cr_assert(fcntl(cfd, F_GETFL) & O_NONBLOCK, "adopted fd not made non-blocking");
    cr_assert(fcntl(cfd, F_GETFD) & FD_CLOEXEC, "adopted fd not close-on-exec");

    enum { BIG = 100 * 1024 };
    uint8_t *big = malloc(BIG);
    cr_assert_not_null(big);
    unit_pattern(big, BIG, 11);
    static const uint8_t bin[] = {0, '\n', '\r', 0xff, 0, 0, 0, 4};
    const struct {
        const void *p;
        uint32_t n;
    } frames[] = {{"hello", 5}, {"", 0},  {bin, sizeof bin}, {"", 0},
                  {big, BIG},   {"x", 1}, {"end", 3}};
    const int nf = (int)(sizeof frames / sizeof frames[0]);
    uint8_t *wire = malloc(BIG + 1024);
    cr_assert_not_null(wire);
    size_t wlen = 0;
    for (int i = 0; i < nf; i++)
        put_frame(wire, &wlen, frames[i].p, frames[i].n);

    x.close_after = nf;
    x.p.reading = 1;
    x.done_needs_peer_eof = 1;
    peer_start(&x);
    dribble d = {&x, wire, wlen, 0, 0};
    sk_timer *dt = NULL;
    cr_assert_eq(sk_timer_new(x.loop, on_dribble, &d, &dt), 0);
    sk_timer_start(dt, 1, 1);
    run(&x);

    cr_assert_eq(x.opened, 1);
    cr_assert(!x.msg_before_open, "on_message before on_open");
    cr_assert_eq(x.nmsgs, nf, "%d messages", x.nmsgs);
    for (int i = 0; i < nf; i++) {
        cr_assert_eq(x.lens[i], (size_t)frames[i].n, "frame %d: len %zu", i, x.lens[i]);
        cr_assert(frames[i].n == 0 || memcmp(x.msgs[i], frames[i].p, frames[i].n) == 0,
                  "frame %d payload differs", i);
    }
    cr_assert_eq(x.closed, 1);
    cr_assert_eq(x.close_err, 0, "orderly close gave %d", x.close_err);
    cr_assert_str_eq(x.reason, "", "no reason expected for an orderly close");
    cr_assert_eq(x.errors, 0);
    cr_assert_eq(x.bytes_in, (uint64_t)wlen);
    cr_assert(x.p.eof, "peer did not see EOF after sk_conn_close");
    cr_assert_eq(x.p.in_len, 0u);
    sk_timer_free(dt);
    teardown(&x);
    free(wire);
    free(big);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

Test(conn, lines_written_in_pieces)
{
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_LINE;
    sctx x;
    setup(&x, &o, &base_cbs);
    static const char wire[] = "hello\r\n\n\r\na\rb\nbin\x01\xff\n"
                               "end\n";
    const char *want[] = {"hello", "", "", "a\rb", "bin\x01\xff", "end"};
    x.close_after = 6;
    x.p.reading = 1;
    x.done_needs_peer_eof = 1;
    peer_start(&x);
    dribble d = {&x, (const uint8_t *)wire, sizeof wire - 1, 0, 0};
    sk_timer *dt = NULL;
    cr_assert_eq(sk_timer_new(x.loop, on_dribble, &d, &dt), 0);
    sk_timer_start(dt, 1, 1);
    run(&x);
    cr_assert_eq(x.nmsgs, 6);
    for (int i = 0; i < 6; i++) {
        cr_assert_eq(x.lens[i], strlen(want[i]), "line %d: len %zu", i, x.lens[i]);
        cr_assert(memcmp(x.msgs[i], want[i], x.lens[i]) == 0, "line %d differs", i);
    }
    cr_assert_eq(x.close_err, 0);
    sk_timer_free(dt);
    teardown(&x);
}

/* ------------------------------------------------------- protocol errors */

/* A declared frame length of max+1: on_error and on_close get -EMSGSIZE, a
 * reason is recorded, no message is delivered, the reply queued in on_error
 * reaches the peer, and the peer then sees EOF rather than a reset. */
Test(conn, oversize_frame_fails_connection)
{
    int fds = unit_count_fds();
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_FRAME;
    o.max_frame = 1024;
    o.linger_ms = 1000;
    sctx x;
    setup(&x, &o, &base_cbs);
    x.error_reply = "frame too large\n";
    uint8_t wire[4 + 100];
    wire[0] = 0;
    wire[1] = 0;
    wire[2] = 0x04;
    wire[3] = 0x01; /* 1025 */
    memset(wire + 4, 'B', 100);
    x.p.out = wire;
    x.p.out_len = sizeof wire;
    x.p.reading = 1;
    x.done_needs_peer_eof = 1;
    peer_start(&x);
    run(&x);
    cr_assert_eq(x.nmsgs, 0, "a message was delivered from an oversize frame");
    cr_assert_eq(x.errors, 1, "on_error called %d times", x.errors);
    cr_assert_eq(x.error_err, -EMSGSIZE, "on_error err %d", x.error_err);
    cr_assert_eq(x.closed, 1);
    cr_assert_eq(x.close_err, -EMSGSIZE, "on_close err %d (%s)", x.close_err,
                 sk_strerror(x.close_err));
    cr_assert(x.reason[0] != '\0', "sk_conn_reason empty after a protocol error");
    cr_assert(x.p.eof, "peer saw no EOF (read error %d: %s)", x.p.rd_err, strerror(x.p.rd_err));
    cr_assert_eq(x.p.rd_err, 0);
    cr_assert_eq(x.p.in_len, strlen(x.error_reply), "peer got %zu bytes", x.p.in_len);
    cr_assert(memcmp(x.p.in, x.error_reply, x.p.in_len) == 0);
    teardown(&x);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

Test(conn, oversize_line_fails_connection)
{
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_LINE;
    o.max_line = 16;
    o.linger_ms = 1000;
    sctx x;
    setup(&x, &o, &base_cbs);
    static const char wire[] = "short\n0123456789abcdefXYZ"; /* 19 bytes, no newline */
    x.p.out = (const uint8_t *)wire;
    x.p.out_len = sizeof wire - 1;
    x.p.reading = 1;
    x.done_needs_peer_eof = 1;
    peer_start(&x);
    run(&x);
    cr_assert_eq(x.nmsgs, 1, "only the short line is delivered (%d)", x.nmsgs);
    cr_assert_eq(x.lens[0], 5u);
    cr_assert_eq(x.errors, 1);
    cr_assert_eq(x.error_err, -EMSGSIZE);
    cr_assert_eq(x.close_err, -EMSGSIZE);
    cr_assert(x.reason[0] != '\0');
    cr_assert(x.p.eof);
    teardown(&x);
}

/* A declared 16 MiB frame with only a few bytes of it sent: memory is not
 * allocated from the declared length. Then sk_conn_abort closes with the
 * given code. */
static void on_check_mem(sk_timer *t, void *ud)
{
    sctx *x = ud;
    sk_timer_free(t);
    cr_assert_not_null(x->conn);
    size_t used = sk_mem_in_use();
    cr_assert(used < 1024 * 1024, "%zu bytes in use after a 16 MiB header and 10 bytes", used);
    cr_assert_eq(sk_conn_bytes_in(x->conn), 14u, "bytes_in %llu",
                 (unsigned long long)sk_conn_bytes_in(x->conn));
    sk_conn_abort(x->conn, -ECONNABORTED);
}

Test(conn, declared_length_not_preallocated)
{
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_FRAME;
    sctx x;
    setup(&x, &o, &base_cbs);
    uint8_t wire[14];
    const uint32_t n = SK_DEFAULT_MAX_FRAME - 1;
    wire[0] = (uint8_t)(n >> 24);
    wire[1] = (uint8_t)(n >> 16);
    wire[2] = (uint8_t)(n >> 8);
    wire[3] = (uint8_t)n;
    memset(wire + 4, 'd', 10);
    unit_write_all(x.p.fd, wire, sizeof wire);
    sk_timer *t = NULL;
    cr_assert_eq(sk_timer_new(x.loop, on_check_mem, &x, &t), 0);
    sk_timer_start(t, 50, 0);
    run(&x);
    cr_assert_eq(x.closed, 1);
    cr_assert_eq(x.close_err, -ECONNABORTED, "on_close err %d", x.close_err);
    cr_assert_eq(x.nmsgs, 0);
    char b;
    cr_assert_eq(recv(x.p.fd, &b, 1, MSG_DONTWAIT), 0, "peer sees the abort as EOF");
    teardown(&x);
}

/* ---------------------------------------------------------- backpressure */

enum { BULK = 2 * 1024 * 1024, HIGH = 64 * 1024, SMALL_FRAMES = 10 };

typedef struct bp {
    sctx *x;
    uint8_t *bulk;
    uint8_t frames[SMALL_FRAMES * 8];
    size_t frames_len;
    size_t queued_after_send;
    size_t queued_at_check;
    int msgs_while_paused;
    int unread_while_paused;
    int drains_before_reading;
} bp;

static bp *g_bp;

static void bp_on_open(sk_conn *c)
{
    on_open(c);
    cr_assert_eq(sk_conn_send(c, g_bp->bulk, BULK), 0);
    g_bp->queued_after_send = sk_conn_queued(c);
}

/* 20 ms in: the kernel holds what it can, the rest is queued above the high
 * water mark, so reading is paused. The peer now writes small frames. */
static void bp_phase1(sk_timer *t, void *ud)
{
    bp *b = ud;
    sk_timer_free(t);
    cr_assert_not_null(b->x->conn);
    b->queued_at_check = sk_conn_queued(b->x->conn);
    unit_write_all(b->x->p.fd, b->frames, b->frames_len);
}

/* 60 ms in: none of those frames may have been read; then the peer starts
 * reading, which lets output drain and reading resume. */
static void bp_phase2(sk_timer *t, void *ud)
{
    bp *b = ud;
    sk_timer_free(t);
    cr_assert_not_null(b->x->conn);
    b->msgs_while_paused = b->x->nmsgs;
    int unread = -1;
    cr_assert_eq(ioctl(sk_conn_fd(b->x->conn), FIONREAD, &unread), 0);
    b->unread_while_paused = unread;
    b->drains_before_reading = b->x->drains;
    b->x->p.reading = 1;
    peer_update(&b->x->p);
}

Test(conn, backpressure_pauses_reading_until_drained)
{
    int fds = unit_count_fds();
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_FRAME;
    o.out_high_water = HIGH;
    sk_conn_callbacks cbs = base_cbs;
    cbs.on_open = bp_on_open;
    sctx x;
    bp b = {.x = &x};
    g_bp = &b;
    b.bulk = malloc(BULK);
    cr_assert_not_null(b.bulk);
    unit_pattern(b.bulk, BULK, 0);
    for (int i = 0; i < SMALL_FRAMES; i++) {
        uint8_t payload[4] = {'m', (uint8_t)('0' + i), '!', '\n'};
        put_frame(b.frames, &b.frames_len, payload, 4);
    }
    setup(&x, &o, &cbs);
    x.close_after = SMALL_FRAMES;
    x.done_needs_peer_eof = 1; /* the peer starts reading in phase 2 */
    sk_timer *t1 = NULL, *t2 = NULL;
    cr_assert_eq(sk_timer_new(x.loop, bp_phase1, &b, &t1), 0);
    cr_assert_eq(sk_timer_new(x.loop, bp_phase2, &b, &t2), 0);
    sk_timer_start(t1, 20, 0);
    sk_timer_start(t2, 60, 0);
    run(&x);

    cr_assert_eq(b.queued_after_send, (size_t)BULK, "queued right after sk_conn_send: %zu",
                 b.queued_after_send);
    cr_assert(b.queued_at_check > HIGH, "queued %zu, not above the high water mark",
              b.queued_at_check);
    cr_assert_eq(b.msgs_while_paused, 0, "%d messages read while above high water",
                 b.msgs_while_paused);
    cr_assert_eq(b.unread_while_paused, (int)b.frames_len,
                 "%d of %zu peer bytes left in the socket while paused", b.unread_while_paused,
                 b.frames_len);
    cr_assert_eq(b.drains_before_reading, 0, "on_drain before the peer read anything");
    cr_assert_eq(x.drains, 1, "on_drain fired %d times", x.drains);
    cr_assert(x.queued_at_drain <= HIGH / 4, "on_drain with %zu queued (low water %d)",
              x.queued_at_drain, HIGH / 4);
    cr_assert_eq(x.nmsgs, SMALL_FRAMES, "after the drain %d messages", x.nmsgs);
    for (int i = 0; i < SMALL_FRAMES; i++) {
        cr_assert_eq(x.lens[i], 4u);
        cr_assert_eq(x.msgs[i][1], '0' + i);
    }
    cr_assert_eq(x.close_err, 0);
    cr_assert(x.p.eof);
    cr_assert_eq(x.p.in_len, (size_t)BULK, "peer received %zu of %d", x.p.in_len, BULK);
    cr_assert(unit_pattern_ok(x.p.in, BULK, 0), "bulk data corrupted");
    cr_assert_eq(x.bytes_out, (uint64_t)BULK);
    teardown(&x);
    free(b.bulk);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

/* --------------------------------------------------------- graceful close */

static int g_send_after_close;

static void close_on_open(sk_conn *c)
{
    on_open(c);
    cr_assert_eq(sk_conn_send(c, g_bp->bulk, BULK), 0);
    sk_conn_close(c);
    g_send_after_close = sk_conn_send(c, "x", 1);
}

Test(conn, close_flushes_queued_output)
{
    int fds = unit_count_fds();
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_RAW;
    sk_conn_callbacks cbs = base_cbs;
    cbs.on_open = close_on_open;
    sctx x;
    bp b = {.x = &x};
    g_bp = &b;
    b.bulk = malloc(BULK);
    cr_assert_not_null(b.bulk);
    unit_pattern(b.bulk, BULK, 5);
    setup(&x, &o, &cbs);
    x.p.reading = 1;
    x.done_needs_peer_eof = 1;
    peer_start(&x);
    run(&x);
    cr_assert_eq(g_send_after_close, -EPIPE, "sk_conn_send after close gave %d",
                 g_send_after_close);
    cr_assert_eq(x.closed, 1);
    cr_assert_eq(x.close_err, 0);
    cr_assert(x.p.eof);
    cr_assert_eq(x.p.rd_err, 0);
    cr_assert_eq(x.p.in_len, (size_t)BULK, "peer got %zu of %d bytes", x.p.in_len, BULK);
    cr_assert(unit_pattern_ok(x.p.in, BULK, 5));
    teardown(&x);
    free(b.bulk);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

/* -------------------------------------------------------------- half-close */

/* Parses the peer's input as frames; returns how many, filling lens. */
static int split_frames(const uint8_t *in, size_t len, size_t *lens, const uint8_t **pay, int max)
{
    int n = 0;
    size_t off = 0;
    while (off + 4 <= len && n < max) {
        size_t fl = (size_t)in[off] << 24 | (size_t)in[off + 1] << 16 | (size_t)in[off + 2] << 8 |
                    in[off + 3];
        if (off + 4 + fl > len)
            break;
        lens[n] = fl;
        pay[n] = in + off + 4;
        n++;
        off += 4 + fl;
    }
    return off == len ? n : -1;
}

/* Echo with on_eof NULL: the peer sends frames larger than the socket
 * buffers and shuts down its write side; every echo still arrives, then EOF. */
Test(conn, half_close_default_finishes_replies)
{
    int fds = unit_count_fds();
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_FRAME;
    sctx x;
    setup(&x, &o, &base_cbs);
    x.echo = 1;
    enum { F = 300 * 1024 };
    uint8_t *wire = malloc(3 * (F + 4) + 4 + 16);
    cr_assert_not_null(wire);
    uint8_t *pay = malloc(F);
    cr_assert_not_null(pay);
    size_t wlen = 0;
    for (int i = 0; i < 3; i++) {
        unit_pattern(pay, F, (size_t)i * 1000);
        put_frame(wire, &wlen, pay, F);
    }
    put_frame(wire, &wlen, "", 0);
    put_frame(wire, &wlen, "last", 4);
    x.p.out = wire;
    x.p.out_len = wlen;
    x.p.shut_after = 1;
    x.p.reading = 1;
    x.done_needs_peer_eof = 1;
    peer_start(&x);
    run(&x);
    cr_assert_eq(x.nmsgs, 5);
    cr_assert_eq(x.closed, 1);
    cr_assert_eq(x.close_err, 0, "close err %d", x.close_err);
    cr_assert(x.p.eof);
    cr_assert_eq(x.p.rd_err, 0);
    cr_assert_eq(x.p.in_len, wlen, "peer got %zu of %zu echoed bytes", x.p.in_len, wlen);
    cr_assert(memcmp(x.p.in, wire, wlen) == 0, "echo differs");
    cr_assert_eq(x.bytes_in, (uint64_t)wlen);
    cr_assert_eq(x.bytes_out, (uint64_t)wlen);
    teardown(&x);
    free(wire);
    free(pay);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

/* With on_eof set: every message arrives before on_eof, which can still
 * reply; the reply arrives, then EOF. */
static int g_msgs_at_eof;

static void eof_reply(sk_conn *c)
{
    sctx *x = ctx_of(c);
    x->eofs++;
    g_msgs_at_eof = x->nmsgs;
    cr_assert_eq(sk_conn_send_msg(c, "bye", 3), 0);
    sk_conn_close(c);
}

Test(conn, half_close_on_eof_replies)
{
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_FRAME;
    sk_conn_callbacks cbs = base_cbs;
    cbs.on_eof = eof_reply;
    sctx x;
    setup(&x, &o, &cbs);
    x.echo = 1;
    uint8_t wire[64];
    size_t wlen = 0;
    put_frame(wire, &wlen, "one", 3);
    put_frame(wire, &wlen, "two", 3);
    put_frame(wire, &wlen, "three", 5);
    unit_write_all(x.p.fd, wire, wlen);
    cr_assert_eq(shutdown(x.p.fd, SHUT_WR), 0);
    x.p.reading = 1;
    x.done_needs_peer_eof = 1;
    peer_start(&x);
    run(&x);
    cr_assert_eq(x.eofs, 1, "on_eof called %d times", x.eofs);
    cr_assert_eq(g_msgs_at_eof, 3, "on_eof before all messages (%d)", g_msgs_at_eof);
    size_t lens[8];
    const uint8_t *pay[8];
    int n = split_frames(x.p.in, x.p.in_len, lens, pay, 8);
    cr_assert_eq(n, 4, "peer got %d whole frames (%zu bytes)", n, x.p.in_len);
    cr_assert(lens[0] == 3 && memcmp(pay[0], "one", 3) == 0);
    cr_assert(lens[1] == 3 && memcmp(pay[1], "two", 3) == 0);
    cr_assert(lens[2] == 5 && memcmp(pay[2], "three", 5) == 0);
    cr_assert(lens[3] == 3 && memcmp(pay[3], "bye", 3) == 0);
    cr_assert(x.p.eof);
    cr_assert_eq(x.close_err, 0);
    teardown(&x);
}

/* sk_conn_send_msg in line framing appends "\n"; sk_conn_send_msgv gathers. */
static void msgv_on_open(sk_conn *c)
{
    on_open(c);
    cr_assert_eq(sk_conn_send_msg(c, "abc", 3), 0);
    struct iovec iov[3] = {{(void *)"de", 2}, {(void *)"", 0}, {(void *)"fgh", 3}};
    cr_assert_eq(sk_conn_send_msgv(c, iov, 3), 0);
    cr_assert_eq(sk_conn_send_msg(c, "", 0), 0);
    sk_conn_close(c);
}

Test(conn, send_msg_line_framing)
{
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_LINE;
    sk_conn_callbacks cbs = base_cbs;
    cbs.on_open = msgv_on_open;
    sctx x;
    setup(&x, &o, &cbs);
    x.p.reading = 1;
    x.done_needs_peer_eof = 1;
    peer_start(&x);
    run(&x);
    cr_assert_eq(x.p.in_len, 11u, "got %zu bytes", x.p.in_len);
    cr_assert(memcmp(x.p.in, "abc\ndefgh\n\n", 11) == 0);
    teardown(&x);
}

static void msgv_frame_on_open(sk_conn *c)
{
    on_open(c);
    struct iovec iov[2] = {{(void *)"he", 2}, {(void *)"llo", 3}};
    cr_assert_eq(sk_conn_send_msgv(c, iov, 2), 0);
    cr_assert_eq(sk_conn_send_msg(c, "", 0), 0);
    sk_conn_close(c);
}

Test(conn, send_msgv_frame_framing)
{
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_FRAME;
    sk_conn_callbacks cbs = base_cbs;
    cbs.on_open = msgv_frame_on_open;
    sctx x;
    setup(&x, &o, &cbs);
    x.p.reading = 1;
    x.done_needs_peer_eof = 1;
    peer_start(&x);
    run(&x);
    static const uint8_t want[] = {0, 0, 0, 5, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 0};
    cr_assert_eq(x.p.in_len, sizeof want, "got %zu bytes", x.p.in_len);
    cr_assert(memcmp(x.p.in, want, sizeof want) == 0);
    teardown(&x);
}

Test(conn, adopt_bad_fd_fails)
{
    sk_loop *loop = NULL;
    cr_assert_eq(sk_loop_new(&loop), 0);
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    sk_conn *c = (sk_conn *)0x1;
    int r = sk_conn_adopt(loop, -1, &o, &base_cbs, NULL, &c);
    cr_assert(r < 0, "adopting fd -1 gave %d", r);
    cr_assert_eq(c, (sk_conn *)0x1, "*out changed on failure");
    sk_loop_free(loop);
}

Test(conn, opts_defaults)
{
    sk_conn_opts o;
    memset(&o, 0xA5, sizeof o);
    sk_conn_opts_init(&o);
    cr_assert_eq(o.framing, SK_FRAMING_RAW);
    cr_assert_eq(o.max_line, (size_t)SK_DEFAULT_MAX_LINE);
    cr_assert_eq(o.max_frame, (size_t)SK_DEFAULT_MAX_FRAME);
    cr_assert_eq(o.out_high_water, (size_t)1024 * 1024);
    cr_assert_eq(o.out_low_water, o.out_high_water / 4);
    cr_assert_eq(o.idle_timeout_ms, 0u);
    cr_assert_eq(o.frame_timeout_ms, 0u);
    cr_assert_eq(o.linger_ms, 2000u);
}

/* ------------------------------------- random message sizes, random reads */

/* Echoes every message and counts; closes after x->close_after. Messages
 * are not kept (there are hundreds of them). */
static void echo_count_message(sk_conn *c, const uint8_t *data, size_t len)
{
    sctx *x = ctx_of(c);
    x->counted++;
    cr_assert_eq(sk_conn_send_msg(c, data, len), 0);
    if (x->counted == x->close_after)
        sk_conn_close(c);
}

typedef struct rdribble {
    sctx *x;
    const uint8_t *data;
    size_t len, off;
    uint64_t rng;
} rdribble;

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Pieces of 1 byte to 160 KiB, so that message boundaries, headers and the
 * 64 KiB read size fall everywhere within a read. */
static void on_rdribble(sk_timer *t, void *ud)
{
    rdribble *d = ud;
    for (int k = 0; k < 4 && d->off < d->len; k++) {
        uint64_t r = xorshift(&d->rng);
        size_t n = (r & 3) == 0 ? 1 + (size_t)(r >> 8) % 7 : 1 + (size_t)(r >> 8) % (160 * 1024);
        if (n > d->len - d->off)
            n = d->len - d->off;
        ssize_t w = send(d->x->p.fd, d->data + d->off, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w <= 0) {
            cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "dribble send: %s", strerror(errno));
            return;
        }
        d->off += (size_t)w;
    }
    if (d->off == d->len)
        sk_timer_stop(t);
}

/* Sizes around every boundary the read path has: the small and large
 * buffer sizes, the 64 KiB read, a frame larger than several reads. */
static size_t random_msg_size(uint64_t *rng)
{
    static const size_t sizes[] = {0,     1,     3,     4,      60,     4092,  4096,
                                   4100,  8187,  8188,  8192,   32767,  32768, 65531,
                                   65532, 65536, 70000, 200000, 1 << 20};
    uint64_t r = xorshift(rng);
    return sizes[(r >> 5) % (sizeof sizes / sizeof sizes[0])];
}

static void echo_random_stream(enum sk_framing framing, uint64_t seed)
{
    int fds = unit_count_fds();
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = framing;
    o.max_frame = 2u << 20;
    o.max_line = 2u << 20;
    sk_conn_callbacks cbs = base_cbs;
    cbs.on_message = echo_count_message;
    sctx x;
    setup(&x, &o, &cbs);

    enum { NMSG = 160 };
    uint64_t rng = seed;
    size_t cap = 0, sizes[NMSG];
    for (int i = 0; i < NMSG; i++) {
        sizes[i] = random_msg_size(&rng);
        cap += sizes[i] + 4;
    }
    uint8_t *wire = malloc(cap);
    cr_assert_not_null(wire);
    size_t wlen = 0;
    for (int i = 0; i < NMSG; i++) {
        uint8_t *p = wire + wlen + (framing == SK_FRAMING_FRAME ? 4 : 0);
        unit_pattern(p, sizes[i], (unsigned)i);
        if (framing == SK_FRAMING_FRAME) {
            put_frame(wire, &wlen, p, (uint32_t)sizes[i]);
        } else {
            for (size_t k = 0; k < sizes[i]; k++)
                if (p[k] == '\n' || p[k] == '\r')
                    p[k] = 'n';
            p[sizes[i]] = '\n';
            wlen += sizes[i] + 1;
        }
    }
    x.close_after = NMSG;
    x.p.reading = 1;
    x.done_needs_peer_eof = 1;
    peer_start(&x);
    rdribble d = {&x, wire, wlen, 0, seed * 7 + 1};
    sk_timer *dt = NULL;
    cr_assert_eq(sk_timer_new(x.loop, on_rdribble, &d, &dt), 0);
    sk_timer_start(dt, 1, 1);
    run(&x);

    cr_assert_eq(x.counted, NMSG, "%d messages", x.counted);
    cr_assert_eq(x.errors, 0, "error %d: %s", x.error_err, x.reason);
    cr_assert_eq(x.close_err, 0, "close: %s", x.reason);
    cr_assert_eq(x.p.in_len, wlen, "echoed %zu of %zu bytes", x.p.in_len, wlen);
    for (size_t k = 0; k < wlen; k++)
        if (x.p.in[k] != wire[k])
            cr_assert_fail("echo differs at byte %zu of %zu", k, wlen);
    sk_timer_free(dt);
    teardown(&x);
    free(wire);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

Test(conn, frames_of_random_sizes_in_random_reads)
{
    echo_random_stream(SK_FRAMING_FRAME, 0x9e3779b97f4a7c15u);
    echo_random_stream(SK_FRAMING_FRAME, 12345);
}

Test(conn, lines_of_random_sizes_in_random_reads)
{
    echo_random_stream(SK_FRAMING_LINE, 0x2545f4914f6cdd1du);
}

/* ------------------------------- replies sent straight from the read buffer */

/* Echoes odd messages as they came (sent from the read buffer, not
 * copied) and answers even ones with their bytes reversed (copied): the
 * two kinds interleave within one read, so order must be kept. */
static void mixed_reply_message(sk_conn *c, const uint8_t *data, size_t len)
{
    sctx *x = ctx_of(c);
    x->counted++;
    if (x->counted % 2) {
        cr_assert_eq(sk_conn_send_msg(c, data, len), 0);
    } else {
        int err = 0;
        uint8_t *p = sk_conn_prepare_msg(c, len, &err);
        cr_assert_not_null(p, "prepare_msg: %d", err);
        for (size_t i = 0; i < len; i++)
            p[i] = data[len - 1 - i];
    }
    if (x->counted == x->close_after)
        sk_conn_close(c);
}

static void on_start_reading(sk_timer *t, void *ud)
{
    sctx *x = ud;
    (void)t;
    x->p.reading = 1;
    peer_update(&x->p);
}

/* A peer that reads nothing for 300 ms behind small socket buffers: the
 * replies sent from the read buffer are cut short by the kernel and the
 * rest must follow, in order, through the output buffer. */
static void replies_to_slow_reader(enum sk_framing framing, bool mixed)
{
    int fds = unit_count_fds();
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = framing;
    sk_conn_callbacks cbs = base_cbs;
    cbs.on_message = mixed ? mixed_reply_message : echo_count_message;
    sctx x;
    setup(&x, &o, &cbs);
    int small = 16384;
    cr_assert_eq(setsockopt(sk_conn_fd(x.conn), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
    cr_assert_eq(setsockopt(x.p.fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);

    enum { NMSG = 600, SIZE = 1000 };
    size_t unit = framing == SK_FRAMING_FRAME ? SIZE + 4 : SIZE + 1;
    uint8_t *wire = malloc(NMSG * unit), *want = malloc(NMSG * unit);
    cr_assert(wire && want);
    size_t wlen = 0;
    for (int i = 0; i < NMSG; i++) {
        uint8_t body[SIZE];
        unit_pattern(body, SIZE, (size_t)i * 7);
        if (framing == SK_FRAMING_LINE)
            for (size_t k = 0; k < SIZE; k++)
                if (body[k] == '\n' || body[k] == '\r')
                    body[k] = 'n';
        uint8_t rev[SIZE];
        for (size_t k = 0; k < SIZE; k++)
            rev[k] = body[SIZE - 1 - k];
        const uint8_t *reply = (mixed && i % 2 == 1) ? rev : body;
        size_t at = wlen;
        if (framing == SK_FRAMING_FRAME) {
            put_frame(wire, &wlen, body, SIZE);
            size_t w2 = at;
            put_frame(want, &w2, reply, SIZE);
        } else {
            memcpy(wire + wlen, body, SIZE);
            wire[wlen + SIZE] = '\n';
            memcpy(want + at, reply, SIZE);
            want[at + SIZE] = '\n';
            wlen += SIZE + 1;
        }
    }
    x.close_after = NMSG;
    x.done_needs_peer_eof = 1;
    x.p.out = wire;
    x.p.out_len = wlen;
    peer_start(&x);
    sk_timer *st = NULL;
    cr_assert_eq(sk_timer_new(x.loop, on_start_reading, &x, &st), 0);
    sk_timer_start(st, 300, 0);
    run(&x);
    cr_assert_eq(x.counted, NMSG, "%d messages", x.counted);
    cr_assert_eq(x.close_err, 0, "close: %s", x.reason);
    cr_assert_eq(x.p.in_len, wlen, "got %zu of %zu bytes", x.p.in_len, wlen);
    for (size_t k = 0; k < wlen; k++)
        if (x.p.in[k] != want[k])
            cr_assert_fail("reply differs at byte %zu of %zu", k, wlen);
    sk_timer_free(st);
    teardown(&x);
    free(wire);
    free(want);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

Test(conn, echo_replies_reach_a_slow_reader_in_order)
{
    replies_to_slow_reader(SK_FRAMING_FRAME, false);
    replies_to_slow_reader(SK_FRAMING_LINE, false);
}

Test(conn, echoed_and_copied_replies_keep_their_order)
{
    replies_to_slow_reader(SK_FRAMING_FRAME, true);
    replies_to_slow_reader(SK_FRAMING_LINE, true);
}

/* A close while the connect is still in progress: the connection dies in
 * CONNECTING, on_open never runs, and the client still hears on_close, with
 * -ECONNABORTED (the state machine keeps that owed past DEAD). */
typedef struct cclose {
    sk_loop *loop;
    int opens, closes, err;
} cclose;

static void cc_open(sk_conn *c)
{
    cclose *x = sk_conn_data(c);
    x->opens++;
}

static void cc_close(sk_conn *c, int err)
{
    cclose *x = sk_conn_data(c);
    x->closes++;
    x->err = err;
}

Test(conn, close_while_connecting_still_reports_on_close)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(lfd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(lfd, 4), 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    int fds = unit_count_fds();
    cclose x = {0};
    cr_assert_eq(sk_loop_new(&x.loop), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    sk_conn_callbacks cbs = {.on_open = cc_open, .on_close = cc_close};
    sk_conn *c = NULL;
    cr_assert_eq(
        sk_conn_connect_fd(x.loop, fd, (struct sockaddr *)&sa, sizeof sa, NULL, &cbs, &x, 5000, &c),
        0);
    sk_conn_close(c);
    cr_assert_eq(x.closes, 0, "on_close runs after the current batch, not inside sk_conn_close");
    unit_watchdog w;
    unit_watchdog_start(&w, x.loop, 5000);
    sk_loop_run(x.loop);
    cr_assert_eq(unit_watchdog_end(&w), 0, "the loop hung");
    sk_loop_free(x.loop);
    cr_assert_eq(x.opens, 0, "on_open ran for a connection closed while connecting");
    cr_assert_eq(x.closes, 1, "on_close owed to the client (%d calls)", x.closes);
    cr_assert_eq(x.err, -ECONNABORTED, "on_close err %d", x.err);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
    close(lfd);
}

/* ------------------------------------------- the frame clock and pauses */

/* A partial frame held while the service has paused reading cannot
 * complete, and that is not the peer's doing: the frame clock stops while
 * paused and starts again from zero on resume. Frame 1 pauses the
 * connection for 600 ms with half of frame 2 already read (frame timeout
 * 200 ms); the rest of frame 2 comes 50 ms after the resume. */
typedef struct fc {
    sctx *x;
    sk_timer *resume, *rest;
    uint8_t out[64];
    size_t split, len;
} fc;

static fc *g_fc;

static void fc_on_message(sk_conn *c, const uint8_t *data, size_t len)
{
    on_message(c, data, len);
    if (g_fc->x->nmsgs == 1) {
        sk_conn_pause(c);
        sk_timer_start(g_fc->resume, 600, 0);
        sk_timer_start(g_fc->rest, 650, 0);
    }
}

static void fc_resume(sk_timer *t, void *ud)
{
    fc *f = ud;
    (void)t;
    if (f->x->conn != NULL)
        sk_conn_resume(f->x->conn);
}

static void fc_rest(sk_timer *t, void *ud)
{
    fc *f = ud;
    (void)t;
    ssize_t n = send(f->x->p.fd, f->out + f->split, f->len - f->split, MSG_NOSIGNAL);
    cr_assert_eq(n, (ssize_t)(f->len - f->split), "send: %s", strerror(errno));
}

Test(conn, frame_clock_stops_while_reading_is_paused)
{
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_FRAME;
    o.frame_timeout_ms = 200;
    sk_conn_callbacks cbs = base_cbs;
    cbs.on_message = fc_on_message;
    sctx x;
    fc f = {.x = &x};
    g_fc = &f;
    put_frame(f.out, &f.len, "one", 3);
    put_frame(f.out, &f.len, "twotwo", 6);
    f.split = f.len - 3; /* frame 2's header and half its payload first */
    setup(&x, &o, &cbs);
    cr_assert_eq(sk_timer_new(x.loop, fc_resume, &f, &f.resume), 0);
    cr_assert_eq(sk_timer_new(x.loop, fc_rest, &f, &f.rest), 0);
    x.close_after = 2;
    x.p.out = f.out;
    x.p.out_len = f.split;
    x.p.reading = 1;
    peer_start(&x);
    run(&x);
    cr_assert_eq(x.nmsgs, 2, "%d messages (reason: %s)", x.nmsgs, x.reason);
    cr_assert_eq(x.close_err, 0, "closed with %d: %s", x.close_err, x.reason);
    cr_assert_eq(x.lens[1], 6u);
    cr_assert_eq(memcmp(x.msgs[1], "twotwo", 6), 0);
    sk_timer_free(f.resume);
    sk_timer_free(f.rest);
    teardown(&x);
}
