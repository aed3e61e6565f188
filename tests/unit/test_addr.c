/* test_addr.c — sk_addr_parse (good and bad forms, error text), sk_addr_format round trips,
 * sk_addr_resolve and sk_sockaddr_format. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(addr, .init = unit_alarm);

typedef struct good_case {
    const char *text;
    enum sk_addr_kind kind;
    const char *host; /* network kinds; NULL: not checked */
    int port;
    const char *path; /* unix kinds */
    int abstract;
} good_case;

static const good_case good[] = {
    {"127.0.0.1:80", SK_ADDR_TCP, "127.0.0.1", 80, NULL, 0},
    {"tcp://127.0.0.1:80", SK_ADDR_TCP, "127.0.0.1", 80, NULL, 0},
    {"tcp://127.0.0.1:0", SK_ADDR_TCP, "127.0.0.1", 0, NULL, 0},
    {"127.0.0.1:65535", SK_ADDR_TCP, "127.0.0.1", 65535, NULL, 0},
    {"0.0.0.0:9999", SK_ADDR_TCP, "0.0.0.0", 9999, NULL, 0},
    {"localhost:9000", SK_ADDR_TCP, "localhost", 9000, NULL, 0},
    {"example.com:443", SK_ADDR_TCP, "example.com", 443, NULL, 0},
    {"my-host.example:1", SK_ADDR_TCP, "my-host.example", 1, NULL, 0},
    {"[::1]:8080", SK_ADDR_TCP, "::1", 8080, NULL, 0},
    {"tcp://[::1]:0", SK_ADDR_TCP, "::1", 0, NULL, 0},
    {"[fe80::1:2]:65535", SK_ADDR_TCP, "fe80::1:2", 65535, NULL, 0},
    {"[::]:7", SK_ADDR_TCP, "::", 7, NULL, 0},
    {"*:80", SK_ADDR_TCP, NULL, 80, NULL, 0},
    {"udp://127.0.0.1:53", SK_ADDR_UDP, "127.0.0.1", 53, NULL, 0},
    {"udp://[::1]:5353", SK_ADDR_UDP, "::1", 5353, NULL, 0},
    {"udp://localhost:0", SK_ADDR_UDP, "localhost", 0, NULL, 0},
    {"tls://example.org:443", SK_ADDR_TLS, "example.org", 443, NULL, 0},
    {"tls://[::1]:8443", SK_ADDR_TLS, "::1", 8443, NULL, 0},
    {"unix:/tmp/sockit.sock", SK_ADDR_UNIX, NULL, 0, "/tmp/sockit.sock", 0},
    {"unix:relative/dir/s", SK_ADDR_UNIX, NULL, 0, "relative/dir/s", 0},
    {"unix:@sockit-abstract", SK_ADDR_UNIX, NULL, 0, "sockit-abstract", 1},
    {"unix:/tmp/with:colon", SK_ADDR_UNIX, NULL, 0, "/tmp/with:colon", 0},
    {"unixgram:/tmp/g.sock", SK_ADDR_UNIXGRAM, NULL, 0, "/tmp/g.sock", 0},
    {"unixgram:@g", SK_ADDR_UNIXGRAM, NULL, 0, "g", 1},
};

typedef struct bad_case {
    const char *text;
    /* The error text must contain at least one of these (case-insensitive). */
    const char *needles[4];
} bad_case;

static const bad_case bad[] = {
    {"127.0.0.1:65536", {"65536"}},
    {"127.0.0.1:-1", {"-1"}},
    {"127.0.0.1:abc", {"abc"}},
    {"127.0.0.1:80x", {"80x"}},
    {"127.0.0.1:99999999999999999999", {"99999999999999999999"}},
    {"tcp://localhost:70000", {"70000"}},
    {"udp://127.0.0.1:65536", {"65536"}},
    {"127.0.0.1", {"port"}},
    {"127.0.0.1:", {"port"}},
    {"tcp://127.0.0.1", {"port"}},
    {"udp://localhost", {"port"}},
    {"[::1]", {"port"}},
    {"", {"empty", "address"}},
    {"foo://127.0.0.1:80", {"foo"}},
    {"http://127.0.0.1:80", {"http"}},
    {"::1:80", {"bracket", "[", "ipv6", "::1"}},
    {"fe80::1:443", {"bracket", "[", "ipv6", "fe80"}},
    {"[::1:80", {"bracket", "]", "[::1"}},
    {"unix:", {"path", "empty"}},
    {"unixgram:", {"path", "empty"}},
};

