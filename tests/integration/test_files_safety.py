"""files hardening: what `sockit get` does to a LOCAL that is not a regular
file (FIFO, character device, /dev/stdout, symbolic links, sockets), and
what the server bounds: empty or abandoned partials, stalled transfers
(--stall-timeout), transfers per source, the resume-hash budget, idle
sessions, permission bits of replaced files and partials, GET never
opening a special file, and who may use a server without a token
(--no-auth, SO_PEERCRED on Unix sockets).

Real clients where they fit (Python sockets, the sockit commands); every
wait is bounded and readiness comes from log lines or the protocol.
"""

import hashlib
import os
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

MiB = 1 << 20


def partials(directory):
    # not the server's hash cache index (.sockit-partial.chunks/), meant to stay
    return sorted(n for n in os.listdir(directory)
                  if n.startswith(".sockit-partial.") and n != ".sockit-partial.chunks")


class Case(SockitTestCase):

    def setUp(self):
        super().setUp()
        self.root = self.path("root")
        os.mkdir(self.root)
        self.token = secrets.token_hex(32).encode()
        self.token_file = self.path("token")
        with open(self.token_file, "wb") as f:
            f.write(self.token + b"\n")
        os.chmod(self.token_file, 0o600)

    def files_server(self, *extra, addr="127.0.0.1:0"):
        return self.serve("files", addr, "--root", self.root, "--token-file", self.token_file,
                          *extra)

    def client(self, srv, source=None):
        """A protocol client, from source (another loopback address) if given."""
        fam, _, sa = helpers.parse_addr(srv.addr)
        if source is None:
            c = FilesClient.connect(sa, self.token, family=fam)
        else:
            s = socket.socket()
            s.settimeout(10)
            s.bind((source, 0))
            s.connect(sa)
            c = FilesClient(s)
            c.handshake(self.token)
        self._socks.append(c.sock)
        return c

    def put_file(self, name, data):
        with open(os.path.join(self.root, name), "wb") as f:
            f.write(data)

    def assertOneLine(self, cp, code, *words):
        err = cp.stderr.decode("utf-8", "replace")
        self.assertEqual(cp.returncode, code, "exit %d: %s" % (cp.returncode, err))
        self.assertEqual(len(err.strip().splitlines()), 1, err)
        for w in words:
            self.assertIn(w, err)


# ------------------------------------------------- sockit get: special LOCAL

