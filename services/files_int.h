/* files_int.h — the insides of the files service shared by its files:
 * files.c (set-up, connections, requests), files_auth.c (hello and
 * authentication), files_path.c (confinement), files_put.c and files_get.c
 * (uploads, downloads) with files_xfer.c (what they share), files_list.c
 * (LIST and STAT), files_sweep.c (expired partial uploads). Not for the
 * rest of the program. */
#ifndef SOCKIT_FILES_INT_H
#define SOCKIT_FILES_INT_H

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <openssl/evp.h>

#include "files.h"
#include "files_proto.h"
#include "proto.h"
#include "services.h"

/* Transfers (PUT or GET) in progress at once, all workers together; each
 * holds up to two descriptors and a read buffer. More are refused (BUSY). */
#define FILES_MAX_TRANSFERS 1024u
/* Unfinished uploads waiting in one directory; a new one beyond this is
 * refused (BUSY) until some finish or expire. Counted only when an upload
 * starts a new partial file. */
#define FILES_PARTIALS_PER_DIR 64u
/* Bytes hashed per step when the server hashes a prefix (a resume) before
 * answering: the loop serves everyone else between steps. */
#define FILES_HASH_STEP (8u * 1024u * 1024u)
/* The buffer a transfer reads through to hash (uploads' prefixes,
 * downloads' chunks before they are sent). */
#define FILES_READ_BUF (128u * 1024u)
/* An upload's written bytes are handed to writeback every this much
 * (sync_file_range, non-blocking), so the final fsync has little left. */
#define FILES_WRITEBACK (8u * 1024u * 1024u)
/* A download or listing keeps at most this much output queued; it is also
 * the listeners' high-water mark, so on_drain (below a quarter of it) asks
 * for the next chunk. */
#define FILES_QUEUE_HIGH (1024u * 1024u)
/* Entries read per step of a LIST before the loop serves others. */
#define FILES_LIST_STEP 1024u

/* The root directory, held open for the life of the server. */
typedef struct files_root {
    int fd;
    bool use_openat2;          /* false: the component walk */
    const char *why_fallback;  /* why not openat2 (for the log), or NULL */
} files_root;

typedef struct files_sweeper files_sweeper;

/* The service, shared by every worker's loop: read-only after start but
 * for the atomic counters and the mutex-guarded penalty table. */
typedef struct files_svc {
    files_opts o;
    files_root root;
    bool auth;                 /* a token is configured */
    uint8_t token[SK_TOKEN_MAX];
    size_t token_len;
    proto_preauth pre;         /* connections in the handshake (proto.c) */
    atomic_uint transfers;     /* PUTs and GETs in progress */
    proto_penalties pen;       /* failed authentications per address */
    files_sweeper *sweeper;
    /* Every session of every worker, so that stop can free those a loop
     * was freed under (a second signal skips the drain: no on_close). */
    pthread_mutex_t sess_mu;
    struct fsess *sessions;
} files_svc;

enum fs_state {
    FS_HELLO,    /* waiting for the client's hello */
    FS_AUTH,     /* our hello (with a nonce) sent; waiting for AUTH */
    FS_DELAY,    /* the proof was wrong; the answer waits out the penalty */
    FS_READY,    /* waiting for a request */
    FS_HASHING,  /* hashing a prefix before answering a PUT or GET */
    FS_PUT_FROM, /* PUT_READY sent; waiting for PUT_FROM */
    FS_PUT_DATA, /* receiving DATA until PUT_END */
    FS_PUT_SKIP, /* a PUT failed: its DATA and PUT_END are ignored */
    FS_GET,      /* sending DATA */
    FS_LIST      /* sending ENTRIES */
};

enum fs_timer { FT_NONE, FT_DELAY, FT_STEP };
enum fs_kind { FX_NONE, FX_PUT, FX_GET, FX_LIST };

/* One connection. */
typedef struct fsess {
    files_svc *svc;
    const svc_ctx *ctx;
    sk_conn *conn;
    enum fs_state state;
    proto_gate gate;    /* its pre-authentication slot and deadlines */
    bool close_after;   /* the client half-closed: close once this answer is sent */
    uint8_t nonce_s[SK_AUTH_NONCE];
    sk_timer *timer;
    enum fs_timer tkind;
    /* the transfer or listing in progress */
    enum fs_kind kind;
    bool counted_xfer;
    char *path;         /* as the client named it (NUL-terminated) */
    int fd;             /* GET: the file; PUT: the partial; -1 */
    int dirfd;          /* PUT: the target's directory; -1 */
    const char *name;   /* PUT: the target's last component (in path) */
    size_t made;        /* PUT: the directories this PUT made (files_open_parent_made) */
    char pname[FILES_NAME_MAX + 1]; /* PUT: the partial's name */
    uint64_t size;      /* the whole file */
    uint64_t have;      /* bytes the receiving side already holds */
    uint64_t from;      /* where this transfer's data starts */
    uint64_t pos;       /* next byte to receive / send */
    uint64_t hashed;    /* FS_HASHING: bytes of the prefix hashed so far */
    uint64_t written_back; /* PUT: bytes handed to writeback */
    uint8_t theirs[FILES_HASH]; /* GET: the client's hash of its prefix */
    EVP_MD_CTX *md;
    uint8_t *buf;       /* FILES_READ_BUF bytes during a transfer */
    struct stat st;     /* GET: the file when the transfer began */
    uint64_t started;   /* loop time the transfer began */
    DIR *dir;           /* LIST */
    uint64_t listed;
    struct fsess *prev, *next; /* svc->sessions */
} fsess;

