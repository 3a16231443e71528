"""``python -m fastsock bench``: fastsock against socketserver, side by side.

Every scenario runs every implementation in the same run, repeated R times
and interleaved (r1: A B C, r2: B C A, ...), so slow drift of a shared,
noisy machine hits all of them alike.  Reported: medians over the repeats,
the ratio to ``stdlib`` measured in the same run, latency percentiles, and
server CPU per operation (utime+stime of the server process over exactly the
measured window, read from ``/proc/<pid>/stat`` by the load generator).

The load generator is ``loadgen.c`` (epoll, one thread), compiled on first
use; the servers are child processes (``servers.py``).  With two or more
CPUs the load generator is pinned to one and the servers to another.
"""
import argparse
import datetime
import json
import os
import platform
import selectors
import signal
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from . import build, servers

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS_PY = os.path.join(HERE, "servers.py")
PYCLIENT_PY = os.path.join(HERE, "pyclient.py")

# ---------------------------------------------------------------- scenarios


class Scenario:
    def __init__(self, name, kind, mode, desc, conns=1, size=64, depth=1,
                 backlog=None, unix=False, tags=(), burst=None):
        self.name, self.kind, self.mode, self.desc = name, kind, mode, desc
        self.burst = burst          # --connect-burst (None: the load generator's 4)
        self.conns, self.size, self.depth = conns, size, depth
        self.backlog, self.unix, self.tags = backlog, unix, set(tags)

    @property
    def metric(self):
        return "mib_per_s" if self.mode == "stream" else "ops_per_s"

    def as_dict(self):
        return {"name": self.name, "kind": self.kind, "mode": self.mode,
                "desc": self.desc, "conns": self.conns, "size": self.size,
                "depth": self.depth, "backlog": self.backlog, "unix": self.unix,
                "connect_burst": self.burst,
                "metric": self.metric}


Q128 = "request_queue_size = 128 (asyncio/uvloop: backlog=128)"
QDEF = ("library default backlog: socketserver request_queue_size = 5, "
        "asyncio start_server backlog = 100")

SCENARIO_LIST = [
    Scenario("echo1", "echo", "echo", "line echo, 1 persistent connection, 64-byte lines",
             conns=1, tags={"quick", "full", "calibrate"}),
    Scenario("echo32", "echo", "echo", "line echo, 32 persistent connections",
             conns=32, tags={"quick", "full", "calibrate", "smoke"}),
    Scenario("echo256-q128", "echo", "echo", "line echo, 256 persistent connections; " + Q128,
             conns=256, backlog=128, tags={"quick", "full"}),
    Scenario("echo256-qdefault", "echo", "echo", "line echo, 256 persistent connections "
             "all connecting at once; " + QDEF, conns=256, burst=256, tags={"full"}),
    Scenario("pipe32x16", "echo", "echo", "line echo, 32 connections, 16 lines in flight each",
             conns=32, depth=16, tags={"quick", "full", "calibrate"}),
    Scenario("unix32", "echo", "echo", "line echo over a unix socket, 32 connections "
             "(ThreadingUnixStreamServer)", conns=32, unix=True, tags={"full"}),
    Scenario("short-q128", "echo", "short", "short connections: connect, one line, echo, "
             "close; 32 at a time; " + Q128, conns=32, backlog=128,
             tags={"quick", "full", "calibrate"}),
    Scenario("short-qdefault", "echo", "short", "short connections, 32 at a time; " + QDEF,
             conns=32, tags={"full"}),
    Scenario("udp", "udp", "udp", "UDP echo (UDPServer + DatagramRequestHandler), "
             "32 datagrams in flight: 4 client sockets, 8 each", conns=4, depth=8,
             tags={"quick", "full", "calibrate", "smoke"}),
    Scenario("stream", "echo", "stream", "1 KiB line stream: 4 connections, 64 lines "
             "(64 KiB) in flight each, MiB/s of verified echo",
             conns=4, size=1024, depth=64, tags={"quick", "full", "calibrate"}),
    Scenario("http-keepalive", "http-keepalive", "wrk", "http.server GET, HTTP/1.1 "
             "keep-alive, 32 connections (wrk), 140-byte body", conns=32,
             tags={"quick", "full"}),
    Scenario("http10-q128", "http10", "wrk", "http.server GET, HTTP/1.0: one request per "
             "connection, 32 at a time (wrk); " + Q128, conns=32, backlog=128,
             tags={"quick", "full"}),
    Scenario("http10-qdefault", "http10", "wrk", "http.server GET, HTTP/1.0, 32 at a time; "
             + QDEF, conns=32, tags={"full"}),
]
SCENARIOS = {s.name: s for s in SCENARIO_LIST}


