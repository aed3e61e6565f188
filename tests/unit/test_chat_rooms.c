/* test_chat_rooms.c — the chat server's rooms (services/chat/chat_rooms.c):
 * names by the nick rules with an optional "#", compared without case;
 * rooms freed when they hold neither members nor history, the lobby never;
 * each room's history a ring of --history lines, all rooms' together held
 * under their byte share, the oldest lines going first. */
#include <criterion/criterion.h>

#include <stdint.h>
#include <string.h>

#include "unit.h"

#include "../../services/chat/chat.h"

TestSuite(chat_rooms, .init = unit_alarm);

static sk_shared *line_of(const char *text)
{
    sk_shared *s = NULL;
    cr_assert_eq(sk_shared_new(strlen(text), &s), 0);
    memcpy(sk_shared_data(s), text, strlen(text));
    return s;
}

/* Adds a line to c's history, dropping the caller's reference. */
static void add(chat_chan *c, const char *text)
{
    sk_shared *s = line_of(text);
    chat_history_add(c, s);
    sk_shared_unref(s);
}

static const char *hist_at(chat_chan *c, unsigned i)
{
    static char buf[64];
    sk_shared *s = c->hist[(c->hist_start + i) % c->room->history];
    size_t n = sk_shared_len(s);
    memcpy(buf, sk_shared_data(s), n);
    buf[n] = '\0';
    return buf;
}

Test(chat_rooms, names_hash_optional_and_case_ignored)
{
    chat_room r = {.history = 3, .hist_max = SIZE_MAX};
    cr_assert_eq(chat_rooms_init(&r), 0);
    cr_assert_str_eq(r.lobby->name, "lobby");
    cr_assert_eq(chat_chan_find(&r, "#LOBBY", 6), r.lobby);
    chat_chan *dev = chat_chan_get(&r, "#Dev", 4);
    cr_assert_not_null(dev);
    cr_assert_str_eq(dev->name, "Dev");
    cr_assert_eq(chat_chan_get(&r, "dev", 3), dev);
    cr_assert_eq(r.nchans, 2);
    cr_assert_null(chat_chan_get(&r, "##dev", 5));
    cr_assert_null(chat_chan_get(&r, "#", 1));
    cr_assert_null(chat_chan_get(&r, "", 0));
    cr_assert_null(chat_chan_get(&r, "a b", 3));
    cr_assert(chat_room_name_valid("#abcdefghijabcdefghijabcdefghij12", 33));
    cr_assert_not(chat_room_name_valid("abcdefghijabcdefghijabcdefghij123", 33));
    /* No member, no history: gone; the lobby stays whatever it holds. */
    chat_chan_release(dev);
    cr_assert_null(chat_chan_find(&r, "dev", 3));
    chat_chan_release(r.lobby);
    cr_assert_not_null(chat_chan_find(&r, "lobby", 5));
    chat_rooms_free(&r);
    cr_assert_null(r.chans);
}

Test(chat_rooms, history_keeps_the_last_n_lines_and_its_room)
{
    chat_room r = {.history = 3, .hist_max = SIZE_MAX};
    cr_assert_eq(chat_rooms_init(&r), 0);
    chat_chan *dev = chat_chan_get(&r, "dev", 3);
    add(dev, "one\n");
    add(dev, "two\n");
    add(dev, "three\n");
    add(dev, "four\n");
    cr_assert_eq(dev->hist_len, 3);
    cr_assert_str_eq(hist_at(dev, 0), "two\n");
    cr_assert_str_eq(hist_at(dev, 2), "four\n");
    cr_assert_eq(r.hist_bytes, 4 + 6 + 5);
    /* A room with history outlives its members. */
    chat_chan_release(dev);
    cr_assert_eq(chat_chan_find(&r, "dev", 3), dev);
    chat_rooms_free(&r);
    cr_assert_eq(r.hist_bytes, 0);
}

