"""Server behaviour on both backends: real sockets, threads and forks."""
import errno
import os
import signal
import socket
import sys
import socketserver as stdlib_ss
import threading
import time
import types

import pytest

from helpers import HOST, recv_all, serving, tcp_exchange, unix_path

HAVE_FORK = hasattr(os, "fork")


class EchoLines:
    """Mixin for StreamRequestHandler: echo every line until EOF."""

    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)


def echo_handler(ss):
    return type("EchoHandler", (EchoLines, ss.StreamRequestHandler), {})


class DatagramEcho:
    def handle(self):
        self.wfile.write(self.rfile.read().upper())


# ---------------------------------------------------------------- stream servers

@pytest.mark.parametrize("kind", ["TCPServer", "ThreadingTCPServer", "ForkingTCPServer",
                                  "UnixStreamServer", "ThreadingUnixStreamServer",
                                  "ForkingUnixStreamServer"])
def test_stream_echo(ss, kind):
    if kind.startswith("Forking") and not HAVE_FORK:
        pytest.skip("no fork on this platform")
    cls = getattr(ss, kind)
    if "Unix" in kind:
        address, family = unix_path(), socket.AF_UNIX
    else:
        address, family = (HOST, 0), socket.AF_INET
    try:
        with serving(cls(address, echo_handler(ss)), poll_interval=0.05) as server:
            payload = b"".join(b"line %d\n" % i for i in range(200)) + b"tail"
            for _ in range(3):
                assert tcp_exchange(server.server_address, payload, family) == payload
    finally:
        if family == socket.AF_UNIX and os.path.exists(address):
            os.unlink(address)
    if kind.startswith("Forking"):
        assert not server.active_children


@pytest.mark.parametrize("kind", ["UDPServer", "ThreadingUDPServer", "ForkingUDPServer",
                                  "UnixDatagramServer", "ThreadingUnixDatagramServer",
                                  "ForkingUnixDatagramServer"])
def test_datagram_echo(ss, kind):
    if kind.startswith("Forking") and not HAVE_FORK:
        pytest.skip("no fork on this platform")
    cls = getattr(ss, kind)
    handler = type("H", (DatagramEcho, ss.DatagramRequestHandler), {})
    paths = []
    if "Unix" in kind:
        address, family = unix_path(), socket.AF_UNIX
        paths.append(address)
    else:
        address, family = (HOST, 0), socket.AF_INET
    try:
        with serving(cls(address, handler), poll_interval=0.05) as server:
            with socket.socket(family, socket.SOCK_DGRAM) as client:
                if family == socket.AF_UNIX:
                    paths.append(unix_path())
                    client.bind(paths[-1])
                else:
                    client.bind((HOST, 0))
                client.settimeout(10)
                for i in range(5):
                    client.sendto(b"datagram %d" % i, server.server_address)
                    data, addr = client.recvfrom(8192)
                    assert data == b"DATAGRAM %d" % i
                    assert addr == server.server_address
    finally:
        for path in paths:
            if os.path.exists(path):
                os.unlink(path)


def test_udp_max_packet_size_truncates(ss):
    got = []

    class Handler(ss.DatagramRequestHandler):
        def handle(self):
            got.append(self.packet)

    class Server(ss.UDPServer):
        max_packet_size = 10

    with Server((HOST, 0), Handler) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.sendto(b"0123456789abcdef", server.server_address)
        server.handle_request()
    assert got == [b"0123456789"]


def test_ipv6_client_address(ss):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    seen = []

    class Server(ss.TCPServer):
        address_family = socket.AF_INET6

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            seen.append((self.client_address, self.request.getpeername()))

    try:
        server = Server(("::1", 0), Handler)
    except OSError as exc:
        pytest.skip("no IPv6 loopback: %s" % exc)
    with server, socket.create_connection(server.server_address[:2]):
        server.handle_request()
    (address, peer), = seen
    assert address == peer and len(address) == 4


# ---------------------------------------------------------------- hook order

def record_hooks(base, handler_base, events):
    """A server subclass that logs every hook (then calls the base)."""

    def logged(name):
        original = getattr(base, name)

        def hook(self, *args, **kwargs):
            events.append(name)
            return original(self, *args, **kwargs)
        return hook

    names = ["get_request", "verify_request", "process_request", "finish_request",
             "shutdown_request", "close_request", "handle_error", "handle_timeout",
             "server_close", "server_activate", "server_bind"]
    server_cls = type("Logged", (base,), {name: logged(name) for name in names})

    class Handler(handler_base):
        def setup(self):
            events.append("handler.setup")
            super().setup()

        def handle(self):
            events.append("handler.handle")
            line = self.rfile.readline()
            if line == b"boom\n":
                raise ValueError("handler failure")
            self.wfile.write(line)

        def finish(self):
            events.append("handler.finish")
            super().finish()

    return server_cls, Handler


@pytest.mark.parametrize("verify", [True, False])
@pytest.mark.parametrize("payload", [b"hello\n", b"boom\n"])
def test_hook_order_matches_stdlib(ss, payload, verify, capsys):
    def run(module):
        events = []
        server_cls, handler = record_hooks(module.TCPServer, module.StreamRequestHandler, events)
        server_cls.verify_request = lambda self, r, a: events.append("verify_request") or verify
        with server_cls((HOST, 0), handler) as server:
            with socket.create_connection(server.server_address) as client:
                client.sendall(payload)
                server.handle_request()
                client.settimeout(10)
                reply = recv_all(client)
        return events, reply

    expected = run(stdlib_ss)
    assert run(ss) == expected
    capsys.readouterr()  # handle_error's traceback for the boom case


def test_service_actions_paced_by_poll_interval(ss):
    calls = []

    class Server(ss.TCPServer):
        def service_actions(self):
            calls.append(time.monotonic())

    with serving(Server((HOST, 0), ss.StreamRequestHandler), poll_interval=0.05):
        time.sleep(0.5)
    assert len(calls) >= 3  # idle loop still turns about every 50 ms


