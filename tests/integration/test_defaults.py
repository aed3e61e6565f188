"""Serve-level defaults for services sharing one process: without
--max-conns, each stream service of several gets an equal share of the
descriptor limit, so that idle connections to one (echo) cannot take the
descriptors another (exec) needs; --max-conns given explicitly wins, and a
lone service keeps no cap."""

import os
import re
import secrets
import shutil
import socket

from helpers import SockitTestCase, echo_roundtrip, port_of, wait_until

NOFILE = 128            # the descriptor limit of the servers here
IDLE = 200              # idle connections opened to echo: more than NOFILE
SHARE_RE = r"each service holds at most (\d+) connections \(descriptor limit (\d+)"


class SharedDescriptors(SockitTestCase):

    def setUp(self):
        super().setUp()
        if shutil.which("prlimit") is None:
            self.skipTest("prlimit (util-linux) not installed")
        self.tok = self.path("tok")
        with open(self.tok, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(self.tok, 0o600)

    def serve_limited(self, *args):
        return self.serve(*args, prefix=["prlimit", "--nofile=%d:%d" % (NOFILE, NOFILE)])

    def open_idle(self, addr, n):
        host, port = "127.0.0.1", port_of(addr)
        return [self.track(socket.create_connection((host, port), timeout=5)) for _ in range(n)]

    def test_idle_echo_connections_cannot_starve_exec(self):
        # The review's reproducer: 200 idle peers on echo, then an exec
        # client in the same process. Before the default share, echo took
        # every descriptor and exec's client was shed (reset).
        srv = self.serve_limited("echo=127.0.0.1:0", "exec=127.0.0.1:0", "--token-file", self.tok)
        m = srv.wait_line(SHARE_RE)[0]
        share = int(m.group(1))
        self.assertEqual(int(m.group(2)), NOFILE)
        self.assertEqual(share, (NOFILE - 64) // 2)
        self.open_idle(srv.addr_of("echo"), IDLE)
        # Every peer beyond the share is accepted and closed at once.
        self.assertTrue(wait_until(lambda: len(srv.find(r"reason=max-conns reached")) >= IDLE - share,
                                   10), srv.stderr_text()[-2000:])
        self.assertFalse(srv.find(r"out of descriptors"), "echo took every descriptor")
        for _ in range(3):
            cp = self.sockit("exec", srv.addr_of("exec"), "--token-file", self.tok, "--", "true",
                             timeout=60)
            self.assertEqual(cp.returncode, 0, cp.stderr.decode(errors="replace"))
        cp = self.sockit("exec", srv.addr_of("exec"), "--token-file", self.tok, "--", "echo", "ok",
                         timeout=60)
        self.assertEqual((cp.returncode, cp.stdout), (0, b"ok\n"), cp.stderr)

    def test_explicit_max_conns_wins(self):
        srv = self.serve_limited("echo=127.0.0.1:0", "upper=127.0.0.1:0", "--max-conns", "50")
        self.assertFalse(srv.find(SHARE_RE))
        socks = self.open_idle(srv.addr_of("echo"), 40)    # more than the share (32)
        for s in socks:
            self.assertEqual(echo_roundtrip(s), b"ping")

    def test_one_service_has_no_default_cap(self):
        srv = self.serve_limited("echo", "127.0.0.1:0")
        self.assertFalse(srv.find(SHARE_RE))
        socks = self.open_idle(srv.addr, 60)
        for s in socks:
            self.assertEqual(echo_roundtrip(s), b"ping")

    def test_datagram_listeners_take_no_share(self):
        # One stream service and a datagram one: a datagram listener holds
        # one descriptor, whatever its peers do, so no share is needed.
        srv = self.serve_limited("echo=127.0.0.1:0", "echo=udp://127.0.0.1:0")
        self.assertFalse(srv.find(SHARE_RE))
        self.assertTrue(re.match(r"^udp://", srv.listeners[1][1]))
