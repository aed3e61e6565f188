/* files_tree.c — `sockit put -r` / `get -r` and several files at once: a
 * tree made to match its source over one connection (files, directories,
 * symbolic links as links, permission bits, mtimes to the nanosecond), what
 * is unchanged (size and mtime, or the content hash with --checksum)
 * skipped, --delete and --dry-run, and one summary line at the end.
 *
 * The local side is opened one name at a time beneath a directory held
 * open, never following a link (files_walk_dir): names a hostile server
 * sends (.., '/', NUL, a link it sent earlier reused as a directory) cannot
 * lead a get outside LOCAL_DIR. Every file appears under its real name only
 * whole, its SHA-256 checked (a hidden partial, fsync, rename). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "files.h"

/* Entries of one directory held at once (each side's listing of it, for
 * the comparison): a directory with more is reported as a failure rather
 * than allowed unbounded memory. */
#define TREE_DIR_MAX 1000000u
/* Directory depth followed: the protocol's own bound on a path. */
#define TREE_DEPTH FILES_DEPTH_MAX

typedef struct ent {
    uint8_t type; /* 'f', 'd', 'l', or 0: something else (local only) */
    uint64_t size;
    struct timespec mtime;
    uint16_t mode;
    char *name;
    char *target; /* a link's text */
} ent;

typedef struct ents {
    ent *v;
    size_t n, cap;
} ents;

typedef struct tjob {
    files_cli *o;
    fconn c;
    bool broken; /* the connection is gone: stop */
    uint64_t sent, skipped, deleted, failed, bytes;
    uint64_t t0;
    EVP_MD_CTX *md;
    uint8_t *buf;        /* FILES_GET_CHUNK bytes */
    uint64_t done_bytes; /* bytes of the files finished (sent or received) */
    /* the progress line: on a terminal without --quiet */
    bool tp_on, tp_drawn;
    uint64_t tp_files, tp_bytes; /* totals (put -r counts first; 0: unknown) */
    uint64_t tp_last;            /* ms of the last redraw */
    const char *tp_name;         /* the file in transfer */
    struct batch *pb;            /* put: requests sent whose answers are owed */
    unsigned dirgen;             /* put: changes whenever put_dir's directory does */
} tjob;

static void batch_flush(tjob *j);

/* Redraws of the progress line at most this often (ten a second). */
#define TREE_DRAW_MS 100u

static void human(char *out, size_t cap, double v)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

/* One line on stderr for the whole run: files done / total, bytes, rate,
 * time left (when the total is known), the current file's name. */
static void tp_draw(tjob *j, uint64_t in_file, bool force)
{
    if (!j->tp_on)
        return;
    uint64_t now = files_now_ms();
    if (!force && now - j->tp_last < TREE_DRAW_MS)
        return;
    j->tp_last = now;
    uint64_t done = j->done_bytes + in_file;
    double secs = (double)(now - j->t0) / 1000.0;
    double rate = secs > 0.05 ? (double)done / secs : 0;
    char b[24], r[24], eta[32] = "";
    human(b, sizeof b, (double)done);
    human(r, sizeof r, rate);
    if (j->tp_bytes > done && rate > 0) {
        unsigned long left = (unsigned long)((double)(j->tp_bytes - done) / rate + 0.5);
        snprintf(eta, sizeof eta, "  ETA %lu:%02lu", left / 60, left % 60);
    }
    char total[32] = "";
    if (j->tp_files)
        snprintf(total, sizeof total, "/%llu", (unsigned long long)j->tp_files);
    fprintf(stderr, "\r\033[K%llu%s files  %s  %s/s%s  %.60s",
            (unsigned long long)(j->sent + j->skipped), total, b, r, eta,
            j->tp_name ? j->tp_name : "");
    fflush(stderr);
    j->tp_drawn = true;
}

/* put -r's totals for the progress line: regular files and their bytes. */
static void tp_count(tjob *j, int dfd, int depth)
{
    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            fstatat(dfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
            j->tp_files++;
            j->tp_bytes += S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
        } else if (S_ISDIR(st.st_mode) && depth < (int)FILES_DEPTH_MAX) {
            int sub = files_walk_dir(dfd, e->d_name, false);
            if (sub >= 0) {
                tp_count(j, sub, depth + 1);
                close(sub);
            }
        }
    }
    closedir(d);
}

static void ents_free(ents *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].target);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

static ent *ents_add(ents *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        if (cap > TREE_DIR_MAX)
            return NULL;
        ent *v = realloc(l->v, cap * sizeof *v);
        if (v == NULL)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    ent *e = &l->v[l->n++];
    memset(e, 0, sizeof *e);
    return e;
}

static int ent_cmp(const void *a, const void *b)
{
    return strcmp(((const ent *)a)->name, ((const ent *)b)->name);
}

/* Sorted by name, so that finding is a binary search (a directory of
 * 100,000 entries is compared in n log n) and a plan prints in order.
 * Returns false if a name is there twice. */
static bool ents_sort(ents *l)
{
    if (l->n > 1)
        qsort(l->v, l->n, sizeof *l->v, ent_cmp);
    for (size_t i = 1; i < l->n; i++)
        if (strcmp(l->v[i - 1].name, l->v[i].name) == 0)
            return false;
    return true;
}

static ent *ents_find(const ents *l, const char *name)
{
    ent key;
    key.name = (char *)(uintptr_t)name;
    return l->n ? bsearch(&key, l->v, l->n, sizeof *l->v, ent_cmp) : NULL;
}

static int join(char *out, size_t cap, const char *dir, const char *name)
{
    size_t d = strlen(dir), n = strlen(name), sep = d > 0;
    if (d + sep + n >= cap)
        return -1;
    memmove(out, dir, d);
    if (sep)
        out[d] = '/';
    memcpy(out + d + sep, name, n + 1);
    return 0;
}

