"""The C API call: ``octc_classify`` on the default wide volume, through the real liboctclassify.so.

The library is built with ``bindings/build_library.py`` and runs in a child process
(``benchmarks/c_api_worker.py``) that loads it with ctypes into a fresh Python: cffi's embedded
start-up spins for ever in a Python where anything has looked up an attribute of a capsule (importing
torch does; see bindings/README.md), which this pytest process cannot promise. Each timed round is
one request over a pipe and one ``octc_classify``; the pipe adds well under a millisecond to the
call's ~1 s. The library's own ``latency_ms`` is kept beside. Skipped with the reason when no C
compiler is available.
"""

import json
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from benchmarks.conftest import ROOT, bench_bundle_dir

OPEN_TIMEOUT_S = 600  # loading the full-width bundle takes well under a minute on the 2-core CPU
CALL_TIMEOUT_S = 120


class Worker:
    """The child process, one JSON answer per request, each awaited at most a given time."""

    def __init__(self, library: Path, volume_npz: Path):
        command = [sys.executable, "-m", "benchmarks.c_api_worker", str(library), str(bench_bundle_dir())]
        self.process = subprocess.Popen(
            [*command, str(volume_npz)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
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
def library(tmp_path_factory) -> Path:
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("needs a C compiler to build liboctclassify.so")
    out = tmp_path_factory.mktemp("lib")
    subprocess.run(
        [sys.executable, str(ROOT / "bindings" / "build_library.py"), str(out)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    return out / "liboctclassify.so"


def test_c_api_classify(benchmark, library, wide_volume_npz):
    worker = Worker(library, wide_volume_npz)
    try:
        opened = worker.answer(OPEN_TIMEOUT_S)
        assert opened["status"] == 0, opened["error"]
        reply = benchmark.pedantic(worker.classify, rounds=3, warmup_rounds=2)  # a fresh process warms up
    finally:
        worker.close()
    assert reply["status"] == 0, reply["error"]
    assert reply["gradable"] == 1 and abs(reply["probability_sum"] - 1) < 1e-9
    benchmark.extra_info["library_latency_ms"] = reply["latency_ms"]
