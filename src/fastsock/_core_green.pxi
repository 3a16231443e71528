# ---------------------------------------------------------------------------
# The greenlet hub: one epoll loop that switches between the greenlets of a
# GreenletMixIn server's connections.  Twin: fastsock/_green_py.py
#
# A connection's greenlet that would block (SocketReader/SocketWriter on a
# GreenSocket, or the GreenSocket's own methods) calls Hub._wait(fd, write,
# deadline): the greenlet is recorded as the fd's waiter, the fd registered
# with epoll (level-triggered, kept registered between waits so a
# connection that waits for the same direction again costs no epoll_ctl),
# and control switches to the hub greenlet -- the one running serve_forever,
# which sits in Hub.poll().  poll() waits in epoll_wait with the GIL
# released, then switches to the waiter of every ready fd in turn; each runs
# until it waits again or finishes.  Deadlines are a heap of (deadline, seq,
# fd), entries of waits that already ended being skipped (and compacted
# away when they outnumber the live ones).
# ---------------------------------------------------------------------------

from heapq import heappush as _hub_heappush, heappop as _hub_heappop
from libc.stdint cimport uint32_t
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF, Py_XDECREF
from cpython.mem cimport PyMem_Realloc, PyMem_Free
from cpython.pythread cimport PyThread_get_thread_ident

cdef extern from "_fastsock_epoll.h" nogil:
    enum:
        FS_EV_IN
        FS_EV_OUT
        FS_EV_ERR
        FS_EV_HUP
    ctypedef struct fs_event:
        uint32_t events
        int fd
    int fs_epoll_open()
    int fs_epoll_ctl(int epfd, int op, int fd, uint32_t events)
    int fs_epoll_wait(int epfd, fs_event *out, int max, int ms)

cdef extern from "<errno.h>" nogil:
    enum:
        ENOENT
        EEXIST
        ECONNABORTED

cdef struct _hub_slot:
    PyObject *waiter        # the greenlet waiting on this fd (owned), or NULL
    unsigned int regs       # events registered with epoll (0: not registered)
    unsigned int seq        # bumped by every wait: tells stale timers apart


cdef int _hub_block_wait(int fd, bint write, double deadline) except -1:
    """Wait for fd in this thread (not a hub greenlet): 1 ready, 0 timed out."""
    cdef pollfd p
    cdef int n, err = 0
    p.fd = fd
    p.events = POLLOUT if write else POLLIN
    while True:
        p.revents = 0
        with nogil:
            n = poll(&p, 1, fs_poll_ms(deadline - fs_monotonic()) if deadline > 0.0 else -1)
            if n < 0:
                err = errno
        if n > 0:
            if p.revents & POLLNVAL:
                raise_errno(EBADF)
            return 1
        if n == 0:
            return 0
        if err != EINTR:
            raise_errno(err)
        check_signals()


