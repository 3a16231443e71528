"""Small helpers shared by the tests (no fixtures here)."""
import contextlib
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
