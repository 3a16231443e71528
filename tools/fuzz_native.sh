#!/usr/bin/env bash
# The fuzz target with coverage of the compiled core itself, under ASan.
#
#     tools/fuzz_native.sh                          # 120 s
#     tools/fuzz_native.sh -max_total_time=3600     # any fuzz_reader.py / libFuzzer flags
#     tools/fuzz_native.sh --no-build -runs=0 .asan/corpus   # replay the corpus
#     tools/fuzz_native.sh --no-build -merge=1 tests/fuzz/seeds .asan/corpus   # re-minimize the seeds
#
# tests/fuzz/fuzz_reader.py alone is guided by the Python code it runs; the
# branches taken inside fastsock._core are invisible to it.  This script
# builds the core with clang -fsanitize=fuzzer-no-link,address (SanitizerCoverage
# edge counters, comparison tracing, and ASan) into .asan/fuzz-venv (from a
# snapshot of the working tree; nothing is written into src/), makes
# .asan/asan_with_fuzzer.so (clang's ASan runtime with its libFuzzer linked
# in, as atheris documents for native extensions: preloaded, so the
# extension's coverage callbacks reach libFuzzer, not ASan's stubs), and runs
# the target with it.  The corpus grows in .asan/corpus (seeded from
# tests/fuzz/seeds); crashes are written to .asan/crashes/.
#
# Needs clang (apt-get install -y clang-14; CLANG=clang-NN for another) with
# its compiler-rt (libclang-rt-NN-dev), and atheris (pip; a wheel exists for
# CPython 3.11-3.13 on x86-64 Linux).
set -euo pipefail
source "$(dirname "$0")/_build_venv.sh"
cd "$ROOT"

CLANG="${CLANG:-$(command -v clang || command -v clang-14 || true)}"
if [ -z "$CLANG" ]; then
    echo "clang not found: apt-get install -y clang-14 (or set CLANG)" >&2
    exit 2
fi
CLANGXX="${CLANGXX:-${CLANG/clang/clang++}}"
ASAN_A="$("$CLANG" -print-file-name=libclang_rt.asan-x86_64.a)"
FUZZER_A="$("$CLANG" -print-file-name=libclang_rt.fuzzer_no_main-x86_64.a)"
for lib in "$ASAN_A" "$FUZZER_A"; do
    if [ ! -e "$lib" ]; then
        echo "$lib not found: install clang's compiler-rt (libclang-rt-NN-dev)" >&2
        exit 2
    fi
done
VENV="$OUT/fuzz-venv"
TREE="$OUT/fuzz-tree"
PRELOAD="$OUT/asan_with_fuzzer.so"
mkdir -p "$OUT/corpus" "$OUT/crashes"

if [ "${1:-}" = "--no-build" ]; then
    shift
else
    log "snapshot of the working tree -> $TREE"
    snapshot_tree "$TREE"
    flags="-fsanitize=fuzzer-no-link,address -fno-omit-frame-pointer -g -O1"
    CC="$CLANG" LDSHARED="$CLANG -shared" CFLAGS="$flags" LDFLAGS="$flags" \
        build_venv "$VENV" "$TREE"
    "$VENV/bin/python" -m pip install -q atheris
    # ASan's runtime without its preinit object (not allowed in a shared
    # library) and libFuzzer, in one preloadable library.
    tmp="$(mktemp -d)"
    cp "$ASAN_A" "$tmp/asan.a"
    ar d "$tmp/asan.a" asan_preinit.cpp.o 2>/dev/null || ar d "$tmp/asan.a" asan_preinit.cc.o
    "$CLANGXX" -shared -o "$PRELOAD" -Wl,--whole-archive "$FUZZER_A" "$tmp/asan.a" \
        -Wl,--no-whole-archive -lpthread -ldl
    rm -rf "$tmp"
fi
SO="$(core_path "$VENV")"
if ! nm "$SO" | grep -c '__sancov_\|__sanitizer_cov' >/dev/null; then
    echo "FAIL: $SO has no SanitizerCoverage instrumentation" >&2
    exit 1
fi
log "compiled core with coverage + ASan: $SO"

export LD_PRELOAD="$PRELOAD"
# symbolize=0: clang's runtime would start llvm-symbolizer processes that
# outlive the fuzzer (and, preloaded like this, print no names anyway); a
# report's frames are module+offset: llvm-symbolizer-14 --obj=MODULE OFFSET.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:allocator_may_return_null=1:symbolize=0:${ASAN_EXTRA_OPTIONS:-}"
export PYTHONMALLOC=malloc
# The canary: the preloaded runtime must report a heap overflow.
canary="$("$VENV/bin/python" -c 'import ctypes; libc = ctypes.CDLL(None); libc.malloc.restype = ctypes.c_void_p
p = libc.malloc(8); ctypes.memset(p, 0, 16)' 2>&1 || true)"
if [[ "$canary" == *heap-buffer-overflow* ]]; then
    log "canary: ASan reports a deliberate heap overflow"
else
    echo "FAIL: ASan (from $PRELOAD) did not report the canary overflow" >&2
    exit 1
fi
export FASTSOCK_FUZZ_CORE=cython
# libFuzzer's -merge=1 runs the target again by its path (its #! line):
# python3 must be this venv's.
export PATH="$VENV/bin:$PATH"
unset FASTSOCK_PURE PYTHONPATH
args=("$@")
[ "${#args[@]}" -gt 0 ] || args=(-max_total_time=120)
dirs=()
case " ${args[*]} " in
    *" -runs=0 "*|*" -merge=1 "*) ;;     # replay or merge: only what was asked for
    *) dirs=("$OUT/corpus")
       [ -d "$TREE/tests/fuzz/seeds" ] && dirs+=("$TREE/tests/fuzz/seeds") ;;
esac
exec "$VENV/bin/python" "$TREE/tests/fuzz/fuzz_reader.py" -artifact_prefix="$OUT/crashes/" \
    "${args[@]}" "${dirs[@]}"
