/* files_precord.c — a partial upload's running hash, kept for its resume.
 * While an upload's bytes arrive in order, the whole-file SHA-256 state is
 * copied at every chunk border (a copy of about 100 bytes, no second pass
 * over the data); when the client goes and the partial is kept, the last
 * copy stays in memory (FILES_MIDS at most) keyed by the partial's (device,
 * inode, size, mtime, ctime). A version-4 PATCH that finds its partial
 * still so answers PATCH_RESUME with the SHA-256 of the kept prefix (the
 * copy, finished) and goes on hashing from the copy: the kept part is
 * neither read to be compared nor read again at PUT_END. A partial changed
 * since (touched, tampered) no longer matches and is hashed chunk by chunk
 * as before; so is every partial after a restart of the server. */
#include <string.h>
#include <sys/stat.h>

#include "files_int.h"

void files_precord_free(fsess *s)
{
    EVP_MD_CTX_free(s->pmid);
    s->pmid = NULL;
    s->pmid_len = 0;
    s->precording = false;
}

void files_precord_begin(fsess *s)
{
    s->pmid_len = 0;
    /* An all-zero upload id or a stream has no resume: nothing to keep. */
    s->precording = !s->fresh && s->size != FILES_SIZE_STREAM && s->size > 0;
}

void files_precord_at(fsess *s, uint64_t at)
{
    if (at < s->pmid_len)
        s->pmid_len = 0; /* the kept prefix is being rewritten */
}

/* md has taken the partial's [0, at): keeps a copy of it for a resume. */
static void keep_border(fsess *s, uint64_t at)
{
    if (s->pmid == NULL && (s->pmid = EVP_MD_CTX_new()) == NULL)
        return;
    s->pmid_len = EVP_MD_CTX_copy_ex(s->pmid, s->md) == 1 ? at : 0;
}

bool files_precord_data(fsess *s, uint64_t at, const uint8_t *data, size_t len, bool in_order)
{
    /* Out of order only after a PUT_AT, which dropped any border past it. */
    if (!in_order)
        return true;
    if (!s->precording)
        return EVP_DigestUpdate(s->md, data, len) == 1;
    while (len > 0) {
        /* Up to the next chunk border, where md's state is copied. */
        uint64_t room = FILES_CHUNK - at % FILES_CHUNK;
        size_t n = len < room ? len : (size_t)room;
        if (EVP_DigestUpdate(s->md, data, n) != 1)
            return false;
        data += n;
        len -= n;
        at += n;
        if (at % FILES_CHUNK == 0)
            keep_border(s, at);
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

uint64_t files_precord_resume(fsess *s, const struct stat *st)
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
        return 0;
    if (len == 0 || len % FILES_CHUNK != 0 || len > (uint64_t)st->st_size || len >= s->size ||
        EVP_MD_CTX_copy_ex(s->md, md) != 1) {
        EVP_MD_CTX_free(md);
        return 0;
    }
    /* md stays the copy at len: a resume cut again before the next border
     * is kept from there. */
    EVP_MD_CTX_free(s->pmid);
    s->pmid = md;
    s->pmid_len = len;
    return len;
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
    if (!s->precording || s->pmid == NULL || s->pmid_len == 0 || fstat(s->fd, &st) < 0 ||
        (uint64_t)st.st_size < s->pmid_len)
        return;
    files_svc *svc = s->svc;
    pthread_mutex_lock(&svc->mid_mu);
    /* One entry per partial: a stale one of the same file goes first. */
    files_mid *m = NULL;
    for (unsigned i = 0; i < FILES_MIDS && m == NULL; i++)
        if (svc->mids[i].md != NULL && svc->mids[i].key[0] == (uint64_t)st.st_dev &&
            svc->mids[i].key[1] == (uint64_t)st.st_ino)
            m = &svc->mids[i];
    if (m == NULL)
        m = &svc->mids[svc->mid_next++ % FILES_MIDS];
    EVP_MD_CTX_free(m->md);
    key_of(m->key, &st);
    m->len = s->pmid_len;
    m->md = s->pmid;
    s->pmid = NULL;
    s->pmid_len = 0;
    pthread_mutex_unlock(&svc->mid_mu);
}
