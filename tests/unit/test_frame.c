/* test_frame.c — sk_decoder_init/sk_decoder_next/sk_frame_header for raw, line and frame framing,
 * fed at every split point; and frame.h, the rules the read path runs (sk__frame_next,
 * sk__frame_need, sk__frame_error_text). */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "sockit.h"
#include "unit.h"

TestSuite(frame, .init = unit_alarm);

/* One expected message of a stream. */
typedef struct expect {
    const uint8_t *data;
    size_t len;
} expect;

/* A test stream: the encoded bytes and the messages they must decode to. */
typedef struct stream {
    uint8_t *bytes;
    size_t len, cap;
    expect msgs[32];
    uint8_t *owned[32]; /* payload copies, freed with the stream */
    size_t nmsgs;
} stream;

static void stream_put(stream *s, const void *p, size_t n)
{
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2 + 64;
        s->bytes = realloc(s->bytes, s->cap);
        cr_assert_not_null(s->bytes);
    }
    if (n > 0)
        memcpy(s->bytes + s->len, p, n);
    s->len += n;
}

static void stream_expect(stream *s, const void *payload, size_t n)
{
    cr_assert(s->nmsgs < 32);
    uint8_t *copy = malloc(n + 1);
    cr_assert_not_null(copy);
    if (n > 0)
        memcpy(copy, payload, n);
    s->owned[s->nmsgs] = copy;
    s->msgs[s->nmsgs].data = copy;
    s->msgs[s->nmsgs].len = n;
    s->nmsgs++;
}

/* Appends one frame, encoding the header by hand (not with sk_frame_header,
 * so a wrong header writer cannot hide a wrong reader). */
