/* uv_echo.c — a libuv raw echo server, for comparison only (libuv is a
 * benchmark-only dependency; libsockit never links it). Tuned the way a
 * careful libuv user would: one static 64 KiB read buffer (read_cb consumes
 * it before libuv asks for the next), uv_try_write straight from it, and only
 * a remainder the kernel did not take is copied into a write request, with
 * reading stopped until it is written (backpressure). TCP_NODELAY.
 *
 *     uv_echo ADDR        ADDR: PORT, HOST:PORT, unix:PATH (see ref.h)
 */
#include <uv.h>

#include "ref.h"

typedef union handle {
    uv_handle_t h;
    uv_stream_t s;
    uv_tcp_t tcp;
    uv_pipe_t pipe;
} handle;

typedef struct pending_write {
    uv_write_t req;
    uv_buf_t buf;
} pending_write;

static int is_unix;
static char slab[REF_READ_CHUNK];

static void on_closed(uv_handle_t *h) { free(h); }

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
    uv_stream_t *s = req->handle;
    free(req);
    if (status < 0) {
        if (!uv_is_closing((uv_handle_t *)s))
            uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    if (s->write_queue_size == 0 && !uv_is_closing((uv_handle_t *)s))
        uv_read_start(s, on_alloc, on_read);
}

/* Echoes data now if the kernel takes it; queues what it does not. */
static int echo(uv_stream_t *s, const char *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write(s, &b, 1);
    if (n == UV_EAGAIN)
        n = 0;
    if (n < 0)
        return n;
    if ((size_t)n == len)
        return 0;
    size_t rest = len - (size_t)n;
    pending_write *w = malloc(sizeof *w + rest);
    if (w == NULL)
        return UV_ENOMEM;
    memcpy(w + 1, data + n, rest);
    w->buf = uv_buf_init((char *)(w + 1), (unsigned)rest);
    int err = uv_write(&w->req, s, &w->buf, 1, on_written);
    if (err < 0) {
        free(w);
        return err;
    }
    uv_read_stop(s);
    return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0) {
        uv_close((uv_handle_t *)s, on_closed);
        return;
    }
    if (nread > 0 && echo(s, buf->base, (size_t)nread) < 0)
        uv_close((uv_handle_t *)s, on_closed);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    handle *c = malloc(sizeof *c);
    if (c == NULL)
        return;
    if (is_unix)
        uv_pipe_init(server->loop, &c->pipe, 0);
    else
        uv_tcp_init(server->loop, &c->tcp);
    if (uv_accept(server, &c->s) < 0) {
        uv_close(&c->h, on_closed);
        return;
    }
    if (!is_unix)
        uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start(&c->s, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: uv_echo ADDR\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ref_raise_nofile();
    ref_addr a;
    ref_parse(argv[1], &a);
    is_unix = a.is_unix;
    uv_loop_t *loop = uv_default_loop();
    handle server;
    int err;
    if (is_unix) {
        uv_pipe_init(loop, &server.pipe, 0);
        const char *path = ((struct sockaddr_un *)&a.ss)->sun_path;
        (void)unlink(path);
        err = uv_pipe_bind(&server.pipe, path);
    } else {
        uv_tcp_init(loop, &server.tcp);
        err = uv_tcp_bind(&server.tcp, (const struct sockaddr *)&a.ss, 0);
    }
    if (err == 0)
        err = uv_listen(&server.s, SOMAXCONN, on_connection);
    if (err < 0) {
        fprintf(stderr, "uv_echo: %s\n", uv_strerror(err));
        return 1;
    }
    uv_os_fd_t fd;
    uv_fileno(&server.h, &fd);
    ref_ready("uv_echo", fd);
    return uv_run(loop, UV_RUN_DEFAULT);
}
