/* dgram.c — datagram endpoints (udp://, unixgram:): receive in batches with
 * recvmmsg, send queued replies in batches with sendmmsg, drop truncated
 * datagrams, never queue without bound; on request (sk_dgram_guard) refuse
 * datagrams an answering service must not answer. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* Datagrams per recvmmsg call, and batches per readiness event. */
#define RX_BATCH  16
#define RX_ROUNDS 4
/* One byte more than the largest datagram we accept, so that a datagram one
 * byte too large is seen as such and not silently delivered. */
#define RX_SLOT (SK_DGRAM_MAX + 1)
/* Replies waiting for the next sendmmsg: a fixed number and a fixed arena,
 * so a flood of requests cannot make the queue grow. */
#define TX_SLOTS 32
#define TX_ARENA (256u * 1024u)
/* UDP generic segmentation offload (Linux 4.18): consecutive replies to one
 * peer leave as one send of up to GSO_MAX_SEGS datagrams, which the kernel
 * cuts apart only at the end of its send path. */
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#define GSO_MAX_SEGS  64
#define GSO_MAX_BYTES 65000u
/* The reply guard's table of recent sources: a fixed size, so a flood from
 * many (spoofed) sources costs no memory; it is set-associative, and the
 * least recently seen source of a set is forgotten first, so a steady flooder
 * keeps its entry (and its count) while one-off senders come and go. */
#define GUARD_SLOTS 256
#define GUARD_WAYS  4
/* Window of the per-source rate: counts of this second and the previous
 * one, the previous weighted by how much of it still overlaps the last
 * second (a sliding window without a log of times). */
#define GUARD_WINDOW_MS 1000u
/* Ancillary data of one received datagram: its destination address
 * (IP_PKTINFO or IPV6_PKTINFO; room for both). */
#define RX_CTL (CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(struct in_pktinfo)))

struct guard_slot {
    uint64_t key;       /* keyed hash of the source address and port */
    uint64_t seen;      /* loop time of the last datagram; 0: slot unused */
    uint64_t win_start; /* start of the current window */
    uint32_t prev, cur; /* datagrams let through in the previous, current window */
};

typedef struct dgram_guard {
    unsigned rate; /* datagrams per second per source; 0: no limit */
    uint64_t seed; /* hash key: sources cannot be chosen to collide */
    uint64_t last_log;
    bool bound_ip;     /* bound to one address (not a wildcard) */
    uint8_t bound[16]; /* that address, IPv4 as ::ffff:a.b.c.d */
    struct guard_slot slot[GUARD_SLOTS];
} dgram_guard;

struct sk_dgram {
    sk_watch w;
    sk_loop *loop;
    sk_dgram_cb cb;
    void *ud;
    bool connected;
    bool in_flush;
    bool gso; /* UDP socket, and segmentation offload has not failed on it */
    int port;
    uint64_t dropped, truncated, last_trunc_log;
    uint64_t refused;    /* by the guard */
    dgram_guard *guard;  /* sk_dgram_guard; NULL: every datagram is delivered */
    const sk_acl *acl;   /* sources to drop (sk_dgram_set_acl) */
    sk__acl_log acl_log; /* ... and which of them were logged lately */
    char unix_path[SK_ADDR_PATH_MAX + 1];
    dev_t unix_dev;
    ino_t unix_ino;
    uint8_t *rx;
    struct mmsghdr rmsg[RX_BATCH];
    struct iovec riov[RX_BATCH];
    struct sockaddr_storage raddr[RX_BATCH];
    struct {
        _Alignas(struct cmsghdr) char buf[RX_CTL];
    } rctl[RX_BATCH]; /* used with a guard only */
    uint8_t *tx;
    size_t tx_used;
    int ntx;
    struct mmsghdr smsg[TX_SLOTS];
    struct iovec siov[TX_SLOTS];
    struct sockaddr_storage saddr[TX_SLOTS];
    /* The same replies grouped for segmentation offload. */
    struct mmsghdr gmsg[TX_SLOTS];
    struct iovec giov[TX_SLOTS];
    int gcount[TX_SLOTS];
    struct {
        _Alignas(size_t) char buf[CMSG_SPACE(sizeof(uint16_t))]; /* cmsghdr's alignment */
    } gctl[TX_SLOTS];
    sk_list link; /* loop->dgrams */
    struct sk_dgram *flush_next;
};