static void stream_frame(stream *s, const void *payload, size_t n)
{
    uint8_t h[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    stream_put(s, h, 4);
    stream_put(s, payload, n);
    stream_expect(s, payload, n);
}

/* Appends one line as it appears on the wire and the payload it must yield. */
static void stream_line(stream *s, const char *wire, size_t wire_len, const char *payload,
                        size_t payload_len)
{
    stream_put(s, wire, wire_len);
    stream_expect(s, payload, payload_len);
}

static void stream_free(stream *s)
{
    for (size_t i = 0; i < s->nmsgs; i++)
        free(s->owned[i]);
    free(s->bytes);
    memset(s, 0, sizeof *s);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Feeds s->bytes to a fresh decoder in chunks that end at the offsets in
 * cuts[] (ascending, the last one == s->len), the way a connection does: append
 * the chunk to the buffer of unconsumed bytes, take every complete message
 * from its front, keep the rest. Each call sees a heap copy of exactly the
 * unconsumed bytes so AddressSanitizer catches a read past len. Checks the
 * exact message sequence and the `need` contract. */
static void feed(enum sk_framing framing, size_t max, const stream *s, const size_t *cuts,
                 size_t ncuts, const char *what)
{
    sk_decoder d;
    sk_decoder_init(&d, framing, max);
    uint8_t *acc = malloc(s->len + 1);
    cr_assert_not_null(acc);
    size_t have = 0, pos = 0, got = 0;

    for (size_t c = 0; c < ncuts; c++) {
        size_t end = cuts[c];
        memcpy(acc + have, s->bytes + pos, end - pos);
        have += end - pos;
        pos = end;
        for (;;) {
            uint8_t *view = malloc(have ? have : 1);
            cr_assert_not_null(view);
            memcpy(view, acc, have);
            sk_msg m = {99, 99, 99};
            size_t need = 12345;
            int r = sk_decoder_next(&d, view, have, &m, &need);
            if (r == 1) {
                cr_assert(got < s->nmsgs, "%s: extra message (cut %zu)", what, c);
                const expect *e = &s->msgs[got];
                cr_assert(m.consumed > 0 && m.consumed <= have, "%s: msg %zu consumed %zu of %zu",
                          what, got, m.consumed, have);
                cr_assert(m.offset + m.len <= m.consumed,
                          "%s: msg %zu offset %zu len %zu consumed %zu", what, got, m.offset, m.len,
                          m.consumed);
                cr_assert_eq(m.len, e->len, "%s: msg %zu len %zu, want %zu (cut at %zu)", what, got,
                             m.len, e->len, cuts[0]);
                cr_assert(m.len == 0 || memcmp(view + m.offset, e->data, m.len) == 0,
                          "%s: msg %zu payload differs (cut at %zu)", what, got, cuts[0]);
                if (framing == SK_FRAMING_FRAME) {
                    cr_assert_eq(m.offset, 4u, "%s: frame payload offset", what);
                    cr_assert_eq(m.consumed, 4u + m.len, "%s: frame consumed", what);
                } else if (framing == SK_FRAMING_LINE) {
                    cr_assert_eq(m.offset, 0u, "%s: line offset", what);
                    cr_assert_eq(view[m.consumed - 1], '\n', "%s: line ends at its \\n", what);
                }
                got++;
                memmove(acc, acc + m.consumed, have - m.consumed);
                have -= m.consumed;
                free(view);
                continue;
            }
            free(view);
            cr_assert_eq(r, 0, "%s: sk_decoder_next returned %d (%s) with %zu bytes (cut %zu)",
                         what, r, sk_strerror(r), have, c);
            if (framing == SK_FRAMING_FRAME && have >= 4) {
                cr_assert_eq(need, 4u + (size_t)be32(acc),
                             "%s: need %zu once the header is known (have %zu)", what, need, have);
            } else if (framing != SK_FRAMING_RAW) {
                cr_assert(need == 0 || need > have, "%s: need %zu with %zu bytes", what, need,
                          have);
            }
            break;
        }
    }
    cr_assert_eq(have, 0u, "%s: %zu bytes left undecoded", what, have);
    cr_assert_eq(got, s->nmsgs, "%s: got %zu messages, want %zu", what, got, s->nmsgs);
    free(acc);
}

/* Runs feed() whole, split in two at every byte boundary, and byte by byte. */
static void feed_all_splits(enum sk_framing framing, size_t max, const stream *s)
{
    size_t one[1] = {s->len};
    feed(framing, max, s, one, 1, "whole");

    for (size_t k = 1; k < s->len; k++) {
        size_t two[2] = {k, s->len};
        feed(framing, max, s, two, 2, "two chunks");
    }

    size_t *each = malloc(s->len * sizeof *each);
    cr_assert_not_null(each);
    for (size_t i = 0; i < s->len; i++)
        each[i] = i + 1;
    feed(framing, max, s, each, s->len, "byte by byte");

    /* Three chunks, the second of 7 bytes, sliding over the whole stream:
     * exercises a header or "\r\n" split over two boundaries. */
    for (size_t k = 1; k + 7 < s->len; k++) {
        size_t three[3] = {k, k + 7, s->len};
        feed(framing, max, s, three, 3, "three chunks");
    }
    free(each);
}

Test(frame, init_defaults)
{
    sk_decoder d;
    memset(&d, 0xA5, sizeof d);
    sk_decoder_init(&d, SK_FRAMING_LINE, 0);
    cr_assert_eq(d.framing, SK_FRAMING_LINE);
    cr_assert_eq(d.max, (size_t)SK_DEFAULT_MAX_LINE);
    cr_assert_eq(d.scanned, 0u);

    memset(&d, 0xA5, sizeof d);
    sk_decoder_init(&d, SK_FRAMING_FRAME, 0);
    cr_assert_eq(d.framing, SK_FRAMING_FRAME);
    cr_assert_eq(d.max, (size_t)SK_DEFAULT_MAX_FRAME);
    cr_assert_eq(d.scanned, 0u);

    sk_decoder_init(&d, SK_FRAMING_FRAME, 77);
    cr_assert_eq(d.max, 77u);
    sk_decoder_init(&d, SK_FRAMING_LINE, 5);
    cr_assert_eq(d.max, 5u);
}

Test(frame, frame_header_big_endian)
{
    static const struct {
        uint32_t v;
        uint8_t b[4];
    } cases[] = {
        {0u, {0, 0, 0, 0}},
        {1u, {0, 0, 0, 1}},
        {255u, {0, 0, 0, 0xff}},
        {256u, {0, 0, 1, 0}},
        {0x01020304u, {1, 2, 3, 4}},
        {16u * 1024u * 1024u, {1, 0, 0, 0}},
        {0xFFFFFFFFu, {0xff, 0xff, 0xff, 0xff}},
        {0x80000001u, {0x80, 0, 0, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t out[SK_FRAME_HEADER + 2] = {0xEE, 0xEE, 0xEE, 0xEE, 0xEE, 0xEE};
        sk_frame_header(out, cases[i].v);
        cr_assert(memcmp(out, cases[i].b, 4) == 0, "header of %u: %02x %02x %02x %02x", cases[i].v,
                  out[0], out[1], out[2], out[3]);
        cr_assert(out[4] == 0xEE && out[5] == 0xEE, "sk_frame_header wrote past 4 bytes");
    }
}

Test(frame, framing_names)
{
    static const struct {
        const char *name;
        enum sk_framing f;
    } good[] = {{"raw", SK_FRAMING_RAW}, {"line", SK_FRAMING_LINE}, {"frame", SK_FRAMING_FRAME}};
    for (size_t i = 0; i < 3; i++) {
        enum sk_framing f = (enum sk_framing)42;
        cr_assert_eq(sk_framing_parse(good[i].name, &f), 0, "%s", good[i].name);
        cr_assert_eq(f, good[i].f, "%s", good[i].name);
        cr_assert_str_eq(sk_framing_name(good[i].f), good[i].name);
    }
    static const char *bad[] = {"", "frames", "lin", "raw ", "json", "framex"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        enum sk_framing f = SK_FRAMING_LINE;
        cr_assert_eq(sk_framing_parse(bad[i], &f), -EINVAL, "'%s' accepted", bad[i]);
        cr_assert_eq(f, SK_FRAMING_LINE, "'%s': output changed on failure", bad[i]);
    }
}

/* Several frames of a small maximum: zero-length, binary, maximum length. */
Test(frame, frame_stream_every_split)
{
    const size_t max = 100;
    stream s = {0};
    uint8_t big[100];
    unit_pattern(big, sizeof big, 7);
    static const uint8_t bin[] = {0x00, 0x0a, 0x0d, 0xff, 0x00, 0x80, '\n', 0x00, 0x00, 0x01};

    stream_frame(&s, "hello", 5);
    stream_frame(&s, "", 0);
    stream_frame(&s, bin, sizeof bin);
    stream_frame(&s, "", 0);
    stream_frame(&s, "", 0);
    stream_frame(&s, big, max); /* exactly the maximum */
    stream_frame(&s, "x", 1);
    uint8_t h4[4] = {0, 0, 0, 4}; /* a payload that looks like a header */
    stream_frame(&s, h4, 4);
    stream_frame(&s, big + 1, 99);
    stream_frame(&s, "", 0); /* a zero-length frame last of all */

    feed_all_splits(SK_FRAMING_FRAME, max, &s);
    stream_free(&s);
}

Test(frame, line_stream_every_split)
{
    const size_t max = 40;
    stream s = {0};
    char full[41];
    for (size_t i = 0; i < 40; i++)
        full[i] = (char)('A' + i % 26);
    full[40] = '\n';

    stream_line(&s, "hello\n", 6, "hello", 5);
    stream_line(&s, "\n", 1, "", 0);                               /* empty line */
    stream_line(&s, "\r\n", 2, "", 0);                             /* empty line, \r dropped */
    stream_line(&s, "ab\r\n", 4, "ab", 2);                         /* \r before \n dropped */
    stream_line(&s, "a\rb\n", 4, "a\rb", 3);                       /* lone \r inside kept */
    stream_line(&s, "\r\r\n", 3, "\r", 1);                         /* only the last \r dropped */
    stream_line(&s, "\rx\n", 3, "\rx", 2);                         /* leading \r kept */
    stream_line(&s, "b\0\xff\x01\x80\n", 6, "b\0\xff\x01\x80", 5); /* binary, NUL */
    stream_line(&s, full, 41, full, 40);                           /* exactly max bytes */
    stream_line(&s, "\n", 1, "", 0);
    stream_line(&s, "end\r\n", 5, "end", 3);

    feed_all_splits(SK_FRAMING_LINE, max, &s);
    stream_free(&s);
}

/* Raw framing returns whatever is buffered as one message. */
Test(frame, raw_returns_everything)
{
    uint8_t data[300];
    unit_pattern(data, sizeof data, 3);
    for (size_t k = 1; k < sizeof data; k++) {
        sk_decoder d;
        sk_decoder_init(&d, SK_FRAMING_RAW, 0);
        sk_msg m = {9, 9, 9};
        cr_assert_eq(sk_decoder_next(&d, data, k, &m, NULL), 1);
        cr_assert_eq(m.offset, 0u);
        cr_assert_eq(m.len, k);
        cr_assert_eq(m.consumed, k);
        cr_assert_eq(sk_decoder_next(&d, data + k, sizeof data - k, &m, NULL), 1);
        cr_assert_eq(m.offset, 0u);
        cr_assert_eq(m.len, sizeof data - k);
        cr_assert_eq(m.consumed, sizeof data - k);
    }
    sk_decoder d;
    sk_decoder_init(&d, SK_FRAMING_RAW, 0);
    sk_msg m;
    size_t need = 5;
    cr_assert_eq(sk_decoder_next(&d, data, 0, &m, &need), 0, "raw with no bytes is no message");
}

Test(frame, frame_need_and_truncated_header)
{
    uint8_t buf[4 + 300];
    buf[0] = 0;
    buf[1] = 0;
    buf[2] = 0x01;
    buf[3] = 0x2c; /* 300 */
    unit_pattern(buf + 4, 300, 0);
    sk_decoder d;
    sk_decoder_init(&d, SK_FRAMING_FRAME, 1000);
    sk_msg m;

    size_t need = 777;
    cr_assert_eq(sk_decoder_next(&d, buf, 0, &m, &need), 0);
    cr_assert(need == 0 || need == 4, "need %zu with an empty buffer", need);
    for (size_t k = 1; k <= 3; k++) {
        need = 777;
        cr_assert_eq(sk_decoder_next(&d, buf, k, &m, &need), 0, "%zu header bytes", k);
        cr_assert(need == 0 || need == 4, "need %zu with %zu header bytes", need, k);
    }
    for (size_t k = 4; k < sizeof buf; k += 37) {
        need = 777;
        cr_assert_eq(sk_decoder_next(&d, buf, k, &m, &need), 0, "%zu bytes", k);
        cr_assert_eq(need, 304u, "need %zu with %zu bytes", need, k);
    }
    /* need may be NULL. */
    cr_assert_eq(sk_decoder_next(&d, buf, 10, &m, NULL), 0);
    cr_assert_eq(sk_decoder_next(&d, buf, sizeof buf, &m, NULL), 1);
    cr_assert_eq(m.offset, 4u);
    cr_assert_eq(m.len, 300u);
    cr_assert_eq(m.consumed, 304u);
    cr_assert(unit_pattern_ok(buf + m.offset, m.len, 0));
}

/* A header declaring max+1 is an error as soon as the header is complete,
 * before any of the body arrives. */
Test(frame, frame_oversize_at_header)
{
    const size_t max = 1000;
    uint8_t buf[4] = {0, 0, 0x03, 0xe9}; /* 1001 */
    sk_decoder d;
    sk_decoder_init(&d, SK_FRAMING_FRAME, max);
    sk_msg m;
    size_t need;
    for (size_t k = 1; k <= 3; k++)
        cr_assert_eq(sk_decoder_next(&d, buf, k, &m, &need), 0, "error before the header is whole");
    cr_assert_eq(sk_decoder_next(&d, buf, 4, &m, &need), -EMSGSIZE);

    /* max itself is fine. */
    uint8_t ok[4] = {0, 0, 0x03, 0xe8};
    sk_decoder_init(&d, SK_FRAMING_FRAME, max);
    cr_assert_eq(sk_decoder_next(&d, ok, 4, &m, &need), 0);
    cr_assert_eq(need, 1004u);

    /* After a good frame, the oversize one is still caught. */
    uint8_t two[4 + 3 + 4] = {0, 0, 0, 3, 'a', 'b', 'c', 0, 0, 0x03, 0xe9};
    sk_decoder_init(&d, SK_FRAMING_FRAME, max);
    cr_assert_eq(sk_decoder_next(&d, two, sizeof two, &m, &need), 1);
    cr_assert_eq(m.len, 3u);
    cr_assert_eq(m.consumed, 7u);
    cr_assert_eq(sk_decoder_next(&d, two + 7, 4, &m, &need), -EMSGSIZE);
}

Test(frame, frame_header_all_ones)
{
    uint8_t buf[8] = {0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    sk_decoder d;
    sk_msg m;
    size_t need;
    sk_decoder_init(&d, SK_FRAMING_FRAME, 0); /* default 16 MiB */
    cr_assert_eq(sk_decoder_next(&d, buf, 4, &m, &need), -EMSGSIZE);
    sk_decoder_init(&d, SK_FRAMING_FRAME, 0);
    cr_assert_eq(sk_decoder_next(&d, buf, 8, &m, &need), -EMSGSIZE);

    /* With a maximum that allows it, need is 4 + 0xFFFFFFFF, computed without
     * 32-bit wrap-around. */
    if (sizeof(size_t) > 4) {
        sk_decoder_init(&d, SK_FRAMING_FRAME, (size_t)UINT32_MAX);
        need = 0;
        cr_assert_eq(sk_decoder_next(&d, buf, 8, &m, &need), 0);
        cr_assert_eq(need, (size_t)UINT32_MAX + 4u, "need %zu", need);
    }
}

/* The default maximum frame (16 MiB) is accepted; one byte more is not. */
Test(frame, frame_default_max)
{
    const size_t n = SK_DEFAULT_MAX_FRAME;
    uint8_t *buf = malloc(n + 4);
    cr_assert_not_null(buf);
    buf[0] = (uint8_t)(n >> 24);
    buf[1] = (uint8_t)(n >> 16);
    buf[2] = (uint8_t)(n >> 8);
    buf[3] = (uint8_t)n;
    unit_pattern(buf + 4, n, 0);
    sk_decoder d;
    sk_decoder_init(&d, SK_FRAMING_FRAME, 0);
    sk_msg m;
    size_t need;
    for (size_t have = 4; have < n + 4; have += 1024 * 1024 + 13) {
        need = 0;
        cr_assert_eq(sk_decoder_next(&d, buf, have, &m, &need), 0);
        cr_assert_eq(need, n + 4);
    }
    cr_assert_eq(sk_decoder_next(&d, buf, n + 4, &m, &need), 1);
    cr_assert_eq(m.len, n);
    cr_assert_eq(m.offset, 4u);
    cr_assert_eq(m.consumed, n + 4);
    cr_assert(unit_pattern_ok(buf + 4, n, 0));

    const size_t over = n + 1;
    uint8_t h[4] = {(uint8_t)(over >> 24), (uint8_t)(over >> 16), (uint8_t)(over >> 8),
                    (uint8_t)over};
    sk_decoder_init(&d, SK_FRAMING_FRAME, 0);
    cr_assert_eq(sk_decoder_next(&d, h, 4, &m, &need), -EMSGSIZE);
    free(buf);
}

/* A line longer than max is an error once more than max bytes have been seen
 * without a "\n" — not before, and not only when the "\n" finally comes. */
Test(frame, line_oversize)
{
    const size_t max = 10;
    uint8_t buf[32];
    memset(buf, 'a', sizeof buf);
    sk_decoder d;
    sk_msg m;
    size_t need;

    /* Growing one byte at a time from the same start. */
    sk_decoder_init(&d, SK_FRAMING_LINE, max);
    for (size_t k = 1; k <= max; k++)
        cr_assert_eq(sk_decoder_next(&d, buf, k, &m, &need), 0, "error at %zu bytes", k);
    cr_assert_eq(sk_decoder_next(&d, buf, max + 1, &m, &need), -EMSGSIZE);

    /* All at once, no newline. */
    sk_decoder_init(&d, SK_FRAMING_LINE, max);
    cr_assert_eq(sk_decoder_next(&d, buf, 20, &m, &need), -EMSGSIZE);

    /* All at once, with the newline present after max+1 bytes. */
    buf[max + 1] = '\n';
    sk_decoder_init(&d, SK_FRAMING_LINE, max);
    cr_assert_eq(sk_decoder_next(&d, buf, max + 2, &m, &need), -EMSGSIZE);

    /* Exactly max bytes then "\n" is fine. */
    buf[max] = '\n';
    sk_decoder_init(&d, SK_FRAMING_LINE, max);
    cr_assert_eq(sk_decoder_next(&d, buf, max + 1, &m, &need), 1);
    cr_assert_eq(m.len, max);
    cr_assert_eq(m.consumed, max + 1);

    /* A good line, then an over-long one in the same buffer. */
    uint8_t two[3 + 11];
    memcpy(two, "ok\n", 3);
    memset(two + 3, 'z', 11);
    sk_decoder_init(&d, SK_FRAMING_LINE, max);
    cr_assert_eq(sk_decoder_next(&d, two, sizeof two, &m, &need), 1);
    cr_assert_eq(m.len, 2u);
    cr_assert_eq(m.consumed, 3u);
    cr_assert_eq(sk_decoder_next(&d, two + 3, 10, &m, &need), 0);
    cr_assert_eq(sk_decoder_next(&d, two + 3, 11, &m, &need), -EMSGSIZE);
}

/* The default maximum line (64 KiB), dribbled in one byte at a time from the
 * same buffer start (the case `scanned` exists for), then one byte too many. */
Test(frame, line_default_max_dribbled)
{
    const size_t n = SK_DEFAULT_MAX_LINE;
    uint8_t *buf = malloc(n + 2);
    cr_assert_not_null(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (uint8_t)('0' + i % 10);
    buf[n] = '\n';
    buf[n + 1] = 'x';
    sk_decoder d;
    sk_decoder_init(&d, SK_FRAMING_LINE, 0);
    sk_msg m;
    size_t need;
    for (size_t k = 1; k <= n; k++) {
        int r = sk_decoder_next(&d, buf, k, &m, &need);
        if (r != 0)
            cr_assert_fail("returned %d at %zu bytes", r, k);
    }
    cr_assert_eq(sk_decoder_next(&d, buf, n + 1, &m, &need), 1);
    cr_assert_eq(m.len, n);
    cr_assert_eq(m.consumed, n + 1);
    /* The next line starts fresh after the caller drops the consumed bytes. */
    cr_assert_eq(sk_decoder_next(&d, buf + n + 1, 1, &m, &need), 0);

    buf[n] = 'y';
    sk_decoder_init(&d, SK_FRAMING_LINE, 0);
    for (size_t k = 1; k <= n; k += 4093)
        cr_assert_eq(sk_decoder_next(&d, buf, k, &m, &need), 0);
    cr_assert_eq(sk_decoder_next(&d, buf, n + 1, &m, &need), -EMSGSIZE);
    free(buf);
}

/* A "\r" at the end of the buffer may still turn out to precede "\n". */
Test(frame, line_cr_at_buffer_end)
{
    const uint8_t wire[] = "abc\r\n";
    sk_decoder d;
    sk_decoder_init(&d, SK_FRAMING_LINE, 0);
    sk_msg m;
    size_t need;
    cr_assert_eq(sk_decoder_next(&d, wire, 4, &m, &need), 0);
    cr_assert_eq(sk_decoder_next(&d, wire, 5, &m, &need), 1);
    cr_assert_eq(m.len, 3u);
    cr_assert_eq(m.consumed, 5u);
    cr_assert(memcmp(wire + m.offset, "abc", 3) == 0);
}

/* ---- frame.h: the functions the connection's read path calls ---- */

Test(frame, next_refuses_an_oversize_header_before_the_body)
{
    uint8_t h[SK_FRAME_HEADER];
    uint32_t body = 7;
    sk__frame_put(h, UINT32_MAX);
    cr_assert_eq(sk__frame_len(h), UINT32_MAX, "header codec round trip");
    cr_assert_eq(sk__frame_next(h, sizeof h, 1000, &body), -EMSGSIZE,
                 "the declared length is judged as soon as the header is in");
    cr_assert_eq(body, 7, "no body length for a refused frame");
    sk__frame_put(h, 1000);
    cr_assert_eq(sk__frame_next(h, sizeof h, 1000, &body), 0, "a frame at the maximum waits");
    cr_assert_eq(sk__frame_next(h, 3, 10, &body), 0, "a partial header waits");
}

/* A frame of 10 bytes held up to every split point, followed by the next
 * frame: sk__frame_need takes exactly what the held one lacks. */
Test(frame, need_completes_the_held_frame_at_every_split)
{
    uint8_t wire[2 * (SK_FRAME_HEADER + 10)];
    for (int k = 0; k < 2; k++) {
        sk__frame_put(wire + k * 14, 10);
        memset(wire + k * 14 + SK_FRAME_HEADER, 'a' + k, 10);
    }
    for (size_t had = 1; had < 14; had++) {
        size_t n = sizeof wire - had;
        size_t got = sk__frame_need(SK_FRAMING_FRAME, 64, wire, had, wire + had, n);
        cr_assert_eq(got, 14 - had, "held %zu bytes: need %zu, got %zu", had, 14 - had, got);
        cr_assert_eq(sk__frame_need(SK_FRAMING_FRAME, 64, wire, had, wire + had, 1), 1,
                     "fewer bytes than missing are all taken");
    }
    cr_assert_eq(sk__frame_missing(wire, 5), 9, "missing after the header");
    cr_assert_eq(sk__frame_missing(wire, 3), 0, "no header yet: unknown");
    /* An oversize header split across reads: the count stops at the header,
     * for the decoder to refuse it before making room for the body. */
    cr_assert_eq(sk__frame_need(SK_FRAMING_FRAME, 9, wire, 2, wire + 2, 20), 2,
                 "oversize: only the rest of the header");
}

Test(frame, need_ends_a_held_line_at_its_newline)
{
    const uint8_t held[] = "par", more[] = "tial\nnext\n";
    cr_assert_eq(sk__frame_need(SK_FRAMING_LINE, 64, held, 3, more, sizeof more - 1), 5);
    cr_assert_eq(sk__frame_need(SK_FRAMING_LINE, 64, held, 3, more, 4), 4, "no newline: all");
    cr_assert_eq(sk__frame_need(SK_FRAMING_RAW, 64, held, 3, more, 7), 7, "raw: all");
}

Test(frame, error_text_names_the_rule_broken)
{
    char t[128];
    uint8_t h[SK_FRAME_HEADER];
    sk__frame_put(h, 1000);
    sk__frame_error_text(SK_FRAMING_FRAME, -EMSGSIZE, h, sizeof h, 10, t, sizeof t);
    cr_assert_str_eq(t, "frame too large (1000 > max 10)");
    sk__frame_error_text(SK_FRAMING_LINE, -EMSGSIZE, h, sizeof h, 10, t, sizeof t);
    cr_assert_str_eq(t, "line too long (max 10 bytes)");
}
