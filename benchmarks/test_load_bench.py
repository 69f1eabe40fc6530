"""Start-up on the lean CPU bundle (``converters bundle --target cpu``: the four merged FP32 models):
``Classifier.load`` with its warm-up, and a whole ``python -m sdk.classify`` process on the default
wide volume (Python start, imports, bundle check and load, warm-up where the backend runs one, one
classification), without a cache folder and with one (:mod:`sdk.backends.onnxruntime_cache`), and
how much slower a fresh process's first network pass is than the next (why ONNX Runtime on the CPU
runs no warm-up). Issue 14's targets on the 2-core CPU: load <= 2.5 s, process <= 4.5 s, bundle <=
0.5 GB. The figures land in the benchmark JSON (``extra_info`` has the bundle size, the process's
peak memory, each process round's CPU seconds and page faults, and the first-pass ratios); the times
are not asserted, since a shared machine would make such a test fail for the wrong reason.
"""

import json
import os
import subprocess
import sys

import pytest

import sdk
from benchmarks.conftest import ROOT, bench_bundle_dir
from benchmarks.test_process_bench import CHILD, run_child
from sdk.engines.cache import ENV_VAR

BUNDLE_SIZE_LIMIT_BYTES = 500_000_000


def bundle_bytes(folder) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_classifier_load_cpu_bundle(benchmark):
    folder = bench_bundle_dir("cpu")
    size = bundle_bytes(folder)
    benchmark.extra_info["bundle_bytes"] = size
    assert size <= BUNDLE_SIZE_LIMIT_BYTES

    def load():
        sdk.Classifier.load(folder, backend="onnxruntime").close()

    benchmark.pedantic(load, rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("cache", ["no cache", "optimised-model cache"])
def test_classify_process_cpu_bundle(benchmark, wide_volume_npz, tmp_path, cache):
    """Without a cache folder, and with one (``--cache-dir``, as a device configures it: the warm-up
    round stores the optimised models, the timed rounds find them; details say "4 hit")."""
    command = [
        sys.executable,
        "-c",
        CHILD,
        str(wide_volume_npz),
        "--bundle",
        str(bench_bundle_dir("cpu")),
        "--json",
    ]
    if cache != "no cache":
        folder = tmp_path / "cache"
        folder.mkdir(mode=0o700)
        command += ["--cache-dir", str(folder)]
    environment = {k: v for k, v in os.environ.items() if k != ENV_VAR}

    def run():
        return run_child(benchmark, command, env=environment)

    done = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)["backend_details"]["optimised_model_cache"]
    assert found.endswith(": 4 hit") if cache != "no cache" else found.startswith("off")
    benchmark.extra_info["peak_rss_mb"] = round(
        int(done.stderr.split("peak_rss_kib")[1].split()[0]) * 1024 / 1e6
    )


# A fresh process loads the cpu bundle without a warm-up and times its first network pass and the
# next three; ONNX Runtime on the CPU runs no warm-up because the first pass is not slower.
FIRST_RUN_CHILD = (
    "import sys, time, numpy as np; from sdk.bundle import Bundle; from sdk.backends import make_backend; "
    "backend = make_backend(Bundle.load(sys.argv[1]), 'onnxruntime'); "
    "x = np.random.default_rng(0).normal(size=(4, 3, *backend.bundle.input_hw)).astype(np.float32); "
    "times = []\n"
    "for _ in range(4):\n"
    "    start = time.perf_counter(); backend.run(x); times.append(time.perf_counter() - start)\n"
    "print(*times)"
)


def test_first_network_pass_after_load(benchmark):
    """Per fresh process: the first pass's time over the median of the next three (extra_info)."""
    command = [sys.executable, "-c", FIRST_RUN_CHILD, str(bench_bundle_dir("cpu"))]
    ratios = []

    def first_over_next() -> float:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
        first, *later = (float(t) for t in done.stdout.split())
        ratios.append(first / sorted(later)[1])
        return first

    benchmark.pedantic(first_over_next, rounds=5, warmup_rounds=0)
    benchmark.extra_info["first_over_next"] = [round(r, 3) for r in ratios]
