/* upper_server — a line server that upper-cases every line, on libsockit.
 *
 * Answers every line with the same line, ASCII letters upper-cased (other
 * bytes unchanged, so UTF-8 text stays valid), and prints what it got.
 * Usage: upper_server [ADDR]   (default 127.0.0.1:8080)
 *
 * Traps of the obvious Python version avoided here: it served one client at a time; it treated
 * whatever one recv(1024) returned as a message, so a long message came back
 * in pieces and the client fell out of step, reading the tail of one answer
 * as the next (the obvious version's own "粘包" section); its fix, a struct.pack("i")
 * header, is native-endian and its reader loops with `if`, not `while`. Here
 * a message is a line, answered whole; each client is served at once.
 */
#include <sockit.h>

#include <errno.h>
#include <stdio.h>

#define DRAIN_MS 2000 /* after SIGINT/SIGTERM, how long open sessions may go on */

/* Writes the upper-cased line straight into the output queue: no buffer of
 * our own, no allocation per message. */
static void on_message(sk_conn *c, const uint8_t *data, size_t len)
{
    char *up;

    printf("from client: %.*s\n", (int)len, (const char *)data);
    if ((up = sk_conn_prepare_msg(c, len, NULL)) == NULL)
        return; /* closing already, or just aborted for lack of buffer memory */
    for (size_t i = 0; i < len; i++)
        up[i] = (char)(data[i] >= 'a' && data[i] <= 'z' ? data[i] - 'a' + 'A' : data[i]);
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
        fprintf(stderr, "upper_server: usage: upper_server [ADDR]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per event, even into a pipe */
    sk_server_opts_init(&opts);
    opts.conn.framing = SK_FRAMING_LINE;
    opts.cbs.on_message = on_message;
    rc = sk_serve(argc > 1 ? argv[1] : "127.0.0.1:8080", &opts, DRAIN_MS, on_ready, NULL, err,
                  sizeof err);
    if (rc < 0)
        fprintf(stderr, "upper_server: %s\n", err);
    return rc == -EINVAL ? 2 : rc < 0 ? 1 : 0; /* -EINVAL: a bad address */
}
