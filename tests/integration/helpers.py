"""Shared helpers for the sockit integration tests (Python standard library only).

What is here:
  - where the binary is (SOCKIT_BUILD, default "build");
  - Server: starts `sockit serve ...` (port 0 / private paths only), waits for the
    "sockit: <svc> listening on <ADDR>" readiness line read from stderr by a
    background thread, and stops it with a signal, checking exit 0 and a clean
    sanitizer report; it also reads the server's descriptor count, VmRSS and
    CPU time from /proc;
  - address parsing and sockets that always carry a timeout;
  - frame helpers (struct.pack('!I', len) + data), recv_exact and friends;
  - SockitTestCase: a TestCase that tracks every process and socket a test
    makes and cleans them up in tearDown, stopping servers with a checked
    SIGTERM so that every test ends with a leak check.

Nothing here sleeps to wait for readiness: waits are for a log line, a
successful connect, or a condition polled with a bounded deadline.
"""

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def _build_dir():
    b = os.environ.get("SOCKIT_BUILD", "build")
    if os.path.isabs(b):
        return b
    # make runs us from the repository root; be right from anywhere else too.
    if os.path.isdir(b):
        return os.path.abspath(b)
    return os.path.join(ROOT, b)


BUILD = _build_dir()
SOCKIT = os.path.join(BUILD, "sockit")

# SOCKIT_SERVER_WRAPPER: a command the servers run under (`make valgrind`
# sets "valgrind --error-exitcode=99 --leak-check=full ..."); its errors
# show as the exit status that stop() checks. Servers run slower under it,
# so the start and stop bounds grow.
SERVER_WRAPPER = os.environ.get("SOCKIT_SERVER_WRAPPER", "").split()

# Bounds used everywhere (seconds).
READY_TIMEOUT = 10.0 if not SERVER_WRAPPER else 60.0   # readiness line
IO_TIMEOUT = 5.0          # any single socket operation
STOP_SLACK = 10.0 if not SERVER_WRAPPER else 60.0      # beyond the drain timeout, for exit + leak checks

SANITIZER_MARKERS = ("LeakSanitizer", "ERROR: AddressSanitizer", "runtime error")

LISTEN_RE = re.compile(r"^sockit: (\S+) listening on (\S+)\s*$")


def child_env(extra=None):
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    if extra:
        env.update(extra)
    return env


def have_binary():
    return os.access(SOCKIT, os.X_OK)


def wait_until(pred, timeout, interval=0.02):
    """Polls pred() until it is true or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(interval)


def ipv6_loopback_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        return False
    try:
        s.bind(("::1", 0))
        return True
    except OSError:
        return False
    finally:
        s.close()


# --------------------------------------------------------------- addresses

def _hostport(hp):
    m = re.match(r"^\[([^\]]+)\]:(\d+)$", hp)
    if m:
        return socket.AF_INET6, (m.group(1), int(m.group(2)))
    host, _, port = hp.rpartition(":")
    if not host:
        raise ValueError("bad address %r" % hp)
    return socket.AF_INET, (host, int(port))


def parse_addr(addr):
    """Turns a sockit address into (family, type, sockaddr) for Python's socket."""
    if addr.startswith("udp://"):
        fam, sa = _hostport(addr[6:])
        return fam, socket.SOCK_DGRAM, sa
    if addr.startswith("tcp://"):
        addr = addr[6:]
    for scheme, typ in (("unixgram:", socket.SOCK_DGRAM), ("unix:", socket.SOCK_STREAM)):
        if addr.startswith(scheme):
            p = addr[len(scheme):]
            if p.startswith("@"):
                p = "\0" + p[1:]
            return socket.AF_UNIX, typ, p
    fam, sa = _hostport(addr)
    return fam, socket.SOCK_STREAM, sa


def port_of(addr):
    return parse_addr(addr)[2][1]


