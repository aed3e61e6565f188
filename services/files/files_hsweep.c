/* files_hsweep.c — keeps the hash cache's disk use bounded: after each
 * sweep of the tree (files_sweep.c), the records of files that no longer
 * exist (deleted, or renamed over: their inode is gone) and the temporary
 * record files a crash left are removed. A record is named after its
 * file's (device, inode); one whose inode the walk did not see is stale.
 * Records made since the walk began, and temporary files younger than a
 * minute, are left alone: they may belong to files made meanwhile. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files_int.h"

#define INOSET_MAX (1u << 22) /* 64 MiB of keys at most; beyond, no pruning */
#define TMP_AGE_S  60

bool files_inoset_add(files_inoset *set, dev_t dev, ino_t ino)
{
    if (set->overflow)
        return false;
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 1024;
        files_ino *k = cap <= INOSET_MAX ? realloc(set->keys, cap * sizeof k[0]) : NULL;
        if (k == NULL) {
            set->overflow = true;
            return false;
        }
        set->keys = k;
        set->cap = cap;
    }
    set->keys[set->n].dev = (uint64_t)dev;
    set->keys[set->n].ino = (uint64_t)ino;
    set->n++;
    return true;
}

void files_inoset_free(files_inoset *set)
{
    free(set->keys);
    memset(set, 0, sizeof set[0]);
}

static int cmp(const void *a, const void *b)
{
    const files_ino *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    return x->ino < y->ino ? -1 : x->ino > y->ino;
}

unsigned files_hcache_prune(const files_svc *svc, files_inoset *seen, time_t started)
{
    if (seen->overflow)
        return 0;
    int dfd =
        openat(svc->root.fd, FILES_HCACHE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return 0;
    DIR *d = fdopendir(dfd);
    if (d == NULL) {
        close(dfd);
        return 0;
    }
    if (seen->n > 0)
        qsort(seen->keys, seen->n, sizeof seen->keys[0], cmp);
    time_t now = time(NULL);
    unsigned removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        struct stat st;
        if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0')))
            continue;
        if (fstatat(dirfd(d), name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        bool stale;
        if (strncmp(name, ".tmp.", 5) == 0) {
            stale = now - st.st_mtim.tv_sec >= TMP_AGE_S; /* a crash's leftover */
        } else {
            files_ino k;
            int used = 0;
            if (sscanf(name, "%" SCNx64 "-%" SCNx64 "%n", &k.dev, &k.ino, &used) != 2 ||
                name[used] != '\0')
                continue; /* not a record: not ours to remove */
            stale = st.st_mtim.tv_sec < started &&
                    (seen->n == 0 || bsearch(&k, seen->keys, seen->n, sizeof k, cmp) == NULL);
        }
        if (stale && unlinkat(dirfd(d), name, 0) == 0)
            removed++;
    }
    closedir(d);
    if (removed > 0)
        sk_log(SK_LOG_INFO, "files: removed %u stale hash cache records", removed);
    return removed;
}
