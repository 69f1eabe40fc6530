"""The C API call: ``octc_classify`` on the default wide volume, through the real liboctclassify.so.

The library is built with ``bindings/build_library.py`` and loaded with ctypes into this (already
running) Python, which it then uses; ctypes releases the GIL for the call as C firmware would not
hold it. Skipped with the reason when no C compiler is available.

Embedding into a running Python 3.11 is not the firmware's case and has one trap: cffi's start-up
spin lock is ``PyCapsule_Type.tp_version_tag``, which spins for ever once anything in the process
has looked up an attribute of a capsule (the ONNX exporter does). The benchmark bundle is therefore
made in child processes (conftest.py), and the first call runs under a watchdog that fails the
benchmark instead of hanging CI.
"""

import ctypes
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from benchmarks.conftest import ROOT, bench_bundle_dir

OCTC_OK, OCTC_UINT8 = 0, 1
OPEN_TIMEOUT_S = 600  # loading the full-width bundle takes well under a minute on the 2-core CPU


class Result(ctypes.Structure):
    _fields_ = [
        ("gradable", ctypes.c_int),
        ("label", ctypes.c_int),
        ("label_name", ctypes.c_char * 8),
        ("probabilities", ctypes.c_double * 5),
        ("reason", ctypes.c_char * 512),
        ("latency_ms", ctypes.c_double),
    ]


@pytest.fixture(scope="session")
def library(tmp_path_factory):
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("needs a C compiler to build liboctclassify.so")
    out = tmp_path_factory.mktemp("lib")
    subprocess.run(
        [sys.executable, str(ROOT / "bindings" / "build_library.py"), str(out)],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(Path(out) / "liboctclassify.so"))
    lib.octc_open.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    lib.octc_classify.argtypes = [
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.c_int64,
        ctypes.POINTER(ctypes.c_double),
        ctypes.c_char_p,
        ctypes.POINTER(Result),
    ]
    lib.octc_last_error.restype = ctypes.c_char_p
    return lib


def open_classifier(library) -> ctypes.c_void_p:
    """``octc_open`` on the benchmark bundle (its first call starts the embedded Python), watched."""
    bundle = str(bench_bundle_dir()).encode()
    handle, status = ctypes.c_void_p(), []
    opener = threading.Thread(
        target=lambda: status.append(library.octc_open(bundle, b"onnxruntime", ctypes.byref(handle))),
        daemon=True,
    )
    opener.start()
    opener.join(OPEN_TIMEOUT_S)
    if opener.is_alive():
        pytest.fail(f"octc_open did not return in {OPEN_TIMEOUT_S} s: cffi's start-up spin lock (see above)")
    assert status == [OCTC_OK], library.octc_last_error()
    return handle


def test_c_api_classify(benchmark, library, wide_volume):
    handle = open_classifier(library)
    voxels = np.ascontiguousarray(wide_volume.data)
    spacing = (ctypes.c_double * 3)(*wide_volume.spacing_mm)
    result = Result()

    def classify():
        return library.octc_classify(
            handle, voxels.ctypes.data, OCTC_UINT8, *voxels.shape, spacing, b"OD", ctypes.byref(result)
        )

    status = benchmark.pedantic(classify, rounds=3, warmup_rounds=1)
    library.octc_close(handle)
    assert status == OCTC_OK, library.octc_last_error()
    assert result.gradable == 1 and abs(sum(result.probabilities) - 1) < 1e-9