static void fail(tjob *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(tjob *j, const char *fmt, ...)
{
    char line[FILES_PATH_MAX + 400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (j->tp_drawn)
        fputs("\r\033[K", stderr); /* the line goes above the progress line */
    cli_err("%s", line);
    j->failed++;
}

static void plan(const tjob *j, const char *what, const char *path)
{
    if (j->o->dry_run)
        printf("%s %s\n", what, path[0] ? path : ".");
}

/* ----------------------------------------------------------- requests */

/* Reads an answer that is DONE or an ERROR. 0: done; 1: an ERROR (printed,
 * counted); -1: the connection is gone. */
static int answer(tjob *j, const char *what)
{
    uint8_t type, body[1 + PROTO_ERROR_TEXT_MAX + 64];
    size_t len;
    if (fc_head(&j->c, &type, &len, what) < 0 || len > sizeof body ||
        fc_body(&j->c, body, len, what) < 0) {
        j->broken = true;
        return -1;
    }
    if (type == PT_ERROR) {
        int code = fc_print_error(&j->c, body, len);
        j->failed++;
        if (code == PE_PROTOCOL) {
            cli_err("%s: the server does not take tree requests (a sockit older than put -r?)",
                    j->c.addr);
            j->broken = true;
            return -1;
        }
        return 1;
    }
    if (type != FT_DONE) {
        cli_err("%s: protocol error: unexpected message 0x%02x during %s", j->c.addr, type, what);
        j->broken = true;
        return -1;
    }
    return 0;
}

static int req(tjob *j, uint8_t type, const void *a, size_t alen, const char *path,
               const char *what)
{
    batch_flush(j); /* the answers owed come first */
    if (fc_send(&j->c, type, a, alen, path, strlen(path)) != 0) {
        j->broken = true;
        return -1;
    }
    return answer(j, what);
}

static int r_mkdir(tjob *j, const char *path, uint16_t mode)
{
    uint8_t m[2];
    proto_put16(m, mode);
    return req(j, FT_MKDIR, m, 2, path, "MKDIR");
}

/* META's fields (and a version-3 PUT_END's tail): mode (2), mtime
 * seconds (8), nanoseconds (4). */
static void meta_put(uint8_t m[14], uint16_t mode, const struct timespec *t)
{
    proto_put16(m, mode);
    files_put64(m + 2, (uint64_t)(int64_t)t->tv_sec);
    proto_put32(m + 10, (uint32_t)t->tv_nsec);
}

static int r_meta(tjob *j, const char *path, uint16_t mode, const struct timespec *t)
{
    uint8_t m[14];
    meta_put(m, mode, t);
    return req(j, FT_META, m, sizeof m, path, "META");
}

static int r_delete(tjob *j, const char *path)
{
    return req(j, FT_DELETE, NULL, 0, path, "DELETE");
}

static int r_symlink(tjob *j, const char *path, const char *target)
{
    uint8_t m[2 + FILES_LINK_MAX];
    size_t tl = strlen(target);
    proto_put16(m, (uint16_t)tl);
    memcpy(m + 2, target, tl);
    return req(j, FT_SYMLINK, m, 2 + tl, path, "SYMLINK");
}

/* The server's entries of path. 1: listed; 0: it does not exist (or is not
 * a directory: *notdir); -1: failed (printed). */
static int r_list(tjob *j, const char *path, ents *out, bool *notdir)
{
    *notdir = false;
    batch_flush(j);
    if (fc_send(&j->c, FT_TREE, path, strlen(path), NULL, 0) != 0) {
        j->broken = true;
        return -1;
    }
    for (;;) {
        uint8_t type;
        size_t len;
        if (fc_head(&j->c, &type, &len, "the listing") < 0 || len > FILES_LIST_FRAME ||
            fc_body(&j->c, j->buf, len, "the listing") < 0) {
            j->broken = true;
            return -1;
        }
        if (type == FT_LIST_END) {
            if (ents_sort(out))
                return 1;
            cli_err("%s: protocol error: a name repeated in a listing", j->c.addr);
            j->broken = true;
            return -1;
        }
        if (type == PT_ERROR) {
            int code = len >= 1 ? j->buf[0] : 0;
            if (code == FE_NOTFOUND || code == FE_TYPE) {
                *notdir = code == FE_TYPE;
                return 0;
            }
            fc_print_error(&j->c, j->buf, len);
            j->failed++;
            if (code == PE_PROTOCOL) {
                cli_err("%s: the server does not take tree requests (a sockit older than -r?)",
                        j->c.addr);
                j->broken = true;
            }
            return -1;
        }
        if (type != FT_TREE_ENTRIES || len < 2) {
            cli_err("%s: protocol error: expected TREE_ENTRIES, got 0x%02x", j->c.addr, type);
            j->broken = true;
            return -1;
        }
        size_t count = proto_get16(j->buf), off = 2;
        for (size_t i = 0; i < count; i++) {
            files_tentry te;
            size_t n = files_tentry_get(j->buf + off, len - off, &te);
            ent *e = n ? ents_add(out) : NULL;
            if (n == 0 || e == NULL) {
                cli_err("%s: %s", j->c.addr,
                        n == 0 ? "protocol error: a malformed or hostile entry name"
                               : "a directory too large to compare");
                j->broken = true;
                return -1;
            }
            off += n;
            e->type = te.type;
            e->size = te.size;
            e->mtime.tv_sec = (time_t)te.mtime;
            e->mtime.tv_nsec = (long)te.mtime_ns;
            e->mode = te.mode;
            e->name = strndup((const char *)te.name, te.name_len);
            e->target = te.type == 'l' ? strndup((const char *)te.target, te.target_len) : NULL;
            if (e->name == NULL || (te.type == 'l' && e->target == NULL) ||
                strncmp(e->name, FILES_PARTIAL_PREFIX, sizeof FILES_PARTIAL_PREFIX - 1) == 0) {
                cli_err("%s: protocol error: a bad or repeated entry in a listing", j->c.addr);
                j->broken = true;
                return -1;
            }
        }
    }
}

/* ------------------------------------------------------------- local */

/* The entries of an open local directory (dfd stays the caller's). */
static int l_list(int dfd, ents *out)
{
    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return -errno;
    }
    rewinddir(d);
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            rc = -errno;
            break;
        }
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            strncmp(name, FILES_PARTIAL_PREFIX, sizeof FILES_PARTIAL_PREFIX - 1) == 0)
            continue;
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue; /* gone meanwhile */
        ent *e = ents_add(out);
        if (e == NULL) {
            rc = -ENOMEM;
            break;
        }
        e->name = strdup(name);
        e->type = S_ISREG(st.st_mode)   ? 'f'
                  : S_ISDIR(st.st_mode) ? 'd'
                  : S_ISLNK(st.st_mode) ? 'l'
                                        : 0;
        e->size = S_ISREG(st.st_mode) ? (uint64_t)st.st_size : 0;
        e->mtime = st.st_mtim;
        e->mode = (uint16_t)(st.st_mode & 07777);
        if (e->type == 'l') {
            char t[FILES_LINK_MAX + 1];
            ssize_t n = readlinkat(dfd, name, t, FILES_LINK_MAX);
            if (n > 0) {
                t[n] = '\0';
                e->target = strdup(t);
            }
            if (e->target == NULL)
                e->type = 0;
        }
        if (e->name == NULL) {
            rc = -ENOMEM;
            break;
        }
    }
    closedir(d);
    if (rc == 0)
        (void)ents_sort(out); /* a directory never repeats a name */
    return rc;
}

static const char *kind_name(mode_t m)
{
    return S_ISFIFO(m) ? "a FIFO" : S_ISSOCK(m) ? "a socket" : "a device";
}

static bool same_time(const struct timespec *a, const struct timespec *b)
{
    return a->tv_sec == b->tv_sec && a->tv_nsec == b->tv_nsec;
}

/* SHA-256 of an open file, whole. */
static int hash_fd(tjob *j, int fd, uint64_t size, uint8_t out[FILES_HASH])
{
    if (EVP_DigestInit_ex(j->md, EVP_sha256(), NULL) != 1)
        return -ENOMEM;
    int rc = files_hash_span(fd, 0, size, j->md, j->buf, FILES_GET_CHUNK);
    if (rc != 0)
        return rc < 0 ? rc : -EAGAIN;
    return EVP_DigestFinal_ex(j->md, out, NULL) == 1 ? 0 : -ENOMEM;
}

/* --checksum: does the server's file at path hold exactly the bytes of
 * the local fd? A GET offering the whole file as the part we "have": the
 * server answers from = size only when its hash is the same. */
static int same_content(tjob *j, int fd, uint64_t size, const char *path)
{
    batch_flush(j);
    uint8_t head[8 + FILES_HASH];
    files_put64(head, size);
    if (hash_fd(j, fd, size, head + 8) < 0)
        return 0;
    if (fc_send(&j->c, FT_GET, head, sizeof head, path, strlen(path)) != 0) {
        j->broken = true;
        return -1;
    }
    uint8_t type;
    size_t len;
    uint64_t from = 0, got = 0, total = 0;
    for (;;) {
        if (fc_head(&j->c, &type, &len, "the comparison") < 0 || len > FILES_GET_CHUNK ||
            fc_body(&j->c, j->buf, len, "the comparison") < 0) {
            j->broken = true;
            return -1;
        }
        if (type == PT_ERROR)
            return 0;
        if (type == FT_GET_READY && len == 16) {
            total = files_get64(j->buf);
            from = files_get64(j->buf + 8);
        } else if (type == FT_DATA) {
            got += len; /* a different file: the server sends it; dropped */
        } else if (type == FT_GET_END) {
            return from == size && total == size && got == 0;
        } else {
            j->broken = true;
            return -1;
        }
    }
}

/* ------------------------------------------------------------- put */

static void upload_id(const char *path, const struct stat *st, uint8_t id[FILES_ID])
{
    char meta[FILES_PATH_MAX + 128];
    int n = snprintf(meta, sizeof meta, "tree:%s:%llu:%llu:%llu:%lld.%09ld", path,
                     (unsigned long long)st->st_dev, (unsigned long long)st->st_ino,
                     (unsigned long long)st->st_size, (long long)st->st_mtim.tv_sec,
                     st->st_mtim.tv_nsec);
    uint8_t d[FILES_HASH];
    unsigned dl = 0;
    if (n < 0 || EVP_Digest(meta, (size_t)n, d, &dl, EVP_sha256(), NULL) != 1)
        memset(d, 0, sizeof d);
    memcpy(id, d, FILES_ID);
}

