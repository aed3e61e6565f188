/* serve.c — `sockit serve`: parses services and options, opens every
 * listener on each worker's loop (SO_REUSEPORT for TCP, a shared socket for
 * Unix), drains gracefully on SIGINT/SIGTERM, and prints the library's
 * counters on SIGUSR1 and every --stats seconds. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../services/chat/chat.h"
#include "../services/exec/exec.h"
#include "../services/files/files.h"
#include "../services/relay/relay.h"
#include "../services/services.h"
#include "cli.h"

#define MAX_LISTENERS 16
#define MAX_WORKERS   64
/* Options of all services together, each name once. */
#define MAX_SVC_OPTS 64
/* Datagrams per second answered to one source over udp:// and unixgram:
 * (--udp-rate): far above what a client of an echo needs, far below what
 * would make the server a useful flood reflector. */
#define DEFAULT_UDP_RATE 1000
/* Descriptors left out of the per-service shares of the descriptor limit
 * when several stream services share the process without --max-conns: the
 * process's own (stdio, loops, signal and timer descriptors, listeners,
 * their accept reserves, token and log files) and exec's pipes to its
 * children while they start. */
#define FD_RESERVE 64
#define STR_(x)    #x
#define STR(x)     STR_(x)

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
    bool max_conns_set;
    unsigned udp_rate; /* --udp-rate: replies per second per source; 0: no limit */
    uint32_t idle_ms, frame_ms, drain_ms;
    uint32_t stats_ms; /* --stats: print the counters this often (0: never) */
    unsigned backlog, workers;
    size_t max_frame, max_line, max_memory;
    bool max_line_set;
    exec_opts *exec;      /* the exec service's options (its table fills them) */
    files_opts *files;    /* the files service's */
    const char *svc_only; /* a service's option given: checked against the listeners */
    const char *message;
    bool quiet;
    enum sk_log_level level;
    const char *cert, *key;  /* tls:// listeners */
    bool handshake_set;      /* --handshake-timeout given (exec, files or tls://) */
    unsigned max_handshakes; /* tls://: unfinished TLS handshakes at once (0: no cap) */
    bool max_handshakes_set;
} serve_cfg;

struct serve_state;

typedef struct worker {
    int id;
    struct serve_state *st;
    sk_loop *loop;
    sk_server *servers[MAX_LISTENERS];
    sk_dgram *dgrams[MAX_LISTENERS];
    sk_async *cmd; /* "drain now" from the main thread */
    int draining;  /* servers still draining */
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
    sk_timer *stats_timer;
    int signals_seen;
    bool demo_set;
    bool exec_token_created; /* the demo set made its exec token file */
    sk_tls_ctx *tls;         /* --cert/--key, shared by every tls:// listener */
    sk_acl *acl;             /* --allow/--deny (and their -file forms), or NULL */
} serve_state;

/* The demo set's exec token: created (mode 600, random) if missing. */
#define DEMO_TOKEN EXEC_DEMO_TOKEN

/* The demo set and how to talk to each, printed at start. */
static const char *const demo[][3] = {
    {"echo", "127.0.0.1:9000", "connect 127.0.0.1:9000   (or: nc 127.0.0.1 9000)"},
    {"upper", "127.0.0.1:9001", "connect 127.0.0.1:9001   (or: nc 127.0.0.1 9001)"},
    {"greet", "127.0.0.1:9002", "connect 127.0.0.1:9002   (or: nc 127.0.0.1 9002)"},
    {"chat", "127.0.0.1:9003", "chat 127.0.0.1:9003      (or: nc 127.0.0.1 9003)"},
    {"files", "127.0.0.1:9004", "put 127.0.0.1:9004 FILE    (then: ls 127.0.0.1:9004, get ...)"},
    {"exec", "127.0.0.1:9005", "(printed with the token file in use)"},
};

