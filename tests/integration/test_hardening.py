"""Hardening tests: the counters of SIGUSR1
and --stats; many concurrent connections (RSS per idle connection printed);
a memory bomb of partial maximum-size frames under --max-memory; slowloris
senders cut at the frame deadline while others are served; garbage,
truncated and out-of-order input on every service and framing; the cap on
unauthenticated files connections.

SOCKIT_HARD_CONNS sets the connection count of the concurrency test
(default 10,000: about a second, even under the sanitizers)."""

import os
import random
import re
import resource
import selectors
import signal
import socket
import struct
import threading
import time

import helpers
from helpers import (SockitTestCase, closed_by_peer, connect, echo_roundtrip, frame, local_port,
                     read_frame, recv_exact, recv_line, wait_until)
from exec_client import ExecClient
from files_client import FilesClient

STATS_RE = re.compile(r"^sockit: stats (.*)$")
CONNS = int(os.environ.get("SOCKIT_HARD_CONNS", "10000"))


def stats(srv, timeout=5.0):
    """Sends SIGUSR1 and returns the counters of the line it prints, as a dict."""
    before = len(srv.find(STATS_RE.pattern))
    srv.send_signal(signal.SIGUSR1)
    m = srv.wait_line(STATS_RE.pattern, count=before + 1, timeout=timeout)[before]
    out = {}
    for pair in m.group(1).split():
        k, _, v = pair.partition("=")
        out[k] = int(v)
    return out


