/* tls_cert.c — fingerprints (pins) and self-signed certificates: the
 * tools around TLS that the CLI and tests use, not the transport itself. */
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

int sk__tls_cert_digest(X509 *x, uint8_t out[SK_TLS_PIN_LEN])
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
        sk__set_err(err, errlen, "cannot open certificate %s: %s", path,
                    strerror_r(errno, eb, sizeof eb));
        return NULL;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (x == NULL) {
        char eb[128];
        sk__set_err(err, errlen, "%s is not a PEM certificate (%s)", path,
                    sk__tls_ossl_reason(eb, sizeof eb));
    }
    return x;
}

int sk_tls_cert_pin(const char *cert_file, uint8_t out[SK_TLS_PIN_LEN], char *err, size_t errlen)
{
    X509 *x = read_cert(cert_file, err, errlen);
    if (x == NULL)
        return -EINVAL;
    int rc = sk__tls_cert_digest(x, out);
    X509_free(x);
    if (rc < 0)
        sk__set_err(err, errlen, "cannot compute the fingerprint of %s", cert_file);
    return rc;
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
            sk__set_err(err, errlen, "%s already exists (remove it first, or pick another NAME)",
                        path);
        else
            sk__set_err(err, errlen, "cannot create %s: %s", path,
                        strerror_r(errno, eb, sizeof eb));
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
    if (X509_NAME_add_entry_by_txt(xn, "CN", MBSTRING_UTF8, (const unsigned char *)base, -1, -1,
                                   0) != 1 ||
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
    if (sk__tls_cert_digest(x, pin) < 0)
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
    sk__set_err(err, errlen, "cannot make the certificate: %s", sk__tls_ossl_reason(eb, sizeof eb));
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
