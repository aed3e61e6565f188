"""Fault tests: resets, oversize frames, slow readers, timeouts,
--max-conns, descriptor exhaustion, signals, descriptor counts after
thousands of connections, bounded memory."""

import hashlib
import os
import re
import select
import signal
import socket
import struct
import time

from helpers import (SockitTestCase, closed_by_peer, connect, echo_roundtrip, local_port,
                     read_frame, recv_exact, wait_until)

MiB = 1 << 20


def reset_close(sock):
    """Closes with SO_LINGER 0: the peer sees a TCP RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def warm_up(test, srv, framing="raw"):
    """One full exchange so lazily made descriptors/buffers exist before a baseline."""
    s = connect(srv.addr)
    port = local_port(s)
    try:
        test.assertEqual(echo_roundtrip(s, b"warm", framing), b"warm" + (b"\n" if framing == "line" else b""))
    finally:
        s.close()
    srv.wait_line(r" close \S*:%d " % port)


class Resets(SockitTestCase):

    def test_resets_mid_frame(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame")
        warm_up(self, srv, "frame")
        base = srv.stable_fd_count()
        n = 200
        for i in range(n):
            s = connect(srv.addr)
            try:
                s.sendall(struct.pack("!I", 1000) + b"p" * (i % 999 + 1))   # a frame cut short
            finally:
                reset_close(s)
        closes = srv.wait_line(r" close .* reason=(.*)$", count=n + 1, timeout=20)
        reasons = sorted(set(m.group(1) for m in closes[1:]))
        self.assertEqual(reasons, ["connection reset"])
        left = srv.wait_fds_at_most(base)
        self.assertLessEqual(left, base, "descriptors not back to baseline after %d resets" % n)
        self.assertServes(srv.addr, "frame")

    def test_reset_peer_is_named_in_log(self):
        # A peer that resets at once is still logged by its address (the
        # server learns it from accept(), before any reset can hide it).
        srv = self.serve("echo", "127.0.0.1:0")
        ports = set()
        for _ in range(50):
            s = connect(srv.addr)
            ports.add(local_port(s))
            reset_close(s)
        closes = srv.wait_line(r"^sockit: echo close (.*) in=\d+ out=\d+ reason=", count=50, timeout=20)
        peers = [m.group(1) for m in closes]
        bad = [p for p in peers if not re.match(r"^127\.0\.0\.1:\d+$", p) or int(p.split(":")[1]) not in ports]
        self.assertFalse(bad, "%d of 50 close lines do not name the peer (e.g. %r)"
                         % (len(bad), bad[:1]))

    def test_reset_while_server_writes(self):
        # The server is writing replies when the peer resets: EPIPE/ECONNRESET,
        # never SIGPIPE (the process must survive and keep serving).
        srv = self.serve("echo", "127.0.0.1:0")
        for _ in range(20):
            s = connect(srv.addr)
            s.setblocking(False)
            sent = 0
            chunk = b"r" * 65536
            for _ in range(64):                  # up to 4 MiB, never reading
                try:
                    sent += s.send(chunk)
                except BlockingIOError:
                    break
            reset_close(s)
        srv.wait_line(r" close ", count=20, timeout=20)
        self.assertTrue(srv.running())
        self.assertServes(srv.addr)

    def test_resets_mid_line(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "line")
        warm_up(self, srv, "line")
        base = srv.stable_fd_count()
        for i in range(100):
            s = connect(srv.addr)
            s.sendall(b"partial line without end " * (i + 1))
            reset_close(s)
        srv.wait_line(r" close ", count=101, timeout=20)
        self.assertLessEqual(srv.wait_fds_at_most(base), base)
        self.assertServes(srv.addr, "line")


class Oversize(SockitTestCase):

    def test_oversize_frame_closes_only_that_connection(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--max-frame", "1K")
        good = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(good, b"before", "frame"), b"before")
        bad = self.connect(srv.addr)
        bad.sendall(struct.pack("!I", 2000) + b"x" * 100)
        self.assertTrue(closed_by_peer(bad), "oversize frame did not close the connection")
        port = local_port(bad)
        bad.close()     # ends the server's lingering close at once
        _, n_out, reason = srv.close_line(port)
        self.assertEqual(reason, "frame too large (2000 > max 1024)")
        self.assertEqual(n_out, 0)
        # A good connection, open all along, is unaffected.
        self.assertEqual(echo_roundtrip(good, b"after", "frame"), b"after")
        data = os.urandom(1024)
        self.assertEqual(echo_roundtrip(good, data, "frame"), data)

    def test_huge_declared_length(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame")
        bad = self.connect(srv.addr)
        bad.sendall(b"\xff\xff\xff\xff")
        self.assertTrue(closed_by_peer(bad))
        port = local_port(bad)
        bad.close()
        self.assertEqual(srv.close_line(port)[2],
                         "frame too large (4294967295 > max 16777216)")
        self.assertServes(srv.addr, "frame")

    def test_declared_lengths_do_not_reserve_memory(self):
        # 40 peers each declare a 16 MiB frame and send 64 KiB of it. Memory is
        # never allocated from a declared length before the bytes arrive, so
        # the server's address space must not grow by anything like 40 x 16 MiB.
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame")
        warm_up(self, srv, "frame")
        vm0, rss0 = srv.vmsize_kib(), srv.rss_kib()
        peers = []
        for _ in range(40):
            s = self.connect(srv.addr)
            s.sendall(struct.pack("!I", 16 * MiB) + b"m" * 65536)
            peers.append(s)
        self.assertServes(srv.addr, "frame")
        # Sample for half a second while the server reads what we sent; keep the peak.
        vm1, rss1 = vm0, rss0
        t_end = time.monotonic() + 0.5
        while time.monotonic() < t_end:
            vm1, rss1 = max(vm1, srv.vmsize_kib()), max(rss1, srv.rss_kib())
            time.sleep(0.02)
        self.assertLess((vm1 - vm0) // 1024, 128,
                        "address space grew %d MiB for 40 partial 16 MiB frames" % ((vm1 - vm0) // 1024))
        self.assertLess((rss1 - rss0) // 1024, 64)
        for s in peers:
            reset_close(s)
        srv.wait_line(r" close ", count=41, timeout=20)
        self.assertServes(srv.addr, "frame")


class SlowReader(SockitTestCase):

    def test_reader_that_never_reads(self):
        srv = self.serve("echo", "127.0.0.1:0")
        warm_up(self, srv)
        rss0 = srv.rss_kib()
        s = self.connect(srv.addr)
        s.setblocking(False)
        chunk = os.urandom(256 * 1024)
        sent, limit = 0, 64 * MiB
        digest = hashlib.sha256()
        stalled = False
        while sent < limit:
            try:
                n = s.send(chunk)
                digest.update(chunk[:n])
                sent += n
                continue
            except BlockingIOError:
                pass
            # EAGAIN: still not writable a second later means the server
            # stopped reading us (it would drain us in microseconds otherwise).
            _, w, _ = select.select([], [s], [], 1.0)
            if not w:
                stalled = True
                break
        self.assertTrue(stalled, "client sent all %d MiB: the server never stopped reading" % (limit // MiB))
        self.assertLess(sent, limit)
        # Still stalled a moment later, and the server's memory stays flat.
        _, w, _ = select.select([], [s], [], 0.5)
        self.assertFalse(w, "server resumed reading although nothing was read")
        growth = (srv.rss_kib() - rss0) // 1024
        self.assertLess(growth, 64, "server RSS grew %d MiB for one stuck reader (sent %d MiB)"
                        % (growth, sent // MiB))
        # Never blocks on one client: others are served meanwhile.
        self.assertServes(srv.addr)
        # Reading resumes the flow: everything sent comes back intact.
        s.setblocking(True)
        s.settimeout(10)
        got, back = 0, hashlib.sha256()
        while got < sent:
            part = s.recv(1 << 20)
            self.assertTrue(part, "EOF after %d of %d bytes" % (got, sent))
            back.update(part)
            got += len(part)
        self.assertEqual(got, sent)
        self.assertEqual(back.hexdigest(), digest.hexdigest(), "echoed stream differs")


class Timeouts(SockitTestCase):

    def test_idle_timeout_closes_idle_keeps_active(self):
        srv = self.serve("echo", "127.0.0.1:0", "--idle-timeout", "0.5")
        idle = self.connect(srv.addr)
        active = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(idle, b"once"), b"once")
        t_last = time.monotonic()
        closed_after = None
        for i in range(400):                      # bounded: 400 x ~25 ms = ~10 s
            self.assertEqual(echo_roundtrip(active, b"a%d" % i), b"a%d" % i)
            r, _, _ = select.select([idle], [], [], 0.025)
            if r:
                try:
                    data = idle.recv(10)
                except ConnectionResetError:
                    data = b""
                self.assertEqual(data, b"", "unexpected bytes on the idle connection")
                closed_after = time.monotonic() - t_last
                break
        self.assertIsNotNone(closed_after, "idle connection never closed")
        self.assertGreaterEqual(closed_after, 0.4, "closed before the idle timeout")
        self.assertEqual(srv.close_line(local_port(idle))[2], "idle timeout")
        # The active one survived the whole time and still works.
        self.assertEqual(echo_roundtrip(active, b"alive"), b"alive")
        self.assertFalse(srv.find(r" close \S*:%d " % local_port(active)))

    def test_frame_timeout_on_trickling_sender(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--frame-timeout", "0.5")
        waiting = self.connect(srv.addr)          # connected, no frame started
        t = self.connect(srv.addr)
        t0 = time.monotonic()
        t.sendall(struct.pack("!I", 100) + b"x")
        closed = False
        for _ in range(50):                       # 50 x 0.2 s = 10 s bound
            r, _, _ = select.select([t], [], [], 0.2)
            if r:
                closed = closed_by_peer(t, 1)
                break
            try:
                t.send(b"y")                     # one byte every 0.2 s
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        elapsed = time.monotonic() - t0
        self.assertTrue(closed, "a frame trickled in 1 byte / 0.2 s was never timed out")
        self.assertGreaterEqual(elapsed, 0.4)
        self.assertEqual(srv.close_line(local_port(t))[2], "frame timeout")
        # A connection that has not started a frame is not subject to it.
        self.assertEqual(echo_roundtrip(waiting, b"late but whole", "frame"), b"late but whole")

    def test_frame_timeout_on_partial_line(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "line", "--frame-timeout", "0.5")
        t = self.connect(srv.addr)
        t.sendall(b"start of a line")
        closed = False
        for _ in range(50):
            r, _, _ = select.select([t], [], [], 0.2)
            if r:
                closed = closed_by_peer(t, 1)
                break
            try:
                t.send(b".")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        self.assertTrue(closed)
        self.assertEqual(srv.close_line(local_port(t))[2], "frame timeout")


class MaxConns(SockitTestCase):

    def test_third_peer_refused(self):
        srv = self.serve("echo", "127.0.0.1:0", "--max-conns", "2")
        a = self.connect(srv.addr)
        b = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(a, b"a"), b"a")
        self.assertEqual(echo_roundtrip(b, b"b"), b"b")
        c = self.connect(srv.addr)
        self.assertTrue(closed_by_peer(c), "third peer was not closed")
        port_c = local_port(c)
        c.close()
        self.assertEqual(srv.close_line(port_c)[2], "max-conns reached")
        self.assertEqual(echo_roundtrip(a, b"a2"), b"a2")
        self.assertEqual(echo_roundtrip(b, b"b2"), b"b2")
        # A freed slot is usable again.
        port_a = local_port(a)
        a.close()
        srv.close_line(port_a)
        d = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(d, b"d"), b"d")


class Descriptors(SockitTestCase):

    def test_back_to_baseline_after_2000_connections(self):
        srv = self.serve("echo", "127.0.0.1:0")
        warm_up(self, srv)
        base = srv.stable_fd_count()
        n = 2000
        for i in range(n):
            s = connect(srv.addr)
            try:
                s.sendall(b"%d" % i)
                self.assertEqual(recv_exact(s, len(b"%d" % i)), b"%d" % i)
            finally:
                s.close()
        srv.wait_line(r" close .* reason=peer closed", count=n + 1, timeout=30)
        left = srv.wait_fds_at_most(base, timeout=15)
        self.assertLessEqual(left, base, "descriptors leaked: %d -> %d after %d connections"
                             % (base, left, n))
        self.assertServes(srv.addr)

    def test_emfile_no_spin_and_recovery(self):
        srv = self.serve("echo", "127.0.0.1:0", "--backlog", "64",
                         prefix=["prlimit", "--nofile=40:40"])
        base = srv.fd_count()
        clients = []
        try:
            refused = shed = False
            for i in range(100):
                s = connect(srv.addr)
                clients.append(s)
                s.sendall(b"x")
                s.settimeout(3)
                try:
                    got = s.recv(1)
                except ConnectionResetError:
                    got = b""
                except socket.timeout:
                    got = None          # neither served nor shed: left in the backlog
                if got != b"x":
                    refused, shed = True, got == b""
                    break
            self.assertTrue(refused, "100 connections served under a 40-descriptor limit?")
            self.assertGreater(len(clients), 5)
            # Saturation: keep peers arriving for 2 s; the server must not spin.
            logs0 = len(srv.find(r"out of descriptors"))
            cpu0, t0 = srv.cpu_seconds(), time.monotonic()
            for i in range(8):
                wait_until(lambda: False, 0.25)
                try:
                    clients.append(connect(srv.addr, timeout=2))
                except OSError:
                    pass
            cpu = srv.cpu_seconds() - cpu0
            span = time.monotonic() - t0
            logs = len(srv.find(r"out of descriptors")) - logs0
            self.assertLess(cpu, 0.5, "server used %.2f s CPU in %.1f s at EMFILE: busy loop" % (cpu, span))
            srv.wait_line(r"out of descriptors", timeout=2)
            # Logged at most once a second.
            self.assertLessEqual(logs, int(span) + 2, "%d 'out of descriptors' lines in %.1f s" % (logs, span))
            # The pending peer is shed (closed at once), not left hanging.
            self.assertTrue(shed, "the connection beyond the limit was left in the backlog, not shed")
        finally:
            for s in clients:
                s.close()
        # Descriptors free up: the server serves again.
        srv.wait_fds_at_most(base + 1, timeout=10)
        served = False
        for _ in range(5):
            s = self.connect(srv.addr)
            s.sendall(b"back")
            try:
                if recv_exact(s, 4) == b"back":
                    served = True
                    break
            except (EOFError, ConnectionResetError, socket.timeout):
                pass
            s.close()
        self.assertTrue(served, "server did not serve again after descriptors were freed")


class Signals(SockitTestCase):

    def test_sigterm_with_idle_client_exits_within_drain(self):
        srv = self.serve("echo", "127.0.0.1:0", "--drain-timeout", "1")
        idle = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(idle, b"hi"), b"hi")
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        rc = srv.wait_exit(1 + 5)
        self.assertIsNotNone(rc, "server still running 6 s after SIGTERM with --drain-timeout 1")
        self.assertEqual(rc, 0)
        self.assertTrue(closed_by_peer(idle, 1))
        srv.stop_checked(self)                   # sanitizer report check
        self.assertLess(time.monotonic() - t0, 6)

    def _mid_exchange(self, sig):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--drain-timeout", "5")
        c = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(c, b"first", "frame"), b"first")
        body = os.urandom(1000)
        c.sendall(struct.pack("!I", len(body)) + body[:500])     # half a frame in flight
        srv.send_signal(sig)
        # Wait (bounded) until the server stopped accepting: new connects refused.
        def refused():
            try:
                p = connect(srv.addr, timeout=1)
            except ConnectionRefusedError:
                return True
            except OSError:
                return False
            p.close()
            return False
        wait_until(refused, 3, interval=0.05)
        c.sendall(body[500:])
        self.assertEqual(read_frame(c), body, "reply owed at %s was not delivered" % sig.name)
        c.close()
        rc = srv.wait_exit(5 + 5)
        self.assertEqual(rc, 0)
        srv.stop_checked(self)

    def test_sigterm_mid_exchange_gets_reply(self):
        self._mid_exchange(signal.SIGTERM)

    def test_sigint_mid_exchange_gets_reply(self):
        self._mid_exchange(signal.SIGINT)

    def test_sigpipe_not_fatal_and_sigint_clean(self):
        # Peer goes away while the server writes; then SIGINT: exit 0.
        srv = self.serve("echo", "127.0.0.1:0")
        s = connect(srv.addr)
        s.sendall(b"z" * 200000)
        s.close()
        srv.wait_line(r" close ", timeout=10)
        srv.stop_checked(self, sig=signal.SIGINT)