def test_shutdown_wakes_without_polling(ss):
    # With a 60 s poll interval only the wakeup fd can end the loop in time.
    server = ss.TCPServer((HOST, 0), ss.StreamRequestHandler)
    thread = threading.Thread(target=server.serve_forever, args=(60,))
    thread.start()
    time.sleep(0.2)
    done = threading.Event()
    stopper = threading.Thread(target=lambda: (server.shutdown(), done.set()))
    stopper.start()
    try:
        assert done.wait(10), "shutdown() did not wake serve_forever"
    finally:
        if not done.is_set():
            server._BaseServer__shutdown_request = True
        stopper.join(70)
        thread.join(70)
        server.server_close()


def test_shutdown_by_private_flag(ss):
    # Code in the wild stops a server by setting the mangled flag directly.
    server = ss.TCPServer((HOST, 0), ss.StreamRequestHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    time.sleep(0.1)
    server._BaseServer__shutdown_request = True
    thread.join(10)
    alive = thread.is_alive()
    if alive:
        server.shutdown()
    server.server_close()
    assert not alive
    # The flag is reset, so the server can serve again.
    assert server._BaseServer__shutdown_request is False
    with serving(server.__class__((HOST, 0), echo_handler(ss))) as again:
        assert tcp_exchange(again.server_address, b"x\n") == b"x\n"


def test_serve_forever_restartable(ss):
    server = ss.TCPServer((HOST, 0), echo_handler(ss))
    try:
        for _ in range(3):
            thread = threading.Thread(target=server.serve_forever, args=(0.05,))
            thread.start()
            assert tcp_exchange(server.server_address, b"again\n") == b"again\n"
            server.shutdown()
            thread.join(10)
            assert not thread.is_alive()
    finally:
        server.server_close()


def test_socket_closed_under_loop_does_not_spin(ss):
    # The stdlib busy-loops here; fastsock idles until shutdown().
    turns = []

    class Server(ss.TCPServer):
        def service_actions(self):
            turns.append(1)

    server = Server((HOST, 0), ss.StreamRequestHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.2,))
    thread.start()
    time.sleep(0.1)
    server.socket.close()
    time.sleep(0.6)
    server.shutdown()
    thread.join(10)
    assert not thread.is_alive()
    assert len(turns) < 50, len(turns)


def test_handle_request_timeout(ss):
    calls = []

    class Server(ss.TCPServer):
        timeout = 0.1

        def handle_timeout(self):
            calls.append("timeout")

    with Server((HOST, 0), ss.StreamRequestHandler) as server:
        server.handle_request()
        server.socket.settimeout(0.05)
        server.timeout = None
        server.handle_request()
    assert calls == ["timeout", "timeout"]


HANDLE_ERROR_CHILD = r"""
import logging, socket, sys
import fastsock
if sys.argv[1] == "stdlib":
    import socketserver as ss
else:
    ss = fastsock
if sys.argv[2] == "logging":
    logging.basicConfig(format="LOG %(name)s %(levelname)s %(message)s")

class Handler(ss.BaseRequestHandler):
    def handle(self):
        raise RuntimeError("kaboom")

with ss.TCPServer(("127.0.0.1", 0), Handler) as server:
    with socket.create_connection(server.server_address) as client:
        server.handle_request()
        print(client.getsockname(), flush=True)
"""


