/* listen.c — `sockit listen ADDR [-k]`: nc -l. Accepts one peer (TCP,
 * IPv6, unix:, unix:@, tls://) and pipes it to stdin/stdout: stdin to the
 * peer, the peer to stdout, a half-close when stdin ends, done when both
 * directions are; -k takes the next peer after one is done, one at a time.
 * udp:// and unixgram: print the first peer's datagrams and send it stdin's
 * lines. Access lists as on `sockit serve`. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "cli.h"
#include "hexdump.h"
#include "pump.h"

#define CHUNK (64u * 1024u)

enum { O_CERT = 1200, O_KEY, O_HEX, O_HEXFILE };

typedef struct listen_cfg {
    bool keep;  /* -k */
    int family; /* -4 / -6 */
    const char *cert, *key;
    bool hex;
    const char *hex_file;
    sk_acl *acl;
    sk_tls_ctx *tls;
    cli_hexdump *dump;
} listen_cfg;

/* The stop signal that arrived (SIGINT, SIGTERM, SIGHUP), or 0. Its
 * handler only records it: poll and read return EINTR, and the loops
 * leave through their cleanup (a Unix socket file is removed). */
static volatile sig_atomic_t g_stop;

static void on_stop(int sig) { g_stop = sig; }

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sockit listen ADDR [-k] [options]\n"
        "\n"
        "Waits for one peer on ADDR and pipes it like nc -l: stdin goes to the peer, the\n"
        "peer to stdout; at the end of stdin the sending side is shut down, and the\n"
        "command ends once both directions are done (exit 0 on a clean end).\n"
        "ADDR: HOST:PORT, [IPv6]:PORT, unix:PATH, unix:@NAME, tls://HOST:PORT (with --cert\n"
        "and --key); udp://HOST:PORT and unixgram:PATH print the first peer's datagrams\n"
        "and send each stdin line back to that peer as one datagram.\n"
        "  -k                after one peer is done, wait for the next (one at a time,\n"
        "                    as nc -lk; a peer's end of stream ends its turn)\n"
        "  -4, -6            listen on the name's IPv4 (IPv6) address only\n"
        "  --cert FILE       tls://: the server's PEM certificate (sockit cert NAME)\n"
        "  --key FILE        tls://: its private key\n"
        "  --hex             a hex dump of both directions on stderr ('>' sent, '<'\n"
        "                    received, with offset, hex and ASCII)\n"
        "  --hex-file FILE   the hex dump into FILE instead\n"
        "network access lists (TCP, tls:// and UDP; Unix sockets are not affected):\n" CLI_ACL_USAGE
        "The port actually bound is printed as \"listening on ADDR\" on stderr.\n"
        "Exit codes: 0 ok, 1 runtime failure (cannot listen, a reset peer), 2 usage,\n"
        "128+N after signal N.\n");
}

/* ------------------------------------------------------------ streams */

/* stdin outlives one peer under -k: once it has ended, every later peer
 * gets an immediate end of stream. */
static bool g_stdin_open = true;

/* Pipes one accepted peer. Returns 0 on a clean end, 1 after a failure
 * (already reported). */
