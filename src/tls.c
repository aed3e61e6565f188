/* tls.c — the TLS transport on OpenSSL, beneath the framing: contexts for
 * servers and clients (certificate, CA, pin), one session per connection
 * stepped without blocking (WANT_READ/WANT_WRITE become epoll or poll
 * interest), reads and writes that keep recv()/send() semantics so the
 * stream code above cannot tell the difference, the blocking client's
 * descriptors (sk_tls_dial and the sk_sock_* calls), fingerprints and
 * self-signed certificates. It is the only file that includes OpenSSL's ssl
 * headers; conn.c, client.c and shared.c reach it through tls.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "internal.h"
#include "tls.h"

/* Session id context: a server resumes only sessions it issued for sockit. */
static const unsigned char SID_CTX[] = "sockit";

/* Key exchange groups, servers and clients alike, in order of preference. */
#define SK__TLS_GROUPS "X25519:P-256:P-384"
/* TLS 1.2 cipher suites (TLS 1.3 has only AEAD suites with ECDHE here). */
#define SK__TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"

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
    int want;           /* SK_READABLE or SK_WRITABLE, after a call that waits */
    bool pin_mismatch;  /* the handshake failed on --pin */
    bool sent_shutdown;
    char host[SK_ADDR_HOST_MAX];
    /* A server session while its handshake is unfinished: listed (and its
     * memory charged) in the handshake table below, which another thread's
     * admission may evict it from. */
    int fd;
    bool hs_listed;            /* guarded by hs_lock, as are the links */
    atomic_bool hs_evicted;    /* set by whichever thread evicted it */
    sk__tls *hs_prev, *hs_next; /* all unfinished handshakes, oldest first */
    sk__tls *src_prev, *src_next; /* those of the same source bucket, oldest first */
    unsigned src_bucket;
    uint8_t src[16];           /* the peer's address (IPv6: its /64), the source */
};

/* ------------------------------------------------------------ helpers */

/* The most useful line of OpenSSL's error queue (its last entry), which is
 * then cleared so that it cannot be blamed on a later call. */
static const char *ossl_reason(char *buf, size_t buflen)
{
    unsigned long e, last = 0;
    while ((e = ERR_get_error()) != 0)
        last = e;
    if (last == 0) {
        snprintf(buf, buflen, "unknown error");
        return buf;
    }
    const char *r = ERR_reason_error_string(last);
    if (r != NULL)
        snprintf(buf, buflen, "%s", r);
    else
        ERR_error_string_n(last, buf, buflen);
    return buf;
}

static bool is_ip_literal(const char *host)
{
    unsigned char tmp[16];
    return inet_pton(AF_INET, host, tmp) == 1 || inet_pton(AF_INET6, host, tmp) == 1;
}

/* ------------------------------------------------------------- pins */

int sk_tls_pin_parse(const char *text, uint8_t out[SK_TLS_PIN_LEN])
{
    uint8_t pin[SK_TLS_PIN_LEN];
    size_t n = 0;
    if (text == NULL)
        return -EINVAL;
    /* openssl x509 -fingerprint prints "sha256 Fingerprint=AB:CD:..."; the
     * part after '=' is accepted on its own, and so is the whole line. */
    const char *eq = strrchr(text, '=');
    const char *p = eq ? eq + 1 : text;
    if (strncasecmp(p, "sha256:", 7) == 0)
        p += 7;
    bool colons = strchr(p, ':') != NULL;
    while (*p) {
        if (n == SK_TLS_PIN_LEN)
            return -EINVAL;
        int v = 0;
        for (int k = 0; k < 2; k++, p++) {
            int c = (unsigned char)*p, d;
            if (c >= '0' && c <= '9')
                d = c - '0';
            else if (c >= 'a' && c <= 'f')
                d = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F')
                d = c - 'A' + 10;
            else
                return -EINVAL;
            v = v * 16 + d;
        }
        pin[n++] = (uint8_t)v;
        if (colons && n < SK_TLS_PIN_LEN) {
            if (*p != ':')
                return -EINVAL;
            p++;
        }
    }
    if (n != SK_TLS_PIN_LEN)
        return -EINVAL;
    memcpy(out, pin, sizeof pin);
    return 0;
}

void sk_tls_pin_format(const uint8_t pin[SK_TLS_PIN_LEN], char *buf, size_t buflen)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    if (buflen == 0)
        return;
    for (size_t i = 0; i < SK_TLS_PIN_LEN && o + 3 < buflen; i++) {
        if (i > 0)
            buf[o++] = ':';
        buf[o++] = hex[pin[i] >> 4];
        buf[o++] = hex[pin[i] & 15];
    }
    buf[o] = '\0';
}

static int cert_digest(X509 *x, uint8_t out[SK_TLS_PIN_LEN])
{
    unsigned int len = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    if (X509_digest(x, EVP_sha256(), md, &len) != 1 || len != SK_TLS_PIN_LEN)
        return -EIO;
    memcpy(out, md, SK_TLS_PIN_LEN);
    return 0;
}

static X509 *read_cert(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        char eb[128];
        sk__set_err(err, errlen, "cannot open certificate %s: %s", path, strerror_r(errno, eb, sizeof eb));
        return NULL;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        char eb[128];
        sk__set_err(err, errlen, "%s is not a PEM certificate (%s)", path, ossl_reason(eb, sizeof eb));
    }
    return x;
}

int sk_tls_cert_pin(const char *cert_file, uint8_t out[SK_TLS_PIN_LEN], char *err, size_t errlen)
{
    X509 *x = read_cert(cert_file, err, errlen);
    if (x == NULL)
        return -EINVAL;
    int rc = cert_digest(x, out);
    X509_free(x);
    if (rc < 0)
        sk__set_err(err, errlen, "cannot compute the fingerprint of %s", cert_file);
    return rc;
}

/* ----------------------------------------------------------- contexts */

static int new_session_cb(SSL *ssl, SSL_SESSION *sess);

