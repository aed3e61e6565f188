/* files_conn.c — what `sockit put`, `get` and `ls` share: their options, the
 * connection and handshake (hello; the mutual HMAC authentication when the
 * server has a token), reading and writing protocol messages with every
 * wait bounded, and small local helpers. Blocking, with poll() underneath:
 * one transfer at a time is all a client does. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "../services/proto/handshake.h"
#include "files.h"

/* The TLS context of this process's files command, if any (see
 * files_cli_parse), freed when the process exits: put, get and ls leave
 * from many places, and a resumed transfer reconnects with it. */
static sk_tls_ctx *files_tls_ctx;

static void files_tls_free(void)
{
    sk_tls_ctx_free(files_tls_ctx);
    files_tls_ctx = NULL;
}

/* The connection's buffer, for message headers and small messages. */
#define IN_CHUNK (64u * 1024u)
/* Bytes a header read asks for beyond the header: a little read-ahead saves
 * a recv() per small message, while a DATA body is left in the socket to be
 * received straight into the caller's buffer (fc_body), not copied through
 * this one. */
#define IN_AHEAD 4096u

uint64_t files_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ------------------------------------------------------------- options */

int files_cli_parse(files_cli *o, int argc, char **argv, int min_args, int max_args,
                    bool allow_json, void (*usage)(FILE *out))
{
    enum {
        O_TOKEN = 256,
        O_TIMEOUT,
        O_JSON,
        O_NO_CLOBBER,
        O_NO_RESUME,
        O_PARTIAL_TTL,
        O_DELETE,
        O_DRY_RUN,
        O_CHECKSUM,
        O_KEEP_SPECIAL
    };
    static const struct option longopts[] = {
        {"token-file", required_argument, NULL, O_TOKEN},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"quiet", no_argument, NULL, 'q'},
        {"json", no_argument, NULL, O_JSON},
        {"no-clobber", no_argument, NULL, O_NO_CLOBBER},
        {"no-resume", no_argument, NULL, O_NO_RESUME},
        {"partial-ttl", required_argument, NULL, O_PARTIAL_TTL},
        {"recursive", no_argument, NULL, 'r'},
        {"delete", no_argument, NULL, O_DELETE},
        {"dry-run", no_argument, NULL, O_DRY_RUN},
        {"checksum", no_argument, NULL, O_CHECKSUM},
        {"keep-special-bits", no_argument, NULL, O_KEEP_SPECIAL},
        CLI_TLS_LONGOPTS,
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    o->timeout_ms = FILES_CLI_TIMEOUT_MS;
    o->partial_ttl_s = FILES_CLI_PARTIAL_TTL_S;
    bool is_get = strcmp(o->cmd, "get") == 0, is_put = strcmp(o->cmd, "put") == 0;
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, is_get || is_put ? ":hqr" : ":hq", longopts, NULL)) !=
           -1) {
        int t = cli_tls_option(&o->tls, ch, optarg);
        if (t < 0)
            return -1;
        if (t > 0)
            continue;
        switch (ch) {
        case 'h': usage(stdout); return 1;
        case 'q': o->quiet = true; break;
        case O_TOKEN: o->token_file = optarg; break;
        case O_TIMEOUT: {
            uint32_t ms = 0;
            if (cli_parse_seconds(optarg, &ms) < 0 || ms == 0) {
                cli_err("bad value \"%s\" for --timeout (seconds, more than 0)", optarg);
                return -1;
            }
            o->timeout_ms = (int)ms;
            break;
        }
        case 'r':
        case O_DELETE:
        case O_DRY_RUN:
        case O_CHECKSUM:
        case O_KEEP_SPECIAL:
            if (!is_get && !is_put) {
                cli_err("%s applies to put and get only", argv[optind - 1]);
                return -1;
            }
            o->recursive |= ch == 'r';
            o->delete_extra |= ch == O_DELETE;
            o->dry_run |= ch == O_DRY_RUN;
            o->checksum |= ch == O_CHECKSUM;
            o->keep_special |= ch == O_KEEP_SPECIAL;
            break;
        case O_JSON:
            if (!allow_json && !is_get && !is_put) {
                cli_err("--json applies to ls, put and get only");
                return -1;
            }
            o->json = true;
            break;
        case O_NO_CLOBBER:
            if (!is_get && !is_put) {
                cli_err("--no-clobber applies to put and get only");
                return -1;
            }
            o->no_clobber = true;
            break;
        case O_NO_RESUME:
        case O_PARTIAL_TTL:
            if (!is_get) {
                cli_err("%s applies to get only (the server keeps put's partials: its own "
                        "--partial-ttl)",
                        ch == O_NO_RESUME ? "--no-resume" : "--partial-ttl");
                return -1;
            }
            if (ch == O_NO_RESUME) {
                o->no_resume = true;
            } else {
                uint32_t ms = 0;
                if (cli_parse_seconds(optarg, &ms) < 0 || ms < 1000) {
                    cli_err("bad value \"%s\" for --partial-ttl (seconds, at least 1)", optarg);
                    return -1;
                }
                o->partial_ttl_s = ms / 1000u;
            }
            break;
        case ':': cli_err("option %s needs a value", argv[optind - 1]); return -1;
        default:
            cli_err("unknown option \"%s\" (try: sockit %s --help)", argv[optind - 1], o->cmd);
            return -1;
        }
    }
    int npos = argc - optind;
    if (max_args >= 0 && npos > 1 + max_args) {
        cli_err("unexpected argument \"%s\" (try: sockit %s --help)", argv[optind + 1 + max_args],
                o->cmd);
        return -1;
    }
    if (npos < 1 + min_args) {
        cli_err("%s needs %s (try: sockit %s --help)", o->cmd,
                min_args == 0 ? "an ADDR"
                : npos == 0   ? "an ADDR and a path"
                              : "a path",
                o->cmd);
        return -1;
    }
    o->addr_text = argv[optind];
    char err[300];
    if (sk_addr_parse(o->addr_text, &o->addr, err, sizeof err) < 0) {
        cli_err("bad address: %s%s", err, cli_addr_hint(o->addr_text));
        return -1;
    }
    if (o->addr.kind != SK_ADDR_TCP && o->addr.kind != SK_ADDR_UNIX &&
        o->addr.kind != SK_ADDR_TLS) {
        cli_err("%s: the files service works over TCP, TLS or Unix stream sockets only",
                o->addr_text);
        return -1;
    }
    /* A missing, public or weak token file is a usage error, as it is for
     * the server (exit 2), found before anything is dialled; fc_open reads
     * it again when it connects. */
    if (o->token_file != NULL) {
        uint8_t token[SK_TOKEN_MAX];
        size_t token_len = 0;
        char why[400];
        int rc = sk_token_load(o->token_file, token, sizeof token, &token_len, why, sizeof why);
        OPENSSL_cleanse(token, sizeof token);
        if (rc < 0) {
            cli_err("%s", why);
            return -1;
        }
    }
    if (cli_tls_prepare(&o->tls, &o->addr) != 0)
        return -1;
    /* One context for the whole command (a resumed transfer reconnects and
     * resumes its TLS session too), freed at exit. */
    if (o->tls.ctx != NULL && files_tls_ctx == NULL) {
        files_tls_ctx = o->tls.ctx;
        atexit(files_tls_free);
    }
    o->nargs = npos - 1;
    o->args = argv + optind + 1;
    return 0;
}

