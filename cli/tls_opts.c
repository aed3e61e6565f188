/* tls_opts.c — what every client command shares for tls:// addresses: the
 * --ca / --pin / --insecure options, the refusal to talk without a way to
 * verify the server, the loud warning for --insecure, and dialing; and the
 * check of serve's --cert and --key files before the library loads them. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

int cli_tls_option(cli_tls *t, int ch, const char *v)
{
    switch (ch) {
    case CLI_O_CA: t->ca = v; return 1;
    case CLI_O_PIN:
        if (sk_tls_pin_parse(v, t->pin) < 0) {
            cli_err("bad value \"%s\" for --pin (the server certificate's SHA-256: 64 hex digits, "
                    "plain or colon-separated as `sockit cert` and `openssl x509 -fingerprint "
                    "-sha256` print it)",
                    v);
            return -1;
        }
        t->has_pin = true;
        return 1;
    case CLI_O_INSECURE: t->insecure = true; return 1;
    default: return 0;
    }
}

int cli_tls_prepare(cli_tls *t, const sk_addr *addr)
{
    bool given = t->ca != NULL || t->has_pin || t->insecure;
    if (addr->kind != SK_ADDR_TLS) {
        if (given) {
            cli_err("--ca, --pin and --insecure apply to tls:// addresses only");
            return EXIT_USAGE;
        }
        return 0;
    }
    if ((t->ca != NULL) + t->has_pin + t->insecure > 1) {
        cli_err("give one of --ca FILE, --pin SHA256 or --insecure, not several");
        return EXIT_USAGE;
    }
    if (t->insecure)
        cli_err("WARNING: --insecure: the server's certificate is NOT verified; anyone on the "
                "path can read and change this connection");
    /* Unreadable --ca is a usage error, as a missing --cert is for serve. */
    if (t->ca != NULL && access(t->ca, R_OK) != 0) {
        cli_err("cannot read --ca %s: %s", t->ca, strerror(errno));
        return EXIT_USAGE;
    }
    sk_tls_client_opts o = {
        .ca_file = t->ca, .pin = t->has_pin ? t->pin : NULL, .insecure = t->insecure};
    char err[400];
    if (sk_tls_client_new(&o, &t->ctx, err, sizeof err) < 0) {
        cli_err("%s", err);
        return EXIT_RUNTIME;
    }
    return 0;
}

int cli_dial(const sk_addr *addr, const cli_tls *t, int timeout_ms, sk_sock **out, char *err,
             size_t errlen)
{
    return cli_dial_opts(addr, t, NULL, timeout_ms, out, err, errlen);
}

int cli_dial_opts(const sk_addr *addr, const cli_tls *t, const sk_dial_opts *dial, int timeout_ms,
                  sk_sock **out, char *err, size_t errlen)
{
    sk_tls_ctx *ctx = addr->kind == SK_ADDR_TLS ? t->ctx : NULL;
    int rc = sk_sock_dial_opts(addr, ctx, dial, timeout_ms, out, err, errlen);
    if (rc == -EPERM && t->ca == NULL && !t->has_pin) {
        /* Verified against the system's CAs, and refused: say what works. */
        size_t n = strlen(err);
        snprintf(err + n, errlen > n ? errlen - n : 0,
                 " (give --ca FILE or --pin SHA256 for a server with its own certificate)");
    }
    return rc;
}

void cli_tls_free(cli_tls *t)
{
    sk_tls_ctx_free(t->ctx);
    t->ctx = NULL;
}

/* What a PEM file holds, from its first 64 KiB: 'k' a private key only,
 * 'c' a certificate only, 'b' both, '?' neither or unreadable (the library
 * then says what is wrong). */
static char pem_kind(const char *path)
{
    static char buf[64 * 1024 + 1];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return '?';
    buf[n] = '\0';
    bool crt = strstr(buf, "-----BEGIN CERTIFICATE-----") != NULL;
    bool key = strstr(buf, "PRIVATE KEY-----") != NULL;
    return crt && key ? 'b' : crt ? 'c' : key ? 'k' : '?';
}

int cli_tls_check_server_files(const char *cert, const char *key)
{
    if (pem_kind(cert) == 'k') {
        cli_err("--cert %s holds a private key, not a certificate (give NAME.crt to --cert and "
                "NAME.key to --key)",
                cert);
        return -1;
    }
    if (pem_kind(key) == 'c') {
        cli_err("--key %s holds a certificate, not a private key (give NAME.key to --key and "
                "NAME.crt to --cert)",
                key);
        return -1;
    }
    struct stat st;
    if (stat(key, &st) == 0 && (st.st_mode & (S_IRGRP | S_IROTH)))
        cli_err("WARNING: --key %s is readable by group or others: anyone who reads it can "
                "pose as this server (run: chmod 600 %s)",
                key, key);
    return 0;
}