static sk_tls_ctx *ctx_alloc(bool server, char *err, size_t errlen)
{
    sk_tls_ctx *t = calloc(1, sizeof *t);
    if (t == NULL) {
        sk__set_err(err, errlen, "out of memory");
        return NULL;
    }
    t->server = server;
    t->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (t->ssl == NULL) {
        char eb[128];
        sk__set_err(err, errlen, "tls: %s", ossl_reason(eb, sizeof eb));
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    /* TLS 1.2 at least; OpenSSL picks 1.3 whenever both sides have it. */
    SSL_CTX_set_min_proto_version(t->ssl, TLS1_2_VERSION);
    /* Partial writes keep send()'s contract (a short count when the kernel is
     * full); a moving buffer because the retry of a write comes from the
     * connection's queue, which may have been compacted or grown since;
     * released buffers so that 10,000 idle TLS peers hold no record buffers. */
    SSL_CTX_set_mode(t->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    /* No renegotiation (a write that needs a read would stall the write path;
     * TLS 1.3 has none anyway). A peer that closes the TCP stream without
     * close_notify is an end of stream like a TCP FIN, as for plain TCP:
     * every sockit protocol frames its own ends (lengths, SHA-256, exits),
     * so a truncation cannot pass for a complete message. */
    SSL_CTX_set_options(t->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                    SSL_OP_NO_COMPRESSION);
    /* Elliptic-curve key exchange only: a finite-field group (ffdhe2048 to
     * 8192) costs the server up to ~80 times the CPU of X25519 per
     * handshake, an amplification anyone can ask for (DHEat). The TLS 1.2
     * suites are ECDHE (forward secrecy) with AEAD ciphers (no CBC, no
     * SHA-1 MACs), and the server's order wins over the client's. */
    if (SSL_CTX_set1_groups_list(t->ssl, SK__TLS_GROUPS) != 1 ||
        SSL_CTX_set_cipher_list(t->ssl, SK__TLS12_CIPHERS) != 1) {
        char eb[128];
        sk__set_err(err, errlen, "tls: %s", ossl_reason(eb, sizeof eb));
        SSL_CTX_free(t->ssl);
        pthread_mutex_destroy(&t->lock);
        free(t);
        return NULL;
    }
    SSL_CTX_set_options(t->ssl, SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (server) {
        SSL_CTX_set_session_id_context(t->ssl, SID_CTX, sizeof SID_CTX - 1);
        /* Stateful cache for TLS 1.2 session ids; TLS 1.3 (and 1.2 with the
         * extension) resume from tickets, which OpenSSL issues by default. */
        SSL_CTX_set_session_cache_mode(t->ssl, SSL_SESS_CACHE_SERVER);
    } else {
        SSL_CTX_set_session_cache_mode(t->ssl, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(t->ssl, new_session_cb);
        SSL_CTX_set_app_data(t->ssl, t);
    }
    return t;
}

int sk_tls_server_new(const char *cert_file, const char *key_file, sk_tls_ctx **out, char *err,
                      size_t errlen)
{
    char eb[160];
    if (cert_file == NULL || key_file == NULL) {
        sk__set_err(err, errlen, "a TLS server needs a certificate and a key (--cert FILE --key FILE)");
        return -EINVAL;
    }
    sk_tls_ctx *t = ctx_alloc(true, err, errlen);
    if (t == NULL)
        return -ENOMEM;
    if (access(cert_file, R_OK) != 0) {
        sk__set_err(err, errlen, "cannot read certificate %s: %s", cert_file, strerror_r(errno, eb, sizeof eb));
        goto fail;
    }
    if (access(key_file, R_OK) != 0) {
        sk__set_err(err, errlen, "cannot read key %s: %s", key_file, strerror_r(errno, eb, sizeof eb));
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(t->ssl, cert_file) != 1) {
        sk__set_err(err, errlen, "certificate %s: %s", cert_file, ossl_reason(eb, sizeof eb));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ssl, key_file, SSL_FILETYPE_PEM) != 1) {
        ossl_reason(eb, sizeof eb);
        if (strstr(eb, "mismatch") != NULL)
            sk__set_err(err, errlen, "key %s does not belong to certificate %s", key_file, cert_file);
        else
            sk__set_err(err, errlen, "key %s: %s", key_file, eb);
        goto fail;
    }
    if (SSL_CTX_check_private_key(t->ssl) != 1) {
        sk__set_err(err, errlen, "key %s does not belong to certificate %s", key_file, cert_file);
        ERR_clear_error();
        goto fail;
    }
    *out = t;
    return 0;
fail:
    sk_tls_ctx_free(t);
    return -EINVAL;
}

/* Verification with --pin: the chain is not judged (a self-signed
 * certificate has none), only the leaf's SHA-256 against the pin. Runs
 * inside the handshake, so a mismatch fails it with an alert to the server
 * before any byte of ours is sent. */
static int pin_verify_cb(int preverify_ok, X509_STORE_CTX *xs)
{
    (void)preverify_ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(xs, SSL_get_ex_data_X509_STORE_CTX_idx());
    sk__tls *t = ssl ? SSL_get_app_data(ssl) : NULL;
    if (t == NULL)
        return 0;
    if (X509_STORE_CTX_get_error_depth(xs) != 0)
        return 1;
    X509 *leaf = X509_STORE_CTX_get_current_cert(xs);
    uint8_t d[SK_TLS_PIN_LEN];
    if (leaf == NULL || cert_digest(leaf, d) < 0 || CRYPTO_memcmp(d, t->ctx->pin, sizeof d) != 0) {
        t->pin_mismatch = true;
        X509_STORE_CTX_set_error(xs, X509_V_ERR_APPLICATION_VERIFICATION);
        return 0;
    }
    X509_STORE_CTX_set_error(xs, X509_V_OK);
    return 1;
}

int sk_tls_client_new(const sk_tls_client_opts *o, sk_tls_ctx **out, char *err, size_t errlen)
{
    char eb[160];
    sk_tls_ctx *t = ctx_alloc(false, err, errlen);
    if (t == NULL)
        return -ENOMEM;
    if (o != NULL && o->pin != NULL) {
        t->has_pin = true;
        memcpy(t->pin, o->pin, SK_TLS_PIN_LEN);
        SSL_CTX_set_verify(t->ssl, SSL_VERIFY_PEER, pin_verify_cb);
    } else if (o != NULL && o->insecure) {
        t->insecure = true;
        SSL_CTX_set_verify(t->ssl, SSL_VERIFY_NONE, NULL);
    } else {
        SSL_CTX_set_verify(t->ssl, SSL_VERIFY_PEER, NULL);
        int ok = o != NULL && o->ca_file != NULL
                     ? SSL_CTX_load_verify_locations(t->ssl, o->ca_file, NULL)
                     : SSL_CTX_set_default_verify_paths(t->ssl);
        if (ok != 1) {
            if (o != NULL && o->ca_file != NULL && access(o->ca_file, R_OK) != 0)
                sk__set_err(err, errlen, "cannot read CA file %s: %s", o->ca_file,
                        strerror_r(errno, eb, sizeof eb));
            else
                sk__set_err(err, errlen, "CA file %s: %s", o && o->ca_file ? o->ca_file : "(system)",
                        ossl_reason(eb, sizeof eb));
            sk_tls_ctx_free(t);
            return -EINVAL;
        }
        /* A certificate in the CA file is a trust anchor even when it is
         * not a CA: `sockit cert` makes a leaf (it must not sign others),
         * and that very leaf given as --ca is what the server shows. */
        if (o != NULL && o->ca_file != NULL)
            X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(t->ssl), X509_V_FLAG_PARTIAL_CHAIN);
    }
    *out = t;
    return 0;
}

void sk_tls_ctx_free(sk_tls_ctx *t)
{
    if (t == NULL)
        return;
    SSL_SESSION_free(t->session);
    SSL_CTX_free(t->ssl);
    pthread_mutex_destroy(&t->lock);
    free(t);
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
    sk_tls_ctx *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    sk__tls *t = SSL_get_app_data(ssl);
    if (c == NULL || t == NULL)
        return 0;
    pthread_mutex_lock(&c->lock);
    SSL_SESSION_free(c->session);
    c->session = sess; /* returning 1 keeps the reference OpenSSL gave us */
    snprintf(c->session_host, sizeof c->session_host, "%s", t->host);
    pthread_mutex_unlock(&c->lock);
    return 1;
}

/* ------------------------------------------------------ the socket BIO */

/* OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE when
 * the peer is gone; the library never depends on that signal's disposition
 * (a server must not die because a client reset mid-handshake). So the
 * session talks to the socket through this BIO: send(MSG_NOSIGNAL) and
 * recv(), with EAGAIN reported as "retry" the way OpenSSL expects. */
static BIO_METHOD *sock_method;
static pthread_once_t sock_method_once = PTHREAD_ONCE_INIT;

static int sock_write(BIO *b, const char *buf, size_t len, size_t *done)
{
    BIO_clear_retry_flags(b);
    ssize_t n;
    do
        n = send(BIO_get_fd(b, NULL), buf, len, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_write(b);
        return 0;
    }
    *done = (size_t)n;
    return 1;
}

static int sock_read(BIO *b, char *buf, size_t len, size_t *done)
{
    BIO_clear_retry_flags(b);
    ssize_t n;
    do
        n = recv(BIO_get_fd(b, NULL), buf, len, 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            BIO_set_retry_read(b);
        return 0;
    }
    if (n == 0)
        errno = 0; /* an end of stream, not an error: SSL_ERROR_SYSCALL with errno 0 */
    *done = (size_t)n;
    return n > 0;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    int *fdp = BIO_get_data(b);
    switch (cmd) {
    case BIO_C_SET_FD:
        *fdp = *(int *)ptr;
        BIO_set_init(b, 1);
        return 1;
    case BIO_C_GET_FD:
        if (ptr != NULL)
            *(int *)ptr = *fdp;
        return *fdp;
    case BIO_CTRL_FLUSH:
        return 1;
    default:
        (void)num;
        return 0;
    }
}

static int sock_create(BIO *b)
{
    int *fdp = malloc(sizeof *fdp);
    if (fdp == NULL)
        return 0;
    *fdp = -1;
    BIO_set_data(b, fdp);
    return 1;
}

static int sock_destroy(BIO *b)
{
    free(BIO_get_data(b)); /* the descriptor is the connection's to close */
    BIO_set_data(b, NULL);
    return 1;
}

static void sock_method_init(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "sockit socket");
    if (m == NULL || BIO_meth_set_write_ex(m, sock_write) != 1 ||
        BIO_meth_set_read_ex(m, sock_read) != 1 || BIO_meth_set_ctrl(m, sock_ctrl) != 1 ||
        BIO_meth_set_create(m, sock_create) != 1 || BIO_meth_set_destroy(m, sock_destroy) != 1) {
        BIO_meth_free(m);
        return;
    }
    sock_method = m;
}

static BIO *sock_bio(int fd)
{
    pthread_once(&sock_method_once, sock_method_init);
    if (sock_method == NULL)
        return NULL;
    BIO *b = BIO_new(sock_method);
    if (b == NULL)
        return NULL;
    BIO_set_fd(b, fd, BIO_NOCLOSE);
    return b;
}

/* ------------------------------------------- unfinished server handshakes */

/* A handshake costs the server ~49 KiB inside OpenSSL (record buffers, the
 * handshake transcript, key shares) before the peer has proved anything, and
 * OpenSSL allocates it outside the library's buffers. So every server
 * session is charged SK_TLS_HANDSHAKE_MEM against the memory budget
 * (sk_mem_set_budget) until its handshake is done, and at most
 * max_handshakes of them exist at once in the process. At the cap one is
 * evicted for the newcomer, rather than the newcomer refused: a real client
 * finishes in a round trip, so it stays served while stalled peers cycle
 * out. The victim is the oldest unfinished handshake of the newcomer's own
 * source (address; an IPv6 /64) when it has one, else the oldest of all, so
 * a flood from one source only ever evicts itself. Sources are found in
 * hashed buckets (a per-process random key, so that nobody can aim many
 * addresses at one bucket). A handshake the budget cannot hold is refused
 * (the connection is closed at accept). */
#define HS_BUCKETS 256u
static pthread_mutex_t hs_lock = PTHREAD_MUTEX_INITIALIZER;
static sk__tls *hs_oldest, *hs_newest;
static sk__tls *hs_src_oldest[HS_BUCKETS], *hs_src_newest[HS_BUCKETS];
static unsigned hs_count;
static uint64_t hs_key;
static bool hs_keyed;
static atomic_uint hs_max = SK_TLS_DEFAULT_MAX_HANDSHAKES;
static uint64_t hs_last_evict_log, hs_last_refuse_log; /* guarded by hs_lock */

void sk_tls_set_max_handshakes(unsigned n) { atomic_store(&hs_max, n); }

unsigned sk_tls_handshakes(void)
{
    pthread_mutex_lock(&hs_lock);
    unsigned n = hs_count;
    pthread_mutex_unlock(&hs_lock);
    return n;
}


/* The source of a server session: its peer's address, an IPv6 one cut to
 * its /64 (what one subscriber usually holds); every Unix peer is one
 * source. */
static void hs_source(sk__tls *t)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    memset(t->src, 0, sizeof t->src);
    if (getpeername(t->fd, (struct sockaddr *)&ss, &len) < 0)
        return;
    if (ss.ss_family == AF_INET)
        memcpy(t->src, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    else if (ss.ss_family == AF_INET6)
        memcpy(t->src, &((struct sockaddr_in6 *)&ss)->sin6_addr, 8);
}

/* t's bucket: FNV-1a over the source, keyed (hs_lock held). */
static unsigned hs_bucket_locked(const sk__tls *t)
{
    if (!hs_keyed) {
        (void)sk_random(&hs_key, sizeof hs_key); /* 0 if it fails: still correct */
        hs_keyed = true;
    }
    uint64_t h = 14695981039346656037ull ^ hs_key;
    for (size_t i = 0; i < sizeof t->src; i++)
        h = (h ^ t->src[i]) * 1099511628211ull;
    return (unsigned)(h ^ (h >> 32)) % HS_BUCKETS;
}

/* The oldest unfinished handshake from t's source, or NULL (hs_lock held). */
static sk__tls *hs_oldest_of_source_locked(const sk__tls *t)
{
    for (sk__tls *o = hs_src_oldest[t->src_bucket]; o != NULL; o = o->src_next)
        if (memcmp(o->src, t->src, sizeof t->src) == 0)
            return o;
    return NULL;
}

/* Unlinks t and gives its charge back (hs_lock held). */
static void hs_unlink_locked(sk__tls *t)
{
    if (t->src_prev)
        t->src_prev->src_next = t->src_next;
    else
        hs_src_oldest[t->src_bucket] = t->src_next;
    if (t->src_next)
        t->src_next->src_prev = t->src_prev;
    else
        hs_src_newest[t->src_bucket] = t->src_prev;
    t->src_prev = t->src_next = NULL;
    if (t->hs_prev)
        t->hs_prev->hs_next = t->hs_next;
    else
        hs_oldest = t->hs_next;
    if (t->hs_next)
        t->hs_next->hs_prev = t->hs_prev;
    else
        hs_newest = t->hs_prev;
    t->hs_prev = t->hs_next = NULL;
    t->hs_listed = false;
    hs_count--;
    sk__mem_uncharge(SK_TLS_HANDSHAKE_MEM);
}

/* Admits a new server handshake: evicts the oldest while the table is
 * full, then charges the budget. Returns 0 or -ENOBUFS. */
static int hs_admit(sk__tls *t)
{
    hs_source(t);
    pthread_mutex_lock(&hs_lock);
    t->src_bucket = hs_bucket_locked(t);
    unsigned max = atomic_load(&hs_max);
    unsigned evicted = 0;
    while (max != 0 && hs_count >= max && hs_oldest != NULL) {
        sk__tls *old = hs_oldest_of_source_locked(t);
        if (old == NULL)
            old = hs_oldest;
        hs_unlink_locked(old);
        atomic_store(&old->hs_evicted, true);
        /* Its loop sees the hang-up and ends it (sk__tls_handshake says
         * why). The descriptor is still open: a session leaves this table
         * (sk__tls_free) before its connection closes the descriptor. */
        (void)shutdown(old->fd, SHUT_RDWR);
        evicted++;
    }
    if (!sk__mem_charge(SK_TLS_HANDSHAKE_MEM)) {
        bool log = sk__log_due(&hs_last_refuse_log, sk__now_ms(), 1000);
        unsigned n = hs_count;
        pthread_mutex_unlock(&hs_lock);
        sk__stat_add(SK__STAT_ERR_NOBUFS, 1);
        if (log)
            sk_log(SK_LOG_WARN, "tls: refusing new handshakes: the memory budget cannot hold "
                                "another (%u KiB each, %u unfinished)",
                   SK_TLS_HANDSHAKE_MEM / 1024u, n);
        return -ENOBUFS;
    }
    t->hs_prev = hs_newest;
    if (hs_newest)
        hs_newest->hs_next = t;
    else
        hs_oldest = t;
    hs_newest = t;
    unsigned b = t->src_bucket;
    t->src_prev = hs_src_newest[b];
    if (hs_src_newest[b])
        hs_src_newest[b]->src_next = t;
    else
        hs_src_oldest[b] = t;
    hs_src_newest[b] = t;
    t->hs_listed = true;
    hs_count++;
    bool log = evicted > 0 && sk__log_due(&hs_last_evict_log, sk__now_ms(), 1000);
    pthread_mutex_unlock(&hs_lock);
    if (log)
        sk_log(SK_LOG_WARN, "tls: %u unfinished handshakes (the maximum): dropping the oldest "
                            "(of the newcomer's source, if it has any)", max);
    return 0;
}

/* The handshake is over (done, failed, or the session freed). */
static void hs_leave(sk__tls *t)
{
    if (!t->ctx->server)
        return;
    pthread_mutex_lock(&hs_lock);
    if (t->hs_listed)
        hs_unlink_locked(t);
    pthread_mutex_unlock(&hs_lock);
}

/* ----------------------------------------------------------- sessions */

int sk__tls_new(sk_tls_ctx *ctx, int fd, const char *host, sk__tls **out)
{
    sk__tls *t = calloc(1, sizeof *t);
    if (t == NULL)
        return -ENOMEM;
    t->ctx = ctx;
    t->want = ctx->server ? SK_READABLE : SK_WRITABLE; /* a client speaks first */
    t->ssl = SSL_new(ctx->ssl);
    BIO *bio = t->ssl ? sock_bio(fd) : NULL;
    if (bio == NULL) {
        ERR_clear_error();
        SSL_free(t->ssl);
        free(t);
        return -ENOMEM;
    }
    SSL_set_bio(t->ssl, bio, bio); /* the session owns it from here */
    SSL_set_app_data(t->ssl, t);
    t->fd = fd;
    atomic_init(&t->hs_evicted, false);
    if (ctx->server) {
        int rc = hs_admit(t);
        if (rc < 0) {
            SSL_free(t->ssl);
            free(t);
            return rc;
        }
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (!ctx->insecure && !ctx->has_pin &&
            (host == NULL || host[0] == '\0' || strlen(host) >= sizeof t->host)) {
            /* A chain checked without a name lets any certificate the CA
             * signed, for any host, pass: fail closed. */
            sk_log(SK_LOG_WARN, "tls: a client context that verifies by CA needs the server's "
                                "name (sk_stream_opts.tls_host, or sk_conn_connect)");
            SSL_free(t->ssl);
            free(t);
            return -EINVAL;
        }
        if (host != NULL && host[0] != '\0') {
            snprintf(t->host, sizeof t->host, "%s", host);
            bool ip = is_ip_literal(host);
            /* SNI carries names only (RFC 6066); an address is checked
             * against the certificate's IP entries instead. */
            if (!ip)
                SSL_set_tlsext_host_name(t->ssl, host);
            if (!ctx->insecure && !ctx->has_pin) {
                X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
                int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, host) : SSL_set1_host(t->ssl, host);
                if (ok != 1) {
                    ERR_clear_error();
                    SSL_free(t->ssl);
                    free(t);
                    return -EIO;
                }
            }
        }
        pthread_mutex_lock(&ctx->lock);
        if (ctx->session != NULL && strcmp(ctx->session_host, t->host) == 0)
            SSL_set_session(t->ssl, ctx->session);
        pthread_mutex_unlock(&ctx->lock);
    }
    *out = t;
    return 0;
}

