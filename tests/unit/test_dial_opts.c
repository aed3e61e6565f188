/* test_dial_opts.c — dial_opts.c and listener.c: sk_dial_source_parse's
 * spellings and refusals, the family and source of both dials
 * (sk_sock_dial_opts and sk_conn_connect with sk_conn_opts.dial, which the
 * relay's target uses), and sk_listener: timeout, access list refusal before
 * a byte is read, Unix socket file removal, descriptors back to baseline. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(dial_opts, .init = unit_alarm);

static int port_of_sa(const struct sockaddr_storage *ss)
{
    return ss->ss_family == AF_INET ? ntohs(((const struct sockaddr_in *)ss)->sin_port)
                                    : ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

Test(dial_opts, source_spellings)
{
    sk_dial_opts o;
    char ip[INET6_ADDRSTRLEN];
    memset(&o, 0, sizeof o);
    cr_assert_eq(sk_dial_source_parse("127.0.0.2", &o, NULL, 0), 0);
    cr_assert_eq(o.source.ss_family, AF_INET);
    cr_assert_eq(port_of_sa(&o.source), 0);
    inet_ntop(AF_INET, &((struct sockaddr_in *)&o.source)->sin_addr, ip, sizeof ip);
    cr_assert_str_eq(ip, "127.0.0.2");
    cr_assert_eq(sk_dial_source_parse("10.1.2.3:4567", &o, NULL, 0), 0);
    cr_assert_eq(port_of_sa(&o.source), 4567);
    cr_assert_eq(o.source_len, sizeof(struct sockaddr_in));
    cr_assert_eq(sk_dial_source_parse("::1", &o, NULL, 0), 0);
    cr_assert_eq(o.source.ss_family, AF_INET6);
    cr_assert_eq(o.source_len, sizeof(struct sockaddr_in6));
    cr_assert_eq(sk_dial_source_parse("[fe80::1]:80", &o, NULL, 0), 0);
    cr_assert_eq(port_of_sa(&o.source), 80);
    cr_assert_eq(sk_dial_source_parse("[::1]", &o, NULL, 0), 0);
    cr_assert_eq(port_of_sa(&o.source), 0);
}

Test(dial_opts, source_refusals)
{
    sk_dial_opts o;
    memset(&o, 0, sizeof o);
    char err[200];
    const char *bad[] = {"",     "localhost", "1.2.3.4:",  "1.2.3.4:65536", "1.2.3.4:-1",
                         "[::1", "[::1]x",    "[1.2.3.4]", "1.2.3.4:80x",   "::1:80:"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        cr_assert_eq(sk_dial_source_parse(bad[i], &o, err, sizeof err), -EINVAL, "%s", bad[i]);
        cr_assert(err[0] != '\0', "no sentence for %s", bad[i]);
    }
    cr_assert_eq(o.source.ss_family, AF_UNSPEC, "a refused source was kept");
    /* The text is quoted in the sentence, never a second line. */
    cr_assert_eq(sk_dial_source_parse("1.2.3.4\nx", &o, err, sizeof err), -EINVAL);
    cr_assert(strchr(err, '\n') == NULL, "%s", err);
    o.family = AF_INET6;
    cr_assert_eq(sk_dial_source_parse("127.0.0.1", &o, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "not an IPv6 address") != NULL, "%s", err);
}

/* A listener on 127.0.0.1:0 made with sk_listener_open. */
static sk_listener *loopback_listener(const sk_acl *acl)
{
    sk_addr a;
    cr_assert_eq(sk_addr_parse("127.0.0.1:0", &a, NULL, 0), 0);
    sk_listener_opts lo = {.acl = acl};
    sk_listener *l = NULL;
    char err[200];
    cr_assert_eq(sk_listener_open(&a, &lo, &l, err, sizeof err), 0, "%s", err);
    cr_assert(sk_listener_port(l) > 0);
    return l;
}

