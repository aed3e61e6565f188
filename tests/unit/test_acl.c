/* test_acl.c — network access lists: CIDR parsing (IPv4, IPv6, bare
 * addresses, brackets, mapped rules, host bits, garbage), matching with
 * allow/deny semantics, IPv4-mapped peers judged by IPv4 rules, non-IP
 * peers always allowed, and rules files with comments and line numbers. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(acl, .init = unit_alarm);

/* A sockaddr for text (IPv4 or IPv6). */
static socklen_t sa_of(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        return sizeof *s4;
    }
    cr_assert_eq(inet_pton(AF_INET6, text, &s6->sin6_addr), 1, "%s", text);
    s6->sin6_family = AF_INET6;
    return sizeof *s6;
}

static int allows(const sk_acl *acl, const char *peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sa_of(peer, &ss);
    return sk_acl_allows(acl, (struct sockaddr *)&ss, len);
}

Test(acl, parse_forms)
{
    sk_cidr c;
    cr_assert_eq(sk_cidr_parse("10.1.2.3", &c), 0);
    cr_assert_eq(c.family, AF_INET);
    cr_assert_eq(c.prefix, 32);
    cr_assert_eq(sk_cidr_parse("10.1.2.3/8", &c), 0);
    cr_assert_eq(c.prefix, 8);
    cr_assert_eq(c.addr[0], 10);
    cr_assert_eq(c.addr[1], 0, "host bits kept");
    cr_assert_eq(sk_cidr_parse("::1", &c), 0);
    cr_assert_eq(c.family, AF_INET6);
    cr_assert_eq(c.prefix, 128);
    cr_assert_eq(sk_cidr_parse("[fd00::]/8", &c), 0);
    cr_assert_eq(c.prefix, 8);
    cr_assert_eq(sk_cidr_parse("0.0.0.0/0", &c), 0);
    cr_assert_eq(sk_cidr_parse("::/0", &c), 0);
    /* A mapped rule is an IPv4 rule. */
    cr_assert_eq(sk_cidr_parse("::ffff:127.0.0.0/104", &c), 0);
    cr_assert_eq(c.family, AF_INET);
    cr_assert_eq(c.prefix, 8);
    cr_assert_eq(c.addr[0], 127);
    static const char *const bad[] = {
        "ls",          "",      "1.2.3.4/33",  "::1/129",      "1.2.3.4/", "/8",      "10.0.0.0/8x",
        "10.0.0.0/-1", "1.2.3", "example.com", "1.2.3.4/0008", "[::1",     "1.2.3.4 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(sk_cidr_parse(bad[i], &c), -EINVAL, "accepted \"%s\"", bad[i]);
}

Test(acl, match_and_mapped_peers)
{
    sk_cidr c;
    struct sockaddr_storage ss;
    cr_assert_eq(sk_cidr_parse("127.0.0.0/8", &c), 0);
    cr_assert(sk_cidr_match(&c, (struct sockaddr *)&ss, sa_of("127.9.9.9", &ss)));
    cr_assert(sk_cidr_match(&c, (struct sockaddr *)&ss, sa_of("::ffff:127.0.0.1", &ss)));
    cr_assert(!sk_cidr_match(&c, (struct sockaddr *)&ss, sa_of("128.0.0.1", &ss)));
    cr_assert(!sk_cidr_match(&c, (struct sockaddr *)&ss, sa_of("::1", &ss)));
    cr_assert_eq(sk_cidr_parse("10.0.0.0/12", &c), 0);
    cr_assert(sk_cidr_match(&c, (struct sockaddr *)&ss, sa_of("10.15.255.255", &ss)));
    cr_assert(!sk_cidr_match(&c, (struct sockaddr *)&ss, sa_of("10.16.0.0", &ss)));
    cr_assert_eq(sk_cidr_parse("2001:db8::/33", &c), 0);
    cr_assert(sk_cidr_match(&c, (struct sockaddr *)&ss, sa_of("2001:db8:7fff::1", &ss)));
    cr_assert(!sk_cidr_match(&c, (struct sockaddr *)&ss, sa_of("2001:db8:8000::1", &ss)));
}

