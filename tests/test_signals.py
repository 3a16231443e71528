"""Ctrl-C: SIGINT ends a process blocked in the serve loop, on both backends."""
import os
import signal
import subprocess
import sys
import time

import pytest

CHILD = r"""
import sys, socket, fastsock
assert fastsock.BACKEND == sys.argv[1], fastsock.BACKEND
mode = sys.argv[2]

class Handler(fastsock.StreamRequestHandler):
    def handle(self):
        print("handling", flush=True)
        self.rfile.readline()   # blocks: the client sends nothing

if mode == "pool":
    # the workers accept by themselves; one of them is in a handler
    server = type("Pool", (fastsock.ThreadPoolTCPServer,), {"daemon_threads": True})(
        ("127.0.0.1", 0), Handler)
    client = socket.create_connection(server.server_address)
    server.serve_forever(poll_interval=60)
server = fastsock.TCPServer(("127.0.0.1", 0), Handler)
if mode == "serve_forever":
    print("ready", flush=True)
    server.serve_forever(poll_interval=60)
elif mode == "handle_request":
    print("ready", flush=True)
    server.handle_request()
elif mode == "readline":
    client = socket.create_connection(server.server_address)
    server.handle_request()
"""


@pytest.mark.parametrize("mode", ["serve_forever", "handle_request", "readline", "pool"])
def test_sigint_interrupts_blocked_loop(backend_name, mode):
    env = dict(os.environ)
    env["FASTSOCK_PURE"] = "1" if backend_name == "python" else "0"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, backend_name, mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        line = proc.stdout.readline()
        assert line.strip() in (b"ready", b"handling"), (line, proc.stderr.read())
        time.sleep(0.3)  # let it block in the wait / recv
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert b"KeyboardInterrupt" in err, err
    assert proc.returncode != 0
