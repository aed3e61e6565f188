/* conn.c — stream connections: where bytes enter (read into the loop's shared
 * buffer), become messages (the decoder), and leave (one send per connection
 * per loop iteration). Also backpressure, half-close, timeouts and the three
 * ways to close (graceful, lingering on protocol errors, abort). */
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"
#include "tls.h"

enum {
    F_CONNECTING = 1u << 0,  /* non-blocking connect in progress */
    F_OPEN_PENDING = 1u << 1,/* on_open due on the next iteration (adopted) */
    F_PAUSED_USER = 1u << 2, /* sk_conn_pause() */
    F_PAUSED_HW = 1u << 3,   /* output over the high-water mark */
    F_EOF = 1u << 4,         /* the peer shut down its write side */
    F_CLOSING = 1u << 5,     /* close requested: flush, then shut down */
    F_SHUT_PENDING = 1u << 6,/* sk_conn_shutdown(): shut down once flushed */
    F_SHUT_DONE = 1u << 7,
    F_LINGER = 1u << 8,      /* write side shut; discarding input until EOF */
    F_DEAD = 1u << 9,        /* on the close list; no more callbacks but on_close */
    F_WANT_OUT = 1u << 10,   /* the kernel buffer was full: EPOLLOUT armed */
    F_IN_FLUSH = 1u << 11,
    F_IN_PENDING = 1u << 12,
    F_CONNECTED_CB = 1u << 13,/* on_open has run: on_close is owed */
    F_IN_CLOSE = 1u << 14,    /* on loop->close_head */
    F_HANDSHAKE = 1u << 15,   /* TLS handshake in progress: on_open not yet run */
    F_TLS_READ_OUT = 1u << 16 /* a TLS read waits for EPOLLOUT (it must send first) */
};

/* sk_conn_set_deadline copies its reason into the connection, cut to this
 * size: a sentence for the log, kept without a malloc each time a service
 * moves its deadline. */
#define DEADLINE_REASON_MAX 64

/* Fields in the order the hot path touches them: what every event and every
 * message needs first (three cache lines), the rest after. */
struct sk_conn {
    sk_watch w;
    sk_loop *loop;
    const sk_conn_callbacks *cbs;
    const sk_stream_opts *opts;
    uint32_t flags;
    int err;
    sk_buf in, out;
    sk_outq *outq; /* shared slices and file ranges queued after or between out's bytes */
    sk__tls *tls;  /* TLS session (tls.c), or NULL: every byte in and out goes through it */
    size_t queued_counted; /* this queue's share of sk_stats.queued */
    uint64_t last_active;
    uint64_t bytes_in, bytes_out;
    uint64_t frame_start; /* when the buffered partial message began, or 0 */
    sk_conn *flush_next, *pending_next, *close_next;
    sk_decoder dec;
    void *ud;
    struct sk_server *srv;
    void *owned_cfg; /* cbs/opts copy for adopted and connecting connections */
    struct dialer *dialer; /* sk_conn_connect's race of attempts, until one wins */
    sk_timer timer;
    uint64_t deadline;    /* sk_conn_set_deadline(), or 0 */
    char deadline_reason[DEADLINE_REASON_MAX];
    char *reason;
    char *peer;
    /* The peer's address as accept() gave it, so a peer that resets at once
     * is still named in the logs (getpeername fails after a reset). Only
     * inet peers: Unix peers are named by their pid. */
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } peer_addr;
    sk_conn *prev, *next;         /* loop->conns */
    sk_conn *srv_prev, *srv_next; /* the server's connections */
};

typedef struct owned_cfg {
    sk_conn_callbacks cbs;
    sk_stream_opts opts;
} owned_cfg;

static void conn_event(sk_watch *w, uint32_t events);
static void conn_timer(sk_timer *t, void *ud);
static void finalize(sk_conn *c);
static void dialer_free(sk_conn *c);
static void echo_flush(sk_conn *c);
static void queued(sk_conn *c);
static void start_close(sk_conn *c);
static void schedule_pending(sk_conn *c);
static void update_events(sk_conn *c);

/* ------------------------------------------------------------ helpers */

