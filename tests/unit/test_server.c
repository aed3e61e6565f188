/* test_server.c — server.c: sk_server_drain follows the one timeout
 * convention (SK_FOREVER never asks a connection to close, 0 asks at once);
 * an accepted TCP socket carries keepalive and TCP_NODELAY (from its
 * listener); sk_conn_opts.start_paused reads nothing before sk_conn_resume. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(server, .init = unit_alarm);

static struct {
    sk_loop *loop;
    int opened, closes, close_err, drained;
    int client_fd;
    uint64_t drained_at;
    int keepalive, keepidle, keepintvl, keepcnt, nodelay; /* of the accepted socket */
} d;

static int sockopt(sk_conn *c, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    return getsockopt(sk_conn_fd(c), level, name, &v, &len) == 0 ? v : -1;
}

static void on_open(sk_conn *c)
{
    d.keepalive = sockopt(c, SOL_SOCKET, SO_KEEPALIVE);
    d.keepidle = sockopt(c, IPPROTO_TCP, TCP_KEEPIDLE);
    d.keepintvl = sockopt(c, IPPROTO_TCP, TCP_KEEPINTVL);
    d.keepcnt = sockopt(c, IPPROTO_TCP, TCP_KEEPCNT);
    d.nodelay = sockopt(c, IPPROTO_TCP, TCP_NODELAY);
    d.opened++;
    sk_loop_stop(d.loop);
}

static void on_close(sk_conn *c, int err)
{
    (void)c;
    d.closes++;
    d.close_err = err;
}

static void on_drained(sk_server *srv, void *ud)
{
    (void)srv;
    (void)ud;
    d.drained++;
    d.drained_at = unit_now_ms();
    sk_loop_stop(d.loop);
}

static void hang_up(sk_timer *t, void *ud)
{
    (void)t;
    (void)ud;
    close(d.client_fd);
    d.client_fd = -1;
}

static void run_bounded(void)
{
    unit_watchdog w;
    unit_watchdog_start(&w, d.loop, 5000);
    sk_loop_run(d.loop);
    cr_assert_eq(unit_watchdog_end(&w), 0, "the loop hung");
}

/* A server with one accepted connection from a plain client socket. */
static sk_server *open_one(void)
{
    memset(&d, 0, sizeof d);
    cr_assert_eq(sk_loop_new(&d.loop), 0);
    sk_server_opts so;
    sk_server_opts_init(&so);
    so.cbs.on_open = on_open;
    so.cbs.on_close = on_close;
    sk_addr a;
    cr_assert_eq(sk_addr_parse("127.0.0.1:0", &a, NULL, 0), 0);
    sk_server *srv = NULL;
    cr_assert_eq(sk_server_listen(d.loop, &a, &so, &srv, NULL, 0), 0);
    d.client_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)sk_server_port(srv)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(d.client_fd, (struct sockaddr *)&sin, sizeof sin), 0);
    run_bounded();
    cr_assert_eq(d.opened, 1);
    return srv;
}

Test(server, drain_forever_waits_for_the_connection_to_close_itself)
{
    sk_server *srv = open_one();
    sk_timer *t = NULL;
    cr_assert_eq(sk_timer_new(d.loop, hang_up, NULL, &t), 0);
    sk_timer_start(t, 300, 0);
    uint64_t t0 = unit_now_ms();
    sk_server_drain(srv, SK_FOREVER, on_drained, NULL);
    run_bounded();
    cr_assert_eq(d.drained, 1);
    cr_assert_eq(d.closes, 1);
    cr_assert_eq(d.close_err, 0, "closed with %d, not by the client", d.close_err);
    cr_assert(d.drained_at - t0 >= 250, "drained after %llu ms, before the client left",
              (unsigned long long)(d.drained_at - t0));
    sk_timer_free(t);
    sk_server_free(srv);
    sk_loop_free(d.loop);
}

Test(server, drain_zero_asks_connections_to_close_at_once)
{
    sk_server *srv = open_one();
    sk_server_drain(srv, 0, on_drained, NULL);
    run_bounded();
    cr_assert_eq(d.drained, 1);
    cr_assert_eq(d.closes, 1);
    cr_assert_eq(d.close_err, -ESHUTDOWN, "closed with %d", d.close_err);
    close(d.client_fd);
    sk_server_free(srv);
    sk_loop_free(d.loop);
}

Test(server, accepted_tcp_socket_has_keepalive_and_nodelay)
{
    sk_server *srv = open_one();
    cr_assert_eq(d.keepalive, 1, "SO_KEEPALIVE %d", d.keepalive);
    cr_assert_eq(d.keepidle, 60, "TCP_KEEPIDLE %d", d.keepidle);
    cr_assert_eq(d.keepintvl, 10, "TCP_KEEPINTVL %d", d.keepintvl);
    cr_assert_eq(d.keepcnt, 6, "TCP_KEEPCNT %d", d.keepcnt);
    cr_assert_neq(d.nodelay, 0, "TCP_NODELAY %d", d.nodelay);
    cr_assert_neq(d.nodelay, -1);
    close(d.client_fd);
    sk_server_free(srv);
    sk_loop_free(d.loop);
}

static struct {
    sk_loop *loop;
    sk_conn *conn;
    size_t got;
} sp;

static void sp_open(sk_conn *c) { sp.conn = c; }

static void sp_message(sk_conn *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    sp.got += len;
    sk_loop_stop(sp.loop);
}

static void sp_stop(sk_timer *t, void *ud)
{
    (void)t;
    sk_loop_stop(ud);
}

Test(server, start_paused_reads_nothing_until_resumed)
{
    memset(&sp, 0, sizeof sp);
    cr_assert_eq(sk_loop_new(&sp.loop), 0);
    sk_server_opts so;
    sk_server_opts_init(&so);
    so.conn.framing = SK_FRAMING_RAW;
    so.conn.start_paused = 1;
    so.cbs.on_open = sp_open;
    so.cbs.on_message = sp_message;
    sk_addr a;
    cr_assert_eq(sk_addr_parse("127.0.0.1:0", &a, NULL, 0), 0);
    sk_server *srv = NULL;
    cr_assert_eq(sk_server_listen(sp.loop, &a, &so, &srv, NULL, 0), 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)sk_server_port(srv)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    cr_assert_eq(write(fd, "hello", 5), 5);
    /* 300 ms with the bytes waiting: opened, but nothing read. */
    sk_timer *t = NULL;
    cr_assert_eq(sk_timer_new(sp.loop, sp_stop, sp.loop, &t), 0);
    sk_timer_start(t, 300, 0);
    unit_watchdog w;
    unit_watchdog_start(&w, sp.loop, 5000);
    sk_loop_run(sp.loop);
    cr_assert_eq(unit_watchdog_end(&w), 0, "the loop hung");
    cr_assert_not_null(sp.conn, "never opened");
    cr_assert_eq(sp.got, 0, "read %zu bytes while paused", sp.got);
    sk_conn_resume(sp.conn);
    sk_timer_start(t, 3000, 0);
    unit_watchdog_start(&w, sp.loop, 5000);
    sk_loop_run(sp.loop);
    cr_assert_eq(unit_watchdog_end(&w), 0, "the loop hung");
    cr_assert_eq(sp.got, 5, "read %zu bytes after resuming", sp.got);
    sk_timer_free(t);
    close(fd);
    sk_server_free(srv);
    sk_loop_free(sp.loop);
}
