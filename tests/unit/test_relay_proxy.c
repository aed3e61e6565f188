/* test_relay_proxy.c — the relay's PROXY protocol headers
 * (services/relay/relay_proxy.c) against the bytes haproxy's
 * doc/proxy-protocol.txt specifies, for IPv4, IPv6, a mapped IPv4 peer and
 * a Unix peer. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "unit.h"

#include "../../services/relay/relay.h"

TestSuite(relay_proxy, .init = unit_alarm);

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static struct sockaddr_in v4(const char *ip, uint16_t port)
{
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, ip, &s.sin_addr);
    return s;
}

static struct sockaddr_in6 v6(const char *ip, uint16_t port)
{
    struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    inet_pton(AF_INET6, ip, &s.sin6_addr);
    return s;
}

Test(relay_proxy, v1_tcp4)
{
    struct sockaddr_in a = v4("192.168.0.1", 56324), b = v4("10.0.0.2", 443);
    uint8_t out[RELAY_PROXY_MAX];
    size_t n = relay_proxy_header(1, (struct sockaddr *)&a, (struct sockaddr *)&b, out);
    const char *want = "PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\n";
    cr_assert_eq(n, strlen(want));
    cr_assert(memcmp(out, want, n) == 0);
}

Test(relay_proxy, v1_tcp6_longest_fits)
{
    const char *ip = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe";
    struct sockaddr_in6 a = v6(ip, 65535), b = v6(ip, 65535);
    uint8_t out[RELAY_PROXY_MAX];
    size_t n = relay_proxy_header(1, (struct sockaddr *)&a, (struct sockaddr *)&b, out);
    char want[200];
    snprintf(want, sizeof want, "PROXY TCP6 %s %s 65535 65535\r\n", ip, ip);
    cr_assert_eq(n, strlen(want)); /* 104 bytes: the spec's 107 maximum holds */
    cr_assert(memcmp(out, want, n) == 0);
}

Test(relay_proxy, v2_tcp4)
{
    struct sockaddr_in a = v4("127.0.0.2", 0x1234), b = v4("127.0.0.1", 0xABCD);
    uint8_t out[RELAY_PROXY_MAX];
    size_t n = relay_proxy_header(2, (struct sockaddr *)&a, (struct sockaddr *)&b, out);
    cr_assert_eq(n, 28);
    cr_assert(memcmp(out, sig, 12) == 0);
    const uint8_t rest[16] = {0x21, 0x11, 0x00, 0x0C, 127,  0,    0,    2,
                              127,  0,    0,    1,    0x12, 0x34, 0xAB, 0xCD};
    cr_assert(memcmp(out + 12, rest, 16) == 0);
}

Test(relay_proxy, v2_tcp6)
{
    struct sockaddr_in6 a = v6("2001:db8::1", 1), b = v6("2001:db8::2", 2);
    uint8_t out[RELAY_PROXY_MAX];
    size_t n = relay_proxy_header(2, (struct sockaddr *)&a, (struct sockaddr *)&b, out);
    cr_assert_eq(n, 52);
    cr_assert_eq(out[12], 0x21);
    cr_assert_eq(out[13], 0x21);
    cr_assert_eq(out[14], 0);
    cr_assert_eq(out[15], 36);
    cr_assert(memcmp(out + 16, &a.sin6_addr, 16) == 0);
    cr_assert(memcmp(out + 32, &b.sin6_addr, 16) == 0);
    cr_assert(out[48] == 0 && out[49] == 1 && out[50] == 0 && out[51] == 2);
}

Test(relay_proxy, mapped_ipv4_is_tcp4)
{
    struct sockaddr_in6 a = v6("::ffff:127.0.0.1", 5000), b = v6("::ffff:127.0.0.1", 80);
    uint8_t out[RELAY_PROXY_MAX];
    size_t n = relay_proxy_header(1, (struct sockaddr *)&a, (struct sockaddr *)&b, out);
    const char *want = "PROXY TCP4 127.0.0.1 127.0.0.1 5000 80\r\n";
    cr_assert_eq(n, strlen(want));
    cr_assert(memcmp(out, want, n) == 0);
    n = relay_proxy_header(2, (struct sockaddr *)&a, (struct sockaddr *)&b, out);
    cr_assert_eq(n, 28);
    cr_assert_eq(out[13], 0x11);
}

Test(relay_proxy, unix_peer_is_unknown)
{
    struct sockaddr_un u = {.sun_family = AF_UNIX};
    uint8_t out[RELAY_PROXY_MAX];
    size_t n = relay_proxy_header(1, (struct sockaddr *)&u, (struct sockaddr *)&u, out);
    cr_assert_eq(n, 15);
    cr_assert(memcmp(out, "PROXY UNKNOWN\r\n", 15) == 0);
    n = relay_proxy_header(2, (struct sockaddr *)&u, (struct sockaddr *)&u, out);
    cr_assert_eq(n, 16);
    cr_assert(memcmp(out, sig, 12) == 0);
    cr_assert(out[12] == 0x21 && out[13] == 0x00 && out[14] == 0 && out[15] == 0);
}
