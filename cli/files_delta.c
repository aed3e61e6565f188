/* files_delta.c — uploads that move only what differs (PATCH, docs/PROTOCOL.md
 * 9.11): the server's partial (what a cut upload left, or a copy of the
 * file it replaces) is compared with the local file chunk by chunk, and
 * only the chunks whose SHA-256 differs are sent. The local chunk hashes
 * come from the client's own hash cache, keyed as the server's (device,
 * inode, size, mtime, ctime), so an unchanged file is not read to be
 * compared. */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files.h"

/* The client's cache directory, made (0700) as needed; -1 if there is no
 * place for it (no $XDG_CACHE_HOME nor $HOME): then nothing is cached. */
static int cache_dir(void)
{
    const char *xdg = getenv("XDG_CACHE_HOME");
    const char *home = getenv("HOME");
    char path[4096];
    int n;
    if (xdg != NULL && xdg[0] == '/')
        n = snprintf(path, sizeof path, "%s", xdg);
    else if (home != NULL && home[0] == '/')
        n = snprintf(path, sizeof path, "%s/.cache", home);
    else
        return -1;
    if (n < 0 || (size_t)n + sizeof "/sockit/chunks" > sizeof path)
        return -1;
    (void)mkdir(path, 0700);
    strcat(path, "/sockit");
    (void)mkdir(path, 0700);
    strcat(path, "/chunks");
    (void)mkdir(path, 0700);
    return open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

static bool same_stat(const struct stat *a, const struct stat *b)
{
    return a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
           a->st_mtim.tv_nsec == b->st_mtim.tv_nsec && a->st_ctim.tv_sec == b->st_ctim.tv_sec &&
           a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

int files_local_chunks(int fd, const struct stat *st, uint8_t *buf, files_chunk_list *out)
{
    memset(out, 0, sizeof *out);
    uint64_t size = (uint64_t)st->st_size;
    uint64_t count = (size + FILES_CHUNK - 1) / FILES_CHUNK;
    out->size = size;
    out->chunk_size = FILES_CHUNK;
    int dfd = cache_dir();
    files_hlist hit;
    if (dfd >= 0 && files_hrec_get(dfd, st, &hit)) {
        close(dfd);
        out->hashes = hit.hashes;
        out->count = hit.count;
        memcpy(out->whole, hit.whole, FILES_HASH);
        return 0;
    }
    out->hashes = malloc((size_t)(count ? count : 1) * FILES_HASH);
    EVP_MD_CTX *whole = EVP_MD_CTX_new(), *part = EVP_MD_CTX_new();
    int rc = out->hashes && whole && part && EVP_DigestInit_ex(whole, EVP_sha256(), NULL) == 1
                 ? 0
                 : -ENOMEM;
    for (uint64_t i = 0; rc == 0 && i < count; i++) {
        uint64_t off = i * FILES_CHUNK;
        uint64_t n = size - off < FILES_CHUNK ? size - off : FILES_CHUNK;
        if (EVP_DigestInit_ex(part, EVP_sha256(), NULL) != 1) {
            rc = -ENOMEM;
            break;
        }
        for (uint64_t done = 0; rc == 0 && done < n;) {
            size_t want = n - done < FILES_PUT_CHUNK ? (size_t)(n - done) : FILES_PUT_CHUNK;
            ssize_t got = pread(fd, buf, want, (off_t)(off + done));
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0)
                rc = -errno;
            else if (got == 0)
                rc = 1;
            else if (EVP_DigestUpdate(part, buf, (size_t)got) != 1 ||
                     EVP_DigestUpdate(whole, buf, (size_t)got) != 1)
                rc = -ENOMEM;
            else
                done += (uint64_t)got;
        }
        if (rc == 0 && EVP_DigestFinal_ex(part, out->hashes + i * FILES_HASH, NULL) != 1)
            rc = -ENOMEM;
    }
    if (rc == 0 && EVP_DigestFinal_ex(whole, out->whole, NULL) != 1)
        rc = -ENOMEM;
    EVP_MD_CTX_free(whole);
    EVP_MD_CTX_free(part);
    struct stat now;
    if (rc == 0 && (fstat(fd, &now) < 0 || !same_stat(&now, st)))
        rc = 1;
    if (rc == 0) {
        out->count = count;
        if (dfd >= 0)
            files_hrec_put(dfd, st, out->hashes, count, out->whole);
    } else {
        files_chunk_list_free(out);
    }
    if (dfd >= 0)
        close(dfd);
    return rc;
}

/* Sends [off, off+n) of fd as DATA (after a PUT_AT when at), hashing it
 * into md when md is not NULL. Returns 0, 1 when the server spoke (an
 * ERROR waits), 2 when the file is shorter, -1 (printed). */
static int send_range(fconn *c, int fd, uint64_t off, uint64_t n, uint8_t *buf, EVP_MD_CTX *md,
                      bool at)
{
    if (at) {
        uint8_t b[8];
        files_put64(b, off);
        int rc = fc_pending(c) ? 1 : fc_send(c, FT_PUT_AT, b, sizeof b, NULL, 0);
        if (rc != 0)
            return rc;
    }
    for (uint64_t done = 0; done < n;) {
        size_t want = n - done < FILES_PUT_CHUNK ? (size_t)(n - done) : FILES_PUT_CHUNK;
        ssize_t got = pread(fd, buf, want, (off_t)(off + done));
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return 2;
        if (md != NULL && EVP_DigestUpdate(md, buf, (size_t)got) != 1)
            return -1;
        int rc = fc_pending(c) ? 1 : fc_send(c, FT_DATA, buf, (size_t)got, NULL, 0);
        if (rc != 0)
            return rc;
        done += (uint64_t)got;
    }
    return 0;
}

/* A PATCH answered PATCH_RESUME: the server's partial holds `kept` bytes
 * of a cut upload and the hash of them. Ours are hashed into md (the whole
 * file's hash, so nothing is read twice) and, if they match, only the
 * rest is sent; else the whole file, from PUT_AT 0. Returns as send_range,
 * with 2 when the file cannot be read. */
static int resume_put(fconn *c, int fd, uint64_t size, const files_chunk_list *base, uint8_t *buf,
                      EVP_MD_CTX *md, uint64_t *moved)
{
    uint64_t kept = base->size;
    if (kept == 0 || kept % FILES_CHUNK != 0 || kept >= size) {
        cli_err("%s: protocol error: PATCH_RESUME at %llu of a %llu-byte file", c->addr,
                (unsigned long long)kept, (unsigned long long)size);
        return -1;
    }
    uint8_t ours[FILES_HASH];
    EVP_MD_CTX *copy = EVP_MD_CTX_new();
    if (copy == NULL) {
        cli_err("out of memory");
        return -1;
    }
    int rc = files_hash_span(fd, 0, kept, md, buf, FILES_PUT_CHUNK);
    bool ok =
        rc == 0 && EVP_MD_CTX_copy_ex(copy, md) == 1 && EVP_DigestFinal_ex(copy, ours, NULL) == 1;
    EVP_MD_CTX_free(copy);
    if (!ok)
        return 2; /* unreadable or shrunk: the upload cannot be this file */
    if (memcmp(ours, base->whole, FILES_HASH) != 0) {
        /* The file changed since the cut: the kept bytes are not ours. */
        if (EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1)
            return -1;
        kept = 0;
    }
    rc = send_range(c, fd, kept, size - kept, buf, md, true);
    if (rc == 0)
        *moved = size - kept;
    return rc;
}

int files_patch_put(fconn *c, int fd, const struct stat *st, const char *remote,
                    const uint8_t id[FILES_ID], uint8_t *buf, uint64_t *moved)
{
    uint64_t size = (uint64_t)st->st_size;
    uint8_t head[8 + FILES_ID];
    files_put64(head, size);
    memcpy(head + 8, id, FILES_ID);
    *moved = 0;
    if (fc_send(c, FT_PATCH, head, sizeof head, remote, strlen(remote)) != 0)
        return -1;
    files_chunk_list base, ours;
    memset(&ours, 0, sizeof ours);
    int code = 0;
    int rc = files_chunks_recv(c, &base, &code, true);
    if (rc != 0)
        return rc == -2 ? 1 : -1;
    int status = -1;
    uint8_t digest[FILES_HASH];
    EVP_MD_CTX *md = NULL;
    if (base.count == 0) {
        /* Nothing there to compare with, or what a cut upload left and the
         * hash of it: the whole file (or the rest), in order, its hash made
         * on the way (no second read). */
        md = EVP_MD_CTX_new();
        if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
            cli_err("out of memory");
            goto out;
        }
        if (base.resume)
            rc = resume_put(c, fd, size, &base, buf, md, moved);
        else
            rc = size ? send_range(c, fd, 0, size, buf, md, true) : 0;
        if (rc == 0 && EVP_DigestFinal_ex(md, digest, NULL) != 1)
            rc = -1;
        if (rc == 0 && !base.resume)
            *moved = size;
    } else {
        rc = files_local_chunks(fd, st, buf, &ours);
        if (rc < 0) {
            cli_err("cannot read the file for %s: %s", remote, strerror(-rc));
            rc = 3;
        } else if (rc > 0) {
            rc = 2;
        }
        for (uint64_t i = 0; rc == 0 && i < ours.count; i++) {
            if (i < base.count &&
                memcmp(base.hashes + i * FILES_HASH, ours.hashes + i * FILES_HASH, FILES_HASH) == 0)
                continue;
            uint64_t off = i * FILES_CHUNK;
            uint64_t n = size - off < FILES_CHUNK ? size - off : FILES_CHUNK;
            rc = send_range(c, fd, off, n, buf, NULL, true);
            if (rc == 0)
                *moved += n;
        }
        memcpy(digest, ours.whole, FILES_HASH);
    }
    struct stat now;
    if (rc == 0 && (fstat(fd, &now) < 0 || !same_stat(&now, st)))
        rc = 2;
    if (rc == 1) {
        /* The server refused mid-way: its ERROR is waiting. */
        uint8_t body[PROTO_ERROR_TEXT_MAX + 8], type;
        size_t len;
        status = fc_msg(c, &type, body, sizeof body, &len, &code, "the upload") == -2 ? 1 : -1;
        goto out;
    }
    if (rc < 0)
        goto out;
    if (rc >= 2) {
        /* Changed or unreadable: a PUT_END that cannot match makes the
         * server drop the partial's claim to be this file. */
        memset(digest, 0, sizeof digest);
    }
    if (fc_send(c, FT_PUT_END, digest, sizeof digest, NULL, 0) != 0)
        goto out;
    uint8_t msg[64], type;
    size_t len;
    int r = fc_msg(c, &type, msg, sizeof msg, &len, &code, "the server's check of the upload");
    if (rc >= 2) {
        status = r == -1 ? -1 : rc == 2 ? 2 : 1;
        goto out;
    }
    if (r == -2) {
        status = 1;
        goto out;
    }
    if (r != 0 || type != FT_PUT_OK || len != 8 + FILES_HASH || files_get64(msg) != size ||
        memcmp(msg + 8, digest, FILES_HASH) != 0) {
        if (r == 0)
            cli_err("%s: the server's confirmation does not match what was sent", c->addr);
        goto out;
    }
    status = 0;
out:
    EVP_MD_CTX_free(md);
    files_chunk_list_free(&base);
    files_chunk_list_free(&ours);
    return status;
}

