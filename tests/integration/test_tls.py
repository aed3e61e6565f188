"""tls:// (SPEC §8, issue 7): a TLS echo server driven by `openssl s_client`
and Python's ssl module; `sockit connect` verifying by CA, by pin (both
spellings), refusing a wrong pin, an expired and a wrong-host certificate
and an unverifiable server, and warning under --insecure; exec, files and
chat over TLS; a peer that never handshakes, garbage instead of a
ClientHello, and resets mid-handshake with the descriptor count back to
baseline. Certificates come from `sockit cert` or the openssl CLI, in the
test's private temp dir."""

import hashlib
import os
import re
import secrets
import select
import socket
import ssl
import stat
import struct
import subprocess
import time

from helpers import (IO_TIMEOUT, SOCKIT, SockitTestCase, closed_by_peer, recv_exact,
                     recv_line, wait_until)

FPR_RE = re.compile(rb"SHA256 fingerprint \(for --pin\): ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})")


def tcp_addr(addr):
    """(host, port) of a tls://HOST:PORT address."""
    assert addr.startswith("tls://"), addr
    host, _, port = addr[6:].rpartition(":")
    return host, int(port)


class TlsBase(SockitTestCase):
    def setUp(self):
        super().setUp()
        cp = self.sockit("cert", self.path("srv"))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        m = FPR_RE.search(cp.stdout)
        self.assertIsNotNone(m, cp.stdout)
        self.fpr = m.group(1).decode()
        self.crt, self.key = self.path("srv.crt"), self.path("srv.key")

    def tls_serve(self, service="echo", *extra, addr="tls://127.0.0.1:0"):
        return self.serve(service, addr, "--cert", self.crt, "--key", self.key, *extra)

    def py_client(self, addr, cafile=None, hostname="localhost", **ctxkw):
        ctx = ssl.create_default_context(cafile=cafile or self.crt)
        for k, v in ctxkw.items():
            setattr(ctx, k, v)
        raw = socket.create_connection(tcp_addr(addr), timeout=IO_TIMEOUT)
        return self.track(ctx.wrap_socket(raw, server_hostname=hostname)), ctx

    def openssl_cert(self, name, san, cn="localhost", expired=False):
        """A self-signed certificate made by the openssl CLI (an expired one
        through `openssl ca`, the only 3.0 way to set its dates)."""
        key, crt = self.path(name + ".key"), self.path(name + ".crt")
        if not expired:
            cp = self.run_cmd(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                               "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                               "-subj", "/CN=" + cn, "-addext", "subjectAltName=" + san,
                               "-days", "30"])
            self.assertEqual(cp.returncode, 0, cp.stderr)
            return crt, key
        d = self.path(name + "-ca")
        os.mkdir(d)
        with open(os.path.join(d, "ca.cnf"), "w") as f:
            f.write("[ca]\ndefault_ca=d\n[d]\ndir=.\ndatabase=./index.txt\nnew_certs_dir=.\n"
                    "serial=./serial\ndefault_md=sha256\npolicy=p\ncopy_extensions=copy\n"
                    "unique_subject=no\nx509_extensions=v3\n[p]\ncommonName=supplied\n"
                    "[v3]\nbasicConstraints=critical,CA:TRUE\n"
                    "keyUsage=critical,digitalSignature,keyCertSign\n")
        open(os.path.join(d, "index.txt"), "w").close()
        with open(os.path.join(d, "serial"), "w") as f:
            f.write("01\n")
        csr = os.path.join(d, "req.csr")
        for argv in (["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", csr,
                      "-subj", "/CN=" + cn, "-addext", "subjectAltName=" + san],
                     ["openssl", "ca", "-batch", "-config", "ca.cnf", "-selfsign", "-keyfile", key,
                      "-in", csr, "-out", crt, "-startdate", "20200101000000Z",
                      "-enddate", "20200201000000Z"]):
            cp = subprocess.run(argv, cwd=d, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                timeout=30)
            self.assertEqual(cp.returncode, 0, cp.stderr)
        return crt, key

    def connect_cli(self, addr, *opts, data=b"hello over tls\n", timeout=20):
        return self.sockit("connect", addr, "--timeout", "5", *opts, input=data, timeout=timeout)

    def assertRefused(self, cp, *needles):
        """Exit 1, exactly one line on stderr (naming the reason), nothing echoed."""
        err = cp.stderr.decode("utf-8", "replace")
        self.assertEqual(cp.returncode, 1, err)
        self.assertEqual(cp.stdout, b"")
        lines = [l for l in err.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, err)
        for n in needles:
            self.assertIn(n, lines[0])
        self.assertClean(cp)


