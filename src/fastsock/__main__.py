"""``python -m fastsock``: info, echo and bench commands."""
import argparse
import os
import platform
import socket
import sys


def cmd_info(args):
    import fastsock
    from fastsock import _backend
    print("fastsock %s" % fastsock.__version__)
    print("backend: %s" % fastsock.BACKEND)
    if _backend.REASON:
        print("why: %s" % _backend.REASON)
    print("location: %s" % os.path.dirname(fastsock.__file__))
    print("python: %s %s (%s)" % (platform.python_implementation(),
                                   platform.python_version(), sys.executable))
    print("platform: %s" % platform.platform())
    return 0


def cmd_echo(args):
    import fastsock

    class EchoHandler(fastsock.StreamRequestHandler):
        def handle(self):
            for line in self.rfile:
                self.wfile.write(line)

    class DatagramEchoHandler(fastsock.DatagramRequestHandler):
        def handle(self):
            self.wfile.write(self.rfile.read())

    if args.unix:
        cls = (fastsock.ThreadingUnixDatagramServer if args.udp
               else fastsock.ThreadingUnixStreamServer)
        address = args.unix
    else:
        cls = fastsock.ThreadingUDPServer if args.udp else fastsock.ThreadingTCPServer
        address = (args.bind, args.port)
    handler = DatagramEchoHandler if args.udp else EchoHandler
    cls.allow_reuse_address = True
    cls.daemon_threads = True
    try:
        server = cls(address, handler)
    except OSError as exc:
        print("fastsock echo: cannot listen on %r: %s" % (address, exc.strerror or exc),
              file=sys.stderr)
        return 1
    with server:
        where = server.server_address
        print("echo (%s, %s backend) on %s" % ("udp" if args.udp else "stream",
                                               fastsock.BACKEND, where), flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            print("\nstopped", file=sys.stderr)
        finally:
            if args.unix and os.path.exists(args.unix):
                os.unlink(args.unix)
    return 0


def cmd_http(args):
    import functools
    import http.server
    from fastsock import http as fhttp
    if not os.path.isdir(args.directory):
        print("fastsock http: not a directory: %s" % args.directory, file=sys.stderr)
        return 1
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=args.directory)
    try:
        return fhttp.serve(handler, port=args.port, bind=args.bind, workers=args.workers)
    except OSError as exc:
        print("fastsock http: cannot serve on %s port %d: %s"
              % (args.bind or "*", args.port, exc.strerror or exc), file=sys.stderr)
        return 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m fastsock",
        description="fastsock: a drop-in, Cython-accelerated socketserver.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    info = sub.add_parser("info", help="version, active backend, Python and platform")
    info.set_defaults(func=cmd_info)

    echo = sub.add_parser("echo", help="a line-echo server for trying things out")
    echo.add_argument("--udp", action="store_true", help="echo datagrams instead of lines")
    echo.add_argument("--unix", metavar="PATH", help="listen on a unix socket at PATH")
    echo.add_argument("--bind", "-b", default="127.0.0.1", metavar="ADDR",
                      help="address to bind (default: 127.0.0.1)")
    echo.add_argument("port", nargs="?", type=int, default=8007,
                      help="port (default: 8007)")
    echo.set_defaults(func=cmd_echo)

    web = sub.add_parser("http", help="serve a folder over HTTP, like python -m http.server")
    web.add_argument("--bind", "-b", metavar="ADDR",
                     help="bind to this address (default: all interfaces, IPv6 and IPv4)")
    web.add_argument("--directory", "-d", default=os.getcwd(),
                     help="serve this directory (default: the current directory)")
    web.add_argument("--workers", "-w", type=int, metavar="N",
                     help="at most N worker threads (default: %d)" % 512)
    web.add_argument("port", nargs="?", type=int, default=8000,
                     help="port (default: 8000)")
    web.set_defaults(func=cmd_http)

    # Parsed by fastsock._bench.runner (main() hands it everything after "bench").
    sub.add_parser("bench", add_help=False,
                   help="compare against the stdlib on loopback (see: bench --help)")
    return parser


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["bench"]:
        # Everything after "bench" (options included) belongs to its own parser.
        from fastsock._bench import runner
        return runner.main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
