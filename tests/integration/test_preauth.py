"""The pre-authentication limits exec and files share (services/proto/preauth.c):
idle sockets from one source (127.0.0.2: the whole 127/8 is local) never
lock out a client from another (127.0.0.1), a full table evicts the oldest
connection of the most represented source, a source at its own cap is
refused, and a socket that never says hello is dropped after the hello
deadline (2 s), well before the handshake deadline (10 s).

The idle sockets are raw Python sockets; the legitimate clients are the
`sockit exec` and `sockit put` commands. Every wait is bounded.
"""

import os
import resource
import secrets
import socket
import struct
import time

import helpers
from helpers import SOCKIT, SockitTestCase

EXEC_HELLO = b"\x01SKIT\x01\x04exec"
FILES_HELLO = b"\x01SKIT\x01\x05files"


def frame(payload):
    return struct.pack("!I", len(payload)) + payload


def from_source(addr, source, timeout=5.0):
    """A TCP socket to a sockit address, bound to the source address."""
    host, port = helpers.parse_addr(addr)[2]
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((source, 0))
    s.connect((host, port))
    return s


class PreAuthCase(SockitTestCase):

    def setUp(self):
        super().setUp()
        # 1000 idle sockets here, and as many accepted in the server (which
        # inherits the limit): raise the soft limit to what is allowed.
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        self.token_file = self.path("token")
        with open(self.token_file, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(self.token_file, 0o600)
        self.root = self.path("root")
        os.mkdir(self.root)

    def exec_server(self, *extra):
        return self.serve("exec", "127.0.0.1:0", "--token-file", self.token_file, *extra)

    def files_server(self, *extra):
        return self.serve("files", "127.0.0.1:0", "--token-file", self.token_file,
                          "--root", self.root, *extra)

    def idle_from(self, srv, source, n):
        socks = []
        for _ in range(n):
            s = from_source(srv.addr, source)
            self.track(s)
            socks.append(s)
        return socks

    def run_exec(self, srv):
        cp = self.run_cmd([SOCKIT, "exec", srv.addr, "--token-file", self.token_file, "--",
                           "echo", "legit"], timeout=30)
        self.assertClean(cp)
        return cp

    def run_put(self, srv, name):
        local = self.path(name)
        with open(local, "wb") as f:
            f.write(b"payload of " + name.encode())
        cp = self.run_cmd([SOCKIT, "put", srv.addr, local, name, "--token-file",
                           self.token_file, "--quiet"], timeout=30)
        self.assertClean(cp)
        return cp

    def assertExecWorks(self, srv):
        t0 = time.monotonic()
        cp = self.run_exec(srv)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"legit\n")
        self.assertLess(time.monotonic() - t0, 5)

    def assertPutWorks(self, srv, name):
        t0 = time.monotonic()
        cp = self.run_put(srv, name)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        with open(os.path.join(self.root, name), "rb") as f:
            self.assertEqual(f.read(), b"payload of " + name.encode())
        self.assertLess(time.monotonic() - t0, 5)

    def close_all(self, socks):
        for s in socks:
            s.close()


class IdleSockets(PreAuthCase):

    def test_exec_64_idle_sockets_from_one_source(self):
        srv = self.exec_server()
        socks = self.idle_from(srv, "127.0.0.2", 64)
        self.assertExecWorks(srv)
        self.assertExecWorks(srv)
        self.close_all(socks)
        srv.stop_checked(self)

    def test_exec_1000_idle_sockets_from_one_source(self):
        srv = self.exec_server()
        socks = self.idle_from(srv, "127.0.0.2", 1000)
        self.assertExecWorks(srv)
        self.close_all(socks)
        srv.stop_checked(self)

    def test_exec_64_idle_sockets_with_no_per_source_cap(self):
        # A source allowed the whole table still cannot keep others out:
        # the newcomer evicts one of its connections.
        srv = self.exec_server("--max-unauth-per-source", "64")
        socks = self.idle_from(srv, "127.0.0.2", 64)
        for s in socks:
            s.sendall(frame(EXEC_HELLO))
        for s in socks:
            self.assertEqual(helpers.read_frame(s)[0], 0x02)
        self.assertExecWorks(srv)
        srv.wait_line(r"evicting the oldest unauthenticated connection from 127\.0\.0\.2")
        self.close_all(socks)
        srv.stop_checked(self)

    def test_files_64_and_1000_idle_sockets_from_one_source(self):
        srv = self.files_server()
        socks = self.idle_from(srv, "127.0.0.2", 64)
        self.assertPutWorks(srv, "a.txt")
        socks += self.idle_from(srv, "127.0.0.2", 936)
        self.assertPutWorks(srv, "b.txt")
        self.close_all(socks)
        srv.stop_checked(self)

    def test_files_64_idle_sockets_with_no_per_source_cap(self):
        srv = self.files_server("--max-unauth-per-source", "64")
        socks = self.idle_from(srv, "127.0.0.2", 64)
        for s in socks:
            s.sendall(frame(FILES_HELLO))
        for s in socks:
            self.assertEqual(helpers.read_frame(s)[0], 0x02)
        self.assertPutWorks(srv, "c.txt")
        self.close_all(socks)
        srv.stop_checked(self)


