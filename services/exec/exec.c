/* exec.c — the exec service, a remote command runner
 * made safe: a hello, mutual HMAC-SHA256 authentication with a shared token,
 * then commands run directly (a shell only with --allow-shell) in their own
 * session, contained (a cgroup each, or the child subreaper's sweep: what a
 * command leaves behind dies with it), with a minimal environment, stdout
 * and stderr streamed back
 * as typed frames while they are produced, stdin forwarded, and the exit
 * status at the end. Messages: docs/PROTOCOL.md ("exec").
 *
 * It runs on worker 0's loop only: SIGCHLD is process-wide and one loop
 * reaps (sk_proc_init), and the work is in the children, not in the loop.
 * Memory per connection is bounded: output waits in the child's pipe (we
 * stop reading it) while the client is slow, and at most one stdin frame
 * waits for the child's stdin pipe (we stop reading the client). A command
 * on a pseudo-terminal (exec -t, protocol version 2) is the same with the
 * master in place of the pipes: one output stream, read only while the
 * client keeps up. */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "../proto/handshake.h"
#include "../proto/proto.h"
#include "../services.h"
#include "exec.h"

#define SERVICE "exec"
/* Largest STDOUT/STDERR payload: one read of a pipe (a pipe holds 64 KiB). */
#define CHUNK (64u * 1024u)
/* Output queued to one client above which its command's pipes are no longer
 * read: the command then blocks on its full pipe, so a slow client costs
 * this much server memory, not the command's whole output. Also the
 * connection's high-water mark, so on_drain tells us when to resume. */
#define OUT_HIGH (256u * 1024u)
/* Pipe reads per readiness event, so one chatty command cannot starve the
 * other connections of the loop. */
#define READS_PER_EVENT 4
/* After SIGTERM (timeout, client gone, output limit), SIGKILL follows this
 * much later if the command is still there. */
#define KILL_GRACE_MS 2000
/* After the command's leader exited, how long its pipes may stay open
 * (held by a process that escaped the group with setsid) before we stop
 * reading them and report the exit. */
#define EXIT_DRAIN_MS 2000
struct exec_svc {
    exec_opts o;
    uint8_t token[SK_TOKEN_MAX];
    size_t token_len;
    char **allow;         /* --allow-cmd, NULL-terminated, or NULL: any program */
    char **envp;          /* the commands' environment, NULL-terminated */
    proto_preauth pre;    /* connections before AUTH_OK (proto/preauth.c) */
    unsigned procs;       /* commands not yet reaped */
    proto_penalties pen;  /* failed authentications per address (proto/preauth.c) */
    proto_hs_service hs;  /* what the handshake needs (handshake.c) */
    uint8_t chunk[CHUNK]; /* scratch for pipe reads: one loop, one at a time */
    struct sess *sessions;
};

enum state {
    S_HELLO, /* in the handshake (hello, proof, or a failed proof's delay) */
    S_READY, /* authenticated; waiting for a REQUEST */
    S_RUN,   /* a command runs (or its output is still being read) */
    S_GONE   /* the client left; waiting for the command to be reaped */
};

enum timer_kind { T_NONE, T_DELAY, T_DEADLINE, T_KILL, T_DRAIN, T_IDLE };

typedef struct sess {
    exec_svc *svc;
    const svc_ctx *ctx;
    sk_conn *conn; /* NULL once the client has gone */
    enum state state;
    proto_hs hs; /* the handshake, its pre-authentication slot */
    sk_timer *timer;
    enum timer_kind tkind;
    /* the command */
    sk_proc *proc; /* NULL once reaped (or never) */
    pid_t pgid;    /* its process group (the leader's pid) */
    bool exited;
    int status;
    bool pty; /* the command runs on a terminal: fd_out is its master, fd_in a dup of it */
    int fd_in, fd_out, fd_err;
    sk_io *io_in, *io_out, *io_err;
    bool pipes_paused; /* client output over OUT_HIGH */
    uint8_t *pend;     /* stdin bytes the pipe did not take yet */
    size_t pend_len, pend_off;
    bool stdin_eof;   /* close the child's stdin once pend is written */
    bool close_after; /* the client half-closed: close after this command */
    uint64_t out_total;
    uint64_t started;
    uint32_t limit_ms; /* its time limit; 0: none */
    int end_code;      /* an ERROR to send instead of EXIT, or 0 */
    char end_text[PROTO_ERROR_TEXT_MAX];
    char what[120]; /* the command, for the log */
    struct sess *prev, *next;
} sess;

static void maybe_finish(sess *s);

/* ------------------------------------------------------------- helpers */

static const char *peer(const sess *s) { return s->conn ? sk_conn_peer(s->conn) : "(gone)"; }

