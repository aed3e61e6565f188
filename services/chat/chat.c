/* chat.c — the chat room: a line-based room that works from nc,
 * telnet and `sockit chat`. One loop owns a room, so the order in which that
 * loop handles lines is the one order every member sees. A broadcast line is
 * stored once (sk_shared) and queued by reference on every member; a member
 * whose queue passes --max-queue is dropped, the room goes on.
 *
 * Backpressure: a line that leaves some member's queue above the room's
 * high-water mark (a quarter of --max-queue) pauses the reading of its
 * sender, and every paused sender resumes once all queues are back under
 * the low-water mark. So a flood is slowed to what the slowest reader takes,
 * instead of getting the readers dropped. A member whose queue stays above
 * the low mark for STALL_MS while senders wait for it (it does not read, or
 * far too slowly to let anyone speak) is stalled: it no longer holds the
 * room back, so its queue grows with the room's lines until it passes
 * --max-queue and it is dropped; it stops being stalled if it drains. A member over --max-rate is
 * paused too, until its allowance has room for a line again.
 *
 * Rooms: every member is in one room (lobby first); a line goes to the
 * members of its sender's room, and everything above holds per room: the
 * water marks and the stall are measured among a room's members.
 *
 * Not here: how members' lines are split (chat_input.c), the nick table
 * (chat_nicks.c), rooms by name and their history (chat_rooms.c). The exact line protocol is in
 * docs/PROTOCOL.md. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chat.h"

/* How long a dropped member gets to read the notice that it is being
 * dropped (and what was queued before it) before its connection goes. */
#define DROP_GRACE_MS 2000
/* A refused line over --max-rate is answered at most this often, so that
 * refusing a flood does not become a flood of refusals. */
#define RATE_NOTICE_MS 1000
/* Refused lines (since the last notice) that make a member a flooder whose
 * reading is paused: more than a paste that went over the allowance. */
#define RATE_PAUSE_AFTER 64
/* /who answers in lines of at most about this many bytes. */
#define WHO_LINE 1000
/* While a member's reading is paused, queues and rates are checked this
 * often: a reader draining at 20 MB/s empties a 256 KiB backlog in ~12 ms. */
#define HOLD_TICK_MS 10
/* A reader whose queue stays above the low mark this long, with senders
 * paused for it, stops holding them (it is stalled): it would hold up the
 * whole room. */
#define STALL_MS 3000

/* The room's water marks, from --max-queue: one read (64 KiB) of a flood
 * can land on top of the high mark before its sender's pause takes hold,
 * which stays well under --max-queue for its default. */
static size_t high_mark(const chat_room *r) { return r->ctx->max_queue / 4; }

static size_t low_mark(const chat_room *r) { return r->ctx->max_queue / 16; }

static const char help_line[] =
    "*** commands: /nick NAME (change your nick: 1-32 of A-Z a-z 0-9 _ -), /join ROOM (go to "
    "a room, made on first use), /part (back to lobby), /rooms (rooms and member counts), "
    "/who (this room's members), /msg NICK TEXT (a private line), /me TEXT (an action), "
    "/quit (leave), /help (this); any other line goes to everyone in your room "
    "(start it with // to send a line that begins with /)";

/* ------------------------------------------------------------ sending */