/* err must be a non-empty sentence containing one of the needles. */
static void check_err(const char *text, const char *err, const char *const *needles)
{
    cr_assert(err[0] != '\0', "'%s': empty error text", text);
    for (int i = 0; i < 4 && needles[i] != NULL; i++) {
        if (strcasestr(err, needles[i]) != NULL)
            return;
    }
    cr_assert_fail("'%s': error '%s' does not name the bad part (%s)", text, err, needles[0]);
}

Test(addr, parse_good_forms)
{
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        const good_case *g = &good[i];
        sk_addr a;
        memset(&a, 0x5A, sizeof a);
        char err[256] = "";
        int r = sk_addr_parse(g->text, &a, err, sizeof err);
        cr_assert_eq(r, 0, "'%s' rejected: %d %s", g->text, r, err);
        cr_assert_eq(a.kind, g->kind, "'%s': kind %d, want %d", g->text, a.kind, g->kind);
        if (g->kind == SK_ADDR_UNIX || g->kind == SK_ADDR_UNIXGRAM) {
            cr_assert_str_eq(a.path, g->path, "'%s'", g->text);
            cr_assert_eq(!!a.abstract, g->abstract, "'%s': abstract %d", g->text, a.abstract);
        } else {
            if (g->host != NULL)
                cr_assert_str_eq(a.host, g->host, "'%s'", g->text);
            cr_assert_eq(a.port, g->port, "'%s': port %u", g->text, a.port);
        }
    }
}

Test(addr, parse_bad_forms)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const bad_case *b = &bad[i];
        sk_addr a;
        char err[256];
        memset(err, 0, sizeof err);
        int r = sk_addr_parse(b->text, &a, err, sizeof err);
        cr_assert_eq(r, -EINVAL, "'%s' gave %d, want -EINVAL", b->text, r);
        check_err(b->text, err, b->needles);
        cr_assert(memchr(err, '\n', strlen(err)) == NULL, "'%s': error is not one line", b->text);
        /* err may be NULL. */
        cr_assert_eq(sk_addr_parse(b->text, &a, NULL, 0), -EINVAL, "'%s'", b->text);
    }
}

/* Unix paths: 107 bytes fit sun_path with its NUL, 108 do not; the same for
 * abstract names (sun_path[0] is the NUL marker). */
Test(addr, parse_unix_path_lengths)
{
    char path[300], text[320], err[256];
    sk_addr a;

    memset(path, 'p', sizeof path);
    path[0] = '/';
    path[107] = '\0';
    snprintf(text, sizeof text, "unix:%s", path);
    cr_assert_eq(sk_addr_parse(text, &a, err, sizeof err), 0, "107-byte path: %s", err);
    cr_assert_str_eq(a.path, path);

    for (size_t n = 108; n < 300; n += 191) {
        memset(path, 'p', sizeof path);
        path[0] = '/';
        path[n] = '\0';
        snprintf(text, sizeof text, "unix:%s", path);
        err[0] = '\0';
        cr_assert_eq(sk_addr_parse(text, &a, err, sizeof err), -EINVAL, "%zu-byte path accepted",
                     n);
        const char *needles[4] = {"long", "108", "107", "length"};
        check_err(text, err, needles);
        snprintf(text, sizeof text, "unixgram:%s", path);
        cr_assert_eq(sk_addr_parse(text, &a, err, sizeof err), -EINVAL, "unixgram %zu bytes", n);
    }

    memset(path, 'n', sizeof path);
    path[107] = '\0';
    snprintf(text, sizeof text, "unix:@%s", path);
    cr_assert_eq(sk_addr_parse(text, &a, err, sizeof err), 0, "107-byte abstract: %s", err);
    cr_assert_str_eq(a.path, path);
    cr_assert(a.abstract);
    path[107] = 'n';
    path[108] = '\0';
    snprintf(text, sizeof text, "unix:@%s", path);
    err[0] = '\0';
    cr_assert_eq(sk_addr_parse(text, &a, err, sizeof err), -EINVAL, "108-byte abstract accepted");
    cr_assert(err[0] != '\0');
}

