/* files_put.c — `sockit put ADDR LOCAL [REMOTE]`: uploads one file to a
 * `sockit serve files` server. The server keeps what arrives in a partial
 * file until the whole file's SHA-256 matches ours; an upload that was cut
 * off resumes when run again, from what the server holds, once both sides
 * have hashed that much and agree. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "files.h"

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sockit put ADDR LOCAL [REMOTE] [--token-file FILE] [--quiet] [--timeout SEC]\n"
        "                  [--no-clobber]\n"
        "       sockit put ADDR LOCAL... REMOTE_DIR/     several files into REMOTE_DIR\n"
        "       sockit put -r ADDR LOCAL_DIR [REMOTE_DIR] [--delete] [--dry-run] [--checksum]\n"
        "       sockit put ADDR - REMOTE                 standard input, streamed\n"
        "\n"
        "Uploads the file LOCAL to a `sockit serve files` server as REMOTE (a path below its\n"
        "root; default: LOCAL's name; a REMOTE ending in '/' is a directory to put it in,\n"
        "made if missing; a REMOTE that is an existing directory on the server gets the file\n"
        "inside, as cp and scp do). The file appears on the server only whole, its SHA-256\n"
        "checked; an interrupted put resumes when run again (Ctrl-C says so). An existing\n"
        "REMOTE is replaced only when it is a regular file.\n"
        "  --token-file FILE  the server's token (needed unless it runs without one)\n"
        "  --quiet            no progress bar (there is none unless stderr is a terminal)\n"
        "  --timeout SEC      bound connecting and each wait for the server (default 10)\n"
        "  --no-clobber       refuse to replace an existing REMOTE (exit 1)\n"
        "  -r, --recursive    make REMOTE_DIR (default: LOCAL_DIR's name) a copy of the tree\n"
        "                     LOCAL_DIR: files, directories, links as links, modes, mtimes\n"
        "                     (ns); a re-run sends only what changed (size or mtime)\n"
        "  --delete           also remove what REMOTE_DIR has and LOCAL_DIR has not\n"
        "  --dry-run          print the plan (send, skip, mkdir, link, delete); change nothing\n"
        "  --checksum         compare contents (SHA-256) instead of size and mtime\n"
        "  --json             the summary line as one JSON object\n" CLI_TLS_USAGE_PAD(
            "   ") "Exit status: 0 uploaded and verified, 1 failure (one line says why), 2 "
                   "usage.\n");
}

/* An id for this upload that is the same when the same command runs again
 * on the same, unchanged file, and different otherwise: the server names
 * its partial file after it, so a retry finds its own partial and nobody
 * else's. */
static void upload_id(const char *local, const struct stat *st, uint8_t id[FILES_ID])
{
    char real[PATH_MAX];
    if (realpath(local, real) == NULL)
        snprintf(real, sizeof real, "%s", local);
    char meta[128];
    int n = snprintf(meta, sizeof meta, "%llu:%llu:%llu:%lld.%09ld", (unsigned long long)st->st_dev,
                     (unsigned long long)st->st_ino, (unsigned long long)st->st_size,
                     (long long)st->st_mtim.tv_sec, st->st_mtim.tv_nsec);
    uint8_t d[FILES_HASH];
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    bool ok = m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(m, "sockit-put-v1", 14) == 1 &&
              EVP_DigestUpdate(m, real, strlen(real) + 1) == 1 &&
              EVP_DigestUpdate(m, meta, (size_t)n) == 1 && EVP_DigestFinal_ex(m, d, NULL) == 1;
    EVP_MD_CTX_free(m);
    if (!ok)
        memset(d, 0, sizeof d);
    memcpy(id, d, FILES_ID);
}