static int session(listen_cfg *cfg, sk_sock *sock)
{
    cli_pump pump;
    cli_pump_init(&pump, sock, -1);
    struct stat st;
    pump.stdin_file = fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode);
    bool shut_sent = false;
    int status = 0;
    uint8_t *buf = malloc(CHUNK);
    if (buf == NULL) {
        cli_err("out of memory");
        return 1;
    }
    for (;;) {
        if (g_stop)
            break;
        if (!g_stdin_open && pump.out_len == 0 && !shut_sent) {
            /* Half-close: the peer sees the end of our input and may still
             * send everything it owes. */
            sk_sock_shutdown(sock);
            shut_sent = true;
        }
        if (pump.sock_eof && shut_sent)
            break; /* both directions done */
        if (pump.sock_eof && cfg->keep && pump.out_len == 0)
            break; /* -k, as nc -lk: the peer's end of stream ends its turn */
        cli_pump_ready r;
        if (cli_pump_wait(&pump, g_stdin_open, 0, &r) < 0) {
            status = 1;
            break;
        }
        if (r.sock) {
            ssize_t n = sk_sock_recv(sock, buf, CHUNK);
            if (n == 0) {
                pump.sock_eof = true;
            } else if (n > 0) {
                cli_hexdump_write(cfg->dump, CLI_HEX_IN, buf, (size_t)n);
                if (cli_write_all(STDOUT_FILENO, buf, (size_t)n) < 0) {
                    cli_err("write to stdout: %s", strerror(errno));
                    status = 1;
                    break;
                }
            } else if (n != -EAGAIN) {
                cli_err("receive: %s", sk_strerror((int)n));
                status = 1;
                break;
            }
        }
        if (r.gone) {
            if (pump.out_len > 0) {
                cli_err("the peer went away with %zu bytes not sent", pump.out_len);
                status = 1;
            }
            break;
        }
        if (r.sock_write) {
            int rc = cli_pump_flush(&pump);
            if (rc < 0) {
                cli_err("send: %s", sk_strerror(rc));
                status = 1;
                break;
            }
        }
        if (r.in && g_stdin_open) {
            ssize_t n = read(STDIN_FILENO, buf, CHUNK);
            if (n == 0) {
                g_stdin_open = false;
            } else if (n > 0) {
                cli_hexdump_write(cfg->dump, CLI_HEX_OUT, buf, (size_t)n);
                if (cli_pump_queue(&pump, buf, (size_t)n) < 0) {
                    cli_err("out of memory");
                    status = 1;
                    break;
                }
            } else if (errno != EINTR && errno != EAGAIN) {
                cli_err("read from stdin: %s", strerror(errno));
                g_stdin_open = false;
                status = 1;
                break;
            }
        }
    }
    free(buf);
    cli_pump_free(&pump);
    return status;
}

