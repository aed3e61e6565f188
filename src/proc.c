/* proc.c — child processes: spawning (fork + execve, with a close-on-exec
 * pipe that carries the errno of a failed exec back), the child's clean
 * start (own session and process group, descriptors 0-2 only, default
 * signals, the given environment), reaping through a SIGCHLD signalfd so
 * that no loop ever waits on a child, and, once asked (sk_proc_contain),
 * killing what ended children leave behind. Not a shell: no quoting, no
 * redirections. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* execvp's fallback when the environment has no PATH. */
#define DEFAULT_PATH "/usr/bin:/bin"
/* Children looked at per sweep: far more than --max-procs allows to live;
 * one sweep that misses some gets them at the next exit. */
#define CHILDREN_MAX 4096

struct sk_proc {
    sk_loop *loop;
    pid_t pid;
    unsigned flags;
    bool reaped;
    bool in_cg; /* placed in cgroup cg_id (SK_PROC_CONTAIN_CGROUP) */
    unsigned cg_id;
    sk_proc_exit_cb cb;
    void *ud;
    sk_list link; /* reaper.procs: every sk_proc not yet freed */
};

/* The process's one reaper. Only its loop's thread touches procs and sig;
 * the loop pointer is atomic because sk_loop_free of any loop, on any
 * thread, compares against it. */
static struct {
    _Atomic(sk_loop *) loop;
    sk_signal *sig;
    sk_list *procs;
} reaper;

/* SK_PROC_CONTAIN_* once sk_proc_contain succeeded, else 0. Outlives the
 * reaper loop: sk_proc_kill_all runs after it is gone. */
static int containment;
static pid_t sweep_kids[CHILDREN_MAX]; /* the reaper thread's scratch */

/* ---------------------------------------------------------------- reaping */

static sk_proc *find_running(pid_t pid)
{
    /* Linear: a loop runs as many children as it can serve at once, and
     * this runs once per exit, not per byte. */
    for (sk_proc *p = SK_LIST_ITEM(reaper.procs, sk_proc, link); p;
         p = SK_LIST_ITEM(p->link.next, sk_proc, link))
        if (p->pid == pid && !p->reaped)
            return p;
    return NULL;
}

/* True if pgid is the group of a tracked child still running. */
static bool group_alive(pid_t pgid)
{
    for (sk_proc *p = SK_LIST_ITEM(reaper.procs, sk_proc, link); p;
         p = SK_LIST_ITEM(p->link.next, sk_proc, link))
        if (p->pid == pgid && !p->reaped && (p->flags & SK_PROC_NEW_PGROUP))
            return true;
    return false;
}

/* The subreaper's sweep: every child of ours that is not a tracked child
 * and not in the process group of one still running was left behind by a
 * command that ended (or escaped its group with setsid): SIGKILL, with its
 * group if it leads one. Its own children then come to us and go at the
 * next sweep (its exit brings one). Returns the leftovers kept (in a
 * running command's group), which count as that command's. Safe against
 * pid reuse: a child's pid stays ours until we reap it, on this thread. */
static unsigned sweep(void)
{
    size_t n = sk__children(sweep_kids, CHILDREN_MAX);
    unsigned kept = 0;
    for (size_t i = 0; i < n; i++) {
        pid_t pid = sweep_kids[i], pgid;
        char state;
        if (find_running(pid) != NULL || sk__proc_stat(pid, &pgid, &state) < 0 || state == 'Z')
            continue;
        if (group_alive(pgid)) {
            kept++;
            continue;
        }
        if (pgid == pid)
            (void)kill(-pid, SIGKILL);
        (void)kill(pid, SIGKILL);
    }
    if (containment == SK_PROC_CONTAIN_CGROUP)
        sk__cg_tidy(false);
    return kept;
}

/* SIGCHLD coalesces (one signal may stand for many exits), so every exited
 * child is collected until waitpid says there is none left. */
