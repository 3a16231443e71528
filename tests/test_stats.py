"""server.stats(), the exporter, prometheus_text() and the byte counters of
rfile/wfile, with real concurrent clients on both backends."""
import dataclasses
import sys
import logging
import os
import socket
import threading
import time

import pytest

import fastsock
from helpers import HOST, serving, unix_path, recv_all

HAVE_FORK = hasattr(os, "fork")

KINDS = ["TCPServer", "ThreadingTCPServer", "ThreadPoolTCPServer", "ForkingTCPServer",
         "UnixStreamServer", "ThreadingUnixStreamServer", "ThreadPoolUnixStreamServer",
         "ForkingUnixStreamServer", "GreenletTCPServer", "GreenletUnixStreamServer"]


def server_class(ss, kind, **attrs):
    base = getattr(ss, kind, None)
    if base is None:   # the ThreadPool* servers are not in __all__
        base = type(kind, (getattr(fastsock, kind),), {"_core": ss.core})
    return type("Stats" + kind, (base,), attrs)


def address_for(kind):
    if "Unix" in kind:
        return unix_path(), socket.AF_UNIX
    return (HOST, 0), socket.AF_INET


def cleanup(address):
    if isinstance(address, str) and os.path.exists(address):
        os.unlink(address)


def echo_handler(ss):
    class Echo(ss.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line.upper())
    return Echo


def run_clients(address, family, n_threads, per_thread, payload_for):
    """n_threads threads, each making per_thread connections that send a
    payload, half-close and read the whole reply.  Returns the replies."""
    replies = {}
    failures = []

    def client(t):
        try:
            for i in range(per_thread):
                payload = payload_for(t, i)
                with socket.socket(family, socket.SOCK_STREAM) as sock:
                    sock.settimeout(30)
                    sock.connect(address)
                    sock.sendall(payload)
                    sock.shutdown(socket.SHUT_WR)
                    replies[t, i] = (payload, recv_all(sock))
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    assert not any(thread.is_alive() for thread in threads)
    return replies


@pytest.mark.parametrize("kind", KINDS)
def test_counts_concurrent_clients_exactly(ss, kind):
    if kind.startswith("Forking") and not HAVE_FORK:
        pytest.skip("no fork")
    cls = server_class(ss, kind)
    address, family = address_for(kind)
    n_threads, per_thread = 6, 8
    total = n_threads * per_thread

    def payload_for(t, i):
        return b"line %d %d\n" % (t, i) * (1 + (t * 7 + i) % 50)

    try:
        server = cls(address, echo_handler(ss))
        with serving(server, poll_interval=0.05):
            replies = run_clients(server.server_address, family, n_threads, per_thread,
                                  payload_for)
        stats = server.stats()
    finally:
        cleanup(address)
    sent = 0
    for payload, reply in replies.values():
        assert reply == payload.upper()
        sent += len(payload)
    assert len(replies) == total
    assert isinstance(stats, fastsock.ServerStats)
    assert stats.accepted == total
    assert stats.completed == total          # server_close() joined/reaped them all
    assert stats.rejected == stats.errors == stats.accept_errors == 0
    assert stats.active == 0 and stats.queued == 0
    if kind.startswith("Forking"):
        # The handlers ran in the children: their bytes are not counted.
        assert stats.bytes_in == stats.bytes_out == 0
    else:
        assert stats.bytes_in == sent
        assert stats.bytes_out == sent
    if "ThreadPool" in kind:
        assert stats.workers == 0            # joined on close
    assert stats.uptime > 0 and abs(stats.started - time.time()) < 3600


def test_snapshot_is_frozen_and_a_dict(ss):
    server = ss.TCPServer((HOST, 0), ss.StreamRequestHandler, bind_and_activate=False)
    try:
        stats = server.stats()
        with pytest.raises(dataclasses.FrozenInstanceError):
            stats.accepted = 5
        as_dict = stats.as_dict()
        assert as_dict["accepted"] == 0 and set(as_dict) == {
            f.name for f in dataclasses.fields(fastsock.ServerStats)}
    finally:
        server.server_close()


