/* echo.c — the echo service: every message back as it came, over
 * streams in any framing and over datagrams. */
#include "../services.h"

static void echo_message(sk_conn *c, const uint8_t *data, size_t len)
{
    /* A failure here (budget, closing) already closed the connection with a
     * reason; nothing more to do. */
    (void)sk_conn_send_msg(c, data, len);
}

static void echo_stream(sk_conn_callbacks *cbs)
{
    cbs->on_open = svc_log_open;
    cbs->on_message = echo_message;
    cbs->on_error = svc_report_error;
    cbs->on_close = svc_log_close;
}

/* A reply is exactly the size of the request: no amplification. Datagrams
 * from ourselves, from ports below 1024 or over --udp-rate never get here:
 * serve guards every datagram listener (sk_dgram_guard). */
static void echo_datagram(sk_dgram *d, const uint8_t *data, size_t len, const struct sockaddr *peer,
                          socklen_t peerlen, void *ud)
{
    (void)ud;
    (void)sk_dgram_send(d, data, len, peer, peerlen);
}

const svc_def svc_echo = {
    .name = "echo",
    .summary = "sends back what it receives (raw, line or frame; udp and unixgram too)",
    .framing_choice = true,
    .stream = echo_stream,
    .datagram = echo_datagram,
};
