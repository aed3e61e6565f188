"""echo over TCP: bulk bytes, many concurrent clients, half-close, workers,
--quiet, and independent clients (socat, nc) against it."""

import os
import random
import socket
import threading
import time

from helpers import (SockitTestCase, connect, echo_roundtrip, frame, local_port,
                     port_of, read_frame, recv_line, recv_until_eof)

MiB = 1 << 20


class EchoRaw(SockitTestCase):

    def test_one_mib_byte_exact(self):
        srv = self.serve("echo", "127.0.0.1:0")
        data = os.urandom(MiB)
        s = self.connect(srv.addr, timeout=10)
        # Send from a thread while reading here: the server may (rightly)
        # stop reading us while its replies are unread.
        err = []

        def writer():
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(e)
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        got = recv_until_eof(s, limit=2 * MiB)
        t.join(10)
        self.assertFalse(err, err)
        self.assertEqual(len(got), len(data))
        self.assertTrue(got == data, "echoed bytes differ from what was sent")
        n_in, n_out, reason = srv.close_line(local_port(s))
        self.assertEqual((n_in, n_out), (MiB, MiB))
        self.assertEqual(reason, "peer closed")

    def test_200_concurrent_clients(self):
        srv = self.serve("echo", "127.0.0.1:0", "--backlog", "512")
        n = 200
        rnd = random.Random(1234)
        payloads = [os.urandom(rnd.randint(1, 48 * 1024)) for _ in range(n)]
        connected = threading.Barrier(n + 1, timeout=30)
        go = threading.Barrier(n + 1, timeout=60)
        results = [None] * n

        def client(i):
            try:
                s = connect(srv.addr, timeout=30)
                try:
                    connected.wait()   # all n are open at the same time ...
                    go.wait()          # ... and the server has accepted them all
                    s.sendall(payloads[i])
                    s.shutdown(socket.SHUT_WR)
                    results[i] = recv_until_eof(s, limit=MiB)
                finally:
                    s.close()
            except Exception as e:  # noqa: BLE001 - reported below
                results[i] = e
                connected.abort()
                go.abort()
        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(n)]
        for t in threads:
            t.start()
        ok = False
        try:
            connected.wait()
            srv.wait_line(r"^sockit: echo open ", timeout=30, count=n)
            fds = srv.fd_count()
            go.wait()
            ok = True
        finally:
            if not ok:
                connected.abort()
                go.abort()
            deadline = time.monotonic() + 60
            for t in threads:
                t.join(max(0.1, deadline - time.monotonic()))
        self.assertGreaterEqual(fds, n, "server did not hold all %d clients at once" % n)
        bad = [i for i in range(n) if results[i] != payloads[i]]
        self.assertEqual(bad, [], "clients with wrong echo: %s (first: %r)"
                         % (bad[:10], results[bad[0]] if bad and isinstance(results[bad[0]], Exception)
                            else None))
        srv.wait_line(r"^sockit: echo close .* reason=peer closed", timeout=30, count=n)

    def test_half_close_raw_gets_every_reply(self):
        srv = self.serve("echo", "127.0.0.1:0")
        s = self.connect(srv.addr)
        data = b"".join(b"chunk-%04d;" % i for i in range(500))
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        self.assertEqual(recv_until_eof(s), data)

    def test_half_close_with_output_backlog(self):
        # The peer reads slowly (small receive buffer), so when its EOF
        # arrives the server still holds replies: they must all be sent.
        srv = self.serve("echo", "127.0.0.1:0")
        s = self.track(socket.socket())
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        s.settimeout(10)
        s.connect(("127.0.0.1", port_of(srv.addr)))
        data = os.urandom(6 * MiB)
        err = []

        def writer():
            try:
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                err.append(e)
        t = threading.Thread(target=writer, daemon=True)
        t.start()
        got = bytearray()
        while True:
            part = s.recv(4096)
            if not part:
                break
            got += part
            self.assertLessEqual(len(got), len(data))
        t.join(10)
        self.assertFalse(err, err)
        self.assertEqual(len(got), len(data), "replies lost after the half-close")
        self.assertTrue(bytes(got) == data)

    def test_half_close_frames_then_eof(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame")
        s = self.connect(srv.addr)
        msgs = [os.urandom(i * 37 % 3000) for i in range(100)]
        s.sendall(b"".join(frame(m) for m in msgs))
        s.shutdown(socket.SHUT_WR)
        for m in msgs:
            self.assertEqual(read_frame(s), m)
        self.assertEqual(s.recv(1), b"", "server did not close after the last reply")

    def test_half_close_lines_then_eof(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "line")
        s = self.connect(srv.addr)
        lines = [b"line %d" % i for i in range(300)]
        s.sendall(b"".join(l + b"\n" for l in lines))
        s.shutdown(socket.SHUT_WR)
        for l in lines:
            self.assertEqual(recv_line(s), l + b"\n")
        self.assertEqual(s.recv(1), b"")

    def test_workers_share_the_port(self):
        srv = self.serve("echo", "127.0.0.1:0", "--workers", "2")
        socks = [self.connect(srv.addr) for _ in range(20)]
        for i, s in enumerate(socks):
            self.assertEqual(echo_roundtrip(s, b"w%d" % i), b"w%d" % i)
        for s in socks:
            s.close()
        srv.wait_line(r"^sockit: echo close ", count=20)

    def test_quiet_logs_no_connections(self):
        srv = self.serve("echo", "127.0.0.1:0", "--quiet")
        s = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(s, b"q"), b"q")
        s.close()
        s2 = self.connect(srv.addr)
        self.assertEqual(echo_roundtrip(s2, b"q2"), b"q2")  # the first close was processed
        s2.close()
        srv.stop_checked(self)
        conn_lines = [l for l in srv.lines() if " open " in l or " close " in l]
        self.assertEqual(conn_lines, [])

    def test_logs_open_and_close_with_byte_counts(self):
        srv = self.serve("echo", "127.0.0.1:0")
        s = self.connect(srv.addr)
        port = local_port(s)
        srv.wait_line(r"^sockit: echo open \S*:%d\s*$" % port)
        self.assertEqual(echo_roundtrip(s, b"12345"), b"12345")
        self.assertEqual(echo_roundtrip(s, b"678"), b"678")
        s.close()
        self.assertEqual(srv.close_line(port), (8, 8, "peer closed"))