static void send_error(sess *s, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void send_error(sess *s, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    proto_send_verror(s->conn, code, fmt, ap);
    va_end(ap);
}

/* A peer that breaks the protocol is told why and dropped; whatever it was
 * running is killed when the connection's on_close runs. */
static void fail(sess *s, int code, int err, const char *why)
{
    proto_fail(s->conn, code, err, why);
}

/* Appends one byte of a command to a log text, escaped if it is not
 * printable ASCII; false when it does not fit in room. */
static bool put_escaped(char *out, size_t *n, size_t room, unsigned char c)
{
    bool plain = c >= 0x20 && c < 0x7f && c != '\\';
    if (*n + (plain ? 1 : 4) > room)
        return false;
    if (plain)
        out[(*n)++] = (char)c;
    else
        *n += (size_t)snprintf(out + *n, 5, "\\x%02x", c);
    return true;
}

/* Log text for a command: its words, bytes outside printable ASCII
 * escaped, cut with "..." where the buffer (at least 16 bytes) ends. */
static void describe(char *out, size_t cap, char *const *argv, bool shell)
{
    size_t n = 0, room = cap - 4; /* keep 4 for "...\0" */
    bool fits = true;
    if (shell)
        n += (size_t)snprintf(out, cap, "sh: ");
    for (size_t i = 0; argv[i] && fits; i++) {
        if (i > 0)
            fits = put_escaped(out, &n, room, ' ');
        for (const unsigned char *c = (const unsigned char *)argv[i]; *c && fits; c++)
            fits = put_escaped(out, &n, room, *c);
    }
    memcpy(out + n, fits ? "" : "...", fits ? 1 : 4);
}

static void start_timer(sess *s, enum timer_kind kind, uint64_t ms)
{
    s->tkind = kind;
    sk_timer_start(s->timer, ms, 0);
}

static void stop_timer(sess *s)
{
    s->tkind = T_NONE;
    sk_timer_stop(s->timer);
}

/* Between requests (no command running) a session may stay quiet for
 * --idle-timeout (default EXEC_DEFAULT_IDLE_MS), then it is closed: an
 * authenticated client cannot hold a connection forever for nothing. */
static void arm_idle(sess *s)
{
    if (s->state == S_READY && s->conn != NULL && s->svc->o.idle_ms)
        start_timer(s, T_IDLE, s->svc->o.idle_ms);
}

/* ------------------------------------------------------------- pipes */

static void close_fd(int *fd, sk_io **io)
{
    if (*io) {
        sk_io_free(*io);
        *io = NULL;
    }
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void close_stdin(sess *s)
{
    bool was_pending = s->pend != NULL;
    free(s->pend);
    s->pend = NULL;
    s->pend_len = s->pend_off = 0;
    close_fd(&s->fd_in, &s->io_in);
    /* Reading the client was paused while a stdin frame waited. */
    if (was_pending && s->conn)
        sk_conn_resume(s->conn);
}

static void set_pipes_events(sess *s, int events)
{
    if (s->io_out)
        (void)sk_io_set_events(s->io_out, events);
    if (s->io_err)
        (void)sk_io_set_events(s->io_err, events);
}

/* SIGTERM to the whole group now, SIGKILL after the grace period. */
static void kill_command(sess *s)
{
    if (s->proc == NULL || s->exited)
        return;
    (void)sk_proc_kill(s->proc, SIGTERM);
    start_timer(s, T_KILL, KILL_GRACE_MS);
}

static void output_limit(sess *s)
{
    if (s->end_code == 0) {
        s->end_code = PE_OUTPUT;
        snprintf(s->end_text, sizeof s->end_text,
                 "output limit reached (--max-output %llu bytes): command stopped",
                 (unsigned long long)s->svc->o.max_output);
    }
    /* Our read ends close: the command gets EPIPE (or SIGPIPE) at its next
     * write, and the group is signalled besides. */
    close_fd(&s->fd_out, &s->io_out);
    close_fd(&s->fd_err, &s->io_err);
    kill_command(s);
}

static void on_pipe(sk_io *io, int fd, int ready, void *ud)
{
    (void)ready;
    sess *s = ud;
    bool is_out = io == s->io_out;
    uint8_t type = is_out ? PT_EXEC_STDOUT : PT_EXEC_STDERR;
    exec_svc *svc = s->svc;
    for (int i = 0; i < READS_PER_EVENT && !s->pipes_paused; i++) {
        size_t room = CHUNK;
        uint64_t max = svc->o.max_output;
        if (max) {
            /* One byte more than is left: getting it means the limit is
             * passed, not merely reached. */
            uint64_t left = max > s->out_total ? max - s->out_total : 0;
            if (left + 1 < room)
                room = (size_t)left + 1;
        }
        ssize_t n = read(fd, svc->chunk, room);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            /* End of output (or a read error, which ends it the same way). */
            if (is_out)
                close_fd(&s->fd_out, &s->io_out);
            else
                close_fd(&s->fd_err, &s->io_err);
            maybe_finish(s);
            return;
        }
        size_t len = (size_t)n;
        bool over = false;
        if (max && s->out_total + len > max) {
            len = (size_t)(max - s->out_total);
            over = true;
        }
        if (len > 0) {
            s->out_total += len;
            struct iovec iov[2] = {{&type, 1}, {svc->chunk, len}};
            if (sk_conn_send_msgv(s->conn, iov, 2) < 0)
                return; /* the connection is closing; on_close cleans up */
        }
        if (over) {
            output_limit(s);
            return;
        }
        if (sk_conn_queued(s->conn) > OUT_HIGH) {
            /* The client is slower than the command: leave the rest in the
             * pipe until on_drain. */
            s->pipes_paused = true;
            set_pipes_events(s, 0);
            return;
        }
    }
}

static void on_stdin_writable(sk_io *io, int fd, int ready, void *ud)
{
    (void)io;
    (void)ready;
    sess *s = ud;
    while (s->pend_off < s->pend_len) {
        ssize_t n = write(fd, s->pend + s->pend_off, s->pend_len - s->pend_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n < 0) {
            close_stdin(s); /* EPIPE: the command closed its stdin */
            return;
        }
        s->pend_off += (size_t)n;
    }
    free(s->pend);
    s->pend = NULL;
    s->pend_len = s->pend_off = 0;
    sk_io_free(s->io_in);
    s->io_in = NULL;
    if (s->conn)
        sk_conn_resume(s->conn);
    if (s->stdin_eof)
        close_stdin(s);
}

/* One STDIN frame for the command. What the pipe does not take at once is
 * kept (one frame at most: reading the client pauses until it is written),
 * so stdin costs bounded memory however fast the client sends. */
static void feed_stdin(sess *s, const uint8_t *data, size_t len)
{
    if (s->fd_in < 0 || s->stdin_eof)
        return; /* the command closed its stdin, or ended: discard */
    size_t off = 0;
    while (off < len) {
        ssize_t n = write(s->fd_in, data + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n < 0) {
            close_stdin(s);
            return;
        }
        off += (size_t)n;
    }
    if (off == len)
        return;
    s->pend = malloc(len - off);
    if (s->pend == NULL || sk_io_new(sk_conn_loop(s->conn), s->fd_in, SK_WRITABLE,
                                     on_stdin_writable, s, &s->io_in) < 0) {
        free(s->pend);
        s->pend = NULL;
        fail(s, PE_PROTOCOL, -ENOMEM, "server out of memory");
        return;
    }
    memcpy(s->pend, data + off, len - off);
    s->pend_len = len - off;
    s->pend_off = 0;
    sk_conn_pause(s->conn);
}

/* ------------------------------------------------------------ commands */

static void sess_destroy(sess *s)
{
    close_fd(&s->fd_out, &s->io_out);
    close_fd(&s->fd_err, &s->io_err);
    close_fd(&s->fd_in, &s->io_in);
    free(s->pend);
    sk_timer_free(s->timer);
    if (s->proc) {
        /* Only exec_svc_free destroys a session whose command runs. */
        sk_proc_free(s->proc);
    }
    if (s->prev)
        s->prev->next = s->next;
    else
        s->svc->sessions = s->next;
    if (s->next)
        s->next->prev = s->prev;
    free(s);
}

static void on_exit_cb(sk_proc *p, int status, void *ud)
{
    sess *s = ud;
    sk_proc_free(p);
    s->proc = NULL;
    s->exited = true;
    s->status = status;
    s->svc->procs--;
    if (s->tkind == T_KILL || s->tkind == T_DEADLINE)
        stop_timer(s);
    close_stdin(s);
    if (s->state == S_GONE) {
        sess_destroy(s);
        return;
    }
    if (s->fd_out >= 0 || s->fd_err >= 0)
        start_timer(s, T_DRAIN, EXIT_DRAIN_MS);
    maybe_finish(s);
}

/* The command is over once its leader has been reaped and both output pipes
 * have ended: then the client gets EXIT (or the ERROR that stopped it), and
 * the connection is ready for another REQUEST. */
static void maybe_finish(sess *s)
{
    if (s->state != S_RUN || !s->exited || s->fd_out >= 0 || s->fd_err >= 0)
        return;
    stop_timer(s);
    double secs = (double)(sk_loop_now(sk_conn_loop(s->conn)) - s->started) / 1000.0;
    const svc_ctx *ctx = s->ctx;
    if (s->end_code) {
        send_error(s, s->end_code, "%s", s->end_text);
        if (!ctx->quiet)
            sk_log(SK_LOG_INFO, "%s %s done: %s (%.3f s, %llu bytes out)", ctx->name, peer(s),
                   proto_error_name(s->end_code), secs, (unsigned long long)s->out_total);
    } else {
        bool sig = WIFSIGNALED(s->status);
        int value = sig ? WTERMSIG(s->status) : WEXITSTATUS(s->status);
        uint8_t msg[3] = {PT_EXEC_EXIT, sig ? 1 : 0, (uint8_t)value};
        (void)sk_conn_send_msg(s->conn, msg, sizeof msg);
        if (!ctx->quiet)
            sk_log(SK_LOG_INFO, "%s %s done: %s %d (%.3f s, %llu bytes out)", ctx->name, peer(s),
                   sig ? "signal" : "exit", value, secs, (unsigned long long)s->out_total);
    }
    s->state = S_READY;
    s->pgid = 0;
    s->exited = false;
    s->end_code = 0;
    s->out_total = 0;
    s->pipes_paused = false;
    s->stdin_eof = false;
    s->pty = false;
    if (s->close_after)
        sk_conn_close(s->conn);
    else
        arm_idle(s);
}

/* Programs that run other programs given in their arguments or input:
 * --allow-cmd checks argv[0] only, so allowing one of these allows
 * anything (GTFOBins lists many more). A name ending in '*' is a prefix. */
static const char *const runners[][2] = {
    {"sh", "a shell runs any program"},
    {"bash", "a shell runs any program"},
    {"dash", "a shell runs any program"},
    {"zsh", "a shell runs any program"},
    {"ksh", "a shell runs any program"},
    {"busybox", "its sh applet runs any program"},
    {"env", "it runs the program named in its arguments"},
    {"xargs", "it runs the program named in its arguments"},
    {"nice", "it runs the program named in its arguments"},
    {"nohup", "it runs the program named in its arguments"},
    {"timeout", "it runs the program named in its arguments"},
    {"setsid", "it runs the program named in its arguments"},
    {"sudo", "it runs the program named in its arguments"},
    {"find", "-exec runs any program"},
    {"tar", "--checkpoint-action=exec= and --to-command run any program"},
    {"awk", "system() runs any program"},
    {"gawk", "system() runs any program"},
    {"sed", "GNU sed's e command runs any program"},
    {"make", "a makefile runs any program"},
    {"git", "hooks and -c options run any program"},
    {"python*", "an interpreter runs any program"},
    {"perl*", "an interpreter runs any program"},
    {"ruby*", "an interpreter runs any program"},
    {"node*", "an interpreter runs any program"},
    {"php*", "an interpreter runs any program"},
    {"lua*", "an interpreter runs any program"},
};

/* Why allowing prog allows any program, or NULL. Looks at the base name:
 * "/usr/bin/env" is env. */
static const char *runner_reason(const char *prog)
{
    const char *base = strrchr(prog, '/');
    base = base ? base + 1 : prog;
    for (size_t i = 0; i < sizeof runners / sizeof runners[0]; i++) {
        const char *name = runners[i][0];
        size_t n = strlen(name);
        bool prefix = name[n - 1] == '*';
        if (prefix ? strncmp(base, name, n - 1) == 0 : strcmp(base, name) == 0)
            return runners[i][1];
    }
    return NULL;
}

/* At start: one WARNING per allowed program that can run others. */
static void warn_runners(const char *name, char *const *allow)
{
    for (size_t i = 0; allow && allow[i]; i++) {
        const char *why = runner_reason(allow[i]);
        if (why != NULL)
            sk_log(SK_LOG_WARN,
                   "%s: warning: --allow-cmd %s allows any program: %s "
                   "(--allow-cmd checks the program only, not its arguments)",
                   name, allow[i], why);
    }
}

static bool allowed(const exec_svc *svc, const char *prog)
{
    if (svc->allow == NULL)
        return true;
    /* Exact match only: "ls" allows "ls" found through the fixed PATH, and
     * "/bin/ls" allows that file. Matching base names would let "ls" admit
     * "/tmp/anything/ls". */
    for (size_t i = 0; svc->allow[i]; i++)
        if (strcmp(svc->allow[i], prog) == 0)
            return true;
    return false;
}

/* Opens a pseudo-terminal of size ws: the master (non-blocking) in *master,
 * the slave (for the child, O_NOCTTY: never the server's own terminal) in
 * *slave, both close-on-exec. Returns 0 or a negative errno. */
static int open_pty(const exec_winsize *ws, int *master, int *slave)
{
    *master = *slave = -1;
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK);
    char name[64];
    int rc = 0;
    if (m < 0)
        return -errno;
    if (grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof name) != 0) {
        rc = -errno;
        goto fail;
    }
    struct winsize w = {
        .ws_row = ws->rows, .ws_col = ws->cols, .ws_xpixel = ws->xpixel, .ws_ypixel = ws->ypixel};
    if (ioctl(m, TIOCSWINSZ, &w) < 0) {
        rc = -errno;
        goto fail;
    }
    int sl = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (sl < 0) {
        rc = -errno;
        goto fail;
    }
    *master = m;
    *slave = sl;
    return 0;
