/* relay.h — the relay service (`sockit relay LISTEN TARGET`, `sockit serve
 * relay`): every accepted connection is joined to a new connection to the
 * target. Files, lowest layer first: relay_proxy.c (HAProxy PROXY header),
 * relay_pair.c (a pair's life: bytes, reason, log line, end), relay_splice.c
 * (plain on both sides: splice(2) through pooled pipes), relay_copy.c (any
 * other pair: through the library's buffers, TLS included), relay.c (the
 * service: options checked, the target dialed). */
#ifndef SOCKIT_RELAY_H
#define SOCKIT_RELAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../services.h"

/* --connect-timeout's default: a target that does not answer costs the
 * client at most this long before its connection is closed. */
#define RELAY_DEFAULT_CONNECT_MS 10000u
/* Bytes of one direction queued on the library's side (TLS or copy mode)
 * before the other side's reading stops: with the 64 KiB read that may
 * follow, what one direction can hold. */
#define RELAY_HIGH_WATER (256u * 1024u)
/* The longest PROXY header: v1 is at most 107 bytes, v2 with IPv6 is 52. */
#define RELAY_PROXY_MAX 108

/* Directions: UP is client to target, DOWN target to client. */
enum { RELAY_UP = 0, RELAY_DOWN = 1 };

/* The command-line options (services.h's svc_opt table fills them). */
typedef struct relay_opts {
    const char *target;   /* TARGET: where every connection goes */
    uint32_t connect_ms;  /* --connect-timeout */
    const char *proxy;    /* --proxy-protocol v1|v2, or NULL */
    const char *ca;       /* tls:// target: --ca FILE */
    const char *pin;      /* tls:// target: --pin SHA256 */
    bool insecure;        /* tls:// target: --insecure */
    bool ipv4, ipv6;      /* -4, -6: the target's addresses of that family only */
    const char *source;   /* --source ADDR[:PORT]: bound before dialing the target */
    bool hex;             /* --hex: both directions dumped (cli/relay_hex.c) */
    const char *hex_file; /* --hex-file F: the dump into F (implies --hex) */
} relay_opts;

extern relay_opts relay_cli_opts;
extern const svc_opt relay_options[];
void relay_opts_init_store(void *store);

/* Checks the options (TARGET, --proxy-protocol, --ca/--pin/--insecure)
 * before anything starts, so that a mistake is a usage error: 0, or -1
 * with one sentence in err. */
int relay_check_opts(bool quiet, char *err, size_t errlen);

/* One place every relayed chunk passes in copy mode (a hex dump hooks
 * here); a relay with a tap never splices, since spliced bytes never reach
 * user space. The tap runs on the worker thread of the pair, so several
 * threads call it at once: what it writes must be whole per call. */
typedef struct relay_tap_chunk {
    uint64_t id;        /* the pair's number (1, 2, ... in accept order, all workers) */
    const char *client; /* the client's address, as in the log line */
    const char *target; /* the target's */
    int dir;            /* RELAY_UP or RELAY_DOWN */
    uint64_t off;       /* where the chunk starts within its direction */
} relay_tap_chunk;
typedef void (*relay_tap_fn)(const relay_tap_chunk *c, const uint8_t *data, size_t len, void *ud);

/* Installs the tap (before the listeners start; NULL: none). With a tap
 * every pair is relayed in copy mode. */
void relay_set_tap(relay_tap_fn tap, void *ud);

/* What the whole process's relay listeners share, read-only once started. */
typedef struct relay_cfg {
    sk_addr target;
    char target_text[320];
    sk_tls_ctx *tls; /* tls:// target: the verifying client context */
    int connect_ms;
    int proxy; /* 0, 1 or 2 */
    uint32_t idle_ms;
    bool quiet;
    bool listen_tls; /* the listening side terminates TLS */
    relay_tap_fn tap;
    void *tap_ud;
    sk_dial_opts dial; /* -4, -6, --source for the target */
    bool dial_set;
} relay_cfg;

typedef struct relay_splice relay_splice;

/* A relayed connection: lives exactly as long as the client's sk_conn (its
 * on_close frees it); the target's connection points back to it until then. */
typedef struct relay_pair {
    const relay_cfg *cfg;
    sk_conn *client, *target; /* target NULL once it is gone */
    uint64_t bytes[2];        /* relayed, per direction */
    uint64_t id;              /* with a tap: its number in the dump */
    uint64_t started, last_active;
    bool eof[2];      /* the direction's source ended */
    bool paused[2];   /* copy mode: the direction's source paused by us */
    bool target_open; /* connected (and handshaken) */
    relay_splice *sp; /* splice mode, or NULL */
    sk_timer *idle;   /* --idle-timeout, kept by the pair (see relay.c) */
    char reason[160]; /* why it ended: the first cause recorded */
    char target_peer[300];
    uint8_t prefix[RELAY_PROXY_MAX]; /* the PROXY header still owed to the target */
    size_t prefix_len;
} relay_pair;

/* relay_proxy.c: writes the PROXY header (version 1 or 2) for a client at
 * src that reached dst, into out (RELAY_PROXY_MAX bytes); returns its
 * length. Non-IP peers (Unix sockets) get "PROXY UNKNOWN" (v1) or the
 * UNSPEC family with no addresses (v2). */
size_t relay_proxy_header(int version, const struct sockaddr *src, const struct sockaddr *dst,
                          uint8_t *out);

/* relay_pair.c */
/* Records why the pair ends, unless a reason is recorded already. */
void relay_pair_reason(relay_pair *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Counts len bytes relayed in direction dir (and the pair as active). */
void relay_pair_count(relay_pair *p, int dir, size_t len);
/* Ends one connection: gracefully, or with a reset (see relay_pair_end). */
void relay_conn_end(sk_conn *c, bool reset);
/* Ends both connections: gracefully (reset false), or with a reset (RST on
 * TCP) to each side still open when a peer reset its side. */
void relay_pair_end(relay_pair *p, bool reset);
/* Ends a pair whose both directions have ended (each source's end of
 * stream read, each FIN passed on): both closed at once. */
void relay_pair_done(relay_pair *p);
/* The one log line of a finished pair, then frees it (called from the
 * client's on_close, after the splice and copy parts let go of it). */
void relay_pair_free(relay_pair *p);

/* relay_splice.c: moves both directions with splice(2) from now on (both
 * connections are plain and paused by the caller, with nothing queued).
 * 0, or a negative code (the caller ends the pair). */
int relay_splice_start(relay_pair *p);
/* Stops splicing (idempotent): watches and pipes let go. Called before
 * either connection closes (its descriptor is watched here meanwhile). */
void relay_splice_stop(relay_pair *p);

/* relay_copy.c: the callbacks of both connections. */
void relay_copy_client_cbs(sk_conn_callbacks *cbs);
void relay_copy_target_cbs(sk_conn_callbacks *cbs);
/* Starts copy mode once the target is open: the PROXY header queued, the
 * client read. */
void relay_copy_start(relay_pair *p);

#endif
