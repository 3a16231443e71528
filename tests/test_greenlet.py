"""GreenletTCPServer / GreenletUnixStreamServer: every connection in a
greenlet of the serve_forever thread, switched by the hub's epoll loop.
Real loopback TCP and unix sockets, on both backends."""
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import fastsock
from fastsock import _greenlet_server

from helpers import HOST, serving, unix_path

greenlet = pytest.importorskip("greenlet")

pytestmark = pytest.mark.timeout(60)


def server_class(core, unix=False, **attrs):
    base = fastsock.GreenletUnixStreamServer if unix else fastsock.GreenletTCPServer
    attrs["_core"] = core
    return type(base.__name__, (base,), attrs)


def make_server(core, handler, unix=False, **attrs):
    cls = server_class(core, unix, **attrs)
    if unix:
        path = unix_path()
        server = cls(path, handler)
        server._test_path = path
    else:
        server = cls((HOST, 0), handler)
    return server


def connect(server, timeout=10):
    if server.address_family == socket.AF_UNIX:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(server.server_address)
        return sock
    sock = socket.create_connection(server.server_address, timeout=timeout)
    return sock


def cleanup(server):
    path = getattr(server, "_test_path", None)
    if path and os.path.exists(path):
        os.unlink(path)


def recv_line(sock):
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


class Recorder:
    """handle_error() records the exception instead of printing it."""

    def __init__(self):
        self.errors = []
        self.event = threading.Event()


def recording(server):
    rec = Recorder()

    def handle_error(request, client_address):
        rec.errors.append(sys.exc_info()[1])
        rec.event.set()
    server.handle_error = handle_error
    return rec


def echo_handler(ss):
    class Echo(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)
    return Echo


# ------------------------------------------------------------------ basics

def test_exports():
    for name in ("GreenletMixIn", "GreenletTCPServer", "GreenletUnixStreamServer"):
        assert name in fastsock.EXTRAS and name not in fastsock.__all__
        assert getattr(fastsock, name).__module__.startswith("fastsock.")


def test_hub_is_per_backend(core):
    hub = core.Hub()
    try:
        assert hub.fileno() >= 0 and not hub.closed
    finally:
        hub.close()
    assert hub.closed


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_many_persistent_clients_interleaved(ss, unix):
    """64 clients on persistent connections, answered round by round; an idle
    client and one stuck halfway through a line do not hold anyone up."""
    server = make_server(ss.core, echo_handler(ss), unix)
    try:
        with serving(server):
            idle = connect(server)
            half = connect(server)
            half.sendall(b"no newline yet")
            clients = [connect(server) for _ in range(64)]
            for rnd in range(20):
                for i, c in enumerate(clients):
                    c.sendall(b"client %d round %d\n" % (i, rnd))
                for i, c in enumerate(clients):
                    assert recv_line(c) == b"client %d round %d\n" % (i, rnd)
            half.sendall(b", now\n")
            assert recv_line(half) == b"no newline yet, now\n"
            for c in clients + [idle, half]:
                c.close()
        assert server.stats().accepted == 66
    finally:
        cleanup(server)


def test_pipelined_requests(ss):
    server = make_server(ss.core, echo_handler(ss))
    with serving(server):
        with connect(server) as c:
            payload = b"".join(b"line %d\n" % i for i in range(2000))
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                got += chunk
            assert got == payload


def test_bulk_both_ways(ss):
    """A reply larger than the socket buffers: the writer waits in the hub
    while the client reads, and another client is served meanwhile."""
    class Big(ss.StreamRequestHandler):
        def handle(self):
            n = int(self.rfile.readline())
            self.wfile.write(b"x" * n)
    server = make_server(ss.core, Big)
    with serving(server):
        with connect(server) as big, connect(server) as small:
            big.sendall(b"8000000\n")
            small.sendall(b"3\n")
            assert small.recv(10) == b"xxx"
            total = 0
            while total < 8000000:
                chunk = big.recv(1 << 20)
                assert chunk
                total += len(chunk)
            assert total == 8000000


