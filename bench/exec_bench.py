#!/usr/bin/env python3
"""exec_bench.py — commands per second and latency of `sockit serve exec`
for a short command (`true`), against `ssh localhost true`.

    python3 bench/exec_bench.py [--build build] [--seconds 3] [--conns 8]
                                [--ssh auto|no] [--json]

Modes (each runs `true` back to back for --seconds and verifies every exit
status):
  sockit-1conn     one authenticated connection, one command after another
  sockit-Nconn     --conns connections at once, each one command after another
  sockit-connect   a new connection (hello + HMAC handshake) for every command
  sockit-cli       a new `sockit exec` process for every command (what a shell
                   script pays)
  ssh              a new `ssh 127.0.0.1 true` for every command (key auth)
  ssh-mux          ssh through one ControlMaster connection (ssh's best case)
  echo-sockit-t    keystroke echo through `sockit exec -t ADDR -- cat`: one byte
                   typed on the client's terminal (a pty we hold), the time until
                   the remote terminal's echo of it shows there (--samples each)
  echo-ssh-t       the same through `ssh -tt 127.0.0.1 cat`

The server is the build's `sockit serve exec` pinned to CPU 0; the load is
generated from CPU 1 (taskset), per bench/BENCHMARKING notes. The Python
clients speak the protocol of docs/PROTOCOL.md §7 (tests/integration/
exec_client.py). ssh runs against a private sshd on 127.0.0.1 (port chosen
free) with a throw-away host key and user key, if openssh-server is
installed; otherwise those modes are skipped with a note.
"""

import argparse
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import termios
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from exec_client import ExecClient  # noqa: E402


def pin(cpu):
    try:
        os.sched_setaffinity(0, {cpu})
    except (AttributeError, OSError):
        pass


def percentile(sorted_vals, p):
    if not sorted_vals:
        return 0.0
    k = min(len(sorted_vals) - 1, int(round(p / 100.0 * (len(sorted_vals) - 1))))
    return sorted_vals[k]


def summarize(name, lat, elapsed, note=""):
    lat = sorted(lat)
    return {
        "mode": name,
        "commands": len(lat),
        "seconds": round(elapsed, 2),
        "per_second": round(len(lat) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(lat, 50) * 1000, 3),
        "p90_ms": round(percentile(lat, 90) * 1000, 3),
        "p99_ms": round(percentile(lat, 99) * 1000, 3),
        "max_ms": round(lat[-1] * 1000, 3) if lat else 0.0,
        "note": note,
    }


def loop_for(seconds, one):
    """Calls one() until seconds pass; returns (latencies, elapsed)."""
    lat = []
    t0 = time.monotonic()
    end = t0 + seconds
    while True:
        s = time.monotonic()
        if s >= end:
            break
        one()
        lat.append(time.monotonic() - s)
    return lat, time.monotonic() - t0


def check(result, want=("exit", 0)):
    if result != want:
        raise SystemExit("unexpected result %r" % (result,))


# ------------------------------------------------------------------ sockit

