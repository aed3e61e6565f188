#!/usr/bin/env python3
"""A files client written from docs/PROTOCOL.md section 9 alone (standard
library only: socket, struct, hmac, hashlib, os).

    c = FilesClient.connect(sock_address, token=None)   # hello (+ mutual auth)
    c.stat("a/b.txt")  -> {"type": "f", "size": ..., "mtime": ..., "mode": ..., "name": ...}
    c.list("a")        -> [entry, ...]
    c.put("a/b.txt", data)      -> (sha256, resumed_from)
    c.get("a/b.txt", have=b"")  -> (data_from_offset, size, from_offset, sha256)
    c.chunks("a/b.txt")         -> (size, chunk_size, [sha256 per chunk], sha256)  (version 2)
    c.close()

The pieces (put_begin, put_from, send_data, put_end, ...) are exposed so the
tests can misbehave on purpose: lie about sizes, stop half-way, tamper.
"""

import hashlib
import hmac
import os
import socket
import struct

HELLO_C, HELLO_S, AUTH, AUTH_OK, ERROR = 0x01, 0x02, 0x03, 0x04, 0x7F
LIST, STAT, PUT, GET, PUT_FROM, DATA, PUT_END = 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46
ENTRIES, LIST_END, STAT_OK, PUT_READY, PUT_OK, GET_READY, GET_END = (
    0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56)
CHUNKS, CHUNK_HASHES, CHUNKS_END = 0x4C, 0x59, 0x5A
PUT_CHUNK = 256 * 1024
MAX_FRAME = 1 + 4 * 1024 * 1024

E_PROTOCOL, E_HELLO, E_AUTH, E_BUSY = 0x01, 0x02, 0x03, 0x04
E_NOTFOUND, E_DENIED, E_BADPATH, E_TYPE, E_READONLY, E_TOOBIG = 0x10, 0x11, 0x12, 0x13, 0x14, 0x15
E_NOSPACE, E_SIZE, E_CHECKSUM, E_IO, E_CHANGED = 0x16, 0x17, 0x18, 0x19, 0x1A


class ProtocolError(Exception):
    pass


class ServerError(Exception):
    """An ERROR message: .code and .text."""

    def __init__(self, code, text):
        super().__init__("server error 0x%02x: %s" % (code, text))
        self.code, self.text = code, text


def proof(token, role, nonce_s, nonce_c):
    msg = b"sockit-auth-v1\0" + role + b"\0files\0" + nonce_s + nonce_c
    return hmac.new(token, msg, hashlib.sha256).digest()


def parse_entry(b, off):
    typ = b[off:off + 1].decode()
    size, mtime, mode, nlen = struct.unpack_from("!QqHH", b, off + 1)
    name = b[off + 21:off + 21 + nlen]
    return {"type": typ, "size": size, "mtime": mtime, "mode": mode, "name": name}, off + 21 + nlen


