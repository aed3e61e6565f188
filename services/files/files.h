/* files.h — `sockit serve files` (services/files*.c): the options the
 * command line fills and the checks and set-up it runs before starting.
 * The protocol is services/files_proto.h; the service's insides are
 * services/files_int.h. */
#ifndef SOCKIT_FILES_H
#define SOCKIT_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sockit.h"

#include "../services.h"

#define FILES_DEFAULT_PARTIAL_TTL_S (24u * 3600u)
#define FILES_DEFAULT_MAX_UNAUTH    64u
/* A transfer that moves no byte (and hashes none) this long is ended:
 * otherwise a client that stops reading or writing holds its slot, its
 * descriptors and its buffer for ever. --stall-timeout. */
#define FILES_DEFAULT_STALL_S 60u
/* Transfers in progress at once from one source address (all its
 * connections together), so that one host cannot take every transfer slot.
 * --max-transfers-per-source. */
#define FILES_DEFAULT_PER_SOURCE 16u
/* A session with no request in progress this long is closed (its slot in
 * the descriptor table is worth more than an idle client). Used unless
 * --idle-timeout is given. */
#define FILES_DEFAULT_IDLE_S 300u
/* The demo set's root, created if missing. */
#define FILES_DEMO_ROOT "sockit-files"
/* The demo set's token file: exec's (serve.c makes it). */
#define FILES_DEMO_TOKEN "sockit-exec.token"

typedef struct files_opts {
    const char *root;               /* required: the directory served */
    const char *token_file;         /* NULL: no authentication (loopback and Unix only) */
    bool no_auth;                   /* --no-auth: no token even on loopback TCP (told explicitly) */
    uint32_t stall_ms;              /* end a transfer that makes no progress this long */
    unsigned max_per_source;        /* transfers at once from one source address */
    uint32_t idle_ms;               /* close a session idle between requests this long; 0: never */
    bool read_only;                 /* refuse uploads; change nothing on disk */
    bool keep_special_bits;         /* META keeps setuid, setgid and sticky */
    uint64_t max_file_size;         /* largest upload; 0: no limit but the disk's */
    uint32_t partial_ttl_s;         /* unfinished uploads untouched this long are removed */
    unsigned max_unauth;            /* connections still in the handshake, at once */
    unsigned max_unauth_per_source; /* of those, from one source address */
    uint32_t handshake_ms;          /* hello (+ authentication) deadline */
} files_opts;

void files_opts_init(files_opts *o);

/* files_options.c: the options of `sockit serve` for files. */
extern files_opts files_cli_opts;
extern const svc_opt files_options[];
void files_opts_init_store(void *store);

/* Checks the options as the service will use them — the root (an existing
 * directory), the token file, and that a server without a token listens on
 * a Unix socket with a path (only peers of the server's own user are
 * served, SO_PEERCRED), or, with --no-auth given explicitly, on loopback or
 * any Unix socket (anyone who can reach the port could read and write the
 * files otherwise) — without keeping anything. addrs are the
 * files listeners' addresses. Returns 0, or -1 with one sentence in err. */
int files_check_opts(const files_opts *o, const sk_addr *const *addrs, int naddrs, char *err,
                     size_t errlen);

/* Creates the demo set's root directory (mode 0755) if missing. Returns 1
 * if created, 0 if it was there, -1 with err on failure. */
int files_demo_root(const char *path, char *err, size_t errlen);

#endif
