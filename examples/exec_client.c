/* exec_client — a frame client: a command line out, two answer frames back, on libsockit.
 *
 * Sends each line read from stdin as one frame (a command line), then prints
 * the two answer frames: the command's output, as it was written, and how
 * it ended, in brackets, on stderr. Empty lines are not sent; the end of
 * stdin (Ctrl-D) quits. The ">>:" prompt appears only on a terminal.
 * Usage: exec_client [ADDR]   (default 127.0.0.1:8080)
 *
 * The trap of the obvious Python version avoided here: it read the 4-byte length, then did
 * `if recv_size < data_size: recv(1024)` — one read, where a loop was
 * meant — so any output longer than what one recv returned was cut, and
 * the rest was taken as the start of the next answer (and its header was
 * native-endian, and it decoded the bytes as GBK). sk_sock_recv_frame reads the
 * big-endian length, checks it, then reads until every byte has arrived.
 */
#include <sockit.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CONNECT_MS 5000
#define ANSWER_MS  20000      /* the server stops a command after 10 s */
#define OUTPUT_MAX (1u << 20) /* what the server sends at most */

int main(int argc, char **argv)
{
    const char *text = argc > 1 ? argv[1] : "127.0.0.1:8080";
    char err[256] = "", *line = NULL, status[256];
    size_t cap = 0;
    ssize_t len, n = 0;
    sk_addr addr;
    sk_sock *sock = NULL;
    int rc, tty = isatty(STDIN_FILENO);
    uint8_t *out = malloc(OUTPUT_MAX);

    if (out == NULL || argc > 2 || sk_addr_parse(text, &addr, err, sizeof err) < 0) {
        fprintf(stderr, "exec_client: %s\n", argc > 2 ? "usage: exec_client [ADDR]" : err);
        free(out);
        return 2;
    }
    if ((rc = sk_sock_dial(&addr, NULL, CONNECT_MS, &sock, err, sizeof err)) < 0) {
        fprintf(stderr, "exec_client: %s\n", err[0] ? err : sk_strerror(rc));
        free(out);
        return 1;
    }
    for (;;) {
        if (tty) {
            fputs(">>:", stdout);
            fflush(stdout);
        }
        if ((len = getline(&line, &cap, stdin)) < 0)
            break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue; /* the obvious version's `if not cmd: continue` */
        /* One frame out; two whole frames back: the output, then the status. */
        if ((n = sk_sock_send_frame(sock, line, (size_t)len, CONNECT_MS)) < 0 ||
            (n = sk_sock_recv_frame(sock, out, OUTPUT_MAX, ANSWER_MS)) < 0)
            break;
        fwrite(out, 1, (size_t)n, stdout);
        fflush(stdout);
        if ((n = sk_sock_recv_frame(sock, status, sizeof status - 1, ANSWER_MS)) < 0)
            break;
        status[n] = '\0';
        fprintf(stderr, "[%s]\n", status);
    }
    if (n < 0)
        fprintf(stderr, "exec_client: %s\n",
                n == -ENODATA || n == -ECONNRESET ? "the server closed the connection"
                                                  : sk_strerror((int)n));
    free(line);
    free(out);
    sk_sock_close(sock);
    return n < 0 ? 1 : 0;
}
