/* serve.c — `sockit serve`: parses services and options, opens every
 * listener on each worker's loop (SO_REUSEPORT for TCP, a shared socket for
 * Unix), and drains gracefully on SIGINT/SIGTERM. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../services/services.h"
#include "cli.h"

#define MAX_LISTENERS 16
#define MAX_WORKERS 64

typedef struct listener {
    const svc_def *svc;
    sk_addr addr;
    svc_ctx ctx;
    bool datagram;
    sk_limit *limit; /* --max-conns, shared by this listener's workers */
} listener;

typedef struct serve_cfg {
    enum sk_framing framing;
    bool framing_set;
    unsigned max_conns;
    uint32_t idle_ms, frame_ms, drain_ms;
    unsigned backlog, workers;
    size_t max_frame, max_line, max_memory;
    const char *message;
    bool quiet;
    enum sk_log_level level;
} serve_cfg;

struct serve_state;

typedef struct worker {
    int id;
    struct serve_state *st;
    sk_loop *loop;
    sk_server *servers[MAX_LISTENERS];
    sk_dgram *dgrams[MAX_LISTENERS];
    sk_async *cmd;       /* "drain now" from the main thread */
    int draining;        /* servers still draining */
    pthread_t thread;
    bool started;
} worker;

typedef struct serve_state {
    serve_cfg cfg;
    listener ls[MAX_LISTENERS];
    int nls;
    worker ws[MAX_WORKERS];
    int nws;
    sk_signal *sig;
    int signals_seen;
    bool demo_set;
} serve_state;

/* The demo set (SPEC §5.0) and how to talk to each, printed at start. */
static const char *const demo[][3] = {
    {"echo", "127.0.0.1:9000", "connect 127.0.0.1:9000   (or: nc 127.0.0.1 9000)"},
    {"upper", "127.0.0.1:9001", "connect 127.0.0.1:9001   (or: nc 127.0.0.1 9001)"},
    {"greet", "127.0.0.1:9002", "connect 127.0.0.1:9002   (or: nc 127.0.0.1 9002)"},
};

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sockit serve SERVICE [ADDR] [options]\n"
            "       sockit serve SERVICE=ADDR [SERVICE=ADDR ...] [options]\n"
            "       sockit serve [options]          (the demo set on loopback)\n"
            "\n"
            "services:\n"
            "  echo    %s\n"
            "  upper   %s\n"
            "  greet   %s\n"
            "ADDR defaults to 127.0.0.1:9999. Forms: HOST:PORT, tcp://HOST:PORT, [IPv6]:PORT,\n"
            "udp://HOST:PORT, unix:PATH, unix:@NAME, unixgram:PATH. Port 0 picks a free port.\n"
            "\n"
            "options:\n"
            "  --framing raw|line|frame  message framing (default raw)\n"
            "  --max-conns N             refuse peers beyond N open connections (0: no limit)\n"
            "  --idle-timeout SEC        close connections idle that long (0: never, the default)\n"
            "  --frame-timeout SEC       a started frame or line must complete in time (default 30)\n"
            "  --backlog N               listen backlog (default 511)\n"
            "  --workers N               threads, each with its own loop (default 1)\n"
            "  --max-frame BYTES         largest frame (default 16M)\n"
            "  --max-line BYTES          longest line (default 64K)\n"
            "  --max-memory BYTES        budget for all buffered client data (default 256M)\n"
            "  --drain-timeout SEC       on SIGINT/SIGTERM, wait this long for connections (default 5)\n"
            "  --message TEXT            greet: what to send (default \"Thank you for connecting\\r\\n\")\n"
            "  --quiet                   no per-connection log lines\n"
            "  --log-level LEVEL         error, warn, info (default) or debug\n"
            "  -h, --help                this help\n",
            svc_echo.summary, svc_upper.summary, svc_greet.summary);
}

/* ------------------------------------------------------------ parsing */

