/* test_auth.c — sk_random, sk_token_load and sk_secret_load (permissions,
 * symlinks, length, line endings, strength), sk_auth_proof against vectors computed independently
 * (Python's hmac module), and sk_auth_equal. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sockit.h"
#include "unit.h"

TestSuite(auth, .init = unit_alarm);

/* A private scratch directory per test, removed with its files. */
static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/skauth-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

/* Writes a file under dir with the given bytes and mode; returns its path
 * (static storage, valid until the next call). */
static const char *write_file(const char *name, const void *data, size_t len, mode_t mode)
{
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    cr_assert(fd >= 0, "open %s: %s", path, strerror(errno));
    cr_assert_eq(write(fd, data, len), (ssize_t)len);
    cr_assert_eq(fchmod(fd, mode), 0);
    close(fd);
    return path;
}

Test(auth, random_fills_and_differs)
{
    uint8_t a[64], b[64], zero[64] = {0};
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    cr_assert_eq(sk_random(a, sizeof a), 0);
    cr_assert_eq(sk_random(b, sizeof b), 0);
    cr_assert(memcmp(a, zero, sizeof a) != 0, "64 random bytes all zero");
    cr_assert(memcmp(a, b, sizeof a) != 0, "two draws were equal");
    cr_assert_eq(sk_random(a, 0), 0);
    /* A large request (more than one getrandom call may return). */
    size_t big = 40u * 1024u * 1024u;
    uint8_t *p = calloc(1, big);
    cr_assert_not_null(p);
    cr_assert_eq(sk_random(p, big), 0);
    cr_assert(memcmp(p + big - 64, zero, 64) != 0, "the tail of a big draw was not filled");
    free(p);
}

Test(auth, token_load_accepts_private_file_and_strips_one_newline)
{
    make_dir();
    uint8_t out[SK_TOKEN_MAX];
    size_t len = 0;
    char err[256] = "x";
    const char *p = write_file("t1", "0123456789abcdefghijklmnopqrstuv\n", 33, 0600);
    cr_assert_eq(sk_token_load(p, out, sizeof out, &len, err, sizeof err), 0, "%s", err);
    cr_assert_eq(len, 32);
    cr_assert(memcmp(out, "0123456789abcdefghijklmnopqrstuv", 32) == 0);
    cr_assert_str_empty(err);
    /* "\r\n" goes too, but only one line ending. */
    p = write_file("t2", "0123456789abcdefghijklmnopqrstuv\r\n", 34, 0400);
    cr_assert_eq(sk_token_load(p, out, sizeof out, &len, err, sizeof err), 0, "%s", err);
    cr_assert_eq(len, 32);
    p = write_file("t3", "0123456789abcdefghijklmnopqrstuv\n\n", 34, 0600);
    cr_assert_eq(sk_token_load(p, out, sizeof out, &len, err, sizeof err), 0, "%s", err);
    cr_assert_eq(len, 33);
    cr_assert_eq(out[32], '\n');
    /* Binary tokens, NUL bytes included, are taken as they are. */
    uint8_t bin[40];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (uint8_t)(i * 37);
    p = write_file("t4", bin, sizeof bin, 0600);
    cr_assert_eq(sk_token_load(p, out, sizeof out, &len, err, sizeof err), 0, "%s", err);
    cr_assert_eq(len, sizeof bin);
    cr_assert(memcmp(out, bin, sizeof bin) == 0);
    remove_dir();
}

