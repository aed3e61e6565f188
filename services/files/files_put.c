/* files_put.c — uploads (PUT) of the files service. What arrives is
 * written to a hidden partial file beside its target, named after the
 * client's upload id and locked (flock) while it is written; its SHA-256
 * must match the client's before it is fsync'ed, renamed over the target
 * and its directory fsync'ed: a file appears under its name only whole and
 * verified. A vanished client leaves the partial for a resume; an error
 * (disk full, size or checksum mismatch) removes it. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "files_int.h"

/* Hashes the prefix now if the budget allows (else a timer continues it). */
static void hash_now(fsess *s)
{
    int rc;
    if (files_hash_step(s, &rc))
        files_put_hashed(s, rc);
}

/* Tells the client why its upload ends, removes the partial when what it
 * holds is worthless (disk full, wrong size or checksum), and ignores the
 * rest of the upload's messages. */
void files_put_fail(fsess *s, bool remove, int code, const char *fmt, ...)
{
    char text[PROTO_ERROR_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    files_send_error(s, code, "%s", text);
    if (remove && s->dirfd >= 0 && s->fd >= 0)
        (void)unlinkat(s->dirfd, s->pname, 0); /* under our lock: still our file */
    /* Nothing of this upload is left: neither are the directories it made
     * on the way (those still empty). A partial kept for a resume keeps
     * them, and so does a resume's failure in a later connection, which
     * cannot tell them from directories someone made on purpose. */
    if ((remove || s->fd < 0) && s->made != FILES_MADE_NONE && s->path != NULL)
        files_remove_made(&s->svc->root, s->path, s->made);
    sk_log(SK_LOG_WARN, "%s %s put refused: %s%s", s->ctx->name, sk_conn_peer(s->conn), text,
           remove && s->fd >= 0 ? " (partial file removed)" : "");
    files_xfer_end(s, false);
    s->state = FS_PUT_SKIP;
    files_idle_update(s);
}

/* The partial's name: hidden, beside its target, different for every
 * (upload id, name) pair, so that uploads of one name from different
 * clients never share one, and one client's retry finds its own. */
static void partial_name(fsess *s, const uint8_t id[FILES_ID])
{
    uint8_t d[FILES_HASH];
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    size_t nlen = strlen(s->name);
    bool ok = m != NULL && EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(m, id, FILES_ID) == 1 && EVP_DigestUpdate(m, s->name, nlen) == 1 &&
              EVP_DigestFinal_ex(m, d, NULL) == 1;
    EVP_MD_CTX_free(m);
    if (!ok)
        memset(d, 0, sizeof d);
    char tag[17];
    files_hex8(tag, d);
    /* 16 + 200 + 1 + 16 bytes: within NAME_MAX however long the name. */
    snprintf(s->pname, sizeof s->pname, "%s%.200s.%s", FILES_PARTIAL_PREFIX, s->name, tag);
}

/* Removes the least recently written partial of the directory that no
 * upload holds (its lock is free), other than keep: a full directory makes
 * room for a new upload instead of refusing it, so abandoned partials
 * cannot lock a directory until they expire. Returns true if one went. */
static bool evict_partial(DIR *d, int dirfd, const char *keep)
{
    char victim[FILES_NAME_MAX + 1] = "";
    struct timespec oldest = {0, 0};
    struct dirent *e;
    rewinddir(d);
    for (unsigned seen = 0; (e = readdir(d)) != NULL && seen < 4 * FILES_PARTIALS_PER_DIR;) {
        if (strncmp(e->d_name, FILES_PARTIAL_PREFIX, sizeof FILES_PARTIAL_PREFIX - 1) != 0 ||
            strcmp(e->d_name, keep) == 0)
            continue;
        seen++;
        struct stat st;
        if (fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        if (victim[0] == '\0' || st.st_mtim.tv_sec < oldest.tv_sec ||
            (st.st_mtim.tv_sec == oldest.tv_sec && st.st_mtim.tv_nsec < oldest.tv_nsec)) {
            /* Only one no upload holds: try its lock now (released at once). */
            int fd = openat(dirfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0)
                continue;
            bool free_now = flock(fd, LOCK_EX | LOCK_NB) == 0;
            close(fd);
            if (!free_now)
                continue;
            snprintf(victim, sizeof victim, "%s", e->d_name);
            oldest = st.st_mtim;
        }
    }
    if (victim[0] == '\0')
        return false;
    /* Locked again for the removal, and checked to be still the file we
     * looked at: an upload may have taken it meanwhile. */
    int fd = openat(dirfd, victim, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat a, b;
    bool ok = flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &a) == 0 &&
              fstatat(dirfd, victim, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_ino == b.st_ino &&
              a.st_dev == b.st_dev && unlinkat(dirfd, victim, 0) == 0;
    close(fd);
    if (ok)
        sk_log(SK_LOG_INFO,
               "files: %u unfinished uploads in one directory: removed the least "
               "recently written one to make room",
               FILES_PARTIALS_PER_DIR);
    return ok;
}

/* More than FILES_PARTIALS_PER_DIR partial files in the directory, even
 * after evicting the least recently written unused one? Read through a
 * fresh descriptor of it (the offset is not shared). */
static bool too_many_partials(int dirfd, const char *keep)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return false;
    }
    unsigned n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n <= FILES_PARTIALS_PER_DIR)
        if (strncmp(e->d_name, FILES_PARTIAL_PREFIX, sizeof FILES_PARTIAL_PREFIX - 1) == 0)
            n++;
    bool full = n > FILES_PARTIALS_PER_DIR && !evict_partial(d, dirfd, keep);
    closedir(d);
    return full;
}