static void reap_all(void)
{
    bool any = false;
    for (;;) {
        int status = 0;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid < 0 && errno == EINTR)
            continue;
        if (pid <= 0)
            break; /* 0: children remain, none exited; ECHILD: no children */
        any = true;
        sk_proc *p = find_running(pid);
        if (p == NULL)
            continue; /* an orphan re-parented to us, or a forgotten child */
        p->reaped = true;
        if (p->in_cg)
            sk__cg_end(p->cg_id); /* whatever it left, wherever it went */
        if ((p->flags & SK_PROC_NEW_PGROUP) && (p->flags & SK_PROC_KILL_GROUP_ON_EXIT)) {
            /* The group id is the leader's pid, reaped a moment ago on this
             * thread: the kernel cannot have handed it to a new process in
             * between (it would have to cycle through every pid first).
             * Later on it could, which is why sk_proc_kill refuses then. */
            (void)kill(-pid, SIGKILL);
        }
        p->cb(p, status, p->ud); /* may free p */
    }
    if (any && containment)
        (void)sweep();
}

static void on_sigchld(sk_signal *s, int signo, void *ud)
{
    (void)s;
    (void)signo;
    (void)ud;
    reap_all();
}

int sk_proc_init(sk_loop *loop)
{
    sk_loop *cur = atomic_load(&reaper.loop);
    if (cur == loop)
        return 0;
    if (cur != NULL)
        return -EBUSY;
    /* With SIGCHLD ignored the kernel reaps children itself and waitpid
     * never reports them: every exit would be lost. */
    struct sigaction old;
    if (sigaction(SIGCHLD, NULL, &old) < 0)
        return -errno;
    if (old.sa_handler == SIG_IGN || (old.sa_flags & SA_NOCLDWAIT))
        return -EINVAL;
    static const int sigs[] = {SIGCHLD};
    sk_signal *sig;
    int err = sk_signal_new(loop, sigs, 1, on_sigchld, NULL, &sig);
    if (err < 0)
        return err;
    sk_loop *expected = NULL;
    if (!atomic_compare_exchange_strong(&reaper.loop, &expected, loop)) {
        sk_signal_free(sig);
        return -EBUSY;
    }
    reaper.sig = sig;
    reaper.procs = NULL;
    return 0;
}

/* Called by sk_loop_free (through the handles) before its signal watchers
 * go: forgets every process of the reaper loop. */
void sk__procs_free_all(sk_loop *loop)
{
    if (atomic_load(&reaper.loop) != loop)
        return;
    while (reaper.procs) {
        sk_proc *p = SK_LIST_ITEM(reaper.procs, sk_proc, link);
        sk__list_remove(&reaper.procs, &p->link);
        free(p);
    }
    reaper.sig = NULL; /* freed with the loop's other signal watchers */
    atomic_store(&reaper.loop, NULL);
}

/* --------------------------------------------------------------- spawning */

/* What the child needs, all prepared before fork: after fork in a threaded
 * program only async-signal-safe calls are allowed (no malloc, no stdio,
 * no getenv), so the child only walks these. */
typedef struct child_plan {
    const char *const *cands; /* full paths to try, in PATH order */
    size_t ncands;
    char *const *argv;
    char *const *envp;
    const char *cwd;
    unsigned flags;
    int fd_in, fd_out, fd_err; /* the child's ends */
    int report;                /* exec-error pipe, write end */
    int cg_procs;              /* the command cgroup's cgroup.procs, or -1 */
} child_plan;

/* What a failing child writes to the exec-error pipe. */
typedef struct child_failure {
    int stage; /* which step failed, for debugging the child */
    int err;   /* its errno */
} child_failure;

enum { STAGE_PGROUP = 1, STAGE_FDS, STAGE_CHDIR, STAGE_EXEC, STAGE_TTY };

static const char *find_path(const char *const *envp)
{
    for (size_t i = 0; envp[i]; i++)
        if (strncmp(envp[i], "PATH=", 5) == 0)
            return envp[i] + 5;
    return DEFAULT_PATH;
}

