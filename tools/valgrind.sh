#!/usr/bin/env bash
# Valgrind (memcheck) over a small part of the test suite: the alternative to
# tools/asan.sh where ASan is not available, and a second opinion (memcheck
# also sees branches on uninitialised memory, which ASan does not).
#
#     tools/valgrind.sh                 # build, then run the subset below (~4-6 min)
#     tools/valgrind.sh --no-build      # reuse .asan/valgrind-venv
#     VALGRIND_FUZZ_RUNS=300 tools/valgrind.sh
#     PYTHON=/usr/bin/python3 tools/valgrind.sh
#
# The interpreter: memcheck is only as useful as the interpreter is clean
# under it.  Some CPython builds are not (pyenv's 3.11.7 here reports ~4
# errors for `python -c pass`: an uninitialised digit of a zero-sized int in
# _PyLong_FromByteArray that then spreads), so the first of $PYTHON,
# python3, /usr/bin/python3 that runs `import socket, ssl` clean under
# memcheck is used; if none is, $PYTHON (or python3) is used and only
# errors attributed to fastsock fail the run (see below).
#
# Builds fastsock._core with -O1 -g (no sanitizer) into .asan/valgrind-venv
# from a snapshot of the working tree (.asan/valgrind-tree; nothing is
# written into src/), then runs under
#     PYTHONMALLOC=malloc valgrind --track-origins=yes --leak-check=no
# (PYTHONMALLOC=malloc: every allocation is a block memcheck can see; leaks
# are not checked because CPython does not free everything at exit):
#   1. tests/test_coalescing.py and tests/test_streams.py on the compiled
#      backend, without their hypothesis tests (under memcheck they alone
#      would take many minutes; the fuzz step covers the same ground);
#   2. tests/test_greenlet.py on the compiled backend (the greenlet hub;
#      ASan cannot follow greenlet's stack switching, memcheck can);
#   3. the fuzz target for $VALGRIND_FUZZ_RUNS inputs (default 150).
# tools/valgrind.supp suppresses known false positives outside fastsock.
# tools/vg_report.py then reads the logs (one per process, forked children
# included, in .asan/valgrind-logs/): an error whose stack or origin is in
# fastsock's core fails the run; with a clean interpreter, any error does.
set -euo pipefail
source "$(dirname "$0")/_build_venv.sh"
cd "$ROOT"

if ! command -v valgrind >/dev/null; then
    echo "valgrind is not installed (apt-get install -y valgrind)" >&2
    exit 2
fi
FUZZ_RUNS="${VALGRIND_FUZZ_RUNS:-150}"
VENV="$OUT/valgrind-venv"
TREE="$OUT/valgrind-tree"
LOGS="$OUT/valgrind-logs"
STEP_TIMEOUT="${VALGRIND_STEP_TIMEOUT:-900}"
export PYTHONMALLOC=malloc
unset FASTSOCK_PURE PYTHONPATH LD_PRELOAD

memcheck_clean() {   # memcheck_clean PYTHON: no error for a small import
    valgrind -q --error-exitcode=99 "$1" -c 'import socket, ssl, hashlib' >/dev/null 2>&1
}

started=$SECONDS
STRICT=--strict
if [ "${1:-}" != "--no-build" ]; then
    chosen=""
    for cand in ${PYTHON:+"$PYTHON"} python3 /usr/bin/python3; do
        # The interpreter itself, not a wrapper script (pyenv's shims are).
        cand="$("$cand" -c 'import sys; print(sys.executable)' 2>/dev/null)" || continue
        if memcheck_clean "$cand"; then chosen="$cand"; break; fi
        log "$cand is not memcheck-clean (errors for 'import socket, ssl')"
    done
    if [ -z "$chosen" ]; then
        chosen="$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')"
        STRICT=""
        log "no memcheck-clean interpreter: using $chosen, failing only on fastsock's errors"
    fi
    # A different interpreter needs a new venv.
    if [ -x "$VENV/bin/python" ] && [ "$(readlink -f "$chosen")" != \
            "$("$VENV/bin/python" -c 'import sys; print(sys._base_executable)' | xargs readlink -f)" ]; then
        rm -rf "$VENV"
    fi
    log "interpreter: $chosen ($("$chosen" -V 2>&1))"
    log "snapshot of the working tree -> $TREE"
    snapshot_tree "$TREE"
    PY="$chosen"    # the interpreter build_venv creates the venv with
    CC=gcc CFLAGS="-O1 -g -fno-omit-frame-pointer" LDFLAGS="" build_venv "$VENV" "$TREE"