/* Opens (or creates: *made) and locks the partial. Returns 0, or an
 * ERROR code with why filled. */
static int open_partial(fsess *s, const char *what, char *why, size_t whylen, bool *made)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        bool created = true;
        /* O_NOFOLLOW: a link planted under the partial's name must not
         * lead our writes anywhere. A file we create is a regular file:
         * no O_NONBLOCK needed (nor a look at what it is). */
        int fd =
            openat(s->dirfd, s->pname, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 && errno == EEXIST) {
            created = false;
            fd = openat(s->dirfd, s->pname, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
            if (fd < 0 && errno == ENOENT)
                continue; /* removed between the two opens */
        }
        if (fd < 0)
            return files_open_error(-errno, what, why, whylen);
        struct stat a, b;
        /* O_NONBLOCK (a FIFO must not hang us) is on only for one we
         * found. */
        if (fstat(fd, &a) < 0 || !S_ISREG(a.st_mode) || (!created && !files_set_blocking(fd))) {
            close(fd);
            snprintf(why, whylen,
                     "%.100s: something that is not a file is in the way of its "
                     "partial upload",
                     what);
            return FE_TYPE;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK) {
                snprintf(why, whylen,
                         "%.100s: an upload of this file from this client is already "
                         "in progress",
                         what);
                return PE_BUSY;
            }
            return files_open_error(-e, what, why, whylen);
        }
        /* Locked. The name may meanwhile have been removed (the sweeper,
         * an upload that finished) and made again by someone else: only a
         * partial that is still under its name is ours to use. */
        if (fstatat(s->dirfd, s->pname, &b, AT_SYMLINK_NOFOLLOW) < 0 || a.st_ino != b.st_ino ||
            a.st_dev != b.st_dev) {
            close(fd);
            continue;
        }
        /* A fresh upload's partial (no resume) lives only while it is
         * written (files_xfer_end removes it if the client goes): it
         * takes no place among the directory's waiting partials. */
        if (created && !s->fresh && too_many_partials(s->dirfd, s->pname)) {
            (void)unlinkat(s->dirfd, s->pname, 0);
            close(fd);
            snprintf(why, whylen,
                     "too many unfinished uploads in progress in this directory "
                     "(%u); try again later",
                     FILES_PARTIALS_PER_DIR);
            return PE_BUSY;
        }
        s->fd = fd;
        *made = created;
        return 0;
    }
    snprintf(why, whylen, "%.100s: its partial upload kept changing; try again", what);
    return FE_IO;
}

