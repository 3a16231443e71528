"""The socket streams, ``core.SocketReader`` and ``core.SocketWriter``.

The reader must give the same results as ``sock.makefile('rb', bufsize)`` for
every input and every way it arrives; the writer must behave as the stdlib's
``socketserver._SocketWriter`` (bufsize 0) or ``sock.makefile('wb',
bufsize)``.  Most tests run the same scenario on ours and on the stdlib's and
compare everything observable; the hypothesis tests do so on random byte
streams, random chunkings and random sequences of read operations.
"""
import array
import contextlib
import errno
import gc
import hashlib
import io
import os
import signal
import socket
import socketserver
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

BUFSIZES = [-1, 0, 1, 7, 8192]
DEFAULT = io.DEFAULT_BUFFER_SIZE


# -- sockets -----------------------------------------------------------------

def tcp_pair():
    """A connected loopback TCP pair: (accepted side, connecting side)."""
    with socket.create_server(("127.0.0.1", 0)) as srv:
        client = socket.create_connection(srv.getsockname())
        server, _ = srv.accept()
    return server, client


def make_pair(kind):
    return socket.socketpair() if kind == "unix" else tcp_pair()


class SubSocket(socket.socket):
    """A socket.socket subclass: the streams must use its Python methods."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = 0

    def recv_into(self, *args):
        self.calls += 1
        return super().recv_into(*args)

    def send(self, *args):
        self.calls += 1
        return super().send(*args)

    def sendall(self, *args):
        self.calls += 1
        return super().sendall(*args)


def as_subclass(sock):
    return SubSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())


@pytest.fixture(params=["unix", "tcp"])
def pair(request):
    """(reading side, writing side), closed after the test."""
    a, b = make_pair(request.param)
    yield a, b
    a.close()
    b.close()


def drain(sock):
    """Everything the socket holds now, without waiting."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def outcome(func, *args):
    """The result of func(*args), or the type and text of what it raised."""
    try:
        return ("ok", func(*args))
    except Exception as exc:
        return ("raised", type(exc), str(exc))


def assert_same_result(op, arg, bufsize, got, want, ours, ref, raw=None):
    """got (ours) must equal want (makefile's), except for one allowed
    difference: a reader whose buffer size was left to it (bufsize -1) grows
    its buffer under bulk input (up to 64 KiB; makefile keeps 8 KiB), so how
    much peek(), read1() and readinto1() return at once -- the buffered
    bytes -- may differ, as the io contract allows.  Then the shorter result
    must be a non-empty prefix of the longer, and after read1/readinto1 the
    reader that got less reads the rest, which must be the same bytes."""
    if got == want:
        return
    if (bufsize != -1 or op not in ("peek", "read1", "readinto1")
            or got[0] != "ok" or want[0] != "ok"):
        assert got == want, (op, arg)
    g = got[1][1] if op == "readinto1" else got[1]
    w = want[1][1] if op == "readinto1" else want[1]
    assert g and w and (g.startswith(w) or w.startswith(g)), (op, arg, got, want)
    if op != "peek" and len(g) != len(w):
        behind, extra = (ref, g[len(w):]) if len(g) > len(w) else (ours, w[len(g):])
        assert outcome(apply_op, behind, "read", len(extra), raw) == ("ok", extra), (op, arg)


# -- read operations, applied alike to ours and to the stdlib's ----------------

def apply_op(reader, op, arg, raw_sock=None):
    """Apply one read operation; raw_sock is given for the stdlib's unbuffered
    file (a bare SocketIO, which has no read1/readinto1/peek: the nearest
    equivalents are used)."""
    if op == "read":
        if raw_sock is not None and arg is None:
            arg = -1        # a raw SocketIO refuses None; ours takes it as -1
        return reader.read(arg)
    if op == "read1":
        if raw_sock is not None:
            return reader.read(arg if arg >= 0 else DEFAULT)
        return reader.read1(arg)
    if op in ("readinto", "readinto1"):
        buf = bytearray(arg)
        if op == "readinto1" and raw_sock is None:
            n = reader.readinto1(buf)
        else:
            n = reader.readinto(buf)
        return n, bytes(buf[:n or 0])
    if op == "readline":
        return reader.readline(arg)
    if op == "peek":
        if raw_sock is not None:
            return raw_sock.recv(arg if arg > 0 else DEFAULT, socket.MSG_PEEK)
        return reader.peek(arg)
    if op == "next":
        return next(reader, "StopIteration")
    if op == "readlines":
        return reader.readlines(arg)
    raise AssertionError(op)


SIZES = st.integers(0, 40) | st.integers(0, 20000)
OPS = st.one_of(
    st.tuples(st.just("read"), SIZES | st.sampled_from([-1, None])),
    st.tuples(st.just("read1"), SIZES | st.just(-1)),
    st.tuples(st.just("readinto"), SIZES),
    st.tuples(st.just("readinto1"), SIZES),
    st.tuples(st.just("readline"), st.integers(-1, 40) | st.integers(0, 20000)
              | st.just(None)),
    st.tuples(st.just("readline"), st.just(-1)),
    st.tuples(st.just("peek"), st.integers(0, 20)),
    st.tuples(st.just("next"), st.none()),
    st.tuples(st.just("readlines"), st.integers(-1, 60)),
)
SEGMENTS = st.one_of(
    st.binary(max_size=24),
    st.just(b"\n"),
    st.builds(lambda n, unit: unit * n, st.integers(1, 7000),
              st.sampled_from([b"a", b"ab\n", b"\n"])),
)
PAYLOADS = st.lists(SEGMENTS, max_size=10).map(lambda parts: b"".join(parts)[:50000])


