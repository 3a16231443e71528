#!/usr/bin/env python3
"""Differential, coverage-guided fuzz target for fastsock's socket streams.

    python tests/fuzz/fuzz_reader.py -atheris_runs=20000            # atheris
    python tests/fuzz/fuzz_reader.py -max_total_time=600 CORPUS_DIR  # keep a corpus
    python tests/fuzz/fuzz_reader.py crash-0123abcd...               # replay inputs
    python tests/fuzz/fuzz_reader.py -atheris_runs=500 /tmp/corpus tests/fuzz/seeds

Every input is decoded (by ``Source``, below; the same bytes mean the same
scenario with or without atheris) into one scenario over ``AF_UNIX``
socketpairs, run twice: on fastsock's ``SocketReader``/``SocketWriter`` and
on the stdlib objects they stand in for (``sock.makefile('rb'|'wb',
bufsize)``, ``socketserver._SocketWriter``).  Any difference in a result, an
exception (type and text), or a byte the peer receives is a crash:

``queued``     the whole stream (fuzzer-chosen bytes and chunking) is queued,
               EOF included, then a fuzzer-chosen sequence of reads runs on a
               blocking socket: read(n), read(), read1, readinto(1),
               readline(limit), peek, next(), readlines(hint), close.
``nonblock``   the same reads on a non-blocking socket, interleaved with
               deliveries of the next chunk and of EOF (None, b'',
               BlockingIOError and partial results must all match).
``timeout``    the same on a socket with a 3 ms timeout: a read that needs
               more than has arrived times out, after which the socket may
               not be read again.
``writer``     writes (bytes, bytearray, memoryview, array, str, non-contiguous
               views, writelines), flush and close on a blocking socket; the
               peer's bytes are compared after every operation.
``writer-nb``  the same on a non-blocking socket with a small send buffer:
               BlockingIOError (with characters_written) must match, and the
               bytes accepted must be the bytes the peer finally gets.
``coalesce``   an unbuffered SocketWriter linked to its SocketReader (the
               handler's wfile/rfile), reads and writes interleaved, against
               makefile('rb') + socketserver._SocketWriter: the reads must
               match; what the peer has received must always be a prefix of
               what the stdlib has sent, behind by at most 64 KiB, and all of
               it after flush(), close(), or a write with no input left.

Each scenario also checks that the streams give back every reference they
took on the socket (``sys.getrefcount``, ``_io_refs``) and close its fd.

The core under test is ``fastsock._core`` (``FASTSOCK_FUZZ_CORE=python``:
the pure-Python twin ``fastsock._core_py``).  Without atheris the same target
runs on random inputs drawn by hypothesis, with the libFuzzer-style options
``-atheris_runs=N`` (or ``-runs=N``), ``-max_total_time=S``, ``-seed=N``,
``-artifact_prefix=P``, input files to replay, and corpus directories (run
first, then random inputs); a failure is shrunk, saved as ``crash-<sha1>``
and exits 1.  ``FASTSOCK_FUZZ_ENGINE=hypothesis`` picks the fallback even
where atheris is installed.  Each input is bounded by a watchdog (``FASTSOCK_FUZZ_WATCHDOG``,
10 s): a hang is reported as a crash, with its input.
"""
import array
import hashlib
import inspect
import io
import os
import signal
import socket
import socketserver
import sys
import time

try:
    import atheris
except ImportError:
    atheris = None
if os.environ.get("FASTSOCK_FUZZ_ENGINE") == "hypothesis":
    atheris = None      # the fallback engine even where atheris is installed


def import_core():
    """fastsock, and the core under test (FASTSOCK_FUZZ_CORE, default cython)."""
    try:
        import fastsock
    except ImportError:   # a checkout without an installed fastsock: use src/
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                        os.pardir, os.pardir, "src"))
        import fastsock
    from fastsock import _backend
    which = os.environ.get("FASTSOCK_FUZZ_CORE", "cython")
    return fastsock, which, _backend.load(which)


if atheris is not None and __name__ == "__main__":
    # Coverage of fastsock's Python code (all of the stream code when
    # FASTSOCK_FUZZ_CORE=python); the compiled core is covered only when it
    # is built with -fsanitize=fuzzer-no-link (docs/hardening.md).
    with atheris.instrument_imports(include=["fastsock"]):
        fastsock, CORE_NAME, core = import_core()
