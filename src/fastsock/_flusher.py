"""The deadline behind write coalescing, shared by both cores.

An unbuffered ``wfile`` linked to its ``rfile`` holds back a write only while
the handler still has unread input buffered (pipelined requests), and sends
it as soon as the reader has to go to the socket, or on flush()/close().  If
the handler pauses instead (sleeps, waits on something else) with a write
held back, this thread sends it after ``DELAY`` seconds, so bytes that were
written are never held for longer than that.

One daemon thread per process, started on first use (and again in a forked
child); it sleeps on an event while no writer holds anything back.
"""
import os
import threading
import time

#: the longest a held-back write waits before the flusher sends it
DELAY = 0.001

_lock = threading.Lock()
_pending = set()
_wake = threading.Event()
_thread = None
_pid = None


def register(writer):
    """Track *writer*, which has just started holding back a write."""
    global _thread, _pid
    _pending.add(writer)
    if not _wake.is_set():
        _wake.set()
    if _pid != os.getpid():
        with _lock:
            if _pid != os.getpid():
                thread = threading.Thread(target=_run, name="fastsock-flusher",
                                          daemon=True)
                thread.start()
                _thread, _pid = thread, os.getpid()


def _run():
    monotonic = time.monotonic
    while True:
        _wake.wait()
        time.sleep(DELAY)
        cutoff = monotonic() - DELAY
        for writer in list(_pending):
            try:
                done = writer._flush_stale(cutoff)
            except Exception:  # never let one writer stop the thread
                done = True
            if done:
                _pending.discard(writer)
        # Do not keep the last writer (its socket, reader and buffer) alive
        # while this thread sleeps.
        writer = None
        if not _pending:
            _wake.clear()
            if _pending:  # registered between the check and the clear
                _wake.set()
