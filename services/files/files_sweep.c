/* files_sweep.c — removes partial uploads nobody finished: a thread that
 * walks the tree below the root every quarter of --partial-ttl (between 1 s
 * and 1 h) and deletes each partial file untouched for --partial-ttl. A
 * thread, not the loops: a walk of a large tree must not stall transfers.
 * It never follows a symbolic link (O_NOFOLLOW at every step, from the
 * root descriptor), and never removes a partial that an upload holds: each
 * is locked (flock) while it is written, and the sweeper removes only what
 * it could lock and what is still, under its name, the file it locked.
 * The walk also notes every file's inode, for the hash cache's pruning
 * (files_hsweep.c). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "files_int.h"

#define SWEEP_MIN_MS 1000u
#define SWEEP_MAX_MS (3600u * 1000u)

struct files_sweeper {
    const files_svc *svc;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
};

/* Removes dir/name if it is a partial upload untouched for the TTL that no
 * upload holds. Returns 1 if removed. */
static int sweep_one(const files_svc *svc, int dirfd, const char *dirpath, const char *name,
                     time_t now)
{
    struct stat before, locked;
    time_t ttl = (time_t)svc->o.partial_ttl_s;
    if (fstatat(dirfd, name, &before, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(before.st_mode) ||
        now - before.st_mtim.tv_sec < ttl)
        return 0;
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return 0;
    int removed = 0;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &locked) == 0 &&
        locked.st_ino == before.st_ino && locked.st_dev == before.st_dev &&
        now - locked.st_mtim.tv_sec >= ttl) {
        /* Still the same file under the name, and ours while locked: an
         * upload that resumes it now waits for the lock, then finds the
         * name gone and starts a new partial. */
        struct stat again;
        if (fstatat(dirfd, name, &again, AT_SYMLINK_NOFOLLOW) == 0 &&
            again.st_ino == locked.st_ino && unlinkat(dirfd, name, 0) == 0) {
            removed = 1;
            char what[300];
            char full[FILES_PATH_MAX + FILES_NAME_MAX + 2];
            snprintf(full, sizeof full, "%s%s%s", dirpath, dirpath[0] ? "/" : "", name);
            files_describe(what, sizeof what, full);
            sk_log(SK_LOG_INFO,
                   "files: removed the unfinished upload %s (%llu bytes, untouched "
                   "for %.1f h; --partial-ttl %u s)",
                   what, (unsigned long long)locked.st_size,
                   (double)(now - locked.st_mtim.tv_sec) / 3600.0, svc->o.partial_ttl_s);
        }
    }
    close(fd);
    return removed;
}

/* Adds dir/name's (device, inode) to seen if it is a regular file. */
static void note_file(files_inoset *seen, int dirfd, const char *name)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
        files_inoset_add(seen, st.st_dev, st.st_ino);
}

unsigned files_sweep_once(const files_svc *svc)
{
    DIR *stack[FILES_DEPTH_MAX + 1];
    size_t plen[FILES_DEPTH_MAX + 1];
    char path[FILES_PATH_MAX + 1] = "";
    unsigned removed = 0;
    time_t now = time(NULL);
    /* Every file's (device, inode), for the hash cache's pruning; a walk
     * cut short (a directory it could not open, too deep) prunes nothing. */
    files_inoset seen = {0};
    int fd = openat(svc->root.fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    stack[0] = fdopendir(fd);
    if (stack[0] == NULL) {
        close(fd);
        return 0;
    }
    plen[0] = 0;
    int depth = 0;
    while (depth >= 0) {
        DIR *d = stack[depth];
        struct dirent *e = readdir(d);
        if (e == NULL) {
            closedir(d);
            depth--;
            if (depth >= 0)
                path[plen[depth]] = '\0';
            continue;
        }
        const char *name = e->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (strncmp(name, FILES_PARTIAL_PREFIX, sizeof FILES_PARTIAL_PREFIX - 1) == 0) {
            if (sweep_one(svc, dirfd(d), path, name, now) == 1)
                removed++;
            else
                note_file(&seen, dirfd(d), name); /* kept: a file like any other */
            continue;
        }
        bool is_dir = e->d_type == DT_DIR;
        if (e->d_type == DT_UNKNOWN) {
            struct stat st;
            is_dir = fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
        }
        if (!is_dir && (e->d_type == DT_REG || e->d_type == DT_UNKNOWN))
            note_file(&seen, dirfd(d), name);
        size_t nlen = strlen(name);
        if (!is_dir)
            continue;
        if (depth + 1 >= (int)FILES_DEPTH_MAX || plen[depth] + 1 + nlen > FILES_PATH_MAX) {
            seen.overflow = true; /* not walked: its files are not noted */
            continue;
        }
        int sub = openat(dirfd(d), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *sd = sub >= 0 ? fdopendir(sub) : NULL;
        if (sd == NULL) {
            if (sub >= 0)
                close(sub);
            seen.overflow = true;
            continue;
        }
        size_t at = plen[depth];
        if (at > 0)
            path[at++] = '/';
        memcpy(path + at, name, nlen + 1);
        depth++;
        stack[depth] = sd;
        plen[depth] = at + nlen;
    }
    files_hcache_prune(svc, &seen, now);
    files_inoset_free(&seen);
    return removed;
}

static void *sweeper_main(void *arg)
{
    files_sweeper *sw = arg;
    uint64_t ms = (uint64_t)sw->svc->o.partial_ttl_s * 1000u / 4u;
    if (ms < SWEEP_MIN_MS)
        ms = SWEEP_MIN_MS;
    if (ms > SWEEP_MAX_MS)
        ms = SWEEP_MAX_MS;
    pthread_mutex_lock(&sw->mu);
    while (!sw->stop) {
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)(ms / 1000u);
        until.tv_nsec += (long)(ms % 1000u) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        while (!sw->stop && pthread_cond_timedwait(&sw->cv, &sw->mu, &until) != ETIMEDOUT) {
        }
        if (sw->stop)
            break;
        pthread_mutex_unlock(&sw->mu);
        files_sweep_once(sw->svc);
        pthread_mutex_lock(&sw->mu);
    }
    pthread_mutex_unlock(&sw->mu);
    return NULL;
}

files_sweeper *files_sweeper_start(files_svc *svc, char *err, size_t errlen)
{
    files_sweeper *sw = calloc(1, sizeof *sw);
    if (sw == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sw->svc = svc;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&sw->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&sw->mu, NULL);
    /* The thread takes no signal at all: it starts with every one blocked
     * (a new thread inherits its creator's mask). Process-wide signals
     * would otherwise be free to land here — SIGCHLD above all, which the
     * exec service reads through a signalfd, and which a thread that does
     * not block it would swallow. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&sw->thread, NULL, sweeper_main, sw);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the partial-file sweeper: %s", strerror(rc));
        pthread_cond_destroy(&sw->cv);
        pthread_mutex_destroy(&sw->mu);
        free(sw);
        return NULL;
    }
    return sw;
}

void files_sweeper_stop(files_sweeper *sw)
{
    if (sw == NULL)
        return;
    pthread_mutex_lock(&sw->mu);
    sw->stop = true;
    pthread_cond_signal(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
    pthread_join(sw->thread, NULL);
    pthread_cond_destroy(&sw->cv);
    pthread_mutex_destroy(&sw->mu);
    free(sw);
}