/* REMOTE from the arguments: given, given as a directory, or LOCAL's name. */
static int remote_path(const files_cli *o, const char *local, char *out, size_t cap)
{
    char base[FILES_NAME_MAX + 1];
    files_basename(local, base, sizeof base);
    const char *r = o->nargs >= 2 ? o->args[1] : NULL;
    int n;
    if (r == NULL)
        n = snprintf(out, cap, "%s", base);
    else if (r[0] != '\0' && r[strlen(r) - 1] == '/')
        n = snprintf(out, cap, "%s%s", r, base);
    else
        n = snprintf(out, cap, "%s", r);
    char why[PROTO_ERROR_TEXT_MAX];
    if (n < 0 || (size_t)n >= cap) {
        cli_err("REMOTE is longer than %u bytes", FILES_PATH_MAX);
        return -1;
    }
    if (files_path_check(out, strlen(out), false, why, sizeof why) < 0) {
        cli_err("bad REMOTE \"%s\": %s", out, why);
        return -1;
    }
    return 0;
}

typedef struct put_job {
    const files_cli *o;
    fconn c;
    int fd;
    struct stat st;
    char remote[FILES_PATH_MAX + 1];
    EVP_MD_CTX *md;
    uint8_t *buf;
    progress bar;
} put_job;

/* The server spoke while we were sending: it can only be an ERROR that
 * ends the upload (or the end of the connection). Prints it. */
static void server_interrupts(put_job *j)
{
    uint8_t body[64];
    uint8_t type;
    size_t len;
    int code;
    progress_end(&j->bar, false);
    if (fc_msg(&j->c, &type, body, sizeof body, &len, &code, "the upload") == 0)
        cli_err("%s: protocol error: unexpected message 0x%02x during the upload", j->c.addr, type);
}

/* STAT of REMOTE: 1 and *type ('f' or 'd') when it exists, 0 when it does
 * not, -1 after printing one line. */
static int remote_stat(put_job *j, uint8_t *type_out)
{
    uint8_t body[FILES_ENTRY_FIXED + FILES_NAME_MAX + 1 + PROTO_ERROR_TEXT_MAX];
    uint8_t type;
    size_t len;
    if (fc_send(&j->c, FT_STAT, j->remote, strlen(j->remote), NULL, 0) < 0 ||
        fc_head(&j->c, &type, &len, "the answer to STAT") < 0)
        return -1;
    if (len > sizeof body) {
        cli_err("%s: protocol error: an answer to STAT of %zu bytes", j->c.addr, len);
        return -1;
    }
    if (fc_body(&j->c, body, len, "the answer to STAT") < 0)
        return -1;
    files_entry e;
    if (type == PT_ERROR && len >= 1 && body[0] == FE_NOTFOUND)
        return 0;
    if (type == PT_ERROR) {
        fc_print_error(&j->c, body, len);
        return -1;
    }
    if (type != FT_STAT_OK || files_entry_get(body, len, &e) != len) {
        cli_err("%s: protocol error: expected STAT_OK", j->c.addr);
        return -1;
    }
    *type_out = e.type;
    return 1;
}

/* cp and scp habits: REMOTE that is a directory on the server gets LOCAL's
 * name inside it; with --no-clobber an existing REMOTE is refused. Returns
 * 0 or -1 after printing one line. */
static int resolve_remote(put_job *j)
{
    uint8_t type = 0;
    int rc = remote_stat(j, &type);
    if (rc == 1 && type == 'd') {
        char base[FILES_NAME_MAX + 1];
        files_basename(j->o->args[0], base, sizeof base);
        size_t n = strlen(j->remote);
        if (n + 1 + strlen(base) >= sizeof j->remote) {
            cli_err("REMOTE is longer than %u bytes", FILES_PATH_MAX);
            return -1;
        }
        snprintf(j->remote + n, sizeof j->remote - n, "/%s", base);
        rc = remote_stat(j, &type);
    }
    if (rc == 1 && j->o->no_clobber) {
        cli_err("%s exists on the server: not replaced (--no-clobber)", j->remote);
        return -1;
    }
    return rc < 0 ? -1 : 0;
}

