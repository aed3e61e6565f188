"""Datagram services: UDP and unixgram echo/upper (each datagram back to its
sender, up to 65,507 bytes; no truncated or amplified replies), and the
reply guard: never an answer to the endpoint itself or to a source port
below 1024, at most --udp-rate answers a second to one source."""

import os
import random
import re
import signal
import socket
import struct
import time

from helpers import SockitTestCase, parse_addr, port_of, wait_until

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


def _checksum(b):
    b += b"\0" * (len(b) % 2)
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff


def spoof_udp(src, dst, payload):
    """Sends one UDP datagram with a forged source (src, dst: (ip, port)) over
    a raw socket (root only; loopback addresses only here)."""
    sa, da = socket.inet_aton(src[0]), socket.inet_aton(dst[0])
    u = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    u = u[:6] + struct.pack("!H", _checksum(sa + da + struct.pack("!BBH", 0, 17, len(u)) + u)) + u[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(u), 1, 0, 64, 17, 0, sa, da)
    ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW) as r:
        r.sendto(ip + u, (dst[0], dst[1]))


def raw_sockets_usable():
    """None if this process may send raw IP packets, else why not."""
    if os.geteuid() != 0:
        return "needs root (a raw socket forges the source address)"
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
    except OSError as e:
        return "raw sockets unavailable: %s" % e
    return None


