"""Chat rooms in one process: /join (names by the nick rules, an optional
"#", case ignored), /part, /rooms with member counts, /who per room, joins
and leaves announced in the room, /msg across rooms (and its notice for an
unknown nick), --history replayed on join and marked, 0 turning it off, the
history held to a quarter of --max-memory; the per-room order, a slow
member dropped from one room while another goes on, --max-line in a room;
nc as a member of a room."""

import re
import subprocess
import threading
import time

from test_chat import ChatCase, Member

ROOMS_RE = re.compile(r"^\*\*\* rooms \((\d+)\):(.*)$")


def rooms_of(member, skip=False):
    """Sends /rooms; returns {name: count} (also a barrier, like /who);
    with skip, lines before the reply are skipped, else there must be none."""
    member.send("/rooms")
    m = ROOMS_RE.match(member.skip_until(ROOMS_RE)[1] if skip else member.line())
    member.test.assertIsNotNone(m)
    got = dict((name, int(n)) for name, n in re.findall(r" (\S+) \((\d+)\)", m.group(2)))
    member.test.assertEqual(len(got), int(m.group(1)))
    return got


class RoomsCase(ChatCase):

    def named(self, srv, nick):
        m = Member(self, srv.addr)
        m.send("/nick " + nick)
        m.skip_until("*** you are now " + nick)
        m.nick = nick
        return m

    def join(self, m, room, members, shown=None):
        """m joins room, where it is the members-th; earlier lines are skipped."""
        m.send("/join " + room)
        m.skip_until("*** you joined %s (%d member%s)" % (shown or room.lstrip("#"), members,
                                                           "" if members == 1 else "s"))


class Rooms(RoomsCase):

    def test_join_part_who_rooms_and_announcements(self):
        srv = self.chat("--history", "0")
        ann, bob, cy = (self.named(srv, n) for n in ("ann", "bob", "cy"))
        self.assertEqual(rooms_of(ann, skip=True), {"lobby": 3})
        self.join(bob, "#dev", 1)
        ann.skip_until("*** bob left")
        cy.skip_until("*** bob left")
        # "#dev", "dev" and "DEV" are one room.
        self.join(cy, "DEV", 2, shown="dev")
        bob.expect("*** cy joined")
        ann.expect("*** cy left")
        self.assertEqual(bob.who(), ["bob", "cy"])
        self.assertEqual(ann.who(), ["ann"])
        self.assertEqual(rooms_of(ann), {"lobby": 1, "dev": 2})
        # A line stays in its room.
        bob.send("only for dev")
        cy.expect("bob: only for dev")
        ann.send("only for lobby")
        self.assertEqual(ann.who(), ["ann"])
        self.assertEqual(cy.who(), ["bob", "cy"])     # nothing from the lobby came first
        # /part goes back to the lobby; the room is announced both ways.
        cy.send("/part")
        cy.expect("*** you joined lobby (2 members)")
        bob.expect("*** cy left")
        ann.expect("*** cy joined")
        cy.send("/part")
        cy.expect("*** you are already in lobby")
        bob.send("/join dev")
        bob.expect("*** you are already in dev")
        # An empty room is gone from /rooms (the lobby always stays).
        bob.send("/part")
        bob.expect("*** you joined lobby (3 members)")
        self.assertEqual(rooms_of(bob), {"lobby": 3})

    def test_invalid_room_names_are_refused(self):
        srv = self.chat()
        m = Member(self, srv.addr)
        for bad in ("", "#", "##dev", "a b", "dev!", "x" * 33, "é"):
            m.send(("/join " + bad).rstrip())
            line = m.line()
            self.assertTrue(line.startswith("*** error: invalid room "), (bad, line))
        self.assertEqual(rooms_of(m), {"lobby": 1})
        self.join(m, "#" + "x" * 32, 1)

    def test_nicks_are_unique_across_rooms(self):
        srv = self.chat()
        ann = self.named(srv, "ann")
        self.join(ann, "dev", 1)
        other = Member(self, srv.addr)
        other.send("/nick ANN")
        other.expect("*** error: nick ANN is taken")


