"""Socket streams, pure-Python twin of the compiled ones in ``fastsock._core``.

``SocketReader`` is what ``StreamRequestHandler.rfile`` is: it gives the same
results as ``sock.makefile('rb', bufsize)`` (an ``io.BufferedReader`` over
``socket.SocketIO``, or the bare ``SocketIO`` when *bufsize* is 0) for every
chunking of the input, with its own buffer over ``sock.recv_into``.

``SocketWriter`` is what ``StreamRequestHandler.wfile`` is: with *bufsize* 0
the stdlib's ``socketserver._SocketWriter`` (every byte is sent before
``write()`` returns); otherwise ``sock.makefile('wb', bufsize)`` (writes are
buffered and sent on overflow, ``flush()`` and ``close()``).

The algorithms (buffer states, when the socket is read or written, what an
error or a timeout leaves behind) are those of ``_io.BufferedReader`` /
``_io.BufferedWriter`` and ``socket.SocketIO``; ``_core_io.pxi`` is the
compiled version of this file, kept in step with it.

``SocketReader``'s limits (*max_line*, *line_timeout*, *idle_timeout*) follow
the compiled reader's algorithm, except that the wait itself is the socket's:
its timeout is narrowed to the call's deadline for each ``recv_into()``.
"""
import errno as _errno
import io
import math as _math
import operator as _operator
from os import name as _os_name, write as _os_write
import socket as _socket
import sys as _sys
from _thread import allocate_lock as _allocate_lock, get_ident as _get_ident

__all__ = ["SocketReader", "SocketWriter"]

_DEFAULT_BUFFER_SIZE = io.DEFAULT_BUFFER_SIZE
_GROW_MAX = 65536           # a reader's own buffer grows to at most this
_BLOCKING_ERRNOS = frozenset({_errno.EAGAIN, _errno.EWOULDBLOCK})
_MSG_PEEK = getattr(_socket, "MSG_PEEK", 2)
_SOCKET = _socket.socket
# A greenlet server's connection: its methods wait in the hub by themselves,
# so the plain socket's paths serve it unchanged.
from ._green_socket import GreenSocket as _GreenSocket
_FAST_TYPES = (_SOCKET, _GreenSocket)
_MSG_DONTWAIT = getattr(_socket, "MSG_DONTWAIT", 0)
_POSIX = _os_name == "posix"     # os.write() works on a socket's descriptor
# Most bytes an unbuffered writer holds back while coalescing.
_PEND_MAX = 65536
# _recv_once(): EINTR, retry.
_INTERRUPTED = object()

from time import monotonic as _monotonic

from ._errors import LineTooLong
from ._flusher import register as _flusher_register
_UnsupportedOperation = io.UnsupportedOperation
# Since CPython 3.13 (gh-117151) BufferedWriter.write() sends a write of at
# least the buffer size directly instead of buffering exactly one buffer's
# worth; the writer follows the running interpreter's makefile().
_SEND_FULL_BLOCKS = _sys.version_info >= (3, 13)


def _size_arg(value):
    # The conversion of io's "Py_ssize_t(accept={int, NoneType})" arguments.
    if value is None:
        return -1
    try:
        index = value.__index__
    except AttributeError:
        raise TypeError("argument should be integer or None, not '%s'"
                        % type(value).__name__) from None
    return index()


def _bufsize_arg(bufsize, default):
    if bufsize is None:
        return default
    bufsize = _size_arg(bufsize)
    return _DEFAULT_BUFFER_SIZE if bufsize < 0 else bufsize


def _max_line_arg(value):
    # SocketReader's max_line: -1 for None, else an integer >= 1.
    if value is None:
        return -1
    n = _operator.index(value)
    if n < 1:
        raise ValueError("max_line must be a positive integer or None")
    return n


def _seconds_arg(value, name):
    # SocketReader's line_timeout/idle_timeout: 0.0 for None, else a real
    # number > 0 (inf: no limit in practice).
    if value is None:
        return 0.0
    _math.isfinite(value)       # the type check of a C double argument
    t = float(value)
    if not t > 0.0:             # also NaN
        raise ValueError("%s must be a positive number or None" % name)
    return t


def _writable_view(b, name):
    try:
        view = memoryview(b)
    except TypeError:
        raise TypeError("%s() argument must be read-write bytes-like object, "
                        "not %s" % (name, type(b).__name__)) from None
    if view.readonly or not view.c_contiguous:
        view.release()
        raise TypeError("%s() argument must be read-write bytes-like object, "
                        "not %s" % (name, type(b).__name__))
    if view.format != "B" or view.ndim != 1:
        cast = view.cast("B")
        view.release()
        view = cast
    return view


