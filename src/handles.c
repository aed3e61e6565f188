/* handles.c — the small loop handles: descriptor watchers (sk_io), signals
 * through signalfd (sk_signal) and cross-thread wake-ups (sk_async). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "internal.h"

/* Handles of each kind are kept in a list per loop (list.h) so that
 * sk_loop_free can release what the application left attached. */

/* ---------------------------------------------------------------- sk_io */

struct sk_io {
    sk_watch w;
    sk_loop *loop;
    sk_io_cb cb;
    void *ud;
    sk_list link; /* loop->ios */
};

static uint32_t to_epoll(int events)
{
    return (events & SK_READABLE ? EPOLLIN : 0u) | (events & SK_WRITABLE ? EPOLLOUT : 0u);
}

static void io_event(sk_watch *w, uint32_t events)
{
    sk_io *io = SK_CONTAINER_OF(w, sk_io, w);
    int ready = 0;
    if (events & (EPOLLIN | EPOLLRDHUP))
        ready |= SK_READABLE;
    if (events & EPOLLOUT)
        ready |= SK_WRITABLE;
    if (events & (EPOLLERR | EPOLLHUP))
        ready |= SK_ERROR | SK_READABLE;
    io->cb(io, w->fd, ready, io->ud);
}

static void io_destroy(sk_watch *w) { free(SK_CONTAINER_OF(w, sk_io, w)); }

int sk_io_new(sk_loop *loop, int fd, int events, sk_io_cb cb, void *ud, sk_io **out)
{
    sk_io *io = calloc(1, sizeof *io);
    if (io == NULL)
        return -ENOMEM;
    io->w.fd = fd;
    io->w.on_event = io_event;
    io->w.destroy = io_destroy;
    io->loop = loop;
    io->cb = cb;
    io->ud = ud;
    int err = sk__watch_set(loop, &io->w, to_epoll(events));
    if (err < 0) {
        free(io);
        return err;
    }
    sk__list_push(&loop->ios, &io->link);
    loop->refs++;
    *out = io;
    return 0;
}

int sk_io_set_events(sk_io *io, int events)
{
    return sk__watch_set(io->loop, &io->w, to_epoll(events));
}

void sk_io_free(sk_io *io)
{
    if (io == NULL)
        return;
    sk__list_remove(&io->loop->ios, &io->link);
    io->loop->refs--;
    sk__watch_dispose(io->loop, &io->w);
}

void sk_io_free_closing(sk_io *io)
{
    if (io == NULL)
        return;
    io->w.events = 0; /* unregistered by the close that follows: no EPOLL_CTL_DEL */
    sk_io_free(io);
}

/* ------------------------------------------------------------ sk_signal */

struct sk_signal {
    sk_watch w;
    sk_loop *loop;
    sk_signal_cb cb;
    void *ud;
    sk_list link; /* loop->signals */
};

static void signal_event(sk_watch *w, uint32_t events)
{
    (void)events;
    sk_signal *s = SK_CONTAINER_OF(w, sk_signal, w);
    struct signalfd_siginfo si[8];
    for (;;) {
        ssize_t n = read(w->fd, si, sizeof si);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        for (size_t i = 0; i < (size_t)n / sizeof si[0]; i++) {
            s->cb(s, (int)si[i].ssi_signo, s->ud);
            if (s->w.events == 0) /* freed by the callback */
                return;
        }
    }
}

static void signal_destroy(sk_watch *w)
{
    close(w->fd);
    free(SK_CONTAINER_OF(w, sk_signal, w));
}

int sk_signal_new(sk_loop *loop, const int *signals, int count, sk_signal_cb cb, void *ud,
                  sk_signal **out)
{
    sigset_t set;
    sigemptyset(&set);
    for (int i = 0; i < count; i++)
        if (sigaddset(&set, signals[i]) < 0)
            return -EINVAL;
    sk_signal *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    /* Block first: a signal arriving between the two calls then waits in the
     * pending set and is read from the signalfd, instead of killing us. */
    int err = pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (err != 0) {
        free(s);
        return -err;
    }
    s->w.fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->w.fd < 0) {
        err = -errno;
        free(s);
        return err;
    }
    s->w.on_event = signal_event;
    s->w.destroy = signal_destroy;
    s->loop = loop;
    s->cb = cb;
    s->ud = ud;
    err = sk__watch_set(loop, &s->w, EPOLLIN);
    if (err < 0) {
        close(s->w.fd);
        free(s);
        return err;
    }
    sk__list_push(&loop->signals, &s->link);
    loop->refs++;
    *out = s;
    return 0;
}

void sk_signal_free(sk_signal *s)
{
    if (s == NULL)
        return;
    sk__list_remove(&s->loop->signals, &s->link);
    s->loop->refs--;
    sk__watch_dispose(s->loop, &s->w);
}

/* ------------------------------------------------------------- sk_async */

struct sk_async {
    sk_watch w; /* not registered: only used for deferred destruction */
    sk_loop *loop;
    sk_async_cb cb;
    void *ud;
    atomic_bool pending;
    sk_list link; /* loop->asyncs */
};

static void async_destroy(sk_watch *w) { free(SK_CONTAINER_OF(w, sk_async, w)); }

int sk_async_new(sk_loop *loop, sk_async_cb cb, void *ud, sk_async **out)
{
    sk_async *a = calloc(1, sizeof *a);
    if (a == NULL)
        return -ENOMEM;
    a->w.fd = -1;
    a->w.destroy = async_destroy;
    a->loop = loop;
    a->cb = cb;
    a->ud = ud;
    atomic_init(&a->pending, false);
    sk__list_push(&loop->asyncs, &a->link);
    loop->refs++;
    *out = a;
    return 0;
}

void sk_async_send(sk_async *a)
{
    if (atomic_exchange(&a->pending, true))
        return;
    sk__loop_wake(a->loop);
}

void sk_async_free(sk_async *a)
{
    if (a == NULL)
        return;
    sk__list_remove(&a->loop->asyncs, &a->link);
    a->loop->refs--;
    sk__watch_dispose(a->loop, &a->w);
}

void sk__asyncs_dispatch(sk_loop *loop)
{
    sk_async *a = SK_LIST_ITEM(loop->asyncs, sk_async, link);
    while (a) {
        /* a may be freed by its callback */
        sk_async *next = SK_LIST_ITEM(a->link.next, sk_async, link);
        if (atomic_exchange(&a->pending, false))
            a->cb(a, a->ud);
        a = next;
    }
}

void sk__handles_free_all(sk_loop *loop)
{
    while (loop->ios)
        sk_io_free(SK_LIST_ITEM(loop->ios, sk_io, link));
    while (loop->signals)
        sk_signal_free(SK_LIST_ITEM(loop->signals, sk_signal, link));
    while (loop->asyncs)
        sk_async_free(SK_LIST_ITEM(loop->asyncs, sk_async, link));
}
