/* tls_int.h — private to tls.c, sock.c and tls_cert.c: the OpenSSL
 * structures behind sk_tls_ctx and sk__tls, and the helpers they share.
 * Only these files include OpenSSL's headers. */
#ifndef SOCKIT_TLS_INT_H
#define SOCKIT_TLS_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "internal.h"
#include "tls.h"

struct sk_tls_ctx {
    SSL_CTX *ssl;
    bool server;
    bool insecure;
    bool has_pin;
    uint8_t pin[SK_TLS_PIN_LEN];
    /* Client session cache: the last session a server gave, per host, so the
     * next connection of the same process resumes (a bench, a resumed
     * upload) instead of paying for a full handshake. */
    pthread_mutex_t lock;
    SSL_SESSION *session;
    char session_host[SK_ADDR_HOST_MAX];
};

struct sk__tls {
    SSL *ssl;
    sk_tls_ctx *ctx;
    int want;          /* SK_READABLE or SK_WRITABLE, after a call that waits */
    bool pin_mismatch; /* the handshake failed on --pin */
    bool sent_shutdown;
    char host[SK_ADDR_HOST_MAX];
    /* A server session while its handshake is unfinished: listed (and its
     * memory charged) in the handshake table below, which another thread's
     * admission may evict it from. */
    int fd;
    bool hs_listed;               /* guarded by hs_lock, as are the links */
    atomic_bool hs_evicted;       /* set by whichever thread evicted it */
    sk__tls *hs_prev, *hs_next;   /* all unfinished handshakes, oldest first */
    sk__tls *src_prev, *src_next; /* those of the same source bucket, oldest first */
    unsigned src_bucket;
    uint8_t src[16]; /* the peer's address (IPv6: its /64), the source */
};

/* The most useful line of OpenSSL's error queue (its last entry), which is
 * then cleared so that it cannot be blamed on a later call (tls.c). */
const char *sk__tls_ossl_reason(char *buf, size_t buflen);
/* The SHA-256 fingerprint of a certificate, as pins hold it (tls_cert.c). */
int sk__tls_cert_digest(X509 *x, uint8_t out[SK_TLS_PIN_LEN]);

#endif
