"""Server classes and mixins: the socketserver API as ordinary Python classes.

Every method below is a hook a subclass may override, exactly as in the
stdlib, and the serve loop always calls them through normal attribute lookup.
What is compiled lives behind ``self._core`` (``fastsock._core`` or its twin
``fastsock._core_py``): waiting for the listening socket and a wakeup fd with
the GIL released, ``accept`` and ``recvfrom``.  The core falls back to the
socket's own Python methods whenever it is not handed a plain
``socket.socket`` (for example an ``ssl.SSLSocket``), so those keep working.

Call order (the contract user code relies on)::

    serve_forever / handle_request
      -> _handle_request_noblock
           -> get_request -> verify_request -> process_request
                -> finish_request -> RequestHandlerClass(request, addr, self)
                -> shutdown_request -> close_request
           handle_error on Exception from process_request
      -> service_actions (serve_forever, every loop turn)
      -> handle_timeout (handle_request, when self.timeout passes)
"""
import collections
import errno
import logging
import os
import queue
import select
import socket
import sys
import threading
import time
import traceback
import weakref
from time import monotonic

from . import _backend
from ._stats import StatsExporter as _StatsExporter, _LazyCounters, snapshot as _stats_snapshot

#: fastsock's logger: handle_error() and the servers' own messages.
logger = logging.getLogger("fastsock")

# What a client going away looks like to its handler -- or a client that
# stalls or floods past the handler's rfile limits (line_timeout,
# idle_timeout, max_line_size).
from ._errors import LineTooLong as _LineTooLong
_ROUTINE_DISCONNECTS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError,
                        TimeoutError, _LineTooLong)

# accept() errors that mean "out of resources": retrying at once cannot help.
_ACCEPT_RESOURCE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EMFILE", "ENFILE", "ENOBUFS", "ENOMEM")
    if hasattr(errno, name))

__all__ = [
    "BaseServer", "TCPServer", "UDPServer", "ThreadingMixIn",
    "ThreadingTCPServer", "ThreadingUDPServer",
]


class BaseServer:
    """Base class of all servers.

    Methods for the caller: ``__init__(server_address, RequestHandlerClass)``,
    ``serve_forever(poll_interval=0.5)``, ``shutdown()``, ``handle_request()``,
    ``server_close()``, ``fileno()``, and use as a context manager.

    Methods that may be overridden: ``server_bind``, ``server_activate``,
    ``get_request``, ``handle_timeout``, ``verify_request``,
    ``process_request``, ``finish_request``, ``shutdown_request``,
    ``close_request``, ``service_actions``, ``handle_error``,
    ``server_close``.

    Class or instance attributes: ``timeout``, and in subclasses
    ``address_family``, ``socket_type``, ``allow_reuse_address``,
    ``allow_reuse_port``, ``request_queue_size``.

    Unlike the stdlib, ``shutdown()`` wakes a blocked ``serve_forever()`` at
    once through a wakeup file descriptor instead of waiting for the next
    ``poll_interval`` tick; ``poll_interval`` still paces ``service_actions()``
    and still bounds how long a loop that was stopped by setting
    ``_BaseServer__shutdown_request`` directly takes to notice.
    """

    #: the core (compiled or pure twin) this class runs on
    _core = _backend.core

    timeout = None

    # fastsock: the counters behind stats() (a self._core.Counters, created on
    # first use and kept in the instance's __dict__).
    _fastsock_counters = _LazyCounters()

    def __init__(self, server_address, RequestHandlerClass):
        """Constructor.  May be extended, do not override."""
        self.server_address = server_address
        self.RequestHandlerClass = RequestHandlerClass
        self.__is_shut_down = threading.Event()
        self.__shutdown_request = False
        self.__waker = None
        self.__waker_lock = threading.Lock()
        self._fastsock_counters   # uptime counts from here

    def server_activate(self):
        """Called by the constructor to activate the server.  May be overridden."""
        pass

    def serve_forever(self, poll_interval=0.5):
        """Handle one request at a time until shutdown.

        Waits for the server's socket with the GIL released, handles a
        request when it is ready, and calls ``service_actions()`` on every
        turn (at least every *poll_interval* seconds).  ``shutdown()`` wakes
        the wait immediately.
        """
        self.__is_shut_down.clear()
        core = self._core
        waker = core.Waker()
        with self.__waker_lock:
            self.__waker = waker
        pending = None
        try:
            wfd = waker.fileno()
            wait = core.wait_readable
            # A thread pool whose workers accept by themselves: this loop
            # only waits for shutdown() and runs service_actions().
            fd = self.fileno() if self._fastsock_listen else -1
            # None except for datagram servers (datagrams already received).
            pending = self._fastsock_pending
            if pending is not None:
                self._fastsock_serving(True)
            # Datagram servers whose hooks are the stock ones: a method that
            # handles the datagrams already received in a row (see
            # UDPServer._fastsock_drain).
            drain = self._fastsock_drain
            while not self.__shutdown_request:
                if pending is not None and pending():
                    if drain is not None:
                        drain()
                        continue
                    ready = core.READY
                elif fd >= 0:
                    ready = wait(fd, wfd, poll_interval)
                else:
                    ready = core.WOKEN if wait(wfd, -1, poll_interval) else 0
                # bpo-35017: shutdown() may have been called during the wait;
                # do not accept a new request after it.
                if self.__shutdown_request:
                    break
                if ready & core.READY:
                    self._handle_request_noblock()
                if ready & core.WOKEN:
                    waker.drain()
                elif ready & core.INVALID:
                    # The socket was closed under the loop.  The stdlib spins
                    # on it; we idle on the wakeup fd until shutdown() (or
                    # the next poll_interval tick).
                    if wait(wfd, -1, poll_interval):
                        waker.drain()
                self.service_actions()
        finally:
            try:
                if pending is not None:
                    self._fastsock_serving(False)   # sends the replies still queued
            finally:
                with self.__waker_lock:
                    self.__waker = None
                waker.close()
                self.__shutdown_request = False
                self.__is_shut_down.set()

    def shutdown(self):
        """Stop the serve_forever loop and wait until it has stopped.

        Must be called while serve_forever() runs in another thread, or it
        deadlocks.
        """
        self.__shutdown_request = True
        self._wake()
        self.__is_shut_down.wait()

    def _wake(self):
        # Wake a serve_forever() blocked in its wait, if one is running.
        with self.__waker_lock:
            waker = self.__waker
            if waker is not None:
                waker.wake()

    def service_actions(self):
        """Called by serve_forever() on every loop turn.  May be overridden."""
        pass

    #: Datagram servers: a method, true when get_request() has a request
    #: already received (a batch of datagrams), which the loop handles
    #: without waiting (and, when false, sending the replies queued so far:
    #: it is called just before the loop waits).  None for the others,
    #: which skip the call.
    _fastsock_pending = None
    _fastsock_drain = None
    #: False while ThreadPoolMixIn's workers accept connections themselves
    _fastsock_listen = True

    # The distinction between handling, getting, processing and finishing a
    # request is fairly arbitrary.  Remember:
    #
    # - handle_request() is the top-level call.  It waits for a request, then
    #   calls _handle_request_noblock() (or handle_timeout());
    # - get_request() returns the request and the client address;
    # - verify_request() decides whether to process it;
    # - process_request() runs it (a thread, a child, or inline);
    # - finish_request() instantiates the handler class.

    def handle_request(self):
        """Handle one request, waiting at most ``timeout`` seconds for it.

        The timeout is the smaller of the socket's timeout and ``self.timeout``
        (either may be None).  When it passes, ``handle_timeout()`` is called.
        """
        timeout = self.socket.gettimeout()
        if timeout is None:
            timeout = self.timeout
        elif self.timeout is not None:
            timeout = min(timeout, self.timeout)
        if timeout is not None:
            deadline = monotonic() + timeout
        pending = self._fastsock_pending
        if pending is not None and pending():
            return self._handle_request_noblock()
        fd = self.fileno()
        wait = self._core.wait_readable
        while True:
            if wait(fd, -1, timeout):
                return self._handle_request_noblock()
            if timeout is not None:
                timeout = deadline - monotonic()
                if timeout < 0:
                    return self.handle_timeout()

    def _handle_request_noblock(self):
        """Handle one request without blocking.

        The caller has seen the socket readable, but get_request() may still
        block or fail; OSError from it is ignored.
        """
        try:
            request, client_address = self.get_request()
        except OSError:
            self._fastsock_counters.accept_error()
            return
        self._fastsock_dispatch(request, client_address)

    def _fastsock_dispatch(self, request, client_address):
        # A request get_request() has returned: verify, process, report --
        # the rest of _handle_request_noblock() (the greenlet servers' loop
        # shares it).
        counters = self._fastsock_counters
        counters.accept()
        if self.verify_request(request, client_address):
            try:
                self.process_request(request, client_address)
            except Exception:
                self._fastsock_process_failed(request, client_address)
            except:
                self.shutdown_request(request)
                raise
        else:
            counters.reject_verify()
            self.shutdown_request(request)

    def _fastsock_process_failed(self, request, client_address):
        # process_request() (or the pool's queue) raised an Exception for an
        # accepted request; called in the except block: count, report, close.
        self._fastsock_count_error()
        self.handle_error(request, client_address)
        self.shutdown_request(request)

    def handle_timeout(self):
        """Called when handle_request() times out.  May be overridden."""
        pass

    def verify_request(self, request, client_address):
        """Return True to process the request.  May be overridden."""
        return True

    def process_request(self, request, client_address):
        """Run the request.  Overridden by ForkingMixIn and ThreadingMixIn."""
        self.finish_request(request, client_address)
        self.shutdown_request(request)

    def server_close(self):
        """Clean up the server.  May be overridden."""
        self._fastsock_stop_exporters()

    def finish_request(self, request, client_address):
        """Finish one request by instantiating RequestHandlerClass."""
        counters = self._fastsock_counters
        counters.begin()
        try:
            self.RequestHandlerClass(request, client_address, self)
        finally:
            counters.end()

    def shutdown_request(self, request):
        """Called to shut down and close an individual request."""
        self.close_request(request)

    def close_request(self, request):
        """Called to clean up an individual request."""
        pass

    # -- fastsock: statistics ------------------------------------------------

    def stats(self):
        """A consistent snapshot of the server's counters and gauges: a
        frozen ``fastsock.ServerStats`` (see there for what each counts)."""
        return _stats_snapshot(self._fastsock_counters, self._fastsock_gauges())

    def _fastsock_gauges(self):
        # Gauges a mix-in knows better than the counters (pool, children).
        return {}

    def _fastsock_count_error(self):
        # Called (in an except block) just before handle_error().
        self._fastsock_counters.error(isinstance(sys.exc_info()[1], _ROUTINE_DISCONNECTS))

    def export_stats(self, callback, interval=10.0, *, final=True):
        """Start calling ``callback(self.stats())`` every *interval* seconds
        from a daemon thread; return the ``fastsock.StatsExporter`` (its
        ``stop()`` ends it).  ``server_close()`` stops every exporter of the
        server, with a last export when *final* is true.  Exceptions from
        *callback* are logged on the ``fastsock`` logger and never reach
        the server."""
        exporter = _StatsExporter(self, callback, interval, final=final)
        with self.__waker_lock:
            vars(self).setdefault("_fastsock_exporters", []).append(exporter)
        return exporter.start()

    # Which server_close() stops the exporters: the one that runs last, once
    # the requests have finished (a mix-in's, after it joins its threads,
    # pool or children), so their final export has the final totals.
    _fastsock_closer = "base"

    def _fastsock_stop_exporters(self, closer="base"):
        if closer != self._fastsock_closer:
            return
        exporters = vars(self).pop("_fastsock_exporters", None)
        for exporter in exporters or ():
            exporter.stop()

    def handle_error(self, request, client_address):
        """Handle an exception raised while processing a request.

        When logging is configured (the ``fastsock`` logger or an ancestor
        has a handler), the error is logged on the ``fastsock`` logger with
        its traceback; otherwise the stdlib's text is printed to stderr.
        Serving continues either way.  May be overridden.
        """
        if logger.hasHandlers():
            logger.error("Exception occurred during processing of request from %s",
                         client_address, exc_info=True)
            return
        print('-' * 40, file=sys.stderr)
        print('Exception occurred during processing of request from',
              client_address, file=sys.stderr)
        traceback.print_exc()
        print('-' * 40, file=sys.stderr)

    def __enter__(self):
        return self

    def __exit__(self, *args):
        self.server_close()


