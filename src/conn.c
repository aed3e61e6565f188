/* conn.c — a stream connection's life: creation (accepted, adopted,
 * connecting), the TLS handshake, the event and timer dispatch, the three
 * ways to close (graceful, lingering on protocol errors, abort), and the
 * accessors. Bytes in are conn_read.c's, bytes out conn_write.c's. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "conn.h"

static void conn_event(sk_watch *w, uint32_t events);
static void conn_timer(sk_timer *t, void *ud);

/* ------------------------------------------------------------ helpers */

/* Records why the connection ends; returns whether this was the first
 * reason (the one counted in sk_stats: resets and memory refusals here,
 * timeouts and protocol errors by the callers that know which). */
bool sk__conn_set_reason(sk_conn *c, int err, const char *fmt, ...)
{
    if (c->reason != NULL)
        return false; /* the first reason is the real one */
    c->err = err;
    if (err == -ENOBUFS)
        sk__stat_add(SK__STAT_ERR_NOBUFS, 1);
    else if (err == -ECONNRESET || err == -EPIPE)
        sk__stat_add(SK__STAT_ERR_RESET, 1);
    char text[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    c->reason = strdup(text);
    return true;
}

/* Shuts the write side: close_notify first under TLS, then the TCP FIN. */
int sk__conn_shut_wr(sk_conn *c)
{
    if (c->tls != NULL)
        sk__tls_close_notify(c->tls);
    return shutdown(c->w.fd, SHUT_WR);
}

void sk__conn_update_events(sk_conn *c)
{
    /* While sk_conn_connect races its attempts, c has no socket yet. */
    if ((c->st & CS_DEAD) || c->dialer != NULL)
        return;
    uint32_t ev = 0;
    if (c->st & CS_CONNECTING)
        ev = EPOLLOUT;
    else if (c->st & CS_HANDSHAKE)
        ev = sk__tls_want(c->tls) == SK_WRITABLE ? EPOLLOUT : EPOLLIN;
    else {
        if (sk__conn_reading_allowed(c))
            ev |= EPOLLIN;
        if (c->st & (CF_WANT_OUT | CF_TLS_READ_OUT))
            ev |= EPOLLOUT;
        /* Decrypted bytes already inside OpenSSL raise no epoll event. */
        if (c->tls && (ev & EPOLLIN) && sk__tls_pending(c->tls))
            sk__conn_schedule_pending(c);
    }
    int err = sk__watch_set(c->loop, &c->w, ev);
    if (err < 0) {
        sk__conn_set_reason(c, err, "epoll: %s", sk_strerror(err));
        sk__conn_finalize(c);
    }
}

static size_t max_for(const sk_conn_opts *o)
{
    return o->framing == SK_FRAMING_LINE ? o->max_line : o->max_frame;
}

/* Arms the connection's one timer for the earliest of its deadlines. The
 * idle deadline moves with every byte, but the timer is only moved when it
 * fires (it then re-arms for the real deadline): no heap work per read. */
void sk__conn_arm_timer(sk_conn *c)
{
    const sk_conn_opts *o = c->opts;
    uint64_t deadline = UINT64_MAX;
    if (o->idle_timeout_ms)
        deadline = c->last_active + o->idle_timeout_ms;
    if (o->frame_timeout_ms && c->frame_start && !(c->st & FRAME_CLOCK_STOPPED)) {
        uint64_t d = c->frame_start + o->frame_timeout_ms;
        if (d < deadline)
            deadline = d;
    }
    if (c->deadline && c->deadline < deadline)
        deadline = c->deadline;
    if (deadline == UINT64_MAX) {
        sk_timer_stop(&c->timer);
        return;
    }
    uint64_t now = c->loop->now;
    sk_timer_start(&c->timer, deadline > now ? deadline - now : 0, 0);
}

/* -------------------------------------------------------------- close */

/* Output is flushed and a close was asked for: shut down our side, then
 * either close at once (the peer already finished) or linger. */
void sk__conn_start_close(sk_conn *c)
{
    if (c->st & (CS_DEAD | CS_LINGER))
        return;
    if (c->st & CF_PEER_EOF) {
        if (c->tls) /* a clean end, said the TLS way too */
            sk__tls_close_notify(c->tls);
        sk__conn_finalize(c);
        return;
    }
    if (sk__conn_shut_wr(c) < 0) {
        sk__conn_finalize(c);
        return;
    }
    sk__conn_set_state(c, CS_LINGER);
    c->st |= CF_SHUT_SENT;
    sk__buf_release(c->loop, &c->in);
    sk__conn_update_events(c);
    sk_timer_start(&c->timer, c->opts->linger_ms, 0);
}

void sk_conn_close(sk_conn *c)
{
    sk__conn_echo_settle(c);
    if (c->st & CS_ENDING)
        return;
    if (c->st & (CS_CONNECTING | CS_HANDSHAKE)) {
        sk__conn_finalize(c);
        return;
    }
    sk__conn_set_state(c, CS_CLOSING);
    sk__conn_update_events(c);
    if (sk__conn_out_queued(c) == 0)
        sk__conn_start_close(c);
    else if (!(c->st & CF_WANT_OUT))
        sk__conn_schedule_flush(c);
}

void sk_conn_fail(sk_conn *c, int err, const char *reason)
{
    if (reason != NULL)
        sk__conn_set_reason(c, err, "%s", reason);
    else if (c->reason == NULL)
        sk__conn_set_reason(c, err, "%s", sk_strerror(err));
    sk_conn_close(c);
}

void sk_conn_abort(sk_conn *c, int err)
{
    if (c->st & CS_DEAD)
        return;
    sk__conn_set_reason(c, err, "%s", err ? sk_strerror(err) : "closed");
    sk__conn_finalize(c);
}

void sk_conn_shutdown(sk_conn *c)
{
    sk__conn_echo_settle(c);
    if (c->st & (CS_ENDING | CF_SHUT_ASKED))
        return;
    c->st |= CF_SHUT_ASKED;
    if (sk__conn_out_queued(c) == 0 && !(c->st & CS_HANDSHAKE)) {
        c->st |= CF_SHUT_SENT;
        sk__conn_shut_wr(c);
    }
}

/* Schedules the final close: no more events, on_close after the current
 * batch of callbacks. */
void sk__conn_finalize(sk_conn *c)
{
    if (c->st & CS_DEAD)
        return;
    /* Whether a client is owed on_close for a connection never opened
     * (sk__conn_destroy), kept past the state it died in. */
    if (c->st & (CS_CONNECTING | CS_HANDSHAKE))
        c->st |= CF_DIED_OPENING;
    sk__conn_set_state(c, CS_DEAD);
    c->st |= CF_IN_CLOSE;
    sk__conn_dialer_free(c); /* no attempt may win for a dead connection */
    sk__watch_del(c->loop, &c->w);
    sk_timer_stop(&c->timer);
    c->close_next = c->loop->close_head;
    c->loop->close_head = c;
}

/* The link of a singly linked work list (flush, pending, close) that sits at
 * offset off in each connection. */
static sk_conn **work_next(sk_conn *c, size_t off) { return (sk_conn **)(void *)((char *)c + off); }

/* Removes c from such a work list; only used when a connection is destroyed
 * outside the normal end-of-iteration path (server or loop free), so the
 * linear walk is not on any hot path. */
static void unlink_work(sk_conn **pp, sk_conn *c, size_t off)
{
    for (; *pp; pp = work_next(*pp, off)) {
        if (*pp == c) {
            *pp = *work_next(c, off);
            return;
        }
    }
}

void sk__conn_destroy(sk_conn *c, bool call_close_cb)
{
    sk_loop *loop = c->loop;
    if (c->st & CF_IN_FLUSH)
        unlink_work(&loop->flush_head, c, offsetof(sk_conn, flush_next));
    if (c->st & CF_IN_PENDING)
        unlink_work(&loop->pending_head, c, offsetof(sk_conn, pending_next));
    if (c->st & CF_IN_CLOSE)
        unlink_work(&loop->close_head, c, offsetof(sk_conn, close_next));
    c->st &= ~(CF_IN_FLUSH | CF_IN_PENDING | CF_IN_CLOSE);
    if (call_close_cb && (c->st & CF_OPENED) && c->cbs->on_close)
        c->cbs->on_close(c, c->err);
    else if (call_close_cb && (c->st & (CS_CONNECTING | CS_HANDSHAKE | CF_DIED_OPENING)) &&
             c->srv == NULL && c->cbs->on_close)
        c->cbs->on_close(c, c->err ? c->err : -ECONNABORTED);
    sk__watch_del(loop, &c->w);
    sk_timer_stop(&c->timer);
    sk__stat_local_queued(c->loop, -(int64_t)c->queued_counted);
    if (c->srv)
        sk__server_conn_gone(c->srv, c);
    sk__list_remove(&loop->conns, &c->link);
    loop->refs--;
    sk__conn_dialer_free(c);
    sk__tls_free(c->tls);
    if (c->w.fd >= 0)
        close(c->w.fd);
    sk__buf_release(loop, &c->in);
    sk__buf_release(loop, &c->out);
    sk__outq_free(c->outq);
    free(c->reason);
    free(c->peer);
    free(c->owned_cfg);
    free(c);
}

void sk__conns_destroy_all(sk_loop *loop)
{
    while (loop->conns)
        sk__conn_destroy(SK_LIST_ITEM(loop->conns, sk_conn, link), false);
}

void sk__conns_finalize(sk_loop *loop)
{
    while (loop->close_head) {
        sk_conn *c = loop->close_head;
        loop->close_head = c->close_next;
        c->st &= ~CF_IN_CLOSE;
        sk__conn_destroy(c, true);
    }
}

/* ------------------------------------------------------------- events */

/* A handshake that fails is logged here for server connections: the
 * service never saw them (on_open had not run), so it cannot. */
static void tls_failed(sk_conn *c, int err, const char *why)
{
    sk__conn_set_reason(c, err, "%s", why);
    if (c->srv != NULL)
        sk_log(SK_LOG_INFO, "tls: %s dropped: %s", sk_conn_peer(c), why);
    sk__conn_finalize(c);
}

/* The handshake starts: its deadline runs from now (a protocol
 * handshake must finish in bounded time however the peer trickles). */
static void tls_begin(sk_conn *c)
{
    sk__conn_set_state(c, CS_HANDSHAKE);
    uint32_t ms =
        c->opts->handshake_timeout_ms ? c->opts->handshake_timeout_ms : SK_TLS_DEFAULT_HANDSHAKE_MS;
    c->deadline = c->loop->now + ms;
    snprintf(c->deadline_reason, sizeof c->deadline_reason, "TLS handshake not finished in time");
    sk__conn_arm_timer(c);
}

/* One step of the handshake on readiness. Once complete the connection is
 * open as a plain one would be: on_open, then the usual reads and writes. */
static void tls_step(sk_conn *c)
{
    char why[300];
    int r = sk__tls_handshake(c->tls, why, sizeof why);
    if (r < 0) {
        tls_failed(c, r, why);
        return;
    }
    if (r == 0) {
        sk__conn_update_events(c);
        return;
    }
    sk__conn_set_state(c, CS_OPEN);
    c->st |= CF_OPENED;
    c->deadline = 0;
    c->last_active = c->loop->now;
    sk__conn_arm_timer(c);
    sk__conn_update_events(c);
    char d[120];
    sk__tls_describe(c->tls, d, sizeof d);
    sk_log(SK_LOG_DEBUG, "tls: %s %s", sk_conn_peer(c), d);
    if (c->cbs->on_open)
        c->cbs->on_open(c);
    if (sk__conn_out_queued(c) > 0 && !(c->st & (CS_DEAD | CF_WANT_OUT)))
        sk__conn_schedule_flush(c);
}

/* sk_conn_connect_fd's one connect has an outcome (or a spurious wakeup). */
static void connect_done(sk_conn *c)
{
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(c->w.fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr == EINPROGRESS || soerr == EALREADY)
        return;
    if (soerr != 0) {
        sk__conn_set_reason(c, -soerr, "connect: %s", sk_strerror(-soerr));
        sk__conn_finalize(c);
        return;
    }
    sk__conn_connected(c);
}

/* The connect has succeeded on c->w.fd: the TLS handshake next, or open. */
void sk__conn_connected(sk_conn *c)
{
    c->last_active = c->loop->now;
    if (c->tls) {
        tls_begin(c);
        tls_step(c);
        return;
    }
    sk__conn_set_state(c, CS_OPEN);
    c->st |= CF_OPENED;
    sk__conn_arm_timer(c);
    sk__conn_update_events(c);
    if (c->cbs->on_open)
        c->cbs->on_open(c);
    if (sk__conn_out_queued(c) > 0 && !(c->st & CS_DEAD))
        sk__conn_schedule_flush(c);
}

static void conn_event(sk_watch *w, uint32_t events)
{
    sk_conn *c = SK_CONTAINER_OF(w, sk_conn, w);
    if (c->st & CS_CONNECTING) {
        connect_done(c);
        return;
    }
    if (c->st & CS_HANDSHAKE) {
        tls_step(c);
        return;
    }
    if ((events & EPOLLOUT) && (c->st & CF_WANT_OUT))
        sk__conn_write_out(c);
    if (c->st & CS_DEAD)
        return;
    if ((events & EPOLLOUT) && (c->st & CF_TLS_READ_OUT)) {
        c->st &= ~CF_TLS_READ_OUT;
        sk__conn_update_events(c);
        events |= EPOLLIN; /* the read that waited for it, now */
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && sk__conn_reading_allowed(c))
        sk__conn_read(c);
    else if ((events & (EPOLLERR | EPOLLHUP)) && !(c->st & CF_WANT_OUT))
        sk__conn_read_error(c, -ECONNRESET);
}

static void conn_timer(sk_timer *t, void *ud)
{
    (void)t;
    sk_conn *c = ud;
    if (c->st & CS_DEAD)
        return;
    uint64_t now = c->loop->now;
    const sk_conn_opts *o = c->opts;
    if (c->st & CS_CONNECTING) {
        sk__conn_set_reason(c, -ETIMEDOUT, "connect timed out");
        sk__conn_finalize(c);
        return;
    }
    if ((c->st & CS_HANDSHAKE) && c->deadline && now >= c->deadline) {
        tls_failed(c, -ETIMEDOUT, "TLS handshake not finished in time");
        return;
    }
    if (c->st & CS_LINGER) {
        sk__conn_finalize(c);
        return;
    }
    if (c->st & CS_CLOSING) {
        /* Still flushing a close: bound it like lingering. */
        sk__conn_set_reason(c, -ETIMEDOUT, "close timed out with %zu bytes unsent",
                            sk__conn_out_queued(c));
        sk__conn_finalize(c);
        return;
    }
    if (c->deadline && now >= c->deadline) {
        if (sk__conn_set_reason(c, -ETIMEDOUT, "%s", c->deadline_reason))
            sk__stat_add(SK__STAT_ERR_DEADLINE, 1);
        sk_conn_fail(c, -ETIMEDOUT, NULL);
        return;
    }
    if (o->frame_timeout_ms && c->frame_start && !(c->st & FRAME_CLOCK_STOPPED) &&
        now - c->frame_start >= o->frame_timeout_ms) {
        if (sk__conn_set_reason(c, -ETIMEDOUT, "frame timeout"))
            sk__stat_add(SK__STAT_ERR_FRAME, 1);
        if (c->cbs->on_error) /* the service may tell the peer why */
            c->cbs->on_error(c, -ETIMEDOUT);
        sk_conn_fail(c, -ETIMEDOUT, NULL);
        return;
    }
    if (o->idle_timeout_ms && now - c->last_active >= o->idle_timeout_ms) {
        /* Nothing moved either way for the whole timeout: there is neither
         * output of ours in flight nor input to discard, so a plain close is
         * an orderly FIN and lingering would only hold the slot longer. */
        if (sk__conn_set_reason(c, -ETIMEDOUT, "idle timeout"))
            sk__stat_add(SK__STAT_ERR_IDLE, 1);
        if (c->tls)
            sk__tls_close_notify(c->tls);
        sk__conn_finalize(c);
        return;
    }
    sk__conn_arm_timer(c);
}

/* ------------------------------------------------------------- create */

void sk_conn_opts_init(sk_conn_opts *o)
{
    memset(o, 0, sizeof *o);
    o->framing = SK_FRAMING_RAW;
    o->max_line = SK_DEFAULT_MAX_LINE;
    o->max_frame = SK_DEFAULT_MAX_FRAME;
    o->out_high_water = 1024u * 1024u;
    o->out_low_water = o->out_high_water / 4;
    o->linger_ms = 2000;
}

static void normalise_opts(sk_conn_opts *o)
{
    if (o->max_line == 0)
        o->max_line = SK_DEFAULT_MAX_LINE;
    if (o->max_frame == 0)
        o->max_frame = SK_DEFAULT_MAX_FRAME;
    if (o->out_high_water == 0)
        o->out_high_water = 1024u * 1024u;
    if (o->out_low_water == 0 || o->out_low_water > o->out_high_water)
        o->out_low_water = o->out_high_water / 4;
    if (o->linger_ms == 0)
        o->linger_ms = 2000;
}

void sk__conn_opts_normalise(sk_conn_opts *o) { normalise_opts(o); }

void sk__conn_set_peer(sk_conn *c, const struct sockaddr *sa, socklen_t len)
{
    if ((sa->sa_family == AF_INET && len >= sizeof c->peer_addr.in4) ||
        (sa->sa_family == AF_INET6 && len >= sizeof c->peer_addr.in6))
        memcpy(&c->peer_addr, sa,
               sa->sa_family == AF_INET ? sizeof c->peer_addr.in4 : sizeof c->peer_addr.in6);
}

int sk__conn_create(sk_loop *loop, int fd, const sk_conn_opts *opts, const sk_conn_callbacks *cbs,
                    void *ud, struct sk_server *srv, bool connecting, sk_conn **out)
{
    sk_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return -ENOMEM;
    c->w.fd = fd;
    c->w.on_event = conn_event;
    c->loop = loop;
    c->srv = srv;
    c->cbs = cbs;
    c->opts = opts;
    c->ud = ud;
    c->last_active = loop->now;
    sk_decoder_init(&c->dec, opts->framing, max_for(opts));
    sk__timer_init(&c->timer, loop, conn_timer, c);
    /* Accepted or adopted, a TLS connection becomes HANDSHAKE below. */
    sk__conn_set_state(c, connecting ? CS_CONNECTING : CS_OPEN);
    if (opts->start_paused)
        c->st |= CF_PAUSED_USER;
    int err = 0;
    /* fd < 0: sk_conn_connect's race, which sets up TLS and the watch on the
     * socket that wins. */
    if (opts->tls != NULL && fd >= 0) {
        err = sk__tls_new(opts->tls, fd, opts->tls_host, &c->tls);
        if (err < 0) {
            free(c);
            return err;
        }
    }
    bool handshake = c->tls != NULL && !connecting;
    if (handshake) {
        /* Accepted or adopted under TLS: the handshake goes first; the
         * session says which way it waits (a client writes first). */
        err = sk__watch_set(loop, &c->w, sk__tls_want(c->tls) == SK_WRITABLE ? EPOLLOUT : EPOLLIN);
    } else if (connecting || srv == NULL) {
        /* Connecting: wait for writability. Adopted: on_open runs on the next
         * iteration, and reading starts then. */
        err = connecting && fd >= 0 ? sk__watch_set(loop, &c->w, EPOLLOUT) : 0;
    } else if (!opts->start_paused) {
        err = sk__watch_set(loop, &c->w, EPOLLIN);
    }
    if (err < 0) {
        sk__tls_free(c->tls);
        free(c);
        return err;
    }
    if (fd >= 0 && srv == NULL) {
        int one = 1;
        /* Ignored for Unix sockets, where it fails harmlessly. An accepted
         * socket has it from its listener already (server.c). */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    sk__list_push(&loop->conns, &c->link);
    loop->refs++;
    if (handshake) {
        tls_begin(c);
    } else if (srv != NULL && !connecting) {
        c->st |= CF_OPENED;
        sk__conn_arm_timer(c);
    } else if (!connecting) {
        c->st |= CF_OPEN_DUE;
        sk__conn_arm_timer(c);
        sk__conn_schedule_pending(c);
    } else {
        sk__conn_arm_timer(c);
    }
    *out = c;
    return 0;
}

owned_cfg *sk__conn_copy_cfg(const sk_conn_opts *opts, const sk_conn_callbacks *cbs)
{
    owned_cfg *cfg = malloc(sizeof *cfg);
    if (cfg == NULL)
        return NULL;
    cfg->cbs = *cbs;
    if (opts)
        cfg->opts = *opts;
    else
        sk_conn_opts_init(&cfg->opts);
    normalise_opts(&cfg->opts);
    cfg->opts.dial = NULL; /* read during sk_conn_connect only; the caller's may go */
    return cfg;
}

int sk_conn_adopt(sk_loop *loop, int fd, const sk_conn_opts *opts, const sk_conn_callbacks *cbs,
                  void *ud, sk_conn **out)
{
    if (sk__set_nonblock_cloexec(fd) < 0)
        return -errno;
    owned_cfg *cfg = sk__conn_copy_cfg(opts, cbs);
    if (cfg == NULL)
        return -ENOMEM;
    int err = sk__conn_create(loop, fd, &cfg->opts, &cfg->cbs, ud, NULL, false, out);
    if (err < 0) {
        free(cfg);
        return err;
    }
    cfg->opts.tls_host = NULL; /* the session has its copy; the caller's may go */
    (*out)->owned_cfg = cfg;
    return 0;
}

int sk_conn_connect_fd(sk_loop *loop, int fd, const struct sockaddr *sa, socklen_t salen,
                       const sk_conn_opts *opts, const sk_conn_callbacks *cbs, void *ud,
                       int timeout_ms, sk_conn **out)
{
    if (sk__set_nonblock_cloexec(fd) < 0)
        return -errno;
    while (connect(fd, sa, salen) < 0) {
        if (errno == EINTR)
            continue; /* the connect goes on in the background; EALREADY next */
        if (errno == EINPROGRESS || errno == EALREADY)
            break;
        return -errno;
    }
    owned_cfg *cfg = sk__conn_copy_cfg(opts, cbs);
    if (cfg == NULL)
        return -ENOMEM;
    int err = sk__conn_create(loop, fd, &cfg->opts, &cfg->cbs, ud, NULL, true, out);
    if (err < 0) {
        free(cfg);
        return err;
    }
    cfg->opts.tls_host = NULL; /* the session has its copy; the caller's may go */
    (*out)->owned_cfg = cfg;
    if (timeout_ms >= 0)
        sk_timer_start(&(*out)->timer, (uint64_t)timeout_ms, 0);
    return 0;
}

/* ---------------------------------------------------------- accessors */

void sk_conn_pause(sk_conn *c)
{
    if (c->st & (CS_DEAD | CF_PAUSED_USER))
        return;
    c->st |= CF_PAUSED_USER;
    sk__conn_update_events(c);
}

void sk_conn_resume(sk_conn *c)
{
    if ((c->st & CS_DEAD) || !(c->st & CF_PAUSED_USER))
        return;
    c->st &= ~CF_PAUSED_USER;
    sk__conn_update_events(c);
    sk__conn_frame_clock_restart(c);
    if (c->in.len > 0)
        sk__conn_schedule_pending(c);
}

void sk_conn_set_deadline(sk_conn *c, int timeout_ms, const char *reason)
{
    if (c->st & CS_DEAD)
        return;
    /* 0 is "none" in c->deadline; a deadline of now is now + 0, never 0
     * (the monotonic clock is far from it). */
    c->deadline = timeout_ms < 0 ? 0 : c->loop->now + (uint64_t)timeout_ms;
    /* Copied: a caller's buffer may be gone or reused by the time the
     * deadline passes. */
    snprintf(c->deadline_reason, sizeof c->deadline_reason, "%s",
             reason ? reason : "deadline passed");
    if (!(c->st & (CS_LINGER | CS_CONNECTING)))
        sk__conn_arm_timer(c);
}

void sk_conn_set_max_msg(sk_conn *c, size_t max) { c->dec.max = max ? max : max_for(c->opts); }

void sk_conn_set_data(sk_conn *c, void *ud) { c->ud = ud; }
void *sk_conn_data(const sk_conn *c) { return c->ud; }
sk_loop *sk_conn_loop(const sk_conn *c) { return c->loop; }
int sk_conn_fd(const sk_conn *c) { return c->w.fd; }
enum sk_framing sk_conn_framing(const sk_conn *c) { return c->opts->framing; }
const char *sk_conn_reason(const sk_conn *c) { return c->reason ? c->reason : ""; }
uint64_t sk_conn_bytes_in(const sk_conn *c) { return c->bytes_in; }
uint64_t sk_conn_bytes_out(const sk_conn *c) { return c->bytes_out; }
sk_conn *sk__conn_srv_next(sk_conn *c) { return SK_LIST_ITEM(c->srv_link.next, sk_conn, srv_link); }
sk_conn *sk__conn_srv_first(sk_list *head) { return SK_LIST_ITEM(head, sk_conn, srv_link); }
bool sk__conn_handshaking(const sk_conn *c) { return sk__conn_state(c) == CS_HANDSHAKE; }

const char *sk_conn_peer(const sk_conn *c)
{
    sk_conn *m = (sk_conn *)(uintptr_t)c; /* the text is computed once, lazily */
    if (m->peer)
        return m->peer;
    if (c->w.fd < 0)
        return "(connecting)"; /* not cached: the winning attempt names it */
    char text[160];
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    bool known = false;
    if (c->peer_addr.sa.sa_family == AF_INET || c->peer_addr.sa.sa_family == AF_INET6) {
        len = c->peer_addr.sa.sa_family == AF_INET ? sizeof c->peer_addr.in4
                                                   : sizeof c->peer_addr.in6;
        memcpy(&ss, &c->peer_addr, len);
        known = true;
    } else {
        known = getpeername(c->w.fd, (struct sockaddr *)&ss, &len) == 0;
    }
    if (!known) {
        snprintf(text, sizeof text, "(unknown peer)");
    } else if (ss.ss_family == AF_UNIX && len <= offsetof(struct sockaddr_un, sun_path)) {
        /* Unix clients are usually unnamed: the process id says more. */
        struct ucred cred;
        socklen_t cl = sizeof cred;
        if (getsockopt(c->w.fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
            snprintf(text, sizeof text, "unix:pid=%d", (int)cred.pid);
        else
            snprintf(text, sizeof text, "unix:(unnamed)");
    } else {
        sk_sockaddr_format((struct sockaddr *)&ss, len, text, sizeof text);
    }
    m->peer = strdup(text);
    return m->peer ? m->peer : "(unknown peer)";
}

/* Server bookkeeping lives here because the list pointers are private. */
void sk__conn_link_srv(sk_conn *c, sk_list **head) { sk__list_push(head, &c->srv_link); }

void sk__conn_unlink_srv(sk_conn *c, sk_list **head) { sk__list_remove(head, &c->srv_link); }

/* The session is private to this file; tls.c does the exporting. */
int sk_conn_tls_exporter(const sk_conn *c, const char *label, uint8_t *out, size_t len)
{
    return sk__tls_exporter(c->tls, label, out, len);
}
