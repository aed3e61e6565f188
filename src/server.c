/* server.c — listening sockets: bind (with the stale Unix socket check),
 * accept4 with the reserve-descriptor policy for EMFILE, --max-conns, and
 * graceful drain. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "internal.h"

/* How long accepting pauses after running out of descriptors: long enough
 * not to spin, short enough that service resumes promptly (nginx and libuv
 * do the same). */
#define ACCEPT_BACKOFF_MS 100
/* Resource problems are logged at most this often per server. */
#define LOG_INTERVAL_MS 1000
/* After the drain deadline, connections get this long to finish closing
 * before they are aborted. */
#define DRAIN_GRACE_MS 1000

/* TCP keepalive on every accepted TCP connection: a peer that vanished
 * without a FIN or RST (power loss, a NAT that forgot the flow) is found
 * after 60 s of silence plus 6 unanswered probes 10 s apart, about 2 minutes,
 * instead of holding its descriptor and buffers forever. */
#define KEEPALIVE_IDLE_S     60
#define KEEPALIVE_INTERVAL_S 10
#define KEEPALIVE_PROBES     6

struct sk_limit {
    atomic_uint count;
    unsigned max;
};

int sk_limit_new(unsigned max, sk_limit **out)
{
    sk_limit *l = malloc(sizeof *l);
    if (l == NULL)
        return -ENOMEM;
    atomic_init(&l->count, 0);
    l->max = max;
    *out = l;
    return 0;
}

unsigned sk_limit_count(const sk_limit *l)
{
    return atomic_load(&((sk_limit *)(uintptr_t)l)->count);
}
void sk_limit_free(sk_limit *l) { free(l); }

/* Takes one slot if the cap allows; a failed take leaves the count as is. */
static bool limit_take(sk_limit *l)
{
    unsigned n = atomic_load(&l->count);
    do {
        if (l->max && n >= l->max)
            return false;
    } while (!atomic_compare_exchange_weak(&l->count, &n, n + 1));
    return true;
}

struct sk_server {
    sk_watch w;
    sk_loop *loop;
    sk_server_opts opts;
    bool owns_fd;
    bool draining;
    bool tcp_inherit; /* the listener carries keepalive and TCP_NODELAY (see listener_tcp_opts) */
    int reserve_fd;
    int port;
    sk__unix_file unix_file; /* to remove at exit, if we made it */
    sk_list *conns;          /* its connections (sk__conn_srv_first/next) */
    unsigned nconns;
    sk_timer backoff;    /* re-enables accepting after EMFILE */
    sk__acl_log acl_log; /* sources refused by opts.acl lately */
    sk_timer drain_timer;
    int drain_stage;
    sk_server_drained_cb drained_cb;
    void *drained_ud;
    uint64_t last_emfile_log, last_maxconn_log;
    uint64_t shed;
    sk_list link; /* loop->servers */
};

void sk_server_opts_init(sk_server_opts *o)
{
    memset(o, 0, sizeof *o);
    sk_conn_opts_init(&o->conn);
    o->backlog = 511;
    o->listen_fd = -1;
}

static void accept_enable(sk_server *srv, bool on)
{
    if (srv->w.fd < 0)
        return;
    if (sk__watch_set(srv->loop, &srv->w, on ? EPOLLIN : 0) < 0)
        sk_log(SK_LOG_ERROR, "cannot watch the listening socket: %s", strerror(errno));
}

static void on_backoff(sk_timer *t, void *ud)
{
    (void)t;
    sk_server *srv = ud;
    if (srv->reserve_fd < 0)
        srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (!srv->draining)
        accept_enable(srv, true);
}

/* Out of descriptors: use the reserve to accept and close the pending peer
 * (so it is told at once instead of hanging in the backlog), then pause
 * accepting for a moment. Level-triggered epoll would otherwise report the
 * listener ready again immediately: a busy loop. */