void sk__tls_free(sk__tls *t)
{
    if (t == NULL)
        return;
    hs_leave(t);
    SSL_free(t->ssl);
    free(t);
}

int sk__tls_want(const sk__tls *t) { return t->want; }

bool sk__tls_pending(const sk__tls *t) { return SSL_pending(t->ssl) > 0; }

/* Turns an SSL_get_error() result into errno terms for the read/write
 * paths. Returns -1 (errno set) or 0 for a clean end of stream. */
static ssize_t map_io_error(sk__tls *t, int rc, int e)
{
    switch (e) {
    case SSL_ERROR_WANT_READ:
        t->want = SK_READABLE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        t->want = SK_WRITABLE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (errno == 0 || rc == 0) /* EOF without close_notify: a TCP FIN */
            return 0;
        return -1; /* errno from the socket call (ECONNRESET, EPIPE, ...) */
    default:
        ERR_clear_error();
        errno = EPROTO;
        return -1;
    }
}

ssize_t sk__tls_read(sk__tls *t, void *buf, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        int rc = SSL_read_ex(t->ssl, (char *)buf + got, cap - got, &n);
        if (rc == 1) {
            got += n;
            /* Another record only while it is sure to fit whole. */
            if (cap - got < SK__TLS_RECORD && SSL_pending(t->ssl) == 0)
                break;
            continue;
        }
        int e = SSL_get_error(t->ssl, rc);
        if (got > 0) {
            /* What arrived goes up now; an end or an error will be seen
             * again by the next call (OpenSSL keeps it). */
            if (e == SSL_ERROR_WANT_READ)
                t->want = SK_READABLE;
            else if (e == SSL_ERROR_WANT_WRITE)
                t->want = SK_WRITABLE;
            break;
        }
        return map_io_error(t, rc, e);
    }
    return (ssize_t)got;
}

