"""Probe: the eight FP16 networks as one CUDA graph, one stream vs one stream per map, NCHW vs channels_last."""
import statistics, time, torch
from sdk.bundle import Bundle
from sdk.backends import stage_indices
from sdk.backends.torch_backend import TorchBackend

b = Bundle.load("out/bench-bundle-w1-224")
pairs = stage_indices(b)

def variants(be, x):
    def single():
        return [be._forward(i, x[m : m + 1]) for m, (i, _) in enumerate(pairs)] + [
            be._forward(j, x[m : m + 1]) for m, (_, j) in enumerate(pairs)]
    streams = [torch.cuda.Stream() for _ in pairs]
    def multi():
        cur = torch.cuda.current_stream(); first, second = [], []
        for m, (i, j) in enumerate(pairs):
            streams[m].wait_stream(cur)
            with torch.cuda.stream(streams[m]):
                first.append(be._forward(i, x[m : m + 1])); second.append(be._forward(j, x[m : m + 1]))
        for s in streams:
            cur.wait_stream(s)
        return first + second
    return {"one stream": single, "stream per map": multi}

def capture_and_time(f):
    with torch.inference_mode():
        s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                f()
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            out = f()
    ts = []
    for _ in range(100):
        torch.cuda.synchronize(); t = time.perf_counter(); g.replay(); torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3, torch.cat([o.float().flatten() for o in out]).cpu()

be = TorchBackend(b, "fp16", cuda_graphs=False)
x = torch.randn(4, 3, 224, 224, device="cuda")
ref = None
for layout in ("NCHW", "channels_last"):
    if layout == "channels_last":
        for model in be._models:
            model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    for name, f in variants(be, x).items():
        ms, out = capture_and_time(f)
        ref = out if ref is None else ref
        print(f"{layout:14s} {name:15s} graph replay median {ms:.3f} ms, max |dp| vs first {float((out - ref).abs().max()):.1e}", flush=True)
