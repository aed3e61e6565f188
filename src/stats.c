/* stats.c — the process-wide counters behind sk_stats_get(): connections,
 * bytes, messages and failures by kind, plus the queued output and the
 * buffer memory held. Every loop of the process (worker threads included)
 * adds to the same counters with relaxed atomic operations (the per-message
 * ones once per loop iteration, from the loop's own tallies): each counter is
 * exact on its own, a snapshot is not one instant across counters (nothing
 * is locked), which is what a monitoring line needs. Not here: the memory
 * count itself (buf.c owns it; the snapshot copies it). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static atomic_uint_least64_t counters[SK__STAT_COUNT];
/* Output bytes queued on every connection now: conn_write.c adds and removes the
 * change of each connection's queue, so it may dip below zero transiently
 * across threads — hence signed. */
static atomic_int_least64_t queued_now;

void sk__stat_add(enum sk__stat which, uint64_t n)
{
    atomic_fetch_add_explicit(&counters[which], n, memory_order_relaxed);
}

void sk__stat_queued(int64_t delta)
{
    atomic_fetch_add_explicit(&queued_now, delta, memory_order_relaxed);
}

void sk__stats_flush(sk_loop *loop)
{
    if (!loop->stat_dirty)
        return;
    for (int i = 0; i < SK__STAT_LOCAL_COUNT; i++) {
        if (loop->stat_local[i]) {
            atomic_fetch_add_explicit(&counters[i], loop->stat_local[i], memory_order_relaxed);
            loop->stat_local[i] = 0;
        }
    }
    if (loop->stat_local_queued) {
        atomic_fetch_add_explicit(&queued_now, loop->stat_local_queued, memory_order_relaxed);
        loop->stat_local_queued = 0;
    }
    loop->stat_dirty = false;
}

static uint64_t get(enum sk__stat which)
{
    return atomic_load_explicit(&counters[which], memory_order_relaxed);
}

void sk_stats_get(sk_stats *out)
{
    memset(out, 0, sizeof *out);
    /* Closes are read before accepts: a connection is counted accepted
     * before it can be counted closed, so current comes out >= 0 (clamped
     * all the same, the orders being relaxed). */
    uint64_t closed = get(SK__STAT_CLOSED);
    out->accepted = get(SK__STAT_ACCEPTED);
    out->conns = out->accepted >= closed ? out->accepted - closed : 0;
    out->refused = get(SK__STAT_REFUSED);
    out->shed = get(SK__STAT_SHED);
    out->bytes_in = get(SK__STAT_BYTES_IN);
    out->bytes_out = get(SK__STAT_BYTES_OUT);
    out->msgs_in = get(SK__STAT_MSGS_IN);
    out->msgs_out = get(SK__STAT_MSGS_OUT);
    out->err_protocol = get(SK__STAT_ERR_PROTOCOL);
    out->err_idle = get(SK__STAT_ERR_IDLE);
    out->err_frame = get(SK__STAT_ERR_FRAME);
    out->err_deadline = get(SK__STAT_ERR_DEADLINE);
    out->err_reset = get(SK__STAT_ERR_RESET);
    out->err_nobufs = get(SK__STAT_ERR_NOBUFS);
    out->dgram_dropped = get(SK__STAT_DGRAM_DROPPED);
    int64_t q = atomic_load_explicit(&queued_now, memory_order_relaxed);
    out->queued = q > 0 ? (uint64_t)q : 0;
    out->mem = sk_mem_in_use();
    out->refused_acl = get(SK__STAT_REFUSED_ACL);
}

int sk_stats_format(const sk_stats *s, char *buf, size_t len)
{
    int n = snprintf(
        buf, len,
        "conns=%" PRIu64 " accepted=%" PRIu64 " refused=%" PRIu64 " shed=%" PRIu64
        " bytes_in=%" PRIu64 " bytes_out=%" PRIu64 " msgs_in=%" PRIu64 " msgs_out=%" PRIu64
        " err_protocol=%" PRIu64 " err_idle=%" PRIu64 " err_frame=%" PRIu64 " err_deadline=%" PRIu64
        " err_reset=%" PRIu64 " err_nobufs=%" PRIu64 " queued=%" PRIu64 " mem=%" PRIu64
        " dgram_dropped=%" PRIu64 " refused_acl=%" PRIu64,
        s->conns, s->accepted, s->refused, s->shed, s->bytes_in, s->bytes_out, s->msgs_in,
        s->msgs_out, s->err_protocol, s->err_idle, s->err_frame, s->err_deadline, s->err_reset,
        s->err_nobufs, s->queued, s->mem, s->dgram_dropped, s->refused_acl);
    return n < 0 ? -EINVAL : n;
}
