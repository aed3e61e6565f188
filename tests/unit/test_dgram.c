/* test_dgram.c — sk_dgram_bind and sk_dgram_connect; sk_dgram_guard, the reply filter of answering
 * datagram endpoints: a source over the rate is cut off while another is
 * still delivered, our own port on a loopback address and source ports
 * below 1024 are never delivered, and every refusal is counted. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(dgram_guard, .init = unit_alarm);

/* What the endpoint delivered: datagrams per source port, and the port of
 * the marker source whose datagram ends the run. */
typedef struct seen {
    int from_port[65536];
    int marker_port;
} seen;

static int port_of(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET ? ntohs(((const struct sockaddr_in *)sa)->sin_port) : -1;
}

/* A UDP socket bound to host:port (port 0: any); -1 with errno if not. */
static int udp_bound(const char *host, int port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, host, &sin.sin_addr);
    if (bind(fd, (struct sockaddr *)&sin, sizeof sin) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int local_port_of(int fd)
{
    struct sockaddr_in sin;
    socklen_t sl = sizeof sin;
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    return ntohs(sin.sin_port);
}

static void send_to(int fd, int port, int count)
{
    struct sockaddr_in to = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < count; i++)
        cr_assert_eq(sendto(fd, "x", 1, 0, (struct sockaddr *)&to, sizeof to), 1);
}

/* One guarded endpoint on 127.0.0.1 and the loop that runs it. */
typedef struct fixture {
    sk_loop *loop;
    sk_dgram *d;
    seen *s;
    int port;
} fixture;

static sk_loop *stop_loop; /* the loop on_marker stops */

static void on_marker(sk_dgram *d, const uint8_t *data, size_t len, const struct sockaddr *peer,
                      socklen_t peerlen, void *ud)
{
    seen *s = ud;
    (void)d;
    (void)data;
    (void)len;
    (void)peerlen;
    int port = port_of(peer);
    cr_assert(port >= 0);
    s->from_port[port]++;
    if (port == s->marker_port)
        sk_loop_stop(stop_loop);
}

static void fixture_open(fixture *f, unsigned rate)
{
    memset(f, 0, sizeof *f);
    f->s = calloc(1, sizeof *f->s);
    cr_assert(f->s != NULL);
    cr_assert_eq(sk_loop_new(&f->loop), 0);
    stop_loop = f->loop;
    sk_addr addr;
    cr_assert_eq(sk_addr_parse("udp://127.0.0.1:0", &addr, NULL, 0), 0);
    cr_assert_eq(sk_dgram_bind(f->loop, &addr, on_marker, f->s, &f->d, NULL, 0), 0);
    cr_assert_eq(sk_dgram_guard(f->d, rate), 0);
    f->port = sk_dgram_port(f->d);
}

/* Sends the marker from a fresh source, runs the loop until the endpoint
 * has it (everything sent before is handled by then). */
static void fixture_run(fixture *f)
{
    int marker = udp_bound("127.0.0.1", 0);
    cr_assert(marker >= 0);
    f->s->marker_port = local_port_of(marker);
    send_to(marker, f->port, 1);
    unit_watchdog w;
    unit_watchdog_start(&w, f->loop, 5000);
    sk_loop_run(f->loop);
    cr_assert_eq(unit_watchdog_end(&w), 0, "the marker datagram never arrived");
    cr_assert_eq(f->s->from_port[f->s->marker_port], 1);
    close(marker);
}

static void fixture_close(fixture *f)
{
    sk_dgram_free(f->d);
    sk_loop_free(f->loop);
    free(f->s);
}

Test(dgram_guard, rate_cuts_one_source_not_another)
{
    sk_stats s0, s1;
    sk_stats_get(&s0);
    fixture f;
    fixture_open(&f, 5);
    int a = udp_bound("127.0.0.1", 0);
    cr_assert(a >= 0);
    send_to(a, f.port, 20);
    fixture_run(&f); /* the marker is another source: still delivered */
    cr_assert_eq(f.s->from_port[local_port_of(a)], 5);
    cr_assert_eq(sk_dgram_dropped(f.d), 15);
    sk_stats_get(&s1);
    cr_assert_geq(s1.dgram_dropped - s0.dgram_dropped, 15);
    close(a);
    fixture_close(&f);
}