/* Builds the list of paths execve will try: argv[0] itself if it contains
 * a '/', otherwise each non-empty PATH element of envp joined with it. Done
 * by hand because execvpe looks at the parent's environ in some libcs, and
 * allocates, which the child must not. One allocation holds it all. */
static int plan_candidates(const char *name, const char *const *envp, const char ***out,
                           size_t *count)
{
    size_t nlen = strlen(name);
    if (strchr(name, '/') != NULL) {
        const char **list = malloc(sizeof *list);
        if (list == NULL)
            return -ENOMEM;
        list[0] = name;
        *out = list;
        *count = 1;
        return 0;
    }
    if (nlen > NAME_MAX)
        return -ENAMETOOLONG;
    const char *path = find_path(envp);
    size_t plen = strlen(path), elems = 1;
    for (size_t i = 0; i < plen; i++)
        elems += path[i] == ':';
    /* Pointers first, then the strings: at most every element plus "/" name
     * NUL, and the PATH text itself bounds the element lengths. */
    size_t size = elems * sizeof(char *) + plen + elems * (nlen + 2);
    char *mem = malloc(size);
    if (mem == NULL)
        return -ENOMEM;
    const char **list = (const char **)(void *)mem;
    char *s = mem + elems * sizeof(char *);
    size_t n = 0;
    const char *p = path;
    for (;;) {
        const char *end = strchr(p, ':');
        size_t dlen = end ? (size_t)(end - p) : strlen(p);
        /* An empty element means "the current directory" to a shell; that is
         * a classic way to run the wrong program, so it is skipped. */
        if (dlen > 0) {
            memcpy(s, p, dlen);
            s[dlen] = '/';
            memcpy(s + dlen + 1, name, nlen + 1);
            list[n++] = s;
            s += dlen + nlen + 2;
        }
        if (end == NULL)
            break;
        p = end + 1;
    }
    if (n == 0) {
        free(mem);
        return -ENOENT;
    }
    *out = list;
    *count = n;
    return 0;
}

static _Noreturn void child_fail(int report, int stage, int err)
{
    child_failure f = {stage, err};
    /* 8 bytes to a pipe: atomic, and the parent reads exactly this. */
    ssize_t w = write(report, &f, sizeof f);
    (void)w;
    _exit(127);
}

/* Closes every descriptor from `from` up, without close_range (kernels
 * before 5.9): list /proc/self/fd with getdents64, which unlike readdir does
 * not allocate; without /proc, try every number below the limit. */
static void close_from_fallback(int from)
{
    int dfd = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        char buf[4096] __attribute__((aligned(8)));
        for (;;) {
            long n = syscall(SYS_getdents64, dfd, buf, sizeof buf);
            if (n <= 0)
                break;
            for (long off = 0; off < n;) {
                /* struct linux_dirent64: u64 ino, s64 off, u16 reclen, u8 type, name */
                unsigned short reclen;
                memcpy(&reclen, buf + off + 16, sizeof reclen);
                const char *name = buf + off + 19;
                int fd = 0;
                bool num = name[0] != '\0';
                for (const char *c = name; *c; c++) {
                    if (*c < '0' || *c > '9') {
                        num = false;
                        break;
                    }
                    fd = fd * 10 + (*c - '0');
                }
                if (num && fd >= from && fd != dfd)
                    close(fd);
                off += reclen;
            }
        }
        close(dfd);
        return;
    }
    struct rlimit rl;
    int max =
        getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < INT_MAX
            ? (int)rl.rlim_cur
            : 65536;
    for (int fd = from; fd < max; fd++)
        close(fd);
}