Test(addr, parse_host_too_long)
{
    char text[600], err[256] = "";
    memset(text, 'h', 400);
    memcpy(text + 400, ":80", 4);
    sk_addr a;
    cr_assert_eq(sk_addr_parse(text, &a, err, sizeof err), -EINVAL);
    cr_assert(err[0] != '\0');
}

/* The error text is truncated to errlen and always terminated; nothing is
 * written past it. */
Test(addr, parse_err_truncated)
{
    char buf[64];
    memset(buf, '#', sizeof buf);
    sk_addr a;
    cr_assert_eq(sk_addr_parse("127.0.0.1:65536", &a, buf, 8), -EINVAL);
    cr_assert(memchr(buf, '\0', 8) != NULL, "error text not terminated within errlen");
    for (size_t i = 8; i < sizeof buf; i++)
        cr_assert_eq(buf[i], '#', "wrote past errlen at %zu", i);
}

/* Ownership moves only on success: a failing parse leaves *out as it was. */
Test(addr, parse_failure_leaves_out_alone)
{
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sk_addr a, before;
        memset(&a, 0x5A, sizeof a);
        memcpy(&before, &a, sizeof a);
        char err[256];
        (void)sk_addr_parse(bad[i].text, &a, err, sizeof err);
        cr_assert(memcmp(&a, &before, sizeof a) == 0, "'%s': *out modified on failure",
                  bad[i].text);
    }
}

static void same_addr(const sk_addr *x, const sk_addr *y, const char *what)
{
    cr_assert_eq(x->kind, y->kind, "%s: kind", what);
    if (x->kind == SK_ADDR_UNIX || x->kind == SK_ADDR_UNIXGRAM) {
        cr_assert_str_eq(x->path, y->path, "%s: path", what);
        cr_assert_eq(!!x->abstract, !!y->abstract, "%s: abstract", what);
    } else {
        cr_assert_str_eq(x->host, y->host, "%s: host", what);
        cr_assert_eq(x->port, y->port, "%s: port", what);
    }
}

Test(addr, format_round_trip)
{
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        sk_addr a, b;
        char err[256], text[512];
        cr_assert_eq(sk_addr_parse(good[i].text, &a, err, sizeof err), 0, "%s", good[i].text);
        int n = sk_addr_format(&a, text, sizeof text);
        cr_assert(n > 0, "'%s' formatted to %d", good[i].text, n);
        cr_assert_eq((size_t)n, strlen(text), "'%s': return %d vs strlen %zu", good[i].text, n,
                     strlen(text));
        cr_assert_eq(sk_addr_parse(text, &b, err, sizeof err), 0, "'%s' -> '%s' unparseable: %s",
                     good[i].text, text, err);
        same_addr(&a, &b, good[i].text);
    }
}

