"""The benchmark's UDP load generator checks what it is sent back.

Both clients (``loadgen.c`` and its pure-Python stand-in ``pyclient``) are run
against small UDP servers in a thread that echo correctly, out of order,
corrupted or with losses.  A client that counted a wrong echo as an operation,
or stalled on a lost datagram, would make every UDP figure meaningless.  No
timing is asserted.
"""
import json
import os
import select
import socket
import subprocess
import sys
import threading

import pytest

import fastsock
from fastsock._bench import build

CONNS, DEPTH = 3, 5


@pytest.fixture(params=["c", "python"])
def client(request):
    """argv prefix of the load generator's client, C or Python."""
    if request.param == "c":
        path = build.loadgen_path()
        if path is None:
            pytest.skip("no C compiler: %s" % build.failure_reason())
        return [path, "client"]
    return [sys.executable, "-m", "fastsock._bench.pyclient", "client"]


class Server(threading.Thread):
    """A UDP echo server with a fault: ``echo``, ``reorder`` (each drained
    batch answered last first), ``corrupt`` (every 5th echo has a byte
    changed), ``drop`` (every 7th datagram is not answered)."""

    def __init__(self, fault):
        super().__init__(daemon=True)
        self.fault = fault
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.count = 0
        self.max_batch = 0
        self.peers = set()

    def run(self):
        while not self.stopped.is_set():
            if not select.select([self.sock], [], [], 0.05)[0]:
                continue
            batch = []
            while True:
                try:
                    batch.append(self.sock.recvfrom(65536))
                except BlockingIOError:
                    break
            self.max_batch = max(self.max_batch, len(batch))
            if self.fault == "reorder":
                batch.reverse()
            for data, addr in batch:
                self.count += 1
                self.peers.add(addr)
                if self.fault == "drop" and self.count % 7 == 0:
                    continue
                if self.fault == "corrupt" and self.count % 5 == 0:
                    data = data[:20] + bytes([data[20] ^ 1]) + data[21:]
                try:
                    self.sock.sendto(data, addr)
                except OSError:
                    pass

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stopped.set()
        self.join(5)
        self.sock.close()


def run_udp(client, port):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastsock.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    out = subprocess.run(
        client + ["udp", "--port", str(port), "--conns", str(CONNS), "--depth", str(DEPTH),
                  "--duration", "0.6", "--warmup", "0.1", "--timeout", "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30, env=env, check=True)
    return json.loads(out.stdout)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("fault", ["echo", "reorder"])
def test_udp_depth_and_order(client, fault):
    with Server(fault) as srv:
        r = run_udp(client, srv.port)
    assert r["depth"] == DEPTH and r["conns"] == CONNS
    assert r["errors"] == 0, r["error_detail"]
    assert r["ops"] > 0 and r["verified_bytes"] >= r["bytes"] > 0
    assert r["drained"] is True
    assert len(srv.peers) == CONNS
    # more datagrams queued at once than there are sockets: several in
    # flight per socket
    assert srv.max_batch > CONNS


@pytest.mark.timeout(60)
def test_udp_corrupt_echo_is_counted_not_served(client):
    with Server("corrupt") as srv:
        r = run_udp(client, srv.port)
    detail = r["error_detail"]
    assert detail["mismatch"] > 0
    # a slot whose echo was wrong times out and moves on
    assert detail["udp_lost"] > 0
    assert r["ops"] > 0
    # every counted operation was a verified echo: 5 in 5 datagrams would be
    # ops; only the good ones are
    assert r["verified_bytes"] < srv.count * 64


@pytest.mark.timeout(60)
def test_udp_lost_datagrams_are_counted_and_replaced(client):
    with Server("drop") as srv:
        r = run_udp(client, srv.port)
    detail = r["error_detail"]
    assert detail["udp_lost"] > 0
    assert detail["mismatch"] == 0
    assert r["ops"] > 0
    # the run went on past the first losses: more datagrams were sent than
    # the slots hold
    assert srv.count > 10 * CONNS * DEPTH