static int run_stream(listen_cfg *cfg, const sk_addr *addr)
{
    sk_listener_opts o = {.tls = cfg->tls, .acl = cfg->acl, .family = cfg->family};
    sk_listener *l = NULL;
    char err[600];
    if (sk_listener_open(addr, &o, &l, err, sizeof err) < 0) {
        cli_err("%s", err);
        return EXIT_RUNTIME;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char text[300];
    if (addr->kind == SK_ADDR_UNIX ||
        getsockname(sk_listener_fd(l), (struct sockaddr *)&ss, &sl) < 0)
        sk_addr_format(addr, text, sizeof text);
    else
        sk_sockaddr_format((struct sockaddr *)&ss, sl, text, sizeof text);
    cli_err("listening on %s%s", addr->kind == SK_ADDR_TLS ? "tls://" : "", text);
    int status = EXIT_OK;
    for (;;) {
        sk_sock *sock = NULL;
        sl = sizeof ss;
        int rc = sk_listener_accept(l, SK_FOREVER, &sock, &ss, &sl, err, sizeof err);
        if (g_stop) {
            sk_sock_close(sock);
            break;
        }
        if (rc == -EINTR)
            continue;
        if (rc < 0 && (rc == -EMFILE || rc == -ENFILE || rc == -ENOMEM || rc == -ENOBUFS ||
                       rc == -EBADF || rc == -EINVAL)) {
            cli_err("%s", err);
            status = EXIT_RUNTIME;
            break;
        }
        if (rc < 0) {
            /* One peer's failed TLS handshake: it never became a session;
             * wait for another. */
            cli_err("%s", err);
            continue;
        }
        char peer[200];
        sk_sockaddr_format((struct sockaddr *)&ss, sl, peer, sizeof peer);
        char how[160] = "";
        if (sk_sock_describe(sock, how + 2, sizeof how - 2) == 0)
            memcpy(how, ", ", 2);
        cli_err("connection from %s%s", peer, how);
        char mark[300];
        snprintf(mark, sizeof mark, "connection from %s", peer);
        cli_hexdump_mark(cfg->dump, mark);
        int s = session(cfg, sock);
        sk_sock_close(sock);
        if (!cfg->keep) {
            status = s;
            break;
        }
        if (g_stop)
            break;
    }
    sk_listener_close(l);
    return g_stop ? 128 + g_stop : status;
}

/* ---------------------------------------------------------- datagrams */

/* Binds a udp:// or unixgram: address (the name's first address of the
 * family asked). Returns the descriptor, or -1 after one line. */
static int dgram_bind(const listen_cfg *cfg, const sk_addr *addr, bool *made_file)
{
    struct sockaddr_storage ss[8];
    socklen_t sl[8];
    char err[300];
    int n = sk_addr_resolve(addr, SK_RESOLVE_PASSIVE, ss, sl, 8, err, sizeof err);
    if (n < 0) {
        cli_err("%s", err);
        return -1;
    }
    int i = 0;
    while (i < n && cfg->family != AF_UNSPEC && ss[i].ss_family != cfg->family)
        i++;
    if (i == n) {
        cli_err("%s has no %s address", addr->host, cfg->family == AF_INET ? "IPv4" : "IPv6");
        return -1;
    }
    int fd = socket(ss[i].ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        cli_err("socket: %s", strerror(errno));
        return -1;
    }
    if (bind(fd, (struct sockaddr *)&ss[i], sl[i]) < 0) {
        char text[300];
        cli_err("cannot listen on %s: %s",
                sk_sockaddr_format((struct sockaddr *)&ss[i], sl[i], text, sizeof text),
                strerror(errno));
        close(fd);
        return -1;
    }
    *made_file = addr->kind == SK_ADDR_UNIXGRAM && !addr->abstract;
    return fd;
}

/* Reads stdin, sending each whole line (with its "\n") to the peer as one
 * datagram; the last line may lack one. Returns 0, or -1 at the end of
 * stdin or after a failure (then status is set). */
static int dgram_stdin(const listen_cfg *cfg, int fd, cli_bytes *line,
                       const struct sockaddr_storage *peer, socklen_t peerlen, int *status)
{
    uint8_t buf[CHUNK];
    ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0)
        return errno == EINTR || errno == EAGAIN ? 0 : -1;
    bool eof = n == 0;
    if (!eof && cli_bytes_add(line, buf, (size_t)n) < 0) {
        cli_err("out of memory");
        *status = EXIT_RUNTIME;
        return -1;
    }
    size_t start = 0;
    for (;;) {
        uint8_t *nl = memchr(line->data + start, '\n', line->len - start);
        size_t end = nl ? (size_t)(nl - line->data) + 1 : line->len;
        if (nl == NULL && !(eof && end > start))
            break;
        size_t len = end - start;
        if (len > SK_DGRAM_MAX) {
            cli_err("line of %zu bytes is larger than a datagram (max %d): not sent", len,
                    SK_DGRAM_MAX);
        } else {
            cli_hexdump_write(cfg->dump, CLI_HEX_OUT, line->data + start, len);
            if (sendto(fd, line->data + start, len, 0, (const struct sockaddr *)peer, peerlen) < 0)
                cli_err("send: %s", strerror(errno));
        }
        start = end;
    }
    cli_bytes_drop(line, start);
    if (line->len > SK_DGRAM_MAX) {
        cli_err("input line longer than a datagram (max %d bytes)", SK_DGRAM_MAX);
        *status = EXIT_RUNTIME;
        return -1;
    }
    return eof ? -1 : 0;
}