Test(auth, secret_load_takes_a_weak_password_under_the_same_file_rules)
{
    make_dir();
    uint8_t out[64];
    size_t len = 0;
    char err[256] = "x";
    /* A password another program chose: short and plain is its business. */
    const char *p = write_file("pw", "hunter2\n", 8, 0600);
    cr_assert_eq(sk_secret_load(p, "password file", out, sizeof out, &len, err, sizeof err), 0,
                 "%s", err);
    cr_assert_eq(len, 7);
    cr_assert(memcmp(out, "hunter2", 7) == 0);
    cr_assert_str_empty(err);
    /* ... which a token is not. */
    cr_assert_eq(sk_token_load(p, out, sizeof out, &len, err, sizeof err), -EINVAL);
    /* The file rules hold, named as the caller says. */
    p = write_file("pw2", "hunter2\n", 8, 0640);
    memset(out, 0xAA, sizeof out);
    len = 99;
    cr_assert_eq(sk_secret_load(p, "password file", out, sizeof out, &len, err, sizeof err),
                 -EPERM);
    cr_assert(strstr(err, "password file") != NULL && strstr(err, "chmod 600") != NULL, "%s", err);
    cr_assert_eq(len, 99);
    cr_assert_eq(out[0], 0xAA);
    char link[160];
    snprintf(link, sizeof link, "%s/ln", dir);
    cr_assert_eq(symlink(p, link), 0);
    cr_assert_eq(sk_secret_load(link, "password file", out, sizeof out, &len, err, sizeof err),
                 -EPERM);
    /* Longer than the caller's room: refused, not cut. */
    p = write_file("pw3", "0123456789", 10, 0600);
    cr_assert_eq(sk_secret_load(p, "password file", out, 9, &len, err, sizeof err), -EFBIG);
    remove_dir();
}

Test(auth, token_load_refuses_group_or_other_access)
{
    make_dir();
    static const mode_t bad[] = {0640, 0604, 0620, 0602, 0644, 0666, 0660};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *p = write_file("t", "0123456789abcdefghijklmnopqrstuvXYZ", 35, bad[i]);
        uint8_t out[SK_TOKEN_MAX];
        memset(out, 0xAA, sizeof out);
        size_t len = 12345;
        char err[256] = "";
        cr_assert_eq(sk_token_load(p, out, sizeof out, &len, err, sizeof err), -EPERM,
                     "mode %o accepted", bad[i]);
        cr_assert(strstr(err, "chmod 600") != NULL, "err does not say how to fix: %s", err);
        cr_assert_eq(len, 12345, "len changed on failure");
        cr_assert_eq(out[0], 0xAA, "out changed on failure");
    }
    /* Execute bits say nothing about secrecy. */
    const char *p = write_file("x", "0123456789abcdefghijklmnopqrstuvXYZ", 35, 0711);
    uint8_t out[SK_TOKEN_MAX];
    size_t len;
    cr_assert_eq(sk_token_load(p, out, sizeof out, &len, NULL, 0), 0);
    remove_dir();
}

Test(auth, token_load_refuses_short_long_links_and_non_files)
{
    make_dir();
    uint8_t out[64];
    size_t len;
    char err[256];
    /* 31 bytes (the newline does not count). */
    const char *p = write_file("short", "0123456789abcdefghijklmnopqrstu\n", 32, 0600);
    cr_assert_eq(sk_token_load(p, out, sizeof out, &len, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "too short") != NULL, "%s", err);
    cr_assert(strstr(err, "run: sockit token FILE") != NULL, "%s", err);
    /* Longer than the caller's buffer. */
    char big[65];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (char)('!' + (i * 7) % 90);
    p = write_file("long", big, sizeof big, 0600);
    cr_assert_eq(sk_token_load(p, out, sizeof out, &len, err, sizeof err), -EFBIG);
    /* Exactly the buffer, plus a newline: fits. */
    p = write_file("fits", big, 64, 0600);
    cr_assert_eq(sk_token_load(p, out, sizeof out, &len, err, sizeof err), 0, "%s", err);
    cr_assert_eq(len, 64);
    /* A symbolic link to a perfectly good token is refused. */
    write_file("good", "0123456789abcdefgh", 18, 0600);
    char good[128], link[128];
    snprintf(good, sizeof good, "%s/good", dir);
    snprintf(link, sizeof link, "%s/link", dir);
    cr_assert_eq(symlink(good, link), 0);
    cr_assert_eq(sk_token_load(link, out, sizeof out, &len, err, sizeof err), -EPERM);
    cr_assert(strstr(err, "symbolic link") != NULL, "%s", err);
    /* A directory, a FIFO (opening it must not hang), a missing file. */
    cr_assert_eq(sk_token_load(dir, out, sizeof out, &len, err, sizeof err), -EPERM);
    char fifo[128];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    cr_assert_eq(sk_token_load(fifo, out, sizeof out, &len, err, sizeof err), -EPERM);
    char missing[128];
    snprintf(missing, sizeof missing, "%s/missing", dir);
    cr_assert_eq(sk_token_load(missing, out, sizeof out, &len, err, sizeof err), -ENOENT);
    cr_assert(strstr(err, missing) != NULL, "err does not name the file: %s", err);
    remove_dir();
}

