"""Channel binding (RFC 9266 tls-exporter) of the exec and files proofs:
a Python TLS relay (its own certificate towards the client, a TLS client
towards the server) forwards the handshake untouched and then sends its own
REQUEST. Bound to each TLS connection, the client's proof is refused by the
server, so nothing runs, even though the client used --insecure; a direct
connection with --insecure still works. (Over plain TCP the proofs are
unchanged: the other exec and files tests cover that.)
"""

import os
import re
import secrets
import socket
import ssl
import struct
import threading

import helpers
from helpers import SOCKIT, SockitTestCase

WAIT = 15.0
REQUEST = 0x10


def recv_frame(sock):
    head = helpers.recv_exact(sock, 4)
    (n,) = struct.unpack("!I", head)
    return helpers.recv_exact(sock, n)


def send_frame(sock, payload):
    sock.sendall(struct.pack("!I", len(payload)) + payload)


def exec_request(argv):
    body = struct.pack("!BIH", 2, 0, len(argv))   # flags: no stdin
    for a in argv:
        body += struct.pack("!I", len(a)) + a
    return bytes([REQUEST]) + body


class Relay:
    """Accepts one TLS client with its own certificate, connects to the
    server over TLS without verifying it, forwards the hello and the
    authentication both ways, then (if the server accepted) replaces the
    client's first request with inject. Records what it saw."""

    def __init__(self, test, target, crt, key, inject):
        host, _, port = target[len("tls://"):].rpartition(":")
        self.target = (host, int(port))
        self.inject = inject
        self.sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.sctx.load_cert_chain(crt, key)
        self.cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.cctx.check_hostname = False
        self.cctx.verify_mode = ssl.CERT_NONE
        self.lsock = test.track(socket.socket())
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.lsock.settimeout(WAIT)
        self.addr = "tls://127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.auth_ok = False
        self.injected = False
        self.error = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            raw, _ = self.lsock.accept()
            raw.settimeout(WAIT)
            c = self.sctx.wrap_socket(raw, server_side=True)
            s = self.cctx.wrap_socket(socket.create_connection(self.target, timeout=WAIT))
            try:
                self.relay(c, s)
            finally:
                c.close()
                s.close()
        except (OSError, EOFError, AssertionError) as e:
            self.error = e

    def relay(self, c, s):
        send_frame(s, recv_frame(c))        # HELLO
        send_frame(c, recv_frame(s))        # HELLO_S
        send_frame(s, recv_frame(c))        # AUTH
        answer = recv_frame(s)              # AUTH_OK, or ERROR 03
        send_frame(c, answer)
        if answer[0] != 0x04:
            return
        self.auth_ok = True
        if self.inject is None:
            return
        recv_frame(c)                       # the client's own request: dropped
        send_frame(s, self.inject)
        self.injected = True
        try:
            while True:
                send_frame(c, recv_frame(s))
        except (OSError, EOFError):
            pass

    def join(self):
        self.thread.join(WAIT)


class ChannelBinding(SockitTestCase):

    def setUp(self):
        super().setUp()
        for name in ("srv", "relay"):
            cp = self.run_cmd([SOCKIT, "cert", self.path(name)])
            self.assertEqual(cp.returncode, 0, cp.stderr)
        self.token_file = self.path("token")
        with open(self.token_file, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.chmod(self.token_file, 0o600)
        self.root = self.path("root")
        os.mkdir(self.root)
        self.srv = self.serve("exec=tls://127.0.0.1:0", "files=tls://127.0.0.1:0",
                              "--cert", self.path("srv.crt"), "--key", self.path("srv.key"),
                              "--token-file", self.token_file, "--root", self.root,
                              "--cwd", self.tmp, ready=2)

    def relay(self, service, inject):
        return Relay(self, self.srv.addr_of(service), self.path("relay.crt"),
                     self.path("relay.key"), inject)

    def test_exec_relay_cannot_inject_a_command(self):
        marker = self.path("injected")
        relay = self.relay("exec", exec_request([b"touch", marker.encode()]))
        cp = self.run_cmd([SOCKIT, "exec", relay.addr, "--insecure", "--token-file",
                           self.token_file, "-n", "--", "echo", "hello"], timeout=30)
        relay.join()
        self.assertIsNone(relay.error, relay.error)
        self.assertClean(cp)
        self.assertEqual(cp.returncode, 255, cp.stderr)
        self.assertIn(b"authentication failed", cp.stderr)
        self.assertFalse(relay.auth_ok, "the server accepted a proof made on another connection")
        self.assertFalse(relay.injected)
        self.assertFalse(os.path.exists(marker), "the relay's command ran")
        self.srv.wait_line(r"exec .* authentication failed")
        # Directly, --insecure and all, it works.
        cp = self.run_cmd([SOCKIT, "exec", self.srv.addr_of("exec"), "--insecure",
                           "--token-file", self.token_file, "-n", "--", "echo", "hello"],
                          timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"hello\n")
        self.srv.stop_checked(self)

    def test_files_relay_is_refused(self):
        relay = self.relay("files", None)
        cp = self.run_cmd([SOCKIT, "ls", relay.addr, "--insecure", "--token-file",
                           self.token_file], timeout=30)
        relay.join()
        self.assertIsNone(relay.error, relay.error)
        self.assertClean(cp)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn(b"authentication failed", cp.stderr)
        self.assertFalse(relay.auth_ok, "the server accepted a proof made on another connection")
        src = self.path("up.txt")
        with open(src, "wb") as f:
            f.write(b"direct\n")
        cp = self.run_cmd([SOCKIT, "put", self.srv.addr_of("files"), src, "--insecure",
                           "--token-file", self.token_file, "--quiet"], timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        with open(os.path.join(self.root, "up.txt"), "rb") as f:
            self.assertEqual(f.read(), b"direct\n")
        self.srv.stop_checked(self)

    def test_plain_tcp_proofs_are_unchanged(self):
        # A client written from the protocol document, without any binding,
        # still authenticates over plain TCP.
        import sys
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from exec_client import ExecClient
        srv = self.serve("exec", "127.0.0.1:0", "--token-file", self.token_file)
        with open(self.token_file, "rb") as f:
            token = f.read().rstrip(b"\n")
        c = ExecClient.connect(helpers.parse_addr(srv.addr)[2], token)
        self.track(c.sock)
        self.assertEqual(c.run([b"true"])[2], ("exit", 0))
        c.close()
        self.assertTrue(re.search(r"authenticated", srv.stderr_text()))
        srv.stop_checked(self)
        self.srv.stop_checked(self)
