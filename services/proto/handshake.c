/* handshake.c — the typed protocols' handshake, both sides, written once
 * (handshake.h): the security-sensitive proof comparison exists here only. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "handshake.h"

/* ------------------------------------------------------------ server */

static enum proto_hs_state hs_fail(proto_hs *h, int code, int err, const char *why)
{
    h->state = PROTO_HS_FAILED;
    proto_fail(h->conn, code, err, why);
    return h->state;
}

int proto_hs_open(proto_hs *h, const proto_hs_service *svc, sk_conn *c, const char *name,
                  bool quiet)
{
    memset(h, 0, sizeof *h);
    h->svc = svc;
    h->conn = c;
    h->name = name;
    h->quiet = quiet;
    h->state = PROTO_HS_HELLO;
    if (!quiet)
        sk_log(SK_LOG_INFO, "%s open %s", name, sk_conn_peer(c));
    int rc = proto_gate_open(&h->gate, svc->pre, c, name, svc->handshake_ms);
    if (rc == -EBUSY) {
        sk_log(SK_LOG_WARN,
               "%s %s refused: %u connections from its address waiting to "
               "authenticate (--max-unauth-per-source)",
               name, sk_conn_peer(c), svc->per_source);
        (void)hs_fail(h, PE_BUSY, -EBUSY,
                      "too many connections from your address waiting to "
                      "authenticate; try later");
    }
    return rc;
}

/* The handshake is over: requests may come, in frames up to the
 * listener's maximum, with no deadline. */
static enum proto_hs_state hs_done(proto_hs *h)
{
    h->state = PROTO_HS_DONE;
    proto_gate_close(&h->gate);
    sk_conn_set_deadline(h->conn, SK_FOREVER, NULL);
    sk_conn_set_max_msg(h->conn, 0);
    return h->state;
}

static enum proto_hs_state on_hello(proto_hs *h, const uint8_t *msg, size_t len)
{
    const char *name = h->svc->service;
    char service[SK_AUTH_SERVICE_MAX + 1], why[PROTO_ERROR_TEXT_MAX];
    uint8_t max = h->svc->max_version ? h->svc->max_version : PROTO_VERSION;
    int code =
        proto_check_hello_v(msg, len, false, max, service, NULL, &h->version, why, sizeof why);
    if (code != 0)
        return hs_fail(h, code, -EPROTO, why);
    if (strcmp(service, name) != 0) {
        snprintf(why, sizeof why, "wrong service: this is %s, not %s", name, service);
        return hs_fail(h, PE_HELLO, -EPROTO, why);
    }
    uint8_t hello[PROTO_HELLO_MAX];
    if (h->svc->token == NULL) {
        /* No token: a hello without a nonce says so, and that is all. */
        size_t n = proto_hello_open(hello, name);
        hello[1 + PROTO_MAGIC_LEN] = h->version; /* the agreed one, as with a nonce */
        (void)sk_conn_send_msg(h->conn, hello, n);
        return hs_done(h);
    }
    if (sk_random(h->nonce_s, sizeof h->nonce_s) < 0)
        return hs_fail(h, PE_PROTOCOL, -EIO, "server cannot draw a random nonce");
    size_t n = proto_hello_v(hello, true, name, h->nonce_s, h->version);
    (void)sk_conn_send_msg(h->conn, hello, n);
    h->state = PROTO_HS_AUTH;
    proto_gate_hello(&h->gate);
    return h->state;
}

/* Computes the proof the client must have sent (want) and ours. */
static int proofs(const proto_hs *h, const uint8_t *nonce_c, const uint8_t *binding,
                  uint8_t want[SK_AUTH_PROOF], uint8_t ours[SK_AUTH_PROOF])
{
    const proto_hs_service *svc = h->svc;
    if (sk_auth_proof_bound(svc->token, svc->token_len, "client", svc->service, h->nonce_s, nonce_c,
                            binding, want) < 0 ||
        sk_auth_proof_bound(svc->token, svc->token_len, "server", svc->service, h->nonce_s, nonce_c,
                            binding, ours) < 0)
        return -1;
    return 0;
}

