/* exec_server — a frame server that runs commands without a shell, on libsockit.
 *
 * A client sends a command line as one frame; the server runs it and answers
 * with two frames: everything the command wrote (stdout and stderr, as they
 * came), then how it ended ("exit 0", "killed by signal 9", "could not run:
 * ..."). Usage: exec_server [ADDR]   (default 127.0.0.1:8080)
 *
 * Traps of the obvious Python version avoided here: it ran whatever anyone sent through a shell
 * (shell=True) — here the line is split at spaces and run directly, so ";",
 * "|" or "$(...)" are plain characters, and the server listens on loopback
 * or a Unix socket only (the authenticated service is `sockit serve exec`);
 * it took one recv(1024) for a command and sent a native-endian
 * struct.pack("i") length; it served one client at a time and waited for
 * each command, reading stderr to the end before stdout (a command filling
 * its stdout pipe hung it); a command that never ended hung it for good.
 */
#include <sockit.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define DRAIN_MS   2000       /* after SIGINT/SIGTERM, how long commands may go on */
#define LIMIT_MS   10000      /* a command's time limit */
#define OUTPUT_MAX (1u << 20) /* output kept per command; the rest is dropped */
#define ARGS_MAX   64         /* words in a command line */

typedef struct job {
    sk_conn *c;
    sk_proc *p; /* NULL when no command runs */
    int fds[2]; /* its stdout and stderr, -1 once ended */
    sk_io *io[2];
    sk_timer *timer;
    char *out; /* OUTPUT_MAX bytes */
    size_t len;
    int status, exited, timed_out;
} job;

static void job_free(job *j)
{
    for (int i = 0; i < 2; i++) {
        sk_io_free(j->io[i]);
        if (j->fds[i] >= 0)
            close(j->fds[i]);
    }
    sk_proc_free(j->p);
    sk_timer_free(j->timer);
    free(j->out);
    free(j);
}

/* Both answer frames go once the command has exited and its pipes ended. */
static void maybe_answer(job *j)
{
    char status[100];

    if (!j->exited || j->fds[0] >= 0 || j->fds[1] >= 0)
        return;
    if (j->timed_out)
        snprintf(status, sizeof status, "timed out after %d s", LIMIT_MS / 1000);
    else if (WIFSIGNALED(j->status))
        snprintf(status, sizeof status, "killed by signal %d", WTERMSIG(j->status));
    else
        snprintf(status, sizeof status, "exit %d", WEXITSTATUS(j->status));
    sk_conn_send_msg(j->c, j->out, j->len);
    sk_conn_send_msg(j->c, status, strlen(status));
    sk_proc_free(j->p);
    j->p = NULL;
    j->len = 0;
    j->exited = j->timed_out = 0;
    sk_timer_stop(j->timer);
}

static void on_output(sk_io *io, int fd, int ready, void *ud)
{
    job *j = ud;
    char buf[65536];
    ssize_t n = read(fd, buf, sizeof buf);

    (void)ready;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n > 0) { /* keep what fits, drop the rest: the command never blocks */
        size_t keep = (size_t)n < OUTPUT_MAX - j->len ? (size_t)n : OUTPUT_MAX - j->len;
        memcpy(j->out + j->len, buf, keep);
        j->len += keep;
        return;
    }
    int i = io == j->io[0] ? 0 : 1; /* end of this stream */
    sk_io_free(io);
    close(fd);
    j->io[i] = NULL;
    j->fds[i] = -1;
    maybe_answer(j);
}

static void on_exit_cb(sk_proc *p, int status, void *ud)
{
    job *j = ud;

    (void)p;
    j->exited = 1;
    j->status = status;
    maybe_answer(j);
}

static void on_timeout(sk_timer *t, void *ud)
{
    job *j = ud;

    (void)t;
    j->timed_out = 1;
    sk_proc_kill(j->p, SIGKILL); /* the whole process group */
}

