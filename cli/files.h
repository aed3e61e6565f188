/* files.h — what the files clients (`sockit put`, `get`, `ls`) share: their
 * common options, a blocking connection that speaks the files protocol
 * (files_conn.c), local file helpers, and the progress bar
 * (files_progress.c). */
#ifndef SOCKIT_CLI_FILES_H
#define SOCKIT_CLI_FILES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include <openssl/evp.h>

#include "../services/files/files_proto.h"
#include "../services/proto/proto.h"
#include "cli.h"

#define FILES_CLI_TIMEOUT_MS CLI_TIMEOUT_MS /* connecting and each wait, without --timeout */

/* A get's partial download left unresumed this long (no write) is removed
 * by the next get into its directory: the server's own default. */
#define FILES_CLI_PARTIAL_TTL_S (24u * 3600u)

/* The options every files command takes, and its positional arguments. */
typedef struct files_cli {
    const char *cmd; /* "put", "get" or "ls" (for messages) */
    const char *addr_text;
    sk_addr addr;
    const char *token_file; /* NULL: the server must not require one */
    bool quiet;
    bool json;              /* ls */
    bool no_clobber;        /* put, get: never replace an existing file */
    bool no_resume;         /* get: start over, and keep no partial on failure */
    uint32_t partial_ttl_s; /* get: partials older than this are removed */
    int timeout_ms;
    bool recursive;    /* put, get: -r, a whole tree */
    bool delete_extra; /* put, get -r: --delete */
    bool dry_run;      /* put, get -r: --dry-run */
    bool checksum;     /* put, get -r: --checksum */
    bool keep_special; /* get -r: --keep-special-bits */
    uint8_t offer;     /* the protocol version to offer (0: 1); an older
                          server is dialled again with version 1 */
    char **args;       /* the positional arguments after ADDR (in argv) */
    int nargs;
    cli_tls tls; /* tls://: --ca, --pin, --insecure; its context lives
                    until the process exits */
} files_cli;

/* Parses argv (ADDR and up to max_args more, -1: any number; options
 * anywhere). Returns 0,
 * 1 after --help (usage printed), or -1 after a usage error (printed). */
int files_cli_parse(files_cli *o, int argc, char **argv, int min_args, int max_args,
                    bool allow_json, void (*usage)(FILE *out));

/* A connection to a files server: blocking calls over a non-blocking
 * socket, each wait bounded by the timeout. */
typedef struct fconn {
    sk_sock *sock;
    const char *addr;
    int timeout_ms;
    uint8_t *in; /* bytes received and not yet consumed */
    size_t in_off, in_len, in_cap;
    bool auth_hint;  /* authenticating: an ERROR 03 also asks about --token-file */
    uint8_t version; /* agreed in the hello: 2 has CHUNKS (files_chunks_get) */
    bool probing;    /* offering a version above 1 */
    bool old;        /* ... and the server refused that hello (ERROR 02) */
} fconn;

/* Connects and runs the handshake (hello; authentication when the server
 * asks for it). Returns 0, or -1 after printing one line. */
int fc_open(fconn *c, const files_cli *o);
void fc_close(fconn *c);

/* True when a message (or the end of the stream) from the server is
 * waiting to be read. */
bool fc_pending(fconn *c);

/* Sends one message: type, then a and b (either may be empty). While it
 * waits for room to send, a message arriving from the server (an ERROR
 * that ends an upload early) stops it: the return is then 1 and the
 * message is waiting. Returns 0, 1, or -1 after printing one line. */
int fc_send(fconn *c, uint8_t type, const void *a, size_t alen, const void *b, size_t blen);

/* fc_send that waits for room however long the server talks meanwhile
 * (what it says stays queued for later reads): for a pipelined batch whose
 * answers are read after it is all sent. Returns 0 or -1 (printed). */
int fc_send_all(fconn *c, uint8_t type, const void *a, size_t alen, const void *b, size_t blen);

/* Receives the header of the next message: its type and the length of its
 * body (without the type byte). Returns 0 or -1 after printing a line
 * (what names the stage: "the answer to PUT"). */
int fc_head(fconn *c, uint8_t *type, size_t *len, const char *what);
/* Receives exactly len bytes of a body. Returns 0 or -1 (printed). */
int fc_body(fconn *c, void *buf, size_t len, const char *what);
/* A whole message of at most cap bytes of body (larger: a protocol error).
 * An ERROR is printed and returned as -2 with its code in *code. */
int fc_msg(fconn *c, uint8_t *type, uint8_t *body, size_t cap, size_t *len, int *code,
           const char *what);
/* Prints an ERROR body (code, text) as one line; returns its code. */
int fc_print_error(const fconn *c, const uint8_t *body, size_t len);

/* A file's chunk hashes (CHUNKS, protocol version 2): FILES_CHUNK bytes
 * each, the last one shorter, and the SHA-256 of the whole file. */