static int run(put_job *j)
{
    const files_cli *o = j->o;
    uint64_t size = (uint64_t)j->st.st_size;
    uint8_t head[8 + FILES_ID];
    files_put64(head, size);
    upload_id(o->args[0], &j->st, head + 8);
    if (fc_open(&j->c, o) < 0 || resolve_remote(j) < 0)
        return EXIT_RUNTIME;
    static char line[FILES_PATH_MAX + 200];
    snprintf(line, sizeof line,
             "sockit: interrupted: the server keeps what arrived of %s (for its --partial-ttl, "
             "default 24 h); run the same command again to resume\n",
             j->remote);
    files_interrupt_arm(line, progress_wanted(o->quiet), -1, NULL);
    if (j->c.version >= 3 && size > FILES_CHUNK) {
        /* Only the chunks the server lacks (a changed file of the same
         * size, a cut upload): section 9.11. */
        uint64_t moved = 0;
        progress_start(&j->bar, progress_wanted(o->quiet), j->remote, size, 0);
        int rc = files_patch_put(&j->c, j->fd, &j->st, j->remote, head + 8, j->buf, &moved);
        progress_end(&j->bar, rc == 0);
        if (rc == 2)
            cli_err("%s changed while it was being sent; run put again", o->args[0]);
        return rc == 0 ? EXIT_OK : EXIT_RUNTIME;
    }
    if (fc_send(&j->c, FT_PUT, head, sizeof head, j->remote, strlen(j->remote)) < 0)
        return EXIT_RUNTIME;
    uint8_t msg[64], type;
    size_t len;
    int code;
    if (fc_msg(&j->c, &type, msg, sizeof msg, &len, &code, "the answer to PUT") != 0)
        return EXIT_RUNTIME;
    if (type != FT_PUT_READY || len != 8 + FILES_HASH) {
        cli_err("%s: protocol error: expected PUT_READY, got 0x%02x", j->c.addr, type);
        return EXIT_RUNTIME;
    }
    uint64_t have = files_get64(msg);
    uint64_t from = 0;
    bool show = progress_wanted(o->quiet);
    if (have > 0 && have <= size) {
        uint8_t ours[FILES_HASH];
        int rc = files_hash_span(j->fd, 0, have, j->md, j->buf, FILES_PUT_CHUNK);
        EVP_MD_CTX *tmp = EVP_MD_CTX_new();
        bool ok = rc == 0 && tmp && EVP_MD_CTX_copy_ex(tmp, j->md) == 1 &&
                  EVP_DigestFinal_ex(tmp, ours, NULL) == 1;
        EVP_MD_CTX_free(tmp);
        if (rc < 0) {
            cli_err("cannot read %s: %s", o->args[0], strerror(-rc));
            return EXIT_RUNTIME;
        }
        if (ok && memcmp(ours, msg + 8, FILES_HASH) == 0) {
            from = have;
        } else {
            if (EVP_DigestInit_ex(j->md, EVP_sha256(), NULL) != 1)
                return EXIT_RUNTIME;
            if (show)
                cli_err("the %llu bytes on the server do not match %s: starting over",
                        (unsigned long long)have, o->args[0]);
        }
    }
    if (from > 0 && show)
        cli_err("resuming %s at %llu of %llu bytes", j->remote, (unsigned long long)from,
                (unsigned long long)size);
    uint8_t off[8];
    files_put64(off, from);
    if (fc_send(&j->c, FT_PUT_FROM, off, sizeof off, NULL, 0) != 0)
        return EXIT_RUNTIME;
    progress_start(&j->bar, show, j->remote, size, from);
    for (uint64_t pos = from; pos < size;) {
        size_t want = size - pos < FILES_PUT_CHUNK ? (size_t)(size - pos) : FILES_PUT_CHUNK;
        ssize_t n = pread(j->fd, j->buf, want, (off_t)pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            progress_end(&j->bar, false);
            cli_err("%s %s while it was being sent%s%s", o->args[0],
                    n == 0 ? "shrank" : "could not be read", n < 0 ? ": " : "",
                    n < 0 ? strerror(errno) : "");
            return EXIT_RUNTIME;
        }
        if (EVP_DigestUpdate(j->md, j->buf, (size_t)n) != 1)
            return EXIT_RUNTIME;
        /* An ERROR can come at any moment (the server's disk is full):
         * look before each chunk rather than send the rest for nothing. */
        int rc = fc_pending(&j->c) ? 1 : fc_send(&j->c, FT_DATA, j->buf, (size_t)n, NULL, 0);
        if (rc != 0) {
            if (rc > 0)
                server_interrupts(j);
            return EXIT_RUNTIME;
        }
        pos += (uint64_t)n;
        progress_update(&j->bar, pos);
    }
    struct stat now;
    if (fstat(j->fd, &now) == 0 &&
        (now.st_size != j->st.st_size || now.st_mtim.tv_sec != j->st.st_mtim.tv_sec ||
         now.st_mtim.tv_nsec != j->st.st_mtim.tv_nsec)) {
        progress_end(&j->bar, false);
        cli_err("%s changed while it was being sent; run put again", o->args[0]);
        return EXIT_RUNTIME;
    }
    uint8_t digest[FILES_HASH];
    if (EVP_DigestFinal_ex(j->md, digest, NULL) != 1)
        return EXIT_RUNTIME;
    int rc = fc_send(&j->c, FT_PUT_END, digest, sizeof digest, NULL, 0);
    if (rc < 0)
        return EXIT_RUNTIME;
    /* Verifying and making it durable (fsync) can take the server a while
     * for a large file. */
    rc = fc_msg(&j->c, &type, msg, sizeof msg, &len, &code, "the server's check of the upload");
    if (rc != 0) {
        progress_end(&j->bar, false);
        return EXIT_RUNTIME;
    }
    if (type != FT_PUT_OK || len != 8 + FILES_HASH || files_get64(msg) != size ||
        memcmp(msg + 8, digest, FILES_HASH) != 0) {
        progress_end(&j->bar, false);
        cli_err("%s: the server's confirmation does not match what was sent", j->c.addr);
        return EXIT_RUNTIME;
    }
    progress_end(&j->bar, true);
    return EXIT_OK;
}

