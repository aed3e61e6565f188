/* chat_cluster.c — chat servers sharing rooms through Redis (--redis). Every
 * room event (message, action, join, leave, nick change) is handed to one
 * Lua script that numbers it in its room (INCR), keeps messages in the
 * room's bounded history list and PUBLISHes it on one channel; every server,
 * the sender's included, relays it to its own members of that room only
 * when the subscription hands it back, so all members see Redis's order.
 * Nicks are keys set with NX and an expiry that the owning server renews
 * (a crashed server's nicks free themselves); each server also lists its
 * members in a hash of its own, with the same expiry, which /who and /rooms
 * read. A reply finds its member by id, never by pointer: it may have left.
 * While Redis is away, members stay, are told, and their lines are refused;
 * when it is back, each room catches up from its history (replayed, or the
 * count of lines missed). docs/DESIGN.md tells why; docs/PROTOCOL.md 8.6
 * has the lines members see. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <hiredis/hiredis.h>

#include "chat.h"
#include "chat_redis.h"

#define KEY "sockit:chat:"

/* Numbers the event in its room, keeps a message in the room's history
 * (ARGV[5] lines at most) and publishes it as "SEQ KIND ORIGIN ROOM LINE".
 * ARGV: room, kind (m: message, n: notice), origin, line, history. */
static const char pub_lua[] = "local seq = redis.call('INCR', '" KEY "room:'..ARGV[1]..':seq')\n"
                              "local n = tonumber(ARGV[5])\n"
                              "if ARGV[2] == 'm' and n > 0 then\n"
                              "  local h = '" KEY "room:'..ARGV[1]..':history'\n"
                              "  redis.call('RPUSH', h, seq..' '..ARGV[4])\n"
                              "  redis.call('LTRIM', h, -n, -1)\n"
                              "end\n"
                              "redis.call('PUBLISH', '" CHAT_REDIS_CHANNEL "', "
                              "seq..' '..ARGV[2]..' '..ARGV[3]..' '..ARGV[1]..' '..ARGV[4])\n"
                              "return seq\n";

/* Claims a nick for a server: 1, or 0 if another server holds it. Records
 * it in the server's hash. ARGV: server, lower nick, ttl ms, room, nick, the old lower nick
 * to give back ("" if none). */
static const char claim_lua[] =
    "local k = '" KEY "nick:'..ARGV[2]\n"
    "local cur = redis.call('GET', k)\n"
    "if cur and cur ~= ARGV[1] then return 0 end\n"
    "redis.call('SET', k, ARGV[1], 'PX', ARGV[3])\n"
    "local s = '" KEY "srv:'..ARGV[1]\n"
    "redis.call('HSET', s, ARGV[2], ARGV[4]..' '..ARGV[5])\n"
    "redis.call('PEXPIRE', s, ARGV[3])\n"
    "redis.call('SADD', '" KEY "servers', ARGV[1])\n"
    "if ARGV[6] ~= '' and ARGV[6] ~= ARGV[2] then\n"
    "  local o = '" KEY "nick:'..ARGV[6]\n"
    "  if redis.call('GET', o) == ARGV[1] then redis.call('DEL', o) end\n"
    "  redis.call('HDEL', s, ARGV[6])\n"
    "end\n"
    "return 1\n";

/* The next free guestN, claimed. ARGV: server, ttl ms, room. */
static const char guest_lua[] =
    "for i = 1, 1000 do\n"
    "  local name = 'guest'..redis.call('INCR', '" KEY "guest')\n"
    "  if redis.call('SET', '" KEY "nick:'..name, ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "    local s = '" KEY "srv:'..ARGV[1]\n"
    "    redis.call('HSET', s, name, ARGV[3]..' '..name)\n"
    "    redis.call('PEXPIRE', s, ARGV[2])\n"
    "    redis.call('SADD', '" KEY "servers', ARGV[1])\n"
    "    return name\n"
    "  end\n"
    "end\n"
    "return false\n";

