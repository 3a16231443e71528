"""The request socket of a greenlet server, shared by both cores.

``GreenSocket`` is a ``socket.socket`` whose descriptor is always in
non-blocking mode.  Its blocking methods (``recv``, ``recv_into``, ``send``,
``sendall``, and what ``makefile()`` builds on them) try the system call and,
when it would block, ask the server's hub to wait for the descriptor: the
handler's greenlet is suspended and the hub runs the other connections
meanwhile.  ``gettimeout()``/``settimeout()``/``setblocking()`` keep their
stdlib meaning for the user: the timeout is kept here and bounds each wait
(``TimeoutError("timed out")``), 0 makes the methods raise
``BlockingIOError`` instead of waiting.

The compiled reader and writer (``SocketReader``/``SocketWriter``) take the
same fast path for a ``GreenSocket`` as for a plain ``socket.socket``: they
read the descriptor directly, and only when a call would block do they read
``_fastsock_timeout`` and wait through ``_fastsock_hub``.
"""
import math
import socket
from time import monotonic

__all__ = ["GreenSocket"]

_MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0)
_base = socket.socket
_recv = _base.recv
_recv_into = _base.recv_into
_send = _base.send
_settimeout = _base.settimeout
# The C-level getters: plain ints, without building the enums.
_family = socket._socket.socket.family.__get__
_type = socket._socket.socket.type.__get__
_proto = socket._socket.socket.proto.__get__


class GreenSocket(socket.socket):
    """A connection served by a greenlet hub (see the module docstring)."""

    __slots__ = ("_fastsock_hub", "_fastsock_timeout")

    @classmethod
    def adopt(cls, sock, hub):
        """A GreenSocket taking over the descriptor of the connected socket
        *sock* (detached: *sock* is closed afterwards), with its timeout."""
        timeout = sock.gettimeout()
        family, type_, proto = _family(sock), _type(sock), _proto(sock)
        fd = sock.detach()
        try:
            self = cls(family, type_, proto, fileno=fd)
        except BaseException:
            socket.close(fd)
            raise
        self._fastsock_hub = hub
        self._fastsock_timeout = timeout
        _settimeout(self, 0.0)
        return self

    def _fastsock_attached(self):
        try:
            self._fastsock_hub
        except AttributeError:
            return False
        return True

    def _fastsock_attach(self, hub, timeout):
        # A GreenSocket made by core.accept(sock, GreenSocket) (already
        # non-blocking underneath): join *hub*, with the user's *timeout*.
        self._fastsock_hub = hub
        self._fastsock_timeout = timeout

    # -- the user's view of the timeout --------------------------------------

    def gettimeout(self):
        return self._fastsock_timeout

    def settimeout(self, value):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                try:
                    value = float(value)
                except (TypeError, ValueError):
                    raise TypeError("Timeout value must be int, float or None") from None
            value = float(value)
            if math.isnan(value):
                raise ValueError("Invalid value NaN (not a number)")
            if value < 0.0:
                raise ValueError("Timeout value out of range")
        self._fastsock_timeout = value

    def setblocking(self, flag):
        self._fastsock_timeout = None if flag else 0.0

    def getblocking(self):
        return self._fastsock_timeout != 0.0

    @property
    def timeout(self):
        return self._fastsock_timeout

    # -- waiting through the hub ---------------------------------------------

    def _fastsock_deadline(self):
        # The deadline of one operation: 0.0 none; None: do not wait at all.
        timeout = self._fastsock_timeout
        if timeout is None:
            return 0.0
        if timeout == 0.0:
            return None
        return monotonic() + timeout

    def _fastsock_wait(self, write, deadline):
        if not self._fastsock_hub.wait(self.fileno(), write, deadline):
            raise TimeoutError("timed out")

    def _fastsock_io(self, call, write, flags, *args):
        # call(self, *args) (the base class's recv/recv_into/send), waiting
        # in the hub while it would block, under the socket's timeout; a
        # non-blocking socket (or MSG_DONTWAIT) raises BlockingIOError.
        try:
            return call(self, *args)
        except BlockingIOError:
            deadline = self._fastsock_deadline()
            if deadline is None or flags & _MSG_DONTWAIT:
                raise
        while True:
            self._fastsock_wait(write, deadline)
            try:
                return call(self, *args)
            except BlockingIOError:
                pass

    def recv(self, bufsize, flags=0):
        return self._fastsock_io(_recv, False, flags, bufsize, flags)

    def recv_into(self, buffer, nbytes=0, flags=0):
        return self._fastsock_io(_recv_into, False, flags, buffer, nbytes, flags)

    def send(self, data, flags=0):
        return self._fastsock_io(_send, True, flags, data, flags)

    def sendall(self, data, flags=0):
        # One deadline for the whole call, as socket.sendall().
        deadline = 0.0
        with memoryview(data) as view, view.cast("B") as view:
            total = len(view)
            sent = 0
            while sent < total:
                try:
                    sent += _send(self, view[sent:], flags)
                    continue
                except BlockingIOError:
                    if deadline == 0.0:
                        deadline = self._fastsock_deadline()
                    if deadline is None or flags & _MSG_DONTWAIT:
                        raise
                self._fastsock_wait(True, deadline)

    def sendfile(self, file, offset=0, count=None):
        # socket.sendfile() would wait for os.sendfile() in a selector of its
        # own, blocking the hub: send() the file's data instead (waits here).
        return self._sendfile_use_send(file, offset, count)

    def dup(self):
        raise OSError("a greenlet server's request socket cannot be duplicated")
