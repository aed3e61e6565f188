/* upper.c — the upper-case echo: ASCII letters upper-cased, every
 * other byte unchanged, so UTF-8 text stays valid. */
#include <string.h>

#include "../services.h"

/* Only a-z change; bytes of multi-byte UTF-8 sequences are all >= 0x80 and
 * pass through untouched. */
static void upper_copy(uint8_t *dst, const uint8_t *src, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t b = src[i];
        dst[i] = (b >= 'a' && b <= 'z') ? (uint8_t)(b - 32) : b;
    }
}

static void upper_message(sk_conn *c, const uint8_t *data, size_t len)
{
    /* Transform straight into the output queue: no scratch copy. */
    uint8_t *out = sk_conn_prepare_msg(c, len, NULL);
    if (out != NULL)
        upper_copy(out, data, len);
}

static void upper_stream(sk_conn_callbacks *cbs)
{
    cbs->on_open = svc_log_open;
    cbs->on_message = upper_message;
    cbs->on_error = svc_report_error;
    cbs->on_close = svc_log_close;
}

/* Guarded like echo's (sk_dgram_guard, set by serve). */
static void upper_datagram(sk_dgram *d, const uint8_t *data, size_t len,
                           const struct sockaddr *peer, socklen_t peerlen, void *ud)
{
    (void)ud;
    uint8_t buf[SK_DGRAM_MAX];
    upper_copy(buf, data, len);
    (void)sk_dgram_send(d, buf, len, peer, peerlen);
}

const svc_def svc_upper = {
    .name = "upper",
    .summary = "like echo, with ASCII letters upper-cased",
    .framing_choice = true,
    .stream = upper_stream,
    .datagram = upper_datagram,
};