class FilesClient:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b""
        self.auth = None
        self.version = 1

    @classmethod
    def connect(cls, sockaddr, token=None, family=socket.AF_INET, timeout=10.0, version=1):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(sockaddr)
        if family != socket.AF_UNIX:
            # Small messages back to back (PUT_FROM, then DATA) must not
            # wait for the server's delayed ACK (Nagle).
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c = cls(s)
        c.handshake(token, version)
        return c

    def close(self):
        self.sock.close()

    # -- frames: a 4-byte big-endian length, then the payload
    def send(self, type_, body=b""):
        payload = bytes([type_]) + body
        self.sock.sendall(struct.pack("!I", len(payload)) + payload)

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("the server closed the connection")
            self.buf += chunk

    def recv(self):
        self._fill(4)
        (n,) = struct.unpack("!I", self.buf[:4])
        if n == 0 or n > MAX_FRAME:
            raise ProtocolError("bad frame length %d" % n)
        self._fill(4 + n)
        payload, self.buf = self.buf[4:4 + n], self.buf[4 + n:]
        return payload[0], payload[1:]

    def expect(self, *types):
        t, body = self.recv()
        if t == ERROR:
            raise ServerError(body[0], body[1:].decode("utf-8", "replace"))
        if t not in types:
            raise ProtocolError("expected %s, got 0x%02x" % ([hex(x) for x in types], t))
        return t, body

    # -- section 9.2: hello, then authentication if the server has a token
    def handshake(self, token, version=1):
        self.send(HELLO_C, b"SKIT" + bytes([version]) + b"\x05files")
        t, body = self.expect(HELLO_S)
        if body[:4] != b"SKIT" or not 1 <= body[4] <= version or body[6:6 + body[5]] != b"files":
            raise ProtocolError("not a files server: %r" % body)
        self.version = body[4]
        rest = body[6 + body[5]:]
        if len(rest) == 0:
            self.auth = False          # no nonce: no authentication
            return
        if len(rest) != 32:
            raise ProtocolError("malformed server hello")
        self.auth = True
        if token is None:
            raise ProtocolError("the server requires a token")
        nonce_s, nonce_c = rest, os.urandom(32)
        self.send(AUTH, nonce_c + proof(token, b"client", nonce_s, nonce_c))
        t, body = self.expect(AUTH_OK)
        if not hmac.compare_digest(body, proof(token, b"server", nonce_s, nonce_c)):
            raise ProtocolError("the server's proof is wrong")

    # -- section 9.4
    def stat(self, path):
        self.send(STAT, path if isinstance(path, bytes) else path.encode())
        t, body = self.expect(STAT_OK)
        e, _ = parse_entry(body, 0)
        return e

    def list(self, path=""):
        self.send(LIST, path if isinstance(path, bytes) else path.encode())
        out = []
        while True:
            t, body = self.expect(ENTRIES, LIST_END)
            if t == LIST_END:
                (total,) = struct.unpack("!Q", body)
                if total != len(out):
                    raise ProtocolError("LIST_END says %d, got %d" % (total, len(out)))
                return out
            (count,) = struct.unpack_from("!H", body, 0)
            off = 2
            for _ in range(count):
                e, off = parse_entry(body, off)
                out.append(e)

    # -- section 9.5: uploads
    def put_begin(self, path, size, upload_id):
        p = path if isinstance(path, bytes) else path.encode()
        self.send(PUT, struct.pack("!Q", size) + upload_id + p)
        t, body = self.expect(PUT_READY)
        have = struct.unpack_from("!Q", body, 0)[0]
        return have, body[8:40]

    def put_from(self, offset):
        self.send(PUT_FROM, struct.pack("!Q", offset))

    def send_data(self, data, chunk=PUT_CHUNK):
        for i in range(0, len(data), chunk):
            self.send(DATA, data[i:i + chunk])

    def put_end(self, digest):
        self.send(PUT_END, digest)
        t, body = self.expect(PUT_OK)
        return struct.unpack_from("!Q", body, 0)[0], body[8:40]

    def put(self, path, data, upload_id=None):
        """A whole upload, resuming what the server holds if it matches."""
        upload_id = upload_id or hashlib.sha256(b"py-" + (path if isinstance(path, bytes)
                                                           else path.encode())).digest()[:16]
        have, their = self.put_begin(path, len(data), upload_id)
        start = have if have <= len(data) and hashlib.sha256(data[:have]).digest() == their else 0
        self.put_from(start)
        self.send_data(data[start:])
        size, digest = self.put_end(hashlib.sha256(data).digest())
        if digest != hashlib.sha256(data).digest() or size != len(data):
            raise ProtocolError("PUT_OK does not match what was sent")
        return digest, start

    # -- section 9.6: downloads
    def get_begin(self, path, have=b""):
        p = path if isinstance(path, bytes) else path.encode()
        self.send(GET, struct.pack("!Q", len(have)) + hashlib.sha256(have).digest() + p)
        t, body = self.expect(GET_READY)
        return struct.unpack("!QQ", body)

    def get_rest(self, size, start):
        data = bytearray()
        while True:
            t, body = self.expect(DATA, GET_END)
            if t == GET_END:
                if start + len(data) != size:
                    raise ProtocolError("GET_END after %d of %d bytes" % (start + len(data), size))
                return bytes(data), body
            data += body

    def get(self, path, have=b""):
        size, start = self.get_begin(path, have)
        data, digest = self.get_rest(size, start)
        whole = (have[:start] if start else b"") + data
        if hashlib.sha256(whole).digest() != digest:
            raise ProtocolError("checksum mismatch")
        return data, size, start, digest

    # -- section 9.10 (version 2)
    def chunks(self, path):
        self.send(CHUNKS, path if isinstance(path, bytes) else path.encode())
        hashes = []
        while True:
            t, body = self.expect(CHUNK_HASHES, CHUNKS_END)
            if t == CHUNKS_END:
                size, csize, count = struct.unpack_from("!QIQ", body)
                if count != len(hashes):
                    raise ProtocolError("CHUNKS_END says %d chunks, %d came" % (count, len(hashes)))
                return size, csize, hashes, body[20:52].hex()
            (first,) = struct.unpack_from("!Q", body)
            if first != len(hashes) or (len(body) - 8) % 32:
                raise ProtocolError("CHUNK_HASHES out of order")
            hashes += [body[i:i + 32].hex() for i in range(8, len(body), 32)]
