/* test_recv_line.c — sk_sock_recv_line: lines split and glued across reads, "\r\n",
 * bytes after a line kept, the limits and the ends of stream. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"

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