static void usage(FILE *out)
{
    fputs("usage: sockit serve SERVICE [ADDR] [options]\n"
          "       sockit serve SERVICE=ADDR [SERVICE=ADDR ...] [options]\n"
          "       sockit serve [options]          (the demo set on loopback)\n"
          "\n"
          "services:\n",
          out);
    for (size_t i = 0; svc_at(i) != NULL; i++)
        fprintf(out, "  %-8s%s\n", svc_at(i)->name, svc_at(i)->summary);
    fputs(
        "ADDR defaults to 127.0.0.1:9999. Forms: HOST:PORT, tcp://HOST:PORT, [IPv6]:PORT,\n"
        "udp://HOST:PORT, unix:PATH, unix:@NAME, unixgram:PATH. Port 0 picks a free port.\n"
        "\n"
        "options:\n"
        "  --framing raw|line|frame  message framing (default raw)\n"
        "  --max-conns N             refuse peers beyond N open connections (0: no limit;\n"
        "                            default: no limit for one stream service; with several,\n"
        "                            each gets (descriptor limit - " STR(
            FD_RESERVE) ") / services)\n"
                        "  --idle-timeout SEC        close connections idle that long (0: never, "
                        "the default)\n"
                        "  --frame-timeout SEC       a started frame or line must complete in time "
                        "(default 30)\n"
                        "  --backlog N               listen backlog (default 511)\n"
                        "  --workers N               threads, each with its own loop (default 1)\n"
                        "  --max-frame BYTES         largest frame (default 16M)\n"
                        "  --max-line BYTES          longest line (default 64K)\n"
                        "  --max-memory BYTES        budget for all buffered client data (default "
                        "256M)\n"
                        "  --drain-timeout SEC       on SIGINT/SIGTERM, wait this long for "
                        "connections (default 5)\n"
                        "  --message TEXT            greet: what to send (default \"Thank you for "
                        "connecting\\r\\n\")\n"
                        "  --quiet                   no per-connection log lines\n"
                        "  --stats SEC               print the counters every SEC seconds (also on "
                        "SIGUSR1)\n"
                        "  --log-level LEVEL         error, warn, info (default) or debug\n",
        out);
    /* In parts: C11 compilers need only take string literals of 4095 bytes. */
    fputs("network access lists (every TCP, tls:// and UDP listener; not Unix "
          "sockets):\n" CLI_ACL_USAGE,
          out);
    fputs("  --udp-rate N              udp://, unixgram: answer one source (address and port)\n"
          "                            at most N times a second (default " STR(
              DEFAULT_UDP_RATE) "; 0: no limit);\n"
                                "                            datagrams from this endpoint itself "
                                "or from a source\n"
                                "                            port below 1024 are never answered\n"
                                "tls:// options (any stream service; TLS 1.2+, 1.3 preferred):\n"
                                "  --cert FILE               PEM certificate (chain) of the server "
                                "(sockit cert NAME)\n"
                                "  --key FILE                PEM private key of the certificate\n"
                                "  --handshake-timeout SEC   the TLS handshake must finish in SEC "
                                "(default 10)\n"
                                "  --max-handshakes N        unfinished TLS handshakes at once, "
                                "all listeners (default\n"
                                "                            1024; 0: no cap); beyond it the "
                                "oldest is dropped, the\n"
                                "                            newcomer's source's own first. Each "
                                "counts 48K in\n"
                                "                            --max-memory until done; past that "
                                "budget new\n"
                                "                            handshakes are refused\n",
          out);
    /* Each service's section, from its own option table (registry order). */
    for (size_t i = 0; svc_at(i) != NULL; i++) {
        const svc_def *d = svc_at(i);
        if (d->opts == NULL)
            continue;
        fputs(d->opts_title, out);
        for (const svc_opt *o = d->opts; o->name != NULL; o++)
            fputs(o->help, out);
    }
    fputs("  -h, --help                this help\n", out);
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
        cli_err("bad address: %s%s", err, cli_addr_hint(addr_text));
        return -1;
    }
    switch (l->addr.kind) {
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

/* Points the exec listeners at the exec options and checks them now, so
 * that a missing or unsafe token file is a usage error before anything
 * starts. The demo set gets a token file made for it if there is none. */
static int prepare_exec(serve_state *st)
{
    serve_cfg *cfg = &st->cfg;
    bool any = false;
    for (int i = 0; i < st->nls; i++) {
        if (st->ls[i].svc == &svc_exec) {
            st->ls[i].ctx.exec = cfg->exec;
            any = true;
        }
    }
    if (!any)
        return 0;
    char err[400];
    if (st->demo_set && cfg->exec->token_file == NULL) {
        cfg->exec->token_file = DEMO_TOKEN;
        int made = exec_demo_token(DEMO_TOKEN, err, sizeof err);
        if (made < 0) {
            cli_err("%s", err);
            return -1;
        }
        st->exec_token_created = made > 0;
    }
    if (exec_check_opts(cfg->exec, err, sizeof err) < 0) {
        cli_err("%s", err);
        return -1;
    }
    return 0;
}

/* Points the files listeners at the files options and checks them now: a
 * missing root, or a listener beyond loopback without a token, is a usage
 * error before anything starts. --token-file, --max-unauth and
 * --handshake-timeout are shared with exec, and so is the demo set's token
 * file: loopback TCP without a token would serve every local user. */
static int prepare_files(serve_state *st)
{
    serve_cfg *cfg = &st->cfg;
    const sk_addr *addrs[MAX_LISTENERS];
    int n = 0;
    for (int i = 0; i < st->nls; i++) {
        if (st->ls[i].svc == &svc_files) {
            st->ls[i].ctx.files = cfg->files;
            addrs[n++] = &st->ls[i].addr;
        }
    }
    if (n == 0)
        return 0;
    /* The options both declare reached both tables; the demo set's token
     * file, made for exec, serves files too. */
    if (cfg->files->token_file == NULL)
        cfg->files->token_file = cfg->exec->token_file;
    char err[400];
    if (st->demo_set && cfg->files->root == NULL) {
        if (files_demo_root(FILES_DEMO_ROOT, err, sizeof err) < 0) {
            cli_err("%s", err);
            return -1;
        }
        cfg->files->root = FILES_DEMO_ROOT;
    }
    if (files_check_opts(cfg->files, addrs, n, err, sizeof err) < 0) {
        cli_err("%s", err);
        return -1;
    }
    return 0;
}

/* --allow, --deny, --allow-file, --deny-file: rules for every network
 * listener. --allow once named exec's programs; a value that is not an
 * address says where that went. */
static int add_acl(serve_state *st, bool deny, bool file, const char *v)
{
    return cli_acl_add(&st->acl, deny, file, v, "; to limit exec's programs use --allow-cmd");
}

/* The getopt table: the common options, then every service's own from
 * its table, each name once (a name two services declare, like exec's and
 * files' --token-file, sets both), then --help. Service options get the
 * values first_val, first_val + 1, ... Returns how many there are. */
static size_t build_longopts(const struct option *common, size_t ncommon, struct option *out,
                             int first_val)
{
    memcpy(out, common, ncommon * sizeof *common);
    size_t n = 0;
    for (size_t i = 0; svc_at(i) != NULL; i++) {
        for (const svc_opt *o = svc_at(i)->opts; o != NULL && o->name != NULL; o++) {
            bool seen = o->kind == SVC_OPT_NOTE;
            for (size_t j = 0; j < n && !seen; j++)
                seen = strcmp(out[ncommon + j].name, o->name) == 0;
            if (seen || n == MAX_SVC_OPTS)
                continue;
            out[ncommon + n] =
                (struct option){o->name, o->kind == SVC_OPT_FLAG ? no_argument : required_argument,
                                NULL, first_val + (int)n};
            n++;
        }
    }
    out[ncommon + n] = (struct option){"help", no_argument, NULL, 'h'};
    out[ncommon + n + 1] = (struct option){NULL, 0, NULL, 0};
    return n;
}

/* Stores v as the option o of a service's table says, at p. */
static int set_one(const svc_opt *o, void *p, const char *v)
{
    switch (o->kind) {
    case SVC_OPT_FLAG: *(bool *)p = true; return 0;
    case SVC_OPT_TEXT: *(const char **)p = v; return 0;
    case SVC_OPT_UINT: return cli_parse_uint(v, o->min, o->max, p) != 0 ? -1 : 0;
    case SVC_OPT_SECONDS: {
        uint32_t ms;
        if (cli_parse_seconds(v, &ms) != 0 || (o->min && ms == 0))
            return -1;
        *(uint32_t *)p = ms;
        return 0;
    }
    case SVC_OPT_BYTES: {
        size_t n;
        if (cli_parse_size(v, &n) != 0 || (o->min && n == 0))
            return -1;
        *(uint64_t *)p = n;
        return 0;
    }
    case SVC_OPT_NOTE: break;
    }
    return -1;
}

/* Sets the option name in every service whose table declares it. */
static int set_svc_opt(const char *name, const char *v)
{
    for (size_t i = 0; svc_at(i) != NULL; i++) {
        const svc_def *d = svc_at(i);
        for (const svc_opt *o = d->opts; o != NULL && o->name != NULL; o++)
            if (o->kind != SVC_OPT_NOTE && strcmp(o->name, name) == 0 &&
                set_one(o, (char *)d->opts_store + o->off, v) < 0)
                return -1;
    }
    return 0;
}

/* A service's option given without a listener of a service that declares
 * it is a usage error, named from the tables ("--timeout applies to the
 * exec service only"). --handshake-timeout also bounds tls:// handshakes. */
static int check_svc_opts(const serve_state *st, const struct option *opts, size_t n,
                          const bool *given, bool tls)
{
    for (size_t j = 0; j < n; j++) {
        if (!given[j] || (tls && strcmp(opts[j].name, "handshake-timeout") == 0))
            continue;
        char whose[120] = "";
        size_t len = 0;
        int count = 0;
        bool used = false;
        for (size_t i = 0; svc_at(i) != NULL; i++) {
            const svc_def *d = svc_at(i);
            bool declares = false;
            for (const svc_opt *o = d->opts; o != NULL && o->name != NULL; o++)
                declares =
                    declares || (o->kind != SVC_OPT_NOTE && strcmp(o->name, opts[j].name) == 0);
            if (!declares)
                continue;
            len += (size_t)snprintf(whose + len, sizeof whose - len, "%s%s", count ? " and " : "",
                                    d->name);
            count++;
            for (int l = 0; l < st->nls; l++)
                used = used || st->ls[l].svc == d;
        }
        if (!used) {
            cli_err("--%s applies to the %s service%s only", opts[j].name, whose,
                    count > 1 ? "s" : "");
            return -1;
        }
    }
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
    cfg->max_handshakes = SK_TLS_DEFAULT_MAX_HANDSHAKES;
    cfg->message = "Thank you for connecting\r\n";
    cfg->level = SK_LOG_INFO;
    cfg->udp_rate = DEFAULT_UDP_RATE;
    for (size_t i = 0; svc_at(i) != NULL; i++)
        if (svc_at(i)->opts_init != NULL)
            svc_at(i)->opts_init(svc_at(i)->opts_store);
    cfg->exec = svc_exec.opts_store;
    cfg->files = svc_files.opts_store;

    enum {
        O_FRAMING = 256,
        O_MAXCONNS,
        O_IDLE,
        O_FRAME_TO,
        O_BACKLOG,
        O_WORKERS,
        O_MAXFRAME,
        O_MAXLINE,
        O_MAXMEM,
        O_DRAIN,
        O_MESSAGE,
        O_QUIET,
        O_LOGLEVEL,
        O_CERT,
        O_KEY,
        O_STATS,
        O_UDPRATE,
        O_MAXHS,
        O_NETALLOW,
        O_NETDENY,
        O_ALLOWFILE,
        O_DENYFILE,
        O_NCOMMON
    };
    /* The common options; each service's own follow (svc_longopts). */
    static const struct option common[] = {
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
        {"cert", required_argument, NULL, O_CERT},
        {"key", required_argument, NULL, O_KEY},
        {"stats", required_argument, NULL, O_STATS},
        {"udp-rate", required_argument, NULL, O_UDPRATE},
        {"max-handshakes", required_argument, NULL, O_MAXHS},
        {"allow", required_argument, NULL, O_NETALLOW},
        {"deny", required_argument, NULL, O_NETDENY},
        {"allow-file", required_argument, NULL, O_ALLOWFILE},
        {"deny-file", required_argument, NULL, O_DENYFILE},
    };
    struct option longopts[sizeof common / sizeof common[0] + MAX_SVC_OPTS + 2];
    size_t nsvc = build_longopts(common, sizeof common / sizeof common[0], longopts, O_NCOMMON);
    bool given[MAX_SVC_OPTS] = {false};
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h46", longopts, NULL)) != -1) {
        const char *v = optarg;
        int bad = 0;
        switch (ch) {
        case 'h': usage(stdout); return 1;
        case '4':
        case '6': {
            /* The relay's -4/-6: its table's --ipv4/--ipv6, so that the
             * "applies to the relay service only" check covers them. */
            const char *name = ch == '4' ? "ipv4" : "ipv6";
            for (size_t j = 0; j < nsvc; j++)
                if (strcmp(longopts[(O_NCOMMON - O_FRAMING) + j].name, name) == 0)
                    given[j] = true;
            (void)set_svc_opt(name, NULL);
            break;
        }
        case O_FRAMING:
            bad = sk_framing_parse(v, &cfg->framing) < 0;
            cfg->framing_set = true;
            break;
        case O_MAXCONNS:
            bad = cli_parse_uint(v, 0, 10000000, &cfg->max_conns);
            cfg->max_conns_set = true;
            break;
        case O_IDLE:
            bad = cli_parse_seconds(v, &cfg->idle_ms);
            cfg->exec->idle_ms = cfg->idle_ms;  /* exec: between commands */
            cfg->files->idle_ms = cfg->idle_ms; /* files has its own default otherwise */
            break;
        case O_FRAME_TO: bad = cli_parse_seconds(v, &cfg->frame_ms); break;
        case O_BACKLOG: bad = cli_parse_uint(v, 1, 65535, &cfg->backlog); break;
        case O_WORKERS: bad = cli_parse_uint(v, 1, MAX_WORKERS, &cfg->workers); break;
        case O_MAXFRAME:
            bad = cli_parse_size(v, &cfg->max_frame) < 0 || cfg->max_frame == 0 ||
                  cfg->max_frame > UINT32_MAX;
            break;
        case O_MAXLINE:
            bad = cli_parse_size(v, &cfg->max_line) < 0 || cfg->max_line == 0;
            cfg->max_line_set = true;
            break;
        case O_MAXMEM: bad = cli_parse_size(v, &cfg->max_memory); break;
        case O_DRAIN: bad = cli_parse_seconds(v, &cfg->drain_ms); break;
        case O_MESSAGE: cfg->message = v; break;
        case O_QUIET: cfg->quiet = true; break;
        case O_LOGLEVEL: bad = cli_parse_log_level(v, &cfg->level); break;
        case O_NETALLOW:
        case O_NETDENY:
        case O_ALLOWFILE:
        case O_DENYFILE:
            if (add_acl(st, ch == O_NETDENY || ch == O_DENYFILE,
                        ch == O_ALLOWFILE || ch == O_DENYFILE, v) < 0)
                return -1;
            break;
        case O_CERT: cfg->cert = v; break;
        case O_KEY: cfg->key = v; break;
        case O_STATS: bad = cli_parse_seconds(v, &cfg->stats_ms) < 0 || cfg->stats_ms == 0; break;
        case O_UDPRATE: bad = cli_parse_uint(v, 0, 100000000, &cfg->udp_rate); break;
        case O_MAXHS:
            bad = cli_parse_uint(v, 0, 10000000, &cfg->max_handshakes);
            cfg->max_handshakes_set = true;
            break;
        case ':': cli_err("option %s needs a value", argv[optind - 1]); return -1;
        default:
            if (ch >= O_NCOMMON && (size_t)(ch - O_NCOMMON) < nsvc) {
                const char *name = longopts[ch - O_FRAMING].name;
                bad = set_svc_opt(name, v) < 0;
                given[ch - O_NCOMMON] = true;
                if (strcmp(name, "handshake-timeout") == 0)
                    cfg->handshake_set = true; /* tls:// listeners' too */
                break;
            }
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
    } else if (npos == 3 && strcmp(pos[0], "relay") == 0) {
        /* `sockit relay LISTEN TARGET` arrives here as `relay LISTEN TARGET`. */
        relay_cli_opts.target = pos[2];
        if (add_listener(st, pos[0], pos[1]) < 0)
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
    bool chat = false, tls = false;
    for (int i = 0; i < st->nls; i++) {
        listener *l = &st->ls[i];
        chat = chat || l->svc == &svc_chat;
        tls = tls || l->addr.kind == SK_ADDR_TLS;
        l->ctx.name = l->svc->name;
        l->ctx.quiet = cfg->quiet;
        l->ctx.framing = cfg->framing;
        l->ctx.message = cfg->message;
        l->ctx.message_len = strlen(cfg->message);
        l->ctx.max_line = cfg->max_line_set || !l->svc->max_line ? cfg->max_line : l->svc->max_line;
        l->ctx.line_timeout_ms = cfg->frame_ms;
        l->ctx.max_queue = chat_cli_opts.max_queue;
        l->ctx.max_rate = chat_cli_opts.max_rate;
        l->ctx.max_memory = cfg->max_memory;
        /* The demo set applies --framing to the services that take one. */
        if (cfg->framing_set && !l->svc->framing_choice && !st->demo_set) {
            cli_err("service %s has a fixed framing; --framing does not apply", l->svc->name);
            return -1;
        }
    }
    if (check_svc_opts(st, longopts + (O_NCOMMON - O_FRAMING), nsvc, given, tls) < 0)
        return -1;
    char rerr[300];
    if (chat && chat_cli_opts.redis != NULL &&
        chat_redis_check(chat_cli_opts.redis, chat_cli_opts.redis_password_file, rerr,
                         sizeof rerr) < 0) {
        cli_err("%s", rerr);
        return -1;
    }
    if (chat && chat_cli_opts.redis == NULL && chat_cli_opts.redis_password_file != NULL) {
        cli_err("--redis-password-file applies with --redis URL only");
        return -1;
    }
    if (tls && (cfg->cert == NULL || cfg->key == NULL)) {
        cli_err("a tls:// address needs --cert FILE and --key FILE (try: sockit cert NAME)");
        return -1;
    }
    if (!tls && (cfg->cert != NULL || cfg->key != NULL)) {
        cli_err("--cert and --key apply to tls:// addresses only");
        return -1;
    }
    if (!tls && cfg->max_handshakes_set) {
        cli_err("--max-handshakes applies to tls:// addresses only");
        return -1;
    }
    if (tls && cli_tls_check_server_files(cfg->cert, cfg->key) < 0)
        return -1;
    if (tls) {
        char err[600];
        if (sk_tls_server_new(cfg->cert, cfg->key, &st->tls, err, sizeof err) < 0) {
            cli_err("%s", err);
            return -1;
        }
    }
    for (int i = 0; i < st->nls; i++) {
        char err[400];
        if (st->ls[i].svc == &svc_relay && relay_check_opts(cfg->quiet, err, sizeof err) < 0) {
            cli_err("%s", err);
            return -1;
        }
    }
    /* exec first: the demo set's token file it makes serves files too. */
    if (prepare_exec(st) < 0)
        return -1;
    return prepare_files(st);
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
    for (int i = 0; i < st->nls; i++)
        if (w->id == 0 && st->ls[i].svc->drain != NULL)
            st->ls[i].svc->drain(&st->ls[i].ctx);
    w->draining = 1; /* held until every server has been asked */
    for (int i = 0; i < st->nls; i++) {
        if (w->servers[i]) {
            w->draining++;
            sk_server_drain(w->servers[i], (int)st->cfg.drain_ms, on_drained, w);
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

/* One line of the library's counters on stderr (format: sk_stats_format;
 * documented in sockit(1)). */
static void print_stats(void)
{
    sk_stats s;
    char text[SK_STATS_TEXT_MAX];
    sk_stats_get(&s);
    sk_stats_format(&s, text, sizeof text);
    cli_err("stats %s", text);
}

static void on_stats_timer(sk_timer *t, void *ud)
{
    (void)t;
    (void)ud;
    print_stats();
}

static void on_signal(sk_signal *s, int signo, void *ud)
{
    (void)s;
    serve_state *st = ud;
    if (signo == SIGUSR1) {
        print_stats();
        return;
    }
    if (st->stats_timer != NULL) /* it would keep the drained loop running */
        sk_timer_stop(st->stats_timer);
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
    /* A one_loop service listens on worker 0 alone, with the whole limit. */
    bool spread = cfg->workers > 1 && !l->svc->one_loop;
    sk_server_opts_init(o);
    o->conn.framing = l->svc->framing_choice ? cfg->framing : l->svc->fixed_framing;
    o->conn.max_frame = cfg->max_frame;
    o->conn.max_line = l->ctx.max_line;
    o->conn.idle_timeout_ms = cfg->idle_ms;
    o->conn.frame_timeout_ms = cfg->frame_ms;
    /* One cap for the whole process: workers share it through l->limit. */
    o->max_conns = 0;
    o->limit = l->limit;
    o->backlog = (int)cfg->backlog;
    o->reuseport = spread;
    o->ud = &l->ctx;
    o->log_name = cfg->quiet ? NULL : l->svc->name;
    o->acl = st->acl;
    l->svc->stream(&o->cbs);
    if (l->svc->conn_opts != NULL)
        l->svc->conn_opts(&o->conn);
    if (l->addr.kind == SK_ADDR_TLS) {
        o->conn.tls = st->tls;
        o->conn.handshake_timeout_ms = cfg->exec->handshake_ms;
    }
}

/* The readiness line: the address actually bound (a host name resolved,
 * port 0 replaced by the kernel's choice), in the form ADDR accepts. */
static void print_listening(const listener *l, int fd)
{
    char text[400];
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if ((l->addr.kind == SK_ADDR_TCP || l->addr.kind == SK_ADDR_UDP ||
         l->addr.kind == SK_ADDR_TLS) &&
        getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
        char bound[300];
        sk_sockaddr_format((struct sockaddr *)&ss, sl, bound, sizeof bound);
        snprintf(text, sizeof text, "%s%s",
                 l->addr.kind == SK_ADDR_UDP   ? "udp://"
                 : l->addr.kind == SK_ADDR_TLS ? "tls://"
                                               : "",
                 bound);
    } else {
        sk_addr_format(&l->addr, text, sizeof text);
    }
    sk_log(SK_LOG_ERROR, "%s listening on %s", l->svc->name, text);
}

/* Opens listener i on every worker. Worker 0 creates the socket; TCP
 * workers bind their own with SO_REUSEPORT on the same (possibly
 * kernel-chosen) port, Unix workers share worker 0's socket. Datagram
 * services and one_loop services (chat) run on worker 0 only. */
static int open_listener(serve_state *st, int i)
{
    listener *l = &st->ls[i];
    char err[300] = "";
    if (l->svc->start != NULL && l->svc->start(&l->ctx, st->ws[0].loop, err, sizeof err) < 0) {
        cli_err("%s: %s", l->svc->name, err);
        return -1;
    }
    if (l->datagram) {
        int rc = sk_dgram_bind(st->ws[0].loop, &l->addr, l->svc->datagram, &l->ctx,
                               &st->ws[0].dgrams[i], err, sizeof err);
        if (rc < 0) {
            cli_err("%s: %s", l->svc->name, err[0] ? err : sk_strerror(rc));
            return -1;
        }
        /* Every datagram service answers what it gets (echo, upper): guard
         * it against loops and reflection here, in one place. */
        rc = sk_dgram_guard(st->ws[0].dgrams[i], st->cfg.udp_rate);
        if (rc < 0) {
            cli_err("%s: %s", l->svc->name, sk_strerror(rc));
            return -1;
        }
        sk_dgram_set_acl(st->ws[0].dgrams[i], st->acl);
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
    if (addr.kind == SK_ADDR_TCP || addr.kind == SK_ADDR_TLS)
        addr.port = (uint16_t)sk_server_port(st->ws[0].servers[i]);
    for (int w = 1; w < st->nws && !l->svc->one_loop; w++) {
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

/* The default --max-conns: none for one stream service; with several in
 * one process, an equal share of the descriptor limit each (FD_RESERVE
 * kept back), so that idle peers of one service (echo) cannot take the
 * descriptors another (exec, files) needs. Logs the share it sets. */
static void default_max_conns(serve_state *st)
{
    int n = 0;
    for (int i = 0; i < st->nls; i++)
        n += !st->ls[i].datagram;
    struct rlimit rl;
    if (st->cfg.max_conns_set || n < 2 || getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    rlim_t fds = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 10000000 ? 10000000 : rl.rlim_cur;
    rlim_t share = fds > FD_RESERVE + (rlim_t)n ? (fds - FD_RESERVE) / (rlim_t)n : 1;
    st->cfg.max_conns = (unsigned)share;
    sk_log(SK_LOG_INFO,
           "each service holds at most %u connections (descriptor limit %llu, "
           "%d kept back, shared by %d services; --max-conns sets it)",
           st->cfg.max_conns, (unsigned long long)fds, FD_RESERVE, n);
}

static void free_all(serve_state *st)
{
    /* Worker 0 last: it created the Unix socket files and removes them. */
    for (int i = st->nws - 1; i >= 0; i--) {
        sk_loop_free(st->ws[i].loop);
        st->ws[i].loop = NULL;
    }
    for (int i = 0; i < st->nls; i++) {
        if (st->ls[i].svc->stop != NULL)
            st->ls[i].svc->stop(&st->ls[i].ctx);
        sk_limit_free(st->ls[i].limit);
    }
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
        sk_tls_ctx_free(st->tls);
        sk_acl_free(st->acl);
        free(st);
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    }
    if (cli_relay_hex_start() < 0) {
        sk_tls_ctx_free(st->tls);
        sk_acl_free(st->acl);
        free(st);
        return EXIT_RUNTIME;
    }
    cli_log_to_stderr(st->cfg.level);
    sk_mem_set_budget(st->cfg.max_memory);
    sk_tls_set_max_handshakes(st->cfg.max_handshakes);
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
    static const int sigs[] = {SIGINT, SIGTERM, SIGUSR1};
    int err = sk_signal_new(st->ws[0].loop, sigs, 3, on_signal, st, &st->sig);
    if (err < 0) {
        cli_err("cannot watch signals: %s", sk_strerror(err));
        goto out;
    }
    if (st->cfg.stats_ms) {
        err = sk_timer_new(st->ws[0].loop, on_stats_timer, st, &st->stats_timer);
        if (err < 0) {
            cli_err("cannot start the stats timer: %s", sk_strerror(err));
            goto out;
        }
        sk_timer_start(st->stats_timer, st->cfg.stats_ms, st->cfg.stats_ms);
    }
    default_max_conns(st);
    for (int i = 0; i < st->nls; i++)
        if (open_listener(st, i) < 0)
            goto out;
    if (st->demo_set) {
        for (size_t i = 0; i < sizeof demo / sizeof demo[0]; i++) {
            if (strcmp(demo[i][0], "exec") == 0) /* names the token file in use */
                sk_log(SK_LOG_ERROR, "try %-6s %s exec %s --token-file %s -- uname -a", demo[i][0],
                       cli_prog, demo[i][1], st->cfg.exec->token_file);
            else if (strcmp(demo[i][0], "files") == 0 && st->cfg.files->token_file != NULL)
                sk_log(SK_LOG_ERROR, "try %-6s %s put %s FILE --token-file %s", demo[i][0],
                       cli_prog, demo[i][1], st->cfg.files->token_file);
            else
                sk_log(SK_LOG_ERROR, "try %-6s %s %s", demo[i][0], cli_prog, demo[i][2]);
        }
        sk_log(SK_LOG_ERROR, "exec runs commands for whoever holds %s%s: keep it private",
               st->cfg.exec->token_file, st->exec_token_created ? " (created now, mode 600)" : "");
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
    sk_tls_ctx_free(st->tls);       /* after the loops: no connection uses it now */
    sk_timer_free(st->stats_timer); /* safe after its loop is gone */
    sk_acl_free(st->acl);           /* after the loops: servers borrow it */
    cli_relay_hex_stop();           /* after the loops: pairs write to it */
    free(st);
    return status;
}
