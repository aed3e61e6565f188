/* files_int.h — the insides of the files service shared by its files:
 * files.c (set-up, connections, requests; the handshake is the shared
 * one of services/proto/handshake.c), files_path.c (confinement), files_put.c and files_get.c
 * (uploads, downloads) with files_xfer.c (what they share), files_list.c
 * (LIST and STAT), files_sweep.c (expired partial uploads), files_source.c
 * (what each source address may hold). Not for the rest of the program. */
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

#include "../proto/handshake.h"
#include "../proto/proto.h"
#include "../services.h"
#include "files.h"
#include "files_proto.h"

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
 * downloads' chunks before they are sent): allocated at the first read,
 * and for an upload freed once its prefix is hashed. */
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
/* Source addresses counted at once (files_source.c): more, all with
 * transfers in progress, and a new source is refused (BUSY). */
#define FILES_SOURCES 1024u
/* A source address as text: an IPv6 address in brackets, or "local". */
#define FILES_SOURCE_KEY 64u
/* The resume-hash budget of one source: bytes per second the server hashes
 * to check the prefixes its clients offer (GET's have, PUT's partial), and
 * the most it may save up. A step beyond the budget waits for it (the
 * transfer is not refused): a real resume is slowed to 64 MiB/s at worst,
 * a source asking for hash after hash gets no more than that of one core. */
#define FILES_HASH_RATE  (64u * 1024u * 1024u)
#define FILES_HASH_BURST (64u * 1024u * 1024u)
/* Unfinished uploads one source may leave behind (kept for a resume when
 * its client vanishes) per --partial-ttl: a bucket of this many that
 * refills over the TTL. Beyond it a vanished upload's partial is removed
 * (no resume for that source) instead of taking a place in a directory. */
#define FILES_PARTIALS_PER_SOURCE 64u
/* How often a transfer's progress is looked at, as a fraction of
 * --stall-timeout: a stall is noticed within 1/4 of it after it is due. */
#define FILES_STALL_CHECKS 4u

/* Pipelined small uploads (all-zero id) waiting to be made durable and
 * answered together (files_commit.c). */
#define FILES_HOLD_MAX 64u

/* The hash cache's hidden index, beneath the root (files_hcache.c): its
 * name has the partials' prefix, so no client can list or name it. */
#define FILES_HCACHE_DIR FILES_PARTIAL_PREFIX "chunks"

typedef struct files_source {
    char key[FILES_SOURCE_KEY]; /* "": a free slot */
    unsigned transfers;         /* in progress, all connections together */
    uint64_t tokens;            /* bytes it may have hashed now */
    uint64_t refilled;          /* loop time (ms) of the last refill */
    uint64_t kept;              /* partials it may still leave, in 1/1000ths */
    uint64_t kept_refilled;     /* monotonic ms of the last refill of kept */
} files_source;

typedef struct files_sources {
    pthread_mutex_t mu;
    files_source slot[FILES_SOURCES];
} files_sources;

/* The root directory, held open for the life of the server. */
typedef struct files_root {
    int fd;
    bool use_openat2;         /* false: the component walk */
    const char *why_fallback; /* why not openat2 (for the log), or NULL */
} files_root;

typedef struct files_sweeper files_sweeper;
typedef struct files_hold files_hold;

/* The service, shared by every worker's loop: read-only after start but
 * for the atomic counters and the mutex-guarded penalty table. */
/* The whole-file hash of a kept partial at its last chunk border: a resume
 * of that partial, unchanged, goes on hashing from there instead of reading
 * the kept part again at PUT_END (files_precord.c). In memory only. */
#define FILES_MIDS 16
typedef struct {
    uint64_t key[5]; /* the partial's dev, ino, size, mtime ns, ctime ns */
    uint64_t len;    /* md covers the partial's [0, len) */
    EVP_MD_CTX *md;
} files_mid;

typedef struct files_svc {
    files_opts o;
    files_root root;
    bool auth; /* a token is configured */
    uint8_t token[SK_TOKEN_MAX];
    size_t token_len;
    proto_preauth pre;     /* connections in the handshake (proto/preauth.c) */
    atomic_uint transfers; /* PUTs and GETs in progress */
    files_sources sources; /* per source address: transfers, hash budget */
    mode_t new_mode;       /* a new file's permission bits (0666 less the umask) */
    proto_penalties pen;   /* failed authentications per address */
    proto_hs_service hs;   /* what the handshake needs (handshake.c) */
    files_sweeper *sweeper;
    /* Every session of every worker, so that stop can free those a loop
     * was freed under (a second signal skips the drain: no on_close). */
    pthread_mutex_t sess_mu;
    struct fsess *sessions;
    pthread_mutex_t mid_mu;
    files_mid mids[FILES_MIDS];
    unsigned mid_next;
} files_svc;

