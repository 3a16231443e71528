"""The ready-made HTTP server and the command line, through real clients."""
import http.client
import http.server
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import fastsock
from fastsock import http as fhttp
from helpers import HOST, Hello, serving


def test_ready_made_server_serves_stdlib_handler(core, monkeypatch):
    monkeypatch.setattr(fastsock.StreamRequestHandler, "_core", core)
    monkeypatch.setattr(fastsock.BaseServer, "_core", core)
    fhttp._accelerated.clear()
    with serving(fhttp.HTTPServer((HOST, 0), Hello)) as server:
        assert server.RequestHandlerClass.__mro__[1] is Hello
        conn = http.client.HTTPConnection(*server.server_address, timeout=10)
        for i in range(10):
            conn.request("GET", "/%d" % i)
            response = conn.getresponse()
            assert response.status == 200
            assert response.read() == b"hello /%d" % i
            assert response.getheader("X-Rfile") == core.SocketReader.__module__
        conn.request("HEAD", "/")
        response = conn.getresponse()
        assert response.status == 200 and response.read() == b""
        conn.request("POST", "/", body=b"keep-alive post " * 500)
        response = conn.getresponse()
        assert response.status == 201 and response.read() == (b"keep-alive post " * 500)[::-1]
        conn.close()
    fhttp._accelerated.clear()


def test_accelerate_leaves_overridden_setup_alone():
    class Custom(Hello):
        def setup(self):
            super().setup()

    custom = fhttp.accelerate_handler(Custom)
    assert custom.setup is Custom.setup
    assert custom.finish is http.server.BaseHTTPRequestHandler.finish
    fast = fhttp.accelerate_handler(Hello)
    assert fast is not Hello and issubclass(fast, Hello)
    assert fhttp.accelerate_handler(Hello) is fast


def run_cli(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "fastsock", *args], capture_output=True,
                          text=True, timeout=60, **kwargs)


def test_cli_info():
    result = run_cli("info")
    assert result.returncode == 0
    assert "backend: %s" % fastsock.BACKEND in result.stdout
    assert "python: CPython" in result.stdout


def test_cli_help_everywhere():
    for args in ([], ["info"], ["echo"], ["http"]):
        result = run_cli(*args, "--help")
        assert result.returncode == 0 and "usage: python -m fastsock" in result.stdout


def test_cli_bad_argument_is_one_clear_line(tmp_path):
    result = run_cli("http", "--directory", str(tmp_path / "missing"), "0")
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "not a directory" in result.stderr


@pytest.fixture
def cli_server(backend_name):
    procs = []

    def start(*args, cwd=None):
        env = dict(os.environ, FASTSOCK_PURE="1" if backend_name == "python" else "0")
        proc = subprocess.Popen([sys.executable, "-u", "-m", "fastsock", *args], cwd=cwd,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def free_port():
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_connectable(address, proc, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            return socket.create_connection(address, timeout=5)
        except OSError:
            time.sleep(0.05)
    raise AssertionError("server did not come up")


def stop_with_sigint(proc):
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=10)
    return proc.returncode, out, err


def test_cli_http_serves_files_and_exits_on_ctrl_c(cli_server, tmp_path, backend_name):
    (tmp_path / "hello.txt").write_bytes(b"served by fastsock\n")
    port = free_port()
    proc = cli_server("http", "--bind", HOST, "--directory", str(tmp_path), str(port))
    wait_connectable((HOST, port), proc).close()
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    conn.request("GET", "/hello.txt")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b"served by fastsock\n"
    conn.request("GET", "/nope")
    assert conn.getresponse().status == 404
    conn.close()
    code, out, err = stop_with_sigint(proc)
    assert code == 0, err
    assert "%s backend" % backend_name in err and "Keyboard interrupt" in err
    assert "Traceback" not in err


def test_cli_echo_tcp_and_udp(cli_server, backend_name):
    port = free_port()
    proc = cli_server("echo", "--bind", HOST, str(port))
    with wait_connectable((HOST, port), proc) as sock:
        sock.sendall(b"one\ntwo\n")
        data = b""
        while data.count(b"\n") < 2:
            data += sock.recv(100)
        assert data == b"one\ntwo\n"
    code, out, err = stop_with_sigint(proc)
    assert code == 0 and "%s backend" % backend_name in out and "Traceback" not in err

    proc = cli_server("echo", "--udp", "--bind", HOST, str(port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.2)
        deadline = time.monotonic() + 15
        while True:
            sock.sendto(b"ping", (HOST, port))
            try:
                assert sock.recvfrom(100)[0] == b"ping"
                break
            except socket.timeout:
                assert time.monotonic() < deadline and proc.poll() is None
    code, out, err = stop_with_sigint(proc)
    assert code == 0, err