def add_scenario(scenario):
    """Register an extra scenario (used by the longer suites in ``bench/``);
    it can then be named in ``--scenarios``."""
    if scenario.name in SCENARIOS:
        raise ValueError("scenario %r already exists" % scenario.name)
    SCENARIO_LIST.append(scenario)
    SCENARIOS[scenario.name] = scenario
    return scenario

IMPL_ORDER = ["stdlib", "fastsock-python", "fastsock-cython", "fastsock-pool",
              "fastsock-greenlet",
              "asyncio", "uvloop", "uvloop-protocol", "c-echo"]

PRESETS = {
    # duration and warm-up per measurement, repeats
    "smoke": dict(duration=0.3, warmup=0.1, repeats=1),
    "quick": dict(duration=0.3, warmup=0.1, repeats=2),
    "full": dict(duration=2.0, warmup=0.5, repeats=3),
}

# ------------------------------------------------------------------ helpers


def log(msg):
    sys.stderr.write("[bench] %s\n" % msg)
    sys.stderr.flush()


def _fastsock_info():
    import fastsock
    from fastsock import _backend
    info = {"backend": fastsock.BACKEND, "file": fastsock.__file__,
            "version": getattr(fastsock, "__version__", None),
            "reason": _backend.REASON,
            "thread_pool_server": hasattr(fastsock, "ThreadPoolTCPServer"),
            "greenlet_server": hasattr(fastsock, "GreenletTCPServer")}
    try:
        _backend.load("cython")
        info["cython_available"] = True
    except ImportError as exc:
        info["cython_available"] = False
        info["cython_error"] = str(exc)
    return info


