/* sockit.h — the whole public API of libsockit 0.2: event loop, addresses,
 * framing, stream connections, servers, datagrams, a blocking client
 * (sk_sock), TLS, token authentication and child processes.
 *
 * Each function's comment states its contract: what it does, what it
 * returns, who owns what afterwards. How the library does it, and what it
 * costs, is in docs/DESIGN.md.
 *
 * Conventions that hold for every function below:
 *  - Functions that can fail return 0 (or a non-negative count) on success and
 *    a negative errno-style code on failure (-EINVAL, -ECONNREFUSED, ...).
 *    sk_strerror() turns a code into text, sk_err_name() into its symbol.
 *    Callers never read errno after a sockit call. Codes that mean something
 *    particular here:
 *      -EPERM       a TLS peer's certificate was refused (the reason says why)
 *      -ENODATA     the stream ended cleanly before a message began
 *      -ECONNRESET  the stream ended inside a message, or the peer reset it
 *      -EMSGSIZE    a frame or line over its maximum
 *      -ENOBUFS     the memory budget (sk_mem_set_budget) refused a buffer
 *      -ESHUTDOWN   a draining server closed the connection
 *      -ETIMEDOUT   a timeout or deadline passed
 *      -EPROTONOSUPPORT  an address of the wrong kind (stream vs datagram,
 *                   tls:// without a TLS context)
 *  - Timeouts: every call that waits or arms a deadline takes an int
 *    timeout_ms, where SK_FOREVER (-1; any negative value) means no limit and
 *    0 means no time at all (a blocking call does only what is possible at
 *    once; an asynchronous deadline passes at the next loop iteration).
 *    Fields of option structs (idle_timeout_ms, ...) are settings, not
 *    waits: there, as for every field, 0 means "not set" (none, or the
 *    default named beside it), so a zeroed struct is valid.
 *  - Ownership moves only on success: a function that fails leaves every
 *    argument as it was and allocates nothing the caller must free.
 *  - Every *_free function (and sk_sock_close) accepts NULL and does nothing
 *    then.
 *  - Every descriptor the library creates is close-on-exec and non-blocking
 *    (blocking client helpers use poll() with deadlines, not blocking fds).
 *  - The library never changes signal dispositions; it sends with
 *    MSG_NOSIGNAL so SIGPIPE is never raised by it. sk_signal_new() blocks the
 *    signals it watches in the calling thread's mask (signalfd needs that).
 *  - A loop and everything attached to it belong to one thread. The only
 *    functions safe to call from another thread are sk_async_send() and
 *    sk_loop_stop().
 */
#ifndef SOCKIT_H
#define SOCKIT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SOCKIT_BUILDING)
#define SK_API __attribute__((visibility("default")))
#else
#define SK_API
#endif

/* The version of this header. sk_version() gives the library's, which may be
 * newer when the shared library was upgraded without rebuilding. A 0.x minor
 * release may change the API (see README.md, "Changes in 0.2"). */
#define SK_VERSION_MAJOR 0
#define SK_VERSION_MINOR 2
#define SK_VERSION_PATCH 0
#define SK_VERSION       "0.2.0"
/* One number for comparisons: 0xMMmmpp (0.2.0 is 0x000200). */
#define SK_VERSION_NUMBER ((SK_VERSION_MAJOR << 16) | (SK_VERSION_MINOR << 8) | SK_VERSION_PATCH)

/* sk_version returns the version of the library running, as SK_VERSION
 * text ("0.2.0"): static, never NULL. */
SK_API const char *sk_version(void);
/* sk_version_number returns it as SK_VERSION_NUMBER does. */
SK_API unsigned sk_version_number(void);

/* The timeout_ms that means no limit (see the conventions above). */
#define SK_FOREVER (-1)

/* ------------------------------------------------------------------ errors */

/* sk_strerror returns a static, human-readable description of a negative
 * sockit/errno code (or of 0, "success"). Never returns NULL. Thread-safe. */
SK_API const char *sk_strerror(int code);

/* sk_err_name returns the symbolic name of a negative (or positive) errno
 * code, as a static string: "ECONNREFUSED", "ETIMEDOUT"; "OK" for 0 and
 * "UNKNOWN" for a number that is no errno. For logs and test messages,
 * where the text of sk_strerror is ambiguous. Thread-safe. */
SK_API const char *sk_err_name(int code);

/* ------------------------------------------------------------------ logging */

enum sk_log_level { SK_LOG_ERROR = 0, SK_LOG_WARN, SK_LOG_INFO, SK_LOG_DEBUG };

/* Receives every message the library itself wants to report (EMFILE back-off,
 * refused connections, ...). msg has no trailing newline. */
typedef void (*sk_log_fn)(enum sk_log_level level, const char *msg, void *ud);

/* Installs the process-wide log sink (NULL: library messages are dropped,
 * the default) and the most verbose level delivered. Call before starting
 * loops; not synchronised with running loops. */
SK_API void sk_set_log(sk_log_fn fn, enum sk_log_level max_level, void *ud);

/* printf-style message through the installed sink; used by the library and
 * available to applications so that everything shares one sink. */
