/* relay_proxy.c — HAProxy's PROXY protocol header, versions 1 (text) and 2
 * (binary), exactly as haproxy's doc/proxy-protocol.txt lays them out. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "relay.h"

/* v2's fixed 12-byte signature. */
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* An IPv4-mapped IPv6 address (a dual-stack listener's IPv4 peer) as the
 * IPv4 address it is, so the target sees TCP4 as it would without the relay. */
static void unmap(const struct sockaddr *sa, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof *out);
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            struct sockaddr_in *s4 = (struct sockaddr_in *)out;
            s4->sin_family = AF_INET;
            s4->sin_port = s6->sin6_port;
            memcpy(&s4->sin_addr, s6->sin6_addr.s6_addr + 12, 4);
            return;
        }
        memcpy(out, sa, sizeof *s6);
        return;
    }
    if (sa->sa_family == AF_INET)
        memcpy(out, sa, sizeof(struct sockaddr_in));
    else
        out->ss_family = sa->sa_family;
}

size_t relay_proxy_header(int version, const struct sockaddr *src_in, const struct sockaddr *dst_in,
                          uint8_t *out)
{
    struct sockaddr_storage src, dst;
    unmap(src_in, &src);
    unmap(dst_in, &dst);
    int fam = src.ss_family == dst.ss_family ? src.ss_family : AF_UNSPEC;
    if (fam != AF_INET && fam != AF_INET6)
        fam = AF_UNSPEC;
    const struct sockaddr_in *s4 = (const void *)&src, *d4 = (const void *)&dst;
    const struct sockaddr_in6 *s6 = (const void *)&src, *d6 = (const void *)&dst;
    if (version == 1) {
        if (fam == AF_UNSPEC) {
            memcpy(out, "PROXY UNKNOWN\r\n", 15);
            return 15;
        }
        char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
        const void *sp = fam == AF_INET ? (const void *)&s4->sin_addr : &s6->sin6_addr;
        const void *dp = fam == AF_INET ? (const void *)&d4->sin_addr : &d6->sin6_addr;
        inet_ntop(fam, sp, sa, sizeof sa);
        inet_ntop(fam, dp, da, sizeof da);
        unsigned sport = ntohs(fam == AF_INET ? s4->sin_port : s6->sin6_port);
        unsigned dport = ntohs(fam == AF_INET ? d4->sin_port : d6->sin6_port);
        int n = snprintf((char *)out, RELAY_PROXY_MAX, "PROXY %s %s %s %u %u\r\n",
                         fam == AF_INET ? "TCP4" : "TCP6", sa, da, sport, dport);
        return n > 0 && n < RELAY_PROXY_MAX ? (size_t)n : 0;
    }
    memcpy(out, v2_sig, sizeof v2_sig);
    out[12] = 0x21; /* version 2, command PROXY */
    size_t alen = 0;
    uint8_t *a = out + 16;
    if (fam == AF_INET) {
        out[13] = 0x11; /* TCP over IPv4 */
        memcpy(a, &s4->sin_addr, 4);
        memcpy(a + 4, &d4->sin_addr, 4);
        memcpy(a + 8, &s4->sin_port, 2);
        memcpy(a + 10, &d4->sin_port, 2);
        alen = 12;
    } else if (fam == AF_INET6) {
        out[13] = 0x21; /* TCP over IPv6 */
        memcpy(a, &s6->sin6_addr, 16);
        memcpy(a + 16, &d6->sin6_addr, 16);
        memcpy(a + 32, &s6->sin6_port, 2);
        memcpy(a + 34, &d6->sin6_port, 2);
        alen = 36;
    } else {
        out[13] = 0x00; /* UNSPEC: the target uses the connection's own ends */
    }
    out[14] = (uint8_t)(alen >> 8);
    out[15] = (uint8_t)alen;
    return 16 + alen;
}
