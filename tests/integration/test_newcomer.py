"""What a new user trips on: help for every command, usage hints for the
common address slips, one meaning of --timeout in every client, and a
sturdy interactive connect prompt (escaped server bytes, a way to send q)."""

import fcntl
import glob
import os
import re
import select
import signal
import socket
import struct
import subprocess
import termios
import threading
import time

import helpers

from helpers import ROOT, SOCKIT, SockitTestCase, wait_until
from test_connect import PtySession
from test_chat import ChatCase, Member
from test_exec import ExecCase
from test_files import MiB, FilesCase, write_random

COMMANDS = ("serve", "connect", "chat", "exec", "put", "get", "ls", "bench", "cert", "token")


class HelpForEveryCommand(SockitTestCase):

    def test_help_cmd_is_cmd_dash_dash_help(self):
        for cmd in COMMANDS:
            with self.subTest(cmd=cmd):
                a = self.sockit("help", cmd, timeout=10)
                b = self.sockit(cmd, "--help", timeout=10)
                self.assertEqual(a.returncode, 0, a.stderr)
                self.assertEqual(b.returncode, 0, b.stderr)
                self.assertTrue(a.stdout.startswith(b"usage: sockit " + cmd.encode()), a.stdout[:80])
                self.assertEqual(a.stdout, b.stdout)

    def test_every_client_states_the_same_timeout_default(self):
        for cmd in ("connect", "chat", "exec", "put", "get", "ls", "bench"):
            with self.subTest(cmd=cmd):
                out = self.sockit(cmd, "--help", timeout=10).stdout.decode()
                i = out.find("  --timeout SEC")
                self.assertGreaterEqual(i, 0, "%s --help has no --timeout" % cmd)
                self.assertIn("default 10", out[i:i + 200], out[i:i + 200])


class AddressHints(SockitTestCase):

    CASES = [
        (["connect", "127.0.0.1", "9000"], "127.0.0.1:9000"),
        (["connect", "path/x.sock"], "unix:path/x.sock"),
        (["connect", "x.sock"], "unix:x.sock"),
        (["serve", "echo", "9006"], "127.0.0.1:9006"),
        (["put", "9004", "f"], "127.0.0.1:9004"),
        (["chat", "run/chat.sock"], "unix:run/chat.sock"),
        (["chat", "127.0.0.1", "9003"], "127.0.0.1:9003"),
        (["bench", "localhost", "9000"], "localhost:9000"),
    ]

    def test_hint_names_the_spelling_that_works(self):
        for argv, fix in self.CASES:
            with self.subTest(argv=" ".join(argv)):
                cp = self.sockit(*argv, input=b"", timeout=10)
                lines = cp.stderr.decode().strip().splitlines()
                self.assertEqual(cp.returncode, 2, lines)
                self.assertEqual(len(lines), 1, lines)
                self.assertIn(fix, lines[0])