typedef struct files_chunk_list {
    uint64_t size;
    uint32_t chunk_size;
    uint64_t count;
    uint8_t *hashes; /* count * FILES_HASH bytes (malloc) */
    uint8_t whole[FILES_HASH];
    /* A PATCH answered PATCH_RESUME (version 4): no hashes; the server's
     * partial holds size bytes whose SHA-256 is whole. */
    bool resume;
} files_chunk_list;

/* Asks the server for path's chunk hashes (c->version must be 2). Returns
 * 0, -2 after an ERROR (printed; its code in *code, the connection still
 * usable), or -1 after one line. */
int files_chunks_get(fconn *c, const char *path, files_chunk_list *out, int *code);
void files_chunk_list_free(files_chunk_list *l);
/* The answer alone (CHUNK_HASHES..., CHUNKS_END), as CHUNKS and PATCH
 * have it, or a PATCH's PATCH_RESUME when patch (version 4: out->resume);
 * returns as files_chunks_get. */
int files_chunks_recv(fconn *c, files_chunk_list *out, int *code, bool patch);

/* The local file fd's chunk hashes (st: its fstat), from the client's
 * hash cache ($XDG_CACHE_HOME/sockit/chunks, else ~/.cache/sockit/chunks;
 * records keyed as the server's) or hashed and recorded. buf: a scratch
 * of FILES_PUT_CHUNK bytes. Returns 0, 1 if the file changed while it was
 * read, or -errno. */
int files_local_chunks(int fd, const struct stat *st, uint8_t *buf, files_chunk_list *out);

/* An upload by PATCH (protocol version 2, section 9.11): only the chunks
 * the server's partial (what a cut upload left, or a copy of the file it
 * replaces) lacks or holds wrong are sent. moved: DATA bytes sent. Returns
 * 0, 1 after an ERROR (printed; the connection still usable), 2 if the
 * local file changed meanwhile (nothing replaced), -1 when the connection
 * is lost (printed). */
int files_patch_put(fconn *c, int fd, const struct stat *st, const char *remote,
                    const uint8_t id[FILES_ID], uint8_t *buf, uint64_t *moved);

/* A download that moves only the chunks missing here (section 9.11): the
 * partial fd holds what a cut run kept, or (empty) is filled with a copy
 * of base (the local file it will replace; -1: none); both are checked
 * chunk by chunk against the server's CHUNKS list (*R, filled), and only
 * the runs of chunks that differ are fetched with GET_RANGE, each chunk
 * checked as it lands; then the whole partial is read back and its
 * SHA-256 compared. moved: bytes received. Returns 0 (the partial is the
 * file, not yet renamed), 1 after an ERROR (printed; the connection
 * usable), 3 after a local error or a mismatch (printed), -1 when the
 * connection is lost (printed). */
int files_patch_get(fconn *c, const char *remote, int fd, int base, uint8_t *buf, size_t cap,
                    uint64_t *moved, files_chunk_list *R);
/* Records R as the chunk hashes of the file fd now is (a download just
 * put in place), in the client's hash cache. */
void files_local_chunks_record(int fd, const files_chunk_list *R);

/* Hashes [off, off+len) of fd into md (already initialised). Returns 0, 1
 * if the file is shorter, or -errno. buf is a scratch of cap bytes. */
int files_hash_span(int fd, uint64_t off, uint64_t len, EVP_MD_CTX *md, uint8_t *buf, size_t cap);

/* The last component of a path ("a/b/" -> "b"), into out. */
void files_basename(const char *path, char *out, size_t cap);

/* A progress bar on stderr: bytes, percent, rate, ETA, redrawn at most ten
 * times a second; nothing at all unless enabled (a terminal, no --quiet). */
typedef struct progress {
    bool on;
    const char *label;
    uint64_t total, base, done;
    uint64_t t0, last_draw;
} progress;

/* True when stderr is a terminal and quiet is not set. */
bool progress_wanted(bool quiet);
void progress_start(progress *p, bool on, const char *label, uint64_t total, uint64_t already);
void progress_update(progress *p, uint64_t done);
/* The last redraw and a newline (ok: the bar shows 100 %). */
void progress_end(progress *p, bool ok);

uint64_t files_now_ms(void);

/* Ctrl-C (SIGINT), SIGTERM or SIGHUP during a transfer: one line on stderr
 * (line, which must outlive the transfer), after a newline that ends the
 * progress bar when one is drawn; the file unlink_name in dirfd removed
 * when not NULL; then exit 128+N, as a shell reports a signal. */
void files_interrupt_arm(const char *line, bool bar, int dirfd, const char *unlink_name);
void files_interrupt_disarm(void);

/* files_tree.c: put and get of several files or (-r) whole trees, with a
 * summary at the end. Returns the exit status. */
int files_tree_put(files_cli *o);
int files_tree_get(files_cli *o);

#endif
