/* unit.h — small helpers shared by the unit tests: descriptor counting, a
 * watchdog thread that stops a loop which would otherwise hang, and loopback
 * socket helpers. Header-only (static inline) so that each test file stays
 * self-contained; the Makefile compiles only the .c files here. */
#ifndef SOCKIT_UNIT_H
#define SOCKIT_UNIT_H

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sockit.h"

/* Every test is bounded by alarm() in its own process: a hang ends as a
 * crash (SIGALRM) instead of stalling the run. Not Criterion's .timeout:
 * in Criterion 2.4.1 that goes through BoxFort's bxfi_push_timeout, whose
 * 48-byte request is sometimes leaked by the runner under --jobs=2, and
 * LeakSanitizer then fails `make test` at random. Use as
 * TestSuite(name, .init = unit_alarm). */
#define UNIT_TEST_LIMIT_S 20u

static inline void unit_alarm(void) { alarm(UNIT_TEST_LIMIT_S); }

/* Number of open descriptors of this process (the directory handle used to
 * count them is not included). */
static inline int unit_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.')
            n++;
    }
    closedir(d);
    return n - 1;
}

/* Monotonic milliseconds, for bounding waits (never for timing asserts). */
static inline uint64_t unit_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void unit_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* A watchdog thread: if not cancelled within ms, it calls sk_loop_stop() (safe
 * from any thread) and records that it fired, so a test that would hang fails
 * instead. It does not keep the loop alive, unlike a watchdog timer. */
typedef struct unit_watchdog {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    sk_loop *loop;
    unsigned ms;
    int cancelled;
    int fired;
} unit_watchdog;

static inline void *unit_watchdog_main(void *arg)
{
    unit_watchdog *w = arg;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += w->ms / 1000u;
    deadline.tv_nsec += (long)(w->ms % 1000u) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&w->mu);
    while (!w->cancelled) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &deadline) == ETIMEDOUT) {
            if (!w->cancelled) {
                w->fired = 1;
                sk_loop_stop(w->loop);
            }
            break;
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

static inline void unit_watchdog_start(unit_watchdog *w, sk_loop *loop, unsigned ms)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cv, NULL);
    w->loop = loop;
    w->ms = ms;
    cr_assert_eq(pthread_create(&w->thread, NULL, unit_watchdog_main, w), 0);
}

/* Stops the watchdog; returns 1 if it had fired (the test hung). */
static inline int unit_watchdog_end(unit_watchdog *w)
{
    pthread_mutex_lock(&w->mu);
    w->cancelled = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    return w->fired;
}

/* Sets or clears O_NONBLOCK. */
static inline void unit_set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    cr_assert(fl >= 0);
    fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
    cr_assert(fcntl(fd, F_SETFL, fl) == 0);
}

/* Writes all of buf to a blocking descriptor. */
static inline void unit_write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        cr_assert(n > 0, "send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

/* Reads exactly len bytes from a blocking descriptor; returns 0, or -1 if
 * the stream ended or failed first. */
static inline int unit_read_exact(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Fills buf with a position-dependent pattern starting at stream offset off. */
static inline void unit_pattern(uint8_t *buf, size_t len, size_t off)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)(((off + i) * 131u + ((off + i) >> 8)) & 0xffu);
}

static inline int unit_pattern_ok(const uint8_t *buf, size_t len, size_t off)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != (uint8_t)(((off + i) * 131u + ((off + i) >> 8)) & 0xffu))
            return 0;
    }
    return 1;
}

#endif /* SOCKIT_UNIT_H */
