/* files_ls.c — `sockit ls ADDR [DIR] [--json]`: lists a directory (or shows
 * one file) of a `sockit serve files` server, sorted by name, as text or as
 * one JSON array. Only what the server serves is there: regular files and
 * directories, no transfers in progress. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "files.h"

/* Entries kept for sorting; a directory with more is refused rather than
 * allowed to take unbounded memory. */
#define LS_MAX 1000000u

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sockit ls ADDR [DIR] [--json] [--token-file FILE] [--timeout SEC]\n"
            "\n"
            "Lists DIR (a path below the server's root; default: the root) of a `sockit serve\n"
            "files` server, sorted by name: regular files and directories. A file shows alone.\n"
            "  --json             one JSON array of {name, type, size, mtime, mode}, files\n"
            "                     also with sha256, chunk_size and chunks (the SHA-256 of\n"
            "                     each 4 MiB chunk, as split -b 4M and sha256sum give them)\n"
            "  --token-file FILE  the server's token (needed unless it runs without one)\n"
            "  --timeout SEC      bound connecting and each wait for the server (default "
            "10)\n" CLI_TLS_USAGE_PAD(
                "   ") "Exit status: 0 listed, 1 failure (one line says why), 2 usage.\n");
}

typedef struct item {
    files_entry e;
    char *name;          /* NUL-terminated copy */
    files_chunk_list ch; /* --json, a file: its chunk hashes (ch.hashes may be NULL) */
    bool has_ch;
} item;

static int by_name(const void *a, const void *b)
{
    const item *x = a, *y = b;
    size_t n = x->e.name_len < y->e.name_len ? x->e.name_len : y->e.name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->e.name_len > y->e.name_len) - (x->e.name_len < y->e.name_len);
}

/* Text: printable ASCII and valid UTF-8 as they are, other bytes \xNN, so
 * a name cannot move the cursor or fake a line. */
static void print_name(FILE *out, const char *s, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = n > 0 && i + n <= len && (c >= 0x20 || n > 1) && c != 0x7f && c != '\\';
        for (size_t k = 1; ok && k < n; k++)
            ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
        if (!ok || (n == 1 && c < 0x20)) {
            fprintf(out, "\\x%02x", c);
            i++;
            continue;
        }
        fwrite(s + i, 1, n, out);
        i += n;
    }
}

/* JSON: valid UTF-8 as it is, control characters escaped, bytes that are
 * not UTF-8 replaced by U+FFFD (a JSON string holds text, not bytes). */
static void print_json_name(FILE *out, const char *s, size_t len)
{
    fputc('"', out);
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = n > 0 && i + n <= len;
        for (size_t k = 1; ok && k < n; k++)
            ok = ((unsigned char)s[i + k] & 0xc0) == 0x80;
        if (!ok) {
            fputs("\\ufffd", out);
            i++;
        } else if (c == '"' || c == '\\') {
            fprintf(out, "\\%c", c);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
            i++;
        } else {
            fwrite(s + i, 1, n, out);
            i += n;
        }
    }
    fputc('"', out);
}

static void print_hex(const uint8_t *h)
{
    for (int k = 0; k < FILES_HASH; k++)
        printf("%02x", h[k]);
}

/* The chunk size, the whole file's SHA-256 and each chunk's, as `split -b
 * 4M FILE part. && sha256sum part.*` lists them. */
static void print_chunks(const files_chunk_list *l)
{
    printf(", \"sha256\": \"");
    print_hex(l->whole);
    printf("\", \"chunk_size\": %u, \"chunks\": [", l->chunk_size);
    for (uint64_t k = 0; k < l->count; k++) {
        fputs(k ? ", \"" : "\"", stdout);
        print_hex(l->hashes + k * FILES_HASH);
        fputc('"', stdout);
    }
    fputc(']', stdout);
}

static void print_items(const item *v, size_t n, bool json)
{
    if (json) {
        fputs("[", stdout);
        for (size_t i = 0; i < n; i++) {
            const files_entry *e = &v[i].e;
            fputs(i ? ",\n  {\"name\": " : "\n  {\"name\": ", stdout);
            print_json_name(stdout, v[i].name, e->name_len);
            printf(", \"type\": \"%s\", \"size\": %llu, \"mtime\": %lld, \"mode\": \"%04o\"",
                   e->type == 'd' ? "dir" : "file", (unsigned long long)e->size,
                   (long long)e->mtime, e->mode);
            if (v[i].has_ch)
                print_chunks(&v[i].ch);
            fputs("}", stdout);
        }
        fputs(n ? "\n]\n" : "]\n", stdout);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const files_entry *e = &v[i].e;
        char perms[11] = "----------";
        static const char rwx[] = "rwxrwxrwx";
        perms[0] = e->type == 'd' ? 'd' : '-';
        for (int b = 0; b < 9; b++)
            if (e->mode & (1u << (8 - b)))
                perms[1 + b] = rwx[b];
        char when[32] = "?";
        time_t t = (time_t)e->mtime;
        struct tm tm;
        if (localtime_r(&t, &tm) != NULL)
            strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
        if (e->type == 'd')
            printf("%s  %14s  %s  ", perms, "-", when);
        else
            printf("%s  %14llu  %s  ", perms, (unsigned long long)e->size, when);
        print_name(stdout, v[i].name, e->name_len);
        fputs(e->type == 'd' ? "/\n" : "\n", stdout);
    }
}

