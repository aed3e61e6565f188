/* test_dial.c — dial.c and its neighbours: connecting to a name with several addresses (Happy
 * Eyeballs v2, RFC 8305) through sk_conn_connect and sk_sock_dial, and the small
 * connection guarantees next to it: keepalive on accepted TCP sockets, a
 * frame limit changed inside one read, a deadline reason that is copied.
 * The name tests run in a private mount namespace with their own /etc/hosts
 * (root only; skipped otherwise), where sockit-he-test lists ::1 first. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(connect, .init = unit_alarm);

#define HE_NAME "sockit-he-test"

/* -------------------------------------------------------------- set-up */

/* Gives this test process (Criterion runs each test in its own) a private
 * /etc/hosts with these lines; skips the test where that is not allowed. */
static void private_hosts(const char *lines)
{
    if (unshare(CLONE_NEWNS) < 0)
        cr_skip_test("no private mount namespace (unshare: %s; needs root)", strerror(errno));
    cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "%s", strerror(errno));
    char path[] = "/tmp/sockit-hosts-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    size_t len = strlen(lines);
    cr_assert_eq(write(fd, lines, len), (ssize_t)len);
    close(fd);
    int rc = mount(path, "/etc/hosts", NULL, MS_BIND, NULL);
    int e = errno;
    unlink(path); /* the mount keeps the file */
    if (rc < 0)
        cr_skip_test("cannot bind-mount a hosts file: %s", strerror(e));
}

static void he_hosts(void) { private_hosts("::1 " HE_NAME "\n127.0.0.1 " HE_NAME "\n"); }

/* A listening TCP socket on the loopback of family (AF_INET or AF_INET6), port
 * (0: any); returns it, or -1 when the port is taken. */
