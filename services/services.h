/* services.h — the server-side services of `sockit serve`, each written on the
 * public libsockit API only, and what they share (context, logging). */
#ifndef SOCKIT_SERVICES_H
#define SOCKIT_SERVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sockit.h"

/* Per-listener context, shared read-only by the worker threads. */
typedef struct svc_ctx {
    const char *name; /* service name, used in log lines */
    bool quiet;       /* no per-connection log lines */
    enum sk_framing framing;
    const char *message; /* greet: what to send */
    size_t message_len;
    /* chat (services/chat/) */
    size_t max_line;          /* longest line accepted, without its "\n" */
    uint32_t line_timeout_ms; /* a started line must end within this (--frame-timeout) */
    size_t max_queue;         /* a member whose queued output passes this is dropped */
    unsigned max_rate;        /* lines per second per member; 0: unlimited */
    size_t max_memory;        /* --max-memory (chat: its history takes at most a quarter) */
    void *state;              /* a service's state (the chat room, files' root), set by start */
    /* exec (services/exec/) */
    const struct exec_opts *exec; /* its options; the service object is state */
    /* files (services/files/) */
    const struct files_opts *files; /* its options; the service object is state */
} svc_ctx;

/* One command-line option of a service (nginx's module command tables are
 * the model): `sockit serve` builds its getopt table, its --help text and
 * its "applies to the X service only" errors from these. */
enum svc_opt_kind {
    SVC_OPT_FLAG,    /* no value: sets a bool */
    SVC_OPT_TEXT,    /* a string: sets a const char * (argv's, kept as is) */
    SVC_OPT_UINT,    /* a count in [min, max]: sets an unsigned */
    SVC_OPT_SECONDS, /* seconds (fractions allowed): sets a uint32_t in ms */
    SVC_OPT_BYTES,   /* a size (K, M, G suffixes): sets a uint64_t */
    SVC_OPT_NOTE     /* no option: help lines about a common option */
};

typedef struct svc_opt {
    const char *name; /* without "--"; NULL ends the table */
    enum svc_opt_kind kind;
    size_t off;        /* offsetof into the service's options struct */
    unsigned min, max; /* UINT: the range; SECONDS, BYTES: min 1 refuses 0 */
    const char *help;  /* its --help lines, each ending in "\n"; "" if none */
} svc_opt;

typedef struct svc_def {
    const char *name;
    const char *summary;
    bool framing_choice; /* accepts --framing */
    /* Fills the stream callbacks (NULL if the service has no stream form). */
    void (*stream)(sk_conn_callbacks *cbs);
    /* Handles one datagram (NULL if the service has no datagram form). */
    sk_dgram_cb datagram;
    /* The framing when framing_choice is false (chat reads raw and splits
     * lines itself). */
    enum sk_framing fixed_framing;
    /* Its own default --max-line (0: the common default). */
    size_t max_line;
    /* Runs on worker 0's loop only, whatever --workers says: its state is
     * one loop's, not shared between threads (chat: one room, one order). */
    bool one_loop;
    /* Optional hooks, all on worker 0's thread (a service on every worker,
     * like files, makes what start shares with the other threads safe to
     * share):
     * start before the listener opens (0 or -1 with err filled), drain on
     * SIGINT/SIGTERM before its connections are drained, stop after the
     * loops are freed (connections are gone by then, without on_close). */
    int (*start)(svc_ctx *ctx, sk_loop *loop, char *err, size_t errlen);
    void (*drain)(svc_ctx *ctx);
    void (*stop)(svc_ctx *ctx);
    /* Adjusts the stream options of its listeners after the command line's
     * (a fixed framing, buffer marks); NULL: none. */
    void (*conn_opts)(sk_conn_opts *o);
    /* Its command-line options, NULL if none: the table, the title of its
     * --help section, where the values go (one struct of the service's
     * own, for the whole process) and how that struct starts. */
    const svc_opt *opts;
    const char *opts_title;
    void *opts_store;
    void (*opts_init)(void *store);
} svc_def;

/* The services by name; NULL if unknown (registry.c). */
const svc_def *svc_find(const char *name);
/* The i-th service of the table, in the order of help; NULL past the end. */
const svc_def *svc_at(size_t i);
/* Names of every service, comma-separated, for help and errors. */
const char *svc_names(void);

/* Shared per-connection log lines: "<svc> open <peer>" and
 * "<svc> close <peer> in=N out=N reason=TEXT". */
void svc_log_open(sk_conn *c);
void svc_log_close(sk_conn *c, int err);
/* The close line for a connection whose data is not the svc_ctx (exec,
 * files, chat: their sessions): name and quiet given. */
void svc_log_closed(sk_conn *c, int err, const char *name, bool quiet);
/* For line framing, tells the peer why its connection is being closed. */
void svc_report_error(sk_conn *c, int err);

extern const svc_def svc_echo, svc_upper, svc_greet;
extern const svc_def svc_chat;
extern const svc_def svc_exec;
extern const svc_def svc_files;
extern const svc_def svc_relay;

#endif