Test(addr, format_canonical_text)
{
    static const struct {
        const char *in, *out, *alt;
    } cases[] = {
        {"127.0.0.1:80", "127.0.0.1:80", "tcp://127.0.0.1:80"},
        {"tcp://[::1]:9", "[::1]:9", "tcp://[::1]:9"},
        {"udp://127.0.0.1:53", "udp://127.0.0.1:53", NULL},
        {"udp://[::1]:53", "udp://[::1]:53", NULL},
        {"tls://example.org:443", "tls://example.org:443", NULL},
        {"unix:/tmp/s", "unix:/tmp/s", NULL},
        {"unix:@abs", "unix:@abs", NULL},
        {"unixgram:/tmp/g", "unixgram:/tmp/g", NULL},
        {"unixgram:@g", "unixgram:@g", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_addr a;
        char err[256], text[256];
        cr_assert_eq(sk_addr_parse(cases[i].in, &a, err, sizeof err), 0, "%s", cases[i].in);
        sk_addr_format(&a, text, sizeof text);
        cr_assert(strcmp(text, cases[i].out) == 0 ||
                      (cases[i].alt != NULL && strcmp(text, cases[i].alt) == 0),
                  "'%s' formatted as '%s'", cases[i].in, text);
    }
}

Test(addr, format_truncates_like_snprintf)
{
    sk_addr a;
    char err[256], full[256], small[16];
    cr_assert_eq(sk_addr_parse("udp://127.0.0.1:5353", &a, err, sizeof err), 0);
    int n = sk_addr_format(&a, full, sizeof full);
    cr_assert_eq(n, (int)strlen("udp://127.0.0.1:5353"));
    memset(small, '#', sizeof small);
    int m = sk_addr_format(&a, small, 6);
    cr_assert_eq(m, n, "truncated call returns %d, want the full length %d", m, n);
    cr_assert_eq(strlen(small), 5u);
    cr_assert(strncmp(small, full, 5) == 0);
    for (size_t i = 6; i < sizeof small; i++)
        cr_assert_eq(small[i], '#', "wrote past buflen");
}

static int ipv6_available(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 sin6;
    memset(&sin6, 0, sizeof sin6);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_addr = in6addr_loopback;
    int ok = bind(fd, (struct sockaddr *)&sin6, sizeof sin6) == 0;
    close(fd);
    return ok;
}

static int resolve_text(const char *text, int passive, struct sockaddr_storage *ss, socklen_t *lens,
                        int max, char *err, size_t errlen)
{
    sk_addr a;
    cr_assert_eq(sk_addr_parse(text, &a, err, errlen), 0, "%s: %s", text, err);
    return sk_addr_resolve(&a, passive ? SK_RESOLVE_PASSIVE : 0, ss, lens, max, err, errlen);
}

Test(addr, resolve_ipv4_literal)
{
    struct sockaddr_storage ss[4];
    socklen_t lens[4];
    char err[256] = "";
    int fds = unit_count_fds();
    int n = resolve_text("127.0.0.1:8080", 0, ss, lens, 4, err, sizeof err);
    cr_assert(n >= 1 && n <= 4, "returned %d: %s", n, err);
    for (int i = 0; i < n; i++) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)&ss[i];
        cr_assert_eq(sin->sin_family, AF_INET);
        cr_assert_eq(lens[i], (socklen_t)sizeof(struct sockaddr_in));
        cr_assert_eq(ntohs(sin->sin_port), 8080);
        cr_assert_eq(ntohl(sin->sin_addr.s_addr), 0x7f000001u);
    }
    n = resolve_text("udp://127.0.0.1:53", 0, ss, lens, 1, err, sizeof err);
    cr_assert_eq(n, 1, "%d: %s", n, err);
    cr_assert_eq(ntohs(((const struct sockaddr_in *)&ss[0])->sin_port), 53);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

Test(addr, resolve_ipv6_literal)
{
    if (!ipv6_available()) {
        cr_skip_test("IPv6 loopback unavailable");
        return;
    }
    struct sockaddr_storage ss[4];
    socklen_t lens[4];
    char err[256] = "";
    int n = resolve_text("[::1]:8080", 0, ss, lens, 4, err, sizeof err);
    cr_assert(n >= 1 && n <= 4, "returned %d: %s", n, err);
    for (int i = 0; i < n; i++) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss[i];
        cr_assert_eq(s6->sin6_family, AF_INET6);
        cr_assert_eq(lens[i], (socklen_t)sizeof(struct sockaddr_in6));
        cr_assert_eq(ntohs(s6->sin6_port), 8080);
        cr_assert(IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr));
    }
}

static int is_loopback(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
    if (ss->ss_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)ss)->sin6_addr);
    return 0;
}

static int port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

Test(addr, resolve_localhost)
{
    struct sockaddr_storage ss[8];
    socklen_t lens[8];
    char err[256] = "";
    int n = resolve_text("localhost:4242", 0, ss, lens, 8, err, sizeof err);
    cr_assert(n >= 1 && n <= 8, "returned %d: %s", n, err);
    for (int i = 0; i < n; i++) {
        cr_assert(is_loopback(&ss[i]), "entry %d is not loopback", i);
        cr_assert_eq(port_of(&ss[i]), 4242);
    }
    /* max bounds the count. */
    n = resolve_text("localhost:4242", 0, ss, lens, 1, err, sizeof err);
    cr_assert_eq(n, 1, "max 1 gave %d", n);
}

Test(addr, resolve_passive_wildcard)
{
    struct sockaddr_storage ss[4];
    socklen_t lens[4];
    char err[256] = "";
    int n = resolve_text("*:5000", 1, ss, lens, 4, err, sizeof err);
    cr_assert(n >= 1 && n <= 4, "returned %d: %s", n, err);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(port_of(&ss[i]), 5000);
        if (ss[i].ss_family == AF_INET)
            cr_assert_eq(((const struct sockaddr_in *)&ss[i])->sin_addr.s_addr, htonl(INADDR_ANY));
        else
            cr_assert(ss[i].ss_family == AF_INET6 &&
                      IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&ss[i])->sin6_addr));
    }
}

