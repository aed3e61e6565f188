/* test_stats.c — sk_stats_get and sk_stats_format: the counters move by
 * exactly what a server on this loop did (accept, a frame each way, a
 * protocol error, the close), and the text form fits its bound. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(stats, .init = unit_alarm);

static int messages, closes;

static void on_message(sk_conn *c, const uint8_t *data, size_t len)
{
    messages++;
    cr_assert_eq(sk_conn_send_msg(c, data, len), 0);
    sk_loop_stop(sk_conn_loop(c)); /* the reply is written in this iteration */
}

static void on_close(sk_conn *c, int err)
{
    (void)err;
    closes++;
    sk_loop_stop(sk_conn_loop(c));
}

Test(stats, counters_follow_one_connection)
{
    sk_stats s0, s1, s2;
    sk_stats_get(&s0);
    sk_loop *loop;
    cr_assert_eq(sk_loop_new(&loop), 0);
    sk_addr addr;
    cr_assert_eq(sk_addr_parse("127.0.0.1:0", &addr, NULL, 0), 0);
    sk_server_opts o;
    sk_server_opts_init(&o);
    o.conn.framing = SK_FRAMING_FRAME;
    o.conn.max_frame = 100;
    o.cbs.on_message = on_message;
    o.cbs.on_close = on_close;
    sk_server *srv;
    cr_assert_eq(sk_server_listen(loop, &addr, &o, &srv, NULL, 0), 0);

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)sk_server_port(srv)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    sk_sock *sk;
    cr_assert_eq(sk_sock_adopt(fd, &sk), 0);
    cr_assert_eq(sk_sock_send_frame(sk, "hello", 5, 2000), 0);
    unit_watchdog w;
    unit_watchdog_start(&w, loop, 5000);
    sk_loop_run(loop);
    cr_assert_eq(messages, 1);
    char back[16];
    cr_assert_eq(sk_sock_recv_frame(sk, back, sizeof back, 2000), 5);

    sk_stats_get(&s1);
    cr_assert_eq(s1.accepted - s0.accepted, 1);
    cr_assert_eq(s1.conns - s0.conns, 1);
    cr_assert_eq(s1.bytes_in - s0.bytes_in, 9);
    cr_assert_eq(s1.bytes_out - s0.bytes_out, 9);
    cr_assert_eq(s1.msgs_in - s0.msgs_in, 1);
    cr_assert_eq(s1.msgs_out - s0.msgs_out, 1);
    cr_assert_eq(s1.queued, 0);

    /* A frame over max_frame: a protocol error, counted once. */
    uint8_t hdr[4] = {0, 0, 1, 0};
    cr_assert_eq(sk_sock_send_all(sk, hdr, sizeof hdr, 2000), 0);
    sk_sock_close(sk);
    for (int i = 0; i < 100 && closes == 0; i++)
        sk_loop_run(loop);
    cr_assert_eq(unit_watchdog_end(&w), 0, "the loop hung");
    cr_assert_eq(closes, 1);
    sk_stats_get(&s2);
    cr_assert_eq(s2.err_protocol - s1.err_protocol, 1);
    cr_assert_eq(s2.conns, s0.conns);
    cr_assert_eq(s2.accepted - s0.accepted, 1);
    cr_assert_eq(s2.err_reset + s2.err_frame + s2.err_idle + s2.err_nobufs,
                 s0.err_reset + s0.err_frame + s0.err_idle + s0.err_nobufs);
    sk_server_free(srv);
    sk_loop_free(loop);
}

Test(stats, format_is_key_value_and_fits)
{
    sk_stats s;
    memset(&s, 0xff, sizeof s); /* every value at its widest */
    char text[SK_STATS_TEXT_MAX];
    int n = sk_stats_format(&s, text, sizeof text);
    cr_assert(n > 0 && n < SK_STATS_TEXT_MAX, "%d bytes", n);
    cr_assert_eq((size_t)n, strlen(text));
    memset(&s, 0, sizeof s);
    s.conns = 3;
    s.err_protocol = 1;
    s.mem = 65536;
    sk_stats_format(&s, text, sizeof text);
    cr_assert_str_eq(text,
                     "conns=3 accepted=0 refused=0 shed=0 bytes_in=0 bytes_out=0 msgs_in=0 "
                     "msgs_out=0 err_protocol=1 err_idle=0 err_frame=0 err_deadline=0 "
                     "err_reset=0 err_nobufs=0 queued=0 mem=65536 dgram_dropped=0 refused_acl=0");
}
