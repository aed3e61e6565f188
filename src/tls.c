/* tls.c — the TLS transport on OpenSSL, beneath the framing: contexts for
 * servers and clients (certificate, CA, pin), one session per connection
 * stepped without blocking (WANT_READ/WANT_WRITE become epoll or poll
 * interest), reads and writes that keep recv()/send() semantics so the
 * stream code above cannot tell the difference. The blocking client's
 * sockets (sk_sock_dial and the sk_sock_* calls) are in sock.c, pins and
 * self-signed certificates in tls_cert.c. Only tls*.c and sock.c include
 * OpenSSL's headers (through tls_int.h); conn*.c, client.c and shared.c
 * reach them via tls.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tls_int.h"

/* Session id context: a server resumes only sessions it issued for sockit. */
static const unsigned char SID_CTX[] = "sockit";

/* Key exchange groups, servers and clients alike, in order of preference. */
#define SK__TLS_GROUPS "X25519:P-256:P-384"
/* TLS 1.2 cipher suites (TLS 1.3 has only AEAD suites with ECDHE here). */
#define SK__TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20"

/* ------------------------------------------------------------ helpers */

/* The most useful line of OpenSSL's error queue (its last entry), which is
 * then cleared so that it cannot be blamed on a later call. */
const char *sk__tls_ossl_reason(char *buf, size_t buflen)
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
        sk__set_err(err, errlen, "tls: %s", sk__tls_ossl_reason(eb, sizeof eb));
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
    /* Read-ahead: one recv takes whatever the socket holds up to the read
     * buffer, instead of a record's 5-byte header and then its body (two
     * calls per record). Bytes read ahead but not yet decrypted raise no
     * epoll event: sk__tls_pending counts them (SSL_has_pending). */
    SSL_CTX_set_read_ahead(t->ssl, 1);
    /* Elliptic-curve key exchange only: a finite-field group (ffdhe2048 to
     * 8192) costs the server up to ~80 times the CPU of X25519 per
     * handshake, an amplification anyone can ask for (DHEat). The TLS 1.2
     * suites are ECDHE (forward secrecy) with AEAD ciphers (no CBC, no
     * SHA-1 MACs), and the server's order wins over the client's. */
    if (SSL_CTX_set1_groups_list(t->ssl, SK__TLS_GROUPS) != 1 ||
        SSL_CTX_set_cipher_list(t->ssl, SK__TLS12_CIPHERS) != 1) {
        char eb[128];
        sk__set_err(err, errlen, "tls: %s", sk__tls_ossl_reason(eb, sizeof eb));
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
        SSL_CTX_set_session_cache_mode(t->ssl,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
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
        sk__set_err(err, errlen,
                    "a TLS server needs a certificate and a key (--cert FILE --key FILE)");
        return -EINVAL;
    }
    sk_tls_ctx *t = ctx_alloc(true, err, errlen);
    if (t == NULL)
        return -ENOMEM;
    if (access(cert_file, R_OK) != 0) {
        sk__set_err(err, errlen, "cannot read certificate %s: %s", cert_file,
                    strerror_r(errno, eb, sizeof eb));
        goto fail;
    }
    if (access(key_file, R_OK) != 0) {
        sk__set_err(err, errlen, "cannot read key %s: %s", key_file,
                    strerror_r(errno, eb, sizeof eb));
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(t->ssl, cert_file) != 1) {
        sk__set_err(err, errlen, "certificate %s: %s", cert_file,
                    sk__tls_ossl_reason(eb, sizeof eb));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ssl, key_file, SSL_FILETYPE_PEM) != 1) {
        sk__tls_ossl_reason(eb, sizeof eb);
        if (strstr(eb, "mismatch") != NULL)
            sk__set_err(err, errlen, "key %s does not belong to certificate %s", key_file,
                        cert_file);
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
    if (leaf == NULL || sk__tls_cert_digest(leaf, d) < 0 ||
        CRYPTO_memcmp(d, t->ctx->pin, sizeof d) != 0) {
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
                sk__set_err(err, errlen, "CA file %s: %s",
                            o && o->ca_file ? o->ca_file : "(system)",
                            sk__tls_ossl_reason(eb, sizeof eb));
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
    case BIO_CTRL_FLUSH: return 1;
    default: (void)num; return 0;
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
            sk_log(SK_LOG_WARN,
                   "tls: refusing new handshakes: the memory budget cannot hold "
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
        sk_log(SK_LOG_WARN,
               "tls: %u unfinished handshakes (the maximum): dropping the oldest "
               "(of the newcomer's source, if it has any)",
               max);
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
                                "name (sk_conn_opts.tls_host, or sk_conn_connect)");
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

bool sk__tls_pending(const sk__tls *t) { return SSL_has_pending(t->ssl) == 1; }

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
    case SSL_ERROR_ZERO_RETURN: return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        /* EOF without close_notify (a TCP FIN) leaves errno 0 (sock_read).
         * Not rc: SSL_read_ex returns 0 on every failure, and a reset read
         * as an end of stream could not be passed on as a reset. */
        (void)rc;
        if (errno == 0)
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
    sk__set_err(err, errlen, "TLS handshake failed: %s", sk__tls_ossl_reason(eb, sizeof eb));
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
