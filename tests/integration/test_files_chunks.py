"""files chunk hashes (docs/PROTOCOL.md 9.10): `sockit ls --json` shows
each file's SHA-256 per 4 MiB chunk, and they are exactly what
`split -b 4M -d FILE part. && sha256sum part.*` prints; CHUNKS exists only
in a version-2 session (a version-1 client gets ERROR 01, as from an old
server), and `ls --json` still works against a server that refuses a
version-2 hello (dialled again with version 1, no chunk fields).
"""

import glob
import json
import os
import socket
import struct
import subprocess
import tempfile
import threading

import helpers
from test_files import MiB, FilesCase, sha_file, write_random

import files_client as fc

CHUNK = 4 * MiB


def split_sums(test, path):
    """The chunk hashes as a user gets them with coreutils alone."""
    work = tempfile.mkdtemp(prefix="split-", dir=test.tmp)
    subprocess.run(["split", "-b", "4M", "-d", path, "part."], cwd=work, check=True, timeout=60)
    parts = sorted(glob.glob(os.path.join(work, "part.*")))
    if not parts:
        return []
    out = subprocess.run(["sha256sum"] + [os.path.basename(p) for p in parts], cwd=work,
                         check=True, capture_output=True, timeout=60).stdout.decode()
    return [line.split()[0] for line in out.splitlines()]


