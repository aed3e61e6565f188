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

static uint8_t *pool_get(sk_loop *loop)
{
    sk_pool_buf *p = loop->pool;
    if (p == NULL)
        return malloc(SK_READ_CHUNK);
    loop->pool = p->next;
    loop->pool_len--;
    return (uint8_t *)p;
}

static void pool_put(sk_loop *loop, uint8_t *data)
{
    if (loop->pool_len >= SK_POOL_MAX) {
        free(data);
        return;
    }
    sk_pool_buf *p = (sk_pool_buf *)(void *)data;
    p->next = loop->pool;
    loop->pool = p;
    loop->pool_len++;
}

void sk__pool_free(sk_loop *loop)
{
    while (loop->pool) {
        sk_pool_buf *p = loop->pool;
        loop->pool = p->next;
        free(p);
    }
    loop->pool_len = 0;
}

int sk__buf_reserve(sk_loop *loop, sk_buf *b, size_t more)
{
    if (b->data == NULL) {
        size_t cap = more <= SK_READ_CHUNK ? SK_READ_CHUNK : more;
        if (!sk__mem_charge(cap))
            return -ENOBUFS;
        b->data = cap == SK_READ_CHUNK ? pool_get(loop) : malloc(cap);
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
    if (!sk__mem_charge(cap))
        return -ENOBUFS;
    uint8_t *data = malloc(cap);
    if (data == NULL) {
        sk__mem_uncharge(cap);
        return -ENOMEM;
    }
    memcpy(data, b->data + b->off, b->len);
    sk__buf_release(loop, b);
    b->data = data;
    b->cap = cap;
    b->off = 0;
    b->len = want - more;
    return 0;
}

void sk__buf_release(sk_loop *loop, sk_buf *b)
{
    if (b->data == NULL)
        return;
    sk__mem_uncharge(b->cap);
    if (b->cap == SK_READ_CHUNK)
        pool_put(loop, b->data);
    else
        free(b->data);
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