static const uint8_t vec_token[] = "0123456789abcdef";

static void vec_nonces(uint8_t ns[SK_AUTH_NONCE], uint8_t nc[SK_AUTH_NONCE])
{
    for (int i = 0; i < SK_AUTH_NONCE; i++) {
        ns[i] = (uint8_t)i;
        nc[i] = (uint8_t)(32 + i);
    }
}

/* Expected values from Python:
 *   hmac.new(b"0123456789abcdef", b"sockit-auth-v1\0" + role + b"\0exec\0"
 *            + bytes(range(32)) + bytes(range(32, 64)), hashlib.sha256) */
Test(auth, proof_matches_independent_hmac)
{
    static const uint8_t client[SK_AUTH_PROOF] = {0x76, 0x5c, 0xf9, 0x9b, 0x52, 0x40, 0xa3, 0x46,
                                                  0x72, 0x3e, 0x6e, 0x12, 0x7a, 0xb5, 0xf4, 0x55,
                                                  0xaa, 0xd1, 0xd5, 0xa0, 0x50, 0x73, 0x1e, 0xa6,
                                                  0x72, 0xf7, 0xff, 0x45, 0xbc, 0x3b, 0x10, 0x57};
    static const uint8_t server[SK_AUTH_PROOF] = {0xc0, 0x42, 0xa2, 0xd6, 0x6e, 0x17, 0x3d, 0x92,
                                                  0xda, 0x69, 0xe3, 0xa1, 0x88, 0x92, 0x52, 0x97,
                                                  0x6d, 0x0a, 0x4c, 0x6b, 0x36, 0xc0, 0xf2, 0x45,
                                                  0xb2, 0xe9, 0xeb, 0x94, 0xbf, 0xb8, 0xb1, 0xc5};
    uint8_t ns[SK_AUTH_NONCE], nc[SK_AUTH_NONCE], out[SK_AUTH_PROOF];
    vec_nonces(ns, nc);
    cr_assert_eq(sk_auth_proof(vec_token, 16, "client", "exec", ns, nc, out), 0);
    cr_assert(memcmp(out, client, sizeof out) == 0, "client proof differs from HMAC-SHA256");
    cr_assert_eq(sk_auth_proof(vec_token, 16, "server", "exec", ns, nc, out), 0);
    cr_assert(memcmp(out, server, sizeof out) == 0, "server proof differs from HMAC-SHA256");
}

/* Expected values from Python, the binding (here bytes(range(64, 96)))
 * appended to the message of proof_matches_independent_hmac:
 *   hmac.new(b"0123456789abcdef", b"sockit-auth-v1\0" + role + b"\0exec\0"
 *            + bytes(range(32)) + bytes(range(32, 64)) + bytes(range(64, 96)),
 *            hashlib.sha256) */
