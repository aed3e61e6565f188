/* connect.c — `sockit connect`: an interactive client on a terminal
 * (prompt, `q` quits; libedit, as chat, so incoming data never hides a
 * half-typed line), an nc-like pipe otherwise, frames or lines when asked,
 * and one datagram per line for udp:// and unixgram:. */
#include <errno.h>
#include <getopt.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "hexdump.h"
#include "lineedit.h"
#include "pump.h"

#define CHUNK (64u * 1024u)
/* After the server's end of stream, stdin still goes out (the server may
 * only have half-closed, as nc -N does, and still read): until stdin ends,
 * or until it has had nothing to give for this long with nothing queued,
 * which is how a server that closed for good (a greeting, then goodbye)
 * ends a session whose stdin stays open but idle. */
#define PEER_EOF_IDLE_MS 1000

typedef struct connect_cfg {
    enum sk_framing framing;
    int timeout_ms; /* connecting, and each wait for a reply owed */
    size_t max_frame;
    cli_tls tls;
    sk_dial_opts dial; /* -4, -6, --source */
    bool hex;          /* --hex, --hex-file */
    const char *hex_file;
    cli_hexdump *dump;
} connect_cfg;

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sockit connect ADDR [--framing raw|line|frame] [--timeout SEC] [-4|-6]\n"
        "                      [--source ADDR[:PORT]] [--hex] [--hex-file FILE]\n"
        "\n"
        "On a terminal: type a line to send it, empty lines are not sent, 'q' or Ctrl-D quits,\n"
        "'\\q' sends a line that is exactly 'q' (and '\\\\q' sends '\\q'); whatever the server\n"
        "sends is printed, control characters shown escaped (ESC as ^[), never run by the\n"
        "terminal. Otherwise works like nc: stdin goes to the socket, the socket to stdout;\n"
        "at the end of stdin the sending side is shut down and the reply is still read\n"
        "until the server closes.\n"
        "  --framing line    each input line is sent as a line; each line received is printed\n"
        "  --framing frame   each input line is sent as one frame (4-byte big-endian length);\n"
        "                    each frame received is printed on its own line\n"
        "  --timeout SEC     time allowed to connect, and for each reply owed, counted from\n"
        "                    the send (default 10; a pause in stdin is never a timeout;\n"
        "                    not applied to replies on a terminal); a reply missing after\n"
        "                    SEC is reported and the exit code is 1\n"
        "  --max-frame BYTES largest frame accepted from the server (default 16M)\n"
        "  -4, -6            connect to the name's IPv4 (IPv6) addresses only\n"
        "  --source ADDR[:PORT]  connect from this local address (and port; numeric,\n"
        "                    [IPv6]:PORT with a port)\n"
        "  --hex             a hex dump of both directions on stderr ('>' sent, '<'\n"
        "                    received, with offset, hex and ASCII)\n"
        "  --hex-file FILE   the hex dump into FILE instead\n" CLI_TLS_USAGE
        "tls://HOST:PORT needs --ca or --pin unless the system's CAs vouch for the server.\n"
        "A HOST with several addresses: all are tried, IPv6 and IPv4 alternating, the next\n"
        "at once after a refusal or beside one pending for 250 ms (RFC 8305).\n"
        "Exit codes: 0 ok, 1 connection refused / timed out / no reply / certificate\n"
        "refused, 2 usage.\n");
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A growable byte buffer for the client side, bounded by its users. */
/* ------------------------------------------------------------ streams */

typedef struct stream_client {
    const connect_cfg *cfg;
    sk_sock *sock;
    bool interactive;
    bool stdin_open, shut_sent, peer_open;
    bool awaiting;       /* sent something, nothing back yet (for --timeout) */
    uint64_t owed_since; /* when awaiting became true: --timeout counts from here */
    uint64_t input_at;   /* the last stdin bytes, or the server's end of stream */
    cli_pump pump;       /* the poll loop and what waits for the socket */
    cli_bytes line;      /* stdin bytes not yet forming a whole line */
    cli_bytes in;        /* socket bytes not yet forming a whole message */
    cli_bytes show;      /* on a terminal: escaped output, printed above the input */
    sk_decoder dec;
    bool quit;
    int stop_signal;   /* SIGINT, SIGTERM or SIGHUP read from the signalfd */
    sigset_t old_mask; /* the mask before the signalfd took the signals */
} stream_client;

