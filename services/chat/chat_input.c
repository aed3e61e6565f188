/* chat_input.c — turns the bytes a chat member sends into lines. Chat reads
 * raw and splits lines itself, rather than using the library's line framing,
 * so that an over-long line costs the member a notice, not the connection:
 * the rest of that line is skipped up to its "\n" and the member goes on.
 * Lines that arrive whole are handed out where they lie in the read buffer;
 * only a line still being received is copied, into a buffer bounded by
 * --max-line. An iterator: chat.c asks for the next line and handles it,
 * so this file calls nothing of the room's. */
#include <stdlib.h>
#include <string.h>

#include "chat.h"

/* A started line must end within --frame-timeout (a peer that
 * sends a byte now and then cannot hold its buffer forever). */
static void track_deadline(member *m)
{
    bool pending = m->partial_len > 0 || m->skipping;
    if (pending == m->timed || m->quitting || !m->in_room)
        return;
    m->timed = pending;
    uint32_t ms = m->room->ctx->line_timeout_ms;
    sk_conn_set_deadline(m->conn, pending && ms ? (int)ms : SK_FOREVER,
                         "line not finished in time");
}

/* Appends to the unfinished line; false if that would pass the limit. The
 * limit allows one byte more than --max-line for a "\r" before the "\n". */
static bool partial_add(member *m, const uint8_t *data, size_t len)
{
    size_t limit = m->room->ctx->max_line + 1;
    if (len > limit - m->partial_len)
        return false;
    if (m->partial_len + len > m->partial_cap) {
        size_t cap = m->partial_cap ? m->partial_cap : 256;
        while (cap < m->partial_len + len)
            cap *= 2;
        if (cap > limit)
            cap = limit;
        uint8_t *p = realloc(m->partial, cap);
        if (p == NULL)
            return false;
        m->partial = p;
        m->partial_cap = cap;
    }
    memcpy(m->partial + m->partial_len, data, len);
    m->partial_len += len;
    return true;
}

static void partial_drop(member *m)
{
    free(m->partial);
    m->partial = NULL;
    m->partial_len = m->partial_cap = 0;
}

/* Frees the line handed out by the last call, if it was a copy. */
static void handed_free(member *m)
{
    free(m->handed);
    m->handed = NULL;
}

/* Takes the unfinished line out of the member, to hand it over: the
 * caller's use of it may start a new one. */
static void hand_partial(member *m, const uint8_t **line, size_t *line_len)
{
    m->handed = m->partial;
    *line = m->partial;
    *line_len = m->partial_len;
    m->partial = NULL;
    m->partial_len = m->partial_cap = 0;
}

enum chat_piece chat_input_next(member *m, const uint8_t *data, size_t len, size_t *off,
                                const uint8_t **line, size_t *line_len)
{
    handed_free(m);
    while (*off < len && m->in_room && !m->quitting) {
        const uint8_t *p = data + *off;
        size_t left = len - *off;
        const uint8_t *nl = memchr(p, '\n', left);
        size_t n = nl ? (size_t)(nl - p) : left;
        *off += nl ? n + 1 : n;
        if (m->skipping) {
            if (nl != NULL)
                m->skipping = false;
        } else if (m->partial_len == 0 && nl != NULL) {
            *line = p; /* the common case: a whole line, no copy */
            *line_len = n;
            return CHAT_LINE;
        } else if (!partial_add(m, p, n)) {
            partial_drop(m);
            m->skipping = nl == NULL;
            return CHAT_TOO_LONG;
        } else if (nl != NULL) {
            hand_partial(m, line, line_len);
            return CHAT_LINE;
        }
    }
    track_deadline(m);
    return CHAT_NONE;
}

bool chat_input_end(member *m, const uint8_t **line, size_t *line_len)
{
    handed_free(m);
    if (m->partial_len > 0 && !m->skipping && m->in_room && !m->quitting) {
        hand_partial(m, line, line_len);
        return true;
    }
    return false;
}

void chat_input_ended(member *m)
{
    handed_free(m);
    partial_drop(m);
    m->skipping = false;
    track_deadline(m);
}

void chat_input_free(member *m)
{
    handed_free(m);
    partial_drop(m);
}
