"""Limits and deadlines of the socket streams and stream handlers.

``SocketReader(sock, bufsize, *, max_line, line_timeout, idle_timeout)`` and
``StreamRequestHandler.max_line_size`` / ``line_timeout`` / ``idle_timeout``:
a client cannot make a handler buffer an endless line, hold a read open by
trickling bytes (slowloris), or keep an idle connection forever -- and with
the defaults nothing changes.  Every test runs on both backends, over real
loopback sockets.  Time bounds here are functional ("raised within 5 s"),
never performance assertions.
"""
import contextlib
import http.server
import inspect
import logging
import signal
import socket
import sys
import threading
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import fastsock
from helpers import HOST, serving
from test_streams import (OPS, PAYLOADS, apply_op, assert_same_result, feed, make_pair,
                          outcome)

BUFSIZES = [-1, 0, 1, 7, 8192]
MiB = 1 << 20


@pytest.fixture(params=["unix", "tcp"])
def pair(request):
    """(reading side, writing side), closed after the test."""
    a, b = make_pair(request.param)
    yield a, b
    a.close()
    b.close()


@contextlib.contextmanager
def reader_on(core, sock, *args, **kwargs):
    reader = core.SocketReader(sock, *args, **kwargs)
    try:
        yield reader
    finally:
        reader.close()


@contextlib.contextmanager
def background(target, *args):
    """Run target(stop, *args) in a thread; stop and join it on exit."""
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop,) + args)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join(10)
        assert not thread.is_alive()


def trickle(stop, sock, data, interval):
    """Send data one byte every interval seconds (slowloris)."""
    for i in range(len(data)):
        if stop.wait(interval):
            return
        try:
            sock.sendall(data[i:i + 1])
        except OSError:
            return


def flood(stop, sock, total, sent, chunk=b"x" * (256 * 1024)):
    """Send total bytes without a newline; count them in sent[0]."""
    try:
        while sent[0] < total and not stop.is_set():
            sock.sendall(chunk)
            sent[0] += len(chunk)
    except OSError:
        pass        # the reading side gave up on us: what we want


def timed(func, *args):
    start = time.monotonic()
    try:
        result = ("ok", func(*args))
    except Exception as exc:
        result = ("raised", type(exc), str(exc))
    return result, time.monotonic() - start


# -- the reader's signature and arguments ------------------------------------

def test_signature_and_properties(core):
    sig = inspect.signature(core.SocketReader)
    assert str(sig) == ("(sock, bufsize=-1, *, max_line=None, line_timeout=None, "
                        "idle_timeout=None)")
    a, b = socket.socketpair()
    with a, b:
        with reader_on(core, a) as reader:
            assert (reader.max_line, reader.line_timeout, reader.idle_timeout) == (None,) * 3
        with reader_on(core, a, 0, max_line=80, line_timeout=2, idle_timeout=0.5) as reader:
            assert (reader.max_line, reader.line_timeout, reader.idle_timeout) == (80, 2.0, 0.5)
            assert type(reader.line_timeout) is float
        with pytest.raises(TypeError):
            core.SocketReader(a, -1, 100)       # the limits are keyword-only


@pytest.mark.parametrize("kwargs, exc, message", [
    ({"max_line": 0}, ValueError, "max_line must be a positive integer or None"),
    ({"max_line": -1}, ValueError, "max_line must be a positive integer or None"),
    ({"max_line": 1.5}, TypeError, None),
    ({"max_line": "80"}, TypeError, None),
    ({"line_timeout": 0}, ValueError, "line_timeout must be a positive number or None"),
    ({"line_timeout": -1.0}, ValueError, "line_timeout must be a positive number or None"),
    ({"line_timeout": float("nan")}, ValueError,
     "line_timeout must be a positive number or None"),
    ({"idle_timeout": 0.0}, ValueError, "idle_timeout must be a positive number or None"),
    ({"idle_timeout": "1"}, TypeError, None),
])
def test_argument_errors(core, kwargs, exc, message):
    a, b = socket.socketpair()
    with a, b:
        with pytest.raises(exc) as info:
            core.SocketReader(a, **kwargs)
        if message:
            assert str(info.value) == message
        assert a._io_refs == 0          # nothing held after a failed construction


def test_line_too_long_is_exported():
    assert fastsock.LineTooLong is fastsock._errors.LineTooLong
    assert issubclass(fastsock.LineTooLong, ValueError)
    assert "LineTooLong" in fastsock.EXTRAS and "LineTooLong" not in fastsock.__all__


