/* frame.h — every rule of the 4-byte frame and of lines, written once: the
 * header codec, the per-message step the read path inlines, what completes a
 * held message, and the text that names an oversize one. Private to src/. */
#ifndef SOCKIT_FRAME_H
#define SOCKIT_FRAME_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include "sockit.h"

/* The payload length a 4-byte big-endian frame header declares. */
static inline uint32_t sk__frame_len(const uint8_t *h)
{
    return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

/* Writes the header that declares a len-byte payload. */
static inline void sk__frame_put(uint8_t *out, uint32_t len)
{
    out[0] = (uint8_t)(len >> 24);
    out[1] = (uint8_t)(len >> 16);
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
}

/* Bytes a reply of this framing adds around its payload: the header, the
 * newline, or nothing. */
static inline size_t sk__frame_overhead(enum sk_framing f)
{
    return f == SK_FRAMING_FRAME ? SK_FRAME_HEADER : (f == SK_FRAMING_LINE ? 1 : 0);
}

/* One frame at the front of buf (len bytes): 1 with *body set to its payload
 * length when it is whole, 0 when more bytes are needed, -EMSGSIZE when the
 * header declares more than max. The length is checked as soon as the header
 * is in, before anything is made room for (two-phase decode). The server's
 * read path runs this once per message, inlined; sk_decoder_next calls it
 * too, so the public decoder and the fuzzer test the same rule. */
static inline int sk__frame_next(const uint8_t *buf, size_t len, size_t max, uint32_t *body)
{
    if (len < SK_FRAME_HEADER)
        return 0;
    uint32_t n = sk__frame_len(buf);
    if (n > max)
        return -EMSGSIZE;
    if (len - SK_FRAME_HEADER < n)
        return 0;
    *body = n;
    return 1;
}

/* Bytes still missing from a frame held in (held, had) whose header has
 * arrived, or 0 when the header is incomplete or the frame whole. */
static inline size_t sk__frame_missing(const uint8_t *held, size_t had)
{
    if (had < SK_FRAME_HEADER)
        return 0;
    size_t total = SK_FRAME_HEADER + (size_t)sk__frame_len(held);
    return total > had ? total - had : 0;
}

/* How many of the n bytes at src finish the partial message held in
 * (held, had) under framing f and maximum max: all n when they do not. The
 * rest of src is decoded where it lies, so only a partial message is ever
 * copied. An oversize header stops the count at the header, for the decoder
 * to report. */
size_t sk__frame_need(enum sk_framing f, size_t max, const uint8_t *held, size_t had,
                      const uint8_t *src, size_t n);

/* Writes the sentence that names a message refused with err (-EMSGSIZE for
 * one over max) at the front of buf (len bytes) into out. */
void sk__frame_error_text(enum sk_framing f, int err, const uint8_t *buf, size_t len, size_t max,
                          char *out, size_t outlen);

#endif
