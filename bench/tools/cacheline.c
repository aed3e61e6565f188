/* cacheline.c — where the host has put our two cores right now
 * (BENCHMARKING.md trap 1): two threads pinned to cores A and B bounce one
 * cache line; the one-way transfer time is ~75 ns when the cores are close
 * and ~340 ns when they are far. Prints one JSON line:
 *     {"cores":[0,1],"one_way_ns":{"median":..,"min":..,"max":..},"batches":N}
 *
 *     cacheline [CORE_A CORE_B]      (default 0 1)
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ROUND_TRIPS 20000
#define BATCHES     15

static _Alignas(64) _Atomic uint64_t line;
static int core_b;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int pin(int core)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(core, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* Answers every odd value with the next even one. */
static void *responder(void *arg)
{
    (void)arg;
    if (pin(core_b) != 0)
        return (void *)1;
    for (uint64_t i = 0; i < (uint64_t)ROUND_TRIPS * BATCHES; i++) {
        uint64_t want = 2 * i + 1;
        while (atomic_load_explicit(&line, memory_order_acquire) != want) {
        }
        atomic_store_explicit(&line, want + 1, memory_order_release);
    }
    return NULL;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    int core_a = argc > 2 ? atoi(argv[1]) : 0;
    core_b = argc > 2 ? atoi(argv[2]) : 1;
    if (pin(core_a) != 0) {
        fprintf(stderr, "cacheline: cannot pin to core %d\n", core_a);
        return 1;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, responder, NULL) != 0)
        return 1;
    double ns[BATCHES];
    uint64_t v = 0;
    for (int b = 0; b < BATCHES; b++) {
        uint64_t t0 = now_ns();
        for (int i = 0; i < ROUND_TRIPS; i++) {
            atomic_store_explicit(&line, v + 1, memory_order_release);
            while (atomic_load_explicit(&line, memory_order_acquire) != v + 2) {
            }
            v += 2;
        }
        ns[b] = (double)(now_ns() - t0) / (2.0 * ROUND_TRIPS);
    }
    void *rc;
    pthread_join(t, &rc);
    if (rc != NULL) {
        fprintf(stderr, "cacheline: cannot pin to core %d\n", core_b);
        return 1;
    }
    qsort(ns, BATCHES, sizeof ns[0], cmp);
    printf("{\"cores\":[%d,%d],\"one_way_ns\":{\"median\":%.1f,\"min\":%.1f,\"max\":%.1f},"
           "\"batches\":%d}\n",
           core_a, core_b, ns[BATCHES / 2], ns[0], ns[BATCHES - 1], BATCHES);
    return 0;
}
