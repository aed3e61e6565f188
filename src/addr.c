/* addr.c — the address forms: parsing text into an sk_addr, formatting
 * it back, resolving it into socket addresses, and printing socket addresses.
 * It opens no sockets; dialing lives in client.c, listening in server.c. */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

/* The longest DNS name (RFC 1035: 253 characters without the final dot, 254
 * with it); longer text cannot name a host, so it is refused while parsing. */
#define HOST_NAME_LIMIT 254

/* A sun_path must keep room for its terminating NUL (portable programs and
 * most tools expect one), and an abstract name uses byte 0 as its marker:
 * either way 107 bytes of name fit. */
#define UNIX_NAME_LIMIT (SK_ADDR_PATH_MAX - 1)

/* How much of the user's text an error message quotes; the rest is "...". */
#define QUOTE_MAX 120

/* Copies n bytes of src into dst for quoting in an error: control bytes
 * become '?' so that a message always stays one line, and long text is cut
 * with "...". dst must hold QUOTE_MAX + 4 bytes. */
static void quote(char dst[QUOTE_MAX + 4], const char *src, size_t n)
{
    size_t i = 0;
    for (; i < n && i < QUOTE_MAX; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[i] = (ch < 0x20 || ch == 0x7f) ? '?' : (char)ch;
    }
    if (i < n) {
        memcpy(dst + i, "...", 3);
        i += 3;
    }
    dst[i] = '\0';
}

/* Case-insensitive "does text start with prefix". */
static int has_prefix(const char *text, const char *prefix)
{
    return strncasecmp(text, prefix, strlen(prefix)) == 0;
}

/* Parses a decimal port: digits only (no sign, no spaces), at most 65535. */
static int parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0)
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
        if (v > 65535)
            return -1; /* also stops overflow on absurdly long digit runs */
    }
    *out = (uint16_t)v;
    return 0;
}

/* Checks a bracketed IPv6 literal, optionally with a zone ("fe80::1%eth0"). */
static int valid_ipv6(const char *host)
{
    char tmp[SK_ADDR_HOST_MAX];
    struct in6_addr a6;
    const char *pct = strchr(host, '%');
    size_t alen = pct ? (size_t)(pct - host) : strlen(host);
    if (alen == 0 || alen >= sizeof tmp)
        return 0;
    memcpy(tmp, host, alen);
    tmp[alen] = '\0';
    if (inet_pton(AF_INET6, tmp, &a6) != 1)
        return 0;
    if (pct) {
        const char *z = pct + 1;
        if (*z == '\0')
            return 0;
        for (; *z; z++)
            if (!(((*z | 0x20) >= 'a' && (*z | 0x20) <= 'z') || (*z >= '0' && *z <= '9') ||
                  *z == '-' || *z == '_' || *z == '.'))
                return 0;
    }
    return 1;
}

/* Splits HOST:PORT (HOST may be "[IPv6]", a name, an IPv4 literal, "*" or
 * empty) into a. whole is the full original text, for messages. */
