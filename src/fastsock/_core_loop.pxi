# ---------------------------------------------------------------------------
# The serve loop: wakeup channel, wait, accept, recvfrom.
# Twin: fastsock/_loop_py.py
# ---------------------------------------------------------------------------

#: wait_readable() result bits
READY = 1   # the watched fd is readable (or in error: the next call reports it)
WOKEN = 2   # the wakeup fd was posted
INVALID = 4 # the watched fd is not open (closed under the loop); READY is set too

cdef object _socket_cls = _socket_module.socket
cdef object _getdefaulttimeout = _socket_module.getdefaulttimeout
# The C-level getters of _socket.socket: plain ints, no enum conversion.
cdef object _sock_type_get = _socket_module._socket.socket.type.__get__
cdef object _sock_proto_get = _socket_module._socket.socket.proto.__get__
cdef object _sock_family_get = _socket_module._socket.socket.family.__get__


cdef class Waker:
    # The first docstring lines give inspect.signature() the class signature.
    """Waker()
--

A wakeup channel for a serve loop (an eventfd on Linux, else a pipe).

    ``wake()`` may be called from any thread, any number of times; a
    ``wait_readable()`` given ``fileno()`` returns at once with ``WOKEN``
    set until ``drain()`` is called.
    """
    cdef int _rfd
    cdef int _wfd

    def __cinit__(self):
        self._rfd = -1
        self._wfd = -1
        if fs_waker_open(&self._rfd, &self._wfd) < 0:
            raise_errno(errno)

    def fileno(self):
        """The fd to wait on (-1 once closed)."""
        return self._rfd

    @property
    def closed(self):
        return self._rfd < 0

    def wake(self):
        """Post a wake-up.  Does nothing once closed."""
        # Runs entirely with the GIL held: it cannot interleave with close().
        if self._wfd >= 0 and fs_waker_post(self._wfd) < 0:
            raise_errno(errno)

    def drain(self):
        """Consume pending wake-ups."""
        if self._rfd >= 0:
            fs_waker_drain(self._rfd)

    def close(self):
        """Close the channel (idempotent)."""
        cdef int rfd = self._rfd, wfd = self._wfd
        self._rfd = self._wfd = -1
        if wfd >= 0 and wfd != rfd:
            close(wfd)
        if rfd >= 0:
            close(rfd)

    def __dealloc__(self):
        if self._wfd >= 0 and self._wfd != self._rfd:
            close(self._wfd)
        if self._rfd >= 0:
            close(self._rfd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_readable(int fd, int wakeup_fd=-1, timeout=None):
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
    cdef pollfd fds[2]
    cdef nfds_t nfds = 1
    cdef int ms = -1, n, err = 0, result = 0
    cdef double deadline = 0.0
    cdef bint forever = timeout is None

    if not forever:
        deadline = <double>timeout
        ms = fs_poll_ms(deadline)
        deadline += fs_monotonic()
    fds[0].fd = fd
    fds[0].events = POLLIN
    fds[0].revents = 0
    if wakeup_fd >= 0:
        fds[1].fd = wakeup_fd
        fds[1].events = POLLIN
        fds[1].revents = 0
        nfds = 2
    while True:
        with nogil:
            n = poll(fds, nfds, ms)
            if n < 0:
                err = errno
        if n >= 0:
            break
        if err != EINTR:
            raise_errno(err)
        check_signals()
        if not forever:
            ms = fs_poll_ms(deadline - fs_monotonic())
    if n == 0:
        return 0
    if nfds == 2 and (fds[1].revents & POLLNVAL):
        raise_errno(EBADF)
    if fds[0].revents:
        result |= READY
        if fds[0].revents & POLLNVAL:
            result |= INVALID
    if nfds == 2 and fds[1].revents:
        result |= WOKEN
    return result


cdef object sockaddr_to_python(sockaddr *addr, socklen_t addrlen):
    """The Python form of an address, as socket.accept()/recvfrom() give it,
    for AF_INET, AF_INET6 and AF_UNIX; None for other families."""
    cdef char text[INET6_ADDRSTRLEN + 1]
    cdef sockaddr_in *a4
    cdef sockaddr_in6 *a6
    cdef sockaddr_un *au
    cdef Py_ssize_t pathlen
    cdef size_t path_off = <size_t>(<char *>&(<sockaddr_un *>addr).sun_path[0] - <char *>addr)
    if addrlen == 0:
        return None  # no address (as CPython's makesockaddr gives)
    if addr.sa_family == AF_INET:
        a4 = <sockaddr_in *>addr
        if inet_ntop(AF_INET, &a4.sin_addr, text, sizeof(text)) == NULL:
            raise_errno(errno)
        return (text.decode("ascii"), ntohs(a4.sin_port))
    if addr.sa_family == AF_INET6:
        a6 = <sockaddr_in6 *>addr
        if inet_ntop(AF_INET6, &a6.sin6_addr, text, sizeof(text)) == NULL:
            raise_errno(errno)
        return (text.decode("ascii"), ntohs(a6.sin6_port),
                ntohl(a6.sin6_flowinfo), a6.sin6_scope_id)
    if addr.sa_family == AF_UNIX:
        au = <sockaddr_un *>addr
        if addrlen <= path_off:
            return ""  # unnamed (a client that never bound)
        pathlen = <Py_ssize_t>(addrlen - path_off)
        if au.sun_path[0] == 0:
            # Linux abstract namespace: bytes, leading NUL included.
            return (<char *>au.sun_path)[:pathlen]
        pathlen = <Py_ssize_t>strnlen(au.sun_path, <size_t>pathlen)
        return _fsdecode((<char *>au.sun_path)[:pathlen])
    return None


from os import fsdecode as _fsdecode


def accept(sock):
    """Accept a connection on the listening socket *sock*.

    Returns ``(conn, address)`` exactly as ``sock.accept()`` does: *conn* is
    a ``socket.socket`` (close-on-exec, with the default timeout), *address*
    the peer address.  For a plain ``socket.socket`` in blocking or
    non-blocking mode the accept runs in C with the GIL released (EINTR
    retried per PEP 475); anything else (a socket with a timeout, an
    ``ssl.SSLSocket``, another family) goes through ``sock.accept()``.
    """
    cdef sockaddr_storage storage
    cdef socklen_t addrlen
    cdef int lfd, cfd, err = 0
    if type(sock) is not _socket_cls:
        return sock.accept()
    timeout = sock.timeout
    if timeout is not None and timeout != 0.0:
        return sock.accept()
    family = _sock_family_get(sock)
    if family != AF_INET and family != AF_INET6 and family != AF_UNIX:
        return sock.accept()
    lfd = sock.fileno()
    while True:
        addrlen = sizeof(storage)
        memset(&storage, 0, sizeof(storage))
        with nogil:
            cfd = fs_accept_cloexec(lfd, <sockaddr *>&storage, &addrlen)
            if cfd < 0:
                err = errno
        if cfd >= 0:
            break
        if err != EINTR:
            raise_errno(err)
        check_signals()
    try:
        conn = _socket_cls(family, _sock_type_get(sock), _sock_proto_get(sock),
                           fileno=cfd)
    except BaseException:
        close(cfd)
        raise
    # Like socket.accept(): a listening socket with a timeout hands out
    # blocking connections when there is no default timeout.  (Only the
    # timeout-0 case reaches here, and 0 is falsy, so nothing to do.)
    address = sockaddr_to_python(<sockaddr *>&storage, addrlen)
    return conn, address


def recvfrom(sock, Py_ssize_t bufsize):
    """Receive one datagram: ``(data, address)`` exactly as
    ``sock.recvfrom(bufsize)``.

    For a plain ``socket.socket`` in blocking or non-blocking mode the
    receive runs in C with the GIL released (EINTR retried per PEP 475);
    anything else goes through ``sock.recvfrom()``.
    """
    cdef sockaddr_storage storage
    cdef socklen_t addrlen
    cdef int fd, err = 0
    cdef ssize_t n
    cdef char stackbuf[16384]
    cdef bytearray heapbuf
    cdef char *p = stackbuf
    if type(sock) is not _socket_cls:
        return sock.recvfrom(bufsize)
    timeout = sock.timeout
    if timeout is not None and timeout != 0.0:
        return sock.recvfrom(bufsize)
    family = _sock_family_get(sock)
    if family != AF_INET and family != AF_INET6 and family != AF_UNIX:
        return sock.recvfrom(bufsize)
    if bufsize < 0:
        raise ValueError("negative buffersize in recvfrom")
    if bufsize > <Py_ssize_t>sizeof(stackbuf):
        heapbuf = bytearray(bufsize)
        p = heapbuf  # not resized while we hold it
    fd = sock.fileno()
    # The serve loop calls this once poll() saw a datagram: take it without
    # letting go of the GIL; release the GIL only if it would block.
    addrlen = sizeof(storage)
    memset(&storage, 0, sizeof(storage))
    n = c_recvfrom(fd, p, <size_t>bufsize, MSG_DONTWAIT, <sockaddr *>&storage, &addrlen)
    if n < 0:
        err = errno
        if would_block(err):
            if timeout is not None:     # a non-blocking socket: what recvfrom() raises
                raise_errno(err)
        elif err == EINTR:
            check_signals()
        else:
            raise_errno(err)
    while n < 0:
        addrlen = sizeof(storage)
        memset(&storage, 0, sizeof(storage))
        with nogil:
            n = c_recvfrom(fd, p, <size_t>bufsize, 0, <sockaddr *>&storage, &addrlen)
            if n < 0:
                err = errno
        if n >= 0:
            break
        if err != EINTR:
            raise_errno(err)
        check_signals()
    data = p[:n]
    address = sockaddr_to_python(<sockaddr *>&storage, addrlen)
    return data, address


from cpython.mem cimport PyMem_Malloc as _loop_malloc, PyMem_Free as _loop_free

cdef enum:
    _BATCH_MAX = 64


cdef class DatagramReceiver:
    # The first docstring lines give inspect.signature() the class signature.
    """DatagramReceiver(sock, bufsize, batch=32)
--

Takes the datagrams already waiting on *sock*, up to *batch* at a time,
    in one system call (``recvmmsg`` on Linux), each truncated to *bufsize*
    bytes as ``sock.recvfrom(bufsize)`` would.  ``receive()`` never blocks.

    Only a plain ``socket.socket`` in blocking or non-blocking mode is
    batched; for anything else (a socket with a timeout, a subclass, another
    family) ``receive()`` returns an empty list and the caller uses the
    socket's own ``recvfrom``.
    """
    cdef readonly object sock
    cdef readonly Py_ssize_t bufsize
    cdef readonly int batch
    cdef char *_buf
    cdef sockaddr_storage *_addrs
    cdef socklen_t *_addrlens
    cdef size_t *_lens

    def __cinit__(self, sock, Py_ssize_t bufsize, int batch=32):
        if bufsize < 0:
            raise ValueError("negative buffersize in recvfrom")
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.sock = sock
        self.bufsize = bufsize
        self.batch = min(batch, _BATCH_MAX)
        self._buf = <char *>_loop_malloc(max(bufsize, 1) * self.batch)
        self._addrs = <sockaddr_storage *>_loop_malloc(sizeof(sockaddr_storage) * self.batch)
        self._addrlens = <socklen_t *>_loop_malloc(sizeof(socklen_t) * self.batch)
        self._lens = <size_t *>_loop_malloc(sizeof(size_t) * self.batch)
        if not (self._buf and self._addrs and self._addrlens and self._lens):
            raise MemoryError()

    def __dealloc__(self):
        _loop_free(self._buf)
        _loop_free(self._addrs)
        _loop_free(self._addrlens)
        _loop_free(self._lens)

    def receive(self):
        """The waiting datagrams as a list of ``(data, address)``, oldest
        first; empty when none is waiting or the socket is not batched."""
        cdef int n, i, err
        cdef list out = []
        sock = self.sock
        if type(sock) is not _socket_cls:
            return out
        timeout = sock.timeout
        if timeout is not None and timeout != 0.0:
            return out
        family = _sock_family_get(sock)
        if family != AF_INET and family != AF_INET6 and family != AF_UNIX:
            return out
        fd = sock.fileno()
        while True:
            # Non-blocking, so the GIL is kept: nothing here can wait.
            n = fs_recv_batch(fd, self._buf, <size_t>self.bufsize, <unsigned int>self.batch,
                              self._addrs, self._addrlens, self._lens)
            if n >= 0:
                break
            err = errno
            if would_block(err):
                return out
            if err != EINTR:
                raise_errno(err)
            check_signals()
        for i in range(n):
            out.append(((self._buf + <Py_ssize_t>i * self.bufsize)[:<Py_ssize_t>self._lens[i]],
                        sockaddr_to_python(<sockaddr *>&self._addrs[i], self._addrlens[i])))
        return out
