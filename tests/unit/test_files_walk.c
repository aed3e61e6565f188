/* test_files_walk.c — what trees stand on (services/files/files_walk.c):
 * the tree entry's encoding and its refusals (the names a hostile peer
 * could send), the walk that never follows a link, and removal that never
 * leaves its directory. */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "unit.h"

#include "../../services/files/files_proto.h"

TestSuite(files_walk, .init = unit_alarm);

static size_t enc(uint8_t *out, uint8_t type, const char *name, size_t nlen, const char *target)
{
    files_tentry e;
    memset(&e, 0, sizeof e);
    e.type = type;
    e.size = 5;
    e.mtime = -3;
    e.mtime_ns = 999999999u;
    e.mode = 0755;
    e.name = (const uint8_t *)name;
    e.name_len = nlen;
    e.target = (const uint8_t *)target;
    e.target_len = target ? strlen(target) : 0;
    return files_tentry_put(out, &e);
}

Test(files_walk, entries_round_trip_and_refuse_hostile_names)
{
    uint8_t buf[600];
    files_tentry e;
    size_t n = enc(buf, 'l', "ln", 2, "../x");
    cr_assert_eq(files_tentry_get(buf, n, &e), n);
    cr_assert_eq(e.type, 'l');
    cr_assert_eq(e.mtime, -3);
    cr_assert_eq(e.mtime_ns, 999999999u);
    cr_assert_eq(e.mode, 0755);
    cr_assert_eq(e.target_len, 4);
    cr_assert_eq(memcmp(e.target, "../x", 4), 0);
    cr_assert_eq(files_tentry_get(buf, n - 1, &e), 0, "a short entry was taken");
    static const struct {
        const char *name;
        size_t len;
    } bad[] = {{"", 0}, {".", 1}, {"..", 2}, {"a/b", 3}, {"/a", 2}, {"a\0b", 3}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = enc(buf, 'f', bad[i].name, bad[i].len, NULL);
        cr_assert_eq(files_tentry_get(buf, n, &e), 0, "took the name #%zu", i);
    }
    n = enc(buf, 'f', "f", 1, "t"); /* a target on a file */
    cr_assert_eq(files_tentry_get(buf, n, &e), 0);
    n = enc(buf, 'l', "l", 1, NULL); /* a link without one */
    cr_assert_eq(files_tentry_get(buf, n, &e), 0);
    n = enc(buf, 'p', "p", 1, NULL); /* a FIFO is not a type */
    cr_assert_eq(files_tentry_get(buf, n, &e), 0);
    n = enc(buf, 'f', "ok", 2, NULL);
    buf[17] = 0x40; /* nanoseconds over 1e9 */
    cr_assert_eq(files_tentry_get(buf, n, &e), 0);
}

Test(files_walk, walk_never_follows_a_link)
{
    char tmpl[] = "/tmp/sk-walk-XXXXXX";
    cr_assert_not_null(mkdtemp(tmpl));
    char p[300];
    snprintf(p, sizeof p, "%s/root", tmpl);
    cr_assert_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/out", tmpl);
    cr_assert_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/root/in", tmpl);
    cr_assert_eq(mkdir(p, 0700), 0);
    snprintf(p, sizeof p, "%s/root/evil", tmpl);
    char out[300];
    snprintf(out, sizeof out, "%s/out", tmpl);
    cr_assert_eq(symlink(out, p), 0);
    snprintf(p, sizeof p, "%s/root/inlink", tmpl);
    cr_assert_eq(symlink("in", p), 0);
    snprintf(p, sizeof p, "%s/root", tmpl);
    int root = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    cr_assert_geq(root, 0);

    int fd = files_walk_dir(root, "in", false);
    cr_assert_geq(fd, 0);
    close(fd);
    cr_assert_eq(files_walk_dir(root, "evil", false), -ELOOP);
    cr_assert_eq(files_walk_dir(root, "evil/x", true), -ELOOP);
    cr_assert_eq(files_walk_dir(root, "inlink", false), -ELOOP, "a link inside was followed");
    cr_assert_eq(files_walk_dir(root, "../out", false), -EINVAL);
    cr_assert_eq(files_walk_dir(root, "missing", false), -ENOENT);
    fd = files_walk_dir(root, "new/deeper", true);
    cr_assert_geq(fd, 0);
    close(fd);
    const char *name = NULL;
    fd = files_walk_parent(root, "new/deeper/file", false, &name);
    cr_assert_geq(fd, 0);
    cr_assert_str_eq(name, "file");
    close(fd);
    /* nothing was made outside */
    snprintf(p, sizeof p, "%s/out/x", tmpl);
    cr_assert_neq(access(p, F_OK), 0);

    /* removal takes the link, not what it leads to; a tree goes whole */
    snprintf(p, sizeof p, "%s/out/keep", tmpl);
    int k = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert_geq(k, 0);
    close(k);
    snprintf(p, sizeof p, "%s/root/new/deeper/evil2", tmpl);
    cr_assert_eq(symlink(out, p), 0);
    cr_assert_eq(files_remove_tree(root, "evil"), 0);
    cr_assert_eq(files_remove_tree(root, "new"), 0);
    snprintf(p, sizeof p, "%s/out/keep", tmpl);
    cr_assert_eq(access(p, F_OK), 0, "removal followed a link");
    snprintf(p, sizeof p, "%s/root/new", tmpl);
    cr_assert_neq(access(p, F_OK), 0);
    cr_assert_eq(files_remove_tree(root, "inlink"), 0);
    cr_assert_eq(files_remove_tree(root, "in"), 0);
    close(root);
    snprintf(p, sizeof p, "%s/out/keep", tmpl);
    unlink(p);
    snprintf(p, sizeof p, "%s/out", tmpl);
    rmdir(p);
    snprintf(p, sizeof p, "%s/root", tmpl);
    rmdir(p);
    rmdir(tmpl);
}