class Chunks(FilesCase):

    def test_ls_json_matches_split_and_sha256sum(self):
        sizes = {"empty.bin": 0, "one.bin": 1, "exact.bin": CHUNK,
                 "three.bin": 2 * CHUNK + 12345}
        os.mkdir(os.path.join(self.root, "d"))
        for name, size in sizes.items():
            write_random(os.path.join(self.root, "d", name), size)
        os.mkdir(os.path.join(self.root, "d", "sub"))
        srv = self.files_server()
        cp = self.run_files("ls", srv.addr, "d", "--json")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        entries = {e["name"]: e for e in json.loads(cp.stdout)}
        self.assertEqual(sorted(entries), sorted(list(sizes) + ["sub"]))
        self.assertNotIn("chunks", entries["sub"], "a directory has no chunks")
        for name, size in sizes.items():
            with self.subTest(name=name):
                e = entries[name]
                local = os.path.join(self.root, "d", name)
                self.assertEqual(e["chunk_size"], CHUNK)
                self.assertEqual(e["sha256"], sha_file(local))
                want = split_sums(self, local)
                self.assertEqual(len(want), (size + CHUNK - 1) // CHUNK)
                self.assertEqual(e["chunks"], want)
        # one file alone, by its path
        cp = self.run_files("ls", srv.addr, "d/three.bin", "--json")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        (e,) = json.loads(cp.stdout)
        self.assertEqual(e["chunks"], split_sums(self, os.path.join(self.root, "d/three.bin")))
        # a changed chunk changes that chunk's hash only
        with open(os.path.join(self.root, "d/three.bin"), "r+b") as f:
            f.seek(CHUNK + 7)
            b = f.read(1)
            f.seek(CHUNK + 7)
            f.write(bytes([b[0] ^ 0xFF]))
        cp = self.run_files("ls", srv.addr, "d/three.bin", "--json")
        (e2,) = json.loads(cp.stdout)
        self.assertEqual(e2["chunks"][0], e["chunks"][0])
        self.assertNotEqual(e2["chunks"][1], e["chunks"][1])
        self.assertEqual(e2["chunks"][2], e["chunks"][2])
        # plain ls is unchanged: no hashing asked for
        cp = self.run_files("ls", srv.addr, "d")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertNotIn(b"chunk", cp.stdout)
        self.stop(srv)

    def test_protocol_version_2_only(self):
        write_random(os.path.join(self.root, "f.bin"), CHUNK + 1)
        os.mkdir(os.path.join(self.root, "dir"))
        srv = self.files_server()
        fam, _, sa = helpers.parse_addr(srv.addr)
        c2 = fc.FilesClient.connect(sa, family=fam, version=2)
        self._socks.append(c2.sock)
        self.assertEqual(c2.version, 2)
        size, csize, hashes, whole = c2.chunks("f.bin")
        self.assertEqual((size, csize), (CHUNK + 1, CHUNK))
        self.assertEqual(hashes, split_sums(self, os.path.join(self.root, "f.bin")))
        self.assertEqual(whole, sha_file(os.path.join(self.root, "f.bin")))
        # errors leave the session usable
        self.assertServerError(fc.E_TYPE, c2.chunks, "dir")
        self.assertServerError(fc.E_NOTFOUND, c2.chunks, "nope.bin")
        self.assertServerError(fc.E_BADPATH, c2.chunks, "../etc/passwd")
        self.assertEqual(c2.chunks("f.bin")[2], hashes)
        # a version-5 hello is answered with 4, the highest the server has
        c4 = fc.FilesClient.connect(sa, family=fam, version=5)
        self._socks.append(c4.sock)
        self.assertEqual(c4.version, 4)
        # a version-1 session has no CHUNKS: a protocol error, then a close
        c1 = fc.FilesClient.connect(sa, family=fam, version=1)
        self._socks.append(c1.sock)
        self.assertEqual(c1.version, 1)
        self.assertServerError(fc.E_PROTOCOL, c1.chunks, "f.bin")
        self.stop(srv)

    def test_ls_json_against_a_version_1_server(self):
        """A server that knows only version 1 refuses the version-2 hello;
        ls --json dials again with 1 and lists without chunk fields."""
        lsn = socket.socket()
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(4)
        lsn.settimeout(10)
        self.addCleanup(lsn.close)
        hellos = []

        def serve():
            for _ in range(2):
                try:
                    s, _ = lsn.accept()
                except OSError:
                    return
                with s:
                    s.settimeout(10)
                    c = fc.FilesClient(s)
                    t, body = c.recv()
                    hellos.append(body[4])
                    if body[4] != 1:
                        c.send(fc.ERROR, bytes([fc.E_HELLO]) +
                               b"protocol version %d is not supported" % body[4])
                        continue
                    c.send(fc.HELLO_S, b"SKIT\x01\x05files")
                    t, body = c.recv()  # STAT of the root
                    c.send(fc.STAT_OK, b"d" + struct.pack("!QqHH", 0, 0, 0o755, 0))
                    t, body = c.recv()  # LIST
                    name = b"x.bin"
                    c.send(fc.ENTRIES, struct.pack("!H", 1) + b"f" +
                           struct.pack("!QqHH", 5, 1700000000, 0o644, len(name)) + name)
                    c.send(fc.LIST_END, struct.pack("!Q", 1))
                    try:
                        c.recv()
                    except (EOFError, OSError):
                        pass

        th = threading.Thread(target=serve, daemon=True)
        th.start()
        cp = self.run_files("ls", "127.0.0.1:%d" % lsn.getsockname()[1], "--json")
        th.join(15)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stderr, b"")
        self.assertEqual(hellos, [4, 1])
        self.assertEqual(json.loads(cp.stdout), [{"name": "x.bin", "type": "file", "size": 5,
                                                  "mtime": 1700000000, "mode": "0644"}])

    def test_client_vanishing_mid_hash(self):
        """A client that leaves while its file is hashed ends the hashing;
        the server goes on serving."""
        big = os.path.join(self.root, "big.bin")
        write_random(big, 64 * MiB)
        srv = self.files_server()
        fam, _, sa = helpers.parse_addr(srv.addr)
        c = fc.FilesClient.connect(sa, family=fam, version=2)
        c.send(fc.CHUNKS, b"big.bin")
        c.close()
        c = fc.FilesClient.connect(sa, family=fam, version=2)
        self._socks.append(c.sock)
        size, _, hashes, whole = c.chunks("big.bin")
        self.assertEqual(len(hashes), 16)
        self.assertEqual(whole, sha_file(big))
        self.stop(srv)
