/* ev_frame.c — a libevent bufferevent server that parses 4-byte big-endian
 * frames and echoes every complete frame, for comparison only (libevent is a
 * benchmark-only dependency). Written the way libevent is meant to be used
 * well: headers are peeked in place with evbuffer_copyout_from, and all the
 * complete frames of a read callback move to the output with one
 * evbuffer_remove_buffer (chains are handed over, not copied). Output over
 * 1 MiB pauses reading until it drains to 256 KiB. TCP_NODELAY; the
 * per-call read/write caps are raised to 64 KiB where libevent lets us:
 * libevent 2.1's evbuffer_read still reads at most 4 KiB per call
 * (EVBUFFER_MAX_READ), which is what this server is here to show.
 *
 *     ev_frame ADDR        ADDR: PORT, HOST:PORT, unix:PATH (see ref.h)
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "ref.h"

#define OUT_HIGH (1024u * 1024u)
#define OUT_LOW (256u * 1024u)

static int is_unix;

static void on_read(struct bufferevent *bev, void *arg)
{
    (void)arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t len = evbuffer_get_length(in), off = 0;
    struct evbuffer_ptr p;
    evbuffer_ptr_set(in, &p, 0, EVBUFFER_PTR_SET);
    while (len - off >= 4) {
        uint8_t h[4];
        if (evbuffer_copyout_from(in, &p, h, 4) != 4)
            break;
        uint32_t n = ref_be32(h);
        if (n > REF_MAX_FRAME) {
            bufferevent_free(bev);
            return;
        }
        if (len - off - 4 < n)
            break;
        off += 4 + (size_t)n;
        if (len - off >= 4 && evbuffer_ptr_set(in, &p, 4 + n, EVBUFFER_PTR_ADD) < 0)
            break;
    }
    if (off > 0)
        evbuffer_remove_buffer(in, out, off);
    if (evbuffer_get_length(out) > OUT_HIGH)
        bufferevent_disable(bev, EV_READ);
}

/* Output drained to the low-water mark: read again. */
static void on_write(struct bufferevent *bev, void *arg)
{
    (void)arg;
    if (!(bufferevent_get_enabled(bev) & EV_READ))
        bufferevent_enable(bev, EV_READ);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        bufferevent_free(bev);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    (void)sa;
    (void)salen;
    (void)arg;
    struct event_base *base = evconnlistener_get_base(l);
    if (!is_unix) {
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    struct bufferevent *bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        close(fd);
        return;
    }
    bufferevent_set_max_single_read(bev, REF_READ_CHUNK);
    bufferevent_set_max_single_write(bev, REF_READ_CHUNK);
    bufferevent_setcb(bev, on_read, on_write, on_event, NULL);
    bufferevent_setwatermark(bev, EV_WRITE, OUT_LOW, 0);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: ev_frame ADDR\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ref_raise_nofile();
    ref_addr a;
    ref_parse(argv[1], &a);
    is_unix = a.is_unix;
    int lfd = ref_bind(&a, SOCK_STREAM, 1);
    /* The changelist folds an event added and deleted again within one loop
     * iteration into at most one epoll_ctl (libevent's own advice for
     * speed on epoll). */
    struct event_config *cfg = event_config_new();
    if (cfg == NULL)
        return 1;
    event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    struct event_base *base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (base == NULL)
        return 1;
    struct evconnlistener *l =
        evconnlistener_new(base, on_accept, NULL, LEV_OPT_CLOSE_ON_FREE, -1, lfd);
    if (l == NULL) {
        fprintf(stderr, "ev_frame: evconnlistener_new failed\n");
        return 1;
    }
    ref_ready("ev_frame", lfd);
    return event_base_dispatch(base);
}
