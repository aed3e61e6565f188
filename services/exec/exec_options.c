/* exec_options.c — the exec service's command-line options (services.h's
 * svc_opt table): `sockit serve` parses them into exec_cli_opts. */
#include <stddef.h>
#include <string.h>

#include "exec.h"

exec_opts exec_cli_opts;

void exec_opts_init(exec_opts *o)
{
    memset(o, 0, sizeof *o);
    o->max_procs = EXEC_DEFAULT_MAX_PROCS;
    o->max_unauth = EXEC_DEFAULT_MAX_UNAUTH;
    o->max_unauth_per_source = PROTO_DEFAULT_UNAUTH_PER_SOURCE;
    o->handshake_ms = PROTO_HANDSHAKE_MS;
    o->idle_ms = EXEC_DEFAULT_IDLE_MS;
    o->shell = EXEC_DEFAULT_SHELL;
}

void exec_opts_init_store(void *store) { exec_opts_init(store); }

/* --token-file, --max-unauth, --max-unauth-per-source and
 * --handshake-timeout are files' too (its table names them again). */
const svc_opt exec_options[] = {
    {"token-file", SVC_OPT_TEXT, offsetof(exec_opts, token_file), 0, 0,
     "  --token-file FILE         the shared secret, mode 600, at least 32 bytes (required;\n"
     "                            the demo set creates ./" EXEC_DEMO_TOKEN ")\n"},
    {"allow-cmd", SVC_OPT_TEXT, offsetof(exec_opts, allow_cmd), 0, 0,
     "  --allow-cmd CMD[,CMD...]  only these programs may run (exact argv[0]). It checks\n"
     "                            the program only, not its arguments: env, find, xargs,\n"
     "                            tar, shells and interpreters run anything (warned)\n"},
    {"allow-shell", SVC_OPT_FLAG, offsetof(exec_opts, allow_shell), 0, 0,
     "  --allow-shell             clients may run 'sockit exec --sh STRING' (/bin/sh -c)\n"
     "                            and 'sockit exec -t ADDR' (the --shell, interactive)\n"},
    {"shell", SVC_OPT_TEXT, offsetof(exec_opts, shell), 0, 0,
     "  --shell PATH              the login shell of 'sockit exec -t ADDR' without a\n"
     "                            command (default " EXEC_DEFAULT_SHELL ", run as PATH -l)\n"},
    {"no-pty", SVC_OPT_FLAG, offsetof(exec_opts, no_pty), 0, 0,
     "  --no-pty                  refuse 'sockit exec -t' (commands get no terminal)\n"},
    {"timeout", SVC_OPT_SECONDS, offsetof(exec_opts, timeout_ms), 0, 0,
     "  --timeout SEC             stop a command after SEC (TERM, then KILL; default none)\n"},
    {"max-output", SVC_OPT_BYTES, offsetof(exec_opts, max_output), 0, 0,
     "  --max-output BYTES        stop a command that writes more (default: no limit)\n"},
    {"max-procs", SVC_OPT_UINT, offsetof(exec_opts, max_procs), 1, 100000,
     "  --max-procs N             commands running at once, with what they left running\n"
     "                            (default 64)\n"},
    {"cwd", SVC_OPT_TEXT, offsetof(exec_opts, cwd), 0, 0,
     "  --cwd DIR                 working directory of commands (default: the server's)\n"},
    {"pass-env", SVC_OPT_TEXT, offsetof(exec_opts, pass_env), 0, 0,
     "  --pass-env NAME[,NAME...] pass these variables on (default: PATH, HOME, LANG only)\n"},
    {"max-unauth", SVC_OPT_UINT, offsetof(exec_opts, max_unauth), 1, 1000000,
     "  --max-unauth N            connections still authenticating, at once (default 64);\n"
     "                            when full, a newcomer evicts the oldest of the source\n"
     "                            holding the most\n"},
    {"max-unauth-per-source", SVC_OPT_UINT, offsetof(exec_opts, max_unauth_per_source), 1, 1000000,
     "  --max-unauth-per-source N of those, from one address (default 32; every Unix\n"
     "                            peer is one source); the hello must come within 2 s\n"},
    {"handshake-timeout", SVC_OPT_SECONDS, offsetof(exec_opts, handshake_ms), 1, 0,
     "  --handshake-timeout SEC   hello and authentication must finish in SEC (default 10)\n"},
    {"idle-timeout", SVC_OPT_NOTE, 0, 0, 0,
     "  --idle-timeout SEC        for exec: close a session idle that long between\n"
     "                            commands (default 300; a running command is not idle)\n"},
    {NULL, SVC_OPT_NOTE, 0, 0, 0, NULL},
};