def wait_stats(test, srv, pred, timeout=10.0):
    """Polls the counters until pred(counters) holds; returns the last ones."""
    last = [None]

    def ok():
        last[0] = stats(srv)
        return pred(last[0])
    wait_until(ok, timeout, interval=0.1)
    return last[0]


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def reset_close(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def open_many(addr, n, first=b"", batch=500, timeout=30.0):
    """n connected non-blocking sockets, connected batch by batch (the listen
    backlog is 511); each sends `first` once connected."""
    fam = socket.AF_INET
    host, port = addr.rsplit(":", 1)
    socks = []
    deadline = time.monotonic() + timeout
    try:
        while len(socks) < n:
            sel = selectors.DefaultSelector()
            pending = 0
            for _ in range(min(batch, n - len(socks))):
                s = socket.socket(fam, socket.SOCK_STREAM)
                s.setblocking(False)
                socks.append(s)
                s.connect_ex((host, int(port)))
                sel.register(s, selectors.EVENT_WRITE)
                pending += 1
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("%d connections still connecting after %.0f s"
                                         % (pending, timeout))
                for key, _ in sel.select(min(left, 1.0)):
                    s = key.fileobj
                    err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise AssertionError("connect failed: %s" % os.strerror(err))
                    sel.unregister(s)
                    pending -= 1
                    if first:
                        s.send(first)
            sel.close()
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def collect(socks, want, timeout=30.0):
    """Reads from every socket until each has received `want` bytes; returns
    how many did."""
    sel = selectors.DefaultSelector()
    got = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
        got[s] = b""
    done = 0
    deadline = time.monotonic() + timeout
    while done < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            s = key.fileobj
            try:
                data = s.recv(len(want) - len(got[s]))
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            got[s] += data
            if not data or len(got[s]) == len(want):
                sel.unregister(s)
                if got[s] == want:
                    done += 1
    sel.close()
    return done


class Counters(SockitTestCase):

    def test_sigusr1_counts_what_the_test_did(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--max-frame", "1000")
        s0 = stats(srv)
        self.assertEqual({k: s0[k] for k in ("conns", "accepted", "bytes_in", "bytes_out", "queued",
                                             "mem")},
                         dict(conns=0, accepted=0, bytes_in=0, bytes_out=0, queued=0, mem=0))
        payload = b"p" * 100
        socks = [self.connect(srv.addr) for _ in range(3)]
        for s in socks:
            for _ in range(2):
                self.assertEqual(echo_roundtrip(s, payload, "frame"), payload)
        mid = wait_stats(self, srv, lambda c: c["accepted"] == 3)
        self.assertEqual(mid["conns"], 3)
        big = self.connect(srv.addr)
        port = local_port(big)
        big.sendall(struct.pack("!I", 5000))           # over --max-frame: a protocol error
        self.assertTrue(closed_by_peer(big))
        srv.close_line(port)
        r = self.connect(srv.addr)
        port_r = local_port(r)
        r.sendall(frame(b"abc")[:5])                   # then a reset in the middle of a frame
        reset_close(r)
        srv.close_line(port_r)
        for s in socks:
            s.close()
        srv.wait_line(r" close .*reason=peer closed", count=3)
        c = wait_stats(self, srv, lambda c: c["conns"] == 0)
        frame_bytes = 3 * 2 * (4 + len(payload))
        self.assertEqual(c["accepted"], 5, c)
        self.assertEqual(c["bytes_in"], frame_bytes + 4 + 5, c)
        self.assertEqual(c["bytes_out"], frame_bytes, c)
        self.assertEqual(c["msgs_in"], 6, c)
        self.assertEqual(c["msgs_out"], 6, c)
        self.assertEqual(c["err_protocol"], 1, c)
        self.assertEqual(c["err_reset"], 1, c)
        self.assertEqual((c["refused"], c["shed"], c["err_nobufs"], c["err_frame"]), (0, 0, 0, 0))
        self.assertEqual((c["queued"], c["mem"]), (0, 0), c)

    def test_periodic_stats_and_timeouts_refusals_counted(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "line", "--stats", "0.2",
                         "--idle-timeout", "0.5", "--frame-timeout", "0.3", "--max-conns", "2")
        srv.wait_line(STATS_RE.pattern, count=2, timeout=5)
        idle = self.connect(srv.addr)
        slow = self.connect(srv.addr)
        slow.sendall(b"no end")
        self.assertTrue(closed_by_peer(self.connect(srv.addr)), "third peer not refused")
        self.assertTrue(closed_by_peer(slow))
        self.assertTrue(closed_by_peer(idle))
        c = wait_stats(self, srv, lambda c: c["conns"] == 0 and c["err_idle"] == 1)
        self.assertEqual((c["refused"], c["err_frame"], c["err_idle"]), (1, 1, 1), c)
        n0 = len(srv.find(STATS_RE.pattern))
        srv.wait_line(STATS_RE.pattern, count=n0 + 2, timeout=5)   # still every 0.2 s
        srv.stop_checked(self, timeout=5)


class ManyConnections(SockitTestCase):

    def test_concurrent_connections_served_rss_and_fds_back(self):
        n = CONNS
        have = raise_nofile(n + 200)
        if have < n + 100:
            self.skipTest("RLIMIT_NOFILE hard limit %d is below %d" % (have, n + 100))
        srv = self.serve("echo", "127.0.0.1:0", "--quiet")
        s = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(s, b"warm"), b"warm")
        s.close()
        wait_stats(self, srv, lambda c: c["conns"] == 0)
        base_fds = srv.stable_fd_count()
        base_rss = srv.rss_kib()
        t0 = time.monotonic()
        socks = open_many(srv.addr, n, first=b"hello")
        try:
            served = collect(socks, b"hello")
            self.assertEqual(served, n, "%d of %d connections got their echo" % (served, n))
            c = wait_stats(self, srv, lambda c: c["conns"] == n)
            self.assertEqual(c["conns"], n)
            self.assertEqual(srv.fd_count(), base_fds + n)
            rss = srv.rss_kib()
            per = (rss - base_rss) * 1024.0 / n
            print("\n    %d concurrent connections in %.1f s; server RSS %d -> %d KiB: %.0f bytes "
                  "per idle connection (%s)" % (n, time.monotonic() - t0, base_rss, rss, per,
                                                helpers.BUILD), end=" ", flush=True)
            # An idle connection holds no buffer: a few KiB at most,
            # even with the sanitizers' redzones.
            self.assertLess(per, 16 * 1024, "%.0f bytes of RSS per idle connection" % per)
        finally:
            for s in socks:
                s.close()
        left = srv.wait_fds_at_most(base_fds, timeout=30)
        self.assertLessEqual(left, base_fds, "descriptors %d -> %d after %d connections closed"
                             % (base_fds, left, n))
        c = wait_stats(self, srv, lambda c: c["conns"] == 0)
        self.assertEqual((c["conns"], c["queued"], c["mem"]), (0, 0, 0), c)
        self.assertServes(srv.addr)

    def test_emfile_at_64_descriptors_sheds_without_spinning(self):
        # test_faults covers the log and recovery at 40; here the counters
        # and a longer saturation at the limit the issue names.
        srv = self.serve("echo", "127.0.0.1:0", prefix=["prlimit", "--nofile=64:64"])
        held = []
        try:
            for _ in range(80):
                try:
                    held.append(connect(srv.addr, timeout=2))
                except OSError:
                    break
            c = wait_stats(self, srv, lambda c: c["shed"] > 0)
            self.assertGreater(c["shed"], 0, c)
            cpu0, t0 = srv.cpu_seconds(), time.monotonic()
            end = t0 + 2.0
            while time.monotonic() < end:   # keep peers knocking for 2 s
                try:
                    held.append(connect(srv.addr, timeout=0.5))
                except OSError:
                    pass
                time.sleep(0.05)
            cpu = srv.cpu_seconds() - cpu0
            self.assertLess(cpu, 0.5, "%.2f s of CPU in %.1f s at EMFILE" % (cpu, time.monotonic() - t0))
            self.assertTrue(srv.running())
        finally:
            for s in held:
                s.close()
        wait_stats(self, srv, lambda c: c["conns"] == 0)
        self.assertServes(srv.addr)


class MemoryBomb(SockitTestCase):

    def test_partial_max_frames_stay_under_budget_and_time_out(self):
        n = 2000
        raise_nofile(n + 200)
        budget_mib = 32
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--quiet",
                         "--max-frame", "16M", "--max-memory", "%dM" % budget_mib,
                         "--frame-timeout", "3")
        s = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(s, b"warm", "frame"), b"warm")
        s.close()
        base_fds = srv.stable_fd_count()
        base_rss = srv.rss_kib()
        header = struct.pack("!I", 16 << 20)
        t0 = time.monotonic()
        socks = open_many(srv.addr, n, first=header)
        try:
            peak = base_rss
            # A normal client during the bomb is served: a partial frame
            # holds a small buffer (8 KiB for a 4-byte header), so 2,000 of
            # them take 16 MiB of the 32 MiB budget, not all of it.
            ok = self.connect(srv.addr)
            try:
                during = echo_roundtrip(ok, b"x" * 1000, "frame") == b"x" * 1000
            except (EOFError, ConnectionResetError):
                during = False
            ok.close()
            while time.monotonic() - t0 < 2.0:
                peak = max(peak, srv.rss_kib())
                time.sleep(0.05)
            c = stats(srv)
            self.assertLessEqual(c["mem"], budget_mib << 20, c)
            grown = (peak - base_rss) / 1024.0
            print("\n    memory bomb: %d partial 16 MiB frames, budget %d MiB: RSS +%.1f MiB, "
                  "%d refused by the budget; a normal client %s" % (n, budget_mib, grown, c["err_nobufs"],
                                                     "served" if during else "refused"),
                  end=" ", flush=True)
            self.assertTrue(during, "a normal client was refused during the bomb")
            self.assertEqual(c["err_nobufs"], 0, c)
            # The budget, plus what 2,000 connections cost without buffers.
            self.assertLess(grown, budget_mib + 40, "RSS grew %.1f MiB" % grown)
            # Every bomb connection is gone by the frame deadline (+ slack).
            c = wait_stats(self, srv, lambda c: c["conns"] == 0, timeout=15)
            self.assertEqual(c["conns"], 0, c)
            took = time.monotonic() - t0
            self.assertLess(took, 3 + 8, "bomb connections lasted %.1f s" % took)
            self.assertEqual(c["err_frame"] + c["err_nobufs"], n + (0 if during else 1), c)
            self.assertGreater(c["err_frame"], 0, c)
        finally:
            for s in socks:
                s.close()
        self.assertLessEqual(srv.wait_fds_at_most(base_fds, timeout=15), base_fds)
        self.assertEqual(stats(srv)["mem"], 0)
        self.assertServes(srv.addr, "frame")


