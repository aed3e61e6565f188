/* preauth.c — the limits before authentication that exec and files share:
 * the table that penalises failed authentications per source address, the
 * pre-authentication slots (per source, with eviction), and one
 * connection's gate through them (its slot, its hello and handshake
 * deadlines). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

/* ------------------------------------------------- failed authentications */

void proto_penalties_init(proto_penalties *t)
{
    memset(t->slot, 0, sizeof t->slot);
    pthread_mutex_init(&t->mu, NULL);
}

void proto_penalties_destroy(proto_penalties *t) { pthread_mutex_destroy(&t->mu); }

/* The address part of a peer's text ("1.2.3.4:5" -> "1.2.3.4", "[::1]:5"
 * -> "[::1]"; every Unix peer is one local source). */
static void host_of(const char *peer_text, char *out, size_t cap)
{
    if (strncmp(peer_text, "unix:", 5) == 0) {
        snprintf(out, cap, "unix");
        return;
    }
    const char *colon = strrchr(peer_text, ':');
    size_t n = colon ? (size_t)(colon - peer_text) : strlen(peer_text);
    if (n >= cap)
        n = cap - 1;
    memcpy(out, peer_text, n);
    out[n] = '\0';
}

uint32_t proto_penalty_add(proto_penalties *t, const char *peer_text, uint64_t now_ms)
{
    char host[PROTO_HOST_MAX];
    host_of(peer_text, host, sizeof host);
    pthread_mutex_lock(&t->mu);
    proto_penalty *slot = NULL, *victim = NULL;
    for (size_t i = 0; i < PROTO_PENALTY_SLOTS; i++) {
        proto_penalty *p = &t->slot[i];
        if (p->fails > 0 && strcmp(p->host, host) == 0) {
            slot = p;
            break;
        }
        /* A free slot, else the address that failed longest ago. */
        if (victim == NULL || (victim->fails != 0 && (p->fails == 0 || p->last < victim->last)))
            victim = p;
    }
    if (slot == NULL) {
        slot = victim;
        memset(slot, 0, sizeof *slot);
        snprintf(slot->host, sizeof slot->host, "%s", host);
    } else if (now_ms - slot->last > PROTO_PENALTY_FORGET_MS) {
        slot->fails = 0;
    }
    if (slot->fails < 16)
        slot->fails++;
    slot->last = now_ms;
    uint64_t ms = (uint64_t)PROTO_PENALTY_BASE_MS << (slot->fails - 1);
    pthread_mutex_unlock(&t->mu);
    return ms > PROTO_PENALTY_MAX_MS ? PROTO_PENALTY_MAX_MS : (uint32_t)ms;
}

/* ------------------------------------------- connections before authentication */

/* FNV-1a: spreads host names so that most slots are told apart by an
 * integer compare; equality is still decided by the name. */
static uint64_t host_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

int proto_preauth_init(proto_preauth *t, unsigned max, unsigned per_source)
{
    memset(t, 0, sizeof *t);
    t->max = max ? max : 1;
    t->per_source = per_source ? per_source : 1;
    t->next_seq = 1;
    t->slot = calloc(t->max, sizeof *t->slot);
    t->hosts = calloc(t->max, sizeof *t->hosts);
    if (t->slot == NULL || t->hosts == NULL) {
        free(t->slot);
        free(t->hosts);
        t->slot = NULL;
        t->hosts = NULL;
        return -ENOMEM;
    }
    pthread_mutex_init(&t->mu, NULL);
    return 0;
}

void proto_preauth_destroy(proto_preauth *t)
{
    if (t->slot == NULL)
        return;
    pthread_mutex_destroy(&t->mu);
    free(t->slot);
    free(t->hosts);
    t->slot = NULL;
    t->hosts = NULL;
}

/* The host entry named name, or (create) a free one made so; -1 if none. */
static long host_find(proto_preauth *t, const char *name, uint64_t hash, bool create)
{
    long free_at = -1;
    for (unsigned i = 0; i < t->max; i++) {
        proto_preauth_host *h = &t->hosts[i];
        if (h->count == 0) {
            if (free_at < 0)
                free_at = (long)i;
        } else if (h->hash == hash && strcmp(h->name, name) == 0) {
            return (long)i;
        }
    }
    if (create && free_at >= 0) {
        proto_preauth_host *h = &t->hosts[free_at];
        snprintf(h->name, sizeof h->name, "%s", name);
        h->hash = hash;
    }
    return create ? free_at : -1;
}

static void slot_free(proto_preauth *t, proto_preauth_slot *s)
{
    t->hosts[s->host].count--;
    memset(s, 0, sizeof *s);
    t->used--;
}

/* The slot to evict: the oldest connection of the source holding the most
 * slots (of two sources as represented, the one with the older connection). */
static proto_preauth_slot *pick_victim(proto_preauth *t)
{
    proto_preauth_slot *best = NULL;
    for (unsigned i = 0; i < t->max; i++) {
        proto_preauth_slot *s = &t->slot[i];
        if (s->seq == 0)
            continue;
        unsigned n = t->hosts[s->host].count;
        if (best == NULL || n > t->hosts[best->host].count ||
            (n == t->hosts[best->host].count && s->seq < best->seq))
            best = s;
    }
    return best;
}