/* Runs in the child between fork and exec: async-signal-safe calls only. */
static _Noreturn void child_main(const child_plan *pl)
{
    int report = pl->report;
    /* Every signal is blocked (the parent did so before fork), so no handler
     * of the parent can run here before the dispositions are reset. SIG_IGN
     * and handlers would otherwise survive exec (ignored ones do). */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
    /* glibc refuses sigaction() for the signals it reserves (32 and 33,
     * below SIGRTMIN), yet an ignored disposition of them, inherited from
     * whatever started the server, would survive exec: reset them with the
     * raw system call (SIG_DFL needs no restorer). */
    for (int sig = 32; sig < SIGRTMIN; sig++) {
        struct {
            void *handler;
            unsigned long flags;
            void *restorer;
            unsigned long mask;
        } kdfl = {0};
        (void)syscall(SYS_rt_sigaction, sig, &kdfl, NULL, sizeof kdfl.mask);
    }
    /* A new session, not only a new group: no controlling terminal, so a
     * command cannot open /dev/tty to write to, or inject keystrokes into,
     * the terminal the server was started from. The session's group id is
     * the child's pid, as with setpgid(0, 0): kill(-pid) still reaches it. */
    if ((pl->flags & SK_PROC_NEW_PGROUP) && setsid() < 0)
        child_fail(report, STAGE_PGROUP, errno);
    /* Into the command's cgroup before exec, so nothing it starts can be
     * outside. Failing that, the subreaper's sweep still applies. */
    if (pl->cg_procs >= 0) {
        ssize_t w = write(pl->cg_procs, "0", 1);
        (void)w;
    }
    /* Move the four descriptors above 2 first, so that installing one as
     * 0, 1 or 2 never overwrites another that happened to have that number
     * (the parent may run with its own stdio closed). */
    int fds[4] = {pl->fd_in, pl->fd_out, pl->fd_err, report};
    for (int i = 0; i < 4; i++) {
        fds[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 4);
        if (fds[i] < 0)
            child_fail(report, STAGE_FDS, errno);
    }
    report = fds[3];
    for (int i = 0; i < 3; i++)
        if (dup2(fds[i], i) < 0) /* dup2 clears close-on-exec on 0..2 */
            child_fail(report, STAGE_FDS, errno);
    if (dup3(fds[3], 3, O_CLOEXEC) < 0)
        child_fail(report, STAGE_FDS, errno);
    report = 3;
    /* The session leader opens no terminal by itself (the slave was opened
     * O_NOCTTY, in the parent); this makes it the controlling one, so its
     * ^C, ^Z and hangup become signals for the session's foreground. */
    if ((pl->flags & SK_PROC_PTY) && ioctl(0, TIOCSCTTY, 0) < 0)
        child_fail(report, STAGE_TTY, errno);
    /* Everything else goes: listening sockets, other clients' connections,
     * files of the parent that lack close-on-exec (made by other code). */
    if (close_range(4, ~0U, 0) < 0)
        close_from_fallback(4);
    if (pl->cwd != NULL && chdir(pl->cwd) < 0)
        child_fail(report, STAGE_CHDIR, errno);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    /* execvp's rules: keep looking past "not found here" and "no permission
     * here", stop at any other failure; EACCES wins over ENOENT. */
    int err = ENOENT;
    bool denied = false;
    for (size_t i = 0; i < pl->ncands; i++) {
        execve(pl->cands[i], pl->argv, pl->envp);
        err = errno;
        if (err == EACCES) {
            denied = true;
            continue;
        }
        if (err == ENOENT || err == ENOTDIR || err == ESTALE || err == ENODEV || err == ETIMEDOUT)
            continue;
        break;
    }
    if (denied &&
        (err == ENOENT || err == ENOTDIR || err == ESTALE || err == ENODEV || err == ETIMEDOUT))
        err = EACCES;
    child_fail(report, STAGE_EXEC, err);
}

static void close_pair(int p[2])
{
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0) {
            close(p[i]);
            p[i] = -1;
        }
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

