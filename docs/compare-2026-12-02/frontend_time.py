"""Median time of sdk.maps.extract on the default wide phantom volume in this process (5 calls after one).

    PYTHONPATH=CHECKOUT python docs/compare-2026-12-02/frontend_time.py VOLUME.npz NORMATIVE.npz

Run alternately against two checkouts (each with its compiled kernels built in place) to compare
their front ends on one machine; prints which checkout's sdk ran.
"""

import statistics
import sys
import time

import numpy as np

import sdk
import sdk.maps

z = np.load(sys.argv[1])
volume = sdk.OCTVolume(
    z["data"], spacing_mm=tuple(z["spacing_mm"]), laterality=str(z["laterality"]), protocol=str(z["protocol"])
)
normative = sdk.maps.Normative.load(sys.argv[2])
sdk.maps.extract(volume, normative)
times = []
for _ in range(5):
    t = time.perf_counter()
    m = sdk.maps.extract(volume, normative)
    times.append(time.perf_counter() - t)
median, low, high = statistics.median(times), min(times), max(times)
print(f"{sdk.__file__} median {median:.3f} s  min {low:.3f} max {high:.3f}", end="  ")
print(f"rnfl mean {np.nanmean(m.rnfl_thickness):.2f}")
