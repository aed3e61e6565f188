/* test_tls_exporter.c — channel binding (sk_conn_tls_exporter on a server's
 * connection, sk_sock_tls_exporter on a blocking client's sk_sock): both
 * ends of one TLS connection export the same bytes, another connection (a
 * resumed one included) other bytes, and a plain connection none. */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(tls_exporter, .init = unit_alarm);

typedef struct exp_srv {
    sk_loop *loop;
    sk_tls_ctx *ctx;
} exp_srv;

static void *exp_srv_main(void *arg)
{
    exp_srv *d = arg;
    sk_loop_run(d->loop);
    return NULL;
}

/* Answers any frame with the server side's exporter value, or with the
 * error code as text when there is none. */
static void exp_reply(sk_conn *c, const uint8_t *p, size_t n)
{
    (void)p;
    (void)n;
    uint8_t out[SK_AUTH_BINDING];
    int rc = sk_conn_tls_exporter(c, SK_TLS_EXPORTER_LABEL, out, sizeof out);
    if (rc == 0) {
        sk_conn_send_msg(c, out, sizeof out);
    } else {
        char text[16];
        int len = snprintf(text, sizeof text, "%d", rc);
        sk_conn_send_msg(c, text, (size_t)len);
    }
}

static sk_server *listen_on(exp_srv *d, const char *addr_text, sk_addr *a)
{
    char err[300];
    sk_server_opts so;
    sk_server_opts_init(&so);
    so.conn.framing = SK_FRAMING_FRAME;
    so.conn.tls = d->ctx;
    so.cbs.on_message = exp_reply;
    cr_assert_eq(sk_addr_parse(addr_text, a, NULL, 0), 0);
    sk_server *srv = NULL;
    cr_assert_eq(sk_server_listen(d->loop, a, &so, &srv, err, sizeof err), 0, "%s", err);
    a->port = (uint16_t)sk_server_port(srv);
    return srv;
}

/* One connection: asks the server for its value and checks ours equals it. */
static void one_binding(const sk_addr *a, sk_tls_ctx *cctx, uint8_t mine[SK_AUTH_BINDING])
{
    char err[300];
    sk_sock *fd = NULL;
    cr_assert_eq(sk_sock_dial(a, cctx, 5000, &fd, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_sock_tls_exporter(fd, SK_TLS_EXPORTER_LABEL, mine, SK_AUTH_BINDING), 0);
    cr_assert_eq(sk_sock_send_frame(fd, "?", 1, 5000), 0);
    uint8_t theirs[64];
    cr_assert_eq(sk_sock_recv_frame(fd, theirs, sizeof theirs, 5000), SK_AUTH_BINDING);
    cr_assert(memcmp(mine, theirs, SK_AUTH_BINDING) == 0, "the two ends differ");
    /* Another label is another value; bad arguments are refused. */
    uint8_t other[SK_AUTH_BINDING];
    cr_assert_eq(sk_sock_tls_exporter(fd, "EXPORTER-other", other, sizeof other), 0);
    cr_assert(memcmp(mine, other, sizeof other) != 0);
    cr_assert_eq(sk_sock_tls_exporter(fd, SK_TLS_EXPORTER_LABEL, other, 0), -EINVAL);
    sk_sock_close(fd);
}

Test(tls_exporter, both_ends_agree_and_connections_differ)
{
    char dir[64], name[128], crt[160], key[160], err[300];
    snprintf(dir, sizeof dir, "/tmp/sk-exporter-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(name, sizeof name, "%s/srv", dir);
    snprintf(crt, sizeof crt, "%s.crt", name);
    snprintf(key, sizeof key, "%s.key", name);
    cr_assert_eq(sk_tls_make_cert(name, 30, NULL, err, sizeof err), 0, "%s", err);
    exp_srv d = {0};
    cr_assert_eq(sk_tls_server_new(crt, key, &d.ctx, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_loop_new(&d.loop), 0);
    sk_addr tls_a, plain_a;
    sk_server *tls_srv = listen_on(&d, "tls://127.0.0.1:0", &tls_a);
    exp_srv plain = {.loop = d.loop, .ctx = NULL};
    sk_server *plain_srv = listen_on(&plain, "127.0.0.1:0", &plain_a);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, exp_srv_main, &d), 0);

    sk_tls_client_opts o = {.ca_file = crt};
    sk_tls_ctx *cctx = NULL;
    cr_assert_eq(sk_tls_client_new(&o, &cctx, err, sizeof err), 0, "%s", err);
    uint8_t first[SK_AUTH_BINDING], second[SK_AUTH_BINDING];
    one_binding(&tls_a, cctx, first);
    one_binding(&tls_a, cctx, second); /* resumed: still its own value */
    cr_assert(memcmp(first, second, sizeof first) != 0, "two connections share a binding");

    /* Plain TCP: neither end has one. */
    sk_sock *fd = NULL;
    cr_assert_eq(sk_sock_dial(&plain_a, NULL, 5000, &fd, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_sock_tls_exporter(fd, SK_TLS_EXPORTER_LABEL, first, sizeof first),
                 -ENOPROTOOPT);
    cr_assert_eq(sk_sock_send_frame(fd, "?", 1, 5000), 0);
    char text[64] = {0};
    ssize_t n = sk_sock_recv_frame(fd, text, sizeof text - 1, 5000);
    cr_assert_gt(n, 0);
    cr_assert_eq(atoi(text), -ENOPROTOOPT, "%s", text);
    sk_sock_close(fd);

    sk_loop_stop(d.loop);
    pthread_join(th, NULL);
    sk_server_free(tls_srv);
    sk_server_free(plain_srv);
    sk_loop_free(d.loop);
    sk_tls_ctx_free(d.ctx);
    sk_tls_ctx_free(cctx);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}
