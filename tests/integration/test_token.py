"""Tokens: `sockit token FILE` (32 random bytes as 64 hex digits, mode 600,
never replacing a file), the refusal of short or low-variety tokens by
servers and clients alike (exit 2, one line naming the reason and the
remedy), the same exit code (2) from client and server for a missing or
mode-644 token file, and one line, not two, for a wrong token.
"""

import os
import secrets
import stat

from helpers import SOCKIT, SockitTestCase

WEAK = [
    (b"0123456789abcdefghijklmnopqrstu", b"too short"),                  # 31 bytes
    (b"a" * 64, b"low variety"),
    (b"passwordpasswordpasswordpassword", b"low variety"),
    (b"0123456789abcdef0123456789abcdef", b"low variety"),               # a pattern twice
]


class TokenCase(SockitTestCase):

    def setUp(self):
        super().setUp()
        self.token = secrets.token_hex(32).encode()
        self.token_file = self.write_token(self.token, "token")
        self.root = self.path("root")
        os.mkdir(self.root)

    def write_token(self, token, name, mode=0o600):
        path = self.path(name)
        with open(path, "wb") as f:
            f.write(token + b"\n")
        os.chmod(path, mode)
        return path

    def one_line(self, cp):
        lines = cp.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, cp.stderr)
        return lines[0]


class TokenCommand(TokenCase):

    def test_writes_32_random_bytes_mode_600(self):
        path = self.path("new")
        old = os.umask(0o022)
        try:
            cp = self.run_cmd([SOCKIT, "token", path])
        finally:
            os.umask(old)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn(path.encode(), cp.stdout)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        with open(path, "rb") as f:
            text = f.read()
        self.assertEqual(len(text), 65)
        self.assertTrue(text.endswith(b"\n"))
        self.assertEqual(len(bytes.fromhex(text[:64].decode())), 32)
        self.assertEqual(text[:64], text[:64].lower())
        # Another run, another token.
        other = self.path("other")
        self.assertEqual(self.run_cmd([SOCKIT, "token", other]).returncode, 0)
        with open(other, "rb") as f:
            self.assertNotEqual(f.read(), text)
        # The token works with a server and a client as it is.
        srv = self.serve("exec", "127.0.0.1:0", "--token-file", path)
        cp = self.run_cmd([SOCKIT, "exec", srv.addr, "--token-file", path, "--", "echo", "ok"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"ok\n")
        srv.stop_checked(self)

    def test_refuses_an_existing_file_and_a_link(self):
        path = self.path("existing")
        with open(path, "wb") as f:
            f.write(b"keep me\n")
        cp = self.run_cmd([SOCKIT, "token", path])
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn(b"exists", self.one_line(cp))
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"keep me\n")
        link = self.path("link")
        os.symlink(self.path("target"), link)
        cp = self.run_cmd([SOCKIT, "token", link])
        self.assertNotEqual(cp.returncode, 0)
        self.assertFalse(os.path.exists(self.path("target")))

    def test_usage(self):
        cp = self.run_cmd([SOCKIT, "token", "--help"])
        self.assertEqual(cp.returncode, 0)
        self.assertIn(b"mode 600", cp.stdout)
        self.assertEqual(self.run_cmd([SOCKIT, "token"]).returncode, 2)
        self.assertEqual(self.run_cmd([SOCKIT, "token", "a", "b"]).returncode, 2)
        cp = self.run_cmd([SOCKIT, "--help"])
        self.assertIn(b"token FILE", cp.stdout)


class WeakTokens(TokenCase):

    def test_servers_refuse_weak_tokens(self):
        for i, (token, why) in enumerate(WEAK):
            tf = self.write_token(token, "weak%d" % i)
            for argv in (["serve", "exec", "127.0.0.1:0", "--token-file", tf],
                         ["serve", "files", "127.0.0.1:0", "--root", self.root,
                          "--token-file", tf]):
                with self.subTest(token=token, service=argv[1]):
                    cp = self.run_cmd([SOCKIT] + argv, timeout=10)
                    self.assertEqual(cp.returncode, 2, cp.stderr)
                    line = self.one_line(cp)
                    self.assertIn(why, line)
                    self.assertIn(b"run: sockit token FILE", line)
                    self.assertClean(cp)

    def test_clients_refuse_weak_tokens_before_connecting(self):
        srv = self.serve("exec=127.0.0.1:0", "files=127.0.0.1:0", "--root", self.root,
                         "--token-file", self.token_file, ready=2)
        for i, (token, why) in enumerate(WEAK):
            tf = self.write_token(token, "weak%d" % i)
            src = self.path("src%d" % i)
            with open(src, "wb") as f:
                f.write(b"x")
            for argv in (["exec", srv.addr_of("exec"), "--token-file", tf, "--", "true"],
                         ["put", srv.addr_of("files"), src, "--token-file", tf],
                         ["ls", srv.addr_of("files"), "--token-file", tf]):
                with self.subTest(token=token, cmd=argv[0]):
                    cp = self.run_cmd([SOCKIT] + argv, timeout=10)
                    self.assertEqual(cp.returncode, 2, cp.stderr)
                    line = self.one_line(cp)
                    self.assertIn(why, line)
                    self.assertIn(b"run: sockit token FILE", line)
        self.assertEqual(os.listdir(self.root), [])
        srv.stop_checked(self)


class SameExitCode(TokenCase):

    def test_missing_or_public_token_file_is_2_for_client_and_server(self):
        srv = self.serve("exec=127.0.0.1:0", "files=127.0.0.1:0", "--root", self.root,
                         "--token-file", self.token_file, ready=2)
        public = self.write_token(self.token, "public", 0o644)
        missing = self.path("missing")
        src = self.path("src")
        with open(src, "wb") as f:
            f.write(b"x")
        for tf, word in ((public, b"chmod 600"), (missing, b"missing")):
            for argv in (["serve", "exec", "127.0.0.1:0", "--token-file", tf],
                         ["serve", "files", "127.0.0.1:0", "--root", self.root,
                          "--token-file", tf],
                         ["exec", srv.addr_of("exec"), "--token-file", tf, "--", "true"],
                         ["put", srv.addr_of("files"), src, "--token-file", tf],
                         ["get", srv.addr_of("files"), "x", self.path("dst"), "--token-file", tf],
                         ["ls", srv.addr_of("files"), "--token-file", tf]):
                with self.subTest(file=tf, cmd=" ".join(argv[:2])):
                    cp = self.run_cmd([SOCKIT] + argv, timeout=10)
                    self.assertEqual(cp.returncode, 2, cp.stderr)
                    self.assertIn(word, self.one_line(cp))
        srv.stop_checked(self)

    def test_wrong_token_prints_one_line(self):
        srv = self.serve("exec=127.0.0.1:0", "files=127.0.0.1:0", "--root", self.root,
                         "--token-file", self.token_file, ready=2)
        wrong = self.write_token(secrets.token_hex(32).encode(), "wrong")
        cp = self.run_cmd([SOCKIT, "exec", srv.addr_of("exec"), "--token-file", wrong, "--",
                           "true"], timeout=30)
        self.assertEqual(cp.returncode, 255, cp.stderr)
        line = self.one_line(cp)
        self.assertIn(b"authentication failed", line)
        self.assertIn(b"--token-file", line)
        cp = self.run_cmd([SOCKIT, "ls", srv.addr_of("files"), "--token-file", wrong],
                          timeout=30)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        line = self.one_line(cp)
        self.assertIn(b"authentication failed", line)
        self.assertIn(b"--token-file", line)
        srv.stop_checked(self)
