"""`sockit exec -t` (issue 17): the client driven through a real
pseudo-terminal (os.openpty), as a person's terminal would: the remote
command's terminal, its size and resizes, Ctrl-C as a byte, a full-screen
program, the client's terminal settings put back on every way out; signal
forwarding without a terminal; bounded memory under a flooding command;
the refusals (--no-pty, a shell without --allow-shell, an old server).

The old server is a Python fake (OldServer below) that speaks protocol
version 1 exactly as sockit 0.1 does: it refuses any other hello version
with ERROR 02 and runs a plain REQUEST. Every wait is bounded.
"""

import fcntl
import os
import secrets
import select
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time

import helpers
from helpers import SOCKIT, SockitTestCase, wait_until

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exec_client import ExecClient, ServerError, proof  # noqa: E402
from test_exec import children, procs_with  # noqa: E402

WAIT = 10.0
PROMPT_CMD = b"PS1=$(printf 'Q%sW ' Z)\r"  # the prompt "QZW " never appears in its own echo
PROMPT = b"QZW "


class Term:
    """A client process on a fresh pty: our end is master; the client's
    stdin, stdout and stderr are the slave, whose settings we read."""

    def __init__(self, test, argv, rows=24, cols=80, env=None, drop=()):
        self.master, self.slave = os.openpty()
        self.resize(rows, cols)
        self.before = termios.tcgetattr(self.slave)
        self.buf = b""
        full = helpers.child_env(env)
        for name in drop:
            full.pop(name, None)
        self.proc = subprocess.Popen(argv, stdin=self.slave, stdout=self.slave,
                                     stderr=self.slave, env=full,
                                     start_new_session=True)
        test._procs.append(self.proc)
        test.addCleanup(self.close)

    def resize(self, rows, cols):
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def settings(self):
        return termios.tcgetattr(self.slave)

    def write(self, data):
        os.write(self.master, data)

    def _read(self, wait):
        r, _, _ = select.select([self.master], [], [], wait)
        if r:
            try:
                self.buf += os.read(self.master, 65536)
            except OSError:
                pass

    def expect(self, pattern, timeout=WAIT):
        """Everything up to and including pattern (consumed)."""
        end = time.monotonic() + timeout
        while True:
            i = self.buf.find(pattern)
            if i >= 0:
                got = self.buf[:i + len(pattern)]
                self.buf = self.buf[i + len(pattern):]
                return got
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("no %r within %.1f s; got %r" % (pattern, timeout, self.buf[-500:]))
            self._read(min(left, 0.1))

    def wait(self, timeout=WAIT):
        """The exit code, reading the terminal meanwhile so the client never blocks."""
        end = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < end:
            self._read(0.05)
        self._read(0)
        if self.proc.poll() is None:
            raise AssertionError("client still running; terminal: %r" % self.buf[-500:])
        return self.proc.returncode

    def close(self):
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class PtyCase(SockitTestCase):

    def setUp(self):
        super().setUp()
        self.token = secrets.token_hex(32).encode()
        self.token_file = self.path("token")
        with open(self.token_file, "wb") as f:
            f.write(self.token + b"\n")
        os.chmod(self.token_file, 0o600)

    def exec_server(self, *extra):
        return self.serve("exec", "127.0.0.1:0", "--token-file", self.token_file, *extra)

    def term(self, srv_addr, *args, rows=24, cols=80, env=None):
        argv = [SOCKIT, "exec", "-t", srv_addr, "--token-file", self.token_file] + list(args)
        return Term(self, argv, rows, cols, env)

    def shell(self, srv, rows=24, cols=80):
        """An interactive login shell with a prompt we can find."""
        t = self.term(srv.addr, rows=rows, cols=cols)
        t.write(PROMPT_CMD)
        t.expect(PROMPT)
        return t

    def assertNoChildren(self, srv):
        ok = wait_until(lambda: not children(srv.pid), WAIT)
        self.assertTrue(ok, "server children left: %s" % children(srv.pid))