static void out_of_descriptors(sk_server *srv, int err)
{
    if (srv->reserve_fd >= 0) {
        close(srv->reserve_fd);
        srv->reserve_fd = -1;
        int fd = accept4(srv->w.fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            close(fd);
            srv->shed++;
            sk__stat_add(SK__STAT_SHED, 1);
        }
        srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    accept_enable(srv, false);
    sk_timer_start(&srv->backoff, ACCEPT_BACKOFF_MS, 0);
    if (sk__log_due(&srv->last_emfile_log, srv->loop->now, LOG_INTERVAL_MS))
        sk_log(SK_LOG_WARN,
               "out of descriptors (%s): shedding new connections (%llu so far), "
               "retrying in %d ms",
               strerror(-err), (unsigned long long)srv->shed, ACCEPT_BACKOFF_MS);
}

/* Turns keepalive on for an accepted TCP socket; failure is harmless (the
 * connection works without it), so it is not reported. */
static void keepalive_on(int fd)
{
    int on = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTERVAL_S, cnt = KEEPALIVE_PROBES;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
}

/* Linux copies a listening socket's options into every socket it
 * accepts: keepalive and TCP_NODELAY set once here spare five setsockopt
 * calls per accepted connection. true when every one took. */
static bool listener_tcp_opts(int fd)
{
    int on = 1, idle = KEEPALIVE_IDLE_S, intvl = KEEPALIVE_INTERVAL_S, cnt = KEEPALIVE_PROBES;
    return setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) == 0 &&
           setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl) == 0 &&
           setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt) == 0 &&
           setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) == 0 &&
           setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == 0;
}

/* A source the access list refuses: closed before a byte is read, and
 * never counted as a connection (max-conns, stats.accepted). */
static void refuse_acl(sk_server *srv, int fd, const struct sockaddr *peer, socklen_t len)
{
    close(fd);
    sk__stat_add(SK__STAT_REFUSED_ACL, 1);
    if (sk__acl_log_due(&srv->acl_log, peer, len, srv->loop->now)) {
        char text[160];
        sk_log(SK_LOG_WARN, "%s%srefused %s: not allowed by the access list (--allow/--deny)",
               srv->opts.log_name ? srv->opts.log_name : "", srv->opts.log_name ? " " : "",
               sk_sockaddr_format(peer, len, text, sizeof text));
    }
}

