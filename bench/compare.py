#!/usr/bin/env python3
"""bench/compare.py — sockit side by side with reference servers, paired
and interleaved, pinned, on one machine.

Every server is started once and stays up (pinned to core 0); `sockit bench`
(pinned to core 1) drives them. A round hits every server of a workload in
turn with the same command line, so the host's placement of the two cores
(BENCHMARKING.md trap 1) is the same for the figures compared; ratios are
computed inside a round and their median reported. Before and after each
measurement /proc/stat must show the machine otherwise idle (other people's
tests share it, trap 4); during it, CPU time not spent by our processes is
counted; a measurement that was disturbed is marked and left out of the
medians while enough clean rounds remain.

    python3 bench/compare.py                 the full set, 5 rounds (~35 min)
    python3 bench/compare.py --quick         1 short round (~4 min)
    python3 bench/compare.py --only 'tcp-100x16' --rounds 3
    python3 bench/compare.py --json out.json raw results (every round)
    python3 bench/compare.py --profile       also callgrind (sockit vs epoll_echo)

Needs `make` and `make -C bench` first (build/sockit, build/bench/*), and
the Debian packages bench/Makefile installs. Python stdlib only.
"""
import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_BIN = os.path.join(ROOT, "build", "bench")
SERVER_CORE, CLIENT_CORE = 0, 1
HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
# A measurement is disturbed when processes other than ours used more than
# this share of the whole machine's user time while it ran, or when the
# machine was busier than QUIET_BUSY just before or after it.
DISTURB_SHARE = 0.02
QUIET_BUSY = 0.05
QUIET_WAIT_MAX_S = 180

# --------------------------------------------------------------- /proc


def read_stat():
    """Per-CPU and total jiffies from /proc/stat: {name: [user, nice, system,
    idle, iowait, irq, softirq, steal]}."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu"):
                parts = line.split()
                out[parts[0]] = [int(x) for x in parts[1:9]]
    return out


def busy(v):
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def total(v):
    return sum(v)


def proc_ticks(pid):
    """(utime, stime) of a live process (all its threads), in jiffies."""
    return proc_stat(pid)[:2]


def proc_stat(pid):
    """(utime, stime, minor page faults) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]), int(rest[12]), int(rest[7])
    except (OSError, IndexError, ValueError):
        return 0, 0, 0


