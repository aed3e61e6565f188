/* relay_copy.c — the callbacks of a pair's two connections, and relaying
 * through the library's buffers (copy mode): what TLS on either side needs,
 * and the one place every relayed chunk passes (relay_cfg.tap). Backpressure:
 * a direction whose destination holds RELAY_HIGH_WATER stops reading its
 * source until the destination drains. */
#include <errno.h>
#include <string.h>

#include "relay.h"

static int dir_from(const relay_pair *p, const sk_conn *c)
{
    return c == p->client ? RELAY_UP : RELAY_DOWN;
}

static sk_conn *other(const relay_pair *p, const sk_conn *c)
{
    return c == p->client ? p->target : p->client;
}

static void on_message(sk_conn *c, const uint8_t *data, size_t len)
{
    relay_pair *p = sk_conn_data(c);
    if (p == NULL)
        return;
    int dir = dir_from(p, c);
    sk_conn *o = other(p, c);
    if (o == NULL)
        return;
    if (p->cfg->tap != NULL) {
        relay_tap_chunk tc = {.id = p->id,
                              .client = sk_conn_peer(p->client),
                              .target = p->target_peer[0] ? p->target_peer : p->cfg->target_text,
                              .dir = dir,
                              .off = p->bytes[dir]};
        p->cfg->tap(&tc, data, len, p->cfg->tap_ud);
    }
    relay_pair_count(p, dir, len);
    if (sk_conn_send(o, data, len) < 0)
        return; /* o is closing (its on_close ends the pair) */
    if (sk_conn_queued(o) >= RELAY_HIGH_WATER) {
        sk_conn_pause(c);
        p->paused[dir] = true;
    }
}

/* c's output drained: the source that fills it may be read again. */
static void on_drain(sk_conn *c)
{
    relay_pair *p = sk_conn_data(c);
    if (p == NULL)
        return;
    int dir = 1 - dir_from(p, c); /* the direction that writes into c */
    sk_conn *src = other(p, c);
    if (p->paused[dir] && src != NULL) {
        p->paused[dir] = false;
        sk_conn_resume(src);
    }
}

/* A half-close: the FIN goes on after what is queued; the other way stays
 * open until its source ends too. */
static void on_eof(sk_conn *c)
{
    relay_pair *p = sk_conn_data(c);
    if (p == NULL)
        return;
    int dir = dir_from(p, c);
    p->eof[dir] = true;
    sk_conn *o = other(p, c);
    if (o != NULL)
        sk_conn_shutdown(o);
    if (p->eof[RELAY_UP] && p->eof[RELAY_DOWN])
        relay_pair_end(p, false);
}

/* A reset or failure on one side is a reset to the other; an orderly end
 * of one side ends the other gracefully. */
static bool is_reset(int err) { return err == -ECONNRESET || err == -EPIPE; }

static void target_close(sk_conn *c, int err)
{
    relay_pair *p = sk_conn_data(c);
    if (p == NULL)
        return; /* the client went first and let go of it */
    p->target = NULL;
    relay_splice_stop(p);
    if (!p->target_open) {
        const char *why = sk_conn_reason(c);
        relay_pair_reason(p, "target %s: %s", p->cfg->target_text,
                          why[0] ? why : sk_strerror(err ? err : -ECONNREFUSED));
        relay_conn_end(p->client, false);
        return;
    }
    if (err != 0)
        relay_pair_reason(p, "target %s", is_reset(err) ? "reset" : sk_strerror(err));
    relay_pair_end(p, err != 0 && is_reset(err));
}

static void client_close(sk_conn *c, int err)
{
    relay_pair *p = sk_conn_data(c);
    if (p == NULL)
        return; /* closed before on_open made a pair */
    relay_splice_stop(p);
    if (err != 0) {
        const char *why = sk_conn_reason(c);
        relay_pair_reason(p, "client %s",
                          is_reset(err) ? "reset"
                          : why[0]      ? why
                                        : sk_strerror(err));
    }
    if (p->target != NULL) {
        sk_conn *t = p->target;
        p->target = NULL;
        sk_conn_set_data(t, NULL); /* it may outlive the pair */
        relay_conn_end(t, err != 0 && is_reset(err));
    }
    relay_pair_free(p);
}

void relay_copy_client_cbs(sk_conn_callbacks *cbs)
{
    cbs->on_message = on_message;
    cbs->on_drain = on_drain;
    cbs->on_eof = on_eof;
    cbs->on_close = client_close;
}

void relay_copy_target_cbs(sk_conn_callbacks *cbs)
{
    cbs->on_message = on_message;
    cbs->on_drain = on_drain;
    cbs->on_eof = on_eof;
    cbs->on_close = target_close;
}

void relay_copy_start(relay_pair *p)
{
    if (p->prefix_len > 0 && sk_conn_send(p->target, p->prefix, p->prefix_len) < 0)
        return;
    p->prefix_len = 0;
    sk_conn_resume(p->client);
}
