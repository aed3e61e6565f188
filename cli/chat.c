/* chat.c — `sockit chat ADDR [--nick NAME]`: the chat client. On a terminal,
 * libedit's readline callback interface shares one poll loop with the
 * socket, so a line arriving while one is being typed is printed above the
 * input line, which is then redrawn intact (history and editing keys work).
 * When stdin is not a terminal it is a pipe client: stdin's lines go to the
 * server, the server's lines to stdout, and at the end of stdin it sends
 * /quit and waits for the server to close.
 *
 * Either way the client leaves the room when its input ends — Ctrl-D, the
 * end of a pipe, or a terminal that went away (hung up: poll says POLLHUP,
 * or fd 0 is readable with nothing to read) — and on SIGHUP, SIGINT and
 * SIGTERM, which arrive through a signalfd in the same poll so that a busy
 * stdin cannot keep them from being seen. */
#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <editline/readline.h>

#include "cli.h"
#include "lineedit.h"
#include "pump.h"

/* A line from the server longer than this is printed in pieces: the client
 * never holds more of one line than this. */
#define IN_MAX (1024u * 1024u)
#define CHUNK  (64u * 1024u)
/* After /quit (typed, Ctrl-D or the end of stdin) the server says bye and
 * closes; one that does not is not waited for longer than this. */
#define QUIT_WAIT_MS 5000
#define HISTORY_MAX  500
#define PROMPT       "> "

typedef struct chat_client {
    sk_sock *sock;
    bool tty;      /* line editing on a terminal */
    bool sanitize; /* stdout is a terminal: neutralise control characters */
    bool editing;  /* the libedit handler is installed */
    bool stdin_open, quit_sent, peer_open;
    char last_in; /* last byte read from stdin (pipe mode) */
    uint64_t quit_at;
    int sigfd; /* SIGINT, SIGTERM, SIGHUP, SIGWINCH */
    /* With --nick: stdin is not read until the server has said the nick
     * is ours, so that no line goes out under a guest nick. */
    const char *nick_wanted;
    uint64_t nick_deadline;
    int nick_wait_ms;
    cli_pump pump; /* the poll loop; its queue holds what waits for the socket */
    cli_bytes in, show;
    int status;
} chat_client;

/* One client per process: libedit's callback interface is global state. */
static chat_client *g_client;
static int g_stop_signal; /* the stop signal read from the signalfd, 0: none */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sockit chat ADDR [--nick NAME] [--timeout SEC]\n"
        "\n"
        "Joins the chat of `sockit serve chat` at ADDR (HOST:PORT, unix:PATH or\n"
        "tls://HOST:PORT), in its room lobby.\n"
        "On a terminal: type a line and Enter to send it to everyone in your room; lines\n"
        "from others appear above the line you are typing; Up/Down recall earlier lines.\n"
        "/join ROOM, /part (back to lobby), /rooms, /who, /msg NICK TEXT, /nick NAME,\n"
        "/me TEXT, /help; /quit or Ctrl-D leaves, and so does a terminal that goes away\n"
        "or SIGHUP, SIGINT or SIGTERM.\n"
        "Otherwise each line of stdin is sent, every line from the server is written to\n"
        "stdout, and at the end of stdin the client sends /quit and exits when the server\n"
        "closes.\n"
        "  --nick NAME     take this nick after joining (1-32 of A-Z a-z 0-9 _ -);\n"
        "                  nothing is sent before the server grants it (on a terminal\n"
        "                  too), and a taken nick exits 1 with one line\n"
        "  --timeout SEC   time allowed to connect and for the answer to --nick\n"
        "                  (default 10); a pause in typing is never a timeout\n" CLI_TLS_USAGE_PAD(
            "") "Exit codes: 0 left or the server closed, 1 connection failed or lost or --nick\n"
                "refused, 2 usage, 128+N left on signal N.\n");
}

/* ------------------------------------------------------------ display */

/* The code point of the well-formed UTF-8 sequence at p (no overlong
 * forms, no surrogates, nothing past U+10FFFF) and its length, or 0. */
