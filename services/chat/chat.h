/* chat.h — what the files of the chat service share: the room, its members,
 * and the functions each file provides to the others. Internal to
 * services/chat*.c. */
#ifndef SOCKIT_CHAT_H
#define SOCKIT_CHAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../services.h"

/* A nick: 1-32 of [A-Za-z0-9_-]. */
#define CHAT_NICK_MAX 32
/* Chat's own default --max-line: a chat line is a sentence, not a file, and
 * every byte of it is stored for every member that has not read it yet. */
#define CHAT_DEFAULT_MAX_LINE 4096u
/* Lines of a room replayed to a member who joins it (--history). */
#define CHAT_DEFAULT_HISTORY 50u
/* Nicks remembered to give back to Redis after an outage. */
#define CHAT_UNRELEASED_MAX 1024u

/* chat_options.c: the options of `sockit serve` for chat (copied into
 * each chat listener's svc_ctx). */
typedef struct chat_opts {
    uint64_t max_queue;              /* --max-queue */
    unsigned max_rate;               /* --max-rate */
    unsigned history;                /* --history */
    const char *redis;               /* --redis URL, NULL: one process */
    const char *redis_password_file; /* --redis-password-file */
    uint32_t redis_nick_ttl_ms;      /* --redis-nick-ttl */
} chat_opts;
/* A --redis URL's syntax (no lookup) and its password's one source (the
 * URL or password_file, not both; a user needs one): 0, or -1 with err
 * filled. */
int chat_redis_check(const char *url, const char *password_file, char *err, size_t errlen);
extern chat_opts chat_cli_opts;
extern const svc_opt chat_options[];
void chat_opts_init(void *store);

typedef struct chat_room chat_room;
typedef struct chat_chan chat_chan;
typedef struct chat_redis chat_redis;
typedef struct chat_recent chat_recent;

/* The one channel all servers publish room events on. */
#define CHAT_REDIS_CHANNEL "sockit:chat:events"

/* What chat_redis.c tells the cluster code (chat_cluster.c). */
typedef struct chat_redis_events {
    void (*up)(chat_room *r);   /* connected and subscribed */
    void (*down)(chat_room *r); /* was up, is not */
    void (*message)(chat_room *r, const char *msg, size_t len);
} chat_redis_events;

typedef struct member {
    sk_conn *conn;
    chat_room *room;              /* the server's state (all rooms) */
    chat_chan *chan;              /* the room it is in; NULL once it left */
    struct member *prev, *next;   /* room->head: every member still connected, join order */
    struct member *cprev, *cnext; /* chan->head: the members of its room, join order */
    struct member *hnext;         /* nick table chain */
    struct member *drop_next;     /* room->drops */
    char nick[CHAT_NICK_MAX + 1];
    uint64_t id; /* unique in this server: Redis replies find members by it */
    /* --redis (chat_cluster.c) */
    bool waiting;                     /* a nick is being granted: not read meanwhile */
    char claiming[CHAT_NICK_MAX + 1]; /* that nick; "" if none */
    uint8_t *backlog;                 /* what it sent after the line that made it wait */
    size_t backlog_len;
    bool arriving;    /* its first room is the lobby it connected to */
    bool catching_up; /* its room's history is on the way: live lines wait */
    bool told_cut;    /* was told Redis is away */
    uint64_t min_seq; /* room events up to this came in its history */
    bool in_room;     /* joined and not left: receives broadcasts, holds its nick */
    bool dropping;    /* queue over --max-queue: dropped after this broadcast */
    bool quitting;    /* sent /quit: later lines of the same read are ignored */
    /* chat_input.c: a line that has not ended yet */
    uint8_t *partial;
    size_t partial_len, partial_cap;
    uint8_t *handed; /* a copied line handed out by chat_input_next */
    bool skipping;   /* discarding the rest of an over-long line */
    bool timed;      /* a deadline for the started line is set */
    /* --max-rate token bucket, in thousandths of a line */
    uint64_t tokens, refilled_at, rate_told_at;
    /* Backpressure (chat.c): reading is paused while this member's lines
     * back up the room (held) or until its rate allows a line again. */
    bool held;
    bool paused;         /* sk_conn_pause() is in force */
    uint64_t rate_until; /* loop time when the rate allows a line; 0: now */
    uint32_t refused;    /* lines refused for the rate since the last notice */
    uint64_t over_since; /* as a reader: since when its queue is over the low mark; 0: not */
    bool stalled;        /* over it for STALL_MS: senders no longer wait for it */
} member;

