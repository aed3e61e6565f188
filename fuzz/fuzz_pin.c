/* fuzz_pin.c — libFuzzer target for the --pin parser: any text is either
 * refused (and the output left untouched) or parsed to 32 bytes that format
 * and parse back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sockit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 300)
        return 0;
    char text[301];
    memcpy(text, data, size);
    text[size] = '\0';
    uint8_t pin[SK_TLS_PIN_LEN], back[SK_TLS_PIN_LEN];
    memset(pin, 0x5a, sizeof pin);
    if (sk_tls_pin_parse(text, pin) < 0) {
        for (size_t i = 0; i < sizeof pin; i++)
            if (pin[i] != 0x5a)
                abort(); /* a refusal must leave the output alone */
        return 0;
    }
    char canon[96];
    sk_tls_pin_format(pin, canon, sizeof canon);
    if (strlen(canon) != 95 || sk_tls_pin_parse(canon, back) < 0 ||
        memcmp(pin, back, sizeof pin) != 0)
        abort();
    return 0;
}
