/* buf.c — connection byte buffers: a per-loop pool of standard-size buffers
 * (so the hot path never calls malloc) and the process-wide memory budget. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static atomic_size_t mem_in_use;
static atomic_size_t mem_budget;

size_t sk_mem_in_use(void) { return atomic_load(&mem_in_use); }
void sk_mem_set_budget(size_t bytes) { atomic_store(&mem_budget, bytes); }

bool sk__mem_charge(size_t bytes)
{
    size_t budget = atomic_load(&mem_budget);
    size_t now = atomic_fetch_add(&mem_in_use, bytes) + bytes;
    if (budget != 0 && now > budget) {
        atomic_fetch_sub(&mem_in_use, bytes);
        return false;
    }
    return true;
}

void sk__mem_uncharge(size_t bytes) { atomic_fetch_sub(&mem_in_use, bytes); }

/* The two pooled sizes; 0 for a buffer that is malloc'd and freed. */
static sk_pool_buf **pool_for(sk_loop *loop, size_t cap, unsigned **len, unsigned *max)
{
    if (cap == SK_BUF_SMALL) {
        *len = &loop->pool_small_len;
        *max = SK_POOL_SMALL_MAX;
        return &loop->pool_small;
    }
    if (cap == SK_READ_CHUNK) {
        *len = &loop->pool_len;
        *max = SK_POOL_LARGE_MAX;
        return &loop->pool;
    }
    return NULL;
}

static uint8_t *buf_alloc(sk_loop *loop, size_t cap)
{
    unsigned *len, max;
    sk_pool_buf **pool = pool_for(loop, cap, &len, &max);
    if (pool == NULL || *pool == NULL)
        return malloc(cap);
    sk_pool_buf *p = *pool;
    *pool = p->next;
    (*len)--;
    return (uint8_t *)p;
}

static void buf_free(sk_loop *loop, uint8_t *data, size_t cap)
{
    unsigned *len, max;
    sk_pool_buf **pool = pool_for(loop, cap, &len, &max);
    if (pool == NULL || *len >= max) {
        free(data);
        return;
    }
    sk_pool_buf *p = (sk_pool_buf *)(void *)data;
    p->next = *pool;
    *pool = p;
    (*len)++;
}

static void pool_drain(sk_pool_buf **pool, unsigned *len)
{
    while (*pool) {
        sk_pool_buf *p = *pool;
        *pool = p->next;
        free(p);
    }
    *len = 0;
}

void sk__pool_free(sk_loop *loop)
{
    pool_drain(&loop->pool, &loop->pool_len);
    pool_drain(&loop->pool_small, &loop->pool_small_len);
}

/* The size a buffer holding `want` bytes gets: a pooled size when it fits
 * one, else exactly what is asked (growth doubles, see below). */
static size_t size_for(size_t want)
{
    if (want <= SK_BUF_SMALL)
        return SK_BUF_SMALL;
    if (want <= SK_READ_CHUNK)
        return SK_READ_CHUNK;
    return want;
}

int sk__buf_reserve(sk_loop *loop, sk_buf *b, size_t more)
{
    if (b->data == NULL) {
        size_t cap = size_for(more);
        if (!sk__mem_charge(cap))
            return -ENOBUFS;
        b->data = buf_alloc(loop, cap);
        if (b->data == NULL) {
            sk__mem_uncharge(cap);
            return -ENOMEM;
        }
        b->cap = cap;
        b->off = b->len = 0;
        return 0;
    }
    if (b->cap - b->off - b->len >= more)
        return 0;
    /* Compacting is cheap when little is live, and it keeps a buffer that
     * is consumed as fast as it fills from ever growing. */
    if (b->off > 0 && b->cap - b->len >= more && b->len <= b->cap / 2) {
        memmove(b->data, b->data + b->off, b->len);
        b->off = 0;
        return 0;
    }
    size_t want = b->len + more;
    size_t cap = b->cap * 2;
    if (cap < want)
        cap = want;
    cap = size_for(cap);
    if (!sk__mem_charge(cap))
        return -ENOBUFS;
    uint8_t *data = buf_alloc(loop, cap);
    if (data == NULL) {
        sk__mem_uncharge(cap);
        return -ENOMEM;
    }
    memcpy(data, b->data + b->off, b->len);
    size_t len = b->len;
    sk__buf_release(loop, b);
    b->data = data;
    b->cap = cap;
    b->off = 0;
    b->len = len;
    return 0;
}

void sk__buf_release(sk_loop *loop, sk_buf *b)
{
    if (b->data == NULL)
        return;
    sk__mem_uncharge(b->cap);
    buf_free(loop, b->data, b->cap);
    b->data = NULL;
    b->off = b->len = b->cap = 0;
}

void sk__buf_consume(sk_loop *loop, sk_buf *b, size_t n)
{
    b->off += n;
    b->len -= n;
    if (b->len == 0)
        sk__buf_release(loop, b);
}
