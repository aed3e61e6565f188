/* test_log.c — log.c: sk_strerror (never NULL, sensible text for known codes, safe for odd values
 * and from threads), sk_err_name and the version. */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <string.h>

#include "sockit.h"
#include "unit.h"

TestSuite(strerror, .init = unit_alarm);

static void check_has(int code, const char *const *words)
{
    const char *s = sk_strerror(code);
    cr_assert_not_null(s, "sk_strerror(%d) is NULL", code);
    for (int i = 0; words[i] != NULL; i++) {
        if (strcasestr(s, words[i]) != NULL)
            return;
    }
    cr_assert_fail("sk_strerror(%d) = '%s' (expected a mention of '%s')", code, s, words[0]);
}

Test(strerror, known_codes)
{
    check_has(0, (const char *const[]){"success", "ok", "no error", NULL});
    check_has(-ECONNREFUSED, (const char *const[]){"refused", NULL});
    check_has(-ETIMEDOUT, (const char *const[]){"timed out", "timeout", NULL});
    check_has(-EMSGSIZE, (const char *const[]){"too long", "too large", "size", "big", NULL});
    check_has(-ECONNRESET, (const char *const[]){"reset", NULL});
    check_has(-EINVAL, (const char *const[]){"invalid", NULL});
    check_has(-ENOBUFS, (const char *const[]){"buffer", "memory", "budget", NULL});
    check_has(-EPIPE, (const char *const[]){"pipe", "closing", "closed", NULL});
    check_has(-ENODATA, (const char *const[]){"data", "end", "eof", NULL});
    check_has(-ENOENT, (const char *const[]){"no such", "not found", NULL});
    check_has(-EADDRINUSE, (const char *const[]){"in use", NULL});
}

Test(strerror, distinct_codes_distinct_text)
{
    static const int codes[] = {0,       -ECONNREFUSED, -ETIMEDOUT, -EMSGSIZE, -ECONNRESET,
                                -EINVAL, -ENOBUFS,      -EPIPE,     -ENODATA};
    const int n = (int)(sizeof codes / sizeof codes[0]);
    for (int i = 0; i < n; i++) {
        for (int j = i + 1; j < n; j++)
            cr_assert(strcmp(sk_strerror(codes[i]), sk_strerror(codes[j])) != 0,
                      "codes %d and %d share the text '%s'", codes[i], codes[j],
                      sk_strerror(codes[i]));
    }
}

/* Unknown, positive and extreme values: a non-empty string, never NULL
 * (INT_MIN must not be negated: undefined behaviour under UBSan). */
Test(strerror, odd_values_never_null)
{
    static const int odd[] = {-99999, -4096,   -1000000, 1,           EINVAL,
                              123456, INT_MAX, INT_MIN,  INT_MIN + 1, -1};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        const char *s = sk_strerror(odd[i]);
        cr_assert_not_null(s, "sk_strerror(%d) is NULL", odd[i]);
        cr_assert(s[0] != '\0', "sk_strerror(%d) is empty", odd[i]);
    }
}

/* Returned text stays valid and unchanged: it is static, not a shared buffer
 * overwritten by the next call. */
Test(strerror, text_is_stable)
{
    const char *a = sk_strerror(-ECONNREFUSED);
    char copy[256];
    strncpy(copy, a, sizeof copy - 1);
    copy[sizeof copy - 1] = '\0';
    (void)sk_strerror(-ETIMEDOUT);
    (void)sk_strerror(-99999);
    cr_assert_str_eq(a, copy, "text of an earlier call changed");
}

static void *hammer(void *arg)
{
    int *bad = arg;
    for (int i = 0; i < 20000; i++) {
        const char *s = sk_strerror(-(i % 140));
        const char *r = sk_strerror(-ECONNREFUSED);
        if (s == NULL || s[0] == '\0' || strcasestr(r, "refused") == NULL)
            *bad = 1;
    }
    return NULL;
}

Test(strerror, thread_safe)
{
    pthread_t th[4];
    int bad[4] = {0};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, hammer, &bad[i]), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(bad[i], 0, "thread %d saw bad text", i);
}

Test(strerror, err_name_gives_the_symbol)
{
    cr_assert_str_eq(sk_err_name(-ECONNREFUSED), "ECONNREFUSED");
    cr_assert_str_eq(sk_err_name(ECONNREFUSED), "ECONNREFUSED");
    cr_assert_str_eq(sk_err_name(-ETIMEDOUT), "ETIMEDOUT");
    cr_assert_str_eq(sk_err_name(-ENOBUFS), "ENOBUFS");
    cr_assert_str_eq(sk_err_name(-EPERM), "EPERM");
    cr_assert_str_eq(sk_err_name(0), "OK");
    cr_assert_str_eq(sk_err_name(-99999), "UNKNOWN");
    cr_assert_str_eq(sk_err_name(INT_MIN), "UNKNOWN");
}

Test(strerror, version_of_header_and_library_agree)
{
    cr_assert_str_eq(sk_version(), SK_VERSION);
    cr_assert_str_eq(SK_VERSION, "0.2.0");
    cr_assert_eq(sk_version_number(), (unsigned)SK_VERSION_NUMBER);
    cr_assert_eq(SK_VERSION_NUMBER,
                 (SK_VERSION_MAJOR << 16) | (SK_VERSION_MINOR << 8) | SK_VERSION_PATCH);
    cr_assert_eq(SK_VERSION_MAJOR, 0);
    cr_assert_eq(SK_VERSION_MINOR, 2);
}
