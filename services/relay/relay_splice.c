/* relay_splice.c — relaying two plain sockets with splice(2): the bytes go
 * socket -> pipe -> socket inside the kernel, never copied to user space.
 * A direction holds a pipe only while bytes wait in it (an idle pair holds
 * none); pipes come from a small per-thread pool, non-blocking and
 * close-on-exec, and a full pipe stops reading its source, so one direction
 * holds at most one pipe (64 KiB) whatever its destination does. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"

/* One splice call moves at most a pipe's default capacity. */
#define PIPE_BYTES (64 * 1024)
/* Pipes kept for reuse per thread: enough for the pairs busy at one
 * moment of a loaded loop; more are closed when they come back. */
#define POOL_MAX 32
/* A read below this emptied the socket (a splice from a socket may return
 * less than asked only because the pipe's 16 slots filled with small
 * fragments, so a read just under PIPE_BYTES says nothing; one this small
 * does in practice, and if not, the level-triggered watch calls again). */
#define SMALL_READ (16 * 1024)
/* Rounds of read-then-write per direction per event, so one fast pair
 * cannot starve the others on its loop (as the library's 8 reads). */
#define ROUNDS 8

typedef struct dir_state {
    int pipe[2]; /* -1 when none is held */
    size_t inpipe;
    bool eof, shut, want_out;
} dir_state;

struct relay_splice {
    relay_pair *p;
    int fd[2];    /* [0] the client's socket, [1] the target's (the connections own them) */
    sk_io *io[2]; /* their watches */
    dir_state d[2];
    size_t prefix_off; /* bytes of the PROXY header already sent */
};

/* Each loop runs on one thread: its pool and its count of splicing pairs
 * need no lock. With no pair left the pool is closed, so an idle relay
 * holds no pipe at all. */
static _Thread_local int pool[POOL_MAX][2];
static _Thread_local int pool_len, live_pairs;
/* splice(2) has no MSG_NOSIGNAL: writing to a socket whose peer is gone
 * raises SIGPIPE, which would kill the process. The splicing thread keeps
 * SIGPIPE blocked (the library's own writes never raise it, and a child
 * gets a clean mask from sk_proc), and takes back the one an EPIPE left
 * pending. Per thread, once: not a mask change per call on the hot path. */
static _Thread_local bool pipe_blocked;

static void block_sigpipe(void)
{
    if (pipe_blocked)
        return;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pipe_blocked = pthread_sigmask(SIG_BLOCK, &set, NULL) == 0;
}

static void take_sigpipe(void)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    static const struct timespec now = {0, 0};
    while (sigtimedwait(&set, NULL, &now) < 0 && errno == EINTR) {
    }
}

static int pipe_get(int out[2])
{
    if (pool_len > 0) {
        pool_len--;
        out[0] = pool[pool_len][0];
        out[1] = pool[pool_len][1];
        return 0;
    }
    return pipe2(out, O_NONBLOCK | O_CLOEXEC) < 0 ? -errno : 0;
}

/* Returns an empty pipe to the pool; one with bytes in it is closed. */
static void pipe_put(int fds[2], bool empty)
{
    if (fds[0] < 0)
        return;
    if (empty && pool_len < POOL_MAX) {
        pool[pool_len][0] = fds[0];
        pool[pool_len][1] = fds[1];
        pool_len++;
    } else {
        close(fds[0]);
        close(fds[1]);
    }
    fds[0] = fds[1] = -1;
}

static void pool_drop(void)
{
    while (pool_len > 0) {
        pool_len--;
        close(pool[pool_len][0]);
        close(pool[pool_len][1]);
    }
}

static void splice_free(relay_pair *p, bool closing);

static void finish(relay_splice *s, bool reset)
{
    relay_pair *p = s->p;
    relay_splice_stop(p);
    relay_pair_end(p, reset);
}

/* Moves what it can in direction dir. Returns 0, 1 when the direction is
 * done (FIN passed on), or -1 after ending the pair. */
