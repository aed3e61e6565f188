/* contain.c — what stops a command's leftovers from outliving it, for
 * proc.c: listing this process's children through /proc (the child
 * subreaper's sweep kills the ones no running command owns), and the
 * cgroup v2 directories, one per command, whose cgroup.kill ends everything
 * a command started wherever it went (setsid, double fork). Not a sandbox:
 * no resource limits are set here. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "internal.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

/* Where the unified hierarchy is mounted; a build may point it elsewhere
 * (a hybrid system's /sys/fs/cgroup/unified, to test this path there). */
#ifndef SK_CGROUP_ROOT
#define SK_CGROUP_ROOT "/sys/fs/cgroup"
#endif
#define CGROUP_ROOT SK_CGROUP_ROOT

/* Reads a small /proc or cgroupfs file whole; returns its length or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    size_t off = 0;
    while (off + 1 < cap) {
        ssize_t n = read(fd, buf + off, cap - 1 - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    buf[off] = '\0';
    return (ssize_t)off;
}

static int write_small(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, text, strlen(text));
    int err = n < 0 ? -errno : 0;
    close(fd);
    return err;
}

int sk__proc_stat(pid_t pid, pid_t *pgid, char *state)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (read_small(path, buf, sizeof buf) <= 0)
        return -ESRCH;
    /* The command name in parentheses may hold anything, spaces and ')'
     * included: the fields that follow start after the last ')'. */
    char *p = strrchr(buf, ')');
    int ppid, grp;
    char st;
    if (p == NULL || sscanf(p + 1, " %c %d %d", &st, &ppid, &grp) != 3)
        return -EIO;
    *pgid = (pid_t)grp;
    *state = st;
    return 0;
}

/* Without /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN): every process
 * whose parent is us, from /proc/PID/stat. Slower, same answer. */
static size_t children_by_scan(pid_t *out, size_t cap)
{
    DIR *d = opendir("/proc");
    if (d == NULL)
        return 0;
    pid_t self = getpid();
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < cap) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0)
            continue;
        char path[64], buf[512];
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        if (read_small(path, buf, sizeof buf) <= 0)
            continue;
        char *p = strrchr(buf, ')'), st;
        int ppid;
        if (p && sscanf(p + 1, " %c %d", &st, &ppid) == 2 && ppid == self)
            out[n++] = (pid_t)pid;
    }
    closedir(d);
    return n;
}

size_t sk__children(pid_t *out, size_t cap)
{
    /* An orphan is re-parented to some thread of the subreaper, not
     * necessarily the one that forked: every thread's list counts. */
    DIR *d = opendir("/proc/self/task");
    if (d == NULL)
        return children_by_scan(out, cap);
    size_t n = 0;
    bool have_file = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < cap) {
        if (e->d_name[0] == '.')
            continue;
        char path[80], buf[4096];
        snprintf(path, sizeof path, "/proc/self/task/%.20s/children", e->d_name);
        if (read_small(path, buf, sizeof buf) < 0)
            continue;
        have_file = true;
        for (char *p = buf; *p && n < cap;) {
            char *end;
            long pid = strtol(p, &end, 10);
            if (end == p)
                break;
            if (pid > 0)
                out[n++] = (pid_t)pid;
            p = end;
        }
    }
    closedir(d);
    return have_file ? n : children_by_scan(out, cap);
}

/* ------------------------------------------------------------ cgroup v2 */

/* One directory per command under the server's own: cg_base/c<id>. A
 * directory is kept (ended) until rmdir succeeds, which needs every
 * process of it gone and reaped. */
typedef struct cg_node {
    unsigned id;
    bool ended;
    struct cg_node *next;
} cg_node;

static struct {
    char base[PATH_MAX / 2];
    unsigned next_id;
    cg_node *list;
} cg;

int sk__cg_setup(char *where, size_t wlen)
{
    struct statfs fs;
    if (statfs(CGROUP_ROOT, &fs) < 0 || fs.f_type != CGROUP2_SUPER_MAGIC)
        return -ENOTSUP; /* no unified hierarchy there (cgroup v1, or none) */
    char buf[4096];
    if (read_small("/proc/self/cgroup", buf, sizeof buf) <= 0)
        return -ENOTSUP;
    char *line = strstr(buf, "0::");
    if (line == NULL || (line != buf && line[-1] != '\n'))
        return -ENOTSUP;
    line += 3;
    line[strcspn(line, "\n")] = '\0';
    if (strcmp(line, "/") == 0)
        line = "";
    int n = snprintf(cg.base, sizeof cg.base, CGROUP_ROOT "%s/sockit-%d", line, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof cg.base - 32)
        return -ENAMETOOLONG;
    /* Creating a child of our own cgroup needs it delegated to us (or
     * root); cgroup.kill needs Linux 5.14. Either missing: no cgroups. */
    if (mkdir(cg.base, 0755) < 0 && errno != EEXIST)
        return -errno;
    char kill_path[PATH_MAX];
    snprintf(kill_path, sizeof kill_path, "%s/cgroup.kill", cg.base);
    if (access(kill_path, W_OK) < 0) {
        int err = -errno;
        rmdir(cg.base);
        return err;
    }
    snprintf(where, wlen, "%s", cg.base);
    return 0;
}

int sk__cg_new(unsigned *id, int *procs_fd)
{
    cg_node *node = malloc(sizeof *node);
    if (node == NULL)
        return -ENOMEM;
    char path[PATH_MAX];
    unsigned i = cg.next_id++;
    snprintf(path, sizeof path, "%s/c%u", cg.base, i);
    if (mkdir(path, 0755) < 0) {
        int err = -errno;
        free(node);
        return err;
    }
    snprintf(path, sizeof path, "%s/c%u/cgroup.procs", cg.base, i);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        int err = -errno;
        snprintf(path, sizeof path, "%s/c%u", cg.base, i);
        rmdir(path);
        free(node);
        return err;
    }
    node->id = i;
    node->ended = false;
    node->next = cg.list;
    cg.list = node;
    *id = i;
    *procs_fd = fd;
    return 0;
}

void sk__cg_kill(unsigned id)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/c%u/cgroup.kill", cg.base, id);
    (void)write_small(path, "1");
}

void sk__cg_end(unsigned id)
{
    sk__cg_kill(id);
    for (cg_node *n = cg.list; n; n = n->next)
        if (n->id == id)
            n->ended = true;
}

void sk__cg_tidy(bool all)
{
    for (cg_node **pp = &cg.list; *pp;) {
        cg_node *n = *pp;
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/c%u", cg.base, n->id);
        if ((n->ended || all) && rmdir(path) == 0) {
            *pp = n->next;
            free(n);
            continue;
        }
        pp = &n->next;
    }
}

void sk__cg_kill_all(void)
{
    for (cg_node *n = cg.list; n; n = n->next)
        sk__cg_kill(n->id);
}

void sk__cg_teardown(void)
{
    sk__cg_tidy(true);
    while (cg.list) { /* still busy: forget them, the directories stay */
        cg_node *n = cg.list;
        cg.list = n->next;
        free(n);
    }
    if (cg.base[0])
        (void)rmdir(cg.base);
    cg.base[0] = '\0';
}