Test(acl, allow_and_deny_semantics)
{
    sk_acl *acl;
    cr_assert_eq(sk_acl_new(&acl), 0);
    cr_assert(allows(acl, "192.0.2.1"), "an empty list refuses");
    cr_assert(allows(NULL, "192.0.2.1"));
    char err[200];
    /* Deny only: everyone else is allowed. */
    cr_assert_eq(sk_acl_add(acl, 1, "127.0.0.2", err, sizeof err), 0, "%s", err);
    cr_assert(allows(acl, "127.0.0.1"));
    cr_assert(!allows(acl, "127.0.0.2"));
    cr_assert(!allows(acl, "::ffff:127.0.0.2"), "a mapped peer escapes an IPv4 deny");
    /* An allow rule: now only its network, and deny still wins inside it. */
    cr_assert_eq(sk_acl_add(acl, 0, "127.0.0.0/8, ::1", err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_acl_count(acl, 0), 2);
    cr_assert_eq(sk_acl_count(acl, 1), 1);
    cr_assert(allows(acl, "127.0.0.1"));
    cr_assert(allows(acl, "::ffff:127.0.0.1"));
    cr_assert(allows(acl, "::1"));
    cr_assert(!allows(acl, "127.0.0.2"));
    cr_assert(!allows(acl, "192.0.2.1"));
    cr_assert(!allows(acl, "::2"));
    /* Not an IP peer: access lists do not apply. */
    struct sockaddr_un un = {.sun_family = AF_UNIX};
    cr_assert(sk_acl_allows(acl, (struct sockaddr *)&un, sizeof un));
    sk_acl_free(acl);
}

Test(acl, bad_items_are_named)
{
    sk_acl *acl;
    cr_assert_eq(sk_acl_new(&acl), 0);
    char err[200] = "";
    cr_assert_eq(sk_acl_add(acl, 0, "10.0.0.0/8,ls", err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "\"ls\"") != NULL, "%s", err);
    cr_assert_eq(sk_acl_add(acl, 0, "10.0.0.1,,10.0.0.2", err, sizeof err), -EINVAL);
    cr_assert_eq(sk_acl_add(acl, 0, "", err, sizeof err), -EINVAL);
    sk_acl_free(acl);
}

Test(acl, rules_file)
{
    char path[] = "/tmp/skacl-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    const char text[] = "# loopback only\n"
                        "127.0.0.1   # this host\n"
                        "\n"
                        "   ::1/128\n"
                        "\t# indented comment\n";
    cr_assert_eq(write(fd, text, sizeof text - 1), (ssize_t)(sizeof text - 1));
    close(fd);
    sk_acl *acl;
    cr_assert_eq(sk_acl_new(&acl), 0);
    char err[400] = "";
    cr_assert_eq(sk_acl_add_file(acl, 0, path, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_acl_count(acl, 0), 2);
    cr_assert(allows(acl, "127.0.0.1"));
    cr_assert(allows(acl, "::1"));
    cr_assert(!allows(acl, "127.0.0.2"));
    /* A bad line is reported with its number. */
    FILE *f = fopen(path, "a");
    cr_assert_not_null(f);
    fputs("10.0.0.0/8\nnot-an-address\n", f);
    fclose(f);
    cr_assert_eq(sk_acl_add_file(acl, 1, path, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "line 7") != NULL, "%s", err);
    cr_assert(strstr(err, "not-an-address") != NULL, "%s", err);
    cr_assert_eq(sk_acl_add_file(acl, 1, "/nonexistent/skacl", err, sizeof err), -ENOENT);
    unlink(path);
    sk_acl_free(acl);
}
