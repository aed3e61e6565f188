/* fuzz_addr.c — libFuzzer target for the address parsers (sk_addr_parse, and
 * sk_dial_source_parse for --source): any text either
 * parses, formats and parses back to the same address, or is refused with
 * one non-empty line of explanation. */
#include <netinet/in.h>
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
    /* The source addresses of -4/-6/--source: one-line errors, and what is
     * accepted is an IPv4 or IPv6 socket address of the right length. */
    sk_dial_opts o;
    memset(&o, 0, sizeof o);
    err[0] = '\0';
    if (sk_dial_source_parse(text, &o, err, sizeof err) < 0) {
        if (err[0] == '\0' || strchr(err, '\n') != NULL || o.source.ss_family != AF_UNSPEC)
            abort();
    } else if (!(o.source.ss_family == AF_INET && o.source_len == sizeof(struct sockaddr_in)) &&
               !(o.source.ss_family == AF_INET6 && o.source_len == sizeof(struct sockaddr_in6))) {
        abort();
    }
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