ssize_t sk__tls_write(sk__tls *t, const void *buf, size_t len)
{
    size_t done = 0;
    if (len == 0)
        return 0;
    while (done < len) {
        size_t n = 0;
        ERR_clear_error();
        errno = 0;
        int rc = SSL_write_ex(t->ssl, (const char *)buf + done, len - done, &n);
        if (rc == 1) {
            done += n;
            continue;
        }
        int e = SSL_get_error(t->ssl, rc);
        if (done > 0 && (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)) {
            t->want = e == SSL_ERROR_WANT_READ ? SK_READABLE : SK_WRITABLE;
            break;
        }
        ssize_t r = map_io_error(t, rc, e);
        if (r == 0) { /* the peer closed: writing is over */
            errno = EPIPE;
            return -1;
        }
        return r;
    }
    return (ssize_t)done;
}

ssize_t sk__tls_writev(sk__tls *t, const struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len == 0)
            continue;
        ssize_t n = sk__tls_write(t, iov[i].iov_base, iov[i].iov_len);
        if (n < 0)
            return total > 0 && errno == EAGAIN ? (ssize_t)total : n;
        total += (size_t)n;
        if ((size_t)n < iov[i].iov_len)
            break;
    }
    return (ssize_t)total;
}

int sk__tls_handshake(sk__tls *t, char *err, size_t errlen)
{
    if (atomic_load(&t->hs_evicted)) {
        sk__set_err(err, errlen, "evicted: too many unfinished TLS handshakes (at most %u)",
                atomic_load(&hs_max));
        return -ECONNABORTED;
    }
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        hs_leave(t);
        return 1;
    }
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        t->want = e == SSL_ERROR_WANT_READ ? SK_READABLE : SK_WRITABLE;
        return 0;
    }
    char eb[160];
    long v = SSL_get_verify_result(t->ssl);
    if (t->pin_mismatch) {
        ERR_clear_error();
        sk__set_err(err, errlen, "the server's certificate does not match --pin");
        return -EPERM;
    }
    if (!t->ctx->server && v != X509_V_OK) {
        ERR_clear_error();
        sk__set_err(err, errlen, "cannot verify the server's certificate: %s",
                X509_verify_cert_error_string(v));
        return -EPERM;
    }
    if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
        /* ZERO_RETURN: an end of stream (SSL_OP_IGNORE_UNEXPECTED_EOF). */
        int se = e == SSL_ERROR_ZERO_RETURN ? 0 : errno;
        ERR_clear_error();
        if (se == 0) {
            sk__set_err(err, errlen, "peer closed the connection during the TLS handshake");
            return -ECONNRESET;
        }
        sk__set_err(err, errlen, "TLS handshake: %s", strerror_r(se, eb, sizeof eb));
        return -se;
    }
    sk__set_err(err, errlen, "TLS handshake failed: %s", ossl_reason(eb, sizeof eb));
    return -EPROTO;
}