/* Replies the socket would not take: lossy by nature, but counted. */
static void count_dropped(sk_dgram *d, uint64_t n)
{
    d->dropped += n;
    sk__stat_add(SK__STAT_DGRAM_DROPPED, n);
}

/* Sends queued replies first..ntx-1 one datagram per message. */
static void flush_plain(sk_dgram *d, int first)
{
    int done = first;
    while (done < d->ntx) {
        int n = sendmmsg(d->w.fd, d->smsg + done, (unsigned)(d->ntx - done), MSG_DONTWAIT);
        if (n > 0) {
            done += n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
            /* The socket buffer is full: datagrams are lossy, so drop the
             * rest rather than hold them (and their memory) for later. */
            count_dropped(d, (uint64_t)(d->ntx - done));
            break;
        }
        /* This one datagram failed (e.g. ECONNREFUSED from an earlier ICMP
         * error, or a peer whose unixgram socket is gone): skip it. */
        count_dropped(d, 1);
        done++;
    }
}

static bool same_peer(const struct msghdr *a, const struct msghdr *b)
{
    return a->msg_namelen == b->msg_namelen &&
           (a->msg_namelen == 0 || memcmp(a->msg_name, b->msg_name, a->msg_namelen) == 0);
}

/* Groups runs of replies to one peer (each no longer than the first, only
 * the last shorter, adjacent in the arena) into one message with a
 * UDP_SEGMENT size; returns the number of messages. */
static int group_for_gso(sk_dgram *d)
{
    int ng = 0;
    for (int i = 0; i < d->ntx;) {
        size_t seg = d->siov[i].iov_len, total = seg;
        int j = i + 1;
        while (seg > 0 && j < d->ntx && j - i < GSO_MAX_SEGS) {
            size_t len = d->siov[j].iov_len;
            if (len == 0 || len > seg || total + len > GSO_MAX_BYTES ||
                (uint8_t *)d->siov[j].iov_base !=
                    (uint8_t *)d->siov[j - 1].iov_base + d->siov[j - 1].iov_len ||
                !same_peer(&d->smsg[i].msg_hdr, &d->smsg[j].msg_hdr))
                break;
            total += len;
            j++;
            if (len < seg)
                break;
        }
        struct msghdr *h = &d->gmsg[ng].msg_hdr;
        memset(h, 0, sizeof *h);
        h->msg_name = d->smsg[i].msg_hdr.msg_name;
        h->msg_namelen = d->smsg[i].msg_hdr.msg_namelen;
        d->giov[ng] = (struct iovec){.iov_base = d->siov[i].iov_base, .iov_len = total};
        h->msg_iov = &d->giov[ng];
        h->msg_iovlen = 1;
        if (j - i > 1) {
            h->msg_control = d->gctl[ng].buf;
            h->msg_controllen = sizeof d->gctl[ng].buf;
            struct cmsghdr *cm = CMSG_FIRSTHDR(h);
            cm->cmsg_level = IPPROTO_UDP;
            cm->cmsg_type = UDP_SEGMENT;
            cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
            uint16_t size = (uint16_t)seg;
            memcpy(CMSG_DATA(cm), &size, sizeof size);
        }
        d->gcount[ng] = j - i;
        ng++;
        i = j;
    }
    return ng;
}

