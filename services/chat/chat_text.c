/* chat_text.c — what the room does to the text of a member's line before it
 * relays it: controls a terminal would obey rather than show are replaced,
 * so that no member can move another's cursor, overwrite a line with "\r",
 * or forge a "***" notice for nc and telnet members (docs/PROTOCOL.md 8.1).
 * C0 controls but TAB become caret notation (ESC is "^[", CR "^M"), DEL
 * "^?"; C1 controls, whether UTF-8 encoded (U+0080-U+009F) or raw bytes
 * 0x80-0x9F outside a valid UTF-8 sequence, become U+FFFD. Everything else,
 * UTF-8 text and other bytes alike, passes untouched. */
#include <string.h>

#include "chat.h"

static const uint8_t replacement[3] = {0xef, 0xbf, 0xbd}; /* U+FFFD */

/* Length of the well-formed UTF-8 sequence (RFC 3629: no overlong forms,
 * no surrogates, nothing past U+10FFFF) starting at p, or 0 if none does. */
static size_t utf8_len(const uint8_t *p, size_t len)
{
    uint8_t b = p[0];
    size_t n;
    uint8_t lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (b >= 0xc2 && b <= 0xdf) {
        n = 2;
    } else if (b >= 0xe0 && b <= 0xef) {
        n = 3;
        if (b == 0xe0)
            lo = 0xa0;
        else if (b == 0xed)
            hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        n = 4;
        if (b == 0xf0)
            lo = 0x90;
        else if (b == 0xf4)
            hi = 0x8f;
    } else {
        return 0;
    }
    if (len < n || p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

/* What one position of text becomes: *used bytes of the input are replaced
 * by the returned number of bytes in out (at most 3), or passed as they are
 * when the return is 0. */
static size_t replace_at(const uint8_t *p, size_t len, size_t *used, uint8_t out[3])
{
    uint8_t b = p[0];
    *used = 1;
    if ((b < 0x20 && b != '\t') || b == 0x7f) {
        out[0] = '^';
        out[1] = b == 0x7f ? '?' : (uint8_t)(b + '@');
        return 2;
    }
    if (b < 0x80)
        return 0;
    size_t n = utf8_len(p, len);
    if (n == 0) {
        if (b > 0x9f)
            return 0; /* not UTF-8, but no control in any 8-bit set either */
        memcpy(out, replacement, 3);
        return 3;
    }
    *used = n;
    if (n == 2 && b == 0xc2 && p[1] <= 0x9f) {
        memcpy(out, replacement, 3);
        return 3;
    }
    return 0;
}

bool chat_text_clean(const uint8_t *text, size_t len)
{
    for (size_t i = 0; i < len;) {
        uint8_t b = text[i];
        if (b >= 0x20 && b < 0x7f) {
            i++;
            continue;
        }
        uint8_t out[3];
        size_t used;
        if (replace_at(text + i, len - i, &used, out) > 0)
            return false;
        i += used;
    }
    return true;
}

size_t chat_text_sanitize(const uint8_t *text, size_t len, uint8_t *dst)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        uint8_t out[3];
        size_t used;
        size_t k = replace_at(text + i, len - i, &used, out);
        if (k > 0) {
            memcpy(dst + n, out, k);
            n += k;
        } else {
            memcpy(dst + n, text + i, used);
            n += used;
        }
        i += used;
    }
    return n;
}
