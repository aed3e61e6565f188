"""files: `sockit serve files` and `sockit put` / `get` / `ls`,
driven by the sockit clients and by a Python client written from
docs/PROTOCOL.md alone (files_client.py).

Round trips (empty, small, nested, 200 MiB) compared by SHA-256; the
traversal and symbolic-link matrix on openat2 and on the forced fallback
walk (SOCKIT_NO_OPENAT2=1), links swapped in during transfers, FIFOs,
devices and sockets; transfers cut at random points by a relay and resumed
(less than the whole file moves the second time); tampered partials on
both sides; concurrent uploads of one name; a client that lies about sizes
and checksums; --read-only; a full disk (a 2 MiB tmpfs); tokens; the sweep
of expired partials; descriptors back to baseline after thousands of
transfers.

Every wait is bounded; readiness comes from log lines or the protocol.
"""

import fcntl
import glob
import hashlib
import json
import os
import random
import secrets
import shutil
import socket
import stat
import struct
import subprocess
import sys
import threading
import time

import helpers
from helpers import SOCKIT, SockitTestCase, wait_until

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import files_client as fc  # noqa: E402
from files_client import FilesClient, ServerError  # noqa: E402

WAIT = 10.0
MiB = 1 << 20


def sha_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def write_random(path, size, seed=None):
    rnd = random.Random(seed) if seed is not None else None
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 8 * MiB)
            f.write(rnd.randbytes(n) if rnd else os.urandom(n))
            left -= n
    return path


def partials(directory):
    """Partial transfers below directory (not the server's hash cache index,
    .sockit-partial.chunks/, which is meant to stay)."""
    return sorted(p for p in glob.glob(os.path.join(directory, "**", ".sockit-partial.*"),
                                       recursive=True)
                  if ".sockit-partial.chunks" not in p)


class Relay(threading.Thread):
    """A TCP relay for one connection, counting bytes each way. With cut_up
    (client to server) or cut_down (server to client) it drops both sides
    once that many bytes have passed in that direction."""

    def __init__(self, target, cut_up=None, cut_down=None):
        super().__init__(daemon=True)
        self.target = target
        self.cut = {"up": cut_up, "down": cut_down}
        self.count = {"up": 0, "down": 0}
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.upstream_port = None
        self.cut_done = False
        self.lock = threading.Lock()
        self.start()

    @property
    def up(self):
        return self.count["up"]

    @property
    def down(self):
        return self.count["down"]

    def _pump(self, src, dst, way):
        limit = self.cut[way]
        while True:
            try:
                data = src.recv(1 << 16)
            except OSError:
                data = b""
            if not data:
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            if limit is not None:
                data = data[:max(0, limit - self.count[way])]
            try:
                dst.sendall(data)
            except OSError:
                return
            self.count[way] += len(data)
            if limit is not None and self.count[way] >= limit:
                with self.lock:
                    self.cut_done = True
                for s in (src, dst):
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return

    def run(self):
        self.ls.settimeout(30)
        try:
            c, _ = self.ls.accept()
        except OSError:
            return
        finally:
            self.ls.close()
        s = socket.create_connection(self.target)
        self.upstream_port = s.getsockname()[1]
        t = threading.Thread(target=self._pump, args=(s, c, "down"), daemon=True)
        t.start()
        self._pump(c, s, "up")
        t.join(60)
        c.close()
        s.close()


class FilesCase(SockitTestCase):
    ENV = None  # extra environment of the server (the fallback walk)

    def setUp(self):
        super().setUp()
        self.root = self.path("root")
        os.mkdir(self.root)
        self.local = self.path("local")
        os.mkdir(self.local)

    def files_server(self, *extra, root=None, addr="127.0.0.1:0", prefix=(), env=None):
        e = dict(self.ENV or {})
        e.update(env or {})
        # Loopback TCP without a token needs --no-auth said explicitly.
        if "--token-file" not in extra and "--no-auth" not in extra and addr.startswith("127."):
            extra = extra + ("--no-auth",)
        return self.serve("files", addr, "--root", root or self.root, *extra, prefix=prefix,
                          env=e or None)

    def stop(self, srv):
        """Closes our connections, then stops srv (checked): an open client
        would otherwise hold the drain for its whole timeout."""
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        srv.stop_checked(self)

    def run_files(self, *args, timeout=120):
        cp = self.sockit(*args, timeout=timeout)
        self.assertClean(cp)
        return cp

    def client(self, srv, token=None):
        fam, _, sa = helpers.parse_addr(srv.addr)
        c = FilesClient.connect(sa, token, family=fam)
        self._socks.append(c.sock)
        return c

    def assertFails(self, cp, code, *words):
        err = cp.stderr.decode("utf-8", "replace")
        self.assertEqual(cp.returncode, code, "exit %d: %s" % (cp.returncode, err))
        lines = err.strip().splitlines()
        self.assertGreaterEqual(len(lines), 1)
        self.assertLessEqual(len(lines), 2, "more than one line (plus a hint): %r" % lines)
        for w in words:
            self.assertIn(w, err)

    def assertServerError(self, code, fn, *args):
        with self.assertRaises(ServerError) as cm:
            fn(*args)
        self.assertEqual(cm.exception.code, code, cm.exception.text)
        return cm.exception.text

    def cut_put(self, srv, local, remote, cut):
        relay = Relay(helpers.parse_addr(srv.addr)[2], cut_up=cut)
        cp = self.run_files("put", relay.addr, local, remote, "--quiet")
        relay.join(30)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertTrue(relay.cut_done, "the relay did not cut (file smaller than %d?)" % cut)
        srv.close_line(relay.upstream_port)
        return cp


# ------------------------------------------------------------- round trips

