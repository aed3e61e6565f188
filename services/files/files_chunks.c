/* files_chunks.c — CHUNKS (docs/PROTOCOL.md 9.10): the SHA-256 of each
 * fixed 4 MiB chunk of a file (the last one shorter) and of the whole
 * file, hashed in one pass, one chunk per loop step within the source's
 * hash budget, the hashes streamed as they are made. A user can check them
 * with `split -b 4M` and `sha256sum`. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files_int.h"

/* The slot of chunk i's hash. */
static uint8_t *slot(fsess *s, uint64_t i)
{
    return s->hashes + (size_t)(s->keep_all ? i : i - s->sent_from) * FILES_HASH;
}

/* Sends the hashes made since the last frame (if any), in frames of at
 * most FILES_HASHES_PER_FRAME. */
static void flush_hashes(fsess *s)
{
    while (s->sent_from < s->chunk) {
        uint64_t n = s->chunk - s->sent_from;
        if (n > FILES_HASHES_PER_FRAME)
            n = FILES_HASHES_PER_FRAME;
        s->frame[0] = FT_CHUNK_HASHES;
        files_put64(s->frame + 1, s->sent_from);
        memcpy(s->frame + 9, slot(s, s->sent_from), (size_t)n * FILES_HASH);
        (void)sk_conn_send_msg(s->conn, s->frame, 9 + (size_t)n * FILES_HASH);
        s->sent_from += n;
        if (!s->keep_all)
            memmove(s->hashes, slot(s, s->sent_from),
                    (size_t)(s->chunk - s->sent_from) * FILES_HASH);
    }
}

static void send_end(fsess *s, const uint8_t whole[FILES_HASH], bool cached)
{
    uint8_t msg[1 + 8 + 4 + 8 + FILES_HASH];
    msg[0] = FT_CHUNKS_END;
    files_put64(msg + 1, s->size);
    proto_put32(msg + 9, FILES_CHUNK);
    files_put64(msg + 13, s->chunk);
    memcpy(msg + 21, whole, FILES_HASH);
    (void)sk_conn_send_msg(s->conn, msg, sizeof msg);
    if (!s->ctx->quiet) {
        char tag[17], what[160];
        files_hex8(tag, whole);
        files_describe(what, sizeof what, s->path);
        sk_log(SK_LOG_INFO, "%s %s chunks %s: %llu bytes, %llu chunks %s, sha256 %s... in %.3f s",
               s->ctx->name, sk_conn_peer(s->conn), what, (unsigned long long)s->size,
               (unsigned long long)s->chunk,
               cached ? "from the hash cache (no data read)" : "hashed", tag, files_secs(s));
    }
    files_xfer_end(s, false);
    files_done(s);
}

void files_chunks(fsess *s, const uint8_t *body, size_t len)
{
    if (!files_xfer_open_source(s, "chunks", FX_CHUNKS, body, len))
        return;
    s->chunk = s->sent_from = 0;
    uint64_t count = (s->size + FILES_CHUNK - 1) / FILES_CHUNK;
    s->keep_all = count <= FILES_HCACHE_MAX_CHUNKS;
    s->frame = malloc(9 + (size_t)FILES_HASHES_PER_FRAME * FILES_HASH);
    if (s->frame == NULL) {
        files_xfer_refuse(s, "chunks", FE_IO, "server out of memory");
        return;
    }
    files_hlist hit;
    if (files_hcache_get(s->svc, &s->st, &hit)) {
        /* Unchanged since it was hashed: not a byte of it is read. */
        s->hashes = hit.hashes;
        s->keep_all = true;
        s->chunk = hit.count;
        flush_hashes(s);
        send_end(s, hit.whole, true);
        return;
    }
    s->cmd = EVP_MD_CTX_new();
    s->hashes =
        malloc((size_t)(s->keep_all ? (count ? count : 1) : FILES_HASHES_PER_FRAME) * FILES_HASH);
    s->buf = malloc(FILES_READ_BUF);
    if (s->cmd == NULL || s->hashes == NULL || s->buf == NULL ||
        EVP_DigestInit_ex(s->cmd, EVP_sha256(), NULL) != 1) {
        files_xfer_refuse(s, "chunks", FE_IO, "server out of memory");
        return;
    }
    s->state = FS_CHUNKS;
    files_chunks_step(s);
}

