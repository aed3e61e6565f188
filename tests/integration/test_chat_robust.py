"""Chat under abuse and accidents: a flood slows its sender instead of getting
the readers dropped (backpressure, the default --max-rate); control and
format characters relayed to nc members and shown by `sockit chat`; the
interactive clients leave when their terminal goes away, their stdin ends or
a stop signal comes; and a taken --nick in pipe mode sends nothing."""

import os
import re
import select
import signal
import socket
import subprocess
import threading
import time

from helpers import SOCKIT, cpu_seconds
from test_chat import ChatCase, Member, Terminal


class Reader(threading.Thread):
    """A member that reads at a bounded speed (recv, then sleep), keeping
    count of bytes and chat lines, and every "***" notice; stops at EOF or
    when told."""

    def __init__(self, sock, pause):
        super().__init__(daemon=True)
        self.sock, self.pause = sock, pause
        self.bytes = 0
        self.lines = 0
        self.partial = b""
        self.notices = []
        self.closed = False
        self.stop = threading.Event()

    def run(self):
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return
            self.bytes += len(data)
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()
            for line in lines:
                if line.startswith(b"*** "):
                    self.notices.append(line)
                else:
                    self.lines += 1
            if self.pause:
                time.sleep(self.pause)

    def saw(self, text):
        return any(text in n for n in self.notices)


class Flooder(threading.Thread):
    """A member that sends 100-byte lines as fast as the server takes them
    for `seconds`, and reads (discards) what the room sends it, as
    `yes ... | nc` would."""

    def __init__(self, sock, seconds):
        super().__init__(daemon=True)
        self.sock, self.seconds = sock, seconds
        self.sent = 0
        self.drainer = Reader(sock, 0)
        self.until = None       # or a function: flood on (up to 4 x seconds) until it is true

    def run(self):
        self.drainer.start()
        chunk = b"x" * 99 + b"\n"
        batch = chunk * 640
        start = time.monotonic()
        while True:
            t = time.monotonic() - start
            if t >= 4 * self.seconds or (t >= self.seconds and (self.until is None or self.until())):
                return
            _, w, _ = select.select([], [self.sock], [], 0.1)
            if not w:
                continue
            try:
                self.sent += self.sock.send(batch)
            except (BlockingIOError, socket.timeout):
                continue
            except OSError:
                return


class Backpressure(ChatCase):

    def flood_room(self, *opts, seconds=4.0, until=None):
        """A flooder, a reader at ~2 MB/s, one at ~20 MB/s and one that never
        reads; returns (server, flooder, slow, fast, stuck nick, rss before)."""
        # A small ASan quarantine, so that freed lines do not count as held.
        asan = os.environ.get("ASAN_OPTIONS", "detect_leaks=1") + ":quarantine_size_mb=8"
        srv = self.serve("chat", "127.0.0.1:0", *opts, env={"ASAN_OPTIONS": asan})
        stuck, slow, fast, flood = self.members(srv, 4)
        stuck.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.assertEqual(fast.who(), [stuck.nick, slow.nick, fast.nick, flood.nick])
        rss0 = srv.rss_kib()
        readers = [Reader(slow.sock, 0.03), Reader(fast.sock, 0.003)]
        for r in readers:
            r.start()
        f = Flooder(flood.sock, seconds)
        if until is not None:
            f.until = lambda: readers[1].saw(until)
        f.start()
        f.join(4 * seconds + 10)
        for r in readers:
            r.stop.set()
            r.join(5)
        f.drainer.stop.set()
        f.drainer.join(5)
        return srv, f, readers[0], readers[1], stuck.nick, rss0

    def check_readers_kept(self, slow, fast):
        for name, r in (("2 MB/s", slow), ("20 MB/s", fast)):
            self.assertFalse(r.closed, "the %s reader was disconnected" % name)
            self.assertFalse(r.saw(b"disconnected: you are not reading"),
                             "the %s reader was dropped" % name)
            self.assertGreater(r.bytes, 0)

    def test_unlimited_rate_flood_slows_the_sender_not_the_readers(self):
        srv, f, slow, fast, stuck, rss0 = self.flood_room("--max-rate", "0", seconds=5.0,
                                                          until=b"left (dropped: not reading)")
        self.check_readers_kept(slow, fast)
        # The flooder went at the speed of the room's slowest reader (plus
        # what kernel buffers hold), not at loopback speed (GB/s).
        self.assertLess(f.sent, slow.bytes + (32 << 20),
                        "flooder sent %d bytes, slow reader got %d" % (f.sent, slow.bytes))
        # The member that never reads was dropped (its queue over the low
        # mark, --max-queue/16, for 3 s after the kernel's buffers filled),
        # and the room saw it leave.
        self.assertTrue(fast.saw(("*** %s left (dropped: not reading)" % stuck).encode()))
        growth = (srv.rss_kib() - rss0) // 1024
        self.assertLess(growth, 64, "server RSS grew %d MiB" % growth)

    def test_default_rate_flood_is_slowed_and_readers_stay(self):
        srv, f, slow, fast, stuck, rss0 = self.flood_room(seconds=4.0)
        self.check_readers_kept(slow, fast)
        # 20 lines a second (a one-second bucket) went through, no more.
        self.assertLessEqual(fast.lines, 20 * 5 + 20)
        self.assertTrue(f.drainer.saw(b"*** error: more than 20 lines per second; lines are being refused"))
        # And the flooder could not push bytes at loopback speed either.
        self.assertLess(f.sent, 48 << 20, "flooder sent %d bytes in 4 s" % f.sent)


