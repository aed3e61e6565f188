/* timer.c — monotonic timers in a binary min-heap ordered by (deadline,
 * start sequence), so timers due together run in the order they started. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

static bool earlier(const sk_timer *a, const sk_timer *b)
{
    if (a->deadline != b->deadline)
        return a->deadline < b->deadline;
    return a->seq < b->seq;
}

static void heap_set(sk_loop *loop, size_t i, sk_timer *t)
{
    loop->heap[i] = t;
    t->index = i;
}

static void sift_up(sk_loop *loop, size_t i)
{
    sk_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!earlier(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void sift_down(sk_loop *loop, size_t i)
{
    sk_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->heap_len)
            break;
        if (child + 1 < loop->heap_len && earlier(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!earlier(loop->heap[child], t))
            break;
        heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    heap_set(loop, i, t);
}

static void heap_remove(sk_loop *loop, sk_timer *t)
{
    size_t i = t->index;
    t->index = SIZE_MAX;
    loop->heap_len--;
    if (i == loop->heap_len)
        return;
    sk_timer *moved = loop->heap[loop->heap_len];
    heap_set(loop, i, moved);
    sift_down(loop, i);
    sift_up(loop, moved->index);
}

/* Inserting may need to grow the heap; if that fails the timer cannot be
 * armed, which the callers treat like any allocation failure: rare enough
 * that the loop keeps its capacity from then on (it never shrinks). */
static bool heap_push(sk_loop *loop, sk_timer *t)
{
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        sk_timer **h = realloc(loop->heap, cap * sizeof *h);
        if (h == NULL)
            return false;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    heap_set(loop, loop->heap_len++, t);
    sift_up(loop, t->index);
    return true;
}

void sk__timer_init(sk_timer *t, sk_loop *loop, sk_timer_cb cb, void *ud)
{
    t->loop = loop;
    t->cb = cb;
    t->ud = ud;
    t->deadline = 0;
    t->repeat = 0;
    t->seq = 0;
    t->index = SIZE_MAX;
    t->internal = true;
}

int sk_timer_new(sk_loop *loop, sk_timer_cb cb, void *ud, sk_timer **out)
{
    sk_timer *t = malloc(sizeof *t);
    if (t == NULL)
        return -ENOMEM;
    sk__timer_init(t, loop, cb, ud);
    t->internal = false;
    *out = t;
    return 0;
}

void sk_timer_stop(sk_timer *t)
{
    if (t->index == SIZE_MAX)
        return;
    heap_remove(t->loop, t);
    if (!t->internal)
        t->loop->refs--;
}

void sk_timer_start(sk_timer *t, uint64_t delay_ms, uint64_t repeat_ms)
{
    sk_timer_stop(t);
    sk_loop *loop = t->loop;
    t->deadline = loop->now + delay_ms;
    t->repeat = repeat_ms;
    t->seq = loop->timer_seq++;
    if (heap_push(loop, t) && !t->internal)
        loop->refs++;
}

int sk_timer_active(const sk_timer *t) { return t->index != SIZE_MAX; }

void sk_timer_free(sk_timer *t)
{
    if (t == NULL)
        return;
    sk_timer_stop(t);
    free(t);
}

int sk__timers_run(sk_loop *loop)
{
    int ran = 0;
    /* Only timers due at entry run, so a repeat of 0 ms cannot starve I/O. */
    uint64_t now = loop->now;
    while (loop->heap_len > 0 && loop->heap[0]->deadline <= now) {
        sk_timer *t = loop->heap[0];
        if (t->repeat > 0) {
            t->deadline = now + t->repeat;
            t->seq = loop->timer_seq++;
            sift_down(loop, 0);
        } else {
            sk_timer_stop(t);
        }
        /* The callback may free or restart t; nothing touches t after it. */
        t->cb(t, t->ud);
        ran++;
        if (ran > 100000)
            break;
    }
    return ran;
}

int sk__timers_timeout(sk_loop *loop)
{
    if (loop->heap_len == 0)
        return -1;
    uint64_t d = loop->heap[0]->deadline;
    if (d <= loop->now)
        return 0;
    uint64_t ms = d - loop->now;
    return ms > 24u * 3600u * 1000u ? 24 * 3600 * 1000 : (int)ms;
}

void sk__timers_free(sk_loop *loop)
{
    /* Timers still armed are left stopped so that sk_timer_free() on them
     * stays safe after the loop is gone. */
    for (size_t i = 0; i < loop->heap_len; i++)
        loop->heap[i]->index = SIZE_MAX;
    free(loop->heap);
    loop->heap = NULL;
    loop->heap_len = loop->heap_cap = 0;
}