static enum proto_hs_state on_auth(proto_hs *h, const uint8_t *msg, size_t len, uint32_t *delay_ms)
{
    const proto_hs_service *svc = h->svc;
    if (msg[0] != PT_AUTH || len != PROTO_AUTH_LEN)
        return hs_fail(h, svc->not_auth_code, svc->not_auth_code == PE_AUTH ? -EACCES : -EPROTO,
                       svc->not_auth_text);
    const uint8_t *nonce_c = msg + 1, *proof = msg + 1 + SK_AUTH_NONCE;
    uint8_t want[SK_AUTH_PROOF], ours[SK_AUTH_PROOF], cb[SK_AUTH_BINDING];
    bool bound;
    if (proto_binding_conn(h->conn, cb, &bound) < 0)
        return hs_fail(h, PE_AUTH, -EACCES,
                       "TLS without the extended master secret: "
                       "authentication cannot be bound to it");
    if (proofs(h, nonce_c, bound ? cb : NULL, want, ours) < 0)
        return hs_fail(h, PE_PROTOCOL, -EIO, "server cannot compute proofs");
    int ok = sk_auth_equal(want, proof, SK_AUTH_PROOF);
    OPENSSL_cleanse(want, sizeof want);
    if (!ok) {
        OPENSSL_cleanse(ours, sizeof ours);
        /* One attempt per connection; the answer waits, longer for an
         * address that keeps failing, and the connection still counts
         * against --max-unauth meanwhile: guessing stays slow. */
        *delay_ms =
            proto_penalty_add(svc->pen, sk_conn_peer(h->conn), sk_loop_now(sk_conn_loop(h->conn)));
        sk_log(SK_LOG_WARN, "%s %s authentication failed (answer delayed %.1f s)", h->name,
               sk_conn_peer(h->conn), *delay_ms / 1000.0);
        h->state = PROTO_HS_DELAY;
        sk_conn_pause(h->conn);
        sk_conn_set_deadline(h->conn, SK_FOREVER, NULL);
        return h->state;
    }
    uint8_t reply[PROTO_AUTH_OK_LEN];
    reply[0] = PT_AUTH_OK;
    memcpy(reply + 1, ours, SK_AUTH_PROOF);
    OPENSSL_cleanse(ours, sizeof ours);
    (void)sk_conn_send_msg(h->conn, reply, sizeof reply);
    if (!h->quiet)
        sk_log(SK_LOG_INFO, "%s %s authenticated", h->name, sk_conn_peer(h->conn));
    return hs_done(h);
}

enum proto_hs_state proto_hs_message(proto_hs *h, const uint8_t *msg, size_t len,
                                     uint32_t *delay_ms)
{
    switch (h->state) {
    case PROTO_HS_HELLO: return on_hello(h, msg, len);
    case PROTO_HS_AUTH: return on_auth(h, msg, len, delay_ms);
    default: return h->state; /* waiting out the penalty, or closing */
    }
}

void proto_hs_delay_done(proto_hs *h)
{
    /* The penalty has been served: now the client learns it failed. */
    (void)hs_fail(h, PE_AUTH, -EACCES, "authentication failed");
}

void proto_hs_close(proto_hs *h) { proto_gate_close(&h->gate); }

/* ------------------------------------------------------------ client */

/* Checks the server's hello; sets *auth (false: an open server). */
static int client_hello(const uint8_t *buf, size_t len, const char *addr, const char *service,
                        bool allow_open, uint8_t version, uint8_t *agreed,
                        uint8_t nonce_s[SK_AUTH_NONCE], bool *auth, char *err, size_t errlen)
{
    char name[SK_AUTH_SERVICE_MAX + 1], why[PROTO_ERROR_TEXT_MAX];
    int code;
    *auth = true;
    if (allow_open)
        code = proto_check_server_hello_v(buf, len, version, name, nonce_s, auth, agreed, why,
                                          sizeof why);
    else
        code = proto_check_hello_v(buf, len, true, version, name, nonce_s, agreed, why, sizeof why);
    if (code != 0) {
        snprintf(err, errlen, "%s: %s", addr, why);
        return -1;
    }
    if (strcmp(name, service) != 0) {
        snprintf(err, errlen, "%s: wrong service: this is a sockit %s server, not %s", addr, name,
                 service);
        return -1;
    }
    return 0;
}