def connect(addr, timeout=IO_TIMEOUT):
    """A connected socket (stream or datagram) to a sockit address, with a timeout."""
    fam, typ, sa = parse_addr(addr)
    s = socket.socket(fam, typ)
    s.settimeout(timeout)
    try:
        s.connect(sa)
    except BaseException:
        s.close()
        raise
    if typ == socket.SOCK_STREAM and fam != socket.AF_UNIX:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def unused_tcp_port():
    """A loopback port nobody listens on (bound then closed by us)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def local_port(sock):
    return sock.getsockname()[1]


# ------------------------------------------------------------------ framing

def frame(data):
    return struct.pack("!I", len(data)) + data


def recv_exact(sock, n):
    """Exactly n bytes; raises EOFError if the peer closes first."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("peer closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return bytes(buf)


def read_frame(sock):
    (n,) = struct.unpack("!I", recv_exact(sock, 4))
    return recv_exact(sock, n)


def recv_line(sock, limit=1 << 20):
    buf = bytearray()
    while not buf.endswith(b"\n"):
        c = sock.recv(1)
        if not c:
            raise EOFError("peer closed after %r" % bytes(buf[:200]))
        buf += c
        if len(buf) > limit:
            raise AssertionError("line longer than %d" % limit)
    return bytes(buf)


def recv_until_eof(sock, limit=256 << 20):
    """Everything until EOF (bounded by limit bytes and the socket's timeout)."""
    buf = bytearray()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(buf)
        buf += chunk
        if len(buf) > limit:
            raise AssertionError("more than %d bytes before EOF" % limit)


def closed_by_peer(sock, timeout=IO_TIMEOUT):
    """True if the peer closes the connection (EOF or reset) within timeout,
    draining any bytes it sent first; False if it is still open at the end."""
    deadline = time.monotonic() + timeout
    old = sock.gettimeout()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            sock.settimeout(left)
            try:
                data = sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                return True
            if not data:
                return True
    finally:
        sock.settimeout(old)


def echo_roundtrip(sock, data=b"ping", framing="raw"):
    """Sends data (as one frame, as one line with "\\n" added, or raw) and returns
    what comes back (one frame, one line with its "\\n", or len(data) bytes)."""
    if framing == "frame":
        sock.sendall(frame(data))
        return read_frame(sock)
    if framing == "line":
        sock.sendall(data + b"\n")
        return recv_line(sock)
    sock.sendall(data)
    return recv_exact(sock, len(data))


# ------------------------------------------------------------------- /proc

def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def proc_status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s in /proc/%d/status" % (field, pid))


