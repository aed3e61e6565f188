"""Address forms: tcp://, IPv6, unix paths (stale / live / own file
removed), abstract unix, and several services in one process."""

import os
import random
import signal
import socket
import unittest

from helpers import (SockitTestCase, echo_roundtrip, ipv6_loopback_available, port_of,
                     recv_exact, recv_until_eof)


IN_USE = r"(?i)address (already )?in use"


def abstract_name(tag):
    return "skit-%s-%d-%d" % (tag, os.getpid(), random.randrange(1 << 30))


class TcpForms(SockitTestCase):

    def test_tcp_scheme_and_canonical_readiness(self):
        srv = self.serve("echo", "tcp://127.0.0.1:0")
        self.assertRegex(srv.addr, r"^127\.0\.0\.1:\d+$")
        self.assertNotEqual(port_of(srv.addr), 0, "readiness line must show the real port")
        s = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(s, b"tcp://"), b"tcp://")

    def test_host_name(self):
        srv = self.serve("echo", "localhost:0")
        self.assertRegex(srv.addr, r"^(127\.0\.0\.1|\[::1\]):[1-9]\d*$")
        s = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(s, b"by name"), b"by name")

    @unittest.skipUnless(ipv6_loopback_available(), "no IPv6 on loopback")
    def test_ipv6_loopback(self):
        srv = self.serve("echo", "[::1]:0")
        self.assertRegex(srv.addr, r"^\[::1\]:[1-9]\d*$")
        s = self.connect(srv.addr)
        self.assertEqual(s.family, socket.AF_INET6)
        data = os.urandom(100000)
        s.sendall(data)
        self.assertEqual(recv_exact(s, len(data)), data)
        s.close()
        # The peer in the log is an IPv6 address too.
        srv.wait_line(r"^sockit: echo close \[::1\]:\d+ in=100000 out=100000 ")

    @unittest.skipUnless(ipv6_loopback_available(), "no IPv6 on loopback")
    def test_ipv6_udp(self):
        srv = self.serve("echo", "udp://[::1]:0")
        self.assertRegex(srv.addr, r"^udp://\[::1\]:[1-9]\d*$")
        s = self.connect(srv.addr)
        s.send(b"v6 datagram")
        self.assertEqual(s.recv(65536), b"v6 datagram")


class UnixPaths(SockitTestCase):

    def test_unix_path_served_and_removed_on_exit(self):
        path = self.path("echo.sock")
        srv = self.serve("echo", "unix:" + path)
        self.assertEqual(srv.addr, "unix:" + path)
        self.assertTrue(os.path.exists(path))
        s = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(s, b"over unix"), b"over unix")
        s.close()
        srv.stop_checked(self)
        self.assertFalse(os.path.exists(path), "socket file left behind after SIGTERM")

    def test_unix_removed_after_sigint(self):
        path = self.path("int.sock")
        srv = self.serve("echo", "unix:" + path)
        srv.stop_checked(self, sig=signal.SIGINT)
        self.assertFalse(os.path.exists(path))

    def test_stale_socket_file_is_replaced(self):
        path = self.path("stale.sock")
        old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old.bind(path)
        old.close()                      # file stays, nobody listens: stale
        self.assertTrue(os.path.exists(path))
        srv = self.serve("echo", "unix:" + path)
        s = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(s, b"replaced"), b"replaced")

    def test_live_socket_is_not_stolen(self):
        path = self.path("live.sock")
        live = self.track(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        live.bind(path)
        live.listen(4)
        cp = self.sockit("serve", "echo", "unix:" + path, timeout=20)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        err = cp.stderr.decode()
        self.assertRegex(err, IN_USE)
        self.assertClean(cp)
        # Our listener and its file are intact.
        self.assertTrue(os.path.exists(path))
        c = self.track(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
        c.settimeout(5)
        c.connect(path)
        live.settimeout(5)
        a, _ = live.accept()
        a.close()

    def test_regular_file_is_not_removed(self):
        path = self.path("not-a-socket")
        with open(path, "wb") as f:
            f.write(b"precious")
        cp = self.sockit("serve", "echo", "unix:" + path, timeout=20)
        self.assertNotEqual(cp.returncode, 0)
        self.assertClean(cp)
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"precious")

    def test_abstract_unix(self):
        name = abstract_name("abs")
        srv = self.serve("echo", "unix:@" + name)
        self.assertEqual(srv.addr, "unix:@" + name)
        s = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(s, b"abstract"), b"abstract")
        # No file appears anywhere for an abstract socket; a second server on
        # the same name is refused while the first lives.
        cp = self.sockit("serve", "echo", "unix:@" + name, timeout=20)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertRegex(cp.stderr.decode(), IN_USE)

    def test_tcp_port_in_use(self):
        holder = self.track(socket.socket())
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        cp = self.sockit("serve", "echo", "127.0.0.1:%d" % port, timeout=20)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        lines = cp.stderr.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertRegex(lines[0], IN_USE)


class SeveralServices(SockitTestCase):

    def test_four_services_in_one_process(self):
        upath = self.path("upper.sock")
        gname = abstract_name("greet")
        srv = self.serve("echo=127.0.0.1:0", "upper=unix:" + upath, "greet=unix:@" + gname,
                         "echo=udp://127.0.0.1:0")
        services = sorted(s for s, _ in srv.listeners)
        self.assertEqual(services, ["echo", "echo", "greet", "upper"])
        tcp = [a for s, a in srv.listeners if s == "echo" and not a.startswith("udp://")][0]
        udp = [a for s, a in srv.listeners if s == "echo" and a.startswith("udp://")][0]
        self.assertRegex(tcp, r"^127\.0\.0\.1:[1-9]\d*$")
        self.assertEqual(srv.addr_of("upper"), "unix:" + upath)
        self.assertEqual(srv.addr_of("greet"), "unix:@" + gname)

        e = self.connect(tcp)
        self.assertEqual(echo_roundtrip(e, b"echo me"), b"echo me")
        u = self.connect("unix:" + upath)
        self.assertEqual(echo_roundtrip(u, b"upper me"), b"UPPER ME")
        g = self.connect("unix:@" + gname)
        self.assertEqual(recv_until_eof(g), b"Thank you for connecting\r\n")
        d = self.connect(udp)
        d.send(b"dgram")
        self.assertEqual(d.recv(100), b"dgram")
        for s in (e, u, g, d):
            s.close()
        srv.stop_checked(self)
        self.assertFalse(os.path.exists(upath))

    def test_options_apply_to_all(self):
        srv = self.serve("echo=127.0.0.1:0", "upper=127.0.0.1:0", "--framing", "line")
        e = self.connect(srv.addr_of("echo"))
        u = self.connect(srv.addr_of("upper"))
        self.assertEqual(echo_roundtrip(e, b"x", "line"), b"x\n")
        u.sendall(b"y\r\n")
        self.assertEqual(recv_exact(u, 2), b"Y\n")
