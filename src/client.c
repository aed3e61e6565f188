/* client.c — the blocking client API (sk__dial beneath sk_sock_dial,
 * sk_sock_send_all, sk_sock_recv_*, sk_sock_*_frame, sk_sock_recv_line). Descriptors stay
 * non-blocking; every wait is a poll() bounded by one absolute CLOCK_MONOTONIC deadline per call,
 * so a timeout covers the whole call however many syscalls it takes. It is not part of the event
 * loop and never touches signal dispositions. Every byte goes through sk_sock_recv / sk_sock_sendv
 * (sock.c), which take the TLS path for a socket with a session and plain recv/sendmsg otherwise.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* A Unix listener with a full backlog makes a non-blocking connect fail with
 * EAGAIN and gives nothing to poll on, so sk__dial retries it this often
 * until the deadline (a blocking connect would have waited the same way). */
#define UNIX_BACKLOG_RETRY_MS 10

#define NO_DEADLINE UINT64_MAX

/* The absolute deadline of a call; any negative timeout means none. */
static uint64_t deadline_after(int timeout_ms)
{
    if (timeout_ms < 0)
        return NO_DEADLINE;
    return sk__now_ns() + (uint64_t)timeout_ms * 1000000u;
}

/* Milliseconds left for poll(): -1 without a deadline, 0 once it has
 * passed. Rounded up, so that poll never returns a hair early and leaves us
 * spinning on a zero timeout before the deadline. */
static int remaining_ms(uint64_t deadline)
{
    if (deadline == NO_DEADLINE)
        return -1;
    uint64_t now = sk__now_ns();
    if (now >= deadline)
        return 0;
    uint64_t ms = (deadline - now + 999999u) / 1000000u;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

/* Waits until fd reports one of events (or an error/hangup, which the
 * caller's next syscall will turn into a code). Returns 0, -ETIMEDOUT once
 * the deadline has passed, or another negative code. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        int ms = remaining_ms(deadline);
        if (ms == 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, ms);
        if (n < 0) {
            if (errno == EINTR)
                continue; /* the loop recomputes what is left */
            return -errno;
        }
        if (n == 0)
            continue; /* timed out, or woke early: the check above decides */
        if (p.revents & POLLNVAL)
            return -EBADF;
        return 0;
    }
}

/* Sleeps up to ms, cut short by the deadline. Returns -ETIMEDOUT if the
 * deadline has already passed. */
static int nap(int ms, uint64_t deadline)
{
    int left = remaining_ms(deadline);
    if (left == 0)
        return -ETIMEDOUT;
    if (left > 0 && left < ms)
        ms = left;
    poll(NULL, 0, ms); /* EINTR only shortens the nap; the caller retries */
    return 0;
}

/* The poll events to wait for after -EAGAIN: a TLS read may need to write
 * (and the other way round); a plain descriptor waits for what it asked. */
static short wait_events(const sk_sock *s, short events)
{
    int w = sk_sock_wants(s, events == POLLOUT ? SK_WRITABLE : SK_READABLE);
    return w == SK_WRITABLE ? POLLOUT : POLLIN;
}

/* Sends all of iov (modified as it goes). MSG_DONTWAIT makes every call
 * non-blocking even if the caller handed us a blocking descriptor, so the
 * deadline is always honoured; MSG_NOSIGNAL keeps SIGPIPE away. */
static int sendv_until(sk_sock *s, struct iovec *iov, int iovcnt, uint64_t deadline)
{
    while (iovcnt > 0 && iov[0].iov_len == 0) {
        iov++;
        iovcnt--;
    }
    while (iovcnt > 0) {
        ssize_t n = sk_sock_sendv(s, iov, iovcnt);
        if (n < 0) {
            if (n == -EAGAIN) {
                int rc = wait_fd(sk_sock_fd(s), wait_events(s, POLLOUT), deadline);
                if (rc < 0)
                    return rc;
                continue;
            }
            return (int)n;
        }
        /* A short write: drop what went out, resume inside the iovec. */
        size_t done = (size_t)n;
        while (iovcnt > 0 && done >= iov[0].iov_len) {
            done -= iov[0].iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov[0].iov_base = (char *)iov[0].iov_base + done;
            iov[0].iov_len -= done;
        }
    }
    return 0;
}

/* Receives exactly len bytes; *got counts what arrived (also on failure).
 * Returns 0, 1 at end of stream before len bytes, or a negative code. */