SK_API void sk_log(enum sk_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- event loop */

typedef struct sk_loop sk_loop;
typedef struct sk_timer sk_timer;
typedef struct sk_io sk_io;
typedef struct sk_signal sk_signal;
typedef struct sk_async sk_async;

/* Creates an event loop (epoll + eventfd wake-up). *out is set on success;
 * free it with sk_loop_free() after sk_loop_run() has returned. */
SK_API int sk_loop_new(sk_loop **out);

/* Runs until sk_loop_stop() is called, or until nothing is left that could
 * produce an event (no io watchers, timers, servers, connections, asyncs or
 * signal watchers). Returns 0, or a negative code if epoll itself failed. */
SK_API int sk_loop_run(sk_loop *loop);

/* Makes sk_loop_run() return after the current iteration. Safe from any
 * thread and from any callback. */
SK_API void sk_loop_stop(sk_loop *loop);

/* Frees a loop. Every handle still attached (io, signals, asyncs, servers,
 * connections, datagram endpoints, child processes — those are forgotten as
 * by sk_proc_free, not killed) is closed and freed first without calling
 * its callbacks; timers are stopped but stay the caller's to free with
 * sk_timer_free() (safe after the loop is gone). Must not be called while
 * sk_loop_run() is running. */
SK_API void sk_loop_free(sk_loop *loop);

/* Monotonic time in milliseconds, cached at the start of each iteration. */
SK_API uint64_t sk_loop_now(const sk_loop *loop);

/* Bytes of connection input and output buffers held by all loops of the
 * process, and the budget above which a connection that needs more buffer
 * fails with -ENOBUFS (0 = unlimited, the default). The count is global
 * (shared by worker threads) so a budget bounds the whole process. */
SK_API size_t sk_mem_in_use(void);
SK_API void sk_mem_set_budget(size_t bytes);

/* Counters of the whole process, for monitoring: every loop (worker
 * threads included) adds to them with relaxed atomic operations, so
 * sk_stats_get() may be called from any thread at any time. Each counter is
 * exact; a snapshot is not taken at one instant across counters. Totals
 * count from the start of the process and never go down; conns, queued and
 * mem are current values. */
typedef struct sk_stats {
    uint64_t conns;     /* server connections open now */
    uint64_t accepted;  /* server connections accepted, in total */
    uint64_t refused;   /* peers closed at once because of max_conns/limit */
    uint64_t shed;      /* peers closed at once because descriptors ran out
                           (EMFILE/ENFILE) */
    uint64_t bytes_in;  /* read from and written to every stream connection */
    uint64_t bytes_out; /* (servers' and clients') */
    uint64_t msgs_in;   /* frames or lines delivered to on_message (raw
                           framing: each chunk delivered) */
    uint64_t msgs_out;  /* messages queued with sk_conn_send_msg,
                           sk_conn_send_msgv or sk_conn_prepare_msg */
    /* Connections failed, by reason (each failed connection counts once): */
    uint64_t err_protocol;  /* a frame or line over the maximum, bad framing */
    uint64_t err_idle;      /* idle_timeout_ms */
    uint64_t err_frame;     /* frame_timeout_ms: a message not finished in time */
    uint64_t err_deadline;  /* sk_conn_set_deadline: handshakes, authentication */
    uint64_t err_reset;     /* reset by the peer (ECONNRESET, EPIPE) */
    uint64_t err_nobufs;    /* buffer refused by the memory budget (-ENOBUFS) */
    uint64_t queued;        /* output bytes waiting on every connection now */
    uint64_t mem;           /* sk_mem_in_use() */
    uint64_t dgram_dropped; /* datagrams dropped by datagram endpoints: too
                              large, refused by sk_dgram_guard, or a reply
                              the socket would not take */
    uint64_t refused_acl;   /* peers closed right after accept, and datagrams
                               dropped, because an access list (sk_acl)
                               refused their source */
} sk_stats;

/* Fills *out with the counters now. Thread-safe. */
SK_API void sk_stats_get(sk_stats *out);

/* Writes s as one line of space-separated key=value pairs, the keys being
 * the field names above in their order ("conns=3 accepted=10 ... mem=0"), a
 * stable format for scripts (new keys may be added at the end). Returns the
 * length the whole line needs (as snprintf: the text is cut if len is
 * smaller; SK_STATS_TEXT_MAX bytes are always enough). */
/* 510 bytes with every counter at its widest; the rest is room for keys
 * added later, so that a caller's buffer of this size stays enough. */
#define SK_STATS_TEXT_MAX 768
SK_API int sk_stats_format(const sk_stats *s, char *buf, size_t len);

/* Timers: monotonic, kept in a binary heap; timers due at the same time run
 * in the order they were started. */
typedef void (*sk_timer_cb)(sk_timer *t, void *ud);

/* Creates a stopped timer. Free with sk_timer_free(); a timer may free itself
 * from its own callback. */
SK_API int sk_timer_new(sk_loop *loop, sk_timer_cb cb, void *ud, sk_timer **out);

/* (Re)starts the timer: first call after delay_ms, then every repeat_ms if
 * repeat_ms > 0. Restarting a running timer moves it. */
SK_API void sk_timer_start(sk_timer *t, uint64_t delay_ms, uint64_t repeat_ms);
SK_API void sk_timer_stop(sk_timer *t);
SK_API int sk_timer_active(const sk_timer *t);
SK_API void sk_timer_free(sk_timer *t);

/* Watches any descriptor the caller owns (pipes, stdin, ...). events is a
 * mask of SK_READABLE | SK_WRITABLE. The callback receives the ready mask
 * (SK_ERROR is set on EPOLLERR/EPOLLHUP together with SK_READABLE). If the
 * descriptor cannot be watched with epoll (a regular file), sk_io_new returns
 * -EPERM and the caller should read it directly. The descriptor is not
 * closed by sk_io_free(). */
enum { SK_READABLE = 1, SK_WRITABLE = 2, SK_ERROR = 4 };
typedef void (*sk_io_cb)(sk_io *io, int fd, int ready, void *ud);
SK_API int sk_io_new(sk_loop *loop, int fd, int events, sk_io_cb cb, void *ud, sk_io **out);
SK_API int sk_io_set_events(sk_io *io, int events);
SK_API void sk_io_free(sk_io *io);
/* sk_io_free for a descriptor that is closed before the loop waits again
 * and has no duplicate (here or in a child): that close takes it out of
 * epoll, so no epoll_ctl is made. One left open would keep reporting to
 * freed memory. */
SK_API void sk_io_free_closing(sk_io *io);

/* Delivers the given signals through a signalfd. The signals are blocked in
 * the calling thread's mask (threads created afterwards inherit the block);
 * dispositions are left alone. The callback receives the signal number.
 * sk_signal_free() closes the signalfd but leaves the signals blocked. */
typedef void (*sk_signal_cb)(sk_signal *s, int signo, void *ud);
SK_API int sk_signal_new(sk_loop *loop, const int *signals, int count, sk_signal_cb cb, void *ud,
                         sk_signal **out);
SK_API void sk_signal_free(sk_signal *s);

/* A cross-thread wake-up: sk_async_send() from any thread makes cb run once
 * on the loop's thread (several sends before it runs coalesce into one). */
typedef void (*sk_async_cb)(sk_async *a, void *ud);
SK_API int sk_async_new(sk_loop *loop, sk_async_cb cb, void *ud, sk_async **out);
SK_API void sk_async_send(sk_async *a);
SK_API void sk_async_free(sk_async *a);

/* ---------------------------------------------------------------- addresses */

enum sk_addr_kind {
    SK_ADDR_TCP = 1,  /* HOST:PORT, tcp://HOST:PORT */
    SK_ADDR_UDP,      /* udp://HOST:PORT */
    SK_ADDR_UNIX,     /* unix:PATH, unix:@NAME (abstract) */
    SK_ADDR_UNIXGRAM, /* unixgram:PATH, unixgram:@NAME */
    SK_ADDR_TLS       /* tls://HOST:PORT: TCP with TLS beneath the framing (see TLS) */
};

#define SK_ADDR_HOST_MAX 256
#define SK_ADDR_PATH_MAX 108 /* sizeof(sockaddr_un.sun_path) */

/* A parsed address. For network kinds host is the name or literal (without
 * brackets for IPv6) and port is 0..65535; for Unix kinds path holds the
 * file name or, when abstract is set, the abstract name without the '@'. */
typedef struct sk_addr {
    enum sk_addr_kind kind;
    char host[SK_ADDR_HOST_MAX];
    uint16_t port;
    char path[SK_ADDR_PATH_MAX];
    int abstract;
} sk_addr;

/* sk_addr_parse parses one of the text forms listed with enum sk_addr_kind
 * (HOST:PORT, tcp://, tls://, udp://, unix:, unixgram:; an IPv6 host in
 * brackets). Returns 0, or -EINVAL and, if err is not NULL, one sentence
 * naming the bad part in err. */
SK_API int sk_addr_parse(const char *text, sk_addr *out, char *err, size_t errlen);

/* Formats a parsed address back to its canonical text form. Returns the
 * length of the whole text, like snprintf; the output is truncated to
 * buflen-1 bytes and always terminated. */
SK_API int sk_addr_format(const sk_addr *addr, char *buf, size_t buflen);

/* Flags of sk_addr_resolve. */
enum {
    /* Resolve for bind(): an empty or "*" host means every address
     * (without it: the loopback addresses). */
    SK_RESOLVE_PASSIVE = 1
};

/* sk_addr_resolve resolves a network address (getaddrinfo; numeric literals
 * are not looked up) or builds a sockaddr_un, as flags (0 or
 * SK_RESOLVE_PASSIVE) say. Fills up to max entries of out/outlen.
 * Returns how many (>= 1), or a negative code with err naming the failure
 * (-EINVAL for an unknown flag). */
SK_API int sk_addr_resolve(const sk_addr *addr, unsigned flags, struct sockaddr_storage *out,
                           socklen_t *outlen, int max, char *err, size_t errlen);

/* Writes "1.2.3.4:5", "[::1]:5", "unix:PATH", "unix:@NAME" or "unix:(unnamed)"
 * for a socket address. Returns buf. */
SK_API char *sk_sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t buflen);

/* ------------------------------------------------------------------ framing */

enum sk_framing {
    SK_FRAMING_RAW = 0, /* bytes as they come */
    SK_FRAMING_LINE,    /* '\n'-terminated lines; a '\r' before it is dropped */
    SK_FRAMING_FRAME    /* 4-byte big-endian length N, then N bytes */
};

#define SK_DEFAULT_MAX_LINE  (64u * 1024u)
#define SK_DEFAULT_MAX_FRAME (16u * 1024u * 1024u)
#define SK_FRAME_HEADER      4

/* Parses "raw", "line" or "frame". Returns 0 or -EINVAL. */
SK_API int sk_framing_parse(const char *name, enum sk_framing *out);
SK_API const char *sk_framing_name(enum sk_framing framing);

/* An incremental decoder. It holds no buffer, only how far it has scanned,
 * so a line dribbled one byte at a time is scanned once, not once per byte. */
typedef struct sk_decoder {
    enum sk_framing framing;
    size_t max;     /* max payload (frame) or line length without "\n" */
    size_t scanned; /* internal: bytes of the current line already searched */
} sk_decoder;

/* One decoded message: payload = buf + offset, length len; consumed is how
 * many bytes of buf the message occupied (header or newline included). */
typedef struct sk_msg {
    size_t offset;
    size_t len;
    size_t consumed;
} sk_msg;

/* max 0 selects the framing's default maximum. */
SK_API void sk_decoder_init(sk_decoder *d, enum sk_framing framing, size_t max);

/* Looks for the next complete message at the start of buf[0..len).
 * Returns 1 and fills *msg when one is complete; 0 when more bytes are needed
 * (for line/frame: *need, if not NULL, receives the total buffer length known
 * to be required, or 0 if unknown); -EMSGSIZE when the declared frame length
 * or the line exceeds max. After a message is returned the caller drops
 * msg->consumed bytes from the front and calls again. Raw framing returns all
 * of buf (if len > 0) as one message. */
SK_API int sk_decoder_next(sk_decoder *d, const uint8_t *buf, size_t len, sk_msg *msg,
                           size_t *need);

/* Writes the 4-byte big-endian header for a payload of len bytes. */
SK_API void sk_frame_header(uint8_t out[SK_FRAME_HEADER], uint32_t len);

/* --------------------------------------------------------- stream connections */

typedef struct sk_conn sk_conn;

/* Callbacks of a stream connection. Every callback may call sk_conn_close(),
 * sk_conn_abort() or sk_conn_fail() on its connection: closing is deferred
 * until the callback returns, so the pointer stays valid until on_close.
 * They take no user pointer: sk_conn_data() returns the one given when the
 * connection was made (or set with sk_conn_set_data()). */
