/* acl.c — network access lists: CIDR rules (IPv4 and IPv6) parsed from
 * text or a file, and the check servers make right after accept (or on
 * each datagram) before reading a byte. An IPv4-mapped IPv6 peer
 * (::ffff:a.b.c.d, what a dual-stack [::] listener sees) is judged by the
 * IPv4 rules. Not for Unix sockets: they have no network address. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A rules file line longer than this is an error, not something to cut:
 * the longest IPv6 CIDR is 43 characters, the rest is comment room. */
#define LINE_MAX_LEN 512

struct sk_acl {
    sk_cidr *rules; /* in the order given */
    int *deny;      /* parallel to rules: 1 for a --deny rule */
    size_t n, cap;
    size_t nallow;
};

int sk_cidr_parse(const char *text, sk_cidr *out)
{
    char buf[64];
    size_t len = strlen(text);
    if (len == 0 || len >= sizeof buf)
        return -EINVAL;
    memcpy(buf, text, len + 1);
    char *slash = strchr(buf, '/');
    long prefix = -1;
    if (slash != NULL) {
        *slash = '\0';
        const char *p = slash + 1;
        if (*p == '\0' || strlen(p) > 3)
            return -EINVAL;
        prefix = 0;
        for (; *p; p++) {
            if (!isdigit((unsigned char)*p))
                return -EINVAL;
            prefix = prefix * 10 + (*p - '0');
        }
    }
    char *host = buf;
    size_t hlen = strlen(host);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') { /* [::1] */
        host[hlen - 1] = '\0';
        host++;
    }
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        if (prefix > 32)
            return -EINVAL;
        out->prefix = prefix < 0 ? 32u : (unsigned)prefix;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        if (prefix > 128)
            return -EINVAL;
        out->prefix = prefix < 0 ? 128u : (unsigned)prefix;
        /* ::ffff:a.b.c.d/n with n >= 96 is an IPv4 rule in disguise: keep
         * it as one, so that IPv4 and mapped peers both match it. */
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (out->prefix >= 96 && memcmp(out->addr, mapped, 12) == 0) {
            memmove(out->addr, out->addr + 12, 4);
            memset(out->addr + 4, 0, 12);
            out->family = AF_INET;
            out->prefix -= 96;
        }
    } else {
        return -EINVAL;
    }
    /* Host bits beyond the prefix are cleared: 10.1.2.3/8 is 10.0.0.0/8. */
    unsigned bytes = out->family == AF_INET ? 4 : 16;
    for (unsigned i = 0; i < bytes; i++) {
        unsigned keep = out->prefix > i * 8 ? out->prefix - i * 8 : 0;
        if (keep < 8)
            out->addr[i] &= (uint8_t)(0xff00u >> keep);
    }
    return 0;
}

/* The peer's family and address bytes, an IPv4-mapped IPv6 address taken
 * as the IPv4 address it carries. False for anything not IP. */
static bool peer_bytes(const struct sockaddr *sa, socklen_t len, int *family, uint8_t addr[16])
{
    if (sa == NULL)
        return false;
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
        memcpy(addr, &s4->sin_addr, 4);
        *family = AF_INET;
        return true;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
            memcpy(addr, s6->sin6_addr.s6_addr + 12, 4);
            *family = AF_INET;
        } else {
            memcpy(addr, s6->sin6_addr.s6_addr, 16);
            *family = AF_INET6;
        }
        return true;
    }
    return false;
}

static bool cidr_has(const sk_cidr *c, int family, const uint8_t *addr)
{
    if (c->family != family)
        return false;
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, addr, full) != 0)
        return false;
    return rest == 0 || ((c->addr[full] ^ addr[full]) & (uint8_t)(0xff00u >> rest)) == 0;
}

int sk_cidr_match(const sk_cidr *c, const struct sockaddr *sa, socklen_t len)
{
    int family;
    uint8_t addr[16];
    return peer_bytes(sa, len, &family, addr) && cidr_has(c, family, addr);
}

int sk_acl_new(sk_acl **out)
{
    *out = calloc(1, sizeof **out);
    return *out ? 0 : -ENOMEM;
}

void sk_acl_free(sk_acl *acl)
{
    if (acl == NULL)
        return;
    free(acl->rules);
    free(acl->deny);
    free(acl);
}

static int add_rule(sk_acl *acl, int deny, const sk_cidr *c)
{
    if (acl->n == SK_ACL_MAX_RULES)
        return -E2BIG;
    if (acl->n == acl->cap) {
        size_t cap = acl->cap ? acl->cap * 2 : 8;
        sk_cidr *r = realloc(acl->rules, cap * sizeof *r);
        if (r == NULL)
            return -ENOMEM;
        acl->rules = r;
        int *d = realloc(acl->deny, cap * sizeof *d);
        if (d == NULL)
            return -ENOMEM;
        acl->deny = d;
        acl->cap = cap;
    }
    acl->rules[acl->n] = *c;
    acl->deny[acl->n] = deny ? 1 : 0;
    acl->n++;
    acl->nallow += deny ? 0 : 1;
    return 0;
}

