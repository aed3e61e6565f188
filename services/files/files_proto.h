/* files_proto.h — the files protocol on the wire (docs/PROTOCOL.md section
 * 9), shared by the server (services/files*.c) and the client (cli/files*.c):
 * message types, error codes, sizes, the directory entry layout, and the
 * path rules both sides check. The hello and the authentication are the
 * typed protocols' own (proto.h); docs/PROTOCOL.md and this file must agree. */
#ifndef SOCKIT_FILES_PROTO_H
#define SOCKIT_FILES_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define FILES_SERVICE "files"
#define FILES_HASH    32 /* SHA-256 */
#define FILES_ID      16 /* a PUT's upload id */
/* A PUT of this size streams: the length is known only at PUT_END (stdin);
 * there is no resume and no space check up front (section 9.5). */
#define FILES_SIZE_STREAM UINT64_MAX
/* The files protocol's highest version: 2 adds CHUNKS (section 9.10), 3
 * PATCH, PUT_AT and GET_RANGE (9.11) and mode and mtime on PUT_END (9.9),
 * 4 PATCH_RESUME (9.12). A server answers a hello
 * with the lower of its version and the client's, and a session never sees a request of a higher
 * version than the one agreed. */
#define FILES_VERSION 4
/* Files are hashed in chunks of this many bytes (the last one shorter):
 * SHA-256 of each, as `split -b 4M` cuts them. */
#define FILES_CHUNK (4u * 1024u * 1024u)
/* A CHUNK_HASHES frame carries at most this many hashes (8 KiB). */
#define FILES_HASHES_PER_FRAME 256u

/* Paths: relative, '/'-separated, at most PATH_MAX - 1 bytes, components of
 * at most NAME_MAX bytes, at most 64 of them (a bound on the work one path
 * costs; deeper trees are not what a file drop is for). */
#define FILES_PATH_MAX  4095u
#define FILES_NAME_MAX  255u
#define FILES_DEPTH_MAX 64u

/* A client's DATA payload is at most this: the server holds one whole frame
 * per connection while it writes it, so this bounds an upload's memory. */
#define FILES_PUT_CHUNK (256u * 1024u)
/* A server's DATA payload is at most this: the body goes with sendfile and
 * costs the server no memory; a client streams it to disk as it arrives. */
#define FILES_GET_CHUNK (4u * 1024u * 1024u)
/* Largest frame the server accepts after the handshake (a DATA frame). */
#define FILES_IN_MAX (1u + FILES_PUT_CHUNK)
/* Largest frame a client must accept (a server DATA frame). */
#define FILES_OUT_MAX (1u + FILES_GET_CHUNK)
/* ENTRIES frames stay below this. */
#define FILES_LIST_FRAME (64u * 1024u)

/* Hidden files the service keeps beside their target: uploads in progress
 * (server) and downloads in progress (client). Names starting with it are
 * never listed and never accepted in a path. */
#define FILES_PARTIAL_PREFIX ".sockit-partial."

enum files_type {
    /* client to server */
    FT_LIST = 0x40,     /* path */
    FT_STAT = 0x41,     /* path */
    FT_PUT = 0x42,      /* size (8), upload id (16), path */
    FT_GET = 0x43,      /* have (8), SHA-256 of those bytes (32), path */
    FT_PUT_FROM = 0x44, /* offset (8): 0 or the server's "have" */
    FT_DATA = 0x45,     /* file bytes (both directions) */
    FT_PUT_END = 0x46,  /* SHA-256 of the whole file (32); v3: + mode (2), mtime (8 + 4) */
    /* trees (section 9.9): a server that predates them answers ERROR 01 */
    FT_TREE = 0x47,    /* path of a directory: its entries as TREE_ENTRIES */
    FT_MKDIR = 0x48,   /* mode (2), path: make it (and its parents) */
    FT_SYMLINK = 0x49, /* target length (2), target, path: make a link */
    FT_META = 0x4a,    /* mode (2), mtime seconds (8), nanoseconds (4), path */
    FT_DELETE = 0x4b,  /* path: remove a file, link or whole directory */
    /* version 2 (section 9.10): a version-1 session answers ERROR 01 */
    FT_CHUNKS = 0x4c,    /* path: the file's chunk hashes */
    FT_PATCH = 0x4d,     /* as PUT: answered with the chunk hashes of the partial */
    FT_PUT_AT = 0x4e,    /* offset (8, a multiple of FILES_CHUNK): a PATCH's next DATA */
    FT_GET_RANGE = 0x4f, /* offset (8), length (8), path: answered as GET, the range only */
    /* server to client */
    FT_ENTRIES = 0x50,      /* count (2), then count entries */
    FT_LIST_END = 0x51,     /* total entries (8) */
    FT_STAT_OK = 0x52,      /* one entry */
    FT_PUT_READY = 0x53,    /* have (8), SHA-256 of the partial's first have bytes (32) */
    FT_PUT_OK = 0x54,       /* size (8), SHA-256 (32) */
    FT_GET_READY = 0x55,    /* size (8), from (8) */
    FT_GET_END = 0x56,      /* SHA-256 of the whole file (32) */
    FT_TREE_ENTRIES = 0x57, /* count (2), then count tree entries */
    FT_DONE = 0x58,         /* MKDIR, SYMLINK, META, DELETE succeeded */
    FT_CHUNK_HASHES = 0x59, /* first index (8), then SHA-256s of chunks (32 each) */
    FT_CHUNKS_END = 0x5a,   /* size (8), chunk size (4), count (8), SHA-256 of the file (32) */
    FT_PATCH_RESUME = 0x5b, /* kept (8), SHA-256 of the partial's first kept bytes (32) */
};

