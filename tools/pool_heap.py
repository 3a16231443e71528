"""Heap growth of a fastsock server under one kind of client (docs/hardening.md, finding 5).

    MODE=long PYTHONPATH=src python tools/pool_heap.py cython 20            # pool, 60-140 KB lines
    MODE=long PYTHONPATH=src python tools/pool_heap.py cython 20 threading  # ThreadingTCPServer
    MODE=long MALLOC_MMAP_THRESHOLD_=32768 PYTHONPATH=src python tools/pool_heap.py cython 20

argv: backend (cython|python), seconds, optional variant: threading (instead
of ThreadPoolTCPServer), nolimit (readline() without a limit), unbuffered
(rbufsize 0), nocoalesce (a wfile not linked to rfile), noretire (pool
workers never retire: worker_max_requests = None).  MODE (env): good
(lines of 1-3000 bytes), mixed (the soak's good-client sizes, up to 30000),
halfclose, long (one line of 60-140 KB, then EOF).  The server runs in this
process and a client process with 8 threads drives it; every sixth of the run
it prints RSS and glibc's mallinfo2() (arena: bytes taken from the OS;
in-use; free inside the arena; mmapped), and at the end what malloc_trim(0)
gives back.  STATS=1 (env) also prints glibc's malloc_stats() (per arena)
and malloc_info() (each arena's free blocks by size) before the trim: that
showed the 64 KiB holes of finding 5.  Loopback only; the client process
stops by itself after *seconds*.
"""
import ctypes, os, subprocess, sys, threading, time
backend, seconds = sys.argv[1], float(sys.argv[2])
variant = sys.argv[3] if len(sys.argv) > 3 else ""
os.environ["FASTSOCK_PURE"] = "1" if backend == "python" else "0"
import fastsock
assert fastsock.BACKEND == backend

class M(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.fdopen.restype = ctypes.c_void_p
libc.mallinfo2.restype = M

class Echo(fastsock.StreamRequestHandler):
    timeout = 10
    if variant == "nocoalesce":
        def setup(self):
            super().setup()
            self.wfile = self._core.SocketWriter(self.connection)
    if variant == "unbuffered":
        rbufsize = 0
    def handle(self):
        while True:
            line = self.rfile.readline() if variant == "nolimit" else self.rfile.readline(65536)
            if not line:
                return
            self.wfile.write(line)

base = fastsock.ThreadingTCPServer if variant == "threading" else fastsock.ThreadPoolTCPServer
class S(base):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128
    if variant == "noretire":
        worker_max_requests = None
server = S(("127.0.0.1", 0), Echo)
threading.Thread(target=server.serve_forever, args=(0.5,), daemon=True).start()
CLIENT = r'''
import random, socket, sys, threading, time
port, seconds, mode = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
end = time.monotonic() + seconds
def run(seed):
    r = random.Random(seed)
    while time.monotonic() < end:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            if mode == "halfclose":
                s.sendall(b"y" * r.randint(1, 3000)); s.shutdown(socket.SHUT_WR)
                while s.recv(65536): pass
                continue
            if mode == "long":
                s.sendall(b"z" * r.randint(60000, 140000) + b"\n"); s.shutdown(socket.SHUT_WR)
                while s.recv(65536): pass
                continue
            if mode == "mixed":
                lines = [b"x" * r.choice((1, 10, 100, 1000, 8000, 30000)) + b"\n" for _ in range(r.randint(1, 40))]
            else:
                lines = [b"x" * r.randint(1, 3000) + b"\n" for _ in range(r.randint(1, 20))]
            f = s.makefile("rb")
            for l in lines:
                s.sendall(l)
                assert f.readline() == l
            f.close()
ts = [threading.Thread(target=run, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
'''
client = subprocess.Popen([sys.executable, "-c", CLIENT, str(server.server_address[1]), str(seconds), os.environ.get("MODE", "good")])
def rss():
    with open("/proc/self/status") as f:
        for l in f:
            if l.startswith("VmRSS"):
                return int(l.split()[1]) / 1024
t0 = time.monotonic()
while client.poll() is None:
    m = libc.mallinfo2()
    print("%5.0f s  RSS %6.1f MiB  arena %6.1f MiB  in-use %5.1f MiB  free %5.1f MiB  mmap %5.1f MiB  threads %d" % (
        time.monotonic() - t0, rss(), m.arena / 2**20, m.uordblks / 2**20, m.fordblks / 2**20, m.hblkhd / 2**20,
        threading.active_count()), flush=True)
    time.sleep(seconds / 6)
client.wait()
if os.environ.get("STATS"):
    libc.malloc_stats(); libc.fflush(None); sys.stdout.flush()
    fp = libc.fdopen(1, b"w"); libc.malloc_info(0, ctypes.c_void_p(fp)); libc.fflush(None)
libc.malloc_trim(0)
m = libc.mallinfo2()
print("after malloc_trim(0): RSS %.1f MiB  arena %.1f MiB  in-use %.1f MiB" % (rss(), m.arena / 2**20, m.uordblks / 2**20))
