#!/usr/bin/env python3
"""Soak test: fastsock servers under a mix of good and hostile clients.

    python bench/soak.py                          # ~2 minutes, every server kind
    python bench/soak.py --duration 1800 --tls    # half an hour, TLS included
    python bench/soak.py --kinds threading,udp --duration 60
    python bench/soak.py --impl stdlib            # the same load on the stdlib
    python bench/soak.py --kinds tls --keep-logs  # keep the servers' stderr

Not part of the test suite.  Each server kind runs in its own child process
(this script with ``--serve KIND``) on 127.0.0.1, for ``--duration`` divided
among the kinds:

``threading``  ThreadingTCPServer, line echo (StreamRequestHandler)
``pool``       ThreadPoolTCPServer, same handler (when fastsock has it)
``forking``    ForkingTCPServer, same handler
``udp``        UDPServer, datagram echo (DatagramRequestHandler)
``tls``        ThreadingTCPServer with ssl_context (``--tls``; certificate
               from CPython's test package, or made with ``cryptography``)

Clients run in threads of this process, every loop bounded by the phase's
deadline and every socket operation by a timeout:

good      connect, send random lines (sometimes pipelined), verify every
          echoed byte, close; for UDP, datagrams verified byte for byte
no-nl     send 100 KiB without a newline, do not read, linger, close
slow      send one byte per second (slowloris), then close
reset     connect, maybe send half a line, close with SO_LINGER 0 (RST)
halfclose send a partial line, shutdown(SHUT_WR), read to EOF
garbage   random bytes, NULs, lines longer than the handler's limit
connect   connect and close at once
udp-bad   oversized (65507-byte), empty and garbage datagrams

Every second the server's RSS, open fds (/proc/PID/fd), threads and (for
the forking server) child processes are sampled; a table is printed as the
run goes, and a verdict per kind at the end:

* FAIL if a good client saw a wrong byte, an error or a timeout; if the
  server died; if after the load stops (and up to 15 s of quiet) the server
  holds more fds than before it (+2), more threads (+2; the pool's idle
  workers excepted), or more child processes; or if RSS kept growing: more
  than 10% and 4 MiB from the end of the first third of the run to the end
  (warm-up excluded; the rate is printed in MiB/min either way).
* The server's tracebacks are counted by exception (client disconnects are
  expected from the hostile clients) and listed.

Exit status 0 when every kind passes.  Only the server processes this script
started are stopped, by PID (SIGTERM, then SIGKILL after 5 s); a server also
exits by itself when this script dies (its stdin closes).
"""
import argparse
import collections
import json
import os
import random
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
MAX_LINE = 65536            # the handler's readline() limit
HANDLER_TIMEOUT = 10.0      # the handler's socket timeout (StreamRequestHandler.timeout)
KINDS = ("threading", "pool", "forking", "udp", "tls")


# -- the server side (child process) -------------------------------------------------

def serve(kind, impl, certfile):
    if impl == "stdlib":
        import socketserver
    else:
        import fastsock as socketserver

    class Echo(socketserver.StreamRequestHandler):
        timeout = HANDLER_TIMEOUT

        def handle(self):
            try:
                while True:
                    line = self.rfile.readline(MAX_LINE)
                    if not line:
                        return
                    self.wfile.write(line)
            except (TimeoutError, ConnectionError):
                return      # hostile clients: expected, not worth a traceback

    class DatagramEcho(socketserver.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.read())

    if kind == "udp":
        server = socketserver.UDPServer((HOST, 0), DatagramEcho)
    else:
        cls = {"threading": socketserver.ThreadingTCPServer,
               "forking": getattr(socketserver, "ForkingTCPServer", None),
               "pool": getattr(socketserver, "ThreadPoolTCPServer", None),
               "tls": socketserver.ThreadingTCPServer}[kind]
        cls = type("Soak" + cls.__name__, (cls,), {
            "allow_reuse_address": True, "request_queue_size": 128,
            "daemon_threads": True, "block_on_close": False})
        server = cls((HOST, 0), Echo)
        if kind == "tls":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile)
            server.ssl_context = ctx
            server.ssl_handshake_timeout = 2.0
    thread = threading.Thread(target=server.serve_forever, args=(0.5,), name="serve")
    thread.start()
    cls = type(server)
    info = {"address": server.server_address, "pid": os.getpid(), "kind": kind,
            "impl": impl,
            "class": (cls.__mro__[1] if cls.__name__.startswith("Soak") else cls).__name__,
            "backend": getattr(socketserver, "BACKEND", "stdlib")}
    sys.stdout.write("READY %s\n" % json.dumps(info))
    sys.stdout.flush()
    # Serve until SIGTERM, or until the parent goes away (stdin closes).
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    thread.join(10)
    server.server_close()


