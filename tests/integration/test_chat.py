"""The chat room and its client: raw-socket members (welcome,
relay without echo, nick rules, /who, /me, join/leave/nick notices, one order
for everyone), a member that never reads while others flood, over-long
lines, --max-rate, 1,000 members, nc as a member, and `sockit chat` in pipe
mode and under a pseudo-terminal (incoming lines while a line is typed)."""

import os
import pty
import re
import resource
import select
import selectors
import signal
import socket
import struct
import subprocess
import threading
import time

from helpers import (IO_TIMEOUT, SOCKIT, SockitTestCase, child_env, closed_by_peer,
                     wait_until)

WELCOME_RE = re.compile(r"^\*\*\* welcome to the chat, you are (guest\d+) \(commands: "
                        r"/nick NAME, /who, /me TEXT, /quit, /help\)$")


class Member:
    """One chat member on a raw socket, reading whole lines."""

    def __init__(self, test, addr, welcome=True, timeout=IO_TIMEOUT):
        self.test = test
        self.sock = test.connect(addr, timeout)
        name = self.sock.getsockname()
        self.port = name[1] if isinstance(name, tuple) else None     # None over Unix sockets
        self.buf = b""
        self.nick = None
        if welcome:
            line = self.line()
            m = WELCOME_RE.match(line)
            test.assertIsNotNone(m, "not a welcome line: %r" % line)
            self.nick = m.group(1)

    def send(self, *lines):
        self.sock.sendall(b"".join((l.encode() if isinstance(l, str) else l) + b"\n" for l in lines))

    def raw_line(self, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no line within %.1f s (have %r)" % (timeout, self.buf[:200]))
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise EOFError("server closed; unfinished line %r" % self.buf[:200])
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\n")
        return line

    def line(self, timeout=IO_TIMEOUT):
        return self.raw_line(timeout).decode("utf-8")

    def lines(self, n, timeout=IO_TIMEOUT):
        return [self.line(timeout) for _ in range(n)]

    def expect(self, want, timeout=IO_TIMEOUT):
        got = self.line(timeout)
        self.test.assertEqual(got, want)
        return got

    def skip_until(self, want, timeout=IO_TIMEOUT, limit=100000):
        """Reads lines until `want` (a string or a compiled regex); returns the
        lines before it and the matching line."""
        before = []
        deadline = time.monotonic() + timeout
        for _ in range(limit):
            line = self.line(max(0.01, deadline - time.monotonic()))
            if (want.search(line) if hasattr(want, "search") else line == want):
                return before, line
            before.append(line)
        raise AssertionError("%r not seen in %d lines" % (want, limit))

    def who(self):
        """Sends /who; returns the nicks listed (in order). Also a barrier:
        every line the server owed this member before is read first."""
        self.send("/who")
        return self.who_reply()

    def who_reply(self, timeout=IO_TIMEOUT):
        line = self.line(timeout)
        m = re.match(r"^\*\*\* members \((\d+)\):(.*)$", line)
        self.test.assertIsNotNone(m, "not a /who line: %r" % line)
        total, nicks = int(m.group(1)), m.group(2).split()
        while len(nicks) < total:
            m = re.match(r"^\*\*\* members \((\d+)\):(.*)$", self.line(timeout))
            self.test.assertIsNotNone(m)
            nicks += m.group(2).split()
        self.test.assertEqual(len(nicks), total)
        return nicks

    def close(self):
        self.sock.close()


class ChatCase(SockitTestCase):

    def chat(self, *opts, addr="127.0.0.1:0"):
        return self.serve("chat", addr, *opts)

    def members(self, srv, n):
        ms = [Member(self, srv.addr) for _ in range(n)]
        # Every earlier member saw each later one join; read those notices.
        for i, m in enumerate(ms):
            for later in ms[i + 1:]:
                m.expect("*** %s joined" % later.nick)
        return ms


class Basics(ChatCase):

    def test_welcome_guest_nicks_and_join_notices(self):
        srv = self.chat()
        a = Member(self, srv.addr)
        b = Member(self, srv.addr)
        self.assertEqual((a.nick, b.nick), ("guest1", "guest2"))
        a.expect("*** guest2 joined")
        c = Member(self, srv.addr)
        self.assertEqual(c.nick, "guest3")
        a.expect("*** guest3 joined")
        b.expect("*** guest3 joined")
        self.assertEqual(c.who(), ["guest1", "guest2", "guest3"])

    def test_relay_without_echo_and_utf8_untouched(self):
        srv = self.chat()
        a, b, c = self.members(srv, 3)
        text = "hello 你好 ☃ — déjà vu \t tab"
        a.send(text)
        for m in (b, c):
            self.assertEqual(m.raw_line(), ("guest1: " + text).encode("utf-8"))
        # The sender's next line is its /who reply: the server never echoed.
        self.assertEqual(a.who(), ["guest1", "guest2", "guest3"])
        # A "\r\n" line ending loses its "\r"; invalid UTF-8 still passes.
        b.sock.sendall(b"crlf line\r\nbytes \xff\xfe end\n")
        a.expect("guest2: crlf line")
        self.assertEqual(a.raw_line(), b"guest2: bytes \xff\xfe end")
        # Empty lines are not relayed; "//" sends a line that starts with "/".
        c.send("", "//etc/passwd is a path")
        a.expect("guest3: /etc/passwd is a path")
        b.expect("guest3: /etc/passwd is a path")

    def test_nick_rules(self):
        srv = self.chat()
        a, b = self.members(srv, 2)
        a.send("/nick alice")
        a.expect("*** you are now alice")
        b.expect("*** guest1 is now alice")
        cases = [
            ("/nick alice", "*** error: nick alice is taken"),
            ("/nick ALICE", "*** error: nick ALICE is taken"),      # case-insensitive
            ("/nick b@d", '*** error: invalid nick "b@d": use 1-32 of A-Z a-z 0-9 _ -'),
            ("/nick two words", '*** error: invalid nick "two words": use 1-32 of A-Z a-z 0-9 _ -'),
            ("/nick " + "x" * 33, '*** error: invalid nick "%s": use 1-32 of A-Z a-z 0-9 _ -' % ("x" * 33)),
            ("/nick", '*** error: invalid nick "": use 1-32 of A-Z a-z 0-9 _ -'),
            ("/nick n\u00e9", '*** error: invalid nick "n\u00e9": use 1-32 of A-Z a-z 0-9 _ -'),
        ]
        for cmd, reply in cases:
            with self.subTest(cmd=cmd[:40]):
                b.send(cmd)
                b.expect(reply)
        long_ok = "A_b-9" + "z" * 27
        self.assertEqual(len(long_ok), 32)
        b.send("/nick " + long_ok)
        b.expect("*** you are now " + long_ok)
        a.expect("*** guest2 is now " + long_ok)
        b.send("/nick " + long_ok)
        b.expect("*** you are already " + long_ok)
        # Changing only the case of one's own nick is allowed.
        a.send("/nick Alice")
        a.expect("*** you are now Alice")
        b.expect("*** alice is now Alice")
        self.assertEqual(b.who(), ["Alice", long_ok])
        # A nick given up is free again; guest numbers skip taken nicks.
        a.send("/nick guest3")
        a.expect("*** you are now guest3")
        b.expect("*** Alice is now guest3")
        c = Member(self, srv.addr)
        self.assertEqual(c.nick, "guest4")

    def test_who_me_help_and_unknown_commands(self):
        srv = self.chat()
        a, b = self.members(srv, 2)
        a.send("/me waves at everyone")
        b.expect("* guest1 waves at everyone")
        a.send("/me")
        a.expect("*** error: /me needs some text, as in: /me waves")
        a.send("/help")
        help_line = a.line()
        for cmd in ("/nick NAME", "/who", "/me TEXT", "/quit", "/help"):
            self.assertIn(cmd, help_line)
        self.assertTrue(help_line.startswith("*** commands: "), help_line)
        a.send("/dance now")
        a.expect("*** error: unknown command /dance; try /help")
        a.send("/WHO")                                  # commands ignore case
        self.assertEqual(a.who_reply(), ["guest1", "guest2"])
        # Nothing of this reached b: its next line is its own /who reply.
        self.assertEqual(b.who(), ["guest1", "guest2"])

    def test_leave_notices_quit_close_and_reset(self):
        srv = self.chat()
        a, b, c, d = self.members(srv, 4)
        b.send("/quit")
        b.expect("*** bye")
        self.assertTrue(closed_by_peer(b.sock), "the server did not close after /quit")
        for m in (a, c, d):
            m.expect("*** guest2 left")
        c.close()                                       # an orderly close
        for m in (a, d):
            m.expect("*** guest3 left")
        d.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        d.close()                                       # a reset
        a.expect("*** guest4 left (connection reset)")
        self.assertEqual(a.who(), ["guest1"])
        srv.wait_line(r"^sockit: chat close \S+:%d in=\d+ out=\d+ reason=connection reset$" % d.port)

    def test_last_line_without_newline_counts_at_eof(self):
        srv = self.chat()
        a, b = self.members(srv, 2)
        b.sock.sendall(b"unterminated")
        b.sock.shutdown(socket.SHUT_WR)
        a.expect("guest2: unterminated")
        a.expect("*** guest2 left")
        self.assertTrue(closed_by_peer(b.sock))

    def test_unix_socket_room(self):
        path = self.path("chat.sock")
        srv = self.chat(addr="unix:" + path)
        a, b = self.members(srv, 2)
        b.send("over unix")
        a.expect("guest2: over unix")


class Order(ChatCase):

    def test_two_talkers_every_listener_sees_one_order(self):
        srv = self.chat("--max-rate", "0")
        t1, t2, l1, l2, l3 = self.members(srv, 5)
        n = 300

        def talk(m, tag):
            # Several lines per write and many writes: the two talkers'
            # lines interleave on the server in no planned order.
            for i in range(0, n, 10):
                m.send(*["%s %d" % (tag, j) for j in range(i, i + 10)])

        threads = [threading.Thread(target=talk, args=(t1, "one")),
                   threading.Thread(target=talk, args=(t2, "two"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        seen = [m.lines(2 * n, timeout=20) for m in (l1, l2, l3)]
        self.assertEqual(seen[0], seen[1], "listeners 1 and 2 saw different orders")
        self.assertEqual(seen[0], seen[2], "listeners 1 and 3 saw different orders")
        ones = [l for l in seen[0] if l.startswith("guest1: ")]
        twos = [l for l in seen[0] if l.startswith("guest2: ")]
        self.assertEqual(ones, ["guest1: one %d" % i for i in range(n)])
        self.assertEqual(twos, ["guest2: two %d" % i for i in range(n)])
        # Each talker saw the other's lines in the same order as everyone.
        self.assertEqual(t1.lines(n, timeout=20), twos)
        self.assertEqual(t2.lines(n, timeout=20), ones)
        self.assertGreater(len(set(seen[0][:n])), 1)


class Limits(ChatCase):

    def test_member_that_never_reads_is_dropped_room_goes_on(self):
        # A small ASan quarantine, so that freed lines do not count as held.
        asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1") + ":quarantine_size_mb=8"
        srv = self.serve("chat", "127.0.0.1:0", "--max-queue", "256K", "--max-rate", "0",
                         env={"ASAN_OPTIONS": asan})
        stuck = Member(self, srv.addr)
        talker, listener = Member(self, srv.addr), Member(self, srv.addr)
        stuck.expect("*** %s joined" % talker.nick)
        stuck.expect("*** %s joined" % listener.nick)
        talker.expect("*** %s joined" % listener.nick)
        rss0 = srv.rss_kib()
        payload = b"x" * 1000
        batch = 100
        state = {"sent": 0, "next": 0, "buf": b"", "dropped": False}

        def flood(total_lines):
            """The talker sends total_lines lines in batches; the listener reads
            them all meanwhile and checks each, in order."""
            deadline = time.monotonic() + 120
            end = state["sent"] + total_lines
            while state["sent"] < end:
                self.assertLess(time.monotonic(), deadline, "flood did not get through in time")
                first = state["sent"]
                talker.sock.sendall(b"".join(b"%d %s\n" % (first + i, payload) for i in range(batch)))
                state["sent"] += batch
                want = state["sent"]
                while state["next"] < want:
                    data = listener.sock.recv(1 << 20)
                    self.assertTrue(data, "the listener was disconnected")
                    lines = (state["buf"] + data).split(b"\n")
                    state["buf"] = lines.pop()
                    for line in lines:
                        if line.startswith(b"*** "):
                            self.assertEqual(line.decode(), "*** %s left (dropped: not reading)" % stuck.nick)
                            state["dropped"] = True
                            continue
                        self.assertEqual(line, b"%s: %d %s" % (talker.nick.encode(), state["next"], payload))
                        state["next"] += 1

        # Flood until the stuck member is dropped (its queue over 256 KiB,
        # after the kernel's buffers filled and the talker, paused for it
        # for 3 s, no longer waits for it), the listener keeping up.
        listener.sock.settimeout(10)
        deadline = time.monotonic() + 60
        while not state["dropped"]:
            self.assertLess(time.monotonic(), deadline, "the stuck member was never dropped")
            flood(batch)
        # Best effort: what was queued for it ends with the notice, if it
        # reads within the grace period the server gives it (2 s).
        stuck.sock.settimeout(10)
        tail = b""
        try:
            while True:
                data = stuck.sock.recv(1 << 20)
                if not data:
                    break
                tail = (tail + data)[-4096:]
        except (ConnectionResetError, socket.timeout):
            pass
        self.assertIn(b"*** disconnected: you are not reading; more than 262144 bytes were waiting "
                      b"for you\n", tail)
        # The drop is logged, with the reason, as a warning.
        srv.wait_line(r"^sockit: chat close \S+:%d in=\d+ out=\d+ reason=dropped: more than 262144 "
                      r"bytes queued \(not reading\)$" % stuck.port)
        # The room goes on: 64 MB more through it, and the server holds none of
        # it (a leaked reference per line would keep every line).
        flood(64 * 1024)
        talker.send("after the flood")
        listener.sock.settimeout(IO_TIMEOUT)
        listener.buf = state["buf"]
        listener.expect("%s: after the flood" % talker.nick)
        self.assertEqual(listener.who(), [talker.nick, listener.nick])
        growth = (srv.rss_kib() - rss0) // 1024
        self.assertLess(growth, 32, "server RSS grew %d MiB" % growth)

    def test_over_long_lines_refused_member_stays(self):
        srv = self.chat("--max-line", "100")
        a, b = self.members(srv, 2)
        a.send("y" * 101)
        a.expect("*** error: line longer than 100 bytes; not delivered")
        a.send("z" * 100)
        b.expect("guest1: " + "z" * 100)
        a.sock.sendall(b"w" * 100 + b"\r\n")               # the "\r" does not count
        b.expect("guest1: " + "w" * 100)
        # A line far longer than the limit, in many pieces: one notice, the
        # rest of it skipped, and the member goes on.
        for _ in range(64):
            a.sock.sendall(b"q" * 16384)
        a.send(" end of the huge line", "still here")
        a.expect("*** error: line longer than 100 bytes; not delivered")
        b.expect("guest1: still here")
        self.assertEqual(a.who(), ["guest1", "guest2"])

    def test_default_max_line_is_4k(self):
        srv = self.chat()
        a, b = self.members(srv, 2)
        a.send("k" * 4096, "k" * 4097)
        b.expect("guest1: " + "k" * 4096)
        a.expect("*** error: line longer than 4096 bytes; not delivered")

    def test_max_rate_refuses_excess_lines(self):
        srv = self.chat("--max-rate", "5")
        a, b = self.members(srv, 2)
        a.send(*["burst %d" % i for i in range(20)])
        a.expect("*** error: more than 5 lines per second; lines are being refused")
        for i in range(5):
            b.expect("guest1: burst %d" % i)
        # b got nothing more than those five.
        self.assertEqual(b.who(), ["guest1", "guest2"])
        # The allowance comes back with time.
        delivered = []

        def later():
            a.send("later")
            try:
                delivered.append(b.line(timeout=0.3))
            except AssertionError:
                pass
            return delivered
        self.assertTrue(wait_until(later, 5, interval=0.2), "no line went through after the burst")
        self.assertEqual(delivered[0], "guest1: later")
        # One notice for the whole burst: a's next line is its /who reply.
        self.assertEqual(a.who(), ["guest1", "guest2"])

    def test_max_conns_refuses_extra_members(self):
        srv = self.chat("--max-conns", "2")
        a, b = self.members(srv, 2)
        c = self.connect(srv.addr)
        self.assertTrue(closed_by_peer(c), "a third member was let in past --max-conns 2")
        self.assertEqual(a.who(), ["guest1", "guest2"])

    def test_started_line_must_finish(self):
        srv = self.chat("--frame-timeout", "0.5")
        a, b = self.members(srv, 2)
        b.sock.sendall(b"half a line")
        a.expect("*** guest2 left (line not finished in time)", timeout=10)
        self.assertTrue(closed_by_peer(b.sock))


class Scale(ChatCase):

    def test_thousand_members_join_talk_and_leave(self):
        n = 1000
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = 2 * n + 200
        if hard != resource.RLIM_INFINITY and hard < need:
            self.skipTest("RLIMIT_NOFILE hard limit %d < %d" % (hard, need))
        if soft != resource.RLIM_INFINITY and soft < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))
        srv = self.chat("--quiet")               # the server inherits the raised limit
        fds0 = srv.stable_fd_count()
        socks = []
        for _ in range(n):
            s = self.connect(srv.addr, timeout=30)
            s.setblocking(False)
            socks.append(s)
        sel = selectors.DefaultSelector()
        bufs = {}
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
            bufs[s] = b""

        def read_until(which, marker, timeout):
            """Reads every member until each of `which` has `marker` in what it got."""
            waiting = {s for s in which if marker not in bufs[s]}
            deadline = time.monotonic() + timeout
            while waiting:
                left = deadline - time.monotonic()
                self.assertGreater(left, 0, "%d of %d members never got %r"
                                   % (len(waiting), len(which), marker))
                for key, _ in sel.select(min(left, 1.0)):
                    s = key.fileobj
                    data = s.recv(1 << 16)
                    self.assertTrue(data, "the server closed a member")
                    # Only a tail is kept (early members get a thousand join
                    # lines), so look for the marker before cutting.
                    seen = bufs[s] + data
                    if marker in seen:
                        waiting.discard(s)
                    bufs[s] = seen[-8192:]

        read_until(socks, b"(commands:", 60)
        socks[0].sendall(b"hello, thousand\n/who\n")
        # Every member but the sender gets the line; the sender gets its
        # /who reply, which names all of them.
        read_until(socks[1:], b"guest1: hello, thousand\n", 60)
        read_until(socks[:1], b"*** members (%d):" % n, 60)
        for s in socks:
            sel.unregister(s)
            s.close()
        self.assertEqual(srv.wait_fds_at_most(fds0, timeout=30), fds0,
                         "descriptors not back to baseline after %d members left" % n)
        last = Member(self, srv.addr)
        self.assertEqual(last.nick, "guest%d" % (n + 1))
        # The lobby's history (--history, default 50) comes before anything else.
        last.expect("[history] guest1: hello, thousand")
        self.assertEqual(last.who(), [last.nick])

    def test_workers_share_one_room(self):
        srv = self.chat("--workers", "4")
        ms = self.members(srv, 8)
        self.assertEqual(ms[0].who(), ["guest%d" % i for i in range(1, 9)])
        ms[7].send("one room")
        for m in ms[:7]:
            m.expect("guest8: one room")


class Drain(ChatCase):

    def test_sigterm_tells_members_and_exits_promptly(self):
        srv = self.chat("--drain-timeout", "30")
        a, b = self.members(srv, 2)
        t0 = time.monotonic()
        srv.send_signal(signal.SIGTERM)
        for m in (a, b):
            m.expect("*** disconnected: the server is shutting down")
            self.assertTrue(closed_by_peer(m.sock))
        self.assertEqual(srv.wait_exit(10), 0)
        self.assertLess(time.monotonic() - t0, 10, "the drain waited for members to leave")
        srv.stop_checked(self)


class Clients(ChatCase):

    def test_nc_as_a_member(self):
        srv = self.chat()
        a = Member(self, srv.addr)
        host, port = srv.addr.rsplit(":", 1)
        nc = self.popen(["nc", "-N", host, port], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
        a.expect("*** guest2 joined")
        nc.stdin.write("from nc, ça va\n".encode())
        nc.stdin.flush()
        a.expect("guest2: from nc, ça va")
        a.send("hello nc")
        a.send("/who")                      # a barrier: nc got "hello nc" before this reply
        a.who_reply()
        nc.stdin.close()                    # -N: EOF shuts the socket down; the member leaves
        a.expect("*** guest2 left")
        out = nc.stdout.read()               # to EOF: the server closed it
        self.assertEqual(nc.wait(10), 0)
        lines = out.decode().splitlines()
        self.assertTrue(WELCOME_RE.match(lines[0]), lines)
        self.assertIn("guest1: hello nc", lines)

    def test_client_pipe_mode(self):
        srv = self.chat()
        a = Member(self, srv.addr)
        cp = self.sockit("chat", srv.addr, "--nick", "piper",
                         input="hello from a pipe\n/me waves\nno newline at the end".encode(),
                         timeout=30)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertClean(cp)
        out = cp.stdout.decode().splitlines()
        self.assertTrue(WELCOME_RE.match(out[0]), out)
        self.assertEqual(out[1:], ["*** you are now piper", "*** bye"])
        a.expect("*** guest2 joined")
        a.expect("*** guest2 is now piper")
        a.expect("piper: hello from a pipe")
        a.expect("* piper waves")
        a.expect("piper: no newline at the end")
        a.expect("*** piper left")

    def test_client_pipe_mode_prints_what_others_say(self):
        srv = self.chat()
        a = Member(self, srv.addr)
        p = self.popen([SOCKIT, "chat", srv.addr], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        a.expect("*** guest2 joined")
        a.send("to the pipe client")
        a.send("/quit")
        a.expect("*** bye")
        p.stdin.close()                      # its /quit follows; the server closes it
        out = p.stdout.read()
        self.assertEqual(p.wait(10), 0, p.stderr.read())
        lines = out.decode().splitlines()
        self.assertEqual(lines[1:], ["guest1: to the pipe client", "*** guest1 left", "*** bye"])

    def test_client_usage_errors(self):
        for argv, word in ((["chat"], "address"), (["chat", "127.0.0.1:1", "--nick", "bad nick"], "bad nick"),
                           (["chat", "udp://127.0.0.1:1"], "udp"), (["chat", "127.0.0.1:1", "--bogus"], "--bogus"),
                           (["serve", "chat", "127.0.0.1:0", "--framing", "line"], "framing"),
                           (["serve", "chat", "127.0.0.1:0", "--max-queue", "lots"], "lots"),
                           (["serve", "chat", "udp://127.0.0.1:0"], "udp"),
                           (["serve", "echo", "127.0.0.1:0", "--max-queue", "1M"], "chat")):
            with self.subTest(argv=argv):
                cp = self.sockit(*argv, input=b"", timeout=10)
                self.assertEqual(cp.returncode, 2, cp.stderr)
                lines = cp.stderr.decode().strip().splitlines()
                self.assertEqual(len(lines), 1, lines)
                self.assertIn(word, lines[0])

    def test_client_refused(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        cp = self.sockit("chat", "127.0.0.1:%d" % port, input=b"", timeout=10)
        self.assertEqual(cp.returncode, 1)
        self.assertEqual(len(cp.stderr.decode().strip().splitlines()), 1, cp.stderr)


# ---------------------------------------------------------------- terminal

class Screen:
    """A small terminal emulator: enough of VT100/xterm for what libedit and
    the client write (printable UTF-8, CR, LF, BS, CSI A/B/C/D/G/H/J/K; other
    sequences ignored), so a test can look at the screen, not the bytes."""

    def __init__(self, cols=80, rows=24):
        self.cols, self.rows = cols, rows
        self.grid = [[" "] * cols for _ in range(rows)]
        self.r = self.c = 0
        self.pending = b""

    def _scroll(self):
        self.grid.pop(0)
        self.grid.append([" "] * self.cols)

    def _put(self, ch):
        if self.c >= self.cols:
            self.c = 0
            self._newline()
        self.grid[self.r][self.c] = ch
        self.c += 1

    def _newline(self):
        if self.r == self.rows - 1:
            self._scroll()
        else:
            self.r += 1

    def feed(self, data):
        data = self.pending + data
        self.pending = b""
        i = 0
        while i < len(data):
            b = data[i]
            if b == 0x1b:
                m = re.match(rb"\x1b\[([0-9;?]*)([@-~])", data[i:])
                if m is None:
                    if len(data) - i < 16 and re.match(rb"\x1b(\[[0-9;?]*)?$", data[i:]):
                        self.pending = data[i:]
                        return
                    i += 2                                # ESC x: ignored
                    continue
                self._csi(m.group(1).decode(), chr(m.group(2)[0]))
                i += len(m.group(0))
                continue
            if b == 0x0d:
                self.c = 0
            elif b == 0x0a:
                self._newline()
            elif b == 0x08:
                self.c = max(0, self.c - 1)
            elif b < 0x20 or b == 0x7f:
                pass
            else:
                n = 1 if b < 0x80 else 2 if b < 0xe0 else 3 if b < 0xf0 else 4
                if len(data) - i < n:
                    self.pending = data[i:]
                    return
                self._put(data[i:i + n].decode("utf-8", "replace"))
                i += n
                continue
            i += 1

    def _csi(self, params, final):
        args = [int(p) if p.isdigit() else 0 for p in params.lstrip("?").split(";")] if params else []
        n = args[0] if args and args[0] else 1
        if final == "A":
            self.r = max(0, self.r - n)
        elif final == "B":
            self.r = min(self.rows - 1, self.r + n)
        elif final == "C":
            self.c = min(self.cols - 1, self.c + n)
        elif final == "D":
            self.c = max(0, self.c - n)
        elif final == "G":
            self.c = min(self.cols - 1, n - 1)
        elif final == "H":
            self.r = min(self.rows - 1, (args[0] if args and args[0] else 1) - 1)
            self.c = min(self.cols - 1, (args[1] if len(args) > 1 and args[1] else 1) - 1)
        elif final == "K":
            for c in range(self.c, self.cols):
                self.grid[self.r][c] = " "
        elif final == "J":
            for c in range(self.c, self.cols):
                self.grid[self.r][c] = " "
            for r in range(self.r + 1, self.rows):
                self.grid[r] = [" "] * self.cols

    def lines(self):
        return ["".join(row).rstrip() for row in self.grid]

    def cursor_line(self):
        return "".join(self.grid[self.r]).rstrip(), self.c


class Terminal:
    """`sockit chat` on a pseudo-terminal of 80x24, its output fed to a Screen."""

    def __init__(self, test, argv):
        self.test = test
        self.screen = Screen()
        self.raw = b""
        master, slave = os.openpty()
        import fcntl
        import termios
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        self.master = master
        self.proc = test.popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                               env=child_env({"TERM": "xterm", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}))
        os.close(slave)
        test.addCleanup(self.close)

    def close(self):
        if self.master is not None:
            os.close(self.master)
            self.master = None

    def pump(self, timeout):
        r, _, _ = select.select([self.master], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.master, 65536)
        except OSError:
            data = b""
        self.raw += data
        self.screen.feed(data)
        return bool(data)

    def wait_for(self, pred, what, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0 or (not self.pump(min(left, 0.2)) and self.proc.poll() is not None
                             and not pred()):
                raise AssertionError("%s not on the screen; screen:\n%s\nraw tail: %r"
                                     % (what, "\n".join(self.screen.lines()), self.raw[-600:]))

    def wait_text(self, text, timeout=10.0):
        self.wait_for(lambda: any(text in l for l in self.screen.lines()), repr(text), timeout)

    def type(self, data):
        os.write(self.master, data)

    def wait_exit(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump(0.05)
        while self.pump(0.05):
            pass
        return self.proc.poll()


class Interactive(ChatCase):

    def start(self, srv, *extra):
        t = Terminal(self, [SOCKIT, "chat", srv.addr] + list(extra))
        return t

    def test_incoming_line_does_not_garble_the_typed_line(self):
        srv = self.chat()
        other = Member(self, srv.addr)
        t = self.start(srv, "--nick", "tty")
        t.wait_text("*** you are now tty")
        other.expect("*** guest2 joined")
        other.expect("*** guest2 is now tty")
        t.type("half typ é".encode())
        t.wait_for(lambda: t.screen.cursor_line() == ("> half typ é", 12), "the typed text")
        other.send("an incoming line")
        # The incoming line appears above the input line, which is redrawn
        # intact, with the cursor where it was.
        t.wait_for(lambda: [l for l in t.screen.lines() if l][-2:] ==
                   ["guest1: an incoming line", "> half typ é"], "the line above the input")
        self.assertEqual(t.screen.cursor_line(), ("> half typ é", 12))
        # Editing still works on the redrawn line: move left, insert, finish.
        t.type(b"\x1b[D\x1b[DX\x05d and done\r")
        other.expect("tty: half typX éd and done")
        # History: Up brings the line back.
        t.type(b"\x1b[A")
        t.wait_for(lambda: t.screen.cursor_line()[0] == "> half typX éd and done", "the recalled line")
        t.type(b"\x15/quit\r")                   # Ctrl-U clears it first
        self.assertEqual(t.wait_exit(), 0, "transcript %r" % t.raw[-800:])
        t.wait_text("*** bye")
        other.expect("*** tty left")
        for m in (b"LeakSanitizer", b"ERROR: AddressSanitizer", b"runtime error"):
            self.assertNotIn(m, t.raw)

    def test_wrapped_input_line_is_redrawn_whole(self):
        srv = self.chat()
        other = Member(self, srv.addr)
        t = self.start(srv)
        t.wait_text("*** welcome to the chat")
        other.expect("*** guest2 joined")
        typed = "".join("w%02d " % i for i in range(30))      # 120 columns: two rows
        t.type(typed.encode())
        t.wait_for(lambda: t.screen.cursor_line()[1] == (2 + len(typed)) % 80, "the typed text")
        other.send("while a long line is typed")
        want = ["guest1: while a long line is typed", ("> " + typed)[:80], ("> " + typed)[80:].rstrip()]
        t.wait_for(lambda: [l for l in t.screen.lines() if l][-3:] == want, "the wrapped input redrawn")
        # Nothing of the old input is left above the incoming line.
        self.assertEqual(sum(1 for l in t.screen.lines() if l.startswith("> ")), 1, t.screen.lines())
        t.type(b"\r")
        other.expect("guest2: " + typed)           # sent as typed, trailing space included

    def test_many_incoming_lines_while_typing(self):
        srv = self.chat("--max-rate", "0")
        other = Member(self, srv.addr)
        t = self.start(srv)
        t.wait_text("*** welcome to the chat")
        other.expect("*** guest2 joined")
        t.type(b"typing slowly")
        t.wait_for(lambda: t.screen.cursor_line()[0] == "> typing slowly", "the typed text")
        other.send(*["line %d \x1b[2J escape" % i for i in range(30)])
        t.wait_for(lambda: [l for l in t.screen.lines() if l][-2:] ==
                   ["guest1: line 29 ^[[2J escape", "> typing slowly"], "the last line above the input")
        self.assertEqual(t.screen.cursor_line(), ("> typing slowly", 15))
        self.assertIn("guest1: line 28 ^[[2J escape", t.screen.lines())
        t.type(b"\r")
        other.expect("guest2: typing slowly")
        t.type(b"\x04")                            # Ctrl-D on an empty line leaves
        self.assertEqual(t.wait_exit(), 0, "transcript %r" % t.raw[-800:])
        other.expect("*** guest2 left")

    def test_server_closing_ends_the_client(self):
        srv = self.chat()
        t = self.start(srv)
        t.wait_text("*** welcome to the chat")
        t.type(b"unsent")
        srv.send_signal(signal.SIGTERM)
        t.wait_text("*** disconnected: the server is shutting down")
        self.assertEqual(t.wait_exit(), 0, "transcript %r" % t.raw[-800:])
        srv.stop_checked(self)
