/* chat.c — `sockit chat ADDR [--nick NAME]`: the chat client. On a terminal,
 * libedit's readline callback interface shares one poll loop with the
 * socket, so a line arriving while one is being typed is printed above the
 * input line, which is then redrawn intact (history and editing keys work).
 * When stdin is not a terminal it is a pipe client: stdin's lines go to the
 * server, the server's lines to stdout, and at the end of stdin it sends
 * /quit and waits for the server to close. */
#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include <editline/readline.h>

#include "cli.h"

/* Bytes waiting for the socket: past this, input is not read, so a server
 * that stops reading slows us down instead of growing our memory. */
#define OUT_MAX (256u * 1024u)
/* A line from the server longer than this is printed in pieces: the client
 * never holds more of one line than this. */
#define IN_MAX (1024u * 1024u)
#define CHUNK  (64u * 1024u)
/* After /quit (typed, Ctrl-D or the end of stdin) the server says bye and
 * closes; one that does not is not waited for longer than this. */
#define QUIT_WAIT_MS 5000
#define HISTORY_MAX  500
#define PROMPT       "> "

typedef struct bytes {
    uint8_t *data;
    size_t len, cap;
} bytes;

static int bytes_add(bytes *b, const void *data, size_t len)
{
    if (len > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < len)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (p == NULL)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

static void bytes_drop(bytes *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

typedef struct chat_client {
    int fd;
    bool tty;      /* line editing on a terminal */
    bool sanitize; /* stdout is a terminal: neutralise control characters */
    bool ansi;     /* the terminal understands ANSI cursor movement */
    bool editing;  /* the libedit handler is installed */
    bool stdin_open, quit_sent, peer_open;
    char last_in; /* last byte read from stdin (pipe mode) */
    uint64_t quit_at;
    bytes out, in, show;
    int status;
} chat_client;

/* One client per process: libedit's callback interface is global state. */
static chat_client *g_client;
static volatile sig_atomic_t g_stop_signal, g_winch;

static void on_signal(int signo)
{
    if (signo == SIGWINCH)
        g_winch = 1;
    else
        g_stop_signal = signo;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sockit chat ADDR [--nick NAME] [--timeout SEC]\n"
            "\n"
            "Joins the chat room of `sockit serve chat` at ADDR (HOST:PORT or unix:PATH).\n"
            "On a terminal: type a line and Enter to send it to everyone; lines from others\n"
            "appear above the line you are typing; Up/Down recall earlier lines. /nick NAME,\n"
            "/who, /me TEXT, /help; /quit or Ctrl-D leaves.\n"
            "Otherwise each line of stdin is sent, every line from the server is written to\n"
            "stdout, and at the end of stdin the client sends /quit and exits when the server\n"
            "closes.\n"
            "  --nick NAME     take this nick after joining (1-32 of A-Z a-z 0-9 _ -)\n"
            "  --timeout SEC   bounds connecting (default 10)\n"
            CLI_TLS_USAGE
            "Exit codes: 0 left or the server closed, 1 connection failed or lost, 2 usage.\n");
}

/* ------------------------------------------------------------ display */

/* Neutralises what a terminal would obey rather than show: C0 controls but
 * tab (as ^X), DEL (^?) and C1 controls encoded in UTF-8 (U+0080-U+009F,
 * which some terminals act on). Other bytes, UTF-8 text included, pass. */
static int add_shown(bytes *b, const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = p[i];
        char esc[2] = {'^', 0};
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) {
            esc[1] = ch == 0x7f ? '?' : (char)(ch + '@');
            if (bytes_add(b, esc, 2) < 0)
                return -1;
        } else if (ch == 0xc2 && i + 1 < len && p[i + 1] >= 0x80 && p[i + 1] <= 0x9f) {
            if (bytes_add(b, "?", 1) < 0)
                return -1;
            i++;
        } else if (bytes_add(b, &ch, 1) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Columns of the prompt and the typed text before the cursor, for finding
 * where the input area starts when it wraps over several rows. */
static size_t input_columns(void)
{
    size_t cols = strlen(PROMPT);
    if (rl_line_buffer == NULL || rl_point <= 0)
        return cols;
    mbstate_t st;
    memset(&st, 0, sizeof st);
    const char *p = rl_line_buffer, *end = rl_line_buffer + rl_point;
    while (p < end) {
        wchar_t wc;
        size_t n = mbrtowc(&wc, p, (size_t)(end - p), &st);
        if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
            memset(&st, 0, sizeof st);
            cols++;
            p++;
            continue;
        }
        int w = wcwidth(wc);
        cols += w > 0 ? (size_t)w : 0;
        p += n;
    }
    return cols;
}

/* Prints what is in c->show above the input line: the prompt and the typed
 * text are erased, the lines written, and libedit redraws the input with
 * the cursor where it was. (libedit's rl_redisplay pushes a ^R into its
 * input and rl_replace_line ignores an empty line, so the GNU recipe of
 * save/replace/redisplay does not work there; a forced update does.) */
static void show_lines(chat_client *c)
{
    if (c->show.len == 0)
        return;
    if (c->editing) {
        char clear[64];
        int n;
        if (c->ansi) {
            struct winsize ws;
            size_t width =
                ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
            size_t up = input_columns() / width;
            n = up ? snprintf(clear, sizeof clear, "\033[%zuA\r\033[J", up)
                   : snprintf(clear, sizeof clear, "\r\033[J");
        } else {
            n = snprintf(clear, sizeof clear, "\r");
        }
        (void)write_all(STDOUT_FILENO, clear, (size_t)n);
    }
    (void)write_all(STDOUT_FILENO, c->show.data, c->show.len);
    c->show.len = 0;
    if (c->editing)
        rl_forced_update_display();
}

/* ------------------------------------------------------------ sending */

static int queue_line(chat_client *c, const char *text, size_t len)
{
    if (bytes_add(&c->out, text, len) < 0 || bytes_add(&c->out, "\n", 1) < 0) {
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
    rl_callback_handler_remove();
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
    rl_callback_handler_install(PROMPT, on_line);
}

/* ------------------------------------------------------------- socket */

static int read_socket(chat_client *c)
{
    uint8_t buf[CHUNK];
    ssize_t n = sk_sock_recv(c->fd, buf, sizeof buf);
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
                            : bytes_add(&c->show, c->in.data, c->in.len))
                return -1;
            bytes_add(&c->show, "\n", 1);
            c->in.len = 0;
        }
        show_lines(c);
        stop_editing(c);
        if (c->tty && !c->quit_sent)
            cli_err("the server closed the connection");
        return 0;
    }
    if (bytes_add(&c->in, buf, (size_t)n) < 0)
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
        int rc = c->sanitize ? add_shown(&c->show, c->in.data + start, len)
                             : bytes_add(&c->show, c->in.data + start, len);
        if (rc < 0 || bytes_add(&c->show, "\n", 1) < 0)
            return -1;
        start = nl ? end + 1 : end;
    }
    bytes_drop(&c->in, start);
    show_lines(c);
    return 0;
}

