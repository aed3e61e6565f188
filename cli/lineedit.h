/* lineedit.h — the line editor of the interactive clients (chat, connect):
 * libedit's callback interface driven from the pump's poll loop, and output
 * printed above the line being typed, which is then redrawn intact, so what
 * arrives never hides what the user has half typed. One editor per process
 * (libedit's callback interface is global state). */
#ifndef SOCKIT_CLI_LINEEDIT_H
#define SOCKIT_CLI_LINEEDIT_H

#include <stdbool.h>
#include <stddef.h>

/* Installs the editor with this prompt (a string that outlives it); each
 * line typed goes to on_line (malloc'ed, the callee frees it; NULL: Ctrl-D
 * on an empty line). libedit leaves its callback mode after each line, so
 * on_line calls cli_edit_again to keep editing. */
void cli_edit_start(const char *prompt, void (*on_line)(char *line));
void cli_edit_again(void);
/* Removes the editor (the terminal gets its modes back); safe to repeat. */
void cli_edit_stop(void);
bool cli_edit_active(void);

/* stdin is readable: hand libedit the next character. */
void cli_edit_read(void);
/* SIGWINCH arrived: libedit takes the terminal's new width. */
void cli_edit_resize(void);

/* Writes len bytes to stdout above the input line: the prompt and the typed
 * text are erased, the bytes written, and the input redrawn with the cursor
 * where it was. Without an active editor: a plain write. */
void cli_edit_print(const void *data, size_t len);

/* poll said stdin (a terminal) is readable or hung up: true when the
 * terminal went away (hung up, or readable with nothing to read), which
 * libedit would not report: it returns on EOF without calling on_line. */
bool cli_edit_terminal_gone(short revents);

#endif
