"""Micro-benchmarks of the handler streams (pytest-benchmark).

    pytest bench/test_micro.py --benchmark-group-by=group

``rfile.readline`` / iteration / ``rfile.read`` and ``wfile.write`` for

* ``stdlib``           ``sock.makefile('rb', bufsize)``; ``socketserver._SocketWriter(sock)``
                       (bufsize 0) or ``sock.makefile('wb', bufsize)``
* ``fastsock-python``  ``fastsock._core_py.SocketReader/SocketWriter``
* ``fastsock-cython``  ``fastsock._core.SocketReader/SocketWriter`` (skipped if not built)

Every test is parametrized over the three implementations and carries an
explicit benchmark group, so they sit side by side in the report.  All I/O
is on a real ``AF_UNIX`` socketpair.  A read round first fills the socket
with 64 KiB (untimed ``setup``) and then reads exactly that; a write round
writes 64 KiB while a ``cat`` child process drains the other end (no GIL
shared with the writer).  Each round moves 64 KiB, so per-call cost is the
round time divided by the number of calls in the group name.

This file lives in ``bench/``, outside the ``testpaths`` of the test suite:
it never runs as part of ``pytest``, and it asserts nothing about speed.
"""
import importlib
import socket
import socketserver
import subprocess

import pytest

ROUND_BYTES = 64 * 1024
ROUNDS = 300

IMPLS = ["stdlib", "fastsock-python", "fastsock-cython"]


def _streams(impl):
    """(make_reader(sock, bufsize), make_writer(sock, bufsize)) for *impl*."""
    if impl == "stdlib":
        def reader(sock, bufsize=-1):
            return sock.makefile("rb", bufsize)

        def writer(sock, bufsize=0):
            if bufsize == 0:
                return socketserver._SocketWriter(sock)
            return sock.makefile("wb", bufsize)
        return reader, writer
    modname = {"fastsock-python": "fastsock._core_py",
               "fastsock-cython": "fastsock._core"}[impl]
    try:
        mod = importlib.import_module(modname)
    except ImportError as exc:
        pytest.skip("%s is not importable: %s" % (modname, exc))
    if not hasattr(mod, "SocketReader") or not hasattr(mod, "SocketWriter"):
        pytest.skip("%s has no SocketReader/SocketWriter yet" % modname)
    return mod.SocketReader, mod.SocketWriter


@pytest.fixture(params=IMPLS)
def impl(request):
    return request.param


@pytest.fixture
def pair():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    yield a, b
    a.close()
    b.close()


def _lines(size):
    line = (b"x" * (size - 1)) + b"\n"
    return line * (ROUND_BYTES // size)


def _bench_read(benchmark, impl, pair, size, bufsize, op, timeout=None):
    make_reader, _ = _streams(impl)
    server, client = pair
    server.settimeout(timeout)
    payload = _lines(size)
    count = ROUND_BYTES // size
    rfile = make_reader(server, bufsize)

    def fill():
        client.sendall(payload)

    try:
        if op == "readline":
            def run():
                readline = rfile.readline
                for _ in range(count):
                    readline()
        elif op == "iter":
            def run():
                n = 0
                for _line in rfile:
                    n += 1
                    if n == count:
                        break
        else:                                   # read(size) chunks
            def run():
                read = rfile.read
                for _ in range(count):
                    read(size)
        benchmark.pedantic(run, setup=fill, rounds=ROUNDS, warmup_rounds=5)
        # Correctness of the last round, outside the timing: nothing left over.
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.recv(1)
        server.settimeout(timeout)
    finally:
        rfile.close()


def _bench_write(benchmark, impl, pair, size, bufsize):
    _, make_writer = _streams(impl)
    server, client = pair
    line = _lines(size)[:size]
    count = ROUND_BYTES // size
    drain = subprocess.Popen(["cat"], stdin=client.fileno(), stdout=subprocess.DEVNULL)
    wfile = make_writer(server, bufsize)
    try:
        def run():
            write = wfile.write
            for _ in range(count):
                write(line)
            if bufsize:
                wfile.flush()
        benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=5)
    finally:
        wfile.close()
        server.shutdown(socket.SHUT_WR)        # EOF for cat
        drain.communicate(timeout=30)


# --------------------------------------------------------------- reads

@pytest.mark.benchmark(group="readline 64B lines, rbufsize=-1 (1024 calls/round)")
def test_readline_64(benchmark, impl, pair):
    _bench_read(benchmark, impl, pair, 64, -1, "readline")


@pytest.mark.benchmark(group="readline 1KiB lines, rbufsize=-1 (64 calls/round)")
def test_readline_1k(benchmark, impl, pair):
    _bench_read(benchmark, impl, pair, 1024, -1, "readline")


@pytest.mark.benchmark(group="readline 64B lines, rbufsize=-1, sock.settimeout(5) (1024 calls/round)")
def test_readline_64_timeout(benchmark, impl, pair):
    # A socket with a timeout: every refill computes a deadline (the stdlib
    # polls before each recv; the reader only when the socket was emptied).
    _bench_read(benchmark, impl, pair, 64, -1, "readline", timeout=5.0)


@pytest.mark.benchmark(group="for line in rfile, 64B lines (1024 lines/round)")
def test_iter_64(benchmark, impl, pair):
    _bench_read(benchmark, impl, pair, 64, -1, "iter")


@pytest.mark.benchmark(group="readline 64B lines, rbufsize=0 unbuffered (1024 calls/round)")
def test_readline_64_unbuffered(benchmark, impl, pair):
    _bench_read(benchmark, impl, pair, 64, 0, "readline")


@pytest.mark.benchmark(group="read(64), rbufsize=-1 (1024 calls/round)")
def test_read_64(benchmark, impl, pair):
    _bench_read(benchmark, impl, pair, 64, -1, "read")


@pytest.mark.benchmark(group="read(4096), rbufsize=-1 (16 calls/round)")
def test_read_4k(benchmark, impl, pair):
    _bench_read(benchmark, impl, pair, 4096, -1, "read")


# -------------------------------------------------------------- writes

@pytest.mark.benchmark(group="write 64B, wbufsize=0 (1024 sends/round)")
def test_write_64_unbuffered(benchmark, impl, pair):
    _bench_write(benchmark, impl, pair, 64, 0)


@pytest.mark.benchmark(group="write 64B, wbufsize=64KiB + flush (1024 calls/round)")
def test_write_64_buffered(benchmark, impl, pair):
    _bench_write(benchmark, impl, pair, 64, 65536)


@pytest.mark.benchmark(group="write 4KiB, wbufsize=0 (16 sends/round)")
def test_write_4k_unbuffered(benchmark, impl, pair):
    _bench_write(benchmark, impl, pair, 4096, 0)