/* One item of a list or a file: blanks around it are not part of it. */
static int add_item(sk_acl *acl, int deny, const char *item, size_t len, char *err, size_t errlen,
                    const char *where)
{
    while (len > 0 && isspace((unsigned char)*item)) {
        item++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)item[len - 1]))
        len--;
    char text[64];
    sk_cidr c;
    if (len == 0 || len >= sizeof text) {
        if (err)
            snprintf(err, errlen, "%s\"%.*s\" is not a network address (CIDR)", where,
                     (int)(len > 60 ? 60 : len), item);
        return -EINVAL;
    }
    memcpy(text, item, len);
    text[len] = '\0';
    if (sk_cidr_parse(text, &c) < 0) {
        if (err)
            snprintf(err, errlen, "%s\"%s\" is not a network address (CIDR)", where, text);
        return -EINVAL;
    }
    int rc = add_rule(acl, deny, &c);
    if (rc < 0 && err)
        snprintf(err, errlen, "%s%s", where,
                 rc == -E2BIG ? "too many access rules" : "out of memory");
    return rc;
}

int sk_acl_add(sk_acl *acl, int deny, const char *list, char *err, size_t errlen)
{
    const char *p = list;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        int rc = add_item(acl, deny, p, len, err, errlen, "");
        if (rc < 0)
            return rc;
        if (end == NULL)
            return 0;
        p = end + 1;
    }
}

int sk_acl_add_file(sk_acl *acl, int deny, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        int e = errno;
        if (err)
            snprintf(err, errlen, "cannot read %s: %s", path, strerror(e));
        return -e;
    }
    char line[LINE_MAX_LEN + 2];
    unsigned lineno = 0;
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f) != NULL) {
        lineno++;
        size_t len = strlen(line);
        char where[300];
        snprintf(where, sizeof where, "%.256s line %u: ", path, lineno);
        if (len > LINE_MAX_LEN && line[len - 1] != '\n') {
            if (err)
                snprintf(err, errlen, "%sline too long", where);
            rc = -EINVAL;
            break;
        }
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        len = strlen(line);
        size_t i = 0;
        while (i < len && isspace((unsigned char)line[i]))
            i++;
        if (i == len)
            continue; /* blank or comment only */
        rc = add_item(acl, deny, line, len, err, errlen, where);
    }
    if (rc == 0 && ferror(f)) {
        rc = -EIO;
        if (err)
            snprintf(err, errlen, "cannot read %s", path);
    }
    fclose(f);
    return rc;
}

size_t sk_acl_count(const sk_acl *acl, int deny)
{
    if (acl == NULL)
        return 0;
    return deny ? acl->n - acl->nallow : acl->nallow;
}

int sk_acl_allows(const sk_acl *acl, const struct sockaddr *sa, socklen_t len)
{
    int family;
    uint8_t addr[16];
    if (acl == NULL || acl->n == 0 || !peer_bytes(sa, len, &family, addr))
        return 1; /* no rules, or not an IP peer (Unix sockets) */
    bool allowed = false;
    for (size_t i = 0; i < acl->n; i++) {
        if (!cidr_has(&acl->rules[i], family, addr))
            continue;
        if (acl->deny[i])
            return 0; /* a --deny match wins over any --allow */
        allowed = true;
    }
    return allowed || acl->nallow == 0;
}

/* ---------------------------------------------- refusals, logged sparingly */

bool sk__acl_log_due(sk__acl_log *t, const struct sockaddr *sa, socklen_t len, uint64_t now)
{
    uint8_t key[16] = {0};
    int family = 0;
    if (!peer_bytes(sa, len, &family, key))
        return false;
    key[15] ^= (uint8_t)family; /* 10.0.0.1 and ::a00:1 are not one source */
    size_t oldest = 0;
    for (size_t i = 0; i < SK__ACL_LOG_SLOTS; i++) {
        if (t->used[i] && memcmp(t->key[i], key, 16) == 0) {
            if (now - t->at[i] < 1000)
                return false;
            t->at[i] = now;
            return true;
        }
        if (!t->used[i] || (t->used[oldest] && t->at[i] < t->at[oldest]))
            oldest = i;
    }
    /* Every slot holds a source logged within the second: a flood of many
     * sources gets no more lines than the table has slots, per second. */
    if (t->used[oldest] && now - t->at[oldest] < 1000)
        return false;
    memcpy(t->key[oldest], key, 16);
    t->at[oldest] = now;
    t->used[oldest] = true;
    return true;
}