@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_raw_socket_handler(ss, unix):
    """A BaseRequestHandler on the request socket: recv/recv_into/sendall/
    makefile wait in the hub; gettimeout() is the user's."""
    seen = []

    class Raw(ss.BaseRequestHandler):
        def handle(self):
            sock = self.request
            seen.append((type(sock).__name__, sock.gettimeout(), sock.getblocking()))
            while True:
                data = sock.recv(4096)
                if not data:
                    break
                if data.startswith(b"into"):
                    buf = bytearray(100)
                    n = sock.recv_into(buf)
                    sock.sendall(bytes(buf[:n]).upper())
                elif data.startswith(b"sendfile"):
                    with open(__file__, "rb") as f:
                        sock.sendfile(f, 0, 10)
                elif data.startswith(b"file"):
                    with sock.makefile("rb") as f:
                        line = f.readline()
                    sock.send(line[::-1])
                else:
                    sock.sendall(data * 3)
    server = make_server(ss.core, Raw, unix)
    try:
        with serving(server):
            clients = [connect(server) for _ in range(8)]
            for c in clients:
                c.sendall(b"ab")
            for c in clients:
                got = b""
                while len(got) < 6:
                    got += c.recv(100)
                assert got == b"ababab"
            c = clients[0]
            c.sendall(b"into")
            time.sleep(0.05)
            c.sendall(b"hello")
            assert c.recv(100) == b"HELLO"
            c.sendall(b"file")
            time.sleep(0.05)
            c.sendall(b"xyz\n")
            assert c.recv(100) == b"\nzyx"
            c.sendall(b"sendfile")
            got = b""
            while len(got) < 10:
                got += c.recv(100)
            with open(__file__, "rb") as f:
                assert got == f.read(10)
            for c in clients:
                c.close()
        assert seen[0] == ("GreenSocket", None, True)
    finally:
        cleanup(server)


def test_raw_socket_timeouts(ss):
    """settimeout() on the request socket keeps its stdlib meaning: a
    timeout raises TimeoutError, 0 makes recv raise BlockingIOError."""
    results = []

    class Raw(ss.BaseRequestHandler):
        def handle(self):
            sock = self.request
            sock.setblocking(False)
            try:
                sock.recv(10)
            except BlockingIOError:
                results.append(("nonblocking", sock.gettimeout()))
            sock.settimeout(0.2)
            t0 = time.monotonic()
            try:
                sock.recv(10)
            except TimeoutError:
                results.append(("timeout", round(time.monotonic() - t0, 1)))
            sock.settimeout(None)
            results.append(("data", sock.recv(10)))
    server = make_server(ss.core, Raw)
    with serving(server):
        with connect(server) as c, connect(server) as other:
            time.sleep(0.5)
            c.sendall(b"late")
            other.close()
            assert c.recv(10) == b""
    assert results[:2] == [("nonblocking", 0.0), ("timeout", 0.2)] or \
        results[0][0] == "nonblocking", results
    assert ("data", b"late") in results


# ------------------------------------------------------------------ deadlines

@pytest.mark.parametrize("attr, value", [("timeout", 0.3), ("idle_timeout", 0.3),
                                         ("line_timeout", 0.3)])
def test_read_deadlines(ss, attr, value):
    """The handler's timeout/idle_timeout/line_timeout fire as on threads
    (TimeoutError to handle_error), and the other connections go on."""
    class Echo(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)
    setattr(Echo, attr, value)
    server = make_server(ss.core, Echo)
    rec = recording(server)
    with serving(server):
        with connect(server) as slow, connect(server) as busy:
            if attr == "line_timeout":
                slow.sendall(b"part")       # a line that never ends
            t0 = time.monotonic()
            # busy keeps talking while slow's deadline runs out
            while not rec.event.is_set() and time.monotonic() - t0 < 5:
                busy.sendall(b"ping\n")
                assert recv_line(busy) == b"ping\n"
                time.sleep(0.02)
            elapsed = time.monotonic() - t0
            assert rec.event.wait(5)
            assert 0.2 < elapsed < 2.0, elapsed
            assert slow.recv(10) == b""          # closed by the server
            busy.sendall(b"still\n")
            assert recv_line(busy) == b"still\n"
    assert [type(e) for e in rec.errors] == [TimeoutError]


