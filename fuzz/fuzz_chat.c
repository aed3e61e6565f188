/* fuzz_chat.c — libFuzzer target for the chat service's input: how a
 * member's bytes become lines (chat_input.c: partial lines, over-long lines
 * skipped to their "\n", "\r\n"), the commands (/nick, /me, /who, /quit,
 * /help, "//" escapes, unknown ones), the nick table (chat_nicks.c: guests,
 * renames, case-blind uniqueness), --max-rate refusals and the dropping of
 * members that do not read (--max-queue).
 *
 * Nothing is mocked in the library: a real loop and three members on real
 * connections (socketpairs adopted with sk_conn_adopt), so bytes take the
 * library's read path into the service. The input is a script:
 *   byte 0       settings: max-line (16 << (b & 3)), max-rate (b >> 2 & 3:
 *                0 = unlimited), max-queue (small when b & 0x10, so drops
 *                happen)
 *   then steps   op byte, len byte, len bytes of data
 *                op & 3: the member (3: none, only run the loop);
 *                op >> 2 & 3: 0 send, 1 send then read the replies,
 *                2 shut the member's sending side (EOF), 3 reset it.
 * After each step the loop runs one iteration. At the end the room drains
 * as on SIGINT, and everything is freed (LeakSanitizer checks). */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../services/chat/chat.h"

#define MEMBERS 3

/* The log lines are services/common.c's (the table of every service is
 * registry.c, which this target does not pull in). */

static sk_conn_callbacks chat_cbs;
static sk_conn *conns[MEMBERS];
static int peers[MEMBERS];

/* The room's on_close, then the slot forgotten: the connection is freed
 * once on_close returns. */
static void on_close(sk_conn *c, int err)
{
    chat_cbs.on_close(c, err);
    for (int i = 0; i < MEMBERS; i++)
        if (conns[i] == c)
            conns[i] = NULL;
}

static void on_tick(sk_timer *t, void *ud)
{
    (void)t;
    sk_loop_stop(ud);
}

/* One loop iteration: what is readable is read, queued output written,
 * closes finished. */
static void step(sk_loop *loop, sk_timer *tick)
{
    sk_timer_start(tick, 0, 0);
    if (sk_loop_run(loop) < 0)
        abort();
}

static void read_replies(int fd)
{
    uint8_t buf[65536];
    while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) > 0) {
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t settings = data[0];
    data++;
    size--;

    svc_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.name = "chat";
    ctx.max_line = 16u << (settings & 3);
    ctx.max_rate = (settings >> 2) & 3;
    ctx.max_queue = (settings & 0x10) ? 512 : 1u << 20;
    ctx.line_timeout_ms = 30000;

    sk_loop *loop = NULL;
    sk_timer *tick = NULL;
    if (sk_loop_new(&loop) < 0 || sk_timer_new(loop, on_tick, loop, &tick) < 0)
        abort();
    char err[200];
    if (svc_chat.start(&ctx, loop, err, sizeof err) < 0)
        abort();
    svc_chat.stream(&chat_cbs);
    sk_conn_callbacks cbs = chat_cbs;
    cbs.on_close = on_close;
    sk_conn_opts opts;
    sk_conn_opts_init(&opts);
    opts.framing = svc_chat.fixed_framing;
    for (int i = 0; i < MEMBERS; i++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
            abort();
        peers[i] = sv[1];
        if (sk_conn_adopt(loop, sv[0], &opts, &cbs, &ctx, &conns[i]) < 0)
            abort();
    }
    step(loop, tick); /* on_open: every member joins */

    while (size >= 2) {
        uint8_t op = data[0];
        size_t len = data[1];
        data += 2;
        size -= 2;
        if (len > size)
            len = size;
        int who = op & 3;
        int what = (op >> 2) & 3;
        if (who < MEMBERS && peers[who] >= 0) {
            if (what <= 1 && len > 0 &&
                send(peers[who], data, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN &&
                errno != EPIPE && errno != ECONNRESET)
                abort();
            if (what == 2)
                shutdown(peers[who], SHUT_WR);
            if (what == 3) {
                close(peers[who]);
                peers[who] = -1;
            }
        }
        data += len;
        size -= len;
        step(loop, tick);
        if (who < MEMBERS && what == 1 && peers[who] >= 0)
            read_replies(peers[who]);
    }

    /* As on SIGINT: every member told and closed; a few iterations flush. */
    svc_chat.drain(&ctx);
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < MEMBERS; j++)
            if (peers[j] >= 0)
                read_replies(peers[j]);
        step(loop, tick);
    }
    sk_timer_free(tick);
    sk_loop_free(loop);
    svc_chat.stop(&ctx);
    for (int i = 0; i < MEMBERS; i++) {
        if (peers[i] >= 0)
            close(peers[i]);
        peers[i] = -1;
        conns[i] = NULL;
    }
    return 0;
}