static int write_socket(chat_client *c)
{
    ssize_t n = sk_sock_send(c->fd, c->out.data, c->out.len);
    if (n < 0) {
        if (n == -EAGAIN)
            return 0;
        stop_editing(c);
        cli_err("connection lost: %s", sk_strerror((int)n));
        c->status = EXIT_RUNTIME;
        return -1;
    }
    bytes_drop(&c->out, (size_t)n);
    return 0;
}

/* Pipe mode: stdin goes to the server as it comes; at its end a missing
 * final "\n" is added and /quit follows. */
static int read_stdin(chat_client *c)
{
    uint8_t buf[CHUNK];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -1;
    if (n == 0) {
        if (c->last_in != 0 && c->last_in != '\n' && bytes_add(&c->out, "\n", 1) < 0)
            return -1;
        start_quit(c);
        return 0;
    }
    c->last_in = (char)buf[n - 1];
    return bytes_add(&c->out, buf, (size_t)n);
}

/* ------------------------------------------------------------- the loop */

static void run(chat_client *c)
{
    struct stat st;
    bool stdin_file = fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode);
    sigset_t none;
    sigemptyset(&none);
    while (c->peer_open) {
        if (g_stop_signal) {
            show_lines(c);
            if (c->editing)
                (void)write_all(STDOUT_FILENO, "\n",
                                1); /* the shell's prompt on a line of its own */
            stop_editing(c);
            break;
        }
        if (g_winch) {
            g_winch = 0;
            if (c->editing)
                rl_resize_terminal();
        }
        struct pollfd p[2] = {{.fd = c->fd, .events = POLLIN}, {.fd = -1}};
        if (c->out.len > 0)
            p[0].events |= POLLOUT;
        bool want_stdin = c->stdin_open && c->out.len < OUT_MAX;
        if (want_stdin && !stdin_file)
            p[1] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        int wait_ms = -1;
        /* TLS: bytes already decrypted are not seen by poll(). */
        bool pending = sk_sock_pending(c->fd);
        if ((want_stdin && stdin_file) || pending) {
            wait_ms = 0;
        } else if (c->quit_sent) {
            uint64_t waited = now_ms() - c->quit_at;
            if (waited >= QUIT_WAIT_MS)
                break;
            wait_ms = (int)(QUIT_WAIT_MS - waited);
        }
        struct timespec ts = {wait_ms / 1000, (long)(wait_ms % 1000) * 1000000L};
        /* The signals are blocked except inside ppoll: one that arrives
         * between the checks above and the wait still ends the wait. */
        int n = ppoll(p, 2, wait_ms < 0 ? NULL : &ts, &none);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            stop_editing(c);
            cli_err("poll: %s", strerror(errno));
            c->status = EXIT_RUNTIME;
            break;
        }
        if (((p[0].revents & (POLLIN | POLLHUP | POLLERR)) || pending) && read_socket(c) < 0)
            break;
        if (!c->peer_open)
            break;
        if ((p[0].revents & POLLOUT) && c->out.len > 0 && write_socket(c) < 0)
            break;
        if (want_stdin && (stdin_file || (p[1].revents & (POLLIN | POLLHUP | POLLERR)))) {
            if (c->tty) {
                rl_callback_read_char();
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
        case 'h':
            usage(stdout);
            return EXIT_OK;
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
        case ':':
            cli_err("option %s needs a value", argv[optind - 1]);
            return EXIT_USAGE;
        default:
            cli_err("unknown option \"%s\" (try: sockit chat --help)", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        cli_err(argc - optind == 0 ? "chat needs an address (try: sockit chat --help)"
                                   : "chat takes one address");
        return EXIT_USAGE;
    }
    sk_addr addr;
    char err[300];
    if (sk_addr_parse(argv[optind], &addr, err, sizeof err) < 0) {
        cli_err("bad address: %s", err);
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
    int fd = cli_dial(&addr, &tls, timeout_ms, derr, sizeof derr);
    if (fd < 0) {
        cli_err("%s", derr);
        cli_tls_free(&tls);
        return EXIT_RUNTIME;
    }
    chat_client c = {.fd = fd, .stdin_open = true, .peer_open = true, .status = EXIT_OK};
    g_client = &c;
    c.tty = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
    c.sanitize = isatty(STDOUT_FILENO);
    const char *term = getenv("TERM");
    c.ansi = term != NULL && term[0] != '\0' && strcmp(term, "dumb") != 0;

    /* Stop signals wake the loop (ppoll) so the terminal is restored on the
     * way out; they stay blocked outside the wait. */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGWINCH);
    sigprocmask(SIG_BLOCK, &block, &old);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    struct sigaction saved[4];
    const int sigs[4] = {SIGINT, SIGTERM, SIGHUP, SIGWINCH};
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &sa, &saved[i]);

    if (nick != NULL) {
        char line[64];
        int n = snprintf(line, sizeof line, "/nick %s", nick);
        queue_line(&c, line, (size_t)n);
    }
    if (c.tty) {
        setlocale(LC_CTYPE, "");
        char text[400];
        sk_addr_format(&addr, text, sizeof text);
        fprintf(stderr, "connected to %s; /help lists the commands, /quit or Ctrl-D leaves\n",
                text);
        /* The loop handles signals; libedit must not install its own. */
        rl_catch_signals = 0;
        stifle_history(HISTORY_MAX);
        rl_callback_handler_install(PROMPT, on_line);
        c.editing = true;
    }
    run(&c);
    if (g_stop_signal)
        c.status = 128 + g_stop_signal; /* as a shell reports a signal */
    sk_sock_close(fd);
    cli_tls_free(&tls);
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &saved[i], NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);
    if (c.tty)
        clear_history();
    free(c.out.data);
    free(c.in.data);
    free(c.show.data);
    g_client = NULL;
    return c.status;
}
