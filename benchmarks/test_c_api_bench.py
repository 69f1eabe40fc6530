"""The C API call: ``octc_classify`` on the default wide volume, through the real liboctclassify.so.

The library is built with ``bindings/build_library.py`` and loaded with ctypes into this (already
running) Python, which it then uses; ctypes releases the GIL for the call as C firmware would not
hold it. Skipped with the reason when no C compiler is available.
"""

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.conftest import ROOT, bench_bundle_dir

OCTC_OK, OCTC_UINT8 = 0, 1


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


def test_c_api_classify(benchmark, library, wide_volume):
    handle = ctypes.c_void_p()
    status = library.octc_open(str(bench_bundle_dir()).encode(), b"onnxruntime", ctypes.byref(handle))
    assert status == OCTC_OK, library.octc_last_error()
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
