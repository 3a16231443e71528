"""Server statistics: counters kept by the servers, snapshots, export.

Every fastsock server keeps a few counters and gauges (see ``ServerStats``)
and returns a consistent snapshot of them from ``server.stats()``.  The
counters are C integers updated with the GIL held in the compiled core
(``fastsock._core.Counters``; the pure twin updates Python integers under
one lock per server); the stream handlers
count their bytes in C integers inside ``rfile``/``wfile`` and add them to
the server's totals once, when the handler finishes.

``server.export_stats(callback, interval)`` starts a ``StatsExporter``: a
daemon thread that hands a snapshot to *callback* every *interval* seconds,
whatever the serve loop is doing (a single-threaded server busy with a slow
request still reports).  ``prometheus_text()`` renders a snapshot in the
Prometheus text exposition format.
"""
import dataclasses
import logging
import math
import threading
import time
from time import monotonic

__all__ = ["ServerStats", "StatsExporter", "prometheus_text"]

logger = logging.getLogger("fastsock")


@dataclasses.dataclass(frozen=True)
class ServerStats:
    """One snapshot of a server's counters and gauges (``server.stats()``).

    Counters (only ever grow, since the server was created):

    ``accepted``
        requests taken by ``get_request()``: connections for stream servers,
        datagrams for datagram servers.
    ``rejected``
        accepted requests that were not handled: ``verify_request()``
        returned false (``rejected_verify``), or the TLS handshake failed or
        timed out (``rejected_tls``).
    ``completed``
        handlers that have finished (returned or raised).
    ``errors``
        exceptions that reached ``handle_error()`` -- counted where the
        server calls it, so an overridden ``handle_error`` changes nothing.
        ``disconnects`` is the part of them that are routine client
        failures (reset, broken pipe, ``TimeoutError``, ``LineTooLong``).
        For forking servers: children that exited with a non-zero status.
    ``accept_errors``
        ``get_request()`` failures (``OSError``: a client gone before
        accept(), out of descriptors, ...).
    ``bytes_in`` / ``bytes_out``
        bytes received by ``rfile`` and sent by ``wfile`` of the stream
        handlers that have finished (the datagrams and replies of
        ``DatagramRequestHandler``); not counted for forking servers, whose
        handlers run in the children.

    Gauges (now): ``active`` (handlers running; forking servers: live
    children), ``queued`` (requests waiting for a pool worker),
    ``workers`` / ``idle_workers`` (the pool's threads), ``uptime``
    (seconds since the server was created) and ``started`` (its creation
    time, ``time.time()``).
    """

    accepted: int = 0
    rejected: int = 0
    rejected_verify: int = 0
    rejected_tls: int = 0
    completed: int = 0
    errors: int = 0
    disconnects: int = 0
    accept_errors: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    active: int = 0
    queued: int = 0
    workers: int = 0
    idle_workers: int = 0
    uptime: float = 0.0
    started: float = 0.0

    def as_dict(self):
        """The snapshot as a plain dict (for JSON, logging...)."""
        return dataclasses.asdict(self)


_COUNTER_FIELDS = ("accepted", "rejected_verify", "rejected_tls", "completed",
                   "errors", "disconnects", "accept_errors", "bytes_in", "bytes_out")


class Counters:
    """The mutable counters behind ``server.stats()`` (pure twin of
    ``fastsock._core.Counters``: the same methods).

    Every method is one update under one lock, so the values are exact
    whichever threads update them, and ``values()`` is consistent.
    """

    __slots__ = ("_lock", "accepted", "rejected_verify", "rejected_tls", "completed",
                 "errors", "disconnects", "accept_errors", "bytes_in", "bytes_out",
                 "active", "t0", "started")

    def __init__(self):
        self._lock = threading.Lock()
        for name in _COUNTER_FIELDS:
            setattr(self, name, 0)
        self.active = 0
        self.t0 = monotonic()
        self.started = time.time()

    def accept(self):
        with self._lock:
            self.accepted += 1

    def accept_error(self):
        with self._lock:
            self.accept_errors += 1

    def reject_verify(self):
        with self._lock:
            self.rejected_verify += 1

    def reject_tls(self):
        with self._lock:
            self.rejected_tls += 1

    def begin(self):
        with self._lock:
            self.active += 1

    def accept_begin(self):
        with self._lock:
            self.accepted += 1
            self.active += 1

    def end(self):
        with self._lock:
            self.active -= 1
            self.completed += 1

    def error(self, disconnect):
        with self._lock:
            self.errors += 1
            if disconnect:
                self.disconnects += 1

    def child_done(self, failed):
        with self._lock:
            self.completed += 1
            if failed:
                self.errors += 1

    def add_bytes(self, nin, nout):
        with self._lock:
            self.bytes_in += nin
            self.bytes_out += nout

    def values(self):
        with self._lock:
            values = {name: getattr(self, name) for name in _COUNTER_FIELDS}
            values["active"] = self.active
        return values


