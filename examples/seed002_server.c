/* seed002_server — seed 002 ("学习python_day7", 改进版 upper-case echo) on libsockit.
 *
 * Answers every line with the same line, ASCII letters upper-cased (other
 * bytes unchanged, so UTF-8 text stays valid), and prints what it got.
 * Usage: seed002_server [ADDR]   (default 127.0.0.1:8080, as in the seed)
 *
 * Bugs of the seed fixed here: it served one client at a time; it treated
 * whatever one recv(1024) returned as a message, so a long message came back
 * in pieces and the client fell out of step, reading the tail of one answer
 * as the next (the seed's own "粘包" section); its fix, a struct.pack("i")
 * header, is native-endian and its reader loops with `if`, not `while`. Here
 * a message is a line, answered whole; each client is served at once.
 */
#include <sockit.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define DRAIN_MS 2000 /* after SIGINT/SIGTERM, how long open sessions may go on */

static void on_message(sk_conn *c, const uint8_t *data, size_t len)
{
    char *up = malloc(len + 1); /* a line is at most SK_DEFAULT_MAX_LINE bytes */
    int rc = -ENOMEM;

    printf("from client: %.*s\n", (int)len, (const char *)data);
    if (up) {
        for (size_t i = 0; i < len; i++)
            up[i] = (char)(data[i] >= 'a' && data[i] <= 'z' ? data[i] - 'a' + 'A' : data[i]);
        rc = sk_conn_send_msg(c, up, len);
        free(up);
    }
    if (rc < 0)
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
    const char *text = argc > 1 ? argv[1] : "127.0.0.1:8080";
    struct app app = {0};
    sk_signal *sig = NULL;
    sk_server_opts opts;
    sk_addr addr;
    char err[256] = "", where[300];
    int rc;

    if (argc > 2 || sk_addr_parse(text, &addr, err, sizeof err) < 0) {
        fprintf(stderr, "seed002_server: %s\n", err[0] ? err : "usage: seed002_server [ADDR]");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per event, even into a pipe */
    sk_server_opts_init(&opts);
    opts.stream.framing = SK_FRAMING_LINE;
    opts.cbs.on_message = on_message;

    if ((rc = sk_loop_new(&app.loop)) < 0 ||
        (rc = sk_signal_new(app.loop, sigs, 2, on_signal, &app, &sig)) < 0 ||
        (rc = sk_server_listen(app.loop, &addr, &opts, &app.srv, err, sizeof err)) < 0) {
        fprintf(stderr, "seed002_server: %s\n", err[0] ? err : sk_strerror(rc));
        goto out;
    }
    if (addr.kind == SK_ADDR_TCP)
        addr.port = (uint16_t)sk_server_port(app.srv); /* the real one when given 0 */
    sk_addr_format(&addr, where, sizeof where);
    fprintf(stderr, "listening on %s\n", where);
    if ((rc = sk_loop_run(app.loop)) < 0)
        fprintf(stderr, "seed002_server: %s\n", sk_strerror(rc));
out:
    if (app.srv)
        sk_server_free(app.srv);
    if (sig)
        sk_signal_free(sig);
    if (app.loop)
        sk_loop_free(app.loop);
    return rc < 0 ? 1 : 0;
}
