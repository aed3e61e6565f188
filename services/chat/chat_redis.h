/* chat_redis.h — the Redis link of a chat server (chat_redis.c), for
 * chat_cluster.c: commands on one connection, the channel on another. */
#ifndef SOCKIT_CHAT_REDIS_H
#define SOCKIT_CHAT_REDIS_H

#include <hiredis/async.h>

#include "chat.h"

/* Starts connecting (retrying with backoff on its own); err is filled for
 * what cannot work at all (the URL, a name that does not resolve, an
 * unreadable password file). password_file: NULL, or Redis's password
 * (--redis-password-file; the URL then holds none). */
int chat_redis_start(chat_room *room, const char *url, const char *password_file,
                     const chat_redis_events *ev, chat_redis **out, char *err, size_t errlen);
/* Closes both connections; loop_alive false once the loop is freed. */
void chat_redis_stop(chat_redis *r, bool loop_alive);
/* Too many commands in flight to take another line. */
bool chat_redis_busy(const chat_redis *r);
/* Sends a command (hiredis format) on the command connection; fn gets the
 * reply, or NULL if the link went down first. -1: not sent (fn not called). */
int chat_redis_command(chat_redis *r, redisCallbackFn *fn, void *priv, const char *fmt, ...);
int chat_redis_argv(chat_redis *r, redisCallbackFn *fn, void *priv, int argc, const char **argv,
                    const size_t *lens);

#endif
