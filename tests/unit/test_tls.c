/* test_tls.c — the TLS seam: the pin parser and formatter, self-signed
 * certificates, context errors, and a TLS echo inside one event loop (server
 * and client connections of the library), including a client that refuses
 * the server's certificate and a blocking sk_sock_dial client. */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(tls, .init = unit_alarm);

static const char HEX64[] = "4fc8a1acba1b1a338185f5e64148cc65f74b77657bdddee20bfafcf5821ef45f";

Test(tls, pin_parse_plain_and_colons)
{
    uint8_t a[SK_TLS_PIN_LEN], b[SK_TLS_PIN_LEN], c[SK_TLS_PIN_LEN];
    cr_assert_eq(sk_tls_pin_parse(HEX64, a), 0);
    cr_assert_eq(a[0], 0x4f);
    cr_assert_eq(a[31], 0x5f);
    char text[96];
    sk_tls_pin_format(a, text, sizeof text);
    cr_assert_eq(strlen(text), 95);
    cr_assert_eq(strncmp(text, "4F:C8:A1:", 9), 0);
    cr_assert_eq(sk_tls_pin_parse(text, b), 0);
    cr_assert_eq(memcmp(a, b, sizeof a), 0);
    char line[140];
    snprintf(line, sizeof line, "sha256 Fingerprint=%s", text);
    cr_assert_eq(sk_tls_pin_parse(line, c), 0);
    cr_assert_eq(memcmp(a, c, sizeof a), 0);
}

Test(tls, pin_parse_rejects_and_leaves_out_alone)
{
    uint8_t out[SK_TLS_PIN_LEN];
    memset(out, 0xAA, sizeof out);
    char s[200];
    const char *bad[] = {"",
                         "AB",
                         "AB:CD",
                         "zz"
                         "c8a1acba1b1a338185f5e64148cc65f74b77657bdddee20bfafcf5821ef45f",
                         NULL,
                         NULL,
                         NULL,
                         NULL};
    /* One digit short, one pair too many, a colon out of place. */
    snprintf(s, sizeof s, "%.63s", HEX64);
    bad[4] = strdup(s);
    snprintf(s, sizeof s, "%s00", HEX64);
    bad[5] = strdup(s);
    snprintf(s, sizeof s, "4FC:8A1:%s", HEX64 + 6);
    bad[6] = strdup(s);
    for (int i = 0; i < 7; i++) {
        cr_assert_eq(sk_tls_pin_parse(bad[i], out), -EINVAL, "accepted \"%s\"", bad[i]);
        for (size_t k = 0; k < sizeof out; k++)
            cr_assert_eq(out[k], 0xAA);
    }
    cr_assert_eq(sk_tls_pin_parse(NULL, out), -EINVAL);
    for (int i = 4; i < 7; i++)
        free((void *)bad[i]);
}

