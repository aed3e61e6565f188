/* files_patch.c — PATCH and PUT_AT (docs/PROTOCOL.md 9.11): an upload
 * that moves only the 4 MiB chunks the server lacks. Its partial starts as
 * what a cut upload left (a resume) or as a copy of the file it replaces
 * (reflinked where the file system can); the server answers with that
 * partial's chunk hashes (from the hash cache when they are the target's),
 * the client sends only the chunks whose hash differs, each after a
 * PUT_AT, and at PUT_END the whole partial is hashed again: it is renamed
 * over the target only if its SHA-256 is the client's, as any upload. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files_int.h"

/* Copies src's first len bytes into the empty partial: a reflink (FICLONE)
 * shares the blocks at no cost; else copy_file_range, else read/write. */
static int copy_base(fsess *s, int src, uint64_t len)
{
    if (ioctl(s->fd, FICLONE, src) == 0)
        return 0;
    uint64_t done = 0;
    bool plain = false;
    while (done < len) {
        ssize_t n;
        if (!plain) {
            loff_t in = (loff_t)done, out = (loff_t)done;
            n = copy_file_range(src, &in, s->fd, &out, (size_t)(len - done), 0);
            if (n < 0 &&
                (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
                plain = true;
                continue;
            }
        } else {
            if (s->buf == NULL && (s->buf = malloc(FILES_READ_BUF)) == NULL)
                return -ENOMEM;
            size_t want = len - done < FILES_READ_BUF ? (size_t)(len - done) : FILES_READ_BUF;
            n = pread(src, s->buf, want, (off_t)done);
            if (n > 0)
                n = pwrite(s->fd, s->buf, (size_t)n, (off_t)done);
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 1; /* it shrank: what was copied is a base all the same */
        done += (uint64_t)n;
    }
    return 0;
}

bool files_patch_base(fsess *s, const char *what)
{
    int src = openat(s->dirfd, s->name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (src < 0)
        return true; /* nothing to start from: every chunk comes */
    struct stat st;
    if (fstat(src, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size == 0) {
        close(src);
        return true;
    }
    uint64_t len = (uint64_t)st.st_size;
    if (len > s->size)
        len = s->size;
    int rc = copy_base(s, src, len);
    if (rc < 0) {
        close(src);
        int e = -rc;
        files_put_fail(s, true, e == ENOSPC || e == EDQUOT ? FE_NOSPACE : FE_IO,
                       "%s: cannot copy it to patch it: %s", what, strerror(e));
        return false;
    }
    /* The target's cached chunk hashes stand for the copy's if the target
     * did not change while it was copied (the PUT_END check covers the
     * rest: a wrong base only costs a failed upload, never a wrong file). */
    struct stat now;
    files_hlist hit;
    if (fstat(src, &now) == 0 && now.st_mtim.tv_sec == st.st_mtim.tv_sec &&
        now.st_mtim.tv_nsec == st.st_mtim.tv_nsec && now.st_ctim.tv_sec == st.st_ctim.tv_sec &&
        now.st_ctim.tv_nsec == st.st_ctim.tv_nsec && now.st_size == st.st_size &&
        files_hcache_get(s->svc, &st, &hit)) {
        /* Chunks wholly inside the copy; the copy's last one only if it
         * is the target's last (not cut by a shorter new size). */
        uint64_t n = len / FILES_CHUNK;
        if (len % FILES_CHUNK != 0 && len == (uint64_t)st.st_size)
            n++;
        if (n > hit.count)
            n = hit.count;
        /* The list speaks for whole chunks only: a cut tail goes. */
        if (n * FILES_CHUNK < len)
            len = n * FILES_CHUNK;
        s->hashes = hit.hashes;
        s->chunk = n;
    }
    close(src);
    if (ftruncate(s->fd, (off_t)len) < 0) {
        files_put_fail(s, true, FE_IO, "%s: %s", what, strerror(errno));
        return false;
    }
    s->have = len;
    return true;
}

/* Sends the chunk hashes made and not yet sent (s->sent_from on): while
 * a large partial is hashed within the budget they go as they are made,
 * so the client sees progress. false: out of memory (told). */
static bool send_hashes(fsess *s)
{
    if (s->sent_from >= s->chunk)
        return true;
    uint8_t *frame = malloc(9 + (size_t)FILES_HASHES_PER_FRAME * FILES_HASH);
    if (frame == NULL) {
        files_put_fail(s, false, FE_IO, "server out of memory");
        return false;
    }
    for (uint64_t i = s->sent_from; i < s->chunk;) {
        uint64_t n = s->chunk - i < FILES_HASHES_PER_FRAME ? s->chunk - i : FILES_HASHES_PER_FRAME;
        frame[0] = FT_CHUNK_HASHES;
        files_put64(frame + 1, i);
        memcpy(frame + 9, s->hashes + (size_t)i * FILES_HASH, (size_t)n * FILES_HASH);
        (void)sk_conn_send_msg(s->conn, frame, 9 + (size_t)n * FILES_HASH);
        i += n;
    }
    s->sent_from = s->chunk;
    free(frame);
    return true;
}

/* Sends the rest of the partial's chunk hashes and CHUNKS_END, then takes
 * DATA. */
static void patch_ready(fsess *s)
{
    if (!send_hashes(s))
        return;
    files_precord_begin(s);
    uint8_t end[1 + 8 + 4 + 8 + FILES_HASH];
    memset(end, 0, sizeof end);
    end[0] = FT_CHUNKS_END;
    files_put64(end + 1, s->have);
    proto_put32(end + 9, FILES_CHUNK);
    files_put64(end + 13, s->chunk);
    (void)sk_conn_send_msg(s->conn, end, sizeof end);
    s->kept = s->chunk;
    free(s->hashes);
    s->hashes = NULL;
    free(s->buf);
    s->buf = NULL;
    s->hashed_to = 0;
    s->pos = s->from = s->written_back = 0;
    s->at_set = false;
    if (!files_hash_restart(s)) {
        files_put_fail(s, false, FE_IO, "the server could not hash");
        return;
    }
    s->state = FS_PUT_DATA;
}

/* Answers PATCH_RESUME: md already covers the partial's [0, len), kept
 * from the cut upload; the client checks its own first len bytes against
 * their hash and sends the rest (or everything, from PUT_AT 0). */
static void patch_resume(fsess *s, uint64_t len)
{
    uint8_t msg[1 + 8 + FILES_HASH];
    msg[0] = FT_PATCH_RESUME;
    files_put64(msg + 1, len);
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    bool ok =
        c != NULL && EVP_MD_CTX_copy_ex(c, s->md) == 1 && EVP_DigestFinal_ex(c, msg + 9, NULL) == 1;
    EVP_MD_CTX_free(c);
    if (!ok) {
        files_put_fail(s, false, FE_IO, "the server could not hash");
        return;
    }
    (void)sk_conn_send_msg(s->conn, msg, sizeof msg);
    s->precording = true; /* files_precord_resume left pmid at len */
    s->kept = len / FILES_CHUNK;
    s->chunk = s->kept;
    s->hashed_to = len;
    s->pos = s->from = s->written_back = 0;
    s->at_set = false;
    s->state = FS_PUT_DATA;
    if (!s->ctx->quiet) {
        char what[160];
        files_describe(what, sizeof what, s->path);
        sk_log(SK_LOG_INFO,
               "%s %s put %s: resuming after the %llu bytes kept, their hash kept from the cut "
               "upload (not read)",
               s->ctx->name, sk_conn_peer(s->conn), what, (unsigned long long)len);
    }
}

void files_patch(fsess *s, const uint8_t *body, size_t len)
{
    s->patch = true;
    s->sent_from = 0;
    if (!files_put_open(s, body, len, true)) {
        s->patch = false;
        return;
    }
    if (s->hashes != NULL || s->have == 0) {
        patch_ready(s); /* from the hash cache, or nothing to compare */
        return;
    }
    /* A cut upload's partial still as it was left, its running hash kept
     * (version 4): none of it is read. */
    struct stat st;
    uint64_t kept;
    if (s->hs.version >= 4 && fstat(s->fd, &st) == 0 && (uint64_t)st.st_size == s->have &&
        (kept = files_precord_resume(s, &st)) > 0) {
        patch_resume(s, kept);
        return;
    }
    /* What a cut upload left (or a copy no cache speaks for): hashed
     * chunk by chunk, one per loop step, within the source's budget. */
    uint64_t count = (s->have + FILES_CHUNK - 1) / FILES_CHUNK;
    s->hashes = malloc((size_t)count * FILES_HASH);
    s->cmd = EVP_MD_CTX_new();
    if (s->hashes == NULL || s->cmd == NULL) {
        files_put_fail(s, false, FE_IO, "server out of memory");
        return;
    }
    s->chunk = 0;
    s->state = FS_PATCH_BASE;
    files_patch_step(s);
}

void files_patch_step(fsess *s)
{
    uint64_t off = s->chunk * (uint64_t)FILES_CHUNK;
    if (off >= s->have) {
        patch_ready(s);
        return;
    }
    uint64_t n = s->have - off < FILES_CHUNK ? s->have - off : FILES_CHUNK;
    uint32_t wait =
        files_source_hash(&s->svc->sources, s->src, n, sk_loop_now(sk_conn_loop(s->conn)));
    if (wait > 0) {
        if (send_hashes(s))
            files_schedule_step_in(s, wait);
        return;
    }
    if (s->buf == NULL && (s->buf = malloc(FILES_READ_BUF)) == NULL) {
        files_put_fail(s, false, FE_IO, "server out of memory");
        return;
    }
    if (EVP_DigestInit_ex(s->cmd, EVP_sha256(), NULL) != 1) {
        files_put_fail(s, false, FE_IO, "the server could not hash");
        return;
    }
    for (uint64_t done = 0; done < n;) {
        size_t want = n - done < FILES_READ_BUF ? (size_t)(n - done) : FILES_READ_BUF;
        ssize_t got = pread(s->fd, s->buf, want, (off_t)(off + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || EVP_DigestUpdate(s->cmd, s->buf, (size_t)got) != 1) {
            char what[160];
            files_describe(what, sizeof what, s->path);
            files_put_fail(s, true, FE_IO, "reading the partial upload of %s: %s", what,
                           got == 0 ? "it shrank" : strerror(errno));
            return;
        }
        done += (uint64_t)got;
    }
    if (EVP_DigestFinal_ex(s->cmd, s->hashes + (size_t)s->chunk * FILES_HASH, NULL) != 1) {
        files_put_fail(s, false, FE_IO, "the server could not hash");
        return;
    }
    s->chunk++;
    s->hashed += n;
    files_schedule_step(s);
}

void files_patch_at(fsess *s, const uint8_t *body, size_t len)
{
    if (len != 8) {
        files_fail(s, "malformed PUT_AT");
        return;
    }
    uint64_t at = files_get64(body);
    if (at % FILES_CHUNK != 0 || at >= s->size) {
        files_fail(s, "PUT_AT must name the start of a chunk of the file");
        return;
    }
    if (at == 0 && s->hashed_to != 0) {
        /* The client starts over from the first byte (a resume it did not
         * take): the running hash does too. */
        if (!files_hash_restart(s)) {
            files_put_fail(s, false, FE_IO, "the server could not hash");
            return;
        }
        s->hashed_to = 0;
    }
    s->pos = s->written_back = at;
    s->at_set = true;
    files_precord_at(s, at);
}

void files_patch_end(fsess *s, const uint8_t *theirs)
{
    char what[160];
    files_describe(what, sizeof what, s->path);
    struct stat st;
    if (fstat(s->fd, &st) < 0 || (uint64_t)st.st_size != s->size) {
        files_put_fail(s, true, FE_SIZE,
                       "the patched upload of %s holds %llu of the %llu bytes declared: "
                       "refused, nothing kept",
                       what, (unsigned long long)st.st_size, (unsigned long long)s->size);
        return;
    }
    s->chunk = (s->size + FILES_CHUNK - 1) / FILES_CHUNK;
    if (s->hashed_to == s->size) {
        /* Every byte came, in order: the running hash is the file's. */
        uint8_t digest[FILES_HASH];
        if (EVP_DigestFinal_ex(s->md, digest, NULL) != 1) {
            files_put_fail(s, true, FE_IO, "the server could not hash");
            return;
        }
        files_put_finish(s, digest, theirs);
        return;
    }
    /* Kept chunks and new ones: the whole partial is hashed again, as a
     * resume's prefix is (in steps, within the source's budget). */
    memcpy(s->theirs, theirs, FILES_HASH);
    /* Its chunk list is made on the way, for the hash cache. */
    free(s->hashes);
    s->hashes =
        s->chunk <= FILES_HCACHE_MAX_CHUNKS ? malloc((size_t)s->chunk * FILES_HASH + 1) : NULL;
    if (s->hashes != NULL && s->cmd == NULL)
        s->cmd = EVP_MD_CTX_new();
    if (s->cmd != NULL && EVP_DigestInit_ex(s->cmd, EVP_sha256(), NULL) != 1) {
        free(s->hashes);
        s->hashes = NULL;
    }
    if (!files_hash_restart(s)) {
        files_put_fail(s, true, FE_IO, "the server could not hash");
        return;
    }
    s->verifying = true;
    s->have = s->size;
    s->hashed = 0;
    s->state = FS_HASHING;
    int rc;
    if (files_hash_step(s, &rc))
        files_patch_verified(s, rc);
}

void files_patch_verified(fsess *s, int rc)
{
    char what[160];
    files_describe(what, sizeof what, s->path);
    uint8_t digest[FILES_HASH];
    if (rc != 0 || EVP_DigestFinal_ex(s->md, digest, NULL) != 1) {
        files_put_fail(s, true, FE_IO, "reading the patched upload of %s: %s", what,
                       rc > 0   ? "it shrank"
                       : rc < 0 ? strerror(-rc)
                                : "cannot hash");
        return;
    }
    s->state = FS_PUT_DATA;
    files_put_finish(s, digest, s->theirs);
}