static bool set_reason(sk_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Records why the connection ends; returns whether this was the first
 * reason (the one counted in sk_stats: resets and memory refusals here,
 * timeouts and protocol errors by the callers that know which). */
static bool set_reason(sk_conn *c, int err, const char *fmt, ...)
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

/* ---------------------------------------------------------- transport */

/* The one seam between the stream code and TLS: where a connection has a
 * session, bytes go through it, with recv()/send() semantics kept (tls.h),
 * so nothing above this point knows whether the stream is encrypted. */
static ssize_t conn_recv(sk_conn *c, void *buf, size_t cap)
{
    if (c->tls == NULL)
        return recv(c->w.fd, buf, cap, 0);
    ssize_t n = sk__tls_read(c->tls, buf, cap);
    if (n < 0 && errno == EAGAIN && sk__tls_want(c->tls) == SK_WRITABLE &&
        !(c->flags & F_TLS_READ_OUT)) {
        /* Rare (a key update to answer into a full socket buffer): the read
         * waits for EPOLLOUT, which conn_event turns back into a read. */
        c->flags |= F_TLS_READ_OUT;
        update_events(c);
        errno = EAGAIN;
    }
    return n;
}

static ssize_t conn_send(sk_conn *c, const void *buf, size_t len)
{
    if (c->tls == NULL)
        return send(c->w.fd, buf, len, MSG_NOSIGNAL);
    return sk__tls_write(c->tls, buf, len);
}

/* Shuts the write side: close_notify first under TLS, then the TCP FIN. */
static int conn_shut_wr(sk_conn *c)
{
    if (c->tls != NULL)
        sk__tls_close_notify(c->tls);
    return shutdown(c->w.fd, SHUT_WR);
}

static bool reading_allowed(const sk_conn *c)
{
    if (c->flags & F_LINGER)
        return true;
    return !(c->flags & (F_CONNECTING | F_PAUSED_USER | F_PAUSED_HW | F_EOF | F_CLOSING | F_DEAD));
}

static bool decoding_allowed(const sk_conn *c)
{
    return !(c->flags & (F_PAUSED_USER | F_PAUSED_HW | F_CLOSING | F_DEAD | F_CONNECTING));
}

static void update_events(sk_conn *c)
{
    /* While sk_conn_connect races its attempts, c has no socket yet. */
    if ((c->flags & F_DEAD) || c->dialer != NULL)
        return;
    uint32_t ev = 0;
    if (c->flags & F_CONNECTING)
        ev = EPOLLOUT;
    else if (c->flags & F_HANDSHAKE)
        ev = sk__tls_want(c->tls) == SK_WRITABLE ? EPOLLOUT : EPOLLIN;
    else {
        if (reading_allowed(c))
            ev |= EPOLLIN;
        if (c->flags & (F_WANT_OUT | F_TLS_READ_OUT))
            ev |= EPOLLOUT;
        /* Decrypted bytes already inside OpenSSL raise no epoll event. */
        if (c->tls && (ev & EPOLLIN) && sk__tls_pending(c->tls))
            schedule_pending(c);
    }
    int err = sk__watch_set(c->loop, &c->w, ev);
    if (err < 0) {
        set_reason(c, err, "epoll: %s", sk_strerror(err));
        finalize(c);
    }
}

static void schedule_flush(sk_conn *c)
{
    if (c->flags & F_IN_FLUSH)
        return;
    c->flags |= F_IN_FLUSH;
    c->flush_next = c->loop->flush_head;
    c->loop->flush_head = c;
}

static void schedule_pending(sk_conn *c)
{
    if (c->flags & F_IN_PENDING)
        return;
    c->flags |= F_IN_PENDING;
    c->pending_next = c->loop->pending_head;
    c->loop->pending_head = c;
}

/* Everything waiting to be sent: copied bytes, shared slices, file ranges. */
static size_t echo_pending(const sk_conn *c)
{
    return c->loop->reading == c ? (size_t)(c->loop->echo_end - c->loop->echo_start) : 0;
}

static size_t out_queued(const sk_conn *c)
{
    size_t n = c->outq ? c->out.len + sk__outq_bytes(c->outq) : c->out.len;
    return n + echo_pending(c);
}

/* Carries the change of this queue into sk_stats.queued. */
static void count_queued(sk_conn *c)
{
    size_t q = out_queued(c);
    if (q != c->queued_counted) {
        sk__stat_local_queued(c->loop, (int64_t)q - (int64_t)c->queued_counted);
        c->queued_counted = q;
    }
}

static size_t max_for(const sk_stream_opts *o)
{
    return o->framing == SK_FRAMING_LINE ? o->max_line : o->max_frame;
}

/* Arms the connection's one timer for the earliest of its deadlines. The
 * idle deadline moves with every byte, but the timer is only moved when it
 * fires (it then re-arms for the real deadline): no heap work per read. */
static void arm_timer(sk_conn *c)
{
    const sk_stream_opts *o = c->opts;
    uint64_t deadline = UINT64_MAX;
    if (o->idle_timeout_ms)
        deadline = c->last_active + o->idle_timeout_ms;
    if (o->frame_timeout_ms && c->frame_start) {
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

/* -------------------------------------------------------------- input */

static void protocol_error(sk_conn *c, int err, const uint8_t *buf, size_t len)
{
    char text[128];
    sk__frame_error_text(c->opts->framing, err, buf, len, c->dec.max, text, sizeof text);
    if (set_reason(c, err, "%s", text))
        sk__stat_add(SK__STAT_ERR_PROTOCOL, 1);
    if (c->cbs->on_error)
        c->cbs->on_error(c, err);
    sk_conn_fail(c, err, NULL);
}

/* Decodes and delivers every complete message at the front of buf; returns
 * how many bytes were consumed. Stops early when the connection pauses or
 * closes; what is left stays buffered. */
static size_t process_input(sk_conn *c, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    uint64_t msgs = 0;
    if (c->opts->framing == SK_FRAMING_FRAME) {
        /* frame.h's step, inlined: this loop runs once per message. The
         * limit is read for every frame, not once per read: on_message may
         * change it (sk_conn_set_max_msg after authentication), and the
         * rest of this read must be judged by the new one. */
        while (len - off >= SK_FRAME_HEADER && decoding_allowed(c)) {
            const uint8_t *h = buf + off;
            uint32_t n = 0;
            int r = sk__frame_next(h, len - off, c->dec.max, &n);
            if (r < 0) {
                sk__stat_local(c->loop, SK__STAT_MSGS_IN, msgs);
                protocol_error(c, r, h, len - off);
                return len;
            }
            if (r == 0)
                break;
            msgs++;
            c->cbs->on_message(c, h + SK_FRAME_HEADER, n);
            off += SK_FRAME_HEADER + (size_t)n;
        }
    }
    while (c->opts->framing != SK_FRAMING_FRAME && decoding_allowed(c) && off < len) {
        sk_msg m;
        int r = sk_decoder_next(&c->dec, buf + off, len - off, &m, NULL);
        if (r == 0)
            break;
        if (r < 0) {
            sk__stat_local(c->loop, SK__STAT_MSGS_IN, msgs);
            protocol_error(c, r, buf + off, len - off);
            return len;
        }
        msgs++;
        c->cbs->on_message(c, buf + off + m.offset, m.len);
        off += m.consumed;
    }
    if (msgs)
        sk__stat_local(c->loop, SK__STAT_MSGS_IN, msgs);
    /* The frame clock times the message now at the front: it restarts with
     * every message that completes, so a steady stream of large messages is
     * never mistaken for a slow one. */
    if (off > 0)
        c->frame_start = 0;
    if (c->opts->framing != SK_FRAMING_RAW && off < len) {
        if (c->frame_start == 0) {
            c->frame_start = c->loop->now;
            if (c->opts->frame_timeout_ms) {
                uint64_t d = c->frame_start + c->opts->frame_timeout_ms;
                if (!sk_timer_active(&c->timer) || c->timer.deadline > d)
                    arm_timer(c);
            }
        }
    } else {
        c->frame_start = 0;
    }
    return off;
}

static void on_peer_eof(sk_conn *c)
{
    c->flags |= F_EOF;
    if (c->flags & F_LINGER) {
        finalize(c);
        return;
    }
    update_events(c);
    if (c->cbs->on_eof) {
        c->cbs->on_eof(c);
    } else {
        if (c->in.len > 0 && c->opts->framing != SK_FRAMING_RAW)
            set_reason(c, 0, "peer closed mid-message (%zu bytes dropped)", c->in.len);
        else
            set_reason(c, 0, "peer closed");
        sk_conn_close(c);
    }
}

static void read_error(sk_conn *c, int err)
{
    if (err == -ECONNRESET)
        set_reason(c, err, "connection reset");
    else
        set_reason(c, err, "read: %s", sk_strerror(err));
    finalize(c);
}

/* Lingering: the write side is shut; read and throw away until the peer
 * closes, so that our close does not turn into a reset that would destroy
 * the reason we sent. */
static void discard_input(sk_conn *c)
{
    for (int i = 0; i < SK_READS_PER_EVENT; i++) {
        ssize_t n = conn_recv(c, c->loop->rbuf, SK_READ_CHUNK);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        finalize(c);
        return;
    }
}

static bool keep_input(sk_conn *c, const uint8_t *src, size_t n)
{
    int err = sk__buf_reserve(c->loop, &c->in, n);
    if (err < 0) {
        set_reason(c, err, "input buffer: %s", sk_strerror(err));
        sk_conn_fail(c, err, NULL);
        return false;
    }
    memcpy(c->in.data + c->in.off + c->in.len, src, n);
    c->in.len += n;
    return true;
}

/* Decodes what c->in holds; false when the connection died doing so. */
static bool decode_buffered(sk_conn *c)
{
    size_t used = process_input(c, c->in.data + c->in.off, c->in.len);
    if (c->flags & F_DEAD)
        return false;
    sk__buf_consume(c->loop, &c->in, used);
    return true;
}

/* Handles n bytes read into the loop's shared buffer: first the end of the
 * message buffered in c->in, then every whole message decoded in place, and
 * a partial one at the end copied into c->in. */
static void take_read(sk_conn *c, const uint8_t *src, size_t n)
{
    size_t off = 0;
    if (c->in.len > 0) {
        off = sk__frame_need(c->opts->framing, c->dec.max, c->in.data + c->in.off, c->in.len,
                             src, n);
        if (!keep_input(c, src, off) || !decode_buffered(c))
            return;
        if (c->in.len > 0) {
            /* Still incomplete, or decoding paused or closed mid-buffer:
             * everything read stays queued behind it, in order. */
            if (off < n && !(c->flags & F_CLOSING))
                (void)keep_input(c, src + off, n - off);
            return;
        }
    }
    if (off == n)
        return;
    size_t used = process_input(c, src + off, n - off);
    if (c->flags & F_DEAD)
        return;
    off += used;
    if (off < n && !(c->flags & F_CLOSING))
        (void)keep_input(c, src + off, n - off);
}

static void do_read(sk_conn *c)
{
    if (c->flags & F_LINGER) {
        discard_input(c);
        return;
    }
    sk_loop *loop = c->loop;
    /* Whole messages still buffered (left when output passed the high-water
     * mark) are answered before anything more is read: reading first would
     * grow the buffer by a read per round while decoding only a reply's
     * worth, and an EOF read now would be taken for a cut-off message. */
    if (c->in.len > 0 && decoding_allowed(c) && !decode_buffered(c))
        return;
    for (int i = 0; i < SK_READS_PER_EVENT && reading_allowed(c); i++) {
        uint8_t *dst = loop->rbuf;
        size_t cap = SK_READ_CHUNK;
        /* A large frame under way is read straight into its buffer, which
         * grows with what has arrived (to at most four times what is held:
         * a 256 KiB frame costs one copy of its first 64 KiB), never from
         * the declared length alone. */
        size_t missing = c->opts->framing == SK_FRAMING_FRAME
                             ? sk__frame_missing(c->in.data + c->in.off, c->in.len)
                             : 0;
        bool direct = missing >= SK_READ_CHUNK / 2;
        if (direct) {
            size_t want = c->in.len > SK_READ_CHUNK / 3 ? 3 * c->in.len : SK_READ_CHUNK;
            if (want > missing)
                want = missing;
            int err = sk__buf_reserve(loop, &c->in, want);
            if (err < 0) {
                set_reason(c, err, "input buffer: %s", sk_strerror(err));
                sk_conn_fail(c, err, NULL);
                return;
            }
            dst = c->in.data + c->in.off + c->in.len;
            cap = want;
        }
        ssize_t n = conn_recv(c, dst, cap);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                read_error(c, -errno);
            return;
        }
        if (n == 0) {
            on_peer_eof(c);
            return;
        }
        c->bytes_in += (uint64_t)n;
        sk__stat_local(c->loop, SK__STAT_BYTES_IN, (uint64_t)n);
        c->last_active = loop->now;
        if (direct) {
            c->in.len += (size_t)n;
            if (!decode_buffered(c))
                return;
        } else {
            loop->reading = c;
            take_read(c, dst, (size_t)n);
            echo_flush(c);
            loop->reading = NULL;
            if (c->flags & F_DEAD)
                return;
        }
        /* A short read means the socket is drained: the next read would only
         * say EAGAIN, and level-triggered epoll wakes us when more comes. */
        if ((size_t)n < cap)
            return;
    }
    /* TLS: the reads per event are used up, and OpenSSL may hold decrypted
     * bytes that no epoll event will announce. */
    if (c->tls && reading_allowed(c) && sk__tls_pending(c->tls))
        schedule_pending(c);
}

/* ------------------------------------------------------------- output */

static void resume_after_drain(sk_conn *c)
{
    c->flags &= ~F_PAUSED_HW;
    update_events(c);
    if (c->in.len > 0)
        schedule_pending(c);
    if (c->cbs->on_drain)
        c->cbs->on_drain(c);
}

static void write_out(sk_conn *c)
{
    while (out_queued(c) > 0) {
        /* Plain bytes alone (every service but a broadcaster) take the plain
         * send; with shared slices queued, one sendmsg covers both; a file
         * range at the head goes with sendfile (the loop's read buffer is
         * free now: it is the copy buffer where sendfile is refused). */
        bool sliced = sk__outq_active(c->outq);
        size_t offered = c->out.len;
        ssize_t n = sliced ? (c->tls ? sk__outq_send_tls(c->tls, c->outq, &c->out, &offered,
                                                         c->loop->rbuf, SK_READ_CHUNK)
                                     : sk__outq_send(c->w.fd, c->outq, &c->out, &offered,
                                                     c->loop->rbuf, SK_READ_CHUNK))
                           : conn_send(c, c->out.data + c->out.off, c->out.len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!(c->flags & F_WANT_OUT)) {
                    c->flags |= F_WANT_OUT;
                    update_events(c);
                }
                break;
            }
            int err = -errno;
            if (err == -EPIPE || err == -ECONNRESET)
                set_reason(c, err, "connection reset");
            else
                set_reason(c, err, "write: %s", sk_strerror(err));
            finalize(c);
            return;
        }
        if (n == 0 && offered > 0) {
            /* Only a file range sends nothing: its file ended before the
             * range did. The bytes were promised (a frame header may say
             * so), and nothing else can stand in for them. */
            set_reason(c, -EIO, "sendfile: the file is shorter than the range queued "
                                "(truncated while queued)");
            finalize(c);
            return;
        }
        size_t sent = (size_t)n;
        bool partial = sent < offered;
        c->bytes_out += sent;
        sk__stat_local(c->loop, SK__STAT_BYTES_OUT, sent);
        c->last_active = c->loop->now;
        if (sliced)
            sk__outq_consume(c->outq, c->loop, &c->out, sent);
        else
            sk__buf_consume(c->loop, &c->out, sent);
        if (partial) {
            /* The kernel took less than offered: its buffer is full, so a
             * retry now would only return EAGAIN. Wait for EPOLLOUT. */
            if (!(c->flags & F_WANT_OUT)) {
                c->flags |= F_WANT_OUT;
                update_events(c);
            }
            break;
        }
    }
    count_queued(c);
    if (c->flags & F_DEAD)
        return;
    if ((c->flags & F_PAUSED_HW) && out_queued(c) <= c->opts->out_low_water)
        resume_after_drain(c);
    if (out_queued(c) > 0)
        return;
    if (c->flags & F_WANT_OUT) {
        c->flags &= ~F_WANT_OUT;
        update_events(c);
    }
    if ((c->flags & F_SHUT_PENDING) && !(c->flags & F_SHUT_DONE)) {
        c->flags |= F_SHUT_DONE;
        conn_shut_wr(c);
    }
    if (c->flags & F_CLOSING)
        start_close(c);
}

