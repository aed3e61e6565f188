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
    EVP_MD_CTX_free(s->pmid);
    s->pmid = NULL;
    s->pmid_len = 0;
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

/* Hashes n bytes into the chunk record (if it is kept) and md (if
 * in_order); at a chunk border, md's state is copied for a later resume. */
static bool feed(fsess *s, const uint8_t *data, size_t n, bool in_order)
{
    if (in_order && EVP_DigestUpdate(s->md, data, n) != 1)
        return false;
    if (!s->precording)
        return true;
    if (EVP_DigestUpdate(s->pmd, data, n) != 1) {
        files_precord_free(s);
        return true;
    }
    s->precorded += n;
    if (s->precorded % FILES_CHUNK != 0)
        return true;
    uint64_t i = s->precorded / FILES_CHUNK - 1;
    if (EVP_DigestFinal_ex(s->pmd, s->phashes + (size_t)i * FILES_HASH, NULL) != 1 ||
        EVP_DigestInit_ex(s->pmd, EVP_sha256(), NULL) != 1) {
        files_precord_free(s);
        return true;
    }
    if (in_order && (s->pmid != NULL || (s->pmid = EVP_MD_CTX_new()) != NULL) &&
        EVP_MD_CTX_copy_ex(s->pmid, s->md) == 1)
        s->pmid_len = s->precorded;
    else
        s->pmid_len = 0;
    return true;
}

bool files_precord_data(fsess *s, uint64_t at, const uint8_t *data, size_t len, bool in_order)
{
    if (!s->precording && at == 0 && !s->patch && prepare(s)) {
        /* A plain upload is recorded from its first byte on. */
        s->precorded = 0;
        s->precording = true;
    }
    if (s->precording && at != s->precorded)
        files_precord_free(s);
    if (!s->precording)
        return !in_order || EVP_DigestUpdate(s->md, data, len) == 1;
    /* md is the whole file's hash of [0, at) only if every byte so far
     * came in order from the start (a PATCH's hashed_to == at). */
    in_order = in_order && (!s->patch || s->hashed_to == at);
    while (len > 0) {
        uint64_t room = FILES_CHUNK - s->precorded % FILES_CHUNK;
        size_t n = len < room ? len : (size_t)room;
        if (!feed(s, data, n, in_order))
            return false;
        data += n;
        len -= n;
        if (!s->precording && len > 0)
            return !in_order || EVP_DigestUpdate(s->md, data, len) == 1;
    }
    return true;
}

static void key_of(uint64_t key[5], const struct stat *st)
{
    key[0] = (uint64_t)st->st_dev;
    key[1] = (uint64_t)st->st_ino;
    key[2] = (uint64_t)st->st_size;
    key[3] = (uint64_t)st->st_mtim.tv_sec * 1000000000u + (uint64_t)st->st_mtim.tv_nsec;
    key[4] = (uint64_t)st->st_ctim.tv_sec * 1000000000u + (uint64_t)st->st_ctim.tv_nsec;
}

/* Leaves md's state at the last chunk border for a resume of the partial
 * st (the oldest of FILES_MIDS goes). */
static void keep_mid(fsess *s, const struct stat *st)
{
    if (s->pmid == NULL || s->pmid_len == 0 || s->pmid_len > s->precorded)
        return;
    files_svc *svc = s->svc;
    pthread_mutex_lock(&svc->mid_mu);
    files_mid *m = &svc->mids[svc->mid_next++ % FILES_MIDS];
    EVP_MD_CTX_free(m->md);
    key_of(m->key, st);
    m->len = s->pmid_len;
    m->md = s->pmid;
    s->pmid = NULL;
    pthread_mutex_unlock(&svc->mid_mu);
}

bool files_precord_resume(fsess *s, const struct stat *st)
{
    uint64_t key[5];
    key_of(key, st);
    files_svc *svc = s->svc;
    EVP_MD_CTX *md = NULL;
    uint64_t len = 0;
    pthread_mutex_lock(&svc->mid_mu);
    for (unsigned i = 0; i < FILES_MIDS; i++) {
        files_mid *m = &svc->mids[i];
        if (m->md != NULL && memcmp(m->key, key, sizeof key) == 0) {
            md = m->md;
            len = m->len;
            m->md = NULL;
            break;
        }
    }
    pthread_mutex_unlock(&svc->mid_mu);
    if (md == NULL)
        return false;
    bool ok = len <= s->precorded && len % FILES_CHUNK == 0 && s->precorded == len &&
              EVP_MD_CTX_copy_ex(s->md, md) == 1;
    if (ok) {
        s->hashed_to = len; /* the kept part is in md: not read again */
        EVP_MD_CTX_free(s->pmid);
        s->pmid = md;
        s->pmid_len = len;
    } else {
        EVP_MD_CTX_free(md);
        (void)files_hash_restart(s);
    }
    return ok;
}

void files_mids_free(files_svc *svc)
{
    for (unsigned i = 0; i < FILES_MIDS; i++) {
        EVP_MD_CTX_free(svc->mids[i].md);
        svc->mids[i].md = NULL;
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
    keep_mid(s, &st);
}
