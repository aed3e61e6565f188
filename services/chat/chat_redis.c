/* chat_redis.c — the chat server's two connections to Redis (--redis): one
 * for commands, one SUBSCRIBEd to the chat channel, both hiredis async
 * contexts driven by the server's own loop through sk_io (a five-hook
 * adapter below), never a thread and never a blocking call on the loop.
 * This file knows connections, not chat: it parses the URL, connects
 * (again, with backoff, after any failure), times every command out and
 * tells chat_cluster.c when the link is up or down and what the channel
 * delivers. hiredis 0.14 has no command timeouts of its own, so replies are
 * counted in a FIFO of send times (Redis answers in order) and a watchdog
 * resets both connections when the oldest waits too long: a Redis that
 * accepts but never answers costs a reconnect, not the loop. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "chat.h"
#include "chat_redis.h"

/* A command not answered within this is a Redis that is gone or hung. */
#define CMD_TIMEOUT_MS 2000
/* How often the watchdog looks, and pings an idle command connection (a
 * hung Redis shows only as a command that is not answered). */
#define WATCH_MS 500
/* Reconnection backoff: the first retry after MIN, doubling up to MAX. */
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 4000
/* Commands in flight at once: beyond it the link is too slow, and new
 * lines are refused rather than queued without bound. */
#define MAX_PENDING 4096

struct chat_redis {
    chat_room *room;
    sk_loop *loop;
    char host[256]; /* numeric, resolved once at start; "" for unix: */
    int port;
    char path[108];
    int db;
    /* AUTH [USER] PASSWORD before anything else, when a password is given
     * (the URL's userinfo or --redis-password-file). Never logged. */
    char user[128];
    char pass[SK_TOKEN_MAX + 1];
    redisAsyncContext *cmd, *sub;
    bool cmd_ok, sub_ok;           /* connected (and, for sub, subscribed) */
    int setup_left;                /* AUTH and SELECT not yet answered on cmd */
    bool up;                       /* both, and the server was told */
    uint64_t sent_at[MAX_PENDING]; /* FIFO of the command connection's sends */
    unsigned head, pending;
    uint64_t sub_since; /* when the SUBSCRIBE was sent; 0: answered */
    uint64_t backoff_ms, retry_at;
    bool told_down; /* the "unavailable" line was logged for this outage */
    sk_timer *watch;
    chat_redis_events ev;
};

/* ------------------------------------------------------------ adapter */

/* The hiredis event hooks: each context gets one sk_io, created on the
 * first hook and freed by cleanup. */
typedef struct io_glue {
    sk_loop *loop;
    redisAsyncContext *ac;
    sk_io *io;
    int events;
} io_glue;

static void glue_cb(sk_io *io, int fd, int ready, void *ud)
{
    (void)io;
    (void)fd;
    io_glue *g = ud;
    /* Read first: a write after a read that freed the context would use it. */
    if (ready & (SK_READABLE | SK_ERROR)) {
        redisAsyncHandleRead(g->ac);
        return; /* the context may be gone; a pending write comes next time */
    }
    if (ready & SK_WRITABLE)
        redisAsyncHandleWrite(g->ac);
}

static void glue_set(io_glue *g, int events)
{
    if (events == g->events && g->io != NULL)
        return;
    g->events = events;
    if (g->io == NULL) {
        if (sk_io_new(g->loop, g->ac->c.fd, events, glue_cb, g, &g->io) < 0)
            g->io = NULL; /* out of memory: the watchdog times the link out */
        return;
    }
    sk_io_set_events(g->io, events);
}

static void hook_add_read(void *p) { glue_set(p, ((io_glue *)p)->events | SK_READABLE); }
static void hook_del_read(void *p) { glue_set(p, ((io_glue *)p)->events & ~SK_READABLE); }
static void hook_add_write(void *p) { glue_set(p, ((io_glue *)p)->events | SK_WRITABLE); }
static void hook_del_write(void *p) { glue_set(p, ((io_glue *)p)->events & ~SK_WRITABLE); }

static void hook_cleanup(void *p)
{
    io_glue *g = p;
    sk_io_free(g->io);
    free(g);
}

static int attach(redisAsyncContext *ac, sk_loop *loop)
{
    io_glue *g = calloc(1, sizeof *g);
    if (g == NULL)
        return -1;
    g->loop = loop;
    g->ac = ac;
    ac->ev.data = g;
    ac->ev.addRead = hook_add_read;
    ac->ev.delRead = hook_del_read;
    ac->ev.addWrite = hook_add_write;
    ac->ev.delWrite = hook_del_write;
    ac->ev.cleanup = hook_cleanup;
    /* hiredis 0.14 makes its socket without SOCK_CLOEXEC. */
    (void)fcntl(ac->c.fd, F_SETFD, FD_CLOEXEC);
    return 0;
}

