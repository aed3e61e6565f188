/* relay.c — the relay service: each accepted connection (paused, so no
 * byte is read before the target answers) gets a connection to the target
 * (relay_dial), then both are joined: with splice(2) when both are plain
 * sockets, through the library's buffers (and TLS) otherwise. The server
 * side is `sockit serve`'s, so --max-conns, --workers, --max-memory, drain
 * and the access lists apply unchanged. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"

/* One configuration for the process, made by the first relay listener's
 * start (every relay listener relays to the one TARGET). */
static relay_cfg g_cfg;
static bool g_started;
/* --idle-timeout as the command line gave it: the pair keeps it itself,
 * since a spliced connection's bytes never pass the library's counters. */
static uint32_t g_idle_ms;
static uint8_t g_pin[SK_TLS_PIN_LEN];
static bool g_checked;
/* With a tap: the pairs' numbers, shared by every worker. */
static atomic_uint_fast64_t g_next_id;

static int check_tls_opts(const relay_opts *o, char *err, size_t errlen, uint8_t *pin)
{
    bool tls = g_cfg.target.kind == SK_ADDR_TLS;
    bool given = o->ca != NULL || o->pin != NULL || o->insecure;
    if (!tls) {
        if (given) {
            snprintf(err, errlen, "--ca, --pin and --insecure apply to a tls:// TARGET only");
            return -1;
        }
        return 0;
    }
    if ((o->ca != NULL) + (o->pin != NULL) + o->insecure > 1) {
        snprintf(err, errlen, "give one of --ca FILE, --pin SHA256 or --insecure, not several");
        return -1;
    }
    if (o->pin != NULL && sk_tls_pin_parse(o->pin, pin) < 0) {
        snprintf(err, errlen,
                 "bad value \"%s\" for --pin (the target certificate's SHA-256: 64 hex digits)",
                 o->pin);
        return -1;
    }
    if (o->ca != NULL && access(o->ca, R_OK) != 0) {
        snprintf(err, errlen, "cannot read --ca %s: %s", o->ca, strerror(errno));
        return -1;
    }
    return 0;
}

/* -4, -6 and --source: checked here so that a mistake is a usage error,
 * including a numeric TARGET of the other family. */
static int check_dial_opts(const relay_opts *o, char *err, size_t errlen)
{
    sk_dial_opts *d = &g_cfg.dial;
    if (o->ipv4 && o->ipv6) {
        snprintf(err, errlen, "give -4 or -6, not both");
        return -1;
    }
    d->family = o->ipv4 ? AF_INET : o->ipv6 ? AF_INET6 : AF_UNSPEC;
    char why[256];
    if (o->source != NULL && sk_dial_source_parse(o->source, d, why, sizeof why) < 0) {
        snprintf(err, errlen, "--source: %s", why);
        return -1;
    }
    g_cfg.dial_set = d->family != AF_UNSPEC || d->source.ss_family != AF_UNSPEC;
    if (!g_cfg.dial_set)
        return 0;
    if (g_cfg.target.kind == SK_ADDR_UNIX) {
        snprintf(err, errlen, "-4, -6 and --source apply to an IP TARGET only, not %s",
                 g_cfg.target_text);
        return -1;
    }
    int want = d->source.ss_family != AF_UNSPEC ? d->source.ss_family : d->family;
    uint8_t bin[16];
    int numeric = inet_pton(AF_INET, g_cfg.target.host, bin) == 1    ? AF_INET
                  : inet_pton(AF_INET6, g_cfg.target.host, bin) == 1 ? AF_INET6
                                                                     : AF_UNSPEC;
    if (numeric != AF_UNSPEC && numeric != want) {
        snprintf(err, errlen, "TARGET %s is not an %s address (-4, -6 or --source ask for one)",
                 g_cfg.target_text, want == AF_INET ? "IPv4" : "IPv6");
        return -1;
    }
    return 0;
}

