"""The remote-command example (examples/exec_{server,client}.c):
the server on 127.0.0.1:0, driven by the example client (stdin piped) and by
a raw Python client speaking its frames. Checks the naive version's bugs stay fixed:
long output arrives whole (a naive client reads one recv(1024)), commands are not
run through a shell, a vanished client takes its command with it, and the
server stops cleanly (exit 0, no sanitizer report) on SIGTERM.
Every wait is bounded by TIMEOUT; readiness is the "listening on" line.
"""
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / os.environ.get('SOCKIT_BUILD', 'build') / 'examples'
TIMEOUT = 15  # seconds: the bound of every wait here (the server's limit is 10 s)
SANITIZER = re.compile(rb'Sanitizer|runtime error:')


def exe(name):
    path = EXAMPLES / name
    if not path.exists():
        raise AssertionError('%s is missing: build the examples first (make)' % path)
    return str(path)


def recv_exact(sock, n):
    data = b''
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError('closed after %d of %d bytes' % (len(data), n))
        data += chunk
    return data


def recv_frame(sock):
    (n,) = struct.unpack('!I', recv_exact(sock, 4))
    return recv_exact(sock, n)


def send_frame(sock, payload):
    sock.sendall(struct.pack('!I', len(payload)) + payload)


def procs_with(marker):
    found = []
    for d in os.listdir('/proc'):
        if d.isdigit():
            try:
                with open('/proc/%s/cmdline' % d, 'rb') as f:
                    argv = f.read().split(b'\0')
            except OSError:
                continue
            if argv[0] == b'sleep' and marker in argv:
                found.append(int(d))
    return found


def wait_until(pred, timeout=TIMEOUT):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


class ExecExample(unittest.TestCase):

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix='skexec-')
        self.proc = subprocess.Popen([exe('exec_server'), '127.0.0.1:0'], cwd=self.tmp,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.addCleanup(self.kill)
        self.err = b''
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + TIMEOUT
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b'\n' not in self.err:
                left = deadline - time.monotonic()
                self.assertTrue(left > 0 and sel.select(left), 'server not ready')
                chunk = os.read(fd, 4096)
                self.assertTrue(chunk, 'server exited: %r' % self.err)
                self.err += chunk
        m = re.match(rb'listening on (\S+):(\d+)\n', self.err)
        self.assertIsNotNone(m, self.err)
        self.port = int(m.group(2))
        self.addr = '127.0.0.1:%d' % self.port

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=TIMEOUT)
        for f in os.listdir(self.tmp):
            os.unlink(os.path.join(self.tmp, f))
        os.rmdir(self.tmp)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=TIMEOUT)
        self.assertNotRegex(self.err + err, SANITIZER)
        self.assertEqual(self.proc.returncode, 0, err)
        return out.decode()

    def client(self, stdin):
        p = subprocess.run([exe('exec_client'), self.addr], input=stdin,
                           capture_output=True, timeout=TIMEOUT)
        self.assertNotRegex(p.stderr, SANITIZER)
        self.assertEqual(p.returncode, 0, p.stderr)
        return p.stdout, p.stderr.decode()

    def test_commands_and_whole_answers(self):
        out, err = self.client(b'echo hello world\n\nseq 1 100000\nls /nonexistent-dir\n'
                               b'no-such-command\n')
        seq = ''.join('%d\n' % i for i in range(1, 100001)).encode()
        self.assertTrue(out.startswith(b'hello world\n' + seq), out[:100])
        self.assertIn(b'nonexistent-dir', out[len(seq):])  # ls's stderr comes back too
        self.assertEqual(err.splitlines(), ['[exit 0]', '[exit 0]', '[exit 2]',
                                            '[could not run: No such file or directory]'])
        log = self.stop()
        self.assertIn('from client: seq 1 100000', log)
        self.assertNotIn('from client: \n', log, 'the empty line was sent')

    def test_no_shell(self):
        out, err = self.client(b'echo a;touch pwned $(touch pwned2) | x\n')
        self.assertEqual(out, b'a;touch pwned $(touch pwned2) | x\n')
        self.assertEqual(err, '[exit 0]\n')
        self.assertEqual(os.listdir(self.tmp), [])
        self.stop()

    def test_raw_python_client_and_vanishing_client(self):
        s = socket.create_connection(('127.0.0.1', self.port), timeout=TIMEOUT)
        send_frame(s, b'printf %s x y ')
        self.assertEqual(recv_frame(s), b'xy')
        self.assertEqual(recv_frame(s), b'exit 0')
        send_frame(s, b'sleep 1000.2468')
        self.assertTrue(wait_until(lambda: procs_with(b'1000.2468')), 'the command never started')
        s.close()
        self.assertTrue(wait_until(lambda: not procs_with(b'1000.2468')),
                        'the command outlived its client')
        self.stop()

    def test_refuses_to_listen_beyond_loopback(self):
        p = subprocess.run([exe('exec_server'), '0.0.0.0:0'], capture_output=True,
                           timeout=TIMEOUT)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b'loopback', p.stderr)
        self.stop()