class GetLocal(Case):

    def setUp(self):
        super().setUp()
        self.data = os.urandom(300000)
        self.put_file("f.bin", self.data)
        self.srv = self.files_server()

    def get(self, local, **kw):
        return self.sockit("get", self.srv.addr, "f.bin", local, "--token-file", self.token_file,
                           "--quiet", **kw)

    def assertNoPartials(self):
        self.assertEqual(partials(self.tmp), [])

    def test_fifo_with_a_reader_gets_the_bytes(self):
        fifo = self.path("pipe")
        os.mkfifo(fifo)
        got = []
        reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
        reader.start()
        cp = self.get(fifo)
        reader.join(20)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(got, [self.data])
        self.assertTrue(stat.S_ISFIFO(os.lstat(fifo).st_mode), "the FIFO was replaced")
        self.assertNoPartials()

    def test_char_device_twin_of_dev_null_stays_a_device(self):
        dev = self.path("null")
        try:
            os.mknod(dev, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        except PermissionError:
            self.skipTest("mknod needs root (CAP_MKNOD)")
        cp = self.get(dev)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        st = os.lstat(dev)
        self.assertTrue(stat.S_ISCHR(st.st_mode), "the device was replaced")
        self.assertEqual(st.st_rdev, os.makedev(1, 3))
        self.assertNoPartials()

    # /dev/null and /dev/stdout are the system's: a client that replaced
    # them (the bug these tests are for) would break every other process on
    # the machine. So they are made afresh, the same kinds (a 1,3 device and
    # a link to /proc/self/fd/1), on a tmpfs over /dev in a mount namespace
    # of the client's own.
    PRIVATE_DEV = (
        'set -e\n'
        'mount -t tmpfs -o size=1m,mode=755 sockit-test /dev\n'
        'mknod -m 666 /dev/null c 1 3\n'
        'ln -s /proc/self/fd/1 /dev/stdout\n'
        'cd "$OUT/.."\n'
        'set +e\n'
        '"$@"; rc=$?\n'
        'stat -c "%F %t %T" /dev/null > "$OUT/null"\n'
        'readlink /dev/stdout > "$OUT/stdout"\n'
        'ls -A /dev > "$OUT/ls"\n'
        'exit $rc\n')

    def get_in_private_dev(self, local):
        if os.geteuid() != 0:
            self.skipTest("needs root for a private /dev (unshare --mount)")
        out = self.path("out")
        os.mkdir(out)
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", self.PRIVATE_DEV,
                "sh", SOCKIT, "get", self.srv.addr, "f.bin", local, "--token-file",
                self.token_file, "--quiet"]
        cp = self.run_cmd(argv, env={"OUT": out})
        if not os.path.exists(os.path.join(out, "ls")):
            self.skipTest("cannot make a private /dev: %s" % cp.stderr.decode().strip())

        def read(name):
            with open(os.path.join(out, name)) as f:
                return f.read().strip()
        return cp, read("null"), read("stdout"), read("ls").split()

    def test_dev_null_itself_stays_a_device(self):
        cp, null, _, names = self.get_in_private_dev("/dev/null")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(null, "character special file 1 3", "/dev/null is no longer a device")
        self.assertEqual(sorted(names), ["null", "stdout"], "a partial was left in /dev")

    def test_dev_stdout_and_dash_write_to_standard_output(self):
        for local in ("/dev/stdout", "-"):
            with self.subTest(local=local):
                cp, null, link, names = self.get_in_private_dev(local)
                shutil.rmtree(self.path("out"))
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertEqual(cp.stdout, self.data)
                self.assertEqual(link, "/proc/self/fd/1", "/dev/stdout was replaced")
                self.assertEqual(sorted(names), ["null", "stdout"])

    def test_symlink_to_a_fifo_is_written_through(self):
        fifo = self.path("pipe")
        os.mkfifo(fifo)
        link = self.path("to-pipe")
        os.symlink(fifo, link)
        got = []
        reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
        reader.start()
        cp = self.get(link)
        reader.join(20)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(got, [self.data])
        self.assertTrue(os.path.islink(link))
        self.assertNoPartials()

    def test_symlink_to_a_file_or_nothing_is_refused(self):
        target = self.path("target.txt")
        with open(target, "wb") as f:
            f.write(b"keep me")
        link = self.path("link")
        os.symlink(target, link)
        cp = self.get(link)
        self.assertOneLine(cp, 1, "symbolic link")
        self.assertTrue(os.path.islink(link), "the link was renamed over")
        self.assertEqual(os.readlink(link), target)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"keep me")
        dangling = self.path("dangling")
        os.symlink(self.path("nowhere"), dangling)
        cp = self.get(dangling)
        self.assertOneLine(cp, 1, "symbolic link")
        self.assertTrue(os.path.islink(dangling))
        self.assertFalse(os.path.exists(self.path("nowhere")))
        self.assertNoPartials()

    def test_socket_is_refused(self):
        path = self.path("sock")
        s = socket.socket(socket.AF_UNIX)
        self.track(s)
        s.bind(path)
        cp = self.get(path)
        self.assertOneLine(cp, 1, "socket")
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))
        self.assertNoPartials()


# ------------------------------------------------------------- partials

class Partials(Case):

    def test_empty_puts_leave_nothing_and_do_not_block_the_directory(self):
        """64 PUTs that never send a byte."""
        srv = self.files_server()
        for i in range(64):
            c = self.client(srv)
            c.put_begin(b"x%d" % i, 1, os.urandom(16))
            c.close()
        wait_until(lambda: partials(self.root) == [], 10)
        self.assertEqual(partials(self.root), [], "empty partials were kept")
        src = self.path("hi.txt")
        with open(src, "wb") as f:
            f.write(b"hi\n")
        cp = self.sockit("put", srv.addr, src, "--token-file", self.token_file, "--quiet")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        with open(os.path.join(self.root, "hi.txt"), "rb") as f:
            self.assertEqual(f.read(), b"hi\n")

    def test_partials_left_behind_are_capped_per_source(self):
        srv = self.files_server()
        for d in ("a", "b"):
            os.mkdir(os.path.join(self.root, d))

        def vanish(name, source=None):
            c = self.client(srv, source=source)
            c.put_begin(name, 1000, os.urandom(16))
            c.put_from(0)
            c.send_data(b"v" * 10)  # written before the server sees the close
            c.close()

        for i in range(65):
            vanish(b"%s/u%d.bin" % (b"ab"[i % 2:i % 2 + 1], i))
        srv.wait_line(r"not kept, its address left 64 unfinished uploads")
        wait_until(lambda: len(partials(os.path.join(self.root, "a")) +
                               partials(os.path.join(self.root, "b"))) == 64, 10)
        self.assertEqual(len(partials(os.path.join(self.root, "a")) +
                             partials(os.path.join(self.root, "b"))), 64)
        # Another address still leaves its own for a resume.
        vanish(b"other.bin", source="127.0.0.2")
        srv.wait_line(r"other\.bin interrupted after 10 of 1000 bytes: the partial file is kept")
        self.assertEqual(len(partials(self.root)), 1)

    def test_a_partial_with_bytes_is_still_kept_for_a_resume(self):
        srv = self.files_server()
        c = self.client(srv)
        c.put_begin(b"half.bin", 1000, b"h" * 16)
        c.put_from(0)
        c.send_data(b"y" * 400)
        wait_until(lambda: [os.path.getsize(os.path.join(self.root, n))
                            for n in partials(self.root)] == [400], 10)
        c.close()
        srv.wait_line(r"interrupted after 400 of 1000 bytes")
        self.assertEqual(len(partials(self.root)), 1)