static int recv_until(sk_sock *s, void *buf, size_t len, uint64_t deadline, size_t *got)
{
    char *p = buf;
    *got = 0;
    while (*got < len) {
        ssize_t n = sk_sock_recv(s, p + *got, len - *got);
        if (n > 0) {
            *got += (size_t)n;
        } else if (n == 0) {
            return 1;
        } else if (n == -EAGAIN) {
            int rc = wait_fd(sk_sock_fd(s), wait_events(s, POLLIN), deadline);
            if (rc < 0)
                return rc;
        } else {
            return (int)n;
        }
    }
    return 0;
}

/* Starts a non-blocking connect of a new socket to one address. Returns the
 * descriptor (connected, or connecting in the background) or a negative
 * code. */
static int start_connect(const struct sockaddr_storage *sa, socklen_t salen,
                         const sk_dial_opts *dial)
{
    int family = sa->ss_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int brc = sk__dial_opts_bind(dial, fd);
    if (brc < 0) {
        close(fd);
        return brc;
    }
    if (family == AF_INET || family == AF_INET6) {
        /* Request/reply tools send small messages; Nagle would hold each
         * one back for the previous reply's ACK. Failure here is harmless. */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    /* EINTR on connect does not abort it: the kernel goes on connecting in
     * the background exactly as for EINPROGRESS, and a second connect would
     * fail with EALREADY. So both are waited for the same way. */
    if (connect(fd, (const struct sockaddr *)sa, salen) == 0 || errno == EINPROGRESS ||
        errno == EINTR)
        return fd;
    int rc = -errno;
    close(fd);
    return rc;
}

/* The outcome of a connect that poll() reported on: 0 (connected), 1 (still
 * in progress) or the negative code it failed with. */
static int connect_result(int fd)
{
    int soerr = 0;
    socklen_t slen = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) < 0)
        return -errno;
    if (soerr == EINPROGRESS || soerr == EALREADY)
        return 1;
    return -soerr;
}

/* Connects to a Unix socket before the deadline. A listener with a full
 * backlog makes a non-blocking connect fail with EAGAIN, with nothing to
 * poll on, so that is retried every UNIX_BACKLOG_RETRY_MS. */
static int dial_unix(const struct sockaddr_storage *sa, socklen_t salen, uint64_t deadline)
{
    int fd, rc;
    for (;;) {
        fd = start_connect(sa, salen, NULL);
        if (fd != -EAGAIN)
            break;
        rc = nap(UNIX_BACKLOG_RETRY_MS, deadline);
        if (rc < 0)
            return rc;
    }
    if (fd < 0)
        return fd;
    rc = wait_fd(fd, POLLOUT, deadline);
    if (rc == 0)
        rc = connect_result(fd);
    if (rc == 0)
        return fd;
    close(fd);
    return rc == 1 ? -ETIMEDOUT : rc;
}

/* The connection attempts of one sk__dial in flight, for poll(). */
typedef struct race {
    struct pollfd p[SK_CONNECT_MAX_ADDRS];
    int addr[SK_CONNECT_MAX_ADDRS]; /* which address each attempt goes to */
    int n;
} race;

/* Takes attempt i out of the race; returns its descriptor. */
static int race_remove(race *r, int i)
{
    int fd = r->p[i].fd;
    r->n--;
    r->p[i] = r->p[r->n];
    r->addr[i] = r->addr[r->n];
    return fd;
}

static void race_close_all(race *r)
{
    while (r->n > 0)
        close(race_remove(r, r->n - 1));
}

/* Happy Eyeballs v2 (RFC 8305) for the blocking client: tries the
 * addresses in order, starting the next one when the previous attempts
 * have all failed or SK_CONNECT_ATTEMPT_DELAY_MS after the last start, and
 * keeps the first that connects. Returns its descriptor or the last
 * failure's code, with *failed the address that failure concerns. */
