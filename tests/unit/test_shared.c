/* test_shared.c — shared buffers (sk_shared) and sk_conn_send_shared: memory
 * accounting, order with copied bytes, partial writes across many slices,
 * water marks, and references released on every way out. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(shared, .init = unit_alarm);

/* ---------------------------------------------------------------- fixture */

/* The far end of a socketpair, read by a thread with blocking recv()s until
 * EOF; it then shuts down its own side so the connection's lingering close
 * ends at once. delay_ms holds the first read back (the queue builds up);
 * chunk bounds each recv (small: many partial writes on the other side). */
typedef struct reader {
    int fd;
    unsigned delay_ms;
    size_t chunk;
    uint8_t *buf;
    size_t len, cap;
    pthread_t thread;
} reader;

static void *reader_main(void *arg)
{
    reader *r = arg;
    if (r->delay_ms)
        unit_sleep_ms(r->delay_ms);
    for (;;) {
        if (r->cap - r->len < r->chunk) {
            r->cap = r->cap * 2 + r->chunk;
            r->buf = realloc(r->buf, r->cap);
            if (r->buf == NULL)
                abort();
        }
        ssize_t n = recv(r->fd, r->buf + r->len, r->chunk, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        r->len += (size_t)n;
    }
    shutdown(r->fd, SHUT_WR);
    return NULL;
}

typedef struct fx {
    sk_loop *loop;
    sk_conn *conn;
    reader rd;
    unit_watchdog wd;
    void (*on_open)(struct fx *x, sk_conn *c);
    int closed, close_err, drains;
    size_t queued_at_open, queued_at_drain;
    char reason[200];
} fx;

static void fx_open(sk_conn *c)
{
    fx *x = sk_conn_data(c);
    x->on_open(x, c);
}

static void fx_message(sk_conn *c, const uint8_t *data, size_t len)
{
    (void)c;
    (void)data;
    (void)len;
}

static void fx_drain(sk_conn *c)
{
    fx *x = sk_conn_data(c);
    x->drains++;
    x->queued_at_drain = sk_conn_queued(c);
}

static void fx_close(sk_conn *c, int err)
{
    fx *x = sk_conn_data(c);
    x->closed++;
    x->close_err = err;
    strncpy(x->reason, sk_conn_reason(c), sizeof x->reason - 1);
}

/* Adopts one end of a socketpair with opts, starts the reader on the other
 * (when start_reader), runs the loop until the connection is gone. */
static void fx_run(fx *x, const sk_conn_opts *opts, int start_reader)
{
    static const sk_conn_callbacks cbs = {
        .on_open = fx_open,
        .on_message = fx_message,
        .on_drain = fx_drain,
        .on_close = fx_close,
    };
    cr_assert_eq(sk_loop_new(&x->loop), 0);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    x->rd.fd = sv[1];
    if (x->rd.chunk == 0)
        x->rd.chunk = 65536;
    cr_assert_eq(sk_conn_adopt(x->loop, sv[0], opts, &cbs, x, &x->conn), 0);
    if (start_reader)
        cr_assert_eq(pthread_create(&x->rd.thread, NULL, reader_main, &x->rd), 0);
    unit_watchdog_start(&x->wd, x->loop, 10000);
    cr_assert_eq(sk_loop_run(x->loop), 0);
    cr_assert_eq(unit_watchdog_end(&x->wd), 0, "watchdog fired: the loop did not finish");
    if (start_reader)
        pthread_join(x->rd.thread, NULL);
    sk_loop_free(x->loop);
    close(x->rd.fd);
}

static sk_shared *filled(size_t len, uint8_t byte)
{
    sk_shared *s = NULL;
    cr_assert_eq(sk_shared_new(len, &s), 0);
    cr_assert_eq(sk_shared_len(s), len);
    memset(sk_shared_data(s), byte, len);
    return s;
}

/* ------------------------------------------------------------- accounting */

Test(shared, new_ref_unref_and_budget)
{
    size_t base = sk_mem_in_use();
    sk_shared *s = NULL;
    cr_assert_eq(sk_shared_new(0, &s), -EINVAL);
    cr_assert_eq(sk_shared_new(1000, &s), 0);
    cr_assert_geq(sk_mem_in_use(), base + 1000, "a shared buffer is charged to the budget");
    cr_assert_eq(sk_shared_ref(s), s);
    sk_shared_unref(s);
    cr_assert_geq(sk_mem_in_use(), base + 1000, "freed while a reference was left");
    sk_shared_unref(s);
    cr_assert_eq(sk_mem_in_use(), base, "the last reference did not give the memory back");
    sk_shared_unref(NULL);

    sk_mem_set_budget(base + 100);
    sk_shared *big = NULL;
    cr_assert_eq(sk_shared_new(1000, &big), -ENOBUFS);
    cr_assert_null(big);
    cr_assert_eq(sk_mem_in_use(), base);
    sk_mem_set_budget(0);
}

/* ---------------------------------------------------------------- ordering */

static sk_shared *g_a, *g_b;

static void order_open(fx *x, sk_conn *c)
{
    cr_assert_eq(sk_conn_send(c, "p0|", 3), 0);
    cr_assert_eq(sk_conn_send_shared(c, g_a, 0, 5), 0);
    cr_assert_eq(sk_conn_send_shared(c, g_a, 5, 5), 0); /* back to back: merged */
    cr_assert_eq(sk_conn_send(c, "|p1|", 4), 0);
    cr_assert_eq(sk_conn_send_shared(c, g_a, 10, 3), 0);
    cr_assert_eq(sk_conn_send_shared(c, g_b, 2, 4), 0);
    cr_assert_eq(sk_conn_send_shared(c, g_a, 13, 0), 0); /* empty: nothing queued */
    cr_assert_eq(sk_conn_send_msg(c, "|end", 4), 0);
    x->queued_at_open = sk_conn_queued(c);
    sk_conn_close(c);
}

Test(shared, slices_interleave_with_copied_bytes_in_order)
{
    int fds = unit_count_fds();
    size_t base = sk_mem_in_use();
    g_a = filled(16, 'a');
    memcpy(sk_shared_data(g_a), "ABCDEFGHIJKLMNOP", 16);
    g_b = filled(8, 'b');
    memcpy(sk_shared_data(g_b), "01234567", 8);
    fx x = {.on_open = order_open};
    fx_run(&x, NULL, 1);
    const char *want = "p0|ABCDEFGHIJ|p1|KLM2345|end";
    cr_assert_eq(x.queued_at_open, strlen(want));
    cr_assert_eq(x.rd.len, strlen(want), "peer got %zu bytes", x.rd.len);
    cr_assert(memcmp(x.rd.buf, want, strlen(want)) == 0, "got %.*s", (int)x.rd.len, x.rd.buf);
    cr_assert_eq(x.closed, 1);
    cr_assert_eq(x.close_err, 0, "close: %s", x.reason);
    /* The queues dropped their references: ours are the last. */
    sk_shared_unref(g_a);
    sk_shared_unref(g_b);
    cr_assert_eq(sk_mem_in_use(), base);
    free(x.rd.buf);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

/* ----------------------------------------------- many slices, short writes */

#define MANY 6000
static sk_shared *g_pool[3];

/* Queues MANY pieces, plain and shared in a varying pattern, writing the
 * same bytes into the expected stream. */
static uint8_t *g_expect;
static size_t g_expect_len;

static void many_open(fx *x, sk_conn *c)
{
    (void)x;
    uint8_t plain[300];
    for (unsigned i = 0; i < MANY; i++) {
        unsigned kind = (i * 7u + i / 13u) % 5u;
        if (kind < 2) {
            size_t n = 1 + (i * 31u) % sizeof plain;
            unit_pattern(plain, n, g_expect_len);
            cr_assert_eq(sk_conn_send(c, plain, n), 0);
            memcpy(g_expect + g_expect_len, plain, n);
            g_expect_len += n;
        } else {
            sk_shared *s = g_pool[i % 3];
            size_t len = sk_shared_len(s);
            size_t off = (i * 97u) % len;
            size_t n = 1 + (i * 53u) % (len - off);
            cr_assert_eq(sk_conn_send_shared(c, s, off, n), 0);
            memcpy(g_expect + g_expect_len, sk_shared_data(s) + off, n);
            g_expect_len += n;
        }
    }
    cr_assert_eq(sk_conn_queued(c), g_expect_len);
    sk_conn_close(c);
}

Test(shared, many_slices_survive_partial_writes)
{
    size_t base = sk_mem_in_use();
    size_t sizes[3] = {1, 700, 20000};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(sk_shared_new(sizes[i], &g_pool[i]), 0);
        unit_pattern(sk_shared_data(g_pool[i]), sizes[i], (size_t)i * 1000003u);
    }
    g_expect = malloc(MANY * 20000u);
    cr_assert_not_null(g_expect);
    g_expect_len = 0;
    /* A slow reader taking odd-sized bites: sendmsg stops inside plain runs
     * and inside slices, and the 64-iovec batches end mid-queue. */
    fx x = {.on_open = many_open, .rd = {.delay_ms = 50, .chunk = 4093}};
    fx_run(&x, NULL, 1);
    cr_assert_eq(x.close_err, 0, "close: %s", x.reason);
    cr_assert_eq(x.rd.len, g_expect_len, "peer got %zu of %zu bytes", x.rd.len, g_expect_len);
    cr_assert(memcmp(x.rd.buf, g_expect, g_expect_len) == 0, "stream differs from what was queued");
    for (int i = 0; i < 3; i++)
        sk_shared_unref(g_pool[i]);
    cr_assert_eq(sk_mem_in_use(), base, "memory left charged: %zu", sk_mem_in_use() - base);
    free(g_expect);
    free(x.rd.buf);
}

/* ------------------------------------------------------------ water marks */

#define HW_BULK (4u * 1024u * 1024u)
static sk_shared *g_bulk;

static void hw_open(fx *x, sk_conn *c)
{
    for (size_t off = 0; off < HW_BULK; off += 65536)
        cr_assert_eq(sk_conn_send_shared(c, g_bulk, off, 65536), 0);
    x->queued_at_open = sk_conn_queued(c);
    sk_conn_close(c);
}

Test(shared, slices_count_for_queued_and_drain)
{
    cr_assert_eq(sk_shared_new(HW_BULK, &g_bulk), 0);
    unit_pattern(sk_shared_data(g_bulk), HW_BULK, 0);
    sk_conn_opts o;
    sk_conn_opts_init(&o);
    o.out_high_water = 256 * 1024;
    o.out_low_water = 64 * 1024;
    fx x = {.on_open = hw_open, .rd = {.delay_ms = 100}};
    fx_run(&x, &o, 1);
    cr_assert_eq(x.queued_at_open, (size_t)HW_BULK);
    cr_assert_geq(x.drains, 1, "on_drain never ran: slices did not count for the high-water mark");
    cr_assert_leq(x.queued_at_drain, o.out_low_water);
    cr_assert_eq(x.rd.len, (size_t)HW_BULK);
    cr_assert(unit_pattern_ok(x.rd.buf, HW_BULK, 0));
    sk_shared_unref(g_bulk);
    free(x.rd.buf);
}

/* ------------------------------------------------- references on abort etc. */

static void abort_open(fx *x, sk_conn *c)
{
    (void)x;
    for (size_t off = 0; off < HW_BULK; off += 4096)
        cr_assert_eq(sk_conn_send_shared(c, g_bulk, off, 4096), 0);
    cr_assert_eq(sk_conn_send(c, "tail", 4), 0);
    /* Nobody reads: most of it is still queued when the connection goes. */
    sk_conn_abort(c, -ECONNABORTED);
}

Test(shared, abort_drops_queued_references)
{
    size_t base = sk_mem_in_use();
    cr_assert_eq(sk_shared_new(HW_BULK, &g_bulk), 0);
    memset(sk_shared_data(g_bulk), 'z', HW_BULK);
    fx x = {.on_open = abort_open};
    fx_run(&x, NULL, 0);
    cr_assert_eq(x.closed, 1);
    cr_assert_eq(x.close_err, -ECONNABORTED);
    sk_shared_unref(g_bulk);
    cr_assert_eq(sk_mem_in_use(), base, "a queue kept a reference after abort");
}

static int g_einval, g_epipe, g_enobufs;

static void errors_open(fx *x, sk_conn *c)
{
    (void)x;
    g_einval = sk_conn_send_shared(c, g_bulk, 10, 7) == -EINVAL &&
               sk_conn_send_shared(c, g_bulk, 17, 0) == -EINVAL &&
               sk_conn_send_shared(c, g_bulk, 16, 1) == -EINVAL;
    /* A budget with no room left: queueing a slice fails and aborts. */
    sk_mem_set_budget(sk_mem_in_use() + 8);
    g_enobufs = sk_conn_send_shared(c, g_bulk, 0, 16) == -ENOBUFS;
    sk_mem_set_budget(0);
    g_epipe = sk_conn_send_shared(c, g_bulk, 0, 16) == -EPIPE;
}

Test(shared, range_budget_and_closed_errors)
{
    size_t base = sk_mem_in_use();
    cr_assert_eq(sk_shared_new(16, &g_bulk), 0);
    fx x = {.on_open = errors_open};
    fx_run(&x, NULL, 0);
    cr_assert(g_einval, "a range outside the buffer was not -EINVAL");
    cr_assert(g_enobufs, "an exhausted budget was not -ENOBUFS");
    cr_assert(g_epipe, "a slice on an aborted connection was not -EPIPE");
    cr_assert_eq(x.close_err, -ENOBUFS, "close: %d %s", x.close_err, x.reason);
    sk_shared_unref(g_bulk);
    cr_assert_eq(sk_mem_in_use(), base);
}

static void closing_open(fx *x, sk_conn *c)
{
    (void)x;
    cr_assert_eq(sk_conn_send_shared(c, g_bulk, 0, 16), 0);
    sk_conn_close(c);
    g_epipe = sk_conn_send_shared(c, g_bulk, 0, 16) == -EPIPE;
}

Test(shared, closing_connection_refuses_and_flushes)
{
    cr_assert_eq(sk_shared_new(16, &g_bulk), 0);
    memcpy(sk_shared_data(g_bulk), "sixteen bytes!!\n", 16);
    fx x = {.on_open = closing_open};
    fx_run(&x, NULL, 1);
    cr_assert(g_epipe, "a slice after sk_conn_close was accepted");
    cr_assert_eq(x.rd.len, 16u);
    cr_assert(memcmp(x.rd.buf, "sixteen bytes!!\n", 16) == 0);
    sk_shared_unref(g_bulk);
    free(x.rd.buf);
}

/* ------------------------------------------------ a queue that backs up */

#define BACKLOG_MSGS 20000
static size_t g_base, g_growth, g_queued;

static void backlog_open(fx *x, sk_conn *c)
{
    (void)x;
    /* Nobody reads: past a long backlog small slices are copied, so the
     * queue holds about its bytes, not an entry per message. Alternate
     * offsets so that no two slices merge. */
    for (unsigned i = 0; i < BACKLOG_MSGS; i++)
        cr_assert_eq(sk_conn_send_shared(c, g_bulk, (i % 2) * 16, 8), 0);
    g_queued = sk_conn_queued(c);
    g_growth = sk_mem_in_use() - g_base;
    sk_conn_abort(c, -ECONNABORTED);
}

Test(shared, backed_up_queue_costs_about_its_bytes)
{
    cr_assert_eq(sk_shared_new(32, &g_bulk), 0);
    memset(sk_shared_data(g_bulk), 'b', 32);
    g_base = sk_mem_in_use();
    fx x = {.on_open = backlog_open};
    fx_run(&x, NULL, 0);
    cr_assert_eq(g_queued, (size_t)BACKLOG_MSGS * 8);
    /* The first 1,024 messages take entries (40 KiB); the rest are copied,
     * the buffer growing by doubling from 64 KiB (at most twice what is
     * queued). An entry per message would be 5x the bytes here. */
    cr_assert_leq(g_growth, 2 * g_queued + 64 * 1024 + 48 * 1024, "queue of %zu bytes holds %zu",
                  g_queued, g_growth);
    cr_assert_eq(sk_mem_in_use(), g_base, "memory left charged after abort");
    sk_shared_unref(g_bulk);
}
