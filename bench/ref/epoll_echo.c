/* epoll_echo.c — the "hand-tuned epoll echo" of BENCHMARKING.md, for
 * comparison only: one thread, level-triggered epoll, 64 KiB reads, every
 * complete 4-byte big-endian frame of a read echoed whole with one write per
 * read, TCP_NODELAY. A partial frame is carried in a per-connection buffer
 * that exists only while it is needed (taken from a small free list, so
 * carrying costs no malloc/free and no brk churn), so an idle connection
 * costs its 40-byte struct. While an echo is unsent the connection stops
 * reading (backpressure) and waits for EPOLLOUT.
 *
 *     epoll_echo ADDR        ADDR: PORT, HOST:PORT, unix:PATH (see ref.h)
 */
#include <sys/epoll.h>

#include "ref.h"

#define MAX_EVENTS 512
/* A carried tail is shorter than one read (< 64 KiB unless a frame is
 * larger), so one standard carry buffer holds it plus the next read. */
#define CARRY_SIZE (2u * REF_READ_CHUNK)
#define CARRY_POOL 64

typedef struct conn {
    int fd;
    uint32_t in_len, in_cap;   /* carried partial frame */
    uint32_t out_off, out_len; /* unsent echo */
    uint8_t *in, *out;
} conn;

static int epfd;
static uint8_t rbuf[REF_READ_CHUNK];
static uint8_t *carry_pool[CARRY_POOL];
static int carry_n;

/* A buffer for a carried tail of len bytes plus a read; *cap gets its size. */
static uint8_t *carry_get(size_t len, uint32_t *cap)
{
    if (len + REF_READ_CHUNK <= CARRY_SIZE) {
        *cap = CARRY_SIZE;
        return carry_n > 0 ? carry_pool[--carry_n] : malloc(CARRY_SIZE);
    }
    *cap = (uint32_t)(len + REF_READ_CHUNK);
    return malloc(*cap);
}

static void carry_put(uint8_t *p, uint32_t cap)
{
    if (cap == CARRY_SIZE && carry_n < CARRY_POOL)
        carry_pool[carry_n++] = p;
    else
        free(p);
}

static void conn_free(conn *c)
{
    close(c->fd); /* also removes it from the epoll set */
    if (c->in)
        carry_put(c->in, c->in_cap);
    free(c->out);
    free(c);
}

static int set_events(conn *c, uint32_t ev)
{
    struct epoll_event e = {.events = ev, .data.ptr = c};
    return epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e);
}

/* Sends data; keeps what the kernel did not take and switches the
 * connection to EPOLLOUT only. Returns -1 when the connection is dead. */
static int echo(conn *c, const uint8_t *data, size_t len)
{
    ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL);
    if (n < 0) {
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        n = 0;
    }
    if ((size_t)n == len)
        return 0;
    c->out_len = (uint32_t)(len - (size_t)n);
    c->out_off = 0;
    c->out = malloc(c->out_len);
    if (c->out == NULL)
        return -1;
    memcpy(c->out, data + n, c->out_len);
    return set_events(c, EPOLLOUT);
}

static int on_readable(conn *c)
{
    uint8_t *base;
    size_t len;
    ssize_t n;
    if (c->in_len > 0) {
        /* A partial frame is carried: read behind it. */
        if (c->in_cap - c->in_len < REF_READ_CHUNK) {
            uint32_t cap = c->in_len + REF_READ_CHUNK;
            uint8_t *p = realloc(c->in, cap);
            if (p == NULL)
                return -1;
            c->in = p;
            c->in_cap = cap;
        }
        n = read(c->fd, c->in + c->in_len, REF_READ_CHUNK);
        base = c->in;
        len = c->in_len + (size_t)(n > 0 ? n : 0);
    } else {
        n = read(c->fd, rbuf, sizeof rbuf);
        base = rbuf;
        len = (size_t)(n > 0 ? n : 0);
    }
    if (n == 0)
        return -1;
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    long whole = ref_complete_frames(base, len);
    if (whole < 0)
        return -1;
    if (whole > 0 && echo(c, base, (size_t)whole) < 0)
        return -1;
    size_t tail = len - (size_t)whole;
    if (base == rbuf) {
        if (tail > 0) {
            c->in = carry_get(tail, &c->in_cap);
            if (c->in == NULL)
                return -1;
            memcpy(c->in, rbuf + whole, tail);
        }
    } else if (tail == 0) {
        carry_put(c->in, c->in_cap);
        c->in = NULL;
        c->in_cap = 0;
    } else if (whole > 0) {
        memmove(c->in, c->in + whole, tail);
    }
    c->in_len = (uint32_t)tail;
    return 0;
}

static int on_writable(conn *c)
{
    ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
    if (n < 0)
        return errno == EAGAIN || errno == EINTR ? 0 : -1;
    c->out_off += (uint32_t)n;
    if (c->out_off < c->out_len)
        return 0;
    free(c->out);
    c->out = NULL;
    c->out_off = c->out_len = 0;
    return set_events(c, EPOLLIN);
}

static void on_accept(int lfd, int is_unix)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return; /* EAGAIN, or EMFILE: the peer waits in the backlog */
        if (!is_unix) {
            int one = 1;
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        conn *c = calloc(1, sizeof *c);
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0)
            conn_free(c);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: epoll_echo ADDR\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ref_raise_nofile();
    ref_addr a;
    ref_parse(argv[1], &a);
    int lfd = ref_bind(&a, SOCK_STREAM, 1);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        ref_die("epoll_create1");
    struct epoll_event le = {.events = EPOLLIN, .data.ptr = NULL};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &le) < 0)
        ref_die("epoll_ctl");
    ref_ready("epoll_echo", lfd);
    static struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, evs, MAX_EVENTS, -1);
        if (n < 0 && errno != EINTR)
            ref_die("epoll_wait");
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            if (c == NULL) {
                on_accept(lfd, a.is_unix);
                continue;
            }
            uint32_t ev = evs[i].events;
            int rc = 0;
            if (c->out != NULL)
                rc = (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)) ? on_writable(c) : 0;
            else if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
                rc = on_readable(c);
            if (rc < 0)
                conn_free(c);
        }
    }
}
