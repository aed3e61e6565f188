"""files trees: `sockit put -r` / `get -r`, several files at once,
--delete, --dry-run, --checksum, --json, stdin and stdout.

Trees are compared with `diff -r` and os.lstat (permission bits, mtimes to
the nanosecond, link targets); a re-run must send nothing; a hostile server
(a small Python script speaking docs/PROTOCOL.md 9.9) must not make get -r
write outside LOCAL_DIR; a client's links must never lead the server's
later requests anywhere.
"""

import json
import os
import socket
import stat
import struct
import subprocess
import threading

import helpers
from helpers import SOCKIT
from test_files import FilesCase, Relay

import files_client as fc

TREE, MKDIR, SYMLINK, META, DELETE = 0x47, 0x48, 0x49, 0x4A, 0x4B
TREE_ENTRIES, DONE = 0x57, 0x58
NS = 123456789


def make_tree(top):
    """A tree with every kind of entry the service keeps, and a FIFO."""
    os.makedirs(os.path.join(top, "sub", "deeper"))
    os.makedirs(os.path.join(top, "empty"))
    with open(os.path.join(top, "a.txt"), "wb") as f:
        f.write(b"hello\n")
    with open(os.path.join(top, "sub", "big.bin"), "wb") as f:
        f.write(os.urandom(700 * 1024))
    with open(os.path.join(top, "sub", "deeper", "z"), "wb") as f:
        f.write(b"")
    os.symlink("a.txt", os.path.join(top, "rel-link"))
    os.symlink("/etc/passwd", os.path.join(top, "abs-link"))
    os.symlink("nowhere", os.path.join(top, "sub", "dangling"))
    os.mkfifo(os.path.join(top, "fifo"))
    os.chmod(os.path.join(top, "a.txt"), 0o640)
    os.chmod(os.path.join(top, "sub"), 0o751)
    os.chmod(os.path.join(top, "empty"), 0o700)
    # mtimes with nanoseconds, deepest first (a directory's changes with
    # what is made in it)
    t = 1600000000
    for dirpath, dirs, files in sorted(os.walk(top), reverse=True):
        for n in files + dirs:
            p = os.path.join(dirpath, n)
            if not stat.S_ISFIFO(os.lstat(p).st_mode):
                os.utime(p, ns=(t * 10**9, t * 10**9 + NS), follow_symlinks=False)
                t += 7
        os.utime(dirpath, ns=(t * 10**9, t * 10**9 + NS + 1))


def snapshot(top, skip=("fifo",)):
    """{relative path: (kind, mode bits, mtime ns, size or link text)}."""
    out = {}
    for dirpath, dirs, files in os.walk(top):
        for n in dirs + files:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, top)
            if rel in skip:
                continue
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            extra = os.readlink(p) if stat.S_ISLNK(st.st_mode) else (
                st.st_size if stat.S_ISREG(st.st_mode) else None)
            mode = None if stat.S_ISLNK(st.st_mode) else stat.S_IMODE(st.st_mode)
            out[rel] = (kind, mode, st.st_mtime_ns, extra)
    return out


def fc_partials(top):
    return [os.path.join(d, n) for d, _, fs in os.walk(top) for n in fs
            if n.startswith(".sockit-partial.")]


