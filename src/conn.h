/* conn.h — private to the connection files: struct sk_conn, its state and
 * the helpers shared by conn.c (lifecycle), conn_read.c (bytes in, messages
 * out of them), conn_write.c (every way output is queued and sent) and
 * dial.c (sk_conn_connect's race). Not installed. */
#ifndef SOCKIT_CONN_H
#define SOCKIT_CONN_H

#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "internal.h"
#include "tls.h"

enum {
    F_CONNECTING = 1u << 0,   /* non-blocking connect in progress */
    F_OPEN_PENDING = 1u << 1, /* on_open due on the next iteration (adopted) */
    F_PAUSED_USER = 1u << 2,  /* sk_conn_pause() */
    F_PAUSED_HW = 1u << 3,    /* output over the high-water mark */
    F_EOF = 1u << 4,          /* the peer shut down its write side */
    F_CLOSING = 1u << 5,      /* close requested: flush, then shut down */
    F_SHUT_PENDING = 1u << 6, /* sk_conn_shutdown(): shut down once flushed */
    F_SHUT_DONE = 1u << 7,
    F_LINGER = 1u << 8,    /* write side shut; discarding input until EOF */
    F_DEAD = 1u << 9,      /* on the close list; no more callbacks but on_close */
    F_WANT_OUT = 1u << 10, /* the kernel buffer was full: EPOLLOUT armed */
    F_IN_FLUSH = 1u << 11,
    F_IN_PENDING = 1u << 12,
    F_CONNECTED_CB = 1u << 13, /* on_open has run: on_close is owed */
    F_IN_CLOSE = 1u << 14,     /* on loop->close_head */
    F_HANDSHAKE = 1u << 15,    /* TLS handshake in progress: on_open not yet run */
    F_TLS_READ_OUT = 1u << 16  /* a TLS read waits for EPOLLOUT (it must send first) */
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
    const sk_conn_opts *opts;
    uint32_t flags;
    int err;
    sk_buf in, out;
    sk_outq *outq;         /* shared slices and file ranges queued after or between out's bytes */
    sk__tls *tls;          /* TLS session (tls.c), or NULL: every byte in and out goes through it */
    size_t queued_counted; /* this queue's share of sk_stats.queued */
    uint64_t last_active;
    uint64_t bytes_in, bytes_out;
    uint64_t frame_start; /* when the buffered partial message began, or 0 */
    sk_conn *flush_next, *pending_next, *close_next;
    sk_decoder dec;
    void *ud;
    struct sk_server *srv;
    void *owned_cfg;       /* cbs/opts copy for adopted and connecting connections */
    struct dialer *dialer; /* sk_conn_connect's race of attempts, until one wins */
    sk_timer timer;
    uint64_t deadline; /* sk_conn_set_deadline(), or 0 */
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
    sk_list link;     /* loop->conns */
    sk_list srv_link; /* the server's connections */
};

typedef struct owned_cfg {
    sk_conn_callbacks cbs;
    sk_conn_opts opts;
} owned_cfg;

/* The dialer of a connection being made by sk_conn_connect (dial.c). */
struct dialer;

/* Records why the connection ends; returns whether this was the first
 * reason (the one counted in sk_stats: resets and memory refusals here,
 * timeouts and protocol errors by the callers that know which). */
bool sk__conn_set_reason(sk_conn *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* conn.c: lifecycle */
void sk__conn_update_events(sk_conn *c);
void sk__conn_arm_timer(sk_conn *c);
int sk__conn_shut_wr(sk_conn *c);
void sk__conn_start_close(sk_conn *c);
void sk__conn_finalize(sk_conn *c);
void sk__conn_connected(sk_conn *c);
owned_cfg *sk__conn_copy_cfg(const sk_conn_opts *opts, const sk_conn_callbacks *cbs);
/* conn_read.c */
void sk__conn_read(sk_conn *c);
void sk__conn_read_error(sk_conn *c, int err);
/* conn_write.c */
void sk__conn_write_out(sk_conn *c);
void sk__conn_echo_settle(sk_conn *c);
void sk__conn_queued(sk_conn *c);
/* dial.c */
void sk__conn_dialer_free(sk_conn *c);

static inline bool sk__conn_reading_allowed(const sk_conn *c)
{
    if (c->flags & F_LINGER)
        return true;
    return !(c->flags & (F_CONNECTING | F_PAUSED_USER | F_PAUSED_HW | F_EOF | F_CLOSING | F_DEAD));
}

static inline bool sk__conn_decoding_allowed(const sk_conn *c)
{
    return !(c->flags & (F_PAUSED_USER | F_PAUSED_HW | F_CLOSING | F_DEAD | F_CONNECTING));
}

static inline void sk__conn_schedule_flush(sk_conn *c)
{
    if (c->flags & F_IN_FLUSH)
        return;
    c->flags |= F_IN_FLUSH;
    c->flush_next = c->loop->flush_head;
    c->loop->flush_head = c;
}

static inline void sk__conn_schedule_pending(sk_conn *c)
{
    if (c->flags & F_IN_PENDING)
        return;
    c->flags |= F_IN_PENDING;
    c->pending_next = c->loop->pending_head;
    c->loop->pending_head = c;
}

/* Everything waiting to be sent: copied bytes, shared slices, file ranges. */
static inline size_t sk__conn_echo_pending(const sk_conn *c)
{
    return c->loop->reading == c ? (size_t)(c->loop->echo_end - c->loop->echo_start) : 0;
}

static inline size_t sk__conn_out_queued(const sk_conn *c)
{
    size_t n = c->outq ? c->out.len + sk__outq_bytes(c->outq) : c->out.len;
    return n + sk__conn_echo_pending(c);
}

/* Plain send, or through the TLS session (tls.h keeps send() semantics). */
static inline ssize_t sk__conn_send(sk_conn *c, const void *buf, size_t len)
{
    if (c->tls == NULL)
        return send(c->w.fd, buf, len, MSG_NOSIGNAL);
    return sk__tls_write(c->tls, buf, len);
}

/* The read is decoded: sends the run now, from rbuf; what the kernel does
 * not take is copied to the output buffer for the regular flush (conn_write.c
 * owns the run; this part is here so the read loop inlines it, one call
 * fewer per read). */
static inline void sk__conn_echo_flush(sk_conn *c)
{
    sk_loop *loop = c->loop;
    if (loop->echo_start == NULL)
        return;
    if (c->flags & F_DEAD) {
        loop->echo_start = loop->echo_end = NULL;
        return;
    }
    size_t n = (size_t)(loop->echo_end - loop->echo_start);
    ssize_t w = sk__conn_send(c, loop->echo_start, n);
    if (w > 0) {
        c->bytes_out += (uint64_t)w;
        c->last_active = loop->now;
        sk__stat_local(loop, SK__STAT_BYTES_OUT, (uint64_t)w);
        loop->echo_start += w;
    }
    if (loop->echo_start != loop->echo_end)
        sk__conn_echo_settle(c); /* the rest, or an error, goes the regular way */
    loop->echo_start = loop->echo_end = NULL;
}

#endif
