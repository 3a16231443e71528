"""Smoke test of the benchmark harness (``python -m fastsock bench``).

Not a benchmark: no timing is asserted.  It runs the runner's ``--smoke``
preset (0.3 s per case, 1 repeat, stdlib and the active fastsock backend, one
TCP echo and one UDP scenario) in a subprocess and checks that the report is
complete and that the load generator verified the echoed bytes without a
single error.
"""
import json
import os
import subprocess
import sys

import pytest

import fastsock

EXPECTED_RAW_KEYS = {
    "ops", "ops_per_s", "bytes", "verified_bytes", "lat_us", "errors",
    "error_detail", "connect_failures", "server_cpu_us_per_op", "client_cpu_pct",
    "duration_s",
}


@pytest.mark.timeout(60)
def test_bench_smoke(tmp_path):
    out = tmp_path / "smoke.json"
    env = dict(os.environ)
    # The children must import the same fastsock as this test process.
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastsock.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(
        [root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    # Compile the load generator into the test's own directory, not ~/.cache.
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    proc = subprocess.run(
        [sys.executable, "-m", "fastsock._bench.runner", "--smoke", "--json", str(out)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, timeout=50, cwd=str(tmp_path))
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, stderr

    data = json.loads(out.read_text())
    assert {"meta", "scenarios", "servers", "runs", "medians"} <= set(data)
    meta = data["meta"]
    assert meta["fastsock"]["backend"] == fastsock.BACKEND
    assert meta["repeats"] == 1 and meta["duration"] <= 0.5
    active = "fastsock-" + fastsock.BACKEND
    assert meta["impls"] == ["stdlib", active]
    assert [s["name"] for s in data["scenarios"]] == ["echo32", "udp"]

    runs = data["runs"]
    assert len(runs) == 4
    for run in runs:
        assert run["ok"], run.get("error")
        raw = run["raw"]
        assert EXPECTED_RAW_KEYS <= set(raw), sorted(EXPECTED_RAW_KEYS - set(raw))
        assert raw["ops"] > 0
        assert raw["verified_bytes"] >= raw["bytes"] > 0
        assert raw["errors"] == 0, raw["error_detail"]
        assert {"p50", "p99"} <= set(raw["lat_us"])
        assert raw["server_cpu_us_per_op"] is not None

    for scen in ("echo32", "udp"):
        med = data["medians"][scen]
        assert set(med) == {"stdlib", active}
        assert med["stdlib"]["vs_stdlib"] == 1.0
        assert med[active]["vs_stdlib"] > 0
        assert med[active]["errors"] == 0

    # the servers said which implementation they ran
    for scen in ("echo32", "udp"):
        info = data["servers"][scen]
        assert info[active]["backend"] == fastsock.BACKEND
        assert "backend" not in info["stdlib"]

    table = proc.stdout.decode()
    assert "### echo32" in table and "### udp" in table
    assert "| stdlib |" in table and "| %s |" % active in table