enum fs_state {
    FS_HELLO,     /* in the handshake (hello, proof, or a failed proof's delay) */
    FS_READY,     /* waiting for a request */
    FS_HASHING,   /* hashing a prefix before answering a PUT or GET */
    FS_PUT_FROM,  /* PUT_READY sent; waiting for PUT_FROM */
    FS_PUT_DATA,  /* receiving DATA until PUT_END */
    FS_PUT_SKIP,  /* a PUT failed: its DATA and PUT_END are ignored */
    FS_GET,       /* sending DATA */
    FS_LIST,      /* sending ENTRIES */
    FS_CHUNKS,    /* hashing a file's chunks for CHUNKS */
    FS_PATCH_BASE /* PATCH: hashing the chunks of what the partial holds */
};

enum fs_timer { FT_NONE, FT_DELAY, FT_STEP };
enum fs_kind { FX_NONE, FX_PUT, FX_GET, FX_LIST, FX_CHUNKS };

/* One connection. */
typedef struct fsess {
    files_svc *svc;
    const svc_ctx *ctx;
    sk_conn *conn;
    enum fs_state state;
    proto_hs hs;      /* the handshake, its pre-authentication slot */
    bool close_after; /* the client half-closed: close once this answer is sent */
    sk_timer *timer;
    enum fs_timer tkind;
    char src[FILES_SOURCE_KEY]; /* the source address (files_source_key) */
    bool idle_armed;            /* the idle watch runs (no request in progress) */
    /* the watch: of the transfer in progress (--stall-timeout), or of an
     * idle session (--idle-timeout) */
    sk_timer *stall;
    bool counted_src;
    uint64_t moved_at; /* loop time something last moved */
    uint64_t seen_in, seen_out, seen_hashed;
    /* the transfer or listing in progress */
    enum fs_kind kind;
    bool counted_xfer;
    char *path;       /* as the client named it (NUL-terminated) */
    int fd;           /* GET: the file; PUT: the partial; -1 */
    int dirfd;        /* PUT: the target's directory; -1 */
    const char *name; /* PUT: the target's last component (in path) */
    size_t made;      /* PUT: the directories this PUT made (files_open_parent_made) */
    char pname[FILES_NAME_MAX + 1]; /* PUT: the partial's name */
    uint64_t size;                  /* the whole file */
    uint64_t have;                  /* bytes the receiving side already holds */
    uint64_t from;                  /* where this transfer's data starts */
    uint64_t pos;                   /* next byte to receive / send */
    uint64_t hashed;                /* FS_HASHING: bytes of the prefix hashed so far */
    uint64_t written_back;          /* PUT: bytes handed to writeback */
    uint8_t theirs[FILES_HASH];     /* GET: the client's hash of its prefix */
    EVP_MD_CTX *md;
    uint8_t *buf;     /* FILES_READ_BUF bytes during a transfer */
    struct stat st;   /* GET: the file when the transfer began */
    uint64_t started; /* loop time the transfer began */
    DIR *dir;         /* LIST */
    uint64_t listed;
    bool tree;          /* LIST: TREE's entries (links as links) */
    EVP_MD_CTX *cmd;    /* CHUNKS: the hash of the chunk in progress */
    uint8_t *hashes;    /* CHUNKS: hashes not yet sent (FILES_HASHES_PER_FRAME) */
    uint64_t chunk;     /* CHUNKS: the index of the next chunk */
    uint64_t sent_from; /* CHUNKS: the first index not yet sent */
    uint8_t *frame;     /* CHUNKS: a CHUNK_HASHES frame being built */
    bool keep_all;      /* CHUNKS: hashes holds them all (to be cached) */
    bool patch;         /* PUT by PATCH: DATA goes where PUT_AT says */
    bool at_set;        /* PATCH: a PUT_AT has come */
    bool verifying;     /* PATCH: PUT_END came, the partial is being hashed */
    uint64_t hashed_to; /* PATCH: md covers the partial's [0, hashed_to) */
    uint64_t moved;     /* PATCH: DATA bytes received */
    /* PUT: a copy of md at the last chunk border, [0, pmid_len) of the
     * partial, kept for a resume if the client goes (files_precord.c) */
    EVP_MD_CTX *pmid;
    uint64_t pmid_len;
    bool precording;   /* an upload that can be resumed: borders are kept */
    uint64_t kept;     /* PATCH: chunks of the base the client kept */
    uint64_t end;      /* GET: where its DATA ends (size, or a range's end) */
    bool meta_set;     /* PUT_END carried mode and mtime (version 3) */
    bool fresh;        /* PUT: an all-zero upload id (or a stream): no resume */
    bool batchable;    /* PUT: an all-zero id, not a stream: committed in batches */
    files_hold *holds; /* answers (and uploads) waiting for the batch's commit */
    unsigned nhold;
    uint16_t meta_mode;
    struct timespec meta_mtime;
    bool range;                 /* GET by GET_RANGE: GET_END hashes the range */
    bool cache_hit;             /* GET: the offered hash matched the cache */
    uint8_t cached[FILES_HASH]; /* GET: the cached whole-file hash */
    struct fsess *prev, *next;  /* svc->sessions */
} fsess;

