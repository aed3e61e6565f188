/* hexdump.c — the hex dump of --hex / --hex-file (see hexdump.h). */
#include "hexdump.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Bytes per line, as hexdump -C and xxd. */
#define PER_LINE 16
/* "> 00000000  " + 16 * "hh " + 2 + "|" + 16 + "|\n" is 81 bytes; lines are
 * gathered up to this much and written in one go. */
#define LINE_MAX_LEN 96 /* 81, and room for offsets past 4 GiB */
#define OUT_BUF      (64 * LINE_MAX_LEN)

struct cli_hexdump {
    int fd;
    bool own_fd;
    pthread_mutex_t lock; /* the offsets, and one write at a time */
    uint64_t off[2];      /* per direction */
};

int cli_hexdump_open(const char *path, cli_hexdump **out)
{
    cli_hexdump *h = calloc(1, sizeof *h);
    if (h == NULL) {
        cli_err("out of memory");
        return -1;
    }
    h->fd = STDERR_FILENO;
    if (path != NULL) {
        h->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600);
        if (h->fd < 0) {
            cli_err("cannot open --hex-file %s: %s", path, strerror(errno));
            free(h);
            return -1;
        }
        h->own_fd = true;
    }
    pthread_mutex_init(&h->lock, NULL);
    *out = h;
    return 0;
}

/* Formats one line of up to PER_LINE bytes into line; returns its length. */
static size_t format_line(char *line, char mark, uint64_t off, const uint8_t *p, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t w = (size_t)snprintf(line, LINE_MAX_LEN, "%c %08llx  ", mark, (unsigned long long)off);
    for (size_t i = 0; i < PER_LINE; i++) {
        if (i < n) {
            line[w++] = hex[p[i] >> 4];
            line[w++] = hex[p[i] & 15];
        } else {
            line[w++] = ' ';
            line[w++] = ' ';
        }
        line[w++] = ' ';
        if (i == 7)
            line[w++] = ' ';
    }
    line[w++] = ' ';
    line[w++] = '|';
    for (size_t i = 0; i < n; i++)
        line[w++] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '.';
    line[w++] = '|';
    line[w++] = '\n';
    return w;
}

/* Writes the lines of len bytes starting at offset off; the caller holds
 * the lock. buf gathers lines (a label line may be in it already). */
static void dump_locked(cli_hexdump *h, enum cli_hex_dir dir, uint64_t off, const uint8_t *p,
                        size_t len, char *buf, size_t used)
{
    for (size_t i = 0; i < len; i += PER_LINE) {
        size_t n = len - i < PER_LINE ? len - i : PER_LINE;
        if (used + LINE_MAX_LEN > OUT_BUF) {
            /* a dump that cannot be written must not stop the traffic */
            (void)cli_write_all(h->fd, buf, used);
            used = 0;
        }
        used += format_line(buf + used, dir == CLI_HEX_OUT ? '>' : '<', off + i, p + i, n);
    }
    (void)cli_write_all(h->fd, buf, used);
}

void cli_hexdump_write(cli_hexdump *h, enum cli_hex_dir dir, const void *data, size_t len)
{
    if (h == NULL || len == 0)
        return;
    char buf[OUT_BUF];
    pthread_mutex_lock(&h->lock);
    uint64_t off = h->off[dir];
    h->off[dir] += len;
    dump_locked(h, dir, off, data, len, buf, 0);
    pthread_mutex_unlock(&h->lock);
}

void cli_hexdump_chunk(cli_hexdump *h, enum cli_hex_dir dir, uint64_t off, const char *label,
                       const void *data, size_t len)
{
    if (h == NULL || len == 0)
        return;
    char buf[OUT_BUF];
    /* The label is bounded so that it and one line always fit. */
    int n = snprintf(buf, OUT_BUF - LINE_MAX_LEN, "# %s\n", label);
    size_t used = n < 0 ? 0 : (size_t)n;
    if (used >= OUT_BUF - LINE_MAX_LEN) {
        used = OUT_BUF - LINE_MAX_LEN - 1;
        buf[used - 1] = '\n';
    }
    pthread_mutex_lock(&h->lock);
    dump_locked(h, dir, off, data, len, buf, used);
    pthread_mutex_unlock(&h->lock);
}

void cli_hexdump_mark(cli_hexdump *h, const char *what)
{
    if (h == NULL)
        return;
    char line[300];
    int n = snprintf(line, sizeof line, "# %s\n", what);
    pthread_mutex_lock(&h->lock);
    h->off[0] = h->off[1] = 0;
    (void)cli_write_all(h->fd, line,
                        n < 0                     ? 0
                        : (size_t)n < sizeof line ? (size_t)n
                                                  : sizeof line - 1);
    pthread_mutex_unlock(&h->lock);
}

void cli_hexdump_close(cli_hexdump *h)
{
    if (h == NULL)
        return;
    if (h->own_fd)
        close(h->fd);
    pthread_mutex_destroy(&h->lock);
    free(h);
}