static int pump(relay_splice *s, int dir)
{
    dir_state *d = &s->d[dir];
    int src = s->fd[dir == RELAY_UP ? 0 : 1], dst = s->fd[dir == RELAY_UP ? 1 : 0];
    relay_pair *p = s->p;
    bool short_read = false;
    d->want_out = false;
    while (dir == RELAY_UP && s->prefix_off < p->prefix_len) {
        ssize_t n = send(dst, p->prefix + s->prefix_off, p->prefix_len - s->prefix_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EAGAIN) {
            d->want_out = true;
            return 0;
        }
        if (n < 0) {
            relay_pair_reason(p, "target: %s", sk_strerror(-errno));
            finish(s, true);
            return -1;
        }
        s->prefix_off += (size_t)n;
    }
    for (int round = 0; round < ROUNDS; round++) {
        if (d->inpipe > 0) {
            ssize_t n =
                splice(d->pipe[0], NULL, dst, NULL, d->inpipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n < 0 && errno == EAGAIN) {
                d->want_out = true;
                return 0;
            }
            if (n <= 0) {
                int e = n < 0 ? errno : EPIPE;
                take_sigpipe();
                relay_pair_reason(p, "%s reset (%s)", dir == RELAY_UP ? "target" : "client",
                                  sk_strerror(-e));
                finish(s, true);
                return -1;
            }
            d->inpipe -= (size_t)n;
            relay_pair_count(p, dir, (size_t)n);
            continue;
        }
        if (d->eof)
            break;
        if (short_read) {
            pipe_put(d->pipe, true);
            break;
        }
        if (d->pipe[0] < 0) {
            int rc = pipe_get(d->pipe);
            if (rc < 0) {
                relay_pair_reason(p, "no pipe for splice: %s", sk_strerror(rc));
                finish(s, false);
                return -1;
            }
        }
        ssize_t n =
            splice(src, NULL, d->pipe[1], NULL, PIPE_BYTES, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n < 0 && errno == EAGAIN) {
            pipe_put(d->pipe, true); /* nothing in flight: an idle pair holds no pipe */
            return 0;
        }
        if (n < 0) {
            relay_pair_reason(p, "%s reset (%s)", dir == RELAY_UP ? "client" : "target",
                              sk_strerror(-errno));
            finish(s, true);
            return -1;
        }
        if (n == 0)
            d->eof = true;
        d->inpipe = (size_t)n;
        /* A small read emptied the socket: once these bytes are out, the
         * next read would only say EAGAIN. The watches are level-triggered,
         * so bytes that come meanwhile wake us again; small exchanges save
         * that syscall, bulk (large reads) loops on as before. */
        if (n > 0 && n < SMALL_READ)
            short_read = true;
    }
    /* Out of rounds with bytes still in the pipe: the destination's
     * readiness (at once, if it has room) brings us back for them. */
    if (d->inpipe > 0)
        d->want_out = true;
    if (d->eof && d->inpipe == 0 && !d->shut) {
        pipe_put(d->pipe, true);
        /* The source ended: pass its FIN on, keep the other way open.
         * When the other way has ended too, the pair closes at once
         * (on_ready): that close sends the FIN, both sockets having
         * nothing left unread, and saves the shutdown. */
        if (!s->d[1 - dir].shut)
            (void)shutdown(dst, SHUT_WR);
        d->shut = true;
        p->eof[dir] = true;
    }
    return d->shut ? 1 : 0;
}

/* The watches follow the state: a source is read only while its pipe is
 * empty, a destination watched for room only while bytes wait for it. */
static void update(relay_splice *s)
{
    for (int i = 0; i < 2; i++) {
        int in_dir = i == 0 ? RELAY_UP : RELAY_DOWN; /* the direction fd i feeds */
        int out_dir = 1 - in_dir;                    /* the one it receives */
        int ev = 0;
        if (!s->d[in_dir].eof && s->d[in_dir].inpipe == 0)
            ev |= SK_READABLE;
        if (s->d[out_dir].want_out)
            ev |= SK_WRITABLE;
        (void)sk_io_set_events(s->io[i], ev);
    }
}

/* Pumps the directions an event concerns: a socket readable feeds the
 * direction it is the source of, a socket writable drains the one it is
 * the destination of (the other direction's splice would only say EAGAIN).
 * An error, or the start (io NULL), pumps both. */
static void on_ready(sk_io *io, int fd, int ready, void *ud)
{
    (void)fd;
    relay_splice *s = ud;
    bool want[2] = {true, true};
    if (io != NULL && !(ready & SK_ERROR)) {
        int in_dir = io == s->io[0] ? RELAY_UP : RELAY_DOWN; /* what this socket feeds */
        want[in_dir] = (ready & SK_READABLE) != 0;
        want[1 - in_dir] = (ready & SK_WRITABLE) != 0;
    }
    for (int dir = 0; dir < 2; dir++)
        if (want[dir] && pump(s, dir) < 0)
            return; /* s is gone */
    if (s->d[RELAY_UP].shut && s->d[RELAY_DOWN].shut) {
        relay_pair *p = s->p;
        splice_free(p, true);
        relay_pair_done(p);
        return;
    }
    update(s);
}

int relay_splice_start(relay_pair *p)
{
    relay_splice *s = calloc(1, sizeof *s);
    if (s == NULL)
        return -ENOMEM;
    s->p = p;
    s->fd[0] = s->fd[1] = -1;
    for (int i = 0; i < 2; i++)
        s->d[i].pipe[0] = s->d[i].pipe[1] = -1;
    p->sp = s;
    live_pairs++;
    block_sigpipe();
    /* The connections' own descriptors: both are paused, so the library
     * watches neither, and each is closed by its connection only after
     * relay_splice_stop (every end of a pair stops splicing first, and so
     * does each on_close) took our watch off it. No duplicate: two
     * descriptors fewer to make and close per pair. */
    sk_conn *c[2] = {p->client, p->target};
    for (int i = 0; i < 2; i++) {
        s->fd[i] = sk_conn_fd(c[i]);
        int rc = sk_io_new(sk_conn_loop(p->client), s->fd[i], 0, on_ready, s, &s->io[i]);
        if (rc < 0) {
            relay_splice_stop(p);
            return rc;
        }
    }
    on_ready(NULL, -1, 0, s); /* the PROXY header, and bytes that came early */
    return 0;
}

/* closing: both connections close in this loop iteration (relay_pair_done
 * aborts both), and that close takes their descriptors out of epoll. */
static void splice_free(relay_pair *p, bool closing)
{
    relay_splice *s = p->sp;
    if (s == NULL)
        return;
    p->sp = NULL;
    for (int i = 0; i < 2; i++) {
        if (closing)
            sk_io_free_closing(s->io[i]);
        else
            sk_io_free(s->io[i]);
        pipe_put(s->d[i].pipe, s->d[i].inpipe == 0);
    }
    free(s);
    if (--live_pairs == 0)
        pool_drop();
}

void relay_splice_stop(relay_pair *p) { splice_free(p, false); }