Test(addr, resolve_refuses_unknown_flags)
{
    struct sockaddr_storage ss[2];
    socklen_t lens[2];
    char err[256] = "";
    sk_addr a;
    cr_assert_eq(sk_addr_parse("127.0.0.1:5000", &a, NULL, 0), 0);
    cr_assert_eq(sk_addr_resolve(&a, SK_RESOLVE_PASSIVE << 1, ss, lens, 2, err, sizeof err),
                 -EINVAL);
    cr_assert_eq(sk_addr_resolve(&a, SK_RESOLVE_PASSIVE, ss, lens, 2, err, sizeof err), 1, "%s",
                 err);
}

Test(addr, resolve_unix_path)
{
    struct sockaddr_storage ss[2];
    socklen_t lens[2];
    char err[256] = "";
    memset(ss, 0x5A, sizeof ss);
    int n = resolve_text("unix:/tmp/sockit-test.sock", 0, ss, lens, 2, err, sizeof err);
    cr_assert_eq(n, 1, "returned %d: %s", n, err);
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss[0];
    const size_t base = offsetof(struct sockaddr_un, sun_path);
    const size_t plen = strlen("/tmp/sockit-test.sock");
    cr_assert_eq(sun->sun_family, AF_UNIX);
    cr_assert(lens[0] >= base + plen && lens[0] <= sizeof(struct sockaddr_un), "length %u",
              (unsigned)lens[0]);
    cr_assert(memcmp(sun->sun_path, "/tmp/sockit-test.sock", plen) == 0);
    cr_assert_eq(sun->sun_path[plen], '\0', "path not terminated");

    /* A 107-byte path still fits. */
    char text[200], path[108];
    memset(path, 'q', 107);
    path[0] = '/';
    path[107] = '\0';
    snprintf(text, sizeof text, "unixgram:%s", path);
    n = resolve_text(text, 1, ss, lens, 2, err, sizeof err);
    cr_assert_eq(n, 1, "returned %d: %s", n, err);
    cr_assert(lens[0] >= base + 107 && lens[0] <= sizeof(struct sockaddr_un));
    cr_assert(memcmp(sun->sun_path, path, 107) == 0);
}

Test(addr, resolve_unix_abstract)
{
    struct sockaddr_storage ss[2];
    socklen_t lens[2];
    char err[256] = "";
    memset(ss, 0x5A, sizeof ss);
    int n = resolve_text("unix:@sockit-abs", 0, ss, lens, 2, err, sizeof err);
    cr_assert_eq(n, 1, "returned %d: %s", n, err);
    const struct sockaddr_un *sun = (const struct sockaddr_un *)&ss[0];
    cr_assert_eq(sun->sun_family, AF_UNIX);
    cr_assert_eq(sun->sun_path[0], '\0', "abstract name must start with NUL");
    cr_assert(memcmp(sun->sun_path + 1, "sockit-abs", 10) == 0);
    /* Every byte within the length is part of an abstract name, so the
     * length must be exact: no trailing NUL counted. */
    cr_assert_eq(lens[0], (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + 10), "length %u",
                 (unsigned)lens[0]);
}

/* A resolved abstract address is the same one the kernel reports: bind with
 * it, read it back with getsockname and compare. */
Test(addr, resolve_abstract_binds)
{
    struct sockaddr_storage ss[1], got;
    socklen_t lens[1], glen = sizeof got;
    char err[256] = "", name[64], text[80];
    snprintf(name, sizeof name, "sockit-unit-%d", (int)getpid());
    snprintf(text, sizeof text, "unix:@%s", name);
    cr_assert_eq(resolve_text(text, 1, ss, lens, 1, err, sizeof err), 1, "%s", err);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert(fd >= 0);
    cr_assert_eq(bind(fd, (struct sockaddr *)&ss[0], lens[0]), 0, "bind: %s", strerror(errno));
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&got, &glen), 0);
    cr_assert_eq(glen, lens[0]);
    cr_assert(memcmp(&got, &ss[0], glen) == 0);
    char buf[128];
    cr_assert_str_eq(sk_sockaddr_format((struct sockaddr *)&got, glen, buf, sizeof buf), text);
    close(fd);
}