void sk__conns_flush(sk_loop *loop)
{
    while (loop->flush_head) {
        sk_conn *c = loop->flush_head;
        loop->flush_head = c->flush_next;
        c->flags &= ~F_IN_FLUSH;
        if (!(c->flags & (F_DEAD | F_CONNECTING | F_LINGER | F_HANDSHAKE)))
            write_out(c);
    }
}

void sk__conns_process_pending(sk_loop *loop)
{
    while (loop->pending_head) {
        sk_conn *c = loop->pending_head;
        loop->pending_head = c->pending_next;
        c->flags &= ~F_IN_PENDING;
        if (c->flags & F_DEAD)
            continue;
        if (c->flags & F_OPEN_PENDING) {
            c->flags &= ~F_OPEN_PENDING;
            c->flags |= F_CONNECTED_CB;
            update_events(c);
            if (c->cbs->on_open)
                c->cbs->on_open(c);
        }
        if (c->in.len > 0 && decoding_allowed(c)) {
            size_t used = process_input(c, c->in.data + c->in.off, c->in.len);
            if (!(c->flags & F_DEAD))
                sk__buf_consume(loop, &c->in, used);
        }
        /* TLS: decrypted bytes left inside OpenSSL (a read that filled the
         * buffer, a pause) wait for no epoll event: read them now. */
        if (c->tls && !(c->flags & (F_DEAD | F_HANDSHAKE)) && reading_allowed(c) &&
            sk__tls_pending(c->tls))
            do_read(c);
    }
}

