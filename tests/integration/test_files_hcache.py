"""files hash cache (docs/PROTOCOL.md 9.10): the server keeps each file's
chunk hashes in a hidden index beneath its root (.sockit-partial.chunks/),
keyed by device, inode, size, mtime and ctime. A second CHUNKS of an
unchanged file reads no file data (the server's /proc/PID/io rchar barely
moves, and its log says so); a touched or rewritten file is hashed again;
a corrupt, truncated or swapped record is never trusted (hashed again,
and the record rebuilt). The index is never listed, transferred, deleted
by --delete, swept, or reachable by clients, and a --read-only server
writes none.
"""

import json
import os
import time

import helpers
from test_files import MiB, FilesCase, sha_file, write_random
from test_files_chunks import split_sums

import files_client as fc

CACHE = ".sockit-partial.chunks"
SIZE = 64 * MiB


def rchar(pid):
    """Bytes the process has read through read(2)-like calls, page cache or not."""
    with open("/proc/%d/io" % pid) as f:
        for line in f:
            k, v = line.split(":")
            if k == "rchar":
                return int(v)
    raise AssertionError("no rchar in /proc/%d/io" % pid)


class HashCache(FilesCase):

    def v2(self, srv):
        fam, _, sa = helpers.parse_addr(srv.addr)
        c = fc.FilesClient.connect(sa, family=fam, version=2)
        self._socks.append(c.sock)
        self.assertEqual(c.version, 2)
        return c

    def chunks_read(self, srv, c, path):
        """CHUNKS of path: (hashes, whole, bytes the server read meanwhile)."""
        before = rchar(srv.pid)
        _, _, hashes, whole = c.chunks(path)
        return hashes, whole, rchar(srv.pid) - before

    def records(self):
        d = os.path.join(self.root, CACHE)
        return sorted(os.listdir(d)) if os.path.isdir(d) else []

    def record_of(self, path):
        st = os.stat(path)
        name = "%x-%x" % (st.st_dev, st.st_ino)
        self.assertIn(name, self.records())
        return os.path.join(self.root, CACHE, name)

    def test_unchanged_file_reads_no_data_changed_is_rehashed(self):
        big = write_random(os.path.join(self.root, "big.img"), SIZE)
        want = split_sums(self, big)
        srv = self.files_server()
        c = self.v2(srv)
        hashes, whole, read = self.chunks_read(srv, c, "big.img")
        self.assertEqual(hashes, want)
        self.assertEqual(whole, sha_file(big))
        self.assertGreaterEqual(read, SIZE, "the first CHUNKS did not read the file")
        srv.wait_line(r"chunks big.img: %d bytes, 16 chunks hashed" % SIZE)
        rec = self.record_of(big)
        # Unchanged: no file data read, the same answer, and it says so.
        for i in range(3):
            hashes, whole, read = self.chunks_read(srv, c, "big.img")
            self.assertEqual((hashes, whole), (want, sha_file(big)))
            self.assertLess(read, 64 * 1024, "an unchanged file was read again (%d bytes)" % read)
        srv.wait_line(r"chunks big.img: %d bytes, 16 chunks from the hash cache \(no data read\)"
                      % SIZE, count=3)
        # ls --json by the real client: the same, still nothing read
        before = rchar(srv.pid)
        cp = self.run_files("ls", srv.addr, "big.img", "--json")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        (e,) = json.loads(cp.stdout)
        self.assertEqual(e["chunks"], want)
        self.assertLess(rchar(srv.pid) - before, 64 * 1024)
        # Touched (mtime only, same bytes): hashed again.
        st = os.stat(big)
        os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
        hashes, _, read = self.chunks_read(srv, c, "big.img")
        self.assertEqual(hashes, want)
        self.assertGreaterEqual(read, SIZE, "a touched file was answered from the cache")
        # Rewritten in place with the old mtime put back: only the ctime
        # tells, and it is part of the key.
        st = os.stat(big)
        with open(big, "r+b") as f:
            f.seek(5 * 4 * MiB + 99)
            b = f.read(1)
            f.seek(5 * 4 * MiB + 99)
            f.write(bytes([b[0] ^ 0x5A]))
        os.utime(big, ns=(st.st_atime_ns, st.st_mtime_ns))
        self.assertEqual(os.stat(big).st_mtime_ns, st.st_mtime_ns)
        hashes, whole, read = self.chunks_read(srv, c, "big.img")
        self.assertGreaterEqual(read, SIZE, "a rewritten file was answered from the cache")
        self.assertEqual(hashes, split_sums(self, big))
        self.assertEqual(whole, sha_file(big))
        self.assertNotEqual(hashes[5], want[5])
        self.assertEqual(hashes[:5] + hashes[6:], want[:5] + want[6:])
        # ... and the rebuilt record serves the next ask without reading.
        _, _, read = self.chunks_read(srv, c, "big.img")
        self.assertLess(read, 64 * 1024)
        # A file replaced by another (new inode, same size and mtime): its own record.
        new = write_random(os.path.join(self.root, "big.new"), SIZE)
        os.utime(new, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.rename(new, big)
        hashes, whole, read = self.chunks_read(srv, c, "big.img")
        self.assertGreaterEqual(read, SIZE)
        self.assertEqual(whole, sha_file(big))
        self.assertEqual(hashes, split_sums(self, big))
        self.assertIsNotNone(rec)
        self.stop(srv)

    def test_corrupt_records_are_never_trusted(self):
        f = write_random(os.path.join(self.root, "f.bin"), 3 * 4 * MiB + 5)
        want = split_sums(self, f)
        srv = self.files_server()
        c = self.v2(srv)
        self.assertEqual(c.chunks("f.bin")[2], want)
        rec = self.record_of(f)
        good = open(rec, "rb").read()
        # the record's layout: a 92-byte head, the 4 hashes, its own SHA-256
        self.assertEqual(len(good), 92 + 4 * 32 + 32)

        def damaged(data, label):
            with open(rec, "wb") as out:
                out.write(data)
            hashes, whole, read = self.chunks_read(srv, c, "f.bin")
            self.assertEqual(hashes, want, label)
            self.assertEqual(whole, sha_file(f), label)
            self.assertGreaterEqual(read, os.path.getsize(f), "%s: the record was trusted" % label)
            # rebuilt: the next ask is a hit and reads nothing
            _, _, read = self.chunks_read(srv, c, "f.bin")
            self.assertLess(read, 64 * 1024, "%s: the record was not rebuilt" % label)
            self.assertEqual(open(rec, "rb").read(), good, label)

        # one chunk hash changed (its self-check now fails)
        bad = bytearray(good)
        bad[92 + 32 + 3] ^= 0xFF
        damaged(bytes(bad), "a flipped hash byte")
        # a record whose key (here the inode) is not the file's
        bad = bytearray(good)
        bad[16] ^= 0x01  # the inode
        damaged(bytes(bad), "another inode")
        damaged(good[:len(good) - 7], "a truncated record")
        damaged(good + b"\0" * 32, "a longer record")
        damaged(b"", "an empty record")
        # a record that is a symbolic link to a good-looking file elsewhere
        elsewhere = self.path("elsewhere")
        with open(elsewhere, "wb") as out:
            out.write(good)
        os.unlink(rec)
        os.symlink(elsewhere, rec)
        hashes, _, read = self.chunks_read(srv, c, "f.bin")
        self.assertEqual(hashes, want)
        self.assertGreaterEqual(read, os.path.getsize(f), "a linked record was followed")
        self.assertFalse(os.path.islink(rec), "the link was not replaced by a real record")
        self.stop(srv)

    def test_the_index_is_hidden_and_untouchable(self):
        os.mkdir(os.path.join(self.root, "d"))
        write_random(os.path.join(self.root, "d", "a.bin"), 5 * MiB)
        write_random(os.path.join(self.root, "top.bin"), 1000)
        srv = self.files_server("--partial-ttl", "1")
        c = self.v2(srv)
        c.chunks("d/a.bin")
        c.chunks("top.bin")
        self.assertEqual(len(self.records()), 2)
        # a sweep pass (--partial-ttl 1 runs one every second) leaves it;
        # make the records look old first
        for r in self.records():
            os.utime(os.path.join(self.root, CACHE, r), (1, 1))
        os.utime(os.path.join(self.root, CACHE), (1, 1))
        # listings: LIST, TREE (by ls, get -r) and ls --json
        names = [e["name"] for e in c.list("")]
        self.assertEqual(sorted(names), [b"d", b"top.bin"])
        cp = self.run_files("ls", srv.addr, "--json")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(sorted(e["name"] for e in json.loads(cp.stdout)), ["d", "top.bin"])
        back = os.path.join(self.local, "back")
        cp = self.run_files("get", "-r", srv.addr, ".", back, "--quiet")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(sorted(os.listdir(back)), ["d", "top.bin"])
        # no request names it, in any way
        for path in (CACHE, CACHE + "/x", "d/../" + CACHE):
            for fn in (c.stat, c.list, c.chunks):
                with self.subTest(fn=fn.__name__, path=path):
                    self.assertServerError(fc.E_BADPATH, fn, path)
            self.assertServerError(fc.E_BADPATH, c.get, path)
        rec = self.records()[0]
        self.assertServerError(fc.E_BADPATH, c.get, CACHE + "/" + rec)
        cp = self.run_files("get", srv.addr, CACHE + "/" + rec, os.path.join(self.local, "x"))
        self.assertNotEqual(cp.returncode, 0)
        cp = self.run_files("put", srv.addr, os.path.join(self.root, "top.bin"), CACHE + "/" + rec)
        self.assertNotEqual(cp.returncode, 0)
        # put -r --delete of a tree that lacks it removes everything else
        # (after get -r of the root above: a second TREE of the root once
        # came back empty, the first having read a shared offset to the end)
        src = os.path.join(self.local, "src")
        os.mkdir(src)
        write_random(os.path.join(src, "only.bin"), 10)
        cp = self.run_files("put", "-r", "--delete", srv.addr, src, ".", "--quiet")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(sorted(os.listdir(self.root)), sorted([CACHE, "only.bin"]))
        # the sweep has had its passes: the index is still there
        srv.wait_line(r"chunks top.bin")
        time.sleep(2.5)
        self.assertTrue(os.path.isdir(os.path.join(self.root, CACHE)))
        # ... but not the records of the files --delete removed (swept)
        deadline = time.monotonic() + 10
        while self.records() and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(self.records(), [])
        self.stop(srv)

    def test_stale_records_and_crash_leftovers_are_swept(self):
        # Disk use stays bounded: the sweep (--partial-ttl) removes the
        # records of deleted and renamed-over files and the temporary
        # record files a crash left; live files keep theirs.
        for n in "abcd":
            write_random(os.path.join(self.root, n + ".bin"), 100 * 1024 + ord(n))
        srv = self.files_server("--partial-ttl", "1")
        c = self.v2(srv)
        for n in "abcd":
            c.chunks(n + ".bin")
        recs = {n: os.path.basename(self.record_of(os.path.join(self.root, n + ".bin")))
                for n in "abcd"}
        idx = os.path.join(self.root, CACHE)
        old_tmp = os.path.join(idx, ".tmp.%s.0011223344556677" % recs["a"])
        new_tmp = os.path.join(idx, ".tmp.%s.8899aabbccddeeff" % recs["b"])
        for t in (old_tmp, new_tmp):
            with open(t, "wb") as f:
                f.write(b"torn")
        os.utime(old_tmp, (time.time() - 3600, time.time() - 3600))
        os.unlink(os.path.join(self.root, "a.bin"))  # deleted
        os.rename(os.path.join(self.root, "c.bin"), os.path.join(self.root, "b.bin"))  # b renamed over
        want = sorted([".tmp.%s.8899aabbccddeeff" % recs["b"], recs["c"], recs["d"]])
        deadline = time.monotonic() + 15
        while self.records() != want and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertEqual(self.records(), want)
        srv.wait_line(r"files: removed \d+ stale hash cache records")
        # a live untouched file's record still answers: nothing read
        hashes, whole, read = self.chunks_read(srv, c, "d.bin")
        self.assertEqual(whole, sha_file(os.path.join(self.root, "d.bin")))
        self.assertLess(read, 64 * 1024)
        self.stop(srv)

    def test_read_only_server_writes_no_index(self):
        write_random(os.path.join(self.root, "f.bin"), 5 * MiB)
        srv = self.files_server("--read-only")
        c = self.v2(srv)
        want = split_sums(self, os.path.join(self.root, "f.bin"))
        for _ in range(2):
            hashes, _, read = self.chunks_read(srv, c, "f.bin")
            self.assertEqual(hashes, want)
            self.assertGreaterEqual(read, 5 * MiB)
        self.assertFalse(os.path.exists(os.path.join(self.root, CACHE)))
        self.stop(srv)
