/* test_chat_text.c — what the chat room relays of a member's text
 * (services/chat_text.c): C0 controls but TAB in caret notation, DEL as ^?,
 * C1 controls (UTF-8 encoded or raw bytes outside UTF-8) as U+FFFD, and
 * everything else, UTF-8 and other bytes, untouched. */
#include <criterion/criterion.h>

#include <string.h>

#include "unit.h"

#include "../../services/chat/chat.h"

TestSuite(chat_text, .init = unit_alarm);

/* Sanitises in (len bytes) and checks the result against want. */
static void check(const char *in, size_t len, const char *want)
{
    uint8_t out[CHAT_TEXT_GROWTH * 64];
    cr_assert(len <= 64);
    size_t n = chat_text_sanitize((const uint8_t *)in, len, out);
    cr_assert_eq(n, strlen(want), "length %zu, want %zu for \"%s\"", n, strlen(want), want);
    cr_assert(memcmp(out, want, n) == 0, "got \"%.*s\", want \"%s\"", (int)n, out, want);
    cr_assert_eq(chat_text_clean((const uint8_t *)in, len), n == len && memcmp(in, want, n) == 0);
}

#define CHECK(in, want) check(in, sizeof in - 1, want)

Test(chat_text, plain_text_and_tab_pass)
{
    CHECK("hello, world", "hello, world");
    CHECK("a\tb", "a\tb");
    CHECK("", "");
}

Test(chat_text, c0_controls_in_caret_notation)
{
    CHECK("hi\r*** admin", "hi^M*** admin");
    CHECK("\x1b[2K\x1b[1Gx", "^[[2K^[[1Gx");
    CHECK("bell\x07", "bell^G");
    check("nul\0end", 7, "nul^@end");
    CHECK("\x1f\x01", "^_^A");
}

Test(chat_text, del_as_caret_question_mark) { CHECK("del\x7f", "del^?"); }

Test(chat_text, c1_utf8_and_raw_as_replacement_character)
{
    CHECK("\xc2\x9b"
          "31m",
          "\xef\xbf\xbd"
          "31m");
    CHECK("\xc2\x80\xc2\x9f", "\xef\xbf\xbd\xef\xbf\xbd");
    CHECK("\x9b"
          "31m",
          "\xef\xbf\xbd"
          "31m");
    CHECK("\x85", "\xef\xbf\xbd");
    /* A lead byte cut short: its continuation 0x80-0x9F stands alone. */
    CHECK("\xe2\x80", "\xe2\xef\xbf\xbd");
}

Test(chat_text, utf8_and_other_bytes_untouched)
{
    CHECK("\xc2\xa0 \xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80",
          "\xc2\xa0 \xc3\xa9 \xe6\x97\xa5 \xf0\x9f\x98\x80");
    /* U+0080-U+009F are C1; U+00A0 and U+2028 are not. */
    CHECK("\xe2\x80\xa8\xe2\x80\xae", "\xe2\x80\xa8\xe2\x80\xae");
    /* Latin-1 text (not UTF-8) passes: no 8-bit terminal obeys 0xA0-0xFF. */
    CHECK("\xe9t\xe9 \xa0", "\xe9t\xe9 \xa0");
    /* Overlong and surrogate forms are not UTF-8: their 0x80-0x9F bytes are. */
    CHECK("\xc0\x9b", "\xc0\xef\xbf\xbd");
    CHECK("\xed\xa0\x80", "\xed\xa0\xef\xbf\xbd");
}

Test(chat_text, growth_is_bounded)
{
    char in[64];
    memset(in, 0x9b, sizeof in);
    uint8_t out[CHAT_TEXT_GROWTH * sizeof in];
    cr_assert_eq(chat_text_sanitize((const uint8_t *)in, sizeof in, out), sizeof out);
}