class Terminal(PtyCase):

    def test_tty_size_term_and_client_address(self):
        srv = self.exec_server()
        t = self.term(srv.addr, "--", "sh", "-c",
                      'tty; stty size; echo "T=$TERM"; echo "C=$SOCKIT_CLIENT"',
                      rows=33, cols=101, env={"TERM": "xterm-256color"})
        self.assertEqual(t.wait(), 0)
        out = t.buf.decode()
        self.assertRegex(out, r"/dev/pts/\d+\r\n")
        self.assertIn("33 101\r\n", out)
        self.assertIn("T=xterm-256color\r\n", out)
        # The client's own address as the server saw it: "IP PORT".
        self.assertRegex(out, r"C=127\.0\.0\.1 \d+\r\n")
        self.assertNoChildren(srv)

    def test_default_term_is_xterm(self):
        srv = self.exec_server()
        t = Term(self, [SOCKIT, "exec", "-t", srv.addr, "--token-file", self.token_file,
                        "--", "sh", "-c", 'echo "T=$TERM"'], drop=("TERM",))
        self.assertEqual(t.wait(), 0)
        self.assertIn(b"T=xterm\r\n", t.buf)

    def test_resize_reaches_the_command(self):
        srv = self.exec_server("--allow-shell")
        t = self.shell(srv, rows=30, cols=100)
        t.write(b"stty size\r")
        self.assertIn(b"30 100\r\n", t.expect(PROMPT))
        t.resize(40, 120)
        t.proc.send_signal(signal.SIGWINCH)
        # The new size travels as a message; ask until it has arrived.
        end = time.monotonic() + WAIT
        seen = b""
        while b"40 120\r\n" not in seen and time.monotonic() < end:
            t.write(b"stty size\r")
            seen = t.expect(PROMPT)
        self.assertIn(b"40 120\r\n", seen)
        t.write(b"exit\r")
        self.assertEqual(t.wait(), 0)

    def test_ctrl_c_interrupts_the_foreground_command_only(self):
        srv = self.exec_server("--allow-shell")
        t = self.shell(srv)
        t.write(b"sleep 100\r")
        t.expect(b"sleep 100\r\n")
        self.assertTrue(wait_until(lambda: procs_with(b"sleep"), WAIT), "remote sleep never ran")
        start = time.monotonic()
        t.write(b"\x03")
        t.expect(PROMPT, timeout=5)
        self.assertLess(time.monotonic() - start, 1.0, "the prompt took too long to come back")
        self.assertIsNone(t.proc.poll(), "the client ended with the remote sleep")
        t.write(b"echo $?\r")
        self.assertIn(b"\r\n130\r\n", t.expect(PROMPT))
        t.write(b"exit\r")
        self.assertEqual(t.wait(), 0)
        self.assertNoChildren(srv)

    def test_full_screen_less_quits_with_q(self):
        srv = self.exec_server()
        long_file = self.path("long.txt")
        with open(long_file, "w") as f:
            for i in range(1, 2001):
                f.write("line %d of the long file\n" % i)
        t = self.term(srv.addr, "--", "less", long_file, rows=20, cols=80)
        t.expect(b"line 1 of the long file")
        t.expect(b"line 19 of the long file")
        self.assertNotIn(b"line 25 of", t.buf)  # one screen, not the whole file
        t.write(b" ")  # next page
        t.expect(b"line 38 of the long file")
        t.write(b"q")
        self.assertEqual(t.wait(), 0)
        self.assertNoChildren(srv)

    def test_exit_code_and_terminal_restored(self):
        srv = self.exec_server("--allow-shell")
        t = self.shell(srv)
        during = t.settings()
        self.assertNotEqual(during, t.before, "the client's terminal was not put in raw mode")
        self.assertEqual(during[3] & termios.ECHO, 0)
        t.write(b"exit 3\r")
        self.assertEqual(t.wait(), 3)
        self.assertEqual(t.settings(), t.before)
        self.assertNoChildren(srv)

    def test_terminal_restored_when_the_server_dies(self):
        srv = self.exec_server("--allow-shell")
        t = self.shell(srv)
        self.assertNotEqual(t.settings(), t.before)
        srv.kill()
        self.assertEqual(t.wait(), 255)
        self.assertEqual(t.settings(), t.before)
        self.assertIn(b"closed the connection", t.buf)

    def test_terminal_restored_on_sigterm_and_sighup(self):
        srv = self.exec_server("--allow-shell")
        for sig in (signal.SIGTERM, signal.SIGHUP):
            t = self.shell(srv)
            self.assertNotEqual(t.settings(), t.before)
            t.proc.send_signal(sig)
            self.assertEqual(t.wait(), 128 + sig)
            self.assertEqual(t.settings(), t.before)
        self.assertNoChildren(srv)

    def test_no_terminal_on_the_client_gets_80x24(self):
        srv = self.exec_server()
        cp = self.run_cmd([SOCKIT, "exec", "-t", srv.addr, "--token-file", self.token_file,
                           "--", "stty", "size"])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"24 80\r\n")

    def test_piped_input_to_a_terminal_shell_ends_it(self):
        srv = self.exec_server("--allow-shell")
        cp = self.run_cmd([SOCKIT, "exec", "-t", srv.addr, "--token-file", self.token_file],
                          input=b"tty\n")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertRegex(cp.stdout, rb"/dev/pts/\d+\r\n")

    def test_T_forces_no_terminal_and_plain_commands_have_none(self):
        srv = self.exec_server("--allow-shell")
        for args in (["-T"], []):
            cp = self.run_cmd([SOCKIT, "exec"] + args + [srv.addr, "--token-file", self.token_file,
                                                         "--", "sh", "-c", "tty; r=$?; echo x >&2; exit $r"])
            self.assertEqual(cp.returncode, 1, cp.stderr)  # tty(1): "not a tty", exit 1
            self.assertEqual(cp.stdout, b"not a tty\n")
            self.assertEqual(cp.stderr, b"x\n")  # stderr stays its own stream
        # -T without a command: the shell, no terminal, commands on stdin.
        cp = self.run_cmd([SOCKIT, "exec", "-T", srv.addr, "--token-file", self.token_file],
                          input=b"tty; exit 4\n")
        self.assertEqual(cp.returncode, 4, cp.stderr)
        self.assertIn(b"not a tty", cp.stdout)


