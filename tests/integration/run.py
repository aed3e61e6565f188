#!/usr/bin/env python3
"""Runs the sockit integration tests: every test_*.py in this folder.

    SOCKIT_BUILD=build/san python3 tests/integration/run.py [FILTER ...] [-x] [--list]

FILTER: keep only tests whose id (module.Class.method) contains one of the
given substrings, e.g. `run.py test_echo` or `run.py half_close`.
-x: stop after the first failing test.  --list: print the selected test ids.
SOCKIT_TEST_TIMEOUT: seconds one test may take (default 90) before it is
failed by an alarm.

Prints each test and its result as it goes, the details of each failure, and
ends with exactly one line "N passed, M failed[, K skipped]". Exit code 0 only
if nothing failed (a module that cannot be imported counts as a failed test).
"""

import os
import signal
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TEST_TIMEOUT = float(os.environ.get("SOCKIT_TEST_TIMEOUT", "90"))


class TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout("test took longer than %.0f s (SOCKIT_TEST_TIMEOUT)" % TEST_TIMEOUT)


def _iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _iter_tests(t)
        else:
            yield t


class Result(unittest.TestResult):
    """Counts each test once: failed if anything failed in it (body, subtest,
    tearDown), skipped if skipped, else passed. Errors raised outside a test
    (setUpClass, setUpModule, import) count as one failed entry each."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream
        self.current = None
        self.outcome = {}       # test id -> "pass" | "fail" | "skip"
        self.details = []       # (id, text)
        self.order = []

    def _w(self, s):
        self.stream.write(s)
        self.stream.flush()

    def startTest(self, test):
        super().startTest(test)
        self.current = test.id()
        self.t0 = time.monotonic()
        self._failed_here = False
        self._skip_reason = None
        self._w("%-78s " % test.id())
        signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)

    def stopTest(self, test):
        signal.setitimer(signal.ITIMER_REAL, 0)
        super().stopTest(test)
        dt = time.monotonic() - self.t0
        tid = test.id()
        if self._failed_here:
            self.outcome[tid] = "fail"
            self._w("FAIL (%.1fs)\n" % dt)
            for did, text in self.details:
                if did == tid:
                    self._w(_indent(text))
        elif self._skip_reason is not None:
            self.outcome[tid] = "skip"
            self._w("skipped (%s)\n" % self._skip_reason)
        else:
            self.outcome[tid] = "pass"
            self._w("ok (%.1fs)\n" % dt)
        self.order.append(tid)
        self.current = None

    def _record_failure(self, test, text):
        tid = test.id()
        if self.current is not None and tid == self.current:
            self._failed_here = True
            self.details.append((tid, text))
        else:
            # setUpClass / setUpModule / tearDownModule errors: no startTest.
            self.outcome[tid] = "fail"
            self.order.append(tid)
            self.details.append((tid, text))
            self._w("%-78s FAIL\n%s" % (tid, _indent(text)))

    def addError(self, test, err):
        super().addError(test, err)
        self._record_failure(test, self._exc_info_to_string(err, test))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._record_failure(test, self._exc_info_to_string(err, test))

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self._record_failure(test, "subtest %s:\n%s"
                                 % (subtest._subDescription(), self._exc_info_to_string(err, test)))

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if self.current == test.id():
            self._skip_reason = reason
        else:
            self.outcome[test.id()] = "skip"
            self.order.append(test.id())

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._record_failure(test, "unexpected success\n")


def _indent(text):
    return "".join("    " + l + "\n" for l in text.rstrip("\n").split("\n"))


def main(argv):
    filters = [a for a in argv if not a.startswith("-")]
    failfast = "-x" in argv
    list_only = "--list" in argv
    for a in argv:
        if a.startswith("-") and a not in ("-x", "--list"):
            print(__doc__)
            print("0 passed, 1 failed")
            return 2

    loader = unittest.TestLoader()
    suite = loader.discover(start_dir=HERE, pattern="test_*.py", top_level_dir=HERE)
    tests = list(_iter_tests(suite))
    if filters:
        tests = [t for t in tests if any(f in t.id() for f in filters)]
    if list_only:
        for t in tests:
            print(t.id())
        print("%d tests" % len(tests))
        return 0

    import helpers
    print("sockit integration tests: binary %s%s, %d tests"
          % (helpers.SOCKIT, "" if helpers.have_binary() else " (MISSING)", len(tests)))
    sys.stdout.flush()

    signal.signal(signal.SIGALRM, _on_alarm)
    result = Result(sys.stdout)
    result.failfast = failfast
    t0 = time.monotonic()
    unittest.TestSuite(tests).run(result)
    signal.setitimer(signal.ITIMER_REAL, 0)

    passed = sum(1 for v in result.outcome.values() if v == "pass")
    failed = sum(1 for v in result.outcome.values() if v == "fail")
    skipped = sum(1 for v in result.outcome.values() if v == "skip")
    if failed:
        print("\nfailed tests:")
        for tid in result.order:
            if result.outcome.get(tid) == "fail":
                print("  " + tid)
    print("(%.1f s)" % (time.monotonic() - t0))
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    sys.stdout.flush()
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        print("interrupted")
        print("0 passed, 1 failed")
        sys.exit(1)