static void accept_event(sk_watch *w, uint32_t events)
{
    (void)events;
    sk_server *srv = SK_CONTAINER_OF(w, sk_server, w);
    for (int i = 0; i < SK_ACCEPTS_PER_EVENT && !srv->draining; i++) {
        struct sockaddr_storage peer;
        socklen_t peerlen = sizeof peer;
        int fd = accept4(w->fd, (struct sockaddr *)&peer, &peerlen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            if (err == EAGAIN || err == EWOULDBLOCK)
                return;
            if (err == EINTR || err == ECONNABORTED || err == EPROTO)
                continue;
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
                out_of_descriptors(srv, -err);
                return;
            }
            sk_log(SK_LOG_ERROR, "accept: %s", strerror(err));
            accept_enable(srv, false);
            sk_timer_start(&srv->backoff, ACCEPT_BACKOFF_MS, 0);
            return;
        }
        if (srv->opts.acl && !sk_acl_allows(srv->opts.acl, (struct sockaddr *)&peer, peerlen)) {
            refuse_acl(srv, fd, (struct sockaddr *)&peer, peerlen);
            continue;
        }
        bool over = srv->opts.max_conns && srv->nconns >= srv->opts.max_conns;
        if (!over && srv->opts.limit && !limit_take(srv->opts.limit))
            over = true;
        if (over) {
            /* Refused cleanly: the peer sees an orderly close at once. */
            close(fd);
            srv->shed++;
            sk__stat_add(SK__STAT_REFUSED, 1);
            if (srv->opts.log_name) {
                char text[160];
                sk_log(SK_LOG_INFO, "%s close %s in=0 out=0 reason=max-conns reached",
                       srv->opts.log_name,
                       sk_sockaddr_format((struct sockaddr *)&peer, peerlen, text, sizeof text));
            }
            if (sk__log_due(&srv->last_maxconn_log, srv->loop->now, LOG_INTERVAL_MS))
                sk_log(SK_LOG_WARN, "max-conns (%u) reached: refusing new connections",
                       srv->opts.limit ? srv->opts.limit->max : srv->opts.max_conns);
            continue;
        }
        if (!srv->tcp_inherit && (peer.ss_family == AF_INET || peer.ss_family == AF_INET6)) {
            int one = 1;
            keepalive_on(fd);
            (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        sk_conn *c;
        int err = sk__conn_create(srv->loop, fd, &srv->opts.conn, &srv->opts.cbs, srv->opts.ud, srv,
                                  false, &c);
        if (err < 0) {
            close(fd);
            if (srv->opts.limit)
                atomic_fetch_sub(&srv->opts.limit->count, 1);
            if (err != -ENOBUFS) /* the TLS handshake budget: tls.c logs that, rate-limited */
                sk_log(SK_LOG_ERROR, "cannot set up a connection: %s", sk_strerror(err));
            continue;
        }
        sk__conn_set_peer(c, (struct sockaddr *)&peer, peerlen);
        sk__conn_link_srv(c, &srv->conns);
        srv->nconns++;
        sk__stat_add(SK__STAT_ACCEPTED, 1);
        /* A TLS connection opens (on_open) once its handshake is done. */
        if (srv->opts.cbs.on_open && !sk__conn_handshaking(c))
            srv->opts.cbs.on_open(c);
    }
}

/* A socket file already at path: replace it only if nobody answers there. */
static int clear_stale_unix(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket", path);
        return -EADDRINUSE;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    memcpy(sun.sun_path, path, strlen(path));
    int r = connect(fd, (struct sockaddr *)&sun, sizeof sun);
    int cerr = errno;
    close(fd);
    if (r == 0 || cerr == EAGAIN) {
        snprintf(err, errlen, "unix:%s: address already in use (a server is listening there)",
                 path);
        return -EADDRINUSE;
    }
    if (cerr != ECONNREFUSED) {
        snprintf(err, errlen, "cannot check the existing socket %s: %s", path, strerror(cerr));
        return -cerr;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        snprintf(err, errlen, "cannot remove the stale socket %s: %s", path, strerror(errno));
        return -errno;
    }
    return 0;
}

int sk__listen_open(const sk_addr *addr, int family, int backlog, bool reuseport,
                    sk__unix_file *made, char *err, size_t errlen)
{
    struct sockaddr_storage ss[8];
    socklen_t sl[8];
    made->path[0] = '\0';
    int n = sk_addr_resolve(addr, SK_RESOLVE_PASSIVE, ss, sl, 8, err, errlen);
    if (n < 0)
        return n;
    if (addr->kind == SK_ADDR_UNIX && !addr->abstract) {
        int e = clear_stale_unix(addr->path, err, errlen);
        if (e < 0)
            return e;
    }
    char text[200];
    int rc = -EADDRNOTAVAIL;
    if (family != AF_UNSPEC)
        snprintf(err, errlen, "%s has no %s address", addr->host,
                 family == AF_INET ? "IPv4" : "IPv6");
    for (int i = 0; i < n; i++) {
        if (family != AF_UNSPEC && ss[i].ss_family != family)
            continue;
        int fd = socket(ss[i].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            snprintf(err, errlen, "socket: %s", strerror(errno));
            continue;
        }
        int one = 1;
        if (ss[i].ss_family != AF_UNIX) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
            if (reuseport)
                setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
        }
        if (bind(fd, (struct sockaddr *)&ss[i], sl[i]) < 0 ||
            listen(fd, backlog > 0 ? backlog : 511) < 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot listen on %s: %s",
                     sk_sockaddr_format((struct sockaddr *)&ss[i], sl[i], text, sizeof text),
                     strerror(errno));
            close(fd);
            continue;
        }
        if (addr->kind == SK_ADDR_UNIX && !addr->abstract) {
            struct stat st;
            if (stat(addr->path, &st) == 0) {
                snprintf(made->path, sizeof made->path, "%s", addr->path);
                made->dev = st.st_dev;
                made->ino = st.st_ino;
            }
        }
        return fd;
    }
    return rc;
}

