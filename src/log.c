/* log.c — error texts and names (sk_strerror, sk_err_name, sk__set_err),
 * the version, and the process-wide log sink. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static sk_log_fn log_fn;
static void *log_ud;
static enum sk_log_level log_max = SK_LOG_INFO;

const char *sk_strerror(int code)
{
    if (code == 0)
        return "success";
    /* Negating INT_MIN would overflow; no errno is anywhere near it. */
    if (code == INT_MIN)
        return "unknown error";
    if (code > 0)
        code = -code;
    /* Texts for the codes the library gives a specific meaning to. */
    switch (-code) {
    case EMSGSIZE: return "message too large";
    case ENOBUFS: return "memory budget exhausted";
    case ETIMEDOUT: return "timed out";
    case ENODATA: return "end of stream";
    case EPROTO: return "protocol error";
    case ECONNRESET: return "connection reset by peer";
    case EPIPE: return "connection closed";
    default: break;
    }
    /* strerror_r (GNU) returns a pointer to a static string for known codes;
     * unknown codes would use the buffer, which we cannot return, so a fixed
     * text stands in for them. */
    char tmp[8];
    const char *s = strerror_r(-code, tmp, sizeof tmp);
    return s == tmp ? "unknown error" : s;
}

const char *sk_err_name(int code)
{
    if (code == 0)
        return "OK";
    if (code == INT_MIN)
        return "UNKNOWN";
    const char *name = strerrorname_np(code < 0 ? -code : code);
    return name != NULL ? name : "UNKNOWN";
}

const char *sk_version(void) { return SK_VERSION; }

unsigned sk_version_number(void) { return SK_VERSION_NUMBER; }

void sk_set_log(sk_log_fn fn, enum sk_log_level max_level, void *ud)
{
    log_fn = fn;
    log_ud = ud;
    log_max = max_level;
}

void sk_log(enum sk_log_level level, const char *fmt, ...)
{
    if (log_fn == NULL || level > log_max)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    log_fn(level, msg, log_ud);
}

bool sk__log_due(uint64_t *last, uint64_t now, uint64_t interval_ms)
{
    if (*last != 0 && now - *last < interval_ms)
        return false;
    *last = now;
    return true;
}

void sk__set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
