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


from cpython.object cimport PyObject as _AddrPyObject
from cpython.ref cimport Py_INCREF as _addr_incref, Py_XDECREF as _addr_xdecref

# The Python forms of recently seen IPv4/IPv6 addresses, by their raw bytes
# (a direct-mapped cache; read and written with the GIL held).  A datagram
# server mostly hears from the same peers again, and building the tuple --
# inet_ntop() formats with sprintf() -- was ~2,000 instructions of the ~21,000
# that one echoed datagram costs in user space.  The tuples are immutable;
# handing out the same one again is invisible but to ``is``.
cdef enum:
    _ADDR_SLOTS = 256
    _ADDR_KEY_MAX = 26      # in6_addr, port, flowinfo, scope id

cdef struct _AddrSlot:
    int keylen              # 0: empty
    unsigned char key[_ADDR_KEY_MAX]
    _AddrPyObject *value

cdef _AddrSlot _addr_cache[_ADDR_SLOTS]


cdef inline _AddrSlot *_addr_slot(const unsigned char *key, int keylen) noexcept:
    cdef unsigned int h = 2166136261u
    cdef int i
    for i in range(keylen):
        h = (h ^ key[i]) * 16777619u
    return &_addr_cache[(h ^ (h >> 16)) & (_ADDR_SLOTS - 1)]


cdef object _addr_lookup(_AddrSlot *slot, const unsigned char *key, int keylen):
    if slot.keylen == keylen and memcmp(slot.key, key, <size_t>keylen) == 0:
        return <object>slot.value
    return None


cdef void _addr_store(_AddrSlot *slot, const unsigned char *key, int keylen,
                      object value) noexcept:
    cdef _AddrPyObject *old = slot.value
    _addr_incref(value)
    slot.value = <_AddrPyObject *>value
    memcpy(slot.key, key, <size_t>keylen)
    slot.keylen = keylen
    _addr_xdecref(old)   # a tuple of str and int: frees without running Python code


cdef object sockaddr_to_python(sockaddr *addr, socklen_t addrlen, bint cached=True):
    """The Python form of an address, as socket.accept()/recvfrom() give it,
    for AF_INET, AF_INET6 and AF_UNIX; None for other families.  *cached*:
    look IP addresses up in (and add them to) the cache of recent peers --
    not for accept(), where every connection has a port of its own."""
    cdef char text[INET6_ADDRSTRLEN + 1]
    cdef unsigned char key[_ADDR_KEY_MAX]
    cdef _AddrSlot *slot = NULL
    cdef sockaddr_in *a4
    cdef sockaddr_in6 *a6
    cdef sockaddr_un *au
    cdef Py_ssize_t pathlen
    cdef int n
    cdef size_t path_off = <size_t>(<char *>&(<sockaddr_un *>addr).sun_path[0] - <char *>addr)
    if addrlen == 0:
        return None  # no address (as CPython's makesockaddr gives)
    if addr.sa_family == AF_INET:
        a4 = <sockaddr_in *>addr
        if cached:
            memcpy(key, &a4.sin_addr, 4)
            memcpy(key + 4, &a4.sin_port, 2)
            slot = _addr_slot(key, 6)
            value = _addr_lookup(slot, key, 6)
            if value is not None:
                return value
        # inet_ntop()'s text without its sprintf()
        n = fs_format_ipv4(<const unsigned char *>&a4.sin_addr, text)
        value = (text[:n].decode("ascii"), ntohs(a4.sin_port))
        if cached:
            _addr_store(slot, key, 6, value)
        return value
    if addr.sa_family == AF_INET6:
        a6 = <sockaddr_in6 *>addr
        if cached:
            memcpy(key, &a6.sin6_addr, 16)
            memcpy(key + 16, &a6.sin6_port, 2)
            memcpy(key + 18, &a6.sin6_flowinfo, 4)
            memcpy(key + 22, &a6.sin6_scope_id, 4)
            slot = _addr_slot(key, 26)
            value = _addr_lookup(slot, key, 26)
            if value is not None:
                return value
        if inet_ntop(AF_INET6, &a6.sin6_addr, text, sizeof(text)) == NULL:
            raise_errno(errno)
        value = (text.decode("ascii"), ntohs(a6.sin6_port),
                 ntohl(a6.sin6_flowinfo), a6.sin6_scope_id)
        if cached:
            _addr_store(slot, key, 26, value)
        return value
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
cdef int _SOCK_NONBLOCK = getattr(_socket_module, "SOCK_NONBLOCK", 0)