/* Queues a line for one member only (copied: private lines are few). */
static void tell(member *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tell(member *m, const char *fmt, ...)
{
    char line[1200];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* A failure closed the connection already (budget) or it is closing. */
    (void)sk_conn_send(m->conn, line, (size_t)n);
    chat_check_queue(m);
}

void chat_check_queue(member *m)
{
    chat_room *r = m->room;
    if (m->dropping || !m->in_room || sk_conn_queued(m->conn) <= r->ctx->max_queue)
        return;
    m->dropping = true;
    m->drop_next = r->drops;
    r->drops = m;
}

/* Drops every member whose queue passed the limit during the last
 * broadcast. Their leave lines are broadcasts too and may drop more, so this
 * runs until none is left — never inside a broadcast, whose order the leave
 * lines would break. */
void chat_run_drops(chat_room *r)
{
    if (r->broadcasting)
        return;
    while (r->drops) {
        member *m = r->drops;
        r->drops = m->drop_next;
        m->drop_next = NULL;
        char reason[120];
        snprintf(reason, sizeof reason, "dropped: more than %zu bytes queued (not reading)",
                 r->ctx->max_queue);
        /* Best effort: the notice waits behind what the member did not read;
         * the grace period bounds how long its queue is kept. */
        char line[200];
        int n = snprintf(line, sizeof line,
                         "*** disconnected: you are not reading; more than %zu bytes were waiting "
                         "for you\n",
                         r->ctx->max_queue);
        (void)sk_conn_send(m->conn, line, (size_t)n);
        sk_conn_set_deadline(m->conn, DROP_GRACE_MS, "dropped: output queue full");
        sk_conn_fail(m->conn, -ENOBUFS, reason);
        chat_leave(m, "dropped: not reading");
    }
}

/* Queues the whole line s on every member of c but `except` (and, for a
 * room event from Redis numbered seq, those who got it in their history or
 * wait for it). */
static bool broadcast_seq(chat_chan *c, const member *except, sk_shared *s, uint64_t seq)
{
    chat_room *r = c->room;
    size_t len = sk_shared_len(s);
    bool backed_up = false;
    size_t high = high_mark(r);
    r->broadcasting++;
    for (member *m = c->head; m != NULL; m = m->cnext) {
        if (!m->in_room || m->dropping || m == except)
            continue;
        if (seq != 0 && (m->catching_up || m->min_seq >= seq))
            continue;
        if (sk_conn_send_shared(m->conn, s, 0, len) == 0) {
            chat_check_queue(m);
            size_t q = sk_conn_queued(m->conn);
            if (m->stalled && q <= low_mark(r))
                m->stalled = false; /* it reads again */
            backed_up |= !m->dropping && !m->stalled && q > high;
        }
    }
    r->broadcasting--;
    chat_run_drops(r);
    return backed_up;
}

static bool broadcast_shared(chat_chan *c, const member *except, sk_shared *s)
{
    return broadcast_seq(c, except, s, 0);
}

/* The parts + "\n" in one new shared buffer; NULL (logged) out of budget. */
static sk_shared *make_line(chat_room *r, const chat_part *parts, int nparts)
{
    size_t len = 1; /* the "\n" */
    for (int i = 0; i < nparts; i++)
        len += parts[i].len;
    sk_shared *s = NULL;
    int err = sk_shared_new(len, &s);
    if (err < 0) {
        /* Out of budget: this line is lost for everyone alike, so the order
         * still holds. Logged at most once a second. */
        if (sk_loop_now(r->loop) - r->oom_logged_at >= 1000) {
            r->oom_logged_at = sk_loop_now(r->loop);
            sk_log(SK_LOG_WARN, "%s: a broadcast line was dropped: %s", r->ctx->name,
                   sk_strerror(err));
        }
        return NULL;
    }
    uint8_t *p = sk_shared_data(s);
    for (int i = 0; i < nparts; i++) {
        if (parts[i].len)
            memcpy(p, parts[i].data, parts[i].len);
        p += parts[i].len;
    }
    *p = '\n';
    return s;
}

bool chat_broadcast(chat_chan *c, const member *except, const chat_part *parts, int nparts)
{
    sk_shared *s = make_line(c->room, parts, nparts);
    if (s == NULL)
        return false;
    if (c->room->redis != NULL) {
        /* Relayed here, too, only as it comes back from Redis. */
        (void)chat_cluster_publish(c, except, false, sk_shared_data(s), sk_shared_len(s) - 1);
        sk_shared_unref(s);
        return false;
    }
    bool backed_up = broadcast_shared(c, except, s);
    sk_shared_unref(s);
    return backed_up;
}

/* -------------------------------------------------------- backpressure */

/* Pauses or resumes m's reading to match its state. */
static void update_pause(member *m)
{
    bool want = m->in_room && (m->held || m->rate_until != 0);
    if (want == m->paused)
        return;
    m->paused = want;
    if (want) {
        sk_conn_pause(m->conn);
        if (!sk_timer_active(m->room->hold_timer))
            sk_timer_start(m->room->hold_timer, HOLD_TICK_MS, HOLD_TICK_MS);
    } else {
        sk_conn_resume(m->conn);
    }
}

/* Every HOLD_TICK_MS while some member is paused: marks stalled the readers
 * whose queue has stayed over the low mark for STALL_MS (they alone keep the
 * held senders held: one that reads at all gets under it, as the senders
 * wait for just that), releases the held senders once every other queue is
 * under the low mark, and rate-paused members once their time has come.
 * Stops itself when no member is paused. */
static void hold_tick(sk_timer *t, void *ud)
{
    chat_room *r = ud;
    uint64_t now = sk_loop_now(r->loop);
    size_t low = low_mark(r);
    for (chat_chan *c = r->chans; c != NULL; c = c->next)
        c->worst = 0;
    for (member *m = r->head; m != NULL; m = m->next) {
        if (!m->in_room || m->dropping)
            continue;
        size_t q = sk_conn_queued(m->conn);
        if (q <= low) {
            m->over_since = 0;
            m->stalled = false;
        } else if (m->over_since == 0) {
            m->over_since = now;
        } else if (!m->stalled && now - m->over_since >= STALL_MS) {
            m->stalled = true;
            sk_log(SK_LOG_DEBUG,
                   "%s: %s (%s) stalled: %zu bytes queued for %d ms; no longer "
                   "waited for",
                   r->ctx->name, m->nick, sk_conn_peer(m->conn), q, STALL_MS);
        }
        if (!m->stalled && q > m->chan->worst)
            m->chan->worst = q;
    }
    bool any = false;
    for (member *m = r->head; m != NULL; m = m->next) {
        /* Held by its own room only (one that left is no longer held). */
        if (m->held && (m->chan == NULL || m->chan->worst <= low))
            m->held = false;
        if (m->rate_until != 0 && now >= m->rate_until)
            m->rate_until = 0;
        update_pause(m);
        any |= m->paused;
    }
    if (any)
        return;
    /* Unwatched from now on: a later hold starts the count afresh. */
    for (member *m = r->head; m != NULL; m = m->next)
        m->over_since = 0;
    sk_timer_stop(t);
}

/* A notice to everyone in c but `except`: "*** " + text. */
static void announce(chat_chan *c, const member *except, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void announce(chat_chan *c, const member *except, const char *fmt, ...)
{
    char text[300];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof text)
        n = (int)sizeof text - 1;
    chat_part parts[2] = {{"*** ", 4}, {text, (size_t)n}};
    chat_broadcast(c, except, parts, 2);
}

/* ------------------------------------------------------ room events */

/* Every change the room announces passes through these four functions: the
 * seam where servers sharing a room through Redis (docs/DESIGN.md) would
 * publish the event and apply it when Redis hands it back. */

/* A member's text with its controls replaced (chat_text.c), in place or in
 * the room's scratch buffer; false out of memory. */
static bool clean_text(chat_room *r, const uint8_t **text, size_t *len)
{
    if (chat_text_clean(*text, *len))
        return true;
    /* Lines are at most --max-line long, so one buffer, grown to the
     * longest line seen, serves every line of the room. */
    size_t need = CHAT_TEXT_GROWTH * *len;
    if (need > r->scratch_cap) {
        uint8_t *p = realloc(r->scratch, need);
        if (p == NULL)
            return false;
        r->scratch = p;
        r->scratch_cap = need;
    }
    *len = chat_text_sanitize(*text, *len, r->scratch);
    *text = r->scratch;
    return true;
}

/* Relays a member's text to its room and keeps it in the room's history;
 * true if it left some queue above the high mark. */
static bool chat_apply_message(chat_chan *c, const member *from, const char *nick, size_t nick_len,
                               const uint8_t *text, size_t len, bool action)
{
    chat_room *r = c->room;
    if (!clean_text(r, &text, &len))
        return false; /* lost for everyone alike, as a broadcast out of budget */
    sk_shared *s;
    if (action) {
        chat_part parts[4] = {{"* ", 2}, {nick, nick_len}, {" ", 1}, {text, len}};
        s = make_line(r, parts, 4);
    } else {
        chat_part parts[3] = {{nick, nick_len}, {": ", 2}, {text, len}};
        s = make_line(r, parts, 3);
    }
    if (s == NULL)
        return false;
    if (r->redis != NULL) {
        if (!chat_cluster_publish(c, from, true, sk_shared_data(s), sk_shared_len(s) - 1))
            tell((member *)from, "*** error: the chat network (Redis) is unavailable; your line "
                                 "was not delivered");
        sk_shared_unref(s);
        return false; /* a sender is held when its line comes back (chat_deliver) */
    }
    chat_history_add(c, s);
    bool backed_up = broadcast_shared(c, from, s);
    sk_shared_unref(s);
    return backed_up;
}

static void chat_apply_join(chat_chan *c, const member *who, const char *nick)
{
    announce(c, who, "%s joined", nick);
}

static void chat_apply_leave(chat_chan *c, const char *nick, const char *why)
{
    if (c->room->closing)
        return; /* everyone is leaving: no one to tell */
    if (why != NULL)
        announce(c, NULL, "%s left (%s)", nick, why);
    else
        announce(c, NULL, "%s left", nick);
}

static void chat_apply_rename(chat_chan *c, const member *who, const char *old, const char *nick)
{
    announce(c, who, "%s is now %s", old, nick);
}

/* A sender whose line backed up the room stops being read until it drains. */
static void event_message(member *m, const uint8_t *text, size_t len, bool action)
{
    if (chat_apply_message(m->chan, m, m->nick, strlen(m->nick), text, len, action) && !m->held) {
        m->held = true;
        update_pause(m);
    }
}

/* ------------------------------------------------------ membership */

/* Puts m last among c's members. */
static void chan_enter(member *m, chat_chan *c)
{
    m->chan = c;
    m->cnext = NULL;
    m->cprev = c->tail;
    if (c->tail)
        c->tail->cnext = m;
    else
        c->head = m;
    c->tail = m;
    c->joined++;
}

/* Takes m out of its room, which it returns (for its leave notice). Never
 * inside a broadcast, which walks the room's members. */
static chat_chan *chan_exit(member *m)
{
    chat_chan *c = m->chan;
    if (m->cprev)
        m->cprev->cnext = m->cnext;
    else
        c->head = m->cnext;
    if (m->cnext)
        m->cnext->cprev = m->cprev;
    else
        c->tail = m->cprev;
    m->cprev = m->cnext = NULL;
    m->chan = NULL;
    c->joined--;
    return c;
}

void chat_arrived(member *m)
{
    chat_room *r = m->room;
    chat_nick_set(r, m, m->nick, strlen(m->nick));
    m->in_room = true;
    r->joined++;
    chan_enter(m, r->lobby);
    m->arriving = true;
    tell(m,
         "*** welcome to the chat, you are %s (commands: /nick NAME, /who, /me TEXT, /quit, "
         "/help)",
         m->nick);
    if (!chat_redis_up(r->redis)) {
        m->told_cut = true;
        tell(m, "*** the chat network (Redis) is unavailable; lines you send are refused until "
                "it is back");
    }
    chat_apply_join(m->chan, m, m->nick);
    chat_cluster_enter(m, m->chan);
    chat_run_drops(r);
}

void chat_entered(member *m, unsigned count)
{
    if (m->arriving)
        m->arriving = false;
    else
        tell(m, "*** you joined %s (%u member%s)", m->chan->name, count, count == 1 ? "" : "s");
}

static void join(member *m)
{
    chat_room *r = m->room;
    if (r->redis != NULL) {
        chat_cluster_arrive(m);
        return;
    }
    chat_nick_guest(r, m);
    m->in_room = true;
    r->joined++;
    chan_enter(m, r->lobby);
    tell(m,
         "*** welcome to the chat, you are %s (commands: /nick NAME, /who, /me TEXT, /quit, "
         "/help)",
         m->nick);
    chat_history_replay(m->chan, m->conn);
    chat_check_queue(m);
    chat_apply_join(m->chan, m, m->nick);
}

void chat_leave(member *m, const char *why)
{
    chat_room *r = m->room;
    if (!m->in_room)
        return;
    m->in_room = false;
    r->joined--;
    chat_nick_remove(r, m);
    if (r->redis != NULL)
        chat_cluster_leave(m);
    chat_chan *c = chan_exit(m);
    chat_apply_leave(c, m->nick, why);
    chat_chan_release(c);
}

/* Moves m from its room to c: a leave there, its history and a join here. */
static void move_to(member *m, chat_chan *c)
{
    if (c == m->chan) {
        tell(m, "*** you are already in %s", c->name);
        return;
    }
    chat_chan *old = chan_exit(m);
    chat_apply_leave(old, m->nick, NULL);
    chat_chan_release(old);
    chan_enter(m, c);
    if (m->room->redis != NULL) {
        /* Told, with its history from Redis, when that arrives. */
        chat_apply_join(c, m, m->nick);
        chat_cluster_enter(m, c);
        return;
    }
    tell(m, "*** you joined %s (%u member%s)", c->name, c->joined, c->joined == 1 ? "" : "s");
    chat_history_replay(c, m->conn);
    chat_check_queue(m);
    chat_apply_join(c, m, m->nick);
}

/* ------------------------------------------------------------ commands */

static void cmd_nick(member *m, const char *arg, size_t len)
{
    chat_room *r = m->room;
    if (!chat_nick_valid(arg, len)) {
        tell(m, "*** error: invalid nick \"%.*s%s\": use 1-%d of A-Z a-z 0-9 _ -",
             (int)(len > 40 ? 40 : len), arg, len > 40 ? "..." : "", CHAT_NICK_MAX);
        return;
    }
    member *other = chat_nick_find(r, arg, len);
    if (other != NULL && other != m) {
        tell(m, "*** error: nick %.*s is taken", (int)len, arg);
        return;
    }
    if (other == m && memcmp(m->nick, arg, len) == 0) {
        tell(m, "*** you are already %s", m->nick);
        return;
    }
    if (r->redis != NULL) {
        if (!chat_redis_up(r->redis))
            tell(m, "*** error: the chat network (Redis) is unavailable; try again later");
        else
            chat_cluster_rename(m, arg, len); /* Redis says whether it is free */
        return;
    }
    char old[CHAT_NICK_MAX + 1];
    memcpy(old, m->nick, sizeof old);
    chat_nick_set(r, m, arg, len);
    tell(m, "*** you are now %s", m->nick);
    chat_apply_rename(m->chan, m, old, m->nick);
}

void chat_renamed(member *m, const char *nick)
{
    chat_room *r = m->room;
    size_t len = strlen(nick);
    member *other = chat_nick_find(r, nick, len);
    if (other != NULL && other != m) {
        tell(m, "*** error: nick %s is taken", nick);
        return;
    }
    char old[CHAT_NICK_MAX + 1];
    memcpy(old, m->nick, sizeof old);
    chat_nick_set(r, m, nick, len);
    tell(m, "*** you are now %s", m->nick);
    chat_apply_rename(m->chan, m, old, m->nick);
}

/* /who: "*** members (N): a b c", split over several lines of the same form
 * when long, so a client collects lines until it has N nicks. */
static void cmd_who(member *m)
{
    chat_chan *c = m->chan;
    if (m->room->redis != NULL) {
        if (!chat_redis_up(m->room->redis))
            tell(m, "*** error: the chat network (Redis) is unavailable; try again later");
        else
            chat_cluster_who(m);
        return;
    }
    char line[WHO_LINE + CHAT_NICK_MAX + 40];
    int head = snprintf(line, sizeof line, "*** members (%u):", c->joined);
    size_t n = (size_t)head;
    for (member *o = c->head; o != NULL; o = o->cnext) {
        if (!o->in_room)
            continue;
        size_t nl = strlen(o->nick);
        if (n + 1 + nl > WHO_LINE && n > (size_t)head) {
            tell(m, "%.*s", (int)n, line);
            n = (size_t)head;
        }
        line[n++] = ' ';
        memcpy(line + n, o->nick, nl);
        n += nl;
    }
    tell(m, "%.*s", (int)n, line);
}

static void cmd_join(member *m, const char *arg, size_t len)
{
    if (!chat_room_name_valid(arg, len)) {
        tell(m,
             "*** error: invalid room \"%.*s%s\": use 1-%d of A-Z a-z 0-9 _ -, with an optional "
             "leading #",
             (int)(len > 40 ? 40 : len), arg, len > 40 ? "..." : "", CHAT_NICK_MAX);
        return;
    }
    chat_chan *c = chat_chan_get(m->room, arg, len);
    if (c == NULL) {
        tell(m, "*** error: no room can be made now (too many rooms); try again later");
        return;
    }
    move_to(m, c);
}

/* /rooms: "*** rooms (N): lobby (3) dev (1)", the lobby and every room
 * with members, in the order they were made; long lists continue on more
 * lines of the same form, as /who's. */
static void cmd_rooms(member *m)
{
    chat_room *r = m->room;
    if (r->redis != NULL) {
        if (!chat_redis_up(r->redis))
            tell(m, "*** error: the chat network (Redis) is unavailable; try again later");
        else
            chat_cluster_rooms(m);
        return;
    }
    unsigned count = 0;
    for (chat_chan *c = r->chans; c != NULL; c = c->next)
        count += c->joined > 0 || c == r->lobby;
    char line[WHO_LINE + CHAT_NICK_MAX + 40];
    int head = snprintf(line, sizeof line, "*** rooms (%u):", count);
    size_t n = (size_t)head;
    for (chat_chan *c = r->chans; c != NULL; c = c->next) {
        if (c->joined == 0 && c != r->lobby)
            continue;
        char item[CHAT_NICK_MAX + 20];
        int il = snprintf(item, sizeof item, " %s (%u)", c->name, c->joined);
        if (n + (size_t)il > WHO_LINE && n > (size_t)head) {
            tell(m, "%.*s", (int)n, line);
            n = (size_t)head;
        }
        memcpy(line + n, item, (size_t)il);
        n += (size_t)il;
    }
    tell(m, "%.*s", (int)n, line);
}

/* /msg NICK TEXT: "[private] FROM: TEXT" to NICK alone, in whatever room. */
static void cmd_msg(member *m, const char *arg, size_t len)
{
    size_t nl = 0;
    while (nl < len && arg[nl] != ' ')
        nl++;
    const char *text = arg + nl;
    while (text < arg + len && *text == ' ')
        text++;
    /* The text runs to the end of the line as sent (arg's end drops
     * trailing blanks; a message keeps them). */
    size_t tl = (size_t)(arg + len - text);
    if (nl == 0 || tl == 0) {
        tell(m, "*** error: /msg needs a nick and some text, as in: /msg bob hello");
        return;
    }
    if (m->room->redis != NULL) {
        const uint8_t *ct = (const uint8_t *)text;
        size_t ctl = tl;
        char line[3 * 4096 + 100];
        if (!chat_redis_up(m->room->redis) || !clean_text(m->room, &ct, &ctl) ||
            ctl + 50 > sizeof line) {
            tell(m, "*** error: the chat network (Redis) is unavailable; your line was not "
                    "delivered");
            return;
        }
        int hl = snprintf(line, sizeof line, "[private] %s: ", m->nick);
        memcpy(line + hl, ct, ctl);
        chat_cluster_msg(m, arg, nl, line, (size_t)hl + ctl);
        return;
    }
    member *to = chat_nick_find(m->room, arg, nl);
    if (to == NULL || !to->in_room) {
        tell(m, "*** error: no such nick %.*s", (int)(nl > 40 ? 40 : nl), arg);
        return;
    }
    const uint8_t *t = (const uint8_t *)text;
    if (!clean_text(m->room, &t, &tl))
        return;
    static const char mark[] = "[private] ";
    if (sk_conn_send(to->conn, mark, sizeof mark - 1) == 0 &&
        sk_conn_send(to->conn, m->nick, strlen(m->nick)) == 0 &&
        sk_conn_send(to->conn, ": ", 2) == 0 && sk_conn_send(to->conn, t, tl) == 0)
        (void)sk_conn_send(to->conn, "\n", 1);
    chat_check_queue(to);
}

static void cmd_quit(member *m)
{
    tell(m, "*** bye");
    m->quitting = true;
    chat_leave(m, NULL);
    sk_conn_close(m->conn);
}

/* Matches a command word, case-insensitively, that ends the line or is
 * followed by a space; *arg receives what follows the spaces after it. */
static bool is_cmd(const char *line, size_t len, const char *word, const char **arg,
                   size_t *arg_len)
{
    size_t wl = strlen(word);
    if (len < wl || strncasecmp(line, word, wl) != 0 || (len > wl && line[wl] != ' '))
        return false;
    size_t i = wl;
    while (i < len && line[i] == ' ')
        i++;
    size_t end = len;
    while (end > i && (line[end - 1] == ' ' || line[end - 1] == '\t'))
        end--;
    *arg = line + i;
    *arg_len = end - i;
    return true;
}

static void command(member *m, const char *line, size_t len)
{
    const char *arg;
    size_t alen;
    if (is_cmd(line, len, "/nick", &arg, &alen)) {
        cmd_nick(m, arg, alen);
    } else if (is_cmd(line, len, "/who", &arg, &alen)) {
        cmd_who(m);
    } else if (is_cmd(line, len, "/join", &arg, &alen)) {
        cmd_join(m, arg, alen);
    } else if (is_cmd(line, len, "/part", &arg, &alen)) {
        move_to(m, m->room->lobby);
    } else if (is_cmd(line, len, "/rooms", &arg, &alen)) {
        cmd_rooms(m);
    } else if (is_cmd(line, len, "/msg", &arg, &alen)) {
        cmd_msg(m, arg, (size_t)(line + len - arg));
    } else if (is_cmd(line, len, "/me", &arg, &alen)) {
        if (alen == 0)
            tell(m, "*** error: /me needs some text, as in: /me waves");
        else
            event_message(m, (const uint8_t *)arg, (size_t)(line + len - arg), true);
    } else if (is_cmd(line, len, "/quit", &arg, &alen)) {
        cmd_quit(m);
    } else if (is_cmd(line, len, "/help", &arg, &alen)) {
        tell(m, "%s", help_line);
    } else {
        size_t wl = 0;
        while (wl < len && line[wl] != ' ' && wl < 40)
            wl++;
        tell(m, "*** error: unknown command %.*s; try /help", (int)wl, line);
    }
}

/* Lines beyond --max-rate per second (a token bucket holding one second's
 * worth, refilled continuously; counted in thousandths of a line). */
static bool within_rate(member *m)
{
    chat_room *r = m->room;
    unsigned rate = r->ctx->max_rate;
    if (rate == 0)
        return true;
    uint64_t now = sk_loop_now(r->loop);
    uint64_t cap = (uint64_t)rate * 1000u;
    m->tokens += (now - m->refilled_at) * rate;
    if (m->tokens > cap)
        m->tokens = cap;
    m->refilled_at = now;
    if (m->tokens >= 1000) {
        m->tokens -= 1000;
        return true;
    }
    if (m->rate_told_at == 0 || now - m->rate_told_at >= RATE_NOTICE_MS) {
        m->rate_told_at = now;
        m->refused = 0;
        tell(m, "*** error: more than %u lines per second; lines are being refused", rate);
    }
    /* A flood, not a paste: not read again until the bucket holds a line,
     * so that it costs the server one read per refill, not all it sends. */
    if (++m->refused > RATE_PAUSE_AFTER) {
        m->rate_until = now + (1000 - m->tokens + rate - 1) / rate;
        update_pause(m);
    }
    return false;
}

void chat_line(member *m, const uint8_t *line, size_t len)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (len > m->room->ctx->max_line) {
        chat_line_too_long(m);
        return;
    }
    if (len == 0 || !m->in_room)
        return;
    if (!within_rate(m))
        return;
    if (line[0] == '/' && !(len > 1 && line[1] == '/'))
        command(m, (const char *)line, len);
    else if (line[0] == '/')
        event_message(m, line + 1, len - 1, false);
    else
        event_message(m, line, len, false);
}

