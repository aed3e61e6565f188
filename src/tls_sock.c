/* tls_sock.c — the blocking client's TLS: sk_tls_dial and the sk_sock_*
 * calls, which find a descriptor's session in a process-wide table. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tls_int.h"

/* ------------------------------------------- blocking client descriptors */

/* The blocking client API works on plain descriptors, so a TLS session is
 * found from its descriptor: a table indexed by fd, consulted only when a
 * session exists at all (the count), so plain clients pay one atomic load.
 * A descriptor number is not an identity: after a close() that bypassed
 * sk_sock_close, the next socket gets the same number. So each entry also
 * holds the socket's st_dev/st_ino from registration, and a lookup whose
 * descriptor is no longer that socket drops the stale session instead of
 * encrypting a plain connection's bytes with it. A descriptor is used by
 * one thread at a time; the lock guards the table. */
typedef struct {
    sk__tls *t;
    dev_t dev;
    ino_t ino;
} reg_entry;

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static reg_entry *reg;
static size_t reg_cap;
static atomic_uint reg_count;

/* Removes fd's entry (the lock held); returns its session, or NULL. */
static sk__tls *reg_remove_locked(int fd)
{
    if (fd < 0 || (size_t)fd >= reg_cap || reg[fd].t == NULL)
        return NULL;
    sk__tls *t = reg[fd].t;
    reg[fd].t = NULL;
    if (atomic_fetch_sub(&reg_count, 1) == 1) {
        /* The last session is gone: give the table back (so that a process
         * that is done with TLS holds nothing). */
        free(reg);
        reg = NULL;
        reg_cap = 0;
    }
    return t;
}

static sk__tls *reg_get(int fd)
{
    if (fd < 0 || atomic_load(&reg_count) == 0)
        return NULL;
    sk__tls *t = NULL, *stale = NULL;
    pthread_mutex_lock(&reg_lock);
    if ((size_t)fd < reg_cap && reg[fd].t != NULL) {
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_dev == reg[fd].dev && st.st_ino == reg[fd].ino)
            t = reg[fd].t;
        else
            stale = reg_remove_locked(fd);
    }
    pthread_mutex_unlock(&reg_lock);
    /* Its socket was closed behind our back: nothing can be sent on it. */
    sk__tls_free(stale);
    return t;
}

static int reg_put(int fd, sk__tls *t)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    pthread_mutex_lock(&reg_lock);
    /* A stale entry under this number (its socket closed with close()) is
     * replaced, and its session freed. */
    sk__tls *stale = reg_remove_locked(fd);
    int rc = 0;
    if ((size_t)fd >= reg_cap) {
        size_t cap = reg_cap ? reg_cap : 64;
        while (cap <= (size_t)fd)
            cap *= 2;
        reg_entry *n = realloc(reg, cap * sizeof *n);
        if (n == NULL) {
            rc = -ENOMEM;
            goto out;
        }
        memset(n + reg_cap, 0, (cap - reg_cap) * sizeof *n);
        reg = n;
        reg_cap = cap;
    }
    reg[fd] = (reg_entry){.t = t, .dev = st.st_dev, .ino = st.st_ino};
    atomic_fetch_add(&reg_count, 1);
out:
    pthread_mutex_unlock(&reg_lock);
    sk__tls_free(stale);
    return rc;
}

static sk__tls *reg_take(int fd)
{
    pthread_mutex_lock(&reg_lock);
    sk__tls *t = reg_remove_locked(fd);
    pthread_mutex_unlock(&reg_lock);
    return t;
}

