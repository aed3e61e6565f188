"""upper (ASCII letters only) and greet (message, then close)."""

import os
import socket

from helpers import (SockitTestCase, frame, local_port, port_of, read_frame, recv_exact,
                     recv_line, recv_until_eof)


def ascii_upper(data):
    return bytes(b - 32 if 0x61 <= b <= 0x7A else b for b in data)


class Upper(SockitTestCase):

    def test_raw_ascii_only(self):
        srv = self.serve("upper", "127.0.0.1:0")
        s = self.connect(srv.addr)
        text = "héllo 你好 world ÿ ß abc-XYZ_09\n".encode("utf-8")
        s.sendall(text)
        got = recv_exact(s, len(text))
        self.assertEqual(got, "HéLLO 你好 WORLD ÿ ß ABC-XYZ_09\n".encode("utf-8"))
        self.assertEqual(got.decode("utf-8"), "HéLLO 你好 WORLD ÿ ß ABC-XYZ_09\n")

    def test_every_byte_value(self):
        srv = self.serve("upper", "127.0.0.1:0")
        s = self.connect(srv.addr)
        data = bytes(range(256)) * 64
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(s), ascii_upper(data))

    def test_line_framing(self):
        srv = self.serve("upper", "127.0.0.1:0", "--framing", "line")
        s = self.connect(srv.addr)
        s.sendall("one\r\nTwo é\n".encode())
        self.assertEqual(recv_line(s), b"ONE\n")
        self.assertEqual(recv_line(s), "TWO é\n".encode())

    def test_frame_framing(self):
        srv = self.serve("upper", "127.0.0.1:0", "--framing", "frame")
        s = self.connect(srv.addr)
        msgs = [b"abc", b"", "ünïcode ok".encode(), os.urandom(5000)]
        s.sendall(b"".join(frame(m) for m in msgs))
        for m in msgs:
            self.assertEqual(read_frame(s), ascii_upper(m))

    def test_nc_line_upper(self):
        srv = self.serve("upper", "127.0.0.1:0", "--framing", "line")
        cp = self.run_cmd(["nc", "-N", "127.0.0.1", str(port_of(srv.addr))],
                          input=b"abc\r\ndef\n", timeout=20)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"ABC\nDEF\n")


class Greet(SockitTestCase):

    def test_default_message_then_close(self):
        srv = self.serve("greet", "127.0.0.1:0")
        s = self.connect(srv.addr)
        self.assertEqual(recv_until_eof(s), b"Thank you for connecting\r\n")
        port = local_port(s)
        s.close()
        n_in, n_out, _ = srv.close_line(port)
        self.assertEqual(n_out, len(b"Thank you for connecting\r\n"))

    def test_custom_message(self):
        srv = self.serve("greet", "127.0.0.1:0", "--message", "Hello from the test suite")
        s = self.connect(srv.addr)
        self.assertEqual(recv_until_eof(s), b"Hello from the test suite")

    def test_greet_many_clients_and_unix(self):
        path = self.path("g.sock")
        srv = self.serve("greet", "unix:" + path)
        for _ in range(20):
            s = self.connect(srv.addr)
            self.assertEqual(recv_until_eof(s), b"Thank you for connecting\r\n")
            s.close()

    def test_greet_with_socat(self):
        srv = self.serve("greet", "127.0.0.1:0", "--message", "hi socat\n")
        cp = self.run_cmd(["socat", "-t", "10", "-u", "TCP:127.0.0.1:%d" % port_of(srv.addr), "-"],
                          timeout=20)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"hi socat\n")