/* Starts the reply clock unless a reply is already owed: the wait counts
 * from the send it answers, not from the last byte received. */
static void owe_reply(stream_client *sc)
{
    if (!sc->awaiting)
        sc->owed_since = now_ms();
    sc->awaiting = true;
}

/* Queues bytes for the socket, shown in the hex dump if there is one. */
static int queue_bytes(stream_client *sc, const void *data, size_t len)
{
    cli_hexdump_write(sc->cfg->dump, CLI_HEX_OUT, data, len);
    return cli_pump_queue(&sc->pump, data, len);
}

static int queue_message(stream_client *sc, const uint8_t *data, size_t len)
{
    if (sc->cfg->framing == SK_FRAMING_FRAME) {
        if (len > UINT32_MAX)
            return -1;
        uint8_t hdr[SK_FRAME_HEADER];
        sk_frame_header(hdr, (uint32_t)len);
        if (queue_bytes(sc, hdr, sizeof hdr) < 0)
            return -1;
        return queue_bytes(sc, data, len);
    }
    if (queue_bytes(sc, data, len) < 0)
        return -1;
    return queue_bytes(sc, "\n", 1);
}

/* A typed line "\q" sends "q" (the greeting example's own quit word), and
 * "\\q" sends "\q": one backslash before backslashes and a q is dropped. */
static bool quit_word_escaped(const uint8_t *data, size_t len)
{
    if (len < 2 || data[0] != '\\' || data[len - 1] != 'q')
        return false;
    for (size_t i = 1; i + 1 < len; i++)
        if (data[i] != '\\')
            return false;
    return true;
}

/* Appends data to b with C0 controls (but tab, newline and the CR of CRLF)
 * and DEL as ^X, so ESC sequences from a server cannot clear the screen,
 * retitle the window or move the cursor. */
