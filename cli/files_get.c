/* files_get.c — `sockit get ADDR REMOTE [LOCAL]`: downloads one file from a
 * `sockit serve files` server. What arrives goes to a hidden partial file
 * beside LOCAL; only when the whole file's SHA-256 matches the server's is
 * it fsync'ed and renamed to LOCAL. An interrupted get resumes when run
 * again, from what the partial holds, once both sides agree on its hash.
 *
 * A LOCAL that is not a regular file is never renamed over: a FIFO or a
 * character device (/dev/null, a terminal, /dev/stdout through its link)
 * is written through as the bytes arrive, and so is "-" (standard output),
 * with the SHA-256 checked at the end; anything else (a socket, a block
 * device, a link to a regular file or to nothing) is refused. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "files.h"

/* Bytes of a DATA body received, written and hashed at a time, through one
 * buffer reused for the whole download (so its pages are touched once):
 * large enough that the receive, write and hash calls are few (about a
 * thousand each per GiB), small enough that the bytes are still in this
 * core's cache (2 MiB of L2 here) when they are written and hashed. */
#define READ_STEP (1024u * 1024u)
/* Received chunks waiting for (or being fed to) the hash thread. Four keep
 * the receive loop going while the hash catches up with a burst. */
#define HASH_BUFS 4u
/* The partial's written bytes are handed to writeback every this much
 * (sync_file_range, non-blocking), as the server does for uploads, so the
 * fsync before the rename finds little left to do on a disk. */
#define WRITEBACK_STEP (8u * 1024u * 1024u)
/* Directory entries a get looks at for stale partials: a huge directory
 * costs a bounded walk, and its other partials wait for a later get. */
#define SWEEP_MAX 4096

static void usage(FILE *out)
{
    fprintf(
        out,
        "usage: sockit get ADDR REMOTE [LOCAL] [--token-file FILE] [--quiet] [--timeout SEC]\n"
        "                  [--no-clobber] [--no-resume] [--partial-ttl SEC]\n"
        "       sockit get ADDR REMOTE... LOCAL_DIR/     several files into LOCAL_DIR\n"
        "       sockit get -r ADDR REMOTE_DIR [LOCAL_DIR] [--delete] [--dry-run] [--checksum]\n"
        "\n"
        "Downloads REMOTE (a path below the server's root) to LOCAL (default: REMOTE's name\n"
        "in the current directory; an existing directory: REMOTE's name in it). LOCAL is\n"
        "written only whole, after the server's SHA-256 matched; an interrupted get resumes\n"
        "when run again: Ctrl-C says what is kept. An existing LOCAL is replaced only when\n"
        "it is a regular file. LOCAL \".\" is REMOTE's name in the current directory.\n"
        "LOCAL \"-\" writes to standard output. A FIFO or character device (/dev/null,\n"
        "/dev/stdout, a terminal; also through a symbolic link) is written through as the\n"
        "bytes arrive, without resume, the SHA-256 checked at the end (exit 1 on a mismatch).\n"
        "A socket, a block device or a symbolic link to anything else is refused: get never\n"
        "replaces what is not a regular file.\n"
        "  --token-file FILE  the server's token (needed unless it runs without one)\n"
        "  --quiet            no progress bar (there is none unless stderr is a terminal)\n"
        "  --timeout SEC      bound connecting and each wait for the server (default 10)\n"
        "  --no-clobber       refuse to replace an existing LOCAL (exit 1)\n"
        "  -r, --recursive    make LOCAL_DIR (default: REMOTE_DIR's name) a copy of the\n"
        "                     tree REMOTE_DIR; names are opened beneath LOCAL_DIR without\n"
        "                     following links, so a server cannot write outside it\n"
        "  --delete, --dry-run, --checksum, --json   as for put -r\n"
        "  --keep-special-bits  keep setuid, setgid and sticky bits (default: dropped)\n"
        "  --no-resume        start over, and remove the partial download at once on\n"
        "                     failure or Ctrl-C\n"
        "  --partial-ttl SEC  a partial download (hidden, .sockit-partial.NAME.HASH beside\n"
        "                     LOCAL) not resumed for SEC is removed by the next get into\n"
        "                     that directory (default 86400, as the server's)\n" CLI_TLS_USAGE_PAD(
            "   ") "Exit status: 0 downloaded and verified, 1 failure (one line says why), 2 "
                   "usage.\n");
}

