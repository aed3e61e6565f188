/* files_path.c — confinement for the files service: every path a client
 * names is checked as a string, then opened beneath the root directory the
 * server holds open, so that the kernel, not only the string check, keeps
 * it inside: openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), or, where
 * openat2 is not permitted (old kernels, seccomp filters that answer ENOSYS
 * or EPERM), a walk of the components with openat(O_NOFOLLOW) that refuses
 * every symbolic link. Nothing here is opened through a path from "/". */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "files_int.h"

int files_path_check(const char *path, size_t len, bool allow_root, char *why, size_t whylen)
{
    if (len == 0) {
        if (allow_root)
            return 0;
        snprintf(why, whylen, "the path is empty");
        return -1;
    }
    if (memchr(path, '\0', len) != NULL) {
        snprintf(why, whylen, "the path contains a NUL byte");
        return -1;
    }
    if (len > FILES_PATH_MAX) {
        snprintf(why, whylen, "the path is longer than %u bytes", FILES_PATH_MAX);
        return -1;
    }
    if (path[0] == '/') {
        snprintf(why, whylen, "absolute paths are refused: name a file below the root");
        return -1;
    }
    size_t depth = 0;
    for (size_t i = 0; i <= len;) {
        const char *end = memchr(path + i, '/', len - i);
        size_t clen = end ? (size_t)(end - (path + i)) : len - i;
        const char *c = path + i;
        if (clen == 0) {
            snprintf(why, whylen, "the path has an empty component (\"//\" or a '/' at the end)");
            return -1;
        }
        if ((clen == 1 && c[0] == '.') || (clen == 2 && c[0] == '.' && c[1] == '.')) {
            snprintf(why, whylen, "\"%.*s\" is refused in a path: name a file below the root",
                     (int)clen, c);
            return -1;
        }
        if (clen > FILES_NAME_MAX) {
            snprintf(why, whylen, "a path component is longer than %u bytes", FILES_NAME_MAX);
            return -1;
        }
        if (clen >= sizeof FILES_PARTIAL_PREFIX - 1 &&
            memcmp(c, FILES_PARTIAL_PREFIX, sizeof FILES_PARTIAL_PREFIX - 1) == 0) {
            snprintf(why, whylen,
                     "names starting with \"%s\" are reserved for transfers "
                     "in progress",
                     FILES_PARTIAL_PREFIX);
            return -1;
        }
        if (++depth > FILES_DEPTH_MAX) {
            snprintf(why, whylen, "the path is deeper than %u directories", FILES_DEPTH_MAX);
            return -1;
        }
        if (end == NULL)
            break;
        i += clen + 1;
    }
    return 0;
}

/* ----------------------------------------------------------------- opens */

static int sys_openat2(int dirfd, const char *path, int flags, mode_t mode)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned)(flags | O_CLOEXEC);
    /* openat2 refuses a mode without O_CREAT, where openat ignores it. */
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    long fd;
    do
        fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : (int)fd;
}

static bool is_symlink(int dirfd, const char *name)
{
    struct stat st;
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode);
}

/* The fallback: one component at a time, never following a symbolic link
 * (O_NOFOLLOW on each), so nothing can lead out of the root; ".." never
 * reaches here (files_path_check). Intermediate directories are opened
 * O_PATH, which needs only search permission on them. */
