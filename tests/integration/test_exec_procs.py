"""exec process handling: commands run in a session of their own without
the operator's terminal (a server started on a pty, as its controlling
terminal); what a command leaves behind with setsid or a double fork dies
when it ends, times out, loses its client or the server stops, and counts
against --max-procs while it lives (review #4, #5); --allow-cmd (the
programs list) with its warnings, and --allow refusing program names; the
idle timeout of an exec session between commands.

Readiness comes from log lines, /proc and the protocol; every wait is
bounded.
"""

import errno
import fcntl
import os
import secrets
import select
import subprocess
import sys
import termios
import threading
import time

import helpers
from helpers import SOCKIT, SockitTestCase, wait_until

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from exec_client import ExecClient  # noqa: E402
from test_exec import children, procs_with  # noqa: E402

WAIT = 10.0


class ProcCase(SockitTestCase):

    def setUp(self):
        super().setUp()
        self.token = secrets.token_hex(32).encode()
        self.token_file = self.path("token")
        with open(self.token_file, "wb") as f:
            f.write(self.token + b"\n")
        os.chmod(self.token_file, 0o600)

    def exec_server(self, *extra):
        return self.serve("exec", "127.0.0.1:0", "--token-file", self.token_file, *extra)

    def run_exec(self, srv, *args, timeout=60):
        return self.run_cmd([SOCKIT, "exec", srv.addr, "--token-file", self.token_file]
                            + list(args), timeout=timeout)

    def client(self, srv):
        host, port = helpers.parse_addr(srv.addr)[2]
        c = ExecClient.connect((host, port), self.token)
        self._socks.append(c.sock)
        return c

    def assertGone(self, marker, timeout=WAIT):
        ok = wait_until(lambda: not procs_with(marker), timeout)
        self.assertTrue(ok, "processes with %r still running: %s" % (marker, procs_with(marker)))


class NoTerminal(ProcCase):

    PROBE = ("import errno,os\n"
             "try:\n"
             "    os.open('/dev/tty', os.O_RDWR); print('OPENED')\n"
             "except OSError as e: print(errno.errorcode[e.errno])\n"
             "s=open('/proc/self/stat').read(); f=s[s.rindex(')')+2:].split()\n"
             "print(os.getpid(), f[3], f[4])\n")

    def test_command_cannot_open_the_servers_terminal(self):
        master, slave = os.openpty()
        out = []

        def drain():  # the server logs to the pty: keep it from filling
            while True:
                try:
                    r, _, _ = select.select([master], [], [], 0.2)
                    if r:
                        data = os.read(master, 65536)
                        if not data:
                            return
                        out.append(data)
                except OSError:
                    return
                if srv.poll() is not None and not r:
                    return

        def ctty():  # a session of its own, with the pty as its terminal
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        argv = helpers.SERVER_WRAPPER + [SOCKIT, "serve", "exec", "127.0.0.1:0", "--token-file",
                                         self.token_file]
        srv = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                               preexec_fn=ctty, env=helpers.child_env(), close_fds=True)
        os.close(slave)
        t = threading.Thread(target=drain, daemon=True)
        t.start()
        try:
            self.assertTrue(wait_until(lambda: b"listening on" in b"".join(out), WAIT),
                            b"".join(out))
            line = [l for l in b"".join(out).splitlines() if b"listening on" in l][0]
            addr = line.split(b"listening on ")[1].strip().decode()
            with open("/proc/%d/stat" % srv.pid) as f:
                s = f.read()
            if int(s[s.rindex(")") + 2:].split()[4]) == 0:
                self.skipTest("the server did not get the pty as its controlling terminal")
            cp = self.run_cmd([SOCKIT, "exec", addr, "--token-file", self.token_file, "-n",
                               "--", "python3", "-c", self.PROBE], timeout=30)
            self.assertEqual(cp.returncode, 0, cp.stderr)
            res, ids = cp.stdout.decode().splitlines()
            self.assertEqual(res, "ENXIO", "the command opened the server's terminal")
            pid, sid, tty = (int(x) for x in ids.split())
            self.assertEqual(sid, pid, "the command does not lead its own session")
            self.assertEqual(tty, 0, "the command has a controlling terminal")
        finally:
            srv.terminate()
            srv.wait(timeout=WAIT + helpers.STOP_SLACK)
            t.join(timeout=WAIT)
            os.close(master)