int relay_check_opts(bool quiet, char *err, size_t errlen)
{
    const relay_opts *o = &relay_cli_opts;
    relay_tap_fn tap = g_cfg.tap;
    void *tap_ud = g_cfg.tap_ud;
    memset(&g_cfg, 0, sizeof g_cfg);
    g_cfg.tap = tap;
    g_cfg.tap_ud = tap_ud;
    if (o->target == NULL) {
        snprintf(err, errlen, "the relay needs a TARGET (sockit relay LISTEN TARGET)");
        return -1;
    }
    char why[256];
    if (sk_addr_parse(o->target, &g_cfg.target, why, sizeof why) < 0) {
        snprintf(err, errlen, "bad TARGET address: %s", why);
        return -1;
    }
    if (g_cfg.target.kind == SK_ADDR_UDP || g_cfg.target.kind == SK_ADDR_UNIXGRAM) {
        snprintf(err, errlen, "the relay joins streams: TARGET %s is a datagram address",
                 o->target);
        return -1;
    }
    sk_addr_format(&g_cfg.target, g_cfg.target_text, sizeof g_cfg.target_text);
    if (o->proxy == NULL)
        g_cfg.proxy = 0;
    else if (strcmp(o->proxy, "v1") == 0)
        g_cfg.proxy = 1;
    else if (strcmp(o->proxy, "v2") == 0)
        g_cfg.proxy = 2;
    else {
        snprintf(err, errlen, "bad value \"%s\" for --proxy-protocol (v1 or v2)", o->proxy);
        return -1;
    }
    if (check_tls_opts(o, err, errlen, g_pin) < 0 || check_dial_opts(o, err, errlen) < 0)
        return -1;
    g_cfg.connect_ms = (int)o->connect_ms;
    g_cfg.quiet = quiet;
    g_checked = true;
    return 0;
}

/* The TLS context is made here, not when checking: a usage error later
 * on the command line then has nothing to free. */
static int relay_start(svc_ctx *ctx, sk_loop *loop, char *err, size_t errlen)
{
    (void)loop;
    ctx->state = &g_cfg;
    if (g_started)
        return 0;
    if (!g_checked && relay_check_opts(ctx->quiet, err, errlen) < 0)
        return -1;
    const relay_opts *o = &relay_cli_opts;
    if (o->insecure) /* here, not when checking: the log reaches stderr by now */
        sk_log(SK_LOG_WARN, "WARNING: --insecure: the target's certificate is NOT verified; "
                            "anyone on the path can read and change the relayed bytes");
    if (g_cfg.target.kind == SK_ADDR_TLS) {
        sk_tls_client_opts to = {
            .ca_file = o->ca, .pin = o->pin ? g_pin : NULL, .insecure = o->insecure};
        if (sk_tls_client_new(&to, &g_cfg.tls, err, errlen) < 0)
            return -1;
    }
    g_started = true;
    return 0;
}

void relay_set_tap(relay_tap_fn tap, void *ud)
{
    g_cfg.tap = tap;
    g_cfg.tap_ud = ud;
}

static void relay_stop(svc_ctx *ctx)
{
    (void)ctx;
    if (!g_started)
        return;
    sk_tls_ctx_free(g_cfg.tls);
    g_cfg.tls = NULL;
    g_started = g_checked = false;
}

/* After the command line's options: raw bytes, the relay's water mark, and
 * the idle timeout taken over by the pair (see g_idle_ms). */
static void relay_conn_opts(sk_conn_opts *o)
{
    o->framing = SK_FRAMING_RAW;
    o->out_high_water = RELAY_HIGH_WATER;
    o->out_low_water = RELAY_HIGH_WATER / 4;
    o->start_paused = 1; /* nothing is read before the target answers */
    if (o->idle_timeout_ms)
        g_idle_ms = o->idle_timeout_ms;
    o->idle_timeout_ms = 0;
}

/* The pair's idle clock: bytes either way move it; the timer is moved only
 * when it fires early (as the library's own idle timer). */
static void on_idle(sk_timer *t, void *ud)
{
    relay_pair *p = ud;
    uint64_t now = sk_loop_now(sk_conn_loop(p->client));
    if (now - p->last_active < g_idle_ms) {
        sk_timer_start(t, g_idle_ms - (now - p->last_active), 0);
        return;
    }
    relay_pair_reason(p, "idle timeout");
    relay_splice_stop(p);
    relay_pair_end(p, false);
}

/* A plain socket: the only kind splice can read. A TLS connection answers
 * the exporter; a plain one says it has no TLS. */
static bool is_plain(sk_conn *c)
{
    uint8_t b;
    return sk_conn_tls_exporter(c, "sockit relay", &b, 1) == -ENOPROTOOPT;
}