static int run_dgram(listen_cfg *cfg, const sk_addr *addr)
{
    bool made_file = false;
    int fd = dgram_bind(cfg, addr, &made_file);
    if (fd < 0)
        return EXIT_RUNTIME;
    struct sockaddr_storage me;
    socklen_t ml = sizeof me;
    char text[300], bound[200];
    if (addr->kind == SK_ADDR_UNIXGRAM || getsockname(fd, (struct sockaddr *)&me, &ml) < 0)
        sk_addr_format(addr, text, sizeof text);
    else
        snprintf(text, sizeof text, "udp://%s",
                 sk_sockaddr_format((struct sockaddr *)&me, ml, bound, sizeof bound));
    cli_err("listening on %s", text);
    uint8_t *buf = malloc(SK_DGRAM_MAX + 1);
    cli_bytes line = {0};
    struct sockaddr_storage peer;
    socklen_t peerlen = 0; /* 0: no peer yet */
    bool stdin_open = true;
    int status = EXIT_OK;
    uint64_t last_refusal = 0;
    if (buf == NULL) {
        cli_err("out of memory");
        status = EXIT_RUNTIME;
    }
    while (buf != NULL && !g_stop) {
        /* stdin is read once there is a peer to send it to. */
        struct pollfd p[2] = {{.fd = fd, .events = POLLIN}, {.fd = -1}};
        if (stdin_open && peerlen > 0)
            p[1] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            cli_err("poll: %s", strerror(errno));
            status = EXIT_RUNTIME;
            break;
        }
        if (p[0].revents) {
            struct sockaddr_storage from;
            socklen_t fl = sizeof from;
            ssize_t n = recvfrom(fd, buf, SK_DGRAM_MAX + 1, MSG_DONTWAIT | MSG_TRUNC,
                                 (struct sockaddr *)&from, &fl);
            if (n >= 0 && !sk_acl_allows(cfg->acl, (struct sockaddr *)&from, fl)) {
                uint64_t now = cli_pump_now_ms();
                if (last_refusal == 0 || now - last_refusal >= 1000) {
                    last_refusal = now;
                    cli_err("refused %s: not allowed by the access list (--allow/--deny)",
                            sk_sockaddr_format((struct sockaddr *)&from, fl, text, sizeof text));
                }
            } else if (n >= 0 && n > SK_DGRAM_MAX) {
                cli_err("dropped a datagram larger than %d bytes", SK_DGRAM_MAX);
            } else if (n >= 0) {
                bool first = peerlen == 0;
                /* The first peer is the peer; -k: whoever sent last. */
                bool same = !first && fl == peerlen && memcmp(&from, &peer, fl) == 0;
                if (first || cfg->keep || same) {
                    if (!same) {
                        peer = from;
                        peerlen = fl;
                        cli_err("datagrams from %s", sk_sockaddr_format((struct sockaddr *)&from,
                                                                        fl, text, sizeof text));
                    }
                    cli_hexdump_write(cfg->dump, CLI_HEX_IN, buf, (size_t)n);
                    if (cli_write_all(STDOUT_FILENO, buf, (size_t)n) < 0) {
                        cli_err("write to stdout: %s", strerror(errno));
                        status = EXIT_RUNTIME;
                        break;
                    }
                }
            } else if (errno != EAGAIN && errno != EINTR && errno != ECONNREFUSED) {
                cli_err("receive: %s", strerror(errno));
                status = EXIT_RUNTIME;
                break;
            }
        }
        if (p[1].fd >= 0 && p[1].revents) {
            /* The end of stdin ends only what we send: a datagram peer
             * has no end of stream, so its datagrams are printed until a
             * signal stops us, as nc -u -l does. */
            if (dgram_stdin(cfg, fd, &line, &peer, peerlen, &status) < 0)
                stdin_open = false;
            if (status != EXIT_OK)
                break;
        }
    }
    free(line.data);
    free(buf);
    close(fd);
    if (made_file)
        unlink(addr->path);
    return g_stop ? 128 + g_stop : status;
}

/* -------------------------------------------------------------- options */