def accept_nowait(sock, cls=None):
    """A connection already waiting on the listening socket *sock*, as
    ``accept(sock, cls)`` gives it, or None when there is none.

    For the workers of a thread pool that accept by themselves, on a
    descriptor made non-blocking (the socket object's timeout is None or
    0.0: the descriptor's flag, not the object's timeout, decides).  The
    accept() lets go of the GIL, as ``accept()`` does: should the
    descriptor be blocking after all (another process sharing it), a
    worker that lost the race waits for the next connection without
    holding up the process.
    """
    return _accept(sock, cls, True)


def accept(sock, cls=None):
    """Accept a connection on the listening socket *sock*.

    Returns ``(conn, address)`` exactly as ``sock.accept()`` does: *conn* is
    a ``socket.socket`` (close-on-exec, with the default timeout), *address*
    the peer address.  For a plain ``socket.socket`` in blocking or
    non-blocking mode the accept runs in C with the GIL released (EINTR
    retried per PEP 475); anything else (a socket with a timeout, an
    ``ssl.SSLSocket``, another family) goes through ``sock.accept()``.

    *cls*, a ``socket.socket`` subclass: *conn* is made of that class
    instead, in non-blocking mode (timeout 0.0) from the start -- the
    accept and the object, no further system call.  On the
    ``sock.accept()`` path *conn* is the plain socket that gives.
    """
    return _accept(sock, cls, False)


cdef object _accept_other(sock, bint nowait):
    # What the C path does not take: sock.accept(), which may wait.
    if nowait:
        raise ValueError("accept_nowait() takes a plain AF_INET, AF_INET6 or "
                         "AF_UNIX socket.socket without a timeout")
    return sock.accept()


cdef object _accept(sock, cls, bint nowait):
    # nowait: None for EAGAIN (see accept_nowait)
    cdef sockaddr_storage storage
    cdef socklen_t addrlen
    cdef int lfd, cfd, err = 0, family_c, stype, proto
    cdef fs_sockobject *s
    cdef bint nonblock = cls is not None
    if type(sock) is not _socket_cls:
        return _accept_other(sock, nowait)
    if _sio_layout_ok:
        # the fields themselves: no Python calls (see _sio_check_layout)
        s = <fs_sockobject *><PyObject *>sock
        if s.sock_timeout > 0:
            return _accept_other(sock, nowait)
        family_c = s.sock_family
        stype = s.sock_type
        proto = s.sock_proto
        lfd = s.sock_fd
    else:
        timeout = sock.timeout
        if timeout is not None and timeout != 0.0:
            return _accept_other(sock, nowait)
        family_c = _sock_family_get(sock)
        stype = _sock_type_get(sock)
        proto = _sock_proto_get(sock)
        lfd = sock.fileno()
    if family_c != AF_INET and family_c != AF_INET6 and family_c != AF_UNIX:
        return _accept_other(sock, nowait)
    while True:
        addrlen = sizeof(storage)
        memset(&storage, 0, sizeof(storage))
        with nogil:
            cfd = fs_accept_flags(lfd, <sockaddr *>&storage, &addrlen, nonblock)
            if cfd < 0:
                err = errno
        if cfd >= 0:
            break
        if nowait and would_block(err):
            return None
        if err != EINTR:
            raise_errno(err)
        check_signals()
    try:
        # (fileno passed by position: no keyword dict per call)
        if nonblock:
            # The type with SOCK_NONBLOCK makes the object's timeout 0.0
            # without asking the (already non-blocking) descriptor again.
            conn = cls(family_c, stype | _SOCK_NONBLOCK, proto, cfd)
            if not _SOCK_NONBLOCK:
                _socket_cls.settimeout(conn, 0.0)
        else:
            conn = _socket_cls(family_c, stype, proto, cfd)
    except BaseException:
        close(cfd)
        raise
    # Like socket.accept(): a listening socket with a timeout hands out
    # blocking connections when there is no default timeout.  (Only the
    # timeout-0 case reaches here, and 0 is falsy, so nothing to do.)
    address = sockaddr_to_python(<sockaddr *>&storage, addrlen, False)
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

    Only a plain ``socket.socket`` (or a subclass whose class sets
    ``_fastsock_plain_recv``) in blocking or non-blocking mode is
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
        # A socket.socket subclass that declares ``_fastsock_plain_recv``
        # (fastsock's reply-batching socket) receives like the plain class.
        if type(sock) is not _socket_cls and not getattr(type(sock), "_fastsock_plain_recv", False):
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