def feed(sock, payload, chunks=(), pauses=()):
    """Send payload in the given chunk sizes (pausing where asked), the rest in
    one piece, then shut the write side down."""
    pos = 0
    try:
        for i, size in enumerate(chunks):
            sock.sendall(payload[pos:pos + size])
            pos += size
            if i < len(pauses) and pauses[i]:
                time.sleep(0.001)
        sock.sendall(payload[pos:])
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass            # the test failed and closed the reading side


@pytest.mark.parametrize("subclass", [False, True], ids=["socket", "subclass"])
@pytest.mark.parametrize("bufsize", BUFSIZES)
@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payload=PAYLOADS, ops=st.lists(OPS, max_size=20))
def test_reader_matches_makefile_exactly(core, bufsize, subclass, payload, ops):
    """The whole stream is queued before reading: every result, including what
    read1/peek return (which depends on the buffer's state), must be equal."""
    ours_r, ours_w = socket.socketpair()
    ref_r, ref_w = socket.socketpair()
    if subclass:
        ours_r = as_subclass(ours_r)
    ours = core.SocketReader(ours_r, bufsize)
    ref = ref_r.makefile("rb", bufsize)
    try:
        feed(ours_w, payload)
        feed(ref_w, payload)
        raw = ref_r if bufsize == 0 else None
        for op, arg in ops + [("read", -1), ("read", 1), ("readline", -1)]:
            got = outcome(apply_op, ours, op, arg)
            want = outcome(apply_op, ref, op, arg, raw)
            assert_same_result(op, arg, bufsize, got, want, ours, ref, raw)
        if subclass:
            assert ours_r.calls > 0 or not payload
    finally:
        for obj in (ours, ref, ours_r, ours_w, ref_r, ref_w):
            obj.close()


class StreamModel:
    """What each read operation may return, given the whole byte stream: the
    exact result where it does not depend on how the bytes arrive, bounds
    where it does (read1, peek, readinto1, and every single raw read of an
    unbuffered file)."""

    def __init__(self, data, bufsize):
        self.data = data
        self.pos = 0
        self.bufsize = DEFAULT if bufsize < 0 else bufsize

    def line(self, limit=-1):
        end = self.data.find(b"\n", self.pos)
        end = len(self.data) if end < 0 else end + 1
        if limit is not None and limit >= 0:
            end = min(end, self.pos + limit)
        line = self.data[self.pos:end]
        self.pos = end
        return line

    def partial(self, result, most, what):
        rest = self.data[self.pos:]
        assert rest.startswith(result), what
        assert len(result) <= most, what
        if most and rest:
            assert result, what     # blocking: at least one byte unless at EOF
        return len(result)

    def check(self, op, arg, result):
        unbuffered = self.bufsize == 0
        if op == "read":
            if arg is None or arg < 0:
                assert result == self.data[self.pos:]
                self.pos = len(self.data)
            elif unbuffered:
                self.pos += self.partial(result, arg, op)
            else:
                assert result == self.data[self.pos:self.pos + arg]
                self.pos += len(result)
        elif op == "read1":
            most = arg if arg >= 0 else (self.bufsize or DEFAULT)
            self.pos += self.partial(result, most, op)
        elif op in ("readinto", "readinto1"):
            n, data = result
            assert n == len(data)
            if op == "readinto" and not unbuffered:
                assert data == self.data[self.pos:self.pos + arg]
                self.pos += n
            else:
                self.pos += self.partial(data, arg, op)
        elif op == "readline":
            assert result == self.line(arg)
        elif op == "peek":
            most = (arg if arg > 0 else DEFAULT) if unbuffered else self.bufsize
            self.partial(result, most, op)
        elif op == "next":
            line = self.line()
            assert result == (line or "StopIteration")
        elif op == "readlines":
            lines, total = [], 0
            while True:
                line = self.line()
                if not line:
                    break
                lines.append(line)
                if arg > 0 and len(line) > arg - total:
                    break
                total += len(line)
            assert result == lines
        else:
            raise AssertionError(op)


@pytest.mark.parametrize("kind", ["unix", "tcp"])
@pytest.mark.parametrize("bufsize", BUFSIZES)
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payload=PAYLOADS, ops=st.lists(OPS, max_size=15),
       chunks=st.lists(st.integers(1, 3000), max_size=12),
       pauses=st.lists(st.booleans(), max_size=12))