typedef struct sk_conn_callbacks {
    /* The connection is established (accepted or connected). */
    void (*on_open)(sk_conn *c);
    /* One message: a raw chunk, a line without its "\n" (and "\r"), or a frame
     * payload. data is valid only during the call. */
    void (*on_message)(sk_conn *c, const uint8_t *data, size_t len);
    /* Queued output fell below the low-water mark after being above the
     * high-water mark (reading has resumed). */
    void (*on_drain)(sk_conn *c);
    /* The peer shut down its write side (read returned 0). NULL means: finish
     * sending what is queued, then close — what echo-style services want. */
    void (*on_eof)(sk_conn *c);
    /* A protocol error (oversize frame or line, a frame timeout) was
     * detected; err is the code and sk_conn_reason() the text. The callback
     * may queue a reply that explains it; the connection then closes
     * lingering (see sk_conn_fail). */
    void (*on_error)(sk_conn *c, int err);
    /* Called exactly once when the connection is gone. err is 0 for an
     * orderly close and a negative code otherwise: -ETIMEDOUT for the idle
     * and frame timeouts, -EMSGSIZE for an oversize frame or line,
     * -ECONNRESET for a reset, -ESHUTDOWN when a draining server closes it,
     * -ENOBUFS when the memory budget is exhausted (sk_conn_reason() has the
     * text). The connection is freed right after this returns. */
    void (*on_close)(sk_conn *c, int err);
} sk_conn_callbacks;

/* A TLS configuration (server: certificate and key; client: how to verify
 * the server), made by sk_tls_server_new() or sk_tls_client_new(). */
typedef struct sk_tls_ctx sk_tls_ctx;

/* How long a TLS handshake may take when sk_conn_opts says 0: a handshake
 * must finish in bounded time however the peer trickles its bytes. */
#define SK_TLS_DEFAULT_HANDSHAKE_MS 10000u

/* Limits and behaviour of a stream connection. Zero fields take defaults. */
typedef struct sk_conn_opts {
    enum sk_framing framing;
    size_t max_line;           /* default SK_DEFAULT_MAX_LINE */
    size_t max_frame;          /* default SK_DEFAULT_MAX_FRAME */
    size_t out_high_water;     /* reading pauses above this; default 1 MiB */
    size_t out_low_water;      /* reading resumes at or below; default high/4 */
    uint32_t idle_timeout_ms;  /* no bytes either way for this long; 0 = none */
    uint32_t frame_timeout_ms; /* a started frame/line must complete; 0 = none */
    uint32_t linger_ms;        /* lingering close after a protocol error; default 2000 */
    /* TLS beneath the framing (NULL: plain bytes). A server context on a
     * server's or an adopted connection, a client context on one made by
     * sk_conn_connect (which needs one for a tls:// address). The context
     * must outlive every connection using it. The handshake runs inside the
     * loop; on_open runs only once it is complete, so callbacks never see a
     * connection that is not yet secure. A handshake that fails or passes
     * its deadline closes the connection with a logged reason (INFO) and no
     * callback at all on a server (the service never saw it), on_close on a
     * client. Bytes through TLS keep every limit and water mark. */
    sk_tls_ctx *tls;
    uint32_t handshake_timeout_ms; /* TLS handshake deadline; 0: SK_TLS_DEFAULT_HANDSHAKE_MS */
    /* For sk_conn_connect_fd and sk_conn_adopt with a client context: the
     * name (or IP address) the server's certificate must carry, also sent
     * as SNI. Copied when the connection is made. A context that verifies
     * by CA needs it (-EINVAL without); sk_conn_connect takes the address's
     * host instead. NULL by default. */
    const char *tls_host;
    /* sk_conn_connect only: the address family to use and a source address
     * to bind (see sk_dial_opts). Copied when the call is made; NULL: any
     * family, the kernel's choice of source. */
    const struct sk_dial_opts *dial;
    /* Opens paused, as if sk_conn_pause() had been called before on_open:
     * no byte is read (nor the socket watched) until sk_conn_resume(). A
     * relay that dials a target first spares the watch it would drop at
     * once. A TLS handshake still runs. 0 (off) by default. */
    int start_paused;
} sk_conn_opts;

/* Fills opts with the defaults above. */
SK_API void sk_conn_opts_init(sk_conn_opts *opts);

/* Queues bytes for sending exactly as given (no framing). The bytes are
 * copied; they go out in one write/writev per connection at the end of the
 * current loop iteration. Returns 0, -EPIPE if the connection is closing, or
 * -ENOBUFS if the memory budget is exhausted — the connection is then
 * already aborted (on_close follows), so callers need do nothing more. */
SK_API int sk_conn_send(sk_conn *c, const void *data, size_t len);

/* sk_conn_send_msg queues one message in the connection's framing: frame →
 * header + payload; line → payload + "\n"; raw → payload. Same returns as
 * sk_conn_send, plus -EMSGSIZE for a frame larger than UINT32_MAX. It may
 * be called from on_message with the very (data, len) it was given (an
 * echo). */
SK_API int sk_conn_send_msg(sk_conn *c, const void *data, size_t len);

/* Reserves room for one message of len bytes in the output queue, writes its
 * framing (frame header now, "\n" after the payload for line framing) and
 * returns where the len payload bytes go; the caller fills them before
 * making any other call on this connection. Lets a service transform input
 * straight into the output queue without a copy. Returns NULL (with *err set
 * when err is not NULL) if the connection is closing or the memory budget is
 * exhausted. */
SK_API void *sk_conn_prepare_msg(sk_conn *c, size_t len, int *err);

/* Queues several buffers as one message (gathered), in the connection's
 * framing. */
SK_API int sk_conn_send_msgv(sk_conn *c, const struct iovec *iov, int iovcnt);

/* Bytes queued and not yet accepted by the kernel (copied bytes, shared
 * slices and file ranges alike). */
SK_API size_t sk_conn_queued(const sk_conn *c);

/* Graceful close: stop reading, send what is queued, shut down the write
 * side, close. on_close runs with err 0 (unless sending fails). */
SK_API void sk_conn_close(sk_conn *c);

/* Immediate close: drop queued output and close (the peer may see a reset
 * if it had unread data). on_close runs with err (use -ECONNABORTED if you
 * have no better code). */
SK_API void sk_conn_abort(sk_conn *c, int err);

/* Protocol-error close: records reason (copied) and err, stops decoding
 * input, sends what is queued (e.g. an error message), shuts down the write
 * side, and keeps reading and discarding until the peer closes or linger_ms
 * passes — so the peer receives the reason instead of a reset. */
SK_API void sk_conn_fail(sk_conn *c, int err, const char *reason);

/* Half-close: after queued output is sent, shut down the write side; keep
 * reading. */
SK_API void sk_conn_shutdown(sk_conn *c);

/* Stops or resumes reading from the peer (backpressure from the application,
 * e.g. when another sink is full). Independent of the automatic pause at the
 * high-water mark. */
SK_API void sk_conn_pause(sk_conn *c);
SK_API void sk_conn_resume(sk_conn *c);

/* sk_conn_set_deadline sets a one-off deadline timeout_ms from now
 * (SK_FOREVER clears it; 0 passes at the next loop iteration): if it
 * passes, the connection fails (lingering close) with -ETIMEDOUT and
 * reason (NULL: a default), which is copied (its first 63 bytes): the
 * caller's string may go away at once. For protocol handshakes and
 * authentication, which must finish in bounded time however the peer
 * trickles its bytes. */
SK_API void sk_conn_set_deadline(sk_conn *c, int timeout_ms, const char *reason);

/* Changes the largest message this connection accepts from now on (0: back
 * to the max_frame / max_line of its options), e.g. small frames until a
 * peer has authenticated. */
SK_API void sk_conn_set_max_msg(sk_conn *c, size_t max);

SK_API void sk_conn_set_data(sk_conn *c, void *ud);
SK_API void *sk_conn_data(const sk_conn *c);
SK_API sk_loop *sk_conn_loop(const sk_conn *c);
SK_API int sk_conn_fd(const sk_conn *c);
SK_API enum sk_framing sk_conn_framing(const sk_conn *c);
/* The peer as text ("127.0.0.1:4242", "[::1]:4242", "unix:..."). */
SK_API const char *sk_conn_peer(const sk_conn *c);
/* The reason recorded for the close (empty string if none). */
SK_API const char *sk_conn_reason(const sk_conn *c);
SK_API uint64_t sk_conn_bytes_in(const sk_conn *c);
SK_API uint64_t sk_conn_bytes_out(const sk_conn *c);

/* Connects asynchronously to a stream address (tcp, unix, or tls:// with a
 * client context in opts->tls: its host is sent as SNI and verified); on_open
 * runs when connected (after the TLS handshake), on_close with the error if
 * connecting fails (-EPERM: the server's certificate was refused; the
 * reason says why). timeout_ms bounds connecting (SK_FOREVER: no
 * limit; 0: whatever has not connected by the next loop iteration fails
 * with -ETIMEDOUT). Every address
 * the name resolves to is tried (Happy Eyeballs v2, RFC 8305): IPv6 and IPv4
 * alternating, the next address at once when an attempt fails and beside it
 * when one is still pending after 250 ms; the first to connect wins (the TLS
 * handshake runs on it alone) and timeout_ms covers the whole race. If every
 * address fails at once, returns that error and makes no connection; a
 * later failure reaches on_close with the last attempt's error. Until
 * connected, sk_conn_fd() is -1. */
SK_API int sk_conn_connect(sk_loop *loop, const sk_addr *addr, const sk_conn_opts *opts,
                           const sk_conn_callbacks *cbs, void *ud, int timeout_ms, sk_conn **out);

