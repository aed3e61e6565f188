/* proto.h — what the typed service protocols (exec; files later) share on
 * the wire: message type and error code values, the hello that opens every
 * connection, and helpers to build and check it. Each message is one frame
 * whose first byte is its type. The byte layouts are specified in
 * docs/PROTOCOL.md; this file and that one must agree. */
#ifndef SOCKIT_PROTO_H
#define SOCKIT_PROTO_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sockit.h"

#define PROTO_MAGIC     "SKIT"
#define PROTO_MAGIC_LEN 4
#define PROTO_VERSION   1
/* exec's highest version: 2 adds terminals, window changes and signals
 * (docs/PROTOCOL.md 7.2). A client offers it; a server answers with the
 * lower of the client's and its own, so version-1 peers never see a 2. */
#define PROTO_EXEC_VERSION 2
/* Largest frame either side accepts before authentication completes: a
 * hello or an auth message is < 100 bytes, so a stranger can make us hold
 * no more than this. */
#define PROTO_PREAUTH_MAX 4096u
/* The whole handshake (hello and authentication) must finish in this time
 * however slowly the peer trickles its bytes. */
#define PROTO_HANDSHAKE_MS 10000u
/* The client's hello must arrive within this time of connecting: a real
 * client sends it at once, so an idle socket is dropped early instead of
 * holding a pre-authentication slot for the whole handshake deadline. */
#define PROTO_HELLO_MS 2000u
/* Connections before authentication from one source address, at once, by
 * default (--max-unauth-per-source): half the default table. One client
 * needs one, but a host may run dozens at once (xargs -P, a build farm
 * behind one address), and each holds a slot for the milliseconds its
 * handshake takes; so one address never holds every slot, and another
 * address always finds room (eviction takes the rest). */
#define PROTO_DEFAULT_UNAUTH_PER_SOURCE 32u
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
    /* exec version 2 */
    PT_EXEC_PTY_REQUEST = 0x13, /* a REQUEST run on a terminal: TERM, size, then the request */
    PT_EXEC_WINCH = 0x14,       /* the client's window changed: its new size */
    PT_EXEC_SIGNAL = 0x15,      /* a signal for the command's process group */
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
enum { PROTO_EXEC_SHELL = 1, PROTO_EXEC_NO_STDIN = 2, PROTO_EXEC_LOGIN = 4 };

/* Writes a hello (a client's, or a server's with its nonce) into buf (at
 * least PROTO_HELLO_MAX bytes); returns its length. service is at most
 * SK_AUTH_SERVICE_MAX bytes. */
size_t proto_hello(uint8_t *buf, bool server, const char *service,
                   const uint8_t nonce[SK_AUTH_NONCE]);
/* The same with another version byte (exec's negotiation). */
size_t proto_hello_v(uint8_t *buf, bool server, const char *service,
                     const uint8_t nonce[SK_AUTH_NONCE], uint8_t version);

/* Checks a hello received from the other side (server: a client hello;
 * client: a server hello, whose nonce is copied to nonce). On success
 * copies the service name (NUL-terminated) to service (SK_AUTH_SERVICE_MAX
 * + 1 bytes) and returns 0; otherwise returns the PE_ code to answer with
 * and writes why, one sentence, into why. */
int proto_check_hello(const uint8_t *msg, size_t len, bool from_server, char *service,
                      uint8_t nonce[SK_AUTH_NONCE], char *why, size_t whylen);
/* The same for a side that speaks up to max_version: with max_version 1
 * only version 1 passes (as above); with more, a client hello of any
 * version and a server hello of 1 to max_version pass, and *version_out
 * (if not NULL) gets the version both speak, the lower of the two. */
int proto_check_hello_v(const uint8_t *msg, size_t len, bool from_server, uint8_t max_version,
                        char *service, uint8_t nonce[SK_AUTH_NONCE], uint8_t *version_out,
                        char *why, size_t whylen);

/* Sends one ERROR frame (type, code, text cut to PROTO_ERROR_TEXT_MAX) on
 * c; nothing if c is NULL. Failing to queue it is ignored: the connection
 * is closing then anyway. */
void proto_send_error(sk_conn *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void proto_send_verror(sk_conn *c, int code, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));
/* Sends ERROR code with text why, then fails c with err and why as its
 * reason. The one way a typed service drops a peer that broke a rule. */
void proto_fail(sk_conn *c, int code, int err, const char *why);

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
#define PROTO_PENALTY_SLOTS     256
#define PROTO_PENALTY_BASE_MS   1000u
#define PROTO_PENALTY_MAX_MS    10000u
#define PROTO_PENALTY_FORGET_MS 60000u
#define PROTO_HOST_MAX          64

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

/* ---- connections before authentication (pre-auth slots) ----
 * One table per service (exec, files), shared by its workers (hence the
 * mutex). It holds at most max connections, at most per_source of them
 * from one source address (the address part of sk_conn_peer's text; every
 * Unix peer is one local source). A newcomer from a source at its cap is
 * refused; a newcomer when the whole table is full evicts the oldest
 * connection of the most represented source instead of being refused, so
 * idle sockets from one source never lock out a client from another. The
 * table is sized at start (--max-unauth); each operation scans it once. */

/* Called with the table locked, from whichever thread admits the newcomer:
 * it must only arrange for the evicted connection to be closed on its own
 * loop (sk_async_send) and must not call back into the table. */
typedef void (*proto_evict_fn)(void *owner);