# -- max_line ------------------------------------------------------------------

@pytest.mark.parametrize("bufsize", BUFSIZES)
def test_max_line_boundaries(core, pair, bufsize):
    """A line may be max_line bytes long, newline included; one more byte
    without a newline is LineTooLong, which consumes max_line bytes."""
    a, b = pair
    m = 10
    b.sendall(b"123456789\n"            # exactly m bytes: fine
              b"1234567890\n"           # m + 1: too long (the newline is byte m + 1)
              b"short\n"
              b"1234567890")            # m bytes at EOF, no newline: fine
    b.shutdown(socket.SHUT_WR)
    with reader_on(core, a, bufsize, max_line=m) as reader:
        assert reader.readline() == b"123456789\n"
        with pytest.raises(fastsock.LineTooLong, match="line longer than 10 bytes"):
            reader.readline()
        assert reader.readline() == b"\n"       # the rest of the long line
        assert reader.readline() == b"short\n"
        assert reader.readline() == b"1234567890"
        assert reader.readline() == b""


@pytest.mark.parametrize("bufsize", BUFSIZES)
def test_max_line_at_eof(core, pair, bufsize):
    a, b = pair
    b.sendall(b"x" * 11)
    b.shutdown(socket.SHUT_WR)
    with reader_on(core, a, bufsize, max_line=10) as reader:
        with pytest.raises(fastsock.LineTooLong):
            reader.readline()
        assert reader.read() == b"x"


@pytest.mark.parametrize("bufsize", BUFSIZES)
def test_explicit_limit(core, pair, bufsize):
    """readline(limit <= max_line) is unchanged; a larger limit is capped."""
    a, b = pair
    b.sendall(b"abcdefghijklmnop\n" * 3)
    b.shutdown(socket.SHUT_WR)
    with reader_on(core, a, bufsize, max_line=8) as reader:
        assert reader.readline(5) == b"abcde"
        assert reader.readline(8) == b"fghijklm"
        assert reader.readline(0) == b""
        assert reader.readline(9) == b"nop\n"          # capped to 8, fits
        with pytest.raises(fastsock.LineTooLong):
            reader.readline(9)                          # 17 bytes: consumes 8
        with pytest.raises(fastsock.LineTooLong):
            reader.readline(65537)                      # what http.server asks
        assert reader.readline() == b"\n"
        with pytest.raises(fastsock.LineTooLong):
            reader.readline(None)


@pytest.mark.parametrize("bufsize", [-1, 0, 7])
def test_iteration_and_readlines_are_capped(core, pair, bufsize):
    a, b = pair
    b.sendall(b"ok\n" + b"y" * 50 + b"\nok\n")
    b.shutdown(socket.SHUT_WR)
    with reader_on(core, a, bufsize, max_line=20) as reader:
        assert next(reader) == b"ok\n"
        with pytest.raises(fastsock.LineTooLong):
            next(reader)                # consumes 20 of the 50 y's
        with pytest.raises(fastsock.LineTooLong):
            reader.readlines()          # 20 more
        assert list(reader) == [b"y" * 10 + b"\n", b"ok\n"]


def test_other_reads_ignore_max_line(core, pair):
    a, b = pair
    b.sendall(b"z" * 100 + b"\n")
    b.shutdown(socket.SHUT_WR)
    with reader_on(core, a, 16, max_line=10) as reader:
        assert reader.peek(1)[:1] == b"z"
        assert reader.read(50) == b"z" * 50
        assert reader.read1(5) == b"z" * 5
        buf = bytearray(20)
        assert reader.readinto(buf) == 20
        assert reader.read() == b"z" * 25 + b"\n"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bufsize", [-1, 0, 8192])
def test_endless_line_raises_early_and_memory_stays_bounded(core, pair, bufsize):
    """A client streaming a line with no newline: LineTooLong long before it
    is done, and the reader never holds more than about max_line bytes."""
    a, b = pair
    m = 64 * 1024
    total = 64 * MiB
    sent = [0]
    reader = core.SocketReader(a, bufsize, max_line=m)
    tracemalloc.start()
    try:
        with background(flood, b, total, sent):
            result, elapsed = timed(reader.readline)
            _, peak = tracemalloc.get_traced_memory()
            # Closing with unread input resets the connection: the flood stops.
            reader.close()
            a.close()
    finally:
        tracemalloc.stop()
    assert result[:2] == ("raised", fastsock.LineTooLong)
    assert elapsed < 5
    assert sent[0] < total
    assert peak < 4 * m + 256 * 1024, peak      # the line's bytes, a buffer, a chunk