static int add_escaped(cli_bytes *b, const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        uint8_t c = data[i];
        bool crlf = c == '\r' && i + 1 < len && data[i + 1] == '\n';
        char esc[2] = {'^', (char)(c == 0x7f ? '?' : c + '@')};
        int rc = (c < 0x20 && c != '\t' && c != '\n' && !crlf) || c == 0x7f
                     ? cli_bytes_add(b, esc, 2)
                     : cli_bytes_add(b, &c, 1);
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* One complete input line (without "\n"). Returns -1 to quit. */
static int input_line(stream_client *sc, uint8_t *data, size_t len)
{
    if (len > 0 && data[len - 1] == '\r')
        len--;
    if (sc->interactive) {
        if (len == 0)
            return 0; /* empty lines are not sent */
        if (len == 1 && data[0] == 'q') {
            sc->quit = true;
            return -1;
        }
        if (quit_word_escaped(data, len)) {
            data++;
            len--;
        }
    }
    if (queue_message(sc, data, len) < 0) {
        cli_err("out of memory");
        return -1;
    }
    owe_reply(sc);
    return 0;
}

static int read_stdin(stream_client *sc)
{
    uint8_t buf[CHUNK];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -1;
    if (n == 0) {
        sc->stdin_open = false;
        /* A last line without "\n" is still a message. */
        if (sc->line.len > 0 && !sc->interactive && sc->cfg->framing != SK_FRAMING_RAW)
            if (queue_message(sc, sc->line.data, sc->line.len) < 0)
                return -1;
        if (sc->line.len > 0 && sc->interactive)
            input_line(sc, sc->line.data, sc->line.len);
        sc->line.len = 0;
        if (sc->interactive)
            sc->quit = true;
        return 0;
    }
    sc->input_at = now_ms();
    if (!sc->interactive && sc->cfg->framing == SK_FRAMING_RAW) {
        owe_reply(sc);
        return queue_bytes(sc, buf, (size_t)n);
    }
    if (cli_bytes_add(&sc->line, buf, (size_t)n) < 0)
        return -1;
    size_t start = 0;
    for (;;) {
        uint8_t *nl = memchr(sc->line.data + start, '\n', sc->line.len - start);
        if (nl == NULL)
            break;
        size_t end = (size_t)(nl - sc->line.data);
        if (input_line(sc, sc->line.data + start, end - start) < 0) {
            sc->line.len = 0;
            return 0;
        }
        start = end + 1;
    }
    cli_bytes_drop(&sc->line, start);
    if (sc->line.len > sc->cfg->max_frame) {
        cli_err("input line longer than %zu bytes", sc->cfg->max_frame);
        return -1;
    }
    return 0;
}

/* On a terminal, the server's bytes are collected in sc->show, escaped;
 * elsewhere they pass unchanged, straight to stdout. */
static int write_shown(stream_client *sc, const uint8_t *data, size_t len)
{
    if (!sc->interactive)
        return cli_write_all(STDOUT_FILENO, data, len);
    return add_escaped(&sc->show, data, len);
}

/* Prints what was collected above the line being typed, which the line
 * editor redraws intact: incoming data never hides half-typed text. */
static int show_collected(stream_client *sc)
{
    if (sc->show.len == 0)
        return 0;
    if (sc->show.data[sc->show.len - 1] != '\n' && cli_bytes_add(&sc->show, "\n", 1) < 0)
        return -1;
    cli_edit_print(sc->show.data, sc->show.len);
    sc->show.len = 0;
    return 0;
}

static int read_socket(stream_client *sc)
{
    uint8_t buf[CHUNK];
    ssize_t n = sk_sock_recv(sc->sock, buf, sizeof buf);
    if (n < 0) {
        if (n == -EAGAIN)
            return 0;
        cli_err("receive: %s", sk_strerror((int)n));
        return -1;
    }
    if (n == 0) {
        sc->peer_open = false;
        sc->input_at = now_ms();
        if (sc->interactive) {
            cli_edit_stop();
            cli_write_all(STDOUT_FILENO, "\n", 1); /* the message below on a line of its own */
        }
        if (sc->in.len > 0)
            cli_err("connection closed in the middle of a message (%zu bytes dropped)", sc->in.len);
        else if (sc->interactive)
            cli_err("connection closed by the server");
        return 0;
    }
    sc->awaiting = false;
    cli_hexdump_write(sc->cfg->dump, CLI_HEX_IN, buf, (size_t)n);
    if (sc->cfg->framing == SK_FRAMING_RAW) {
        if (write_shown(sc, buf, (size_t)n) < 0)
            return -1;
        return show_collected(sc);
    }
    if (cli_bytes_add(&sc->in, buf, (size_t)n) < 0)
        return -1;
    size_t off = 0;
    for (;;) {
        sk_msg m;
        int r = sk_decoder_next(&sc->dec, sc->in.data + off, sc->in.len - off, &m, NULL);
        if (r < 0) {
            cli_err("the server sent a %s larger than %zu bytes",
                    sc->cfg->framing == SK_FRAMING_FRAME ? "frame" : "line", sc->dec.max);
            return -1;
        }
        if (r == 0)
            break;
        if (write_shown(sc, sc->in.data + off + m.offset, m.len) < 0 ||
            (sc->interactive ? cli_bytes_add(&sc->show, "\n", 1)
                             : cli_write_all(STDOUT_FILENO, "\n", 1)) < 0)
            return -1;
        off += m.consumed;
    }
    cli_bytes_drop(&sc->in, off);
    return show_collected(sc);
}

static int write_socket(stream_client *sc)
{
    int rc = cli_pump_flush(&sc->pump);
    if (rc < 0)
        cli_err("send: %s", sk_strerror(rc));
    return rc < 0 ? -1 : 0;
}

/* ------------------------------------------------------ the terminal */

/* The client the line editor's callback talks to (one per process). */
static stream_client *g_sc;

/* libedit hands over each typed line (NULL: Ctrl-D on an empty line). */
static void on_typed_line(char *line)
{
    stream_client *sc = g_sc;
    if (line == NULL) {
        sc->quit = true;
        cli_edit_stop();
        return;
    }
    if (input_line(sc, (uint8_t *)line, strlen(line)) < 0)
        sc->quit = true;
    free(line);
    if (sc->quit)
        cli_edit_stop();
    else
        cli_edit_again();
}

/* On a terminal: the line editor, and the stop signals through a signalfd
 * in the pump's poll, so the terminal's modes are restored on the way out
 * (libedit holds it in raw mode) whatever ends the session. */
static int start_terminal(stream_client *sc)
{
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGWINCH);
    sigprocmask(SIG_BLOCK, &block, &sc->old_mask);
    sc->pump.sigfd = signalfd(-1, &block, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sc->pump.sigfd < 0) {
        cli_err("signalfd: %s", strerror(errno));
        sigprocmask(SIG_SETMASK, &sc->old_mask, NULL);
        return -1;
    }
    setlocale(LC_CTYPE, "");
    g_sc = sc;
    cli_edit_start("> ", on_typed_line);
    return 0;
}

