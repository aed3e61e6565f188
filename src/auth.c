/* auth.c — the cryptography the typed service protocols share: random
 * nonces, loading a token file safely, HMAC-SHA256 proofs and a
 * constant-time compare. Message layouts live with the protocols. */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "internal.h"

/* Binds every proof to this scheme: a future version changes the label, so
 * no proof of one version is valid in another. */
#define AUTH_LABEL "sockit-auth-v1"

int sk_random(void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        /* getrandom returns at most 32 MiB per call and may be interrupted
         * (a short count) for large requests. */
        ssize_t n = getrandom(p, len, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* A failed load: its sentence into the caller's err (sk__set_err, the
 * library's one way to fill it), and its code as the value. */
#define LOAD_FAIL(code, ...) (sk__set_err(err, errlen, __VA_ARGS__), (code))

/* Reads the whole file (at most cap bytes) into buf; returns the count, or
 * a negative code, -EFBIG if there is more. */
static ssize_t read_bounded(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        uint8_t probe;
        uint8_t *dst = got < cap ? buf + got : &probe;
        ssize_t n = read(fd, dst, got < cap ? cap - got : 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return (ssize_t)got;
        if (got == cap)
            return -EFBIG;
        got += (size_t)n;
    }
}

int sk_token_check(const void *token, size_t len, char *why, size_t whylen)
{
    const uint8_t *b = token;
    if (len < SK_TOKEN_MIN) {
        snprintf(why, whylen, "is too short (%zu bytes; at least %d)", len, SK_TOKEN_MIN);
        return -EINVAL;
    }
    bool seen[256] = {false};
    unsigned distinct = 0;
    for (size_t i = 0; i < len; i++) {
        distinct += !seen[b[i]];
        seen[b[i]] = true;
    }
    if (distinct < SK_TOKEN_MIN_DISTINCT) {
        snprintf(why, whylen, "is of low variety (only %u different bytes; at least %d)", distinct,
                 SK_TOKEN_MIN_DISTINCT);
        return -EINVAL;
    }
    /* A pattern repeated: its length divides the token's, and the token
     * equals itself shifted by that length. */
    for (size_t p = 1; p <= len / 2; p++) {
        if (len % p == 0 && memcmp(b, b + p, len - p) == 0) {
            snprintf(why, whylen, "is of low variety (a %zu-byte pattern repeated)", p);
            return -EINVAL;
        }
    }
    return 0;
}

/* Writes all of buf to fd; 0 or a negative code. */
static int write_all(int fd, const char *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(fd, buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO;
        off += (size_t)n;
    }
    return 0;
}

int sk_token_create(const char *path, char *err, size_t errlen)
{
    uint8_t raw[32];
    char text[sizeof raw * 2 + 2];
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) {
        int e = errno;
        if (e == EEXIST)
            snprintf(err, errlen,
                     "%s exists: a token file is never replaced (remove it first "
                     "if you mean to)",
                     path);
        else
            snprintf(err, errlen, "cannot create the token file %s: %s", path, strerror(e));
        return -e;
    }
    /* The umask may have taken bits off, never added any: 0600 stays. */
    int rc = sk_random(raw, sizeof raw);
    if (rc == 0) {
        for (size_t i = 0; i < sizeof raw; i++)
            snprintf(text + 2 * i, 3, "%02x", raw[i]);
        text[sizeof raw * 2] = '\n';
        rc = write_all(fd, text, sizeof raw * 2 + 1);
    }
    if (rc == 0 && fsync(fd) < 0)
        rc = -errno;
    OPENSSL_cleanse(raw, sizeof raw);
    OPENSSL_cleanse(text, sizeof text);
    if (close(fd) < 0 && rc == 0)
        rc = -errno;
    if (rc < 0) {
        unlink(path);
        snprintf(err, errlen, "cannot write the token file %s: %s", path, strerror(-rc));
    }
    return rc;
}

int sk_secret_load(const char *path, const char *what, uint8_t *out, size_t cap, size_t *len,
                   char *err, size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    /* O_NOFOLLOW: a symbolic link could point anywhere a local user likes;
     * O_NONBLOCK: opening a FIFO must not hang the server at start. */
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        int e = errno;
        if (e == ELOOP)
            return LOAD_FAIL(-EPERM, "%s %s is a symbolic link (name the file itself)", what, path);
        return LOAD_FAIL(-e, "cannot open %s %s: %s", what, path, strerror(e));
    }
    /* Every check is made on the descriptor we read from: a file swapped
     * after a path-based check could not slip through. */
    uint8_t buf[SK_TOKEN_MAX + 2]; /* the longest secret and a "\r\n" */
    size_t limit = (cap < SK_TOKEN_MAX ? cap : SK_TOKEN_MAX) + 2;
    struct stat st;
    int rc = 0;
    ssize_t n = 0;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        rc = LOAD_FAIL(-e, "cannot stat %s %s: %s", what, path, strerror(e));
    } else if (!S_ISREG(st.st_mode)) {
        rc = LOAD_FAIL(-EPERM, "%s %s is not a regular file", what, path);
    } else if (st.st_mode & (S_IRGRP | S_IWGRP | S_IROTH | S_IWOTH)) {
        rc = LOAD_FAIL(-EPERM,
                       "%s %s is readable or writable by group or others (run: chmod 600 %s)", what,
                       path, path);
    } else if ((n = read_bounded(fd, buf, limit)) < 0) {
        int e = (int)n;
        rc = e == -EFBIG ? LOAD_FAIL(e, "%s %s is too long", what, path)
                         : LOAD_FAIL(e, "cannot read %s %s: %s", what, path, strerror(-e));
    } else {
        size_t t = (size_t)n;
        if (t > 0 && buf[t - 1] == '\n') {
            t--;
            if (t > 0 && buf[t - 1] == '\r')
                t--;
        }
        if (t > cap || t > SK_TOKEN_MAX) {
            rc = LOAD_FAIL(-EFBIG, "%s %s is too long", what, path);
        } else {
            memcpy(out, buf, t);
            *len = t;
        }
    }
    /* The secret must not linger on the stack. */
    OPENSSL_cleanse(buf, sizeof buf);
    close(fd);
    return rc;
}

