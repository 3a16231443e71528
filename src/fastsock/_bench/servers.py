"""The servers under test, each run as its own child process.

    python -m fastsock._bench.servers --impl IMPL --kind KIND [--cpu N]
                                      [--backlog N] [--unix PATH]

prints one line ``READY {json}`` on stdout (address, implementation,
backend, module file, server class, listen backlog) once it is accepting,
then serves until it is killed (the runner sends SIGTERM, then SIGKILL).

Implementations (``IMPLS``):

``stdlib``           :mod:`socketserver`
``fastsock-python``  :mod:`fastsock` with ``FASTSOCK_PURE=1`` (set by the runner)
``fastsock-cython``  :mod:`fastsock` with its compiled core (refuses to run on
                     the pure twin)
``fastsock-pool``    fastsock's opt-in extras on the active backend:
                     ``ThreadPoolTCPServer`` for streams (only when that class
                     exists), ``fastsock.http.HTTPServer`` for HTTP, and
                     ``UDPServer`` with ``reply_batch = 8`` (replies sent with
                     ``sendmmsg``, runs to one peer as one GSO message) for UDP
``fastsock-greenlet`` ``GreenletTCPServer`` (``GreenletUnixStreamServer`` on a
                     unix socket) on the active backend: every connection in a
                     greenlet of one epoll loop; stream kinds only
``asyncio``          asyncio streams (``start_server``; ``readline``/``write``
                     /``drain``) and a ``DatagramProtocol`` for UDP
``uvloop``           the same asyncio code on uvloop, when importable
``uvloop-protocol``  uvloop with an ``asyncio.Protocol`` echoing complete lines
                     from ``data_received`` (one ``write`` per chunk): the
                     fastest Python peer, no streams layer

Kinds: ``echo`` (line echo; also used by the stream scenario), ``udp``,
``http-keepalive`` and ``http10`` (``http.server``, stdlib and fastsock only).

The socketserver handlers are written the natural stdlib way::

    class Echo(socketserver.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)

on ``ThreadingTCPServer`` (``UDPServer`` + ``DatagramRequestHandler`` for
UDP; ``ThreadPoolTCPServer``, or ``UDPServer`` with ``reply_batch = 8``,
for ``fastsock-pool``).  For HTTP the handler
is an unmodified-stdlib ``BaseHTTPRequestHandler`` subclass: ``stdlib``
serves it on ``http.server.ThreadingHTTPServer``; ``fastsock-python`` and
``fastsock-cython`` call ``fastsock.install()`` *before* importing
:mod:`http.server`, so the unmodified stdlib ``ThreadingHTTPServer`` and
``BaseHTTPRequestHandler`` are built on fastsock (what ``install()`` means
for a program); ``fastsock-pool`` serves it on ``fastsock.http.HTTPServer``
(the thread pool; the stdlib :mod:`http.server` untouched, the handler
accelerated by the server).
"""
import argparse
import json
import os
import sys
import threading

if __name__ == "__main__" and sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
    # Run as a script (so that the stdlib server never imports fastsock):
    # the modules next to this file must not shadow top-level names.
    del sys.path[0]

SOCKETSERVER_IMPLS = ("stdlib", "fastsock-python", "fastsock-cython", "fastsock-pool",
                      "fastsock-greenlet")
ASYNC_IMPLS = ("asyncio", "uvloop", "uvloop-protocol")
IMPLS = SOCKETSERVER_IMPLS + ASYNC_IMPLS
KINDS = ("echo", "udp", "http-keepalive", "http10")

HOST = "127.0.0.1"
HTTP_BODY = b"Hello from the fastsock benchmark!\n" * 4   # 140 bytes, in memory


def supports(impl, kind):
    """Whether *impl* has a server for *kind*."""
    if impl == "fastsock-greenlet":
        return kind == "echo"
    if kind.startswith("http"):
        return impl in SOCKETSERVER_IMPLS
    return True


def _ready(info):
    sys.stdout.write("READY " + json.dumps(info) + "\n")
    sys.stdout.flush()


