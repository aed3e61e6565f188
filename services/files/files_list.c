/* files_list.c — LIST and STAT of the files service: what is below the root
 * as a client may see it. Only regular files and directories are shown;
 * a symbolic link is shown as what it leads to when openat2 confines it
 * beneath the root (with the walk of the fallback, links are refused and
 * so never shown); partial transfers are hidden. A listing goes out in
 * batches, and the loop serves everyone else between them. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files_int.h"

/* What a client may see of dir/name, by lstat, or by following a link
 * beneath the root. Returns false for anything else. */
static bool visible(const files_svc *svc, int dirfd, const char *dirpath, const char *name,
                    struct stat *st)
{
    if (fstatat(dirfd, name, st, AT_SYMLINK_NOFOLLOW) < 0)
        return false;
    if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode))
        return true;
    if (!S_ISLNK(st->st_mode) || !svc->root.use_openat2)
        return false;
    char path[FILES_PATH_MAX + FILES_NAME_MAX + 2];
    snprintf(path, sizeof path, "%s%s%s", dirpath, dirpath[0] ? "/" : "", name);
    int fd = files_open(&svc->root, path, O_PATH, 0);
    if (fd < 0)
        return false; /* it leads out, nowhere, or round in circles */
    bool ok = fstat(fd, st) == 0 && (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode));
    close(fd);
    return ok;
}

/* Appends dir/name as a tree entry (by lstat: a link is sent as its text)
 * at frame + *off. FIFOs, sockets and devices are left out. */
static bool tree_entry(int dirfd, const char *name, uint8_t *frame, size_t *off)
{
    struct stat st;
    char target[FILES_LINK_MAX + 1];
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return false;
    files_tentry e;
    memset(&e, 0, sizeof e);
    if (S_ISLNK(st.st_mode)) {
        ssize_t n = readlinkat(dirfd, name, target, FILES_LINK_MAX);
        if (n <= 0 || (size_t)n >= FILES_LINK_MAX)
            return false;
        e.type = 'l';
        e.target = (const uint8_t *)target;
        e.target_len = (size_t)n;
    } else if (S_ISREG(st.st_mode)) {
        e.type = 'f';
        e.size = (uint64_t)st.st_size;
    } else if (S_ISDIR(st.st_mode)) {
        e.type = 'd';
    } else {
        return false;
    }
    e.mtime = (int64_t)st.st_mtim.tv_sec;
    e.mtime_ns = (uint32_t)st.st_mtim.tv_nsec;
    e.mode = (uint16_t)(st.st_mode & 07777);
    e.name = (const uint8_t *)name;
    e.name_len = strlen(name);
    *off += files_tentry_put(frame + *off, &e);
    return true;
}

static void fill_entry(files_entry *e, const struct stat *st, const char *name)
{
    e->type = S_ISDIR(st->st_mode) ? 'd' : 'f';
    e->size = S_ISDIR(st->st_mode) ? 0 : (uint64_t)st->st_size;
    e->mtime = (int64_t)st->st_mtim.tv_sec;
    e->mode = (uint16_t)(st->st_mode & 07777);
    e->name = (const uint8_t *)name;
    e->name_len = strlen(name);
}

/* Copies a checked path into buf, NUL-terminated. */
static bool take_path(fsess *s, const char *op, const uint8_t *body, size_t len, char *buf)
{
    char why[PROTO_ERROR_TEXT_MAX];
    if (files_path_check((const char *)body, len, true, why, sizeof why) < 0) {
        files_refuse_path(s, op, why);
        return false;
    }
    memcpy(buf, body, len);
    buf[len] = '\0';
    return true;
}

void files_stat(fsess *s, const uint8_t *body, size_t len)
{
    char path[FILES_PATH_MAX + 1], what[160], why[PROTO_ERROR_TEXT_MAX];
    if (!take_path(s, "stat", body, len, path))
        return;
    files_describe(what, sizeof what, path[0] ? path : ".");
    int fd = files_open(&s->svc->root, path, O_PATH, 0);
    if (fd < 0) {
        int code = files_open_error(fd, what, why, sizeof why);
        files_send_error(s, code, "%s", why);
        return;
    }
    struct stat st;
    int rc = fstat(fd, &st);
    close(fd);
    if (rc < 0) {
        files_send_error(s, FE_IO, "%s: %s", what, strerror(errno));
        return;
    }
    if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode)) {
        files_send_error(s, FE_TYPE, "%s is not a regular file or directory", what);
        return;
    }
    const char *slash = strrchr(path, '/');
    files_entry e;
    fill_entry(&e, &st, slash ? slash + 1 : path);
    uint8_t msg[1 + FILES_ENTRY_FIXED + FILES_NAME_MAX];
    msg[0] = FT_STAT_OK;
    size_t n = 1 + files_entry_put(msg + 1, &e);
    (void)sk_conn_send_msg(s->conn, msg, n);
}

