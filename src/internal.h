/* internal.h — structures shared by the library's own files; not installed.
 * The public API is include/sockit.h; nothing here is exported. */
#ifndef SOCKIT_INTERNAL_H
#define SOCKIT_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "frame.h"
#include "list.h"
#include "sockit.h"

#define SK_CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* Reads go into a per-loop buffer of this size: large enough that a 4 KiB
 * frame workload is served by few syscalls (libevent's 4 KiB reads lose 3-6x
 * there), small enough to stay in L2. */
#define SK_READ_CHUNK (64u * 1024u)
/* Reads per readable event before giving other connections a turn. */
#define SK_READS_PER_EVENT 8
/* Connection buffers come in two pooled sizes: small ones for the common
 * case (a few short messages queued or a partial message held), large ones
 * (SK_READ_CHUNK) once more is queued. Anything bigger is a plain malloc.
 * Small is 8 KiB so that a partial 4 KiB frame plus its header fits. The
 * pools keep at most 4 and 8 MiB per loop: enough for the connections
 * active in one iteration of a busy loop (500 with a small buffer, 128 with
 * a large one) without hoarding memory for idle ones. */
#define SK_BUF_SMALL      (8u * 1024u)
#define SK_POOL_SMALL_MAX 512
#define SK_POOL_LARGE_MAX 128
/* Peers accepted per readiness event on a listener, for fairness. */
#define SK_ACCEPTS_PER_EVENT 64

/* ---- connecting to a name with several addresses (addr.c) ---- */

/* Happy Eyeballs v2 (RFC 8305): sk_conn_connect and sk_sock_dial start the next
 * address when an attempt is still pending after this long (the RFC's
 * recommended Connection Attempt Delay), and at once when one fails. */
#define SK_CONNECT_ATTEMPT_DELAY_MS 250
/* Addresses of one name tried; a name with more is unusual. */
#define SK_CONNECT_MAX_ADDRS 16

/* sk_addr_resolve for a client, with the addresses put in the order RFC 8305
 * section 4 tries them: IPv6 first, then IPv4, alternating, each family in
 * the resolver's order. Returns the count or a negative code (err says why). */
int sk__resolve_for_connect(const sk_addr *addr, struct sockaddr_storage *out, socklen_t *outlen,
                            int max, char *err, size_t errlen);

/* The blocking dial beneath sk_sock_dial (client.c): connects to a tcp or
 * unix address within timeout_ms (SK_FOREVER: no limit), trying every
 * address as sk_conn_connect does. Returns the descriptor (close-on-exec,
 * non-blocking, TCP_NODELAY) or a negative code with err saying why. */
int sk__dial(const sk_addr *addr, const sk_dial_opts *dial, int timeout_ms, char *err,
             size_t errlen);

/* sk_dial_opts (dial_opts.c). Check: 0, or -EINVAL with err for options
 * that cannot apply to addr (a unix: address, mixed families). Filter: keeps
 * the resolved addresses of the family asked; their count, or
 * -EADDRNOTAVAIL with err when none is left. Bind: binds fd to the source,
 * if any (0 or a negative errno). o may be NULL in all three. */
int sk__dial_opts_check(const sk_dial_opts *o, const sk_addr *addr, char *err, size_t errlen);
int sk__dial_opts_filter(const sk_dial_opts *o, const sk_addr *addr, struct sockaddr_storage *ss,
                         socklen_t *sl, int n, char *err, size_t errlen);
int sk__dial_opts_bind(const sk_dial_opts *o, int fd);

/* ---- shared buffers (shared.c; outq.c reads their bytes) ---- */

struct sk_shared {
    atomic_size_t refs;
    size_t len;
    uint8_t data[];
};

/* ---- epoll seam (epoll.c) ---- */

/* Everything registered with epoll starts with this; the loop calls
 * on_event with the epoll event mask. */
typedef struct sk_watch {
    int fd;
    uint32_t events; /* currently registered mask (0 = not registered) */
    void (*on_event)(struct sk_watch *w, uint32_t events);
    /* Handles freed from inside a callback are parked here and destroyed
     * after the batch of events, so a later event of the same batch never
     * points at freed memory. */
    struct sk_watch *garbage_next;
    void (*destroy)(struct sk_watch *w);
} sk_watch;

/* Parks w for destruction after the current batch of callbacks. */
void sk__watch_dispose(sk_loop *loop, sk_watch *w);
void sk__garbage_collect(sk_loop *loop);

int sk__epoll_create(void);
int sk__watch_set(sk_loop *loop, sk_watch *w, uint32_t events);
void sk__watch_del(sk_loop *loop, sk_watch *w);

/* ---- timers (timer.c) ---- */

