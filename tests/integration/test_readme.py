"""The README's library example builds and runs as printed: myecho.c, the
static build line and the pkg-config lines are taken from README.md (each
block follows a `<!-- test_readme: NAME -->` marker), run in a scratch
directory, and the program answers a client. Also: the tour's servers stay
off the demo set's ports 9000-9005, so they run beside `make run`."""

import os
import re
import shlex
import shutil
import subprocess
import tempfile
import unittest

from helpers import ROOT, SockitTestCase, child_env

README = os.path.join(ROOT, "README.md")
MAN = os.path.join(ROOT, "docs", "sockit.1")
MAKE_TIMEOUT = 900      # `make install` may have to build build/ first
DEMO_PORTS = range(9000, 9006)


def readme_block(name):
    """The fenced block that follows the marker <!-- test_readme: NAME ... -->."""
    with open(README, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"<!-- test_readme: %s\b[^>]*-->\s*\n```[a-z]*\n(.*?)\n```" % re.escape(name),
                  text, re.S)
    if m is None:
        raise AssertionError("README.md has no block after <!-- test_readme: %s -->" % name)
    return m.group(1) + "\n"


def build_commands(block):
    """The lines of a shell block that build something (make, cc)."""
    return [l for l in block.splitlines() if re.match(r"^(make|cc|export) ", l)]


def make_env():
    # Under `make test` the jobserver descriptors named in MAKEFLAGS are not
    # ours to use: the sub-make must start afresh.
    env = child_env()
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "BUILD", "SAN"):
        env.pop(k, None)
    return env


class LibraryExample(SockitTestCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        missing = [t for t in ("make", "cc", "pkg-config") if shutil.which(t) is None]
        cls.skip_reason = "needs %s" % ", ".join(missing) if missing else None

    def setUp(self):
        super().setUp()
        if self.skip_reason:
            self.skipTest(self.skip_reason)
        self.work = tempfile.mkdtemp(prefix="sockit-readme-")
        self.addCleanup(shutil.rmtree, self.work, True)
        with open(os.path.join(self.work, "myecho.c"), "w") as f:
            f.write(readme_block("myecho.c"))

    def sh(self, line, env, cwd, timeout=120):
        cp = subprocess.run(["sh", "-c", line], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=timeout)
        self.assertEqual(cp.returncode, 0, "%s failed:\n%s" % (line, cp.stderr.decode()[-3000:]))
        return cp

    def run_myecho(self, argv, env):
        """Starts the built program on an ephemeral port, checks a line comes
        back from a client (nc), then stops it with SIGINT."""
        p = self.popen(argv + ["127.0.0.1:0"], cwd=self.work, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        line = p.stderr.readline().decode()
        m = re.match(r"^listening on 127\.0\.0\.1:(\d+)$", line.strip())
        self.assertIsNotNone(m, "myecho said %r" % line)
        port = int(m.group(1))
        cp = self.run_cmd(["nc", "-N", "127.0.0.1", str(port)], input=b"hello\r\nworld\n",
                          timeout=20)
        self.assertEqual(cp.stdout, b"hello\nworld\n")
        p.send_signal(2)
        self.assertEqual(p.wait(timeout=10), 0)

    def make_install(self, prefix):
        """The README's `make install PREFIX=...`: builds build/ if needed."""
        self.sh("make -s install PREFIX=%s >/dev/null" % shlex.quote(prefix), make_env(), ROOT,
                timeout=MAKE_TIMEOUT)

    def test_static_build_line_links_as_printed(self):
        # The README's static line, word for word, in a directory laid out
        # like the top of the tree (include/ and build/ as after `make`).
        cmds = build_commands(readme_block("static build"))
        self.assertTrue(cmds, "no cc line in the static build block")
        self.make_install(os.path.join(self.work, "prefix"))   # also runs `make`
        os.symlink(os.path.join(ROOT, "include"), os.path.join(self.work, "include"))
        os.symlink(os.path.join(ROOT, "build"), os.path.join(self.work, "build"))
        for line in cmds:
            self.sh(line, make_env(), self.work)
        self.run_myecho([os.path.join(self.work, "myecho")], child_env())

    def test_pkg_config_lines_build_as_printed(self):
        block = readme_block("pkg-config build")
        prefix = os.path.join(self.work, "x")
        # The README installs into /tmp/x; here a private prefix instead.
        lines = [l.replace("/tmp/x", prefix) for l in build_commands(block)]
        self.assertTrue(any(l.startswith("cc ") for l in lines), block)
        env = make_env()
        for line in lines:
            if line.startswith("make "):
                self.make_install(prefix)
            elif line.startswith("export "):
                k, _, v = line[len("export "):].partition("=")
                env[k] = v
            else:
                self.sh(line, env, self.work)
        run_env = child_env({"LD_LIBRARY_PATH": os.path.join(prefix, "lib")})
        self.run_myecho([os.path.join(self.work, "myecho")], run_env)


class TourPorts(unittest.TestCase):
    """`make run` holds 9000-9005 while the reader follows the tour."""

    def serve_ports(self, text):
        ports = []
        for line in text.splitlines():
            if re.search(r"\bserve\b", line):
                ports += [int(p) for p in re.findall(r"(?<![\d.])(?:\d{1,3}(?:\.\d{1,3}){3}|\]|"
                                                      r"localhost):(\d{2,5})\b", line)]
        return ports

    def test_readme_servers_avoid_demo_ports(self):
        with open(README, encoding="utf-8") as f:
            text = f.read()
        blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
        clash = [p for b in blocks for p in self.serve_ports(b) if p in DEMO_PORTS]
        self.assertEqual(clash, [], "README starts servers on the demo set's ports")

    def test_man_page_servers_avoid_demo_ports(self):
        with open(MAN, encoding="utf-8") as f:
            text = f.read().replace("\\-", "-").replace("\\(aq", "'")
        examples = re.findall(r"^\.EX\n(.*?)^\.EE", text, re.S | re.M)
        clash = [p for b in examples for p in self.serve_ports(b) if p in DEMO_PORTS]
        self.assertEqual(clash, [], "the man page starts servers on the demo set's ports")