class SilentServer:
    """A TCP listener that accepts and reads but never answers."""

    def __init__(self, test):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(30)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        test.addCleanup(self.close)

    def _run(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        self.conns.append(c)
        c.settimeout(30)
        try:
            while c.recv(4096):
                pass
        except OSError:
            pass

    def close(self):
        for c in self.conns:
            c.close()
        self.sock.close()


class ConnectTimeout(SockitTestCase):

    def test_pause_in_stdin_is_not_a_timeout(self):
        srv = self.serve("echo", "127.0.0.1:0")
        p = self.popen([SOCKIT, "connect", srv.addr, "--timeout", "1"], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdin.write(b"a\n")
        p.stdin.flush()
        time.sleep(2.0)           # the pause under test: longer than --timeout
        p.stdin.write(b"b\n")
        p.stdin.close()
        out, err = p.stdout.read(), p.stderr.read()
        self.assertEqual(p.wait(20), 0, err)
        self.assertEqual(out, b"a\nb\n")

    def test_reply_owed_is_bounded_by_default(self):
        s = SilentServer(self)
        t0 = time.monotonic()
        cp = self.sockit("connect", "127.0.0.1:%d" % s.port, input=b"x\n", timeout=40)
        elapsed = time.monotonic() - t0
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn(b"no reply within 10.0 s", cp.stderr)
        self.assertGreater(elapsed, 9)
        self.assertLess(elapsed, 20)


class ExecTimeouts(ExecCase):

    def test_timeout_does_not_cut_a_running_command(self):
        srv = self.exec_server()
        cp = self.run_exec(srv, "--timeout", "0.5", "--", "sh", "-c", "sleep 1.5; echo done")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"done\n")

    def test_command_timeout_stops_the_command(self):
        srv = self.exec_server()
        cp = self.run_exec(srv, "--command-timeout", "0.5", "--", "sleep", "30")
        self.assertEqual(cp.returncode, 124, cp.stderr)


class PromptEscapes(SockitTestCase):

    def test_server_control_bytes_are_shown_escaped(self):
        srv = self.serve("greet", "127.0.0.1:0", "--message", "\x1b[2J\x1b]0;pwned\x07hi\r\n")
        t = PtySession(self, [SOCKIT, "connect", srv.addr])
        seen = t.expect(b"hi")
        t.type(b"q\r")
        t.wait(10)
        seen += t.buf
        self.assertNotIn(b"\x1b", seen)
        self.assertNotIn(b"\x07", seen)
        self.assertIn(b"^[[2J^[]0;pwned^Ghi", seen)

    def test_backslash_q_sends_q(self):
        srv = self.serve("upper", "127.0.0.1:0")
        t = PtySession(self, [SOCKIT, "connect", srv.addr])
        t.expect(b"> ")
        t.type(b"\\q\r")
        t.expect(b"Q")
        t.type(b"\\\\q\r")
        t.expect(b"\\Q")
        t.type(b"q\r")
        self.assertEqual(t.wait(10), 0, t.buf)


class MakeAlone(SockitTestCase):

    def test_plain_make_checks_build_packages_first(self):
        # A fresh machine as a non-root user: every package missing, id -u 1000.
        # `make` alone must stop with the exact apt-get line before compiling.
        stubs = self.path("stubs")
        os.mkdir(stubs)
        for name, body in (("dpkg-query", "exit 1"), ("id", "echo 1000")):
            with open(os.path.join(stubs, name), "w") as f:
                f.write("#!/bin/sh\n%s\n" % body)
            os.chmod(os.path.join(stubs, name), 0o755)
        env = dict(os.environ, PATH=stubs + ":" + os.environ.get("PATH", ""))
        cp = subprocess.run(["make", "-s", "BUILD=" + self.path("b")], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertNotEqual(cp.returncode, 0, cp.stdout)
        self.assertIn(b"apt-get update && apt-get install -y gcc make", cp.stdout)
        self.assertFalse(os.path.exists(self.path("b/obj")), "compiled before the package check")


class BenchSaysWhatHappened(SockitTestCase):

    def bench(self, addr, *extra):
        return self.sockit("bench", addr, "-d", "1", "-c", "1", "--warmup", "0", *extra, timeout=30)

    def test_greet_is_named(self):
        srv = self.serve("greet", "127.0.0.1:0")
        for mode in ("frame", "raw"):
            with self.subTest(mode=mode):
                cp = self.bench(srv.addr, "--mode", mode)
                self.assertEqual(cp.returncode, 1, cp.stderr)
                self.assertIn(b"greet", cp.stderr)

    def test_tls_port_without_tls_scheme_is_named(self):
        cp = self.sockit("cert", self.path("srv"))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        srv = self.serve("echo", "tls://127.0.0.1:0", "--cert", self.path("srv.crt"),
                         "--key", self.path("srv.key"))
        cp = self.bench(srv.addr.replace("tls://", ""), "--mode", "raw")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn(b"tls://", cp.stderr)

    def test_silent_server_is_a_timeout(self):
        s = SilentServer(self)
        t0 = time.monotonic()
        cp = self.bench("127.0.0.1:%d" % s.port, "--timeout", "1", "-d", "5")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn(b"no reply within 1.0 s", cp.stderr)
        self.assertLess(time.monotonic() - t0, 4)


class ChatTakenNickOnTerminal(ChatCase):

    def test_taken_nick_on_a_terminal_exits_1_and_posts_nothing(self):
        srv = self.chat()
        bob = Member(self, srv.addr)
        bob.send("/nick bob")
        bob.expect("*** you are now bob")
        t = PtySession(self, [SOCKIT, "chat", srv.addr, "--nick", "bob"])
        t.type(b"typed early\r")      # before the server's answer: must never be posted
        rc = t.wait(10)
        self.assertEqual(rc, 1, t.buf)
        self.assertIn(b"nick bob is taken", t.buf)
        before, _ = bob.skip_until(re.compile(r"^\*\*\* guest\d+ left$"))
        self.assertFalse([x for x in before if "typed early" in x], before)
        self.assertEqual(bob.who(), ["bob"])


class StallRelay(threading.Thread):
    """A TCP relay for one connection that passes at most `up` bytes from the
    client and `down` bytes from the server, then holds: the transfer stalls
    mid-way, with part of it already stored, until the test interrupts it."""

    def __init__(self, target, up=None, down=None):
        super().__init__(daemon=True)
        self.target = target
        self.limit = {"up": up, "down": down}
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(1)
        self.ls.settimeout(30)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.socks = []
        self.start()

    def _pump(self, src, dst, way):
        left = self.limit[way]
        try:
            while left is None or left > 0:
                data = src.recv(65536 if left is None else min(65536, left))
                if not data:
                    break
                dst.sendall(data)
                if left is not None:
                    left -= len(data)
        except OSError:
            pass

    def run(self):
        try:
            c, _ = self.ls.accept()
        except OSError:
            return
        u = socket.create_connection(self.target, timeout=30)
        c.settimeout(30)
        self.socks += [c, u]
        threading.Thread(target=self._pump, args=(c, u, "up"), daemon=True).start()
        self._pump(u, c, "down")

    def close(self):
        # shutdown first: a thread blocked in recv keeps a closed socket alive.
        for s in self.socks + [self.ls]:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


class FilesHabits(FilesCase):

    def relay(self, srv, **limits):
        r = StallRelay(helpers.parse_addr(srv.addr)[2], **limits)
        self.addCleanup(r.close)
        return r

    def partials(self, where):
        return glob.glob(os.path.join(where, ".sockit-partial.*"))

    def test_put_into_an_existing_remote_directory(self):
        srv = self.files_server()
        os.mkdir(os.path.join(self.root, "backups"))
        src = write_random(self.path("f.bin"), 1000)
        cp = self.run_files("put", srv.addr, src, "backups")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertTrue(os.path.isfile(os.path.join(self.root, "backups", "f.bin")))

    def test_get_into_dot(self):
        srv = self.files_server()
        write_random(os.path.join(self.root, "f.bin"), 1000)
        cp = subprocess.run([SOCKIT, "get", srv.addr, "f.bin", "."], cwd=self.local,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(os.path.getsize(os.path.join(self.local, "f.bin")), 1000)

    def test_no_clobber(self):
        srv = self.files_server()
        write_random(os.path.join(self.root, "f.bin"), 1000)
        mine = write_random(os.path.join(self.local, "f.bin"), 10)
        cp = self.run_files("get", srv.addr, "f.bin", mine, "--no-clobber")
        self.assertFails(cp, 1, "--no-clobber")
        self.assertEqual(os.path.getsize(mine), 10)
        cp = self.run_files("put", srv.addr, mine, "f.bin", "--no-clobber")
        self.assertFails(cp, 1, "--no-clobber")
        self.assertEqual(os.path.getsize(os.path.join(self.root, "f.bin")), 1000)
        cp = self.run_files("get", srv.addr, "f.bin", mine)           # without it: replaced
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(os.path.getsize(mine), 1000)

    def interrupt(self, argv, stored):
        p = self.popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ok = wait_until(stored, 20)
        self.assertTrue(ok, "nothing was stored before the interrupt")
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
        self.assertEqual(p.returncode, 130, err)
        lines = err.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, lines)
        return lines[0]

    def test_ctrl_c_on_get_says_what_is_kept_and_resumes(self):
        srv = self.files_server()
        src = write_random(os.path.join(self.root, "big.bin"), 12 * MiB)
        r = self.relay(srv, down=6 * MiB)
        dst = os.path.join(self.local, "big.bin")
        line = self.interrupt([SOCKIT, "get", r.addr, "big.bin", dst],
                              lambda: any(os.path.getsize(x) > 0 for x in self.partials(self.local)))
        self.assertIn("run the same command again to resume", line)
        self.assertEqual(len(self.partials(self.local)), 1)
        cp = self.run_files("get", srv.addr, "big.bin", dst)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        with open(src, "rb") as a, open(dst, "rb") as b:
            self.assertEqual(a.read(), b.read())
        self.assertEqual(self.partials(self.local), [])

    def test_ctrl_c_on_get_with_no_resume_removes_the_partial(self):
        srv = self.files_server()
        write_random(os.path.join(self.root, "big.bin"), 12 * MiB)
        r = self.relay(srv, down=6 * MiB)
        line = self.interrupt([SOCKIT, "get", r.addr, "big.bin", self.local + "/", "--no-resume"],
                              lambda: any(os.path.getsize(x) > 0 for x in self.partials(self.local)))
        self.assertIn("removed", line)
        self.assertEqual(self.partials(self.local), [])

    def test_ctrl_c_on_put_says_the_server_keeps_it(self):
        srv = self.files_server()
        src = write_random(self.path("big.bin"), 16 * MiB)
        r = self.relay(srv, up=2 * MiB)
        line = self.interrupt([SOCKIT, "put", r.addr, src],
                              lambda: any(os.path.getsize(x) > 0 for x in self.partials(self.root)))
        self.assertIn("run the same command again to resume", line)
        r.close()
        srv.wait_line(r"put big.bin interrupted after")
        cp = self.run_files("put", srv.addr, src)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(os.path.getsize(os.path.join(self.root, "big.bin")), 16 * MiB)

    def test_stale_get_partials_are_removed_after_the_ttl(self):
        srv = self.files_server()
        write_random(os.path.join(self.root, "f.bin"), 1000)
        old = os.path.join(self.local, ".sockit-partial.gone.bin.0123456789abcdef")
        fresh = os.path.join(self.local, ".sockit-partial.kept.bin.0123456789abcdef")
        for p in (old, fresh):
            with open(p, "wb") as f:
                f.write(b"x" * 100)
        t = time.time() - 120
        os.utime(old, (t, t))
        cp = self.run_files("get", srv.addr, "f.bin", self.local + "/", "--partial-ttl", "60")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertFalse(os.path.exists(old), "a partial older than --partial-ttl was kept")
        self.assertTrue(os.path.exists(fresh), "a recent partial was removed")

    def test_progress_line_fits_a_narrow_terminal(self):
        srv = self.files_server()
        src = write_random(self.path("a-rather-long-file-name-for-the-bar.bin"), 4 * MiB)
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 50, 0, 0))
        p = self.popen([SOCKIT, "put", srv.addr, src], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=slave)
        os.close(slave)
        out = b""
        while True:
            r, _, _ = select.select([master], [], [], 20)
            if not r:
                break
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            out += data
        os.close(master)
        self.assertEqual(p.wait(20), 0, out)
        self.assertIn(b"100%", out)
        for seg in re.split(rb"[\r\n]", out.replace(b"\x1b[K", b"")):
            self.assertLess(len(seg), 50, "a progress line wider than the terminal: %r" % seg)


