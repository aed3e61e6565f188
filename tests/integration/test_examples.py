"""Integration tests of the examples (examples/NAME_{server,client}.c).

Each test starts an example server on 127.0.0.1:0, waits for its
"listening on ADDR" line on stderr, drives it with the example client (stdin
piped) and with raw Python sockets, then stops it with SIGTERM and checks
that it exits 0 with no sanitizer report. Every wait is bounded by TIMEOUT;
nothing sleeps. Binaries live in $SOCKIT_BUILD/examples (default build/).
"""
import os
import re
import selectors
import signal
import socket
import subprocess
import tempfile
import time
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / os.environ.get('SOCKIT_BUILD', 'build') / 'examples'
TIMEOUT = 10  # seconds; the bound of every wait in this file
SANITIZER = re.compile(rb'Sanitizer|runtime error:')
NAMES = ('greeting', 'hello', 'upper', 'banner', 'timeout')


def exe(name):
    path = EXAMPLES / name
    if not path.exists():
        raise AssertionError('%s is missing: build the examples first (make)' % path)
    return str(path)


class Server:
    """An example server process started on addr, ready once it said so."""

    def __init__(self, name, addr='127.0.0.1:0'):
        self.name = name
        self.proc = subprocess.Popen([exe(name), addr], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.err = b''
        line = self._first_line()
        m = re.fullmatch(rb'listening on (.+)', line)
        if not m:
            self.kill()
            raise AssertionError('%s: no readiness line, stderr: %r' % (name, self.err))
        self.where = m.group(1).decode()
        port = re.search(r':(\d+)$', self.where)
        self.port = int(port.group(1)) if port else None
        self.addr = '127.0.0.1:%d' % self.port if self.port else self.where

    def _first_line(self):
        """Reads stderr until its first newline, within TIMEOUT."""
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + TIMEOUT
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b'\n' not in self.err:
                left = deadline - time.monotonic()
                if left <= 0 or not sel.select(left):
                    self.kill()
                    raise AssertionError('%s: not ready within %ds' % (self.name, TIMEOUT))
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.kill()
                    raise AssertionError('%s exited before it was ready (%s): %r'
                                         % (self.name, self.proc.wait(TIMEOUT), self.err))
                self.err += chunk
        return self.err.split(b'\n', 1)[0]

    def stop(self, signo=signal.SIGTERM):
        """Signals the server (unless signo is None) and waits for it to
        exit; returns (exit status, stdout, whole stderr)."""
        if signo is not None:
            self.proc.send_signal(signo)
        out, err = self.proc.communicate(timeout=TIMEOUT)
        self.err += err
        return self.proc.returncode, out, self.err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=TIMEOUT)


def connect(port):
    return socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT)


def read_to_end(f):
    """What is left of a socket file until the peer closes (or resets)."""
    try:
        return f.read()
    except ConnectionResetError:
        return b''