/* ERROR codes of the files protocol; 1-4 are the typed protocols' own
 * (PE_PROTOCOL, PE_HELLO, PE_AUTH, PE_BUSY in proto.h). After the
 * handshake only PE_PROTOCOL closes the connection. */
enum files_error {
    FE_NOTFOUND = 0x10, /* no such file or directory */
    FE_DENIED = 0x11,   /* the server's file system refused: permission */
    FE_BADPATH = 0x12,  /* refused by confinement: absolute, "..", NUL, ... */
    FE_TYPE = 0x13,     /* not a regular file or directory, or the wrong one */
    FE_READONLY = 0x14, /* the server runs with --read-only */
    FE_TOOBIG = 0x15,   /* over --max-file-size */
    FE_NOSPACE = 0x16,  /* the server's disk is full */
    FE_SIZE = 0x17,     /* the data did not match the declared size */
    FE_CHECKSUM = 0x18, /* the data did not match its SHA-256 */
    FE_IO = 0x19,       /* another error of the server's file system */
    FE_CHANGED = 0x1a,  /* the file changed while it was being sent */
};

/* The name of an ERROR code (files' and the shared ones). */
const char *files_error_name(int code);

/* A directory entry, as ENTRIES and STAT_OK carry it:
 *   type (1: 'f' regular file, 'd' directory) | size (8) |
 *   mtime (8, signed seconds since 1970) | mode (2, permission bits) |
 *   name length (2) | name */
#define FILES_ENTRY_FIXED 21u
typedef struct files_entry {
    uint8_t type;
    uint64_t size;
    int64_t mtime;
    uint16_t mode;
    const uint8_t *name; /* not NUL-terminated */
    size_t name_len;
} files_entry;

/* Writes e at out (room for FILES_ENTRY_FIXED + name_len); returns the
 * bytes written. */
size_t files_entry_put(uint8_t *out, const files_entry *e);
/* Reads one entry from p[0..len); returns the bytes it took, or 0 if it is
 * malformed (short, bad type, over-long or empty name, a '/' or NUL in it). */
size_t files_entry_get(const uint8_t *p, size_t len, files_entry *e);

/* A tree entry, as TREE_ENTRIES carries it (lstat: links are not followed):
 *   type (1: 'f', 'd' or 'l' a symbolic link) | size (8) | mtime (8, signed
 *   seconds) | mtime nanoseconds (4) | mode (2) | name length (2) | name |
 *   target length (2) | target (a link's text; empty for the others) */
#define FILES_TENTRY_FIXED 27u
#define FILES_LINK_MAX     4095u
typedef struct files_tentry {
    uint8_t type;
    uint64_t size;
    int64_t mtime;
    uint32_t mtime_ns;
    uint16_t mode;
    const uint8_t *name;
    size_t name_len;
    const uint8_t *target;
    size_t target_len;
} files_tentry;

/* As files_entry_put and files_entry_get, for tree entries; _get also
 * refuses a name that is "." or "..", a NUL in a target, a target of a
 * non-link, an over-long target. */
size_t files_tentry_put(uint8_t *out, const files_tentry *e);
size_t files_tentry_get(const uint8_t *p, size_t len, files_tentry *e);

/* Opens the directory path (checked by files_path_check; "" is base itself)
 * beneath base one component at a time, never following a symbolic link
 * (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS where the kernel has it,
 * else openat O_NOFOLLOW of single, checked names). create: missing
 * directories are made (0755 before the caller's chmod). Returns a
 * descriptor (O_DIRECTORY, CLOEXEC) or a negative errno. */
int files_walk_dir(int base, const char *path, bool create);
/* Splits path into its directory (opened as files_walk_dir does) and *name,
 * its last component (a pointer into path). */
int files_walk_parent(int base, const char *path, bool create, const char **name);
/* Removes name in dirfd: a file or link, or a directory and all it holds,
 * never following a link. Returns 0 or a negative errno. */
int files_remove_tree(int dirfd, const char *name);

/* Files of more chunks than this (1 TiB) are hashed but not cached: their
 * list would cost 8 MiB or more to hold. */
#define FILES_HCACHE_MAX_CHUNKS (256u * 1024u)

/* A file's chunk hashes, from a hash cache. */
typedef struct files_hlist {
    uint8_t *hashes; /* count * FILES_HASH (malloc) */
    uint64_t count;
    uint8_t whole[FILES_HASH];
} files_hlist;

struct stat;
/* A hash cache's records in the directory dfd (files_hcache.c; the server's
 * index beneath its root, the client's under $XDG_CACHE_HOME/sockit):
 * the chunk hashes of the file st describes, if a record holds them for
 * exactly its device, inode, size, mtime and ctime, self-checked by its
 * own SHA-256; and the record made (replaced by rename). */
bool files_hrec_get(int dfd, const struct stat *st, files_hlist *out);
void files_hrec_put(int dfd, const struct stat *st, const uint8_t *hashes, uint64_t count,
                    const uint8_t whole[FILES_HASH]);

uint64_t files_get64(const uint8_t *p);
void files_put64(uint8_t *p, uint64_t v);

/* Checks a path as the server will (both sides run it: the client to say
 * so before connecting): relative, no empty, "." or ".." component, no NUL
 * byte, not longer than FILES_PATH_MAX, components up to FILES_NAME_MAX,
 * at most FILES_DEPTH_MAX of them, no component starting with
 * FILES_PARTIAL_PREFIX. allow_root accepts "" (the root itself). Returns 0,
 * or -1 with one sentence in why. */
int files_path_check(const char *path, size_t len, bool allow_root, char *why, size_t whylen);

#endif
