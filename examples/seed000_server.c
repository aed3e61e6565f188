/* seed000_server — seed 000 (cnblogs zjltt, "客户端与服务端进行交互信息") on libsockit.
 *
 * Greets each client with "你好欢迎你" and answers every message with the
 * message plus "好"; "q" ends that client's session. A message is a line.
 * Usage: seed000_server [ADDR]   (default 127.0.0.1:9999, as in the seed)
 *
 * Bugs of the seed fixed here: it served one client at a time (a second
 * client waited in accept() until the first typed "q"); its messages had no
 * boundaries, so one recv(1024) could return two messages glued together or
 * half of a UTF-8 character, which str() then refused (the "sticky packet"
 * problem — lines fix it); and a client that vanished without "q" made
 * recv() return b"" forever, so the server spun answering "好" to nobody
 * until a broken pipe killed it — here the peer's EOF simply closes.
 */
#include <sockit.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#define DRAIN_MS 2000 /* after SIGINT/SIGTERM, how long open sessions may go on */

static void on_open(sk_conn *c)
{
    static const char hello[] = "你好欢迎你";
    sk_conn_send_msg(c, hello, sizeof hello - 1);
}

static void on_message(sk_conn *c, const uint8_t *data, size_t len)
{
    struct iovec reply[2] = {{(void *)data, len}, {"好", strlen("好")}};
    int rc;

    printf("%.*s\n", (int)len, (const char *)data); /* the seed prints what it gets */
    if (len == 1 && data[0] == 'q') {
        sk_conn_close(c);
        return;
    }
    if ((rc = sk_conn_send_msgv(c, reply, 2)) < 0)
        sk_conn_abort(c, rc);
}

/* Shutting down: the first signal drains (no new clients, open sessions get
 * DRAIN_MS to finish); a second one stops at once. */
struct app {
    sk_loop *loop;
    sk_server *srv;
    int stopping;
};

static void on_drained(sk_server *srv, void *ud)
{
    (void)srv;
    sk_loop_stop(((struct app *)ud)->loop);
}

static void on_signal(sk_signal *s, int signo, void *ud)
{
    struct app *app = ud;
    (void)s;
    (void)signo;
    if (app->stopping++)
        sk_loop_stop(app->loop);
    else
        sk_server_drain(app->srv, DRAIN_MS, on_drained, app);
}

int main(int argc, char **argv)
{
    static const int sigs[] = {SIGINT, SIGTERM};
    const char *text = argc > 1 ? argv[1] : "127.0.0.1:9999";
    struct app app = {0};
    sk_signal *sig = NULL;
    sk_server_opts opts;
    sk_addr addr;
    char err[256] = "", where[300];
    int rc;

    if (argc > 2 || sk_addr_parse(text, &addr, err, sizeof err) < 0) {
        fprintf(stderr, "seed000_server: %s\n", err[0] ? err : "usage: seed000_server [ADDR]");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per event, even into a pipe */
    sk_server_opts_init(&opts);
    opts.stream.framing = SK_FRAMING_LINE;
    opts.cbs.on_open = on_open;
    opts.cbs.on_message = on_message;

    if ((rc = sk_loop_new(&app.loop)) < 0 ||
        (rc = sk_signal_new(app.loop, sigs, 2, on_signal, &app, &sig)) < 0 ||
        (rc = sk_server_listen(app.loop, &addr, &opts, &app.srv, err, sizeof err)) < 0) {
        fprintf(stderr, "seed000_server: %s\n", err[0] ? err : sk_strerror(rc));
        goto out;
    }
    if (addr.kind == SK_ADDR_TCP)
        addr.port = (uint16_t)sk_server_port(app.srv); /* the real one when given 0 */
    sk_addr_format(&addr, where, sizeof where);
    fprintf(stderr, "listening on %s\n", where);
    if ((rc = sk_loop_run(app.loop)) < 0)
        fprintf(stderr, "seed000_server: %s\n", sk_strerror(rc));
out:
    if (app.srv)
        sk_server_free(app.srv);
    if (sig)
        sk_signal_free(sig);
    if (app.loop)
        sk_loop_free(app.loop);
    return rc < 0 ? 1 : 0;
}