/* Like sk_conn_connect, on a stream socket the caller made (bound to a
 * source address, options set, ...): starts a non-blocking connect to sa.
 * On success the connection owns fd; on failure fd stays the caller's.
 * With a TLS client context in opts, the server's name comes from
 * opts->tls_host (checked against its certificate and sent as SNI): a
 * context that verifies by CA without one is refused with -EINVAL (and a
 * logged sentence), since a chain that is only checked would let any
 * certificate the CA ever signed, for any host, pass. A --pin or insecure
 * context needs no name. The same holds for sk_conn_adopt. */
SK_API int sk_conn_connect_fd(sk_loop *loop, int fd, const struct sockaddr *sa, socklen_t salen,
                              const sk_conn_opts *opts, const sk_conn_callbacks *cbs, void *ud,
                              int timeout_ms, sk_conn **out);

/* Adopts a connected stream descriptor (made non-blocking and close-on-exec
 * here). On success the connection owns fd; on_open runs on the next loop
 * iteration. */
SK_API int sk_conn_adopt(sk_loop *loop, int fd, const sk_conn_opts *opts,
                         const sk_conn_callbacks *cbs, void *ud, sk_conn **out);

/* ----------------------------------------------------------- shared buffers */

/* A reference-counted byte buffer that the output queues of many connections
 * can point into at once, so that one message broadcast to N connections is
 * stored once instead of N times (a chat room's fan-out). */
typedef struct sk_shared sk_shared;

/* Creates a buffer of len bytes (contents undefined: fill them before
 * queueing any) holding one reference, the caller's. Its memory counts once
 * against the sk_mem_set_budget() budget however many queues point into it.
 * Returns 0, -EINVAL (len 0), -ENOBUFS (budget) or -ENOMEM. */
SK_API int sk_shared_new(size_t len, sk_shared **out);
SK_API uint8_t *sk_shared_data(sk_shared *s);
SK_API size_t sk_shared_len(const sk_shared *s);

/* Takes another reference and returns s. Drops one: the buffer is freed with
 * the last reference (NULL is ignored). The count is atomic, so references
 * may be taken and dropped on several loops' threads; the bytes themselves
 * are not synchronised (write them before handing the buffer over). */
SK_API sk_shared *sk_shared_ref(sk_shared *s);
SK_API void sk_shared_unref(sk_shared *s);

/* sk_conn_send_shared queues bytes [off, off+len) of s after everything
 * already queued on c, without copying them. Ownership: the queue takes its
 * own reference and drops it once those bytes are written or the
 * connection is gone, so the caller may drop its reference at once. The
 * queued bytes must not change until then; other bytes of s may still be
 * written (a buffer can be filled and queued piece by piece). Queued slices
 * count in sk_conn_queued() and the water marks like copied bytes. Returns
 * 0, -EINVAL for a range outside s, -EPIPE if the connection is closing, or
 * -ENOBUFS (the connection is then aborted, as with sk_conn_send). */
SK_API int sk_conn_send_shared(sk_conn *c, sk_shared *s, size_t off, size_t len);

/* ------------------------------------------------------------- file ranges */

/* sk_conn_sendfile queues bytes [off, off+len) of the file open on fd
 * after everything already queued on c. They are read when their turn
 * comes (every byte queued before them sent), not now, and go to the
 * socket without passing through the caller. Ownership: the library holds
 * its own duplicate of fd (close-on-exec) until the range is sent or the
 * connection is gone, so the caller may close fd at once; the file's bytes
 * must not change until then. If the file is shorter than the range when
 * its turn comes, the connection is aborted (on_close with -EIO and a
 * reason saying so): the bytes were promised and nothing can stand in for
 * them. A range counts in sk_conn_queued() and the water marks like queued
 * bytes, so on_drain says when to queue the next one, but not against the
 * memory budget (it holds no memory). Clear O_NONBLOCK on fd first where
 * the file system honours it.
 * Returns 0 (also for len 0), -EINVAL (fd < 0, or off + len beyond
 * INT64_MAX), -EPIPE if the connection is closing, -EMFILE or -ENFILE when
 * no descriptor is left for the duplicate (nothing queued; the connection
 * is left as it was), or -ENOBUFS (the connection is then aborted, as with
 * sk_conn_send). */
SK_API int sk_conn_sendfile(sk_conn *c, int fd, uint64_t off, size_t len);

/* ------------------------------------------------------------------ servers */

typedef struct sk_server sk_server;

/* Network access lists: rules "ADDR[/PREFIX]" for IPv4 and IPv6 (a bare
 * address is /32 or /128; host bits past the prefix are ignored; brackets
 * around an IPv6 address are allowed). A peer is refused if it matches a
 * deny rule, or if there is any allow rule and it matches none. An
 * IPv4-mapped IPv6 peer (::ffff:a.b.c.d, seen by a dual-stack [::]
 * listener) is judged by the IPv4 rules, and a rule ::ffff:a.b.c.d/96+ is
 * an IPv4 rule. Peers that are not IP (Unix sockets) are always allowed.
 * An sk_acl is read-only once built: any thread may check it. */
typedef struct sk_cidr {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network byte order; IPv4 in the first 4 */
    unsigned prefix;  /* 0-32 or 0-128 */
} sk_cidr;

/* Parses one rule. Returns 0 or -EINVAL (not an address or CIDR). */
SK_API int sk_cidr_parse(const char *text, sk_cidr *out);
/* 1 if the address sa (AF_INET or AF_INET6) lies in c, else 0. */
SK_API int sk_cidr_match(const sk_cidr *c, const struct sockaddr *sa, socklen_t len);

typedef struct sk_acl sk_acl;
/* At most this many rules in one list: checks are linear. */
#define SK_ACL_MAX_RULES 65536
SK_API int sk_acl_new(sk_acl **out);
/* Adds "CIDR[,CIDR...]" as allow (deny = 0) or deny rules. Returns 0, or
 * -EINVAL with a sentence in err (may be NULL) naming the bad item; rules
 * before it stay added. */
SK_API int sk_acl_add(sk_acl *acl, int deny, const char *list, char *err, size_t errlen);
/* Adds the rules of a file: one CIDR a line, '#' starts a comment, blank
 * lines are ignored. Errors name the file and line. */
SK_API int sk_acl_add_file(sk_acl *acl, int deny, const char *path, char *err, size_t errlen);
/* How many allow (deny = 0) or deny rules the list holds. */
SK_API size_t sk_acl_count(const sk_acl *acl, int deny);
/* 1 if the peer may connect (or send), 0 if refused. acl NULL: 1. */
SK_API int sk_acl_allows(const sk_acl *acl, const struct sockaddr *sa, socklen_t len);
SK_API void sk_acl_free(sk_acl *acl);

/* A connection cap shared by several servers, possibly on several loops'
 * threads (workers sharing a port): sk_server_opts.limit. Thread-safe. */
typedef struct sk_limit sk_limit;
SK_API int sk_limit_new(unsigned max, sk_limit **out);
/* Connections currently counted against the cap. */
SK_API unsigned sk_limit_count(const sk_limit *l);
/* Frees the limit; every server using it must be freed first. */
SK_API void sk_limit_free(sk_limit *l);

typedef struct sk_server_opts {
    sk_conn_opts conn;     /* applied to every accepted connection */
    sk_conn_callbacks cbs; /* copied for every accepted connection */
    void *ud;              /* sk_conn_data() of each accepted connection */
    unsigned max_conns;    /* 0 = unlimited; excess peers are closed at once */
    sk_limit *limit;       /* if set, also a cap shared with other servers
                              (excess peers closed the same way) */
    const char *log_name;  /* if set, each refused peer is logged (INFO) as
                              "<log_name> close <peer> in=0 out=0
                              reason=max-conns reached" */
    int backlog;           /* 0 = 511 */
    int reuseport;         /* set SO_REUSEPORT (TCP workers share a port) */
    int listen_fd;         /* >= 0: adopt this listening socket, owned by
                              the server once the call succeeds (workers
                              sharing one socket each pass a dup()); -1:
                              create one */
    const sk_acl *acl;     /* if set, a peer it refuses is closed right
                              after accept, before a byte is read (not
                              counted as a connection; logged at most
                              once a second per source; counted in
                              sk_stats.refused_acl). Borrowed: must
                              outlive the server. Unix sockets: ignored */
} sk_server_opts;

SK_API void sk_server_opts_init(sk_server_opts *opts);

/* sk_server_listen creates the listening socket for a tcp, tls or unix
 * address and starts accepting on loop. opts may be NULL for the defaults
 * of sk_server_opts_init (then every callback is NULL: a server that
 * accepts and discards). A stale unix socket file is replaced only if nobody is
 * listening on it; the file is removed when the server is freed (if it was
 * created by this server). Accepting uses accept4 with a reserve descriptor:
 * on EMFILE/ENFILE the pending peer is shed, accepting pauses ~100 ms, and
 * the condition is logged at most once a second. err (may be NULL) receives
 * a sentence on failure. */
SK_API int sk_server_listen(sk_loop *loop, const sk_addr *addr, const sk_server_opts *opts,
                            sk_server **out, char *err, size_t errlen);

/* The listening descriptor (to share with sk_server_opts.listen_fd in other
 * loops) and the bound port (useful with port 0). */
SK_API int sk_server_fd(const sk_server *srv);
SK_API int sk_server_port(const sk_server *srv);
SK_API unsigned sk_server_conn_count(const sk_server *srv);

