/* exec.c — `sockit exec`: runs one command on a `sockit serve exec` server.
 * Authenticates with the shared token (and checks the server's proof),
 * sends the argv (or a shell string), forwards stdin until EOF, writes the
 * remote stdout and stderr byte for byte to ours, and exits with the remote
 * exit code. A blocking client: one poll() loop over the socket and stdin,
 * which always keeps reading the socket so that neither side can wedge the
 * other (a command that writes a lot while we are still sending it input).
 * With -t the command runs on a terminal on the server (protocol version
 * 2): our terminal goes raw, keystrokes go as they are, SIGWINCH sends the
 * new size. Without one, SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded
 * to the command's process group (version 2 servers; with an older one we
 * die of them as before, which drops the connection and the command). */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "../services/exec/exec.h"
#include "../services/proto/handshake.h"
#include "../services/proto/proto.h"
#include "cli.h"
#include "exec_term.h"
#include "pump.h"

/* Exit codes of `sockit exec` besides the remote command's own. */
enum {
    X_TIMEOUT = 124, /* the command ran past its time limit (like timeout(1)) */
    X_DENIED = 126,  /* the server's policy refused it (like "cannot execute") */
    X_NORUN = 127,   /* the program could not be run (like "not found") */
    X_SOCKIT = 255   /* sockit's own failure: connection, authentication, protocol */
};

#define DEFAULT_TIMEOUT_MS CLI_TIMEOUT_MS /* connecting and authenticating, without --timeout */
#define CHUNK              (64u * 1024u)  /* one read of stdin = one STDIN frame at most */
/* Largest frame accepted from the server (its data frames are <= 64 KiB). */
#define IN_FRAME_MAX EXEC_MAX_FRAME
/* Beyond the server's time limit, how long we still wait for its verdict
 * (it sends SIGTERM, then SIGKILL 2 s later, then reports). */
#define VERDICT_SLACK_MS 5000

typedef struct exec_cfg {
    const char *addr_text;
    const char *token_file;
    uint32_t timeout_ms; /* --command-timeout; 0: no command limit requested */
    uint32_t wait_ms;    /* --timeout: connecting and authenticating */
    bool no_stdin;
    bool tty, no_tty;  /* -t, -T */
    bool login;        /* no command: the server's --shell */
    bool pty;          /* the command runs on a terminal */
    const char *shell; /* --sh STRING */
    char **argv;       /* CMD ARG... (NULL-terminated), unless shell */
    int argc;
    cli_tls tls; /* tls://: --ca, --pin, --insecure */
} exec_cfg;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sockit exec [-t|-T] ADDR --token-file FILE [--timeout SEC]\n"
        "                   [--command-timeout SEC] [-n] -- CMD [ARG...]\n"
        "       sockit exec -t ADDR --token-file FILE     (the server's shell, interactive)\n"
        "       sockit exec ADDR --token-file FILE [--timeout SEC] [--command-timeout SEC] [-n]\n"
        "                   --sh 'STRING'\n"
        "\n"
        "Runs CMD with its arguments, exactly as given (no shell), on a `sockit serve exec`\n"
        "server. Its stdout and stderr come back to ours byte for byte; our stdin goes to it\n"
        "until it ends.\n"
        "  --token-file FILE  the shared secret (the server's token file; mode 600;\n"
        "                     make one with: sockit token FILE)\n"
        "  --timeout SEC      time allowed to connect and authenticate (default 10); a\n"
        "                     running command owes no answer, so it is never cut by this\n"
        "  --command-timeout SEC  stop the command after SEC (exit 124; the server's own\n"
        "                     serve exec --timeout still applies when shorter)\n"
        "  -n, --no-stdin     give the command no input (it reads end-of-file at once)\n"
        "  -t, --tty          run it on a terminal on the server (TERM, window size, raw\n"
        "                     keys: ^C ^Z ^\\ reach it); without CMD: the server's shell\n"
        "  -T, --no-tty       no terminal, even for the shell without CMD\n"
        "  --sh 'STRING'      run STRING with /bin/sh -c (the server needs "
        "--allow-shell)\n" CLI_TLS_USAGE_PAD(
            "   ") "Over tls:// the token authentication runs inside TLS and is bound to that TLS\n"
                   "connection, so a relay cannot use it even with --insecure.\n"
                   "Without a terminal, SIGINT, SIGTERM, SIGHUP and SIGQUIT are passed on to the\n"
                   "command.\n"
                   "Exit codes: the command's own; 128+N if a signal N killed it; 124 timed out;\n"
                   "126 not allowed by the server; 127 could not run; 255 connection, "
                   "authentication\n"
                   "or protocol failure (one line on stderr says which); 2 usage (a missing,\n"
                   "non-private, short or weak token file included).\n");
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int left_ms(uint64_t deadline)
{
    uint64_t now = now_ms();
    return now >= deadline ? 0 : (int)(deadline - now);
}