def wait_refused(port):
    """Returns once connecting to port is refused, within TIMEOUT."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            connect(port).close()
        except (ConnectionRefusedError, ConnectionResetError):
            return  # reset: the listener closed with this one still queued
    raise AssertionError('port %d still accepts connections' % port)


def recv_all(sock):
    """Everything the peer sends until it closes."""
    data = b''
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


class ExampleTest(unittest.TestCase):
    """Starts self.SERVER before each test; self.stop() checks a clean exit."""
    SERVER = None

    def setUp(self):
        self.srv = Server(self.SERVER)
        self.addCleanup(self.srv.kill)

    def stop(self, signo=signal.SIGTERM):
        code, out, err = self.srv.stop(signo)
        self.assertNotRegex(err, SANITIZER)
        self.assertEqual(code, 0, err)
        return out.decode()

    def client(self, name, *args, stdin=b'', status=0):
        p = subprocess.run([exe(name), *args], input=stdin, capture_output=True,
                           timeout=TIMEOUT)
        self.assertNotRegex(p.stderr, SANITIZER)
        self.assertEqual(p.returncode, status, p.stderr)
        self.client_err = p.stderr.decode()
        return p.stdout.decode()


class Greeting(ExampleTest):
    SERVER = 'greeting_server'

    def test_client_session(self):
        out = self.client('greeting_client', self.srv.addr, stdin='你好\n\nabc\nq\n'.encode())
        self.assertEqual(out, '你好欢迎你\n你好好\nabc好\n')  # the empty line was not sent
        self.assertEqual(self.stop(), '你好\nabc\nq\n')

    def test_client_end_of_input_quits(self):
        out = self.client('greeting_client', self.srv.addr, stdin='x\r\ny\n'.encode())
        self.assertEqual(out, '你好欢迎你\nx好\ny好\n')
        self.stop()

    def test_glued_and_split_messages(self):
        with connect(self.srv.port) as s, s.makefile('rb') as f:
            self.assertEqual(f.readline().decode(), '你好欢迎你\n')
            s.sendall(b'a\nb\n')  # two messages in one segment
            self.assertEqual(f.readline(), b'a\xe5\xa5\xbd\n')
            self.assertEqual(f.readline(), b'b\xe5\xa5\xbd\n')
            s.sendall('你'.encode()[:1])  # a UTF-8 character cut in two
            s.sendall('你'.encode()[1:] + b'\n')
            self.assertEqual(f.readline().decode(), '你好\n')
            s.sendall(b'q\n')
            self.assertEqual(f.read(), b'')  # "q" ends the session
        self.stop()

    def test_many_clients_at_once(self):
        socks = [connect(self.srv.port) for _ in range(3)]
        files = [s.makefile('rb') for s in socks]
        for f in files:  # a one-client-at-a-time server greets the second client only after the first left
            self.assertEqual(f.readline().decode(), '你好欢迎你\n')
        for i in reversed(range(3)):
            socks[i].sendall(b'%d\n' % i)
            self.assertEqual(files[i].readline().decode(), '%d好\n' % i)
        for s, f in zip(socks, files):
            f.close()
            s.close()
        self.stop()

    def test_stop_with_a_client_connected(self):
        with connect(self.srv.port) as s, s.makefile('rb') as f:
            self.assertEqual(f.readline().decode(), '你好欢迎你\n')
            self.srv.proc.send_signal(signal.SIGTERM)
            s.sendall(b'still here\n')  # the open session goes on while draining
            self.assertEqual(f.readline().decode(), 'still here好\n')
            self.assertEqual(read_to_end(f), b'')  # until the drain deadline closes it
        self.assertEqual(self.stop(None), 'still here\n')

    def test_second_signal_stops_at_once(self):
        with connect(self.srv.port) as s, s.makefile('rb') as f:
            self.assertEqual(f.readline().decode(), '你好欢迎你\n')
            self.srv.proc.send_signal(signal.SIGTERM)
            wait_refused(self.srv.port)  # the drain has begun: no more accepting
            self.srv.proc.send_signal(signal.SIGINT)
            self.assertEqual(read_to_end(f), b'')  # the open session is dropped
        self.stop(None)

    def test_stop_on_sigint(self):
        self.stop(signal.SIGINT)


class Hello(ExampleTest):
    SERVER = 'hello_server'

    def test_client(self):
        self.assertEqual(self.client('hello_client', self.srv.addr), 'Received: Hello Client\n')
        self.assertEqual(self.stop(), 'Received: Hello Server\n')

    def test_message_in_pieces(self):
        with connect(self.srv.port) as s:
            s.sendall(b'Hello ')
            s.sendall(b'Server\n')
            self.assertEqual(recv_all(s), b'Hello Client\n')
        self.assertEqual(self.stop(), 'Received: Hello Server\n')

    def test_silent_client_blocks_nobody(self):
        with connect(self.srv.port):  # a one-client-at-a-time server would wait in recv() on this one
            out = self.client('hello_client', self.srv.addr)
            self.assertEqual(out, 'Received: Hello Client\n')
        self.stop()


class Upper(ExampleTest):
    SERVER = 'upper_server'

    def test_client(self):
        out = self.client('upper_client', self.srv.addr,
                          stdin='hello\n\nMixed Case 123 ünï\n'.encode())
        self.assertEqual(out, 'HELLO\nMIXED CASE 123 üNï\n')  # UTF-8 stays valid
        self.assertEqual(self.stop(), 'from client: hello\nfrom client: Mixed Case 123 ünï\n')

    def test_client_long_message(self):
        text = 'abc' * 2000  # longer than one recv(1024)
        out = self.client('upper_client', self.srv.addr, stdin=(text + '\nok\n').encode())
        self.assertEqual(out, text.upper() + '\nOK\n')
        self.stop()

    def test_glued_messages(self):
        with connect(self.srv.port) as s, s.makefile('rb') as f:
            s.sendall(b'abc\ndef\n')
            self.assertEqual(f.readline(), b'ABC\n')
            self.assertEqual(f.readline(), b'DEF\n')
        self.stop()

    def test_two_clients_interleaved(self):
        with connect(self.srv.port) as a, connect(self.srv.port) as b, \
                a.makefile('rb') as fa, b.makefile('rb') as fb:
            b.sendall(b'from b\n')
            a.sendall(b'from a\n')
            self.assertEqual(fb.readline(), b'FROM B\n')
            self.assertEqual(fa.readline(), b'FROM A\n')
        self.stop()

    def test_stop_on_sigint(self):
        self.stop(signal.SIGINT)


class UpperUnix(unittest.TestCase):
    def test_unix_socket(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'upper.sock')
            srv = Server('upper_server', 'unix:' + path)
            self.addCleanup(srv.kill)
            p = subprocess.run([exe('upper_client'), 'unix:' + path], input=b'unix\n',
                               capture_output=True, timeout=TIMEOUT)
            self.assertEqual((p.returncode, p.stdout), (0, b'UNIX\n'), p.stderr)
            code, _, err = srv.stop()
            self.assertNotRegex(err, SANITIZER)
            self.assertEqual(code, 0, err)
            self.assertFalse(os.path.exists(path), 'socket file left behind')


class Banner(ExampleTest):
    SERVER = 'banner_server'

    def test_client(self):
        self.assertEqual(self.client('banner_client', self.srv.addr),
                         'Thank you for connecting\n')
        self.assertRegex(self.stop(), r'^Got a connection from 127\.0\.0\.1:\d+\n$')

    def test_raw_greeting(self):
        socks = [connect(self.srv.port) for _ in range(5)]
        for s in socks:
            self.assertEqual(recv_all(s), b'Thank you for connecting\r\n')
            s.close()
        self.assertEqual(len(self.stop().splitlines()), 5)


class Timeout(ExampleTest):
    SERVER = 'timeout_server'

    def test_client_welcome(self):
        self.assertEqual(self.client('timeout_client', self.srv.addr), 'Welcome to server!\n')
        self.assertEqual(self.stop(), '')

    def test_client_goodbye(self):
        self.assertEqual(self.client('timeout_client', self.srv.addr, 'hello'), 'Goodbye!\n')
        self.stop()

    def test_raw_requests(self):
        for pieces, reply in (([b'1\n'], b'Welcome to server!\n'),
                              ([b'1', b'\n'], b'Welcome to server!\n'),  # one request, two sends
                              ([b'2\r\n'], b'Goodbye!\n'),
                              ([b'11\n'], b'Goodbye!\n')):
            with connect(self.srv.port) as s:
                for piece in pieces:
                    s.sendall(piece)
                self.assertEqual(recv_all(s), reply, pieces)
        self.stop()

    def test_silent_client_times_out(self):
        with connect(self.srv.port) as s:
            # Meanwhile the server still serves others.
            self.assertEqual(self.client('timeout_client', self.srv.addr), 'Welcome to server!\n')
            try:
                self.assertEqual(s.recv(1), b'')  # closed after the 1 s of silence
            except ConnectionResetError:
                pass
        self.assertEqual(self.stop(), 'socket timeout\n')

    def test_client_gives_up_after_one_second(self):
        with socket.create_server(('127.0.0.1', 0)) as mute:  # accepts, never answers
            start = time.monotonic()
            out = self.client('timeout_client', '127.0.0.1:%d' % mute.getsockname()[1],
                              status=1)
            self.assertLess(time.monotonic() - start, TIMEOUT)
        self.assertEqual(out, '')
        self.assertIn('timed out', self.client_err)
        self.stop()


class CommonBehaviour(unittest.TestCase):
    def test_bad_address_is_a_usage_error(self):
        for name in NAMES:
            for role in ('server', 'client'):
                p = subprocess.run([exe('%s_%s' % (name, role)), '127.0.0.1:99999'],
                                   stdin=subprocess.DEVNULL, capture_output=True,
                                   timeout=TIMEOUT)
                self.assertEqual(p.returncode, 2, (name, role, p.stderr))
                self.assertEqual(p.stdout, b'')
                self.assertEqual(p.stderr.count(b'\n'), 1, p.stderr)

    def test_refused_connection_is_one_line_and_exit_1(self):
        with socket.socket() as closed:  # bound, not listening: connecting is refused
            closed.bind(('127.0.0.1', 0))
            addr = '127.0.0.1:%d' % closed.getsockname()[1]
            for name in NAMES:
                p = subprocess.run([exe(name + '_client'), addr], stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=TIMEOUT)
                self.assertEqual(p.returncode, 1, (name, p.stderr))
                self.assertEqual(p.stdout, b'')
                self.assertEqual(p.stderr.count(b'\n'), 1, p.stderr)
                self.assertNotRegex(p.stderr, SANITIZER)

    def test_port_in_use_is_one_line_and_exit_1(self):
        with socket.create_server(('127.0.0.1', 0)) as taken:
            addr = '127.0.0.1:%d' % taken.getsockname()[1]
            for name in NAMES:
                p = subprocess.run([exe(name + '_server'), addr], stdin=subprocess.DEVNULL,
                                   capture_output=True, timeout=TIMEOUT)
                self.assertEqual(p.returncode, 1, (name, p.stderr))
                self.assertEqual(p.stderr.count(b'\n'), 1, p.stderr)
                self.assertNotRegex(p.stderr, SANITIZER)


if __name__ == '__main__':
    unittest.main()
