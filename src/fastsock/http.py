"""Ready-made HTTP servers for the stdlib's ``http.server`` handlers.

``fastsock.http.HTTPServer((host, port), Handler)`` serves any
``http.server.BaseHTTPRequestHandler`` subclass -- ``SimpleHTTPRequestHandler``,
an ``xmlrpc.server`` handler, your own -- on fastsock's thread pool, with
fastsock's compiled ``rfile``/``wfile`` even when ``fastsock.install()`` was
not called.  ``serve()`` is what ``python -m fastsock http`` runs: dual-stack
(IPv6 and IPv4) by default, like ``python -m http.server``.
"""
import contextlib
import functools
import http.server
import socket
import sys

from ._handlers import StreamRequestHandler
from ._install import _stdlib  # the real socketserver, even if imported under install()
from ._server import ThreadPoolTCPServer

__all__ = ["HTTPServer", "DualStackHTTPServer", "accelerate_handler", "serve"]

_accelerated = {}


def accelerate_handler(handler):
    """Return *handler* running on fastsock's streams and request parsing.

    For a stdlib ``StreamRequestHandler`` subclass (every ``http.server``
    handler) this is a subclass of it, with:

    * fastsock's ``setup``/``finish`` (compiled ``rfile``/``wfile``), unless
      the handler overrides ``setup`` or ``finish`` or already is a fastsock
      handler;
    * for a ``BaseHTTPRequestHandler``: fastsock's exactly equivalent
      ``parse_request`` (headers without the email parser) and
      ``date_time_string`` (formatted once a second) -- each only where the
      handler still uses the stdlib's own method (see ``fastsock._http_fast``).

    A handler with nothing to change is returned unchanged; a
    ``functools.partial`` of a handler (``directory=...``) is handled too.
    """
    if isinstance(handler, functools.partial):
        return functools.partial(accelerate_handler(handler.func),
                                 *handler.args, **handler.keywords)
    if not isinstance(handler, type) or not issubclass(handler, _stdlib.StreamRequestHandler):
        return handler
    fast = _accelerated.get(handler)
    if fast is not None:
        return fast
    attrs = {}
    if (not issubclass(handler, StreamRequestHandler)
            and handler.setup is _stdlib.StreamRequestHandler.setup
            and handler.finish is _stdlib.StreamRequestHandler.finish):
        attrs.update(_core=StreamRequestHandler._core,
                     setup=StreamRequestHandler.setup,
                     finish=StreamRequestHandler.finish)
    if issubclass(handler, http.server.BaseHTTPRequestHandler):
        from . import _http_fast
        for name, method in _http_fast.FAST_METHODS.items():
            if getattr(handler, name) is _http_fast.STDLIB_METHODS[name]:
                attrs[name] = method
    if not attrs:
        return handler
    attrs.update(__module__=handler.__module__, __qualname__=handler.__qualname__,
                 __doc__=handler.__doc__)
    fast = type(handler.__name__, (handler,), attrs)
    return _accelerated.setdefault(handler, fast)


class HTTPServer(ThreadPoolTCPServer):
    """An HTTP server on fastsock's thread pool.

    Behaves like ``http.server.ThreadingHTTPServer`` (``allow_reuse_address``,
    daemon worker threads, ``server_name``/``server_port`` set on bind), with
    a listen backlog of 128 so connection bursts are not refused.
    """

    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, server_address, RequestHandlerClass, bind_and_activate=True):
        super().__init__(server_address, accelerate_handler(RequestHandlerClass),
                         bind_and_activate)

    def server_bind(self):
        super().server_bind()
        host, port = self.server_address[:2]
        self.server_name = socket.getfqdn(host)
        self.server_port = port


class DualStackHTTPServer(HTTPServer):
    """HTTPServer on IPv6 that also accepts IPv4 (where the OS allows it)."""

    address_family = socket.AF_INET6

    def server_bind(self):
        with contextlib.suppress(Exception):
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()


def _best_family(host, port):
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)
    family, _, _, _, sockaddr = next(iter(infos))
    return family, sockaddr


def serve(handler, port=8000, bind=None, workers=None, out=sys.stderr):
    """Serve *handler* until Ctrl-C, the way ``python -m http.server`` does.

    *bind* None listens on every address, IPv6 and IPv4.  Returns 0.
    """
    family, address = _best_family(bind, port)
    cls = DualStackHTTPServer if family == socket.AF_INET6 else HTTPServer
    attrs = {"address_family": family}
    if workers:
        attrs["max_workers"] = workers
    cls = type(cls.__name__, (cls,), attrs)
    with cls(address, handler) as server:
        host, port = server.socket.getsockname()[:2]
        url_host = "[%s]" % host if ":" in host else host
        import fastsock
        print("Serving HTTP on %s port %d (http://%s:%d/) with fastsock (%s backend) ..."
              % (host, port, url_host, port, fastsock.BACKEND), file=out, flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("\nKeyboard interrupt received, exiting.", file=out)
    return 0
