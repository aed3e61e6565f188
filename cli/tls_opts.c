/* tls_opts.c — what every client command shares for tls:// addresses: the
 * --ca / --pin / --insecure options, the refusal to talk without a way to
 * verify the server, the loud warning for --insecure, and dialing. */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_tls_option(cli_tls *t, int ch, const char *v)
{
    switch (ch) {
    case CLI_O_CA:
        t->ca = v;
        return 1;
    case CLI_O_PIN:
        if (sk_tls_pin_parse(v, t->pin) < 0) {
            cli_err("bad value \"%s\" for --pin (the server certificate's SHA-256: 64 hex digits, "
                    "plain or colon-separated as `sockit cert` and `openssl x509 -fingerprint "
                    "-sha256` print it)", v);
            return -1;
        }
        t->has_pin = true;
        return 1;
    case CLI_O_INSECURE:
        t->insecure = true;
        return 1;
    default:
        return 0;
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
    sk_tls_client_opts o = {.ca_file = t->ca, .pin = t->has_pin ? t->pin : NULL,
                            .insecure = t->insecure};
    char err[400];
    if (sk_tls_client_new(&o, &t->ctx, err, sizeof err) < 0) {
        cli_err("%s", err);
        return EXIT_RUNTIME;
    }
    return 0;
}

int cli_dial(const sk_addr *addr, const cli_tls *t, int timeout_ms, char *err, size_t errlen)
{
    if (addr->kind != SK_ADDR_TLS)
        return sk_dial(addr, timeout_ms, err, errlen);
    int fd = sk_tls_dial(addr, t->ctx, timeout_ms, err, errlen);
    if (fd == -EPERM && t->ca == NULL && !t->has_pin) {
        /* Verified against the system's CAs, and refused: say what works. */
        size_t n = strlen(err);
        snprintf(err + n, errlen > n ? errlen - n : 0,
                 " (give --ca FILE or --pin SHA256 for a server with its own certificate)");
    }
    return fd;
}

void cli_tls_free(cli_tls *t)
{
    sk_tls_ctx_free(t->ctx);
    t->ctx = NULL;
}
