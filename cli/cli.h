/* cli.h — what the sockit command's files share: exit codes, option value
 * parsing, the stderr log sink, and the entry point of each command. */
#ifndef SOCKIT_CLI_H
#define SOCKIT_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sockit.h"

enum { EXIT_OK = 0, EXIT_RUNTIME = 1, EXIT_USAGE = 2 };

/* The one --timeout default of every client (connect, chat, exec, put, get,
 * ls, bench): the time to connect, and for each reply owed, counted from when
 * it became owed. A pause in stdin is never a timeout. */
#define CLI_TIMEOUT_MS 10000

/* How the command was invoked (argv[0]), for hints that can be pasted. */
extern const char *cli_prog;

/* A growable byte buffer of the interactive clients (input not yet a whole
 * line or message, output waiting to be shown). */
typedef struct cli_bytes {
    uint8_t *data;
    size_t len, cap;
} cli_bytes;

/* Appends len bytes (the buffer doubles as needed); -1 if out of memory. */
int cli_bytes_add(cli_bytes *b, const void *data, size_t len);
/* Removes the first n bytes (n <= len). */
void cli_bytes_drop(cli_bytes *b, size_t n);

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

/* " (try ...)" after a "bad address" message for a bare port or a path
 * without unix:, or "" (a static buffer: use before the next call). */
const char *cli_addr_hint(const char *text);
/* `CMD HOST PORT` typed as nc takes it: prints the HOST:PORT spelling and
 * returns true when the two arguments look so (a usage error). */
bool cli_host_port_slip(const char *cmd, int nargs, char **args);

/* Sends library and service log lines to stderr as "sockit: ...". */
void cli_log_to_stderr(enum sk_log_level level);

/* Client side of tls:// (cli/tls_opts.c). Each client command adds
 * CLI_TLS_LONGOPTS to its getopt_long options and hands every option to
 * cli_tls_option (1: it was one of ours, 0: not, -1: a bad value, already
 * reported: exit 2), then calls cli_tls_prepare with the address (0, or an
 * exit code after one line on stderr: the TLS options on a plain address,
 * several ways to verify, an unreadable CA file). */
enum { CLI_O_CA = 1000, CLI_O_PIN, CLI_O_INSECURE };
#define CLI_TLS_LONGOPTS                                                                           \
    {"ca", required_argument, NULL, CLI_O_CA}, {"pin", required_argument, NULL, CLI_O_PIN},        \
    {                                                                                              \
        "insecure", no_argument, NULL, CLI_O_INSECURE                                              \
    }
/* The three lines of --help, their text starting at column 18 + strlen(PAD),
 * so that they line up with each command's own options. */
#define CLI_TLS_USAGE_PAD(PAD)                                                                     \
    "  --ca FILE       " PAD "tls://: verify the server's certificate chain and name with FILE\n"  \
    "  --pin SHA256    " PAD "tls://: accept only the certificate with this SHA-256 fingerprint\n" \
    "  --insecure      " PAD "tls://: do not verify the server at all (warns; for testing only)\n"
#define CLI_TLS_USAGE CLI_TLS_USAGE_PAD("  ")
typedef struct cli_tls {
    const char *ca;
    bool has_pin, insecure;
    uint8_t pin[SK_TLS_PIN_LEN];
    sk_tls_ctx *ctx;
} cli_tls;
int cli_tls_option(cli_tls *t, int ch, const char *v);
int cli_tls_prepare(cli_tls *t, const sk_addr *addr);
/* sk_sock_dial, with t's context for tls:// (close *out with sk_sock_close). */
int cli_dial(const sk_addr *addr, const cli_tls *t, int timeout_ms, sk_sock **out, char *err,
             size_t errlen);
/* cli_dial with a family and source address (-4, -6, --source; NULL: none). */
int cli_dial_opts(const sk_addr *addr, const cli_tls *t, const sk_dial_opts *dial, int timeout_ms,
                  sk_sock **out, char *err, size_t errlen);
void cli_tls_free(cli_tls *t);
/* serve's --cert and --key, before the library reads them: a key given as
 * the certificate (or the reverse) is named as such, and a key readable by
 * group or others is warned about. Returns 0, or -1 after one line. */
int cli_tls_check_server_files(const char *cert, const char *key);

/* Network access lists of the commands that listen (cli/acl_opts.c):
 * --allow, --deny, --allow-file, --deny-file into *acl (made on first use).
 * cli_acl_option: 1 when ch was one of them, 0 when not, -1 after one line
 * on stderr (exit 2). allow_hint: what a bad --allow value is told instead
 * of the parse error (serve's pointer to --allow-cmd), or NULL. */
enum { CLI_O_ALLOW = 1100, CLI_O_DENY, CLI_O_ALLOW_FILE, CLI_O_DENY_FILE };
#define CLI_ACL_LONGOPTS                                                                           \
    {"allow", required_argument, NULL, CLI_O_ALLOW},                                               \
        {"deny", required_argument, NULL, CLI_O_DENY},                                             \
        {"allow-file", required_argument, NULL, CLI_O_ALLOW_FILE},                                 \
    {                                                                                              \
        "deny-file", required_argument, NULL, CLI_O_DENY_FILE                                      \
    }
#define CLI_ACL_USAGE                                                                              \
    "  --allow CIDR[,CIDR...]    accept only peers in these networks (a bare address\n"            \
    "                            is /32 or /128; IPv4 rules also match ::ffff:a.b.c.d)\n"          \
    "  --deny CIDR[,CIDR...]     refuse peers in these networks (wins over --allow)\n"             \
    "  --allow-file FILE, --deny-file FILE   the same, one CIDR a line, # comments\n"              \
    "                            A refused peer is closed before a byte is read.\n"
int cli_acl_add(sk_acl **acl, bool deny, bool file, const char *v, const char *allow_hint);
int cli_acl_option(sk_acl **acl, int ch, const char *v);

/* Writes all of data to fd (retrying short writes and EINTR, waiting when fd
 * is non-blocking); 0, or -1 with errno set. */
int cli_write_all(int fd, const void *data, size_t len);

int cmd_serve(int argc, char **argv);
int cmd_listen(int argc, char **argv);
int cmd_relay(int argc, char **argv);
/* relay_hex.c: the relay's --hex/--hex-file tap, installed after the
 * command line is parsed (0, or -1 after one line) and removed after the
 * loops are gone. */
int cli_relay_hex_start(void);
void cli_relay_hex_stop(void);
int cmd_cert(int argc, char **argv);
int cmd_token(int argc, char **argv);
int cmd_connect(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_exec(int argc, char **argv);
/* files clients (cli/files_put.c, files_get.c, files_ls.c) */
int cmd_put(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_ls(int argc, char **argv);

#endif