# ---------------------------------------------------------- permission bits

class Modes(Case):

    def test_replaced_file_keeps_its_mode_and_partials_are_0600(self):
        srv = self.files_server()
        priv = os.path.join(self.root, "priv.txt")
        with open(priv, "wb") as f:
            f.write(b"old")
        os.chmod(priv, 0o600)
        src = self.path("new.txt")
        with open(src, "wb") as f:
            f.write(b"new contents")
        os.chmod(src, 0o644)
        cp = self.sockit("put", srv.addr, src, "priv.txt", "--token-file", self.token_file)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(priv).st_mode), 0o600)
        with open(priv, "rb") as f:
            self.assertEqual(f.read(), b"new contents")
        os.chmod(priv, 0o640)
        self.client(srv).put(b"priv.txt", b"third")
        self.assertEqual(stat.S_IMODE(os.stat(priv).st_mode), 0o640)
        # While an upload arrives, its partial is readable by its owner only.
        c = self.client(srv)
        c.put_begin(b"big.bin", 1 << 20, b"b" * 16)
        c.put_from(0)
        c.send_data(b"z" * 1000)
        wait_until(lambda: [os.path.getsize(os.path.join(self.root, n))
                            for n in partials(self.root)] == [1000], 10)
        ps = partials(self.root)
        self.assertEqual(len(ps), 1)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.root, ps[0])).st_mode), 0o600)
        # A new file gets 0666 less the server's umask (the tests' own).
        mask = os.umask(0)
        os.umask(mask)
        self.client(srv).put(b"fresh.txt", b"f")
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.root, "fresh.txt")).st_mode),
                         0o666 & ~mask)


# --------------------------------------------- stalls, per-source caps, idle

