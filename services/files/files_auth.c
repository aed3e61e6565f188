/* files_auth.c — the start of a files connection: the typed protocols'
 * hello (proto.h) and, when the server has a token, the same mutual
 * HMAC-SHA256 authentication as exec (docs/PROTOCOL.md 7.3, service name
 * "files"). Without a token (allowed on loopback and Unix sockets only)
 * the server's hello carries no nonce and requests follow at once.
 * Failed proofs are answered after a delay that doubles for an address
 * that keeps failing (proto.c's table, shared by the workers). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "files_int.h"

/* The handshake is over: requests may come, in frames up to the
 * listener's maximum, with no deadline. */
static void handshake_done(fsess *s)
{
    s->state = FS_READY;
    proto_gate_close(&s->gate);
    sk_conn_set_deadline(s->conn, 0, NULL);
    sk_conn_set_max_msg(s->conn, 0);
}

void files_on_hello(fsess *s, const uint8_t *msg, size_t len)
{
    char service[SK_AUTH_SERVICE_MAX + 1], why[PROTO_ERROR_TEXT_MAX];
    int code = proto_check_hello(msg, len, false, service, NULL, why, sizeof why);
    if (code != 0) {
        files_send_error(s, code, "%s", why);
        sk_conn_fail(s->conn, -EPROTO, why);
        return;
    }
    if (strcmp(service, FILES_SERVICE) != 0) {
        snprintf(why, sizeof why, "wrong service: this is %s, not %s", FILES_SERVICE, service);
        files_send_error(s, PE_HELLO, "%s", why);
        sk_conn_fail(s->conn, -EPROTO, why);
        return;
    }
    uint8_t hello[PROTO_HELLO_MAX];
    if (!s->svc->auth) {
        /* No token: a hello without a nonce says so, and that is all. */
        size_t n = proto_hello_open(hello, FILES_SERVICE);
        (void)sk_conn_send_msg(s->conn, hello, n);
        handshake_done(s);
        return;
    }
    if (sk_random(s->nonce_s, sizeof s->nonce_s) < 0) {
        files_send_error(s, PE_PROTOCOL, "server cannot draw a random nonce");
        sk_conn_fail(s->conn, -EIO, "no random nonce");
        return;
    }
    size_t n = proto_hello(hello, true, FILES_SERVICE, s->nonce_s);
    (void)sk_conn_send_msg(s->conn, hello, n);
    s->state = FS_AUTH;
    proto_gate_hello(&s->gate);
}

void files_on_auth(fsess *s, const uint8_t *msg, size_t len)
{
    files_svc *svc = s->svc;
    if (msg[0] != PT_AUTH || len != PROTO_AUTH_LEN) {
        files_send_error(s, PE_AUTH, "this server requires authentication: give the client "
                         "the server's token (--token-file)");
        sk_conn_fail(s->conn, -EACCES, "no authentication from the client");
        return;
    }
    const uint8_t *nonce_c = msg + 1, *proof = msg + 1 + SK_AUTH_NONCE;
    uint8_t want[SK_AUTH_PROOF], ours[SK_AUTH_PROOF], cb[SK_AUTH_BINDING];
    bool bound;
    if (proto_binding_conn(s->conn, cb, &bound) < 0) {
        files_send_error(s, PE_AUTH, "TLS without the extended master secret: authentication "
                         "cannot be bound to it");
        sk_conn_fail(s->conn, -EACCES, "TLS channel binding unavailable");
        return;
    }
    const uint8_t *binding = bound ? cb : NULL;
    if (sk_auth_proof_bound(svc->token, svc->token_len, "client", FILES_SERVICE, s->nonce_s,
                            nonce_c, binding, want) < 0 ||
        sk_auth_proof_bound(svc->token, svc->token_len, "server", FILES_SERVICE, s->nonce_s,
                            nonce_c, binding, ours) < 0) {
        files_send_error(s, PE_PROTOCOL, "server cannot compute proofs");
        sk_conn_fail(s->conn, -EIO, "cannot compute proofs");
        return;
    }
    int ok = sk_auth_equal(want, proof, SK_AUTH_PROOF);
    OPENSSL_cleanse(want, sizeof want);
    const svc_ctx *ctx = s->ctx;
    if (!ok) {
        OPENSSL_cleanse(ours, sizeof ours);
        /* One attempt per connection; the answer waits, longer for an
         * address that keeps failing, and the connection still counts
         * against --max-unauth meanwhile: guessing stays slow. */
        uint32_t delay = proto_penalty_add(&svc->pen, sk_conn_peer(s->conn),
                                           sk_loop_now(sk_conn_loop(s->conn)));
        sk_log(SK_LOG_WARN, "%s %s authentication failed (answer delayed %.1f s)", ctx->name,
               sk_conn_peer(s->conn), delay / 1000.0);
        s->state = FS_DELAY;
        sk_conn_pause(s->conn);
        sk_conn_set_deadline(s->conn, 0, NULL);
        s->tkind = FT_DELAY;
        sk_timer_start(s->timer, delay, 0);
        return;
    }
    uint8_t reply[PROTO_AUTH_OK_LEN];
    reply[0] = PT_AUTH_OK;
    memcpy(reply + 1, ours, SK_AUTH_PROOF);
    OPENSSL_cleanse(ours, sizeof ours);
    (void)sk_conn_send_msg(s->conn, reply, sizeof reply);
    handshake_done(s);
    if (!ctx->quiet)
        sk_log(SK_LOG_INFO, "%s %s authenticated", ctx->name, sk_conn_peer(s->conn));
}

void files_auth_delay_done(fsess *s)
{
    /* The penalty has been served: now the client learns it failed. */
    files_send_error(s, PE_AUTH, "authentication failed");
    sk_conn_fail(s->conn, -EACCES, "authentication failed");
}
