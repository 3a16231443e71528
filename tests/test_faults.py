"""Faults the stdlib handles badly: out of descriptors in accept()."""
import os
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest

CHILD = r"""
import resource, sys, threading, fastsock
assert fastsock.BACKEND == sys.argv[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), int(sys.argv[2])))

class Handler(fastsock.StreamRequestHandler):
    def handle(self):
        self.wfile.write(self.rfile.readline())

class Server(getattr(fastsock, sys.argv[3])):
    request_queue_size = 128
    daemon_threads = True

server = Server(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever(poll_interval=60)
"""


def read_line(client, i):
    """One reply line from connection number *i*."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = client.recv(100)
        assert chunk, "connection %d closed unanswered" % i
        data += chunk
    return data


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.parametrize("kind", ["ThreadingTCPServer", "ThreadPoolTCPServer"])
def test_emfile_backs_off_and_recovers(backend_name, kind):
    # (on the pool, its workers accept by themselves: see _WorkerPool.lead)
    limit = 40
    env = dict(os.environ, FASTSOCK_PURE="1" if backend_name == "python" else "0")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, backend_name, str(limit), kind],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    clients = []
    try:
        port = int(proc.stdout.readline())
        # More connections than the server has descriptors for; each handler
        # holds its connection until the client sends a line.
        for _ in range(limit + 20):
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        time.sleep(0.5)  # the server is now out of descriptors
        before = cpu_seconds(proc.pid)
        time.sleep(1.0)
        spent = cpu_seconds(proc.pid) - before
        # The stdlib spins at 100% of a core here; fastsock sleeps.
        assert spent < 0.3, "server used %.2f s of CPU in 1 s while out of fds" % spent
        # Free descriptors: every client, including those accepted late, is served.
        for i, client in enumerate(clients):
            client.sendall(b"hello %d\n" % i)
            assert read_line(client, i) == b"hello %d\n" % i
            client.close()
    finally:
        for client in clients:
            client.close()
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    err = err.decode()
    # Logged once per episode, not per attempt.
    assert err.count("pausing new connections") == 1, err
    assert "Too many open files" in err
    assert err.count("accepting connections again") == 1, err


PREFORK = r"""
import os, signal, sys, threading, time, fastsock
assert fastsock.BACKEND == sys.argv[1]

class Handler(fastsock.StreamRequestHandler):
    def handle(self):
        self.wfile.write(self.rfile.readline())

class Server(fastsock.ThreadPoolTCPServer):
    request_queue_size = 128
    daemon_threads = True

server = Server(("127.0.0.1", 0), Handler)
go_r, go_w = os.pipe()
pid = os.fork()
if pid == 0:                        # the second process: serves until stdin closes
    def watch():
        sys.stdin.read()
        os._exit(0)
    threading.Thread(target=watch, daemon=True).start()
    os.read(go_r, 1)                # after the first process's session has begun
    server.serve_forever(poll_interval=0.05)
    os._exit(0)
print(server.server_address[1], pid, flush=True)

def start_second():
    # The first session begun (it made the shared descriptor non-blocking),
    # the second process may start its own: the first is the one that
    # restores blocking mode when it stops.
    while os.get_blocking(server.fileno()):
        time.sleep(0.005)
    os.write(go_w, b"x")
    time.sleep(0.3)                 # both serving a while
    server.shutdown()

threading.Thread(target=start_second).start()
server.serve_forever(poll_interval=0.05)   # returns after 1 s: its session ends
deadline = time.monotonic() + 10
while server.pool_stats["workers"] and time.monotonic() < deadline:
    time.sleep(0.01)
print("stopped", os.get_blocking(server.fileno()), flush=True)
sys.stdin.read()                    # keeps the socket open until the test is done
"""


def test_prefork_shared_listener_survives_one_process_stopping(backend_name):
    # Two processes serve one inherited listening socket with thread pools
    # whose workers accept by themselves, and so share its non-blocking
    # flag.  One stops and makes the socket blocking again; the other goes
    # on serving every client (its workers never freeze the process).
    env = dict(os.environ, FASTSOCK_PURE="1" if backend_name == "python" else "0")
    proc = subprocess.Popen([sys.executable, "-c", PREFORK, backend_name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    child = None
    try:
        port, child = map(int, proc.stdout.readline().split())
        def exchange(i):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
                client.sendall(b"line %d\n" % i)
                assert read_line(client, i) == b"line %d\n" % i
        for i in range(20):
            exchange(i)
        assert proc.stdout.readline().strip() == b"stopped True"
        for i in range(20, 60):         # served by the second process only
            exchange(i)
    finally:
        if child:
            os.kill(child, signal.SIGKILL)
        try:
            _, err = proc.communicate(timeout=10)     # (closes its stdin)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err.decode()
