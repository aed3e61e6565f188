/* fuzz_decoder.c — libFuzzer target for the line and frame decoders: the same
 * bytes fed whole and fed in fuzzer-chosen pieces (the way reads split a
 * stream) must give the same messages, and never read out of bounds. The
 * pieces go through the functions the server's read path calls (frame.h:
 * sk__frame_need, sk__frame_next), the whole stream through the public
 * sk_decoder. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "sockit.h"

#define MAX_MSGS 4096

typedef struct result {
    size_t n;
    size_t off[MAX_MSGS], len[MAX_MSGS];
    int err;
} result;

/* Decodes `stream` as a connection would: bytes arrive in pieces of the given
 * sizes, complete messages are taken from the front, the rest kept. */
static void decode(const uint8_t *stream, size_t len, enum sk_framing f, size_t max,
                   const uint8_t *cuts, size_t ncuts, result *r)
{
    sk_decoder d;
    sk_decoder_init(&d, f, max);
    uint8_t *buf = malloc(len + 1);
    size_t have = 0, fed = 0, base = 0, ci = 0;
    memset(r, 0, sizeof *r);
    while (fed < len && r->err == 0 && r->n < MAX_MSGS) {
        size_t piece = ncuts ? (size_t)cuts[ci++ % ncuts] + 1 : len;
        if (piece > len - fed)
            piece = len - fed;
        memcpy(buf + have, stream + fed, piece);
        have += piece;
        fed += piece;
        for (;;) {
            sk_msg m;
            int rc = sk_decoder_next(&d, buf, have, &m, NULL);
            if (rc < 0) {
                r->err = rc;
                break;
            }
            if (rc == 0 || r->n == MAX_MSGS)
                break;
            if (m.offset + m.len > have || m.consumed > have || m.consumed == 0)
                abort(); /* the decoder pointed outside what it was given */
            r->off[r->n] = base + m.offset;
            r->len[r->n] = m.len;
            r->n++;
            memmove(buf, buf + m.consumed, have - m.consumed);
            have -= m.consumed;
            base += m.consumed;
        }
    }
    free(buf);
}

/* Records one message found at buf + at (stream offset base + at). */
static int deliver(result *r, size_t base, size_t at, size_t len)
{
    if (r->n == MAX_MSGS)
        return 0;
    r->off[r->n] = base + at;
    r->len[r->n] = len;
    r->n++;
    return 1;
}

/* conn_read.c's process_input: every whole message at the front of buf;
 * returns the bytes used, or sets r->err. */
static size_t server_messages(sk_decoder *d, const uint8_t *buf, size_t len, size_t base, result *r)
{
    size_t off = 0;
    while (r->err == 0 && r->n < MAX_MSGS && off < len) {
        size_t at, body, used;
        if (d->framing == SK_FRAMING_FRAME) {
            uint32_t n = 0;
            int rc = sk__frame_next(buf + off, len - off, d->max, &n);
            if (rc < 0)
                r->err = rc;
            if (rc <= 0)
                break;
            at = off + SK_FRAME_HEADER;
            body = n;
            used = SK_FRAME_HEADER + (size_t)n;
        } else {
            sk_msg m;
            int rc = sk_decoder_next(d, buf + off, len - off, &m, NULL);
            if (rc < 0)
                r->err = rc;
            if (rc <= 0)
                break;
            at = off + m.offset;
            body = m.len;
            used = m.consumed;
        }
        if (at + body > len || used == 0 || off + used > len)
            abort(); /* a decoder pointed outside what it was given */
        deliver(r, base, at, body);
        off += used;
    }
    return off;
}

/* Decodes `stream` the way conn_read.c's take_read does: each piece first
 * completes the held partial message (sk__frame_need), then is decoded
 * where it lies, and only a partial message at its end is kept. */
static void decode_as_server(const uint8_t *stream, size_t len, enum sk_framing f, size_t max,
                             const uint8_t *cuts, size_t ncuts, result *r)
{
    sk_decoder d;
    sk_decoder_init(&d, f, max);
    uint8_t *held = malloc(len + 1);
    size_t had = 0, base = 0, fed = 0, ci = 0;
    memset(r, 0, sizeof *r);
    while (fed < len && r->err == 0 && r->n < MAX_MSGS) {
        size_t piece = (size_t)cuts[ci++ % ncuts] + 1;
        if (piece > len - fed)
            piece = len - fed;
        const uint8_t *src = stream + fed;
        size_t off = 0;
        fed += piece;
        if (had > 0) {
            off = sk__frame_need(f, d.max, held, had, src, piece);
            if (off > piece)
                abort();
            memcpy(held + had, src, off);
            had += off;
            size_t used = server_messages(&d, held, had, base, r);
            memmove(held, held + used, had - used);
            had -= used;
            base += used;
            if (had > 0 || r->err != 0) {
                memcpy(held + had, src + off, piece - off);
                had += piece - off;
                continue;
            }
        }
        size_t used = server_messages(&d, src + off, piece - off, base, r);
        base += used;
        memcpy(held, src + off + used, piece - off - used);
        had = piece - off - used;
    }
    free(held);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    /* First byte: framing and a small maximum, so the limits are reached. */
    enum sk_framing f = data[0] & 1 ? SK_FRAMING_FRAME : SK_FRAMING_LINE;
    size_t max = (size_t)(data[0] >> 1) * 3 + 1;
    size_t ncuts = data[1] % 16;
    if (size < 2 + ncuts)
        return 0;
    const uint8_t *cuts = data + 2;
    const uint8_t *stream = data + 2 + ncuts;
    size_t len = size - 2 - ncuts;
    static result whole, pieces;
    decode(stream, len, f, max, NULL, 0, &whole);
    if (ncuts)
        decode_as_server(stream, len, f, max, cuts, ncuts, &pieces);
    else
        decode(stream, len, f, max, NULL, 0, &pieces);
    /* Whole-buffer decoding stops at the first error; piecewise decoding may
     * see the same error earlier (fewer bytes in hand) but never different
     * messages before it. */
    size_t n = whole.n < pieces.n ? whole.n : pieces.n;
    for (size_t i = 0; i < n; i++)
        if (whole.off[i] != pieces.off[i] || whole.len[i] != pieces.len[i])
            abort();
    if (whole.err == 0 && pieces.err == 0 && whole.n != pieces.n && whole.n < MAX_MSGS &&
        pieces.n < MAX_MSGS)
        abort();
    if ((whole.err != 0) != (pieces.err != 0) && whole.n < MAX_MSGS && pieces.n < MAX_MSGS)
        abort();
    return 0;
}
