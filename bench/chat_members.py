#!/usr/bin/env python3
"""bench/chat_members.py — a big chat room: N members join `sockit serve chat`
one after another, every member reads everything; reports how long the join
notices took to reach everyone (each member is told of every later one:
N*(N-1)/2 lines), the server's CPU time and RSS, and how long one line then
takes to reach all the others.

    python3 bench/chat_members.py [-n 10000] [--sockit build/sockit]

Python stdlib only; raises RLIMIT_NOFILE for itself and the server.
"""
import argparse
import os
import re
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--sockit", default=os.path.join(ROOT, "build", "sockit"))
    a = ap.parse_args()
    n = a.n
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < n + 100:
        sys.exit("RLIMIT_NOFILE hard limit %d is below %d" % (hard, n + 100))
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    srv = subprocess.Popen([a.sockit, "serve", "chat", "127.0.0.1:0", "--quiet", "--backlog", "4096"],
                           stderr=subprocess.PIPE)
    m = re.search(rb":(\d+)\s*$", srv.stderr.readline())
    if not m:
        sys.exit("the server did not start")
    port = int(m.group(1))
    threading.Thread(target=srv.stderr.read, daemon=True).start()   # never let its log block it

    def status(field):
        with open("/proc/%d/status" % srv.pid) as f:
            return int(re.search(r"%s:\s+(\d+)" % field, f.read()).group(1))

    def cpu():
        with open("/proc/%d/stat" % srv.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    sel = selectors.DefaultSelector()
    tails, total = {}, [0]

    def pump(timeout, marker, done):
        for key, _ in sel.select(timeout):
            s = key.fileobj
            try:
                data = s.recv(1 << 16)
            except BlockingIOError:
                continue
            total[0] += len(data)
            seen = tails.get(s, b"") + data
            if marker in seen:
                done.add(s)
            tails[s] = seen[-200:]

    rss0 = status("VmRSS")
    socks, joined = [], set()
    last = b"*** guest%d joined" % n
    t0 = time.monotonic()
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ)
        # Not read yet: what members are owed waits in the kernel and in
        # the server's queues (well under --max-queue), and reading
        # thousands of sockets between connects would make the client the
        # bottleneck being measured.
    t1, c1 = time.monotonic(), cpu()
    while len(joined) < n - 1 and time.monotonic() - t1 < 300:
        pump(0.1, last, joined)
    t2 = time.monotonic()
    print("%d members connected in %.1f s; all %d join notices (%.0f MB) read %.1f s later; "
          "server CPU %.1f s meanwhile; server RSS %.1f MB (idle: %.1f MB), peak %.1f MB"
          % (n, t1 - t0, n * (n - 1) // 2, total[0] / 1e6, t2 - t1, cpu() - c1,
             status("VmRSS") / 1024, rss0 / 1024, status("VmHWM") / 1024))
    marked = set()
    socks[0].sendall(b"MARK one line for everyone\n")
    t3 = time.monotonic()
    while len(marked) < n - 1 and time.monotonic() - t3 < 60:
        pump(0.1, b"MARK", marked)
    print("one line reached %d of %d others in %.3f s" % (len(marked), n - 1, time.monotonic() - t3))
    for s in socks:
        s.close()
    srv.terminate()
    srv.wait(timeout=30)


if __name__ == "__main__":
    main()
