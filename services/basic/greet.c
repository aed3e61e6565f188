/* greet.c — the greeting service ("Thank you for
 * connecting"): sends --message and closes. */
#include <string.h>

#include "../services.h"

static void greet_open(sk_conn *c)
{
    const svc_ctx *ctx = sk_conn_data(c);
    svc_log_open(c);
    size_t len = ctx->message_len;
    if (ctx->framing == SK_FRAMING_LINE) {
        /* One line: the message without its own line ending. */
        while (len > 0 && (ctx->message[len - 1] == '\n' || ctx->message[len - 1] == '\r'))
            len--;
    }
    (void)sk_conn_send_msg(c, ctx->message, len);
    /* Graceful: the greeting is flushed and the close lingers, so a peer that
     * also sent something still receives the whole greeting. */
    sk_conn_close(c);
}

static void greet_ignore(sk_conn *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
}

static void greet_stream(sk_conn_callbacks *cbs)
{
    cbs->on_open = greet_open;
    cbs->on_message = greet_ignore;
    cbs->on_close = svc_log_close;
}

const svc_def svc_greet = {
    .name = "greet",
    .summary = "sends a greeting (--message) and closes",
    .framing_choice = true,
    .stream = greet_stream,
    .datagram = NULL,
};