int sk_token_load(const char *path, uint8_t *out, size_t cap, size_t *len, char *err, size_t errlen)
{
    uint8_t tok[SK_TOKEN_MAX];
    size_t t = 0;
    int rc = sk_secret_load(path, "token file", tok, cap < sizeof tok ? cap : sizeof tok, &t, err,
                            errlen);
    char why[120];
    if (rc == 0 && sk_token_check(tok, t, why, sizeof why) < 0)
        rc = LOAD_FAIL(-EINVAL, "token in %s %s (run: sockit token FILE)", path, why);
    if (rc == 0) {
        memcpy(out, tok, t);
        *len = t;
    }
    OPENSSL_cleanse(tok, sizeof tok);
    return rc;
}

int sk_auth_proof(const uint8_t *token, size_t token_len, const char *role, const char *service,
                  const uint8_t nonce_s[SK_AUTH_NONCE], const uint8_t nonce_c[SK_AUTH_NONCE],
                  uint8_t out[SK_AUTH_PROOF])
{
    return sk_auth_proof_bound(token, token_len, role, service, nonce_s, nonce_c, NULL, out);
}

int sk_auth_proof_bound(const uint8_t *token, size_t token_len, const char *role,
                        const char *service, const uint8_t nonce_s[SK_AUTH_NONCE],
                        const uint8_t nonce_c[SK_AUTH_NONCE], const uint8_t *binding,
                        uint8_t out[SK_AUTH_PROOF])
{
    if (strcmp(role, "client") != 0 && strcmp(role, "server") != 0)
        return -EINVAL;
    size_t slen = strlen(service);
    if (slen == 0 || slen > SK_AUTH_SERVICE_MAX)
        return -EINVAL;
    /* label NUL role NUL service NUL nonce_s nonce_c [binding]: the NULs
     * keep the fields apart, so no two (role, service) pairs give the same
     * bytes; the fixed-size binding last, over TLS only. */
    uint8_t
        msg[sizeof AUTH_LABEL + 7 + SK_AUTH_SERVICE_MAX + 1 + 2 * SK_AUTH_NONCE + SK_AUTH_BINDING];
    size_t n = 0;
    memcpy(msg, AUTH_LABEL, sizeof AUTH_LABEL); /* with its NUL */
    n += sizeof AUTH_LABEL;
    size_t rlen = strlen(role) + 1;
    memcpy(msg + n, role, rlen);
    n += rlen;
    memcpy(msg + n, service, slen + 1);
    n += slen + 1;
    memcpy(msg + n, nonce_s, SK_AUTH_NONCE);
    n += SK_AUTH_NONCE;
    memcpy(msg + n, nonce_c, SK_AUTH_NONCE);
    n += SK_AUTH_NONCE;
    if (binding != NULL) {
        memcpy(msg + n, binding, SK_AUTH_BINDING);
        n += SK_AUTH_BINDING;
    }
    unsigned int mdlen = 0;
    /* An empty key is legal for HMAC; OpenSSL wants a non-NULL pointer. */
    static const uint8_t none[1];
    uint8_t *r = HMAC(EVP_sha256(), token_len ? token : none, (int)token_len, msg, n, out, &mdlen);
    OPENSSL_cleanse(msg, sizeof msg);
    if (r == NULL || mdlen != SK_AUTH_PROOF)
        return -EIO;
    return 0;
}

int sk_auth_equal(const void *a, const void *b, size_t len)
{
    return CRYPTO_memcmp(a, b, len) == 0;
}
