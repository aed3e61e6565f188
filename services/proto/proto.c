/* proto.c — the wire of the typed service protocols: the hello that opens
 * every one, built and checked in one place for the servers (services/) and
 * the clients (cli/), the big-endian helpers their message layouts use, the
 * one ERROR frame sender, and the TLS channel binding of the proofs. The
 * limits before authentication are preauth.c; the handshake handshake.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "proto.h"

uint16_t proto_get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

uint32_t proto_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void proto_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void proto_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

size_t proto_hello(uint8_t *buf, bool server, const char *service,
                   const uint8_t nonce[SK_AUTH_NONCE])
{
    return proto_hello_v(buf, server, service, nonce, PROTO_VERSION);
}

size_t proto_hello_v(uint8_t *buf, bool server, const char *service,
                     const uint8_t nonce[SK_AUTH_NONCE], uint8_t version)
{
    size_t slen = strlen(service);
    if (slen > SK_AUTH_SERVICE_MAX)
        slen = SK_AUTH_SERVICE_MAX;
    size_t n = 0;
    buf[n++] = server ? PT_HELLO_SERVER : PT_HELLO_CLIENT;
    memcpy(buf + n, PROTO_MAGIC, PROTO_MAGIC_LEN);
    n += PROTO_MAGIC_LEN;
    buf[n++] = version;
    buf[n++] = (uint8_t)slen;
    memcpy(buf + n, service, slen);
    n += slen;
    if (server) {
        memcpy(buf + n, nonce, SK_AUTH_NONCE);
        n += SK_AUTH_NONCE;
    }
    return n;
}

int proto_check_hello(const uint8_t *msg, size_t len, bool from_server, char *service,
                      uint8_t nonce[SK_AUTH_NONCE], char *why, size_t whylen)
{
    return proto_check_hello_v(msg, len, from_server, PROTO_VERSION, service, nonce, NULL, why,
                               whylen);
}

int proto_check_hello_v(const uint8_t *msg, size_t len, bool from_server, uint8_t max_version,
                        char *service, uint8_t nonce[SK_AUTH_NONCE], uint8_t *version_out,
                        char *why, size_t whylen)
{
    uint8_t want = from_server ? PT_HELLO_SERVER : PT_HELLO_CLIENT;
    /* Magic first: whatever else is wrong, a peer that does not speak this
     * protocol at all deserves that sentence, not a detail. */
    if (len < 1 + PROTO_MAGIC_LEN || memcmp(msg + 1, PROTO_MAGIC, PROTO_MAGIC_LEN) != 0 ||
        (msg[0] != PT_HELLO_CLIENT && msg[0] != PT_HELLO_SERVER)) {
        snprintf(why, whylen, "not a sockit %s (no \"SKIT\" hello)",
                 from_server ? "server" : "client");
        return PE_HELLO;
    }
    if (msg[0] != want) {
        snprintf(why, whylen, "the %s sent a %s hello (an echo service?)",
                 from_server ? "server" : "client", from_server ? "client" : "server");
        return PE_HELLO;
    }
    if (len < 1 + PROTO_MAGIC_LEN + 2) {
        snprintf(why, whylen, "hello too short (%zu bytes)", len);
        return PE_PROTOCOL;
    }
    uint8_t version = msg[1 + PROTO_MAGIC_LEN];
    /* Version 1 speakers demand exactly 1 (so a newer peer must offer 1
     * to them, see PROTO_EXEC_VERSION). A side that speaks more takes any
     * version from 1 up from a client (they agree on the lower) and, from
     * a server, one up to what it offered. */
    bool ok = max_version <= PROTO_VERSION
                  ? version == PROTO_VERSION
                  : version >= 1 && (!from_server || version <= max_version);
    if (!ok) {
        snprintf(why, whylen, "protocol version %u is not supported (this side speaks %d)", version,
                 max_version);
        return PE_HELLO;
    }
    size_t slen = msg[1 + PROTO_MAGIC_LEN + 1];
    size_t need = 1 + PROTO_MAGIC_LEN + 2 + slen + (from_server ? SK_AUTH_NONCE : 0);
    if (slen == 0 || slen > SK_AUTH_SERVICE_MAX || len != need) {
        snprintf(why, whylen, "malformed hello (%zu bytes, service name of %zu)", len, slen);
        return PE_PROTOCOL;
    }
    const uint8_t *name = msg + 1 + PROTO_MAGIC_LEN + 2;
    for (size_t i = 0; i < slen; i++) {
        if (name[i] < 0x21 || name[i] > 0x7e) {
            snprintf(why, whylen, "malformed hello (service name is not printable ASCII)");
            return PE_PROTOCOL;
        }
    }
    memcpy(service, name, slen);
    service[slen] = '\0';
    if (from_server)
        memcpy(nonce, name + slen, SK_AUTH_NONCE);
    if (version_out != NULL)
        *version_out = version < max_version ? version : max_version;
    return 0;
}

