#!/usr/bin/env python3
"""bench/chat_fanout.py — chat fan-out, sockit against Redis pub/sub.

Starts `sockit serve chat` and `redis-server` on 127.0.0.1 (both pinned to
core 0, both left running), then drives each with the same client,
build/bench/chat_fanout (pinned to core 1): N receiving members / subscribers
and T talkers / publishers. Rounds are interleaved (each scenario hits both
servers in turn, the order alternating) because this host moves its cores
about (BENCHMARKING.md trap 1); the table shows medians over rounds and the
median of the per-round ratios. Before each measurement it waits for the
machine to be quiet (other work shares it, trap 4) and marks a measurement
taken on a busy machine.

    python3 bench/chat_fanout.py                  3 rounds x 3 s
    python3 bench/chat_fanout.py --rounds 5 --seconds 5
    python3 bench/chat_fanout.py --only 1000 --json out.json

Needs build/sockit (`make`) and redis-server (Debian package redis-server);
builds build/bench/chat_fanout from bench/tools/chat_fanout.c if missing.
"""
import argparse
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLIENT = os.path.join(ROOT, "build", "bench", "chat_fanout")
SOCKIT = os.path.join(ROOT, "build", "sockit")
SERVER_CORE, CLIENT_CORE = "0", "1"

# name, client arguments. Closed loop (--window): the most deliveries a
# second the pair sustains; open loop (--rate): latency at a fixed load.
SCENARIOS = [
    ("100 members, 1 talker, max", ["-n", "100", "-t", "1", "--window", "64"]),
    ("1000 members, 1 talker, max", ["-n", "1000", "-t", "1", "--window", "64"]),
    ("100 members, 4 talkers, max", ["-n", "100", "-t", "4", "--window", "16"]),
    ("1000 members, 4 talkers, max", ["-n", "1000", "-t", "4", "--window", "16"]),
    ("100 members, 1000 msg/s", ["-n", "100", "-t", "1", "--rate", "1000"]),
    ("1000 members, 200 msg/s", ["-n", "1000", "-t", "1", "--rate", "200"]),
]


def busy_share(interval=0.5):
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        return sum(v), v[3] + v[4]
    t0, i0 = snap()
    time.sleep(interval)
    t1, i1 = snap()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(limit=60.0):
    """True once the machine is below 10 % busy; False after `limit` s."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if busy_share() < 0.10:
            return True
    return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def start_servers():
    chat = subprocess.Popen(["taskset", "-c", SERVER_CORE, SOCKIT, "serve", "chat", "127.0.0.1:0",
                             "--quiet"], stderr=subprocess.PIPE)
    line = chat.stderr.readline().decode()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    if not m:
        sys.exit("sockit serve chat did not start: %r" % line)
    # Keep reading its log (members reset by the client are logged even with
    # --quiet): a full pipe would block the server.
    threading.Thread(target=chat.stderr.read, daemon=True).start()
    rport = free_port()
    redis = subprocess.Popen(["taskset", "-c", SERVER_CORE, "redis-server", "--port", str(rport),
                              "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--maxclients", "10000", "--loglevel", "warning"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", rport), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                chat.terminate()
                redis.kill()
                sys.exit("redis-server did not start")
            time.sleep(0.05)
    return {"chat": (chat, int(m.group(1))), "redis": (redis, rport)}


def run_client(target, port, args, seconds):
    argv = ["taskset", "-c", CLIENT_CORE, CLIENT, "--target", target, "--addr",
            "127.0.0.1:%d" % port, "-d", str(seconds)] + args
    out = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=seconds + 120)
    text = out.stdout.decode()
    if out.returncode != 0:
        sys.exit("%s failed: %s %s" % (" ".join(argv), text, out.stderr.decode()))
    r = {k: float(v) for k, v in re.findall(r"([a-z0-9./]+)=([0-9.]+)", text)}
    return {"deliveries_s": r["deliveries/s"], "msgs_s": r["completed/s"], "p50_us": r["p50"],
            "p99_us": r["p99"], "max_us": r["max"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--only", help="run the scenarios whose name contains this")
    ap.add_argument("--json", help="write every measurement here")
    ap.add_argument("--quiet-wait", type=float, default=60,
                    help="seconds to wait for an idle machine before each measurement")
    a = ap.parse_args()
    if not os.access(CLIENT, os.X_OK):
        os.makedirs(os.path.dirname(CLIENT), exist_ok=True)
        subprocess.run(["cc", "-O2", "-g", "-std=c11", "-D_GNU_SOURCE", "-Wall", "-Wextra", "-Werror",
                        "-o", CLIENT, os.path.join(ROOT, "bench", "tools", "chat_fanout.c"), "-lm"],
                       check=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    scenarios = [s for s in SCENARIOS if not a.only or a.only in s[0]]
    # A SIGTERM (or Ctrl-C) still stops the two servers (the finally below).
    signal.signal(signal.SIGTERM, lambda signo, frame: sys.exit(1))
    servers = start_servers()
    results = {name: {"chat": [], "redis": [], "ratio": [], "busy": 0} for name, _ in scenarios}
    try:
        for rnd in range(a.rounds):
            for name, args in scenarios:
                order = ["chat", "redis"] if rnd % 2 == 0 else ["redis", "chat"]
                got = {}
                for target in order:
                    if not wait_quiet(a.quiet_wait):
                        results[name]["busy"] += 1
                    got[target] = run_client(target, servers[target][1], args, a.seconds)
                    results[name][target].append(got[target])
                results[name]["ratio"].append(got["chat"]["deliveries_s"] / got["redis"]["deliveries_s"])
                print("round %d %-30s chat %9.0f/s p99 %6.0f us   redis %9.0f/s p99 %6.0f us"
                      % (rnd + 1, name, got["chat"]["deliveries_s"], got["chat"]["p99_us"],
                         got["redis"]["deliveries_s"], got["redis"]["p99_us"]), flush=True)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def med(rows, key):
        return statistics.median(r[key] for r in rows)
    print()
    print("| scenario | sockit chat deliveries/s | p50 / p99 µs | Redis pub/sub deliveries/s | "
          "p50 / p99 µs | sockit / Redis |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, _ in scenarios:
        r = results[name]
        note = " (busy host in %d runs)" % r["busy"] if r["busy"] else ""
        print("| %s%s | %.0f | %.0f / %.0f | %.0f | %.0f / %.0f | %.2f |"
              % (name, note, med(r["chat"], "deliveries_s"), med(r["chat"], "p50_us"),
                 med(r["chat"], "p99_us"), med(r["redis"], "deliveries_s"), med(r["redis"], "p50_us"),
                 med(r["redis"], "p99_us"), statistics.median(r["ratio"])))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
