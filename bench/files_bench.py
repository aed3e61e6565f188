#!/usr/bin/env python3
"""files_bench.py — bulk file transfer over loopback: `sockit get` and
`sockit put` against a `sockit serve files` server, next to iperf3 (one
stream, memory to memory: the loopback ceiling), nc piping the same file,
and rsync in daemon mode.

    python3 bench/files_bench.py [--build build] [--size 2G] [--rounds 3]
                                 [--tmpfs|--dir DIR] [--json]
    python3 bench/files_bench.py --tree 10000 [--tree-big 3] [--rounds 5]

--tree N compares trees instead: N files of 1-64 KiB in 100 directories
(plus --tree-big files of --size bytes), `sockit put -r` against `rsync -a`
to an rsync daemon, paired and interleaved: per round each makes a fresh
copy (first copy), then runs again with nothing changed (re-run); the
table gives the median wall seconds of each and sockit's ratio to rsync.

Every contender moves the same file of --size random bytes between two
directories on one file system (by default a tmpfs mounted for the run, so
the disk does not decide; --dir DIR uses DIR instead). Servers run pinned to
CPU 0, clients to CPU 1 (taskset). Each round runs every mode once, in
turn (paired and interleaved, per BENCHMARKING.md: this VM's two cores
drift, so only figures of one round are compared); the table gives each
mode's median GB/s (10^9 bytes per second of wall time, client start to
the file complete on the receiving side), its ratio to iperf3 in the same
round (median over rounds), and the CPU seconds of the server and the
client (user + system, children included).

What each one does per byte is not the same, and the table says so:
sockit checks SHA-256 end to end (both sides hash every byte: a single
SHA-256 stream is bounded by one core, printed as "sha256 ceiling") and
fsyncs before it renames; rsync checks a hash of the whole file (xxh128,
which rsync 3.2+ negotiates by default: far cheaper than SHA-256, and not
a cryptographic hash); nc and iperf3 check nothing.

Every mode writes into memory freed just before it (--cold: no such step).
This guest hands memory that stays free for ~2 s back to the host (virtio
balloon free-page reporting); the next write to it takes a host fault per
page, which made writing a new GiB on tmpfs cost 0.4 s of system time
hot and 0.5-1.7 s cold. Without the step, whichever mode ran after one
that wrote nothing (sockit get, after iperf3) paid that alone, while the
others reused the pages the previous mode had just freed.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SERVER_CPU, CLIENT_CPU = "0", "1"


def parse_size(text):
    mul = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * mul[text[-1]] if text[-1] in mul else int(text)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def listening(port):
    """True once something listens on 127.0.0.1:port (read from
    /proc/net/tcp, so that no probe connection uses up a one-shot server)."""
    want = ":%04X" % port
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1].endswith(want) and parts[3] == "0A":
                    return True
    return False


def wait_listening(port, proc, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("server on port %d did not start" % port)
        time.sleep(0.005)


def cpu_of(pid):
    """utime + stime + cutime + cstime of a live process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def run_timed(argv, **kw):
    """Runs argv to the end; returns (wall seconds, CPU seconds, status)."""
    t0 = time.monotonic()
    p = subprocess.Popen(argv, **kw)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return time.monotonic() - t0, ru.ru_utime + ru.ru_stime, p.returncode


def pinned(cpu, argv):
    return ["taskset", "-c", cpu] + argv


