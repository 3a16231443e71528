"""Pure-Python twin of the serve-loop half of ``fastsock._core``
(``_core_loop.pxi``): same names, signatures and behaviour."""
import errno
import os
import select
import socket
import threading
from time import monotonic

__all__ = ["READY", "WOKEN", "INVALID", "Waker", "wait_readable", "accept", "recvfrom",
           "DatagramReceiver", "send_batch", "trim_heap"]

#: wait_readable() result bits
READY = 1   # the watched fd is readable (or in error: the next call reports it)
WOKEN = 2   # the wakeup fd was posted
INVALID = 4 # the watched fd is not open (closed under the loop); READY is set too

_HAVE_EVENTFD = hasattr(os, "eventfd")


class Waker:
    """A wakeup channel for a serve loop (an eventfd on Linux, else a pipe).

    ``wake()`` may be called from any thread, any number of times; a
    ``wait_readable()`` given ``fileno()`` returns at once with ``WOKEN``
    set until ``drain()`` is called.
    """

    def __init__(self):
        # wake() and close() may race between threads: the lock keeps a wake
        # from writing to an fd number that close() has already released.
        self._lock = threading.Lock()
        if _HAVE_EVENTFD:
            self._rfd = self._wfd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        else:
            self._rfd, self._wfd = os.pipe()
            os.set_blocking(self._rfd, False)
            os.set_blocking(self._wfd, False)

    def fileno(self):
        """The fd to wait on (-1 once closed)."""
        return self._rfd

    @property
    def closed(self):
        return self._rfd < 0

    def wake(self):
        """Post a wake-up.  Does nothing once closed."""
        with self._lock:
            if self._wfd < 0:
                return
            try:
                os.write(self._wfd, b"\1\0\0\0\0\0\0\0" if _HAVE_EVENTFD else b"\1")
            except BlockingIOError:
                pass  # already full: already woken

    def drain(self):
        """Consume pending wake-ups."""
        with self._lock:
            if self._rfd < 0:
                return
            try:
                while os.read(self._rfd, 64):
                    pass
            except BlockingIOError:
                pass

    def close(self):
        """Close the channel (idempotent)."""
        with self._lock:
            rfd, wfd = self._rfd, self._wfd
            self._rfd = self._wfd = -1
        if wfd >= 0 and wfd != rfd:
            os.close(wfd)
        if rfd >= 0:
            os.close(rfd)

    def __del__(self):
        # Like the compiled Waker's deallocator: never leak the fds.
        if getattr(self, "_rfd", -1) >= 0:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_readable(fd, wakeup_fd=-1, timeout=None):
    """Wait until *fd* or *wakeup_fd* is readable, or *timeout* seconds pass.

    *wakeup_fd* -1 means none; *timeout* None waits forever.  Returns a
    bitmask: ``READY`` if *fd* is readable (or has an error or hang-up, which
    the next operation on it reports), ``WOKEN`` if *wakeup_fd* is readable,
    0 when the timeout passed.  An *fd* that is not open gives
    ``READY | INVALID`` (the next operation on it fails with EBADF); a
    *wakeup_fd* that is not open raises ``OSError(EBADF)``.  The GIL is
    released while waiting; on EINTR signal handlers run (their exception
    propagates) and the wait resumes with the remaining time.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if wakeup_fd >= 0:
        poller.register(wakeup_fd, select.POLLIN)
    if timeout is None:
        ms = None
    else:
        # Round up, so the wait never ends before the timeout.
        ms = max(0.0, timeout) * 1000.0
        ms = int(ms) + (int(ms) < ms)
    # poll() itself retries EINTR with the remaining time (PEP 475).
    result = 0
    for ready_fd, events in poller.poll(ms):
        if ready_fd == fd:
            result |= READY
            if events & select.POLLNVAL:
                result |= INVALID
        elif ready_fd == wakeup_fd:
            if events & select.POLLNVAL:
                raise OSError(errno.EBADF, os.strerror(errno.EBADF))
            result |= WOKEN
    return result


def accept_nowait(sock, cls=None):
    """A connection already waiting on the listening socket *sock*, as
    ``accept(sock, cls)`` gives it, or None when there is none.

    For the workers of a thread pool that accept by themselves, on a
    descriptor made non-blocking (the socket object's timeout is None or
    0.0: the descriptor's flag, not the object's timeout, decides).
    """
    if (type(sock) is not socket.socket or sock.gettimeout() not in (None, 0.0)
            or sock.family not in _ACCEPT_FAMILIES):
        raise ValueError("accept_nowait() takes a plain AF_INET, AF_INET6 or "
                         "AF_UNIX socket.socket without a timeout")
    try:
        fd, address = sock._accept()
    except BlockingIOError:
        return None
    # (cls None: the listening socket has no timeout, nothing to adjust)
    return _connection(sock, fd, cls or socket.socket, cls is not None), address


def _connection(sock, fd, cls, nonblocking):
    # The socket object of an accepted descriptor (closed if that fails).
    try:
        conn = cls(sock.family, sock.type, sock.proto, fd)
        if nonblocking:
            socket.socket.settimeout(conn, 0.0)
    except BaseException:
        socket.close(fd)
        raise
    return conn


_ACCEPT_FAMILIES = frozenset(getattr(socket, name) for name in ("AF_INET", "AF_INET6", "AF_UNIX")
                             if hasattr(socket, name))


def accept(sock, cls=None):
    """Accept a connection on the listening socket *sock*.

    Returns ``(conn, address)`` exactly as ``sock.accept()`` does.  *cls*, a
    ``socket.socket`` subclass: *conn* is made of that class instead, in
    non-blocking mode (timeout 0.0) -- for a plain listening socket in
    blocking or non-blocking mode, as in the compiled core; otherwise *conn*
    is what ``sock.accept()`` gives.
    """
    if cls is None or type(sock) is not socket.socket or sock.gettimeout() not in (None, 0.0):
        return sock.accept()
    fd, address = sock._accept()
    return _connection(sock, fd, cls, True), address


def recvfrom(sock, bufsize):
    """Receive one datagram: ``(data, address)`` exactly as
    ``sock.recvfrom(bufsize)``."""
    return sock.recvfrom(bufsize)


_BATCH_MAX = 64
_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_BATCHED_FAMILIES = {socket.AF_INET, socket.AF_INET6, getattr(socket, "AF_UNIX", None)}


class DatagramReceiver:
    """DatagramReceiver(sock, bufsize, batch=32)

    Takes the datagrams already waiting on *sock*, up to *batch* at a time,
    in one system call (``recvmmsg`` on Linux), each truncated to *bufsize*
    bytes as ``sock.recvfrom(bufsize)`` would.  ``receive()`` never blocks.

    Only a plain ``socket.socket`` (or a subclass whose class sets
    ``_fastsock_plain_recv``) in blocking or non-blocking mode is
    batched; for anything else (a socket with a timeout, a subclass, another
    family) ``receive()`` returns an empty list and the caller uses the
    socket's own ``recvfrom``.
    """

    def __init__(self, sock, bufsize, batch=32):
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self._sock = sock
        self._bufsize = bufsize
        self._batch = min(batch, _BATCH_MAX)

    # Read-only, like the compiled class's attributes.
    sock = property(lambda self: self._sock)
    bufsize = property(lambda self: self._bufsize)
    batch = property(lambda self: self._batch)

    def receive(self):
        """The waiting datagrams as a list of ``(data, address)``, oldest
        first; empty when none is waiting or the socket is not batched."""
        out = []
        sock = self._sock
        if ((type(sock) is not socket.socket
             and not getattr(type(sock), "_fastsock_plain_recv", False))
                or sock.timeout not in (None, 0.0)
                or sock.family not in _BATCHED_FAMILIES or not _MSG_DONTWAIT):
            return out
        recv = sock.recvfrom
        for _ in range(self._batch):
            try:
                out.append(recv(self._bufsize, _MSG_DONTWAIT))
            except (BlockingIOError, InterruptedError):
                break
        return out


def send_batch(sock, items, start=0):
    """Send ``items[start:]``, a list of ``(data, address)``, in order, as
    ``sock.sendto(data, address)`` each would (``sendmmsg`` on Linux: up to
    64 datagrams per system call).

    Returns how many were sent from *start* on: at least 1, fewer than all
    when one could not be sent -- call again from there, and that call
    raises its ``OSError``.  0 when there is nothing to send.  A socket with
    a timeout, a family other than INET/INET6/UNIX, or an item that is not
    ``(bytes, plain numeric address)`` goes through ``sock.sendto``.
    """
    if not isinstance(items, list):
        raise TypeError("items must be a list, not %s" % type(items).__name__)
    if start < 0:
        raise ValueError("negative start")
    if start >= len(items):
        return 0
    # The socket class's own sendto: a subclass that defers its sends
    # (fastsock's reply batching) hands its queue here.
    sendto = socket.socket.sendto if isinstance(sock, socket.socket) else type(sock).sendto
    sendto(sock, *items[start])          # the first one raises its error
    sent = 1
    for item in items[start + 1:start + _BATCH_MAX]:
        try:
            sendto(sock, *item)
        except Exception:   # the next call, starting at this item, raises it
            break
        sent += 1
    return sent


_malloc_trim = False     # not looked up yet


def trim_heap():
    """Give the C heap's free memory back to the system (glibc's
    ``malloc_trim(0)``, through ctypes): True if some was released, False if
    none was, None where the C library has no such call."""
    global _malloc_trim
    if _malloc_trim is False:
        _malloc_trim = None
        try:
            import ctypes
            libc = ctypes.CDLL(None)
            if hasattr(libc, "gnu_get_libc_version"):
                _malloc_trim = libc.malloc_trim
                _malloc_trim.argtypes = [ctypes.c_size_t]
                _malloc_trim.restype = ctypes.c_int
        except (ImportError, OSError, AttributeError):
            _malloc_trim = None
    if _malloc_trim is None:
        return None
    return _malloc_trim(0) == 1


def sendto(sock, data, address):
    """Send the datagram *data* to *address*: ``sock.sendto(data, address)``."""
    return sock.sendto(data, address)