static void dgram_flush(sk_dgram *d)
{
    int ng = d->gso && d->ntx > 1 ? group_for_gso(d) : d->ntx;
    if (ng == d->ntx) {
        flush_plain(d, 0);
    } else {
        int done = 0, first = 0; /* messages sent; their first datagram */
        while (done < ng) {
            int n = sendmmsg(d->w.fd, d->gmsg + done, (unsigned)(ng - done), MSG_DONTWAIT);
            if (n > 0) {
                for (int k = 0; k < n; k++)
                    first += d->gcount[done + k];
                done += n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
                count_dropped(d, (uint64_t)(d->ntx - first));
                break;
            }
            if (d->gmsg[done].msg_hdr.msg_controllen != 0) {
                /* The route cannot segment (a device without checksum
                 * offload, a segment over its MTU): send the rest one by
                 * one, and do not try again on this socket. */
                d->gso = false;
                flush_plain(d, first);
                break;
            }
            count_dropped(d, 1);
            first += d->gcount[done];
            done++;
        }
    }
    d->ntx = 0;
    d->tx_used = 0;
}

static void schedule_flush(sk_dgram *d)
{
    if (d->in_flush)
        return;
    d->in_flush = true;
    d->flush_next = d->loop->dgram_flush;
    d->loop->dgram_flush = d;
}

void sk__dgrams_flush(sk_loop *loop)
{
    while (loop->dgram_flush) {
        sk_dgram *d = loop->dgram_flush;
        loop->dgram_flush = d->flush_next;
        d->in_flush = false;
        if (d->ntx > 0)
            dgram_flush(d);
    }
}

int sk_dgram_send(sk_dgram *d, const void *data, size_t len, const struct sockaddr *peer,
                  socklen_t peerlen)
{
    if (len > SK_DGRAM_MAX)
        return -EMSGSIZE;
    if (peer != NULL && peerlen > sizeof(struct sockaddr_storage))
        return -EINVAL;
    if (d->ntx == TX_SLOTS || d->tx_used + len > TX_ARENA)
        dgram_flush(d);
    if (d->tx == NULL) {
        d->tx = malloc(TX_ARENA);
        if (d->tx == NULL)
            return -ENOMEM;
    }
    int i = d->ntx++;
    uint8_t *p = d->tx + d->tx_used;
    if (len)
        memcpy(p, data, len);
    d->tx_used += len;
    d->siov[i].iov_base = p;
    d->siov[i].iov_len = len;
    memset(&d->smsg[i], 0, sizeof d->smsg[i]);
    d->smsg[i].msg_hdr.msg_iov = &d->siov[i];
    d->smsg[i].msg_hdr.msg_iovlen = 1;
    if (peer != NULL) {
        memcpy(&d->saddr[i], peer, peerlen);
        d->smsg[i].msg_hdr.msg_name = &d->saddr[i];
        d->smsg[i].msg_hdr.msg_namelen = peerlen;
    }
    schedule_flush(d);
    return 0;
}

/* ---- the reply guard (sk_dgram_guard) ---- */

/* The IP address and port of sa, IPv4 written as ::ffff:a.b.c.d so that a
 * dual-stack socket's two forms compare equal; false if sa is not IP. */
static bool ip_of(const struct sockaddr *sa, socklen_t len, uint8_t out[16], uint16_t *port)
{
    if (sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        memset(out, 0, 10);
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &in->sin_addr, 4);
        *port = ntohs(in->sin_port);
        return true;
    }
    if (sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        memcpy(out, &in6->sin6_addr, 16);
        *port = ntohs(in6->sin6_port);
        return true;
    }
    return false;
}

static bool is_loopback(const uint8_t a[16])
{
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (memcmp(a, v4mapped, 12) == 0)
        return a[12] == 127;
    return memcmp(a, &in6addr_loopback, 16) == 0;
}

/* The destination address of a received datagram, from its IP_PKTINFO or
 * IPV6_PKTINFO; false if the kernel gave none. */
static bool dest_of(struct msghdr *h, uint8_t out[16])
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(h); cm != NULL; cm = CMSG_NXTHDR(h, cm)) {
        if (cm->cmsg_level == IPPROTO_IP && cm->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(cm), sizeof pi);
            memset(out, 0, 10);
            out[10] = out[11] = 0xff;
            memcpy(out + 12, &pi.ipi_addr, 4);
            return true;
        }
        if (cm->cmsg_level == IPPROTO_IPV6 && cm->cmsg_type == IPV6_PKTINFO) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(cm), sizeof pi);
            memcpy(out, &pi.ipi6_addr, 16);
            return true;
        }
    }
    return false;
}