def _child_env(impl, fs):
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(fs["file"])))
    env["PYTHONPATH"] = os.pathsep.join(
        [root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if impl == "fastsock-python":
        env["FASTSOCK_PURE"] = "1"
    elif impl == "fastsock-cython":
        env.pop("FASTSOCK_PURE", None)
    return env


def available_impls(fs, loadgen):
    """{impl: None if usable else the reason it is not}."""
    out = {}
    for impl in IMPL_ORDER:
        why = None
        if impl == "fastsock-cython" and not fs["cython_available"]:
            why = "compiled core not importable: %s" % fs.get("cython_error")
        elif impl == "fastsock-pool" and not fs["thread_pool_server"]:
            why = "fastsock.ThreadPoolTCPServer does not exist"
        elif impl == "fastsock-greenlet":
            import importlib.util
            if not fs.get("greenlet_server"):
                why = "fastsock.GreenletTCPServer does not exist"
            elif importlib.util.find_spec("greenlet") is None:
                why = "greenlet is not installed (pip install greenlet)"
        elif impl in ("uvloop", "uvloop-protocol"):
            import importlib.util
            if importlib.util.find_spec("uvloop") is None:
                why = "uvloop is not installed (pip install uvloop)"
        elif impl == "c-echo" and not loadgen:
            why = "needs the compiled load generator"
        out[impl] = why
    return out


def supports(impl, scenario):
    if impl == "c-echo":
        return scenario.kind in ("echo", "udp")
    if scenario.unix and impl == "fastsock-pool":
        return False        # ThreadPoolTCPServer is TCP only
    return servers.supports(impl, scenario.kind)


# ------------------------------------------------------------ server child


class Server:
    """One server under test, as a child process we started (and only we stop)."""

    def __init__(self, impl, scenario, cpu, fs, loadgen):
        self.impl, self.scenario = impl, scenario
        self.proc = None
        self.info = None
        self.stderr = tempfile.TemporaryFile()
        self.tmpdir = None
        self.unix = None
        if scenario.unix:
            self.tmpdir = tempfile.mkdtemp(prefix="fastsock-bench-")
            self.unix = os.path.join(self.tmpdir, "s")
        if impl == "c-echo":
            cmd = [loadgen, "serve"]
            if scenario.kind == "udp":
                cmd.append("--udp")
            if self.unix:
                cmd += ["--unix", self.unix]
            if cpu is not None:
                cmd += ["--cpu", str(cpu)]
            env = None
        else:
            cmd = [sys.executable, SERVERS_PY, "--impl", impl, "--kind", scenario.kind,
                   "--exit-on-stdin-eof"]
            if cpu is not None:
                cmd += ["--cpu", str(cpu)]
            if scenario.backlog is not None:
                cmd += ["--backlog", str(scenario.backlog)]
            if self.unix:
                cmd += ["--unix", self.unix]
            env = _child_env(impl, fs)
        self.cmd = cmd
        self.env = env

    def spawn(self):
        self.proc = subprocess.Popen(
            self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr,
            env=self.env, start_new_session=True)   # Ctrl-C goes to the runner only
        return self

    def wait_ready(self, timeout=30.0):
        line = _readline(self.proc.stdout, timeout)
        if not line.startswith(b"READY "):
            self.stop()
            raise RuntimeError("%s server did not start: %s%s" % (
                self.impl, line.decode(errors="replace").strip(), self.stderr_tail()))
        self.info = json.loads(line[6:].decode())
        self.info["pid"] = self.proc.pid
        return self

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def address_args(self):
        if self.unix:
            return ["--unix", self.unix]
        return ["--host", self.info["host"], "--port", str(self.info["port"])]

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def stderr_tail(self, n=15):
        text = self.stderr_text().strip()
        if not text:
            return ""
        return "\n  server stderr:\n    " + "\n    ".join(text.splitlines()[-n:])

    def stop(self, grace=3.0):
        """SIGTERM, then SIGKILL after *grace* seconds -- our child only."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc is not None:
            for f in (proc.stdin, proc.stdout):
                if f:
                    try:
                        f.close()
                    except OSError:
                        pass
        if self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None

    def close(self):
        self.stop()
        self.stderr.close()


def _readline(pipe, timeout):
    """A line from *pipe* within *timeout* seconds (b"" on EOF/timeout)."""
    deadline = time.monotonic() + timeout
    buf = b""
    fd = pipe.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                return buf
            chunk = os.read(fd, 1)     # byte by byte: never read past the line
            if not chunk:
                return buf
            buf += chunk
    return buf


def _exception_counts(text):
    """{"BrokenPipeError": 3, ...} from the tracebacks in a server's stderr."""
    import re
    counts = {}
    for block in text.split("Traceback (most recent call last):")[1:]:
        m = re.search(r"^(\w+(?:\.\w+)*(?:Error|Exception|Exit|Interrupt)\w*)\b",
                      block, re.M)
        name = m.group(1) if m else "other"
        counts[name] = counts.get(name, 0) + 1
    return counts


def _children_cpu():
    import resource
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _proc_cpu_ticks(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


# ------------------------------------------------------------ measurements


class Measurer:
    def __init__(self, args, loadgen, client_cpu, fs):
        self.args, self.loadgen, self.client_cpu, self.fs = args, loadgen, client_cpu, fs
        self.wrk = shutil.which("wrk")
        self.wrk_script = None

    def run(self, server, scenario):
        if scenario.mode == "wrk":
            return self._wrk(server, scenario)
        a = self.args
        opts = ["--conns", str(scenario.conns), "--size", str(scenario.size),
                "--depth", str(scenario.depth), "--duration", str(a.duration),
                "--warmup", str(a.warmup), "--timeout", str(a.timeout),
                "--connect-timeout", str(a.connect_timeout),
                "--server-pid", str(server.pid)]
        if scenario.burst:
            opts += ["--connect-burst", str(scenario.burst)]
        if self.client_cpu is not None:
            opts += ["--cpu", str(self.client_cpu)]
        if self.loadgen:
            cmd = [self.loadgen, "client", scenario.mode]
        else:
            cmd = [sys.executable, PYCLIENT_PY, "client", scenario.mode]
        cmd += server.address_args() + opts
        limit = a.connect_timeout + a.warmup + a.duration + a.timeout + 15
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=limit)
        if proc.returncode != 0:
            raise RuntimeError("load generator failed (%d): %s" % (
                proc.returncode, proc.stderr.decode(errors="replace").strip()))
        return json.loads(proc.stdout)

    def _wrk(self, server, scenario):
        a = self.args
        secs = max(1, int(round(a.duration)))     # wrk takes whole seconds
        url = "http://%s:%d/" % (server.info["host"], server.info["port"])
        cmd = [self.wrk, "-t1", "-c%d" % scenario.conns, "-d%ds" % secs, "--latency",
               "--timeout", "%ds" % max(1, int(a.timeout))]
        if scenario.kind == "http10":
            cmd += ["-s", self._http10_script()]
        cmd.append(url)
        pin = self.client_cpu
        preexec = (lambda: os.sched_setaffinity(0, {pin})) if pin is not None else None
        t0 = _proc_cpu_ticks(server.pid)
        r0 = _children_cpu()
        w0 = time.monotonic()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=secs + 30,
                              preexec_fn=preexec)
        wall = time.monotonic() - w0
        t1 = _proc_cpu_ticks(server.pid)
        wrk_cpu = _children_cpu() - r0
        out = proc.stdout.decode(errors="replace")
        if proc.returncode != 0:
            raise RuntimeError("wrk failed (%d): %s %s" % (
                proc.returncode, out, proc.stderr.decode(errors="replace")))
        res = parse_wrk(out)
        res.update(client="wrk", mode=scenario.kind, conns=scenario.conns,
                   target=url, server_pid=server.pid, wall_s=wall,
                   client_cpu_pct=100 * wrk_cpu / wall if wall else None)
        if t0 is not None and t1 is not None:
            cpu = (t1 - t0) / os.sysconf("SC_CLK_TCK")
            res["server_cpu_s"] = cpu
            res["server_cpu_pct"] = 100 * cpu / res["duration_s"] if res["duration_s"] else None
            res["server_cpu_us_per_op"] = cpu * 1e6 / res["ops"] if res["ops"] else None
            res["server_cpu_note"] = "sampled around the whole wrk process (incl. start-up)"
        return res

    def _http10_script(self):
        if self.wrk_script is None:
            fd, path = tempfile.mkstemp(prefix="fastsock-bench-", suffix=".lua")
            with os.fdopen(fd, "w") as f:
                f.write('-- HTTP/1.0 requests: the server closes every connection\n'
                        'request = function()\n'
                        '  return "GET / HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n"\n'
                        'end\n')
            self.wrk_script = path
        return self.wrk_script

    def warm_wrk(self, server, scenario):
        """One short untimed wrk run (wrk has no warm-up of its own)."""
        url = "http://%s:%d/" % (server.info["host"], server.info["port"])
        cmd = [self.wrk, "-t1", "-c%d" % scenario.conns, "-d1s", url]
        if scenario.kind == "http10":
            cmd[1:1] = ["-s", self._http10_script()]
        subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)

    def close(self):
        if self.wrk_script:
            os.unlink(self.wrk_script)
            self.wrk_script = None


