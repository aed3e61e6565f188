/* serve.c — sk_serve(): one server from address text to a drained stop, for
 * programs that want a server and not the plumbing around it. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "internal.h"

typedef struct serve_run {
    sk_loop *loop;
    sk_server *srv;
    int drain_ms;
    int signals;
} serve_run;

static void on_drained(sk_server *srv, void *ud)
{
    (void)srv;
    sk_loop_stop(((serve_run *)ud)->loop);
}

static void on_signal(sk_signal *s, int signo, void *ud)
{
    (void)s;
    serve_run *run = ud;
    if (run->signals++ > 0) {
        sk_loop_stop(run->loop);
        return;
    }
    sk_server_drain(run->srv, run->drain_ms, on_drained, run);
    sk_log(SK_LOG_INFO, "%s: draining connections (no longer accepting)",
           signo == SIGINT ? "SIGINT" : "SIGTERM");
}

int sk_serve(const char *addr_text, const sk_server_opts *opts, int drain_ms, sk_ready_cb on_ready,
             void *ud, char *err, size_t errlen)
{
    char dummy[8];
    if (err == NULL) {
        err = dummy;
        errlen = sizeof dummy;
    }
    err[0] = '\0';
    sk_addr addr;
    int rc = sk_addr_parse(addr_text, &addr, err, errlen);
    if (rc < 0)
        return rc;
    static const int sigs[] = {SIGINT, SIGTERM};
    sigset_t old;
    pthread_sigmask(SIG_SETMASK, NULL, &old);
    serve_run run = {.drain_ms = drain_ms};
    sk_signal *sig = NULL;
    rc = sk_loop_new(&run.loop);
    if (rc == 0)
        rc = sk_signal_new(run.loop, sigs, 2, on_signal, &run, &sig);
    if (rc == 0)
        rc = sk_server_listen(run.loop, &addr, opts, &run.srv, err, errlen);
    if (rc < 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "%s", sk_strerror(rc));
        if (rc == -EINVAL)
            rc = -EIO; /* -EINVAL is promised for bad address text only */
        goto out;
    }
    if (on_ready) {
        char bound[200];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        if (addr.kind == SK_ADDR_TCP &&
            getsockname(sk_server_fd(run.srv), (struct sockaddr *)&ss, &sl) == 0)
            sk_sockaddr_format((struct sockaddr *)&ss, sl, bound, sizeof bound);
        else
            sk_addr_format(&addr, bound, sizeof bound);
        on_ready(bound, ud);
    }
    rc = sk_loop_run(run.loop);
    if (rc < 0)
        snprintf(err, errlen, "event loop: %s", sk_strerror(rc));
out:
    sk_server_free(run.srv);
    sk_signal_free(sig);
    sk_loop_free(run.loop);
    /* A signal that came after the loop stopped is ours (we were stopping
     * anyway): consume it rather than let it kill the caller on unblock. */
    sigset_t ours;
    sigemptyset(&ours);
    if (!sigismember(&old, SIGINT)) /* the caller's own blocked ones stay */
        sigaddset(&ours, SIGINT);
    if (!sigismember(&old, SIGTERM))
        sigaddset(&ours, SIGTERM);
    const struct timespec zero = {0, 0};
    while (sigtimedwait(&ours, NULL, &zero) > 0) {
    }
    /* The mask goes back to what the caller had: a signal that arrives from
     * now on (or arrived after the loop stopped) gets the caller's
     * disposition, as if sk_serve had never run. */
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}