class ErrorWording(SockitTestCase):

    def setUp(self):
        super().setUp()
        cp = self.sockit("cert", self.path("demo"))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.crt, self.key = self.path("demo.crt"), self.path("demo.key")

    def one_line(self, cp, code, *words):
        lines = cp.stderr.decode().strip().splitlines()
        self.assertEqual(cp.returncode, code, lines)
        self.assertEqual(len(lines), 1, lines)
        for w in words:
            self.assertIn(w, lines[0])

    def test_key_given_as_certificate_says_so(self):
        cp = self.sockit("serve", "echo", "tls://127.0.0.1:0", "--cert", self.key, "--key", self.key)
        self.one_line(cp, 2, "private key, not a certificate")
        cp = self.sockit("serve", "echo", "tls://127.0.0.1:0", "--cert", self.crt, "--key", self.crt)
        self.one_line(cp, 2, "certificate, not a private key")

    def test_missing_ca_and_missing_cert_exit_alike(self):
        cp = self.sockit("connect", "tls://127.0.0.1:1", "--ca", self.path("nope.crt"), input=b"")
        self.one_line(cp, 2, "nope.crt")
        cp = self.sockit("serve", "echo", "tls://127.0.0.1:0", "--cert", self.path("nope.crt"),
                         "--key", self.key)
        self.assertEqual(cp.returncode, 2, cp.stderr)

    def test_group_readable_key_is_warned_about(self):
        os.chmod(self.key, 0o644)
        srv = self.serve("echo", "tls://127.0.0.1:0", "--cert", self.crt, "--key", self.key)
        self.assertIn("readable by group or others", srv.stderr_text())
        self.assertIn("chmod 600", srv.stderr_text())