Test(dgram_guard, rate_zero_is_unlimited)
{
    fixture f;
    fixture_open(&f, 0);
    int a = udp_bound("127.0.0.1", 0);
    cr_assert(a >= 0);
    send_to(a, f.port, 50);
    fixture_run(&f);
    cr_assert_eq(f.s->from_port[local_port_of(a)], 50);
    cr_assert_eq(sk_dgram_dropped(f.d), 0);
    close(a);
    fixture_close(&f);
}

Test(dgram_guard, own_port_on_loopback_is_dropped)
{
    /* 127.0.0.2 is ours too (all of 127/8 is loopback): a datagram from
     * there with our own port is what a reply to ourselves looks like. */
    fixture f;
    fixture_open(&f, 1000);
    int self = udp_bound("127.0.0.2", f.port);
    cr_assert(self >= 0, "bind 127.0.0.2:%d: %s", f.port, strerror(errno));
    send_to(self, f.port, 3);
    fixture_run(&f);
    cr_assert_eq(f.s->from_port[f.port], 0);
    cr_assert_eq(sk_dgram_dropped(f.d), 3);
    close(self);
    fixture_close(&f);
}

Test(dgram_guard, source_port_below_1024_is_dropped)
{
    fixture f;
    fixture_open(&f, 1000);
    int low = -1, port = 0;
    for (port = 1023; port >= 600 && low < 0; port--) {
        low = udp_bound("127.0.0.3", port);
        if (low < 0 && errno == EACCES)
            break;
    }
    if (low < 0) {
        fixture_close(&f);
        cr_skip_test("cannot bind a UDP port below 1024 (needs root or CAP_NET_BIND_SERVICE)");
    }
    port = local_port_of(low);
    send_to(low, f.port, 2);
    fixture_run(&f);
    cr_assert_eq(f.s->from_port[port], 0, "a datagram from port %d was delivered", port);
    cr_assert_eq(sk_dgram_dropped(f.d), 2);
    close(low);
    fixture_close(&f);
}

/* ------------------------------------------------- bind and connect */

static int bc_got;

static void bc_on_datagram(sk_dgram *d, const uint8_t *data, size_t len,
                           const struct sockaddr *peer, socklen_t peerlen, void *ud)
{
    (void)d;
    (void)peer;
    (void)peerlen;
    if (len == 4 && memcmp(data, "ping", 4) == 0)
        bc_got++;
    sk_loop_stop(ud);
}

Test(dgram_guard, connect_reaches_bind)
{
    sk_loop *loop;
    cr_assert_eq(sk_loop_new(&loop), 0);
    sk_addr a;
    cr_assert_eq(sk_addr_parse("udp://127.0.0.1:0", &a, NULL, 0), 0);
    sk_dgram *srv = NULL, *cli = NULL;
    char err[200] = "";
    cr_assert_eq(sk_dgram_bind(loop, &a, bc_on_datagram, loop, &srv, err, sizeof err), 0, "%s",
                 err);
    a.port = (uint16_t)sk_dgram_port(srv);
    cr_assert_eq(sk_dgram_connect(loop, &a, NULL, NULL, &cli, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_dgram_send(cli, "ping", 4, NULL, 0), 0);
    bc_got = 0;
    unit_watchdog w;
    unit_watchdog_start(&w, loop, 5000);
    sk_loop_run(loop);
    cr_assert_eq(unit_watchdog_end(&w), 0, "the loop hung");
    cr_assert_eq(bc_got, 1);
    /* A stream address is no datagram address, either way. */
    sk_addr t;
    cr_assert_eq(sk_addr_parse("127.0.0.1:1", &t, NULL, 0), 0);
    sk_dgram *none = NULL;
    cr_assert_eq(sk_dgram_bind(loop, &t, bc_on_datagram, NULL, &none, NULL, 0), -EPROTONOSUPPORT);
    cr_assert_eq(sk_dgram_connect(loop, &t, bc_on_datagram, NULL, &none, NULL, 0),
                 -EPROTONOSUPPORT);
    cr_assert_null(none);
    sk_dgram_free(cli);
    sk_dgram_free(srv);
    sk_loop_free(loop);
}