static int listen_on(int family, int port, int backlog)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in->sin_port = htons((uint16_t)port);
        len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        in6->sin6_port = htons((uint16_t)port);
        len = sizeof *in6;
    }
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int port_of(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
    return ss.ss_family == AF_INET ? ntohs(((struct sockaddr_in *)&ss)->sin_port)
                                   : ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* Whether a non-blocking connect to [::1]:port completes within ms. */
static int try_connect6(int port, int ms)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
    in6.sin6_addr = in6addr_loopback;
    if (connect(fd, (struct sockaddr *)&in6, sizeof in6) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (poll(&p, 1, ms) == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 &&
        soerr == 0)
        return fd;
    close(fd); /* still in SYN_SENT: its SYN was dropped */
    return -1;
}

/* [::1]:port that neither refuses nor answers: a listener with backlog 0
 * whose accept queue is filled and never accepted, so the kernel drops
 * every further SYN. Loopback only. */
typedef struct blackhole {
    int lfd;
    int fill[8];
    int nfill;
} blackhole;

static int blackhole_open(blackhole *b, int port)
{
    memset(b, 0, sizeof *b);
    b->lfd = listen_on(AF_INET6, port, 0);
    if (b->lfd < 0)
        return -1;
    for (;;) {
        cr_assert(b->nfill < 8, "the backlog-0 queue never filled");
        int fd = try_connect6(port, 300);
        if (fd < 0)
            return 0; /* a SYN went unanswered: full */
        b->fill[b->nfill++] = fd;
    }
}

static void blackhole_close(blackhole *b)
{
    for (int i = 0; i < b->nfill; i++)
        close(b->fill[i]);
    close(b->lfd);
}

static void skip_without_ipv6(void)
{
    int fd = listen_on(AF_INET6, 0, 1);
    if (fd < 0)
        cr_skip_test("no IPv6 loopback here");
    close(fd);
}

/* A server on 127.0.0.1 and, when hole is not NULL, a black hole on [::1]
 * at the same port; returns the IPv4 listener. */
static int he_servers(blackhole *hole)
{
    for (int tries = 0; tries < 10; tries++) {
        int lfd = listen_on(AF_INET, 0, 16);
        cr_assert(lfd >= 0);
        if (hole == NULL || blackhole_open(hole, port_of(lfd)) == 0)
            return lfd;
        close(lfd); /* [::1] has that port taken: another one */
    }
    cr_assert_fail("no port free on both loopbacks");
    return -1;
}

/* ----------------------------------------------- sk_conn_connect's race */

static struct {
    sk_loop *loop;
    int opens, closes, err;
    char peer[64];
} g;

static void he_open(sk_conn *c)
{
    g.opens++;
    snprintf(g.peer, sizeof g.peer, "%s", sk_conn_peer(c));
    sk_conn_abort(c, 0); /* no lingering: the listener never accepts */
}

static void he_close(sk_conn *c, int err)
{
    (void)c;
    g.closes++;
    g.err = err;
    sk_loop_stop(g.loop);
}

/* Connects to HE_NAME:port in a loop; returns through g. */
static void he_connect(int port, int timeout_ms)
{
    memset(&g, 0, sizeof g);
    cr_assert_eq(sk_loop_new(&g.loop), 0);
    char text[64];
    snprintf(text, sizeof text, HE_NAME ":%d", port);
    sk_addr a;
    cr_assert_eq(sk_addr_parse(text, &a, NULL, 0), 0);
    sk_conn_callbacks cbs = {.on_open = he_open, .on_close = he_close};
    sk_conn *c = NULL;
    cr_assert_eq(sk_conn_connect(g.loop, &a, NULL, &cbs, NULL, timeout_ms, &c), 0);
    cr_assert_eq(sk_conn_fd(c), -1, "a socket before any attempt won");
    unit_watchdog w;
    unit_watchdog_start(&w, g.loop, 10000);
    sk_loop_run(g.loop);
    cr_assert_eq(unit_watchdog_end(&w), 0, "the loop hung");
    sk_loop_free(g.loop);
}

Test(connect, async_moves_on_when_the_first_address_refuses)
{
    skip_without_ipv6();
    he_hosts();
    int lfd = he_servers(NULL);
    int port = port_of(lfd);
    int fds = unit_count_fds();
    he_connect(port, 5000);
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    cr_assert_eq(g.opens, 1, "not connected (on_close %d: %s)", g.err, sk_strerror(g.err));
    cr_assert_str_eq(g.peer, want);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
    close(lfd);
}

Test(connect, async_starts_the_next_address_beside_a_pending_one)
{
    skip_without_ipv6();
    he_hosts();
    blackhole hole;
    int lfd = he_servers(&hole);
    int port = port_of(lfd);
    int fds = unit_count_fds();
    uint64_t t0 = unit_now_ms();
    he_connect(port, 5000);
    uint64_t took = unit_now_ms() - t0;
    char want[64];
    snprintf(want, sizeof want, "127.0.0.1:%d", port);
    cr_assert_eq(g.opens, 1, "not connected (on_close %d: %s)", g.err, sk_strerror(g.err));
    cr_assert_str_eq(g.peer, want);
    /* Started beside the pending one after the attempt delay, not after a
     * SYN retransmission (1 s) or the connect timeout (5 s). */
    cr_assert(took < 1000, "took %llu ms", (unsigned long long)took);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak: the losing attempt stayed open");
    blackhole_close(&hole);
    close(lfd);
}

Test(connect, async_timeout_covers_every_attempt)
{
    skip_without_ipv6();
    /* Only the black hole: the race has nothing to win and the one
     * timeout ends it. */
    private_hosts("::1 " HE_NAME "\n");
    blackhole hole;
    int lfd = he_servers(&hole);
    int port = port_of(lfd);
    close(lfd);
    he_connect(port, 400);
    cr_assert_eq(g.opens, 0);
    cr_assert_eq(g.closes, 1);
    cr_assert_eq(g.err, -ETIMEDOUT, "got %d", g.err);
    blackhole_close(&hole);
}

Test(connect, async_reports_the_last_failure_when_all_refuse)
{
    skip_without_ipv6();
    he_hosts();
    int lfd = he_servers(NULL);
    int port = port_of(lfd);
    close(lfd); /* nobody listens on either address now */
    he_connect(port, 5000);
    cr_assert_eq(g.opens, 0);
    cr_assert_eq(g.err, -ECONNREFUSED, "got %d", g.err);
}

/* ------------------------------------------------------- sk_sock_dial's race */

/* sk_sock_dial to HE_NAME:port must reach the IPv4 listener. */
static void dial_he(int port)
{
    char text[64], err[256] = "";
    snprintf(text, sizeof text, HE_NAME ":%d", port);
    sk_addr a;
    cr_assert_eq(sk_addr_parse(text, &a, NULL, 0), 0);
    sk_sock *sk = NULL;
    int rc = sk_sock_dial(&a, NULL, 5000, &sk, err, sizeof err);
    cr_assert(rc == 0, "sk_sock_dial: %s", err);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    cr_assert_eq(getpeername(sk_sock_fd(sk), (struct sockaddr *)&ss, &len), 0);
    cr_assert_eq(ss.ss_family, AF_INET, "connected to the wrong address");
    sk_sock_close(sk);
}

Test(connect, dial_moves_on_when_the_first_address_refuses)
{
    skip_without_ipv6();
    he_hosts();
    int lfd = he_servers(NULL);
    int fds = unit_count_fds();
    dial_he(port_of(lfd));
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
    close(lfd);
}

Test(connect, dial_starts_the_next_address_beside_a_pending_one)
{
    skip_without_ipv6();
    he_hosts();
    blackhole hole;
    int lfd = he_servers(&hole);
    int fds = unit_count_fds();
    uint64_t t0 = unit_now_ms();
    dial_he(port_of(lfd));
    uint64_t took = unit_now_ms() - t0;
    cr_assert(took < 1000, "took %llu ms", (unsigned long long)took);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak: the losing attempt stayed open");
    blackhole_close(&hole);
    close(lfd);
}

Test(connect, dial_timeout_covers_every_attempt)
{
    skip_without_ipv6();
    private_hosts("::1 " HE_NAME "\n");
    blackhole hole;
    int lfd = he_servers(&hole);
    int port = port_of(lfd);
    close(lfd);
    char text[64], err[256] = "";
    snprintf(text, sizeof text, HE_NAME ":%d", port);
    sk_addr a;
    cr_assert_eq(sk_addr_parse(text, &a, NULL, 0), 0);
    sk_sock *sk = NULL;
    int rc = sk_sock_dial(&a, NULL, 400, &sk, err, sizeof err);
    cr_assert_eq(rc, -ETIMEDOUT, "got %d (%s)", rc, err);
    cr_assert(strstr(err, "timed out after 400 ms") != NULL, "%s", err);
    blackhole_close(&hole);
}

/* ------------------------------------------- accepted connections' options */

static struct {
    sk_loop *loop;
    int opened;
    int keepalive, idle, intvl, cnt;
    int msgs, closes, err;
    char reason[128];
} s;

static int sockopt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    cr_assert_eq(getsockopt(fd, level, name, &v, &len), 0, "%s", strerror(errno));
    return v;
}