void chat_line_too_long(member *m)
{
    tell(m, "*** error: line longer than %zu bytes; not delivered", m->room->ctx->max_line);
}

/* ------------------------------------------------- for chat_cluster.c */

void chat_tell_line(member *m, const char *line) { tell(m, "%s", line); }

void chat_tell_linef(member *m, const char *fmt, ...)
{
    char line[1100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    tell(m, "%s", line);
}

void chat_tell_raw(member *m, const char *line, size_t len)
{
    if (sk_conn_send(m->conn, line, len) == 0)
        (void)sk_conn_send(m->conn, "\n", 1);
    chat_check_queue(m);
}

void chat_chan_notice(chat_chan *c, const char *fmt, ...)
{
    char line[1100];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (member *m = c->head; m != NULL; m = m->cnext)
        if (m->in_room && !m->catching_up)
            tell(m, "%s", line);
    chat_run_drops(c->room);
}

void chat_replay_line(chat_chan *c, member *m, const char *line, size_t len)
{
    static const char mark[] = "[history] ";
    for (member *o = m ? m : c->head; o != NULL; o = m ? NULL : o->cnext) {
        if (!o->in_room || (m == NULL && o->catching_up))
            continue;
        if (sk_conn_send(o->conn, mark, sizeof mark - 1) == 0)
            chat_tell_raw(o, line, len);
    }
    chat_run_drops(c->room);
}

void chat_deliver(chat_chan *c, uint64_t seq, uint64_t from, const char *line, size_t len)
{
    member *origin = NULL;
    for (member *m = from ? c->head : NULL; m != NULL && origin == NULL; m = m->cnext)
        if (m->id == from)
            origin = m;
    chat_part part = {line, len};
    sk_shared *s = make_line(c->room, &part, 1);
    if (s == NULL)
        return;
    bool backed_up = broadcast_seq(c, origin, s, seq);
    sk_shared_unref(s);
    if (backed_up && origin != NULL && !origin->held) {
        origin->held = true;
        update_pause(origin);
    }
}

void chat_tell_items(member *m, bool who, const char *const *items, const size_t *lens, size_t n)
{
    char line[WHO_LINE + 2 * CHAT_NICK_MAX + 40];
    unsigned count = (unsigned)(who ? n : n / 2);
    bool lobby = false;
    for (size_t i = 0; !who && i + 1 < n; i += 2)
        lobby |= lens[i] == 5 && memcmp(items[i], "lobby", 5) == 0;
    if (!who && !lobby)
        count++; /* the lobby is always listed */
    int head = snprintf(line, sizeof line, who ? "*** members (%u):" : "*** rooms (%u):", count);
    size_t len = (size_t)head;
    if (!who && !lobby) {
        memcpy(line + len, " lobby (0)", 10);
        len += 10;
    }
    for (size_t i = 0; i < n; i += who ? 1 : 2) {
        char item[2 * CHAT_NICK_MAX + 20];
        int il =
            who ? snprintf(item, sizeof item, " %.*s",
                           (int)(lens[i] > CHAT_NICK_MAX ? CHAT_NICK_MAX : lens[i]), items[i])
                : (i + 1 < n ? snprintf(item, sizeof item, " %.*s (%.*s)",
                                        (int)(lens[i] > CHAT_NICK_MAX ? CHAT_NICK_MAX : lens[i]),
                                        items[i], (int)(lens[i + 1] > 10 ? 10 : lens[i + 1]),
                                        items[i + 1])
                             : 0);
        if (il <= 0)
            continue;
        if (len + (size_t)il > WHO_LINE && len > (size_t)head) {
            tell(m, "%.*s", (int)len, line);
            len = (size_t)head;
        }
        memcpy(line + len, item, (size_t)il);
        len += (size_t)il;
    }
    tell(m, "%.*s", (int)len, line);
}

/* ---------------------------------------------------------- callbacks */

static void chat_open(sk_conn *c)
{
    svc_ctx *ctx = sk_conn_data(c);
    chat_room *r = ctx->state;
    svc_log_open(c);
    member *m = calloc(1, sizeof *m);
    if (m == NULL) {
        /* No member: on_close must know, and no other callback runs on a
         * failed connection. */
        sk_conn_set_data(c, NULL);
        sk_conn_fail(c, -ENOMEM, "out of memory");
        return;
    }
    m->conn = c;
    m->room = r;
    m->id = ++r->next_id;
    m->tokens = (uint64_t)ctx->max_rate * 1000u;
    m->refilled_at = sk_loop_now(r->loop);
    m->prev = r->tail;
    if (r->tail)
        r->tail->next = m;
    else
        r->head = m;
    r->tail = m;
    sk_conn_set_data(c, m);
    join(m);
    chat_run_drops(r);
}

/* Handles what m sent, line by line. A line may make it wait for Redis (a
 * /nick): the rest is kept, in order, for when the answer is in. */
static void take_input(member *m, const uint8_t *data, size_t len)
{
    size_t off = 0, n;
    const uint8_t *line;
    for (;;) {
        if (m->waiting) {
            if (off < len) {
                uint8_t *b = malloc(len - off);
                if (b != NULL)
                    memcpy(b, data + off, len - off);
                free(m->backlog); /* data may be the old backlog: copied first */
                m->backlog = b;
                m->backlog_len = b ? len - off : 0;
            }
            break;
        }
        enum chat_piece k = chat_input_next(m, data, len, &off, &line, &n);
        if (k == CHAT_NONE)
            break;
        if (k == CHAT_LINE)
            chat_line(m, line, n);
        else
            chat_line_too_long(m);
    }
}

void chat_input_resume(member *m)
{
    m->waiting = false;
    if (!m->paused)
        sk_conn_resume(m->conn);
    uint8_t *b = m->backlog;
    size_t len = m->backlog_len;
    m->backlog = NULL;
    m->backlog_len = 0;
    if (b != NULL && m->in_room)
        take_input(m, b, len);
    free(b);
    chat_run_drops(m->room);
}

static void chat_message(sk_conn *c, const uint8_t *data, size_t len)
{
    member *m = sk_conn_data(c);
    take_input(m, data, len);
    chat_run_drops(m->room);
}

/* The member shut down its sending side: a last line without "\n" still
 * counts, then it leaves, and what is queued for it is still sent. */
static void chat_eof(sk_conn *c)
{
    member *m = sk_conn_data(c);
    const uint8_t *line;
    size_t n;
    if (chat_input_end(m, &line, &n))
        chat_line(m, line, n);
    chat_input_ended(m);
    chat_leave(m, NULL);
    sk_conn_close(c);
    chat_run_drops(m->room);
}

static void chat_close(sk_conn *c, int err)
{
    member *m = sk_conn_data(c);
    if (m == NULL) {
        svc_log_closed(c, err, "chat", false);
        return;
    }
    chat_room *r = m->room;
    if (m->in_room) {
        const char *why = NULL;
        if (err != 0)
            why = sk_conn_reason(c)[0] ? sk_conn_reason(c) : sk_strerror(err);
        chat_leave(m, why);
    }
    if (m->prev)
        m->prev->next = m->next;
    else
        r->head = m->next;
    if (m->next)
        m->next->prev = m->prev;
    else
        r->tail = m->prev;
    chat_input_free(m);
    free(m->backlog);
    free(m);
    sk_conn_set_data(c, r->ctx);
    svc_log_close(c, err);
    chat_run_drops(r);
}

static void chat_stream(sk_conn_callbacks *cbs)
{
    cbs->on_open = chat_open;
    cbs->on_message = chat_message;
    cbs->on_eof = chat_eof;
    cbs->on_close = chat_close;
}

/* ------------------------------------------------------------ the room */

static int chat_start(svc_ctx *ctx, sk_loop *loop, char *err, size_t errlen)
{
    chat_room *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    r->ctx = ctx;
    r->loop = loop;
    r->next_guest = 1;
    r->history = chat_cli_opts.history;
    r->next_guest = 1;
    r->hist_max = ctx->max_memory ? ctx->max_memory / 4 : SIZE_MAX;
    if (chat_nicks_init(r) < 0 || chat_rooms_init(r) < 0) {
        chat_rooms_free(r);
        chat_nicks_free(r);
        free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (sk_timer_new(loop, hold_tick, r, &r->hold_timer) < 0) {
        chat_rooms_free(r);
        chat_nicks_free(r);
        free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (chat_cli_opts.redis != NULL &&
        chat_cluster_start(r, chat_cli_opts.redis, chat_cli_opts.redis_password_file,
                           chat_cli_opts.redis_nick_ttl_ms, err, errlen) < 0) {
        sk_timer_free(r->hold_timer);
        chat_rooms_free(r);
        chat_nicks_free(r);
        free(r);
        return -1;
    }
    ctx->state = r;
    return 0;
}

/* SIGINT/SIGTERM: tell everyone and close every member gracefully, so the
 * drain ends as soon as their queues are flushed instead of waiting out
 * --drain-timeout for members that would never leave by themselves. */
static void chat_drain(svc_ctx *ctx)
{
    chat_room *r = ctx->state;
    if (r == NULL)
        return;
    r->closing = true;
    sk_timer_stop(r->hold_timer);
    for (member *m = r->head; m != NULL; m = m->next) {
        if (!m->in_room)
            continue;
        tell(m, "*** disconnected: the server is shutting down");
        chat_leave(m, NULL);
        sk_conn_close(m->conn);
    }
    r->drops = NULL; /* all of them are closing anyway */
    chat_cluster_stop(r, true);
}

static void chat_stop(svc_ctx *ctx)
{
    chat_room *r = ctx->state;
    if (r == NULL)
        return;
    /* The loop is gone: connections left were freed without on_close. */
    while (r->head) {
        member *m = r->head;
        r->head = m->next;
        chat_input_free(m);
        free(m->backlog);
        free(m);
    }
    chat_cluster_stop(r, false);
    chat_rooms_free(r);
    chat_nicks_free(r);
    sk_timer_free(r->hold_timer);
    free(r->scratch);
    free(r);
    ctx->state = NULL;
}

const svc_def svc_chat = {
    .name = "chat",
    .summary = "a line-based chat room (nc, telnet or sockit chat)",
    .framing_choice = false,
    .fixed_framing = SK_FRAMING_RAW,
    .stream = chat_stream,
    .datagram = NULL,
    .max_line = CHAT_DEFAULT_MAX_LINE,
    .one_loop = true,
    .start = chat_start,
    .drain = chat_drain,
    .stop = chat_stop,
    .opts = chat_options,
    .opts_title = "chat options (the chat service is line-based; --framing does not apply):\n",
    .opts_store = &chat_cli_opts,
    .opts_init = chat_opts_init,
};
