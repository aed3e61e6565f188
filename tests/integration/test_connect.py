"""`sockit connect`: pipe mode like nc (raw, frame, line), datagram
mode with missing replies, refused connections, and the interactive client
under a pseudo-terminal."""

import os
import select
import socket
import subprocess
import time

from helpers import (SOCKIT, SockitTestCase, child_env, ipv6_loopback_available,
                     unused_tcp_port)


class PipeMode(SockitTestCase):

    def test_raw_through_echo(self):
        srv = self.serve("echo", "127.0.0.1:0")
        data = os.urandom(200 * 1024)
        cp = self.sockit("connect", srv.addr, input=data, timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(len(cp.stdout), len(data))
        self.assertTrue(cp.stdout == data, "output differs from input")
        self.assertClean(cp)
        # stdin EOF became a half-close: the server saw "peer closed" after all bytes.
        srv.wait_line(r"^sockit: echo close \S+ in=%d out=%d reason=peer closed" % (len(data), len(data)))

    def test_frame_mode(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame")
        cp = self.sockit("connect", srv.addr, "--framing", "frame",
                         input="hello\nworld\nlast 你好\n".encode(), timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, "hello\nworld\nlast 你好\n".encode())
        # On the wire: three frames, 4-byte header each, no newlines.
        n = (4 + 5) + (4 + 5) + (4 + len("last 你好".encode()))
        srv.wait_line(r"^sockit: echo close \S+ in=%d out=%d " % (n, n))

    def test_frame_mode_against_upper(self):
        srv = self.serve("upper", "127.0.0.1:0", "--framing", "frame")
        cp = self.sockit("connect", srv.addr, "--framing", "frame", input=b"abc\ndef\n", timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"ABC\nDEF\n")

    def test_line_mode(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "line")
        cp = self.sockit("connect", srv.addr, "--framing", "line", input=b"a\nbb\r\nccc\n", timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"a\nbb\nccc\n")

    def test_unix_path(self):
        path = self.path("c.sock")
        srv = self.serve("upper", "unix:" + path)
        cp = self.sockit("connect", "unix:" + path, input=b"over a unix socket\n", timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"OVER A UNIX SOCKET\n")

    def test_greet_prints_greeting(self):
        srv = self.serve("greet", "127.0.0.1:0")
        cp = self.sockit("connect", srv.addr, input=b"", timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"Thank you for connecting\r\n")

    def test_exits_when_peer_closes_with_stdin_open(self):
        srv = self.serve("greet", "127.0.0.1:0", "--message", "bye\n")
        p = self.popen([SOCKIT, "connect", srv.addr], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            out, err = p.communicate(timeout=10)     # stdin is never closed by us first
        except subprocess.TimeoutExpired:
            p.kill()
            self.fail("sockit connect did not exit when the peer closed")
        self.assertEqual(out, b"bye\n")
        self.assertEqual(p.returncode, 0, err)

    def test_refused_connection(self):
        port = unused_tcp_port()
        cp = self.sockit("connect", "127.0.0.1:%d" % port, "--timeout", "2", input=b"x\n", timeout=20)
        self.assertEqual(cp.returncode, 1)
        lines = cp.stderr.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, "expected one line on stderr, got %r" % lines)
        self.assertEqual(cp.stdout, b"")

    def test_refused_unix(self):
        cp = self.sockit("connect", "unix:" + self.path("nobody.sock"), input=b"x\n", timeout=20)
        self.assertEqual(cp.returncode, 1)
        self.assertEqual(len(cp.stderr.decode().strip().splitlines()), 1, cp.stderr)


class HappyEyeballs(SockitTestCase):
    """A name listing ::1 before 127.0.0.1 (as Debian 12's /etc/hosts does for
    localhost) while the server listens on 127.0.0.1 only: the client tries
    the next address when ::1 refuses, and starts it beside a ::1 attempt
    that hangs (RFC 8305). Each run gets its own /etc/hosts in a private
    mount namespace (unshare -m, root only)."""

    NAME = "sockit-he-test"

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("needs root for a private mount namespace (unshare -m)")
        if not ipv6_loopback_available():
            self.skipTest("no IPv6 loopback here")
        if subprocess.run(["unshare", "-m", "true"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=10).returncode != 0:
            self.skipTest("unshare -m is not permitted here")
        self.hosts = self.path("hosts")
        with open(self.hosts, "w") as f:
            f.write("::1 %s localhost\n127.0.0.1 %s localhost\n" % (self.NAME, self.NAME))

    def sockit_with_hosts(self, *args, input=None, timeout=30):
        """Runs `sockit ARGS` with self.hosts as /etc/hosts."""
        script = 'mount --bind "$1" /etc/hosts && shift && exec "$@"'
        return self.run_cmd(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                             "sh", self.hosts, SOCKIT] + list(args), input=input, timeout=timeout)

    def blackhole(self, port):
        """[::1]:port that never answers: a backlog-0 listener whose accept
        queue is full, so the kernel drops every further SYN (loopback)."""
        lst = self.track(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
        lst.bind(("::1", port))
        lst.listen(0)
        for _ in range(8):
            c = self.track(socket.socket(socket.AF_INET6, socket.SOCK_STREAM))
            c.setblocking(False)
            c.connect_ex(("::1", port))
            _, w, _ = select.select([], [c], [], 0.3)
            if not w or c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                return lst          # this SYN went unanswered: the queue is full
        self.fail("the backlog-0 queue never filled")

    def test_moves_on_when_the_first_address_refuses(self):
        srv = self.serve("echo", "127.0.0.1:0")
        port = int(srv.addr.rpartition(":")[2])
        cp = self.sockit_with_hosts("connect", "%s:%d" % (self.NAME, port), "--timeout", "5",
                                    input=b"first refused\n")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"first refused\n")
        self.assertClean(cp)

    def test_starts_the_next_address_beside_a_pending_one(self):
        srv = self.serve("echo", "127.0.0.1:0")
        port = int(srv.addr.rpartition(":")[2])
        self.blackhole(port)
        t0 = time.monotonic()
        cp = self.sockit_with_hosts("connect", "%s:%d" % (self.NAME, port), "--timeout", "5",
                                    input=b"first pending\n")
        took = time.monotonic() - t0
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"first pending\n")
        # Not the 5 s timeout (nor a 1 s SYN retransmission) on [::1].
        self.assertLess(took, 4.0)
        self.assertClean(cp)

    def test_tls_to_localhost_listed_ipv6_first(self):
        cp = self.sockit("cert", self.path("srv"))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        crt, key = self.path("srv.crt"), self.path("srv.key")
        srv = self.serve("echo", "tls://127.0.0.1:0", "--cert", crt, "--key", key)
        port = int(srv.addr.rpartition(":")[2])
        cp = self.sockit_with_hosts("connect", "tls://localhost:%d" % port, "--ca", crt,
                                    "--timeout", "5", input=b"hello over tls\n")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"hello over tls\n")
        self.assertClean(cp)