static sk_addr addr_of(const sk_listener *l)
{
    char text[64];
    snprintf(text, sizeof text, "127.0.0.1:%d", sk_listener_port(l));
    sk_addr a;
    cr_assert_eq(sk_addr_parse(text, &a, NULL, 0), 0);
    return a;
}

Test(dial_opts, blocking_dial_binds_the_source)
{
    int fds = unit_count_fds();
    sk_listener *l = loopback_listener(NULL);
    sk_addr a = addr_of(l);
    sk_dial_opts o;
    memset(&o, 0, sizeof o);
    cr_assert_eq(sk_dial_source_parse("127.0.0.3", &o, NULL, 0), 0);
    sk_sock *c = NULL, *s = NULL;
    char err[200];
    cr_assert_eq(sk_sock_dial_opts(&a, NULL, &o, 2000, &c, err, sizeof err), 0, "%s", err);
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    cr_assert_eq(sk_listener_accept(l, 2000, &s, &peer, &pl, err, sizeof err), 0, "%s", err);
    char text[64];
    sk_sockaddr_format((struct sockaddr *)&peer, pl, text, sizeof text);
    cr_assert(strncmp(text, "127.0.0.3:", 10) == 0, "the server saw %s", text);
    sk_sock_close(c);
    sk_sock_close(s);
    /* IPv4 only (the source's family) to an IPv6 literal: nothing to try. */
    sk_addr six;
    cr_assert_eq(sk_addr_parse("[::1]:1", &six, NULL, 0), 0);
    cr_assert_eq(sk_sock_dial_opts(&six, NULL, &o, 2000, &c, err, sizeof err), -EADDRNOTAVAIL);
    cr_assert(strstr(err, "no IPv4 address") != NULL, "%s", err);
    /* Unix: refused. */
    sk_addr u;
    cr_assert_eq(sk_addr_parse("unix:/tmp/nowhere", &u, NULL, 0), 0);
    cr_assert_eq(sk_sock_dial_opts(&u, NULL, &o, 2000, &c, err, sizeof err), -EINVAL);
    sk_listener_close(l);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

static struct {
    sk_loop *loop;
    int opens, err;
    struct sockaddr_storage local;
} g;

static void on_open(sk_conn *c)
{
    g.opens++;
    socklen_t len = sizeof g.local;
    getsockname(sk_conn_fd(c), (struct sockaddr *)&g.local, &len);
    sk_conn_abort(c, 0);
}

static void on_close(sk_conn *c, int err)
{
    (void)c;
    if (g.opens == 0)
        g.err = err;
    sk_loop_stop(g.loop);
}

Test(dial_opts, async_connect_binds_the_source_and_copies_the_options)
{
    sk_listener *l = loopback_listener(NULL);
    sk_addr a = addr_of(l);
    memset(&g, 0, sizeof g);
    cr_assert_eq(sk_loop_new(&g.loop), 0);
    sk_dial_opts *o = calloc(1, sizeof *o);
    cr_assert_eq(sk_dial_source_parse("127.0.0.4", o, NULL, 0), 0);
    sk_conn_opts co;
    sk_conn_opts_init(&co);
    co.dial = o;
    sk_conn_callbacks cbs = {.on_open = on_open, .on_close = on_close};
    sk_conn *c = NULL;
    cr_assert_eq(sk_conn_connect(g.loop, &a, &co, &cbs, NULL, 2000, &c), 0);
    free(o); /* copied by the call: the dial must not need it any more */
    unit_watchdog w;
    unit_watchdog_start(&w, g.loop, 10000);
    sk_loop_run(g.loop);
    cr_assert_eq(unit_watchdog_end(&w), 0, "the loop hung");
    cr_assert_eq(g.opens, 1, "err %d", g.err);
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &((struct sockaddr_in *)&g.local)->sin_addr, ip, sizeof ip);
    cr_assert_str_eq(ip, "127.0.0.4");
    sk_loop_free(g.loop);
    /* A family the name lacks: refused at once, no connection made. */
    cr_assert_eq(sk_loop_new(&g.loop), 0);
    sk_dial_opts six = {.family = AF_INET6};
    co.dial = &six;
    cr_assert_eq(sk_conn_connect(g.loop, &a, &co, &cbs, NULL, 2000, &c), -EADDRNOTAVAIL);
    sk_loop_free(g.loop);
    sk_listener_close(l);
}

