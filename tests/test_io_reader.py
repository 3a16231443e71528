"""The reader's socket state between reads (both backends).

The compiled reader takes a plain socket's descriptor and timeout from the
socket object at every recv, and after a recv that emptied the socket it
waits at once (a blocking recv, or poll + recv under a deadline) instead of
trying without waiting first.  Whatever the last read left behind, a
settimeout()/setblocking() made between reads, a socket detached or shut
down under the reader, a signal, and the reader's own deadlines must act as
they do on a fresh reader -- and, where the stdlib has the same thing, as on
``sock.makefile('rb', bufsize)``.
"""
import errno
import os
import io
import socket
import threading
import time

import pytest

from test_streams import compare_scenario, outcome, apply_op, signalling, sigusr1  # noqa: F401

# -1: the last recv filled less than the buffer (the socket is empty);
# 1: every recv fills the one-byte buffer (the reader tries first);
# 0: unbuffered (peeks, then takes).
BUFSIZES = [-1, 0, 1]


def later(delay, func, *args):
    """Run func(*args) in a thread after delay seconds; returns the thread."""
    thread = threading.Timer(delay, func, args)
    thread.start()
    return thread


@pytest.mark.parametrize("bufsize", BUFSIZES)
def test_settimeout_between_reads_applies_to_the_next_one(core, bufsize):
    def scenario(reader, sock, peer, record):
        peer.sendall(b"ab\n")
        record.append(outcome(reader.readline))          # blocking socket
        sock.settimeout(0.1)
        started = time.monotonic()
        record.append(outcome(reader.readline))          # nothing comes: times out
        assert 0.09 < time.monotonic() - started < 5
        record.append(outcome(reader.readline))

    record = compare_scenario(core, bufsize, scenario)
    assert record == [("ok", b"ab\n"), ("raised", TimeoutError, "timed out"),
                      ("raised", OSError, "cannot read from timed out object")]


@pytest.mark.parametrize("bufsize", BUFSIZES)
def test_timeout_then_blocking_waits_for_data(core, bufsize):
    def scenario(reader, sock, peer, record):
        sock.settimeout(5.0)
        peer.sendall(b"ab\n")
        record.append(outcome(reader.readline))
        sock.settimeout(None)
        thread = later(0.3, peer.sendall, b"cd\n")      # past no deadline
        try:
            record.append(outcome(reader.readline))
        finally:
            thread.join()
        sock.settimeout(0.05)
        thread = later(0.3, peer.sendall, b"ef\n")
        try:
            record.append(outcome(reader.readline))
        finally:
            thread.join()

    assert compare_scenario(core, bufsize, scenario) == [
        ("ok", b"ab\n"), ("ok", b"cd\n"), ("raised", TimeoutError, "timed out")]


@pytest.mark.parametrize("bufsize", BUFSIZES)
def test_setblocking_between_reads(core, bufsize):
    def scenario(reader, sock, peer, record):
        peer.sendall(b"ab\n")
        record.append(outcome(reader.readline))
        sock.setblocking(False)
        record.append(outcome(reader.read, 2))           # nothing there: no wait
        peer.sendall(b"cd\n")
        record.append(outcome(reader.readline))
        sock.setblocking(True)
        thread = later(0.2, peer.sendall, b"ef\n")
        try:
            record.append(outcome(reader.readline))
        finally:
            thread.join()

    record = compare_scenario(core, bufsize, scenario)
    assert record[0] == ("ok", b"ab\n") and record[2:] == [("ok", b"cd\n"), ("ok", b"ef\n")]


@pytest.mark.parametrize("bufsize", BUFSIZES)
@pytest.mark.parametrize("op", ["read", "readline", "readinto"])
def test_socket_detached_after_reads_gives_ebadf(core, bufsize, op):
    def scenario(reader, sock, peer, record):
        peer.sendall(b"ab\ncdef")
        record.append(outcome(reader.readline))
        os.close(sock.detach())
        exc = outcome(apply_op, reader, op, 8)
        record.append(exc[:2])
        assert "Errno %d" % errno.EBADF in exc[2]

    record = compare_scenario(core, bufsize, scenario)
    assert record[0] == ("ok", b"ab\n")