typedef struct get_job {
    const files_cli *o;
    const char *remote;
    char local[FILES_PATH_MAX + FILES_NAME_MAX + 2];
    char base[FILES_NAME_MAX + 1];
    char pname[FILES_NAME_MAX + 1];
    int dirfd, fd;
    bool through; /* fd is LOCAL itself (FIFO, device, stdout): no partial, no rename */
    fconn c;
    EVP_MD_CTX *md;
    uint8_t *buf;
    progress bar;
} get_job;

/* The SHA-256 of what arrives runs on a thread of its own, fed through a
 * ring of HASH_BUFS buffers: the receive loop (recv, then write to the
 * partial) and the hash (1.5 GB/s here, as much CPU as receiving and
 * writing together) overlap where a second core is free, which is what
 * bounds a download between two machines. On one core they take turns at
 * no extra cost (bench/RESULTS.md: a receiver alone took 1.35 s per GiB
 * either way on one core, 0.96 s threaded with a core free). The hash
 * sees exactly the bytes written, in order. Where no thread can be
 * started, the chunks are hashed inline. */
typedef struct hasher {
    EVP_MD_CTX *md;
    uint8_t *buf[HASH_BUFS];
    size_t len[HASH_BUFS];
    unsigned head, tail; /* chunks handed over / hashed, counting up */
    bool threaded, stop, failed;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
} hasher;

static void *hasher_main(void *arg)
{
    hasher *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (h->tail == h->head && !h->stop)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->tail == h->head)
            break; /* stopped, and nothing left */
        unsigned i = h->tail % HASH_BUFS;
        pthread_mutex_unlock(&h->mu);
        bool ok = EVP_DigestUpdate(h->md, h->buf[i], h->len[i]) == 1;
        pthread_mutex_lock(&h->mu);
        if (!ok)
            h->failed = true;
        h->tail++;
        pthread_cond_broadcast(&h->cv);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* Prepares the buffers and starts the thread (inline hashing if it cannot
 * start). Returns false only when out of memory. */
