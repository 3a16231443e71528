# cython: language_level=3, embedsignature=True
"""fastsock's compiled core.

The hot paths of the socketserver API, compiled: the serve loop's wait
(``Waker``, ``wait_readable``), ``accept``, ``recvfrom``, and the buffered
streams of stream handlers (``SocketReader``, ``SocketWriter``), and the
servers' statistics counters (``Counters``).  The
pure-Python twin ``fastsock._core_py`` has the same names, signatures and
behaviour; ``fastsock._backend`` chooses between them.

Every blocking system call runs with the GIL released; EINTR is retried after
``PyErr_CheckSignals()`` (PEP 475), so signal handlers run and Ctrl-C raises
``KeyboardInterrupt`` promptly.
"""

cimport cython
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno

from fastsock._posix cimport *

import io
import socket as _socket_module

__all__ = ["READY", "WOKEN", "INVALID", "Waker", "wait_readable", "accept", "accept_nowait",
           "recvfrom",
           "DatagramReceiver", "send_batch", "sendto", "trim_heap", "SocketReader", "SocketWriter", "Counters",
           "Hub"]

include "_core_errors.pxi"
include "_core_loop.pxi"
include "_core_green.pxi"
include "_core_io.pxi"
include "_core_stats.pxi"
