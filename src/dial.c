/* dial.c — sk_conn_connect: a connection to a name, raced over its
 * addresses (Happy Eyeballs v2); the winner becomes the connection's socket. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "conn.h"

/* ------------------------------------------------ connecting to a name
 *
 * Happy Eyeballs v2 (RFC 8305): every resolved address is tried, IPv6 and
 * IPv4 alternating. An attempt that fails starts the next at once; one still
 * pending after SK_CONNECT_ATTEMPT_DELAY_MS starts the next beside it. The
 * first to connect wins and the others are closed; the connection's own
 * timer (timeout_ms) bounds the whole race. Until a winner exists the
 * connection has no socket (c->w.fd is -1), and TLS starts on the winner. */

typedef struct dial_attempt {
    sk_watch w; /* fd -1 when not started or finished */
    struct dialer *d;
} dial_attempt;

typedef struct dialer {
    sk_watch gc; /* parks the dialer until the batch of events is over */
    sk_conn *c;
    sk_timer delay; /* starts the next address beside a pending one */
    int n, next, pending;
    int err, err_at;   /* the last failure and the address it concerns */
    const char *host;  /* the name the certificate must carry, or NULL */
    sk_dial_opts opts; /* family and source (sk_conn_opts.dial), copied */
    char host_buf[SK_ADDR_HOST_MAX];
    struct sockaddr_storage ss[SK_CONNECT_MAX_ADDRS];
    socklen_t sl[SK_CONNECT_MAX_ADDRS];
    dial_attempt att[SK_CONNECT_MAX_ADDRS]; /* att[i] goes to ss[i] */
} dialer;

/* Drops attempt i (lost, failed or abandoned). */
static void attempt_close(dialer *d, int i)
{
    sk__watch_del(d->c->loop, &d->att[i].w);
    close(d->att[i].w.fd);
    d->att[i].w.fd = -1;
    d->pending--;
}

/* The garbage collector's end of a dialer (sk__watch_dispose). */
static void dialer_destroy(sk_watch *w) { free(SK_CONTAINER_OF(w, dialer, gc)); }

/* Ends the race: closes what is still pending. The memory goes after the
 * current batch of events, which may still hold an attempt's watch. */
void sk__conn_dialer_free(sk_conn *c)
{
    dialer *d = c->dialer;
    if (d == NULL)
        return;
    for (int i = 0; i < d->n; i++)
        if (d->att[i].w.fd >= 0)
            attempt_close(d, i);
    sk_timer_stop(&d->delay);
    c->dialer = NULL;
    sk__watch_dispose(c->loop, &d->gc);
}

/* The connection fails with the last attempt's error. */
static void dialer_fail(dialer *d)
{
    sk_conn *c = d->c;
    char text[SK_ADDR_HOST_MAX + 64];
    sk_sockaddr_format((struct sockaddr *)&d->ss[d->err_at], d->sl[d->err_at], text, sizeof text);
    sk__conn_set_reason(c, d->err, "connect to %s: %s", text, sk_strerror(d->err));
    sk__conn_finalize(c);
}

static void attempt_event(sk_watch *w, uint32_t events);

