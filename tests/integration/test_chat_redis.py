"""Chat servers sharing rooms through Redis (--redis): a real redis-server
started here on an ephemeral loopback port, three `sockit serve chat`
servers on it, members on each (raw sockets and nc). Interleaved lines give
every member one identical, complete sequence; /msg, /who, /rooms and nick
uniqueness span servers; history on join comes from Redis; killing Redis
mid-conversation and starting it again keeps every member connected, tells
them, refuses what they type meanwhile and resumes in one order; a SIGKILLed
server's nicks are free after --redis-nick-ttl; a bad URL is a usage error;
a Redis down at start is one line, then retries; a Redis that stops
answering (SIGSTOP) cannot stall a server; unix:PATH and /DB URLs; a Redis
with a password (requirepass, an ACL user) given in the URL or a file."""

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

from helpers import IO_TIMEOUT, SOCKIT, unused_tcp_port
from test_chat import ChatCase, Member

UP_RE = r"chat: redis at 127\.0\.0\.1:\d+: connected"
CUT = "*** the chat network (Redis) is unavailable; lines you send are refused until it is back"
BACK = "*** the chat network is back; lines are delivered again"
REFUSED = "*** error: the chat network (Redis) is unavailable; your line was not delivered"


@unittest.skipIf(shutil.which("redis-server") is None, "redis-server is not installed")
class RedisCase(ChatCase):

    def setUp(self):
        super().setUp()
        self.redis_port = unused_tcp_port()
        self.redis = None
        self.start_redis()

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            self.stop_redis()

    def start_redis(self, *extra):
        self.redis = subprocess.Popen(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.tmp] + list(extra),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:                              # ready: it answers PING (or NOAUTH)
            try:
                with socket.create_connection(("127.0.0.1", self.redis_port), 1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                pass
            self.assertLess(time.monotonic(), deadline, "redis-server did not start")
            time.sleep(0.05)

    def stop_redis(self):
        if self.redis is not None and self.redis.poll() is None:
            self.redis.kill()
            self.redis.wait(10)
        self.redis = None

    def url(self):
        return "redis://127.0.0.1:%d" % self.redis_port

    def servers(self, n, *opts):
        srvs = [self.chat("--redis", self.url(), "--max-rate", "0", *opts) for _ in range(n)]
        for s in srvs:
            s.wait_line(UP_RE)
        return srvs

    def named(self, srv, nick):
        m = Member(self, srv.addr)
        m.send("/nick " + nick)
        m.skip_until("*** you are now " + nick)
        m.nick = nick
        return m

    def ann_to_bob(self, srvs, line):
        """ann on srvs[0] and bob on srvs[1] see each other (/who counts
        2), and ann's line reaches bob; returns (ann, bob)."""
        a, b = self.named(srvs[0], "ann"), self.named(srvs[1], "bob")
        a.send("/who")
        self.assertEqual(a.skip_until(re.compile(r"^\*\*\* members "))[1][:16],
                         "*** members (2):")
        a.send(line)
        b.skip_until("ann: " + line)
        return a, b


class Cluster(RedisCase):

    def test_interleaved_lines_one_identical_complete_sequence(self):
        srvs = self.servers(3)
        talkers = [self.named(s, "t%d" % i) for i, s in enumerate(srvs)]
        listeners = [self.named(s, "l%d" % i) for i, s in enumerate(srvs)]
        for m in talkers + listeners:                  # a barrier: every join seen
            m.send("/who")
            self.assertEqual(m.skip_until(re.compile(r"^\*\*\* members "))[1][:16],
                             "*** members (6):")
        n = 150

        def talk(m):
            for k in range(0, n, 10):
                m.send(*("%s %d" % (m.nick, i) for i in range(k, k + 10)))

        threads = [threading.Thread(target=talk, args=(t,)) for t in talkers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        talk_re = re.compile(r"^t\d: t\d \d+$")

        def collect(m, count):
            """The next count talk lines m gets (join and nick notices of
            late arrivals may still be on their way: skipped)."""
            got = []
            while len(got) < count:
                line = m.line(timeout=30)
                if talk_re.match(line):
                    got.append(line)
            return got

        seqs = [collect(m, 3 * n) for m in listeners]
        for seq in seqs:                                # complete, each talker in order
            for t in talkers:
                self.assertEqual([l for l in seq if l.startswith(t.nick + ": ")],
                                 ["%s: %s %d" % (t.nick, t.nick, i) for i in range(n)])
        self.assertEqual(seqs[0], seqs[1])
        self.assertEqual(seqs[0], seqs[2])
        # The talkers saw the same order, less their own lines.
        for t in talkers:
            got = collect(t, 2 * n)
            self.assertEqual(got, [l for l in seqs[0] if not l.startswith(t.nick + ": ")])

    def test_msg_who_rooms_and_nicks_span_servers(self):
        a_srv, b_srv, c_srv = self.servers(3)
        ann = self.named(a_srv, "ann")
        bob = self.named(b_srv, "bob")
        # A nick held on another server is refused, in any case.
        other = Member(self, c_srv.addr)
        other.send("/nick ANN")
        other.skip_until("*** error: nick ANN is taken")
        other.send("/nick cy")
        other.skip_until("*** you are now cy")
        bob.send("/msg ann hello from b")
        ann.skip_until("[private] bob: hello from b")
        ann.send("/msg nobody x")
        ann.skip_until("*** error: no such nick nobody")
        bob.send("/join #dev")
        bob.skip_until("*** you joined dev (1 member)")
        ann.send("/who")
        _, line = ann.skip_until(re.compile(r"^\*\*\* members "))
        self.assertEqual(sorted(line.split(": ", 1)[1].split()), ["ann", "cy"])
        self.assertTrue(line.startswith("*** members (2):"), line)
        ann.send("/rooms")
        _, line = ann.skip_until(re.compile(r"^\*\*\* rooms "))
        self.assertIn(" lobby (2)", line)
        self.assertIn(" dev (1)", line)
        # History on join comes from Redis: said on b, replayed on c.
        bob.send("said in dev")
        bob.send("/me waves")
        bob.send("/who")
        bob.skip_until(re.compile(r"^\*\*\* members \(1\)"))
        other.send("/join dev")
        other.skip_until("*** you joined dev (2 members)")
        self.assertEqual(other.lines(2), ["[history] bob: said in dev", "[history] * bob waves"])
        bob.skip_until("*** cy joined")
        other.send("live now")
        bob.skip_until("cy: live now")

    def test_nc_member_on_another_server(self):
        a_srv, b_srv = self.servers(2)
        ann = self.named(a_srv, "ann")
        host, port = b_srv.addr.rsplit(":", 1)
        nc = self.popen(["nc", "-N", host, port], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
        nc.stdin.write(b"/nick viaNC\nhi from nc\n")
        nc.stdin.flush()
        ann.skip_until("viaNC: hi from nc")
        ann.send("/msg vianc back to you")
        ann.send("and to everyone")
        # nc reads both (through Redis, so after ann's own server saw them).
        out = b""
        deadline = time.monotonic() + IO_TIMEOUT
        while b"ann: and to everyone\n" not in out:
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, "nc got only %r" % out)
            if select.select([nc.stdout], [], [], left)[0]:
                data = os.read(nc.stdout.fileno(), 65536)
                self.assertTrue(data, "nc's connection ended early")
                out += data
        self.assertIn(b"[private] ann: back to you\n", out)
        nc.stdin.close()
        ann.skip_until("*** viaNC left")
        nc.stdout.read()
        self.assertEqual(nc.wait(10), 0)


class Outage(RedisCase):

    def test_redis_killed_and_restarted(self):
        srvs = self.servers(3)
        ms = [self.named(s, "m%d" % i) for i, s in enumerate(srvs)]
        for m in ms:
            m.send("/who")
            self.assertEqual(m.skip_until(re.compile(r"^\*\*\* members "))[1][:16],
                             "*** members (3):")
        ms[0].send("before")
        for m in ms[1:]:
            m.skip_until("m0: before")
        self.stop_redis()
        for m in ms:
            m.skip_until(CUT, timeout=10)
        ms[1].send("typed while down")
        ms[1].expect(REFUSED)                          # refused, not silently lost
        for s in srvs:
            self.assertIsNone(s.proc.poll(), "a server exited")
        self.start_redis()
        for m in ms:
            m.skip_until(BACK, timeout=15)
        # Redis came back empty: each room says its past is gone.
        for m in ms:
            m.skip_until("*** the chat network restarted: earlier lines of lobby are gone")
        # Flow and one order resume; the line typed meanwhile never arrives.
        for k in range(3):
            ms[k].send("after %d" % k)
        seqs = []
        for i, m in enumerate(ms):
            got = m.lines(2)
            self.assertNotIn("m1: typed while down", got)
            self.assertEqual(sorted(got), sorted("m%d: after %d" % (k, k) for k in range(3) if k != i))
            seqs.append(got)
        whole = [l for l in seqs[0]]
        # Pairwise, the lines two members share come in one order.
        for a in seqs:
            for b in seqs:
                self.assertEqual([l for l in a if l in b], [l for l in b if l in a])
        self.assertTrue(whole)
        # Nicks were claimed again: still unique across servers.
        other = Member(self, srvs[2].addr)
        other.send("/nick m0")
        other.skip_until("*** error: nick m0 is taken")

    def test_sigkilled_servers_nicks_free_after_the_expiry(self):
        a_srv, b_srv = self.servers(2, "--redis-nick-ttl", "1")
        zed = self.named(b_srv, "zed")
        ann = self.named(a_srv, "ann")
        ann.send("/nick zed")
        ann.skip_until("*** error: nick zed is taken")
        # Renewed while its server lives: still taken well past the expiry.
        time.sleep(1.5)
        ann.send("/nick zed")
        ann.skip_until("*** error: nick zed is taken")
        b_srv.kill()
        zed.close()
        start = time.monotonic()
        while True:
            ann.send("/nick zed")
            _, line = ann.skip_until(re.compile(r"^\*\*\* (you are now|error: nick)"))
            if line == "*** you are now zed":
                break
            self.assertLess(time.monotonic() - start, 5, "zed never freed")
            time.sleep(0.2)
        self.assertLess(time.monotonic() - start, 2.5)

    def test_redis_down_at_start_then_up(self):
        self.stop_redis()
        srv = self.chat("--redis", self.url())
        srv.wait_line(r"chat: redis at 127\.0\.0\.1:%d unavailable \(.*\); retrying with backoff"
                      % self.redis_port)
        m = Member(self, srv.addr)                    # members can connect meanwhile
        m.expect(CUT)
        m.send("anyone?")
        m.expect(REFUSED)
        self.start_redis()
        m.skip_until(BACK, timeout=15)
        srv.wait_line(UP_RE)
        other = Member(self, srv.addr)
        other.send("now it works")
        m.skip_until("%s: now it works" % other.nick)
        # The line about the outage was written once, not once per retry.
        self.assertEqual(len(srv.find(r"unavailable")), 1)

    def test_redis_refusing_us_is_one_line_then_retries(self):
        self.stop_redis()
        self.start_redis("--requirepass", "secret")   # ready: it answers NOAUTH
        srv = self.chat("--redis", self.url())
        srv.wait_line(r"chat: redis at 127\.0\.0\.1:%d unavailable \(NOAUTH.*\); retrying "
                      r"with backoff" % self.redis_port)
        m = Member(self, srv.addr)
        m.expect(CUT)
        m.send("hello?")
        m.expect(REFUSED)
        time.sleep(1.5)                                # several retries, still one line
        self.assertEqual(len(srv.find(r"unavailable")), 1)
        self.assertIsNone(srv.proc.poll())

    def test_redis_that_stops_answering_cannot_stall_the_server(self):
        # SIGSTOP: Redis keeps the connection open and never answers.
        srvs = self.servers(2)
        a, b = self.ann_to_bob(srvs, "before")
        os.kill(self.redis.pid, signal.SIGSTOP)
        try:
            b.send("into the void")                    # no reply will come
            for m in (a, b):
                m.skip_until(CUT, timeout=10)          # the command timed out
            b.send("typed while silent")
            b.skip_until(REFUSED)
            # The loop is not stuck: a newcomer is welcomed and /who is
            # answered (that the network is away, or by a Redis command
            # that gets its answer or times out).
            c = Member(self, srvs[0].addr, timeout=10)
            c.send("/who")
            c.skip_until(re.compile(r"^\*\*\* (members |error: the chat network)"), timeout=10)
            for s in srvs:
                self.assertIsNone(s.proc.poll(), "a server exited")
        finally:
            os.kill(self.redis.pid, signal.SIGCONT)
        for m in (a, b):
            m.skip_until(BACK, timeout=15)
        a.send("after")
        # Live, or replayed as history when b's server catches up on what
        # it missed after "after" was published (both are right).
        b.skip_until(re.compile(r"^(\[history\] )?ann: after$"))
        # What was refused never reached the room: not in its history.
        hist = subprocess.run(["redis-cli", "-p", str(self.redis_port), "LRANGE",
                               "sockit:chat:room:lobby:history", "0", "-1"],
                              stdout=subprocess.PIPE, timeout=10).stdout.decode()
        self.assertIn("ann: after", hist)
        self.assertNotIn("typed while silent", hist)

    def test_unix_socket_url(self):
        self.stop_redis()
        sock = self.path("redis.sock")
        self.redis = subprocess.Popen(
            ["redis-server", "--port", "0", "--unixsocket", sock, "--save", "",
             "--appendonly", "no", "--dir", self.tmp],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            self.assertLess(time.monotonic(), deadline, "redis-server did not start")
            time.sleep(0.05)
        srvs = [self.chat("--redis", "unix:" + sock) for _ in range(2)]
        for s in srvs:
            s.wait_line(r"chat: redis at unix:%s: connected" % re.escape(sock))
        self.ann_to_bob(srvs, "over a unix socket")

    @unittest.skipIf(shutil.which("redis-cli") is None, "redis-cli is not installed")
    def test_database_number_in_the_url_is_used(self):
        srv = self.chat("--redis", self.url() + "/3")
        srv.wait_line(UP_RE)
        m = self.named(srv, "dee")
        m.send("kept in db 3")
        m.send("/who")
        m.skip_until(re.compile(r"^\*\*\* members "))

        def keys(db):
            cp = subprocess.run(["redis-cli", "-p", str(self.redis_port), "-n", str(db),
                                 "DBSIZE"], stdout=subprocess.PIPE, timeout=10)
            return int(cp.stdout.decode().strip() or "0")
        self.assertGreater(keys(3), 0)
        self.assertEqual(keys(0), 0)

    def test_bad_redis_url_is_a_usage_error(self):
        for bad in ("http://127.0.0.1:6379", "redis://127.0.0.1", "redis://:6379",
                    "redis://127.0.0.1:0", "redis://127.0.0.1:6379/x", "unix:"):
            cp = self.sockit("serve", "chat", "127.0.0.1:0", "--redis", bad)
            self.assertEqual(cp.returncode, 2, bad)
            err = cp.stderr.decode().strip().splitlines()
            self.assertEqual(len(err), 1, err)
            self.assertIn("--redis", err[0])


class Auth(RedisCase):
    """A Redis that asks for a password: requirepass (the default user)
    and an ACL user, given in the URL (percent-encoded) or in
    --redis-password-file; never shown in a log line or an error."""

    PASSWORD = "p@ss:w rd/%1"      # every character a URL must encode
    ENCODED = "p%40ss%3Aw%20rd%2F%251"

    def setUp(self):
        super().setUp()
        self.stop_redis()
        self.start_redis("--requirepass", self.PASSWORD,
                         "--user", "alice", "on", ">al1ce-pw", "~*", "&*", "+@all")

    def url_with(self, userinfo, db=""):
        return "redis://%s@127.0.0.1:%d%s" % (userinfo, self.redis_port, db)

    def shared_line(self, *srvs):
        for s in srvs:
            s.wait_line(UP_RE)
        self.ann_to_bob(srvs, "through an authenticated redis")

    def assertNotLogged(self, srv, secret):
        self.assertEqual(srv.find(re.escape(secret)), [], "the password was logged")

    def test_password_in_the_url(self):
        url = self.url_with(":" + self.ENCODED)
        srvs = [self.chat("--redis", url) for _ in range(2)]
        self.shared_line(*srvs)
        for s in srvs:
            self.assertNotLogged(s, self.ENCODED)
            self.assertNotLogged(s, self.PASSWORD)

    def test_acl_user_in_the_url_with_a_database(self):
        srvs = [self.chat("--redis", self.url_with("alice:al1ce-pw", "/4")) for _ in range(2)]
        self.shared_line(*srvs)
        cp = subprocess.run(["redis-cli", "-p", str(self.redis_port), "--user", "alice",
                             "--pass", "al1ce-pw", "--no-auth-warning", "-n", "4", "DBSIZE"],
                            stdout=subprocess.PIPE, timeout=10)
        self.assertGreater(int(cp.stdout.decode().strip() or "0"), 0)

    def test_password_file(self):
        pw = self.path("redis.pw")
        with open(pw, "w") as f:
            f.write(self.PASSWORD + "\n")
        os.chmod(pw, 0o600)
        srvs = [self.chat("--redis", self.url(), "--redis-password-file", pw) for _ in range(2)]
        self.shared_line(*srvs)
        # A user named in the URL takes its password from the file.
        with open(pw, "w") as f:
            f.write("al1ce-pw\n")
        srv = self.chat("--redis", self.url_with("alice"), "--redis-password-file", pw)
        srv.wait_line(UP_RE)

    def test_password_file_readable_by_others_is_refused(self):
        pw = self.path("redis.pw")
        with open(pw, "w") as f:
            f.write(self.PASSWORD + "\n")
        os.chmod(pw, 0o644)
        cp = self.sockit("serve", "chat", "127.0.0.1:0", "--redis", self.url(),
                         "--redis-password-file", pw)
        self.assertNotEqual(cp.returncode, 0)
        self.assertIn("chmod 600", cp.stderr.decode())

    def test_wrong_password_is_one_line_that_hides_it_then_retries(self):
        srv = self.chat("--redis", self.url_with("alice:not-the-one"))
        srv.wait_line(r"chat: redis at 127\.0\.0\.1:%d unavailable \(WRONGPASS.*\); retrying "
                      r"with backoff" % self.redis_port)
        m = Member(self, srv.addr)
        m.expect(CUT)
        time.sleep(1.5)                                # several retries, still one line
        self.assertEqual(len(srv.find(r"unavailable")), 1)
        self.assertEqual(srv.find(r"connected"), [])
        self.assertNotLogged(srv, "not-the-one")
        self.assertIsNone(srv.proc.poll())

    def test_database_out_of_range_is_never_connected(self):
        srv = self.chat("--redis", self.url_with("alice:al1ce-pw", "/99"))
        srv.wait_line(r"unavailable \(ERR DB index is out of range\)")
        time.sleep(1)
        self.assertEqual(srv.find(r"connected"), [])
        self.assertEqual(len(srv.find(r"unavailable")), 1)

    def test_usage_errors_never_show_the_password(self):
        pw = self.path("redis.pw")
        with open(pw, "w") as f:
            f.write("whatever\n")
        os.chmod(pw, 0o600)
        cases = [
            (["--redis", "redis://:hunter2@127.0.0.1"], "hunter2"),          # no port
            (["--redis", "redis://:hun%2@127.0.0.1:1"], "hun"),              # a bad %XX
            (["--redis", "redis://:@127.0.0.1:1"], None),                     # empty password
            (["--redis", "redis://:hunter2@127.0.0.1:1", "--redis-password-file", pw],
             "hunter2"),                                                      # two sources
            (["--redis", "redis://alice@127.0.0.1:1"], None),                 # user, no password
            (["--redis-password-file", pw], None),                            # no --redis
        ]
        for args, secret in cases:
            cp = self.sockit("serve", "chat", "127.0.0.1:0", *args)
            self.assertEqual(cp.returncode, 2, args)
            err = cp.stderr.decode().strip().splitlines()
            self.assertEqual(len(err), 1, err)
            self.assertIn("redis", err[0])
            if secret:
                self.assertNotIn(secret, err[0])


if __name__ == "__main__":
    unittest.main()
