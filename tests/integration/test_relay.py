"""`sockit relay LISTEN TARGET`: every accepted connection joined to a new
connection to TARGET, both ways, until both directions are closed.

Real peers: `sockit serve echo` and Python targets written here (they check
what arrives byte by byte), Python sockets and ssl, `openssl s_client`.
Covered: TCP -> unix echo, unix:@ and IPv6 listeners, tls:// termination,
a tls:// target verified by --pin (and refused with a wrong one), PROXY v1
and v2 byte for byte, half-close both ways, resets carried across, target
down / slow (--connect-timeout), a client that never reads while the target
floods (bounded RSS), 1,000 concurrent pairs with descriptors back to the
baseline, --allow/--deny, --idle-timeout, usage errors.

Loopback and port 0 (or private Unix paths) only; bounded waits.
"""

import hashlib
import os
import re
import resource
import select
import socket
import ssl
import struct
import subprocess
import threading
import time
import unittest

import helpers
from helpers import SOCKIT, IO_TIMEOUT, Server, SockitTestCase, wait_until

FPR_RE = re.compile(rb"SHA256 fingerprint \(for --pin\): ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})")
CLOSE_RE = (r"^sockit: relay close (\S+) -> (\S+) up=(\d+) down=(\d+) time=(\d+\.\d{3})s "
            r"reason=(.*)$")


def tls_send_and_read(s, data, want, deadline):
    """Send all of data on the TLS socket s while reading what comes back,
    until `want` bytes have arrived, the peer closes, or the deadline passes."""
    s.setblocking(False)
    sent, got = 0, bytearray()
    poller = select.poll()
    while len(got) < want and time.monotonic() < deadline:
        events = select.POLLIN | (select.POLLOUT if sent < len(data) else 0)
        poller.register(s.fileno(), events)
        ready = select.POLLIN if s.pending() else 0   # decrypted bytes already held
        if not ready:
            for _, ev in poller.poll(500):
                ready |= ev
        if sent < len(data) and ready & select.POLLOUT:
            try:
                sent += s.send(data[sent:sent + 65536])
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                pass
        if ready & (select.POLLIN | select.POLLHUP | select.POLLERR):
            try:
                b = s.recv(1 << 16)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            if not b:
                break
            got += b
    s.setblocking(True)
    return bytes(got)


class Target(threading.Thread):
    """A Python TCP or Unix target: accepts connections and runs handler(conn)
    for each in its own thread; records what each handler returns."""

    def __init__(self, handler, family=socket.AF_INET, path=None, backlog=64):
        super().__init__(daemon=True)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_UNIX:
            self.sock.bind(path)
            self.addr = "unix:" + path
        else:
            self.sock.bind(("127.0.0.1", 0))
            self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.listen(backlog)
        self.sock.settimeout(0.2)
        self.handler = handler
        self.results = []
        self.accepted = 0
        self.stop_flag = False
        self.threads = []

    def run(self):
        while not self.stop_flag:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            c.settimeout(IO_TIMEOUT)
            t = threading.Thread(target=self._one, args=(c,), daemon=True)
            t.start()
            self.threads.append(t)

    def _one(self, c):
        try:
            self.results.append(self.handler(c))
        except Exception as e:  # recorded: the test asserts on results
            self.results.append(e)
        finally:
            c.close()

    def close(self):
        self.stop_flag = True
        self.join(timeout=5)
        self.sock.close()


def read_to_eof(s, limit=256 << 20):
    out = bytearray()
    while len(out) < limit:
        b = s.recv(1 << 16)
        if not b:
            break
        out += b
    return bytes(out)


class RelayBase(SockitTestCase):

    def relay(self, *args, ready=1):
        """Starts `sockit relay ARGS` (the command itself, not serve)."""
        srv = Server(list(args), ready=ready)
        srv.argv = helpers.SERVER_WRAPPER + [SOCKIT, "relay"] + list(args)
        self._servers.append(srv)
        srv.start()
        return srv

    def target(self, handler, **kw):
        t = Target(handler, **kw)
        t.start()
        self.addCleanup(t.close)
        return t

    def echo_unix(self):
        path = self.path("echo.sock")
        return self.serve("echo", "unix:" + path), "unix:" + path

    def close_line(self, srv, client_port, timeout=IO_TIMEOUT):
        m = srv.wait_line(r"^sockit: relay close \S*:%d -> " % client_port, timeout)[0]
        m = re.match(CLOSE_RE, m.string)
        self.assertIsNotNone(m, "bad close line")
        return m


