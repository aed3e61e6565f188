"""Long and heavy streams: bounded input buffering, replies owed after a
half-close with a slow reader, the frame clock restarting per message."""

import socket
import struct
import threading
import time

from helpers import SockitTestCase, recv_line


def pump(sock, frame, seconds, stop_after=None):
    """Sends `frame` repeatedly for `seconds` while a thread reads the echo;
    returns (frames sent, bytes received before EOF)."""
    got = [0]

    def reader():
        while True:
            try:
                d = sock.recv(1 << 20)
            except OSError:
                return
            if not d:
                return
            got[0] += len(d)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    sent = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and (stop_after is None or sent < stop_after):
        sock.sendall(frame)
        sent += 1
    sock.shutdown(socket.SHUT_WR)
    t.join(30)
    return sent, got[0]


class Streams(SockitTestCase):

    def test_half_close_with_slow_reader_gets_every_reply(self):
        # Output passes the high-water mark, reading pauses with whole frames
        # still buffered; the peer's EOF must not make them look cut off.
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame")
        for _ in range(3):
            s = self.connect(srv.addr)
            s.settimeout(30)
            frame = struct.pack("!I", 100000) + b"x" * 100000
            got = [0]

            def late_reader():
                time.sleep(1.0)
                while True:
                    d = s.recv(1 << 20)
                    if not d:
                        return
                    got[0] += len(d)

            t = threading.Thread(target=late_reader, daemon=True)
            t.start()
            for _ in range(300):
                s.sendall(frame)
            s.shutdown(socket.SHUT_WR)
            t.join(30)
            self.assertEqual(got[0], 300 * len(frame))
            n_in, n_out, reason = srv.close_line(s.getsockname()[1])
            self.assertEqual((n_in, n_out, reason), (300 * len(frame), 300 * len(frame), "peer closed"))

    def test_steady_large_frames_use_bounded_memory(self):
        # 1 MB frames without pause for 2 s: the input buffer holds one
        # partial frame, not everything read ahead (the budget would trip).
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--max-memory", "8M")
        s = self.connect(srv.addr)
        s.settimeout(30)
        frame = struct.pack("!I", 1000000) + b"y" * 1000000
        sent, got = pump(s, frame, 3.0)
        self.assertGreater(sent, 10)
        self.assertEqual(got, sent * len(frame))
        self.assertEqual(srv.close_line(s.getsockname()[1])[2], "peer closed")

    def test_frame_clock_restarts_with_each_message(self):
        # Each 100 KB frame completes quickly; the stream as a whole lasts
        # longer than --frame-timeout and must not be cut.
        # (1 s per frame and a 3 s stream: a loaded machine may stall one
        # frame for a few hundred ms.)
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--frame-timeout", "1")
        s = self.connect(srv.addr)
        s.settimeout(30)
        frame = struct.pack("!I", 100000) + b"z" * 100000
        sent, got = pump(s, frame, 3.0)
        self.assertEqual(got, sent * len(frame))
        self.assertEqual(srv.close_line(s.getsockname()[1])[2], "peer closed")

    def test_frame_timeout_is_explained_in_line_framing(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "line", "--frame-timeout", "0.3")
        s = self.connect(srv.addr)
        s.sendall(b"never finished")
        self.assertEqual(recv_line(s), b"error: frame timeout\n")
        self.assertEqual(srv.close_line(s.getsockname()[1])[2], "frame timeout")

    def test_live_unixgram_socket_is_not_taken_over(self):
        path = self.path("live.dgram")
        self.serve("echo", "unixgram:" + path)
        cp = self.sockit("serve", "echo", "unixgram:" + path)
        self.assertEqual(cp.returncode, 1)
        self.assertIn("address already in use", cp.stderr.decode())
        # The first server still answers.
        c = self.track(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM))
        c.bind("\0sockit-test-%d" % id(self))
        c.settimeout(5)
        c.sendto(b"still mine", path)
        self.assertEqual(c.recv(100), b"still mine")

    def test_max_frame_zero_is_a_usage_error(self):
        cp = self.sockit("serve", "echo", "127.0.0.1:0", "--max-frame", "0")
        self.assertEqual(cp.returncode, 2)


class Workers(SockitTestCase):

    def test_max_conns_is_one_cap_for_all_workers(self):
        # SO_REUSEPORT spreads peers by hash: a per-worker share of the cap
        # would refuse early or admit too many. The cap is the process's.
        srv = self.serve("echo", "127.0.0.1:0", "--workers", "4", "--max-conns", "3")
        socks = [self.connect(srv.addr) for _ in range(7)]
        served = 0
        for s in socks:
            s.settimeout(2)
            try:
                s.sendall(b"x")
                served += s.recv(1) == b"x"
            except OSError:
                pass
        self.assertEqual(served, 3)
        # The refusal lines are logged as the peers are shed: wait for them.
        srv.wait_line(r"reason=max-conns reached", count=4)
        self.assertEqual(len(srv.find(r"reason=max-conns reached")), 4)
        for s in socks:
            s.close()
        # Slots come back when connections close.
        def fresh_served():
            s = self.connect(srv.addr)
            s.settimeout(2)
            try:
                s.sendall(b"y")
                return s.recv(1) == b"y"
            except OSError:
                return False
            finally:
                s.close()
        import time
        deadline = time.monotonic() + 5
        while not fresh_served():
            self.assertLess(time.monotonic(), deadline, "no slot freed after the peers closed")
            time.sleep(0.05)
