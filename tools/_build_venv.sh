# Sourced by tools/asan.sh, tools/valgrind.sh and tools/fuzz_native.sh (not run by itself).
#
# snapshot_tree DIR
#     Copies the working tree's sources and tests (uncommitted edits included,
#     generated files excluded) to DIR, so that builds and test runs never
#     write into src/ and see one consistent state of the files.
# build_venv VENV TREE
#     Creates VENV (reused if it exists) and installs TREE into it, with its
#     test dependencies, compiled with the caller's CC/CFLAGS/LDFLAGS.  Fails
#     unless the compiled core was built and is what VENV imports.
#
# Everything lives under .asan/ (git-ignored).  Needs: python3 (or $PYTHON),
# a C compiler, and PyPI through pip for setuptools, Cython and the test
# dependencies (cached by pip after the first run).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/.asan"
PY="${PYTHON:-python3}"

log() { printf '== %s\n' "$*" >&2; }

snapshot_tree() {
    local dest="$1"
    rm -rf "$dest"
    mkdir -p "$dest"
    (cd "$ROOT" && tar -cf - \
        --exclude='__pycache__' --exclude='*.pyc' --exclude='*.so' --exclude='*.egg-info' \
        --exclude='src/fastsock/_core.c' --exclude='src/fastsock/*.html' \
        pyproject.toml setup.py README.md LICENSE MANIFEST.in src tests) | tar -C "$dest" -xf -
}

build_venv() {
    local venv="$1" tree="$2" vpy
    if [ ! -x "$venv/bin/python" ]; then
        log "creating $venv"
        "$PY" -m venv "$venv"
    fi
    vpy="$venv/bin/python"
    export PIP_DISABLE_PIP_VERSION_CHECK=1
    "$vpy" -m pip install -q 'setuptools>=77' 'Cython>=3.1,<4' wheel
    "$vpy" -m pip uninstall -q -y fastsock >/dev/null 2>&1 || true
    log "building fastsock with CC=${CC:-cc} CFLAGS=${CFLAGS:-} LDFLAGS=${LDFLAGS:-}"
    # --no-build-isolation: the build uses the CC/CFLAGS above and the
    # setuptools/Cython just installed; -v shows setup.py's banner.
    "$vpy" -m pip install --no-cache-dir --no-build-isolation -v "$tree[test]" \
        >"$venv.build.log" 2>&1 || { tail -40 "$venv.build.log"; return 1; }
    if ! grep -q "Accelerated build: fastsock._core compiled" "$venv.build.log"; then
        grep -n -A3 "WARNING\|Pure Python build\|error:" "$venv.build.log" | tail -40
        log "the compiled core was not built (see $venv.build.log)"
        return 1
    fi
}

# The path of fastsock._core in VENV (found without importing fastsock,
# whose import loads it).
core_path() {
    "$1/bin/python" - <<'PYEOF'
import glob, importlib.machinery, os, sysconfig
pkg = os.path.join(sysconfig.get_paths()["purelib"], "fastsock")
found = [p for s in importlib.machinery.EXTENSION_SUFFIXES
         for p in glob.glob(os.path.join(pkg, "_core" + s))]
print(found[0] if found else os.path.join(pkg, "_core (missing)"))
PYEOF
}
