"""The command line: version, help, and usage errors (exit 2, one line on
stderr naming the bad part)."""

from helpers import SockitTestCase


class VersionHelp(SockitTestCase):

    def test_version(self):
        cp = self.sockit("version", timeout=10)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stdout, b"sockit 0.2.0\n")
        self.assertClean(cp)

    def test_help_of_each_command(self):
        for argv, word in ((["--help"], b"serve"), (["-h"], b"serve"),
                           (["serve", "--help"], b"--framing"), (["serve", "-h"], b"--max-conns"),
                           (["connect", "--help"], b"--timeout")):
            with self.subTest(argv=argv):
                cp = self.sockit(*argv, timeout=10)
                self.assertEqual(cp.returncode, 0, cp.stderr)
                self.assertIn(b"sockit", cp.stdout)
                self.assertIn(word, cp.stdout, "usage of %s does not mention %s" % (argv, word))
                self.assertClean(cp)

    def test_no_arguments_is_usage_error(self):
        cp = self.sockit(timeout=10)
        self.assertEqual(cp.returncode, 2)
        self.assertTrue(cp.stderr.strip())


class UsageErrors(SockitTestCase):

    CASES = [
        # argv, a word the one line must contain (any of them)
        (["serve", "echo", "127.0.0.1:70000"], ["70000"]),
        (["serve", "echo", "127.0.0.1:-1"], ["-1"]),
        (["serve", "echo", "127.0.0.1:abc"], ["abc"]),
        (["serve", "echo", "127.0.0.1"], ["127.0.0.1"]),
        (["serve", "echo", "foo://127.0.0.1:1"], ["foo"]),
        (["serve", "echo", "[::1:80"], ["[::1:80"]),
        (["serve", "echo", "unix:"], ["unix:"]),
        (["serve", "echo", "unix:/tmp/" + "x" * 200], ["unix:", "long"]),
        (["serve", "echo", "tls://127.0.0.1:0"], ["tls"]),
        (["serve", "nosuch", "127.0.0.1:0"], ["nosuch"]),
        (["serve", "nosuch=127.0.0.1:0"], ["nosuch"]),
        (["serve", "echo=127.0.0.1:0", "upper=bogus:1:2"], ["bogus"]),
        (["serve", "echo", "127.0.0.1:0", "--framing", "bogus"], ["bogus"]),
        (["serve", "greet", "udp://127.0.0.1:0"], ["greet", "udp"]),
        (["serve", "greet", "unixgram:/tmp/skit-never.sock"], ["greet", "unixgram"]),
        (["serve", "echo", "127.0.0.1:0", "--max-conns", "many"], ["many"]),
        (["serve", "echo", "127.0.0.1:0", "--max-frame", "12X"], ["12X"]),
        (["serve", "echo", "127.0.0.1:0", "--idle-timeout", "soon"], ["soon"]),
        (["serve", "echo", "127.0.0.1:0", "--no-such-option"], ["--no-such-option"]),
        (["serve", "echo", "127.0.0.1:0", "--framing"], ["--framing"]),
        (["connect", "127.0.0.1:70000"], ["70000"]),
        (["connect", "gopher://127.0.0.1:70"], ["gopher"]),
        (["connect", "127.0.0.1:1", "--framing", "xml"], ["xml"]),
        (["connect"], ["ADDR", "address", "connect"]),
        (["frobnicate"], ["frobnicate"]),
    ]

    def test_bad_arguments_exit_2_with_one_line(self):
        for argv, words in self.CASES:
            with self.subTest(argv=" ".join(argv)[:80]):
                cp = self.sockit(*argv, input=b"", timeout=10)
                err = cp.stderr.decode("utf-8", "replace")
                self.assertEqual(cp.returncode, 2, "exit %d, stderr %r" % (cp.returncode, err))
                lines = err.strip().splitlines()
                self.assertEqual(len(lines), 1, "expected exactly one line on stderr, got %r" % lines)
                self.assertTrue(any(w in lines[0] for w in words),
                                "%r does not name the bad part (%s)" % (lines[0], " or ".join(words)))
                self.assertNotIn(b"listening on", cp.stderr)
