"""Find Python 3.10-3.13 interpreters and build a cached fastsock venv for each.

    python tests/multipy.py                 # list the interpreters found
    python tests/multipy.py --build [3.12]  # build/refresh the venvs (serially)

Interpreters come from pyenv (``$(pyenv root)/versions/*/bin/python``) and from
``python3.X`` on ``PATH``; only those that have their stdlib test suite
(``test.test_socketserver``) and ``venv``/``ensurepip`` count, and per minor
version the newest patch release wins.

``ensure_venv("3.12")`` returns the python of ``<repo>/.multipy/3.12/``, a
venv with fastsock installed by a plain, non-editable ``pip install`` (the
extension is compiled for that interpreter, pip's build isolation fetching
the build requirements of pyproject.toml).  What is installed is a snapshot
of the project's files taken while hashing them, so a concurrent edit or an
in-tree build by someone else cannot slip in, and no stale ``build/``
directory is reused.  The venv is rebuilt when the cache key changes: the
hash of every (non git-ignored) file under ``src/`` plus ``setup.py`` and
``pyproject.toml``, and the base interpreter.  The key file is written last,
after fastsock has been verified to import from the venv, so a half-built
venv is never taken for a good one.  Builds are serialized by a lock file
(one compiler at a time on a small machine, and across processes).
"""
import argparse
import contextlib
import fcntl
import functools
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

MINORS = ("3.10", "3.11", "3.12", "3.13")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY_FILE = "fastsock-cache-key"
# Files of the project that the build reads; the cache key covers these.
KEYED = ("src", "setup.py", "pyproject.toml")

BUILD_TIMEOUT = 1200      # one `pip install` (compiles the extension)
SMALL_TIMEOUT = 300       # creating a venv, probing an interpreter

_PROBE = r"""
import importlib.util, json, sys, sysconfig
def has(name):
    try:
        return importlib.util.find_spec(name) is not None
    except Exception:
        return False
print(json.dumps({
    "executable": sys.executable,
    "version": list(sys.version_info),
    "implementation": sys.implementation.name,
    "usable": all(has(m) for m in ("venv", "ensurepip", "test.support",
                                   "test.test_socketserver")),
    "free_threaded": bool(sysconfig.get_config_var("Py_GIL_DISABLED")),
}))
"""

_VERIFY = r"""
import json, fastsock, fastsock._backend as b
print(json.dumps({"backend": fastsock.BACKEND, "file": fastsock.__file__,
                  "reason": b.REASON}))
"""


class BuildError(RuntimeError):
    pass