class RoundTrip(FilesCase):

    def test_empty_small_and_nested(self):
        srv = self.files_server()
        cases = [("empty.bin", 0, "empty.bin"), ("one.bin", 1, "one.bin"),
                 ("small.bin", 1000, "a/b/c/small.bin"), ("odd.bin", 256 * 1024 + 7, "dir/")]
        for name, size, remote in cases:
            with self.subTest(name=name):
                src = write_random(os.path.join(self.local, name), size)
                cp = self.run_files("put", srv.addr, src, remote)
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertEqual(cp.stdout, b"")
                self.assertEqual(cp.stderr, b"", "silent when stderr is not a terminal")
                on_server = os.path.join(self.root, remote + (name if remote.endswith("/") else ""))
                self.assertEqual(sha_file(on_server), sha_file(src))
                back = self.path("back-" + name)
                cp = self.run_files("get", srv.addr, os.path.relpath(on_server, self.root), back)
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertEqual(sha_file(back), sha_file(src))
        # get into a directory keeps the remote name
        cp = self.run_files("get", srv.addr, "a/b/c/small.bin", self.local + "/")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(sha_file(os.path.join(self.local, "small.bin")),
                         sha_file(os.path.join(self.root, "a/b/c/small.bin")))
        cp = self.run_files("ls", srv.addr)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        lines = cp.stdout.decode().splitlines()
        names = [l.split()[-1] for l in lines]
        self.assertEqual(names, sorted(["a/", "dir/", "empty.bin", "one.bin"]), lines)
        self.assertTrue(lines[names.index("a/")].startswith("d"))
        cp = self.run_files("ls", srv.addr, "dir", "--json")
        entries = json.loads(cp.stdout)
        odd = os.path.join(self.root, "dir/odd.bin")
        self.assertEqual(entries, [{"name": "odd.bin", "type": "file", "size": 256 * 1024 + 7,
                                    "mtime": entries[0]["mtime"], "mode": "0644",
                                    "sha256": sha_file(odd), "chunk_size": 4 * MiB,
                                    "chunks": [sha_file(odd)]}])
        cp = self.run_files("ls", srv.addr, "a/b/c/small.bin", "--json")
        self.assertEqual(json.loads(cp.stdout)[0]["size"], 1000)
        self.assertEqual(partials(self.root), [])
        self.assertEqual(partials(self.tmp), [])
        self.stop(srv)

    def test_large_file_both_ways(self):
        size = 200 * MiB
        src = write_random(self.path("big.bin"), size)
        want = sha_file(src)
        srv = self.files_server()
        cp = self.run_files("put", srv.addr, src, "big/big.bin", timeout=180)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(sha_file(os.path.join(self.root, "big/big.bin")), want)
        dst = self.path("big.back")
        cp = self.run_files("get", srv.addr, "big/big.bin", dst, timeout=180)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(sha_file(dst), want)
        m = srv.wait_line(r"files \S+ get big/big.bin: %d bytes \(%d sent, resumed at 0\) sha256 %s"
                          % (size, size, want[:16]))
        self.assertTrue(m)
        ins = [int(m.group(1)) for m in srv.find(r"files close \S+ in=(\d+) out=\d+")]
        outs = [int(m.group(1)) for m in srv.find(r"files close \S+ in=\d+ out=(\d+)")]
        self.assertTrue(any(n >= size for n in ins), ins)
        self.assertTrue(any(n >= size for n in outs), outs)
        self.assertEqual(partials(self.root) + partials(self.tmp), [])
        self.stop(srv)

    def test_protocol_client_and_half_close(self):
        srv = self.files_server()
        data = os.urandom(3 * MiB + 11)
        c = self.client(srv)
        self.assertFalse(c.auth, "a loopback server without a token does not authenticate")
        digest, start = c.put("p/q.bin", data)
        self.assertEqual((digest, start), (hashlib.sha256(data).digest(), 0))
        self.assertEqual(c.stat("p/q.bin")["size"], len(data))
        self.assertEqual(c.stat("")["type"], "d")
        self.assertEqual([e["name"] for e in c.list("p")], [b"q.bin"])
        got, size, start, _ = c.get("p/q.bin")
        self.assertEqual((got, size, start), (data, len(data), 0))
        # A client that half-closes after its request still gets it all.
        c.send(fc.GET, struct.pack("!Q", 0) + hashlib.sha256(b"").digest() + b"p/q.bin")
        c.sock.shutdown(socket.SHUT_WR)
        size, start = struct.unpack("!QQ", c.expect(fc.GET_READY)[1])
        got, digest = c.get_rest(size, start)
        self.assertEqual(got, data)
        self.assertTrue(helpers.closed_by_peer(c.sock))
        self.stop(srv)


# ------------------------------------------------- confinement: both ways