Test(auth, bound_proof_matches_independent_hmac)
{
    static const uint8_t client[SK_AUTH_PROOF] = {0xa5, 0xc1, 0xcd, 0x08, 0xba, 0x64, 0xd7, 0x61,
                                                  0x09, 0x3f, 0x99, 0x0b, 0xc7, 0x53, 0x6b, 0xbb,
                                                  0x0e, 0x15, 0xae, 0xf1, 0xe5, 0x8b, 0x23, 0xb2,
                                                  0x4c, 0xe5, 0xc6, 0x8e, 0x1c, 0x83, 0x63, 0x4f};
    static const uint8_t server[SK_AUTH_PROOF] = {0xf3, 0xaa, 0x46, 0xc8, 0x62, 0x86, 0x79, 0x29,
                                                  0xc8, 0x72, 0x6f, 0xb0, 0x04, 0x7a, 0xb1, 0x3b,
                                                  0x65, 0xbc, 0xed, 0x1d, 0x88, 0xb1, 0x1d, 0x7e,
                                                  0xa4, 0xca, 0x40, 0x4d, 0x98, 0xb7, 0x2a, 0xa4};
    uint8_t ns[SK_AUTH_NONCE], nc[SK_AUTH_NONCE], cb[SK_AUTH_BINDING], out[SK_AUTH_PROOF];
    uint8_t plain[SK_AUTH_PROOF];
    vec_nonces(ns, nc);
    for (int i = 0; i < SK_AUTH_BINDING; i++)
        cb[i] = (uint8_t)(64 + i);
    cr_assert_eq(sk_auth_proof_bound(vec_token, 16, "client", "exec", ns, nc, cb, out), 0);
    cr_assert(memcmp(out, client, sizeof out) == 0, "bound client proof differs");
    cr_assert_eq(sk_auth_proof_bound(vec_token, 16, "server", "exec", ns, nc, cb, out), 0);
    cr_assert(memcmp(out, server, sizeof out) == 0, "bound server proof differs");
    /* No binding: exactly the unbound proof (plain TCP is unchanged). */
    cr_assert_eq(sk_auth_proof_bound(vec_token, 16, "client", "exec", ns, nc, NULL, out), 0);
    cr_assert_eq(sk_auth_proof(vec_token, 16, "client", "exec", ns, nc, plain), 0);
    cr_assert(memcmp(out, plain, sizeof out) == 0);
    /* Another connection's binding: another proof. */
    cb[0] ^= 1;
    cr_assert_eq(sk_auth_proof_bound(vec_token, 16, "client", "exec", ns, nc, cb, out), 0);
    cr_assert(memcmp(out, client, sizeof out) != 0);
}

Test(auth, proof_binds_every_input)
{
    uint8_t ns[SK_AUTH_NONCE], nc[SK_AUTH_NONCE], base[SK_AUTH_PROOF], other[SK_AUTH_PROOF];
    vec_nonces(ns, nc);
    cr_assert_eq(sk_auth_proof(vec_token, 16, "client", "exec", ns, nc, base), 0);
    /* Another token, role, service, or either nonce: another proof. */
    cr_assert_eq(
        sk_auth_proof((const uint8_t *)"0123456789abcdeF", 16, "client", "exec", ns, nc, other), 0);
    cr_assert(memcmp(base, other, sizeof base) != 0);
    cr_assert_eq(sk_auth_proof(vec_token, 16, "server", "exec", ns, nc, other), 0);
    cr_assert(memcmp(base, other, sizeof base) != 0);
    cr_assert_eq(sk_auth_proof(vec_token, 16, "client", "files", ns, nc, other), 0);
    cr_assert(memcmp(base, other, sizeof base) != 0);
    ns[31] ^= 1;
    cr_assert_eq(sk_auth_proof(vec_token, 16, "client", "exec", ns, nc, other), 0);
    cr_assert(memcmp(base, other, sizeof base) != 0);
    ns[31] ^= 1;
    nc[0] ^= 0x80;
    cr_assert_eq(sk_auth_proof(vec_token, 16, "client", "exec", ns, nc, other), 0);
    cr_assert(memcmp(base, other, sizeof base) != 0);
    /* Swapping the nonces is not the same handshake. */
    cr_assert_eq(sk_auth_proof(vec_token, 16, "client", "exec", nc, ns, other), 0);
    cr_assert(memcmp(base, other, sizeof base) != 0);
}