def _socketserver_module(impl):
    """The module playing ``socketserver`` for *impl*, plus report fields."""
    if impl == "stdlib":
        import socketserver
        return socketserver, {"module_file": socketserver.__file__}
    import fastsock
    info = {"backend": fastsock.BACKEND, "module_file": fastsock.__file__,
            "backend_reason": getattr(fastsock._backend, "REASON", None)}
    want = {"fastsock-python": "python", "fastsock-cython": "cython"}.get(impl)
    if want and fastsock.BACKEND != want:
        sys.exit("%s: fastsock.BACKEND is %r, not %r (%s)" % (
            impl, fastsock.BACKEND, want, info["backend_reason"]))
    if impl == "fastsock-pool" and not hasattr(fastsock, "ThreadPoolTCPServer"):
        sys.exit("fastsock-pool: fastsock.ThreadPoolTCPServer does not exist")
    if impl == "fastsock-greenlet":
        if not hasattr(fastsock, "GreenletTCPServer"):
            sys.exit("fastsock-greenlet: fastsock.GreenletTCPServer does not exist")
        import greenlet
        info["greenlet"] = greenlet.__version__
    return fastsock, info


def _serve_socketserver(args):
    ss, info = _socketserver_module(args.impl)
    if args.kind.startswith("http"):
        return _serve_http(args, ss, info)
    address = args.unix or (HOST, 0)

    if args.kind == "udp":
        class Echo(ss.DatagramRequestHandler):
            def handle(self):
                self.wfile.write(self.rfile.read())
        cls = ss.UDPServer
        if args.impl == "fastsock-pool":
            # the opt-in reply batching (the default stays the stdlib's)
            cls = type("UDPServer", (cls,), {"reply_batch": 8})
    else:
        class Echo(ss.StreamRequestHandler):
            def handle(self):
                for line in self.rfile:
                    self.wfile.write(line)
        if args.impl == "fastsock-greenlet":
            cls = ss.GreenletUnixStreamServer if args.unix else ss.GreenletTCPServer
        elif args.unix:
            cls = ss.ThreadingUnixStreamServer
        elif args.impl == "fastsock-pool":
            cls = ss.ThreadPoolTCPServer
        else:
            cls = ss.ThreadingTCPServer
    attrs = {"allow_reuse_address": True}
    if args.backlog is not None:
        attrs["request_queue_size"] = args.backlog
    server_cls = type(cls.__name__, (cls,), attrs)
    server = server_cls(address, Echo)
    info.update(_server_info(args, server))
    _ready(info)
    server.serve_forever()


def _server_info(args, server):
    addr = server.server_address
    info = {"impl": args.impl, "kind": args.kind,
            "server_class": "%s.%s" % (type(server).__mro__[1].__module__,
                                       type(server).__mro__[1].__qualname__),
            "request_queue_size": getattr(server, "request_queue_size", None),
            "python": sys.version.split()[0], "pid": os.getpid()}
    if isinstance(addr, tuple):
        info.update(host=addr[0], port=addr[1])
    else:
        info.update(unix=addr)
    return info


def _serve_http(args, ss, info):
    if "http.server" in sys.modules:
        sys.exit("http.server was imported before socketserver could be chosen")
    pool = args.impl == "fastsock-pool"
    if ss.__name__ != "socketserver" and not pool:
        # The documented way to run the stdlib's servers on fastsock: sets
        # sys.modules['socketserver'], imports http.server on fastsock and
        # gives BaseHTTPRequestHandler fastsock's request parsing.
        ss.install()
    import http.server
    if pool:
        # fastsock.http.HTTPServer (thread pool) with the plain stdlib
        # http.server module: the handler is accelerated by the server.
        import fastsock.http
        base_cls = fastsock.http.HTTPServer
    else:
        if http.server.socketserver is not ss:
            sys.exit("http.server did not pick up %s" % ss.__name__)
        base_cls = http.server.ThreadingHTTPServer
    keepalive = args.kind == "http-keepalive"

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if keepalive else "HTTP/1.0"
        # The stdlib knob for TCP_NODELAY.  Headers and body are two writes;
        # with Nagle on, every keep-alive response would wait ~40 ms for the
        # client's delayed ACK, in every implementation alike.
        disable_nagle_algorithm = True

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(HTTP_BODY)))
            self.end_headers()
            self.wfile.write(HTTP_BODY)

        def log_message(self, format, *args):
            pass

    attrs = {}
    if args.backlog is not None:
        attrs["request_queue_size"] = args.backlog
    server_cls = type(base_cls.__name__, (base_cls,), attrs)
    server = server_cls((HOST, 0), Handler)
    info.update(_server_info(args, server))
    info["server_class"] = "%s.%s" % (base_cls.__module__, base_cls.__qualname__)
    if pool:
        info["http"] = ("fastsock.http.HTTPServer (thread pool; accelerate_handler) "
                        "serving a stdlib BaseHTTPRequestHandler subclass")
    elif ss.__name__ == "socketserver":
        info["http"] = "stdlib http.server, unmodified"
    else:
        info["http"] = ("stdlib http.server, unmodified, after fastsock.install() "
                        "(socketserver = fastsock, fastsock's request parsing)")
    info["handler_stream_base"] = "%s.StreamRequestHandler" % (
        server.RequestHandlerClass.setup.__module__,)
    _ready(info)
    server.serve_forever()