class Private(RoomsCase):

    def test_msg_reaches_a_member_in_any_room_only(self):
        srv = self.chat()
        ann, bob, cy = (self.named(srv, n) for n in ("ann", "bob", "cy"))
        self.join(bob, "dev", 1)
        ann.send("/msg BOB psst, over here  ")          # nick case ignored, text kept
        bob.expect("[private] ann: psst, over here  ")
        bob.send("/msg ann \x1b[2Jhi")                   # controls replaced, as in rooms
        ann.skip_until("[private] bob: ^[[2Jhi")
        # Nobody else saw either line: the next thing cy gets is /who's reply.
        cy.skip_until("*** bob left")
        self.assertEqual(cy.who(), ["ann", "cy"])
        self.assertEqual(rooms_of(bob), {"lobby": 2, "dev": 1})

    def test_unknown_nick_and_usage_get_a_notice(self):
        srv = self.chat()
        ann = self.named(srv, "ann")
        ann.send("/msg nobody hello")
        ann.expect("*** error: no such nick nobody")
        ann.send("/msg")
        ann.expect("*** error: /msg needs a nick and some text, as in: /msg bob hello")
        ann.send("/msg ann")
        ann.expect("*** error: /msg needs a nick and some text, as in: /msg bob hello")
        ann.send("/msg ann to myself")
        ann.expect("[private] ann: to myself")
        # A nick that left is unknown again.
        bob = self.named(srv, "bob")
        bob.send("/quit")
        ann.skip_until("*** bob left")
        ann.send("/msg bob still there?")
        ann.expect("*** error: no such nick bob")


class History(RoomsCase):

    def test_join_replays_the_last_lines_marked(self):
        srv = self.chat("--history", "3", "--max-rate", "0")
        ann = self.named(srv, "ann")
        self.join(ann, "dev", 1)
        ann.send("one", "two", "/me three", "four")
        ann.send("/who")
        ann.who_reply()
        bob = self.named(srv, "bob")
        self.join(bob, "#dev", 2)
        self.assertEqual(bob.lines(3), ["[history] ann: two", "[history] * ann three",
                                        "[history] ann: four"])
        ann.expect("*** bob joined")
        ann.send("five")
        bob.expect("ann: five")                          # live lines are not marked
        # The lobby has its own history; a member arriving gets it first.
        bob.send("/part")
        bob.expect("*** you joined lobby (1 member)")
        bob.send("in the lobby")
        self.assertEqual(bob.who(), ["bob"])             # a barrier: the line was handled
        cy = Member(self, srv.addr)
        cy.expect("[history] bob: in the lobby")
        self.assertEqual(cy.who(), ["bob", cy.nick])

    def test_history_zero_turns_it_off(self):
        srv = self.chat("--history", "0")
        ann = self.named(srv, "ann")
        ann.send("said before")
        ann.who()
        bob = Member(self, srv.addr)
        self.assertEqual(bob.who(), ["ann", bob.nick])   # no history line before the reply

    def test_default_is_fifty_lines(self):
        srv = self.chat("--max-rate", "0")
        ann = self.named(srv, "ann")
        ann.send(*("line %d" % i for i in range(60)))
        ann.who()
        bob = Member(self, srv.addr)
        got = bob.lines(50)
        self.assertEqual(got, ["[history] ann: line %d" % i for i in range(10, 60)])
        self.assertEqual(bob.who(), ["ann", bob.nick])

    def test_history_is_held_to_a_quarter_of_max_memory(self):
        # 400 lines of ~2 KB kept in full would be 800 KB; a quarter of
        # --max-memory 2M is 512 KiB, so the oldest ones must go.
        srv = self.chat("--history", "1000", "--max-rate", "0", "--max-memory", "2M")
        ann = self.named(srv, "ann")
        body = "x" * 2000
        for i in range(400):
            ann.send("%03d %s" % (i, body))
        ann.who()
        bob = Member(self, srv.addr)
        bob.send("/who")
        before, _ = bob.skip_until(re.compile(r"^\*\*\* members "))
        self.assertTrue(all(l.startswith("[history] ann: ") for l in before), before[:1])
        kept = len(before)
        self.assertLess(kept * 2010, 512 * 1024 + 2010)
        self.assertGreater(kept, 150)
        # The newest lines are the ones kept, in order.
        self.assertEqual([l[15:18] for l in before], ["%03d" % i for i in range(400 - kept, 400)])