/* ---------------------------------------------------------------- URL */

#define URL_FORM "use redis://[[USER]:PASSWORD@]HOST:PORT[/DB] or unix:PATH"

static int parse_url(const char *url, chat_redis *r, char *err, size_t errlen);

int chat_redis_check(const char *url, const char *password_file, char *err, size_t errlen)
{
    chat_redis *tmp = calloc(1, sizeof *tmp);
    if (tmp == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = parse_url(url, tmp, err, errlen);
    if (rc == 0 && tmp->pass[0] && password_file != NULL) {
        snprintf(err, errlen,
                 "give Redis's password in the --redis URL or in "
                 "--redis-password-file, not both");
        rc = -1;
    } else if (rc == 0 && tmp->user[0] && !tmp->pass[0] && password_file == NULL) {
        snprintf(err, errlen,
                 "--redis names the user %s but gives no password (USER:PASSWORD@ "
                 "in the URL, or --redis-password-file)",
                 tmp->user);
        rc = -1;
    }
    OPENSSL_cleanse(tmp->pass, sizeof tmp->pass);
    free(tmp);
    return rc;
}

/* The URL as it may be shown: a password in it becomes "***". */
static const char *shown(const char *url, char *buf, size_t len)
{
    const char *auth = strncmp(url, "redis://", 8) == 0 ? url + 8 : NULL;
    const char *at = auth ? strrchr(auth, '@') : NULL;
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (colon == NULL)
        snprintf(buf, len, "%s", url);
    else
        snprintf(buf, len, "%.*s***%s", (int)(colon + 1 - url), url, at);
    return buf;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decodes n bytes of a URL's userinfo into out (cap bytes with
 * the NUL). -1: a bad %XX, a decoded NUL, or too long. */
static int url_decode(const char *in, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int c = (unsigned char)in[i];
        if (c == '%') {
            int hi = i + 2 < n ? hex_digit(in[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(in[i + 2]) : -1;
            if (lo < 0)
                return -1;
            c = hi * 16 + lo;
            i += 2;
        }
        if (c == 0 || o + 1 >= cap)
            return -1;
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return 0;
}

/* redis://[[USER]:PASSWORD@]HOST:PORT[/DB] or unix:PATH into r (host
 * unresolved yet); USER and PASSWORD percent-encoded as in any URL. */
static int parse_url(const char *url, chat_redis *r, char *err, size_t errlen)
{
    char show[600];
    memset(r->host, 0, sizeof r->host);
    r->path[0] = r->user[0] = r->pass[0] = '\0';
    r->port = 0;
    r->db = 0;
    if (strncmp(url, "unix:", 5) == 0) {
        const char *p = url + 5;
        if (*p == '\0' || strlen(p) >= sizeof r->path) {
            snprintf(err, errlen, "bad --redis %s: unix:PATH needs a path of 1-107 bytes", url);
            return -1;
        }
        strcpy(r->path, p);
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0) {
        snprintf(err, errlen, "bad --redis %s: " URL_FORM, shown(url, show, sizeof show));
        return -1;
    }
    const char *h = url + 8, *at = strrchr(h, '@');
    if (at != NULL) {
        /* USER:PASSWORD, :PASSWORD (the default user) or USER alone. */
        const char *colon = memchr(h, ':', (size_t)(at - h));
        size_t ul = colon ? (size_t)(colon - h) : (size_t)(at - h);
        if (url_decode(h, ul, r->user, sizeof r->user) < 0 ||
            (colon &&
             url_decode(colon + 1, (size_t)(at - colon - 1), r->pass, sizeof r->pass) < 0) ||
            (colon && r->pass[0] == '\0')) {
            OPENSSL_cleanse(r->pass, sizeof r->pass);
            snprintf(err, errlen, "bad --redis %s: a bad USER:PASSWORD@ part; " URL_FORM,
                     shown(url, show, sizeof show));
            return -1;
        }
        h = at + 1;
    }
    const char *colon = strrchr(h, ':');
    const char *slash = colon ? strchr(colon, '/') : NULL;
    size_t hl = colon ? (size_t)(colon - h) : 0;
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { /* [::1] */
        h++;
        hl -= 2;
    }
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    bool port_ok =
        colon && end != colon + 1 && (*end == '\0' || end == slash) && port > 0 && port < 65536;
    long db = 0;
    bool db_ok = true;
    if (port_ok && slash != NULL) {
        char *dend = NULL;
        db = strtol(slash + 1, &dend, 10);
        db_ok = dend != slash + 1 && *dend == '\0' && db >= 0 && db < 100000;
    }
    if (hl == 0 || hl >= sizeof r->host || memchr(h, '/', hl) || !port_ok || !db_ok) {
        OPENSSL_cleanse(r->pass, sizeof r->pass);
        snprintf(err, errlen, "bad --redis %s: " URL_FORM, shown(url, show, sizeof show));
        return -1;
    }
    memcpy(r->host, h, hl);
    r->port = (int)port;
    r->db = (int)db;
    return 0;
}

/* --------------------------------------------------------- the link */

static void link_down(chat_redis *r, const char *why);
static void connect_both(chat_redis *r);

static const char *where(const chat_redis *r, char *buf, size_t len)
{
    if (r->path[0])
        snprintf(buf, len, "unix:%s", r->path);
    else
        snprintf(buf, len, "%s:%d", r->host, r->port);
    return buf;
}

static void maybe_up(chat_redis *r)
{
    if (r->up || !r->cmd_ok || !r->sub_ok)
        return;
    r->up = true;
    r->backoff_ms = 0;
    char w[300];
    sk_log(SK_LOG_INFO, "chat: redis at %s: connected", where(r, w, sizeof w));
    r->told_down = false;
    r->ev.up(r->room);
}

static void on_cmd_connect(const redisAsyncContext *ac, int status)
{
    chat_redis *r = ac->data;
    if (status != REDIS_OK) {
        r->cmd = NULL; /* hiredis frees it */
        link_down(r, ac->errstr);
        return;
    }
    /* Up once AUTH and SELECT said OK too (on_setup_reply). */
    r->cmd_ok = r->setup_left == 0;
    maybe_up(r);
}

static void on_cmd_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    chat_redis *r = ac->data;
    r->cmd = NULL;
    r->cmd_ok = false;
    link_down(r, ac->errstr[0] ? ac->errstr : "connection closed");
}

static void on_sub_connect(const redisAsyncContext *ac, int status)
{
    chat_redis *r = ac->data;
    if (status != REDIS_OK) {
        r->sub = NULL;
        link_down(r, ac->errstr);
    }
}

static void on_sub_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    chat_redis *r = ac->data;
    r->sub = NULL;
    r->sub_ok = false;
    link_down(r, ac->errstr[0] ? ac->errstr : "connection closed");
}

/* Every message of the subscription: ["subscribe", CH, N] once, then
 * ["message", CH, PAYLOAD]. NULL: the context is going away. */
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    chat_redis *r = ac->data;
    redisReply *rep = reply;
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR) {
        /* NOAUTH (a password is required), a wrong DB...: the link is of no
         * use; said once, retried with backoff like a refused connection. */
        link_down(r, rep->str);
        return;
    }
    if (rep == NULL || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 ||
        rep->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = rep->element[0]->str;
    if (strcmp(kind, "subscribe") == 0) {
        r->sub_ok = true;
        r->sub_since = 0;
        maybe_up(r);
    } else if (strcmp(kind, "message") == 0 && rep->element[2]->type == REDIS_REPLY_STRING) {
        r->ev.message(r->room, rep->element[2]->str, rep->element[2]->len);
    }
}

