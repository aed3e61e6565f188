/* test_client.c — the blocking client (client.c: sk_sock_dial, sk_sock_send_all,
 * sk_sock_send_frame, sk_sock_recv_exact, sk_sock_recv_wait, sk_sock_recv_frame, sk_sock_recv_line)
 * against an in-test server thread or a socket pair. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(client, .init = unit_alarm);

/* ---------------------------------------------------------- test server */

struct srv;
typedef void (*srv_fn)(struct srv *s, int fd, int index);

/* A plain blocking server on 127.0.0.1 port 0 (or a unix path) in a thread:
 * accepts nconns connections one after the other and runs fn on each. It
 * records problems in `bad` for the main thread to assert on (Criterion
 * asserts belong to the test's thread). */
typedef struct srv {
    int lfd;
    int port;
    char path[108];
    pthread_t th;
    srv_fn fn;
    int nconns;
    char bad[256];
    size_t got;      /* bytes the server received, where a scenario counts */
    atomic_int stop; /* set by the test to end a scenario that waits */
} srv;

static void srv_fail(srv *s, const char *what)
{
    if (s->bad[0] == '\0')
        snprintf(s->bad, sizeof s->bad, "%s (errno %s)", what, strerror(errno));
}

static void *srv_main(void *arg)
{
    srv *s = arg;
    for (int i = 0; i < s->nconns; i++) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            srv_fail(s, "accept");
            return NULL;
        }
        /* Never hang the test: every blocking call gives up after 5 s. */
        struct timeval tv = {5, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        s->fn(s, fd, i);
        close(fd);
    }
    return NULL;
}

static void srv_start_tcp(srv *s, srv_fn fn, int nconns)
{
    memset(s, 0, sizeof *s);
    s->fn = fn;
    s->nconns = nconns;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(s->lfd >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(s->lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    cr_assert_eq(listen(s->lfd, 16), 0);
    socklen_t len = sizeof sin;
    cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&sin, &len), 0);
    s->port = ntohs(sin.sin_port);
    cr_assert_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_start_unix(srv *s, srv_fn fn, int nconns, int abstract)
{
    memset(s, 0, sizeof *s);
    s->fn = fn;
    s->nconns = nconns;
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(s->lfd >= 0);
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    socklen_t len;
    if (abstract) {
        snprintf(s->path, sizeof s->path, "sockit-client-test-%d", (int)getpid());
        memcpy(sun.sun_path + 1, s->path, strlen(s->path));
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(s->path));
    } else {
        snprintf(s->path, sizeof s->path, "/tmp/sockit-client-test-%d.sock", (int)getpid());
        unlink(s->path);
        strcpy(sun.sun_path, s->path);
        len = sizeof sun;
    }
    cr_assert_eq(bind(s->lfd, (struct sockaddr *)&sun, len), 0, "bind: %s", strerror(errno));
    cr_assert_eq(listen(s->lfd, 16), 0);
    cr_assert_eq(pthread_create(&s->th, NULL, srv_main, s), 0);
}

/* Joins the server and reports what it found wrong. */
static void srv_end(srv *s)
{
    pthread_join(s->th, NULL);
    close(s->lfd);
    if (s->path[0] == '/')
        unlink(s->path);
    cr_assert(s->bad[0] == '\0', "server: %s", s->bad);
}

static sk_sock *dial_port(int port, int timeout_ms)
{
    char text[64], err[256] = "";
    sk_addr a;
    snprintf(text, sizeof text, "127.0.0.1:%d", port);
    cr_assert_eq(sk_addr_parse(text, &a, err, sizeof err), 0, "%s", err);
    sk_sock *sk = NULL;
    int rc = sk_sock_dial(&a, NULL, timeout_ms, &sk, err, sizeof err);
    cr_assert(rc == 0, "sk_sock_dial %s: %d %s", text, rc, err);
    return sk;
}

/* Reads until the peer closes (the client is done). */
static void srv_wait_eof(srv *s, int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n > 0) {
            s->got += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        /* A client that closes with unread data (after -EMSGSIZE, say)
         * resets the connection: that is its close too. */
        if (n < 0 && errno != ECONNRESET)
            srv_fail(s, "waiting for the client to close");
        return;
    }
}

static void srv_send(srv *s, int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            srv_fail(s, "send");
            return;
        }
        b += w;
        n -= (size_t)w;
    }
}

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* ----------------------------------------------------------------- dial */

