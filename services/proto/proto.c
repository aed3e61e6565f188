/* proto.c — the hello that opens every typed service protocol, built and
 * checked in one place for the servers (services/) and the clients (cli/),
 * the big-endian helpers their message layouts use, and the table that
 * penalises failed authentications per source address (exec and files),
 * and the pre-authentication slots both share the same way. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

uint16_t proto_get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

uint32_t proto_get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

void proto_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

void proto_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

size_t proto_hello(uint8_t *buf, bool server, const char *service,
                   const uint8_t nonce[SK_AUTH_NONCE])
{
    size_t slen = strlen(service);
    if (slen > SK_AUTH_SERVICE_MAX)
        slen = SK_AUTH_SERVICE_MAX;
    size_t n = 0;
    buf[n++] = server ? PT_HELLO_SERVER : PT_HELLO_CLIENT;
    memcpy(buf + n, PROTO_MAGIC, PROTO_MAGIC_LEN);
    n += PROTO_MAGIC_LEN;
    buf[n++] = PROTO_VERSION;
    buf[n++] = (uint8_t)slen;
    memcpy(buf + n, service, slen);
    n += slen;
    if (server) {
        memcpy(buf + n, nonce, SK_AUTH_NONCE);
        n += SK_AUTH_NONCE;
    }
    return n;
}

int proto_check_hello(const uint8_t *msg, size_t len, bool from_server, char *service,
                      uint8_t nonce[SK_AUTH_NONCE], char *why, size_t whylen)
{
    uint8_t want = from_server ? PT_HELLO_SERVER : PT_HELLO_CLIENT;
    /* Magic first: whatever else is wrong, a peer that does not speak this
     * protocol at all deserves that sentence, not a detail. */
    if (len < 1 + PROTO_MAGIC_LEN || memcmp(msg + 1, PROTO_MAGIC, PROTO_MAGIC_LEN) != 0 ||
        (msg[0] != PT_HELLO_CLIENT && msg[0] != PT_HELLO_SERVER)) {
        snprintf(why, whylen, "not a sockit %s (no \"SKIT\" hello)",
                 from_server ? "server" : "client");
        return PE_HELLO;
    }
    if (msg[0] != want) {
        snprintf(why, whylen, "the %s sent a %s hello (an echo service?)",
                 from_server ? "server" : "client", from_server ? "client" : "server");
        return PE_HELLO;
    }
    if (len < 1 + PROTO_MAGIC_LEN + 2) {
        snprintf(why, whylen, "hello too short (%zu bytes)", len);
        return PE_PROTOCOL;
    }
    uint8_t version = msg[1 + PROTO_MAGIC_LEN];
    if (version != PROTO_VERSION) {
        snprintf(why, whylen, "protocol version %u is not supported (this side speaks %d)",
                 version, PROTO_VERSION);
        return PE_HELLO;
    }
    size_t slen = msg[1 + PROTO_MAGIC_LEN + 1];
    size_t need = 1 + PROTO_MAGIC_LEN + 2 + slen + (from_server ? SK_AUTH_NONCE : 0);
    if (slen == 0 || slen > SK_AUTH_SERVICE_MAX || len != need) {
        snprintf(why, whylen, "malformed hello (%zu bytes, service name of %zu)", len, slen);
        return PE_PROTOCOL;
    }
    const uint8_t *name = msg + 1 + PROTO_MAGIC_LEN + 2;
    for (size_t i = 0; i < slen; i++) {
        if (name[i] < 0x21 || name[i] > 0x7e) {
            snprintf(why, whylen, "malformed hello (service name is not printable ASCII)");
            return PE_PROTOCOL;
        }
    }
    memcpy(service, name, slen);
    service[slen] = '\0';
    if (from_server)
        memcpy(nonce, name + slen, SK_AUTH_NONCE);
    return 0;
}

const char *proto_error_name(int code)
{
    switch (code) {
    case PE_PROTOCOL: return "protocol error";
    case PE_HELLO: return "wrong protocol or service";
    case PE_AUTH: return "authentication failed";
    case PE_BUSY: return "busy";
    case PE_DENIED: return "not allowed";
    case PE_NORUN: return "could not run";
    case PE_TIMEOUT: return "timed out";
    case PE_OUTPUT: return "output limit";
    default: return "error";
    }
}

