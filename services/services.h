/* services.h — the server-side services of `sockit serve`, each written on the
 * public libsockit API only, and what they share (context, logging). */
#ifndef SOCKIT_SERVICES_H
#define SOCKIT_SERVICES_H

#include <stdbool.h>
#include <stddef.h>

#include "sockit.h"

/* Per-listener context, shared read-only by the worker threads. */
typedef struct svc_ctx {
    const char *name;     /* service name, used in log lines */
    bool quiet;           /* no per-connection log lines */
    enum sk_framing framing;
    const char *message;  /* greet: what to send */
    size_t message_len;
} svc_ctx;

typedef struct svc_def {
    const char *name;
    const char *summary;
    bool framing_choice;  /* accepts --framing */
    /* Fills the stream callbacks (NULL if the service has no stream form). */
    void (*stream)(sk_conn_callbacks *cbs);
    /* Handles one datagram (NULL if the service has no datagram form). */
    sk_dgram_cb datagram;
} svc_def;

/* The services by name; NULL if unknown. */
const svc_def *svc_find(const char *name);
/* Names of every service, comma-separated, for help and errors. */
const char *svc_names(void);

/* Shared per-connection log lines: "<svc> open <peer>" and
 * "<svc> close <peer> in=N out=N reason=TEXT". */
void svc_log_open(sk_conn *c);
void svc_log_close(sk_conn *c, int err);
/* For line framing, tells the peer why its connection is being closed. */
void svc_report_error(sk_conn *c, int err);

extern const svc_def svc_echo, svc_upper, svc_greet;

#endif