static void stop_terminal(stream_client *sc)
{
    bool was = cli_edit_active();
    cli_edit_stop();
    if (was)
        cli_write_all(STDOUT_FILENO, "\n", 1); /* the shell's prompt on a line of its own */
    if (sc->pump.sigfd >= 0) {
        close(sc->pump.sigfd);
        sc->pump.sigfd = -1;
        sigprocmask(SIG_SETMASK, &sc->old_mask, NULL);
    }
    g_sc = NULL;
}

/* Reads the signals that arrived: 1 when a stop signal ends the session
 * (sc->stop_signal says which), 0 otherwise (SIGWINCH: the new width). */
static int read_signals(stream_client *sc)
{
    struct signalfd_siginfo si;
    while (read(sc->pump.sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGWINCH) {
            cli_edit_resize();
            continue;
        }
        sc->stop_signal = (int)si.ssi_signo;
    }
    return sc->stop_signal != 0;
}

static int run_stream(connect_cfg *cfg, const sk_addr *addr)
{
    char err[600];
    sk_sock *sock = NULL;
    if (cli_dial_opts(addr, &cfg->tls, &cfg->dial, cfg->timeout_ms, &sock, err, sizeof err) < 0) {
        cli_err("%s", err);
        return EXIT_RUNTIME;
    }
    stream_client sc = {.cfg = cfg, .sock = sock, .stdin_open = true, .peer_open = true};
    cli_pump_init(&sc.pump, sock, -1);
    sc.interactive = isatty(STDIN_FILENO);
    sk_decoder_init(&sc.dec, cfg->framing, cfg->framing == SK_FRAMING_FRAME ? cfg->max_frame : 0);
    /* stdin as a regular file cannot be polled; it is always readable. */
    struct stat st;
    sc.pump.stdin_file = fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode);
    if (sc.interactive) {
        char text[400];
        sk_addr_format(addr, text, sizeof text);
        char how[160] = "";
        if (sk_sock_describe(sock, how + 2, sizeof how - 2) == 0)
            memcpy(how, ", ", 2);
        fprintf(stderr, "connected to %s (%s framing%s); type q to quit\n", text,
                sk_framing_name(cfg->framing), how);
        if (start_terminal(&sc) < 0) {
            sk_sock_close(sock);
            return EXIT_RUNTIME;
        }
    }
    int status = EXIT_OK;
    while (!sc.quit) {
        if (!sc.stdin_open && sc.pump.out_len == 0 && !sc.shut_sent) {
            /* Half-close: the server sees our end of input and still sends
             * every reply it owes. */
            sk_sock_shutdown(sock);
            sc.shut_sent = true;
        }
        if (!sc.peer_open) {
            if (sc.interactive || (sc.shut_sent && sc.pump.out_len == 0))
                break; /* both directions done */
            if (sc.pump.out_len == 0 && now_ms() - sc.input_at >= PEER_EOF_IDLE_MS)
                break;
            sc.pump.sock_eof = true;
            sc.awaiting = false; /* nothing more can come */
        }
        /* A reply owed is bounded by --timeout from the send it answers;
         * bytes still queued are not yet owed anything. */
        uint64_t deadline = 0;
        if (sc.awaiting && !sc.interactive)
            deadline = sc.owed_since + (uint64_t)cfg->timeout_ms;
        if (!sc.peer_open && sc.pump.out_len == 0)
            deadline = sc.input_at + PEER_EOF_IDLE_MS;
        cli_pump_ready r;
        if (cli_pump_wait(&sc.pump, sc.stdin_open, deadline, &r) < 0) {
            status = EXIT_RUNTIME;
            break;
        }
        if (r.gone) {
            if (sc.pump.out_len > 0) {
                cli_err("the server closed the connection with %zu bytes not sent",
                        sc.pump.out_len);
                status = EXIT_RUNTIME;
            }
            break;
        }
        if (!sc.peer_open && r.timeout)
            continue; /* idle after the server's end: the check above ends it */
        if (r.timeout && !r.sock && sc.pump.out_len == 0) {
            cli_err("no reply within %.1f s", cfg->timeout_ms / 1000.0);
            status = EXIT_RUNTIME;
            break;
        }
        if (r.sock && read_socket(&sc) < 0) {
            status = EXIT_RUNTIME;
            break;
        }
        if (r.sock_write && write_socket(&sc) < 0) {
            status = EXIT_RUNTIME;
            break;
        }
        if (r.sig && read_signals(&sc) != 0) {
            status = 128 + sc.stop_signal; /* as a shell reports a signal */
            break;
        }
        if (r.in && sc.stdin_open && sc.interactive) {
            if (cli_edit_terminal_gone(r.in_revents))
                sc.quit = true; /* libedit would not say: it returns on EOF */
            else
                cli_edit_read();
        } else if (r.in && sc.stdin_open) {
            if (read_stdin(&sc) < 0) {
                status = EXIT_RUNTIME;
                break;
            }
        }
    }
    if (sc.interactive)
        stop_terminal(&sc);
    sk_sock_close(sock);
    cli_pump_free(&sc.pump);
    free(sc.line.data);
    free(sc.in.data);
    free(sc.show.data);
    return status;
}

