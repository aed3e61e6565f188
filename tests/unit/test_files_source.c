/* test_files_source.c — the files service's per-source accounting
 * (services/files_source.c): source keys from peer names, the cap on
 * transfers per source, a full table, and the resume-hash token bucket. */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unit.h"

#include "../../services/files/files_int.h"

TestSuite(files_source, .init = unit_alarm);

static files_sources *table(void)
{
    files_sources *t = malloc(sizeof *t);
    cr_assert_not_null(t);
    files_sources_init(t);
    return t;
}

static void done(files_sources *t)
{
    files_sources_destroy(t);
    free(t);
}

Test(files_source, keys_drop_the_port)
{
    char k[FILES_SOURCE_KEY];
    files_source_key("127.0.0.1:4242", k);
    cr_assert_str_eq(k, "127.0.0.1");
    files_source_key("[::1]:4242", k);
    cr_assert_str_eq(k, "[::1]");
    files_source_key("[2001:db8::1]:1", k);
    cr_assert_str_eq(k, "[2001:db8::1]");
    files_source_key("unix:pid=1234", k);
    cr_assert_str_eq(k, "local");
    files_source_key("", k);
    cr_assert_str_eq(k, "local");
}

Test(files_source, transfers_are_capped_per_source)
{
    files_sources *t = table();
    cr_assert_eq(files_source_acquire(t, "10.0.0.1", 2, 0), 0);
    cr_assert_eq(files_source_acquire(t, "10.0.0.1", 2, 0), 0);
    cr_assert_eq(files_source_acquire(t, "10.0.0.1", 2, 0), -EBUSY);
    cr_assert_eq(files_source_acquire(t, "10.0.0.2", 2, 0), 0, "another source is not held back");
    files_source_release(t, "10.0.0.1");
    cr_assert_eq(files_source_acquire(t, "10.0.0.1", 2, 0), 0);
    done(t);
}

Test(files_source, a_full_table_refuses_new_sources_only)
{
    files_sources *t = table();
    char k[FILES_SOURCE_KEY];
    for (unsigned i = 0; i < FILES_SOURCES; i++) {
        snprintf(k, sizeof k, "10.1.%u.%u", i / 256, i % 256);
        cr_assert_eq(files_source_acquire(t, k, 4, 0), 0);
    }
    cr_assert_eq(files_source_acquire(t, "10.9.9.9", 4, 0), -ENOSPC);
    cr_assert_eq(files_source_acquire(t, "10.1.0.0", 4, 0), 0, "a known source still counts");
    files_source_release(t, "10.1.0.5");
    cr_assert_eq(files_source_acquire(t, "10.9.9.9", 4, 0), 0,
                 "a slot with nothing held is reused");
    done(t);
}

Test(files_source, the_hash_budget_is_a_token_bucket)
{
    files_sources *t = table();
    uint64_t step = 8u * 1024u * 1024u;
    cr_assert_eq(files_source_acquire(t, "10.0.0.1", 4, 1000), 0);
    uint64_t spent = 0;
    while (files_source_hash(t, "10.0.0.1", step, 1000) == 0)
        spent += step;
    cr_assert_eq(spent, FILES_HASH_BURST, "the burst, then no more at once");
    uint32_t wait = files_source_hash(t, "10.0.0.1", step, 1000);
    uint32_t want = (uint32_t)(step * 1000u / FILES_HASH_RATE);
    cr_assert(wait >= want && wait <= want + 2, "wait %u ms, expected about %u", wait, want);
    cr_assert_eq(files_source_hash(t, "10.0.0.1", step, 1000 + wait), 0, "paid for by the wait");
    /* Ending every transfer does not buy a fresh budget. */
    files_source_release(t, "10.0.0.1");
    cr_assert_eq(files_source_acquire(t, "10.0.0.1", 4, 1000 + wait), 0);
    cr_assert_gt(files_source_hash(t, "10.0.0.1", step, 1000 + wait), 0);
    /* Another source has its own. */
    cr_assert_eq(files_source_acquire(t, "10.0.0.2", 4, 1000), 0);
    cr_assert_eq(files_source_hash(t, "10.0.0.2", step, 1000), 0);
    done(t);
}

Test(files_source, partials_left_behind_refill_over_the_ttl)
{
    files_sources *t = table();
    cr_assert_eq(files_source_acquire(t, "10.0.0.1", 4, 0), 0);
    for (unsigned i = 0; i < FILES_PARTIALS_PER_SOURCE; i++)
        cr_assert(files_source_keep(t, "10.0.0.1", 0, 6400), "partial %u", i);
    cr_assert_not(files_source_keep(t, "10.0.0.1", 0, 6400), "one more than the cap");
    /* A TTL of 6400 s gives one back every 100 s. */
    cr_assert_not(files_source_keep(t, "10.0.0.1", 99000, 6400));
    cr_assert(files_source_keep(t, "10.0.0.1", 100000, 6400));
    cr_assert_not(files_source_keep(t, "10.0.0.1", 100000, 6400));
    done(t);
}