static void target_open(sk_conn *t)
{
    relay_pair *p = sk_conn_data(t);
    if (p == NULL) {
        sk_conn_close(t);
        return;
    }
    p->target_open = true;
    p->last_active = sk_loop_now(sk_conn_loop(t));
    snprintf(p->target_peer, sizeof p->target_peer, "%s", sk_conn_peer(t));
    if (p->cfg->proxy) {
        struct sockaddr_storage src, dst;
        socklen_t sl = sizeof src, dl = sizeof dst;
        int fd = sk_conn_fd(p->client);
        if (getpeername(fd, (struct sockaddr *)&src, &sl) < 0 ||
            getsockname(fd, (struct sockaddr *)&dst, &dl) < 0)
            src.ss_family = dst.ss_family = AF_UNSPEC;
        p->prefix_len = relay_proxy_header(p->cfg->proxy, (struct sockaddr *)&src,
                                           (struct sockaddr *)&dst, p->prefix);
    }
    if (p->cfg->tap == NULL && is_plain(p->client) && is_plain(t)) {
        int rc = relay_splice_start(p);
        if (rc == 0)
            return;
        /* No memory or watch for splicing: the pair is still whole, so
         * copy mode carries it. */
        sk_log(SK_LOG_WARN, "relay: splice unavailable (%s); copying", sk_strerror(rc));
    }
    sk_conn_resume(t); /* opened paused (relay_dial) */
    relay_copy_start(p);
}

/* The target dial, in one place: -4/-6/--source choose the family and
 * bind the source (the library's dial options). */
static int relay_dial(relay_pair *p)
{
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.framing = SK_FRAMING_RAW;
    o.out_high_water = RELAY_HIGH_WATER;
    o.out_low_water = RELAY_HIGH_WATER / 4;
    o.tls = p->cfg->target.kind == SK_ADDR_TLS ? p->cfg->tls : NULL;
    o.handshake_timeout_ms = (uint32_t)p->cfg->connect_ms; /* a slow TLS target is slow */
    o.dial = p->cfg->dial_set ? &p->cfg->dial : NULL;
    o.start_paused = 1; /* splice or copy mode starts it (target_open) */
    sk_conn_callbacks cbs = {0};
    relay_copy_target_cbs(&cbs);
    cbs.on_open = target_open;
    return sk_conn_connect(sk_conn_loop(p->client), &p->cfg->target, &o, &cbs, p,
                           p->cfg->connect_ms, &p->target);
}

static void client_open(sk_conn *c)
{
    svc_ctx *ctx = sk_conn_data(c);
    relay_pair *p = calloc(1, sizeof *p);
    if (p == NULL) {
        sk_conn_set_data(c, NULL);
        sk_conn_abort(c, -ENOMEM);
        return;
    }
    p->cfg = ctx->state;
    p->client = c;
    p->started = p->last_active = sk_loop_now(sk_conn_loop(c));
    if (p->cfg->tap != NULL)
        p->id = atomic_fetch_add_explicit(&g_next_id, 1, memory_order_relaxed) + 1;
    sk_conn_set_data(c, p);
    sk_conn_pause(c); /* opened paused already (relay_conn_opts): a no-op then */
    if (g_idle_ms) {
        int rc = sk_timer_new(sk_conn_loop(c), on_idle, p, &p->idle);
        if (rc == 0)
            sk_timer_start(p->idle, g_idle_ms, 0);
    }
    int rc = relay_dial(p);
    if (rc < 0) {
        p->target = NULL;
        relay_pair_reason(p, "target %s: %s", p->cfg->target_text, sk_strerror(rc));
        relay_conn_end(c, false);
    }
}

static void relay_stream(sk_conn_callbacks *cbs)
{
    relay_copy_client_cbs(cbs);
    cbs->on_open = client_open;
}

const svc_def svc_relay = {
    .name = "relay",
    .summary = "joins each connection to TARGET (sockit relay LISTEN TARGET)",
    .stream = relay_stream,
    .fixed_framing = SK_FRAMING_RAW,
    .start = relay_start,
    .stop = relay_stop,
    .conn_opts = relay_conn_opts,
    .opts = relay_options,
    .opts_title = "relay options (sockit relay LISTEN TARGET, or serve relay ... --target):\n",
    .opts_store = &relay_cli_opts,
    .opts_init = relay_opts_init_store,
};
