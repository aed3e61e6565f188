/* files_commit.c — the pipelined small uploads of a tree (an all-zero
 * upload id, 9.9) made durable together. Each one is verified as it ends,
 * as any upload, but its fsync, rename and directory fsync wait, with its
 * answers (PUT_READY, PUT_OK), until the client's run of such uploads
 * pauses or 64 wait: then one syncfs(2) makes all their data durable, the
 * renames follow, then one fsync per directory touched, and only then do
 * the answers go, in order. A file still appears under its name only whole
 * and verified, after its data is durable; a crash leaves every file its
 * old or its new version. A client that goes first gets no answer, and its
 * waiting files are removed (not renamed): it sends them again. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "files_int.h"

struct files_hold {
    bool ok;                        /* an upload to put in place (else a PUT_READY) */
    int fd, dirfd;                  /* the partial (locked), its directory */
    char *path;                     /* the target, as the client named it */
    char pname[FILES_NAME_MAX + 1]; /* the partial's name in dirfd */
    const char *name;               /* the target's last component (in path) */
    uint64_t size;
    uint8_t digest[FILES_HASH];
    double secs;
};

static files_hold *slot(fsess *s)
{
    if (s->holds == NULL && (s->holds = calloc(FILES_HOLD_MAX, sizeof *s->holds)) == NULL)
        return NULL;
    if (s->nhold >= FILES_HOLD_MAX)
        files_hold_flush(s); /* full: what is held goes first */
    return &s->holds[s->nhold];
}

bool files_hold_ready(fsess *s)
{
    files_hold *h = slot(s);
    if (h == NULL)
        return false;
    memset(h, 0, sizeof *h);
    h->fd = h->dirfd = -1;
    s->nhold++;
    return true;
}

bool files_hold_put(fsess *s, const uint8_t digest[FILES_HASH])
{
    files_hold *h = slot(s);
    if (h == NULL || s->path == NULL)
        return false;
    char *path = strdup(s->path);
    if (path == NULL)
        return false;
    memset(h, 0, sizeof *h);
    h->ok = true;
    h->fd = s->fd;
    h->dirfd = s->dirfd;
    h->path = path;
    h->name = path + (s->name - s->path);
    memcpy(h->pname, s->pname, sizeof h->pname);
    h->size = s->size;
    memcpy(h->digest, digest, FILES_HASH);
    h->secs = files_secs(s);
    s->fd = s->dirfd = -1; /* the hold has them now */
    s->made = FILES_MADE_NONE;
    s->nhold++;
    if (s->nhold >= FILES_HOLD_MAX)
        files_hold_flush(s);
    return true;
}

static void release(files_hold *h)
{
    if (h->fd >= 0)
        close(h->fd);
    if (h->dirfd >= 0)
        close(h->dirfd);
    free(h->path);
    h->fd = h->dirfd = -1;
    h->path = NULL;
}

/* The length of path's directory part. */
static size_t dir_len(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? (size_t)(slash - path) : 0;
}

void files_hold_flush(fsess *s)
{
    unsigned n = s->nhold;
    if (n == 0)
        return;
    s->nhold = 0; /* what follows may send (and so come back here) */
    int err[FILES_HOLD_MAX];
    unsigned oks = 0;
    for (unsigned i = 0; i < n; i++) {
        err[i] = 0;
        oks += s->holds[i].ok;
    }
    /* 1. The data of them all, durable at once (one fsync for one file). */
    int sync_err = 0;
    if (oks > 1 && syncfs(s->svc->root.fd) < 0)
        sync_err = errno;
    for (unsigned i = 0; i < n; i++) {
        files_hold *h = &s->holds[i];
        if (!h->ok)
            continue;
        if (oks == 1 && fsync(h->fd) < 0)
            err[i] = errno;
        else if (oks > 1 && sync_err != 0)
            err[i] = sync_err;
        /* 2. Then the names. */
        if (err[i] == 0 && renameat(h->dirfd, h->pname, h->dirfd, h->name) < 0)
            err[i] = errno;
        if (err[i] != 0)
            (void)unlinkat(h->dirfd, h->pname, 0); /* under its lock: still ours */
    }
    /* 3. One fsync per directory renamed into (runs of one directory). */
    for (unsigned i = 0; i < n; i++) {
        files_hold *h = &s->holds[i];
        if (!h->ok || err[i] != 0)
            continue;
        size_t dl = dir_len(h->path);
        unsigned k = i + 1;
        while (k < n &&
               (!s->holds[k].ok || err[k] != 0 ||
                (dir_len(s->holds[k].path) == dl && memcmp(s->holds[k].path, h->path, dl) == 0)))
            k++;
        if (fsync(h->dirfd) < 0) {
            for (unsigned m = i; m < k; m++)
                if (s->holds[m].ok && err[m] == 0)
                    err[m] = -errno; /* in place, durability unsure */
        }
        i = k - 1;
    }
    /* 4. The answers, in order. */
    for (unsigned i = 0; i < n; i++) {
        files_hold *h = &s->holds[i];
        if (!h->ok) {
            uint8_t msg[1 + 8 + FILES_HASH];
            msg[0] = FT_PUT_READY;
            files_put64(msg + 1, 0);
            (void)EVP_Digest("", 0, msg + 9, NULL, EVP_sha256(), NULL);
            (void)sk_conn_send_msg(s->conn, msg, sizeof msg);
            continue;
        }
        char what[160];
        files_describe(what, sizeof what, h->path);
        if (err[i] > 0) {
            int e = err[i];
            proto_send_error(s->conn, e == ENOSPC || e == EDQUOT ? FE_NOSPACE : FE_IO,
                             "%s: cannot be put in place: %s", what, strerror(e));
            sk_log(SK_LOG_WARN, "%s %s put refused: %s: %s (partial file removed)", s->ctx->name,
                   sk_conn_peer(s->conn), what, strerror(e));
        } else if (err[i] < 0) {
            proto_send_error(s->conn, FE_IO,
                             "%s is in place but its directory could not be synced: %s", what,
                             strerror(-err[i]));
        } else {
            uint8_t msg[1 + 8 + FILES_HASH];
            msg[0] = FT_PUT_OK;
            files_put64(msg + 1, h->size);
            memcpy(msg + 9, h->digest, FILES_HASH);
            (void)sk_conn_send_msg(s->conn, msg, sizeof msg);
            if (!s->ctx->quiet) {
                char tag[17];
                files_hex8(tag, h->digest);
                sk_log(SK_LOG_INFO,
                       "%s %s put %s: %llu bytes (%llu sent, resumed at 0) sha256 %s... in "
                       "%.3f s (committed with %u)",
                       s->ctx->name, sk_conn_peer(s->conn), what, (unsigned long long)h->size,
                       (unsigned long long)h->size, tag, h->secs, oks);
            }
        }
        release(h);
    }
}

void files_hold_drop(fsess *s)
{
    for (unsigned i = 0; i < s->nhold; i++) {
        files_hold *h = &s->holds[i];
        if (h->ok)
            (void)unlinkat(h->dirfd, h->pname, 0); /* no answer given: not put in place */
        release(h);
    }
    s->nhold = 0;
    free(s->holds);
    s->holds = NULL;
}