static size_t utf8_decode(const uint8_t *p, size_t len, uint32_t *cp)
{
    uint8_t b = p[0];
    size_t n;
    uint32_t v, min;
    if (b >= 0xc2 && b <= 0xdf) {
        n = 2, v = b & 0x1fu, min = 0x80;
    } else if (b >= 0xe0 && b <= 0xef) {
        n = 3, v = b & 0x0fu, min = 0x800;
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4, v = b & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        v = v << 6 | (p[i] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* Invisible characters that change how the text around them is shown:
 * bidi embeddings, overrides, isolates and marks (which can make a line
 * read other than it is), line and paragraph separators, and other
 * invisible format characters. Joiners (U+200C, U+200D) pass: emoji and
 * several scripts need them. */
static bool risky_format(uint32_t cp)
{
    return cp == 0x061c || cp == 0x200e || cp == 0x200f || (cp >= 0x2028 && cp <= 0x202e) ||
           (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb);
}

/* Neutralises what a terminal would obey rather than show: C0 controls but
 * tab (as ^X), DEL (^?), C1 controls encoded in UTF-8 (U+0080-U+009F, as
 * ?), raw bytes 0x80-0x9F that are not part of UTF-8 text (C1 controls on
 * 8-bit terminals: 0x9B is CSI; as \x9B) and the format characters above
 * (as <U+202E>). Other bytes, UTF-8 text included, pass. */
static int add_shown(cli_bytes *b, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = p[i];
        char esc[16] = {'^', 0};
        size_t n = 0;
        uint32_t cp = 0;
        size_t seq = ch >= 0x80 ? utf8_decode(p + i, len - i, &cp) : 0;
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            esc[1] = ch == 0x7f ? '?' : (char)(ch + '@');
            n = 2;
        } else if (seq == 0 && ch >= 0x80 && ch <= 0x9f) {
            n = (size_t)snprintf(esc, sizeof esc, "\\x%02X", ch);
        } else if (seq > 0 && cp <= 0x9f) {
            esc[0] = '?';
            n = 1;
        } else if (seq > 0 && risky_format(cp)) {
            n = (size_t)snprintf(esc, sizeof esc, "<U+%04X>", (unsigned)cp);
        }
        size_t used = seq > 0 ? seq : 1;
        if ((n > 0 ? cli_bytes_add(b, esc, n) : cli_bytes_add(b, p + i, used)) < 0)
            return -1;
        i += used - 1;
    }
    return 0;
}

/* Prints what is in c->show above the input line, which libedit then
 * redraws intact (cli/lineedit.c). */
static void show_lines(chat_client *c)
{
    if (c->show.len == 0)
        return;
    cli_edit_print(c->show.data, c->show.len);
    c->show.len = 0;
}

/* ------------------------------------------------------------ sending */

static int queue_line(chat_client *c, const char *text, size_t len)
{
    if (cli_pump_queue(&c->pump, text, len) < 0 || cli_pump_queue(&c->pump, "\n", 1) < 0) {
        cli_err("out of memory");
        return -1;
    }
    return 0;
}

static void stop_editing(chat_client *c)
{
    if (!c->editing)
        return;
    c->editing = false;
    cli_edit_stop();
}

static void start_quit(chat_client *c)
{
    if (c->quit_sent)
        return;
    c->quit_sent = true;
    c->stdin_open = false;
    c->quit_at = now_ms();
    if (queue_line(c, "/quit", 5) < 0)
        c->peer_open = false;
}

/* libedit calls this with each line typed (NULL: Ctrl-D on an empty line).
 * After a line it leaves the callback interface in a blocking, buffered
 * mode until the handler is installed again, so it is reinstalled here. */
static void on_line(char *line)
{
    chat_client *c = g_client;
    if (line == NULL) {
        stop_editing(c);
        start_quit(c);
        return;
    }
    size_t len = strlen(line);
    if (len > 0) {
        HIST_ENTRY *last =
            history_length > 0 ? history_get(history_base + history_length - 1) : NULL;
        if (last == NULL || strcmp(last->line, line) != 0)
            add_history(line);
        if (queue_line(c, line, len) < 0)
            c->peer_open = false;
    }
    /* The server takes the command word in any case, with text after it. */
    bool quit = strncasecmp(line, "/quit", 5) == 0 && (line[5] == '\0' || line[5] == ' ');
    free(line);
    if (quit) {
        c->quit_sent = true;
        c->stdin_open = false;
        c->quit_at = now_ms();
        stop_editing(c);
        return;
    }
    cli_edit_again();
}

/* ------------------------------------------------------------- socket */

/* --nick sent: is this server line the answer? 1: the nick is
 * ours ("*** you are now NICK"), -1: refused ("*** error: ...", reported
 * in one line), 0: some other line (the welcome, a join). */
static int nick_answer(chat_client *c, const uint8_t *line, size_t len)
{
    char want[80];
    int n = snprintf(want, sizeof want, "*** you are now %s", c->nick_wanted);
    if ((size_t)n == len && memcmp(line, want, len) == 0)
        return 1;
    static const char err[] = "*** error: ";
    if (len < sizeof err - 1 || memcmp(line, err, sizeof err - 1) != 0)
        return 0;
    /* On a terminal the prompt goes first, so the refusal is one clean line. */
    if (c->editing) {
        stop_editing(c);
        fputs("\n", stdout);
        fflush(stdout);
    }
    cli_bytes text = {0};
    if (add_shown(&text, line + sizeof err - 1, len - (sizeof err - 1)) == 0)
        cli_err("%.*s; nothing was sent", (int)text.len, (const char *)text.data);
    else
        cli_err("the server refused --nick %s; nothing was sent", c->nick_wanted);
    free(text.data);
    return -1;
}

static int read_socket(chat_client *c)
{
    uint8_t buf[CHUNK];
    ssize_t n = sk_sock_recv(c->sock, buf, sizeof buf);
    if (n < 0) {
        if (n == -EAGAIN)
            return 0;
        show_lines(c);
        stop_editing(c);
        cli_err("connection lost: %s", sk_strerror((int)n));
        c->status = EXIT_RUNTIME;
        return -1;
    }
    if (n == 0) {
        c->peer_open = false;
        if (c->in.len > 0) {
            /* A last line without "\n": show it all the same. */
            if (c->sanitize ? add_shown(&c->show, c->in.data, c->in.len)
                            : cli_bytes_add(&c->show, c->in.data, c->in.len))
                return -1;
            cli_bytes_add(&c->show, "\n", 1);
            c->in.len = 0;
        }
        show_lines(c);
        stop_editing(c);
        if (c->tty && !c->quit_sent)
            cli_err("the server closed the connection");
        return 0;
    }
    if (cli_bytes_add(&c->in, buf, (size_t)n) < 0)
        return -1;
    size_t start = 0;
    for (;;) {
        uint8_t *nl = memchr(c->in.data + start, '\n', c->in.len - start);
        size_t end = nl ? (size_t)(nl - c->in.data) : c->in.len;
        if (nl == NULL && end - start < IN_MAX)
            break;
        size_t len = end - start;
        if (len > 0 && c->in.data[start + len - 1] == '\r')
            len--;
        int answer = 0;
        if (c->nick_wanted != NULL && nl != NULL)
            answer = nick_answer(c, c->in.data + start, len);
        if (answer < 0) {
            c->in.len = 0;
            c->peer_open = false;
            c->status = EXIT_RUNTIME;
            show_lines(c);
            return 0;
        }
        if (answer > 0)
            c->nick_wanted = NULL;
        int rc = c->sanitize ? add_shown(&c->show, c->in.data + start, len)
                             : cli_bytes_add(&c->show, c->in.data + start, len);
        if (rc < 0 || cli_bytes_add(&c->show, "\n", 1) < 0)
            return -1;
        start = nl ? end + 1 : end;
    }
    cli_bytes_drop(&c->in, start);
    show_lines(c);
    return 0;
}

static int write_socket(chat_client *c)
{
    int rc = cli_pump_flush(&c->pump);
    if (rc < 0) {
        stop_editing(c);
        cli_err("connection lost: %s", sk_strerror(rc));
        c->status = EXIT_RUNTIME;
        return -1;
    }
    return 0;
}

/* Pipe mode: stdin goes to the server as it comes; at its end a missing
 * final "\n" is added and /quit follows. */
static int read_stdin(chat_client *c)
{
    uint8_t buf[CHUNK];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 0;
    if (n < 0 && errno != EIO)
        return -1;
    if (n <= 0) { /* EIO: a terminal that hung up, an end like any other */
        if (c->last_in != 0 && c->last_in != '\n' && cli_pump_queue(&c->pump, "\n", 1) < 0)
            return -1;
        start_quit(c);
        return 0;
    }
    c->last_in = (char)buf[n - 1];
    return cli_pump_queue(&c->pump, buf, (size_t)n);
}

/* ------------------------------------------------------------- the loop */

/* Reads the signals that arrived: a stop signal ends the loop, SIGWINCH
 * tells libedit the new size. */
static void read_signals(chat_client *c)
{
    struct signalfd_siginfo si[4];
    ssize_t n;
    while ((n = read(c->sigfd, si, sizeof si)) > 0) {
        for (size_t i = 0; i < (size_t)n / sizeof si[0]; i++) {
            if (si[i].ssi_signo != SIGWINCH)
                g_stop_signal = (int)si[i].ssi_signo;
            else if (c->editing)
                cli_edit_resize();
        }
    }
}

/* True when the terminal on fd 0 has gone (closed window, lost ssh
 * connection): poll reports a hang-up or error, or says readable while
 * there is nothing to read. libedit would return from each read of that
 * end without a word, leaving us to poll a descriptor that is always
 * ready. */

/* Leaving on a stop signal: a last try to say /quit, without waiting, so
 * that the room sees a plain leave. What the server has sent is then read
 * (bounded), since closing with unread bytes would reset the connection
 * and the room would see "connection reset" instead. */
static void leave_now(chat_client *c)
{
    show_lines(c);
    if (c->editing)
        (void)cli_write_all(STDOUT_FILENO, "\n", 1); /* the shell's prompt on a line of its own */
    stop_editing(c);
    if (!c->quit_sent) {
        c->pump.out_len = 0;
        start_quit(c);
        (void)cli_pump_flush(&c->pump);
    }
    uint8_t buf[CHUNK];
    for (int i = 0; i < 16 && sk_sock_recv(c->sock, buf, sizeof buf) > 0; i++)
        ;
}

/* When the server's answer to /quit or --nick is overdue; 0: nothing owed. */
static uint64_t answer_deadline(const chat_client *c)
{
    if (c->quit_sent)
        return c->quit_at + QUIT_WAIT_MS;
    if (c->nick_wanted != NULL)
        return c->nick_deadline;
    return 0;
}

static void run(chat_client *c)
{
    struct stat st;
    c->pump.stdin_file = fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode);
    while (c->peer_open) {
        if (g_stop_signal) {
            leave_now(c);
            break;
        }
        bool want_stdin = c->stdin_open && c->nick_wanted == NULL;
        uint64_t deadline = answer_deadline(c);
        if (deadline != 0 && now_ms() >= deadline) {
            if (c->quit_sent)
                break;
            cli_err("no answer to --nick %s from the server within %.1f s", c->nick_wanted,
                    c->nick_wait_ms / 1000.0);
            c->status = EXIT_RUNTIME;
            break;
        }
        cli_pump_ready r;
        if (cli_pump_wait(&c->pump, want_stdin, deadline, &r) < 0) {
            stop_editing(c);
            c->status = EXIT_RUNTIME;
            break;
        }
        if (r.sig)
            read_signals(c);
        if (r.sock && read_socket(c) < 0)
            break;
        if (!c->peer_open || g_stop_signal)
            continue;
        if (r.sock_write && write_socket(c) < 0)
            break;
        if (r.in && c->stdin_open && c->nick_wanted == NULL) {
            if (c->tty && cli_edit_terminal_gone(r.in_revents)) {
                stop_editing(c);
                start_quit(c);
            } else if (c->tty) {
                cli_edit_read();
            } else if (read_stdin(c) < 0) {
                cli_err("reading stdin: %s", strerror(errno));
                c->status = EXIT_RUNTIME;
                break;
            }
        }
    }
    stop_editing(c);
}

