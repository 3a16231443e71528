"""Request handler classes.

``StreamRequestHandler`` gives its ``rfile``/``wfile`` from the core
(``SocketReader``/``SocketWriter``): compiled buffered streams that behave like
``socket.makefile('rb', rbufsize)`` and the stdlib's ``_SocketWriter`` /
``socket.makefile('wb', wbufsize)``.
"""
import socket
from io import BytesIO

from . import _backend

__all__ = ["BaseRequestHandler", "StreamRequestHandler", "DatagramRequestHandler"]

#: The stdlib name of the unbuffered writer.  ``_SocketWriter(sock)`` sends
#: every byte before ``write()`` returns, and is an ``io.BufferedIOBase``.
_SocketWriter = _backend.core.SocketWriter


class BaseRequestHandler:
    """Base class of request handlers: one instance per request.

    The constructor sets ``request``, ``client_address`` and ``server``,
    then calls ``setup()``, ``handle()`` and (always) ``finish()``.
    """

    def __init__(self, request, client_address, server):
        self.request = request
        self.client_address = client_address
        self.server = server
        self.setup()
        try:
            self.handle()
        finally:
            self.finish()

    def setup(self):
        pass

    def handle(self):
        pass

    def finish(self):
        pass


class StreamRequestHandler(BaseRequestHandler):
    """Handler for stream sockets: ``rfile`` to read, ``wfile`` to write.

    ``rbufsize`` (-1: default buffer size; 0: unbuffered, never reads past
    what it returns), ``wbufsize`` (0: every write is sent before it
    returns; otherwise buffered until flush/close), ``timeout`` (applied to
    the connection with settimeout when not None) and
    ``disable_nagle_algorithm`` (sets TCP_NODELAY) keep their stdlib meaning.
    ``tcp_nodelay`` (fastsock, default True) sets TCP_NODELAY on TCP
    connections even when ``disable_nagle_algorithm`` is False.

    Limits and deadlines (fastsock; each None by default = no limit, as in
    the stdlib), given to ``rfile`` (see ``SocketReader``):

    ``max_line_size``
        longest line, newline included, that ``rfile.readline()`` (or
        iterating ``rfile``) returns; a longer one raises
        ``fastsock.LineTooLong`` as soon as more than that many bytes have
        arrived without a newline, so a client cannot make the server buffer
        an endless line.  ``readline(limit)`` with a smaller limit is
        unaffected (http.server's ``readline(65537)`` is capped).
    ``line_timeout``
        seconds one ``rfile`` read call (a ``readline()``, ``read(n)``...)
        may take in all when it has to wait for data: a client trickling a
        byte now and then cannot hold it open past that (slowloris).
    ``idle_timeout``
        seconds a read may wait for its first byte when nothing is buffered:
        how long a keep-alive connection may sit idle between requests.

    They combine with ``timeout`` (the socket's per-operation timeout):
    whichever expires first raises ``TimeoutError``, and ``rfile`` refuses
    to read again.  The exceptions reach ``handle_error`` like any other;
    ``ThreadPoolMixIn`` with ``quiet_disconnects`` logs them at DEBUG.

    ``write_timeout`` (fastsock, None by default) is the same for ``wfile``:
    seconds one ``wfile.write()``/``flush()`` may spend waiting for the
    client to take the bytes, in all (not per partial send), so a client
    that stops reading cannot hold the handler for longer; then
    ``TimeoutError`` is raised, ``wfile`` refuses to send again and
    ``finish()`` drops what is left unsent.  See ``SocketWriter``.

    When the handler finishes, the bytes its ``rfile`` received and its
    ``wfile`` sent are added to the server's ``stats()`` (fastsock).
    """

    rbufsize = -1
    wbufsize = 0
    timeout = None
    disable_nagle_algorithm = False
    #: fastsock extra: set TCP_NODELAY on TCP connections (best effort; a
    #: Unix socket ignores it).  A reply written in several pieces -- headers,
    #: then body, as http.server does -- otherwise waits for the client's
    #: delayed ACK (about 40 ms) before its last piece leaves.  Replies to
    #: pipelined requests are still sent together (see SocketWriter).
    tcp_nodelay = True
    #: fastsock extras: limits of ``rfile`` (None: no limit; see above).
    max_line_size = None
    line_timeout = None
    idle_timeout = None
    #: fastsock extra: deadline of one wfile write/flush (None: none; see above).
    write_timeout = None

    #: the core whose streams this handler uses
    _core = _backend.core

    def setup(self):
        self.connection = self.request
        if self.timeout is not None:
            self.connection.settimeout(self.timeout)
        if self.disable_nagle_algorithm:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
        elif getattr(self, "tcp_nodelay", True):
            # getattr: fastsock.http gives this setup() to stdlib handler
            # classes, which do not define tcp_nodelay.
            try:
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass  # not TCP (a Unix socket), or not a socket at all
        core = self._core
        # getattr again, for the same stdlib handler classes.
        max_line = getattr(self, "max_line_size", None)
        line_timeout = getattr(self, "line_timeout", None)
        idle_timeout = getattr(self, "idle_timeout", None)
        if max_line is None and line_timeout is None and idle_timeout is None:
            if isinstance(self.connection, socket.socket):
                self.rfile = core.SocketReader(self.connection, self.rbufsize)
            else:
                # Not a socket (a test double, a wrapper object): read
                # through its own makefile(), as the stdlib does.
                self.rfile = self.connection.makefile('rb', self.rbufsize)
        else:
            self.rfile = core.SocketReader(self.connection, self.rbufsize,
                                           max_line=max_line, line_timeout=line_timeout,
                                           idle_timeout=idle_timeout)
        # Given the rfile, an unbuffered wfile coalesces the replies to
        # pipelined requests (see SocketWriter; nothing is held back once
        # the handler runs out of input or pauses).
        write_timeout = getattr(self, "write_timeout", None)
        if write_timeout is None:
            self.wfile = core.SocketWriter(self.connection, self.wbufsize, self.rfile)
        else:
            self.wfile = core.SocketWriter(self.connection, self.wbufsize, self.rfile,
                                           write_timeout=write_timeout)

    def finish(self):
        try:
            if not self.wfile.closed:
                try:
                    self.wfile.flush()
                except OSError:
                    # The peer may have gone away; nothing more can be sent.
                    pass
            self.wfile.close()
            self.rfile.close()
        finally:
            _count_bytes(self.server, self.rfile, self.wfile)


class DatagramRequestHandler(BaseRequestHandler):
    """Handler for datagrams: ``rfile`` holds the packet, ``wfile`` the reply.

    The reply is sent to the client in ``finish()``.
    """

    #: ``sock.sendto(data, address)``, done by the backend's core: for a plain
    #: socket the compiled one skips the socket module's argument parsing.
    _sendto = staticmethod(_backend.core.sendto)

    def setup(self):
        self.packet, self.socket = self.request
        self.rfile = BytesIO(self.packet)
        self.wfile = BytesIO()

    def finish(self):
        reply = self.wfile.getvalue()
        self._sendto(self.socket, reply, self.client_address)   # self.socket.sendto(...)
        try:
            counters = self.server._fastsock_counters
        except AttributeError:
            return      # not a fastsock server: no stats
        counters.add_bytes(len(self.packet), len(reply))


def _count_bytes(server, rfile, wfile):
    # Add a finished handler's traffic to its server's stats (a fastsock
    # server; anything else has no _fastsock_counters).
    counters = getattr(server, "_fastsock_counters", None)
    if counters is not None:
        nin = getattr(rfile, "bytes_read", 0)
        nout = getattr(wfile, "bytes_written", 0)
        counters.add_bytes(nin, nout)
