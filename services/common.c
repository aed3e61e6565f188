/* common.c — what every service shares: the per-connection open/close
 * log lines and the line-framing error report. (The table of services is
 * registry.c: it sits above the services, this file below them.) */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "services.h"

void svc_log_open(sk_conn *c)
{
    const svc_ctx *ctx = sk_conn_data(c);
    if (!ctx->quiet)
        sk_log(SK_LOG_INFO, "%s open %s", ctx->name, sk_conn_peer(c));
}

void svc_log_closed(sk_conn *c, int err, const char *name, bool quiet)
{
    const char *reason = sk_conn_reason(c);
    if (reason[0] == '\0')
        reason = err ? sk_strerror(err) : "closed";
    /* Errors are worth a line even with --quiet; orderly closes are not. */
    if (!quiet || (err != 0 && err != -ETIMEDOUT))
        sk_log(err && err != -ETIMEDOUT ? SK_LOG_WARN : SK_LOG_INFO,
               "%s close %s in=%llu out=%llu reason=%s", name, sk_conn_peer(c),
               (unsigned long long)sk_conn_bytes_in(c), (unsigned long long)sk_conn_bytes_out(c),
               reason);
}

void svc_log_close(sk_conn *c, int err)
{
    const svc_ctx *ctx = sk_conn_data(c);
    svc_log_closed(c, err, ctx->name, ctx->quiet);
}

void svc_report_error(sk_conn *c, int err)
{
    if (sk_conn_framing(c) != SK_FRAMING_LINE)
        return; /* raw has no messages and frame echo has no error channel */
    char line[200];
    snprintf(line, sizeof line, "error: %s", sk_conn_reason(c));
    (void)err;
    sk_conn_send_msg(c, line, strlen(line));
}