static bool nick_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 32)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            return false;
    }
    return true;
}

int cmd_chat(int argc, char **argv)
{
    const char *nick = NULL;
    int timeout_ms = 10000;
    static const struct option longopts[] = {
        {"nick", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},
        CLI_TLS_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cli_tls tls = {0};
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        uint32_t ms;
        int t = cli_tls_option(&tls, ch, optarg);
        if (t < 0)
            return EXIT_USAGE;
        if (t > 0)
            continue;
        switch (ch) {
        case 'h': usage(stdout); return EXIT_OK;
        case 'n':
            if (!nick_ok(optarg)) {
                cli_err("bad nick \"%s\": use 1-32 of A-Z a-z 0-9 _ -", optarg);
                return EXIT_USAGE;
            }
            nick = optarg;
            break;
        case 't':
            if (cli_parse_seconds(optarg, &ms) < 0 || ms == 0) {
                cli_err("bad value \"%s\" for --timeout (seconds, > 0)", optarg);
                return EXIT_USAGE;
            }
            timeout_ms = (int)ms;
            break;
        case ':': cli_err("option %s needs a value", argv[optind - 1]); return EXIT_USAGE;
        default:
            cli_err("unknown option \"%s\" (try: sockit chat --help)", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        if (!cli_host_port_slip("chat", argc - optind, argv + optind))
            cli_err(argc - optind == 0 ? "chat needs an address (try: sockit chat --help)"
                                       : "chat takes one address");
        return EXIT_USAGE;
    }
    sk_addr addr;
    char err[300];
    if (sk_addr_parse(argv[optind], &addr, err, sizeof err) < 0) {
        cli_err("bad address: %s%s", err, cli_addr_hint(argv[optind]));
        return EXIT_USAGE;
    }
    if (addr.kind != SK_ADDR_TCP && addr.kind != SK_ADDR_UNIX && addr.kind != SK_ADDR_TLS) {
        cli_err("%s: chat needs a stream address (HOST:PORT, tls://HOST:PORT or unix:PATH)",
                argv[optind]);
        return EXIT_USAGE;
    }
    int rc = cli_tls_prepare(&tls, &addr);
    if (rc != 0)
        return rc;
    char derr[600];
    sk_sock *sock = NULL;
    if (cli_dial(&addr, &tls, timeout_ms, &sock, derr, sizeof derr) < 0) {
        cli_err("%s", derr);
        cli_tls_free(&tls);
        return EXIT_RUNTIME;
    }
    chat_client c = {
        .sock = sock, .stdin_open = true, .peer_open = true, .status = EXIT_OK, .sigfd = -1};
    g_client = &c;
    c.tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    c.sanitize = isatty(STDOUT_FILENO);

    /* Stop signals are read from a descriptor in the loop's poll, so the
     * client leaves the room and restores the terminal on the way out, and
     * a stdin that is always readable cannot hide them. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGWINCH);
    sigprocmask(SIG_BLOCK, &block, &old);
    c.sigfd = signalfd(-1, &block, SFD_NONBLOCK | SFD_CLOEXEC);
    if (c.sigfd < 0) {
        cli_err("signalfd: %s", strerror(errno));
        sigprocmask(SIG_SETMASK, &old, NULL);
        sk_sock_close(sock);
        cli_tls_free(&tls);
        return EXIT_RUNTIME;
    }
    cli_pump_init(&c.pump, sock, c.sigfd);

    if (nick != NULL) {
        char line[64];
        int n = snprintf(line, sizeof line, "/nick %s", nick);
        queue_line(&c, line, (size_t)n);
        /* On a terminal too: a line typed early must never go out under
         * the guest nick, so stdin waits for the server's answer. */
        c.nick_wanted = nick;
        c.nick_wait_ms = timeout_ms;
        c.nick_deadline = now_ms() + (uint64_t)timeout_ms;
    }
    if (c.tty) {
        setlocale(LC_CTYPE, "");
        char text[400];
        sk_addr_format(&addr, text, sizeof text);
        fprintf(stderr, "connected to %s; /help lists the commands, /quit or Ctrl-D leaves\n",
                text);
        stifle_history(HISTORY_MAX);
        cli_edit_start(PROMPT, on_line);
        c.editing = true;
    }
    run(&c);
    if (g_stop_signal)
        c.status = 128 + g_stop_signal; /* as a shell reports a signal */
    sk_sock_close(sock);
    cli_tls_free(&tls);
    close(c.sigfd);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (c.tty)
        clear_history();
    cli_pump_free(&c.pump);
    free(c.in.data);
    free(c.show.data);
    g_client = NULL;
    return c.status;
}