/* Gives a nick back. ARGV: server, lower nick. */
static const char release_lua[] =
    "local k = '" KEY "nick:'..ARGV[2]\n"
    "if redis.call('GET', k) == ARGV[1] then redis.call('DEL', k) end\n"
    "redis.call('HDEL', '" KEY "srv:'..ARGV[1], ARGV[2])\n"
    "return 1\n";

/* Renews every nick of a server (and takes back those that expired while
 * it was away, unless someone else took them). ARGV: server, ttl ms, then
 * lower nick, "ROOM NICK" pairs. Entries are only added: a member's entry
 * goes with release_lua, so a renewal crossing a claim in flight (a guest
 * being granted) cannot drop it. */
static const char renew_lua[] = "local s = '" KEY "srv:'..ARGV[1]\n"
                                "for i = 3, #ARGV, 2 do\n"
                                "  local k = '" KEY "nick:'..ARGV[i]\n"
                                "  local cur = redis.call('GET', k)\n"
                                "  if not cur or cur == ARGV[1] then\n"
                                "    redis.call('SET', k, ARGV[1], 'PX', ARGV[2])\n"
                                "    redis.call('HSET', s, ARGV[i], ARGV[i + 1])\n"
                                "  end\n"
                                "end\n"
                                "redis.call('PEXPIRE', s, ARGV[2])\n"
                                "redis.call('SADD', '" KEY "servers', ARGV[1])\n"
                                "return 1\n";

/* The "ROOM NICK" entries of every live server; dead ones are forgotten. */
#define ENTRIES_LUA                                                                                \
    "local out = {}\n"                                                                             \
    "for _, id in ipairs(redis.call('SMEMBERS', '" KEY "servers')) do\n"                           \
    "  local h = redis.call('HVALS', '" KEY "srv:'..id)\n"                                         \
    "  if #h == 0 then redis.call('SREM', '" KEY "servers', id) end\n"                             \
    "  for _, v in ipairs(h) do out[#out + 1] = v end\n"                                           \
    "end\n"

/* /who: the nicks in room ARGV[1]. */
static const char who_lua[] = ENTRIES_LUA "local r = {}\n"
                                          "for _, v in ipairs(out) do\n"
                                          "  local sp = string.find(v, ' ', 1, true)\n"
                                          "  if string.sub(v, 1, sp - 1) == ARGV[1] then\n"
                                          "    r[#r + 1] = string.sub(v, sp + 1) end\n"
                                          "end\n"
                                          "return r\n";

/* /rooms: room, count, room, count... */
static const char rooms_lua[] =
    ENTRIES_LUA "local c, order = {}, {}\n"
                "for _, v in ipairs(out) do\n"
                "  local sp = string.find(v, ' ', 1, true)\n"
                "  local room = string.sub(v, 1, sp - 1)\n"
                "  if not c[room] then c[room] = 0; order[#order + 1] = room end\n"
                "  c[room] = c[room] + 1\n"
                "end\n"
                "local r = {}\n"
                "for _, room in ipairs(order) do\n"
                "  r[#r + 1] = room; r[#r + 1] = tostring(c[room]) end\n"
                "return r\n";

/* A room's last seq, its member count and its history ("SEQ LINE", oldest
 * first). ARGV: room. */
static const char hist_lua[] = ENTRIES_LUA
    "local n = 0\n"
    "for _, v in ipairs(out) do\n"
    "  local sp = string.find(v, ' ', 1, true)\n"
    "  if string.sub(v, 1, sp - 1) == ARGV[1] then n = n + 1 end\n"
    "end\n"
    "local seq = tonumber(redis.call('GET', '" KEY "room:'..ARGV[1]..':seq') or '0')\n"
    "return {seq, n, redis.call('LRANGE', '" KEY "room:'..ARGV[1]..':history', 0, -1)}\n";

/* /msg: publishes "0 p ORIGIN NICK LINE" if NICK is held; 1 or 0. ARGV:
 * lower nick, origin, line. */
