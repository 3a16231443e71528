# ---------------------------------------------------------------------------
# Socket streams: SocketReader (rfile) and SocketWriter (wfile).
# Twin: fastsock/_io_py.py -- same algorithms, kept in step with this file.
#
# SocketReader gives the results of sock.makefile('rb', bufsize) (an
# io.BufferedReader over socket.SocketIO, or the bare SocketIO when bufsize is
# 0) for every chunking of the input; SocketWriter is the stdlib's
# socketserver._SocketWriter (bufsize 0) or sock.makefile('wb', bufsize).
# The buffer states, when the socket is read or written, and what an error or
# a timeout leaves behind follow _io.BufferedReader/_io.BufferedWriter.
#
# For a plain socket.socket, recv()/send() run on its fd in C, honouring the
# socket's timeout like CPython's sock_call_ex.  The fd and the timeout are
# read from the socket object at every call (_sio_sock_mode: no Python call,
# a settimeout() or close() in between is seen).  A send is tried without
# waiting first (GIL released), and waits (poll + send) only if it would
# block.  A recv is tried first with the GIL held only when the last one
# filled its buffer (more input is likely waiting); after a recv that
# emptied the socket, it waits at once: one blocking recv() for a blocking
# socket, poll() + recv() under a deadline (_sio_io, GIL released).
# Any other socket-like object (ssl.SSLSocket...) is driven through its own
# recv_into()/send()/sendall() methods.
#
# SocketReader's limits: max_line caps readline (LineTooLong past it);
# line_timeout/idle_timeout are deadlines of one read call, armed when the
# call takes the lock (_arm) and checked by every recv of it (_recv): the
# poll() waits for the nearest of them and the socket's own deadline.  Over
# other objects the socket's timeout is narrowed for each recv_into().
# ---------------------------------------------------------------------------

from cpython.bytes cimport PyBytes_GET_SIZE
from cpython.buffer cimport (PyObject_GetBuffer, PyBuffer_Release,
                             PyBUF_SIMPLE, PyBUF_WRITABLE, PyBUF_READ, PyBUF_WRITE)
from cpython.mem cimport PyMem_Malloc, PyMem_Realloc, PyMem_Free
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.number cimport PyNumber_AsSsize_t
from cpython.long cimport PyLong_CheckExact, PyLong_AsSsize_t
from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock,
                               PyThread_free_lock, PyThread_acquire_lock,
                               PyThread_release_lock, PyThread_get_thread_ident,
                               WAIT_LOCK, NOWAIT_LOCK)

cdef extern from "Python.h":
    # Bytes objects grown in place: the result of a read is built once,
    # straight from recv() or the buffer, never joined from chunks.
    PyObject *_sio_bytes_new "PyBytes_FromStringAndSize"(const char *v, Py_ssize_t n) except NULL
    int _sio_bytes_resize "_PyBytes_Resize"(PyObject **pv, Py_ssize_t n) except -1
    char *_sio_bytes_data "PyBytes_AS_STRING"(PyObject *o) noexcept nogil
    bytes _sio_bytes "PyBytes_FromStringAndSize"(const char *v, Py_ssize_t n)
    enum:
        PY_SSIZE_T_MAX

cdef Py_ssize_t _SIO_DEFAULT = io.DEFAULT_BUFFER_SIZE
# A reader whose size the caller left to us (bufsize -1/None) starts at
# _SIO_DEFAULT and doubles, up to _SIO_GROW_MAX, each time a refill of the
# whole buffer comes back full: bulk input then costs one recv() per 64 KiB
# instead of per 8 KiB, while a connection of small requests keeps 8 KiB.
cdef Py_ssize_t _SIO_GROW_MAX = 65536
# Most bytes an unbuffered writer holds back while coalescing.
cdef Py_ssize_t _PEND_MAX = 65536
from fastsock._flusher import register as _sio_flusher_register
from fastsock._errors import LineTooLong as _sio_LineTooLong
cdef object _sio_socket_type = _socket_module.socket
# A greenlet server's connection: the fast path too, waiting through its hub.
from fastsock._green_socket import GreenSocket as _sio_green_type
cdef object _sio_unsupported = io.UnsupportedOperation
cdef frozenset _sio_blocking_errnos = frozenset([EAGAIN, EWOULDBLOCK])
# Since CPython 3.13 (gh-117151) BufferedWriter.write() sends a write of at
# least the buffer size directly instead of buffering exactly one buffer's
# worth; the writer follows the running interpreter's makefile().
from sys import version_info as _sio_version_info
cdef bint _SIO_SEND_FULL_BLOCKS = _sio_version_info >= (3, 13)

# Socket modes (from its timeout) and the special results of _sio_io().
cdef enum:
    _SIO_BLOCK = 0
    _SIO_NONBLOCK = 1
    _SIO_TIMEOUT = 2

cdef enum:
    _SIO_ERROR = -1       # errno in *err
    _SIO_AGAIN = -2       # a non-blocking socket would block
    _SIO_TIMEDOUT = -3    # the deadline passed


cdef Py_ssize_t _sio_io(int fd, char *buf, size_t n, int flags, bint sending,
                        int mode, double deadline, int *err) noexcept nogil:
    """One recv() (or send()) of up to n bytes: the byte count, or one of
    _SIO_ERROR/_SIO_AGAIN/_SIO_TIMEDOUT.  With a timeout, poll() first, until
    the deadline (a spurious EAGAIN polls again), like CPython's sock_call_ex.
    EINTR is returned as an error: the caller runs the signal handlers."""
    cdef pollfd p
    cdef ssize_t r
    cdef int e, ready
    cdef double left
    if mode != _SIO_BLOCK:
        flags |= MSG_DONTWAIT
    if sending:
        flags |= MSG_NOSIGNAL
    while True:
        if mode == _SIO_TIMEOUT and fd >= 0:
            left = deadline - fs_monotonic()
            if left < 0:
                return _SIO_TIMEDOUT
            p.fd = fd
            p.events = POLLOUT if sending else POLLIN
            p.revents = 0
            ready = poll(&p, 1, fs_poll_ms(left))
            if ready < 0:
                err[0] = errno
                return _SIO_ERROR
            if ready == 0:
                return _SIO_TIMEDOUT
        if sending:
            r = send(fd, buf, n, flags)
        else:
            r = recv(fd, buf, n, flags)
        if r >= 0:
            return r
        e = errno
        if would_block(e):
            if mode == _SIO_TIMEOUT:
                continue
            return _SIO_AGAIN
        err[0] = e
        return _SIO_ERROR


cdef inline Py_ssize_t _sio_try(int fd, char *buf, size_t n, int flags, bint sending,
                               int *err) noexcept:
    """One non-blocking recv() (or send()): the byte count, _SIO_AGAIN, or
    _SIO_ERROR with err set.

    A recv is tried with the GIL held, before any blocking wait: when the
    data is already there (a busy stream, pipelined requests) the call
    completes without letting go of the GIL, so the thread does not have to
    win it back from the others afterwards.  (The reader only tries first
    when its last recv filled what it was given: see SocketReader._recv.)

    A send lets go of the GIL, as CPython's sock.send() does.  Measured on
    line echo with 32-256 threads on one CPU: a send on loopback TCP with
    the GIL held led to a GIL convoy (2-4 contended GIL handoffs, futex
    calls, per request instead of under 0.1, and 30-60% more server CPU per
    request), since other threads become runnable during it and can only
    queue for the GIL."""
    cdef ssize_t r
    cdef int e = 0
    if sending:
        with nogil:
            r = send(fd, buf, n, flags | MSG_DONTWAIT | MSG_NOSIGNAL)
            if r < 0:
                e = errno
    else:
        r = recv(fd, buf, n, flags | MSG_DONTWAIT)
        if r < 0:
            e = errno
    if r >= 0:
        return r
    if would_block(e):
        return _SIO_AGAIN
    err[0] = e
    return _SIO_ERROR


cdef int _sio_mode(object timeout, double *deadline) except -1:
    """The socket mode for sock.gettimeout(); sets the deadline."""
    cdef double t
    if timeout is None:
        return _SIO_BLOCK
    t = timeout
    if t <= 0.0:
        return _SIO_NONBLOCK
    deadline[0] = fs_monotonic() + t
    return _SIO_TIMEOUT