void sk__unix_file_remove(sk__unix_file *f)
{
    if (f->path[0]) {
        struct stat st;
        if (stat(f->path, &st) == 0 && st.st_dev == f->dev && st.st_ino == f->ino)
            unlink(f->path);
        f->path[0] = '\0';
    }
}

static int open_listener(sk_server *srv, const sk_addr *addr, char *err, size_t errlen)
{
    int fd = sk__listen_open(addr, AF_UNSPEC, srv->opts.backlog, srv->opts.reuseport != 0,
                             &srv->unix_file, err, errlen);
    if (fd < 0)
        return fd;
    srv->w.fd = fd;
    srv->owns_fd = true;
    return 0;
}

int sk_server_listen(sk_loop *loop, const sk_addr *addr, const sk_server_opts *opts,
                     sk_server **out, char *err, size_t errlen)
{
    char dummy[8];
    if (err == NULL) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    if (addr->kind != SK_ADDR_TCP && addr->kind != SK_ADDR_UNIX && addr->kind != SK_ADDR_TLS) {
        snprintf(err, errlen, "not a stream address (use HOST:PORT, tls://HOST:PORT or unix:PATH)");
        return -EPROTONOSUPPORT;
    }
    sk_server_opts defaults;
    if (opts == NULL) {
        sk_server_opts_init(&defaults);
        opts = &defaults;
    }
    /* tls:// is TCP with a server context in the stream options; without
     * one the listener would speak cleartext on a port announced as TLS. */
    if (addr->kind == SK_ADDR_TLS && opts->conn.tls == NULL) {
        snprintf(err, errlen, "a tls:// server needs a certificate and key (sk_conn_opts.tls)");
        return -EINVAL;
    }
    sk_server *srv = calloc(1, sizeof *srv);
    if (srv == NULL)
        return -ENOMEM;
    srv->loop = loop;
    srv->opts = *opts;
    sk__conn_opts_normalise(&srv->opts.conn);
    srv->w.fd = -1;
    srv->w.on_event = accept_event;
    srv->reserve_fd = -1;
    sk__timer_init(&srv->backoff, loop, on_backoff, srv);
    int rc;
    if (opts->listen_fd >= 0) {
        srv->w.fd = opts->listen_fd;
        srv->owns_fd = false; /* becomes ours only once the call succeeds */
        rc = sk__set_nonblock_cloexec(srv->w.fd) < 0 ? -errno : 0;
    } else {
        rc = open_listener(srv, addr, err, errlen);
    }
    if (rc < 0)
        goto fail;
    srv->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (srv->reserve_fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "cannot open the reserve descriptor: %s", strerror(errno));
        goto fail;
    }
    /* Workers sharing one listening socket (Unix) each wake on it; only one
     * of them is woken per connection with EPOLLEXCLUSIVE. */
    struct epoll_event ev = {.events = EPOLLIN | (opts->listen_fd >= 0 ? EPOLLEXCLUSIVE : 0),
                             .data.ptr = &srv->w};
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, srv->w.fd, &ev) < 0) {
        rc = -errno;
        snprintf(err, errlen, "epoll: %s", strerror(errno));
        goto fail;
    }
    srv->w.events = EPOLLIN;
    srv->owns_fd = true;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(srv->w.fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            srv->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        else if (ss.ss_family == AF_INET6)
            srv->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6)
            srv->tcp_inherit = listener_tcp_opts(srv->w.fd);
    }
    sk__list_push(&loop->servers, &srv->link);
    loop->refs++;
    *out = srv;
    return 0;
fail:
    if (srv->reserve_fd >= 0)
        close(srv->reserve_fd);
    if (srv->owns_fd && srv->w.fd >= 0) {
        close(srv->w.fd);
        if (srv->unix_file.path[0])
            unlink(srv->unix_file.path);
    }
    free(srv);
    return rc;
}