static const char msg_lua[] =
    "if redis.call('EXISTS', '" KEY "nick:'..ARGV[1]) == 0 then return 0 end\n"
    "redis.call('PUBLISH', '" CHAT_REDIS_CHANNEL "', '0 p '..ARGV[2]..' '..ARGV[1]..' '..ARGV[3])\n"
    "return 1\n";

/* ------------------------------------------------------------- helpers */

enum req_kind { R_GUEST, R_CLAIM, R_WHO, R_ROOMS, R_HIST, R_MSG, R_CATCHUP, R_NONE };

typedef struct req {
    chat_room *room;
    enum req_kind kind;
    uint64_t member; /* its id; 0: none */
    chat_chan *chan; /* R_CATCHUP (pinned: chan->busy) */
    char name[CHAT_NICK_MAX + 1];
} req;

static void lower_copy(char *dst, const char *src, size_t len)
{
    for (size_t i = 0; i < len; i++)
        dst[i] = (src[i] >= 'A' && src[i] <= 'Z') ? (char)(src[i] + 32) : src[i];
    dst[len] = '\0';
}

static member *by_id(chat_room *r, uint64_t id)
{
    for (member *m = r->head; m != NULL; m = m->next)
        if (m->id == id)
            return m;
    return NULL;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv);

/* Runs a script with argc string arguments; the reply goes to on_reply. */
static int eval(chat_room *r, const char *lua, req *q, int argc, const char **argv,
                const size_t *lens)
{
    const char *av[64];
    size_t al[64];
    if (argc > 60)
        return -1;
    av[0] = "EVAL";
    al[0] = 4;
    av[1] = lua;
    al[1] = strlen(lua);
    av[2] = "0";
    al[2] = 1;
    for (int i = 0; i < argc; i++) {
        av[3 + i] = argv[i];
        al[3 + i] = lens ? lens[i] : strlen(argv[i]);
    }
    int rc = chat_redis_argv(r->redis, q ? on_reply : NULL, q, argc + 3, av, al);
    if (rc < 0)
        free(q);
    return rc;
}

static req *new_req(chat_room *r, enum req_kind kind, const member *m)
{
    req *q = calloc(1, sizeof *q);
    if (q == NULL)
        return NULL;
    q->room = r;
    q->kind = kind;
    q->member = m ? m->id : 0;
    return q;
}

static void origin_of(const chat_room *r, const member *m, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%llu", r->srvid, (unsigned long long)(m ? m->id : 0));
}

static void ttl_text(const chat_room *r, char *buf, size_t len)
{
    snprintf(buf, len, "%u", r->nick_ttl_ms);
}

/* ------------------------------------------------------------- publish */

bool chat_cluster_publish(chat_chan *c, const member *from, bool message, const void *line,
                          size_t len)
{
    chat_room *r = c->room;
    if (!chat_redis_up(r->redis) || chat_redis_busy(r->redis))
        return false;
    char room[CHAT_NICK_MAX + 1], origin[64], hist[16];
    lower_copy(room, c->name, strlen(c->name));
    origin_of(r, from, origin, sizeof origin);
    snprintf(hist, sizeof hist, "%u", r->history);
    const char *argv[5] = {room, message ? "m" : "n", origin, line, hist};
    size_t lens[5] = {strlen(room), 1, strlen(origin), len, strlen(hist)};
    return eval(r, pub_lua, NULL, 5, argv, lens) == 0;
}

/* Records what the member is in Redis (its nick and its room). */
static void claim(chat_room *r, const member *m, req *q)
{
    char low[CHAT_NICK_MAX + 1], ttl[16], room[CHAT_NICK_MAX + 1];
    const char *nick = q ? q->name : m->nick;
    lower_copy(low, nick, strlen(nick));
    lower_copy(room, m->chan ? m->chan->name : "lobby", strlen(m->chan ? m->chan->name : "lobby"));
    ttl_text(r, ttl, sizeof ttl);
    /* A rename gives the old nick back in the same step, so that no
     * /who sees both. */
    char old[CHAT_NICK_MAX + 1] = "";
    if (q != NULL)
        lower_copy(old, m->nick, strlen(m->nick));
    const char *argv[6] = {r->srvid, low, ttl, room, nick, old};
    (void)eval(r, claim_lua, q, 6, argv, NULL);
}

