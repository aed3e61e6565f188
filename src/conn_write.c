/* conn_write.c — where bytes leave: every way of queuing output goes
 * through out_append (or out_open for slices and files), which first settles
 * the zero-copy echo run, so no send function can reorder replies; the
 * flush at the end of each loop iteration; the echo run taken from rbuf
 * (sent by sk__conn_echo_flush, inline in conn.h for the read loop). */
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

/* Carries the change of this queue into sk_stats.queued. */
static void count_queued(sk_conn *c)
{
    size_t q = sk__conn_out_queued(c);
    if (q != c->queued_counted) {
        sk__stat_local_queued(c->loop, (int64_t)q - (int64_t)c->queued_counted);
        c->queued_counted = q;
    }
}

/* ------------------------------------------------------------- output */

static void resume_after_drain(sk_conn *c)
{
    c->st &= ~CF_PAUSED_HW;
    sk__conn_update_events(c);
    sk__conn_frame_clock_restart(c);
    if (c->in.len > 0)
        sk__conn_schedule_pending(c);
    if (c->cbs->on_drain)
        c->cbs->on_drain(c);
}

void sk__conn_write_out(sk_conn *c)
{
    while (sk__conn_out_queued(c) > 0) {
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
                           : sk__conn_send(c, c->out.data + c->out.off, c->out.len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!(c->st & CF_WANT_OUT)) {
                    c->st |= CF_WANT_OUT;
                    sk__conn_update_events(c);
                }
                break;
            }
            int err = -errno;
            if (err == -EPIPE || err == -ECONNRESET)
                sk__conn_set_reason(c, err, "connection reset");
            else
                sk__conn_set_reason(c, err, "write: %s", sk_strerror(err));
            sk__conn_finalize(c);
            return;
        }
        if (n == 0 && offered > 0) {
            /* Only a file range sends nothing: its file ended before the
             * range did. The bytes were promised (a frame header may say
             * so), and nothing else can stand in for them. */
            sk__conn_set_reason(c, -EIO,
                                "sendfile: the file is shorter than the range queued "
                                "(truncated while queued)");
            sk__conn_finalize(c);
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
            if (!(c->st & CF_WANT_OUT)) {
                c->st |= CF_WANT_OUT;
                sk__conn_update_events(c);
            }
            break;
        }
    }
    count_queued(c);
    if (c->st & CS_DEAD)
        return;
    if ((c->st & CF_PAUSED_HW) && sk__conn_out_queued(c) <= c->opts->out_low_water)
        resume_after_drain(c);
    if (sk__conn_out_queued(c) > 0)
        return;
    if (c->st & CF_WANT_OUT) {
        c->st &= ~CF_WANT_OUT;
        sk__conn_update_events(c);
    }
    if ((c->st & CF_SHUT_ASKED) && !(c->st & CF_SHUT_SENT)) {
        c->st |= CF_SHUT_SENT;
        sk__conn_shut_wr(c);
    }
    if (c->st & CS_CLOSING)
        sk__conn_start_close(c);
}

void sk__conns_flush(sk_loop *loop)
{
    while (loop->flush_head) {
        sk_conn *c = loop->flush_head;
        loop->flush_head = c->flush_next;
        c->st &= ~CF_IN_FLUSH;
        if (!(c->st & NO_FLUSH))
            sk__conn_write_out(c);
    }
}

/* ------------------------------------------------ replies sent from rbuf
 *
 * An echo-like reply is byte for byte the message it answers: a frame with
 * its header, a raw chunk, a line with its newline. While the connection's
 * read is decoded in the loop's read buffer, such replies are not copied:
 * the run of rbuf they cover is remembered (loop->echo_start/end) and sent
 * from there once the read is decoded (sk__conn_echo_flush), before rbuf is read
 * into again. Anything else queued on the connection first copies the run
 * into the output buffer (echo_settle), so order is kept. */

/* Whether the reply (data, len) is the next run of the read under decode;
 * if so it is taken as such. */
static bool echo_take(sk_conn *c, const uint8_t *data, size_t len)
{
    sk_loop *loop = c->loop;
    if (loop->reading != c || c->out.len != 0 || sk__outq_active(c->outq) || c->tls ||
        (c->st & (NO_QUEUE | CF_WANT_OUT)))
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
        sk__conn_echo_settle(c);
        return false;
    }
    loop->echo_end = end;
    return true;
}

/* Copies the pending run into the output buffer (something else is being
 * queued behind it, or the connection is closing). */
void sk__conn_echo_settle(sk_conn *c)
{
    sk_loop *loop = c->loop;
    if (loop->reading != c || loop->echo_start == NULL)
        return;
    const uint8_t *p = loop->echo_start;
    size_t n = (size_t)(loop->echo_end - p);
    loop->echo_start = loop->echo_end = NULL;
    int err = sk__buf_reserve(loop, &c->out, n);
    if (err < 0) {
        sk__conn_set_reason(c, err, "output buffer: %s", sk_strerror(err));
        sk_conn_abort(c, err);
        return;
    }
    memcpy(c->out.data + c->out.off + c->out.len, p, n);
    c->out.len += n;
    sk__conn_queued(c);
}

/* A full large output buffer is sent now rather than grown: the kernel
 * usually takes it whole, so one send per 64 KiB replaces a bigger buffer
 * and the copy into it. Only plain bytes, only while the socket has room;
 * errors are left for the regular flush to meet and report. */
