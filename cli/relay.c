/* relay.c — `sockit relay LISTEN TARGET`: `sockit serve relay LISTEN TARGET`
 * under its own name, so the relay takes serve's server options, access
 * lists, --cert/--key and drain exactly as serve parses them. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *out)
{
    fputs("usage: sockit relay LISTEN TARGET [options]\n"
          "\n"
          "Every connection accepted on LISTEN is connected to TARGET; bytes flow both ways\n"
          "until both directions are closed (half-close and resets are carried across).\n"
          "LISTEN, TARGET: HOST:PORT, [IPv6]:PORT, unix:PATH, unix:@NAME, tls://HOST:PORT.\n"
          "Plain TCP/Unix on both sides relays with splice(2); TLS on either side goes\n"
          "through the library's TLS. One log line per connection: both peers, bytes each\n"
          "way (up: client to target), duration, why it ended.\n"
          "\n"
          "options:\n"
          "  --connect-timeout SEC     TARGET must accept in SEC (default 10); if it is down,\n"
          "                            refuses or is slow, the client is closed, reason logged\n"
          "  --proxy-protocol v1|v2    send HAProxy's PROXY header to TARGET first\n"
          "  --cert FILE, --key FILE   a tls:// LISTEN: terminate TLS with this certificate\n"
          "  --ca FILE | --pin SHA256  a tls:// TARGET: verify it (default: the system's CAs)\n"
          "  --insecure                a tls:// TARGET: do not verify it (testing only)\n"
          "  -4, -6                    dial TARGET's IPv4 (IPv6) addresses only\n"
          "  --source ADDR[:PORT]      dial TARGET from this local address (numeric)\n"
          "  --hex                     hex dump of both directions on stderr ('>' client to\n"
          "                            target, '<' back; each chunk under a '# conn N' line);\n"
          "                            the relay then copies instead of splicing\n"
          "  --hex-file FILE           the hex dump into FILE instead\n"
          "server options, as for sockit serve: --max-conns N, --idle-timeout SEC,\n"
          "  --workers N, --max-memory BYTES, --drain-timeout SEC, --stats SEC, --quiet,\n"
          "  --backlog N, --handshake-timeout SEC, --max-handshakes N, --log-level LEVEL;\n"
          "  --allow CIDR[,CIDR...], --deny CIDR[,CIDR...], --allow-file F, --deny-file F\n"
          "  (not Unix sockets). SIGINT/SIGTERM drain. See sockit serve --help.\n",
          out);
}

int cmd_relay(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return EXIT_OK;
        }
    }
    int npos = 0;
    for (int i = 1; i < argc; i++)
        npos += argv[i][0] != '-';
    if (argc < 3 || npos < 2) {
        /* One line, like every usage error; the full text is --help's. */
        cli_err("relay needs LISTEN and TARGET (usage: sockit relay LISTEN TARGET [options]; "
                "try: sockit relay --help)");
        return EXIT_USAGE;
    }
    /* serve's parser with "relay" as the service: argv[0] stays ours. */
    char **sub = calloc((size_t)argc + 2, sizeof *sub);
    if (sub == NULL) {
        cli_err("out of memory");
        return EXIT_RUNTIME;
    }
    char svc[] = "relay";
    sub[0] = argv[0];
    sub[1] = svc;
    for (int i = 1; i < argc; i++)
        sub[i + 1] = argv[i];
    int rc = cmd_serve(argc + 1, sub);
    free(sub);
    return rc;
}
