/* acl_opts.c — --allow, --deny, --allow-file and --deny-file, parsed one
 * way for every command that listens (serve, listen, relay) into the
 * library's access list (sk_acl). */
#include "cli.h"

int cli_acl_add(sk_acl **acl, bool deny, bool file, const char *v, const char *allow_hint)
{
    if (*acl == NULL && sk_acl_new(acl) < 0) {
        cli_err("out of memory");
        return -1;
    }
    char err[400];
    if (file) {
        if (sk_acl_add_file(*acl, deny, v, err, sizeof err) < 0) {
            cli_err("--%s: %s", deny ? "deny-file" : "allow-file", err);
            return -1;
        }
        return 0;
    }
    if (sk_acl_add(*acl, deny, v, err, sizeof err) < 0) {
        if (!deny && allow_hint != NULL)
            cli_err("--allow takes network addresses (CIDR)%s", allow_hint);
        else
            cli_err("--%s takes network addresses (CIDR): %s", deny ? "deny" : "allow", err);
        return -1;
    }
    return 0;
}

int cli_acl_option(sk_acl **acl, int ch, const char *v)
{
    switch (ch) {
    case CLI_O_ALLOW:
    case CLI_O_DENY:
    case CLI_O_ALLOW_FILE:
    case CLI_O_DENY_FILE:
        return cli_acl_add(acl, ch == CLI_O_DENY || ch == CLI_O_DENY_FILE,
                           ch == CLI_O_ALLOW_FILE || ch == CLI_O_DENY_FILE, v, NULL) < 0
                   ? -1
                   : 1;
    default: return 0;
    }
}