static void send_early(sk_conn *c)
{
    sk_buf *b = &c->out;
    ssize_t n = sk__conn_send(c, b->data + b->off, b->len);
    if (n > 0) {
        c->bytes_out += (uint64_t)n;
        sk__stat_local(c->loop, SK__STAT_BYTES_OUT, (uint64_t)n);
        b->off += (size_t)n;
        b->len -= (size_t)n;
        if (b->len == 0)
            b->off = 0;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        c->st |= CF_WANT_OUT;
        sk__conn_update_events(c);
    }
}

/* The gate every way of queuing output passes (out_append for bytes, the
 * slice and file senders directly): refuses once the connection is closing,
 * and first copies a pending zero-copy echo run into the output buffer, so
 * whatever is queued next goes out after the replies before it. */
static int out_open(sk_conn *c)
{
    if (c->st & NO_QUEUE)
        return -EPIPE;
    sk__conn_echo_settle(c);
    return (c->st & CS_DEAD) ? -EPIPE : 0;
}

/* Makes room for total more bytes in the output buffer (out_open first). */
static int queue_reserve(sk_conn *c, size_t total)
{
    int err = out_open(c);
    if (err < 0)
        return err;
    sk_buf *b = &c->out;
    if (b->cap == SK_READ_CHUNK && b->cap - b->off - b->len < total &&
        !(c->st & (CF_WANT_OUT | CS_CONNECTING | CS_HANDSHAKE)) && !sk__outq_active(c->outq))
        send_early(c);
    err = sk__buf_reserve(c->loop, b, total);
    if (err < 0) {
        sk__conn_set_reason(c, err, "output buffer: %s", sk_strerror(err));
        sk_conn_abort(c, err);
    }
    return err;
}

/* The one way bytes join the output buffer: returns where total bytes go
 * (already counted in out.len), or NULL with *errp set. The common case,
 * room in the buffer held and no echo run to settle, is a compare and an
 * add; everything else goes through out_open by queue_reserve. */
static inline uint8_t *out_append(sk_conn *c, size_t total, int *errp)
{
    sk_buf *b = &c->out;
    if (b->data == NULL || b->cap - b->off - b->len < total || (c->st & NO_QUEUE) ||
        c->loop->echo_start != NULL) {
        int err = queue_reserve(c, total);
        if (err < 0) {
            *errp = err;
            return NULL;
        }
    }
    uint8_t *p = b->data + b->off + b->len;
    b->len += total;
    return p;
}

void sk__conn_queued(sk_conn *c)
{
    if (!(c->st & CF_WANT_OUT))
        sk__conn_schedule_flush(c);
    if (!(c->st & CF_PAUSED_HW) && sk__conn_out_queued(c) > c->opts->out_high_water) {
        c->st |= CF_PAUSED_HW;
        sk__conn_update_events(c);
    }
}

int sk_conn_send(sk_conn *c, const void *data, size_t len)
{
    if (len == 0)
        return (c->st & CS_ENDING) ? -EPIPE : 0;
    int err = 0;
    uint8_t *p = out_append(c, len, &err);
    if (p == NULL)
        return err;
    memcpy(p, data, len);
    sk__conn_queued(c);
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
    if (c->opts->framing == SK_FRAMING_FRAME && len <= UINT32_MAX) {
        int err = 0;
        uint8_t *p = out_append(c, len + SK_FRAME_HEADER, &err);
        if (p == NULL)
            return err;
        sk__frame_put(p, (uint32_t)len);
        if (len)
            memcpy(p + SK_FRAME_HEADER, data, len);
        sk__stat_local(c->loop, SK__STAT_MSGS_OUT, 1);
        if ((c->st & (CF_IN_FLUSH | CF_WANT_OUT | CF_PAUSED_HW)) != CF_IN_FLUSH ||
            sk__conn_out_queued(c) > c->opts->out_high_water)
            sk__conn_queued(c);
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
    int err = 0;
    uint8_t *p = out_append(c, len + extra, &err);
    if (p == NULL) {
        if (errp)
            *errp = err;
        return NULL;
    }
    if (f == SK_FRAMING_FRAME) {
        sk__frame_put(p, (uint32_t)len);
        p += SK_FRAME_HEADER;
    } else if (f == SK_FRAMING_LINE) {
        p[len] = '\n';
    }
    sk__conn_queued(c);
    sk__stat_local(c->loop, SK__STAT_MSGS_OUT, 1);
    return p;
}

int sk_conn_send_shared(sk_conn *c, sk_shared *s, size_t off, size_t len)
{
    if (off > sk_shared_len(s) || len > sk_shared_len(s) - off)
        return -EINVAL;
    int err = out_open(c);
    if (err < 0)
        return err;
    if (len == 0)
        return 0;
    if (sk__outq_copy_instead(c->outq, len))
        return sk_conn_send(c, sk_shared_data(s) + off, len);
    err = sk__outq_push(&c->outq, s, off, len, c->out.len);
    if (err < 0) {
        sk__conn_set_reason(c, err, "output queue: %s", sk_strerror(err));
        sk_conn_abort(c, err);
        return err;
    }
    sk__conn_queued(c);
    return 0;
}

int sk_conn_sendfile(sk_conn *c, int fd, uint64_t off, size_t len)
{
    if (fd < 0 || off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return -EINVAL;
    int err = out_open(c);
    if (err < 0)
        return err;
    if (len == 0)
        return 0;
    err = sk__outq_push_file(&c->outq, fd, off, len, c->out.len);
    if (err == -ENOBUFS || err == -ENOMEM) {
        sk__conn_set_reason(c, err, "output queue: %s", sk_strerror(err));
        sk_conn_abort(c, err);
        return err;
    }
    if (err < 0)
        return err; /* no descriptor for the duplicate: nothing queued, c untouched */
    sk__conn_queued(c);
    return 0;
}

size_t sk_conn_queued(const sk_conn *c) { return sk__conn_out_queued(c); }