def test_write_timeout(ss):
    """A client that stops reading: write_timeout ends the handler."""
    class Flood(ss.StreamRequestHandler):
        write_timeout = 0.3

        def handle(self):
            line = self.rfile.readline()
            while line == b"go\n":
                self.wfile.write(b"y" * 65536)
            self.wfile.write(line)
    server = make_server(ss.core, Flood)
    rec = recording(server)
    with serving(server):
        with connect(server) as c, connect(server) as other:
            t0 = time.monotonic()
            c.sendall(b"go\n")
            assert rec.event.wait(5)
            assert time.monotonic() - t0 < 3
            other.sendall(b"x\n")
            assert recv_line(other) == b"x\n"
    assert [type(e) for e in rec.errors] == [TimeoutError]


# ------------------------------------------------------------------ errors

def test_raising_handler_goes_to_handle_error(ss):
    class Picky(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                if line == b"boom\n":
                    raise ValueError("boom")
                self.wfile.write(line)
    server = make_server(ss.core, Picky)
    rec = recording(server)
    with serving(server):
        with connect(server) as bad, connect(server) as good:
            good.sendall(b"a\n")
            assert recv_line(good) == b"a\n"
            bad.sendall(b"boom\n")
            assert rec.event.wait(5)
            assert bad.recv(10) == b""
            good.sendall(b"b\n")
            assert recv_line(good) == b"b\n"
    assert [str(e) for e in rec.errors] == ["boom"]
    assert server.stats().errors == 1


def test_verify_request_and_hooks(ss):
    calls = []

    class S(server_class(ss.core)):
        def verify_request(self, request, client_address):
            calls.append(type(request).__name__)
            return len(calls) != 2      # refuse the second client

    server = S((HOST, 0), echo_handler(ss))
    with serving(server):
        with connect(server) as a:
            a.sendall(b"1\n")
            assert recv_line(a) == b"1\n"
            with connect(server) as b:
                assert b.recv(10) == b""
    assert calls == ["GreenSocket", "GreenSocket"]
    assert server.stats().rejected_verify == 1


def test_service_actions_and_tls_refused(ss):
    ticks = []

    class S(server_class(ss.core)):
        def service_actions(self):
            ticks.append(time.monotonic())

    server = S((HOST, 0), echo_handler(ss))
    with serving(server, poll_interval=0.05):
        time.sleep(0.5)
    assert len(ticks) >= 5

    class TLS(server_class(ss.core)):
        ssl_context = object()
    with pytest.raises(ValueError, match="TLS"):
        TLS((HOST, 0), echo_handler(ss))


def test_missing_greenlet_is_a_clear_import_error(ss, monkeypatch):
    monkeypatch.setitem(sys.modules, "greenlet", None)
    monkeypatch.setattr(_greenlet_server, "_greenlet", None)
    with pytest.raises(ImportError, match="pip install greenlet"):
        server_class(ss.core)((HOST, 0), echo_handler(ss))
    # and importing fastsock does not need it
    code = ("import sys; sys.modules['greenlet'] = None; import fastsock; "
            "print(fastsock.GreenletTCPServer.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         env=dict(os.environ), timeout=30)
    assert out.stdout.strip() == b"GreenletTCPServer", out.stderr


# ------------------------------------------------------------------ shutdown

@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_shutdown_with_clients_connected(ss, unix):
    """shutdown() returns promptly with connections open; their handlers
    get GreenletExit (finally and shutdown_request run); no fd, thread or
    greenlet is left (the no_leaks fixture checks fds and threads)."""
    finished = []

    class Echo(ss.StreamRequestHandler):
        def handle(self):
            try:
                for line in self.rfile:
                    self.wfile.write(line)
            finally:
                finished.append(True)

    server = make_server(ss.core, Echo, unix)
    try:
        thread = threading.Thread(target=server.serve_forever, args=(30,))
        thread.start()
        clients = [connect(server) for _ in range(10)]
        for c in clients:
            c.sendall(b"hi\n")
            assert recv_line(c) == b"hi\n"
        t0 = time.monotonic()
        server.shutdown()
        assert time.monotonic() - t0 < 1.0
        thread.join(5)
        assert not thread.is_alive()
        assert len(finished) == 10
        assert not server._fastsock_greenlets
        for c in clients:
            assert c.recv(10) == b""
            c.close()
        server.server_close()
        assert server.stats().completed == 10
    finally:
        cleanup(server)


def test_serve_again_after_shutdown(ss):
    server = make_server(ss.core, echo_handler(ss))
    for _ in range(2):
        with connect(server) as c:
            thread = threading.Thread(target=server.serve_forever, args=(30,))
            thread.start()
            c.sendall(b"x\n")
            assert recv_line(c) == b"x\n"
            server.shutdown()
            thread.join(5)
    server.server_close()


SIGINT_CHILD = r"""
import sys, socket, fastsock
assert fastsock.BACKEND == sys.argv[1], fastsock.BACKEND

class Echo(fastsock.StreamRequestHandler):
    def handle(self):
        try:
            for line in self.rfile:
                self.wfile.write(line)
        finally:
            print("handler finally", flush=True)

server = fastsock.GreenletTCPServer(("127.0.0.1", 0), Echo)
client = socket.create_connection(server.server_address)
client.sendall(b"x\n")
print("ready", flush=True)
try:
    server.serve_forever(poll_interval=60)
finally:
    print("closing", flush=True)
    server.server_close()
"""


def test_sigint_while_hub_waits(backend_name):
    env = dict(os.environ)
    env["FASTSOCK_PURE"] = "1" if backend_name == "python" else "0"
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_CHILD, backend_name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.5)     # the hub waits in epoll, the handler in readline
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert b"KeyboardInterrupt" in err, err
    assert out.split() == [b"handler", b"finally", b"closing"], (out, err)


# ------------------------------------------------------------------ handle_request

def test_handle_request(ss):
    server = make_server(ss.core, echo_handler(ss))
    try:
        with connect(server) as c:
            c.sendall(b"one\ntwo\n")
            c.shutdown(socket.SHUT_WR)
            server.handle_request()     # serves the connection to the end
            assert c.recv(100) == b"one\ntwo\n"
        server.timeout = 0.2
        timeouts = []
        server.handle_timeout = lambda: timeouts.append(1)
        t0 = time.monotonic()
        server.handle_request()
        assert timeouts == [1] and 0.15 < time.monotonic() - t0 < 2
    finally:
        server.server_close()


def test_reader_outside_the_hub_blocks_normally(core):
    """A GreenSocket used outside a hub greenlet (here: another thread, no
    hub running) waits in the caller, as a plain socket."""
    hub = core.Hub()
    a, b = socket.socketpair()
    try:
        g = fastsock.GreenSocket.adopt(a, hub)
        reader = core.SocketReader(g)
        threading.Timer(0.1, b.sendall, args=(b"late\n",)).start()
        assert reader.readline() == b"late\n"
        g.settimeout(0.1)
        with pytest.raises(TimeoutError):
            reader.readline()
        reader.close()
        g.close()
    finally:
        b.close()
        hub.close()


@pytest.mark.parametrize("reuse", [0, 2])
def test_greenlets_are_reused_and_end_on_close(ss, reuse):
    """A finished greenlet serves the next connection (at most greenlet_reuse
    wait in between); the waiting ones end with the server."""
    seen = []

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            seen.append(greenlet.getcurrent())
            for line in self.rfile:
                self.wfile.write(line)

    server = make_server(ss.core, Handler, greenlet_reuse=reuse)
    try:
        with serving(server):
            for rnd in range(3):        # one after the other
                with connect(server) as c:
                    c.sendall(b"hi %d\n" % rnd)
                    assert recv_line(c) == b"hi %d\n" % rnd
                    c.shutdown(socket.SHUT_WR)
                    assert c.recv(10) == b""
                deadline = time.monotonic() + 5
                while server._fastsock_greenlets and time.monotonic() < deadline:
                    time.sleep(0.01)
            many = [connect(server) for _ in range(5)]   # at once
            for i, c in enumerate(many):
                c.sendall(b"%d\n" % i)
            for i, c in enumerate(many):
                assert recv_line(c) == b"%d\n" % i
            for c in many:
                c.close()
            deadline = time.monotonic() + 5
            while server._fastsock_greenlets and time.monotonic() < deadline:
                time.sleep(0.01)
            idle = list(server._fastsock_idle)
        if reuse:
            assert seen[0] is seen[1] is seen[2]       # one greenlet, reused
            assert len(idle) == reuse                  # the rest ended
        else:
            assert all(g.dead for g in seen)          # one per connection, ended
            assert idle == []
        assert len(seen) == 8
    finally:
        server.server_close()
        cleanup(server)
    assert server._fastsock_idle == []
    assert all(g.dead for g in seen)
