# ---------------------------------------------------------------------------
# Server statistics: the counters behind server.stats().
# Twin: fastsock/_stats.py (Counters) -- same methods, kept in step.
# ---------------------------------------------------------------------------

from time import time as _st_time, monotonic as _st_monotonic


cdef class Counters:
    """Counters()
--

The mutable counters of one server (see ``fastsock.ServerStats``).

    Each method is one update of C integers that runs entirely with the GIL
    held and calls no Python code, so it is atomic for the threads of a
    process without a lock (the twin takes one), and ``values()`` is a
    consistent snapshot.
    """
    cdef readonly long long accepted, rejected_verify, rejected_tls, completed
    cdef readonly long long errors, disconnects, accept_errors, bytes_in, bytes_out
    cdef readonly long long active
    cdef readonly double t0, started

    def __cinit__(self):
        self.t0 = _st_monotonic()
        self.started = _st_time()

    def accept(self):
        """A request taken by get_request()."""
        self.accepted += 1

    def accept_error(self):
        """get_request() failed."""
        self.accept_errors += 1

    def reject_verify(self):
        self.rejected_verify += 1

    def reject_tls(self):
        self.rejected_tls += 1

    def begin(self):
        """A handler starts."""
        self.active += 1

    def accept_begin(self):
        """accept() and begin() at once (a request handled inline)."""
        self.accepted += 1
        self.active += 1

    def end(self):
        """A handler has finished (returned or raised)."""
        self.active -= 1
        self.completed += 1

    def error(self, bint disconnect):
        """An exception reached handle_error(); *disconnect*: a routine one."""
        self.errors += 1
        if disconnect:
            self.disconnects += 1

    def child_done(self, bint failed):
        """A forked child was reaped (*failed*: non-zero exit status)."""
        self.completed += 1
        if failed:
            self.errors += 1

    def add_bytes(self, long long nin, long long nout):
        """Add a finished handler's traffic."""
        self.bytes_in += nin
        self.bytes_out += nout

    def values(self):
        """The counters and the ``active`` gauge, as a dict."""
        return {"accepted": self.accepted, "rejected_verify": self.rejected_verify,
                "rejected_tls": self.rejected_tls, "completed": self.completed,
                "errors": self.errors, "disconnects": self.disconnects,
                "accept_errors": self.accept_errors, "bytes_in": self.bytes_in,
                "bytes_out": self.bytes_out, "active": self.active}