/* The answer to AUTH or SELECT on the command connection: an error
 * (WRONGPASS, DB index out of range) makes the link useless. */
static void on_setup_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)priv;
    chat_redis *r = ac->data;
    redisReply *rep = reply;
    if (rep == NULL)
        return; /* the link went down first */
    if (rep->type == REDIS_REPLY_ERROR) {
        link_down(r, rep->str);
    } else if (--r->setup_left == 0) {
        r->cmd_ok = true;
        maybe_up(r);
    }
}

static redisAsyncContext *open_one(chat_redis *r)
{
    redisAsyncContext *ac =
        r->path[0] ? redisAsyncConnectUnix(r->path) : redisAsyncConnect(r->host, r->port);
    if (ac == NULL)
        return NULL;
    if (ac->err || attach(ac, r->loop) < 0) {
        char w[300];
        if (!r->told_down)
            sk_log(SK_LOG_WARN, "chat: redis at %s: %s", where(r, w, sizeof w),
                   ac->err ? ac->errstr : "out of memory");
        redisAsyncFree(ac);
        return NULL;
    }
    ac->data = r;
    return ac;
}

static void connect_both(chat_redis *r)
{
    r->cmd = open_one(r);
    r->sub = r->cmd ? open_one(r) : NULL;
    if (r->cmd == NULL || r->sub == NULL) {
        link_down(r, "could not connect");
        return;
    }
    redisAsyncSetConnectCallback(r->cmd, on_cmd_connect);
    redisAsyncSetDisconnectCallback(r->cmd, on_cmd_disconnect);
    redisAsyncSetConnectCallback(r->sub, on_sub_connect);
    redisAsyncSetDisconnectCallback(r->sub, on_sub_disconnect);
    /* Both queue their first commands now; hiredis sends them once
     * connected. AUTH, then SELECT, first: a wrong password or a bad DB
     * fails the link at once, with Redis's reason. */
    r->setup_left = (r->pass[0] != '\0') + (r->db != 0);
    bool unsent = false;
    if (r->pass[0]) {
        const char *av[3] = {"AUTH", r->user[0] ? r->user : r->pass, r->pass};
        int n = r->user[0] ? 3 : 2;
        unsent |= chat_redis_argv(r, on_setup_reply, NULL, n, av, NULL) < 0;
        unsent |= redisAsyncCommandArgv(r->sub, on_sub_reply, NULL, n, av, NULL) != REDIS_OK;
    }
    if (r->db != 0)
        unsent |= chat_redis_command(r, on_setup_reply, NULL, "SELECT %d", r->db) < 0;
    if (unsent) {
        link_down(r, "out of memory");
        return;
    }
    r->sub_since = sk_loop_now(r->loop);
    redisAsyncCommand(r->sub, on_sub_reply, NULL, "SUBSCRIBE %s", CHAT_REDIS_CHANNEL);
}