/* ------------------------------------------------------------- reading */

static int wait_for(const fconn *c, short events)
{
    /* TLS: a read may have to write first (and the other way round). */
    if (events == POLLIN && sk_sock_wants(c->sock, SK_READABLE) == SK_WRITABLE)
        events = POLLOUT;
    struct pollfd pf = {.fd = sk_sock_fd(c->sock), .events = events};
    for (;;) {
        int n = poll(&pf, 1, c->timeout_ms);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -ETIMEDOUT;
        return pf.revents;
    }
}

static void io_error(const fconn *c, int err, const char *what)
{
    if (err == -ETIMEDOUT)
        cli_err("%s: no answer for %.0f s during %s (--timeout)", c->addr, c->timeout_ms / 1000.0,
                what);
    else if (err == -ENODATA)
        cli_err("%s: the server closed the connection during %s", c->addr, what);
    else
        cli_err("%s: %s during %s", c->addr, sk_strerror(err), what);
}

/* Makes at least need bytes available in the buffer. */
static int fill(fconn *c, size_t need, const char *what)
{
    if (c->in_off > 0 && c->in_off + need > c->in_cap) {
        memmove(c->in, c->in + c->in_off, c->in_len);
        c->in_off = 0;
    }
    while (c->in_len < need) {
        size_t room = c->in_cap - c->in_off - c->in_len;
        if (room > need - c->in_len + IN_AHEAD)
            room = need - c->in_len + IN_AHEAD;
        ssize_t n = sk_sock_recv(c->sock, c->in + c->in_off + c->in_len, room);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        int err = n == 0 ? -ENODATA : (int)n;
        if (err == -EAGAIN) {
            int r = wait_for(c, POLLIN);
            if (r >= 0)
                continue;
            err = r;
        }
        io_error(c, err, what);
        return -1;
    }
    return 0;
}

