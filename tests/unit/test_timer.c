/* test_timer.c — the event loop and its timers (order, ties, repeat, stop/restart, self-free),
 * sk_async across threads, sk_loop_stop. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "sockit.h"
#include "unit.h"

TestSuite(loop, .init = unit_alarm);
TestSuite(timer, .init = unit_alarm);
TestSuite(async, .init = unit_alarm);

/* A record of which timers fired, in order. */
typedef struct trace {
    int ids[64];
    int n;
} trace;

typedef struct tctx {
    trace *tr;
    int id;
    sk_timer *self;
    sk_loop *loop;
    int count;      /* times fired */
    int stop_after; /* stop/free/loop-stop after this many (per test) */
    sk_timer *other;
    uint64_t last; /* sk_loop_now() at the last firing */
} tctx;

static void record(tctx *c)
{
    cr_assert(c->tr->n < 64);
    c->tr->ids[c->tr->n++] = c->id;
    c->count++;
}

static void on_record(sk_timer *t, void *ud)
{
    tctx *c = ud;
    cr_assert_eq(t, c->self, "callback got the wrong timer");
    record(c);
}

static sk_loop *new_loop(void)
{
    sk_loop *loop = NULL;
    cr_assert_eq(sk_loop_new(&loop), 0);
    cr_assert_not_null(loop);
    return loop;
}

static sk_timer *new_timer(sk_loop *loop, sk_timer_cb cb, tctx *c)
{
    sk_timer *t = NULL;
    cr_assert_eq(sk_timer_new(loop, cb, c, &t), 0);
    cr_assert_not_null(t);
    c->self = t;
    c->loop = loop;
    return t;
}

/* Runs the loop under a watchdog; fails the test if the watchdog fired. */
static void run_bounded(sk_loop *loop, unsigned ms)
{
    unit_watchdog w;
    unit_watchdog_start(&w, loop, ms);
    int r = sk_loop_run(loop);
    int hung = unit_watchdog_end(&w);
    cr_assert_eq(r, 0, "sk_loop_run returned %d", r);
    cr_assert(!hung, "sk_loop_run did not return on its own within %u ms", ms);
}

