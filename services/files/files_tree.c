/* files_tree.c — the requests that make a tree what the client's is
 * (docs/PROTOCOL.md 9.9): MKDIR, SYMLINK, META (permission bits and the
 * mtime to the nanosecond) and DELETE. Every path is walked from the root
 * one component at a time without following a link (files_walk.c), so a
 * link a client made is only ever an entry, never a way somewhere. Each
 * answers DONE or an ERROR; none keeps state between requests. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files_int.h"

static int code_of(int err)
{
    switch (err) {
    case ENOENT: return FE_NOTFOUND;
    case EACCES:
    case EPERM:
    case EROFS: return FE_DENIED;
    case ELOOP:
    case EXDEV:
    case EINVAL: return FE_BADPATH;
    case ENOTDIR:
    case EISDIR:
    case ENOTEMPTY:
    case EEXIST: return FE_TYPE;
    case ENOSPC:
    case EDQUOT: return FE_NOSPACE;
    default: return FE_IO;
    }
}

static void refuse(fsess *s, const char *op, const char *path, int err)
{
    char what[160];
    files_describe(what, sizeof what, path);
    files_send_error(s, code_of(err), "%s %s: %s", op, what,
                     err == ELOOP ? "a symbolic link is in the way" : strerror(err));
}

static void done(fsess *s)
{
    uint8_t t = FT_DONE;
    (void)sk_conn_send_msg(s->conn, &t, 1);
}

static int do_mkdir(fsess *s, uint16_t mode, const char *path)
{
    int fd = files_walk_dir(s->svc->root.fd, path, true);
    if (fd < 0)
        return -fd;
    int rc = fchmod(fd, mode) < 0 ? errno : 0;
    close(fd);
    return rc;
}

/* The link is made under a hidden name and renamed over the entry, so a
 * reader sees the old entry or the new link, never neither. */
static int do_symlink(fsess *s, const char *target, const char *path)
{
    const char *name;
    int dfd = files_walk_parent(s->svc->root.fd, path, true, &name);
    if (dfd < 0)
        return -dfd;
    char tmp[FILES_NAME_MAX + 1];
    snprintf(tmp, sizeof tmp, "%s%.200s.%08lx", FILES_PARTIAL_PREFIX, name,
             (unsigned long)((unsigned)getpid() ^ (unsigned)(uintptr_t)s));
    int rc = 0;
    (void)unlinkat(dfd, tmp, 0);
    if (symlinkat(target, dfd, tmp) < 0) {
        rc = errno;
    } else if (renameat(dfd, tmp, dfd, name) < 0) {
        rc = errno == EISDIR || errno == ENOTEMPTY ? EISDIR : errno;
        (void)unlinkat(dfd, tmp, 0);
    }
    close(dfd);
    return rc;
}

static int do_meta(fsess *s, uint16_t mode, const struct timespec *mt, const char *path)
{
    const char *name;
    int dfd = files_walk_parent(s->svc->root.fd, path, false, &name);
    if (dfd < 0)
        return -dfd;
    struct timespec ts[2] = {{0, UTIME_OMIT}, *mt};
    struct stat st;
    int rc = 0;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        rc = errno;
    } else if (S_ISLNK(st.st_mode)) {
        /* A link has no mode of its own on Linux; its mtime is set without
         * following it. */
        if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
            rc = errno;
    } else if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
        int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        struct stat now;
        if (fd < 0)
            rc = errno;
        else if (fstat(fd, &now) < 0 || now.st_ino != st.st_ino || now.st_dev != st.st_dev)
            rc = EAGAIN; /* replaced under us */
        else if (fchmod(fd, mode) < 0 || futimens(fd, ts) < 0)
            rc = errno;
        if (fd >= 0)
            close(fd);
    } else {
        rc = ENOTDIR;
    }
    close(dfd);
    return rc;
}

static int do_delete(fsess *s, const char *path)
{
    const char *name;
    int dfd = files_walk_parent(s->svc->root.fd, path, false, &name);
    if (dfd < 0)
        return -dfd;
    int rc = files_remove_tree(dfd, name);
    close(dfd);
    return -rc;
}

void files_tree_op(fsess *s, uint8_t type, const uint8_t *body, size_t len)
{
    static const char *const ops[] = {"mkdir", "symlink", "meta", "delete"};
    const char *op = ops[type - FT_MKDIR];
    size_t fixed = type == FT_MKDIR ? 2 : type == FT_META ? 14 : type == FT_SYMLINK ? 2 : 0;
    if (len < fixed) {
        files_fail(s, "a tree request too short for its fields");
        return;
    }
    char target[FILES_LINK_MAX + 1] = "";
    if (type == FT_SYMLINK) {
        size_t tl = proto_get16(body);
        if (tl == 0 || tl > FILES_LINK_MAX || tl > len - 2 || memchr(body + 2, '\0', tl)) {
            files_send_error(s, FE_BADPATH, "symlink: a link target must be 1 to %u bytes, no NUL",
                             FILES_LINK_MAX);
            return;
        }
        memcpy(target, body + 2, tl);
        target[tl] = '\0';
        fixed = 2 + tl;
    }
    char path[FILES_PATH_MAX + 1], why[PROTO_ERROR_TEXT_MAX];
    const uint8_t *p = body + fixed;
    size_t plen = len - fixed;
    if (files_path_check((const char *)p, plen, false, why, sizeof why) < 0) {
        files_refuse_path(s, op, why);
        return;
    }
    memcpy(path, p, plen);
    path[plen] = '\0';
    if (s->svc->o.read_only) {
        files_send_error(s, FE_READONLY, "this server is read-only: %s refused", op);
        return;
    }
    uint16_t mask = s->svc->o.keep_special_bits ? 07777 : 0777;
    int rc = 0;
    switch (type) {
    case FT_MKDIR: rc = do_mkdir(s, proto_get16(body) & mask, path); break;
    case FT_SYMLINK: rc = do_symlink(s, target, path); break;
    case FT_META: {
        struct timespec mt;
        mt.tv_sec = (time_t)(int64_t)files_get64(body + 2);
        uint32_t ns = (uint32_t)body[10] << 24 | (uint32_t)body[11] << 16 |
                      (uint32_t)body[12] << 8 | body[13];
        if (ns >= 1000000000u) {
            files_send_error(s, FE_BADPATH, "meta: nanoseconds must be below 1e9");
            return;
        }
        mt.tv_nsec = (long)ns;
        rc = do_meta(s, proto_get16(body) & mask, &mt, path);
        break;
    }
    default: rc = do_delete(s, path); break;
    }
    if (rc != 0)
        refuse(s, op, path, rc);
    else
        done(s);
}