int sk_proc_spawn(sk_loop *loop, sk_proc_opts *opts, sk_proc_exit_cb on_exit, void *ud,
                  sk_proc **out)
{
    if (atomic_load(&reaper.loop) != loop || loop == NULL)
        return -ECHILD;
    if (opts->argv == NULL || opts->argv[0] == NULL || on_exit == NULL)
        return -EINVAL;
    if (opts->argv[0][0] == '\0')
        return -ENOENT;
    static const char *const no_env[] = {NULL};
    const char *const *envp = opts->envp ? opts->envp : no_env;
    const char **cands = NULL;
    size_t ncands = 0;
    int err = plan_candidates(opts->argv[0], envp, &cands, &ncands);
    if (err < 0)
        return err;
    sk_proc *p = calloc(1, sizeof *p);
    int in[2] = {-1, -1}, outp[2] = {-1, -1}, errp[2] = {-1, -1}, rep[2] = {-1, -1};
    int cg_procs = -1;
    if (p == NULL) {
        err = -ENOMEM;
        goto fail;
    }
    /* A cgroup that cannot be made leaves the command to the sweep. */
    if (containment == SK_PROC_CONTAIN_CGROUP && sk__cg_new(&p->cg_id, &cg_procs) == 0)
        p->in_cg = true;
    /* All four close-on-exec: the child keeps only what it dup2s onto 0-2,
     * and the exec-error pipe closes by itself when exec succeeds. */
    bool pty = opts->flags & SK_PROC_PTY;
    if (pty && (!(opts->flags & SK_PROC_NEW_PGROUP) || opts->pty_fd < 0)) {
        err = -EINVAL;
        goto fail;
    }
    if (pty) {
        /* The child's three are the terminal: dup'd (close-on-exec) so the
         * code below closes its copies as it closes pipe ends. */
        if ((in[0] = fcntl(opts->pty_fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
            (outp[1] = fcntl(opts->pty_fd, F_DUPFD_CLOEXEC, 0)) < 0 ||
            (errp[1] = fcntl(opts->pty_fd, F_DUPFD_CLOEXEC, 0)) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
            err = -errno;
            goto fail;
        }
    } else if (pipe2(in, O_CLOEXEC) < 0 || pipe2(outp, O_CLOEXEC) < 0 ||
               pipe2(errp, O_CLOEXEC) < 0 || pipe2(rep, O_CLOEXEC) < 0) {
        err = -errno;
        goto fail;
    }
    /* Only the parent's ends are non-blocking: the child gets the ordinary
     * blocking pipes every program expects on its stdio. */
    if (!pty && ((err = set_nonblock(in[1])) < 0 || (err = set_nonblock(outp[0])) < 0 ||
                 (err = set_nonblock(errp[0])) < 0))
        goto fail;
    child_plan pl = {
        .cands = cands,
        .ncands = ncands,
        .argv = (char *const *)(uintptr_t)opts->argv,
        .envp = (char *const *)(uintptr_t)envp,
        .cwd = opts->cwd,
        .flags = opts->flags,
        .fd_in = in[0],
        .fd_out = outp[1],
        .fd_err = errp[1],
        .report = rep[1],
        .cg_procs = cg_procs,
    };
    /* Block everything around fork: the child must not run a handler of the
     * parent before it has reset the dispositions. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0)
        child_main(&pl);
    int fork_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        err = -fork_errno;
        goto fail;
    }
    close(in[0]);
    close(outp[1]);
    close(errp[1]);
    close(rep[1]);
    in[0] = outp[1] = errp[1] = rep[1] = -1;
    if (cg_procs >= 0) {
        close(cg_procs);
        cg_procs = -1;
    }
    /* EOF: exec succeeded (the close-on-exec pipe closed). A record: the
     * child failed and is exiting; reap it here — it exits at once, and a
     * child that could not run is not worth a callback. */
    child_failure f;
    ssize_t n;
    do {
        n = read(rep[0], &f, sizeof f);
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t)sizeof f) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        err = f.err > 0 ? -f.err : -ECHILD;
        goto fail;
    }
    close(rep[0]);
    free(cands);
    p->loop = loop;
    p->pid = pid;
    p->flags = opts->flags;
    p->cb = on_exit;
    p->ud = ud;
    sk__list_push(&reaper.procs, &p->link);
    opts->stdin_fd = in[1];
    opts->stdout_fd = outp[0];
    opts->stderr_fd = errp[0];
    *out = p;
    return 0;
fail:
    if (cg_procs >= 0)
        close(cg_procs);
    if (p != NULL && p->in_cg) {
        sk__cg_end(p->cg_id);
        sk__cg_tidy(false);
    }
    close_pair(in);
    close_pair(outp);
    close_pair(errp);
    close_pair(rep);
    free(cands);
    free(p);
    return err;
}