def test_verify_request_rejections_and_errors(ss):
    seen_errors = []

    class Server(ss.ThreadingTCPServer):
        def verify_request(self, request, client_address):
            return request.recv(1, socket.MSG_PEEK) != b"x"

        def handle_error(self, request, client_address):
            # An override that does not call super(): still counted.
            import sys
            seen_errors.append(type(sys.exc_info()[1]))

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            line = self.rfile.readline()
            if line.startswith(b"boom"):
                raise ValueError("boom")
            if line.startswith(b"reset"):
                raise ConnectionResetError("reset by the test")
            self.wfile.write(line)

    server = Server((HOST, 0), Handler)
    with serving(server, poll_interval=0.05):
        for payload in (b"x-rejected\n", b"ok\n", b"boom\n", b"reset\n", b"x2\n", b"ok\n"):
            with socket.create_connection(server.server_address, timeout=10) as sock:
                sock.sendall(payload)
                try:
                    sock.shutdown(socket.SHUT_WR)
                    recv_all(sock)
                except OSError:
                    pass    # a rejected connection may be reset first
    stats = server.stats()
    assert stats.accepted == 6
    assert stats.rejected == stats.rejected_verify == 2 and stats.rejected_tls == 0
    assert stats.completed == 4
    assert stats.errors == 2 and stats.disconnects == 1
    assert sorted(e.__name__ for e in seen_errors) == ["ConnectionResetError", "ValueError"]


@pytest.mark.skipif(not HAVE_FORK, reason="no fork")
def test_forking_counts_failed_children(ss):
    class Server(ss.ForkingTCPServer):
        def handle_error(self, request, client_address):
            pass    # quiet child

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            if self.rfile.readline().startswith(b"boom"):
                raise ValueError("boom")

    server = Server((HOST, 0), Handler)
    with serving(server, poll_interval=0.05):
        for payload in (b"boom\n", b"fine\n", b"boom\n"):
            with socket.create_connection(server.server_address, timeout=10) as sock:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
                recv_all(sock)
    stats = server.stats()
    assert stats.accepted == 3 and stats.completed == 3
    assert stats.errors == 2 and stats.active == 0


def _queue_path(server_cls):
    # An overridden verify_request(): connections go through the serve loop
    # and the pool's queue instead of the workers accepting them.
    def verify_request(self, request, client_address):
        return True
    return type(server_cls.__name__, (server_cls,), {"verify_request": verify_request})


@pytest.mark.parametrize("path", ["workers accept", "queue"])
def test_pool_gauges_while_busy(ss, path):
    release = threading.Event()
    cls = server_class(ss, "ThreadPoolTCPServer", max_workers=2, max_queue=4)
    if path == "queue":
        cls = _queue_path(cls)
    # Two busy workers; the other three clients wait in the pool's queue,
    # or, when the workers accept by themselves, in the listen backlog.
    want = (5, 2, 3, 2, 0) if path == "queue" else (2, 2, 0, 2, 0)

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            self.rfile.readline()
            release.wait(30)
            self.wfile.write(b"done\n")

    server = cls((HOST, 0), Handler)
    socks = []
    try:
        with serving(server, poll_interval=0.05):
            for _ in range(5):
                sock = socket.create_connection(server.server_address, timeout=30)
                sock.sendall(b"go\n")
                socks.append(sock)
            deadline = time.monotonic() + 20
            while True:
                stats = server.stats()
                if (stats.accepted, stats.active, stats.queued) == want[:3] or \
                        time.monotonic() > deadline:
                    break
                time.sleep(0.01)
            time.sleep(0.1)     # (nothing more may come)
            stats = server.stats()
            assert (stats.accepted, stats.active, stats.queued, stats.workers,
                    stats.idle_workers) == want, stats
            release.set()
            for sock in socks:
                assert recv_all(sock) == b"done\n"
    finally:
        release.set()
        for sock in socks:
            sock.close()
    stats = server.stats()
    assert stats.completed == 5 and stats.active == 0 and stats.queued == 0


@pytest.mark.parametrize("kind", ["UDPServer", "ThreadingUDPServer", "UnixDatagramServer"])
def test_datagram_servers(ss, kind):
    class Echo(ss.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.read().upper())

    if "Unix" in kind:
        address, family = unix_path(), socket.AF_UNIX
        client_address = unix_path()
    else:
        address, family, client_address = (HOST, 0), socket.AF_INET, (HOST, 0)
    n = 40
    try:
        server = getattr(ss, kind)(address, Echo)
        with serving(server, poll_interval=0.05):
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.bind(client_address)
                sock.settimeout(10)
                for i in range(n):
                    sock.sendto(b"ping %d" % i, server.server_address)
                    assert sock.recv(100) == b"PING %d" % i
        stats = server.stats()
    finally:
        cleanup(address)
        cleanup(client_address)
    size = sum(len(b"ping %d" % i) for i in range(n))
    assert stats.accepted == stats.completed == n
    assert stats.bytes_in == stats.bytes_out == size
    assert stats.errors == stats.rejected == 0


