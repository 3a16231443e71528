"""Heap sampler for the soak's server processes (docs/hardening.md, finding 5).

    HEAPLOG=/tmp/heap.jsonl PYTHONPATH=src:tools/heapmon \\
        python bench/soak.py --kinds pool --duration 240 --seed 2

Put this directory on PYTHONPATH: Python imports this sitecustomize in every
process, and in a soak server (``--serve`` among its arguments) it starts a
daemon thread that appends one JSON line every HEAPDT seconds (default 5) to
HEAPLOG: RSS, glibc's mallinfo2() (arena: heap taken from the OS; inuse;
free inside the arenas; mmap; all KiB), the Rss of /proc/self/smaps by kind
(heap, large and small anonymous maps, files, stack), live threads and
sys.getallocatedblocks().  HEAPTM=1 adds tracemalloc's traced total (slow).
WMR=<n> sets ThreadPoolMixIn.worker_max_requests in the server (0: never
retire).  Without HEAPLOG, or in other processes, it does nothing.
"""
import os
import sys

if os.environ.get("HEAPLOG") and "--serve" in sys.argv:
    import ctypes
    import json
    import threading
    import time

    class _MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks "
                    "keepcost".split()]

    _libc = ctypes.CDLL(None)
    _libc.mallinfo2.restype = _MallInfo2
    if os.environ.get("HEAPTM") == "1":
        import tracemalloc
        tracemalloc.start(1)

    def _smaps():
        out = dict.fromkeys(("heap", "anon_big", "anon_small", "file", "stack"), 0)
        kind = None
        with open("/proc/self/smaps") as f:
            for line in f:
                parts = line.split()
                if parts[0] == "Rss:":
                    out[kind] += int(parts[1])
                elif "-" in parts[0] and not parts[0].endswith(":"):
                    lo, hi = (int(x, 16) for x in parts[0].split("-"))
                    name = parts[5] if len(parts) > 5 else ""
                    kind = ("heap" if name == "[heap]" else "stack" if name.startswith("[stack")
                            else "file" if name else "anon_big" if hi - lo >= 1 << 20
                            else "anon_small")
        return out

    def _sample(path, every):
        t0 = time.monotonic()
        while True:
            m = _libc.mallinfo2()
            with open("/proc/self/status") as f:
                rss = int(next(l for l in f if l.startswith("VmRSS")).split()[1])
            rec = {"t": round(time.monotonic() - t0, 1), "rss": rss, "arena": m.arena >> 10,
                   "inuse": m.uordblks >> 10, "free": m.fordblks >> 10, "mmap": m.hblkhd >> 10,
                   "threads": threading.active_count(), "pyblocks": sys.getallocatedblocks()}
            rec.update(_smaps())
            if os.environ.get("HEAPTM") == "1":
                rec["tm"] = tracemalloc.get_traced_memory()[0] >> 10
            with open(path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            time.sleep(every)

    threading.Thread(target=_sample, name="heapmon", daemon=True,
                     args=(os.environ["HEAPLOG"], float(os.environ.get("HEAPDT", "5")))).start()
    if os.environ.get("WMR") is not None:
        import fastsock
        fastsock.ThreadPoolMixIn.worker_max_requests = int(os.environ["WMR"])
