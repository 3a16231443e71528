"""Pure-Python twin of ``fastsock._core``: the same names, signatures and
behaviour, used where the extension is not built or ``FASTSOCK_PURE=1``."""
from ._loop_py import (READY, WOKEN, INVALID, Waker, wait_readable, accept, accept_nowait,
                       recvfrom, DatagramReceiver, send_batch, sendto, trim_heap)
from ._io_py import SocketReader, SocketWriter
from ._stats import Counters
from ._green_py import Hub

__all__ = ["READY", "WOKEN", "INVALID", "Waker", "wait_readable", "accept", "accept_nowait",
           "recvfrom", "DatagramReceiver", "send_batch", "sendto", "trim_heap",
           "SocketReader", "SocketWriter", "Counters", "Hub"]