static void release(chat_room *r, const char *nick)
{
    char low[CHAT_NICK_MAX + 1];
    lower_copy(low, nick, strlen(nick));
    const char *argv[2] = {r->srvid, low};
    if (eval(r, release_lua, NULL, 2, argv, NULL) == 0)
        return;
    /* Redis away: given back when it returns (the nick key expires anyway;
     * the entry in this server's list would not). Beyond the bound, only
     * the entry outlives its member, until this server stops. */
    if (r->unreleased != NULL && r->unreleased_len < CHAT_UNRELEASED_MAX)
        memcpy(r->unreleased[r->unreleased_len++], nick, strlen(nick) + 1);
}

/* ------------------------------------------------------- member events */

void chat_cluster_arrive(member *m)
{
    chat_room *r = m->room;
    if (chat_redis_up(r->redis)) {
        req *q = new_req(r, R_GUEST, m);
        char ttl[16];
        ttl_text(r, ttl, sizeof ttl);
        const char *argv[3] = {r->srvid, ttl, "lobby"};
        if (q != NULL && eval(r, guest_lua, q, 3, argv, NULL) == 0) {
            m->waiting = true;
            sk_conn_pause(m->conn); /* nothing it says counts before its nick */
            return;
        }
    }
    /* Redis away: a nick no other server can be giving out (this server's
     * own numbers), claimed when Redis is back. */
    snprintf(m->nick, sizeof m->nick, "guest%u%03llu", r->srvnum,
             (unsigned long long)r->next_guest++ % 1000000000ull);
    chat_arrived(m);
}

void chat_cluster_enter(member *m, chat_chan *c)
{
    chat_room *r = m->room;
    m->catching_up = true;
    c->busy++;
    claim(r, m, NULL); /* its new room, before the count is read */
    req *q = new_req(r, R_HIST, m);
    char room[CHAT_NICK_MAX + 1];
    lower_copy(room, c->name, strlen(c->name));
    const char *argv[1] = {room};
    if (q != NULL) {
        q->chan = c;
        if (eval(r, hist_lua, q, 1, argv, NULL) == 0)
            return;
    }
    c->busy--;
    m->catching_up = false;
    chat_entered(m, c->joined);
}

void chat_cluster_leave(member *m) { release(m->room, m->nick); }

void chat_cluster_rename(member *m, const char *name, size_t len)
{
    req *q = new_req(m->room, R_CLAIM, m);
    if (q == NULL)
        return;
    memcpy(q->name, name, len);
    q->name[len] = '\0';
    /* Its next lines wait for the answer, so that they carry the new nick
     * and follow the rename in every order. */
    m->waiting = true;
    memcpy(m->claiming, q->name, len + 1);
    sk_conn_pause(m->conn);
    claim(m->room, m, q);
}

void chat_cluster_who(member *m)
{
    char room[CHAT_NICK_MAX + 1];
    lower_copy(room, m->chan->name, strlen(m->chan->name));
    const char *argv[1] = {room};
    (void)eval(m->room, who_lua, new_req(m->room, R_WHO, m), 1, argv, NULL);
}

void chat_cluster_rooms(member *m)
{
    (void)eval(m->room, rooms_lua, new_req(m->room, R_ROOMS, m), 0, NULL, NULL);
}

void chat_cluster_msg(member *m, const char *nick, size_t nl, const void *line, size_t len)
{
    chat_room *r = m->room;
    req *q = new_req(r, R_MSG, m);
    if (q == NULL)
        return;
    lower_copy(q->name, nick, nl);
    char origin[64];
    origin_of(r, m, origin, sizeof origin);
    const char *argv[3] = {q->name, origin, line};
    size_t lens[3] = {nl, strlen(origin), len};
    memcpy(q->name, nick, nl); /* shown as typed in a refusal */
    q->name[nl] = '\0';
    (void)eval(r, msg_lua, q, 3, argv, lens);
}