class Signals(PtyCase):

    def test_sigint_stops_remote_sleep_and_exits_130(self):
        srv = self.exec_server()
        marker = "100.%d" % os.getpid()
        p = self.popen([SOCKIT, "exec", srv.addr, "--token-file", self.token_file, "--",
                        "sleep", marker], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertTrue(wait_until(lambda: procs_with(marker.encode()), WAIT))
        start = time.monotonic()
        p.send_signal(signal.SIGINT)
        p.wait(timeout=WAIT)
        self.assertLess(time.monotonic() - start, 1.0)
        self.assertEqual(p.returncode, 130)
        self.assertFalse(procs_with(marker.encode()))
        self.assertNoChildren(srv)

    def test_sigterm_is_forwarded_and_can_be_trapped(self):
        srv = self.exec_server()
        script = 'trap "echo got TERM; exit 0" TERM; echo ready; while :; do sleep 0.05; done'
        p = self.popen([SOCKIT, "exec", srv.addr, "--token-file", self.token_file, "-n", "--",
                        "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(p.stdout.readline(), b"ready\n")
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=WAIT)
        self.assertEqual(out, b"got TERM\n")
        self.assertEqual(p.returncode, 0, err)
        self.assertNoChildren(srv)

    def test_sighup_and_sigquit_are_forwarded(self):
        srv = self.exec_server()
        for sig in (signal.SIGHUP, signal.SIGQUIT):
            script = 'trap "echo got %d; exit 7" %d; echo ready; while :; do sleep 0.05; done' % (sig, sig)
            p = self.popen([SOCKIT, "exec", srv.addr, "--token-file", self.token_file, "-n", "--",
                            "sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.assertEqual(p.stdout.readline(), b"ready\n")
            p.send_signal(sig)
            out, _ = p.communicate(timeout=WAIT)
            self.assertEqual(out, b"got %d\n" % sig)
            self.assertEqual(p.returncode, 7)


class Bounds(PtyCase):

    def test_flooding_pty_with_a_stalled_client_keeps_server_memory_bounded(self):
        srv = self.exec_server()
        base = srv.rss_kib()
        # We never read the client's terminal: it blocks writing, stops
        # reading the socket, and the server must stop reading the pty.
        t = self.term(srv.addr, "--", "yes", "flood-line")
        self.assertTrue(wait_until(lambda: procs_with(b"flood-line"), WAIT))
        time.sleep(1.0)  # let the queues fill up
        first = srv.rss_kib()
        time.sleep(2.0)
        second = srv.rss_kib()
        self.assertLess(second - first, 4 * 1024, "server RSS still growing: %d -> %d KiB" % (first, second))
        self.assertLess(second - base, 32 * 1024, "server RSS grew %d KiB" % (second - base))
        # yes is blocked on the full terminal, not spinning.
        pid = procs_with(b"flood-line")[0]
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        self.assertIn(state, ("S", "D"))
        # SIGTERM ends the client even while it is blocked writing to a
        # terminal nobody reads, and puts the terminal back.
        t.proc.send_signal(signal.SIGTERM)
        self.assertEqual(t.proc.wait(timeout=WAIT), 128 + signal.SIGTERM)
        self.assertEqual(t.settings(), t.before)
        self.assertTrue(wait_until(lambda: not procs_with(b"flood-line"), WAIT))
        self.assertNoChildren(srv)

    def test_a_pty_session_counts_toward_max_procs(self):
        srv = self.exec_server("--max-procs", "1", "--allow-shell")
        t = self.shell(srv)
        cp = self.run_cmd([SOCKIT, "exec", srv.addr, "--token-file", self.token_file, "--", "true"])
        self.assertEqual(cp.returncode, 255)
        self.assertIn(b"--max-procs 1", cp.stderr)
        t.write(b"exit\r")
        self.assertEqual(t.wait(), 0)
        self.assertTrue(wait_until(lambda: not children(srv.pid), WAIT))
        cp = self.run_cmd([SOCKIT, "exec", srv.addr, "--token-file", self.token_file, "--", "true"])
        self.assertEqual(cp.returncode, 0, cp.stderr)

    def test_no_descriptor_left_after_sessions(self):
        srv = self.exec_server("--allow-shell")
        cp = self.run_cmd([SOCKIT, "exec", "-t", srv.addr, "--token-file", self.token_file,
                           "--", "true"])
        self.assertEqual(cp.returncode, 0)
        self.assertNoChildren(srv)
        base = srv.stable_fd_count()
        for how in ("exit", "kill"):
            t = self.shell(srv)
            if how == "exit":
                t.write(b"exit\r")
                self.assertEqual(t.wait(), 0)
            else:
                t.proc.kill()
                t.proc.wait(timeout=WAIT)
            self.assertNoChildren(srv)
        self.assertTrue(srv.wait_fds_at_most(base), "server descriptors: %d, were %d"
                        % (srv.fd_count(), base))


class OldServer:
    """sockit 0.1's exec server as far as a client can tell: version 1 only
    (any other hello version gets ERROR 02 and a close), then one REQUEST
    answered with a line of output and exit 0."""

    def __init__(self, token):
        self.token = token
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(8)
        self.ls.settimeout(0.2)
        self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.stop = False
        self.hellos = []
        self.th = threading.Thread(target=self.loop, daemon=True)
        self.th.start()

    @staticmethod
    def send(c, t, body=b""):
        c.sendall(struct.pack(">I", 1 + len(body)) + bytes([t]) + body)

    @staticmethod
    def recv(c):
        head = helpers.recv_exact(c, 4)
        return helpers.recv_exact(c, struct.unpack(">I", head)[0])

    def loop(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with c:
                c.settimeout(5)
                try:
                    self.serve(c)
                except (OSError, ValueError, EOFError):
                    pass

    def serve(self, c):
        hello = self.recv(c)
        version = hello[5]
        self.hellos.append(version)
        if version != 1:
            self.send(c, 0x7F, b"\x02protocol version %d is not supported (this side speaks 1)" % version)
            return
        nonce_s = os.urandom(32)
        self.send(c, 0x02, b"SKIT\x01\x04exec" + nonce_s)
        auth = self.recv(c)
        nonce_c = auth[1:33]
        if auth[33:65] != proof(self.token, b"client", nonce_s, nonce_c):
            self.send(c, 0x7F, b"\x03authentication failed")
            return
        self.send(c, 0x04, proof(self.token, b"server", nonce_s, nonce_c))
        msg = self.recv(c)
        if msg[0] != 0x10:
            self.send(c, 0x7F, b"\x01expected a request")
            return
        self.send(c, 0x20, b"old-server-ran\n")
        self.send(c, 0x30, b"\x00\x00")
        # A lingering close, as sockit's: the client's STDIN_EOF may still
        # be on its way, and closing over unread bytes would reset.
        c.shutdown(socket.SHUT_WR)
        while c.recv(4096):
            pass

    def close(self):
        self.stop = True
        self.ls.close()
        self.th.join(timeout=5)


class Refusals(PtyCase):

    def test_no_pty_server_refuses_t(self):
        srv = self.exec_server("--no-pty")
        cp = self.run_cmd([SOCKIT, "exec", "-t", srv.addr, "--token-file", self.token_file,
                           "--", "true"])
        self.assertEqual(cp.returncode, 126)
        self.assertIn(b"--no-pty", cp.stderr)
        self.assertEqual(cp.stderr.count(b"\n"), 1)
        # Without -t the same server still runs commands.
        cp = self.run_cmd([SOCKIT, "exec", srv.addr, "--token-file", self.token_file, "--", "true"])
        self.assertEqual(cp.returncode, 0, cp.stderr)

    def test_shell_needs_allow_shell(self):
        srv = self.exec_server()
        t = Term(self, [SOCKIT, "exec", "-t", srv.addr, "--token-file", self.token_file])
        self.assertEqual(t.wait(), 126)
        self.assertIn(b"--allow-shell", t.buf)
        self.assertEqual(t.settings(), t.before)
        self.assertFalse(children(srv.pid))

    def test_shell_option_picks_the_login_shell(self):
        srv = self.exec_server("--allow-shell", "--shell", "/bin/bash")
        t = self.term(srv.addr)
        t.write(b'echo "shell=$0 login=$(shopt -q login_shell && echo yes)"; exit 5\r')
        t.expect(b"shell=")
        self.assertEqual(t.wait(), 5)
        self.assertIn(b"login=yes", t.buf)

    def test_old_server_t_is_one_clear_line(self):
        old = OldServer(self.token)
        self.addCleanup(old.close)
        start = time.monotonic()
        cp = self.run_cmd([SOCKIT, "exec", "-t", old.addr, "--token-file", self.token_file,
                           "--", "true"], timeout=20)
        self.assertLess(time.monotonic() - start, 5.0)
        self.assertEqual(cp.returncode, 255)
        self.assertIn(b"the server does not support -t", cp.stderr)
        self.assertEqual(cp.stderr.count(b"\n"), 1)
        # Everything else still works against it: a plain command.
        cp = self.run_cmd([SOCKIT, "exec", old.addr, "--token-file", self.token_file, "--", "true"],
                          timeout=20)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"old-server-ran\n")
        self.assertEqual(old.hellos, [2, 2, 1])

    def test_version_negotiation_on_the_wire(self):
        srv = self.exec_server()
        host, port = helpers.parse_addr(srv.addr)[2]
        # A version-1 client (exec_client.py) gets version 1 back, and the
        # new message types are unknown to it.
        c = ExecClient.connect((host, port), self.token)
        self.track(c.sock)
        c.send(0x15, b"\x02")
        with self.assertRaises(ServerError) as e:
            c.recv()
        self.assertEqual(e.exception.code, 1)
        # A version-3 hello (a future client) is answered with version 2.
        s = self.connect(srv.addr)
        s.sendall(helpers.frame(b"\x01SKIT\x03\x04exec"))
        hello = helpers.read_frame(s)
        self.assertEqual(hello[:6], b"\x02SKIT\x02")