class PerRoom(RoomsCase):

    def test_each_room_has_one_order_for_its_members(self):
        srv = self.chat("--max-rate", "0", "--history", "0")
        members = [self.named(srv, "m%d" % i) for i in range(6)]
        for i, m in enumerate(members):
            room = "red" if i % 2 == 0 else "blue"
            m.send("/join " + room)
        for m in members:
            m.skip_until(re.compile(r"^\*\*\* you joined "))
        for m in members:          # a barrier: every join was handled and announced
            m.send("/who")
            m.skip_until(re.compile(r"^\*\*\* members \(3\)"))
        n = 200

        def talk(m):
            m.send(*("%s %d" % (m.nick, i) for i in range(n)))

        threads = [threading.Thread(target=talk, args=(m,)) for m in members]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seqs = {0: [], 1: []}
        for i, m in enumerate(members):
            got = m.lines(2 * n, timeout=20)             # the lines of the two others of its room
            speakers = sorted(set(l.split(": ")[0] for l in got))
            self.assertEqual(speakers, sorted(o.nick for o in members[i % 2::2] if o is not m))
            for who in speakers:                         # complete, each talker's in its order
                self.assertEqual([l for l in got if l.startswith(who + ": ")],
                                 ["%s: %s %d" % (who, who, k) for k in range(n)])
            seqs[i % 2].append(got)
        for lists in seqs.values():
            # Any two members of a room saw the lines they share in one order.
            for a in lists:
                for b in lists:
                    sa, sb = set(a), set(b)
                    self.assertEqual([l for l in a if l in sb], [l for l in b if l in sa])

    def test_slow_member_dropped_from_its_room_others_go_on(self):
        srv = self.chat("--max-rate", "0", "--max-queue", "256K", "--history", "0")
        talker, stuck, reader, other = (self.named(srv, n)
                                        for n in ("talker", "stuck", "reader", "other"))
        self.join(talker, "busy", 1)
        self.join(stuck, "busy", 2)
        self.join(reader, "busy", 3)
        self.join(other, "quiet", 1)
        talker.send("/who")
        talker.skip_until(re.compile(r"^\*\*\* members \(3\)"))
        payload = b"x" * 1000
        state = {"sent": 0, "next": 0, "dropped": False}
        reader.sock.settimeout(10)
        deadline = time.monotonic() + 90
        # The talker floods in batches, the reader reading each batch whole,
        # until the stuck member (queue over 256 KiB once the kernel's buffers
        # are full and the room stopped waiting for it after 3 s) is dropped.
        while not state["dropped"]:
            self.assertLess(time.monotonic(), deadline, "the stuck member was never dropped")
            first = state["sent"]
            talker.sock.sendall(b"".join(b"%d %s\n" % (first + i, payload) for i in range(100)))
            state["sent"] += 100
            while state["next"] < state["sent"]:
                line = reader.raw_line(timeout=30)
                if line.startswith(b"*** "):
                    self.assertEqual(line, b"*** stuck left (dropped: not reading)")
                    state["dropped"] = True
                    continue
                self.assertEqual(line, b"talker: %d %s" % (state["next"], payload))
                state["next"] += 1
        # The other room never heard of any of it; the busy room goes on.
        self.assertEqual(other.who(), ["other"])
        talker.send("after")
        reader.expect("talker: after")
        self.assertEqual(reader.who(), ["talker", "reader"])

    def test_max_line_applies_in_a_room(self):
        srv = self.chat("--max-line", "100")
        ann = self.named(srv, "ann")
        bob = self.named(srv, "bob")
        self.join(ann, "dev", 1)
        self.join(bob, "dev", 2)
        ann.expect("*** bob joined")
        ann.send("z" * 101)
        ann.expect("*** error: line longer than 100 bytes; not delivered")
        ann.send("z" * 100)
        bob.expect("ann: " + "z" * 100)


class NcMember(RoomsCase):

    def test_nc_joins_a_room_gets_history_and_a_private_line(self):
        srv = self.chat()
        ann = self.named(srv, "ann")
        self.join(ann, "#ops", 1)
        ann.send("deploy at noon")
        host, port = srv.addr.rsplit(":", 1)
        nc = self.popen(["nc", "-N", host, port], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
        nc.stdin.write(b"/nick ncuser\n/join ops\nok from nc\n")
        nc.stdin.flush()
        ann.expect("*** ncuser joined")
        ann.expect("ncuser: ok from nc")
        ann.send("/msg ncuser just you")
        ann.send("/who")
        self.assertEqual(ann.who_reply(), ["ann", "ncuser"])
        nc.stdin.write(b"/rooms\n")
        nc.stdin.close()
        ann.expect("*** ncuser left")
        out = nc.stdout.read().decode()
        self.assertEqual(nc.wait(10), 0)
        lines = out.splitlines()
        self.assertEqual(lines[1:5], ["*** you are now ncuser", "*** you joined ops (2 members)",
                                      "[history] ann: deploy at noon",
                                      "[private] ann: just you"])
        self.assertIn("*** rooms (2): lobby (0) ops (2)", lines)
