"""The backend chooser: what is loaded, and that it says so."""
import os
import subprocess
import sys

import pytest

import fastsock
from fastsock import _backend


def run_python(code, **env):
    full_env = dict(os.environ)
    full_env.pop("FASTSOCK_PURE", None)
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, timeout=60,
                          capture_output=True, text=True, check=True).stdout.split()


REPORT = ("import fastsock, fastsock._backend as b; "
          "print(fastsock.BACKEND, fastsock.TCPServer._core.__name__, "
          "fastsock.StreamRequestHandler._core.__name__, b.IMPORT_ERROR is None)")


@pytest.mark.c_extension
def test_compiled_core_is_loaded():
    # Under CI the extension must have been built: a silent fallback to the
    # pure twin would leave the compiled code untested.
    if _backend.pure_requested() and os.environ.get("CI") != "true":
        pytest.skip("FASTSOCK_PURE is set in this environment")
    assert fastsock.BACKEND == "cython", _backend.REASON
    assert _backend.IMPORT_ERROR is None
    assert fastsock.TCPServer._core.__name__ == "fastsock._core"


@pytest.mark.c_extension
@pytest.mark.parametrize("value", ["", "0", "no", "false", "off"])
def test_pure_not_requested(value):
    assert run_python(REPORT, FASTSOCK_PURE=value) == [
        "cython", "fastsock._core", "fastsock._core", "True"]


@pytest.mark.parametrize("value", ["1", "yes", "true", "ON"])
def test_pure_requested(value):
    assert run_python(REPORT, FASTSOCK_PURE=value) == [
        "python", "fastsock._core_py", "fastsock._core_py", "True"]


def test_missing_extension_falls_back_and_keeps_error():
    code = ("import sys; sys.modules['fastsock._core'] = None; " + REPORT +
            "; print(isinstance(b.IMPORT_ERROR, ImportError), b.REASON is not None)")
    assert run_python(code) == [
        "python", "fastsock._core_py", "fastsock._core_py", "False", "True", "True"]


def test_load_rejects_unknown_backend():
    with pytest.raises(ValueError):
        _backend.load("rust")