int sk_proc_kill(sk_proc *p, int sig)
{
    if (p->reaped)
        return -ESRCH;
    pid_t target = (p->flags & SK_PROC_NEW_PGROUP) ? -p->pid : p->pid;
    /* The cgroup also holds what left the group; it only knows SIGKILL. */
    if (p->in_cg && sig == SIGKILL)
        sk__cg_kill(p->cg_id);
    return kill(target, sig) < 0 ? -errno : 0;
}

pid_t sk_proc_pid(const sk_proc *p) { return p->pid; }

void sk_proc_free(sk_proc *p)
{
    if (p == NULL)
        return;
    sk__list_remove(&reaper.procs, &p->link);
    free(p);
}

/* ------------------------------------------------------------ containment */

int sk_proc_contain(sk_loop *loop, char *where, size_t wlen)
{
    if (atomic_load(&reaper.loop) != loop || loop == NULL)
        return -ECHILD;
    if (containment)
        return containment;
    /* Orphans of the commands come to us rather than to init: ours to
     * sweep, never out of sight. */
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        return -errno;
    char cgwhere[256];
    int rc = sk__cg_setup(cgwhere, sizeof cgwhere);
    if (rc == 0) {
        containment = SK_PROC_CONTAIN_CGROUP;
        if (where)
            snprintf(where, wlen, "one cgroup v2 per command under %s", cgwhere);
    } else {
        containment = SK_PROC_CONTAIN_SUBREAPER;
        if (where)
            snprintf(where, wlen, "child subreaper (cgroup v2 not usable here: %s)",
                     sk_strerror(rc));
    }
    return containment;
}

unsigned sk_proc_orphans(void) { return containment ? sweep() : 0; }

int sk_proc_contained(const sk_proc *p) { return p->in_cg ? 1 : 0; }

void sk_proc_kill_all(int timeout_ms)
{
    if (!containment)
        return;
    /* Children reaped here never get their callback: make the handles
     * still around refuse to signal a pid that may be reused. */
    for (sk_proc *p = SK_LIST_ITEM(reaper.procs, sk_proc, link); p;
         p = SK_LIST_ITEM(p->link.next, sk_proc, link))
        p->reaped = true;
    uint64_t t0 = sk__now_ms();
    for (;;) {
        if (containment == SK_PROC_CONTAIN_CGROUP)
            sk__cg_kill_all();
        size_t n = sk__children(sweep_kids, CHILDREN_MAX);
        for (size_t i = 0; i < n; i++)
            (void)kill(sweep_kids[i], SIGKILL);
        for (;;) {
            int status;
            pid_t r = waitpid(-1, &status, WNOHANG);
            if (r > 0 || (r < 0 && errno == EINTR))
                continue;
            break;
        }
        if (n == 0)
            break;
        if (timeout_ms >= 0 && sk__now_ms() - t0 >= (uint64_t)timeout_ms)
            break;
        /* A killed child's own children reach us only once it is gone. */
        struct timespec pause = {0, 5 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    if (containment == SK_PROC_CONTAIN_CGROUP)
        sk__cg_teardown();
    containment = 0;
}
