"""UDP fast paths on both backends: core.send_batch, opt-in reply batching
(UDPServer.reply_batch), the short request path and the datagram-only
pending() of the serve loop."""
import errno
import os
import socket
import socketserver as stdlib_ss
import threading
import time
import types

import pytest

from helpers import HOST, serving, unix_path

HAVE_FORK = hasattr(os, "fork")


class Echo:
    def handle(self):
        self.wfile.write(self.rfile.read())


def counting_core(core):
    """A stand-in for *core* whose send_batch records each call's size."""
    calls = []
    ns = types.SimpleNamespace(**{k: getattr(core, k) for k in dir(core)
                                  if not k.startswith("__")})

    def send_batch(sock, items, start=0):
        n = core.send_batch(sock, items, start)
        calls.append(n)
        return n
    ns.send_batch = send_batch
    ns.calls = calls
    return ns


def client_socket(family=socket.AF_INET, path=None):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(path if family == socket.AF_UNIX else (HOST, 0))
    sock.settimeout(10)
    return sock


def drain(sock, n):
    return [sock.recv(1000) for _ in range(n)]


def run_until_stopped(server):
    """serve_forever in a thread; returns the thread (already started)."""
    thread = threading.Thread(target=server.serve_forever, args=(30,))
    thread.start()
    return thread


# ------------------------------------------------------------ core.send_batch

def test_send_batch_in_order_and_partial_on_error(core):
    with client_socket() as a, client_socket() as b:
        dest = b.getsockname()
        items = [(b"m%d" % i, dest) for i in range(150)]   # more than one call's worth
        sent = 0
        while sent < len(items):
            n = core.send_batch(a, items, sent)
            assert 1 <= n <= 64
            sent += n
        assert drain(b, 150) == [d for d, _ in items]
        assert core.send_batch(a, items, 150) == 0
        with pytest.raises(ValueError):
            core.send_batch(a, items, -1)
        # One that cannot be sent stops the call; the next call raises it.
        items = [(b"first", dest), (b"x" * 70000, dest), (b"third", dest)]
        assert core.send_batch(a, items) == 1
        with pytest.raises(OSError):
            core.send_batch(a, items, 1)
        assert core.send_batch(a, items, 2) == 1
        assert drain(b, 2) == [b"first", b"third"]


def test_send_batch_runs_to_one_peer_arrive_as_sent(core):
    # The compiled core sends consecutive datagrams to one address as one
    # GSO message when it can: every peer must still receive exactly its
    # datagrams, one by one, in order -- runs of equal sizes, a shorter one
    # ending a run, a longer one starting the next, empty datagrams, runs
    # past 64 datagrams and past 64 KiB, peers taking turns.
    with client_socket() as a, client_socket() as b, client_socket() as c:
        for sock in (b, c):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        a.settimeout(None)      # (with a timeout the socket's own sendto is used)
        pb, pc = b.getsockname(), c.getsockname()
        items = [(b"%03d" % i + b"." * 61, pb) for i in range(70)]          # 70 x 64
        items += [(b"short", pb), (b"L" * 100, pb), (b"L" * 100, pb), (b"", pb)]
        items += [(b"p" * 64, pb), (b"q" * 5, pb), (b"r" * 64, pb), (b"s" * 64, pb)]
        items += [(b"%02d" % i + b"#" * 3998, pc) for i in range(20)]     # 80 KB
        for i in range(30):                                                # turns
            items.append((b"b%02d" % i, pb))
            items.append((b"c%02d" % i, pc))
        items += [(b"x" * 64, pb)] * 3 + [(b"y" * 64, pc)] * 3 + [(b"z" * 10, pb)]
        sent = 0
        while sent < len(items):
            n = core.send_batch(a, items, sent)
            assert 1 <= n <= 64
            sent += n
        for peer, sock in ((pb, b), (pc, c)):
            expected = [data for data, address in items if address == peer]
            assert [sock.recv(70000) for _ in expected] == expected
        b.setblocking(False)
        with pytest.raises(BlockingIOError):
            b.recv(10)                      # nothing more (no merged datagrams)
        # A run that cannot be sent (port 0: EINVAL) fails one datagram at a
        # time, as sendto() would; what follows is sent.
        b.setblocking(True)
        items = [(b"v" * 30000, (HOST, 0))] * 2 + [(b"ok", pb)]
        for start in (0, 1):
            with pytest.raises(OSError) as info:
                core.send_batch(a, items, start)
            assert info.value.errno == errno.EINVAL
        assert core.send_batch(a, items, 2) == 1
        assert b.recv(100) == b"ok"