def test_reader_matches_makefile_while_data_arrives(core, kind, bufsize, payload,
                                                    ops, chunks, pauses):
    """A writer thread sends the stream in random chunks while both readers
    read it: both must give the results the stream allows (exactly the same
    ones where those do not depend on the timing)."""
    ours_r, ours_w = make_pair(kind)
    ref_r, ref_w = make_pair(kind)
    writers = [threading.Thread(target=feed, args=(w, payload, chunks, pauses))
               for w in (ours_w, ref_w)]
    ours = core.SocketReader(ours_r, bufsize)
    ref = ref_r.makefile("rb", bufsize)
    try:
        for thread in writers:
            thread.start()
        raw = ref_r if bufsize == 0 else None
        ours_model = StreamModel(payload, bufsize)
        ref_model = StreamModel(payload, bufsize)
        for op, arg in ops + [("read", -1)]:
            ours_model.check(op, arg, apply_op(ours, op, arg))
            ref_model.check(op, arg, apply_op(ref, op, arg, raw))
    finally:
        for obj in (ours, ref, ours_r, ref_r):
            obj.close()             # the writers see EPIPE if still writing
        for thread in writers:
            thread.join(10)
        ours_w.close()
        ref_w.close()


def find_test_cert():
    import test
    base = os.path.dirname(test.__file__)
    for path in (os.path.join(base, "certdata", "keycert.pem"),
                 os.path.join(base, "keycert.pem")):
        if os.path.exists(path):
            return path
    return None


def ssl_pair(certfile):
    """(server SSLSocket, client SSLSocket) over loopback TCP."""
    import ssl
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certfile)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    server, client = tcp_pair()
    wrapped = []
    thread = threading.Thread(target=lambda: wrapped.append(client_ctx.wrap_socket(client)))
    thread.start()
    try:
        server = server_ctx.wrap_socket(server, server_side=True)
    finally:
        thread.join(10)
    return server, wrapped[0]


@pytest.mark.parametrize("bufsize", [-1, 0, 7])
@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.data_too_large])
@given(payload=PAYLOADS, ops=st.lists(OPS, max_size=12),
       chunks=st.lists(st.integers(1, 3000), max_size=8))
def test_reader_over_ssl_matches_makefile(core, bufsize, payload, ops, chunks):
    """An ssl.SSLSocket is driven through its own methods; TLS records end
    where the sender's writes do, so every result must be equal."""
    certfile = find_test_cert()
    if certfile is None:
        pytest.skip("no test certificate in this Python's test package")
    if bufsize == 0:
        ops = [(op, arg) for op, arg in ops if op != "peek"]     # SSL cannot MSG_PEEK
    socks, readers, writers = [], [], []
    try:
        for make in (lambda s: core.SocketReader(s, bufsize),
                     lambda s: s.makefile("rb", bufsize)):
            server, client = ssl_pair(certfile)
            socks += [server, client]
            readers.append(make(server))
            writers.append(threading.Thread(target=feed, args=(client, payload, chunks)))
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(10)
        raw = socks[2] if bufsize == 0 else None
        for op, arg in ops + [("read", -1)]:
            got = outcome(apply_op, readers[0], op, arg)
            want = outcome(apply_op, readers[1], op, arg, raw)
            assert_same_result(op, arg, bufsize, got, want, readers[0], readers[1], raw)
    finally:
        for obj in readers + socks:
            obj.close()


# -- scenarios run on ours and on the stdlib's ----------------------------------

def compare_scenario(core, bufsize, scenario, kind="unix"):
    """Run scenario(reader, peer) on ours and on makefile(); return the
    record of ours after checking it is the stdlib's."""
    records = []
    for make in (lambda s: core.SocketReader(s, bufsize),
                 lambda s: s.makefile("rb", bufsize)):
        a, b = make_pair(kind)
        record = []
        reader = make(a)
        try:
            scenario(reader, a, b, record)
        finally:
            reader.close()
            a.close()
            b.close()
        records.append(record)
    assert records[0] == records[1]
    return records[0]


# (bufsize, operation): a raw SocketIO (bufsize 0) has no read1/readinto1/peek.
TIMEOUT_CASES = [(bufsize, op) for bufsize in (-1, 0, 5)
                 for op in ("read", "read1", "readline", "readinto", "readinto1",
                            "peek", "next")
                 if bufsize or op not in ("read1", "readinto1", "peek")]


@pytest.mark.parametrize("method, kwargs", [
    ("read", {"size": 1}), ("read", {"n": 1}), ("read1", {"size": 1}), ("read1", {"n": 1}),
    ("peek", {"size": 1}), ("peek", {"n": 1}), ("readline", {"size": 1}),
    ("readline", {"limit": 1}), ("readlines", {"hint": 1}),
    ("readinto", {"buffer": bytearray(1)}), ("readinto", {"b": bytearray(1)}),
    ("readinto1", {"buffer": bytearray(1)}), ("readinto1", {"b": bytearray(1)}),
])
def test_reader_arguments_are_positional_only(core, method, kwargs):
    # As makefile('rb')'s BufferedReader: no keyword arguments, and the
    # same call with the value by position works.
    (a, b), (c, d) = socket.socketpair(), socket.socketpair()
    with a, b, c, d:
        b.sendall(b"xy\n" * 4)
        d.sendall(b"xy\n" * 4)
        theirs = a.makefile("rb")
        ours = core.SocketReader(c, -1)
        for reader in (theirs, ours):
            with pytest.raises(TypeError):
                getattr(reader, method)(**kwargs)
        value, = kwargs.values()
        if "readinto" in method:
            mine, other = bytearray(1), bytearray(1)
            assert getattr(ours, method)(mine) == getattr(theirs, method)(other) == 1
            assert mine == other
        else:
            assert getattr(ours, method)(value)[:1] == getattr(theirs, method)(value)[:1]