static int walk_open(int rootfd, const char *path, int flags, mode_t mode)
{
    char comp[FILES_NAME_MAX + 1];
    int cur = rootfd;
    const char *p = path;
    int rc;
    for (;;) {
        const char *slash = strchr(p, '/');
        if (slash == NULL)
            break;
        size_t n = (size_t)(slash - p);
        if (n == 0 || n > FILES_NAME_MAX) {
            rc = -EINVAL;
            goto out;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        int next = openat(cur, comp, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            rc = -errno;
            /* O_PATH|O_NOFOLLOW takes a link for itself, so a link where a
             * directory should be reads as "not a directory". */
            if ((rc == -ENOTDIR || rc == -ELOOP) && is_symlink(cur, comp))
                rc = -ELOOP;
            goto out;
        }
        if (cur != rootfd)
            close(cur);
        cur = next;
        p = slash + 1;
    }
    int fd = openat(cur, p, flags | O_NOFOLLOW | O_CLOEXEC, mode);
    rc = fd < 0 ? -errno : fd;
    if (rc == -ENOTDIR && is_symlink(cur, p))
        rc = -ELOOP; /* O_DIRECTORY answers for a link before O_NOFOLLOW does */
    if (fd >= 0 && (flags & O_PATH)) {
        /* O_PATH|O_NOFOLLOW opens a link itself instead of failing. */
        struct stat st;
        if (fstat(fd, &st) < 0 || S_ISLNK(st.st_mode)) {
            close(fd);
            rc = -ELOOP;
        }
    }
out:
    if (cur != rootfd)
        close(cur);
    return rc;
}

int files_open(const files_root *r, const char *path, int flags, mode_t mode)
{
    if (path[0] == '\0') {
        /* The root itself: a fresh open, never a dup, so that reading the
         * directory does not move the offset of the descriptor we share. */
        int fd = openat(r->fd, ".", flags | O_CLOEXEC, mode);
        return fd < 0 ? -errno : fd;
    }
    if (r->use_openat2)
        return sys_openat2(r->fd, path, flags, mode);
    return walk_open(r->fd, path, flags, mode);
}

int files_open_parent(const files_root *r, const char *path, bool create, const char **name)
{
    size_t made;
    return files_open_parent_made(r, path, create, name, &made);
}

int files_open_parent_made(const files_root *r, const char *path, bool create, const char **name,
                           size_t *made)
{
    *made = FILES_MADE_NONE;
    const char *slash = strrchr(path, '/');
    *name = slash ? slash + 1 : path;
    char dir[FILES_PATH_MAX + 1];
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    memcpy(dir, path, dlen);
    dir[dlen] = '\0';
    int fd = files_open(r, dir, O_RDONLY | O_DIRECTORY, 0);
    if (fd != -ENOENT || !create)
        return fd;
    /* Make the missing directories one level at a time, each inside a
     * directory that was itself opened beneath the root: mkdirat with a
     * single name cannot land anywhere else. */
    for (size_t i = 0;;) {
        const char *end = strchr(dir + i, '/');
        size_t e = end ? (size_t)(end - dir) : dlen;
        char saved = dir[e];
        dir[e] = '\0';
        fd = files_open(r, dir, O_RDONLY | O_DIRECTORY, 0);
        if (fd == -ENOENT) {
            int parent;
            if (i == 0) {
                parent = files_open(r, "", O_RDONLY | O_DIRECTORY, 0);
            } else {
                dir[i - 1] = '\0';
                parent = files_open(r, dir, O_RDONLY | O_DIRECTORY, 0);
                dir[i - 1] = '/';
            }
            if (parent < 0)
                return parent;
            int rc = 0;
            if (mkdirat(parent, dir + i, 0755) == 0) {
                if (*made == FILES_MADE_NONE)
                    *made = i;
            } else if (errno != EEXIST) {
                rc = -errno;
            }
            close(parent);
            if (rc < 0)
                return rc;
            fd = files_open(r, dir, O_RDONLY | O_DIRECTORY, 0);
        }
        dir[e] = saved;
        if (fd < 0 || e == dlen)
            return fd;
        close(fd);
        i = e + 1;
    }
}

void files_remove_made(const files_root *r, const char *path, size_t made)
{
    const char *slash = strrchr(path, '/');
    if (made == FILES_MADE_NONE || slash == NULL || made >= (size_t)(slash - path))
        return;
    char dir[FILES_PATH_MAX + 1];
    size_t dlen = (size_t)(slash - path);
    memcpy(dir, path, dlen);
    dir[dlen] = '\0';
    /* Deepest first, each beneath a parent opened beneath the root, and
     * only while empty: rmdir refuses a directory that holds anything (a
     * file or partial someone else has put there meanwhile). */
    while (dlen > made) {
        char *last = strrchr(dir, '/');
        const char *leaf = last ? last + 1 : dir;
        if (last != NULL)
            *last = '\0';
        int parent = files_open(r, last ? dir : "", O_RDONLY | O_DIRECTORY, 0);
        if (parent < 0)
            return;
        int rc = unlinkat(parent, leaf, AT_REMOVEDIR);
        close(parent);
        if (rc < 0 || last == NULL)
            return;
        dlen = (size_t)(last - dir);
    }
}

int files_root_open(files_root *r, const char *dir, bool no_openat2, char *why, size_t whylen)
{
    r->fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (r->fd < 0) {
        int e = errno;
        snprintf(why, whylen, "--root %s: %s", dir, e == ENOTDIR ? "not a directory" : strerror(e));
        return -e;
    }
    r->use_openat2 = false;
    r->why_fallback = no_openat2 ? "SOCKIT_NO_OPENAT2 is set" : NULL;
    if (no_openat2)
        return 0;
    /* One probe decides for the life of the server: a kernel before 5.6
     * answers ENOSYS, a seccomp filter typically ENOSYS or EPERM. Later
     * errors of openat2 are real answers about a path, never a reason to
     * switch. */
    int fd = sys_openat2(r->fd, ".", O_PATH | O_DIRECTORY, 0);
    if (fd >= 0) {
        close(fd);
        r->use_openat2 = true;
    } else if (fd == -ENOSYS || fd == -EPERM || fd == -E2BIG || fd == -EINVAL) {
        r->why_fallback =
            fd == -ENOSYS ? "openat2 is not available (ENOSYS)" : "openat2 is not permitted here";
    } else {
        int e = -fd;
        snprintf(why, whylen, "--root %s: %s", dir, strerror(e));
        close(r->fd);
        r->fd = -1;
        return -e;
    }
    return 0;
}

void files_root_close(files_root *r)
{
    if (r->fd >= 0)
        close(r->fd);
    r->fd = -1;
}

int files_open_error(int err, const char *what, char *why, size_t whylen)
{
    switch (-err) {
    case ENOENT: snprintf(why, whylen, "%s: no such file or directory", what); return FE_NOTFOUND;
    case EACCES:
    case EPERM:
        snprintf(why, whylen, "%s: permission denied on the server", what);
        return FE_DENIED;
    case EXDEV:
        snprintf(why, whylen,
                 "%s: refused: it leads out of the served directory "
                 "(a symbolic link?)",
                 what);
        return FE_BADPATH;
    case ELOOP:
        snprintf(why, whylen, "%s: refused: a symbolic link this server does not follow", what);
        return FE_BADPATH;
    case ENOTDIR:
        snprintf(why, whylen, "%s: a component of the path is not a directory", what);
        return FE_TYPE;
    case EISDIR: snprintf(why, whylen, "%s: is a directory", what); return FE_TYPE;
    case ENOSPC:
    case EDQUOT: snprintf(why, whylen, "%s: no space left on the server", what); return FE_NOSPACE;
    case EROFS:
        snprintf(why, whylen, "%s: the server's file system is read-only", what);
        return FE_READONLY;
    case ENAMETOOLONG:
        snprintf(why, whylen, "%s: name too long for the server's file system", what);
        return FE_BADPATH;
    case ENXIO:
    case ETXTBSY:
        snprintf(why, whylen, "%s: not a regular file or directory", what);
        return FE_TYPE;
    default: snprintf(why, whylen, "%s: %s", what, strerror(-err)); return FE_IO;
    }
}