static int parse_hostport(const char *hp, const char *whole, sk_addr *a, char *err, size_t errlen)
{
    char qw[QUOTE_MAX + 4], qp[QUOTE_MAX + 4];
    const char *host, *colon;
    size_t hlen;

    quote(qw, whole, strlen(whole));
    if (hp[0] == '[') {
        const char *close = strchr(hp, ']');
        if (close == NULL) {
            sk__set_err(err, errlen, "missing \"]\" after IPv6 address in \"%s\"", qw);
            return -EINVAL;
        }
        host = hp + 1;
        hlen = (size_t)(close - host);
        if (close[1] != ':') {
            if (close[1] == '\0')
                sk__set_err(err, errlen, "missing port in \"%s\"", qw);
            else
                sk__set_err(err, errlen, "expected \":PORT\" after \"]\" in \"%s\"", qw);
            return -EINVAL;
        }
        colon = close + 1;
        if (hlen == 0) {
            sk__set_err(err, errlen, "empty IPv6 address \"[]\" in \"%s\"", qw);
            return -EINVAL;
        }
        if (hlen >= SK_ADDR_HOST_MAX) {
            sk__set_err(err, errlen, "IPv6 address too long in \"%s\"", qw);
            return -EINVAL;
        }
        memcpy(a->host, host, hlen);
        a->host[hlen] = '\0';
        if (!valid_ipv6(a->host)) {
            quote(qp, host, hlen);
            sk__set_err(err, errlen, "bad IPv6 address \"%s\" in \"%s\"", qp, qw);
            return -EINVAL;
        }
    } else {
        colon = strrchr(hp, ':');
        if (colon == NULL) {
            sk__set_err(err, errlen, "missing port in \"%s\"", qw);
            return -EINVAL;
        }
        host = hp;
        hlen = (size_t)(colon - hp);
        if (memchr(host, ':', hlen) != NULL) {
            sk__set_err(err, errlen,
                        "IPv6 address without brackets in \"%s\" (write it as \"[ADDR]:PORT\", "
                        "e.g. \"[::1]:9000\")",
                        qw);
            return -EINVAL;
        }
        if (hlen > HOST_NAME_LIMIT) {
            sk__set_err(err, errlen, "host name too long in \"%s\" (max %d bytes)", qw,
                        HOST_NAME_LIMIT);
            return -EINVAL;
        }
        int numeric = 1; /* only digits and dots: must be a dotted-quad IPv4 */
        for (size_t i = 0; i < hlen; i++) {
            char ch = host[i];
            int alpha = (ch | 0x20) >= 'a' && (ch | 0x20) <= 'z';
            int digit = ch >= '0' && ch <= '9';
            if (!(alpha || digit || ch == '-' || ch == '.' || ch == '_' ||
                  (ch == '*' && hlen == 1))) {
                quote(qp, host, hlen);
                sk__set_err(err, errlen,
                            "invalid character in host \"%s\" in \"%s\" (names use letters, "
                            "digits, '-', '.' and '_')",
                            qp, qw);
                return -EINVAL;
            }
            if (!digit && ch != '.')
                numeric = 0;
        }
        memcpy(a->host, host, hlen);
        a->host[hlen] = '\0';
        /* "999.1.1.1" or "10.1" is no name the resolver could find either;
         * saying so here beats a DNS timeout later. */
        struct in_addr a4;
        if (hlen > 0 && numeric && inet_pton(AF_INET, a->host, &a4) != 1) {
            quote(qp, host, hlen);
            sk__set_err(err, errlen, "bad IPv4 address \"%s\" in \"%s\"", qp, qw);
            return -EINVAL;
        }
    }

    const char *port = colon + 1;
    size_t plen = strlen(port);
    if (plen == 0) {
        sk__set_err(err, errlen, "missing port in \"%s\"", qw);
        return -EINVAL;
    }
    if (parse_port(port, plen, &a->port) != 0) {
        quote(qp, port, plen);
        sk__set_err(err, errlen, "bad port \"%s\" in \"%s\" (0-65535)", qp, qw);
        return -EINVAL;
    }
    return 0;
}

/* Fills a Unix address from the text after "unix:" or "unixgram:". */
static int parse_unix(const char *p, const char *whole, sk_addr *a, char *err, size_t errlen)
{
    char qw[QUOTE_MAX + 4];
    quote(qw, whole, strlen(whole));
    if (p[0] == '@') {
        p++;
        a->abstract = 1;
        if (*p == '\0') {
            sk__set_err(err, errlen, "empty abstract name in \"%s\"", qw);
            return -EINVAL;
        }
    } else if (*p == '\0') {
        sk__set_err(err, errlen, "empty unix path in \"%s\"", qw);
        return -EINVAL;
    }
    size_t n = strlen(p);
    if (n > UNIX_NAME_LIMIT) {
        sk__set_err(err, errlen, "unix %s too long in \"%s\" (max %d bytes)",
                    a->abstract ? "abstract name" : "path", qw, UNIX_NAME_LIMIT);
        return -EINVAL;
    }
    memcpy(a->path, p, n + 1);
    return 0;
}

