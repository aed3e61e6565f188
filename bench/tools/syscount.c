/* syscount.c — an LD_PRELOAD shim that counts a server's socket and epoll
 * calls without slowing it down, for syscalls-per-request figures taken in
 * a normal timed run. (strace -c stops the process at every call, so the
 * server runs ~10× slower and batches far more per call than it would;
 * /proc/PID/io syscr/syscw miss recv/send.) Benchmark-only.
 *
 * Each wrapped libc function bumps a counter in a file mapped from
 * $SYSCOUNT_FILE (one uint64 per name, in the order of NAMES below) and
 * calls the real one; a reader takes the file's values before and after a
 * run. Calls libc makes to itself are not seen, nor raw syscall(2) use:
 * sockit, libuv, libevent and Redis all go through these wrappers.
 *
 *     SYSCOUNT_FILE=/tmp/x.cnt LD_PRELOAD=build/bench/syscount.so server ...
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* The order is the file's layout; bench/compare.py reads the same list.
 * (clang-format would stair-step the list.) */
/* clang-format off */
#define NAMES(X)                                                                                   \
    X(read) X(write) X(readv) X(writev) X(recv) X(recvfrom) X(recvmsg) X(recvmmsg) X(send)         \
    X(sendto) X(sendmsg) X(sendmmsg) X(epoll_wait) X(epoll_pwait) X(epoll_ctl) X(accept)          \
    X(accept4) X(close) X(ioctl)
/* clang-format on */

enum {
#define ENUM(n) I_##n,
    NAMES(ENUM) N_COUNTERS
};

static _Atomic uint64_t dummy[N_COUNTERS];
static _Atomic uint64_t *counters = dummy;

__attribute__((constructor)) static void syscount_init(void)
{
    const char *path = getenv("SYSCOUNT_FILE");
    if (path == NULL)
        return;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    size_t len = sizeof(uint64_t) * N_COUNTERS;
    if (ftruncate(fd, (off_t)len) == 0) {
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED)
            counters = p;
    }
    close(fd);
}

#define COUNT(n) atomic_fetch_add_explicit(&counters[I_##n], 1, memory_order_relaxed)
#define REAL(ret, n, params)                                                                       \
    static ret(*real) params;                                                                      \
    if (real == NULL)                                                                              \
        real = (ret(*) params)dlsym(RTLD_NEXT, #n);                                                \
    COUNT(n)

ssize_t read(int fd, void *b, size_t n)
{
    REAL(ssize_t, read, (int, void *, size_t));
    return real(fd, b, n);
}
ssize_t write(int fd, const void *b, size_t n)
{
    REAL(ssize_t, write, (int, const void *, size_t));
    return real(fd, b, n);
}
ssize_t readv(int fd, const struct iovec *v, int n)
{
    REAL(ssize_t, readv, (int, const struct iovec *, int));
    return real(fd, v, n);
}
ssize_t writev(int fd, const struct iovec *v, int n)
{
    REAL(ssize_t, writev, (int, const struct iovec *, int));
    return real(fd, v, n);
}
ssize_t recv(int fd, void *b, size_t n, int f)
{
    REAL(ssize_t, recv, (int, void *, size_t, int));
    return real(fd, b, n, f);
}
ssize_t recvfrom(int fd, void *b, size_t n, int f, struct sockaddr *a, socklen_t *al)
{
    REAL(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *, socklen_t *));
    return real(fd, b, n, f, a, al);
}
ssize_t recvmsg(int fd, struct msghdr *m, int f)
{
    REAL(ssize_t, recvmsg, (int, struct msghdr *, int));
    return real(fd, m, f);
}
int recvmmsg(int fd, struct mmsghdr *m, unsigned n, int f, struct timespec *t)
{
    REAL(int, recvmmsg, (int, struct mmsghdr *, unsigned, int, struct timespec *));
    return real(fd, m, n, f, t);
}
ssize_t send(int fd, const void *b, size_t n, int f)
{
    REAL(ssize_t, send, (int, const void *, size_t, int));
    return real(fd, b, n, f);
}
ssize_t sendto(int fd, const void *b, size_t n, int f, const struct sockaddr *a, socklen_t al)
{
    REAL(ssize_t, sendto, (int, const void *, size_t, int, const struct sockaddr *, socklen_t));
    return real(fd, b, n, f, a, al);
}
ssize_t sendmsg(int fd, const struct msghdr *m, int f)
{
    REAL(ssize_t, sendmsg, (int, const struct msghdr *, int));
    return real(fd, m, f);
}
int sendmmsg(int fd, struct mmsghdr *m, unsigned n, int f)
{
    REAL(int, sendmmsg, (int, struct mmsghdr *, unsigned, int));
    return real(fd, m, n, f);
}
int epoll_wait(int ep, struct epoll_event *e, int n, int t)
{
    REAL(int, epoll_wait, (int, struct epoll_event *, int, int));
    return real(ep, e, n, t);
}
int epoll_pwait(int ep, struct epoll_event *e, int n, int t, const sigset_t *s)
{
    REAL(int, epoll_pwait, (int, struct epoll_event *, int, int, const sigset_t *));
    return real(ep, e, n, t, s);
}
int epoll_ctl(int ep, int op, int fd, struct epoll_event *e)
{
    REAL(int, epoll_ctl, (int, int, int, struct epoll_event *));
    return real(ep, op, fd, e);
}
int accept(int fd, struct sockaddr *a, socklen_t *al)
{
    REAL(int, accept, (int, struct sockaddr *, socklen_t *));
    return real(fd, a, al);
}
int accept4(int fd, struct sockaddr *a, socklen_t *al, int f)
{
    REAL(int, accept4, (int, struct sockaddr *, socklen_t *, int));
    return real(fd, a, al, f);
}
int close(int fd)
{
    REAL(int, close, (int));
    return real(fd);
}
int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    REAL(int, ioctl, (int, unsigned long, void *));
    return real(fd, req, arg);
}