/* Starts the connect to address i; 0 when it is under way. */
static int attempt_start(dialer *d, int i)
{
    int fd = socket(d->ss[i].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int brc = sk__dial_opts_bind(&d->opts, fd);
    if (brc < 0) {
        close(fd);
        return brc;
    }
    /* Success at once (Unix) is reported by EPOLLOUT like the rest; EINTR
     * leaves the connect going on in the background. */
    if (connect(fd, (struct sockaddr *)&d->ss[i], d->sl[i]) < 0 && errno != EINPROGRESS &&
        errno != EINTR) {
        int err = -errno;
        close(fd);
        return err;
    }
    d->att[i].w.fd = fd;
    int err = sk__watch_set(d->c->loop, &d->att[i].w, EPOLLOUT);
    if (err < 0) {
        close(fd);
        d->att[i].w.fd = -1;
        return err;
    }
    d->pending++;
    return 0;
}

/* Starts addresses in order until one is under way (those failing at once
 * are skipped), then the delay before the one after. */
static void dialer_advance(dialer *d)
{
    sk_timer_stop(&d->delay);
    while (d->next < d->n) {
        int i = d->next++;
        int err = attempt_start(d, i);
        if (err == 0) {
            if (d->next < d->n)
                sk_timer_start(&d->delay, SK_CONNECT_ATTEMPT_DELAY_MS, 0);
            return;
        }
        d->err = err;
        d->err_at = i;
    }
}

/* SK_CONNECT_ATTEMPT_DELAY_MS passed with attempts still pending. */
static void dialer_delay(sk_timer *t, void *ud)
{
    (void)t;
    dialer *d = ud;
    dialer_advance(d);
    if (d->pending == 0)
        dialer_fail(d);
}

/* Attempt i connected: it becomes the connection's socket. */
static void dialer_win(dialer *d, int i)
{
    sk_conn *c = d->c;
    int fd = d->att[i].w.fd;
    sk__watch_del(c->loop, &d->att[i].w);
    d->att[i].w.fd = -1;
    d->pending--;
    const char *host = d->host;
    sk_tls_ctx *tls = c->opts->tls;
    sk__conn_dialer_free(c); /* the losers */
    c->w.fd = fd;
    /* The peer's text then needs no getpeername (sk_conn_peer). */
    sk__conn_set_peer(c, (struct sockaddr *)&d->ss[i], d->sl[i]);
    int one = 1;
    /* Ignored for Unix sockets, where it fails harmlessly. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (tls != NULL) {
        int err = sk__tls_new(tls, fd, host, &c->tls);
        if (err < 0) {
            sk__conn_set_reason(c, err, "TLS: %s", sk_strerror(err));
            sk__conn_finalize(c);
            return;
        }
    }
    sk__conn_connected(c);
}

/* An attempt's socket is writable or in error: won, failed, or (spurious)
 * still connecting. */
static void attempt_event(sk_watch *w, uint32_t events)
{
    (void)events;
    dial_attempt *a = SK_CONTAINER_OF(w, dial_attempt, w);
    dialer *d = a->d;
    int i = (int)(a - d->att);
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr == EINPROGRESS || soerr == EALREADY)
        return;
    if (soerr == 0) {
        dialer_win(d, i);
        return;
    }
    attempt_close(d, i);
    d->err = -soerr;
    d->err_at = i;
    dialer_advance(d); /* a failure starts the next address at once */
    if (d->pending == 0)
        dialer_fail(d);
}

int sk_conn_connect(sk_loop *loop, const sk_addr *addr, const sk_conn_opts *opts,
                    const sk_conn_callbacks *cbs, void *ud, int timeout_ms, sk_conn **out)
{
    if (addr->kind != SK_ADDR_TCP && addr->kind != SK_ADDR_UNIX && addr->kind != SK_ADDR_TLS)
        return -EPROTONOSUPPORT;
    /* tls:// needs a client context; a context on a plain address is TLS
     * too (the caller asked for it). */
    if (addr->kind == SK_ADDR_TLS && (opts == NULL || opts->tls == NULL))
        return -EINVAL;
    const sk_dial_opts *dopts = opts ? opts->dial : NULL;
    if (sk__dial_opts_check(dopts, addr, NULL, 0) < 0)
        return -EINVAL;
    dialer *d = calloc(1, sizeof *d);
    if (d == NULL)
        return -ENOMEM;
    if (dopts != NULL)
        d->opts = *dopts;
    d->n = sk__resolve_for_connect(addr, d->ss, d->sl, SK_CONNECT_MAX_ADDRS, NULL, 0);
    if (d->n >= 0)
        d->n = sk__dial_opts_filter(dopts, addr, d->ss, d->sl, d->n, NULL, 0);
    if (d->n < 0) {
        int err = d->n;
        free(d);
        return err;
    }
    owned_cfg *cfg = sk__conn_copy_cfg(opts, cbs);
    sk_conn *c = NULL;
    int err = cfg ? sk__conn_create(loop, -1, &cfg->opts, &cfg->cbs, ud, NULL, true, &c) : -ENOMEM;
    if (err < 0) {
        free(cfg);
        free(d);
        return err;
    }
    c->owned_cfg = cfg;
    c->dialer = d;
    d->c = c;
    d->gc.fd = -1;
    d->gc.destroy = dialer_destroy;
    d->err = -ECONNREFUSED;
    sk__timer_init(&d->delay, loop, dialer_delay, d);
    for (int i = 0; i < d->n; i++)
        d->att[i] = (dial_attempt){.w = {.fd = -1, .on_event = attempt_event}, .d = d};
    /* The name the server's certificate must carry, and its SNI. */
    const char *host = addr->kind != SK_ADDR_UNIX ? addr->host : opts ? opts->tls_host : NULL;
    if (host != NULL) {
        snprintf(d->host_buf, sizeof d->host_buf, "%s", host);
        d->host = d->host_buf;
    }
    dialer_advance(d);
    if (d->pending == 0) {
        /* Every address failed at once: no callbacks, the code says why. */
        err = d->err;
        sk__conn_destroy(c, false);
        return err;
    }
    if (timeout_ms >= 0)
        sk_timer_start(&c->timer, (uint64_t)timeout_ms, 0);
    *out = c;
    return 0;
}
