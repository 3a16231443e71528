#!/usr/bin/env python3
"""Run this interpreter's own ``test.test_socketserver`` against fastsock.

    python tests/stdlib_suite.py [-v | -q] [unittest options and test names]

The test module is the one shipped with the running interpreter's standard
library (never a copy): fastsock is put in ``sys.modules['socketserver']``
before it is imported, so every ``socketserver.X`` in it is ``fastsock.X``.
Arguments are passed to :func:`unittest.main` (``-v``, ``-q``, ``-k PATTERN``,
``-f``, test names such as ``SocketServerTest.test_TCPServer``).

Environment:

``FASTSOCK_PURE=1``
    select fastsock's pure-Python backend (read by fastsock itself).
``FASTSOCK_EXPECT_BACKEND=cython|python``
    abort unless ``fastsock.BACKEND`` is exactly this.

``MiscTestCase.test_all`` (which wants ``__module__ == 'socketserver'``) is
replaced by an equivalent check of fastsock's ``__all__``.  The last line of
output is always ``stdlib test_socketserver: N passed, M failed``; the exit
status is non-zero when anything failed, errored or was skipped (nothing in
this suite should skip on Linux, so a skip is reported, never counted as a
pass).
"""
import importlib
import os
import socket
import sys
import sysconfig
import tempfile
import types
import unittest

# Public fastsock names that are not part of socketserver's API and are
# deliberately kept out of ``__all__`` (see fastsock/__init__.py): install()
# and uninstall() swap fastsock in for the stdlib module, the ThreadPool*
# servers are fastsock's pooled alternative to ThreadingMixIn, LineTooLong is
# what a reader with max_line raises, ServerStats/StatsExporter/
# prometheus_text are server statistics, the Greenlet* servers and GreenSocket
# are the opt-in greenlet event loop, BACKEND and EXTRAS are data.
FASTSOCK_EXTRAS = frozenset({
    "install", "uninstall",
    "ThreadPoolMixIn", "ThreadPoolTCPServer", "ThreadPoolUDPServer",
    "ThreadPoolUnixStreamServer", "ThreadPoolUnixDatagramServer",
    "LineTooLong",
    "ServerStats", "StatsExporter", "prometheus_text",
    "GreenletMixIn", "GreenletTCPServer", "GreenletUnixStreamServer", "GreenSocket",
    "BACKEND", "EXTRAS",
})

SUMMARY = "stdlib test_socketserver: %d passed, %d failed"


def socketserver_313_all():
    """``__all__`` of CPython 3.13's socketserver on this platform."""
    names = ["BaseServer", "TCPServer", "UDPServer",
             "ThreadingUDPServer", "ThreadingTCPServer",
             "BaseRequestHandler", "StreamRequestHandler",
             "DatagramRequestHandler", "ThreadingMixIn"]
    if hasattr(os, "fork"):
        names += ["ForkingUDPServer", "ForkingTCPServer", "ForkingMixIn"]
    if hasattr(socket, "AF_UNIX"):
        names += ["UnixStreamServer", "UnixDatagramServer",
                  "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer"]
        if hasattr(os, "fork"):
            # New in 3.12's socketserver; older stdlibs lack these two.
            names += ["ForkingUnixStreamServer", "ForkingUnixDatagramServer"]
    return names


def die(message):
    sys.stdout.flush()
    sys.stderr.write("\nstdlib_suite.py: FATAL: %s\n" % (message,))
    sys.stderr.flush()
    print(SUMMARY % (0, 1))
    sys.exit(2)


def is_fastsock_module(name):
    return isinstance(name, str) and (name == "fastsock"
                                      or name.startswith("fastsock."))


def make_test_all(fastsock):
    def test_all(self):
        # fastsock's replacement for the stdlib check: __all__ is exactly
        # CPython 3.13's list, every name is a fastsock class, and nothing
        # else public that fastsock defines is missing from it.
        expected = socketserver_313_all()
        exported = list(fastsock.__all__)
        self.assertCountEqual(exported, expected)
        not_ours = {}
        for name in expected:
            obj = getattr(fastsock, name, None)
            if not isinstance(obj, type):
                not_ours[name] = "not a class: %r" % (obj,)
            elif not is_fastsock_module(obj.__module__):
                not_ours[name] = "__module__ is %r" % (obj.__module__,)
        self.assertEqual(not_ours, {}, "__all__ names that are not fastsock "
                         "classes")
        unlisted = []
        for name in dir(fastsock):
            if (name.startswith("_") or name in exported
                    or name in FASTSOCK_EXTRAS):
                continue
            obj = getattr(fastsock, name)
            if isinstance(obj, types.ModuleType):
                continue
            if not (isinstance(obj, type) or callable(obj)):
                continue
            if is_fastsock_module(getattr(obj, "__module__", None)):
                unlisted.append(name)
        self.assertEqual(unlisted, [],
                         "public fastsock classes/functions neither in "
                         "__all__ nor in FASTSOCK_EXTRAS")
    test_all.__doc__ = None
    return test_all