/* files.c */
void files_send_error(fsess *s, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Sends PE_PROTOCOL with why and closes (lingering). */
void files_fail(fsess *s, const char *why);
/* Answers a request whose path files_path_check refused, and logs it (a
 * client probing for a way out is worth a line). */
void files_refuse_path(fsess *s, const char *op, const char *why);
/* Log text for a client-supplied path: printable ASCII, the rest escaped. */
void files_describe(char *out, size_t cap, const char *path);
/* Runs the next step of the transfer or listing after the loop has served
 * everyone else (a 0 ms timer). */
void files_schedule_step(fsess *s);
/* The answer to a request is complete: back to FS_READY (closing instead
 * if the client half-closed meanwhile). */
void files_done(fsess *s);
void files_request(fsess *s, const uint8_t *msg, size_t len);

/* files_auth.c */
void files_on_hello(fsess *s, const uint8_t *msg, size_t len);
void files_on_auth(fsess *s, const uint8_t *msg, size_t len);
void files_auth_delay_done(fsess *s);

/* files_path.c */
int files_root_open(files_root *r, const char *dir, bool no_openat2, char *why, size_t whylen);
void files_root_close(files_root *r);
/* Opens path (already checked by files_path_check; "" is the root) beneath
 * the root with flags (O_CLOEXEC added). openat2 follows symbolic links
 * that stay beneath the root; the walk follows none. Returns a descriptor
 * or a negative errno: -EXDEV (leads out), -ELOOP (a link refused). */
int files_open(const files_root *r, const char *path, int flags, mode_t mode);
/* Opens the directory holding path's last component (O_RDONLY), making the
 * missing directories (0755) when create. *name points into path. */
int files_open_parent(const files_root *r, const char *path, bool create, const char **name);
/* files_open_parent that also says which directories this call made: *made
 * is the offset in path of the first one (those after it on the path were
 * missing too), or FILES_MADE_NONE. */
#define FILES_MADE_NONE ((size_t)-1)
int files_open_parent_made(const files_root *r, const char *path, bool create, const char **name,
                           size_t *made);
/* Removes, deepest first, the directories of path from offset made on (as
 * files_open_parent_made gave it) while they are empty: what a failed
 * upload made and left with nothing in it. */
void files_remove_made(const files_root *r, const char *path, size_t made);
/* Turns an open's -errno into an ERROR code and a sentence about what. */
int files_open_error(int err, const char *what, char *why, size_t whylen);

/* files_xfer.c: what uploads and downloads share */
/* Starts a transfer: counts it, copies the path, prepares the hash and the
 * read buffer. On failure the client has been told and nothing is held. */
bool files_xfer_begin(fsess *s, enum fs_kind kind, const uint8_t *path, size_t plen);
/* Ends the transfer, if any, releasing what it holds. gone: the client
 * left (an upload's partial is kept for a resume; nothing touches the
 * connection, which may be gone with its loop). */
void files_xfer_end(fsess *s, bool gone);
/* The next step of a transfer (hashing a prefix, or queueing data). */
void files_xfer_step(fsess *s);
/* Feeds [off, off+len) of the transfer's file to its hash. Returns 0, a
 * negative errno, or 1 if the file ended first. */
int files_hash_range(fsess *s, uint64_t off, uint64_t len);
/* The hash of what has been fed so far, the running hash going on. */
bool files_digest_so_far(fsess *s, uint8_t out[FILES_HASH]);
bool files_hash_restart(fsess *s);
bool files_set_blocking(int fd);
void files_hex8(char out[17], const uint8_t *digest);
double files_secs(const fsess *s);

/* files_put.c */
void files_put(fsess *s, const uint8_t *body, size_t len);
void files_put_from(fsess *s, const uint8_t *body, size_t len);
void files_put_data(fsess *s, const uint8_t *data, size_t len);
void files_put_end(fsess *s, const uint8_t *body, size_t len);
/* The partial's prefix has been hashed (rc as files_hash_range's). */
void files_put_hashed(fsess *s, int rc);

/* files_get.c */
void files_get(fsess *s, const uint8_t *body, size_t len);
void files_get_hashed(fsess *s, int rc);
/* Queues the next chunks of a download (on_drain brings it back). */
void files_get_pump(fsess *s);

/* files_list.c */
void files_list(fsess *s, const uint8_t *body, size_t len);
void files_stat(fsess *s, const uint8_t *body, size_t len);
void files_list_step(fsess *s);
void files_list_end(fsess *s);

/* files_sweep.c */
/* Starts the thread that removes partial uploads untouched for
 * partial_ttl_s; NULL with err if it cannot start. */
files_sweeper *files_sweeper_start(files_svc *svc, char *err, size_t errlen);
void files_sweeper_stop(files_sweeper *sw);
/* One pass over the tree (the thread runs it; tests may too). Returns the
 * number of partial files removed. */
unsigned files_sweep_once(const files_svc *svc);

#endif
