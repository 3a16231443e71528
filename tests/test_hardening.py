"""Hostile and unlucky conditions, on both backends, with real sockets,
threads, forks and signals: signals at any time, clients that reset
mid-request and mid-response, thousands of short connections, handlers that
raise, oversized datagrams.

Every test runs a well-behaved client alongside the bad traffic
(``GoodClient``) and asserts that all its exchanges succeeded: the server
must keep serving correct clients throughout, not only survive.  The autouse
fixture in conftest.py checks that fds and threads are back afterwards.
Every loop is bounded; every wait has a deadline.
"""
import ctypes
import os
import select
import signal
import socket
import socketserver as stdlib_ss
import subprocess
import sys
import threading
import time

import pytest

import fastsock
from helpers import HOST, serving, tcp_exchange, unix_path


def pool_class(ss, name):
    """fastsock's ThreadPool* server *name*, bound to the backend of *ss*."""
    base = getattr(fastsock, name)
    return type(name, (base,), {"_core": ss.core})


def server_class(ss, name):
    return pool_class(ss, name) if name.startswith("ThreadPool") else getattr(ss, name)


class EchoLine:
    """StreamRequestHandler mixin: echo one line; b"big <n>" answers n bytes."""

    def handle(self):
        line = self.rfile.readline()
        if line.startswith(b"big "):
            self.wfile.write(b"x" * int(line.split()[1]))
        else:
            self.wfile.write(line)


def echo_handler(ss):
    return type("EchoLine", (EchoLine, ss.StreamRequestHandler), {})


class GoodClient:
    """A correct client running exchanges in a thread next to the test's bad
    traffic.  Leaving the block stops it (after at least *minimum*
    exchanges) and asserts that every exchange got the right answer."""

    def __init__(self, address, family=socket.AF_INET, kind="stream", minimum=3,
                 timeout=20):
        self.address = address
        self.family = family
        self.kind = kind
        self.minimum = minimum
        self.timeout = timeout
        self.done = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="good-client")

    def exchange(self, i):
        payload = b"good %d\n" % i
        if self.kind == "stream":
            reply = tcp_exchange(self.address, payload, self.family, timeout=self.timeout)
        else:
            with socket.socket(self.family, socket.SOCK_DGRAM) as sock:
                sock.settimeout(self.timeout)
                if self.family == socket.AF_UNIX:
                    path = unix_path()
                    sock.bind(path)
                try:
                    sock.sendto(payload, self.address)
                    reply = sock.recv(65536)
                finally:
                    if self.family == socket.AF_UNIX:
                        os.unlink(path)
        if reply != payload:
            raise AssertionError("good exchange %d: sent %r, got %r" % (i, payload, reply))

    def _run(self):
        deadline = time.monotonic() + 90
        i = 0
        while (not self._stop.is_set() or self.done < self.minimum) and \
                time.monotonic() < deadline:
            try:
                self.exchange(i)
                self.done += 1
            except Exception as exc:   # reported by __exit__
                self.errors.append(exc)
                return
            i += 1
            time.sleep(0.005)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join(100)
        if exc_info[0] is None:
            assert not self._thread.is_alive(), "the good client is stuck"
            assert not self.errors, self.errors
            assert self.done >= self.minimum, self.done


