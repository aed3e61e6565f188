/* test_histogram.c — the latency histogram of `sockit bench` (cli/): ~1 %
 * precision across the range, exact small values, merge, and percentiles. */
#include <criterion/criterion.h>
#include <math.h>

#include "unit.h"
/* The histogram is part of the command, not the library: compile it here. */
#include "../../cli/histogram.c"

TestSuite(histogram, .init = unit_alarm);

Test(histogram, every_value_within_one_percent)
{
    static histogram h;
    for (uint64_t v = 1; v < (1ull << 40); v = v * 1.01 + 1) {
        hist_init(&h);
        hist_add(&h, v);
        hist_add(&h, v);
        /* Percentiles are clamped to the seen min/max: use a wider spread. */
        hist_add(&h, 0);
        hist_add(&h, 1ull << 41);
        uint64_t p = hist_percentile(&h, 50);
        double err = fabs((double)p - (double)v) / (double)v;
        cr_assert(err <= 0.01, "value %llu reported as %llu (%.2f%%)", (unsigned long long)v,
                  (unsigned long long)p, err * 100);
    }
}

Test(histogram, percentiles_of_a_uniform_set)
{
    static histogram h;
    hist_init(&h);
    for (uint64_t v = 1; v <= 100000; v++)
        hist_add(&h, v * 1000);
    cr_assert_eq(h.count, 100000);
    const double ps[] = {50, 90, 99, 99.9};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        double want = ps[i] * 1000.0 * 1000.0;
        double got = (double)hist_percentile(&h, ps[i]);
        cr_assert(fabs(got - want) / want < 0.01, "p%g: %f vs %f", ps[i], got, want);
    }
    cr_assert_eq(hist_percentile(&h, 100), 100000ull * 1000);
    cr_assert(fabs(hist_mean(&h) - 50000.5 * 1000) < 1.0);
}

Test(histogram, merge_and_empty)
{
    static histogram a, b;
    hist_init(&a);
    hist_init(&b);
    cr_assert_eq(hist_percentile(&a, 50), 0);
    for (int i = 0; i < 10; i++)
        hist_add(&a, 5);
    for (int i = 0; i < 30; i++)
        hist_add(&b, 5000000);
    hist_merge(&a, &b);
    cr_assert_eq(a.count, 40);
    cr_assert_eq(a.min, 5);
    cr_assert_eq(a.max, 5000000);
    cr_assert_eq(hist_percentile(&a, 20), 5, "small values are exact");
    cr_assert(fabs((double)hist_percentile(&a, 90) - 5e6) / 5e6 < 0.01);
}