int sk_addr_parse(const char *text, sk_addr *out, char *err, size_t errlen)
{
    static const struct {
        const char *prefix;
        enum sk_addr_kind kind;
    } schemes[] = {
        {"tcp://", SK_ADDR_TCP},
        {"udp://", SK_ADDR_UDP},
        {"tls://", SK_ADDR_TLS},
    };
    char qw[QUOTE_MAX + 4], qs[QUOTE_MAX + 4];
    sk_addr a;
    int rc;

    if (text == NULL || out == NULL) {
        sk__set_err(err, errlen, "no address given");
        return -EINVAL;
    }
    /* Parse into a local copy: on failure *out must stay as it was. */
    memset(&a, 0, sizeof a);
    quote(qw, text, strlen(text));
    if (*text == '\0') {
        sk__set_err(err, errlen, "empty address");
        return -EINVAL;
    }

    /* "unixgram:" is tested first only for clarity: "unix:" cannot match it,
     * since its fifth byte is 'g', not ':'. */
    if (has_prefix(text, "unixgram:")) {
        a.kind = SK_ADDR_UNIXGRAM;
        rc = parse_unix(text + 9, text, &a, err, errlen);
    } else if (has_prefix(text, "unix:")) {
        a.kind = SK_ADDR_UNIX;
        rc = parse_unix(text + 5, text, &a, err, errlen);
    } else {
        const char *rest = text;
        const char *sep = strstr(text, "://");
        a.kind = SK_ADDR_TCP;
        if (sep != NULL) {
            size_t slen = (size_t)(sep - text) + 3;
            size_t i;
            for (i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
                if (strlen(schemes[i].prefix) == slen && has_prefix(text, schemes[i].prefix))
                    break;
            if (i == sizeof schemes / sizeof schemes[0]) {
                quote(qs, text, slen);
                sk__set_err(err, errlen,
                            "unknown scheme \"%s\" in \"%s\" (use tcp://, udp://, tls://, unix: "
                            "or unixgram:)",
                            qs, qw);
                return -EINVAL;
            }
            a.kind = schemes[i].kind;
            rest = text + slen;
        } else {
            /* "udp:host:9" is a likely slip for "udp://host:9"; without this it
             * would be reported as an unbracketed IPv6 address. */
            for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
                if (strncasecmp(text, schemes[i].prefix, 4) == 0 && strchr(text + 4, ':')) {
                    quote(qs, text, 4);
                    sk__set_err(err, errlen, "bad scheme \"%s\" in \"%s\" (write \"%.3s://\")", qs,
                                qw, schemes[i].prefix);
                    return -EINVAL;
                }
            }
        }
        rc = parse_hostport(rest, text, &a, err, errlen);
    }
    if (rc != 0)
        return rc;
    *out = a;
    return 0;
}

int sk_addr_format(const sk_addr *addr, char *buf, size_t buflen)
{
    int n;
    if (buf == NULL)
        buflen = 0; /* snprintf(NULL, 0, ...) just measures */
    if (addr == NULL) {
        if (buflen > 0)
            buf[0] = '\0';
        return 0;
    }
    switch (addr->kind) {
    case SK_ADDR_UNIX:
    case SK_ADDR_UNIXGRAM:
        n = snprintf(buf, buflen, "%s:%s%.*s", addr->kind == SK_ADDR_UNIX ? "unix" : "unixgram",
                     addr->abstract ? "@" : "", (int)strnlen(addr->path, SK_ADDR_PATH_MAX),
                     addr->path);
        break;
    case SK_ADDR_TCP:
    case SK_ADDR_UDP:
    case SK_ADDR_TLS: {
        const char *scheme = addr->kind == SK_ADDR_UDP   ? "udp://"
                             : addr->kind == SK_ADDR_TLS ? "tls://"
                                                         : "";
        /* A host named unix or unixgram would read back as a Unix path
         * ("unix:9"): spell the scheme out (found by fuzz_addr). */
        if (addr->kind == SK_ADDR_TCP &&
            (strcasecmp(addr->host, "unix") == 0 || strcasecmp(addr->host, "unixgram") == 0))
            scheme = "tcp://";
        size_t hlen = strnlen(addr->host, sizeof addr->host);
        int v6 = memchr(addr->host, ':', hlen) != NULL;
        n = snprintf(buf, buflen, "%s%s%.*s%s:%u", scheme, v6 ? "[" : "", (int)hlen, addr->host,
                     v6 ? "]" : "", (unsigned)addr->port);
        break;
    }
    default: n = snprintf(buf, buflen, "(bad address kind %d)", (int)addr->kind); break;
    }
    /* Like snprintf, n is the length of the whole text: n >= buflen tells
     * the caller the output was cut. */
    if (n < 0) {
        if (buflen > 0)
            buf[0] = '\0';
        return 0;
    }
    return n;
}