void sk__tls_close_notify(sk__tls *t)
{
    if (t->sent_shutdown)
        return;
    t->sent_shutdown = true;
    if (!SSL_is_init_finished(t->ssl))
        return; /* no session to close: the TCP close says it all */
    ERR_clear_error();
    (void)SSL_shutdown(t->ssl);
    ERR_clear_error();
}

void sk__tls_describe(const sk__tls *t, char *buf, size_t buflen)
{
    const SSL_CIPHER *c = SSL_get_current_cipher(t->ssl);
    const char *sni = t->ctx->server ? SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
    snprintf(buf, buflen, "%s %s%s%s%s", SSL_get_version(t->ssl), c ? SSL_CIPHER_get_name(c) : "?",
             SSL_session_reused(t->ssl) ? ", resumed" : "", sni ? ", sni=" : "", sni ? sni : "");
}

/* ------------------------------------------- blocking client descriptors */

/* The blocking client API works on plain descriptors, so a TLS session is
 * found from its descriptor: a table indexed by fd, consulted only when a
 * session exists at all (the count), so plain clients pay one atomic load.
 * A descriptor number is not an identity: after a close() that bypassed
 * sk_sock_close, the next socket gets the same number. So each entry also
 * holds the socket's st_dev/st_ino from registration, and a lookup whose
 * descriptor is no longer that socket drops the stale session instead of
 * encrypting a plain connection's bytes with it. A descriptor is used by
 * one thread at a time; the lock guards the table. */