Test(addr, sockaddr_format_inet)
{
    char buf[128];
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(5);
    cr_assert_eq(inet_pton(AF_INET, "1.2.3.4", &sin.sin_addr), 1);
    char *r = sk_sockaddr_format((struct sockaddr *)&sin, sizeof sin, buf, sizeof buf);
    cr_assert_eq(r, buf);
    cr_assert_str_eq(buf, "1.2.3.4:5");

    sin.sin_port = htons(65535);
    sin.sin_addr.s_addr = htonl(0x7f000001u);
    sk_sockaddr_format((struct sockaddr *)&sin, sizeof sin, buf, sizeof buf);
    cr_assert_str_eq(buf, "127.0.0.1:65535");

    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(5);
    s6.sin6_addr = in6addr_loopback;
    r = sk_sockaddr_format((struct sockaddr *)&s6, sizeof s6, buf, sizeof buf);
    cr_assert_eq(r, buf);
    cr_assert_str_eq(buf, "[::1]:5");

    cr_assert_eq(inet_pton(AF_INET6, "2001:db8::42", &s6.sin6_addr), 1);
    s6.sin6_port = htons(443);
    sk_sockaddr_format((struct sockaddr *)&s6, sizeof s6, buf, sizeof buf);
    cr_assert_str_eq(buf, "[2001:db8::42]:443");
}

Test(addr, sockaddr_format_unix)
{
    char buf[256];
    struct sockaddr_storage ss;
    struct sockaddr_un *sun = (struct sockaddr_un *)&ss;
    const size_t base = offsetof(struct sockaddr_un, sun_path);

    memset(&ss, 0, sizeof ss);
    sun->sun_family = AF_UNIX;
    strcpy(sun->sun_path, "/tmp/x.sock");
    sk_sockaddr_format((struct sockaddr *)sun, (socklen_t)(base + strlen("/tmp/x.sock") + 1), buf,
                       sizeof buf);
    cr_assert_str_eq(buf, "unix:/tmp/x.sock");
    /* The whole-struct length the kernel also accepts. */
    sk_sockaddr_format((struct sockaddr *)sun, sizeof *sun, buf, sizeof buf);
    cr_assert_str_eq(buf, "unix:/tmp/x.sock");

    memset(&ss, 0, sizeof ss);
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, "\0name", 5);
    char *r = sk_sockaddr_format((struct sockaddr *)sun, (socklen_t)(base + 5), buf, sizeof buf);
    cr_assert_eq(r, buf);
    cr_assert_str_eq(buf, "unix:@name");

    memset(&ss, 0, sizeof ss);
    sun->sun_family = AF_UNIX;
    sk_sockaddr_format((struct sockaddr *)sun, (socklen_t)sizeof(sa_family_t), buf, sizeof buf);
    cr_assert_str_eq(buf, "unix:(unnamed)");

    /* A full 108-byte path without a terminating NUL (legal for the kernel):
     * the formatter must stop at the length, not run into what follows. */
    memset(&ss, 'Z', sizeof ss);
    sun->sun_family = AF_UNIX;
    memset(sun->sun_path, 'p', sizeof sun->sun_path);
    sk_sockaddr_format((struct sockaddr *)sun, sizeof *sun, buf, sizeof buf);
    cr_assert_eq(strlen(buf), 5 + sizeof sun->sun_path, "'%s'", buf);
    cr_assert(strchr(buf, 'Z') == NULL, "read past the address length: '%s'", buf);
}

Test(addr, sockaddr_format_small_buffer)
{
    char buf[32];
    memset(buf, '#', sizeof buf);
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof sin);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(12345);
    sin.sin_addr.s_addr = htonl(0x0a0b0c0du);
    char *r = sk_sockaddr_format((struct sockaddr *)&sin, sizeof sin, buf, 6);
    cr_assert_eq(r, buf);
    cr_assert(memchr(buf, '\0', 6) != NULL, "not terminated within buflen");
    for (size_t i = 6; i < sizeof buf; i++)
        cr_assert_eq(buf[i], '#', "wrote past buflen at %zu", i);
}