def proc_rchar(pid):
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def raise_nofile():
    """10,000 idle connections need more descriptors than the default."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listen(port, timeout=10):
    """Waits until something listens on 127.0.0.1:port (/proc/net/tcp), for
    tools that print nothing when ready; connecting to check would use up
    their one accept."""
    want = f"0100007F:{port:04X}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as f:
            for line in f:
                p = line.split()
                if len(p) > 3 and p[1] == want and p[3] == "0A":
                    return True
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {timeout} s")


def pinned(core, argv):
    return ["taskset", "-c", str(core)] + argv


# ------------------------------------------------------------- servers


class Server:
    """A server process pinned to the server core, started once; `ready` is a
    regex on its output whose group 1 (if any) is the address bound."""

    def __init__(self, name, argv, ready, addr=None, cwd=None, env=None):
        self.name, self.argv, self.ready, self.addr, self.cwd = name, argv, ready, addr, cwd
        self.env = env
        self.proc = None
        self.tail = []

    def start(self, timeout=15):
        self.proc = subprocess.Popen(pinned(SERVER_CORE, self.argv), stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.cwd, start_new_session=True,
                                     env=dict(os.environ, **self.env) if self.env else None)
        deadline = time.monotonic() + timeout
        rx = re.compile(self.ready)
        while True:
            line = self.proc.stdout.readline().decode(errors="replace")
            if not line:
                raise RuntimeError(f"{self.name} exited before it was ready: {''.join(self.tail)}")
            self.tail = (self.tail + [line])[-20:]
            m = rx.search(line)
            if m:
                if m.groups() and m.group(1):
                    self.addr = m.group(1)
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not ready in {timeout} s")
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self):
        for raw in self.proc.stdout:
            self.tail = (self.tail + [raw.decode(errors="replace")])[-20:]

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGTERM)  # sockit: a second signal stops at once
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


LISTEN_RE = r"listening on (\S+)"


def make_server(kind, transport, sockit, tmp):
    """kind: sockit | sockit_raw | epoll_echo | uv_echo | uv_frame | ev_frame |
    udp_echo | redis | sk_bulk; transport: tcp | unix | udp."""
    addr = "127.0.0.1:0" if transport in ("tcp", "udp") else f"unix:{tmp}/{kind}.sock"
    if kind in ("sockit", "sockit_raw"):
        framing = "raw" if kind == "sockit_raw" else "frame"
        if transport == "udp":
            argv = [sockit, "serve", "echo", "udp://127.0.0.1:0", "--quiet", "--udp-rate", "0"]
        else:
            argv = [sockit, "serve", "echo", addr, "--framing", framing, "--quiet"]
        return Server(kind, argv, LISTEN_RE)
    if kind == "redis":
        # One process serves TCP and a Unix socket named after its port (a
        # fresh instance for the idle test must not remove the shared one's).
        port = free_port()
        argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--unixsocket", f"{tmp}/redis-{port}.sock", "--unixsocketperm",
                "700", "--maxclients", "20000", "--protected-mode", "no", "--dir", tmp]
        srv = Server(kind, argv, r"Ready to accept connections()")
        srv.addr = f"127.0.0.1:{port}"
        srv.unix_addr = f"unix:{tmp}/redis-{port}.sock"
        return srv
    if kind == "sk_bulk":
        return Server(kind, [os.path.join(BENCH_BIN, "sk_bulk"), "recv", "127.0.0.1:0"], LISTEN_RE)
    path = os.path.join(BENCH_BIN, kind)
    ref_addr = "127.0.0.1:0" if transport in ("tcp", "udp") else f"unix:{tmp}/{kind}.sock"
    return Server(kind, [path, ref_addr], LISTEN_RE)


def bench_addr(srv, transport):
    a = srv.addr
    if transport == "udp" and not a.startswith("udp://"):
        return "udp://" + a
    return a


# --------------------------------------------------------- measurement


class Machine:
    """Quiet checks and CPU accounting around each measurement."""

    def __init__(self, servers, log):
        self.servers, self.log = servers, log

    def our_ticks(self):
        t = 0
        for s in self.servers():
            u, k = proc_ticks(s.pid)
            t += u + k
        return t

    def sample_busy(self, secs=0.25):
        """Share of the machine busy with something other than our servers."""
        a, o0 = read_stat()["cpu"], self.our_ticks()
        time.sleep(secs)
        b, o1 = read_stat()["cpu"], self.our_ticks()
        dt = total(b) - total(a)
        return max(0.0, (busy(b) - busy(a) - (o1 - o0)) / dt) if dt > 0 else 0.0

    def wait_quiet(self):
        """Waits (bounded) until the machine is idle; returns (ok, waited_s)."""
        t0 = time.monotonic()
        while True:
            b = self.sample_busy()
            if b <= QUIET_BUSY:
                return True, time.monotonic() - t0
            if time.monotonic() - t0 > QUIET_WAIT_MAX_S:
                self.log(f"  machine still busy ({b:.0%}) after {QUIET_WAIT_MAX_S} s; going on, marked")
                return False, time.monotonic() - t0
            self.log(f"  machine busy ({b:.0%} of 2 cores used by others); waiting")
            time.sleep(5)

    def measure(self, fn, server_pids, retries=2):
        """measure_once, repeated (bounded) while the result was disturbed by
        other work; the last attempt is kept, with how many were thrown away."""
        for attempt in range(retries + 1):
            res = self.measure_once(fn, server_pids)
            if not res.get("disturbed") or "error" in res:
                break
            if attempt < retries:
                self.log(f"  disturbed ({res['disturbed']}): measuring again")
        res["attempts"] = attempt + 1
        return res

    def measure_once(self, fn, server_pids):
        """Runs fn() (which returns a dict) between CPU snapshots; adds server
        and client CPU use, per-core load, steal and the disturbance verdict."""
        ok_before, waited = self.wait_quiet()
        st0 = read_stat()
        srv0 = [proc_stat(p) for p in server_pids]
        our0 = self.our_ticks()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        res = fn()
        t1 = time.monotonic()
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        srv1 = [proc_stat(p) for p in server_pids]
        our1 = self.our_ticks()
        st1 = read_stat()
        el = t1 - t0
        srv_u = sum(b[0] - a[0] for a, b in zip(srv0, srv1))
        srv_s = sum(b[1] - a[1] for a, b in zip(srv0, srv1))
        cli_u = (ru1.ru_utime - ru0.ru_utime) * HZ
        cli_s = (ru1.ru_stime - ru0.ru_stime) * HZ
        # User time nobody of ours spent: other people's work (compilers and
        # tests are user time; our own kernel work can hide in softirq time,
        # so only user time is trusted for this verdict).
        all_user = (st1["cpu"][0] + st1["cpu"][1]) - (st0["cpu"][0] + st0["cpu"][1])
        other_servers_user = (our1 - our0) - (srv_u + srv_s)  # idle servers: ~0
        others = max(0.0, all_user - srv_u - cli_u - max(0, other_servers_user))
        others_share = others / (HZ * el * NCPU) if el > 0 else 0
        ok_after = self.sample_busy() <= QUIET_BUSY
        core = {}
        for c in (SERVER_CORE, CLIENT_CORE):
            a, b = st0.get(f"cpu{c}"), st1.get(f"cpu{c}")
            if a and b and total(b) > total(a):
                core[f"core{c}_busy"] = round((busy(b) - busy(a)) / (total(b) - total(a)), 3)
                core[f"core{c}_softirq"] = round((b[6] - a[6]) / (total(b) - total(a)), 3)
        res.update({
            "elapsed_s": round(el, 3),
            "server_cpu": round((srv_u + srv_s) / HZ / el, 3) if el > 0 else None,
            "server_user": round(srv_u / HZ / el, 3) if el > 0 else None,
            "client_cpu": round((cli_u + cli_s) / HZ / el, 3) if el > 0 else None,
            "client_user": round(cli_u / HZ / el, 3) if el > 0 else None,
            "steal_share": round((st1["cpu"][7] - st0["cpu"][7]) / (HZ * el * NCPU), 4) if el > 0 else 0,
            "others_share": round(others_share, 4),
            "waited_s": round(waited, 1),
            "server_minflt": sum(b[2] - a[2] for a, b in zip(srv0, srv1)),
            **core,
        })
        reasons = []
        if not ok_before:
            reasons.append("busy before")
        if others_share > DISTURB_SHARE:
            reasons.append(f"others used {others_share:.1%}")
        if not ok_after:
            reasons.append("busy after")
        res["disturbed"] = ", ".join(reasons) if reasons else ""
        return res


def run_json(argv, timeout):
    """Runs a pinned client; returns its last JSON line as a dict, or {'error'}."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": "timed out"}
    text = p.stdout.decode(errors="replace").strip()
    out = text.splitlines()
    if p.returncode != 0 or not out:
        return {"error": (p.stderr.decode(errors="replace").strip() or f"exit {p.returncode}")[-300:]}
    for candidate in (out[-1], text):  # one JSON line, or one document (iperf3 -J)
        try:
            return json.loads(candidate)
        except json.JSONDecodeError:
            pass
    return {"error": "bad JSON: " + out[-1][:200]}


def cacheline():
    r = run_json([os.path.join(BENCH_BIN, "cacheline"), str(SERVER_CORE), str(CLIENT_CORE)], 30)
    return r.get("one_way_ns", {}).get("median")


# ----------------------------------------------------------- workloads

TCP_REFS = ["epoll_echo", "uv_echo", "uv_frame", "ev_frame"]


