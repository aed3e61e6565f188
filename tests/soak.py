#!/usr/bin/env python3
"""The soak test (`make soak`, not part of `make test`): a bounded mixed
workload on every service with random client faults, then a check that the
servers came back to their baseline.

    SOAK_SECONDS=600 SOCKIT_BUILD=build/san python3 tests/soak.py

Three servers run side by side: every service on one process (echo, upper
and greet raw, chat, exec, files; two workers), echo with frame framing and
upper with line framing. SOAK_CLIENTS threads (default 8) each pick, again
and again until SOAK_SECONDS pass, a random action: a normal exchange with
one service (checked byte for byte), or a fault — a reset in the middle of a
frame, a frame cut short, a slow reader that leaves megabytes unread and
then resets, garbage before a handshake, a chat member that never reads, an
exec client that resets while its command runs, an upload abandoned
half-way.

At the end, with the clients gone, each server must return to its
baseline: no connection open (SIGUSR1 counters conns=0, queued=0, mem=0),
descriptors back to the count after warm-up, no child process left, RSS
printed (start, peak, end), then a clean exit on SIGTERM (status 0, no
sanitizer report). Prints the figures; exit status 0 only if every check
held and no normal exchange failed.
"""

import hashlib
import os
import random
import re
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "integration"))

import helpers  # noqa: E402
from helpers import Server, connect, frame, read_frame, recv_exact, recv_line, wait_until  # noqa: E402
from exec_client import ExecClient  # noqa: E402
from files_client import FilesClient  # noqa: E402

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "8"))
STATS_RE = re.compile(r"^sockit: stats (.*)$")


def stats(srv):
    before = len(srv.find(STATS_RE.pattern))
    srv.send_signal(signal.SIGUSR1)
    m = srv.wait_line(STATS_RE.pattern, count=before + 1, timeout=10)[before]
    return dict((k, int(v)) for k, _, v in (p.partition("=") for p in m.group(1).split()))


def children(pid):
    n = 0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        if int(st[st.rindex(")") + 2:].split()[1]) == pid:
            n += 1
    return n


def reset_close(s):
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