# ---------------------------------------------------------------------------
# Batched send: sendmmsg() where the platform has it, else a sendto() loop.
# ---------------------------------------------------------------------------

cdef extern from *:
    """
    #include <sys/socket.h>
    #include <sys/un.h>
    #include <netinet/in.h>
    #include <arpa/inet.h>
    #include <stddef.h>
    /* Send n datagrams, in order: bufs[i] (lens[i] bytes) to addrs[i]
       (addrlens[i]).  Returns how many were sent (>= 1; fewer than n when
       one fails or, with MSG_DONTWAIT, the buffer fills), or -1 with errno
       set when the first one could not be sent.

       Linux: one sendmmsg().  Consecutive IPv4/IPv6 datagrams to the same
       address, all of one size but the last (which may be shorter), go as
       one message with UDP_SEGMENT (GSO): the kernel routes, allocates and
       copies once for the run and still delivers separate datagrams, in
       order.  When such a message is the first and fails, the call sends
       without GSO instead, so a failure is always that of one datagram.  A
       kernel without UDP_SEGMENT turns it off for the process; EINVAL (a
       segment larger than the route's MTU, say) for that size and larger. */
    #if defined(__linux__)
    #include <netinet/udp.h>
    #ifndef UDP_SEGMENT
    #define UDP_SEGMENT 103
    #endif
    #ifndef SOL_UDP
    #define SOL_UDP 17
    #endif
    static int fs_gso_ok = 1;
    static size_t fs_gso_max_seg = 65535;  /* lowered by EINVAL (MTU) */
    #define FS_GSO_MAX_BYTES 65000
    static int fs_send_plain(int fd, int flags, char **bufs, size_t *lens,
                             struct sockaddr_storage *addrs, socklen_t *addrlens,
                             unsigned int n)
    {
        unsigned int i;
        struct mmsghdr msgs[64];
        struct iovec iov[64];
        for (i = 0; i < n; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = lens[i];
            memset(&msgs[i], 0, sizeof(msgs[i]));
            msgs[i].msg_hdr.msg_name = &addrs[i];
            msgs[i].msg_hdr.msg_namelen = addrlens[i];
            msgs[i].msg_hdr.msg_iov = &iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        return sendmmsg(fd, msgs, n, flags | MSG_NOSIGNAL);
    }
    #endif
    static int fs_send_batch(int fd, int flags, char **bufs, size_t *lens,
                             struct sockaddr_storage *addrs, socklen_t *addrlens,
                             unsigned int n)
    {
        unsigned int i;
    #if defined(__linux__)
        struct mmsghdr msgs[64];
        struct iovec iov[64];
        unsigned int runs[64];            /* datagrams in each message */
        union { char buf[CMSG_SPACE(sizeof(uint16_t))]; struct cmsghdr align; } ctrl[64];
        unsigned int m = 0, j;
        int r;
        if (n > 64)
            n = 64;
        if (!fs_gso_ok)
            return fs_send_plain(fd, flags, bufs, lens, addrs, addrlens, n);
        for (i = 0; i < n; i = j) {
            size_t seg = lens[i], total = lens[i];
            int family = addrs[i].ss_family;
            j = i + 1;
            if ((family == AF_INET || family == AF_INET6) && seg > 0
                    && seg <= fs_gso_max_seg) {
                while (j < n && addrlens[j] == addrlens[i]
                       && lens[j] > 0 && lens[j] <= seg
                       && total + lens[j] <= FS_GSO_MAX_BYTES
                       && memcmp(&addrs[j], &addrs[i], addrlens[i]) == 0) {
                    total += lens[j];
                    j++;
                    if (lens[j - 1] < seg)
                        break;            /* a shorter one ends the run */
                }
            }
            for (unsigned int k = i; k < j; k++) {
                iov[k].iov_base = bufs[k];
                iov[k].iov_len = lens[k];
            }
            memset(&msgs[m], 0, sizeof(msgs[m]));
            msgs[m].msg_hdr.msg_name = &addrs[i];
            msgs[m].msg_hdr.msg_namelen = addrlens[i];
            msgs[m].msg_hdr.msg_iov = &iov[i];
            msgs[m].msg_hdr.msg_iovlen = j - i;
            if (j - i > 1) {
                struct cmsghdr *cm;
                uint16_t gso = (uint16_t)seg;
                msgs[m].msg_hdr.msg_control = ctrl[m].buf;
                msgs[m].msg_hdr.msg_controllen = sizeof(ctrl[m].buf);
                cm = CMSG_FIRSTHDR(&msgs[m].msg_hdr);
                cm->cmsg_level = SOL_UDP;
                cm->cmsg_type = UDP_SEGMENT;
                cm->cmsg_len = CMSG_LEN(sizeof(uint16_t));
                memcpy(CMSG_DATA(cm), &gso, sizeof(gso));
            }
            runs[m++] = j - i;
        }
        /* (with no run, msgs are exactly the plain ones: one datagram each) */
        r = sendmmsg(fd, msgs, m, flags | MSG_NOSIGNAL);
        if (r < 0) {
            if (runs[0] == 1)
                return -1;                /* a plain datagram's own error */
            if (errno == ENOPROTOOPT || errno == EOPNOTSUPP || errno == EIO)
                fs_gso_ok = 0;            /* no UDP GSO in this kernel */
            else if (errno == EINVAL && lens[0] > 1)
                fs_gso_max_seg = lens[0] - 1;   /* a segment over the MTU, say */
            return fs_send_plain(fd, flags, bufs, lens, addrs, addrlens, n);
        }
        for (i = 0, j = 0; i < (unsigned int)r; i++)
            j += runs[i];
        return (int)j;
    #else
        for (i = 0; i < n; i++) {
            if (sendto(fd, bufs[i], lens[i], flags | MSG_NOSIGNAL,
                       (struct sockaddr *)&addrs[i], addrlens[i]) < 0)
                return i ? (int)i : -1;
        }
        return (int)n;
    #endif
    }
    #define FS_SUN_PATH_OFFSET ((socklen_t)offsetof(struct sockaddr_un, sun_path))
    """
    int fs_send_batch(int fd, int flags, char **bufs, size_t *lens,
                      sockaddr_storage *addrs, socklen_t *addrlens, unsigned int n) nogil
    int inet_pton(int af, const char *src, void *dst) nogil
    unsigned short htons(unsigned short) nogil
    unsigned int htonl(unsigned int) nogil
    socklen_t FS_SUN_PATH_OFFSET

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from os import fsencode as _fsencode


