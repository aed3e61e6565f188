/* chat_fanout.c — the chat fan-out benchmark client: N receiving
 * members and T talkers on one room, driven the same way against
 * `sockit serve chat` and against a Redis pub/sub channel, so the two
 * compare on equal terms (redis-benchmark cannot drive pub/sub fan-out).
 *
 *   chat_fanout --target chat|redis --addr HOST:PORT -n N [-t T] [-d SEC]
 *               [--rate MSGS_PER_SEC | --window W] [--size BYTES]
 *
 * --addr may be given up to 8 times (chat servers sharing rooms through
 * Redis): peers are spread over the addresses in turn, receiver i and
 * talker j on address i (j) modulo their count.
 *
 * Each message carries "@SEQ:SENDNS;" (CLOCK_MONOTONIC nanoseconds) padded
 * with 'x' to --size; every receiver finds the tokens in what it reads, so
 * the same scanner works on chat lines ("guest7: @12:345;xxx\n") and on RESP
 * pushes ("$N\r\n@12:345;xxx\r\n"). Latency is receive time minus send time
 * (same clock, same machine), recorded for every delivery in a histogram
 * with ~1.6 % precision.
 *
 * Two loads: --rate R sends R messages per second in total (open loop,
 * sends on schedule whatever the deliveries do, so queueing shows up in the
 * latency); --window W (closed loop) lets each talker have at most W
 * messages not yet delivered to every receiver, which finds the highest
 * sustainable fan-out. One thread, epoll; pin it apart from the server. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_MSG   4096
#define TOKEN_MAX 48
#define RING      (1u << 20) /* delivery counters for the closed loop */
#define CHANNEL   "bench"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "chat_fanout: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ------------------------------------------------------------ histogram */

#define SUB_BITS 6
#define SUB      (1u << SUB_BITS)
#define EXPS     40

static uint64_t hist[EXPS * SUB];
static uint64_t hist_count, hist_max;

static void hist_add(uint64_t v)
{
    unsigned idx;
    if (v < SUB) {
        idx = (unsigned)v;
    } else {
        unsigned e = 63u - (unsigned)__builtin_clzll(v); /* v in [2^e, 2^(e+1)) */
        unsigned shift = e - SUB_BITS;
        idx = (e - SUB_BITS + 1) * SUB + (unsigned)((v >> shift) - SUB);
        if (idx >= EXPS * SUB)
            idx = EXPS * SUB - 1;
    }
    hist[idx]++;
    hist_count++;
    if (v > hist_max)
        hist_max = v;
}

static uint64_t bucket_mid(unsigned idx)
{
    if (idx < SUB)
        return idx;
    unsigned e = idx / SUB + SUB_BITS - 1, sub = idx % SUB;
    uint64_t lo = ((uint64_t)SUB + sub) << (e - SUB_BITS);
    return lo + ((1ull << (e - SUB_BITS)) >> 1);
}

static uint64_t hist_pct(double p)
{
    if (hist_count == 0)
        return 0;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)hist_count);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < EXPS * SUB; i++) {
        seen += hist[i];
        if (seen >= rank)
            return bucket_mid(i) < hist_max ? bucket_mid(i) : hist_max;
    }
    return hist_max;
}

/* ---------------------------------------------------------- connections */

typedef struct peer {
    int fd;
    bool talker;
    bool ready;          /* receiver: subscribed / saw a sync token */
    char tok[TOKEN_MAX]; /* a token cut by the end of a read */
    size_t tok_len;
    bool in_tok;
    char out[65536]; /* talker: bytes not yet written */
    size_t out_len;
    uint64_t sent, inflight; /* talker */
    uint64_t next_at;        /* talker, open loop: when its next message is due */
} peer;

static struct {
    const char *target;
    struct sockaddr_storage sa[8];
    socklen_t salen[8];
    unsigned naddr;
    unsigned n, t, window;
    double rate, seconds;
    unsigned size;
    bool redis;
} cfg = {.target = "chat", .n = 100, .t = 1, .seconds = 5, .size = 64};

static peer *peers;
static int ep;
static uint32_t *delivered; /* per message (seq % RING): receivers that got it */
static uint64_t deliveries, completed, sync_seen_by;
static bool measuring;
static unsigned talker_of_seq_bits = 8; /* seq = talker_seq << bits | talker */

static int dial(unsigned i)
{
    i %= cfg.naddr;
    int fd = socket(cfg.sa[i].ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (connect(fd, (struct sockaddr *)&cfg.sa[i], cfg.salen[i]) < 0)
        die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void send_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            die("send");
        p += w;
        len -= (size_t)w;
    }
}

