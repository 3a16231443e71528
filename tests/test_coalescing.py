"""Write coalescing: an unbuffered wfile linked to its rfile (both backends)."""
import socket
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from helpers import HOST, serving


def nothing_arrived(sock):
    try:
        sock.recv(65536, socket.MSG_DONTWAIT)
    except BlockingIOError:
        return True
    return False


def recv_exactly(sock, n, timeout=10):
    sock.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "EOF after %r" % data
        data += chunk
    return data


@pytest.fixture
def pair(core):
    server, client = socket.socketpair()
    reader = core.SocketReader(server, -1)
    writer = core.SocketWriter(server, 0, reader)
    yield server, client, reader, writer
    writer.close()
    reader.close()
    server.close()
    client.close()


def test_held_while_input_is_buffered_sent_when_reader_needs_socket(pair):
    server, client, reader, writer = pair
    client.sendall(b"a\nb\nc\n")
    replies = []
    for _ in range(3):
        line = reader.readline()
        assert writer.write(b"re:" + line) == len(line) + 3
        replies.append(b"re:" + line)
        if len(replies) < 3:
            # More input is buffered: the reply waits for the next ones.
            assert nothing_arrived(client)
    # The last reply was written with no input left: everything goes out now.
    assert recv_exactly(client, 15) == b"".join(replies)


def test_reader_flushes_before_waiting(pair):
    server, client, reader, writer = pair
    client.sendall(b"one\ntwo\n")
    writer.write(reader.readline())         # held: "two" is buffered
    assert nothing_arrived(client)
    assert reader.readline() == b"two\n"    # from the buffer: still held
    got = []
    t = threading.Thread(target=lambda: got.append(reader.readline()))
    t.start()                               # needs the socket: sends first
    assert recv_exactly(client, 4) == b"one\n"
    client.sendall(b"three\n")
    t.join(10)
    assert got == [b"three\n"]


def test_paused_handler_bytes_leave_within_the_deadline(pair):
    server, client, reader, writer = pair
    client.sendall(b"x\ny\n")
    writer.write(reader.readline())         # held: "y" is buffered
    start = time.monotonic()
    # The handler now pauses (no read, no write): the flusher sends it.
    assert recv_exactly(client, 2, timeout=5) == b"x\n"
    assert time.monotonic() - start < 2


def test_flush_and_close_send_what_is_held(pair, core):
    server, client, reader, writer = pair
    client.sendall(b"1\n2\n3\n")
    writer.write(reader.readline())
    assert nothing_arrived(client)
    writer.flush()
    assert recv_exactly(client, 2) == b"1\n"
    writer.write(reader.readline())
    writer.close()
    assert recv_exactly(client, 2) == b"2\n"
    assert reader.readline() == b"3\n"      # the reader is unaffected


def test_large_writes_keep_order(pair):
    server, client, reader, writer = pair
    client.sendall(b"a\nb\n")
    big = bytes(range(256)) * 1024          # 256 KiB: above the hold limit
    received = []
    t = threading.Thread(target=lambda: received.append(recv_exactly(client, 2 + len(big) + 2)))
    t.start()
    writer.write(reader.readline())         # held
    writer.write(big)                       # too big to hold: both go now, in order
    writer.write(reader.readline())         # no input left: immediate
    t.join(20)
    assert received == [b"a\n" + big + b"b\n"]


def test_no_link_for_buffered_writer_or_other_socket(core):
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    with a, b, c, d:
        reader = core.SocketReader(a)
        buffered = core.SocketWriter(a, 100, reader)
        other = core.SocketWriter(c, 0, reader)     # a reader of another socket
        b.sendall(b"q\nw\n")
        reader.readline()
        other.write(b"now\n")                       # not held
        assert recv_exactly(d, 4) == b"now\n"
        for f in (buffered, other, reader):
            f.close()


@settings(max_examples=40, deadline=None)
@given(lines=st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"") + b"\n"),
                      min_size=1, max_size=40),
       chunk=st.integers(1, 500))
def test_pipelined_echo_is_exact(ss, lines, chunk):
    class Echo(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)

    payload = b"".join(lines)
    with serving(ss.TCPServer((HOST, 0), Echo), poll_interval=0.05) as server:
        with socket.create_connection(server.server_address, timeout=10) as client:
            for i in range(0, len(payload), chunk):
                client.sendall(payload[i:i + chunk])
            client.shutdown(socket.SHUT_WR)
            assert recv_exactly(client, len(payload)) == payload
            assert client.recv(1) == b""


@pytest.mark.parametrize("linked", [True, False])
def test_write_with_short_timeout_does_not_wait_while_the_buffer_has_room(core, linked):
    # Finding 7 (docs/hardening.md): with a timeout, CPython's send() and
    # sendall() poll before sending, and poll() reports an AF_UNIX socket
    # writable only while at most a quarter of its send buffer is used.  The
    # writer tries each send without waiting first, so writes that fit in
    # the buffer succeed even though the peer reads nothing meanwhile.
    server, client = socket.socketpair()
    server.settimeout(0.003)
    reader = core.SocketReader(server, -1)
    writer = core.SocketWriter(server, 0, reader if linked else None)
    try:
        client.sendall(b"a\nb\n")
        assert reader.readline() == b"a\n"
        assert writer.write(b"x" * 56559) == 56559    # held back if linked: b"b\n" is buffered
        assert reader.readline() == b"b\n"
        assert writer.write(b"y" * 18853) == 18853    # no input left: all of it goes out
        assert recv_exactly(client, 75412) == b"x" * 56559 + b"y" * 18853
        client.settimeout(None)
        assert nothing_arrived(client)
    finally:
        writer.close()
        reader.close()
        server.close()
        client.close()


def test_write_timeout_still_raised_when_the_buffer_is_full(core):
    # Trying without waiting first does not drop the socket's timeout: a
    # write the peer never makes room for still times out.
    server, client = socket.socketpair()
    server.settimeout(0.05)
    reader = core.SocketReader(server, -1)
    writer = core.SocketWriter(server, 0, reader)
    try:
        with pytest.raises(TimeoutError):
            for _ in range(1000):
                writer.write(b"x" * 65536)
    finally:
        writer.close()
        reader.close()
        server.close()
        client.close()