fail:
    close(m);
    return rc ? rc : -EIO;
}

/* "IP PORT" of a TCP peer as sk_conn_peer writes it ("1.2.3.4:5",
 * "[::1]:5"), like ssh's SSH_CLIENT; false for a Unix peer (no address). */
static bool client_text(const char *peer_text, char *out, size_t cap)
{
    const char *colon = strrchr(peer_text, ':');
    if (colon == NULL || strncmp(peer_text, "unix:", 5) == 0)
        return false;
    const char *host = peer_text;
    size_t hlen = (size_t)(colon - peer_text);
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    return snprintf(out, cap, "SOCKIT_CLIENT=%.*s %s", (int)hlen, host, colon + 1) < (int)cap;
}

/* The command's environment: the service's, less any TERM or
 * SOCKIT_CLIENT there, plus TERM (a terminal's) and SOCKIT_CLIENT. envp
 * has room for the service's entries and 3 more. */
static void request_env(const sess *s, const exec_request *req, const char **envp, char *term,
                        size_t termcap, char *client, size_t clientcap)
{
    size_t n = 0;
    for (char **e = s->svc->envp; *e; e++) {
        if ((req->pty && strncmp(*e, "TERM=", 5) == 0) || strncmp(*e, "SOCKIT_CLIENT=", 14) == 0)
            continue;
        envp[n++] = *e;
    }
    if (req->pty) {
        snprintf(term, termcap, "TERM=%s", req->term);
        envp[n++] = term;
    }
    if (client_text(peer(s), client, clientcap))
        envp[n++] = client;
    envp[n] = NULL;
}