static int dial_race(const struct sockaddr_storage *sas, const socklen_t *lens, int n,
                     const sk_dial_opts *dial, uint64_t deadline, int *failed)
{
    race r = {.n = 0};
    int next = 0, rc = -ECONNREFUSED;
    uint64_t next_start = 0; /* when the next address is due, in ns */
    *failed = 0;
    for (;;) {
        while (next < n && (r.n == 0 || sk__now_ns() >= next_start)) {
            int fd = start_connect(&sas[next], lens[next], dial);
            if (fd < 0) {
                rc = fd;
                *failed = next++;
                continue; /* failed at once: the next one now */
            }
            r.p[r.n] = (struct pollfd){.fd = fd, .events = POLLOUT};
            r.addr[r.n++] = next++;
            next_start = sk__now_ns() + SK_CONNECT_ATTEMPT_DELAY_MS * 1000000ull;
            break;
        }
        if (r.n == 0)
            return rc;
        int ms = remaining_ms(deadline);
        if (ms == 0) {
            *failed = r.addr[0];
            race_close_all(&r);
            return -ETIMEDOUT;
        }
        if (next < n) {
            uint64_t now = sk__now_ns();
            int due = next_start > now ? (int)((next_start - now + 999999u) / 1000000u) : 0;
            if (ms < 0 || due < ms)
                ms = due;
        }
        if (poll(r.p, (nfds_t)r.n, ms) < 0 && errno != EINTR) {
            rc = -errno;
            race_close_all(&r);
            return rc;
        }
        for (int i = r.n - 1; i >= 0; i--) {
            if (r.p[i].revents == 0)
                continue;
            int res = connect_result(r.p[i].fd);
            if (res == 0) {
                int fd = race_remove(&r, i);
                race_close_all(&r); /* the losers */
                return fd;
            }
            if (res < 0) {
                /* Failed: the next address starts at once (RFC 8305 §5). */
                rc = res;
                *failed = r.addr[i];
                close(race_remove(&r, i));
                next_start = 0;
            }
        }
    }
}

int sk__dial(const sk_addr *addr, const sk_dial_opts *dial, int timeout_ms, char *err,
             size_t errlen)
{
    struct sockaddr_storage sas[SK_CONNECT_MAX_ADDRS];
    socklen_t lens[SK_CONNECT_MAX_ADDRS];
    char text[SK_ADDR_HOST_MAX + 64];
    uint64_t deadline = deadline_after(timeout_ms);
    int n, rc, failed = 0;

    if (addr == NULL) {
        sk__set_err(err, errlen, "sk_sock_dial: no address");
        return -EINVAL;
    }
    if (addr->kind != SK_ADDR_TCP && addr->kind != SK_ADDR_UNIX) {
        sk_addr_format(addr, text, sizeof text);
        /* tls:// without a context is refused rather than dialed as plain
         * TCP: sending cleartext to a TLS port would fail in a confusing way
         * later. The TLS dial passes a copy with kind TCP. */
        if (addr->kind == SK_ADDR_TLS)
            sk__set_err(err, errlen, "cannot dial \"%s\" without a TLS client context", text);
        else
            sk__set_err(err, errlen, "cannot dial \"%s\": not a tcp or unix stream address", text);
        return addr->kind == SK_ADDR_TLS ? -EPROTONOSUPPORT : -EINVAL;
    }

    rc = sk__dial_opts_check(dial, addr, err, errlen);
    if (rc < 0)
        return rc;
    n = sk__resolve_for_connect(addr, sas, lens, SK_CONNECT_MAX_ADDRS, err, errlen);
    if (n >= 0)
        n = sk__dial_opts_filter(dial, addr, sas, lens, n, err, errlen);
    if (n < 0)
        return n;
    if (sas[0].ss_family == AF_UNIX)
        rc = dial_unix(&sas[0], lens[0], deadline);
    else
        rc = dial_race(sas, lens, n, dial, deadline, &failed);
    if (rc >= 0)
        return rc;
    sk_sockaddr_format((const struct sockaddr *)&sas[failed], lens[failed], text, sizeof text);
    if (rc == -ETIMEDOUT && remaining_ms(deadline) == 0) {
        /* Our deadline covers the whole call, every address together. (A
         * kernel SYN timeout without a deadline moves on to the next.) */
        sk__set_err(err, errlen, "connect to %s: timed out after %d ms", text, timeout_ms);
        return rc;
    }
    char eb[128];
    sk__set_err(err, errlen, "connect to %s: %s", text, strerror_r(-rc, eb, sizeof eb));
    return rc;
}

int sk_sock_send_all(sk_sock *s, const void *buf, size_t len, int timeout_ms)
{
    if (buf == NULL && len > 0)
        return -EINVAL;
    struct iovec iov = {.iov_base = (void *)(uintptr_t)buf, .iov_len = len};
    return sendv_until(s, &iov, 1, deadline_after(timeout_ms));
}

