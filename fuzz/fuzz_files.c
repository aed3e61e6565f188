/* fuzz_files.c — libFuzzer target for the files protocol's parsers: the path
 * checker (what it accepts has no way out: no "..", "." or empty component,
 * no NUL, not absolute, within the bounds), directory entries (what is
 * accepted re-encodes to exactly the input) and the server hello with or
 * without its nonce (what is accepted re-encodes too). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../services/files/files_proto.h"
#include "../services/proto/proto.h"

static void check_path(const uint8_t *data, size_t size, bool root)
{
    char why[PROTO_ERROR_TEXT_MAX];
    why[0] = '\0';
    if (files_path_check((const char *)data, size, root, why, sizeof why) != 0) {
        if (why[0] == '\0')
            abort();
        return;
    }
    if (size == 0) {
        if (!root)
            abort();
        return;
    }
    if (size > FILES_PATH_MAX || data[0] == '/' || data[size - 1] == '/' ||
        memchr(data, '\0', size) != NULL)
        abort();
    size_t start = 0, depth = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != '/')
            continue;
        size_t n = i - start;
        const uint8_t *c = data + start;
        if (n == 0 || n > FILES_NAME_MAX || (n == 1 && c[0] == '.') ||
            (n == 2 && c[0] == '.' && c[1] == '.') ||
            (n >= sizeof FILES_PARTIAL_PREFIX - 1 &&
             memcmp(c, FILES_PARTIAL_PREFIX, sizeof FILES_PARTIAL_PREFIX - 1) == 0))
            abort();
        depth++;
        start = i + 1;
    }
    if (depth > FILES_DEPTH_MAX)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_path(data, size, false);
    check_path(data, size, true);

    files_entry e;
    size_t used = files_entry_get(data, size, &e);
    if (used > 0) {
        uint8_t out[FILES_ENTRY_FIXED + FILES_NAME_MAX];
        if (used > size || used > sizeof out || files_entry_put(out, &e) != used ||
            memcmp(out, data, used) != 0)
            abort();
    }

    char service[SK_AUTH_SERVICE_MAX + 1], why[PROTO_ERROR_TEXT_MAX];
    uint8_t nonce[SK_AUTH_NONCE];
    bool auth;
    if (proto_check_server_hello(data, size, service, nonce, &auth, why, sizeof why) == 0) {
        uint8_t again[PROTO_HELLO_MAX];
        size_t n =
            auth ? proto_hello(again, true, service, nonce) : proto_hello_open(again, service);
        if (n != size || memcmp(again, data, size) != 0)
            abort();
    }
    return 0;
}