class _Locked:
    """Serialise the operations of one stream, like io's buffered objects.

    A second thread waits; a reentrant call from the same thread (a signal
    handler using the stream it interrupted) raises RuntimeError."""

    __slots__ = ()

    def _enter(self):
        if not self._lock.acquire(False):
            if self._owner == _get_ident():
                raise RuntimeError("reentrant call inside %r" % (self,))
            self._lock.acquire()
        self._owner = _get_ident()

    def _leave(self):
        self._owner = 0
        self._lock.release()


class SocketReader(_Locked):
    """SocketReader(sock, bufsize=-1, *, max_line=None, line_timeout=None, idle_timeout=None)

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

    __slots__ = ("_sock", "_fast", "_bufsize", "_buf", "_view", "_pos", "_end",
                 "_closed", "_timed_out", "_ref", "_lock", "_owner", "_writer",
                 "_peer_pending", "_max_line", "_line_timeout", "_idle_timeout",
                 "_limited", "_dl_call", "_dl_idle", "_nread", "_grow", "_was_full",
                 "__weakref__")

    def __init__(self, sock, bufsize=-1, *, max_line=None, line_timeout=None,
                 idle_timeout=None):
        size = _bufsize_arg(bufsize, _DEFAULT_BUFFER_SIZE)
        # A size left to the reader (None or negative) may grow while
        # refills come back full, up to _GROW_MAX (as in the compiled core).
        self._grow = bufsize is None or _size_arg(bufsize) < 0
        self._was_full = False      # the last whole-buffer refill filled it
        bufsize = size
        # Limits (see the class docstring).  Durations are 0.0 when unset.
        self._max_line = _max_line_arg(max_line)
        self._line_timeout = _seconds_arg(line_timeout, "line_timeout")
        self._idle_timeout = _seconds_arg(idle_timeout, "idle_timeout")
        self._limited = self._line_timeout > 0.0 or self._idle_timeout > 0.0
        self._dl_call = 0.0     # deadline of the current call (0.0: none)
        self._dl_idle = 0.0     # deadline for its first byte (0.0: none, or got it)
        self._sock = sock
        self._fast = type(sock) in _FAST_TYPES
        self._bufsize = bufsize
        # Unbuffered readers use the buffer only as scratch space for peeking.
        self._buf = bytearray(bufsize or _DEFAULT_BUFFER_SIZE)
        self._view = memoryview(self._buf)
        self._pos = 0
        self._end = -1          # -1: the buffer holds nothing valid
        self._closed = False
        self._timed_out = False
        self._lock = _allocate_lock()
        self._owner = 0
        self._ref = False
        self._writer = None         # the SocketWriter coalescing with us
        self._peer_pending = False  # it holds back bytes: send them before recv
        self._nread = 0             # bytes received (peeks not counted)
        # Only a socket.socket counts its files (a test double's attribute
        # may be anything).
        if isinstance(sock, _socket.socket):
            sock._io_refs += 1
            self._ref = True

    # -- raw socket reads (socket.SocketIO.readinto) ------------------------

    def _recv_into(self, view, flags=0):
        """One read from the socket into *view*: the byte count (0 at EOF),
        or None if a non-blocking socket has nothing."""
        if self._timed_out:
            raise OSError("cannot read from timed out object")
        size = len(view)
        if not size:
            return 0
        if self._peer_pending:
            # The handler has used up its input: what its wfile held back
            # goes out before we wait for more.
            self._writer._flush_pending()
        if self._limited:
            return self._recv_into_limited(view, size, flags)
        while True:
            n = self._recv_once(view, size, flags)
            if n is not _INTERRUPTED:
                return n

    def _recv_once(self, view, size, flags):
        """sock.recv_into() as socket.SocketIO.readinto() makes it: the byte
        count, None if a non-blocking socket has nothing, _INTERRUPTED on
        EINTR (the caller retries); a timeout marks the reader timed out."""
        try:
            if flags:
                n = self._sock.recv_into(view, size, flags)
            else:
                n = self._sock.recv_into(view)
        except TimeoutError:
            self._timed_out = True
            raise
        except InterruptedError:
            return _INTERRUPTED
        except OSError as exc:
            if exc.errno in _BLOCKING_ERRNOS:
                return None
            raise
        if not 0 <= n <= size:
            raise OSError("raw readinto() returned invalid length %d "
                          "(should have been between 0 and %d)" % (n, size))
        if not flags & _MSG_PEEK:
            self._nread += n
        return n

    def _recv_into_limited(self, view, size, flags):
        # _recv_into() within the call's deadlines (line_timeout/idle_timeout):
        # the socket waits by itself, so its timeout is shortened to the
        # deadline for each recv_into().
        limit = self._call_deadline()
        sock = self._sock
        timeout = None
        narrowed = False
        try:
            while True:
                if limit > 0.0:
                    left = limit - _monotonic()
                    if left <= 0.0:
                        self._timed_out = True
                        raise TimeoutError("timed out")
                    if not narrowed:
                        timeout = sock.gettimeout()
                    if timeout is None or 0.0 < left < timeout:
                        sock.settimeout(left)
                        narrowed = True
                n = self._recv_once(view, size, flags)
                if n is not _INTERRUPTED:
                    break
        finally:
            if narrowed:
                sock.settimeout(timeout)
        if n is not None:
            self._dl_idle = 0.0     # the call is no longer waiting for its first byte
        return n

    def _begin(self):
        """Start a read call: take the lock (release it with _leave()) and
        arm the call's deadlines."""
        self._enter()
        if self._limited:
            self._arm()

    def _arm(self):
        """Start the deadlines of a read call that may wait for data (call
        with the lock held, when a duration is set)."""
        now = _monotonic()
        self._dl_call = now + self._line_timeout if self._line_timeout > 0.0 else 0.0
        self._dl_idle = (now + self._idle_timeout
                         if self._idle_timeout > 0.0 and self._readahead() == 0
                         else 0.0)

    def _call_deadline(self):
        """The deadline for the next recv of this call (0.0: none); raises
        TimeoutError once it has passed, whether or not data is waiting."""
        dl = self._dl_call
        if self._dl_idle > 0.0 and (dl == 0.0 or self._dl_idle < dl):
            dl = self._dl_idle
        if dl > 0.0 and _monotonic() >= dl:
            self._timed_out = True
            raise TimeoutError("timed out")
        return dl

    def _raw_readall(self):
        """RawIOBase.readall(): read until EOF; None if nothing could be
        read without blocking."""
        chunks = []
        view = self._view
        while True:
            n = self._recv_into(view)
            if n is None:
                if not chunks:
                    return None
                break
            if not n:
                break
            chunks.append(self._buf[:n])
        return b"".join(chunks)

    def _fill(self):
        """Read once into the free end of the buffer (all of it when it holds
        nothing valid); the byte count, 0 at EOF, None if it would block.
        A buffer that nothing valid is in, last filled to the brim, is first
        doubled if it may grow (callers re-read self._buf after this)."""
        start = self._end if self._end >= 0 else 0
        if start == 0 and self._was_full and self._grow and self._bufsize < _GROW_MAX:
            self._bufsize *= 2
            self._buf = bytearray(self._bufsize)
            self._view = memoryview(self._buf)
        n = self._recv_into(self._view[start:self._bufsize])
        if n:
            self._end = start + n
        if start == 0:
            self._was_full = n == self._bufsize
        return n

    def _recv_bytes(self, n, flags=0):
        """One read of up to n bytes from the socket, as bytes (b'' at EOF);
        None if a non-blocking socket has nothing."""
        buf = bytearray(n)
        got = self._recv_into(memoryview(buf), flags)
        if got is None:
            return None
        del buf[got:]
        return bytes(buf)

    def _readahead(self):
        return self._end - self._pos if self._end >= 0 else 0

    def _take(self, n):
        pos = self._pos
        self._pos = pos + n
        return bytes(self._view[pos:pos + n])

    def _check_closed(self, message):
        if self._closed:
            raise ValueError(message if self._bufsize
                             else "I/O operation on closed file.")

    # -- reading -------------------------------------------------------------

    def read(self, n=-1, /):
        """Read up to n bytes (all until EOF when n is -1 or None); fewer only
        at EOF, or when a non-blocking socket has no more (None if none)."""
        n = _size_arg(n)
        if self._bufsize and n < -1:
            raise ValueError("read length must be non-negative or -1")
        self._check_closed("read of closed file")
        self._begin()
        try:
            if not self._bufsize:
                if n < 0:
                    return self._raw_readall()
                return self._recv_bytes(n)
            if n == -1:
                return self._read_all()
            if n <= self._readahead():
                return self._take(n)
            return self._read_generic(n)
        finally:
            self._leave()

    def _read_all(self):
        have = self._readahead()
        data = self._take(have) if have else None
        self._end = -1
        rest = self._raw_readall()
        if data is None:
            return rest
        if rest is not None:
            data += rest
        return data

    def _read_generic(self, n):
        have = self._readahead()
        out = bytearray(n)
        view = memoryview(out)
        written = 0
        if have:
            view[:have] = self._view[self._pos:self._end]
            self._pos += have
            written = have
        remaining = n - written
        bufsize = self._bufsize
        self._end = -1
        # Whole blocks go straight into the result, the last partial block
        # through the buffer.
        while remaining > 0:
            chunk = bufsize * (remaining // bufsize)
            if not chunk:
                break
            got = self._recv_into(view[written:written + chunk])
            if not got:
                return self._short_read(view, written, got)
            remaining -= got
            written += got
        self._pos = 0
        self._end = 0
        while remaining > 0 and self._end < bufsize:
            got = self._fill()
            if not got:
                return self._short_read(view, written, got)
            if got > remaining:
                got = remaining
            view[written:written + got] = self._view[self._pos:self._pos + got]
            written += got
            self._pos += got
            remaining -= got
        return bytes(out)

    @staticmethod
    def _short_read(view, written, got):
        # read(n) stopped early by EOF (got 0) or a socket with nothing more
        # (got None): what it has, or None if nothing and the socket would block.
        if got == 0 or written:
            return bytes(view[:written])
        return None

    def read1(self, n=-1, /):
        """Read up to n bytes with at most one read from the socket: the
        buffered bytes if there are any, else what one read returns."""
        n = _operator.index(n)
        if n < 0:
            n = self._bufsize or _DEFAULT_BUFFER_SIZE
        self._check_closed("read of closed file")
        if n == 0:
            return b""
        self._begin()
        try:
            have = self._readahead()
            if have > 0:
                return self._take(min(have, n))
            self._end = -1
            return self._recv_bytes(n) or b""
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

    def _readinto(self, b, one, name):
        view = _writable_view(b, name)
        with view:
            self._check_closed("readinto of closed file")
            self._begin()
            try:
                if not self._bufsize:
                    return self._recv_into(view)
                return self._readinto_buffered(view, one)
            finally:
                self._leave()

    def _readinto_buffered(self, view, one):
        size = len(view)
        have = self._readahead()
        written = 0
        if have > 0:
            if have >= size:
                view[:] = self._view[self._pos:self._pos + size]
                self._pos += size
                return size
            view[:have] = self._view[self._pos:self._end]
            self._pos += have
            written = have
        bufsize = self._bufsize
        self._end = -1
        self._pos = 0
        remaining = size - written
        while remaining > 0:
            if remaining > bufsize:
                got = self._recv_into(view[written:])
            elif not (one and written):
                got = self._fill()
                if got:
                    if got > remaining:
                        got = remaining
                    view[written:written + got] = self._view[self._pos:self._pos + got]
                    self._pos += got
                    written += got
                    remaining -= got
                    continue
            else:
                got = 0
            if got == 0 or (got is None and written):
                break
            if got is None:
                return None
            written += got
            remaining -= got
            if one:
                break
        return written

    def peek(self, n=0, /):
        """Return buffered bytes without consuming them, reading the socket
        once if nothing is buffered (unbuffered: one MSG_PEEK read of up to
        n bytes, or io.DEFAULT_BUFFER_SIZE when n <= 0)."""
        n = _operator.index(n)
        self._check_closed("peek of closed file")
        self._begin()
        try:
            if not self._bufsize:
                return self._recv_bytes(n if n > 0 else _DEFAULT_BUFFER_SIZE,
                                        _MSG_PEEK) or b""
            have = self._readahead()
            if have > 0:
                return bytes(self._view[self._pos:self._end])
            self._end = -1
            got = self._fill() or 0
            self._pos = 0
            return bytes(self._view[:got])
        finally:
            self._leave()

    # Arguments by position only, as makefile's BufferedReader and the
    # compiled core take them.
    def readline(self, limit=-1, /):
        """Read up to and including the next b'\\n', at most limit bytes when
        limit >= 0; what remains at EOF (b'' at EOF)."""
        limit = _size_arg(limit)
        self._check_closed("readline of closed file")
        if self._max_line >= 0 and (limit < 0 or limit > self._max_line):
            return self._readline_capped()
        self._begin()
        try:
            if not self._bufsize:
                return self._readline_unbuffered(limit)
            return self._readline(limit)
        finally:
            self._leave()

    def _readline_capped(self):
        # Read at most max_line bytes; more without a newline: too long.
        limit = self._max_line
        self._begin()
        try:
            if not self._bufsize:
                line = self._readline_unbuffered(limit)
            else:
                if (self._readahead() > limit
                        and self._buf.find(b"\n", self._pos, self._pos + limit) < 0):
                    self._pos += limit
                    self._line_too_long()
                line = self._readline(limit)
            if len(line) == limit and line[limit - 1] != 10 and self._more_input():
                self._line_too_long()
            return line
        finally:
            self._leave()

    def _line_too_long(self):
        raise LineTooLong("line longer than %d bytes (max_line)" % self._max_line)

    def _more_input(self):
        """After max_line bytes of a line without a newline: does at least
        one more byte follow?  Waits for it (or EOF) as readline would; a
        non-blocking socket without it says no.  Buffered, the byte stays
        buffered; unbuffered, it is peeked (read, where peeking is not
        possible)."""
        if self._bufsize:
            if self._readahead() > 0:
                return True
            self._end = -1
            n = self._fill()
            self._pos = 0
            return bool(n)
        n = self._recv_into(self._view[:1], _MSG_PEEK if self._fast else 0)
        return bool(n)

    def _readline(self, limit):
        buf = self._buf
        pos = self._pos
        n = self._readahead()
        if 0 <= limit < n:
            n = limit
        i = buf.find(b"\n", pos, pos + n)
        if i >= 0:
            return self._take(i + 1 - pos)
        if n == limit:
            return self._take(n)
        chunks = []
        if n > 0:
            chunks.append(self._take(n))
            if limit >= 0:
                limit -= n
        while True:
            self._end = -1
            n = self._fill()
            if not n:
                break
            buf = self._buf             # (it may have grown)
            if 0 <= limit < n:
                n = limit
            i = buf.find(b"\n", 0, n)
            if i >= 0:
                self._pos = 0
                chunks.append(self._take(i + 1))
                break
            self._pos = 0
            chunks.append(self._take(n))
            if n == limit:
                break
            if limit >= 0:
                limit -= n
            self._end = -1
        return b"".join(chunks)

    def _readline_unbuffered(self, limit):
        # Never consume past the newline: peek to find it, then take exactly
        # the bytes up to it.  Sockets that cannot peek are read one byte at
        # a time, as io.IOBase.readline() reads a raw SocketIO.
        line = bytearray()
        view = self._view
        cap = len(view)
        while limit < 0 or len(line) < limit:
            want = cap if limit < 0 else min(cap, limit - len(line))
            if self._fast:
                got = self._recv_into(view[:want], _MSG_PEEK)
                if got:
                    i = self._buf.find(b"\n", 0, got)
                    want = got if i < 0 else i + 1
                    got = self._recv_into(view[:want])
            else:
                want = 1
                got = self._recv_into(view[:1])
            if got is None:
                raise OSError("read() should have returned a bytes object, "
                              "not 'NoneType'")
            if not got:
                break
            line += view[:got]
            if self._buf[got - 1] == 10 and got == want:
                break
        return bytes(line)

    def readlines(self, hint=-1, /):
        """Read lines until EOF, or until their total length exceeds hint
        when hint > 0."""
        hint = _size_arg(hint)
        if hint <= 0:
            return list(self)
        lines = []
        length = 0
        for line in self:
            lines.append(line)
            if len(line) > hint - length:
                break
            length += len(line)
        return lines

    def __iter__(self):
        self._check_closed("I/O operation on closed file.")
        return self

    def __next__(self):
        line = self.readline()
        if not line:
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
        if self._ref:
            self._ref = False
            self._sock._decref_socketios()

    def __del__(self):
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    @property
    def closed(self):
        return self._closed

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
        return self._line_timeout if self._line_timeout > 0.0 else None

    @property
    def idle_timeout(self):
        """Seconds a call may wait for its first byte, or None."""
        return self._idle_timeout if self._idle_timeout > 0.0 else None

    @property
    def bytes_read(self):
        """Bytes received from the socket so far (fastsock extra; bytes
        only peeked at are not counted)."""
        return self._nread

    @property
    def name(self):
        return -1 if self._closed else self._sock.fileno()

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

    def seek(self, pos, whence=0):
        raise _UnsupportedOperation("seek")

    def tell(self):
        raise _UnsupportedOperation("seek")

    def truncate(self, pos=None):
        raise _UnsupportedOperation("truncate")

    def write(self, b):
        raise _UnsupportedOperation("write")

    def writelines(self, lines):
        raise _UnsupportedOperation("write")

    def detach(self):
        raise _UnsupportedOperation("detach")

    def __enter__(self):
        self._check_closed("I/O operation on closed file.")
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "<%s.%s name=%r>" % (type(self).__module__,
                                    type(self).__qualname__, self.name)

    def __reduce__(self):
        raise TypeError("cannot pickle '%s' object" % type(self).__name__)


class SocketWriter(_Locked):
    """SocketWriter(sock, bufsize=0, reader=None, *, write_timeout=None)

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

    __slots__ = ("_sock", "_fast", "_bufsize", "_buf", "_start", "_end",
                 "_closed", "_ref", "_lock", "_owner", "_reader", "_psince",
                 "_write_timeout", "_wdl", "_wtimed_out", "_nwritten",
                 "__weakref__")

    def __init__(self, sock, bufsize=0, reader=None, *, write_timeout=None):
        self._write_timeout = _seconds_arg(write_timeout, "write_timeout")
        self._wdl = 0.0             # deadline of the current call (0.0: not armed)
        self._wtimed_out = False    # write_timeout expired: refuse to send again
        self._nwritten = 0          # bytes the socket has taken
        bufsize = _bufsize_arg(bufsize, _DEFAULT_BUFFER_SIZE)
        self._reader = None
        self._psince = 0.0
        self._sock = sock
        self._fast = type(sock) in _FAST_TYPES
        self._bufsize = bufsize
        self._buf = bytearray(bufsize) if bufsize else None
        self._start = 0         # pending bytes are _buf[_start:_end]
        self._end = 0
        self._closed = False
        self._lock = _allocate_lock()
        self._owner = 0
        self._ref = False
        if bufsize and isinstance(sock, _socket.socket):
            sock._io_refs += 1
            self._ref = True
        elif (not bufsize and reader is not None and self._fast
                and type(reader) is SocketReader and reader._sock is sock
                and reader._writer is None):
            self._reader = reader
            reader._writer = self
            self._buf = bytearray()     # held-back bytes are _buf[_start:]

    # -- raw socket writes ---------------------------------------------------

    def _send_now(self, view):
        """For a plain socket with a timeout: send what it takes right now,
        without waiting (the byte count, 0 if it would block).  The core
        tries every send this way before it waits: CPython's send() and
        sendall() with a timeout poll first, and poll() reports an AF_UNIX
        socket writable only while at most a quarter of its send buffer is in
        use (TCP: a third free), so they would wait -- and could time out --
        with room left in the buffer."""
        # Not send(view, MSG_DONTWAIT): with a timeout, CPython polls before
        # any send, whatever the flags.  A socket with a timeout has its
        # descriptor in non-blocking mode (settimeout() sets it), so a plain
        # write() on it is that send(): no poll, no wait, EAGAIN when full.
        try:
            return _os_write(self._sock.fileno(), view)
        except BlockingIOError:
            return 0

    def _polls_first(self):
        # A socket with a timeout > 0: its send()/sendall() poll first.
        if not self._fast or not _POSIX:
            return False
        timeout = self._sock.gettimeout()
        return timeout is not None and timeout > 0.0

    def _send(self, view):
        """One send (socket.SocketIO.write): the byte count, or None if a
        non-blocking socket cannot take any."""
        if self._wtimed_out:
            raise TimeoutError("timed out")
        if self._polls_first():
            n = self._send_now(view)
            if n:
                self._nwritten += n
                return n
        n = self._send_limited(view) if self._write_timeout else self._send_waiting(view)
        if n is None:
            return None
        if not 0 <= n <= len(view):
            raise OSError("raw write() returned invalid length %d "
                          "(should have been between 0 and %d)" % (n, len(view)))
        self._nwritten += n
        return n

    def _send_waiting(self, view):
        # sock.send(), retried on EINTR: the count, or None if it would block.
        while True:
            try:
                return self._sock.send(view)
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno in _BLOCKING_ERRNOS:
                    return None
                raise

    def _send_limited(self, view):
        # _send_waiting() within the call's write_timeout (armed when the
        # call first has to wait, as in the core): the socket waits by
        # itself, so its timeout is shortened to what is left of it.
        sock = self._sock
        if self._wdl == 0.0:
            self._wdl = _monotonic() + self._write_timeout
        while True:
            left = self._wdl - _monotonic()
            if left <= 0.0:
                self._wtimed_out = True
                raise TimeoutError("timed out")
            timeout = sock.gettimeout()
            narrowed = timeout is None or 0.0 < left < timeout
            if narrowed:
                sock.settimeout(left)
            try:
                return sock.send(view)
            except TimeoutError:
                if narrowed:
                    self._wtimed_out = True
                raise
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno in _BLOCKING_ERRNOS:
                    return None
                raise
            finally:
                if narrowed:
                    sock.settimeout(timeout)

    def _sendall(self, view, b=None):
        """socket.sendall(), counting what is sent, within write_timeout, and
        trying the send without waiting first where the socket would poll
        (see _send_now).  b: the caller's object, given to a socket that is
        not a plain socket.socket as it is."""
        if self._wtimed_out:
            raise TimeoutError("timed out")
        if view.format != "B" or view.ndim != 1:
            view = view.cast("B")
        if self._write_timeout:
            pos = 0
            size = len(view)
            while pos < size:
                n = self._send(view[pos:])
                if n is None:
                    raise BlockingIOError(_errno.EAGAIN, "Resource temporarily unavailable")
                pos += n
            return
        if self._polls_first():
            sent = 0
            while sent < view.nbytes:
                n = self._send_now(view[sent:])
                if not n:
                    break
                sent += n
            self._nwritten += sent
            if sent == view.nbytes:
                return
            view = b = view[sent:]
        self._sock.sendall(view if b is None else b)
        self._nwritten += view.nbytes

    def _flush_unlocked(self):
        view = memoryview(self._buf)
        while self._start < self._end:
            n = self._send(view[self._start:self._end])
            if n is None:
                raise BlockingIOError(_errno.EAGAIN, "write could not complete "
                                      "without blocking", 0)
            self._start += n
        self._start = self._end = 0

    # -- writing -------------------------------------------------------------

    def write(self, b):
        """Write the bytes-like b and return its length in bytes.
        Unbuffered: all of it is sent before this returns."""
        with memoryview(b) as view:
            if not view.c_contiguous:
                raise BufferError("memoryview: underlying buffer is not "
                                  "C-contiguous")
            if self._closed:
                raise ValueError("write to closed file")
            if not self._bufsize:
                self._enter()
                try:
                    self._wdl = 0.0     # a new call: write_timeout starts afresh
                    if self._reader is not None:
                        self._write_coalesced(view)
                    else:
                        self._sendall(view, b)
                finally:
                    self._leave()
                return view.nbytes
            if view.format != "B" or view.ndim != 1:
                view = view.cast("B")
            self._enter()
            try:
                self._wdl = 0.0
                return self._write_buffered(view)
            finally:
                self._leave()

    # -- write coalescing (unbuffered, linked to the handler's rfile) --------
    #
    # A write is held back only while the reader still has unread input: the
    # handler is working through pipelined requests and will reply to the
    # next one at once.  Held-back bytes go out, in one send, when the reader
    # next needs the socket, on flush()/close(), when _PEND_MAX would be
    # exceeded, on the next write made with no input left, or after
    # fastsock._flusher.DELAY if the handler pauses.

    def _write_coalesced(self, view):
        reader = self._reader
        held = len(self._buf) - self._start
        n = view.nbytes
        if held + n <= _PEND_MAX and reader._readahead() > 0 and not reader._closed:
            self._hold(view)
            return
        if held and held + n <= _PEND_MAX:
            self._hold(view)        # one send for both
            self._send_held()
            return
        if held:
            self._send_held()
        self._sendall(view)

    def _hold(self, view):
        if self._start == len(self._buf):
            del self._buf[:]
            self._start = 0
            self._psince = _monotonic()
            self._reader._peer_pending = True
            _flusher_register(self)
        self._buf += view

    def _send_held(self):
        # Blocking (per the socket's timeout) until all of it is sent.
        buf = self._buf
        if self._start < len(buf):
            with memoryview(buf) as view:
                while self._start < len(buf):
                    n = self._send(view[self._start:])
                    if n is None:
                        raise BlockingIOError(_errno.EAGAIN, "Resource temporarily "
                                              "unavailable")
                    self._start += n
        del buf[:]
        self._start = 0
        if self._reader is not None:
            self._reader._peer_pending = False

    def _flush_pending(self):
        """Send what is held back (the reader calls this before it waits)."""
        self._enter()
        try:
            self._wdl = 0.0
            self._send_held()
        finally:
            self._leave()

    def _flush_stale(self, cutoff):
        """For the flusher thread: send held-back bytes waiting since before
        *cutoff*, without blocking and without waiting for the writer's lock.
        True when nothing is held back any more."""
        buf = self._buf
        if buf is None or self._start >= len(buf) or self._wtimed_out:
            return True
        if self._psince > cutoff:
            return False
        if not self._lock.acquire(False):
            return False    # the handler is writing: it sends them itself
        try:
            with memoryview(buf) as view:
                while self._start < len(buf):
                    try:
                        n = self._sock.send(view[self._start:], _MSG_DONTWAIT)
                    except OSError:
                        # Would block, or failed: the handler's next read,
                        # write or flush sends them (and reports any error).
                        return False
                    self._start += n
                    self._nwritten += n
            del buf[:]
            self._start = 0
            if self._reader is not None:
                self._reader._peer_pending = False
            return True
        finally:
            self._lock.release()

    def _write_buffered(self, data):
        size = len(data)
        bufsize = self._bufsize
        buf = self._buf
        # Data beyond keep bytes is sent rather than buffered.
        keep = bufsize - 1 if _SEND_FULL_BLOCKS else bufsize
        if self._start == self._end:
            self._start = self._end = 0
        if size <= bufsize - self._end and size <= keep:
            buf[self._end:self._end + size] = data
            self._end += size
            return size
        try:
            self._flush_unlocked()
        except BlockingIOError:
            # Make room by shifting the pending bytes, keep as much as fits.
            pending = self._end - self._start
            buf[:pending] = buf[self._start:self._end]
            self._start = 0
            self._end = pending
            avail = bufsize - pending
            if size <= avail:
                buf[pending:pending + size] = data
                self._end += size
                return size
            buf[pending:bufsize] = data[:avail]
            self._end = bufsize
            raise BlockingIOError(_errno.EAGAIN, "write could not complete "
                                  "without blocking", avail) from None
        # The buffer is empty: send all but the last partial block directly.
        written = 0
        remaining = size
        while remaining > keep:
            n = self._send(data[written:])
            if n is None:
                if remaining <= bufsize:
                    break
                buf[:] = data[written:written + bufsize]
                self._end = bufsize
                written += bufsize
                raise BlockingIOError(_errno.EAGAIN, "write could not complete "
                                      "without blocking", written)
            written += n
            remaining -= n
        buf[:remaining] = data[written:]
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
        """Send everything buffered (no-op when unbuffered)."""
        if not self._bufsize:
            if self._closed:
                raise ValueError("I/O operation on closed file.")
            if self._reader is not None and self._start < len(self._buf):
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
            elif self._reader is not None and self._start < len(self._buf):
                try:
                    self._flush_pending()
                except OSError:
                    # Like the stdlib writer's close(), this never raises for
                    # a broken connection; finish() has flushed already.
                    pass
        finally:
            self._closed = True
            if self._ref:
                self._ref = False
                self._sock._decref_socketios()
            if self._reader is not None:
                self._reader._writer = None
                self._reader._peer_pending = False
                self._reader = None
                del self._buf[:]
                self._start = 0

    def __del__(self):
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass

    @property
    def closed(self):
        return self._closed

    @property
    def mode(self):
        return "wb"

    @property
    def write_timeout(self):
        """Seconds one write()/flush()/close() may wait in all, or None."""
        return self._write_timeout if self._write_timeout > 0.0 else None

    @property
    def bytes_written(self):
        """Bytes the socket has taken so far (fastsock extra)."""
        return self._nwritten

    @property
    def name(self):
        return -1 if self._closed else self._sock.fileno()

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
        raise _UnsupportedOperation("read")

    def read1(self, n=-1, /):
        raise _UnsupportedOperation("read1")

    def readinto(self, b, /):
        raise _UnsupportedOperation("read")

    def readline(self, limit=-1, /):
        raise _UnsupportedOperation("read")

    def seek(self, pos, whence=0):
        raise _UnsupportedOperation("seek")

    def tell(self):
        raise _UnsupportedOperation("seek")

    def truncate(self, pos=None):
        raise _UnsupportedOperation("truncate")

    def detach(self):
        raise _UnsupportedOperation("detach")

    def __enter__(self):
        if self._closed:
            raise ValueError("I/O operation on closed file.")
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "<%s.%s name=%r>" % (type(self).__module__,
                                    type(self).__qualname__, self.name)

    def __reduce__(self):
        raise TypeError("cannot pickle '%s' object" % type(self).__name__)


io.BufferedIOBase.register(SocketReader)
io.BufferedIOBase.register(SocketWriter)