def workloads():
    """(key, label, transport, bench args, servers, target) for the paired
    throughput rounds. target: (kind, references, factor)."""
    w = []
    for transport in ("tcp", "unix"):
        for conns, depth, size in ((100, 1, 64), (100, 16, 64), (100, 16, 4096), (1000, 16, 64)):
            key = f"{transport}-{conns}x{depth}-{size}"
            label = f"{'TCP' if transport == 'tcp' else 'Unix'} {conns} × {depth}, {size} B"
            servers = ["sockit"] + TCP_REFS + (["redis"] if size == 64 else [])
            if depth == 1 or size == 4096 or transport == "unix":
                target = ("ge", ["epoll_echo"], 1.0)
            elif conns == 100:
                target = ("ge", ["epoll_echo", "uv_frame"], 1.0)
            else:
                target = ("ge", ["epoll_echo", "uv_frame", "redis"], 1.0)
            w.append((key, label, transport,
                      ["-c", str(conns), "--pipeline", str(depth), "--size", str(size)],
                      servers, target))
    w.append(("tcp-connect-64", "TCP connections/s, 64 connectors", "tcp",
              ["--mode", "connect", "-c", "64"], ["sockit"] + TCP_REFS, ("ge", ["epoll_echo"], 1.0)))
    w.append(("udp-32x4-64", "UDP 64 B, 32 sockets × 4 in flight", "udp",
              ["--mode", "udp", "-c", "32", "--pipeline", "4", "--size", "64"],
              ["sockit", "udp_echo"], ("ge", ["udp_echo"], 2.0)))
    w.append(("udp-8x16-64", "UDP 64 B, 8 sockets × 16 in flight", "udp",
              ["--mode", "udp", "-c", "8", "--pipeline", "16", "--size", "64"],
              ["sockit", "udp_echo"], ("ge", ["udp_echo"], 2.0)))
    w.append(("udp-1x1-64", "UDP 64 B, 1 × 1", "udp",
              ["--mode", "udp", "-c", "1", "--pipeline", "1", "--size", "64"],
              ["sockit", "udp_echo"], None))
    w.append(("tcp-bulk-echo-frame", "TCP bulk echo, 1 conn, 1 MiB frames × 4", "tcp",
              ["-c", "1", "--pipeline", "4", "--size", "1048576"],
              ["sockit"] + TCP_REFS, None))
    w.append(("tcp-bulk-echo-raw", "TCP bulk echo, 1 conn, raw 1 MiB × 4", "tcp",
              ["--mode", "raw", "-c", "1", "--pipeline", "4", "--size", "1048576"],
              ["sockit_raw", "uv_echo"], None))
    return w


def bench_args_for(server, args):
    """Redis answers PING, not frames: same connections and depth, redis mode."""
    if server != "redis":
        return args
    out, skip = ["--mode", "redis"], False
    for i, a in enumerate(args):
        if skip:
            skip = False
            continue
        if a in ("--size", "--mode"):
            skip = True
            continue
        out.append(a)
    return out


# ------------------------------------------------------------ the run