static void run_request(sess *s, const uint8_t *body, size_t len, bool pty)
{
    exec_svc *svc = s->svc;
    exec_request req;
    char why[PROTO_ERROR_TEXT_MAX];
    int master = -1, slave = -1;
    const char **envp = NULL;
    int rc = pty ? exec_parse_pty_request(body, len, &req, why, sizeof why)
                 : exec_parse_request(body, len, &req, why, sizeof why);
    if (rc == -2) {
        fail(s, PE_PROTOCOL, -ENOMEM, "server out of memory");
        return;
    }
    if (rc < 0) {
        fail(s, PE_PROTOCOL, -EPROTO, why);
        return;
    }
    bool shell = req.flags & PROTO_EXEC_SHELL;
    bool login = req.flags & PROTO_EXEC_LOGIN;
    char *sh_argv[4] = {"/bin/sh", "-c", req.argv[0], NULL};
    /* A login shell by its -l option: the program run is argv[0]. */
    char *login_argv[3] = {(char *)(svc->o.shell ? svc->o.shell : EXEC_DEFAULT_SHELL), "-l", NULL};
    char *const *argv = login ? login_argv : shell ? sh_argv : req.argv;
    describe(s->what, sizeof s->what, login ? login_argv : req.argv, shell);
    const svc_ctx *ctx = s->ctx;
    if (req.pty && svc->o.no_pty) {
        send_error(s, PE_DENIED,
                   "terminals are not allowed on this server (--no-pty); "
                   "run without -t");
        sk_log(SK_LOG_WARN, "%s %s refused (--no-pty): %s", ctx->name, peer(s), s->what);
        goto out;
    }
    if (login && !svc->o.allow_shell) {
        send_error(s, PE_DENIED,
                   "an interactive shell is not allowed on this server "
                   "(it would need --allow-shell); give a command");
        sk_log(SK_LOG_WARN, "%s %s refused (shell without --allow-shell)", ctx->name, peer(s));
        goto out;
    }
    if (shell && !svc->o.allow_shell) {
        send_error(s, PE_DENIED,
                   "shell commands are not allowed on this server "
                   "(it would need --allow-shell)");
        sk_log(SK_LOG_WARN, "%s %s refused (no --allow-shell): %s", ctx->name, peer(s), s->what);
        goto out;
    }
    if (!shell && !login && !allowed(svc, req.argv[0])) {
        char prog[80];
        describe(prog, sizeof prog, (char *const[]){req.argv[0], NULL}, false);
        send_error(s, PE_DENIED, "%s is not allowed on this server (--allow-cmd)", prog);
        sk_log(SK_LOG_WARN, "%s %s refused (not in --allow-cmd): %s", ctx->name, peer(s), s->what);
        goto out;
    }
    /* Processes left behind by commands that still run (a background job
     * whose parent exited) count too: otherwise each command could leave
     * any number of them. */
    unsigned left = sk_proc_orphans();
    if (svc->procs + left >= svc->o.max_procs) {
        send_error(s, PE_BUSY, "too many commands running (--max-procs %u); try again later",
                   svc->o.max_procs);
        sk_log(SK_LOG_WARN,
               "%s %s refused (max-procs %u reached: %u commands, %u processes "
               "they left): %s",
               ctx->name, peer(s), svc->o.max_procs, svc->procs, left, s->what);
        goto out;
    }
    size_t nenv = 0;
    while (svc->envp[nenv])
        nenv++;
    char term[EXEC_TERM_MAX + 8], client[PROTO_HOST_MAX + 40];
    envp = calloc(nenv + 3, sizeof *envp);
    if (envp == NULL) {
        fail(s, PE_PROTOCOL, -ENOMEM, "server out of memory");
        goto out;
    }
    request_env(s, &req, envp, term, sizeof term, client, sizeof client);
    sk_proc_opts po = {
        .argv = (const char *const *)argv,
        .envp = envp,
        .cwd = svc->o.cwd,
        .flags = SK_PROC_NEW_PGROUP | SK_PROC_KILL_GROUP_ON_EXIT,
        .pty_fd = -1,
    };
    if (req.pty) {
        rc = open_pty(&req.ws, &master, &slave);
        if (rc < 0) {
            send_error(s, PE_NORUN, "could not open a terminal: %s", sk_strerror(rc));
            sk_log(SK_LOG_WARN, "%s %s could not open a terminal: %s", ctx->name, peer(s),
                   sk_strerror(rc));
            goto out;
        }
        po.flags |= SK_PROC_PTY;
        po.pty_fd = slave;
    }
    sk_loop *loop = sk_conn_loop(s->conn);
    rc = sk_proc_spawn(loop, &po, on_exit_cb, s, &s->proc);
    if (slave >= 0) {
        /* Only the command holds the terminal now: when it (and what it
         * started) is gone, reading the master ends (EIO). */
        close(slave);
        slave = -1;
    }
    if (rc == 0 && req.pty) {
        po.stdout_fd = master;
        po.stderr_fd = -1;
        /* A second descriptor for writing, so that ending the input
         * (close_stdin) never closes the output. */
        po.stdin_fd = fcntl(master, F_DUPFD_CLOEXEC, 0);
        master = -1;
    }
    if (rc < 0) {
        char prog[80];
        describe(prog, sizeof prog, (char *const[]){argv[0], NULL}, false);
        send_error(s, PE_NORUN, "could not run %s: %s", prog, sk_strerror(rc));
        if (!ctx->quiet)
            sk_log(SK_LOG_INFO, "%s %s could not run %s: %s", ctx->name, peer(s), s->what,
                   sk_strerror(rc));
        goto out;
    }
    svc->procs++;
    s->pgid = sk_proc_pid(s->proc);
    s->state = S_RUN;
    s->pty = req.pty;
    s->started = sk_loop_now(loop);
    s->fd_in = po.stdin_fd;
    s->fd_out = po.stdout_fd;
    s->fd_err = po.stderr_fd;
    if (!ctx->quiet)
        sk_log(SK_LOG_INFO, "%s %s run pid %d: %s", ctx->name, peer(s), (int)s->pgid, s->what);
    sk_log(SK_LOG_DEBUG, "%s pid %d contained by %s", ctx->name, (int)s->pgid,
           sk_proc_contained(s->proc) ? "its own cgroup v2" : "the child subreaper");
    if (sk_io_new(loop, s->fd_out, SK_READABLE, on_pipe, s, &s->io_out) < 0 ||
        (s->fd_err >= 0 && sk_io_new(loop, s->fd_err, SK_READABLE, on_pipe, s, &s->io_err) < 0)) {
        /* Cannot watch its output: stop it rather than let it block. */
        close_fd(&s->fd_out, &s->io_out);
        close_fd(&s->fd_err, &s->io_err);
        s->end_code = PE_NORUN;
        snprintf(s->end_text, sizeof s->end_text, "server out of memory");
        (void)sk_proc_kill(s->proc, SIGKILL);
    }
    if (req.flags & PROTO_EXEC_NO_STDIN)
        close_stdin(s);
    uint32_t limit = svc->o.timeout_ms;
    if (req.timeout_ms && (limit == 0 || req.timeout_ms < limit))
        limit = req.timeout_ms;
    s->limit_ms = limit;
    if (limit)
        start_timer(s, T_DEADLINE, limit);
    else
        stop_timer(s); /* the idle timer: a running command is not idle */
out:
    if (master >= 0)
        close(master);
    if (slave >= 0)
        close(slave);
    free(envp);
    free(req.storage);
}

