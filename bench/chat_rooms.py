#!/usr/bin/env python3
"""bench/chat_rooms.py — what rooms and Redis cost the chat fan-out.

Drives build/bench/chat_fanout (bench/tools/chat_fanout.c) in one run:

  1. one process, one room: this build against a baseline binary (--base,
     e.g. a build of the commit before rooms), closed loop, deliveries/s;
  2. the same with 10 more rooms of 20 idle members each (rooms must not
     cost the room that talks);
  3. three `sockit serve chat --redis` processes on one redis-server, the
     members spread over them: deliveries/s (closed loop) and p99 line
     latency at a fixed rate against the one-process figure at that rate,
     with each process's CPU per delivery (so scaling on more cores can be
     predicted).

Rounds alternate the variants (this host moves its cores about); the
table shows medians. Needs redis-server (Debian package).

    python3 bench/chat_rooms.py --base /tmp/base/build/sockit
"""
import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(ROOT, "build", "bench", "chat_fanout")
SOCKIT = os.path.join(ROOT, "build", "sockit")


def cpu_ticks(pid):
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return int(v[11]) + int(v[12])          # utime + stime, in clock ticks


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def serve(binary, *extra):
    p = subprocess.Popen([binary, "serve", "chat", "127.0.0.1:0", "--quiet", "--max-rate", "0",
                          "--max-conns", "5000"] + list(extra),
                         stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    m = re.search(r"listening on (\S+)", line)
    if not m:
        p.kill()
        raise SystemExit("server did not start: %r" % line)
    return p, m.group(1)


def wait_up(p):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if "connected" in line:
            return
    raise SystemExit("a server never reached redis")


def idle_members(addr, rooms, each):
    socks = []
    host, port = addr.rsplit(":", 1)
    for r in range(rooms):
        for _ in range(each):
            s = socket.create_connection((host, int(port)))
            s.sendall(b"/join idle%d\n" % r)
            socks.append(s)
    return socks


def fanout(addrs, args, pids, seconds):
    """Runs the client; returns (deliveries/s, p50 us, p99 us, {pid: ticks})."""
    before = {p: cpu_ticks(p) for p in pids}
    argv = [CLIENT, "--target", "chat", "-d", str(seconds)] + args
    for a in addrs:
        argv += ["--addr", a]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 90)
    after = {p: cpu_ticks(p) for p in pids}
    text = out.stdout + out.stderr
    d = re.search(r"deliveries/s=([\d.]+)", text)
    p50 = re.search(r"p50=([\d.]+)", text)
    p99 = re.search(r"p99=([\d.]+)", text)
    if d is None or p50 is None or p99 is None:
        raise SystemExit("chat_fanout said:\n" + text)
    return (float(d.group(1)), float(p50.group(1)), float(p99.group(1)),
            {p: after[p] - before[p] for p in pids})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", help="a baseline sockit binary (before rooms)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=200)
    a = ap.parse_args()
    if not os.path.exists(CLIENT):
        subprocess.run(["make", "-C", os.path.join(ROOT, "bench"), CLIENT], check=True)
    tick = os.sysconf("SC_CLK_TCK")
    closed = ["-n", str(a.n), "-t", "1", "--window", "64"]
    opened = ["-n", str(a.n), "-t", "1", "--rate", str(a.rate)]
    res = {}

    def add(key, v):
        res.setdefault(key, []).append(v)

    rport = free_port()
    red = subprocess.Popen(["redis-server", "--port", str(rport), "--bind", "127.0.0.1",
                            "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        for rnd in range(a.rounds):
            variants = [("rooms", SOCKIT)] + ([("base", a.base)] if a.base else [])
            if rnd % 2:
                variants.reverse()
            for name, binary in variants:
                # A fresh server for each run: a room's history would
                # replay the last run's lines to the next run's members.
                for key, args in (("closed", closed), ("rate", opened)):
                    p, addr = serve(binary)
                    add(name + " " + key, fanout([addr], args, [p.pid], a.seconds))
                    p.kill()
                    p.wait()
                if name == "rooms":
                    p, addr = serve(binary)
                    idle = idle_members(addr, 10, 20)
                    time.sleep(0.3)
                    add("rooms+10 idle rooms closed", fanout([addr], closed, [p.pid], a.seconds))
                    for sk in idle:
                        sk.close()
                    p.kill()
                    p.wait()
            for key, args in (("closed", closed), ("rate", opened)):
                subprocess.run(["redis-cli", "-p", str(rport), "FLUSHALL"], capture_output=True)
                srvs = [serve(SOCKIT, "--redis", "redis://127.0.0.1:%d" % rport)
                        for _ in range(3)]
                for p, _ in srvs:
                    wait_up(p)
                pids = [p.pid for p, _ in srvs] + [red.pid]
                add("redis x3 " + key, fanout([srv[1] for srv in srvs], args, pids, a.seconds))
                for p, _ in srvs:
                    p.kill()
                    p.wait()
    finally:
        red.kill()
        red.wait()

    print("| case | deliveries/s | p50 µs | p99 µs | CPU µs per delivery (each process) |")
    print("| --- | ---: | ---: | ---: | --- |")
    for key, runs in res.items():
        dps = statistics.median(r[0] for r in runs)
        p50 = statistics.median(r[1] for r in runs)
        p99 = statistics.median(r[2] for r in runs)
        cpu = []
        for r in runs[-1:]:
            total = r[0] * a.seconds
            cpu = ["%.2f" % (t / tick * 1e6 / total) for t in r[3].values()] if total else []
        print("| %s | %.0f | %.0f | %.0f | %s |" % (key, dps, p50, p99, " / ".join(cpu)))


if __name__ == "__main__":
    main()