/* ------------------------------------------------------------ arguments */

static int parse_args(exec_cfg *cfg, int argc, char **argv)
{
    enum { O_TOKEN = 256, O_TIMEOUT, O_SH, O_CMD_TIMEOUT };
    static const struct option longopts[] = {
        {"token-file", required_argument, NULL, O_TOKEN},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"command-timeout", required_argument, NULL, O_CMD_TIMEOUT},
        {"no-stdin", no_argument, NULL, 'n'},
        {"tty", no_argument, NULL, 't'},
        {"no-tty", no_argument, NULL, 'T'},
        {"sh", required_argument, NULL, O_SH},
        CLI_TLS_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    optind = 1;
    /* "+": options stop at the command, so `sockit exec A --token-file F ls -l`
     * passes -l to ls. ADDR may come before or after the options. */
    for (;;) {
        int ch = getopt_long(argc, argv, "+:hntT", longopts, NULL);
        if (ch == -1) {
            if (cfg->addr_text == NULL && optind < argc && strcmp(argv[optind - 1], "--") != 0) {
                cfg->addr_text = argv[optind++];
                continue;
            }
            break;
        }
        int t = cli_tls_option(&cfg->tls, ch, optarg);
        if (t < 0)
            return -1;
        if (t > 0)
            continue;
        switch (ch) {
        case 'h': usage(stdout); return 1;
        case 'n': cfg->no_stdin = true; break;
        case 't': cfg->tty = true; break;
        case 'T': cfg->no_tty = true; break;
        case O_TOKEN: cfg->token_file = optarg; break;
        case O_SH: cfg->shell = optarg; break;
        case O_TIMEOUT:
            if (cli_parse_seconds(optarg, &cfg->wait_ms) < 0 || cfg->wait_ms == 0) {
                cli_err("bad value \"%s\" for --timeout (seconds, more than 0)", optarg);
                return -1;
            }
            break;
        case O_CMD_TIMEOUT:
            if (cli_parse_seconds(optarg, &cfg->timeout_ms) < 0 || cfg->timeout_ms == 0) {
                cli_err("bad value \"%s\" for --command-timeout (seconds, more than 0)", optarg);
                return -1;
            }
            break;
        case ':': cli_err("option %s needs a value", argv[optind - 1]); return -1;
        default:
            cli_err("unknown option \"%s\" (try: sockit exec --help)", argv[optind - 1]);
            return -1;
        }
    }
    if (cfg->addr_text == NULL && optind < argc)
        cfg->addr_text = argv[optind++];
    if (cfg->addr_text == NULL) {
        cli_err("exec needs an ADDR (try: sockit exec --help)");
        return -1;
    }
    cfg->argv = argv + optind;
    cfg->argc = argc - optind;
    if (cfg->token_file == NULL) {
        cli_err("exec needs --token-file FILE (the server's shared secret)");
        return -1;
    }
    if (cfg->shell && cfg->argc > 0) {
        cli_err("give either --sh 'STRING' or a command, not both (\"%s\")", cfg->argv[0]);
        return -1;
    }
    if (cfg->tty && cfg->no_tty) {
        cli_err("give -t or -T, not both");
        return -1;
    }
    cfg->login = !cfg->shell && cfg->argc == 0;
    cfg->pty = cfg->tty || (cfg->login && !cfg->no_tty);
    if (!cfg->shell && !cfg->login && cfg->argv[0][0] == '\0') {
        cli_err("the command name is empty");
        return -1;
    }
    if ((size_t)cfg->argc > EXEC_ARGV_MAX) {
        cli_err("too many arguments (%d; at most %u)", cfg->argc, EXEC_ARGV_MAX);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ handshake */

/* Receives one handshake frame; on failure prints why and returns < 0. */
static ssize_t recv_handshake(sk_sock *sock, uint8_t *buf, size_t cap, uint64_t deadline,
                              const char *addr, const char *stage)
{
    ssize_t n = sk_sock_recv_frame(sock, buf, cap, left_ms(deadline));
    if (n == 0) {
        cli_err("%s: empty message during %s: not a sockit exec server?", addr, stage);
        return -1;
    }
    if (n >= 0)
        return n;
    if (n == -ETIMEDOUT)
        cli_err("%s: no answer during %s (is it a sockit exec server?)", addr, stage);
    else if (n == -EMSGSIZE)
        cli_err("%s: the server's answer is not a sockit message: not a sockit exec server?", addr);
    else if (n == -ENODATA || n == -ECONNRESET)
        cli_err("%s: the server closed the connection during %s", addr, stage);
    else
        cli_err("%s: %s: %s", addr, stage, sk_strerror((int)n));
    return -1;
}

/* Prints a server ERROR message (type byte PT_ERROR) on one line, with a
 * hint about the token file if it says authentication failed and authing
 * is set; returns its code. */
static int print_server_error(const char *addr, const uint8_t *msg, size_t len, bool authing)
{
    exec_reply r;
    char why[128];
    if (exec_parse_reply(msg, len, &r, why, sizeof why) < 0 || r.kind != EXEC_REPLY_ERROR)
        return 0;
    cli_err("%s: %s%s", addr, r.text[0] ? r.text : proto_error_name(r.code),
            authing && r.code == PE_AUTH ? " (is --token-file the server's token?)" : "");
    return r.code;
}

/* The handshake's frame I/O (services/proto/handshake.c runs it). */
typedef struct hs_io {
    sk_sock *sock;
    const char *addr;
    uint64_t deadline;
    bool probing; /* we offered a version above 1 */
    bool old;     /* ... and the server refused the hello: an older server? */
    char old_text[PROTO_ERROR_TEXT_MAX + 1];
} hs_io;

static int hs_send(void *ud, const uint8_t *msg, size_t len, const char *stage)
{
    (void)stage;
    hs_io *h = ud;
    int rc = sk_sock_send_frame(h->sock, msg, len, left_ms(h->deadline));
    if (rc < 0) {
        cli_err("%s: cannot send: %s", h->addr, sk_strerror(rc));
        return -1;
    }
    return 0;
}

static ssize_t hs_recv(void *ud, uint8_t *buf, size_t cap, const char *stage)
{
    hs_io *h = ud;
    bool authing = strcmp(stage, "authentication") == 0;
    /* A wrong token is answered after a delay of at least a second (more
     * for repeated failures), so this wait gets a little longer than the
     * rest of the handshake. */
    ssize_t m =
        recv_handshake(h->sock, buf, cap, h->deadline + (authing ? 11000 : 0), h->addr, stage);
    if (m < 0)
        return -1;
    if (buf[0] == PT_ERROR) {
        exec_reply r;
        char why[128];
        if (h->probing && !authing && exec_parse_reply(buf, (size_t)m, &r, why, sizeof why) == 0 &&
            r.code == PE_HELLO) {
            /* Said by a version-1 server of our version-2 hello; the caller
             * decides (retry with version 1, or "no -t there"). */
            h->old = true;
            snprintf(h->old_text, sizeof h->old_text, "%s", r.text);
            return -1;
        }
        print_server_error(h->addr, buf, (size_t)m, authing);
        return -1;
    }
    return m;
}

/* Runs the handshake offering version `offer`; *version gets the one both
 * speak. Returns 0; -2 when a version-1 server refused our hello (its text
 * in old_text, nothing printed); or -1 after one line on stderr. */
static int handshake(sk_sock *sock, const exec_cfg *cfg, const uint8_t *token, size_t token_len,
                     uint64_t deadline, uint8_t offer, uint8_t *version, char *old_text,
                     size_t old_cap)
{
    hs_io h = {.sock = sock,
               .addr = cfg->addr_text,
               .deadline = deadline,
               .probing = offer > PROTO_VERSION};
    proto_hs_io io = {&h, hs_send, hs_recv};
    char err[PROTO_ERROR_TEXT_MAX + 400];
    if (proto_hs_client_v(&io, sock, cfg->addr_text, "exec", token, token_len, false, offer,
                          version, err, sizeof err) == 0)
        return 0;
    if (h.old) {
        snprintf(old_text, old_cap, "%s", h.old_text);
        return -2;
    }
    if (err[0] != '\0')
        cli_err("%s", err);
    return -1;
}

/* ------------------------------------------------------------ running */

typedef struct client {
    sk_sock *sock;
    const char *addr;
    cli_pump pump; /* the poll loop; its queue: frames waiting for the socket */
    uint8_t *in;   /* bytes from the socket not yet a whole frame */
    size_t in_len, in_cap;
    bool stdin_open;
    bool send_dead; /* the socket stopped taking bytes; keep reading it */
    int result;     /* exit code once decided, else -1 */
    int sigfd;      /* forwarded and handled signals (version 2), or -1 */
} client;

static int queue(client *cl, uint8_t type, const void *data, size_t len)
{
    uint8_t head[SK_FRAME_HEADER + 1];
    sk_frame_header(head, (uint32_t)(1 + len));
    head[SK_FRAME_HEADER] = type;
    if (cli_pump_queue(&cl->pump, head, sizeof head) < 0)
        return -1;
    return cli_pump_queue(&cl->pump, data, len);
}

/* The terminal part of a PTY_REQUEST: size, then TERM. Returns its length
 * (at most 9 + EXEC_TERM_MAX). */
static size_t pty_header(uint8_t *p)
{
    exec_winsize ws;
    exec_term_size(&ws);
    const char *term = exec_term_name();
    size_t tlen = strlen(term);
    proto_put16(p, ws.rows);
    proto_put16(p + 2, ws.cols);
    proto_put16(p + 4, ws.xpixel);
    proto_put16(p + 6, ws.ypixel);
    p[8] = (uint8_t)tlen;
    memcpy(p + 9, term, tlen);
    return 9 + tlen;
}

static int queue_request(client *cl, const exec_cfg *cfg)
{
    size_t count = cfg->shell ? 1 : (size_t)cfg->argc;
    uint8_t head[9 + EXEC_TERM_MAX];
    size_t hlen = cfg->pty ? pty_header(head) : 0;
    size_t size = hlen + 1 + 4 + 2;
    for (size_t i = 0; i < count; i++)
        size += 4 + strlen(cfg->shell ? cfg->shell : cfg->argv[i]);
    if (size > EXEC_MAX_FRAME - 1) {
        cli_err("the command line is too long (%zu bytes; at most %u)", size, EXEC_MAX_FRAME - 2);
        return -1;
    }
    uint8_t *msg = malloc(size);
    if (msg == NULL)
        return -1;
    memcpy(msg, head, hlen);
    uint8_t *body = msg + hlen;
    body[0] =
        (uint8_t)((cfg->shell ? PROTO_EXEC_SHELL : 0) | (cfg->no_stdin ? PROTO_EXEC_NO_STDIN : 0) |
                  (cfg->login ? PROTO_EXEC_LOGIN : 0));
    proto_put32(body + 1, cfg->timeout_ms);
    proto_put16(body + 5, (uint16_t)count);
    size_t off = 7;
    for (size_t i = 0; i < count; i++) {
        const char *a = cfg->shell ? cfg->shell : cfg->argv[i];
        size_t len = strlen(a);
        proto_put32(body + off, (uint32_t)len);
        memcpy(body + off + 4, a, len);
        off += 4 + len;
    }
    int rc = queue(cl, cfg->pty ? PT_EXEC_PTY_REQUEST : PT_EXEC_REQUEST, msg, size);
    free(msg);
    return rc;
}

/* Handles one frame from the server; returns -1 if it ends the run. */
static int on_frame(client *cl, const uint8_t *msg, size_t len)
{
    exec_reply r;
    char why[128];
    if (exec_parse_reply(msg, len, &r, why, sizeof why) < 0) {
        cli_err("%s: protocol error: %s", cl->addr, why);
        cl->result = X_SOCKIT;
        return -1;
    }
    switch (r.kind) {
    case EXEC_REPLY_STDOUT:
    case EXEC_REPLY_STDERR: {
        int fd = r.kind == EXEC_REPLY_STDOUT ? STDOUT_FILENO : STDERR_FILENO;
        if (cli_write_all(fd, r.data, r.len) < 0) {
            cli_err("cannot write the command's %s: %s",
                    fd == STDOUT_FILENO ? "output" : "error output", strerror(errno));
            cl->result = X_SOCKIT;
            return -1;
        }
        return 0;
    }
    case EXEC_REPLY_EXIT: cl->result = r.status; return -1;
    case EXEC_REPLY_ERROR:
        exec_term_restore();
        cli_err("%s: %s", cl->addr, r.text[0] ? r.text : proto_error_name(r.code));
        cl->result = r.code == PE_TIMEOUT  ? X_TIMEOUT
                     : r.code == PE_NORUN  ? X_NORUN
                     : r.code == PE_DENIED ? X_DENIED
                                           : X_SOCKIT;
        return -1;
    }
    return -1;
}

/* Reads what the socket has and handles every whole frame; -1 when done. */
static int read_socket(client *cl)
{
    if (cl->in_cap - cl->in_len < CHUNK) {
        size_t cap = cl->in_cap ? cl->in_cap * 2 : 2 * CHUNK;
        if (cap > IN_FRAME_MAX + SK_FRAME_HEADER + CHUNK)
            cap = IN_FRAME_MAX + SK_FRAME_HEADER + CHUNK;
        if (cap > cl->in_cap) {
            uint8_t *p = realloc(cl->in, cap);
            if (p == NULL) {
                cli_err("out of memory");
                cl->result = X_SOCKIT;
                return -1;
            }
            cl->in = p;
            cl->in_cap = cap;
        }
    }
    ssize_t n = sk_sock_recv(cl->sock, cl->in + cl->in_len, cl->in_cap - cl->in_len);
    if (n == -EAGAIN)
        return 0;
    if (n <= 0) {
        exec_term_restore();
        cli_err("%s: the server closed the connection before the command finished%s", cl->addr,
                n < 0 ? " (reset)" : "");
        cl->result = X_SOCKIT;
        return -1;
    }
    cl->in_len += (size_t)n;
    sk_decoder dec;
    sk_decoder_init(&dec, SK_FRAMING_FRAME, IN_FRAME_MAX);
    size_t off = 0;
    int rc = 0;
    while (rc == 0) {
        sk_msg m;
        int r = sk_decoder_next(&dec, cl->in + off, cl->in_len - off, &m, NULL);
        if (r == 0)
            break;
        if (r < 0) {
            cli_err("%s: protocol error: a message larger than %u bytes", cl->addr, IN_FRAME_MAX);
            cl->result = X_SOCKIT;
            return -1;
        }
        rc = on_frame(cl, cl->in + off + m.offset, m.len);
        off += m.consumed;
    }
    memmove(cl->in, cl->in + off, cl->in_len - off);
    cl->in_len -= off;
    return rc;
}

static void write_socket(client *cl)
{
    if (cli_pump_flush(&cl->pump) < 0) {
        /* The server closed its side: whatever it said last (an exit, an
         * error) is still to be read, so only sending stops. */
        cl->send_dead = true;
        cl->stdin_open = false;
        cl->pump.out_len = 0;
    }
}

static int read_stdin(client *cl, uint8_t *buf)
{
    ssize_t n = read(STDIN_FILENO, buf, CHUNK);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
        return 0;
    cl->stdin_open = n > 0;
    if (n > 0)
        return queue(cl, PT_EXEC_STDIN, buf, (size_t)n);
    /* End of input (or an unreadable stdin, which ends it the same way). */
    return queue(cl, PT_EXEC_STDIN_EOF, NULL, 0);
}

/* Signals from the signalfd: with a terminal, a new window size goes to
 * the server and SIGINT and SIGQUIT go to the command (our terminal is
 * raw, so they came from kill, not from keys); without one, SIGINT,
 * SIGTERM, SIGHUP and SIGQUIT go to the command's group and we wait for
 * its verdict. Returns -1 when we stop. */
static int on_signals(client *cl, const exec_cfg *cfg)
{
    struct signalfd_siginfo si[8];
    ssize_t n = read(cl->sigfd, si, sizeof si);
    for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof si[0]; i++) {
        int sig = (int)si[i].ssi_signo;
        if (sig == SIGWINCH) {
            if (!cfg->pty)
                continue;
            exec_winsize ws;
            exec_term_size(&ws);
            uint8_t b[8];
            proto_put16(b, ws.rows);
            proto_put16(b + 2, ws.cols);
            proto_put16(b + 4, ws.xpixel);
            proto_put16(b + 6, ws.ypixel);
            if (queue(cl, PT_EXEC_WINCH, b, sizeof b) < 0)
                return -1;
            continue;
        }
        /* The wire numbers are the traditional ones (1 2 3 15), Linux's. */
        uint8_t b = (uint8_t)sig;
        if (queue(cl, PT_EXEC_SIGNAL, &b, 1) < 0)
            return -1;
    }
    return 0;
}

static int run(client *cl, const exec_cfg *cfg)
{
    uint8_t *buf = malloc(CHUNK);
    if (buf == NULL || queue_request(cl, cfg) < 0) {
        free(buf);
        return X_SOCKIT;
    }
    cl->stdin_open = !cfg->no_stdin;
    /* A running command owes nothing until it ends: only a requested time
     * limit (--command-timeout) bounds the wait for its verdict. */
    uint64_t deadline = cfg->timeout_ms ? now_ms() + cfg->timeout_ms + VERDICT_SLACK_MS : 0;
    while (cl->result < 0) {
        cli_pump_ready r;
        if (cli_pump_wait(&cl->pump, cl->stdin_open, deadline, &r) < 0) {
            cl->result = X_SOCKIT;
            break;
        }
        if (r.timeout && !r.sock) {
            cli_err("%s: no verdict from the server %.1f s after the time limit", cl->addr,
                    VERDICT_SLACK_MS / 1000.0);
            cl->result = X_TIMEOUT;
            break;
        }
        if (r.sock_write && !cl->send_dead)
            write_socket(cl);
        if (r.sock && read_socket(cl) < 0)
            break;
        if (r.sig && on_signals(cl, cfg) < 0) {
            if (cl->result < 0)
                cl->result = X_SOCKIT;
            break;
        }
        if (r.in && cl->stdin_open && read_stdin(cl, buf) < 0) {
            cli_err("out of memory");
            cl->result = X_SOCKIT;
        }
    }
    free(buf);
    return cl->result;
}

/* Dials and authenticates, offering protocol version 2. A version-1
 * server refuses that hello: then -t (and a shell without a command) is
 * reported as unsupported, and anything else dials again offering 1.
 * Returns 0 with *sock and *version, or -1 after one line on stderr. */
static int open_session(const sk_addr *addr, exec_cfg *cfg, const uint8_t *token, size_t token_len,
                        uint32_t limit, uint64_t deadline, sk_sock **sock, uint8_t *version)
{
    uint8_t offer = PROTO_EXEC_VERSION;
    for (;;) {
        char derr[600] = "", old[PROTO_ERROR_TEXT_MAX + 1] = "";
        int rc = cli_dial(addr, &cfg->tls, (int)limit, sock, derr, sizeof derr);
        if (rc < 0) {
            cli_err("%s", derr[0] ? derr : sk_strerror(rc));
            return -1;
        }
        rc = handshake(*sock, cfg, token, token_len, deadline, offer, version, old, sizeof old);
        if (rc == 0 && *version < 2 && (cfg->pty || cfg->login))
            rc = -2; /* a server that chose version 1 */
        if (rc == 0)
            return 0;
        sk_sock_close(*sock);
        *sock = NULL;
        if (rc == -1)
            return -1;
        if (old[0] && strstr(old, "version") == NULL) {
            /* Not about the version (a wrong service): say what it said. */
            cli_err("%s: %s", cfg->addr_text, old);
            return -1;
        }
        if (cfg->pty || cfg->login) {
            cli_err("%s: the server does not support -t%s (it speaks an older exec protocol)",
                    cfg->addr_text, cfg->pty ? "" : " or a shell without a command");
            return -1;
        }
        if (offer == PROTO_VERSION)
            return -1;
        offer = PROTO_VERSION;
    }
}

int cmd_exec(int argc, char **argv)
{
    exec_cfg cfg;
    memset(&cfg, 0, sizeof cfg);
    int rc = parse_args(&cfg, argc, argv);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    sk_addr addr;
    char err[300];
    if (sk_addr_parse(cfg.addr_text, &addr, err, sizeof err) < 0) {
        cli_err("bad address: %s%s", err, cli_addr_hint(cfg.addr_text));
        return EXIT_USAGE;
    }
    if (addr.kind != SK_ADDR_TCP && addr.kind != SK_ADDR_UNIX && addr.kind != SK_ADDR_TLS) {
        cli_err("%s: exec works over TCP, TLS or Unix stream sockets only", cfg.addr_text);
        return EXIT_USAGE;
    }
    rc = cli_tls_prepare(&cfg.tls, &addr);
    if (rc == EXIT_USAGE)
        return rc;
    if (rc != 0)
        return X_SOCKIT;
    uint8_t token[SK_TOKEN_MAX];
    size_t token_len = 0;
    char terr[400];
    if (sk_token_load(cfg.token_file, token, sizeof token, &token_len, terr, sizeof terr) < 0) {
        /* A usage error, as the server says for the same file (exit 2). */
        cli_err("%s", terr);
        cli_tls_free(&cfg.tls);
        return EXIT_USAGE;
    }
    uint32_t limit = cfg.wait_ms ? cfg.wait_ms : DEFAULT_TIMEOUT_MS;
    uint64_t deadline = now_ms() + limit;
    sk_sock *sock = NULL;
    uint8_t version = PROTO_VERSION;
    rc = open_session(&addr, &cfg, token, token_len, limit, deadline, &sock, &version);
    OPENSSL_cleanse(token, sizeof token);
    if (rc < 0) {
        cli_tls_free(&cfg.tls);
        return X_SOCKIT;
    }
    client cl = {.sock = sock, .addr = cfg.addr_text, .result = -1, .sigfd = -1};
    /* Version 2: the signals are ours to pass on (or, with a terminal, to
     * handle), read from a signalfd in the poll loop; version 1 keeps the
     * default dispositions, as before. With a terminal, SIGTERM and SIGHUP
     * end the client through exec_term_exit_on instead. */
    sigset_t sigs, old;
    sigemptyset(&sigs);
    if (cfg.pty) {
        /* Ours to obey, not to forward: end the client, the server then
         * hangs the terminal up. */
        exec_term_exit_on(SIGTERM);
        exec_term_exit_on(SIGHUP);
    }
    if (version >= 2) {
        sigaddset(&sigs, SIGINT);
        if (!cfg.pty) {
            sigaddset(&sigs, SIGTERM);
            sigaddset(&sigs, SIGHUP);
        }
        sigaddset(&sigs, SIGQUIT);
        sigaddset(&sigs, SIGWINCH);
        sigprocmask(SIG_BLOCK, &sigs, &old);
        cl.sigfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
        if (cl.sigfd < 0) {
            cli_err("signalfd: %s", strerror(errno));
            rc = X_SOCKIT;
            goto out;
        }
    }
    if (cfg.pty && exec_term_raw() < 0) {
        rc = X_SOCKIT;
        goto out;
    }
    cli_pump_init(&cl.pump, sock, cl.sigfd);
    rc = run(&cl, &cfg);
    cli_pump_free(&cl.pump);
out:
    exec_term_restore();
    if (cl.sigfd >= 0)
        close(cl.sigfd);
    free(cl.in);
    sk_sock_close(sock);
    cli_tls_free(&cfg.tls);
    return rc;
}