# -- certificates ---------------------------------------------------------------------

def find_cert(tmpdir):
    try:
        import test
        base = os.path.dirname(test.__file__)
        for path in (os.path.join(base, "certdata", "keycert.pem"),
                     os.path.join(base, "keycert.pem")):
            if os.path.exists(path):
                return path
    except ImportError:
        pass
    try:
        import datetime
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        return None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .sign(key, hashes.SHA256()))
    path = os.path.join(tmpdir, "soak-cert.pem")
    with open(path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return path


# -- sampling the server ----------------------------------------------------------------

def sample(pid):
    """(rss_kib, fds, threads, children) of process pid, or None if it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            status = f.read()
        fds = len(os.listdir("/proc/%d/fd" % pid))
    except (FileNotFoundError, ProcessLookupError):
        return None
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
    threads = int(re.search(r"^Threads:\s+(\d+)", status, re.M).group(1))
    children = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    stat = f.read()
            except OSError:
                continue
            # Field 4 (ppid) follows the ")" that ends the command name.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children += 1
    return rss, fds, threads, children


# -- the clients --------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.errors = collections.Counter()
        self.examples = {}

    def add(self, name, n=1):
        with self.lock:
            self.counts[name] += n

    def error(self, kind, detail):
        with self.lock:
            self.errors[kind] += 1
            self.examples.setdefault(kind, detail)


def recv_exactly(sock, n):
    chunks, got = [], 0
    while got < n:
        chunk = sock.recv(min(n - got, 1 << 20))
        if not chunk:
            raise EOFError("EOF after %d of %d bytes" % (got, n))
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


class Load:
    """The client threads of one phase, all stopping at deadline."""

    def __init__(self, kind, address, deadline, clients, seed, tls_ctx):
        self.kind = kind
        self.address = tuple(address)
        self.deadline = deadline
        self.clients = clients
        self.stats = Stats()
        self.tls_ctx = tls_ctx
        self.seed = seed
        self.threads = []

    def left(self):
        return self.deadline - time.monotonic()

    def connect(self, timeout=10.0):
        sock = socket.create_connection(self.address, timeout=timeout)
        if self.tls_ctx is not None:
            try:
                sock = self.tls_ctx.wrap_socket(sock, server_hostname="localhost")
            except BaseException:
                sock.close()
                raise
        return sock

    def start(self):
        if self.kind == "udp":
            workers = [self.udp_good] * self.clients + [self.udp_bad]
        else:
            workers = ([self.good] * self.clients
                       + [self.no_newline, self.reset, self.halfclose, self.garbage,
                          self.connect_only, self.slow, self.slow])
        for i, worker in enumerate(workers):
            thread = threading.Thread(target=self.run, args=(worker, i),
                                      name="client-%s-%d" % (worker.__name__, i))
            thread.start()
            self.threads.append(thread)

    def join(self):
        for thread in self.threads:
            thread.join(HANDLER_TIMEOUT + 30)
        return [t.name for t in self.threads if t.is_alive()]

    def run(self, worker, i):
        rng = random.Random(self.seed * 1000 + i)
        while self.left() > 0:
            try:
                worker(rng)
            except Exception as exc:    # a worker's own bug: report, do not spin
                self.stats.error("client-bug", "%s: %r" % (worker.__name__, exc))
                time.sleep(0.1)

    # good clients: every byte verified -------------------------------------------

    def good(self, rng):
        lines = []
        for _ in range(rng.randint(1, 40)):
            size = rng.choice((1, 10, 100, 1000, 8000, 30000))
            body = bytes(rng.getrandbits(8) for _ in range(min(size, 64)))
            body = (body * (size // max(len(body), 1) + 1))[:size].replace(b"\n", b"-")
            lines.append(body + b"\n")
        # Pipelined: every line sent before reading; small enough for the
        # socket buffers to hold both ways, so neither side has to read first.
        pipelined = rng.random() < 0.3
        if pipelined:
            while len(lines) > 1 and sum(map(len, lines)) > 32768:
                lines.pop()
        try:
            with self.connect() as sock:
                if pipelined:
                    payload = b"".join(lines)
                    sock.sendall(payload)
                    ok = recv_exactly(sock, len(payload)) == payload
                else:
                    ok = True
                    for line in lines:
                        sock.sendall(line)
                        if recv_exactly(sock, len(line)) != line:
                            ok = False
                            break
                if not ok:
                    self.stats.error("mismatch", "echo differs (%d lines)" % len(lines))
                    return
                self.stats.add("good-lines", len(lines))
                self.stats.add("good-bytes", sum(map(len, lines)))
                self.stats.add("good-conns")
        except (OSError, EOFError, ssl.SSLError) as exc:
            if self.left() > 0:
                self.stats.error(type(exc).__name__, "good client: %r" % exc)

    def udp_good(self, rng):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(2.0)
            for seq in range(200):
                if self.left() <= 0:
                    return
                size = rng.choice((1, 64, 512, 1400, 8000))
                payload = struct.pack("!Q", rng.getrandbits(64)) + bytes(size)
                sock.sendto(payload, self.address)
                try:
                    while True:
                        data, _ = sock.recvfrom(65536)
                        if data == payload:
                            self.stats.add("good-lines")
                            self.stats.add("good-bytes", len(data))
                            break
                        if len(data) >= 8 and data[8:] == bytes(len(data) - 8):
                            continue    # a late echo of an earlier datagram
                        self.stats.error("mismatch", "datagram echo differs")
                        return
                except socket.timeout:
                    self.stats.add("udp-lost")      # loopback UDP may drop under load

    # hostile clients ---------------------------------------------------------------

    def bad(self, name):
        self.stats.add("bad-" + name)

    def no_newline(self, rng):
        try:
            with self.connect() as sock:
                for _ in range(25):
                    sock.sendall(b"x" * 4096)
                time.sleep(min(1.0, max(self.left(), 0)))
        except (OSError, ssl.SSLError):
            pass
        self.bad("no-newline")

    def slow(self, rng):
        try:
            with self.connect() as sock:
                for _ in range(rng.randint(2, 8)):
                    if self.left() <= 0:
                        break
                    sock.sendall(b"s")
                    time.sleep(1.0)
        except (OSError, ssl.SSLError):
            pass
        self.bad("slow")

    def reset(self, rng):
        try:
            sock = socket.create_connection(self.address, timeout=5)
        except OSError:
            return
        try:
            if rng.random() < 0.5:
                sock.sendall(b"half a li")
            if rng.random() < 0.5:
                time.sleep(0.01)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        finally:
            sock.close()
        self.bad("reset")
        time.sleep(0.01)

    def halfclose(self, rng):
        socks = []
        try:
            socks.append(self.connect(timeout=HANDLER_TIMEOUT + 5))
            socks[0].sendall(b"partial line without end" if rng.random() < 0.5 else b"a\nb")
            if self.tls_ctx is not None:
                socks.append(socks[0].unwrap())     # TLS close_notify first
            socks[-1].shutdown(socket.SHUT_WR)
            while socks[-1].recv(65536):
                pass
        except OSError:     # ssl.SSLError included
            pass
        finally:
            for sock in socks:
                sock.close()
        self.bad("halfclose")

    def garbage(self, rng):
        try:
            with socket.create_connection(self.address, timeout=5) as sock:
                choice = rng.randrange(3)
                if choice == 0:
                    sock.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 5000))))
                elif choice == 1:
                    sock.sendall(b"\0" * rng.randint(1, 100000) + b"\n")
                else:
                    sock.sendall(b"y" * (MAX_LINE * 2 + 7) + b"\n")
                sock.settimeout(0.5)
                try:
                    while sock.recv(1 << 20):
                        pass
                except OSError:
                    pass
        except OSError:
            pass
        self.bad("garbage")

    def connect_only(self, rng):
        try:
            socket.create_connection(self.address, timeout=5).close()
        except OSError:
            pass
        self.bad("connect")
        time.sleep(0.005)

    def udp_bad(self, rng):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for _ in range(50):
                if self.left() <= 0:
                    return
                choice = rng.randrange(3)
                try:
                    if choice == 0:
                        sock.sendto(b"O" * 65507, self.address)
                    elif choice == 1:
                        sock.sendto(b"", self.address)
                    else:
                        sock.sendto(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000))),
                                    self.address)
                except OSError:
                    pass
                self.bad("udp-bad")
                time.sleep(0.002)
            sock.setblocking(False)
            try:
                while sock.recv(65536):
                    pass
            except OSError:
                pass


# -- one phase: a server kind under load ----------------------------------------------------

def count_tracebacks(path):
    counts = collections.Counter()
    with open(path, errors="replace") as f:
        text = f.read()
    for block in text.split("Traceback (most recent call last):")[1:]:
        for line in block.splitlines():
            m = re.match(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Warning))\b", line)
            if m:
                counts[m.group(1)] += 1
                break
    return counts, text


class Server:
    """A server child started by us, stopped by us, by its PID."""

    def __init__(self, kind, impl, certfile, backend):
        env = dict(os.environ)
        if backend == "python":
            env["FASTSOCK_PURE"] = "1"
        self.stderr = tempfile.NamedTemporaryFile(prefix="soak-%s-" % kind, suffix=".log",
                                                  delete=False)
        cmd = [sys.executable, os.path.abspath(__file__), "--serve", kind, "--impl", impl]
        if certfile:
            cmd += ["--cert", certfile]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.stderr, env=env)
        line = self.proc.stdout.readline().decode()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError("server %s did not start: %r\n%s"
                               % (kind, line, open(self.stderr.name).read()[-2000:]))
        self.info = json.loads(line[6:])
        self.pid = self.proc.pid

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s: only this child's PID."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout):
            stream.close()
        self.stderr.close()
        return self.proc.returncode


def mib(kib):
    return kib / 1024.0


def run_phase(kind, args, certfile, seconds, seed):
    server = Server(kind, args.impl, certfile, args.backend)
    pid = server.pid
    verdict = {"kind": kind, "problems": []}
    try:
        time.sleep(0.5)
        base = sample(pid)
        tls_ctx = None
        if kind == "tls":
            tls_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            tls_ctx.check_hostname = False
            tls_ctx.verify_mode = ssl.CERT_NONE
        print("\n== %s: %s (%s, %s backend), pid %d, %s:%d, %d s"
              % (kind, server.info["class"], args.impl, server.info["backend"], pid,
                 server.info["address"][0], server.info["address"][1], seconds))
        print("%7s %9s %11s %7s %7s %9s %5s %8s %9s"
              % ("t (s)", "good conn", "good lines", "errors", "hostile", "RSS MiB",
                 "fds", "threads", "children"))
        started = time.monotonic()
        load = Load(kind, server.info["address"], started + seconds, args.clients, seed, tls_ctx)
        load.start()
        samples = [(0.0,) + base]
        interval = max(1.0, seconds / 15.0)
        next_print = 0.0
        died = False
        while True:
            now = time.monotonic() - started
            if now >= seconds:
                break
            s = sample(pid)
            if s is None or server.proc.poll() is not None:
                died = True
                break
            samples.append((now,) + s)
            if now >= next_print:
                print_row(now, load.stats, s)
                next_print += interval
            time.sleep(1.0)
        stuck = load.join()
        if stuck:
            verdict["problems"].append("client threads did not stop: %s" % stuck)
        # Quiet: let the server drop what the hostile clients left behind.
        quiet_end = time.monotonic() + HANDLER_TIMEOUT + 5
        end = sample(pid)
        while end is not None and time.monotonic() < quiet_end:
            if (end[1] <= base[1] and end[3] <= base[3]
                    and (kind == "pool" or end[2] <= base[2] + 1)):
                break
            time.sleep(0.5)
            end = sample(pid)
        if end is None or server.proc.poll() is not None:
            died = True
        else:
            print_row(time.monotonic() - started, load.stats, end, label="quiet")
    finally:
        rc = server.stop()
    tracebacks, text = count_tracebacks(server.stderr.name)
    if args.keep_logs:
        print("   server stderr kept in %s" % server.stderr.name)
    else:
        os.unlink(server.stderr.name)
    stats = load.stats
    verdict.update(stats=stats, base=base, end=end, samples=samples, rc=rc,
                   tracebacks=tracebacks)
    # The verdict.
    if died:
        verdict["problems"].append("the server died (exit status %r)" % rc)
    if stats.errors:
        verdict["problems"].append("good clients failed: %s (e.g. %s)" % (
            dict(stats.errors), "; ".join("%s" % v for v in list(stats.examples.values())[:3])))
    if not stats.counts["good-lines"]:
        verdict["problems"].append("nothing was served")
    if end is not None and not died:
        if end[1] > base[1] + 2:
            verdict["problems"].append("fds %d -> %d after the load" % (base[1], end[1]))
        if kind != "pool" and end[2] > base[2] + 2:
            verdict["problems"].append("threads %d -> %d after the load" % (base[2], end[2]))
        if end[3] > base[3]:
            verdict["problems"].append("child processes %d -> %d after the load"
                                       % (base[3], end[3]))
        third = [s for s in samples if s[0] >= seconds / 3.0]
        if third:
            ref = third[0][1]
            grown = end[0] - ref
            verdict["rss_rate"] = mib(grown) / max(samples[-1][0] - third[0][0], 1.0) * 60
            if grown > 4 * 1024 and grown > 0.1 * ref:
                verdict["problems"].append(
                    "RSS grew %.1f -> %.1f MiB from t=%.0f s to the end (%+.1f MiB/min)"
                    % (mib(ref), mib(end[0]), third[0][0], verdict["rss_rate"]))
    unexpected = {name: n for name, n in tracebacks.items()
                  if name not in ("ConnectionResetError", "BrokenPipeError",
                                  "ConnectionAbortedError", "TimeoutError",
                                  "ssl.SSLError", "ssl.SSLEOFError", "ssl.SSLZeroReturnError",
                                  "OSError")}
    if unexpected:
        verdict["problems"].append("unexpected server tracebacks: %s" % unexpected)
        last = text.rsplit("Traceback (most recent call last):", 1)[-1]
        verdict["problems"].append("last one:\nTraceback (most recent call last):" + last[-1500:])
    return verdict


def print_row(t, stats, s, label=None):
    rss, fds, threads, children = s
    hostile = sum(n for name, n in stats.counts.items() if name.startswith("bad-"))
    print("%7s %9d %11d %7d %7d %9.1f %5d %8d %9d" % (
        label or "%.0f" % t, stats.counts["good-conns"], stats.counts["good-lines"],
        sum(stats.errors.values()), hostile, mib(rss), fds, threads, children))
    sys.stdout.flush()


def summary_line(v):
    stats, base, end = v["stats"], v["base"], v["end"]
    parts = ["served %d lines / %.1f MiB" % (stats.counts["good-lines"],
                                             stats.counts["good-bytes"] / 1048576.0)]
    if stats.counts["good-conns"]:
        parts.append("%d good connections" % stats.counts["good-conns"])
    if stats.counts["udp-lost"]:
        parts.append("%d datagrams lost" % stats.counts["udp-lost"])
    hostile = {k[4:]: n for k, n in stats.counts.items() if k.startswith("bad-")}
    parts.append("hostile %s" % ", ".join("%s %d" % kv for kv in sorted(hostile.items())))
    parts.append("errors %d" % sum(stats.errors.values()))
    if end is not None:
        parts.append("fds %d->%d, threads %d->%d, children %d->%d, RSS %.1f->%.1f MiB "
                     "(peak %.1f, %+.1f MiB/min after the first third)"
                     % (base[1], end[1], base[2], end[2], base[3], end[3], mib(base[0]),
                        mib(end[0]), mib(max([s[1] for s in v["samples"]] + [end[0]])),
                        v.get("rss_rate", 0.0)))
    if v["tracebacks"]:
        parts.append("server tracebacks %s" % dict(v["tracebacks"]))
    return "; ".join(parts)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=120.0,
                        help="total seconds of load, divided among the kinds (default 120)")
    parser.add_argument("--kinds", default="threading,pool,forking,udp",
                        help="comma-separated, from %s" % ",".join(KINDS))
    parser.add_argument("--tls", action="store_true", help="add the tls kind")
    parser.add_argument("--clients", type=int, default=6, help="good clients per kind (6)")
    parser.add_argument("--impl", choices=("fastsock", "stdlib"), default="fastsock")
    parser.add_argument("--backend", choices=("cython", "python"), default="cython",
                        help="fastsock backend of the servers (FASTSOCK_PURE=1 for python)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep each server's stderr (tracebacks) and print its path")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.impl, args.cert)
        return 0

    kinds = [k for k in args.kinds.split(",") if k]
    if args.tls and "tls" not in kinds:
        kinds.append("tls")
    for k in kinds:
        if k not in KINDS:
            parser.error("unknown kind %r" % k)
    if args.impl == "stdlib":
        kinds = [k for k in kinds if k not in ("pool", "tls")]
    else:
        import fastsock
        if not hasattr(fastsock, "ThreadPoolTCPServer"):
            kinds = [k for k in kinds if k != "pool"]
    seed = args.seed if args.seed is not None else random.randrange(1 << 20)
    tmpdir = tempfile.mkdtemp(prefix="fastsock-soak-")
    certfile = None
    if "tls" in kinds:
        certfile = find_cert(tmpdir)
        if certfile is None:
            print("tls: no test certificate and no `cryptography`: skipped")
            kinds.remove("tls")
    seconds = max(10.0, args.duration / max(len(kinds), 1))
    print("fastsock soak: %s, kinds %s, %.0f s each, %d good clients, seed %d"
          % (args.impl, ",".join(kinds), seconds, args.clients, seed))
    if args.impl != "stdlib":
        # The servers import the same fastsock: say which (PYTHONPATH=src for a checkout).
        print("fastsock from %s" % os.path.dirname(os.path.abspath(fastsock.__file__)))
    verdicts = []
    try:
        for kind in kinds:
            verdicts.append(run_phase(kind, args, certfile, seconds, seed))
    finally:
        if certfile and certfile.startswith(tmpdir):
            os.unlink(certfile)
        os.rmdir(tmpdir)
    print("\n== verdict")
    failed = 0
    for v in verdicts:
        ok = not v["problems"]
        failed += not ok
        print("%-9s %s: %s" % (v["kind"], "OK" if ok else "FAIL", summary_line(v)))
        for problem in v["problems"]:
            print("          - " + problem.replace("\n", "\n            "))
    print("%s: %d of %d kinds passed" % ("PASS" if not failed else "FAIL",
                                         len(verdicts) - failed, len(verdicts)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