class ManPageCoversEveryCommand(SockitTestCase):

    def test_synopsis_and_commands_name_every_command(self):
        with open(os.path.join(ROOT, "docs", "sockit.1"), encoding="utf-8") as f:
            man = f.read()
        synopsis = man.split(".SH SYNOPSIS", 1)[1].split(".SH ", 1)[0]
        commands = man.split(".SH COMMANDS", 1)[1].split(".SH ", 1)[0]
        for cmd in COMMANDS + ("help",):
            with self.subTest(cmd=cmd):
                self.assertIn(".B sockit %s" % cmd, synopsis)
                self.assertRegex(commands, r'\.B[I]? "?%s\b' % cmd)
        self.assertIn(".SS bench options", man)
        self.assertIn("command\\-timeout", man)


TRY_RE = re.compile(r"^sockit: try (\w+)\s+(build/sockit .*?)(?:\s+\(or: .*\))?\s*$")


class DemoTour(SockitTestCase):
    """The Quick start's `try` lines, as the README prints them, run against
    the demo set of `make run` (`sockit serve` with no arguments, on
    9000-9005) inside a private network namespace, so the demo ports can
    never collide with anything else on this machine."""

    def readme_try_lines(self):
        with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
            found = [TRY_RE.match(l) for l in f.read().splitlines()]
        return [(m.group(1), m.group(2)) for m in found if m]

    def test_quick_start_try_lines_run_as_written(self):
        if subprocess.run(["unshare", "-n", "true"], stderr=subprocess.DEVNULL).returncode != 0:
            self.skipTest("unshare -n is not permitted here (needs root or user namespaces)")
        tries = self.readme_try_lines()
        self.assertEqual([n for n, _ in tries], ["echo", "upper", "greet", "chat", "files", "exec"])
        with open(self.path("FILE"), "w") as f:
            f.write("a file for the demo\n")
        steps = []
        for name, cmd in tries:
            cmd = cmd.replace("build/sockit", SOCKIT, 1)
            steps.append('echo hello | timeout 20 %s >out.%s 2>&1; echo "RC %s $?"' % (cmd, name, name))
        script = "\n".join([
            "ip link set lo up || exit 97",
            "%s serve 2>serve.log &" % SOCKIT,
            "srv=$!",
            # readiness: the demo prints its last line once every service listens
            "for i in $(seq 200); do grep -q 'Ctrl-C stops' serve.log && break; sleep 0.05; done",
        ] + steps + ["kill -TERM $srv", "wait $srv", 'echo "RC serve $?"'])
        cp = subprocess.run(["unshare", "-n", "sh", "-c", script], cwd=self.tmp,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=200)
        out = cp.stdout.decode("utf-8", "replace")
        if cp.returncode == 97:
            self.skipTest("cannot bring up lo in a new network namespace")
        with open(self.path("serve.log"), encoding="utf-8", errors="replace") as f:
            log = f.read()
        for name, cmd in tries:
            with self.subTest(name=name):
                self.assertIn("RC %s 0" % name, out, "%s failed: %s\n%s" % (
                    cmd, open(self.path("out." + name), errors="replace").read(), log[-2000:]))
                # The demo prints the same try line as the README (with its argv[0]).
                self.assertIn(cmd.replace("build/sockit", SOCKIT, 1), log[:4000])
        self.assertIn("RC serve 0", out, log[-2000:])
        self.assertEqual(os.path.getsize(os.path.join(self.tmp, "sockit-files", "FILE")), 20)