cdef bint _fill_sockaddr(int family, object address, sockaddr_storage *out,
                         socklen_t *outlen) except -1:
    """Fill *out* from a Python address the way the common case of
    ``socket.sendto`` would; False for anything unusual (host names,
    broadcast, scope ids, wrong types...), which the caller hands to
    ``sock.sendto`` itself, so the errors are the socket module's."""
    cdef sockaddr_in *a4
    cdef sockaddr_in6 *a6
    cdef sockaddr_un *au
    cdef Py_ssize_t n
    cdef bytes host, path
    cdef long port, flowinfo = 0, scope = 0
    memset(out, 0, sizeof(sockaddr_storage))
    if family == AF_INET or family == AF_INET6:
        if type(address) is not tuple:
            return False
        n = len(<tuple>address)
        if n < 2 or (family == AF_INET and n != 2) or n > 4:
            return False
        if type(address[0]) is not str or type(address[1]) is not int:
            return False
        try:
            host = (<str>address[0]).encode("ascii")
        except UnicodeError:
            return False
        port = address[1]
        if port < 0 or port > 65535 or b"\0" in host:
            return False
        if family == AF_INET:
            a4 = <sockaddr_in *>out
            a4.sin_family = AF_INET
            a4.sin_port = htons(<unsigned short>port)
            if inet_pton(AF_INET, host, &a4.sin_addr) != 1:
                return False
            outlen[0] = sizeof(sockaddr_in)
            return True
        if n > 2:
            if type(address[2]) is not int:
                return False
            flowinfo = address[2]
        if n > 3:
            if type(address[3]) is not int:
                return False
            scope = address[3]
        if flowinfo < 0 or flowinfo > 0xfffff or scope < 0 or scope > 0xffffffff:
            return False
        a6 = <sockaddr_in6 *>out
        a6.sin6_family = AF_INET6
        a6.sin6_port = htons(<unsigned short>port)
        a6.sin6_flowinfo = htonl(<unsigned int>flowinfo)
        a6.sin6_scope_id = <unsigned int>scope
        if inet_pton(AF_INET6, host, &a6.sin6_addr) != 1:
            return False   # includes "addr%scope", resolved by the socket module
        outlen[0] = sizeof(sockaddr_in6)
        return True
    if family == AF_UNIX:
        if type(address) is str:
            try:
                path = _fsencode(address)
            except UnicodeError:
                return False
        elif type(address) is bytes:
            path = address
        else:
            return False
        n = len(path)
        if n == 0 or n >= <Py_ssize_t>sizeof((<sockaddr_un *>out).sun_path):
            return False
        au = <sockaddr_un *>out
        au.sun_family = AF_UNIX
        memcpy(au.sun_path, PyBytes_AS_STRING(path), <size_t>n)
        # An abstract address (leading NUL) is exactly its bytes; a path
        # gets its terminating NUL, as the socket module sends it.
        outlen[0] = FS_SUN_PATH_OFFSET + <socklen_t>n + (0 if au.sun_path[0] == 0 else 1)
        return True
    return False