cdef bint _sio_check_layout():
    """Whether fs_sockobject matches this interpreter's socket objects: a
    live socket.socket's fields must read back fileno(), the family, type
    and protocol and every kind of timeout, and -1 once it is closed."""
    cdef fs_sockobject *s
    try:
        a, b = _socket_module.socketpair()
    except Exception:
        return False
    try:
        if type(a) is not _sio_socket_type:
            return False
        s = <fs_sockobject *><PyObject *>a
        if (s.sock_fd != a.fileno() or s.sock_family != a.family
                or s.sock_type != a.type or s.sock_proto != a.proto):
            return False
        # None is stored as a negative duration (-1 s on 3.11).
        for t, ns in ((None, -1), (0.0, 0), (2.5, 2500000000), (0.001, 1000000), (None, -1)):
            a.settimeout(t)
            if (s.sock_timeout >= 0) if ns < 0 else (s.sock_timeout != ns):
                return False
        a.close()
        return s.sock_fd == -1
    except Exception:
        return False
    finally:
        a.close()
        b.close()


# True: _sio_sock_mode() reads socket.socket objects directly.
cdef bint _sio_layout_ok = _sio_check_layout()
_SOCKET_FIELDS_OK = _sio_layout_ok      # for the tests


cdef inline int _sio_sock_mode(object sock, int *fd, double *deadline) except -1:
    """The descriptor and mode of a plain socket.socket (sets the deadline
    of _SIO_TIMEOUT from now), as sock.fileno() and sock.gettimeout() give
    them at this moment: a settimeout() or close() since the last call is
    seen.  Without Python calls when the layout is known."""
    cdef fs_sockobject *s
    cdef long long t
    if not _sio_layout_ok:
        mode = _sio_mode(sock.gettimeout(), deadline)
        fd[0] = sock.fileno()
        return mode
    s = <fs_sockobject *><PyObject *>sock
    fd[0] = s.sock_fd
    t = s.sock_timeout
    if t < 0:
        return _SIO_BLOCK
    if t == 0:
        return _SIO_NONBLOCK
    deadline[0] = fs_monotonic() + <double>t * 1e-9
    return _SIO_TIMEOUT


cdef inline int _sio_sock_fd(object sock) except? -2:
    if _sio_layout_ok:
        return (<fs_sockobject *><PyObject *>sock).sock_fd
    return sock.fileno()


cdef Py_ssize_t _sio_size_arg(object value) except? -1:
    # io's "Py_ssize_t(accept={int, NoneType})" argument conversion.
    if value is None:
        return -1
    if PyLong_CheckExact(value):
        return PyLong_AsSsize_t(value)      # OverflowError past the range
    return PyNumber_AsSsize_t(value, OverflowError)


cdef Py_ssize_t _sio_bufsize_arg(object bufsize) except? -1:
    cdef Py_ssize_t n
    if bufsize is None:
        return _SIO_DEFAULT
    n = PyNumber_AsSsize_t(bufsize, OverflowError)
    return _SIO_DEFAULT if n < 0 else n


cdef Py_ssize_t _sio_max_line_arg(object value) except? -2:
    # SocketReader's max_line: -1 for None, else an integer >= 1.
    cdef Py_ssize_t n
    if value is None:
        return -1
    n = PyNumber_AsSsize_t(value, OverflowError)
    if n < 1:
        raise ValueError("max_line must be a positive integer or None")
    return n


cdef double _sio_seconds_arg(object value, str name) except? -1.0:
    # SocketReader's line_timeout/idle_timeout: 0.0 for None, else a real
    # number > 0 (inf: no limit in practice).
    cdef double t
    if value is None:
        return 0.0
    t = value
    if not t > 0.0:         # also NaN
        raise ValueError("%s must be a positive number or None" % name)
    return t


# readline()'s default limit, compared by identity (small ints are cached).
cdef object _sio_minus_one = -1


cdef object _sio_seconds_value(double t):
    return t if t > 0.0 else None


# -- a bytes object being filled: obj holds cap bytes, the first len valid ---

cdef struct _sio_acc:
    PyObject *obj
    Py_ssize_t len
    Py_ssize_t cap
    Py_ssize_t max      # never grow past this many bytes by doubling


# Results are shrunk to their length in place (_PyBytes_Resize: realloc)
# only when at least this much is cut off.  glibc frees a smaller cut-off
# tail into the thread's cache (tcache: blocks of up to 1032 bytes), where
# it stays, not merged with its free neighbours, until that thread asks for
# a block of its size again or exits.  In a long-lived worker thread
# (ThreadPoolMixIn) each such tail pins the end of a large block: once that
# block is freed it can no longer grow back to its old size, and the next
# one of that size is taken from fresh memory.  Heaps grew without bound
# that way (docs/hardening.md, finding 5).  A smaller trim copies the
# result instead, as does a result small enough for pymalloc (512 bytes).
cdef Py_ssize_t _ACC_SHRINK_MIN = 2048


cdef inline void _acc_clear(_sio_acc *a) noexcept:
    Py_XDECREF(a.obj)
    a.obj = NULL


cdef inline void _acc_init(_sio_acc *a) noexcept nogil:
    a.obj = NULL
    a.len = 0
    a.cap = 0
    a.max = PY_SSIZE_T_MAX


cdef int _acc_reserve(_sio_acc *a, Py_ssize_t extra) except -1:
    """Make room for extra more bytes (growing geometrically)."""
    cdef Py_ssize_t cap
    if extra > PY_SSIZE_T_MAX - a.len:
        raise MemoryError()
    if a.len + extra <= a.cap:
        return 0
    cap = a.cap * 2 if a.cap < PY_SSIZE_T_MAX // 2 else PY_SSIZE_T_MAX
    if cap > a.max:
        cap = a.max
    if cap < a.len + extra:
        cap = a.len + extra
    if cap < 1:
        cap = 1
    if a.obj == NULL:
        a.obj = _sio_bytes_new(NULL, cap)
    else:
        _sio_bytes_resize(&a.obj, cap)   # on failure: obj is NULL, raises
    a.cap = cap
    return 0


cdef inline char *_acc_tail(_sio_acc *a) noexcept:
    return _sio_bytes_data(a.obj) + a.len


cdef int _acc_append(_sio_acc *a, const char *src, Py_ssize_t n) except -1:
    if n > 0:
        _acc_reserve(a, n)
        memcpy(_acc_tail(a), src, n)
        a.len += n
    return 0


cdef object _acc_finish(_sio_acc *a):
    """The bytes (trimmed to len); the accumulator no longer owns them."""
    cdef object res
    if a.obj == NULL:
        return b""
    if a.len != a.cap:
        if a.cap - a.len <= _ACC_SHRINK_MIN or a.len <= 512:
            # A small tail cut off in place would stay pinned in glibc's
            # thread cache (see _ACC_SHRINK_MIN): copy instead (and a
            # small result to pymalloc).
            res = _sio_bytes(_sio_bytes_data(a.obj), a.len)
            _acc_clear(a)
            return res
        _sio_bytes_resize(&a.obj, a.len)
        a.cap = a.len
    res = <object>a.obj
    Py_XDECREF(a.obj)
    a.obj = NULL
    return res


