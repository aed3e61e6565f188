/* files_hcache.c — the server's hash cache: each file's chunk hashes and
 * whole SHA-256, kept in a hidden index beneath the root
 * (.sockit-partial.chunks/, a name no client can address or list) as one
 * record per (device, inode), valid only while the file's size, mtime and
 * ctime (to the nanosecond) are those it was hashed with. An extended
 * attribute would change the very ctime that keys it, so the index is a
 * separate file. A record is checked by its own SHA-256 (a torn write is a
 * miss, never wrong hashes) and replaced by rename. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <openssl/evp.h>

#include "files_int.h"

static const uint8_t MAGIC[8] = {'S', 'K', 'C', 'H', 'U', 'N', 'K', '1'};
/* magic, dev, ino, size, mtime ns, ctime ns (8 each), chunk size (4),
 * count (8), the whole file's hash */
#define HEAD (8u * 6u + 4u + 8u + FILES_HASH)

static int64_t ns(const struct timespec *t) { return (int64_t)t->tv_sec * 1000000000 + t->tv_nsec; }

static void record_name(char out[64], const struct stat *st)
{
    snprintf(out, 64, "%" PRIx64 "-%" PRIx64, (uint64_t)st->st_dev, (uint64_t)st->st_ino);
}

/* The index directory, made (0700) when make. */
static int index_dir(const files_svc *svc, bool make)
{
    int fd =
        openat(svc->root.fd, FILES_HCACHE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && make) {
        if (mkdirat(svc->root.fd, FILES_HCACHE_DIR, 0700) < 0 && errno != EEXIST)
            return -1;
        fd =
            openat(svc->root.fd, FILES_HCACHE_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    return fd;
}

static void put_head(uint8_t *p, const struct stat *st, uint64_t count, const uint8_t *whole)
{
    memcpy(p, MAGIC, 8);
    files_put64(p + 8, (uint64_t)st->st_dev);
    files_put64(p + 16, (uint64_t)st->st_ino);
    files_put64(p + 24, (uint64_t)st->st_size);
    files_put64(p + 32, (uint64_t)ns(&st->st_mtim));
    files_put64(p + 40, (uint64_t)ns(&st->st_ctim));
    proto_put32(p + 48, FILES_CHUNK);
    files_put64(p + 52, count);
    memcpy(p + 60, whole, FILES_HASH);
}

bool files_hcache_get(const files_svc *svc, const struct stat *st, files_hlist *out)
{
    memset(out, 0, sizeof out[0]);
    int dfd = index_dir(svc, false);
    if (dfd < 0)
        return false;
    bool ok = files_hrec_get(dfd, st, out);
    close(dfd);
    return ok;
}

bool files_hrec_get(int dfd, const struct stat *st, files_hlist *out)
{
    memset(out, 0, sizeof out[0]);
    uint64_t count = ((uint64_t)st->st_size + FILES_CHUNK - 1) / FILES_CHUNK;
    if (count > FILES_HCACHE_MAX_CHUNKS)
        return false;
    char name[64];
    record_name(name, st);
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t len = HEAD + (size_t)count * FILES_HASH + FILES_HASH;
    uint8_t *rec = malloc(len + 1);
    struct stat rst;
    bool ok =
        rec != NULL && fstat(fd, &rst) == 0 && S_ISREG(rst.st_mode) && (uint64_t)rst.st_size == len;
    size_t got = 0;
    while (ok && got < len) {
        ssize_t n = pread(fd, rec + got, len - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        ok = n > 0;
        if (ok)
            got += (size_t)n;
    }
    close(fd);
    uint8_t want[HEAD];
    uint8_t sum[FILES_HASH];
    if (ok) {
        /* Every field of the key must be the file's now. */
        put_head(want, st, count, rec + 60);
        ok = memcmp(rec, want, HEAD) == 0 &&
             EVP_Digest(rec, len - FILES_HASH, sum, NULL, EVP_sha256(), NULL) == 1 &&
             memcmp(sum, rec + len - FILES_HASH, FILES_HASH) == 0;
    }
    if (!ok) {
        free(rec);
        return false;
    }
    memcpy(out->whole, rec + 60, FILES_HASH);
    memmove(rec, rec + HEAD, (size_t)count * FILES_HASH);
    out->hashes = rec;
    out->count = count;
    return true;
}

void files_hcache_put(const files_svc *svc, const struct stat *st, const uint8_t *hashes,
                      uint64_t count, const uint8_t whole[FILES_HASH])
{
    if (svc->o.read_only || count > FILES_HCACHE_MAX_CHUNKS)
        return;
    int dfd = index_dir(svc, true);
    if (dfd < 0)
        return;
    files_hrec_put(dfd, st, hashes, count, whole);
    close(dfd);
}

void files_hrec_put(int dfd, const struct stat *st, const uint8_t *hashes, uint64_t count,
                    const uint8_t whole[FILES_HASH])
{
    if (count > FILES_HCACHE_MAX_CHUNKS)
        return;
    char name[64], tmp[96];
    uint8_t rnd[8];
    record_name(name, st);
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return;
    snprintf(tmp, sizeof tmp, ".tmp.%s.%02x%02x%02x%02x%02x%02x%02x%02x", name, rnd[0], rnd[1],
             rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
    size_t len = HEAD + (size_t)count * FILES_HASH + FILES_HASH;
    uint8_t *rec = malloc(len);
    int fd =
        rec ? openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600) : -1;
    bool ok = fd >= 0;
    if (ok) {
        put_head(rec, st, count, whole);
        memcpy(rec + HEAD, hashes, (size_t)count * FILES_HASH);
        ok = EVP_Digest(rec, len - FILES_HASH, rec + len - FILES_HASH, NULL, EVP_sha256(), NULL) ==
             1;
        size_t done = 0;
        while (ok && done < len) {
            ssize_t n = write(fd, rec + done, len - done);
            if (n < 0 && errno == EINTR)
                continue;
            ok = n > 0;
            if (ok)
                done += (size_t)n;
        }
    }
    if (fd >= 0)
        close(fd);
    /* No fsync: a record lost in a crash is a miss, and a torn one fails
     * its own hash. */
    if (ok)
        ok = renameat(dfd, tmp, dfd, name) == 0;
    if (!ok && fd >= 0)
        (void)unlinkat(dfd, tmp, 0);
    free(rec);
}
