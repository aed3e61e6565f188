/* banner_server — a server that sends one message and closes (the message ends with the
 * connection), on libsockit.
 *
 * Sends "Thank you for connecting\r\n" to each client and closes; prints
 * "Got a connection from PEER" for each. The message ends where the
 * connection ends, so no other framing is needed.
 * Usage: banner_server [ADDR]   (default 127.0.0.1:8088)
 *
 * Traps of the obvious Python version avoided here: it bound to socket.gethostname(), an address
 * that depends on /etc/hosts (often 127.0.1.1, sometimes none at all), so the
 * same program worked on one machine and failed on another — here the
 * address is explicit; and send() may send only part of the greeting — here
 * it is queued whole and the close waits until it has gone out.
 */
#include <sockit.h>

#include <errno.h>
#include <stdio.h>

#define DRAIN_MS 2000 /* after SIGINT/SIGTERM, how long open sessions may go on */

static void on_open(sk_conn *c)
{
    static const char greeting[] = "Thank you for connecting\r\n";

    printf("Got a connection from %s\n", sk_conn_peer(c));
    sk_conn_send(c, greeting, sizeof greeting - 1);
    sk_conn_close(c); /* sends the greeting first, then closes */
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
        fprintf(stderr, "banner_server: usage: banner_server [ADDR]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per event, even into a pipe */
    sk_server_opts_init(&opts);
    opts.conn.framing = SK_FRAMING_RAW; /* the greeting is sent as is */
    opts.cbs.on_open = on_open;
    rc = sk_serve(argc > 1 ? argv[1] : "127.0.0.1:8088", &opts, DRAIN_MS, on_ready, NULL, err,
                  sizeof err);
    if (rc < 0)
        fprintf(stderr, "banner_server: %s\n", err);
    return rc == -EINVAL ? 2 : rc < 0 ? 1 : 0; /* -EINVAL: a bad address */
}