def handle_error_output(impl, mode, backend_name):
    import subprocess
    import sys
    env = dict(os.environ, FASTSOCK_PURE="1" if backend_name == "python" else "0")
    result = subprocess.run([sys.executable, "-c", HANDLE_ERROR_CHILD, impl, mode],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    # The client's port differs between runs; so do the file paths.
    return result.stderr.replace(result.stdout.strip(), "ADDR")


def test_handle_error_default_text_is_the_stdlib_s(backend_name):
    ours = handle_error_output("fastsock", "plain", backend_name)
    theirs = handle_error_output("stdlib", "plain", backend_name)
    strip = lambda text: [l for l in text.splitlines() if not l.startswith("  ")]
    assert strip(ours) == strip(theirs)
    assert ours.startswith("-" * 40 + "\nException occurred during processing of request from ADDR")
    assert "RuntimeError: kaboom" in ours


def test_handle_error_goes_through_logging_when_configured(backend_name):
    out = handle_error_output("fastsock", "logging", backend_name)
    assert out.startswith("LOG fastsock ERROR Exception occurred during processing of request from ADDR")
    assert "RuntimeError: kaboom" in out and "-" * 40 not in out


def test_base_exception_propagates_and_closes(ss):
    closed = []

    class Server(ss.TCPServer):
        def close_request(self, request):
            closed.append(request)
            super().close_request(request)

    class Handler(ss.BaseRequestHandler):
        def handle(self):
            raise KeyboardInterrupt

    with Server((HOST, 0), Handler) as server:
        with socket.create_connection(server.server_address):
            with pytest.raises(KeyboardInterrupt):
                server.handle_request()
    assert len(closed) == 1 and closed[0].fileno() == -1


def test_get_request_oserror_is_ignored(ss):
    class Server(ss.TCPServer):
        def get_request(self):
            raise ConnectionAbortedError(errno.ECONNABORTED, "gone")

    with Server((HOST, 0), ss.StreamRequestHandler) as server:
        with socket.create_connection(server.server_address):
            assert server.handle_request() is None


def test_overridden_get_request_is_used(ss):
    seen = []

    class Server(ss.TCPServer):
        def get_request(self):
            request, address = self.socket.accept()
            seen.append(address)
            return request, ("tagged", address)

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(repr(self.client_address[0]).encode())

    with serving(Server((HOST, 0), Handler)) as server:
        assert tcp_exchange(server.server_address, b"") == b"'tagged'"
    assert len(seen) == 1


def test_context_manager_and_bind_failure(ss):
    with ss.TCPServer((HOST, 0), ss.StreamRequestHandler) as server:
        address = server.server_address
        assert server.fileno() == server.socket.fileno()
        # A second bind on the same address fails and closes its socket
        # (the leak check of this test would see it otherwise).
        with pytest.raises(OSError):
            ss.TCPServer(address, ss.StreamRequestHandler)
    assert server.socket.fileno() == -1


def test_bind_and_activate_false(ss):
    server = ss.TCPServer((HOST, 0), ss.StreamRequestHandler, bind_and_activate=False)
    try:
        server.allow_reuse_address = True
        server.server_bind()
        server.server_activate()
        assert server.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert server.server_address[1] != 0
    finally:
        server.server_close()


def test_reuse_port(ss):
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT")

    class Server(ss.TCPServer):
        allow_reuse_port = True

    with Server((HOST, 0), ss.StreamRequestHandler) as first:
        assert first.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        with Server(first.server_address, ss.StreamRequestHandler) as second:
            assert second.server_address == first.server_address


# ---------------------------------------------------------------- threading

def test_threading_threads_reaped_and_joined(ss):
    release = threading.Event()

    class Handler(ss.BaseRequestHandler):
        def handle(self):
            release.wait(10)

    server = ss.ThreadingTCPServer((HOST, 0), Handler)
    with serving(server, poll_interval=0.05):
        clients = [socket.create_connection(server.server_address) for _ in range(5)]
        deadline = time.monotonic() + 10
        # _threads becomes a per-instance list at the first request.
        running = lambda: len(vars(server).get("_threads", ()))
        while running() < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert running() == 5
        release.set()
        for client in clients:
            client.settimeout(10)
            assert client.recv(1) == b""
            client.close()
    # server_close() joined every request thread
    assert all(not t.is_alive() for t in server._threads) and not server._threads


def test_threading_daemon_and_no_block_on_close(ss):
    class Server(ss.ThreadingTCPServer):
        daemon_threads = True
        block_on_close = False

    started = threading.Event()
    release = threading.Event()

    class Handler(ss.BaseRequestHandler):
        def handle(self):
            self.server.thread = threading.current_thread()
            started.set()
            release.wait(10)

    server = Server((HOST, 0), Handler)
    with socket.create_connection(server.server_address):
        server.handle_request()
        assert started.wait(10)
        assert server.thread.daemon
        assert "_threads" not in vars(server)
        server.server_close()  # does not wait for the handler
        assert server.thread.is_alive()
        release.set()
        server.thread.join(10)


# ---------------------------------------------------------------- forking

@pytest.mark.skipif(not HAVE_FORK, reason="no fork on this platform")
def test_forking_children_reaped(ss):
    class Handler(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"%d\n" % os.getpid())

    class Server(ss.ForkingTCPServer):
        max_children = 3

    with serving(Server((HOST, 0), Handler), poll_interval=0.05) as server:
        pids = {int(tcp_exchange(server.server_address, b"")) for _ in range(8)}
    assert len(pids) == 8 and os.getpid() not in pids
    assert not server.active_children
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


@pytest.mark.skipif(not HAVE_FORK, reason="no fork on this platform")
def test_forking_child_error_status(ss):
    class Handler(ss.BaseRequestHandler):
        def handle(self):
            raise RuntimeError("child failure")

    class Server(ss.ForkingTCPServer):
        def handle_error(self, request, client_address):
            os.write(2, b"handled in child %d\n" % os.getpid())

    with Server((HOST, 0), Handler) as server:
        with socket.create_connection(server.server_address) as client:
            server.handle_request()
            client.settimeout(10)
            assert client.recv(1) == b""
        (pid,) = server.active_children
        _, status = os.waitpid(pid, 0)
        server.active_children.discard(pid)
    assert os.waitstatus_to_exitcode(status) == 1


# ---------------------------------------------------------------- signals

def test_signal_handler_runs_while_blocked(ss):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")
    hits = []
    old = signal.signal(signal.SIGALRM, lambda *a: hits.append(1))
    server = ss.TCPServer((HOST, 0), ss.StreamRequestHandler)
    try:
        server.timeout = 0.6
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        start = time.monotonic()
        server.handle_request()  # times out, after the handler ran
        elapsed = time.monotonic() - start
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        server.server_close()
    assert hits == [1]
    assert elapsed >= 0.55  # EINTR resumed the wait with the remaining time


# ---------------------------------------------------------------- thread pool

@pytest.mark.parametrize("kind", ["ThreadPoolTCPServer", "ThreadPoolUnixStreamServer"])
def test_thread_pool_reuses_workers(ss, kind):
    import fastsock
    cls = getattr(fastsock, kind)
    cls = type(kind, (cls,), {"_core": ss.core})
    seen = set()

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            seen.add(threading.get_ident())
            for line in self.rfile:
                self.wfile.write(line)

    if "Unix" in kind:
        address, family = unix_path(), socket.AF_UNIX
    else:
        address, family = (HOST, 0), socket.AF_INET
    try:
        with serving(cls(address, Handler), poll_interval=0.05) as server:
            for i in range(30):
                assert tcp_exchange(server.server_address, b"%d\n" % i, family) == b"%d\n" % i
                # Let the worker finish (seeing EOF, closing) first: on a
                # loaded machine the next connection could otherwise come
                # before every worker is idle, and start one more.
                # Bounded: a worker that never gets idle fails below.
                deadline = time.monotonic() + 2
                while time.monotonic() < deadline:
                    stats = server.pool_stats
                    if server.stats().completed > i and stats["idle"] >= stats["workers"]:
                        break
                    time.sleep(0.001)
            stats = server.pool_stats
    finally:
        if family == socket.AF_UNIX and os.path.exists(address):
            os.unlink(address)
    # Sequential connections, each after a worker is idle again: the
    # workers are reused -- one, plus the spare that serve_forever()'s
    # accepting workers keep free for the next client (see _WorkerPool.lead).
    assert len(seen) <= 2, seen
    assert stats["workers"] <= 2 and stats["queued"] == 0, stats
    assert server.pool_stats["workers"] == 0  # joined on close


class _AfterTCPServer(stdlib_ss.BaseServer):
    """Marker base for a finish_request() that TCPServer's super() reaches."""


@pytest.mark.parametrize("hook, where", [
    (hook, where)
    for hook in ["get_request", "verify_request", "process_request", "process_request_thread",
                 "finish_request", "shutdown_request", "close_request"]
    for where in ["class", "instance"]
] + [("finish_request after TCPServer", "class")])
def test_thread_pool_calls_overridden_hooks(ss, hook, where):
    # serve_forever() on a pool takes short paths while the hooks are the
    # stock ones; any of them overridden -- in a subclass, on the instance,
    # or after TCPServer in the MRO -- is called for every request, as
    # ThreadingMixIn would.
    import fastsock
    calls = []
    name = hook.split()[0]
    pool_cls = type("ThreadPoolTCPServer", (fastsock.ThreadPoolTCPServer,), {"_core": ss.core})
    bases = (pool_cls,)
    if hook.endswith("after TCPServer"):
        def finish_request(self, request, client_address):
            calls.append(name)
            ss.BaseServer.finish_request(self, request, client_address)
        late = type("Late", (ss.BaseServer,), {"finish_request": finish_request})
        bases = (fastsock.ThreadPoolMixIn, ss.TCPServer, late)
    else:
        original = getattr(pool_cls, name)

        def wrapper(self, *args):
            calls.append(name)
            return original(self, *args)
    cls = type("Server", bases, {"_core": ss.core})
    if where == "class" and not hook.endswith("after TCPServer"):
        setattr(cls, name, wrapper)
    server = cls((HOST, 0), echo_handler(ss))
    if where == "instance":
        setattr(server, name, types.MethodType(wrapper, server))
    with serving(server, poll_interval=0.05):
        for i in range(3):
            assert tcp_exchange(server.server_address, b"%d\n" % i) == b"%d\n" % i
        deadline = time.monotonic() + 5     # close_request() may come after EOF
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.005)
        stats = server.stats()
    assert calls == [name] * 3
    assert (stats.accepted, stats.completed, stats.errors) == (3, 3, 0)