static void on_timer(sk_timer *t, void *ud)
{
    (void)t;
    sess *s = ud;
    enum timer_kind kind = s->tkind;
    s->tkind = T_NONE;
    switch (kind) {
    case T_DELAY:
        if (s->conn)
            proto_hs_delay_done(&s->hs);
        break;
    case T_DEADLINE:
        s->end_code = PE_TIMEOUT;
        snprintf(s->end_text, sizeof s->end_text, "timed out after %.1f s: command stopped",
                 s->limit_ms / 1000.0);
        kill_command(s);
        break;
    case T_KILL:
        if (s->proc && !s->exited)
            (void)sk_proc_kill(s->proc, SIGKILL);
        break;
    case T_DRAIN:
        if (s->pipes_paused) {
            /* The client is still catching up: the pipes are not held open
             * by a stray process, only unread. Look again later. */
            start_timer(s, T_DRAIN, EXIT_DRAIN_MS);
            break;
        }
        close_fd(&s->fd_out, &s->io_out);
        close_fd(&s->fd_err, &s->io_err);
        maybe_finish(s);
        break;
    case T_IDLE:
        if (s->conn && s->state == S_READY) {
            if (!s->ctx->quiet)
                sk_log(SK_LOG_INFO, "%s %s idle for %.0f s between commands: closing", s->ctx->name,
                       peer(s), s->svc->o.idle_ms / 1000.0);
            sk_conn_fail(s->conn, -ETIMEDOUT, "idle timeout");
        }
        break;
    case T_NONE: break;
    }
}

/* ------------------------------------------------------------ handshake */