class Eviction(PreAuthCase):

    def admitted(self, srv, source, hello):
        s = from_source(srv.addr, source)
        self.track(s)
        s.sendall(frame(hello))
        self.assertEqual(helpers.read_frame(s)[0], 0x02)
        return s

    def check_eviction(self, srv, hello):
        # Two from .2 (its cap): a third from .2 is refused, not admitted.
        a = [self.admitted(srv, "127.0.0.2", hello) for _ in range(2)]
        d = from_source(srv.addr, "127.0.0.2")
        self.track(d)
        got = helpers.recv_until_eof(d)
        self.assertEqual(got[4:6], b"\x7f\x04", got)
        self.assertIn(b"from your address", got)
        # One each from .3 and .4: the table (4) is full, .2 the most
        # represented; a newcomer from .1 evicts .2's oldest.
        b = self.admitted(srv, "127.0.0.3", hello)
        c = self.admitted(srv, "127.0.0.4", hello)
        e = self.admitted(srv, "127.0.0.1", hello)
        got = helpers.recv_until_eof(a[0])
        self.assertEqual(got[4:6], b"\x7f\x04", got)
        self.assertIn(b"evicted", got)
        for s in [a[1], b, c, e]:
            self.assertFalse(helpers.closed_by_peer(s, timeout=0.3))
        self.close_all(a + [b, c, d, e])

    def test_exec_evicts_oldest_of_most_represented_source(self):
        srv = self.exec_server("--max-unauth", "4", "--max-unauth-per-source", "2")
        self.check_eviction(srv, EXEC_HELLO)
        srv.wait_line(r"exec .*127\.0\.0\.2:\d+ evicted")
        srv.stop_checked(self)

    def test_files_evicts_oldest_of_most_represented_source(self):
        srv = self.files_server("--max-unauth", "4", "--max-unauth-per-source", "2")
        self.check_eviction(srv, FILES_HELLO)
        srv.wait_line(r"files .*127\.0\.0\.2:\d+ evicted")
        srv.stop_checked(self)


class HelloDeadline(PreAuthCase):

    def check_deadline(self, srv, hello):
        s = self.connect(srv.addr)
        t0 = time.monotonic()
        self.assertTrue(helpers.closed_by_peer(s, timeout=6))
        took = time.monotonic() - t0
        self.assertGreater(took, 1.5)
        self.assertLess(took, 4.5)   # the handshake deadline is 10 s
        # A hello in time: the rest of the handshake may take longer than 2 s.
        s = self.connect(srv.addr)
        s.sendall(frame(hello))
        self.assertEqual(helpers.read_frame(s)[0], 0x02)
        self.assertFalse(helpers.closed_by_peer(s, timeout=3))
        s.close()

    def test_exec_idle_connection_closed_after_hello_deadline(self):
        srv = self.exec_server()
        self.check_deadline(srv, EXEC_HELLO)
        srv.wait_line(r"reason=handshake timeout: no hello in time")
        srv.stop_checked(self)

    def test_files_idle_connection_closed_after_hello_deadline(self):
        srv = self.files_server()
        self.check_deadline(srv, FILES_HELLO)
        srv.wait_line(r"reason=handshake timeout: no hello in time")
        srv.stop_checked(self)

    def test_help_and_bad_values(self):
        cp = self.run_cmd([SOCKIT, "serve", "--help"])
        self.assertIn(b"--max-unauth-per-source N", cp.stdout)
        cp = self.run_cmd([SOCKIT, "serve", "exec", "127.0.0.1:0", "--token-file",
                           self.token_file, "--max-unauth-per-source", "0"])
        self.assertEqual(cp.returncode, 2, cp.stderr)
        cp = self.run_cmd([SOCKIT, "serve", "echo", "127.0.0.1:0",
                           "--max-unauth-per-source", "4"])
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn(b"exec and files", cp.stderr)