def test_thread_pool_stock_path_errors_and_counts(ss, caplog):
    # The short paths keep every count and the error path: a handler that
    # raises goes to handle_error(request, client_address) on its worker,
    # the connection is still shut down and closed, and the counts add up.
    import fastsock
    errors = []

    class Server(fastsock.ThreadPoolTCPServer):
        _core = ss.core

        def handle_error(self, request, client_address):
            errors.append((sys.exc_info()[0], type(request), client_address,
                           threading.current_thread().name))

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline()
            if line == b"fail\n":
                raise ValueError("bad request")
            self.wfile.write(line)

    with serving(Server((HOST, 0), Handler), poll_interval=0.05) as server:
        with socket.create_connection(server.server_address, timeout=10) as client:
            client.sendall(b"fail\n")
            assert recv_all(client) == b""          # closed after the error
            port = client.getsockname()
        for i in range(4):
            assert tcp_exchange(server.server_address, b"%d\n" % i) == b"%d\n" % i
        deadline = time.monotonic() + 5
        while server.stats().completed < 5 and time.monotonic() < deadline:
            time.sleep(0.005)
        stats = server.stats()
    assert errors == [(ValueError, socket.socket, port, "fastsock-worker")]
    assert (stats.accepted, stats.completed, stats.errors, stats.active) == (5, 5, 1, 0)


@pytest.mark.parametrize("path", ["workers accept", "queue"])
def test_thread_pool_backpressure_never_drops(ss, backend_name, path):
    import fastsock
    release = threading.Event()
    started = []

    class Server(fastsock.ThreadPoolTCPServer):
        _core = ss.core
        max_workers = 2
        max_queue = 2
        request_queue_size = 64

    if path == "queue":
        # (an overridden verify_request: the serve loop accepts and queues)
        Server.verify_request = lambda self, request, client_address: True
    queued = 2 if path == "queue" else 0

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            started.append(1)
            release.wait(20)
            self.wfile.write(self.rfile.readline())

    server = Server((HOST, 0), Handler)
    with serving(server, poll_interval=0.05):
        clients = [socket.create_connection(server.server_address) for _ in range(8)]
        for i, client in enumerate(clients):
            client.settimeout(20)
            client.sendall(b"client %d\n" % i)
        deadline = time.monotonic() + 10
        while ((server.pool_stats["queued"] < queued or len(started) < 2)
               and time.monotonic() < deadline):
            time.sleep(0.01)
        time.sleep(0.2)
        stats = server.pool_stats
        # 2 running, 2 queued (none when the workers accept by themselves),
        # the rest still in the listen backlog.
        assert stats["workers"] == 2 and stats["queued"] == queued, stats
        assert len(started) == 2
        # (the serve loop holds one more, waiting for room in the queue)
        assert server.stats().accepted == (5 if queued else 2)
        release.set()
        replies = [client.recv(100) for client in clients]
        for client in clients:
            client.close()
    assert replies == [b"client %d\n" % i for i in range(8)]


def _accepting_pool(ss, **attrs):
    import fastsock
    attrs.setdefault("_core", ss.core)
    return type("Pool", (fastsock.ThreadPoolTCPServer,), attrs)