# -- line_timeout ----------------------------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("bufsize, op, deadline", [
    (-1, "readline", 1.0), (0, "readline", 1.0),
    (-1, "read", 0.5), (7, "read", 0.5), (-1, "readinto", 0.5)])
def test_slowloris_trickle_times_out(core, pair, bufsize, op, deadline):
    """One byte every 0.2 s, each well within the socket's timeout: the call
    still ends after line_timeout in all.  (Unbuffered, read(n) returns what
    one recv gives, so only readline can be held open.)"""
    a, b = pair
    a.settimeout(0.5)
    with reader_on(core, a, bufsize, line_timeout=deadline) as reader:
        with background(trickle, b, b"x" * 100, 0.2):
            if op == "readline":
                result, elapsed = timed(reader.readline)
            elif op == "read":
                result, elapsed = timed(reader.read, 100)
            else:
                result, elapsed = timed(reader.readinto, bytearray(100))
        assert result == ("raised", TimeoutError, "timed out")
        assert deadline - 0.05 <= elapsed < 5
        # Like socket.SocketIO after a timeout: no further reads.
        with pytest.raises(OSError, match="cannot read from timed out object"):
            reader.read(1)
    assert a.gettimeout() == 0.5


@pytest.mark.timeout(30)
def test_line_timeout_is_per_call(core, pair):
    """Calls that each finish in time are fine, however long they take in all."""
    a, b = pair

    def lines(stop):
        for _ in range(6):
            if stop.wait(0.1):
                return
            b.sendall(b"line\n")

    with reader_on(core, a, line_timeout=0.5) as reader:
        with background(lines):
            start = time.monotonic()
            assert [reader.readline() for _ in range(6)] == [b"line\n"] * 6
            assert time.monotonic() - start >= 0.5


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sock_timeout, line_timeout, expected", [
    (0.3, 5.0, 0.3),        # the socket's own timeout comes first
    (5.0, 0.3, 0.3),        # the call's deadline comes first
    (None, 0.3, 0.3),       # a blocking socket gets the deadline too
])
def test_deadline_composes_with_socket_timeout(core, pair, sock_timeout, line_timeout,
                                               expected):
    a, b = pair
    a.settimeout(sock_timeout)
    with reader_on(core, a, line_timeout=line_timeout) as reader:
        result, elapsed = timed(reader.readline)
    assert result == ("raised", TimeoutError, "timed out")
    assert expected - 0.05 <= elapsed < expected + 3
    assert a.gettimeout() == sock_timeout


def test_buffered_data_is_served_without_waiting(core, pair):
    a, b = pair
    b.sendall(b"one\ntwo\n")
    with reader_on(core, a, line_timeout=0.2, idle_timeout=0.2) as reader:
        assert reader.readline() == b"one\n"
        time.sleep(0.3)
        assert reader.readline() == b"two\n"    # in the buffer: no deadline


def test_nonblocking_socket_is_unchanged(core, pair):
    a, b = pair
    a.setblocking(False)
    with reader_on(core, a, 0, line_timeout=0.2, idle_timeout=0.2) as reader:
        assert reader.read(10) is None
    with reader_on(core, a, -1, line_timeout=0.2, idle_timeout=0.2,
                   max_line=100) as reader:
        assert reader.read(10) is None
        b.sendall(b"abc")
        time.sleep(0.05)
        assert reader.readline() == b"abc"      # what there is, as always
        b.sendall(b"def\n")
        time.sleep(0.05)
        assert reader.readline() == b"def\n"


def signal_main_thread(stop, signum, interval):
    main = threading.main_thread().ident
    while not stop.wait(interval):
        signal.pthread_kill(main, signum)