class Slowloris(SockitTestCase):

    def test_one_byte_a_second_dropped_at_deadline_others_served(self):
        n = 200
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--quiet",
                         "--frame-timeout", "2.5")
        socks = open_many(srv.addr, n)
        msg = frame(b"s" * 50)
        stop = threading.Event()
        sent = [0]

        def trickle():
            i = 0
            while not stop.is_set() and i < len(msg):
                for s in socks:
                    try:
                        s.send(msg[i:i + 1])
                    except OSError:
                        pass
                sent[0] = i = i + 1
                stop.wait(1.0)
        t = threading.Thread(target=trickle, daemon=True)
        t0 = time.monotonic()
        t.start()
        try:
            # Meanwhile a normal client: every round trip fast.
            c = self.connect(srv.addr)
            worst = 0.0
            while time.monotonic() - t0 < 2.0:
                a = time.monotonic()
                self.assertEqual(echo_roundtrip(c, b"n" * 200, "frame"), b"n" * 200)
                worst = max(worst, time.monotonic() - a)
                time.sleep(0.02)
            self.assertLess(worst, 0.5, "a normal client waited %.2f s during slowloris" % worst)
            st = wait_stats(self, srv, lambda c: c["err_frame"] >= n, timeout=10)
            took = time.monotonic() - t0
            self.assertEqual(st["err_frame"], n, st)
            self.assertLess(took, 2.5 + 3.0, "slow senders were dropped after %.1f s" % took)
            self.assertLess(sent[0], len(msg), "the slow frames were finished")
            self.assertEqual(echo_roundtrip(c, b"after", "frame"), b"after")
        finally:
            stop.set()
            t.join(5)
            for s in socks:
                s.close()


