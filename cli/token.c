/* token.c — `sockit token FILE`: a new shared secret for exec and files
 * (--token-file), 32 random bytes written as 64 hex digits, mode 600. */
#include <getopt.h>
#include <stdio.h>

#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out, "usage: sockit token FILE\n"
                 "\n"
                 "Writes a new token for --token-file: 32 random bytes as 64 hex digits and a\n"
                 "newline, in FILE created with mode 600. The token is the file's bytes less one\n"
                 "trailing newline (here: the 64 digits). An existing FILE is never replaced.\n"
                 "Tokens shorter than 32 bytes, or of low variety (fewer than 8 different bytes,\n"
                 "or one short pattern repeated), are refused by servers and clients alike.\n"
                 "Then: sockit serve exec 127.0.0.1:9005 --token-file FILE\n"
                 "      sockit exec 127.0.0.1:9005 --token-file FILE -- uname -a\n"
                 "(copy FILE to the client's machine over a channel you trust, e.g. scp)\n");
}

int cmd_token(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "+h", longopts, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return EXIT_OK;
        }
        cli_err("unknown option \"%s\" (try: sockit token --help)", argv[optind - 1]);
        return EXIT_USAGE;
    }
    if (argc - optind != 1) {
        cli_err(argc - optind == 0 ? "token needs a FILE (try: sockit token --help)"
                                   : "token takes one FILE");
        return EXIT_USAGE;
    }
    const char *path = argv[optind];
    char err[600];
    int rc = sk_token_create(path, err, sizeof err);
    if (rc < 0) {
        cli_err("%s", err);
        return EXIT_RUNTIME; /* as sockit cert does for a file that exists */
    }
    printf("wrote a new token to %s (32 random bytes as 64 hex digits, mode 600)\n", path);
    return EXIT_OK;
}