class PromptKeepsTypedText(SockitTestCase):

    def test_incoming_data_does_not_hide_half_typed_text(self):
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        ls.settimeout(10)
        self.addCleanup(ls.close)
        t = PtySession(self, [SOCKIT, "connect", "127.0.0.1:%d" % ls.getsockname()[1]])
        peer, _ = ls.accept()
        peer.settimeout(10)
        self.addCleanup(peer.close)
        t.expect(b"> ")
        t.type(b"half typed")
        t.expect(b"half typed")                  # echoed by the editor
        peer.sendall(b"incoming\n")
        seen = t.expect(b"incoming")
        self.assertNotIn(b"\x1b", seen.replace(b"\x1b[J", b"").replace(b"\x1b[K", b""))
        t.expect(b"> half typed")                # the input line, redrawn below it
        t.type(b" rest\r")
        got = b""
        while not got.endswith(b"\n"):
            got += peer.recv(100)
        self.assertEqual(got, b"half typed rest\n")
        t.type(b"q\r")
        self.assertEqual(t.wait(10), 0, t.buf)


class HelpAlignment(SockitTestCase):

    def test_tls_options_line_up_with_each_commands_own(self):
        for cmd in ("connect", "chat", "exec", "put", "get", "ls"):
            with self.subTest(cmd=cmd):
                out = self.sockit(cmd, "--help", timeout=10).stdout.decode()
                cols = {}
                for line in out.splitlines():
                    m = re.match(r"^  (--ca FILE|--timeout SEC)( +)\S", line)
                    if m:
                        cols[m.group(1)] = 2 + len(m.group(1)) + len(m.group(2))
                self.assertEqual(len(cols), 2, out)
                self.assertEqual(cols["--ca FILE"], cols["--timeout SEC"], out)


class DatagramPrompt(SockitTestCase):

    def test_udp_prompt_escapes_replies_and_sends_q(self):
        srv = self.serve("upper", "udp://127.0.0.1:0")
        t = PtySession(self, [SOCKIT, "connect", srv.addr])
        t.expect(b"> ")
        t.type(b"\\q\r")
        t.expect(b"Q")
        t.type(b"a\x16\x1b[2Jb\r")             # Ctrl-V ESC: a literal ESC in the line
        seen = t.expect(b"B")
        self.assertIn(b"A^[[2JB", seen)
        t.type(b"q\r")
        self.assertEqual(t.wait(10), 0, t.buf)