def snapshot(counters, gauges):
    """A ``ServerStats`` from *counters* (a ``Counters``) and *gauges*."""
    values = counters.values()
    values["rejected"] = values["rejected_verify"] + values["rejected_tls"]
    values.update(gauges)
    values["uptime"] = monotonic() - counters.t0
    values["started"] = counters.started
    return ServerStats(**values)


_create_lock = threading.Lock()


class _LazyCounters:
    """Class attribute: the server's counters (``server._core.Counters()``),
    created on first use and then stored on the instance (so later lookups
    never come back here)."""

    def __get__(self, server, owner=None):
        if server is None:
            return self
        with _create_lock:
            counters = vars(server).get("_fastsock_counters")
            if counters is None:
                counters = vars(server)["_fastsock_counters"] = server._core.Counters()
        return counters


class StatsExporter:
    """Hands ``server.stats()`` to *callback* every *interval* seconds, from
    a daemon thread of its own.

    Created and started by ``server.export_stats()``; stopped by ``stop()``
    or ``server.server_close()``.  An exception from *callback* is logged
    (``fastsock`` logger, with its traceback) and the exporter carries on;
    it never reaches the server.  With *final* true, ``stop()`` makes one
    last call so the totals of a closing server are not lost.
    """

    def __init__(self, server, callback, interval=10.0, *, final=True):
        interval = float(interval)
        if not interval > 0.0 or math.isinf(interval):
            raise ValueError("interval must be a positive finite number")
        if not callable(callback):
            raise TypeError("callback must be callable")
        self.server = server
        self.callback = callback
        self.interval = interval
        self.final = final
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = None

    def start(self):
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("the exporter is already started")
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="fastsock-stats")
            self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            self.export_now()

    def export_now(self):
        """Call the callback once, now (exceptions are logged)."""
        try:
            self.callback(self.server.stats())
        except Exception:
            logger.exception("stats exporter %r failed", self.callback)

    def stop(self):
        """Stop the thread and wait for it (then one final export if
        *final*).  Idempotent."""
        with self._lock:
            thread = self._thread
            if thread is None or self._stop.is_set():
                return
            self._stop.set()
        if thread is not threading.current_thread():
            thread.join()
        if self.final:
            self.export_now()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


# name, type, help
_PROM_METRICS = [
    ("accepted", "counter", "Requests taken by get_request() (connections or datagrams)."),
    ("rejected", "counter", "Accepted requests not handled (verify_request or TLS handshake)."),
    ("rejected_verify", "counter", "Requests refused by verify_request()."),
    ("rejected_tls", "counter", "Connections whose TLS handshake failed or timed out."),
    ("completed", "counter", "Request handlers that have finished."),
    ("errors", "counter", "Exceptions that reached handle_error()."),
    ("disconnects", "counter", "Errors that were routine client disconnects or timeouts."),
    ("accept_errors", "counter", "get_request() failures."),
    ("bytes_in", "counter", "Bytes received by finished stream handlers."),
    ("bytes_out", "counter", "Bytes sent by finished stream handlers."),
    ("active", "gauge", "Request handlers running now."),
    ("queued", "gauge", "Requests waiting for a pool worker."),
    ("workers", "gauge", "Pool worker threads."),
    ("idle_workers", "gauge", "Pool worker threads waiting for a request."),
    ("uptime", "gauge", "Seconds since the server was created."),
    ("started", "gauge", "Unix time the server was created."),
]

_PROM_SUFFIX = {"uptime": "_seconds", "started": "_time_seconds"}


def _prom_label_value(value):
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(stats, prefix="fastsock", labels=None):
    """Render a ``ServerStats`` in the Prometheus text exposition format
    (version 0.0.4): counters as ``<prefix>_<name>_total``, gauges as
    ``<prefix>_<name>``, each with its HELP and TYPE lines.  *labels*
    (a mapping) is added to every sample, e.g. ``{"server": "api"}``."""
    if labels:
        parts = []
        for key, value in labels.items():
            if not key.replace("_", "a").isalnum() or key[0].isdigit():
                raise ValueError("invalid label name %r" % (key,))
            parts.append('%s="%s"' % (key, _prom_label_value(value)))
        label_text = "{" + ",".join(parts) + "}"
    else:
        label_text = ""
    lines = []
    for name, kind, help_text in _PROM_METRICS:
        if kind == "counter":
            metric = "%s_%s_total" % (prefix, name)
        else:
            metric = "%s_%s%s" % (prefix, name, _PROM_SUFFIX.get(name, ""))
        value = getattr(stats, name)
        lines.append("# HELP %s %s" % (metric, help_text))
        lines.append("# TYPE %s %s" % (metric, kind))
        lines.append("%s%s %s" % (metric, label_text, repr(float(value))
                                  if isinstance(value, float) else value))
    return "\n".join(lines) + "\n"
