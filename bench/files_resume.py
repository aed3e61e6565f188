#!/usr/bin/env python3
"""files: what a resumed upload reads on the server (issue 15).

An upload of one SIZE file is cut (by a relay) after CUT bytes, then run
again: once with the partial as the server left it (the server kept its
running hash at the last 4 MiB border: PATCH_RESUME, nothing of the kept
part read) and once with the partial touched (one byte flipped: its stat no
longer matches, the kept part is hashed chunk by chunk). Prints, for each, the server's read bytes (/proc/PID/io
rchar) during the resume, the bytes sent and the wall time, and the time
Python's hashlib takes to hash the kept part in 4 MiB chunks (a rehash).

    make && python3 bench/files_resume.py --size 1G --cut 768M
"""
import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from test_files import Relay  # noqa: E402
from test_files_hcache import rchar  # noqa: E402
from files_bench import free_port, parse_size, wait_listening  # noqa: E402

CHUNK = 4 << 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1G")
    ap.add_argument("--cut", default="768M")
    ap.add_argument("--sockit", default=os.path.join(HERE, "..", "build", "sockit"))
    a = ap.parse_args()
    size, cut = parse_size(a.size), parse_size(a.cut)
    work = tempfile.mkdtemp(prefix="sk-resume-", dir="/dev/shm")
    try:
        root, local = os.path.join(work, "root"), os.path.join(work, "local")
        os.mkdir(root)
        os.mkdir(local)
        src = os.path.join(local, "big.bin")
        with open(src, "wb") as f:
            for _ in range(size // CHUNK):
                f.write(os.urandom(CHUNK))
        port = free_port()
        log = open(os.path.join(work, "server.log"), "w+")
        srv = subprocess.Popen([a.sockit, "serve", "files", "127.0.0.1:%d" % port, "--root",
                                root, "--no-auth"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=log)
        wait_listening(port, srv)
        env = dict(os.environ, XDG_CACHE_HOME=os.path.join(work, "cache"))
        for touched in (False, True):
            name = "big%d.bin" % touched
            r = Relay(("127.0.0.1", port), cut_up=cut)
            subprocess.run([a.sockit, "put", r.addr, src, name, "--quiet"], env=env)
            r.join(60)
            deadline = time.monotonic() + 20
            while True:  # the server notices the cut and keeps the partial
                log.seek(0)
                cuts = log.read().count(" interrupted after ")
                found = [p for p in os.listdir(root) if p.startswith(".sockit-partial.") and
                         p != ".sockit-partial.chunks"]
                if found and cuts > (1 if touched else 0) or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            (part,) = found
            part = os.path.join(root, part)
            kept = os.path.getsize(part)
            t = time.monotonic()
            with open(part, "rb") as f:
                while True:
                    b = f.read(CHUNK)
                    if not b:
                        break
                    hashlib.sha256(b).digest()
            rehash = time.monotonic() - t
            if touched:
                with open(part, "r+b") as f:
                    f.seek(CHUNK + 7)
                    b = f.read(1)
                    f.seek(CHUNK + 7)
                    f.write(bytes([b[0] ^ 1]))
            before = rchar(srv.pid)
            r = Relay(("127.0.0.1", port))
            t = time.monotonic()
            cp = subprocess.run([a.sockit, "put", r.addr, src, name, "--quiet"], env=env)
            wall = time.monotonic() - t
            r.join(60)
            read = rchar(srv.pid) - before
            print("%s partial: kept %d MiB; the resume read %.1f MiB on the server "
                  "(%.4fx the kept part), sent %d MiB, %.2f s, exit %d; hashlib rehashes the "
                  "kept part in %.2f s" %
                  ("touched" if touched else "as left", kept >> 20, read / 2**20, read / kept,
                   r.up >> 20, wall, cp.returncode, rehash))
        srv.terminate()
        srv.wait(10)
        log.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
