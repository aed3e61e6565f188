/* proto.h — what the typed service protocols (exec; files later) share on
 * the wire: message type and error code values, the hello that opens every
 * connection, and helpers to build and check it. Each message is one frame
 * whose first byte is its type. The byte layouts are specified in
 * docs/PROTOCOL.md; this file and that one must agree. */
#ifndef SOCKIT_PROTO_H
#define SOCKIT_PROTO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sockit.h"

#define PROTO_MAGIC "SKIT"
#define PROTO_MAGIC_LEN 4
#define PROTO_VERSION 1
/* Largest frame either side accepts before authentication completes: a
 * hello or an auth message is < 100 bytes, so a stranger can make us hold
 * no more than this. */
#define PROTO_PREAUTH_MAX 4096u
/* The whole handshake (hello and authentication) must finish in this time
 * (SPEC §5.1), however slowly the peer trickles its bytes. */
#define PROTO_HANDSHAKE_MS 10000u
/* type, magic, version, name length, name, nonce */
#define PROTO_HELLO_MAX (1 + PROTO_MAGIC_LEN + 1 + 1 + SK_AUTH_SERVICE_MAX + SK_AUTH_NONCE)
/* type, client nonce, client proof */
#define PROTO_AUTH_LEN (1 + SK_AUTH_NONCE + SK_AUTH_PROOF)
/* type, server proof */
#define PROTO_AUTH_OK_LEN (1 + SK_AUTH_PROOF)
/* Longest error text either side sends (the frame is type, code, text). */
#define PROTO_ERROR_TEXT_MAX 200

enum proto_type {
    /* every typed protocol */
    PT_HELLO_CLIENT = 0x01,
    PT_HELLO_SERVER = 0x02,
    PT_AUTH = 0x03,
    PT_AUTH_OK = 0x04,
    PT_ERROR = 0x7f,
    /* exec */
    PT_EXEC_REQUEST = 0x10,
    PT_EXEC_STDIN = 0x11,
    PT_EXEC_STDIN_EOF = 0x12,
    PT_EXEC_STDOUT = 0x20,
    PT_EXEC_STDERR = 0x21,
    PT_EXEC_EXIT = 0x30,
};

/* ERROR codes. Before authentication has completed, the server closes the
 * connection after any ERROR; afterwards only after PE_PROTOCOL. */
enum proto_error {
    PE_PROTOCOL = 1, /* malformed or unexpected message */
    PE_HELLO = 2,    /* wrong magic, version or service */
    PE_AUTH = 3,     /* authentication failed */
    PE_BUSY = 4,     /* a limit on connections or commands was reached */
    PE_DENIED = 5,   /* exec: not allowed by the server's policy */
    PE_NORUN = 6,    /* exec: the program could not be run */
    PE_TIMEOUT = 7,  /* exec: the command ran past its time limit */
    PE_OUTPUT = 8,   /* exec: the command's output passed the limit */
};

/* exec REQUEST flags */
enum { PROTO_EXEC_SHELL = 1, PROTO_EXEC_NO_STDIN = 2 };

/* Writes a hello (a client's, or a server's with its nonce) into buf (at
 * least PROTO_HELLO_MAX bytes); returns its length. service is at most
 * SK_AUTH_SERVICE_MAX bytes. */
size_t proto_hello(uint8_t *buf, bool server, const char *service,
                   const uint8_t nonce[SK_AUTH_NONCE]);

/* Checks a hello received from the other side (server: a client hello;
 * client: a server hello, whose nonce is copied to nonce). On success
 * copies the service name (NUL-terminated) to service (SK_AUTH_SERVICE_MAX
 * + 1 bytes) and returns 0; otherwise returns the PE_ code to answer with
 * and writes why, one sentence, into why. */
int proto_check_hello(const uint8_t *msg, size_t len, bool from_server, char *service,
                      uint8_t nonce[SK_AUTH_NONCE], char *why, size_t whylen);

/* Reads a big-endian 16/32-bit value and writes one. */
uint16_t proto_get16(const uint8_t *p);
uint32_t proto_get32(const uint8_t *p);
void proto_put16(uint8_t *p, uint16_t v);
void proto_put32(uint8_t *p, uint32_t v);

/* The name of an ERROR code, for messages ("timed out", ...). */
const char *proto_error_name(int code);

/* ---- failed authentications, penalised per source address ----
 * exec and files answer a wrong proof after a delay: 1 s, doubled with each
 * recent failure from the same address, at most 10 s; an address is
 * forgotten after a quiet minute. The table is small and fixed: when full,
 * the address that failed longest ago makes room. One table per service,
 * shared by its workers (hence the mutex). */
#define PROTO_PENALTY_SLOTS 256
#define PROTO_PENALTY_BASE_MS 1000u
#define PROTO_PENALTY_MAX_MS 10000u
#define PROTO_PENALTY_FORGET_MS 60000u
#define PROTO_HOST_MAX 64

typedef struct proto_penalty {
    char host[PROTO_HOST_MAX];
    unsigned fails;
    uint64_t last;
} proto_penalty;

typedef struct proto_penalties {
    pthread_mutex_t mu;
    proto_penalty slot[PROTO_PENALTY_SLOTS];
} proto_penalties;

/* Prepares a zeroed table; proto_penalties_destroy releases it. */
void proto_penalties_init(proto_penalties *t);
void proto_penalties_destroy(proto_penalties *t);
/* Records a failed authentication from the peer named peer_text (as
 * sk_conn_peer gives it: "1.2.3.4:5", "[::1]:5", "unix:..."; its address
 * part is what counts, every Unix peer one local source) at now_ms, and
 * returns how long its answer must wait, in milliseconds. */
uint32_t proto_penalty_add(proto_penalties *t, const char *peer_text, uint64_t now_ms);

/* ---- files (services/files*.c, cli/files*.c): a hello without a nonce ----
 * A files server without a token (allowed on loopback and Unix sockets
 * only) does not authenticate: its HELLO_S carries no nonce, and requests
 * follow it at once. With a token the handshake is exactly exec's. The
 * files message types and error codes are in services/files_proto.h. */

/* Writes the HELLO_S of a server that does not authenticate (the hello of
 * proto_hello without its nonce) into buf (at least PROTO_HELLO_MAX bytes);
 * returns its length. */
size_t proto_hello_open(uint8_t *buf, const char *service);

/* Checks a server hello that may lack its nonce, as proto_check_hello(msg,
 * len, true, ...) does, and sets *auth: true if it carried a nonce (the
 * server requires authentication), false if not. */
int proto_check_server_hello(const uint8_t *msg, size_t len, char *service,
                             uint8_t nonce[SK_AUTH_NONCE], bool *auth, char *why, size_t whylen);

#endif
