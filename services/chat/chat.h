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

/* chat_options.c: the options of `sockit serve` for chat (copied into
 * each chat listener's svc_ctx). */
typedef struct chat_opts {
    uint64_t max_queue; /* --max-queue */
    unsigned max_rate;  /* --max-rate */
    unsigned history;   /* --history */
} chat_opts;
extern chat_opts chat_cli_opts;
extern const svc_opt chat_options[];
void chat_opts_init(void *store);

typedef struct chat_room chat_room;
typedef struct chat_chan chat_chan;

typedef struct member {
    sk_conn *conn;
    chat_room *room;              /* the server's state (all rooms) */
    chat_chan *chan;              /* the room it is in; NULL once it left */
    struct member *prev, *next;   /* room->head: every member still connected, join order */
    struct member *cprev, *cnext; /* chan->head: the members of its room, join order */
    struct member *hnext;         /* nick table chain */
    struct member *drop_next;     /* room->drops */
    char nick[CHAT_NICK_MAX + 1];
    bool in_room;  /* joined and not left: receives broadcasts, holds its nick */
    bool dropping; /* queue over --max-queue: dropped after this broadcast */
    bool quitting; /* sent /quit: later lines of the same read are ignored */
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
    member **nicks;    /* nick table: lower-cased FNV-1a, chained */
    size_t nicks_cap;  /* a power of two */
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
/* Keeps a reference to a broadcast line (a whole line with its "\n"). */
void chat_history_add(chat_chan *c, sk_shared *s);
/* Queues c's history on conn, each line marked "[history] ". */
void chat_history_replay(chat_chan *c, sk_conn *conn);

#endif
