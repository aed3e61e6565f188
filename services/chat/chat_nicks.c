/* chat_nicks.c — the nick table of a chat room: which nicks are valid, and a
 * hash table from nick to member so that uniqueness costs O(1) however many
 * members there are. Nicks compare without regard to ASCII case ("Bob" and
 * "bob" cannot both be in a room: they would be indistinguishable to
 * readers), but are shown as their owner chose them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"

#define INITIAL_CAP 64u

static unsigned char lower(unsigned char ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }

static size_t hash(const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= lower((unsigned char)name[i]);
        h *= 1099511628211ull;
    }
    return (size_t)(h ^ (h >> 32));
}

static bool same(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

bool chat_nick_valid(const char *name, size_t len)
{
    if (len == 0 || len > CHAT_NICK_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

int chat_nicks_init(chat_room *r)
{
    r->nicks = calloc(INITIAL_CAP, sizeof *r->nicks);
    if (r->nicks == NULL)
        return -1;
    r->nicks_cap = INITIAL_CAP;
    return 0;
}

void chat_nicks_free(chat_room *r)
{
    free(r->nicks);
    r->nicks = NULL;
    r->nicks_cap = 0;
}

member *chat_nick_find(const chat_room *r, const char *name, size_t len)
{
    for (member *m = r->nicks[hash(name, len) & (r->nicks_cap - 1)]; m != NULL; m = m->hnext)
        if (strlen(m->nick) == len && same(m->nick, name, len))
            return m;
    return NULL;
}

/* Doubles the table when it holds as many members as buckets; if memory is
 * short it stays as it is (longer chains, still correct). */
static void grow(chat_room *r)
{
    size_t cap = r->nicks_cap * 2;
    member **t = calloc(cap, sizeof *t);
    if (t == NULL)
        return;
    for (size_t i = 0; i < r->nicks_cap; i++) {
        member *m = r->nicks[i];
        while (m != NULL) {
            member *next = m->hnext;
            size_t b = hash(m->nick, strlen(m->nick)) & (cap - 1);
            m->hnext = t[b];
            t[b] = m;
            m = next;
        }
    }
    free(r->nicks);
    r->nicks = t;
    r->nicks_cap = cap;
}

static void insert(chat_room *r, member *m)
{
    if (r->joined >= r->nicks_cap)
        grow(r);
    size_t b = hash(m->nick, strlen(m->nick)) & (r->nicks_cap - 1);
    m->hnext = r->nicks[b];
    r->nicks[b] = m;
}

void chat_nick_remove(chat_room *r, member *m)
{
    member **pp = &r->nicks[hash(m->nick, strlen(m->nick)) & (r->nicks_cap - 1)];
    for (; *pp != NULL; pp = &(*pp)->hnext) {
        if (*pp == m) {
            *pp = m->hnext;
            m->hnext = NULL;
            return;
        }
    }
}

void chat_nick_guest(chat_room *r, member *m)
{
    /* Someone may have taken "guestN" with /nick: skip it. At most as many
     * tries as there are members. */
    for (;;) {
        int n = snprintf(m->nick, sizeof m->nick, "guest%llu", (unsigned long long)r->next_guest++);
        if (chat_nick_find(r, m->nick, (size_t)n) == NULL)
            break;
    }
    insert(r, m);
}

void chat_nick_set(chat_room *r, member *m, const char *name, size_t len)
{
    chat_nick_remove(r, m);
    memcpy(m->nick, name, len);
    m->nick[len] = '\0';
    insert(r, m);
}
