/* cert.c — `sockit cert NAME [--days N]`: a self-signed key and certificate
 * for trying tls:// out, and the fingerprint clients pass to --pin. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sockit cert NAME [--days N]\n"
            "\n"
            "Writes NAME.key (EC P-256 private key, mode 600) and NAME.crt (a self-signed\n"
            "certificate for localhost, 127.0.0.1, ::1 and NAME if it is a host name), then\n"
            "prints the certificate's SHA-256 fingerprint for clients' --pin. Existing files\n"
            "are never replaced. The certificate cannot sign others (CA:FALSE); clients take\n"
            "it as --ca all the same.\n"
            "  --days N   validity in days (default 365)\n"
            "Then: sockit serve echo tls://127.0.0.1:9443 --cert NAME.crt --key NAME.key\n"
            "      sockit connect tls://127.0.0.1:9443 --ca NAME.crt   (or --pin FINGERPRINT)\n");
}

int cmd_cert(int argc, char **argv)
{
    unsigned days = 365;
    static const struct option longopts[] = {
        {"days", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': usage(stdout); return EXIT_OK;
        case 'd':
            if (cli_parse_uint(optarg, 1, 36500, &days) < 0) {
                cli_err("bad value \"%s\" for --days (1 to 36500)", optarg);
                return EXIT_USAGE;
            }
            break;
        case ':': cli_err("option %s needs a value", argv[optind - 1]); return EXIT_USAGE;
        default:
            cli_err("unknown option \"%s\" (try: sockit cert --help)", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        cli_err(argc - optind == 0 ? "cert needs a NAME (try: sockit cert --help)"
                                   : "cert takes one NAME");
        return EXIT_USAGE;
    }
    const char *name = argv[optind];
    uint8_t pin[SK_TLS_PIN_LEN];
    char err[600], text[100];
    if (sk_tls_make_cert(name, days, pin, err, sizeof err) < 0) {
        cli_err("%s", err);
        return EXIT_RUNTIME;
    }
    sk_tls_pin_format(pin, text, sizeof text);
    printf("wrote %s.key (private key, mode 600) and %s.crt (self-signed, %u days)\n", name, name,
           days);
    printf("SHA256 fingerprint (for --pin): %s\n", text);
    return EXIT_OK;
}
