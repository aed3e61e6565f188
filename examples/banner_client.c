/* banner_client — a client that reads a message ending where the connection ends, on libsockit.
 *
 * Connects, reads the server's greeting up to the end of the connection and
 * prints it as one line ("Thank you for connecting").
 * Usage: banner_client [ADDR]   (default 127.0.0.1:8088)
 *
 * Traps of the obvious Python version avoided here: one recv(1024) may return only the first
 * part of the greeting — the greeting ends where the connection ends, so
 * this client reads until end of stream (bounded in size and time); it
 * connected to socket.gethostname(), which need not be where the server
 * listens; and decode('ascii') raised on any byte above 127.
 */
#include <sockit.h>

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#define TIMEOUT_MS   5000 /* connect and each read: a silent server is reported */
#define GREETING_MAX 1024 /* the obvious version's recv(1024): a longer greeting is an error */

int main(int argc, char **argv)
{
    const char *text = argc > 1 ? argv[1] : "127.0.0.1:8088";
    char err[256] = "", msg[GREETING_MAX];
    size_t len = 0;
    ssize_t n;
    sk_addr addr;
    sk_sock *sock = NULL;
    int rc;

    if (argc > 2 || sk_addr_parse(text, &addr, err, sizeof err) < 0) {
        fprintf(stderr, "banner_client: %s\n", argc > 2 ? "usage: banner_client [ADDR]" : err);
        return 2;
    }
    if ((rc = sk_sock_dial(&addr, NULL, TIMEOUT_MS, &sock, err, sizeof err)) < 0) {
        fprintf(stderr, "banner_client: %s\n", err[0] ? err : sk_strerror(rc));
        return 1;
    }
    while ((n = sk_sock_recv_wait(sock, msg + len, sizeof msg - len, TIMEOUT_MS)) > 0)
        if ((len += (size_t)n) == sizeof msg) {
            n = -EMSGSIZE;
            break;
        }
    sk_sock_close(sock);
    if (n < 0) {
        fprintf(stderr, "banner_client: %s\n", sk_strerror((int)n));
        return 1;
    }
    while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == '\r'))
        len--;
    printf("%.*s\n", (int)len, msg);
    return 0;
}