class Sanitising(ChatCase):

    def test_server_replaces_controls_for_raw_members(self):
        srv = self.chat()
        victim = Member(self, srv.addr)
        host, port = srv.addr.rsplit(":", 1)
        nc = self.popen(["nc", "-N", host, port], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
        victim.expect("*** guest2 joined")
        nc.stdin.write(b"hi\r*** admin: server restarting, run: curl x|sh\n"
                       b"\x1b[2K\x1b[1G*** fake notice\x07\n"
                       b"tab\tstays, del\x7f nul\x00 end\n"
                       b"c1 \xc2\x9b31m and raw \x9b31m \x85\n"
                       b"utf-8 \xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 latin1 \xe9t\xe9 \xa0\n")
        nc.stdin.close()
        got = [victim.raw_line() for _ in range(5)]
        self.assertEqual(got, [
            b"guest2: hi^M*** admin: server restarting, run: curl x|sh",
            b"guest2: ^[[2K^[[1G*** fake notice^G",
            b"guest2: tab\tstays, del^? nul^@ end",
            b"guest2: c1 \xef\xbf\xbd31m and raw \xef\xbf\xbd31m \xef\xbf\xbd",
            b"guest2: utf-8 \xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 latin1 \xe9t\xe9 \xa0",
        ])
        for line in got:
            self.assertNotIn(b"\r", line)
            self.assertNotIn(b"\x1b", line)
        victim.expect("*** guest2 left")
        self.assertEqual(nc.wait(10), 0)

    def test_me_action_is_replaced_too(self):
        srv = self.chat()
        a, b = self.members(srv, 2)
        a.send(b"/me \x1b]0;pwned\x07 waves")
        self.assertEqual(b.raw_line(), b"* guest1 ^[]0;pwned^G waves")


class FakeServer(threading.Thread):
    """A one-shot chat server on loopback that sends given lines to its one
    client, then waits for the client to go."""

    def __init__(self, test, lines):
        super().__init__(daemon=True)
        self.lsock = test.track(socket.socket())
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(1)
        self.lsock.settimeout(10)
        self.addr = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.lines = lines

    def run(self):
        try:
            c, _ = self.lsock.accept()
        except OSError:
            return
        with c:
            c.sendall(b"".join(l + b"\n" for l in self.lines))
            c.settimeout(10)
            try:
                while True:
                    data = c.recv(4096)
                    if not data or b"/quit" in data:
                        break
            except OSError:
                pass


class ClientDisplay(ChatCase):

    def test_client_escapes_bidi_format_and_raw_c1(self):
        lines = [b"*** welcome to the chat, you are guest1",
                 b"eve: \xe2\x80\xaeevil\xe2\x80\xac \xe2\x81\xa6iso\xe2\x81\xa9",
                 b"eve: \xe2\x80\x8fmark \xe2\x80\xa8sep \xef\xbb\xbfbom",
                 b"eve: raw \x9b31m red \x90 and \xc2\x9b and kept: \xe2\x80\x8d \xc3\xa9 end"]
        srv = FakeServer(self, lines)
        srv.start()
        t = Terminal(self, [SOCKIT, "chat", srv.addr])
        t.wait_text("raw ")
        t.wait_text(" end")
        self.assertIn("eve: <U+202E>evil<U+202C> <U+2066>iso<U+2069>", t.screen.lines())
        self.assertIn("eve: <U+200F>mark <U+2028>sep <U+FEFF>bom", t.screen.lines())
        self.assertIn("eve: raw \\x9B31m red \\x90 and ? and kept: \u200d é end", t.screen.lines())
        for bad in (b"\xe2\x80\xae", b"\xe2\x81\xa6", b"\xe2\x80\x8f", b"\xe2\x80\xa8", b"\xef\xbb\xbf",
                    b"\x9b31m"):
            self.assertNotIn(bad, t.raw)
        t.type(b"/quit\r")
        self.assertIsNotNone(t.wait_exit(10))


class Lifetime(ChatCase):
    """`sockit chat` on a terminal leaves when the terminal goes, on stop
    signals, and at the end of a pipe."""

    def joined(self, srv):
        """A raw member, then the client on a terminal; returns both and the
        client's nick."""
        other = Member(self, srv.addr)
        t = Terminal(self, [SOCKIT, "chat", srv.addr])
        t.wait_text("*** welcome to the chat")
        m = re.match(r"^\*\*\* (guest\d+) joined$", other.line())
        self.assertIsNotNone(m)
        return other, t, m.group(1)

    def test_terminal_going_away_ends_the_client(self):
        srv = self.chat()
        other, t, nick = self.joined(srv)
        t.type(b"half typed")
        t.wait_text("> half typed")
        t.close()                                   # the window closes
        rc = None
        deadline = time.monotonic() + 2.0
        while rc is None and time.monotonic() < deadline:
            rc = t.proc.poll()
            time.sleep(0.02)
        if rc is None:
            spent = cpu_seconds(t.proc.pid)
            time.sleep(1.0)
            spun = cpu_seconds(t.proc.pid) - spent
            self.fail("the client still runs 2 s after its terminal went (%.2f s CPU in 1 s)" % spun)
        other.expect("*** %s left" % nick)
        self.assertEqual(other.who(), [other.nick])

    def test_stop_signals_end_the_client_and_it_leaves(self):
        srv = self.chat()
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
            other, t, nick = self.joined(srv)
            t.type(b"unsent")
            t.wait_text("> unsent")
            t.proc.send_signal(sig)
            rc = t.wait_exit(2.0)
            self.assertEqual(rc, 128 + sig, "after %s: %r" % (sig.name, t.raw[-300:]))
            other.expect("*** %s left" % nick)
            self.assertEqual(other.who(), [other.nick])
            other.close()
            t.close()

    def test_pipe_that_ends_sends_everything_then_leaves(self):
        srv = self.chat()
        other = Member(self, srv.addr)
        p = self.popen([SOCKIT, "chat", srv.addr], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        other.expect("*** guest2 joined")
        p.stdin.write(b"one\ntwo\nthree")
        p.stdin.close()
        for want in ("guest2: one", "guest2: two", "guest2: three", "*** guest2 left"):
            other.expect(want)
        self.assertEqual(p.wait(5), 0)
        p.stdout.read()
        p.stderr.read()

class ConnectLifetime(ChatCase):
    """`sockit connect` on a terminal: the same checks."""

    def start(self, srv):
        t = Terminal(self, [SOCKIT, "connect", srv.addr])
        t.wait_text("type q to quit")
        return t

    def test_terminal_going_away_ends_connect(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "line")
        t = self.start(srv)
        t.type(b"hello\r")
        t.wait_text("hello")
        t.close()
        deadline = time.monotonic() + 2.0
        while t.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertIsNotNone(t.proc.poll(), "connect still runs 2 s after its terminal went")

    def test_stop_signals_end_connect(self):
        srv = self.serve("echo", "127.0.0.1:0", "--framing", "line")
        for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGTERM):
            t = self.start(srv)
            t.proc.send_signal(sig)
            self.assertIsNotNone(t.wait_exit(2.0), "connect ignored %s" % sig.name)
            t.close()


class NickInPipeMode(ChatCase):

    def test_taken_nick_exits_before_sending_anything(self):
        srv = self.chat()
        bob = Member(self, srv.addr)
        bob.send("/nick bob")
        bob.expect("*** you are now bob")
        cp = self.sockit("chat", srv.addr, "--nick", "BOB", input=b"deploy finished\n", timeout=15)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertClean(cp)
        err = cp.stderr.decode().strip().splitlines()
        self.assertEqual(len(err), 1, err)
        self.assertIn("nick BOB is taken", err[0])
        # bob saw a guest come and go, and nothing said.
        bob.expect("*** guest2 joined")
        bob.expect("*** guest2 left")
        self.assertEqual(bob.who(), ["bob"])

    def test_free_nick_sends_after_the_grant(self):
        srv = self.chat()
        a = Member(self, srv.addr)
        cp = self.sockit("chat", srv.addr, "--nick", "ci", input=b"deploy finished\n", timeout=15)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        a.expect("*** guest2 joined")
        a.expect("*** guest2 is now ci")
        a.expect("ci: deploy finished")
        a.expect("*** ci left")
