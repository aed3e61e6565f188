/* test_preauth.c — the pre-authentication slot table exec and files share
 * (services/proto/preauth.c): the per-source cap refuses, a full table evicts the
 * oldest connection of the most represented source (ties: the older
 * connection), slots come back on leave, and an evicted ticket knows it. */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "unit.h"

#include "../../services/proto/proto.h"

TestSuite(preauth, .init = unit_alarm);

/* Owners are small records that note their eviction. */
typedef struct owner {
    int evicted;
    proto_preauth_ticket t;
} owner;

static void note_evict(void *o) { ((owner *)o)->evicted++; }

static int enter(proto_preauth *t, const char *peer_text, owner *o, char *victim)
{
    return proto_preauth_enter(t, peer_text, o, note_evict, &o->t, victim);
}

Test(preauth, per_source_cap_refuses_and_leave_frees)
{
    proto_preauth t;
    cr_assert_eq(proto_preauth_init(&t, 10, 2), 0);
    owner o[4] = {{0}};
    cr_assert_eq(enter(&t, "127.0.0.2:1000", &o[0], NULL), 0);
    cr_assert_eq(enter(&t, "127.0.0.2:1001", &o[1], NULL), 0);
    cr_assert_eq(enter(&t, "127.0.0.2:1002", &o[2], NULL), -EBUSY);
    cr_assert_eq(o[2].t.seq, 0);
    /* Another source, and Unix peers (all one source) are separate. */
    cr_assert_eq(enter(&t, "[::1]:5", &o[3], NULL), 0);
    cr_assert(proto_preauth_leave(&t, &o[0].t));
    cr_assert_not(proto_preauth_leave(&t, &o[0].t)); /* twice: no-op */
    cr_assert_eq(enter(&t, "127.0.0.2:1003", &o[2], NULL), 0);
    cr_assert_eq(t.used, 3);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(o[i].evicted, 0);
    proto_preauth_destroy(&t);
}

Test(preauth, full_table_evicts_oldest_of_most_represented)
{
    proto_preauth t;
    cr_assert_eq(proto_preauth_init(&t, 4, 3), 0);
    owner a[3] = {{0}}, b = {0}, c = {0}, d = {0};
    char victim[PROTO_HOST_MAX];
    cr_assert_eq(enter(&t, "unix:/run/x", &b, NULL), 0); /* oldest overall */
    for (int i = 0; i < 3; i++)
        cr_assert_eq(enter(&t, "10.0.0.2:4000", &a[i], NULL), 0);
    cr_assert_eq(enter(&t, "10.0.0.1:5000", &c, victim), 0);
    cr_assert_str_eq(victim, "10.0.0.2");
    cr_assert_eq(a[0].evicted, 1);
    cr_assert_eq(a[1].evicted + a[2].evicted + b.evicted, 0);
    cr_assert_not(proto_preauth_held(&t, &a[0].t));
    cr_assert(proto_preauth_held(&t, &a[1].t));
    cr_assert_not(proto_preauth_leave(&t, &a[0].t)); /* its slot is c's now */
    cr_assert(proto_preauth_held(&t, &c.t));
    /* Now 10.0.0.2 holds 2, unix 1, 10.0.0.1 1: 10.0.0.2 again. */
    cr_assert_eq(enter(&t, "unix:@other", &d, victim), 0);
    cr_assert_str_eq(victim, "10.0.0.2");
    cr_assert_eq(a[1].evicted, 1);
    /* Unix peers are one source: b and d make it the most represented. */
    owner e = {0};
    cr_assert_eq(enter(&t, "10.0.0.9:1", &e, victim), 0);
    cr_assert_str_eq(victim, "unix");
    cr_assert_eq(b.evicted, 1);
    cr_assert_eq(d.evicted, 0);
    cr_assert_eq(t.used, 4);
    proto_preauth_destroy(&t);
}

Test(preauth, ties_evict_the_older_connection)
{
    proto_preauth t;
    cr_assert_eq(proto_preauth_init(&t, 2, 8), 0);
    owner a = {0}, b = {0}, c = {0};
    cr_assert_eq(enter(&t, "192.0.2.1:1", &a, NULL), 0);
    cr_assert_eq(enter(&t, "192.0.2.2:1", &b, NULL), 0);
    cr_assert_eq(enter(&t, "192.0.2.3:1", &c, NULL), 0);
    cr_assert_eq(a.evicted, 1);
    cr_assert_eq(b.evicted, 0);
    proto_preauth_destroy(&t);
}

Test(preauth, one_thousand_from_one_source_leave_room_for_others)
{
    proto_preauth t;
    cr_assert_eq(proto_preauth_init(&t, 64, 8), 0);
    static owner idle[1000];
    int admitted = 0;
    for (int i = 0; i < 1000; i++)
        admitted += enter(&t, "127.0.0.2:9", &idle[i], NULL) == 0;
    cr_assert_eq(admitted, 8);
    owner legit = {0};
    cr_assert_eq(enter(&t, "127.0.0.1:9", &legit, NULL), 0);
    proto_preauth_destroy(&t);
}
