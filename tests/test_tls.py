"""TLS servers with real ssl clients and a certificate made at test time."""
import socket
import ssl
import threading
import time

import pytest

from helpers import HOST, serving


def echo(ss):
    class Echo(ss.StreamRequestHandler):
        def handle(self):
            self.server.seen.append(type(self.connection))
            for line in self.rfile:
                self.wfile.write(line)
    return Echo


def tls_exchange(client_ctx, address, payload):
    with socket.create_connection(address, timeout=10) as raw:
        with client_ctx.wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(payload)
            data = b""
            while len(data) < len(payload):
                chunk = tls.recv(65536)
                assert chunk
                data += chunk
            return data


@pytest.mark.parametrize("kind", ["TCPServer", "ThreadingTCPServer"])
def test_tls_echo(ss, contexts, kind):
    server_ctx, client_ctx = contexts
    cls = type("TLS" + kind, (getattr(ss, kind),), {"ssl_context": server_ctx})
    server = cls((HOST, 0), echo(ss))
    server.seen = []
    with serving(server, poll_interval=0.05):
        payload = b"".join(b"secret line %d\n" % i for i in range(300))
        assert tls_exchange(client_ctx, server.server_address, payload) == payload
    assert server.seen == [ssl.SSLSocket]


def test_tls_pool_silent_client_blocks_nobody(ss, contexts, caplog):
    import fastsock
    import logging
    caplog.set_level(logging.DEBUG, logger="fastsock")
    server_ctx, client_ctx = contexts

    class Server(fastsock.ThreadPoolTCPServer):
        _core = ss.core
        ssl_context = server_ctx
        ssl_handshake_timeout = 0.5

    server = Server((HOST, 0), echo(ss))
    server.seen = []
    with serving(server, poll_interval=0.05):
        silent = socket.create_connection(server.server_address)  # never says hello
        try:
            start = time.monotonic()
            assert tls_exchange(client_ctx, server.server_address, b"hi\n") == b"hi\n"
            assert time.monotonic() - start < 0.5  # not queued behind the silent one
            silent.settimeout(10)
            assert silent.recv(1) == b""           # dropped after the handshake timeout
        finally:
            silent.close()
    assert any("TLS handshake" in r.getMessage() for r in caplog.records)


def test_tls_plaintext_client_is_dropped_quietly(ss, contexts, capfd):
    server_ctx, client_ctx = contexts
    cls = type("TLS", (ss.TCPServer,), {"ssl_context": server_ctx})
    server = cls((HOST, 0), echo(ss))
    server.seen = []
    with serving(server, poll_interval=0.05):
        with socket.create_connection(server.server_address, timeout=10) as plain:
            plain.sendall(b"GET / HTTP/1.0\r\n\r\n")
            try:
                while plain.recv(1024):  # a TLS alert, then EOF ...
                    pass
            except ConnectionResetError:
                pass                     # ... or a reset: dropped either way
        # and the server still serves TLS clients
        assert tls_exchange(client_ctx, server.server_address, b"ok\n") == b"ok\n"
    assert "Traceback" not in capfd.readouterr().err


def test_tls_client_reset_before_handshake_is_quiet(ss, contexts, capfd):
    import struct
    server_ctx, client_ctx = contexts
    cls = type("TLS", (ss.TCPServer,), {"ssl_context": server_ctx})
    server = cls((HOST, 0), echo(ss))
    server.seen = []
    with server:
        client = socket.create_connection(server.server_address)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()                      # RST before any handshake byte
        time.sleep(0.1)
        server.handle_request()
    assert "Traceback" not in capfd.readouterr().err
    assert server.seen == []
