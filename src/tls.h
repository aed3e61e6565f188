/* tls.h — the TLS seam: what conn*.c, client.c and outq.c call when a
 * connection carries a TLS session, and nothing else. Everything that knows
 * about OpenSSL lives in tls*.c; a connection without TLS never reaches it
 * (every hook is behind an `if (c->tls)`). Not installed. */
#ifndef SOCKIT_TLS_H
#define SOCKIT_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "sockit.h"

/* One connection's TLS session. */
typedef struct sk__tls sk__tls;

/* The largest plaintext of one TLS record. Reads offered at least this much
 * never leave decrypted bytes behind inside OpenSSL, where epoll cannot see
 * them (see sk__tls_read). */
#define SK__TLS_RECORD 16384u

/* Starts a session on connected descriptor fd in ctx's role (server or
 * client). host (client only) is sent as SNI and is the name the
 * certificate must match with a CA; an IP literal is matched as an address
 * and not sent as SNI. It may be NULL only for a --pin or insecure context.
 * Returns 0 or -ENOMEM / -EIO / -EINVAL (a CA context without a host). */
int sk__tls_new(sk_tls_ctx *ctx, int fd, const char *host, sk__tls **out);
void sk__tls_free(sk__tls *t);

/* One step of the handshake. Returns 1 when it is complete, 0 when it waits
 * for the descriptor (sk__tls_want says which way), or a negative code with
 * a sentence in err: -EPERM when the peer's certificate was refused, -EPROTO
 * for anything else the peer did wrong, -ECONNRESET if it went away. */
int sk__tls_handshake(sk__tls *t, char *err, size_t errlen);

/* After a call that could not finish: SK_READABLE or SK_WRITABLE. */
int sk__tls_want(const sk__tls *t);

/* recv()/send() lookalikes: a count, 0 at the peer's end of stream (its
 * close_notify, or a plain EOF), or -1 with errno set (EAGAIN when the
 * descriptor must become ready first, sk__tls_want says which way; EPIPE or
 * ECONNRESET when the peer is gone; EPROTO for a TLS error). A read is
 * served from as many records as fit while at least SK__TLS_RECORD bytes of
 * the buffer are left, so with a buffer that large nothing decrypted stays
 * behind once it returns less than asked: a short read means the socket is
 * drained, as for recv(). A write takes as many whole records as the kernel
 * accepts; a count below len means the socket buffer is full. After a write
 * returned EAGAIN, the next one must offer the same bytes again (more may
 * follow them): OpenSSL has already encrypted them. */
ssize_t sk__tls_read(sk__tls *t, void *buf, size_t cap);
ssize_t sk__tls_write(sk__tls *t, const void *buf, size_t len);
ssize_t sk__tls_writev(sk__tls *t, const struct iovec *iov, int iovcnt);

/* Decrypted bytes waiting inside OpenSSL (epoll and poll cannot see them). */
bool sk__tls_pending(const sk__tls *t);

/* Sends close_notify once (best effort: a full socket buffer drops it, and
 * the TCP FIN that follows still ends the stream). Reading goes on. */
void sk__tls_close_notify(sk__tls *t);

/* For the log: "TLSv1.3 TLS_AES_256_GCM_SHA384[, resumed][, sni=NAME]" (the
 * name a client asked for, on a server). */
void sk__tls_describe(const sk__tls *t, char *buf, size_t buflen);

/* sk_conn_tls_exporter / sk_sock_tls_exporter for a session (NULL: a plain
 * connection, -ENOPROTOOPT). */
int sk__tls_exporter(const sk__tls *t, const char *label, uint8_t *out, size_t len);

#endif
