/* exec_term.h — the client's own terminal for `sockit exec -t`: raw mode
 * that is always put back, the window size and TERM to send. */
#ifndef SOCKIT_CLI_EXEC_TERM_H
#define SOCKIT_CLI_EXEC_TERM_H

#include <stdbool.h>

#include "../services/exec/exec.h"

/* Puts stdin's terminal in raw mode (no echo, no line editing, no signals
 * from ^C ^Z ^\, no output processing) after saving its settings. Does
 * nothing if stdin is not a terminal. Returns 0, or -1 after one line on
 * stderr. */
int exec_term_raw(void);

/* Puts the saved settings back, if raw mode is on; safe to call any
 * number of times and from every way out. */
void exec_term_restore(void);

/* Makes sig (SIGTERM, SIGHUP) put the terminal back and end the client
 * with 128 + sig at once, wherever it is: a handler, because the client
 * may be blocked writing output that nobody reads. */
void exec_term_exit_on(int sig);

/* The window of stdin's terminal (else stdout's); 80x24 without one. */
void exec_term_size(exec_winsize *ws);

/* $TERM, or "xterm" when it is unset, empty or not a terminal name the
 * protocol carries (EXEC_TERM_MAX bytes of [A-Za-z0-9._+-]). */
const char *exec_term_name(void);

#endif
