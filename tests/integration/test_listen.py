"""`sockit listen` (nc -l) and the client options nc users expect on
`sockit connect` (-4, -6, --source, --hex): real peers on both sides (nc,
openssl s_client, Python socket and ssl), 100 MB both ways with SHA-256
compared, half-close in each direction, -k with peers in turn, UDP with
`nc -u`, access lists over 127.0.0.1, 127.0.0.2, ::1 and an IPv4-mapped
peer, and the hex dump's exact format."""

import hashlib
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

from helpers import (IO_TIMEOUT, SOCKIT, SockitTestCase, child_env, ipv6_loopback_available,
                     recv_until_eof, unused_tcp_port, wait_until)

LISTENING_RE = re.compile(rb"^sockit: listening on (\S+)$", re.M)
BIG = 100 * 1024 * 1024


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)


def random_file(path, size):
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(os.urandom(n))
            left -= n
    return path


class _Collect(threading.Thread):
    """Reads a pipe to its end into a buffer (so the child never blocks on it)."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe, self.data, self.lock = pipe, bytearray(), threading.Lock()
        self.start()

    def run(self):
        while True:
            try:
                b = os.read(self.pipe.fileno(), 65536)
            except OSError:
                return
            if not b:
                return
            with self.lock:
                self.data += b

    def text(self):
        with self.lock:
            return bytes(self.data)


class Listener:
    """A running `sockit listen`: its stdout and stderr collected, the
    address it bound read from its "listening on" line."""

    def __init__(self, test, args, stdin=subprocess.PIPE, stdout=subprocess.PIPE):
        self.p = test.popen([SOCKIT, "listen"] + list(args), stdin=stdin, stdout=stdout,
                            stderr=subprocess.PIPE)
        self.out = _Collect(self.p.stdout) if stdout == subprocess.PIPE else None
        self.err = _Collect(self.p.stderr)
        m = wait_until(lambda: LISTENING_RE.search(self.err.text()) or self.p.poll() is not None,
                       10)
        if not isinstance(m, re.Match):
            test.fail("sockit listen did not start: %r" % self.err.text())
        self.addr = m.group(1).decode()
        if self.addr.startswith("tls://"):
            self.addr = self.addr[6:]
        self.test = test

    def port(self):
        return int(self.addr.rsplit(":", 1)[1])

    def host(self):
        h = self.addr.rsplit(":", 1)[0]
        return h.strip("[]")

    def wait(self, timeout=30):
        try:
            rc = self.p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.test.fail("sockit listen did not exit; stderr: %r" % self.err.text()[-2000:])
        self.err.join(5)
        if self.out:
            self.out.join(5)
        text = self.err.text().decode("utf-8", "replace")
        for m in ("LeakSanitizer", "ERROR: AddressSanitizer", "runtime error"):
            self.test.assertNotIn(m, text, text[-3000:])
        return rc

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        return self.wait()

    def wait_out(self, data, timeout=10):
        return wait_until(lambda: data in self.out.text(), timeout)

    def wait_err(self, regex, timeout=10):
        return wait_until(lambda: re.search(regex, self.err.text()), timeout)


def conn(family, addr, source=None, timeout=IO_TIMEOUT):
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source is not None:
        s.bind((source, 0))
    s.connect(addr)
    return s


class ListenPipe(SockitTestCase):
    """nc and Python peers against `sockit listen`."""

    def test_nc_both_ways_100mb(self):
        a = random_file(self.path("a"), BIG)   # nc -> listen
        b = random_file(self.path("b"), BIG)   # listen -> nc
        with open(b, "rb") as fin, open(self.path("got_a"), "wb") as fout:
            lst = Listener(self, ["127.0.0.1:0"], stdin=fin, stdout=fout)
            with open(a, "rb") as nin, open(self.path("got_b"), "wb") as nout:
                nc = self.popen(["nc", "-N", "127.0.0.1", str(lst.port())], stdin=nin,
                                stdout=nout, stderr=subprocess.PIPE)
                self.assertEqual(nc.wait(timeout=120), 0)
            self.assertEqual(lst.wait(120), 0, lst.err.text())
        self.assertEqual(sha256_file(self.path("got_a")), sha256_file(a))
        self.assertEqual(sha256_file(self.path("got_b")), sha256_file(b))

    def test_connect_to_nc_listen_both_ways_100mb(self):
        a = random_file(self.path("a"), BIG)   # connect -> nc -l
        b = random_file(self.path("b"), BIG)   # nc -l -> connect
        port = unused_tcp_port()
        with open(b, "rb") as nin, open(self.path("got_a"), "wb") as nout:
            nc = self.popen(["nc", "-N", "-l", "127.0.0.1", str(port)], stdin=nin, stdout=nout,
                            stderr=subprocess.PIPE)
            # nc has no readiness line: wait until its port takes a connection
            # (that probe's empty connection is served first and ends at once).
            ok = False
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not ok:
                try:
                    with open(a, "rb") as cin, open(self.path("got_b"), "wb") as cout:
                        cp = subprocess.run([SOCKIT, "connect", "127.0.0.1:%d" % port],
                                            stdin=cin, stdout=cout, stderr=subprocess.PIPE,
                                            timeout=120, env=child_env())
                    ok = cp.returncode == 0
                    if not ok:
                        self.assertIn(b"refused", cp.stderr)
                        time.sleep(0.05)
                except subprocess.TimeoutExpired:
                    self.fail("sockit connect did not finish")
            self.assertTrue(ok, "sockit connect never reached nc -l")
            self.assertEqual(nc.wait(timeout=60), 0)
        self.assertEqual(sha256_file(self.path("got_a")), sha256_file(a))
        self.assertEqual(sha256_file(self.path("got_b")), sha256_file(b))

    def test_peer_half_closes_first(self):
        lst = Listener(self, ["127.0.0.1:0"])
        s = self.track(conn(socket.AF_INET, ("127.0.0.1", lst.port())))
        s.sendall(b"request")
        s.shutdown(socket.SHUT_WR)
        self.assertTrue(lst.wait_out(b"request"))
        # Our side is still open: the answer written afterwards arrives whole.
        lst.p.stdin.write(b"the answer after the peer's FIN")
        lst.p.stdin.close()
        self.assertEqual(recv_until_eof(s), b"the answer after the peer's FIN")
        self.assertEqual(lst.wait(), 0)
        self.assertEqual(lst.out.text(), b"request")

    def test_stdin_ends_first(self):
        lst = Listener(self, ["127.0.0.1:0"])
        lst.p.stdin.write(b"first")
        lst.p.stdin.close()
        s = self.track(conn(socket.AF_INET, ("127.0.0.1", lst.port())))
        # The end of stdin is a half-close: EOF here, the peer may still send.
        self.assertEqual(recv_until_eof(s), b"first")
        self.assertIsNone(lst.p.poll())
        s.sendall(b"sent after the EOF")
        s.close()
        self.assertEqual(lst.wait(), 0)
        self.assertEqual(lst.out.text(), b"sent after the EOF")

    def test_keep_two_peers_in_turn(self):
        lst = Listener(self, ["-k", "127.0.0.1:0"])
        p1 = self.track(conn(socket.AF_INET, ("127.0.0.1", lst.port())))
        # The second waits in the backlog while the first is served.
        p2 = self.track(conn(socket.AF_INET, ("127.0.0.1", lst.port())))
        p2.sendall(b"two;")
        p2.shutdown(socket.SHUT_WR)
        time.sleep(0.2)
        self.assertEqual(lst.out.text(), b"")
        p1.sendall(b"one;")
        lst.p.stdin.write(b"to the first\n")
        lst.p.stdin.flush()
        self.assertEqual(p1.recv(100), b"to the first\n")
        p1.shutdown(socket.SHUT_WR)
        self.assertTrue(lst.wait_out(b"one;two;"), lst.out.text())
        self.assertEqual(recv_until_eof(p1), b"")
        self.assertEqual(recv_until_eof(p2), b"")
        # And a third, after both.
        p3 = self.track(conn(socket.AF_INET, ("127.0.0.1", lst.port())))
        p3.sendall(b"three")
        p3.close()
        self.assertTrue(lst.wait_out(b"one;two;three"), lst.out.text())
        self.assertIsNone(lst.p.poll())
        self.assertEqual(lst.stop(), 128 + signal.SIGTERM)
        self.assertEqual(len(re.findall(rb"connection from 127\.0\.0\.1:", lst.err.text())), 3)

    def test_without_k_one_peer_only(self):
        lst = Listener(self, ["127.0.0.1:0"], stdin=subprocess.DEVNULL)
        s = self.track(conn(socket.AF_INET, ("127.0.0.1", lst.port())))
        s.sendall(b"only")
        s.close()
        self.assertEqual(lst.wait(), 0)
        self.assertEqual(lst.out.text(), b"only")
        with self.assertRaises(OSError):
            conn(socket.AF_INET, ("127.0.0.1", lst.port())).close()

    def test_unix_path_and_abstract(self):
        path = self.path("l.sock")
        lst = Listener(self, ["unix:" + path], stdin=subprocess.DEVNULL)
        self.assertEqual(lst.addr, "unix:" + path)
        s = self.track(conn(socket.AF_UNIX, path))
        s.sendall(b"over unix")
        s.close()
        self.assertEqual(lst.wait(), 0)
        self.assertEqual(lst.out.text(), b"over unix")
        self.assertFalse(os.path.exists(path), "the socket file was left behind")
        name = "sockit-listen-%d" % os.getpid()
        lst = Listener(self, ["unix:@" + name])
        s = self.track(conn(socket.AF_UNIX, "\0" + name))
        lst.p.stdin.write(b"abstract reply")
        lst.p.stdin.close()
        self.assertEqual(recv_until_eof(s), b"abstract reply")
        s.close()
        self.assertEqual(lst.wait(), 0)

    def test_ipv6(self):
        if not ipv6_loopback_available():
            self.skipTest("no IPv6 loopback")
        lst = Listener(self, ["[::1]:0"], stdin=subprocess.DEVNULL)
        self.assertTrue(lst.addr.startswith("[::1]:"), lst.addr)
        s = self.track(conn(socket.AF_INET6, ("::1", lst.port())))
        s.sendall(b"six")
        s.close()
        self.assertEqual(lst.wait(), 0)
        self.assertEqual(lst.out.text(), b"six")
        self.assertRegex(lst.err.text(), rb"connection from \[::1\]:\d+")

    def test_family_flags(self):
        lst = Listener(self, ["-4", "127.0.0.1:0"], stdin=subprocess.DEVNULL)
        self.assertTrue(lst.addr.startswith("127.0.0.1:"), lst.addr)
        conn(socket.AF_INET, ("127.0.0.1", lst.port())).close()
        self.assertEqual(lst.wait(), 0)
        cp = self.sockit("listen", "-4", "[::1]:0")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn(b"has no IPv4 address", cp.stderr)
        cp = self.sockit("listen", "-6", "udp://127.0.0.1:0")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn(b"has no IPv6 address", cp.stderr)

    def test_usage_errors(self):
        for args, needle in (([], b"listen needs an address"),
                             (["udp://127.0.0.1:0", "x"], b"one address"),
                             (["tls://127.0.0.1:0"], b"--cert FILE and --key FILE"),
                             (["127.0.0.1:0", "--cert", "a", "--key", "b"], b"tls:// addresses only"),
                             (["-4", "unix:/tmp/x"], b"IP addresses only"),
                             (["127.0.0.1:0", "--allow", "nonsense"], b"--allow takes network"),
                             (["127.0.0.1:0", "--bogus"], b"unknown option")):
            cp = self.sockit("listen", *args)
            self.assertEqual(cp.returncode, 2, (args, cp.stderr))
            self.assertIn(needle, cp.stderr)
            self.assertEqual(len(cp.stderr.strip().splitlines()), 1, cp.stderr)


class ListenTls(SockitTestCase):

    def setUp(self):
        super().setUp()
        cp = self.sockit("cert", self.path("srv"))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.crt, self.key = self.path("srv.crt"), self.path("srv.key")

    def test_python_ssl(self):
        lst = Listener(self, ["tls://127.0.0.1:0", "--cert", self.crt, "--key", self.key])
        ctx = ssl.create_default_context(cafile=self.crt)
        raw = socket.create_connection(("127.0.0.1", lst.port()), timeout=IO_TIMEOUT)
        s = self.track(ctx.wrap_socket(raw, server_hostname="localhost"))
        data = os.urandom(3 * 1024 * 1024)
        lst.p.stdin.write(b"secret reply")
        lst.p.stdin.close()
        s.sendall(data)
        got = recv_until_eof(s)
        self.assertEqual(got, b"secret reply")
        s.close()
        self.assertEqual(lst.wait(), 0, lst.err.text())
        self.assertTrue(lst.out.text() == data, "bytes through TLS differ")
        self.assertRegex(lst.err.text(), rb"connection from 127\.0\.0\.1:\d+, TLSv1\.3")

    def test_openssl_s_client_and_failed_handshake(self):
        lst = Listener(self, ["tls://127.0.0.1:0", "--cert", self.crt, "--key", self.key])
        # A peer that is not TLS fails its handshake; the listener waits on.
        bad = self.track(conn(socket.AF_INET, ("127.0.0.1", lst.port())))
        bad.sendall(b"GET / HTTP/1.0\r\n\r\n")
        try:
            recv_until_eof(bad)   # an alert, then the close
        except OSError:
            pass
        self.assertTrue(lst.wait_err(rb"127\.0\.0\.1:\d+: "))
        p = self.popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % lst.port(),
                        "-CAfile", self.crt, "-verify_return_error", "-verify_hostname",
                        "localhost", "-servername", "localhost", "-brief"],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = _Collect(p.stdout)
        p.stdin.write(b"hello from s_client\n")
        p.stdin.flush()
        self.assertTrue(lst.wait_out(b"hello from s_client\n"))
        lst.p.stdin.write(b"hello from listen\n")
        lst.p.stdin.close()
        self.assertTrue(wait_until(lambda: b"hello from listen\n" in out.text(), 10))
        p.stdin.close()
        p.wait(timeout=10)
        self.assertIn(b"Verification: OK", p.stderr.read())
        self.assertEqual(lst.wait(), 0, lst.err.text())


class ListenDatagrams(SockitTestCase):

    def test_udp_with_nc(self):
        lst = Listener(self, ["udp://127.0.0.1:0"])
        self.assertTrue(lst.addr.startswith("udp://127.0.0.1:"), lst.addr)
        nc = self.popen(["nc", "-u", "127.0.0.1", str(lst.port())], stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out = _Collect(nc.stdout)
        nc.stdin.write(b"hello over udp\n")
        nc.stdin.flush()
        self.assertTrue(lst.wait_out(b"hello over udp\n"), lst.err.text())
        lst.p.stdin.write(b"line one\nline two\n")
        lst.p.stdin.flush()
        self.assertTrue(wait_until(lambda: out.text() == b"line one\nline two\n", 10), out.text())
        # Another source is not the peer: its datagrams are not printed.
        other = self.track(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        other.sendto(b"intruder\n", ("127.0.0.1", lst.port()))
        nc.stdin.write(b"second\n")
        nc.stdin.flush()
        self.assertTrue(lst.wait_out(b"second\n"))
        self.assertNotIn(b"intruder", lst.out.text())
        self.assertEqual(lst.out.text(), b"hello over udp\nsecond\n")
        nc.kill()
        self.assertEqual(lst.stop(), 128 + signal.SIGTERM)

    def test_unixgram(self):
        path = self.path("g.sock")
        lst = Listener(self, ["unixgram:" + path])
        me = self.track(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        me.bind(self.path("client.sock"))
        me.settimeout(IO_TIMEOUT)
        me.sendto(b"dgram one", path)
        self.assertTrue(lst.wait_out(b"dgram one"))
        lst.p.stdin.write(b"answer\n")
        lst.p.stdin.flush()
        self.assertEqual(me.recv(100), b"answer\n")
        self.assertEqual(lst.stop(), 128 + signal.SIGTERM)
        self.assertFalse(os.path.exists(path))


class ListenAccess(SockitTestCase):
    """--allow/--deny over 127.0.0.1, 127.0.0.2, ::1 and an IPv4-mapped
    peer of a dual-stack [::] listener."""

    PEERS = (("127.0.0.1", socket.AF_INET, "127.0.0.1"),
             ("127.0.0.2", socket.AF_INET, "127.0.0.1"),
             ("::1", socket.AF_INET6, "::1"),
             # ::ffff:127.0.0.1 to the dual-stack listener: an IPv4 peer
             # arriving over IPv6, which the IPv4 rules must still judge.
             ("mapped", socket.AF_INET6, "::ffff:127.0.0.1"))

    def try_peer(self, lst, name, family, dest):
        src = None if name in ("mapped", "::1") else name
        s = self.track(conn(family, (dest, lst.port()), source=src))
        marker = ("from %s;" % name).encode()
        try:
            s.sendall(marker)
            s.shutdown(socket.SHUT_WR)
            recv_until_eof(s)
        except OSError:
            pass  # refused: closed with our bytes unread, a reset
        s.close()
        return marker

    def matrix(self, rules, allowed):
        if not ipv6_loopback_available():
            self.skipTest("no IPv6 loopback")
        lst = Listener(self, ["-k", "[::]:0"] + rules)
        expect = b""
        for name, family, dest in self.PEERS:
            marker = self.try_peer(lst, name, family, dest)
            if name in allowed:
                expect += marker
                self.assertTrue(lst.wait_out(expect), (name, lst.out.text()))
        # Refused peers were closed before a byte was read: only the allowed
        # markers, in order, reached stdout.
        time.sleep(0.1)
        self.assertEqual(lst.out.text(), expect)
        err = lst.err.text()
        for name, _, _ in self.PEERS:
            if name not in allowed:
                ip = "127.0.0.1" if name == "mapped" else name
                self.assertRegex(err, rb"refused \[?%s\]?:\d+: not allowed by the access list"
                                 % re.escape(ip.encode()))
        self.assertEqual(lst.stop(), 128 + signal.SIGTERM)
        return err

    def test_allow_ipv4_host(self):
        self.matrix(["--allow", "127.0.0.1"], {"127.0.0.1", "mapped"})

    def test_deny_ipv4_host_also_over_ipv6(self):
        self.matrix(["--deny", "127.0.0.1"], {"127.0.0.2", "::1"})

    def test_allow_ipv6_only(self):
        self.matrix(["--allow", "::1"], {"::1"})

    def test_allow_file_and_deny_wins(self):
        f = self.path("allow.txt")
        with open(f, "w") as fh:
            fh.write("# loopback v4\n127.0.0.0/8\n\n::1/128  # and v6\n")
        self.matrix(["--allow-file", f, "--deny", "127.0.0.2"], {"127.0.0.1", "mapped", "::1"})

    def test_refusals_logged_once_a_second(self):
        lst = Listener(self, ["-k", "127.0.0.1:0", "--deny", "127.0.0.2"])
        for _ in range(5):
            self.try_peer(lst, "127.0.0.2", socket.AF_INET, "127.0.0.1")
        self.assertTrue(lst.wait_err(rb"refused 127\.0\.0\.2"))
        self.try_peer(lst, "127.0.0.1", socket.AF_INET, "127.0.0.1")
        self.assertTrue(lst.wait_out(b"from 127.0.0.1;"))
        n = len(re.findall(rb"refused 127\.0\.0\.2", lst.err.text()))
        self.assertEqual(n, 1, lst.err.text())
        self.assertEqual(lst.out.text(), b"from 127.0.0.1;")
        lst.stop()


class ClientOptions(SockitTestCase):
    """-4, -6 and --source on connect, checked by the server's view."""

    def server(self, family=socket.AF_INET, host="127.0.0.1"):
        srv = self.track(socket.socket(family, socket.SOCK_STREAM))
        srv.bind((host, 0))
        srv.listen(4)
        srv.settimeout(IO_TIMEOUT)
        return srv

    def run_connect(self, srv, addr, *opts):
        """Runs sockit connect to addr and returns (process result, the
        address the server saw)."""
        seen = {}

        def accept():
            try:
                c, peer = srv.accept()
            except OSError:
                return
            seen["peer"] = peer
            c.sendall(b"ok\n")
            c.close()
        t = threading.Thread(target=accept, daemon=True)
        t.start()
        cp = self.sockit("connect", addr, *opts, input=b"")
        t.join(IO_TIMEOUT)
        return cp, seen.get("peer")

    def test_source_address_and_port(self):
        srv = self.server()
        sport = unused_tcp_port()
        cp, peer = self.run_connect(srv, "127.0.0.1:%d" % srv.getsockname()[1],
                                    "--source", "127.0.0.2:%d" % sport)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"ok\n")
        self.assertEqual(peer, ("127.0.0.2", sport))
        cp, peer = self.run_connect(srv, "127.0.0.1:%d" % srv.getsockname()[1],
                                    "--source", "127.0.0.2")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(peer[0], "127.0.0.2")
        self.assertNotEqual(peer[1], 0)

    def test_source_ipv6(self):
        if not ipv6_loopback_available():
            self.skipTest("no IPv6 loopback")
        srv = self.server(socket.AF_INET6, "::1")
        sport = unused_tcp_port()
        cp, peer = self.run_connect(srv, "[::1]:%d" % srv.getsockname()[1],
                                    "--source", "[::1]:%d" % sport)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(peer[:2], ("::1", sport))

    def test_family_flags(self):
        if not ipv6_loopback_available():
            self.skipTest("no IPv6 loopback")
        srv = self.server(socket.AF_INET6, "::")   # dual stack: sees v4 as ::ffff:
        port = srv.getsockname()[1]
        cp, peer = self.run_connect(srv, "127.0.0.1:%d" % port, "-4")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(peer[0], "::ffff:127.0.0.1")
        cp, peer = self.run_connect(srv, "[::1]:%d" % port, "-6")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(peer[0], "::1")
        # A name without an address of the family asked: one line, exit 1.
        cp = self.sockit("connect", "-6", "127.0.0.1:%d" % port, input=b"")
        self.assertEqual(cp.returncode, 1)
        self.assertIn(b"has no IPv6 address", cp.stderr)
        cp = self.sockit("connect", "-4", "[::1]:%d" % port, input=b"")
        self.assertEqual(cp.returncode, 1)
        self.assertIn(b"has no IPv4 address", cp.stderr)

    def test_source_is_bound_for_udp(self):
        srv = self.track(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        srv.bind(("127.0.0.1", 0))
        srv.settimeout(IO_TIMEOUT)
        seen = {}

        def answer():
            data, peer = srv.recvfrom(100)
            seen["peer"] = peer
            srv.sendto(data.upper(), peer)
        t = threading.Thread(target=answer, daemon=True)
        t.start()
        cp = self.sockit("connect", "udp://127.0.0.1:%d" % srv.getsockname()[1], "--source",
                         "127.0.0.2", input=b"ping\n")
        t.join(IO_TIMEOUT)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"PING\n")
        self.assertEqual(seen["peer"][0], "127.0.0.2")

    def test_usage_errors(self):
        for args, needle in ((["-4", "-6", "127.0.0.1:1"], b"not both"),
                             (["-6", "--source", "127.0.0.1", "127.0.0.1:1"], b"not an IPv6"),
                             (["--source", "nowhere", "127.0.0.1:1"], b"numeric"),
                             (["--source", "127.0.0.1:99999", "127.0.0.1:1"], b"bad port"),
                             (["--source", "127.0.0.1", "unix:/tmp/x"], b"IP addresses only")):
            cp = self.sockit("connect", *args, input=b"")
            self.assertEqual(cp.returncode, 2, (args, cp.stderr))
            self.assertIn(needle, cp.stderr)

    def test_source_address_not_local(self):
        srv = self.server()
        cp = self.sockit("connect", "127.0.0.1:%d" % srv.getsockname()[1], "--source",
                         "192.0.2.7", input=b"")
        self.assertEqual(cp.returncode, 1)
        self.assertIn(b"address", cp.stderr.lower())