static int add_listener(serve_state *st, const char *svc_name, const char *addr_text)
{
    if (st->nls == MAX_LISTENERS) {
        cli_err("too many services (max %d)", MAX_LISTENERS);
        return -1;
    }
    const svc_def *svc = svc_find(svc_name);
    if (svc == NULL) {
        cli_err("unknown service \"%s\" (services: %s)", svc_name, svc_names());
        return -1;
    }
    listener *l = &st->ls[st->nls];
    char err[256];
    if (sk_addr_parse(addr_text, &l->addr, err, sizeof err) < 0) {
        cli_err("bad address: %s", err);
        return -1;
    }
    switch (l->addr.kind) {
    case SK_ADDR_TLS:
        cli_err("%s: tls:// is not available yet in this version of sockit", addr_text);
        return -1;
    case SK_ADDR_UDP:
    case SK_ADDR_UNIXGRAM:
        if (svc->datagram == NULL) {
            cli_err("service %s works over streams only, not %s", svc->name, addr_text);
            return -1;
        }
        l->datagram = true;
        break;
    default:
        if (svc->stream == NULL) {
            cli_err("service %s works over datagrams only, not %s", svc->name, addr_text);
            return -1;
        }
        break;
    }
    l->svc = svc;
    st->nls++;
    return 0;
}