/* One token "@SEQ:NS;" found by a receiver. SEQ 0 is a sync probe. */
static void on_token(peer *p, const char *tok, size_t len)
{
    char *colon;
    unsigned long long seq = strtoull(tok, &colon, 10);
    if (*colon != ':')
        return;
    unsigned long long sent_ns = strtoull(colon + 1, NULL, 10);
    (void)len;
    if (seq == 0) {
        if (!p->ready) {
            p->ready = true;
            sync_seen_by++;
        }
        return;
    }
    if (!measuring)
        return;
    uint64_t t = now_ns();
    hist_add(t > sent_ns ? (t - sent_ns) / 1000u : 0); /* microseconds */
    deliveries++;
    /* Slot by (talker's own count, talker): consecutive over all talkers. */
    uint32_t *d = &delivered[((seq >> talker_of_seq_bits) * cfg.t +
                              (seq & ((1u << talker_of_seq_bits) - 1))) %
                             RING];
    if (++*d == cfg.n) {
        *d = 0;
        completed++;
        unsigned who = (unsigned)(seq & ((1u << talker_of_seq_bits) - 1));
        peer *tk = &peers[cfg.n + who];
        if (tk->inflight)
            tk->inflight--;
    }
}

/* Scans what a receiver read for "@...;" tokens, keeping a cut one. */
static void scan(peer *p, const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        char ch = buf[i];
        if (!p->in_tok) {
            if (ch == '@') {
                p->in_tok = true;
                p->tok_len = 0;
            }
            continue;
        }
        if (ch == ';') {
            p->tok[p->tok_len] = '\0';
            on_token(p, p->tok, p->tok_len);
            p->in_tok = false;
        } else if (p->tok_len < TOKEN_MAX - 1) {
            p->tok[p->tok_len++] = ch;
        } else {
            p->in_tok = false; /* not one of ours */
        }
    }
}