static int add(item **v, size_t *n, size_t *cap, const files_entry *e)
{
    if (*n == *cap) {
        size_t c = *cap ? *cap * 2 : 256;
        item *p = realloc(*v, c * sizeof *p);
        if (p == NULL)
            return -1;
        *v = p;
        *cap = c;
    }
    item *it = &(*v)[*n];
    it->e = *e;
    it->name = malloc(e->name_len + 1);
    if (it->name == NULL)
        return -1;
    memcpy(it->name, e->name, e->name_len);
    it->name[e->name_len] = '\0';
    it->e.name = (const uint8_t *)it->name;
    it->has_ch = false;
    memset(&it->ch, 0, sizeof it->ch);
    (*n)++;
    return 0;
}

/* --json: each file's chunk hashes (CHUNKS, from a version-2 server; an
 * older one has none to give, and the fields are left out). path is the
 * file itself (single) or the directory of the items. */
static int with_chunks(fconn *c, const files_cli *o, const char *path, bool single, item *v,
                       size_t n)
{
    if (!o->json || c->version < 2)
        return EXIT_OK;
    for (size_t i = 0; i < n; i++) {
        if (v[i].e.type != 'f')
            continue;
        char full[FILES_PATH_MAX + FILES_NAME_MAX + 2];
        if (single)
            snprintf(full, sizeof full, "%s", path);
        else
            snprintf(full, sizeof full, "%s%s%s", path, path[0] ? "/" : "", v[i].name);
        int code = 0;
        int rc = files_chunks_get(c, full, &v[i].ch, &code);
        if (rc == -1)
            return EXIT_RUNTIME;
        if (rc == 0)
            v[i].has_ch = true;
        else if (code != FE_NOTFOUND && code != FE_CHANGED && code != FE_TYPE)
            return EXIT_RUNTIME; /* printed; gone or replaced since the listing: left bare */
    }
    return EXIT_OK;
}

static int run(const files_cli *o, const char *path, item **v, size_t *n, size_t *cap)
{
    fconn c;
    int status = EXIT_RUNTIME;
    if (fc_open(&c, o) < 0)
        goto out;
    uint8_t *body = malloc(FILES_LIST_FRAME);
    if (body == NULL)
        goto out;
    uint8_t type;
    size_t len;
    int code;
    files_entry e;
    if (fc_send(&c, FT_STAT, path, strlen(path), NULL, 0) < 0 ||
        fc_msg(&c, &type, body, FILES_LIST_FRAME, &len, &code, "the answer to STAT") != 0)
        goto done;
    if (type != FT_STAT_OK || files_entry_get(body, len, &e) != len) {
        cli_err("%s: protocol error: expected STAT_OK", c.addr);
        goto done;
    }
    if (e.type == 'f') {
        if (add(v, n, cap, &e) < 0)
            goto done;
        status = with_chunks(&c, o, path, true, *v, *n);
        goto done;
    }
    if (fc_send(&c, FT_LIST, path, strlen(path), NULL, 0) < 0)
        goto done;
    for (;;) {
        if (fc_msg(&c, &type, body, FILES_LIST_FRAME, &len, &code, "the listing") != 0)
            goto done;
        if (type == FT_LIST_END && len == 8) {
            if (files_get64(body) != *n) {
                cli_err("%s: protocol error: the listing ended with %llu entries, %zu arrived",
                        c.addr, (unsigned long long)files_get64(body), *n);
                goto done;
            }
            status = with_chunks(&c, o, path, false, *v, *n);
            goto done;
        }
        if (type != FT_ENTRIES || len < 2) {
            cli_err("%s: protocol error: unexpected message 0x%02x in a listing", c.addr, type);
            goto done;
        }
        unsigned count = proto_get16(body);
        size_t off = 2;
        for (unsigned i = 0; i < count; i++) {
            size_t used = files_entry_get(body + off, len - off, &e);
            if (used == 0 || e.name_len == 0) {
                cli_err("%s: protocol error: a malformed entry in the listing", c.addr);
                goto done;
            }
            if (*n >= LS_MAX) {
                cli_err("%s: more than %u entries: listing stopped", c.addr, LS_MAX);
                goto done;
            }
            if (add(v, n, cap, &e) < 0) {
                cli_err("out of memory");
                goto done;
            }
            off += used;
        }
        if (off != len) {
            cli_err("%s: protocol error: trailing bytes in a listing", c.addr);
            goto done;
        }
    }
done:
    free(body);
out:
    fc_close(&c);
    return status;
}

int cmd_ls(int argc, char **argv)
{
    files_cli o;
    memset(&o, 0, sizeof o);
    o.cmd = "ls";
    int rc = files_cli_parse(&o, argc, argv, 0, 1, true, usage);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    if (o.json)
        o.offer = FILES_VERSION; /* the chunk hashes need version 2 */
    /* "", "." and "/" name the root; "dir/" is "dir". */
    char path[FILES_PATH_MAX + 2] = "";
    if (o.nargs > 0 && strcmp(o.args[0], ".") != 0) {
        snprintf(path, sizeof path, "%s", o.args[0]);
        size_t len = strlen(path);
        while (len > 0 && path[len - 1] == '/')
            path[--len] = '\0';
    }
    char why[PROTO_ERROR_TEXT_MAX];
    if (files_path_check(path, strlen(path), true, why, sizeof why) < 0) {
        cli_err("bad DIR \"%s\": %s", o.args[0], why);
        return EXIT_USAGE;
    }
    item *v = NULL;
    size_t n = 0, cap = 0;
    int status = run(&o, path, &v, &n, &cap);
    if (status == EXIT_OK) {
        if (n > 1)
            qsort(v, n, sizeof *v, by_name);
        print_items(v, n, o.json);
        if (fflush(stdout) != 0)
            status = EXIT_RUNTIME;
    }
    for (size_t i = 0; i < n; i++) {
        free(v[i].name);
        files_chunk_list_free(&v[i].ch);
    }
    free(v);
    return status;
}
