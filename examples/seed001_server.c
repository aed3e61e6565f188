/* seed001_server — seed 001 ("Python中的Socket编程", 完整示例) on libsockit.
 *
 * Each client sends one line ("Hello Server"); the server prints
 * "Received: LINE", answers "Hello Client" and closes, as the seed did.
 * Usage: seed001_server [ADDR]   (default 127.0.0.1:8080, as in the seed)
 *
 * Bugs of the seed fixed here: it took whatever one recv(1024) returned as
 * the whole message (TCP may deliver it in pieces, or glued to more) and
 * answered with send(), which may send only part; and it served one client
 * at a time, so a client that connected and said nothing blocked everyone.
 * Here a message is a line, every reply is queued whole, and the event
 * loop serves any number of clients at once.
 */
#include <sockit.h>

#include <signal.h>
#include <stdio.h>

#define DRAIN_MS 2000 /* after SIGINT/SIGTERM, how long open sessions may go on */

static void on_message(sk_conn *c, const uint8_t *data, size_t len)
{
    static const char reply[] = "Hello Client";

    printf("Received: %.*s\n", (int)len, (const char *)data);
    sk_conn_send_msg(c, reply, sizeof reply - 1);
    sk_conn_close(c); /* sends the reply first, then closes */
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
        fprintf(stderr, "seed001_server: %s\n", err[0] ? err : "usage: seed001_server [ADDR]");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per event, even into a pipe */
    sk_server_opts_init(&opts);
    opts.stream.framing = SK_FRAMING_LINE;
    opts.cbs.on_message = on_message;

    if ((rc = sk_loop_new(&app.loop)) < 0 ||
        (rc = sk_signal_new(app.loop, sigs, 2, on_signal, &app, &sig)) < 0 ||
        (rc = sk_server_listen(app.loop, &addr, &opts, &app.srv, err, sizeof err)) < 0) {
        fprintf(stderr, "seed001_server: %s\n", err[0] ? err : sk_strerror(rc));
        goto out;
    }
    if (addr.kind == SK_ADDR_TCP)
        addr.port = (uint16_t)sk_server_port(app.srv); /* the real one when given 0 */
    sk_addr_format(&addr, where, sizeof where);
    fprintf(stderr, "listening on %s\n", where);
    if ((rc = sk_loop_run(app.loop)) < 0)
        fprintf(stderr, "seed001_server: %s\n", sk_strerror(rc));
out:
    if (app.srv)
        sk_server_free(app.srv);
    if (sig)
        sk_signal_free(sig);
    if (app.loop)
        sk_loop_free(app.loop);
    return rc < 0 ? 1 : 0;
}