/* ------------------------------------------------ replies sent from rbuf
 *
 * An echo-like reply is byte for byte the message it answers: a frame with
 * its header, a raw chunk, a line with its newline. While the connection's
 * read is decoded in the loop's read buffer, such replies are not copied:
 * the run of rbuf they cover is remembered (loop->echo_start/end) and sent
 * from there once the read is decoded (echo_flush), before rbuf is read
 * into again. Anything else queued on the connection first copies the run
 * into the output buffer (echo_settle), so order is kept. */

static void echo_settle(sk_conn *c);

/* Whether the reply (data, len) is the next run of the read under decode;
 * if so it is taken as such. */
static bool echo_take(sk_conn *c, const uint8_t *data, size_t len)
{
    sk_loop *loop = c->loop;
    if (loop->reading != c || c->out.len != 0 || sk__outq_active(c->outq) || c->tls ||
        (c->flags & (F_DEAD | F_CLOSING | F_SHUT_PENDING | F_WANT_OUT)))
        return false;
    const uint8_t *lo = loop->rbuf, *hi = loop->rbuf + SK_READ_CHUNK;
    if (data < lo || data > hi || len > (size_t)(hi - data))
        return false;
    const uint8_t *start = data, *end = data + len;
    switch (c->opts->framing) {
    case SK_FRAMING_FRAME:
        if ((size_t)(data - lo) < SK_FRAME_HEADER)
            return false;
        start = data - SK_FRAME_HEADER;
        if (sk__frame_len(start) != len)
            return false;
        break;
    case SK_FRAMING_LINE:
        if (end == hi || *end != '\n')
            return false;
        end++;
        break;
    case SK_FRAMING_RAW: break;
    }
    if (loop->echo_start == NULL) {
        loop->echo_start = start;
    } else if (start != loop->echo_end) {
        echo_settle(c);
        return false;
    }
    loop->echo_end = end;
    return true;
}

/* Copies the pending run into the output buffer (something else is being
 * queued behind it, or the connection is closing). */
static void echo_settle(sk_conn *c)
{
    sk_loop *loop = c->loop;
    if (loop->reading != c || loop->echo_start == NULL)
        return;
    const uint8_t *p = loop->echo_start;
    size_t n = (size_t)(loop->echo_end - p);
    loop->echo_start = loop->echo_end = NULL;
    int err = sk__buf_reserve(loop, &c->out, n);
    if (err < 0) {
        set_reason(c, err, "output buffer: %s", sk_strerror(err));
        sk_conn_abort(c, err);
        return;
    }
    memcpy(c->out.data + c->out.off + c->out.len, p, n);
    c->out.len += n;
    queued(c);
}

/* The read is decoded: sends the run now, from rbuf; what the kernel does
 * not take is copied to the output buffer for the regular flush. */
static void echo_flush(sk_conn *c)
{
    sk_loop *loop = c->loop;
    if (loop->echo_start == NULL)
        return;
    if (c->flags & F_DEAD) {
        loop->echo_start = loop->echo_end = NULL;
        return;
    }
    size_t n = (size_t)(loop->echo_end - loop->echo_start);
    ssize_t w = conn_send(c, loop->echo_start, n);
    if (w > 0) {
        c->bytes_out += (uint64_t)w;
        c->last_active = loop->now;
        sk__stat_local(loop, SK__STAT_BYTES_OUT, (uint64_t)w);
        loop->echo_start += w;
    }
    if (loop->echo_start != loop->echo_end)
        echo_settle(c); /* the rest, or an error, goes the regular way */
    loop->echo_start = loop->echo_end = NULL;
}

/* A full large output buffer is sent now rather than grown: the kernel
 * usually takes it whole, so one send per 64 KiB replaces a bigger buffer
 * and the copy into it. Only plain bytes, only while the socket has room;
 * errors are left for the regular flush to meet and report. */
static void send_early(sk_conn *c)
{
    sk_buf *b = &c->out;
    ssize_t n = conn_send(c, b->data + b->off, b->len);
    if (n > 0) {
        c->bytes_out += (uint64_t)n;
        sk__stat_local(c->loop, SK__STAT_BYTES_OUT, (uint64_t)n);
        b->off += (size_t)n;
        b->len -= (size_t)n;
        if (b->len == 0)
            b->off = 0;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->flags |= F_WANT_OUT;
        update_events(c);
    }
}

static int queue_reserve(sk_conn *c, size_t total)
{
    if (c->flags & (F_DEAD | F_CLOSING | F_SHUT_PENDING))
        return -EPIPE;
    echo_settle(c);
    sk_buf *b = &c->out;
    if (b->cap == SK_READ_CHUNK && b->cap - b->off - b->len < total &&
        !(c->flags & (F_WANT_OUT | F_CONNECTING | F_HANDSHAKE)) && !sk__outq_active(c->outq))
        send_early(c);
    int err = sk__buf_reserve(c->loop, b, total);
    if (err < 0) {
        set_reason(c, err, "output buffer: %s", sk_strerror(err));
        sk_conn_abort(c, err);
    }
    return err;
}

static void queued(sk_conn *c)
{
    if (!(c->flags & F_WANT_OUT))
        schedule_flush(c);
    if (!(c->flags & F_PAUSED_HW) && out_queued(c) > c->opts->out_high_water) {
        c->flags |= F_PAUSED_HW;
        update_events(c);
    }
}

int sk_conn_send(sk_conn *c, const void *data, size_t len)
{
    if (len == 0)
        return (c->flags & (F_DEAD | F_CLOSING)) ? -EPIPE : 0;
    int err = queue_reserve(c, len);
    if (err < 0)
        return err;
    memcpy(c->out.data + c->out.off + c->out.len, data, len);
    c->out.len += len;
    queued(c);
    return 0;
}

int sk_conn_send_msgv(sk_conn *c, const struct iovec *iov, int iovcnt)
{
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    int err = 0;
    uint8_t *p = sk_conn_prepare_msg(c, len, &err);
    if (p == NULL)
        return err;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len) /* memcpy from NULL is undefined even for 0 bytes */
            memcpy(p, iov[i].iov_base, iov[i].iov_len);
        p += iov[i].iov_len;
    }
    return 0;
}