/* A frame before the handshake is over: the shared handshake takes it. */
static void on_handshake(sess *s, const uint8_t *data, size_t len)
{
    uint32_t delay = 0;
    switch (proto_hs_message(&s->hs, data, len, &delay)) {
    case PROTO_HS_DELAY: start_timer(s, T_DELAY, delay); return;
    case PROTO_HS_DONE:
        s->state = S_READY; /* frames back to the listener's max (EXEC_MAX_FRAME) */
        arm_idle(s);
        return;
    default: return;
    }
}

/* ------------------------------------------------------------ callbacks */

static void exec_open(sk_conn *c)
{
    const svc_ctx *ctx = sk_conn_data(c);
    exec_svc *svc = ctx->state;
    sess *s = calloc(1, sizeof *s);
    if (s == NULL || sk_timer_new(sk_conn_loop(c), on_timer, s, &s->timer) < 0) {
        free(s);
        sk_conn_set_data(c, NULL);
        sk_conn_abort(c, -ENOMEM);
        return;
    }
    s->svc = svc;
    s->ctx = ctx;
    s->conn = c;
    s->fd_in = s->fd_out = s->fd_err = -1;
    s->next = svc->sessions;
    if (svc->sessions)
        svc->sessions->prev = s;
    svc->sessions = s;
    sk_conn_set_data(c, s);
    int rc = proto_hs_open(&s->hs, &svc->hs, c, ctx->name, ctx->quiet);
    if (rc < 0 && rc != -EBUSY)
        sk_conn_abort(c, rc);
}

static void exec_message(sk_conn *c, const uint8_t *data, size_t len)
{
    sess *s = sk_conn_data(c);
    if (s == NULL)
        return;
    if (len == 0) {
        fail(s, PE_PROTOCOL, -EPROTO, "empty message");
        return;
    }
    /* Terminals, window changes and signals exist from version 2 on: to a
     * version-1 client they are unknown types, as they were. */
    bool v2 = s->hs.version >= 2;
    char why[PROTO_ERROR_TEXT_MAX];
    switch (s->state) {
    case S_HELLO: on_handshake(s, data, len); return;
    case S_GONE: return;
    case S_READY:
        if (data[0] == PT_EXEC_REQUEST)
            run_request(s, data + 1, len - 1, false);
        else if (data[0] == PT_EXEC_PTY_REQUEST && v2)
            run_request(s, data + 1, len - 1, true);
        else if (data[0] != PT_EXEC_STDIN && data[0] != PT_EXEC_STDIN_EOF &&
                 !(v2 && (data[0] == PT_EXEC_WINCH || data[0] == PT_EXEC_SIGNAL)))
            fail(s, PE_PROTOCOL, -EPROTO, "expected a request");
        /* stdin left over from a command that already ended: dropped */
        if (s->state == S_READY && s->tkind == T_IDLE)
            arm_idle(s); /* a refused request counts as activity */
        return;
    case S_RUN:
        if (data[0] == PT_EXEC_STDIN) {
            feed_stdin(s, data + 1, len - 1);
        } else if (data[0] == PT_EXEC_STDIN_EOF && len == 1 && s->pty) {
            /* A terminal has no end of input to close; its EOF character
             * is how a reader in line mode learns it (a shell fed from a
             * pipe then exits). In raw mode it would be a key: send none. */
            struct termios t;
            if (s->pend == NULL && s->fd_in >= 0 && tcgetattr(s->fd_in, &t) == 0 &&
                (t.c_lflag & ICANON)) {
                uint8_t veof = t.c_cc[VEOF];
                feed_stdin(s, &veof, 1);
            }
        } else if (data[0] == PT_EXEC_STDIN_EOF && len == 1) {
            s->stdin_eof = true;
            if (s->pend == NULL)
                close_stdin(s);
        } else if (v2 && data[0] == PT_EXEC_WINCH) {
            exec_winsize ws;
            if (exec_parse_winch(data + 1, len - 1, &ws, why, sizeof why) < 0) {
                fail(s, PE_PROTOCOL, -EPROTO, why);
                return;
            }
            /* The kernel sends SIGWINCH to the terminal's foreground. */
            struct winsize w = {.ws_row = ws.rows,
                                .ws_col = ws.cols,
                                .ws_xpixel = ws.xpixel,
                                .ws_ypixel = ws.ypixel};
            if (s->pty && s->fd_out >= 0)
                (void)ioctl(s->fd_out, TIOCSWINSZ, &w);
        } else if (v2 && data[0] == PT_EXEC_SIGNAL) {
            int sig = exec_parse_signal(data + 1, len - 1, why, sizeof why);
            if (sig < 0) {
                fail(s, PE_PROTOCOL, -EPROTO, why);
                return;
            }
            if (s->proc && !s->exited)
                (void)sk_proc_kill(s->proc, sig);
        } else {
            fail(s, PE_PROTOCOL, -EPROTO, "unexpected message while a command runs");
        }
        return;
    }
}

static void exec_drain(sk_conn *c)
{
    sess *s = sk_conn_data(c);
    if (s != NULL && s->pipes_paused) {
        s->pipes_paused = false;
        set_pipes_events(s, SK_READABLE);
    }
}

/* The client's side of the connection ended. TCP cannot tell a half-close
 * from a client that went away, and a command left running for a client
 * that is gone would run on unseen, so a running command is stopped
 * (SIGTERM, then SIGKILL) as if the client had vanished; the protocol's
 * STDIN_EOF is how a client ends the input and keeps the command. A client
 * that did only half-close still gets the rest of the output and the exit
 * status, then the connection closes. */
static void exec_eof(sk_conn *c)
{
    sess *s = sk_conn_data(c);
    if (s != NULL && s->state == S_RUN) {
        s->close_after = true;
        close_stdin(s);
        s->stdin_eof = true;
        /* A terminal is hung up, as when a modem line drops: the kernel
         * sends SIGHUP to its session, which interactive shells (deaf to
         * SIGTERM) obey. What they would still print has nowhere to go. */
        if (s->pty)
            close_fd(&s->fd_out, &s->io_out);
        if (s->tkind != T_KILL)
            kill_command(s);
        return;
    }
    sk_conn_close(c);
}

/* A frame over the limit (before authentication: 4 KiB): say so in the
 * protocol before the library's lingering close. */
