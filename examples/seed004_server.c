/* seed004_server — seed 004 ("一个简单的编程实例", server.py) on libsockit.
 *
 * Each client has 1 second to send its request line: "1" is answered with
 * "Welcome to server!", anything else with "Goodbye!", and the connection
 * closes. A client that stays silent for 1 second gets "socket timeout"
 * printed on the server and is disconnected — the seed's settimeout(1).
 * Usage: seed004_server [ADDR]   (default 127.0.0.1:8080, as in the seed)
 *
 * Bugs of the seed fixed here: one client at a time, so a silent client held
 * every other client back for a second; the request was whatever one
 * recv(1024) returned, so a "1" typed into nc or telnet arrived as "1\n" and
 * got "Goodbye!", and a request split by TCP was misread — here a request is
 * one line. The 1-second budget is kept, as the connection's idle timeout
 * (the seed's own client slept 2 s before sending, so it always ran into it;
 * see seed004_client.c).
 */
#include <sockit.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define REQUEST_TIMEOUT_MS 1000 /* the seed's connection.settimeout(1) */
#define DRAIN_MS 2000           /* after SIGINT/SIGTERM, how long open sessions may go on */

static void on_message(sk_conn *c, const uint8_t *data, size_t len)
{
    const char *reply = len == 1 && data[0] == '1' ? "Welcome to server!" : "Goodbye!";

    sk_conn_send_msg(c, reply, strlen(reply));
    sk_conn_close(c); /* sends the reply first, then closes */
}

static void on_close(sk_conn *c, int err)
{
    (void)c;
    if (err == -ETIMEDOUT)
        printf("socket timeout\n");
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
        fprintf(stderr, "seed004_server: %s\n", err[0] ? err : "usage: seed004_server [ADDR]");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per event, even into a pipe */
    sk_server_opts_init(&opts);
    opts.stream.framing = SK_FRAMING_LINE;
    opts.stream.idle_timeout_ms = REQUEST_TIMEOUT_MS;
    opts.cbs.on_message = on_message;
    opts.cbs.on_close = on_close;

    if ((rc = sk_loop_new(&app.loop)) < 0 ||
        (rc = sk_signal_new(app.loop, sigs, 2, on_signal, &app, &sig)) < 0 ||
        (rc = sk_server_listen(app.loop, &addr, &opts, &app.srv, err, sizeof err)) < 0) {
        fprintf(stderr, "seed004_server: %s\n", err[0] ? err : sk_strerror(rc));
        goto out;
    }
    if (addr.kind == SK_ADDR_TCP)
        addr.port = (uint16_t)sk_server_port(app.srv); /* the real one when given 0 */
    sk_addr_format(&addr, where, sizeof where);
    fprintf(stderr, "listening on %s\n", where);
    if ((rc = sk_loop_run(app.loop)) < 0)
        fprintf(stderr, "seed004_server: %s\n", sk_strerror(rc));
out:
    if (app.srv)
        sk_server_free(app.srv);
    if (sig)
        sk_signal_free(sig);
    if (app.loop)
        sk_loop_free(app.loop);
    return rc < 0 ? 1 : 0;
}
