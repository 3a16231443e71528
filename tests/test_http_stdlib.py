"""CPython's own ``test.test_httpservers`` with fastsock's fast http.server
methods (``fastsock._http_fast.FAST_METHODS``) put on the stdlib's
``BaseHTTPRequestHandler``: the interpreter's own tests of request parsing,
header limits, error pages and ``date_time_string`` must all still pass.
And the whole suite again after ``fastsock.install()``: http.server on
fastsock's handlers and servers (its tests also build handlers on mock
sockets, which must be read through their own ``makefile()`` as the stdlib
does).

Run in a child interpreter (unittest, threads and servers of its own); the
child imports fastsock on the backend under test.
"""
import importlib.util
import os
import subprocess
import sys

import pytest

import fastsock

# The child imports the fastsock under test (an installed copy in CI, src/
# with an in-place build in development), not whatever src/ holds.
SRC = os.path.dirname(os.path.dirname(os.path.abspath(fastsock.__file__)))

CHILD = r"""
import sys, unittest
import http.server
import fastsock
from fastsock import _http_fast
assert fastsock.BACKEND == sys.argv[1], fastsock.BACKEND
cls = http.server.BaseHTTPRequestHandler
for name, fast in _http_fast.FAST_METHODS.items():
    setattr(cls, name, fast)
import test.test_httpservers as suite
result = unittest.main(module=suite, argv=["test_httpservers", "-q"], exit=False).result
assert cls.parse_request is _http_fast.parse_request
print("RAN %d FAILED %d ERRORS %d" % (result.testsRun, len(result.failures),
                                      len(result.errors)))
"""

CHILD_INSTALL = r"""
import sys, unittest
import fastsock
assert fastsock.BACKEND == sys.argv[1], fastsock.BACKEND
fastsock.install()
import http.server, socketserver
assert socketserver.StreamRequestHandler is fastsock.StreamRequestHandler
assert issubclass(http.server.BaseHTTPRequestHandler, fastsock.StreamRequestHandler)
import test.test_httpservers as suite
result = unittest.main(module=suite, argv=["test_httpservers", "-q"], exit=False).result
print("RAN %d FAILED %d ERRORS %d" % (result.testsRun, len(result.failures),
                                      len(result.errors)))
"""


@pytest.mark.skipif(importlib.util.find_spec("test.test_httpservers") is None,
                    reason="this Python has no test.test_httpservers")
@pytest.mark.parametrize("child", ["fast-methods", "install"])
def test_cpython_httpservers_suite_passes(backend_name, child):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SRC] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    env.pop("FASTSOCK_PURE", None)
    if backend_name == "python":
        env["FASTSOCK_PURE"] = "1"
    script = CHILD if child == "fast-methods" else CHILD_INSTALL
    proc = subprocess.run([sys.executable, "-c", script, backend_name], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=110)
    last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0 and last.startswith("RAN ") and last.endswith(
        "FAILED 0 ERRORS 0"), proc.stdout[-3000:]
    assert int(last.split()[1]) > 50, last
