/* udp_echo.c — the plain datagram echo the UDP target is measured against,
 * for comparison only: a blocking recvfrom/sendto loop, one datagram per
 * syscall each way (no recvmmsg/sendmmsg), which is the fastest form of
 * the plain loop (no readiness wait at all).
 *
 *     udp_echo ADDR        ADDR: PORT, HOST:PORT (UDP), or a unix path
 *                          (unixgram: replies go to the sender's bound path)
 */
#include "ref.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: udp_echo ADDR\n");
        return 2;
    }
    ref_addr a;
    ref_parse(argv[1], &a);
    int fd = ref_bind(&a, SOCK_DGRAM, 0);
    ref_ready("udp_echo", fd);
    static uint8_t buf[65536];
    for (;;) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&peer, &plen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            ref_die("recvfrom");
        }
        if (plen == 0)
            continue; /* an unbound unixgram sender cannot be answered */
        (void)sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, plen);
    }
}