/* sk_server_drain drains gracefully: stop accepting (the listening socket
 * is closed), let open connections finish; at timeout_ms ask those still
 * open to close (queued output is flushed, on_close gets -ESHUTDOWN), abort
 * any left one second later, then call done (may be NULL) once no
 * connection is left — so done runs at most timeout_ms + 1 s after the
 * call. SK_FOREVER: never ask; done runs when the last connection has
 * closed by itself. */
typedef void (*sk_server_drained_cb)(sk_server *srv, void *ud);
SK_API void sk_server_drain(sk_server *srv, int timeout_ms, sk_server_drained_cb done, void *ud);

/* Closes the listener and aborts every connection (on_close runs for each,
 * with -ECONNABORTED unless the connection already had a reason). Must not be
 * called from a callback of one of its own connections. */
SK_API void sk_server_free(sk_server *srv);

/* sk_serve runs the whole life of a simple server in one call: parses addr
 * (the text forms of sk_addr_parse), creates a loop, listens with opts
 * (NULL: defaults), calls on_ready (may be NULL) with the address actually
 * bound ("127.0.0.1:40123" when given port 0), runs until SIGINT or
 * SIGTERM, then drains as sk_server_drain with drain_ms (a second signal
 * stops at once; connections still open then get on_close with
 * -ECONNABORTED) and
 * frees everything. SIGINT and SIGTERM are blocked in the calling thread
 * while it runs (signalfd); any still pending at the end are consumed, and
 * the caller's mask is restored before it returns.
 * Returns 0 after a clean stop; -EINVAL for a bad address (err names the bad
 * part); another negative code if the server could not start or the loop
 * failed (err says why). */
typedef void (*sk_ready_cb)(const char *bound, void *ud);
SK_API int sk_serve(const char *addr, const sk_server_opts *opts, int drain_ms,
                    sk_ready_cb on_ready, void *ud, char *err, size_t errlen);

/* ---------------------------------------------------------------- datagrams */

typedef struct sk_dgram sk_dgram;

/* One datagram received; peer is valid only during the call. */
typedef void (*sk_dgram_cb)(sk_dgram *d, const uint8_t *data, size_t len,
                            const struct sockaddr *peer, socklen_t peerlen, void *ud);

#define SK_DGRAM_MAX 65507 /* the largest UDP payload over IPv4 */

/* sk_dgram_bind binds a udp:// or unixgram: address and receives what is
 * sent to it; sk_dgram_connect connects a client endpoint to one (for
 * unixgram the client autobinds an abstract name so that replies can reach
 * it). Both receive with recvmmsg in batches; datagrams larger than
 * SK_DGRAM_MAX are detected (MSG_TRUNC) and dropped with a logged warning.
 * A unixgram path created by binding is removed when the endpoint is freed.
 * Returns 0 with *out set, -EPROTONOSUPPORT for a stream address, or
 * another negative code with err (may be NULL) saying why. */
SK_API int sk_dgram_bind(sk_loop *loop, const sk_addr *addr, sk_dgram_cb cb, void *ud,
                         sk_dgram **out, char *err, size_t errlen);
SK_API int sk_dgram_connect(sk_loop *loop, const sk_addr *addr, sk_dgram_cb cb, void *ud,
                            sk_dgram **out, char *err, size_t errlen);

/* Queues one datagram for peer (NULL peer: the connected address). Queued
 * datagrams leave together with sendmmsg at the end of the receive batch (or
 * of the loop iteration). When the socket buffer is full the datagram is
 * dropped and counted — datagrams are lossy by nature; the queue never grows
 * without bound. Returns 0, -EMSGSIZE or -ENOBUFS (queue full, dropped). */
SK_API int sk_dgram_send(sk_dgram *d, const void *data, size_t len, const struct sockaddr *peer,
                         socklen_t peerlen);
/* Guards an endpoint that answers what it receives (an echo) against
 * reflection: from now on a received datagram is dropped before the
 * callback, counted (sk_dgram_dropped, sk_stats.dgram_dropped) and logged
 * at most once a second, if
 *  - (UDP) its source port is below 1024 or 0: the well-known UDP responders
 *    (echo 7, daytime 13, chargen 19, DNS 53, NTP 123 ...) that a spoofed
 *    request would set answering us back, and never a client's port;
 *  - (UDP) its source is this endpoint itself: our port on a loopback
 *    address, on the bound address, or on the address the datagram was sent
 *    to (IP_PKTINFO / IPV6_PKTINFO, for a wildcard bind), so that one
 *    spoofed datagram costs one drop, not an endless loop;
 *  - its source (address and port; unixgram: path) already had rate
 *    datagrams delivered in the last second (a sliding window; rate 0: no
 *    limit). Up to 256 sources are tracked at once; the least recently seen
 *    one is forgotten first.
 * Meant for bound endpoints. Calling it again changes the rate. Returns 0,
 * -ENOMEM, or a negative errno if the socket refuses IP_PKTINFO. */
SK_API int sk_dgram_guard(sk_dgram *d, unsigned rate);
SK_API int sk_dgram_fd(const sk_dgram *d);
/* Drops datagrams whose source acl refuses (see sk_acl), before the
 * callback; counted in sk_stats.refused_acl, logged at most once a second
 * per source. acl is borrowed (must outlive d); NULL: no filtering. */
SK_API void sk_dgram_set_acl(sk_dgram *d, const sk_acl *acl);
SK_API int sk_dgram_port(const sk_dgram *d);
/* Datagrams dropped by this endpoint: too large, refused by the guard, or
 * replies the socket would not take. */
SK_API uint64_t sk_dgram_dropped(const sk_dgram *d);
SK_API void sk_dgram_free(sk_dgram *d);

/* ------------------------------------------------------------ blocking client */

/* A small blocking client for tools and tests. Each waiting call takes a
 * timeout_ms that bounds the whole call (SK_FOREVER: no limit; 0: do not
 * wait, only what is possible at once) and returns -ETIMEDOUT when it
 * passes. Descriptors are non-blocking underneath and every wait goes
 * through poll(), so a timeout is never missed.
 *
 * An sk_sock is one connected stream socket, plain or carrying a TLS
 * session: the type owns both, so it is closed with sk_sock_close(), never
 * with close() on its descriptor. One thread uses an sk_sock at a time. */
typedef struct sk_sock sk_sock;

/* sk_sock_dial connects to a stream address within timeout_ms. With tls
 * NULL: a tcp or unix address (a tls:// address is refused with
 * -EPROTONOSUPPORT). With a client context (sk_tls_client_new): a tls:// or
 * tcp address, and the TLS handshake completes within the same timeout.
 * Every address the name resolves to is tried as by sk_conn_connect (Happy
 * Eyeballs v2).
 * Returns 0 with *out set (its descriptor close-on-exec, non-blocking,
 * TCP_NODELAY), or a negative code with err (may be NULL) saying why in one
 * line: -EPERM when the server's certificate is refused (err names the
 * reason: expired, wrong host, self-signed, pin mismatch), -ETIMEDOUT, a
 * connect error.
 * Ownership: *out is the caller's, to free with sk_sock_close(); tls is
 * borrowed and must outlive the socket. */
SK_API int sk_sock_dial(const sk_addr *addr, sk_tls_ctx *tls, int timeout_ms, sk_sock **out,
                        char *err, size_t errlen);

/* How a client chooses its end of a TCP connection (nc's -4, -6 and -s):
 * family AF_INET or AF_INET6 tries only the name's addresses of that family
 * (AF_UNSPEC, 0: all of them); a source whose ss_family is not AF_UNSPEC is
 * bound before connecting (port 0: any port), and then only addresses of
 * its family are tried. A name left with no address to try fails with
 * -EADDRNOTAVAIL. Unix addresses refuse both with -EINVAL. A zeroed struct
 * asks for nothing. */
typedef struct sk_dial_opts {
    int family;
    struct sockaddr_storage source;
    socklen_t source_len;
} sk_dial_opts;

/* Parses "ADDR", "ADDR:PORT", "[IPV6]" or "[IPV6]:PORT" (numeric addresses
 * only; a bare IPv6 address needs no brackets when it has no port) into
 * o->source. Returns 0, or -EINVAL with a sentence in err (may be NULL);
 * -EINVAL too when o->family is set and differs from the address's. */
SK_API int sk_dial_source_parse(const char *text, sk_dial_opts *o, char *err, size_t errlen);

/* sk_sock_dial with dial options (NULL: none, exactly sk_sock_dial). */
SK_API int sk_sock_dial_opts(const sk_addr *addr, sk_tls_ctx *tls, const sk_dial_opts *dial,
                             int timeout_ms, sk_sock **out, char *err, size_t errlen);

/* sk_sock_adopt wraps a connected stream descriptor the caller made (a
 * socketpair end, an accepted socket) as a plain sk_sock, making it
 * non-blocking and close-on-exec. Returns 0 with *out set, -EINVAL, or
 * -ENOMEM. Ownership: on success the sk_sock owns fd (sk_sock_close closes
 * it); on failure fd stays the caller's. */
SK_API int sk_sock_adopt(int fd, sk_sock **out);

/* A blocking listener, the server side of the blocking client (nc -l):
 * peers are accepted one call at a time, each as an sk_sock, and wait in
 * the kernel's backlog meanwhile. One thread uses an sk_listener at a
 * time. */