def wait_until(predicate, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for " + what
        time.sleep(0.01)


# ------------------------------------------------------------------ signals
#
# tests/test_signals.py covers Ctrl-C (SIGINT, default handler) in a bare
# serve_forever, handle_request and a handler's readline on TCPServer.  Here:
# SIGTERM and SIGINT with the default disposition and with Python handlers
# (one raises, one calls shutdown()), in three states: blocked in the wait
# loop, inside a handler, and with the thread pool saturated (the serve loop
# blocked in process_request); on a unix socket, so the clean-up is visible.

SIGNAL_CHILD = r"""
import os, signal, sys, threading, fastsock
backend, state, action, signame, path = sys.argv[1:]
assert fastsock.BACKEND == backend, fastsock.BACKEND
signum = getattr(signal, signame)

def say(text):
    os.write(1, text.encode() + b"\n")

class Handler(fastsock.StreamRequestHandler):
    def handle(self):
        say("handling")
        line = self.rfile.readline()
        if line:    # (not b"" to a client that left: that is a BrokenPipeError)
            self.wfile.write(line)

if state == "pool":
    class Server(fastsock.ThreadPoolUnixStreamServer):
        max_workers = 1
        max_queue = 1
else:
    class Server(fastsock.UnixStreamServer):
        pass

class Server(Server):
    def server_close(self):
        say("server_close")
        super().server_close()

server = Server(path, Handler)

if action == "raise":
    def on_signal(signo, frame):
        say("signal")
        raise SystemExit(3)
    signal.signal(signum, on_signal)
elif action == "shutdown":
    def on_signal(signo, frame):
        say("signal")
        server.shutdown()      # serve_forever runs in another thread
    signal.signal(signum, on_signal)

try:
    with server:
        if action == "shutdown":
            thread = threading.Thread(target=server.serve_forever, args=(60,))
            thread.start()
            say("ready")
            thread.join()
        else:
            say("ready")
            server.serve_forever(poll_interval=60)
finally:
    os.unlink(path)
    say("unlinked")
say("clean exit")
"""


class ChildOutput:
    """Lines from a child's stdout, awaited with a deadline."""

    def __init__(self, proc):
        self.proc = proc
        self.data = b""

    def expect(self, line, timeout=10):
        want = line.encode() + b"\n"
        deadline = time.monotonic() + timeout
        while want not in self.data:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %r from the child within %s s; got %r"
                                     % (line, timeout, self.data))
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise AssertionError("child exited before %r; got %r"
                                         % (line, self.data))
                self.data += chunk