def _to_us(text):
    units = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}
    for unit in ("us", "ms", "s", "m"):
        if text.endswith(unit):
            return float(text[:-len(unit)]) * units[unit]
    return float(text)


def parse_wrk(out):
    """Requests, req/s, latency percentiles and errors from wrk --latency output."""
    import re
    res = {"ops": 0, "ops_per_s": 0.0, "errors": 0, "connect_failures": 0,
           "lat_us": {}, "error_detail": {}}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    if m:
        res["ops"] = int(m.group(1))
        res["duration_s"] = _to_us(m.group(2) + m.group(3)) / 1e6
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["ops_per_s"] = float(m.group(1))
    for pct, val in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+\w+)", out, re.M):
        res["lat_us"]["p" + pct] = _to_us(val)
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        c, r, w, t = map(int, m.groups())
        res["connect_failures"] = c
        res["error_detail"].update(read=r, write=w, timeout=t)
        res["errors"] += r + w + t
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["error_detail"]["non_2xx"] = int(m.group(1))
        res["errors"] += int(m.group(1))
    res["verified_bytes"] = None      # wrk parses HTTP; it does not compare bodies
    res["raw"] = out
    return res


# --------------------------------------------------------------- reporting

METRICS = ("ops_per_s", "mib_per_s", "p50_us", "p99_us", "server_cpu_us_per_op",
           "server_cpu_pct", "client_cpu_pct", "client_core_pct", "errors",
           "connect_failures")


def summarize(raw):
    lat = raw.get("lat_us") or {}
    return {"ops_per_s": raw.get("ops_per_s"), "mib_per_s": raw.get("mib_per_s"),
            "p50_us": lat.get("p50"), "p99_us": lat.get("p99"),
            "server_cpu_us_per_op": raw.get("server_cpu_us_per_op"),
            "server_cpu_pct": raw.get("server_cpu_pct"),
            "client_cpu_pct": raw.get("client_cpu_pct"),
            "client_core_pct": raw.get("client_core_busy_pct"),
            "errors": raw.get("errors"), "connect_failures": raw.get("connect_failures")}