class Confinement(FilesCase):
    """The traversal and link matrix; run again by ConfinementFallback with
    openat2 switched off."""

    def setUp(self):
        super().setUp()
        self.outside = self.path("outside")
        os.mkdir(self.outside)
        with open(os.path.join(self.outside, "secret"), "wb") as f:
            f.write(b"secret\n")
        os.mkdir(os.path.join(self.root, "sub"))
        with open(os.path.join(self.root, "sub", "a.txt"), "wb") as f:
            f.write(b"inside\n")
        os.symlink(os.path.join(self.outside, "secret"), os.path.join(self.root, "out"))
        os.symlink("../../outside", os.path.join(self.root, "sub", "up"))
        os.symlink(self.outside, os.path.join(self.root, "outdir"))
        os.symlink("sub/a.txt", os.path.join(self.root, "inlink"))
        os.mkfifo(os.path.join(self.root, "fifo"))
        self.sock_file = os.path.join(self.root, "sock")
        us = socket.socket(socket.AF_UNIX)
        us.bind(self.sock_file)
        self.track(us)
        self.device = os.path.join(self.root, "null")
        try:
            os.mknod(self.device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except OSError:
            self.device = None

    def openat2_expected(self):
        return not (self.ENV or {}).get("SOCKIT_NO_OPENAT2")

    def test_paths_that_leave_the_root_are_refused(self):
        srv = self.files_server()
        mode = "openat2 RESOLVE_BENEATH" if self.openat2_expected() else "symbolic links are refused"
        srv.wait_line(r"files: serving .*%s" % mode)
        c = self.client(srv)
        bad = [b"../outside/secret", b"sub/../../outside/secret", b"/etc/passwd", b"a\0b",
               b"sub//a.txt", b"sub/", b"./sub/a.txt", b"sub/.", b"..", b"",
               b".sockit-partial.x", b"sub/.sockit-partial.y", b"x" * 256,
               b"/".join([b"d"] * 65), b"out", b"outdir/secret", b"sub/up/secret"]
        for p in bad:
            with self.subTest(path=p):
                self.assertServerError(fc.E_BADPATH, c.get, p)
                if p:  # "" is the root for STAT and LIST
                    self.assertServerError(fc.E_BADPATH, c.stat, p)
        for p in (b"outdir", b"sub/up", b"../outside"):
            with self.subTest(list=p):
                self.assertServerError(fc.E_BADPATH, c.list, p)
        # Uploads through a link that leads out land nowhere.
        for p in (b"outdir/new.txt", b"sub/up/new.txt", b"../outside/new.txt"):
            with self.subTest(put=p):
                with self.assertRaises(ServerError) as cm:
                    c.put(p, b"should not exist")
                self.assertIn(cm.exception.code, (fc.E_BADPATH, fc.E_TYPE), cm.exception.text)
        self.assertEqual(sorted(os.listdir(self.outside)), ["secret"])
        # A link as the target's name is not written through, nor replaced.
        self.assertServerError(fc.E_TYPE, c.put, b"out", b"overwrite?")
        with open(os.path.join(self.outside, "secret"), "rb") as f:
            self.assertEqual(f.read(), b"secret\n")
        # A link that stays inside: followed by openat2, refused by the walk.
        if self.openat2_expected():
            self.assertEqual(c.get(b"inlink")[0], b"inside\n")
        else:
            self.assertServerError(fc.E_BADPATH, c.get, b"inlink")
        # The CLI: one line, exit 1 (or 2 for what it can tell itself).
        cp = self.run_files("get", srv.addr, "out", self.path("x"))
        self.assertFails(cp, 1, "out")
        cp = self.run_files("get", srv.addr, "../outside/secret", self.path("x"))
        self.assertFails(cp, 2, "..")
        cp = self.run_files("put", srv.addr, self.path("outside/secret"), "/abs")
        self.assertFails(cp, 2, "absolute")
        self.assertFalse(os.path.exists(self.path("x")))
        self.assertEqual(partials(self.tmp), [])
        srv.wait_line(r"get refused: \"\.\.\" is refused")
        self.stop(srv)

    def test_only_regular_files_and_directories(self):
        srv = self.files_server()
        c = self.client(srv)
        specials = [b"fifo", b"sock"] + ([b"null"] if self.device else [])
        for p in specials:
            with self.subTest(path=p):
                self.assertServerError(fc.E_TYPE, c.get, p)
                self.assertServerError(fc.E_TYPE, c.stat, p)
                self.assertServerError(fc.E_TYPE, c.put, p, b"data")
        self.assertServerError(fc.E_TYPE, c.get, b"sub")
        self.assertServerError(fc.E_TYPE, c.list, b"sub/a.txt")
        self.assertServerError(fc.E_TYPE, c.put, b"sub", b"data")
        self.assertServerError(fc.E_TYPE, c.put, b"sub/a.txt/x", b"data")
        self.assertServerError(fc.E_NOTFOUND, c.get, b"nope")
        self.assertServerError(fc.E_NOTFOUND, c.list, b"nope")
        # The listing shows files and directories only (and inside links
        # where openat2 confines them), never the specials or what leads out.
        names = sorted(e["name"] for e in c.list(""))
        want = [b"sub"] + ([b"inlink"] if self.openat2_expected() else [])
        self.assertEqual(names, sorted(want))
        self.assertEqual(sorted(e["name"] for e in c.list("sub")), [b"a.txt"])
        # The FIFO was opened without blocking the server: it still answers.
        self.assertEqual(c.get(b"sub/a.txt")[0], b"inside\n")
        self.assertTrue(stat.S_ISFIFO(os.lstat(os.path.join(self.root, "fifo")).st_mode))
        self.stop(srv)

    def test_link_swapped_in_during_a_download(self):
        data = os.urandom(24 * MiB)
        path = os.path.join(self.root, "big.bin")
        with open(path, "wb") as f:
            f.write(data)
        srv = self.files_server()
        c = self.client(srv)
        size, start = c.get_begin(b"big.bin")
        t, first = c.expect(fc.DATA)
        # The name now leads out of the root; the transfer in flight goes on
        # with the file it opened, and the name is refused from now on.
        os.rename(path, path + ".old")
        os.symlink(os.path.join(self.outside, "secret"), path)
        rest, digest = c.get_rest(size, start + len(first))
        self.assertEqual(first + rest, data)
        self.assertEqual(digest, hashlib.sha256(data).digest())
        self.assertServerError(fc.E_BADPATH, c.get, b"big.bin")
        self.stop(srv)

    def test_file_changed_or_cut_during_a_download(self):
        path = os.path.join(self.root, "live.bin")
        data = os.urandom(20 * MiB)
        with open(path, "wb") as f:
            f.write(data)
        srv = self.files_server()
        # Grown while it is sent: what was promised is sent, then the
        # client is told the file changed (no GET_END to trust).
        c = self.client(srv)
        size, start = c.get_begin(b"live.bin")
        c.expect(fc.DATA)
        with open(path, "ab") as f:
            f.write(b"more")
        text = self.assertServerError(fc.E_CHANGED, c.get_rest, size, start)
        self.assertIn("changed", text)
        # Cut short while it is sent: an ERROR, or the connection ends
        # (a header already promised bytes the file no longer has); never
        # a GET_END.
        c = self.client(srv)
        size, start = c.get_begin(b"live.bin")
        c.expect(fc.DATA)
        os.truncate(path, 5 * MiB)
        try:
            c.get_rest(size, start)
            self.fail("a download of a truncated file ended with GET_END")
        except ServerError as e:
            self.assertEqual(e.code, fc.E_CHANGED, e.text)
        except (EOFError, ConnectionResetError):
            pass
        self.assertEqual(self.client(srv).get(b"live.bin")[1], 5 * MiB, "the server goes on")
        self.stop(srv)

    def test_link_swapped_in_during_an_upload(self):
        os.mkdir(os.path.join(self.root, "drop"))
        srv = self.files_server()
        c = self.client(srv)
        data = os.urandom(4 * MiB)
        have, _ = c.put_begin(b"drop/x.bin", len(data), b"u" * 16)
        self.assertEqual(have, 0)
        c.put_from(0)
        c.send_data(data[:MiB])
        # The directory is swapped for a link to the outside while the
        # upload runs: it finishes in the directory it was opened in.
        os.rename(os.path.join(self.root, "drop"), os.path.join(self.root, "drop.old"))
        os.symlink(self.outside, os.path.join(self.root, "drop"))
        c.send_data(data[MiB:])
        size, digest = c.put_end(hashlib.sha256(data).digest())
        self.assertEqual(size, len(data))
        self.assertEqual(sorted(os.listdir(self.outside)), ["secret"])
        with open(os.path.join(self.root, "drop.old", "x.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        self.assertEqual(partials(self.root), [])
        # And the name that now leads out is refused.
        with self.assertRaises(ServerError):
            c.put(b"drop/y.bin", b"no")
        self.assertEqual(sorted(os.listdir(self.outside)), ["secret"])
        self.stop(srv)


class ConfinementFallback(Confinement):
    ENV = {"SOCKIT_NO_OPENAT2": "1"}


# ------------------------------------------------------------------ resume

class Resume(FilesCase):

    def test_put_cut_at_random_points_then_resumed(self):
        rnd = random.Random(0x5107)
        size = 24 * MiB
        srv = self.files_server()
        for i in range(3):
            with self.subTest(round=i):
                src = write_random(os.path.join(self.local, "up%d.bin" % i), size)
                cut = rnd.randrange(MiB, size - MiB)
                cp = self.cut_put(srv, src, "r/up%d.bin" % i, cut)
                self.assertIn(b"sockit:", cp.stderr)
                self.assertFalse(os.path.exists(os.path.join(self.root, "r/up%d.bin" % i)),
                                 "a cut upload appeared under its name")
                left = partials(self.root)
                self.assertEqual(len(left), 1, left)
                self.assertNotIn(".sockit-partial", self.run_files("ls", srv.addr, "r").stdout.decode())
                relay = Relay(helpers.parse_addr(srv.addr)[2])
                cp = self.run_files("put", relay.addr, src, "r/up%d.bin" % i, "--quiet")
                relay.join(30)
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertEqual(sha_file(os.path.join(self.root, "r/up%d.bin" % i)), sha_file(src))
                self.assertLess(relay.up, size - cut // 2,
                                "the resumed upload sent %d of %d bytes (cut at %d)"
                                % (relay.up, size, cut))
                self.assertEqual(partials(self.root), [])
        # resumed by PATCH (section 9.11): the kept chunks checked one by one
        srv.wait_line(r"put r/up2.bin: %d bytes \(\d+ sent, patched over [1-9]\d* kept chunks"
                      % size)
        self.stop(srv)

    def test_get_cut_at_random_points_then_resumed(self):
        rnd = random.Random(0x6e7)
        size = 24 * MiB
        write_random(os.path.join(self.root, "down.bin"), size)
        want = sha_file(os.path.join(self.root, "down.bin"))
        srv = self.files_server()
        for i in range(3):
            with self.subTest(round=i):
                dst = os.path.join(self.local, "down%d.bin" % i)
                cut = rnd.randrange(MiB, size - MiB)
                relay = Relay(helpers.parse_addr(srv.addr)[2], cut_down=cut)
                cp = self.run_files("get", relay.addr, "down.bin", dst, "--quiet")
                relay.join(30)
                self.assertEqual(cp.returncode, 1, cp.stderr)
                self.assertIn(b"run the same get again", cp.stderr)
                self.assertFalse(os.path.exists(dst), "a cut download appeared under its name")
                self.assertEqual(len(partials(self.local)), 1)
                relay = Relay(helpers.parse_addr(srv.addr)[2])
                cp = self.run_files("get", relay.addr, "down.bin", dst, "--quiet")
                relay.join(30)
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertEqual(sha_file(dst), want)
                self.assertLess(relay.down, size - cut // 2,
                                "the resumed download moved %d of %d bytes (cut at %d)"
                                % (relay.down, size, cut))
                in_, out, _ = srv.close_line(relay.upstream_port)
                self.assertLess(out, size - cut // 2)
                self.assertEqual(partials(self.local), [])
        self.stop(srv)

    def test_tampered_partials_are_detected_and_restarted(self):
        size = 16 * MiB
        src = write_random(os.path.join(self.local, "t.bin"), size)
        srv = self.files_server()
        # Upload: the server's partial is changed behind its back.
        self.cut_put(srv, src, "t.bin", 8 * MiB)
        (part,) = partials(self.root)
        with open(part, "r+b") as f:
            f.seek(12345)
            b = f.read(1)
            f.seek(12345)
            f.write(bytes([b[0] ^ 0xFF]))
        relay = Relay(helpers.parse_addr(srv.addr)[2])
        cp = self.run_files("put", relay.addr, src, "t.bin", "--quiet")
        relay.join(30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertGreaterEqual(relay.up, size, "the tampered prefix was trusted")
        self.assertEqual(sha_file(os.path.join(self.root, "t.bin")), sha_file(src))
        # checked chunk by chunk (PATCH, section 9.11): the tampered first
        # chunk and the short second one came again
        srv.wait_line(r"put t.bin: %d bytes \(%d sent, patched over 2 kept chunks of 4\)"
                      % (size, size))
        # Download: our own partial is changed.
        dst = os.path.join(self.local, "t.back")
        relay = Relay(helpers.parse_addr(srv.addr)[2], cut_down=8 * MiB)
        self.run_files("get", relay.addr, "t.bin", dst, "--quiet")
        relay.join(30)
        (part,) = partials(self.local)
        with open(part, "r+b") as f:
            f.seek(100)
            f.write(b"\0tampered\0")
        relay = Relay(helpers.parse_addr(srv.addr)[2])
        cp = self.run_files("get", relay.addr, "t.bin", dst, "--quiet")
        relay.join(30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertGreaterEqual(relay.down, size, "the tampered prefix was trusted")
        self.assertEqual(sha_file(dst), sha_file(src))
        # checked chunk by chunk (GET_RANGE, section 9.11): the tampered
        # first chunk, the short second one and the rest came again
        srv.wait_line(r"get t.bin: bytes 0 to %d of %d sent" % (size, size))
        self.assertEqual(partials(self.local) + partials(self.root), [])
        self.stop(srv)

    def test_partials_are_swept_after_the_ttl(self):
        srv = self.files_server("--partial-ttl", "1")
        c = self.client(srv)
        c.put_begin(b"s/left.bin", 10 * MiB, b"s" * 16)
        c.put_from(0)
        c.send_data(os.urandom(MiB))
        c.close()
        srv.wait_line(r"put s/left.bin interrupted after \d+ of %d bytes" % (10 * MiB))
        self.assertEqual(len(partials(self.root)), 1)
        self.assertTrue(wait_until(lambda: not partials(self.root), 15.0),
                        "the partial was not removed after --partial-ttl")
        srv.wait_line(r"files: removed the unfinished upload s/\.sockit-partial\.left\.bin\.")
        # A partial being written is never swept, however long it takes.
        c = self.client(srv)
        c.put_begin(b"s/slow.bin", 3 * MiB, b"t" * 16)
        c.put_from(0)
        c.send_data(b"x" * MiB)
        os.utime(partials(self.root)[0], (1, 1))  # looks ancient
        time.sleep(2.5)  # two sweeps at least (the sweep period is 1 s)
        self.assertEqual(len(partials(self.root)), 1, "a partial in use was swept")
        c.send_data(b"x" * (2 * MiB))
        c.put_end(hashlib.sha256(b"x" * (3 * MiB)).digest())
        self.assertEqual(os.path.getsize(os.path.join(self.root, "s/slow.bin")), 3 * MiB)
        self.stop(srv)


# ------------------------------------------------------- concurrency, lies

class Integrity(FilesCase):

    def test_concurrent_uploads_of_one_name(self):
        # Two workers: the uploads race on two threads as well.
        srv = self.files_server("--workers", "2")
        n = 4
        srcs = [write_random(os.path.join(self.local, "c%d.bin" % i), 6 * MiB + i) for i in range(n)]
        sums = {sha_file(p) for p in srcs}
        target = os.path.join(self.root, "same.bin")
        for rnd in range(3):
            with self.subTest(round=rnd):
                procs = [self.popen([SOCKIT, "put", srv.addr, p, "same.bin", "--quiet"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE) for p in srcs]
                for p in procs:
                    out, err = p.communicate(timeout=120)
                    self.assertEqual(p.returncode, 0, err)
                self.assertIn(sha_file(target), sums, "the result is none of the uploads")
                self.assertEqual(partials(self.root), [])
        # Interleaved by hand: both partials grow at once; the last to
        # finish is what the name holds, whole.
        a, b = os.urandom(2 * MiB), os.urandom(2 * MiB + 1)
        ca, cb = self.client(srv), self.client(srv)
        ca.put_begin(b"same.bin", len(a), b"A" * 16)
        cb.put_begin(b"same.bin", len(b), b"B" * 16)
        ca.put_from(0)
        cb.put_from(0)
        ca.send_data(a[:MiB])
        cb.send_data(b[:MiB])
        self.assertEqual(len(partials(self.root)), 2)
        ca.send_data(a[MiB:])
        cb.send_data(b[MiB:])
        ca.put_end(hashlib.sha256(a).digest())
        with open(target, "rb") as f:
            self.assertEqual(f.read(), a)
        cb.put_end(hashlib.sha256(b).digest())
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b)
        # The same upload twice at once: the second is told, not mixed in.
        c1, c2 = self.client(srv), self.client(srv)
        c1.put_begin(b"same.bin", len(a), b"C" * 16)
        self.assertServerError(fc.E_BUSY, c2.put_begin, b"same.bin", len(a), b"C" * 16)
        self.stop(srv)

    def test_lying_client_gets_an_error_and_no_file(self):
        srv = self.files_server()
        c = self.client(srv)
        data = os.urandom(5000)
        # More than declared.
        c.put_begin(b"lie1.bin", 1000, b"1" * 16)
        c.put_from(0)
        c.send_data(data[:2000])
        text = self.assertServerError(fc.E_SIZE, c.expect, fc.PUT_OK)
        self.assertIn("1000", text)
        c.send(fc.PUT_END, hashlib.sha256(data[:2000]).digest())  # ignored now
        # Less than declared.
        c.put_begin(b"lie2.bin", 1000, b"2" * 16)
        c.put_from(0)
        c.send_data(data[:500])
        self.assertServerError(fc.E_SIZE, c.put_end, hashlib.sha256(data[:500]).digest())
        # The right size and a wrong checksum.
        c.put_begin(b"lie3.bin", 1000, b"3" * 16)
        c.put_from(0)
        c.send_data(data[:1000])
        self.assertServerError(fc.E_CHECKSUM, c.put_end, hashlib.sha256(b"other").digest())
        # A resume offset the server did not offer is a protocol error.
        self.assertEqual(sorted(os.listdir(self.root)), [], "a lie left a file or a partial")
        self.assertEqual(c.stat("")["type"], "d", "the connection still works after errors")
        c.put_begin(b"lie4.bin", 1000, b"4" * 16)
        c.put_from(7)
        self.assertServerError(fc.E_PROTOCOL, c.expect, fc.PUT_OK)
        self.assertTrue(helpers.closed_by_peer(c.sock))
        srv.wait_line(r"put refused: more data than the 1000 bytes declared for lie1.bin")
        srv.wait_line(r"put refused: the upload of lie2.bin ended after 500 of the 1000 bytes")
        srv.wait_line(r"put refused: lie3.bin: what arrived does not match")
        self.assertServes(srv)
        self.stop(srv)

    def test_failed_upload_leaves_no_directories_it_made(self):
        os.mkdir(os.path.join(self.root, "kept"))  # empty, made by someone on purpose
        srv = self.files_server()
        c = self.client(srv)
        data = os.urandom(3000)
        # Less than declared, into directories the upload makes.
        c.put_begin(b"kept/new/deeper/f.bin", 1000, b"5" * 16)
        c.put_from(0)
        c.send_data(data[:500])
        self.assertServerError(fc.E_SIZE, c.put_end, hashlib.sha256(data[:500]).digest())
        # A wrong checksum, in a directory beside a file of someone else's.
        c.put_begin(b"other/f.bin", 1000, b"6" * 16)
        c.put_from(0)
        c.send_data(data[:1000])
        c.put_end(hashlib.sha256(data[:1000]).digest())
        c.put_begin(b"other/sub/g.bin", 1000, b"7" * 16)
        c.put_from(0)
        c.send_data(data[:1000])
        self.assertServerError(fc.E_CHECKSUM, c.put_end, hashlib.sha256(b"no").digest())
        found = sorted(os.path.relpath(os.path.join(d, n), self.root)
                       for d, dirs, files in os.walk(self.root) for n in dirs + files)
        self.assertEqual(found, ["kept", "other", os.path.join("other", "f.bin")])
        # A client that goes away keeps its partial, and the directories
        # that hold it, for a resume.
        c.put_begin(b"cut/f.bin", 1000, b"8" * 16)
        c.put_from(0)
        c.send_data(data[:300])
        c.close()
        srv.wait_line(r"put cut/f.bin interrupted after")
        self.assertEqual(len(partials(os.path.join(self.root, "cut"))), 1)
        self.stop(srv)

    def assertServes(self, srv):
        c = self.client(srv)
        c.put("alive.bin", b"alive")
        self.assertEqual(c.get("alive.bin")[0], b"alive")

    def test_read_only_and_max_file_size(self):
        with open(os.path.join(self.root, "r.txt"), "wb") as f:
            f.write(b"read me\n")
        srv = self.files_server("--read-only")
        src = write_random(self.path("w.bin"), 100)
        cp = self.run_files("put", srv.addr, src)
        self.assertFails(cp, 1, "read-only")
        c = self.client(srv)
        self.assertServerError(fc.E_READONLY, c.put, b"w.bin", b"data")
        self.assertEqual(c.get(b"r.txt")[0], b"read me\n")
        cp = self.run_files("get", srv.addr, "r.txt", self.path("r.back"))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(sorted(os.listdir(self.root)), ["r.txt"])
        self.stop(srv)
        # Read-only means nothing on disk changes: an expired partial is
        # left for a writable server to sweep, and stays hidden.
        old = os.path.join(self.root, ".sockit-partial.r.txt.00112233aabbccdd")
        with open(old, "wb") as f:
            f.write(b"half")
        os.utime(old, (1, 1))
        srv = self.files_server("--read-only", "--partial-ttl", "1")
        srv.wait_line(r"read-only: nothing below the root is written or removed")
        time.sleep(2.5)  # a writable server would have swept twice by now (every 1 s)
        self.assertTrue(os.path.exists(old), "a read-only server removed a partial")
        self.assertEqual([e["name"] for e in self.client(srv).list(b"")], [b"r.txt"])
        self.stop(srv)
        os.unlink(old)
        srv = self.files_server("--max-file-size", "1K")
        self.assertServerError(fc.E_TOOBIG, self.client(srv).put, b"big", b"x" * 1025)
        self.client(srv).put(b"ok", b"x" * 1024)
        cp = self.run_files("put", srv.addr, write_random(self.path("k.bin"), 2048))
        self.assertFails(cp, 1, "--max-file-size")
        self.stop(srv)

    def test_too_many_partials_in_one_directory(self):
        d = os.path.join(self.root, "crowd")
        os.mkdir(d)
        names = []
        for i in range(64):
            names.append(os.path.join(d, ".sockit-partial.f%d.%016x" % (i, i)))
            with open(names[-1], "wb") as f:
                f.write(b"x")
            os.utime(names[-1], (1000 + i, 1000 + i))  # f0 is the least recently written
        # Every partial held by an upload in progress (locked): no room.
        held = []
        for n in names:
            fd = os.open(n, os.O_RDONLY)
            fcntl.flock(fd, fcntl.LOCK_EX)
            held.append(fd)
        srv = self.files_server()
        c = self.client(srv)
        text = self.assertServerError(fc.E_BUSY, c.put_begin, b"crowd/new.bin", 10, b"n" * 16)
        self.assertIn("unfinished uploads", text)
        self.assertEqual(len(partials(d)), 64)
        c.put(b"elsewhere.bin", b"fine")
        # Abandoned ones (unlocked): the least recently written makes room.
        for fd in held:
            os.close(fd)
        c.put(b"crowd/new.bin", b"room made")
        left = partials(d)
        self.assertEqual(len(left), 63)
        self.assertNotIn(names[0], left)
        srv.wait_line(r"removed the least recently written one")
        self.stop(srv)


# ------------------------------------------------------------- disk full

class DiskFull(FilesCase):

    def setUp(self):
        super().setUp()
        self.small = self.path("small")
        os.mkdir(self.small)
        cp = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "none", self.small],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if cp.returncode != 0:
            shutil.rmtree(self.tmp, ignore_errors=True)  # tearDown does not run after a skip
            self.skipTest("cannot mount a 2 MiB tmpfs (needs root and mount permission): %s"
                          % cp.stderr.decode().strip())

    def tearDown(self):
        # Lazily, before the temp dir goes: a server still holding its root
        # keeps the file system alive until it exits, the mount point is
        # free to be removed at once.
        subprocess.run(["umount", "-l", self.small])
        super().tearDown()

    def test_disk_full_removes_the_partial_and_serves_on(self):
        srv = self.files_server(root=self.small)
        # Too big from the start: refused before a byte is written.
        src = write_random(self.path("three.bin"), 3 * MiB)
        cp = self.run_files("put", srv.addr, src, "three.bin")
        self.assertFails(cp, 1, "space")
        self.assertEqual(os.listdir(self.small), [])
        # The disk fills up under a running upload.
        c = self.client(srv)
        data = os.urandom(1536 * 1024)
        c.put_begin(b"grow.bin", len(data), b"g" * 16)
        c.put_from(0)
        c.send_data(data[:256 * 1024])
        filler = os.path.join(self.small, "filler")
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            while True:
                os.write(fd, b"\0" * 65536)
        except OSError:
            pass
        finally:
            os.close(fd)

        def rest():
            c.send_data(data[256 * 1024:])
            c.put_end(hashlib.sha256(data).digest())
        text = self.assertServerError(fc.E_NOSPACE, rest)
        self.assertIn("partial file was removed", text)
        self.assertEqual(sorted(os.listdir(self.small)), ["filler"])
        os.unlink(filler)
        # The same connection and a new one both work.
        c.put(b"after.bin", b"room again")
        cp = self.run_files("put", srv.addr, write_random(self.path("one.bin"), 1000), "one.bin")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(sorted(os.listdir(self.small)), ["after.bin", "one.bin"])
        srv.wait_line(r"put refused: the server's disk is full")
        self.stop(srv)


# ---------------------------------------------------------------- tokens

class Tokens(FilesCase):

    def setUp(self):
        super().setUp()
        self.token = os.urandom(20).hex().encode()
        self.token_file = self.write_token(self.token, "token")

    def write_token(self, token, name):
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(token + b"\n")
        os.chmod(path, 0o600)
        return path

    def test_wrong_missing_and_right_token(self):
        srv = self.files_server("--token-file", self.token_file)
        src = write_random(self.path("t.bin"), 5000)
        wrong = self.write_token(os.urandom(20).hex().encode(), "wrong")
        cp = self.run_files("put", srv.addr, src, "--token-file", wrong)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn(b"authentication failed", cp.stderr)
        cp = self.run_files("put", srv.addr, src)
        self.assertFails(cp, 1, "requires authentication", "--token-file")
        cp = self.run_files("ls", srv.addr)
        self.assertFails(cp, 1, "requires authentication")
        self.assertEqual(os.listdir(self.root), [])
        cp = self.run_files("put", srv.addr, src, "--token-file", self.token_file)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        c = self.client(srv, token=self.token)
        self.assertTrue(c.auth)
        self.assertEqual(c.get("t.bin")[1], 5000)
        # A request instead of the proof is refused, not served.
        s = self.connect(srv.addr)
        raw = FilesClient(s)
        raw.send(fc.HELLO_C, b"SKIT\x01\x05files")
        raw.expect(fc.HELLO_S)
        raw.send(fc.LIST, b"")
        self.assertEqual(self.assertServerError(fc.E_AUTH, raw.expect, fc.ENTRIES)[:40],
                         "this server requires authentication: giv")
        srv.wait_line(r"authentication failed \(answer delayed")
        self.stop(srv)
        # A client told to expect a token refuses a server without one.
        srv = self.files_server()
        cp = self.run_files("ls", srv.addr, "--token-file", self.token_file)
        self.assertFails(cp, 1, "does not authenticate")
        self.stop(srv)

    def test_a_token_is_required_beyond_loopback(self):
        for addr in ("0.0.0.0:0", "[::]:0"):
            with self.subTest(addr=addr):
                cp = self.sockit("serve", "files", addr, "--root", self.root, timeout=10)
                self.assertEqual(cp.returncode, 2, cp.stderr)
                self.assertIn(b"needs --token-file", cp.stderr)
                self.assertNotIn(b"listening", cp.stderr)
        srv = self.files_server("--token-file", self.token_file, addr="0.0.0.0:0")
        self.stop(srv)
        sock_path = self.path("f.sock")
        srv = self.files_server(addr="unix:" + sock_path)
        cp = self.run_files("put", "unix:" + sock_path, write_random(self.path("u.bin"), 99))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(os.path.getsize(os.path.join(self.root, "u.bin")), 99)
        self.stop(srv)


# ---------------------------------------------------------- errors, usage

class Errors(FilesCase):

    def test_usage_errors_exit_2(self):
        cases = [(["put"], "ADDR"), (["put", "127.0.0.1:1"], "path"),
                 (["get", "127.0.0.1:1"], "path"), (["ls"], "ADDR"),
                 (["put", "bogus:addr:1", "x"], "bogus"), (["get", "127.0.0.1:1", "a", "b", "c"], "c"),
                 (["put", "127.0.0.1:1", "x", "a//b"], "empty"), (["get", "127.0.0.1:1", "/etc/x"], "absolute"),
                 (["ls", "127.0.0.1:1", "../up"], ".."), (["put", "127.0.0.1:1", "x", "--partial-ttl", "5"], "--partial-ttl"),
                 (["get", "127.0.0.1:1", "x", "--timeout", "never"], "never"),
                 (["serve", "files", "127.0.0.1:0"], "--root"),
                 (["serve", "files", "127.0.0.1:0", "--root", "/nonexistent/dir"], "/nonexistent/dir"),
                 (["serve", "echo", "127.0.0.1:0", "--read-only"], "files service only"),
                 (["serve", "echo", "127.0.0.1:0", "--token-file", "/x"], "exec and files"),
                 (["serve", "files", "127.0.0.1:0", "--root", "/tmp", "--partial-ttl", "0"], "partial-ttl")]
        for argv, word in cases:
            with self.subTest(argv=argv):
                cp = self.sockit(*argv, timeout=10)
                self.assertFails(cp, 2, word)

    def test_runtime_errors_exit_1_with_one_line(self):
        srv = self.files_server()
        os.mkdir(os.path.join(self.root, "d"))
        cp = self.run_files("get", srv.addr, "missing.bin", self.path("m"))
        self.assertFails(cp, 1, "missing.bin", "no such file")
        self.assertEqual(os.listdir(self.tmp).count("m"), 0)
        self.assertEqual(partials(self.tmp), [], "a failed get left an empty partial")
        cp = self.run_files("put", srv.addr, self.path("no-such-local"))
        self.assertFails(cp, 1, "no-such-local")
        cp = self.run_files("put", srv.addr, self.local)
        self.assertFails(cp, 1, "directory")
        cp = self.run_files("get", srv.addr, "d", self.path("d"))
        self.assertFails(cp, 1, "is a directory")
        cp = self.run_files("ls", srv.addr, "nothing-here")
        self.assertFails(cp, 1, "no such file")
        src = write_random(self.path("x"), 10)
        cp = self.run_files("put", "127.0.0.1:%d" % helpers.unused_tcp_port(), src, "--timeout", "2")
        self.assertFails(cp, 1, "refused")
        echo = self.serve("echo", "127.0.0.1:0", "--framing", "frame")
        cp = self.run_files("ls", echo.addr)
        self.assertFails(cp, 1, "echo service")
        exec_tok = self.path("tok")
        with open(exec_tok, "wb") as f:
            f.write(secrets.token_hex(32).encode() + b"\n")
        os.chmod(exec_tok, 0o600)
        ex = self.serve("exec", "127.0.0.1:0", "--token-file", exec_tok)
        cp = self.run_files("ls", ex.addr)
        self.assertFails(cp, 1, "not files")
        for s in (echo, ex, srv):
            self.stop(s)

    def test_permission_denied(self):
        os.chmod(self.tmp, 0o755)
        with open(os.path.join(self.root, "private"), "wb") as f:
            f.write(b"no")
        os.chmod(os.path.join(self.root, "private"), 0o600)
        os.mkdir(os.path.join(self.root, "locked"), 0o755)
        os.chmod(self.local, 0o777)
        srv = self.files_server(prefix=("setpriv", "--reuid=65534", "--regid=65534",
                                        "--clear-groups", "--"))
        cp = self.run_files("get", srv.addr, "private", self.path("p"))
        self.assertFails(cp, 1, "permission denied")
        src = write_random(os.path.join(self.local, "w.bin"), 1000)
        cp = self.run_files("put", srv.addr, src, "locked/w.bin")
        self.assertFails(cp, 1, "permission denied")
        self.assertEqual(os.listdir(os.path.join(self.root, "locked")), [])
        cp = self.run_files("put", srv.addr, src, "fine-not/w.bin")
        self.assertFails(cp, 1, "permission denied")
        self.assertFalse(os.path.exists(self.path("p")))
        self.stop(srv)


# ---------------------------------------------------- descriptors, bounds

class Resources(FilesCase):

    def test_no_descriptor_growth_after_thousands_of_transfers(self):
        srv = self.files_server()
        c = self.client(srv)
        c.put("warm.bin", b"w")
        c.close()
        base = srv.stable_fd_count()
        payload = os.urandom(3000)
        fam, _, sa = helpers.parse_addr(srv.addr)
        for i in range(3000):
            c = FilesClient.connect(sa)
            name = "n/%d.bin" % (i % 50)
            c.put(name, payload[: (i * 7) % 3000])
            c.get(name)
            if i % 10 == 0:
                with self.assertRaises(ServerError):
                    c.get("n/missing")
                c.list("n")
            if i % 25 == 0:
                # Vanish in the middle of an upload and of a download.
                # (a directory per 500: at most 64 partials wait in one)
                c.put_begin("cut%d/%d.bin" % (i // 500, i), 10000, os.urandom(16))
                c.put_from(0)
                c.send_data(b"x" * 100)
            elif i % 25 == 1:
                c.get_begin(name)
            c.close()
        self.assertLessEqual(srv.wait_fds_at_most(base), base,
                             "descriptors grew: %d -> %d" % (base, srv.fd_count()))
        self.stop(srv)

    def test_demo_set_includes_files(self):
        busy = []
        for port in range(9000, 9006):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
            finally:
                s.close()
        if busy:
            self.skipTest("demo ports in use: %s" % busy)
        p = self.popen([SOCKIT, "serve"], cwd=self.tmp, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = []
        while not any("Ctrl-C" in l for l in lines):
            line = p.stderr.readline()
            if not line:
                break
            lines.append(line.decode())
        text = "".join(lines)
        self.assertIn("files listening on 127.0.0.1:9004", text)
        self.assertIn("try files  ", text)
        self.assertRegex(text, r"try files .*put 127.0.0.1:9004 FILE --token-file sockit-exec.token")
        self.assertTrue(os.path.isdir(os.path.join(self.tmp, "sockit-files")))
        src = write_random(self.path("demo.bin"), 4321)
        cp = self.run_files("put", "127.0.0.1:9004", src)
        self.assertFails(cp, 1, "requires authentication")
        cp = self.run_files("put", "127.0.0.1:9004", src, "--token-file",
                            os.path.join(self.tmp, "sockit-exec.token"))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(os.path.getsize(os.path.join(self.tmp, "sockit-files", "demo.bin")), 4321)
        p.send_signal(15)
        out, err = p.communicate(timeout=20)
        self.assertEqual(p.returncode, 0, err[-2000:])
        for m in helpers.SANITIZER_MARKERS:
            self.assertNotIn(m.encode(), err)