typedef struct {
    sk__tls *t;
    dev_t dev;
    ino_t ino;
} reg_entry;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static reg_entry *reg;
static size_t reg_cap;
static atomic_uint reg_count;

/* Removes fd's entry (the lock held); returns its session, or NULL. */
static sk__tls *reg_remove_locked(int fd)
{
    if (fd < 0 || (size_t)fd >= reg_cap || reg[fd].t == NULL)
        return NULL;
    sk__tls *t = reg[fd].t;
    reg[fd].t = NULL;
    if (atomic_fetch_sub(&reg_count, 1) == 1) {
        /* The last session is gone: give the table back (so that a process
         * that is done with TLS holds nothing). */
        free(reg);
        reg = NULL;
        reg_cap = 0;
    }
    return t;
}

static sk__tls *reg_get(int fd)
{
    if (fd < 0 || atomic_load(&reg_count) == 0)
        return NULL;
    sk__tls *t = NULL, *stale = NULL;
    pthread_mutex_lock(&reg_lock);
    if ((size_t)fd < reg_cap && reg[fd].t != NULL) {
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_dev == reg[fd].dev && st.st_ino == reg[fd].ino)
            t = reg[fd].t;
        else
            stale = reg_remove_locked(fd);
    }
    pthread_mutex_unlock(&reg_lock);
    /* Its socket was closed behind our back: nothing can be sent on it. */
    sk__tls_free(stale);
    return t;
}

static int reg_put(int fd, sk__tls *t)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    pthread_mutex_lock(&reg_lock);
    /* A stale entry under this number (its socket closed with close()) is
     * replaced, and its session freed. */
    sk__tls *stale = reg_remove_locked(fd);
    int rc = 0;
    if ((size_t)fd >= reg_cap) {
        size_t cap = reg_cap ? reg_cap : 64;
        while (cap <= (size_t)fd)
            cap *= 2;
        reg_entry *n = realloc(reg, cap * sizeof *n);
        if (n == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        memset(n + reg_cap, 0, (cap - reg_cap) * sizeof *n);
        reg = n;
        reg_cap = cap;
    }
    reg[fd] = (reg_entry){.t = t, .dev = st.st_dev, .ino = st.st_ino};
    atomic_fetch_add(&reg_count, 1);
out:
    pthread_mutex_unlock(&reg_lock);
    sk__tls_free(stale);
    return rc;
}

static sk__tls *reg_take(int fd)
{
    pthread_mutex_lock(&reg_lock);
    sk__tls *t = reg_remove_locked(fd);
    pthread_mutex_unlock(&reg_lock);
    return t;
}