def sockaddr(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


class Soak:
    def __init__(self, tmp):
        self.tmp = tmp
        self.token = os.urandom(24).hex().encode()
        self.token_file = os.path.join(tmp, "token")
        with open(self.token_file, "wb") as f:
            f.write(self.token + b"\n")
        os.chmod(self.token_file, 0o600)
        self.root = os.path.join(tmp, "root")
        os.mkdir(self.root)
        self.lock = threading.Lock()
        self.ops = {}
        self.failures = []
        self.stop = threading.Event()

    def count(self, name):
        with self.lock:
            self.ops[name] = self.ops.get(name, 0) + 1

    def fail(self, name, err):
        with self.lock:
            self.failures.append("%s: %r" % (name, err))

    # ---------------------------------------------------------- servers
    def start(self):
        common = ["--quiet", "--frame-timeout", "2", "--max-memory", "128M"]
        self.all = Server(["echo=127.0.0.1:0", "upper=127.0.0.1:0", "greet=127.0.0.1:0",
                           "chat=127.0.0.1:0", "exec=127.0.0.1:0", "files=127.0.0.1:0",
                           "--workers", "2", "--token-file", self.token_file, "--root", self.root,
                           "--handshake-timeout", "2", "--timeout", "10", "--max-queue", "256K"]
                          + common).start()
        self.frame = Server(["echo", "127.0.0.1:0", "--framing", "frame", "--workers", "2"]
                            + common).start()
        self.line = Server(["upper", "127.0.0.1:0", "--framing", "line", "--max-line", "8K"]
                           + common).start()
        self.servers = [self.all, self.frame, self.line]

    # ---------------------------------------------------------- normal work
    def echo_raw(self, rng):
        s = connect(self.all.addr_of("echo"))
        try:
            data = os.urandom(rng.randint(1, 200000))
            threading.Thread(target=s.sendall, args=(data,), daemon=True).start()
            if recv_exact(s, len(data)) != data:
                raise AssertionError("echo raw: wrong bytes")
        finally:
            s.close()

    def echo_frame(self, rng):
        s = connect(self.frame.addr)
        try:
            for _ in range(rng.randint(1, 20)):
                data = os.urandom(rng.randint(0, 70000))
                s.sendall(frame(data))
                if read_frame(s) != data:
                    raise AssertionError("echo frame: wrong bytes")
        finally:
            s.close()

    def upper_line(self, rng):
        s = connect(self.line.addr)
        try:
            for _ in range(rng.randint(1, 20)):
                text = bytes(rng.choice(b"abcxyz ABC019") for _ in range(rng.randint(0, 5000)))
                s.sendall(text + b"\n")
                if recv_line(s) != text.upper() + b"\n":
                    raise AssertionError("upper line: wrong bytes")
        finally:
            s.close()

    def greet(self, rng):
        s = connect(self.all.addr_of("greet"))
        try:
            if not recv_exact(s, 5).startswith(b"Thank"):
                raise AssertionError("greet: no greeting")
        finally:
            s.close()

    def chat(self, rng):
        s = connect(self.all.addr_of("chat"))
        try:
            if b"welcome" not in recv_line(s):
                raise AssertionError("chat: no welcome")
            s.sendall(b"hello from the soak\n/who\n/quit\n")
            # Lines from other members may come first: read to the end.
            got = helpers.recv_until_eof(s, limit=16 << 20)
            if b"*** members (" not in got or b"*** bye" not in got:
                raise AssertionError("chat: no /who or /quit answer in %r" % got[-300:])
        finally:
            s.close()

    def exec_(self, rng):
        c = ExecClient.connect(sockaddr(self.all.addr_of("exec")), self.token)
        try:
            data = os.urandom(rng.randint(0, 100000))
            out, err, res = c.run([b"cat"], stdin=data)
            if out != data or res != ("exit", 0):
                raise AssertionError("exec cat: %r, %d of %d bytes" % (res, len(out), len(data)))
            out, err, res = c.run([b"sh", b"-c", b"echo out; echo err >&2; exit 3"])
            if (out, err, res) != (b"out\n", b"err\n", ("exit", 3)):
                raise AssertionError("exec sh: %r" % ((out, err, res),))
        finally:
            c.close()

    def files(self, rng):
        c = FilesClient.connect(sockaddr(self.all.addr_of("files")), self.token)
        try:
            name = "f%d" % rng.randint(0, 20)
            data = os.urandom(rng.randint(0, 300000))
            c.put(name, data, upload_id=os.urandom(16))
            got = c.get(name)[0]
            # Another thread may have replaced the file in between: a put of
            # the same name is atomic, so what comes back is whole, and either
            # ours or someone's.
            if got != data and len(got) == len(data) and got[:64] == data[:64]:
                raise AssertionError("files: corrupted get")
            c.list("")
        finally:
            c.close()

    # ---------------------------------------------------------- faults
    def f_reset_mid_frame(self, rng):
        s = connect(self.frame.addr)
        s.sendall(struct.pack("!I", 100000) + os.urandom(rng.randint(0, 50000)))
        reset_close(s)

    def f_frame_cut_short(self, rng):
        s = connect(self.frame.addr)
        s.sendall(struct.pack("!I", 1000) + b"x" * rng.randint(0, 999))
        s.shutdown(socket.SHUT_WR)
        helpers.closed_by_peer(s, timeout=5)
        s.close()

    def f_slow_reader(self, rng):
        s = connect(self.all.addr_of("echo"))
        s.setblocking(False)
        sent = 0
        end = time.monotonic() + rng.uniform(0.2, 1.5)
        chunk = b"s" * 65536
        while time.monotonic() < end and sent < (8 << 20):
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                time.sleep(0.05)
            except OSError:
                break
        reset_close(s)

    def f_garbage_handshake(self, rng):
        svc = rng.choice(["exec", "files"])
        s = connect(self.all.addr_of(svc))
        try:
            s.sendall(os.urandom(rng.randint(1, 3000)))
            helpers.closed_by_peer(s, timeout=5)
        except OSError:
            pass
        s.close()

    def f_chat_not_reading(self, rng):
        s = connect(self.all.addr_of("chat"))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        try:
            for _ in range(200):
                s.sendall(b"flood " * 100 + b"\n")
        except OSError:
            pass
        time.sleep(rng.uniform(0, 1))
        reset_close(s)

    def f_exec_reset_while_running(self, rng):
        c = ExecClient.connect(sockaddr(self.all.addr_of("exec")), self.token)
        c.request([b"sleep", b"3"], no_stdin=True)
        time.sleep(rng.uniform(0, 0.5))
        reset_close(c.sock)

    def f_upload_abandoned(self, rng):
        c = FilesClient.connect(sockaddr(self.all.addr_of("files")), self.token)
        data = os.urandom(200000)
        c.put_begin("abandoned/a%d" % rng.randint(0, 5), len(data), os.urandom(16))
        c.put_from(0)
        c.send_data(data[:rng.randint(0, len(data) - 1)])
        reset_close(c.sock)

    # ---------------------------------------------------------- driving
    def client(self, seed):
        rng = random.Random(seed)
        normal = [self.echo_raw, self.echo_frame, self.upper_line, self.greet, self.chat,
                  self.exec_, self.files]
        faults = [self.f_reset_mid_frame, self.f_frame_cut_short, self.f_slow_reader,
                  self.f_garbage_handshake, self.f_chat_not_reading,
                  self.f_exec_reset_while_running, self.f_upload_abandoned]
        while not self.stop.is_set():
            is_fault = rng.random() < 0.35
            fn = rng.choice(faults if is_fault else normal)
            name = fn.__name__.strip("_")
            try:
                fn(rng)
                self.count(name)
            except Exception as e:  # noqa: BLE001 - any failure of a normal exchange is a finding
                if is_fault:
                    self.count(name)  # a fault may well end in an error on our side
                else:
                    self.fail(name, e)

    def run(self):
        self.start()
        for srv in self.servers:   # warm up: lazily made descriptors and buffers
            srv.wait_line(r"listening on", timeout=5)
        rng = random.Random(1)
        for fn in (self.echo_raw, self.echo_frame, self.upper_line, self.greet, self.chat,
                   self.exec_, self.files):
            fn(rng)
        time.sleep(0.5)
        base = {}
        for srv in self.servers:
            base[srv] = (srv.stable_fd_count(settle=0.3), srv.rss_kib(), children(srv.pid))
        peak = {srv: base[srv][1] for srv in self.servers}
        threads = [threading.Thread(target=self.client, args=(i,), daemon=True)
                   for i in range(CLIENTS)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        next_report = t0 + 30
        while time.monotonic() - t0 < SECONDS:
            time.sleep(0.5)
            for srv in self.servers:
                if not srv.running():
                    self.failures.append("server %s died:\n%s" % (srv.args[0], srv.stderr_text()[-3000:]))
                    self.stop.set()
                    break
                peak[srv] = max(peak[srv], srv.rss_kib())
            if self.stop.is_set():
                break
            if time.monotonic() >= next_report:
                next_report += 30
                print("soak: %.0f s, %d operations, %d failures" % (
                    time.monotonic() - t0, sum(self.ops.values()), len(self.failures)), flush=True)
        self.stop.set()
        for t in threads:
            t.join(60)
        elapsed = time.monotonic() - t0
        problems = list(self.failures)

        print("\nsoak: %.0f s, %d client threads, %d operations" % (elapsed, CLIENTS,
                                                                 sum(self.ops.values())))
        for k in sorted(self.ops):
            print("  %-26s %6d" % (k, self.ops[k]))
        print("\n  %-34s %9s %9s %9s %9s %9s %9s" % ("server", "fds base", "fds end", "children",
                                                     "RSS base", "RSS peak", "RSS end"))
        for srv in self.servers:
            name = " ".join(a for a in srv.args[:2] if "=" in a or not a.startswith("-"))[:34]
            if not srv.running():
                continue
            ok = wait_until(lambda: stats(srv)["conns"] == 0, 30, interval=0.5)
            fds = srv.wait_fds_at_most(base[srv][0], timeout=30)
            kids = children(srv.pid)
            if kids > base[srv][2]:
                wait_until(lambda: children(srv.pid) <= base[srv][2], 15, interval=0.2)
                kids = children(srv.pid)
            st = stats(srv)
            rss = srv.rss_kib()
            print("  %-34s %9d %9d %9d %8dK %8dK %8dK" % (name, base[srv][0], fds, kids, base[srv][1],
                                                          peak[srv], rss))
            print("    stats " + " ".join("%s=%d" % kv for kv in st.items()))
            if not ok or st["conns"] != 0:
                problems.append("%s: %d connections still open" % (name, st["conns"]))
            if (st["queued"], st["mem"]) != (0, 0):
                problems.append("%s: queued=%d mem=%d at rest" % (name, st["queued"], st["mem"]))
            if fds > base[srv][0]:
                problems.append("%s: descriptors %d -> %d" % (name, base[srv][0], fds))
            if kids > base[srv][2]:
                problems.append("%s: %d child processes left" % (name, kids))
        for srv in self.servers:
            problems += srv.stop(timeout=60)
        return problems


def main():
    if not helpers.have_binary():
        print("no sockit binary at %s (build it first)" % helpers.SOCKIT)
        return 2
    tmp = tempfile.mkdtemp(prefix="skit-soak-", dir="/tmp")
    soak = Soak(tmp)
    try:
        problems = soak.run()
    finally:
        for srv in getattr(soak, "servers", []):
            srv.kill()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    if problems:
        print("\nsoak: FAILED")
        for p in problems[:50]:
            print("  " + p)
        if len(problems) > 50:
            print("  ... and %d more" % (len(problems) - 50))
        return 1
    print("\nsoak: passed (baseline restored, clean exit)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