cdef class Hub:
    """Hub()
--

The event loop of a greenlet server (see ``fastsock.GreenletMixIn``):
    an epoll set with the greenlet waiting on each descriptor.

    ``start(greenlet_module)`` makes the calling greenlet the hub;
    ``poll(listen_fd, wake_fd, timeout)`` waits (GIL released) and runs the
    greenlets whose descriptors are ready or whose deadlines passed, and
    returns ``READY``/``WOKEN`` for the server's own descriptors;
    ``wait(fd, write, deadline)``, called in a connection's greenlet,
    suspends it until *fd* is ready (True) or the absolute monotonic
    *deadline* (0.0: none) passes (False).  Called in any other greenlet or
    thread it blocks the caller instead (poll).
    """

    cdef int _epfd
    cdef _hub_slot *_slots
    cdef int _nslots
    cdef object _glet           # the hub greenlet, None when not started
    cdef object _getcurrent
    cdef object _switch         # greenlet.greenlet.switch
    cdef long _thread
    cdef list _timers
    cdef int _lfd               # server fds registered with epoll (-1: none)
    cdef int _wfd
    cdef int _waiting           # greenlets suspended in wait()
    cdef bint _closing          # wait() raises ConnectionAbortedError

    def __cinit__(self):
        self._epfd = -1
        self._lfd = -1
        self._wfd = -1
        self._timers = []
        self._epfd = fs_epoll_open()
        if self._epfd < 0:
            raise_errno(errno)

    def __dealloc__(self):
        self._release()

    cdef void _release(self) noexcept:
        cdef int i
        if self._slots != NULL:
            for i in range(self._nslots):
                Py_XDECREF(self._slots[i].waiter)
            PyMem_Free(self._slots)
            self._slots = NULL
            self._nslots = 0
        if self._epfd >= 0:
            close(self._epfd)
            self._epfd = -1

    def close(self):
        """Close the epoll descriptor (idempotent)."""
        self._glet = None
        self._timers = []
        self._release()

    @property
    def waiting(self):
        """Greenlets suspended in wait()."""
        return self._waiting

    @property
    def closing(self):
        """While true, wait() in a connection's greenlet raises
        ConnectionAbortedError (set while the open connections are ended)."""
        return self._closing

    @closing.setter
    def closing(self, value):
        self._closing = value

    @property
    def closed(self):
        """True once close() has run."""
        return self._epfd < 0

    def fileno(self):
        """The epoll descriptor (-1 once closed)."""
        return self._epfd

    def start(self, greenlet_module):
        """Make the calling greenlet (of this thread) the hub."""
        self._getcurrent = greenlet_module.getcurrent
        self._switch = greenlet_module.greenlet.switch
        self._glet = self._getcurrent()
        self._thread = PyThread_get_thread_ident()
        self._closing = False

    def stop(self):
        """The hub no longer runs: wait() blocks its caller."""
        self._glet = None

    cdef int _ensure(self, int fd) except -1:
        cdef int n
        cdef _hub_slot *grown
        if fd < self._nslots:
            return 0
        n = self._nslots * 2 if self._nslots else 256
        while n <= fd:
            n *= 2
        grown = <_hub_slot *>PyMem_Realloc(self._slots, n * sizeof(_hub_slot))
        if grown == NULL:
            raise MemoryError()
        memset(grown + self._nslots, 0, (n - self._nslots) * sizeof(_hub_slot))
        self._slots = grown
        self._nslots = n
        return 0

    cdef int _ctl(self, int fd, unsigned int events, unsigned int had) except -1:
        # Register fd for events (had: what we believe is registered).
        cdef int r, err = 0
        r = fs_epoll_ctl(self._epfd, 2 if had else 1, fd, events)
        if r < 0:
            err = errno
            # Our belief was stale (the fd was closed and its number reused,
            # or registered behind our back): the other operation fixes it.
            if err == ENOENT or err == EEXIST:
                r = fs_epoll_ctl(self._epfd, 1 if had else 2, fd, events)
                if r < 0:
                    err = errno
        if r < 0:
            raise_errno(err)
        return 0

    cdef int _wait(self, int fd, bint write, double deadline) except -1:
        """wait() for the compiled streams: 1 ready, 0 the deadline passed."""
        cdef unsigned int ev = FS_EV_OUT if write else FS_EV_IN
        cdef unsigned int seq
        cdef _hub_slot *slot
        cdef object cur, res
        if fd < 0:
            raise_errno(EBADF)
        if self._glet is None or PyThread_get_thread_ident() != self._thread:
            return _hub_block_wait(fd, write, deadline)
        cur = self._getcurrent()
        if cur is self._glet:
            return _hub_block_wait(fd, write, deadline)
        if self._closing:
            raise_errno(ECONNABORTED)
        if deadline > 0.0 and deadline <= fs_monotonic():
            return 0
        self._ensure(fd)
        slot = &self._slots[fd]
        if slot.waiter != NULL:
            raise RuntimeError("another greenlet is already waiting on fd %d" % fd)
        if slot.regs != ev:
            self._ctl(fd, ev, slot.regs)
            slot.regs = ev
        slot.seq += 1
        seq = slot.seq
        Py_INCREF(cur)
        slot.waiter = <PyObject *>cur
        self._waiting += 1
        if deadline > 0.0:
            if len(self._timers) > 2 * self._waiting + 64:
                self._compact()
            _hub_heappush(self._timers, (deadline, seq, fd))
        try:
            res = self._switch(self._glet)
        finally:
            # Woken, the waiter was taken; if something was thrown in
            # instead (GreenletExit), take it here.
            if self._slots != NULL and fd < self._nslots:
                slot = &self._slots[fd]
                if slot.waiter == <PyObject *>cur:
                    slot.waiter = NULL
                    self._waiting -= 1
                    Py_XDECREF(<PyObject *>cur)
        return 1 if res is True else 0

    def wait(self, int fd, bint write, double deadline=0.0):
        """Suspend the calling greenlet until *fd* is readable (writable if
        *write*): True, or False once *deadline* (monotonic; 0.0: none) has
        passed."""
        return self._wait(fd, write, deadline) == 1

    cdef int _compact(self) except -1:
        cdef list live = []
        cdef tuple t
        cdef int fd
        for t in self._timers:
            fd = t[2]
            if (fd < self._nslots and self._slots[fd].waiter != NULL
                    and self._slots[fd].seq == <unsigned int>t[1]):
                live.append(t)
        live.sort()
        self._timers = live
        return 0

    cdef int _wake(self, int fd, object value) except -1:
        # Switch to fd's waiter (if any) with value; no waiter: stop
        # watching the fd (level-triggered, it would be reported again).
        cdef _hub_slot *slot = &self._slots[fd]
        cdef PyObject *p = slot.waiter
        cdef object w
        if p == NULL:
            if slot.regs and value is True:
                fs_epoll_ctl(self._epfd, 3, fd, 0)
                slot.regs = 0
            return 0
        slot.waiter = NULL
        self._waiting -= 1
        w = <object>p
        Py_XDECREF(p)
        self._switch(w, value)
        return 0

    def poll(self, int listen_fd, int wake_fd, timeout, bint once=False):
        """Run the connections' greenlets (waiting with the GIL released)
        until *listen_fd* or *wake_fd* (-1: none) is readable or *timeout*
        seconds (None: no limit) have passed; *once*: return after the
        first wait instead.  Returns READY and/or WOKEN for the server's
        descriptors (0: the time passed)."""
        cdef fs_event evs[256]
        cdef int n, i, fd, ms, err = 0, result = 0
        cdef double now, first, until = 0.0
        cdef bint forever = timeout is None
        cdef tuple t
        if self._epfd < 0:
            raise ValueError("the hub is closed")
        if listen_fd != self._lfd:
            if self._lfd >= 0:
                fs_epoll_ctl(self._epfd, 3, self._lfd, 0)
                self._lfd = -1
            if listen_fd >= 0:
                self._ctl(listen_fd, FS_EV_IN, 0)
                self._lfd = listen_fd
        if wake_fd != self._wfd:
            if self._wfd >= 0:
                fs_epoll_ctl(self._epfd, 3, self._wfd, 0)
                self._wfd = -1
            if wake_fd >= 0:
                self._ctl(wake_fd, FS_EV_IN, 0)
                self._wfd = wake_fd
        if not forever:
            until = fs_monotonic() + <double>timeout
        while True:
            ms = -1 if forever else fs_poll_ms(until - fs_monotonic())
            if self._timers:
                first = (<tuple>self._timers[0])[0]
                i = fs_poll_ms(first - fs_monotonic())
                if ms < 0 or i < ms:
                    ms = i
            while True:
                with nogil:
                    n = fs_epoll_wait(self._epfd, evs, 256, ms)
                    if n < 0:
                        err = errno
                if n >= 0:
                    break
                if err != EINTR:
                    raise_errno(err)
                check_signals()
                ms = 0      # handlers ran: look again without waiting
            for i in range(n):
                fd = evs[i].fd
                if fd == listen_fd:
                    result |= 1         # READY
                elif fd == wake_fd:
                    result |= 2         # WOKEN
                elif fd < self._nslots:
                    self._wake(fd, True)
            if self._timers:
                now = fs_monotonic()
                while self._timers:
                    t = <tuple>self._timers[0]
                    if <double>t[0] > now:
                        break
                    _hub_heappop(self._timers)
                    fd = t[2]
                    if (fd < self._nslots and self._slots[fd].waiter != NULL
                            and self._slots[fd].seq == <unsigned int>t[1]):
                        self._wake(fd, False)
            if result or once or (not forever and fs_monotonic() >= until):
                return result

    def unwatch(self):
        """Stop watching the server's descriptors (before they are closed:
        a new one may get the same number)."""
        if self._lfd >= 0:
            fs_epoll_ctl(self._epfd, 3, self._lfd, 0)
            self._lfd = -1
        if self._wfd >= 0:
            fs_epoll_ctl(self._epfd, 3, self._wfd, 0)
            self._wfd = -1

    def forget(self, int fd, bint closed=False):
        """A connection on *fd* is ending: stop watching it (*closed*: the
        descriptor is already closed, epoll dropped it by itself)."""
        cdef _hub_slot *slot
        if fd < 0 or fd >= self._nslots:
            return
        slot = &self._slots[fd]
        if slot.regs:
            if not closed:
                fs_epoll_ctl(self._epfd, 3, fd, 0)
            slot.regs = 0

    def waiters(self):
        """The greenlets waiting now (a list)."""
        cdef int i
        return [<object>self._slots[i].waiter for i in range(self._nslots)
                if self._slots[i].waiter != NULL]