const char *proto_error_name(int code)
{
    switch (code) {
    case PE_PROTOCOL: return "protocol error";
    case PE_HELLO: return "wrong protocol or service";
    case PE_AUTH: return "authentication failed";
    case PE_BUSY: return "busy";
    case PE_DENIED: return "not allowed";
    case PE_NORUN: return "could not run";
    case PE_TIMEOUT: return "timed out";
    case PE_OUTPUT: return "output limit";
    default: return "error";
    }
}

/* ---- files: a hello without a nonce (see proto.h) ---- */

size_t proto_hello_open(uint8_t *buf, const char *service)
{
    /* The client's layout typed as the server's: the server's hello less
     * its nonce, built by the same code. */
    size_t n = proto_hello(buf, false, service, NULL);
    buf[0] = PT_HELLO_SERVER;
    return n;
}

int proto_check_server_hello(const uint8_t *msg, size_t len, char *service,
                             uint8_t nonce[SK_AUTH_NONCE], bool *auth, char *why, size_t whylen)
{
    return proto_check_server_hello_v(msg, len, PROTO_VERSION, service, nonce, auth, NULL, why,
                                      whylen);
}

int proto_check_server_hello_v(const uint8_t *msg, size_t len, uint8_t max_version, char *service,
                               uint8_t nonce[SK_AUTH_NONCE], bool *auth, uint8_t *version_out,
                               char *why, size_t whylen)
{
    size_t base = 1 + PROTO_MAGIC_LEN + 2;
    *auth = true;
    if (len >= base && len == base + msg[base - 1] && len + SK_AUTH_NONCE <= PROTO_HELLO_MAX) {
        /* Exactly as long as its name says, with no room for a nonce:
         * checked as the same hello with a zero nonce, which is dropped. */
        uint8_t full[PROTO_HELLO_MAX];
        memcpy(full, msg, len);
        memset(full + len, 0, SK_AUTH_NONCE);
        *auth = false;
        return proto_check_hello_v(full, len + SK_AUTH_NONCE, true, max_version, service, nonce,
                                   version_out, why, whylen);
    }
    return proto_check_hello_v(msg, len, true, max_version, service, nonce, version_out, why,
                               whylen);
}

/* ------------------------------------------------------------ channel binding */

static int binding_result(int rc, bool *bound)
{
    *bound = rc == 0;
    return rc == -ENOPROTOOPT ? 0 : rc;
}

int proto_binding_conn(const sk_conn *c, uint8_t binding[SK_AUTH_BINDING], bool *bound)
{
    return binding_result(sk_conn_tls_exporter(c, SK_TLS_EXPORTER_LABEL, binding, SK_AUTH_BINDING),
                          bound);
}

int proto_binding_sock(const sk_sock *sock, uint8_t binding[SK_AUTH_BINDING], bool *bound)
{
    return binding_result(
        sk_sock_tls_exporter(sock, SK_TLS_EXPORTER_LABEL, binding, SK_AUTH_BINDING), bound);
}

/* ------------------------------------------------------------ ERROR */

void proto_send_verror(sk_conn *c, int code, const char *fmt, va_list ap)
{
    if (c == NULL)
        return;
    uint8_t head[2] = {PT_ERROR, (uint8_t)code};
    char text[PROTO_ERROR_TEXT_MAX];
    int n = vsnprintf(text, sizeof text, fmt, ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof text)
        n = (int)sizeof text - 1;
    struct iovec iov[2] = {{head, 2}, {text, (size_t)n}};
    (void)sk_conn_send_msgv(c, iov, 2); /* failing: the connection is closing */
}

void proto_send_error(sk_conn *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    proto_send_verror(c, code, fmt, ap);
    va_end(ap);
}

void proto_fail(sk_conn *c, int code, int err, const char *why)
{
    proto_send_error(c, code, "%s", why);
    if (c != NULL)
        sk_conn_fail(c, err, why);
}