def medians(runs):
    """{scenario: {impl: {metric: median, "runs": n, "failed": n}}}"""
    out = {}
    for run in runs:
        out.setdefault(run["scenario"], {}).setdefault(run["impl"], []).append(run)
    result = {}
    for scen, by_impl in out.items():
        result[scen] = {}
        for impl, rs in by_impl.items():
            ok = [r["summary"] for r in rs if r.get("ok")]
            med = {"runs": len(ok), "failed": len(rs) - len(ok)}
            for key in METRICS:
                vals = [s[key] for s in ok if s.get(key) is not None]
                if key in ("errors", "connect_failures"):
                    med[key] = sum(vals) if vals else None      # totals, not medians
                else:
                    med[key] = statistics.median(vals) if vals else None
            result[scen][impl] = med
        base = result[scen].get("stdlib")
        metric = SCENARIOS[scen].metric if scen in SCENARIOS else "ops_per_s"
        for impl, med in result[scen].items():
            b = base and base.get(metric)
            v = med.get(metric)
            med["vs_stdlib"] = (v / b) if (b and v is not None) else None
            bc = base and base.get("server_cpu_us_per_op")
            c = med.get("server_cpu_us_per_op")
            med["cpu_vs_stdlib"] = (c / bc) if (bc and c is not None) else None
    return result


def _fmt(v, nd=0):
    if v is None:
        return "n/a"
    if nd == 0:
        return "{:,.0f}".format(v)
    return "{:,.{}f}".format(v, nd)


def markdown(meta, med, scenarios, impls):
    lines = []
    lines.append("## fastsock benchmark (%s)" % meta["preset"])
    lines.append("")
    fs = meta["fastsock"]
    lines.append("- fastsock %s, `fastsock.BACKEND` = `%s` (%s)" % (
        fs.get("version"), fs["backend"], fs["file"]))
    lines.append("- Python %s, %s, %s" % (meta["python"], meta["platform"], meta["cpu_model"]))
    lines.append("- %s" % meta["pinning"])
    lines.append("- load generator: %s" % meta["loadgen"])
    lines.append("- %d repeat(s) interleaved, %.1f s measured + %.1f s warm-up each; "
                 "medians; ratios to `stdlib` from the same run"
                 % (meta["repeats"], meta["duration"], meta["warmup"]))
    if meta.get("skipped_impls"):
        for impl, why in meta["skipped_impls"].items():
            lines.append("- not run: `%s` (%s)" % (impl, why))
    lines.append("")
    for scen in scenarios:
        if scen.name not in med:
            continue
        rows = med[scen.name]
        stream = scen.metric == "mib_per_s"
        lines.append("### %s: %s" % (scen.name, scen.desc))
        lines.append("")
        head = "MiB/s" if stream else ("req/s" if scen.mode == "wrk" else "ops/s")
        lines.append("| impl | %s | vs stdlib | p50 µs | p99 µs | server CPU µs/op | "
                     "server CPU %% | loadgen CPU %% | client core busy %% | errors |" % head)
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for impl in impls:
            if impl not in rows:
                continue
            m = rows[impl]
            if not m["runs"]:
                lines.append("| %s | failed | | | | | | | | |" % impl)
                continue
            ratio = "%.2f×" % m["vs_stdlib"] if m["vs_stdlib"] is not None else "n/a"
            err = _fmt(m["errors"])
            if m.get("connect_failures"):
                err += " (+%s connect)" % _fmt(m["connect_failures"])
            if m.get("failed"):
                err += " (%d run(s) failed)" % m["failed"]
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                impl, _fmt(m[scen.metric], 1 if stream else 0), ratio,
                _fmt(m["p50_us"]), _fmt(m["p99_us"]),
                _fmt(m["server_cpu_us_per_op"], 2 if stream else 1),
                _fmt(m["server_cpu_pct"]), _fmt(m["client_cpu_pct"]),
                _fmt(m.get("client_core_pct")), err))
        if scen.mode == "wrk":
            lines.append("")
            lines.append("HTTP: " + meta.get("http_note", ""))
        lines.append("")
    if meta.get("notes"):
        for note in meta["notes"]:
            lines.append("> " + note)
        lines.append("")
    return "\n".join(lines)


def chart(path, med, scenarios, impls):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install matplotlib): no chart written"
    names = [s.name for s in scenarios if s.name in med]
    # c-echo (calibration) would dwarf everything: it stays in the tables only
    shown = [i for i in impls if i != "c-echo" and any(i in med[n] for n in names)]
    if not names or not shown:
        return "nothing to chart"
    fig, ax = plt.subplots(figsize=(max(7, 1.3 * len(names)), 4.5))
    width = 0.8 / len(shown)
    for k, impl in enumerate(shown):
        vals = []
        for n in names:
            m = med[n].get(impl)
            vals.append(m["vs_stdlib"] if m and m.get("vs_stdlib") is not None else 0)
        ax.bar([i + k * width for i in range(len(names))], vals, width, label=impl)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([i + width * (len(shown) - 1) / 2 for i in range(len(names))])
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("throughput relative to stdlib (median)")
    ax.set_title("fastsock vs socketserver (higher is better)")
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return "chart written to %s" % path


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


