"""Network access lists of `sockit serve` (--allow, --deny, --allow-file,
--deny-file): a matrix of sources (127.0.0.1, 127.0.0.2, ::1, and
::ffff:127.0.0.1 as a dual-stack [::] listener sees it) against rules; a
refused peer is closed before a byte is read (greet never greets it),
logged at most once a second per source and counted in the stats; UDP
datagrams from refused sources are dropped; Unix sockets are unaffected;
bad values are usage errors.

Real clients only (Python sockets); loopback and port 0; bounded waits.
"""

import os
import re
import signal
import socket
import time
import unittest

import helpers
from helpers import SockitTestCase, wait_until

GREETING = b"Thank you for connecting\r\n"


def dial(addr, source=None, timeout=helpers.IO_TIMEOUT):
    """A TCP connection to a sockit address, from source (a local address)."""
    fam, _, sa = helpers.parse_addr(addr)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect(sa)
    return s


class Matrix(SockitTestCase):

    def greeted(self, addr, source):
        """True if greet answers a peer from source, False if it is closed
        without a byte."""
        with dial(addr, source) as s:  # closed here: the server's drain need not wait
            try:
                data = s.recv(len(GREETING))
            except ConnectionResetError:
                data = b""
            if data:
                self.assertEqual(data, GREETING[:len(data)])
                return True
            self.assertTrue(helpers.closed_by_peer(s))
            return False

    def check(self, listen, rules, expect):
        srv = self.serve("greet", listen, *rules)
        addr = srv.addr
        if listen.startswith("[::]:"):  # dual-stack: reach it over IPv4
            addr = "127.0.0.1:%d" % helpers.port_of(srv.addr)
        for source, ok in expect.items():
            with self.subTest(listen=listen, rules=rules, source=source):
                self.assertEqual(self.greeted(addr, source), ok)
        srv.stop_checked(self)
        return srv

    def test_ipv4(self):
        self.check("127.0.0.1:0", [], {"127.0.0.1": True, "127.0.0.2": True})
        self.check("127.0.0.1:0", ["--allow", "127.0.0.1"],
                   {"127.0.0.1": True, "127.0.0.2": False})
        self.check("127.0.0.1:0", ["--deny", "127.0.0.2/32"],
                   {"127.0.0.1": True, "127.0.0.2": False})
        # Deny wins inside an allowed network; several flags add up.
        self.check("127.0.0.1:0", ["--allow", "127.0.0.0/8", "--deny", "127.0.0.1",
                                   "--allow", "10.0.0.0/8"],
                   {"127.0.0.1": False, "127.0.0.2": True})
        self.check("127.0.0.1:0", ["--allow", "10.0.0.0/8,::1"],
                   {"127.0.0.1": False, "127.0.0.2": False})

    def test_ipv6(self):
        if not helpers.ipv6_loopback_available():
            self.skipTest("no IPv6 loopback (::1) here")
        self.check("[::1]:0", ["--allow", "::1"], {"::1": True})
        self.check("[::1]:0", ["--allow", "127.0.0.1"], {"::1": False})
        self.check("[::1]:0", ["--deny", "::/0"], {"::1": False})
        self.check("[::1]:0", ["--deny", "0.0.0.0/0"], {"::1": True})

    def test_mapped_peers_match_ipv4_rules(self):
        if not helpers.ipv6_loopback_available():
            self.skipTest("no IPv6 here")
        with open("/proc/sys/net/ipv6/bindv6only") as f:
            if f.read().strip() != "0":
                self.skipTest("net.ipv6.bindv6only=1: [::] is not dual-stack here")
        srv = self.check("[::]:0", ["--allow", "127.0.0.1"],
                         {"127.0.0.1": True, "127.0.0.2": False})
        # An IPv4 peer of an [::] listener is ::ffff:127.0.0.2 (logged unmapped).
        self.assertTrue(srv.find(r"refused 127\.0\.0\.2:\d+"), srv.stderr_text())
        self.check("[::]:0", ["--deny", "127.0.0.1"], {"127.0.0.1": False, "127.0.0.2": True})
        self.check("[::]:0", ["--allow", "::ffff:127.0.0.0/104"],
                   {"127.0.0.1": True, "127.0.0.2": True})