def send_batch(sock, list items, Py_ssize_t start=0):
    """Send ``items[start:]``, a list of ``(data, address)``, in order, as
    ``sock.sendto(data, address)`` each would (``sendmmsg`` on Linux: up to
    64 datagrams per system call, a run of them to one address as one
    ``UDP_SEGMENT`` message where it can; see fs_send_batch).

    Returns how many were sent from *start* on: at least 1, fewer than all
    when one could not be sent -- call again from there, and that call
    raises its ``OSError``.  0 when there is nothing to send.  A socket with
    a timeout, a family other than INET/INET6/UNIX, or an item that is not
    ``(bytes, plain numeric address)`` goes through ``sock.sendto``.
    """
    cdef sockaddr_storage addrs[64]
    cdef socklen_t addrlens[64]
    cdef char *bufs[64]
    cdef size_t lens[64]
    cdef Py_ssize_t total = len(items)
    cdef int fd, family, err = 0, n = 0, flags = MSG_DONTWAIT
    cdef unsigned int count = 0
    cdef list keep
    if start < 0:
        raise ValueError("negative start")
    if start >= total:
        return 0
    if not isinstance(sock, _socket_cls):
        sock.sendto(*items[start])
        return 1
    timeout = sock.timeout
    family = _sock_family_get(sock)
    if ((timeout is not None and timeout != 0.0)
            or (family != AF_INET and family != AF_INET6 and family != AF_UNIX)):
        _socket_cls.sendto(sock, *items[start])
        return 1
    keep = []      # the bytes objects stay alive while the GIL is released
    while start + count < total and count < 64:
        item = items[start + count]
        if (type(item) is not tuple or len(<tuple>item) != 2
                or type((<tuple>item)[0]) is not bytes
                or not _fill_sockaddr(family, (<tuple>item)[1], &addrs[count],
                                      &addrlens[count])):
            break
        data = (<tuple>item)[0]
        keep.append(data)
        bufs[count] = PyBytes_AS_STRING(data)
        lens[count] = <size_t>PyBytes_GET_SIZE(data)
        count += 1
    if count == 0:
        # Not a plain item: the socket module sends it (and raises its errors).
        _socket_cls.sendto(sock, *items[start])
        return 1
    fd = sock.fileno()
    while True:
        if flags:
            # Usually there is room: no need to let go of the GIL.
            n = fs_send_batch(fd, flags, bufs, lens, addrs, addrlens, count)
        else:
            with nogil:
                n = fs_send_batch(fd, 0, bufs, lens, addrs, addrlens, count)
        if n >= 0:
            return n
        err = errno
        if would_block(err):
            if timeout is not None or not flags:
                raise_errno(err)     # a non-blocking socket: what sendto() raises
            flags = 0                # blocking socket: wait for room
        elif err == EINTR:
            check_signals()
        else:
            raise_errno(err)


