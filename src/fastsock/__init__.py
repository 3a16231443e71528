"""fastsock: a drop-in, Cython-accelerated replacement for :mod:`socketserver`.

``import fastsock as socketserver`` gives the whole API of CPython 3.13's
``socketserver`` on every supported Python, with the serve loop, accept,
``recvfrom`` and the stream handlers' ``rfile``/``wfile`` compiled.

``fastsock.BACKEND`` is ``"cython"`` when the compiled core is loaded and
``"python"`` when the pure-Python twin is (see ``FASTSOCK_PURE``).
"""
import os
import socket

from ._backend import BACKEND
from ._errors import LineTooLong
from ._server import (
    BaseServer, TCPServer, UDPServer, ThreadingMixIn,
    ThreadingTCPServer, ThreadingUDPServer,
    ThreadPoolMixIn, ThreadPoolTCPServer, ThreadPoolUDPServer,
)
from ._handlers import (
    BaseRequestHandler, StreamRequestHandler, DatagramRequestHandler,
    _SocketWriter,
)

from ._greenlet_server import GreenletMixIn, GreenletTCPServer
from ._green_socket import GreenSocket

from ._install import install, uninstall
from ._stats import ServerStats, StatsExporter, prometheus_text

__version__ = "0.1.0"

#: fastsock's additions to the socketserver API (not in ``__all__``, which
#: stays exactly the stdlib's so ``from fastsock import *`` is a drop-in).
EXTRAS = ["install", "uninstall", "ThreadPoolMixIn", "ThreadPoolTCPServer", "ThreadPoolUDPServer",
          "ThreadPoolUnixStreamServer", "ThreadPoolUnixDatagramServer", "LineTooLong",
          "ServerStats", "StatsExporter", "prometheus_text",
          "GreenletMixIn", "GreenletTCPServer", "GreenletUnixStreamServer", "GreenSocket"]

# The public names of CPython 3.13's socketserver, in its order, under the
# same platform conditions.
__all__ = ["BaseServer", "TCPServer", "UDPServer",
           "ThreadingUDPServer", "ThreadingTCPServer",
           "BaseRequestHandler", "StreamRequestHandler",
           "DatagramRequestHandler", "ThreadingMixIn"]

if hasattr(os, "fork"):
    from ._server import ForkingMixIn, ForkingTCPServer, ForkingUDPServer
    __all__ += ["ForkingUDPServer", "ForkingTCPServer", "ForkingMixIn"]

if hasattr(socket, "AF_UNIX"):
    from ._server import (
        UnixStreamServer, UnixDatagramServer,
        ThreadingUnixStreamServer, ThreadingUnixDatagramServer,
        ThreadPoolUnixStreamServer, ThreadPoolUnixDatagramServer,
    )
    from ._greenlet_server import GreenletUnixStreamServer
    __all__ += ["UnixStreamServer", "UnixDatagramServer",
                "ThreadingUnixStreamServer", "ThreadingUnixDatagramServer"]
    if hasattr(os, "fork"):
        from ._server import ForkingUnixStreamServer, ForkingUnixDatagramServer
        __all__ += ["ForkingUnixStreamServer", "ForkingUnixDatagramServer"]