int sk_tls_dial(const sk_addr *addr, sk_tls_ctx *ctx, int timeout_ms, char *err, size_t errlen)
{
    char text[SK_ADDR_HOST_MAX + 64];
    if (addr == NULL || ctx == NULL || ctx->server) {
        sk__set_err(err, errlen, "sk_tls_dial: needs an address and a client context");
        return -EINVAL;
    }
    if (addr->kind != SK_ADDR_TLS && addr->kind != SK_ADDR_TCP) {
        sk_addr_format(addr, text, sizeof text);
        sk__set_err(err, errlen, "cannot dial \"%s\" with TLS: not a tls:// or tcp address", text);
        return -EINVAL;
    }
    uint64_t start = sk__now_ms();
    sk_addr tcp = *addr;
    tcp.kind = SK_ADDR_TCP;
    int fd = sk_dial(&tcp, timeout_ms, err, errlen);
    if (fd < 0)
        return fd;
    sk__tls *t = NULL;
    int rc = sk__tls_new(ctx, fd, addr->host, &t);
    if (rc < 0) {
        sk__set_err(err, errlen, "cannot start a TLS session: %s", sk_strerror(rc));
        close(fd);
        return rc;
    }
    sk_addr_format(addr, text, sizeof text);
    for (;;) {
        char why[300];
        rc = sk__tls_handshake(t, why, sizeof why);
        if (rc == 1)
            break;
        if (rc < 0) {
            sk__set_err(err, errlen, "%s: %s", text, why);
            goto fail;
        }
        int ms = -1;
        if (timeout_ms >= 0) {
            uint64_t used = sk__now_ms() - start;
            if (used >= (uint64_t)timeout_ms) {
                rc = -ETIMEDOUT;
                sk__set_err(err, errlen, "%s: TLS handshake timed out after %d ms", text, timeout_ms);
                goto fail;
            }
            ms = (int)((uint64_t)timeout_ms - used);
        }
        struct pollfd p = {.fd = fd, .events = t->want == SK_WRITABLE ? POLLOUT : POLLIN};
        if (poll(&p, 1, ms) < 0 && errno != EINTR) {
            rc = -errno;
            sk__set_err(err, errlen, "%s: poll: %s", text, sk_strerror(rc));
            goto fail;
        }
    }
    rc = reg_put(fd, t);
    if (rc < 0) {
        sk__set_err(err, errlen, "%s: %s", text, sk_strerror(rc));
        goto fail;
    }
    return fd;
fail:
    sk__tls_free(t);
    close(fd);
    return rc;
}