def verbosity_from(argv):
    verbosity = 1
    for arg in argv:
        if arg in ("-v", "--verbose"):
            verbosity = 2
        elif arg in ("-q", "--quiet"):
            verbosity = 0
    return verbosity


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    verbosity = verbosity_from(argv)

    import fastsock

    expected_backend = os.environ.get("FASTSOCK_EXPECT_BACKEND")
    if expected_backend and fastsock.BACKEND != expected_backend:
        reason = getattr(getattr(fastsock, "_backend", None), "REASON", None)
        die("fastsock.BACKEND is %r but FASTSOCK_EXPECT_BACKEND is %r "
            "(fastsock from %s; reason: %s)"
            % (fastsock.BACKEND, expected_backend, fastsock.__file__, reason))

    for name in ("test.test_socketserver", "socketserver"):
        sys.modules.pop(name, None)
    sys.modules["socketserver"] = fastsock

    import test.support
    # The module calls test.support.requires("network") at import time.
    # Outside regrtest use_resources is None (everything enabled); make sure
    # of it whatever set it before.
    if test.support.use_resources is not None:
        test.support.use_resources = list(test.support.use_resources)
        if "network" not in test.support.use_resources:
            test.support.use_resources.append("network")
    if not test.support.is_resource_enabled("network"):
        die("test.support does not enable the 'network' resource")
    # Like regrtest: the tests' own chatter only with -v.
    test.support.verbose = int(verbosity >= 2)

    try:
        suite = importlib.import_module("test.test_socketserver")
    except unittest.SkipTest as exc:
        die("test.test_socketserver skipped itself at import: %s" % (exc,))

    if suite.socketserver is not fastsock:
        die("substitution failed: test.test_socketserver.socketserver is %r, "
            "not fastsock" % (suite.socketserver,))
    stdlib_dir = os.path.realpath(sysconfig.get_paths()["stdlib"])
    suite_file = os.path.realpath(suite.__file__)
    if os.path.commonpath([stdlib_dir, suite_file]) != stdlib_dir:
        die("%s is not this interpreter's own test_socketserver (stdlib is %s)"
            % (suite_file, stdlib_dir))
    if not isinstance(getattr(suite, "MiscTestCase", None), type):
        die("test.test_socketserver has no MiscTestCase; cannot replace test_all")
    suite.MiscTestCase.test_all = make_test_all(fastsock)

    print("fastsock %s, BACKEND=%s, from %s"
          % (getattr(fastsock, "__version__", "?"), fastsock.BACKEND,
             os.path.dirname(fastsock.__file__)))
    print("Python %s (%s), running %s"
          % (sys.version.split()[0], sys.executable, suite_file))
    sys.stdout.flush()

    # Like regrtest, run in a scratch directory: TESTFN and the AF_UNIX
    # socket names are relative to the current directory.
    old_cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="fastsock-stdlib-") as scratch:
        os.chdir(scratch)
        try:
            program = unittest.main(module=suite, argv=[sys.argv[0]] + argv,
                                    verbosity=verbosity, exit=False)
        finally:
            os.chdir(old_cwd)
    result = program.result
    sys.stderr.flush()

    failed = (len(result.failures) + len(result.errors)
              + len(result.unexpectedSuccesses))
    not_passed = {id(test) for test, _ in
                  result.failures + result.errors + result.skipped
                  + result.expectedFailures}
    not_passed |= {id(test) for test in result.unexpectedSuccesses}
    passed = max(0, result.testsRun - len(not_passed))

    if result.skipped:
        print("UNEXPECTED SKIPS (%d) -- nothing in this suite should skip:"
              % len(result.skipped))
        for test, reason in result.skipped:
            print("  skipped %s: %s" % (test.id(), reason))
    if result.testsRun == 0:
        print("no test was run")
    print(SUMMARY % (passed, failed))
    sys.stdout.flush()
    ok = (result.wasSuccessful() and not result.skipped
          and result.testsRun > 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