/* Every local member's nick and room, renewed (or claimed again). */
static void renew(chat_room *r)
{
    if (!chat_redis_up(r->redis))
        return;
    size_t n = 0;
    for (member *m = r->head; m != NULL; m = m->next)
        n += m->in_room ? 1 + (m->claiming[0] != 0) : 0;
    const char **argv = calloc(2 + 2 * n, sizeof *argv);
    char *store = malloc(n * 2 * (CHAT_NICK_MAX + 1) * 2 + 1);
    char ttl[16];
    if (argv == NULL || store == NULL) {
        free(argv);
        free(store);
        return;
    }
    ttl_text(r, ttl, sizeof ttl);
    argv[0] = r->srvid;
    argv[1] = ttl;
    size_t k = 2;
    char *p = store;
    /* A nick being claimed is listed too: this renewal replaces the
     * server's whole list, and may land between the claim and its answer. */
    for (member *m = r->head; m != NULL; m = m->next) {
        for (int which = 0; m->in_room && which < 2; which++) {
            const char *nick = which ? m->claiming : m->nick;
            if (nick[0] == '\0')
                continue;
            size_t nl = strlen(nick);
            lower_copy(p, nick, nl);
            argv[k++] = p;
            p += nl + 1;
            char room[CHAT_NICK_MAX + 1];
            lower_copy(room, m->chan->name, strlen(m->chan->name));
            p[0] = '\0';
            strcat(strcat(strcat(p, room), " "), nick);
            argv[k++] = p;
            p += strlen(p) + 1;
        }
    }
    /* EVAL's argv array: the script's own and these. */
    const char **av = calloc(k + 3, sizeof *av);
    size_t *al = calloc(k + 3, sizeof *al);
    if (av != NULL && al != NULL) {
        av[0] = "EVAL";
        av[1] = renew_lua;
        av[2] = "0";
        for (size_t i = 0; i < k; i++)
            av[3 + i] = argv[i];
        for (size_t i = 0; i < k + 3; i++)
            al[i] = strlen(av[i]);
        (void)chat_redis_argv(r->redis, NULL, NULL, (int)(k + 3), av, al);
    }
    free(av);
    free(al);
    free(argv);
    free(store);
}

static void renew_tick(sk_timer *t, void *ud)
{
    (void)t;
    renew(ud);
}

/* ------------------------------------------------------------- replies */

/* "SEQ LINE" entries of a history reply, replayed to m (or every member
 * of c when m is NULL) if after `after` and up to `upto`; returns how many. */
static unsigned replay(chat_chan *c, member *m, const redisReply *list, uint64_t after,
                       uint64_t upto, uint64_t *first)
{
    unsigned n = 0;
    *first = 0;
    for (size_t i = 0; list && i < list->elements; i++) {
        const redisReply *e = list->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        char *sp = memchr(e->str, ' ', e->len);
        if (sp == NULL)
            continue;
        uint64_t seq = strtoull(e->str, NULL, 10);
        if (seq <= after || seq > upto)
            continue;
        if (*first == 0)
            *first = seq;
        chat_replay_line(c, m, sp + 1, e->len - (size_t)(sp + 1 - e->str));
        n++;
    }
    return n;
}

static void reply_hist(req *q, const redisReply *rep)
{
    chat_room *r = q->room;
    chat_chan *c = q->chan;
    c->busy--;
    member *m = by_id(r, q->member);
    if (m == NULL || m->chan != c) {
        chat_chan_release(c);
        return;
    }
    m->catching_up = false;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) {
        chat_entered(m, c->joined);
        return;
    }
    uint64_t seq = (uint64_t)rep->element[0]->integer;
    unsigned count = (unsigned)rep->element[1]->integer;
    m->min_seq = seq;
    if (c->seq == 0 && c->joined == 1)
        c->seq = seq; /* its first member here: the room starts now */
    chat_entered(m, count ? count : c->joined);
    uint64_t first;
    replay(c, m, rep->element[2], 0, seq, &first);
    chat_recent_flush(c, m, seq);
}