@pytest.mark.parametrize("bufsize", BUFSIZES)
@pytest.mark.parametrize("timeout", [None, 10.0])
def test_shutdown_under_a_waiting_reader_is_eof(core, bufsize, timeout):
    def scenario(reader, sock, peer, record):
        sock.settimeout(timeout)
        peer.sendall(b"ab\n")
        record.append(outcome(reader.readline))
        thread = later(0.2, sock.shutdown, socket.SHUT_RDWR)
        try:
            record.append(outcome(reader.readline))
        finally:
            thread.join()
        record.append(outcome(reader.readline))

    assert compare_scenario(core, bufsize, scenario) == [
        ("ok", b"ab\n"), ("ok", b""), ("ok", b"")]


@pytest.mark.parametrize("bufsize", BUFSIZES)
def test_stream_larger_than_the_buffer_arriving_in_pieces(core, bufsize):
    # Recvs alternately fill the buffer and empty the socket.
    payload = b"".join(b"%d:" % i + b"x" * (i * 37 % 300) + b"\n" for i in range(300))

    def scenario(reader, sock, peer, record):
        def send():
            for k in range(0, len(payload), 4000):
                peer.sendall(payload[k:k + 4000])
                time.sleep(0.002)
        thread = later(0, send)
        try:
            lines = [reader.readline() for _ in range(300)]
        finally:
            thread.join()
        record.append(b"".join(lines) == payload)
        record.append(len(lines))

    assert compare_scenario(core, bufsize, scenario) == [True, 300]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("bufsize", BUFSIZES)
@pytest.mark.parametrize("timeout", [None, 30.0])
def test_signal_while_waiting_after_a_read(core, sigusr1, bufsize, timeout):  # noqa: F811
    a, b = socket.socketpair()
    a.settimeout(timeout)
    handled = threading.Event()
    sigusr1(lambda signum, frame: handled.set())
    reader = core.SocketReader(a, bufsize)
    try:
        b.sendall(b"first\n")
        assert reader.readline() == b"first\n"
        with signalling(handled, then=lambda: b.sendall(b"after signal\n")) as arm:
            arm()
            assert reader.readline() == b"after signal\n"
        assert handled.is_set()
    finally:
        reader.close()
        a.close()
        b.close()


@pytest.mark.parametrize("bufsize", BUFSIZES)
def test_line_timeout_enforced_after_the_socket_was_emptied(core, bufsize):
    a, b = socket.socketpair()
    reader = core.SocketReader(a, bufsize, line_timeout=0.3)
    stop = threading.Event()

    def trickle():
        while not stop.wait(0.05):
            try:
                b.send(b"x")
            except OSError:
                return
    try:
        b.sendall(b"ab\n")
        assert reader.readline() == b"ab\n"
        thread = threading.Thread(target=trickle)
        thread.start()
        try:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                reader.readline()
            assert 0.29 < time.monotonic() - started < 5
        finally:
            stop.set()
            thread.join()
        with pytest.raises(OSError, match="timed out object"):
            reader.readline()
    finally:
        reader.close()
        a.close()
        b.close()


@pytest.mark.parametrize("bufsize", BUFSIZES)
@pytest.mark.parametrize("timeout", [None, 0.15, 30.0])
def test_idle_timeout_enforced_after_the_socket_was_emptied(core, bufsize, timeout):
    a, b = socket.socketpair()
    a.settimeout(timeout)
    reader = core.SocketReader(a, bufsize, idle_timeout=0.3)
    try:
        b.sendall(b"ab\n")
        assert reader.readline() == b"ab\n"
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            reader.readline()
        # Whichever deadline is nearer: the socket's or the idle one.
        expected = min(0.3, timeout or 0.3)
        assert expected - 0.01 < time.monotonic() - started < 5
    finally:
        reader.close()
        a.close()
        b.close()