int sk_tls_dial(const sk_addr *addr, sk_tls_ctx *ctx, int timeout_ms, char *err, size_t errlen)
{
    char text[SK_ADDR_HOST_MAX + 64];
    if (addr == NULL || ctx == NULL || ctx->server) {
        sk__set_err(err, errlen, "sk_tls_dial: needs an address and a client context");
        return -EINVAL;
    }
    if (addr->kind != SK_ADDR_TLS && addr->kind != SK_ADDR_TCP) {
        sk_addr_format(addr, text, sizeof text);
        sk__set_err(err, errlen, "cannot dial \"%s\" with TLS: not a tls:// or tcp address", text);
        return -EINVAL;
    }
    uint64_t start = sk__now_ms();
    sk_addr tcp = *addr;
    tcp.kind = SK_ADDR_TCP;
    int fd = sk_dial(&tcp, timeout_ms, err, errlen);
    if (fd < 0)
        return fd;
    sk__tls *t = NULL;
    int rc = sk__tls_new(ctx, fd, addr->host, &t);
    if (rc < 0) {
        sk__set_err(err, errlen, "cannot start a TLS session: %s", sk_strerror(rc));
        close(fd);
        return rc;
    }
    sk_addr_format(addr, text, sizeof text);
    for (;;) {
        char why[300];
        rc = sk__tls_handshake(t, why, sizeof why);
        if (rc == 1)
            break;
        if (rc < 0) {
            sk__set_err(err, errlen, "%s: %s", text, why);
            goto fail;
        }
        int ms = -1;
        if (timeout_ms >= 0) {
            uint64_t used = sk__now_ms() - start;
            if (used >= (uint64_t)timeout_ms) {
                rc = -ETIMEDOUT;
                sk__set_err(err, errlen, "%s: TLS handshake timed out after %d ms", text, timeout_ms);
                goto fail;
            }
            ms = (int)((uint64_t)timeout_ms - used);
        }
        struct pollfd p = {.fd = fd, .events = t->want == SK_WRITABLE ? POLLOUT : POLLIN};
        if (poll(&p, 1, ms) < 0 && errno != EINTR) {
            rc = -errno;
            sk__set_err(err, errlen, "%s: poll: %s", text, sk_strerror(rc));
            goto fail;
        }
    }
    rc = reg_put(fd, t);
    if (rc < 0) {
        sk__set_err(err, errlen, "%s: %s", text, sk_strerror(rc));
        goto fail;
    }
    return fd;
fail:
    sk__tls_free(t);
    close(fd);
    return rc;
}

ssize_t sk_sock_recv(int fd, void *buf, size_t cap)
{
    sk__tls *t = reg_get(fd);
    for (;;) {
        ssize_t n = t ? sk__tls_read(t, buf, cap) : recv(fd, buf, cap, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

ssize_t sk_sock_sendv(int fd, const struct iovec *iov, int iovcnt)
{
    sk__tls *t = reg_get(fd);
    for (;;) {
        ssize_t n;
        if (t) {
            n = sk__tls_writev(t, iov, iovcnt);
        } else {
            struct msghdr mh = {.msg_iov = (struct iovec *)(uintptr_t)iov, .msg_iovlen = (size_t)iovcnt};
            n = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

ssize_t sk_sock_send(int fd, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)(uintptr_t)buf, .iov_len = len};
    return sk_sock_sendv(fd, &iov, 1);
}

int sk_sock_wants(int fd, int dflt)
{
    sk__tls *t = reg_get(fd);
    return t ? t->want : dflt;
}

int sk_sock_pending(int fd)
{
    sk__tls *t = reg_get(fd);
    return t != NULL && sk__tls_pending(t);
}

int sk_sock_is_tls(int fd) { return reg_get(fd) != NULL; }

int sk_sock_describe(int fd, char *buf, size_t buflen)
{
    sk__tls *t = reg_get(fd);
    if (t == NULL) {
        if (buflen)
            buf[0] = '\0';
        return -EINVAL;
    }
    sk__tls_describe(t, buf, buflen);
    return 0;
}

int sk_sock_shutdown(int fd)
{
    sk__tls *t = reg_get(fd);
    if (t != NULL)
        sk__tls_close_notify(t);
    return shutdown(fd, SHUT_WR) < 0 ? -errno : 0;
}

int sk_sock_close(int fd)
{
    /* Looked up first, so that a stale session (fd reused) is dropped
     * without its close_notify going out on another connection. */
    sk__tls *t = reg_get(fd) != NULL ? reg_take(fd) : NULL;
    if (t != NULL) {
        sk__tls_close_notify(t);
        sk__tls_free(t);
    }
    return close(fd) < 0 ? -errno : 0;
}

int sk_sock_tls_exporter(int fd, const char *label, uint8_t *out, size_t len)
{
    return sk__tls_exporter(reg_get(fd), label, out, len);
}