/* Drops both connections (hiredis answers their pending commands with
 * NULL), tells the server once, and schedules a retry. */
static void link_down(chat_redis *r, const char *why)
{
    if (r->room == NULL)
        return; /* stopping */
    char w[300];
    if (!r->told_down) {
        r->told_down = true;
        sk_log(SK_LOG_WARN, "chat: redis at %s unavailable (%s); retrying with backoff",
               where(r, w, sizeof w), why ? why : "error");
    }
    redisAsyncContext *cmd = r->cmd, *sub = r->sub;
    r->cmd = r->sub = NULL;
    r->cmd_ok = r->sub_ok = false;
    bool was_up = r->up;
    r->up = false;
    /* Freeing answers their pending commands with NULL; their disconnect
     * callbacks would land here again. */
    if (cmd) {
        cmd->onDisconnect = NULL;
        redisAsyncFree(cmd);
    }
    if (sub) {
        sub->onDisconnect = NULL;
        redisAsyncFree(sub);
    }
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : BACKOFF_MIN_MS;
    if (r->backoff_ms > BACKOFF_MAX_MS)
        r->backoff_ms = BACKOFF_MAX_MS;
    r->retry_at = sk_loop_now(r->loop) + r->backoff_ms;
    if (was_up)
        r->ev.down(r->room);
}

static void on_ping(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    (void)reply;
    (void)priv;
}

static void watch_tick(sk_timer *t, void *ud)
{
    (void)t;
    chat_redis *r = ud;
    uint64_t now = sk_loop_now(r->loop);
    if (r->cmd == NULL && r->sub == NULL) {
        if (now >= r->retry_at)
            connect_both(r);
        return;
    }
    if (r->pending > 0 && now - r->sent_at[r->head] > CMD_TIMEOUT_MS) {
        link_down(r, "a command timed out");
        return;
    }
    if (r->sub_since != 0 && now - r->sub_since > CMD_TIMEOUT_MS) {
        link_down(r, "SUBSCRIBE timed out");
        return;
    }
    if (r->cmd_ok && r->pending == 0)
        chat_redis_command(r, on_ping, NULL, "PING");
}

/* ------------------------------------------------------------ commands */

typedef struct cmd_req {
    chat_redis *r;
    redisCallbackFn *fn;
    void *priv;
} cmd_req;

/* Every reply of the command connection passes here: it is the next in
 * the FIFO of send times. */
static void cmd_done(redisAsyncContext *ac, void *reply, void *priv)
{
    cmd_req *q = priv;
    chat_redis *r = q->r;
    if (r->pending > 0) {
        r->head = (r->head + 1) % MAX_PENDING;
        r->pending--;
    }
    if (q->fn)
        q->fn(ac, reply, q->priv);
    free(q);
}

bool chat_redis_up(const chat_redis *r) { return r != NULL && r->up; }

bool chat_redis_busy(const chat_redis *r) { return r->pending >= MAX_PENDING - 16; }

/* A request slot for the next command, or NULL (no link, too many in
 * flight, out of memory). */