int sk_server_fd(const sk_server *srv) { return srv->w.fd; }
int sk_server_port(const sk_server *srv) { return srv->port; }
unsigned sk_server_conn_count(const sk_server *srv) { return srv->nconns; }

/* Closes the listening socket (if ours) and removes the Unix socket file if
 * it is still the one we created. */
static void close_listener(sk_server *srv)
{
    if (srv->w.fd < 0)
        return;
    sk__watch_del(srv->loop, &srv->w);
    close(srv->w.fd);
    srv->w.fd = -1;
    sk__unix_file_remove(&srv->unix_file);
}

static void drain_check(sk_server *srv)
{
    if (!srv->draining || srv->nconns > 0 || srv->drain_stage == 3)
        return;
    srv->drain_stage = 3;
    sk_timer_stop(&srv->drain_timer);
    if (srv->drained_cb)
        srv->drained_cb(srv, srv->drained_ud);
}

static void on_drain_timer(sk_timer *t, void *ud)
{
    (void)t;
    sk_server *srv = ud;
    if (srv->drain_stage == 1) {
        /* Deadline: ask every connection to close gracefully... */
        srv->drain_stage = 2;
        for (sk_conn *c = sk__conn_srv_first(srv->conns); c; c = sk__conn_srv_next(c))
            sk_conn_fail(c, -ESHUTDOWN, "server shutting down");
        sk_timer_start(&srv->drain_timer, DRAIN_GRACE_MS, 0);
    } else if (srv->drain_stage == 2) {
        /* ...and abort whatever still has not finished. */
        for (sk_conn *c = sk__conn_srv_first(srv->conns); c; c = sk__conn_srv_next(c))
            sk_conn_abort(c, -ESHUTDOWN);
    }
}

void sk_server_drain(sk_server *srv, int timeout_ms, sk_server_drained_cb done, void *ud)
{
    if (srv->draining)
        return;
    srv->draining = true;
    srv->drained_cb = done;
    srv->drained_ud = ud;
    sk_timer_stop(&srv->backoff);
    close_listener(srv);
    sk__timer_init(&srv->drain_timer, srv->loop, on_drain_timer, srv);
    srv->drain_timer.internal = false; /* keeps the loop alive while draining */
    srv->drain_stage = 1;
    if (timeout_ms >= 0)
        sk_timer_start(&srv->drain_timer, (uint64_t)timeout_ms, 0);
    drain_check(srv);
}

void sk__server_conn_gone(sk_server *srv, sk_conn *c)
{
    sk__conn_unlink_srv(c, &srv->conns);
    srv->nconns--;
    sk__stat_add(SK__STAT_CLOSED, 1);
    if (srv->opts.limit)
        atomic_fetch_sub(&srv->opts.limit->count, 1);
    drain_check(srv);
}

void sk_server_free(sk_server *srv)
{
    if (srv == NULL)
        return;
    sk_loop *loop = srv->loop;
    srv->drained_cb = NULL;
    srv->draining = true;
    srv->drain_stage = 3;
    while (srv->conns) {
        sk_conn *c = sk__conn_srv_first(srv->conns);
        sk_conn_abort(c, -ECONNABORTED); /* records the reason if none yet */
        sk__conn_destroy(c, true);
    }
    close_listener(srv);
    sk_timer_stop(&srv->backoff);
    if (srv->drain_timer.loop)
        sk_timer_stop(&srv->drain_timer);
    if (srv->reserve_fd >= 0)
        close(srv->reserve_fd);
    sk__list_remove(&loop->servers, &srv->link);
    loop->refs--;
    free(srv);
}

void sk__servers_free_all(sk_loop *loop)
{
    while (loop->servers) {
        sk_server *srv = SK_LIST_ITEM(loop->servers, sk_server, link);
        while (srv->conns)
            sk__conn_destroy(sk__conn_srv_first(srv->conns), false);
        sk_server_free(srv);
    }
}