class TestStreams(RelayBase):

    def test_tcp_to_unix_echo_bulk(self):
        _, target = self.echo_unix()
        srv = self.relay("127.0.0.1:0", target)
        data = os.urandom(8 << 20)
        s = self.connect(srv.addr)
        port = s.getsockname()[1]
        got = bytearray()

        def reader():
            got.extend(read_to_eof(s))
        t = threading.Thread(target=reader)
        t.start()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        t.join(timeout=30)
        self.assertFalse(t.is_alive())
        self.assertEqual(hashlib.sha256(got).digest(), hashlib.sha256(data).digest())
        m = self.close_line(srv, port)
        self.assertEqual(m.group(2), target)
        self.assertEqual(int(m.group(3)), len(data))
        self.assertEqual(int(m.group(4)), len(data))
        self.assertEqual(m.group(6), "closed")
        srv.stop_checked(self)

    def test_abstract_unix_listen_to_python_target(self):
        seen = []

        def handler(c):
            d = read_to_eof(c)
            seen.append(d)
            c.sendall(d[::-1])
            return d
        t = self.target(handler)
        name = "sockit-relay-test-%d" % os.getpid()
        srv = self.relay("unix:@" + name, t.addr)
        s = self.track(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        s.settimeout(IO_TIMEOUT)
        s.connect("\0" + name)
        s.sendall(b"abcdef")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(read_to_eof(s), b"fedcba")
        self.assertTrue(wait_until(lambda: seen == [b"abcdef"], IO_TIMEOUT))
        srv.stop_checked(self)

    @unittest.skipUnless(helpers.ipv6_loopback_available(), "no IPv6 loopback")
    def test_ipv6_listen(self):
        _, target = self.echo_unix()
        srv = self.relay("[::1]:0", target)
        self.assertTrue(srv.addr.startswith("[::1]:"), srv.addr)
        s = self.connect(srv.addr)
        s.sendall(b"over six")
        self.assertEqual(helpers.recv_exact(s, 8), b"over six")
        s.close()
        srv.stop_checked(self)


class TestHalfCloseAndReset(RelayBase):

    def test_client_half_close_still_receives(self):
        """The client shuts down its write side; the target sees EOF, then
        answers, and the client gets the whole answer."""
        answer = os.urandom(3 << 20)

        def handler(c):
            d = read_to_eof(c)
            c.sendall(answer)
            return d
        t = self.target(handler)
        srv = self.relay("127.0.0.1:0", t.addr)
        s = self.connect(srv.addr)
        s.sendall(b"question")
        s.shutdown(socket.SHUT_WR)
        got = read_to_eof(s)
        self.assertEqual(len(got), len(answer))
        self.assertEqual(got, answer)
        self.assertTrue(wait_until(lambda: t.results == [b"question"], IO_TIMEOUT))
        srv.stop_checked(self)

    def test_target_half_close_client_still_sends(self):
        """The target says its piece and shuts down its write side; the
        client sees EOF and can still send, and the target gets it all."""
        def handler(c):
            c.sendall(b"banner\n")
            c.shutdown(socket.SHUT_WR)
            return read_to_eof(c)
        t = self.target(handler)
        srv = self.relay("127.0.0.1:0", t.addr)
        s = self.connect(srv.addr)
        self.assertEqual(read_to_eof(s), b"banner\n")
        payload = os.urandom(1 << 20)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        self.assertTrue(wait_until(lambda: len(t.results) == 1, IO_TIMEOUT))
        self.assertEqual(t.results[0], payload)
        srv.stop_checked(self)

    def test_target_reset_reaches_client(self):
        def handler(c):
            c.recv(10)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return "reset"
        t = self.target(handler)
        srv = self.relay("127.0.0.1:0", t.addr)
        s = self.connect(srv.addr)
        port = s.getsockname()[1]
        s.sendall(b"x")
        with self.assertRaises(ConnectionResetError):
            s.recv(10)
        m = self.close_line(srv, port)
        self.assertIn("reset", m.group(6))
        srv.stop_checked(self)

    def test_client_reset_reaches_target(self):
        ready = threading.Event()

        def handler(c):
            c.sendall(b"hi")
            ready.set()
            try:
                c.settimeout(IO_TIMEOUT)
                d = c.recv(10)
                return "eof" if d == b"" else d
            except ConnectionResetError:
                return "reset"
        t = self.target(handler)
        srv = self.relay("127.0.0.1:0", t.addr)
        s = self.connect(srv.addr)
        self.assertEqual(helpers.recv_exact(s, 2), b"hi")
        self.assertTrue(ready.wait(IO_TIMEOUT))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
        self.assertTrue(wait_until(lambda: t.results, IO_TIMEOUT))
        self.assertEqual(t.results, ["reset"])
        srv.stop_checked(self)


class TestPeerGone(RelayBase):

    def test_client_gone_mid_flood_relay_survives(self):
        """Writing to a client that is gone fails with EPIPE, and splice(2)
        raises SIGPIPE doing so: the relay must live on and serve."""
        def handler(c):
            chunk = b"z" * (1 << 16)
            try:
                for _ in range(2000):
                    c.sendall(chunk)
            except OSError:
                return "stopped"
            return "done"
        t = self.target(handler)
        srv = self.relay("127.0.0.1:0", t.addr)
        for _ in range(3):
            s = self.connect(srv.addr)
            self.assertEqual(len(helpers.recv_exact(s, 1000)), 1000)
            # A FIN first puts the relay's socket in CLOSE_WAIT, where the
            # reset that follows makes its next write fail with EPIPE.
            s.shutdown(socket.SHUT_WR)
            time.sleep(0.2)  # not readiness: time for the FIN to be taken in
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
        self.assertTrue(wait_until(lambda: len(t.results) == 3, 10), t.results)
        self.assertEqual(t.results, ["stopped"] * 3)
        self.assertTrue(srv.running())
        s = self.connect(srv.addr)
        self.assertEqual(len(helpers.recv_exact(s, 10)), 10)
        s.close()
        srv.stop_checked(self)


class TestCopyModeTlsTarget(RelayBase):
    """The same half-close and reset rules in copy mode: a plain client,
    a tls:// target (a Python ssl server), so bytes pass the library's TLS."""

    def setUp(self):
        super().setUp()
        cp = self.sockit("cert", self.path("t"))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.fpr = FPR_RE.search(cp.stdout).group(1).decode()
        self.sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.sctx.load_cert_chain(self.path("t.crt"), self.path("t.key"))

    def tls_target(self, handler):
        def wrapped(c):
            return handler(self.sctx.wrap_socket(c, server_side=True))
        return self.target(wrapped)

    def test_half_close_through_tls(self):
        answer = os.urandom(1 << 20)

        def handler(c):
            d = read_to_eof(c)  # ends at the relay's close_notify
            c.sendall(answer)
            c.unwrap()
            return d
        t = self.tls_target(handler)
        srv = self.relay("127.0.0.1:0", "tls://" + t.addr, "--pin", self.fpr)
        s = self.connect(srv.addr)
        port = s.getsockname()[1]
        s.sendall(b"question")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(read_to_eof(s), answer)
        self.assertTrue(wait_until(lambda: t.results, IO_TIMEOUT))
        self.assertEqual(t.results, [b"question"])
        m = self.close_line(srv, port)
        self.assertEqual((int(m.group(3)), int(m.group(4))), (8, len(answer)))
        s.close()
        srv.stop_checked(self)

    def test_target_reset_through_tls(self):
        def handler(c):
            c.recv(10)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return "reset"
        t = self.tls_target(handler)
        srv = self.relay("127.0.0.1:0", "tls://" + t.addr, "--pin", self.fpr)
        s = self.connect(srv.addr)
        s.sendall(b"x")
        with self.assertRaises(ConnectionResetError, msg=srv.stderr_text()):
            s.recv(10)
        s.close()
        srv.stop_checked(self)


class TestTarget(RelayBase):

    def test_target_down_closes_client_cleanly_and_relay_goes_on(self):
        path = self.path("later.sock")
        srv = self.relay("127.0.0.1:0", "unix:" + path)
        s = self.connect(srv.addr)
        port = s.getsockname()[1]
        self.assertEqual(s.recv(10), b"")  # an orderly close, not a reset
        m = self.close_line(srv, port)
        self.assertIn("unix:" + path, m.group(6))
        # Refused TCP too, with the reason in the line.
        t = self.target(lambda c: c.sendall(c.recv(100)), family=socket.AF_UNIX, path=path)
        s2 = self.connect(srv.addr)
        s2.sendall(b"now up")
        self.assertEqual(helpers.recv_exact(s2, 6), b"now up")
        self.assertEqual(t.accepted, 1)
        s.close()
        s2.close()
        srv.stop_checked(self)

    def test_target_refused_tcp_logged(self):
        port = helpers.unused_tcp_port()
        srv = self.relay("127.0.0.1:0", "127.0.0.1:%d" % port)
        s = self.connect(srv.addr)
        cport = s.getsockname()[1]
        self.assertEqual(s.recv(10), b"")
        m = self.close_line(srv, cport)
        self.assertRegex(m.group(6), r"(?i)refused")
        srv.stop_checked(self)

    def test_connect_timeout(self):
        """A target whose accept queue is full drops SYNs: the relay gives
        up after --connect-timeout and closes the client."""
        lst = socket.socket()
        self.track(lst)
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        taddr = lst.getsockname()
        fillers = []
        for _ in range(4):  # fill the queue (never accepted)
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(taddr)
            fillers.append(self.track(f))
        time.sleep(0.1)
        srv = self.relay("127.0.0.1:0", "127.0.0.1:%d" % taddr[1], "--connect-timeout", "0.5")
        s = self.connect(srv.addr)
        port = s.getsockname()[1]
        t0 = time.monotonic()
        s.settimeout(10)
        self.assertEqual(s.recv(10), b"")
        took = time.monotonic() - t0
        self.assertGreater(took, 0.3)
        self.assertLess(took, 5)
        m = self.close_line(srv, port)
        self.assertRegex(m.group(6), r"(?i)time")
        srv.stop_checked(self)


class TestProxyProtocol(RelayBase):

    def header_target(self, n):
        def handler(c):
            head = helpers.recv_exact(c, n)
            rest = read_to_eof(c)
            return head, rest
        return self.target(handler)

    def test_v1(self):
        # The length depends on the ports: the handler reads up to CRLF.
        def handler(c):
            head = b""
            while not head.endswith(b"\r\n"):
                b = c.recv(1)
                if not b:
                    break
                head += b
            return head, read_to_eof(c)
        t = self.target(handler)
        srv = self.relay("127.0.0.1:0", t.addr, "--proxy-protocol", "v1")
        rport = helpers.port_of(srv.addr)
        s = self.connect(srv.addr)
        cport = s.getsockname()[1]
        s.sendall(b"payload")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(read_to_eof(s), b"")
        self.assertTrue(wait_until(lambda: t.results, IO_TIMEOUT))
        head, rest = t.results[0]
        self.assertEqual(head, b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (cport, rport))
        self.assertEqual(rest, b"payload")
        srv.stop_checked(self)

    def v2_expected(self, fam, src, dst, sport, dport):
        sig = b"\r\n\r\n\x00\r\nQUIT\n"
        if fam == socket.AF_INET:
            addrs = socket.inet_pton(fam, src) + socket.inet_pton(fam, dst)
            return sig + b"\x21\x11" + struct.pack("!H", 12) + addrs + struct.pack("!HH", sport, dport)
        addrs = socket.inet_pton(fam, src) + socket.inet_pton(fam, dst)
        return sig + b"\x21\x21" + struct.pack("!H", 36) + addrs + struct.pack("!HH", sport, dport)

    def test_v2_ipv4(self):
        t = self.header_target(28)
        srv = self.relay("127.0.0.1:0", t.addr, "--proxy-protocol", "v2")
        rport = helpers.port_of(srv.addr)
        s = socket.socket()
        self.track(s)
        s.settimeout(IO_TIMEOUT)
        s.bind(("127.0.0.2", 0))
        s.connect(("127.0.0.1", rport))
        cport = s.getsockname()[1]
        s.sendall(b"\x00binary\xff")
        s.shutdown(socket.SHUT_WR)
        read_to_eof(s)
        self.assertTrue(wait_until(lambda: t.results, IO_TIMEOUT))
        head, rest = t.results[0]
        self.assertEqual(head, self.v2_expected(socket.AF_INET, "127.0.0.2", "127.0.0.1",
                                                cport, rport))
        self.assertEqual(rest, b"\x00binary\xff")
        srv.stop_checked(self)

    @unittest.skipUnless(helpers.ipv6_loopback_available(), "no IPv6 loopback")
    def test_v2_ipv6_and_mapped(self):
        t = self.header_target(52)
        srv = self.relay("[::1]:0", t.addr, "--proxy-protocol", "v2")
        rport = helpers.port_of(srv.addr)
        s = self.connect(srv.addr)
        cport = s.getsockname()[1]
        s.shutdown(socket.SHUT_WR)
        read_to_eof(s)
        self.assertTrue(wait_until(lambda: t.results, IO_TIMEOUT))
        self.assertEqual(t.results[0][0], self.v2_expected(socket.AF_INET6, "::1", "::1",
                                                           cport, rport))
        srv.stop_checked(self)
        # A dual-stack listener's IPv4 peer (::ffff:127.0.0.1) is sent as TCP4.
        t2 = self.header_target(28)
        srv2 = self.relay("[::]:0", t2.addr, "--proxy-protocol", "v2")
        rport = helpers.port_of(srv2.addr)
        s = self.connect("127.0.0.1:%d" % rport)
        cport = s.getsockname()[1]
        s.shutdown(socket.SHUT_WR)
        read_to_eof(s)
        self.assertTrue(wait_until(lambda: t2.results, IO_TIMEOUT))
        self.assertEqual(t2.results[0][0], self.v2_expected(socket.AF_INET, "127.0.0.1",
                                                            "127.0.0.1", cport, rport))
        srv2.stop_checked(self)

    def test_v1_over_tls_listener(self):
        """Copy mode (TLS termination) sends the same header."""
        cp = self.sockit("cert", self.path("srv"))
        self.assertEqual(cp.returncode, 0, cp.stderr)

        def handler(c):
            head = b""
            while not head.endswith(b"\r\n"):
                b = c.recv(1)
                if not b:
                    break
                head += b
            c.sendall(b"ok")
            return head
        t = self.target(handler)
        srv = self.relay("tls://127.0.0.1:0", t.addr, "--proxy-protocol", "v1",
                         "--cert", self.path("srv.crt"), "--key", self.path("srv.key"))
        rport = int(srv.addr.rpartition(":")[2])
        ctx = ssl.create_default_context(cafile=self.path("srv.crt"))
        raw = socket.create_connection(("127.0.0.1", rport), timeout=IO_TIMEOUT)
        s = self.track(ctx.wrap_socket(raw, server_hostname="localhost"))
        cport = s.getsockname()[1]
        self.assertEqual(helpers.recv_exact(s, 2), b"ok")
        self.assertTrue(wait_until(lambda: t.results, IO_TIMEOUT))
        self.assertEqual(t.results[0], b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (cport, rport))
        s.close()
        srv.stop_checked(self)


class TestTls(RelayBase):

    def setUp(self):
        super().setUp()
        cp = self.sockit("cert", self.path("srv"))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.fpr = FPR_RE.search(cp.stdout).group(1).decode()
        self.crt, self.key = self.path("srv.crt"), self.path("srv.key")

    def tls_relay_to_echo(self):
        echo = self.serve("echo", "127.0.0.1:0")
        return self.relay("tls://127.0.0.1:0", echo.addr, "--cert", self.crt, "--key", self.key)

    def test_termination_python_ssl(self):
        srv = self.tls_relay_to_echo()
        port = int(srv.addr.rpartition(":")[2])
        ctx = ssl.create_default_context(cafile=self.crt)
        raw = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
        s = self.track(ctx.wrap_socket(raw, server_hostname="localhost"))
        data = os.urandom(2 << 20)
        # One thread drives both directions: an SSL object must never be read
        # and written from two threads at once (OpenSSL does not allow it, and
        # CPython releases the GIL inside SSL_read/SSL_write).
        got = tls_send_and_read(s, data, len(data), deadline=time.monotonic() + 30)
        self.assertEqual(bytes(got), data)
        s.close()
        srv.stop_checked(self)

    def test_termination_openssl_s_client(self):
        srv = self.tls_relay_to_echo()
        port = int(srv.addr.rpartition(":")[2])
        p = self.popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-CAfile",
                        self.crt, "-verify_return_error", "-verify_hostname", "localhost",
                        "-servername", "localhost", "-brief"],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdin.write(b"hello through the relay\n")
        p.stdin.flush()
        got = b""
        deadline = time.monotonic() + 10
        while b"hello through the relay\n" not in got and time.monotonic() < deadline:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                got += chunk
        self.assertIn(b"hello through the relay\n", got)
        p.stdin.close()
        p.wait(timeout=10)
        self.assertIn("Verification: OK", p.stderr.read().decode("utf-8", "replace"))
        srv.stop_checked(self)

    def test_tls_target_pin(self):
        echo = self.serve("echo", "tls://127.0.0.1:0", "--cert", self.crt, "--key", self.key)
        srv = self.relay("127.0.0.1:0", echo.addr, "--pin", self.fpr)
        s = self.connect(srv.addr)
        s.sendall(b"pinned")
        self.assertEqual(helpers.recv_exact(s, 6), b"pinned")
        s.close()
        srv.stop_checked(self)

    def test_tls_target_wrong_pin_refused(self):
        echo = self.serve("echo", "tls://127.0.0.1:0", "--cert", self.crt, "--key", self.key)
        wrong = "AB:" * 31 + "AB"
        srv = self.relay("127.0.0.1:0", echo.addr, "--pin", wrong)
        s = self.connect(srv.addr)
        port = s.getsockname()[1]
        s.sendall(b"secret")
        self.assertEqual(s.recv(10), b"")
        m = self.close_line(srv, port)
        self.assertEqual(int(m.group(3)), 0)  # not a byte reached the unverified target
        self.assertRegex(m.group(6), r"(?i)certificate|pin|verif")
        srv.stop_checked(self)

    def test_tls_target_insecure_warns(self):
        echo = self.serve("echo", "tls://127.0.0.1:0", "--cert", self.crt, "--key", self.key)
        srv = self.relay("127.0.0.1:0", echo.addr, "--insecure")
        srv.wait_line(r"WARNING: --insecure")
        s = self.connect(srv.addr)
        s.sendall(b"unverified")
        self.assertEqual(helpers.recv_exact(s, 10), b"unverified")
        s.close()
        srv.stop_checked(self)

    def test_tls_target_verified_by_default(self):
        """No --ca/--pin: the system store is used, which does not know our
        self-signed certificate: refused."""
        echo = self.serve("echo", "tls://127.0.0.1:0", "--cert", self.crt, "--key", self.key)
        srv = self.relay("127.0.0.1:0", echo.addr)
        s = self.connect(srv.addr)
        s.sendall(b"x")
        self.assertEqual(s.recv(10), b"")
        srv.stop_checked(self)