struct sk_timer {
    sk_loop *loop;
    sk_timer_cb cb;
    void *ud;
    uint64_t deadline;
    uint64_t repeat;
    uint64_t seq;  /* start order: the tiebreak for equal deadlines */
    size_t index;  /* position in the heap, SIZE_MAX when stopped */
    bool internal; /* embedded in another handle: does not keep the loop alive */
};

void sk__timer_init(sk_timer *t, sk_loop *loop, sk_timer_cb cb, void *ud);
/* Runs due timers; returns how many ran. */
int sk__timers_run(sk_loop *loop);
/* Milliseconds until the earliest deadline, or -1 if none. */
int sk__timers_timeout(sk_loop *loop);
void sk__timers_free(sk_loop *loop);

/* How many sk__stat values a loop tallies itself: the first ones of enum
 * sk__stat below (bytes and messages), in the same order. */
#define SK__STAT_LOCAL_COUNT 4

/* ---- buffers (buf.c) ---- */

/* A byte buffer with a read offset: data[off, off+len) is live. */
typedef struct sk_buf {
    uint8_t *data;
    size_t off;
    size_t len;
    size_t cap;
} sk_buf;

/* Makes room for at least `more` bytes after the live data; may compact or
 * grow (never beyond what is asked plus doubling). Takes a pooled buffer when
 * empty. Returns 0 or -ENOBUFS (memory budget) / -ENOMEM. */
int sk__buf_reserve(sk_loop *loop, sk_buf *b, size_t more);
/* Drops n bytes from the front; releases the storage to the pool when the
 * buffer becomes empty so idle connections hold no buffer. */
void sk__buf_consume(sk_loop *loop, sk_buf *b, size_t n);
void sk__buf_release(sk_loop *loop, sk_buf *b);
void sk__pool_free(sk_loop *loop);
/* Global accounting behind sk_mem_in_use / sk_mem_set_budget. */
bool sk__mem_charge(size_t bytes);
void sk__mem_uncharge(size_t bytes);

/* ---- shared slices in output queues (outq.c) ---- */

/* The slices of sk_shared buffers and the file ranges queued on one
 * connection, in order with its plain byte buffer. Allocated on the first
 * sk_conn_send_shared() or sk_conn_sendfile(). */
typedef struct sk_outq sk_outq;

/* Appends a slice after the plain_queued plain bytes now waiting. Returns 0,
 * -ENOBUFS or -ENOMEM (nothing queued then). */
int sk__outq_push(sk_outq **qp, sk_shared *s, size_t off, size_t len, size_t plain_queued);
/* Appends bytes [off, off+len) of file fd the same way, holding a duplicate
 * of fd (close-on-exec) until they are sent. Returns 0, -ENOBUFS, -ENOMEM,
 * or the dup's -EMFILE/-ENFILE (nothing queued then). */
int sk__outq_push_file(sk_outq **qp, int fd, uint64_t off, size_t len, size_t plain_queued);
/* Slice bytes waiting (file ranges included); whether any slice is waiting
 * (q may be NULL). */
size_t sk__outq_bytes(const sk_outq *q);
bool sk__outq_active(const sk_outq *q);
/* Whether a shared slice of len bytes is better copied into the plain
 * buffer: true for a small one once the queue is backing up. */
bool sk__outq_copy_instead(const sk_outq *q, size_t len);
/* One send in queue order: a sendmsg (MSG_NOSIGNAL) over plain bytes and
 * buffer slices up to the first file range, or, when a file range is at the
 * head, one sendfile of it (through scratch where the file system cannot
 * sendfile). *offered receives how many bytes it offered. Returns what the
 * call does; 0 with *offered > 0 means the file ended before its range. */
ssize_t sk__outq_send(int fd, const sk_outq *q, const sk_buf *plain, size_t *offered,
                      uint8_t *scratch, size_t scratch_len);
/* The same through a TLS session (tls.h): buffer slices are written in
 * order with sk__tls_writev, a file range is read into scratch and written
 * (no sendfile: the kernel cannot encrypt, as kTLS is not used). Returns
 * like sk__tls_write. */
struct sk__tls;
ssize_t sk__outq_send_tls(struct sk__tls *t, const sk_outq *q, const sk_buf *plain, size_t *offered,
                          uint8_t *scratch, size_t scratch_len);
/* Drops n sent bytes from the front of plain bytes and slices together. */
void sk__outq_consume(sk_outq *q, sk_loop *loop, sk_buf *plain, size_t n);
void sk__outq_free(sk_outq *q);

/* ---- the loop (loop.c) ---- */

typedef struct sk_pool_buf {
    struct sk_pool_buf *next;
} sk_pool_buf;

struct sk_loop {
    int epfd;
    sk_watch wake; /* eventfd: sk_async_send and sk_loop_stop */
    atomic_bool stop;
    atomic_bool wake_pending;
    uint64_t now;
    unsigned refs; /* handles that keep sk_loop_run going */

