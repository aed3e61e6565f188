/* common.c — what every service shares: the table of services, and the
 * per-connection open/close log lines. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "services.h"

static const svc_def *const all[] = {&svc_echo, &svc_upper, &svc_greet, &svc_chat, &svc_exec,
                                     &svc_files};

const svc_def *svc_find(const char *name)
{
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (strcmp(all[i]->name, name) == 0)
            return all[i];
    return NULL;
}

const char *svc_names(void) { return "echo, upper, greet, chat, exec, files"; }

void svc_log_open(sk_conn *c)
{
    const svc_ctx *ctx = sk_conn_data(c);
    if (!ctx->quiet)
        sk_log(SK_LOG_INFO, "%s open %s", ctx->name, sk_conn_peer(c));
}

void svc_log_close(sk_conn *c, int err)
{
    const svc_ctx *ctx = sk_conn_data(c);
    const char *reason = sk_conn_reason(c);
    if (reason[0] == '\0')
        reason = err ? sk_strerror(err) : "closed";
    /* Errors are worth a line even with --quiet; orderly closes are not. */
    if (!ctx->quiet || (err != 0 && err != -ETIMEDOUT))
        sk_log(err && err != -ETIMEDOUT ? SK_LOG_WARN : SK_LOG_INFO,
               "%s close %s in=%llu out=%llu reason=%s", ctx->name, sk_conn_peer(c),
               (unsigned long long)sk_conn_bytes_in(c), (unsigned long long)sk_conn_bytes_out(c),
               reason);
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