static void put_ready(fsess *s)
{
    uint8_t msg[1 + 8 + FILES_HASH];
    msg[0] = FT_PUT_READY;
    files_put64(msg + 1, s->have);
    if (!files_digest_so_far(s, msg + 9)) {
        files_put_fail(s, false, FE_IO, "the server could not hash");
        return;
    }
    (void)sk_conn_send_msg(s->conn, msg, sizeof msg);
    s->state = FS_PUT_FROM;
}

void files_put_hashed(fsess *s, int rc)
{
    if (s->verifying) {
        files_patch_verified(s, rc);
        return;
    }
    /* The read buffer served the prefix only: the rest arrives in DATA. */
    free(s->buf);
    s->buf = NULL;
    if (rc != 0) {
        char what[160];
        files_describe(what, sizeof what, s->path);
        files_put_fail(s, true, FE_IO, "reading the partial upload of %s: %s", what,
                       rc > 0 ? "it shrank" : strerror(-rc));
        return;
    }
    put_ready(s);
}

bool files_put_open(fsess *s, const uint8_t *body, size_t len, bool patch)
{
    files_svc *svc = s->svc;
    s->state = FS_PUT_SKIP; /* until the upload is accepted */
    if (len < 8 + FILES_ID || (patch && files_get64(body) == FILES_SIZE_STREAM)) {
        files_fail(s, patch ? "malformed PATCH" : "malformed PUT");
        return false;
    }
    uint64_t size = files_get64(body);
    const uint8_t *id = body + 8;
    const uint8_t *path = body + 8 + FILES_ID;
    size_t plen = len - 8 - FILES_ID;
    char why[PROTO_ERROR_TEXT_MAX], what[160];
    if (files_path_check((const char *)path, plen, false, why, sizeof why) < 0) {
        files_refuse_path(s, "put", why);
        return false;
    }
    if (svc->o.read_only) {
        files_send_error(s, FE_READONLY,
                         "this server is read-only (--read-only): uploads are "
                         "refused");
        return false;
    }
    bool stream = size == FILES_SIZE_STREAM;
    if (!stream &&
        (size > (uint64_t)INT64_MAX || (svc->o.max_file_size && size > svc->o.max_file_size))) {
        files_send_error(s, FE_TOOBIG,
                         "%llu bytes is more than this server takes (%llu, "
                         "--max-file-size)",
                         (unsigned long long)size,
                         (unsigned long long)(svc->o.max_file_size ? svc->o.max_file_size
                                                                   : (uint64_t)INT64_MAX));
        return false;
    }
    if (!files_xfer_begin(s, FX_PUT, path, plen))
        return false;
    s->size = size;
    files_describe(what, sizeof what, s->path);
    int dfd = files_open_parent_made(&svc->root, s->path, true, &s->name, &s->made);
    if (dfd < 0) {
        int code = files_open_error(dfd, what, why, sizeof why);
        files_put_fail(s, false, code, "%s", why);
        return false;
    }
    s->dirfd = dfd;
    struct stat st;
    if (fstatat(dfd, s->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode)) {
        files_put_fail(
            s, false, FE_TYPE,
            S_ISDIR(st.st_mode)
                ? "%s is a directory"
                : "%s exists and is not a regular file (a link, FIFO, device or socket); "
                  "it is not replaced",
            what);
        return false;
    }
    partial_name(s, id);
    /* An all-zero id asks for no resume (a tree's small files, sent
     * without waiting for PUT_READY): a partial of that name starts over. */
    static const uint8_t fresh_id[FILES_ID];
    bool fresh = !patch && (stream || memcmp(id, fresh_id, FILES_ID) == 0);
    s->fresh = fresh;
    s->batchable = fresh && !stream;
    bool made = false;
    int code = open_partial(s, what, why, sizeof why, &made);
    if (code != 0) {
        files_put_fail(s, false, code, "%s", why);
        return false;
    }
    if (!made && fstat(s->fd, &st) < 0) {
        files_put_fail(s, false, FE_IO, "%s: %s", what, strerror(errno));
        return false;
    }
    s->have = made ? 0 : (uint64_t)st.st_size;
    /* A PATCH with nothing kept starts from a copy of the file it replaces:
     * only the chunks that differ will come. */
    if (patch && s->have == 0 && !files_patch_base(s, what))
        return false;
    if (s->have > size || (fresh && s->have > 0)) {
        /* Longer than the file now coming: left by another version (a
         * PATCH keeps what it can compare, the first size bytes). */
        uint64_t keep = patch ? size : 0;
        if (ftruncate(s->fd, (off_t)keep) < 0) {
            files_put_fail(s, true, FE_IO, "%s: %s", what, strerror(errno));
            return false;
        }
        s->have = keep;
    }
    /* Refuse now what cannot fit rather than fail near the end; the write
     * path still handles a disk that fills up meanwhile. */
    struct statvfs vfs;
    if (!stream && fstatvfs(dfd, &vfs) == 0) {
        uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
        if (size - s->have > avail) {
            files_put_fail(s, true, FE_NOSPACE,
                           "not enough space on the server for %s: %llu bytes "
                           "needed, %llu available",
                           what, (unsigned long long)(size - s->have), (unsigned long long)avail);
            return false;
        }
    }
    return true;
}

