/* files_precord.c — the chunk hashes of a partial upload, made as its
 * bytes are written (they are hashed anyway) and recorded in the hash
 * cache, keyed like any file's record by the partial's (device, inode,
 * size, mtime, ctime), when its client goes. A resume whose partial is
 * still as recorded is compared with the client's chunks from the record
 * alone, reading none of the kept part; a partial changed since (touched,
 * tampered) no longer matches its key and is hashed chunk by chunk. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "files_int.h"

void files_precord_free(fsess *s)
{
    EVP_MD_CTX_free(s->pmd);
    s->pmd = NULL;
    free(s->phashes);
    s->phashes = NULL;
    s->precorded = 0;
    s->precording = false;
}

/* Ready to record a partial of s->size bytes: false if it cannot be (a
 * stream, a list too long for the cache, out of memory). */
static bool prepare(fsess *s)
{
    if (s->phashes != NULL)
        return true;
    if (s->fresh || s->size == FILES_SIZE_STREAM || s->size == 0)
        return false;
    uint64_t count = (s->size + FILES_CHUNK - 1) / FILES_CHUNK;
    if (count > FILES_HCACHE_MAX_CHUNKS)
        return false;
    s->phashes = malloc((size_t)count * FILES_HASH);
    s->pmd = EVP_MD_CTX_new();
    if (s->phashes == NULL || s->pmd == NULL ||
        EVP_DigestInit_ex(s->pmd, EVP_sha256(), NULL) != 1) {
        files_precord_free(s);
        return false;
    }
    return true;
}

void files_precord_begin(fsess *s, const uint8_t *hashes, uint64_t count, uint64_t have)
{
    files_precord_free(s);
    if (!prepare(s))
        return;
    /* The base's whole chunks stand; a cut last one is not continued
     * (its hash state is not kept), so the record starts before it. */
    uint64_t whole = have / FILES_CHUNK;
    if (whole > count)
        whole = count;
    if (whole > 0 && hashes != NULL)
        memcpy(s->phashes, hashes, (size_t)whole * FILES_HASH);
    else
        whole = 0;
    s->precorded = whole * FILES_CHUNK;
    s->precording = true;
}

void files_precord_at(fsess *s, uint64_t at)
{
    if (!s->precording)
        return;
    if (at > s->precorded) {
        files_precord_free(s); /* a gap: the record cannot speak for it */
        return;
    }
    if (at < s->precorded || s->precorded % FILES_CHUNK != 0) {
        /* Rewritten from a chunk's start: the record goes back to it. */
        s->precorded = at;
        if (EVP_DigestInit_ex(s->pmd, EVP_sha256(), NULL) != 1)
            files_precord_free(s);
    }
}

void files_precord_data(fsess *s, uint64_t at, const uint8_t *data, size_t len)
{
    if (!s->precording) {
        /* A plain upload is recorded from its first byte on. */
        if (at != 0 || s->patch || !prepare(s))
            return;
        s->precorded = 0;
        s->precording = true;
    }
    if (at != s->precorded) {
        files_precord_free(s);
        return;
    }
    while (len > 0) {
        uint64_t room = FILES_CHUNK - s->precorded % FILES_CHUNK;
        size_t n = len < room ? len : (size_t)room;
        if (EVP_DigestUpdate(s->pmd, data, n) != 1) {
            files_precord_free(s);
            return;
        }
        s->precorded += n;
        data += n;
        len -= n;
        if (s->precorded % FILES_CHUNK == 0) {
            uint64_t i = s->precorded / FILES_CHUNK - 1;
            if (EVP_DigestFinal_ex(s->pmd, s->phashes + (size_t)i * FILES_HASH, NULL) != 1 ||
                EVP_DigestInit_ex(s->pmd, EVP_sha256(), NULL) != 1) {
                files_precord_free(s);
                return;
            }
        }
    }
}

void files_precord_save(fsess *s)
{
    struct stat st;
    if (!s->precording || s->precorded == 0 || fstat(s->fd, &st) < 0 ||
        (uint64_t)st.st_size != s->precorded)
        return; /* the record would not cover the whole partial */
    uint64_t count = (s->precorded + FILES_CHUNK - 1) / FILES_CHUNK;
    if (s->precorded % FILES_CHUNK != 0) {
        /* The cut last chunk's hash, from a copy of its running state. */
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        bool ok = c != NULL && EVP_MD_CTX_copy_ex(c, s->pmd) == 1 &&
                  EVP_DigestFinal_ex(c, s->phashes + (size_t)(count - 1) * FILES_HASH, NULL) == 1;
        EVP_MD_CTX_free(c);
        if (!ok)
            return;
    }
    static const uint8_t none[FILES_HASH];
    files_hcache_put(s->svc, &st, s->phashes, count, none);
}