/* A room: its members and its last --history lines (chat_rooms.c). */
struct chat_chan {
    chat_room *room;
    chat_chan *next;              /* room->chans, in the order created */
    char name[CHAT_NICK_MAX + 1]; /* without "#", as first named */
    member *head, *tail;          /* members in it, join order */
    unsigned joined;              /* members in it */
    sk_shared **hist;             /* ring of room->history whole lines ("\n" included) */
    unsigned hist_start, hist_len;
    size_t worst; /* hold_tick: its largest queue not stalled */
    /* --redis (chat_cluster.c) */
    uint64_t seq;        /* the last room event relayed */
    bool catching_up;    /* after an outage: its history is on the way */
    bool was_cut;        /* it had members while Redis was away */
    unsigned busy;       /* requests in flight that point at it */
    chat_recent *recent; /* the last events, for who catches up */
    unsigned recent_start, recent_len;
};

/* The chat server of one listener: every member and every room. */
struct chat_room {
    svc_ctx *ctx;
    sk_loop *loop;
    member *head, *tail;
    unsigned joined;  /* members in_room */
    chat_chan *chans; /* every room, lobby first */
    chat_chan *lobby;
    unsigned nchans;
    unsigned history;  /* --history */
    size_t hist_bytes; /* held in the histories of all rooms */
    size_t hist_max;   /* a quarter of --max-memory */
    uint64_t next_id;  /* member ids */
    /* --redis (chat_cluster.c) */
    chat_redis *redis; /* NULL: one process */
    char srvid[17];    /* random, hex: this server in Redis */
    unsigned srvnum;   /* guest numbers of its own while Redis is away */
    uint32_t nick_ttl_ms;
    sk_timer *renew_timer;
    bool stopping;
    /* Nicks that left while Redis was away, released when it is back. */
    char (*unreleased)[CHAT_NICK_MAX + 1];
    unsigned unreleased_len;
    member **nicks;   /* nick table: lower-cased FNV-1a, chained */
    size_t nicks_cap; /* a power of two */
    uint64_t next_guest;
    member *drops;    /* to drop once the current broadcast ends */
    int broadcasting; /* depth of chat_broadcast calls */
    bool closing;     /* draining: leaves are not announced */
    uint64_t oom_logged_at;
    sk_timer *hold_timer; /* runs while some member's reading is paused */
    uint8_t *scratch;     /* a line's text with controls replaced (chat_text.c) */
    size_t scratch_cap;
};

/* One piece of a line being assembled. */
typedef struct chat_part {
    const void *data;
    size_t len;
} chat_part;

/* chat.c */
/* Queues parts + "\n" on every member in the room except `except`, stored
 * once and queued by reference. Members pushed over --max-queue are dropped
 * after it. Returns true if some member's queue is left above the room's
 * high-water mark (its sender should be paused). */
bool chat_broadcast(chat_chan *c, const member *except, const chat_part *parts, int nparts);
void chat_check_queue(member *m);
void chat_run_drops(chat_room *r);
void chat_leave(member *m, const char *why);
/* One complete line from m, without "\n" (a "\r" before it is dropped). */
void chat_line(member *m, const uint8_t *line, size_t len);
void chat_line_too_long(member *m);

/* chat_text.c: the replacement of control characters in relayed text. */
/* True if text needs no replacement (the common case: no copy). */
bool chat_text_clean(const uint8_t *text, size_t len);
/* Writes text with its controls replaced to dst, which must have room for
 * CHAT_TEXT_GROWTH * len bytes; returns the length written. */
size_t chat_text_sanitize(const uint8_t *text, size_t len, uint8_t *dst);
/* A raw byte 0x80-0x9F (1 byte) becomes U+FFFD (3 bytes). */
#define CHAT_TEXT_GROWTH 3

/* chat_input.c: splits what a member sends into lines, one at a time. */
enum chat_piece {
    CHAT_NONE,    /* data[*off..] is used up (or the member left or quit) */
    CHAT_LINE,    /* *line, *line_len: a line without its "\n" */
    CHAT_TOO_LONG /* a line passed --max-line: its rest is skipped */
};
/* The next piece of data[*off..len) (advancing *off). A line stays valid
 * until the next call for this member. */
