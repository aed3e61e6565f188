/* exec_request.c — parses the exec messages (docs/PROTOCOL.md): the REQUEST
 * a server reads (flags, the client's time limit and the argv, each string
 * length-prefixed) and the replies a client reads. Pure and
 * allocation-bounded, so both can be fuzzed on their own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../proto/proto.h"
#include "exec.h"

#define REQUEST_FIXED 7 /* flags(1) timeout_ms(4) count(2) */

int exec_parse_request(const uint8_t *body, size_t len, exec_request *req, char *why, size_t whylen)
{
    memset(req, 0, sizeof *req);
    if (len < REQUEST_FIXED) {
        snprintf(why, whylen, "request too short (%zu bytes)", len);
        return -1;
    }
    unsigned flags = body[0];
    if (flags & ~(unsigned)(PROTO_EXEC_SHELL | PROTO_EXEC_NO_STDIN | PROTO_EXEC_LOGIN)) {
        snprintf(why, whylen, "request has unknown flags 0x%02x", flags);
        return -1;
    }
    uint32_t timeout_ms = proto_get32(body + 1);
    size_t count = proto_get16(body + 5);
    if (flags & PROTO_EXEC_LOGIN) {
        /* The server's shell, no arguments: nothing for the client to name. */
        if (count != 0 || (flags & PROTO_EXEC_SHELL) || len != REQUEST_FIXED) {
            snprintf(why, whylen, "a login request carries no arguments and no shell string");
            return -1;
        }
        char **argv = calloc(1, sizeof *argv);
        if (argv == NULL)
            return -2;
        req->flags = flags;
        req->timeout_ms = proto_get32(body + 1);
        req->argv = argv;
        req->storage = argv;
        return 0;
    }
    if (count == 0 || count > EXEC_ARGV_MAX) {
        snprintf(why, whylen, "request has %zu arguments (1 to %u allowed)", count, EXEC_ARGV_MAX);
        return -1;
    }
    if ((flags & PROTO_EXEC_SHELL) && count != 1) {
        snprintf(why, whylen, "a shell request carries exactly one string, not %zu", count);
        return -1;
    }
    /* First pass: validate every length against what is really there, so
     * nothing is allocated from a declared size. */
    size_t off = REQUEST_FIXED, bytes = 0;
    for (size_t i = 0; i < count; i++) {
        if (len - off < 4) {
            snprintf(why, whylen, "request ends inside argument %zu", i);
            return -1;
        }
        size_t n = proto_get32(body + off);
        off += 4;
        if (n > len - off) {
            snprintf(why, whylen, "argument %zu claims %zu bytes, %zu left", i, n, len - off);
            return -1;
        }
        if (memchr(body + off, '\0', n) != NULL) {
            snprintf(why, whylen, "argument %zu contains a NUL byte", i);
            return -1;
        }
        if (i == 0 && n == 0) {
            snprintf(why, whylen, "the program name is empty");
            return -1;
        }
        off += n;
        bytes += n + 1;
    }
    if (off != len) {
        snprintf(why, whylen, "%zu unexpected bytes after the arguments", len - off);
        return -1;
    }
    char **argv = malloc((count + 1) * sizeof *argv + bytes);
    if (argv == NULL)
        return -2;
    char *s = (char *)(argv + count + 1);
    off = REQUEST_FIXED;
    for (size_t i = 0; i < count; i++) {
        size_t n = proto_get32(body + off);
        off += 4;
        memcpy(s, body + off, n);
        s[n] = '\0';
        argv[i] = s;
        s += n + 1;
        off += n;
    }
    argv[count] = NULL;
    req->flags = flags;
    req->timeout_ms = timeout_ms;
    req->argc = count;
    req->argv = argv;
    req->storage = argv;
    return 0;
}

#define PTY_FIXED 9 /* rows(2) cols(2) xpixel(2) ypixel(2) term length(1) */