def connect_unix(path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(path)
    return sock


SIGNAL_CASES = [
    (signame, action, state)
    for signame in ("SIGTERM", "SIGINT")
    for action in ("default", "raise", "shutdown")
    for state in ("wait", "handler", "pool")
    # Ctrl-C with the default handler while waiting or in a handler:
    # tests/test_signals.py
    if not (signame == "SIGINT" and action == "default" and state != "pool")]


@pytest.mark.parametrize("signame, action, state", SIGNAL_CASES)
def test_signal_at_any_time(backend_name, signame, action, state):
    path = unix_path()
    env = dict(os.environ, FASTSOCK_PURE="1" if backend_name == "python" else "0")
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_CHILD, backend_name, state, action, signame, path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out = ChildOutput(proc)
    clients = []
    try:
        out.expect("ready")
        wait_until(lambda: os.path.exists(path), what="the socket file")
        # A correct client is served before the signal (state "wait" then
        # has the loop back in its wait).
        with connect_unix(path) as good, good.makefile("rb") as reply:
            good.sendall(b"hello\n")
            assert reply.readline() == b"hello\n"
        if state == "handler":
            clients.append(connect_unix(path))          # sends nothing
            out.expect("handling")
        elif state == "pool":
            # one worker busy, one request queued, the third blocks the loop
            for _ in range(3):
                clients.append(connect_unix(path))
            out.expect("handling")
        time.sleep(0.3)   # let it block: in the wait, the recv, the full queue
        sent = time.monotonic()
        proc.send_signal(getattr(signal, signame))
        if action == "default" and signame == "SIGTERM":
            proc.communicate(timeout=10)
            assert proc.returncode == -signal.SIGTERM
            assert time.monotonic() - sent < 10
            return
        # The handler (or KeyboardInterrupt) acts at once: server_close() is
        # reached while the blocked clients are still connected.
        if action != "default":
            out.expect("signal", timeout=10)
        if action != "shutdown" or state == "wait":
            out.expect("server_close", timeout=10)
        # Let the handlers blocked in readline() finish, as a client would.
        for client in clients:
            client.close()
        stdout, stderr = proc.communicate(timeout=20)
    finally:
        for client in clients:
            client.close()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        if os.path.exists(path):
            os.unlink(path)
    stdout = b"".join(line for line in (out.data + stdout).splitlines(True)
                      if line != b"handling\n")    # queued requests, served last
    assert b"server_close\nunlinked\n" in stdout, (stdout, stderr)
    if action == "default":          # SIGINT: KeyboardInterrupt
        assert b"KeyboardInterrupt" in stderr, stderr
        assert proc.returncode == -signal.SIGINT, (proc.returncode, stderr)
    elif action == "raise":
        assert proc.returncode == 3, (proc.returncode, stderr)
        assert b"clean exit" not in stdout
    else:
        assert proc.returncode == 0, (proc.returncode, stderr)
        assert stdout.endswith(b"clean exit\n"), stdout
        assert b"Traceback" not in stderr, stderr


# ------------------------------------------------------- resets mid-exchange

RESET_KINDS = ["TCPServer", "ThreadingTCPServer", "ThreadPoolTCPServer", "ForkingTCPServer",
               "UnixStreamServer", "ThreadingUnixStreamServer", "ThreadPoolUnixStreamServer"]
BIG = 32 * 1024 * 1024     # more than loopback's socket buffers hold


def make_stream_server(ss, kind, handler, **attrs):
    cls = server_class(ss, kind)
    if attrs:
        cls = type(kind, (cls,), attrs)
    if "Unix" in kind:
        path = unix_path()
        return cls(path, handler), socket.AF_UNIX, path
    return cls((HOST, 0), handler), socket.AF_INET, None


# The bad clients run in a process of their own: a forking server's children
# would otherwise inherit the test's end of the connection, and a close()
# would then be neither an EOF nor a RST.
BAD_CLIENT = r"""
import socket, struct, sys, time
when, family, address, rounds, big = sys.argv[1:]
family = int(family)
if family != socket.AF_UNIX:
    host, port = address.rsplit(":", 1)
    address = (host, int(port))
for _ in range(int(rounds)):
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(10)
    if when == "response":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.connect(address)
    if when == "request":
        # half a line; the server is reading when the reset comes
        sock.sendall(b"half a line")
        time.sleep(0.05)
    else:
        # a large reply, read in part: the server is writing when the reset comes
        sock.sendall(b"big %s\n" % big.encode())
        got = 0
        while got < 100000:
            chunk = sock.recv(65536)
            assert chunk, "the server closed before writing"
            got += len(chunk)
    if family != socket.AF_UNIX:
        # close() sends a RST; a unix socket's close() with unread data
        # reports ECONNRESET to the peer, or EPIPE to its next write
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
print("done", flush=True)
"""


def bad_clients(when, address, family, rounds):
    if family == socket.AF_UNIX:
        where = address
    else:
        where = "%s:%d" % address[:2]
    proc = subprocess.run(
        [sys.executable, "-c", BAD_CLIENT, when, str(int(family)), where, str(rounds), str(BIG)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 0 and proc.stdout == b"done\n", proc.stderr


@pytest.mark.parametrize("kind", RESET_KINDS + ["ForkingUnixStreamServer"])
@pytest.mark.parametrize("when", ["request", "response"])
def test_client_reset_is_dropped_and_serving_goes_on(ss, kind, when, capfd, caplog):
    import logging
    caplog.set_level(logging.DEBUG, logger="fastsock")
    server, family, path = make_stream_server(ss, kind, echo_handler(ss))
    rounds = 5
    try:
        with serving(server, poll_interval=0.05):
            address = server.server_address
            with GoodClient(address, family):
                bad_clients(when, address, family, rounds)
            # and after the resets, still
            assert tcp_exchange(address, b"after\n", family) == b"after\n"
            if "Threading" in kind:
                wait_until(lambda: all(not t.is_alive() for t in server._threads or ()),
                           what="the handler threads")
            if "Forking" in kind:
                wait_until(lambda: (server.collect_children(), not server.active_children)[1],
                           what="the children")
    finally:
        if path and os.path.exists(path):
            os.unlink(path)
    if "Forking" in kind:
        return          # the children report in their own processes
    # Each reset reached handle_error as a connection error: the stdlib's
    # traceback (here through logging, which pytest configures), or for the
    # pool a DEBUG line (quiet_disconnects).
    disconnects = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    quiet = [r for r in caplog.records
             if r.levelno == logging.DEBUG and "disconnected" in r.getMessage()]
    if "ThreadPool" in kind:
        assert not errors, [r.getMessage() for r in errors]
        assert len(quiet) == rounds, [r.getMessage() for r in quiet]
    else:
        assert not quiet
        assert len(errors) == rounds, [r.getMessage() for r in errors]
        assert all(r.exc_info and issubclass(r.exc_info[0], disconnects) for r in errors), \
            [r.exc_info for r in errors]
    assert "Traceback" not in capfd.readouterr().err


@pytest.mark.parametrize("kind", ["ThreadPoolTCPServer", "ThreadPoolUnixStreamServer"])
def test_pool_reports_resets_when_not_quiet(ss, kind, caplog):
    import logging
    caplog.set_level(logging.DEBUG, logger="fastsock")
    server, family, path = make_stream_server(ss, kind, echo_handler(ss),
                                              quiet_disconnects=False)
    try:
        with serving(server, poll_interval=0.05):
            with GoodClient(server.server_address, family):
                bad_clients("request", server.server_address, family, 1)
                bad_clients("response", server.server_address, family, 1)
    finally:
        if path and os.path.exists(path):
            os.unlink(path)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 2
    assert all(issubclass(r.exc_info[0], (ConnectionResetError, BrokenPipeError))
               for r in errors), [r.exc_info for r in errors]


def test_reset_reported_on_stderr_without_logging(backend_name, tmp_path):
    """Without logging configured, a reset prints the stdlib's text on stderr
    (as socketserver does) and the server goes on serving."""
    script = r"""
import socket, struct, sys, threading, time, fastsock
assert fastsock.BACKEND == sys.argv[1]
class H(fastsock.StreamRequestHandler):
    def handle(self):
        self.wfile.write(self.rfile.readline())
server = fastsock.TCPServer(("127.0.0.1", 0), H)
t = threading.Thread(target=server.serve_forever, args=(0.05,)); t.start()
c = socket.create_connection(server.server_address)
c.sendall(b"half"); time.sleep(0.1)
c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
with socket.create_connection(server.server_address, timeout=10) as g:
    g.sendall(b"ok\n"); assert g.makefile("rb").readline() == b"ok\n"
server.shutdown(); t.join(); server.server_close()
print("served")
"""
    env = dict(os.environ, FASTSOCK_PURE="1" if backend_name == "python" else "0")
    proc = subprocess.run([sys.executable, "-c", script, backend_name], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"served\n"
    err = proc.stderr.decode()
    assert err.count("Exception occurred during processing of request from") == 1, err
    assert "ConnectionResetError" in err, err


# ---------------------------------------------------- many short connections

def churn(address, count, family=socket.AF_INET, concurrency=4):
    """*count* short connections from *concurrency* threads; returns the
    failures (an empty list when every one was served)."""
    failures = []
    counter = iter(range(count))
    lock = threading.Lock()

    def run():
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            payload = b"short %d\n" % i
            try:
                reply = tcp_exchange(address, payload, family, timeout=20)
            except OSError as exc:
                failures.append((i, exc))
                return
            if reply != payload:
                failures.append((i, reply))

    threads = [threading.Thread(target=run, name="churn") for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(110)
    assert not any(t.is_alive() for t in threads), "churn clients stuck"
    return failures


def fd_count():
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind, total", [
    ("ThreadingTCPServer", 5000), ("ThreadPoolTCPServer", 5000),
    ("ThreadingUnixStreamServer", 3000), ("ThreadPoolUnixStreamServer", 3000),
    ("ForkingTCPServer", 300)])
def test_thousands_of_short_connections(ss, kind, total):
    server, family, path = make_stream_server(ss, kind, echo_handler(ss))
    batches = 3
    samples = []
    base_threads = threading.active_count()
    try:
        with serving(server, poll_interval=0.05):
            base_fds = fd_count()
            with GoodClient(server.server_address, family):
                for _ in range(batches):
                    failures = churn(server.server_address, total // batches, family)
                    assert not failures, failures[:5]
                    # Quiescent again: every handler thread / child is gone
                    # (the pool's workers stay, bounded).
                    if "Forking" in kind:
                        wait_until(lambda: (server.collect_children(),
                                            not server.active_children)[1],
                                   what="the children")
                    workers = server.pool_stats["workers"] if "Pool" in kind else 0
                    wait_until(lambda: threading.active_count() <= base_threads + 3 + workers,
                               what="the handler threads to exit", timeout=30)
                    # (a pool's waiting workers hold an epoll set each, at
                    # most one per worker: see _AcceptSession.wait)
                    wait_until(lambda: fd_count() <= base_fds + 2 + workers,
                               what="fds to close", timeout=30)
                    samples.append((fd_count(), threading.active_count(), workers))
            if "Threading" in kind:
                assert len(server._threads or ()) <= 64
    finally:
        if path and os.path.exists(path):
            os.unlink(path)
    # No growth from batch to batch (the slack: the good client's connection,
    # and its handler thread, may be open at either sample).
    assert samples[-1][0] - samples[-1][2] <= samples[0][0] - samples[0][2] + 2, samples
    if "Pool" in kind:
        assert samples[-1][2] <= 24, samples      # a handful of workers, not 512
    else:
        assert samples[-1][1] <= samples[0][1] + 1, samples


# ----------------------------------------------------- handlers that raise

@pytest.mark.parametrize("kind", ["TCPServer", "ThreadingTCPServer", "ThreadPoolTCPServer",
                                  "ForkingTCPServer", "UnixStreamServer"])
def test_raising_handler_calls_handle_error_and_others_are_served(ss, kind):
    report_r, report_w = os.pipe()   # handle_error writes here, in forked children too

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline()
            if line.startswith(b"fail"):
                raise ValueError("handler bug")
            self.wfile.write(line)

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        os.write(report_w, b"%s\n" % type(exc).__name__.encode())

    server, family, path = make_stream_server(ss, kind, Handler, handle_error=handle_error)
    failing = 30 if "Forking" not in kind else 10
    try:
        with serving(server, poll_interval=0.05):
            with GoodClient(server.server_address, family):
                for _ in range(failing):
                    assert tcp_exchange(server.server_address, b"fail\n", family) == b""
            if "Forking" in kind:
                wait_until(lambda: (server.collect_children(), not server.active_children)[1],
                           what="the children")
        os.close(report_w)
        report_w = None
        with os.fdopen(report_r, "rb") as f:
            report_r = None
            reports = f.read().split()
    finally:
        for fd in (report_r, report_w):
            if fd is not None:
                os.close(fd)
        if path and os.path.exists(path):
            os.unlink(path)
    assert reports == [b"ValueError"] * failing


# --------------------------------------------------------- oversized datagrams

UDP_SIZES = [0, 1, 1023, 1024, 1025, 8192, 8193, 20000, 65507]


def datagram_results(server_cls, handler_base, family, address_for, sizes, max_packet_size,
                     recv_batch=None):
    """Send datagrams of *sizes* to a *server_cls* whose handler records
    what it got; return the lengths and contents seen.  A good client runs
    alongside."""
    got = []

    class Handler(handler_base):
        def handle(self):
            data = self.rfile.read()
            if data.startswith(b"good"):
                self.wfile.write(data)
            else:
                got.append(data)

    attrs = {"max_packet_size": max_packet_size}
    if recv_batch is not None:
        attrs["recv_batch"] = recv_batch
    cls = type("S", (server_cls,), attrs)
    address, cleanup = address_for()
    client_path = None
    try:
        with serving(cls(address, Handler), poll_interval=0.05) as server, \
                socket.socket(family, socket.SOCK_DGRAM) as bad:
            if family == socket.AF_UNIX:
                client_path, _ = address_for()
                bad.bind(client_path)
            bad.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            with GoodClient(server.server_address, family, kind="dgram"):
                for i, size in enumerate(sizes):
                    bad.sendto(bytes([65 + i % 26]) * size, server.server_address)
                    time.sleep(0.01)
            wait_until(lambda: len(got) == len(sizes), what="every datagram")
    finally:
        cleanup()
        if client_path and os.path.exists(client_path):
            os.unlink(client_path)
    return got


def udp_address():
    return (HOST, 0), lambda: None


def unix_dgram_address():
    path = unix_path()
    return path, lambda: os.path.exists(path) and os.unlink(path)


@pytest.mark.parametrize("recv_batch", [1, 16])
@pytest.mark.parametrize("max_packet_size", [1024, 8192, 65536])
def test_oversized_udp_datagrams_truncate_like_the_stdlib(ss, recv_batch, max_packet_size):
    got = datagram_results(ss.UDPServer, ss.DatagramRequestHandler, socket.AF_INET,
                           udp_address, UDP_SIZES, max_packet_size, recv_batch)
    expected = datagram_results(stdlib_ss.UDPServer, stdlib_ss.DatagramRequestHandler,
                                socket.AF_INET, udp_address, UDP_SIZES, max_packet_size)
    assert [len(d) for d in got] == [len(d) for d in expected] == \
        [min(s, max_packet_size) for s in UDP_SIZES]
    assert got == expected


@pytest.mark.parametrize("recv_batch", [1, 16])
def test_oversized_unix_datagrams_truncate_like_the_stdlib(ss, recv_batch):
    sizes = [0, 1, 8191, 8192, 8193, 65507, 100000]
    got = datagram_results(ss.UnixDatagramServer, ss.DatagramRequestHandler, socket.AF_UNIX,
                           unix_dgram_address, sizes, 8192, recv_batch)
    expected = datagram_results(stdlib_ss.UnixDatagramServer, stdlib_ss.DatagramRequestHandler,
                                socket.AF_UNIX, unix_dgram_address, sizes, 8192)
    assert [len(d) for d in got] == [min(s, 8192) for s in sizes]
    assert got == expected


# ---------------------------------------------------- heap growth (finding 5)

class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]


def _glibc_arena_bytes():
    """A function giving glibc's heap size (mallinfo2().arena, all arenas),
    or None where that is not available (not glibc, or older than 2.33)."""
    try:
        libc = ctypes.CDLL(None)
        mallinfo2 = libc.mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _MallInfo2
    return lambda: mallinfo2().arena


def test_long_lived_thread_reading_long_lines_keeps_its_heap(core):
    # docs/hardening.md, finding 5: a long-lived thread (a pool worker)
    # reading lines of 64 KiB, each result built in a growing bytes object
    # and trimmed to its length.  The compiled core used to trim in place:
    # glibc put each cut-off tail of 80-1024 bytes in the thread's cache,
    # where it kept the freed 64 KiB block from growing back, so every
    # result took fresh memory (here: +20-30 MiB).  Counts bytes, not time.
    arena = _glibc_arena_bytes()
    if arena is None:
        pytest.skip("needs glibc's mallinfo2()")
    result = {}

    def work():
        a, b = socket.socketpair()
        with a, b:
            b.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            before = arena()
            for rounds in range(8):
                for cut in range(80, 1040, 16):
                    line = b"x" * (65536 - cut - 1) + b"\n"
                    reader = core.SocketReader(b)
                    a.sendall(line)
                    got = reader.readline(65536)
                    reader.close()
                    if got != line:
                        result["wrong"] = (len(got), len(line))
                        return
                    del got
            result["grown"] = arena() - before

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(120)
    assert not thread.is_alive()
    assert "wrong" not in result, result
    assert result["grown"] < 8 << 20, "heap grew %.1f MiB" % (result["grown"] / 2**20)