class TCPServer(BaseServer):
    """A server on a stream socket (TCP by default).

    Attributes: ``address_family`` (AF_INET), ``socket_type``
    (SOCK_STREAM), ``request_queue_size`` (the listen backlog:
    ``socket.SOMAXCONN``, where the stdlib before 3.15 has 5),
    ``allow_reuse_address`` and ``allow_reuse_port`` (False).
    """

    address_family = socket.AF_INET
    socket_type = socket.SOCK_STREAM
    # The listen backlog.  The stdlib's 5 refuses bursts of clients (256
    # connecting at once cannot all get in); Python 3.15 moves to SOMAXCONN
    # too.  A longer accept queue changes nothing for a correct program.
    request_queue_size = socket.SOMAXCONN
    allow_reuse_address = False
    allow_reuse_port = False
    #: fastsock extra: an ``ssl.SSLContext`` to serve TLS with (None: plain).
    #: The handshake runs in finish_request(), i.e. in the request's thread,
    #: worker or child, never in the accept loop of a threading/forking/pool
    #: server, and is bounded by ``ssl_handshake_timeout`` seconds.
    ssl_context = None
    ssl_handshake_timeout = 10.0

    def __init__(self, server_address, RequestHandlerClass, bind_and_activate=True):
        """Constructor.  May be extended, do not override."""
        BaseServer.__init__(self, server_address, RequestHandlerClass)
        self.socket = self._fastsock_socket_class()(self.address_family, self.socket_type)
        if bind_and_activate:
            try:
                self.server_bind()
                self.server_activate()
            except:
                self.server_close()
                raise

    def _fastsock_socket_class(self):
        # The class of the server's socket (UDPServer: see reply_batch).
        return socket.socket

    def server_bind(self):
        """Bind the socket to server_address.  May be overridden."""
        if self.allow_reuse_address and hasattr(socket, "SO_REUSEADDR"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.allow_reuse_port and hasattr(socket, "SO_REUSEPORT"):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.socket.bind(self.server_address)
        self.server_address = self.socket.getsockname()

    def server_activate(self):
        """Start listening.  May be overridden."""
        self.socket.listen(self.request_queue_size)

    def server_close(self):
        """Close the listening socket.  May be overridden."""
        self.socket.close()
        self._fastsock_stop_exporters()

    def fileno(self):
        """Return the socket's file descriptor (what the serve loop waits on)."""
        return self.socket.fileno()

    def get_request(self):
        """Accept a connection: return ``(socket, client_address)``.  May be overridden.

        When the process or system is out of descriptors or buffers (EMFILE,
        ENFILE, ENOBUFS, ENOMEM), the stdlib's loop retries at full speed;
        here the error is logged once, the loop pauses (10 ms, doubling up
        to 1 s; shutdown() still wakes it) and resumes by itself.  The error
        is re-raised, so _handle_request_noblock() ignores it as before.
        """
        try:
            request = self._core.accept(self.socket, self._fastsock_conn_class)
        except OSError as exc:
            if exc.errno in _ACCEPT_RESOURCE_ERRNOS:
                self._accept_backoff(exc)
            raise
        if self.__backoff:
            self._fastsock_accepting_again()
        return request

    def _fastsock_accepting_again(self):
        self.__backoff = 0.0
        logger.warning("accepting connections again on %s", self.server_address)

    __backoff = 0.0
    #: the socket.socket subclass get_request() builds connections of, in
    #: non-blocking mode (see core.accept); None: plain sockets, as accept()
    _fastsock_conn_class = None

    def _accept_backoff(self, exc):
        if not self.__backoff:
            logger.warning("accept() on %s failed: %s; pausing new connections "
                           "until resources free up", self.server_address, exc)
            self.__backoff = 0.01
        else:
            self.__backoff = min(1.0, self.__backoff * 2)
        waker = self._BaseServer__waker
        if waker is not None:
            self._core.wait_readable(waker.fileno(), -1, self.__backoff)
        else:
            time.sleep(self.__backoff)

    def finish_request(self, request, client_address):
        """Instantiate RequestHandlerClass; with ``ssl_context``, on the TLS
        connection once its handshake has succeeded.  A failed or timed-out
        handshake is logged at DEBUG and the connection closed."""
        if self.ssl_context is None:
            return super().finish_request(request, client_address)
        tls = self._tls_handshake(request, client_address)
        if tls is None:
            self._fastsock_counters.reject_tls()
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            # The TLS socket owns the descriptor now (wrap_socket detached
            # the request); the caller's shutdown_request() finds it closed.
            self.shutdown_request(tls)

    def _tls_handshake(self, request, client_address):
        timeout = request.gettimeout()
        tls = None
        try:
            # A client that already reset: drop it while the plain socket is
            # still ours to close (a failing wrap_socket() would leave a
            # half-built SSLSocket owning the descriptor).
            request.getpeername()
        except OSError as exc:
            logger.debug("TLS client %s gone before the handshake: %r", client_address, exc)
            return None
        try:
            # Inside the try: a client that resets before the handshake makes
            # wrap_socket() itself fail (ENOTCONN), which is routine too.
            tls = self.ssl_context.wrap_socket(request, server_side=True,
                                               do_handshake_on_connect=False)
            tls.settimeout(self.ssl_handshake_timeout)
            tls.do_handshake()
            tls.settimeout(timeout)
        except (OSError, ValueError) as exc:  # ssl.SSLError, TimeoutError, resets
            logger.debug("TLS handshake with %s failed: %r", client_address, exc)
            if tls is not None:
                tls.close()
            return None
        return tls

    def shutdown_request(self, request):
        """Shut down the write side of the connection, then close it."""
        try:
            # Explicitly shut down: socket.close() alone only releases the
            # reference and does not send FIN while other references exist.
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # some platforms raise ENOTCONN here
        self.close_request(request)

    def close_request(self, request):
        """Close the connection socket."""
        request.close()


class UDPServer(TCPServer):
    """A server on a datagram socket; the request is ``(data, socket)``."""

    allow_reuse_address = False
    allow_reuse_port = False
    socket_type = socket.SOCK_DGRAM
    max_packet_size = 8192

    #: fastsock extra: datagrams taken from the socket per system call
    #: (``recvmmsg``).  The ones not handled yet wait in the server, in order,
    #: and the serve loop handles them before it waits again.  1: one
    #: ``recvfrom`` per request, as the stdlib.
    recv_batch = 32

    #: fastsock extra, opt-in: the most replies sent per system call
    #: (``sendmmsg``).  1 (the default): ``DatagramRequestHandler.finish()``
    #: sends its reply with one ``sendto``, as the stdlib.  Above 1 (read
    #: when the server is created), the server's socket is a
    #: ``socket.socket`` subclass whose ``sendto(bytes, address)``, called
    #: in the thread running ``serve_forever()``, queues the datagram and
    #: returns its length; the queue goes out in order, in one system call,
    #: when *reply_batch* datagrams wait, before the loop waits for more
    #: requests (a reply never waits for a later request), before any other
    #: method of that socket runs in that thread (so handler and hook code
    #: using the socket sees its earlier sends done), and when
    #: serve_forever() returns (on Linux, consecutive ones to one address,
    #: of one size but the last, as one UDP_SEGMENT message; the peer still
    #: receives them one by one).  Sends from other threads (ThreadingMixIn,
    #: ThreadPoolMixIn handlers), forked children and ``handle_request()``
    #: are not deferred.  What changes: ``type(server.socket)``, and a send
    #: that fails once queued is reported to ``handle_error((data, socket),
    #: address)`` at that point instead of raising in the handler.
    reply_batch = 1

    __pending = None      # datagrams received, not yet handled
    __receiver = None
    __deferring = None    # the reply-batching socket while serve_forever runs

    def get_request(self):
        """Receive a datagram: return ``((data, socket), client_address)``."""
        pending = self.__pending
        if not pending:
            receiver = self.__receiver
            if (receiver is None or receiver.sock is not self.socket
                    or receiver.bufsize != self.max_packet_size
                    or receiver.batch != max(1, self.recv_batch)):
                receiver = self.__receiver = self._core.DatagramReceiver(
                    self.socket, self.max_packet_size, max(1, self.recv_batch))
            batch = receiver.receive() if self.recv_batch > 1 else None
            if not batch:
                # Not batched, or nothing waiting after all: the stdlib's call.
                data, client_addr = self._core.recvfrom(self.socket, self.max_packet_size)
                return (data, self.socket), client_addr
            pending = self.__pending = collections.deque(batch)
            self.__spec = self.__speculate
        data, client_addr = pending.popleft()
        return (data, self.socket), client_addr

    def _fastsock_pending(self):
        if self.__pending:
            return True
        if self.__spec:
            # The last receive found datagrams waiting: under load more are
            # usually there, and one recvmmsg() beats poll() + recvmmsg().
            receiver = self.__receiver
            batch = None
            if (receiver is not None and receiver.sock is self.socket
                    and receiver.bufsize == self.max_packet_size and self.recv_batch > 1):
                batch = receiver.receive()
            if batch:
                self.__pending = collections.deque(batch)
                return True
            self.__spec = False
        # About to wait: the replies queued so far go out first.
        sock = self.__deferring
        if sock is not None and sock._fastsock_outbox:
            sock._fastsock_flush()
        return False

    def _fastsock_socket_class(self):
        return _ReplyBatchingSocket if self.reply_batch > 1 else socket.socket

    # The hooks _handle_request_noblock() may skip calling while they are
    # the stdlib's own (verify_request() is True; process_request() is
    # finish_request() then shutdown_request(), which does nothing here).
    _PLAIN_HOOKS = ("verify_request", "process_request", "finish_request",
                    "shutdown_request", "close_request")
    __plain = False
    __actions = True      # __drain calls service_actions() (False: it is the no-op)
    __speculate = False   # serve_forever with the stdlib get_request: try receiving before waiting
    __spec = False

    def _handle_request_noblock(self):
        """Handle one request without blocking (see BaseServer).

        While serve_forever() runs and none of verify_request,
        process_request, finish_request, shutdown_request and close_request
        is overridden, the calls that would do nothing but pass the request
        on are skipped: the handler, get_request() and handle_error() see
        the same calls, in the same order.
        """
        if not self.__plain:
            return super()._handle_request_noblock()
        try:
            request, client_address = self.get_request()
        except OSError:
            self._fastsock_counters.accept_error()
            return
        self.__run(request, client_address)

    def __run(self, request, client_address):
        # The handler for one datagram, with the same counts as the long
        # path (accepted, active, completed, errors) in two updates instead
        # of three, and handle_error() if it raises.
        counters = self._fastsock_counters
        counters.accept_begin()
        try:
            self.RequestHandlerClass(request, client_address, self)
        except Exception:
            counters.end()
            self._fastsock_count_error()
            self.handle_error(request, client_address)
        else:
            counters.end()

    def __drain(self):
        # serve_forever()'s loop for the datagrams already received, while
        # the hooks are plain (see _handle_request_noblock) and get_request()
        # is the stock one: per datagram, the calls the long way round makes
        # -- the handler, handle_error() if it raises, service_actions() --
        # in the same order, and the same shutdown check before the next.
        pending = self.__pending
        counters = self._fastsock_counters
        # service_actions() after every datagram, as the loop calls it --
        # unless it is BaseServer's, which does nothing (decided, as the
        # other hooks, when serve_forever() starts).
        actions = self.__actions
        while pending and self.__pending is pending:
            data, client_address = pending.popleft()
            request = (data, self.socket)
            # __run(request, client_address), inlined: the call costs ~740
            # of ~18,700 user-space instructions per echoed datagram.
            counters.accept_begin()
            try:
                self.RequestHandlerClass(request, client_address, self)
            except Exception:
                counters.end()
                self._fastsock_count_error()
                self.handle_error(request, client_address)
            else:
                counters.end()
            if actions:
                self.service_actions()
            if self._BaseServer__shutdown_request:
                return

    def _fastsock_serving(self, start):
        # serve_forever() starts (True) or ends (False): decide whether
        # _handle_request_noblock() may take its short path, and open or
        # close the window in which this thread's replies may be queued.
        instance = vars(self)
        self.__plain = start and _stock_hooks(
            self, [(name, UDPServer) for name in self._PLAIN_HOOKS])
        self.__speculate = self.__spec = (
            start and _stock_hooks(self, (("get_request", UDPServer),)))
        if self.__plain and self.__speculate:
            self.__actions = not _stock_hooks(self, (("service_actions", BaseServer),))
            instance["_fastsock_drain"] = self.__drain
        else:
            instance.pop("_fastsock_drain", None)
        sock = self.socket
        if not isinstance(sock, _ReplyBatchingSocket):
            return
        if start:
            self.__deferring = sock
            sock._fastsock_defer(max(1, self.reply_batch), self._fastsock_send_failed,
                                 self._core.send_batch)
        else:
            self.__deferring = None
            sock._fastsock_defer(0, None, None)

    def _fastsock_send_failed(self, sock, data, address):
        # A queued reply could not be sent (the OSError is being handled).
        self.handle_error((data, sock), address)

    def server_close(self):
        self.__pending = None
        super().server_close()

    def server_activate(self):
        # Datagram sockets do not listen.
        pass

    def shutdown_request(self, request):
        # Nothing to shut down for a datagram.
        self.close_request(request)

    def close_request(self, request):
        # The socket is the server's own; nothing to close.
        pass


def _flushes_first(name):
    base = getattr(socket.socket, name)

    def method(self, *args, **kwargs):
        if self._fastsock_outbox and self._fastsock_owner == _get_ident():
            self._fastsock_flush()
        return base(self, *args, **kwargs)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = base.__doc__
    return method


class _ReplyBatchingSocket(socket.socket):
    """The socket of a UDPServer with ``reply_batch`` > 1 (see there).

    ``sendto(bytes, address)`` from the serving thread queues the datagram;
    every other I/O or state-changing method sends the queue first.
    """

    __slots__ = ("_fastsock_outbox", "_fastsock_owner", "_fastsock_limit",
                 "_fastsock_on_error", "_fastsock_send")
    _fastsock_plain_recv = True    # the core may receive on it directly

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fastsock_outbox = []
        self._fastsock_owner = None     # the thread whose sends are queued
        self._fastsock_limit = 1
        self._fastsock_on_error = None
        self._fastsock_send = _backend.core.send_batch
        _batching_sockets.add(self)

    def _fastsock_defer(self, limit, on_error, send_batch):
        # limit > 0: queue the calling thread's sends, up to limit at a time,
        # and send them with send_batch (the server's core); 0: send what is
        # queued and stop queueing.
        if limit:
            self._fastsock_flush()
            self._fastsock_limit = limit
            self._fastsock_on_error = on_error
            self._fastsock_send = send_batch
            self._fastsock_owner = _get_ident()
        else:
            try:
                self._fastsock_flush()
            finally:
                self._fastsock_owner = None
                self._fastsock_on_error = None

    def sendto(self, data, *args):
        if self._fastsock_owner == _get_ident():
            if len(args) == 1 and type(data) is bytes:
                outbox = self._fastsock_outbox
                outbox.append((data, args[0]))
                if len(outbox) >= self._fastsock_limit:
                    self._fastsock_flush()
                return len(data)
            if self._fastsock_outbox:
                self._fastsock_flush()
        return socket.socket.sendto(self, data, *args)

    def _fastsock_flush(self):
        """Send the queued datagrams, in order (the serving thread only).

        A datagram that cannot be sent goes to the server's handle_error();
        what that queues goes out before the datagrams queued after the
        failed one, as it would have without the queue.
        """
        send_batch = self._fastsock_send
        while self._fastsock_outbox:
            outbox = self._fastsock_outbox
            self._fastsock_outbox = []
            i, n = 0, len(outbox)
            try:
                while i < n:
                    try:
                        i += send_batch(self, outbox, i)
                    except Exception:   # OSError; TypeError... for a bad address
                        data, address = outbox[i]
                        i += 1
                        on_error = self._fastsock_on_error
                        if on_error is None:
                            raise
                        on_error(self, data, address)
                        if self._fastsock_outbox:
                            break   # the error handler's sends come first
            finally:
                if i < n:
                    # After what the error handler queued; and if this was
                    # interrupted (KeyboardInterrupt, an error handler
                    # raising), they stay queued.
                    self._fastsock_outbox.extend(outbox[i:])


for _name in ("send", "sendall", "sendmsg", "sendfile", "recv", "recvfrom", "recv_into",
              "recvfrom_into", "recvmsg", "recvmsg_into", "connect", "connect_ex", "bind",
              "shutdown", "close", "detach", "dup", "makefile", "setsockopt",
              "settimeout", "setblocking"):
    if hasattr(socket.socket, _name):
        setattr(_ReplyBatchingSocket, _name, _flushes_first(_name))
del _name

_get_ident = threading.get_ident
_batching_sockets = weakref.WeakSet()


def _after_fork_in_child():
    # A forked child does not queue (it may _exit), nor send the parent's queue.
    for sock in list(_batching_sockets):
        sock._fastsock_outbox = []
        sock._fastsock_owner = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


if hasattr(os, "fork"):
    __all__ += ["ForkingMixIn", "ForkingTCPServer", "ForkingUDPServer"]

    class ForkingMixIn:
        """Mix-in class to handle each request in a new child process.

        Attributes: ``timeout`` (300), ``max_children`` (40),
        ``active_children`` (None, then a set of child pids),
        ``block_on_close`` (True: ``server_close()`` waits for children).
        """

        timeout = 300
        active_children = None
        max_children = 40
        block_on_close = True

        def collect_children(self, *, blocking=False):
            """Reap finished children; wait while there are too many.

            Only this server's own children are waited for: the stdlib's
            ``waitpid(-1)`` can reap a process the application started (a
            ``subprocess.Popen``) and lose its exit status.  Where the
            platform has pidfds the wait for a free slot sleeps on them.
            """
            if self.active_children is None:
                return
            while len(self.active_children) >= self.max_children:
                self._wait_for_a_child()
            for pid in self.active_children.copy():
                try:
                    flags = 0 if blocking else os.WNOHANG
                    done, status = os.waitpid(pid, flags)
                    # A child that has not exited yet gives (0, 0).
                    if done:
                        self.active_children.discard(done)
                        self._fastsock_count_child(status)
                except ChildProcessError:
                    # Already reaped by someone else.
                    self.active_children.discard(pid)
                    self._fastsock_count_child(None)
                except OSError:
                    pass

        def _wait_for_a_child(self):
            # Block until at least one of our children has exited, and reap it.
            children = self.active_children
            if hasattr(os, "pidfd_open"):
                pidfds = {}
                try:
                    for pid in list(children):
                        try:
                            pidfds[os.pidfd_open(pid)] = pid
                        except ProcessLookupError:
                            children.discard(pid)   # gone (reaped elsewhere)
                        except OSError:
                            pidfds = None           # no pidfds here after all
                            break
                    if pidfds is not None:
                        if pidfds:
                            poller = select.poll()
                            for fd in pidfds:
                                poller.register(fd, select.POLLIN)
                            poller.poll()
                        self._reap_exited(children)
                        return
                finally:
                    for fd in pidfds or ():
                        os.close(fd)
            # No pidfds: look at each child, sleeping briefly between rounds.
            while len(children) >= self.max_children:
                if not self._reap_exited(children):
                    time.sleep(0.01)

        def _reap_exited(self, children):
            reaped = 0
            for pid in list(children):
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, None
                if done:
                    children.discard(pid)
                    self._fastsock_count_child(status)
                    reaped += 1
            return reaped

        def _fastsock_count_child(self, status):
            # A child reaped: its request is complete; a non-zero exit
            # status means it went through handle_error() (or died).
            self._fastsock_counters.child_done(bool(status))

        def _fastsock_gauges(self):
            children = self.active_children
            return {"active": len(children) if children else 0}

        def handle_timeout(self):
            """Reap children when handle_request() times out."""
            self.collect_children()

        def service_actions(self):
            """Reap children on every serve_forever() turn."""
            self.collect_children()

        def process_request(self, request, client_address):
            """Fork a child to handle the request."""
            pid = os.fork()
            if pid:
                # Parent: remember the child and drop our copy of the request.
                if self.active_children is None:
                    self.active_children = set()
                self.active_children.add(pid)
                self.close_request(request)
                return
            # Child: handle the request, then leave without unwinding the
            # parent's stack (no atexit handlers, no finally blocks above).
            # Counters of its own: another thread of the parent may have
            # held the parent's lock at fork time, and nothing the child
            # counts reaches the parent anyway.
            vars(self)["_fastsock_counters"] = self._core.Counters()
            vars(self).pop("_fastsock_exporters", None)
            status = 1
            try:
                self.finish_request(request, client_address)
                status = 0
            except Exception:
                self.handle_error(request, client_address)
            finally:
                try:
                    self.shutdown_request(request)
                finally:
                    os._exit(status)

        _fastsock_closer = "forking"

        def server_close(self):
            super().server_close()
            self.collect_children(blocking=self.block_on_close)
            self._fastsock_stop_exporters("forking")


class _Threads(list):
    """The non-daemon request threads of a server, joinable on close.

    Finished threads are dropped when the list has doubled since the last
    sweep (at least every 8 appends), so reaping costs O(1) per request
    instead of a pass over every live thread.
    """

    _next_reap = 8

    def append(self, thread):
        if len(self) >= self._next_reap:
            self.reap()
            self._next_reap = max(8, 2 * len(self))
        if thread.daemon:
            return
        super().append(thread)

    def pop_all(self):
        self[:], result = [], self[:]
        return result

    def join(self):
        for thread in self.pop_all():
            thread.join()

    def reap(self):
        # Forget threads that have finished, so the list does not grow forever.
        self[:] = (thread for thread in self if thread.is_alive())


class _NoThreads:
    """Stands in for _Threads when block_on_close is False."""

    def append(self, thread):
        pass

    def join(self):
        pass


class ThreadingMixIn:
    """Mix-in class to handle each request in a new thread.

    Attributes: ``daemon_threads`` (False: request threads keep the process
    alive), ``block_on_close`` (True: ``server_close()`` joins them).
    """

    daemon_threads = False
    block_on_close = True
    # Replaced per instance by a _Threads list in process_request() while
    # block_on_close is true.
    _threads = _NoThreads()

    def process_request_thread(self, request, client_address):
        """Run one request in its thread (what the thread's target calls)."""
        try:
            self.finish_request(request, client_address)
        except Exception:
            self._fastsock_count_error()
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def process_request(self, request, client_address):
        """Start a new thread to process the request."""
        if self.block_on_close:
            vars(self).setdefault('_threads', _Threads())
        thread = threading.Thread(target=self.process_request_thread,
                                  args=(request, client_address))
        thread.daemon = self.daemon_threads
        self._threads.append(thread)
        thread.start()

    _fastsock_closer = "threading"

    def server_close(self):
        super().server_close()
        self._threads.join()
        self._fastsock_stop_exporters("threading")


class ThreadPoolMixIn(ThreadingMixIn):
    """Mix-in class to handle requests on a pool of reused worker threads.

    A fastsock extra (not in the stdlib).  Starting a thread per request is
    most of what a short request costs; the pool keeps finished workers
    waiting for the next request instead.  Workers are started on demand,
    up to ``max_workers``; a worker idle for ``worker_idle_timeout``
    seconds exits.  A request that finds every worker busy waits in a
    queue of at most ``max_queue`` requests; while the queue is full,
    ``process_request()`` blocks, so the serve loop stops accepting (the
    listen backlog holds new clients) -- an accepted connection is never
    dropped.  While serve_forever() runs with the stock hooks on a plain
    listening socket, the workers accept connections themselves instead of
    the serve loop, and with every worker busy new clients wait in the
    listen backlog (see _WorkerPool.lead and docs/guide.md).

    A handler occupies its worker for the whole connection, so
    ``max_workers`` bounds the connections served at once; the default
    (512) is far above what one process serves well with threads.

    ``daemon_threads`` and ``block_on_close`` mean what they mean for
    ThreadingMixIn: ``server_close()`` lets the workers finish every
    queued request, and joins them when ``block_on_close`` is true.
    """

    max_workers = 512
    max_queue = None          # None: the same as max_workers
    worker_idle_timeout = 60.0
    #: A worker that has handled this many requests hands its place to a
    #: fresh thread and exits (None or 0: never).  glibc's per-thread cache
    #: (tcache) keeps small freed blocks of a thread for its next
    #: allocations until the thread exits; in a thread that lives for
    #: millions of requests they stay scattered through its arena, between
    #: the large blocks that requests free, and the heap fragments and grows
    #: without bound (docs/hardening.md, finding 5).  One thread start per
    #: this many requests (tens of microseconds) bounds it.
    worker_max_requests = 1000
    #: A client that disconnects mid-request (BrokenPipeError,
    #: ConnectionResetError, ConnectionAbortedError), times out
    #: (TimeoutError: the handler's timeout, line_timeout, idle_timeout) or
    #: sends an over-long line (fastsock.LineTooLong) is logged at DEBUG on
    #: the "fastsock" logger instead of going through handle_error's
    #: traceback.  False: report them like any other error, as the stdlib.
    quiet_disconnects = True
    #: Every this many seconds (None or 0: never) the serve loop's
    #: service_actions() gives the C heap's free memory back to the system
    #: (``trim_heap()``: glibc's ``malloc_trim(0)``, GIL released; measured
    #: here 0.6 ms, and 6.5 ms with 70 MiB free, during which this loop
    #: accepts nothing).  Long-lived workers handling large
    #: requests otherwise leave glibc's arenas holding free but resident
    #: memory that grows with the traffic (docs/hardening.md, finding 5).
    heap_trim_interval = 10.0
    _fastsock_next_trim = 0.0

    def service_actions(self):
        """Called by serve_forever() on every loop turn: trims the heap every
        ``heap_trim_interval`` seconds (call super() when overriding)."""
        super().service_actions()
        pool = vars(self).get("_fastsock_pool")
        if pool is not None and pool.session is not None:
            pool.check_stuck()
        interval = self.heap_trim_interval
        if interval:
            now = monotonic()
            if now >= self._fastsock_next_trim:
                if self._fastsock_next_trim:
                    self._core.trim_heap()
                self._fastsock_next_trim = now + interval

    def handle_error(self, request, client_address):
        """As BaseServer.handle_error, but routine disconnects are quiet
        (see ``quiet_disconnects``)."""
        exc = sys.exc_info()[1]
        if self.quiet_disconnects and isinstance(exc, _ROUTINE_DISCONNECTS):
            logger.debug("client %s disconnected: %r", client_address, exc)
            return
        super().handle_error(request, client_address)

    def _pool(self):
        pool = vars(self).get("_fastsock_pool")
        if pool is None:
            pool = vars(self).setdefault("_fastsock_pool", _WorkerPool(self))
        return pool

    def process_request(self, request, client_address):
        """Queue the request for a worker thread (blocks while the queue is full)."""
        self._pool().submit(request, client_address)

    # While serve_forever() runs on a stream socket and the hooks between
    # accepting and queueing are the stock ones: the pool, which
    # _handle_request_noblock() hands connections to directly.
    __direct = None

    def serve_forever(self, poll_interval=0.5):
        """Handle requests until shutdown() (see BaseServer.serve_forever)."""
        pool = self._pool()
        # Stream servers only (a datagram server's requests are not sockets).
        stream = isinstance(self, TCPServer) and self._fastsock_pending is None
        direct = stream and _stock_hooks(self, _POOL_DISPATCH_HOOKS)
        # Workers run a request straight (see _WorkerPool.work) while the
        # hooks that process_request_thread() goes through are the stock
        # ones -- TCPServer.finish_request()'s super() included.
        pool.stock = stream and _stock_hooks(self, _POOL_WORKER_HOOKS) and getattr(
            super(TCPServer, self).finish_request, "__func__", None) is BaseServer.finish_request
        # Every hook between accept() and the handler the stock one: the
        # workers accept by themselves (see _WorkerPool.lead), and this
        # loop only waits for shutdown().
        session = None
        if direct and pool.stock and _stock_hooks(self, _POOL_ACCEPT_HOOKS):
            session = pool.open_session()
        if session is not None:
            self._fastsock_listen = False
        elif direct:
            self.__direct = pool
        try:
            super().serve_forever(poll_interval)
        finally:
            try:
                if session is not None:
                    pool.close_session(session)
            finally:
                pool.stock = False
                vars(self).pop("_fastsock_listen", None)
                vars(self).pop("_ThreadPoolMixIn__direct", None)

    def _handle_request_noblock(self):
        """Handle one request without blocking (see BaseServer).

        While serve_forever() runs and verify_request() and
        process_request() are the stock ones, the connection goes to the
        pool without the calls that would only pass it on: get_request(),
        the counters and, if queueing fails, handle_error() and
        shutdown_request() see the same calls in the same order.
        """
        pool = self.__direct
        if pool is None:
            return super()._handle_request_noblock()
        try:
            request, client_address = self.get_request()
        except OSError:
            self._fastsock_counters.accept_error()
            return
        self._fastsock_counters.accept()
        try:
            pool.submit(request, client_address)
        except Exception:
            self._fastsock_process_failed(request, client_address)
        except:
            self.shutdown_request(request)
            raise

    _fastsock_closer = "pool"

    def server_close(self):
        super().server_close()
        pool = vars(self).get("_fastsock_pool")
        if pool is not None:
            pool.close(join=self.block_on_close)
        self._fastsock_stop_exporters("pool")

    def _fastsock_gauges(self):
        pool = vars(self).get("_fastsock_pool")
        if pool is None:
            return {}
        with pool.lock:
            return {"workers": len(pool.workers), "idle_workers": pool.idle + pool.free,
                    "queued": pool.queued}

    @property
    def pool_stats(self):
        """``{"workers", "idle", "queued"}``: the pool's current state."""
        pool = vars(self).get("_fastsock_pool")
        if pool is None:
            return {"workers": 0, "idle": 0, "queued": 0}
        return pool.stats()


class _WorkerPool:
    """The workers and queue behind one ThreadPoolMixIn server.

    The hand-off is a ``queue.SimpleQueue`` (C: put() never blocks, get()
    waits with the GIL released); a plain lock guards the counters.  A
    Condition is touched only when the queue is full and process_request()
    has to wait for room.
    """

    _STOP = object()
    #: set by serve_forever(): the server's hooks allow the inlined path
    stock = False

    def __init__(self, server):
        self.server = server
        self.lock = threading.Lock()
        self.has_room = threading.Condition(self.lock)
        self.queue = queue.SimpleQueue()
        self.workers = set()
        self.idle = 0           # workers waiting in queue.get()
        self.queued = 0         # requests put but not yet taken
        self.room_waiters = 0
        self.closing = False
        self.session = None     # the _AcceptSession of a serve_forever() running
        self.last_session = None    # the latest one, running or not
        self.free = 0           # its workers not running a connection
        self.last_done = 0.0    # when one of them last finished one
        self.checking = False   # the serve loop is in check_stuck() (or woken to)

    def submit(self, request, client_address):
        server = self.server
        max_workers = max(1, server.max_workers)
        max_queue = server.max_queue
        if max_queue is None:
            max_queue = max_workers
        thread = None
        with self.lock:
            # Every worker busy and the queue full: wait for room.
            while (not self.closing and self.queued >= max_queue + self.idle
                   and len(self.workers) >= max_workers):
                self.room_waiters += 1
                try:
                    self.has_room.wait()
                finally:
                    self.room_waiters -= 1
            if self.closing:
                raise RuntimeError("the server's worker pool is closed")
            self.queued += 1
            if self.queued > self.idle and len(self.workers) < max_workers:
                thread = threading.Thread(target=self.work, name="fastsock-worker")
                thread.daemon = server.daemon_threads
                self.workers.add(thread)
            self.queue.put((request, client_address))
        if thread is not None:
            try:
                thread.start()
            except BaseException:
                # No thread for it (e.g. the thread limit): the request
                # stays queued for the workers there are, if any.
                with self.lock:
                    self.workers.discard(thread)
                    orphaned = not self.workers
                if orphaned:
                    self._take_back()
                raise

    def _take_back(self):
        # No worker exists to run what was queued: close it here.
        while True:
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item is self._STOP:
                continue
            with self.lock:
                self.queued -= 1
            self.server.shutdown_request(item[0])

    def work(self):
        server = self.server
        get = self.queue.get
        lock = self.lock
        me = threading.current_thread()
        served = 0
        try:
            while True:
                with lock:
                    self.idle += 1
                try:
                    item = get(timeout=server.worker_idle_timeout)
                except queue.Empty:
                    with lock:
                        self.idle -= 1
                        # Leave only if the other idle workers cover the queue.
                        if self.queued <= self.idle:
                            return
                    continue
                with lock:
                    self.idle -= 1
                    if item is self._STOP:
                        return
                    self.queued -= 1
                    if self.room_waiters:
                        self.has_room.notify()
                request, client_address = item
                del item
                if self.stock and server.ssl_context is None:
                    _run_stock(server, request, client_address)
                else:
                    server.process_request_thread(request, client_address)
                del request, client_address
                served += 1
                limit = server.worker_max_requests
                if limit and served >= limit and self._retire():
                    return
        finally:
            with lock:
                self.workers.discard(me)
                if self.room_waiters:
                    self.has_room.notify()

    def _retire(self, session=None):
        """Hand this worker's place to a fresh thread (see
        worker_max_requests): True if this one may exit now.  Not while the
        pool is closing (close() counted this worker for a stop token), nor
        if no thread can be started.  *session*: the fresh thread accepts
        in it, as this one did."""
        with self.lock:
            if self.closing or (session is not None and not session.open):
                return False
            thread = self._thread(session)
        return self._start(thread, session)

    def _thread(self, session):
        # (with the lock held) a worker thread, counted in the pool
        if session is None:
            thread = threading.Thread(target=self.work, name="fastsock-worker")
        else:
            thread = threading.Thread(target=self.lead, args=(session,),
                                      name="fastsock-worker")
            session.users += 1
            self.free += 1      # lead() takes it back when it ends
        thread.daemon = self.server.daemon_threads
        self.workers.add(thread)
        return thread

    def _start(self, thread, session):
        try:
            thread.start()
        except BaseException:
            with self.lock:
                self.workers.discard(thread)
                if session is not None:
                    self.free -= 1
            if session is not None:
                session.leave()
            return False
        return True

    # -- workers that accept by themselves ----------------------------------
    #
    # While serve_forever() runs with the stock hooks on a plain listening
    # socket, connections do not go through the serve loop and the queue:
    # each worker waits for the listening socket in an epoll set of its own
    # (EPOLLEXCLUSIVE: one connection wakes one worker), accepts, and runs
    # the handler itself -- one thread wake-up per connection instead of
    # two, and no hand-off.  A worker that takes a connection while no
    # other is free starts one more (up to max_workers), so a long
    # handler never holds up the next client; with every worker busy,
    # nobody accepts and new clients wait in the listen backlog.

    def open_session(self):
        """Start the workers accepting (serve_forever() beginning): the
        session, or None if this socket or platform cannot."""
        server = self.server
        sock = server.socket
        if (_EPOLLEXCLUSIVE is None or type(sock) is not socket.socket
                or sock.family not in _ACCEPT_FAMILIES or sock.gettimeout() not in (None, 0.0)):
            return None
        with self.lock:
            if self.closing or len(self.workers) >= max(1, server.max_workers):
                return None
        try:
            session = _AcceptSession(server, self.last_session)
        except OSError:
            return None     # e.g. a kernel without EPOLLEXCLUSIVE (before 4.5)
        with self.lock:
            self.session = self.last_session = session
            thread = self._thread(session)
        if not self._start(thread, session):
            self.close_session(session)
            return None
        return session

    def close_session(self, session):
        """Stop the session's workers accepting (serve_forever() ending):
        the waiting ones exit now, the busy ones after their connection."""
        with self.lock:
            if self.session is session:
                self.session = None
        session.close()

    def lead(self, session):
        """A worker of *session*: accept a connection, run it, repeat."""
        server = self.server
        lock = self.lock
        me = threading.current_thread()
        counters = server._fastsock_counters
        accept, sock, cls = session.accept, session.sock, session.conn_class
        served = 0
        free = True             # counted in self.free (from _thread())
        patient = False         # the last wait timed out and this one stayed
        try:
            while session.open:
                try:
                    item = accept(sock, cls)    # None: none waiting
                except OSError as exc:
                    counters.accept_error()
                    self._accept_failed(session, exc)
                    continue
                if item is None:
                    try:
                        ready = session.wait(None if patient else server.worker_idle_timeout)
                    except OSError as exc:
                        # no descriptor for an epoll set (EMFILE...), or
                        # the listening socket closed
                        self._accept_failed(session, exc)
                        continue
                    if not ready:
                        with lock:
                            # Idle too long: leave if another worker is free.
                            if self.free > 1 and session.open:
                                self.free -= 1
                                free = False
                                return
                        # The one free worker stays, and waits without a
                        # timeout now (a worker_idle_timeout of 0 would
                        # otherwise spin here) until something happens.
                        patient = True
                    else:
                        patient = False
                    continue
                counters.accept()
                if server._TCPServer__backoff:
                    server._fastsock_accepting_again()
                with lock:
                    self.free -= 1
                    free = False
                    spare = not self.free
                if spare:
                    self._all_busy(session)
                request, client_address = item
                del item
                if server.ssl_context is None:
                    _run_stock(server, request, client_address)
                else:
                    server.process_request_thread(request, client_address)
                del request, client_address
                self.last_done = monotonic()
                with lock:
                    self.free += 1
                    free = True
                served += 1
                limit = server.worker_max_requests
                if limit and served >= limit and self._retire(session):
                    return
        finally:
            session.leave()
            with lock:
                if free:
                    self.free -= 1
                self.workers.discard(me)
                if self.room_waiters:
                    self.has_room.notify()

    def _accept_failed(self, session, exc):
        # A worker's accept() or wait failed: out of descriptors or memory,
        # pause as the serve loop would (TCPServer._accept_backoff); the
        # listening socket closed or shut down under the session, idle
        # until it ends instead of spinning; anything else (a connection
        # aborted before it was accepted...) is that connection's.
        if exc.errno in _ACCEPT_RESOURCE_ERRNOS:
            self.server._accept_backoff(exc)
        elif exc.errno in _LISTENER_GONE_ERRNOS:
            session.idle(0.5)

    def _all_busy(self, session):
        # The last free worker of the session took a connection.  If none
        # has finished one lately, they are on long ones, and this one may
        # be too: start a spare now.  Otherwise (a load of short ones) a
        # worker is about to be free, and one more thread would only contend
        # for the GIL -- unless they are stuck after all: the serve loop,
        # woken (unless it is already at it), watches in check_stuck().
        if monotonic() - self.last_done > _STUCK_AFTER:
            self._spare(session)
        elif not self.checking:
            self.checking = True
            self.server._wake()

    def check_stuck(self):
        """(the serve loop's service_actions()) While every worker of the
        session is busy: once none has finished a connection for
        _STUCK_AFTER seconds and a client waits, start a spare.  Waits
        here for that, as long as every worker stays busy (at most
        _CHECK_MAX seconds a call; shutdown() ends the wait)."""
        session = self.session
        server = self.server
        core = server._core
        wait = core.wait_readable
        end = monotonic() + _CHECK_MAX
        try:
            while session is not None and session.open and not self.free:
                waker = server._BaseServer__waker
                now = monotonic()
                if waker is None or now >= end:
                    return
                idle = now - self.last_done
                if idle < _STUCK_AFTER:
                    # a worker finished lately: look again when it is longer ago
                    if wait(waker.fileno(), -1, _STUCK_AFTER - idle):
                        return      # (the serve loop has a wake-up to handle)
                elif wait(session.fd, -1, 0):
                    self._spare(session)    # stuck, and a client waits
                    return
                elif wait(session.fd, waker.fileno(), end - now) & core.WOKEN:
                    return          # stuck: wait for a client, or a wake-up
        finally:
            self.checking = False

    def _spare(self, session):
        # The last free worker took a connection: start one more to wait
        # for the next (up to max_workers).
        with self.lock:
            if (self.free or self.closing or not session.open
                    or len(self.workers) >= max(1, self.server.max_workers)):
                return
            thread = self._thread(session)
        self._start(thread, session)

    def close(self, join):
        with self.lock:
            self.closing = True
            workers = list(self.workers)
            self.has_room.notify_all()
            session = self.session
        if session is not None:
            session.close()
        # After every queued request: one stop token per worker.
        for _ in workers:
            self.queue.put(self._STOP)
        if join:
            for thread in workers:
                thread.join()

    def stats(self):
        with self.lock:
            return {"workers": len(self.workers), "idle": self.idle + self.free,
                    "queued": self.queued}


def _run_stock(server, request, client_address):
    # process_request_thread() with the stock hooks, inlined: finish_request()
    # (the handler between the counters' begin() and end()), handle_error()
    # if it raised, then shutdown_request()'s shutdown and close.
    counters = server._fastsock_counters
    counters.begin()
    try:
        try:
            server.RequestHandlerClass(request, client_address, server)
        finally:
            counters.end()
    except Exception:
        server._fastsock_count_error()
        server.handle_error(request, client_address)
    finally:
        try:
            request.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        request.close()


# A session's workers all busy, and none finished a connection in this many
# seconds: the next one starts a spare worker right away (see lead()).
_STUCK_AFTER = 0.02
# The longest one check_stuck() call watches (the serve loop's other turns
# wait meanwhile).
_CHECK_MAX = 0.5
# accept() failing with these: the listening socket is closed or unusable
_LISTENER_GONE_ERRNOS = frozenset((errno.EBADF, errno.EINVAL, errno.ENOTSOCK))
_EPOLLEXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", None) if hasattr(select, "epoll") else None
_ACCEPT_FAMILIES = frozenset(getattr(socket, name) for name in ("AF_INET", "AF_INET6", "AF_UNIX")
                             if hasattr(socket, name))


class _AcceptSession:
    """One serve_forever() run of a ThreadPoolMixIn server whose workers
    accept by themselves (see _WorkerPool.lead).

    The listening socket's descriptor is non-blocking while the session has
    workers (the socket's timeout, as the object reports it, does not
    change): a worker woken for a connection that another one took must not
    block in accept().  Blocking again, if it was, once the session is
    closed and its last worker has left -- not before, since a busy worker
    may still be on its way back to accept().  A session opened before
    that (the next serve_forever()) takes the restoring over.
    """

    def __init__(self, server, previous=None):
        self.sock = sock = server.socket
        self.fd = fd = sock.fileno()
        self.conn_class = server._fastsock_conn_class
        self.core = core = server._core
        self.accept = core.accept_nowait    # (conn, address), or None
        self.lock = threading.Lock()
        self.open = True
        self.released = False
        self.blocking = False   # restore blocking mode when released
        self.users = 0          # workers of this session (started or starting)
        self.pollers = []       # epoll sets not in use (see wait())
        # Wakes every worker's poll when the session ends; closed when the
        # last worker has left (a closed descriptor would not wake a poll).
        self.stop = core.Waker()
        try:
            # The first epoll set, made now: a kernel without EPOLLEXCLUSIVE
            # (before 4.5) refuses it here.
            self.pollers.append(self._poller())
            # (the previous session has either restored the mode already,
            # under its lock, or hands that over and never will)
            inherited = previous is not None and previous._hand_over(sock)
            self.blocking = inherited or os.get_blocking(fd)
            if self.blocking:
                os.set_blocking(fd, False)
        except BaseException:
            self._release()
            raise

    def _hand_over(self, sock):
        # (a new session on *sock* opens) whether this one was to restore
        # blocking mode: the new one does it instead
        with self.lock:
            if self.released or self.sock is not sock:
                return False
            blocking, self.blocking = self.blocking, False
            return blocking

    def wait(self, timeout):
        """Wait for a connection (or the end of the session) at most
        *timeout* seconds (None: no limit): the events, [] on timeout.

        Each waiting worker needs an epoll set of its own (EPOLLEXCLUSIVE
        wakes one waiter per set), holding the listening socket and the
        session's stop descriptor.  The sets are kept here between waits
        and lent to whichever worker waits: a worker running a connection
        holds none, so there are as many as workers ever waited at once,
        not one per worker."""
        pollers = self.pollers
        try:
            poller = pollers.pop()
        except IndexError:
            poller = self._poller()
        try:
            return poller.poll(timeout)
        finally:
            pollers.append(poller)

    def _poller(self):
        poller = select.epoll()
        try:
            poller.register(self.fd, select.EPOLLIN | _EPOLLEXCLUSIVE)
            poller.register(self.stop.fileno(), select.EPOLLIN)
        except BaseException:
            poller.close()
            raise
        return poller

    def idle(self, timeout):
        """Sleep *timeout* seconds, or until the session ends."""
        self.core.wait_readable(self.stop.fileno(), -1, timeout)

    def close(self):
        """No more connections: wake the waiting workers (they leave)."""
        with self.lock:
            if not self.open:
                return
            self.open = False
            idle = not self.users
        self.stop.wake()
        if idle:
            self._release()

    def leave(self):
        """A worker of this session is done with it."""
        with self.lock:
            self.users -= 1
            last = not self.users and not self.open
        if last:
            self._release()

    def _release(self):
        # (closed, and no worker left) the descriptors, and the listening
        # socket's blocking mode back -- unless it was closed meanwhile
        # (fileno() -1: its number may belong to something else now)
        with self.lock:
            # (under the lock: a session opening now reads the mode after)
            self.released = True
            if self.blocking:
                self.blocking = False
                fd = self.sock.fileno()
                if fd >= 0:
                    try:
                        os.set_blocking(fd, True)
                    except OSError:
                        pass
        while self.pollers:
            self.pollers.pop().close()
        self.stop.close()


def _stock_hooks(server, hooks):
    # Whether every (name, owner) hook of *server* is owner's own: neither
    # overridden in a subclass nor set on the instance (the short paths of
    # UDPServer and ThreadPoolMixIn decide with it when serve_forever starts).
    instance = vars(server)
    cls = type(server)
    return all(name not in instance and getattr(cls, name, None) is getattr(owner, name)
               for name, owner in hooks)


# The hooks ThreadPoolMixIn's short paths stand for, and whose they must be.
_POOL_DISPATCH_HOOKS = (("verify_request", BaseServer), ("_fastsock_dispatch", BaseServer),
                        ("process_request", ThreadPoolMixIn), ("_pool", ThreadPoolMixIn))
# ... and, for the workers to accept by themselves, these too.
_POOL_ACCEPT_HOOKS = (("get_request", TCPServer), ("_handle_request_noblock", ThreadPoolMixIn),
                      ("service_actions", ThreadPoolMixIn), ("fileno", TCPServer))
_POOL_WORKER_HOOKS = (("process_request_thread", ThreadingMixIn),
                      ("finish_request", TCPServer), ("shutdown_request", TCPServer),
                      ("close_request", TCPServer))


if hasattr(os, "fork"):
    class ForkingUDPServer(ForkingMixIn, UDPServer): pass
    class ForkingTCPServer(ForkingMixIn, TCPServer): pass


class ThreadingUDPServer(ThreadingMixIn, UDPServer): pass
class ThreadingTCPServer(ThreadingMixIn, TCPServer): pass
class ThreadPoolUDPServer(ThreadPoolMixIn, UDPServer): pass
class ThreadPoolTCPServer(ThreadPoolMixIn, TCPServer): pass


if hasattr(socket, "AF_UNIX"):
    __all__ += ["UnixStreamServer", "UnixDatagramServer",
                "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer"]

    class UnixStreamServer(TCPServer):
        address_family = socket.AF_UNIX

    class UnixDatagramServer(UDPServer):
        address_family = socket.AF_UNIX

    class ThreadingUnixStreamServer(ThreadingMixIn, UnixStreamServer): pass

    class ThreadingUnixDatagramServer(ThreadingMixIn, UnixDatagramServer): pass

    class ThreadPoolUnixStreamServer(ThreadPoolMixIn, UnixStreamServer): pass

    class ThreadPoolUnixDatagramServer(ThreadPoolMixIn, UnixDatagramServer): pass

    if hasattr(os, "fork"):
        __all__ += ["ForkingUnixStreamServer", "ForkingUnixDatagramServer"]

        class ForkingUnixStreamServer(ForkingMixIn, UnixStreamServer): pass

        class ForkingUnixDatagramServer(ForkingMixIn, UnixDatagramServer): pass