void files_put(fsess *s, const uint8_t *body, size_t len)
{
    if (!files_put_open(s, body, len, false))
        return;
    if (s->have > 0) {
        s->state = FS_HASHING;
        s->hashed = 0;
        hash_now(s);
        return;
    }
    if (s->batchable && s->nhold > 0 && files_hold_ready(s)) {
        /* Behind the answers held for the batch's commit. */
        s->state = FS_PUT_FROM;
        return;
    }
    put_ready(s);
}

void files_put_from(fsess *s, const uint8_t *body, size_t len)
{
    if (len != 8) {
        files_fail(s, "malformed PUT_FROM");
        return;
    }
    uint64_t from = files_get64(body);
    if (from != 0 && from != s->have) {
        files_fail(s, "PUT_FROM must be 0 or the length PUT_READY offered");
        return;
    }
    if (from == 0 && s->have > 0) {
        char what[160];
        files_describe(what, sizeof what, s->path);
        if (ftruncate(s->fd, 0) < 0 || !files_hash_restart(s)) {
            files_put_fail(s, true, FE_IO, "%s: cannot start over: %s", what, strerror(errno));
            return;
        }
        sk_log(SK_LOG_INFO,
               "%s %s put %s: the %llu bytes already here do not match the "
               "client's file; starting over",
               s->ctx->name, sk_conn_peer(s->conn), what, (unsigned long long)s->have);
    }
    s->from = s->pos = s->written_back = from;
    files_precord_begin(s);
    s->state = FS_PUT_DATA;
}

void files_put_data(fsess *s, const uint8_t *data, size_t len)
{
    char what[160];
    if (s->patch && !s->at_set) {
        files_fail(s, "DATA of a PATCH before its first PUT_AT");
        return;
    }
    uint64_t cap = s->svc->o.max_file_size;
    if (s->size == FILES_SIZE_STREAM && cap && len > cap - (s->pos < cap ? s->pos : cap)) {
        files_describe(what, sizeof what, s->path);
        files_put_fail(s, true, FE_TOOBIG, "%s: more than this server takes (--max-file-size)",
                       what);
        return;
    }
    if (len > s->size - s->pos) {
        files_describe(what, sizeof what, s->path);
        files_put_fail(s, true, FE_SIZE,
                       "more data than the %llu bytes declared for %s: refused, "
                       "nothing kept",
                       (unsigned long long)s->size, what);
        return;
    }
    for (size_t off = 0; off < len;) {
        ssize_t n = pwrite(s->fd, data + off, len - off, (off_t)(s->pos + off));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            int e = n < 0 ? errno : EIO;
            files_describe(what, sizeof what, s->path);
            if (e == ENOSPC || e == EDQUOT)
                files_put_fail(s, true, FE_NOSPACE,
                               "the server's disk is full (%llu of %llu bytes of "
                               "%s written): the partial file was removed",
                               (unsigned long long)(s->pos + off), (unsigned long long)s->size,
                               what);
            else if (e == EFBIG)
                files_put_fail(s, true, FE_TOOBIG, "%s: too large for the server's file system",
                               what);
            else
                files_put_fail(s, true, FE_IO, "writing %s: %s", what, strerror(e));
            return;
        }
        off += (size_t)n;
    }
    /* A PATCH's running hash holds only while its data comes in order
     * from the start; else the whole partial is hashed at PUT_END. */
    bool in_order = !s->patch || s->pos == s->hashed_to;
    if (!files_precord_data(s, s->pos, data, len, in_order)) {
        files_put_fail(s, true, FE_IO, "the server could not hash");
        return;
    }
    if (s->patch) {
        if (in_order)
            s->hashed_to += len;
        s->moved += len;
    }
    s->pos += len;
    if (s->pos - s->written_back >= FILES_WRITEBACK) {
        /* Start writeback now, without waiting for it, so the fsync at the
         * end finds little left to do. */
        (void)sync_file_range(s->fd, (off_t)s->written_back, (off_t)(s->pos - s->written_back),
                              SYNC_FILE_RANGE_WRITE);
        s->written_back = s->pos;
    }
}