/* Uploads the open file fd (its stat st) to path. 0: done and verified;
 * 1: failed, printed (the next file may go); -1: the connection is gone.
 * 2: the file changed while it was read (the caller tries once more). */
static int put_fd(tjob *j, int fd, const struct stat *st, const char *path, const char *shown)
{
    batch_flush(j);
    uint64_t size = (uint64_t)st->st_size;
    uint8_t head[8 + FILES_ID];
    files_put64(head, size);
    upload_id(path, st, head + 8);
    if (j->c.version >= 3 && size > FILES_CHUNK) {
        /* Only the chunks the server lacks (section 9.11). */
        uint64_t moved = 0;
        int rc = files_patch_put(&j->c, fd, st, path, head + 8, j->buf, &moved);
        j->bytes += moved;
        if (rc == 0)
            j->done_bytes += size;
        else if (rc == 1)
            j->failed++;
        else if (rc < 0)
            j->broken = true;
        return rc;
    }
    if (fc_send(&j->c, FT_PUT, head, sizeof head, path, strlen(path)) != 0)
        goto gone;
    uint8_t msg[64], type;
    size_t len;
    int code = 0;
    int rc = fc_msg(&j->c, &type, msg, sizeof msg, &len, &code, "the answer to PUT");
    if (rc == -2) {
        j->failed++;
        return 1;
    }
    if (rc < 0 || type != FT_PUT_READY || len != 8 + FILES_HASH)
        goto gone;
    uint64_t have = files_get64(msg), from = 0;
    if (EVP_DigestInit_ex(j->md, EVP_sha256(), NULL) != 1)
        goto gone;
    if (have > 0 && have <= size) {
        uint8_t ours[FILES_HASH];
        EVP_MD_CTX *tmp = EVP_MD_CTX_new();
        bool ok = files_hash_span(fd, 0, have, j->md, j->buf, FILES_PUT_CHUNK) == 0 && tmp &&
                  EVP_MD_CTX_copy_ex(tmp, j->md) == 1 && EVP_DigestFinal_ex(tmp, ours, NULL) == 1 &&
                  memcmp(ours, msg + 8, FILES_HASH) == 0;
        EVP_MD_CTX_free(tmp);
        if (ok)
            from = have;
        else if (EVP_DigestInit_ex(j->md, EVP_sha256(), NULL) != 1)
            goto gone;
    }
    uint8_t off[8];
    files_put64(off, from);
    if (fc_send(&j->c, FT_PUT_FROM, off, sizeof off, NULL, 0) != 0)
        goto gone;
    for (uint64_t pos = from; pos < size;) {
        size_t want = size - pos < FILES_PUT_CHUNK ? (size_t)(size - pos) : FILES_PUT_CHUNK;
        ssize_t n = pread(fd, j->buf, want, (off_t)pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            /* The server drops the partial at a PUT_END short of size. */
            (void)fc_send(&j->c, FT_PUT_END, j->buf, FILES_HASH, NULL, 0);
            rc = fc_msg(&j->c, &type, msg, sizeof msg, &len, &code, "the upload");
            if (rc == -1)
                goto gone;
            return n == 0 ? 2 : (fail(j, "cannot read %s: %s", shown, strerror(errno)), 1);
        }
        if (EVP_DigestUpdate(j->md, j->buf, (size_t)n) != 1)
            goto gone;
        rc = fc_pending(&j->c) ? 1 : fc_send(&j->c, FT_DATA, j->buf, (size_t)n, NULL, 0);
        if (rc != 0) {
            if (rc > 0 && fc_msg(&j->c, &type, msg, sizeof msg, &len, &code, "the upload") == -2) {
                j->failed++;
                return 1;
            }
            goto gone;
        }
        pos += (uint64_t)n;
        j->bytes += (uint64_t)n;
        tp_draw(j, pos, false);
    }
    struct stat now;
    bool changed =
        fstat(fd, &now) < 0 || now.st_size != st->st_size || !same_time(&now.st_mtim, &st->st_mtim);
    uint8_t digest[FILES_HASH];
    if (EVP_DigestFinal_ex(j->md, digest, NULL) != 1)
        goto gone;
    if (changed)
        digest[0] ^= 1; /* the server refuses it, and drops the partial */
    if (fc_send(&j->c, FT_PUT_END, digest, sizeof digest, NULL, 0) != 0)
        goto gone;
    rc = fc_msg(&j->c, &type, msg, sizeof msg, &len, &code, "the server's check of the upload");
    if (changed && rc == -2)
        return 2;
    if (rc == -2) {
        j->failed++;
        return 1;
    }
    if (rc < 0 || type != FT_PUT_OK || len != 8 + FILES_HASH || files_get64(msg) != size ||
        memcmp(msg + 8, digest, FILES_HASH) != 0)
        goto gone;
    j->done_bytes += size;
    return 0;
gone:
    j->broken = true;
    return -1;
}

/* Sends the local file dfd/name to path, then its mode and mtime. */
static void put_file(tjob *j, int dfd, const char *name, const char *path, const char *shown)
{
    j->tp_name = path;
    tp_draw(j, 0, false);
    for (int attempt = 0; attempt < 2; attempt++) {
        int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
            fail(j, "cannot read %s: %s", shown, fd < 0 ? strerror(errno) : "not a regular file");
            if (fd >= 0)
                close(fd);
            return;
        }
        int rc = put_fd(j, fd, &st, path, shown);
        close(fd);
        if (rc == 0) {
            j->sent++;
            if (r_meta(j, path, (uint16_t)(st.st_mode & 07777), &st.st_mtim) == 0)
                return;
            return;
        }
        if (rc != 2)
            return;
    }
    fail(j, "%s changed while it was being sent (tried twice)", shown);
}

/* Small files are pipelined: each one's PUT, PUT_FROM, DATA and PUT_END
 * go as soon as the file is read, without waiting for PUT_READY (an
 * all-zero upload id: no resume, so the server goes straight on), and so
 * do a new directory's MKDIR and its META; their answers are owed, and read
 * in order when 64 are owed or before any request that is answered at
 * once. With version 3 the mode and mtime ride on PUT_END; before it, the
 * METAs of the files that arrived follow their answers. The server works
 * through one file while the client reads the next; a larger file goes
 * alone (and resumes). */
#define BATCH_FILES    64u
#define BATCH_FILE_MAX (1024u * 1024u)

typedef struct pend {
    char name[FILES_NAME_MAX + 1]; /* in its directory (dfd[dir]); "": a DONE owed */
    unsigned dir;
    const char *what; /* a DONE owed: the request's name */
    char path[FILES_PATH_MAX + 1];
    char shown[PATH_MAX];
    struct stat st;
    uint8_t digest[FILES_HASH];
    enum { P_SENT, P_OK, P_FAILED, P_CHANGED } state;
} pend;

typedef struct batch {
    pend v[BATCH_FILES];
    unsigned n;
    int dfd[BATCH_FILES]; /* dups of the directories the files are read from */
    unsigned ndfd;
    unsigned gen; /* j->dirgen when dfd[ndfd - 1] was taken */
} batch;