static int parse_size(const uint8_t *p, exec_winsize *ws, char *why, size_t whylen)
{
    ws->rows = proto_get16(p);
    ws->cols = proto_get16(p + 2);
    ws->xpixel = proto_get16(p + 4);
    ws->ypixel = proto_get16(p + 6);
    if (ws->rows == 0 || ws->cols == 0 || ws->rows > EXEC_WIN_MAX || ws->cols > EXEC_WIN_MAX) {
        snprintf(why, whylen, "bad window size %ux%u (1 to %u each)", ws->cols, ws->rows,
                 EXEC_WIN_MAX);
        return -1;
    }
    return 0;
}

int exec_parse_pty_request(const uint8_t *body, size_t len, exec_request *req, char *why,
                           size_t whylen)
{
    memset(req, 0, sizeof *req);
    exec_winsize ws;
    if (len < PTY_FIXED) {
        snprintf(why, whylen, "terminal request too short (%zu bytes)", len);
        return -1;
    }
    if (parse_size(body, &ws, why, whylen) < 0)
        return -1;
    size_t tlen = body[8];
    if (tlen == 0 || tlen > EXEC_TERM_MAX || tlen > len - PTY_FIXED) {
        snprintf(why, whylen, "bad TERM length %zu (1 to %u)", tlen, EXEC_TERM_MAX);
        return -1;
    }
    /* A terminfo name: it goes into the environment, so nothing that
     * could be read as a second word or a path trick. */
    char term[EXEC_TERM_MAX + 1];
    for (size_t i = 0; i < tlen; i++) {
        uint8_t c = body[PTY_FIXED + i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_' || c == '.' || c == '+';
        if (!ok) {
            snprintf(why, whylen, "TERM has a byte 0x%02x that is not in a terminal name", c);
            return -1;
        }
        term[i] = (char)c;
    }
    term[tlen] = '\0';
    size_t off = PTY_FIXED + tlen;
    int rc = exec_parse_request(body + off, len - off, req, why, whylen);
    if (rc < 0)
        return rc;
    req->pty = true;
    req->ws = ws;
    memcpy(req->term, term, tlen + 1);
    return 0;
}

int exec_parse_winch(const uint8_t *body, size_t len, exec_winsize *ws, char *why, size_t whylen)
{
    if (len != 8) {
        snprintf(why, whylen, "a window change carries 8 bytes, not %zu", len);
        return -1;
    }
    return parse_size(body, ws, why, whylen);
}

int exec_parse_signal(const uint8_t *body, size_t len, char *why, size_t whylen)
{
    /* The numbers are the traditional ones, the same on every Unix. */
    if (len == 1 && (body[0] == 1 || body[0] == 2 || body[0] == 3 || body[0] == 15))
        return body[0];
    snprintf(why, whylen, "a signal message carries one of 1, 2, 3, 15");
    return -1;
}

int exec_parse_reply(const uint8_t *msg, size_t len, exec_reply *r, char *why, size_t whylen)
{
    memset(r, 0, sizeof *r);
    if (len == 0) {
        snprintf(why, whylen, "an empty message from the server");
        return -1;
    }
    switch (msg[0]) {
    case PT_EXEC_STDOUT:
    case PT_EXEC_STDERR:
        r->kind = msg[0] == PT_EXEC_STDOUT ? EXEC_REPLY_STDOUT : EXEC_REPLY_STDERR;
        r->data = msg + 1;
        r->len = len - 1;
        return 0;
    case PT_EXEC_EXIT:
        if (len != 3 || msg[1] > 1) {
            snprintf(why, whylen, "a malformed exit message");
            return -1;
        }
        r->kind = EXEC_REPLY_EXIT;
        r->status = msg[1] == 1 ? 128 + msg[2] : msg[2];
        return 0;
    case PT_ERROR: {
        r->kind = EXEC_REPLY_ERROR;
        r->code = len >= 2 ? msg[1] : 0;
        size_t tlen = len > 2 ? len - 2 : 0;
        if (tlen > PROTO_ERROR_TEXT_MAX)
            tlen = PROTO_ERROR_TEXT_MAX;
        /* The text is the server's: keep our one line one line. */
        for (size_t i = 0; i < tlen; i++) {
            uint8_t c = msg[2 + i];
            r->text[i] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
        }
        r->text[tlen] = '\0';
        return 0;
    }
    default: snprintf(why, whylen, "an unexpected message type 0x%02x", msg[0]); return -1;
    }
}