/* Copies base's first len bytes into the empty partial fd: a reflink
 * where the file system has them, else copy_file_range, else read/write.
 * Returns the bytes copied or -errno. */
static int64_t copy_into(int fd, int base, uint64_t len, uint8_t *buf, size_t cap)
{
    if (ioctl(fd, FICLONE, base) == 0) {
        if (ftruncate(fd, (off_t)len) < 0)
            return -errno;
        return (int64_t)len;
    }
    uint64_t done = 0;
    bool plain = false;
    while (done < len) {
        ssize_t n;
        if (!plain) {
            loff_t in = (loff_t)done, out = (loff_t)done;
            n = copy_file_range(base, &in, fd, &out, (size_t)(len - done), 0);
            if (n < 0 &&
                (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) {
                plain = true;
                continue;
            }
        } else {
            size_t want = len - done < cap ? (size_t)(len - done) : cap;
            n = pread(base, buf, want, (off_t)done);
            if (n > 0)
                n = pwrite(fd, buf, (size_t)n, (off_t)done);
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        done += (uint64_t)n;
    }
    return (int64_t)done;
}

/* SHA-256 of [off, off+n) of fd. Returns 0, 1 (shorter) or -errno. */
static int hash_range(int fd, uint64_t off, uint64_t n, uint8_t *buf, size_t cap, EVP_MD_CTX *m,
                      uint8_t out[FILES_HASH])
{
    if (EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1)
        return -ENOMEM;
    int rc = files_hash_span(fd, off, n, m, buf, cap);
    if (rc != 0)
        return rc;
    return EVP_DigestFinal_ex(m, out, NULL) == 1 ? 0 : -ENOMEM;
}

/* One GET_RANGE of chunks [first, last) into fd, each chunk checked
 * against its hash in R as it lands. Returns 0, 1 (ERROR printed), 3 (a
 * local error or a mismatch, printed), -1 (connection lost, printed). */
static int get_chunks(fconn *c, const char *remote, int fd, const files_chunk_list *R,
                      uint64_t first, uint64_t last, uint8_t *buf, size_t cap, uint64_t *moved)
{
    uint64_t off = first * FILES_CHUNK;
    uint64_t end = last * FILES_CHUNK < R->size ? last * FILES_CHUNK : R->size;
    uint8_t req[16];
    files_put64(req, off);
    files_put64(req + 8, end - off);
    if (fc_send(c, FT_GET_RANGE, req, sizeof req, remote, strlen(remote)) != 0)
        return -1;
    uint8_t type;
    size_t len;
    int code;
    uint8_t msg[64];
    int r = fc_msg(c, &type, msg, sizeof msg, &len, &code, "the answer to GET_RANGE");
    if (r != 0)
        return r == -2 ? 1 : -1;
    if (type != FT_GET_READY || len != 16 || files_get64(msg + 8) != off) {
        cli_err("%s: protocol error: expected GET_READY at %llu", c->addr, (unsigned long long)off);
        return -1;
    }
    bool changed = files_get64(msg) != R->size;
    EVP_MD_CTX *chunk = EVP_MD_CTX_new();
    if (chunk == NULL || EVP_DigestInit_ex(chunk, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(chunk);
        cli_err("out of memory");
        return -1;
    }
    int status = -1;
    uint64_t pos = off;
    bool bad = false;
    for (;;) {
        if (fc_head(c, &type, &len, "the download") < 0)
            goto out;
        if (type == FT_GET_END && len == FILES_HASH) {
            if (fc_body(c, msg, FILES_HASH, "the download") < 0)
                goto out;
            break;
        }
        if (type == PT_ERROR) {
            uint8_t err[1 + PROTO_ERROR_TEXT_MAX];
            if (len > sizeof err || fc_body(c, err, len, "the download") < 0)
                goto out;
            fc_print_error(c, err, len);
            status = 1;
            goto out;
        }
        if (type != FT_DATA || len > end - pos) {
            cli_err("%s: protocol error: unexpected message 0x%02x in a range", c->addr, type);
            goto out;
        }
        while (len > 0) {
            /* Never across a chunk's end: each chunk's hash is checked. */
            uint64_t to_edge = FILES_CHUNK - pos % FILES_CHUNK;
            size_t n = len < cap ? len : cap;
            if (n > to_edge)
                n = (size_t)to_edge;
            if (fc_body(c, buf, n, "the download") < 0)
                goto out;
            for (size_t w = 0; w < n && !bad;) {
                ssize_t k = pwrite(fd, buf + w, n - w, (off_t)(pos + w));
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0) {
                    cli_err("cannot write the partial download of %s: %s", remote,
                            k < 0 ? strerror(errno) : "no room");
                    bad = true;
                }
                w += k > 0 ? (size_t)k : 0;
            }
            if (EVP_DigestUpdate(chunk, buf, n) != 1)
                goto out;
            pos += n;
            len -= n;
            *moved += n;
            if (pos % FILES_CHUNK == 0 || pos == R->size) {
                uint8_t d[FILES_HASH];
                uint64_t i = (pos - 1) / FILES_CHUNK;
                if (EVP_DigestFinal_ex(chunk, d, NULL) != 1 ||
                    EVP_DigestInit_ex(chunk, EVP_sha256(), NULL) != 1)
                    goto out;
                if (memcmp(d, R->hashes + i * FILES_HASH, FILES_HASH) != 0)
                    changed = true;
            }
        }
    }
    if (pos != end) {
        cli_err("%s: protocol error: a range ended after %llu of %llu bytes", c->addr,
                (unsigned long long)(pos - off), (unsigned long long)(end - off));
        goto out;
    }
    status = 0;
    if (bad) {
        status = 3;
    } else if (changed) {
        cli_err("%s changed on the server while it was being read; run get again", remote);
        status = 3;
    }
out:
    EVP_MD_CTX_free(chunk);
    return status;
}

int files_patch_get(fconn *c, const char *remote, int fd, int base, uint8_t *buf, size_t cap,
                    uint64_t *moved, files_chunk_list *R)
{
    *moved = 0;
    int code = 0;
    int rc = files_chunks_get(c, remote, R, &code);
    if (rc != 0)
        return rc == -2 ? 1 : -1;
    struct stat pst, bst;
    if (fstat(fd, &pst) < 0) {
        cli_err("cannot read the partial download of %s: %s", remote, strerror(errno));
        return 3;
    }
    uint64_t have = (uint64_t)pst.st_size;
    files_chunk_list B;
    memset(&B, 0, sizeof B);
    if (have == 0 && base >= 0 && fstat(base, &bst) == 0 && S_ISREG(bst.st_mode) &&
        bst.st_size > 0) {
        /* Nothing kept from a cut run: start from a copy of the local
         * file, whose chunk hashes the client's cache may know. */
        uint64_t len = (uint64_t)bst.st_size < R->size ? (uint64_t)bst.st_size : R->size;
        int64_t got = copy_into(fd, base, len, buf, cap);
        if (got < 0) {
            cli_err("cannot copy the local file to patch it: %s", strerror((int)-got));
            return 3;
        }
        have = (uint64_t)got;
        struct stat now;
        if (fstat(base, &now) == 0 && same_stat(&now, &bst) &&
            files_local_chunks(base, &bst, buf, &B) == 0) {
            uint64_t n = have / FILES_CHUNK;
            if (have % FILES_CHUNK != 0 && have == (uint64_t)bst.st_size)
                n++;
            B.count = n < B.count ? n : B.count;
        }
    } else if (have > R->size) {
        if (ftruncate(fd, (off_t)R->size) < 0) {
            cli_err("cannot write the partial download of %s: %s", remote, strerror(errno));
            return 3;
        }
        have = R->size;
    }
    int status = 3;
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    if (m == NULL) {
        cli_err("out of memory");
        goto out;
    }
    if (B.hashes == NULL) {
        /* What a cut run kept: checked chunk by chunk, never trusted. */
        uint64_t n = (have + FILES_CHUNK - 1) / FILES_CHUNK;
        B.hashes = malloc((size_t)(n ? n : 1) * FILES_HASH);
        if (B.hashes == NULL) {
            cli_err("out of memory");
            goto out;
        }
        for (B.count = 0; B.count < n; B.count++) {
            uint64_t off = B.count * FILES_CHUNK;
            uint64_t len = have - off < FILES_CHUNK ? have - off : FILES_CHUNK;
            if (hash_range(fd, off, len, buf, cap, m, B.hashes + B.count * FILES_HASH) != 0)
                break;
        }
    }
    /* Runs of chunks that differ, one GET_RANGE each. */
    for (uint64_t i = 0; i < R->count;) {
        if (i < B.count &&
            memcmp(B.hashes + i * FILES_HASH, R->hashes + i * FILES_HASH, FILES_HASH) == 0) {
            i++;
            continue;
        }
        uint64_t j = i + 1;
        while (j < R->count &&
               !(j < B.count &&
                 memcmp(B.hashes + j * FILES_HASH, R->hashes + j * FILES_HASH, FILES_HASH) == 0))
            j++;
        rc = get_chunks(c, remote, fd, R, i, j, buf, cap, moved);
        if (rc != 0) {
            status = rc;
            goto out;
        }
        i = j;
    }
    if (ftruncate(fd, (off_t)R->size) < 0) {
        cli_err("cannot write the partial download of %s: %s", remote, strerror(errno));
        goto out;
    }
    /* The whole file, read back: its SHA-256 must be the server's. */
    uint8_t d[FILES_HASH];
    if (hash_range(fd, 0, R->size, buf, cap, m, d) != 0 || memcmp(d, R->whole, FILES_HASH) != 0) {
        cli_err("%s: the patched download does not match the server's SHA-256; run get again",
                remote);
        (void)ftruncate(fd, 0);
        goto out;
    }
    status = 0;
out:
    EVP_MD_CTX_free(m);
    files_chunk_list_free(&B);
    return status;
}

void files_local_chunks_record(int fd, const files_chunk_list *R)
{
    struct stat st;
    int dfd = cache_dir();
    if (dfd < 0)
        return;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size == R->size)
        files_hrec_put(dfd, &st, R->hashes, R->count, R->whole);
    close(dfd);
}
