"""Start-up on the lean CPU bundle (``converters bundle --target cpu``: the four merged FP32 models):
``Classifier.load`` with its warm-up, and a whole ``python -m sdk.classify`` process on the default
wide volume (Python start, imports, bundle check and load, warm-up, one classification). Issue 14's
targets on the 2-core CPU: load <= 2.5 s, process <= 4.5 s, bundle <= 0.5 GB. The figures land in
the benchmark JSON (``extra_info`` has the bundle size and the process's peak memory); the times are
not asserted, since a shared machine would make such a test fail for the wrong reason.
"""

import subprocess
import sys

import sdk
from benchmarks.conftest import ROOT, bench_bundle_dir
from benchmarks.test_process_bench import CHILD

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


def test_classify_process_cpu_bundle(benchmark, wide_volume_npz):
    command = [
        sys.executable,
        "-c",
        CHILD,
        str(wide_volume_npz),
        "--bundle",
        str(bench_bundle_dir("cpu")),
        "--json",
    ]

    def run():
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True)

    done = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert done.returncode == 0, done.stderr
    benchmark.extra_info["peak_rss_mb"] = round(
        int(done.stderr.split("peak_rss_kib")[1].split()[0]) * 1024 / 1e6
    )