elif ! memcheck_clean "$VENV/bin/python"; then
    STRICT=""
fi
VPY="$VENV/bin/python"
log "compiled core: $(core_path "$VENV") ($(( SECONDS - started )) s to build)"
FASTSOCK_EXPECT_BACKEND=cython "$VPY" -c 'import fastsock; assert fastsock.BACKEND == "cython", fastsock.BACKEND'
export FASTSOCK_EXPECT_BACKEND=cython

rm -rf "$LOGS"
mkdir -p "$LOGS"
VALGRIND=(valgrind --tool=memcheck --track-origins=yes --leak-check=no
          --suppressions="$ROOT/tools/valgrind.supp"
          --trace-children=yes --child-silent-after-fork=no --num-callers=40
          --log-file="$LOGS/vg.%p")

report() {
    if ! "$VPY" "$ROOT/tools/vg_report.py" $STRICT "$LOGS"/vg.*; then
        echo "FAIL: memcheck errors (above; logs in $LOGS)" >&2
        exit 1
    fi
}

run_step() {
    local name="$1" t0=$SECONDS rc=0
    shift
    log "$name"
    (cd "$TREE" && timeout "$STEP_TIMEOUT" "${VALGRIND[@]}" "$@") || rc=$?
    report
    if [ "$rc" -ne 0 ]; then
        echo "FAIL: $name exited with status $rc" >&2
        exit 1
    fi
    log "$name: ok ($(( SECONDS - t0 )) s)"
}

# The canary: memcheck must flag a write past an 8-byte malloc.
log "canary: a deliberate heap overflow must be reported"
canary_rc=0
valgrind -q --error-exitcode=99 --log-file="$LOGS/canary" "$VPY" -c 'import ctypes
libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p
p = libc.malloc(8); ctypes.memset(p, 0, 16)' || canary_rc=$?
if [ "$canary_rc" -ne 99 ] || ! grep -qs "Invalid write" "$LOGS/canary"; then
    echo "FAIL: the canary overflow was not reported (exit $canary_rc)" >&2
    exit 1
fi
rm -f "$LOGS/canary"

run_step "pytest (compiled backend, no hypothesis tests) under memcheck" \
    "$VPY" -m pytest -p no:cacheprovider -x -q -m c_extension \
    -k "not matches_makefile and not pipelined_echo_is_exact" \
    tests/test_coalescing.py tests/test_streams.py
# The greenlet hub (compiled epoll loop, the streams' wait hooks).  Not in
# tools/asan.sh: greenlet copies C stacks to and from the heap, which ASan
# cannot follow (it reports greenlet's own memcpy, and with that suppressed
# its stack shadow goes wrong); memcheck copes.  About a minute.
run_step "greenlet servers (compiled backend) under memcheck" \
    "$VPY" -m pytest -p no:cacheprovider -x -q -m c_extension tests/test_greenlet.py
if [ "$FUZZ_RUNS" != 0 ]; then
    run_step "fuzz_reader under memcheck ($FUZZ_RUNS inputs)" \
        env FASTSOCK_FUZZ_WATCHDOG=120 "$VPY" tests/fuzz/fuzz_reader.py \
        -atheris_runs="$FUZZ_RUNS" -artifact_prefix="$OUT/"
fi
log "valgrind: no fastsock errors${STRICT:+ (and none at all)}, all steps passed ($(( SECONDS - started )) s)"