# ------------------------------------------------------------ garbage input

def chat_ok(test, addr):
    s = test.connect(addr)
    test.assertIn(b"welcome", recv_line(s))
    s.close()


class Garbage(SockitTestCase):
    """Random bytes, truncated messages and messages out of order on every
    service and framing: the connection ends with a logged reason, the
    server lives, serves, and its descriptors come back to the baseline."""

    def abuse(self, srv, addr, sends, served, wait=8.0):
        """Sends each input on its own connection and waits up to `wait` for
        the server to close it (raw echo never does: a short wait)."""
        served(addr)
        base = srv.stable_fd_count()
        rng = random.Random(8)
        closes0 = len(srv.find(r" close "))
        for i, data in enumerate(sends(rng)):
            s = connect(addr)
            try:
                s.sendall(data)
                if i % 2:
                    s.shutdown(socket.SHUT_WR)   # truncated: the peer's end comes mid-way
                closed_by_peer(s, timeout=wait)
            except OSError:
                pass
            finally:
                reset_close(s) if i % 3 == 0 else s.close()
        closes = srv.wait_line(r" close .* reason=(.+)$", count=closes0 + len(sends(rng)),
                               timeout=20)[closes0:]
        for m in closes:
            self.assertTrue(m.group(1).strip(), "a close without a reason")
        self.assertTrue(srv.running())
        served(addr)
        self.assertLessEqual(srv.wait_fds_at_most(base, timeout=10), base)
        return [m.group(1) for m in closes]

    def test_echo_upper_greet_every_framing(self):
        for svc in ("echo", "upper", "greet"):
            for framing in ("raw", "line", "frame"):
                with self.subTest(service=svc, framing=framing):
                    srv = self.serve(svc, "127.0.0.1:0", "--framing", framing, "--max-line", "64",
                                     "--max-frame", "64K", "--frame-timeout", "1")

                    def served(addr, svc=svc, framing=framing):
                        s = connect(addr)
                        try:
                            if svc == "greet":
                                got = (read_frame(s) if framing == "frame" else
                                       recv_line(s) if framing == "line" else recv_exact(s, 5))
                                self.assertTrue(got.startswith(b"Thank"), got)
                            else:
                                want = b"ok" if svc == "echo" else b"OK"
                                got = echo_roundtrip(s, b"ok", framing)
                                self.assertEqual(got.rstrip(b"\n"), want)
                        finally:
                            s.close()

                    def sends(rng):
                        return [bytes(rng.getrandbits(8) for _ in range(300)),
                                struct.pack("!I", 60000) + b"cut",          # truncated frame
                                b"a line that never ends " * 4,            # over max-line
                                b"\xff\xff\xff\xff" + b"x" * 10,           # huge length
                                frame(b"ok") + b"\x00\x00",                # a frame, then half a header
                                b"partial line"]
                    reasons = self.abuse(srv, srv.addr, sends, served,
                                         wait=0.3 if framing == "raw" else 8.0)
                    if framing != "raw" and svc != "greet":
                        self.assertTrue(any(re.search(r"too large|too long|mid-message|timeout|reset",
                                                      r) for r in reasons), reasons)
                    srv.stop_checked(self)

    def test_chat(self):
        srv = self.serve("chat", "127.0.0.1:0", "--max-line", "100", "--frame-timeout", "1")

        def sends(rng):
            return [bytes(rng.getrandbits(8) for _ in range(2000)),
                    b"/nick " + b"x" * 500 + b"\n/who\n",
                    b"/nick \xff\xfe\n/me\n/quit\n/quit\n",
                    b"no newline at all",
                    b"\n" * 1000 + b"/nick"]
        self.abuse(srv, srv.addr, sends, lambda a: chat_ok(self, a))
        srv.stop_checked(self)

    def test_exec_and_files_out_of_order(self):
        token = os.urandom(24).hex().encode()
        tf = self.path("token")
        with open(tf, "wb") as f:
            f.write(token + b"\n")
        os.chmod(tf, 0o600)
        root = self.path("root")
        os.mkdir(root)
        srv = self.serve("exec=127.0.0.1:0", "files=127.0.0.1:0", "--token-file", tf,
                         "--root", root, "--handshake-timeout", "1")

        def exec_ok(addr):
            host, port = addr.rsplit(":", 1)
            c = ExecClient.connect((host, int(port)), token)
            self.assertEqual(c.run([b"true"])[2], ("exit", 0))
            c.close()

        def files_ok(addr):
            host, port = addr.rsplit(":", 1)
            c = FilesClient.connect((host, int(port)), token)
            self.assertEqual(c.list(""), [])
            c.close()

        def sends_for(name):
            def sends(rng):
                hello = frame(b"\x01SKIT\x01" + bytes([len(name)]) + name)
                return [bytes(rng.getrandbits(8) for _ in range(500)),
                        frame(b"\x03" + b"\x00" * 64),                    # AUTH before HELLO
                        hello + frame(b"\x40"),                           # a request before AUTH
                        hello + frame(b"\x01SKIT\x01\x04exec"),           # HELLO twice
                        hello[:7],                                        # truncated hello
                        frame(b"\x42" + b"\x00" * 20),                    # PUT / request first
                        struct.pack("!I", 1 << 30)]                       # huge pre-auth frame
            return sends
        reasons = self.abuse(srv, srv.addr_of("exec"), sends_for(b"exec"), exec_ok)
        reasons += self.abuse(srv, srv.addr_of("files"), sends_for(b"files"), files_ok)
        self.assertTrue(any("handshake" in r or "hello" in r or "auth" in r for r in reasons), reasons)
        srv.stop_checked(self)


class Unauthenticated(SockitTestCase):

    def test_files_max_unauth(self):
        token = os.urandom(24).hex().encode()
        tf = self.path("token")
        with open(tf, "wb") as f:
            f.write(token + b"\n")
        os.chmod(tf, 0o600)
        root = self.path("root")
        os.mkdir(root)
        srv = self.serve("files", "127.0.0.1:0", "--token-file", tf, "--root", root,
                         "--max-unauth", "2", "--max-unauth-per-source", "2")
        idle = [self.connect(srv.addr) for _ in range(2)]
        for s in idle:
            s.sendall(frame(b"\x01SKIT\x01\x05files"))
            self.assertEqual(read_frame(s)[0], 0x02)
        s = self.connect(srv.addr)
        got = b""
        try:
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got += d
        except ConnectionResetError:
            pass
        self.assertEqual(got[4:6], b"\x7f\x04", got)       # ERROR busy
        for s in idle:
            s.close()
        srv.wait_line(r"files close .* reason=", count=3)
        host, port = srv.addr.rsplit(":", 1)
        cs = [FilesClient.connect((host, int(port)), token) for _ in range(3)]
        for c in cs:
            self.assertEqual(c.list(""), [])
            c.close()
        srv.stop_checked(self)