class TreeCase(FilesCase):

    def run_files(self, *args, input=None, timeout=120):
        cp = self.sockit(*args, input=input, timeout=timeout)
        self.assertClean(cp)
        return cp

    def addr(self, srv):
        return srv.addr

    def tree_cmd(self, *args, code=0):
        cp = self.run_files(*args)
        self.assertEqual(cp.returncode, code, cp.stderr.decode(errors="replace"))
        return cp

    def assertSameTree(self, a, b):
        d = subprocess.run(["diff", "-r", "--no-dereference", "-x", "fifo", a, b],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(d.returncode, 0, d.stdout.decode(errors="replace"))
        self.assertEqual(snapshot(a), snapshot(b))


class TreeRoundTrip(TreeCase):

    def test_put_r_then_get_r_keeps_everything(self):
        src = self.path("src")
        make_tree(src)
        srv = self.files_server()
        cp = self.tree_cmd("put", "-r", srv.addr, src, "backup", "--quiet")
        self.assertIn(b"warning: skipping", cp.stderr)
        self.assertIn(b"fifo", cp.stderr)
        self.assertRegex(cp.stdout, rb"^6 files sent, 0 skipped, 0 deleted")
        self.assertSameTree(src, os.path.join(self.root, "backup"))
        self.assertFalse(os.path.exists(os.path.join(self.root, "backup", "fifo")))
        self.assertEqual(os.readlink(os.path.join(self.root, "backup", "abs-link")),
                         "/etc/passwd")
        back = self.path("back")
        cp = self.tree_cmd("get", "-r", srv.addr, "backup", back, "--quiet")
        self.assertRegex(cp.stdout, rb"^6 files sent, 0 skipped")
        self.assertSameTree(src, back)
        self.stop(srv)

    def test_rerun_sends_nothing(self):
        src = self.path("src")
        make_tree(src)
        srv = self.files_server()
        self.tree_cmd("put", "-r", srv.addr, src, "b", "--quiet")
        cp = self.tree_cmd("put", "-r", srv.addr, src, "b", "--quiet", "--json")
        s = json.loads(cp.stdout)
        self.assertEqual((s["sent"], s["skipped"], s["deleted"], s["bytes"]), (0, 6, 0, 0))
        back = self.path("back")
        self.tree_cmd("get", "-r", srv.addr, "b", back, "--quiet")
        cp = self.tree_cmd("get", "-r", srv.addr, "b", back, "--quiet", "--json")
        s = json.loads(cp.stdout)
        self.assertEqual((s["sent"], s["bytes"], s["failed"]), (0, 0, 0))
        # one file changed: only it moves
        with open(os.path.join(src, "sub", "big.bin"), "r+b") as f:
            f.write(b"X")
        cp = self.tree_cmd("put", "-r", srv.addr, src, "b", "--quiet", "--json")
        s = json.loads(cp.stdout)
        self.assertEqual((s["sent"], s["bytes"]), (1, 700 * 1024))
        self.assertSameTree(src, os.path.join(self.root, "b"))
        self.stop(srv)

    def test_special_bits_dropped_unless_kept(self):
        src = self.path("src")
        os.mkdir(src)
        p = os.path.join(src, "tool")
        with open(p, "wb") as f:
            f.write(b"#!/bin/sh\n")
        os.chmod(p, 0o4755)
        os.chmod(src, 0o1777)
        srv = self.files_server()
        self.tree_cmd("put", "-r", srv.addr, src, "t", "--quiet")
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.root, "t", "tool")).st_mode),
                         0o755)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.root, "t")).st_mode), 0o777)
        self.stop(srv)
        srv = self.files_server("--keep-special-bits")
        self.tree_cmd("put", "-r", srv.addr, src, "k", "--quiet")
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.root, "k", "tool")).st_mode),
                         0o4755)
        self.stop(srv)

    def test_several_files_into_a_directory(self):
        a, b = self.path("one.txt"), self.path("two.txt")
        for p, data in ((a, b"1"), (b, b"22")):
            with open(p, "wb") as f:
                f.write(data)
        srv = self.files_server()
        self.tree_cmd("put", srv.addr, a, b, "in/", "--quiet")
        with open(os.path.join(self.root, "in", "two.txt"), "rb") as f:
            self.assertEqual(f.read(), b"22")
        out = self.path("out")
        os.mkdir(out)
        self.tree_cmd("get", srv.addr, "in/one.txt", "in/two.txt", out + "/", "--quiet")
        self.assertEqual(sorted(os.listdir(out)), ["one.txt", "two.txt"])
        self.assertEqual(os.stat(os.path.join(out, "one.txt")).st_mtime_ns,
                         os.stat(a).st_mtime_ns)
        # one missing: named, exit 1, the other still arrives
        os.unlink(os.path.join(out, "two.txt"))
        cp = self.tree_cmd("get", srv.addr, "in/nope", "in/two.txt", out + "/", "--quiet",
                           code=1)
        self.assertIn(b"in/nope", cp.stderr)
        self.assertTrue(os.path.exists(os.path.join(out, "two.txt")))
        self.stop(srv)

    def test_stdin_streams_and_is_verified(self):
        srv = self.files_server()
        data = os.urandom(3 * 1024 * 1024 + 17)
        cp = self.run_files("put", srv.addr, "-", "s/in.bin", "--quiet", input=data)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        with open(os.path.join(self.root, "s", "in.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        cp = self.run_files("get", srv.addr, "s/in.bin", "-", "--quiet")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, data)
        # a stream over --max-file-size is refused, nothing kept
        self.stop(srv)
        srv = self.files_server("--max-file-size", "1000")
        cp = self.run_files("put", srv.addr, "-", "s/big", "--quiet", input=b"x" * 5000)
        self.assertEqual(cp.returncode, 1)
        self.assertFalse(os.path.exists(os.path.join(self.root, "s", "big")))
        self.assertEqual(fc_partials(self.root), [])
        self.stop(srv)

    def test_single_file_with_json_keeps_its_names(self):
        p = self.path("a.txt")
        with open(p, "wb") as f:
            f.write(b"abc")
        srv = self.files_server()
        cp = self.tree_cmd("put", srv.addr, p, "x/b.txt", "--json")
        self.assertEqual(json.loads(cp.stdout)["sent"], 1)
        self.assertEqual(os.listdir(os.path.join(self.root, "x")), ["b.txt"])
        out = self.path("c.txt")
        cp = self.tree_cmd("get", srv.addr, "x/b.txt", out, "--json")
        self.assertEqual(json.loads(cp.stdout)["bytes"], 3)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"abc")
        self.stop(srv)

    def test_stdout_and_old_single_file_still_work(self):
        srv = self.files_server()
        p = self.path("f")
        with open(p, "wb") as f:
            f.write(b"single")
        self.tree_cmd("put", srv.addr, p, "x/f", "--quiet")
        cp = self.tree_cmd("get", srv.addr, "x/f", "-", "--quiet")
        self.assertEqual(cp.stdout, b"single")
        self.stop(srv)


class DeleteDryRun(TreeCase):

    def test_delete_and_dry_run_both_ways(self):
        src = self.path("src")
        make_tree(src)
        srv = self.files_server()
        self.tree_cmd("put", "-r", srv.addr, src, "b", "--quiet")
        os.unlink(os.path.join(src, "a.txt"))
        os.unlink(os.path.join(src, "rel-link"))
        os.rmdir(os.path.join(src, "empty"))
        os.mkdir(os.path.join(src, "rel-link"))  # a link becomes a directory
        outside = self.path("outside-keep")
        with open(outside, "wb") as f:
            f.write(b"keep")
        before = snapshot(os.path.join(self.root, "b"))
        cp = self.tree_cmd("put", "-r", srv.addr, src, "b", "--delete", "--dry-run")
        out = cp.stdout.decode()
        self.assertIn("delete b/a.txt", out)
        self.assertIn("delete b/empty", out)
        self.assertIn("skip b/sub/big.bin", out)
        self.assertIn("dry run:", out)
        self.assertEqual(snapshot(os.path.join(self.root, "b")), before)
        # without --delete the extra entries stay
        self.tree_cmd("put", "-r", srv.addr, src, "b", "--quiet")
        self.assertTrue(os.path.exists(os.path.join(self.root, "b", "a.txt")))
        cp = self.tree_cmd("put", "-r", srv.addr, src, "b", "--delete", "--quiet", "--json")
        self.assertEqual(json.loads(cp.stdout)["deleted"], 2)
        self.assertSameTree(src, os.path.join(self.root, "b"))
        self.assertTrue(os.path.exists(outside))
        # restore with --delete removes local extras, and only inside LOCAL_DIR
        back = self.path("back")
        self.tree_cmd("get", "-r", srv.addr, "b", back, "--quiet")
        with open(os.path.join(back, "extra"), "wb") as f:
            f.write(b"x")
        cp = self.tree_cmd("get", "-r", srv.addr, "b", back, "--delete", "--dry-run")
        self.assertIn("delete %s/extra" % back, cp.stdout.decode())
        self.assertTrue(os.path.exists(os.path.join(back, "extra")))
        self.tree_cmd("get", "-r", srv.addr, "b", back, "--delete", "--quiet")
        self.assertSameTree(src, back)
        self.stop(srv)

    def test_checksum_sees_same_size_same_mtime_change(self):
        src = self.path("src")
        os.mkdir(src)
        p = os.path.join(src, "f")
        with open(p, "wb") as f:
            f.write(b"aaaa")
        srv = self.files_server()
        self.tree_cmd("put", "-r", srv.addr, src, "c", "--quiet")
        st = os.stat(p)
        with open(p, "wb") as f:
            f.write(b"bbbb")
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
        cp = self.tree_cmd("put", "-r", srv.addr, src, "c", "--quiet", "--json")
        self.assertEqual(json.loads(cp.stdout)["sent"], 0)  # size + mtime: looks the same
        cp = self.tree_cmd("put", "-r", srv.addr, src, "c", "--quiet", "--json", "--checksum")
        self.assertEqual(json.loads(cp.stdout)["sent"], 1)
        with open(os.path.join(self.root, "c", "f"), "rb") as f:
            self.assertEqual(f.read(), b"bbbb")
        self.stop(srv)


class TreeFailures(TreeCase):

    def test_failed_files_are_named_and_the_rest_goes(self):
        src = self.path("src")
        os.makedirs(os.path.join(src, "d"))
        for i in range(150):  # more than one pipelined batch
            with open(os.path.join(src, "d", "f%03d" % i), "wb") as f:
                f.write(b"x" * (50 if i % 7 else 500))
        srv = self.files_server("--max-file-size", "100")
        cp = self.run_files("put", "-r", srv.addr, src, "t", "--quiet", "--json")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        s = json.loads(cp.stdout)
        big = [i for i in range(150) if i % 7 == 0]
        self.assertEqual((s["sent"], s["failed"]), (150 - len(big), len(big)))
        err = cp.stderr.decode()
        self.assertEqual(err.count("--max-file-size"), len(big), err)
        got = sorted(os.listdir(os.path.join(self.root, "t", "d")))
        self.assertEqual(got, ["f%03d" % i for i in range(150) if i % 7])
        self.assertEqual(fc_partials(self.root), [])
        # the server serves on, and a re-run sends only the failed ones again
        cp = self.run_files("put", "-r", srv.addr, src, "t", "--quiet", "--json")
        s = json.loads(cp.stdout)
        self.assertEqual((s["sent"], s["skipped"], s["failed"]),
                         (0, 150 - len(big), len(big)))
        self.stop(srv)

    def test_disk_full_on_a_small_tmpfs(self):
        small = self.path("small")
        os.mkdir(small)
        cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "none", small],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if cp.returncode != 0:
            self.skipTest("cannot mount a 2 MiB tmpfs: %s" % cp.stderr.decode().strip())
        try:
            src = self.path("src")
            os.mkdir(src)
            for i in range(6):
                with open(os.path.join(src, "f%d" % i), "wb") as f:
                    f.write(os.urandom(600 * 1024))
            srv = self.files_server(root=small)
            cp = self.run_files("put", "-r", srv.addr, src, "t", "--quiet", "--json")
            self.assertEqual(cp.returncode, 1)
            self.assertIn(b"space", cp.stderr)
            s = json.loads(cp.stdout)
            self.assertGreater(s["failed"], 0)
            # every file there is whole; no partial is left
            for n in os.listdir(os.path.join(small, "t")):
                with open(os.path.join(small, "t", n), "rb") as a, \
                        open(os.path.join(src, n), "rb") as b:
                    self.assertEqual(a.read(), b.read(), n)
            self.assertEqual(fc_partials(small), [])
            self.client(srv).list("")  # still serving
            self.stop(srv)
        finally:
            subprocess.run(["umount", "-l", small])

    def test_no_descriptor_growth_after_thousands_of_files(self):
        src = self.path("src")
        for i in range(2000):
            d = os.path.join(src, "d%02d" % (i % 20))
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "f%d" % i), "wb") as f:
                f.write(b"%d" % i)
        srv = self.files_server()
        c = self.client(srv)
        c.list("")
        c.close()
        base = srv.stable_fd_count()
        self.tree_cmd("put", "-r", srv.addr, src, "t", "--quiet")
        self.tree_cmd("get", "-r", srv.addr, "t", self.path("back"), "--quiet")
        self.tree_cmd("put", "-r", srv.addr, src, "t", "--quiet", "--delete")
        self.assertLessEqual(srv.wait_fds_at_most(base), base,
                             "descriptors grew: %d -> %d" % (base, srv.fd_count()))
        self.assertSameTree(src, self.path("back"))
        self.stop(srv)


