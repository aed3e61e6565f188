/* files_source.c — what the files service counts per source address (a
 * peer's address without its port; every Unix-socket peer is one source):
 * its transfers in progress, capped by --max-transfers-per-source, and a
 * token bucket of the bytes the server may hash for its resumes (a resume
 * offer makes the server hash a prefix before it answers: without a bound,
 * a few bytes of request buy a whole file's SHA-256), and a bucket of the
 * unfinished uploads it may leave behind for a resume.
 *
 * One fixed table shared by the workers behind a mutex, touched when a
 * transfer starts or ends and once per hash step, never per message. A
 * flood of sources costs no memory: when every slot is held by a source
 * with transfers in progress, a new source is refused (BUSY). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "files_int.h"

void files_sources_init(files_sources *t)
{
    memset(t->slot, 0, sizeof t->slot);
    pthread_mutex_init(&t->mu, NULL);
}

void files_sources_destroy(files_sources *t) { pthread_mutex_destroy(&t->mu); }

void files_source_key(const char *peer, char key[FILES_SOURCE_KEY])
{
    const char *end = NULL;
    if (peer[0] == '[')
        end = strchr(peer, ']');
    else if (peer[0] >= '0' && peer[0] <= '9')
        end = strrchr(peer, ':');
    if (end == NULL) {
        snprintf(key, FILES_SOURCE_KEY, "local"); /* Unix peers, named by pid */
        return;
    }
    size_t n = (size_t)(end - peer) + (peer[0] == '[');
    snprintf(key, FILES_SOURCE_KEY, "%.*s", (int)n, peer);
}

/* Tops the bucket up for the time passed since the last refill. */
static void refill(files_source *e, uint64_t now)
{
    if (now <= e->refilled)
        return;
    uint64_t add = (now - e->refilled) * (FILES_HASH_RATE / 1000u);
    e->tokens = e->tokens + add > FILES_HASH_BURST || add > FILES_HASH_BURST ? FILES_HASH_BURST
                                                                             : e->tokens + add;
    e->refilled = now;
}

/* The slot of key, or a free one made its own (NULL if none). A slot whose
 * source has nothing in progress is free only once its bucket is full
 * again: ending every transfer must not buy a fresh budget. */
static files_source *find(files_sources *t, const char *key, uint64_t now, bool make)
{
    files_source *spare = NULL;
    for (unsigned i = 0; i < FILES_SOURCES; i++) {
        files_source *e = &t->slot[i];
        if (e->key[0] != '\0' && strcmp(e->key, key) == 0)
            return e;
        if (!make || spare != NULL || e->transfers > 0)
            continue;
        if (e->key[0] != '\0')
            refill(e, now);
        if (e->key[0] == '\0' || e->tokens == FILES_HASH_BURST)
            spare = e;
    }
    if (spare != NULL) {
        snprintf(spare->key, sizeof spare->key, "%s", key);
        spare->transfers = 0;
        spare->tokens = FILES_HASH_BURST;
        spare->refilled = now;
        spare->kept = FILES_PARTIALS_PER_SOURCE * 1000u;
        spare->kept_refilled = now;
    }
    return spare;
}

int files_source_acquire(files_sources *t, const char *key, unsigned max, uint64_t now)
{
    pthread_mutex_lock(&t->mu);
    files_source *e = find(t, key, now, true);
    int rc = 0;
    if (e == NULL)
        rc = -ENOSPC;
    else if (e->transfers >= max)
        rc = -EBUSY;
    else
        e->transfers++;
    pthread_mutex_unlock(&t->mu);
    return rc;
}

void files_source_release(files_sources *t, const char *key)
{
    pthread_mutex_lock(&t->mu);
    files_source *e = find(t, key, 0, false);
    if (e != NULL && e->transfers > 0)
        e->transfers--;
    pthread_mutex_unlock(&t->mu);
}

uint32_t files_source_hash(files_sources *t, const char *key, uint64_t bytes, uint64_t now)
{
    if (bytes > FILES_HASH_BURST)
        bytes = FILES_HASH_BURST; /* a step is never larger; keeps the wait finite */
    pthread_mutex_lock(&t->mu);
    files_source *e = find(t, key, now, false);
    uint32_t wait = 0;
    if (e != NULL) {
        refill(e, now);
        if (e->tokens >= bytes) {
            e->tokens -= bytes;
        } else {
            uint64_t ms = (bytes - e->tokens) / (FILES_HASH_RATE / 1000u) + 1;
            wait = (uint32_t)ms;
        }
    }
    pthread_mutex_unlock(&t->mu);
    return wait;
}

bool files_source_keep(files_sources *t, const char *key, uint64_t now, uint32_t ttl_s)
{
    const uint64_t full = FILES_PARTIALS_PER_SOURCE * 1000u;
    pthread_mutex_lock(&t->mu);
    files_source *e = find(t, key, now, false);
    bool ok = true;
    if (e != NULL) {
        /* full thousandths over the TTL: one partial per ttl/64. */
        uint64_t ttl_ms = (uint64_t)(ttl_s ? ttl_s : 1) * 1000u;
        if (now > e->kept_refilled) {
            uint64_t add = (now - e->kept_refilled) * full / ttl_ms;
            if (add > 0) {
                e->kept = e->kept + add > full ? full : e->kept + add;
                e->kept_refilled = now;
            }
        }
        ok = e->kept >= 1000u;
        if (ok)
            e->kept -= 1000u;
    }
    pthread_mutex_unlock(&t->mu);
    return ok;
}
