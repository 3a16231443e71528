"""Shared fixtures: every behaviour test runs once per backend.

``core`` is the core module (``fastsock._core`` or ``fastsock._core_py``) and
``ss`` a socketserver-like namespace whose servers and handlers run on that
core, so a test written once against ``ss`` covers both backends in one
session.  The compiled parameter carries the ``c_extension`` mark; run with
``--no-c-extensions`` where nothing was compiled (it is never skipped
silently: without that flag a missing extension is an error).
"""
import gc
import os
import threading
import time
import types

import pytest

import fastsock
from fastsock import _backend

BACKENDS = ("cython", "python")


def pytest_addoption(parser):
    parser.addoption("--no-c-extensions", action="store_true",
                     help="deselect the tests of the compiled backend")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--no-c-extensions"):
        return
    kept, dropped = [], []
    for item in items:
        (dropped if item.get_closest_marker("c_extension") else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def make_namespace(core):
    """The socketserver API with every server and handler bound to *core*."""
    ns = types.SimpleNamespace()
    for name in list(fastsock.__all__) + ["_SocketWriter"]:
        obj = getattr(fastsock, name)
        if isinstance(obj, type) and "_core" in dir(obj) and obj._core is not core:
            obj = type(obj.__name__, (obj,), {
                "_core": core, "__module__": obj.__module__,
                "__qualname__": obj.__qualname__})
        setattr(ns, name, obj)
    ns._SocketWriter = core.SocketWriter
    ns.core = core
    return ns


@pytest.fixture(scope="session",
                params=[pytest.param("cython", marks=pytest.mark.c_extension), "python"])
def backend_name(request):
    return request.param


@pytest.fixture(scope="session")
def core(backend_name):
    return _backend.load(backend_name)


@pytest.fixture(scope="session")
def ss(core):
    return make_namespace(core)


def open_fds():
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail a test that leaves file descriptors or threads behind."""
    fds = open_fds()
    threads = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while True:
        gc.collect()
        # The write-coalescing flusher is one daemon thread per process.
        extra_threads = [t for t in threading.enumerate()
                         if t not in threads and t.is_alive()
                         and t.name != "fastsock-flusher"]
        extra_fds = open_fds() - fds
        if not extra_threads and not extra_fds:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    details = {fd: os.readlink("/proc/self/fd/" + fd)
               for fd in extra_fds if os.path.exists("/proc/self/fd/" + fd)}
    pytest.fail("leaked fds %r, threads %r" % (details, extra_threads))
