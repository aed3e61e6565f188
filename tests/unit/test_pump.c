/* test_pump.c — the interactive clients' poll loop (cli/pump.c): what a wait
 * reports, the deadline, the bounded queue and the flush, over a socketpair. */
#include <criterion/criterion.h>

#include <stdarg.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"

#include "../../cli/pump.c"

/* pump.c reports a failed poll through the command's stderr sink. */
void cli_err(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

TestSuite(pump, .init = unit_alarm);

/* A socket pair: *sk (owning sv[0]) for the pump, sv[1] for the test. */
static void pair(int sv[2], sk_sock **sk)
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(sk_sock_adopt(sv[0], sk), 0);
}

Test(pump, deadline_passed_is_a_timeout_and_nothing_else)
{
    int sv[2];
    sk_sock *sk;
    pair(sv, &sk);
    cli_pump p;
    cli_pump_init(&p, sk, -1);
    cli_pump_ready r;
    uint64_t t0 = cli_pump_now_ms();
    cr_assert_eq(cli_pump_wait(&p, false, t0 + 50, &r), 0);
    cr_assert(r.timeout);
    cr_assert_not(r.sock);
    cr_assert_not(r.sock_write);
    cr_assert_geq(cli_pump_now_ms() - t0, 50);
    cli_pump_free(&p);
    sk_sock_close(sk);
    close(sv[1]);
}

Test(pump, readable_socket_and_queued_bytes_are_reported)
{
    int sv[2];
    sk_sock *sk;
    pair(sv, &sk);
    cli_pump p;
    cli_pump_init(&p, sk, -1);
    cr_assert_eq(write(sv[1], "x", 1), 1);
    cr_assert_eq(cli_pump_queue(&p, "hello", 5), 0);
    cli_pump_ready r;
    cr_assert_eq(cli_pump_wait(&p, false, 0, &r), 0);
    cr_assert(r.sock);
    cr_assert(r.sock_write);
    cr_assert_not(r.timeout);
    cr_assert_eq(cli_pump_flush(&p), 0);
    cr_assert_eq(p.out_len, 0);
    char buf[8];
    cr_assert_eq(read(sv[1], buf, sizeof buf), 5);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    cli_pump_free(&p);
    sk_sock_close(sk);
    close(sv[1]);
}

Test(pump, a_full_queue_stops_stdin)
{
    int sv[2];
    sk_sock *sk;
    pair(sv, &sk);
    cli_pump p;
    cli_pump_init(&p, sk, -1);
    static uint8_t chunk[64 * 1024];
    while (cli_pump_room(&p))
        cr_assert_eq(cli_pump_queue(&p, chunk, sizeof chunk), 0);
    cr_assert_geq(p.out_len, CLI_PUMP_OUT_MAX);
    /* stdin is not even polled now: a wait reports no input however
     * readable stdin is. */
    cli_pump_ready r;
    cr_assert_eq(cli_pump_wait(&p, true, cli_pump_now_ms() + 10, &r), 0);
    cr_assert_not(r.in);
    cli_pump_free(&p);
    sk_sock_close(sk);
    close(sv[1]);
}