/* ---------------------------------------------------------- datagrams */

static int dgram_socket(const connect_cfg *cfg, const sk_addr *addr)
{
    struct sockaddr_storage ss[4];
    socklen_t sl[4];
    char err[300];
    int n = sk_addr_resolve(addr, 0, ss, sl, 4, err, sizeof err);
    if (n < 0) {
        cli_err("%s", err);
        return -1;
    }
    /* -4, -6, --source: the first address of the family they ask. */
    int want =
        cfg->dial.source.ss_family != AF_UNSPEC ? cfg->dial.source.ss_family : cfg->dial.family;
    int i = 0;
    while (i < n && want != AF_UNSPEC && ss[i].ss_family != want)
        i++;
    if (i == n) {
        cli_err("%s has no %s address", addr->host, want == AF_INET ? "IPv4" : "IPv6");
        return -1;
    }
    if (i > 0) {
        ss[0] = ss[i];
        sl[0] = sl[i];
    }
    int fd = socket(ss[0].ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        cli_err("socket: %s", strerror(errno));
        return -1;
    }
    if (cfg->dial.source.ss_family != AF_UNSPEC &&
        bind(fd, (struct sockaddr *)&cfg->dial.source, cfg->dial.source_len) < 0) {
        char text[200];
        cli_err("cannot bind the source address %s: %s",
                sk_sockaddr_format((struct sockaddr *)&cfg->dial.source, cfg->dial.source_len, text,
                                   sizeof text),
                strerror(errno));
        close(fd);
        return -1;
    }
    if (addr->kind == SK_ADDR_UNIXGRAM) {
        /* Autobind an abstract name: a reply needs an address to go to. */
        struct sockaddr_un me = {.sun_family = AF_UNIX};
        if (bind(fd, (struct sockaddr *)&me, sizeof(sa_family_t)) < 0) {
            cli_err("bind: %s", strerror(errno));
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)&ss[0], sl[0]) < 0) {
        char text[200];
        cli_err("cannot reach %s: %s",
                sk_sockaddr_format((struct sockaddr *)&ss[0], sl[0], text, sizeof text),
                strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Sends one datagram and waits for its reply, printed (through shown,
 * escaped, on a terminal). Returns 0 if a reply came. */
static int dgram_exchange(const connect_cfg *cfg, int fd, const uint8_t *data, size_t len,
                          int timeout_ms, uint8_t *reply, cli_bytes *shown)
{
    if (len > SK_DGRAM_MAX) {
        cli_err("line of %zu bytes is larger than a datagram (max %d)", len, SK_DGRAM_MAX);
        return -1;
    }
    cli_hexdump_write(cfg->dump, CLI_HEX_OUT, data, len);
    if (send(fd, data, len, 0) < 0) {
        cli_err("send: %s", strerror(errno));
        return -1;
    }
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) {
            cli_err("no reply within %.1f s", timeout_ms / 1000.0);
            return -1;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int n = poll(&p, 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            continue;
        ssize_t r = recv(fd, reply, SK_DGRAM_MAX + 1, MSG_DONTWAIT | MSG_TRUNC);
        if (r < 0) {
            if (errno == EAGAIN || errno == EINTR)
                continue;
            cli_err("no reply: %s", strerror(errno));
            return -1;
        }
        if (r > SK_DGRAM_MAX) {
            cli_err("dropped a reply larger than %d bytes", SK_DGRAM_MAX);
            continue;
        }
        cli_hexdump_write(cfg->dump, CLI_HEX_IN, reply, (size_t)r);
        if (shown != NULL) {
            /* On a terminal: escaped, as for streams. */
            shown->len = 0;
            if (add_escaped(shown, reply, (size_t)r) == 0)
                cli_write_all(STDOUT_FILENO, shown->data, shown->len);
        } else {
            cli_write_all(STDOUT_FILENO, reply, (size_t)r);
        }
        cli_write_all(STDOUT_FILENO, "\n", 1);
        return 0;
    }
}

static int run_dgram(const connect_cfg *cfg, const sk_addr *addr)
{
    int fd = dgram_socket(cfg, addr);
    if (fd < 0)
        return EXIT_RUNTIME;
    bool interactive = isatty(STDIN_FILENO);
    int timeout = cfg->timeout_ms;
    uint8_t *reply = malloc(SK_DGRAM_MAX + 1);
    cli_bytes line = {0};
    int status = EXIT_OK;
    if (reply == NULL) {
        close(fd);
        return EXIT_RUNTIME;
    }
    FILE *in = stdin;
    char *buf = NULL;
    size_t cap = 0;
    for (;;) {
        if (interactive)
            cli_write_all(STDOUT_FILENO, "> ", 2);
        ssize_t n = getline(&buf, &cap, in);
        if (n < 0)
            break;
        if (n > 0 && buf[n - 1] == '\n')
            n--;
        if (n > 0 && buf[n - 1] == '\r')
            n--;
        if (interactive && n == 0)
            continue;
        if (interactive && n == 1 && buf[0] == 'q')
            break;
        uint8_t *send_from = (uint8_t *)buf;
        if (interactive && quit_word_escaped(send_from, (size_t)n)) {
            send_from++;
            n--;
        }
        if (dgram_exchange(cfg, fd, send_from, (size_t)n, timeout, reply,
                           interactive ? &line : NULL) < 0)
            status = EXIT_RUNTIME;
    }
    free(buf);
    free(line.data);
    free(reply);
    close(fd);
    return status;
}

int cmd_connect(int argc, char **argv)
{
    connect_cfg cfg = {
        .framing = SK_FRAMING_RAW, .timeout_ms = CLI_TIMEOUT_MS, .max_frame = SK_DEFAULT_MAX_FRAME};
    static const struct option longopts[] = {
        {"framing", required_argument, NULL, 'f'},
        {"timeout", required_argument, NULL, 't'},
        {"max-frame", required_argument, NULL, 'm'},
        {"source", required_argument, NULL, 's'},
        {"hex", no_argument, NULL, 'x'},
        {"hex-file", required_argument, NULL, 'X'},
        CLI_TLS_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    optind = 1;
    int ch;
    const char *source = NULL;
    while ((ch = getopt_long(argc, argv, ":h46", longopts, NULL)) != -1) {
        uint32_t ms;
        int t = cli_tls_option(&cfg.tls, ch, optarg);
        if (t < 0)
            return EXIT_USAGE;
        if (t > 0)
            continue;
        switch (ch) {
        case 'h': usage(stdout); return EXIT_OK;
        case 'f':
            if (sk_framing_parse(optarg, &cfg.framing) < 0) {
                cli_err("bad value \"%s\" for --framing (raw, line or frame)", optarg);
                return EXIT_USAGE;
            }
            break;
        case 't':
            if (cli_parse_seconds(optarg, &ms) < 0 || ms == 0) {
                cli_err("bad value \"%s\" for --timeout (seconds, > 0)", optarg);
                return EXIT_USAGE;
            }
            cfg.timeout_ms = (int)ms;
            break;
        case 'm':
            if (cli_parse_size(optarg, &cfg.max_frame) < 0 || cfg.max_frame > UINT32_MAX) {
                cli_err("bad value \"%s\" for --max-frame", optarg);
                return EXIT_USAGE;
            }
            break;
        case '4':
        case '6':
            if (cfg.dial.family != AF_UNSPEC &&
                cfg.dial.family != (ch == '4' ? AF_INET : AF_INET6)) {
                cli_err("give -4 or -6, not both");
                return EXIT_USAGE;
            }
            cfg.dial.family = ch == '4' ? AF_INET : AF_INET6;
            break;
        case 's': source = optarg; break;
        case 'x': cfg.hex = true; break;
        case 'X':
            cfg.hex = true;
            cfg.hex_file = optarg;
            break;
        case ':': cli_err("option %s needs a value", argv[optind - 1]); return EXIT_USAGE;
        default:
            cli_err("unknown option \"%s\" (try: sockit connect --help)", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        if (!cli_host_port_slip("connect", argc - optind, argv + optind))
            cli_err(argc - optind == 0 ? "connect needs an address (try: sockit connect --help)"
                                       : "connect takes one address (HOST:PORT, unix:PATH, ...)");
        return EXIT_USAGE;
    }
    sk_addr addr;
    char err[300];
    if (sk_addr_parse(argv[optind], &addr, err, sizeof err) < 0) {
        cli_err("bad address: %s%s", err, cli_addr_hint(argv[optind]));
        return EXIT_USAGE;
    }
    /* After the loop: -6 --source 10.0.0.1 is refused whatever the order. */
    if (source != NULL && sk_dial_source_parse(source, &cfg.dial, err, sizeof err) < 0) {
        cli_err("--source: %s", err);
        return EXIT_USAGE;
    }
    bool ip = addr.kind == SK_ADDR_TCP || addr.kind == SK_ADDR_TLS || addr.kind == SK_ADDR_UDP;
    if (!ip && (cfg.dial.family != AF_UNSPEC || source != NULL)) {
        cli_err("-4, -6 and --source apply to IP addresses only");
        return EXIT_USAGE;
    }
    int rc = cli_tls_prepare(&cfg.tls, &addr);
    if (rc != 0)
        return rc;
    if (cfg.hex && cli_hexdump_open(cfg.hex_file, &cfg.dump) < 0) {
        cli_tls_free(&cfg.tls);
        return EXIT_RUNTIME;
    }
    if (addr.kind == SK_ADDR_UDP || addr.kind == SK_ADDR_UNIXGRAM)
        rc = run_dgram(&cfg, &addr);
    else
        rc = run_stream(&cfg, &addr);
    cli_hexdump_close(cfg.dump);
    cli_tls_free(&cfg.tls);
    return rc;
}