@pytest.mark.parametrize("bufsize,op", TIMEOUT_CASES)
def test_timeout_then_timed_out_object(core, bufsize, op):
    def scenario(reader, sock, peer, record):
        sock.settimeout(0.15)
        peer.sendall(b"ab\ncd")
        record.append(outcome(reader.readline))
        record.append(outcome(reader.read, 2))
        started = time.monotonic()
        record.append(outcome(apply_op, reader, op, 10))
        assert 0.14 < time.monotonic() - started < 5     # never early
        record.append(outcome(apply_op, reader, op, 10))
        peer.sendall(b"more data\n")
        record.append(outcome(reader.read, 2))
        record.append(outcome(reader.readline))

    record = compare_scenario(core, bufsize, scenario)
    timed_out = ("raised", OSError, "cannot read from timed out object")
    assert record == [("ok", b"ab\n"), ("ok", b"cd"), ("raised", TimeoutError, "timed out"),
                      timed_out, timed_out, timed_out]


@pytest.mark.parametrize("bufsize,op", TIMEOUT_CASES)
def test_timeout_with_partial_data(core, bufsize, op):
    """What a timeout leaves behind (buffered bytes lost or kept) is the
    stdlib's."""
    def scenario(reader, sock, peer, record):
        sock.settimeout(0.1)
        peer.sendall(b"ab\ncdefg")
        record.append(outcome(reader.readline))
        for _ in range(3):
            record.append(outcome(apply_op, reader, op, 3))
        peer.sendall(b"more data\n")
        record.append(outcome(reader.read, 2))
        record.append(outcome(reader.readline))

    record = compare_scenario(core, bufsize, scenario)
    assert record[0] == ("ok", b"ab\n")


def test_timeout_applies_to_each_read(core, pair):
    """A slow sender that never pauses for longer than the timeout does not
    time a long read out (the timeout is per socket read, as in SocketIO)."""
    a, b = pair
    a.settimeout(1.0)
    reader = core.SocketReader(a, 0)

    def trickle():
        for byte in b"hello":
            time.sleep(0.3)
            b.send(bytes([byte]))

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        got = b""
        while len(got) < 5:
            got += reader.read(5 - len(got))
        assert got == b"hello"
    finally:
        thread.join()
        reader.close()


@pytest.mark.parametrize("bufsize", [-1, 0, 3])
def test_nonblocking_socket(core, bufsize):
    def scenario(reader, sock, peer, record):
        sock.setblocking(False)
        ops = [("read", 5), ("read", -1), ("read", 0), ("readinto", 4),
               ("readline", -1), ("readline", 0), ("next", None), ("readlines", -1)]
        if bufsize:
            ops += [("read1", 5), ("peek", 0), ("readinto1", 4)]
        for op, arg in ops:
            record.append((op, outcome(apply_op, reader, op, arg)))
        for data in (b"ab", b"cd\nef", b"g\nhij\n", b"klmnopqrstuvwxyz" * 3):
            peer.sendall(data)
            for op, arg in ops:
                record.append((op, outcome(apply_op, reader, op, arg)))
        peer.shutdown(socket.SHUT_WR)
        for op, arg in ops:
            record.append((op, outcome(apply_op, reader, op, arg)))

    record = compare_scenario(core, bufsize, scenario)
    assert ("read", ("ok", None)) in record


@pytest.mark.parametrize("bufsize", [-1, 0])
def test_eof(core, bufsize):
    def scenario(reader, sock, peer, record):
        peer.sendall(b"last line")
        peer.shutdown(socket.SHUT_WR)
        record.append(reader.readline())
        for op, arg in [("read", -1), ("read", 3), ("readline", -1), ("readinto", 3),
                        ("next", None), ("readlines", 0)]:
            record.append(apply_op(reader, op, arg))
        record.append(list(reader))

    record = compare_scenario(core, bufsize, scenario)
    assert record[0] == b"last line"
    assert record[1:] == [b"", b"", b"", (0, b""), "StopIteration", [], []]


@pytest.mark.parametrize("bufsize", [-1, 0])
@pytest.mark.parametrize("op", ["read", "readline", "readinto"])
def test_peer_reset(core, bufsize, op):
    def scenario(reader, sock, peer, record):
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        peer.close()
        time.sleep(0.05)
        record.append(outcome(apply_op, reader, op, 10))
        record.append(outcome(apply_op, reader, op, 10))

    record = compare_scenario(core, bufsize, scenario, kind="tcp")
    assert record[0][:2] == ("raised", ConnectionResetError)


