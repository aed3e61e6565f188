/* frame.c — the raw / line / frame decoders (SPEC §4): find the next complete
 * message in a buffer without copying it. */
#include <errno.h>
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

void sk_frame_header(uint8_t out[SK_FRAME_HEADER], uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

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
    if (len < SK_FRAME_HEADER) {
        if (need)
            *need = 0;
        return 0;
    }
    /* Two-phase decode: validate the declared length before anything is
     * made room for. */
    uint32_t n = sk__frame_len(buf);
    if (n > d->max)
        return -EMSGSIZE;
    size_t total = SK_FRAME_HEADER + (size_t)n;
    if (len < total) {
        if (need)
            *need = total;
        return 0;
    }
    msg->offset = SK_FRAME_HEADER;
    msg->len = n;
    msg->consumed = total;
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