/* Gives the partial (created 0600, so that nobody else reads it while it
 * arrives) the permission bits of the file it replaces, and its owner and
 * group where the server may set them (running as root); a new file gets
 * 0666 less the server's umask. Returns false after put_fail. */
static bool take_mode(fsess *s, const char *what)
{
    struct stat st;
    mode_t mode = s->svc->new_mode;
    bool replacing =
        fstatat(s->dirfd, s->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
    if (replacing) {
        mode = st.st_mode & 07777;
        /* Only root may give a file away; for anyone else this fails and
         * the file is the uploader's, as before. */
        (void)fchown(s->fd, st.st_uid, st.st_gid);
    }
    if (fchmod(s->fd, mode) < 0) {
        files_put_fail(s, true, FE_IO, "%s: cannot set its permissions: %s", what, strerror(errno));
        return false;
    }
    return true;
}

/* A version-3 PUT_END may carry the file's mode (2) and mtime (8 + 4)
 * after its hash: set on the partial before the rename, so the file
 * appears with them (no META after it). */
static bool take_meta(fsess *s, const uint8_t *body, size_t len)
{
    if (len == FILES_HASH)
        return true;
    if (len != FILES_HASH + 14 || s->hs.version < 3)
        return false;
    const uint8_t *m = body + FILES_HASH;
    uint32_t ns = (uint32_t)m[10] << 24 | (uint32_t)m[11] << 16 | (uint32_t)m[12] << 8 | m[13];
    if (ns >= 1000000000u)
        return false;
    s->meta_set = true;
    s->meta_mode = proto_get16(m) & (s->svc->o.keep_special_bits ? 07777 : 0777);
    s->meta_mtime.tv_sec = (time_t)(int64_t)files_get64(m + 2);
    s->meta_mtime.tv_nsec = (long)ns;
    return true;
}

void files_put_end(fsess *s, const uint8_t *body, size_t len)
{
    if (!take_meta(s, body, len)) {
        files_fail(s, "malformed PUT_END");
        return;
    }
    char what[160];
    files_describe(what, sizeof what, s->path);
    if (s->patch) {
        files_patch_end(s, body);
        return;
    }
    if (s->size == FILES_SIZE_STREAM)
        s->size = s->pos; /* a stream ends where its data ends */
    if (s->pos != s->size) {
        files_put_fail(s, true, FE_SIZE,
                       "the upload of %s ended after %llu of the %llu bytes "
                       "declared: refused, nothing kept",
                       what, (unsigned long long)s->pos, (unsigned long long)s->size);
        return;
    }
    uint8_t digest[FILES_HASH];
    if (EVP_DigestFinal_ex(s->md, digest, NULL) != 1) {
        files_put_fail(s, true, FE_IO, "the server could not hash");
        return;
    }
    files_put_finish(s, digest, body);
}

void files_put_finish(fsess *s, const uint8_t digest[FILES_HASH], const uint8_t *body)
{
    char what[160];
    files_describe(what, sizeof what, s->path);
    if (memcmp(digest, body, FILES_HASH) != 0) {
        files_put_fail(s, true, FE_CHECKSUM,
                       "%s: what arrived does not match the client's SHA-256: "
                       "refused, nothing kept",
                       what);
        return;
    }
    if (s->meta_set) {
        struct timespec ts[2] = {{0, UTIME_OMIT}, s->meta_mtime};
        if (fchmod(s->fd, s->meta_mode) < 0 || futimens(s->fd, ts) < 0) {
            files_put_fail(s, true, FE_IO, "%s: cannot set its mode and mtime: %s", what,
                           strerror(errno));
            return;
        }
    } else if (!take_mode(s, what)) {
        return;
    }
    if (s->batchable && !s->patch && files_hold_put(s, digest)) {
        /* Made durable and answered with the others of its batch. */
        files_xfer_end(s, false);
        files_done(s);
        /* Committed once the input at hand is done (a 0 ms step). */
        if (s->nhold > 0 && s->tkind == FT_NONE)
            files_schedule_step(s);
        return;
    }
    /* Durable before visible: the data, then the name, then the name's
     * directory entry. */
    if (fsync(s->fd) < 0) {
        int e = errno;
        files_put_fail(s, true, e == ENOSPC || e == EDQUOT ? FE_NOSPACE : FE_IO,
                       "%s: cannot be made durable: %s", what, strerror(e));
        return;
    }
    if (renameat(s->dirfd, s->pname, s->dirfd, s->name) < 0) {
        int e = errno;
        files_put_fail(s, true, e == EISDIR || e == ENOTEMPTY || e == EEXIST ? FE_TYPE : FE_IO,
                       "%s: cannot be put in place: %s", what, strerror(e));
        return;
    }
    if (fsync(s->dirfd) < 0) {
        int e = errno;
        /* The file is whole and in place; only its durability is unsure. */
        files_send_error(s, FE_IO, "%s is in place but its directory could not be synced: %s", what,
                         strerror(e));
        sk_log(SK_LOG_WARN, "%s %s put %s: fsync of the directory: %s", s->ctx->name,
               sk_conn_peer(s->conn), what, strerror(e));
        files_xfer_end(s, false);
        files_done(s);
        return;
    }
    struct stat now;
    if (s->verifying && s->hashes != NULL && s->cmd != NULL && fstat(s->fd, &now) == 0)
        /* A patched file was read whole to be checked: its chunk list is
         * known, and recorded under what it is now (after the rename). */
        files_hcache_put(s->svc, &now, s->hashes, s->chunk, digest);
    uint8_t msg[1 + 8 + FILES_HASH];
    msg[0] = FT_PUT_OK;
    files_put64(msg + 1, s->size);
    memcpy(msg + 9, digest, FILES_HASH);
    (void)sk_conn_send_msg(s->conn, msg, sizeof msg);
    if (!s->ctx->quiet) {
        char tag[17];
        files_hex8(tag, digest);
        if (s->patch)
            sk_log(SK_LOG_INFO,
                   "%s %s put %s: %llu bytes (%llu sent, patched over %llu kept chunks of %llu) "
                   "sha256 %s... in %.3f s",
                   s->ctx->name, sk_conn_peer(s->conn), what, (unsigned long long)s->size,
                   (unsigned long long)s->moved, (unsigned long long)s->kept,
                   (unsigned long long)s->chunk, tag, files_secs(s));
        else
            sk_log(SK_LOG_INFO,
                   "%s %s put %s: %llu bytes (%llu sent, resumed at %llu) sha256 %s... "
                   "in %.3f s",
                   s->ctx->name, sk_conn_peer(s->conn), what, (unsigned long long)s->size,
                   (unsigned long long)(s->size - s->from), (unsigned long long)s->from, tag,
                   files_secs(s));
    }
    files_xfer_end(s, false);
    files_done(s);
}
