/* lineedit.c — the shared line editor of chat and connect (see lineedit.h). */
#include "lineedit.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>

#include <editline/readline.h>

#include "cli.h"

static const char *g_prompt = "";
static void (*g_on_line)(char *line);
static bool g_active;
static bool g_fresh_line;      /* nothing typed since the last line */
static bool g_eof_typed;       /* Ctrl-D on an empty line */
static struct termios g_saved; /* the terminal as it was before the editor */
static bool g_have_saved;

/* Every key goes through here, so that Ctrl-D on an empty line is seen
 * whatever libedit makes of it: with the terminal kept raw between lines
 * (below), the readline layer no longer recognises it as end of input. */
static int read_byte(unsigned char *c)
{
    for (;;) {
        ssize_t n = read(STDIN_FILENO, c, 1);
        if (n == 1)
            return 0;
        if (n < 0 && errno == EINTR)
            continue;
        return -1;
    }
}

/* One character (libedit takes its value as a wide character, so a
 * multibyte one is decoded here as libedit's own reader would). */
static int read_key(FILE *in)
{
    (void)in;
    unsigned char c;
    if (read_byte(&c) < 0)
        return EOF;
    if (c == 0x04 && (g_fresh_line || rl_end == 0))
        g_eof_typed = true;
    g_fresh_line = false;
    if (c < 0x80)
        return c;
    char seq[MB_LEN_MAX];
    size_t len = 0;
    mbstate_t st;
    memset(&st, 0, sizeof st);
    seq[len++] = (char)c;
    for (;;) {
        wchar_t wc;
        memset(&st, 0, sizeof st);
        size_t r = mbrtowc(&wc, seq, len, &st);
        if (r == (size_t)-2 && len < sizeof seq) {
            if (read_byte(&c) < 0)
                return EOF;
            seq[len++] = (char)c;
            continue;
        }
        if (r == (size_t)-1 || r == (size_t)-2)
            return (unsigned char)seq[0]; /* not a valid sequence: the byte as it is */
        return (int)wc;
    }
}

static void deliver_line(char *line)
{
    g_fresh_line = true;
    g_on_line(line);
}

void cli_edit_start(const char *prompt, void (*on_line)(char *line))
{
    g_prompt = prompt;
    g_on_line = on_line;
    /* The loop handles signals (a signalfd); libedit must not install its own. */
    rl_catch_signals = 0;
    g_have_saved = tcgetattr(STDIN_FILENO, &g_saved) == 0;
    rl_getc_function = read_key;
    g_fresh_line = true;
    g_eof_typed = false;
    rl_callback_handler_install(g_prompt, deliver_line); /* initialises libedit */
    /* In callback mode libedit puts the terminal back in its normal
     * (canonical, echoing) mode after each line and raw again before the
     * next: a key that lands in between is cooked by the kernel (a Ctrl-D
     * there becomes a NUL byte, and libedit then blocks in read() waiting
     * for more). Its "execute" mode is kept raw too, so there is no such
     * instant; the terminal as it was is restored by cli_edit_stop. */
    rl_parse_and_bind("setty -x -icanon -echo");
    g_active = true;
}

void cli_edit_again(void)
{
    if (g_active)
        rl_callback_handler_install(g_prompt, deliver_line);
}

void cli_edit_stop(void)
{
    if (!g_active)
        return;
    g_active = false;
    rl_callback_handler_remove();
    if (g_have_saved)
        tcsetattr(STDIN_FILENO, TCSADRAIN, &g_saved);
}

bool cli_edit_active(void) { return g_active; }

void cli_edit_read(void)
{
    rl_callback_read_char();
    if (g_eof_typed) {
        g_eof_typed = false;
        if (g_active) /* libedit did not hand it over itself */
            deliver_line(NULL);
    }
}

void cli_edit_resize(void) { rl_resize_terminal(); }

/* Columns of the prompt and the typed text before the cursor, for finding
 * where the input area starts when it wraps over several rows. */
static size_t input_columns(void)
{
    size_t cols = strlen(g_prompt);
    if (rl_line_buffer == NULL || rl_point <= 0)
        return cols;
    mbstate_t st;
    memset(&st, 0, sizeof st);
    const char *p = rl_line_buffer, *end = rl_line_buffer + rl_point;
    while (p < end) {
        wchar_t wc;
        size_t n = mbrtowc(&wc, p, (size_t)(end - p), &st);
        if (n == (size_t)-1 || n == (size_t)-2 || n == 0) {
            memset(&st, 0, sizeof st);
            cols++;
            p++;
            continue;
        }
        int w = wcwidth(wc);
        cols += w > 0 ? (size_t)w : 0;
        p += n;
    }
    return cols;
}

/* (libedit's rl_redisplay pushes a ^R into its input and rl_replace_line
 * ignores an empty line, so the GNU recipe of save/replace/redisplay does
 * not work there; erasing by hand and a forced update does.) */
void cli_edit_print(const void *data, size_t len)
{
    if (len == 0)
        return;
    if (g_active) {
        const char *term = getenv("TERM");
        bool ansi = term != NULL && term[0] != '\0' && strcmp(term, "dumb") != 0;
        char clear[64];
        int n;
        if (ansi) {
            struct winsize ws;
            size_t width =
                ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
            size_t up = input_columns() / width;
            n = up ? snprintf(clear, sizeof clear, "\033[%zuA\r\033[J", up)
                   : snprintf(clear, sizeof clear, "\r\033[J");
        } else {
            n = snprintf(clear, sizeof clear, "\r");
        }
        (void)cli_write_all(STDOUT_FILENO, clear, (size_t)n);
    }
    (void)cli_write_all(STDOUT_FILENO, data, len);
    if (g_active)
        rl_forced_update_display();
}

bool cli_edit_terminal_gone(short revents)
{
    if (revents & (POLLHUP | POLLERR | POLLNVAL))
        return true;
    int avail = 0;
    return (revents & POLLIN) && ioctl(STDIN_FILENO, FIONREAD, &avail) == 0 && avail == 0;
}