Test(chat_rooms, all_rooms_history_stays_under_its_share)
{
    chat_room r = {.history = 10, .hist_max = 20};
    cr_assert_eq(chat_rooms_init(&r), 0);
    chat_chan *a = chat_chan_get(&r, "a", 1);
    chat_chan *b = chat_chan_get(&r, "b", 1);
    add(a, "aaaa1\n"); /* 6 bytes each */
    add(a, "aaaa2\n");
    add(a, "aaaa3\n");
    cr_assert_eq(r.hist_bytes, 18);
    /* The longest history gives up its oldest line: a's, twice. */
    add(b, "bbbb1\n");
    cr_assert_eq(r.hist_bytes, 18);
    cr_assert_eq(a->hist_len, 2);
    cr_assert_str_eq(hist_at(a, 0), "aaaa2\n");
    add(b, "bbbb2\n");
    cr_assert_eq(a->hist_len, 1);
    cr_assert_str_eq(hist_at(a, 0), "aaaa3\n");
    /* Then b's own, being the longest. */
    add(b, "bbbb3\n");
    cr_assert_eq(a->hist_len, 1);
    cr_assert_eq(b->hist_len, 2);
    cr_assert_str_eq(hist_at(b, 0), "bbbb2\n");
    cr_assert_leq(r.hist_bytes, 20);
    /* A line over the whole share is not kept. */
    add(b, "0123456789012345678901234\n");
    cr_assert_leq(r.hist_bytes, 20);
    chat_rooms_free(&r);
}

Test(chat_rooms, history_zero_keeps_nothing)
{
    chat_room r = {.history = 0, .hist_max = SIZE_MAX};
    cr_assert_eq(chat_rooms_init(&r), 0);
    add(r.lobby, "x\n");
    cr_assert_eq(r.lobby->hist_len, 0);
    cr_assert_null(r.lobby->hist);
    chat_rooms_free(&r);
}

/* --redis URLs: checked before anything starts (a usage error). */
Test(chat_rooms, redis_urls)
{
    char err[300];
    static const char *const good[] = {
        "redis://127.0.0.1:6379",
        "redis://localhost:6379/2",
        "redis://[::1]:6379",
        "unix:/run/redis/redis.sock",
        "redis://:secret@127.0.0.1:6379",
        "redis://alice:s%40c%3Aret@[::1]:6379/3",
        "redis://al%20ice:x@host:6379",
    };
    static const char *const bad[] = {
        "http://127.0.0.1:6379",
        "redis://127.0.0.1",
        "redis://:6379",
        "redis://127.0.0.1:0",
        "redis://127.0.0.1:70000",
        "redis://127.0.0.1:6379/x",
        "redis://127.0.0.1:6379/",
        "redis://u@host:6379",
        "unix:",
        "redis://h:6379x",
        "",
        "redis://:@host:6379",     /* an empty password */
        "redis://:pw%4@host:6379", /* a cut %XX */
        "redis://:pw%zzsecret@host:6379",
        "redis://:pw%00x@host:6379", /* a NUL */
        "redis://:secret@host",      /* no port: the error hides the password */
    };
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        cr_assert_eq(chat_redis_check(good[i], NULL, err, sizeof err), 0, "%s: %s", good[i], err);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        cr_assert_eq(chat_redis_check(bad[i], NULL, err, sizeof err), -1, "%s accepted", bad[i]);
        cr_assert(strstr(err, "--redis") != NULL, "%s", err);
        cr_assert(strchr(err, '\n') == NULL);
        cr_assert(strstr(err, "secret") == NULL, "the password is shown: %s", err);
    }
    /* One source of the password: a user takes it from the file; a URL
     * with one and a file too is refused. */
    cr_assert_eq(chat_redis_check("redis://u@host:6379", "/pw", err, sizeof err), 0, "%s", err);
    cr_assert_eq(chat_redis_check("redis://host:6379", "/pw", err, sizeof err), 0, "%s", err);
    cr_assert_eq(chat_redis_check("unix:/run/r.sock", "/pw", err, sizeof err), 0, "%s", err);
    cr_assert_eq(chat_redis_check("redis://:secret@host:6379", "/pw", err, sizeof err), -1);
    cr_assert(strstr(err, "not both") != NULL && strstr(err, "secret") == NULL, "%s", err);
}
