/* outq.c — the part of a connection's output queue that points into shared
 * buffers or into files: one broadcast message is stored once however many
 * connections queue it, and a file range (sk_conn_sendfile) is never copied
 * into memory at all. The queue of slices sits beside the connection's plain
 * byte buffer; plain bytes and buffer slices leave together in one sendmsg(),
 * a file range with one sendfile() once everything before it has gone
 * (conn_write.c's write path). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"
#include "tls.h"

/* ---------------------------------------------------- output queue slices */

/* A ring of slices; each remembers the position in the connection's plain
 * byte stream it follows, so plain bytes queued before it go out first and
 * those queued after it go out after it. A slice is either part of a shared
 * buffer (s set) or a range of a file (s NULL, fd our own duplicate). */
typedef struct sk_slice {
    sk_shared *s;
    int fd;       /* file ranges: closed once the range is sent or dropped */
    uint64_t off; /* where the unsent part starts, in s or in the file */
    size_t len;   /* the part not yet sent */
    uint64_t at;  /* plain-stream position this slice follows */
} sk_slice;

struct sk_outq {
    sk_slice *v;
    size_t head, len, cap; /* cap is a power of two */
    uint64_t plain_sent;   /* plain-stream position of the first unsent plain byte */
    size_t bytes;          /* slice bytes not yet sent */
};

/* The ring starts small, so a chat member that receives one line at a time
 * costs little; one that a burst grew past OUTQ_KEEP_CAP is freed once empty
 * (a burst is rare; a ring freed and reallocated every iteration is not). */
#define OUTQ_MIN_CAP  4u
#define OUTQ_KEEP_CAP 16u
/* iovecs per sendmsg: far below IOV_MAX (1024), enough that a busy queue
 * still leaves in one call per iteration in practice. */
#define OUTQ_IOV 64
/* Linux's sendfile moves at most 0x7ffff000 bytes a call (MAX_RW_COUNT) and
 * silently returns that much for any larger count (nginx's note); asking for
 * no more keeps "sent less than offered" meaning "the socket is full". */
#define SENDFILE_MAX 0x7ffff000u

static sk_slice *slot(const sk_outq *q, size_t i) { return &q->v[(q->head + i) & (q->cap - 1)]; }

static int ring_resize(sk_outq *q, size_t cap)
{
    if (!sk__mem_charge(cap * sizeof(sk_slice)))
        return -ENOBUFS;
    sk_slice *v = malloc(cap * sizeof(sk_slice));
    if (v == NULL) {
        sk__mem_uncharge(cap * sizeof(sk_slice));
        return -ENOMEM;
    }
    for (size_t i = 0; i < q->len; i++)
        v[i] = *slot(q, i);
    if (q->v != NULL) {
        sk__mem_uncharge(q->cap * sizeof(sk_slice));
        free(q->v);
    }
    q->v = v;
    q->cap = cap;
    q->head = 0;
    return 0;
}

int sk__outq_push(sk_outq **qp, sk_shared *s, size_t off, size_t len, size_t plain_queued)
{
    sk_outq *q = *qp;
    if (q == NULL) {
        if (!sk__mem_charge(sizeof *q))
            return -ENOBUFS;
        q = calloc(1, sizeof *q);
        if (q == NULL) {
            sk__mem_uncharge(sizeof *q);
            return -ENOMEM;
        }
        *qp = q;
    }
    uint64_t at = q->plain_sent + plain_queued;
    if (q->len > 0) {
        /* Back-to-back slices of one buffer with no plain bytes between
         * them are one slice: no extra reference, no extra iovec. */
        sk_slice *t = slot(q, q->len - 1);
        if (t->s == s && t->off + t->len == off && t->at == at) {
            t->len += len;
            q->bytes += len;
            return 0;
        }
    }
    if (q->len == q->cap) {
        int err = ring_resize(q, q->cap ? q->cap * 2 : OUTQ_MIN_CAP);
        if (err < 0)
            return err;
    }
    *slot(q, q->len) =
        (sk_slice){.s = sk_shared_ref(s), .fd = -1, .off = off, .len = len, .at = at};
    q->len++;
    q->bytes += len;
    return 0;
}

static int outq_get(sk_outq **qp)
{
    if (*qp != NULL)
        return 0;
    if (!sk__mem_charge(sizeof **qp))
        return -ENOBUFS;
    *qp = calloc(1, sizeof **qp);
    if (*qp == NULL) {
        sk__mem_uncharge(sizeof **qp);
        return -ENOMEM;
    }
    return 0;
}

