/* hello_client — a line client: one request line, one answer line, on libsockit.
 *
 * Sends "Hello Server" as one line and prints the server's answer as
 * "Received: Hello Client".
 * Usage: hello_client [ADDR]   (default 127.0.0.1:8080)
 *
 * Traps of the obvious Python version avoided here: send() may send only part of the message and
 * one recv(1024) may return only part of the answer (TCP keeps no message
 * boundaries); nothing bounded the waits; and it printed Python's b'...'
 * repr instead of the text. Here the message is a line, sent whole and read
 * whole, within TIMEOUT_MS.
 */
#include <sockit.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define TIMEOUT_MS 5000 /* connect, send and reply: a silent server is reported */

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
    static const char hello[] = "Hello Server\n";
    const char *text = argc > 1 ? argv[1] : "127.0.0.1:8080";
    char err[256] = "";
    const char *reply = NULL;
    sk_addr addr;
    sk_sock *sock = NULL;
    int rc;

    if (argc > 2 || sk_addr_parse(text, &addr, err, sizeof err) < 0) {
        fprintf(stderr, "hello_client: %s\n", argc > 2 ? "usage: hello_client [ADDR]" : err);
        return 2;
    }
    if ((rc = sk_sock_dial(&addr, NULL, TIMEOUT_MS, &sock, err, sizeof err)) < 0) {
        fprintf(stderr, "hello_client: %s\n", err[0] ? err : sk_strerror(rc));
        return 1;
    }
    if ((rc = sk_sock_send_all(sock, hello, sizeof hello - 1, TIMEOUT_MS)) == 0 &&
        (rc = recv_line(sock, &reply)) >= 0)
        printf("Received: %s\n", reply);
    else
        fprintf(stderr, "hello_client: %s\n",
                rc == -ECONNRESET ? "the server closed the connection" : sk_strerror(rc));
    sk_sock_close(sock);
    return rc < 0 ? 1 : 0;
}