static void reply_catchup(req *q, const redisReply *rep)
{
    chat_chan *c = q->chan;
    c->busy--;
    c->catching_up = false;
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) {
        chat_chan_release(c);
        return;
    }
    uint64_t seq = (uint64_t)rep->element[0]->integer;
    if (seq < c->seq) {
        chat_chan_notice(c, "*** the chat network restarted: earlier lines of %s are gone",
                         c->name);
        /* Numbers start again: what members got in their history before
         * says nothing about the new ones. */
        for (member *m = c->head; m != NULL; m = m->cnext)
            if (m->min_seq > seq)
                m->min_seq = seq;
    } else if (seq > c->seq) {
        uint64_t first;
        unsigned got = replay(c, NULL, rep->element[2], c->seq, seq, &first);
        uint64_t missed = seq - c->seq - got;
        /* Notices (joins, leaves) are numbered too, but only messages are
         * kept: "missed" counts what could not be replayed. */
        if (missed > 0)
            chat_chan_notice(c,
                             "*** %llu line%s of %s (messages or notices) were missed while the "
                             "chat network was unavailable",
                             (unsigned long long)missed, missed == 1 ? "" : "s", c->name);
    }
    c->seq = seq;
    chat_recent_flush(c, NULL, seq);
    chat_chan_release(c);
}

static void tell_items(member *m, bool who, const redisReply *rep)
{
    const char **items = calloc(rep->elements + 1, sizeof *items);
    size_t *lens = calloc(rep->elements + 1, sizeof *lens);
    size_t n = 0;
    for (size_t i = 0; items && lens && i < rep->elements; i++) {
        if (rep->element[i]->type != REDIS_REPLY_STRING)
            continue;
        items[n] = rep->element[i]->str;
        lens[n++] = rep->element[i]->len;
    }
    if (items && lens)
        chat_tell_items(m, who, items, lens, n);
    free(items);
    free(lens);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    req *q = priv;
    chat_room *r = q->room;
    if (r->stopping) { /* the link is being freed: nothing to answer */
        if (q->chan)
            q->chan->busy--;
        free(q);
        return;
    }
    redisReply *rep = reply;
    member *m = q->member ? by_id(r, q->member) : NULL;
    switch (q->kind) {
    case R_GUEST:
        if (m == NULL) {
            if (rep && rep->type == REDIS_REPLY_STRING)
                release(r, rep->str);
            break;
        }
        m->waiting = false;
        sk_conn_resume(m->conn);
        if (rep && rep->type == REDIS_REPLY_STRING && rep->len <= CHAT_NICK_MAX) {
            memcpy(m->nick, rep->str, rep->len);
            m->nick[rep->len] = '\0';
        } else {
            snprintf(m->nick, sizeof m->nick, "guest%u%03llu", r->srvnum,
                     (unsigned long long)r->next_guest++ % 1000000000ull);
        }
        chat_arrived(m);
        break;
    case R_CLAIM:
        if (m == NULL || !m->in_room) {
            if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1)
                release(r, q->name);
            break;
        }
        m->claiming[0] = '\0';
        if (rep == NULL || rep->type != REDIS_REPLY_INTEGER)
            chat_tell_line(m, "*** error: the chat network did not answer; try again");
        else if (rep->integer == 0)
            chat_tell_linef(m, "*** error: nick %s is taken", q->name);
        else
            chat_renamed(m, q->name);
        chat_input_resume(m); /* its next lines, after the rename */
        break;
    case R_WHO:
    case R_ROOMS:
        if (m == NULL || !m->in_room)
            break;
        if (rep == NULL || rep->type != REDIS_REPLY_ARRAY) {
            chat_tell_line(m, "*** error: the chat network did not answer; try again");
            break;
        }
        tell_items(m, q->kind == R_WHO, rep);
        break;
    case R_MSG:
        if (m == NULL || !m->in_room)
            break;
        if (rep == NULL || rep->type != REDIS_REPLY_INTEGER)
            chat_tell_line(m, "*** error: the chat network did not answer; your line was not "
                              "delivered");
        else if (rep->integer == 0)
            chat_tell_linef(m, "*** error: no such nick %s", q->name);
        break;
    case R_HIST: reply_hist(q, rep); break;
    case R_CATCHUP: reply_catchup(q, rep); break;
    case R_NONE: break;
    }
    free(q);
}