Test(dial_opts, listener_times_out_and_refuses_by_acl)
{
    int fds = unit_count_fds();
    sk_acl *acl = NULL;
    cr_assert_eq(sk_acl_new(&acl), 0);
    cr_assert_eq(sk_acl_add(acl, 1, "127.0.0.2", NULL, 0), 0);
    sk_listener *l = loopback_listener(acl);
    sk_sock *s = NULL;
    char err[200];
    cr_assert_eq(sk_listener_accept(l, 0, &s, NULL, NULL, err, sizeof err), -ETIMEDOUT);
    /* A refused peer is closed without a byte read; the next one is taken. */
    int bad = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in src = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.2", &src.sin_addr);
    cr_assert_eq(bind(bad, (struct sockaddr *)&src, sizeof src), 0);
    struct sockaddr_in dst = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)sk_listener_port(l))};
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    cr_assert_eq(connect(bad, (struct sockaddr *)&dst, sizeof dst), 0);
    int good = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(good, (struct sockaddr *)&dst, sizeof dst), 0);
    sk_stats before, after;
    sk_stats_get(&before);
    struct sockaddr_storage peer;
    socklen_t pl = sizeof peer;
    cr_assert_eq(sk_listener_accept(l, 2000, &s, &peer, &pl, err, sizeof err), 0, "%s", err);
    sk_stats_get(&after);
    cr_assert_eq(after.refused_acl, before.refused_acl + 1);
    char text[64];
    sk_sockaddr_format((struct sockaddr *)&peer, pl, text, sizeof text);
    cr_assert(strncmp(text, "127.0.0.1:", 10) == 0, "accepted %s", text);
    char b;
    struct pollfd p = {.fd = bad, .events = POLLIN};
    cr_assert_eq(poll(&p, 1, 2000), 1);
    cr_assert_eq(recv(bad, &b, 1, 0), 0, "the refused peer was not closed");
    close(bad);
    close(good);
    sk_sock_close(s);
    sk_listener_close(l);
    sk_acl_free(acl);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

Test(dial_opts, listener_removes_its_unix_file)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/sockit-lst-%d.sock", (int)getpid());
    char text[80];
    snprintf(text, sizeof text, "unix:%s", path);
    sk_addr a;
    cr_assert_eq(sk_addr_parse(text, &a, NULL, 0), 0);
    sk_listener *l = NULL;
    char err[200];
    cr_assert_eq(sk_listener_open(&a, NULL, &l, err, sizeof err), 0, "%s", err);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(sk_listener_port(l), 0);
    sk_sock *c = NULL, *s = NULL;
    cr_assert_eq(sk_sock_dial(&a, NULL, 2000, &c, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_listener_accept(l, 2000, &s, NULL, NULL, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_sock_send_all(c, "x", 1, 2000), 0);
    char b;
    cr_assert_eq(sk_sock_recv_exact(s, &b, 1, 2000), 0);
    cr_assert_eq(b, 'x');
    sk_sock_close(c);
    sk_sock_close(s);
    sk_listener_close(l);
    cr_assert_neq(stat(path, &st), 0, "the socket file was left behind");
    /* tls:// without a server context, a family on unix:: refused. */
    sk_addr t;
    cr_assert_eq(sk_addr_parse("tls://127.0.0.1:0", &t, NULL, 0), 0);
    cr_assert_eq(sk_listener_open(&t, NULL, &l, err, sizeof err), -EINVAL);
    sk_listener_opts fam = {.family = AF_INET};
    cr_assert_eq(sk_listener_open(&a, &fam, &l, err, sizeof err), -EINVAL);
}
