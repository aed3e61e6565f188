/* fuzz_exec.c — libFuzzer target for the exec protocol's parsers: the
 * REQUEST body (what is accepted re-encodes to exactly the input), the
 * hello of both directions (what is accepted names a valid service) and the
 * server's replies as the client reads them (output stays inside the
 * message, an exit status is 0-383, an error text is one printable line),
 * and version 2's terminal request, window change and signal. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../services/exec/exec.h"
#include "../services/proto/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char why[PROTO_ERROR_TEXT_MAX];
    exec_request req;
    int rc = exec_parse_request(data, size, &req, why, sizeof why);
    if (rc == 0 && (req.flags & PROTO_EXEC_LOGIN)) {
        /* A login request: no arguments, nothing after the fixed part. */
        if (req.argc != 0 || req.argv[0] != NULL || size != 7 || (req.flags & PROTO_EXEC_SHELL))
            abort();
        free(req.storage);
    } else if (rc == 0) {
        if (req.argc == 0 || req.argc > EXEC_ARGV_MAX || req.argv[req.argc] != NULL ||
            req.argv[0][0] == '\0')
            abort();
        /* Re-encode: the layout has one form, so it must give back the input. */
        uint8_t *out = malloc(size);
        if (out == NULL)
            abort();
        size_t n = 0;
        out[n++] = (uint8_t)req.flags;
        proto_put32(out + n, req.timeout_ms);
        proto_put16(out + n + 4, (uint16_t)req.argc);
        n += 6;
        for (size_t i = 0; i < req.argc; i++) {
            size_t len = strlen(req.argv[i]);
            if (n + 4 + len > size)
                abort();
            proto_put32(out + n, (uint32_t)len);
            memcpy(out + n + 4, req.argv[i], len);
            n += 4 + len;
        }
        if (n != size || memcmp(out, data, size) != 0)
            abort();
        free(out);
        free(req.storage);
    } else if (rc != -1 || req.storage != NULL || why[0] == '\0') {
        abort();
    }
    /* A terminal request: a sane size and TERM, then a request as above. */
    why[0] = '\0';
    rc = exec_parse_pty_request(data, size, &req, why, sizeof why);
    if (rc == 0) {
        if (!req.pty || req.ws.rows == 0 || req.ws.cols == 0 || req.ws.rows > EXEC_WIN_MAX ||
            req.ws.cols > EXEC_WIN_MAX || req.term[0] == '\0' || strlen(req.term) > EXEC_TERM_MAX)
            abort();
        free(req.storage);
    } else if (rc != -1 || req.storage != NULL || why[0] == '\0') {
        abort();
    }
    exec_winsize ws;
    if (exec_parse_winch(data, size, &ws, why, sizeof why) == 0 && size != 8)
        abort();
    int sig = exec_parse_signal(data, size, why, sizeof why);
    if (sig != -1 && sig != 1 && sig != 2 && sig != 3 && sig != 15)
        abort();
    exec_reply r;
    why[0] = '\0';
    if (exec_parse_reply(data, size, &r, why, sizeof why) == 0) {
        switch (r.kind) {
        case EXEC_REPLY_STDOUT:
        case EXEC_REPLY_STDERR:
            if (r.data != data + 1 || r.len != size - 1)
                abort();
            break;
        case EXEC_REPLY_EXIT:
            if (size != 3 || r.status < 0 || r.status > 128 + 255)
                abort();
            break;
        case EXEC_REPLY_ERROR: {
            size_t tlen = strlen(r.text);
            if (tlen > PROTO_ERROR_TEXT_MAX ||
                (size > 2 &&
                 tlen != (size - 2 < PROTO_ERROR_TEXT_MAX ? size - 2 : PROTO_ERROR_TEXT_MAX)))
                abort();
            for (size_t i = 0; i < tlen; i++)
                if (r.text[i] < 0x20 || r.text[i] >= 0x7f)
                    abort();
            break;
        }
        default: abort();
        }
    } else if (why[0] == '\0') {
        abort();
    }
    for (int from_server = 0; from_server < 2; from_server++) {
        char service[SK_AUTH_SERVICE_MAX + 1];
        uint8_t nonce[SK_AUTH_NONCE];
        if (proto_check_hello(data, size, from_server, service, nonce, why, sizeof why) == 0) {
            size_t len = strlen(service);
            if (len == 0 || len > SK_AUTH_SERVICE_MAX)
                abort();
            uint8_t again[PROTO_HELLO_MAX];
            if (proto_hello(again, from_server, service, nonce) != size ||
                memcmp(again, data, size) != 0)
                abort();
        }
    }
    return 0;
}
