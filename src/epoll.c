/* epoll.c — the kernel seam: the only file that calls epoll_ctl. Watches are
 * level-triggered; the registered mask is cached so that unchanged masks cost
 * no syscall. */
#include <errno.h>
#include <sys/epoll.h>

#include "internal.h"

int sk__epoll_create(void)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd < 0 ? -errno : fd;
}

int sk__watch_set(sk_loop *loop, sk_watch *w, uint32_t events)
{
    if (events == w->events)
        return 0;
    struct epoll_event ev = {.events = events, .data.ptr = w};
    int op = w->events == 0 ? EPOLL_CTL_ADD : (events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD);
    if (epoll_ctl(loop->epfd, op, w->fd, &ev) < 0)
        return -errno;
    w->events = events;
    return 0;
}

void sk__watch_del(sk_loop *loop, sk_watch *w)
{
    if (w->events != 0) {
        struct epoll_event ev = {0};
        (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, &ev);
        w->events = 0;
    }
}