int sk__outq_push_file(sk_outq **qp, int fd, uint64_t off, size_t len, size_t plain_queued)
{
    int err = outq_get(qp);
    if (err < 0)
        return err;
    sk_outq *q = *qp;
    if (q->len == q->cap) {
        err = ring_resize(q, q->cap ? q->cap * 2 : OUTQ_MIN_CAP);
        if (err < 0)
            return err;
    }
    /* Our own descriptor for the range, so the caller may close theirs at
     * once and the file stays readable until its turn comes. */
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0)
        return -errno;
    *slot(q, q->len) = (sk_slice){
        .s = NULL, .fd = dup, .off = off, .len = len, .at = q->plain_sent + plain_queued};
    q->len++;
    q->bytes += len;
    return 0;
}

static void slice_release(sk_slice *sl)
{
    if (sl->s != NULL)
        sk_shared_unref(sl->s);
    else
        close(sl->fd);
}

size_t sk__outq_bytes(const sk_outq *q) { return q ? q->bytes : 0; }
bool sk__outq_active(const sk_outq *q) { return q != NULL && q->len > 0; }

/* A queue that backs up far (its peer reads slowly) would hold an entry per
 * message, which for a chat line of a few bytes is several times the line:
 * past OUTQ_BACKLOG entries, messages up to OUTQ_COPY_MAX bytes are copied
 * into the plain buffer instead, so what a slow peer holds stays close to
 * the bytes it has not read (and a limit on those bytes, like chat's
 * --max-queue, bounds its memory). Not sooner: the plain buffer costs
 * 64 KiB at least, the price of about 1,600 entries, and thousands of
 * peers a little behind (a big room's join notices) must stay cheap. */
#define OUTQ_BACKLOG  1024u
#define OUTQ_COPY_MAX 256u

bool sk__outq_copy_instead(const sk_outq *q, size_t len)
{
    return q != NULL && q->len >= OUTQ_BACKLOG && len <= OUTQ_COPY_MAX;
}

/* The file range at the head of the queue, with nothing before it: one
 * sendfile() straight from the page cache. Where the file system cannot
 * (EINVAL, ENOSYS: no splice support) the bytes go through scratch instead.
 * Returns 0 with *offered > 0 when the file ended before the range did. */
