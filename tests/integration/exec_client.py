#!/usr/bin/env python3
"""An exec client written from docs/PROTOCOL.md section 7 alone (standard
library only: socket, struct, hmac, hashlib, os, threading).

As a module:
    c = ExecClient.connect(("127.0.0.1", port), token)    # hello + mutual auth
    out, err, result = c.run([b"ls", b"-l"], stdin=b"")   # result: ("exit", 0),
                                                          # ("signal", 9) or ("error", code, text)
    c.close()

As a command (the tests use it to show interoperation):
    exec_client.py HOST:PORT TOKEN_FILE CMD [ARG...]
writes the command's stdout and stderr to its own and exits with its code.
"""

import hashlib
import hmac
import os
import socket
import struct
import sys
import threading

HELLO_C, HELLO_S, AUTH, AUTH_OK = 0x01, 0x02, 0x03, 0x04
REQUEST, STDIN, STDIN_EOF = 0x10, 0x11, 0x12
STDOUT, STDERR, EXIT, ERROR = 0x20, 0x21, 0x30, 0x7F
FLAG_SHELL, FLAG_NO_STDIN = 0x01, 0x02
PREAUTH_MAX = 4096
MAX_FRAME = 1 << 20


class ProtocolError(Exception):
    pass


class ServerError(Exception):
    """An ERROR message: .code and .text."""

    def __init__(self, code, text):
        super().__init__("server error %d: %s" % (code, text))
        self.code, self.text = code, text


def read_token(path):
    """The token: the file's bytes less one trailing line ending (7.3)."""
    with open(path, "rb") as f:
        data = f.read()
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    return data


def proof(token, role, nonce_s, nonce_c):
    msg = b"sockit-auth-v1\0" + role + b"\0exec\0" + nonce_s + nonce_c
    return hmac.new(token, msg, hashlib.sha256).digest()


class ExecClient:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    # -- frames (section 1.3): a 4-byte big-endian length, then the payload
    def send(self, type_, body=b""):
        payload = bytes([type_]) + body
        self.sock.sendall(struct.pack("!I", len(payload)) + payload)

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buf += chunk

    def recv(self, limit=MAX_FRAME):
        self._fill(4)
        (n,) = struct.unpack("!I", self.buf[:4])
        if n == 0 or n > limit:
            raise ProtocolError("frame of %d bytes" % n)
        self._fill(4 + n)
        payload, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        if payload[0] == ERROR:
            raise ServerError(payload[1] if len(payload) > 1 else 0,
                              payload[2:].decode("utf-8", "replace"))
        return payload[0], payload[1:]

    # -- 7.2 and 7.3
    @classmethod
    def connect(cls, sockaddr, token, family=socket.AF_INET, timeout=10.0):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(sockaddr)
        c = cls(s)
        try:
            c.handshake(token)
        except BaseException:
            s.close()
            raise
        s.settimeout(None)
        return c

    def handshake(self, token):
        self.send(HELLO_C, b"SKIT" + bytes([1, 4]) + b"exec")
        t, body = self.recv(PREAUTH_MAX)
        if t != HELLO_S or body[:4] != b"SKIT" or len(body) < 6:
            raise ProtocolError("not a sockit server hello")
        version, name_len = body[4], body[5]
        name, nonce_s = body[6:6 + name_len], body[6 + name_len:]
        if version != 1 or name != b"exec" or len(nonce_s) != 32:
            raise ProtocolError("server hello: version %d, service %r" % (version, name))
        nonce_c = os.urandom(32)
        self.send(AUTH, nonce_c + proof(token, b"client", nonce_s, nonce_c))
        t, body = self.recv(PREAUTH_MAX)
        if t != AUTH_OK or not hmac.compare_digest(body, proof(token, b"server", nonce_s, nonce_c)):
            raise ProtocolError("the server did not prove it knows the token")

    # -- 7.4 to 7.6
    def request(self, argv, shell=False, no_stdin=False, timeout_ms=0):
        flags = (FLAG_SHELL if shell else 0) | (FLAG_NO_STDIN if no_stdin else 0)
        body = struct.pack("!BIH", flags, timeout_ms, len(argv))
        for a in argv:
            body += struct.pack("!I", len(a)) + a
        self.send(REQUEST, body)

    def run(self, argv, stdin=None, shell=False, timeout_ms=0, chunk=65536):
        """Runs one command; stdin (bytes) is sent from a thread while the
        output is read, as 7.5 requires. Returns (stdout, stderr, result)."""
        self.request(argv, shell=shell, no_stdin=stdin is None, timeout_ms=timeout_ms)
        sender = None
        if stdin is not None:
            def feed():
                try:
                    for i in range(0, len(stdin), chunk):
                        self.send(STDIN, stdin[i:i + chunk])
                    self.send(STDIN_EOF)
                except OSError:
                    pass  # the command ended first; the rest is discarded anyway
            sender = threading.Thread(target=feed, daemon=True)
            sender.start()
        out, err = [], []
        try:
            while True:
                t, body = self.recv()
                if t == STDOUT:
                    out.append(body)
                elif t == STDERR:
                    err.append(body)
                elif t == EXIT:
                    result = ("exit", body[1]) if body[0] == 0 else ("signal", body[1])
                    break
                else:
                    raise ProtocolError("unexpected message %#x" % t)
        except ServerError as e:
            result = ("error", e.code, e.text)
        if sender is not None:
            sender.join(timeout=10)
        return b"".join(out), b"".join(err), result

    def close(self):
        self.sock.close()


def main(argv):
    if len(argv) < 4:
        sys.stderr.write(__doc__)
        return 2
    host, _, port = argv[1].rpartition(":")
    try:
        c = ExecClient.connect((host, int(port)), read_token(argv[2]))
        out, err, result = c.run([a.encode() for a in argv[3:]], stdin=None)
        c.close()
    except (ServerError, ProtocolError, OSError, EOFError) as e:
        sys.stderr.write("exec_client: %s\n" % e)
        return 255
    sys.stdout.buffer.write(out)
    sys.stderr.buffer.write(err)
    if result[0] == "exit":
        return result[1]
    if result[0] == "signal":
        return 128 + result[1]
    sys.stderr.write("exec_client: %s\n" % result[2])
    return {7: 124, 5: 126, 6: 127}.get(result[1], 255)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
