#!/usr/bin/env bash
# AddressSanitizer over a bounded part of the test suite (~3-5 min).
#
#     tools/asan.sh                    # build, then run everything below
#     ASAN_FUZZ_TIME=300 tools/asan.sh # a longer fuzz run at the end (seconds; 0: none)
#     tools/asan.sh --no-build         # reuse the last build in .asan/venv
#
# Builds fastsock._core with gcc -fsanitize=address into a throwaway venv
# (.asan/venv, from a snapshot of the working tree in .asan/tree: nothing is
# written into src/), then runs, with libasan preloaded into the interpreter:
#   1. tests/test_streams.py, test_coalescing.py, test_server.py on the
#      compiled backend (-m c_extension; the pure twin has no C to check);
#   2. CPython's own test_socketserver (tests/stdlib_suite.py, compiled core);
#   3. the differential fuzz target tests/fuzz/fuzz_reader.py: its seed
#      corpus (tests/fuzz/seeds), then random inputs, for $ASAN_FUZZ_TIME
#      seconds in all (default 45).
# Fails on a failing test, on a non-zero exit, and on any ASan report: the
# reports go to .asan/logs/ (from forked and child processes too) and are
# printed.  PYTHONMALLOC=malloc sends every Python allocation through malloc,
# so ASan sees the exact bounds of each buffer and bytes object (pymalloc
# would hide overflows inside its pools).  detect_leaks=0: CPython does not
# free everything at exit, so LeakSanitizer would report thousands of
# "leaks" that are not fastsock's.
set -euo pipefail
source "$(dirname "$0")/_build_venv.sh"
cd "$ROOT"

FUZZ_TIME="${ASAN_FUZZ_TIME:-45}"
VENV="$OUT/venv"
TREE="$OUT/tree"
LOGS="$OUT/logs"
STEP_TIMEOUT="${ASAN_STEP_TIMEOUT:-600}"

LIBASAN="$(gcc -print-file-name=libasan.so)"
if [ ! -e "$LIBASAN" ]; then
    echo "libasan.so not found (gcc -print-file-name=libasan.so): install gcc's libasan" >&2
    exit 2
fi

started=$SECONDS
if [ "${1:-}" != "--no-build" ]; then
    log "snapshot of the working tree -> $TREE"
    snapshot_tree "$TREE"
    CC=gcc CFLAGS="-O1 -g -fsanitize=address -fno-omit-frame-pointer" \
        LDFLAGS="-fsanitize=address" build_venv "$VENV" "$TREE"
fi
SO="$(core_path "$VENV")"
if ! readelf -d "$SO" | grep -c 'NEEDED.*libasan' >/dev/null; then
    echo "$SO is not linked against libasan" >&2
    exit 1
fi
log "compiled core: $SO (ASan, $(( SECONDS - started )) s to build)"

rm -rf "$LOGS"
mkdir -p "$LOGS"
export LD_PRELOAD="$LIBASAN"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=86:print_summary=1:log_path=$LOGS/asan:${ASAN_EXTRA_OPTIONS:-}"
export PYTHONMALLOC=malloc
export FASTSOCK_EXPECT_BACKEND=cython
unset FASTSOCK_PURE PYTHONPATH
VPY="$VENV/bin/python"

check_logs() {
    if compgen -G "$LOGS/asan.*" >/dev/null; then
        for f in "$LOGS"/asan.*; do
            echo "---- $f" >&2
            cat "$f" >&2
        done
        echo "FAIL: AddressSanitizer reported errors (above; logs in $LOGS)" >&2
        exit 1
    fi
}

run_step() {
    local name="$1" t0=$SECONDS rc=0
    shift
    log "$name"
    (cd "$TREE" && timeout "$STEP_TIMEOUT" "$@") || rc=$?
    if [ -e "$OUT/crashes/fuzz-current-input" ]; then
        # The fuzz target was killed (by ASan) while running this input.
        echo "the input being fuzzed: $OUT/crashes/fuzz-current-input" >&2
        "$VPY" -c 'import sys; print(repr(open(sys.argv[1], "rb").read()))' \
            "$OUT/crashes/fuzz-current-input" >&2
    fi
    check_logs
    if [ "$rc" -ne 0 ]; then
        echo "FAIL: $name exited with status $rc" >&2
        exit 1
    fi
    log "$name: ok ($(( SECONDS - t0 )) s)"
}

# The canary: a heap overflow (memset past an 8-byte malloc, through ctypes)
# must be reported, in $LOGS, with ASan's exit status; proves the setup
# catches what it is meant to.
log "canary: a deliberate heap-buffer-overflow must be reported"
canary_rc=0
"$VPY" -c 'import ctypes; libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p
p = libc.malloc(8); ctypes.memset(p, 0, 16)' 2>/dev/null || canary_rc=$?
if [ "$canary_rc" -ne 86 ] || ! grep -qs "heap-buffer-overflow" "$LOGS"/asan.*; then
    echo "FAIL: the canary overflow was not reported (exit $canary_rc): ASan is not working" >&2
    exit 1
fi
rm -f "$LOGS"/asan.*
if ! nm -D "$SO" | grep -c '__asan_report_store' >/dev/null; then
    echo "FAIL: $SO has no ASan instrumentation" >&2
    exit 1
fi

"$VPY" -c 'import fastsock, fastsock._core as c; assert fastsock.BACKEND == "cython", fastsock.BACKEND; print("   fastsock", fastsock.__version__, "from", c.__file__)'

run_step "pytest (compiled backend) under ASan" \
    "$VPY" -m pytest -p no:cacheprovider -x -q -m c_extension \
    tests/test_streams.py tests/test_coalescing.py tests/test_server.py
run_step "CPython test_socketserver under ASan" "$VPY" tests/stdlib_suite.py -q
if [ "$FUZZ_TIME" != 0 ]; then
    mkdir -p "$OUT/crashes"
    rm -f "$OUT/crashes/fuzz-current-input"
    run_step "fuzz_reader under ASan (${FUZZ_TIME} s)" \
        "$VPY" tests/fuzz/fuzz_reader.py -atheris_runs=100000000 \
        -max_total_time="$FUZZ_TIME" -artifact_prefix="$OUT/crashes/" tests/fuzz/seeds
fi
log "AddressSanitizer: no reports, all steps passed ($(( SECONDS - started )) s)"
