/* hello_server — a line server: one request line, one answer, close, on libsockit.
 *
 * Each client sends one line ("Hello Server"); the server prints
 * "Received: LINE", answers "Hello Client" and closes.
 * Usage: hello_server [ADDR]   (default 127.0.0.1:8080)
 *
 * Traps of the obvious Python version avoided here: it took whatever one recv(1024) returned as
 * the whole message (TCP may deliver it in pieces, or glued to more) and
 * answered with send(), which may send only part; and it served one client
 * at a time, so a client that connected and said nothing blocked everyone.
 * Here a message is a line, every reply is queued whole, and the event
 * loop serves any number of clients at once.
 */
#include <sockit.h>

#include <errno.h>
#include <stdio.h>

#define DRAIN_MS 2000 /* after SIGINT/SIGTERM, how long open sessions may go on */

static void on_message(sk_conn *c, const uint8_t *data, size_t len)
{
    static const char reply[] = "Hello Client";

    printf("Received: %.*s\n", (int)len, (const char *)data);
    sk_conn_send_msg(c, reply, sizeof reply - 1);
    sk_conn_close(c); /* sends the reply first, then closes */
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
        fprintf(stderr, "hello_server: usage: hello_server [ADDR]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per event, even into a pipe */
    sk_server_opts_init(&opts);
    opts.conn.framing = SK_FRAMING_LINE;
    opts.cbs.on_message = on_message;
    rc = sk_serve(argc > 1 ? argv[1] : "127.0.0.1:8080", &opts, DRAIN_MS, on_ready, NULL, err,
                  sizeof err);
    if (rc < 0)
        fprintf(stderr, "hello_server: %s\n", err);
    return rc == -EINVAL ? 2 : rc < 0 ? 1 : 0; /* -EINVAL: a bad address */
}