ssize_t sk_sock_recv(int fd, void *buf, size_t cap)
{
    sk__tls *t = reg_get(fd);
    for (;;) {
        ssize_t n = t ? sk__tls_read(t, buf, cap) : recv(fd, buf, cap, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

ssize_t sk_sock_sendv(int fd, const struct iovec *iov, int iovcnt)
{
    sk__tls *t = reg_get(fd);
    for (;;) {
        ssize_t n;
        if (t) {
            n = sk__tls_writev(t, iov, iovcnt);
        } else {
            struct msghdr mh = {.msg_iov = (struct iovec *)(uintptr_t)iov, .msg_iovlen = (size_t)iovcnt};
            n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

ssize_t sk_sock_send(int fd, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)(uintptr_t)buf, .iov_len = len};
    return sk_sock_sendv(fd, &iov, 1);
}

int sk_sock_wants(int fd, int dflt)
{
    sk__tls *t = reg_get(fd);
    return t ? t->want : dflt;
}

int sk_sock_pending(int fd)
{
    sk__tls *t = reg_get(fd);
    return t != NULL && sk__tls_pending(t);
}

int sk_sock_is_tls(int fd) { return reg_get(fd) != NULL; }

int sk_sock_describe(int fd, char *buf, size_t buflen)
{
    sk__tls *t = reg_get(fd);
    if (t == NULL) {
        if (buflen)
            buf[0] = '\0';
        return -EINVAL;
    }
    sk__tls_describe(t, buf, buflen);
    return 0;
}

int sk_sock_shutdown(int fd)
{
    sk__tls *t = reg_get(fd);
    if (t != NULL)
        sk__tls_close_notify(t);
    return shutdown(fd, SHUT_WR) < 0 ? -errno : 0;
}

int sk_sock_close(int fd)
{
    /* Looked up first, so that a stale session (fd reused) is dropped
     * without its close_notify going out on another connection. */
    sk__tls *t = reg_get(fd) != NULL ? reg_take(fd) : NULL;
    if (t != NULL) {
        sk__tls_close_notify(t);
        sk__tls_free(t);
    }
    return close(fd) < 0 ? -errno : 0;
}

/* -------------------------------------------------- self-signed certificates */

/* A host name as a certificate's DNS entry may hold: letters, digits,
 * '-', '.', and not all digits and dots (that would be an address). */
static bool looks_like_host(const char *s)
{
    bool alpha = false;
    size_t n = strlen(s);
    if (n == 0 || n > 253 || s[0] == '.' || s[0] == '-')
        return false;
    for (const char *p = s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '-')
            alpha = true;
        else if (!((*p >= '0' && *p <= '9') || *p == '.'))
            return false;
    }
    return alpha;
}

static int add_ext(X509 *x, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (e == NULL)
        return -1;
    int ok = X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    return ok == 1 ? 0 : -1;
}

/* Opens path for writing a new file with mode; refuses to replace one. */
static FILE *create_file(const char *path, mode_t mode, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        char eb[128];
        if (errno == EEXIST)
            sk__set_err(err, errlen, "%s already exists (remove it first, or pick another NAME)", path);
        else
            sk__set_err(err, errlen, "cannot create %s: %s", path, strerror_r(errno, eb, sizeof eb));
        return NULL;
    }
    (void)fchmod(fd, mode); /* the umask may have taken bits we want */
    FILE *f = fdopen(fd, "w");
    if (f == NULL)
        close(fd);
    return f;
}

int sk_tls_make_cert(const char *name, unsigned days, uint8_t pin_out[SK_TLS_PIN_LEN], char *err,
                     size_t errlen)
{
    char keyp[PATH_MAX], crtp[PATH_MAX], eb[160], san[600];
    EVP_PKEY *key = NULL;
    X509 *x = NULL;
    FILE *f = NULL;
    int rc = -EIO;
    bool key_made = false;

    if (name == NULL || name[0] == '\0' || days == 0 || days > 36500) {
        sk__set_err(err, errlen, "a certificate needs a NAME and 1 to 36500 days");
        return -EINVAL;
    }
    if (snprintf(keyp, sizeof keyp, "%s.key", name) >= (int)sizeof keyp ||
        snprintf(crtp, sizeof crtp, "%s.crt", name) >= (int)sizeof crtp) {
        sk__set_err(err, errlen, "NAME too long");
        return -ENAMETOOLONG;
    }
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (base[0] == '\0') {
        sk__set_err(err, errlen, "NAME must not end with '/'");
        return -EINVAL;
    }
    /* EC P-256: what every TLS 1.2 and 1.3 client accepts by default
     * (Python's ssl, openssl s_client, browsers), and fast to sign with. */
    key = EVP_EC_gen("P-256");
    if (key == NULL)
        goto ossl_fail;
    x = X509_new();
    if (x == NULL)
        goto ossl_fail;
    uint8_t serial[16];
    if (sk_random(serial, sizeof serial) < 0)
        goto ossl_fail;
    serial[0] &= 0x7f; /* a positive serial number */
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, NULL);
    if (bn == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL) {
        BN_free(bn);
        goto ossl_fail;
    }
    BN_free(bn);
    X509_set_version(x, 2);
    /* A minute in the past, so a peer whose clock lags a little accepts it. */
    if (X509_gmtime_adj(X509_getm_notBefore(x), -60) == NULL ||
        X509_time_adj_ex(X509_getm_notAfter(x), (int)days, 0, NULL) == NULL)
        goto ossl_fail;
    X509_NAME *xn = X509_get_subject_name(x);
    if (X509_NAME_add_entry_by_txt(xn, "CN", MBSTRING_UTF8, (const unsigned char *)base, -1, -1, 0) != 1 ||
        X509_set_issuer_name(x, xn) != 1 || X509_set_pubkey(x, key) != 1)
        goto ossl_fail;
    snprintf(san, sizeof san, "DNS:localhost,IP:127.0.0.1,IP:::1%s%s",
             looks_like_host(base) && strcmp(base, "localhost") != 0 ? ",DNS:" : "",
             looks_like_host(base) && strcmp(base, "localhost") != 0 ? base : "");
    /* A server certificate that cannot sign others (CA:FALSE, no
     * keyCertSign): whoever trusts it as --ca trusts this one certificate,
     * not anything its key might sign for any name. Clients take it as a
     * trust anchor all the same (sk_tls_client_new sets PARTIAL_CHAIN). */
    if (add_ext(x, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(x, NID_ext_key_usage, "serverAuth") < 0 ||
        add_ext(x, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, NID_authority_key_identifier, "keyid:always") < 0 ||
        add_ext(x, NID_subject_alt_name, san) < 0)
        goto ossl_fail;
    if (X509_sign(x, key, EVP_sha256()) == 0)
        goto ossl_fail;
    uint8_t pin[SK_TLS_PIN_LEN];
    if (cert_digest(x, pin) < 0)
        goto ossl_fail;

    f = create_file(keyp, 0600, err, errlen);
    if (f == NULL) {
        rc = -EEXIST;
        goto out;
    }
    key_made = true;
    if (PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) != 1 || fflush(f) != 0 ||
        fsync(fileno(f)) != 0) {
        sk__set_err(err, errlen, "cannot write %s", keyp);
        goto out;
    }
    fclose(f);
    f = create_file(crtp, 0644, err, errlen);
    if (f == NULL) {
        rc = -EEXIST;
        goto out;
    }
    if (PEM_write_X509(f, x) != 1 || fflush(f) != 0) {
        sk__set_err(err, errlen, "cannot write %s", crtp);
        unlink(crtp);
        goto out;
    }
    if (pin_out != NULL)
        memcpy(pin_out, pin, sizeof pin);
    rc = 0;
    key_made = false;
    goto out;
ossl_fail:
    sk__set_err(err, errlen, "cannot make the certificate: %s", ossl_reason(eb, sizeof eb));
    rc = -EIO;
out:
    if (f != NULL)
        fclose(f);
    if (key_made)
        unlink(keyp); /* no key without its certificate */
    X509_free(x);
    EVP_PKEY_free(key);
    return rc;
}

/* ------------------------------------------------------ channel binding */

/* Keying material exported from the session (RFC 5705 / 8446 7.5) with an
 * empty context, as RFC 9266's tls-exporter binding asks. Both ends of one
 * TLS connection get the same bytes and no other connection does, so a
 * proof that covers them is worthless on a relay's second connection. TLS
 * 1.2 gives that only with the extended master secret (RFC 7627): without
 * it a relay can steer both sessions to one master secret (the triple
 * handshake), so the binding is refused rather than given falsely. */
int sk__tls_exporter(const sk__tls *t, const char *label, uint8_t *out, size_t len)
{
    if (t == NULL)
        return -ENOPROTOOPT;
    if (label == NULL || out == NULL || len == 0)
        return -EINVAL;
    if (SSL_version(t->ssl) < TLS1_3_VERSION && SSL_get_extms_support(t->ssl) != 1)
        return -ENOTSUP;
    static const unsigned char none[1];
    if (SSL_export_keying_material(t->ssl, out, len, label, strlen(label), none, 0, 1) != 1) {
        ERR_clear_error();
        return -EIO;
    }
    return 0;
}

int sk_sock_tls_exporter(int fd, const char *label, uint8_t *out, size_t len)
{
    return sk__tls_exporter(reg_get(fd), label, out, len);
}
