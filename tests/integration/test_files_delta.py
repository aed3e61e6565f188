"""files: only what differs moves (docs/PROTOCOL.md 9.11, protocol version 3).

A same-size file changed in one byte moves one 4 MiB chunk, by put (PATCH,
PUT_AT) and by get (CHUNKS, GET_RANGE), single files and trees, counted by
a relay between client and server and by the --json summary; the result is
byte for byte the source. A cut transfer, run again, moves only the chunks
that did not arrive, and a tampered partial is caught chunk by chunk: only
the bad chunk moves again. The client keeps its own hash cache under
$XDG_CACHE_HOME/sockit/chunks, keyed as the server's.
"""

import json
import os

import helpers
from helpers import SOCKIT
from test_files_hcache import rchar
from test_files import MiB, FilesCase, Relay, partials, sha_file, write_random

CHUNK = 4 * MiB
SLACK = 64 * 1024  # frames, hellos, chunk lists: protocol overhead


def flip(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xA5]))


class Delta(FilesCase):

    def setUp(self):
        super().setUp()
        self.cache = self.path("cache")
        os.mkdir(self.cache)

    def files(self, *args):
        cp = self.run_cmd([SOCKIT] + list(args), timeout=120,
                          env={"XDG_CACHE_HOME": self.cache})
        self.assertClean(cp)
        return cp

    def via(self, srv, **cut):
        return Relay(helpers.parse_addr(srv.addr)[2], **cut)

    def summary(self, cp):
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return json.loads(cp.stdout.decode().strip().splitlines()[-1])

    def test_same_size_edit_put_moves_one_chunk(self):
        size = 64 * MiB
        src = write_random(os.path.join(self.local, "disk.img"), size)
        srv = self.files_server()
        s = self.summary(self.files("put", srv.addr, src, "disk.img", "--json"))
        self.assertEqual(s["bytes"], size)
        remote = os.path.join(self.root, "disk.img")
        # --json (the tree code's single file), through a counting relay
        flip(src, 37 * MiB + 5)
        relay = self.via(srv)
        s = self.summary(self.files("put", relay.addr, src, "disk.img", "--json"))
        relay.join(30)
        self.assertEqual(s["bytes"], CHUNK, s)
        self.assertLessEqual(relay.up, CHUNK + SLACK)
        self.assertEqual(sha_file(remote), sha_file(src))
        srv.wait_line(r"put disk.img: %d bytes \(%d sent, patched over 16 kept chunks of 16\)"
                      % (size, CHUNK))
        # read whole to be checked, the patched file's chunk list is cached
        st = os.stat(remote)
        self.assertIn("%x-%x" % (st.st_dev, st.st_ino),
                      os.listdir(os.path.join(self.root, ".sockit-partial.chunks")))
        # plain put (a progress-bar run), a byte at the very end
        flip(src, size - 1)
        relay = self.via(srv)
        cp = self.files("put", relay.addr, src, "disk.img")
        relay.join(30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertLessEqual(relay.up, CHUNK + SLACK)
        self.assertEqual(sha_file(remote), sha_file(src))
        # a byte on each side of a chunk border: two chunks
        flip(src, 2 * CHUNK - 1)
        flip(src, 2 * CHUNK)
        s = self.summary(self.files("put", srv.addr, src, "disk.img", "--json"))
        self.assertEqual(s["bytes"], 2 * CHUNK)
        self.assertEqual(sha_file(remote), sha_file(src))
        # the client recorded its file's chunk list, keyed as the server's
        st = os.stat(src)
        self.assertIn("%x-%x" % (st.st_dev, st.st_ino),
                      os.listdir(os.path.join(self.cache, "sockit", "chunks")))
        # a corrupt client record is not trusted: the file is hashed again
        rec = os.path.join(self.cache, "sockit", "chunks", "%x-%x" % (st.st_dev, st.st_ino))
        flip(rec, 200)
        flip(src, 9 * MiB)
        s = self.summary(self.files("put", srv.addr, src, "disk.img", "--json"))
        self.assertEqual(s["bytes"], CHUNK)
        self.assertEqual(sha_file(remote), sha_file(src))
        # a tree: only the changed chunk of its large file
        tree = os.path.join(self.local, "tree")
        os.mkdir(tree)
        big = write_random(os.path.join(tree, "vm.img"), 24 * MiB)
        write_random(os.path.join(tree, "small"), 100)
        s = self.summary(self.files("put", "-r", srv.addr, tree, "t", "--json"))
        self.assertEqual(s["bytes"], 24 * MiB + 100)
        flip(big, 13 * MiB)
        s = self.summary(self.files("put", "-r", srv.addr, tree, "t", "--json"))
        self.assertEqual((s["sent"], s["skipped"], s["bytes"]), (1, 1, CHUNK), s)
        self.assertEqual(sha_file(os.path.join(self.root, "t", "vm.img")), sha_file(big))
        self.assertEqual(partials(self.root), [])
        self.stop(srv)

    def test_same_size_edit_get_moves_one_chunk(self):
        size = 64 * MiB
        remote = write_random(os.path.join(self.root, "db.bin"), size)
        srv = self.files_server()
        dst = os.path.join(self.local, "db.bin")
        cp = self.files("get", srv.addr, "db.bin", dst)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(sha_file(dst), sha_file(remote))
        flip(remote, 21 * MiB + 3)
        relay = self.via(srv)
        cp = self.files("get", relay.addr, "db.bin", dst)
        relay.join(30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertLessEqual(relay.down, CHUNK + SLACK)
        self.assertEqual(sha_file(dst), sha_file(remote))
        srv.wait_line(r"get db.bin: bytes %d to %d of %d sent" % (5 * CHUNK, 6 * CHUNK, size))
        # --json: the byte count says the same
        flip(remote, 0)
        s = self.summary(self.files("get", srv.addr, "db.bin", dst, "--json"))
        self.assertEqual(s["bytes"], CHUNK)
        self.assertEqual(sha_file(dst), sha_file(remote))
        # get -r: only the changed chunk of the tree's large file
        os.mkdir(os.path.join(self.root, "t"))
        big = write_random(os.path.join(self.root, "t", "vm.img"), 24 * MiB)
        write_random(os.path.join(self.root, "t", "small"), 100)
        back = os.path.join(self.local, "t")
        s = self.summary(self.files("get", "-r", srv.addr, "t", back, "--json"))
        self.assertEqual(s["bytes"], 24 * MiB + 100)
        flip(big, 23 * MiB)
        relay = self.via(srv)
        s = self.summary(self.files("get", "-r", relay.addr, "t", back, "--json"))
        relay.join(30)
        self.assertEqual((s["sent"], s["skipped"], s["bytes"]), (1, 1, CHUNK), s)
        self.assertLessEqual(relay.down, CHUNK + SLACK)
        self.assertEqual(sha_file(os.path.join(back, "vm.img")), sha_file(big))
        self.assertEqual(os.stat(os.path.join(back, "vm.img")).st_mtime_ns,
                         os.stat(big).st_mtime_ns)
        self.assertEqual(partials(self.local), [])
        self.stop(srv)

    def cut_put(self, srv, src, remote, cut):
        relay = self.via(srv, cut_up=cut)
        cp = self.files("put", relay.addr, src, remote, "--quiet")
        relay.join(30)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertTrue(relay.cut_done)
        srv.close_line(relay.upstream_port)
        (part,) = partials(self.root)
        return part

    def test_resumed_put_moves_the_rest_and_only_bad_chunks(self):
        size = 40 * MiB
        src = write_random(os.path.join(self.local, "up.bin"), size)
        srv = self.files_server()
        for tamper in (False, True):
            with self.subTest(tamper=tamper):
                name = "up%d.bin" % tamper
                part = self.cut_put(srv, src, name, 21 * MiB + 12345)
                kept = os.path.getsize(part) // CHUNK
                self.assertGreaterEqual(kept, 4)
                want = size - kept * CHUNK
                if tamper:
                    flip(part, CHUNK + 777)  # chunk 1
                    want += CHUNK
                relay = self.via(srv)
                cp = self.files("put", relay.addr, src, name, "--quiet")
                relay.join(30)
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertEqual(sha_file(os.path.join(self.root, name)), sha_file(src))
                # what did not arrive, plus at most one chunk; plus the
                # tampered chunk, and nothing else
                self.assertLessEqual(relay.up, want + CHUNK + SLACK)
                self.assertGreaterEqual(relay.up, want)
                srv.wait_line(r"put %s: %d bytes \((\d+) sent, patched over" % (name, size))
                m = srv.find(r"put %s: %d bytes \((\d+) sent, patched over" % (name, size))[-1]
                self.assertLessEqual(int(m.group(1)), want + CHUNK)
                self.assertEqual(partials(self.root), [])
        self.stop(srv)

    def test_resumed_put_reads_none_of_the_kept_part(self):
        # The server keeps a cut upload's running hash at its last chunk
        # border: a resume is answered with the hash of the kept prefix
        # (PATCH_RESUME), the client checks its own bytes against it, and
        # the final whole-file check goes on from the kept hash: the server
        # reads < 0.1x the kept part. A touched partial no longer matches
        # and is hashed chunk by chunk (only its bad chunk moves again); a
        # source changed since the cut (its mtime put back) fails the check
        # and moves whole, and the result is the source.
        size = 64 * MiB
        src = write_random(os.path.join(self.local, "big.bin"), size)
        srv = self.files_server()
        for case in ("kept", "touched", "changed"):
            with self.subTest(case=case):
                name = "big-%s.bin" % case
                if case == "changed":
                    write_random(src, size)
                part = self.cut_put(srv, src, name, 41 * MiB + 4321)
                kept = os.path.getsize(part)
                border = kept // CHUNK * CHUNK
                self.assertGreaterEqual(border, 8 * CHUNK)
                want = size - border
                if case == "touched":
                    flip(part, 3 * CHUNK + 99)  # chunk 3: a new ctime, a bad chunk
                    want += CHUNK
                if case == "changed":
                    # the source, inside the kept part, its mtime put back
                    # (the upload id, hence the partial, stays the same)
                    st = os.stat(src)
                    flip(src, 2 * CHUNK + 7)
                    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns))
                    want = size
                before = rchar(srv.pid)
                relay = self.via(srv)
                cp = self.files("put", relay.addr, src, name, "--quiet")
                relay.join(30)
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertEqual(sha_file(os.path.join(self.root, name)), sha_file(src))
                srv.wait_line(r"put %s: %d bytes \(" % (name, size))
                read = rchar(srv.pid) - before
                self.assertLessEqual(relay.up, want + CHUNK + SLACK)
                self.assertGreaterEqual(relay.up, want)
                line = (r"put %s: resuming after the %d bytes kept, their hash kept from the cut "
                        r"upload \(not read\)" % (name, border))
                if case == "touched":
                    self.assertEqual(srv.find(line), [])
                    # hashed chunk by chunk, then read again whole at the end
                    self.assertGreaterEqual(read, size + kept)
                else:
                    self.assertNotEqual(srv.find(line), [])
                    self.assertLess(read, border // 10)
                self.assertEqual(partials(self.root), [])
        self.stop(srv)

    def test_resumed_get_moves_the_rest_and_only_bad_chunks(self):
        size = 40 * MiB
        remote = write_random(os.path.join(self.root, "down.bin"), size)
        srv = self.files_server()
        for tamper in (False, True):
            with self.subTest(tamper=tamper):
                dst = os.path.join(self.local, "down%d.bin" % tamper)
                relay = self.via(srv, cut_down=21 * MiB + 999)
                cp = self.files("get", relay.addr, "down.bin", dst, "--quiet")
                relay.join(30)
                self.assertEqual(cp.returncode, 1, cp.stderr)
                self.assertFalse(os.path.exists(dst))
                (part,) = partials(self.local)
                kept = os.path.getsize(part) // CHUNK
                self.assertGreaterEqual(kept, 4)
                want = size - kept * CHUNK
                if tamper:
                    flip(part, 2 * CHUNK + 1)  # chunk 2
                    want += CHUNK
                relay = self.via(srv)
                cp = self.files("get", relay.addr, "down.bin", dst, "--quiet")
                relay.join(30)
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertEqual(sha_file(dst), sha_file(remote))
                self.assertLessEqual(relay.down, want + CHUNK + SLACK)
                self.assertGreaterEqual(relay.down, want)
                self.assertEqual(partials(self.local), [])
        self.stop(srv)


class TreeBatch(FilesCase):
    """put -r's small files: mode and mtime ride on PUT_END (version 3),
    and the server makes a run of them durable together (one syncfs, the
    renames, one fsync per directory) before it answers."""

    def test_small_files_committed_in_batches(self):
        src = os.path.join(self.local, "src")
        want = {}
        for d in range(3):
            os.makedirs(os.path.join(src, "d%d" % d))
            for i in range(100):
                p = write_random(os.path.join(src, "d%d" % d, "f%03d" % i), 1 + i * 37)
                mode = (0o600, 0o644, 0o755, 0o4755)[i % 4]
                os.chmod(p, mode)
                os.utime(p, ns=(1, 1_600_000_000_123_456_789 + i))
                want["d%d/f%03d" % (d, i)] = (mode & 0o777, 1_600_000_000_123_456_789 + i)
        srv = self.files_server()
        cp = self.run_files("put", "-r", srv.addr, src, "dst", "--json")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(json.loads(cp.stdout)["sent"], 300)
        for rel, (mode, mtime) in want.items():
            st = os.stat(os.path.join(self.root, "dst", rel))
            self.assertEqual((st.st_mode & 0o7777, st.st_mtime_ns), (mode, mtime), rel)
            self.assertEqual(sha_file(os.path.join(self.root, "dst", rel)),
                             sha_file(os.path.join(src, rel)))
        counts = [int(m.group(1)) for m in srv.find(r"put dst/\S+: .* \(committed with (\d+)\)")]
        self.assertEqual(len(counts), 300)
        self.assertGreater(max(counts), 1, "every upload was committed alone")
        self.assertEqual(partials(self.root), [])
        # a re-run skips them all: the mtimes (to the ns) made it
        cp = self.run_files("put", "-r", srv.addr, src, "dst", "--json")
        self.assertEqual(json.loads(cp.stdout)["skipped"], 300)
        self.stop(srv)

    def test_put_end_with_mode_and_mtime_needs_version_3(self):
        import hashlib
        import struct
        import files_client as fc
        srv = self.files_server()
        fam, _, sa = helpers.parse_addr(srv.addr)
        data = b"hello, meta\n"
        digest = hashlib.sha256(data).digest()
        meta = struct.pack("!HqI", 0o4711, 1_234_567_890, 987_654_321)
        c3 = fc.FilesClient.connect(sa, family=fam, version=3)
        self._socks.append(c3.sock)
        have, _ = c3.put_begin("m.txt", len(data), bytes(16))
        self.assertEqual(have, 0)
        c3.put_from(0)
        c3.send_data(data)
        c3.send(fc.PUT_END, digest + meta)
        t, body = c3.expect(fc.PUT_OK)
        self.assertEqual(body[8:40], digest)
        st = os.stat(os.path.join(self.root, "m.txt"))
        # setuid dropped (no --keep-special-bits), the rest kept, to the ns
        self.assertEqual((st.st_mode & 0o7777, st.st_mtime_ns),
                         (0o711, 1_234_567_890_987_654_321))
        # a version-2 session knows no such PUT_END: a protocol error
        c2 = fc.FilesClient.connect(sa, family=fam, version=2)
        self._socks.append(c2.sock)
        c2.put_begin("m2.txt", len(data), bytes(16))
        c2.put_from(0)
        c2.send_data(data)
        c2.send(fc.PUT_END, digest + meta)
        with self.assertRaises(fc.ServerError) as cm:
            c2.expect(fc.PUT_OK)
        self.assertEqual(cm.exception.code, fc.E_PROTOCOL)
        self.assertFalse(os.path.exists(os.path.join(self.root, "m2.txt")))
        self.stop(srv)


class ResumeProtocol(FilesCase):
    """PATCH_RESUME (docs/PROTOCOL.md 9.12), spoken by a client written from
    the document: only to version-4 sessions, with the SHA-256 of the kept
    prefix; a version-3 session gets the chunk hashes as before."""

    def test_patch_resume_only_for_version_4(self):
        import hashlib
        import struct
        import files_client as fc
        PATCH, PUT_AT, PATCH_RESUME = 0x4D, 0x4E, 0x5B
        srv = self.files_server()
        fam, _, sa = helpers.parse_addr(srv.addr)
        data = os.urandom(3 * CHUNK + 1000)
        uid = bytes(range(1, 17))
        head = struct.pack("!Q", len(data)) + uid + b"r.bin"

        def session(version):
            c = fc.FilesClient.connect(sa, family=fam, version=version)
            self._socks.append(c.sock)
            self.assertEqual(c.version, version)
            c.send(PATCH, head)
            return c

        # a version-4 upload cut after 2 chunks and 5,000 bytes
        c = session(4)
        t, body = c.expect(fc.CHUNKS_END)  # nothing kept yet
        self.assertEqual(struct.unpack("!Q", body[:8])[0], 0)
        c.send(PUT_AT, struct.pack("!Q", 0))
        c.send_data(data[:2 * CHUNK + 5000])
        c.close()
        srv.wait_line(r"put r.bin interrupted after %d of %d bytes" % (2 * CHUNK + 5000, len(data)))
        # version 3: the kept part's chunk hashes, read from the partial
        c = session(3)
        port = c.sock.getsockname()[1]
        hashes = b""
        while True:
            t, body = c.expect(fc.CHUNK_HASHES, fc.CHUNKS_END)
            if t == fc.CHUNKS_END:
                break
            hashes += body[8:]
        self.assertEqual(hashes, b"".join(hashlib.sha256(p).digest() for p in (
            data[:CHUNK], data[CHUNK:2 * CHUNK], data[2 * CHUNK:2 * CHUNK + 5000])))
        self.assertEqual(struct.unpack("!Q", body[:8])[0], 2 * CHUNK + 5000)
        c.close()
        srv.close_line(port)
        # version 4: the hash of the first 2 chunks, as kept from the cut
        c = session(4)
        t, body = c.expect(PATCH_RESUME)
        self.assertEqual(len(body), 40)
        self.assertEqual(struct.unpack("!Q", body[:8])[0], 2 * CHUNK)
        self.assertEqual(body[8:], hashlib.sha256(data[:2 * CHUNK]).digest())
        c.send(PUT_AT, struct.pack("!Q", 2 * CHUNK))
        c.send_data(data[2 * CHUNK:])
        digest = hashlib.sha256(data).digest()
        c.send(fc.PUT_END, digest)
        t, body = c.expect(fc.PUT_OK)
        self.assertEqual(body[8:40], digest)
        with open(os.path.join(self.root, "r.bin"), "rb") as f:
            self.assertEqual(f.read(), data)
        srv.wait_line(r"put r.bin: resuming after the %d bytes kept" % (2 * CHUNK))
        self.stop(srv)