class Behaviour(SockitTestCase):

    def test_refusals_are_logged_once_a_second_and_counted(self):
        srv = self.serve("echo", "127.0.0.1:0", "--allow", "127.0.0.1")
        t0 = time.monotonic()
        for _ in range(5):
            s = dial(srv.addr, "127.0.0.2")
            self.track(s)
            self.assertTrue(helpers.closed_by_peer(s))
        elapsed = time.monotonic() - t0
        # An allowed peer still works.
        s = self.connect(srv.addr)
        self.assertEqual(helpers.echo_roundtrip(s), b"ping")
        srv.send_signal(signal.SIGUSR1)
        srv.wait_line(r"stats .*refused_acl=5\b")
        lines = srv.find(r"refused 127\.0\.0\.2:\d+: not allowed by the access list")
        self.assertGreaterEqual(len(lines), 1)
        self.assertLessEqual(len(lines), 1 + int(elapsed), lines)
        self.assertTrue(srv.find(r"stats .*accepted=1\b"), "refused peers counted as accepted")
        srv.stop_checked(self)

    def test_udp_drops_refused_sources(self):
        srv = self.serve("echo", "udp://127.0.0.1:0", "--deny", "127.0.0.2")
        port = helpers.port_of(srv.addr)
        bad = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        good = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socks += [bad, good]
        bad.bind(("127.0.0.2", 0))
        good.bind(("127.0.0.1", 0))
        good.settimeout(helpers.IO_TIMEOUT)
        bad.sendto(b"from-bad", ("127.0.0.1", port))
        good.sendto(b"from-good", ("127.0.0.1", port))
        self.assertEqual(good.recv(100), b"from-good")
        # The bad datagram was read before the good one: no answer came.
        bad.setblocking(False)
        with self.assertRaises(BlockingIOError):
            bad.recv(100)
        srv.wait_line(r"dropped a datagram from 127\.0\.0\.2:\d+: not allowed")
        srv.send_signal(signal.SIGUSR1)
        srv.wait_line(r"stats .*refused_acl=1\b")
        srv.stop_checked(self)

    def test_unix_sockets_are_unaffected(self):
        name = "unix:@sockit-acl-%d" % os.getpid()
        srv = self.serve("echo", name, "--allow", "10.0.0.0/8")
        s = self.connect(srv.addr)
        self.assertEqual(helpers.echo_roundtrip(s), b"ping")
        srv.stop_checked(self)

    def test_rules_files(self):
        allow = self.path("allow.txt")
        with open(allow, "w") as f:
            f.write("# who may connect\n127.0.0.1   # this host\n\n  ::1/128\n")
        deny = self.path("deny.txt")
        with open(deny, "w") as f:
            f.write("127.0.0.0/8\n")
        srv = self.serve("echo", "127.0.0.1:0", "--allow-file", allow)
        s = self.connect(srv.addr)
        self.assertEqual(helpers.echo_roundtrip(s), b"ping")
        s = dial(srv.addr, "127.0.0.2")
        self.track(s)
        self.assertTrue(helpers.closed_by_peer(s))
        srv.stop_checked(self)
        srv = self.serve("echo", "127.0.0.1:0", "--deny-file", deny)
        s = dial(srv.addr, "127.0.0.1")
        self.track(s)
        self.assertTrue(helpers.closed_by_peer(s))
        srv.stop_checked(self)

    def test_usage_errors(self):
        bad = self.path("bad.txt")
        with open(bad, "w") as f:
            f.write("127.0.0.1\nlocalhost\n")
        cases = [
            (["echo", "127.0.0.1:0", "--allow", "ls"],
             b"--allow takes network addresses (CIDR); to limit exec's programs use --allow-cmd"),
            (["echo", "127.0.0.1:0", "--allow", "10.0.0.0/33"], b"--allow takes network"),
            (["echo", "127.0.0.1:0", "--deny", "nothing"], b"--deny takes network addresses"),
            (["echo", "127.0.0.1:0", "--allow-file", self.path("missing")], b"missing"),
            (["echo", "127.0.0.1:0", "--deny-file", bad], b"line 2"),
        ]
        for argv, word in cases:
            with self.subTest(argv=" ".join(argv)):
                cp = self.sockit("serve", *argv, timeout=10)
                self.assertEqual(cp.returncode, 2, cp.stderr)
                self.assertIn(word, cp.stderr)
                self.assertEqual(cp.stderr.count(b"\n"), 1, cp.stderr)


if __name__ == "__main__":
    unittest.main()