int sk_conn_send_msg(sk_conn *c, const void *data, size_t len)
{
    if (c->loop->reading == c && echo_take(c, data, len)) {
        sk__stat_local(c->loop, SK__STAT_MSGS_OUT, 1);
        return 0;
    }
    /* The hottest call of a request/reply service: a frame that fits the
     * buffer held is written in place, with no call but the copy. */
    sk_buf *b = &c->out;
    if (c->opts->framing == SK_FRAMING_FRAME && b->data != NULL && len <= UINT32_MAX &&
        b->cap - b->off - b->len >= len + SK_FRAME_HEADER &&
        !(c->flags & (F_DEAD | F_CLOSING | F_SHUT_PENDING))) {
        uint8_t *p = b->data + b->off + b->len;
        sk__frame_put(p, (uint32_t)len);
        if (len)
            memcpy(p + SK_FRAME_HEADER, data, len);
        b->len += len + SK_FRAME_HEADER;
        sk__stat_local(c->loop, SK__STAT_MSGS_OUT, 1);
        if ((c->flags & (F_IN_FLUSH | F_WANT_OUT | F_PAUSED_HW)) != F_IN_FLUSH ||
            out_queued(c) > c->opts->out_high_water)
            queued(c);
        return 0;
    }
    int err = 0;
    uint8_t *p = sk_conn_prepare_msg(c, len, &err);
    if (p == NULL)
        return err;
    if (len) /* memcpy from NULL is undefined even for 0 bytes */
        memcpy(p, data, len);
    return 0;
}

void *sk_conn_prepare_msg(sk_conn *c, size_t len, int *errp)
{
    enum sk_framing f = c->opts->framing;
    if (f == SK_FRAMING_FRAME && len > UINT32_MAX) {
        if (errp)
            *errp = -EMSGSIZE;
        return NULL;
    }
    size_t extra = sk__frame_overhead(f);
    sk_buf *b = &c->out;
    /* The common case, a reply that fits the buffer already held, skips
     * the checks that only matter when the buffer must change. */
    if (b->data == NULL || b->cap - b->off - b->len < len + extra ||
        (c->flags & (F_DEAD | F_CLOSING | F_SHUT_PENDING))) {
        int err = queue_reserve(c, len + extra);
        if (err < 0) {
            if (errp)
                *errp = err;
            return NULL;
        }
    }
    uint8_t *p = b->data + b->off + b->len;
    if (f == SK_FRAMING_FRAME) {
        sk__frame_put(p, (uint32_t)len);
        p += SK_FRAME_HEADER;
    } else if (f == SK_FRAMING_LINE) {
        p[len] = '\n';
    }
    b->len += len + extra;
    queued(c);
    sk__stat_local(c->loop, SK__STAT_MSGS_OUT, 1);
    return p;
}

int sk_conn_send_shared(sk_conn *c, sk_shared *s, size_t off, size_t len)
{
    echo_settle(c);
    if (off > sk_shared_len(s) || len > sk_shared_len(s) - off)
        return -EINVAL;
    if (c->flags & (F_DEAD | F_CLOSING | F_SHUT_PENDING))
        return -EPIPE;
    if (len == 0)
        return 0;
    if (sk__outq_copy_instead(c->outq, len))
        return sk_conn_send(c, sk_shared_data(s) + off, len);
    int err = sk__outq_push(&c->outq, s, off, len, c->out.len);
    if (err < 0) {
        set_reason(c, err, "output queue: %s", sk_strerror(err));
        sk_conn_abort(c, err);
        return err;
    }
    queued(c);
    return 0;
}

int sk_conn_sendfile(sk_conn *c, int fd, uint64_t off, size_t len)
{
    echo_settle(c);
    if (fd < 0 || off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return -EINVAL;
    if (c->flags & (F_DEAD | F_CLOSING | F_SHUT_PENDING))
        return -EPIPE;
    if (len == 0)
        return 0;
    int err = sk__outq_push_file(&c->outq, fd, off, len, c->out.len);
    if (err == -ENOBUFS || err == -ENOMEM) {
        set_reason(c, err, "output queue: %s", sk_strerror(err));
        sk_conn_abort(c, err);
        return err;
    }
    if (err < 0)
        return err; /* no descriptor for the duplicate: nothing queued, c untouched */
    queued(c);
    return 0;
}

size_t sk_conn_queued(const sk_conn *c) { return out_queued(c); }

/* -------------------------------------------------------------- close */

/* Output is flushed and a close was asked for: shut down our side, then
 * either close at once (the peer already finished) or linger. */
static void start_close(sk_conn *c)
{
    if (c->flags & (F_DEAD | F_LINGER))
        return;
    if (c->flags & F_EOF) {
        if (c->tls) /* a clean end, said the TLS way too */
            sk__tls_close_notify(c->tls);
        finalize(c);
        return;
    }
    if (conn_shut_wr(c) < 0) {
        finalize(c);
        return;
    }
    c->flags |= F_LINGER | F_SHUT_DONE;
    sk__buf_release(c->loop, &c->in);
    update_events(c);
    sk_timer_start(&c->timer, c->opts->linger_ms, 0);
}

void sk_conn_close(sk_conn *c)
{
    echo_settle(c);
    if (c->flags & (F_DEAD | F_CLOSING))
        return;
    c->flags |= F_CLOSING;
    if (c->flags & (F_CONNECTING | F_HANDSHAKE)) {
        finalize(c);
        return;
    }
    update_events(c);
    if (out_queued(c) == 0)
        start_close(c);
    else if (!(c->flags & F_WANT_OUT))
        schedule_flush(c);
}

void sk_conn_fail(sk_conn *c, int err, const char *reason)
{
    if (reason != NULL)
        set_reason(c, err, "%s", reason);
    else if (c->reason == NULL)
        set_reason(c, err, "%s", sk_strerror(err));
    sk_conn_close(c);
}

void sk_conn_abort(sk_conn *c, int err)
{
    if (c->flags & F_DEAD)
        return;
    set_reason(c, err, "%s", err ? sk_strerror(err) : "closed");
    finalize(c);
}

void sk_conn_shutdown(sk_conn *c)
{
    echo_settle(c);
    if (c->flags & (F_DEAD | F_CLOSING | F_SHUT_PENDING))
        return;
    c->flags |= F_SHUT_PENDING;
    if (out_queued(c) == 0 && !(c->flags & F_HANDSHAKE)) {
        c->flags |= F_SHUT_DONE;
        conn_shut_wr(c);
    }
}

/* Schedules the final close: no more events, on_close after the current
 * batch of callbacks. */
static void finalize(sk_conn *c)
{
    if (c->flags & F_DEAD)
        return;
    c->flags |= F_DEAD | F_IN_CLOSE;
    dialer_free(c); /* no attempt may win for a dead connection */
    sk__watch_del(c->loop, &c->w);
    sk_timer_stop(&c->timer);
    c->close_next = c->loop->close_head;
    c->loop->close_head = c;
}

/* Removes c from a singly linked work list; only used when a connection is
 * destroyed outside the normal end-of-iteration path (server or loop free),
 * so the linear walk is not on any hot path. */
#define UNLINK_WORK(headp, field)                                              \
    do {                                                                       \
        for (sk_conn **pp = (headp); *pp; pp = &(*pp)->field)                  \
            if (*pp == c) {                                                    \
                *pp = c->field;                                                \
                break;                                                         \
            }                                                                  \
    } while (0)

void sk__conn_destroy(sk_conn *c, bool call_close_cb)
{
    sk_loop *loop = c->loop;
    if (c->flags & F_IN_FLUSH)
        UNLINK_WORK(&loop->flush_head, flush_next);
    if (c->flags & F_IN_PENDING)
        UNLINK_WORK(&loop->pending_head, pending_next);
    if (c->flags & F_IN_CLOSE)
        UNLINK_WORK(&loop->close_head, close_next);
    c->flags &= ~(F_IN_FLUSH | F_IN_PENDING | F_IN_CLOSE);
    if (call_close_cb && (c->flags & F_CONNECTED_CB) && c->cbs->on_close)
        c->cbs->on_close(c, c->err);
    else if (call_close_cb && (c->flags & (F_CONNECTING | F_HANDSHAKE)) && c->srv == NULL &&
             c->cbs->on_close)
        c->cbs->on_close(c, c->err ? c->err : -ECONNABORTED);
    sk__watch_del(loop, &c->w);
    sk_timer_stop(&c->timer);
    sk__stat_local_queued(c->loop, -(int64_t)c->queued_counted);
    if (c->srv)
        sk__server_conn_gone(c->srv, c);
    if (c->prev)
        c->prev->next = c->next;
    else
        loop->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    loop->refs--;
    dialer_free(c);
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

void sk__conns_finalize(sk_loop *loop)
{
    while (loop->close_head) {
        sk_conn *c = loop->close_head;
        loop->close_head = c->close_next;
        c->flags &= ~F_IN_CLOSE;
        sk__conn_destroy(c, true);
    }
}

/* ------------------------------------------------------------- events */

/* A handshake that fails is logged here for server connections: the
 * service never saw them (on_open had not run), so it cannot. */
static void tls_failed(sk_conn *c, int err, const char *why)
{
    set_reason(c, err, "%s", why);
    if (c->srv != NULL)
        sk_log(SK_LOG_INFO, "tls: %s dropped: %s", sk_conn_peer(c), why);
    finalize(c);
}

/* The handshake starts: its deadline runs from now (SPEC §5.1: a protocol
 * handshake must finish in bounded time however the peer trickles). */
static void tls_begin(sk_conn *c)
{
    c->flags |= F_HANDSHAKE;
    uint32_t ms = c->opts->handshake_timeout_ms ? c->opts->handshake_timeout_ms
                                                : SK_TLS_DEFAULT_HANDSHAKE_MS;
    c->deadline = c->loop->now + ms;
    snprintf(c->deadline_reason, sizeof c->deadline_reason, "TLS handshake not finished in time");
    arm_timer(c);
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
        update_events(c);
        return;
    }
    c->flags &= ~F_HANDSHAKE;
    c->flags |= F_CONNECTED_CB;
    c->deadline = 0;
    c->last_active = c->loop->now;
    arm_timer(c);
    update_events(c);
    char d[120];
    sk__tls_describe(c->tls, d, sizeof d);
    sk_log(SK_LOG_DEBUG, "tls: %s %s", sk_conn_peer(c), d);
    if (c->cbs->on_open)
        c->cbs->on_open(c);
    if (out_queued(c) > 0 && !(c->flags & (F_DEAD | F_WANT_OUT)))
        schedule_flush(c);
}

static void connected(sk_conn *c);

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
        set_reason(c, -soerr, "connect: %s", sk_strerror(-soerr));
        finalize(c);
        return;
    }
    connected(c);
}