/* files_session.c: the session layer below the requests */
void files_send_error(fsess *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
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
/* Starts the idle watch when no request is in progress (--idle-timeout;
 * the handshake keeps its own deadline). */
void files_idle_update(fsess *s);
/* Like files_schedule_step, ms from now (a hash step waiting for budget). */
void files_schedule_step_in(fsess *s, uint32_t ms);

/* files.c */
void files_request(fsess *s, const uint8_t *msg, size_t len);

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
/* Refuses the transfer in progress (op: "get", "chunks"): the client
 * gets ERROR code with the text, the log a line (not-found at INFO, and
 * not at all with --quiet), and the session is ready for the next request. */
void files_xfer_refuse(fsess *s, const char *op, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The start of every request that reads a file (GET, GET_RANGE, CHUNKS):
 * checks path, begins a transfer of kind and opens the regular file into
 * s->fd, s->st and s->size. False: the client has been answered. */
bool files_xfer_open_source(fsess *s, const char *op, enum fs_kind kind, const uint8_t *path,
                            size_t plen);
/* One step of hashing the prefix of a resume (state FS_HASHING): false
 * while more steps are scheduled; true when done, with *rc as
 * files_hash_range's (the caller hands it to files_put_hashed or
 * files_get_hashed). */
bool files_hash_step(fsess *s, int *rc);
/* The watch fired: ends the transfer if nothing moved for --stall-timeout,
 * or closes an idle session once nothing moved for --idle-timeout; else
 * looks again later. */
void files_stall_check(fsess *s);
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
/* What PUT and PATCH share: checks the request, opens and locks the
 * partial (a PATCH's made from the file it replaces when nothing is
 * kept), s->have its length. false: refused (the client was told). */
bool files_put_open(fsess *s, const uint8_t *body, size_t len, bool patch);
void files_put_fail(fsess *s, bool remove, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The partial's hash is digest; theirs the client's: if they agree, the
 * partial is made durable and renamed over its target, and PUT_OK sent. */
void files_put_finish(fsess *s, const uint8_t digest[FILES_HASH], const uint8_t *theirs);
void files_put_from(fsess *s, const uint8_t *body, size_t len);
void files_put_data(fsess *s, const uint8_t *data, size_t len);
void files_put_end(fsess *s, const uint8_t *body, size_t len);
/* The partial's prefix has been hashed (rc as files_hash_range's). */
void files_put_hashed(fsess *s, int rc);

/* files_get.c */
/* Opens s->path for reading if it is a regular file (looked at first with
 * O_PATH, which opens nothing); *st gets its stat. Returns a descriptor,
 * or -1 with an ERROR code in *code and a sentence in why. */
int files_open_regular(fsess *s, struct stat *st, int *code, char *why, size_t whylen);
void files_get(fsess *s, const uint8_t *body, size_t len);
void files_get_hashed(fsess *s, int rc);
/* GET_RANGE (section 9.11): one range of a file, its SHA-256 at the end. */
void files_get_range(fsess *s, const uint8_t *body, size_t len);
/* Queues the next chunks of a download (on_drain brings it back). */
void files_get_pump(fsess *s);

/* files_list.c */
void files_list(fsess *s, const uint8_t *body, size_t len, bool tree);
void files_stat(fsess *s, const uint8_t *body, size_t len);
void files_list_step(fsess *s);
void files_list_end(fsess *s);

/* files_chunks.c: CHUNKS (section 9.10), a file's chunk hashes */
void files_chunks(fsess *s, const uint8_t *body, size_t len);
/* The next chunk (a loop step). */
void files_chunks_step(fsess *s);

/* files_patch.c: PATCH and PUT_AT (section 9.11), an upload that sends
 * only the chunks the server's copy lacks */
void files_patch(fsess *s, const uint8_t *body, size_t len);
/* Fills the new partial with a copy of the target (a reflink where the
 * file system has them). false: failed (told). */
bool files_patch_base(fsess *s, const char *what);
void files_patch_step(fsess *s);
void files_patch_at(fsess *s, const uint8_t *body, size_t len);
void files_patch_end(fsess *s, const uint8_t *theirs);
/* The partial has been hashed whole after PUT_END (rc as files_hash_range's). */
void files_patch_verified(fsess *s, int rc);

/* files_hcache.c: the hash cache */
/* The chunk hashes of the file st describes, if the index holds them for
 * exactly its device, inode, size, mtime and ctime. */
bool files_hcache_get(const files_svc *svc, const struct stat *st, files_hlist *out);
/* Records them (nothing on a --read-only server, or on any failure). */
void files_hcache_put(const files_svc *svc, const struct stat *st, const uint8_t *hashes,
                      uint64_t count, const uint8_t whole[FILES_HASH]);

/* files_hsweep.c: the hash cache's stale records go after each sweep */
typedef struct {
    uint64_t dev, ino;
} files_ino;
typedef struct {
    files_ino *keys;
    size_t n, cap;
    bool overflow; /* too many (or out of memory): nothing is pruned */
} files_inoset;
bool files_inoset_add(files_inoset *set, dev_t dev, ino_t ino);
void files_inoset_free(files_inoset *set);
/* Removes the records whose inode is not in seen (the files the walk
 * begun at started found) and old temporary records; returns how many. */
unsigned files_hcache_prune(const files_svc *svc, files_inoset *seen, time_t started);

/* files_precord.c: a partial upload's running hash, kept for its resume */
/* An upload starts: its running hash is kept at chunk borders if it can
 * be resumed (not fresh, not a stream). */
void files_precord_begin(fsess *s);
/* DATA is about to go to at (a PUT_AT): a kept border past it goes. */
void files_precord_at(fsess *s, uint64_t at);
/* len bytes were written at at; md takes them when in_order (and its
 * state is copied at each chunk border). false: the server could not hash. */
bool files_precord_data(fsess *s, uint64_t at, const uint8_t *data, size_t len, bool in_order);
/* A PATCH of the partial st: if its running hash was kept when its client
 * went, md is set to it and its length (a multiple of the chunk size,
 * under the upload's size) is returned; else 0. */
uint64_t files_precord_resume(fsess *s, const struct stat *st);
void files_mids_free(files_svc *svc);
/* The client went and the partial is kept: keep its running hash. */
void files_precord_save(fsess *s);
void files_precord_free(fsess *s);

/* files_commit.c: a batch of pipelined small uploads made durable at once */
/* Holds a fresh PUT's PUT_READY behind the answers already held. */
bool files_hold_ready(fsess *s);
/* Holds a verified upload (its partial, mode and mtime set) for the
 * commit, taking its descriptors; false: not held (commit it now). */
bool files_hold_put(fsess *s, const uint8_t digest[FILES_HASH]);
/* syncfs, the renames, one fsync per directory, then the answers. */
void files_hold_flush(fsess *s);
/* The client is gone: the held uploads are removed, unanswered. */
void files_hold_drop(fsess *s);

/* files_tree.c: MKDIR, SYMLINK, META, DELETE (section 9.9) */
void files_tree_op(fsess *s, uint8_t type, const uint8_t *body, size_t len);

/* files_source.c */
void files_sources_init(files_sources *t);
void files_sources_destroy(files_sources *t);
/* The source of a peer named peer (sk_conn_peer): its address without the
 * port, or "local" for a Unix-socket peer. */
void files_source_key(const char *peer, char key[FILES_SOURCE_KEY]);
/* Counts a transfer of key's. Returns 0, -EBUSY if key has max in progress,
 * -ENOSPC if the table has no room for a new source. */
int files_source_acquire(files_sources *t, const char *key, unsigned max, uint64_t now);
void files_source_release(files_sources *t, const char *key);
/* Takes bytes of hashing from key's budget: 0 if they may be hashed now,
 * else the milliseconds to wait before asking again (nothing taken). */
uint32_t files_source_hash(files_sources *t, const char *key, uint64_t bytes, uint64_t now);
/* May key leave one more partial behind (FILES_PARTIALS_PER_SOURCE per
 * ttl_s)? Takes it if so. now: monotonic ms (the loop's clock). */
bool files_source_keep(files_sources *t, const char *key, uint64_t now, uint32_t ttl_s);

/* files_sweep.c */
/* Starts the thread that removes partial uploads untouched for
 * partial_ttl_s; NULL with err if it cannot start. */
files_sweeper *files_sweeper_start(files_svc *svc, char *err, size_t errlen);
void files_sweeper_stop(files_sweeper *sw);
/* One pass over the tree (the thread runs it; tests may too). Returns the
 * number of partial files removed. */
unsigned files_sweep_once(const files_svc *svc);

#endif