@pytest.mark.parametrize("reply_batch", [1, 8])
def test_udp_short_path_counts_errors(ss, reply_batch):
    # UDPServer skips its pass-through hooks while they are the stdlib's
    # own; the counts must be the same as on the long path.
    class Echo(ss.DatagramRequestHandler):
        def handle(self):
            data = self.rfile.read()
            if data == b"boom":
                raise ValueError("boom")
            self.wfile.write(data)

    cls = type("Quiet", (ss.UDPServer,), {"reply_batch": reply_batch,
                                          "handle_error": lambda self, r, a: None})
    server = cls((HOST, 0), Echo)
    with serving(server, poll_interval=0.05):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(10)
            for i in range(6):
                sock.sendto(b"boom" if i % 3 == 0 else b"ok", server.server_address)
                # finish() runs after a raising handle(): an empty reply (stdlib too)
                assert sock.recv(100) == (b"ok" if i % 3 else b"")
    stats = server.stats()
    assert stats.accepted == stats.completed == 6
    assert stats.errors == 2 and stats.active == 0


def test_tls_handshake_failures_are_rejections(ss):
    ssl = pytest.importorskip("ssl")
    # A context without a certificate: every handshake fails on the server.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cls = type("TLS", (ss.ThreadingTCPServer,), {"ssl_context": ctx})
    server = cls((HOST, 0), echo_handler(ss))
    with serving(server, poll_interval=0.05):
        for _ in range(3):
            with socket.create_connection(server.server_address, timeout=10) as plain:
                plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
                try:
                    recv_all(plain)
                except ConnectionResetError:
                    pass
    stats = server.stats()
    assert stats.accepted == 3
    assert stats.rejected == stats.rejected_tls == 3
    assert stats.completed == 0 and stats.errors == 0


def test_exporter_runs_survives_errors_and_stops_on_close(ss, caplog):
    got = []
    calls = []

    def good(stats):
        got.append(stats)

    def bad(stats):
        calls.append(stats)
        raise RuntimeError("exporter bug")

    server = ss.ThreadingTCPServer((HOST, 0), echo_handler(ss))
    with caplog.at_level(logging.ERROR, logger="fastsock"):
        with serving(server, poll_interval=0.05):
            exporter = server.export_stats(good, interval=0.02)
            server.export_stats(bad, interval=0.02)
            with pytest.raises(RuntimeError):
                exporter.start()    # only once
            deadline = time.monotonic() + 20
            while (len(got) < 3 or len(calls) < 3) and time.monotonic() < deadline:
                time.sleep(0.01)
            # the server still serves
            with socket.create_connection(server.server_address, timeout=10) as sock:
                sock.sendall(b"hi\n")
                sock.shutdown(socket.SHUT_WR)
                assert recv_all(sock) == b"HI\n"
    # server_close() stopped both threads (the leak check would fail
    # otherwise) after a final export with the final totals.
    assert len(got) >= 3 and len(calls) >= 3
    assert got[-1].accepted == 1 and got[-1].completed == 1
    n = len(got)
    time.sleep(0.1)
    assert len(got) == n
    assert any("stats exporter" in r.getMessage() and r.exc_info for r in caplog.records)
    exporter.stop()     # idempotent


def test_exporter_stop_and_arguments(ss):
    server = ss.TCPServer((HOST, 0), ss.StreamRequestHandler)
    try:
        with pytest.raises(ValueError):
            server.export_stats(print, interval=0)
        with pytest.raises(TypeError):
            server.export_stats(42, interval=1)
        got = []
        with server.export_stats(got.append, interval=3600, final=False):
            pass
        assert got == []
        exporter = server.export_stats(got.append, interval=3600)
        exporter.stop()
        assert len(got) == 1 and got[0].accepted == 0
    finally:
        server.server_close()