class Escapes(ProcCase):
    """The reproducer of review #5: setsid and double-fork children."""

    ESCAPE = "setsid sleep %s </dev/null >/dev/null 2>&1 & "

    def test_gone_when_the_command_ends_and_max_procs_holds(self):
        srv = self.exec_server("--allow-shell", "--max-procs", "2", "--timeout", "5",
                               "--log-level", "debug")
        srv.wait_line(r"commands contained by (one cgroup v2|child subreaper)")
        for i in range(5):
            marker = "3000.42%d" % i
            cp = self.run_exec(srv, "-n", "--sh", self.ESCAPE % marker + "sleep 0.2")
            self.assertEqual(cp.returncode, 0, cp.stderr)
            self.assertGone(marker.encode())
        # Double fork: the middle process exits at once.
        cp = self.run_exec(srv, "-n", "--sh", "(sleep 3000.4299 </dev/null >/dev/null 2>&1 &)")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertGone(b"3000.4299")
        srv.wait_line(r"pid \d+ contained by (its own cgroup v2|the child subreaper)")
        self.assertTrue(wait_until(lambda: not children(srv.pid), WAIT), children(srv.pid))
        srv.stop_checked(self)

    def test_gone_at_timeout(self):
        srv = self.exec_server("--allow-shell", "--timeout", "1")
        cp = self.run_exec(srv, "-n", "--sh", self.ESCAPE % "3001.42" + "echo up; sleep 1000")
        self.assertEqual(cp.returncode, 124, cp.stderr)
        self.assertEqual(cp.stdout, b"up\n")
        self.assertGone(b"3001.42")
        srv.stop_checked(self)

    def test_gone_when_the_client_vanishes(self):
        srv = self.exec_server("--allow-shell")
        p = self.popen([SOCKIT, "exec", srv.addr, "--token-file", self.token_file, "-n", "--sh",
                        self.ESCAPE % "3002.42" + "exec sleep 3002.4242"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertTrue(wait_until(lambda: len(procs_with(b"3002.42")) >= 2, WAIT))
        p.kill()
        p.communicate(timeout=WAIT)
        self.assertGone(b"3002.42")
        srv.stop_checked(self)

    def test_gone_when_the_server_stops(self):
        srv = self.exec_server("--allow-shell", "--drain-timeout", "0.5")
        p = self.popen([SOCKIT, "exec", srv.addr, "--token-file", self.token_file, "-n", "--sh",
                        self.ESCAPE % "3003.42" + "exec sleep 3003.4242"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertTrue(wait_until(lambda: len(procs_with(b"3003.42")) >= 2, WAIT))
        srv.stop_checked(self)
        p.communicate(timeout=WAIT)
        self.assertGone(b"3003.42")

    def test_leftovers_count_against_max_procs(self):
        srv = self.exec_server("--allow-shell", "--max-procs", "2")
        busy = self.client(srv)
        # The subshell exits: its sleep is re-parented to the server while
        # the command still runs; that is two processes of one command.
        busy.request([b"(sleep 3004.4242 </dev/null >/dev/null 2>&1 &); exec sleep 3004.4243"],
                     shell=True, no_stdin=True)

        def reparented():
            # The sleep itself, once it runs as sleep: until the command's
            # sh execs its own sleep, that sh's command line names 3004.4242
            # too, and it is the server's child from the start.
            def is_the_job(pid):
                try:
                    with open("/proc/%d/cmdline" % pid, "rb") as f:
                        argv = f.read().split(b"\0")
                except OSError:
                    return False
                return os.path.basename(argv[0]) == b"sleep" and b"3004.4242" in argv
            return any(is_the_job(pid) for pid, _ in children(srv.pid))
        self.assertTrue(wait_until(reparented, WAIT), "the job never came to the server")
        c = self.client(srv)
        out, err, result = c.run([b"true"])
        self.assertEqual(result[:2], ("error", 4), result)
        self.assertIn("max-procs", result[2])
        srv.wait_line(r"max-procs 2 reached: 1 commands, 1 processes they left")
        busy.close()
        self.assertGone(b"3004.424")
        self.assertTrue(wait_until(lambda: c.run([b"true"])[2] == ("exit", 0), WAIT))
        c.close()
        srv.stop_checked(self)


class AllowCmd(ProcCase):

    def test_allow_cmd_limits_programs_and_warns_about_runners(self):
        srv = self.exec_server("--allow-cmd", "echo,env,/usr/bin/python3,find")
        for prog in ("env", "/usr/bin/python3", "find"):
            srv.wait_line(r"warning: --allow-cmd %s allows any program" % prog)
        self.assertFalse(srv.find(r"--allow-cmd echo allows"))
        self.assertEqual(self.run_exec(srv, "--", "echo", "hi").stdout, b"hi\n")
        cp = self.run_exec(srv, "--", "ls")
        self.assertEqual(cp.returncode, 126, cp.stderr)
        self.assertIn(b"--allow-cmd", cp.stderr)
        srv.stop_checked(self)

    def test_allow_with_a_program_name_is_a_usage_error(self):
        for args in (["exec", "127.0.0.1:0", "--token-file", self.token_file, "--allow", "ls"],
                     ["echo", "127.0.0.1:0", "--allow", "ls,cat"]):
            cp = self.sockit("serve", *args, timeout=WAIT)
            self.assertEqual(cp.returncode, 2, cp.stderr)
            self.assertIn(b"--allow takes network addresses (CIDR); to limit exec's programs "
                          b"use --allow-cmd", cp.stderr)

    def test_help_documents_allow_cmd(self):
        cp = self.sockit("serve", "--help", timeout=WAIT)
        for word in (b"--allow-cmd CMD", b"program only", b"--allow CIDR", b"--deny CIDR",
                     b"--allow-file", b"--deny-file", b"default 300"):
            self.assertIn(word, cp.stdout)


class Idle(ProcCase):

    def test_idle_session_is_closed_but_a_silent_command_is_not(self):
        srv = self.exec_server("--idle-timeout", "1")
        c = self.client(srv)
        t0 = time.monotonic()
        # A command silent for longer than the idle timeout runs to its end.
        out, err, result = c.run([b"sleep", b"1.5"])
        self.assertEqual(result, ("exit", 0))
        self.assertGreater(time.monotonic() - t0, 1.4)
        # Then, with nothing running, the session is closed after ~1 s.
        t1 = time.monotonic()
        self.assertTrue(helpers.closed_by_peer(c.sock, timeout=WAIT))
        self.assertLess(time.monotonic() - t1, 5)
        srv.wait_line(r"idle for 1 s between commands: closing")
        srv.stop_checked(self)

    def test_default_is_long(self):
        srv = self.exec_server()
        c = self.client(srv)
        self.assertEqual(c.run([b"true"])[2], ("exit", 0))
        self.assertFalse(helpers.closed_by_peer(c.sock, timeout=1.5))
        self.assertEqual(c.run([b"true"])[2], ("exit", 0))
        c.close()
        srv.stop_checked(self)


if __name__ == "__main__":
    import unittest
    unittest.main()
