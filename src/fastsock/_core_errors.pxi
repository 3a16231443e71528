# ---------------------------------------------------------------------------
# Errors and signals: the one place that turns errno into Python exceptions.
# ---------------------------------------------------------------------------

cdef int check_signals() except -1:
    """Run pending Python signal handlers after EINTR (PEP 475).

    Returns 0 to retry the call; raises what a handler raised (for example
    KeyboardInterrupt)."""
    if PyErr_CheckSignals() < 0:
        return -1
    return 0


cdef int raise_errno(int err) except -1:
    """Raise OSError for *err*; the constructor picks the subclass
    (ConnectionResetError, BrokenPipeError, BlockingIOError, ...)."""
    raise OSError(err, strerror(err).decode("utf-8", "replace"))


cdef int raise_timeout() except -1:
    # The same exception and text a timed-out socket operation raises.
    raise TimeoutError("timed out")


cdef inline bint would_block(int e) noexcept nogil:
    # Two tests, not "e == EAGAIN or e == EWOULDBLOCK": Cython would make a
    # switch of it, with a duplicate case where the two are equal.
    if e == EAGAIN:
        return True
    return e == EWOULDBLOCK
