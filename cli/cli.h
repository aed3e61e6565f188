/* cli.h — what the sockit command's files share: exit codes, option value
 * parsing, the stderr log sink, and the entry point of each command. */
#ifndef SOCKIT_CLI_H
#define SOCKIT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sockit.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* How the command was invoked (argv[0]), for hints that can be pasted. */
extern const char *cli_prog;

/* Prints "sockit: " + the message + "\n" on stderr in one write, so lines
 * from several threads never interleave. */
void cli_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "64K", "16M", "1G", "4096" -> bytes (KiB/MiB/GiB). 0 on success, -1 if bad. */
int cli_parse_size(const char *text, size_t *out);
/* "0.5", "30" seconds -> milliseconds (0 allowed), bounded to a day. */
int cli_parse_seconds(const char *text, uint32_t *out_ms);
/* A decimal unsigned number in [min, max]. */
int cli_parse_uint(const char *text, unsigned min, unsigned max, unsigned *out);
int cli_parse_log_level(const char *text, enum sk_log_level *out);

/* Sends library and service log lines to stderr as "sockit: ...". */
void cli_log_to_stderr(enum sk_log_level level);

int cmd_serve(int argc, char **argv);
int cmd_connect(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_exec(int argc, char **argv);
/* files clients (cli/files_put.c, files_get.c, files_ls.c) */
int cmd_put(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_ls(int argc, char **argv);

#endif
