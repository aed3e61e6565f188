/* chat_options.c — the chat service's command-line options (services.h's
 * svc_opt table): `sockit serve` parses them into chat_cli_opts. */
#include <stddef.h>

#include "chat.h"

chat_opts chat_cli_opts;

void chat_opts_init(void *store)
{
    chat_opts *o = store;
    o->max_queue = 1024u * 1024u;
    /* Beyond what people type or paste, well under what a script floods;
     * its one-second bucket still lets a 20-line paste through. */
    o->max_rate = 20;
    o->history = CHAT_DEFAULT_HISTORY;
    o->redis = NULL;
    o->redis_password_file = NULL;
    /* Renewed every third of it: a server that misses two renewals (a
     * 3 s stall) still keeps its nicks. */
    o->redis_nick_ttl_ms = 10000;
}

const svc_opt chat_options[] = {
    {"max-line", SVC_OPT_NOTE, 0, 0, 0,
     "  --max-line BYTES          for chat: longest line relayed (default 4K); a longer\n"
     "                            one is refused with a notice, the member stays\n"},
    {"max-queue", SVC_OPT_BYTES, offsetof(chat_opts, max_queue), 1, 0,
     "  --max-queue BYTES         drop a member with more output waiting (default 1M);\n"
     "                            senders pause while a queue is over a quarter of it\n"},
    {"max-rate", SVC_OPT_UINT, offsetof(chat_opts, max_rate), 0, 1000000,
     "  --max-rate N              lines per second per member (default 20; 0: unlimited);\n"
     "                            more are refused with a notice, the sender paused\n"},
    {"history", SVC_OPT_UINT, offsetof(chat_opts, history), 0, 10000,
     "  --history N               last lines of a room sent to who joins it, marked\n"
     "                            \"[history] \" (default 50; 0: none)\n"},
    {"redis", SVC_OPT_TEXT, offsetof(chat_opts, redis), 0, 0,
     "  --redis URL               share rooms with other servers through Redis:\n"
     "                            redis://[[USER]:PASSWORD@]HOST:PORT[/DB] or unix:PATH\n"},
    {"redis-password-file", SVC_OPT_TEXT, offsetof(chat_opts, redis_password_file), 0, 0,
     "  --redis-password-file FILE\n"
     "                            Redis's password (requirepass, or the URL's USER's)\n"
     "                            from FILE (mode 600); ps shows a URL's, not this\n"},
    {"redis-nick-ttl", SVC_OPT_SECONDS, offsetof(chat_opts, redis_nick_ttl_ms), 1, 0,
     "  --redis-nick-ttl SEC      a crashed server's nicks are free after this\n"
     "                            (default 10; renewed every third of it)\n"},
    {NULL, SVC_OPT_NOTE, 0, 0, 0, NULL},
};
