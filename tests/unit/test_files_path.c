/* test_files_path.c — the files service's confinement (services/files_path.c):
 * the path checker's matrix, and opens beneath a root both with openat2 and
 * with the fallback walk: links that leave the root, links that stay in it,
 * loops, parents made on the way, and how errors are reported. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "../../services/files/files_int.h"

TestSuite(files_path, .init = unit_alarm);

static int check(const char *p, size_t len, bool root)
{
    char why[200] = "";
    int rc = files_path_check(p, len, root, why, sizeof why);
    cr_assert(rc == 0 || why[0] != '\0', "a refusal without a reason for \"%.*s\"", (int)len, p);
    return rc;
}

static int check_s(const char *p) { return check(p, strlen(p), false); }

Test(files_path, checker_accepts_and_refuses)
{
    static const char *const good[] = {"a",     "a/b", "a.b/c-d_e", ".hidden", "a/.b",   "...",
                                       "a/...", "..a", "a..",       "x/y/z/w", "sp ace", "é/ü"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        cr_assert_eq(check_s(good[i]), 0, "refused \"%s\"", good[i]);
    static const char *const bad[] = {"",
                                      "/",
                                      "/a",
                                      "a/",
                                      "a//b",
                                      ".",
                                      "..",
                                      "a/..",
                                      "../a",
                                      "a/./b",
                                      "./a",
                                      "a/.",
                                      ".sockit-partial.x",
                                      "a/.sockit-partial.",
                                      "a/.sockit-partial.b/c"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(check_s(bad[i]), -1, "accepted \"%s\"", bad[i]);
    cr_assert_eq(check("a\0b", 3, false), -1, "a NUL byte was accepted");
    cr_assert_eq(check("ab\0", 3, true), -1, "a trailing NUL byte was accepted");
    cr_assert_eq(check("", 0, true), 0, "the root was refused where it is allowed");

    char name[300];
    memset(name, 'n', sizeof name);
    cr_assert_eq(check(name, FILES_NAME_MAX, false), 0);
    cr_assert_eq(check(name, FILES_NAME_MAX + 1, false), -1, "a 256-byte component");

    char deep[4 * FILES_DEPTH_MAX + 8];
    size_t n = 0;
    for (unsigned i = 0; i < FILES_DEPTH_MAX; i++) {
        memcpy(deep + n, i ? "/d" : "d", i ? 2 : 1);
        n += i ? 2 : 1;
    }
    cr_assert_eq(check(deep, n, false), 0, "64 components are allowed");
    memcpy(deep + n, "/d", 2);
    cr_assert_eq(check(deep, n + 2, false), -1, "65 components are not");

    char *longp = malloc(FILES_PATH_MAX + 2);
    cr_assert_not_null(longp);
    for (size_t i = 0; i < FILES_PATH_MAX + 1; i++)
        longp[i] = (i % 200 == 199) ? '/' : 'x';
    cr_assert_eq(check(longp, FILES_PATH_MAX + 1, false), -1, "a 4096-byte path");
    longp[FILES_PATH_MAX - 1] = 'x';
    cr_assert_eq(check(longp, FILES_PATH_MAX, false), 0, "a 4095-byte path");
    free(longp);
}

/* ---------------------------------------------------------------- a tree */

typedef struct tree {
    char base[64];
    char root[128], outside[128];
} tree;

static void tree_make(tree *t)
{
    snprintf(t->base, sizeof t->base, "/tmp/sk-fpath-XXXXXX");
    cr_assert_not_null(mkdtemp(t->base));
    snprintf(t->root, sizeof t->root, "%s/root", t->base);
    snprintf(t->outside, sizeof t->outside, "%s/outside", t->base);
    cr_assert_eq(mkdir(t->root, 0755), 0);
    cr_assert_eq(mkdir(t->outside, 0755), 0);
    char p[256], q[256];
    snprintf(p, sizeof p, "%s/secret", t->outside);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("secret\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/sub", t->root);
    cr_assert_eq(mkdir(p, 0755), 0);
    snprintf(p, sizeof p, "%s/sub/a.txt", t->root);
    f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs("inside\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/in", t->root);
    cr_assert_eq(symlink("sub/a.txt", p), 0);
    snprintf(p, sizeof p, "%s/indir", t->root);
    cr_assert_eq(symlink("sub", p), 0);
    snprintf(p, sizeof p, "%s/out", t->root);
    snprintf(q, sizeof q, "%s/secret", t->outside);
    cr_assert_eq(symlink(q, p), 0);
    snprintf(p, sizeof p, "%s/up", t->root);
    cr_assert_eq(symlink("../outside", p), 0);
    snprintf(p, sizeof p, "%s/loop1", t->root);
    cr_assert_eq(symlink("loop2", p), 0);
    snprintf(p, sizeof p, "%s/loop2", t->root);
    cr_assert_eq(symlink("loop1", p), 0);
    snprintf(p, sizeof p, "%s/fifo", t->root);
    cr_assert_eq(mkfifo(p, 0644), 0);
}

