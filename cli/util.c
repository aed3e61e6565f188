/* util.c — option value parsing and the stderr log sink of the command. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void cli_err(const char *fmt, ...)
{
    char line[1024];
    int n = snprintf(line, sizeof line, "sockit: ");
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* One write per line: atomic on pipes, so worker threads never mix. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

static void log_sink(enum sk_log_level level, const char *msg, void *ud)
{
    (void)level;
    (void)ud;
    cli_err("%s", msg);
}

void cli_log_to_stderr(enum sk_log_level level) { sk_set_log(log_sink, level, NULL); }

int cli_parse_size(const char *text, size_t *out)
{
    if (text == NULL || *text < '0' || *text > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0)
        return -1;
    unsigned long long mul = 1;
    if (*end == 'K' || *end == 'k')
        mul = 1024ull, end++;
    else if (*end == 'M' || *end == 'm')
        mul = 1024ull * 1024ull, end++;
    else if (*end == 'G' || *end == 'g')
        mul = 1024ull * 1024ull * 1024ull, end++;
    if (*end == 'i' || *end == 'B') /* accept KiB, MB, ... */
        end++;
    if (*end == 'B')
        end++;
    if (*end != '\0' || (v != 0 && mul > UINT64_MAX / v) || v * mul > SIZE_MAX)
        return -1;
    *out = (size_t)(v * mul);
    return 0;
}

int cli_parse_seconds(const char *text, uint32_t *out_ms)
{
    if (text == NULL || ((*text < '0' || *text > '9') && *text != '.'))
        return -1;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || *end != '\0' || v < 0 || v > 86400.0)
        return -1;
    *out_ms = (uint32_t)(v * 1000.0 + 0.5);
    return 0;
}

int cli_parse_uint(const char *text, unsigned min, unsigned max, unsigned *out)
{
    if (text == NULL || *text < '0' || *text > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

int cli_parse_log_level(const char *text, enum sk_log_level *out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcmp(text, names[i]) == 0) {
            *out = (enum sk_log_level)i;
            return 0;
        }
    return -1;
}

bool cli_host_port_slip(const char *cmd, int nargs, char **args)
{
    if (nargs != 2 || args[1][0] == '\0' || strlen(args[1]) > 5 ||
        strspn(args[1], "0123456789") != strlen(args[1]))
        return false;
    cli_err("%s takes one address: write HOST:PORT, as in %s:%s", cmd, args[0], args[1]);
    return true;
}

/* The parser's message says what is wrong with the text; the two slips a
 * new user makes most (a bare port, a socket path without unix:) also get
 * the spelling that works, since the parser cannot guess the intent. */
const char *cli_addr_hint(const char *text)
{
    static char hint[160];
    size_t len = strlen(text);
    if (len > 0 && len <= 5 && strspn(text, "0123456789") == len) {
        snprintf(hint, sizeof hint, " (a bare port needs a host: try 127.0.0.1:%s)", text);
        return hint;
    }
    if (strstr(text, "://") == NULL && strncmp(text, "unix", 4) != 0 &&
        (strchr(text, '/') != NULL || (len > 5 && strcmp(text + len - 5, ".sock") == 0))) {
        snprintf(hint, sizeof hint, " (a socket path needs unix:, as in unix:%.100s)", text);
        return hint;
    }
    return "";
}

int cli_bytes_add(cli_bytes *b, const void *data, size_t len)
{
    if (len > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < len)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (p == NULL)
            return -1;
        b->data = p;
        b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

void cli_bytes_drop(cli_bytes *b, size_t n)
{
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

int cli_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* our stdout may be a descriptor someone else made non-blocking */
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            (void)poll(&pf, 1, -1);
            continue;
        }
        if (n <= 0) {
            if (n == 0)
                errno = EIO;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}
