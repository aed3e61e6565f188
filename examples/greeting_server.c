/* greeting_server — a line server that greets each client and answers every line, on libsockit.
 *
 * Greets each client with "你好欢迎你" and answers every message with the
 * message plus "好"; "q" ends that client's session. A message is a line.
 * Usage: greeting_server [ADDR]   (default 127.0.0.1:9999)
 *
 * Traps of the obvious Python version avoided here: it served one client at a time (a second
 * client waited in accept() until the first typed "q"); its messages had no
 * boundaries, so one recv(1024) could return two messages glued together or
 * half of a UTF-8 character, which str() then refused (the "sticky packet"
 * problem — lines fix it); and a client that vanished without "q" made
 * recv() return b"" forever, so the server spun answering "好" to nobody
 * until a broken pipe killed it — here the peer's EOF simply closes.
 */
#include <sockit.h>

#include <errno.h>
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

    printf("%.*s\n", (int)len, (const char *)data); /* the obvious version prints what it gets */
    if (len == 1 && data[0] == 'q') {
        sk_conn_close(c);
        return;
    }
    if ((rc = sk_conn_send_msgv(c, reply, 2)) < 0)
        sk_conn_abort(c, rc);
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
        fprintf(stderr, "greeting_server: usage: greeting_server [ADDR]\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* one line per event, even into a pipe */
    sk_server_opts_init(&opts);
    opts.conn.framing = SK_FRAMING_LINE;
    opts.cbs.on_open = on_open;
    opts.cbs.on_message = on_message;
    rc = sk_serve(argc > 1 ? argv[1] : "127.0.0.1:9999", &opts, DRAIN_MS, on_ready, NULL, err,
                  sizeof err);
    if (rc < 0)
        fprintf(stderr, "greeting_server: %s\n", err);
    return rc == -EINVAL ? 2 : rc < 0 ? 1 : 0; /* -EINVAL: a bad address */
}