void files_list_end(fsess *s)
{
    if (s->kind != FX_LIST)
        return;
    if (s->dir != NULL)
        closedir(s->dir);
    s->dir = NULL;
    free(s->path);
    free(s->buf);
    s->path = NULL;
    s->buf = NULL;
    s->kind = FX_NONE;
    if (s->tkind == FT_STEP)
        s->tkind = FT_NONE;
}

void files_list(fsess *s, const uint8_t *body, size_t len, bool tree)
{
    char path[FILES_PATH_MAX + 1], what[160], why[PROTO_ERROR_TEXT_MAX];
    if (!take_path(s, tree ? "tree" : "list", body, len, path))
        return;
    files_describe(what, sizeof what, path[0] ? path : ".");
    /* A tree is walked without following any link: they are entries. */
    int fd = tree ? files_walk_dir(s->svc->root.fd, path, false)
                  : files_open(&s->svc->root, path, O_RDONLY | O_DIRECTORY, 0);
    if (fd < 0) {
        int code = files_open_error(fd, what, why, sizeof why);
        if (fd == -ENOTDIR)
            snprintf(why, sizeof why, "%s is not a directory", what);
        files_send_error(s, code, "%s", why);
        return;
    }
    s->kind = FX_LIST;
    s->path = strdup(path);
    s->buf = malloc(FILES_LIST_FRAME);
    s->dir = s->path && s->buf ? fdopendir(fd) : NULL;
    if (s->dir == NULL) {
        close(fd);
        files_list_end(s);
        files_send_error(s, FE_IO, "server out of memory");
        return;
    }
    s->listed = 0;
    s->tree = tree;
    s->state = FS_LIST;
    files_list_step(s);
}

/* Sends up to FILES_LIST_STEP entries in frames below FILES_LIST_FRAME,
 * then yields: to on_drain if the client is slow to read, else to a 0 ms
 * timer. The end is LIST_END with the count. */
void files_list_step(fsess *s)
{
    unsigned seen = 0;
    bool done = false;
    int err = 0;
    uint8_t *frame = s->buf;
    while (!done && seen < FILES_LIST_STEP) {
        size_t off = 3;
        unsigned count = 0;
        while (off + FILES_TENTRY_FIXED + FILES_NAME_MAX + FILES_LINK_MAX <= FILES_LIST_FRAME &&
               seen < FILES_LIST_STEP) {
            errno = 0;
            struct dirent *d = readdir(s->dir);
            if (d == NULL) {
                err = errno;
                done = true;
                break;
            }
            seen++;
            const char *name = d->d_name;
            if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
                strncmp(name, FILES_PARTIAL_PREFIX, sizeof FILES_PARTIAL_PREFIX - 1) == 0)
                continue;
            struct stat st;
            if (s->tree) {
                if (tree_entry(dirfd(s->dir), name, frame, &off))
                    count++;
                continue;
            }
            if (!visible(s->svc, dirfd(s->dir), s->path, name, &st))
                continue;
            files_entry e;
            fill_entry(&e, &st, name);
            off += files_entry_put(frame + off, &e);
            count++;
        }
        if (count > 0) {
            frame[0] = s->tree ? FT_TREE_ENTRIES : FT_ENTRIES;
            proto_put16(frame + 1, (uint16_t)count);
            if (sk_conn_send_msg(s->conn, frame, off) < 0)
                return; /* closing: on_close ends the listing */
            s->listed += count;
        }
        if (!done && sk_conn_queued(s->conn) > FILES_QUEUE_HIGH)
            return; /* on_drain brings us back */
    }
    if (!done) {
        files_schedule_step(s);
        return;
    }
    if (err != 0) {
        char what[160];
        files_describe(what, sizeof what, s->path[0] ? s->path : ".");
        files_send_error(s, FE_IO, "reading the directory %s: %s", what, strerror(err));
    } else {
        uint8_t msg[1 + 8];
        msg[0] = FT_LIST_END;
        files_put64(msg + 1, s->listed);
        (void)sk_conn_send_msg(s->conn, msg, sizeof msg);
    }
    files_list_end(s);
    files_done(s);
}
