/* files_options.c — the files service's command-line options (services.h's
 * svc_opt table): `sockit serve` parses them into files_cli_opts. */
#include <stddef.h>
#include <string.h>

#include "files_int.h"

files_opts files_cli_opts;

void files_opts_init(files_opts *o)
{
    memset(o, 0, sizeof *o);
    o->partial_ttl_s = FILES_DEFAULT_PARTIAL_TTL_S;
    o->max_unauth = FILES_DEFAULT_MAX_UNAUTH;
    o->max_unauth_per_source = PROTO_DEFAULT_UNAUTH_PER_SOURCE;
    o->handshake_ms = PROTO_HANDSHAKE_MS;
    o->stall_ms = FILES_DEFAULT_STALL_S * 1000u;
    o->max_per_source = FILES_DEFAULT_PER_SOURCE;
    o->idle_ms = FILES_DEFAULT_IDLE_S * 1000u;
}

void files_opts_init_store(void *store) { files_opts_init(store); }

const svc_opt files_options[] = {
    {"root", SVC_OPT_TEXT, offsetof(files_opts, root), 0, 0,
     "  --root DIR                the directory served (required; the demo set creates\n"
     "                            ./" FILES_DEMO_ROOT ")\n"},
    {"token-file", SVC_OPT_TEXT, offsetof(files_opts, token_file), 0, 0,
     "  --token-file FILE         as for exec; required unless every files address is a\n"
     "                            Unix socket with a path (served to the server's own\n"
     "                            user only) or --no-auth is given (the demo set uses\n"
     "                            ./" FILES_DEMO_TOKEN ")\n"},
    {"no-auth", SVC_OPT_FLAG, offsetof(files_opts, no_auth), 0, 0,
     "  --no-auth                 no token on loopback TCP or unix:@NAME: every local\n"
     "                            user can read and write (never beyond loopback)\n"},
    {"stall-timeout", SVC_OPT_SECONDS, offsetof(files_opts, stall_ms), 1, 0,
     "  --stall-timeout SEC       end a transfer that moves nothing that long (default 60)\n"},
    {"max-transfers-per-source", SVC_OPT_UINT, offsetof(files_opts, max_per_source), 1, 1000000,
     "  --max-transfers-per-source N  transfers at once from one address (default 16)\n"},
    {"idle-timeout", SVC_OPT_NOTE, 0, 0, 0,
     "  --idle-timeout SEC        for files: close a session idle between requests\n"
     "                            (default 300; 0: never)\n"},
    {"read-only", SVC_OPT_FLAG, offsetof(files_opts, read_only), 0, 0,
     "  --read-only               refuse uploads (get and ls only)\n"},
    {"keep-special-bits", SVC_OPT_FLAG, offsetof(files_opts, keep_special_bits), 0, 0,
     "  --keep-special-bits       keep setuid, setgid and sticky bits a put -r sends\n"
     "                            (default: dropped)\n"},
    {"max-file-size", SVC_OPT_BYTES, offsetof(files_opts, max_file_size), 1, 0,
     "  --max-file-size BYTES     largest upload (default: no limit but the disk's)\n"},
    /* Whole seconds, up to a year: a TTL is counted in hours and days. */
    {"partial-ttl", SVC_OPT_UINT, offsetof(files_opts, partial_ttl_s), 1, 365u * 86400u,
     "  --partial-ttl SEC         remove unfinished uploads untouched that long\n"
     "                            (default 86400: a day)\n"},
    {"max-unauth", SVC_OPT_UINT, offsetof(files_opts, max_unauth), 1, 1000000,
     "  --max-unauth, --max-unauth-per-source, --handshake-timeout   as for exec\n"},
    {"max-unauth-per-source", SVC_OPT_UINT, offsetof(files_opts, max_unauth_per_source), 1, 1000000,
     ""},
    {"handshake-timeout", SVC_OPT_SECONDS, offsetof(files_opts, handshake_ms), 1, 0, ""},
    {NULL, SVC_OPT_NOTE, 0, 0, 0, NULL},
};
