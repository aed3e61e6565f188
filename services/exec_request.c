/* exec_request.c — parses an exec REQUEST message (docs/PROTOCOL.md):
 * flags, the client's time limit and the argv, each string length-prefixed.
 * Pure and allocation-bounded, so it can be fuzzed on its own. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "exec.h"
#include "proto.h"

#define REQUEST_FIXED 7 /* flags(1) timeout_ms(4) count(2) */

int exec_parse_request(const uint8_t *body, size_t len, exec_request *req, char *why,
                       size_t whylen)
{
    memset(req, 0, sizeof *req);
    if (len < REQUEST_FIXED) {
        snprintf(why, whylen, "request too short (%zu bytes)", len);
        return -1;
    }
    unsigned flags = body[0];
    if (flags & ~(unsigned)(PROTO_EXEC_SHELL | PROTO_EXEC_NO_STDIN)) {
        snprintf(why, whylen, "request has unknown flags 0x%02x", flags);
        return -1;
    }
    uint32_t timeout_ms = proto_get32(body + 1);
    size_t count = proto_get16(body + 5);
    if (count == 0 || count > EXEC_ARGV_MAX) {
        snprintf(why, whylen, "request has %zu arguments (1 to %u allowed)", count,
                 EXEC_ARGV_MAX);
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