typedef struct sk_listener sk_listener;
typedef struct sk_listener_opts {
    /* A server context (sk_tls_server_new): every peer's TLS handshake
     * runs inside sk_listener_accept. Needed for tls://. Borrowed: must
     * outlive the listener and its sockets. */
    sk_tls_ctx *tls;
    /* A peer it refuses is closed right after accept, before a byte is
     * read, logged (WARN) at most once a second per source and counted in
     * sk_stats.refused_acl; Unix peers are never refused. Borrowed. */
    const sk_acl *acl;
    int family;                    /* AF_INET or AF_INET6: bind only such an
                                      address of the name; 0: the first */
    int backlog;                   /* 0: 511 */
    uint32_t handshake_timeout_ms; /* 0: SK_TLS_DEFAULT_HANDSHAKE_MS */
} sk_listener_opts;

/* Binds and listens on a tcp, tls or unix address (opts NULL: plain, no
 * access list). A stale Unix socket file nobody answers on is replaced; the
 * file is removed by sk_listener_close if it is still the one made here.
 * Returns 0 with *out set, or a negative code with err (may be NULL). */
SK_API int sk_listener_open(const sk_addr *addr, const sk_listener_opts *opts, sk_listener **out,
                            char *err, size_t errlen);
SK_API int sk_listener_fd(const sk_listener *l);
/* The bound port (useful with port 0); 0 for a Unix socket. */
SK_API int sk_listener_port(const sk_listener *l);
/* Waits up to timeout_ms (SK_FOREVER: no limit) for a peer the access list
 * allows and, for TLS, completes its handshake (bounded by the handshake
 * timeout). Returns 0 with *out set (close-on-exec, non-blocking; the
 * caller's, to free with sk_sock_close) and, if peer is not NULL, its
 * address in peer/peerlen; -ETIMEDOUT; -EINTR when a signal arrived while
 * waiting (the caller checks its flags and calls again); or another
 * negative code with err saying why, for one peer whose handshake failed
 * (the listener is still good: call again). */
SK_API int sk_listener_accept(sk_listener *l, int timeout_ms, sk_sock **out,
                              struct sockaddr_storage *peer, socklen_t *peerlen, char *err,
                              size_t errlen);
/* Closes the listening socket (and removes its Unix socket file). NULL:
 * nothing. Sockets it accepted are not affected. */
SK_API void sk_listener_close(sk_listener *l);

/* sk_sock_close sends close_notify where the socket carries TLS, closes the
 * descriptor and frees s. NULL does nothing. Returns 0 or close()'s
 * error; s is gone either way. */
SK_API int sk_sock_close(sk_sock *s);

/* sk_sock_release frees a plain s and hands its descriptor to the caller
 * (to adopt it with sk_conn_adopt, say). Returns the descriptor, now the
 * caller's to close; or -EINVAL for a TLS socket, which stays as it was
 * (its session cannot leave the sk_sock). */
SK_API int sk_sock_release(sk_sock *s);

/* sk_sock_fd returns the descriptor, for poll() (never close() it). */
SK_API int sk_sock_fd(const sk_sock *s);

/* sk_sock_send_all sends all len bytes. Returns 0 or a negative code. */
SK_API int sk_sock_send_all(sk_sock *s, const void *buf, size_t len, int timeout_ms);

/* sk_sock_recv_exact receives exactly len bytes. Returns 0, -ECONNRESET if
 * the peer closed before len bytes arrived, or another negative code. */
SK_API int sk_sock_recv_exact(sk_sock *s, void *buf, size_t len, int timeout_ms);

/* sk_sock_recv_wait waits for bytes and receives what is there (at least 1
 * byte, at most cap). Returns the count, 0 at end of stream, -EINVAL for
 * cap 0, or a negative code. */
SK_API ssize_t sk_sock_recv_wait(sk_sock *s, void *buf, size_t cap, int timeout_ms);

/* sk_sock_send_frame sends one frame: 4-byte big-endian length, then the
 * payload, in one write. Returns 0, -EMSGSIZE (len > UINT32_MAX), or a
 * negative code. */
SK_API int sk_sock_send_frame(sk_sock *s, const void *buf, size_t len, int timeout_ms);

/* sk_sock_recv_frame receives one frame into buf (capacity cap). Returns
 * the payload length (0 for an empty frame), -EMSGSIZE if the declared
 * length exceeds cap (the stream is then out of step and should be
 * closed), -ENODATA if the stream ended cleanly before the first header
 * byte, -ECONNRESET if it ended inside a frame. */
SK_API ssize_t sk_sock_recv_frame(sk_sock *s, void *buf, size_t cap, int timeout_ms);

/* Reads lines from an sk_sock, keeping the bytes that arrive after a line
 * for the next call. buf is the caller's storage (the longest line plus 2
 * bytes); nothing is allocated. Every field is private: set them with
 * sk_line_reader_init only. */
typedef struct sk_line_reader {
    sk_sock *sock;
    uint8_t *buf;
    size_t cap, len, used;
} sk_line_reader;

/* sk_line_reader_init makes r read from s into buf (capacity cap); s and
 * buf are borrowed and must outlive r. */
SK_API void sk_line_reader_init(sk_line_reader *r, sk_sock *s, void *buf, size_t cap);

/* sk_sock_recv_line receives one line. Returns its length; *line points at
 * it inside the reader's buffer, without "\n" (and a "\r" before it),
 * NUL-terminated and valid until the next call. -ENODATA: clean end of
 * stream before a line; -ECONNRESET: end inside a line; -EMSGSIZE: longer
 * than cap - 2 (the stream is then out of step); -ETIMEDOUT; -EINVAL if
 * cap < 3. */
SK_API ssize_t sk_sock_recv_line(sk_line_reader *r, const char **line, int timeout_ms);

/* Single non-blocking steps, for clients that run their own poll() loop on
 * sk_sock_fd(). They behave like recv(MSG_DONTWAIT) /
 * sendmsg(MSG_NOSIGNAL|MSG_DONTWAIT) — a count, 0 at the end of the stream
 * for recv — but return negative codes (-EAGAIN: wait for the events
 * sk_sock_wants() names), and go through TLS where the socket has a
 * session. A TLS send that returned -EAGAIN must be retried with the same
 * bytes first. */
SK_API ssize_t sk_sock_recv(sk_sock *s, void *buf, size_t cap);
SK_API ssize_t sk_sock_send(sk_sock *s, const void *buf, size_t len);
SK_API ssize_t sk_sock_sendv(sk_sock *s, const struct iovec *iov, int iovcnt);
/* sk_sock_wants returns, after -EAGAIN, SK_READABLE or SK_WRITABLE: what
 * the TLS session waits for (a read may need to write); dflt for a plain
 * socket. */
SK_API int sk_sock_wants(const sk_sock *s, int dflt);
/* sk_sock_pending returns 1 if decrypted bytes are already waiting: poll()
 * cannot see them, so a poll loop must read before it waits. 0 for a plain
 * socket. */
SK_API int sk_sock_pending(const sk_sock *s);
/* sk_sock_is_tls returns 1 if s carries a TLS session, else 0. */
SK_API int sk_sock_is_tls(const sk_sock *s);
/* sk_sock_describe writes "TLSv1.3 TLS_AES_256_GCM_SHA384[, resumed]" for a
 * TLS socket. Returns 0, or -EINVAL (buf empty) for a plain one. */
SK_API int sk_sock_describe(const sk_sock *s, char *buf, size_t buflen);
/* sk_sock_shutdown half-closes: close_notify (TLS), then shutdown(SHUT_WR);
 * reading goes on. Returns 0 or a negative code. */
SK_API int sk_sock_shutdown(sk_sock *s);

/* ---------------------------------------------------------------------- TLS */

/* TLS on OpenSSL, beneath the framing: a connection with a context in
 * sk_conn_opts.tls (or an sk_sock from sk_sock_dial with a context) carries the same
 * frames, lines and bytes as a plain one. TLS 1.2 at least, 1.3 whenever
 * the peer has it; no renegotiation; sessions resume (tickets on servers, a
 * per-context cache of the last session on clients); close_notify is sent
 * before the write side shuts. The TLS code sits behind one seam (docs/
 * DESIGN.md, "TLS"); a build never needs it unless a context is made. */

#define SK_TLS_PIN_LEN 32 /* a SHA-256 certificate fingerprint */

/* A server context from a PEM certificate chain file and a PEM private key
 * file. Returns 0, or -EINVAL with err naming the file and what is wrong
 * (unreadable, not PEM, key does not match). Free with sk_tls_ctx_free()
 * once no connection or server uses it. Thread-safe once made: worker loops
 * may share one context. */
SK_API int sk_tls_server_new(const char *cert_file, const char *key_file, sk_tls_ctx **out,
                             char *err, size_t errlen);

/* How a client verifies the server. Verification is always on unless
 * insecure is set: with pin, the server certificate's SHA-256 must equal it
 * (the chain and names are not judged, so a self-signed certificate works);
 * otherwise the chain must lead to ca_file (a PEM file; NULL: the system's
 * CA store) and the certificate must name the host dialed (a DNS name or an
 * IP address in subjectAltName). Every certificate in ca_file is a trust
 * anchor, a CA or not (X509_V_FLAG_PARTIAL_CHAIN), so a server's own leaf
 * works as its ca_file. Both sides use the key exchange groups X25519,
 * P-256 and P-384 only, and TLS 1.2 suites ECDHE with AES-GCM or ChaCha20,
 * in the server's order. */