class TestBounds(RelayBase):

    def flood_target(self, sent, stop):
        def handler(c):
            c.settimeout(0.2)
            chunk = b"\xaa" * (1 << 16)
            while not stop.is_set():
                try:
                    sent[0] += c.send(chunk)
                except socket.timeout:
                    continue
                except OSError:
                    break
            return sent[0]
        return self.target(handler)

    def run_never_reader(self, tls):
        sent, stop = [0], threading.Event()
        t = self.flood_target(sent, stop)
        if tls:
            cp = self.sockit("cert", self.path("srv"))
            self.assertEqual(cp.returncode, 0)
            srv = self.relay("tls://127.0.0.1:0", t.addr, "--cert", self.path("srv.crt"),
                             "--key", self.path("srv.key"))
            ctx = ssl.create_default_context(cafile=self.path("srv.crt"))
            port = int(srv.addr.rpartition(":")[2])
            raw = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s = self.track(ctx.wrap_socket(raw, server_hostname="localhost"))
        else:
            srv = self.relay("127.0.0.1:0", t.addr)
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            s.settimeout(IO_TIMEOUT)
            s.connect(helpers.parse_addr(srv.addr)[2])
            self.track(s)
        rss0 = srv.rss_kib()
        # The flood stalls once the kernel's buffers and the relay's bound fill.
        last = [-1]

        def stalled():
            now = sent[0]
            same = now == last[0]
            last[0] = now
            return same and now > 0
        self.assertTrue(wait_until(stalled, 20, interval=0.5), "flood never stalled")
        rss1 = srv.rss_kib()
        stop.set()
        # Kernel buffers on loopback can hold several MiB; unbounded relaying
        # would have taken everything the target could send in that time.
        self.assertLess(sent[0], 48 << 20, "the relay kept reading from the target")
        self.assertLess(rss1 - rss0, 16 * 1024, "relay RSS grew by %d KiB" % (rss1 - rss0))
        s.close()
        srv.stop_checked(self)

    def test_never_reading_client_splice(self):
        self.run_never_reader(tls=False)

    def test_never_reading_client_tls(self):
        self.run_never_reader(tls=True)

    def test_thousand_concurrent_pairs(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 8192 and hard >= 8192:
            resource.setrlimit(resource.RLIMIT_NOFILE, (8192, hard))
        if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 4096:
            self.skipTest("descriptor limit too low")
        _, target = self.echo_unix()
        srv = self.relay("127.0.0.1:0", target, "--quiet")
        base = srv.stable_fd_count()
        socks = []
        for i in range(1000):
            s = socket.socket()
            s.settimeout(IO_TIMEOUT)
            s.connect(helpers.parse_addr(srv.addr)[2])
            socks.append(self.track(s))
        for i, s in enumerate(socks):
            s.sendall(b"%06d" % i)
        for i, s in enumerate(socks):
            self.assertEqual(helpers.recv_exact(s, 6), b"%06d" % i)
        # 2 descriptors a pair (client, target) at least, while open.
        self.assertGreaterEqual(srv.fd_count(), base + 2000)
        for s in socks:
            s.close()
        self.assertEqual(srv.wait_fds_at_most(base, timeout=20), base)
        srv.stop_checked(self)


class TestServerOptions(RelayBase):

    def test_allow_deny(self):
        hits = []
        t = self.target(lambda c: hits.append(1) or c.sendall(b"hello"))
        srv = self.relay("127.0.0.1:0", t.addr, "--allow", "127.0.0.0/8", "--deny", "127.0.0.2")
        rport = helpers.port_of(srv.addr)
        for src, ok in (("127.0.0.1", True), ("127.0.0.2", False), ("127.0.0.3", True)):
            with self.subTest(src=src):
                s = socket.socket()
                s.settimeout(IO_TIMEOUT)
                s.bind((src, 0))
                s.connect(("127.0.0.1", rport))
                try:
                    got = s.recv(5)
                except ConnectionResetError:
                    got = b""
                s.close()
                self.assertEqual(got, b"hello" if ok else b"")
        self.assertEqual(len(hits), 2)  # the refused peer never reached the target
        srv.stop_checked(self)

    def test_idle_timeout(self):
        _, target = self.echo_unix()
        srv = self.relay("127.0.0.1:0", target, "--idle-timeout", "0.6")
        idle = self.connect(srv.addr)
        idle_port = idle.getsockname()[1]
        busy = self.connect(srv.addr)
        t0 = time.monotonic()
        idle_end = None
        while time.monotonic() - t0 < 1.8:  # busy longer than the timeout, never idle
            busy.sendall(b"tick")
            self.assertEqual(helpers.recv_exact(busy, 4), b"tick")
            r, _, _ = select.select([idle], [], [], 0.15)
            if r and idle_end is None:
                self.assertEqual(idle.recv(10), b"")  # an orderly close
                idle_end = time.monotonic() - t0
        busy.sendall(b"still")
        self.assertEqual(helpers.recv_exact(busy, 5), b"still")
        self.assertIsNotNone(idle_end, "the idle pair was not closed")
        self.assertGreater(idle_end, 0.4)
        self.assertLess(idle_end, 1.2)
        idle.close()
        m = self.close_line(srv, idle_port)
        self.assertEqual(m.group(6), "idle timeout")
        busy.close()
        srv.stop_checked(self)

    def test_max_conns_and_drain(self):
        _, target = self.echo_unix()
        srv = self.relay("127.0.0.1:0", target, "--max-conns", "1", "--drain-timeout", "1")
        a = self.connect(srv.addr)
        a.sendall(b"a")
        self.assertEqual(helpers.recv_exact(a, 1), b"a")
        b = self.connect(srv.addr)
        self.assertEqual(b.recv(10), b"")  # over the cap: closed at once
        t0 = time.monotonic()
        srv.stop_checked(self)  # SIGTERM with a pair open: drains, exits 0
        self.assertLess(time.monotonic() - t0, 8)

    def test_workers_and_serve_form(self):
        """--workers spreads pairs over threads (each with its own pipe
        pool); `sockit serve relay ADDR --target T` is the same relay."""
        _, target = self.echo_unix()
        srv = self.relay("127.0.0.1:0", target, "--workers", "2", "--stats", "0.5")
        socks = [self.connect(srv.addr) for _ in range(8)]
        for i, s in enumerate(socks):
            s.sendall(b"w%d" % i)
        for i, s in enumerate(socks):
            self.assertEqual(helpers.recv_exact(s, 2), b"w%d" % i)
            s.close()
        srv.wait_line(r"^sockit: stats conns=\d+ accepted=8 ", timeout=5)
        srv.stop_checked(self)
        srv2 = self.serve("relay", "127.0.0.1:0", "--target", target)
        s = self.connect(srv2.addr)
        s.sendall(b"serve form")
        self.assertEqual(helpers.recv_exact(s, 10), b"serve form")
        s.close()
        srv2.stop_checked(self)
        cp = self.sockit("serve", "relay", "127.0.0.1:0", timeout=10)
        self.assertEqual(cp.returncode, 2)
        self.assertIn(b"needs a TARGET", cp.stderr)

    def test_usage_errors(self):
        for args, needle in (
                (["127.0.0.1:0"], b"usage"),
                (["127.0.0.1:0", "udp://127.0.0.1:9"], b"datagram"),
                (["127.0.0.1:0", "127.0.0.1:1", "--proxy-protocol", "v3"], b"--proxy-protocol"),
                (["127.0.0.1:0", "127.0.0.1:1", "--pin", "AB"], b"tls://"),
                (["127.0.0.1:0", "nohost"], b"TARGET"),
                (["tls://127.0.0.1:0", "127.0.0.1:1"], b"--cert")):
            with self.subTest(args=args):
                cp = self.sockit("relay", *args, timeout=10)
                self.assertEqual(cp.returncode, 2, cp.stderr)
                self.assertIn(needle, cp.stderr)

    def test_help(self):
        cp = self.sockit("relay", "--help")
        self.assertEqual(cp.returncode, 0)
        for opt in (b"--connect-timeout", b"--proxy-protocol", b"--max-conns", b"--allow"):
            self.assertIn(opt, cp.stdout)



def peer_target(family=socket.AF_INET, host="127.0.0.1", port=0):
    """A listener that reports the peer address of each connection, then
    echoes one read back. Returns (socket, port)."""
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(8)
    s.settimeout(IO_TIMEOUT)
    return s, s.getsockname()[1]


def free_port_both():
    """A port free on both 127.0.0.1 and ::1 (bounded tries)."""
    for _ in range(50):
        a, port = peer_target()
        try:
            b, _ = peer_target(socket.AF_INET6, "::1", port)
        except OSError:
            a.close()
            continue
        return a, b, port
    raise AssertionError("no port free on both 127.0.0.1 and ::1")


class TestDialOptions(RelayBase):
    """-4 / -6 / --source for the relay's target: the target sees the source
    address and port it was given, and only the family asked is dialed."""

    def through(self, srv, lst, payload=b"ping"):
        """One client through srv; returns the peer address lst saw."""
        c = self.connect(srv.addr)
        c.sendall(payload)
        t, peer = lst.accept()
        with t:
            t.settimeout(IO_TIMEOUT)
            self.assertEqual(helpers.recv_exact(t, len(payload)), payload)
            t.sendall(payload.upper())
            self.assertEqual(helpers.recv_exact(c, len(payload)), payload.upper())
        c.close()
        return peer

    def test_source_address_and_port(self):
        lst, port = peer_target()
        self.addCleanup(lst.close)
        srv = self.relay("127.0.0.1:0", "127.0.0.1:%d" % port, "--source", "127.0.0.2")
        self.assertEqual(self.through(srv, lst)[0], "127.0.0.2")
        srv.stop_checked(self)
        # A fixed source port too (one found free just now).
        probe = socket.socket()
        probe.bind(("127.0.0.3", 0))
        sport = probe.getsockname()[1]
        probe.close()
        srv = self.relay("127.0.0.1:0", "127.0.0.1:%d" % port, "--source", "127.0.0.3:%d" % sport)
        self.assertEqual(self.through(srv, lst), ("127.0.0.3", sport))
        srv.stop_checked(self)

    def test_serve_relay_form_with_source(self):
        lst, port = peer_target()
        self.addCleanup(lst.close)
        srv = self.serve("relay", "127.0.0.1:0", "--target", "127.0.0.1:%d" % port, "-4",
                         "--source", "127.0.0.4")
        self.assertEqual(self.through(srv, lst)[0], "127.0.0.4")
        srv.stop_checked(self)

    def test_source_not_bindable_closes_client_and_relay_goes_on(self):
        lst, port = peer_target()
        self.addCleanup(lst.close)
        # 192.0.2.1 (TEST-NET-1) is on no interface here: bind fails.
        srv = self.relay("127.0.0.1:0", "127.0.0.1:%d" % port, "--source", "192.0.2.1")
        c = self.connect(srv.addr)
        c.settimeout(IO_TIMEOUT)
        self.assertEqual(read_to_eof(c), b"")
        srv.wait_line(r"^sockit: relay close .* reason=target 127\.0\.0\.1:%d: " % port)
        c2 = self.connect(srv.addr)
        self.assertEqual(read_to_eof(c2), b"")
        srv.stop_checked(self)

    def hosts_relay(self, *args):
        """The relay with a private /etc/hosts where NAME lists ::1 then
        127.0.0.1 (unshare -m, root only)."""
        if os.geteuid() != 0:
            self.skipTest("needs root for a private mount namespace (unshare -m)")
        if not helpers.ipv6_loopback_available():
            self.skipTest("no IPv6 loopback here")
        if subprocess.run(["unshare", "-m", "true"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, timeout=10).returncode != 0:
            self.skipTest("unshare -m is not permitted here")
        hosts = self.path("hosts")
        with open(hosts, "w") as f:
            f.write("::1 sockit-both\n127.0.0.1 sockit-both\n")
        script = 'mount --bind "$1" /etc/hosts && shift && exec "$@"'
        srv = Server(list(args))
        srv.argv = (["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                     hosts] + helpers.SERVER_WRAPPER + [SOCKIT, "relay"] + list(args))
        self._servers.append(srv)
        srv.start()
        return srv

    def test_family_of_a_name_with_both(self):
        v4, v6, port = free_port_both()
        self.addCleanup(v4.close)
        self.addCleanup(v6.close)
        target = "sockit-both:%d" % port
        srv = self.hosts_relay("127.0.0.1:0", target, "-6")
        self.assertEqual(self.through(srv, v6)[0], "::1")
        srv.stop_checked(self)
        srv = self.hosts_relay("127.0.0.1:0", target, "-4")
        self.assertEqual(self.through(srv, v4)[0], "127.0.0.1")
        srv.stop_checked(self)
        # --source of one family picks that family too.
        srv = self.hosts_relay("127.0.0.1:0", target, "--source", "::1")
        self.assertEqual(self.through(srv, v6)[0], "::1")
        srv.stop_checked(self)

    def test_ipv6_numeric_target(self):
        if not helpers.ipv6_loopback_available():
            self.skipTest("no IPv6 loopback here")
        lst, port = peer_target(socket.AF_INET6, "::1")
        self.addCleanup(lst.close)
        srv = self.relay("127.0.0.1:0", "[::1]:%d" % port, "-6", "--source", "[::1]")
        self.assertEqual(self.through(srv, lst)[0], "::1")
        srv.stop_checked(self)

    def test_usage_errors(self):
        for args, needle in (
                (["127.0.0.1:0", "127.0.0.1:1", "-4", "-6"], b"give -4 or -6, not both"),
                (["127.0.0.1:0", "127.0.0.1:1", "-6"], b"not an IPv6 address"),
                (["127.0.0.1:0", "[::1]:1", "-4"], b"not an IPv4 address"),
                (["127.0.0.1:0", "127.0.0.1:1", "--source", "::1"], b"not an IPv6 address"),
                (["127.0.0.1:0", "127.0.0.1:1", "--source", "nohost"], b"--source"),
                (["127.0.0.1:0", "127.0.0.1:1", "-6", "--source", "10.0.0.1"], b"--source"),
                (["127.0.0.1:0", "unix:/tmp/x.sock", "--source", "127.0.0.2"],
                 b"IP TARGET only"),
                (["127.0.0.1:0", "unix:/tmp/x.sock", "-4"], b"IP TARGET only")):
            with self.subTest(args=args):
                cp = self.sockit("relay", *args, timeout=10)
                self.assertEqual(cp.returncode, 2, cp.stderr)
                self.assertIn(needle, cp.stderr)
                self.assertEqual(len(cp.stderr.strip().splitlines()), 1, cp.stderr)
        cp = self.sockit("serve", "echo", "127.0.0.1:0", "-6", timeout=10)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn(b"--ipv6 applies to the relay service only", cp.stderr)


HEX_LINE = re.compile(r"^([<>]) ([0-9a-f]{8})  ((?:[0-9a-f]{2} ){1,8}(?: (?:[0-9a-f]{2} ){0,8})?) *"
                      r"\|(.{1,16})\|$")
CHUNK_RE = re.compile(r"^# conn (\d+) (up|down) (\S+) -> (\S+) \((\d+) bytes\)$")


def parse_dump(text):
    """{(conn, '>' or '<'): bytes} rebuilt from a relay dump; checks each
    chunk's header, lengths, offsets and the ASCII column on the way."""
    out = {}
    peers = {}
    chunk = None
    for line in text.splitlines():
        m = CHUNK_RE.match(line)
        if m:
            if chunk is not None:
                assert chunk[2] == 0, "chunk short by %d bytes" % chunk[2]
            conn, way = int(m.group(1)), m.group(2)
            mark = ">" if way == "up" else "<"
            client, target = (m.group(3), m.group(4)) if way == "up" else (m.group(4), m.group(3))
            assert peers.setdefault(conn, (client, target)) == (client, target), line
            chunk = [conn, mark, int(m.group(5))]
            continue
        m = HEX_LINE.match(line)
        if not m:
            assert line[:2] not in ("> ", "< "), "bad dump line: %r" % line
            continue    # a log line between chunks
        assert chunk is not None and m.group(1) == chunk[1], line
        data = bytes.fromhex(m.group(3).replace(" ", ""))
        key = (chunk[0], chunk[1])
        got = out.setdefault(key, bytearray())
        assert int(m.group(2), 16) == len(got), "offset %s after %d bytes" % (m.group(2), len(got))
        ascii_col = "".join(chr(b) if 0x20 <= b < 0x7f else "." for b in data)
        assert m.group(4) == ascii_col, line
        got += data
        chunk[2] -= len(data)
    assert chunk is None or chunk[2] == 0
    return {k: bytes(v) for k, v in out.items()}, peers


class TestHex(RelayBase):
    """--hex / --hex-file on the relay: the dump format of connect and
    listen, each chunk under a '# conn N' line naming its pair."""

    def test_hex_file_two_workers(self):
        _, target = self.echo_unix()
        dump = self.path("dump.txt")
        srv = self.relay("127.0.0.1:0", target, "--workers", "2", "--hex-file", dump)
        socks = [self.connect(srv.addr) for _ in range(6)]
        sent = {}
        for rnd in range(3):
            for i, s in enumerate(socks):
                b = bytes((i * 37 + rnd * 11 + k) % 256 for k in range(20 + i * 7 + rnd))
                s.sendall(b)
                self.assertEqual(helpers.recv_exact(s, len(b)), b)
                sent.setdefault(s.getsockname()[1], bytearray()).extend(b)
        for s in socks:
            s.close()
        srv.wait_line(r"^sockit: relay close ", count=6)
        srv.stop_checked(self)
        self.assertEqual(os.stat(dump).st_mode & 0o777, 0o600)
        with open(dump) as f:
            streams, peers = parse_dump(f.read())
        self.assertEqual(sorted(peers), list(range(1, 7)))
        for conn, (client, tgt) in peers.items():
            port = int(client.rpartition(":")[2])
            self.assertIn(port, sent)
            self.assertEqual(streams[(conn, ">")], bytes(sent[port]))
            self.assertEqual(streams[(conn, "<")], bytes(sent[port]))  # an echo
        # Nothing on stderr but log lines: the dump went to the file.
        self.assertFalse([l for l in srv.lines() if HEX_LINE.match(l)])

    def test_hex_stderr_format(self):
        def handler(c):
            got = helpers.recv_exact(c, 5)
            c.sendall(b"\x00\x01ok\n")
            return got
        t = self.target(handler)
        srv = self.relay("127.0.0.1:0", t.addr, "--hex")
        c = self.connect(srv.addr)
        c.sendall(b"hello")
        self.assertEqual(helpers.recv_exact(c, 5), b"\x00\x01ok\n")
        c.close()
        # Five bytes, then the columns of eleven missing bytes (and the gap
        # after the eighth): 36 spaces before the ASCII column.
        srv.wait_line(r"^< 00000000  00 01 6f 6b 0a {36}\|\.\.ok\.\|$")
        srv.wait_line(r"^> 00000000  68 65 6c 6c 6f {36}\|hello\|$")
        srv.wait_line(r"^# conn 1 up 127\.0\.0\.1:\d+ -> %s \(5 bytes\)$" % re.escape(t.addr))
        srv.wait_line(r"^# conn 1 down %s -> 127\.0\.0\.1:\d+ \(5 bytes\)$" % re.escape(t.addr))
        srv.stop_checked(self)

    def test_hex_only_for_relay(self):
        cp = self.sockit("serve", "echo", "127.0.0.1:0", "--hex", timeout=10)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn(b"--hex applies to the relay service only", cp.stderr)
        cp = self.sockit("relay", "127.0.0.1:0", "127.0.0.1:1", "--hex-file",
                         self.path("no/such/dir/f"), timeout=10)
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn(b"--hex-file", cp.stderr)


if __name__ == "__main__":
    unittest.main()
