"""Small helpers shared by the tests (no fixtures here)."""
import contextlib
import http.server
import os
import socket
import tempfile
import threading

HOST = "127.0.0.1"


@contextlib.contextmanager
def serving(server, poll_interval=0.5):
    """Run server.serve_forever() in a thread; shut down and close on exit."""
    errors = []

    def run():
        try:
            server.serve_forever(poll_interval)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)

    thread = threading.Thread(target=run, name="serve_forever")
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
    assert not thread.is_alive(), "serve_forever did not stop"
    assert not errors, errors


def unix_path():
    """A fresh path for a unix socket (the caller unlinks it)."""
    fd, path = tempfile.mkstemp(prefix="fastsock-", suffix=".sock")
    os.close(fd)
    os.unlink(path)
    return path


def recv_all(sock):
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def tcp_exchange(address, payload, family=socket.AF_INET, timeout=10):
    """Connect, send *payload*, half-close, and return everything received."""
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        return recv_all(sock)


class Hello(http.server.BaseHTTPRequestHandler):
    """A keep-alive HTTP handler for the http.server tests: GET answers
    ``hello <path>`` (header X-Rfile: the module of rfile's type), HEAD
    the headers only, POST the body reversed; no logging."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = b"hello " + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Rfile", type(self.rfile).__module__)
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Length", "11")
        self.end_headers()

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[::-1])

    def log_message(self, *args):
        pass