def cpu_seconds(pid):
    """utime + stime of the process (all threads), in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------- server

class _LineReader(threading.Thread):
    """Reads a pipe line by line into a list, waking waiters on each line."""

    def __init__(self, pipe, lines, cond):
        super().__init__(daemon=True)
        self.pipe, self.lines, self.cond = pipe, lines, cond

    def run(self):
        for raw in iter(self.pipe.readline, b""):
            with self.cond:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()


class Server:
    """One `sockit serve` process. Use SockitTestCase.serve() to get one."""

    def __init__(self, args, prefix=(), env=None, ready=None, drain=None):
        self.args = list(args)
        self.argv = list(prefix) + SERVER_WRAPPER + [SOCKIT, "serve"] + self.args
        if ready is None:
            ready = sum(1 for a in self.args if re.match(r"^[a-z]+=", a)) or 1
        self.ready = ready
        if drain is None:
            drain = 5.0
            for i, a in enumerate(self.args):
                if a == "--drain-timeout" and i + 1 < len(self.args):
                    drain = float(self.args[i + 1])
        self.drain = drain
        self.env = child_env(env)
        self.proc = None
        self.err = []
        self.out = []
        self.cond = threading.Condition()
        self.listeners = []          # [(service, addr)] in order of the lines
        self.stopped = False

    # -- life cycle
    def start(self):
        if not have_binary():
            raise AssertionError("no sockit binary at %s (build it first)" % SOCKIT)
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=self.env, cwd=ROOT)
        self._threads = [_LineReader(self.proc.stderr, self.err, self.cond),
                         _LineReader(self.proc.stdout, self.out, self.cond)]
        for t in self._threads:
            t.start()
        deadline = time.monotonic() + READY_TIMEOUT
        with self.cond:
            while True:
                self.listeners = [LISTEN_RE.match(l).groups() for l in self.err
                                  if LISTEN_RE.match(l)]
                if len(self.listeners) >= self.ready:
                    break
                if self.proc.poll() is not None and not self._threads[0].is_alive():
                    raise AssertionError("sockit serve %s exited with %s before it was ready:\n%s"
                                         % (" ".join(self.args), self.proc.returncode,
                                            "\n".join(self.err)))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("sockit serve %s: no readiness line within %.0f s; stderr:\n%s"
                                         % (" ".join(self.args), READY_TIMEOUT, "\n".join(self.err)))
                self.cond.wait(min(left, 0.2))
        return self

    @property
    def pid(self):
        return self.proc.pid

    @property
    def addr(self):
        return self.listeners[0][1]

    def addr_of(self, service, index=0):
        found = [a for s, a in self.listeners if s == service]
        return found[index]

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def wait_exit(self, timeout):
        """Exit code, or None if it is still running after timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def _join_readers(self):
        for t in self._threads:
            t.join(timeout=5)

    def _close_pipes(self):
        """The runner is one process for every test: a server's pipes are
        closed when it is done, or the runner runs out of descriptors."""
        for t in self._threads:
            if t.is_alive():
                return  # still reading (a child holds the pipe); left to exit
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass

    def stderr_text(self):
        with self.cond:
            return "\n".join(self.err)

    def sanitizer_report(self):
        text = self.stderr_text()
        hits = [m for m in SANITIZER_MARKERS if m in text]
        return hits

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Sends sig, waits (drain timeout + slack), returns the problems found
        as a list of strings (empty: exit 0 and a clean sanitizer report)."""
        if self.proc is None or self.stopped:
            return []
        self.stopped = True
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        rc = self.wait_exit(timeout if timeout is not None else self.drain + STOP_SLACK)
        if rc is None:
            self.kill()
            problems.append("server did not exit within %.1f s of %s"
                            % (self.drain + STOP_SLACK, signal.Signals(sig).name))
        elif rc != 0:
            problems.append("server exited with %d after %s (expected 0)"
                            % (rc, signal.Signals(sig).name))
        self._join_readers()
        self._close_pipes()
        hits = self.sanitizer_report()
        if hits:
            problems.append("sanitizer report in server stderr (%s)" % ", ".join(hits))
        if problems:
            problems.append("server stderr (last 60 lines):\n" + "\n".join(self.err[-60:]))
        return problems

    def stop_checked(self, test, sig=signal.SIGTERM, timeout=None):
        problems = self.stop(sig, timeout)
        if problems:
            test.fail("\n".join(problems))

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.proc is not None:
            for t in self._threads:
                t.join(timeout=2)
            self._close_pipes()
        self.stopped = True

    # -- log
    def lines(self):
        with self.cond:
            return list(self.err)

    def find(self, regex):
        r = re.compile(regex)
        return [m for m in (r.search(l) for l in self.lines()) if m]

    def wait_line(self, regex, timeout=IO_TIMEOUT, count=1):
        """Waits until `count` stderr lines match regex; returns the matches.
        Fails the calling test (AssertionError) if they do not appear in time."""
        r = re.compile(regex)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                ms = [m for m in (r.search(l) for l in self.err) if m]
                if len(ms) >= count:
                    return ms
                if self.proc.poll() is not None and not self._threads[0].is_alive():
                    raise AssertionError("server exited (%s) before %d stderr line(s) matching %r; "
                                         "stderr tail:\n%s" % (self.proc.returncode, count, regex,
                                                               "\n".join(self.err[-30:])))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("expected %d stderr line(s) matching %r within %.1f s, saw %d; "
                                         "stderr tail:\n%s" % (count, regex, timeout, len(ms),
                                                               "\n".join(self.err[-30:])))
                self.cond.wait(min(left, 0.2))

    def close_line(self, peer_port, timeout=IO_TIMEOUT, service=r"\S+"):
        """The per-connection close line of the peer using this local port:
        returns (in_bytes, out_bytes, reason)."""
        m = self.wait_line(r"^sockit: %s close \S*:%d in=(\d+) out=(\d+) reason=(.*)$"
                           % (service, peer_port), timeout)[0]
        return int(m.group(1)), int(m.group(2)), m.group(3)

    # -- /proc
    def fd_count(self):
        return fd_count(self.pid)

    def rss_kib(self):
        return proc_status_kib(self.pid, "VmRSS")

    def vmsize_kib(self):
        return proc_status_kib(self.pid, "VmSize")

    def cpu_seconds(self):
        return cpu_seconds(self.pid)

    def stable_fd_count(self, settle=0.1, timeout=3.0):
        """The descriptor count once it has not changed for `settle` seconds
        (a close logged a moment ago may not have happened yet)."""
        deadline = time.monotonic() + timeout
        last, since = self.fd_count(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.01)
            n = self.fd_count()
            if n != last:
                last, since = n, time.monotonic()
            elif time.monotonic() - since >= settle:
                break
        return last

    def wait_fds_at_most(self, n, timeout=10.0):
        """Polls the descriptor count until it is <= n; returns the last count."""
        last = [self.fd_count()]

        def ok():
            last[0] = self.fd_count()
            return last[0] <= n
        wait_until(ok, timeout)
        return last[0]


# ------------------------------------------------------------------ base test

class SockitTestCase(unittest.TestCase):
    """Tracks servers, processes, sockets and a private temp dir per test."""

    def setUp(self):
        if not have_binary():
            self.fail("no sockit binary at %s (run make first)" % SOCKIT)
        self._servers = []
        self._socks = []
        self._procs = []
        self.tmp = tempfile.mkdtemp(prefix="skit-", dir="/tmp")

    def tearDown(self):
        for s in self._socks:
            try:
                s.close()
            except OSError:
                pass
        for p in self._procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    try:
                        f.close()
                    except OSError:
                        pass
        problems = []
        for srv in self._servers:
            if not srv.stopped:
                problems += srv.stop()
            else:
                srv.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if problems:
            self.fail("at teardown: " + "\n".join(problems))

    # -- factories
    def serve(self, *args, prefix=(), env=None, ready=None):
        srv = Server(args, prefix=prefix, env=env, ready=ready)
        self._servers.append(srv)
        srv.start()
        return srv

    def connect(self, addr, timeout=IO_TIMEOUT):
        s = connect(addr, timeout)
        self._socks.append(s)
        return s

    def track(self, sock):
        self._socks.append(sock)
        return sock

    def path(self, name):
        return os.path.join(self.tmp, name)

    def popen(self, argv, **kw):
        kw.setdefault("env", child_env())
        p = subprocess.Popen(argv, **kw)
        self._procs.append(p)
        return p

    def run_cmd(self, argv, input=None, timeout=30, env=None):
        """Runs a command to completion (bounded); returns CompletedProcess."""
        try:
            return subprocess.run(argv, input=input, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, timeout=timeout,
                                  env=child_env(env), cwd=ROOT,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.fail("%s did not finish within %s s (stderr: %r)"
                      % (" ".join(argv), timeout, (e.stderr or b"")[-500:]))

    def sockit(self, *args, input=None, timeout=30):
        return self.run_cmd([SOCKIT] + list(args), input=input, timeout=timeout)

    # -- assertions
    def assertClean(self, cp):
        """No sanitizer report in a finished command's stderr."""
        text = cp.stderr.decode("utf-8", "replace")
        for m in SANITIZER_MARKERS:
            self.assertNotIn(m, text, "sanitizer report in stderr:\n" + text[-3000:])

    def assertServes(self, addr, framing="raw", data=b"still-serving"):
        s = self.connect(addr)
        try:
            self.assertEqual(echo_roundtrip(s, data, framing), data + (b"\n" if framing == "line" else b""))
        finally:
            s.close()
