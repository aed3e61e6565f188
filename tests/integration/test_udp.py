"""Datagram services: UDP and unixgram echo/upper (each datagram back to its
sender, up to 65,507 bytes; no truncated or amplified replies)."""

import os
import random
import socket

from helpers import SockitTestCase, parse_addr, port_of

SIZES = (0, 1, 1400, 65507)


class Udp(SockitTestCase):

    def udp_client(self):
        s = self.track(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        s.settimeout(5)
        s.bind(("127.0.0.1", 0))
        return s

    def test_echo_sizes(self):
        srv = self.serve("echo", "udp://127.0.0.1:0")
        self.assertRegex(srv.addr, r"^udp://127\.0\.0\.1:[1-9]\d*$")
        dest = ("127.0.0.1", port_of(srv.addr))
        c = self.udp_client()
        for size in SIZES:
            data = os.urandom(size)
            c.sendto(data, dest)
            got, frm = c.recvfrom(70000)
            self.assertEqual(len(got), size)
            self.assertEqual(got, data, "size %d" % size)
            self.assertEqual(frm, dest, "reply must come from the service address")

    def test_each_sender_gets_its_own_reply(self):
        srv = self.serve("echo", "udp://127.0.0.1:0")
        dest = ("127.0.0.1", port_of(srv.addr))
        clients = [self.udp_client() for _ in range(10)]
        for round_ in range(20):
            for i, c in enumerate(clients):
                c.sendto(b"client %d round %d" % (i, round_), dest)
            for i, c in enumerate(clients):
                self.assertEqual(c.recv(1000), b"client %d round %d" % (i, round_))

    def test_burst_keeps_every_datagram_boundary(self):
        # Replies to one peer leave grouped (UDP segmentation offload): runs
        # of equal sizes, a shorter one ending a run, a longer one after a
        # shorter, empty datagrams, runs longer than one send may carry (64
        # datagrams, 65,000 bytes), and two peers interleaved. Each reply
        # must come back whole, alone and in order. Bursts stay within the
        # server's default receive buffer, so that nothing is lost there.
        srv = self.serve("echo", "udp://127.0.0.1:0")
        dest = ("127.0.0.1", port_of(srv.addr))
        a, b = self.udp_client(), self.udp_client()
        for s in (a, b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        mixed = [64] * 10 + [30] + [64, 100, 100, 7, 7, 0, 0, 5, 64, 64]
        bursts = [[(a, n) for n in mixed for _ in (0,)] + [(b, n) for n in mixed],
                  [x for n in mixed for x in ((a, n), (b, n))],
                  [(a, 1400)] * 50 + [(a, 1399), (a, 1400), (a, 1400)],
                  [(b, 64)] * 70 + [(b, 30)]]
        seq = 0
        for burst in bursts:
            sent = {id(a): [], id(b): []}
            for s, size in burst:
                seq += 1
                data = bytes([seq % 251]) * size
                s.sendto(data, dest)
                sent[id(s)].append(data)
            for s in (a, b):
                for i, want in enumerate(sent[id(s)]):
                    got = s.recv(70000)
                    self.assertEqual(len(got), len(want), "datagram %d: %d bytes, sent %d"
                                     % (i, len(got), len(want)))
                    self.assertEqual(got, want, "datagram %d differs" % i)

    def test_upper_over_udp(self):
        srv = self.serve("upper", "udp://127.0.0.1:0")
        c = self.udp_client()
        c.sendto("udp héllo".encode(), ("127.0.0.1", port_of(srv.addr)))
        self.assertEqual(c.recv(1000), "UDP HéLLO".encode())

    def test_udp_with_nc(self):
        srv = self.serve("echo", "udp://127.0.0.1:0")
        cp = self.run_cmd(["nc", "-u", "-w", "1", "127.0.0.1", str(port_of(srv.addr))],
                          input=b"hello over nc -u\n", timeout=20)
        self.assertEqual(cp.stdout, b"hello over nc -u\n")

    def test_no_descriptor_growth_with_many_peers(self):
        srv = self.serve("echo", "udp://127.0.0.1:0")
        dest = ("127.0.0.1", port_of(srv.addr))
        base = srv.fd_count()
        for i in range(200):
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                c.settimeout(5)
                c.sendto(b"%d" % i, dest)
                self.assertEqual(c.recv(100), b"%d" % i)
            finally:
                c.close()
        self.assertEqual(srv.fd_count(), base)


class Unixgram(SockitTestCase):

    def client(self, name):
        s = self.track(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        s.settimeout(5)
        s.bind(self.path(name))           # the server needs an address to answer to
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        return s

    def test_echo_sizes(self):
        spath = self.path("dg.sock")
        srv = self.serve("echo", "unixgram:" + spath)
        self.assertEqual(srv.addr, "unixgram:" + spath)
        c = self.client("c.sock")
        for size in SIZES:
            data = os.urandom(size)
            c.sendto(data, spath)
            got, frm = c.recvfrom(70000)
            self.assertEqual(got, data, "size %d" % size)
            self.assertEqual(frm, spath)
        c.close()
        srv.stop_checked(self)
        self.assertFalse(os.path.exists(spath), "unixgram socket file left behind")

    def test_unbound_sender_does_not_hurt(self):
        # A sender without an address cannot be answered; the server must
        # shrug and keep serving the next one.
        spath = self.path("dg2.sock")
        srv = self.serve("echo", "unixgram:" + spath)
        anon = self.track(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        for _ in range(5):
            anon.sendto(b"nobody to answer", spath)
        c = self.client("c2.sock")
        c.sendto(b"answer me", spath)
        self.assertEqual(c.recv(100), b"answer me")

    def test_oversize_datagram_never_truncated(self):
        # Bigger than 65,507: either dropped or echoed whole, never cut short.
        spath = self.path("dg3.sock")
        srv = self.serve("echo", "unixgram:" + spath)
        c = self.client("c3.sock")
        big = os.urandom(100000)
        c.sendto(big, spath)
        c.sendto(b"after", spath)
        got = c.recv(200000)
        if got != b"after":
            self.assertEqual(len(got), len(big), "oversize datagram echoed truncated")
            self.assertEqual(got, big)
            got = c.recv(200000)
        self.assertEqual(got, b"after")

    def test_abstract_unixgram(self):
        name = "skit-dg-%d-%d" % (os.getpid(), random.randrange(1 << 30))
        srv = self.serve("upper", "unixgram:@" + name)
        self.assertEqual(srv.addr, "unixgram:@" + name)
        c = self.client("c4.sock")
        c.sendto(b"abstract dgram", parse_addr(srv.addr)[2])
        self.assertEqual(c.recv(100), b"ABSTRACT DGRAM")
