"""Exceptions fastsock adds to the socketserver API.

Shared by both cores (``fastsock._core`` and its pure twin ``fastsock._core_py``)
so that a handler catches the same class whichever backend is loaded.
"""

__all__ = ["LineTooLong"]


class LineTooLong(ValueError):
    """A line read by ``SocketReader.readline()`` (or by iterating the
    reader) is longer than the reader's *max_line*: more than *max_line*
    bytes arrived without a newline among them.

    The first *max_line* bytes of the line have been consumed and dropped
    (one more by an unbuffered reader over a socket that cannot peek, such
    as TLS); the rest of it is still unread.  Raised by
    ``StreamRequestHandler.rfile`` when the handler sets ``max_line_size``.
    """

    __module__ = "fastsock"