Test(loop, empty_loop_returns)
{
    int fds = unit_count_fds();
    sk_loop *loop = new_loop();
    run_bounded(loop, 2000);
    run_bounded(loop, 2000); /* and again */
    sk_loop_free(loop);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

/* A created but never started (or stopped) timer cannot produce an event. */
Test(loop, stopped_timer_does_not_keep_loop_alive)
{
    sk_loop *loop = new_loop();
    trace tr = {0};
    tctx a = {.tr = &tr, .id = 1}, b = {.tr = &tr, .id = 2};
    sk_timer *ta = new_timer(loop, on_record, &a);
    sk_timer *tb = new_timer(loop, on_record, &b);
    sk_timer_start(tb, 5, 0);
    sk_timer_stop(tb);
    cr_assert(!sk_timer_active(ta));
    cr_assert(!sk_timer_active(tb));
    run_bounded(loop, 2000);
    cr_assert_eq(tr.n, 0, "a stopped timer fired");
    sk_timer_free(ta);
    sk_timer_free(tb);
    sk_loop_free(loop);
}

Test(timer, fire_in_deadline_order)
{
    int fds = unit_count_fds();
    sk_loop *loop = new_loop();
    trace tr = {0};
    static const unsigned delays[] = {30, 3, 20, 12, 1, 25};
    static const int want[] = {4, 1, 3, 2, 5, 0};
    tctx c[6];
    sk_timer *t[6];
    for (int i = 0; i < 6; i++) {
        c[i] = (tctx){.tr = &tr, .id = i};
        t[i] = new_timer(loop, on_record, &c[i]);
        sk_timer_start(t[i], delays[i], 0);
        cr_assert(sk_timer_active(t[i]));
    }
    run_bounded(loop, 3000);
    cr_assert_eq(tr.n, 6, "%d timers fired", tr.n);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(tr.ids[i], want[i], "position %d: timer %d, want %d", i, tr.ids[i], want[i]);
    for (int i = 0; i < 6; i++) {
        cr_assert(!sk_timer_active(t[i]), "one-shot timer %d still active", i);
        sk_timer_free(t[i]);
    }
    sk_loop_free(loop);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

/* Timers due at the same time run in the order they were started — also when
 * more are started than a heap's first level, and when interleaved with
 * others. */
Test(timer, equal_deadlines_run_in_start_order)
{
    sk_loop *loop = new_loop();
    trace tr = {0};
    enum { N = 40 };
    tctx c[N];
    sk_timer *t[N];
    /* Create in one order, start in another, so creation order is not what
     * breaks the tie. */
    for (int i = 0; i < N; i++) {
        c[i] = (tctx){.tr = &tr};
        t[i] = new_timer(loop, on_record, &c[i]);
    }
    int order = 0;
    for (int i = N - 1; i >= 0; i -= 2) {
        c[i].id = order++;
        sk_timer_start(t[i], 5, 0);
    }
    for (int i = 0; i < N; i += 2) {
        c[i].id = order++;
        sk_timer_start(t[i], 5, 0);
    }
    run_bounded(loop, 3000);
    cr_assert_eq(tr.n, N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(tr.ids[i], i, "position %d ran timer started %d-th", i, tr.ids[i]);
    for (int i = 0; i < N; i++)
        sk_timer_free(t[i]);
    sk_loop_free(loop);
}

/* Restarting a timer counts as a new start for the tiebreak. */
Test(timer, restart_moves_to_end_of_ties)
{
    sk_loop *loop = new_loop();
    trace tr = {0};
    tctx a = {.tr = &tr, .id = 1}, b = {.tr = &tr, .id = 2}, c = {.tr = &tr, .id = 3};
    sk_timer *ta = new_timer(loop, on_record, &a);
    sk_timer *tb = new_timer(loop, on_record, &b);
    sk_timer *tc = new_timer(loop, on_record, &c);
    sk_timer_start(ta, 5, 0);
    sk_timer_start(tb, 5, 0);
    sk_timer_start(tc, 5, 0);
    sk_timer_start(ta, 5, 0); /* now the last of the three */
    run_bounded(loop, 3000);
    cr_assert_eq(tr.n, 3, "restart must not make a timer fire twice (%d)", tr.n);
    cr_assert_eq(tr.ids[0], 2);
    cr_assert_eq(tr.ids[1], 3);
    cr_assert_eq(tr.ids[2], 1);
    sk_timer_free(ta);
    sk_timer_free(tb);
    sk_timer_free(tc);
    sk_loop_free(loop);
}

static void on_repeat(sk_timer *t, void *ud)
{
    tctx *c = ud;
    record(c);
    cr_assert(sk_loop_now(c->loop) >= c->last, "loop time went backwards");
    c->last = sk_loop_now(c->loop);
    if (c->count == c->stop_after)
        sk_timer_stop(t);
}

Test(timer, repeat_until_stopped)
{
    sk_loop *loop = new_loop();
    trace tr = {0};
    tctx r = {.tr = &tr, .id = 7, .stop_after = 5};
    tctx late = {.tr = &tr, .id = 9};
    sk_timer *tr_ = new_timer(loop, on_repeat, &r);
    sk_timer *tl = new_timer(loop, on_record, &late);
    uint64_t start = sk_loop_now(loop);
    r.last = start;
    sk_timer_start(tr_, 2, 2);
    sk_timer_start(tl, 1, 0);
    run_bounded(loop, 3000);
    cr_assert_eq(r.count, 5, "repeat timer fired %d times", r.count);
    cr_assert_eq(late.count, 1);
    cr_assert(!sk_timer_active(tr_));
    /* A 2 ms repeat fired 5 times: the last firing is at least 10 ms after
     * the start by the loop's clock (a lower bound, never an exact one). */
    cr_assert(r.last >= start + 10, "fired early: %llu ms", (unsigned long long)(r.last - start));
    sk_timer_free(tr_);
    sk_timer_free(tl);
    sk_loop_free(loop);
}

/* A timer never fires before its delay has passed by the loop's clock. */
typedef struct deadline_ctx {
    sk_loop *loop;
    uint64_t due;
    int fired;
} deadline_ctx;

static void on_check_deadline(sk_timer *t, void *ud)
{
    deadline_ctx *c = ud;
    (void)t;
    cr_assert(sk_loop_now(c->loop) >= c->due, "fired at %llu, due %llu",
              (unsigned long long)sk_loop_now(c->loop), (unsigned long long)c->due);
    c->fired++;
}

Test(timer, not_before_deadline)
{
    deadline_ctx c = {0};
    c.loop = new_loop();
    c.due = sk_loop_now(c.loop) + 15;
    sk_timer *t = NULL;
    cr_assert_eq(sk_timer_new(c.loop, on_check_deadline, &c, &t), 0);
    sk_timer_start(t, 15, 0);
    run_bounded(c.loop, 3000);
    cr_assert_eq(c.fired, 1);
    sk_timer_free(t);
    sk_loop_free(c.loop);
}

Test(timer, stop_and_restart)
{
    sk_loop *loop = new_loop();
    trace tr = {0};
    tctx a = {.tr = &tr, .id = 1}, b = {.tr = &tr, .id = 2}, c = {.tr = &tr, .id = 3};
    sk_timer *ta = new_timer(loop, on_record, &a);
    sk_timer *tb = new_timer(loop, on_record, &b);
    sk_timer *tc = new_timer(loop, on_record, &c);
    sk_timer_start(ta, 5, 0);
    sk_timer_start(tb, 10, 0);
    sk_timer_start(tc, 2000, 0);
    sk_timer_stop(ta);        /* never fires */
    sk_timer_start(tc, 1, 0); /* moved from 2 s to 1 ms: fires first, once */
    sk_timer_stop(ta);        /* stopping a stopped timer is harmless */
    run_bounded(loop, 1500);
    cr_assert_eq(tr.n, 2, "%d fired", tr.n);
    cr_assert_eq(tr.ids[0], 3);
    cr_assert_eq(tr.ids[1], 2);
    cr_assert_eq(a.count, 0);

    /* A stopped timer can be started again and the loop reused. */
    sk_timer_start(ta, 1, 0);
    run_bounded(loop, 1500);
    cr_assert_eq(tr.n, 3);
    cr_assert_eq(tr.ids[2], 1);
    sk_timer_free(ta);
    sk_timer_free(tb);
    sk_timer_free(tc);
    sk_loop_free(loop);
}

/* A one-shot timer that restarts itself from its callback. */
static void on_restart_self(sk_timer *t, void *ud)
{
    tctx *c = ud;
    record(c);
    if (c->count < c->stop_after)
        sk_timer_start(t, 1, 0);
}

Test(timer, restart_from_own_callback)
{
    sk_loop *loop = new_loop();
    trace tr = {0};
    tctx a = {.tr = &tr, .id = 1, .stop_after = 4};
    sk_timer *ta = new_timer(loop, on_restart_self, &a);
    sk_timer_start(ta, 1, 0);
    run_bounded(loop, 3000);
    cr_assert_eq(a.count, 4);
    sk_timer_free(ta);
    sk_loop_free(loop);
}

/* A repeating timer that frees itself from its callback. */
static void on_free_self(sk_timer *t, void *ud)
{
    tctx *c = ud;
    record(c);
    if (c->count == c->stop_after) {
        sk_timer_free(t);
        c->self = NULL;
    }
}

Test(timer, free_self_in_callback)
{
    int fds = unit_count_fds();
    sk_loop *loop = new_loop();
    trace tr = {0};
    tctx a = {.tr = &tr, .id = 1, .stop_after = 3};
    tctx b = {.tr = &tr, .id = 2, .stop_after = 1};
    tctx z = {.tr = &tr, .id = 3};
    new_timer(loop, on_free_self, &a);
    new_timer(loop, on_free_self, &b);
    sk_timer *tz = new_timer(loop, on_record, &z);
    sk_timer_start(a.self, 1, 1);
    sk_timer_start(b.self, 1, 0);
    sk_timer_start(tz, 30, 0); /* the loop goes on after the frees */
    run_bounded(loop, 3000);
    cr_assert_eq(a.count, 3);
    cr_assert_eq(b.count, 1);
    cr_assert_eq(z.count, 1);
    cr_assert_null(a.self);
    cr_assert_null(b.self);
    cr_assert_eq(tr.ids[tr.n - 1], 3, "the 30 ms timer fires last");
    sk_timer_free(tz);
    sk_loop_free(loop);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

/* Two timers due together: the first stops or frees the second, which must
 * then not run (and must not be touched after being freed). */
static void on_stop_other(sk_timer *t, void *ud)
{
    tctx *c = ud;
    (void)t;
    record(c);
    sk_timer_stop(c->other);
}

static void on_free_other(sk_timer *t, void *ud)
{
    tctx *c = ud;
    (void)t;
    record(c);
    sk_timer_free(c->other);
    c->other = NULL;
}

Test(timer, callback_stops_or_frees_a_due_timer)
{
    sk_loop *loop = new_loop();
    trace tr = {0};
    tctx a = {.tr = &tr, .id = 1}, b = {.tr = &tr, .id = 2};
    tctx c = {.tr = &tr, .id = 3}, d = {.tr = &tr, .id = 4};
    tctx e = {.tr = &tr, .id = 5};
    sk_timer *ta = new_timer(loop, on_stop_other, &a);
    sk_timer *tb = new_timer(loop, on_record, &b);
    sk_timer *tc = new_timer(loop, on_free_other, &c);
    sk_timer *td = new_timer(loop, on_record, &d);
    sk_timer *te = new_timer(loop, on_record, &e);
    a.other = tb;
    c.other = td;
    sk_timer_start(ta, 3, 0);
    sk_timer_start(tc, 3, 0);
    sk_timer_start(tb, 3, 0);
    sk_timer_start(td, 3, 0);
    sk_timer_start(te, 3, 0);
    run_bounded(loop, 3000);
    cr_assert_eq(b.count, 0, "a stopped timer ran");
    cr_assert_eq(d.count, 0, "a freed timer ran");
    cr_assert_eq(tr.n, 3);
    cr_assert_eq(tr.ids[0], 1);
    cr_assert_eq(tr.ids[1], 3);
    cr_assert_eq(tr.ids[2], 5);
    sk_timer_free(ta);
    sk_timer_free(tb);
    sk_timer_free(tc);
    sk_timer_free(te);
    sk_loop_free(loop);
}

/* sk_loop_free closes timers still attached, without calling them. */
Test(loop, free_with_pending_timers)
{
    int fds = unit_count_fds();
    sk_loop *loop = new_loop();
    trace tr = {0};
    tctx a = {.tr = &tr, .id = 1};
    sk_timer *ta = new_timer(loop, on_record, &a);
    sk_timer_start(ta, 10000, 0);
    sk_loop_free(loop);
    cr_assert_eq(a.count, 0);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
    /* Timers stay the caller's (header): freeing one after its loop is safe. */
    cr_assert_not(sk_timer_active(ta));
    sk_timer_free(ta);
}

/* sk_loop_stop from a callback makes sk_loop_run return although a repeating
 * timer is still active; running again continues where it left off. */
static void on_stop_loop(sk_timer *t, void *ud)
{
    tctx *c = ud;
    record(c);
    if (c->count % c->stop_after == 0)
        sk_loop_stop(c->loop);
    if (c->count == 2 * c->stop_after)
        sk_timer_stop(t);
}

Test(loop, stop_from_callback)
{
    sk_loop *loop = new_loop();
    trace tr = {0};
    tctx a = {.tr = &tr, .id = 1, .stop_after = 3};
    sk_timer *ta = new_timer(loop, on_stop_loop, &a);
    sk_timer_start(ta, 1, 1);
    run_bounded(loop, 3000);
    cr_assert_eq(a.count, 3);
    cr_assert(sk_timer_active(ta), "the repeating timer is still armed");
    run_bounded(loop, 3000);
    cr_assert_eq(a.count, 6, "second run: %d", a.count);
    sk_timer_free(ta);
    sk_loop_free(loop);
}

/* --------------------------------------------------------------- async */

typedef struct async_ctx {
    sk_loop *loop;
    sk_async *async;
    pthread_t loop_thread;
    int calls;
    int wrong_thread;
    unsigned delay_ms;
    int sends;
} async_ctx;

static void on_async(sk_async *a, void *ud)
{
    async_ctx *c = ud;
    cr_assert_eq(a, c->async);
    c->calls++;
    if (!pthread_equal(pthread_self(), c->loop_thread))
        c->wrong_thread = 1;
    /* Not freed here: the sender thread may still be inside sk_async_send(). */
    sk_loop_stop(c->loop);
}

static void *sender_main(void *arg)
{
    async_ctx *c = arg;
    unit_sleep_ms(c->delay_ms); /* let the loop block in epoll first */
    for (int i = 0; i < c->sends; i++)
        sk_async_send(c->async);
    return NULL;
}

Test(async, wakes_loop_from_another_thread)
{
    int fds = unit_count_fds();
    async_ctx c = {.delay_ms = 20, .sends = 1};
    c.loop = new_loop();
    c.loop_thread = pthread_self();
    cr_assert_eq(sk_async_new(c.loop, on_async, &c, &c.async), 0);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, sender_main, &c), 0);
    run_bounded(c.loop, 3000);
    pthread_join(th, NULL);
    cr_assert_eq(c.calls, 1);
    cr_assert(!c.wrong_thread, "async callback ran off the loop's thread");
    sk_async_free(c.async);
    sk_loop_free(c.loop);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
}

/* An async keeps the loop alive until sent; sends before the callback runs
 * coalesce into one call. */
static void on_async_count(sk_async *a, void *ud)
{
    (void)a;
    async_ctx *c = ud;
    c->calls++;
}

static void on_async_finish(sk_timer *t, void *ud)
{
    async_ctx *c = ud;
    sk_timer_free(t);
    sk_async_free(c->async);
    c->async = NULL;
}

Test(async, sends_coalesce)
{
    async_ctx c = {0};
    c.loop = new_loop();
    cr_assert_eq(sk_async_new(c.loop, on_async_count, &c, &c.async), 0);
    for (int i = 0; i < 5; i++)
        sk_async_send(c.async);
    sk_timer *t = NULL;
    cr_assert_eq(sk_timer_new(c.loop, on_async_finish, &c, &t), 0);
    sk_timer_start(t, 30, 0);
    run_bounded(c.loop, 3000);
    cr_assert_eq(c.calls, 1, "5 sends before the loop ran gave %d calls", c.calls);
    sk_loop_free(c.loop);
}

/* Many sends from several threads: the callback runs only on the loop's
 * thread, and a send made after a thread's flag is set is always followed
 * by a call that sees the flag. */
typedef struct many_ctx {
    sk_loop *loop;
    sk_async *async;
    pthread_t loop_thread;
    atomic_int finished;
    int calls;
    int wrong_thread;
} many_ctx;

static void on_async_many(sk_async *a, void *ud)
{
    many_ctx *m = ud;
    m->calls++;
    if (!pthread_equal(pthread_self(), m->loop_thread))
        m->wrong_thread = 1;
    /* Freeing here could race with a sender still inside sk_async_send();
     * stop instead and free after the senders are joined. */
    (void)a;
    if (atomic_load(&m->finished) == 4)
        sk_loop_stop(m->loop);
}

static void *many_sender(void *arg)
{
    many_ctx *m = arg;
    for (int i = 0; i < 1000; i++)
        sk_async_send(m->async);
    atomic_fetch_add(&m->finished, 1);
    sk_async_send(m->async);
    return NULL;
}

Test(async, many_threads)
{
    many_ctx m = {0};
    atomic_init(&m.finished, 0);
    m.loop = new_loop();
    m.loop_thread = pthread_self();
    cr_assert_eq(sk_async_new(m.loop, on_async_many, &m, &m.async), 0);
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, many_sender, &m), 0);
    run_bounded(m.loop, 3000);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    cr_assert(m.calls >= 1);
    cr_assert(!m.wrong_thread, "async callback ran off the loop's thread");
    sk_async_free(m.async);
    sk_loop_free(m.loop);
}

/* sk_loop_stop from another thread wakes a loop blocked on a long timer. */
Test(loop, stop_from_other_thread)
{
    sk_loop *loop = new_loop();
    trace tr = {0};
    tctx a = {.tr = &tr, .id = 1};
    sk_timer *ta = new_timer(loop, on_record, &a);
    sk_timer_start(ta, 60000, 0);
    unit_watchdog w;
    unit_watchdog_start(&w, loop, 30); /* fires: it is the "other thread" */
    uint64_t t0 = unit_now_ms();
    cr_assert_eq(sk_loop_run(loop), 0);
    uint64_t took = unit_now_ms() - t0;
    cr_assert(unit_watchdog_end(&w), "loop returned before being stopped");
    cr_assert(took < 3000, "sk_loop_stop from another thread did not wake the loop");
    cr_assert_eq(a.count, 0);
    sk_timer_free(ta);
    sk_loop_free(loop);
}