@pytest.mark.timeout(30)
def test_deadline_survives_signals(core, pair):
    """EINTR (a signal every 50 ms) runs the handler and resumes the wait,
    without restarting the deadline."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    a, b = pair
    count = [0]
    old = signal.signal(signal.SIGUSR1, lambda *args: count.__setitem__(0, count[0] + 1))
    try:
        with reader_on(core, a, line_timeout=0.6) as reader:
            with background(signal_main_thread, signal.SIGUSR1, 0.05):
                result, elapsed = timed(reader.readline)
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert result == ("raised", TimeoutError, "timed out")
    assert 0.55 <= elapsed < 3
    assert count[0] >= 5


# -- idle_timeout ------------------------------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("bufsize", [-1, 0])
def test_idle_timeout_between_requests(core, pair, bufsize):
    a, b = pair
    with reader_on(core, a, bufsize, idle_timeout=0.4) as reader:
        b.sendall(b"GET / HTTP/1.1\n")
        assert reader.readline() == b"GET / HTTP/1.1\n"
        result, elapsed = timed(reader.readline)
    assert result == ("raised", TimeoutError, "timed out")
    assert 0.35 <= elapsed < 3


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bufsize", [-1, 0])
def test_idle_timeout_only_bounds_the_first_byte(core, pair, bufsize):
    """Once a request has started, only line_timeout (here: none) limits it."""
    a, b = pair
    with reader_on(core, a, bufsize, idle_timeout=0.3) as reader:
        with background(trickle, b, b"slow going\n", 0.06):
            result, elapsed = timed(reader.readline)
    assert result == ("ok", b"slow going\n")
    assert elapsed > 0.3


# -- TLS: the reader drives an ssl.SSLSocket through its own methods -------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("bufsize", [-1, 0])
def test_deadlines_on_tls(core, contexts, bufsize):
    server_ctx, client_ctx = contexts
    with socket.create_server((HOST, 0)) as listener:
        raw = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
    done = threading.Event()
    client_box = []

    def handshake():
        client_box.append(client_ctx.wrap_socket(raw, server_hostname=HOST))
        done.set()

    thread = threading.Thread(target=handshake)
    thread.start()
    tls = server_ctx.wrap_socket(conn, server_side=True)
    thread.join(10)
    client = client_box[0]
    try:
        with reader_on(core, tls, bufsize, line_timeout=0.8, max_line=100) as reader:
            client.sendall(b"hello\n" + b"w" * 150 + b"\n")
            assert reader.readline() == b"hello\n"
            with pytest.raises(fastsock.LineTooLong):
                reader.readline()
            # The rest of it (unbuffered, TLS cannot peek: one byte more went).
            assert reader.readline() == b"w" * (49 if bufsize == 0 else 50) + b"\n"
            with background(trickle, client, b"x" * 100, 0.2):
                result, elapsed = timed(reader.readline)
            assert result[:2] == ("raised", TimeoutError)
            assert 0.75 <= elapsed < 5
        assert tls.gettimeout() is None     # restored after each recv
    finally:
        client.close()
        tls.close()


# -- differential: the reader against sock.makefile('rb') ------------------------

def capped_reference(ref, raw, op, arg, m):
    """What a reader with max_line=m must do, built on makefile('rb'): a
    readline that may return more than m bytes instead reads m of them and,
    if at least one more byte follows, raises LineTooLong."""
    def readline(limit=-1):
        limit = -1 if limit is None else limit
        if 0 <= limit <= m:
            return ref.readline(limit)
        line = ref.readline(m)
        if len(line) == m and not line.endswith(b"\n"):
            more = (raw.recv(1, socket.MSG_PEEK) if raw is not None else ref.peek(1))
            if more:
                raise fastsock.LineTooLong("line longer than %d bytes (max_line)" % m)
        return line

    def lines(hint=-1):
        # io's readlines(): stop once the lines add up to more than hint.
        result, total = [], 0
        while True:
            line = readline()
            if not line:
                return result
            result.append(line)
            if hint > 0 and len(line) > hint - total:
                return result
            total += len(line)

    if op == "readline":
        return readline(arg)
    if op == "next":
        return readline() or "StopIteration"
    if op == "readlines":
        return lines(arg)
    return apply_op(ref, op, arg, raw)


@pytest.mark.parametrize("bufsize", BUFSIZES)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payload=PAYLOADS, ops=st.lists(OPS, max_size=20), m=st.integers(1, 60000))
def test_reader_with_limits_matches_makefile(core, bufsize, payload, ops, m):
    """max_line: exactly the capped reference above (so with max_line above
    the longest line, exactly makefile()); deadlines that never expire
    change nothing."""
    ours_r, ours_w = socket.socketpair()
    ref_r, ref_w = socket.socketpair()
    ours = core.SocketReader(ours_r, bufsize, max_line=m, line_timeout=60, idle_timeout=60)
    ref = ref_r.makefile("rb", bufsize)
    try:
        feed(ours_w, payload)
        feed(ref_w, payload)
        raw = ref_r if bufsize == 0 else None
        for op, arg in ops + [("readline", -1), ("read", -1)]:
            got = outcome(apply_op, ours, op, arg)
            want = outcome(capped_reference, ref, raw, op, arg, m)
            assert_same_result(op, arg, bufsize, got, want, ours, ref, raw)
    finally:
        for obj in (ours, ref, ours_r, ours_w, ref_r, ref_w):
            obj.close()


@pytest.mark.parametrize("kind", ["unix", "tcp"])
@pytest.mark.parametrize("bufsize", BUFSIZES)
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(lines=st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"") + b"\n"),
                      max_size=30),
       chunks=st.lists(st.integers(1, 500), max_size=30))
def test_high_max_line_is_makefile_while_data_arrives(core, kind, bufsize, lines, chunks):
    """Lines arriving in random pieces, with pauses: every line fits, so the
    limits change nothing."""
    a, b = make_pair(kind)
    payload = b"".join(lines)
    ref_a, ref_b = socket.socketpair()
    ours = core.SocketReader(a, bufsize, max_line=301, line_timeout=30, idle_timeout=30)
    ref = ref_a.makefile("rb", bufsize)
    thread = threading.Thread(target=feed, args=(b, payload, chunks, [1] * len(chunks)))
    thread.start()
    try:
        feed(ref_b, payload)
        got = list(ours)
        assert got == list(ref) == lines
    finally:
        thread.join(10)
        for obj in (ours, ref, a, b, ref_a, ref_b):
            obj.close()


# -- stream handlers and servers ---------------------------------------------------

def recording_server(ss, base, handler, **attrs):
    """A server of class *base* whose handle_error records the exception."""
    server = type("Recording", (base,), {
        "errors": None,
        "handle_error": lambda self, request, address: self.errors.append(
            sys.exc_info()[1]),
        **attrs,
    })((HOST, 0), handler)
    server.errors = []
    return server


def line_echo(ss, **limits):
    class Echo(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(b"%d\n" % len(line))
    for name, value in limits.items():
        setattr(Echo, name, value)
    return Echo


def test_handler_defaults_unchanged(ss):
    assert ss.StreamRequestHandler.max_line_size is None
    assert ss.StreamRequestHandler.line_timeout is None
    assert ss.StreamRequestHandler.idle_timeout is None
    seen = []

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            r = self.rfile
            seen.append((r.max_line, r.line_timeout, r.idle_timeout))
            self.wfile.write(b"%d\n" % len(r.readline()))

    with serving(ss.ThreadingTCPServer((HOST, 0), Handler)) as server:
        with socket.create_connection(server.server_address, timeout=30) as client:
            client.sendall(b"a" * MiB + b"\n")      # a 1 MiB line: fine by default
            assert client.makefile("rb").readline() == b"%d\n" % (MiB + 1)
    assert seen == [(None, None, None)]


def test_handler_passes_limits_to_rfile(ss):
    seen = []

    class Handler(ss.StreamRequestHandler):
        max_line_size = 4096
        line_timeout = 7
        idle_timeout = 3.5

        def handle(self):
            r = self.rfile
            seen.append((r.max_line, r.line_timeout, r.idle_timeout))

    with serving(ss.TCPServer((HOST, 0), Handler)) as server:
        socket.create_connection(server.server_address).close()
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
    assert seen == [(4096, 7.0, 3.5)]


@pytest.mark.timeout(60)
def test_handler_gets_line_too_long_before_client_is_done(ss):
    handler = line_echo(ss, max_line_size=8192)
    total = 64 * MiB
    with serving(recording_server(ss, ss.ThreadingTCPServer, handler)) as server:
        with socket.create_connection(server.server_address, timeout=30) as client:
            client.sendall(b"fine\n")
            assert client.makefile("rb").readline() == b"5\n"
            sent = [0]
            start = time.monotonic()
            flood(threading.Event(), client, total, sent)
            elapsed = time.monotonic() - start
        deadline = time.monotonic() + 5
        while not server.errors and time.monotonic() < deadline:
            time.sleep(0.01)
    assert [type(e) for e in server.errors] == [fastsock.LineTooLong]
    assert sent[0] < total          # the server gave up on the client first
    assert elapsed < 5


@pytest.mark.timeout(60)
def test_slowloris_does_not_hold_up_correct_clients(ss):
    handler = line_echo(ss, line_timeout=1, idle_timeout=2)
    with serving(recording_server(ss, ss.ThreadingTCPServer, handler)) as server:
        address = server.server_address
        slow = socket.create_connection(address, timeout=30)
        with slow, background(trickle, slow, b"x" * 1000, 0.2):
            start = time.monotonic()
            # Correct clients are served meanwhile, at once.
            for i in range(20):
                with socket.create_connection(address, timeout=10) as client:
                    client.sendall(b"hello %d\n" % i)
                    assert client.makefile("rb").readline() == b"%d\n" % len(b"hello %d\n" % i)
            # The slow client is dropped once its line_timeout runs out.
            slow.settimeout(10)
            with contextlib.suppress(ConnectionResetError):
                assert slow.recv(100) == b""
            dropped = time.monotonic() - start
    assert [type(e) for e in server.errors] == [TimeoutError]
    assert 0.8 <= dropped < 5


@pytest.mark.timeout(60)
def test_idle_keep_alive_connection_is_closed(ss):
    handler = line_echo(ss, idle_timeout=0.5)
    with serving(recording_server(ss, ss.ThreadingTCPServer, handler)) as server:
        with socket.create_connection(server.server_address, timeout=10) as client:
            reply = client.makefile("rb")
            for _ in range(3):                  # short pauses are fine
                client.sendall(b"ping\n")
                assert reply.readline() == b"5\n"
                time.sleep(0.2)
            start = time.monotonic()
            assert reply.readline() == b""      # then the server hangs up
            idle = time.monotonic() - start
            reply.close()
    assert [type(e) for e in server.errors] == [TimeoutError]
    assert 0.2 <= idle < 5


@pytest.mark.timeout(60)
def test_thread_pool_counts_limits_as_routine(ss, core, caplog):
    handler = line_echo(ss, max_line_size=100, idle_timeout=0.3)
    pool = type("ThreadPoolTCPServer", (fastsock.ThreadPoolTCPServer,), {"_core": core})
    server = pool((HOST, 0), handler)
    with caplog.at_level(logging.DEBUG, logger="fastsock"), serving(server):
        with socket.create_connection(server.server_address, timeout=10) as client:
            client.sendall(b"y" * 500 + b"\n")
            with contextlib.suppress(ConnectionResetError):
                assert client.recv(100) == b""
        with socket.create_connection(server.server_address, timeout=10) as client:
            with contextlib.suppress(ConnectionResetError):
                assert client.recv(100) == b""   # idle: dropped
        deadline = time.monotonic() + 5
        while (len([r for r in caplog.records if "disconnected" in r.getMessage()]) < 2
               and time.monotonic() < deadline):
            time.sleep(0.01)
    quiet = [r for r in caplog.records if "disconnected" in r.getMessage()]
    assert len(quiet) == 2 and all(r.levelno == logging.DEBUG for r in quiet)
    assert "LineTooLong" in quiet[0].getMessage() or "LineTooLong" in quiet[1].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.timeout(60)
def test_http_server_handler_with_limits(ss, core):
    """An http.server handler on fastsock's streams: a client idle past
    idle_timeout is a "Request timed out" (http.server's own handling of a
    socket timeout), and normal requests are unaffected."""
    log = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        idle_timeout = 0.5
        max_line_size = 1024

        def do_GET(self):
            body = b"hi"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args):
            log.append(fmt % args)

    # The stdlib handler on this backend's streams, as fastsock.http does it.
    fast = type("Handler", (Handler,), {"_core": core,
                                        "setup": ss.StreamRequestHandler.setup,
                                        "finish": ss.StreamRequestHandler.finish})
    with serving(recording_server(ss, ss.ThreadingTCPServer, fast)) as server:
        with socket.create_connection(server.server_address, timeout=10) as client:
            reply = client.makefile("rb")
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert reply.readline() == b"HTTP/1.1 200 OK\r\n"
            while reply.readline() != b"\r\n":
                pass
            assert reply.read(2) == b"hi"
            assert reply.readline() == b""      # idle: closed by the server
            reply.close()
        with socket.create_connection(server.server_address, timeout=10) as client:
            client.sendall(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert client.recv(100) == b""
        deadline = time.monotonic() + 5
        while not server.errors and time.monotonic() < deadline:
            time.sleep(0.01)
    assert any("Request timed out" in line for line in log)
    assert [type(e) for e in server.errors] == [fastsock.LineTooLong]