/* Maps a getaddrinfo failure to a negative errno-style code (see
 * sk_addr_resolve's comment for the table). */
static int gai_code(int gai, int saved_errno)
{
    switch (gai) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return -ENOENT;
    case EAI_AGAIN: return -EAGAIN;
    case EAI_MEMORY: return -ENOMEM;
    case EAI_FAIL: return -EIO;
    case EAI_SYSTEM: return saved_errno > 0 ? -saved_errno : -EIO;
    default: return -EINVAL;
    }
}

/* Builds the sockaddr_un of a Unix address. */
static int resolve_unix(const sk_addr *addr, struct sockaddr_storage *out, socklen_t *outlen,
                        char *err, size_t errlen)
{
    struct sockaddr_un sun;
    size_t n = strnlen(addr->path, SK_ADDR_PATH_MAX);
    if (n == 0) {
        sk__set_err(err, errlen, "%s", addr->abstract ? "empty abstract name" : "empty unix path");
        return -EINVAL;
    }
    if (n > UNIX_NAME_LIMIT) {
        sk__set_err(err, errlen, "unix %s too long (max %d bytes)",
                    addr->abstract ? "abstract name" : "path", UNIX_NAME_LIMIT);
        return -EINVAL;
    }
    memset(&sun, 0, sizeof sun);
    sun.sun_family = AF_UNIX;
    if (addr->abstract) {
        /* Abstract names are exactly the bytes given: the length counts the
         * leading NUL and the name, and no terminator (a trailing NUL would
         * be part of the name). */
        memcpy(sun.sun_path + 1, addr->path, n);
        *outlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    } else {
        memcpy(sun.sun_path, addr->path, n);
        *outlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    memset(out, 0, sizeof *out);
    memcpy(out, &sun, sizeof sun);
    return 1;
}

/* Error codes: -EINVAL for a malformed or unsupported sk_addr (or bad
 * arguments); for a name that cannot be resolved, -ENOENT (no such name, or
 * it has no address: EAI_NONAME/EAI_NODATA/EAI_ADDRFAMILY), -EAGAIN (the
 * resolver failed temporarily), -EIO (it failed for good), -ENOMEM, or the
 * errno of an EAI_SYSTEM failure. */
int sk_addr_resolve(const sk_addr *addr, unsigned flags, struct sockaddr_storage *out,
                    socklen_t *outlen, int max, char *err, size_t errlen)
{
    struct addrinfo hints, *res = NULL;
    char port[8];
    const char *node;
    int socktype, gai, count = 0;

    if (addr == NULL || out == NULL || outlen == NULL || max < 1 || (flags & ~SK_RESOLVE_PASSIVE)) {
        sk__set_err(err, errlen, "sk_addr_resolve: bad arguments");
        return -EINVAL;
    }
    switch (addr->kind) {
    case SK_ADDR_UNIX:
    case SK_ADDR_UNIXGRAM: return resolve_unix(addr, out, outlen, err, errlen);
    case SK_ADDR_TCP:
    case SK_ADDR_TLS: socktype = SOCK_STREAM; break;
    case SK_ADDR_UDP: socktype = SOCK_DGRAM; break;
    default: sk__set_err(err, errlen, "unknown address kind %d", (int)addr->kind); return -EINVAL;
    }
    if (strnlen(addr->host, SK_ADDR_HOST_MAX) == SK_ADDR_HOST_MAX) {
        sk__set_err(err, errlen, "host name too long (max %d bytes)", SK_ADDR_HOST_MAX - 1);
        return -EINVAL;
    }

    /* A NULL node makes getaddrinfo return the wildcard addresses with
     * AI_PASSIVE and the loopback addresses without it. */
    node = (addr->host[0] == '\0' || strcmp(addr->host, "*") == 0) ? NULL : addr->host;
    snprintf(port, sizeof port, "%u", (unsigned)addr->port);

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = socktype;
    /* No AI_ADDRCONFIG: it drops loopback results on a host whose only
     * interface is lo (sandboxes, containers), so "localhost" would fail. */
    hints.ai_flags = AI_NUMERICSERV | ((flags & SK_RESOLVE_PASSIVE) ? AI_PASSIVE : 0);

    /* Literals first with AI_NUMERICHOST so they never reach DNS; only a
     * real name falls through to a lookup. */
    hints.ai_flags |= AI_NUMERICHOST;
    errno = 0;
    gai = getaddrinfo(node, port, &hints, &res);
    if (gai == EAI_NONAME && node != NULL && strchr(node, ':') == NULL) {
        hints.ai_flags &= ~AI_NUMERICHOST;
        errno = 0;
        gai = getaddrinfo(node, port, &hints, &res);
    }
    if (gai != 0) {
        int saved = errno;
        char qh[QUOTE_MAX + 4];
        quote(qh, addr->host, strlen(addr->host));
        if (gai == EAI_SYSTEM) {
            char eb[128];
            sk__set_err(err, errlen, "cannot resolve \"%s\": %s", qh,
                        strerror_r(saved, eb, sizeof eb));
        } else {
            sk__set_err(err, errlen, "cannot resolve \"%s\": %s", qh, gai_strerror(gai));
        }
        return gai_code(gai, saved);
    }
    /* For an empty host glibc lists the wildcard as 0.0.0.0 then ::, but
     * loopback as ::1 then 127.0.0.1. A client that uses only the first
     * entry (a connected UDP socket) would then miss a server that bound
     * only the first: IPv4 goes first in both cases. Pass 0 takes IPv4 when
     * the host is empty; pass 1 takes everything else, in resolver order. */
    for (int pass = node == NULL ? 0 : 1; pass < 2; pass++) {
        for (struct addrinfo *ai = res; ai != NULL && count < max; ai = ai->ai_next) {
            if (ai->ai_addrlen > sizeof out[0])
                continue;
            if ((ai->ai_family == AF_INET && node == NULL) != (pass == 0))
                continue;
            memset(&out[count], 0, sizeof out[0]);
            memcpy(&out[count], ai->ai_addr, ai->ai_addrlen);
            outlen[count] = ai->ai_addrlen;
            count++;
        }
    }
    freeaddrinfo(res);
    if (count == 0) {
        char qh[QUOTE_MAX + 4];
        quote(qh, addr->host, strlen(addr->host));
        sk__set_err(err, errlen, "cannot resolve \"%s\": no usable address", qh);
        return -ENOENT;
    }
    return count;
}

/* Moves entry from to position to, shifting those between up by one, so
 * that the others keep their order. */
static void move_entry(struct sockaddr_storage *ss, socklen_t *sl, int from, int to)
{
    struct sockaddr_storage a = ss[from];
    socklen_t l = sl[from];
    memmove(&ss[to + 1], &ss[to], (size_t)(from - to) * sizeof ss[0]);
    memmove(&sl[to + 1], &sl[to], (size_t)(from - to) * sizeof sl[0]);
    ss[to] = a;
    sl[to] = l;
}

int sk__resolve_for_connect(const sk_addr *addr, struct sockaddr_storage *out, socklen_t *outlen,
                            int max, char *err, size_t errlen)
{
    int n = sk_addr_resolve(addr, 0, out, outlen, max, err, errlen);
    /* RFC 8305 section 4: alternate the families so that a family that is
     * broken on this host (no route, a firewall dropping it) costs one
     * attempt delay, not one per address of that family. */
    for (int i = 0; i < n; i++) {
        bool want6 = i % 2 == 0;
        for (int j = i; j < n; j++) {
            if ((out[j].ss_family == AF_INET6) == want6) {
                if (j != i)
                    move_entry(out, outlen, j, i);
                break;
            }
        }
    }
    return n;
}

char *sk_sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen)
{
    char ip[INET6_ADDRSTRLEN];

    if (buf == NULL || buflen == 0)
        return buf;
    if (sa == NULL || len < (socklen_t)sizeof(sa_family_t)) {
        snprintf(buf, buflen, "(unknown)");
        return buf;
    }
    switch (sa->sa_family) {
    case AF_INET: {
        struct sockaddr_in sin;
        if (len < (socklen_t)sizeof sin)
            break;
        memcpy(&sin, sa, sizeof sin); /* sa may be unaligned or a smaller type */
        inet_ntop(AF_INET, &sin.sin_addr, ip, sizeof ip);
        snprintf(buf, buflen, "%s:%u", ip, (unsigned)ntohs(sin.sin_port));
        return buf;
    }
    case AF_INET6: {
        struct sockaddr_in6 sin6;
        char zone[IF_NAMESIZE + 1] = "";
        if (len < (socklen_t)sizeof sin6)
            break;
        memcpy(&sin6, sa, sizeof sin6);
        /* An IPv4 peer of a dual-stack listener arrives as ::ffff:a.b.c.d;
         * logs and users know it as a.b.c.d. */
        if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
            inet_ntop(AF_INET, &sin6.sin6_addr.s6_addr[12], ip, sizeof ip);
            snprintf(buf, buflen, "%s:%u", ip, (unsigned)ntohs(sin6.sin6_port));
            return buf;
        }
        inet_ntop(AF_INET6, &sin6.sin6_addr, ip, sizeof ip);
        if (sin6.sin6_scope_id != 0) {
            char name[IF_NAMESIZE];
            if (if_indextoname(sin6.sin6_scope_id, name) != NULL)
                snprintf(zone, sizeof zone, "%%%s", name);
            else
                snprintf(zone, sizeof zone, "%%%u", (unsigned)sin6.sin6_scope_id);
        }
        snprintf(buf, buflen, "[%s%s]:%u", ip, zone, (unsigned)ntohs(sin6.sin6_port));
        return buf;
    }
    case AF_UNIX: {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)(const void *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t n = (size_t)len > off ? (size_t)len - off : 0;
        if (n > sizeof sun->sun_path)
            n = sizeof sun->sun_path;
        if (n == 0 || (sun->sun_path[0] == '\0' && n == 1)) {
            snprintf(buf, buflen, "unix:(unnamed)");
            return buf;
        }
        if (sun->sun_path[0] != '\0') {
            /* A path may or may not be NUL-terminated inside len. */
            snprintf(buf, buflen, "unix:%.*s", (int)strnlen(sun->sun_path, n), sun->sun_path);
            return buf;
        }
        /* Abstract: every byte after the marker is the name, NULs included
         * (autobound names are 5 hex digits); escape what is not printable. */
        size_t w = (size_t)snprintf(buf, buflen, "unix:@");
        for (size_t i = 1; i < n && w + 1 < buflen; i++) {
            unsigned char ch = (unsigned char)sun->sun_path[i];
            if (ch >= 0x20 && ch < 0x7f && ch != '\\') {
                buf[w++] = (char)ch;
            } else {
                if (w + 4 >= buflen)
                    break;
                snprintf(buf + w, buflen - w, "\\x%02x", ch);
                w += 4;
            }
        }
        buf[w < buflen ? w : buflen - 1] = '\0';
        return buf;
    }
    default: snprintf(buf, buflen, "(address family %d)", (int)sa->sa_family); return buf;
    }
    snprintf(buf, buflen, "(short address, family %d)", (int)sa->sa_family);
    return buf;
}
