/* exec_term.c — the client's terminal for `sockit exec -t` (exec_term.h).
 * Raw mode is entered once and undone by exec_term_restore, which every
 * way out of `sockit exec` calls (normal end, remote end, lost connection,
 * errors); atexit covers an exit() from anywhere else, and SIGTERM and
 * SIGHUP get a handler (exec_term_exit_on) that restores and exits even
 * while the client is blocked writing to a terminal nobody reads. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "exec_term.h"

static struct termios saved;
static volatile sig_atomic_t raw_on;
static bool hooked;

void exec_term_restore(void)
{
    if (!raw_on)
        return;
    raw_on = false;
    /* TCSANOW, not TCSADRAIN: draining waits for whoever reads the
     * terminal, and one that stopped reading would keep us here. */
    while (tcsetattr(STDIN_FILENO, TCSANOW, &saved) < 0 && errno == EINTR) {
    }
}

/* Async-signal-safe: tcsetattr and _exit are. No message: stderr is
 * usually the same terminal, and one nobody reads would block the write. */
static void on_fatal(int sig)
{
    if (raw_on)
        (void)tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    _exit(128 + sig);
}

void exec_term_exit_on(int sig)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fatal;
    sigfillset(&sa.sa_mask);
    sigaction(sig, &sa, NULL);
}

int exec_term_raw(void)
{
    if (raw_on || !isatty(STDIN_FILENO))
        return 0;
    if (tcgetattr(STDIN_FILENO, &saved) < 0) {
        cli_err("cannot read the terminal's settings: %s", strerror(errno));
        return -1;
    }
    struct termios raw = saved;
    cfmakeraw(&raw);
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    if (!hooked) {
        hooked = true;
        atexit(exec_term_restore);
    }
    raw_on = true;
    if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) < 0) {
        raw_on = false;
        cli_err("cannot put the terminal in raw mode: %s", strerror(errno));
        return -1;
    }
    return 0;
}

void exec_term_size(exec_winsize *ws)
{
    struct winsize w;
    *ws = (exec_winsize){.rows = 24, .cols = 80};
    if ((ioctl(STDIN_FILENO, TIOCGWINSZ, &w) == 0 || ioctl(STDOUT_FILENO, TIOCGWINSZ, &w) == 0) &&
        w.ws_row > 0 && w.ws_col > 0 && w.ws_row <= EXEC_WIN_MAX && w.ws_col <= EXEC_WIN_MAX)
        *ws = (exec_winsize){w.ws_row, w.ws_col, w.ws_xpixel, w.ws_ypixel};
}

const char *exec_term_name(void)
{
    const char *t = getenv("TERM");
    if (t == NULL || t[0] == '\0' || strlen(t) > EXEC_TERM_MAX ||
        strspn(t, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-") !=
            strlen(t))
        return "xterm";
    return t;
}