static void drain(peer *p)
{
    char buf[65536];
    for (;;) {
        ssize_t r = recv(p->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (r > 0) {
            if (!p->talker)
                scan(p, buf, (size_t)r);
            if ((size_t)r < sizeof buf)
                return;
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        fprintf(stderr, "chat_fanout: the server closed a connection (%s)\n",
                r == 0 ? "EOF" : strerror(errno));
        exit(1);
    }
}

/* Queues one message of the talker stamped with `stamp` (ns); seq 0 is a
 * sync probe. */
static void queue_msg(peer *tk, uint64_t seq, uint64_t stamp)
{
    char body[MAX_MSG + 64];
    int n = snprintf(body, sizeof body, "@%llu:%llu;", (unsigned long long)seq,
                     (unsigned long long)stamp);
    size_t len = (size_t)n < cfg.size ? cfg.size : (size_t)n;
    memset(body + n, 'x', len - (size_t)n);
    char *o = tk->out + tk->out_len;
    size_t room = sizeof tk->out - tk->out_len;
    int w;
    if (cfg.redis)
        w = snprintf(o, room, "*3\r\n$7\r\nPUBLISH\r\n$%zu\r\n%s\r\n$%zu\r\n%.*s\r\n",
                     strlen(CHANNEL), CHANNEL, len, (int)len, body);
    else
        w = snprintf(o, room, "%.*s\n", (int)len, body);
    if (w < 0 || (size_t)w >= room) {
        fprintf(stderr, "chat_fanout: talker output full\n");
        exit(1);
    }
    tk->out_len += (size_t)w;
}

static void flush_talker(peer *tk)
{
    while (tk->out_len > 0) {
        ssize_t w = send(tk->fd, tk->out, tk->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (w < 0)
            die("send");
        memmove(tk->out, tk->out + w, tk->out_len - (size_t)w);
        tk->out_len -= (size_t)w;
    }
}

static void poll_once(int timeout_ms)
{
    struct epoll_event ev[512];
    int k = epoll_wait(ep, ev, 512, timeout_ms);
    if (k < 0 && errno != EINTR)
        die("epoll_wait");
    for (int i = 0; i < k; i++)
        drain(&peers[ev[i].data.u32]);
}

static void usage(void)
{
    fprintf(stderr,
            "usage: chat_fanout --target chat|redis --addr HOST:PORT -n RECEIVERS [-t TALKERS]\n"
            "                   [-d SECONDS] [--rate MSGS_PER_SEC | --window W] [--size BYTES]\n");
    exit(2);
}

static void parse_addr(const char *text)
{
    char host[256];
    const char *colon = strrchr(text, ':');
    if (colon == NULL || (size_t)(colon - text) >= sizeof host || cfg.naddr == 8)
        usage();
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai;
    if (getaddrinfo(host, colon + 1, &hints, &ai) != 0) {
        fprintf(stderr, "chat_fanout: cannot resolve %s\n", text);
        exit(2);
    }
    memcpy(&cfg.sa[cfg.naddr], ai->ai_addr, ai->ai_addrlen);
    cfg.salen[cfg.naddr++] = ai->ai_addrlen;
    freeaddrinfo(ai);
}

int main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"target", required_argument, NULL, 'T'}, {"addr", required_argument, NULL, 'a'},
        {"rate", required_argument, NULL, 'r'},   {"window", required_argument, NULL, 'w'},
        {"size", required_argument, NULL, 's'},   {NULL, 0, NULL, 0},
    };
    bool have_addr = false;
    int ch;
    while ((ch = getopt_long(argc, argv, "n:t:d:", lo, NULL)) != -1) {
        switch (ch) {
        case 'T': cfg.target = optarg; break;
        case 'a':
            parse_addr(optarg);
            have_addr = true;
            break;
        case 'n': cfg.n = (unsigned)atoi(optarg); break;
        case 't': cfg.t = (unsigned)atoi(optarg); break;
        case 'd': cfg.seconds = atof(optarg); break;
        case 'r': cfg.rate = atof(optarg); break;
        case 'w': cfg.window = (unsigned)atoi(optarg); break;
        case 's': cfg.size = (unsigned)atoi(optarg); break;
        default: usage();
        }
    }
    cfg.redis = strcmp(cfg.target, "redis") == 0;
    if (!have_addr || (!cfg.redis && strcmp(cfg.target, "chat") != 0) || cfg.n == 0 || cfg.t == 0 ||
        cfg.t > (1u << talker_of_seq_bits) || cfg.size > MAX_MSG || cfg.seconds <= 0)
        usage();
    if (cfg.rate <= 0 && cfg.window == 0)
        cfg.window = 16;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < cfg.n + cfg.t + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    peers = calloc(cfg.n + cfg.t, sizeof *peers);
    delivered = calloc(RING, sizeof *delivered);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (peers == NULL || delivered == NULL || ep < 0)
        die("setup");
    /* Receivers first, then talkers; every one watched for input (talkers
     * read and discard what they get: chat lines, PUBLISH replies). */
    for (unsigned i = 0; i < cfg.n + cfg.t; i++) {
        peer *p = &peers[i];
        p->fd = dial(i < cfg.n ? i : i - cfg.n);
        p->talker = i >= cfg.n;
        if (cfg.redis && !p->talker)
            send_all(p->fd, "SUBSCRIBE " CHANNEL "\r\n", strlen("SUBSCRIBE " CHANNEL "\r\n"));
        fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) | O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, p->fd, &ev) < 0)
            die("epoll_ctl");
    }
    /* Ready when every receiver has seen a sync probe (so every member has
     * joined the room / every subscription is active). */
    peer *t0 = &peers[cfg.n];
    uint64_t give_up = now_ns() + 60ull * 1000000000u;
    while (sync_seen_by < cfg.n) {
        if (now_ns() > give_up) {
            fprintf(stderr, "chat_fanout: only %llu of %u receivers ready after 60 s\n",
                    (unsigned long long)sync_seen_by, cfg.n);
            return 1;
        }
        queue_msg(t0, 0, now_ns());
        flush_talker(t0);
        uint64_t until = now_ns() + 100000000u;
        while (sync_seen_by < cfg.n && now_ns() < until)
            poll_once(10);
    }
    /* Let stragglers of the sync drain before measuring. */
    uint64_t settle = now_ns() + 200000000u;
    while (now_ns() < settle)
        poll_once(10);

    measuring = true;
    uint64_t start = now_ns(), end = start + (uint64_t)(cfg.seconds * 1e9);
    uint64_t interval = cfg.rate > 0 ? (uint64_t)(1e9 * cfg.t / cfg.rate) : 0;
    for (unsigned i = 0; i < cfg.t; i++)
        peers[cfg.n + i].next_at = start + interval * i / cfg.t;
    uint64_t sent = 0;
    while (now_ns() < end) {
        uint64_t now = now_ns();
        int timeout = 1;
        for (unsigned i = 0; i < cfg.t; i++) {
            peer *tk = &peers[cfg.n + i];
            if (cfg.rate > 0) {
                /* Open loop: every message due by now, however late, stamped
                 * with when it was due (no coordinated omission). */
                while (tk->next_at <= now && tk->out_len < sizeof tk->out - 2 * MAX_MSG) {
                    queue_msg(tk, (++tk->sent << talker_of_seq_bits) | i, tk->next_at);
                    tk->next_at += interval;
                    sent++;
                }
            } else {
                while (tk->inflight < cfg.window && tk->out_len < sizeof tk->out - 2 * MAX_MSG) {
                    queue_msg(tk, (++tk->sent << talker_of_seq_bits) | i, now_ns());
                    tk->inflight++;
                    sent++;
                }
                timeout = 0;
            }
            flush_talker(tk);
        }
        poll_once(timeout);
    }
    double secs = (double)(now_ns() - start) / 1e9;
    printf("target=%s receivers=%u talkers=%u size=%u %s=%g seconds=%.2f\n", cfg.target, cfg.n,
           cfg.t, cfg.size, cfg.rate > 0 ? "rate" : "window", cfg.rate > 0 ? cfg.rate : cfg.window,
           secs);
    printf("sent=%llu msgs/s=%.0f completed/s=%.0f deliveries/s=%.0f\n", (unsigned long long)sent,
           (double)sent / secs, (double)completed / secs, (double)deliveries / secs);
    printf("latency_us p50=%llu p90=%llu p99=%llu p99.9=%llu max=%llu\n",
           (unsigned long long)hist_pct(50), (unsigned long long)hist_pct(90),
           (unsigned long long)hist_pct(99), (unsigned long long)hist_pct(99.9),
           (unsigned long long)hist_max);
    return 0;
}