async def _listen(info, unix, on_unix, on_tcp):
    """Start the asyncio server on the unix path or on loopback TCP; record
    where in *info*."""
    if unix:
        server = await on_unix(unix)
        info.update(unix=unix)
    else:
        server = await on_tcp()
        host, port = server.sockets[0].getsockname()[:2]
        info.update(host=host, port=port)
    return server


def _serve_asyncio(args):
    import asyncio
    info = {"impl": args.impl, "kind": args.kind, "python": sys.version.split()[0],
            "pid": os.getpid()}
    if args.impl.startswith("uvloop"):
        import uvloop
        info["uvloop"] = uvloop.__version__

    class LineEcho(asyncio.Protocol):
        # Echo every complete line; keep a partial one for the next chunk.
        def connection_made(self, transport):
            self.transport = transport
            self.partial = b""

        def data_received(self, data):
            if self.partial:
                data = self.partial + data
            end = data.rfind(b"\n") + 1
            if end:
                self.transport.write(data[:end] if end < len(data) else data)
            self.partial = data[end:]

    async def echo(reader, writer):
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                writer.write(line)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    class UDPEcho(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    async def main():
        loop = asyncio.get_running_loop()
        if args.kind == "udp":
            transport, _ = await loop.create_datagram_endpoint(
                UDPEcho, local_addr=(HOST, 0))
            host, port = transport.get_extra_info("sockname")[:2]
            info.update(host=host, port=port, server_class="DatagramProtocol")
        else:
            kw = {} if args.backlog is None else {"backlog": args.backlog}
            if args.impl == "uvloop-protocol":
                server = await _listen(info, args.unix,
                                       lambda path: loop.create_unix_server(LineEcho, path, **kw),
                                       lambda: loop.create_server(LineEcho, HOST, 0, **kw))
                info.update(server_class="loop.create_server (asyncio.Protocol)",
                            request_queue_size=args.backlog or 100)
            else:
                server = await _listen(info, args.unix,
                                       lambda path: asyncio.start_unix_server(echo, path, **kw),
                                       lambda: asyncio.start_server(echo, HOST, 0, **kw))
                info.update(server_class="asyncio.start_server (streams)",
                            request_queue_size=args.backlog or 100)
        _ready(info)
        await asyncio.Event().wait()

    if args.impl.startswith("uvloop"):
        uvloop.run(main())
    else:
        asyncio.run(main())


def _exit_with_parent():
    """Exit when stdin (a pipe from the runner) reaches EOF: a runner that
    dies without stopping its servers leaves no orphans behind."""
    def watch():
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os._exit(0)
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastsock._bench.servers")
    parser.add_argument("--impl", choices=IMPLS, required=True)
    parser.add_argument("--kind", choices=KINDS, default="echo")
    parser.add_argument("--cpu", type=int, default=None,
                        help="pin this process (and so all its threads) to one CPU")
    parser.add_argument("--backlog", type=int, default=None,
                        help="listen backlog (request_queue_size); default: the "
                             "library's own (socketserver 5, asyncio 100)")
    parser.add_argument("--unix", default=None, help="serve on a unix socket path")
    parser.add_argument("--exit-on-stdin-eof", action="store_true",
                        help="exit when stdin is closed (the runner holds it open)")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        # Before anything starts a thread: every later thread inherits it.
        os.sched_setaffinity(0, {args.cpu})
    if args.exit_on_stdin_eof:
        _exit_with_parent()
    if not supports(args.impl, args.kind):
        parser.error("%s has no %s server" % (args.impl, args.kind))
    if args.impl in ASYNC_IMPLS:
        _serve_asyncio(args)
    else:
        _serve_socketserver(args)


if __name__ == "__main__":
    main()
