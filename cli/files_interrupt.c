/* files_interrupt.c — what Ctrl-C says during `sockit put` and `get`: what
 * is kept and that the same command resumes, instead of a bare "^C". */
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "files.h"

/* Read by the handler: set before it is installed, never changed while it is. */
static const char *g_line;
static bool g_bar;
static int g_dirfd = -1;
static const char *g_unlink;

/* Only async-signal-safe calls: write, unlinkat, _exit. */
static void on_signal(int sig)
{
    if (g_bar) {
        ssize_t w = write(STDERR_FILENO, "\n", 1);
        (void)w;
    }
    if (g_unlink != NULL)
        (void)unlinkat(g_dirfd, g_unlink, 0);
    ssize_t w = write(STDERR_FILENO, g_line, strlen(g_line));
    (void)w;
    _exit(128 + sig);
}

void files_interrupt_arm(const char *line, bool bar, int dirfd, const char *unlink_name)
{
    g_line = line;
    g_bar = bar;
    g_dirfd = dirfd;
    g_unlink = unlink_name;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigfillset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

void files_interrupt_disarm(void)
{
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
}