def test_send_batch_falls_back_to_sendto(core):
    with client_socket() as a, client_socket() as b:
        port = b.getsockname()[1]
        items = [(b"1", (HOST, port)), (bytearray(b"2"), (HOST, port)),
                 (b"3", ("localhost", port)), (b"4", (HOST, port))]
        sent = 0
        while sent < len(items):
            sent += core.send_batch(a, items, sent)
        assert drain(b, 4) == [b"1", b"2", b"3", b"4"]
        a.settimeout(5.0)          # a timeout: the socket's own sendto
        assert core.send_batch(a, [(b"5", (HOST, port))]) == 1
        assert b.recv(10) == b"5"
        with pytest.raises(TypeError):
            core.send_batch(a, [(b"6", "not an address")])
        # A bad address after good ones: those are sent, the next call raises.
        items = [(b"7", (HOST, port)), (b"8", (HOST, 70000)), (b"9", (HOST, port))]
        assert core.send_batch(a, items) == 1
        with pytest.raises(OverflowError):
            core.send_batch(a, items, 1)
        assert core.send_batch(a, items, 2) == 1
        assert drain(b, 2) == [b"7", b"9"]


@pytest.fixture
def ipv6_pair():
    """(a, b, port): two IPv6 UDP sockets, b bound on ::1 at port."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        b.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with b, socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as a:
        b.settimeout(10)
        yield a, b, b.getsockname()[1]


def test_send_batch_ipv6(core, ipv6_pair):
    a, b, port = ipv6_pair
    items = [(b"a", ("::1", port)), (b"b", ("::1", port, 0, 0)), (b"c", ("::1", port, 0))]
    sent = 0
    while sent < 3:
        sent += core.send_batch(a, items, sent)
    assert drain(b, 3) == [b"a", b"b", b"c"]


def test_send_batch_unix(core):
    path = unix_path()
    abstract = b"\0fastsock-test-%d" % os.getpid()
    try:
        with client_socket(socket.AF_UNIX, path) as b, \
                client_socket(socket.AF_UNIX, abstract) as c, \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as a:
            items = [(b"p1", path), (b"a1", abstract), (b"p2", os.fsencode(path))]
            sent = 0
            while sent < 3:
                sent += core.send_batch(a, items, sent)
            assert drain(b, 2) == [b"p1", b"p2"]
            assert c.recv(10) == b"a1"
            with pytest.raises(OSError):
                core.send_batch(a, [(b"x", path + ".missing")])
    finally:
        os.unlink(path)


# ------------------------------------------------------------ core.sendto

_audit_events = None     # a list while a test records socket.sendto events
_audit_hooked = False


def _audit_hook(event, args):
    if event == "socket.sendto" and _audit_events is not None:
        _audit_events.append(args)


def test_sendto_is_socket_sendto(core):
    global _audit_events, _audit_hooked
    import sys
    if not _audit_hooked:        # hooks cannot be removed: one for the session
        sys.addaudithook(_audit_hook)
        _audit_hooked = True
    with client_socket() as a, client_socket() as b:
        dest = b.getsockname()
        _audit_events = []
        try:
            # The same address object again, an equal one, a host name.
            assert core.sendto(a, b"one", dest) == 3
            assert core.sendto(a, b"two", dest) == 3
            assert core.sendto(a, b"three", (HOST, dest[1])) == 5
            assert core.sendto(a, b"four", ("localhost", dest[1])) == 4
            assert core.sendto(a, bytearray(b"five"), dest) == 4
            assert core.sendto(a, memoryview(b"six"), dest) == 3
            events = _audit_events
        finally:
            _audit_events = None
        assert drain(b, 6) == [b"one", b"two", b"three", b"four", b"five", b"six"]
        assert len(events) == 6 and all(args[0] is a for args in events)
        assert events[0][1] is dest and events[3][1] == ("localhost", dest[1])
        # The errors are the socket module's.
        for address, exc in [((HOST, 70000), OverflowError), ("not an address", TypeError),
                             ((HOST,), TypeError), ((HOST, "1"), TypeError),
                             ((HOST, dest[1], 0), TypeError)]:
            with pytest.raises(exc) as expected:
                a.sendto(b"x", address)
            with pytest.raises(exc) as got:
                core.sendto(a, b"x", address)
            assert str(got.value) == str(expected.value)
        with pytest.raises(TypeError):
            core.sendto(a, "text", dest)
        with pytest.raises(OSError) as got:
            core.sendto(a, b"x" * 70000, dest)       # too long for a datagram
        assert got.value.errno == errno.EMSGSIZE
        # With a timeout, non-blocking, blocking again.
        a.settimeout(5.0)
        assert core.sendto(a, b"t", dest) == 1
        a.setblocking(False)
        assert core.sendto(a, b"n", dest) == 1
        a.setblocking(True)
        assert core.sendto(a, b"b", dest) == 1
        assert drain(b, 3) == [b"t", b"n", b"b"]
        # A subclass's own sendto is called.
        class Sock(socket.socket):
            def sendto(self, data, address):
                return ("subclass", data, address)
        with Sock(socket.AF_INET, socket.SOCK_DGRAM) as c:
            assert core.sendto(c, b"s", dest) == ("subclass", b"s", dest)
    with pytest.raises(OSError) as expected:
        a.sendto(b"x", dest)
    with pytest.raises(OSError) as got:
        core.sendto(a, b"x", dest)                   # closed
    assert got.value.errno == expected.value.errno == errno.EBADF


def test_sendto_follows_a_patched_socket_sendto(core, ss):
    # A test suite that patches socket.socket.sendto on the class (the
    # instances have no __dict__) must see every reply go through the patch,
    # the handler's too, as with the stdlib.
    from unittest import mock
    with client_socket() as a, client_socket() as b:
        a.settimeout(None)          # (with a timeout the socket module sends)
        dest = b.getsockname()
        assert core.sendto(a, b"warm", dest) == 4       # dest now cached
        assert drain(b, 1) == [b"warm"]
        calls = []
        with mock.patch.object(socket.socket, "sendto",
                               lambda *args: calls.append(args) or 42):
            assert core.sendto(a, b"x", dest) == 42
        assert calls == [(a, b"x", dest)]
        assert core.sendto(a, b"after", dest) == 5      # the original again
        assert drain(b, 1) == [b"after"]

    class Echo(ss.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.read())
    assert Echo._sendto is core.sendto
    srv = ss.UDPServer((HOST, 0), Echo)
    srv.timeout = 10
    sent = []
    try:
        with client_socket() as c:
            c.sendto(b"ping", srv.server_address)
            with mock.patch.object(
                    socket.socket, "sendto",
                    lambda sock, data, addr: sent.append((data, addr)) or len(data)):
                srv.handle_request()
            assert sent == [(b"ping", c.getsockname())]
    finally:
        srv.server_close()


def test_sendto_many_peers(core):
    # More destinations than the compiled core caches, in turn, twice.
    peers = [client_socket() for _ in range(80)]
    try:
        with client_socket() as a:
            for _ in range(2):
                addresses = [p.getsockname() for p in peers]
                for i, address in enumerate(addresses):
                    assert core.sendto(a, b"%d" % i, address) == len(b"%d" % i)
                for i, p in enumerate(peers):
                    assert p.recv(10) == b"%d" % i
    finally:
        for p in peers:
            p.close()


def test_sendto_ipv6(core, ipv6_pair):
    a, b, port = ipv6_pair
    for address in [("::1", port), ("::1", port, 0, 0), ("::1", port, 0), b.getsockname()]:
        assert core.sendto(a, b"v6", address) == 2
    assert drain(b, 4) == [b"v6"] * 4
    with pytest.raises(OverflowError):
        core.sendto(a, b"x", ("::1", port, 1 << 20))


def test_sendto_unix(core):
    path = unix_path()
    try:
        with client_socket(socket.AF_UNIX, path) as b, \
                socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as a:
            assert core.sendto(a, b"p1", path) == 2
            assert core.sendto(a, b"p2", os.fsencode(path)) == 2
            assert drain(b, 2) == [b"p1", b"p2"]
            with pytest.raises(FileNotFoundError):
                core.sendto(a, b"x", path + ".missing")
    finally:
        os.unlink(path)


def test_datagram_handler_replies_through_the_server_socket(ss):
    # finish() sends the reply on request[1] to client_address, as the
    # stdlib's does: a socket subclass set by the server sees the call.
    calls = []

    class Recording(socket.socket):
        def sendto(self, data, address):
            calls.append((data, address))
            return socket.socket.sendto(self, data, address)

    class Handler(Echo, ss.DatagramRequestHandler):
        pass

    class Server(ss.UDPServer):
        def server_bind(self):
            self.socket.close()
            self.socket = Recording(self.address_family, self.socket_type)
            super().server_bind()

    with Server((HOST, 0), Handler) as server, client_socket() as client:
        thread = run_until_stopped(server)
        try:
            client.sendto(b"ping", server.server_address)
            assert client.recv(10) == b"ping"
        finally:
            server.shutdown()
            thread.join()
        assert calls == [(b"ping", client.getsockname())]


# ------------------------------------------------------------ reply batching

def batching_server(ss, base="UDPServer", reply_batch=8, counting=True, **attrs):
    import fastsock
    cls = getattr(ss, base, None)
    if cls is None:          # a fastsock extra, not in the namespace
        cls = type(base, (getattr(fastsock, base),), {"_core": ss.core})
    attrs["reply_batch"] = reply_batch
    if counting:
        attrs["_core"] = counting_core(cls._core)
    return type("Batching" + base, (cls,), attrs)


def test_default_is_the_stdlib_socket(ss):
    with ss.UDPServer((HOST, 0), ss.DatagramRequestHandler) as server:
        assert type(server.socket) is socket.socket
        assert server.reply_batch == 1
    assert ss.TCPServer._fastsock_pending is None   # the loop skips the call
    cls = batching_server(ss, counting=False)
    with cls((HOST, 0), ss.DatagramRequestHandler) as server:
        assert isinstance(server.socket, socket.socket)
        assert type(server.socket) is not socket.socket


def test_replies_batched_in_order(ss):
    cls = batching_server(ss, reply_batch=8)
    handler = type("H", (Echo, ss.DatagramRequestHandler), {})
    with cls((HOST, 0), handler) as server, client_socket() as client:
        for i in range(40):      # waiting before the loop starts: one batch received
            client.sendto(b"%d" % i, server.server_address)
        time.sleep(0.1)
        with serving(server, poll_interval=30):
            assert drain(client, 40) == [b"%d" % i for i in range(40)]
            # The same again while serving; never a reply left behind.
            for i in range(40, 60):
                client.sendto(b"%d" % i, server.server_address)
            assert drain(client, 20) == [b"%d" % i for i in range(40, 60)]
        assert max(server._core.calls) > 1          # replies did go out together
        assert max(server._core.calls) <= 8


def test_reply_on_idle_server_is_not_delayed(ss):
    # poll_interval=30 and a 10 s client timeout: a reply held until the next
    # request or tick would fail the test.
    cls = batching_server(ss, reply_batch=64)
    handler = type("H", (Echo, ss.DatagramRequestHandler), {})
    with serving(cls((HOST, 0), handler), poll_interval=30) as server, \
            client_socket() as client:
        for i in range(5):
            client.sendto(b"ping %d" % i, server.server_address)
            assert client.recv(100) == b"ping %d" % i


def test_handler_using_the_socket_sees_earlier_replies_sent(ss):
    # Replies by wfile, by self.socket.sendto (queued too), by sendto with
    # flags (sent at once, after the queue), and a marker sent through
    # another socket after a settimeout() call on the server's socket: the
    # client gets everything in the order the handlers produced it.
    marker_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    class Handler(ss.DatagramRequestHandler):
        def handle(self):
            n = int(self.packet)
            if n % 4 == 1:
                assert self.socket.sendto(b"%d" % n, self.client_address) == len(b"%d" % n)
            elif n % 4 == 2:
                self.socket.sendto(b"%d" % n, 0, self.client_address)
            elif n % 4 == 3:
                self.socket.settimeout(None)
                marker_sock.sendto(b"%d" % n, self.client_address)
            else:
                self.wfile.write(b"%d" % n)

    cls = batching_server(ss, reply_batch=16)
    with marker_sock, cls((HOST, 0), Handler) as server, client_socket() as client:
        for i in range(32):
            client.sendto(b"%d" % i, server.server_address)
        time.sleep(0.1)
        with serving(server, poll_interval=30):
            # finish() sends the (empty) wfile of the handlers that sent
            # their reply themselves, after it.
            expected = []
            for i in range(32):
                expected += [b"%d" % i] + ([b""] if i % 4 else [])
            assert drain(client, len(expected)) == expected


def test_replies_of_a_raising_handler(ss):
    errors = []

    class Handler(ss.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(self.packet)
            if self.packet.startswith(b"bad"):
                raise ValueError(self.packet)

    cls = batching_server(ss, reply_batch=8)

    class Server(cls):
        def handle_error(self, request, client_address):
            errors.append(request[0])

    with Server((HOST, 0), Handler) as server, client_socket() as client:
        sent = [b"bad %d" % i if i % 3 == 0 else b"ok %d" % i for i in range(20)]
        for data in sent:
            client.sendto(data, server.server_address)
        time.sleep(0.1)
        with serving(server, poll_interval=30):
            assert drain(client, 20) == sent
    assert errors == [d for d in sent if d.startswith(b"bad")]


def test_shutdown_sends_queued_replies(ss):
    # The loop is stopped in the middle of a batch: what was queued goes out
    # before serve_forever() returns; the rest is never handled.
    class Handler(ss.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(self.packet)
            if self.packet == b"4":
                self.server._BaseServer__shutdown_request = True

    cls = batching_server(ss, reply_batch=64)
    with cls((HOST, 0), Handler) as server, client_socket() as client:
        for i in range(10):
            client.sendto(b"%d" % i, server.server_address)
        time.sleep(0.1)
        thread = run_until_stopped(server)
        thread.join(10)
        assert not thread.is_alive()
        client.setblocking(False)
        assert drain(client, 5) == [b"%d" % i for i in range(5)]
        with pytest.raises(BlockingIOError):
            client.recv(100)
        assert server.socket._fastsock_owner is None
        assert not server.socket._fastsock_outbox


@pytest.mark.parametrize("reply_batch", [1, 8])
def test_hook_order_matches_stdlib(ss, reply_batch):
    # A subclass overriding the hooks sees the stdlib's calls, in order, with
    # or without reply batching (and the handler gets the same arguments).
    def run(base, handler_base):
        calls = []

        class Handler(handler_base):
            def handle(self):
                calls.append(("handle", self.packet, type(self.socket).__mro__[-3:],
                              self.server is server_box[0]))
                self.wfile.write(self.packet)

        class Server(base):
            def verify_request(self, request, client_address):
                calls.append(("verify", request[0]))
                return request[0] != b"skip"

            def process_request(self, request, client_address):
                calls.append(("process", request[0]))
                super().process_request(request, client_address)

            def finish_request(self, request, client_address):
                calls.append(("finish", request[0]))
                super().finish_request(request, client_address)

            def shutdown_request(self, request):
                calls.append(("shutdown", request[0]))
                super().shutdown_request(request)

            def service_actions(self):
                calls.append(("service",))

        server_box = []
        with Server((HOST, 0), Handler) as server, client_socket() as client:
            server_box.append(server)
            for data in (b"a", b"skip", b"b"):
                client.sendto(data, server.server_address)
            time.sleep(0.1)
            with serving(server, poll_interval=30):
                assert drain(client, 2) == [b"a", b"b"]
        # Only the turns that handled a request (idle ticks may add more).
        while calls and calls[-1] == ("service",):
            calls.pop()
        return calls

    mine = run(batching_server(ss, reply_batch=reply_batch, counting=False),
               ss.DatagramRequestHandler)
    ref = run(stdlib_ss.UDPServer, stdlib_ss.DatagramRequestHandler)
    assert mine == ref


def test_short_path_and_instance_overrides(ss):
    # No hook overridden: the short path; the handler sees what it would.
    seen = []

    class Handler(ss.DatagramRequestHandler):
        def handle(self):
            seen.append((self.request[0], self.request[1] is self.server.socket,
                         self.client_address))
            self.wfile.write(self.packet)

    with ss.UDPServer((HOST, 0), Handler) as server, client_socket() as client:
        verified = []

        def verify(request, client_address):      # an instance attribute
            verified.append(request[0])
            return request[0] != b"no"
        server.verify_request = verify
        for data in (b"yes", b"no", b"again"):
            client.sendto(data, server.server_address)
        with serving(server, poll_interval=30):
            assert drain(client, 2) == [b"yes", b"again"]
        assert verified == [b"yes", b"no", b"again"]
        assert seen == [(b"yes", True, client.getsockname()),
                        (b"again", True, client.getsockname())]


@pytest.mark.parametrize("base", ["ThreadingUDPServer", "ThreadPoolUDPServer",
                                  "ForkingUDPServer"])
def test_reply_batch_on_concurrent_servers(ss, base):
    # Handlers in threads or children send at once (nothing is deferred
    # there): with poll_interval=30 a held reply would time the client out.
    if base.startswith("Forking") and not HAVE_FORK:
        pytest.skip("no fork")
    handler = type("H", (Echo, ss.DatagramRequestHandler), {})
    cls = batching_server(ss, base, reply_batch=8)
    with serving(cls((HOST, 0), handler), poll_interval=30) as server, \
            client_socket() as client:
        for i in range(20):
            client.sendto(b"%d" % i, server.server_address)
            assert client.recv(100) == b"%d" % i
    if base.startswith("Forking"):
        assert not server.active_children


def test_unix_datagram_batching_and_send_errors(ss):
    # The reply to a client that is gone fails once queued: handle_error()
    # gets it, and what handle_error() sends goes out before the replies
    # queued after the failed one -- the order the stdlib gives.
    errors = []

    class Handler(ss.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(self.packet.upper())

    cls = batching_server(ss, "UnixDatagramServer", reply_batch=8)

    class Server(cls):
        def handle_error(self, request, client_address):
            import sys
            errors.append((request[0], client_address, type(sys.exc_info()[1])))
            self.socket.sendto(b"error", client_path)

    server_path, gone_path, client_path = unix_path(), unix_path(), unix_path()
    try:
        with Server(server_path, Handler) as server, \
                client_socket(socket.AF_UNIX, client_path) as client:
            for i in range(5):
                client.sendto(b"m%d" % i, server_path)
            with client_socket(socket.AF_UNIX, gone_path) as gone:
                gone.sendto(b"lost", server_path)
            os.unlink(gone_path)        # its reply cannot be delivered
            for i in range(5, 10):
                client.sendto(b"m%d" % i, server_path)
            time.sleep(0.1)
            with serving(server, poll_interval=30):
                expected = [b"M%d" % i for i in range(5)] + [b"error"] + [
                    b"M%d" % i for i in range(5, 10)]
                assert drain(client, 11) == expected
                client.sendto(b"late", server_path)
                assert client.recv(100) == b"LATE"
        assert [(d, a) for d, a, _ in errors] == [(b"LOST", gone_path)]
        assert issubclass(errors[0][2], OSError)
        assert max(server._core.calls) > 1
    finally:
        for path in (server_path, client_path):
            if os.path.exists(path):
                os.unlink(path)


def test_queued_send_with_a_bad_address_goes_to_handle_error(ss):
    errors = []

    class Handler(ss.DatagramRequestHandler):
        def handle(self):
            if self.packet == b"bad":
                self.socket.sendto(b"x", (HOST, 70000))    # queued; fails when sent
            self.wfile.write(self.packet)

    cls = batching_server(ss, reply_batch=8)

    class Server(cls):
        def handle_error(self, request, client_address):
            import sys
            errors.append((request[0], client_address, type(sys.exc_info()[1])))

    with Server((HOST, 0), Handler) as server, client_socket() as client:
        for data in (b"a", b"bad", b"b"):
            client.sendto(data, server.server_address)
        time.sleep(0.1)
        with serving(server, poll_interval=30):
            assert drain(client, 3) == [b"a", b"bad", b"b"]
            client.sendto(b"c", server.server_address)
            assert client.recv(10) == b"c"
    assert errors == [(b"x", (HOST, 70000), OverflowError)]


def test_handle_request_is_not_deferred(ss):
    handler = type("H", (Echo, ss.DatagramRequestHandler), {})
    cls = batching_server(ss, reply_batch=8)
    with cls((HOST, 0), handler) as server, client_socket() as client:
        for i in range(3):
            client.sendto(b"%d" % i, server.server_address)
        time.sleep(0.1)
        for i in range(3):
            server.handle_request()
            client.settimeout(0.5)
            assert client.recv(100) == b"%d" % i
        assert server._core.calls == []


# ------------------------------------------------------------ receiving ahead

def test_receives_next_batch_without_waiting(ss):
    # 40 datagrams waiting, 4 per recvmmsg: while batches keep coming the
    # loop takes the next one at once instead of polling first.
    waits = []
    core = counting_core(ss.core)

    def wait_readable(*args):
        waits.append(args)
        return ss.core.wait_readable(*args)
    core.wait_readable = wait_readable

    class Handler(ss.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(self.packet)
            if self.packet == b"39":
                self.server._BaseServer__shutdown_request = True

    cls = type("S", (ss.UDPServer,), {"_core": core, "recv_batch": 4})
    with cls((HOST, 0), Handler) as server, client_socket() as client:
        for i in range(40):
            client.sendto(b"%d" % i, server.server_address)
        time.sleep(0.1)
        thread = run_until_stopped(server)
        thread.join(10)
        assert not thread.is_alive()
        assert drain(client, 40) == [b"%d" % i for i in range(40)]
    assert len(waits) <= 2


@pytest.mark.parametrize("how", ["super", "own"])
def test_get_request_override_sees_every_datagram(ss, how):
    got = []

    class Handler(ss.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(self.packet)

    class Server(ss.UDPServer):
        recv_batch = 4

        def get_request(self):
            if how == "super":
                request, address = super().get_request()
            else:
                data, address = self.socket.recvfrom(self.max_packet_size)
                request = (data, self.socket)
            got.append(request[0])
            return request, address

    with Server((HOST, 0), Handler) as server, client_socket() as client:
        for i in range(20):
            client.sendto(b"%d" % i, server.server_address)
        time.sleep(0.1)
        with serving(server, poll_interval=30):
            assert drain(client, 20) == [b"%d" % i for i in range(20)]
    assert got == [b"%d" % i for i in range(20)]


def _has_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.parametrize("family", [
    socket.AF_INET,
    pytest.param(socket.AF_INET6, marks=pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 loopback")),
])
def test_peer_addresses_many_peers(core, family):
    # The compiled core keeps the address tuples of recent peers (256
    # direct-mapped slots): with more peers than slots, interleaved, every
    # datagram must still carry its own sender's address, as the socket's
    # own recvfrom() gives it, from recvfrom() and the batched receiver.
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    server = socket.socket(family, socket.SOCK_DGRAM)
    server.bind((host, 0))
    server.setblocking(False)
    peers = []
    try:
        for _ in range(300):
            peer = socket.socket(family, socket.SOCK_DGRAM)
            peers.append(peer)
            peer.bind((host, 0))
        receiver = core.DatagramReceiver(server, 64, 16)
        for rnd in range(3):
            order = peers[rnd::3] + peers[:rnd:-7]
            for i, peer in enumerate(order):
                peer.sendto(b"%d" % i, server.getsockname())
            got = []
            deadline = time.monotonic() + 5
            while len(got) < len(order) and time.monotonic() < deadline:
                if rnd == 1:
                    try:
                        got.append(core.recvfrom(server, 64))
                    except BlockingIOError:
                        time.sleep(0.001)
                else:
                    batch = receiver.receive()
                    got.extend(batch)
                    if not batch:
                        time.sleep(0.001)
            assert len(got) == len(order)
            for data, address in got:
                assert address == order[int(data)].getsockname()
        # and the same peer again gives an equal tuple, also after others
        peers[5].sendto(b"x", server.getsockname())
        time.sleep(0.05)
        assert core.recvfrom(server, 64)[1] == peers[5].getsockname()
    finally:
        server.close()
        for peer in peers:
            peer.close()


@pytest.mark.parametrize("actions_on", ["class", "instance"])
@pytest.mark.parametrize("reply_batch", [1, 8])
def test_batch_in_a_row_matches_stdlib(ss, reply_batch, actions_on):
    # With the stock hooks, serve_forever handles a received batch in a row
    # (UDPServer._fastsock_drain): per datagram the handler, handle_error()
    # when it raises, service_actions(), and no datagram after the loop was
    # told to stop -- the stdlib's calls, in its order.
    def run(base, handler_base):
        calls = []

        class Handler(handler_base):
            def handle(self):
                calls.append(("handle", self.packet))
                if self.packet == b"boom":
                    raise ValueError("boom")
                if self.packet == b"stop":
                    self.server._BaseServer__shutdown_request = True
                self.wfile.write(self.packet)

        class Server(base):
            def handle_error(self, request, client_address):
                calls.append(("error", request[0]))

        if actions_on == "class":
            Server.service_actions = lambda self: calls.append(("service",))

        with Server((HOST, 0), Handler) as server, client_socket() as client:
            if actions_on == "instance":
                server.service_actions = lambda: calls.append(("service",))
            for data in (b"a", b"boom", b"b", b"stop", b"c"):
                client.sendto(data, server.server_address)
            time.sleep(0.1)
            thread = run_until_stopped(server)   # returns after "stop"
            thread.join(10)
            assert not thread.is_alive()
            replies = drain(client, 4)   # finish() sends b"" for "boom"
        while calls and calls[0] == ("service",):
            calls.pop(0)
        return calls, replies

    mine = run(batching_server(ss, reply_batch=reply_batch, counting=False),
               ss.DatagramRequestHandler)
    ref = run(stdlib_ss.UDPServer, stdlib_ss.DatagramRequestHandler)
    assert mine == ref
    assert ref[1] == [b"a", b"", b"b", b"stop"]
    assert ("handle", b"c") not in ref[0]
