/* relay_pair.c — a relayed pair's bookkeeping, below both ways of moving
 * bytes: the reason it ends, the bytes each way, ending both sides (a reset
 * carried as a reset), and its one log line. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "relay.h"

void relay_pair_reason(relay_pair *p, const char *fmt, ...)
{
    if (p->reason[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->reason, sizeof p->reason, fmt, ap);
    va_end(ap);
}

void relay_pair_count(relay_pair *p, int dir, size_t len)
{
    p->bytes[dir] += len;
    p->last_active = sk_loop_now(sk_conn_loop(p->client));
}

/* Closing a TCP socket with SO_LINGER 0 sends a reset instead of a FIN:
 * how a reset on one side is passed on to the other. */
void relay_conn_end(sk_conn *c, bool reset)
{
    if (!reset) {
        /* A paused connection could not read its peer's FIN while it
         * lingers: it would wait out the whole linger time. */
        sk_conn_resume(c);
        sk_conn_close(c);
        return;
    }
    int fd = sk_conn_fd(c);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    sk_conn_abort(c, -ECONNRESET);
}

void relay_pair_end(relay_pair *p, bool reset)
{
    if (p->target != NULL)
        relay_conn_end(p->target, reset);
    relay_conn_end(p->client, reset);
}

void relay_pair_done(relay_pair *p)
{
    /* Both ends of stream read and both FINs sent: nothing is left to
     * send or to read, so no lingering close either. */
    if (p->target != NULL)
        sk_conn_abort(p->target, 0);
    sk_conn_abort(p->client, 0);
}

void relay_pair_free(relay_pair *p)
{
    if (p->idle != NULL)
        sk_timer_free(p->idle);
    uint64_t ms = sk_loop_now(sk_conn_loop(p->client)) - p->started;
    const char *reason = p->reason[0] ? p->reason : "closed";
    bool bad = p->reason[0] != '\0' && p->bytes[0] + p->bytes[1] == 0;
    if (!p->cfg->quiet || bad)
        sk_log(bad ? SK_LOG_WARN : SK_LOG_INFO,
               "relay close %s -> %s up=%llu down=%llu time=%llu.%03llus reason=%s",
               sk_conn_peer(p->client), p->target_peer[0] ? p->target_peer : p->cfg->target_text,
               (unsigned long long)p->bytes[RELAY_UP], (unsigned long long)p->bytes[RELAY_DOWN],
               (unsigned long long)(ms / 1000), (unsigned long long)(ms % 1000), reason);
    free(p);
}