class EchoWithOtherClients(SockitTestCase):
    """Clients nobody here wrote: socat and OpenBSD nc."""

    def test_socat_pipes_100k(self):
        srv = self.serve("echo", "127.0.0.1:0")
        data = os.urandom(100 * 1024)
        cp = self.run_cmd(["socat", "-t", "10", "-", "TCP:127.0.0.1:%d" % port_of(srv.addr)],
                          input=data, timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(len(cp.stdout), len(data))
        self.assertTrue(cp.stdout == data)

    def test_nc_close_on_eof(self):
        srv = self.serve("echo", "127.0.0.1:0")
        data = b"hello from nc\n" * 1000
        cp = self.run_cmd(["nc", "-N", "127.0.0.1", str(port_of(srv.addr))], input=data, timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, data)

    def test_nc_unix(self):
        path = self.path("e.sock")
        srv = self.serve("echo", "unix:" + path)
        data = b"unix bytes\x00\xff\n" * 100
        cp = self.run_cmd(["nc", "-N", "-U", path], input=data, timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, data)
        srv.stop_checked(self)

    def test_socat_abstract_unix(self):
        name = "sockit-test-%d-%d" % (os.getpid(), random.randrange(1 << 30))
        srv = self.serve("echo", "unix:@" + name)
        self.assertEqual(srv.addr, "unix:@" + name)
        data = os.urandom(10000)
        cp = self.run_cmd(["socat", "-t", "10", "-", "ABSTRACT-CONNECT:" + name], input=data, timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertTrue(cp.stdout == data)
