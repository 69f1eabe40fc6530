"""Child process of ``test_c_api_bench``: liboctclassify.so in a fresh Python, driven over a pipe.

    python -m benchmarks.c_api_worker LIBRARY BUNDLE VOLUME_NPZ

Loads the library with ctypes into this process, which imports nothing else heavy (cffi's embedded
start-up spins for ever in a Python where anything, torch's import for one, has looked up an
attribute of a capsule: see bindings/README.md), calls ``octc_open`` on BUNDLE, and answers each
line "classify" on stdin with one ``octc_classify`` of the volume in VOLUME_NPZ (arrays ``data``
(n_bscans, depth, n_ascans) uint8 and ``spacing_mm`` (3,)). Every answer is one JSON line on stdout:
{"status", "error"} for the open, {"status", "error", "gradable", "probability_sum", "latency_ms"}
for a classification. Any other line, or the end of stdin, closes the handle and ends the process.
"""

from __future__ import annotations

import ctypes
import json
import sys

import numpy as np

OCTC_OK, OCTC_UINT8 = 0, 1
LATERALITY = b"OD"


class Result(ctypes.Structure):
    """``octc_result`` of octclassify.h."""

    _fields_ = [
        ("gradable", ctypes.c_int),
        ("label", ctypes.c_int),
        ("label_name", ctypes.c_char * 8),
        ("probabilities", ctypes.c_double * 5),
        ("reason", ctypes.c_char * 512),
        ("latency_ms", ctypes.c_double),
    ]


def load(path: str) -> ctypes.CDLL:
    """The library with the argument types of the calls used here."""
    lib = ctypes.CDLL(path)
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
    lib.octc_close.argtypes = [ctypes.c_void_p]
    lib.octc_last_error.restype = ctypes.c_char_p
    return lib


def answer(lib: ctypes.CDLL, status: int, **fields) -> None:
    error = lib.octc_last_error().decode() if status != OCTC_OK else ""
    print(json.dumps({"status": status, "error": error, **fields}), flush=True)


def main(library: str, bundle: str, volume_npz: str) -> int:
    lib = load(library)
    with np.load(volume_npz, allow_pickle=False) as z:
        voxels = np.ascontiguousarray(z["data"], dtype=np.uint8)
        spacing = (ctypes.c_double * 3)(*z["spacing_mm"])
    handle = ctypes.c_void_p()
    status = lib.octc_open(bundle.encode(), b"onnxruntime", ctypes.byref(handle))
    answer(lib, status)
    if status != OCTC_OK:
        return 1
    result = Result()
    for line in sys.stdin:
        if line.strip() != "classify":
            break
        status = lib.octc_classify(
            handle, voxels.ctypes.data, OCTC_UINT8, *voxels.shape, spacing, LATERALITY, ctypes.byref(result)
        )
        answer(
            lib,
            status,
            gradable=result.gradable,
            probability_sum=sum(result.probabilities),
            latency_ms=result.latency_ms,
        )
    lib.octc_close(handle)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
