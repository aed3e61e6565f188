"""sockit bench: counts, verifies every reply byte, prints valid JSON, in every mode."""

import json
import socket
import struct
import threading

from helpers import SockitTestCase, recv_exact


def corrupting_frame_server(flip_after):
    """A frame echo server (Python, one thread per client) that flips one bit
    of the payload of the flip_after-th frame it echoes; returns (port, stop)."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    lsock.settimeout(0.2)
    done = threading.Event()
    count = [0]
    lock = threading.Lock()

    def serve(c):
        c.settimeout(10)
        try:
            while not done.is_set():
                hdr = recv_exact(c, 4)
                (n,) = struct.unpack("!I", hdr)
                body = bytearray(recv_exact(c, n))
                with lock:
                    count[0] += 1
                    flip = count[0] == flip_after
                if flip and body:
                    body[len(body) // 2] ^= 0x01
                c.sendall(hdr + bytes(body))
        except (OSError, EOFError):
            pass
        finally:
            c.close()

    def accept_loop():
        while not done.is_set():
            try:
                c, _ = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()

    def stop():
        done.set()
        t.join(5)
        lsock.close()

    return lsock.getsockname()[1], stop


class Bench(SockitTestCase):

    def run_bench(self, addr, *args):
        cp = self.sockit("bench", addr, "-d", "0.5", "--warmup", "0.1", "--json", *args, timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr.decode(errors="replace"))
        self.assertClean(cp)
        out = json.loads(cp.stdout.decode())   # valid JSON, one object
        self.assertGreater(out["requests"], 0)
        self.assertEqual(out["errors"], 0)
        lat = out["latency_us"]
        self.assertLessEqual(lat["p50"], lat["p90"])
        self.assertLessEqual(lat["p90"], lat["p99"])
        self.assertLessEqual(lat["p99"], lat["max"] * 1.02)
        self.assertGreater(lat["p50"], 0)
        return out

    def test_stream_modes_against_echo(self):
        frame = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--quiet")
        raw = self.serve("echo", "127.0.0.1:0", "--quiet")
        line = self.serve("echo", "127.0.0.1:0", "--framing", "line", "--quiet")
        out = self.run_bench(frame.addr, "-c", "4", "--pipeline", "4", "--size", "100")
        self.assertEqual((out["mode"], out["conns"], out["pipeline"], out["size"]), ("frame", 4, 4, 100))
        self.run_bench(frame.addr, "--mode", "frame", "-c", "2", "--size", "0")
        self.run_bench(raw.addr, "--mode", "raw", "-c", "3", "--pipeline", "2", "--size", "70000")
        self.run_bench(line.addr, "--mode", "line", "-c", "2", "--size", "33")
        out = self.run_bench(frame.addr, "--mode", "connect", "-c", "4")
        self.assertEqual(out["mode"], "connect")
        out = self.run_bench(frame.addr, "-c", "6", "--threads", "2", "--rate", "2000")
        # Open loop: about rate x duration requests (generous bounds: not a timing test).
        self.assertGreater(out["requests"], 300)
        self.assertLess(out["requests"], 1500)

    def test_idle_mode_reports_memory_per_connection(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--quiet")
        cp = self.sockit("bench", srv.addr, "--mode", "idle", "-c", "50", "-d", "0.3",
                         "--warmup", "0", "--json", "--server-pid", str(srv.pid), timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        out = json.loads(cp.stdout.decode())
        self.assertEqual(out["server"]["pid"], srv.pid)
        self.assertIn("rss_bytes_per_idle_conn", out["server"])
        self.assertGreater(out["server"]["rss_kb"], 0)

    def test_udp_mode(self):
        srv = self.serve("echo", "udp://127.0.0.1:0", "--quiet", "--udp-rate", "0")
        out = self.run_bench(srv.addr, "--mode", "udp", "-c", "2", "--pipeline", "2", "--size", "512")
        self.assertEqual(out["mode"], "udp")

    def test_table_output(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "frame", "--quiet")
        cp = self.sockit("bench", srv.addr, "-c", "2", "-d", "0.3", "--warmup", "0")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        text = cp.stdout.decode()
        self.assertRegex(text, r"requests\s+\d+ in [\d.]+ s: \d+ req/s")
        self.assertRegex(text, r"p50 [\d.]+\s+p90 [\d.]+\s+p99 [\d.]+\s+p99\.9 [\d.]+\s+max [\d.]+")

    def test_corrupted_reply_fails_loudly(self):
        port, stop = corrupting_frame_server(flip_after=50)
        try:
            cp = self.sockit("bench", "127.0.0.1:%d" % port, "-c", "2", "-d", "3", "--warmup", "0",
                             "--size", "64", timeout=60)
        finally:
            stop()
        self.assertEqual(cp.returncode, 1, cp.stdout)
        self.assertRegex(cp.stderr.decode(), r"FAILED: reply mismatch on connection \d+, request \d+, byte 32")

    def test_server_going_away_fails(self):
        port, stop = corrupting_frame_server(flip_after=10 ** 9)
        stop()   # nothing listens any more
        cp = self.sockit("bench", "127.0.0.1:%d" % port, "-c", "1", "-d", "0.3", timeout=30)
        self.assertEqual(cp.returncode, 1)
        self.assertIn("refused", cp.stderr.decode())

    def test_usage_errors(self):
        for args in (["127.0.0.1:1", "--mode", "nope"], ["udp://127.0.0.1:1"],
                     ["127.0.0.1:1", "--mode", "udp"], ["127.0.0.1:1", "-c", "0"], []):
            cp = self.sockit("bench", *args)
            self.assertEqual(cp.returncode, 2, args)
            self.assertEqual(len(cp.stderr.decode().strip().splitlines()), 1, cp.stderr)