/* ------------------------------------------------------ recent events */

/* The last room events relayed, kept for a member (or a room) whose
 * history request is in flight: the subscription may hand over events
 * newer than that history before its reply arrives. */
#define RECENT 64

struct chat_recent {
    uint64_t seq, from;
    sk_shared *line; /* with its "\n" */
};

void chat_recent_add(chat_chan *c, uint64_t seq, uint64_t from, const char *line, size_t len)
{
    if (c->recent == NULL) {
        c->recent = calloc(RECENT, sizeof *c->recent);
        if (c->recent == NULL)
            return;
    }
    sk_shared *s = NULL;
    if (sk_shared_new(len + 1, &s) < 0)
        return;
    memcpy(sk_shared_data(s), line, len);
    sk_shared_data(s)[len] = '\n';
    if (c->recent_len == RECENT) {
        sk_shared_unref(c->recent[c->recent_start].line);
        c->recent_start = (c->recent_start + 1) % RECENT;
        c->recent_len--;
    }
    chat_recent *e = &c->recent[(c->recent_start + c->recent_len++) % RECENT];
    e->seq = seq;
    e->from = from;
    e->line = s;
}

void chat_recent_flush(chat_chan *c, member *m, uint64_t seq)
{
    for (unsigned i = 0; i < c->recent_len; i++) {
        chat_recent *e = &c->recent[(c->recent_start + i) % RECENT];
        if (e->seq <= seq)
            continue;
        if (m != NULL) {
            if (e->from != m->id)
                chat_tell_raw(m, (const char *)sk_shared_data(e->line), sk_shared_len(e->line) - 1);
            if (e->seq > m->min_seq)
                m->min_seq = e->seq;
        } else {
            chat_deliver(c, e->seq, e->from, (const char *)sk_shared_data(e->line),
                         sk_shared_len(e->line) - 1);
            if (e->seq > c->seq)
                c->seq = e->seq;
        }
    }
}

void chat_recent_free(chat_chan *c)
{
    for (unsigned i = 0; c->recent && i < c->recent_len; i++)
        sk_shared_unref(c->recent[(c->recent_start + i) % RECENT].line);
    free(c->recent);
    c->recent = NULL;
    c->recent_len = c->recent_start = 0;
}

/* ------------------------------------------------------------- channel */

/* "SEQ KIND SERVER:MEMBER ROOM LINE" from the subscription. */
static void on_message(chat_room *r, const char *msg, size_t len)
{
    char kind = 0, origin[64], room[CHAT_NICK_MAX + 1];
    unsigned long long seq = 0;
    int used = 0;
    if (sscanf(msg, "%llu %c %63s %32s %n", &seq, &kind, origin, room, &used) < 4 || used <= 0 ||
        (size_t)used > len)
        return;
    const char *line = msg + used;
    size_t ll = len - (size_t)used;
    char *colon = strchr(origin, ':');
    if (colon == NULL)
        return;
    *colon = '\0';
    uint64_t from = strcmp(origin, r->srvid) == 0 ? strtoull(colon + 1, NULL, 10) : 0;
    if (kind == 'p') {
        member *to = chat_nick_find(r, room, strlen(room));
        if (to != NULL && to->in_room)
            chat_tell_raw(to, line, ll);
        return;
    }
    chat_chan *c = chat_chan_find(r, room, strlen(room));
    if (c == NULL)
        return; /* no member here */
    chat_recent_add(c, seq, from, line, ll);
    if (c->catching_up || seq <= c->seq)
        return;
    c->seq = seq;
    chat_deliver(c, seq, from, line, ll);
}

