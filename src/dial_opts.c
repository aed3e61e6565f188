/* dial_opts.c — sk_dial_opts, a client's choice of its own end: the address
 * family of the target's addresses tried, and the source address bound
 * before connecting (nc's -4, -6 and -s). Both dials use it: sk__dial
 * (blocking, client.c) and sk_conn_connect (the loop's dialer, dial.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

/* An address with a port is at most "[" + 45 + "%" + 15 + "]:65535". */
#define SOURCE_TEXT_MAX 80

/* The text for a message: at most SOURCE_TEXT_MAX bytes, anything not
 * printable as '?', so that an error stays one line. */
static const char *shown(const char *text, char *buf)
{
    size_t i = 0;
    for (; text[i] != '\0' && i + 1 < SOURCE_TEXT_MAX; i++)
        buf[i] = text[i] >= 0x20 && text[i] < 0x7f ? text[i] : '?';
    buf[i] = '\0';
    return buf;
}

static int source_parse(const char *text, sk_dial_opts *o, char *err, size_t errlen);

int sk_dial_source_parse(const char *in, sk_dial_opts *o, char *err, size_t errlen)
{
    char text[SOURCE_TEXT_MAX];
    size_t len = in ? strlen(in) : 0;
    if (len == 0 || len >= sizeof text) {
        sk__set_err(err, errlen, "bad source address \"%s\" (ADDR or ADDR:PORT)",
                    in ? shown(in, text) : "");
        return -EINVAL;
    }
    /* Parsed from the text as given; only messages show the escaped copy. */
    shown(in, text);
    if (strcmp(text, in) != 0) {
        sk__set_err(err, errlen, "bad source address \"%s\" (ADDR or ADDR:PORT)", text);
        return -EINVAL;
    }
    return source_parse(in, o, err, errlen);
}

static int source_parse(const char *text, sk_dial_opts *o, char *err, size_t errlen)
{
    char host[SOURCE_TEXT_MAX];
    const char *port = NULL;
    size_t len = strlen(text);
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':')) {
            sk__set_err(err, errlen, "bad source address \"%s\" ([IPV6] or [IPV6]:PORT)", text);
            return -EINVAL;
        }
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        if (close[1] == ':')
            port = close + 2;
    } else {
        const char *colon = strchr(text, ':');
        /* Two colons or more: a bare IPv6 address, which cannot carry a
         * port without brackets. */
        if (colon != NULL && strchr(colon + 1, ':') == NULL) {
            memcpy(host, text, (size_t)(colon - text));
            host[colon - text] = '\0';
            port = colon + 1;
        } else {
            memcpy(host, text, len + 1);
        }
    }
    unsigned long pn = 0;
    if (port != NULL) {
        char *end;
        errno = 0;
        pn = strtoul(port, &end, 10);
        if (port[0] < '0' || port[0] > '9' || *end != '\0' || errno || pn > 65535) {
            sk__set_err(err, errlen, "bad port in source address \"%s\" (0-65535)", text);
            return -EINVAL;
        }
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    socklen_t sl;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (text[0] != '[' && inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)pn);
        sl = sizeof *sin;
    } else if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)pn);
        sl = sizeof *sin6;
    } else {
        sk__set_err(err, errlen,
                    "bad source address \"%s\": not a numeric IPv4 or IPv6 address (ADDR or "
                    "ADDR:PORT)",
                    text);
        return -EINVAL;
    }
    if (o->family != AF_UNSPEC && o->family != ss.ss_family) {
        sk__set_err(err, errlen, "source address \"%s\" is not an %s address", text,
                    o->family == AF_INET ? "IPv4" : "IPv6");
        return -EINVAL;
    }
    o->source = ss;
    o->source_len = sl;
    return 0;
}

/* The family the options allow: the source's if one is set, else family. */
static int wanted_family(const sk_dial_opts *o)
{
    if (o == NULL)
        return AF_UNSPEC;
    return o->source.ss_family != AF_UNSPEC ? o->source.ss_family : o->family;
}

int sk__dial_opts_check(const sk_dial_opts *o, const sk_addr *addr, char *err, size_t errlen)
{
    if (o == NULL || (o->family == AF_UNSPEC && o->source.ss_family == AF_UNSPEC))
        return 0;
    if (o->family != AF_UNSPEC && o->family != AF_INET && o->family != AF_INET6) {
        sk__set_err(err, errlen, "dial options: family must be AF_INET, AF_INET6 or AF_UNSPEC");
        return -EINVAL;
    }
    if (o->source.ss_family != AF_UNSPEC && o->source.ss_family != AF_INET &&
        o->source.ss_family != AF_INET6) {
        sk__set_err(err, errlen, "dial options: the source must be an IPv4 or IPv6 address");
        return -EINVAL;
    }
    if (o->family != AF_UNSPEC && o->source.ss_family != AF_UNSPEC &&
        o->family != o->source.ss_family) {
        sk__set_err(err, errlen, "dial options: the source address is not of the family asked");
        return -EINVAL;
    }
    if (addr->kind == SK_ADDR_UNIX) {
        sk__set_err(err, errlen,
                    "an address family or source address applies to IP addresses only, not unix:");
        return -EINVAL;
    }
    return 0;
}

int sk__dial_opts_filter(const sk_dial_opts *o, const sk_addr *addr, struct sockaddr_storage *ss,
                         socklen_t *sl, int n, char *err, size_t errlen)
{
    int family = wanted_family(o);
    if (family == AF_UNSPEC || n <= 0)
        return n;
    int kept = 0;
    for (int i = 0; i < n; i++) {
        if (ss[i].ss_family != family)
            continue;
        ss[kept] = ss[i];
        sl[kept] = sl[i];
        kept++;
    }
    if (kept == 0) {
        sk__set_err(err, errlen, "%s has no %s address", addr->host,
                    family == AF_INET ? "IPv4" : "IPv6");
        return -EADDRNOTAVAIL;
    }
    return kept;
}

int sk__dial_opts_bind(const sk_dial_opts *o, int fd)
{
    if (o == NULL || o->source.ss_family == AF_UNSPEC)
        return 0;
    int one = 1;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&o->source;
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)&o->source;
    uint16_t port = o->source.ss_family == AF_INET6 ? s6->sin6_port : s4->sin_port;
    if (port == 0) {
        /* The port is chosen at connect time, per destination, so that many
         * connections from one source address do not run out of ports. */
        (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    } else {
        /* A fixed source port is usually reused right after the previous
         * connection, whose TIME_WAIT would otherwise refuse the bind. */
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    }
    if (bind(fd, (const struct sockaddr *)&o->source, o->source_len) < 0)
        return -errno;
    return 0;
}
