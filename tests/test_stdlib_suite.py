"""CPython's own test_socketserver, run against fastsock on every supported Python.

``tests/stdlib_suite.py`` runs the interpreter's ``test.test_socketserver``
with fastsock substituted for socketserver.  Here it runs in a subprocess for
each backend on:

* ``current``: the interpreter running pytest (fastsock as installed in it);
* ``3.10`` ... ``3.13``: a venv per interpreter built by ``tests/multipy.py``
  (marked ``slow``; the first run compiles the extension for each).

A missing interpreter is skipped locally but fails under ``CI=true``.
"""
import os
import re
import subprocess
import sys

import pytest

try:
    import multipy
except ImportError:  # collected with an import mode that does not add tests/
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import multipy

SUITE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "stdlib_suite.py")
SUMMARY = re.compile(r"^stdlib test_socketserver: (\d+) passed, (\d+) failed$", re.M)
MIN_PASSED = 20           # 3.10-3.13 each have 27 tests

SUITE_TIMEOUT = 600       # the suite takes ~20-40 s; a hang is a failure
CURRENT_TIMEOUT = SUITE_TIMEOUT + 60
VENV_TIMEOUT = 2 * multipy.BUILD_TIMEOUT + SUITE_TIMEOUT   # incl. waiting for the build lock

BACKENDS = [pytest.param("cython", marks=pytest.mark.c_extension, id="cython"),
            pytest.param("python", id="python")]


def on_ci():
    return os.environ.get("CI", "").strip().lower() == "true"


def run_suite(python, backend, env=None):
    env = dict(os.environ if env is None else env)
    env["FASTSOCK_EXPECT_BACKEND"] = backend
    if backend == "python":
        env["FASTSOCK_PURE"] = "1"
    else:
        env.pop("FASTSOCK_PURE", None)
    try:
        proc = subprocess.run([python, SUITE], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              text=True, errors="replace", env=env,
                              timeout=SUITE_TIMEOUT, cwd=os.path.dirname(SUITE))
    except subprocess.TimeoutExpired as exc:
        out = exc.output or b""
        if isinstance(out, bytes):
            out = out.decode("utf-8", "replace")
        pytest.fail("stdlib suite (%s, %s) timed out after %ss; output so far:\n%s"
                    % (python, backend, SUITE_TIMEOUT, out), pytrace=False)
    return proc.returncode, proc.stdout


def check(python, backend, env=None):
    code, output = run_suite(python, backend, env)
    found = SUMMARY.findall(output)
    message = ("stdlib test_socketserver with %s, backend %s: exit status %d\n"
               "---- output ----\n%s" % (python, backend, code, output))
    assert found, "no summary line\n" + message
    passed, failed = (int(n) for n in found[-1])
    assert code == 0 and failed == 0, message
    assert passed > MIN_PASSED, "only %d passed\n%s" % (passed, message)


@pytest.mark.timeout(CURRENT_TIMEOUT)
@pytest.mark.parametrize("backend", BACKENDS)
def test_stdlib_suite_current(backend):
    """The suite on the interpreter running pytest, fastsock as installed."""
    check(sys.executable, backend)


@pytest.mark.slow
@pytest.mark.timeout(VENV_TIMEOUT)
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("minor", multipy.MINORS)
def test_stdlib_suite_venv(request, minor, backend):
    """The suite in a fresh venv of each supported Python (built on demand)."""
    if multipy.find_interpreter(minor) is None:
        reason = ("no usable Python %s found (pyenv versions or python%s on PATH, "
                  "with its test suite and venv)" % (minor, minor))
        if on_ci():
            pytest.fail("CI must test every supported Python: " + reason, pytrace=False)
        pytest.skip(reason)
    no_c = request.config.getoption("--no-c-extensions", default=False)
    try:
        python = multipy.ensure_venv(minor, expect_backend=None if no_c else "cython")
    except multipy.BuildError as exc:
        pytest.fail(str(exc), pytrace=False)
    check(python, backend, multipy.clean_env())