class Stalls(Case):

    def stalled_get(self, srv, name, source=None):
        """A GET whose client never reads (a small receive buffer)."""
        s = socket.socket()
        s.settimeout(10)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        if source:
            s.bind((source, 0))
        s.connect(helpers.parse_addr(srv.addr)[2])
        self._socks.append(s)
        c = FilesClient(s)
        c.handshake(self.token)
        c.get_begin(name)
        return c

    def test_stalled_get_and_put_are_ended(self):
        with open(os.path.join(self.root, "big.bin"), "wb") as f:
            f.truncate(64 * MiB)
        srv = self.files_server("--stall-timeout", "1")
        t0 = time.monotonic()
        g = self.stalled_get(srv, "big.bin")
        p = self.client(srv)
        p.put_begin(b"silent.bin", 5000, b"s" * 16)
        p.put_from(0)  # ... and then nothing
        srv.wait_line(r"get big\.bin stalled: nothing moved .*--stall-timeout", timeout=10)
        srv.wait_line(r"put silent\.bin stalled: nothing moved .*--stall-timeout", timeout=10)
        self.assertLess(time.monotonic() - t0, 8)
        self.assertTrue(helpers.closed_by_peer(p.sock))
        srv.wait_line(r"close .*reason=transfer stalled \(--stall-timeout\)", count=2)
        # The ended transfers freed their slots: the server still serves.
        self.assertEqual(self.client(srv).stat("big.bin")["size"], 64 * MiB)
        self.assertEqual(partials(self.root), [], "an empty stalled upload kept its partial")
        del g

    def test_transfers_per_source_are_capped(self):
        with open(os.path.join(self.root, "big.bin"), "wb") as f:
            f.truncate(64 * MiB)
        self.put_file("small.txt", b"small")
        srv = self.files_server("--max-transfers-per-source", "3")
        held = [self.stalled_get(srv, "big.bin") for _ in range(3)]
        c = self.client(srv)
        with self.assertRaises(ServerError) as cm:
            c.get_begin("small.txt")
        self.assertEqual(cm.exception.code, fc.E_BUSY, cm.exception.text)
        self.assertIn("--max-transfers-per-source", cm.exception.text)
        # Another source is served meanwhile (127.0.0.2 is loopback too).
        other = self.client(srv, source="127.0.0.2")
        self.assertEqual(other.get("small.txt")[0], b"small")
        # A slot freed is a slot back.
        held.pop().sock.close()
        srv.wait_line(r"close 127\.0\.0\.1:\d+ ")
        wait_until(lambda: self._try_get(srv), 10)
        self.assertTrue(self._try_get(srv))

    def _try_get(self, srv):
        try:
            return self.client(srv).get("small.txt")[0] == b"small"
        except ServerError:
            return False

    def test_idle_session_is_closed(self):
        srv = self.files_server("--idle-timeout", "1", "--stall-timeout", "5")
        c = self.client(srv)
        c.stat("")
        t0 = time.monotonic()
        self.assertTrue(helpers.closed_by_peer(c.sock, timeout=10))
        self.assertLess(time.monotonic() - t0, 5)
        srv.wait_line(r"reason=idle timeout")
        # The tail of a download that a slow reader is still taking is not
        # idleness, though the server has queued all of it at once.
        with open(os.path.join(self.root, "mid.bin"), "wb") as f:
            f.truncate(16 * MiB)
        c = self.client(srv)
        size, start = c.get_begin("mid.bin")
        got = 0
        t0 = time.monotonic()
        while True:
            time.sleep(0.4)
            t, body = c.expect(fc.DATA, fc.GET_END)
            if t == fc.GET_END:
                break
            got += len(body)
        self.assertEqual(got, 16 * MiB)
        self.assertGreater(time.monotonic() - t0, 1.5)
        # A transfer whose reader pauses longer than --idle-timeout (but less
        # than --stall-timeout) is not idle either. (A new connection: the
        # last one may rightly be closed as idle once its tail has left.)
        c = self.client(srv)
        size, start = c.get_begin("mid.bin")
        time.sleep(2.5)
        data, _ = c.get_rest(size, start)
        self.assertEqual(len(data), 16 * MiB)

    def test_defaults_are_in_force_and_logged(self):
        srv = self.files_server()
        srv.wait_line(r"files: sessions idle for 300 s are closed \(--idle-timeout\), transfers "
                      r"stalled for 60 s are ended \(--stall-timeout\), at most 16 at once per "
                      r"address")
        srv = self.files_server("--idle-timeout", "0", "--stall-timeout", "2",
                                "--max-transfers-per-source", "3")
        srv.wait_line(r"files: idle sessions are kept \(--idle-timeout 0\), transfers stalled "
                      r"for 2 s are ended .*at most 3 at once")

    def test_help_documents_the_defaults(self):
        cp = self.sockit("serve", "--help")
        out = cp.stdout.decode()
        for word in ("--stall-timeout SEC", "default 60", "--max-transfers-per-source",
                     "default 16", "default 300", "--no-auth"):
            self.assertIn(word, out)


# ------------------------------------------------------ resume-hash budget