/* The connect has succeeded on c->w.fd: the TLS handshake next, or open. */
static void connected(sk_conn *c)
{
    c->flags &= ~F_CONNECTING;
    c->last_active = c->loop->now;
    if (c->tls) {
        tls_begin(c);
        tls_step(c);
        return;
    }
    c->flags |= F_CONNECTED_CB;
    arm_timer(c);
    update_events(c);
    if (c->cbs->on_open)
        c->cbs->on_open(c);
    if (out_queued(c) > 0 && !(c->flags & F_DEAD))
        schedule_flush(c);
}

static void conn_event(sk_watch *w, uint32_t events)
{
    sk_conn *c = SK_CONTAINER_OF(w, sk_conn, w);
    if (c->flags & F_CONNECTING) {
        connect_done(c);
        return;
    }
    if (c->flags & F_HANDSHAKE) {
        tls_step(c);
        return;
    }
    if ((events & EPOLLOUT) && (c->flags & F_WANT_OUT))
        write_out(c);
    if (c->flags & F_DEAD)
        return;
    if ((events & EPOLLOUT) && (c->flags & F_TLS_READ_OUT)) {
        c->flags &= ~F_TLS_READ_OUT;
        update_events(c);
        events |= EPOLLIN; /* the read that waited for it, now */
    }
    if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) && reading_allowed(c))
        do_read(c);
    else if ((events & (EPOLLERR | EPOLLHUP)) && !(c->flags & F_WANT_OUT))
        read_error(c, -ECONNRESET);
}

static void conn_timer(sk_timer *t, void *ud)
{
    (void)t;
    sk_conn *c = ud;
    if (c->flags & F_DEAD)
        return;
    uint64_t now = c->loop->now;
    const sk_stream_opts *o = c->opts;
    if (c->flags & F_CONNECTING) {
        set_reason(c, -ETIMEDOUT, "connect timed out");
        finalize(c);
        return;
    }
    if ((c->flags & F_HANDSHAKE) && c->deadline && now >= c->deadline) {
        tls_failed(c, -ETIMEDOUT, "TLS handshake not finished in time");
        return;
    }
    if (c->flags & F_LINGER) {
        finalize(c);
        return;
    }
    if (c->flags & F_CLOSING) {
        /* Still flushing a close: bound it like lingering. */
        set_reason(c, -ETIMEDOUT, "close timed out with %zu bytes unsent", out_queued(c));
        finalize(c);
        return;
    }
    if (c->deadline && now >= c->deadline) {
        if (set_reason(c, -ETIMEDOUT, "%s", c->deadline_reason))
            sk__stat_add(SK__STAT_ERR_DEADLINE, 1);
        sk_conn_fail(c, -ETIMEDOUT, NULL);
        return;
    }
    if (o->frame_timeout_ms && c->frame_start && now - c->frame_start >= o->frame_timeout_ms) {
        if (set_reason(c, -ETIMEDOUT, "frame timeout"))
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
        if (set_reason(c, -ETIMEDOUT, "idle timeout"))
            sk__stat_add(SK__STAT_ERR_IDLE, 1);
        if (c->tls)
            sk__tls_close_notify(c->tls);
        finalize(c);
        return;
    }
    arm_timer(c);
}

/* ------------------------------------------------------------- create */

void sk_stream_opts_init(sk_stream_opts *o)
{
    memset(o, 0, sizeof *o);
    o->framing = SK_FRAMING_RAW;
    o->max_line = SK_DEFAULT_MAX_LINE;
    o->max_frame = SK_DEFAULT_MAX_FRAME;
    o->out_high_water = 1024u * 1024u;
    o->out_low_water = o->out_high_water / 4;
    o->linger_ms = 2000;
}

static void normalise_opts(sk_stream_opts *o)
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

void sk__stream_opts_normalise(sk_stream_opts *o) { normalise_opts(o); }

void sk__conn_set_peer(sk_conn *c, const struct sockaddr *sa, socklen_t len)
{
    if ((sa->sa_family == AF_INET && len >= sizeof c->peer_addr.in4) ||
        (sa->sa_family == AF_INET6 && len >= sizeof c->peer_addr.in6))
        memcpy(&c->peer_addr, sa, sa->sa_family == AF_INET ? sizeof c->peer_addr.in4
                                                          : sizeof c->peer_addr.in6);
}