/* ---- files: a hello without a nonce (see proto.h) ---- */

size_t proto_hello_open(uint8_t *buf, const char *service)
{
    /* The client's layout typed as the server's: the server's hello less
     * its nonce, built by the same code. */
    size_t n = proto_hello(buf, false, service, NULL);
    buf[0] = PT_HELLO_SERVER;
    return n;
}

int proto_check_server_hello(const uint8_t *msg, size_t len, char *service,
                             uint8_t nonce[SK_AUTH_NONCE], bool *auth, char *why, size_t whylen)
{
    size_t base = 1 + PROTO_MAGIC_LEN + 2;
    *auth = true;
    if (len >= base && len == base + msg[base - 1] && len + SK_AUTH_NONCE <= PROTO_HELLO_MAX) {
        /* Exactly as long as its name says, with no room for a nonce:
         * checked as the same hello with a zero nonce, which is dropped. */
        uint8_t full[PROTO_HELLO_MAX];
        memcpy(full, msg, len);
        memset(full + len, 0, SK_AUTH_NONCE);
        *auth = false;
        return proto_check_hello(full, len + SK_AUTH_NONCE, true, service, nonce, why, whylen);
    }
    return proto_check_hello(msg, len, true, service, nonce, why, whylen);
}

/* ------------------------------------------------- failed authentications */

void proto_penalties_init(proto_penalties *t)
{
    memset(t->slot, 0, sizeof t->slot);
    pthread_mutex_init(&t->mu, NULL);
}

void proto_penalties_destroy(proto_penalties *t)
{
    pthread_mutex_destroy(&t->mu);
}

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

int proto_preauth_enter(proto_preauth *t, const char *peer_text, void *owner,
                        proto_evict_fn evict, proto_preauth_ticket *ticket, char *victim)
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
    sk_log(SK_LOG_WARN, "%s %s evicted: all --max-unauth slots in use, and its address "
           "holds the most", g->name, sk_conn_peer(g->conn));
    static const char text[] = "evicted: too many connections waiting to authenticate";
    uint8_t head[2] = {PT_ERROR, PE_BUSY};
    struct iovec iov[2] = {{head, 2}, {(void *)text, sizeof text - 1}};
    (void)sk_conn_send_msgv(g->conn, iov, 2);
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
        sk_log(SK_LOG_INFO, "%s %s admitted by evicting the oldest unauthenticated "
               "connection from %s (--max-unauth full)", name, sk_conn_peer(c), victim);
    /* Before authentication a stranger may send only small frames, must say
     * hello at once and finish the handshake in bounded time however it
     * trickles its bytes. */
    sk_conn_set_max_msg(c, PROTO_PREAUTH_MAX);
    uint32_t hello = handshake_ms < PROTO_HELLO_MS ? handshake_ms : PROTO_HELLO_MS;
    sk_conn_set_deadline(c, hello, "handshake timeout: no hello in time");
    return 0;
}

void proto_gate_hello(proto_gate *g)
{
    uint64_t spent = sk_loop_now(sk_conn_loop(g->conn)) - g->opened;
    uint32_t left = spent >= g->handshake_ms ? 1 : (uint32_t)(g->handshake_ms - spent);
    sk_conn_set_deadline(g->conn, left, "handshake timeout");
}

void proto_gate_close(proto_gate *g)
{
    if (g->evict == NULL)
        return;
    (void)proto_preauth_leave(g->table, &g->ticket);
    sk_async_free(g->evict);
    g->evict = NULL;
}

/* ------------------------------------------------------------ channel binding */

static int binding_result(int rc, bool *bound)
{
    *bound = rc == 0;
    return rc == -ENOPROTOOPT ? 0 : rc;
}

int proto_binding_conn(const sk_conn *c, uint8_t binding[SK_AUTH_BINDING], bool *bound)
{
    return binding_result(sk_conn_tls_exporter(c, SK_TLS_EXPORTER_LABEL, binding,
                                                SK_AUTH_BINDING), bound);
}

int proto_binding_sock(int fd, uint8_t binding[SK_AUTH_BINDING], bool *bound)
{
    return binding_result(sk_sock_tls_exporter(fd, SK_TLS_EXPORTER_LABEL, binding,
                                                SK_AUTH_BINDING), bound);
}