static bool hasher_start(hasher *h, EVP_MD_CTX *md)
{
    memset(h, 0, sizeof *h);
    h->md = md;
    for (unsigned i = 0; i < HASH_BUFS; i++)
        if ((h->buf[i] = malloc(READ_STEP)) == NULL)
            return false;
    if (pthread_mutex_init(&h->mu, NULL) != 0)
        return true;
    if (pthread_cond_init(&h->cv, NULL) != 0) {
        pthread_mutex_destroy(&h->mu);
        return true;
    }
    /* The thread takes no signals: they stay the main thread's (Ctrl-C
     * ends the command as before). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    h->threaded = pthread_create(&h->thread, NULL, hasher_main, h) == 0;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!h->threaded) {
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
    }
    return true;
}

/* The buffer for the next chunk, once the hash is done with it. */
static uint8_t *hasher_next(hasher *h)
{
    if (!h->threaded)
        return h->buf[0];
    pthread_mutex_lock(&h->mu);
    while (h->head - h->tail == HASH_BUFS)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
    return h->buf[h->head % HASH_BUFS];
}

/* Hands the chunk hasher_next gave (len bytes of it) to the hash. */
static void hasher_push(hasher *h, size_t len)
{
    if (!h->threaded) {
        if (EVP_DigestUpdate(h->md, h->buf[0], len) != 1)
            h->failed = true;
        return;
    }
    pthread_mutex_lock(&h->mu);
    h->len[h->head % HASH_BUFS] = len;
    h->head++;
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* Waits for every chunk handed over to be hashed and ends the thread;
 * frees the buffers. Returns false if hashing failed. */
static bool hasher_finish(hasher *h)
{
    if (h->threaded) {
        pthread_mutex_lock(&h->mu);
        h->stop = true;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->thread, NULL);
        pthread_cond_destroy(&h->cv);
        pthread_mutex_destroy(&h->mu);
        h->threaded = false;
    }
    for (unsigned i = 0; i < HASH_BUFS; i++) {
        free(h->buf[i]);
        h->buf[i] = NULL;
    }
    return !h->failed;
}

/* LOCAL "-": standard output, written through (whatever it is: a pipe, a
 * terminal, a file the shell opened). */
static int open_stdout(get_job *j)
{
    snprintf(j->local, sizeof j->local, "standard output");
    j->fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
    if (j->fd < 0) {
        cli_err("cannot write to standard output: %s", strerror(errno));
        return -1;
    }
    j->through = true;
    return 0;
}

static const char *kind_of(mode_t m)
{
    return S_ISSOCK(m)  ? "a socket"
           : S_ISBLK(m) ? "a block device"
           : S_ISDIR(m) ? "a directory"
           : S_ISREG(m) ? "a regular file"
                        : "not a regular file";
}

/* LOCAL exists and is not a regular file (st, not followed): a FIFO or a
 * character device, or a link to one, is opened to be written through;
 * anything else is refused, and nothing is ever renamed over it. */
static int open_through(get_job *j, const struct stat *st)
{
    struct stat to;
    if (S_ISLNK(st->st_mode)) {
        if (fstatat(j->dirfd, j->base, &to, 0) < 0) {
            cli_err("%s is a symbolic link to nothing (%s): get does not replace links", j->local,
                    strerror(errno));
            return -1;
        }
        if (!S_ISFIFO(to.st_mode) && !S_ISCHR(to.st_mode)) {
            cli_err("%s is a symbolic link to %s: get does not replace links (name the file "
                    "it points to, or - for standard output)",
                    j->local, kind_of(to.st_mode));
            return -1;
        }
    } else if (!S_ISFIFO(st->st_mode) && !S_ISCHR(st->st_mode)) {
        cli_err("%s is %s: get writes only to regular files, FIFOs and character devices", j->local,
                kind_of(st->st_mode));
        return -1;
    }
    /* Blocking, as any writer of a FIFO: waits for its reader. O_NOCTTY: a
     * terminal named here must not become ours. No O_TRUNC: a device or
     * FIFO has nothing to truncate. */
    j->fd = open(j->local, O_WRONLY | O_NOCTTY | O_CLOEXEC);
    if (j->fd < 0) {
        cli_err("cannot write to %s: %s", j->local, strerror(errno));
        return -1;
    }
    /* What was opened is checked again: the name may have changed. */
    if (fstat(j->fd, &to) < 0 || (!S_ISFIFO(to.st_mode) && !S_ISCHR(to.st_mode))) {
        cli_err("%s changed while it was opened: it is no longer a FIFO or device", j->local);
        return -1;
    }
    j->through = true;
    return 0;
}

/* LOCAL from the arguments, split into its directory (opened) and name. */
static int local_path(get_job *j)
{
    char rbase[FILES_NAME_MAX + 1];
    files_basename(j->remote, rbase, sizeof rbase);
    const char *l = j->o->nargs >= 2 ? j->o->args[1] : NULL;
    struct stat st;
    int n;
    if (l != NULL && strcmp(l, "-") == 0)
        return open_stdout(j);
    if (l == NULL)
        n = snprintf(j->local, sizeof j->local, "%s", rbase);
    else if ((l[0] && l[strlen(l) - 1] == '/') || (stat(l, &st) == 0 && S_ISDIR(st.st_mode)))
        n = snprintf(j->local, sizeof j->local, "%s%s%s", l, l[strlen(l) - 1] == '/' ? "" : "/",
                     rbase);
    else
        n = snprintf(j->local, sizeof j->local, "%s", l);
    if (n < 0 || (size_t)n >= sizeof j->local) {
        cli_err("LOCAL is too long");
        return -1;
    }
    files_basename(j->local, j->base, sizeof j->base);
    char dir[sizeof j->local];
    const char *slash = strrchr(j->local, '/');
    if (slash == NULL)
        snprintf(dir, sizeof dir, ".");
    else if (slash == j->local)
        snprintf(dir, sizeof dir, "/");
    else
        snprintf(dir, sizeof dir, "%.*s", (int)(slash - j->local), j->local);
    j->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (j->dirfd < 0) {
        cli_err("cannot write into %s: %s", dir, strerror(errno));
        return -1;
    }
    if (fstatat(j->dirfd, j->base, &st, 0) == 0 && S_ISDIR(st.st_mode)) {
        cli_err("%s is a directory", j->local);
        return -1;
    }
    if (fstatat(j->dirfd, j->base, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0; /* missing: the partial, then the rename */
    if (S_ISREG(st.st_mode) && j->o->no_clobber) {
        cli_err("%s exists: not replaced (--no-clobber)", j->local);
        return -1;
    }
    if (S_ISREG(st.st_mode))
        return 0; /* a regular file: the partial, then the rename over it */
    return open_through(j, &st);
}

/* The partial's name: hidden, beside LOCAL, one per REMOTE, so a retry of
 * the same get finds it (through another address of the server, too; a
 * partial from another server is only a prefix the server will check). */
static void partial_name(get_job *j)
{
    uint8_t d[FILES_HASH];
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    bool ok = m && EVP_DigestInit_ex(m, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(m, "sockit-get-v1", 14) == 1 &&
              EVP_DigestUpdate(m, j->remote, strlen(j->remote)) == 1 &&
              EVP_DigestFinal_ex(m, d, NULL) == 1;
    EVP_MD_CTX_free(m);
    if (!ok)
        memset(d, 0, sizeof d);
    char tag[17];
    for (int i = 0; i < 8; i++)
        snprintf(tag + 2 * i, 3, "%02x", d[i]);
    snprintf(j->pname, sizeof j->pname, "%s%.200s.%s", FILES_PARTIAL_PREFIX, j->base, tag);
}

static int open_partial(get_job *j)
{
    j->fd = openat(j->dirfd, j->pname, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (j->fd < 0 && errno == EEXIST)
        j->fd = openat(j->dirfd, j->pname, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (j->fd < 0 || fstat(j->fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        cli_err("cannot write the partial download %s beside %s: %s", j->pname, j->local,
                j->fd < 0 ? strerror(errno) : "not a regular file");
        return -1;
    }
    int fl = fcntl(j->fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(j->fd, F_SETFL, fl & ~O_NONBLOCK);
    if (flock(j->fd, LOCK_EX | LOCK_NB) < 0) {
        cli_err("another sockit get of %s into %s is running", j->remote, j->local);
        return -1;
    }
    return 0;
}

/* Removes the partials beside LOCAL that nobody wrote for --partial-ttl and
 * no running get holds (it keeps its partial locked), as the server sweeps
 * its own: an interrupted get that is never run again does not leave a
 * hidden file behind for ever. */
static void sweep_partials(const get_job *j)
{
    int fd = fcntl(j->dirfd, F_DUPFD_CLOEXEC, 3);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    time_t now = time(NULL);
    size_t prefix = strlen(FILES_PARTIAL_PREFIX);
    struct dirent *e;
    for (int seen = 0; seen < SWEEP_MAX && (e = readdir(d)) != NULL; seen++) {
        struct stat st;
        if (strncmp(e->d_name, FILES_PARTIAL_PREFIX, prefix) != 0 ||
            strcmp(e->d_name, j->pname) == 0 ||
            fstatat(j->dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            now - st.st_mtime < (time_t)j->o->partial_ttl_s)
            continue;
        int pf = openat(j->dirfd, e->d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (pf < 0)
            continue;
        if (flock(pf, LOCK_EX | LOCK_NB) == 0)
            (void)unlinkat(j->dirfd, e->d_name, 0);
        close(pf);
    }
    closedir(d);
}

/* Ctrl-C from here on says what is kept, in one line. */
static void arm_interrupt(const get_job *j)
{
    static char line[sizeof j->local + sizeof j->pname + 200];
    bool bar = progress_wanted(j->o->quiet);
    if (j->through) {
        snprintf(line, sizeof line,
                 "sockit: interrupted: %s holds only part of %s (written through: no resume)\n",
                 j->local, j->remote);
        files_interrupt_arm(line, bar, -1, NULL);
    } else if (j->o->no_resume) {
        snprintf(line, sizeof line,
                 "sockit: interrupted: the partial download was removed (--no-resume); %s is "
                 "unchanged\n",
                 j->local);
        files_interrupt_arm(line, bar, j->dirfd, j->pname);
    } else {
        snprintf(line, sizeof line,
                 "sockit: interrupted: what arrived is kept beside %s as %s (removed after %u s "
                 "unused); run the same command again to resume\n",
                 j->local, j->pname, j->o->partial_ttl_s);
        files_interrupt_arm(line, bar, -1, NULL);
    }
}

/* Removes the partial when it holds nothing worth a resume. */
static void drop_partial(get_job *j, bool always)
{
    if (j->fd < 0 || j->through)
        return;
    struct stat st;
    if (always || (fstat(j->fd, &st) == 0 && st.st_size == 0))
        (void)unlinkat(j->dirfd, j->pname, 0);
}

/* The download broke off: a partial resumes, a write-through does not. */
static void stopped(const get_job *j, uint64_t pos, uint64_t size)
{
    if (j->through)
        cli_err("the download stopped after %llu of %llu bytes (written through to %s: no "
                "resume)",
                (unsigned long long)pos, (unsigned long long)size, j->local);
    else
        cli_err("the download stopped after %llu of %llu bytes; run the same get again to "
                "resume",
                (unsigned long long)pos, (unsigned long long)size);
}

/* Writes n bytes received at offset pos: into the partial, or through to
 * LOCAL itself. Returns 0, or -1 after printing one line. */
static int store(get_job *j, const uint8_t *buf, size_t n, uint64_t pos)
{
    if (j->through) {
        int we = cli_write_all(j->fd, buf, n) < 0 ? -errno : 0;
        if (we < 0)
            cli_err("cannot write to %s: %s", j->local,
                    we == -EPIPE ? "its reader went away" : strerror(-we));
        return we < 0 ? -1 : 0;
    }
    for (size_t off = 0; off < n;) {
        ssize_t w = pwrite(j->fd, buf + off, n - off, (off_t)(pos + off));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            cli_err("cannot write %s: %s", j->pname, w < 0 ? strerror(errno) : "no progress");
            return -1;
        }
        off += (size_t)w;
    }
    return 0;
}

/* Receives the DATA of a download into the partial, each chunk written
 * and then handed to the hash, until GET_END, whose body length is left in
 * *blen. Returns 0, or -1 after printing one line. */
static int receive(get_job *j, hasher *h, uint64_t size, uint64_t *posp, size_t *blenp)
{
    uint64_t pos = *posp, written_back = pos;
    uint8_t type;
    size_t blen;
    int status = -1;
    for (;;) {
        if (fc_head(&j->c, &type, &blen, "the download") < 0) {
            progress_end(&j->bar, false);
            stopped(j, pos, size);
            goto out;
        }
        if (type == FT_GET_END)
            break;
        if (type == PT_ERROR) {
            progress_end(&j->bar, false);
            uint8_t err[1 + PROTO_ERROR_TEXT_MAX];
            if (blen > sizeof err || fc_body(&j->c, err, blen, "the download") < 0)
                goto out;
            fc_print_error(&j->c, err, blen);
            goto out;
        }
        if (type != FT_DATA || blen > size - pos) {
            progress_end(&j->bar, false);
            cli_err("%s: protocol error: %s", j->c.addr,
                    type != FT_DATA ? "unexpected message during the download"
                                    : "more data than the file's size");
            goto out;
        }
        while (blen > 0) {
            size_t n = blen < READ_STEP ? blen : READ_STEP;
            uint8_t *buf = hasher_next(h);
            if (fc_body(&j->c, buf, n, "the download") < 0) {
                progress_end(&j->bar, false);
                stopped(j, pos, size);
                goto out;
            }
            if (store(j, buf, n, pos) < 0) {
                progress_end(&j->bar, false);
                goto out;
            }
            hasher_push(h, n);
            pos += n;
            blen -= n;
            if (!j->through && pos - written_back >= WRITEBACK_STEP) {
                (void)sync_file_range(j->fd, (off_t)written_back, (off_t)(pos - written_back),
                                      SYNC_FILE_RANGE_WRITE);
                written_back = pos;
            }
            progress_update(&j->bar, pos);
        }
    }
    status = 0;
out:
    *posp = pos;
    *blenp = blen;
    return status;
}

/* The download by chunks (section 9.11), when there is something here to
 * start from: what a cut run kept, or the local file it replaces. Returns
 * an exit status, or -1 when it does not apply. */
static int run_patch(get_job *j, uint64_t have)
{
    int base = openat(j->dirfd, j->base, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    struct stat bst;
    bool usable = base >= 0 && fstat(base, &bst) == 0 && S_ISREG(bst.st_mode) && bst.st_size > 0;
    if (have == 0 && !usable) {
        if (base >= 0)
            close(base);
        return -1;
    }
    files_chunk_list R;
    uint64_t moved = 0;
    int rc =
        files_patch_get(&j->c, j->remote, j->fd, usable ? base : -1, j->buf, READ_STEP, &moved, &R);
    if (base >= 0)
        close(base);
    if (rc == 0 && (fsync(j->fd) < 0 || renameat(j->dirfd, j->pname, j->dirfd, j->base) < 0 ||
                    fsync(j->dirfd) < 0)) {
        cli_err("cannot put %s in place: %s", j->local, strerror(errno));
        rc = 3;
    }
    if (rc == 0) {
        files_local_chunks_record(j->fd, &R);
        close(j->fd);
        j->fd = -1; /* renamed: nothing left to drop */
    }
    files_chunk_list_free(&R);
    return rc == 0 ? EXIT_OK : EXIT_RUNTIME;
}

static int run(get_job *j)
{
    const files_cli *o = j->o;
    struct stat st;
    if (fstat(j->fd, &st) < 0)
        return EXIT_RUNTIME;
    if (!j->through) {
        if (fc_open(&j->c, o) < 0)
            return EXIT_RUNTIME;
        if (j->c.version >= 3) {
            int prc = run_patch(j, (uint64_t)st.st_size);
            if (prc >= 0)
                return prc;
        }
    }
    /* Written through: nothing here to resume from. */
    uint64_t have = j->through ? 0 : (uint64_t)st.st_size;
    uint8_t req[8 + FILES_HASH];
    files_put64(req, have);
    int rc = files_hash_span(j->fd, 0, have, j->md, j->buf, READ_STEP);
    EVP_MD_CTX *tmp = EVP_MD_CTX_new();
    bool ok = rc == 0 && tmp && EVP_MD_CTX_copy_ex(tmp, j->md) == 1 &&
              EVP_DigestFinal_ex(tmp, req + 8, NULL) == 1;
    EVP_MD_CTX_free(tmp);
    if (!ok) {
        cli_err("cannot read the partial download %s: %s", j->pname,
                rc < 0 ? strerror(-rc) : "hashing failed");
        return EXIT_RUNTIME;
    }
    if (j->through && fc_open(&j->c, o) < 0)
        return EXIT_RUNTIME;
    if (fc_send(&j->c, FT_GET, req, sizeof req, j->remote, strlen(j->remote)) < 0)
        return EXIT_RUNTIME;
    uint8_t msg[64], type;
    size_t len;
    int code;
    rc = fc_msg(&j->c, &type, msg, sizeof msg, &len, &code, "the answer to GET");
    if (rc != 0)
        return EXIT_RUNTIME;
    if (type != FT_GET_READY || len != 16) {
        cli_err("%s: protocol error: expected GET_READY, got 0x%02x", j->c.addr, type);
        return EXIT_RUNTIME;
    }
    uint64_t size = files_get64(msg), from = files_get64(msg + 8);
    bool show = progress_wanted(o->quiet);
    if (from != 0 && from != have) {
        cli_err("%s: protocol error: the server resumes at %llu, we hold %llu bytes", j->c.addr,
                (unsigned long long)from, (unsigned long long)have);
        return EXIT_RUNTIME;
    }
    if (from == 0 && have > 0) {
        /* The server's file does not start with what we hold: the partial
         * is not trusted, only replaced. */
        if (ftruncate(j->fd, 0) < 0 || EVP_DigestInit_ex(j->md, EVP_sha256(), NULL) != 1) {
            cli_err("cannot start %s over: %s", j->pname, strerror(errno));
            return EXIT_RUNTIME;
        }
        if (show)
            cli_err("the %llu bytes already here do not match %s on the server: starting over",
                    (unsigned long long)have, j->remote);
    } else if (from > 0 && show) {
        cli_err("resuming %s at %llu of %llu bytes", j->remote, (unsigned long long)from,
                (unsigned long long)size);
    }
    progress_start(&j->bar, show, j->remote, size, from);
    uint64_t pos = from;
    size_t blen = 0;
    hasher h;
    if (!hasher_start(&h, j->md)) {
        hasher_finish(&h);
        progress_end(&j->bar, false);
        cli_err("out of memory");
        return EXIT_RUNTIME;
    }
    rc = receive(j, &h, size, &pos, &blen);
    if (!hasher_finish(&h) && rc == 0) {
        progress_end(&j->bar, false);
        cli_err("hashing the download failed");
        return EXIT_RUNTIME;
    }
    if (rc != 0)
        return EXIT_RUNTIME;
    uint8_t theirs[FILES_HASH], ours[FILES_HASH];
    if (blen != FILES_HASH || pos != size) {
        progress_end(&j->bar, false);
        cli_err("%s: protocol error: GET_END after %llu of %llu bytes", j->c.addr,
                (unsigned long long)pos, (unsigned long long)size);
        return EXIT_RUNTIME;
    }
    if (fc_body(&j->c, theirs, FILES_HASH, "the end of the download") < 0 ||
        EVP_DigestFinal_ex(j->md, ours, NULL) != 1) {
        progress_end(&j->bar, false);
        return EXIT_RUNTIME;
    }
    if (memcmp(theirs, ours, FILES_HASH) != 0 && j->through) {
        progress_end(&j->bar, false);
        cli_err("%s: checksum mismatch: what was written to %s is not the server's %s "
                "(damaged on the way, or the file changed)",
                j->c.addr, j->local, j->remote);
        return EXIT_RUNTIME;
    }
    if (j->through) {
        progress_end(&j->bar, true);
        return EXIT_OK;
    }
    if (memcmp(theirs, ours, FILES_HASH) != 0) {
        progress_end(&j->bar, false);
        drop_partial(j, true);
        cli_err("%s: checksum mismatch: what arrived is not the server's %s (damaged on the way, "
                "or the file changed); nothing was written to %s",
                j->c.addr, j->remote, j->local);
        return EXIT_RUNTIME;
    }
    /* Durable before visible: the data, then the name, then the
     * directory entry. */
    if (fsync(j->fd) < 0 || renameat(j->dirfd, j->pname, j->dirfd, j->base) < 0 ||
        fsync(j->dirfd) < 0) {
        progress_end(&j->bar, false);
        cli_err("cannot put %s in place: %s", j->local, strerror(errno));
        return EXIT_RUNTIME;
    }
    progress_end(&j->bar, true);
    close(j->fd);
    j->fd = -1; /* renamed: nothing left to drop */
    return EXIT_OK;
}

int cmd_get(int argc, char **argv)
{
    files_cli o;
    memset(&o, 0, sizeof o);
    o.cmd = "get";
    int rc = files_cli_parse(&o, argc, argv, 1, -1, false, usage);
    if (rc != 0)
        return rc > 0 ? EXIT_OK : EXIT_USAGE;
    /* Trees, several files, and what only they take: files_tree.c. */
    if (o.recursive || o.nargs > 2 || o.delete_extra || o.dry_run || o.checksum ||
        (o.json && strcmp(o.args[o.nargs - 1], "-") != 0))
        return files_tree_get(&o);
    o.offer = FILES_VERSION; /* the chunk lists of section 9.11 need version 3 */
    get_job j;
    memset(&j, 0, sizeof j);
    j.o = &o;
    j.remote = o.args[0];
    j.dirfd = j.fd = -1;
    j.c.sock = NULL;
    char why[PROTO_ERROR_TEXT_MAX];
    if (files_path_check(j.remote, strlen(j.remote), false, why, sizeof why) < 0) {
        cli_err("bad REMOTE \"%s\": %s", j.remote, why);
        return EXIT_USAGE;
    }
    int status = EXIT_RUNTIME;
    if (local_path(&j) < 0)
        goto out;
    if (j.through)
        /* A reader that goes away is reported as a line, not a signal. */
        signal(SIGPIPE, SIG_IGN);
    else
        partial_name(&j);
    j.md = EVP_MD_CTX_new();
    j.buf = malloc(READ_STEP);
    if (j.md == NULL || j.buf == NULL || EVP_DigestInit_ex(j.md, EVP_sha256(), NULL) != 1) {
        cli_err("out of memory");
        goto out;
    }
    if (!j.through && open_partial(&j) < 0) {
        /* Not ours to remove: another get may hold it. */
        if (j.fd >= 0)
            close(j.fd);
        j.fd = -1;
        goto out;
    }
    if (!j.through) {
        sweep_partials(&j);
        /* --no-resume: whatever a partial holds is not used. */
        if (o.no_resume && ftruncate(j.fd, 0) < 0) {
            cli_err("cannot start %s over: %s", j.pname, strerror(errno));
            goto out;
        }
    }
    arm_interrupt(&j);
    status = run(&j);
    files_interrupt_disarm();
    if (status != EXIT_OK)
        drop_partial(&j, o.no_resume); /* an empty partial is not worth keeping */
out:
    fc_close(&j.c);
    if (j.fd >= 0)
        close(j.fd);
    if (j.dirfd >= 0)
        close(j.dirfd);
    EVP_MD_CTX_free(j.md);
    free(j.buf);
    return status;
}
