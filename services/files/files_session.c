/* files_session.c — one files connection's session layer, below the
 * requests (put, get, list, xfer) and above nothing of the service: the
 * ERROR frame, refusals, the step timer, the idle watch, the end of a
 * request. Keeps the service's files free of dependency cycles. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

#include "files_int.h"

static const char *peer(const fsess *s) { return sk_conn_peer(s->conn); }

void files_send_error(fsess *s, int code, const char *fmt, ...)
{
    files_hold_flush(s); /* the answers held go first, in order */
    va_list ap;
    va_start(ap, fmt);
    proto_send_verror(s->conn, code, fmt, ap);
    va_end(ap);
}

void files_fail(fsess *s, const char *why) { proto_fail(s->conn, PE_PROTOCOL, -EPROTO, why); }

void files_describe(char *out, size_t cap, const char *path)
{
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)path; *c && n + 5 < cap; c++) {
        if (*c >= 0x20 && *c < 0x7f && *c != '\\')
            out[n++] = (char)*c;
        else
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", *c);
    }
    out[n] = '\0';
}

void files_refuse_path(fsess *s, const char *op, const char *why)
{
    files_send_error(s, FE_BADPATH, "%s", why);
    sk_log(SK_LOG_WARN, "%s %s %s refused: %s", s->ctx->name, peer(s), op, why);
}

void files_schedule_step(fsess *s)
{
    s->tkind = FT_STEP;
    sk_timer_start(s->timer, 0, 0);
}

void files_schedule_step_in(fsess *s, uint32_t ms)
{
    s->tkind = FT_STEP;
    sk_timer_start(s->timer, ms, 0);
}

void files_idle_update(fsess *s)
{
    if (s->state < FS_READY || s->svc->o.idle_ms == 0)
        return;
    bool idle = s->state == FS_READY || s->state == FS_PUT_SKIP;
    if (idle == s->idle_armed)
        return;
    s->idle_armed = idle;
    if (!idle)
        return; /* the watch goes quiet by itself, or watches the transfer */
    s->moved_at = sk_loop_now(sk_conn_loop(s->conn));
    s->seen_in = sk_conn_bytes_in(s->conn);
    s->seen_out = sk_conn_bytes_out(s->conn);
    uint32_t every = s->svc->o.idle_ms / FILES_STALL_CHECKS;
    sk_timer_start(s->stall, every ? every : 1, 0);
}

void files_done(fsess *s)
{
    s->state = FS_READY;
    if (s->close_after) {
        files_hold_flush(s);
        sk_conn_close(s->conn);
    } else
        files_idle_update(s);
}
