/* exec_term.c — the client's terminal for `sockit exec -t` (exec_term.h).
 * Raw mode is entered once and undone by exec_term_restore, which every
 * way out of `sockit exec` calls (normal end, remote end, lost connection,
 * SIGTERM and SIGHUP, which arrive through the client's signalfd, and
 * errors); atexit covers an exit() from anywhere else. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "exec_term.h"

static struct termios saved;
static bool raw_on;
static bool hooked;

void exec_term_restore(void)
{
    if (!raw_on)
        return;
    raw_on = false;
    /* TCSADRAIN: what we wrote is shown first, then the settings return. */
    while (tcsetattr(STDIN_FILENO, TCSADRAIN, &saved) < 0 && errno == EINTR) {
    }
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
    if (tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) < 0) {
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