static ssize_t send_file_range(int sock, const sk_slice *sl, size_t *offered, uint8_t *scratch,
                               size_t scratch_len)
{
    size_t n = sl->len < SENDFILE_MAX ? sl->len : SENDFILE_MAX;
    off_t pos = (off_t)sl->off;
    *offered = n;
    /* sendfile has no MSG_NOSIGNAL: writing to a peer that is gone raises
     * SIGPIPE in this thread. The library never depends on the signal's
     * disposition, so it is blocked for the call and, if the call raised
     * it, taken back before the mask is restored. That includes a short
     * count: sendfile moves a range in pieces, and a peer gone after the
     * first ones raises the signal while the call reports what did go. */
    sigset_t pipe_only, old;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
    ssize_t r = sendfile(sock, sl->fd, &pos, n);
    int e = r < 0 ? errno : 0;
    if ((r < 0 || (size_t)r < n) && !sigismember(&old, SIGPIPE)) {
        static const struct timespec now = {0, 0};
        while (sigtimedwait(&pipe_only, NULL, &now) < 0 && errno == EINTR) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = e;
    if (r >= 0 || (e != EINVAL && e != ENOSYS))
        return r;
    size_t want = n < scratch_len ? n : scratch_len;
    ssize_t got;
    do
        got = pread(sl->fd, scratch, want, (off_t)sl->off);
    while (got < 0 && errno == EINTR);
    if (got <= 0)
        return got;
    *offered = (size_t)got;
    return send(sock, scratch, (size_t)got, MSG_NOSIGNAL);
}

/* The iovec of one send in queue order: plain bytes and buffer slices up
 * to the first file range. Returns the count of entries; *offered gets the
 * bytes they hold. */
static int head_iov(const sk_outq *q, const sk_buf *plain, struct iovec *iov, size_t *offered)
{
    int n = 0;
    size_t total = 0;
    uint64_t pos = q->plain_sent;
    uint8_t *p = plain->data ? plain->data + plain->off : NULL;
    size_t left = plain->len;
    size_t i = 0;
    for (; i < q->len && n + 2 <= OUTQ_IOV; i++) {
        const sk_slice *sl = slot(q, i);
        size_t gap = (size_t)(sl->at - pos);
        if (gap > 0) {
            iov[n++] = (struct iovec){.iov_base = p, .iov_len = gap};
            p += gap;
            left -= gap;
            pos += gap;
            total += gap;
        }
        if (sl->s == NULL)
            break; /* a file range: sendfile takes over once these are sent */
        iov[n++] = (struct iovec){.iov_base = sl->s->data + sl->off, .iov_len = sl->len};
        total += sl->len;
    }
    if (i == q->len && left > 0 && n < OUTQ_IOV) {
        iov[n++] = (struct iovec){.iov_base = p, .iov_len = left};
        total += left;
    }
    *offered = total;
    return n;
}

ssize_t sk__outq_send(int fd, const sk_outq *q, const sk_buf *plain, size_t *offered,
                      uint8_t *scratch, size_t scratch_len)
{
    const sk_slice *head = slot(q, 0);
    if (head->s == NULL && head->at == q->plain_sent)
        return send_file_range(fd, head, offered, scratch, scratch_len);
    struct iovec iov[OUTQ_IOV];
    int n = head_iov(q, plain, iov, offered);
    /* sendmsg, not writev: writev on a socket whose peer is gone raises
     * SIGPIPE, and the library never depends on its disposition. */
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
    return sendmsg(fd, &msg, MSG_NOSIGNAL);
}

ssize_t sk__outq_send_tls(struct sk__tls *t, const sk_outq *q, const sk_buf *plain, size_t *offered,
                          uint8_t *scratch, size_t scratch_len)
{
    const sk_slice *head = slot(q, 0);
    if (head->s == NULL && head->at == q->plain_sent) {
        /* A file range under TLS: the bytes must pass through user space to
         * be encrypted, so read a buffer's worth and write it. If the write
         * waits (EAGAIN), the retry reads the same bytes again from the same
         * offset, which is what OpenSSL requires of a retried write. */
        size_t want = head->len < scratch_len ? head->len : scratch_len;
        ssize_t got;
        *offered = want;
        do
            got = pread(head->fd, scratch, want, (off_t)head->off);
        while (got < 0 && errno == EINTR);
        if (got <= 0)
            return got;
        *offered = (size_t)got;
        return sk__tls_write(t, scratch, (size_t)got);
    }
    /* Gathered into scratch first: a record per slice would cost a record
     * header, a MAC and a syscall for each chat line of a few bytes. A retry
     * after EAGAIN gathers the same bytes first again (more may follow). */
    struct iovec iov[OUTQ_IOV];
    int n = head_iov(q, plain, iov, offered);
    size_t k = 0;
    for (int i = 0; i < n && k < scratch_len; i++) {
        size_t m = iov[i].iov_len < scratch_len - k ? iov[i].iov_len : scratch_len - k;
        memcpy(scratch + k, iov[i].iov_base, m);
        k += m;
    }
    *offered = k;
    return sk__tls_write(t, scratch, k);
}

void sk__outq_consume(sk_outq *q, sk_loop *loop, sk_buf *plain, size_t n)
{
    while (n > 0) {
        if (q->len == 0) {
            sk__buf_consume(loop, plain, n);
            q->plain_sent += n;
            return;
        }
        sk_slice *sl = slot(q, 0);
        size_t gap = (size_t)(sl->at - q->plain_sent);
        if (gap > 0) {
            size_t k = n < gap ? n : gap;
            sk__buf_consume(loop, plain, k);
            q->plain_sent += k;
            n -= k;
            continue;
        }
        size_t k = n < sl->len ? n : sl->len;
        sl->off += k;
        sl->len -= k;
        q->bytes -= k;
        n -= k;
        if (sl->len == 0) {
            slice_release(sl);
            q->head = (q->head + 1) & (q->cap - 1);
            q->len--;
        }
    }
    if (q->len == 0 && q->cap > OUTQ_KEEP_CAP) {
        /* A burst grew the ring; give it back now that it is empty. */
        sk__mem_uncharge(q->cap * sizeof(sk_slice));
        free(q->v);
        q->v = NULL;
        q->cap = q->head = 0;
    }
}

void sk__outq_free(sk_outq *q)
{
    if (q == NULL)
        return;
    for (size_t i = 0; i < q->len; i++)
        slice_release(slot(q, i));
    if (q->v != NULL) {
        sk__mem_uncharge(q->cap * sizeof(sk_slice));
        free(q->v);
    }
    sk__mem_uncharge(sizeof *q);
    free(q);
}
