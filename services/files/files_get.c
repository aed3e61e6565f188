/* files_get.c — downloads (GET) of the files service. Each chunk goes as
 * a 5-byte frame header followed by a file range (sk_conn_sendfile): the
 * bytes go from the page cache to the socket without a copy through the
 * server. They are read once to be hashed, just before they are queued;
 * the client checks the SHA-256 at the end. */
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
        files_get_hashed(s, rc);
}

/* Opens for reading the very file an O_PATH descriptor names (checked to
 * be a regular file), through /proc/self/fd: no second path lookup that a
 * name swapped meanwhile could redirect. Without /proc, the path is opened
 * again (O_NONBLOCK, so that a FIFO swapped in cannot hang us) and must be
 * the same file. Returns a descriptor or a negative errno. */
static int reopen(fsess *s, int pfd)
{
    char proc[40];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", pfd);
    int fd = open(proc, O_RDONLY | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT)
        return -errno;
    if (fd < 0) {
        fd = files_open(&s->svc->root, s->path, O_RDONLY | O_NONBLOCK | O_NOCTTY, 0);
        if (fd < 0)
            return fd;
        if (!files_set_blocking(fd)) {
            int e = errno;
            close(fd);
            return -e;
        }
    }
    struct stat a, b;
    if (fstat(fd, &a) < 0 || fstat(pfd, &b) < 0 || a.st_ino != b.st_ino || a.st_dev != b.st_dev) {
        close(fd);
        return -ESTALE;
    }
    return fd;
}

/* Opens s->path for reading if it is a regular file, looked at first
 * with O_PATH (which opens nothing: no device driver's open, no FIFO
 * waiting for a writer, no terminal becoming ours); *st gets its stat.
 * Returns a descriptor, or -1 with an ERROR code and a sentence. */
int files_open_regular(fsess *s, struct stat *st, int *code, char *why, size_t whylen)
{
    char what[160];
    files_describe(what, sizeof what, s->path);
    int pfd = files_open(&s->svc->root, s->path, O_PATH, 0);
    if (pfd < 0) {
        *code = files_open_error(pfd, what, why, whylen);
        return -1;
    }
    int fe = fstat(pfd, st) < 0 ? errno : 0;
    if (fe != 0 || !S_ISREG(st->st_mode)) {
        close(pfd);
        *code = fe != 0 ? FE_IO : FE_TYPE;
        if (fe != 0)
            snprintf(why, whylen, "%s: %s", what, strerror(fe));
        else if (S_ISDIR(st->st_mode))
            snprintf(why, whylen, "%s is a directory", what);
        else
            snprintf(why, whylen,
                     "%s is not a regular file (FIFOs, devices and sockets are not served)", what);
        return -1;
    }
    int fd = reopen(s, pfd);
    close(pfd);
    if (fd < 0) {
        *code = files_open_error(fd, what, why, whylen);
        return -1;
    }
    return fd;
}

void files_get(fsess *s, const uint8_t *body, size_t len)
{
    if (len < 8 + FILES_HASH) {
        files_fail(s, "malformed GET");
        return;
    }
    uint64_t have = files_get64(body);
    if (!files_xfer_open_source(s, "get", FX_GET, body + 8 + FILES_HASH, len - 8 - FILES_HASH))
        return;
    s->have = have;
    memcpy(s->theirs, body + 8, FILES_HASH);
    if (have > 0 && have <= s->size) {
        s->state = FS_HASHING;
        s->hashed = 0;
        hash_now(s);
        return;
    }
    s->state = FS_HASHING; /* nothing to hash: straight on */
    s->hashed = s->have = 0;
    hash_now(s);
}

/* The prefix has been hashed (or there was none): answer, then send. */
static void get_ready(fsess *s)
{
    s->from = 0;
    if (s->have > 0) {
        uint8_t ours[FILES_HASH];
        if (!files_digest_so_far(s, ours)) {
            files_xfer_refuse(s, "get", FE_IO, "the server could not hash");
            return;
        }
        if (memcmp(ours, s->theirs, FILES_HASH) == 0) {
            s->from = s->have;
        } else {
            char what[160];
            files_describe(what, sizeof what, s->path);
            if (!files_hash_restart(s)) {
                files_xfer_refuse(s, "get", FE_IO, "the server could not hash");
                return;
            }
            sk_log(SK_LOG_INFO,
                   "%s %s get %s: the client's %llu bytes do not match the file; "
                   "sending all of it",
                   s->ctx->name, sk_conn_peer(s->conn), what, (unsigned long long)s->have);
        }
    }
    uint8_t msg[1 + 8 + 8];
    msg[0] = FT_GET_READY;
    files_put64(msg + 1, s->size);
    files_put64(msg + 9, s->from);
    (void)sk_conn_send_msg(s->conn, msg, sizeof msg);
    s->pos = s->from;
    s->end = s->size;
    s->state = FS_GET;
}

