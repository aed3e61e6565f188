/* shared.c — reference-counted shared buffers (sk_shared): one broadcast
 * message is stored once however many connections queue it (outq.c holds
 * the slices that point into them). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "tls.h"

/* The whole allocation is charged to the memory budget once, however many
 * queues hold a reference: that is the point of sharing. */
static size_t shared_cost(size_t len) { return sizeof(sk_shared) + len; }

int sk_shared_new(size_t len, sk_shared **out)
{
    if (len == 0 || len > SIZE_MAX - sizeof(sk_shared))
        return -EINVAL;
    if (!sk__mem_charge(shared_cost(len)))
        return -ENOBUFS;
    sk_shared *s = malloc(shared_cost(len));
    if (s == NULL) {
        sk__mem_uncharge(shared_cost(len));
        return -ENOMEM;
    }
    atomic_init(&s->refs, 1);
    s->len = len;
    *out = s;
    return 0;
}

uint8_t *sk_shared_data(sk_shared *s) { return s->data; }
size_t sk_shared_len(const sk_shared *s) { return s->len; }

sk_shared *sk_shared_ref(sk_shared *s)
{
    /* Relaxed is enough to take a reference: the caller already holds one,
     * so the buffer cannot go away meanwhile (the shared_ptr argument). */
    atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
    return s;
}

void sk_shared_unref(sk_shared *s)
{
    if (s == NULL)
        return;
    /* Release so every thread's last use happens before the free; the one
     * that drops the count to zero acquires before freeing. */
    if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_release) != 1)
        return;
    atomic_thread_fence(memory_order_acquire);
    sk__mem_uncharge(shared_cost(s->len));
    free(s);
}