/* Sends one file of the batch. false: the connection is gone. */
static bool batch_send(tjob *j, int dfd, pend *p)
{
    int fd = openat(dfd, p->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 || fstat(fd, &p->st) < 0 || !S_ISREG(p->st.st_mode)) {
        fail(j, "cannot read %s: %s", p->shown, fd < 0 ? strerror(errno) : "not a regular file");
        p->state = P_FAILED;
        if (fd >= 0)
            close(fd);
        return true;
    }
    if ((uint64_t)p->st.st_size > BATCH_FILE_MAX) {
        p->state = P_CHANGED; /* grew meanwhile: sent alone, after the batch */
        close(fd);
        return true;
    }
    uint64_t size = (uint64_t)p->st.st_size;
    uint8_t head[8 + FILES_ID] = {0}, zero[8] = {0};
    files_put64(head, size);
    bool ok = EVP_DigestInit_ex(j->md, EVP_sha256(), NULL) == 1 &&
              fc_send_all(&j->c, FT_PUT, head, sizeof head, p->path, strlen(p->path)) == 0 &&
              fc_send_all(&j->c, FT_PUT_FROM, zero, 8, NULL, 0) == 0;
    uint64_t pos = 0;
    while (ok && pos < size) {
        size_t want = size - pos < FILES_PUT_CHUNK ? (size_t)(size - pos) : FILES_PUT_CHUNK;
        ssize_t n = pread(fd, j->buf, want, (off_t)pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* shrank or unreadable: the server refuses the short upload */
        ok = EVP_DigestUpdate(j->md, j->buf, (size_t)n) == 1 &&
             fc_send_all(&j->c, FT_DATA, j->buf, (size_t)n, NULL, 0) == 0;
        pos += (uint64_t)n;
    }
    struct stat now;
    bool changed = pos != size || fstat(fd, &now) < 0 || now.st_size != p->st.st_size ||
                   !same_time(&now.st_mtim, &p->st.st_mtim);
    close(fd);
    ok = ok && EVP_DigestFinal_ex(j->md, p->digest, NULL) == 1;
    uint8_t sent[FILES_HASH + 14];
    memcpy(sent, p->digest, FILES_HASH);
    if (changed)
        sent[0] ^= 1; /* refused by the server; tried again alone */
    size_t elen = FILES_HASH;
    if (j->c.version >= 3) {
        /* Mode and mtime ride on PUT_END (version 3): the file appears
         * with them, and no META follows. */
        meta_put(sent + FILES_HASH, (uint16_t)(p->st.st_mode & 07777), &p->st.st_mtim);
        elen += 14;
    }
    ok = ok && fc_send_all(&j->c, FT_PUT_END, sent, elen, NULL, 0) == 0;
    p->state = changed ? P_CHANGED : P_SENT;
    if (!ok)
        j->broken = true;
    return ok;
}

/* The answers to one file's PUT: PUT_READY then PUT_OK, or an ERROR. */
static void batch_answer(tjob *j, pend *p)
{
    uint8_t msg[64], type;
    size_t len;
    int code = 0;
    int rc = fc_msg(&j->c, &type, msg, sizeof msg, &len, &code, "the answer to PUT");
    if (rc == 0 && type == FT_PUT_READY && len == 8 + FILES_HASH)
        rc = fc_msg(&j->c, &type, msg, sizeof msg, &len, &code, "the server's check of the upload");
    else if (rc == 0)
        rc = -1;
    if (rc == -2) {
        if (p->state != P_CHANGED) {
            j->failed++;
            p->state = P_FAILED;
        }
        return;
    }
    if (rc < 0 || p->state == P_CHANGED || type != FT_PUT_OK || len != 8 + FILES_HASH ||
        files_get64(msg) != (uint64_t)p->st.st_size ||
        memcmp(msg + 8, p->digest, FILES_HASH) != 0) {
        if (rc == 0)
            cli_err("%s: the server's confirmation of %s does not match what was sent", j->c.addr,
                    p->path);
        j->broken = true;
        return;
    }
    p->state = P_OK;
    j->sent++;
    j->bytes += (uint64_t)p->st.st_size;
    j->done_bytes += (uint64_t)p->st.st_size;
}

/* Reads every answer owed, in order; then the METAs of a version-2
 * server; then sends again, alone, each file that changed while it was
 * read (once). */
static void batch_flush(tjob *j)
{
    batch *b = j->pb;
    if (b == NULL || b->n == 0)
        return;
    unsigned n = b->n;
    for (unsigned i = 0; i < n && !j->broken; i++) {
        pend *p = &b->v[i];
        if (p->name[0] == '\0')
            (void)answer(j, p->what);
        else if (p->state == P_SENT ||
                 (p->state == P_CHANGED && (uint64_t)p->st.st_size <= BATCH_FILE_MAX))
            /* a file that grew past the batch size was not sent: no answer */
            batch_answer(j, p);
    }
    unsigned metas = 0;
    for (unsigned i = 0; i < n && !j->broken && j->c.version < 3; i++) {
        pend *p = &b->v[i];
        if (p->name[0] == '\0' || p->state != P_OK)
            continue;
        uint8_t m[14];
        meta_put(m, (uint16_t)(p->st.st_mode & 07777), &p->st.st_mtim);
        if (fc_send_all(&j->c, FT_META, m, sizeof m, p->path, strlen(p->path)) != 0) {
            j->broken = true;
            break;
        }
        metas++;
    }
    for (unsigned i = 0; i < metas && !j->broken; i++)
        (void)answer(j, "META");
    /* Emptied before the files go again (put_file flushes, finding none). */
    b->n = 0;
    unsigned ndfd = b->ndfd;
    int dfd[BATCH_FILES];
    memcpy(dfd, b->dfd, sizeof dfd);
    b->ndfd = 0;
    for (unsigned i = 0; i < n && !j->broken; i++) {
        pend *p = &b->v[i];
        if (p->name[0] != '\0' && p->state == P_CHANGED) {
            char name[FILES_NAME_MAX + 1], path[FILES_PATH_MAX + 1], shown[PATH_MAX];
            snprintf(name, sizeof name, "%s", p->name);
            snprintf(path, sizeof path, "%s", p->path);
            snprintf(shown, sizeof shown, "%s", p->shown);
            put_file(j, dfd[p->dir], name, path, shown);
        }
    }
    for (unsigned i = 0; i < ndfd; i++)
        close(dfd[i]);
}

/* Room for one more owed answer (flushing when full). */
static pend *batch_slot(tjob *j)
{
    if (j->pb == NULL && (j->pb = calloc(1, sizeof *j->pb)) == NULL) {
        fail(j, "out of memory");
        return NULL;
    }
    if (j->pb->n == BATCH_FILES)
        batch_flush(j);
    if (j->broken)
        return NULL;
    pend *p = &j->pb->v[j->pb->n];
    memset(p->name, 0, sizeof p->name);
    p->what = NULL;
    return p;
}

/* Sends a small file of the directory dfd now; its answer is owed. */
static void batch_file(tjob *j, int dfd, const ent *l, const char *path, const char *shown)
{
    pend *p = batch_slot(j);
    if (p == NULL)
        return;
    batch *b = j->pb;
    if (b->ndfd == 0 || b->gen != j->dirgen) {
        int d = fcntl(dfd, F_DUPFD_CLOEXEC, 3);
        if (d < 0) {
            fail(j, "cannot send %s: %s", shown, strerror(errno));
            return;
        }
        b->dfd[b->ndfd++] = d;
        b->gen = j->dirgen;
    }
    snprintf(p->name, sizeof p->name, "%s", l->name);
    p->dir = b->ndfd - 1;
    snprintf(p->path, sizeof p->path, "%s", path);
    snprintf(p->shown, sizeof p->shown, "%s", shown);
    b->n++;
    j->tp_name = p->path;
    tp_draw(j, 0, false);
    (void)batch_send(j, b->dfd[p->dir], p);
}

/* Sends MKDIR (mode, m: 2 bytes) or META (14 bytes) now; its DONE is owed. */
static void batch_req(tjob *j, uint8_t type, const uint8_t *m, size_t mlen, const char *path)
{
    pend *p = batch_slot(j);
    if (p == NULL)
        return;
    p->what = type == FT_MKDIR ? "MKDIR" : "META";
    j->pb->n++;
    if (fc_send_all(&j->c, type, m, mlen, path, strlen(path)) != 0)
        j->broken = true;
}

static void owe_meta(tjob *j, const char *path, uint16_t mode, const struct timespec *t)
{
    uint8_t m[14];
    meta_put(m, mode, t);
    batch_req(j, FT_META, m, sizeof m, path);
}

/* Makes the server's dir rpath match the local directory dfd. Returns true
 * when it changed something inside (so the directory's mtime is set again). */
static bool put_dir(tjob *j, int dfd, const char *rpath, const char *lpath, bool exists, int depth)
{
    ents L = {0}, R = {0};
    j->dirgen++; /* files from here on are read through dfd */
    bool changed = false;
    int lr = l_list(dfd, &L);
    if (lr < 0) {
        fail(j, "cannot read the directory %s: %s", lpath, strerror(-lr));
        goto out;
    }
    bool notdir = false;
    if (exists && r_list(j, rpath, &R, &notdir) < 0)
        goto out;
    /* Deletions first: a name that changes type needs its old self gone. */
    for (size_t i = 0; i < R.n && !j->broken; i++) {
        ent *r = &R.v[i], *l = ents_find(&L, r->name);
        bool retype = l != NULL && l->type != 0 && l->type != r->type;
        if ((l == NULL || l->type == 0) && !j->o->delete_extra)
            continue;
        if (l != NULL && !retype)
            continue;
        char p[FILES_PATH_MAX + 1];
        if (join(p, sizeof p, rpath, r->name) < 0)
            continue;
        if (!retype) {
            plan(j, "delete", p);
            j->deleted++;
        }
        changed = true;
        r->type = 0; /* gone (or about to be) */
        if (!j->o->dry_run)
            (void)r_delete(j, p);
    }
    for (size_t i = 0; i < L.n && !j->broken; i++) {
        ent *l = &L.v[i], *r = ents_find(&R, l->name);
        if (r != NULL && r->type == 0)
            r = NULL;
        char p[FILES_PATH_MAX + 1], lp[PATH_MAX];
        char why[PROTO_ERROR_TEXT_MAX];
        if (join(lp, sizeof lp, lpath, l->name) < 0 || join(p, sizeof p, rpath, l->name) < 0 ||
            files_path_check(p, strlen(p), false, why, sizeof why) < 0) {
            fail(j, "%s: cannot be sent: %s", lp, j->o->dry_run ? "path too long" : why);
            continue;
        }
        if (l->type == 0) {
            struct stat st;
            mode_t m = fstatat(dfd, l->name, &st, AT_SYMLINK_NOFOLLOW) == 0 ? st.st_mode : 0;
            if (j->tp_drawn)
                fputs("\r\033[K", stderr);
            cli_err("warning: skipping %s: %s", lp, kind_name(m));
            continue;
        }
        if (l->type == 'f') {
            bool same = r != NULL && r->size == l->size && same_time(&r->mtime, &l->mtime);
            if (same && j->o->checksum) {
                int fd = openat(dfd, l->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
                same = fd >= 0 && same_content(j, fd, l->size, p) == 1;
                if (fd >= 0)
                    close(fd);
            }
            if (same) {
                plan(j, "skip", p);
                j->skipped++;
                if (r->mode != l->mode && !j->o->dry_run)
                    owe_meta(j, p, l->mode, &l->mtime);
                continue;
            }
            plan(j, "send", p);
            changed = true;
            if (j->o->dry_run) {
                j->sent++;
                j->bytes += l->size;
            } else if (l->size <= BATCH_FILE_MAX) {
                batch_file(j, dfd, l, p, lp);
            } else {
                put_file(j, dfd, l->name, p, lp); /* alone (it flushes what is owed) */
            }
        } else if (l->type == 'l') {
            if (r != NULL && r->type == 'l' && strcmp(r->target, l->target) == 0 &&
                same_time(&r->mtime, &l->mtime)) {
                plan(j, "skip", p);
                j->skipped++;
                continue;
            }
            plan(j, "link", p);
            changed = true;
            j->sent++;
            if (!j->o->dry_run && r_symlink(j, p, l->target) == 0)
                owe_meta(j, p, 0, &l->mtime);
        } else {
            if (depth >= (int)TREE_DEPTH) {
                fail(j, "%s: deeper than %u directories", lp, TREE_DEPTH);
                continue;
            }
            int sub = files_walk_dir(dfd, l->name, false);
            if (sub < 0) {
                fail(j, "cannot open the directory %s: %s", lp, strerror(-sub));
                continue;
            }
            if (r == NULL) {
                plan(j, "mkdir", p);
                changed = true;
                if (!j->o->dry_run) {
                    /* Not waited for: what goes into it follows at once
                     * (a failure is reported when its answer is read). */
                    uint8_t m[2];
                    proto_put16(m, 0700);
                    batch_req(j, FT_MKDIR, m, sizeof m, p);
                }
            }
            bool inner = put_dir(j, sub, p, lp, r != NULL, depth + 1);
            close(sub);
            j->dirgen++; /* back to dfd */
            if (!j->o->dry_run && !j->broken &&
                (inner || r == NULL || r->mode != l->mode || !same_time(&r->mtime, &l->mtime)))
                owe_meta(j, p, l->mode, &l->mtime);
        }
    }
out:
    ents_free(&L);
    ents_free(&R);
    return changed;
}

/* ------------------------------------------------------------- get */

/* Downloads path into dfd/name (a hidden partial renamed over name once its
 * SHA-256 matches), with e's mode and mtime. */
static void get_file(tjob *j, int dfd, const char *name, const char *path, const ent *e,
                     const char *shown)
{
    j->tp_name = shown;
    tp_draw(j, 0, false);
    char pname[FILES_NAME_MAX + 1];
    snprintf(pname, sizeof pname, "%s%.200s.get", FILES_PARTIAL_PREFIX, name);
    int fd = openat(dfd, pname, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    struct stat pst;
    if (fd < 0 || fstat(fd, &pst) < 0 || !S_ISREG(pst.st_mode)) {
        fail(j, "cannot write %s: %s", shown, fd < 0 ? strerror(errno) : "not a regular file");
        if (fd >= 0)
            close(fd);
        return;
    }
    bool ok = false;
    uint64_t size = 0, pos = 0;
    struct stat tst;
    int base = -1;
    if (j->c.version >= 3 && e->size > FILES_CHUNK &&
        (pst.st_size > 0 ||
         (fstatat(dfd, name, &tst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(tst.st_mode) &&
          (uint64_t)tst.st_size == e->size &&
          (base = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)) >= 0))) {
        /* A cut run's partial, or a same-size local file: only the chunks
         * that differ come (section 9.11). */
        files_chunk_list R;
        uint64_t moved = 0;
        int rc = files_patch_get(&j->c, path, fd, base, j->buf, FILES_GET_CHUNK, &moved, &R);
        if (base >= 0)
            close(base);
        j->bytes += moved;
        if (rc == 0) {
            size = R.size;
            files_chunk_list_free(&R);
            goto place;
        }
        files_chunk_list_free(&R);
        if (rc < 0)
            j->broken = true;
        else
            j->failed++;
        goto out;
    }
    /* A partial left by a cut run is offered to the server by its hash:
     * it answers from = have when the bytes are right, else 0 (all again). */
    uint64_t have = (uint64_t)pst.st_size <= e->size ? (uint64_t)pst.st_size : 0;
    uint8_t head[8 + FILES_HASH];
    files_put64(head, have);
    if (EVP_DigestInit_ex(j->md, EVP_sha256(), NULL) != 1 ||
        files_hash_span(fd, 0, have, j->md, j->buf, FILES_GET_CHUNK) != 0) {
        have = 0;
        files_put64(head, 0);
        (void)EVP_DigestInit_ex(j->md, EVP_sha256(), NULL);
    }
    EVP_MD_CTX *tmp = EVP_MD_CTX_new();
    if (tmp == NULL || EVP_MD_CTX_copy_ex(tmp, j->md) != 1 ||
        EVP_DigestFinal_ex(tmp, head + 8, NULL) != 1 ||
        fc_send(&j->c, FT_GET, head, sizeof head, path, strlen(path)) != 0) {
        EVP_MD_CTX_free(tmp);
        j->broken = true;
        goto out;
    }
    EVP_MD_CTX_free(tmp);
    bool ready = false;
    for (;;) {
        uint8_t type;
        size_t len;
        if (fc_head(&j->c, &type, &len, "the download") < 0 || len > FILES_GET_CHUNK ||
            fc_body(&j->c, j->buf, len, "the download") < 0) {
            j->broken = true;
            goto out;
        }
        if (type == PT_ERROR) {
            fc_print_error(&j->c, j->buf, len);
            j->failed++;
            goto out;
        }
        if (!ready && type == FT_GET_READY && len == 16 &&
            (files_get64(j->buf + 8) == 0 || files_get64(j->buf + 8) == have)) {
            size = files_get64(j->buf);
            pos = files_get64(j->buf + 8);
            ready = true;
            if (pos == 0 && have > 0 &&
                (ftruncate(fd, 0) < 0 || EVP_DigestInit_ex(j->md, EVP_sha256(), NULL) != 1)) {
                j->broken = true;
                goto out;
            }
        } else if (ready && type == FT_DATA && len <= size - pos) {
            for (size_t w = 0; w < len;) {
                ssize_t n = pwrite(fd, j->buf + w, len - w, (off_t)(pos + w));
                if (n < 0 && errno == EINTR)
                    continue;
                if (n <= 0) {
                    /* The rest of this file still arrives: read and drop it. */
                    fail(j, "cannot write %s: %s", shown, n < 0 ? strerror(errno) : "no room");
                    ready = false;
                    break;
                }
                w += (size_t)n;
            }
            if (!ready) {
                pos = UINT64_MAX;
                continue;
            }
            if (EVP_DigestUpdate(j->md, j->buf, len) != 1)
                goto out;
            pos += len;
            j->bytes += len;
            tp_draw(j, pos, false);
        } else if (type == FT_GET_END && len == FILES_HASH) {
            if (pos == UINT64_MAX)
                goto out; /* a write failed: reported */
            uint8_t d[FILES_HASH];
            if (!ready || pos != size || EVP_DigestFinal_ex(j->md, d, NULL) != 1 ||
                memcmp(d, j->buf, FILES_HASH) != 0) {
                fail(j, "%s: the data did not match the server's SHA-256", shown);
                goto out;
            }
            break;
        } else if (pos == UINT64_MAX && type == FT_DATA) {
            continue;
        } else {
            cli_err("%s: protocol error: unexpected message 0x%02x in a download", j->c.addr, type);
            j->broken = true;
            goto out;
        }
    }
place:;
    uint16_t mask = j->o->keep_special ? 07777 : 0777;
    struct timespec ts[2] = {{0, UTIME_OMIT}, e->mtime};
    if (fchmod(fd, e->mode & mask) < 0 || fsync(fd) < 0 || futimens(fd, ts) < 0 ||
        renameat(dfd, pname, dfd, name) < 0) {
        fail(j, "cannot write %s: %s", shown, strerror(errno));
        goto out;
    }
    ok = true;
    j->sent++;
    j->done_bytes += size;
out:
    close(fd);
    /* A cut connection keeps the partial for the next run to resume;
     * a refused or corrupt file leaves nothing. */
    if (!ok && !j->broken)
        (void)unlinkat(dfd, pname, 0);
}

/* A link made under a hidden name and renamed over name. */
static int make_link(int dfd, const char *name, const char *target, const struct timespec *mt)
{
    char tmp[FILES_NAME_MAX + 1];
    snprintf(tmp, sizeof tmp, "%s%.200s.lnk", FILES_PARTIAL_PREFIX, name);
    (void)unlinkat(dfd, tmp, 0);
    if (symlinkat(target, dfd, tmp) < 0)
        return -errno;
    struct timespec ts[2] = {{0, UTIME_OMIT}, *mt};
    (void)utimensat(dfd, tmp, ts, AT_SYMLINK_NOFOLLOW);
    if (renameat(dfd, tmp, dfd, name) < 0) {
        int err = -errno;
        (void)unlinkat(dfd, tmp, 0);
        return err;
    }
    return 0;
}

static void set_dir_meta(tjob *j, int fd, const ent *r)
{
    uint16_t mask = j->o->keep_special ? 07777 : 0777;
    struct timespec ts[2] = {{0, UTIME_OMIT}, r->mtime};
    (void)fchmod(fd, r->mode & mask);
    (void)futimens(fd, ts);
}

/* Makes the local directory dfd match the server's rpath. */
static void get_dir(tjob *j, int dfd, const char *rpath, const char *lpath, int depth)
{
    ents L = {0}, R = {0};
    bool notdir = false;
    int rc = r_list(j, rpath, &R, &notdir);
    if (rc <= 0) {
        if (rc == 0)
            fail(j, "%s: %s on the server", rpath[0] ? rpath : ".",
                 notdir ? "not a directory" : "no such directory");
        goto out;
    }
    int lr = l_list(dfd, &L);
    if (lr < 0) {
        fail(j, "cannot read the directory %s: %s", lpath, strerror(-lr));
        goto out;
    }
    for (size_t i = 0; i < L.n && j->o->delete_extra; i++) {
        ent *l = &L.v[i];
        if (ents_find(&R, l->name) != NULL)
            continue;
        char lp[PATH_MAX];
        if (join(lp, sizeof lp, lpath, l->name) < 0)
            continue;
        plan(j, "delete", lp);
        j->deleted++;
        l->type = 0;
        if (!j->o->dry_run) {
            int err = files_remove_tree(dfd, l->name);
            if (err < 0)
                fail(j, "cannot delete %s: %s", lp, strerror(-err));
        }
    }
    for (size_t i = 0; i < R.n && !j->broken; i++) {
        const ent *r = &R.v[i];
        ent *l = ents_find(&L, r->name);
        char p[FILES_PATH_MAX + 1], lp[PATH_MAX];
        if (join(p, sizeof p, rpath, r->name) < 0 || join(lp, sizeof lp, lpath, r->name) < 0) {
            fail(j, "%s/%s: path too long", lpath, r->name);
            continue;
        }
        bool same_type = l != NULL && l->type == r->type;
        if (r->type == 'f') {
            bool same = same_type && l->size == r->size && same_time(&l->mtime, &r->mtime);
            if (same && j->o->checksum) {
                int fd = openat(dfd, r->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
                same = fd >= 0 && same_content(j, fd, r->size, p) == 1;
                if (fd >= 0)
                    close(fd);
            }
            if (same) {
                plan(j, "skip", lp);
                j->skipped++;
                uint16_t mask = j->o->keep_special ? 07777 : 0777;
                if (l->mode != (r->mode & mask) && !j->o->dry_run)
                    (void)fchmodat(dfd, r->name, r->mode & mask, 0);
                continue;
            }
            plan(j, "receive", lp);
            if (j->o->dry_run) {
                j->sent++;
                j->bytes += r->size;
                continue;
            }
            if (l != NULL && l->type == 'd') {
                int err = files_remove_tree(dfd, r->name);
                if (err < 0) {
                    fail(j, "cannot replace the directory %s: %s", lp, strerror(-err));
                    continue;
                }
            }
            get_file(j, dfd, r->name, p, r, lp);
        } else if (r->type == 'l') {
            if (same_type && l->target && strcmp(l->target, r->target) == 0 &&
                same_time(&l->mtime, &r->mtime)) {
                plan(j, "skip", lp);
                j->skipped++;
                continue;
            }
            plan(j, "link", lp);
            j->sent++;
            if (j->o->dry_run)
                continue;
            if (l != NULL && l->type == 'd')
                (void)files_remove_tree(dfd, r->name);
            int err = make_link(dfd, r->name, r->target, &r->mtime);
            if (err < 0)
                fail(j, "cannot make the link %s: %s", lp, strerror(-err));
        } else {
            if (depth >= (int)TREE_DEPTH) {
                fail(j, "%s: deeper than %u directories", lp, TREE_DEPTH);
                continue;
            }
            if (!same_type) {
                plan(j, "mkdir", lp);
                if (j->o->dry_run)
                    continue; /* nothing below it exists here yet */
                if (l != NULL && l->type != 0) {
                    int err = files_remove_tree(dfd, r->name);
                    if (err < 0) {
                        fail(j, "cannot replace %s: %s", lp, strerror(-err));
                        continue;
                    }
                }
                if (mkdirat(dfd, r->name, 0700) < 0 && errno != EEXIST) {
                    fail(j, "cannot make the directory %s: %s", lp, strerror(errno));
                    continue;
                }
            }
            /* Never through a link: a hostile server's "x -> /etc" sent
             * earlier and "x" as a directory now ends here (ELOOP). */
            int sub = files_walk_dir(dfd, r->name, false);
            if (sub < 0) {
                fail(j, "cannot open the directory %s: %s", lp,
                     sub == -ELOOP ? "it is a symbolic link" : strerror(-sub));
                continue;
            }
            get_dir(j, sub, p, lp, depth + 1);
            if (!j->o->dry_run)
                set_dir_meta(j, sub, r);
            close(sub);
        }
    }
out:
    ents_free(&L);
    ents_free(&R);
}

/* ------------------------------------------------------------- runs */

static void summary(const tjob *j)
{
    double secs = (double)(files_now_ms() - j->t0) / 1000.0;
    double rate = secs > 0 ? (double)j->bytes / secs : 0;
    if (j->o->json)
        printf("{\"sent\":%llu,\"skipped\":%llu,\"deleted\":%llu,\"failed\":%llu,"
               "\"bytes\":%llu,\"seconds\":%.3f,\"rate\":%.0f,\"dry_run\":%s}\n",
               (unsigned long long)j->sent, (unsigned long long)j->skipped,
               (unsigned long long)j->deleted, (unsigned long long)j->failed,
               (unsigned long long)j->bytes, secs, rate, j->o->dry_run ? "true" : "false");
    else
        printf("%s%llu files sent, %llu skipped, %llu deleted, %llu failed, %llu bytes in %.2f s "
               "(%.1f MB/s)\n",
               j->o->dry_run ? "dry run: " : "", (unsigned long long)j->sent,
               (unsigned long long)j->skipped, (unsigned long long)j->deleted,
               (unsigned long long)j->failed, (unsigned long long)j->bytes, secs, rate / 1e6);
    fflush(stdout);
}

static int job_start(tjob *j, files_cli *o)
{
    memset(j, 0, sizeof *j);
    j->o = o;
    j->t0 = files_now_ms();
    j->md = EVP_MD_CTX_new();
    j->buf = malloc(FILES_GET_CHUNK);
    if (j->md == NULL || j->buf == NULL) {
        cli_err("out of memory");
        return -1;
    }
    /* Version 3 for PATCH and GET_RANGE (section 9.11); an older server is dialled
     * again with 1 and gets whole files. */
    o->offer = FILES_VERSION;
    if (fc_open(&j->c, o) < 0)
        return -1;
    j->tp_on = progress_wanted(o->quiet) && !o->dry_run;
    return 0;
}

/* Ends a run: the summary (print) and the exit status (started: the
 * connection was made, so a clean count means the destination matches). */
static int job_end_as(tjob *j, bool started, bool print)
{
    batch_flush(j); /* the last answers owed (or, when broken, the directories held) */
    free(j->pb);
    j->pb = NULL;
    if (j->tp_drawn) {
        j->tp_name = NULL;
        tp_draw(j, 0, true);
        fputc('\n', stderr);
    }
    if (started && print)
        summary(j);
    fc_close(&j->c);
    EVP_MD_CTX_free(j->md);
    free(j->buf);
    return started && j->failed == 0 && !j->broken ? EXIT_OK : EXIT_RUNTIME;
}

static int job_end(tjob *j, bool started) { return job_end_as(j, started, started); }

/* REMOTE as a path: "." and "" are the root. */
static int remote_arg(const char *r, char *out, size_t cap)
{
    size_t n = strlen(r);
    while (n > 0 && r[n - 1] == '/')
        n--;
    if ((n == 1 && r[0] == '.') || n == 0) {
        out[0] = '\0';
        return 0;
    }
    char why[PROTO_ERROR_TEXT_MAX];
    if (n >= cap || files_path_check(r, n, false, why, sizeof why) < 0) {
        cli_err("bad REMOTE \"%s\": %s", r, n >= cap ? "too long" : why);
        return -1;
    }
    memcpy(out, r, n);
    out[n] = '\0';
    return 0;
}

/* `put ADDR - REMOTE`: standard input streamed (a PUT of FILES_SIZE_STREAM
 * with a fresh id: nothing to resume), verified by the SHA-256 at the end. */
static int put_stdin(files_cli *o)
{
    char rp[FILES_PATH_MAX + 1];
    if (o->nargs != 2 || remote_arg(o->args[1], rp, sizeof rp) < 0 || rp[0] == '\0' ||
        o->args[1][strlen(o->args[1]) - 1] == '/') {
        cli_err("put - needs a REMOTE file name: sockit put ADDR - REMOTE");
        return EXIT_USAGE;
    }
    tjob j;
    bool started = job_start(&j, o) == 0;
    if (!started)
        return job_end(&j, false);
    uint8_t head[8 + FILES_ID], msg[64], type;
    size_t len;
    int code = 0;
    files_put64(head, FILES_SIZE_STREAM);
    if (RAND_bytes(head + 8, FILES_ID) != 1 || EVP_DigestInit_ex(j.md, EVP_sha256(), NULL) != 1 ||
        fc_send(&j.c, FT_PUT, head, sizeof head, rp, strlen(rp)) != 0)
        goto broken;
    int rc = fc_msg(&j.c, &type, msg, sizeof msg, &len, &code, "the answer to PUT");
    if (rc == -2) {
        j.failed++;
        return job_end_as(&j, true, o->json);
    }
    uint8_t zero[8] = {0};
    if (rc < 0 || type != FT_PUT_READY || fc_send(&j.c, FT_PUT_FROM, zero, 8, NULL, 0) != 0)
        goto broken;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, j.buf, FILES_PUT_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            cli_err("cannot read standard input: %s", strerror(errno));
            goto broken;
        }
        if (n == 0)
            break;
        if (EVP_DigestUpdate(j.md, j.buf, (size_t)n) != 1)
            goto broken;
        rc = fc_pending(&j.c) ? 1 : fc_send(&j.c, FT_DATA, j.buf, (size_t)n, NULL, 0);
        if (rc != 0) {
            if (rc > 0 && fc_msg(&j.c, &type, msg, sizeof msg, &len, &code, "the upload") == -2) {
                j.failed++;
                return job_end_as(&j, true, o->json);
            }
            goto broken;
        }
        j.bytes += (uint64_t)n;
        tp_draw(&j, j.bytes, false);
    }
    uint8_t digest[FILES_HASH];
    if (EVP_DigestFinal_ex(j.md, digest, NULL) != 1 ||
        fc_send(&j.c, FT_PUT_END, digest, sizeof digest, NULL, 0) != 0)
        goto broken;
    rc = fc_msg(&j.c, &type, msg, sizeof msg, &len, &code, "the server's check of the upload");
    if (rc == -2) {
        j.failed++;
        return job_end_as(&j, true, o->json);
    }
    if (rc < 0 || type != FT_PUT_OK || len != 8 + FILES_HASH || files_get64(msg) != j.bytes ||
        memcmp(msg + 8, digest, FILES_HASH) != 0) {
        cli_err("%s: the server's confirmation does not match what was sent", j.c.addr);
        goto broken;
    }
    j.sent = 1;
    return job_end_as(&j, true, o->json);
broken:
    j.broken = true;
    return job_end_as(&j, true, o->json);
}

int files_tree_put(files_cli *o)
{
    if (strcmp(o->args[0], "-") == 0 && !o->recursive)
        return put_stdin(o);
    const char *last = o->args[o->nargs - 1];
    bool many = o->nargs > 2 || (o->nargs == 2 && !o->recursive && last[strlen(last) - 1] == '/');
    int nsrc = o->recursive ? 1 : (many ? o->nargs - 1 : 1);
    if (o->recursive && o->nargs > 2) {
        cli_err("put -r takes one LOCAL_DIR and at most one REMOTE_DIR");
        return EXIT_USAGE;
    }
    if (o->nargs > 2 && last[strlen(last) - 1] != '/') {
        cli_err("\"%s\": several files go into a REMOTE_DIR/ (the last argument ends in '/')",
                last);
        return EXIT_USAGE;
    }
    char rdir[FILES_PATH_MAX + 1];
    char base[FILES_NAME_MAX + 1], real[PATH_MAX];
    files_basename(o->args[0], base, sizeof base);
    /* "put -r ADDR ." is the directory's own name, not the server's root. */
    if ((strcmp(base, ".") == 0 || strcmp(base, "..") == 0 || base[0] == '\0') &&
        realpath(o->args[0], real) != NULL)
        files_basename(real, base, sizeof base);
    if (o->nargs >= 2 && remote_arg(last, rdir, sizeof rdir) < 0)
        return EXIT_USAGE;
    if (o->nargs < 2 && remote_arg(o->recursive ? base : "", rdir, sizeof rdir) < 0)
        return EXIT_USAGE;
    int top = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (top < 0) {
        cli_err("cannot open the current directory: %s", strerror(errno));
        return EXIT_RUNTIME;
    }
    tjob j;
    bool started = job_start(&j, o) == 0;
    if (started && o->recursive) {
        int dfd = open(o->args[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct stat st;
        if (dfd < 0 || fstat(dfd, &st) < 0) {
            fail(&j, "cannot open the directory %s: %s", o->args[0], strerror(errno));
        } else {
            ents R = {0};
            bool notdir = false;
            int ex = rdir[0] ? r_list(&j, rdir, &R, &notdir) : 1;
            ents_free(&R);
            if (ex == 0 && notdir) {
                fail(&j, "%s exists on the server and is not a directory", rdir);
            } else if (ex >= 0) {
                if (ex == 0)
                    plan(&j, "mkdir", rdir);
                if (ex == 0 && !o->dry_run && r_mkdir(&j, rdir, 0700) != 0) {
                    /* reported */
                } else {
                    if (j.tp_on)
                        tp_count(&j, dfd, 0);
                    put_dir(&j, dfd, rdir, o->args[0], ex == 1, 0);
                    batch_flush(&j);
                    if (rdir[0] && !o->dry_run && !j.broken)
                        (void)r_meta(&j, rdir, (uint16_t)(st.st_mode & 07777), &st.st_mtim);
                }
            }
        }
        if (dfd >= 0)
            close(dfd);
    } else if (started) {
        for (int i = 0; i < nsrc && !j.broken; i++) {
            const char *l = o->args[i];
            char b[FILES_NAME_MAX + 1], p[FILES_PATH_MAX + 1];
            files_basename(l, b, sizeof b);
            if (!many && o->nargs == 2) {
                /* put ADDR LOCAL REMOTE (--json, --dry-run...): REMOTE itself */
                memcpy(p, rdir, strlen(rdir) + 1);
            } else if (join(p, sizeof p, rdir, b) < 0) {
                fail(&j, "%s: the remote path is too long", l);
                continue;
            }
            plan(&j, "send", p);
            if (!o->dry_run)
                put_file(&j, top, l, p, l);
        }
    }
    close(top);
    return job_end(&j, started);
}

int files_tree_get(files_cli *o)
{
    const char *last = o->args[o->nargs - 1];
    bool many = o->nargs > 2 || (o->nargs == 2 && !o->recursive && last[strlen(last) - 1] == '/');
    if (o->recursive && o->nargs > 2) {
        cli_err("get -r takes one REMOTE_DIR and at most one LOCAL_DIR");
        return EXIT_USAGE;
    }
    if (o->nargs > 2 && last[strlen(last) - 1] != '/') {
        cli_err("\"%s\": several files go into a LOCAL_DIR/ (the last argument ends in '/')", last);
        return EXIT_USAGE;
    }
    char rdir[FILES_PATH_MAX + 1];
    if (remote_arg(o->args[0], rdir, sizeof rdir) < 0)
        return EXIT_USAGE;
    char base[FILES_NAME_MAX + 1];
    files_basename(rdir[0] ? rdir : ".", base, sizeof base);
    const char *ldir = o->nargs >= 2 ? last : (o->recursive ? base : ".");
    /* get ADDR REMOTE LOCAL (--json, --dry-run...): LOCAL is the file's
     * name unless it is a directory. */
    char lparent[PATH_MAX], lname[FILES_NAME_MAX + 1] = "";
    struct stat lst;
    if (!o->recursive && !many && o->nargs == 2 &&
        (stat(last, &lst) < 0 || !S_ISDIR(lst.st_mode))) {
        files_basename(last, lname, sizeof lname);
        snprintf(lparent, sizeof lparent, "%s", last);
        char *sl = strrchr(lparent, '/');
        if (sl == NULL)
            snprintf(lparent, sizeof lparent, ".");
        else if (sl == lparent)
            sl[1] = '\0';
        else
            *sl = '\0';
        ldir = lparent;
    }
    if (o->recursive && !o->dry_run && mkdir(ldir, 0700) < 0 && errno != EEXIST) {
        cli_err("cannot make the directory %s: %s", ldir, strerror(errno));
        return EXIT_RUNTIME;
    }
    int dfd = open(ldir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 && !(o->dry_run && errno == ENOENT)) {
        cli_err("cannot open the directory %s: %s", ldir, strerror(errno));
        return EXIT_RUNTIME;
    }
    tjob j;
    bool started = job_start(&j, o) == 0;
    if (started && o->recursive) {
        if (dfd < 0) {
            /* dry run into a directory that is not there: list what would come */
            int tmp = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            plan(&j, "mkdir", ldir);
            if (tmp >= 0) {
                ents R = {0};
                bool nd;
                if (r_list(&j, rdir, &R, &nd) == 1)
                    for (size_t i = 0; i < R.n; i++) {
                        char lp[PATH_MAX];
                        if (join(lp, sizeof lp, ldir, R.v[i].name) == 0)
                            plan(&j, "receive", lp);
                        j.sent++;
                    }
                ents_free(&R);
                close(tmp);
            }
        } else {
            get_dir(&j, dfd, rdir, ldir, 0);
            if (!o->dry_run && !j.broken && rdir[0]) {
                ents R = {0};
                bool nd;
                char parent[FILES_PATH_MAX + 1];
                snprintf(parent, sizeof parent, "%s", rdir);
                char *slash = strrchr(parent, '/');
                if (slash)
                    *slash = '\0';
                else
                    parent[0] = '\0';
                const char *nm = slash ? slash + 1 : rdir;
                if (r_list(&j, parent, &R, &nd) == 1) {
                    const ent *r = ents_find(&R, nm);
                    if (r != NULL && r->type == 'd')
                        set_dir_meta(&j, dfd, r);
                }
                ents_free(&R);
            }
        }
    } else if (started) {
        (void)many;
        for (int i = 0; i < o->nargs - 1 && !j.broken && dfd >= 0; i++) {
            char rp[FILES_PATH_MAX + 1];
            if (remote_arg(o->args[i], rp, sizeof rp) < 0 || rp[0] == '\0') {
                j.failed++;
                continue;
            }
            char parent[FILES_PATH_MAX + 1];
            snprintf(parent, sizeof parent, "%s", rp);
            char *slash = strrchr(parent, '/');
            if (slash)
                *slash = '\0';
            else
                parent[0] = '\0';
            const char *nm = slash ? rp + (slash - parent) + 1 : rp;
            ents R = {0};
            bool nd;
            if (r_list(&j, parent, &R, &nd) == 1) {
                const ent *r = ents_find(&R, nm);
                if (r == NULL || r->type != 'f') {
                    fail(&j, "%s: %s on the server", rp, r ? "not a regular file" : "not found");
                } else {
                    const char *to = lname[0] ? lname : nm;
                    char lp[PATH_MAX];
                    (void)join(lp, sizeof lp, ldir, to);
                    plan(&j, "receive", lp);
                    if (!o->dry_run)
                        get_file(&j, dfd, to, rp, r, lp);
                }
            } else {
                fail(&j, "%s: not found on the server", rp);
            }
            ents_free(&R);
        }
    }
    if (dfd >= 0)
        close(dfd);
    return job_end(&j, started);
}