void files_get_range(fsess *s, const uint8_t *body, size_t len)
{
    if (len < 16) {
        files_fail(s, "malformed GET_RANGE");
        return;
    }
    uint64_t off = files_get64(body), n = files_get64(body + 8);
    if (!files_xfer_open_source(s, "get", FX_GET, body + 16, len - 16))
        return;
    if (off > s->size || n > s->size - off) {
        char what[160];
        files_describe(what, sizeof what, s->path);
        files_xfer_refuse(s, "get", FE_CHANGED,
                          "%s has %llu bytes now: the range asked for is past its end; "
                          "run get again",
                          what, (unsigned long long)s->size);
        return;
    }
    s->range = true;
    s->from = s->pos = off;
    s->end = off + n;
    uint8_t msg[1 + 8 + 8];
    msg[0] = FT_GET_READY;
    files_put64(msg + 1, s->size);
    files_put64(msg + 9, off);
    (void)sk_conn_send_msg(s->conn, msg, sizeof msg);
    s->state = FS_GET;
    files_get_pump(s);
}

void files_get_hashed(fsess *s, int rc)
{
    if (rc != 0) {
        char what[160];
        files_describe(what, sizeof what, s->path);
        if (rc > 0)
            files_xfer_refuse(s, "get", FE_CHANGED,
                              "%s shrank while it was being read; run get again", what);
        else
            files_xfer_refuse(s, "get", FE_IO, "reading %s: %s", what, strerror(-rc));
        return;
    }
    get_ready(s);
    if (s->state == FS_GET)
        files_get_pump(s);
}

/* Queues chunks while less than FILES_QUEUE_HIGH waits; on_drain brings us back
 * for the rest. Each chunk is hashed from the file just before its range is
 * queued; the range itself leaves by sendfile. */
void files_get_pump(fsess *s)
{
    char what[160];
    while (s->pos < s->end && sk_conn_queued(s->conn) <= FILES_QUEUE_HIGH) {
        uint64_t n = s->end - s->pos;
        if (n > FILES_GET_CHUNK)
            n = FILES_GET_CHUNK;
        int rc = files_hash_range(s, s->pos, n);
        if (rc != 0) {
            files_describe(what, sizeof what, s->path);
            if (rc > 0)
                files_xfer_refuse(s, "get", FE_CHANGED,
                                  "%s shrank while it was being sent; run get again", what);
            else
                files_xfer_refuse(s, "get", FE_IO, "reading %s: %s", what, strerror(-rc));
            return;
        }
        uint8_t head[SK_FRAME_HEADER + 1];
        sk_frame_header(head, (uint32_t)(n + 1));
        head[SK_FRAME_HEADER] = FT_DATA;
        if (sk_conn_send(s->conn, head, sizeof head) < 0)
            return; /* closing: on_close ends the transfer */
        rc = sk_conn_sendfile(s->conn, s->fd, s->pos, (size_t)n);
        if (rc < 0) {
            if (rc != -EPIPE && rc != -ENOBUFS) {
                /* A header is queued without its body: the stream cannot
                 * be mended, only ended. */
                sk_log(SK_LOG_WARN, "%s %s get: cannot queue the file: %s", s->ctx->name,
                       sk_conn_peer(s->conn), sk_strerror(rc));
                sk_conn_abort(s->conn, rc);
            }
            return;
        }
        s->pos += n;
    }
    if (s->pos < s->end)
        return;
    files_describe(what, sizeof what, s->path);
    struct stat now;
    if (fstat(s->fd, &now) < 0 || now.st_size != s->st.st_size ||
        now.st_mtim.tv_sec != s->st.st_mtim.tv_sec ||
        now.st_mtim.tv_nsec != s->st.st_mtim.tv_nsec) {
        files_xfer_refuse(s, "get", FE_CHANGED, "%s changed while it was being sent; run get again",
                          what);
        return;
    }
    uint8_t msg[1 + FILES_HASH];
    msg[0] = FT_GET_END;
    if (EVP_DigestFinal_ex(s->md, msg + 1, NULL) != 1) {
        files_xfer_refuse(s, "get", FE_IO, "the server could not hash");
        return;
    }
    (void)sk_conn_send_msg(s->conn, msg, sizeof msg);
    if (!s->ctx->quiet && s->range) {
        sk_log(SK_LOG_INFO, "%s %s get %s: bytes %llu to %llu of %llu sent", s->ctx->name,
               sk_conn_peer(s->conn), what, (unsigned long long)s->from, (unsigned long long)s->end,
               (unsigned long long)s->size);
    } else if (!s->ctx->quiet) {
        char tag[17];
        files_hex8(tag, msg + 1);
        sk_log(SK_LOG_INFO,
               "%s %s get %s: %llu bytes (%llu sent, resumed at %llu) sha256 %s... "
               "queued in %.3f s",
               s->ctx->name, sk_conn_peer(s->conn), what, (unsigned long long)s->size,
               (unsigned long long)(s->size - s->from), (unsigned long long)s->from, tag,
               files_secs(s));
    }
    files_xfer_end(s, false);
    files_done(s);
}
