/* fuzz_cliargs.c — libFuzzer target for the command's option value parsers
 * (sizes, seconds, counts, log levels): no crash, and what is accepted is in
 * range and means what it says. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../cli/cli.h"

const char *cli_prog = "sockit";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 64)
        return 0;
    char text[65];
    memcpy(text, data, size);
    text[size] = '\0';
    size_t bytes;
    if (cli_parse_size(text, &bytes) == 0 && (text[0] < '0' || text[0] > '9'))
        abort();
    uint32_t ms;
    if (cli_parse_seconds(text, &ms) == 0 && ms > 86400u * 1000u)
        abort();
    unsigned u;
    if (cli_parse_uint(text, 3, 1000, &u) == 0 && (u < 3 || u > 1000))
        abort();
    enum sk_log_level lvl;
    if (cli_parse_log_level(text, &lvl) == 0 && (lvl < SK_LOG_ERROR || lvl > SK_LOG_DEBUG))
        abort();
    return 0;
}