static int parse_args(serve_state *st, int argc, char **argv)
{
    serve_cfg *cfg = &st->cfg;
    cfg->framing = SK_FRAMING_RAW;
    cfg->frame_ms = 30000;
    cfg->drain_ms = 5000;
    cfg->backlog = 511;
    cfg->workers = 1;
    cfg->max_frame = SK_DEFAULT_MAX_FRAME;
    cfg->max_line = SK_DEFAULT_MAX_LINE;
    cfg->max_memory = 256u * 1024u * 1024u;
    cfg->message = "Thank you for connecting\r\n";
    cfg->level = SK_LOG_INFO;

    enum { O_FRAMING = 256, O_MAXCONNS, O_IDLE, O_FRAME_TO, O_BACKLOG, O_WORKERS, O_MAXFRAME,
           O_MAXLINE, O_MAXMEM, O_DRAIN, O_MESSAGE, O_QUIET, O_LOGLEVEL };
    static const struct option longopts[] = {
        {"framing", required_argument, NULL, O_FRAMING},
        {"max-conns", required_argument, NULL, O_MAXCONNS},
        {"idle-timeout", required_argument, NULL, O_IDLE},
        {"frame-timeout", required_argument, NULL, O_FRAME_TO},
        {"backlog", required_argument, NULL, O_BACKLOG},
        {"workers", required_argument, NULL, O_WORKERS},
        {"max-frame", required_argument, NULL, O_MAXFRAME},
        {"max-line", required_argument, NULL, O_MAXLINE},
        {"max-memory", required_argument, NULL, O_MAXMEM},
        {"drain-timeout", required_argument, NULL, O_DRAIN},
        {"message", required_argument, NULL, O_MESSAGE},
        {"quiet", no_argument, NULL, O_QUIET},
        {"log-level", required_argument, NULL, O_LOGLEVEL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        const char *v = optarg;
        int bad = 0;
        switch (ch) {
        case 'h': usage(stdout); return 1;
        case O_FRAMING:
            bad = sk_framing_parse(v, &cfg->framing) < 0;
            cfg->framing_set = true;
            break;
        case O_MAXCONNS: bad = cli_parse_uint(v, 0, 10000000, &cfg->max_conns); break;
        case O_IDLE: bad = cli_parse_seconds(v, &cfg->idle_ms); break;
        case O_FRAME_TO: bad = cli_parse_seconds(v, &cfg->frame_ms); break;
        case O_BACKLOG: bad = cli_parse_uint(v, 1, 65535, &cfg->backlog); break;
        case O_WORKERS: bad = cli_parse_uint(v, 1, MAX_WORKERS, &cfg->workers); break;
        case O_MAXFRAME:
            bad = cli_parse_size(v, &cfg->max_frame) < 0 || cfg->max_frame == 0 ||
                  cfg->max_frame > UINT32_MAX;
            break;
        case O_MAXLINE: bad = cli_parse_size(v, &cfg->max_line) < 0 || cfg->max_line == 0; break;
        case O_MAXMEM: bad = cli_parse_size(v, &cfg->max_memory); break;
        case O_DRAIN: bad = cli_parse_seconds(v, &cfg->drain_ms); break;
        case O_MESSAGE: cfg->message = v; break;
        case O_QUIET: cfg->quiet = true; break;
        case O_LOGLEVEL: bad = cli_parse_log_level(v, &cfg->level); break;
        case ':':
            cli_err("option %s needs a value", argv[optind - 1]);
            return -1;
        default:
            cli_err("unknown option \"%s\" (try: sockit serve --help)", argv[optind - 1]);
            return -1;
        }
        if (bad) {
            cli_err("bad value \"%s\" for --%s", v, longopts[ch - O_FRAMING].name);
            return -1;
        }
    }
    int npos = argc - optind;
    char **pos = argv + optind;
    if (npos == 0) {
        st->demo_set = true;
        for (size_t i = 0; i < sizeof demo / sizeof demo[0]; i++)
            if (add_listener(st, demo[i][0], demo[i][1]) < 0)
                return -1;
    } else if (strchr(pos[0], '=') == NULL) {
        if (npos > 2) {
            cli_err("unexpected argument \"%s\" (several services: SERVICE=ADDR ...)", pos[2]);
            return -1;
        }
        if (add_listener(st, pos[0], npos == 2 ? pos[1] : "127.0.0.1:9999") < 0)
            return -1;
    } else {
        for (int i = 0; i < npos; i++) {
            char *eq = strchr(pos[i], '=');
            if (eq == NULL) {
                cli_err("expected SERVICE=ADDR, got \"%s\"", pos[i]);
                return -1;
            }
            *eq = '\0';
            int r = add_listener(st, pos[i], eq + 1);
            *eq = '=';
            if (r < 0)
                return -1;
        }
    }
    for (int i = 0; i < st->nls; i++) {
        listener *l = &st->ls[i];
        l->ctx.name = l->svc->name;
        l->ctx.quiet = cfg->quiet;
        l->ctx.framing = cfg->framing;
        l->ctx.message = cfg->message;
        l->ctx.message_len = strlen(cfg->message);
        if (cfg->framing_set && !l->svc->framing_choice) {
            cli_err("service %s has a fixed framing; --framing does not apply", l->svc->name);
            return -1;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ running */

static void on_drained(sk_server *srv, void *ud)
{
    (void)srv;
    worker *w = ud;
    if (--w->draining == 0)
        sk_loop_stop(w->loop);
}

/* Runs on the worker's own thread: stop accepting, let connections finish. */
static void worker_drain(worker *w)
{
    serve_state *st = w->st;
    for (int i = 0; i < st->nls; i++) {
        if (w->dgrams[i]) {
            sk_dgram_free(w->dgrams[i]);
            w->dgrams[i] = NULL;
        }
    }
    w->draining = 1; /* held until every server has been asked */
    for (int i = 0; i < st->nls; i++) {
        if (w->servers[i]) {
            w->draining++;
            sk_server_drain(w->servers[i], st->cfg.drain_ms, on_drained, w);
        }
    }
    if (--w->draining == 0)
        sk_loop_stop(w->loop);
}

static void on_cmd(sk_async *a, void *ud)
{
    (void)a;
    worker_drain(ud);
}

static void on_signal(sk_signal *s, int signo, void *ud)
{
    (void)s;
    serve_state *st = ud;
    if (++st->signals_seen > 1) {
        /* A second signal: stop waiting for connections. */
        cli_err("%s again: stopping now", strsignal(signo));
        for (int i = 0; i < st->nws; i++)
            sk_loop_stop(st->ws[i].loop);
        return;
    }
    cli_err("%s: draining connections (up to %.1f s; again to stop now)", strsignal(signo),
            st->cfg.drain_ms / 1000.0);
    for (int i = 1; i < st->nws; i++)
        sk_async_send(st->ws[i].cmd);
    worker_drain(&st->ws[0]);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    int err = sk_loop_run(w->loop);
    if (err < 0)
        cli_err("worker %d: event loop failed: %s", w->id, sk_strerror(err));
    return NULL;
}

static void fill_server_opts(const serve_state *st, listener *l, sk_server_opts *o)
{
    const serve_cfg *cfg = &st->cfg;
    sk_server_opts_init(o);
    o->stream.framing = cfg->framing;
    o->stream.max_frame = cfg->max_frame;
    o->stream.max_line = cfg->max_line;
    o->stream.idle_timeout_ms = cfg->idle_ms;
    o->stream.frame_timeout_ms = cfg->frame_ms;
    /* One cap for the whole process: workers share it through st->limit. */
    o->max_conns = 0;
    o->limit = l->limit;
    o->backlog = (int)cfg->backlog;
    o->reuseport = cfg->workers > 1;
    o->ud = &l->ctx;
    o->log_name = cfg->quiet ? NULL : l->svc->name;
    l->svc->stream(&o->cbs);
}

/* The readiness line: the address actually bound (a host name resolved,
 * port 0 replaced by the kernel's choice), in the form ADDR accepts. */
static void print_listening(const listener *l, int fd)
{
    char text[400];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if ((l->addr.kind == SK_ADDR_TCP || l->addr.kind == SK_ADDR_UDP) &&
        getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        char bound[300];
        sk_sockaddr_format((struct sockaddr *)&ss, sl, bound, sizeof bound);
        snprintf(text, sizeof text, "%s%s", l->addr.kind == SK_ADDR_UDP ? "udp://" : "", bound);
    } else {
        sk_addr_format(&l->addr, text, sizeof text);
    }
    sk_log(SK_LOG_ERROR, "%s listening on %s", l->svc->name, text);
}

/* Opens listener i on every worker. Worker 0 creates the socket; TCP
 * workers bind their own with SO_REUSEPORT on the same (possibly
 * kernel-chosen) port, Unix workers share worker 0's socket. Datagram
 * services run on worker 0 only. */
static int open_listener(serve_state *st, int i)
{
    listener *l = &st->ls[i];
    char err[300];
    if (l->datagram) {
        int rc = sk_dgram_open(st->ws[0].loop, &l->addr, 1, l->svc->datagram, &l->ctx,
                               &st->ws[0].dgrams[i], err, sizeof err);
        if (rc < 0) {
            cli_err("%s: %s", l->svc->name, err[0] ? err : sk_strerror(rc));
            return -1;
        }
        print_listening(l, sk_dgram_fd(st->ws[0].dgrams[i]));
        return 0;
    }
    if (st->cfg.max_conns && sk_limit_new(st->cfg.max_conns, &l->limit) < 0) {
        cli_err("out of memory");
        return -1;
    }
    sk_server_opts o;
    fill_server_opts(st, l, &o);
    int rc = sk_server_listen(st->ws[0].loop, &l->addr, &o, &st->ws[0].servers[i], err, sizeof err);
    if (rc < 0) {
        cli_err("%s: %s", l->svc->name, err[0] ? err : sk_strerror(rc));
        return -1;
    }
    sk_addr addr = l->addr;
    if (addr.kind == SK_ADDR_TCP)
        addr.port = (uint16_t)sk_server_port(st->ws[0].servers[i]);
    for (int w = 1; w < st->nws; w++) {
        fill_server_opts(st, l, &o);
        if (addr.kind == SK_ADDR_UNIX) {
            o.listen_fd = fcntl(sk_server_fd(st->ws[0].servers[i]), F_DUPFD_CLOEXEC, 0);
            if (o.listen_fd < 0) {
                cli_err("%s: dup: %s", l->svc->name, strerror(errno));
                return -1;
            }
        }
        rc = sk_server_listen(st->ws[w].loop, &addr, &o, &st->ws[w].servers[i], err, sizeof err);
        if (rc < 0) {
            if (o.listen_fd >= 0)
                close(o.listen_fd);
            cli_err("%s (worker %d): %s", l->svc->name, w, err[0] ? err : sk_strerror(rc));
            return -1;
        }
    }
    print_listening(l, sk_server_fd(st->ws[0].servers[i]));
    return 0;
}

static void free_all(serve_state *st)
{
    /* Worker 0 last: it created the Unix socket files and removes them. */
    for (int i = st->nws - 1; i >= 0; i--) {
        sk_loop_free(st->ws[i].loop);
        st->ws[i].loop = NULL;
    }
    for (int i = 0; i < st->nls; i++)
        sk_limit_free(st->ls[i].limit);
}

int cmd_serve(int argc, char **argv)
{
    serve_state *st = calloc(1, sizeof *st);
    if (st == NULL) {
        cli_err("out of memory");
        return EXIT_RUNTIME;
    }
    int rc = parse_args(st, argc, argv);
    if (rc != 0) {
        free(st);
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    }
    cli_log_to_stderr(st->cfg.level);
    sk_mem_set_budget(st->cfg.max_memory);
    int status = EXIT_RUNTIME;
    st->nws = (int)st->cfg.workers;
    for (int w = 0; w < st->nws; w++) {
        st->ws[w].id = w;
        st->ws[w].st = st;
        int err = sk_loop_new(&st->ws[w].loop);
        if (err == 0 && w > 0)
            err = sk_async_new(st->ws[w].loop, on_cmd, &st->ws[w], &st->ws[w].cmd);
        if (err < 0) {
            cli_err("cannot create an event loop: %s", sk_strerror(err));
            goto out;
        }
    }
    /* Signals are blocked before any worker thread starts, so only the
     * signalfd of the main loop ever sees them. */
    static const int sigs[] = {SIGINT, SIGTERM};
    int err = sk_signal_new(st->ws[0].loop, sigs, 2, on_signal, st, &st->sig);
    if (err < 0) {
        cli_err("cannot watch signals: %s", sk_strerror(err));
        goto out;
    }
    for (int i = 0; i < st->nls; i++)
        if (open_listener(st, i) < 0)
            goto out;
    if (st->demo_set) {
        for (size_t i = 0; i < sizeof demo / sizeof demo[0]; i++)
            sk_log(SK_LOG_ERROR, "try %-6s %s %s", demo[i][0], cli_prog, demo[i][2]);
        sk_log(SK_LOG_ERROR, "Ctrl-C stops the server");
    }
    for (int w = 1; w < st->nws; w++) {
        if (pthread_create(&st->ws[w].thread, NULL, worker_main, &st->ws[w]) != 0) {
            cli_err("cannot start worker %d", w);
            for (int j = 1; j < w; j++) {
                sk_loop_stop(st->ws[j].loop);
                pthread_join(st->ws[j].thread, NULL);
            }
            goto out;
        }
        st->ws[w].started = true;
    }
    err = sk_loop_run(st->ws[0].loop);
    for (int w = 1; w < st->nws; w++) {
        /* Worker 0 stopped: after a drain every worker stops by itself; make
         * sure of it in any other case. */
        if (st->signals_seen > 1 || err < 0)
            sk_loop_stop(st->ws[w].loop);
        pthread_join(st->ws[w].thread, NULL);
    }
    if (err < 0) {
        cli_err("event loop failed: %s", sk_strerror(err));
        goto out;
    }
    status = EXIT_OK;
out:
    free_all(st);
    free(st);
    return status;
}