int sk__conn_create(sk_loop *loop, int fd, const sk_stream_opts *opts,
                    const sk_conn_callbacks *cbs, void *ud, struct sk_server *srv,
                    bool connecting, sk_conn **out)
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
    if (connecting)
        c->flags |= F_CONNECTING;
    int err = 0;
    /* fd < 0: sk_conn_connect's race, which sets up TLS and the watch on the
     * socket that wins. */
    if (opts->tls != NULL && fd >= 0) {
        err = sk__tls_new(opts->tls, fd, opts->tls_host, &c->tls);
        if (err < 0) {
            free(c);
            return err;
        }
        if (!connecting)
            c->flags |= F_HANDSHAKE;
    }
    if (c->flags & F_HANDSHAKE) {
        /* Accepted or adopted under TLS: the handshake goes first; the
         * session says which way it waits (a client writes first). */
        err = sk__watch_set(loop, &c->w, sk__tls_want(c->tls) == SK_WRITABLE ? EPOLLOUT : EPOLLIN);
    } else if (connecting || srv == NULL) {
        /* Connecting: wait for writability. Adopted: on_open runs on the next
         * iteration, and reading starts then. */
        err = connecting && fd >= 0 ? sk__watch_set(loop, &c->w, EPOLLOUT) : 0;
    } else {
        err = sk__watch_set(loop, &c->w, EPOLLIN);
    }
    if (err < 0) {
        sk__tls_free(c->tls);
        free(c);
        return err;
    }
    if (fd >= 0) {
        int one = 1;
        /* Ignored for Unix sockets, where it fails harmlessly. */
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    c->next = loop->conns;
    if (loop->conns)
        loop->conns->prev = c;
    loop->conns = c;
    loop->refs++;
    if (c->flags & F_HANDSHAKE) {
        c->flags &= ~F_HANDSHAKE;
        tls_begin(c);
    } else if (srv != NULL && !connecting) {
        c->flags |= F_CONNECTED_CB;
        arm_timer(c);
    } else if (!connecting) {
        c->flags |= F_OPEN_PENDING;
        arm_timer(c);
        schedule_pending(c);
    } else {
        arm_timer(c);
    }
    *out = c;
    return 0;
}

static owned_cfg *copy_cfg(const sk_stream_opts *opts, const sk_conn_callbacks *cbs)
{
    owned_cfg *cfg = malloc(sizeof *cfg);
    if (cfg == NULL)
        return NULL;
    cfg->cbs = *cbs;
    if (opts)
        cfg->opts = *opts;
    else
        sk_stream_opts_init(&cfg->opts);
    normalise_opts(&cfg->opts);
    return cfg;
}

int sk_conn_adopt(sk_loop *loop, int fd, const sk_stream_opts *opts,
                  const sk_conn_callbacks *cbs, void *ud, sk_conn **out)
{
    if (sk__set_nonblock_cloexec(fd) < 0)
        return -errno;
    owned_cfg *cfg = copy_cfg(opts, cbs);
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
                       const sk_stream_opts *opts, const sk_conn_callbacks *cbs, void *ud,
                       uint32_t timeout_ms, sk_conn **out)
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
    owned_cfg *cfg = copy_cfg(opts, cbs);
    if (cfg == NULL)
        return -ENOMEM;
    int err = sk__conn_create(loop, fd, &cfg->opts, &cfg->cbs, ud, NULL, true, out);
    if (err < 0) {
        free(cfg);
        return err;
    }
    cfg->opts.tls_host = NULL; /* the session has its copy; the caller's may go */
    (*out)->owned_cfg = cfg;
    if (timeout_ms)
        sk_timer_start(&(*out)->timer, timeout_ms, 0);
    return 0;
}

/* ------------------------------------------------ connecting to a name
 *
 * Happy Eyeballs v2 (RFC 8305): every resolved address is tried, IPv6 and
 * IPv4 alternating. An attempt that fails starts the next at once; one still
 * pending after SK_CONNECT_ATTEMPT_DELAY_MS starts the next beside it. The
 * first to connect wins and the others are closed; the connection's own
 * timer (timeout_ms) bounds the whole race. Until a winner exists the
 * connection has no socket (c->w.fd is -1), and TLS starts on the winner. */

typedef struct dial_attempt {
    sk_watch w; /* fd -1 when not started or finished */
    struct dialer *d;
} dial_attempt;

typedef struct dialer {
    sk_watch gc; /* parks the dialer until the batch of events is over */
    sk_conn *c;
    sk_timer delay; /* starts the next address beside a pending one */
    int n, next, pending;
    int err, err_at; /* the last failure and the address it concerns */
    const char *host; /* the name the certificate must carry, or NULL */
    char host_buf[SK_ADDR_HOST_MAX];
    struct sockaddr_storage ss[SK_CONNECT_MAX_ADDRS];
    socklen_t sl[SK_CONNECT_MAX_ADDRS];
    dial_attempt att[SK_CONNECT_MAX_ADDRS]; /* att[i] goes to ss[i] */
} dialer;

/* Drops attempt i (lost, failed or abandoned). */
static void attempt_close(dialer *d, int i)
{
    sk__watch_del(d->c->loop, &d->att[i].w);
    close(d->att[i].w.fd);
    d->att[i].w.fd = -1;
    d->pending--;
}

/* The garbage collector's end of a dialer (sk__watch_dispose). */
static void dialer_destroy(sk_watch *w)
{
    free(SK_CONTAINER_OF(w, dialer, gc));
}

/* Ends the race: closes what is still pending. The memory goes after the
 * current batch of events, which may still hold an attempt's watch. */
static void dialer_free(sk_conn *c)
{
    dialer *d = c->dialer;
    if (d == NULL)
        return;
    for (int i = 0; i < d->n; i++)
        if (d->att[i].w.fd >= 0)
            attempt_close(d, i);
    sk_timer_stop(&d->delay);
    c->dialer = NULL;
    sk__watch_dispose(c->loop, &d->gc);
}

/* The connection fails with the last attempt's error. */
static void dialer_fail(dialer *d)
{
    sk_conn *c = d->c;
    char text[SK_ADDR_HOST_MAX + 64];
    sk_sockaddr_format((struct sockaddr *)&d->ss[d->err_at], d->sl[d->err_at], text, sizeof text);
    set_reason(c, d->err, "connect to %s: %s", text, sk_strerror(d->err));
    finalize(c);
}

static void attempt_event(sk_watch *w, uint32_t events);