@pytest.mark.parametrize("bufsize", [-1, 0])
def test_closed_reader(core, bufsize):
    a, b = socket.socketpair()
    with a, b:
        readers = [core.SocketReader(a, bufsize), a.makefile("rb", bufsize)]
        for reader in readers:
            assert not reader.closed
            assert reader.mode == "rb"
            assert reader.name == a.fileno() == reader.fileno()
            assert reader.readable() and not reader.writable() and not reader.seekable()
            assert not reader.isatty()
            with reader as same:
                assert same is reader
            assert reader.closed
            reader.close()                      # idempotent
            assert reader.name == -1
            for method, args in [("read", ()), ("read", (1,)), ("readinto", (bytearray(1),)),
                                 ("readline", ()), ("readlines", ()), ("fileno", ()),
                                 ("readable", ()), ("isatty", ()), ("__iter__", ()),
                                 ("__enter__", ()), ("flush", ())]:
                with pytest.raises(ValueError):
                    getattr(reader, method)(*args)
            if bufsize:
                for method, args in [("read1", ()), ("peek", ()), ("readinto1", (bytearray(1),))]:
                    with pytest.raises(ValueError):
                        getattr(reader, method)(*args)
        assert a._io_refs == 0


def test_reader_argument_errors(core):
    a, b = socket.socketpair()
    with a, b:
        b.sendall(b"line\n")
        b.shutdown(socket.SHUT_WR)
        readers = [core.SocketReader(a), a.makefile("rb")]
        for method, args in [("read", (-2,)), ("read", ("x",)), ("readline", ("x",)),
                             ("readinto", (b"immutable",)), ("read1", (None,)),
                             ("readlines", ("x",))]:
            errors = [outcome(getattr(r, method), *args)[:2] for r in readers]
            assert errors[0] == errors[1] and errors[0][0] == "raised", (method, errors)
        assert [r.read(None) for r in readers] == [b"line\n", b""]
        for reader in readers:
            reader.close()


@pytest.mark.parametrize("bufsize", [-1, 0])
def test_io_refs_defer_socket_close(core, bufsize):
    def scenario(reader, sock, peer, record):
        record.append(sock._io_refs)
        sock.close()                # deferred: the reader still uses it
        record.append(sock.fileno() >= 0)
        peer.sendall(b"still open\n")
        record.append(reader.readline())
        reader.close()              # the last reference: the socket closes now
        record.append(sock.fileno())
        record.append(sock._io_refs)

    assert compare_scenario(core, bufsize, scenario) == [1, True, b"still open\n", -1, 0]


def test_really_closed_socket_gives_ebadf(core):
    def scenario(reader, sock, peer, record):
        os.close(sock.detach())
        for op in ("read", "readline", "readinto"):
            exc = outcome(apply_op, reader, op, 4)
            record.append(exc[:2])
            assert "Errno %d" % errno.EBADF in exc[2]

    assert compare_scenario(core, -1, scenario)[0] == ("raised", OSError)


def test_reader_dropped_without_close_releases_the_socket(core):
    a, b = socket.socketpair()
    with a, b:
        reader = core.SocketReader(a)
        a.close()
        assert a.fileno() >= 0
        del reader
        gc.collect()
        assert a.fileno() == -1


@pytest.mark.parametrize("subclass", [False, True], ids=["socket", "subclass"])
def test_unbuffered_reader_never_reads_ahead(core, pair, subclass):
    a, b = pair
    b.sendall(b"first line\nsecond line\nrest")
    b.shutdown(socket.SHUT_WR)
    subclassed = as_subclass(a) if subclass else a
    reader = core.SocketReader(subclassed, 0)
    assert reader.readline() == b"first line\n"
    assert reader.readline(3) == b"sec"
    assert reader.read(2) == b"on"
    assert reader.peek(4) == b"d li"
    assert subclassed.recv(100) == b"d line\nrest"      # all still in the socket
    reader.close()
    subclassed.close()



class _Index:
    def __init__(self, value):
        self.value = value

    def __index__(self):
        return self.value


class _Int(int):
    pass


