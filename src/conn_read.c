/* conn_read.c — where bytes enter: reads into the loop's shared buffer,
 * decoded in place with frame.h's rules (only a partial message is copied
 * into the connection's buffer), peer EOF, and lingering reads. */
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
        !(c->st & CF_TLS_READ_OUT)) {
        /* Rare (a key update to answer into a full socket buffer): the read
         * waits for EPOLLOUT, which conn_event turns back into a read. */
        c->st |= CF_TLS_READ_OUT;
        sk__conn_update_events(c);
        errno = EAGAIN;
    }
    return n;
}

/* -------------------------------------------------------------- input */

static void protocol_error(sk_conn *c, int err, const uint8_t *buf, size_t len)
{
    char text[128];
    sk__frame_error_text(c->opts->framing, err, buf, len, c->dec.max, text, sizeof text);
    if (sk__conn_set_reason(c, err, "%s", text))
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
        while (len - off >= SK_FRAME_HEADER && sk__conn_decoding_allowed(c)) {
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
    while (c->opts->framing != SK_FRAMING_FRAME && sk__conn_decoding_allowed(c) && off < len) {
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
                    sk__conn_arm_timer(c);
            }
        }
    } else {
        c->frame_start = 0;
    }
    return off;
}

static void on_peer_eof(sk_conn *c)
{
    c->st |= CF_PEER_EOF;
    if (c->st & CS_LINGER) {
        sk__conn_finalize(c);
        return;
    }
    sk__conn_update_events(c);
    if (c->cbs->on_eof) {
        c->cbs->on_eof(c);
    } else {
        if (c->in.len > 0 && c->opts->framing != SK_FRAMING_RAW)
            sk__conn_set_reason(c, 0, "peer closed mid-message (%zu bytes dropped)", c->in.len);
        else
            sk__conn_set_reason(c, 0, "peer closed");
        sk_conn_close(c);
    }
}

void sk__conn_read_error(sk_conn *c, int err)
{
    if (err == -ECONNRESET)
        sk__conn_set_reason(c, err, "connection reset");
    else
        sk__conn_set_reason(c, err, "read: %s", sk_strerror(err));
    sk__conn_finalize(c);
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
        sk__conn_finalize(c);
        return;
    }
}

static bool keep_input(sk_conn *c, const uint8_t *src, size_t n)
{
    int err = sk__buf_reserve(c->loop, &c->in, n);
    if (err < 0) {
        sk__conn_set_reason(c, err, "input buffer: %s", sk_strerror(err));
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
    if (c->st & CS_DEAD)
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
        off =
            sk__frame_need(c->opts->framing, c->dec.max, c->in.data + c->in.off, c->in.len, src, n);
        if (!keep_input(c, src, off) || !decode_buffered(c))
            return;
        if (c->in.len > 0) {
            /* Still incomplete, or decoding paused or closed mid-buffer:
             * everything read stays queued behind it, in order. */
            if (off < n && !(c->st & (CS_CLOSING | CS_LINGER)))
                (void)keep_input(c, src + off, n - off);
            return;
        }
    }
    if (off == n)
        return;
    size_t used = process_input(c, src + off, n - off);
    if (c->st & CS_DEAD)
        return;
    off += used;
    if (off < n && !(c->st & (CS_CLOSING | CS_LINGER)))
        (void)keep_input(c, src + off, n - off);
}

void sk__conn_read(sk_conn *c)
{
    if (c->st & CS_LINGER) {
        discard_input(c);
        return;
    }
    sk_loop *loop = c->loop;
    /* Whole messages still buffered (left when output passed the high-water
     * mark) are answered before anything more is read: reading first would
     * grow the buffer by a read per round while decoding only a reply's
     * worth, and an EOF read now would be taken for a cut-off message. */
    if (c->in.len > 0 && sk__conn_decoding_allowed(c) && !decode_buffered(c))
        return;
    for (int i = 0; i < SK_READS_PER_EVENT && sk__conn_reading_allowed(c); i++) {
        uint8_t *dst = loop->rbuf;
        size_t cap = SK_READ_CHUNK;
        /* A large frame under way is read straight into its buffer, which
         * grows with what has arrived (to at most four times what is held:
         * a 256 KiB frame costs one copy of its first 64 KiB), never from
         * the declared length alone. */
        size_t missing = c->in.len >= SK_FRAME_HEADER && c->opts->framing == SK_FRAMING_FRAME
                             ? sk__frame_missing(c->in.data + c->in.off, c->in.len)
                             : 0;
        bool direct = missing >= SK_READ_CHUNK / 2;
        if (direct) {
            size_t want = c->in.len > SK_READ_CHUNK / 3 ? 3 * c->in.len : SK_READ_CHUNK;
            if (want > missing)
                want = missing;
            int err = sk__buf_reserve(loop, &c->in, want);
            if (err < 0) {
                sk__conn_set_reason(c, err, "input buffer: %s", sk_strerror(err));
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
                sk__conn_read_error(c, -errno);
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
            sk__conn_echo_flush(c);
            loop->reading = NULL;
            if (c->st & CS_DEAD)
                return;
        }
        /* A short read means the socket is drained: the next read would only
         * say EAGAIN, and level-triggered epoll wakes us when more comes. */
        if ((size_t)n < cap)
            return;
    }
    /* TLS: the reads per event are used up, and OpenSSL may hold decrypted
     * bytes that no epoll event will announce. */
    if (c->tls && sk__conn_reading_allowed(c) && sk__tls_pending(c->tls))
        sk__conn_schedule_pending(c);
}

void sk__conns_process_pending(sk_loop *loop)
{
    while (loop->pending_head) {
        sk_conn *c = loop->pending_head;
        loop->pending_head = c->pending_next;
        c->st &= ~CF_IN_PENDING;
        if (c->st & CS_DEAD)
            continue;
        if (c->st & CF_OPEN_DUE) {
            c->st &= ~CF_OPEN_DUE;
            c->st |= CF_OPENED;
            sk__conn_update_events(c);
            if (c->cbs->on_open)
                c->cbs->on_open(c);
        }
        if (c->in.len > 0 && sk__conn_decoding_allowed(c)) {
            size_t used = process_input(c, c->in.data + c->in.off, c->in.len);
            if (!(c->st & CS_DEAD))
                sk__buf_consume(loop, &c->in, used);
        }
        /* TLS: decrypted bytes left inside OpenSSL (a read that filled the
         * buffer, a pause) wait for no epoll event: read them now. */
        if (c->tls && !(c->st & (CS_DEAD | CS_HANDSHAKE)) && sk__conn_reading_allowed(c) &&
            sk__tls_pending(c->tls))
            sk__conn_read(c);
    }
}
