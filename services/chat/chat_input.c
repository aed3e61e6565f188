/* chat_input.c — turns the bytes a chat member sends into lines. Chat reads
 * raw and splits lines itself, rather than using the library's line framing,
 * so that an over-long line costs the member a notice, not the connection:
 * the rest of that line is skipped up to its "\n" and the member goes on.
 * Lines that arrive whole are handled where they lie in the read buffer; only
 * a line still being received is copied, into a buffer bounded by
 * --max-line. */
#include <stdlib.h>
#include <string.h>

#include "chat.h"

/* A started line must end within --frame-timeout (SPEC §5.1: a peer that
 * sends a byte now and then cannot hold its buffer forever). */
static void track_deadline(member *m)
{
    bool pending = m->partial_len > 0 || m->skipping;
    if (pending == m->timed || m->quitting || !m->in_room)
        return;
    m->timed = pending;
    sk_conn_set_deadline(m->conn, pending ? m->room->ctx->line_timeout_ms : 0,
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

void chat_input(member *m, const uint8_t *data, size_t len)
{
    while (len > 0 && m->in_room && !m->quitting) {
        const uint8_t *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) : len;
        size_t used = nl ? n + 1 : n;
        if (m->skipping) {
            if (nl != NULL)
                m->skipping = false;
        } else if (m->partial_len == 0 && nl != NULL) {
            chat_line(m, data, n); /* the common case: a whole line, no copy */
        } else if (!partial_add(m, data, n)) {
            partial_drop(m);
            chat_line_too_long(m);
            m->skipping = nl == NULL;
        } else if (nl != NULL) {
            /* The line is handed over from our buffer, which chat_line may
             * not keep: take it out first so a new line can start. */
            uint8_t *line = m->partial;
            size_t line_len = m->partial_len;
            m->partial = NULL;
            m->partial_len = m->partial_cap = 0;
            chat_line(m, line, line_len);
            free(line);
        }
        data += used;
        len -= used;
    }
    track_deadline(m);
}

void chat_input_end(member *m)
{
    if (m->partial_len > 0 && !m->skipping && m->in_room && !m->quitting) {
        uint8_t *line = m->partial;
        size_t line_len = m->partial_len;
        m->partial = NULL;
        m->partial_len = m->partial_cap = 0;
        chat_line(m, line, line_len);
        free(line);
    }
    partial_drop(m);
    m->skipping = false;
    track_deadline(m);
}

void chat_input_free(member *m)
{
    partial_drop(m);
}
