/* files_progress.c — the progress bar of `sockit put` and `get` on stderr:
 * a bar, bytes, percent, rate and time left, redrawn in place at most ten
 * times a second, and only on a terminal (a log or a pipe gets nothing). */
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "files.h"

#define REDRAW_MS 100

bool progress_wanted(bool quiet) { return !quiet && isatty(STDERR_FILENO); }

static void human(char *out, size_t cap, double v)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(out, cap, "%.0f %s", v, units[u]);
    else
        snprintf(out, cap, "%.1f %s", v, units[u]);
}

static int columns(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

static void draw(progress *p, uint64_t now)
{
    double pct = p->total ? 100.0 * (double)p->done / (double)p->total : 100.0;
    double secs = (double)(now - p->t0) / 1000.0;
    /* The rate of this run: what a resume skipped is not counted. */
    double rate = secs > 0.05 ? (double)(p->done - p->base) / secs : 0.0;
    char done[24], total[24], speed[24], eta[48];
    human(done, sizeof done, (double)p->done);
    human(total, sizeof total, (double)p->total);
    human(speed, sizeof speed, rate);
    if (p->done >= p->total) {
        snprintf(eta, sizeof eta, "%.1f s", secs);
    } else if (rate > 0) {
        unsigned long left = (unsigned long)((double)(p->total - p->done) / rate + 0.5);
        snprintf(eta, sizeof eta, "ETA %lu:%02lu", left / 60, left % 60);
    } else {
        snprintf(eta, sizeof eta, "ETA --:--");
    }
    char tail[160];
    int tl =
        snprintf(tail, sizeof tail, " %3.0f%%  %s / %s  %s/s  %s", pct, done, total, speed, eta);
    /* The line must never reach the last column: a terminal that wraps it
     * would put every redraw on a new line. The label gives way first,
     * then the bar, and the rest is cut at the edge. */
    int width = columns() - 1;
    int label = width - tl - 1;
    if (label > 40)
        label = 40;
    if (label < 8)
        label = 8;
    char line[512];
    int n = snprintf(line, sizeof line, "\r%.*s ", label, p->label);
    /* A bar of fixed width, so it does not jitter as the numbers change;
     * none at all on a narrow terminal. */
    int bar = 20;
    if (width - (n - 1) - tl - 2 < bar + 6)
        bar = 0;
    if (bar > 0) {
        int fill = (int)(pct / 100.0 * bar + 0.5);
        line[n++] = '[';
        for (int i = 0; i < bar; i++)
            line[n++] = i < fill ? '#' : '.';
        line[n++] = ']';
    }
    n += snprintf(line + n, sizeof line - (size_t)n, "%s", tail);
    if (n > width + 1)
        n = width + 1; /* "\r" + width columns */
    n += snprintf(line + n, sizeof line - (size_t)n, "\033[K");
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
    p->last_draw = now;
}

void progress_start(progress *p, bool on, const char *label, uint64_t total, uint64_t already)
{
    memset(p, 0, sizeof *p);
    p->on = on;
    p->label = label;
    p->total = total;
    p->base = p->done = already;
    p->t0 = files_now_ms();
    if (on)
        draw(p, p->t0);
}

void progress_update(progress *p, uint64_t done)
{
    p->done = done;
    if (!p->on)
        return;
    uint64_t now = files_now_ms();
    if (now - p->last_draw >= REDRAW_MS)
        draw(p, now);
}

void progress_end(progress *p, bool ok)
{
    if (!p->on)
        return;
    if (ok)
        p->done = p->total;
    draw(p, files_now_ms());
    ssize_t w = write(STDERR_FILENO, "\n", 1);
    (void)w;
    p->on = false;
}