class Runner:
    def __init__(self, opts):
        self.o = opts
        self.tmp = tempfile.mkdtemp(prefix="sockit-bench-")
        self.servers = {}  # (kind, transport) -> Server
        self.extra = []    # short-lived servers, for the quiet check
        self.machine = Machine(lambda: list(self.servers.values()) + self.extra, self.log)
        self.results = {"rounds": [], "idle": [], "bulk_oneway": [], "syscalls": {},
                        "callgrind": {}}

    def log(self, msg):
        print(msg, file=sys.stderr, flush=True)

    def server(self, kind, transport):
        key = (kind, "tcp" if kind == "redis" else transport)
        if key not in self.servers:
            self.servers[key] = make_server(kind, key[1], self.o.sockit, self.tmp).start()
        return self.servers[key]

    def stop_all(self):
        for s in list(self.servers.values()) + self.extra:
            s.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def sockit_bench(self, addr, args, duration=None, warmup=None, extra=()):
        d = self.o.duration if duration is None else duration
        w = self.o.warmup if warmup is None else warmup
        argv = pinned(CLIENT_CORE, [self.o.sockit, "bench", addr] + list(args) +
                      ["-d", str(d), "--warmup", str(w), "--json"] + list(extra))
        return run_json(argv, d + w + 60)

    # -- paired throughput rounds

    def throughput_round(self, rnd, wls):
        """Every server of each workload in turn with `sockit bench`; for frame
        workloads a second sweep with frame_client, the minimal generator
        (item 4 of the issue: is the generator the limit?)."""
        rec = {"round": rnd, "placement_ns": {}, "runs": {}, "runs_fc": {}}
        for key, label, transport, args, servers, _t in wls:
            rec["placement_ns"][key] = cacheline()
            # Rotate the order each round so no server always goes first.
            order = servers[rnd % len(servers):] + servers[:rnd % len(servers)]
            for kind in order:
                srv = self.server(kind, transport)
                redis_unix = kind == "redis" and transport == "unix"
                addr = srv.unix_addr if redis_unix else bench_addr(srv, transport)
                res = self.machine.measure(
                    lambda: self.sockit_bench(addr, bench_args_for(kind, args)), [srv.pid])
                rec["runs"].setdefault(key, {})[kind] = res
                self.log_run(rnd, key, kind, res)
            if not self.o.frame_client or "--mode" in args:
                continue
            a = dict(zip(args[::2], args[1::2]))
            for kind in [k for k in order if k != "redis"]:
                srv = self.server(kind, transport)
                fc = pinned(CLIENT_CORE, [os.path.join(BENCH_BIN, "frame_client"), srv.addr,
                                          "-c", a["-c"], "--pipeline", a["--pipeline"], "--size",
                                          a["--size"], "-d", str(self.o.duration), "--warmup",
                                          str(self.o.warmup)])
                res = self.machine.measure(
                    lambda: run_json(fc, self.o.duration + self.o.warmup + 60), [srv.pid])
                rec["runs_fc"].setdefault(key, {})[kind] = res
                self.log_run(rnd, key, kind + "/fc", res)
        return rec

    def log_run(self, rnd, key, kind, res):
        self.log(f"  r{rnd} {key:22} {kind:14} {fmt_rate(res.get('req_per_s'))} req/s"
                 f"  p99 {res.get('latency_us', {}).get('p99', '-')} us"
                 f"  srv {res.get('server_cpu')} cli {res.get('client_cpu')}"
                 f"{'  DISTURBED: ' + res['disturbed'] if res.get('disturbed') else ''}"
                 f"{'  ERROR: ' + res['error'] if 'error' in res else ''}")

    # -- idle connections: fresh servers, so earlier runs' heaps do not hide growth

    def idle_round(self, rnd, kinds):
        out = {"round": rnd, "runs": {}}
        conns = self.o.idle_conns
        for kind in kinds:
            srv = make_server(kind, "tcp", self.o.sockit, self.tmp).start()
            self.extra.append(srv)
            try:
                res = self.machine.measure(lambda: self.sockit_bench(
                    srv.addr, ["--mode", "idle", "-c", str(conns)], duration=2, warmup=1,
                    extra=["--server-pid", str(srv.pid)]), [srv.pid])
            finally:
                srv.stop()
                self.extra.remove(srv)
            out["runs"][kind] = res
            self.log(f"  r{rnd} idle {conns:6} {kind:11} "
                     f"{res.get('server', {}).get('rss_bytes_per_idle_conn', res.get('error'))} B/conn")
            time.sleep(0.5)
        return out

    # -- one-way bulk: each tool's own sender into its own receiver

    def oneway_round(self, rnd):
        out = {"round": rnd, "placement_ns": cacheline(), "runs": {}}
        d, w = self.o.duration, self.o.warmup
        order = ["iperf3", "nc", "socat", "socat_b128k", "sk_bulk"]
        order = order[rnd % len(order):] + order[:rnd % len(order)]
        for tool in order:
            res = self.oneway(tool, d, w)
            out["runs"][tool] = res
            self.log(f"  r{rnd} one-way {tool:12} {res.get('gb_per_s', res.get('error'))} GB/s"
                     f"{'  DISTURBED: ' + res['disturbed'] if res.get('disturbed') else ''}")
        return out

    def oneway(self, tool, d, w):
        port = free_port()
        if tool == "iperf3":
            srv = Server("iperf3", ["iperf3", "-s", "-1", "-p", str(port), "-B", "127.0.0.1",
                                    "--forceflush"],
                         r"Server listening()").start()
        elif tool == "nc":
            srv = Server("nc", ["sh", "-c", f"echo ready; exec nc -d -l 127.0.0.1 {port} > /dev/null"],
                         r"ready()").start()
            wait_listen(port)
        elif tool.startswith("socat"):
            b = ["-b", "131072"] if tool == "socat_b128k" else []
            srv = Server("socat", ["sh", "-c", "echo ready; exec socat " + " ".join(b) +
                                   f" -u TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr OPEN:/dev/null"],
                         r"ready()").start()
            wait_listen(port)
        else:
            srv = make_server("sk_bulk", "tcp", self.o.sockit, self.tmp).start()
        self.extra.append(srv)
        try:
            if tool == "iperf3":
                time.sleep(0.2)

                def fn():
                    r = run_json(pinned(CLIENT_CORE, ["iperf3", "-c", "127.0.0.1", "-p", str(port),
                                                      "-t", str(d), "-O", str(w), "-J"]), d + w + 30)
                    return r
                res = self.machine.measure(fn, [srv.pid])
                if "end" in res:
                    bps = res["end"]["sum_received"]["bits_per_second"]
                    res = {k: v for k, v in res.items() if k not in ("start", "intervals", "end")}
                    res["gb_per_s"] = round(bps / 8 / 1e9, 3)
            elif tool == "sk_bulk":
                res = self.machine.measure(lambda: run_json(pinned(CLIENT_CORE, [
                    os.path.join(BENCH_BIN, "sk_bulk"), "send", srv.addr, "-d", str(d),
                    "--warmup", str(w)]), d + w + 30), [srv.pid])
                if "gb_per_s" in res:
                    res["gb_per_s"] = round(res["gb_per_s"], 3)
            else:
                # nc and socat send /dev/zero until killed; bytes are counted
                # at the receiver (/proc/PID/io rchar: both use read()).
                if tool == "nc":
                    sender = ["nc", "-N", "127.0.0.1", str(port)]
                else:
                    b = ["-b", "131072"] if tool == "socat_b128k" else []
                    sender = ["socat"] + b + ["-u", "-", f"TCP:127.0.0.1:{port}"]

                def fn():
                    zero = open("/dev/zero", "rb")
                    p = subprocess.Popen(pinned(CLIENT_CORE, sender), stdin=zero,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(w)
                    r0, t0 = proc_rchar(srv.pid), time.monotonic()
                    time.sleep(d)
                    r1, t1 = proc_rchar(srv.pid), time.monotonic()
                    p.kill()
                    p.wait()
                    zero.close()
                    return {"bytes": r1 - r0, "seconds": round(t1 - t0, 3),
                            "gb_per_s": round((r1 - r0) / (t1 - t0) / 1e9, 3)}
                res = self.machine.measure(fn, [srv.pid])
        finally:
            srv.stop()
            self.extra.remove(srv)
        return res

    # -- syscalls per request: an untraced count (LD_PRELOAD shim) and strace -c

    def syscalls(self, kinds, transport="tcp", args=("-c", "100", "--pipeline", "16", "--size", "64")):
        """For each server: a fresh instance under the syscount.so shim in a
        normal timed run (counts every socket/epoll call, no slowdown), then
        strace -c -f on the shared instance for a 2 s run (what the issue
        asks for; strace slows the server ~10×, so batches grow and the
        counts per request fall: compare servers within one method)."""
        out = {}
        for kind in kinds:
            name = f"{transport} {kind}"
            row = out[name] = {}
            # untraced
            cnt = os.path.join(self.tmp, f"syscount-{kind}.cnt")
            base = make_server(kind, transport, self.o.sockit, self.tmp)
            base.env = {"LD_PRELOAD": os.path.join(BENCH_BIN, "syscount.so"), "SYSCOUNT_FILE": cnt}
            base.start()
            self.extra.append(base)
            try:
                c0 = read_syscount(cnt)
                res = self.machine.measure(lambda: self.sockit_bench(
                    bench_addr(base, transport), list(args), duration=self.o.duration, warmup=0),
                    [base.pid])
                c1 = read_syscount(cnt)
            finally:
                base.stop()
                self.extra.remove(base)
            calls = {k: c1[k] - c0.get(k, 0) for k in c1 if c1[k] - c0.get(k, 0) > 0}
            reqs = res.get("requests", 0)
            row["untraced"] = {"requests": reqs, "req_per_s": res.get("req_per_s"),
                               "disturbed": res.get("disturbed", ""), "calls": calls,
                               "total": sum(calls.values()),
                               "per_request": round(sum(calls.values()) / reqs, 4) if reqs else None}
            # strace -c
            srv = self.server(kind, transport)
            log = os.path.join(self.tmp, f"strace-{kind}.txt")
            st = subprocess.Popen(["strace", "-c", "-f", "-o", log, "-p", str(srv.pid)],
                                  stderr=subprocess.PIPE, start_new_session=True)
            st.stderr.readline()  # "Process N attached": tracing has begun
            time.sleep(0.3)
            res = self.sockit_bench(bench_addr(srv, transport), list(args), duration=2, warmup=0)
            st.send_signal(signal.SIGINT)
            st.wait(timeout=30)
            calls = parse_strace(log)
            reqs = res.get("requests", 0)
            row["strace"] = {"requests": reqs, "req_per_s": res.get("req_per_s"), "calls": calls,
                             "total": sum(calls.values()),
                             "per_request": round(sum(calls.values()) / reqs, 4) if reqs else None}
            self.log(f"  syscalls {name:18} untraced {row['untraced']['per_request']} per request "
                     f"({row['untraced']['requests']} requests), strace {row['strace']['per_request']} "
                     f"({reqs} requests)")
        return out

    # -- callgrind: user-space instructions per request

    def callgrind(self):
        """Each server under callgrind (instrumentation switched on only for the
        measured run), driven by `sockit bench` for 3 s; Ir per request. The
        server is ~50× slower under valgrind, so batches are larger than
        in the timed runs: compare servers within one load, not with the
        timed figures."""
        out = {}
        loads = [("TCP 100 × 1, 64 B", "tcp", ["-c", "100", "--pipeline", "1"], ("sockit", "epoll_echo", "uv_frame")),
                 ("TCP 100 × 16, 64 B", "tcp", ["-c", "100", "--pipeline", "16"], ("sockit", "epoll_echo", "uv_frame")),
                 ("TCP 1000 × 16, 64 B", "tcp", ["-c", "1000", "--pipeline", "16"], ("sockit", "epoll_echo", "uv_frame")),
                 ("TCP 100 × 16, 4096 B", "tcp", ["-c", "100", "--pipeline", "16", "--size", "4096"],
                  ("sockit", "epoll_echo", "uv_frame")),
                 ("UDP 32 × 4, 64 B", "udp", ["--mode", "udp", "-c", "32", "--pipeline", "4"],
                  ("sockit", "udp_echo"))]
        for lname, transport, args, kinds in loads:
            for kind in kinds:
                cg = os.path.join(self.tmp, f"callgrind-{len(out)}.out")
                base = make_server(kind, transport, self.o.sockit, self.tmp)
                srv = Server(kind, ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                    f"--callgrind-out-file={cg}"] + base.argv, LISTEN_RE).start(60)
                self.extra.append(srv)
                try:
                    subprocess.run(["callgrind_control", "-i", "on", str(srv.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
                    res = self.sockit_bench(bench_addr(srv, transport), args, duration=3, warmup=0)
                    subprocess.run(["callgrind_control", "-i", "off", str(srv.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
                finally:
                    srv.stop()
                    self.extra.remove(srv)
                ir, funcs = parse_callgrind(cg)
                reqs = res.get("requests") or 0
                key = f"{lname} | {kind}"
                out[key] = {"requests": reqs, "ir": ir,
                            "ir_per_request": round(ir / reqs, 1) if reqs else None,
                            "top": [(f, round(n / reqs, 1) if reqs else None) for f, n in funcs[:15]]}
                self.log(f"  callgrind {key:40} {out[key]['ir_per_request']} Ir/request ({reqs} requests)")
        return out


SYSCOUNT_NAMES = ["read", "write", "readv", "writev", "recv", "recvfrom", "recvmsg", "recvmmsg",
                  "send", "sendto", "sendmsg", "sendmmsg", "epoll_wait", "epoll_pwait", "epoll_ctl",
                  "accept", "accept4", "close", "ioctl"]  # tools/syscount.c's order


def read_syscount(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return {}
    n = min(len(data) // 8, len(SYSCOUNT_NAMES))
    return {SYSCOUNT_NAMES[i]: int.from_bytes(data[8 * i:8 * i + 8], "little") for i in range(n)}


def parse_strace(path):
    calls = {}
    try:
        with open(path) as f:
            for line in f:
                p = line.split()
                # % time, seconds, usecs/call, calls, [errors], syscall
                if len(p) >= 5 and re.match(r"^[\d.]+$", p[0]) and p[-1] != "total":
                    calls[p[-1]] = calls.get(p[-1], 0) + int(p[3])
    except OSError:
        pass
    return calls


def parse_callgrind(path):
    """Total Ir and the functions with the most self Ir (callgrind_annotate)."""
    try:
        txt = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=99.9", path],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=120).stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return 0, []
    total_ir, funcs, in_funcs = 0, [], False
    for line in txt.splitlines():
        m = re.match(r"^\s*([\d,]+)\s.*PROGRAM TOTALS", line)
        if m:
            total_ir = int(m.group(1).replace(",", ""))
            continue
        if "file:function" in line:
            in_funcs = True
            continue
        if not in_funcs or line.startswith("--"):
            continue
        m = re.match(r"^\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?(\S.*)$", line)
        if m:
            name = re.sub(r"\s+\[[^\]]*\]$", "", m.group(2).strip())  # drop the [object] suffix
            funcs.append((name, int(m.group(1).replace(",", ""))))
    return total_ir, funcs


# --------------------------------------------------------------- report


def fmt_rate(x):
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def clean(runs):
    """(runs used, disturbed runs left out, whether only disturbed ones were
    left): the undisturbed error-free runs, or all error-free ones, flagged,
    when no run was clean."""
    ok = [r for r in runs if r and "error" not in r]
    good = [r for r in ok if not r.get("disturbed")]
    if good:
        return good, len(ok) - len(good), False
    return ok, 0, bool(ok)


def summarize(results, wls, runs_key="runs"):
    """Per workload and server: median, min, max req/s, median p99, CPU;
    per workload: median of per-round ratios sockit / each reference, and
    the target's ratio (sockit / the best of its references, per round)."""
    summary = {}
    for key, label, transport, args, servers, target in wls:
        rows = [r.get(runs_key, {}).get(key, {}) for r in results["rounds"]]
        if not any(rows):
            continue
        servers = [k for k in servers if any(k in row for row in rows)]
        per = {}
        for kind in servers:
            good, dropped, all_disturbed = clean([row.get(kind) for row in rows])
            rates = [r["req_per_s"] for r in good if r.get("req_per_s")]
            if not rates:
                continue
            lat = [r["latency_us"] for r in good if "latency_us" in r]
            per[kind] = {
                "median": statistics.median(rates), "min": min(rates), "max": max(rates),
                "p99": statistics.median(x["p99"] for x in lat) if lat else None,
                "p50": statistics.median(x["p50"] for x in lat) if lat else None,
                "server_cpu": statistics.median(r.get("server_cpu") or 0 for r in good),
                "client_cpu": statistics.median(r.get("client_cpu") or 0 for r in good),
                "client_user": statistics.median(r.get("client_user") or 0 for r in good),
                # page faults per request (server), over the whole run incl. warm-up
                "faults": statistics.median(r.get("server_minflt", 0) / (r["req_per_s"] * r["elapsed_s"])
                                            for r in good if r.get("req_per_s")),
                "n": len(good), "dropped_disturbed": dropped, "all_disturbed": all_disturbed,
            }

        def usable(x):
            return x and "error" not in x and x.get("req_per_s") and not x.get("disturbed")

        sk = servers[0] if servers else None
        ratios = {}
        for kind in servers[1:]:
            rs = [row[sk]["req_per_s"] / row[kind]["req_per_s"] for row in rows
                  if usable(row.get(sk)) and usable(row.get(kind))]
            if rs:
                ratios[kind] = {"median": statistics.median(rs), "min": min(rs), "max": max(rs),
                                "n": len(rs)}
        verdict = None
        if target and sk:
            _, refs, factor = target
            refs = [k for k in refs if k in servers]
            rs = [row[sk]["req_per_s"] / max(row[k]["req_per_s"] for k in refs) for row in rows
                  if refs and usable(row.get(sk)) and all(usable(row.get(k)) for k in refs)]
            if rs:
                p99s = [per[k]["p99"] for k in refs if k in per and per[k]["p99"] is not None]
                verdict = {"refs": refs, "factor": factor, "ratio": statistics.median(rs),
                           "min": min(rs), "max": max(rs), "n": len(rs),
                           "met": statistics.median(rs) >= factor,
                           "p99_sockit": per.get(sk, {}).get("p99"),
                           "p99_ref": min(p99s) if p99s else None}
        summary[key] = {"label": label, "servers": per, "ratios": ratios, "target": verdict}
    return summary


def print_throughput(p, s, title):
    p(f"\n## {title}\n")
    for key, v in s.items():
        p(f"### {v['label']}  (`{key}`)\n")
        p("| server | req/s median | spread (min–max) | p99 µs | server CPU | ≈ server CPU µs/req "
          "| ≈ server page faults/req | client CPU | rounds | sockit ÷ this, median [min–max] |")
        p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for kind, x in v["servers"].items():
            r = v["ratios"].get(kind)
            rt = f"{r['median']:.2f} [{r['min']:.2f}–{r['max']:.2f}]" if r else "—"
            p99 = f"{x['p99']:.0f}" if x["p99"] is not None else "—"
            p(f"| {kind} | {fmt_rate(x['median'])} | {fmt_rate(x['min'])}–{fmt_rate(x['max'])} | "
              f"{p99} | {x['server_cpu']:.0%} | {x['server_cpu'] / x['median'] * 1e6:.2f} | "
              f"{x['faults']:.3f} | "
              f"{x['client_cpu']:.0%} | {x['n']}"
              f"{' (+' + str(x['dropped_disturbed']) + ' disturbed, left out)' if x['dropped_disturbed'] else ''}"
              f"{' (all disturbed)' if x['all_disturbed'] else ''}"
              f" | {rt} |")
        p("")


def print_compact(p, s, sf):
    """The RESULTS.md view: one row per workload, one column per server."""
    cols = ["sockit", "sockit_raw", "epoll_echo", "uv_echo", "uv_frame", "ev_frame", "redis", "udp_echo"]

    def matrix(summary, title, cell):
        used = [c for c in cols if any(c in v["servers"] for v in summary.values())]
        p(f"\n#### {title}\n")
        p("| workload | " + " | ".join(used) + " |")
        p("| --- |" + " ---: |" * len(used))
        for key, v in summary.items():
            p(f"| {v['label']} | " + " | ".join(cell(v, c) for c in used) + " |")

    def rate(v, c):
        x = v["servers"].get(c)
        if not x:
            return ""
        flag = " ‡" if x["all_disturbed"] else ""
        return f"{fmt_rate(x['median'])} ({fmt_rate(x['min'])}–{fmt_rate(x['max'])}){flag}"

    def ratio(v, c):
        r = v["ratios"].get(c)
        return f"{r['median']:.2f} [{r['min']:.2f}–{r['max']:.2f}]" if r else ""

    def p99(v, c):
        x = v["servers"].get(c)
        return f"{x['p99']:.0f}" if x and x["p99"] is not None else ""

    def cpu(v, c):
        x = v["servers"].get(c)
        return f"{x['server_cpu'] / x['median'] * 1e6:.2f}" if x else ""

    matrix(s, "req/s with `sockit bench`: median (min–max) over clean rounds", rate)
    matrix(s, "sockit ÷ each server with `sockit bench`: median [min–max] of per-round ratios", ratio)
    matrix(s, "p99 latency, µs (`sockit bench`), median over clean rounds", p99)
    if sf:
        matrix(sf, "req/s with frame_client: median (min–max) over clean rounds", rate)
        matrix(sf, "sockit ÷ each server with frame_client: median [min–max] of per-round ratios", ratio)
        matrix(sf, "server CPU µs per request with frame_client (≈ server CPU share ÷ req/s)", cpu)


def print_report(results, wls, out=sys.stdout):
    s = summarize(results, wls)
    sf = summarize(results, wls, "runs_fc")
    results["summary"], results["summary_fc"] = s, sf
    p = lambda *a: print(*a, file=out)  # noqa: E731
    m = results.get("machine", {})
    p(f"machine: {m.get('nproc')} × {m.get('cpu')}, kernel {m.get('kernel')}; sockit {m.get('sockit')}")
    p("\n## Compact tables (‡: every round of this cell was disturbed)")
    print_compact(p, s, sf)
    print_throughput(p, s, "Throughput with `sockit bench` (req/s median [min–max] of clean rounds)")
    if sf:
        print_throughput(p, sf, "Throughput with frame_client, the minimal generator (same servers, same rounds)")
    p("## Targets (ratios are medians of per-round ratios; the best reference is taken per round)\n")
    p("| workload | target | sockit ÷ ref, `sockit bench` | p99 sockit / ref µs | verdict | sockit ÷ ref, frame_client |")
    p("| --- | --- | ---: | ---: | --- | ---: |")
    for key, v in s.items():
        t = v["target"]
        if not t:
            continue
        tf = sf.get(key, {}).get("target")
        fc = f"{tf['ratio']:.2f} [{tf['min']:.2f}–{tf['max']:.2f}]" if tf else "—"
        p99 = (f"{t['p99_sockit']:.0f} / {t['p99_ref']:.0f}"
               if t["p99_sockit"] is not None and t["p99_ref"] is not None else "—")
        verdict = "met" if t["met"] else "MISSED"
        if t["min"] < t["factor"] <= t["max"]:
            verdict += " (spread straddles)"
        if t["p99_sockit"] and t["p99_ref"] and t["p99_sockit"] > t["p99_ref"]:
            verdict += "; p99 over"
        p(f"| {v['label']} | ≥ {t['factor']:.1f}× {' / '.join(t['refs'])} | {t['ratio']:.2f} "
          f"[{t['min']:.2f}–{t['max']:.2f}] | {p99} | {verdict} | {fc} |")
    if sf:
        p("\n## Generator check: medians, same servers, same rounds\n")
        p("| workload | server | `sockit bench` req/s (client CPU, user) | frame_client req/s (client CPU, user) | frame_client ÷ sockit bench |")
        p("| --- | --- | ---: | ---: | ---: |")
        for key, v in sf.items():
            for kind, x in v["servers"].items():
                y = s.get(key, {}).get("servers", {}).get(kind)
                if not y:
                    continue
                p(f"| {key} | {kind} | {fmt_rate(y['median'])} ({y['client_cpu']:.0%}, {y['client_user']:.0%}) | "
                  f"{fmt_rate(x['median'])} ({x['client_cpu']:.0%}, {x['client_user']:.0%}) | "
                  f"{x['median'] / y['median']:.2f} |")
    if results["idle"]:
        p("\n## RSS per idle connection (10,000 held; fresh server each time)\n")
        p("| server | bytes/conn median | spread | rounds |")
        p("| --- | ---: | ---: | ---: |")
        for k in results["idle"][0]["runs"]:
            v = [r["runs"].get(k, {}).get("server", {}).get("rss_bytes_per_idle_conn") for r in results["idle"]]
            v = [x for x in v if x is not None]
            if v:
                p(f"| {k} | {statistics.median(v):.0f} | {min(v):.0f}–{max(v):.0f} | {len(v)} |")
    if results["bulk_oneway"]:
        p("\n## Bulk, one stream, one way (GB/s; each tool's own sender and receiver)\n")
        p("| tool | GB/s median | spread | ÷ iperf3, median of per-round ratios |")
        p("| --- | ---: | ---: | ---: |")
        order = ["iperf3", "sk_bulk", "nc", "socat", "socat_b128k"]
        for t in order:
            runs = [r["runs"].get(t, {}) for r in results["bulk_oneway"]]
            v = [x["gb_per_s"] for x in runs if x.get("gb_per_s") and not x.get("disturbed")]
            rt = [r["runs"][t]["gb_per_s"] / r["runs"]["iperf3"]["gb_per_s"] for r in results["bulk_oneway"]
                  if r["runs"].get(t, {}).get("gb_per_s") and r["runs"].get("iperf3", {}).get("gb_per_s")
                  and not r["runs"][t].get("disturbed") and not r["runs"]["iperf3"].get("disturbed")]
            if v:
                p(f"| {t} | {statistics.median(v):.2f} | {min(v):.2f}–{max(v):.2f} | "
                  f"{statistics.median(rt) if rt else float('nan'):.2f} |")
    if results["syscalls"]:
        p("\n## Syscalls per request (TCP 100 × 16 64 B; UDP 32 × 4 64 B)\n")
        p("Untraced: a fresh server under the syscount.so LD_PRELOAD shim in a normal timed run. "
          "strace: `strace -c -f -p PID` for 2 s (the server runs ~10× slower, so batches are larger).\n")
        p("| server | untraced per request | req/s | untraced breakdown (per request) | strace per request | strace breakdown |")
        p("| --- | ---: | ---: | --- | ---: | --- |")
        for k, v in results["syscalls"].items():
            u, t = v.get("untraced", {}), v.get("strace", {})

            def br(x):
                return ", ".join(f"{n} {c / x['requests']:.3f}" for n, c in
                                 sorted(x["calls"].items(), key=lambda y: -y[1])[:5]) if x.get("requests") else ""
            p(f"| {k} | {u.get('per_request')} | {fmt_rate(u.get('req_per_s'))} | {br(u)} | "
              f"{t.get('per_request')} | {br(t)} |")
    if results["callgrind"]:
        p("\n## callgrind: user-space instructions per request (server side)\n")
        p("| load \\| server | Ir per request | requests |")
        p("| --- | ---: | ---: |")
        for k, v in results["callgrind"].items():
            p(f"| {k} | {v['ir_per_request']} | {v['requests']} |")
        for k, v in results["callgrind"].items():
            p(f"\n{k}: top functions (self Ir per request)")
            for f, n in v["top"][:10]:
                p(f"    {n:>8}  {f}")
    placements = [x for r in results["rounds"] for x in r["placement_ns"].values() if x]
    placements += [r.get("placement_ns") for r in results["bulk_oneway"] if r.get("placement_ns")]
    if placements:
        p(f"\nCache-line transfer between cores 0 and 1 (trap 1), sampled before each workload: "
          f"median {statistics.median(placements):.0f} ns, range {min(placements):.0f}–{max(placements):.0f} ns "
          f"over {len(placements)} samples.")
    dist = sum(1 for r in results["rounds"] for rk in ("runs", "runs_fc")
               for row in r.get(rk, {}).values() for x in row.values() if x.get("disturbed"))
    tot = sum(1 for r in results["rounds"] for rk in ("runs", "runs_fc")
              for row in r.get(rk, {}).values() for x in row.values())
    retried = sum(x.get("attempts", 1) - 1 for r in results["rounds"] for rk in ("runs", "runs_fc")
                  for row in r.get(rk, {}).values() for x in row.values())
    p(f"Measurements still disturbed after retries (left out of medians and ratios): {dist} of {tot}; "
      f"disturbed attempts measured again: {retried}.")


def machine_info(sockit):
    info = {"nproc": os.cpu_count(), "kernel": os.uname().release}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    try:
        # The checkout bench/ lives in; the binary measured may be another
        # build (--sockit): RESULTS.md names which.
        info["repo_head"] = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
                                           ).stdout.decode().strip()
    except OSError:
        pass
    info["sockit"] = sockit
    for name, argv in (("redis", ["redis-server", "--version"]), ("iperf3", ["iperf3", "--version"]),
                       ("libuv", ["pkg-config", "--modversion", "libuv"]),
                       ("libevent", ["pkg-config", "--modversion", "libevent"])):
        try:
            info[name] = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
                                        ).stdout.decode().splitlines()[0].strip()
        except (OSError, IndexError):
            pass
    return info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sockit", default=os.path.join(ROOT, "build", "sockit"))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-d", "--duration", type=float, default=3.0, help="measured seconds per run")
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true", help="1 round, 1 s runs, fewer extras")
    ap.add_argument("--only", help="regex on workload keys (tcp-100x16-64, unix-..., udp-..., "
                    "tcp-connect-64, tcp-bulk-...); extras run only with their names: idle, oneway, "
                    "syscalls")
    ap.add_argument("--idle-conns", type=int, default=10000)
    ap.add_argument("--no-frame-client", dest="frame_client", action="store_false",
                    help="skip the second sweep of frame workloads with frame_client")
    ap.add_argument("--profile", action="store_true", help="also callgrind (slow, ~2 min)")
    ap.add_argument("--json", help="write raw results here")
    ap.add_argument("--report", metavar="JSON", help="print the report of a saved --json run and exit")
    o = ap.parse_args()
    if o.report:
        with open(o.report) as f:
            saved = json.load(f)
        print_report(saved, [w for w in workloads() if not o.only or re.search(o.only, w[0])])
        return
    if o.quick:
        o.rounds, o.duration, o.warmup = 1, 1.0, 0.5
    o.sockit = os.path.abspath(o.sockit)
    for need in [o.sockit] + [os.path.join(BENCH_BIN, b) for b in
                              ("epoll_echo", "uv_echo", "uv_frame", "ev_frame", "udp_echo",
                               "cacheline", "frame_client", "sk_bulk", "syscount.so")]:
        if not os.access(need, os.X_OK):
            sys.exit(f"compare.py: {need} is missing: run `make` and `make -C bench` first")
    if NCPU < 2:
        sys.exit("compare.py: needs two cores (server on core 0, load on core 1)")
    raise_nofile()
    # SIGTERM ends the run like Ctrl-C: servers stopped, partial results kept.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    wls = [w for w in workloads() if not o.only or re.search(o.only, w[0])]
    extra = lambda name: not o.only or re.search(o.only, name)  # noqa: E731
    r = Runner(o)
    r.results["machine"] = machine_info(o.sockit)
    r.results["options"] = vars(o)
    r.log(f"machine: {r.results['machine']}")
    try:
        for rnd in range(o.rounds):
            r.log(f"round {rnd + 1}/{o.rounds}")
            if wls:
                r.results["rounds"].append(r.throughput_round(rnd, wls))
            if extra("idle"):
                r.results["idle"].append(r.idle_round(rnd, ["sockit"] + TCP_REFS + ["redis"]))
            if extra("oneway"):
                r.results["bulk_oneway"].append(r.oneway_round(rnd))
        if extra("syscalls"):
            r.results["syscalls"] = r.syscalls(["sockit", "uv_frame", "epoll_echo"])
            r.results["syscalls"].update(r.syscalls(["sockit", "udp_echo"], "udp",
                                                    ("--mode", "udp", "-c", "32", "--pipeline", "4")))
        if o.profile:
            r.results["callgrind"] = r.callgrind()
    except KeyboardInterrupt:
        r.log("interrupted: reporting what was measured")
    finally:
        r.stop_all()
    if o.json:
        with open(o.json, "w") as f:
            json.dump(r.results, f, indent=1)
        r.log(f"raw results in {o.json}")
    print_report(r.results, wls)
    if o.json:  # again, with the summary the report computed
        with open(o.json, "w") as f:
            json.dump(r.results, f, indent=1)


if __name__ == "__main__":
    main()
