/* files_xfer.c — what the uploads (files_put.c) and downloads
 * (files_get.c) of the files service share: starting and ending a
 * transfer (its counts, path, hash and buffer), hashing through the
 * transfer's buffer, the step that hashes a long prefix a piece at a time
 * before a resume is answered (within the source's hash budget), and the
 * watch that ends a stalled transfer or closes an idle session.
 *
 * A resume is offered by the side that holds a partial (the server for a
 * PUT, the client for a GET) as (length, SHA-256 of those bytes); the other
 * side hashes the same prefix of its file and continues only if they match,
 * else starts over: a partial is never trusted. Hashing a long prefix and
 * sending a file go in steps between which the loop serves everyone else. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "files_int.h"

/* The monotonic clock in ms, the loops' own: for when no loop is at hand. */
static uint64_t files_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

double files_secs(const fsess *s)
{
    return (double)(sk_loop_now(sk_conn_loop(s->conn)) - s->started) / 1000.0;
}

void files_hex8(char out[17], const uint8_t *digest)
{
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", digest[i]);
}

bool files_set_blocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0;
}

/* Starts a transfer: counts it (globally and for its source), copies the
 * path, prepares the hash and starts the stall watch. The read buffer
 * comes with the first read (files_hash_range). On failure the client has
 * been told and nothing is held. */
bool files_xfer_begin(fsess *s, enum fs_kind kind, const uint8_t *path, size_t plen)
{
    files_svc *svc = s->svc;
    uint64_t now = sk_loop_now(sk_conn_loop(s->conn));
    unsigned n = atomic_fetch_add(&svc->transfers, 1);
    s->counted_xfer = true;
    s->kind = kind;
    s->started = now;
    if (n >= FILES_MAX_TRANSFERS) {
        files_send_error(s, PE_BUSY, "too many transfers in progress (%u); try again later",
                         FILES_MAX_TRANSFERS);
        files_xfer_end(s, false);
        return false;
    }
    int rc = files_source_acquire(&svc->sources, s->src, svc->o.max_per_source, now);
    if (rc < 0) {
        if (rc == -EBUSY)
            files_send_error(s, PE_BUSY,
                             "too many transfers from your address in progress "
                             "(%u, --max-transfers-per-source); try again later",
                             svc->o.max_per_source);
        else
            files_send_error(s, PE_BUSY,
                             "too many clients with transfers in progress; try "
                             "again later");
        sk_log(SK_LOG_WARN, "%s %s transfer refused: %s", s->ctx->name, sk_conn_peer(s->conn),
               rc == -EBUSY ? "--max-transfers-per-source reached" : "no room for a new source");
        files_xfer_end(s, false);
        return false;
    }
    s->counted_src = true;
    s->path = malloc(plen + 1);
    s->md = EVP_MD_CTX_new();
    if (s->path == NULL || s->md == NULL || EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) != 1) {
        files_send_error(s, FE_IO, "server out of memory");
        files_xfer_end(s, false);
        return false;
    }
    memcpy(s->path, path, plen);
    s->path[plen] = '\0';
    s->moved_at = now;
    s->seen_in = sk_conn_bytes_in(s->conn);
    s->seen_out = sk_conn_bytes_out(s->conn);
    s->seen_hashed = 0;
    uint32_t every = svc->o.stall_ms / FILES_STALL_CHECKS;
    sk_timer_start(s->stall, every ? every : 1, 0);
    return true;
}

/* Removes the partial of the upload in progress, under our lock, and the
 * directories this upload made for it while they are empty. */
static void remove_partial(fsess *s)
{
    (void)unlinkat(s->dirfd, s->pname, 0);
    if (s->made != FILES_MADE_NONE && s->path != NULL)
        files_remove_made(&s->svc->root, s->path, s->made);
}

/* The client of an upload vanished: its partial is kept for a resume,
 * unless it holds nothing (an empty partial would only take a place among
 * the directory's FILES_PARTIALS_PER_DIR) or its source has left
 * FILES_PARTIALS_PER_SOURCE behind within --partial-ttl. Runs also after
 * the loop is gone (a stop without drain): no connection is touched. */