    sk_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t timer_seq;

    uint8_t *rbuf; /* shared read buffer, SK_READ_CHUNK bytes */
    /* The connection whose read in rbuf is being decoded, and the replies
     * it queued that are byte for byte a run of that read (conn_write.c: sent
     * from rbuf before it is reused, never copied). */
    sk_conn *reading;
    const uint8_t *echo_start, *echo_end;
    sk_pool_buf *pool;       /* free SK_READ_CHUNK-sized buffers */
    sk_pool_buf *pool_small; /* free SK_BUF_SMALL-sized buffers */
    unsigned pool_len, pool_small_len;
    /* Counters not yet carried into sk_stats (sk__stats_flush). */
    bool stat_dirty;
    int64_t stat_local_queued;
    uint64_t stat_local[SK__STAT_LOCAL_COUNT];

    sk_list *conns;               /* every connection of this loop (for sk_loop_free) */
    sk_conn *flush_head;          /* connections with output to write this iteration */
    sk_conn *pending_head;        /* connections with buffered input to decode */
    sk_conn *close_head;          /* connections to finalise after callbacks */
    struct sk_dgram *dgram_flush; /* datagram endpoints with queued sends */
    sk_list *dgrams;
    sk_list *servers;
    sk_list *asyncs;
    sk_list *ios;
    sk_watch *garbage;
    sk_list *signals;
};

/* The monotonic clock every deadline in src/ is read from (loop.c), in
 * milliseconds and, for the blocking client's deadlines, nanoseconds. */
uint64_t sk__now_ms(void);
uint64_t sk__now_ns(void);

/* Writes a formatted sentence into err (if the caller gave one): the one way
 * library calls fill a caller's message buffer (log.c). */
void sk__set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sk__loop_wake(sk_loop *loop);

/* ---- connections (conn*.c, dial.c) ---- */

/* Creates a connection on an open, connected, non-blocking stream fd.
 * opts and cbs must outlive the connection (server-owned) unless own_cfg. */
int sk__conn_create(sk_loop *loop, int fd, const sk_conn_opts *opts, const sk_conn_callbacks *cbs,
                    void *ud, struct sk_server *srv, bool connecting, sk_conn **out);
/* Records the address accept() returned, for sk_conn_peer(). */
void sk__conn_set_peer(sk_conn *c, const struct sockaddr *sa, socklen_t len);
void sk__conns_flush(sk_loop *loop);
void sk__conns_process_pending(sk_loop *loop);
void sk__conns_finalize(sk_loop *loop);
/* Closes without callbacks (sk_loop_free). */
void sk__conn_destroy(sk_conn *c, bool call_close_cb);
sk_conn *sk__conn_srv_next(sk_conn *c);
/* The first connection of a server's list, or NULL. */
sk_conn *sk__conn_srv_first(sk_list *head);
/* Destroys every connection of the loop, without callbacks (sk_loop_free). */
void sk__conns_destroy_all(sk_loop *loop);
/* Whether c is still in its TLS handshake (on_open not yet due). */
bool sk__conn_handshaking(const sk_conn *c);
void sk__conn_link_srv(sk_conn *c, sk_list **head);
void sk__conn_unlink_srv(sk_conn *c, sk_list **head);
void sk__conn_opts_normalise(sk_conn_opts *o);

/* ---- servers (server.c) ---- */
void sk__server_conn_gone(struct sk_server *srv, sk_conn *c);
void sk__servers_free_all(sk_loop *loop);

/* ---- datagrams (dgram.c) ---- */
void sk__dgrams_flush(sk_loop *loop);
void sk__dgrams_free_all(sk_loop *loop);

/* ---- io / signal / async (handles.c) ---- */
/* Frees the loop's io, signal and async handles. sk_loop_free calls
 * sk__procs_free_all first, while the reaper's SIGCHLD watcher still exists,
 * so handles.c does not depend on proc.c. */
void sk__handles_free_all(sk_loop *loop);
void sk__asyncs_dispatch(sk_loop *loop);

/* ---- child processes (proc.c) ---- */
/* Forgets every sk_proc if loop is the process's reaper, and stops it being
 * the reaper; nothing otherwise. */
void sk__procs_free_all(sk_loop *loop);

/* ---- listening sockets (server.c; sk_server and sk_listener) ---- */

/* The Unix socket file a listener made, removed at the end only if it is
 * still that file (another server may have replaced it since). */
typedef struct sk__unix_file {
    char path[SK_ADDR_PATH_MAX + 1]; /* "" when none */
    dev_t dev;
    ino_t ino;
} sk__unix_file;
/* Binds and listens on a tcp, tls or unix address (a stale Unix socket
 * file nobody answers on is replaced), the first of its addresses of family
 * (AF_UNSPEC: any) that works. Returns the descriptor (non-blocking,
 * close-on-exec) or a negative code with err saying why. */