/* FNV-1a from a secret start, then a 64-bit finaliser (splitmix64): enough
 * to spread sources over the table without letting a sender pick sources
 * that share one entry. */
static uint64_t guard_hash(uint64_t seed, const void *p, size_t len)
{
    const uint8_t *b = p;
    uint64_t h = seed ^ 0xcbf29ce484222325u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 0x100000001b3u;
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9u;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebu;
    return h ^ (h >> 31);
}

/* Counts one datagram from the source with key k; false if the source is
 * already at the rate for the last second. */
static bool guard_rate_ok(dgram_guard *g, uint64_t k, uint64_t now)
{
    struct guard_slot *set = &g->slot[(k >> 32) % (GUARD_SLOTS / GUARD_WAYS) * GUARD_WAYS];
    struct guard_slot *e = &set[0];
    for (int i = 0; i < GUARD_WAYS; i++) {
        if (set[i].seen != 0 && set[i].key == k) {
            e = &set[i];
            break;
        }
        if (set[i].seen < e->seen)
            e = &set[i];
    }
    if (e->seen == 0 || e->key != k)
        *e = (struct guard_slot){.key = k, .win_start = now};
    e->seen = now > 0 ? now : 1;
    uint64_t elapsed = now - e->win_start;
    if (elapsed >= 2 * GUARD_WINDOW_MS) {
        e->prev = e->cur = 0;
        e->win_start = now;
        elapsed = 0;
    } else if (elapsed >= GUARD_WINDOW_MS) {
        e->prev = e->cur;
        e->cur = 0;
        e->win_start += GUARD_WINDOW_MS;
        elapsed -= GUARD_WINDOW_MS;
    }
    uint64_t overlap = (uint64_t)e->prev * (GUARD_WINDOW_MS - elapsed) / GUARD_WINDOW_MS;
    if (overlap + e->cur >= g->rate)
        return false;
    e->cur++;
    return true;
}

/* Why the guard refuses datagram h, or NULL to deliver it. */
static const char *guard_check(sk_dgram *d, struct msghdr *h, uint64_t now)
{
    dgram_guard *g = d->guard;
    uint8_t src[16], dst[16];
    uint16_t port = 0;
    uint64_t k;
    if (ip_of(h->msg_name, h->msg_namelen, src, &port)) {
        /* Echo, daytime, chargen, DNS, NTP...: a spoofed request "from"
         * one of them makes two services answer each other forever; a
         * client's port is never below 1024 (nor 0). */
        if (port < 1024)
            return "its source port is below 1024";
        /* Our own address and port: one spoofed datagram would come back
         * to us for ever. A wildcard bind has many own addresses: the
         * datagram's destination is the one it used. */
        if (port == d->port &&
            (is_loopback(src) || (g->bound_ip && memcmp(src, g->bound, 16) == 0) ||
             (dest_of(h, dst) && memcmp(src, dst, 16) == 0)))
            return "its source is this endpoint";
        uint8_t key[18];
        memcpy(key, src, 16);
        key[16] = (uint8_t)(port >> 8);
        key[17] = (uint8_t)port;
        k = guard_hash(g->seed, key, sizeof key);
    } else {
        k = guard_hash(g->seed, h->msg_name, h->msg_namelen);
    }
    if (g->rate > 0 && !guard_rate_ok(g, k, now))
        return "its source is over the reply rate";
    return NULL;
}

/* Drops datagram h if the guard refuses it: counted, logged at most once
 * a second. True if dropped. */
