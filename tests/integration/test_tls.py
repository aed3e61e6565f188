"""tls://: a TLS echo server driven by `openssl s_client`
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


class TestPolicy(TlsBase):
    """Key exchange groups and TLS 1.2 suites, and a
    `sockit cert` leaf that cannot sign others yet verifies as --ca (#20)."""

    def s_client(self, addr, *opts):
        host, port = tcp_addr(addr)
        cp = self.run_cmd(["openssl", "s_client", "-connect", "%s:%d" % (host, port), "-CAfile",
                           self.crt, "-verify_return_error", "-brief", *opts], input=b"")
        return cp.returncode, cp.stderr.decode("utf-8", "replace")

    def test_groups_elliptic_curves_only(self):
        srv = self.tls_serve("echo")
        for group in ("ffdhe2048", "ffdhe8192"):
            rc, err = self.s_client(srv.addr, "-tls1_3", "-groups", group)
            self.assertNotEqual(rc, 0, err)
            self.assertNotIn("Protocol version", err)
        for group, shown in (("X25519", "X25519"), ("P-256", "prime256v1"),
                             ("P-384", "secp384r1")):
            rc, err = self.s_client(srv.addr, "-tls1_3", "-groups", group)
            self.assertEqual(rc, 0, err)
            self.assertIn("Protocol version: TLSv1.3", err)
            self.assertIn(shown, err)
        rc, err = self.s_client(srv.addr, "-tls1_2", "-groups", "ffdhe2048")
        self.assertNotEqual(rc, 0, err)
        self.assertNotIn("Protocol version", err)

    def test_tls12_aead_suites_only_in_server_order(self):
        srv = self.tls_serve("echo")
        for cbc in ("ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA384",
                    "ECDHE-ECDSA-AES128-SHA256"):
            rc, err = self.s_client(srv.addr, "-tls1_2", "-cipher", cbc)
            self.assertNotEqual(rc, 0, err)
            self.assertNotIn("Protocol version", err)
        rc, err = self.s_client(srv.addr, "-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305")
        self.assertEqual(rc, 0, err)
        self.assertIn("Ciphersuite: ECDHE-ECDSA-CHACHA20-POLY1305", err)
        # The client prefers ChaCha20 over AES-GCM; the server's order wins.
        rc, err = self.s_client(srv.addr, "-tls1_2", "-cipher",
                                "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256")
        self.assertEqual(rc, 0, err)
        self.assertIn("Ciphersuite: ECDHE-ECDSA-AES", err)
        self.assertIn("-GCM-", err)

    def test_rsa_certificate_no_static_rsa(self):
        key, crt = self.path("rsa.key"), self.path("rsa.crt")
        cp = self.run_cmd(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                           key, "-out", crt, "-subj", "/CN=localhost", "-addext",
                           "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "30"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        srv = self.serve("echo", "tls://127.0.0.1:0", "--cert", crt, "--key", key)
        host, port = tcp_addr(srv.addr)
        for suite, ok in (("AES128-GCM-SHA256", False), ("AES256-SHA", False),
                          ("ECDHE-RSA-AES256-GCM-SHA384", True)):
            cp = self.run_cmd(["openssl", "s_client", "-connect", "%s:%d" % (host, port),
                               "-CAfile", crt, "-brief", "-tls1_2", "-cipher", suite], input=b"")
            self.assertEqual(cp.returncode == 0, ok, (suite, cp.stderr))

    def test_cert_is_a_leaf(self):
        cp = self.run_cmd(["openssl", "x509", "-in", self.crt, "-noout", "-ext",
                           "basicConstraints,keyUsage,extendedKeyUsage,subjectAltName"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        out = cp.stdout.decode()
        self.assertIn("CA:FALSE", out)
        self.assertNotIn("CA:TRUE", out)
        self.assertIn("Digital Signature", out)
        self.assertNotIn("Certificate Sign", out)
        self.assertIn("TLS Web Server Authentication", out)
        self.assertIn("DNS:localhost", out)
        # It cannot sign a certificate that clients would then accept.
        ca = self.path("leaf-signed")
        os.mkdir(ca)
        k2, csr, c2 = (os.path.join(ca, n) for n in ("k.key", "r.csr", "c.crt"))
        for argv in (["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:P-256", "-nodes", "-keyout", k2, "-out", csr,
                      "-subj", "/CN=localhost"],
                     ["openssl", "x509", "-req", "-in", csr, "-CA", self.crt, "-CAkey", self.key,
                      "-out", c2, "-days", "1"]):
            cp = self.run_cmd(argv)
            self.assertEqual(cp.returncode, 0, cp.stderr)
        cp = self.run_cmd(["openssl", "verify", "-partial_chain", "-CAfile", self.crt, c2])
        self.assertNotEqual(cp.returncode, 0, cp.stdout)

    def test_leaf_verifies_as_ca_with_every_client(self):
        srv = self.tls_serve("echo")
        cp = self.connect_cli(srv.addr.replace("127.0.0.1", "localhost"), "--ca", self.crt)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"hello over tls\n")
        s, _ = self.py_client(srv.addr)
        s.sendall(b"py")
        self.assertEqual(recv_exact(s, 2), b"py")
        rc, err = self.s_client(srv.addr, "-verify_hostname", "localhost")
        self.assertEqual(rc, 0, err)
        self.assertIn("Verification: OK", err)


class TestHandshakeLimits(TlsBase):
    """Unfinished handshakes are capped (--max-handshakes: the oldest is
    dropped) and charged to --max-memory ."""

    STALL = b"\x16\x03\x01\x40\x00" + b"\x01" + b"\x00" * 2999  # a record promising 16 KiB

    def stall(self, addr, n, source=None):
        socks = []
        for _ in range(n):
            s = socket.create_connection(tcp_addr(addr), timeout=IO_TIMEOUT,
                                         source_address=(source, 0) if source else None)
            try:
                s.sendall(self.STALL)
            except OSError:
                pass  # already refused
            socks.append(self.track(s))
        return socks

    @staticmethod
    def still_open(socks):
        """The sockets the server has not closed (checked without waiting)."""
        alive = []
        for s in socks:
            # poll, not select: hundreds of sockets may be open here
            p = select.poll()
            p.register(s, select.POLLIN)
            if not p.poll(0):
                alive.append(s)
                continue
            try:
                if s.recv(4096):
                    alive.append(s)
            except OSError:
                pass
        return alive

    def served(self, addr):
        s, _ = self.py_client(addr)
        s.sendall(b"real client")
        self.assertEqual(recv_exact(s, 11), b"real client")
        s.close()

    def test_stalled_handshakes_capped_oldest_dropped(self):
        # A small ASan quarantine, so that freed handshakes do not count as held.
        asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1") + ":quarantine_size_mb=4"
        srv = self.serve("echo", "tls://127.0.0.1:0", "--cert", self.crt, "--key", self.key,
                         "--max-handshakes", "10", "--quiet", env={"ASAN_OPTIONS": asan})
        self.served(srv.addr)  # OpenSSL's lazy state, before the baseline
        base = srv.rss_kib()
        n = 400
        socks = self.stall(srv.addr, n)
        open_now = [socks]

        def settled():
            open_now[0] = self.still_open(open_now[0])
            return len(open_now[0]) <= 10
        self.assertTrue(wait_until(settled, 20), "%d still open" % len(open_now[0]))
        # The newest ten hold the slots; every older one was dropped.
        self.assertEqual(open_now[0], socks[-10:])
        srv.wait_line(r"tls: 10 unfinished handshakes \(the maximum\): dropping the oldest")
        srv.wait_line(r"tls: 127\.0\.0\.1:%d dropped: evicted: too many unfinished TLS "
                      r"handshakes \(at most 10\)" % socks[0].getsockname()[1])
        # ~49 KiB each inside OpenSSL: 400 held would be ~19 MiB.
        grown = srv.rss_kib() - base
        self.assertLess(grown, n * 48 // 2, "RSS grew %d KiB" % grown)
        self.served(srv.addr)  # a real client still gets through

    def test_a_flood_from_one_source_evicts_only_itself(self):
        srv = self.tls_serve("echo", "--max-handshakes", "10", "--quiet")
        slow = self.stall(srv.addr, 1)  # from 127.0.0.1, the oldest of all
        flood = self.stall(srv.addr, 100, source="127.0.0.2")
        open_now = [flood]

        def settled():
            open_now[0] = self.still_open(open_now[0])
            return len(open_now[0]) <= 9
        self.assertTrue(wait_until(settled, 20), "%d still open" % len(open_now[0]))
        self.assertEqual(open_now[0], flood[-9:])
        self.assertEqual(self.still_open(slow), slow)  # never evicted by the flood
        self.assertEqual(srv.find(r"tls: 127\.0\.0\.1:%d dropped" % slow[0].getsockname()[1]),
                         [])
        srv.wait_line(r"tls: 127\.0\.0\.2:%d dropped: evicted" % flood[0].getsockname()[1])
        self.served(srv.addr)

    def test_handshakes_charged_to_max_memory(self):
        # 200 KiB holds four 48 KiB handshakes; the fifth is refused at once.
        srv = self.tls_serve("echo", "--max-memory", "200K", "--quiet")
        socks = self.stall(srv.addr, 12)
        alive = [socks]

        def settled():
            alive[0] = self.still_open(alive[0])
            return len(alive[0]) <= 4
        self.assertTrue(wait_until(settled, 10), "%d still open" % len(alive[0]))
        self.assertEqual(alive[0], socks[:4])
        srv.wait_line(r"tls: refusing new handshakes: the memory budget cannot hold another "
                      r"\(48 KiB each, 4 unfinished\)")
        for s in socks:
            s.close()
        # Once those are gone their charge is back: real clients are served.
        self.assertTrue(wait_until(lambda: self.try_served(srv.addr), 10))

    def try_served(self, addr):
        try:
            self.served(addr)
            return True
        except (OSError, ssl.SSLError):
            return False

    def test_max_handshakes_usage(self):
        cp = self.sockit("serve", "echo", "127.0.0.1:0", "--max-handshakes", "5", timeout=10)
        self.assertEqual(cp.returncode, 2)
        self.assertIn(b"--max-handshakes applies to tls:// addresses only", cp.stderr)
        cp = self.sockit("serve", "echo", "tls://127.0.0.1:0", "--cert", self.crt, "--key",
                         self.key, "--max-handshakes", "x", timeout=10)
        self.assertEqual(cp.returncode, 2)
        cp = self.sockit("serve", "--help")
        self.assertIn(b"--max-handshakes N", cp.stdout)


class TestClientPolicy(TlsBase):
    """The client side offers the same groups and suites,
    seen from `openssl s_server`."""

    def s_server(self, *opts):
        p = self.popen(["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", self.crt,
                        "-key", self.key, "-rev", "-naccept", "1", *opts],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        seen = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r, _, _ = select.select([p.stdout], [], [], 0.5)
            if r:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
                m = re.search(rb"ACCEPT 127\.0\.0\.1:(\d+)", seen)
                if m:
                    return p, int(m.group(1))
        self.fail("openssl s_server did not start: %r" % seen)

    def test_client_offers_elliptic_curves_and_aead_only(self):
        p, port = self.s_server("-groups", "P-256")
        cp = self.connect_cli("tls://localhost:%d" % port, "--ca", self.crt, data=b"hello\n")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"olleh\n")
        out = p.communicate(timeout=10)[0].decode("utf-8", "replace")
        self.assertIn("Supported groups: x25519:secp256r1:secp384r1\n", out)
        offered = re.search(r"Client cipher list: (\S+)", out).group(1).split(":")
        tls12 = [c for c in offered if not c.startswith("TLS_")]
        self.assertTrue(tls12)
        for c in tls12:
            self.assertTrue(c.startswith("ECDHE-") and ("-GCM-" in c or "CHACHA20" in c), c)

    def test_client_refuses_finite_field_groups(self):
        p, port = self.s_server("-groups", "ffdhe2048", "-tls1_3")
        cp = self.connect_cli("tls://localhost:%d" % port, "--ca", self.crt, data=b"hello\n")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertEqual(cp.stdout, b"")
        p.kill()
        p.wait(timeout=10)
