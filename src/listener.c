/* listener.c — sk_listener, the blocking server side of the blocking
 * client: one peer per sk_listener_accept call, the access list applied
 * before a byte is read, the TLS handshake finished before the caller sees
 * the peer. What `sockit listen` (nc -l) stands on; servers of many peers
 * use sk_server in the event loop instead. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

struct sk_listener {
    int fd;
    int port;
    sk_listener_opts opts;
    sk__unix_file unix_file;
    sk__acl_log acl_log; /* sources refused lately, for the log */
};

int sk_listener_open(const sk_addr *addr, const sk_listener_opts *opts, sk_listener **out,
                     char *err, size_t errlen)
{
    char dummy[8];
    if (err == NULL) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (addr == NULL || out == NULL) {
        sk__set_err(err, errlen, "sk_listener_open: needs an address and somewhere to put it");
        return -EINVAL;
    }
    if (addr->kind != SK_ADDR_TCP && addr->kind != SK_ADDR_UNIX && addr->kind != SK_ADDR_TLS) {
        sk__set_err(err, errlen,
                    "not a stream address (use HOST:PORT, tls://HOST:PORT or unix:PATH)");
        return -EPROTONOSUPPORT;
    }
    sk_listener *l = calloc(1, sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    if (opts != NULL)
        l->opts = *opts;
    /* tls:// without a context would speak cleartext on a port announced
     * as TLS; a client context cannot accept. */
    if (addr->kind == SK_ADDR_TLS && l->opts.tls == NULL) {
        sk__set_err(err, errlen, "a tls:// listener needs a certificate and key");
        free(l);
        return -EINVAL;
    }
    if (l->opts.family != AF_UNSPEC && addr->kind == SK_ADDR_UNIX) {
        sk__set_err(err, errlen, "an address family applies to IP addresses only, not unix:");
        free(l);
        return -EINVAL;
    }
    l->fd =
        sk__listen_open(addr, l->opts.family, l->opts.backlog, false, &l->unix_file, err, errlen);
    if (l->fd < 0) {
        int rc = l->fd;
        free(l);
        return rc;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(l->fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            l->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            l->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    *out = l;
    return 0;
}

int sk_listener_fd(const sk_listener *l) { return l->fd; }
int sk_listener_port(const sk_listener *l) { return l->port; }

/* Closes a peer the access list refuses, logging it sparingly. */
static void refuse(sk_listener *l, int fd, const struct sockaddr *peer, socklen_t len)
{
    close(fd);
    sk__stat_add(SK__STAT_REFUSED_ACL, 1);
    if (sk__acl_log_due(&l->acl_log, peer, len, sk__now_ms())) {
        char text[160];
        sk_log(SK_LOG_WARN, "refused %s: not allowed by the access list (--allow/--deny)",
               sk_sockaddr_format(peer, len, text, sizeof text));
    }
}

int sk_listener_accept(sk_listener *l, int timeout_ms, sk_sock **out, struct sockaddr_storage *peer,
                       socklen_t *peerlen, char *err, size_t errlen)
{
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : sk__now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(l->fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int e = errno;
            if (e == ECONNABORTED || e == EPROTO)
                continue; /* that peer left before we took it; the next */
            if (e != EAGAIN && e != EWOULDBLOCK && e != EINTR) {
                sk__set_err(err, errlen, "accept: %s", sk_strerror(-e));
                return -e;
            }
            int ms = -1;
            if (deadline != UINT64_MAX) {
                uint64_t now = sk__now_ms();
                if (now >= deadline)
                    return -ETIMEDOUT;
                ms = (int)(deadline - now);
            }
            struct pollfd p = {.fd = l->fd, .events = POLLIN};
            if (poll(&p, 1, ms) < 0) {
                if (errno == EINTR)
                    return -EINTR; /* the caller's signal handler may want out */
                int pe = errno;
                sk__set_err(err, errlen, "poll: %s", sk_strerror(-pe));
                return -pe;
            }
            continue;
        }
        if (l->opts.acl && !sk_acl_allows(l->opts.acl, (struct sockaddr *)&ss, sl)) {
            refuse(l, fd, (struct sockaddr *)&ss, sl);
            continue;
        }
        sk__stat_add(SK__STAT_ACCEPTED, 1);
        int rc;
        if (l->opts.tls != NULL) {
            char text[160];
            sk_sockaddr_format((struct sockaddr *)&ss, sl, text, sizeof text);
            uint32_t hs = l->opts.handshake_timeout_ms ? l->opts.handshake_timeout_ms
                                                       : SK_TLS_DEFAULT_HANDSHAKE_MS;
            rc = sk__sock_accept_tls(fd, l->opts.tls, (int)hs, text, out, err, errlen);
        } else {
            rc = sk_sock_adopt(fd, out);
            if (rc < 0)
                sk__set_err(err, errlen, "accept: %s", sk_strerror(rc));
        }
        if (rc < 0) {
            close(fd);
            return rc;
        }
        if (peer != NULL && peerlen != NULL) {
            memcpy(peer, &ss, sizeof ss);
            *peerlen = sl;
        }
        return 0;
    }
}

void sk_listener_close(sk_listener *l)
{
    if (l == NULL)
        return;
    close(l->fd);
    sk__unix_file_remove(&l->unix_file);
    free(l);
}