bool fc_pending(fconn *c)
{
    if (c->in_len > 0 || sk_sock_pending(c->sock))
        return true;
    struct pollfd pf = {.fd = sk_sock_fd(c->sock), .events = POLLIN};
    return poll(&pf, 1, 0) > 0;
}

int fc_head(fconn *c, uint8_t *type, size_t *len, const char *what)
{
    if (fill(c, SK_FRAME_HEADER + 1, what) < 0)
        return -1;
    const uint8_t *p = c->in + c->in_off;
    uint32_t n = proto_get32(p);
    if (n == 0 || n > FILES_OUT_MAX) {
        cli_err("%s: protocol error: a message of %u bytes during %s (not a sockit files "
                "server?)",
                c->addr, n, what);
        return -1;
    }
    *type = p[SK_FRAME_HEADER];
    *len = n - 1;
    c->in_off += SK_FRAME_HEADER + 1;
    c->in_len -= SK_FRAME_HEADER + 1;
    return 0;
}

int fc_body(fconn *c, void *buf, size_t len, const char *what)
{
    uint8_t *out = buf;
    size_t take = len < c->in_len ? len : c->in_len;
    memcpy(out, c->in + c->in_off, take);
    c->in_off += take;
    c->in_len -= take;
    if (c->in_len == 0)
        c->in_off = 0;
    out += take;
    len -= take;
    /* The rest straight into the caller's buffer: one copy, not two. */
    while (len > 0) {
        ssize_t n = sk_sock_recv(c->sock, out, len);
        if (n > 0) {
            out += n;
            len -= (size_t)n;
            continue;
        }
        int err = n == 0 ? -ENODATA : (int)n;
        if (err == -EAGAIN) {
            int r = wait_for(c, POLLIN);
            if (r >= 0)
                continue;
            err = r;
        }
        io_error(c, err, what);
        return -1;
    }
    return 0;
}

int fc_print_error(const fconn *c, const uint8_t *body, size_t len)
{
    int code = len >= 1 ? body[0] : 0;
    size_t tlen = len > 1 ? len - 1 : 0;
    if (tlen > PROTO_ERROR_TEXT_MAX)
        tlen = PROTO_ERROR_TEXT_MAX;
    /* The text is the server's: keep our one line one line. */
    char text[PROTO_ERROR_TEXT_MAX + 1];
    for (size_t i = 0; i < tlen; i++) {
        char ch = (char)body[1 + i];
        text[i] = (ch >= 0x20 && ch < 0x7f) ? ch : '?';
    }
    text[tlen] = '\0';
    /* A wrong token: the hint goes on the same line (one line per error). */
    cli_err("%s: %s%s", c->addr, tlen ? text : files_error_name(code),
            c->auth_hint && code == PE_AUTH ? " (is --token-file the server's token?)" : "");
    return code;
}

