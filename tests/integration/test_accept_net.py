"""Acceptance checks of issue 18 read sentence by sentence, for behaviours
the feature tests leave implicit: relay's --connect-timeout defaults to 10 s
(a target that never accepts closes the client cleanly after about 10 s, the
reason logged); a peer refused by the access list is never dialed through
to the target, each source gets its own log line, and the refusals are
counted; `sockit listen` exits 0 on a clean end, 1 on a listen error and 2
on a usage error, each with one line; so
does `sockit relay` without its two addresses.

Real peers only (Python sockets); loopback, port 0; bounded waits."""

import re
import signal
import socket
import subprocess
import time

import helpers
from helpers import SOCKIT, SockitTestCase
from test_relay import RelayBase


def dial_from(addr, source):
    fam, _, sa = helpers.parse_addr(addr)
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(helpers.IO_TIMEOUT)
    s.bind((source, 0))
    s.connect(sa)
    return s


class RelayDefaults(RelayBase):

    def test_connect_timeout_defaults_to_ten_seconds(self):
        # A target whose accept queue is full drops SYNs: connect never ends.
        lst = self.track(socket.socket())
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        for _ in range(4):
            f = self.track(socket.socket())
            f.setblocking(False)
            f.connect_ex(lst.getsockname())
        time.sleep(0.1)
        srv = self.relay("127.0.0.1:0", "127.0.0.1:%d" % lst.getsockname()[1])
        s = self.connect(srv.addr)
        port = s.getsockname()[1]
        s.settimeout(20)
        t0 = time.monotonic()
        self.assertEqual(s.recv(10), b"")             # an orderly close, not a reset
        took = time.monotonic() - t0
        self.assertGreater(took, 9.0)
        self.assertLess(took, 13.0)
        m = self.close_line(srv, port)
        self.assertRegex(m.string, r"(?i)time")
        srv.stop_checked(self)


class RelayAccess(RelayBase):

    def test_refused_peers_never_reach_the_target_each_source_logged(self):
        t = self.target(lambda c: c.sendall(b"target says hi"))
        srv = self.relay("127.0.0.1:0", t.addr,
                         "--deny", "127.0.0.2,127.0.0.3")
        for _ in range(3):
            for src in ("127.0.0.2", "127.0.0.3"):
                s = self.track(dial_from(srv.addr, src))
                self.assertTrue(helpers.closed_by_peer(s))
        # The allowed peer goes through; then no refused one was dialed.
        s = self.connect(srv.addr)
        self.assertEqual(helpers.recv_exact(s, 14), b"target says hi")
        self.assertEqual(t.accepted, 1)
        # Per source: one source's line does not hide another's.
        srv.wait_line(r"refused 127\.0\.0\.2:\d+: not allowed")
        srv.wait_line(r"refused 127\.0\.0\.3:\d+: not allowed")
        srv.send_signal(signal.SIGUSR1)
        srv.wait_line(r"stats .*refused_acl=6\b")
        s.close()
        srv.stop_checked(self)


class RelayUsage(RelayBase):

    def test_missing_addresses_are_one_line_exit_2(self):
        for argv in ([], ["127.0.0.1:0"], ["127.0.0.1:0", "--connect-timeout", "5"]):
            with self.subTest(argv=argv):
                cp = self.sockit("relay", *argv, timeout=10)
                self.assertEqual(cp.returncode, 2, cp.stderr)
                self.assertEqual(cp.stderr.count(b"\n"), 1, cp.stderr)
                self.assertIn(b"sockit relay LISTEN TARGET", cp.stderr)


class ListenExit(SockitTestCase):

    def test_exit_codes_clean_error_usage(self):
        p = self.popen([SOCKIT, "listen", "127.0.0.1:0"], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = p.stderr.readline().decode()
        m = re.match(r"^sockit: listening on 127\.0\.0\.1:(\d+)$", line.strip())
        self.assertIsNotNone(m, line)
        s = self.track(socket.create_connection(("127.0.0.1", int(m.group(1))),
                                                helpers.IO_TIMEOUT))
        s.sendall(b"to stdout")
        s.shutdown(socket.SHUT_WR)
        out, err = p.communicate(b"to the peer", timeout=10)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out, b"to stdout")
        self.assertEqual(helpers.recv_until_eof(s), b"to the peer")
        # The port in use: one line, exit 1.
        busy = self.track(socket.socket())
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        cp = self.run_cmd([SOCKIT, "listen", "127.0.0.1:%d" % busy.getsockname()[1]],
                          input=b"", timeout=10)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertEqual(cp.stderr.count(b"\n"), 1, cp.stderr)
        self.assertIn(b"Address already in use", cp.stderr)
        # Usage errors: one line, exit 2.
        for argv in (["listen"], ["listen", "127.0.0.1:0", "--bogus"],
                     ["listen", "300.1.1.1:5"], ["listen", "tls://127.0.0.1:0"]):
            with self.subTest(argv=argv):
                cp = self.run_cmd([SOCKIT] + argv, input=b"", timeout=10)
                self.assertEqual(cp.returncode, 2, cp.stderr)
                self.assertEqual(cp.stderr.count(b"\n"), 1, cp.stderr)


if __name__ == "__main__":
    import unittest
    unittest.main()