static bool guard_drops(sk_dgram *d, struct msghdr *h)
{
    const char *why = guard_check(d, h, d->loop->now);
    if (why == NULL)
        return false;
    d->refused++;
    sk__stat_add(SK__STAT_DGRAM_DROPPED, 1);
    if (sk__log_due(&d->guard->last_log, d->loop->now, 1000)) {
        char peer[160];
        sk_log(SK_LOG_WARN, "udp port %d: dropped a datagram from %s: %s (%llu dropped so far)",
               d->port, sk_sockaddr_format(h->msg_name, h->msg_namelen, peer, sizeof peer), why,
               (unsigned long long)d->refused);
    }
    return true;
}

/* A datagram from a source the access list refuses: dropped unread by
 * the service, counted, logged sparingly. */
static void drop_refused(sk_dgram *d, const struct sockaddr *from, socklen_t len)
{
    sk__stat_add(SK__STAT_REFUSED_ACL, 1);
    if (sk__acl_log_due(&d->acl_log, from, len, d->loop->now)) {
        char peer[160];
        sk_log(SK_LOG_WARN,
               "dropped a datagram from %s: not allowed by the access list "
               "(--allow/--deny)",
               sk_sockaddr_format(from, len, peer, sizeof peer));
    }
}

static void dgram_event(sk_watch *w, uint32_t events)
{
    (void)events;
    sk_dgram *d = SK_CONTAINER_OF(w, sk_dgram, w);
    for (int round = 0; round < RX_ROUNDS; round++) {
        for (int i = 0; i < RX_BATCH; i++) {
            d->riov[i].iov_base = d->rx + (size_t)i * RX_SLOT;
            d->riov[i].iov_len = RX_SLOT;
            memset(&d->rmsg[i].msg_hdr, 0, sizeof d->rmsg[i].msg_hdr);
            d->rmsg[i].msg_hdr.msg_iov = &d->riov[i];
            d->rmsg[i].msg_hdr.msg_iovlen = 1;
            d->rmsg[i].msg_hdr.msg_name = &d->raddr[i];
            d->rmsg[i].msg_hdr.msg_namelen = sizeof d->raddr[i];
            if (d->guard != NULL) {
                d->rmsg[i].msg_hdr.msg_control = d->rctl[i].buf;
                d->rmsg[i].msg_hdr.msg_controllen = sizeof d->rctl[i].buf;
            }
        }
        int n = recvmmsg(w->fd, d->rmsg, RX_BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* EAGAIN: drained. ECONNREFUSED on a connected endpoint reports
             * an earlier ICMP error: nothing to deliver. */
            break;
        }
        for (int i = 0; i < n && d->w.events != 0; i++) {
            struct msghdr *h = &d->rmsg[i].msg_hdr;
            size_t len = d->rmsg[i].msg_len;
            if ((h->msg_flags & MSG_TRUNC) || len > SK_DGRAM_MAX) {
                d->truncated++;
                sk__stat_add(SK__STAT_DGRAM_DROPPED, 1);
                if (sk__log_due(&d->last_trunc_log, d->loop->now, 1000)) {
                    char peer[160];
                    sk_log(SK_LOG_WARN,
                           "dropped a datagram from %s larger than %d bytes "
                           "(%llu so far)",
                           sk_sockaddr_format(h->msg_name, h->msg_namelen, peer, sizeof peer),
                           SK_DGRAM_MAX, (unsigned long long)d->truncated);
                }
                continue;
            }
            if (d->acl && !sk_acl_allows(d->acl, h->msg_name, h->msg_namelen)) {
                drop_refused(d, h->msg_name, h->msg_namelen);
                continue;
            }
            if (d->guard != NULL && guard_drops(d, h))
                continue;
            d->cb(d, d->rx + (size_t)i * RX_SLOT, len, h->msg_name, h->msg_namelen, d->ud);
        }
        if (n < RX_BATCH || d->w.events == 0)
            break;
    }
    if (d->ntx > 0 && d->w.events != 0)
        dgram_flush(d);
}