/* ------------------------------------------------------------- up/down */

static void link_up(chat_room *r)
{
    unsigned n = r->unreleased_len;
    r->unreleased_len = 0;
    for (unsigned i = 0; i < n; i++)
        if (chat_nick_find(r, r->unreleased[i], strlen(r->unreleased[i])) == NULL)
            release(r, r->unreleased[i]);
    renew(r);
    for (chat_chan *c = r->chans; c != NULL; c = c->next) {
        if (c->joined == 0 || !c->was_cut)
            continue;
        c->was_cut = false;
        req *q = new_req(r, R_CATCHUP, NULL);
        char room[CHAT_NICK_MAX + 1];
        lower_copy(room, c->name, strlen(c->name));
        const char *argv[1] = {room};
        if (q == NULL)
            continue;
        q->chan = c;
        c->busy++;
        c->catching_up = true;
        if (eval(r, hist_lua, q, 1, argv, NULL) < 0) {
            c->busy--;
            c->catching_up = false;
        }
    }
    for (member *m = r->head; m != NULL; m = m->next)
        if (m->in_room && m->told_cut) {
            m->told_cut = false;
            chat_tell_line(m, "*** the chat network is back; lines are delivered again");
        }
}

static void link_down(chat_room *r)
{
    /* What was kept was relayed; after the outage only newer events count
     * (Redis may even come back numbering from 1). */
    for (chat_chan *c = r->chans; c != NULL; c = c->next) {
        c->was_cut = true;
        chat_recent_free(c);
    }
    for (member *m = r->head; m != NULL; m = m->next)
        if (m->in_room) {
            m->told_cut = true;
            chat_tell_line(m, "*** the chat network (Redis) is unavailable; lines you send are "
                              "refused until it is back");
        }
}

/* ------------------------------------------------------------- lifetime */

int chat_cluster_start(chat_room *r, const char *url, const char *password_file,
                       uint32_t nick_ttl_ms, char *err, size_t errlen)
{
    uint32_t rnd[2] = {0, 0};
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        snprintf(err, errlen, "no random numbers for a server id");
        return -1;
    }
    snprintf(r->srvid, sizeof r->srvid, "%08x%08x", rnd[0], rnd[1]);
    /* Guest numbers of its own, for members who arrive while Redis is
     * away: guest<srvnum><n>, unlike any INCR'd guestN soon. */
    r->srvnum = 100 + rnd[0] % 900;
    r->nick_ttl_ms = nick_ttl_ms;
    r->unreleased = calloc(CHAT_UNRELEASED_MAX, sizeof *r->unreleased);
    if (r->unreleased == NULL || sk_timer_new(r->loop, renew_tick, r, &r->renew_timer) < 0) {
        free(r->unreleased);
        r->unreleased = NULL;
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    uint32_t every = nick_ttl_ms / 3 ? nick_ttl_ms / 3 : 1;
    sk_timer_start(r->renew_timer, every, every);
    chat_redis_events ev = {.up = link_up, .down = link_down, .message = on_message};
    if (chat_redis_start(r, url, password_file, &ev, &r->redis, err, errlen) < 0) {
        sk_timer_free(r->renew_timer);
        r->renew_timer = NULL;
        free(r->unreleased);
        r->unreleased = NULL;
        return -1;
    }
    return 0;
}

void chat_cluster_stop(chat_room *r, bool loop_alive)
{
    if (r->redis == NULL)
        return;
    r->stopping = true;
    chat_redis_stop(r->redis, loop_alive);
    r->redis = NULL;
    sk_timer_free(r->renew_timer);
    r->renew_timer = NULL;
    free(r->unreleased);
    r->unreleased = NULL;
}
