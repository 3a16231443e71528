"""GreenletMixIn: each connection in a greenlet, switched by one epoll loop.

A fastsock extra (needs the ``greenlet`` package: ``pip install
'fastsock[greenlet]'``).  The thread running ``serve_forever()`` is the hub:
it waits for the listening socket, the wakeup fd and every connection that
would block in one ``epoll_wait`` (GIL released) and switches to the
greenlets whose connections are ready.  No thread is woken per message.
"""
import socket
from time import monotonic

from ._green_socket import GreenSocket
from ._server import TCPServer, ThreadingMixIn

__all__ = ["GreenletMixIn", "GreenletTCPServer"]

_greenlet = None


def _import_greenlet():
    global _greenlet
    if _greenlet is None:
        try:
            import greenlet
        except ImportError as exc:
            raise ImportError(
                "fastsock's greenlet servers need the 'greenlet' package: "
                "pip install greenlet (or 'fastsock[greenlet]')") from exc
        _greenlet = greenlet
    return _greenlet


class GreenletMixIn:
    """Mix-in class to handle each connection in a greenlet of the thread
    that runs ``serve_forever()`` (a fastsock extra; needs ``greenlet``).

    The handler is an ordinary ``StreamRequestHandler``/``BaseRequestHandler``
    subclass.  Its request socket is a ``GreenSocket``: whenever ``rfile``,
    ``wfile`` or the socket's own ``recv``/``recv_into``/``send``/``sendall``
    (and ``makefile()`` streams) would block, the greenlet is suspended and
    the loop serves the other connections until this one is ready.  Timeouts
    (the socket's, ``idle_timeout``, ``line_timeout``, ``write_timeout``)
    raise ``TimeoutError`` as they do on threads.

    **Caveat**: a handler that blocks in anything else -- ``time.sleep()``,
    a database call, a lock, a socket it opened itself -- stalls every
    connection of the server until it returns.  TLS (``ssl_context``) is not
    supported.

    Each connection runs ``finish_request()`` then ``shutdown_request()`` in
    its greenlet, ``handle_error()`` on an exception, as
    ``ThreadingMixIn.process_request_thread()`` does; ``get_request()``
    returns the ``GreenSocket``, so ``verify_request()`` and
    ``process_request()`` see the socket the handler gets.  Up to
    ``accept_batch`` connections are accepted per wake-up of the loop.

    When ``serve_forever()`` returns (``shutdown()``, Ctrl-C) or
    ``server_close()`` runs, the connections still open are ended:
    ``GreenletExit`` is thrown into each greenlet, so its ``finally`` blocks,
    ``finish()`` and ``shutdown_request()`` run (a send or receive that would
    block then raises ``ConnectionAbortedError``), and no descriptor or
    greenlet is left behind.  ``handle_request()`` accepts one connection and
    serves it (and any others still open) until that one is finished.
    """

    #: most connections accepted per wake-up of the loop
    accept_batch = 64

    #: most finished greenlets kept for the next connections.  A greenlet
    #: that has run a request waits for the next one instead of ending: a
    #: new greenlet costs an mmap()/munmap() of its Python frame stack on
    #: CPython 3.11+ besides its creation.  0: a greenlet per connection.
    greenlet_reuse = 64

    def __init__(self, *args, **kwargs):
        _import_greenlet()
        if getattr(self, "ssl_context", None) is not None:
            raise ValueError("TLS (ssl_context) is not supported by the greenlet servers")
        super().__init__(*args, **kwargs)

    # -- the hub ---------------------------------------------------------------

    def _green_hub(self):
        hub = vars(self).get("_fastsock_hub")
        if hub is None:
            if getattr(self, "ssl_context", None) is not None:
                raise ValueError("TLS (ssl_context) is not supported by the "
                                 "greenlet servers")
            try:
                hub = self._core.Hub()
            except OSError:     # no epoll: the twin's selectors
                from ._green_py import Hub
                hub = Hub()
            vars(self)["_fastsock_hub"] = hub
            vars(self)["_fastsock_greenlets"] = set()
            vars(self)["_fastsock_idle"] = []
        return hub

    # get_request() accepts straight into a non-blocking GreenSocket.
    _fastsock_conn_class = GreenSocket

    def _green_socket(self, request):
        if type(request) is GreenSocket:
            if not request._fastsock_attached():
                # Fresh from accept(): the timeout socket.accept() gives.
                request._fastsock_attach(self._green_hub(), socket.getdefaulttimeout())
            return request
        if type(request) is not socket.socket:
            raise TypeError("a greenlet server needs socket.socket requests, not %s"
                            % type(request).__name__)
        return GreenSocket.adopt(request, self._green_hub())

    def get_request(self):
        """Accept a connection: ``(GreenSocket, client_address)``."""
        request, client_address = super().get_request()
        return self._green_socket(request), client_address

    def process_request(self, request, client_address):
        """Start a greenlet running the request (it runs until it first
        waits, then this returns)."""
        greenlet = _import_greenlet()
        request = self._green_socket(request)
        idle = self._fastsock_idle
        glet = idle.pop() if idle else greenlet.greenlet(self._green_run)
        self._fastsock_greenlets.add(glet)
        glet.switch(request, client_address)

    def _green_run(self, request, client_address):
        # A greenlet's life: the requests process_request() hands it, one
        # after the other; in between it waits in the idle list (at most
        # greenlet_reuse of them), switched out to the loop.
        current = _greenlet.getcurrent()
        while True:
            self.process_request_greenlet(request, client_address)
            request = client_address = None
            idle = vars(self).get("_fastsock_idle")
            if (idle is None or len(idle) >= self.greenlet_reuse
                    or self._BaseServer__shutdown_request):
                return
            idle.append(current)
            request, client_address = current.parent.switch()

    def process_request_greenlet(self, request, client_address):
        """Run one request in its greenlet (as process_request_thread)."""
        fd = request.fileno()
        try:
            # finish_request(), handle_error() on an exception, then
            # shutdown_request(): what a ThreadingMixIn thread runs.
            ThreadingMixIn.process_request_thread(self, request, client_address)
        finally:
            hub = vars(self).get("_fastsock_hub")
            if hub is not None:
                hub.forget(fd, request.fileno() < 0)
            self._fastsock_greenlets.discard(_greenlet.getcurrent())

    def _green_accept(self):
        # Accept until the backlog is empty (at most accept_batch): the
        # body of _handle_request_noblock(), stopping at EAGAIN.
        for _ in range(self.accept_batch):
            try:
                request, client_address = self.get_request()
            except BlockingIOError:
                return
            except OSError:
                self._fastsock_counters.accept_error()
                return
            self._fastsock_dispatch(request, client_address)

    # -- serving ---------------------------------------------------------------

    def serve_forever(self, poll_interval=0.5):
        """Serve every connection in this thread until shutdown().

        One wait (epoll, GIL released) covers the listening socket, the
        wakeup fd and the connections; service_actions() runs after every
        round of accepts and at least every *poll_interval* seconds.  On return the open
        connections are ended (see the class docstring).
        """
        greenlet = _import_greenlet()
        hub = self._green_hub()
        core = self._core
        READY, WOKEN = core.READY, core.WOKEN
        is_shut_down = self._BaseServer__is_shut_down
        is_shut_down.clear()
        waker = core.Waker()
        with self._BaseServer__waker_lock:
            self._BaseServer__waker = waker
        sock = self.socket
        timeout = sock.gettimeout()
        try:
            hub.start(greenlet)
            sock.setblocking(False)     # accept until EAGAIN
            fd = self.fileno()
            wfd = waker.fileno()
            poll = hub.poll
            while not self._BaseServer__shutdown_request:
                ready = poll(fd, wfd, poll_interval)
                if self._BaseServer__shutdown_request:
                    break
                if ready & READY:
                    self._green_accept()
                if ready & WOKEN:
                    waker.drain()
                self.service_actions()
        finally:
            try:
                self._green_end_all()
            finally:
                hub.unwatch()
                hub.stop()
                if sock.fileno() >= 0:
                    sock.settimeout(timeout)
                with self._BaseServer__waker_lock:
                    self._BaseServer__waker = None
                waker.close()
                self._BaseServer__shutdown_request = False
                is_shut_down.set()

    def handle_request(self):
        """Accept one connection (waiting at most ``timeout``, then
        ``handle_timeout()``) and serve it until its handler finishes; other
        connections still open are served meanwhile."""
        greenlet = _import_greenlet()
        hub = self._green_hub()
        timeout = self.socket.gettimeout()
        if timeout is None:
            timeout = self.timeout
        elif self.timeout is not None:
            timeout = min(timeout, self.timeout)
        deadline = None if timeout is None else monotonic() + timeout
        sock = self.socket
        saved = sock.gettimeout()
        hub.start(greenlet)
        try:
            fd = self.fileno()
            READY = self._core.READY
            while True:
                left = None if deadline is None else max(0.0, deadline - monotonic())
                if hub.poll(fd, -1, left, True) & READY:
                    break
                if deadline is not None and monotonic() >= deadline:
                    hub.unwatch()
                    return self.handle_timeout()
            hub.unwatch()
            before = set(self._fastsock_greenlets)
            sock.setblocking(False)
            try:
                request, client_address = self.get_request()
            except OSError:
                self._fastsock_counters.accept_error()
                return
            finally:
                sock.settimeout(saved)
            self._fastsock_dispatch(request, client_address)
            mine = self._fastsock_greenlets - before
            while mine & self._fastsock_greenlets:
                hub.poll(-1, -1, None, True)
        finally:
            hub.unwatch()
            hub.stop()

    def _green_end_all(self):
        # End the connections still open: GreenletExit into each greenlet
        # (its finally blocks and shutdown_request() run; a wait raises
        # ConnectionAbortedError meanwhile).
        hub = vars(self).get("_fastsock_hub")
        glets = vars(self).get("_fastsock_greenlets")
        idle = vars(self).get("_fastsock_idle")
        if idle:
            # The idle ones wait for a request, not for I/O: end them first.
            greenlet = _import_greenlet()
            while idle:
                glet = idle.pop()
                try:
                    glet.throw(greenlet.GreenletExit)
                except greenlet.error:
                    pass    # another thread's (server_close() elsewhere)
        if hub is None or not glets:
            return
        greenlet = _import_greenlet()
        hub.closing = True
        try:
            for _ in range(3):
                for glet in list(glets):
                    if glet.dead:
                        glets.discard(glet)
                        continue
                    try:
                        glet.throw(greenlet.GreenletExit)
                    except greenlet.error:
                        # Another thread's greenlet (server_close() called
                        # outside the serving thread): cannot be switched to.
                        glets.discard(glet)
                        continue
                    except Exception:
                        # Raised past the handler's own handling (its
                        # finally blocks failed): report, go on.
                        self.handle_error(None, None)
                    if glet.dead:
                        glets.discard(glet)
                if not glets:
                    break
        finally:
            hub.closing = False

    def server_close(self):
        super().server_close()
        self._green_end_all()
        hub = vars(self).pop("_fastsock_hub", None)
        if hub is not None:
            hub.close()


class GreenletTCPServer(GreenletMixIn, TCPServer):
    """TCPServer with each connection in a greenlet (see GreenletMixIn)."""


if hasattr(socket, "AF_UNIX"):
    from ._server import UnixStreamServer

    __all__ += ["GreenletUnixStreamServer"]

    class GreenletUnixStreamServer(GreenletMixIn, UnixStreamServer):
        """UnixStreamServer with each connection in a greenlet (see GreenletMixIn)."""