def clean_env(**overrides):
    """os.environ without anything that would redirect imports or the build.

    ``FASTSOCK_*`` are dropped (``FASTSOCK_PURE`` at build time would skip
    the compile); keyword arguments are then set (a value of None removes).
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP",
                        "PYTHONNOUSERSITE", "PYTHONUSERBASE", "__PYVENV_LAUNCHER__")
           and not k.startswith("FASTSOCK_")}
    for k, v in overrides.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


# -- finding interpreters ---------------------------------------------------

def _pyenv_root():
    try:
        out = subprocess.run(["pyenv", "root"], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True,
                             timeout=30, check=True).stdout.strip()
        if out:
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    return root if os.path.isdir(root) else None


def _candidates():
    found = []
    root = _pyenv_root()
    shims = None
    if root:
        shims = os.path.realpath(os.path.join(root, "shims"))
        for path in sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python"))):
            name = os.path.basename(os.path.dirname(os.path.dirname(path)))
            version = re.match(r"(\d+)\.(\d+)", name)
            # skip other minors cheaply; probe odd names (virtualenvs etc.)
            if version and "%s.%s" % version.groups() not in MINORS:
                continue
            found.append(path)
    for minor in MINORS:
        for directory in os.environ.get("PATH", "").split(os.pathsep):
            if shims and os.path.realpath(directory or ".") == shims:
                continue        # they only lead back to pyenv's versions
            path = os.path.join(directory or ".", "python" + minor)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                found.append(path)
    return found


def probe(python):
    """Facts about the interpreter *python*, or None if it does not run."""
    try:
        proc = subprocess.run([python, "-I", "-c", _PROBE], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True,
                              timeout=SMALL_TIMEOUT, env=clean_env())
        if proc.returncode != 0:
            return None
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None
    v = info["version"]
    info["minor"] = "%d.%d" % (v[0], v[1])
    info["version_str"] = "%d.%d.%d%s" % (
        v[0], v[1], v[2], "" if v[3] == "final" else "%s%d" % (v[3][0], v[4]))
    # final releases sort after alpha/beta/candidate of the same micro
    level = {"alpha": 0, "beta": 1, "candidate": 2, "final": 3}.get(v[3], 0)
    info["sort_key"] = (v[0], v[1], v[2], level, v[4])
    return info


@functools.lru_cache(maxsize=None)
def find_interpreters():
    """{minor: probe info} of the newest usable CPython for each of MINORS."""
    best = {}
    seen = set()
    for path in _candidates():
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        info = probe(path)
        if (info is None or not info["usable"] or info["minor"] not in MINORS
                or info["implementation"] != "cpython" or info["free_threaded"]):
            continue
        seen.add(os.path.realpath(info["executable"]))  # pyenv shims
        info["path"] = info["executable"] or path
        old = best.get(info["minor"])
        if old is None or info["sort_key"] > old["sort_key"]:
            best[info["minor"]] = info
    return best


def find_interpreter(minor):
    """Path of the interpreter chosen for *minor* ("3.12"), or None."""
    info = find_interpreters().get(minor)
    return info["path"] if info else None


# -- the cache key and the source snapshot ------------------------------------

def _project_files(repo):
    """Relative paths of the files under KEYED, git-ignored ones excluded."""
    try:
        out = subprocess.run(
            ["git", "-C", repo, "ls-files", "-z", "--cached", "--others",
             "--exclude-standard", "--"] + list(KEYED),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=60,
            check=True).stdout
        files = [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]
        files = [p for p in files if os.path.isfile(os.path.join(repo, p))]
        if files:
            return sorted(set(files))
    except (OSError, subprocess.SubprocessError):
        pass
    # Not a git checkout: mirror .gitignore's build outputs by hand.
    skip_dirs = {"__pycache__", "build", "dist"}
    skip_ext = (".pyc", ".pyo", ".so", ".pyd", ".o", ".html", ".c")
    files = []
    for top in KEYED:
        full = os.path.join(repo, top)
        if os.path.isfile(full):
            files.append(top)
            continue
        for dirpath, dirnames, filenames in os.walk(full):
            dirnames[:] = [d for d in dirnames
                           if d not in skip_dirs and not d.endswith(".egg-info")]
            for name in filenames:
                if not name.endswith(skip_ext):
                    files.append(os.path.relpath(os.path.join(dirpath, name), repo))
    return sorted(files)


def _extra_build_files(repo):
    """Top-level files the build may read beside KEYED (metadata only)."""
    return [name for name in ("README.md", "README.rst", "README.txt", "LICENSE",
                              "LICENSE.txt", "MANIFEST.in", "setup.cfg")
            if os.path.isfile(os.path.join(repo, name))]


def source_contents(repo=REPO):
    """{relative path: bytes} of the keyed project files, read once."""
    contents = {}
    for rel in _project_files(repo):
        with open(os.path.join(repo, rel), "rb") as f:
            contents[rel] = f.read()
    for required in ("setup.py", "pyproject.toml"):
        if required not in contents:
            raise BuildError("%s not found in %s" % (required, repo))
    return contents


def source_hash(contents):
    h = hashlib.sha256()
    for rel in sorted(contents):
        data = contents[rel]
        h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        h.update(str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()


def cache_key(contents, info):
    return "sources-sha256: %s\npython: %s %s\n" % (
        source_hash(contents), info["path"], info["version_str"])


def _write_snapshot(repo, contents, dest):
    for rel, data in contents.items():
        target = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(data)
    for rel in _extra_build_files(repo):
        shutil.copyfile(os.path.join(repo, rel), os.path.join(dest, rel))


# -- building ---------------------------------------------------------------

def venv_dir(minor, repo=REPO):
    return os.path.join(repo, ".multipy", minor)


def venv_python(minor, repo=REPO):
    return os.path.join(venv_dir(minor, repo), "bin", "python")


@contextlib.contextmanager
def build_lock(repo=REPO):
    """Exclusive lock serializing every venv build (also across processes)."""
    os.makedirs(os.path.join(repo, ".multipy"), exist_ok=True)
    with open(os.path.join(repo, ".multipy", ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _run_logged(cmd, log, timeout, **kwargs):
    log.write("\n$ %s\n" % " ".join(cmd))
    log.flush()
    try:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=timeout,
                              env=clean_env(), **kwargs)
    except subprocess.TimeoutExpired:
        raise BuildError("timed out after %ss: %s" % (timeout, " ".join(cmd)))
    if proc.returncode != 0:
        raise BuildError("exit status %d: %s" % (proc.returncode, " ".join(cmd)))


def verify(minor, repo=REPO, expect_backend="cython"):
    """Import fastsock in the venv; return its facts or raise BuildError."""
    python = venv_python(minor, repo)
    try:
        proc = subprocess.run([python, "-I", "-c", _VERIFY], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=SMALL_TIMEOUT, env=clean_env(),
                              cwd=venv_dir(minor, repo))
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError("cannot run %s: %s" % (python, exc))
    if proc.returncode != 0:
        raise BuildError("fastsock does not import in %s:\n%s" % (python, proc.stdout))
    try:
        facts = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BuildError("unexpected output from %s:\n%s" % (python, proc.stdout))
    inside = os.path.realpath(venv_dir(minor, repo)) + os.sep
    if not os.path.realpath(facts["file"]).startswith(inside):
        raise BuildError("%s imports fastsock from %s, not from its venv"
                         % (python, facts["file"]))
    if expect_backend and facts["backend"] != expect_backend:
        raise BuildError("fastsock.BACKEND is %r in %s, expected %r (%s)"
                         % (facts["backend"], python, expect_backend, facts["reason"]))
    return facts


def _tail(path, lines=60):
    text = _read(path) or ""
    return "\n".join(text.splitlines()[-lines:])


def _venv_cfg(vdir):
    cfg = {}
    for line in (_read(os.path.join(vdir, "pyvenv.cfg")) or "").splitlines():
        name, sep, value = line.partition("=")
        if sep:
            cfg[name.strip()] = value.strip()
    return cfg


def _build(minor, info, contents, key, repo, log_path, expect_backend):
    vdir = venv_dir(minor, repo)
    key_path = os.path.join(vdir, KEY_FILE)
    if os.path.exists(key_path):
        os.unlink(key_path)        # from here on the venv counts as half-built
    for stale in glob.glob(os.path.join(repo, ".multipy", "src-*")):
        shutil.rmtree(stale, ignore_errors=True)   # snapshots of killed builds
    with open(log_path, "w") as log:
        log.write("building %s venv with %s (%s)\n%s"
                  % (minor, info["path"], info["version_str"], key))
        # Reuse a healthy venv of the same base interpreter; else start over.
        cfg = _venv_cfg(vdir)
        healthy = False
        same_base = (
            os.path.realpath(cfg.get("home", "/nonexistent"))
            == os.path.realpath(os.path.dirname(info["path"]))
            and cfg.get("version", cfg.get("version_info", "")).startswith(
                info["version_str"]))
        if same_base and os.path.exists(venv_python(minor, repo)):
            try:
                _run_logged([venv_python(minor, repo), "-m", "pip", "--version"],
                            log, SMALL_TIMEOUT)
                healthy = True
            except BuildError:
                pass
        if not healthy:
            shutil.rmtree(vdir, ignore_errors=True)
            _run_logged([info["path"], "-m", "venv", vdir], log, SMALL_TIMEOUT)
        snapshot = tempfile.mkdtemp(prefix="src-%s-" % minor,
                                    dir=os.path.join(repo, ".multipy"))
        try:
            _write_snapshot(repo, contents, snapshot)
            _run_logged([venv_python(minor, repo), "-m", "pip", "install",
                         "--disable-pip-version-check", "--no-input",
                         "--force-reinstall", "--no-deps", snapshot],
                        log, BUILD_TIMEOUT, cwd=vdir)
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)
        facts = verify(minor, repo, expect_backend)
        log.write("\nverified: %s\n" % json.dumps(facts))
    tmp = key_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(key)
    os.replace(tmp, key_path)      # last: the venv is complete


def ensure_venv(minor, repo=REPO, expect_backend="cython", log=None):
    """Python of an up-to-date fastsock venv for *minor*; build it if needed.

    Returns None when no interpreter for *minor* is found; raises BuildError
    when the build or the import check fails (the log's tail included).
    *expect_backend* is what ``fastsock.BACKEND`` must be in the venv (None:
    accept either).  *log* (a callable) hears about builds.
    """
    info = find_interpreters().get(minor)
    if info is None:
        return None
    vdir = venv_dir(minor, repo)
    log_path = os.path.join(repo, ".multipy", "%s-build.log" % minor)
    with build_lock(repo):
        contents = source_contents(repo)
        key = cache_key(contents, info)
        if _read(os.path.join(vdir, KEY_FILE)) == key:
            try:
                verify(minor, repo, expect_backend)
                return venv_python(minor, repo)
            except BuildError as exc:
                if log:
                    log("cached %s venv unusable (%s); rebuilding" % (minor, exc))
        if log:
            log("building the %s venv (%s)" % (minor, info["path"]))
        start = time.monotonic()
        try:
            _build(minor, info, contents, key, repo, log_path, expect_backend)
        except (BuildError, OSError) as exc:
            raise BuildError("building the fastsock venv for %s failed: %s\n"
                             "--- last lines of %s ---\n%s"
                             % (minor, exc, log_path, _tail(log_path))) from None
        if log:
            log("built the %s venv in %.0fs" % (minor, time.monotonic() - start))
        return venv_python(minor, repo)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true",
                        help="build or refresh the venvs (one at a time)")
    parser.add_argument("minors", nargs="*", default=list(MINORS),
                        help="minor versions (default: %s)" % " ".join(MINORS))
    args = parser.parse_args(argv)
    status = 0
    found = find_interpreters()
    for minor in args.minors:
        info = found.get(minor)
        print("%-5s %s" % (minor, "%s (%s)" % (info["path"], info["version_str"])
                           if info else "NOT FOUND"), flush=True)
        if args.build and info:
            start = time.monotonic()
            try:
                python = ensure_venv(minor, log=lambda m: print("      " + m, flush=True))
            except BuildError as exc:
                print(exc, flush=True)
                status = 1
            else:
                print("      %s ready (%.1fs)" % (python, time.monotonic() - start),
                      flush=True)
        elif info is None:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