typedef struct proto_preauth_slot {
    uint64_t seq;  /* order of arrival (smaller is older); 0: free */
    uint32_t host; /* index into hosts */
    void *owner;
    proto_evict_fn evict;
} proto_preauth_slot;

typedef struct proto_preauth_host {
    char name[PROTO_HOST_MAX];
    uint64_t hash;  /* of name: most comparisons stop here */
    unsigned count; /* its slots in use; 0: this entry is free */
} proto_preauth_host;

typedef struct proto_preauth {
    pthread_mutex_t mu;
    unsigned max, per_source, used;
    uint64_t next_seq;
    proto_preauth_slot *slot; /* max of each */
    proto_preauth_host *hosts;
} proto_preauth;

/* A connection's place in the table: valid while the slot still carries
 * its seq (an eviction or proto_preauth_leave frees it). */
typedef struct proto_preauth_ticket {
    uint32_t idx;
    uint64_t seq; /* 0: holds no slot */
} proto_preauth_ticket;

/* Prepares a table for max connections, per_source from one source (both
 * at least 1). Returns 0 or -ENOMEM. */
int proto_preauth_init(proto_preauth *t, unsigned max, unsigned per_source);
void proto_preauth_destroy(proto_preauth *t);

/* Admits the connection from peer_text (sk_conn_peer's text), evicting
 * another if the table is full (its evict is called with its owner). Sets
 * *ticket and returns 0; or returns -EBUSY if its source already holds
 * per_source slots (the newcomer is to be refused). When a connection was
 * evicted and victim is not NULL, the evicted source's address is written
 * there (PROTO_HOST_MAX bytes) for the log; else victim[0] is set to 0. */
int proto_preauth_enter(proto_preauth *t, const char *peer_text, void *owner, proto_evict_fn evict,
                        proto_preauth_ticket *ticket, char *victim);

/* Gives the slot back (authenticated, or closing). Returns true if the
 * ticket still held it, false if the connection had been evicted (or had
 * left already). Clears the ticket. */
bool proto_preauth_leave(proto_preauth *t, proto_preauth_ticket *ticket);

/* True if the ticket still holds its slot (false: evicted, or left). */
bool proto_preauth_held(proto_preauth *t, const proto_preauth_ticket *ticket);

/* One server connection's way through the pre-authentication limits, the
 * same for exec and files: its slot in the table, the wake-up that closes
 * it on its own loop if another thread evicts it, and the deadlines (the
 * hello within PROTO_HELLO_MS, the whole handshake within handshake_ms). */
typedef struct proto_gate {
    proto_preauth *table;
    proto_preauth_ticket ticket;
    sk_async *evict; /* NULL once the slot is given back */
    sk_conn *conn;
    const char *name; /* the listener's name, for the log */
    uint64_t opened;  /* loop time of on_open */
    uint32_t handshake_ms;
} proto_gate;

/* Called from on_open: admits the connection to table (evicting another if
 * the table is full), limits its frames to PROTO_PREAUTH_MAX and starts
 * the hello deadline. Returns 0; -EBUSY if its source is at its cap: the
 * caller refuses it (ERROR 04); or -ENOMEM. */
int proto_gate_open(proto_gate *g, proto_preauth *table, sk_conn *c, const char *name,
                    uint32_t handshake_ms);
/* The client's hello arrived: the rest of the handshake deadline applies. */
void proto_gate_hello(proto_gate *g);
/* Authenticated (or a files server without a token), or closing: gives
 * the slot back. Safe to call more than once. */
void proto_gate_close(proto_gate *g);

/* ---- channel binding ----
 * Over TLS both proofs cover the connection's RFC 9266 tls-exporter value
 * (sk_auth_proof_bound); over plain TCP and Unix sockets they do not. Fills
 * binding and sets *bound = true for a TLS connection, *bound = false for
 * a plain one; returns 0, or -ENOTSUP (TLS 1.2 without the extended master
 * secret: no binding can be trusted, so the handshake must fail) or -EIO.
 * The server asks of its connection, a client of its socket. */
int proto_binding_conn(const sk_conn *c, uint8_t binding[SK_AUTH_BINDING], bool *bound);
int proto_binding_sock(const sk_sock *sock, uint8_t binding[SK_AUTH_BINDING], bool *bound);

/* ---- files (services/files/, cli/files*.c): a hello without a nonce ----
 * A files server without a token (allowed on loopback and Unix sockets
 * only) does not authenticate: its HELLO_S carries no nonce, and requests
 * follow it at once. With a token the handshake is exactly exec's. The
 * files message types and error codes are in services/files/files_proto.h. */

/* Writes the HELLO_S of a server that does not authenticate (the hello of
 * proto_hello without its nonce) into buf (at least PROTO_HELLO_MAX bytes);
 * returns its length. */
size_t proto_hello_open(uint8_t *buf, const char *service);

/* Checks a server hello that may lack its nonce, as proto_check_hello(msg,
 * len, true, ...) does, and sets *auth: true if it carried a nonce (the
 * server requires authentication), false if not. */
int proto_check_server_hello(const uint8_t *msg, size_t len, char *service,
                             uint8_t nonce[SK_AUTH_NONCE], bool *auth, char *why, size_t whylen);
/* The same for a client that offered max_version (files' CHUNKS: 2);
 * *version_out (if not NULL) gets the server's, 1 to max_version. */
int proto_check_server_hello_v(const uint8_t *msg, size_t len, uint8_t max_version, char *service,
                               uint8_t nonce[SK_AUTH_NONCE], bool *auth, uint8_t *version_out,
                               char *why, size_t whylen);

#endif
