import os, statistics, sys, time
import phantom, sdk
from sdk.bundle import Bundle
from sdk.retina import chunks, layers, intensity

b = Bundle.load(sys.argv[1]); v = phantom.make_eye("FI", seed=11).volume
real = chunks.for_blocks
caps = {}
def capped(work, n, halo=0):
    k = caps.get(getattr(work, "__name__", ""), caps["default"])
    orig = chunks.n_threads
    chunks.n_threads = lambda: k
    try:
        real(work, n, halo)
    finally:
        chunks.n_threads = orig
layers.for_blocks = intensity.for_blocks = capped
cores = len(os.sched_getaffinity(0))
for spec in sys.argv[2:]:
    d, t = (int(x) for x in spec.split(","))
    caps.clear(); caps.update(default=d, trace_block=t)
    sdk.maps.extract(v, b.normative); ts = []
    for _ in range(5):
        s = time.perf_counter(); sdk.maps.extract(v, b.normative); ts.append(time.perf_counter() - s)
    print(f"cores {cores:2d} other-blocks {d} trace-blocks {t}: maps.extract median {statistics.median(ts):.3f} s", flush=True)