# -------------------------------------------------------------------- main


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m fastsock bench",
        description="Benchmark fastsock against the stdlib socketserver (and asyncio, "
                    "uvloop) with a compiled epoll load generator.  Results are medians "
                    "of interleaved repeats; ratios are to stdlib in the same run.")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="preset", action="store_const", const="quick",
                   help="about a minute (the default)")
    g.add_argument("--full", dest="preset", action="store_const", const="full",
                   help="all scenarios, 2 s runs, 3 repeats (about 10 minutes)")
    g.add_argument("--smoke", dest="preset", action="store_const", const="smoke",
                   help="a few seconds: stdlib and the active fastsock backend on "
                        "echo32 and udp (used by the test suite)")
    p.set_defaults(preset=None)
    p.add_argument("--calibrate", action="store_true",
                   help="add the load generator's own C echo server (c-echo) to show the "
                        "client is not the bottleneck (alone: c-echo, stdlib and the "
                        "active fastsock backend on the non-HTTP scenarios)")
    p.add_argument("--scenarios", help="comma-separated; available: %s"
                   % ", ".join(SCENARIOS))
    p.add_argument("--impls", help="comma-separated; available: %s" % ", ".join(IMPL_ORDER))
    p.add_argument("--repeats", type=int, help="interleaved repeats per scenario")
    p.add_argument("--duration", type=float, help="measured seconds per run")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="a connection with no progress for this long is an error "
                        "(default 2)")
    p.add_argument("--connect-timeout", type=float, default=5.0,
                   help="upper bound of the connect phase of persistent scenarios "
                        "(default 5)")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--python-client", action="store_true",
                   help="use the pure-Python client even if a C compiler exists "
                        "(numbers are then client-bound)")
    p.add_argument("--json", metavar="PATH", help="write all raw and median results")
    p.add_argument("--chart", metavar="PATH", help="write a PNG chart (needs matplotlib)")
    p.add_argument("--list", action="store_true", help="list scenarios and exit")
    return p


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        for s in SCENARIO_LIST:
            print("%-15s %s%s" % (s.name, s.desc,
                                  "" if "quick" in s.tags else "  [--full]"))
        return 0
    preset = args.preset or "quick"
    for key, val in PRESETS[preset].items():
        if getattr(args, key) is None:
            setattr(args, key, val)
    if args.repeats < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("--repeats must be >= 1, --duration > 0, --warmup >= 0")

    fs = _fastsock_info()
    loadgen = None
    if not args.python_client:
        loadgen = build.loadgen_path(log=log)
    if loadgen:
        lg_desc = "loadgen.c (epoll, 1 thread, compiled: %s)" % loadgen
    else:
        why = "--python-client" if args.python_client else build.failure_reason()
        lg_desc = ("PYTHON FALLBACK CLIENT (%s): the numbers below are client-bound, "
                   "not a measure of the servers" % why)
        log("WARNING: " + lg_desc)
    avail = available_impls(fs, loadgen)
    active = "fastsock-" + fs["backend"]

    # scenarios
    if args.scenarios:
        names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
        bad = [n for n in names if n not in SCENARIOS]
        if bad:
            parser.error("unknown scenario(s) %s; available: %s" % (
                ", ".join(bad), ", ".join(SCENARIOS)))
        scenarios = [SCENARIOS[n] for n in names]
    else:
        tag = "calibrate" if (args.calibrate and not args.preset) else preset
        scenarios = [s for s in SCENARIO_LIST if tag in s.tags]
    notes = []
    if any(s.mode == "wrk" for s in scenarios) and not shutil.which("wrk"):
        notes.append("HTTP scenarios skipped: wrk is not installed (apt-get install wrk)")
        log(notes[-1])
        scenarios = [s for s in scenarios if s.mode != "wrk"]

    # implementations
    if args.impls:
        impls = [n.strip() for n in args.impls.split(",") if n.strip()]
        bad = [n for n in impls if n not in IMPL_ORDER]
        if bad:
            parser.error("unknown impl(s) %s; available: %s" % (
                ", ".join(bad), ", ".join(IMPL_ORDER)))
    elif preset == "smoke":
        impls = ["stdlib", active]
    elif args.calibrate and not args.preset:
        impls = ["c-echo", "stdlib", "fastsock-python", "fastsock-cython"]
    else:
        impls = [i for i in IMPL_ORDER if i != "c-echo"]
    if args.calibrate and "c-echo" not in impls:
        impls.append("c-echo")
    impls = sorted(set(impls), key=IMPL_ORDER.index)
    skipped = {i: avail[i] for i in impls if avail[i]}
    impls = [i for i in impls if not avail[i]]
    for impl, why in skipped.items():
        log("skipping %s: %s" % (impl, why))

    # pinning
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if args.no_pin or len(cpus) < 2:
        client_cpu = server_cpu = None
        pinning = ("no CPU pinning (%s)" % ("--no-pin" if args.no_pin else
                                            "fewer than 2 CPUs available"))
    else:
        client_cpu, server_cpu = cpus[0], cpus[1]
        pinning = ("pinned: load generator on CPU %d, server (all its threads) on CPU %d "
                   "(%d CPUs available)" % (client_cpu, server_cpu, len(cpus)))
    log(pinning)
    log("fastsock %s backend=%s from %s" % (fs.get("version"), fs["backend"], fs["file"]))

    meta = {
        "preset": preset if not (args.calibrate and not args.preset) else "calibrate",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(), "python_executable": sys.executable,
        "platform": platform.platform(), "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(), "pinning": pinning,
        "client_cpu": client_cpu, "server_cpu": server_cpu,
        "loadgen": lg_desc, "client_bound": loadgen is None,
        "fastsock": fs, "repeats": args.repeats, "duration": args.duration,
        "warmup": args.warmup, "timeout": args.timeout,
        "connect_timeout": args.connect_timeout,
        "impls": impls, "skipped_impls": skipped,
        "http_note": ("the unmodified stdlib http.server.ThreadingHTTPServer and a "
                      "BaseHTTPRequestHandler subclass (do_GET of an in-memory body, "
                      "log_message silenced, disable_nagle_algorithm = True: without "
                      "TCP_NODELAY every keep-alive response waits ~40 ms for a delayed "
                      "ACK in every implementation). fastsock-python/-cython: the server child "
                      "calls fastsock.install() before importing http.server, so "
                      "ThreadingHTTPServer, the handler's rfile/wfile and its request "
                      "parsing are fastsock's. fastsock-pool: the same handler on "
                      "fastsock.http.HTTPServer (thread pool), stdlib http.server "
                      "module untouched. wrk (1 thread) parses responses but does not compare "
                      "bodies; its duration is whole seconds, it has no warm-up in --quick, "
                      "and the server CPU sample spans the whole wrk process."),
        "udp_note": ("fastsock-pool on udp: UDPServer with the opt-in reply_batch = 8 "
                     "(replies sent with sendmmsg before the loop waits again); the other "
                     "fastsock rows use the default UDPServer (one sendto per reply)."),
        "notes": notes,
    }
    if loadgen is None:
        notes.append("Numbers are CLIENT-BOUND: the pure-Python fallback client was used.")

    runs, server_infos = [], {}
    measurer = Measurer(args, loadgen, client_cpu, fs)
    t_start = time.monotonic()
    try:
        for si, scen in enumerate(scenarios):
            row = [i for i in impls if supports(i, scen)]
            if not row:
                continue
            log("scenario %d/%d %s: %s" % (si + 1, len(scenarios), scen.name, scen.desc))
            started, spawned, tb = {}, {}, {}
            try:
                for impl in row:         # start them all, then wait: start-ups overlap
                    srv = Server(impl, scen, server_cpu, fs, loadgen)
                    spawned[impl] = srv
                    srv.spawn()
                for impl, srv in spawned.items():
                    try:
                        started[impl] = srv.wait_ready()
                    except (RuntimeError, OSError) as exc:
                        log("  %s: cannot start: %s" % (impl, exc))
                        runs.append({"scenario": scen.name, "impl": impl, "repeat": 0,
                                     "ok": False, "error": str(exc)})
                server_infos[scen.name] = {i: s.info for i, s in started.items()}
                order = [i for i in row if i in started]
                if scen.mode == "wrk" and args.warmup >= 1:
                    for impl in order:
                        measurer.warm_wrk(started[impl], scen)
                for rep in range(args.repeats):
                    k = rep % len(order) if order else 0
                    for impl in order[k:] + order[:k]:      # rotate: interleaved
                        runs.append(_one(measurer, started, impl, scen, rep))
            finally:
                for impl, srv in spawned.items():
                    if impl not in started:
                        srv.close()
                        continue
                    errs = srv.stderr_text()
                    if "Traceback" in errs:
                        kinds = _exception_counts(errs)
                        tb[impl] = kinds
                        info = server_infos.get(scen.name, {}).get(impl)
                        if info is not None:
                            info["tracebacks"] = kinds
                            info["stderr_tail"] = errs[-2000:]
                    srv.close()
                if tb:
                    why = (" -- wrk drops its connections mid-request when its time is up"
                           if scen.mode == "wrk" else "")
                    msg = "%s: server tracebacks (printed by handle_error)%s: %s" % (
                        scen.name, why, "; ".join(
                            "%s %s" % (i, ", ".join("%s×%d" % kv for kv in k.items()))
                            for i, k in tb.items()))
                    log(msg)
                    notes.append(msg)
    except KeyboardInterrupt:
        log("interrupted: reporting what was measured")
        notes.append("interrupted before the end")
    finally:
        measurer.close()
    meta["elapsed_s"] = round(time.monotonic() - t_start, 1)

    med = medians(runs)
    table = markdown(meta, med, scenarios, impls)
    cal = calibration_summary(med, impls)
    if cal:
        table += "\n" + cal + "\n"
        meta["calibration"] = cal
    sys.stdout.write(table + "\n")
    sys.stdout.flush()
    if args.json:
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "scenarios": [s.as_dict() for s in scenarios],
                       "servers": server_infos, "runs": runs, "medians": med},
                      f, indent=1, sort_keys=True)
        log("JSON written to %s" % args.json)
    if args.chart:
        log(chart(args.chart, med, scenarios, impls))
    log("done in %.0f s" % meta["elapsed_s"])
    failed = [r for r in runs if not r.get("ok")]
    return 1 if failed and len(failed) == len(runs) else 0