def test_prometheus_text():
    stats = fastsock.ServerStats(accepted=7, rejected=1, rejected_verify=1, completed=6,
                                 bytes_in=100, bytes_out=200, active=1, workers=3,
                                 uptime=12.5, started=1700000000.0)
    text = fastsock.prometheus_text(stats, labels={"server": 'a"b\\c'})
    assert text.endswith("\n")
    samples = {}
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            types[name] = kind
        elif not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            name, labels = name_labels.split("{", 1)
            assert labels == 'server="a\\"b\\\\c"}'
            samples[name] = float(value)
    assert samples["fastsock_accepted_total"] == 7
    assert samples["fastsock_rejected_total"] == 1
    assert samples["fastsock_completed_total"] == 6
    assert samples["fastsock_bytes_in_total"] == 100
    assert samples["fastsock_bytes_out_total"] == 200
    assert samples["fastsock_active"] == 1 and samples["fastsock_workers"] == 3
    assert samples["fastsock_uptime_seconds"] == 12.5
    assert samples["fastsock_started_time_seconds"] == 1700000000.0
    assert types["fastsock_accepted_total"] == "counter"
    assert types["fastsock_active"] == "gauge"
    assert set(types) == set(samples)
    plain = fastsock.prometheus_text(stats, prefix="api")
    assert "api_accepted_total 7\n" in plain
    with pytest.raises(ValueError):
        fastsock.prometheus_text(stats, labels={"bad-name": "x"})


# ------------------------------------------------ rfile/wfile byte counters

@pytest.mark.parametrize("rbufsize", [-1, 0])
@pytest.mark.parametrize("wbufsize", [0, 16])
def test_stream_byte_counters(core, rbufsize, wbufsize):
    a, b = socket.socketpair()
    try:
        reader = core.SocketReader(a, rbufsize)
        writer = core.SocketWriter(a, wbufsize, reader)
        assert reader.bytes_read == 0 and writer.bytes_written == 0
        b.sendall(b"one\ntwo\nthree\n")
        b.shutdown(socket.SHUT_WR)
        # readline() on an unbuffered reader peeks: peeks are not counted twice
        assert reader.readline() == b"one\n"
        writer.write(b"x" * 10)
        writer.write(b"y" * 100)
        rest = reader.read()
        assert rest == b"two\nthree\n"
        assert reader.bytes_read == 14
        writer.flush()
        writer.close()
        assert writer.bytes_written == 110
        reader.close()
        a.shutdown(socket.SHUT_WR)
        assert recv_all(b) == b"x" * 10 + b"y" * 100
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("kind", ["TCPServer", "ThreadingTCPServer", "ThreadPoolTCPServer",
                                  "ForkingTCPServer"])
def test_final_export_has_the_final_totals(ss, kind):
    if kind.startswith("Forking") and not HAVE_FORK:
        pytest.skip("no fork")
    got = []

    class Handler(ss.StreamRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.readline())
            self.wfile.flush()
            time.sleep(0.3)     # still running when the client has its reply

    server = server_class(ss, kind)((HOST, 0), Handler)
    server.export_stats(got.append, interval=3600)
    with serving(server, poll_interval=0.05):
        with socket.create_connection(server.server_address, timeout=10) as sock:
            sock.sendall(b"hi\n")
            assert sock.recv(10) == b"hi\n"
    # server_close() stopped the exporter only after the request finished
    assert len(got) == 1
    assert got[0].accepted == 1 and got[0].completed == 1 and got[0].active == 0


def test_counters_are_exact_under_thread_races(core):
    # The compiled Counters rely on the GIL (no lock), the twin on a lock:
    # many threads updating at once must lose no update either way.
    counters = core.Counters()
    rounds = 20000
    start = threading.Barrier(8)

    def hammer():
        start.wait()
        for _ in range(rounds):
            counters.accept_begin()
            counters.add_bytes(3, 5)
            counters.error(True)
            counters.end()

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)   # force thread switches between updates
    try:
        threads = [threading.Thread(target=hammer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    n = 8 * rounds
    assert counters.values() == {
        "accepted": n, "rejected_verify": 0, "rejected_tls": 0, "completed": n,
        "errors": n, "disconnects": n, "accept_errors": 0, "bytes_in": 3 * n,
        "bytes_out": 5 * n, "active": 0}
    counters.child_done(True)
    counters.reject_verify()
    counters.reject_tls()
    counters.accept_error()
    counters.accept()
    counters.begin()
    v = counters.values()
    assert (v["completed"], v["errors"], v["rejected_verify"], v["rejected_tls"],
            v["accept_errors"], v["accepted"], v["active"]) == (n + 1, n + 1, 1, 1, 1, n + 1, 1)