static int bind_or_connect(sk_dgram *d, const sk_addr *addr, int do_bind, char *err, size_t errlen)
{
    struct sockaddr_storage ss[8];
    socklen_t sl[8];
    int n = sk_addr_resolve(addr, do_bind ? SK_RESOLVE_PASSIVE : 0, ss, sl, 8, err, errlen);
    if (n < 0)
        return n;
    char text[200];
    int rc = -EADDRNOTAVAIL;
    for (int i = 0; i < n; i++) {
        int fd = socket(ss[i].ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            snprintf(err, errlen, "socket: %s", strerror(errno));
            continue;
        }
        int r;
        if (do_bind) {
            if (addr->kind == SK_ADDR_UNIXGRAM && !addr->abstract) {
                /* A datagram socket file cannot be probed for a listener the
                 * way a stream one can; replace it only if it is a socket. */
                struct stat st;
                if (lstat(addr->path, &st) == 0) {
                    if (!S_ISSOCK(st.st_mode)) {
                        snprintf(err, errlen, "%s exists and is not a socket", addr->path);
                        close(fd);
                        return -EADDRINUSE;
                    }
                    /* connect() on a datagram socket succeeds only if a
                     * socket is bound there: a live server is never
                     * replaced, a stale file is. */
                    int probe = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
                    int live = probe >= 0 && connect(probe, (struct sockaddr *)&ss[i], sl[i]) == 0;
                    if (probe >= 0)
                        close(probe);
                    if (live) {
                        snprintf(err, errlen,
                                 "unixgram:%s: address already in use (a server is bound there)",
                                 addr->path);
                        close(fd);
                        return -EADDRINUSE;
                    }
                    unlink(addr->path);
                }
            }
            r = bind(fd, (struct sockaddr *)&ss[i], sl[i]);
        } else {
            r = 0;
            if (addr->kind == SK_ADDR_UNIXGRAM) {
                /* Autobind an abstract name so the server can answer us. */
                struct sockaddr_un me = {.sun_family = AF_UNIX};
                r = bind(fd, (struct sockaddr *)&me, sizeof(sa_family_t));
            }
            if (r == 0)
                r = connect(fd, (struct sockaddr *)&ss[i], sl[i]);
        }
        if (r < 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot %s %s: %s", do_bind ? "bind" : "connect to",
                     sk_sockaddr_format((struct sockaddr *)&ss[i], sl[i], text, sizeof text),
                     strerror(errno));
            close(fd);
            continue;
        }
        d->w.fd = fd;
        return 0;
    }
    return rc;
}

