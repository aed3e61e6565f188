/* fuzz_addr.c — libFuzzer target for the address parser: any text either
 * parses, formats and parses back to the same address, or is refused with
 * one non-empty line of explanation. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sockit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 600)
        return 0;
    char text[601];
    memcpy(text, data, size);
    text[size] = '\0';
    sk_addr a, b;
    char err[256];
    err[0] = '\0';
    if (sk_addr_parse(text, &a, err, sizeof err) < 0) {
        if (err[0] == '\0' || strchr(err, '\n') != NULL)
            abort(); /* an error must say what is wrong, on one line */
        return 0;
    }
    char canon[700];
    int n = sk_addr_format(&a, canon, sizeof canon);
    if (n < 0 || (size_t)n >= sizeof canon)
        abort();
    if (sk_addr_parse(canon, &b, err, sizeof err) < 0)
        abort(); /* what we print must be accepted back */
    if (a.kind != b.kind || a.port != b.port || a.abstract != b.abstract ||
        strcmp(a.host, b.host) != 0 || strcmp(a.path, b.path) != 0)
        abort();
    return 0;
}