else:
    fastsock, CORE_NAME, core = import_core()

DEFAULT = io.DEFAULT_BUFFER_SIZE
BUFSIZES = (0, 1, 2, 3, 7, 8, 16, 100, 4096, DEFAULT, -1, 0)
WRITER_BUFSIZES = (0, 1, 2, 7, 16, 100, 4096, DEFAULT, -1, 0)
MAX_PAYLOAD = 60000      # everything queued fits in a unix socket's buffer
MAX_OPS = 40
PEND_MAX = 65536         # most bytes a coalescing writer holds back
PATTERNS = (b"a", b"ab\n", b"\n", b"\r\n", b"0123456\n", b"x" * 31 + b"\n", b"\x00\xff")
SCENARIOS = ("queued", "nonblock", "timeout", "writer", "writer-nb", "coalesce",
             "queued", "coalesce")


class Mismatch(AssertionError):
    """The streams under test and the stdlib's disagree."""


class KnownDifference(Exception):
    """A reported, accepted difference after which the scenario cannot go on."""


# -- decoding the input --------------------------------------------------------

class Source:
    """The fuzzer's bytes as a stream of choices; zeros once exhausted, so
    every input decodes to some scenario and a longer input extends it."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def more(self):
        return self.pos < len(self.data)

    def byte(self):
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self):
        return self.byte() | self.byte() << 8

    def pick(self, seq):
        return seq[self.byte() % len(seq)]

    def take(self, n):
        chunk = self.data[self.pos:self.pos + n]
        self.pos += len(chunk)
        return chunk

    def size(self, bufsize, specials=()):
        """A size argument: small, large, or next to a buffer boundary."""
        kind = self.byte() % (7 if specials else 6)
        if kind == 0:
            return self.byte() % 41
        if kind == 1:
            return self.u16() % 20001
        if kind in (2, 3):
            base = bufsize if bufsize > 0 else DEFAULT
            return max(0, self.pick((base - 1, base, base + 1, 2 * base - 1,
                                     2 * base, 2 * base + 1, DEFAULT, DEFAULT + 1)))
        if kind == 4:
            return self.byte()
        if kind == 5:
            return self.byte() % 5
        return self.pick(specials)

    def payload(self):
        parts = []
        for _ in range(self.byte() % 12):
            kind = self.byte() % 6
            if kind == 0:
                parts.append(self.take(self.byte() % 33))
            elif kind == 1:
                parts.append(b"\n")
            elif kind == 2:
                parts.append(self.pick(PATTERNS) * (1 + self.u16() % 4000))
            elif kind == 3:
                parts.append(self.take(self.byte() % 17) + b"\n")
            elif kind == 4:
                parts.append(b"\r\n")
            else:
                parts.append(bytes([self.byte()]) * self.byte())
        return b"".join(parts)[:MAX_PAYLOAD]

    def chunks(self):
        sizes = []
        for _ in range(self.byte() % 16):
            sizes.append(1 + (self.byte() % 8 if self.byte() & 1 else self.u16() % 3000))
        return sizes


# -- running one operation on both sides -----------------------------------------

def outcome(func, *args):
    """What func(*args) did: ("ok", result) or ("raised", type, text[, written])."""
    try:
        return ("ok", func(*args))
    except Exception as exc:
        if isinstance(exc, Mismatch):
            raise
        res = ("raised", type(exc), str(exc))
        if isinstance(exc, BlockingIOError):
            res += (getattr(exc, "characters_written", None),)
        return res


READ_OPS = ("read", "read", "read1", "readinto", "readinto1", "readline", "readline",
            "peek", "next", "readlines", "islice", "close")


def read_op(src, bufsize):
    op = src.pick(READ_OPS)
    if op == "read":
        return op, src.size(bufsize, (-1, None, -2))
    if op == "read1":
        return op, src.size(bufsize, (-1,))
    if op in ("readinto", "readinto1"):
        return op, (src.size(bufsize), src.byte() % 4)
    if op == "readline":
        return op, src.size(bufsize, (-1, None, -1))
    if op == "peek":
        return op, src.size(bufsize, (0, -1))
    if op == "readlines":
        return op, src.size(bufsize, (-1, 0, None))
    if op == "islice":
        return op, src.byte() % 4
    if op == "close" and src.byte() % 4:
        return "next", None     # closing ends the useful part: keep it rare
    return op, None


def readinto_target(size, kind):
    if kind == 0:
        return bytearray(size)
    if kind == 1:
        return memoryview(bytearray(size + 3))[3:]
    if kind == 2:
        return array.array("B", bytes(size))
    return bytes(size)      # read-only: TypeError


def apply_read(reader, op, arg, raw_sock=None):
    """One read operation.  raw_sock is given for the stdlib's unbuffered file,
    a bare SocketIO: it has no read1/readinto1/peek, so their unbuffered
    meanings are used (one raw read, one MSG_PEEK recv)."""
    if op == "read":
        if raw_sock is not None and arg is None:
            arg = -1        # a raw SocketIO refuses None; ours takes it as -1
        return reader.read(arg)
    if op == "read1":
        if raw_sock is not None:
            if arg == 0 and not reader.closed:
                return b""      # as a buffered read1(0): the socket is not read
            got = reader.read(arg if arg >= 0 else DEFAULT)
            # A dry non-blocking socket: b"" as from a buffered read1().
            return b"" if got is None else got
        return reader.read1(arg)
    if op in ("readinto", "readinto1"):
        size, kind = arg
        buf = readinto_target(size, kind)
        if op == "readinto1" and raw_sock is None:
            n = reader.readinto1(buf)
        else:
            n = reader.readinto(buf)
        return n, bytes(buf)[:n or 0]
    if op == "readline":
        return reader.readline(arg)
    if op == "peek":
        if raw_sock is not None:
            # One MSG_PEEK read through the SocketIO's rules.
            if reader.closed:
                raise ValueError("I/O operation on closed file.")
            if reader._timeout_occurred:
                raise OSError("cannot read from timed out object")
            try:
                return raw_sock.recv(arg if arg > 0 else DEFAULT, socket.MSG_PEEK)
            except BlockingIOError:
                return b""   # what a buffered peek() gives on a dry socket
            except TimeoutError:
                reader._timeout_occurred = True
                raise
        return reader.peek(arg)
    if op == "next":
        return next(reader, "StopIteration")
    if op == "readlines":
        return reader.readlines(arg)
    if op == "islice":
        lines = []
        for line in reader:
            lines.append(line)
            if len(lines) > arg:
                break
        return lines
    if op == "close":
        reader.close()
        return reader.closed
    raise AssertionError(op)


def known_difference(op, arg, bufsize, got, want):
    """Differences reported and accepted (docs/hardening.md, "Findings")."""
    # 1. Unbuffered readinto() of a read-only buffer: the stdlib's raw
    #    SocketIO checks closed/timed out first and lets recv_into() word the
    #    TypeError; ours refuses the buffer first, in its own words.
    if (op in ("readinto", "readinto1") and bufsize == 0 and arg[1] == 3
            and got[:2] == ("raised", TypeError) and want[0] == "raised"):
        return True
    # 2. readline(0) on a closed unbuffered reader: io.IOBase.readline(), which
    #    the stdlib's raw SocketIO uses, returns b"" without checking closed;
    #    ours raises ValueError like every other call on a closed file.
    if (op == "readline" and arg == 0 and bufsize == 0 and want == ("ok", b"")
            and got[:2] == ("raised", ValueError)):
        return True
    return False


def buffer_amounts_differ(i, op, bufsize, got, want, ours, ref):
    """A reader with bufsize -1 (either backend) grows its buffer under bulk
    input (up to 64 KiB; the stdlib keeps 8 KiB), so how much peek(), read1() and
    readinto1() return at once -- the buffered bytes -- may differ, as the
    io contract allows.  True when they differ only that way: the shorter
    result is a prefix of the longer, neither empty.  After read1/readinto1
    the reader that got less reads the rest, which must be the same bytes,
    so that both stand at the same place again."""
    if (bufsize != -1 or op not in ("peek", "read1", "readinto1")
            or got[0] != "ok" or want[0] != "ok" or got == want):
        return False
    g = got[1][1] if op == "readinto1" else got[1]
    w = want[1][1] if op == "readinto1" else want[1]
    if not g or not w or not (g.startswith(w) or w.startswith(g)):
        return False
    if op != "peek" and len(g) != len(w):
        behind, extra = (ref, g[len(w):]) if len(g) > len(w) else (ours, w[len(g):])
        same("op %d %s: the rest of what the other reader returned" % (i, op),
             outcome(behind.read, len(extra)), ("ok", extra))
    return True


def same_write(what, got, want):
    # 4. The pure-Python twin words the TypeError for a write of something
    #    that is not bytes-like through memoryview() ("memoryview: a
    #    bytes-like object is required, ..."); the compiled core matches.
    if (CORE_NAME == "python" and got[:2] == want[:2] == ("raised", TypeError)):
        return
    same(what, got, want)


def same(what, got, want):
    if got != want:
        raise Mismatch("%s: fastsock %r, stdlib %r" % (what, clip(got), clip(want)))


def clip(value):
    text = repr(value)
    return text if len(text) < 600 else text[:300] + " ... " + text[-250:]


# -- sockets ------------------------------------------------------------------------

class SubSocket(socket.socket):
    """A socket.socket subclass: the streams must go through its methods."""

    def recv_into(self, *args):
        return super().recv_into(*args)

    def send(self, *args):
        return super().send(*args)

    def sendall(self, *args):
        return super().sendall(*args)


def drain(sock):
    """Everything sock holds now, without waiting."""
    chunks = []
    while True:
        try:
            chunk = sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class Pairs:
    """Two socketpairs, ours and the stdlib's, closed by close()."""

    def __init__(self, subclass=False):
        self.ours, self.ours_peer = socket.socketpair()
        self.ref, self.ref_peer = socket.socketpair()
        if subclass:
            sock = self.ours
            self.ours = SubSocket(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.refcount = sys.getrefcount(self.ours)

    def both(self, method, *args):
        getattr(self.ours, method)(*args)
        getattr(self.ref, method)(*args)

    def peers(self, method, *args):
        getattr(self.ours_peer, method)(*args)
        getattr(self.ref_peer, method)(*args)

    def check_released(self):
        """The streams (closed and dropped) gave back what they took."""
        same("_io_refs after close", self.ours._io_refs, self.ref._io_refs)
        deadline = time.monotonic() + 1.0
        while sys.getrefcount(self.ours) != self.refcount:
            # The flusher thread may still hold a writer for a moment.
            if time.monotonic() > deadline:
                raise Mismatch("socket refcount %d after the streams are gone, %d before"
                               % (sys.getrefcount(self.ours), self.refcount))
            time.sleep(0.002)
        self.ours.close()
        self.ref.close()
        same("fd closed", self.ours.fileno(), self.ref.fileno())

    def close(self):
        for sock in (self.ours, self.ours_peer, self.ref, self.ref_peer):
            sock.close()


class Feeder:
    """The input stream, delivered chunk by chunk to both peers."""

    def __init__(self, pairs, payload, chunks):
        self.pairs = pairs
        self.payload = payload
        self.chunks = list(chunks)
        self.pos = 0
        self.eof = False

    def next_chunk(self):
        if self.eof:
            return
        size = self.chunks.pop(0) if self.chunks else len(self.payload) - self.pos
        data = self.payload[self.pos:self.pos + size]
        self.pos += len(data)
        if data:
            self.pairs.peers("sendall", data)

    def finish(self):
        while not self.eof and self.pos < len(self.payload):
            self.next_chunk()
        if not self.eof:
            self.pairs.peers("shutdown", socket.SHUT_WR)
            self.eof = True


# -- the scenarios ----------------------------------------------------------------------

def scenario_reader(src, mode):
    bufsize = src.pick(BUFSIZES)
    subclass = bool(src.byte() & 1)
    payload = src.payload()
    chunks = src.chunks()
    pairs = Pairs(subclass)
    ours = ref = None
    try:
        if mode == "nonblock":
            pairs.both("setblocking", False)
        elif mode == "timeout":
            pairs.both("settimeout", 0.003)
        ours = core.SocketReader(pairs.ours, bufsize)
        ref = pairs.ref.makefile("rb", bufsize)
        raw = pairs.ref if bufsize == 0 else None
        feeder = Feeder(pairs, payload, chunks)
        if mode == "queued":
            feeder.finish()
        ops = []
        for _ in range(MAX_OPS):
            if not src.more():
                break
            if mode != "queued" and src.byte() % 3 == 0:
                ops.append(("eof", None) if src.byte() % 8 == 0 else ("deliver", None))
            else:
                ops.append(read_op(src, bufsize))
        ops += [("finish", None), ("read", -1), ("read", 1), ("readline", -1), ("next", None)]
        for i, (op, arg) in enumerate(ops):
            if op == "deliver":
                feeder.next_chunk()
            elif op == "eof":
                feeder.finish()
            elif op == "finish":
                feeder.finish()
                if mode == "nonblock":
                    pairs.both("setblocking", True)
            else:
                got = outcome(apply_read, ours, op, arg)
                want = outcome(apply_read, ref, op, arg, raw)
                if known_difference(op, arg, bufsize, got, want):
                    continue
                if buffer_amounts_differ(i, op, bufsize, got, want, ours, ref):
                    continue
                same("op %d %s(%r) [%s, bufsize %d%s]" % (
                    i, op, arg, mode, bufsize, ", subclass" if subclass else ""), got, want)
        ours.close()
        ref.close()
        same("closed", ours.closed, ref.closed)
        ours = ref = None
        pairs.check_released()
    finally:
        for stream in (ours, ref):
            if stream is not None:
                outcome(stream.close)
        pairs.close()


WRITE_OPS = ("write", "write", "write", "writelines", "flush", "drain", "close", "write")


def write_data(src):
    size = src.pick((lambda: src.byte() % 20, lambda: src.u16() % 20000,
                     lambda: src.pick((1, 2, 7, 8, 99, 100, 101, 4095, 4096, 8191,
                                       8192, 8193, 16384, 16385)),
                     lambda: src.byte()))()
    seed = src.byte()
    data = (bytes(range(seed, 256)) + bytes(range(seed))) * (size // 256 + 1)
    data = data[:size]
    kind = src.byte() % 8
    if kind == 1:
        return bytearray(data)
    if kind == 2:
        return memoryview(b"..." + data)[3:]
    if kind == 3:
        return array.array("H", data[:size & ~1])
    if kind == 4 and not src.byte() % 4:
        return data.decode("latin-1")                       # TypeError
    if kind == 5 and not src.byte() % 4:
        return memoryview(data)[::2]                        # not contiguous
    return data


def nbytes(data):
    """Its size in bytes; 0 also for what write() must refuse (str, a
    non-contiguous view)."""
    try:
        view = memoryview(data)
    except TypeError:
        return 0
    return view.nbytes if view.contiguous else 0


def scenario_writer(src, nonblocking):
    bufsize = src.pick(WRITER_BUFSIZES)
    subclass = bool(src.byte() & 1)
    pairs = Pairs(subclass)
    ours = ref = None
    got_total = [b"", b""]
    accepted = [0, 0]
    closed = False

    def check(label):
        for i, peer in enumerate((pairs.ours_peer, pairs.ref_peer)):
            got_total[i] += drain(peer)
        same("peer bytes after %s [bufsize %d]" % (label, bufsize),
             got_total[0], got_total[1])

    try:
        if nonblocking:
            for sock in (pairs.ours, pairs.ref):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            pairs.both("setblocking", False)
        ours = core.SocketWriter(pairs.ours, bufsize)
        ref = (socketserver._SocketWriter(pairs.ref) if bufsize == 0
               else pairs.ref.makefile("wb", bufsize))
        for i in range(MAX_OPS):
            if not src.more():
                break
            op = src.pick(WRITE_OPS)
            label = "op %d %s" % (i, op)
            if op == "drain":
                check(label)
                continue
            if op == "close":
                if src.byte() % 4:
                    continue
                if nonblocking:
                    finish_nonblocking(pairs, ours, ref, check)
                res = outcome(ours.close), outcome(ref.close)
                same_write(label, *res)
                closed = True
            elif closed and bufsize == 0 and op != "flush":
                # The stdlib's _SocketWriter keeps sending after close();
                # ours refuses, like every other file object.
                data = write_data(src)
                res = outcome(ours.write, data)
                if nbytes(data) or isinstance(data, bytes):
                    same(label + " after close", res[:2], ("raised", ValueError))
                continue
            elif op == "flush":
                res = outcome(ours.flush), outcome(ref.flush)
                same_write(label, *res)
            else:
                if op == "writelines":
                    data = [write_data(src) for _ in range(src.byte() % 4)]
                    res = outcome(ours.writelines, data), outcome(ref.writelines, data)
                    if res[0][0] == "ok":
                        accepted[0] += sum(map(nbytes, data))
                    else:
                        accepted[1] = None     # how many lines were taken is not known
                else:
                    data = write_data(src)
                    res = outcome(ours.write, data), outcome(ref.write, data)
                    label += "(%s of %d bytes)" % (type(data).__name__, nbytes(data))
                    if res[0][0] == "ok":
                        accepted[0] += res[0][1]
                    elif res[0][1] is BlockingIOError and res[0][3]:
                        accepted[0] += res[0][3]
                same_write(label, *res)
            if not nonblocking:
                check(label)
        if nonblocking:
            finish_nonblocking(pairs, ours, ref, check)
        same("close", outcome(ours.close), outcome(ref.close))
        check("close")
        if (nonblocking and bufsize != 0 and accepted[1] is not None
                and len(got_total[0]) != accepted[0]):
            raise Mismatch("the peer got %d bytes, write() accepted %d [bufsize %d]"
                           % (len(got_total[0]), accepted[0], bufsize))
        ours = ref = None
        pairs.check_released()
    finally:
        for stream in (ours, ref):
            if stream is not None:
                outcome(stream.close)
        pairs.close()


def finish_nonblocking(pairs, ours, ref, check):
    """Flush both writers on their non-blocking sockets, draining the peers
    until the flushes go through (bounded)."""
    for _ in range(2000):
        res = outcome(ours.flush), outcome(ref.flush)
        same("final flush", res[0][:3], res[1][:3])
        check("final flush")
        if res[0][0] == "ok" or res[0][1] is not BlockingIOError:
            return
    raise Mismatch("flush never completed")


COALESCE_OPS = READ_OPS[:-1] + ("write", "write", "write", "flush", "pause",
                                "close_writer", "close_reader")


def observed_eof(op, arg, result):
    """Whether a read's result shows the reader has nothing left (given EOF
    was sent): an empty result where the call asked for at least a byte, or
    a call that reads to the end."""
    if op == "read":
        return arg is None or arg < 0 or (arg > 0 and result == b"")
    if op in ("read1", "readline"):
        return arg != 0 and result == b""
    if op in ("readinto", "readinto1"):
        return arg[0] > 0 and result == (0, b"")
    if op == "readlines":
        return arg is None or arg <= 0 or result == []
    if op in ("next", "islice", "peek"):
        return result in ("StopIteration", [], b"")
    return False


def scenario_coalesce(src):
    bufsize = src.pick(BUFSIZES)     # the handler's rbufsize (default -1)
    timed = bool(src.byte() & 1)
    payload = src.payload()
    chunks = src.chunks()
    pairs = Pairs()
    reader = writer = ref_reader = ref_writer = None
    got_total = [b"", b""]
    at_eof = False
    writer_closed = False
    reader_closed = False
    try:
        if timed:
            pairs.both("settimeout", 0.003)
        reader = core.SocketReader(pairs.ours, bufsize)
        writer = core.SocketWriter(pairs.ours, 0, reader)
        ref_reader = pairs.ref.makefile("rb", bufsize)
        ref_writer = socketserver._SocketWriter(pairs.ref)
        raw = pairs.ref if bufsize == 0 else None
        feeder = Feeder(pairs, payload, chunks)
        if not timed:
            feeder.finish()
        for i in range(MAX_OPS + 1):
            last = i == MAX_OPS or not src.more()
            if last:
                op, arg = "close_writer", None
            elif timed and src.byte() % 3 == 0:
                op, arg = ("eof" if src.byte() % 8 == 0 else "deliver"), None
            else:
                op = src.pick(COALESCE_OPS)
                arg = None
                if op in READ_OPS:
                    op, arg = read_op(src, bufsize)
            label = "op %d %s(%r) [coalesce, bufsize %d%s]" % (
                i, op, arg, bufsize, ", timed" if timed else "")
            must_be_sent = False
            if op == "deliver":
                feeder.next_chunk()
            elif op == "eof":
                feeder.finish()
            elif op == "pause":
                time.sleep(0.002)
            elif op == "write":
                data = write_data(src)
                if writer_closed:
                    if nbytes(data) or isinstance(data, bytes):
                        same(label, outcome(writer.write, data)[:2], ("raised", ValueError))
                else:
                    res = outcome(writer.write, data), outcome(ref_writer.write, data)
                    same_write(label, *res)
                    # A write refused (TypeError...) sends nothing held back.
                    must_be_sent = res[0][0] == "ok" and (at_eof or reader_closed)
            elif op == "flush":
                if not writer_closed:
                    res = outcome(writer.flush), outcome(ref_writer.flush)
                    same(label, *res)
                    must_be_sent = res[0][0] == "ok"
            elif op == "close_writer":
                if not writer_closed:
                    same(label, outcome(writer.close), outcome(ref_writer.close))
                    writer_closed = True
                    must_be_sent = True
            elif op == "close_reader":
                same(label, outcome(reader.close), outcome(ref_reader.close))
                reader_closed = True
            else:
                got = outcome(apply_read, reader, op, arg)
                want = outcome(apply_read, ref_reader, op, arg, raw)
                if not (known_difference(op, arg, bufsize, got, want) or buffer_amounts_differ(
                        i, op, bufsize, got, want, reader, ref_reader)):
                    same(label, got, want)
                if op == "close":
                    reader_closed = True
                elif feeder.eof and got[0] == "ok" and observed_eof(op, arg, got[1]):
                    at_eof = True       # nothing left to read: no write is held
            for j, peer in enumerate((pairs.ours_peer, pairs.ref_peer)):
                got_total[j] += drain(peer)
            ours_got, ref_got = got_total
            if not ref_got.startswith(ours_got):
                raise Mismatch("%s: the peer got bytes the stdlib did not send: "
                               "%r vs %r" % (label, clip(ours_got), clip(ref_got)))
            if len(ref_got) - len(ours_got) > PEND_MAX:
                raise Mismatch("%s: %d bytes held back" % (label, len(ref_got) - len(ours_got)))
            if must_be_sent:
                same(label + ": bytes the peer has", ours_got, ref_got)
            if last:
                break
        reader.close()
        ref_reader.close()
        reader = writer = ref_reader = ref_writer = None
        pairs.check_released()
    finally:
        for stream in (writer, reader, ref_writer, ref_reader):
            if stream is not None:
                outcome(stream.close)
        pairs.close()


def run_one(data):
    src = Source(data)
    mode = src.pick(SCENARIOS)
    try:
        if mode in ("queued", "nonblock", "timeout"):
            scenario_reader(src, mode)
        elif mode == "writer":
            scenario_writer(src, False)
        elif mode == "writer-nb":
            scenario_writer(src, True)
        else:
            scenario_coalesce(src)
    except KnownDifference:
        pass


# -- the watchdog and the two engines ---------------------------------------------------

WATCHDOG = float(os.environ.get("FASTSOCK_FUZZ_WATCHDOG", "10"))


class Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise Hang("one input ran for more than %g s (FASTSOCK_FUZZ_WATCHDOG)" % WATCHDOG)


def TestOneInput(data):
    signal.setitimer(signal.ITIMER_REAL, WATCHDOG)
    try:
        run_one(data)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def banner(engine):
    sys.stderr.write("fuzz_reader: engine %s, core %s (%s), fastsock from %s\n" % (
        engine, CORE_NAME, core.__name__, os.path.dirname(fastsock.__file__)))


def parse_flags(argv):
    """libFuzzer-style flags for the fallback engine: (flags, files)."""
    flags, files = {}, []
    for arg in argv:
        if arg.startswith("-") and "=" in arg:
            name, value = arg.lstrip("-").split("=", 1)
            flags[name] = value
        elif not arg.startswith("-"):
            files.append(arg)
    return flags, files


def replay(paths, verbose=True):
    """Run every input file in paths (files, or directories of them)."""
    inputs = []
    for path in paths:
        if os.path.isdir(path):
            inputs += [os.path.join(path, name) for name in sorted(os.listdir(path))]
        else:
            inputs.append(path)
    for path in inputs:
        with open(path, "rb") as f:
            data = f.read()
        if verbose:
            sys.stderr.write("Running: %s\n" % path)
        try:
            TestOneInput(data)
        except BaseException:
            sys.stderr.write("==%d== fuzz_reader: failing input: %s\n" % (os.getpid(), path))
            raise
    sys.stderr.write("Executed %d inputs\n" % len(inputs))
    return len(inputs)


def _fallback_main(argv, opened):
    """The same target on random inputs from hypothesis (no atheris here),
    in batches of 100 examples until -atheris_runs/-runs or
    -max_total_time is reached."""
    flags, files = parse_flags(argv)
    banner("hypothesis fallback")
    if files and not any(os.path.isdir(path) for path in files):
        replay(files)           # as libFuzzer: input files are run, not fuzzed
        return 0
    if files:
        replay(files, verbose=False)    # the corpus first, then random inputs
    import random
    from hypothesis import HealthCheck, Phase, given, seed, settings, strategies as st

    runs = int(flags.get("atheris_runs", flags.get("runs", "2000")))
    total = float(flags.get("max_total_time", "0"))
    base_seed = int(flags["seed"]) if "seed" in flags else random.randrange(1 << 30)
    sys.stderr.write("INFO: Seed: %d\n" % base_seed)
    started = time.monotonic()
    count = [0]
    failing = []
    # A sanitizer report or a segfault kills the process before hypothesis
    # can report: the input being run is always in this file.
    current_path = flags.get("artifact_prefix", "") + "fuzz-current-input"
    current = open(current_path, "wb")
    opened.append(current)
    sys.stderr.write("INFO: the input being run is kept in %s\n" % current_path)

    def target(data):
        count[0] += 1
        current.seek(0)
        current.truncate()
        current.write(data)
        current.flush()
        try:
            TestOneInput(data)
        except BaseException:
            failing.append(data)
            raise

    # Every length equally likely: hypothesis alone favours short inputs,
    # which decode to trivial scenarios.
    inputs = st.integers(0, 1024).flatmap(lambda n: st.binary(min_size=n, max_size=n))
    batch = 0
    while count[0] < runs and not (total and time.monotonic() - started > total):
        test = settings(max_examples=min(100, runs - count[0]), deadline=None,
                        database=None, phases=[Phase.generate, Phase.shrink],
                        print_blob=False, suppress_health_check=list(HealthCheck))(
            given(inputs)(target))
        test = seed(base_seed + batch)(test)
        batch += 1
        try:
            test()
        except BaseException as exc:
            if not failing or isinstance(exc, KeyboardInterrupt):
                raise
            data = failing[-1]      # hypothesis shrinks: the last failure is the smallest
            path = flags.get("artifact_prefix", "") + "crash-" + hashlib.sha1(data).hexdigest()
            with open(path, "wb") as f:
                f.write(data)
            import traceback
            traceback.print_exception(type(exc), exc, exc.__traceback__)
            sys.stderr.write("==%d== fuzz_reader: failing input (%d bytes) written to %s\n"
                             "%r\n" % (os.getpid(), len(data), path, data))
            return 1
    sys.stderr.write("Done %d runs in %d second(s)\n" % (count[0], time.monotonic() - started))
    return 0


def fallback_main(argv):
    current = []
    try:
        return _fallback_main(argv, current)
    finally:
        # Only a process killed outright (where this does not run) leaves it.
        for f in current:
            f.close()
            os.unlink(f.name)


def instrument_harness():
    """Coverage of this file's own decisions (the op sequences it reaches)."""
    for obj in list(globals().values()):
        if getattr(obj, "__module__", None) != __name__:
            continue
        if inspect.isfunction(obj):
            atheris.instrument_func(obj)
        elif inspect.isclass(obj):
            for member in vars(obj).values():
                if inspect.isfunction(member):
                    atheris.instrument_func(member)


def main():
    signal.signal(signal.SIGALRM, _alarm)
    if atheris is None:
        sys.exit(fallback_main(sys.argv[1:]))
    banner("atheris %s" % getattr(atheris, "__version__", ""))
    instrument_harness()
    argv = list(sys.argv)
    # libFuzzer adds new inputs to the first corpus directory: never to the
    # committed seeds.
    seeds = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seeds")
    dirs = [i for i, arg in enumerate(argv[1:], 1)
            if not arg.startswith("-") and os.path.isdir(arg)]
    if dirs and os.path.samefile(argv[dirs[0]], seeds) and not any(
            arg.startswith("-merge") for arg in argv):
        import tempfile
        scratch = tempfile.mkdtemp(prefix="fuzz_reader-corpus-")
        sys.stderr.write("INFO: new inputs go to %s, not to the seeds\n" % scratch)
        argv.insert(dirs[0], scratch)
    # Inputs are choices, not a format: long ones from the start.
    for flag, default in (("-max_len=", "1024"), ("-len_control=", "0")):
        if not any(arg.startswith(flag) for arg in argv):
            argv.insert(1, flag + default)
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