int fc_msg(fconn *c, uint8_t *type, uint8_t *body, size_t cap, size_t *len, int *code,
           const char *what)
{
    uint8_t t;
    size_t n;
    if (fc_head(c, &t, &n, what) < 0)
        return -1;
    if (t == PT_ERROR) {
        uint8_t err[1 + PROTO_ERROR_TEXT_MAX + 64];
        if (n > sizeof err) {
            cli_err("%s: protocol error: an over-long error message", c->addr);
            return -1;
        }
        if (fc_body(c, err, n, what) < 0)
            return -1;
        *code = fc_print_error(c, err, n);
        return -2;
    }
    if (n > cap) {
        cli_err("%s: protocol error: unexpected message 0x%02x of %zu bytes during %s", c->addr, t,
                n, what);
        return -1;
    }
    if (fc_body(c, body, n, what) < 0)
        return -1;
    *type = t;
    *len = n;
    return 0;
}

/* ------------------------------------------------------------- sending */

static int send_msg(fconn *c, bool stop_on_input, uint8_t type, const void *a, size_t alen,
                    const void *b, size_t blen);

int fc_send(fconn *c, uint8_t type, const void *a, size_t alen, const void *b, size_t blen)
{
    return send_msg(c, true, type, a, alen, b, blen);
}

int fc_send_all(fconn *c, uint8_t type, const void *a, size_t alen, const void *b, size_t blen)
{
    return send_msg(c, false, type, a, alen, b, blen) == 0 ? 0 : -1;
}

static int send_msg(fconn *c, bool stop_on_input, uint8_t type, const void *a, size_t alen,
                    const void *b, size_t blen)
{
    uint8_t head[SK_FRAME_HEADER + 1];
    sk_frame_header(head, (uint32_t)(1 + alen + blen));
    head[SK_FRAME_HEADER] = type;
    struct iovec iov[3] = {
        {head, sizeof head}, {(void *)(uintptr_t)a, alen}, {(void *)(uintptr_t)b, blen}};
    struct iovec *v = iov;
    int cnt = 3;
    while (cnt > 0) {
        if (v->iov_len == 0) {
            v++;
            cnt--;
            continue;
        }
        ssize_t n = sk_sock_sendv(c->sock, v, cnt);
        if (n < 0) {
            int err = (int)n;
            if (err == -EAGAIN) {
                int r = wait_for(c, stop_on_input ? POLLOUT | POLLIN : POLLOUT);
                if (r >= 0 && (r & POLLIN) && stop_on_input)
                    return 1; /* the server spoke up: an ERROR, most likely */
                if (r >= 0)
                    continue;
                err = r;
            }
            if (err == -EPIPE || err == -ECONNRESET)
                return 1; /* whatever it said before closing is still to be read */
            io_error(c, err, "sending");
            return -1;
        }
        size_t done = (size_t)n;
        while (cnt > 0 && done >= v->iov_len) {
            done -= v->iov_len;
            v++;
            cnt--;
        }
        if (cnt > 0) {
            v->iov_base = (uint8_t *)v->iov_base + done;
            v->iov_len -= done;
        }
    }
    return 0;
}

/* ------------------------------------------------------------ handshake */

/* The handshake's frame I/O (services/proto/handshake.c runs it). */
static int hs_send(void *ud, const uint8_t *msg, size_t len, const char *stage)
{
    fconn *c = ud;
    int rc = fc_send(c, msg[0], msg + 1, len - 1, NULL, 0);
    if (rc != 0 && strcmp(stage, "the hello") == 0) {
        cli_err("%s: the server closed the connection before the hello", c->addr);
        return -1;
    }
    /* rc 1 during authentication: the server spoke up; read what it said. */
    return rc < 0 ? -1 : 0;
}