static void ka_open(sk_conn *c)
{
    int fd = sk_conn_fd(c);
    s.opened++;
    s.keepalive = sockopt(fd, SOL_SOCKET, SO_KEEPALIVE);
    s.idle = sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE);
    s.intvl = sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL);
    s.cnt = sockopt(fd, IPPROTO_TCP, TCP_KEEPCNT);
    sk_loop_stop(s.loop);
}

/* Runs a server on 127.0.0.1 with callbacks cbs and framing until the test's
 * callbacks stop the loop; first is written by a plain client before. */
static void serve_one(const sk_conn_callbacks *cbs, enum sk_framing framing, const void *first,
                      size_t first_len)
{
    cr_assert_eq(sk_loop_new(&s.loop), 0);
    sk_server_opts so;
    sk_server_opts_init(&so);
    so.conn.framing = framing;
    so.cbs = *cbs;
    sk_addr a;
    cr_assert_eq(sk_addr_parse("127.0.0.1:0", &a, NULL, 0), 0);
    sk_server *srv = NULL;
    char err[256];
    cr_assert_eq(sk_server_listen(s.loop, &a, &so, &srv, err, sizeof err), 0, "%s", err);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)sk_server_port(srv))};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    /* In the socket before the server accepts: one read takes it all. */
    if (first_len)
        unit_write_all(fd, first, first_len);
    unit_watchdog w;
    unit_watchdog_start(&w, s.loop, 10000);
    sk_loop_run(s.loop);
    cr_assert_eq(unit_watchdog_end(&w), 0, "the loop hung");
    close(fd);
    sk_server_free(srv);
    sk_loop_free(s.loop);
}