/* A fresh directory for certificate files, removed by the caller. */
static void temp_dir(char *dir, size_t len)
{
    snprintf(dir, len, "/tmp/sk-tls-unit-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void rm_dir(const char *dir)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

Test(tls, make_cert_pin_and_refusals)
{
    char dir[64], name[128], path[160], err[300];
    temp_dir(dir, sizeof dir);
    snprintf(name, sizeof name, "%s/srv", dir);
    uint8_t pin[SK_TLS_PIN_LEN], pin2[SK_TLS_PIN_LEN];
    cr_assert_eq(sk_tls_make_cert(name, 30, pin, err, sizeof err), 0, "%s", err);
    snprintf(path, sizeof path, "%s.key", name);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s.crt", name);
    cr_assert_eq(sk_tls_cert_pin(path, pin2, err, sizeof err), 0, "%s", err);
    cr_assert_eq(memcmp(pin, pin2, sizeof pin), 0);
    cr_assert_eq(sk_tls_make_cert(name, 30, NULL, err, sizeof err), -EEXIST);
    cr_assert_eq(sk_tls_make_cert(name, 0, NULL, err, sizeof err), -EINVAL);

    /* A server context from them; a key of another certificate is refused. */
    char key[160], other[128], okey[160];
    snprintf(key, sizeof key, "%s.key", name);
    sk_tls_ctx *ctx = NULL;
    cr_assert_eq(sk_tls_server_new(path, key, &ctx, err, sizeof err), 0, "%s", err);
    sk_tls_ctx_free(ctx);
    snprintf(other, sizeof other, "%s/other", dir);
    cr_assert_eq(sk_tls_make_cert(other, 1, NULL, err, sizeof err), 0);
    snprintf(okey, sizeof okey, "%s.key", other);
    ctx = NULL;
    cr_assert_eq(sk_tls_server_new(path, okey, &ctx, err, sizeof err), -EINVAL);
    cr_assert_null(ctx);
    cr_assert_not_null(strstr(err, "does not belong"), "%s", err);
    cr_assert_eq(sk_tls_server_new(path, "/nonexistent.key", &ctx, err, sizeof err), -EINVAL);
    cr_assert_not_null(strstr(err, "/nonexistent.key"));
    sk_tls_client_opts o = {.ca_file = "/nonexistent.crt"};
    cr_assert_eq(sk_tls_client_new(&o, &ctx, err, sizeof err), -EINVAL);
    cr_assert_not_null(strstr(err, "/nonexistent.crt"));
    rm_dir(dir);
}

/* ------------------------------------------------- a TLS echo in one loop */

typedef struct echo_state {
    sk_loop *loop;
    int server_opens, client_opens, client_closes, client_err;
    char reply[64];
    size_t reply_len;
} echo_state;

static echo_state g;

static void srv_open(sk_conn *c)
{
    (void)c;
    g.server_opens++;
}

static void srv_msg(sk_conn *c, const uint8_t *d, size_t n) { sk_conn_send_msg(c, d, n); }

static void cli_open(sk_conn *c)
{
    g.client_opens++;
    sk_conn_send_msg(c, "ping over tls", 13);
}

static void cli_msg(sk_conn *c, const uint8_t *d, size_t n)
{
    if (n < sizeof g.reply) {
        memcpy(g.reply, d, n);
        g.reply_len = n;
    }
    sk_conn_close(c);
}

static void cli_close(sk_conn *c, int err)
{
    (void)c;
    g.client_closes++;
    g.client_err = err;
    sk_loop_stop(g.loop);
}

/* Runs one client connection against a TLS echo server with client opts o;
 * returns through g. */
static void run_echo(const char *dir, const sk_tls_client_opts *o, const char *host)
{
    char crt[160], key[160], err[300];
    snprintf(crt, sizeof crt, "%s/srv.crt", dir);
    snprintf(key, sizeof key, "%s/srv.key", dir);
    memset(&g, 0, sizeof g);
    sk_tls_ctx *sctx = NULL, *cctx = NULL;
    cr_assert_eq(sk_tls_server_new(crt, key, &sctx, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_tls_client_new(o, &cctx, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_loop_new(&g.loop), 0);
    sk_server_opts so;
    sk_server_opts_init(&so);
    so.conn.framing = SK_FRAMING_FRAME;
    so.conn.tls = sctx;
    so.cbs.on_open = srv_open;
    so.cbs.on_message = srv_msg;
    sk_addr a;
    cr_assert_eq(sk_addr_parse(strcmp(host, "localhost") == 0 ? "tls://127.0.0.1:0" : "tls://*:0",
                               &a, NULL, 0),
                 0);
    sk_server *srv = NULL;
    cr_assert_eq(sk_server_listen(g.loop, &a, &so, &srv, err, sizeof err), 0, "%s", err);
    snprintf(a.host, sizeof a.host, "%s", host);
    a.port = (uint16_t)sk_server_port(srv);
    sk_conn_opts co;
    sk_conn_opts_init(&co);
    co.framing = SK_FRAMING_FRAME;
    co.tls = cctx;
    sk_conn_callbacks cbs = {.on_open = cli_open, .on_message = cli_msg, .on_close = cli_close};
    sk_conn *c = NULL;
    cr_assert_eq(sk_conn_connect(g.loop, &a, &co, &cbs, NULL, 5000, &c), 0);
    unit_watchdog w;
    unit_watchdog_start(&w, g.loop, 10000);
    sk_loop_run(g.loop);
    cr_assert_eq(unit_watchdog_end(&w), 0, "the loop hung");
    sk_server_free(srv);
    sk_loop_free(g.loop);
    sk_tls_ctx_free(sctx);
    sk_tls_ctx_free(cctx);
}

/* How run_echo_via makes the client connection. */
enum via { VIA_CONNECT_FD, VIA_ADOPT };

/* Like run_echo, with the client connection made by sk_conn_connect_fd or
 * sk_conn_adopt and host given as sk_conn_opts.tls_host. Returns what
 * that call returned (the loop runs only when it succeeded). */
static int run_echo_via(const char *dir, const sk_tls_client_opts *o, enum via via,
                        const char *host)
{
    char crt[160], key[160], err[300];
    snprintf(crt, sizeof crt, "%s/srv.crt", dir);
    snprintf(key, sizeof key, "%s/srv.key", dir);
    memset(&g, 0, sizeof g);
    sk_tls_ctx *sctx = NULL, *cctx = NULL;
    cr_assert_eq(sk_tls_server_new(crt, key, &sctx, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_tls_client_new(o, &cctx, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_loop_new(&g.loop), 0);
    sk_server_opts so;
    sk_server_opts_init(&so);
    so.conn.framing = SK_FRAMING_FRAME;
    so.conn.tls = sctx;
    so.cbs.on_open = srv_open;
    so.cbs.on_message = srv_msg;
    sk_addr a;
    cr_assert_eq(sk_addr_parse("tls://127.0.0.1:0", &a, NULL, 0), 0);
    sk_server *srv = NULL;
    cr_assert_eq(sk_server_listen(g.loop, &a, &so, &srv, err, sizeof err), 0, "%s", err);
    sk_conn_opts co;
    sk_conn_opts_init(&co);
    co.framing = SK_FRAMING_FRAME;
    co.tls = cctx;
    co.tls_host = host;
    sk_conn_callbacks cbs = {.on_open = cli_open, .on_message = cli_msg, .on_close = cli_close};
    sk_conn *c = NULL;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)sk_server_port(srv)),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd, rc;
    if (via == VIA_CONNECT_FD) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        rc = sk_conn_connect_fd(g.loop, fd, (struct sockaddr *)&sa, sizeof sa, &co, &cbs, NULL,
                                5000, &c);
    } else {
        a.kind = SK_ADDR_TCP;
        a.port = (uint16_t)sk_server_port(srv);
        sk_sock *sk = NULL;
        /* The kernel completes it: a backlog. */
        cr_assert_eq(sk_sock_dial(&a, NULL, 5000, &sk, err, sizeof err), 0, "%s", err);
        fd = sk_sock_release(sk);
        cr_assert_geq(fd, 0);
        rc = sk_conn_adopt(g.loop, fd, &co, &cbs, NULL, &c);
    }
    if (rc < 0) {
        close(fd); /* on failure the descriptor stays ours */
    } else {
        unit_watchdog w;
        unit_watchdog_start(&w, g.loop, 10000);
        sk_loop_run(g.loop);
        cr_assert_eq(unit_watchdog_end(&w), 0, "the loop hung");
    }
    sk_server_free(srv);
    sk_loop_free(g.loop);
    sk_tls_ctx_free(sctx);
    sk_tls_ctx_free(cctx);
    return rc;
}

/* sk_conn_connect_fd and sk_conn_adopt check the server's name with a CA
 * context: without a name they refuse, a wrong one fails the
 * handshake, the right one works; a pin needs no name. */
Test(tls, connect_fd_and_adopt_check_the_host)
{
    char dir[64], name[128], crt[160], err[300];
    temp_dir(dir, sizeof dir);
    snprintf(name, sizeof name, "%s/srv", dir);
    snprintf(crt, sizeof crt, "%s.crt", name);
    uint8_t pin[SK_TLS_PIN_LEN];
    cr_assert_eq(sk_tls_make_cert(name, 30, pin, err, sizeof err), 0, "%s", err);
    int fds = unit_count_fds();
    sk_tls_client_opts by_ca = {.ca_file = crt}, by_pin = {.pin = pin};
    for (int via = VIA_CONNECT_FD; via <= VIA_ADOPT; via++) {
        cr_assert_eq(run_echo_via(dir, &by_ca, via, NULL), -EINVAL, "via %d", via);
        cr_assert_eq(run_echo_via(dir, &by_ca, via, ""), -EINVAL, "via %d", via);
        cr_assert_eq(g.client_opens + g.server_opens + g.client_closes, 0);

        cr_assert_eq(run_echo_via(dir, &by_ca, via, "wrong.example"), 0, "via %d", via);
        cr_assert_eq(g.client_opens, 0, "via %d", via);
        cr_assert_eq(g.server_opens, 0);
        cr_assert_eq(g.client_err, -EPERM, "via %d: %d", via, g.client_err);
        cr_assert_eq(run_echo_via(dir, &by_ca, via, "127.0.0.2"), 0);
        cr_assert_eq(g.client_err, -EPERM, "via %d: %d", via, g.client_err);

        cr_assert_eq(run_echo_via(dir, &by_ca, via, via == VIA_ADOPT ? "127.0.0.1" : "localhost"),
                     0);
        cr_assert_eq(g.client_err, 0, "via %d: %d", via, g.client_err);
        cr_assert_eq(g.reply_len, 13);
        cr_assert_eq(memcmp(g.reply, "ping over tls", 13), 0);

        cr_assert_eq(run_echo_via(dir, &by_pin, via, NULL), 0);
        cr_assert_eq(g.client_err, 0);
        cr_assert_eq(g.reply_len, 13);
    }
    cr_assert_eq(unit_count_fds(), fds);
    rm_dir(dir);
}

Test(tls, echo_in_one_loop_by_ca_and_by_pin)
{
    char dir[64], name[128], crt[160], err[300];
    temp_dir(dir, sizeof dir);
    snprintf(name, sizeof name, "%s/srv", dir);
    snprintf(crt, sizeof crt, "%s.crt", name);
    uint8_t pin[SK_TLS_PIN_LEN];
    cr_assert_eq(sk_tls_make_cert(name, 30, pin, err, sizeof err), 0, "%s", err);
    int fds = unit_count_fds();

    sk_tls_client_opts by_ca = {.ca_file = crt};
    run_echo(dir, &by_ca, "localhost");
    cr_assert_eq(g.client_opens, 1);
    cr_assert_eq(g.server_opens, 1);
    cr_assert_eq(g.client_err, 0);
    cr_assert_eq(g.reply_len, 13);
    cr_assert_eq(memcmp(g.reply, "ping over tls", 13), 0);

    sk_tls_client_opts by_pin = {.pin = pin};
    run_echo(dir, &by_pin, "127.0.0.1");
    cr_assert_eq(g.reply_len, 13);

    /* A wrong pin: the client's handshake fails (on_close with -EPERM, no
     * on_open) and the server's service never sees the connection. */
    uint8_t wrong[SK_TLS_PIN_LEN];
    memcpy(wrong, pin, sizeof wrong);
    wrong[5] ^= 1;
    sk_tls_client_opts by_wrong = {.pin = wrong};
    run_echo(dir, &by_wrong, "127.0.0.1");
    cr_assert_eq(g.client_opens, 0);
    cr_assert_eq(g.server_opens, 0);
    cr_assert_eq(g.client_closes, 1);
    cr_assert_eq(g.client_err, -EPERM);

    /* A CA that does not name the address dialed (127.0.0.2 is loopback
     * too, but not in the certificate). */
    run_echo(dir, &by_ca, "127.0.0.2");
    cr_assert_eq(g.client_err, -EPERM);
    cr_assert_eq(g.client_opens, 0);

    cr_assert_eq(unit_count_fds(), fds);
    rm_dir(dir);
}

/* --------------------------------------------- the blocking client over TLS */

typedef struct dial_srv {
    sk_loop *loop;
    sk_tls_ctx *ctx;
    int port;
} dial_srv;

static void *dial_srv_main(void *arg)
{
    dial_srv *d = arg;
    sk_loop_run(d->loop);
    return NULL;
}

static void dial_echo(sk_conn *c, const uint8_t *p, size_t n) { sk_conn_send(c, p, n); }

Test(tls, blocking_dial_frames_and_lines)
{
    char dir[64], name[128], crt[160], key[160], err[300];
    temp_dir(dir, sizeof dir);
    snprintf(name, sizeof name, "%s/srv", dir);
    snprintf(crt, sizeof crt, "%s.crt", name);
    snprintf(key, sizeof key, "%s.key", name);
    cr_assert_eq(sk_tls_make_cert(name, 30, NULL, err, sizeof err), 0, "%s", err);
    dial_srv d = {0};
    cr_assert_eq(sk_tls_server_new(crt, key, &d.ctx, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_loop_new(&d.loop), 0);
    sk_server_opts so;
    sk_server_opts_init(&so);
    so.conn.tls = d.ctx;
    so.cbs.on_message = dial_echo;
    sk_addr a;
    cr_assert_eq(sk_addr_parse("tls://127.0.0.1:0", &a, NULL, 0), 0);
    sk_server *srv = NULL;
    cr_assert_eq(sk_server_listen(d.loop, &a, &so, &srv, err, sizeof err), 0, "%s", err);
    a.port = (uint16_t)sk_server_port(srv);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, dial_srv_main, &d), 0);

    sk_tls_client_opts o = {.ca_file = crt};
    sk_tls_ctx *cctx = NULL;
    cr_assert_eq(sk_tls_client_new(&o, &cctx, err, sizeof err), 0, "%s", err);
    sk_sock *fd = NULL;
    cr_assert_eq(sk_sock_dial(&a, NULL, 1000, &fd, err, sizeof err), -EPROTONOSUPPORT);
    cr_assert_null(fd);
    cr_assert_eq(sk_sock_dial(&a, cctx, 5000, &fd, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_sock_is_tls(fd), 1);
    char how[100];
    cr_assert_eq(sk_sock_describe(fd, how, sizeof how), 0);
    cr_assert_not_null(strstr(how, "TLSv1.3"), "%s", how);
    cr_assert_eq(sk_sock_send_frame(fd, "hello", 5, 5000), 0);
    char buf[64];
    cr_assert_eq(sk_sock_recv_frame(fd, buf, sizeof buf, 5000), 5);
    cr_assert_eq(memcmp(buf, "hello", 5), 0);
    cr_assert_eq(sk_sock_send_all(fd, "one\ntwo\n", 8, 5000), 0);
    sk_line_reader r;
    char lb[64];
    const char *line;
    sk_line_reader_init(&r, fd, lb, sizeof lb);
    cr_assert_eq(sk_sock_recv_line(&r, &line, 5000), 3);
    cr_assert_str_eq(line, "one");
    cr_assert_eq(sk_sock_recv_line(&r, &line, 5000), 3);
    cr_assert_str_eq(line, "two");
    /* Half-close: close_notify, and the reply owed still arrives. */
    cr_assert_eq(sk_sock_send_all(fd, "last", 4, 5000), 0);
    cr_assert_eq(sk_sock_shutdown(fd), 0);
    cr_assert_eq(sk_sock_recv_exact(fd, buf, 4, 5000), 0);
    cr_assert_eq(memcmp(buf, "last", 4), 0);
    cr_assert_eq(sk_sock_recv_wait(fd, buf, sizeof buf, 5000), 0);
    /* Its session cannot leave it. */
    cr_assert_eq(sk_sock_release(fd), -EINVAL);
    cr_assert_eq(sk_sock_close(fd), 0);

    /* A second connection resumes the session the first one was given. */
    cr_assert_eq(sk_sock_dial(&a, cctx, 5000, &fd, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_sock_send_all(fd, "x", 1, 5000), 0);
    cr_assert_eq(sk_sock_recv_exact(fd, buf, 1, 5000), 0);
    cr_assert_eq(sk_sock_describe(fd, how, sizeof how), 0);
    cr_assert_not_null(strstr(how, "resumed"), "%s", how);
    sk_sock_close(fd);

    sk_loop_stop(d.loop);
    pthread_join(th, NULL);
    sk_server_free(srv);
    sk_loop_free(d.loop);
    sk_tls_ctx_free(d.ctx);
    sk_tls_ctx_free(cctx);
    rm_dir(dir);
}

/* A plain sk_sock and a TLS one side by side: each knows its own kind (the
 * session lives in the sk_sock, not in a table keyed by descriptor number),
 * a plain one gets plain bytes, and only a plain one can be released. */
Test(tls, plain_and_tls_socks_keep_their_kind)
{
    char dir[64], name[128], crt[160], key[160], err[300];
    temp_dir(dir, sizeof dir);
    snprintf(name, sizeof name, "%s/srv", dir);
    snprintf(crt, sizeof crt, "%s.crt", name);
    snprintf(key, sizeof key, "%s.key", name);
    cr_assert_eq(sk_tls_make_cert(name, 30, NULL, err, sizeof err), 0, "%s", err);
    dial_srv d = {0};
    cr_assert_eq(sk_tls_server_new(crt, key, &d.ctx, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_loop_new(&d.loop), 0);
    sk_server_opts so, po;
    sk_server_opts_init(&so);
    so.conn.tls = d.ctx;
    so.cbs.on_message = dial_echo;
    sk_server_opts_init(&po);
    po.cbs.on_message = dial_echo;
    sk_addr ta, pa;
    cr_assert_eq(sk_addr_parse("tls://127.0.0.1:0", &ta, NULL, 0), 0);
    cr_assert_eq(sk_addr_parse("127.0.0.1:0", &pa, NULL, 0), 0);
    sk_server *tsrv = NULL, *psrv = NULL;
    cr_assert_eq(sk_server_listen(d.loop, &ta, &so, &tsrv, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_server_listen(d.loop, &pa, &po, &psrv, err, sizeof err), 0, "%s", err);
    ta.port = (uint16_t)sk_server_port(tsrv);
    pa.port = (uint16_t)sk_server_port(psrv);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, dial_srv_main, &d), 0);

    sk_tls_client_opts o = {.ca_file = crt};
    sk_tls_ctx *cctx = NULL;
    cr_assert_eq(sk_tls_client_new(&o, &cctx, err, sizeof err), 0, "%s", err);
    sk_sock *t = NULL, *p = NULL;
    cr_assert_eq(sk_sock_dial(&ta, cctx, 5000, &t, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_sock_dial(&pa, NULL, 5000, &p, err, sizeof err), 0, "%s", err);
    cr_assert_eq(sk_sock_is_tls(t), 1);
    cr_assert_eq(sk_sock_is_tls(p), 0);
    char how[100];
    cr_assert_eq(sk_sock_describe(p, how, sizeof how), -EINVAL);
    cr_assert_eq(sk_sock_send_all(p, "hello\n", 6, 5000), 0);
    cr_assert_eq(sk_sock_send_all(t, "tls\n", 4, 5000), 0);
    char buf[16];
    cr_assert_eq(sk_sock_recv_exact(p, buf, 6, 5000), 0);
    cr_assert_eq(memcmp(buf, "hello\n", 6), 0);
    cr_assert_eq(sk_sock_recv_exact(t, buf, 4, 5000), 0);
    cr_assert_eq(memcmp(buf, "tls\n", 4), 0);
    cr_assert_eq(sk_sock_release(t), -EINVAL);
    cr_assert_eq(sk_sock_close(t), 0);
    int fd = sk_sock_release(p);
    cr_assert_geq(fd, 0);
    cr_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    cr_assert_eq(close(fd), 0);
    cr_assert_eq(sk_sock_close(NULL), 0);

    sk_loop_stop(d.loop);
    pthread_join(th, NULL);
    sk_server_free(tsrv);
    sk_server_free(psrv);
    sk_loop_free(d.loop);
    sk_tls_ctx_free(d.ctx);
    sk_tls_ctx_free(cctx);
    rm_dir(dir);
}