# ---------------------------------------------------------------------------
# One reply: sendto() without the socket module's argument parsing.
# ---------------------------------------------------------------------------

cdef extern from *:
    """
    #include <sys/socket.h>
    #define fs_c_sendto(fd, buf, n, flags, addr, addrlen) \
        sendto((fd), (buf), (n), (flags), (const struct sockaddr *)(addr), (addrlen))
    """
    ssize_t fs_c_sendto(int fd, const char *buf, size_t n, int flags,
                        sockaddr_storage *addr, socklen_t addrlen) nogil

cdef extern from "Python.h":
    int _dest_audit "PySys_Audit"(const char *event, const char *fmt, ...) except -1
    # borrowed reference (NULL: none); the type's method cache makes it cheap
    _AddrPyObject *_type_lookup "_PyType_Lookup"(_AddrPyObject *tp, _AddrPyObject *name)

# socket.socket's own sendto, to tell that nobody has replaced it on the
# class (mock.patch.object(socket.socket, "sendto"), say): then the call must
# go to the replacement, as sock.sendto() would.
cdef object _sendto_name = "sendto"
cdef _AddrPyObject *_sendto_orig = _type_lookup(<_AddrPyObject *>_socket_cls,
                                                <_AddrPyObject *>_sendto_name)

# The sockaddr of recently used destination objects, by identity (a
# direct-mapped cache; read and written with the GIL held).  A slot holds a
# reference to its object, so the same pointer is the same object; the
# objects cached are tuples of str and int (or str/bytes paths), which
# cannot change, so their sockaddr cannot either.  A reply usually goes to
# the address tuple recvfrom handed out (itself cached above), so parsing it
# -- the socket module's argument parsing, str encoding and inet_pton() --
# is done once per peer instead of once per datagram.
cdef enum:
    _DEST_SLOTS = 64

cdef struct _DestSlot:
    _AddrPyObject *obj       # NULL: empty
    int family
    socklen_t addrlen
    sockaddr_storage addr

cdef _DestSlot _dest_cache[_DEST_SLOTS]