int proto_preauth_enter(proto_preauth *t, const char *peer_text, void *owner, proto_evict_fn evict,
                        proto_preauth_ticket *ticket, char *victim)
{
    char name[PROTO_HOST_MAX];
    host_of(peer_text, name, sizeof name);
    uint64_t hash = host_hash(name);
    if (victim != NULL)
        victim[0] = '\0';
    ticket->seq = 0;
    pthread_mutex_lock(&t->mu);
    long h = host_find(t, name, hash, false);
    if (h >= 0 && t->hosts[h].count >= t->per_source) {
        pthread_mutex_unlock(&t->mu);
        return -EBUSY;
    }
    if (t->used >= t->max) {
        proto_preauth_slot *v = pick_victim(t);
        if (victim != NULL)
            snprintf(victim, PROTO_HOST_MAX, "%s", t->hosts[v->host].name);
        v->evict(v->owner);
        slot_free(t, v);
    }
    /* After an eviction: the evicted source's entry may be the one free. */
    h = host_find(t, name, hash, true);
    unsigned idx = 0;
    while (t->slot[idx].seq != 0)
        idx++;
    proto_preauth_slot *s = &t->slot[idx];
    s->seq = t->next_seq++;
    s->host = (uint32_t)h;
    s->owner = owner;
    s->evict = evict;
    t->hosts[h].count++;
    t->used++;
    ticket->idx = idx;
    ticket->seq = s->seq;
    pthread_mutex_unlock(&t->mu);
    return 0;
}

bool proto_preauth_leave(proto_preauth *t, proto_preauth_ticket *ticket)
{
    if (ticket->seq == 0)
        return false;
    pthread_mutex_lock(&t->mu);
    proto_preauth_slot *s = &t->slot[ticket->idx];
    bool held = s->seq == ticket->seq;
    if (held)
        slot_free(t, s);
    pthread_mutex_unlock(&t->mu);
    ticket->seq = 0;
    return held;
}

bool proto_preauth_held(proto_preauth *t, const proto_preauth_ticket *ticket)
{
    if (ticket->seq == 0)
        return false;
    pthread_mutex_lock(&t->mu);
    bool held = t->slot[ticket->idx].seq == ticket->seq;
    pthread_mutex_unlock(&t->mu);
    return held;
}

/* ------------------------------------------------------- one connection's gate */

/* Runs on the connection's own loop after another connection evicted it
 * (proto_gate_evict, perhaps on another worker's thread). */
static void gate_evicted(sk_async *a, void *ud)
{
    (void)a;
    proto_gate *g = ud;
    if (g->evict == NULL || proto_preauth_held(g->table, &g->ticket))
        return;
    g->ticket.seq = 0;
    sk_log(SK_LOG_WARN,
           "%s %s evicted: all --max-unauth slots in use, and its address "
           "holds the most",
           g->name, sk_conn_peer(g->conn));
    proto_send_error(g->conn, PE_BUSY, "evicted: too many connections waiting to authenticate");
    sk_conn_fail(g->conn, -EBUSY, "evicted before authenticating");
}

/* The table is locked: only the wake-up may happen here. */
static void gate_evict(void *owner)
{
    proto_gate *g = owner;
    sk_async_send(g->evict);
}

int proto_gate_open(proto_gate *g, proto_preauth *table, sk_conn *c, const char *name,
                    uint32_t handshake_ms)
{
    memset(g, 0, sizeof *g);
    g->table = table;
    g->conn = c;
    g->name = name;
    g->handshake_ms = handshake_ms;
    g->opened = sk_loop_now(sk_conn_loop(c));
    int rc = sk_async_new(sk_conn_loop(c), gate_evicted, g, &g->evict);
    if (rc < 0) {
        g->evict = NULL;
        return rc;
    }
    char victim[PROTO_HOST_MAX];
    rc = proto_preauth_enter(table, sk_conn_peer(c), g, gate_evict, &g->ticket, victim);
    if (rc < 0) {
        sk_async_free(g->evict);
        g->evict = NULL;
        return rc;
    }
    if (victim[0] != '\0')
        sk_log(SK_LOG_INFO,
               "%s %s admitted by evicting the oldest unauthenticated "
               "connection from %s (--max-unauth full)",
               name, sk_conn_peer(c), victim);
    /* Before authentication a stranger may send only small frames, must say
     * hello at once and finish the handshake in bounded time however it
     * trickles its bytes. */
    sk_conn_set_max_msg(c, PROTO_PREAUTH_MAX);
    uint32_t hello = handshake_ms < PROTO_HELLO_MS ? handshake_ms : PROTO_HELLO_MS;
    sk_conn_set_deadline(c, hello ? (int)hello : SK_FOREVER, "handshake timeout: no hello in time");
    return 0;
}

void proto_gate_hello(proto_gate *g)
{
    uint64_t spent = sk_loop_now(sk_conn_loop(g->conn)) - g->opened;
    uint32_t left = spent >= g->handshake_ms ? 1 : (uint32_t)(g->handshake_ms - spent);
    sk_conn_set_deadline(g->conn, (int)left, "handshake timeout");
}

void proto_gate_close(proto_gate *g)
{
    if (g->evict == NULL)
        return;
    (void)proto_preauth_leave(g->table, &g->ticket);
    sk_async_free(g->evict);
    g->evict = NULL;
}