Test(auth, proof_rejects_bad_role_and_service)
{
    uint8_t ns[SK_AUTH_NONCE], nc[SK_AUTH_NONCE], out[SK_AUTH_PROOF];
    vec_nonces(ns, nc);
    cr_assert_eq(sk_auth_proof(vec_token, 16, "admin", "exec", ns, nc, out), -EINVAL);
    cr_assert_eq(sk_auth_proof(vec_token, 16, "client", "", ns, nc, out), -EINVAL);
    char longname[SK_AUTH_SERVICE_MAX + 2];
    memset(longname, 's', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    cr_assert_eq(sk_auth_proof(vec_token, 16, "client", longname, ns, nc, out), -EINVAL);
    longname[SK_AUTH_SERVICE_MAX] = '\0';
    cr_assert_eq(sk_auth_proof(vec_token, 16, "client", longname, ns, nc, out), 0);
}

Test(auth, equal_compares_whole_buffers)
{
    uint8_t a[32], b[32];
    memset(a, 7, sizeof a);
    memcpy(b, a, sizeof b);
    cr_assert_eq(sk_auth_equal(a, b, sizeof a), 1);
    b[0] ^= 1;
    cr_assert_eq(sk_auth_equal(a, b, sizeof a), 0);
    b[0] ^= 1;
    b[31] ^= 0x80;
    cr_assert_eq(sk_auth_equal(a, b, sizeof a), 0);
    cr_assert_eq(sk_auth_equal(a, b, 31), 1);
    cr_assert_eq(sk_auth_equal(a, b, 0), 1);
}

Test(auth, token_check_refuses_short_and_low_variety)
{
    char why[200];
    static const char *const bad[] = {
        "0123456789abcdefghijklmnopqrstu",                                  /* 31 bytes */
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* one byte */
        "abababababababababababababababababababababababab",                 /* two */
        "passwordpasswordpasswordpassword",                                 /* 7 distinct */
        "0123456789abcdef0123456789abcdef",                                 /* repeated */
        "correct horse battery staple. correct horse battery staple. ",     /* repeated */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = 0;
        cr_assert_eq(sk_token_check(bad[i], strlen(bad[i]), why, sizeof why), -EINVAL,
                     "accepted: %s", bad[i]);
        cr_assert(strstr(why, i == 0 ? "too short" : "low variety") != NULL, "%s: %s", bad[i], why);
    }
    /* What sockit token writes, and raw random bytes, always pass. */
    for (int round = 0; round < 200; round++) {
        uint8_t raw[32];
        char hex[65];
        cr_assert_eq(sk_random(raw, sizeof raw), 0);
        for (size_t i = 0; i < sizeof raw; i++)
            snprintf(hex + 2 * i, 3, "%02x", raw[i]);
        cr_assert_eq(sk_token_check(hex, 64, why, sizeof why), 0, "%s: %s", hex, why);
        cr_assert_eq(sk_token_check(raw, sizeof raw, why, sizeof why), 0, "%s", why);
    }
    cr_assert_eq(sk_token_check("correct horse battery staple, then some", 39, why, sizeof why), 0,
                 "%s", why);
}

Test(auth, token_load_refuses_low_variety_with_a_remedy)
{
    make_dir();
    uint8_t out[SK_TOKEN_MAX];
    size_t len = 7;
    char err[256];
    const char *p = write_file("same", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n", 41, 0600);
    cr_assert_eq(sk_token_load(p, out, sizeof out, &len, err, sizeof err), -EINVAL);
    cr_assert(strstr(err, "low variety") != NULL, "%s", err);
    cr_assert(strstr(err, "run: sockit token FILE") != NULL, "%s", err);
    cr_assert_eq(len, 7);
    remove_dir();
}

Test(auth, token_create_writes_64_hex_digits_mode_600_and_never_replaces)
{
    make_dir();
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/tok", dir);
    mode_t old = umask(022);
    cr_assert_eq(sk_token_create(path, err, sizeof err), 0, "%s", err);
    umask(old);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_mode & 07777, 0600);
    cr_assert_eq(st.st_size, 65);
    uint8_t out[SK_TOKEN_MAX];
    size_t len = 0;
    cr_assert_eq(sk_token_load(path, out, sizeof out, &len, err, sizeof err), 0, "%s", err);
    cr_assert_eq(len, 64);
    for (size_t i = 0; i < len; i++)
        cr_assert(strchr("0123456789abcdef", out[i]) != NULL);
    /* A second one is refused and leaves the first alone. */
    uint8_t again[SK_TOKEN_MAX];
    cr_assert_eq(sk_token_create(path, err, sizeof err), -EEXIST);
    cr_assert(strstr(err, "exists") != NULL, "%s", err);
    cr_assert_eq(sk_token_load(path, again, sizeof again, &len, err, sizeof err), 0, "%s", err);
    cr_assert(memcmp(out, again, 64) == 0);
    /* Nor is a symbolic link followed. */
    char link[128];
    snprintf(link, sizeof link, "%s/link", dir);
    cr_assert_eq(symlink("/tmp/sockit-token-target-never-made", link), 0);
    cr_assert_eq(sk_token_create(link, err, sizeof err), -EEXIST);
    cr_assert_neq(access("/tmp/sockit-token-target-never-made", F_OK), 0);
    remove_dir();
}
