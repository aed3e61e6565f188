/* loop.c — the event loop: one epoll_wait per iteration, then timers, then
 * buffered input, then one write per connection with output, then deferred
 * closes. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

#define MAX_EVENTS 256

uint64_t sk__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t sk__now_ms(void) { return sk__now_ns() / 1000000u; }

static void on_wake(sk_watch *w, uint32_t events)
{
    (void)events;
    sk_loop *loop = SK_CONTAINER_OF(w, sk_loop, wake);
    uint64_t v;
    /* Clear the flag before reading so a send racing with us wakes us again. */
    atomic_store(&loop->wake_pending, false);
    while (read(w->fd, &v, sizeof v) < 0 && errno == EINTR) {
    }
    sk__asyncs_dispatch(loop);
}

int sk_loop_new(sk_loop **out)
{
    sk_loop *loop = calloc(1, sizeof *loop);
    if (loop == NULL)
        return -ENOMEM;
    int err = 0;
    loop->epfd = -1;
    loop->wake.fd = -1;
    loop->rbuf = malloc(SK_READ_CHUNK);
    if (loop->rbuf == NULL) {
        err = -ENOMEM;
        goto fail;
    }
    loop->epfd = sk__epoll_create();
    if (loop->epfd < 0) {
        err = loop->epfd;
        goto fail;
    }
    loop->wake.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wake.fd < 0) {
        err = -errno;
        goto fail;
    }
    loop->wake.on_event = on_wake;
    err = sk__watch_set(loop, &loop->wake, EPOLLIN);
    if (err < 0)
        goto fail;
    loop->now = sk__now_ms();
    *out = loop;
    return 0;
fail:
    if (loop->wake.fd >= 0)
        close(loop->wake.fd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    free(loop->rbuf);
    free(loop);
    return err;
}

void sk__loop_wake(sk_loop *loop)
{
    if (atomic_exchange(&loop->wake_pending, true))
        return;
    uint64_t one = 1;
    while (write(loop->wake.fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
}

void sk_loop_stop(sk_loop *loop)
{
    atomic_store(&loop->stop, true);
    sk__loop_wake(loop);
}

uint64_t sk_loop_now(const sk_loop *loop) { return loop->now; }

static bool has_deferred_work(const sk_loop *loop)
{
    return loop->flush_head || loop->pending_head || loop->close_head || loop->dgram_flush;
}

/* Work that must happen after every batch of callbacks: decode input left
 * buffered, write what the callbacks queued, finalise closes (which may queue
 * more output elsewhere, picked up by the next iteration without blocking). */
static void after_callbacks(sk_loop *loop)
{
    sk__conns_process_pending(loop);
    sk__conns_flush(loop);
    sk__dgrams_flush(loop);
    sk__conns_finalize(loop);
    sk__garbage_collect(loop);
    sk__stats_flush(loop);
}

void sk__watch_dispose(sk_loop *loop, sk_watch *w)
{
    sk__watch_del(loop, w);
    w->garbage_next = loop->garbage;
    loop->garbage = w;
}

void sk__garbage_collect(sk_loop *loop)
{
    while (loop->garbage) {
        sk_watch *w = loop->garbage;
        loop->garbage = w->garbage_next;
        w->destroy(w);
    }
}

int sk_loop_run(sk_loop *loop)
{
    struct epoll_event events[MAX_EVENTS];
    atomic_store(&loop->stop, false);
    loop->now = sk__now_ms();
    while (!atomic_load(&loop->stop)) {
        if (loop->refs == 0 && !has_deferred_work(loop))
            break;
        int timeout = has_deferred_work(loop) ? 0 : sk__timers_timeout(loop);
        int n = epoll_wait(loop->epfd, events, MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        loop->now = sk__now_ms();
        for (int i = 0; i < n; i++) {
            sk_watch *w = events[i].data.ptr;
            /* A handle closed by an earlier callback of this batch has
             * events == 0 (unregistered) and its memory is still valid:
             * frees are deferred to after_callbacks. */
            if (w->events == 0)
                continue;
            w->on_event(w, events[i].events);
        }
        sk__timers_run(loop);
        after_callbacks(loop);
    }
    return 0;
}

void sk_loop_free(sk_loop *loop)
{
    if (loop == NULL)
        return;
    sk__servers_free_all(loop);
    sk__conns_destroy_all(loop);
    sk__dgrams_free_all(loop);
    sk__procs_free_all(loop); /* before its SIGCHLD watcher goes with the handles */
    sk__handles_free_all(loop);
    sk__garbage_collect(loop);
    sk__stats_flush(loop);
    sk__timers_free(loop);
    sk__pool_free(loop);
    close(loop->wake.fd);
    close(loop->epfd);
    free(loop->rbuf);
    free(loop);
}

int sk__set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -1;
    int fdfl = fcntl(fd, F_GETFD);
    if (fdfl < 0 || fcntl(fd, F_SETFD, fdfl | FD_CLOEXEC) < 0)
        return -1;
    return 0;
}