def _one(measurer, started, impl, scen, rep):
    srv = started[impl]
    rec = {"scenario": scen.name, "impl": impl, "repeat": rep}
    if not srv.alive():
        rec.update(ok=False, error="server exited (%s)%s" % (
            srv.proc.returncode, srv.stderr_tail()))
        log("  r%d %-16s server is gone" % (rep + 1, impl))
        return rec
    try:
        raw = measurer.run(srv, scen)
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        rec.update(ok=False, error=str(exc))
        log("  r%d %-16s FAILED: %s" % (rep + 1, impl, exc))
        return rec
    if raw.get("client") == "wrk" and not raw.get("errors"):
        raw.pop("raw", None)        # keep wrk's text only when it reported errors
    s = summarize(raw)
    rec.update(ok=True, raw=raw, summary=s)
    val = s[scen.metric]
    log("  r%d %-16s %s %s  p50 %s µs  p99 %s µs  srv %s µs/op (%s%% CPU)  lg %s%% CPU  "
        "errors %s" % (rep + 1, impl, _fmt(val, 1 if scen.metric == "mib_per_s" else 0),
                       "MiB/s" if scen.metric == "mib_per_s" else "ops/s",
                       _fmt(s["p50_us"]), _fmt(s["p99_us"]),
                       _fmt(s["server_cpu_us_per_op"], 1), _fmt(s["server_cpu_pct"]),
                       _fmt(s["client_cpu_pct"]), s["errors"]))
    return rec


def calibration_summary(med, impls):
    """How far the load generator goes beyond the servers under test."""
    if "c-echo" not in impls:
        return ""
    lines = ["### calibration: the load generator against its own C echo server", ""]
    lines.append("| scenario | c-echo | best server under test | headroom | "
                 "client core busy % (c-echo / best) |")
    lines.append("|---|---:|---:|---:|---:|")
    for scen, rows in med.items():
        c = rows.get("c-echo")
        metric = SCENARIOS[scen].metric
        if not c or c.get(metric) is None:
            continue
        others = [(m[metric], i) for i, m in rows.items()
                  if i != "c-echo" and m.get(metric) is not None]
        if not others:
            lines.append("| %s | %s | n/a | n/a | %s |" % (scen, _fmt(c[metric]),
                                                           _fmt(c.get("client_core_pct"))))
            continue
        best, who = max(others)
        lines.append("| %s | %s | %s (%s) | %.1f× | %s / %s |" % (
            scen, _fmt(c[metric], 1 if metric == "mib_per_s" else 0),
            _fmt(best, 1 if metric == "mib_per_s" else 0), who,
            c[metric] / best if best else float("nan"),
            _fmt(c.get("client_core_pct")), _fmt(rows[who].get("client_core_pct"))))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