cdef class _SocketStream:
    """Common part of SocketReader and SocketWriter: the socket, its
    makefile()-style reference, and the lock that serialises operations
    (a reentrant call from the same thread raises RuntimeError, as in io)."""

    cdef object _sock
    cdef PyThread_type_lock _lock
    cdef long _owner
    cdef bint _ok          # __cinit__ completed
    cdef bint _closed
    cdef bint _fast        # type(sock) is socket.socket: use the fd directly
    cdef bint _ref         # holds one of sock._io_refs
    cdef object _hub       # a GreenSocket's Hub (None: a thread's socket)
    cdef object __weakref__

    def __cinit__(self, *args, **kwargs):
        self._lock = PyThread_allocate_lock()
        if self._lock == NULL:
            raise MemoryError()

    def __dealloc__(self):
        if self._lock != NULL:
            PyThread_free_lock(self._lock)
            self._lock = NULL

    cdef int _enter(self) except -1:
        cdef long me = PyThread_get_thread_ident()
        if not PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            if self._owner == me:
                raise RuntimeError("reentrant call inside %r" % (self,))
            with nogil:
                PyThread_acquire_lock(self._lock, WAIT_LOCK)
        self._owner = me
        return 0

    cdef inline void _leave(self) noexcept:
        self._owner = 0
        PyThread_release_lock(self._lock)

    cdef int _set_sock(self, object sock) except -1:
        self._sock = sock
        self._fast = type(sock) is _sio_socket_type
        if not self._fast and type(sock) is _sio_green_type:
            # Plain socket underneath: the fast path, but a recv/send that
            # would block waits in the hub (_recv_green, _send_green_wait).
            self._fast = True
            self._hub = sock._fastsock_hub
        return 0

    cdef int _take_ref(self) except -1:
        # Only a socket.socket counts its files (a test double's attribute
        # may be anything).
        if isinstance(self._sock, _sio_socket_type):
            self._sock._io_refs += 1
            self._ref = True
        return 0

    cdef int _drop_ref(self) except -1:
        if self._ref:
            self._ref = False
            self._sock._decref_socketios()
        return 0

    @property
    def closed(self):
        return self._closed

    @property
    def name(self):
        return -1 if self._closed else self._sock.fileno()

    def __del__(self):
        if self._ok and not self._closed:
            try:
                self.close()
            except Exception:
                pass

    def __exit__(self, *exc_info):
        self.close()

    def seek(self, pos, whence=0):
        raise _sio_unsupported("seek")

    def tell(self):
        raise _sio_unsupported("seek")

    def truncate(self, pos=None):
        raise _sio_unsupported("truncate")

    def detach(self):
        raise _sio_unsupported("detach")

    def __repr__(self):
        return "<%s.%s name=%r>" % (type(self).__module__,
                                    type(self).__qualname__, self.name)

    def __reduce__(self):
        raise TypeError("cannot pickle '%s' object" % type(self).__name__)


