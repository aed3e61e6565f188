/* files_walk.c — what the server's tree requests and `sockit get -r` share:
 * the tree entry on the wire, and opening, making and removing directories
 * beneath a base directory without ever following a symbolic link (so a
 * link that a peer made cannot lead a later path out, or anywhere). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "../proto/proto.h"
#include "files_proto.h"

/* Directories removed below one DELETE at most this deep: the path rules
 * bound a path to 64 components, and a tree deeper than its path allows
 * cannot have been made through the protocol. */
#define WALK_RM_DEPTH 128

size_t files_tentry_put(uint8_t *out, const files_tentry *e)
{
    out[0] = e->type;
    files_put64(out + 1, e->size);
    files_put64(out + 9, (uint64_t)e->mtime);
    out[17] = (uint8_t)(e->mtime_ns >> 24);
    out[18] = (uint8_t)(e->mtime_ns >> 16);
    out[19] = (uint8_t)(e->mtime_ns >> 8);
    out[20] = (uint8_t)e->mtime_ns;
    proto_put16(out + 21, e->mode);
    proto_put16(out + 23, (uint16_t)e->name_len);
    memcpy(out + 25, e->name, e->name_len);
    proto_put16(out + 25 + e->name_len, (uint16_t)e->target_len);
    if (e->target_len > 0)
        memcpy(out + 27 + e->name_len, e->target, e->target_len);
    return FILES_TENTRY_FIXED + e->name_len + e->target_len;
}

size_t files_tentry_get(const uint8_t *p, size_t len, files_tentry *e)
{
    if (len < FILES_TENTRY_FIXED)
        return 0;
    e->type = p[0];
    e->size = files_get64(p + 1);
    e->mtime = (int64_t)files_get64(p + 9);
    e->mtime_ns = (uint32_t)p[17] << 24 | (uint32_t)p[18] << 16 | (uint32_t)p[19] << 8 | p[20];
    e->mode = proto_get16(p + 21);
    e->name_len = proto_get16(p + 23);
    if (e->name_len == 0 || e->name_len > FILES_NAME_MAX || e->name_len > len - FILES_TENTRY_FIXED)
        return 0;
    e->name = p + 25;
    e->target_len = proto_get16(p + 25 + e->name_len);
    e->target = p + 27 + e->name_len;
    if (e->target_len > len - FILES_TENTRY_FIXED - e->name_len || e->target_len > FILES_LINK_MAX)
        return 0;
    if ((e->type != 'f' && e->type != 'd' && e->type != 'l') || e->mtime_ns >= 1000000000u ||
        (e->type != 'l' && e->target_len != 0) || (e->type == 'l' && e->target_len == 0))
        return 0;
    if (memchr(e->name, '/', e->name_len) || memchr(e->name, '\0', e->name_len) ||
        memchr(e->target, '\0', e->target_len))
        return 0;
    if ((e->name_len == 1 && e->name[0] == '.') ||
        (e->name_len == 2 && e->name[0] == '.' && e->name[1] == '.'))
        return 0;
    return FILES_TENTRY_FIXED + e->name_len + e->target_len;
}

/* One checked component beneath dirfd, no link followed: openat2 where the
 * kernel has it (its refusal is the kernel's), else O_NOFOLLOW, which for a
 * single name without '/' is just as tight. */
static int open_one(int dirfd, const char *name, int flags)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(flags | O_CLOEXEC | O_NOFOLLOW);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, dirfd, name, &how, sizeof how);
    if (fd >= 0)
        return (int)fd;
    if (errno != ENOSYS && errno != EPERM && errno != E2BIG)
        return -errno;
    fd = openat(dirfd, name, flags | O_CLOEXEC | O_NOFOLLOW);
    return fd >= 0 ? (int)fd : -errno;
}

int files_walk_dir(int base, const char *path, bool create)
{
    /* A fresh open of base, never a dup: a dup shares its file offset, so
     * one listing read to the end would leave base (the server's root)
     * empty for every later listing. */
    int fd = openat(base, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char name[FILES_NAME_MAX + 1];
    for (const char *p = path; *p != '\0';) {
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n == 0 || n > FILES_NAME_MAX) {
            close(fd);
            return -EINVAL;
        }
        memcpy(name, p, n);
        name[n] = '\0';
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) {
            close(fd);
            return -EINVAL;
        }
        int next = open_one(fd, name, O_RDONLY | O_DIRECTORY);
        if (next == -ENOENT && create) {
            if (mkdirat(fd, name, 0755) < 0 && errno != EEXIST) {
                int err = -errno;
                close(fd);
                return err;
            }
            next = open_one(fd, name, O_RDONLY | O_DIRECTORY);
        }
        if (next == -ENOTDIR) {
            /* O_NOFOLLOW | O_DIRECTORY on a link may say ENOTDIR: name it. */
            struct stat st;
            if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode))
                next = -ELOOP;
        }
        close(fd);
        if (next < 0)
            return next; /* -ELOOP: a link on the way */
        fd = next;
        p += n;
        if (*p == '/')
            p++;
    }
    return fd;
}

int files_walk_parent(int base, const char *path, bool create, const char **name)
{
    const char *slash = strrchr(path, '/');
    *name = slash ? slash + 1 : path;
    char dir[FILES_PATH_MAX + 1];
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    if (dlen > FILES_PATH_MAX)
        return -ENAMETOOLONG;
    memcpy(dir, path, dlen);
    dir[dlen] = '\0';
    return files_walk_dir(base, dir, create);
}

static int remove_in(int parent, const char *name, int depth)
{
    if (unlinkat(parent, name, 0) == 0)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    if (depth >= WALK_RM_DEPTH)
        return -ELOOP;
    int fd = open_one(parent, name, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return fd;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -ENOMEM;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            if (errno != 0)
                rc = -errno;
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        int r = remove_in(dirfd(d), e->d_name, depth + 1);
        if (r < 0 && rc == 0)
            rc = r;
    }
    closedir(d);
    if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) < 0)
        rc = -errno;
    return rc;
}

int files_remove_tree(int dirfd, const char *name) { return remove_in(dirfd, name, 0); }
