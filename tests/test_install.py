"""fastsock.install(): the stdlib's own servers on fastsock, through real clients."""
import http.client
import http.server
import importlib
import logging
import logging.handlers
import pickle
import socketserver as stdlib_ss
import struct
import sys
import threading
import xmlrpc.client
import xmlrpc.server
from wsgiref import simple_server

import pytest

import fastsock
from helpers import HOST, Hello, serving


@pytest.fixture
def installed(core, monkeypatch):
    """install() with fastsock's classes running on the backend under test."""
    monkeypatch.setattr(fastsock.BaseServer, "_core", core)
    monkeypatch.setattr(fastsock.StreamRequestHandler, "_core", core)
    fastsock.install()
    try:
        yield core
    finally:
        fastsock.uninstall()


def test_install_and_uninstall_restore_everything(installed):
    import socketserver
    assert socketserver is fastsock
    assert http.server.HTTPServer.__bases__ == (fastsock.TCPServer,)
    assert http.server.ThreadingHTTPServer.__mro__[1] is fastsock.ThreadingMixIn
    assert http.server.BaseHTTPRequestHandler.__bases__ == (fastsock.StreamRequestHandler,)
    assert xmlrpc.server.SimpleXMLRPCServer.__mro__[1] is fastsock.TCPServer
    assert simple_server.WSGIServer.__mro__[2] is fastsock.TCPServer
    assert http.server.socketserver is fastsock
    fastsock.uninstall()
    import socketserver
    assert socketserver is stdlib_ss
    assert http.server.HTTPServer.__bases__ == (stdlib_ss.TCPServer,)
    assert http.server.BaseHTTPRequestHandler.__bases__ == (stdlib_ss.StreamRequestHandler,)
    assert http.server.socketserver is stdlib_ss
    assert not fastsock._install.installed()
    fastsock.install()  # the fixture uninstalls again


def test_modules_imported_after_install_use_fastsock(installed):
    saved = sys.modules.pop("http.server")
    try:
        fresh = importlib.import_module("http.server")
        assert fresh is not saved
        assert fresh.HTTPServer.__bases__ == (fastsock.TCPServer,)
        fastsock.uninstall()
        # converted back to the stdlib as well
        assert fresh.HTTPServer.__bases__ == (stdlib_ss.TCPServer,)
        assert fresh.socketserver is stdlib_ss
        fastsock.install()
    finally:
        sys.modules["http.server"] = saved
        import http
        http.server = saved  # the import above rebound the package attribute


@pytest.mark.parametrize("server_name", ["HTTPServer", "ThreadingHTTPServer"])
def test_http_server_keep_alive(installed, server_name):
    server_cls = getattr(http.server, server_name)
    with serving(server_cls((HOST, 0), Hello)) as server:
        assert isinstance(server, fastsock.TCPServer)
        conn = http.client.HTTPConnection(*server.server_address, timeout=10)
        try:
            for i in range(20):
                conn.request("GET", "/%d" % i)
                response = conn.getresponse()
                assert response.status == 200
                assert response.read() == b"hello /%d" % i
            conn.request("HEAD", "/")
            response = conn.getresponse()
            assert response.status == 200 and response.read() == b""
            payload = bytes(range(256)) * 40
            conn.request("POST", "/echo", body=payload)
            response = conn.getresponse()
            assert response.status == 201 and response.read() == payload[::-1]
        finally:
            conn.close()


def test_http_server_uses_fastsock_streams(installed):
    seen = {}

    class Probe(Hello):
        def do_GET(self):
            seen["rfile"] = type(self.rfile)
            seen["wfile"] = type(self.wfile)
            super().do_GET()

    with serving(http.server.ThreadingHTTPServer((HOST, 0), Probe)) as server:
        conn = http.client.HTTPConnection(*server.server_address, timeout=10)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b"hello /"
        conn.close()
    assert seen == {"rfile": installed.SocketReader, "wfile": installed.SocketWriter}


def test_xmlrpc_round_trip(installed):
    server = xmlrpc.server.SimpleXMLRPCServer((HOST, 0), logRequests=False)
    server.register_function(lambda a, b: a + b, "add")
    server.register_function(lambda s: s[::-1], "reverse")
    server.register_introspection_functions()
    assert isinstance(server, fastsock.TCPServer)
    with serving(server):
        url = "http://%s:%d/" % server.server_address
        with xmlrpc.client.ServerProxy(url) as proxy:
            assert proxy.add(2, 40) == 42
            assert proxy.reverse("fastsock") == "kcostsaf"
            assert "add" in proxy.system.listMethods()
            with pytest.raises(xmlrpc.client.Fault):
                proxy.missing()


def test_wsgiref_app(installed):
    def app(environ, start_response):
        body = ("%s %s" % (environ["REQUEST_METHOD"], environ["PATH_INFO"])).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    class QuietHandler(simple_server.WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = simple_server.make_server(HOST, 0, app, handler_class=QuietHandler)
    assert isinstance(server, fastsock.TCPServer)
    with serving(server):
        conn = http.client.HTTPConnection(*server.server_address, timeout=10)
        conn.request("GET", "/wsgi/path")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b"GET /wsgi/path"
        conn.close()


def test_logging_socket_handler_record(installed):
    import socketserver  # fastsock, after install()
    records = []
    received = threading.Event()

    class RecordHandler(socketserver.StreamRequestHandler):
        def handle(self):
            while True:
                header = self.rfile.read(4)
                if len(header) < 4:
                    return
                (length,) = struct.unpack(">L", header)
                records.append(logging.makeLogRecord(pickle.loads(self.rfile.read(length))))
                received.set()

    server = socketserver.ThreadingTCPServer((HOST, 0), RecordHandler)
    with serving(server):
        handler = logging.handlers.SocketHandler(*server.server_address)
        logger = logging.getLogger("fastsock.test.remote")
        logger.propagate = False
        logger.addHandler(handler)
        try:
            logger.warning("over the wire %d", 42)
            assert received.wait(10)
        finally:
            logger.removeHandler(handler)
            handler.close()
    assert [r.getMessage() for r in records] == ["over the wire 42"]
    assert records[0].name == "fastsock.test.remote"
