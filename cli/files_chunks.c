/* files_chunks.c — the client side of CHUNKS (docs/PROTOCOL.md 9.10): a
 * remote file's SHA-256 per 4 MiB chunk and of the whole, checked for
 * consistency (indices in order, the count and size agreeing) before it is
 * believed. */
#include <stdlib.h>
#include <string.h>

#include "files.h"

/* The most chunk hashes taken for one file (64 TiB of 4 MiB chunks, 512 MiB
 * of hashes at worst): a bound on what a hostile server can make us hold. */
#define FILES_CLI_CHUNKS_MAX (16u * 1024u * 1024u)

void files_chunk_list_free(files_chunk_list *l)
{
    free(l->hashes);
    memset(l, 0, sizeof *l);
}

int files_chunks_get(fconn *c, const char *path, files_chunk_list *out, int *code)
{
    memset(out, 0, sizeof *out);
    if (fc_send(c, FT_CHUNKS, path, strlen(path), NULL, 0) != 0)
        return -1;
    return files_chunks_recv(c, out, code, false);
}

int files_chunks_recv(fconn *c, files_chunk_list *out, int *code, bool patch)
{
    memset(out, 0, sizeof *out);
    size_t cap = 9 + (size_t)FILES_HASHES_PER_FRAME * FILES_HASH;
    uint8_t *body = malloc(cap);
    if (body == NULL) {
        cli_err("out of memory");
        return -1;
    }
    int rc = -1;
    size_t have_cap = 0;
    for (;;) {
        uint8_t type;
        size_t len;
        int r = fc_msg(c, &type, body, cap, &len, code, "the answer to CHUNKS");
        if (r != 0) {
            rc = r;
            goto done;
        }
        if (type == FT_PATCH_RESUME && patch && c->version >= 4 && out->count == 0 &&
            len == 8 + FILES_HASH) {
            out->size = files_get64(body);
            out->chunk_size = FILES_CHUNK;
            memcpy(out->whole, body + 8, FILES_HASH);
            out->resume = true;
            rc = 0;
            goto done;
        }
        if (type == FT_CHUNKS_END && len == 20 + FILES_HASH) {
            out->size = files_get64(body);
            out->chunk_size = proto_get32(body + 8);
            uint64_t count = files_get64(body + 12);
            uint64_t want =
                out->chunk_size ? (out->size + out->chunk_size - 1) / out->chunk_size : 0;
            if (out->chunk_size == 0 || count != out->count || count != want) {
                cli_err("%s: protocol error: CHUNKS ended with %llu chunks, %llu arrived", c->addr,
                        (unsigned long long)count, (unsigned long long)out->count);
                goto done;
            }
            memcpy(out->whole, body + 20, FILES_HASH);
            rc = 0;
            goto done;
        }
        if (type != FT_CHUNK_HASHES || len < 8 + FILES_HASH || (len - 8) % FILES_HASH != 0 ||
            files_get64(body) != out->count) {
            cli_err("%s: protocol error: unexpected message 0x%02x in a chunk list", c->addr, type);
            goto done;
        }
        size_t n = (len - 8) / FILES_HASH;
        if (out->count + n > FILES_CLI_CHUNKS_MAX) {
            cli_err("%s: more than %u chunk hashes for one file: refused", c->addr,
                    FILES_CLI_CHUNKS_MAX);
            goto done;
        }
        if (out->count + n > have_cap) {
            size_t ncap = have_cap ? have_cap * 2 : 256;
            while (ncap < out->count + n)
                ncap *= 2;
            uint8_t *p = realloc(out->hashes, ncap * FILES_HASH);
            if (p == NULL) {
                cli_err("out of memory");
                goto done;
            }
            out->hashes = p;
            have_cap = ncap;
        }
        memcpy(out->hashes + out->count * FILES_HASH, body + 8, n * FILES_HASH);
        out->count += n;
    }
done:
    free(body);
    if (rc != 0)
        files_chunk_list_free(out);
    return rc;
}
