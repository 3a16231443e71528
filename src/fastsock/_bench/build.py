"""Compile ``loadgen.c`` on first use into a per-user cache directory.

The binary lives in ``$XDG_CACHE_HOME/fastsock/`` (default
``~/.cache/fastsock/``), named after a hash of the source, the compiler and
the machine, so an edited ``loadgen.c`` is rebuilt and an unchanged one is
not.  It is never written inside the source tree.  When no C compiler works,
:func:`loadgen_path` returns ``None`` and the runner falls back to the
pure-Python client (:mod:`fastsock._bench.pyclient`), whose numbers are
client-bound.
"""
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loadgen.c")
CFLAGS = ["-O2", "-std=gnu11", "-Wall"]


def cache_dir():
    """The directory for the compiled load generator (created if needed)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    candidates = [os.path.join(base, "fastsock"),
                  os.path.join(tempfile.gettempdir(), "fastsock-cache-%d" % os.getuid())]
    for path in candidates:
        try:
            os.makedirs(path, mode=0o700, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK | os.X_OK):
            return path
    raise OSError("no writable cache directory among %r" % (candidates,))


def find_compiler():
    """The C compiler to use: ``$CC``, else ``cc``, ``gcc`` or ``clang``."""
    names = [os.environ["CC"]] if os.environ.get("CC") else []
    names += ["cc", "gcc", "clang"]
    for name in names:
        path = shutil.which(name.split()[0])
        if path:
            return path
    return None


def _key(compiler):
    h = hashlib.sha256()
    with open(SOURCE, "rb") as f:
        h.update(f.read())
    h.update(("\0%s\0%s\0%s" % (compiler, " ".join(CFLAGS), platform.machine())).encode())
    return h.hexdigest()[:16]


_cached = {}


def loadgen_path(log=None):
    """Path of the compiled load generator, building it if needed; ``None``
    when it cannot be built (no compiler, compile error, unsupported OS).
    *log* is a callable for one-line progress messages."""
    if "path" in _cached:
        return _cached["path"]
    log = log or (lambda msg: None)
    path = None
    reason = None
    if not sys.platform.startswith("linux"):
        reason = "the C load generator needs Linux (epoll)"
    else:
        compiler = find_compiler()
        if compiler is None:
            reason = "no C compiler found (cc/gcc/clang, or $CC)"
        else:
            try:
                path = _build(compiler, log)
            except (OSError, subprocess.SubprocessError) as exc:
                reason = "compiling loadgen.c failed: %s" % (exc,)
    _cached["path"] = path
    _cached["reason"] = reason
    return path


def failure_reason():
    return _cached.get("reason")


def _build(compiler, log):
    out = os.path.join(cache_dir(), "loadgen-%s" % _key(compiler))
    if os.access(out, os.X_OK):
        return out
    log("compiling the load generator: %s %s %s" % (
        os.path.basename(compiler), " ".join(CFLAGS), SOURCE))
    fd, tmp = tempfile.mkstemp(prefix=".loadgen-", dir=os.path.dirname(out))
    os.close(fd)
    try:
        proc = subprocess.run([compiler] + CFLAGS + ["-o", tmp, SOURCE],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=120)
        if proc.returncode != 0:
            raise OSError("%s exited with %d:\n%s" % (
                compiler, proc.returncode, proc.stdout.decode(errors="replace")))
        os.chmod(tmp, 0o755)
        os.replace(tmp, out)     # atomic: concurrent builders cannot see half a binary
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


if __name__ == "__main__":
    p = loadgen_path(log=lambda m: print(m, file=sys.stderr))
    print(p or "unavailable: %s" % failure_reason())