enum chat_piece chat_input_next(member *m, const uint8_t *data, size_t len, size_t *off,
                                const uint8_t **line, size_t *line_len);
/* The member's input ended: true with a last line without "\n" (it still
 * counts); then chat_input_ended drops what is left. */
bool chat_input_end(member *m, const uint8_t **line, size_t *line_len);
void chat_input_ended(member *m);
void chat_input_free(member *m);

/* chat_nicks.c: nicks are unique in a room, compared without case. */
int chat_nicks_init(chat_room *r);
void chat_nicks_free(chat_room *r);
bool chat_nick_valid(const char *name, size_t len);
member *chat_nick_find(const chat_room *r, const char *name, size_t len);
/* Gives m the first free guestN and enters it in the table. */
void chat_nick_guest(chat_room *r, member *m);
/* Renames m (in the table) to a valid name no one else holds. */
void chat_nick_set(chat_room *r, member *m, const char *name, size_t len);
void chat_nick_remove(chat_room *r, member *m);

/* chat_rooms.c: rooms by name, their lifetime and their history. */
int chat_rooms_init(chat_room *r); /* creates the lobby */
void chat_rooms_free(chat_room *r);
bool chat_room_name_valid(const char *name, size_t len);
/* The room of that name ("#" optional, case ignored), or NULL. */
chat_chan *chat_chan_find(chat_room *r, const char *name, size_t len);
/* The room of that name, created if new; NULL if the name is invalid or no
 * room can be made (memory, or too many rooms none of them idle). */
chat_chan *chat_chan_get(chat_room *r, const char *name, size_t len);
/* Frees c if it has no member and no history (never the lobby). */
void chat_chan_release(chat_chan *c);
/* chat.c, for chat_cluster.c */
void chat_arrived(member *m); /* its nick is set: welcome it to the lobby */
/* It stops waiting: reads again, and what it sent meanwhile is handled. */
void chat_input_resume(member *m);
/* It entered its room, with `count` members there: told so (unless it
 * just arrived); its history follows. */
void chat_entered(member *m, unsigned count);
void chat_renamed(member *m, const char *nick);
void chat_tell_line(member *m, const char *line);
void chat_tell_linef(member *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void chat_tell_raw(member *m, const char *line, size_t len);
void chat_chan_notice(chat_chan *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "[history] LINE" to m, or to every member of c not catching up. */
void chat_replay_line(chat_chan *c, member *m, const char *line, size_t len);
/* A room event from Redis to c's members but its sender (id `from`). */
void chat_deliver(chat_chan *c, uint64_t seq, uint64_t from, const char *line, size_t len);
/* /who (who true: nicks) or /rooms (room, count pairs) reply lines. */
void chat_tell_items(member *m, bool who, const char *const *items, const size_t *lens, size_t n);

/* chat_redis.c: connected and subscribed (false for NULL). */
bool chat_redis_up(const chat_redis *r);

/* chat_cluster.c: --redis */
int chat_cluster_start(chat_room *r, const char *url, const char *password_file,
                       uint32_t nick_ttl_ms, char *err, size_t errlen);
void chat_cluster_stop(chat_room *r, bool loop_alive);
void chat_cluster_arrive(member *m);
void chat_cluster_enter(member *m, chat_chan *c);
void chat_cluster_leave(member *m);
void chat_cluster_rename(member *m, const char *name, size_t len);
void chat_cluster_who(member *m);
void chat_cluster_rooms(member *m);
void chat_cluster_msg(member *m, const char *nick, size_t nl, const void *line, size_t len);
/* Publishes a room line; false if Redis cannot take it now. */
bool chat_cluster_publish(chat_chan *c, const member *from, bool message, const void *line,
                          size_t len);
void chat_recent_add(chat_chan *c, uint64_t seq, uint64_t from, const char *line, size_t len);
/* Delivers the recent events after seq to m (or all of c's members). */
void chat_recent_flush(chat_chan *c, member *m, uint64_t seq);
void chat_recent_free(chat_chan *c);

/* Keeps a reference to a broadcast line (a whole line with its "\n"). */
void chat_history_add(chat_chan *c, sk_shared *s);
/* Queues c's history on conn, each line marked "[history] ". */
void chat_history_replay(chat_chan *c, sk_conn *conn);

#endif