Test(connect, accepted_tcp_connections_have_keepalive)
{
    memset(&s, 0, sizeof s);
    sk_conn_callbacks cbs = {.on_open = ka_open};
    serve_one(&cbs, SK_FRAMING_RAW, NULL, 0);
    cr_assert_eq(s.opened, 1);
    cr_assert(s.keepalive != 0, "SO_KEEPALIVE not set on an accepted socket");
    cr_assert_eq(s.idle, 60);
    cr_assert_eq(s.intvl, 10);
    cr_assert_eq(s.cnt, 6);
}

/* ------------------------------------------ a frame limit raised mid-read */

static void auth_open(sk_conn *c) { sk_conn_set_max_msg(c, 4096); }

static void auth_message(sk_conn *c, const uint8_t *d, size_t n)
{
    (void)d;
    if (++s.msgs == 1)
        sk_conn_set_max_msg(c, 0); /* authenticated: full size from now */
    else if (n == 5000)
        sk_loop_stop(s.loop);
}

static void auth_close(sk_conn *c, int err)
{
    s.closes++;
    s.err = err;
    snprintf(s.reason, sizeof s.reason, "%s", sk_conn_reason(c));
    sk_loop_stop(s.loop);
}

Test(connect, max_msg_raised_by_on_message_applies_to_the_rest_of_the_read)
{
    memset(&s, 0, sizeof s);
    /* AUTH and a 5000-byte request in one write, as a client sends them
     * after the server's hello. */
    static uint8_t buf[4 + 4 + 4 + 5000];
    memcpy(buf, "\0\0\0\4AUTH\0\0\x13\x88", 12);
    memset(buf + 12, 'r', 5000);
    sk_conn_callbacks cbs = {
        .on_open = auth_open, .on_message = auth_message, .on_close = auth_close};
    serve_one(&cbs, SK_FRAMING_FRAME, buf, sizeof buf);
    cr_assert_eq(s.msgs, 2, "the request was refused: %s", s.reason);
}

/* ------------------------------------------------ the deadline's reason */

static char reason_buf[64];

static void dl_open(sk_conn *c)
{
    snprintf(reason_buf, sizeof reason_buf, "hello not finished in time");
    sk_conn_set_deadline(c, 50, reason_buf);
    /* The caller's buffer is reused at once, as a stack buffer would be. */
    memset(reason_buf, 'X', sizeof reason_buf - 1);
}

Test(connect, deadline_reason_is_copied)
{
    memset(&s, 0, sizeof s);
    sk_conn_callbacks cbs = {.on_open = dl_open, .on_close = auth_close};
    serve_one(&cbs, SK_FRAMING_RAW, NULL, 0);
    cr_assert_eq(s.closes, 1);
    cr_assert_eq(s.err, -ETIMEDOUT);
    cr_assert_str_eq(s.reason, "hello not finished in time");
}

/* ------------------------------------ deadlines follow SK_FOREVER / 0 */

static sk_timer *forever_timer;

static void dl_zero_open(sk_conn *c) { sk_conn_set_deadline(c, 0, "zero means now"); }

Test(connect, deadline_zero_passes_at_once)
{
    memset(&s, 0, sizeof s);
    sk_conn_callbacks cbs = {.on_open = dl_zero_open, .on_close = auth_close};
    serve_one(&cbs, SK_FRAMING_RAW, NULL, 0);
    cr_assert_eq(s.closes, 1);
    cr_assert_eq(s.err, -ETIMEDOUT);
    cr_assert_str_eq(s.reason, "zero means now");
}

static void forever_fire(sk_timer *t, void *ud)
{
    (void)t;
    sk_conn_close(ud);
}

static void dl_forever_open(sk_conn *c)
{
    sk_conn_set_deadline(c, 20, "should have been cleared");
    sk_conn_set_deadline(c, SK_FOREVER, NULL);
    cr_assert_eq(sk_timer_new(sk_conn_loop(c), forever_fire, c, &forever_timer), 0);
    sk_timer_start(forever_timer, 200, 0);
}

Test(connect, deadline_forever_clears_it)
{
    memset(&s, 0, sizeof s);
    sk_conn_callbacks cbs = {.on_open = dl_forever_open, .on_close = auth_close};
    serve_one(&cbs, SK_FRAMING_RAW, NULL, 0);
    sk_timer_free(forever_timer);
    cr_assert_eq(s.closes, 1);
    cr_assert_eq(s.err, 0, "closed with %d (%s)", s.err, s.reason);
}