/* Sends AUTH and checks the server's proof in its AUTH_OK. */
static int client_auth(const proto_hs_io *io, const sk_sock *sock, const char *addr,
                       const char *service, const uint8_t *token, size_t token_len,
                       const uint8_t nonce_s[SK_AUTH_NONCE], char *err, size_t errlen)
{
    uint8_t nonce_c[SK_AUTH_NONCE], msg[PROTO_AUTH_LEN], want[SK_AUTH_PROOF], cb[SK_AUTH_BINDING];
    int rc = sk_random(nonce_c, sizeof nonce_c);
    if (rc < 0) {
        snprintf(err, errlen, "cannot draw a random nonce: %s", sk_strerror(rc));
        return -1;
    }
    bool bound;
    if (proto_binding_sock(sock, cb, &bound) < 0) {
        snprintf(err, errlen,
                 "%s: TLS without the extended master secret: authentication "
                 "cannot be bound to it",
                 addr);
        return -1;
    }
    const uint8_t *binding = bound ? cb : NULL;
    msg[0] = PT_AUTH;
    memcpy(msg + 1, nonce_c, SK_AUTH_NONCE);
    if (sk_auth_proof_bound(token, token_len, "client", service, nonce_s, nonce_c, binding,
                            msg + 1 + SK_AUTH_NONCE) < 0 ||
        sk_auth_proof_bound(token, token_len, "server", service, nonce_s, nonce_c, binding, want) <
            0) {
        snprintf(err, errlen, "cannot compute the authentication proof");
        return -1;
    }
    rc = io->send(io->ud, msg, sizeof msg, "authentication");
    OPENSSL_cleanse(msg, sizeof msg);
    uint8_t buf[PROTO_PREAUTH_MAX];
    /* A wrong token is answered after a delay of a second or more. */
    ssize_t m = rc < 0 ? -1 : io->recv(io->ud, buf, sizeof buf, "authentication");
    int ok = m == PROTO_AUTH_OK_LEN && buf[0] == PT_AUTH_OK &&
             sk_auth_equal(buf + 1, want, SK_AUTH_PROOF);
    OPENSSL_cleanse(want, sizeof want);
    if (m < 0)
        return -1;
    if (!ok) {
        /* Whoever answers does not know the token: not the server we meant
         * (or a man in the middle). Send it nothing more. */
        snprintf(err, errlen,
                 "%s: the server could not prove it knows the token: not the "
                 "server you meant",
                 addr);
        return -1;
    }
    return 0;
}

int proto_hs_client(const proto_hs_io *io, const sk_sock *sock, const char *addr,
                    const char *service, const uint8_t *token, size_t token_len, bool allow_open,
                    char *err, size_t errlen)
{
    uint8_t agreed;
    return proto_hs_client_v(io, sock, addr, service, token, token_len, allow_open, PROTO_VERSION,
                             &agreed, err, errlen);
}

int proto_hs_client_v(const proto_hs_io *io, const sk_sock *sock, const char *addr,
                      const char *service, const uint8_t *token, size_t token_len, bool allow_open,
                      uint8_t version, uint8_t *agreed, char *err, size_t errlen)
{
    err[0] = '\0';
    *agreed = PROTO_VERSION;
    uint8_t buf[PROTO_PREAUTH_MAX], nonce_s[SK_AUTH_NONCE];
    size_t n = proto_hello_v(buf, false, service, NULL, version);
    if (io->send(io->ud, buf, n, "the hello") < 0)
        return -1;
    ssize_t m = io->recv(io->ud, buf, sizeof buf, "the hello");
    if (m < 0)
        return -1;
    bool auth;
    if (client_hello(buf, (size_t)m, addr, service, allow_open, version, agreed, nonce_s, &auth,
                     err, errlen) < 0)
        return -1;
    if (!auth) {
        if (token == NULL)
            return 0;
        /* We were told to expect a server that proves it knows the token;
         * this one cannot. */
        snprintf(err, errlen,
                 "%s: the server does not authenticate (it runs without a token), "
                 "so it cannot prove it is the one you meant; run without --token-file to use "
                 "it anyway",
                 addr);
        return -1;
    }
    if (token == NULL) {
        snprintf(err, errlen,
                 "%s: the server requires authentication: give --token-file FILE "
                 "(the server's token)",
                 addr);
        return -1;
    }
    return client_auth(io, sock, addr, service, token, token_len, nonce_s, err, errlen);
}
