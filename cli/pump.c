/* pump.c — the shared poll loop of connect, chat and exec (see pump.h). */
#include "pump.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

void cli_pump_init(cli_pump *p, sk_sock *sock, int sigfd)
{
    memset(p, 0, sizeof *p);
    p->sock = sock;
    p->sigfd = sigfd;
}

void cli_pump_free(cli_pump *p)
{
    free(p->out);
    p->out = NULL;
    p->out_len = p->out_cap = 0;
}

uint64_t cli_pump_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool cli_pump_room(const cli_pump *p) { return p->out_len < CLI_PUMP_OUT_MAX; }

int cli_pump_wait(cli_pump *p, bool want_stdin, uint64_t deadline_ms, cli_pump_ready *r)
{
    memset(r, 0, sizeof *r);
    want_stdin = want_stdin && cli_pump_room(p);
    struct pollfd pf[3] = {{.fd = sk_sock_fd(p->sock), .events = p->sock_eof ? 0 : POLLIN},
                           {.fd = -1},
                           {.fd = p->sigfd}};
    if (p->out_len > 0)
        pf[0].events |= POLLOUT;
    if (want_stdin && !p->stdin_file)
        pf[1] = (struct pollfd){.fd = STDIN_FILENO, .events = POLLIN};
    if (p->sigfd >= 0)
        pf[2].events = POLLIN;
    /* TLS: bytes already decrypted sit in the library, unseen by poll();
     * a regular file as stdin cannot be polled and is always readable. */
    bool pending = !p->sock_eof && sk_sock_pending(p->sock);
    int wait = -1;
    if (pending || (want_stdin && p->stdin_file)) {
        wait = 0;
    } else if (deadline_ms != 0) {
        uint64_t now = cli_pump_now_ms();
        if (now >= deadline_ms) {
            r->timeout = true;
            wait = 0;
        } else {
            uint64_t left = deadline_ms - now;
            wait = left > 86400000u ? 86400000 : (int)left;
        }
    }
    int n = poll(pf, 3, wait);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        cli_err("poll: %s", strerror(errno));
        return -1;
    }
    r->sock = !p->sock_eof && (pending || (pf[0].revents & (POLLIN | POLLHUP | POLLERR)));
    r->sock_write = (pf[0].revents & (POLLOUT | POLLERR)) && p->out_len > 0;
    r->gone = p->sock_eof && (pf[0].revents & (POLLHUP | POLLERR));
    r->in_revents = pf[1].fd >= 0 ? pf[1].revents : 0;
    r->in = want_stdin && (p->stdin_file || r->in_revents != 0);
    r->sig = p->sigfd >= 0 && (pf[2].revents & POLLIN);
    if (n == 0 && !pending && deadline_ms != 0 && cli_pump_now_ms() >= deadline_ms)
        r->timeout = true;
    return 0;
}

int cli_pump_queue(cli_pump *p, const void *data, size_t len)
{
    if (len > p->out_cap - p->out_len) {
        size_t cap = p->out_cap ? p->out_cap : 4096;
        while (cap - p->out_len < len)
            cap *= 2;
        uint8_t *nb = realloc(p->out, cap);
        if (nb == NULL)
            return -1;
        p->out = nb;
        p->out_cap = cap;
    }
    if (len)
        memcpy(p->out + p->out_len, data, len);
    p->out_len += len;
    return 0;
}

int cli_pump_flush(cli_pump *p)
{
    if (p->out_len == 0)
        return 0;
    ssize_t n = sk_sock_send(p->sock, p->out, p->out_len);
    if (n == -EAGAIN)
        return 0;
    if (n < 0)
        return (int)n;
    memmove(p->out, p->out + n, p->out_len - (size_t)n);
    p->out_len -= (size_t)n;
    return 0;
}
