"""The differential fuzz target, tests/fuzz/fuzz_reader.py, runs clean.

Part of the default test run (about 30 s in all; run alone with
``python -m pytest tests/test_fuzz_smoke.py``).  A bounded run in a
subprocess, once per backend: with atheris when it is installed
(coverage-guided; ``pip install '.[fuzz]'``), else with the target's own
hypothesis engine, which takes the same inputs and options.  Never skipped.
A failure shows the target's output, including the failing input, which is
saved in the test's tmp_path as crash-<sha1> (replay:
``python tests/fuzz/fuzz_reader.py FILE``).  The committed seeds
(tests/fuzz/seeds) are read, never written: libFuzzer adds new inputs to the
first corpus directory only, a fresh one in tmp_path.
"""
import os
import subprocess
import sys

import pytest

import fastsock

FUZZ_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz")
TARGET = os.path.join(FUZZ_DIR, "fuzz_reader.py")
SEEDS = os.path.join(FUZZ_DIR, "seeds")
# Seconds of fuzzing per backend: well inside the timeout, even on a slow machine.
BUDGET = {"cython": 15, "python": 8}


def run_target(tmp_path, backend, *args, engine=None, timeout=100):
    env = dict(os.environ)
    # The fastsock this session imports, whether installed or from src/.
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastsock.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["FASTSOCK_FUZZ_CORE"] = backend
    env.pop("FASTSOCK_FUZZ_ENGINE", None)
    if engine:
        env["FASTSOCK_FUZZ_ENGINE"] = engine
    proc = subprocess.run(
        [sys.executable, TARGET, "-artifact_prefix=%s%s" % (tmp_path, os.sep)] + list(args),
        cwd=str(tmp_path), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        timeout=timeout)
    output = proc.stdout.decode("utf-8", "replace")
    crashes = sorted(p for p in os.listdir(str(tmp_path)) if p.startswith(("crash-", "timeout-")))
    for name in crashes:
        with open(os.path.join(str(tmp_path), name), "rb") as f:
            output += "\n%s: %r" % (name, f.read())
    return proc.returncode, output


@pytest.mark.timeout(120)
def test_fuzz_target_runs_clean(backend_name, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    # libFuzzer writes new inputs into the first directory only.
    assert os.path.isfile(TARGET) and len(os.listdir(SEEDS)) > 10, (TARGET, SEEDS)
    dirs = [str(corpus), SEEDS]
    rc, output = run_target(tmp_path, backend_name, "-atheris_runs=200000",
                            "-max_total_time=%d" % BUDGET[backend_name], *dirs)
    assert rc == 0, output[-6000:]
    assert "core %s" % backend_name in output, output[-3000:]
    assert "Done " in output, output[-3000:]


@pytest.mark.timeout(120)
def test_fuzz_fallback_engine_and_replay(tmp_path):
    """The hypothesis engine (what runs where atheris is missing), and
    replaying input files, which is how a crash is reproduced."""
    inputs = [bytes([mode]) + bytes(range(i, i + 200)) for i, mode in enumerate(range(8))]
    paths = []
    for i, data in enumerate(inputs):
        path = tmp_path / ("input-%d" % i)
        path.write_bytes(data)
        paths.append(str(path))
    rc, output = run_target(tmp_path, "python", *paths, engine="hypothesis")
    assert rc == 0, output[-6000:]
    assert "Executed %d inputs" % len(paths) in output, output[-3000:]
    rc, output = run_target(tmp_path, "python", "-atheris_runs=60", "-max_total_time=8",
                            "-seed=1", engine="hypothesis")
    assert rc == 0, output[-6000:]
    assert "engine hypothesis fallback" in output, output[-3000:]
