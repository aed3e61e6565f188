/* exec.h — `sockit serve exec` (services/exec.c): the options the command
 * line fills, the service object shared by the exec listeners, and the
 * request parser (a pure function, so it can be fuzzed on its own). */
#ifndef SOCKIT_EXEC_H
#define SOCKIT_EXEC_H

#include "../proto/proto.h"
#include "../services.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define EXEC_DEFAULT_MAX_PROCS  64u
#define EXEC_DEFAULT_MAX_UNAUTH 64u
/* A session idle between commands is closed after this (--idle-timeout):
 * long enough for a person typing the next command, short enough that
 * forgotten sessions do not pile up against the descriptor limit. */
#define EXEC_DEFAULT_IDLE_MS 300000u
/* After authentication: the largest request or stdin frame. Linux caps one
 * argument at 128 KiB; 1 MiB of arguments is more than any command line
 * needs and bounds what one client makes the server copy. */
#define EXEC_MAX_FRAME (1024u * 1024u)
/* Arguments in one request (each costs a pointer in the child's argv). */
#define EXEC_ARGV_MAX 4096u
/* The longest TERM a client may ask for: terminfo names are short
 * ("xterm-256color"); the bound keeps the environment entry small. */
#define EXEC_TERM_MAX 64u
/* A window size beyond this is a protocol error (a terminal of 10,000
 * columns is not a terminal; the kernel would take any 16-bit value). */
#define EXEC_WIN_MAX 10000u
/* The shell of `sockit exec -t ADDR` without a command (--shell). */
#define EXEC_DEFAULT_SHELL "/bin/sh"
/* The fixed PATH of every command unless --pass-env PATH. */
#define EXEC_SAFE_PATH "/usr/local/bin:/usr/bin:/bin"

typedef struct exec_opts {
    const char *token_file;         /* required */
    bool allow_shell;               /* requests may carry a /bin/sh -c string */
    const char *allow_cmd;          /* --allow-cmd "CMD,CMD,...": the only argv[0]s allowed
                                       (the program only, not its arguments); NULL: any */
    uint32_t timeout_ms;            /* per command; 0: none */
    uint64_t max_output;            /* stdout + stderr bytes per command; 0: no limit */
    unsigned max_procs;             /* commands running at once */
    const char *cwd;                /* working directory of commands; NULL: the server's */
    const char *pass_env;           /* "NAME,NAME,...": variables passed on */
    unsigned max_unauth;            /* connections not yet authenticated, at once */
    unsigned max_unauth_per_source; /* of those, from one source address */
    uint32_t handshake_ms;          /* hello + authentication deadline */
    uint32_t idle_ms;               /* close a session idle that long between commands; 0: never */
    bool no_pty;                    /* --no-pty: refuse terminals (PTY_REQUEST) */
    const char *shell;              /* --shell PATH: the login shell of a request without a
                                       command (only with --allow-shell) */
} exec_opts;

typedef struct exec_svc exec_svc;

void exec_opts_init(exec_opts *o);

/* exec_options.c: the options of `sockit serve` for exec. */
#define EXEC_DEMO_TOKEN "sockit-exec.token"
extern exec_opts exec_cli_opts;
extern const svc_opt exec_options[];
void exec_opts_init_store(void *store);

/* Checks the options as the service will use them — the token file (which
 * must exist, hold a token sk_token_check accepts and be private to its
 * owner), --cwd, the lists — without keeping anything: what `sockit serve` does before it
 * starts anything, so a bad option is a usage error. Returns 0, or -1 with
 * one sentence in err. */
int exec_check_opts(const exec_opts *o, char *err, size_t errlen);

/* Prepares the service: loads the token, builds the commands' environment
 * (PATH, HOME, LANG and --pass-env), parses the lists. Returns 0, or -1
 * with one sentence in err. */
int exec_svc_new(const exec_opts *o, exec_svc **out, char *err, size_t errlen);

/* Kills (SIGKILL, whole process group) every command still running, closes
 * their pipes and frees the service. Called after the loop it ran on has
 * been freed (its connections, watchers and process handles are gone by
 * then, so none of them is touched). NULL: nothing. */
void exec_svc_free(exec_svc *svc);

/* Creates the demo set's token file at path if there is none: 32 random
 * bytes as 64 hex digits and a newline, mode 0600. Returns 1 if it was
 * created, 0 if a file was already there, -1 with err on failure. */
int exec_demo_token(const char *path, char *err, size_t errlen);

/* A parsed REQUEST (payload without its type byte). argv points into
 * storage, which the caller frees. */
/* A terminal's size, as TIOCSWINSZ takes it (pixels 0 when unknown). */
typedef struct exec_winsize {
    uint16_t rows, cols, xpixel, ypixel;
} exec_winsize;

typedef struct exec_request {
    bool pty;                     /* came as a PTY_REQUEST */
    exec_winsize ws;              /* pty: the client's window */
    char term[EXEC_TERM_MAX + 1]; /* pty: TERM */
    unsigned flags;               /* PROTO_EXEC_* */
    uint32_t timeout_ms;          /* the client's limit; 0: none */
    size_t argc;
    char **argv;   /* argc strings, NULL-terminated */
    void *storage; /* one allocation holding argv and the strings */
} exec_request;

/* Parses a REQUEST body. Returns 0, or -1 with why (a sentence) for a
 * malformed one; -2 if out of memory. */
int exec_parse_request(const uint8_t *body, size_t len, exec_request *req, char *why,
                       size_t whylen);
/* Parses a PTY_REQUEST body: the terminal (size, TERM), then a REQUEST
 * body. Returns as exec_parse_request; req->pty is set. */
int exec_parse_pty_request(const uint8_t *body, size_t len, exec_request *req, char *why,
                           size_t whylen);
/* Parses a WINCH body (8 bytes: rows, columns, x and y pixels). Returns 0,
 * or -1 with why. */
int exec_parse_winch(const uint8_t *body, size_t len, exec_winsize *ws, char *why, size_t whylen);
/* Parses a SIGNAL body (one byte: 1 HUP, 2 INT, 3 QUIT or 15 TERM, the
 * only signals a client may send). Returns the signal, or -1 with why. */
int exec_parse_signal(const uint8_t *body, size_t len, char *why, size_t whylen);

/* One message from an exec server after the handshake, as the client
 * reads it: output bytes, the exit status, or an error. */
typedef struct exec_reply {
    enum { EXEC_REPLY_STDOUT, EXEC_REPLY_STDERR, EXEC_REPLY_EXIT, EXEC_REPLY_ERROR } kind;
    const uint8_t *data; /* output: points into the message */
    size_t len;
    int status; /* exit: 0-255, or 128 + signal number */
    int code;   /* error: a PE_ code (0 if none was sent) */
    /* error: the server's text, cut to PROTO_ERROR_TEXT_MAX and made one
     * printable line (anything else becomes '?'); empty if none */
    char text[PROTO_ERROR_TEXT_MAX + 1];
} exec_reply;

/* Parses one server message (with its type byte). Returns 0, or -1 with
 * why (a sentence) for an empty, malformed or unexpected one. */
int exec_parse_reply(const uint8_t *msg, size_t len, exec_reply *r, char *why, size_t whylen);

#endif