def own_non_loopback_ipv4():
    """An IPv4 address of this host outside 127/8, or None. Connecting a UDP
    socket only picks a route; nothing is sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if addr.startswith("127.") or addr == "0.0.0.0" else addr


STATS_RE = re.compile(r"^sockit: stats (.*)$")


def dgram_dropped(srv, timeout=5.0):
    """Asks for the counters (SIGUSR1) and returns dgram_dropped."""
    before = len(srv.find(STATS_RE.pattern))
    srv.send_signal(signal.SIGUSR1)
    line = srv.wait_line(STATS_RE.pattern, count=before + 1, timeout=timeout)[before].group(1)
    return int(dict(kv.split("=", 1) for kv in line.split())["dgram_dropped"])


class Guard(SockitTestCase):

    def udp_client(self, host="127.0.0.1", port=0):
        s = self.track(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        s.settimeout(5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((host, port))
        return s

    def assertAnswered(self, srv):
        c = self.udp_client()
        c.sendto(b"still there?", ("127.0.0.1", port_of(srv.addr)))
        self.assertEqual(c.recv(100), b"still there?")

    def self_addressed_costs_one_drop(self, bind, victim):
        why = raw_sockets_usable()
        if why:
            self.skipTest(why)
        srv = self.serve("echo", "udp://%s:0" % bind)
        port = port_of(srv.addr)
        self.assertEqual(dgram_dropped(srv), 0)
        cpu0 = srv.cpu_seconds()
        spoof_udp((victim, port), (victim, port), b"loop")
        # Before the guard the datagram bounced between the server and
        # itself for ever, a whole core busy; now it is dropped once.
        wait_until(lambda: dgram_dropped(srv) >= 1, 5)
        time.sleep(2.0)                          # the loop would burn CPU now
        used = srv.cpu_seconds() - cpu0
        self.assertLess(used, 0.3, "server used %.2f s of CPU in 2 s after one "
                        "self-addressed datagram: a reply loop" % used)
        self.assertEqual(dgram_dropped(srv), 1)
        self.assertTrue(srv.find(r"dropped a datagram from .*its source is this endpoint"))
        self.assertAnswered(srv)

    def test_spoofed_self_addressed_datagram_costs_one_drop(self):
        self.self_addressed_costs_one_drop("127.0.0.1", "127.0.0.1")

    def test_spoofed_self_addressed_datagram_on_wildcard_bind(self):
        # A wildcard bind has many own addresses: the guard compares the
        # source with the address the datagram was sent to (IP_PKTINFO).
        addr = own_non_loopback_ipv4()
        if addr is None:
            self.skipTest("no IPv4 address outside 127/8 on this host")
        self.self_addressed_costs_one_drop("0.0.0.0", addr)

    def test_source_port_below_1024_gets_no_reply(self):
        # Echo (7), DNS (53), NTP (123) ... answer whatever they get: a
        # spoofed request "from" one of them would start an endless
        # exchange. Root can bind such a port for real.
        if os.geteuid() != 0:
            self.skipTest("needs root to bind a UDP port below 1024")
        srv = self.serve("echo", "udp://127.0.0.1:0")
        dest = ("127.0.0.1", port_of(srv.addr))
        low = None
        for port in (7, 53, 123, 1023, 1000, 999, 700):
            try:
                low = self.udp_client("127.0.0.2", port)
                break
            except OSError:
                continue
        if low is None:
            self.skipTest("no UDP port below 1024 free on 127.0.0.2")
        low.settimeout(1.0)
        low.sendto(b"are you there?", dest)
        with self.assertRaises(socket.timeout, msg="answered a source port below 1024"):
            low.recv(100)
        self.assertEqual(dgram_dropped(srv), 1)
        self.assertAnswered(srv)

    def test_flood_from_one_source_is_rate_limited(self):
        srv = self.serve("echo", "udp://127.0.0.1:0", "--udp-rate", "50")
        dest = ("127.0.0.1", port_of(srv.addr))
        a = self.udp_client()
        t0 = time.monotonic()
        for i in range(500):
            a.sendto(b"%d" % i, dest)
        sent_in = time.monotonic() - t0
        a.settimeout(0.5)
        got = 0
        try:
            while got < 1000:
                a.recv(100)
                got += 1
        except socket.timeout:
            pass
        # A sliding second: at most 50 answers within the first second
        # (plus what the window let through if sending took longer).
        limit = 50 + int(50 * max(0.0, sent_in + 0.5 - 1.0)) + 1
        self.assertGreater(got, 0)
        self.assertLessEqual(got, limit, "%d replies to one source at --udp-rate 50" % got)
        self.assertAnswered(srv)                 # another source still is
        self.assertGreaterEqual(dgram_dropped(srv), 1)

    def test_default_rate_keeps_bursts_whole(self):
        # The default (1000 a second) must not touch a client's ordinary
        # bursts: 200 at once, all answered.
        srv = self.serve("echo", "udp://127.0.0.1:0")
        dest = ("127.0.0.1", port_of(srv.addr))
        a = self.udp_client()
        for i in range(200):
            a.sendto(b"%d" % i, dest)
            if i % 50 == 49:
                self.assertEqual(a.recv(100), b"%d" % (i - 49))
                for j in range(i - 48, i + 1):
                    self.assertEqual(a.recv(100), b"%d" % j)
        self.assertEqual(dgram_dropped(srv), 0)

    def test_upper_is_guarded_too(self):
        srv = self.serve("upper", "udp://127.0.0.1:0", "--udp-rate", "3")
        dest = ("127.0.0.1", port_of(srv.addr))
        a = self.udp_client()
        for _ in range(10):
            a.sendto(b"x", dest)
        a.settimeout(0.5)
        got = []
        try:
            while len(got) < 20:
                got.append(a.recv(100))
        except socket.timeout:
            pass
        self.assertEqual(got, [b"X"] * 3)

    def test_unixgram_sources_are_rate_limited_by_path(self):
        spath = self.path("guard.sock")
        self.serve("upper", "unixgram:" + spath, "--udp-rate", "3")
        clients = []
        for name in ("ga.sock", "gb.sock"):
            c = self.track(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
            c.bind(self.path(name))
            c.settimeout(0.5)
            clients.append(c)
        a, b = clients
        for _ in range(10):
            a.sendto(b"x", spath)
        got = []
        try:
            while len(got) < 20:
                got.append(a.recv(100))
        except socket.timeout:
            pass
        self.assertEqual(got, [b"X"] * 3)
        b.sendto(b"b", spath)
        self.assertEqual(b.recv(100), b"B")