class SockitServer:
    def __init__(self, build, tmp):
        self.token_file = os.path.join(tmp, "token")
        self.token = os.urandom(32).hex().encode()
        with open(self.token_file, "wb") as f:
            f.write(self.token + b"\n")
        os.chmod(self.token_file, 0o600)
        self.sockit = os.path.join(ROOT, build, "sockit")
        self.proc = subprocess.Popen(
            ["taskset", "-c", "0", self.sockit, "serve", "exec", "127.0.0.1:0",
             "--token-file", self.token_file, "--quiet", "--max-procs", "1024",
             "--max-unauth", "1024"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        line = self.proc.stderr.readline().decode()
        if "listening on" not in line:
            raise SystemExit("sockit serve exec did not start: %r" % line)
        self.addr = line.split()[-1]
        host, _, port = self.addr.rpartition(":")
        self.sockaddr = (host, int(port))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)


def sockit_one_conn(srv, seconds):
    c = ExecClient.connect(srv.sockaddr, srv.token)
    lat, el = loop_for(seconds, lambda: check(c.run([b"true"])[2]))
    c.close()
    return summarize("sockit-1conn", lat, el, "one connection, sequential")


def sockit_many_conns(srv, seconds, conns):
    lats, errors = [], []

    def worker():
        try:
            c = ExecClient.connect(srv.sockaddr, srv.token)
            lat, _ = loop_for(seconds, lambda: check(c.run([b"true"])[2]))
            c.close()
            lats.append(lat)
        except BaseException as e:  # reported below
            errors.append(e)
    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(conns)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise SystemExit("sockit-Nconn: %r" % errors[0])
    return summarize("sockit-%dconn" % conns, [x for l in lats for x in l],
                     time.monotonic() - t0, "%d connections at once" % conns)


def sockit_connect_each(srv, seconds):
    def one():
        c = ExecClient.connect(srv.sockaddr, srv.token)
        check(c.run([b"true"])[2])
        c.close()
    lat, el = loop_for(seconds, one)
    return summarize("sockit-connect", lat, el, "connect + handshake per command")


def sockit_cli(srv, seconds):
    argv = [srv.sockit, "exec", srv.addr, "--token-file", srv.token_file, "-n", "--", "true"]

    def one():
        if subprocess.call(argv) != 0:
            raise SystemExit("sockit exec failed")
    lat, el = loop_for(seconds, one)
    return summarize("sockit-cli", lat, el, "a sockit exec process per command")


# --------------------------------------------------------------------- ssh

class SshServer:
    """A private sshd on a free loopback port with throw-away keys."""

    def __init__(self, tmp):
        self.dir = os.path.join(tmp, "ssh")
        os.mkdir(self.dir, 0o700)
        self.key = os.path.join(self.dir, "id")
        host_key = os.path.join(self.dir, "host")
        for k in (self.key, host_key):
            subprocess.check_call(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", k])
        auth = os.path.join(self.dir, "authorized_keys")
        shutil.copy(self.key + ".pub", auth)
        os.chmod(auth, 0o600)
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        cfg = os.path.join(self.dir, "sshd_config")
        with open(cfg, "w") as f:
            f.write("ListenAddress 127.0.0.1\nPort %d\nHostKey %s\nAuthorizedKeysFile %s\n"
                    "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                    "PermitRootLogin prohibit-password\nStrictModes no\nPidFile none\n"
                    "LogLevel ERROR\n" % (self.port, host_key, auth))
        os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen(["taskset", "-c", "0", "/usr/sbin/sshd", "-D", "-e", "-f", cfg],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.base = ["ssh", "-p", str(self.port), "-i", self.key, "-o", "BatchMode=yes",
                     "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                     "-o", "LogLevel=ERROR", "-T"]
        deadline = time.monotonic() + 10
        while subprocess.call(self.base + ["127.0.0.1", "true"], stdin=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("sshd did not come up: %s" % self.proc.stderr.read(2000))
            time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def ssh_each(sshd, seconds, mux=False):
    argv = list(sshd.base)
    master = None
    if mux:
        ctl = os.path.join(sshd.dir, "ctl")
        argv += ["-o", "ControlPath=" + ctl]
        master = subprocess.Popen(argv + ["-o", "ControlMaster=yes", "-N", "127.0.0.1"],
                                  stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(ctl) and time.monotonic() < deadline:
            time.sleep(0.05)
    argv += ["127.0.0.1", "true"]

    def one():
        if subprocess.call(argv, stdin=subprocess.DEVNULL) != 0:
            raise SystemExit("ssh failed")
    lat, el = loop_for(seconds, one)
    if master:
        subprocess.call(argv[:-2] + ["-O", "exit", "127.0.0.1"], stderr=subprocess.DEVNULL)
        try:
            master.wait(timeout=5)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
    return summarize("ssh-mux" if mux else "ssh", lat, el,
                     "one ControlMaster connection" if mux else "a new ssh connection per command")


# ----------------------------------------------------------- keystrokes

def echo_latency(name, argv, samples, note):
    """Runs argv (a client that runs `cat` on a remote terminal) on a pty
    of ours, as a person's terminal; types one byte at a time and times
    until its echo comes back to that terminal. The remote terminal echoes
    (cooked mode), so this is the client, the network path and the server
    twice, the same work for sockit and ssh. A carriage return every 200
    bytes (untimed) keeps the remote line short."""
    master, slave = os.openpty()
    p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True)

    def wait_for(byte, timeout):
        end = time.monotonic() + timeout
        seen = b""
        while byte not in seen:
            left = end - time.monotonic()
            if left <= 0 or p.poll() is not None:
                return False
            r, _, _ = select.select([master], [], [], left)
            if r:
                try:
                    seen = os.read(master, 4096)
                except OSError:
                    return False
        return True
    try:
        # Ready once the client has made our terminal raw (before that, the
        # local terminal would echo by itself) and a typed byte comes back.
        deadline = time.monotonic() + 15
        while termios.tcgetattr(slave)[3] & termios.ECHO:
            if time.monotonic() > deadline or p.poll() is not None:
                raise SystemExit("%s: the client never made its terminal raw" % name)
            time.sleep(0.01)
        while True:
            os.write(master, b"R")
            if wait_for(b"R", 0.2):
                break
            if time.monotonic() > deadline:
                raise SystemExit("%s: no echo from %s" % (name, " ".join(argv[:3])))
        os.write(master, b"\r")
        wait_for(b"\n", 5)
        lat = []
        t0 = time.monotonic()
        for i in range(samples):
            if i % 200 == 199:
                os.write(master, b"\r")
                wait_for(b"\n", 5)
            s = time.perf_counter()
            os.write(master, b"x")
            if not wait_for(b"x", 5):
                raise SystemExit("%s: echo lost at sample %d" % (name, i))
            lat.append(time.perf_counter() - s)
        el = time.monotonic() - t0
    finally:
        os.write(master, b"\x03")  # ^C: the remote cat ends, and the session
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        os.close(master)
        os.close(slave)
    r = summarize(name, lat, el, note)
    r["commands"] = len(lat)
    return r


def sockit_echo(srv, samples):
    argv = [srv.sockit, "exec", "-t", srv.addr, "--token-file", srv.token_file, "--", "cat"]
    return echo_latency("echo-sockit-t", argv, samples, "keystroke echo, sockit exec -t")


def ssh_echo(sshd, samples):
    argv = [a for a in sshd.base if a != "-T"] + ["-tt", "127.0.0.1", "cat"]
    return echo_latency("echo-ssh-t", argv, samples, "keystroke echo, ssh -tt")


# -------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--conns", type=int, default=8)
    ap.add_argument("--ssh", choices=("auto", "no"), default="auto")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--samples", type=int, default=1000, help="keystrokes per echo mode")
    ap.add_argument("--only", choices=("all", "rate", "echo"), default="all",
                    help="commands per second, keystroke echo, or both")
    a = ap.parse_args()
    pin(1)
    tmp = tempfile.mkdtemp(prefix="skexecbench-")
    results, notes = [], []
    srv = SockitServer(a.build, tmp)
    try:
        if a.only != "echo":
            results.append(sockit_one_conn(srv, a.seconds))
            results.append(sockit_many_conns(srv, a.seconds, a.conns))
            results.append(sockit_connect_each(srv, a.seconds))
            results.append(sockit_cli(srv, a.seconds))
        if a.only != "rate":
            results.append(sockit_echo(srv, a.samples))
    finally:
        srv.stop()
    if a.ssh == "auto":
        if not os.path.exists("/usr/sbin/sshd"):
            notes.append("ssh skipped: openssh-server is not installed")
        else:
            try:
                sshd = SshServer(tmp)
            except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
                notes.append("ssh skipped: %s" % e)
            else:
                try:
                    if a.only != "echo":
                        results.append(ssh_each(sshd, a.seconds))
                        results.append(ssh_each(sshd, a.seconds, mux=True))
                    if a.only != "rate":
                        results.append(ssh_echo(sshd, a.samples))
                finally:
                    sshd.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps({"results": results, "notes": notes}, indent=2))
        return
    print("%-16s %9s %10s %9s %9s %9s %9s  %s" % ("mode", "commands", "per sec", "p50 ms",
                                                 "p90 ms", "p99 ms", "max ms", "what"))
    for r in results:
        print("%-16s %9d %10.1f %9.3f %9.3f %9.3f %9.3f  %s" % (
            r["mode"], r["commands"], r["per_second"], r["p50_ms"], r["p90_ms"], r["p99_ms"],
            r["max_ms"], r["note"]))
    for n in notes:
        print("note: " + n)


if __name__ == "__main__":
    main()
