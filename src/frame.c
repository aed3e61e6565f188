/* frame.c — the raw / line / frame decoders: find the next complete
 * message in a buffer without copying it. The per-message frame step and the
 * header codec are inline in frame.h, for the read path in conn_read.c. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

int sk_framing_parse(const char *name, enum sk_framing *out)
{
    if (strcmp(name, "raw") == 0)
        *out = SK_FRAMING_RAW;
    else if (strcmp(name, "line") == 0)
        *out = SK_FRAMING_LINE;
    else if (strcmp(name, "frame") == 0)
        *out = SK_FRAMING_FRAME;
    else
        return -EINVAL;
    return 0;
}

const char *sk_framing_name(enum sk_framing framing)
{
    switch (framing) {
    case SK_FRAMING_RAW: return "raw";
    case SK_FRAMING_LINE: return "line";
    case SK_FRAMING_FRAME: return "frame";
    }
    return "?";
}

void sk_decoder_init(sk_decoder *d, enum sk_framing framing, size_t max)
{
    d->framing = framing;
    if (max == 0)
        max = framing == SK_FRAMING_LINE ? SK_DEFAULT_MAX_LINE : SK_DEFAULT_MAX_FRAME;
    d->max = max;
    d->scanned = 0;
}

void sk_frame_header(uint8_t out[SK_FRAME_HEADER], uint32_t len) { sk__frame_put(out, len); }

static int next_line(sk_decoder *d, const uint8_t *buf, size_t len, sk_msg *msg, size_t *need)
{
    /* Resume where the previous call stopped so that a line arriving one
     * byte at a time is scanned once in total, not once per byte. */
    size_t from = d->scanned < len ? d->scanned : len;
    const uint8_t *nl = memchr(buf + from, '\n', len - from);
    if (nl == NULL) {
        d->scanned = len;
        if (need)
            *need = 0;
        /* A line may hold max bytes plus a "\r" that will be dropped. */
        if (len > d->max + 1 || (len == d->max + 1 && buf[len - 1] != '\r'))
            return -EMSGSIZE;
        return 0;
    }
    size_t end = (size_t)(nl - buf);
    size_t body = end;
    if (body > 0 && buf[body - 1] == '\r')
        body--;
    d->scanned = 0;
    if (body > d->max)
        return -EMSGSIZE;
    msg->offset = 0;
    msg->len = body;
    msg->consumed = end + 1;
    return 1;
}

static int next_frame(sk_decoder *d, const uint8_t *buf, size_t len, sk_msg *msg, size_t *need)
{
    uint32_t n = 0;
    int r = sk__frame_next(buf, len, d->max, &n);
    if (r == 0 && need)
        *need = len < SK_FRAME_HEADER ? 0 : SK_FRAME_HEADER + (size_t)sk__frame_len(buf);
    if (r <= 0)
        return r;
    msg->offset = SK_FRAME_HEADER;
    msg->len = n;
    msg->consumed = SK_FRAME_HEADER + (size_t)n;
    return 1;
}

int sk_decoder_next(sk_decoder *d, const uint8_t *buf, size_t len, sk_msg *msg, size_t *need)
{
    switch (d->framing) {
    case SK_FRAMING_LINE: return next_line(d, buf, len, msg, need);
    case SK_FRAMING_FRAME: return next_frame(d, buf, len, msg, need);
    case SK_FRAMING_RAW: break;
    }
    if (need)
        *need = 0;
    if (len == 0)
        return 0;
    msg->offset = 0;
    msg->len = len;
    msg->consumed = len;
    return 1;
}

size_t sk__frame_need(enum sk_framing f, size_t max, const uint8_t *held, size_t had,
                      const uint8_t *src, size_t n)
{
    switch (f) {
    case SK_FRAMING_FRAME: {
        if (had < SK_FRAME_HEADER) {
            size_t hdr = SK_FRAME_HEADER - had;
            if (n < hdr)
                return n;
            uint8_t h[SK_FRAME_HEADER];
            memcpy(h, held, had);
            memcpy(h + had, src, hdr);
            uint32_t len = sk__frame_len(h);
            if (len > max)
                return hdr; /* the decoder reports it */
            size_t total = SK_FRAME_HEADER + (size_t)len - had;
            return total < n ? total : n;
        }
        size_t missing = sk__frame_missing(held, had);
        return missing < n ? missing : n;
    }
    case SK_FRAMING_LINE: {
        const uint8_t *nl = memchr(src, '\n', n);
        return nl ? (size_t)(nl - src) + 1 : n;
    }
    case SK_FRAMING_RAW: break;
    }
    return n;
}

void sk__frame_error_text(enum sk_framing f, int err, const uint8_t *buf, size_t len, size_t max,
                          char *out, size_t outlen)
{
    if (f == SK_FRAMING_FRAME && len >= SK_FRAME_HEADER)
        snprintf(out, outlen, "frame too large (%u > max %zu)", sk__frame_len(buf), max);
    else if (f == SK_FRAMING_LINE)
        snprintf(out, outlen, "line too long (max %zu bytes)", max);
    else
        snprintf(out, outlen, "protocol error: %s", sk_strerror(err));
}