def _gated_echo(ss, release, hold=b"", started=None):
    # An echo of one line that waits for *release* first when the line
    # starts with *hold* (b"": always); *started* collects the threads.
    class Handler(ss.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline()
            if started is not None:
                started.append(threading.current_thread())
            if line.startswith(hold):
                release.wait(10)
            self.wfile.write(line)
    return Handler


def _held_clients(address, count, timeout=20):
    clients = []
    for i in range(count):
        client = socket.create_connection(address, timeout=timeout)
        client.sendall(b"hold %d\n" % i)
        clients.append(client)
    return clients


@pytest.mark.parametrize("stuck_after", [None, 0.3])
def test_pool_workers_accept_and_long_handlers_do_not_block(ss, stuck_after, monkeypatch):
    # serve_forever() with the stock hooks: the workers accept by
    # themselves, one kept free for the next client.  Clients whose
    # handlers run long never hold up the next one, whether the spare
    # worker starts at once (none finished lately) or, when a worker did
    # finish a moment ago (made likely here with a long stuck_after), once
    # none has for stuck_after: the worker wakes the serve loop to check
    # (its poll_interval is far longer than the test).
    from fastsock import _server
    poll_interval = 0.05
    if stuck_after is not None:
        monkeypatch.setattr(_server, "_STUCK_AFTER", stuck_after)
        poll_interval = 60
    release = threading.Event()
    started = []
    Handler = _gated_echo(ss, release, b"hold", started)

    server = _accepting_pool(ss, max_workers=8)((HOST, 0), Handler)
    lfd = server.fileno()
    with serving(server, poll_interval=poll_interval):
        assert tcp_exchange(server.server_address, b"quick\n") == b"quick\n"
        try:
            held = _held_clients(server.server_address, 5)
            deadline = time.monotonic() + 10
            while len(started) < 6 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert len(started) == 6                    # every client is being served
            assert len(set(started[1:])) == 5           # on threads of its own
            # Not through the serve loop: the workers took the connections.
            assert not os.get_blocking(lfd)
            assert server.socket.gettimeout() is None   # as the socket object says
            assert server.pool_stats["queued"] == 0
            assert tcp_exchange(server.server_address, b"one more\n") == b"one more\n"
            release.set()
            for i, client in enumerate(held):
                assert recv_all(client) == b"hold %d\n" % i
        finally:
            release.set()
            for client in held:
                client.close()
    stats = server.stats()
    assert (stats.accepted, stats.completed, stats.errors) == (7, 7, 0)


def test_pool_accepting_session_restores_and_releases(ss):
    # After serve_forever(): the workers of the session exit, and then its
    # descriptors (epoll sets, the stop pipe) are closed and the listening
    # descriptor is blocking again; a second serve_forever() works.
    def fds():
        return len(os.listdir("/proc/self/fd"))

    server = _accepting_pool(ss)((HOST, 0), echo_handler(ss))
    try:
        before, threads = fds(), threading.active_count()
        for run in range(2):
            thread = threading.Thread(target=server.serve_forever, args=(0.05,))
            thread.start()
            try:
                for i in range(20):
                    assert tcp_exchange(server.server_address, b"%d\n" % i) == b"%d\n" % i
                assert not os.get_blocking(server.fileno())
            finally:
                server.shutdown()
                thread.join(10)
            deadline = time.monotonic() + 10
            while ((server.pool_stats["workers"] or fds() > before
                    or threading.active_count() > threads) and time.monotonic() < deadline):
                time.sleep(0.01)
            # (blocking again once the session's last worker has left)
            assert os.get_blocking(server.fileno())
            assert server.pool_stats["workers"] == 0, server.pool_stats
            assert threading.active_count() == threads
            assert fds() == before
        # A plain accept() on the server's socket blocks (times out) again.
        server.socket.settimeout(0.05)
        with pytest.raises(TimeoutError):
            server.socket.accept()
    finally:
        server.server_close()


def test_pool_next_session_takes_over_the_restore(ss):
    # serve_forever() ends while a worker is still on a connection, and
    # runs again before that worker is done: the new session, not the old
    # one's last worker, makes the descriptor blocking again, at its end.
    release = threading.Event()
    Handler = _gated_echo(ss, release, b"hold")

    server = _accepting_pool(ss)((HOST, 0), Handler)

    def run():
        thread = threading.Thread(target=server.serve_forever, args=(0.05,))
        thread.start()
        return thread

    try:
        first = run()
        held = socket.create_connection(server.server_address, timeout=10)
        held.sendall(b"hold\n")
        deadline = time.monotonic() + 10
        while server.stats().active < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        server.shutdown()
        first.join(10)
        second = run()
        try:
            release.set()
            held.shutdown(socket.SHUT_WR)
            assert recv_all(held) == b"hold\n"
            held.close()
            time.sleep(0.2)     # the first session's last worker has left
            assert not os.get_blocking(server.fileno())
            for i in range(3):
                assert tcp_exchange(server.server_address, b"%d\n" % i) == b"%d\n" % i
        finally:
            server.shutdown()
            second.join(10)
        deadline = time.monotonic() + 10
        while server.pool_stats["workers"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.get_blocking(server.fileno())
    finally:
        release.set()
        server.server_close()


@pytest.mark.parametrize("path", ["workers accept", "queue"])
def test_pool_idle_workers_exit(ss, path):
    # worker_idle_timeout: workers idle that long exit -- all of them on the
    # queue path; all but one when the workers accept (one stays waiting
    # for the next client).  The server still serves afterwards.
    release = threading.Event()
    Handler = _gated_echo(ss, release)

    attrs = {"worker_idle_timeout": 0.2, "max_workers": 8}
    if path == "queue":
        attrs["verify_request"] = lambda self, request, client_address: True
    server = _accepting_pool(ss, **attrs)((HOST, 0), Handler)
    with serving(server, poll_interval=0.05):
        held = _held_clients(server.server_address, 4)
        try:
            deadline = time.monotonic() + 10
            while server.stats().active < 4 and time.monotonic() < deadline:
                time.sleep(0.005)
            assert server.pool_stats["workers"] >= 4
            release.set()
            for i, client in enumerate(held):
                client.shutdown(socket.SHUT_WR)
                assert recv_all(client) == b"hold %d\n" % i
        finally:
            release.set()
            for client in held:
                client.close()
        left = 1 if path == "workers accept" else 0
        deadline = time.monotonic() + 10
        while server.pool_stats["workers"] > left and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        assert server.pool_stats == {"workers": left, "idle": left, "queued": 0}
        assert tcp_exchange(server.server_address, b"again\n") == b"again\n"


def test_pool_idle_timeout_zero_does_not_spin(ss):
    # worker_idle_timeout = 0: idle workers leave at once, but the one free
    # worker the accepting mode keeps waits without spinning on its wait.
    server = _accepting_pool(ss, worker_idle_timeout=0)((HOST, 0), echo_handler(ss))
    with serving(server, poll_interval=0.05):
        for i in range(3):
            assert tcp_exchange(server.server_address, b"%d\n" % i) == b"%d\n" % i
        time.sleep(0.2)
        cpu = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu < 0.2
        assert server.pool_stats["workers"] == 1
        assert tcp_exchange(server.server_address, b"again\n") == b"again\n"


def test_pool_socket_with_timeout_uses_the_serve_loop(ss):
    # A listening socket with a timeout: the serve loop accepts (as the
    # stdlib's), the descriptor is left alone, requests are still served.
    server = _accepting_pool(ss)((HOST, 0), echo_handler(ss))
    server.socket.settimeout(5.0)
    with serving(server, poll_interval=0.05):
        for i in range(3):
            assert tcp_exchange(server.server_address, b"%d\n" % i) == b"%d\n" % i
        assert server.socket.gettimeout() == 5.0
    assert server.stats().accepted == 3


def test_accept_nowait(ss):
    # core.accept_nowait(): None when nothing waits, else what accept()
    # gives; only plain sockets without a timeout.
    with socket.create_server((HOST, 0)) as listener:
        listener.setblocking(False)
        assert ss.core.accept_nowait(listener) is None
        with socket.create_connection(listener.getsockname()) as client:
            deadline = time.monotonic() + 5
            got = None
            while got is None and time.monotonic() < deadline:
                got = ss.core.accept_nowait(listener)
            conn, address = got
            with conn:
                assert type(conn) is socket.socket
                assert address == client.getsockname()
                assert conn.gettimeout() is None and conn.getblocking()
        listener.settimeout(1.0)
        with pytest.raises(ValueError):
            ss.core.accept_nowait(listener)


def test_pool_listener_closed_under_the_session(ss):
    # The listening socket closed while the workers accept: a worker back
    # from its connection finds accept() failing (EBADF) and idles until
    # the session ends instead of spinning; shutdown() still ends it.
    release = threading.Event()
    Handler = _gated_echo(ss, release)

    server = _accepting_pool(ss)((HOST, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    try:
        with socket.create_connection(server.server_address, timeout=10) as client:
            client.sendall(b"x\n")
            deadline = time.monotonic() + 10
            while server.stats().active < 1 and time.monotonic() < deadline:
                time.sleep(0.005)
            server.socket.close()
            release.set()
            client.shutdown(socket.SHUT_WR)
            assert recv_all(client) == b"x\n"
        time.sleep(0.1)
        cpu = time.process_time()
        time.sleep(0.5)
        assert time.process_time() - cpu < 0.2
        assert server.stats().accept_errors >= 1
    finally:
        release.set()
        server.shutdown()
        thread.join(10)
        server.server_close()
    assert not thread.is_alive()


def test_thread_pool_close_drains_queue(ss):
    import fastsock
    gate = threading.Event()
    handled = []

    class Server(fastsock.ThreadPoolTCPServer):
        _core = ss.core
        max_workers = 1
        max_queue = 5

    class Handler(ss.BaseRequestHandler):
        def handle(self):
            gate.wait(10)
            handled.append(self.client_address)

    server = Server((HOST, 0), Handler)
    clients = [socket.create_connection(server.server_address) for _ in range(3)]
    for _ in clients:
        server.handle_request()
    assert server.pool_stats["queued"] == 2
    gate.set()
    server.server_close()   # lets the worker finish every queued request
    assert len(handled) == 3
    for client in clients:
        client.close()


def test_thread_pool_worker_retires_after_max_requests(ss):
    # A worker hands its place to a fresh thread after worker_max_requests
    # requests (glibc frees a thread's cached blocks only when it exits:
    # docs/hardening.md, finding 5); no request is lost on the way.
    import fastsock
    served_by = []

    class Server(fastsock.ThreadPoolTCPServer):
        _core = ss.core
        max_workers = 1
        worker_max_requests = 4

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            served_by.append(threading.current_thread())   # kept alive: no id reuse
            self.wfile.write(self.rfile.readline())

    with serving(Server((HOST, 0), Handler), poll_interval=0.05) as server:
        for i in range(13):
            assert tcp_exchange(server.server_address, b"%d\n" % i) == b"%d\n" % i
    assert len(served_by) == 13
    runs = [served_by[i:i + 4] for i in range(0, 13, 4)]
    assert all(len(set(run)) == 1 for run in runs), runs
    assert len(set(served_by)) == 4
    assert not any(t.is_alive() for t in served_by)
    assert server.pool_stats["workers"] == 0    # joined on close


@pytest.mark.parametrize("limit", [None, 0, 1])
def test_thread_pool_close_drains_queue_with_retiring_workers(ss, limit):
    import fastsock
    gate = threading.Event()
    handled = []

    class Server(fastsock.ThreadPoolTCPServer):
        _core = ss.core
        max_workers = 1
        max_queue = 5
        worker_max_requests = limit

    class Handler(ss.BaseRequestHandler):
        def handle(self):
            gate.wait(10)
            handled.append(threading.current_thread())

    server = Server((HOST, 0), Handler)
    clients = [socket.create_connection(server.server_address) for _ in range(4)]
    for _ in clients:
        server.handle_request()
    gate.set()
    server.server_close()   # every queued request is served, retiring or not
    assert len(handled) == 4
    assert len(set(handled)) == (1 if not limit else len(set(handled)))
    assert server.pool_stats["workers"] == 0
    for client in clients:
        client.close()


def test_thread_pool_handler_errors_keep_worker(ss, caplog):
    import fastsock

    class Server(fastsock.ThreadPoolTCPServer):
        _core = ss.core
        max_workers = 1

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            if self.rfile.readline() == b"fail\n":
                raise ValueError("bad request")
            self.wfile.write(b"ok\n")

    with serving(Server((HOST, 0), Handler), poll_interval=0.05) as server:
        assert tcp_exchange(server.server_address, b"fail\n") == b""
        assert tcp_exchange(server.server_address, b"fine\n") == b"ok\n"
        assert server.pool_stats["workers"] == 1
    # pytest configures logging, so handle_error logs on the "fastsock" logger.
    (record,) = caplog.records
    assert record.name == "fastsock" and record.exc_info[0] is ValueError


# ---------------------------------------------------------------- TCP_NODELAY

@pytest.mark.parametrize("attrs, expected", [
    ({}, True),                                   # fastsock's default
    ({"tcp_nodelay": False}, False),              # the stdlib's behaviour
    ({"tcp_nodelay": False, "disable_nagle_algorithm": True}, True),
])
def test_tcp_nodelay(ss, attrs, expected):
    seen = []

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            seen.append(bool(self.connection.getsockopt(socket.IPPROTO_TCP,
                                                        socket.TCP_NODELAY)))

    Handler = type("H", (Handler,), attrs)
    with ss.TCPServer((HOST, 0), Handler) as server:
        with socket.create_connection(server.server_address):
            server.handle_request()
    assert seen == [expected]


def test_tcp_nodelay_ignored_on_unix_sockets(ss):
    path = unix_path()
    try:
        with serving(ss.UnixStreamServer(path, echo_handler(ss))):
            assert tcp_exchange(path, b"unix\n", socket.AF_UNIX) == b"unix\n"
    finally:
        os.unlink(path)


@pytest.mark.parametrize("quiet", [True, False])
def test_thread_pool_quiet_disconnects(ss, caplog, quiet):
    import fastsock
    import logging

    class Server(fastsock.ThreadPoolTCPServer):
        _core = ss.core
        quiet_disconnects = quiet

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            if self.rfile.readline() == b"reset\n":
                raise ConnectionResetError(104, "Connection reset by peer")
            raise ValueError("a real bug")

    caplog.set_level(logging.DEBUG, logger="fastsock")
    with serving(Server((HOST, 0), Handler), poll_interval=0.05) as server:
        tcp_exchange(server.server_address, b"reset\n")
        tcp_exchange(server.server_address, b"bug\n")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    if quiet:
        assert [r.exc_info[0] for r in errors] == [ValueError]
        assert len(debug) == 1 and "disconnected" in debug[0].getMessage()
    else:
        assert sorted(r.exc_info[0].__name__ for r in errors) == [
            "ConnectionResetError", "ValueError"]


# ---------------------------------------------------------------- UDP batching

@pytest.mark.parametrize("batch", [1, 4, 32])
def test_udp_batch_preserves_order_and_truncation(ss, batch):
    got = []

    class Handler(ss.DatagramRequestHandler):
        def handle(self):
            got.append((self.packet, self.client_address))

    class Server(ss.UDPServer):
        recv_batch = batch
        max_packet_size = 100

    with Server((HOST, 0), Handler) as server, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind((HOST, 0))
        sent = [(b"%03d" % i) * (i % 50) for i in range(40)]
        for payload in sent:
            client.sendto(payload, server.server_address)
        time.sleep(0.1)   # all 40 are waiting in the kernel now
        for _ in sent:
            server.handle_request()   # takes from the batch without waiting
        assert {addr for _, addr in got} == {client.getsockname()}
    assert [data for data, _ in got] == [p[:100] for p in sent]


def test_udp_batch_receiver_direct(core):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
        a.bind((HOST, 0))
        b.bind((HOST, 0))
        receiver = core.DatagramReceiver(a, 8, 5)
        assert receiver.receive() == []          # nothing waiting: never blocks
        for i in range(7):
            b.sendto(b"datagram-%d" % i, a.getsockname())
        time.sleep(0.1)
        first = receiver.receive()
        rest = receiver.receive()
        assert [d for d, _ in first] == [b"datagram"] * 5          # truncated to 8
        assert len(rest) == 2 and all(addr == b.getsockname() for _, addr in first + rest)
        a.settimeout(1.0)                          # a timeout: not batched
        b.sendto(b"x", a.getsockname())
        time.sleep(0.05)
        assert receiver.receive() == []
        assert core.recvfrom(a, 10)[0] == b"x"
        with pytest.raises(ValueError):
            core.DatagramReceiver(a, 8, 0)


def test_udp_pending_batch_served_by_serve_forever(ss):
    class Handler(ss.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(self.packet)

    with serving(ss.UDPServer((HOST, 0), Handler), poll_interval=30) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.settimeout(10)
            for i in range(64):       # a burst: several batches' worth
                client.sendto(b"%d" % i, server.server_address)
            replies = sorted(int(client.recv(100)) for _ in range(64))
    assert replies == list(range(64))


def test_threads_list_stays_bounded(ss):
    # Many sequential requests: finished threads are swept, the list stays small.
    with serving(ss.ThreadingTCPServer((HOST, 0), echo_handler(ss)), poll_interval=0.05) as server:
        for i in range(100):
            assert tcp_exchange(server.server_address, b"%d\n" % i) == b"%d\n" % i
        assert len(server._threads) <= 16


@pytest.mark.skipif(not HAVE_FORK, reason="no fork on this platform")
def test_forking_reaps_only_its_own_children(ss):
    import subprocess
    import sys
    # A child of the application, already exited (a zombie) when the server
    # has to wait for a free slot: the stdlib's waitpid(-1) can steal it.
    app_child = subprocess.Popen([sys.executable, "-c", "raise SystemExit(7)"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open("/proc/%d/stat" % app_child.pid) as stat:
            if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.01)

    class Server(ss.ForkingTCPServer):
        max_children = 1

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(b"ok\n")

    with serving(Server((HOST, 0), Handler), poll_interval=0.05) as server:
        for _ in range(4):   # each new request waits for the previous child
            assert tcp_exchange(server.server_address, b"") == b"ok\n"
    assert app_child.wait(10) == 7


def test_default_backlog_takes_a_burst(ss):
    # 200 clients connect at once while the server is not accepting yet: with
    # the stdlib's backlog of 5 most of them hang in SYN retries.
    import select
    assert ss.TCPServer.request_queue_size == socket.SOMAXCONN
    with ss.TCPServer((HOST, 0), ss.StreamRequestHandler) as server:
        clients = []
        try:
            for _ in range(200):
                client = socket.socket()
                clients.append(client)
                client.setblocking(False)
                client.connect_ex(server.server_address)
            pending = list(clients)
            deadline = time.monotonic() + 5
            while pending and time.monotonic() < deadline:
                _, writable, _ = select.select([], pending, [], 0.1)
                pending = [c for c in pending if c not in writable]
            assert not pending, "%d of 200 connects did not complete" % len(pending)
            assert all(c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 for c in clients)
        finally:
            for client in clients:
                client.close()


def test_trim_heap_returns_what_the_c_library_says(core):
    import platform
    result = core.trim_heap()
    if platform.libc_ver()[0] == "glibc":
        assert result in (True, False)       # malloc_trim exists
    else:
        assert result is None


def test_pool_trims_the_heap_every_interval(ss, core, monkeypatch):
    calls = []
    real = core.trim_heap

    def counting():
        calls.append(time.monotonic())
        return real()

    monkeypatch.setattr(core, "trim_heap", counting)
    import fastsock
    cls = type("Pool", (fastsock.ThreadPoolTCPServer,), {"_core": core, "heap_trim_interval": 0.05})
    server = cls((HOST, 0), echo_handler(ss))
    with serving(server, poll_interval=0.01):
        assert tcp_exchange(server.server_address, b"a\n") == b"a\n"
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert len(calls) >= 3
    # never more often than the interval (the first turn only arms it)
    assert all(b - a >= 0.04 for a, b in zip(calls, calls[1:]))

    # None: never
    calls.clear()
    cls = type("Pool", (fastsock.ThreadPoolTCPServer,), {"_core": core, "heap_trim_interval": None})
    server = cls((HOST, 0), echo_handler(ss))
    with serving(server, poll_interval=0.01):
        assert tcp_exchange(server.server_address, b"b\n") == b"b\n"
        time.sleep(0.2)
    assert calls == []


def test_stream_handler_on_a_socket_like_object(ss):
    # A request that is not a socket (a test double, a wrapper) is read
    # through its own makefile('rb', rbufsize) and written with sendall(),
    # as the stdlib's StreamRequestHandler does.
    import io
    from unittest import mock
    seen = []

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            seen.append(self.rfile.readline())
            self.wfile.write(b"reply\n")

    request = mock.Mock()
    request.makefile.return_value = io.BytesIO(b"hello\nrest")
    Handler(request, ("127.0.0.1", 1), mock.Mock())
    assert seen == [b"hello\n"]
    request.makefile.assert_called_once_with("rb", Handler.rbufsize)
    request.sendall.assert_called_with(b"reply\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"),
                    reason="binds to 127.x.y.z: the whole 127/8 is loopback on Linux")
def test_core_ipv4_address_text(core):
    # accept() and recvfrom() give the peer's address as the socket module
    # writes it: every digit count in every position (the core formats
    # IPv4 addresses itself).
    hosts = ["127.0.0.1", "127.0.0.10", "127.0.0.99", "127.0.0.100", "127.0.0.255",
             "127.9.10.0", "127.10.99.100", "127.100.200.255", "127.255.255.254",
             "127.1.22.3"]
    with socket.socket() as lsock, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as usock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        usock.bind(("127.0.0.1", 0))     # blocking: the core's own recvfrom
        for host in hosts:
            with socket.socket() as client:
                client.bind((host, 0))
                client.connect(lsock.getsockname())
                conn, address = core.accept(lsock)
                conn.close()
                assert address == client.getsockname()
                assert address[0] == host
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as uclient:
                uclient.bind((host, 0))
                for _ in range(2):      # the second from the core's address cache
                    uclient.sendto(b"x", usock.getsockname())
                    data, address = core.recvfrom(usock, 10)
                    assert address == uclient.getsockname() and address[0] == host


def test_core_accept_into_a_socket_subclass(core):
    # core.accept(sock, cls): the connection is a cls instance, non-blocking
    # from the start, with the peer address sock.accept() would give.
    class Conn(socket.socket):
        __slots__ = ()

    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        for cls in (None, Conn):
            with socket.create_connection(lsock.getsockname(), timeout=10) as client:
                conn, address = core.accept(lsock, cls)
                with conn:
                    assert address == client.getsockname()
                    if cls is None:
                        assert type(conn) is socket.socket
                        assert conn.gettimeout() == socket.getdefaulttimeout()
                    else:
                        assert type(conn) is Conn
                        assert conn.gettimeout() == 0.0
                        with pytest.raises(BlockingIOError):
                            conn.recv(1)        # non-blocking underneath too
                    assert (conn.family, conn.type) == (lsock.family, lsock.type)
                    assert not conn.get_inheritable()
                    client.sendall(b"x")
                    if cls is Conn:
                        time.sleep(0.05)
                    assert conn.recv(1) == b"x"
        # A listening socket with a timeout: what sock.accept() gives, on
        # both cores (the greenlet servers adopt such a socket themselves).
        lsock.settimeout(5)
        with socket.create_connection(lsock.getsockname(), timeout=10):
            conn, address = core.accept(lsock, Conn)
            with conn:
                assert type(conn) is socket.socket
