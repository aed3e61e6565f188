/* uv_frame.c — a libuv server that parses 4-byte big-endian frames and
 * echoes every complete frame whole, for comparison only (libuv is a
 * benchmark-only dependency). Tuned like uv_echo.c: reads land in one static
 * 64 KiB buffer unless a partial frame is carried, in which case libuv reads
 * straight behind it; all complete frames of a read go back with one
 * uv_try_write; only an unsent remainder is copied, and reading stops until
 * it is written. TCP_NODELAY.
 *
 *     uv_frame ADDR        ADDR: PORT, HOST:PORT, unix:PATH (see ref.h)
 */
#include <uv.h>

#include "ref.h"

typedef struct conn {
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } u;
    uint8_t *in; /* carried partial frame, NULL when none */
    uint32_t in_len, in_cap;
} conn;

typedef struct pending_write {
    uv_write_t req;
    uv_buf_t buf;
} pending_write;

static int is_unix;
static char slab[REF_READ_CHUNK];

static void on_closed(uv_handle_t *h)
{
    conn *c = (conn *)h;
    free(c->in);
    free(c);
}

static void close_conn(conn *c)
{
    if (!uv_is_closing(&c->u.h))
        uv_close(&c->u.h, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    conn *c = (conn *)h;
    if (c->in_len == 0) {
        *buf = uv_buf_init(slab, sizeof slab);
        return;
    }
    if (c->in_cap - c->in_len < REF_READ_CHUNK) {
        uint32_t cap = c->in_len + REF_READ_CHUNK;
        uint8_t *p = realloc(c->in, cap);
        if (p == NULL) {
            *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
            return;
        }
        c->in = p;
        c->in_cap = cap;
    }
    *buf = uv_buf_init((char *)c->in + c->in_len, REF_READ_CHUNK);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
    conn *c = (conn *)req->handle;
    free(req);
    if (status < 0) {
        close_conn(c);
        return;
    }
    if (c->u.s.write_queue_size == 0 && !uv_is_closing(&c->u.h))
        uv_read_start(&c->u.s, on_alloc, on_read);
}

static int echo(conn *c, const uint8_t *data, size_t len)
{
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write(&c->u.s, &b, 1);
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
    int err = uv_write(&w->req, &c->u.s, &w->buf, 1, on_written);
    if (err < 0) {
        free(w);
        return err;
    }
    uv_read_stop(&c->u.s);
    return 0;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = (conn *)s;
    if (nread < 0) {
        close_conn(c);
        return;
    }
    if (nread == 0)
        return;
    const uint8_t *base;
    size_t len;
    if (buf->base == slab) {
        base = (const uint8_t *)slab;
        len = (size_t)nread;
    } else {
        c->in_len += (uint32_t)nread;
        base = c->in;
        len = c->in_len;
    }
    long whole = ref_complete_frames(base, len);
    if (whole < 0 || (whole > 0 && echo(c, base, (size_t)whole) < 0)) {
        close_conn(c);
        return;
    }
    size_t tail = len - (size_t)whole;
    if (base == (const uint8_t *)slab) {
        if (tail > 0) {
            c->in_cap = (uint32_t)(tail + REF_READ_CHUNK);
            c->in = malloc(c->in_cap);
            if (c->in == NULL) {
                close_conn(c);
                return;
            }
            memcpy(c->in, slab + whole, tail);
        }
    } else if (tail == 0) {
        free(c->in);
        c->in = NULL;
        c->in_cap = 0;
    } else if (whole > 0) {
        memmove(c->in, c->in + whole, tail);
    }
    c->in_len = (uint32_t)tail;
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return;
    if (is_unix)
        uv_pipe_init(server->loop, &c->u.pipe, 0);
    else
        uv_tcp_init(server->loop, &c->u.tcp);
    if (uv_accept(server, &c->u.s) < 0) {
        close_conn(c);
        return;
    }
    if (!is_unix)
        uv_tcp_nodelay(&c->u.tcp, 1);
    uv_read_start(&c->u.s, on_alloc, on_read);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: uv_frame ADDR\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    ref_raise_nofile();
    ref_addr a;
    ref_parse(argv[1], &a);
    is_unix = a.is_unix;
    uv_loop_t *loop = uv_default_loop();
    union {
        uv_handle_t h;
        uv_stream_t s;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } server;
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
        fprintf(stderr, "uv_frame: %s\n", uv_strerror(err));
        return 1;
    }
    uv_os_fd_t fd;
    uv_fileno(&server.h, &fd);
    ref_ready("uv_frame", fd);
    return uv_run(loop, UV_RUN_DEFAULT);
}