/* Reads [off, off+n) into both hashes: the whole file's and the chunk's.
 * Returns 0, a negative errno, or 1 if the file ended first. */
static int read_chunk(fsess *s, uint64_t off, uint64_t n)
{
    while (n > 0) {
        size_t want = n < FILES_READ_BUF ? (size_t)n : FILES_READ_BUF;
        ssize_t got = pread(s->fd, s->buf, want, (off_t)off);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0)
            return -errno;
        if (got == 0)
            return 1;
        if (EVP_DigestUpdate(s->md, s->buf, (size_t)got) != 1 ||
            EVP_DigestUpdate(s->cmd, s->buf, (size_t)got) != 1)
            return -EIO;
        off += (uint64_t)got;
        n -= (uint64_t)got;
    }
    return 0;
}

static void finish(fsess *s)
{
    char what[160];
    files_describe(what, sizeof what, s->path);
    flush_hashes(s);
    struct stat now;
    if (fstat(s->fd, &now) < 0 || now.st_size != s->st.st_size ||
        now.st_mtim.tv_sec != s->st.st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != s->st.st_mtim.tv_nsec ||
        now.st_ctim.tv_sec != s->st.st_ctim.tv_sec ||
        now.st_ctim.tv_nsec != s->st.st_ctim.tv_nsec) {
        files_xfer_refuse(s, "chunks", FE_CHANGED,
                          "%s changed while it was being hashed; ask again", what);
        return;
    }
    uint8_t whole[FILES_HASH];
    if (EVP_DigestFinal_ex(s->md, whole, NULL) != 1) {
        files_xfer_refuse(s, "chunks", FE_IO, "the server could not hash");
        return;
    }
    if (s->keep_all)
        files_hcache_put(s->svc, &s->st, s->hashes, s->chunk, whole);
    send_end(s, whole, false);
}

void files_chunks_step(fsess *s)
{
    uint64_t off = s->chunk * (uint64_t)FILES_CHUNK;
    if (off >= s->size) {
        finish(s);
        return;
    }
    uint64_t n = s->size - off < FILES_CHUNK ? s->size - off : FILES_CHUNK;
    /* Hashing on request is charged to the source's budget (9.7), so that
     * asking again and again costs the server no more than a resume. */
    uint32_t wait =
        files_source_hash(&s->svc->sources, s->src, n, sk_loop_now(sk_conn_loop(s->conn)));
    if (wait > 0) {
        /* What is hashed goes now: the client sees progress while the
         * budget paces a large file. */
        flush_hashes(s);
        files_schedule_step_in(s, wait);
        return;
    }
    int rc = read_chunk(s, off, n);
    if (rc != 0) {
        char what[160];
        files_describe(what, sizeof what, s->path);
        if (rc > 0)
            files_xfer_refuse(s, "chunks", FE_CHANGED,
                              "%s shrank while it was being hashed; ask again", what);
        else
            files_xfer_refuse(s, "chunks", FE_IO, "reading %s: %s", what, strerror(-rc));
        return;
    }
    if (EVP_DigestFinal_ex(s->cmd, slot(s, s->chunk), NULL) != 1 ||
        EVP_DigestInit_ex(s->cmd, EVP_sha256(), NULL) != 1) {
        files_xfer_refuse(s, "chunks", FE_IO, "the server could not hash");
        return;
    }
    s->chunk++;
    s->hashed += n;
    s->pos = off + n;
    if (s->chunk - s->sent_from == FILES_HASHES_PER_FRAME)
        flush_hashes(s);
    files_schedule_step(s);
}