class TestCert(TlsBase):
    def test_cert_files_and_fingerprint(self):
        self.assertEqual(stat.S_IMODE(os.stat(self.key).st_mode), 0o600)
        cp = self.run_cmd(["openssl", "x509", "-in", self.crt, "-noout", "-fingerprint", "-sha256",
                           "-ext", "subjectAltName"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        out = cp.stdout.decode()
        self.assertIn("Fingerprint=" + self.fpr, out)
        for entry in ("DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1",
                      "DNS:srv"):
            self.assertIn(entry, out)
        cp = self.run_cmd(["openssl", "pkey", "-in", self.key, "-noout", "-text"])
        self.assertIn(b"prime256v1", cp.stdout)

    def test_cert_never_replaces_files(self):
        before = open(self.key, "rb").read()
        cp = self.sockit("cert", self.path("srv"))
        self.assertEqual(cp.returncode, 1)
        self.assertIn(b"already exists", cp.stderr)
        self.assertEqual(open(self.key, "rb").read(), before)
        cp = self.sockit("cert", self.path("x"), "--days", "0")
        self.assertEqual(cp.returncode, 2)
        self.assertFalse(os.path.exists(self.path("x.key")))

    def test_serve_tls_needs_cert_and_key(self):
        cp = self.sockit("serve", "echo", "tls://127.0.0.1:0", timeout=10)
        self.assertEqual(cp.returncode, 2)
        self.assertIn(b"--cert FILE and --key FILE", cp.stderr)
        cp = self.sockit("serve", "echo", "127.0.0.1:0", "--cert", self.crt, "--key", self.key,
                         timeout=10)
        self.assertEqual(cp.returncode, 2)
        self.assertIn(b"tls:// addresses only", cp.stderr)
        other, _ = self.openssl_cert("other", "DNS:localhost")
        cp = self.sockit("serve", "echo", "tls://127.0.0.1:0", "--cert", other, "--key", self.key,
                         timeout=10)
        self.assertEqual(cp.returncode, 2)
        self.assertIn(b"does not belong", cp.stderr)


class TestInterop(TlsBase):
    def test_openssl_s_client(self):
        srv = self.tls_serve("echo", "--framing", "line")
        host, port = tcp_addr(srv.addr)
        p = self.popen(["openssl", "s_client", "-connect", "%s:%d" % (host, port), "-CAfile",
                        self.crt, "-verify_return_error", "-verify_hostname", "localhost",
                        "-servername", "localhost", "-brief"],
                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdin.write(b"hello from s_client\n")
        p.stdin.flush()
        got = b""
        deadline = time.monotonic() + 10
        while b"hello from s_client\n" not in got and time.monotonic() < deadline:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                got += chunk
        self.assertIn(b"hello from s_client\n", got)
        p.stdin.close()
        p.wait(timeout=10)
        err = p.stderr.read().decode("utf-8", "replace")
        self.assertIn("Verification: OK", err)
        self.assertIn("Protocol version: TLSv1.3", err)

    def test_openssl_s_client_tls12(self):
        srv = self.tls_serve("echo")
        host, port = tcp_addr(srv.addr)
        cp = self.run_cmd(["openssl", "s_client", "-connect", "%s:%d" % (host, port), "-CAfile",
                           self.crt, "-verify_return_error", "-tls1_2", "-brief"],
                          input=b"")
        err = cp.stderr.decode("utf-8", "replace")
        self.assertIn("Protocol version: TLSv1.2", err)
        self.assertIn("Verification: OK", err)

    def test_python_ssl_echo_large_and_resumed(self):
        srv = self.tls_serve("echo")
        s, ctx = self.py_client(srv.addr)
        self.assertEqual(s.version(), "TLSv1.3")
        data = os.urandom(3 << 20)
        # Send and receive at once: the echo pushes back once its output is
        # full, which is only safe to test with a reader running.
        got = bytearray()
        s.setblocking(False)
        sent = 0
        deadline = time.monotonic() + 30
        while len(got) < len(data) and time.monotonic() < deadline:
            w = [s] if sent < len(data) else []
            r, w, _ = select.select([s], w, [], 1)
            if w:
                try:
                    sent += s.send(data[sent:sent + 65536])
                except ssl.SSLWantWriteError:
                    pass
            if r or s.pending():
                try:
                    while True:
                        chunk = s.recv(1 << 20)
                        if not chunk:
                            break
                        got += chunk
                except (ssl.SSLWantReadError, BlockingIOError):
                    pass
        self.assertEqual(hashlib.sha256(bytes(got)).hexdigest(), hashlib.sha256(data).hexdigest())
        session = s.session
        s.setblocking(True)
        s.close()
        self.assertIsNotNone(session)
        raw = socket.create_connection(tcp_addr(srv.addr), timeout=IO_TIMEOUT)
        s2 = self.track(ctx.wrap_socket(raw, server_hostname="localhost", session=session))
        s2.sendall(b"again")
        self.assertEqual(recv_exact(s2, 5), b"again")
        self.assertTrue(s2.session_reused, "the server did not resume the session (tickets)")

    def test_clean_shutdown_both_ways(self):
        # The client's close_notify is the end of its stream; the server
        # answers what it owes, then its own close_notify (unwrap() fails
        # on a bare TCP close).
        srv = self.tls_serve("echo")
        s, _ = self.py_client(srv.addr)
        s.sendall(b"abc")
        self.assertEqual(recv_exact(s, 3), b"abc")
        plain = self.track(s.unwrap())
        self.assertEqual(plain.recv(10), b"")
        _, _, reason = srv.close_line(plain.getsockname()[1])
        self.assertEqual(reason, "peer closed")

    def test_greet_and_frames_over_tls(self):
        srv = self.tls_serve("greet")
        s, _ = self.py_client(srv.addr)
        self.assertEqual(recv_line(s), b"Thank you for connecting\r\n")
        self.assertEqual(s.recv(100), b"")  # greet closes after its message: close_notify
        srv2 = self.tls_serve("echo", "--framing", "frame")
        s, _ = self.py_client(srv2.addr)
        for n in (0, 1, 70000):
            body = os.urandom(n)
            s.sendall(struct.pack("!I", n) + body)
            (m,) = struct.unpack("!I", recv_exact(s, 4))
            self.assertEqual(recv_exact(s, m), body)


class TestConnectVerification(TlsBase):
    def setUp(self):
        super().setUp()
        self.srv = self.tls_serve("echo")

    def test_ca(self):
        cp = self.connect_cli(self.srv.addr, "--ca", self.crt)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"hello over tls\n")
        self.assertEqual(cp.stderr, b"")
        host, port = tcp_addr(self.srv.addr)
        cp = self.connect_cli("tls://localhost:%d" % port, "--ca", self.crt)
        self.assertEqual(cp.stdout, b"hello over tls\n", cp.stderr)

    def test_sni_sent_for_names_only(self):
        srv = self.tls_serve("echo", "--log-level", "debug")
        _, port = tcp_addr(srv.addr)
        cp = self.connect_cli("tls://localhost:%d" % port, "--ca", self.crt)
        self.assertEqual(cp.stdout, b"hello over tls\n", cp.stderr)
        srv.wait_line(r"tls: \S+ TLSv1\.3 \S+.*, sni=localhost$")
        cp = self.connect_cli(srv.addr, "--ca", self.crt)
        self.assertEqual(cp.stdout, b"hello over tls\n", cp.stderr)
        lines = srv.wait_line(r"tls: \S+ TLSv1\.3 ", count=2)
        self.assertNotIn("sni=", lines[1].string)  # an IP address is not a server name

    def test_pin_both_spellings(self):
        for pin in (self.fpr, self.fpr.replace(":", "").lower(),
                    "sha256 Fingerprint=" + self.fpr):
            cp = self.connect_cli(self.srv.addr, "--pin", pin)
            self.assertEqual(cp.returncode, 0, cp.stderr)
            self.assertEqual(cp.stdout, b"hello over tls\n")

    def test_large_stream_through_connect(self):
        data = os.urandom(4 << 20)
        cp = self.connect_cli(self.srv.addr, "--ca", self.crt, data=data, timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(hashlib.sha256(cp.stdout).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_wrong_pin_refused(self):
        wrong = "00" * 31 + "01"
        cp = self.connect_cli(self.srv.addr, "--pin", wrong)
        self.assertRefused(cp, "does not match --pin")
        self.srv.wait_line(r"tls: \S+ dropped: TLS handshake failed")

    def test_bad_pin_is_usage_error(self):
        cp = self.connect_cli(self.srv.addr, "--pin", "AB:CD")
        self.assertEqual(cp.returncode, 2)

    def test_unverifiable_refused(self):
        cp = self.connect_cli(self.srv.addr)
        self.assertRefused(cp, "self-signed", "--ca FILE or --pin")

    def test_insecure_warns(self):
        cp = self.connect_cli(self.srv.addr, "--insecure")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"hello over tls\n")
        self.assertIn(b"WARNING: --insecure", cp.stderr)

    def test_expired_refused(self):
        crt, key = self.openssl_cert("old", "DNS:localhost,IP:127.0.0.1", expired=True)
        srv = self.serve("echo", "tls://127.0.0.1:0", "--cert", crt, "--key", key)
        cp = self.connect_cli(srv.addr, "--ca", crt)
        self.assertRefused(cp, "expired")
        # By pin the fingerprint alone vouches for the certificate, dates
        # aside (what pinning a self-made certificate means).
        fp = self.run_cmd(["openssl", "x509", "-in", crt, "-noout", "-fingerprint", "-sha256"])
        cp = self.connect_cli(srv.addr, "--pin", fp.stdout.decode().strip())
        self.assertEqual(cp.stdout, b"hello over tls\n", cp.stderr)

    def test_wrong_host_refused(self):
        crt, key = self.openssl_cert("elsewhere", "DNS:elsewhere.example", cn="elsewhere.example")
        srv = self.serve("echo", "tls://127.0.0.1:0", "--cert", crt, "--key", key)
        cp = self.connect_cli(srv.addr, "--ca", crt)
        self.assertRefused(cp, "mismatch")
        _, port = tcp_addr(srv.addr)
        cp = self.connect_cli("tls://localhost:%d" % port, "--ca", crt)
        self.assertRefused(cp, "mismatch")

    def test_plain_client_options_refused(self):
        cp = self.sockit("connect", "127.0.0.1:1", "--ca", self.crt, input=b"")
        self.assertEqual(cp.returncode, 2)
        cp = self.connect_cli(self.srv.addr, "--ca", self.crt, "--insecure")
        self.assertEqual(cp.returncode, 2)


class TestServicesOverTls(TlsBase):
    def token(self):
        path = self.path("token")
        with open(path, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(path, 0o600)
        return path

    def test_exec(self):
        tok = self.token()
        srv = self.tls_serve("exec", "--token-file", tok)
        cp = self.sockit("exec", srv.addr, "--ca", self.crt, "--token-file", tok, "--",
                         "sh", "-c", "cat; echo out; echo err >&2; exit 3", input=b"in\n")
        self.assertEqual(cp.returncode, 3, cp.stderr)
        self.assertEqual(cp.stdout, b"in\nout\n")
        self.assertEqual(cp.stderr, b"err\n")
        # Its own authentication still runs inside TLS.
        bad = self.path("bad")
        with open(bad, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(bad, 0o600)
        cp = self.sockit("exec", srv.addr, "--pin", self.fpr, "--token-file", bad, "--", "true")
        self.assertEqual(cp.returncode, 255)
        self.assertIn(b"auth", cp.stderr.lower())

    def test_files_put_get_roundtrip(self):
        tok = self.token()
        root = self.path("root")
        os.mkdir(root)
        srv = self.tls_serve("files", "--root", root, "--token-file", tok)
        local = self.path("up.bin")
        data = os.urandom((5 << 20) + 12345)
        with open(local, "wb") as f:
            f.write(data)
        common = ["--ca", self.crt, "--token-file", tok, "--quiet"]
        cp = self.sockit("put", srv.addr, local, "up.bin", *common, timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        with open(os.path.join(root, "up.bin"), "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(data).digest())
        back = self.path("down.bin")
        cp = self.sockit("get", srv.addr, "up.bin", back, *common, timeout=60)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        with open(back, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(data).digest())
        cp = self.sockit("ls", srv.addr, "--pin", self.fpr, "--token-file", tok)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn(b"up.bin", cp.stdout)
        # Without a way to verify, the client refuses before any file moves.
        cp = self.sockit("get", srv.addr, "up.bin", self.path("no.bin"), "--token-file", tok)
        self.assertEqual(cp.returncode, 1)
        self.assertFalse(os.path.exists(self.path("no.bin")))

    def test_chat(self):
        srv = self.tls_serve("chat")
        a, _ = self.py_client(srv.addr)
        self.assertIn(b"welcome", recv_line(a))
        cp = self.sockit("chat", srv.addr, "--ca", self.crt, "--nick", "bob",
                         input=b"hello over tls\n")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        lines = []
        deadline = time.monotonic() + 10
        while b"bob: hello over tls\n" not in lines and time.monotonic() < deadline:
            lines.append(recv_line(a))
        self.assertIn(b"bob: hello over tls\n", lines)

    def test_bench(self):
        srv = self.tls_serve("echo", "--framing", "frame")
        cp = self.sockit("bench", srv.addr, "--ca", self.crt, "-c", "3", "-d", "0.5",
                         "--warmup", "0.2", "--json", timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertRegex(cp.stdout, rb'"errors":0,')
        self.assertNotRegex(cp.stdout, rb'"requests":0,')
        cp = self.sockit("bench", srv.addr, "-c", "1", "-d", "0.5", timeout=30)
        self.assertEqual(cp.returncode, 1)


class TestBackpressure(TlsBase):
    def test_reader_that_never_reads(self):
        # Over TLS as over TCP: a peer that sends and never reads gets the
        # server to stop reading it (bounded memory), others are served,
        # and once it reads, every byte comes back intact.
        srv = self.tls_serve("echo")
        s0, _ = self.py_client(srv.addr)
        s0.sendall(b"warm")
        self.assertEqual(recv_exact(s0, 4), b"warm")
        s0.close()
        rss0 = srv.rss_kib()
        s, _ = self.py_client(srv.addr)
        s.setblocking(False)
        chunk = os.urandom(256 * 1024)
        sent, limit = 0, 64 << 20
        digest = hashlib.sha256()
        stalled = False
        while sent < limit:
            try:
                n = s.send(chunk)
                digest.update(chunk[:n])
                sent += n
                continue
            except (ssl.SSLWantWriteError, BlockingIOError):
                pass
            _, w, _ = select.select([], [s], [], 1.0)
            if not w:
                stalled = True
                break
        self.assertTrue(stalled, "sent all %d MiB: the server never stopped reading" % (limit >> 20))
        growth = (srv.rss_kib() - rss0) >> 10
        self.assertLess(growth, 64, "server RSS grew %d MiB for one stuck TLS reader" % growth)
        s2, _ = self.py_client(srv.addr)
        s2.sendall(b"others")
        self.assertEqual(recv_exact(s2, 6), b"others")
        s.setblocking(True)
        s.settimeout(10)
        back = hashlib.sha256()
        got = 0
        while got < sent:
            data = s.recv(1 << 20)
            self.assertTrue(data, "stream ended after %d of %d bytes" % (got, sent))
            back.update(data)
            got += len(data)
        self.assertEqual(back.hexdigest(), digest.hexdigest())


class TestHandshakeFaults(TlsBase):
    def client_hello(self):
        """The bytes of a real TLS ClientHello (Python's ssl, no socket)."""
        ctx = ssl.create_default_context(cafile=self.crt)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname="localhost")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        self.assertGreater(len(hello), 100)
        return hello

    def test_silent_peer_dropped_at_deadline(self):
        srv = self.tls_serve("echo", "--handshake-timeout", "0.5")
        s = self.connect(srv.addr[6:])
        t0 = time.monotonic()
        self.assertTrue(closed_by_peer(s, timeout=5))
        self.assertGreaterEqual(time.monotonic() - t0, 0.4)
        srv.wait_line(r"tls: 127\.0\.0\.1:%d dropped: TLS handshake not finished in time"
                      % s.getsockname()[1])
        # A trickling peer (a byte now and then) is bounded the same way.
        s = self.connect(srv.addr[6:])
        hello = self.client_hello()
        t0 = time.monotonic()
        closed = False
        for b in hello[:40]:
            try:
                s.send(bytes([b]))
            except OSError:
                closed = True
                break
            if closed_by_peer(s, timeout=0.05):
                closed = True
                break
        self.assertTrue(closed or closed_by_peer(s, timeout=3))
        self.assertLess(time.monotonic() - t0, 4)
        s2, _ = self.py_client(srv.addr)
        s2.sendall(b"alive")
        self.assertEqual(recv_exact(s2, 5), b"alive")

    def test_garbage_instead_of_client_hello(self):
        srv = self.tls_serve("echo")
        s = self.connect(srv.addr[6:])
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(closed_by_peer(s, timeout=5))
        srv.wait_line(r"tls: 127\.0\.0\.1:%d dropped: TLS handshake failed: \S"
                      % s.getsockname()[1])
        self.assertEqual(srv.find(r"echo open"), [])  # the service never saw it
        s2, _ = self.py_client(srv.addr)
        s2.sendall(b"still here")
        self.assertEqual(recv_exact(s2, 10), b"still here")

    def test_resets_mid_handshake_fds_back_to_baseline(self):
        srv = self.tls_serve("echo", "--quiet")
        s0, _ = self.py_client(srv.addr)  # warm up: OpenSSL's lazy state
        s0.sendall(b"x")
        self.assertEqual(recv_exact(s0, 1), b"x")
        s0.close()
        base = srv.stable_fd_count()
        hello = self.client_hello()
        host, port = tcp_addr(srv.addr)
        for i in range(60):
            s = socket.create_connection((host, port), timeout=IO_TIMEOUT)
            cut = (len(hello) // 2, len(hello), 0)[i % 3]
            if cut:
                s.sendall(hello[:cut])
            if cut == len(hello):
                # The server has answered (ServerHello...) or is about to.
                select.select([s], [], [], 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()  # RST
        self.assertLessEqual(srv.wait_fds_at_most(base), base)
        s2, _ = self.py_client(srv.addr)
        s2.sendall(b"fine")
        self.assertEqual(recv_exact(s2, 4), b"fine")
        s2.close()
        self.assertLessEqual(srv.wait_fds_at_most(base), base)
