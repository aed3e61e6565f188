/* timeout_server — a line server that drops a client silent for 1 second, on libsockit.
 *
 * Each client has 1 second to send its request line: "1" is answered with
 * "Welcome to server!", anything else with "Goodbye!", and the connection
 * closes. A client that stays silent for 1 second gets "socket timeout"
 * printed on the server and is disconnected — the obvious version's settimeout(1).
 * Usage: timeout_server [ADDR]   (default 127.0.0.1:8080)
 *
 * Traps of the obvious Python version avoided here: one client at a time, so a silent client held
 * every other client back for a second; the request was whatever one
 * recv(1024) returned, so a "1" typed into nc or telnet arrived as "1\n" and
 * got "Goodbye!", and a request split by TCP was misread — here a request is
 * one line. The 1-second budget is kept, as the connection's idle timeout
 * (the obvious version's own client slept 2 s before sending, so it always ran into it;
 * see timeout_client.c).
 */
#include <sockit.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define REQUEST_TIMEOUT_MS 1000 /* the obvious version's connection.settimeout(1) */
#define DRAIN_MS           2000 /* after SIGINT/SIGTERM, how long open sessions may go on */

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

static void on_ready(const char *bound, void *ud)
{
    (void)ud;
    fprintf(stderr, "listening on %s\n", bound); /* the tests wait for this line */
}

/* sk_serve runs the server until SIGINT/SIGTERM, then drains: no new clients,
 * open sessions get DRAIN_MS to finish; a second signal stops at once. */
int main(int argc, char **argv)
{
    sk_server_opts opts;
    char err[256];
    int rc;

    if (argc > 2) {
        fprintf(stderr, "timeout_server: usage: timeout_server [ADDR]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per event, even into a pipe */
    sk_server_opts_init(&opts);
    opts.conn.framing = SK_FRAMING_LINE;
    opts.conn.idle_timeout_ms = REQUEST_TIMEOUT_MS;
    opts.cbs.on_message = on_message;
    opts.cbs.on_close = on_close;
    rc = sk_serve(argc > 1 ? argv[1] : "127.0.0.1:8080", &opts, DRAIN_MS, on_ready, NULL, err,
                  sizeof err);
    if (rc < 0)
        fprintf(stderr, "timeout_server: %s\n", err);
    return rc == -EINVAL ? 2 : rc < 0 ? 1 : 0; /* -EINVAL: a bad address */
}
