"""Acceptance checks of issue 16 read sentence by sentence, for behaviours
the feature tests leave implicit: /part in lobby is a notice and a no-op;
/rooms always lists lobby (with 0 members) and forgets a room once empty;
`sockit chat` (stdin not a terminal) as a member of a room: /join, history
marked on join, /msg, lines to its room only; bad --history values and
more bad --redis URL forms are usage errors (one line, exit 2)."""

import re
import subprocess

from helpers import SOCKIT
from test_chat import Member
from test_chat_rooms import RoomsCase, rooms_of


class RoomsAccept(RoomsCase):

    def test_part_in_lobby_and_rooms_listing(self):
        srv = self.chat("--history", "0")
        ann = self.named(srv, "ann")
        ann.send("/part")
        ann.expect("*** you are already in lobby")
        self.join(ann, "#dev", 1)
        self.assertEqual(rooms_of(ann), {"lobby": 0, "dev": 1})
        ann.send("/part")
        ann.expect("*** you joined lobby (1 member)")
        self.assertEqual(rooms_of(ann), {"lobby": 1})   # the empty room is gone
        srv.stop_checked(self)

    def test_sockit_chat_client_in_a_room(self):
        srv = self.chat("--history", "5", "--max-rate", "0")
        ann = self.named(srv, "ann")
        self.join(ann, "dev", 1)
        ann.send("before bob")
        self.assertEqual(ann.who(), ["ann"])             # a barrier: the line is in history
        lobby = self.named(srv, "cy")
        p = self.popen([SOCKIT, "chat", srv.addr, "--nick", "bob"], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lobby.skip_until(re.compile(r"^\*\*\* guest\d+ is now bob$"))
        p.stdin.write(b"/join #dev\n")
        p.stdin.flush()
        lobby.skip_until("*** bob left")
        ann.expect("*** bob joined")
        p.stdin.write(b"/msg ann psst\nhello dev\n")
        p.stdin.flush()
        ann.expect("[private] bob: psst")
        ann.expect("bob: hello dev")
        out, err = p.communicate(b"", timeout=10)          # stdin ends: the client quits
        self.assertEqual(p.returncode, 0, err)
        text = out.decode()
        self.assertIn("*** you joined dev (2 members)\n[history] ann: before bob\n", text)
        # The lobby member never saw the room's line.
        self.assertEqual(lobby.who(), ["cy"])
        srv.stop_checked(self)


class UsageAccept(RoomsCase):

    def test_bad_history_and_redis_urls_exit_2(self):
        cases = [["--history", "-1"], ["--history", "many"],
                 ["--redis", "redis://127.0.0.1"], ["--redis", "redis://127.0.0.1:6379/x"],
                 ["--redis", "redis://127.0.0.1:99999"], ["--redis", "http://127.0.0.1:6379"],
                 ["--redis", "unix:"]]
        for opts in cases:
            with self.subTest(opts=opts):
                cp = self.sockit("serve", "chat", "127.0.0.1:0", *opts, timeout=10)
                self.assertEqual(cp.returncode, 2, cp.stderr)
                self.assertEqual(cp.stderr.count(b"\n"), 1, cp.stderr)
                self.assertIn(opts[1].encode(), cp.stderr)