static void on_message(sk_conn *c, const uint8_t *data, size_t len)
{
    static const char *const env[] = {"PATH=/usr/bin:/bin", "LANG=C.UTF-8", NULL};
    job *j = sk_conn_data(c);
    char line[4096], *argv[ARGS_MAX + 1], *save = NULL;
    int argc = 0, rc;

    if (j->p != NULL || len == 0 || len >= sizeof line)
        return; /* one command at a time; an empty or huge line is ignored */
    memcpy(line, data, len);
    line[len] = '\0';
    printf("from client: %s\n", line);
    for (char *w = strtok_r(line, " ", &save); w && argc < ARGS_MAX; w = strtok_r(NULL, " ", &save))
        argv[argc++] = w;
    argv[argc] = NULL;
    /* This loop reaps the children; the first command makes it so (sk_serve
     * owns the loop; later calls return at once). */
    sk_proc_opts o = {.argv = (const char *const *)argv,
                      .envp = env,
                      .flags = SK_PROC_NEW_PGROUP | SK_PROC_KILL_GROUP_ON_EXIT};
    if ((rc = sk_proc_init(sk_conn_loop(c))) < 0 || argc == 0 ||
        (rc = sk_proc_spawn(sk_conn_loop(c), &o, on_exit_cb, j, &j->p)) < 0) {
        char status[200];
        snprintf(status, sizeof status, "could not run: %s", argc ? sk_strerror(rc) : "empty");
        sk_conn_send_msg(c, "", 0);
        sk_conn_send_msg(c, status, strlen(status));
        return;
    }
    close(o.stdin_fd); /* no input: the command reads end of file */
    j->fds[0] = o.stdout_fd;
    j->fds[1] = o.stderr_fd;
    for (int i = 0; i < 2; i++)
        if (sk_io_new(sk_conn_loop(c), j->fds[i], SK_READABLE, on_output, j, &j->io[i]) < 0)
            sk_proc_kill(j->p, SIGKILL); /* cannot read it: do not let it run blind */
    sk_timer_start(j->timer, LIMIT_MS, 0);
}

static void on_open(sk_conn *c)
{
    job *j = calloc(1, sizeof *j);

    if (j == NULL || (j->out = malloc(OUTPUT_MAX)) == NULL ||
        sk_timer_new(sk_conn_loop(c), on_timeout, j, &j->timer) < 0) {
        if (j)
            free(j->out);
        free(j);
        sk_conn_abort(c, -ENOMEM);
        return;
    }
    j->c = c;
    j->fds[0] = j->fds[1] = -1;
    sk_conn_set_data(c, j);
}

/* A client that leaves mid-command takes its command with it: the whole
 * group is killed and forgotten (the loop reaps it when it exits). */
static void on_close(sk_conn *c, int err)
{
    job *j = sk_conn_data(c);

    (void)err;
    if (j == NULL)
        return;
    if (j->p != NULL && !j->exited)
        sk_proc_kill(j->p, SIGKILL);
    job_free(j);
}

static void on_ready(const char *bound, void *ud)
{
    (void)ud;
    fprintf(stderr, "listening on %s\n", bound); /* the tests wait for this line */
}

int main(int argc, char **argv)
{
    const char *text = argc > 1 ? argv[1] : "127.0.0.1:8080";
    sk_server_opts opts;
    sk_addr addr;
    char err[256];
    int rc;

    if (argc > 2 || sk_addr_parse(text, &addr, err, sizeof err) < 0) {
        fprintf(stderr, "exec_server: %s\n", argc > 2 ? "usage: exec_server [ADDR]" : err);
        return 2;
    }
    if (addr.kind == SK_ADDR_TCP && strcmp(addr.host, "127.0.0.1") != 0 &&
        strcmp(addr.host, "::1") != 0 && strcmp(addr.host, "localhost") != 0) {
        fprintf(stderr, "exec_server: no authentication here: loopback or unix: only "
                        "(use sockit serve exec)\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    sk_server_opts_init(&opts);
    opts.conn.framing = SK_FRAMING_FRAME;
    opts.conn.max_frame = 4096; /* a command line, not a file */
    opts.cbs.on_open = on_open;
    opts.cbs.on_message = on_message;
    opts.cbs.on_close = on_close;
    rc = sk_serve(text, &opts, DRAIN_MS, on_ready, NULL, err, sizeof err);
    if (rc < 0)
        fprintf(stderr, "exec_server: %s\n", err);
    return rc == -EINVAL ? 2 : rc < 0 ? 1 : 0;
}