static ssize_t hs_recv(void *ud, uint8_t *buf, size_t cap, const char *stage)
{
    fconn *c = ud;
    uint8_t type;
    size_t len;
    int code;
    if (c->probing && strcmp(stage, "the hello") == 0) {
        /* A version-1 server refuses a version-2 hello with ERROR 02:
         * noted, not printed; fc_open dials again offering 1. */
        if (fc_head(c, &type, &len, stage) < 0)
            return -1;
        if (len > cap - 1) {
            cli_err("%s: protocol error: an over-long answer to the hello", c->addr);
            return -1;
        }
        if (fc_body(c, buf + 1, len, stage) < 0)
            return -1;
        if (type == PT_ERROR && len >= 1 && buf[1] == PE_HELLO) {
            c->old = true;
            return -1;
        }
        if (type == PT_ERROR) {
            (void)fc_print_error(c, buf + 1, len);
            return -1;
        }
        buf[0] = type;
        return (ssize_t)len + 1;
    }
    c->auth_hint = strcmp(stage, "authentication") == 0;
    int rc = fc_msg(c, &type, buf + 1, cap - 1, &len, &code, stage);
    c->auth_hint = false;
    if (rc < 0)
        return -1;
    buf[0] = type;
    return (ssize_t)len + 1;
}

static int handshake(fconn *c, const files_cli *o, const uint8_t *token, size_t token_len)
{
    proto_hs_io io = {c, hs_send, hs_recv};
    char err[PROTO_ERROR_TEXT_MAX + 400] = "";
    uint8_t offer = c->probing ? o->offer : PROTO_VERSION;
    if (proto_hs_client_v(&io, c->sock, c->addr, FILES_SERVICE, o->token_file ? token : NULL,
                          token_len, true, offer, &c->version, err, sizeof err) == 0)
        return 0;
    if (c->old)
        return -2;
    if (err[0] != '\0')
        cli_err("%s", err);
    return -1;
}

int fc_open(fconn *c, const files_cli *o)
{
    memset(c, 0, sizeof *c);
    c->addr = o->addr_text;
    c->timeout_ms = o->timeout_ms;
    uint8_t token[SK_TOKEN_MAX];
    size_t token_len = 0;
    char err[300];
    if (o->token_file != NULL &&
        sk_token_load(o->token_file, token, sizeof token, &token_len, err, sizeof err) < 0) {
        cli_err("%s", err);
        return -1;
    }
    c->in_cap = IN_CHUNK;
    c->in = malloc(c->in_cap);
    if (c->in == NULL) {
        cli_err("out of memory");
        return -1;
    }
    c->probing = o->offer > PROTO_VERSION;
    for (;;) {
        char derr[600] = "";
        int rc = cli_dial(&o->addr, &o->tls, o->timeout_ms, &c->sock, derr, sizeof derr);
        if (rc < 0) {
            OPENSSL_cleanse(token, sizeof token);
            cli_err("%s", derr[0] ? derr : sk_strerror(rc));
            return -1;
        }
        rc = handshake(c, o, token, token_len);
        if (rc != -2 || !c->probing) {
            OPENSSL_cleanse(token, sizeof token);
            return rc < 0 ? -1 : 0;
        }
        /* An older server: again, offering version 1. */
        sk_sock_close(c->sock);
        c->sock = NULL;
        c->in_off = c->in_len = 0;
        c->probing = c->old = false;
    }
}

void fc_close(fconn *c)
{
    sk_sock_close(c->sock);
    c->sock = NULL;
    free(c->in);
    c->in = NULL;
}

/* ------------------------------------------------------------- helpers */

int files_hash_span(int fd, uint64_t off, uint64_t len, EVP_MD_CTX *md, uint8_t *buf, size_t cap)
{
    for (uint64_t done = 0; done < len;) {
        size_t want = len - done < cap ? (size_t)(len - done) : cap;
        ssize_t n = pread(fd, buf, want, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 1;
        if (EVP_DigestUpdate(md, buf, (size_t)n) != 1)
            return -EIO;
        done += (uint64_t)n;
    }
    return 0;
}

void files_basename(const char *path, char *out, size_t cap)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    size_t n = len - start;
    if (n >= cap)
        n = cap - 1;
    memcpy(out, path + start, n);
    out[n] = '\0';
}
