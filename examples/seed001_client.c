/* seed001_client — seed 001 ("Python中的Socket编程", 完整示例) on libsockit.
 *
 * Sends "Hello Server" as one line and prints the server's answer as
 * "Received: Hello Client".
 * Usage: seed001_client [ADDR]   (default 127.0.0.1:8080, as in the seed)
 *
 * Bugs of the seed fixed here: send() may send only part of the message and
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

static uint8_t in[1024 + 2]; /* received bytes not yet returned; the answer is short */
static size_t inlen;

/* Receives the next line into line (NUL-terminated, without "\r\n").
 * Returns its length, or a negative code: -ECONNRESET if the server closed. */
static int recv_line(int fd, char *line, size_t cap)
{
    sk_decoder dec;
    sk_msg m;
    int rc;

    sk_decoder_init(&dec, SK_FRAMING_LINE, cap - 1);
    while ((rc = sk_decoder_next(&dec, in, inlen, &m, NULL)) == 0) {
        ssize_t n = inlen < sizeof in ? sk_recv_some(fd, in + inlen, sizeof in - inlen, TIMEOUT_MS)
                                      : -EMSGSIZE;
        if (n <= 0)
            return n == 0 ? -ECONNRESET : (int)n;
        inlen += (size_t)n;
    }
    if (rc < 0)
        return rc;
    memcpy(line, in + m.offset, m.len);
    line[m.len] = '\0';
    memmove(in, in + m.consumed, inlen - m.consumed);
    inlen -= m.consumed;
    return (int)m.len;
}

int main(int argc, char **argv)
{
    static const char hello[] = "Hello Server\n";
    const char *text = argc > 1 ? argv[1] : "127.0.0.1:8080";
    char err[256] = "", reply[1024 + 1];
    sk_addr addr;
    int fd, rc;

    if (argc > 2 || sk_addr_parse(text, &addr, err, sizeof err) < 0) {
        fprintf(stderr, "seed001_client: %s\n", argc > 2 ? "usage: seed001_client [ADDR]" : err);
        return 2;
    }
    if ((fd = sk_dial(&addr, TIMEOUT_MS, err, sizeof err)) < 0) {
        fprintf(stderr, "seed001_client: %s\n", err[0] ? err : sk_strerror(fd));
        return 1;
    }
    if ((rc = sk_send_all(fd, hello, sizeof hello - 1, TIMEOUT_MS)) == 0 &&
        (rc = recv_line(fd, reply, sizeof reply)) >= 0)
        printf("Received: %s\n", reply);
    else
        fprintf(stderr, "seed001_client: %s\n",
                rc == -ECONNRESET ? "the server closed the connection" : sk_strerror(rc));
    close(fd);
    return rc < 0 ? 1 : 0;
}
