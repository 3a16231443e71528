"""Sweeps: how the line echo scales with connections, line size or pipelining.

    python bench/sweep.py conns                 # 1 .. 512 connections
    python bench/sweep.py size                  # 16 B .. 16 KiB lines, 32 connections
    python bench/sweep.py depth                 # 1 .. 64 lines in flight, 32 connections
    python bench/sweep.py conns --values 1,64,512 --impls stdlib,fastsock-cython

Each point is a runner scenario (``echo-c<N>``, ``echo-s<N>``, ``echo-d<N>``)
run with the usual machinery -- every implementation side by side, interleaved
repeats, medians, server CPU per operation -- followed by a compact matrix of
throughput (and ratio to stdlib) per point.  Every listening socket uses
``request_queue_size = 128`` (asyncio: ``backlog=128``) so the sweep is about
serving, not about the listen backlog.  Other options (``--impls``,
``--repeats``, ``--duration``, ``--warmup``, ``--json``, ``--chart``, ...) are
passed to the runner; the default is 2 repeats of 1 s.
"""
import argparse
import json
import os
import sys
import tempfile

SWEEPS = {
    "conns": ("1,2,4,8,16,32,64,128,256,512", "connections"),
    "size": ("16,64,256,1024,4096,16384", "line bytes"),
    "depth": ("1,2,4,8,16,32,64", "lines in flight per connection"),
}


def scenarios(what, values):
    from fastsock._bench.runner import Scenario, add_scenario
    out = []
    for v in values:
        if what == "conns":
            s = Scenario("echo-c%d" % v, "echo", "echo",
                         "line echo, %d persistent connection(s)" % v, conns=v, backlog=128)
        elif what == "size":
            s = Scenario("echo-s%d" % v, "echo", "echo",
                         "line echo, 32 connections, %d-byte lines" % v,
                         conns=32, size=v, backlog=128)
        else:
            s = Scenario("echo-d%d" % v, "echo", "echo",
                         "line echo, 32 connections, %d line(s) in flight each" % v,
                         conns=32, depth=v, backlog=128)
        out.append(add_scenario(s))
    return out


def matrix(path, scens, label):
    with open(path) as f:
        data = json.load(f)
    med = data["medians"]
    impls = data["meta"]["impls"]
    metric = "mib_per_s" if label == "line bytes" else "ops_per_s"
    unit = "MiB/s" if metric == "mib_per_s" else "ops/s"
    lines = ["### sweep: %s (%s, median; ratio to stdlib; server CPU µs/op)" % (label, unit),
             "", "| %s | %s |" % (label, " | ".join(impls)),
             "|---:|" + "---:|" * len(impls)]
    for s in scens:
        row = med.get(s.name, {})
        cells = []
        for impl in impls:
            m = row.get(impl)
            if not m or m.get(metric) is None:
                cells.append("n/a")
                continue
            ratio = "" if m.get("vs_stdlib") is None else " (%.2f×)" % m["vs_stdlib"]
            cpu = m.get("server_cpu_us_per_op")
            cells.append("{:,.{}f}{} · {}".format(
                m[metric], 1 if metric == "mib_per_s" else 0, ratio,
                "n/a" if cpu is None else "%.1f" % cpu))
        value = {"connections": s.conns, "line bytes": s.size}.get(label, s.depth)
        lines.append("| %s | %s |" % (value, " | ".join(cells)))
    return "\n".join(lines)


def main(argv):
    p = argparse.ArgumentParser(prog="python bench/sweep.py", add_help=True,
                                description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=sorted(SWEEPS))
    p.add_argument("--values", help="comma-separated points (default: %s)" % "; ".join(
        "%s: %s" % (k, v[0]) for k, v in SWEEPS.items()))
    args, rest = p.parse_known_args(argv)
    default, label = SWEEPS[args.what]
    values = [int(v) for v in (args.values or default).split(",") if v.strip()]
    scens = scenarios(args.what, values)

    from fastsock._bench import runner
    rest = list(rest)
    for flag, val in (("--repeats", "2"), ("--duration", "1"), ("--warmup", "0.3")):
        if flag not in rest:
            rest += [flag, val]
    tmp = None
    if "--json" in rest:
        path = rest[rest.index("--json") + 1]
    else:
        fd, tmp = tempfile.mkstemp(prefix="fastsock-sweep-", suffix=".json")
        os.close(fd)
        path = tmp
        rest += ["--json", path]
    try:
        rc = runner.main(["--scenarios", ",".join(s.name for s in scens)] + rest)
        print(matrix(path, scens, label))
    finally:
        if tmp:
            os.unlink(tmp)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
