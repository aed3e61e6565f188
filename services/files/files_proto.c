/* files_proto.c — the pieces of the files protocol that server and client
 * build and parse alike: 64-bit fields, directory entries, error names. */
#include <string.h>

#include "../proto/proto.h"
#include "files_proto.h"

uint64_t files_get64(const uint8_t *p)
{
    return (uint64_t)proto_get32(p) << 32 | proto_get32(p + 4);
}

void files_put64(uint8_t *p, uint64_t v)
{
    proto_put32(p, (uint32_t)(v >> 32));
    proto_put32(p + 4, (uint32_t)v);
}

size_t files_entry_put(uint8_t *out, const files_entry *e)
{
    out[0] = e->type;
    files_put64(out + 1, e->size);
    files_put64(out + 9, (uint64_t)e->mtime);
    proto_put16(out + 17, e->mode);
    proto_put16(out + 19, (uint16_t)e->name_len);
    memcpy(out + FILES_ENTRY_FIXED, e->name, e->name_len);
    return FILES_ENTRY_FIXED + e->name_len;
}

size_t files_entry_get(const uint8_t *p, size_t len, files_entry *e)
{
    if (len < FILES_ENTRY_FIXED)
        return 0;
    e->type = p[0];
    e->size = files_get64(p + 1);
    e->mtime = (int64_t)files_get64(p + 9);
    e->mode = proto_get16(p + 17);
    e->name_len = proto_get16(p + 19);
    e->name = p + FILES_ENTRY_FIXED;
    if ((e->type != 'f' && e->type != 'd') || e->name_len > FILES_NAME_MAX ||
        e->name_len > len - FILES_ENTRY_FIXED)
        return 0;
    /* The root's STAT_OK has an empty name; a listed name never has one. */
    if (memchr(e->name, '/', e->name_len) || memchr(e->name, '\0', e->name_len))
        return 0;
    return FILES_ENTRY_FIXED + e->name_len;
}

const char *files_error_name(int code)
{
    switch (code) {
    case FE_NOTFOUND: return "not found";
    case FE_DENIED: return "permission denied";
    case FE_BADPATH: return "path refused";
    case FE_TYPE: return "not a regular file or directory";
    case FE_READONLY: return "read-only server";
    case FE_TOOBIG: return "file too large";
    case FE_NOSPACE: return "no space left on the server";
    case FE_SIZE: return "size mismatch";
    case FE_CHECKSUM: return "checksum mismatch";
    case FE_IO: return "I/O error on the server";
    case FE_CHANGED: return "file changed during the transfer";
    default: return proto_error_name(code);
    }
}