static int parse(int argc, char **argv, listen_cfg *cfg, const char **addr_text)
{
    static const struct option longopts[] = {
        {"cert", required_argument, NULL, O_CERT}, {"key", required_argument, NULL, O_KEY},
        {"hex", no_argument, NULL, O_HEX},         {"hex-file", required_argument, NULL, O_HEXFILE},
        {"keep-open", no_argument, NULL, 'k'},     CLI_ACL_LONGOPTS,
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":hk46", longopts, NULL)) != -1) {
        int a = cli_acl_option(&cfg->acl, ch, optarg);
        if (a < 0)
            return EXIT_USAGE;
        if (a > 0)
            continue;
        switch (ch) {
        case 'h': usage(stdout); return -1;
        case 'k': cfg->keep = true; break;
        case '4':
        case '6':
            if (cfg->family != AF_UNSPEC && cfg->family != (ch == '4' ? AF_INET : AF_INET6)) {
                cli_err("give -4 or -6, not both");
                return EXIT_USAGE;
            }
            cfg->family = ch == '4' ? AF_INET : AF_INET6;
            break;
        case O_CERT: cfg->cert = optarg; break;
        case O_KEY: cfg->key = optarg; break;
        case O_HEX: cfg->hex = true; break;
        case O_HEXFILE:
            cfg->hex = true;
            cfg->hex_file = optarg;
            break;
        case ':': cli_err("option %s needs a value", argv[optind - 1]); return EXIT_USAGE;
        default:
            cli_err("unknown option \"%s\" (try: sockit listen --help)", argv[optind - 1]);
            return EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        if (!cli_host_port_slip("listen", argc - optind, argv + optind))
            cli_err(argc - optind == 0 ? "listen needs an address (try: sockit listen --help)"
                                       : "listen takes one address (HOST:PORT, unix:PATH, ...)");
        return EXIT_USAGE;
    }
    *addr_text = argv[optind];
    return 0;
}

/* The checks between the options and the address. */
static int prepare(listen_cfg *cfg, const sk_addr *addr)
{
    bool tls = addr->kind == SK_ADDR_TLS;
    bool unix_kind = addr->kind == SK_ADDR_UNIX || addr->kind == SK_ADDR_UNIXGRAM;
    if (tls && (cfg->cert == NULL || cfg->key == NULL)) {
        cli_err("a tls:// address needs --cert FILE and --key FILE (try: sockit cert NAME)");
        return EXIT_USAGE;
    }
    if (!tls && (cfg->cert != NULL || cfg->key != NULL)) {
        cli_err("--cert and --key apply to tls:// addresses only");
        return EXIT_USAGE;
    }
    if (unix_kind && cfg->family != AF_UNSPEC) {
        cli_err("-4 and -6 apply to IP addresses only");
        return EXIT_USAGE;
    }
    if (tls) {
        if (cli_tls_check_server_files(cfg->cert, cfg->key) < 0)
            return EXIT_USAGE;
        char err[600];
        if (sk_tls_server_new(cfg->cert, cfg->key, &cfg->tls, err, sizeof err) < 0) {
            cli_err("%s", err);
            return EXIT_RUNTIME;
        }
    }
    if (cfg->hex && cli_hexdump_open(cfg->hex_file, &cfg->dump) < 0)
        return EXIT_RUNTIME;
    return 0;
}

int cmd_listen(int argc, char **argv)
{
    listen_cfg cfg = {0};
    const char *text = NULL;
    int rc = parse(argc, argv, &cfg, &text);
    if (rc == 0) {
        sk_addr addr;
        char err[300];
        if (sk_addr_parse(text, &addr, err, sizeof err) < 0) {
            cli_err("bad address: %s%s", err, cli_addr_hint(text));
            rc = EXIT_USAGE;
        } else {
            rc = prepare(&cfg, &addr);
        }
        if (rc == 0) {
            struct sigaction sa = {.sa_handler = on_stop}; /* no SA_RESTART: poll returns */
            sigemptyset(&sa.sa_mask);
            sigaction(SIGINT, &sa, NULL);
            sigaction(SIGTERM, &sa, NULL);
            sigaction(SIGHUP, &sa, NULL);
            cli_log_to_stderr(SK_LOG_WARN);
            if (addr.kind == SK_ADDR_UDP || addr.kind == SK_ADDR_UNIXGRAM)
                rc = run_dgram(&cfg, &addr);
            else
                rc = run_stream(&cfg, &addr);
        }
    } else if (rc < 0) {
        rc = EXIT_OK; /* --help */
    }
    cli_hexdump_close(cfg.dump);
    sk_tls_ctx_free(cfg.tls);
    sk_acl_free(cfg.acl);
    return rc;
}
