#!/usr/bin/env python3
"""tls_bench.py — what TLS costs: sockit's echo over tls:// against plain TCP
(requests/s, `sockit bench --mode frame`), and one bulk stream over TLS
against plain TCP and against socat doing the same work (`socat
OPENSSL-LISTEN ... PIPE`, `socat TCP-LISTEN ... PIPE`), measured with the
same generator (`sockit bench --mode raw`, every byte verified).

    python3 bench/tls_bench.py [--build build] [--seconds 3] [--rounds 3]
                               [--json]

Every server runs pinned to CPU 0 and the generator to CPU 1 (taskset),
per /work/shared/BENCHMARKING.md. The cells are run interleaved, round
after round, so that each round compares the contenders under the same
conditions; the table shows each cell's median over the rounds and the
range. The certificate is a throw-away `sockit cert` (EC P-256); TLS 1.3
with OpenSSL's default cipher choice (AES-256-GCM on this CPU).
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


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("nothing listens on port %d" % port)


def start(argv):
    return subprocess.Popen(["taskset", "-c", "0"] + argv, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def bench(sockit, addr, extra, seconds):
    argv = ["taskset", "-c", "1", sockit, "bench", addr, "-d", str(seconds), "--warmup", "1",
            "--json", "--quiet"] + extra
    cp = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=seconds + 60)
    if cp.returncode != 0:
        raise SystemExit("%s failed: %s" % (" ".join(argv), cp.stderr.decode()[-500:]))
    return json.loads(cp.stdout)


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sockit = os.path.join(args.build, "sockit")
    for tool in ("taskset", "socat"):
        if shutil.which(tool) is None:
            raise SystemExit("%s is needed (Debian: util-linux, socat)" % tool)
    tmp = tempfile.mkdtemp(prefix="tls-bench-")
    procs = []
    try:
        subprocess.run([sockit, "cert", os.path.join(tmp, "b")], check=True,
                       stdout=subprocess.DEVNULL)
        crt, key = os.path.join(tmp, "b.crt"), os.path.join(tmp, "b.key")
        p = {k: free_port() for k in ("frame", "frame_tls", "raw", "raw_tls", "socat", "socat_tls")}
        procs.append(start([sockit, "serve", "echo=127.0.0.1:%d" % p["frame"],
                            "echo=tls://127.0.0.1:%d" % p["frame_tls"], "--framing", "frame",
                            "--cert", crt, "--key", key, "--quiet"]))
        procs.append(start([sockit, "serve", "echo=127.0.0.1:%d" % p["raw"],
                            "echo=tls://127.0.0.1:%d" % p["raw_tls"], "--cert", crt, "--key", key,
                            "--quiet"]))
        procs.append(start(["socat", "TCP-LISTEN:%d,reuseaddr,fork" % p["socat"], "PIPE"]))
        procs.append(start(["socat", "OPENSSL-LISTEN:%d,reuseaddr,fork,cert=%s,key=%s,verify=0"
                            % (p["socat_tls"], crt, key), "PIPE"]))
        for port in p.values():
            wait_port(port)
        pin = ["--ca", crt]
        echo = ["--mode", "frame", "-c", "100", "--pipeline", "16", "--size", "64"]
        echo1 = ["--mode", "frame", "-c", "1", "--pipeline", "1", "--size", "64"]
        bulk = ["--mode", "raw", "-c", "1", "--pipeline", "8", "--size", "262144"]
        cells = [
            ("echo 100x16 64 B", "sockit tcp", "127.0.0.1:%d" % p["frame"], echo, "req_per_s"),
            ("echo 100x16 64 B", "sockit tls", "tls://localhost:%d" % p["frame_tls"], echo + pin, "req_per_s"),
            ("echo 1x1 64 B", "sockit tcp", "127.0.0.1:%d" % p["frame"], echo1, "req_per_s"),
            ("echo 1x1 64 B", "sockit tls", "tls://localhost:%d" % p["frame_tls"], echo1 + pin, "req_per_s"),
            ("connect+1 frame", "sockit tcp", "127.0.0.1:%d" % p["frame"],
             ["--mode", "connect", "-c", "4"], "req_per_s"),
            ("connect+1 frame", "sockit tls (resumed)", "tls://localhost:%d" % p["frame_tls"],
             ["--mode", "connect", "-c", "4"] + pin, "req_per_s"),
            ("bulk 1 stream", "sockit tcp", "127.0.0.1:%d" % p["raw"], bulk, "mb_per_s"),
            ("bulk 1 stream", "sockit tls", "tls://localhost:%d" % p["raw_tls"], bulk + pin, "mb_per_s"),
            ("bulk 1 stream", "socat tcp", "127.0.0.1:%d" % p["socat"], bulk, "mb_per_s"),
            ("bulk 1 stream", "socat tls", "tls://localhost:%d" % p["socat_tls"], bulk + pin, "mb_per_s"),
        ]
        results = {i: [] for i in range(len(cells))}
        for r in range(args.rounds):
            for i, (work, who, addr, extra, key_) in enumerate(cells):
                out = bench(sockit, addr, extra, args.seconds)
                results[i].append(out[key_])
                print("round %d  %-18s %-22s %12.1f %s" % (r + 1, work, who, out[key_], key_),
                      file=sys.stderr)
        rows = []
        for i, (work, who, addr, extra, key_) in enumerate(cells):
            v = results[i]
            rows.append({"work": work, "server": who, "metric": key_, "median": median(v),
                         "min": min(v), "max": max(v), "args": " ".join(extra)})
        if args.json:
            print(json.dumps(rows, indent=1))
            return
        print("| work | server | result (median of %d) | range |" % args.rounds)
        print("| --- | --- | ---: | ---: |")
        for row in rows:
            if row["metric"] == "mb_per_s":
                # sockit bench counts both directions; one direction in GB/s:
                f = lambda x: "%.2f GB/s" % (x / 2 / 1000)
            else:
                f = lambda x: "%.0f req/s" % x
            print("| %s | %s | %s | %s – %s |" % (row["work"], row["server"], f(row["median"]),
                                                  f(row["min"]), f(row["max"])))
    finally:
        for pr in procs:
            if pr.poll() is None:
                pr.terminate()
        for pr in procs:
            try:
                pr.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pr.kill()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