int sk_sock_recv_exact(sk_sock *s, void *buf, size_t len, int timeout_ms)
{
    size_t got;
    if (buf == NULL && len > 0)
        return -EINVAL;
    int rc = recv_until(s, buf, len, deadline_after(timeout_ms), &got);
    return rc == 1 ? -ECONNRESET : rc;
}

ssize_t sk_sock_recv_wait(sk_sock *s, void *buf, size_t cap, int timeout_ms)
{
    uint64_t deadline = deadline_after(timeout_ms);
    /* cap 0 would make "0 bytes" mean both "nothing read" and "end of
     * stream". */
    if (buf == NULL || cap == 0)
        return -EINVAL;
    for (;;) {
        ssize_t n = sk_sock_recv(s, buf, cap);
        if (n >= 0)
            return n;
        if (n != -EAGAIN)
            return n;
        int rc = wait_fd(sk_sock_fd(s), wait_events(s, POLLIN), deadline);
        if (rc < 0)
            return rc;
    }
}

int sk_sock_send_frame(sk_sock *s, const void *buf, size_t len, int timeout_ms)
{
    uint8_t hdr[SK_FRAME_HEADER];
    if (buf == NULL && len > 0)
        return -EINVAL;
    if (len > UINT32_MAX)
        return -EMSGSIZE;
    sk__frame_put(hdr, (uint32_t)len);
    /* Header and payload in one sendmsg: two sends would put a small
     * segment on the wire ahead of the payload (TCP_NODELAY is set). */
    struct iovec iov[2] = {
        {.iov_base = hdr, .iov_len = sizeof hdr},
        {.iov_base = (void *)(uintptr_t)buf, .iov_len = len},
    };
    return sendv_until(s, iov, 2, deadline_after(timeout_ms));
}

ssize_t sk_sock_recv_frame(sk_sock *s, void *buf, size_t cap, int timeout_ms)
{
    uint64_t deadline = deadline_after(timeout_ms);
    uint8_t hdr[SK_FRAME_HEADER];
    size_t got;
    int rc;

    if (buf == NULL && cap > 0)
        return -EINVAL;
    rc = recv_until(s, hdr, sizeof hdr, deadline, &got);
    if (rc == 1)
        return got == 0 ? -ENODATA : -ECONNRESET;
    if (rc < 0)
        return rc;
    uint32_t len = sk__frame_len(hdr);
    /* Check the declared length before reading a byte of the body; the
     * payload is left unread, so the stream is out of step after this. */
    if (len > cap)
        return -EMSGSIZE;
    rc = recv_until(s, buf, len, deadline, &got);
    if (rc == 1)
        return -ECONNRESET;
    if (rc < 0)
        return rc;
    return (ssize_t)len;
}

void sk_line_reader_init(sk_line_reader *r, sk_sock *s, void *buf, size_t cap)
{
    r->sock = s;
    r->buf = buf;
    r->cap = cap;
    r->len = 0;
    r->used = 0;
}

ssize_t sk_sock_recv_line(sk_line_reader *r, const char **line, int timeout_ms)
{
    uint64_t deadline = deadline_after(timeout_ms);
    if (r->cap < 3)
        return -EINVAL;
    /* Drop the line returned last time; keep what came after it. */
    if (r->used > 0) {
        memmove(r->buf, r->buf + r->used, r->len - r->used);
        r->len -= r->used;
        r->used = 0;
    }
    size_t scanned = 0;
    for (;;) {
        uint8_t *nl = memchr(r->buf + scanned, '\n', r->len - scanned);
        if (nl != NULL) {
            size_t end = (size_t)(nl - r->buf);
            r->used = end + 1;
            if (end > 0 && r->buf[end - 1] == '\r')
                end--;
            r->buf[end] = '\0';
            *line = (const char *)r->buf;
            return (ssize_t)end;
        }
        scanned = r->len;
        /* The last byte is kept for the terminating NUL. */
        if (r->len >= r->cap - 1)
            return -EMSGSIZE;
        ssize_t n = sk_sock_recv_wait(r->sock, r->buf + r->len, r->cap - 1 - r->len,
                                      remaining_ms(deadline));
        if (n < 0)
            return n;
        if (n == 0)
            return r->len == 0 ? -ENODATA : -ECONNRESET;
        r->len += (size_t)n;
    }
}
