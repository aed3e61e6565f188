/* relay_options.c — the relay service's command-line options (services.h's
 * svc_opt table): `sockit relay` and `sockit serve relay` parse them into
 * relay_cli_opts. */
#include <stddef.h>
#include <string.h>

#include "relay.h"

relay_opts relay_cli_opts;

void relay_opts_init_store(void *store)
{
    relay_opts *o = store;
    memset(o, 0, sizeof *o);
    o->connect_ms = RELAY_DEFAULT_CONNECT_MS;
}

const svc_opt relay_options[] = {
    {"target", SVC_OPT_TEXT, offsetof(relay_opts, target), 0, 0,
     "  --target ADDR             where each connection goes (sockit relay's TARGET)\n"},
    {"connect-timeout", SVC_OPT_SECONDS, offsetof(relay_opts, connect_ms), 1, 0,
     "  --connect-timeout SEC     the target must accept in SEC, else the client's\n"
     "                            connection is closed and the reason logged (default 10)\n"},
    {"proxy-protocol", SVC_OPT_TEXT, offsetof(relay_opts, proxy), 0, 0,
     "  --proxy-protocol v1|v2    send HAProxy's PROXY header (the client's address) first\n"},
    {"ca", SVC_OPT_TEXT, offsetof(relay_opts, ca), 0, 0,
     "  --ca FILE                 tls:// target: verify its chain and name with FILE\n"},
    {"pin", SVC_OPT_TEXT, offsetof(relay_opts, pin), 0, 0,
     "  --pin SHA256              tls:// target: accept only this certificate fingerprint\n"},
    {"insecure", SVC_OPT_FLAG, offsetof(relay_opts, insecure), 0, 0,
     "  --insecure                tls:// target: do not verify it (warns; testing only)\n"},
    {"ipv4", SVC_OPT_FLAG, offsetof(relay_opts, ipv4), 0, 0,
     "  --ipv4, --ipv6 (-4, -6)   dial the target's IPv4 (IPv6) addresses only\n"},
    {"ipv6", SVC_OPT_FLAG, offsetof(relay_opts, ipv6), 0, 0, ""},
    {"source", SVC_OPT_TEXT, offsetof(relay_opts, source), 0, 0,
     "  --source ADDR[:PORT]      dial the target from this local address (numeric;\n"
     "                            port 0 or none: any port)\n"},
    {"hex", SVC_OPT_FLAG, offsetof(relay_opts, hex), 0, 0,
     "  --hex                     hex dump of both directions on stderr, each chunk\n"
     "                            under a '# conn N' line ('>' client to target, '<'\n"
     "                            back); relays by copying, never splice(2)\n"},
    {"hex-file", SVC_OPT_TEXT, offsetof(relay_opts, hex_file), 0, 0,
     "  --hex-file FILE           the hex dump into FILE instead (created, mode 600)\n"},
    {NULL, SVC_OPT_NOTE, 0, 0, 0, NULL},
};