static void exec_error(sk_conn *c, int err)
{
    (void)err;
    sess *s = sk_conn_data(c);
    if (s != NULL)
        send_error(s, PE_PROTOCOL, "%s", sk_conn_reason(c));
}

static void exec_close(sk_conn *c, int err)
{
    sess *s = sk_conn_data(c);
    const svc_ctx *ctx = s ? s->ctx : NULL;
    svc_log_closed(c, err, ctx ? ctx->name : SERVICE, ctx ? ctx->quiet : false);
    if (s == NULL)
        return;
    proto_hs_close(&s->hs);
    s->conn = NULL;
    if (s->state == S_RUN && !s->exited) {
        /* Nobody is left to read the output: the command goes, whole group. */
        s->state = S_GONE;
        close_fd(&s->fd_out, &s->io_out);
        close_fd(&s->fd_err, &s->io_err);
        close_stdin(s);
        if (s->tkind != T_KILL)
            kill_command(s);
        return;
    }
    sess_destroy(s);
}

static void exec_stream(sk_conn_callbacks *cbs)
{
    cbs->on_open = exec_open;
    cbs->on_message = exec_message;
    cbs->on_drain = exec_drain;
    cbs->on_eof = exec_eof;
    cbs->on_error = exec_error;
    cbs->on_close = exec_close;
}

/* Requests and stdin frames up to EXEC_MAX_FRAME (or less with --max-frame);
 * our own high-water mark, so that on_drain means "read the pipes again". */
static void exec_conn_opts(sk_conn_opts *o)
{
    if (o->max_frame == 0 || o->max_frame > EXEC_MAX_FRAME)
        o->max_frame = EXEC_MAX_FRAME;
    /* Idleness is the service's to judge (arm_idle): a command may run
     * silently for longer than --idle-timeout without the client idling. */
    o->idle_timeout_ms = 0;
    o->out_high_water = OUT_HIGH;
    o->out_low_water = OUT_HIGH / 4;
}

/* On worker 0's thread, before any worker thread exists. */
static int exec_start(svc_ctx *ctx, sk_loop *loop, char *err, size_t errlen)
{
    int rc = sk_proc_init(loop);
    if (rc < 0) {
        snprintf(err, errlen, "exec: cannot watch child processes: %s", sk_strerror(rc));
        return -1;
    }
    /* Orphans of the commands (a daemonising grandchild, a process that
     * left with setsid) are re-parented to us rather than to init, and
     * killed once the command that made them is over — or each command
     * gets a cgroup v2 that is killed whole. */
    char how[400];
    rc = sk_proc_contain(loop, how, sizeof how);
    if (rc < 0) {
        snprintf(err, errlen, "exec: cannot contain commands: %s", sk_strerror(rc));
        return -1;
    }
    sk_log(SK_LOG_DEBUG, "%s: commands contained by %s", ctx->name, how);
    /* Writing to a command's stdin after it exited must be an EPIPE error,
     * not a SIGPIPE that kills the server. Process-wide, the application's
     * choice; commands get SIG_DFL back (sk_proc resets every signal). */
    struct sigaction ign;
    memset(&ign, 0, sizeof ign);
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, NULL);
    exec_svc *svc;
    if (exec_svc_new(ctx->exec, &svc, err, errlen) < 0)
        return -1;
    ctx->state = svc;
    warn_runners(ctx->name, svc->allow);
    return 0;
}

static void exec_stop(svc_ctx *ctx)
{
    exec_svc_free(ctx->state);
    ctx->state = NULL;
}

const svc_def svc_exec = {
    .name = "exec",
    .summary = "runs commands for clients that hold the token (sockit exec)",
    .framing_choice = false,
    .fixed_framing = SK_FRAMING_FRAME,
    .stream = exec_stream,
    .datagram = NULL,
    .one_loop = true,
    .start = exec_start,
    .stop = exec_stop,
    .conn_opts = exec_conn_opts,
    .opts = exec_options,
    .opts_title = "exec options (frames of the exec protocol; --framing does not apply):\n",
    .opts_store = &exec_cli_opts,
    .opts_init = exec_opts_init_store,
};

/* ------------------------------------------------------------ set-up */

static void free_list(char **list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; list[i]; i++)
        free(list[i]);
    free(list);
}

/* Splits "a,b,c" into a NULL-terminated list; empty items are an error. */
static int split_list(const char *text, const char *what, char ***out, char *err, size_t errlen)
{
    size_t n = 1;
    for (const char *p = text; *p; p++)
        n += *p == ',';
    char **list = calloc(n + 1, sizeof *list);
    if (list == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *p = text;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == 0) {
            snprintf(err, errlen, "%s: empty name in \"%s\"", what, text);
            free_list(list);
            return -1;
        }
        list[i] = strndup(p, len);
        if (list[i] == NULL) {
            snprintf(err, errlen, "out of memory");
            free_list(list);
            return -1;
        }
        p = end ? end + 1 : p + len;
    }
    *out = list;
    return 0;
}

