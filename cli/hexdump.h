/* hexdump.h — --hex and --hex-file of connect, listen and relay: every byte
 * of both directions as hexdump -C shows it, each line marked with its
 * direction ('>' sent to the peer, '<' received from it) and the offset
 * within that direction:
 *
 *   > 00000000  68 65 6c 6c 6f 0a                                  |hello.|
 *   < 00000000  48 45 4c 4c 4f 0a                                  |HELLO.|
 */
#ifndef SOCKIT_CLI_HEXDUMP_H
#define SOCKIT_CLI_HEXDUMP_H

#include <stddef.h>
#include <stdint.h>

enum cli_hex_dir { CLI_HEX_OUT = 0, CLI_HEX_IN = 1 };

typedef struct cli_hexdump cli_hexdump;

/* Opens a dump to path (created or truncated, mode 600: it holds the
 * traffic), or to stderr with path NULL. Returns 0, or -1 after one line on
 * stderr. */
int cli_hexdump_open(const char *path, cli_hexdump **out);

/* Dumps len bytes of one direction, continuing that direction's offset.
 * Lines are written whole (one write per call), so dumps from several
 * threads never interleave inside a line. h NULL: does nothing. */
void cli_hexdump_write(cli_hexdump *h, enum cli_hex_dir dir, const void *data, size_t len);

/* Dumps one chunk of a connection among several (the relay's workers):
 * a "# label" line, then its lines at offsets from off (the caller's count
 * for that connection and direction; the dump's own offsets untouched).
 * The whole chunk is written under the dump's lock, so chunks of different
 * connections follow each other but never mix. h NULL: does nothing. */
void cli_hexdump_chunk(cli_hexdump *h, enum cli_hex_dir dir, uint64_t off, const char *label,
                       const void *data, size_t len);

/* Starts both offsets again at 0 (a new peer), with a line saying so. */
void cli_hexdump_mark(cli_hexdump *h, const char *what);

/* Closes the file (not stderr). NULL: nothing. */
void cli_hexdump_close(cli_hexdump *h);

#endif
