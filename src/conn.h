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

/* A connection's lifecycle is one state at a time:
 *
 *     sk_conn_connect*          accepted or adopted
 *           |                    |               |
 *           v        TLS         v      TLS      | plain
 *      CONNECTING ---------> HANDSHAKE -----> OPEN <-+
 *           |  plain                                 |
 *           +----------------------------------------+
 *                                                 | sk_conn_close()
 *                                                 v
 *                                              CLOSING    output still to flush
 *                                                 | flushed: our FIN sent
 *                                                 v
 *                                              LINGER     input discarded until
 *                                                 |       the peer's EOF or a timer
 *                                                 v
 *      from any state (errors, timeouts, aborts): DEAD
 *
 * DEAD: on the close list; on_close is the only callback left. A close
 * before OPEN, or in CLOSING once the peer has finished too, goes straight to
 * DEAD. The values are single bits, so a set of states is a mask, and they
 * share the word c->st with the orthogonal CF_ bits below: each gate on the
 * hot path (the NO_ masks below) stays one test, as with plain flags. */
enum conn_state {
    CS_CONNECTING = 1u << 0, /* non-blocking connect in progress (or sk_conn_connect's race) */
    CS_HANDSHAKE = 1u << 1,  /* TLS handshake in progress: on_open not yet run */
    CS_OPEN = 1u << 2,
    CS_CLOSING = 1u << 3, /* close requested: flush, then shut down */
    CS_LINGER = 1u << 4,  /* write side shut; discarding input until EOF */
    CS_DEAD = 1u << 5,    /* on the close list; no more callbacks but on_close */
    CS_MASK = (1u << 6) - 1
};

/* What holds beside the state, in any state. */
enum {
    /* Input gates (see the table below). */
    CF_PAUSED_USER = 1u << 8, /* sk_conn_pause() */
    CF_PAUSED_HW = 1u << 9,   /* output over the high-water mark */
    CF_PEER_EOF = 1u << 10,   /* the peer shut down its write side (stops reading only) */
    /* Output: sk_conn_shutdown() may come in any state before CLOSING. */
    CF_WANT_OUT = 1u << 11,     /* the kernel buffer was full: EPOLLOUT armed */
    CF_TLS_READ_OUT = 1u << 12, /* a TLS read waits for EPOLLOUT (it must send first) */
    CF_SHUT_ASKED = 1u << 13,   /* sk_conn_shutdown(): no more output; shut down once flushed */
    CF_SHUT_SENT = 1u << 14,    /* our write side is shut */
    /* Callbacks owed. */
    CF_OPEN_DUE = 1u << 15,     /* adopted: on_open runs on the next iteration */
    CF_OPENED = 1u << 16,       /* on_open has run: on_close is owed */
    CF_DIED_OPENING = 1u << 17, /* died CONNECTING or in HANDSHAKE: a client hears on_close */
    /* Membership of the loop's work lists (conn.c unlinks on destroy). */
    CF_IN_FLUSH = 1u << 18,
    CF_IN_PENDING = 1u << 19,
    CF_IN_CLOSE = 1u << 20 /* on loop->close_head */
};

/* The gates, as a table: the states and bits that stop each action (x).
 *
 *            CONNECTING HANDSHAKE OPEN CLOSING LINGER DEAD  paused EOF shut
 *   read         x                       x       *     x      x     x
 *   decode       x                       x       x     x      x
 *   queue                                x       x     x                x
 *   flush        x          x                    x     x
 *
 * (*) LINGER reads whatever the bits say: it only discards. HANDSHAKE's own
 * reads and writes go through tls_step, before any of these gates. */
#define NO_READ (CS_CONNECTING | CS_CLOSING | CS_DEAD | CF_PAUSED_USER | CF_PAUSED_HW | CF_PEER_EOF)
/* While we do not read (the service paused us, or our output to the peer
 * is over the high-water mark) a partial message cannot complete, and that
 * is not the peer's doing: the frame clock stops, and restarts from zero
 * when reading resumes. */
#define FRAME_CLOCK_STOPPED (CF_PAUSED_USER | CF_PAUSED_HW)
#define NO_DECODE           (CS_CONNECTING | CS_CLOSING | CS_LINGER | CS_DEAD | CF_PAUSED_USER | CF_PAUSED_HW)
#define NO_QUEUE            (CS_CLOSING | CS_LINGER | CS_DEAD | CF_SHUT_ASKED)
#define NO_FLUSH            (CS_CONNECTING | CS_HANDSHAKE | CS_LINGER | CS_DEAD)
/* Closed by us: sk_conn_close() has run (or the connection died). */
#define CS_ENDING (CS_CLOSING | CS_LINGER | CS_DEAD)

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
    uint32_t st; /* one enum conn_state value | CF_ bits */
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

/* Reading may go on again: a held partial message gets a fresh frame clock
 * (FRAME_CLOCK_STOPPED), once neither pause holds it. */
static inline void sk__conn_frame_clock_restart(sk_conn *c)
{
    if (c->frame_start && !(c->st & FRAME_CLOCK_STOPPED)) {
        c->frame_start = c->loop->now;
        sk__conn_arm_timer(c);
    }
}
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

static inline enum conn_state sk__conn_state(const sk_conn *c)
{
    return (enum conn_state)(c->st & CS_MASK);
}

/* The one way the state changes; the CF_ bits stay as they are. */
static inline void sk__conn_set_state(sk_conn *c, enum conn_state s)
{
    c->st = (c->st & ~(uint32_t)CS_MASK) | (uint32_t)s;
}

/* LINGER reads whatever the gates say: it only discards, waiting for EOF.
 * The common case (nothing stops reading) is tested first: one test. */
static inline bool sk__conn_reading_allowed(const sk_conn *c)
{
    return !(c->st & NO_READ) || (c->st & CS_LINGER);
}

static inline bool sk__conn_decoding_allowed(const sk_conn *c) { return !(c->st & NO_DECODE); }

static inline void sk__conn_schedule_flush(sk_conn *c)
{
    if (c->st & CF_IN_FLUSH)
        return;
    c->st |= CF_IN_FLUSH;
    c->flush_next = c->loop->flush_head;
    c->loop->flush_head = c;
}

static inline void sk__conn_schedule_pending(sk_conn *c)
{
    if (c->st & CF_IN_PENDING)
        return;
    c->st |= CF_IN_PENDING;
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
    if (c->st & CS_DEAD) {
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