static void fn_wait_eof(srv *s, int fd, int i)
{
    (void)i;
    srv_wait_eof(s, fd);
}

Test(client, dial_gives_nonblocking_cloexec_nodelay)
{
    int fds = unit_count_fds();
    srv s;
    srv_start_tcp(&s, fn_wait_eof, 1);
    sk_sock *sk = dial_port(s.port, 2000);
    cr_assert(fcntl(sk_sock_fd(sk), F_GETFL) & O_NONBLOCK, "dialled sk is blocking");
    cr_assert(fcntl(sk_sock_fd(sk), F_GETFD) & FD_CLOEXEC, "dialled sk not close-on-exec");
    int v = 0;
    socklen_t vl = sizeof v;
    cr_assert_eq(getsockopt(sk_sock_fd(sk), IPPROTO_TCP, TCP_NODELAY, &v, &vl), 0);
    cr_assert(v != 0, "TCP_NODELAY not set");
    sk_sock_close(sk);
    srv_end(&s);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

Test(client, dial_refused)
{
    /* A bound socket that is not listening: connecting to it is refused. */
    int b = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(b >= 0);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(b, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t len = sizeof sin;
    cr_assert_eq(getsockname(b, (struct sockaddr *)&sin, &len), 0);
    int fds = unit_count_fds();

    char text[64], err[256];
    snprintf(text, sizeof text, "tcp://127.0.0.1:%d", ntohs(sin.sin_port));
    sk_addr a;
    cr_assert_eq(sk_addr_parse(text, &a, err, sizeof err), 0);
    memset(err, 0, sizeof err);
    sk_sock *sk = NULL;
    int r = sk_sock_dial(&a, NULL, 2000, &sk, err, sizeof err);
    cr_assert(sk == NULL);
    cr_assert(r < 0, "connect to a non-listening port gave %d", r);
    cr_assert_eq(r, -ECONNREFUSED, "got %d (%s)", r, sk_strerror(r));
    cr_assert(err[0] != '\0', "no error text");
    cr_assert_eq(unit_count_fds(), fds, "descriptor leaked by a failed dial");
    close(b);
}

Test(client, dial_unix_refused)
{
    char err[256] = "";
    sk_addr a;
    char text[128];
    snprintf(text, sizeof text, "unix:/tmp/sockit-no-such-%d.sock", (int)getpid());
    cr_assert_eq(sk_addr_parse(text, &a, err, sizeof err), 0);
    int fds = unit_count_fds();
    sk_sock *sk = NULL;
    int r = sk_sock_dial(&a, NULL, 1000, &sk, err, sizeof err);
    cr_assert(r < 0);
    cr_assert(sk == NULL);
    cr_assert(err[0] != '\0');
    cr_assert_eq(unit_count_fds(), fds);
}

/* ------------------------------------------------------- exact receives */

enum { SHORT_TOTAL = 10000 };

static void fn_short_writes(srv *s, int fd, int i)
{
    (void)i;
    nodelay(fd);
    uint8_t *buf = malloc(SHORT_TOTAL);
    unit_pattern(buf, SHORT_TOTAL, 17);
    static const size_t pieces[] = {1, 2, 1, 7, 100, 1, 1000, 3, 4000};
    size_t off = 0;
    for (size_t k = 0; off < SHORT_TOTAL; k++) {
        size_t n = k < sizeof pieces / sizeof pieces[0] ? pieces[k] : SHORT_TOTAL - off;
        if (n > SHORT_TOTAL - off)
            n = SHORT_TOTAL - off;
        srv_send(s, fd, buf + off, n);
        off += n;
        unit_sleep_ms(2); /* separate segments: the client sees short reads */
    }
    free(buf);
    srv_wait_eof(s, fd);
}

Test(client, recv_exact_across_short_writes)
{
    srv s;
    srv_start_tcp(&s, fn_short_writes, 1);
    sk_sock *sk = dial_port(s.port, 2000);
    uint8_t *buf = malloc(SHORT_TOTAL + 16);
    memset(buf, 0, SHORT_TOTAL + 16);
    cr_assert_eq(sk_sock_recv_exact(sk, buf, SHORT_TOTAL, 5000), 0);
    cr_assert(unit_pattern_ok(buf, SHORT_TOTAL, 17), "data differs");
    sk_sock_close(sk);
    free(buf);
    srv_end(&s);
}

/* The server reads a frame, checks its big-endian header, and answers with a
 * 5000-byte frame whose header and body arrive in pieces, then an empty
 * frame, then shuts down its write side cleanly. */
static void fn_frames(srv *s, int fd, int i)
{
    (void)i;
    nodelay(fd);
    uint8_t h[4], p[32];
    if (unit_read_exact(fd, h, 4) != 0) {
        srv_fail(s, "reading the header");
        return;
    }
    if (h[0] != 0 || h[1] != 0 || h[2] != 0 || h[3] != 12) {
        snprintf(s->bad, sizeof s->bad, "header %02x %02x %02x %02x, want 00 00 00 0c", h[0], h[1],
                 h[2], h[3]);
        return;
    }
    if (unit_read_exact(fd, p, 12) != 0 || memcmp(p, "ping-payload", 12) != 0) {
        srv_fail(s, "payload");
        return;
    }
    uint8_t *body = malloc(5000);
    unit_pattern(body, 5000, 3);
    uint8_t hdr[4] = {0, 0, 0x13, 0x88}; /* 5000 */
    srv_send(s, fd, hdr, 2);
    unit_sleep_ms(5);
    srv_send(s, fd, hdr + 2, 2);
    unit_sleep_ms(5);
    srv_send(s, fd, body, 1);
    unit_sleep_ms(5);
    srv_send(s, fd, body + 1, 2999);
    unit_sleep_ms(5);
    srv_send(s, fd, body + 3000, 2000);
    static const uint8_t empty[4] = {0, 0, 0, 0};
    srv_send(s, fd, empty, 4);
    free(body);
    shutdown(fd, SHUT_WR);
    srv_wait_eof(s, fd);
}

Test(client, frames_round_trip_then_nodata)
{
    int fds = unit_count_fds();
    srv s;
    srv_start_tcp(&s, fn_frames, 1);
    sk_sock *sk = dial_port(s.port, 2000);
    cr_assert_eq(sk_sock_send_frame(sk, "ping-payload", 12, 2000), 0);
    uint8_t *buf = malloc(8192);
    ssize_t n = sk_sock_recv_frame(sk, buf, 8192, 5000);
    cr_assert_eq(n, 5000, "sk_recv_frame returned %zd (%s)", n, sk_strerror((int)n));
    cr_assert(unit_pattern_ok(buf, 5000, 3));
    n = sk_sock_recv_frame(sk, buf, 8192, 5000);
    cr_assert_eq(n, 0, "empty frame gave %zd", n);
    n = sk_sock_recv_frame(sk, buf, 8192, 5000);
    cr_assert_eq(n, -ENODATA, "clean EOF gave %zd (%s)", n, sk_strerror((int)n));
    sk_sock_close(sk);
    free(buf);
    srv_end(&s);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

static void fn_close_at_once(srv *s, int fd, int i)
{
    (void)s;
    (void)fd;
    (void)i;
}

Test(client, recv_frame_nodata_on_immediate_close)
{
    srv s;
    srv_start_tcp(&s, fn_close_at_once, 1);
    sk_sock *sk = dial_port(s.port, 2000);
    uint8_t buf[16];
    ssize_t n = sk_sock_recv_frame(sk, buf, sizeof buf, 3000);
    cr_assert_eq(n, -ENODATA, "got %zd (%s)", n, sk_strerror((int)n));
    sk_sock_close(sk);
    srv_end(&s);
}

/* Connection i ends inside a frame in a different place each time. */
static void fn_close_mid_frame(srv *s, int fd, int i)
{
    static const uint8_t part[] = {0, 0, 0, 100, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j'};
    static const size_t cut[] = {1, 2, 3, 4, 14, 14};
    nodelay(fd);
    srv_send(s, fd, part, cut[i]);
    /* Wait until the client has the bytes and is waiting for more, so the
     * close is not merged with the data (it would be fine, but this tests
     * the harder order). */
    unit_sleep_ms(20);
    (void)s;
}

Test(client, econnreset_when_peer_closes_mid_frame)
{
    srv s;
    srv_start_tcp(&s, fn_close_mid_frame, 6);
    uint8_t buf[256];
    for (int i = 0; i < 5; i++) {
        sk_sock *sk = dial_port(s.port, 2000);
        ssize_t n = sk_sock_recv_frame(sk, buf, sizeof buf, 3000);
        cr_assert_eq(n, -ECONNRESET, "connection %d: got %zd (%s)", i, n, sk_strerror((int)n));
        sk_sock_close(sk);
    }
    /* sk_recv_exact: 10 of 14 bytes then EOF. */
    sk_sock *sk = dial_port(s.port, 2000);
    int r = sk_sock_recv_exact(sk, buf, 100, 3000);
    cr_assert_eq(r, -ECONNRESET, "sk_recv_exact got %d (%s)", r, sk_strerror(r));
    sk_sock_close(sk);
    srv_end(&s);
}

static void fn_big_frame(srv *s, int fd, int i)
{
    (void)i;
    uint8_t f[4 + 100];
    f[0] = 0;
    f[1] = 0;
    f[2] = 0;
    f[3] = 100;
    memset(f + 4, 'x', 100);
    srv_send(s, fd, f, sizeof f);
    srv_wait_eof(s, fd);
}

Test(client, recv_frame_emsgsize_when_larger_than_cap)
{
    srv s;
    srv_start_tcp(&s, fn_big_frame, 1);
    sk_sock *sk = dial_port(s.port, 2000);
    uint8_t buf[64];
    memset(buf, 0, sizeof buf);
    ssize_t n = sk_sock_recv_frame(sk, buf, 10, 3000);
    cr_assert_eq(n, -EMSGSIZE, "got %zd (%s)", n, sk_strerror((int)n));
    for (size_t k = 10; k < sizeof buf; k++)
        cr_assert_eq(buf[k], 0, "wrote past cap at %zu", k);
    sk_sock_close(sk);
    srv_end(&s);
}

/* ------------------------------------------------------------- timeouts */

static void fn_silent(srv *s, int fd, int i)
{
    if (i == 1) {
        static const uint8_t part[] = {0, 0, 0, 8, 'h', 'a'};
        srv_send(s, fd, part, sizeof part); /* half a frame, then silence */
    }
    srv_wait_eof(s, fd);
}

static void check_timeout(long long r, uint64_t t0, const char *what)
{
    uint64_t took = unit_now_ms() - t0;
    cr_assert_eq(r, -ETIMEDOUT, "%s: got %lld (%s)", what, r, sk_strerror((int)r));
    /* Bounds, not a duration: it neither gave up at once nor waited on. */
    cr_assert(took >= 90, "%s: gave up after %llu ms with a 100 ms timeout", what,
              (unsigned long long)took);
    cr_assert(took < 3000, "%s: took %llu ms with a 100 ms timeout", what,
              (unsigned long long)took);
}

Test(client, timeouts_when_peer_is_silent)
{
    srv s;
    srv_start_tcp(&s, fn_silent, 2);
    uint8_t buf[64];
    sk_sock *sk = dial_port(s.port, 2000);
    uint64_t t0 = unit_now_ms();
    check_timeout(sk_sock_recv_frame(sk, buf, sizeof buf, 100), t0, "sk_recv_frame");
    t0 = unit_now_ms();
    check_timeout(sk_sock_recv_exact(sk, buf, 10, 100), t0, "sk_recv_exact");
    t0 = unit_now_ms();
    check_timeout(sk_sock_recv_wait(sk, buf, sizeof buf, 100), t0, "sk_sock_recv_wait");
    sk_sock_close(sk);

    /* Half a frame arrives, the rest never does. */
    sk = dial_port(s.port, 2000);
    t0 = unit_now_ms();
    check_timeout(sk_sock_recv_frame(sk, buf, sizeof buf, 100), t0, "sk_recv_frame mid-frame");
    sk_sock_close(sk);
    srv_end(&s);
}

/* The server never reads: sending more than the socket buffers hold times
 * out instead of blocking. */
static void fn_never_read(srv *s, int fd, int i)
{
    (void)fd;
    (void)i;
    /* Hold the connection open, unread, until the client has timed out. */
    for (int k = 0; k < 1000 && !atomic_load(&s->stop); k++)
        unit_sleep_ms(5);
}

Test(client, send_all_times_out_when_peer_does_not_read)
{
    srv s;
    srv_start_tcp(&s, fn_never_read, 1);
    sk_sock *sk = dial_port(s.port, 2000);
    const size_t big = 64u * 1024u * 1024u;
    uint8_t *buf = calloc(1, big);
    cr_assert_not_null(buf);
    uint64_t t0 = unit_now_ms();
    int r = sk_sock_send_all(sk, buf, big, 200);
    uint64_t took = unit_now_ms() - t0;
    atomic_store(&s.stop, 1);
    cr_assert_eq(r, -ETIMEDOUT, "got %d (%s)", r, sk_strerror(r));
    cr_assert(took >= 150 && took < 5000, "took %llu ms", (unsigned long long)took);
    sk_sock_close(sk);
    free(buf);
    srv_end(&s);
}

/* ------------------------------------------------------ sends and some */

enum { BULK = 4 * 1024 * 1024 };

static void fn_read_bulk(srv *s, int fd, int i)
{
    (void)i;
    uint8_t *buf = malloc(BULK);
    if (unit_read_exact(fd, buf, BULK) != 0)
        srv_fail(s, "short bulk read");
    else if (!unit_pattern_ok(buf, BULK, 99))
        srv_fail(s, "bulk data corrupted");
    free(buf);
    srv_send(s, fd, "ok", 2);
    srv_wait_eof(s, fd);
}

Test(client, send_all_bulk)
{
    srv s;
    srv_start_tcp(&s, fn_read_bulk, 1);
    sk_sock *sk = dial_port(s.port, 2000);
    uint8_t *buf = malloc(BULK);
    unit_pattern(buf, BULK, 99);
    cr_assert_eq(sk_sock_send_all(sk, buf, BULK, 10000), 0);
    uint8_t ok[2];
    cr_assert_eq(sk_sock_recv_exact(sk, ok, 2, 5000), 0);
    cr_assert(memcmp(ok, "ok", 2) == 0);
    sk_sock_close(sk);
    free(buf);
    srv_end(&s);
}

static void fn_abc_close(srv *s, int fd, int i)
{
    (void)i;
    srv_send(s, fd, "abc", 3);
}

Test(client, recv_some_then_eof)
{
    srv s;
    srv_start_tcp(&s, fn_abc_close, 1);
    sk_sock *sk = dial_port(s.port, 2000);
    char buf[100];
    size_t have = 0;
    while (have < 3) {
        ssize_t n = sk_sock_recv_wait(sk, buf + have, sizeof buf - have, 3000);
        cr_assert(n >= 1, "sk_sock_recv_wait returned %zd (%s) with %zu of 3 bytes", n,
                  sk_strerror((int)n), have);
        have += (size_t)n;
    }
    cr_assert_eq(have, 3u);
    cr_assert(memcmp(buf, "abc", 3) == 0);
    ssize_t n = sk_sock_recv_wait(sk, buf, sizeof buf, 3000);
    cr_assert_eq(n, 0, "EOF gave %zd", n);
    sk_sock_close(sk);
    srv_end(&s);
}

/* -------------------------------------------------------------- unix */

static void fn_unix_echo_frame(srv *s, int fd, int i)
{
    (void)i;
    uint8_t h[4], p[64];
    if (unit_read_exact(fd, h, 4) != 0 || h[3] != 5 || unit_read_exact(fd, p, 5) != 0) {
        srv_fail(s, "unix frame");
        return;
    }
    srv_send(s, fd, h, 4);
    srv_send(s, fd, p, 5);
    srv_wait_eof(s, fd);
}

static void unix_round_trip(int abstract)
{
    int fds = unit_count_fds();
    srv s;
    srv_start_unix(&s, fn_unix_echo_frame, 1, abstract);
    char text[160], err[256] = "";
    snprintf(text, sizeof text, "unix:%s%s", abstract ? "@" : "", s.path);
    sk_addr a;
    cr_assert_eq(sk_addr_parse(text, &a, err, sizeof err), 0, "%s", err);
    sk_sock *sk = NULL;
    int rc = sk_sock_dial(&a, NULL, 2000, &sk, err, sizeof err);
    cr_assert(rc == 0, "sk_sock_dial %s: %d %s", text, rc, err);
    cr_assert(fcntl(sk_sock_fd(sk), F_GETFL) & O_NONBLOCK);
    cr_assert(fcntl(sk_sock_fd(sk), F_GETFD) & FD_CLOEXEC);
    cr_assert_eq(sk_sock_send_frame(sk, "hello", 5, 2000), 0);
    char buf[16];
    ssize_t n = sk_sock_recv_frame(sk, buf, sizeof buf, 2000);
    cr_assert_eq(n, 5);
    cr_assert(memcmp(buf, "hello", 5) == 0);
    sk_sock_close(sk);
    srv_end(&s);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

Test(client, unix_path_round_trip) { unix_round_trip(0); }

Test(client, unix_abstract_round_trip) { unix_round_trip(1); }

/* ------------------------------------------ sk_sock_recv_line (line reader):
 * lines split and glued across reads, "\r\n", bytes after a line kept, the
 * limits and the ends of stream. */

TestSuite(recv_line, .init = unit_alarm);

/* A socket pair: sv[1] for the test to write, *sk (owning sv[0]) for the
 * reader. */
static void pair(int sv[2], sk_sock **sk)
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(sk_sock_adopt(sv[0], sk), 0);
}

Test(recv_line, glued_split_and_crlf)
{
    int sv[2];
    sk_sock *sk;
    pair(sv, &sk);
    char buf[64];
    sk_line_reader r;
    sk_line_reader_init(&r, sk, buf, sizeof buf);
    /* Two lines in one write, the second with "\r\n", and half of a third. */
    unit_write_all(sv[1], "one\ntwo\r\nthr", 12);
    const char *line;
    cr_assert_eq(sk_sock_recv_line(&r, &line, 1000), 3);
    cr_assert_str_eq(line, "one");
    cr_assert_eq(sk_sock_recv_line(&r, &line, 1000), 3);
    cr_assert_str_eq(line, "two");
    unit_write_all(sv[1], "ee\n\n", 4);
    cr_assert_eq(sk_sock_recv_line(&r, &line, 1000), 5);
    cr_assert_str_eq(line, "three");
    cr_assert_eq(sk_sock_recv_line(&r, &line, 1000), 0, "an empty line is a line");
    cr_assert_str_eq(line, "");
    close(sv[1]);
    cr_assert_eq(sk_sock_recv_line(&r, &line, 1000), -ENODATA);
    sk_sock_close(sk);
}

Test(recv_line, end_inside_a_line_and_timeout)
{
    int sv[2];
    sk_sock *sk;
    pair(sv, &sk);
    char buf[64];
    sk_line_reader r;
    sk_line_reader_init(&r, sk, buf, sizeof buf);
    const char *line;
    unit_write_all(sv[1], "partial", 7);
    cr_assert_eq(sk_sock_recv_line(&r, &line, 100), -ETIMEDOUT);
    close(sv[1]);
    cr_assert_eq(sk_sock_recv_line(&r, &line, 1000), -ECONNRESET);
    sk_sock_close(sk);
}

Test(recv_line, longest_line_fits_and_one_more_is_refused)
{
    int sv[2];
    sk_sock *sk;
    pair(sv, &sk);
    char buf[10]; /* lines of up to 8 bytes */
    sk_line_reader r;
    sk_line_reader_init(&r, sk, buf, sizeof buf);
    const char *line;
    unit_write_all(sv[1], "12345678\n123456789\n", 19);
    cr_assert_eq(sk_sock_recv_line(&r, &line, 1000), 8);
    cr_assert_str_eq(line, "12345678");
    cr_assert_eq(sk_sock_recv_line(&r, &line, 1000), -EMSGSIZE);
    char tiny[2];
    sk_line_reader_init(&r, sk, tiny, sizeof tiny);
    cr_assert_eq(sk_sock_recv_line(&r, &line, 10), -EINVAL);
    sk_sock_close(sk);
    close(sv[1]);
}

/* Timeout 0 is "no time at all", as for every sockit call: what is there
 * is taken, nothing is waited for. */
Test(recv_line, timeout_zero_takes_what_is_there_and_never_waits)
{
    int sv[2];
    sk_sock *sk;
    pair(sv, &sk);
    char buf[16];
    uint64_t t0 = unit_now_ms();
    cr_assert_eq(sk_sock_recv_wait(sk, buf, sizeof buf, 0), -ETIMEDOUT);
    cr_assert_eq(sk_sock_recv_exact(sk, buf, 1, 0), -ETIMEDOUT);
    cr_assert(unit_now_ms() - t0 < 500, "a zero timeout waited");
    unit_write_all(sv[1], "ab", 2);
    cr_assert_eq(sk_sock_recv_wait(sk, buf, sizeof buf, 0), 2);
    cr_assert_eq(sk_sock_send_all(sk, "x", 1, 0), 0);
    sk_sock_close(sk);
    close(sv[1]);
}
