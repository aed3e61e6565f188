/* timeout_client — a line client whose every wait is bounded (1 second), on libsockit.
 *
 * Sends one request line ("1", or argv[2]) and prints the answer. It waits at
 * most 1 second — for the connection and for the answer — and reports a
 * timeout instead of hanging.
 * Usage: timeout_client [ADDR [REQUEST]]   (default 127.0.0.1:8080 and "1")
 *
 * Traps of the obvious Python version avoided here: it slept 2 seconds before sending, past the
 * server's 1-second timeout, so the server had always given up and the
 * client printed nothing — the obvious version never worked; its recv() had no bound
 * and took any fragment as the answer. Here the request goes out at once,
 * as a line, and the answer is read whole within the same 1 second.
 */
#include <sockit.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define TIMEOUT_MS 1000 /* the obvious version's 1-second timeout, on this side too */

#define LINE_MAX_BYTES 1024 /* the answer is short; the obvious version read 1024 bytes */

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
    const char *text = argc > 1 ? argv[1] : "127.0.0.1:8080";
    const char *request = argc > 2 ? argv[2] : "1";
    char err[256] = "";
    const char *reply = NULL;
    sk_addr addr;
    sk_sock *sock = NULL;
    int rc;

    if (argc > 3 || strchr(request, '\n') || sk_addr_parse(text, &addr, err, sizeof err) < 0) {
        fprintf(stderr, "timeout_client: %s\n",
                err[0] ? err : "usage: timeout_client [ADDR [REQUEST]] (REQUEST: one line)");
        return 2;
    }
    if ((rc = sk_sock_dial(&addr, NULL, TIMEOUT_MS, &sock, err, sizeof err)) < 0) {
        fprintf(stderr, "timeout_client: %s\n", err[0] ? err : sk_strerror(rc));
        return 1;
    }
    if ((rc = sk_sock_send_all(sock, request, strlen(request), TIMEOUT_MS)) == 0 &&
        (rc = sk_sock_send_all(sock, "\n", 1, TIMEOUT_MS)) == 0 &&
        (rc = recv_line(sock, &reply)) >= 0)
        puts(reply);
    else if (rc == -ETIMEDOUT)
        fprintf(stderr, "timeout_client: timed out: no answer within 1 second\n");
    else
        fprintf(stderr, "timeout_client: %s\n",
                rc == -ECONNRESET ? "the server closed the connection" : sk_strerror(rc));
    sk_sock_close(sock);
    return rc < 0 ? 1 : 0;
}