static void put_vanished(fsess *s)
{
    struct stat st;
    if (s->fd < 0 || s->dirfd < 0 || s->path == NULL)
        return;
    char what[300];
    files_describe(what, sizeof what, s->path);
    if (s->fresh) {
        /* No resume was asked for: nothing is kept. */
        remove_partial(s);
        if (!s->ctx->quiet)
            sk_log(SK_LOG_INFO, "%s put %s interrupted (no resume asked for): nothing kept",
                   s->ctx->name, what);
        return;
    }
    if (fstat(s->fd, &st) == 0 && st.st_size == 0) {
        remove_partial(s);
        if (!s->ctx->quiet)
            sk_log(SK_LOG_INFO, "%s put %s interrupted before its first byte: nothing kept",
                   s->ctx->name, what);
        return;
    }
    if (!files_source_keep(&s->svc->sources, s->src, files_now_ms(), s->svc->o.partial_ttl_s)) {
        remove_partial(s);
        sk_log(SK_LOG_WARN,
               "%s put %s interrupted after %llu of %llu bytes: not kept, its "
               "address left %u unfinished uploads within --partial-ttl",
               s->ctx->name, what, (unsigned long long)s->pos, (unsigned long long)s->size,
               FILES_PARTIALS_PER_SOURCE);
        return;
    }
    files_precord_save(s);
    if (!s->ctx->quiet)
        sk_log(SK_LOG_INFO,
               "%s put %s interrupted after %llu of %llu bytes: the partial file "
               "is kept for a resume (--partial-ttl)",
               s->ctx->name, what, (unsigned long long)s->pos, (unsigned long long)s->size);
}

void files_xfer_end(fsess *s, bool gone)
{
    if (s->kind != FX_PUT && s->kind != FX_GET && s->kind != FX_CHUNKS)
        return;
    if (gone && s->kind == FX_PUT)
        put_vanished(s);
    if (s->fd >= 0)
        close(s->fd); /* an upload's lock goes with it */
    if (s->dirfd >= 0)
        close(s->dirfd);
    s->fd = s->dirfd = -1;
    s->made = FILES_MADE_NONE;
    EVP_MD_CTX_free(s->md);
    s->md = NULL;
    EVP_MD_CTX_free(s->cmd);
    s->cmd = NULL;
    free(s->hashes);
    s->hashes = NULL;
    free(s->frame);
    s->frame = NULL;
    files_precord_free(s);
    s->keep_all = s->cache_hit = false;
    s->patch = s->at_set = s->verifying = false;
    s->hashed_to = s->moved = s->kept = s->end = 0;
    s->range = s->meta_set = s->fresh = false;
    s->chunk = s->sent_from = 0;
    free(s->path);
    free(s->buf);
    s->path = NULL;
    s->buf = NULL;
    s->name = NULL;
    if (s->counted_xfer)
        atomic_fetch_sub(&s->svc->transfers, 1);
    s->counted_xfer = false;
    if (s->counted_src)
        files_source_release(&s->svc->sources, s->src);
    s->counted_src = false;
    s->kind = FX_NONE;
    s->size = s->have = s->from = s->pos = s->hashed = s->written_back = 0;
    if (!gone)
        sk_timer_stop(s->stall);
    if (s->tkind == FT_STEP) {
        s->tkind = FT_NONE;
        if (!gone)
            sk_timer_stop(s->timer);
    }
}

/* Something moved since the last look (bytes either way, or hashing)? */
static void note_progress(fsess *s, uint64_t now)
{
    uint64_t in = sk_conn_bytes_in(s->conn), out = sk_conn_bytes_out(s->conn);
    if (in != s->seen_in || out != s->seen_out || s->hashed != s->seen_hashed) {
        s->seen_in = in;
        s->seen_out = out;
        s->seen_hashed = s->hashed;
        s->moved_at = now;
    }
}

/* An idle session (no request in progress): closed once nothing has moved
 * for --idle-timeout; the tail of a download still leaving counts as
 * moving. */
static void idle_check(fsess *s, uint64_t now)
{
    uint32_t limit = s->svc->o.idle_ms;
    note_progress(s, now);
    if (now - s->moved_at < limit) {
        uint32_t every = limit / FILES_STALL_CHECKS;
        sk_timer_start(s->stall, every ? every : 1, 0);
        return;
    }
    sk_conn_fail(s->conn, -ETIMEDOUT, "idle timeout (no request)");
}

void files_stall_check(fsess *s)
{
    uint64_t now = sk_loop_now(sk_conn_loop(s->conn));
    if (s->kind != FX_PUT && s->kind != FX_GET && s->kind != FX_CHUNKS) {
        if (s->idle_armed && (s->state == FS_READY || s->state == FS_PUT_SKIP))
            idle_check(s, now);
        return;
    }
    note_progress(s, now);
    uint32_t limit = s->svc->o.stall_ms;
    if (now - s->moved_at < limit) {
        uint32_t every = limit / FILES_STALL_CHECKS;
        sk_timer_start(s->stall, every ? every : 1, 0);
        return;
    }
    char what[160];
    files_describe(what, sizeof what, s->path ? s->path : "");
    sk_log(SK_LOG_WARN,
           "%s %s %s %s stalled: nothing moved for %.1f s (--stall-timeout): "
           "transfer ended after %llu of %llu bytes",
           s->ctx->name, sk_conn_peer(s->conn),
           s->kind == FX_PUT   ? "put"
           : s->kind == FX_GET ? "get"
                               : "chunks",
           what, (double)(now - s->moved_at) / 1000.0, (unsigned long long)s->pos,
           (unsigned long long)s->size);
    /* The client is not reading (or not writing): an ERROR would wait
     * behind what it does not read. The connection goes; an upload's
     * partial stays for a resume, as when the client vanishes. The
     * reason is recorded first (the first one is kept), then what is
     * queued is dropped. */
    sk_conn_fail(s->conn, -ETIMEDOUT, "transfer stalled (--stall-timeout)");
    sk_conn_abort(s->conn, -ETIMEDOUT);
}

