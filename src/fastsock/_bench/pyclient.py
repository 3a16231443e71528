"""Pure-Python stand-in for ``loadgen.c``, used only when no C compiler works.

Same command line (``client MODE ...``) and the same JSON keys, with
``"client": "python"``.  It is single-threaded Python driving the servers,
so it saturates long before the fast servers do: its numbers are
CLIENT-BOUND and the runner says so.  It still verifies every echoed byte.
"""
import argparse
import collections
import errno
import json
import os
import random
import resource
import selectors
import socket
import sys
import time

PAT_LEN = 65536
_rng = random.Random(0x5EED)
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
PATTERN = bytes(_rng.choice(_ALPHABET) for _ in range(PAT_LEN + 65536))


def expected_line(cid, seq, size):
    off = (cid * 4099 + seq * 131) % PAT_LEN
    return PATTERN[off:off + size - 1] + b"\n"


def proc_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def self_cpu():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Conn:
    __slots__ = ("id", "sock", "state", "send_seq", "recv_seq", "inbuf", "out", "ts",
                 "op_start", "last_progress", "retry_at", "ever", "want", "useq",
                 "uts", "replied", "started")

    def __init__(self, cid):
        self.id = cid
        self.sock = None
        self.state = "idle"
        self.ever = False
        self.want = 0
        self.retry_at = 0.0
        self.replied = False
        self.started = False
        self.useq, self.uts = [], []


