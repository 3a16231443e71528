"""The benchmark behind ``python -m fastsock bench``.

``runner``   the command line: scenarios x implementations, interleaved repeats,
             medians, ratios to the stdlib, server CPU per operation
``servers``  the servers under test, one child process each
``loadgen.c`` the epoll load generator (and a trivial C echo server used to
             calibrate it), compiled on first use by ``build``
``pyclient`` the pure-Python stand-in for the load generator when no C
             compiler is available (its numbers are client-bound)

Nothing here is imported by ``import fastsock``.
"""