class Bench:
    def __init__(self, args, work):
        self.args = args
        self.size = args.size
        self.sockit = os.path.join(ROOT, args.build, "sockit")
        self.work = work
        self.src_dir = os.path.join(work, "src")
        self.dst_dir = os.path.join(work, "dst")
        os.makedirs(self.src_dir)
        os.makedirs(self.dst_dir)
        self.src = os.path.join(self.src_dir, "big.bin")
        with open(self.src, "wb") as f:
            left = self.size
            while left:
                n = min(left, 64 << 20)
                f.write(os.urandom(n))
                left -= n
        self.servers = []

    def clean_dst(self):
        for name in os.listdir(self.dst_dir):
            os.unlink(os.path.join(self.dst_dir, name))

    def warm(self):
        """Writes and removes a file of --size bytes, so that the mode that
        follows writes into pages freed a moment ago, not into pages the
        host has taken back (see the module's note)."""
        tmp = os.path.join(self.dst_dir, "warm.bin")
        shutil.copyfile(self.src, tmp)
        os.unlink(tmp)

    def check(self, path):
        got = os.path.getsize(path) if os.path.exists(path) else -1
        if got != self.size:
            raise RuntimeError("%s has %d bytes, not %d" % (path, got, self.size))

    # -- long-lived servers
    def start(self, argv, port):
        p = subprocess.Popen(pinned(SERVER_CPU, argv), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(port, p)
        self.servers.append(p)
        return p

    def stop_all(self):
        for p in self.servers:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    def setup(self):
        self.files_port = free_port()
        self.files_srv = self.start([self.sockit, "serve", "files", "127.0.0.1:%d" % self.files_port,
                                     "--root", self.work, "--no-auth", "--quiet", "--log-level",
                                     "error"],
                                    self.files_port)
        self.rsync = shutil.which("rsync")
        if self.rsync:
            conf = os.path.join(self.work, "rsyncd.conf")
            with open(conf, "w") as f:
                # bound to loopback IPv4 itself: left to pick, rsyncd has been
                # seen to listen on [::] only, refusing 127.0.0.1
                f.write("address = 127.0.0.1\nuse chroot = no\nuid = 0\ngid = 0\n[m]\n"
                        "path = %s\nread only = no\n" % self.work)
            self.rsync_port = free_port()
            self.rsync_srv = self.start([self.rsync, "--daemon", "--no-detach", "--port",
                                         str(self.rsync_port), "--config", conf],
                                        self.rsync_port)

    # -- the modes: each returns (seconds, server CPU, client CPU)
    def iperf3(self):
        port = free_port()
        srv = subprocess.Popen(pinned(SERVER_CPU, ["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port)]),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_listening(port, srv)
        out = subprocess.run(pinned(CLIENT_CPU, ["iperf3", "-c", "127.0.0.1", "-p", str(port),
                                                 "-n", str(self.size), "-J"]),
                             stdout=subprocess.PIPE, check=True).stdout
        _, status, ru = os.wait4(srv.pid, 0)
        r = json.loads(out)
        secs = r["end"]["sum_received"]["seconds"]
        cpu = r["end"]["cpu_utilization_percent"]
        return secs, cpu["remote_total"] * secs / 100.0, cpu["host_total"] * secs / 100.0

    def nc_down(self):
        port = free_port()
        dst = os.path.join(self.dst_dir, "nc.bin")
        with open(self.src, "rb") as fin:
            srv = subprocess.Popen(pinned(SERVER_CPU, ["nc", "-N", "-l", "127.0.0.1", str(port)]),
                                   stdin=fin, stdout=subprocess.DEVNULL)
        wait_listening(port, srv)
        with open(dst, "wb") as fout:
            secs, ccpu, rc = run_timed(pinned(CLIENT_CPU, ["nc", "-d", "127.0.0.1", str(port)]),
                                       stdout=fout)
        _, _, ru = os.wait4(srv.pid, 0)
        self.check(dst)
        return secs, ru.ru_utime + ru.ru_stime, ccpu

    def nc_up(self):
        port = free_port()
        dst = os.path.join(self.dst_dir, "nc.bin")
        with open(dst, "wb") as fout:
            srv = subprocess.Popen(pinned(SERVER_CPU, ["nc", "-l", "127.0.0.1", str(port)]),
                                   stdin=subprocess.DEVNULL, stdout=fout)
        wait_listening(port, srv)
        t0 = time.monotonic()
        with open(self.src, "rb") as fin:
            _, ccpu, rc = run_timed(pinned(CLIENT_CPU, ["nc", "-N", "127.0.0.1", str(port)]),
                                    stdin=fin)
        _, _, ru = os.wait4(srv.pid, 0)
        secs = time.monotonic() - t0
        self.check(dst)
        return secs, ru.ru_utime + ru.ru_stime, ccpu

    def rsync_down(self):
        dst = os.path.join(self.dst_dir, "rs.bin")
        before = cpu_of(self.rsync_srv.pid)
        secs, ccpu, rc = run_timed(pinned(CLIENT_CPU, [self.rsync, "-W", "rsync://127.0.0.1:%d/m/src/big.bin"
                                                       % self.rsync_port, dst]))
        self.check(dst)
        return secs, cpu_of(self.rsync_srv.pid) - before, ccpu

    def rsync_up(self):
        before = cpu_of(self.rsync_srv.pid)
        secs, ccpu, rc = run_timed(pinned(CLIENT_CPU, [self.rsync, "-W", self.src,
                                                       "rsync://127.0.0.1:%d/m/dst/rs.bin"
                                                       % self.rsync_port]))
        # The daemon's child finishes writing (and renames) after the client
        # exits: up to seconds on a busy machine.
        dst = os.path.join(self.dst_dir, "rs.bin")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (not os.path.exists(dst) or
                                               os.path.getsize(dst) != self.size):
            time.sleep(0.01)
        self.check(dst)
        return secs, cpu_of(self.rsync_srv.pid) - before, ccpu

    def sockit_get(self):
        dst = os.path.join(self.dst_dir, "sk.bin")
        before = cpu_of(self.files_srv.pid)
        secs, ccpu, rc = run_timed(pinned(CLIENT_CPU, [self.sockit, "get", "127.0.0.1:%d"
                                                       % self.files_port, "src/big.bin", dst,
                                                       "--quiet"]))
        if rc != 0:
            raise RuntimeError("sockit get failed")
        self.check(dst)
        return secs, cpu_of(self.files_srv.pid) - before, ccpu

    def sockit_put(self):
        before = cpu_of(self.files_srv.pid)
        secs, ccpu, rc = run_timed(pinned(CLIENT_CPU, [self.sockit, "put", "127.0.0.1:%d"
                                                       % self.files_port, self.src, "dst/sk.bin",
                                                       "--quiet"]))
        if rc != 0:
            raise RuntimeError("sockit put failed")
        self.check(os.path.join(self.dst_dir, "sk.bin"))
        return secs, cpu_of(self.files_srv.pid) - before, ccpu

    def modes(self):
        m = [("iperf3", self.iperf3), ("sockit-get", self.sockit_get), ("nc-down", self.nc_down)]
        if self.rsync:
            m.append(("rsync-down", self.rsync_down))
        m += [("sockit-put", self.sockit_put), ("nc-up", self.nc_up)]
        if self.rsync:
            m.append(("rsync-up", self.rsync_up))
        return m


def make_tree(top, n, big, size):
    """n small files (1-64 KiB, in 100 directories) and big files of size."""
    rnd = os.urandom(64 << 10)
    for i in range(n):
        d = os.path.join(top, "d%02d" % (i % 100))
        os.makedirs(d, exist_ok=True)
        k = 1024 + (i * 7919) % (63 << 10)
        with open(os.path.join(d, "f%05d" % i), "wb") as f:
            f.write(rnd[:k])
    for i in range(big):
        with open(os.path.join(top, "big%d.bin" % i), "wb") as f:
            left = size
            while left:
                m = min(left, 64 << 20)
                f.write(os.urandom(m))
                left -= m


def run_tree(args, work):
    """--tree: sockit put -r against rsync -a, first copy and re-run."""
    rsync = shutil.which("rsync")
    if rsync is None:
        sys.exit("files_bench: rsync is missing (make -C bench deps)")
    b = Bench.__new__(Bench)
    b.args, b.work, b.servers = args, work, []
    b.sockit = os.path.join(ROOT, args.build, "sockit")
    src = os.path.join(work, "tree")
    make_tree(src, args.tree, args.tree_big, args.size)
    os.makedirs(os.path.join(work, "dst"))
    b.setup()
    addr = "127.0.0.1:%d" % b.files_port
    res = {}

    def timed(argv):
        t0 = time.monotonic()
        subprocess.run(pinned(CLIENT_CPU, argv), check=True, stdout=subprocess.DEVNULL)
        return time.monotonic() - t0

    def sk():
        return [b.sockit, "put", "-r", addr, src, "dst/sk", "--quiet"]

    def rs():
        return [rsync, "-a", src + "/", "rsync://127.0.0.1:%d/m/dst/rs/" % b.rsync_port]

    try:
        for r in range(args.rounds):
            for name, argv in (("sockit", sk), ("rsync", rs)) if r % 2 == 0 else \
                    (("rsync", rs), ("sockit", sk)):
                shutil.rmtree(os.path.join(work, "dst", "sk" if name == "sockit" else "rs"),
                              ignore_errors=True)
                first = timed(argv())
                again = timed(argv())
                res.setdefault(name, []).append((first, again))
                print("round %d  %-6s first copy %6.2f s  re-run %6.2f s" % (r + 1, name, first,
                                                                             again),
                      file=sys.stderr)
            d = subprocess.run(["diff", "-r", src, os.path.join(work, "dst", "sk")])
            if d.returncode != 0:
                raise RuntimeError("the sockit copy differs")
    finally:
        b.stop_all()
    sk_first = median([x[0] for x in res["sockit"]])
    rs_first = median([x[0] for x in res["rsync"]])
    sk_again = median([x[1] for x in res["sockit"]])
    rs_again = median([x[1] for x in res["rsync"]])
    print("| %d files (+%d of %d MiB), %d rounds | sockit put -r | rsync -a | sockit / rsync |"
          % (args.tree, args.tree_big, args.size >> 20, args.rounds))
    print("| --- | ---: | ---: | ---: |")
    print("| first copy, s | %.2f | %.2f | %.2f |" % (sk_first, rs_first, sk_first / rs_first))
    print("| re-run, nothing changed, s | %.2f | %.2f | %.2f |" % (sk_again, rs_again,
                                                                 sk_again / rs_again))


def sha256_ceiling():
    import hashlib
    buf = os.urandom(64 << 20)
    t0 = time.monotonic()
    for _ in range(4):
        hashlib.sha256(buf).digest()
    return 4 * len(buf) / (time.monotonic() - t0) / 1e9


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--size", type=parse_size, default=2 << 30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", help="work in DIR instead of a tmpfs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--tree", type=int, default=0, help="compare trees of N small files")
    ap.add_argument("--tree-big", type=int, default=0, help="with --tree: big files of --size")
    ap.add_argument("--cold", action="store_true",
                    help="no warm-up write before each mode (see the module's note)")
    args = ap.parse_args()
    for tool in ("taskset", "rsync") if args.tree else ("taskset", "iperf3", "nc"):
        if not shutil.which(tool):
            sys.exit("files_bench: %s is missing (make -C bench deps)" % tool)
    mounted = None
    work = args.dir
    if work is None:
        mounted = tempfile.mkdtemp(prefix="sk-files-bench-")
        need = args.size if not args.tree else args.tree * (64 << 10) + args.tree_big * args.size
        tmpfs = "size=%dM" % (3 * need // (1 << 20) + 256)
        if subprocess.run(["mount", "-t", "tmpfs", "-o", tmpfs, "none", mounted]).returncode:
            sys.exit("files_bench: cannot mount a tmpfs (needs root); use --dir DIR")
        work = os.path.join(mounted, "w")
    else:
        work = tempfile.mkdtemp(prefix="sk-files-bench-", dir=work)
    if args.tree:
        try:
            run_tree(args, work)
        finally:
            if mounted:
                subprocess.run(["umount", mounted])
                os.rmdir(mounted)
            else:
                shutil.rmtree(work, ignore_errors=True)
        return
    b = Bench(args, work)
    results = {}
    try:
        b.setup()
        for r in range(args.rounds):
            base = None
            for name, fn in b.modes():
                b.clean_dst()
                if not args.cold:
                    b.warm()
                secs, scpu, ccpu = fn()
                gbs = args.size / secs / 1e9
                if name == "iperf3":
                    base = gbs
                results.setdefault(name, []).append((gbs, gbs / base, scpu, ccpu))
                print("round %d  %-11s %6.2f GB/s  %4.0f%% of iperf3  cpu server %5.2f s  client %5.2f s"
                      % (r + 1, name, gbs, 100 * gbs / base, scpu, ccpu), file=sys.stderr)
    finally:
        b.stop_all()
        if mounted:
            subprocess.run(["umount", mounted])
            os.rmdir(mounted)
        else:
            shutil.rmtree(work, ignore_errors=True)
    ceiling = sha256_ceiling()
    rows = []
    for name, v in results.items():
        rows.append({"mode": name, "gbps": median([x[0] for x in v]),
                     "range": [min(x[0] for x in v), max(x[0] for x in v)],
                     "of_iperf3": median([x[1] for x in v]),
                     "server_cpu_s": median([x[2] for x in v]),
                     "client_cpu_s": median([x[3] for x in v])})
    if args.json:
        print(json.dumps({"size": args.size, "rounds": args.rounds, "sha256_ceiling_gbps": ceiling,
                          "rows": rows}, indent=2))
        return
    print("| mode | GB/s (range) | of iperf3 | server CPU s | client CPU s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print("| %s | %.2f (%.2f–%.2f) | %.0f %% | %.2f | %.2f |"
              % (row["mode"], row["gbps"], row["range"][0], row["range"][1],
                 100 * row["of_iperf3"], row["server_cpu_s"], row["client_cpu_s"]))
    print("\nsha256 ceiling (one core, hashlib): %.2f GB/s" % ceiling)


if __name__ == "__main__":
    main()
