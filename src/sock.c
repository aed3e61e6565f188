/* sock.c — sk_sock, the blocking client's socket: a descriptor and, for
 * TLS, its session, owned together (sk_sock_dial, sk_sock_adopt, the
 * non-blocking steps sk_sock_recv/sk_sock_send*, sk_sock_close). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tls_int.h"

/* The session lives beside its descriptor, so no table maps one to the
 * other and a close() behind the library's back cannot hand a session to
 * another connection that reuses the number. */
struct sk_sock {
    int fd;
    sk__tls *tls; /* NULL: plain bytes */
};

static int sock_wrap(int fd, sk__tls *tls, sk_sock **out)
{
    sk_sock *s = malloc(sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->fd = fd;
    s->tls = tls;
    *out = s;
    return 0;
}

int sk_sock_adopt(int fd, sk_sock **out)
{
    if (fd < 0 || out == NULL)
        return -EINVAL;
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
        return -errno;
    return sock_wrap(fd, NULL, out);
}

/* Runs the client handshake on fd until it is done or deadline_ms (a
 * sk__now_ms value; UINT64_MAX: none) passes. Returns 0 or a negative code
 * with err saying why. */
static int tls_handshake(sk__tls *t, int fd, const char *text, uint64_t deadline_ms, int timeout_ms,
                         char *err, size_t errlen)
{
    for (;;) {
        char why[300];
        int rc = sk__tls_handshake(t, why, sizeof why);
        if (rc == 1)
            return 0;
        if (rc < 0) {
            sk__set_err(err, errlen, "%s: %s", text, why);
            return rc;
        }
        int ms = -1;
        if (deadline_ms != UINT64_MAX) {
            uint64_t now = sk__now_ms();
            if (now >= deadline_ms) {
                sk__set_err(err, errlen, "%s: TLS handshake timed out after %d ms", text,
                            timeout_ms);
                return -ETIMEDOUT;
            }
            ms = (int)(deadline_ms - now);
        }
        struct pollfd p = {.fd = fd, .events = t->want == SK_WRITABLE ? POLLOUT : POLLIN};
        if (poll(&p, 1, ms) < 0 && errno != EINTR) {
            rc = -errno;
            sk__set_err(err, errlen, "%s: poll: %s", text, sk_strerror(rc));
            return rc;
        }
    }
}

/* The TLS half of sk_sock_dial: connects over TCP, then shakes hands with
 * ctx, all within timeout_ms. */
static int dial_tls(const sk_addr *addr, sk_tls_ctx *ctx, const sk_dial_opts *dial, int timeout_ms,
                    sk_sock **out, char *err, size_t errlen)
{
    char text[SK_ADDR_HOST_MAX + 64];
    if (ctx->server) {
        sk__set_err(err, errlen, "sk_sock_dial: needs a client TLS context");
        return -EINVAL;
    }
    if (addr->kind != SK_ADDR_TLS && addr->kind != SK_ADDR_TCP) {
        sk_addr_format(addr, text, sizeof text);
        sk__set_err(err, errlen, "cannot dial \"%s\" with TLS: not a tls:// or tcp address", text);
        return -EINVAL;
    }
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : sk__now_ms() + (uint64_t)timeout_ms;
    sk_addr tcp = *addr;
    tcp.kind = SK_ADDR_TCP;
    int fd = sk__dial(&tcp, dial, timeout_ms, err, errlen);
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
    rc = tls_handshake(t, fd, text, deadline, timeout_ms, err, errlen);
    if (rc == 0)
        rc = sock_wrap(fd, t, out);
    if (rc < 0) {
        sk__tls_free(t);
        close(fd);
    }
    return rc;
}

int sk__sock_accept_tls(int fd, sk_tls_ctx *ctx, int timeout_ms, const char *what, sk_sock **out,
                        char *err, size_t errlen)
{
    if (!ctx->server) {
        sk__set_err(err, errlen, "accepting TLS needs a server context");
        return -EINVAL;
    }
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : sk__now_ms() + (uint64_t)timeout_ms;
    sk__tls *t = NULL;
    int rc = sk__tls_new(ctx, fd, NULL, &t);
    if (rc < 0) {
        sk__set_err(err, errlen, "%s: cannot start a TLS session: %s", what, sk_strerror(rc));
        return rc;
    }
    rc = tls_handshake(t, fd, what, deadline, timeout_ms, err, errlen);
    if (rc == 0)
        rc = sock_wrap(fd, t, out);
    if (rc < 0)
        sk__tls_free(t);
    return rc;
}

int sk_sock_dial(const sk_addr *addr, sk_tls_ctx *tls, int timeout_ms, sk_sock **out, char *err,
                 size_t errlen)
{
    return sk_sock_dial_opts(addr, tls, NULL, timeout_ms, out, err, errlen);
}

int sk_sock_dial_opts(const sk_addr *addr, sk_tls_ctx *tls, const sk_dial_opts *dial,
                      int timeout_ms, sk_sock **out, char *err, size_t errlen)
{
    if (addr == NULL || out == NULL) {
        sk__set_err(err, errlen, "sk_sock_dial: needs an address and somewhere to put the socket");
        return -EINVAL;
    }
    if (tls != NULL)
        return dial_tls(addr, tls, dial, timeout_ms, out, err, errlen);
    int fd = sk__dial(addr, dial, timeout_ms, err, errlen);
    if (fd < 0)
        return fd;
    int rc = sock_wrap(fd, NULL, out);
    if (rc < 0)
        close(fd);
    return rc;
}

int sk_sock_fd(const sk_sock *s) { return s->fd; }

ssize_t sk_sock_recv(sk_sock *s, void *buf, size_t cap)
{
    for (;;) {
        ssize_t n = s->tls ? sk__tls_read(s->tls, buf, cap) : recv(s->fd, buf, cap, MSG_DONTWAIT);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

ssize_t sk_sock_sendv(sk_sock *s, const struct iovec *iov, int iovcnt)
{
    for (;;) {
        ssize_t n;
        if (s->tls) {
            n = sk__tls_writev(s->tls, iov, iovcnt);
        } else {
            struct msghdr mh = {.msg_iov = (struct iovec *)(uintptr_t)iov,
                                .msg_iovlen = (size_t)iovcnt};
            n = sendmsg(s->fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        }
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    }
}

ssize_t sk_sock_send(sk_sock *s, const void *buf, size_t len)
{
    struct iovec iov = {.iov_base = (void *)(uintptr_t)buf, .iov_len = len};
    return sk_sock_sendv(s, &iov, 1);
}

int sk_sock_wants(const sk_sock *s, int dflt) { return s->tls ? s->tls->want : dflt; }

int sk_sock_pending(const sk_sock *s) { return s->tls != NULL && sk__tls_pending(s->tls); }

int sk_sock_is_tls(const sk_sock *s) { return s->tls != NULL; }

int sk_sock_describe(const sk_sock *s, char *buf, size_t buflen)
{
    if (s->tls == NULL) {
        if (buflen)
            buf[0] = '\0';
        return -EINVAL;
    }
    sk__tls_describe(s->tls, buf, buflen);
    return 0;
}

int sk_sock_shutdown(sk_sock *s)
{
    if (s->tls != NULL)
        sk__tls_close_notify(s->tls);
    return shutdown(s->fd, SHUT_WR) < 0 ? -errno : 0;
}

int sk_sock_close(sk_sock *s)
{
    if (s == NULL)
        return 0;
    if (s->tls != NULL) {
        sk__tls_close_notify(s->tls);
        sk__tls_free(s->tls);
    }
    int rc = close(s->fd) < 0 ? -errno : 0;
    free(s);
    return rc;
}

int sk_sock_release(sk_sock *s)
{
    if (s->tls != NULL)
        return -EINVAL;
    int fd = s->fd;
    free(s);
    return fd;
}

int sk_sock_tls_exporter(const sk_sock *s, const char *label, uint8_t *out, size_t len)
{
    return sk__tls_exporter(s->tls, label, out, len);
}
