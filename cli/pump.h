/* pump.h — the one poll loop of the interactive clients (connect, chat,
 * exec): the socket, stdin and a signalfd in one poll, the TLS bytes that
 * poll cannot see, a deadline, and the bounded queue of bytes waiting for
 * the socket. Each client keeps its own protocol; only the waiting and the
 * sending live here, so the traps are handled once. */
#ifndef SOCKIT_CLI_PUMP_H
#define SOCKIT_CLI_PUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sockit.h>

/* Bytes waiting for the socket past which stdin is not read: a server that
 * stops reading slows the client down instead of growing its memory. */
#define CLI_PUMP_OUT_MAX (256u * 1024u)

typedef struct cli_pump {
    sk_sock *sock;   /* the socket, plain or TLS (borrowed) */
    int sigfd;       /* a signalfd to watch, or -1 */
    bool stdin_file; /* stdin is a regular file: always readable, never polled */
    bool sock_eof;   /* the peer's end of stream was read: the socket is no
                        longer watched for reading (it would always be ready) */
    uint8_t *out;    /* queued for the socket */
    size_t out_len, out_cap;
} cli_pump;

/* What one wait found. */
typedef struct cli_pump_ready {
    bool sock;        /* readable, hung up, or TLS bytes pending: read it */
    bool sock_write;  /* queued bytes can go (cli_pump_flush) */
    bool in;          /* stdin has input, or hung up (see in_revents) */
    short in_revents; /* poll's revents for stdin (0 for a regular file) */
    bool sig;         /* the signalfd has a signal to read */
    bool gone;        /* after sock_eof: the socket hung up or failed (a reset) */
    bool timeout;     /* the deadline passed */
} cli_pump_ready;

void cli_pump_init(cli_pump *p, sk_sock *sock, int sigfd);
void cli_pump_free(cli_pump *p);

/* Monotonic milliseconds, the clock of every deadline here. */
uint64_t cli_pump_now_ms(void);

/* Waits until something is ready. stdin is watched when want_stdin and the
 * queue has room; deadline_ms (cli_pump_now_ms) 0 means none. An EINTR
 * returns 0 with nothing ready. Returns 0, or -1 after one line on stderr. */
int cli_pump_wait(cli_pump *p, bool want_stdin, uint64_t deadline_ms, cli_pump_ready *r);

/* True while the queue has room for more input. */
bool cli_pump_room(const cli_pump *p);

/* Appends len bytes to the queue. Returns 0, or -1 when out of memory. */
int cli_pump_queue(cli_pump *p, const void *data, size_t len);

/* Sends what the socket takes now. Returns 0 (all or part sent, or it
 * would block), or the negative error of sk_sock_send. */
int cli_pump_flush(cli_pump *p);

#endif