static void tree_free(tree *t)
{
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", t->base);
    cr_assert_eq(system(cmd), 0);
}

static int outside_entries(const tree *t)
{
    DIR *d = opendir(t->outside);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void expect_fd(int fd, const char *what)
{
    cr_assert_geq(fd, 0, "%s: %s", what, strerror(-fd));
    close(fd);
}

/* The matrix every mode must pass, and where the modes differ. */
static void confinement(bool openat2)
{
    tree t;
    tree_make(&t);
    int fds = unit_count_fds();
    files_root r;
    char why[300];
    cr_assert_eq(files_root_open(&r, t.root, !openat2, why, sizeof why), 0, "%s", why);
    if (openat2 && !r.use_openat2) {
        files_root_close(&r);
        tree_free(&t);
        cr_skip_test("openat2 is not available here: %s", r.why_fallback);
    }
    cr_assert_eq(r.use_openat2, openat2);
    expect_fd(files_open(&r, "sub/a.txt", O_RDONLY, 0), "a file below the root");
    expect_fd(files_open(&r, "", O_RDONLY | O_DIRECTORY, 0), "the root itself");
    expect_fd(files_open(&r, "sub", O_RDONLY | O_DIRECTORY, 0), "a directory");
    cr_assert_eq(files_open(&r, "nope", O_RDONLY, 0), -ENOENT);
    cr_assert_eq(files_open(&r, "sub/a.txt/x", O_RDONLY, 0), -ENOTDIR);
    /* Links that lead out: refused either way, by the kernel. */
    int out = files_open(&r, "out", O_RDONLY, 0);
    int up = files_open(&r, "up/secret", O_RDONLY, 0);
    int upp = files_open(&r, "up", O_PATH, 0);
    cr_assert(out == -EXDEV || out == -ELOOP, "out: %d", out);
    cr_assert(up == -EXDEV || up == -ELOOP, "up/secret: %d", up);
    cr_assert(upp == -EXDEV || upp == -ELOOP, "up (O_PATH): %d", upp);
    cr_assert_lt(files_open(&r, "loop1", O_RDONLY, 0), 0);
    /* Links that stay in: followed by openat2, refused by the walk. */
    if (openat2) {
        expect_fd(files_open(&r, "in", O_RDONLY, 0), "a link to a file inside");
        expect_fd(files_open(&r, "indir/a.txt", O_RDONLY, 0), "a link to a directory inside");
    } else {
        cr_assert_eq(files_open(&r, "in", O_RDONLY, 0), -ELOOP);
        cr_assert_eq(files_open(&r, "in", O_PATH, 0), -ELOOP, "O_PATH took the link itself");
        cr_assert_eq(files_open(&r, "indir/a.txt", O_RDONLY, 0), -ELOOP);
        cr_assert_eq(files_open(&r, "indir", O_RDONLY | O_DIRECTORY, 0), -ELOOP);
    }
    /* A FIFO opened for reading does not wait for a writer (O_NONBLOCK),
     * and is seen for what it is. */
    int fifo = files_open(&r, "fifo", O_RDONLY | O_NONBLOCK, 0);
    cr_assert_geq(fifo, 0);
    struct stat st;
    cr_assert_eq(fstat(fifo, &st), 0);
    cr_assert(S_ISFIFO(st.st_mode));
    close(fifo);
    /* Parents: made on the way, never through a link that leads out. */
    const char *name = NULL;
    int d = files_open_parent(&r, "new/deeper/x.bin", true, &name);
    cr_assert_geq(d, 0, "%s", strerror(-d));
    cr_assert_str_eq(name, "x.bin");
    cr_assert_eq(fstat(d, &st), 0);
    cr_assert(S_ISDIR(st.st_mode));
    close(d);
    char p[300];
    snprintf(p, sizeof p, "%s/new/deeper", t.root);
    cr_assert_eq(stat(p, &st), 0);
    cr_assert_eq(files_open_parent(&r, "gone/x", false, &name), -ENOENT, "made without create");
    d = files_open_parent(&r, "up/x", true, &name);
    cr_assert(d == -EXDEV || d == -ELOOP, "up/x: %d", d);
    d = files_open_parent(&r, "up/more/x", true, &name);
    cr_assert(d == -EXDEV || d == -ELOOP, "up/more/x: %d", d);
    cr_assert_eq(files_open_parent(&r, "sub/a.txt/x", true, &name), -ENOTDIR);
    d = files_open_parent(&r, "top.bin", true, &name);
    cr_assert_geq(d, 0);
    cr_assert_str_eq(name, "top.bin");
    close(d);
    /* What a failed upload made is removed again, deepest first, while
     * empty; what existed before it stays. */
    size_t made = 0;
    d = files_open_parent_made(&r, "new/made/one/x.bin", true, &name, &made);
    cr_assert_geq(d, 0, "%s", strerror(-d));
    close(d);
    cr_assert_eq(made, strlen("new/"), "new existed; made/ was the first one made");
    snprintf(p, sizeof p, "%s/new/made/one/keep", t.root);
    cr_assert_eq(mkdir(p, 0755), 0);
    files_remove_made(&r, "new/made/one/x.bin", made);
    snprintf(p, sizeof p, "%s/new/made/one", t.root);
    cr_assert_eq(stat(p, &st), 0, "removed a directory that was not empty");
    snprintf(p, sizeof p, "%s/new/made/one/keep", t.root);
    cr_assert_eq(rmdir(p), 0);
    files_remove_made(&r, "new/made/one/x.bin", made);
    snprintf(p, sizeof p, "%s/new/made", t.root);
    cr_assert_eq(stat(p, &st), -1, "an empty directory the upload made is still there");
    snprintf(p, sizeof p, "%s/new/deeper", t.root);
    cr_assert_eq(stat(p, &st), 0, "removed a directory the upload did not make");
    d = files_open_parent_made(&r, "new/deeper/y.bin", true, &name, &made);
    cr_assert_geq(d, 0);
    close(d);
    cr_assert_eq(made, FILES_MADE_NONE);
    cr_assert_eq(outside_entries(&t), 1, "something was made outside the root");
    files_root_close(&r);
    cr_assert_eq(unit_count_fds(), fds, "descriptor leak");
    tree_free(&t);
}

Test(files_path, confinement_with_openat2) { confinement(true); }

Test(files_path, confinement_with_the_walk) { confinement(false); }

Test(files_path, root_and_error_texts)
{
    files_root r;
    char why[300];
    cr_assert_lt(files_root_open(&r, "/nonexistent/sockit-root", false, why, sizeof why), 0);
    cr_assert(strstr(why, "/nonexistent/sockit-root") != NULL, "%s", why);
    cr_assert_lt(files_root_open(&r, "/etc/hostname", false, why, sizeof why), 0);
    cr_assert(strstr(why, "not a directory") != NULL, "%s", why);
    cr_assert_eq(files_root_open(&r, "/tmp", true, why, sizeof why), 0);
    cr_assert_eq(r.use_openat2, false);
    cr_assert(strstr(r.why_fallback, "SOCKIT_NO_OPENAT2") != NULL);
    files_root_close(&r);
    static const struct {
        int err, code;
        const char *word;
    } map[] = {
        {-ENOENT, FE_NOTFOUND, "no such file"}, {-EACCES, FE_DENIED, "permission denied"},
        {-EXDEV, FE_BADPATH, "leads out"},      {-ELOOP, FE_BADPATH, "symbolic link"},
        {-ENOTDIR, FE_TYPE, "not a directory"}, {-ENOSPC, FE_NOSPACE, "no space"},
        {-EROFS, FE_READONLY, "read-only"},     {-EIO, FE_IO, "error"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        int code = files_open_error(map[i].err, "a/b", why, sizeof why);
        cr_assert_eq(code, map[i].code, "errno %d -> %d", -map[i].err, code);
        cr_assert(strstr(why, "a/b") != NULL && strstr(why, map[i].word) != NULL, "%s", why);
    }
}
