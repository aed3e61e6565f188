/* frame_client.c — a second, minimal load generator, to check that
 * `sockit bench` is not what limits a measurement ("checked with
 * an independent generator"). Same traffic as `sockit bench --mode frame`:
 * C connections, D frames of S payload bytes in flight on each, every reply
 * byte compared; but nothing else — no latency histogram, no library: one
 * thread, level-triggered epoll, 64 KiB reads, one write per read. All
 * frames are identical, so the expected reply stream is periodic and is
 * checked with memcmp against a template, and new requests are written
 * straight from that template (no copies).
 *
 *     frame_client ADDR [-c CONNS] [--pipeline D] [--size S] [-d SEC] [--warmup SEC]
 * prints {"requests":N,"req_per_s":R,"duration_s":D,"errors":0}
 */
#include <getopt.h>
#include <sys/epoll.h>
#include <time.h>

#include "../ref/ref.h"

typedef struct fconn {
    int fd;
    uint64_t rx;   /* reply bytes received and verified */
    uint64_t tx;   /* request bytes written */
    uint64_t owed; /* request bytes due but not yet written */
} fconn;

static uint8_t *tmpl; /* frames back to back, long enough for any chunk */
static size_t flen, tmpl_len;
static uint8_t rbuf[REF_READ_CHUNK];

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Writes what is owed from the template; returns -1 on a dead connection. */
static int flush(fconn *c)
{
    while (c->owed > 0) {
        size_t pos = (size_t)(c->tx % flen);
        size_t n = tmpl_len - pos;
        if (n > c->owed)
            n = (size_t)c->owed;
        ssize_t w = send(c->fd, tmpl + pos, n, MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        c->tx += (uint64_t)w;
        c->owed -= (uint64_t)w;
        if ((size_t)w < n)
            return 0;
    }
    return 0;
}

int main(int argc, char **argv)
{
    unsigned conns = 50, pipeline = 1;
    size_t size = 64;
    double dur = 5, warm = 1;
    static const struct option lo[] = {
        {"pipeline", required_argument, NULL, 'p'},
        {"size", required_argument, NULL, 's'},
        {"warmup", required_argument, NULL, 'w'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "c:d:", lo, NULL)) != -1) {
        switch (ch) {
        case 'c': conns = (unsigned)atoi(optarg); break;
        case 'p': pipeline = (unsigned)atoi(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        case 'd': dur = atof(optarg); break;
        case 'w': warm = atof(optarg); break;
        default: return 2;
        }
    }
    if (optind != argc - 1 || conns == 0 || pipeline == 0 || size > REF_MAX_FRAME) {
        fprintf(stderr, "usage: frame_client ADDR [-c N] [--pipeline D] [--size S] [-d SEC] "
                        "[--warmup SEC]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ref_raise_nofile();
    ref_addr a;
    ref_parse(argv[optind], &a);
    flen = 4 + size;
    /* A chunk starts anywhere in a frame and is at most max(64 KiB,
     * D frames) long: the template covers both plus one frame. */
    size_t frames = (REF_READ_CHUNK + flen - 1) / flen + pipeline + 1;
    tmpl_len = frames * flen;
    tmpl = malloc(tmpl_len);
    if (tmpl == NULL)
        return 1;
    uint64_t x = 0x9e3779b97f4a7c15u;
    for (size_t f = 0; f < frames; f++) {
        uint8_t *p = tmpl + f * flen;
        p[0] = (uint8_t)(size >> 24), p[1] = (uint8_t)(size >> 16);
        p[2] = (uint8_t)(size >> 8), p[3] = (uint8_t)size;
        if (f == 0) {
            for (size_t i = 0; i < size; i++) {
                x ^= x << 13, x ^= x >> 7, x ^= x << 17;
                p[4 + i] = (uint8_t)x;
            }
        } else {
            memcpy(p + 4, tmpl + 4, size);
        }
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    fconn *cs = calloc(conns, sizeof *cs);
    if (ep < 0 || cs == NULL)
        return 1;
    for (unsigned i = 0; i < conns; i++) {
        int fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&a.ss, a.len) < 0)
            ref_die("connect");
        int one = 1;
        if (!a.is_unix)
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        cs[i].fd = fd;
        struct epoll_event e = {.events = EPOLLIN, .data.ptr = &cs[i]};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e) < 0)
            ref_die("epoll_ctl");
    }
    for (unsigned i = 0; i < conns; i++) {
        cs[i].owed = (uint64_t)pipeline * flen;
        if (flush(&cs[i]) < 0)
            ref_die("send");
    }
    uint64_t t0 = now_ns();
    uint64_t t_measure = t0 + (uint64_t)(warm * 1e9), t_end = t_measure + (uint64_t)(dur * 1e9);
    uint64_t done_at_measure = 0, done = 0;
    int measuring = 0;
    static struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, 10);
        uint64_t now = now_ns();
        if (!measuring && now >= t_measure) {
            measuring = 1;
            done_at_measure = done;
        }
        if (now >= t_end)
            break;
        for (int i = 0; i < n; i++) {
            fconn *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) {
                if (flush(c) < 0)
                    ref_die("send");
                if (c->owed == 0) {
                    struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                }
            }
            if (!(evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                continue;
            ssize_t r = read(c->fd, rbuf, sizeof rbuf);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                fprintf(stderr, "frame_client: connection closed by the server\n");
                return 1;
            }
            size_t pos = (size_t)(c->rx % flen);
            if (memcmp(rbuf, tmpl + pos, (size_t)r) != 0) {
                printf("{\"error\":\"reply mismatch\"}\n");
                return 1;
            }
            uint64_t before = c->rx / flen;
            c->rx += (uint64_t)r;
            uint64_t k = c->rx / flen - before;
            if (k == 0)
                continue;
            done += k;
            int had_owed = c->owed > 0;
            c->owed += k * flen;
            if (!had_owed) {
                if (flush(c) < 0)
                    ref_die("send");
                if (c->owed > 0) {
                    struct epoll_event e = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
                    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &e);
                }
            }
        }
    }
    double secs = dur;
    uint64_t reqs = done - done_at_measure;
    printf("{\"requests\":%llu,\"req_per_s\":%.1f,\"duration_s\":%.3f,\"errors\":0}\n",
           (unsigned long long)reqs, (double)reqs / secs, secs);
    return 0;
}