int sk__listen_open(const sk_addr *addr, int family, int backlog, bool reuseport,
                    sk__unix_file *made, char *err, size_t errlen);
void sk__unix_file_remove(sk__unix_file *f);

/* The server side of a TLS session on an accepted fd (sock.c): the
 * handshake within timeout_ms, then an sk_sock that owns fd. On failure fd
 * is still the caller's and err says why (what names the peer). */
int sk__sock_accept_tls(int fd, sk_tls_ctx *ctx, int timeout_ms, const char *what, sk_sock **out,
                        char *err, size_t errlen);

/* ---- access lists (acl.c) ---- */

/* Sources whose refusal was logged lately: at most one line a second per
 * source, and no more than SK__ACL_LOG_SLOTS lines a second in all. */
#define SK__ACL_LOG_SLOTS 32
typedef struct sk__acl_log {
    uint8_t key[SK__ACL_LOG_SLOTS][16];
    uint64_t at[SK__ACL_LOG_SLOTS];
    bool used[SK__ACL_LOG_SLOTS];
} sk__acl_log;
/* True if a refusal of this source should be logged now (loop ms). */
bool sk__acl_log_due(sk__acl_log *t, const struct sockaddr *sa, socklen_t len, uint64_t now);

/* ---- containment of commands (contain.c, for proc.c) ---- */

/* Fills out with up to cap pids of this process's children (every
 * thread's, zombies included); returns how many. */
size_t sk__children(pid_t *out, size_t cap);
/* A process's group and state letter ('Z': zombie) from /proc; 0 or -ESRCH. */
int sk__proc_stat(pid_t pid, pid_t *pgid, char *state);
/* Creates this process's cgroup v2 directory for commands (its path in
 * where); 0, or a negative code when cgroups cannot be used here. */
int sk__cg_setup(char *where, size_t wlen);
/* A new command cgroup: its id, and its cgroup.procs opened for writing. */
int sk__cg_new(unsigned *id, int *procs_fd);
void sk__cg_kill(unsigned id); /* cgroup.kill: every process in it */
void sk__cg_end(unsigned id);  /* kill, and remove once empty */
void sk__cg_tidy(bool all);    /* rmdir the ended (or all) empty ones */
void sk__cg_kill_all(void);
void sk__cg_teardown(void); /* rmdir what can go, the base too */

/* ---- counters behind sk_stats_get (stats.c) ---- */
enum sk__stat {
    /* Tallied per loop first (SK__STAT_LOCAL_COUNT of them): */
    SK__STAT_BYTES_IN,
    SK__STAT_BYTES_OUT,
    SK__STAT_MSGS_IN,  /* frames/lines delivered to on_message */
    SK__STAT_MSGS_OUT, /* messages queued by sk_conn_send_msg & co. */
    /* Added to the shared counters at once: */
    SK__STAT_ACCEPTED,     /* server connections accepted */
    SK__STAT_CLOSED,       /* accepted connections gone */
    SK__STAT_REFUSED,      /* peers closed at once: --max-conns */
    SK__STAT_SHED,         /* peers closed at once: out of descriptors */
    SK__STAT_ERR_PROTOCOL, /* oversize or malformed input */
    SK__STAT_ERR_IDLE,
    SK__STAT_ERR_FRAME,
    SK__STAT_ERR_DEADLINE, /* sk_conn_set_deadline: handshakes, chat lines */
    SK__STAT_ERR_RESET,
    SK__STAT_ERR_NOBUFS,    /* memory budget refusals */
    SK__STAT_DGRAM_DROPPED, /* datagrams dropped: too large, refused, reply lost */
    SK__STAT_REFUSED_ACL,   /* peers or datagrams refused by an access list */
    SK__STAT_COUNT
};
/* Relaxed atomic adds: safe from any loop's thread. For rare events. */
void sk__stat_add(enum sk__stat which, uint64_t n);
/* Adds a change of some connection's queued output (may be negative). */
void sk__stat_queued(int64_t delta);
/* The per-message counters (bytes, messages, queued output) add to the
 * loop's own tallies, plain adds on memory only its thread touches, carried
 * into the shared counters once per loop iteration: an atomic add per
 * message would bounce one cache line between the workers' cores. */
#define sk__stat_local(loop, which, n) ((loop)->stat_local[which] += (n), (loop)->stat_dirty = true)
#define sk__stat_local_queued(loop, delta)                                                         \
    ((loop)->stat_local_queued += (delta), (loop)->stat_dirty = true)
void sk__stats_flush(sk_loop *loop);

/* ---- misc ---- */
int sk__set_nonblock_cloexec(int fd);
/* Rate-limited logging: logs when at least interval_ms passed since *last. */
bool sk__log_due(uint64_t *last, uint64_t now, uint64_t interval_ms);

#endif