/* Starts the connect to address i; 0 when it is under way. */
static int attempt_start(dialer *d, int i)
{
    int fd = socket(d->ss[i].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* Success at once (Unix) is reported by EPOLLOUT like the rest; EINTR
     * leaves the connect going on in the background. */
    if (connect(fd, (struct sockaddr *)&d->ss[i], d->sl[i]) < 0 && errno != EINPROGRESS &&
        errno != EINTR) {
        int err = -errno;
        close(fd);
        return err;
    }
    d->att[i].w.fd = fd;
    int err = sk__watch_set(d->c->loop, &d->att[i].w, EPOLLOUT);
    if (err < 0) {
        close(fd);
        d->att[i].w.fd = -1;
        return err;
    }
    d->pending++;
    return 0;
}

/* Starts addresses in order until one is under way (those failing at once
 * are skipped), then the delay before the one after. */
static void dialer_advance(dialer *d)
{
    sk_timer_stop(&d->delay);
    while (d->next < d->n) {
        int i = d->next++;
        int err = attempt_start(d, i);
        if (err == 0) {
            if (d->next < d->n)
                sk_timer_start(&d->delay, SK_CONNECT_ATTEMPT_DELAY_MS, 0);
            return;
        }
        d->err = err;
        d->err_at = i;
    }
}

/* SK_CONNECT_ATTEMPT_DELAY_MS passed with attempts still pending. */
static void dialer_delay(sk_timer *t, void *ud)
{
    (void)t;
    dialer *d = ud;
    dialer_advance(d);
    if (d->pending == 0)
        dialer_fail(d);
}

/* Attempt i connected: it becomes the connection's socket. */
static void dialer_win(dialer *d, int i)
{
    sk_conn *c = d->c;
    int fd = d->att[i].w.fd;
    sk__watch_del(c->loop, &d->att[i].w);
    d->att[i].w.fd = -1;
    d->pending--;
    const char *host = d->host;
    sk_tls_ctx *tls = c->opts->tls;
    dialer_free(c); /* the losers */
    c->w.fd = fd;
    int one = 1;
    /* Ignored for Unix sockets, where it fails harmlessly. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (tls != NULL) {
        int err = sk__tls_new(tls, fd, host, &c->tls);
        if (err < 0) {
            set_reason(c, err, "TLS: %s", sk_strerror(err));
            finalize(c);
            return;
        }
    }
    connected(c);
}

/* An attempt's socket is writable or in error: won, failed, or (spurious)
 * still connecting. */
static void attempt_event(sk_watch *w, uint32_t events)
{
    (void)events;
    dial_attempt *a = SK_CONTAINER_OF(w, dial_attempt, w);
    dialer *d = a->d;
    int i = (int)(a - d->att);
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr == EINPROGRESS || soerr == EALREADY)
        return;
    if (soerr == 0) {
        dialer_win(d, i);
        return;
    }
    attempt_close(d, i);
    d->err = -soerr;
    d->err_at = i;
    dialer_advance(d); /* a failure starts the next address at once */
    if (d->pending == 0)
        dialer_fail(d);
}

int sk_conn_connect(sk_loop *loop, const sk_addr *addr, const sk_stream_opts *opts,
                    const sk_conn_callbacks *cbs, void *ud, uint32_t timeout_ms, sk_conn **out)
{
    if (addr->kind != SK_ADDR_TCP && addr->kind != SK_ADDR_UNIX && addr->kind != SK_ADDR_TLS)
        return -EPROTONOSUPPORT;
    /* tls:// needs a client context; a context on a plain address is TLS
     * too (the caller asked for it). */
    if (addr->kind == SK_ADDR_TLS && (opts == NULL || opts->tls == NULL))
        return -EINVAL;
    dialer *d = calloc(1, sizeof *d);
    if (d == NULL)
        return -ENOMEM;
    d->n = sk__resolve_for_connect(addr, d->ss, d->sl, SK_CONNECT_MAX_ADDRS, NULL, 0);
    if (d->n < 0) {
        int err = d->n;
        free(d);
        return err;
    }
    owned_cfg *cfg = copy_cfg(opts, cbs);
    sk_conn *c = NULL;
    int err = cfg ? sk__conn_create(loop, -1, &cfg->opts, &cfg->cbs, ud, NULL, true, &c) : -ENOMEM;
    if (err < 0) {
        free(cfg);
        free(d);
        return err;
    }
    c->owned_cfg = cfg;
    c->dialer = d;
    d->c = c;
    d->gc.fd = -1;
    d->gc.destroy = dialer_destroy;
    d->err = -ECONNREFUSED;
    sk__timer_init(&d->delay, loop, dialer_delay, d);
    for (int i = 0; i < d->n; i++)
        d->att[i] = (dial_attempt){.w = {.fd = -1, .on_event = attempt_event}, .d = d};
    /* The name the server's certificate must carry, and its SNI. */
    const char *host = addr->kind != SK_ADDR_UNIX ? addr->host : opts ? opts->tls_host : NULL;
    if (host != NULL) {
        snprintf(d->host_buf, sizeof d->host_buf, "%s", host);
        d->host = d->host_buf;
    }
    dialer_advance(d);
    if (d->pending == 0) {
        /* Every address failed at once: no callbacks, the code says why. */
        err = d->err;
        sk__conn_destroy(c, false);
        return err;
    }
    if (timeout_ms)
        sk_timer_start(&c->timer, timeout_ms, 0);
    *out = c;
    return 0;
}

/* ---------------------------------------------------------- accessors */

void sk_conn_pause(sk_conn *c)
{
    if (c->flags & (F_DEAD | F_PAUSED_USER))
        return;
    c->flags |= F_PAUSED_USER;
    update_events(c);
}

void sk_conn_resume(sk_conn *c)
{
    if ((c->flags & F_DEAD) || !(c->flags & F_PAUSED_USER))
        return;
    c->flags &= ~F_PAUSED_USER;
    update_events(c);
    if (c->in.len > 0)
        schedule_pending(c);
}

void sk_conn_set_deadline(sk_conn *c, uint32_t ms, const char *reason)
{
    if (c->flags & F_DEAD)
        return;
    c->deadline = ms ? c->loop->now + ms : 0;
    /* Copied: a caller's buffer may be gone or reused by the time the
     * deadline passes. */
    snprintf(c->deadline_reason, sizeof c->deadline_reason, "%s",
             reason ? reason : "deadline passed");
    if (!(c->flags & (F_LINGER | F_CONNECTING)))
        arm_timer(c);
}

void sk_conn_set_max_msg(sk_conn *c, size_t max)
{
    c->dec.max = max ? max : max_for(c->opts);
}

void sk_conn_set_data(sk_conn *c, void *ud) { c->ud = ud; }
void *sk_conn_data(const sk_conn *c) { return c->ud; }
sk_loop *sk_conn_loop(const sk_conn *c) { return c->loop; }
int sk_conn_fd(const sk_conn *c) { return c->w.fd; }
enum sk_framing sk_conn_framing(const sk_conn *c) { return c->opts->framing; }
const char *sk_conn_reason(const sk_conn *c) { return c->reason ? c->reason : ""; }
uint64_t sk_conn_bytes_in(const sk_conn *c) { return c->bytes_in; }
uint64_t sk_conn_bytes_out(const sk_conn *c) { return c->bytes_out; }
sk_conn *sk__conn_srv_next(sk_conn *c) { return c->srv_next; }
bool sk__conn_handshaking(const sk_conn *c) { return (c->flags & F_HANDSHAKE) != 0; }

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
        len = c->peer_addr.sa.sa_family == AF_INET ? sizeof c->peer_addr.in4 : sizeof c->peer_addr.in6;
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
void sk__conn_link_srv(sk_conn *c, sk_conn **head)
{
    c->srv_prev = NULL;
    c->srv_next = *head;
    if (*head)
        (*head)->srv_prev = c;
    *head = c;
}

void sk__conn_unlink_srv(sk_conn *c, sk_conn **head)
{
    if (c->srv_prev)
        c->srv_prev->srv_next = c->srv_next;
    else
        *head = c->srv_next;
    if (c->srv_next)
        c->srv_next->srv_prev = c->srv_prev;
    c->srv_prev = c->srv_next = NULL;
}

/* The session is private to this file; tls.c does the exporting. */
int sk_conn_tls_exporter(const sk_conn *c, const char *label, uint8_t *out, size_t len)
{
    return sk__tls_exporter(c->tls, label, out, len);
}
