/* handshake.h — the typed protocols' handshake, written once for exec,
 * files and whatever comes later (docs/PROTOCOL.md 7.3): hello, nonces,
 * both HMAC proofs (bound to TLS where there is TLS), the penalty delay for
 * a wrong proof, the pre-authentication limits and the ERROR frame. One
 * server side (a small state machine a service feeds its frames to) and
 * one blocking client side (the clients give it their frame I/O). */
#ifndef SOCKIT_PROTO_HANDSHAKE_H
#define SOCKIT_PROTO_HANDSHAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto.h"

/* ---- server side ---- */

/* What a service tells the handshake, once, at its start; shared read-only
 * by its workers (the tables lock themselves). */
typedef struct proto_hs_service {
    const char *service;  /* "exec", "files": the hello's and the proofs' name */
    const uint8_t *token; /* NULL: no authentication (files without a token) */
    size_t token_len;
    proto_penalties *pen;  /* failed proofs per address */
    proto_preauth *pre;    /* connections before authentication */
    uint32_t handshake_ms; /* the whole handshake's deadline */
    unsigned per_source;   /* --max-unauth-per-source, for the log */
    /* The answer to a message other than AUTH where AUTH is due (exec and
     * files answer differently, and clients rely on it). */
    int not_auth_code;
    const char *not_auth_text;
    /* The highest protocol version the service speaks (0: PROTO_VERSION). */
    uint8_t max_version;
} proto_hs_service;

enum proto_hs_state {
    PROTO_HS_HELLO, /* waiting for the client's hello */
    PROTO_HS_AUTH,  /* our hello and nonce sent; waiting for the proof */
    PROTO_HS_DELAY, /* the proof was wrong; the answer waits out the penalty */
    PROTO_HS_DONE,  /* authenticated (or no authentication): requests may come */
    PROTO_HS_FAILED /* ERROR sent, the connection is closing */
};

/* One connection's handshake; lives in the service's session. */
typedef struct proto_hs {
    const proto_hs_service *svc;
    sk_conn *conn;
    const char *name; /* the listener's name, for the log */
    bool quiet;       /* no "authenticated" line */
    enum proto_hs_state state;
    proto_gate gate; /* its pre-authentication slot and deadlines */
    uint8_t nonce_s[SK_AUTH_NONCE];
    uint8_t version; /* agreed in the hello: the lower of the client's and ours */
} proto_hs;

/* From on_open, the one prologue of a typed service's connection: logs
 * its "open" line (unless quiet), takes a pre-authentication slot
 * (evicting another if the table is full) and starts the hello deadline. Returns 0; -EBUSY when the
 * source is at its cap (logged, ERROR 04 sent, c failing: nothing more to
 * do); another negative code (no memory) that the caller aborts c with. */
int proto_hs_open(proto_hs *h, const proto_hs_service *svc, sk_conn *c, const char *name,
                  bool quiet);
/* Feeds one non-empty frame received before PROTO_HS_DONE. Returns the
 * new state: DONE (slot given back, deadline cleared, the listener's frame
 * maximum restored), DELAY (c paused; the caller starts a timer of
 * *delay_ms and then calls proto_hs_delay_done), FAILED, or HELLO/AUTH
 * (more to come). */
enum proto_hs_state proto_hs_message(proto_hs *h, const uint8_t *msg, size_t len,
                                     uint32_t *delay_ms);
/* The penalty has been served: tells the client it failed, and fails c. */
void proto_hs_delay_done(proto_hs *h);
/* The connection is closing (or done): gives the slot back. Safe twice. */
void proto_hs_close(proto_hs *h);

/* ---- client side ---- */

/* A client's frame I/O for the handshake. Each message starts with its
 * type byte. stage: "the hello" or "authentication" (for messages). */
typedef struct proto_hs_io {
    void *ud;
    /* Sends msg; 0, or -1 after reporting why (the handshake stops). */
    int (*send)(void *ud, const uint8_t *msg, size_t len, const char *stage);
    /* Receives one message into buf: its length (>= 1); or -1 after
     * reporting why, a server's ERROR included (the hint about the token
     * belongs to stage "authentication"). */
    ssize_t (*recv)(void *ud, uint8_t *buf, size_t cap, const char *stage);
} proto_hs_io;

/* Runs the client's handshake for service on sock (connected, TLS or not;
 * for the channel binding) through io. token NULL: the client has
 * none. allow_open: a server hello without a nonce (no authentication) is
 * accepted when the client has no token, and refused as a downgrade when
 * it has one; without allow_open every server must authenticate. Returns
 * 0 (authenticated, or an open server); or -1 with the sentence to print
 * in err (err[0] == 0: io already reported it). addr prefixes messages. */
int proto_hs_client(const proto_hs_io *io, const sk_sock *sock, const char *addr,
                    const char *service, const uint8_t *token, size_t token_len, bool allow_open,
                    char *err, size_t errlen);
/* The same, offering protocol version `version` in the hello; *agreed gets
 * the version the server answered with (1 to version). */
int proto_hs_client_v(const proto_hs_io *io, const sk_sock *sock, const char *addr,
                      const char *service, const uint8_t *token, size_t token_len, bool allow_open,
                      uint8_t version, uint8_t *agreed, char *err, size_t errlen);

#endif