typedef struct sk_tls_client_opts {
    const char *ca_file;
    const uint8_t *pin; /* SK_TLS_PIN_LEN bytes, or NULL */
    int insecure;       /* accept any certificate: an eavesdropper's too */
} sk_tls_client_opts;

/* A client context (opts may be NULL: the system CA store). Returns 0, or
 * -EINVAL with err naming the problem (an unreadable CA file). The context
 * caches the last session per host for resumption; it may be shared by
 * threads. */
SK_API int sk_tls_client_new(const sk_tls_client_opts *opts, sk_tls_ctx **out, char *err,
                             size_t errlen);
SK_API void sk_tls_ctx_free(sk_tls_ctx *ctx);

/* Unfinished server-side handshakes, process-wide. Each costs OpenSSL about
 * 48 KiB before the peer has proved anything, so each is charged
 * SK_TLS_HANDSHAKE_MEM against sk_mem_set_budget() until it completes (a
 * handshake the budget cannot hold is refused: the accepted connection is
 * closed at once, with a logged warning), and at most max of them exist at
 * once (default SK_TLS_DEFAULT_MAX_HANDSHAKES; 0: no cap): a new one beyond
 * it evicts the oldest unfinished one of its own source (peer address; an
 * IPv6 /64) if that has any, else the oldest of all; the evicted one is
 * closed with a logged reason. So stalled peers cannot lock real clients
 * out, and a flood from one source only evicts itself. sk_tls_handshakes() says how
 * many are unfinished now. */
#define SK_TLS_DEFAULT_MAX_HANDSHAKES 1024u
#define SK_TLS_HANDSHAKE_MEM          (48u * 1024u)
SK_API void sk_tls_set_max_handshakes(unsigned max);
SK_API unsigned sk_tls_handshakes(void);

/* Parses a certificate fingerprint: 64 hex digits, in either case, plain or
 * colon-separated in pairs as `openssl x509 -noout -fingerprint -sha256`
 * prints it (its "sha256 Fingerprint=" prefix is accepted too). Returns 0,
 * or -EINVAL (out untouched). */
SK_API int sk_tls_pin_parse(const char *text, uint8_t out[SK_TLS_PIN_LEN]);

/* Writes the pin as "AB:CD:...": 95 characters and a NUL (buflen 96 is
 * enough; less truncates at a pair). */
SK_API void sk_tls_pin_format(const uint8_t pin[SK_TLS_PIN_LEN], char *buf, size_t buflen);

/* The SHA-256 fingerprint of the first certificate of a PEM file. Returns 0
 * or -EINVAL / -EIO with err saying why. */
SK_API int sk_tls_cert_pin(const char *cert_file, uint8_t out[SK_TLS_PIN_LEN], char *err,
                           size_t errlen);

/* Makes a self-signed certificate for trying TLS out: writes NAME.key (an EC
 * P-256 key, PEM, mode 0600) and NAME.crt (PEM, valid for days from a
 * minute ago, CN = NAME's last path component, subjectAltName DNS:localhost,
 * IP:127.0.0.1, IP:::1, and DNS:NAME when that looks like a host name; a
 * leaf, CA:FALSE with key usage digitalSignature and extended key usage
 * serverAuth, so it cannot sign others, yet serves as ca_file: see
 * sk_tls_client_opts). Refuses to replace either file
 * (-EEXIST). pin_out (may be NULL) receives its fingerprint. Returns 0 or a
 * negative code with err saying why; on failure neither file is left. */
SK_API int sk_tls_make_cert(const char *name, unsigned days, uint8_t pin_out[SK_TLS_PIN_LEN],
                            char *err, size_t errlen);

/* Channel binding (RFC 9266 "tls-exporter"): writes len bytes of keying
 * material exported from the TLS session under label (SK_TLS_EXPORTER_LABEL
 * for RFC 9266's binding) with an empty context. Both ends of one TLS
 * connection get the same bytes, no other connection (a relay's second
 * one included) does; TLS 1.3 gives fresh ones per connection, resumed or
 * not. Returns 0; -ENOPROTOOPT for a connection or descriptor without TLS;
 * -ENOTSUP for TLS 1.2 without the extended master secret (RFC 7627; the
 * binding would not be unique); -EINVAL for an empty label or len 0; -EIO
 * if OpenSSL fails. Call once the handshake is over (on_open onwards;
 * after sk_sock_dial). */
#define SK_TLS_EXPORTER_LABEL "EXPORTER-Channel-Binding"
SK_API int sk_sock_tls_exporter(const sk_sock *s, const char *label, uint8_t *out, size_t len);
SK_API int sk_conn_tls_exporter(const sk_conn *c, const char *label, uint8_t *out, size_t len);

/* ------------------------------------------- randomness, tokens, authentication */

/* Shared-secret authentication for the typed service protocols (exec,
 * files): both sides hold the same token, exchange random nonces and prove
 * knowledge of the token with HMAC-SHA256 over both nonces, so the token
 * never crosses the wire and a recorded exchange cannot be replayed. The
 * message layouts are the protocols' business (docs/PROTOCOL.md); these
 * functions are the cryptography they share. */

#define SK_TOKEN_MIN 32 /* shortest acceptable token, in bytes */
/* Fewest different byte values an acceptable token has: 32 random bytes
 * written as hex show about 14 of the 16 digits; "aaaa...", "abab..." or
 * a short word repeated show a handful. */
#define SK_TOKEN_MIN_DISTINCT 8
#define SK_TOKEN_MAX          4096 /* longest token sk_token_load accepts */
#define SK_AUTH_NONCE         32   /* bytes of each side's nonce */
#define SK_AUTH_PROOF         32   /* bytes of a proof (an HMAC-SHA256) */
#define SK_AUTH_SERVICE_MAX   32   /* longest service name a proof may bind */
#define SK_AUTH_BINDING       32   /* bytes of TLS channel binding a proof may cover */

/* Fills buf with len bytes from the kernel's CSPRNG (getrandom), waiting
 * only if the pool is not yet initialised at boot. Returns 0 or a negative
 * code. */
SK_API int sk_random(void *buf, size_t len);

/* Checks that a token can be a secret: at least SK_TOKEN_MIN bytes, at
 * least SK_TOKEN_MIN_DISTINCT different byte values, and not one shorter
 * pattern repeated ("0123456789abcdef" twice). Returns 0, or -EINVAL with
 * the reason (a sentence fragment such as "is too short (20 bytes; at
 * least 32)") in why. A heuristic: it refuses what a person types, and
 * never what sk_token_create writes. */
SK_API int sk_token_check(const void *token, size_t len, char *why, size_t whylen);

/* Creates a token file at path: 32 bytes from sk_random written as 64
 * lowercase hex digits and a newline (the token is those 64 characters),
 * mode 0600, created with O_EXCL|O_NOFOLLOW|O_CLOEXEC: an existing file or
 * link is never replaced. Returns 0, -EEXIST if path exists, or another
 * negative code, with a sentence in err; on failure nothing is left. */
SK_API int sk_token_create(const char *path, char *err, size_t errlen);

/* Reads a token file into out (capacity cap; SK_TOKEN_MAX is always
 * enough) and sets *len. The token is the file's bytes, less one trailing
 * "\n" (or "\r\n"). Refuses, with -EPERM and a sentence in err: a file
 * readable or writable by group or others (chmod 600 fixes it), a symbolic
 * link, or anything but a regular file; with -EINVAL: a token that
 * sk_token_check refuses (too short or of low variety; err then ends with
 * "(run: sockit token FILE)"); with -EFBIG: one longer than cap or
 * SK_TOKEN_MAX.
 * The checks are made on the opened descriptor, so the file cannot be
 * swapped between check and read. On failure out is left untouched. */
SK_API int sk_token_load(const char *path, uint8_t *out, size_t cap, size_t *len, char *err,
                         size_t errlen);

/* Reads a secret that is not a sockit token (a password another program
 * chose, such as Redis's) under the same file rules as sk_token_load, with
 * no check of its strength: a regular file, not a symbolic link, neither
 * readable nor writable by group or others; the secret is the file's
 * bytes less one trailing "\n" (or "\r\n"), at most cap and SK_TOKEN_MAX
 * bytes. what names the file in err ("password file"). Returns 0 and sets
 * *len, or -EPERM, -EFBIG or another negative code with a sentence in err;
 * on failure out is left untouched. */
SK_API int sk_secret_load(const char *path, const char *what, uint8_t *out, size_t cap, size_t *len,
                          char *err, size_t errlen);

/* Computes a proof of knowledge of the token for one handshake:
 *   HMAC-SHA256(key = token,
 *               "sockit-auth-v1" 0x00 role 0x00 service 0x00 nonce_s nonce_c)
 * where role is "client" or "server" (so that one side's proof is never
 * valid as the other's), service the protocol's service name (at most
 * SK_AUTH_SERVICE_MAX bytes, so a proof for one service is worthless to
 * another), and nonce_s / nonce_c the SK_AUTH_NONCE-byte nonces of the
 * server and the client. Writes SK_AUTH_PROOF bytes to out. Returns 0,
 * -EINVAL for another role, an empty or over-long service, or -EIO if
 * libcrypto failed. */