/* The body of sk_dgram_bind and sk_dgram_connect: do_bind says which. */
static int dgram_open(sk_loop *loop, const sk_addr *addr, int do_bind, sk_dgram_cb cb, void *ud,
                      sk_dgram **out, char *err, size_t errlen)
{
    char dummy[8];
    if (err == NULL) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (addr->kind != SK_ADDR_UDP && addr->kind != SK_ADDR_UNIXGRAM) {
        snprintf(err, errlen, "not a datagram address (use udp://HOST:PORT or unixgram:PATH)");
        return -EPROTONOSUPPORT;
    }
    sk_dgram *d = calloc(1, sizeof *d);
    if (d == NULL)
        return -ENOMEM;
    d->rx = malloc((size_t)RX_BATCH * RX_SLOT);
    if (d->rx == NULL) {
        free(d);
        return -ENOMEM;
    }
    d->loop = loop;
    d->cb = cb;
    d->ud = ud;
    d->connected = !do_bind;
    d->gso = addr->kind == SK_ADDR_UDP;
    d->w.fd = -1;
    d->w.on_event = dgram_event;
    int rc = bind_or_connect(d, addr, do_bind, err, errlen);
    if (rc < 0)
        goto fail;
    rc = sk__watch_set(loop, &d->w, EPOLLIN);
    if (rc < 0) {
        snprintf(err, errlen, "epoll: %s", sk_strerror(rc));
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(d->w.fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            d->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            d->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    if (do_bind && addr->kind == SK_ADDR_UNIXGRAM && !addr->abstract) {
        struct stat st;
        if (stat(addr->path, &st) == 0) {
            snprintf(d->unix_path, sizeof d->unix_path, "%s", addr->path);
            d->unix_dev = st.st_dev;
            d->unix_ino = st.st_ino;
        }
    }
    sk__list_push(&loop->dgrams, &d->link);
    loop->refs++;
    *out = d;
    return 0;
fail:
    if (d->w.fd >= 0)
        close(d->w.fd);
    free(d->rx);
    free(d);
    return rc;
}

int sk_dgram_bind(sk_loop *loop, const sk_addr *addr, sk_dgram_cb cb, void *ud, sk_dgram **out,
                  char *err, size_t errlen)
{
    return dgram_open(loop, addr, 1, cb, ud, out, err, errlen);
}

int sk_dgram_connect(sk_loop *loop, const sk_addr *addr, sk_dgram_cb cb, void *ud, sk_dgram **out,
                     char *err, size_t errlen)
{
    return dgram_open(loop, addr, 0, cb, ud, out, err, errlen);
}

int sk_dgram_fd(const sk_dgram *d) { return d->w.fd; }
void sk_dgram_set_acl(sk_dgram *d, const sk_acl *acl) { d->acl = acl; }
int sk_dgram_port(const sk_dgram *d) { return d->port; }
uint64_t sk_dgram_dropped(const sk_dgram *d) { return d->dropped + d->truncated + d->refused; }

/* Asks for each datagram's destination address: with a wildcard bind it is
 * the only way to know which of our addresses a datagram was sent to. */
static int want_pktinfo(int fd, int family)
{
    int on = 1;
    int r = family == AF_INET6 ? setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on)
                               : setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
    return r < 0 ? -errno : 0;
}

int sk_dgram_guard(sk_dgram *d, unsigned rate)
{
    if (d->guard != NULL) {
        d->guard->rate = rate;
        return 0;
    }
    dgram_guard *g = calloc(1, sizeof *g);
    if (g == NULL)
        return -ENOMEM;
    g->rate = rate;
    if (getrandom(&g->seed, sizeof g->seed, GRND_NONBLOCK) != (ssize_t)sizeof g->seed)
        g->seed = sk__now_ms() ^ ((uint64_t)(uintptr_t)g << 16) ^ (uint64_t)getpid();
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    uint16_t port;
    if (getsockname(d->w.fd, (struct sockaddr *)&ss, &sl) == 0 &&
        ip_of((struct sockaddr *)&ss, sl, g->bound, &port)) {
        static const uint8_t any4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0};
        g->bound_ip = memcmp(g->bound, &in6addr_any, 16) != 0 && memcmp(g->bound, any4, 16) != 0;
        int rc = want_pktinfo(d->w.fd, ss.ss_family);
        if (rc < 0) {
            free(g);
            return rc;
        }
    }
    d->guard = g;
    return 0;
}

static void dgram_destroy(sk_watch *w)
{
    sk_dgram *d = SK_CONTAINER_OF(w, sk_dgram, w);
    close(d->w.fd);
    free(d->rx);
    free(d->tx);
    free(d->guard);
    free(d);
}

void sk_dgram_free(sk_dgram *d)
{
    if (d == NULL)
        return;
    sk_loop *loop = d->loop;
    if (d->ntx > 0)
        dgram_flush(d);
    if (d->in_flush) {
        for (sk_dgram **pp = &loop->dgram_flush; *pp; pp = &(*pp)->flush_next)
            if (*pp == d) {
                *pp = d->flush_next;
                break;
            }
        d->in_flush = false;
    }
    if (d->unix_path[0]) {
        struct stat st;
        if (stat(d->unix_path, &st) == 0 && st.st_dev == d->unix_dev && st.st_ino == d->unix_ino)
            unlink(d->unix_path);
    }
    sk__list_remove(&loop->dgrams, &d->link);
    loop->refs--;
    d->w.destroy = dgram_destroy;
    sk__watch_dispose(loop, &d->w);
}

void sk__dgrams_free_all(sk_loop *loop)
{
    while (loop->dgrams)
        sk_dgram_free(SK_LIST_ITEM(loop->dgrams, sk_dgram, link));
}
