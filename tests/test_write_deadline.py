"""wfile's write_timeout: a client that never reads cannot hold a handler."""
import math
import os
import socket
import sys
import threading
import time

import pytest

from helpers import HOST, serving, unix_path

BIG = 64 * 1024 * 1024     # far more than any socket buffer takes


def pair(family):
    if family == "unix":
        return socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(1)
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
    return server, client


@pytest.mark.parametrize("family", ["unix", "tcp"])
@pytest.mark.parametrize("bufsize", [0, 8192])
@pytest.mark.parametrize("sock_timeout", [None, 60.0])
def test_peer_that_never_reads_times_out(core, family, bufsize, sock_timeout):
    a, b = pair(family)
    try:
        a.settimeout(sock_timeout)
        writer = core.SocketWriter(a, bufsize, write_timeout=0.3)
        assert writer.write_timeout == 0.3
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            writer.write(b"x" * BIG)
            writer.flush()
        waited = time.monotonic() - t0
        assert 0.25 <= waited < 30, waited     # the deadline, not the socket's
        sent = writer.bytes_written
        assert 0 < sent < BIG
        # Once expired, the writer refuses to send again, at once ...
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            writer.write(b"more")   # buffered: fits, so only the flush sends
            writer.flush()
        with pytest.raises(TimeoutError):
            writer.write(b"y" * BIG)
        # Two calls that each waited out the deadline would take >= 0.6 s;
        # the slack is for a loaded machine.
        assert time.monotonic() - t0 < 0.55
        # ... and close() drops what is left without waiting or raising.
        writer.close()
        assert writer.bytes_written == sent
        assert a.gettimeout() == sock_timeout   # left as it was
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("bufsize", [0, 8192])
def test_deadline_is_per_call_total_not_per_progress(core, bufsize):
    # A peer that keeps reading, but slowly: every send makes progress, yet
    # the call as a whole may not wait longer than write_timeout.
    a, b = pair("unix")
    stop = threading.Event()

    def slow_reader():
        while not stop.is_set():
            try:
                if not b.recv(4096):
                    return
            except OSError:
                return
            time.sleep(0.005)

    thread = threading.Thread(target=slow_reader)
    thread.start()
    try:
        writer = core.SocketWriter(a, bufsize, write_timeout=0.5)
        with pytest.raises(TimeoutError):
            writer.write(b"x" * BIG)
            writer.flush()
        assert writer.bytes_written > 0
        writer.close()
    finally:
        stop.set()
        a.close()
        thread.join(10)
        b.close()


@pytest.mark.parametrize("bufsize", [0, 8192])
def test_slow_but_finishing_peer_is_not_cut_off(core, bufsize):
    # Each call is well within its deadline; many calls together last far
    # longer than write_timeout, and none of them fails.
    a, b = pair("tcp")
    got = []

    def reader():
        while True:
            chunk = b.recv(65536)
            if not chunk:
                return
            got.append(len(chunk))
            time.sleep(0.002)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        writer = core.SocketWriter(a, bufsize, write_timeout=5.0)
        payload = b"z" * (256 * 1024)
        t0 = time.monotonic()
        calls = 0
        while time.monotonic() - t0 < 1.0 or calls < 8:
            writer.write(payload)
            writer.flush()
            calls += 1
        writer.close()
        assert writer.bytes_written == calls * len(payload)
        a.shutdown(socket.SHUT_WR)
        thread.join(30)
        assert sum(got) == calls * len(payload)
    finally:
        a.close()
        thread.join(10)
        b.close()


def test_socket_timeout_still_applies_first(core):
    a, b = pair("unix")
    try:
        a.settimeout(0.2)
        writer = core.SocketWriter(a, 0, write_timeout=60)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            writer.write(b"x" * BIG)
        assert time.monotonic() - t0 < 30
        # A socket timeout is the stdlib's: the writer is not closed for it.
        b.setblocking(False)
        try:
            while b.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
        assert writer.write(b"ok") == 2
        writer.close()
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("value", [0, -1, math.nan, "1"])
def test_invalid_write_timeout(core, value):
    a, b = socket.socketpair()
    try:
        with pytest.raises((ValueError, TypeError)):
            core.SocketWriter(a, 0, write_timeout=value)
        writer = core.SocketWriter(a, 0)
        assert writer.write_timeout is None
        writer.close()
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("family", ["tcp", "unix"])
@pytest.mark.parametrize("wbufsize", [0, 65536])
def test_handler_drops_a_client_that_never_reads(ss, family, wbufsize):
    errors = []
    done = threading.Event()

    class Handler(ss.StreamRequestHandler):
        write_timeout = 0.3

        def handle(self):
            assert self.wfile.write_timeout == 0.3
            self.rfile.readline()
            while True:
                self.wfile.write(b"x" * (1 << 20))

        def finish(self):
            try:
                super().finish()
            finally:
                done.set()

    class Server(ss.ThreadingTCPServer if family == "tcp" else ss.ThreadingUnixStreamServer):
        def handle_error(self, request, client_address):
            errors.append(sys.exc_info()[1])

    if family == "tcp":
        address, fam = (HOST, 0), socket.AF_INET
    else:
        address, fam = unix_path(), socket.AF_UNIX
    try:
        server = Server(address, Handler)
        with serving(server, poll_interval=0.05):
            with socket.socket(fam, socket.SOCK_STREAM) as client:
                client.connect(server.server_address)
                client.sendall(b"go\n")
                # never reads: the handler is dropped by its write_timeout
                assert done.wait(30)
                # and the connection is closed: draining it reaches EOF
                client.settimeout(30)
                while client.recv(1 << 20):
                    pass
        stats = server.stats()
    finally:
        if isinstance(address, str) and os.path.exists(address):
            os.unlink(address)
    assert len(errors) == 1 and isinstance(errors[0], TimeoutError), errors
    assert isinstance(errors[0], socket.timeout)
    assert stats.errors == 1 and stats.disconnects == 1 and stats.completed == 1
    assert stats.bytes_out > 0


def test_default_is_the_stdlib_behaviour(ss):
    seen = []

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            seen.append(self.wfile.write_timeout)
            self.wfile.write(self.rfile.readline())

    server = ss.TCPServer((HOST, 0), Handler)
    with serving(server, poll_interval=0.05):
        with socket.create_connection(server.server_address, timeout=10) as sock:
            sock.sendall(b"hello\n")
            assert sock.recv(100) == b"hello\n"
    assert seen == [None]


def test_tls_client_that_never_reads(ss, contexts):
    # wfile over an ssl.SSLSocket: the socket's timeout is narrowed per send.
    server_ctx, client_ctx = contexts
    errors = []
    done = threading.Event()

    class Handler(ss.StreamRequestHandler):
        write_timeout = 0.3

        def handle(self):
            self.rfile.readline()
            while True:
                self.wfile.write(b"x" * (1 << 20))

        def finish(self):
            try:
                super().finish()
            finally:
                done.set()

    class Server(ss.ThreadingTCPServer):
        ssl_context = server_ctx

        def handle_error(self, request, client_address):
            errors.append(sys.exc_info()[1])

    server = Server((HOST, 0), Handler)
    with serving(server, poll_interval=0.05):
        with socket.create_connection(server.server_address, timeout=30) as raw:
            with client_ctx.wrap_socket(raw, server_hostname=HOST) as client:
                client.sendall(b"go\n")
                assert done.wait(30)
    assert len(errors) == 1 and isinstance(errors[0], TimeoutError), errors
    assert server.stats().bytes_out > 0
