"""The C API through the real liboctclassify.so.0: one ``octc_classify`` call, and a cold start.

The library, its runtime folder and two C programs are built with CMake in a temporary folder:

* ``test_c_api_classify``: ``octc_classify`` on the default wide volume with the benchmark bundle
  (full-width networks), in ``benchmarks/c_api_worker.c``, a C process driven over a pipe; each
  timed round is one request and one call (the pipe adds well under a millisecond to ~1 s).
* ``test_c_api_cold_start``: a whole firmware-like process, ``classify_volume``
  (bindings/examples), from its start to its first result on stdout: Python and SDK start, bundle
  check and load, one volume. The bundle has the demo bundle's networks (the ``cpu`` preset's:
  width 1/8, 64 px) with random weights, made once into out/bench-bundle-w0.125-64 (speed does not
  depend on the weights); ``OCTC_COLD_START_BUNDLE=out/demo/bundle`` times the trained demo bundle
  itself. The README's target: <= 1.5 s on the 2-core CPU.

Skipped with the reason when cmake or a C compiler is missing.
"""

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.conftest import ROOT, SMALL_PHANTOM, bench_bundle_dir

OPEN_TIMEOUT_S = 600  # loading the full-width bundle takes well under a minute on the 2-core CPU
CALL_TIMEOUT_S = 120
COLD_START_TARGET_S = 1.5
DEMO_NETWORKS = ("0.125", "64")  # width and input px of the cpu preset, which the demo bundle trains


class Worker:
    """The C worker process, one JSON answer per request, each awaited at most a given time."""

    def __init__(self, build: Path, raw_volume: Path, volume):
        shape = [str(n) for n in volume.shape]
        spacing = [repr(s) for s in volume.spacing_mm]
        command = [
            build / "c_api_worker",
            bench_bundle_dir(),
            raw_volume,
            *shape,
            *spacing,
            volume.laterality,
        ]
        self.process = subprocess.Popen(
            [str(c) for c in command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._answers: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._answers.put(json.loads(line))
        self._answers.put(None)  # the process ended

    def answer(self, timeout_s: float) -> dict:
        try:
            reply = self._answers.get(timeout=timeout_s)
        except queue.Empty:
            pytest.fail(f"the C API worker did not answer in {timeout_s} s")
        if reply is None:
            pytest.fail(f"the C API worker ended (exit status {self.process.wait()})")
        return reply

    def classify(self) -> dict:
        self.process.stdin.write("classify\n")
        self.process.stdin.flush()
        return self.answer(CALL_TIMEOUT_S)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


@pytest.fixture(scope="session")
def build(tmp_path_factory) -> Path:
    missing = [
        tool for tool in ("cmake", os.environ.get("CC", "cc").split()[0]) if shutil.which(tool) is None
    ]
    if missing:
        pytest.skip(f"needs cmake and a C compiler to build liboctclassify; missing: {', '.join(missing)}")
    build = tmp_path_factory.mktemp("c-api-bench")
    for command in (
        ["cmake", "-S", ROOT, "-B", build, f"-DOCTC_PYTHON={sys.executable}"],
        [
            "cmake",
            "--build",
            build,
            "--parallel",
            "2",
            "--target",
            "deploy",
            "c_api_worker",
            "classify_volume",
        ],
    ):
        subprocess.run([str(c) for c in command], check=True, cwd=ROOT, capture_output=True)
    return build


@pytest.fixture(scope="session")
def raw_volume(wide_volume, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("raw") / "wide.raw"
    wide_volume.data.astype("uint8").tofile(path)
    return path


def test_c_api_classify(benchmark, build, raw_volume, wide_volume):
    worker = Worker(build, raw_volume, wide_volume)
    try:
        opened = worker.answer(OPEN_TIMEOUT_S)
        assert opened["status"] == 0, opened["error"]
        reply = benchmark.pedantic(worker.classify, rounds=3, warmup_rounds=2)  # a fresh process warms up
    finally:
        worker.close()
    assert reply["status"] == 0, reply["error"]
    assert reply["gradable"] == 1 and abs(reply["probability_sum"] - 1) < 1e-9
    benchmark.extra_info["library_latency_ms"] = reply["latency_ms"]


def demo_sized_bundle() -> Path:
    """$OCTC_COLD_START_BUNDLE, else a random-weight bundle with the demo bundle's networks (made once)."""
    if "OCTC_COLD_START_BUNDLE" in os.environ:
        return Path(os.environ["OCTC_COLD_START_BUNDLE"])
    width, px = DEMO_NETWORKS
    folder = ROOT / "out" / f"bench-bundle-w{width}-{px}"
    if not (folder / "manifest.json").exists():
        checkpoint = folder.with_name(folder.name + "-checkpoint")
        shape = ["--phantom-shape", *SMALL_PHANTOM]
        for command in (
            ["random-checkpoint", checkpoint, "--overwrite", "--width", width, "--input-px", px, *shape],
            ["bundle", checkpoint, folder, "--overwrite", "--target", "cpu", *shape],
        ):
            subprocess.run([sys.executable, "-m", "converters", *map(str, command)], check=True, cwd=ROOT)
    return folder


def test_c_api_cold_start(benchmark, build, raw_volume, wide_volume):
    bundle = demo_sized_bundle()
    shape = [str(n) for n in wide_volume.shape]
    spacing = [repr(s) for s in wide_volume.spacing_mm]
    command = [
        build / "classify_volume",
        bundle,
        raw_volume,
        "uint8",
        *shape,
        *spacing,
        wide_volume.laterality,
        "onnxruntime",
    ]

    def first_result_s() -> float:
        start = time.perf_counter()
        process = subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, text=True, env={})
        for line in process.stdout:
            if line.startswith("label: "):
                elapsed = time.perf_counter() - start
                break
        else:
            pytest.fail(f"classify_volume gave no result (exit status {process.wait()})")
        assert process.wait(timeout=60) == 0
        return elapsed

    seconds = benchmark.pedantic(first_result_s, rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(bundle=str(bundle), target_s=COLD_START_TARGET_S, last_s=seconds)
