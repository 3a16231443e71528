"""Pure-Python twin of the greenlet hub of ``fastsock._core``
(``_core_green.pxi``): same names, signatures and behaviour, on
``selectors`` (epoll on Linux)."""
import errno
import heapq
import select
import selectors
import threading
from time import monotonic

from ._loop_py import READY, WOKEN

__all__ = ["Hub"]

_READ = selectors.EVENT_READ
_WRITE = selectors.EVENT_WRITE


def _block_wait(fd, write, deadline):
    # Wait in this thread (not a hub greenlet): True ready, False timed out.
    poller = select.poll()
    poller.register(fd, select.POLLOUT if write else select.POLLIN)
    if deadline > 0.0:
        ms = max(0.0, deadline - monotonic()) * 1000.0
        ms = int(ms) + (int(ms) < ms)
    else:
        ms = None
    ready = poller.poll(ms)     # EINTR: retried by poll() itself (PEP 475)
    if ready and ready[0][1] & select.POLLNVAL:
        raise OSError(errno.EBADF, "Bad file descriptor")
    return bool(ready)


class Hub:
    """The event loop of a greenlet server (see ``fastsock.GreenletMixIn``):
    an epoll set (here: a ``selectors`` selector) with the greenlet waiting
    on each descriptor.  See ``fastsock._core.Hub`` for the methods."""

    def __init__(self):
        self._sel = selectors.DefaultSelector()
        self._waiters = {}      # fd -> (greenlet, seq)
        self._regs = {}         # fd -> events registered with the selector
        self._seq = 0
        self._timers = []
        self._glet = None
        self._getcurrent = None
        self._thread = None
        self._lfd = -1
        self._wfd = -1
        self._closing = False

    @property
    def waiting(self):
        """Greenlets suspended in wait()."""
        return len(self._waiters)

    @property
    def closing(self):
        """While true, wait() in a connection's greenlet raises
        ConnectionAbortedError (set while the open connections are ended)."""
        return self._closing

    @closing.setter
    def closing(self, value):
        self._closing = bool(value)

    @property
    def closed(self):
        """True once close() has run."""
        return self._sel is None

    def fileno(self):
        """The selector's descriptor (-1 once closed)."""
        return -1 if self._sel is None else self._sel.fileno()

    def close(self):
        """Close the selector (idempotent)."""
        self._glet = None
        self._timers = []
        self._waiters.clear()
        self._regs.clear()
        if self._sel is not None:
            self._sel.close()
            self._sel = None

    def start(self, greenlet_module):
        """Make the calling greenlet (of this thread) the hub."""
        self._getcurrent = greenlet_module.getcurrent
        self._glet = self._getcurrent()
        self._thread = threading.get_ident()
        self._closing = False

    def stop(self):
        """The hub no longer runs: wait() blocks its caller."""
        self._glet = None

    def _register(self, fd, events):
        sel = self._sel
        if fd in self._regs or fd in (self._lfd, self._wfd):
            try:
                sel.modify(fd, events)
                self._regs[fd] = events
                return
            except KeyError:
                pass
        try:
            sel.register(fd, events)
        except KeyError:       # the selector still knew the fd
            sel.modify(fd, events)
        self._regs[fd] = events

    def _unregister(self, fd):
        try:
            self._sel.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass

    def wait(self, fd, write, deadline=0.0):
        """Suspend the calling greenlet until *fd* is readable (writable if
        *write*): True, or False once *deadline* (monotonic; 0.0: none) has
        passed."""
        if fd < 0:
            raise OSError(errno.EBADF, "Bad file descriptor")
        glet = self._glet
        if glet is None or threading.get_ident() != self._thread:
            return _block_wait(fd, write, deadline)
        cur = self._getcurrent()
        if cur is glet:
            return _block_wait(fd, write, deadline)
        if self._closing:
            raise OSError(errno.ECONNABORTED, "Software caused connection abort")
        if deadline > 0.0 and deadline <= monotonic():
            return False
        if fd in self._waiters:
            raise RuntimeError("another greenlet is already waiting on fd %d" % fd)
        events = _WRITE if write else _READ
        if self._regs.get(fd) != events:
            self._register(fd, events)
        self._seq += 1
        seq = self._seq
        self._waiters[fd] = (cur, seq)
        if deadline > 0.0:
            if len(self._timers) > 2 * len(self._waiters) + 64:
                self._compact()
            heapq.heappush(self._timers, (deadline, seq, fd))
        try:
            res = glet.switch()
        finally:
            entry = self._waiters.get(fd)
            if entry is not None and entry[0] is cur:
                del self._waiters[fd]
        return res is True

    def _compact(self):
        waiters = self._waiters
        live = [t for t in self._timers
                if t[2] in waiters and waiters[t[2]][1] == t[1]]
        heapq.heapify(live)
        self._timers = live

    def _wake(self, fd, value):
        entry = self._waiters.pop(fd, None)
        if entry is None:
            if value is True and fd in self._regs:
                del self._regs[fd]
                self._unregister(fd)
            return
        entry[0].switch(value)

    def _watch(self, old, new):
        if old >= 0:
            self._unregister(old)
        if new >= 0:
            self._register(new, _READ)
            self._regs.pop(new, None)    # not a connection's registration

    def poll(self, listen_fd, wake_fd, timeout, once=False):
        """Run the connections' greenlets (waiting with the GIL released)
        until *listen_fd* or *wake_fd* (-1: none) is readable or *timeout*
        seconds (None: no limit) have passed; *once*: return after the
        first wait instead.  Returns READY and/or WOKEN for the server's
        descriptors (0: the time passed)."""
        if self._sel is None:
            raise ValueError("the hub is closed")
        if listen_fd != self._lfd:
            self._watch(self._lfd, listen_fd)
            self._lfd = listen_fd
        if wake_fd != self._wfd:
            self._watch(self._wfd, wake_fd)
            self._wfd = wake_fd
        until = None if timeout is None else monotonic() + timeout
        select = self._sel.select
        wake = self._wake
        while True:
            wait = None if until is None else max(0.0, until - monotonic())
            if self._timers:
                left = max(0.0, self._timers[0][0] - monotonic())
                if wait is None or left < wait:
                    wait = left
            if wait is not None:
                # Round up to whole milliseconds like the core: never early.
                ms = wait * 1000.0
                wait = (int(ms) + (int(ms) < ms)) / 1000.0
            result = 0
            for key, _ in select(wait):
                fd = key.fd
                if fd == listen_fd:
                    result |= READY
                elif fd == wake_fd:
                    result |= WOKEN
                else:
                    wake(fd, True)
            timers = self._timers
            if timers:
                now = monotonic()
                waiters = self._waiters
                while timers and timers[0][0] <= now:
                    _, seq, fd = heapq.heappop(timers)
                    entry = waiters.get(fd)
                    if entry is not None and entry[1] == seq:
                        wake(fd, False)
            if result or once or (until is not None and monotonic() >= until):
                return result

    def unwatch(self):
        """Stop watching the server's descriptors (before they are closed:
        a new one may get the same number)."""
        if self._lfd >= 0:
            self._unregister(self._lfd)
            self._lfd = -1
        if self._wfd >= 0:
            self._unregister(self._wfd)
            self._wfd = -1

    def forget(self, fd, closed=False):
        """A connection on *fd* is ending: stop watching it (*closed*: the
        descriptor is already closed)."""
        if self._regs.pop(fd, None) is not None:
            self._unregister(fd)

    def waiters(self):
        """The greenlets waiting now (a list)."""
        return [entry[0] for entry in self._waiters.values()]
