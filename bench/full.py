"""The full benchmark, with results kept under ``bench/results/``.

    python bench/full.py                    # --full, JSON to bench/results/
    python bench/full.py --repeats 5 --chart docs/bench.png

Everything after the script name is passed to ``python -m fastsock bench``
(``fastsock._bench.runner``) after ``--full``; unless ``--json`` is given the
raw and median results go to ``bench/results/<UTC time>-<backend>.json``
(git-ignored).  Takes about ten minutes on two cores.
"""
import datetime
import os
import sys


def main(argv):
    from fastsock._bench import runner
    import fastsock
    args = list(argv)
    if not any(a in ("--quick", "--full", "--smoke") for a in args):
        args.insert(0, "--full")
    if not any(a == "--json" or a.startswith("--json=") for a in args):
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        results = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
        args += ["--json", os.path.join(results, "%s-%s.json" % (stamp, fastsock.BACKEND))]
    return runner.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