int cmd_put(int argc, char **argv)
{
    files_cli o;
    memset(&o, 0, sizeof o);
    o.cmd = "put";
    int rc = files_cli_parse(&o, argc, argv, 1, -1, false, usage);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    /* Trees, several files, and what only they take: files_tree.c. */
    if (o.recursive || o.nargs > 2 || o.delete_extra || o.dry_run || o.checksum || o.json ||
        strcmp(o.args[0], "-") == 0)
        return files_tree_put(&o);
    o.offer = FILES_VERSION; /* PATCH needs version 3; an older server gets 1 */
    put_job j;
    memset(&j, 0, sizeof j);
    j.o = &o;
    j.c.sock = NULL;
    if (remote_path(&o, o.args[0], j.remote, sizeof j.remote) < 0)
        return EXIT_USAGE;
    j.fd = open(o.args[0], O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (j.fd < 0) {
        cli_err("cannot open %s: %s", o.args[0], strerror(errno));
        return EXIT_RUNTIME;
    }
    int status = EXIT_RUNTIME;
    if (fstat(j.fd, &j.st) < 0) {
        cli_err("cannot read %s: %s", o.args[0], strerror(errno));
        goto out;
    }
    if (!S_ISREG(j.st.st_mode)) {
        /* Its size must be known and its bytes readable again for a
         * resume: a pipe or a device is neither. */
        cli_err("%s is %s: put sends one regular file", o.args[0],
                S_ISDIR(j.st.st_mode) ? "a directory" : "not a regular file");
        goto out;
    }
    int fl = fcntl(j.fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(j.fd, F_SETFL, fl & ~O_NONBLOCK);
    j.md = EVP_MD_CTX_new();
    j.buf = malloc(FILES_PUT_CHUNK);
    if (j.md == NULL || j.buf == NULL || EVP_DigestInit_ex(j.md, EVP_sha256(), NULL) != 1) {
        cli_err("out of memory");
        goto out;
    }
    status = run(&j);
    files_interrupt_disarm();
out:
    fc_close(&j.c);
    EVP_MD_CTX_free(j.md);
    free(j.buf);
    close(j.fd);
    return status;
}