class TreeResume(TreeCase):
    """A tree transfer cut by a relay, then run again: what arrived whole
    stays, the cut file resumes, and the second run moves less than all."""

    SIZE = 24 * 1024 * 1024

    def make(self):
        src = self.path("src")
        os.makedirs(os.path.join(src, "d"))
        for i in range(5):
            with open(os.path.join(src, "d", "s%d" % i), "wb") as f:
                f.write(os.urandom(1000 + i))
        with open(os.path.join(src, "z-big"), "wb") as f:
            f.write(os.urandom(self.SIZE))
        return src

    def test_put_r_cut_then_resumed(self):
        src = self.make()
        srv = self.files_server()
        target = helpers.parse_addr(srv.addr)[2]
        relay = Relay(target, cut_up=self.SIZE // 2)
        cp = self.run_files("put", "-r", relay.addr, src, "t", "--quiet")
        relay.join(30)
        self.assertTrue(relay.cut_done)
        self.assertEqual(cp.returncode, 1)
        self.assertNotEqual(cp.stderr, b"")
        # never a mix under a real name: the big file is absent, not half
        self.assertFalse(os.path.exists(os.path.join(self.root, "t", "z-big")))
        relay = Relay(target)
        cp = self.run_files("put", "-r", relay.addr, src, "t", "--quiet", "--json")
        relay.join(30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertLess(relay.up, self.SIZE * 3 // 4, "the second run sent it all again")
        self.assertSameTree(src, os.path.join(self.root, "t"))
        self.assertEqual(fc_partials(self.root), [])
        self.stop(srv)

    def test_get_r_cut_then_resumed(self):
        src = self.make()
        srv = self.files_server()
        self.tree_cmd("put", "-r", srv.addr, src, "t", "--quiet")
        target = helpers.parse_addr(srv.addr)[2]
        back = self.path("back")
        relay = Relay(target, cut_down=self.SIZE // 2)
        cp = self.run_files("get", "-r", relay.addr, "t", back, "--quiet")
        relay.join(30)
        self.assertTrue(relay.cut_done)
        self.assertEqual(cp.returncode, 1)
        self.assertFalse(os.path.exists(os.path.join(back, "z-big")))
        relay = Relay(target)
        cp = self.run_files("get", "-r", relay.addr, "t", back, "--quiet")
        relay.join(30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertLess(relay.down, self.SIZE * 3 // 4, "the second run received it all again")
        self.assertSameTree(src, back)
        self.assertEqual(fc_partials(back), [])
        self.stop(srv)


# ------------------------------------------------------------- hostile peers

def tentry(kind, name, size=0, mode=0o644, target=b"", mtime=1600000000, ns=5):
    name = name if isinstance(name, bytes) else name.encode()
    return (bytes([ord(kind)]) + struct.pack(">QqIHH", size, mtime, ns, mode, len(name)) +
            name + struct.pack(">H", len(target)) + target)


class HostileServer(threading.Thread):
    """Speaks just enough of docs/PROTOCOL.md to feed get -r: TREE answers
    from listings {path: [entry bytes]}, GET answers from files {path: data}."""

    def __init__(self, listings, files):
        super().__init__(daemon=True)
        self.listings, self.files = listings, files
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.ls.settimeout(20)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.start()

    def run(self):
        try:
            s, _ = self.ls.accept()
        except OSError:
            return
        s.settimeout(20)
        c = fc.FilesClient(s)
        try:
            c.recv()  # HELLO_C
            c.send(fc.HELLO_S, b"SKIT\x01\x05files")
            while True:
                t, body = c.recv()
                if t == TREE:
                    ents = self.listings.get(body, [])
                    if ents:
                        c.send(TREE_ENTRIES, struct.pack(">H", len(ents)) + b"".join(ents))
                    c.send(fc.LIST_END, struct.pack(">Q", len(ents)))
                elif t == fc.GET:
                    data = self.files.get(body[40:], b"")
                    import hashlib
                    c.send(fc.GET_READY, struct.pack(">QQ", len(data), 0))
                    if data:
                        c.send(fc.DATA, data)
                    c.send(fc.GET_END, hashlib.sha256(data).digest())
                else:
                    c.send(fc.ERROR, b"\x01no")
                    break
        except (OSError, EOFError, fc.ProtocolError, struct.error):
            pass
        finally:
            s.close()
            self.ls.close()


class GetConfinement(TreeCase):

    def setUp(self):
        super().setUp()
        self.outside = self.path("outside")
        os.mkdir(self.outside)
        self.dest = self.path("dest")

    def get_r(self, listings, files):
        hs = HostileServer(listings, files)
        cp = self.run_files("get", "-r", hs.addr, "t", self.dest, "--quiet", "--timeout", "5")
        hs.join(30)
        self.assertEqual(os.listdir(self.outside), [])
        return cp

    def test_bad_names_are_refused(self):
        for name in (b"..", b".", b"a/../../x", b"/abs", b"nul\x00x", b""):
            cp = self.get_r({b"t": [tentry("f", name, size=1)]}, {})
            self.assertEqual(cp.returncode, 1, name)
            self.assertIn(b"protocol error", cp.stderr, name)
        self.assertFalse(os.path.exists(self.path("x")))
        self.assertFalse(os.path.exists("/abs"))

    def test_link_then_directory_of_the_same_name(self):
        link = tentry("l", "x", mode=0o777, target=self.outside.encode())
        cp = self.get_r({b"t": [link, tentry("d", "x", mode=0o755)],
                         b"t/x": [tentry("f", "pwned", size=2)]}, {b"t/x/pwned": b"hi"})
        self.assertEqual(cp.returncode, 1)
        # across two runs: a link from the first, a directory in the second
        cp = self.get_r({b"t": [link]}, {})
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(os.readlink(os.path.join(self.dest, "x")), self.outside)
        cp = self.get_r({b"t": [tentry("d", "x", mode=0o755)],
                         b"t/x": [tentry("f", "pwned", size=2)]}, {b"t/x/pwned": b"hi"})
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertTrue(os.path.isdir(os.path.join(self.dest, "x")))
        self.assertFalse(os.path.islink(os.path.join(self.dest, "x")))
        with open(os.path.join(self.dest, "x", "pwned"), "rb") as f:
            self.assertEqual(f.read(), b"hi")

    def test_a_file_over_a_local_link_replaces_the_link(self):
        os.makedirs(self.dest)
        target = os.path.join(self.outside, "victim")
        os.symlink(target, os.path.join(self.dest, "f"))
        cp = self.get_r({b"t": [tentry("f", "f", size=3)]}, {b"t/f": b"new"})
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertFalse(os.path.islink(os.path.join(self.dest, "f")))
        self.assertFalse(os.path.exists(target))


class ServerConfinement(TreeCase):

    def test_client_links_are_never_followed(self):
        outside = self.path("outside")
        os.mkdir(outside)
        srv = self.files_server()
        c = self.client(srv)
        link = b"evil"
        c.send(SYMLINK, struct.pack(">H", len(outside)) + outside.encode() + link)
        c.expect(DONE)
        self.assertEqual(os.readlink(os.path.join(self.root, "evil")), outside)
        for t, body in ((MKDIR, b"\x01\xed" + b"evil/x"),
                        (META, b"\x01\xff" + struct.pack(">qI", 1, 0) + b"evil/x"),
                        (DELETE, b"evil/x"),
                        (SYMLINK, b"\x00\x01y" + b"evil/y"),
                        (TREE, b"evil")):
            c.send(t, body)
            with self.assertRaises(fc.ServerError) as cm:
                c.expect(DONE, fc.LIST_END, TREE_ENTRIES)
            self.assertIn(cm.exception.code, (fc.E_BADPATH, fc.E_NOTFOUND, fc.E_TYPE),
                          (hex(t), cm.exception.text))
        for bad in (b"../x", b"/x", b"a//b", b"a\x00b"):
            c.send(MKDIR, b"\x01\xed" + bad)
            with self.assertRaises(fc.ServerError) as cm:
                c.expect(DONE)
            self.assertEqual(cm.exception.code, fc.E_BADPATH)
        # META on the link itself changes its time, not its target's
        before = os.stat(outside).st_mtime_ns
        c.send(META, b"\x01\xff" + struct.pack(">qI", 1000, 7) + link)
        c.expect(DONE)
        self.assertEqual(os.lstat(os.path.join(self.root, "evil")).st_mtime_ns, 1000 * 10**9 + 7)
        self.assertEqual(os.stat(outside).st_mtime_ns, before)
        # DELETE of the link removes the link only
        with open(os.path.join(outside, "keep"), "wb") as f:
            f.write(b"k")
        c.send(DELETE, link)
        c.expect(DONE)
        self.assertFalse(os.path.lexists(os.path.join(self.root, "evil")))
        self.assertTrue(os.path.exists(os.path.join(outside, "keep")))
        self.assertEqual(os.listdir(outside), ["keep"])
        self.stop(srv)

    def test_read_only_refuses_changes(self):
        os.mkdir(os.path.join(self.root, "d"))
        srv = self.files_server("--read-only")
        c = self.client(srv)
        for t, body in ((MKDIR, b"\x01\xed" + b"n"), (DELETE, b"d"),
                        (META, b"\x01\xff" + struct.pack(">qI", 1, 0) + b"d"),
                        (SYMLINK, b"\x00\x01y" + b"l")):
            c.send(t, body)
            with self.assertRaises(fc.ServerError) as cm:
                c.expect(DONE)
            self.assertEqual(cm.exception.code, fc.E_READONLY)
        self.assertEqual(os.listdir(self.root), ["d"])
        src = self.path("src")
        os.mkdir(src)
        cp = self.run_files("put", "-r", srv.addr, src, "d", "--quiet")
        self.assertEqual(cp.returncode, 1)
        self.assertIn(b"read-only", cp.stderr)
        self.stop(srv)