static bool env_name_ok(const char *name)
{
    if (!((*name >= 'A' && *name <= 'Z') || (*name >= 'a' && *name <= 'z') || *name == '_'))
        return false;
    for (const char *c = name + 1; *c; c++)
        if (!((*c >= 'A' && *c <= 'Z') || (*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
              *c == '_'))
            return false;
    return true;
}

static int add_env(char ***envp, size_t *n, size_t cap, const char *name, const char *value)
{
    size_t nlen = strlen(name);
    char *entry = malloc(nlen + 1 + strlen(value) + 1);
    if (entry == NULL)
        return -1;
    sprintf(entry, "%s=%s", name, value);
    for (size_t i = 0; i < *n; i++) {
        if (strncmp((*envp)[i], name, nlen) == 0 && (*envp)[i][nlen] == '=') {
            free((*envp)[i]); /* --pass-env overrides a default */
            (*envp)[i] = entry;
            return 0;
        }
    }
    if (*n + 1 >= cap) {
        free(entry);
        return -1;
    }
    (*envp)[(*n)++] = entry;
    return 0;
}

/* PATH (fixed), HOME and LANG (the server's, or defaults), then every
 * --pass-env variable the server has. Nothing else of the server's
 * environment reaches a command. */
static int build_env(const exec_opts *o, char ***out, char *err, size_t errlen)
{
    char **names = NULL;
    if (o->pass_env && split_list(o->pass_env, "--pass-env", &names, err, errlen) < 0)
        return -1;
    size_t extra = 0;
    for (size_t i = 0; names && names[i]; i++) {
        if (!env_name_ok(names[i])) {
            snprintf(err, errlen, "--pass-env: \"%s\" is not a variable name", names[i]);
            free_list(names);
            return -1;
        }
        extra++;
    }
    size_t cap = 3 + extra + 1, n = 0;
    char **envp = calloc(cap, sizeof *envp);
    if (envp == NULL) {
        free_list(names);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const char *home = getenv("HOME");
    if (home == NULL || home[0] == '\0') {
        struct passwd *pw = getpwuid(getuid());
        home = pw && pw->pw_dir ? pw->pw_dir : "/";
    }
    const char *lang = getenv("LANG");
    int rc = add_env(&envp, &n, cap, "PATH", EXEC_SAFE_PATH);
    rc |= add_env(&envp, &n, cap, "HOME", home);
    rc |= add_env(&envp, &n, cap, "LANG", lang && lang[0] ? lang : "C.UTF-8");
    for (size_t i = 0; names && names[i]; i++) {
        const char *v = getenv(names[i]);
        if (v != NULL)
            rc |= add_env(&envp, &n, cap, names[i], v);
    }
    free_list(names);
    if (rc != 0) {
        free_list(envp);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *out = envp;
    return 0;
}

int exec_check_opts(const exec_opts *o, char *err, size_t errlen)
{
    exec_svc *svc;
    if (exec_svc_new(o, &svc, err, errlen) < 0)
        return -1;
    exec_svc_free(svc);
    return 0;
}

int exec_svc_new(const exec_opts *o, exec_svc **out, char *err, size_t errlen)
{
    if (o->token_file == NULL) {
        snprintf(err, errlen,
                 "exec needs --token-file FILE (a secret of at least %d bytes, "
                 "mode 600; make one with: sockit token FILE)",
                 SK_TOKEN_MIN);
        return -1;
    }
    if (o->allow_shell && o->allow_cmd) {
        snprintf(err, errlen, "--allow-shell and --allow-cmd do not mix: a shell runs any program");
        return -1;
    }
    if (o->shell != NULL && o->shell[0] != '/') {
        snprintf(err, errlen, "--shell %s: give the shell's absolute path", o->shell);
        return -1;
    }
    if (o->max_procs == 0 || o->max_unauth == 0 || o->max_unauth_per_source == 0) {
        snprintf(err, errlen,
                 "--max-procs, --max-unauth and --max-unauth-per-source must be "
                 "at least 1");
        return -1;
    }
    if (o->cwd) {
        struct stat st;
        if (stat(o->cwd, &st) < 0 || !S_ISDIR(st.st_mode) || access(o->cwd, X_OK) < 0) {
            snprintf(err, errlen, "--cwd %s: not a directory the server can enter", o->cwd);
            return -1;
        }
    }
    exec_svc *svc = calloc(1, sizeof *svc);
    if (svc == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    svc->o = *o;
    proto_penalties_init(&svc->pen);
    if (proto_preauth_init(&svc->pre, o->max_unauth, o->max_unauth_per_source) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    char why[300];
    if (sk_token_load(o->token_file, svc->token, sizeof svc->token, &svc->token_len, why,
                      sizeof why) < 0) {
        snprintf(err, errlen, "exec: %s", why);
        goto fail;
    }
    svc->hs = (proto_hs_service){.service = SERVICE,
                                 .token = svc->token,
                                 .token_len = svc->token_len,
                                 .pen = &svc->pen,
                                 .pre = &svc->pre,
                                 .handshake_ms = o->handshake_ms,
                                 .per_source = o->max_unauth_per_source,
                                 .not_auth_code = PE_PROTOCOL,
                                 .not_auth_text = "expected an authentication message",
                                 .max_version = PROTO_EXEC_VERSION};
    if (o->allow_cmd && split_list(o->allow_cmd, "--allow-cmd", &svc->allow, err, errlen) < 0)
        goto fail;
    if (build_env(o, &svc->envp, err, errlen) < 0)
        goto fail;
    *out = svc;
    return 0;
fail:
    exec_svc_free(svc);
    return -1;
}

void exec_svc_free(exec_svc *svc)
{
    if (svc == NULL)
        return;
    while (svc->sessions) {
        sess *s = svc->sessions;
        svc->sessions = s->next;
        /* The loop is gone, and with it the connection, the watchers and
         * the process handle; the group id is still ours to signal (its
         * leader has not been reaped: nobody reaps any more). */
        if (s->proc != NULL && s->pgid > 0) /* not reaped: the pointer is stale, the id is not */
            (void)kill(-s->pgid, SIGKILL);
        if (s->fd_in >= 0)
            close(s->fd_in);
        if (s->fd_out >= 0)
            close(s->fd_out);
        if (s->fd_err >= 0)
            close(s->fd_err);
        free(s->pend);
        sk_timer_free(s->timer);
        free(s);
    }
    /* What the commands left anywhere (other sessions, other groups, their
     * cgroups) goes too; this waits at most a second for it. */
    sk_proc_kill_all(1000);
    OPENSSL_cleanse(svc->token, sizeof svc->token);
    free_list(svc->allow);
    free_list(svc->envp);
    proto_penalties_destroy(&svc->pen);
    proto_preauth_destroy(&svc->pre);
    free(svc);
}

int exec_demo_token(const char *path, char *err, size_t errlen)
{
    /* Exactly what `sockit token` writes. */
    int rc = sk_token_create(path, err, errlen);
    if (rc == -EEXIST)
        return 0;
    return rc < 0 ? -1 : 1;
}