class HashBudget(Case):

    def test_wrong_resume_offers_are_rate_limited(self):
        """GET with have = size and a wrong hash."""
        size = 32 * MiB
        with open(os.path.join(self.root, "big.bin"), "wb") as f:
            f.write(os.urandom(size))
        self.put_file("small.txt", b"small")
        srv = self.files_server()
        fam, _, sa = helpers.parse_addr(srv.addr)
        stop = time.monotonic() + 3.0
        answered = [0]
        lock = threading.Lock()

        def attacker():
            while time.monotonic() < stop:
                c = FilesClient.connect(sa, self.token, family=fam)
                try:
                    c.sock.settimeout(10)
                    # have = size with a wrong hash (the hash of zeros).
                    c.send(fc.GET, struct.pack("!Q", size) + b"\0" * 32 + b"big.bin")
                    c.expect(fc.GET_READY)
                    with lock:
                        answered[0] += 1
                except (OSError, EOFError, ServerError):
                    pass
                finally:
                    c.close()

        cpu0 = srv.cpu_seconds()
        threads = [threading.Thread(target=attacker, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        # Another source is served meanwhile, promptly.
        time.sleep(0.5)
        t0 = time.monotonic()
        self.assertEqual(self.client(srv, source="127.0.0.2").get("small.txt")[0], b"small")
        self.assertLess(time.monotonic() - t0, 2.0)
        for t in threads:
            t.join(30)
        cpu = srv.cpu_seconds() - cpu0
        # The budget: 64 MiB/s after a 64 MiB burst, so about 256 MiB of
        # hashing in 3 s (8 answers of 32 MiB); unbounded it is ~100.
        self.assertLessEqual(answered[0], 14, "%d full-file hashes in 3 s" % answered[0])
        self.assertLess(cpu, 2.5, "server spent %.2f CPU-s" % cpu)


# ----------------------------------------------------- GET opens no FIFO

class GetOpensNothingSpecial(Case):

    def test_get_of_a_fifo_does_not_open_it(self):
        fifo = os.path.join(self.root, "pipe")
        os.mkfifo(fifo)
        # A writer blocks in open() until some reader opens the FIFO: if the
        # server opened it (even O_NONBLOCK), the writer would go on.
        writer = self.popen([sys.executable, "-c", "open(%r, 'wb').close()" % fifo])
        time.sleep(0.2)
        srv = self.files_server()
        with self.assertRaises(ServerError) as cm:
            self.client(srv).get_begin("pipe")
        self.assertEqual(cm.exception.code, fc.E_TYPE)
        time.sleep(0.5)
        self.assertIsNone(writer.poll(), "the server opened the FIFO")
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # release the writer
        writer.wait(10)
        os.close(fd)


# --------------------------------------------------------- no token, peers

class NoToken(Case):

    def test_loopback_without_a_token_needs_no_auth(self):
        cp = self.sockit("serve", "files", "127.0.0.1:0", "--root", self.root, timeout=10)
        self.assertOneLine(cp, 2, "--token-file", "--no-auth")
        for addr in ("0.0.0.0:0", "unix:@sockit-test-%d" % os.getpid()):
            with self.subTest(addr=addr):
                cp = self.sockit("serve", "files", addr, "--root", self.root, timeout=10)
                self.assertOneLine(cp, 2, "--token-file")
        cp = self.sockit("serve", "files", "0.0.0.0:0", "--root", self.root, "--no-auth",
                         timeout=10)
        self.assertOneLine(cp, 2, "--token-file")
        cp = self.sockit("serve", "files", "127.0.0.1:0", "--root", self.root, "--no-auth",
                         "--token-file", self.token_file, timeout=10)
        self.assertOneLine(cp, 2, "--no-auth")

    def test_no_auth_serves_loopback_and_says_so(self):
        srv = self.serve("files", "127.0.0.1:0", "--root", self.root, "--no-auth")
        srv.wait_line(r"--no-auth: .*every local user")
        src = self.path("a.txt")
        with open(src, "wb") as f:
            f.write(b"abc")
        cp = self.sockit("put", srv.addr, src)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        srv = self.serve("files", "unix:@sockit-test-na-%d" % os.getpid(), "--root", self.root,
                         "--no-auth")
        cp = self.sockit("ls", srv.addr)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn(b"a.txt", cp.stdout)

    def test_unix_socket_without_a_token_serves_only_our_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to run a client as another user (nobody)")
        os.chmod(self.tmp, 0o755)
        path = self.path("f.sock")
        srv = self.serve("files", "unix:" + path, "--root", self.root)
        os.chmod(path, 0o777)  # the file's permissions would let anyone in
        code = ("import socket,struct,sys\n"
                "s=socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(%r)\n"
                "p=b'\\x01SKIT\\x01\\x05files'; s.sendall(struct.pack('!I',len(p))+p)\n"
                "b=b''\n"
                "while True:\n"
                "    c=s.recv(4096)\n"
                "    if not c: break\n"
                "    b+=c\n"
                "sys.stdout.write(b.hex())\n" % path)
        python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        cp = subprocess.run([python, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=20,
                            preexec_fn=lambda: (os.setgroups([]), os.setgid(65534),
                                                os.setuid(65534)))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        reply = bytes.fromhex(cp.stdout.decode())
        self.assertGreater(len(reply), 5)
        self.assertEqual(reply[4], fc.ERROR, reply)
        srv.wait_line(r"refused: peer uid 65534 is not the server's")
        # Our own user is served.
        c = FilesClient.connect(path, None, family=socket.AF_UNIX)
        self._socks.append(c.sock)
        self.assertEqual(c.list(""), [])