def test_reader_over_a_socket_subclass_still_uses_its_methods(core):
    # The descriptor/timeout shortcut is for socket.socket itself only.
    class Counting(socket.socket):
        calls = 0

        def recv_into(self, *args):
            type(self).calls += 1
            return super().recv_into(*args)

    a, b = socket.socketpair()
    sub = Counting(a.family, a.type, a.proto, fileno=a.detach())
    reader = core.SocketReader(sub, -1)
    try:
        b.sendall(b"ab\n")
        assert reader.readline() == b"ab\n"
        sub.settimeout(0.05)
        with pytest.raises(TimeoutError):
            reader.readline()
        assert Counting.calls == 2
    finally:
        reader.close()
        sub.close()
        b.close()


@pytest.mark.c_extension
def test_compiled_reader_reads_socket_fields_directly():
    # The compiled core checks at import that CPython's socket object layout
    # is the one it knows; if a Python version changes it, the reader falls
    # back to fileno()/gettimeout() calls (correct, but slower): this test
    # says so.  (Compiled core only: the pure twin always calls the methods.)
    from fastsock import _backend
    assert _backend.load("cython")._SOCKET_FIELDS_OK is True


@pytest.mark.parametrize("bufsize", [-1, None, 8192])
def test_bulk_input_through_a_growing_buffer(core, bufsize):
    # A reader whose size was left to it grows its buffer (up to 64 KiB)
    # while refills come back full.  A bulk stream read
    # with every kind of call must still come out byte for byte, each call
    # keeping its contract (how much read1()/peek() return is the buffer's
    # business, as with io.BufferedReader).
    import random
    rng = random.Random(1234)
    payload = b"".join(b"%d:" % i + b"x" * rng.randrange(0, 3000) + b"\n"
                       for i in range(800))
    a, b = socket.socketpair()
    reader = core.SocketReader(a, bufsize)
    sender = threading.Thread(target=lambda: (b.sendall(payload), b.shutdown(socket.SHUT_WR)))
    sender.start()
    out = []
    pos = 0
    try:
        while True:
            op = rng.choice(("readline", "read", "read1", "readinto", "peek"))
            size = rng.randrange(1, 20000)
            if op == "peek":
                got = reader.peek()
                assert got == payload[pos:pos + len(got)]
                assert got or pos == len(payload)
                continue
            if op == "readline":
                got = reader.readline()
                assert got == payload[pos:payload.find(b"\n", pos) + 1]
            elif op == "read":
                got = reader.read(size)
                assert len(got) == min(size, len(payload) - pos)
            elif op == "read1":
                got = reader.read1(size)
                assert 0 < len(got) <= size or pos == len(payload)
            else:
                buf = bytearray(size)
                got = bytes(buf[:reader.readinto(buf)])
                assert len(got) == min(size, len(payload) - pos)
            if not got:
                break
            out.append(got)
            pos += len(got)
            assert b"".join(out[-1:]) == payload[pos - len(got):pos]
    finally:
        sender.join(10)
        reader.close()
        a.close()
        b.close()
    assert pos == len(payload) and b"".join(out) == payload


@pytest.mark.parametrize("bufsize,grows", [(-1, True), (None, True), (8192, False),
                                           (io.DEFAULT_BUFFER_SIZE, False)])
def test_buffer_grows_only_when_its_size_was_left_to_the_reader(core, bufsize, grows):
    # Under bulk input (every refill comes back full) a reader with the
    # default size doubles its buffer up to 64 KiB, on both backends; one
    # given an explicit size keeps it.  peek() shows the buffer's contents.
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    payload = bytes(range(256)) * 2048         # 512 KiB
    sender = threading.Thread(target=lambda: (b.sendall(payload), b.shutdown(socket.SHUT_WR)))
    sender.start()
    reader = core.SocketReader(a, bufsize)
    seen = 0
    got = []
    try:
        while True:
            chunk = reader.read(1000)
            if not chunk:
                break
            got.append(chunk)
            seen = max(seen, len(reader.peek()))
    finally:
        sender.join(10)
        reader.close()
        a.close()
        b.close()
    assert b"".join(got) == payload
    if grows:
        assert io.DEFAULT_BUFFER_SIZE < seen <= 65536
    else:
        assert seen <= (bufsize or io.DEFAULT_BUFFER_SIZE)