cdef _DestSlot *_dest_lookup(int family, object address) except NULL:
    """The slot of *address* for *family*, filled now if it was not; its
    obj is not *address* when that is not a plain numeric address (the
    caller then leaves it to the socket module)."""
    cdef size_t h = <size_t><void *>address
    cdef _DestSlot *slot = &_dest_cache[((h >> 4) ^ (h >> 10)) & (_DEST_SLOTS - 1)]
    cdef sockaddr_storage addr
    cdef socklen_t addrlen = 0
    cdef _AddrPyObject *old
    if slot.obj == <_AddrPyObject *>address and slot.family == family:
        return slot
    if not _fill_sockaddr(family, address, &addr, &addrlen):
        return slot
    old = slot.obj
    _addr_incref(address)
    slot.obj = <_AddrPyObject *>address
    slot.family = family
    slot.addrlen = addrlen
    memcpy(&slot.addr, &addr, sizeof(addr))
    _addr_xdecref(old)   # a tuple of str and int, a str or bytes: no Python code runs
    return slot


def sendto(sock, data, address):
    """sendto(sock, data, address)
--

Send the datagram *data* to *address*: ``sock.sendto(data, address)``,
    with the same result, errors and audit event.

    For a plain ``socket.socket`` (INET, INET6 or UNIX) in blocking or
    non-blocking mode, *data* ``bytes`` and *address* a numeric address,
    the send runs in C: the address is parsed once per address object (not
    once per call), and the send is tried without letting go of the GIL,
    which is released only if it has to wait for room (EINTR retried per
    PEP 475).  Anything else goes through ``sock.sendto``.
    """
    cdef fs_sockobject *s
    cdef _DestSlot *slot
    cdef sockaddr_storage addr
    cdef socklen_t addrlen
    cdef int fd, family, flags, err = 0
    cdef bint blocking
    cdef ssize_t n
    cdef const char *buf
    cdef size_t length
    if (type(sock) is not _socket_cls or type(data) is not bytes or not _sio_layout_ok
            or _type_lookup(<_AddrPyObject *>_socket_cls, <_AddrPyObject *>_sendto_name)
            != _sendto_orig):
        return sock.sendto(data, address)
    s = <fs_sockobject *><_AddrPyObject *>sock
    if s.sock_timeout > 0:
        return sock.sendto(data, address)     # a timeout: the socket module waits
    blocking = s.sock_timeout < 0
    family = s.sock_family
    if family != AF_INET and family != AF_INET6 and family != AF_UNIX:
        return sock.sendto(data, address)
    slot = _dest_lookup(family, address)
    if slot.obj != <_AddrPyObject *>address:
        return sock.sendto(data, address)     # not a plain numeric address
    # The slot may be reused by another thread once the GIL is released.
    addrlen = slot.addrlen
    memcpy(&addr, &slot.addr, <size_t>addrlen)
    _dest_audit("socket.sendto", "OO", <_AddrPyObject *>sock, <_AddrPyObject *>address)
    buf = PyBytes_AS_STRING(data)
    length = <size_t>PyBytes_GET_SIZE(data)
    flags = MSG_DONTWAIT
    while True:
        fd = s.sock_fd      # re-read: a signal handler may have closed it
        if flags:
            # Usually there is room: no need to let go of the GIL.
            n = fs_c_sendto(fd, buf, length, flags, &addr, addrlen)
            if n < 0:
                err = errno
        else:
            with nogil:
                n = fs_c_sendto(fd, buf, length, 0, &addr, addrlen)
                if n < 0:
                    err = errno
        if n >= 0:
            break
        if would_block(err) and flags:
            if not blocking:
                raise_errno(err)     # a non-blocking socket: what sendto() raises
            flags = 0                # a blocking socket: wait for room
        elif err == EINTR:
            check_signals()
        else:
            raise_errno(err)
    return n


def trim_heap():
    """trim_heap()
--

Give the C heap's free memory back to the system (glibc's
    ``malloc_trim(0)``, with the GIL released): True if some was released,
    False if none was, None where the C library has no such call.  Long-lived
    worker threads that handle large requests can leave glibc's arenas with
    much free but resident memory; ``ThreadPoolMixIn`` calls this every
    ``heap_trim_interval`` seconds."""
    cdef int r
    with nogil:
        r = fs_heap_trim()
    return None if r < 0 else r == 1