@pytest.mark.parametrize("bufsize", [-1, 0, 7])
def test_buffered_lines_after_limits_and_close(core, bufsize):
    """readline()'s limit in every accepted form, and lines still buffered
    when the reader is closed: iteration and readline() refuse them."""
    def scenario(reader, sock, peer, record):
        peer.sendall(b"one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\n")
        time.sleep(0.05)
        record.append(next(reader))
        for limit in (-1, None, _Int(-1), _Index(-1), _Index(2), 10 ** 30 // 10 ** 30 - 2,
                      _Int(3)):
            record.append(reader.readline(limit))
        record.append(reader.readline(-(1 << 70) // (1 << 70)))
        reader.close()
        record.append(outcome(next, reader))
        record.append(outcome(reader.readline))
        record.append(outcome(reader.readline, -1))

    record = compare_scenario(core, bufsize, scenario)
    closed = ("raised", ValueError,
              "readline of closed file" if bufsize else "I/O operation on closed file.")
    assert record == [b"one\n", b"two\n", b"three\n", b"four\n", b"five\n", b"si",
                      b"x\n", b"sev", b"en\n", closed, closed, closed]


# -- concurrency and signals ----------------------------------------------------

@pytest.mark.timeout(60)
def test_reads_release_the_gil_and_serialise(core, pair):
    """Several threads block in readline() on one reader (with the GIL
    released, or the main thread could not send); every line reaches
    exactly one of them."""
    a, b = pair
    reader = core.SocketReader(a, 16)
    lines = [b"line %d %s\n" % (i, b"x" * (i % 50)) for i in range(300)]
    got = []

    def consume():
        while True:
            line = reader.readline()
            if not line:
                return
            got.append(line)

    threads = [threading.Thread(target=consume) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    for line in lines:
        b.sendall(line)
    b.shutdown(socket.SHUT_WR)
    for thread in threads:
        thread.join(30)
    assert sorted(got) == sorted(lines)
    reader.close()


class Interrupted(Exception):
    pass


@pytest.fixture
def sigusr1():
    """Install a SIGUSR1 handler given by the test; restore the old one."""
    old = signal.getsignal(signal.SIGUSR1)
    yield lambda handler: signal.signal(signal.SIGUSR1, handler)
    signal.signal(signal.SIGUSR1, old)


def keep_signalling(done, stop, deadline=20.0):
    """Send SIGUSR1 to the main thread until done is set (or give up)."""
    main = threading.main_thread().ident
    end = time.monotonic() + deadline
    while not done.is_set() and not stop.is_set() and time.monotonic() < end:
        signal.pthread_kill(main, signal.SIGUSR1)
        done.wait(0.05)


@contextlib.contextmanager
def signalling(done, then=None, delay=0.2):
    """Yield arm(): once called, a thread waits for delay (time for the main
    thread to block in the call it makes right after arm()), then sends it
    SIGUSR1 every 50 ms until done is set, then calls then()."""
    armed, stop = threading.Event(), threading.Event()

    def run():
        armed.wait()
        if stop.wait(delay):
            return
        keep_signalling(done, stop)
        if then is not None and not stop.is_set():
            then()

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield armed.set
    finally:
        stop.set()
        armed.set()
        thread.join()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bufsize", [-1, 0])
def test_eintr_during_read_runs_handlers_and_retries(core, pair, sigusr1, bufsize):
    a, b = pair
    handled = threading.Event()
    sigusr1(lambda signum, frame: handled.set())
    reader = core.SocketReader(a, bufsize)
    try:
        with signalling(handled, then=lambda: b.sendall(b"after signal\n")) as arm:
            arm()
            assert reader.readline() == b"after signal\n"
        assert handled.is_set()
    finally:
        reader.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("timeout", [None, 30.0])
@pytest.mark.parametrize("bufsize", [-1, 0])
def test_signal_handler_exception_interrupts_read(core, pair, sigusr1, timeout, bufsize):
    a, b = pair
    a.settimeout(timeout)
    raised = threading.Event()

    def handler(signum, frame):
        if not raised.is_set():     # once: later signals must not raise elsewhere
            raised.set()
            raise Interrupted

    sigusr1(handler)
    reader = core.SocketReader(a, bufsize)
    try:
        with signalling(raised) as arm:
            with pytest.raises(Interrupted):
                arm()
                reader.read(10)
        # Nothing was lost: the reader still works.
        b.sendall(b"0123456789")
        assert reader.read(10) == b"0123456789"
    finally:
        reader.close()


@pytest.mark.timeout(60)
def test_reentrant_call_from_signal_handler(core, pair, sigusr1):
    a, b = pair
    reader = core.SocketReader(a)
    errors = []
    handled = threading.Event()

    def handler(signum, frame):
        if handled.is_set():
            return
        try:
            reader.read(1)
        except RuntimeError as exc:
            errors.append(exc)
        handled.set()

    sigusr1(handler)
    try:
        with signalling(handled, then=lambda: b.sendall(b"x")) as arm:
            arm()
            assert reader.read(1) == b"x"
        assert errors and "reentrant" in str(errors[0])
    finally:
        reader.close()


SOCK_MAX_SIZE = 16 * 1024 * 1024


@pytest.mark.timeout(120)
@pytest.mark.parametrize("bufsize", [0, -1])
def test_eintr_during_large_write_loses_nothing(core, sigusr1, bufsize):
    """CPython's SocketWriterTest.test_write: a 16 MiB write interrupted by
    signals sends every byte exactly once and returns the full length."""
    server, client = tcp_pair()
    interrupted = threading.Event()
    sigusr1(lambda signum, frame: interrupted.set())
    pattern = bytes(range(256)) * (SOCK_MAX_SIZE // 256)
    result = {}
    stop = threading.Event()

    def run_client():
        with client, client.makefile("rb") as reader:
            result["first"] = reader.read(100)
            keep_signalling(interrupted, stop)
            digest = hashlib.sha256(result["first"])
            size = len(result["first"])
            while True:
                chunk = reader.read1(1 << 16)
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
            result["size"] = size
            result["digest"] = digest.digest()

    thread = threading.Thread(target=run_client)
    thread.start()
    try:
        writer = core.SocketWriter(server, bufsize)
        result["sent"] = writer.write(pattern)
        writer.close()
        server.shutdown(socket.SHUT_WR)
    finally:
        stop.set()
        thread.join(60)
        server.close()
    assert interrupted.is_set()
    assert result["sent"] == SOCK_MAX_SIZE
    assert result["size"] == SOCK_MAX_SIZE
    assert result["digest"] == hashlib.sha256(pattern).digest()


# -- the writer -----------------------------------------------------------------

def test_unbuffered_writer_is_socketservers(core, pair):
    a, b = pair
    ours = core.SocketWriter(a)
    theirs = socketserver._SocketWriter(a)
    assert a._io_refs == 0
    for writer in (ours, theirs):
        assert isinstance(writer, io.BufferedIOBase)
        assert writer.writable() and not writer.readable() and not writer.seekable()
        assert writer.fileno() == a.fileno()
    values = [b"bytes", bytearray(b"bytearray"), memoryview(b"view"),
              memoryview(b"abcdefgh")[2:5], array.array("i", [1, 2, 3]),
              memoryview(array.array("d", [1.5])), b"", "text", memoryview(b"abcdef")[::2]]
    for value in values:
        results = []
        for writer in (ours, theirs):
            results.append(outcome(writer.write, value)[:2])
            results.append(drain(b))            # sent before write() returned
        assert results[:2] == results[2:], value
    assert outcome(ours.write, array.array("i", [1, 2, 3])) == ("ok", 12)
    assert drain(b) == array.array("i", [1, 2, 3]).tobytes()
    ours.writelines([b"a", bytearray(b"b"), memoryview(b"c")])
    assert drain(b) == b"abc"
    ours.flush()
    ours.close()
    theirs.close()
    assert ours.closed and a.fileno() >= 0 and a._io_refs == 0
    b.sendall(b"socket still open")
    assert a.recv(100) == b"socket still open"
    for method, args in [("write", (b"x",)), ("writelines", ([b"x"],)), ("flush", ()),
                         ("__enter__", ())]:
        with pytest.raises(ValueError):
            getattr(ours, method)(*args)
    assert drain(b) == b""
    ours.close()


def test_unbuffered_writer_default_and_fallback(core, pair):
    a, b = pair
    sub = as_subclass(a)
    writer = core.SocketWriter(sub)
    assert writer.write(b"through sendall") == 15
    assert sub.calls == 1
    assert drain(b) == b"through sendall"
    with writer:
        pass
    assert writer.closed
    sub.close()


def writer_scenario(make, sock, peer, sizes):
    """Write chunks of the given sizes, recording what reached the peer after
    each write, then flush and close."""
    record = []
    writer = make(sock)
    for i, size in enumerate(sizes):
        data = bytes([65 + i % 26]) * size
        record.append(writer.write(memoryview(data)))
        record.append(drain(peer))
        if size == 0:
            writer.flush()
            record.append(drain(peer))
    record.append(sock._io_refs)
    writer.close()
    record.append(drain(peer))
    record.append(sock._io_refs)
    record.append(outcome(writer.write, b"x")[:2])
    record.append(outcome(writer.flush)[:2])
    record.append(writer.closed)
    return record


@pytest.mark.parametrize("bufsize", [-1, 1, 8, 100])
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(0, 300) | st.integers(0, 20000), max_size=12))
def test_buffered_writer_matches_makefile(core, bufsize, sizes):
    records = []
    for make in (lambda s: core.SocketWriter(s, bufsize),
                 lambda s: s.makefile("wb", bufsize)):
        a, b = socket.socketpair()
        try:
            records.append(writer_scenario(make, a, b, sizes))
        finally:
            a.close()
            b.close()
    assert records[0] == records[1]


def test_buffered_writer_sends_on_flush_close_overflow(core, pair):
    a, b = pair
    writer = core.SocketWriter(a, 8)
    assert a._io_refs == 1
    assert isinstance(writer, io.BufferedIOBase)
    assert writer.mode == "wb" and writer.writable() and not writer.readable()
    assert writer.write(b"12345") == 5
    assert drain(b) == b""
    assert writer.write(bytearray(b"678")) == 3       # fills the buffer exactly
    assert drain(b) == b""
    assert writer.write(b"9") == 1                     # overflow: the 8 go
    assert drain(b) == b"12345678"
    writer.flush()
    assert drain(b) == b"9"
    writer.writelines([b"a", b"b"])
    assert drain(b) == b""
    assert writer.write(b"x" * 20) == 20               # large: straight through
    assert drain(b) == b"ab" + b"x" * 20
    writer.write(b"tail")
    a.close()                                          # deferred by _io_refs
    assert a.fileno() >= 0
    writer.close()                                     # flushes, then the socket closes
    assert drain(b) == b"tail"
    assert a.fileno() == -1
    with pytest.raises(ValueError):
        writer.write(b"x")
    with pytest.raises(ValueError):
        writer.fileno()


def test_buffered_writer_flushes_when_dropped(core, pair):
    a, b = pair
    writer = core.SocketWriter(a, -1)
    writer.write(b"pending")
    del writer
    gc.collect()
    assert drain(b) == b"pending"
    assert a._io_refs == 0


@pytest.mark.parametrize("bufsize", [0, -1])
def test_writer_errors(core, bufsize):
    """A peer gone away and a full socket surface as they do with the
    stdlib's writers."""
    results = []
    for make in (lambda s: core.SocketWriter(s, bufsize),
                 (lambda s: socketserver._SocketWriter(s)) if bufsize == 0
                 else (lambda s: s.makefile("wb", bufsize))):
        a, b = socket.socketpair()
        try:
            b.close()
            writer = make(a)
            record = [outcome(writer.write, b"x" * 100000)[:2]]
            record.append(outcome(writer.flush)[:2])
            a.settimeout(0.2)
            record.append(outcome(writer.close)[:2])
            results.append(record)
        finally:
            a.close()
    assert results[0] == results[1]
    assert ("raised", BrokenPipeError) in results[0]


@pytest.mark.parametrize("bufsize", [0, -1])
def test_writer_timeout(core, pair, bufsize):
    a, b = pair
    a.settimeout(0.3)
    writer = core.SocketWriter(a, bufsize)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="timed out"):
        for _ in range(1000):
            writer.write(b"x" * 65536)
            writer.flush()
    assert 0.25 < time.monotonic() - started < 10
    a.setblocking(False)
    outcome(writer.close)
    assert writer.closed and a._io_refs == 0


@pytest.mark.parametrize("bufsize", [0, 10, -1])
def test_nonblocking_writers(core, bufsize):
    """On a full non-blocking socket: BlockingIOError, and for a buffered
    writer characters_written counts exactly what was taken (sent or kept in
    the buffer, sent by close())."""
    for make in (lambda s: core.SocketWriter(s, bufsize),
                 (lambda s: socketserver._SocketWriter(s)) if bufsize == 0
                 else (lambda s: s.makefile("wb", bufsize))):
        a, b = socket.socketpair()
        try:
            a.setblocking(False)
            writer = make(a)
            assert writer.write(b"y" * 5) == 5
            accepted = 5
            with pytest.raises(BlockingIOError) as info:
                for _ in range(1000):
                    accepted += writer.write(b"z" * 65536)
            if bufsize:
                assert info.value.characters_written > 0
                accepted += info.value.characters_written
            a.setblocking(True)
            got = []
            thread = threading.Thread(target=lambda: got.append(drain_until_eof(b)))
            thread.start()
            writer.close()
            a.shutdown(socket.SHUT_WR)
            thread.join(30)
            if bufsize:
                assert len(got[0]) == accepted
            assert got[0].startswith(b"yyyyyz")
        finally:
            a.close()
            b.close()


@pytest.mark.parametrize("stdlib", [False, True], ids=["ours", "makefile"])
def test_partial_flush_keeps_the_rest(core, stdlib):
    """A flush that a full non-blocking socket cuts short raises
    BlockingIOError and keeps exactly the unsent bytes for the next flush."""
    a, b = socket.socketpair()
    size = 1 << 20
    payload = bytes(range(256)) * (size // 256)
    writer = a.makefile("wb", size) if stdlib else core.SocketWriter(a, size)
    try:
        a.setblocking(False)
        assert writer.write(payload) == size
        assert drain(b) == b""
        with pytest.raises(BlockingIOError):
            writer.flush()
        got = [drain(b)]
        assert 0 < len(got[0]) < size
        a.setblocking(True)
        thread = threading.Thread(target=lambda: got.append(drain_until_eof(b)))
        thread.start()
        writer.flush()
        a.shutdown(socket.SHUT_WR)
        thread.join(30)
        assert b"".join(got) == payload
    finally:
        writer.close()
        a.close()
        b.close()


def drain_until_eof(sock):
    chunks = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def test_streams_are_buffered_io(core, pair):
    a, b = pair
    streams = [core.SocketReader(a), core.SocketReader(a, 0),
               core.SocketWriter(a), core.SocketWriter(a, -1)]
    for stream in streams:
        assert isinstance(stream, io.BufferedIOBase)
        assert isinstance(stream, io.IOBase)
        stream.close()


@pytest.mark.timeout(60)
def test_large_transfer_integrity(core):
    """Megabytes through a buffered writer and a buffered reader, in uneven
    pieces, arrive intact."""
    server, client = tcp_pair()
    payload = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(100000))
    payload += b"x" * 300000 + b"\n"        # a line longer than many buffers

    def send():
        with core.SocketWriter(client, 3000) as writer:
            pos, step = 0, 1
            while pos < len(payload):
                writer.write(payload[pos:pos + step])
                pos += step
                step = step * 7 % 65521 + 1
        client.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=send)
    thread.start()
    try:
        reader = core.SocketReader(server, 4096)
        got = bytearray()
        buf = bytearray(5000)
        while True:
            n = reader.readinto(buf)
            got += buf[:n]
            line = reader.readline()
            got += line
            chunk = reader.read(777)
            got += chunk
            if not n and not line and not chunk:
                break
        assert got == payload
        reader.close()
    finally:
        thread.join(30)
        server.close()
        client.close()


@pytest.mark.parametrize("linked", [False, True])
def test_empty_write_to_a_gone_peer_raises_like_the_stdlib(core, linked):
    # socketserver._SocketWriter.write(b"") is sendall(b""), which still
    # makes one send(): a peer that has gone is reported.
    import socketserver
    results = []
    for ours in (False, True):
        a, b = socket.socketpair()
        reader = core.SocketReader(a) if ours and linked else None
        writer = core.SocketWriter(a, 0, reader) if ours else socketserver._SocketWriter(a)
        try:
            results.append(outcome(writer.write, b""))     # peer still there
            b.close()
            results.append(outcome(writer.write, b""))
        finally:
            writer.close()
            if reader is not None:
                reader.close()
            a.close()
            b.close()
    assert results[0] == ("ok", 0)
    assert results[1][:2] == ("raised", BrokenPipeError)
    assert results[2:] == results[:2]