cdef class SocketReader(_SocketStream):
    # The first docstring lines give inspect.signature() the class signature.
    """SocketReader(sock, bufsize=-1, *, max_line=None, line_timeout=None, idle_timeout=None)
--

Binary read stream over a connected socket: what ``sock.makefile('rb',
    bufsize)`` returns, with the same results for every chunking of the
    input.  *bufsize* < 0 means ``io.DEFAULT_BUFFER_SIZE``; 0 means
    unbuffered: no more is taken from the socket than is returned (readline
    peeks for the newline), so the socket can be handed on after a read.

    The socket's timeout applies to every read from it; after a timeout the
    reader refuses to read the socket again (``OSError("cannot read from
    timed out object")``), like ``socket.SocketIO``.  Like makefile(), the
    reader holds a reference on the socket (``sock._io_refs``): closing the
    socket while the reader is open only closes it when the reader closes.

    Limits (fastsock extras; None, the default, is no limit, as makefile()):
    *max_line* caps what ``readline()`` and iteration return: a line of more
    than *max_line* bytes (newline included) raises ``fastsock.LineTooLong``
    as soon as more than *max_line* bytes have arrived without a newline, so
    no more than about ``max(bufsize, max_line)`` bytes are held for it; its
    first *max_line* bytes are consumed.  ``readline(limit)`` with a *limit*
    of at most *max_line* is unchanged.  *line_timeout* (seconds) is a
    deadline for the whole of one read call (``readline()``, ``read(n)``,
    ``readinto()``, ...) that has to wait for data, however slowly the bytes
    trickle in; *idle_timeout* bounds the wait for the first byte of a call
    that starts with nothing buffered (the time between requests).  Past
    either, the call raises ``TimeoutError("timed out")`` and the reader,
    as after a socket timeout, refuses to read again.  Both apply together
    with the socket's own timeout: whichever expires first.
    """

    cdef char *_buf
    cdef object _writer        # the SocketWriter coalescing with us, or None
    cdef bint _peer_pending    # _writer holds back bytes: send them before recv
    cdef Py_ssize_t _bufsize   # 0: unbuffered
    cdef Py_ssize_t _cap       # allocated size of _buf (scratch when unbuffered)
    cdef Py_ssize_t _pos       # next byte to return
    cdef Py_ssize_t _end       # end of the valid bytes; -1: none are valid
                               # (always -1 when unbuffered)
    cdef bint _timed_out
    # Limits (see the class docstring).  Durations are 0.0 when unset.
    cdef Py_ssize_t _max_line  # -1: none
    cdef double _line_timeout
    cdef double _idle_timeout
    cdef bint _limited         # a duration is set: calls arm deadlines
    cdef double _dl_call       # deadline of the current call (0.0: none)
    cdef double _dl_idle       # deadline for its first byte (0.0: none, or got it)
    cdef unsigned long long _nread  # bytes received (peeks not counted)
    cdef bint _drained         # the last recv left the socket empty: the next
                               # one waits at once instead of trying first
    cdef bint _grow            # bufsize was left to us: may grow (see _SIO_GROW_MAX)
    cdef bint _was_full        # the last whole-buffer refill filled it

    def __cinit__(self, sock, bufsize=-1, *, max_line=None, line_timeout=None,
                  idle_timeout=None):
        self._bufsize = _sio_bufsize_arg(bufsize)
        self._grow = self._bufsize == _SIO_DEFAULT and (
            bufsize is None or PyNumber_AsSsize_t(bufsize, OverflowError) < 0)
        self._max_line = _sio_max_line_arg(max_line)
        self._line_timeout = _sio_seconds_arg(line_timeout, "line_timeout")
        self._idle_timeout = _sio_seconds_arg(idle_timeout, "idle_timeout")
        self._limited = self._line_timeout > 0.0 or self._idle_timeout > 0.0
        self._cap = self._bufsize if self._bufsize else _SIO_DEFAULT
        self._buf = <char *>PyMem_Malloc(self._cap)
        if self._buf == NULL:
            raise MemoryError()
        self._pos = 0
        self._end = -1
        self._set_sock(sock)
        self._take_ref()
        self._ok = True

    def __dealloc__(self):
        PyMem_Free(self._buf)
        self._buf = NULL

    # -- raw socket reads (socket.SocketIO.readinto) ------------------------

    cdef Py_ssize_t _recv(self, char *dst, Py_ssize_t n, int flags,
                          bint nowait=False) except -1:
        """One read of up to n bytes from the socket: the byte count (0 at
        EOF), or _SIO_AGAIN if a non-blocking socket has nothing.  nowait:
        do not wait even if the socket has a timeout."""
        cdef int fd, mode, err = 0
        cdef double deadline = 0.0, limit = 0.0
        cdef Py_ssize_t r
        if self._timed_out:
            raise OSError("cannot read from timed out object")
        if n <= 0:
            return 0
        if self._peer_pending:
            # The handler has used up its input: what its wfile held back
            # goes out before we wait for more.
            self._writer._flush_pending()
        if self._limited:
            limit = self._call_deadline()
        if not self._fast:
            r = self._recv_slow(dst, n, flags, limit)
            if r >= 0:
                self._dl_idle = 0.0     # no longer waiting for the first byte
                if not flags & MSG_PEEK:
                    self._nread += r
            return r
        mode = _sio_sock_mode(self._sock, &fd, &deadline)
        if nowait:
            mode = _SIO_NONBLOCK
        if limit > 0.0 and mode != _SIO_NONBLOCK:
            # The call's deadline and the socket's, whichever is first.
            if mode == _SIO_BLOCK or limit < deadline:
                deadline = limit
            mode = _SIO_TIMEOUT
        if mode == _SIO_NONBLOCK or not self._drained:
            if self._drained and self._hub is not None and not nowait:
                # A GreenSocket (always non-blocking underneath) that the
                # last recv emptied: wait in the hub before trying.
                return self._recv_green(fd, dst, n, flags, limit)
            # More input may be waiting (the last recv filled what it was
            # given): take it without letting go of the GIL.
            r = _sio_try(fd, dst, <size_t>n, flags, False, &err)
            if r >= 0:
                self._got(r, n, flags)
                return r
            if r == _SIO_ERROR:
                if err != EINTR:
                    raise_errno(err)
                check_signals()
            elif mode == _SIO_NONBLOCK:
                if self._hub is not None and not nowait:
                    return self._recv_green(fd, dst, n, flags, limit)
                self._drained = True
                return _SIO_AGAIN
        # The last recv emptied the socket (or this one found it empty): the
        # peer has to send more first, so wait right away, as a blocking
        # socket.recv() does -- one blocking recv(), or poll() + recv() with
        # a deadline -- instead of a non-blocking try that would fail.
        while True:
            with nogil:
                r = _sio_io(fd, dst, <size_t>n, flags, False, mode, deadline, &err)
            if r >= 0:
                self._got(r, n, flags)
                return r
            if r == _SIO_AGAIN:
                self._drained = True
                return r
            if r == _SIO_TIMEDOUT:
                self._timed_out = True
                raise_timeout()
            if err != EINTR:
                raise_errno(err)
            check_signals()                 # PEP 475: retry after handlers
            fd = _sio_sock_fd(self._sock)

    cdef Py_ssize_t _recv_green(self, int fd, char *dst, Py_ssize_t n, int flags,
                                double limit) except -1:
        # A GreenSocket's recv would block: wait in the hub, under the
        # user's timeout and the call's deadline, then try again.
        cdef object timeout = (<object>self._sock)._fastsock_timeout
        cdef double deadline = 0.0
        cdef Py_ssize_t r
        cdef int err = 0
        if timeout is not None:
            if <double>timeout <= 0.0:
                self._drained = True        # non-blocking for the user
                return _SIO_AGAIN
            deadline = fs_monotonic() + <double>timeout
        if limit > 0.0 and (deadline == 0.0 or limit < deadline):
            deadline = limit
        while True:
            if not (<Hub>self._hub)._wait(fd, False, deadline):
                self._timed_out = True
                raise_timeout()
            fd = _sio_sock_fd(self._sock)
            r = _sio_try(fd, dst, <size_t>n, flags, False, &err)
            if r >= 0:
                self._got(r, n, flags)
                return r
            if r == _SIO_ERROR:
                if err != EINTR:
                    raise_errno(err)
                check_signals()

    cdef inline void _got(self, Py_ssize_t r, Py_ssize_t n, int flags) noexcept:
        self._dl_idle = 0.0         # no longer waiting for the first byte
        # Fewer bytes than there was room for: the socket is empty now
        # (unless they were only peeked at).
        if not flags & MSG_PEEK:
            self._drained = r < n
            self._nread += r

    cdef Py_ssize_t _recv_slow(self, char *dst, Py_ssize_t n, int flags,
                               double limit) except -1:
        cdef object view = PyMemoryView_FromMemory(dst, n, PyBUF_WRITE)
        cdef object got, timeout = None
        cdef Py_ssize_t r
        cdef double left
        cdef bint narrowed = False
        try:
            while True:
                if limit > 0.0:
                    # The object waits by itself (an SSLSocket may need more
                    # than one packet per record): shorten its timeout to
                    # the call's deadline for this recv_into().
                    left = limit - fs_monotonic()
                    if left <= 0.0:
                        self._timed_out = True
                        raise_timeout()
                    if not narrowed:
                        timeout = self._sock.gettimeout()
                    if timeout is None or (timeout > 0.0 and timeout > left):
                        self._sock.settimeout(left)
                        narrowed = True
                try:
                    if flags:
                        got = self._sock.recv_into(view, n, flags)
                    else:
                        got = self._sock.recv_into(view)
                except TimeoutError:
                    self._timed_out = True
                    raise
                except InterruptedError:
                    continue
                except OSError as exc:
                    if exc.errno in _sio_blocking_errnos:
                        return _SIO_AGAIN
                    raise
                break
        finally:
            try:
                view.release()
            except BufferError:
                pass
            if narrowed:
                self._sock.settimeout(timeout)
        r = got
        if r < 0 or r > n:
            raise OSError("raw readinto() returned invalid length %d "
                          "(should have been between 0 and %d)" % (r, n))
        return r

    cdef inline void _arm(self) noexcept:
        """Start the deadlines of a read call that may wait for data (only
        when a duration is set; call with the lock held)."""
        cdef double now
        if self._limited:
            now = fs_monotonic()
            self._dl_call = now + self._line_timeout if self._line_timeout > 0.0 else 0.0
            self._dl_idle = (now + self._idle_timeout
                             if self._idle_timeout > 0.0 and self._readahead() == 0
                             else 0.0)

    cdef double _call_deadline(self) except? -1.0:
        """The deadline for the next recv of this call (0.0: none); raises
        TimeoutError once it has passed, whether or not data is waiting."""
        cdef double dl = self._dl_call
        if self._dl_idle > 0.0 and (dl == 0.0 or self._dl_idle < dl):
            dl = self._dl_idle
        if dl > 0.0 and fs_monotonic() >= dl:
            self._timed_out = True
            raise_timeout()
        return dl

    cdef Py_ssize_t _raw_readall(self, _sio_acc *acc) except -1:
        """RawIOBase.readall() into acc: the count read, or _SIO_AGAIN if
        nothing could be read without blocking."""
        cdef Py_ssize_t got = 0, r
        while True:
            _acc_reserve(acc, _SIO_DEFAULT)
            r = self._recv(_acc_tail(acc), acc.cap - acc.len, 0)
            if r == _SIO_AGAIN:
                return got if got else _SIO_AGAIN
            if r == 0:
                return got
            acc.len += r
            got += r

    cdef Py_ssize_t _fill(self) except -1:
        """Read once into the free end of the buffer (all of it when nothing
        is valid): the count, 0 at EOF, or _SIO_AGAIN."""
        cdef Py_ssize_t start = self._end if self._end >= 0 else 0
        cdef Py_ssize_t n
        cdef char *grown
        if start == 0 and self._was_full and self._grow and self._bufsize < _SIO_GROW_MAX:
            # Nothing valid is buffered: the buffer may be replaced.
            grown = <char *>PyMem_Realloc(self._buf, 2 * self._bufsize)
            if grown != NULL:
                self._buf = grown
                self._bufsize *= 2
                self._cap = self._bufsize
        n = self._recv(self._buf + start, self._bufsize - start, 0)
        if n > 0:
            self._end = start + n
        if start == 0:
            self._was_full = n == self._bufsize
        return n

    cdef inline Py_ssize_t _readahead(self) noexcept:
        return self._end - self._pos if self._end >= 0 else 0

    cdef inline bytes _take(self, Py_ssize_t n):
        cdef bytes res = _sio_bytes(self._buf + self._pos, n)
        self._pos += n
        return res

    cdef inline Py_ssize_t _line_limit(self, Py_ssize_t limit) noexcept:
        # The limit readline(limit) reads under: max_line when that is less.
        if self._max_line >= 0 and (limit < 0 or limit > self._max_line):
            return self._max_line
        return limit

    cdef inline Py_ssize_t _buffered_line(self, Py_ssize_t limit) noexcept:
        """The length of the line at the read position, newline included,
        when the newline is buffered within the first limit bytes (limit
        < 0: anywhere); 0 otherwise (unbuffered: always 0)."""
        cdef Py_ssize_t n = self._end - self._pos
        cdef char *start
        cdef char *nl
        if limit >= 0 and n > limit:
            n = limit
        if n <= 0:                  # also _end == -1: nothing buffered
            return 0
        start = self._buf + self._pos
        nl = <char *>memchr(start, 10, <size_t>n)
        return nl - start + 1 if nl != NULL else 0

    cdef inline int _check_closed(self, str message) except -1:
        if self._closed:
            raise ValueError(message if self._bufsize
                             else "I/O operation on closed file.")
        return 0

    # -- reading -------------------------------------------------------------

    def read(self, n=-1, /):
        """Read up to n bytes (all until EOF when n is -1 or None); fewer only
        at EOF, or when a non-blocking socket has no more (None if none)."""
        cdef Py_ssize_t size = _sio_size_arg(n)
        if self._bufsize and size < -1:
            raise ValueError("read length must be non-negative or -1")
        self._check_closed("read of closed file")
        if self._bufsize and 0 <= size <= self._readahead():   # no lock needed
            return self._take(size)
        self._enter()
        try:
            self._arm()
            if not self._bufsize:
                return self._read_unbuffered(size)
            if size == -1:
                return self._read_all()
            if size <= self._readahead():
                return self._take(size)
            return self._read_generic(size)
        finally:
            self._leave()

    cdef object _read_unbuffered(self, Py_ssize_t n):
        cdef _sio_acc acc
        cdef Py_ssize_t r
        if n == 0:
            self._recv(NULL, 0, 0)          # the timed-out check
            return b""
        _acc_init(&acc)
        try:
            if n < 0:
                r = self._raw_readall(&acc)
            else:
                _acc_reserve(&acc, n)
                r = self._recv(_acc_tail(&acc), n, 0)
                if r > 0:
                    acc.len = r
            if r == _SIO_AGAIN:
                return None
            return _acc_finish(&acc)
        finally:
            _acc_clear(&acc)

    cdef object _read_all(self):
        cdef _sio_acc acc
        cdef Py_ssize_t have = self._readahead(), r
        _acc_init(&acc)
        try:
            if have > 0:
                _acc_append(&acc, self._buf + self._pos, have)
                self._pos += have
            self._end = -1
            r = self._raw_readall(&acc)
            if have == 0 and r == _SIO_AGAIN:
                return None
            return _acc_finish(&acc)
        finally:
            _acc_clear(&acc)

    cdef object _read_generic(self, Py_ssize_t n):
        cdef _sio_acc acc
        cdef Py_ssize_t have = self._readahead()
        cdef Py_ssize_t bufsize = self._bufsize
        cdef Py_ssize_t written = 0, remaining, r
        cdef char *out
        _acc_init(&acc)
        try:
            _acc_reserve(&acc, n)
            out = _sio_bytes_data(acc.obj)
            if have > 0:
                memcpy(out, self._buf + self._pos, have)
                self._pos += have
                written = have
            remaining = n - written
            self._end = -1
            # Whole blocks go straight into the result...
            while remaining > 0:
                r = bufsize * (remaining // bufsize)
                if r == 0:
                    break
                r = self._recv(out + written, r, 0)
                if r == 0 or r == _SIO_AGAIN:
                    if r == 0 or written > 0:
                        acc.len = written
                        return _acc_finish(&acc)
                    return None
                remaining -= r
                written += r
            # ...the last partial block through the buffer.
            self._pos = 0
            self._end = 0
            while remaining > 0 and self._end < bufsize:
                r = self._fill()
                if r == 0 or r == _SIO_AGAIN:
                    if r == 0 or written > 0:
                        acc.len = written
                        return _acc_finish(&acc)
                    return None
                if r > remaining:
                    r = remaining
                memcpy(out + written, self._buf + self._pos, r)
                written += r
                self._pos += r
                remaining -= r
            acc.len = written
            return _acc_finish(&acc)
        finally:
            _acc_clear(&acc)

    def read1(self, Py_ssize_t n=-1, /):
        """Read up to n bytes with at most one read from the socket: the
        buffered bytes if there are any, else what one read returns."""
        cdef _sio_acc acc
        cdef Py_ssize_t have, r
        if n < 0:
            n = self._bufsize if self._bufsize else _SIO_DEFAULT
        self._check_closed("read of closed file")
        if n == 0:
            return b""
        self._enter()
        try:
            self._arm()
            have = self._readahead()
            if have > 0:
                return self._take(have if have < n else n)
            self._end = -1
            _acc_init(&acc)
            try:
                _acc_reserve(&acc, n)
                r = self._recv(_acc_tail(&acc), n, 0)
                if r > 0:
                    acc.len = r
                return _acc_finish(&acc)
            finally:
                _acc_clear(&acc)
        finally:
            self._leave()

    def readinto(self, b, /):
        """Read into the writable buffer b until it is full (or EOF, or a
        non-blocking socket has no more); the byte count, None if none."""
        return self._readinto(b, False, "readinto")

    def readinto1(self, b, /):
        """Read into b with at most one read from the socket; the byte
        count, None if a non-blocking socket has nothing."""
        return self._readinto(b, True, "readinto1")

    cdef object _readinto(self, object b, bint one, str name):
        cdef Py_buffer view
        cdef Py_ssize_t r
        try:
            PyObject_GetBuffer(b, &view, PyBUF_WRITABLE)
        except Exception:
            raise TypeError("%s() argument must be read-write bytes-like "
                            "object, not %s" % (name, type(b).__name__)) from None
        try:
            self._check_closed("readinto of closed file")
            self._enter()
            try:
                self._arm()
                if not self._bufsize:
                    r = self._recv(<char *>view.buf, view.len, 0)
                    return None if r == _SIO_AGAIN else r
                return self._readinto_buffered(<char *>view.buf, view.len, one)
            finally:
                self._leave()
        finally:
            PyBuffer_Release(&view)

    cdef object _readinto_buffered(self, char *dst, Py_ssize_t size, bint one):
        cdef Py_ssize_t have = self._readahead()
        cdef Py_ssize_t bufsize = self._bufsize
        cdef Py_ssize_t written = 0, remaining, r
        if have > 0:
            if have >= size:
                memcpy(dst, self._buf + self._pos, size)
                self._pos += size
                return size
            memcpy(dst, self._buf + self._pos, have)
            self._pos += have
            written = have
        self._end = -1
        self._pos = 0
        remaining = size - written
        while remaining > 0:
            if remaining > bufsize:
                r = self._recv(dst + written, remaining, 0)
            elif not (one and written):
                r = self._fill()
                if r > 0:
                    if r > remaining:
                        r = remaining
                    memcpy(dst + written, self._buf + self._pos, r)
                    self._pos += r
                    written += r
                    remaining -= r
                    continue
            else:
                r = 0
            if r == 0 or (r == _SIO_AGAIN and written > 0):
                break
            if r == _SIO_AGAIN:
                return None
            written += r
            remaining -= r
            if one:
                break
        return written

    def peek(self, Py_ssize_t n=0, /):
        """Return buffered bytes without consuming them, reading the socket
        once if nothing is buffered (unbuffered: one MSG_PEEK read of up to
        n bytes, or io.DEFAULT_BUFFER_SIZE when n <= 0)."""
        cdef _sio_acc acc
        cdef Py_ssize_t have, r
        self._check_closed("peek of closed file")
        self._enter()
        try:
            self._arm()
            if not self._bufsize:
                _acc_init(&acc)
                try:
                    _acc_reserve(&acc, n if n > 0 else _SIO_DEFAULT)
                    r = self._recv(_acc_tail(&acc), acc.cap, MSG_PEEK)
                    if r > 0:
                        acc.len = r
                    return _acc_finish(&acc)
                finally:
                    _acc_clear(&acc)
            have = self._readahead()
            if have > 0:
                return _sio_bytes(self._buf + self._pos, have)
            self._end = -1
            r = self._fill()
            self._pos = 0
            return _sio_bytes(self._buf, r if r > 0 else 0)
        finally:
            self._leave()

    # The hottest call: a plain method descriptor (not a cyfunction: about
    # 7 ns less per call); the clinic-style signature keeps inspect working.
    # A line already in the buffer is returned here, without a lock (as in
    # io: nothing on this path releases the GIL or runs Python code, and a
    # thread filling the buffer only writes past _end); anything else goes
    # through _readline_entry.
    @cython.binding(False)
    @cython.embedsignature.format("clinic")
    def readline(self, limit=-1, /):
        """Read up to and including the next b'\\n', at most limit bytes when
        limit >= 0; what remains at EOF (b'' at EOF)."""
        cdef Py_ssize_t n = -1, k
        # The default (-1, a cached small int) needs no conversion.
        if <PyObject *>limit != <PyObject *>_sio_minus_one:
            n = _sio_size_arg(limit)
        if not self._closed:
            k = self._buffered_line(self._line_limit(n))
            if k > 0:
                return self._take(k)
        return self._readline_entry(n)

    cdef object _readline_entry(self, Py_ssize_t limit):
        # readline() and __next__ after their lock-free path found no whole
        # line in the buffer (within the same limit), or on a closed reader.
        cdef bint capped = False
        cdef object line
        self._check_closed("readline of closed file")
        if self._max_line >= 0 and (limit < 0 or limit > self._max_line):
            # Read at most max_line bytes; more without a newline: too long.
            limit = self._max_line
            capped = True
        if self._bufsize:
            if capped and self._readahead() > limit:
                self._pos += limit
                self._line_too_long()
        self._enter()
        try:
            self._arm()
            if not self._bufsize:
                line = self._readline_unbuffered(limit)
            else:
                line = self._readline(limit)
            if (capped and len(line) == limit
                    and _sio_bytes_data(<PyObject *>line)[limit - 1] != 10
                    and self._more_input()):
                self._line_too_long()
            return line
        finally:
            self._leave()

    cdef int _line_too_long(self) except -1:
        raise _sio_LineTooLong("line longer than %d bytes (max_line)" % self._max_line)

    cdef bint _more_input(self) except -1:
        """After max_line bytes of a line without a newline: does at least
        one more byte follow?  Waits for it (or EOF) as readline would; a
        non-blocking socket without it says no.  Buffered, the byte stays
        buffered; unbuffered, it is peeked (read, where peeking is not
        possible)."""
        cdef Py_ssize_t r
        if self._bufsize:
            if self._readahead() > 0:
                return True
            self._end = -1
            r = self._fill()
            self._pos = 0
            return r > 0
        r = self._recv(self._buf, 1, MSG_PEEK if self._fast else 0)
        return r > 0

    cdef object _readline(self, Py_ssize_t limit):
        cdef _sio_acc acc
        cdef Py_ssize_t n, k
        cdef char *start
        cdef char *nl
        cdef bytes res
        # The common case: the line is in the buffer.
        n = self._readahead()
        if limit >= 0 and n > limit:
            n = limit
        start = self._buf + self._pos
        nl = <char *>memchr(start, 10, n)
        if nl != NULL:
            return self._take(nl - start + 1)
        if n == limit:
            return self._take(n)
        # Otherwise take what is buffered and refill the whole buffer until
        # the newline, the limit, EOF, or a non-blocking socket runs dry.
        _acc_init(&acc)
        if limit >= 0:
            acc.max = limit     # the result never holds more
        try:
            if n > 0:
                _acc_reserve(&acc, n + self._bufsize)
                _acc_append(&acc, start, n)
                self._pos += n
                if limit >= 0:
                    limit -= n
            while True:
                self._end = -1
                n = self._fill()
                if n <= 0:
                    break
                if limit >= 0 and n > limit:
                    n = limit
                nl = <char *>memchr(self._buf, 10, n)
                if nl != NULL:
                    k = nl - self._buf + 1
                    self._pos = 0
                    if acc.obj == NULL:
                        return self._take(k)
                    _acc_append(&acc, self._buf, k)
                    self._pos = k
                    break
                _acc_append(&acc, self._buf, n)
                self._pos = n
                if n == limit:
                    break
                if limit >= 0:
                    limit -= n
            return _acc_finish(&acc)
        finally:
            _acc_clear(&acc)

    cdef object _readline_unbuffered(self, Py_ssize_t limit):
        # Never consume past the newline: peek to find it, then take exactly
        # the bytes up to it, straight into the result.  Sockets that cannot
        # peek are read one byte at a time, as io.IOBase.readline() reads a
        # raw SocketIO.
        cdef _sio_acc acc
        cdef Py_ssize_t want, got
        cdef char *nl
        _acc_init(&acc)
        if limit >= 0:
            acc.max = limit     # the result never holds more
        try:
            while limit < 0 or acc.len < limit:
                want = self._cap
                if limit >= 0 and limit - acc.len < want:
                    want = limit - acc.len
                if self._fast:
                    got = self._recv(self._buf, want, MSG_PEEK)
                    if got > 0:
                        nl = <char *>memchr(self._buf, 10, got)
                        want = got if nl == NULL else nl - self._buf + 1
                        _acc_reserve(&acc, want)
                        got = self._recv(_acc_tail(&acc), want, 0, True)
                        if got == _SIO_AGAIN:   # taken by someone else: peek again
                            continue
                else:
                    want = 1
                    _acc_reserve(&acc, 1)
                    got = self._recv(_acc_tail(&acc), 1, 0)
                if got == _SIO_AGAIN:
                    raise OSError("read() should have returned a bytes object, "
                                  "not 'NoneType'")
                if got == 0:
                    break
                acc.len += got
                if got == want and _sio_bytes_data(acc.obj)[acc.len - 1] == 10:
                    break
            return _acc_finish(&acc)
        finally:
            _acc_clear(&acc)

    def readlines(self, hint=-1, /):
        """Read lines until EOF, or until their total length exceeds hint
        when hint > 0."""
        cdef Py_ssize_t limit = _sio_size_arg(hint)
        cdef Py_ssize_t length = 0
        cdef list lines
        if limit <= 0:
            return list(self)
        lines = []
        for line in self:
            lines.append(line)
            if len(line) > limit - length:
                break
            length += len(line)
        return lines

    def __iter__(self):
        self._check_closed("I/O operation on closed file.")
        return self

    def __next__(self):
        # tp_iternext: readline()'s lock-free path for a buffered line, then
        # _readline_entry (always bytes) for the rest.
        cdef Py_ssize_t k
        cdef object line
        if not self._closed:
            k = self._buffered_line(self._max_line)
            if k > 0:
                return self._take(k)
        line = self._readline_entry(-1)
        if PyBytes_GET_SIZE(line) == 0:
            raise StopIteration
        return line

    # -- the rest of the file interface -------------------------------------

    def close(self):
        """Close the reader (not the socket itself: it closes once the
        socket and all its files are closed, as with makefile())."""
        if self._closed:
            return
        self._enter()
        try:
            if self._closed:
                return
            self._closed = True
            self._pos = 0
            self._end = -1
        finally:
            self._leave()
        self._drop_ref()

    @property
    def mode(self):
        return "rb"

    @property
    def max_line(self):
        """The longest line readline() returns, or None (no limit)."""
        return self._max_line if self._max_line >= 0 else None

    @property
    def line_timeout(self):
        """Seconds one read call may take when it has to wait, or None."""
        return _sio_seconds_value(self._line_timeout)

    @property
    def bytes_read(self):
        """Bytes received from the socket so far (fastsock extra; bytes
        only peeked at are not counted)."""
        return self._nread

    @property
    def idle_timeout(self):
        """Seconds a call may wait for its first byte, or None."""
        return _sio_seconds_value(self._idle_timeout)

    def fileno(self):
        self._check_closed("I/O operation on closed file.")
        return self._sock.fileno()

    def isatty(self):
        self._check_closed("I/O operation on closed file.")
        return False

    def readable(self):
        if self._closed:
            raise ValueError("I/O operation on closed socket.")
        return True

    def writable(self):
        if self._closed:
            raise ValueError("I/O operation on closed socket.")
        return False

    def seekable(self):
        if self._closed:
            raise ValueError("I/O operation on closed socket.")
        return False

    def flush(self):
        self._check_closed("I/O operation on closed file.")

    def write(self, b):
        raise _sio_unsupported("write")

    def writelines(self, lines):
        raise _sio_unsupported("write")

    def __enter__(self):
        self._check_closed("I/O operation on closed file.")
        return self


cdef class SocketWriter(_SocketStream):
    # The first docstring lines give inspect.signature() the class signature.
    """SocketWriter(sock, bufsize=0, reader=None, *, write_timeout=None)
--

Binary write stream over a connected socket.  With *bufsize* 0 (the
    default) it is the stdlib's ``socketserver._SocketWriter``: ``write()``
    sends every byte before it returns, and ``close()`` leaves the socket
    alone.  Otherwise it is ``sock.makefile('wb', bufsize)`` (< 0:
    ``io.DEFAULT_BUFFER_SIZE``): writes are buffered, sent when the buffer
    would overflow, on ``flush()`` and on ``close()``, and the writer holds
    a reference on the socket (``sock._io_refs``) like makefile().

    *reader*, the ``SocketReader`` of the same plain ``socket.socket``, lets
    an unbuffered writer coalesce: while the reader still holds unread input
    (pipelined requests), a write is held back and sent together with the
    next ones -- when the reader next needs the socket, on ``flush()`` or
    ``close()``, on a write made with no input left, past 64 KiB, or after
    1 ms if the handler pauses (``fastsock._flusher``).  ``write()`` still
    returns the full length; a correct program sees the same bytes, in the
    same order, with fewer send() calls.

    *write_timeout* (seconds, None: none) bounds the time one ``write()``,
    ``flush()`` or ``close()`` may spend waiting for the peer to take the
    bytes, in all, however many partial sends it makes (a client that
    reads slowly but steadily is cut off too once the call has waited that
    long).  It combines with the socket's own timeout: whichever expires
    first raises ``TimeoutError``.  Once the write_timeout has expired the
    writer refuses to send again (``TimeoutError``), and ``close()``
    discards what is left unsent, so the connection can be dropped at once.
    """

    cdef char *_buf
    cdef Py_ssize_t _bufsize   # 0: unbuffered
    cdef Py_ssize_t _start     # pending bytes are _buf[_start:_end]
    cdef Py_ssize_t _end

    cdef object _reader        # SocketReader we coalesce with (unbuffered), or None
    cdef Py_ssize_t _pcap      # capacity of _buf while coalescing
    cdef double _psince        # when the held-back bytes started waiting

    cdef double _write_timeout # 0.0: none
    cdef double _wdl           # deadline of the current call (0.0: not armed yet)
    cdef bint _wtimed_out      # write_timeout expired: refuse to send again
    cdef unsigned long long _nwritten  # bytes the socket has taken

    def __cinit__(self, sock, bufsize=0, reader=None, *, write_timeout=None):
        self._write_timeout = _sio_seconds_arg(write_timeout, "write_timeout")
        self._bufsize = _sio_bufsize_arg(bufsize)
        if self._bufsize:
            self._buf = <char *>PyMem_Malloc(self._bufsize)
            if self._buf == NULL:
                raise MemoryError()
        self._set_sock(sock)
        if self._bufsize:
            self._take_ref()
        elif (reader is not None and self._fast and type(reader) is SocketReader
                and (<SocketReader>reader)._sock is sock
                and (<SocketReader>reader)._writer is None):
            self._reader = reader
            (<SocketReader>reader)._writer = self
        self._ok = True

    def __dealloc__(self):
        PyMem_Free(self._buf)
        self._buf = NULL

    # -- raw socket writes ---------------------------------------------------

    cdef int _send(self, const char *data, Py_ssize_t n, Py_ssize_t keep,
                   bint overall, Py_ssize_t *progress) except -1:
        """Send data[progress[0]:n] until at most keep bytes are left,
        advancing progress[0] with every send (so it is right even when this
        raises).  0, or 1 if a non-blocking socket would block.  overall: one
        deadline for the whole (sendall()), else one per send() call
        (socket.SocketIO.write())."""
        cdef int fd, mode, wmode, err = 0
        cdef double deadline = 0.0, wdeadline, gdeadline = -1.0
        cdef Py_ssize_t r
        if self._wtimed_out:
            raise_timeout()
        if not self._fast:
            return self._send_slow(data, n, keep, progress)
        # fileno()/gettimeout() read from the socket object (no Python calls)
        mode = _sio_sock_mode(self._sock, &fd, &deadline)
        while n - progress[0] > keep:
            r = _sio_try(fd, <char *>data + progress[0], <size_t>(n - progress[0]),
                         0, True, &err)
            if r >= 0:
                progress[0] += r
                self._nwritten += r
                continue
            if r == _SIO_ERROR:
                if err != EINTR:
                    raise_errno(err)
                check_signals()
                continue
            if mode == _SIO_NONBLOCK:
                if self._hub is None or self._send_green_wait(fd, &gdeadline, overall):
                    return 1
                fd = _sio_sock_fd(self._sock)
                continue
            wmode = mode
            wdeadline = deadline
            if self._write_timeout > 0.0:
                # write_timeout: one deadline for the whole call, armed
                # when it first has to wait; the socket's, if sooner.
                if self._wdl == 0.0:
                    self._wdl = fs_monotonic() + self._write_timeout
                if wmode == _SIO_BLOCK or self._wdl < wdeadline:
                    wdeadline = self._wdl
                wmode = _SIO_TIMEOUT
            with nogil:
                r = _sio_io(fd, <char *>data + progress[0], <size_t>(n - progress[0]),
                            0, True, wmode, wdeadline, &err)
            if r >= 0:
                progress[0] += r
                self._nwritten += r
                if n - progress[0] > keep:
                    # A send cut short by a signal: run the handlers before
                    # blocking again.
                    check_signals()
                    if mode == _SIO_TIMEOUT and not overall:
                        _sio_sock_mode(self._sock, &fd, &deadline)   # a fresh timeout
                    else:
                        fd = _sio_sock_fd(self._sock)
                continue
            if r == _SIO_AGAIN:
                return 1
            if r == _SIO_TIMEDOUT:
                if self._wdl > 0.0 and wdeadline == self._wdl:
                    self._wtimed_out = True
                raise_timeout()
            if err != EINTR:
                raise_errno(err)
            check_signals()                 # PEP 475: retry after handlers
            fd = _sio_sock_fd(self._sock)
        return 0

    cdef int _send_green_wait(self, int fd, double *gdeadline, bint overall) except -1:
        # A GreenSocket's send would block: wait in the hub under the
        # user's timeout (*gdeadline: -1.0 not armed yet; armed once for a
        # sendall(), afresh for each wait otherwise, as each wait precedes
        # one send) and write_timeout.  1: the user made the socket
        # non-blocking, do not wait.
        cdef object timeout
        cdef double dl
        if gdeadline[0] < 0.0 or not overall:
            timeout = (<object>self._sock)._fastsock_timeout
            if timeout is None:
                gdeadline[0] = 0.0
            elif <double>timeout <= 0.0:
                return 1
            else:
                gdeadline[0] = fs_monotonic() + <double>timeout
        dl = gdeadline[0]
        if self._write_timeout > 0.0:
            if self._wdl == 0.0:
                self._wdl = fs_monotonic() + self._write_timeout
            if dl == 0.0 or self._wdl < dl:
                dl = self._wdl
        if not (<Hub>self._hub)._wait(fd, True, dl):
            if self._wdl > 0.0 and dl == self._wdl:
                self._wtimed_out = True
            raise_timeout()
        return 0

    cdef int _send_slow(self, const char *data, Py_ssize_t n, Py_ssize_t keep,
                        Py_ssize_t *progress) except -1:
        cdef object view
        cdef object got
        cdef object timeout = None
        cdef Py_ssize_t r
        cdef double left
        cdef bint narrowed
        while n - progress[0] > keep:
            view = PyMemoryView_FromMemory(<char *>data + progress[0],
                                           n - progress[0], PyBUF_READ)
            narrowed = False
            try:
                if self._write_timeout > 0.0:
                    # Not a plain socket (TLS): its own timeout waits, so
                    # shorten it to what is left of the call's write_timeout.
                    if self._wdl == 0.0:
                        self._wdl = fs_monotonic() + self._write_timeout
                    left = self._wdl - fs_monotonic()
                    if left <= 0.0:
                        self._wtimed_out = True
                        raise_timeout()
                    timeout = self._sock.gettimeout()
                    if timeout is None or (timeout > 0.0 and timeout > left):
                        self._sock.settimeout(left)
                        narrowed = True
                try:
                    got = self._sock.send(view)
                except InterruptedError:
                    continue
                except TimeoutError:
                    if narrowed:
                        self._wtimed_out = True
                    raise
                except OSError as exc:
                    if exc.errno in _sio_blocking_errnos:
                        return 1
                    raise
                finally:
                    if narrowed:
                        self._sock.settimeout(timeout)
            finally:
                try:
                    view.release()
                except BufferError:
                    pass
            r = got
            if r < 0 or r > n - progress[0]:
                raise OSError("raw write() returned invalid length %d (should "
                              "have been between 0 and %d)" % (r, n - progress[0]))
            progress[0] += r
            self._nwritten += r
            if n - progress[0] > keep:
                check_signals()
        return 0

    cdef int _flush_unlocked(self) except -1:
        if self._start < self._end:
            if self._send(self._buf, self._end, 0, False, &self._start):
                raise BlockingIOError(EAGAIN, "write could not complete without "
                                      "blocking", 0)
        self._start = 0
        self._end = 0
        return 0

    # -- writing -------------------------------------------------------------

    def write(self, b):
        """Write the bytes-like b and return its length in bytes.
        Unbuffered: all of it is sent before this returns."""
        cdef Py_buffer view
        cdef Py_ssize_t progress = 0
        PyObject_GetBuffer(b, &view, PyBUF_SIMPLE)
        try:
            if self._closed:
                raise ValueError("write to closed file")
            self._enter()
            try:
                self._wdl = 0.0         # a new call: write_timeout starts afresh
                if self._bufsize:
                    return self._write_buffered(<const char *>view.buf, view.len)
                if view.len == 0 and self._fast and self._end <= self._start:
                    # sendall(b"") still makes one send(): a peer that has
                    # gone is reported (BrokenPipeError...), as the stdlib does.
                    return self._send_empty()
                if self._reader is not None:
                    self._write_coalesced(<const char *>view.buf, view.len)
                    return view.len
                if not self._fast and self._write_timeout == 0.0:
                    if self._wtimed_out:
                        raise_timeout()
                    self._sock.sendall(b)
                    self._nwritten += view.len
                elif self._send(<const char *>view.buf, view.len, 0, True, &progress):
                    raise_errno(EAGAIN)     # what sendall() raises
                return view.len
            finally:
                self._leave()
        finally:
            PyBuffer_Release(&view)

    # -- write coalescing (unbuffered, linked to the handler's rfile) --------
    #
    # A write is held back only while the reader still has unread input: the
    # handler is working through pipelined requests and will reply to the
    # next one at once.  Held-back bytes go out, in one send, when the reader
    # next needs the socket, on flush()/close(), when _PEND_MAX would be
    # exceeded, on the next write made with no input left, or after
    # fastsock._flusher.DELAY if the handler pauses.

    cdef int _send_empty(self) except -1:
        cdef int err = 0
        cdef char nothing = 0
        if self._wtimed_out:
            raise_timeout()
        while True:
            if _sio_try(_sio_sock_fd(self._sock), &nothing, 0, 0, True, &err) != _SIO_ERROR:
                return 0
            if err != EINTR:
                raise_errno(err)
            check_signals()

    cdef int _write_coalesced(self, const char *data, Py_ssize_t n) except -1:
        cdef SocketReader reader = <SocketReader>self._reader
        cdef Py_ssize_t held = self._end - self._start, progress = 0
        if held + n <= _PEND_MAX and reader._readahead() > 0 and not reader._closed:
            self._hold(data, n)
            return 0
        if held and held + n <= _PEND_MAX:
            self._hold(data, n)     # one send for both
            return self._send_held()
        if held:
            self._send_held()
        if self._send(data, n, 0, True, &progress):
            raise_errno(EAGAIN)     # what sendall() raises
        return 0

    cdef int _hold(self, const char *data, Py_ssize_t n) except -1:
        cdef char *grown
        cdef Py_ssize_t cap
        if self._start == self._end:
            self._start = self._end = 0
            self._psince = fs_monotonic()
            (<SocketReader>self._reader)._peer_pending = True
            _sio_flusher_register(self)
        if self._end + n > self._pcap:
            cap = max(self._end + n, 2 * self._pcap, 4096)
            grown = <char *>PyMem_Realloc(self._buf, cap)
            if grown == NULL:
                raise MemoryError()
            self._buf = grown
            self._pcap = cap
        memcpy(self._buf + self._end, data, n)
        self._end += n
        return 0

    cdef int _send_held(self) except -1:
        # Blocking (per the socket's timeout) until all of it is sent.
        if self._end > self._start:
            if self._send(self._buf, self._end, 0, True, &self._start):
                raise_errno(EAGAIN)
        self._start = self._end = 0
        if self._reader is not None:
            (<SocketReader>self._reader)._peer_pending = False
        return 0

    def _flush_pending(self):
        """Send what is held back (the reader calls this before it waits)."""
        self._enter()
        try:
            self._wdl = 0.0
            self._send_held()
        finally:
            self._leave()

    def _flush_stale(self, double cutoff):
        """For the flusher thread: send held-back bytes waiting since before
        *cutoff*, without blocking and without waiting for the writer's lock.
        True when nothing is held back any more."""
        cdef Py_ssize_t r
        cdef int err = 0
        if self._end <= self._start or self._wtimed_out:
            return True
        if self._psince > cutoff:
            return False
        if not PyThread_acquire_lock(self._lock, NOWAIT_LOCK):
            return False    # the handler is writing: it sends them itself
        try:
            fd = self._sock.fileno()
            while self._end > self._start:
                r = _sio_try(fd, self._buf + self._start,
                             <size_t>(self._end - self._start), 0, True, &err)
                if r < 0:
                    # Would block, or failed: the handler's next read, write
                    # or flush sends them (and reports any error).
                    return False
                self._start += r
                self._nwritten += r
            self._start = self._end = 0
            if self._reader is not None:
                (<SocketReader>self._reader)._peer_pending = False
            return True
        finally:
            PyThread_release_lock(self._lock)

    cdef Py_ssize_t _write_buffered(self, const char *data, Py_ssize_t size) except -1:
        cdef Py_ssize_t bufsize = self._bufsize
        cdef Py_ssize_t pending, avail, remaining, progress = 0
        # Data beyond keep bytes is sent rather than buffered.
        cdef Py_ssize_t keep = bufsize - 1 if _SIO_SEND_FULL_BLOCKS else bufsize
        if self._start == self._end:
            self._start = 0
            self._end = 0
        if size <= bufsize - self._end and size <= keep:
            memcpy(self._buf + self._end, data, size)
            self._end += size
            return size
        try:
            self._flush_unlocked()
        except BlockingIOError:
            # Make room by shifting the pending bytes; keep as much as fits.
            pending = self._end - self._start
            memmove(self._buf, self._buf + self._start, pending)
            self._start = 0
            self._end = pending
            avail = bufsize - pending
            if size <= avail:
                memcpy(self._buf + pending, data, size)
                self._end += size
                return size
            memcpy(self._buf + pending, data, avail)
            self._end = bufsize
            raise BlockingIOError(EAGAIN, "write could not complete without "
                                  "blocking", avail) from None
        # The buffer is empty: send all but the last partial block directly.
        if self._send(data, size, keep, False, &progress) and size - progress > bufsize:
            memcpy(self._buf, data + progress, bufsize)
            self._end = bufsize
            raise BlockingIOError(EAGAIN, "write could not complete without "
                                  "blocking", progress + bufsize)
        remaining = size - progress
        memcpy(self._buf, data + progress, remaining)
        self._start = 0
        self._end = remaining
        return size

    def writelines(self, lines):
        """Write every bytes-like object of the iterable lines."""
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        for line in lines:
            self.write(line)

    def flush(self):
        """Send everything buffered (when unbuffered: anything held back)."""
        if not self._bufsize:
            if self._closed:
                raise ValueError("I/O operation on closed file.")
            if self._end > self._start:
                self._flush_pending()
            return
        if self._closed:
            raise ValueError("flush of closed file")
        self._enter()
        try:
            self._wdl = 0.0
            self._flush_unlocked()
        finally:
            self._leave()

    def close(self):
        """Flush (when buffered) and close the writer; the socket itself is
        closed only once it and all its files are closed."""
        if self._closed:
            return
        try:
            if self._wtimed_out:
                pass    # the peer stopped reading: drop what is left
            elif self._bufsize:
                self.flush()
            elif self._end > self._start:
                try:
                    self._flush_pending()
                except OSError:
                    # Like the stdlib writer's close(), this never raises for
                    # a broken connection; finish() has flushed already.
                    pass
        finally:
            self._closed = True
            self._drop_ref()
            if self._reader is not None:
                (<SocketReader>self._reader)._writer = None
                (<SocketReader>self._reader)._peer_pending = False
                self._reader = None
            self._start = self._end = 0

    @property
    def mode(self):
        return "wb"

    @property
    def write_timeout(self):
        """Seconds one write()/flush()/close() may wait in all, or None."""
        return _sio_seconds_value(self._write_timeout)

    @property
    def bytes_written(self):
        """Bytes the socket has taken so far (fastsock extra)."""
        return self._nwritten

    def fileno(self):
        if self._bufsize and self._closed:
            raise ValueError("I/O operation on closed file.")
        return self._sock.fileno()

    def isatty(self):
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        return False

    def readable(self):
        if self._bufsize and self._closed:
            raise ValueError("I/O operation on closed socket.")
        return False

    def writable(self):
        if self._bufsize and self._closed:
            raise ValueError("I/O operation on closed socket.")
        return True

    def seekable(self):
        if self._bufsize and self._closed:
            raise ValueError("I/O operation on closed socket.")
        return False

    def read(self, n=-1, /):
        raise _sio_unsupported("read")

    def read1(self, n=-1, /):
        raise _sio_unsupported("read1")

    def readinto(self, b, /):
        raise _sio_unsupported("read")

    def readline(self, limit=-1, /):
        raise _sio_unsupported("read")

    def __enter__(self):
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        return self


io.BufferedIOBase.register(SocketReader)
io.BufferedIOBase.register(SocketWriter)