SK_API int sk_auth_proof(const uint8_t *token, size_t token_len, const char *role,
                         const char *service, const uint8_t nonce_s[SK_AUTH_NONCE],
                         const uint8_t nonce_c[SK_AUTH_NONCE], uint8_t out[SK_AUTH_PROOF]);

/* The same proof bound to a TLS connection: binding (NULL: none, exactly
 * sk_auth_proof) is the SK_AUTH_BINDING bytes of sk_conn_tls_exporter /
 * sk_sock_tls_exporter with SK_TLS_EXPORTER_LABEL, appended to the message:
 *   HMAC-SHA256(key = token, "sockit-auth-v1" 0x00 role 0x00 service 0x00
 *               nonce_s nonce_c binding)
 * A proof made on one TLS connection is then refused on any other, so a
 * relay that terminates TLS on both sides cannot pass it on. */
SK_API int sk_auth_proof_bound(const uint8_t *token, size_t token_len, const char *role,
                               const char *service, const uint8_t nonce_s[SK_AUTH_NONCE],
                               const uint8_t nonce_c[SK_AUTH_NONCE], const uint8_t *binding,
                               uint8_t out[SK_AUTH_PROOF]);

/* Compares two secrets in time that depends only on len, never on where
 * they differ (CRYPTO_memcmp). Returns 1 if equal, 0 if not. */
SK_API int sk_auth_equal(const void *a, const void *b, size_t len);

/* ---------------------------------------------------------- child processes */

/* Spawning and reaping children from an event loop: the loop never waits on
 * a child, exits are delivered as callbacks, and the child starts clean —
 * only descriptors 0-2 open, default signal dispositions, an empty signal
 * mask, exactly the environment given.
 *
 * SIGCHLD is process-wide, so exactly one loop per process reaps: the one
 * passed to sk_proc_init(). It reaps every child of the process (waitpid
 * -1), including children it did not spawn (orphans re-parented to a child
 * subreaper, or children another part of the program forks: do not mix
 * with system(), popen() or your own waitpid() in the same process). */

typedef struct sk_proc sk_proc;

/* Receives the exit of a spawned child: status is the wait status (use
 * WIFEXITED/WEXITSTATUS/WIFSIGNALED/WTERMSIG). The process has been reaped;
 * the callback may call sk_proc_free() on it. */
typedef void (*sk_proc_exit_cb)(sk_proc *p, int status, void *ud);

enum {
    /* The child leads a new session and process group (setsid() before
     * exec: no controlling terminal, so it cannot open /dev/tty; its group
     * id is its pid), so sk_proc_kill reaches everything it starts that
     * stays in the group. */
    SK_PROC_NEW_PGROUP = 1,
    /* With SK_PROC_NEW_PGROUP: when the leader is reaped, SIGKILL whatever
     * is left of its group (background jobs it did not wait for) before
     * on_exit runs — at that moment the group id cannot have been reused. */
    SK_PROC_KILL_GROUP_ON_EXIT = 2,
    /* With SK_PROC_NEW_PGROUP: the child's stdin, stdout and stderr are
     * opts->pty_fd, the slave side of a pseudo-terminal the caller opened
     * (posix_openpt, grantpt, unlockpt, then the slave with O_NOCTTY), and
     * it becomes the new session's controlling terminal (TIOCSCTTY), so
     * the terminal's Ctrl-C and hangup reach the command. No pipes are
     * made: stdin_fd, stdout_fd and stderr_fd are set to -1, the caller
     * talks to the master and still owns pty_fd (close it after the spawn). */
    SK_PROC_PTY = 4
};

typedef struct sk_proc_opts {
    /* The program and its arguments, NULL-terminated; argv[0] is run. A
     * name without '/' is looked up in the PATH of envp (not the parent's
     * environment; without one, "/usr/bin:/bin"; empty PATH elements are
     * skipped, never taken as the current directory). */
    const char *const *argv;
    const char *const *envp; /* the complete environment; NULL: empty */
    const char *cwd;         /* working directory of the child; NULL: inherit */
    unsigned flags;          /* SK_PROC_* */
    int pty_fd;              /* with SK_PROC_PTY: the terminal's slave side (borrowed) */
    /* Set on success: the parent's ends of the child's stdin (write end),
     * stdout and stderr (read ends), non-blocking and close-on-exec, owned
     * by the caller (close them; watch them with sk_io). Writing to stdin
     * after the child closed it raises SIGPIPE unless the application
     * ignores or blocks it — the child gets SIG_DFL back either way. */
    int stdin_fd, stdout_fd, stderr_fd;
} sk_proc_opts;

/* Makes loop the process's reaper: blocks SIGCHLD in the calling thread
 * and watches it with a signalfd on loop. Call it once, from the loop's
 * thread, before any other thread exists (threads created later inherit
 * the block; a thread that does not block SIGCHLD may swallow it, and
 * exits would then be noticed only at the next SIGCHLD). Calling it again
 * with the same loop does nothing; sk_loop_free() of the reaper undoes it
 * (SIGCHLD stays blocked), and another loop may then be made the reaper.
 * Returns 0, -EBUSY if another loop is the reaper, -EINVAL if SIGCHLD is
 * ignored (SIG_IGN or SA_NOCLDWAIT: the kernel would reap children before
 * anyone could learn their status), or another negative code. */
SK_API int sk_proc_init(sk_loop *loop);

/* Starts a child (fork and execve) with three fresh pipes as its
 * stdin/stdout/stderr. Failures to run are reported here, not as an exit:
 * the child sends the errno of a failed chdir or execve through a
 * close-on-exec pipe, so the return is -ENOENT, -EACCES, -ENOEXEC, ... and
 * the child has already been reaped; a caller can then say "could not
 * run" (what a shell reports as 127). Waits only until the child has
 * exec'd (microseconds), never for it to finish. On success *out tracks
 * the child until it is reaped, on_exit runs once then, and opts' fd
 * fields are set. Returns -ECHILD if loop is not the reaper (see
 * sk_proc_init), -EINVAL for an empty argv. */
SK_API int sk_proc_spawn(sk_loop *loop, sk_proc_opts *opts, sk_proc_exit_cb on_exit, void *ud,
                         sk_proc **out);

/* Sends sig to the child — to its whole process group if it was spawned
 * with SK_PROC_NEW_PGROUP. Returns 0, -ESRCH once the child has been
 * reaped (its pid or group id may since belong to someone else), or
 * another negative code. */
SK_API int sk_proc_kill(sk_proc *p, int sig);

/* The child's process id (still returned after it was reaped). */
SK_API pid_t sk_proc_pid(const sk_proc *p);

/* Releases p. A child not yet reaped is neither killed nor waited for: it
 * is forgotten, and reaped silently when it exits. Safe from on_exit. */
SK_API void sk_proc_free(sk_proc *p);

/* Containment: what a child leaves behind (a daemon it double-forked, a
 * process that left its group with setsid) is killed too. */
enum {
    /* The process is a child subreaper (orphans of its children come to
     * it). After each reaped exit, every child of the process that is not
     * a tracked sk_proc and not in the process group of a running one is
     * SIGKILLed (found in /proc/self/task/ * /children) — so children
     * forked by other code in the process are killed as well. */
    SK_PROC_CONTAIN_SUBREAPER = 1,
    /* Also: each child spawned from now on runs in its own cgroup v2,
     * created under the process's own (/sys/fs/cgroup is cgroup2 and that
     * cgroup delegated to us: writable, Linux 5.14+ for cgroup.kill), and
     * killed whole with cgroup.kill when its leader is reaped and by
     * sk_proc_kill(p, SIGKILL). */
    SK_PROC_CONTAIN_CGROUP = 2
};

/* Turns containment on for the reaper loop (from its thread): returns the
 * mechanism in use (SK_PROC_CONTAIN_CGROUP where the system allows it,
 * else SK_PROC_CONTAIN_SUBREAPER), or -ECHILD if loop is not the reaper,
 * or another negative code (prctl failed). where (may be NULL) receives a
 * sentence naming the mechanism, and why cgroups were not used. */
SK_API int sk_proc_contain(sk_loop *loop, char *where, size_t wlen);

/* With containment on: sweeps now (as after an exit), then returns how
 * many children are alive that are not tracked sk_procs — leftovers still
 * in the group of a running child — to count against a limit of running
 * children. 0 without containment. From the reaper's thread. */
SK_API unsigned sk_proc_orphans(void);

/* 1 if p runs in its own cgroup (SK_PROC_CONTAIN_CGROUP), else 0. */
SK_API int sk_proc_contained(const sk_proc *p);

/* sk_proc_kill_all, at shutdown, with containment on: SIGKILLs every child
 * of the process (and every command cgroup), reaps them, and repeats for
 * their orphans until none is left or timeout_ms have passed (SK_FOREVER:
 * until none is left; 0: one round); then removes the cgroups and
 * turns containment off. Handles still held answer -ESRCH afterwards.
 * Meant for after the reaper loop was freed; does nothing without
 * containment. */
SK_API void sk_proc_kill_all(int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif /* SOCKIT_H */