/* Reads [off, off+len) of the transfer's file into the hash. Returns 0, a
 * negative errno, or 1 if the file ended first. */
int files_hash_range(fsess *s, uint64_t off, uint64_t len)
{
    if (s->buf == NULL && (s->buf = malloc(FILES_READ_BUF)) == NULL)
        return -ENOMEM;
    /* A patched upload's check also makes its chunk list (for the hash
     * cache): no read crosses a chunk's end. */
    bool chunks = s->verifying && s->hashes != NULL && s->cmd != NULL;
    while (len > 0) {
        size_t want = len < FILES_READ_BUF ? (size_t)len : FILES_READ_BUF;
        if (chunks && want > FILES_CHUNK - off % FILES_CHUNK)
            want = (size_t)(FILES_CHUNK - off % FILES_CHUNK);
        ssize_t n = pread(s->fd, s->buf, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 1;
        if (EVP_DigestUpdate(s->md, s->buf, (size_t)n) != 1)
            return -EIO;
        if (chunks) {
            uint64_t end = off + (uint64_t)n;
            if (EVP_DigestUpdate(s->cmd, s->buf, (size_t)n) != 1)
                return -EIO;
            if ((end % FILES_CHUNK == 0 || end == s->size) &&
                (EVP_DigestFinal_ex(s->cmd,
                                    s->hashes + (size_t)((end - 1) / FILES_CHUNK) * FILES_HASH,
                                    NULL) != 1 ||
                 EVP_DigestInit_ex(s->cmd, EVP_sha256(), NULL) != 1))
                return -EIO;
        }
        off += (uint64_t)n;
        len -= (uint64_t)n;
    }
    return 0;
}

/* The hash of what has been fed so far, without ending the running one. */
bool files_digest_so_far(fsess *s, uint8_t out[FILES_HASH])
{
    EVP_MD_CTX *tmp = EVP_MD_CTX_new();
    bool ok = tmp != NULL && EVP_MD_CTX_copy_ex(tmp, s->md) == 1 &&
              EVP_DigestFinal_ex(tmp, out, NULL) == 1;
    EVP_MD_CTX_free(tmp);
    return ok;
}

bool files_hash_restart(fsess *s) { return EVP_DigestInit_ex(s->md, EVP_sha256(), NULL) == 1; }

bool files_hash_step(fsess *s, int *rc)
{
    uint64_t n = s->have - s->hashed;
    if (n > FILES_HASH_STEP)
        n = FILES_HASH_STEP;
    /* The source's resume-hash budget: a step beyond it waits. A patched
     * upload's final check is not charged: it is the upload's own
     * verification, as a PUT's running hash is (and reads what the
     * client's PATCH declared, like a GET). */
    uint32_t wait = n && !s->verifying ? files_source_hash(&s->svc->sources, s->src, n,
                                                           sk_loop_now(sk_conn_loop(s->conn)))
                                       : 0;
    if (wait > 0) {
        files_schedule_step_in(s, wait);
        return false;
    }
    *rc = n ? files_hash_range(s, s->hashed, n) : 0;
    if (*rc == 0) {
        s->hashed += n;
        if (s->hashed < s->have) {
            files_schedule_step(s);
            return false;
        }
    }
    return true;
}

void files_xfer_refuse(fsess *s, const char *op, int code, const char *fmt, ...)
{
    char text[PROTO_ERROR_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    files_send_error(s, code, "%s", text);
    if (!s->ctx->quiet || code != FE_NOTFOUND)
        sk_log(code == FE_NOTFOUND ? SK_LOG_INFO : SK_LOG_WARN, "%s %s %s refused: %s",
               s->ctx->name, sk_conn_peer(s->conn), op, text);
    files_xfer_end(s, false);
    files_done(s);
}

bool files_xfer_open_source(fsess *s, const char *op, enum fs_kind kind, const uint8_t *path,
                            size_t plen)
{
    char why[PROTO_ERROR_TEXT_MAX];
    if (files_path_check((const char *)path, plen, false, why, sizeof why) < 0) {
        files_refuse_path(s, op, why);
        return false;
    }
    if (!files_xfer_begin(s, kind, path, plen))
        return false;
    int code = 0;
    int fd = files_open_regular(s, &s->st, &code, why, sizeof why);
    if (fd < 0) {
        files_xfer_refuse(s, op, code, "%s", why);
        return false;
    }
    s->fd = fd;
    s->size = (uint64_t)s->st.st_size;
    return true;
}
