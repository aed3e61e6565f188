/* upper_client — a line client of the upper-case echo, on libsockit.
 *
 * Sends each line read from stdin and prints the server's upper-cased
 * answer. Empty lines are not sent; the end of stdin (Ctrl-D) quits. The
 * ">>:" prompt appears only on a terminal, so a pipe can drive it.
 * Usage: upper_client [ADDR]   (default 127.0.0.1:8080)
 *
 * Traps of the obvious Python version avoided here: one recv(1024) per message, so an answer
 * longer than 1024 bytes (or split by TCP) was printed in pieces and every
 * later answer was off by one — the "粘包" problem the obvious version describes; the
 * end of input raised EOFError; the waits had no bound; and it printed
 * b'...' reprs. Here each message is one line, read whole.
 */
#include <sockit.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TIMEOUT_MS 5000 /* connect, each send, each reply: a silent server is reported */

#define LINE_MAX_BYTES SK_DEFAULT_MAX_LINE /* the longest reply: what servers accept */

/* Receives the next line from s and points *line at it, without its "\r\n"
 * and NUL-terminated, valid until the next call. Returns its length, or a
 * negative code: -ECONNRESET if the server closed first, -EMSGSIZE if the
 * line is longer than LINE_MAX_BYTES, -ETIMEDOUT after TIMEOUT_MS. */
static int recv_line(sk_sock *s, const char **line)
{
    static uint8_t buf[LINE_MAX_BYTES + 2]; /* the longest line and its "\r\n" */
    static size_t len, used;                /* bytes held; bytes of them returned last time */
    sk_decoder dec;
    sk_msg m;
    int rc;

    len -= used; /* drop the line returned last time, keep what followed it */
    memmove(buf, buf + used, len);
    used = 0;
    /* The decoder says -EMSGSIZE before buf is full, so there is always room. */
    sk_decoder_init(&dec, SK_FRAMING_LINE, LINE_MAX_BYTES);
    while ((rc = sk_decoder_next(&dec, buf, len, &m, NULL)) == 0) {
        ssize_t n = sk_sock_recv_wait(s, buf + len, sizeof buf - len, TIMEOUT_MS);
        if (n <= 0)
            return n == 0 ? -ECONNRESET : (int)n;
        len += (size_t)n;
    }
    if (rc < 0)
        return rc;
    used = m.consumed;
    buf[m.offset + m.len] = '\0'; /* over the "\r" or "\n" */
    *line = (const char *)buf + m.offset;
    return (int)m.len;
}

int main(int argc, char **argv)
{
    const char *reply = NULL;
    const char *text = argc > 1 ? argv[1] : "127.0.0.1:8080";
    char err[256] = "", *line = NULL;
    size_t cap = 0;
    ssize_t len;
    sk_addr addr;
    sk_sock *sock = NULL;
    int rc = 0, tty = isatty(STDIN_FILENO);

    if (argc > 2 || sk_addr_parse(text, &addr, err, sizeof err) < 0) {
        fprintf(stderr, "upper_client: %s\n", argc > 2 ? "usage: upper_client [ADDR]" : err);
        return 2;
    }
    if ((rc = sk_sock_dial(&addr, NULL, TIMEOUT_MS, &sock, err, sizeof err)) < 0) {
        fprintf(stderr, "upper_client: %s\n", err[0] ? err : sk_strerror(rc));
        return 1;
    }
    for (;;) {
        if (tty) {
            fputs(">>:", stdout); /* the obvious version's input() prompt */
            fflush(stdout);
        }
        if ((len = getline(&line, &cap, stdin)) < 0)
            break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (len == 0)
            continue; /* nothing to send, so no answer to wait for */
        line[len] = '\n';
        if ((rc = sk_sock_send_all(sock, line, (size_t)len + 1, TIMEOUT_MS)) < 0 ||
            (rc = recv_line(sock, &reply)) < 0)
            break;
        puts(reply);
    }
    if (rc < 0)
        fprintf(stderr, "upper_client: %s\n",
                rc == -ECONNRESET ? "the server closed the connection" : sk_strerror(rc));
    free(line);
    sk_sock_close(sock);
    return rc < 0 ? 1 : 0;
}
