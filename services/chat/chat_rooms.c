/* chat_rooms.c — the rooms of a chat server and their history. A room is
 * found by name (the nick rules, compared without ASCII case, an optional
 * leading "#" ignored), created on first use and freed when it has neither
 * members nor history; `lobby` always exists. Each room keeps its last
 * --history lines as references to the very buffers that were broadcast
 * (sk_shared), so a line in the history costs its bytes once, charged to
 * --max-memory like every queued line. The history of all rooms together
 * is held to a quarter of --max-memory, so that it can never leave the
 * members' queues without room. Not here: who is in a room and what a
 * member sees (chat.c). */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat.h"

/* Rooms a server keeps at once. Every room but idle ones holds a member, so
 * this bounds only the idle rooms kept for their history: at the limit the
 * oldest idle room is forgotten to make room for a new one. */
#define MAX_ROOMS 4096u

static const char lobby_name[] = "lobby";

/* The room name without its optional "#", or NULL if it is not a name. */
static const char *bare_name(const char *name, size_t len, size_t *bare_len)
{
    if (len > 0 && name[0] == '#') {
        name++;
        len--;
    }
    if (!chat_nick_valid(name, len))
        return NULL;
    *bare_len = len;
    return name;
}

bool chat_room_name_valid(const char *name, size_t len)
{
    size_t n;
    return bare_name(name, len, &n) != NULL;
}

chat_chan *chat_chan_find(chat_room *r, const char *name, size_t len)
{
    size_t n;
    const char *bare = bare_name(name, len, &n);
    if (bare == NULL)
        return NULL;
    for (chat_chan *c = r->chans; c != NULL; c = c->next)
        if (strlen(c->name) == n && strncasecmp(c->name, bare, n) == 0)
            return c;
    return NULL;
}

static void history_drop_oldest(chat_room *r, chat_chan *c)
{
    sk_shared *s = c->hist[c->hist_start];
    c->hist[c->hist_start] = NULL;
    c->hist_start = (c->hist_start + 1) % r->history;
    c->hist_len--;
    r->hist_bytes -= sk_shared_len(s);
    sk_shared_unref(s);
}

static void chan_free(chat_room *r, chat_chan *c)
{
    while (c->hist_len > 0)
        history_drop_oldest(r, c);
    free(c->hist);
    chat_recent_free(c);
    chat_chan **pp = &r->chans;
    while (*pp != c)
        pp = &(*pp)->next;
    *pp = c->next;
    r->nchans--;
    free(c);
}

/* Forgets the idle room (no members) that was created first, if any. */
static bool evict_idle(chat_room *r)
{
    for (chat_chan *c = r->chans; c != NULL; c = c->next) {
        if (c->joined == 0 && c->busy == 0 && c != r->lobby) {
            chan_free(r, c);
            return true;
        }
    }
    return false;
}

chat_chan *chat_chan_get(chat_room *r, const char *name, size_t len)
{
    chat_chan *c = chat_chan_find(r, name, len);
    if (c != NULL)
        return c;
    size_t n;
    const char *bare = bare_name(name, len, &n);
    if (bare == NULL)
        return NULL;
    if (r->nchans >= MAX_ROOMS && !evict_idle(r))
        return NULL;
    c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    memcpy(c->name, bare, n);
    c->name[n] = '\0';
    c->room = r;
    /* Appended: /rooms lists rooms in the order they were created. */
    chat_chan **pp = &r->chans;
    while (*pp != NULL)
        pp = &(*pp)->next;
    *pp = c;
    r->nchans++;
    return c;
}

int chat_rooms_init(chat_room *r)
{
    r->lobby = chat_chan_get(r, lobby_name, sizeof lobby_name - 1);
    return r->lobby != NULL ? 0 : -1;
}

void chat_rooms_free(chat_room *r)
{
    while (r->chans != NULL)
        chan_free(r, r->chans);
    r->lobby = NULL;
}

void chat_chan_release(chat_chan *c)
{
    chat_room *r = c->room;
    if (c->joined == 0 && c->hist_len == 0 && c->busy == 0 && c != r->lobby)
        chan_free(r, c);
}

void chat_history_add(chat_chan *c, sk_shared *s)
{
    chat_room *r = c->room;
    if (r->history == 0)
        return;
    if (c->hist == NULL) {
        c->hist = calloc(r->history, sizeof *c->hist);
        if (c->hist == NULL)
            return; /* no history for this room; its lines still go out */
    }
    if (c->hist_len == r->history)
        history_drop_oldest(r, c);
    size_t len = sk_shared_len(s);
    /* Over the rooms' share of the budget: the room with the longest
     * history gives up its oldest line (this one on a tie), so that a busy
     * room is not kept short by idle ones. A scan of the rooms, only while
     * the share is full. */
    while (r->hist_bytes + len > r->hist_max) {
        chat_chan *victim = c->hist_len > 0 ? c : NULL;
        for (chat_chan *o = r->chans; o != NULL; o = o->next)
            if (o->hist_len > (victim ? victim->hist_len : 0))
                victim = o;
        if (victim == NULL)
            return; /* the line alone is over the share */
        history_drop_oldest(r, victim);
        if (victim != c)
            chat_chan_release(victim);
    }
    c->hist[(c->hist_start + c->hist_len) % r->history] = sk_shared_ref(s);
    c->hist_len++;
    r->hist_bytes += len;
}

void chat_history_replay(chat_chan *c, sk_conn *conn)
{
    static const char mark[] = "[history] ";
    chat_room *r = c->room;
    for (unsigned i = 0; i < c->hist_len; i++) {
        sk_shared *s = c->hist[(c->hist_start + i) % r->history];
        if (sk_conn_send(conn, mark, sizeof mark - 1) < 0 ||
            sk_conn_send_shared(conn, s, 0, sk_shared_len(s)) < 0)
            return; /* closing (budget): nothing more to send it */
    }
}