class ConnectHalfClose(SockitTestCase):
    """sockit connect after the server's end of stream: a half-close, so
    stdin still goes out whole (nc -N -l finishing its side first)."""

    def test_server_half_closes_first(self):
        srv = self.track(socket.socket())
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(IO_TIMEOUT)
        got = {}

        def serve():
            c, _ = srv.accept()
            c.settimeout(30)
            c.sendall(b"short answer")
            c.shutdown(socket.SHUT_WR)
            got["data"] = recv_until_eof(c)
            c.close()
        t = threading.Thread(target=serve, daemon=True)
        t.start()
        data = os.urandom(20 * 1024 * 1024)
        f = self.path("in")
        with open(f, "wb") as fh:
            fh.write(data)
        with open(f, "rb") as fin:
            cp = subprocess.run([SOCKIT, "connect", "127.0.0.1:%d" % srv.getsockname()[1]],
                                stdin=fin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                timeout=60, env=child_env())
        t.join(30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"short answer")
        self.assertTrue(got.get("data") == data, "the server did not get all of stdin")


class HexDump(SockitTestCase):

    LINE_RE = re.compile(rb"^([<>]) ([0-9a-f]{8})  ((?:[0-9a-f ]{2} ){8}) ((?:[0-9a-f ]{2} ){8}) "
                         rb"\|(.{1,16})\|$")

    def parse(self, text):
        """{direction: bytes} rebuilt from the dump's hex columns, checking
        the offsets and that the ASCII column matches the hex."""
        got = {b">": b"", b"<": b""}
        for line in text.splitlines():
            if not line.startswith((b">", b"<")):
                continue
            m = self.LINE_RE.match(line)
            self.assertIsNotNone(m, line)
            d = m.group(1)
            self.assertEqual(int(m.group(2), 16), len(got[d]), line)
            data = bytes.fromhex((m.group(3) + m.group(4)).decode())
            ascii_col = bytes(c if 0x20 <= c < 0x7f else ord(".") for c in data)
            self.assertEqual(m.group(5), ascii_col, line)
            got[d] += data
        return got

    def test_connect_hex_exact_lines(self):
        srv = self.serve("upper", "127.0.0.1:0")
        cp = self.sockit("connect", srv.addr, "--hex", input=b"hello\n")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"HELLO\n")
        lines = cp.stderr.decode().splitlines()
        self.assertIn("> 00000000  68 65 6c 6c 6f 0a" + " " * 33 + "|hello.|", lines)
        self.assertIn("< 00000000  48 45 4c 4c 4f 0a" + " " * 33 + "|HELLO.|", lines)

    def test_connect_hex_file_both_directions(self):
        srv = self.serve("upper", "127.0.0.1:0")
        data = bytes(range(256)) * 3 + b"tail"
        f = self.path("dump.txt")
        cp = self.sockit("connect", srv.addr, "--hex-file", f, input=data)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertNotIn(b"00000000", cp.stderr)
        with open(f, "rb") as fh:
            got = self.parse(fh.read())
        self.assertEqual(got[b">"], data)
        self.assertEqual(got[b"<"], cp.stdout)
        self.assertEqual(len(cp.stdout), len(data))

    def test_listen_hex(self):
        lst = Listener(self, ["127.0.0.1:0", "--hex"])
        s = self.track(conn(socket.AF_INET, ("127.0.0.1", lst.port())))
        lst.p.stdin.write(b"from the listener, over sixteen bytes")
        lst.p.stdin.close()
        s.sendall(b"\x00\x01binary\xff")
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(s), b"from the listener, over sixteen bytes")
        self.assertEqual(lst.wait(), 0)
        got = self.parse(lst.err.text())
        self.assertEqual(got[b">"], b"from the listener, over sixteen bytes")
        self.assertEqual(got[b"<"], b"\x00\x01binary\xff")
        self.assertIn(b"|..binary.|", lst.err.text())