class DatagramMode(SockitTestCase):

    def test_udp_lines_are_datagrams(self):
        srv = self.serve("upper", "udp://127.0.0.1:0")
        cp = self.sockit("connect", srv.addr, input=b"one\ntwo words\nthree\n", timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"ONE\nTWO WORDS\nTHREE\n")

    def test_udp_datagram_boundaries(self):
        # Our own UDP server sees each line as one datagram without "\n".
        srv_sock = self.track(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        srv_sock.bind(("127.0.0.1", 0))
        srv_sock.settimeout(10)
        port = srv_sock.getsockname()[1]
        p = self.popen([SOCKIT, "connect", "udp://127.0.0.1:%d" % port, "--timeout", "5"],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdin.write(b"alpha\nbeta\n")
        p.stdin.close()
        got = []
        for _ in range(2):
            data, peer = srv_sock.recvfrom(1000)
            got.append(data)
            srv_sock.sendto(b"re:" + data, peer)
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.fail("sockit connect udp did not exit after its replies")
        out, err = p.stdout.read(), p.stderr.read()   # small: they fit in the pipes
        self.assertEqual(got, [b"alpha", b"beta"])
        self.assertEqual(out, b"re:alpha\nre:beta\n")
        self.assertEqual(p.returncode, 0, err)

    def test_udp_missing_reply(self):
        silent = self.track(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        silent.bind(("127.0.0.1", 0))                # receives, never answers
        silent.settimeout(5)
        port = silent.getsockname()[1]
        t0 = time.monotonic()
        cp = self.sockit("connect", "udp://127.0.0.1:%d" % port, "--timeout", "1", input=b"ping\n", timeout=20)
        elapsed = time.monotonic() - t0
        self.assertEqual(silent.recv(100), b"ping")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("no reply", cp.stderr.decode())
        self.assertRegex(cp.stderr.decode(), r"sockit: no reply within 1(\.0+)? s")
        self.assertLess(elapsed, 1 + 2, "a missing reply must be reported within --timeout")

    def test_udp_port_nobody_listens(self):
        port = unused_tcp_port()   # nothing bound on this UDP port either, most likely
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            self.skipTest("port %d taken for UDP" % port)
        finally:
            probe.close()
        t0 = time.monotonic()
        cp = self.sockit("connect", "udp://127.0.0.1:%d" % port, "--timeout", "1", input=b"ping\n", timeout=20)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertTrue(cp.stderr.strip(), "no message for a missing reply")
        self.assertLess(time.monotonic() - t0, 1 + 2)

    def test_unixgram(self):
        spath = self.path("dg.sock")
        srv = self.serve("echo", "unixgram:" + spath)
        cp = self.sockit("connect", "unixgram:" + spath, input=b"first\nsecond\n", timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"first\nsecond\n")


class PtySession:
    """sockit connect on a pseudo-terminal: stdin, stdout and stderr are the tty."""

    def __init__(self, test, argv):
        master, slave = os.openpty()
        self.master = master
        self.buf = b""
        self.proc = test.popen(argv, stdin=slave, stdout=slave, stderr=slave,
                               start_new_session=True, env=child_env({"TERM": "dumb"}))
        os.close(slave)
        test.addCleanup(self.close)

    def close(self):
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def read_some(self, timeout):
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:          # EIO: the child side is closed
            data = b""
        self.buf += data
        return bool(data)

    def expect(self, token, timeout=10.0):
        """Waits until token appears in the output after what was consumed."""
        deadline = time.monotonic() + timeout
        while token not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or (not self.read_some(left) and self.proc.poll() is not None):
                raise AssertionError("did not see %r on the terminal; transcript: %r" % (token, self.buf))
        i = self.buf.index(token) + len(token)
        seen, self.buf = self.buf[:i], self.buf[i:]
        return seen

    def type(self, text):
        os.write(self.master, text)

    def wait(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.read_some(0.05)                  # keep draining so it never blocks on output
        return self.proc.poll()


class Interactive(SockitTestCase):

    def test_prompt_replies_empty_line_and_q(self):
        srv = self.serve("upper", "127.0.0.1:0")
        t = PtySession(self, [SOCKIT, "connect", srv.addr])
        t.expect(b"> ")
        t.type(b"hello\r")
        t.expect(b"HELLO")
        t.type(b"\r")                            # an empty line: not sent
        t.expect(b"> ")
        t.type(b"world\r")
        t.expect(b"WORLD")
        t.type(b"q\r")
        rc = t.wait(10)
        self.assertEqual(rc, 0, "interactive client did not exit 0 on 'q' (transcript %r)" % t.buf)
        n_in, n_out, _ = self._close_counts(srv)
        self.assertEqual(n_in, len(b"hello\n") + len(b"world\n"),
                         "server received %d bytes: the empty line or 'q' was sent" % n_in)
        for m in ("LeakSanitizer", "ERROR: AddressSanitizer", "runtime error"):
            self.assertNotIn(m.encode(), t.buf)

    def _close_counts(self, srv):
        m = srv.wait_line(r"^sockit: \S+ close \S+ in=(\d+) out=(\d+) reason=(.*)$")[0]
        return int(m.group(1)), int(m.group(2)), m.group(3)

    def test_ctrl_d_quits(self):
        srv = self.serve("echo", "127.0.0.1:0")
        t = PtySession(self, [SOCKIT, "connect", srv.addr])
        t.expect(b"> ")
        t.type(b"abc\r")
        t.expect(b"abc")
        t.type(b"\x04")
        self.assertEqual(t.wait(10), 0)

    def test_interactive_frames(self):
        srv = self.serve("upper", "127.0.0.1:0", "--framing", "frame")
        t = PtySession(self, [SOCKIT, "connect", srv.addr, "--framing", "frame"])
        t.expect(b"> ")
        t.type(b"framed text\r")
        t.expect(b"FRAMED TEXT")
        t.type(b"q\r")
        self.assertEqual(t.wait(10), 0)
        n_in, n_out, _ = self._close_counts(srv)
        self.assertEqual((n_in, n_out), (4 + 11, 4 + 11))

    def test_interactive_greet(self):
        srv = self.serve("greet", "127.0.0.1:0", "--message", "welcome, terminal\r\n")
        t = PtySession(self, [SOCKIT, "connect", srv.addr])
        t.expect(b"welcome, terminal")
        # The server closed: the client ends by itself (exit 0, peer closed).
        self.assertEqual(t.wait(10), 0)