class Client:
    def __init__(self, a):
        self.a = a
        self.sel = selectors.DefaultSelector()
        self.phase = "warmup"
        self.stats = collections.Counter()
        self.lat = []
        self.conns = [Conn(i) for i in range(a.conns)]
        if a.unix:
            self.family, self.addr = socket.AF_UNIX, a.unix
        else:
            host = "127.0.0.1" if a.host == "localhost" else a.host
            if not (host.startswith("127.") or host == "::1"):
                sys.exit("only loopback addresses are allowed")
            self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.addr = (host, a.port)

    def measuring(self):
        return self.phase == "measure"

    def issuing(self):
        return self.phase in ("connect", "warmup", "measure")

    # -- socket plumbing
    def _register(self, c, events):
        if events == c.want:
            return
        if c.want == 0:
            self.sel.register(c.sock, events, c)
        elif events == 0:
            self.sel.unregister(c.sock)
        else:
            self.sel.modify(c.sock, events, c)
        c.want = events

    def close(self, c):
        if c.sock is not None:
            if c.want:
                self.sel.unregister(c.sock)
            c.sock.close()
        c.sock = None
        c.want = 0
        c.state = "idle"

    def fail(self, c, key, delay=0.001):
        self.stats[key] += 1
        self.backoff(c, delay)

    def backoff(self, c, delay):
        self.close(c)
        c.state = "backoff"
        c.retry_at = time.monotonic() + delay

    def start(self, c):
        now = time.monotonic()
        c.send_seq = c.recv_seq = 0
        c.inbuf = bytearray()
        c.out = bytearray()
        c.ts = collections.deque()
        c.op_start = c.last_progress = now
        c.useq, c.uts = [], []
        c.replied = False
        kind = socket.SOCK_DGRAM if self.a.mode == "udp" else socket.SOCK_STREAM
        c.sock = socket.socket(self.family, kind)
        c.sock.setblocking(False)
        if kind == socket.SOCK_STREAM and self.family != socket.AF_UNIX:
            c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = c.sock.connect_ex(self.addr)
        if err == 0:
            if self.a.mode == "udp":
                c.state = "open"
                self._first(c)
                self._register(c, selectors.EVENT_READ)
                self.udp_start(c)
            else:
                self.connected(c)
        elif err in (errno.EINPROGRESS, errno.EWOULDBLOCK):
            c.state = "connecting"
            self._register(c, selectors.EVENT_WRITE)
        else:
            self.stats["connect_failures"] += 1
            self.backoff(c, 0.01)

    def _first(self, c):
        self.stats["connects"] += 1
        if not c.ever:
            c.ever = True
            self.stats["established"] += 1

    def connected(self, c):
        c.state = "open"
        c.last_progress = time.monotonic()
        self._first(c)
        if self.a.mode == "short":
            self.queue(c)
        self._register(c, selectors.EVENT_READ)
        self.top_up(c)

    def queue(self, c):
        c.out += expected_line(c.id, c.send_seq, self.a.size)
        c.ts.append(time.monotonic())
        c.send_seq += 1

    def top_up(self, c):
        if self.issuing() and self.a.mode in ("echo", "stream"):
            while c.send_seq - c.recv_seq < self.a.depth:
                self.queue(c)
        self.flush(c)

    def flush(self, c):
        while c.out:
            try:
                n = c.sock.send(c.out)
            except (BlockingIOError, InterruptedError):
                self._register(c, selectors.EVENT_READ | selectors.EVENT_WRITE)
                return
            except OSError as exc:
                self.fail(c, "reset" if exc.errno in (errno.ECONNRESET, errno.EPIPE)
                          else "other")
                return
            del c.out[:n]
        self._register(c, selectors.EVENT_READ)

    # -- events
    def on_event(self, c, mask):
        if c.state == "connecting":
            err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.stats["connect_failures"] += 1
                self.backoff(c, 0.01)
            else:
                self.connected(c)
            return
        if c.state != "open":
            return
        if self.a.mode == "udp":
            return self.on_udp(c)
        if mask & selectors.EVENT_WRITE:
            self.flush(c)
            if c.state != "open":
                return
        if mask & selectors.EVENT_READ:
            try:
                data = c.sock.recv(262144)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.fail(c, "reset" if exc.errno == errno.ECONNRESET else "other")
                return
            if not data:
                self.fail(c, "eof")
                return
            self.on_data(c, data)

    def on_data(self, c, data):
        size = self.a.size
        now = time.monotonic()
        c.last_progress = now
        c.inbuf += data
        while c.inbuf:
            if c.recv_seq >= c.send_seq:
                return self.fail(c, "unexpected")
            want = expected_line(c.id, c.recv_seq, size)
            got = c.inbuf[:size]
            if not want.startswith(bytes(got)):
                return self.fail(c, "mismatch")
            if len(got) < size:
                break
            del c.inbuf[:size]
            self.stats["verified"] += size
            start = c.op_start if self.a.mode == "short" else c.ts.popleft()
            if self.measuring():
                self.lat.append(now - start)
                self.stats["ops"] += 1
                self.stats["bytes"] += size
            c.recv_seq += 1
            c.replied = True
            if self.a.mode == "short":
                if c.inbuf:
                    return self.fail(c, "unexpected")
                self.close(c)
                if self.issuing():
                    self.start(c)
                return
        self.top_up(c)

    # UDP: --depth datagrams in flight per socket, one per slot; slot j
    # carries the sequence numbers j, j+D, j+2D, ... (as in loadgen.c).

    def udp_payload(self, c, seq):
        return b"%016x" % seq + expected_line(c.id, seq, self.a.size - 16)

    def udp_start(self, c):
        d = self.a.depth
        c.useq = list(range(d))
        c.uts = [None] * d
        for j in range(d):
            if c.sock is not None:
                self.udp_issue(c, j)

    def udp_issue(self, c, j):
        if not self.issuing():
            return
        c.uts[j] = c.last_progress = time.monotonic()
        try:
            c.sock.send(self.udp_payload(c, c.useq[j]))
        except (BlockingIOError, InterruptedError):
            pass                    # lost: the slot times out
        except OSError:
            self.fail(c, "other", 0.01)

    def udp_next(self, c, j):
        c.uts[j] = None
        c.useq[j] += self.a.depth

    def on_udp(self, c):
        while c.sock is not None:
            try:
                data = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionRefusedError:
                self.stats["connect_failures"] += 1
                return self.backoff(c, 0.01)
            except OSError:
                return self.fail(c, "other", 0.01)
            try:
                seq = int(data[:16], 16)
            except ValueError:
                self.stats["mismatch"] += 1
                continue
            j = seq % self.a.depth
            if c.uts[j] is None or seq < c.useq[j]:
                self.stats["udp_stale"] += 1
                continue
            if seq != c.useq[j] or data != self.udp_payload(c, seq):
                self.stats["mismatch"] += 1
                continue
            self.stats["verified"] += len(data)
            if self.measuring():
                self.lat.append(time.monotonic() - c.uts[j])
                self.stats["ops"] += 1
                self.stats["bytes"] += len(data)
            self.udp_next(c, j)
            self.udp_issue(c, j)

    def ramp(self, everything):
        """At most --connect-burst connections in their handshake at a time."""
        pending = sum(c.started and not (c.state == "open" and c.replied)
                      for c in self.conns)
        for c in self.conns:
            if not everything and pending >= self.a.connect_burst:
                break
            if not c.started:
                c.started = True
                pending += 1
                self.start(c)

    def outstanding(self, c):
        if self.a.mode == "udp":
            return c.state == "open" and any(t is not None for t in c.uts)
        if self.a.mode == "short":
            return c.state in ("connecting", "open")
        return c.state == "connecting" or (c.state == "open" and c.send_seq != c.recv_seq)

    def timers(self):
        now = time.monotonic()
        for c in self.conns:
            if c.state == "backoff":
                if now >= c.retry_at and self.issuing():
                    self.start(c)
                continue
            if self.a.mode == "udp":
                for j, sent in enumerate(c.uts if c.state == "open" else ()):
                    if sent is not None and now - sent >= self.a.timeout and c.sock:
                        self.stats["udp_lost"] += 1
                        self.udp_next(c, j)
                        self.udp_issue(c, j)
                continue
            if not self.outstanding(c) or now - c.last_progress < self.a.timeout:
                continue
            if c.state == "connecting":
                self.stats["connect_failures"] += 1
                self.backoff(c, 0)
            elif not c.replied:
                self.stats["connect_failures"] += 1     # never answered: backlog
                self.stats["stalled"] += 1
                self.backoff(c, 0)
            else:
                self.fail(c, "timeout")

    def run(self):
        a = self.a
        t0 = time.monotonic()
        persistent = a.mode in ("echo", "stream")
        self.phase = "connect" if persistent else "warmup"
        warm_end = None if persistent else t0 + a.warmup
        connect_phase = 0.0
        ready_at_start = len(self.conns)
        m_start = m_end = None
        ticks0 = ticks1 = None
        cpu0 = cpu1 = 0.0
        drained = False
        if persistent:
            self.ramp(False)
        else:
            for c in self.conns:
                c.started = True
                self.start(c)
        next_timer = t0
        while True:
            now = time.monotonic()
            if self.phase == "connect":
                self.ramp(False)
                ready = sum(c.state == "open" and c.replied for c in self.conns)
                if ready == len(self.conns) or now - t0 >= a.connect_timeout:
                    connect_phase, ready_at_start = now - t0, ready
                    self.ramp(True)
                    self.phase, warm_end = "warmup", now + a.warmup
            elif self.phase == "warmup" and now >= warm_end:
                self.phase, m_start = "measure", now
                ticks0, cpu0 = proc_ticks(a.server_pid), self_cpu()
                self.stats["ops"] = self.stats["bytes"] = 0
                self.lat = []
            elif self.phase == "measure" and now - m_start >= a.duration:
                m_end = now
                ticks1, cpu1 = proc_ticks(a.server_pid), self_cpu()
                self.phase, drain_end = "drain", now + min(a.timeout, 2.0)
            elif self.phase == "drain":
                if not any(self.outstanding(c) for c in self.conns):
                    drained = True
                    break
                if now >= drain_end:
                    break
            if now >= next_timer:
                self.timers()
                next_timer = now + 0.01
            for key, mask in self.sel.select(0.005):
                c = key.data
                if c.sock is not None and key.fileobj is c.sock:
                    self.on_event(c, mask)
        open_at_end = sum(c.state == "open" for c in self.conns)
        for c in self.conns:
            self.close(c)
        self.sel.close()
        return self.report(m_end - m_start, connect_phase, ticks0, ticks1,
                           cpu1 - cpu0, drained, open_at_end, ready_at_start)

    def report(self, secs, connect_phase, ticks0, ticks1, cpu, drained, open_at_end,
               ready_at_start):
        a, st = self.a, self.stats
        lat = sorted(self.lat)

        def pct(p):
            if not lat:
                return 0.0
            return lat[min(len(lat) - 1, max(0, int(p * len(lat) + 0.999999) - 1))] * 1e6
        detail = {k: st[k] for k in ("mismatch", "eof", "reset", "timeout", "udp_lost",
                                     "unexpected", "other")}
        clk = os.sysconf("SC_CLK_TCK")
        srv = (ticks1 - ticks0) / clk if ticks0 is not None and ticks1 is not None else None
        return {
            "client": "python", "client_bound": True, "mode": a.mode,
            "target": a.unix and "unix:" + a.unix or "%s:%d" % (a.host, a.port),
            "conns": a.conns, "size": a.size, "depth": a.depth, "duration_s": secs,
            "warmup_s": a.warmup, "connect_phase_s": connect_phase,
            "ops": st["ops"], "ops_per_s": st["ops"] / secs if secs else 0.0,
            "bytes": st["bytes"], "mib_per_s": st["bytes"] / secs / 1048576 if secs else 0.0,
            "verified_bytes": st["verified"],
            "lat_us": {"p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99),
                       "max": lat[-1] * 1e6 if lat else 0.0,
                       "mean": sum(lat) / len(lat) * 1e6 if lat else 0.0},
            "errors": sum(detail.values()), "error_detail": detail,
            "udp_stale": st["udp_stale"], "connect_failures": st["connect_failures"],
            "stalled_before_reply": st["stalled"], "connections_ready_at_start": ready_at_start,
            "connections_established": st["established"], "connects": st["connects"],
            "open_at_end": open_at_end, "drained": drained, "interrupted": False,
            "server_pid": a.server_pid, "server_cpu_s": srv,
            "server_cpu_pct": 100 * srv / secs if srv is not None and secs else None,
            "server_cpu_us_per_op": srv * 1e6 / st["ops"] if srv is not None and st["ops"] else None,
            "client_cpu_pct": 100 * cpu / secs if secs else 0.0,
            "client_core_busy_pct": None, "clk_tck": clk, "cpu": a.cpu,
        }


def main(argv=None):
    p = argparse.ArgumentParser(prog="pyclient")
    p.add_argument("role", choices=["client"])
    p.add_argument("mode", choices=["echo", "short", "udp", "stream"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--unix")
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--depth", type=int, default=None)
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--connect-timeout", type=float, default=5.0)
    p.add_argument("--connect-burst", type=int, default=4)
    p.add_argument("--cpu", type=int, default=-1)
    p.add_argument("--server-pid", type=int, default=0)
    a = p.parse_args(argv)
    if a.size is None:
        a.size = 1024 if a.mode == "stream" else 64
    if a.depth is None:
        a.depth = 64 if a.mode == "stream" else 1
    if a.mode == "short":
        a.depth = 1
    if a.size < (18 if a.mode == "udp" else 2):
        p.error("--size too small")
    if a.cpu >= 0:
        os.sched_setaffinity(0, {a.cpu})
    json.dump(Client(a).run(), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
