/* test_services.c — the services layer's shared parts: the registry and
 * the option tables `sockit serve` is built from (services/registry.c,
 * the services' NAME_options.c), and the one client-side handshake of the typed
 * protocols (services/proto/handshake.c) against scripted servers. */
#include <criterion/criterion.h>

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "unit.h"

#include "../../services/proto/handshake.h"
#include "../../services/services.h"

TestSuite(services, .init = unit_alarm);

Test(services, names_come_from_the_registry)
{
    cr_assert_str_eq(svc_names(), "echo, upper, greet, chat, exec, files, relay");
    size_t n = 0;
    while (svc_at(n) != NULL) {
        cr_assert_eq(svc_find(svc_at(n)->name), svc_at(n));
        n++;
    }
    cr_assert_eq(n, 7);
    cr_assert_null(svc_find("redis"));
}

/* Each table: options named once, with a kind that has storage, help
 * lines that look like --help's, and the hooks `sockit serve` needs. */
Test(services, option_tables_are_well_formed)
{
    for (size_t i = 0; svc_at(i) != NULL; i++) {
        const svc_def *d = svc_at(i);
        if (d->opts == NULL)
            continue;
        cr_assert_not_null(d->opts_store, "%s", d->name);
        cr_assert_not_null(d->opts_init, "%s", d->name);
        cr_assert_not_null(d->opts_title, "%s", d->name);
        for (const svc_opt *o = d->opts; o->name != NULL; o++) {
            cr_assert_not_null(o->help, "%s --%s", d->name, o->name);
            if (o->help[0] != '\0')
                cr_assert(strncmp(o->help, "  --", 4) == 0, "%s --%s", d->name, o->name);
            for (const svc_opt *p = o + 1; p->name != NULL; p++)
                cr_assert(strcmp(o->name, p->name) != 0, "%s --%s twice", d->name, o->name);
        }
    }
}

/* ------------------------------------------------ the client handshake */

typedef struct pipe_io {
    sk_sock *sk;
} pipe_io;

static int io_send(void *ud, const uint8_t *msg, size_t len, const char *stage)
{
    (void)stage;
    return sk_sock_send_frame(((pipe_io *)ud)->sk, msg, len, 1000) < 0 ? -1 : 0;
}

static ssize_t io_recv(void *ud, uint8_t *buf, size_t cap, const char *stage)
{
    (void)stage;
    ssize_t n = sk_sock_recv_frame(((pipe_io *)ud)->sk, buf, cap, 1000);
    return n > 0 ? n : -1;
}

/* Runs the client's handshake against a server whose answer, hello, is
 * already waiting in the socket. */
static int against(const uint8_t *hello, size_t hlen, const char *service, bool token,
                   bool allow_open, char *err, size_t errlen)
{
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    sk_sock *client, *server;
    cr_assert_eq(sk_sock_adopt(sv[0], &client), 0);
    cr_assert_eq(sk_sock_adopt(sv[1], &server), 0);
    cr_assert_eq(sk_sock_send_frame(server, hello, hlen, 1000), 0);
    pipe_io p = {client};
    proto_hs_io io = {&p, io_send, io_recv};
    static const uint8_t secret[32] = {1};
    int rc = proto_hs_client(&io, client, "test", service, token ? secret : NULL,
                             token ? sizeof secret : 0, allow_open, err, errlen);
    sk_sock_close(client);
    sk_sock_close(server);
    return rc;
}

Test(services, client_accepts_an_open_server_only_without_a_token)
{
    uint8_t hello[PROTO_HELLO_MAX];
    size_t n = proto_hello_open(hello, "files");
    char err[400];
    cr_assert_eq(against(hello, n, "files", false, true, err, sizeof err), 0);
    /* With a token, a server that cannot prove it knows it is refused. */
    cr_assert_eq(against(hello, n, "files", true, true, err, sizeof err), -1);
    cr_assert(strstr(err, "test: the server does not authenticate") == err, "%s", err);
    /* exec knows no open servers. */
    cr_assert_eq(against(hello, n, "files", true, false, err, sizeof err), -1);
    cr_assert(strncmp(err, "test: ", 6) == 0 && err[6] != '\0', "%s", err);
}

Test(services, client_refuses_the_wrong_service_and_asks_for_a_token)
{
    uint8_t hello[PROTO_HELLO_MAX], nonce[SK_AUTH_NONCE] = {7};
    size_t n = proto_hello(hello, true, "exec", nonce);
    char err[400];
    cr_assert_eq(against(hello, n, "files", true, true, err, sizeof err), -1);
    cr_assert_str_eq(err, "test: wrong service: this is a sockit exec server, not files");
    n = proto_hello(hello, true, "files", nonce);
    cr_assert_eq(against(hello, n, "files", false, true, err, sizeof err), -1);
    cr_assert_str_eq(err, "test: the server requires authentication: give --token-file FILE "
                          "(the server's token)");
}

/* The hello's version (docs/PROTOCOL.md 7.2): a side that speaks up to 2
 * takes a client's 1, 2 or higher and agrees on the lower; from a server
 * it takes 1 to what it offered; a version-1 side takes exactly 1, as
 * sockit 0.1 did, so it refuses a 2 with ERROR 02 (PE_HELLO). */
Test(services, hello_versions_agree_on_the_lower)
{
    uint8_t hello[PROTO_HELLO_MAX], nonce[SK_AUTH_NONCE] = {1};
    char service[SK_AUTH_SERVICE_MAX + 1], why[PROTO_ERROR_TEXT_MAX];
    static const struct {
        uint8_t sent, max;
        bool from_server;
        int code;
        uint8_t agreed;
    } cases[] = {
        {1, 2, false, 0, 1},        {2, 2, false, 0, 2}, {3, 2, false, 0, 2},
        {0, 2, false, PE_HELLO, 0}, {1, 1, false, 0, 1}, {2, 1, false, PE_HELLO, 0},
        {1, 2, true, 0, 1},         {2, 2, true, 0, 2},  {3, 2, true, PE_HELLO, 0},
        {2, 1, true, PE_HELLO, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = proto_hello_v(hello, cases[i].from_server, "exec", nonce, cases[i].sent);
        cr_assert_eq(hello[5], cases[i].sent);
        uint8_t agreed = 0, got_nonce[SK_AUTH_NONCE];
        why[0] = '\0';
        int code = proto_check_hello_v(hello, n, cases[i].from_server, cases[i].max, service,
                                       got_nonce, &agreed, why, sizeof why);
        cr_assert_eq(code, cases[i].code, "case %zu: %d (%s)", i, code, why);
        if (code == 0)
            cr_assert_eq(agreed, cases[i].agreed, "case %zu: agreed %u", i, agreed);
        else
            cr_assert(strstr(why, "version") != NULL, "case %zu: %s", i, why);
    }
}
