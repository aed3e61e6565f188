"""Framing: 4-byte big-endian frames and "\\n" lines, however the
bytes are cut into segments, and the limits that bound them."""

import os
import struct

from helpers import (SockitTestCase, closed_by_peer, echo_roundtrip, frame, local_port,
                     read_frame, recv_exact, recv_line)


def dribble(sock, data):
    """Sends data one byte per send() (TCP_NODELAY is set by connect())."""
    for i in range(len(data)):
        sock.sendall(data[i:i + 1])


class FrameFraming(SockitTestCase):

    def setUp(self):
        super().setUp()
        self.srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame")

    def test_frames_stuck_together_in_one_send(self):
        s = self.connect(self.srv.addr)
        msgs = [b"first", b"", b"third frame", os.urandom(70000), b"\x00\x00\x00\x05"]
        s.sendall(b"".join(frame(m) for m in msgs))
        for m in msgs:
            self.assertEqual(read_frame(s), m)

    def test_frames_dribbled_one_byte_at_a_time(self):
        s = self.connect(self.srv.addr)
        msgs = [b"abc", b"", b"a frame sent one byte per segment"]
        dribble(s, b"".join(frame(m) for m in msgs))
        for m in msgs:
            self.assertEqual(read_frame(s), m)

    def test_big_endian_length(self):
        # 256 bytes: 00 00 01 00 on the wire. A little-endian reader would wait
        # for 65536 bytes and never answer.
        s = self.connect(self.srv.addr)
        body = bytes(range(256))
        s.sendall(b"\x00\x00\x01\x00" + body)
        self.assertEqual(recv_exact(s, 4), b"\x00\x00\x01\x00")
        self.assertEqual(recv_exact(s, 256), body)

    def test_each_frame_comes_back_as_one_frame(self):
        # Interleave: frame i is answered before frame i+1 is sent.
        s = self.connect(self.srv.addr)
        for size in (0, 1, 3, 4, 5, 1000, 65536, 4 << 20):
            data = os.urandom(size)
            self.assertEqual(echo_roundtrip(s, data, "frame"), data, "size %d" % size)

    def test_header_split_across_sends(self):
        s = self.connect(self.srv.addr)
        data = b"split header"
        wire = frame(data)
        s.sendall(wire[:1])
        s.sendall(wire[1:3])
        s.sendall(wire[3:6])
        s.sendall(wire[6:])
        self.assertEqual(read_frame(s), data)


class LineFraming(SockitTestCase):

    def setUp(self):
        super().setUp()
        self.srv = self.serve("echo", "127.0.0.1:0", "--framing", "line")

    def test_lines_and_crlf(self):
        s = self.connect(self.srv.addr)
        s.sendall(b"hello\nworld\r\n\nlast one\r\n")
        self.assertEqual(recv_line(s), b"hello\n")
        self.assertEqual(recv_line(s), b"world\n")      # "\r" before "\n" dropped
        self.assertEqual(recv_line(s), b"\n")           # empty line is a line
        self.assertEqual(recv_line(s), b"last one\n")

    def test_lone_cr_inside_line_kept(self):
        s = self.connect(self.srv.addr)
        s.sendall(b"a\rb\n")
        self.assertEqual(recv_line(s), b"a\rb\n")

    def test_lines_dribbled(self):
        s = self.connect(self.srv.addr)
        dribble(s, b"one\r\ntwo\n")
        self.assertEqual(recv_line(s), b"one\n")
        self.assertEqual(recv_line(s), b"two\n")

    def test_binary_bytes_in_lines(self):
        s = self.connect(self.srv.addr)
        body = bytes(b for b in range(256) if b not in (10, 13))
        s.sendall(body + b"\n")
        self.assertEqual(recv_line(s, limit=1000), body + b"\n")


class Limits(SockitTestCase):

    def test_max_frame_boundary(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--max-frame", "1K")
        ok = self.connect(srv.addr)
        exact = os.urandom(1024)
        self.assertEqual(echo_roundtrip(ok, exact, "frame"), exact)   # N == max is allowed
        bad = self.connect(srv.addr)
        bad.sendall(struct.pack("!I", 1025) + b"x" * 1025)
        self.assertTrue(closed_by_peer(bad), "frame of max+1 bytes did not close the connection")
        port = local_port(bad)
        bad.close()     # ends the server's lingering close at once
        n_in, n_out, reason = srv.close_line(port)
        self.assertEqual(reason, "frame too large (1025 > max 1024)")
        self.assertEqual(n_out, 0, "part of an oversize frame was echoed")
        # The other connection is untouched.
        self.assertEqual(echo_roundtrip(ok, b"still here", "frame"), b"still here")

    def test_line_too_long_gets_error_line(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "line", "--max-line", "1K")
        other = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(other, b"short", "line"), b"short\n")
        s = self.connect(srv.addr)
        s.sendall(b"fine line\n")
        self.assertEqual(recv_line(s), b"fine line\n")
        s.sendall(b"y" * 5000)              # no newline, 5x the limit
        self.assertEqual(recv_line(s, limit=4096), b"error: line too long (max 1024 bytes)\n")
        # then the connection closes (EOF, or a reset after the line at worst)
        self.assertTrue(closed_by_peer(s), "connection still open after the error line")
        port = local_port(s)
        s.close()
        n_in, n_out, reason = srv.close_line(port)
        self.assertEqual(reason, "line too long (max 1024 bytes)")   # the same text the peer is sent
        self.assertEqual(echo_roundtrip(other, b"unaffected", "line"), b"unaffected\n")

    def test_line_error_seen_by_peer_that_keeps_sending(self):
        # The reason is delivered before a lingering close, not lost in a reset
        # even though the peer sent more than the server read.
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "line", "--max-line", "100")
        s = self.connect(srv.addr)
        s.sendall(b"z" * 20000)
        got = b""
        try:
            while b"\n" not in got:
                c = s.recv(4096)
                if not c:
                    break
                got += c
        except ConnectionResetError:
            pass
        self.assertEqual(got.split(b"\n")[0] + b"\n", b"error: line too long (max 100 bytes)\n")

    def test_size_suffixes(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--max-frame", "2M")
        s = self.connect(srv.addr)
        data = os.urandom(2 * 1024 * 1024)
        self.assertEqual(echo_roundtrip(s, data, "frame"), data)
        bad = self.connect(srv.addr)
        bad.sendall(struct.pack("!I", 2 * 1024 * 1024 + 1))
        self.assertTrue(closed_by_peer(bad))
        port = local_port(bad)
        bad.close()
        self.assertEqual(srv.close_line(port)[2],
                         "frame too large (2097153 > max 2097152)")
