#!/usr/bin/env python3
"""relay_bench.py — `sockit relay` against HAProxy (TCP mode) and socat
(`TCP-LISTEN:…,fork`), and for TLS termination against HAProxy and stunnel4,
all in front of the same echo target, measured by the same generator
(`sockit bench`, every reply byte verified).

    python3 bench/relay_bench.py [--build build] [--seconds 3] [--rounds 3]
                                 [--idle 1000] [--json] [--baseline DIR] [--plain]
                                 [--quota PCT] [--only WORK]

Cells: bulk over one stream (raw, 256 KiB writes, 8 in flight); 100
connections x 16 pipelined 64-byte frames; new connections per second
(connect, one frame, close; 4 connectors); the same bulk and connection
rate with TLS terminated by the relay (same `sockit cert` EC P-256
certificate for all, TLS 1.3 with OpenSSL's default suite, AES-256-GCM
here); and the relay's resident memory per idle relayed pair (--idle pairs
held, `sockit bench --mode idle --server-pid`).

Placement (/work/shared/BENCHMARKING.md): every relay runs pinned to CPU 0,
one process or thread (HAProxy nbthread 1), the echo target and the
generator on CPU 1. The cells run interleaved, round after round, so each
round compares the contenders under the same conditions; the table shows
each cell's median and range, and the ratio of medians to sockit's row.
--baseline DIR adds DIR/sockit's relay as one more contender of the plain
cells, in the same rounds (a paired before/after of a change); --plain
runs the plain cells only (no TLS, no RSS).
The relay's CPU per unit (µs per request, or per MB counted both ways as
`sockit bench` counts them) is its /proc utime+stime (threads, and reaped
children: socat's forks) over the cell's warm-up and run divided by the
units at the measured rate: steadier than rates on a shared machine, and
what a rate cell cannot show when the generator's core is the limit.
socat forks a process per connection, so it has no RSS-per-pair row.
--quota PCT puts every relay in a CPU cgroup of its own allowed PCT % of
one core (cpu.cfs_quota_us, or cpu.max on cgroup v2; socat's forks
inherit it): the relay is then the bottleneck by construction, and each
rate is the work its share of CPU buys. Without it, on a machine of two
cores the generator's core is often the limit and equal rates say only
that both relays kept up. --only WORK runs the cells whose work name
contains WORK (e.g. "conns").
Packages: haproxy, socat, stunnel4 (Debian; `make -C bench deps`).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def free_ports(names):
    """Distinct free ports: every socket stays bound until all are chosen,
    so the kernel cannot hand out one port twice."""
    socks = []
    for _ in names:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = {n: s.getsockname()[1] for n, s in zip(names, socks)}
    for s in socks:
        s.close()
    return ports


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing listens on port %d" % port)


QUOTA = None  # the Quota every relay (CPU 0) joins, with --quota


def start(cpu, argv, log=None):
    err = open(log, "wb") if log else subprocess.DEVNULL
    pr = subprocess.Popen(["taskset", "-c", str(cpu)] + argv, stdin=subprocess.DEVNULL,
                          stdout=err, stderr=err)
    if cpu == 0 and QUOTA is not None:
        QUOTA.add(pr.pid)  # before it listens: every fork it makes inherits
    return pr


def bench(sockit, addr, extra, seconds):
    argv = ["taskset", "-c", "1", sockit, "bench", addr, "-d", str(seconds), "--warmup", "1",
            "--json", "--quiet"] + extra
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=seconds + 90)
    if cp.returncode != 0:
        raise SystemExit("%s failed: %s" % (" ".join(argv), cp.stderr.decode()[-500:]))
    return json.loads(cp.stdout)


def cpu_seconds(pid):
    """CPU time of a process so far: all its threads, and its children
    once reaped (socat's per-connection forks)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class Quota:
    """A CPU cgroup per relay, each allowed pct % of one core (v1 cpu
    controller or v2 cpu.max); removed at the end."""

    def __init__(self, pct):
        self.pct, self.dirs = pct, []
        v1 = "/sys/fs/cgroup/cpu"
        self.v2 = not os.path.isfile(os.path.join(v1, "cpu.cfs_quota_us"))
        self.root = "/sys/fs/cgroup" if self.v2 else v1
        if self.v2 and not os.path.isfile(os.path.join(self.root, "cgroup.subtree_control")):
            raise SystemExit("--quota: no CPU cgroup controller found under /sys/fs/cgroup")
        if self.v2:
            try:  # the children's cpu.max exists only with the controller enabled
                with open(os.path.join(self.root, "cgroup.subtree_control"), "w") as f:
                    f.write("+cpu")
            except OSError:
                pass  # already on, or not allowed: add() says so if it matters

    def add(self, pid):
        d = os.path.join(self.root, "relay-bench-%d-%d" % (os.getpid(), len(self.dirs)))
        try:
            os.mkdir(d)
            self.dirs.append(d)
            if self.v2:
                with open(os.path.join(d, "cpu.max"), "w") as f:
                    f.write("%d 100000" % (self.pct * 1000))
            else:
                with open(os.path.join(d, "cpu.cfs_period_us"), "w") as f:
                    f.write("100000")
                with open(os.path.join(d, "cpu.cfs_quota_us"), "w") as f:
                    f.write(str(self.pct * 1000))
            with open(os.path.join(d, "cgroup.procs"), "w") as f:
                f.write(str(pid))
        except OSError as e:
            raise SystemExit("--quota: cannot set up a CPU cgroup (%s); run as root" % e)

    def remove(self):
        for d in self.dirs:
            try:
                with open(os.path.join(d, "cgroup.procs")) as f:
                    pids = f.read().split()
                with open(os.path.join(os.path.dirname(d), "cgroup.procs"), "w") as f:
                    for pid in pids:
                        f.write(pid)
                        f.flush()
                os.rmdir(d)
            except OSError:
                pass


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


HAPROXY_CFG = """global
    maxconn 8000
    nbthread 1
defaults
    mode tcp
    timeout connect 10s
    timeout client 5m
    timeout server 5m
frontend plain
    bind 127.0.0.1:{plain}
    default_backend echo
frontend tls
    bind 127.0.0.1:{tls} ssl crt {pem}
    default_backend echo
backend echo
    server e 127.0.0.1:{echo}
"""

STUNNEL_CFG = """foreground = yes
pid =
[relay]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{echo}
cert = {crt}
key = {key}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=int, default=1000, help="pairs held for the RSS cell")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--baseline", help="a build dir whose sockit relay runs beside, plain cells")
    ap.add_argument("--plain", action="store_true", help="plain cells only (no TLS, no RSS)")
    ap.add_argument("--quota", type=int, metavar="PCT",
                    help="limit every relay to PCT %% of one core (a CPU cgroup)")
    ap.add_argument("--only", metavar="WORK", help="the cells whose work name contains WORK")
    args = ap.parse_args()
    sockit = os.path.join(args.build, "sockit")
    for tool in ("taskset", "socat", "haproxy", "stunnel4"):
        if shutil.which(tool) is None:
            raise SystemExit("%s is needed (make -C bench deps)" % tool)
    if args.quota is not None and not 1 <= args.quota <= 100:
        raise SystemExit("--quota takes a percentage of one core, 1 to 100")
    tmp = tempfile.mkdtemp(prefix="relay-bench-")
    procs = []
    global QUOTA
    QUOTA = Quota(args.quota) if args.quota else None
    try:
        subprocess.run([sockit, "cert", os.path.join(tmp, "b")], check=True,
                       stdout=subprocess.DEVNULL)
        crt, key = os.path.join(tmp, "b.crt"), os.path.join(tmp, "b.key")
        pem = os.path.join(tmp, "b.pem")
        with open(pem, "w") as f:
            f.write(open(crt).read() + open(key).read())
        p = free_ports(("echo", "sockit", "sockit_tls", "haproxy", "haproxy_tls", "socat",
                        "stunnel", "baseline"))
        if not args.baseline:
            del p["baseline"]
        echo = "127.0.0.1:%d" % p["echo"]
        procs.append(start(1, [sockit, "serve", "echo", echo, "--quiet"]))
        wait_port(p["echo"])
        pid = {}  # port name -> the relay process serving it (CPU per unit)
        pr = start(0, [sockit, "relay", "127.0.0.1:%d" % p["sockit"], echo, "--quiet"])
        procs.append(pr)
        pid["sockit"] = pr.pid
        if args.baseline:
            procs.append(start(0, [os.path.join(args.baseline, "sockit"), "relay",
                                   "127.0.0.1:%d" % p["baseline"], echo, "--quiet"]))
            pid["baseline"] = procs[-1].pid
        pr = start(0, [sockit, "relay", "tls://127.0.0.1:%d" % p["sockit_tls"], echo,
                       "--cert", crt, "--key", key, "--quiet"])
        procs.append(pr)
        pid["sockit_tls"] = pr.pid
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(HAPROXY_CFG.format(plain=p["haproxy"], tls=p["haproxy_tls"], pem=pem,
                                       echo=p["echo"]))
        pr = start(0, ["haproxy", "-db", "-f", cfg], os.path.join(tmp, "haproxy.log"))
        procs.append(pr)
        pid["haproxy"] = pid["haproxy_tls"] = pr.pid
        procs.append(start(0, ["socat", "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork,backlog=1024" % p["socat"],
                               "TCP:" + echo]))
        scfg = os.path.join(tmp, "stunnel.conf")
        with open(scfg, "w") as f:
            f.write(STUNNEL_CFG.format(port=p["stunnel"], echo=p["echo"], crt=crt, key=key))
        pid["socat"] = procs[-1].pid
        procs.append(start(0, ["stunnel4", scfg], os.path.join(tmp, "stunnel.log")))
        pid["stunnel"] = procs[-1].pid
        for name, port in p.items():
            try:
                wait_port(port)
            except SystemExit:
                for log in ("haproxy.log", "stunnel.log"):
                    with open(os.path.join(tmp, log), errors="replace") as f:
                        sys.stderr.write(log + ": " + f.read()[-1500:] + "\n")
                raise SystemExit("%s: nothing listens on port %d" % (name, port))
        ca = ["--ca", crt]
        bulk = ["--mode", "raw", "-c", "1", "--pipeline", "8", "--size", "262144"]
        frames = ["--mode", "frame", "-c", "100", "--pipeline", "16", "--size", "64"]
        conn = ["--mode", "connect", "-c", "4"]
        plain = [("sockit relay", "sockit"), ("haproxy", "haproxy"), ("socat", "socat")]
        if args.baseline:
            plain.insert(1, ("sockit baseline", "baseline"))
        tls = [("sockit relay", "sockit_tls"), ("haproxy", "haproxy_tls"),
               ("stunnel4", "stunnel")]
        cells = []
        for work, extra, key_ in (("bulk 1 stream", bulk, "mb_per_s"),
                                  ("100 x 16 x 64 B", frames, "req_per_s"),
                                  ("new conns/s", conn, "req_per_s")):
            for who, port in plain:
                cells.append((work, who, "127.0.0.1:%d" % p[port], extra, key_, port))
        for work, extra, key_ in () if args.plain else (
                ("TLS bulk 1 stream", bulk, "mb_per_s"), ("TLS new conns/s", conn, "req_per_s")):
            for who, port in tls:
                cells.append((work, who, "tls://localhost:%d" % p[port], extra + ca, key_, port))
        for who in () if args.plain else ("sockit relay", "haproxy"):
            cells.append(("RSS per idle pair", who, None,
                          ["--mode", "idle", "-c", str(args.idle)], "rss_per_conn", None))
        if args.only:
            cells = [c for c in cells if args.only in c[0]]
            if not cells:
                raise SystemExit("--only %s: no cell's work name contains it" % args.only)

        def fresh_relay(who):
            """A new relay process for the RSS cell: a process that served
            the other cells has memory to reuse, and would show ~0."""
            ports = free_ports(("r", "t"))
            if who == "haproxy":
                c = os.path.join(tmp, "idle.cfg")
                with open(c, "w") as f:
                    f.write(HAPROXY_CFG.format(plain=ports["r"], tls=ports["t"], pem=pem,
                                               echo=p["echo"]))
                pr = start(0, ["haproxy", "-db", "-f", c])
            else:
                pr = start(0, [sockit, "relay", "127.0.0.1:%d" % ports["r"], echo, "--quiet"])
            wait_port(ports["r"])
            return pr, ports["r"]

        results = {i: [] for i in range(len(cells))}
        cpu = {i: [] for i in range(len(cells))}  # the relay's CPU us per unit
        for r in range(args.rounds):
            for i, (work, who, addr, extra, key_, port) in enumerate(cells):
                if key_ == "rss_per_conn":
                    pr, port = fresh_relay(who)
                    try:
                        out = bench(sockit, "127.0.0.1:%d" % port,
                                    extra + ["--server-pid", str(pr.pid)], args.seconds)
                    finally:
                        pr.terminate()
                        pr.wait(timeout=10)
                    v = out["server"]["rss_bytes_per_idle_conn"]
                else:
                    c0 = cpu_seconds(pid[port])
                    out = bench(sockit, addr, extra, args.seconds)
                    v = out[key_]
                    time.sleep(0.3)  # socat reaps the child that served the cell
                    # The warm-up's work is in the CPU time too: per unit
                    # over warm-up and measurement, at the measured rate.
                    units = v * (args.seconds + 1)
                    cpu[i].append((cpu_seconds(pid[port]) - c0) * 1e6 / units if units else 0)
                results[i].append(v)
                print("round %d  %-18s %-14s %12.1f %s  cpu %s" %
                      (r + 1, work, who, v, key_, "%.1f us/unit" % cpu[i][-1] if cpu[i] else "-"),
                      file=sys.stderr)
        rows = []
        for i, (work, who, addr, extra, key_, port) in enumerate(cells):
            v = results[i]
            rows.append({"work": work, "relay": who, "metric": key_, "median": median(v),
                         "min": min(v), "max": max(v), "args": " ".join(extra),
                         "cpu_us_per_unit": median(cpu[i]) if cpu[i] else None})
        if args.json:
            print(json.dumps(rows, indent=1))
            return
        base = {r["work"]: r["median"] for r in rows if r["relay"] == "sockit relay"}
        base_cpu = {r["work"]: r["cpu_us_per_unit"] for r in rows if r["relay"] == "sockit relay"}
        print("| work | relay | median of %d | range | sockit / this | relay CPU per unit "
              "| this / sockit |" % args.rounds)
        print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
        for row in rows:
            if row["metric"] == "mb_per_s":
                # sockit bench counts both directions; one direction in GB/s:
                f = lambda x: "%.2f GB/s" % (x / 2 / 1000)
            elif row["metric"] == "rss_per_conn":
                f = lambda x: "%.0f B" % x
            else:
                f = lambda x: "%.0f/s" % x
            ratio = base[row["work"]] / row["median"] if row["median"] else float("nan")
            c, bc = row["cpu_us_per_unit"], base_cpu[row["work"]]
            unit = "MB" if row["metric"] == "mb_per_s" else "req"
            cpu_text = ("%.2f µs/%s" if c is not None and c < 10 else "%.0f µs/%s") % (c, unit) \
                if c is not None else "–"
            cpu_ratio = "%.2f" % (c / bc) if c is not None and bc else "–"
            print("| %s | %s | %s | %s – %s | %.2f | %s | %s |" %
                  (row["work"], row["relay"], f(row["median"]), f(row["min"]), f(row["max"]),
                   ratio, cpu_text, cpu_ratio))
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.terminate()
        for pr in procs:
            try:
                pr.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pr.kill()
        if QUOTA is not None:
            QUOTA.remove()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