static cmd_req *cmd_new(chat_redis *r, redisCallbackFn *fn, void *priv)
{
    if (r->cmd == NULL || r->pending >= MAX_PENDING)
        return NULL;
    cmd_req *q = malloc(sizeof *q);
    if (q == NULL)
        return NULL;
    q->r = r;
    q->fn = fn;
    q->priv = priv;
    return q;
}

/* Queued by hiredis (rc REDIS_OK): its send time joins the FIFO that
 * watch_tick checks against CMD_TIMEOUT_MS. Returns 0 or -1. */
static int cmd_queued(chat_redis *r, cmd_req *q, int rc)
{
    if (rc != REDIS_OK) {
        free(q);
        return -1;
    }
    r->sent_at[(r->head + r->pending) % MAX_PENDING] = sk_loop_now(r->loop);
    r->pending++;
    return 0;
}

int chat_redis_command(chat_redis *r, redisCallbackFn *fn, void *priv, const char *fmt, ...)
{
    cmd_req *q = cmd_new(r, fn, priv);
    if (q == NULL)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int rc = redisvAsyncCommand(r->cmd, cmd_done, q, fmt, ap);
    va_end(ap);
    return cmd_queued(r, q, rc);
}

int chat_redis_argv(chat_redis *r, redisCallbackFn *fn, void *priv, int argc, const char **argv,
                    const size_t *lens)
{
    cmd_req *q = cmd_new(r, fn, priv);
    if (q == NULL)
        return -1;
    return cmd_queued(r, q, redisAsyncCommandArgv(r->cmd, cmd_done, q, argc, argv, lens));
}

/* ------------------------------------------------------------ lifetime */

static void redis_free(chat_redis *r)
{
    OPENSSL_cleanse(r->pass, sizeof r->pass);
    free(r);
}

int chat_redis_start(chat_room *room, const char *url, const char *password_file,
                     const chat_redis_events *ev, chat_redis **out, char *err, size_t errlen)
{
    chat_redis *r = calloc(1, sizeof *r);
    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char show[600];
    if (parse_url(url, r, err, errlen) < 0) {
        redis_free(r);
        return -1;
    }
    if (password_file != NULL) {
        size_t n = 0;
        if (sk_secret_load(password_file, "password file", (uint8_t *)r->pass, sizeof r->pass - 1,
                           &n, err, errlen) < 0) {
            redis_free(r);
            return -1;
        }
        r->pass[n] = '\0';
        if (n == 0 || memchr(r->pass, '\0', n) != NULL) {
            snprintf(err, errlen, "password file %s: %s", password_file,
                     n == 0 ? "empty" : "holds a NUL byte");
            redis_free(r);
            return -1;
        }
    }
    if (r->host[0]) {
        /* Resolved once, here, before the loop runs: getaddrinfo blocks. */
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai = NULL;
        int rc = getaddrinfo(r->host, NULL, &hints, &ai);
        if (rc != 0) {
            snprintf(err, errlen, "--redis %s: %s", shown(url, show, sizeof show),
                     gai_strerror(rc));
            redis_free(r);
            return -1;
        }
        char num[NI_MAXHOST];
        rc = getnameinfo(ai->ai_addr, ai->ai_addrlen, num, sizeof num, NULL, 0, NI_NUMERICHOST);
        freeaddrinfo(ai);
        if (rc != 0 || strlen(num) >= sizeof r->host) {
            snprintf(err, errlen, "--redis %s: cannot use this address",
                     shown(url, show, sizeof show));
            redis_free(r);
            return -1;
        }
        strcpy(r->host, num);
    }
    r->room = room;
    r->loop = room->loop;
    r->ev = *ev;
    if (sk_timer_new(r->loop, watch_tick, r, &r->watch) < 0) {
        redis_free(r);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    sk_timer_start(r->watch, WATCH_MS, WATCH_MS);
    *out = r;
    connect_both(r);
    return 0;
}

void chat_redis_stop(chat_redis *r, bool loop_alive)
{
    if (r == NULL)
        return;
    r->room = NULL; /* no more events */
    redisAsyncContext *acs[2] = {r->cmd, r->sub};
    r->cmd = r->sub = NULL;
    for (int i = 0; i < 2; i++) {
        if (acs[i] == NULL)
            continue;
        if (!loop_alive) {
            /* The loop freed its sk_io handles already. */
            free(acs[i]->ev.data);
            acs[i]->ev.cleanup = NULL;
        }
        acs[i]->onDisconnect = NULL;
        redisAsyncFree(acs[i]);
    }
    sk_timer_free(r->watch);
    redis_free(r);
}
