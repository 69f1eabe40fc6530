"""The front end's work is bounded by the volume's size, not by its spacing: the default wide volume's
voxels (128 x 496 x 512) at the extreme spacings sdk.OCTVolume accepts, classified end to end.

Issue 11's target: every spacing OCTVolume accepts is either refused (a field of view too small for
the maps: InvalidVolume) or classified (graded or ungradable) within 2 s on the 2-core CPU; spacing
outside sdk.volume.SPACING_RANGE_MM is refused by OCTVolume itself (tests/test_volume.py). Wall time
depends on the machine and on what else it runs (a shared virtual machine's speed varied 2.5x within
an hour here), so the 2 s is reported (``extra_info``, README), and what is asserted is the work, as
process CPU time, within the run: classify at each extreme spacing against the CPU time of the
default spacing's front end, within a bound that depends on which way the spacing goes:

- finer than the default on its axis (MAX_BINNED_RATIO): the front end bins such a volume to its
  working grid, which is no larger than the default's, so its work is no more than the default's
  plus the binning. Measured (2-core Intel Xeon, 2026-12-02): axial 0.5 um 0.67-0.80 times; the same
  volume with its depth left unbinned 3.15 times, which fails.
- coarser (MAX_UNBINNED_RATIO): nothing is binned, every sample is searched and the steps between
  A-scans reach their caps in pixels (layers.MAX_STEP_PX, COARSE_MAX_STEP), so the work follows the
  raw grid: A-scans 0.5 mm apart search twice the default's working A-scans and four times its
  coarse ones, measured 2.3-3.1 times (the last in a CI run); axial 20 um 1.36 times.
"""

import time

import pytest

import sdk
from sdk.backends import make_backend
from sdk.errors import InvalidVolume
from sdk.volume import SPACING_RANGE_MM

MAX_CLASSIFY_S = 2.0  # issue 11's target, reported
MAX_BINNED_RATIO = 1.5  # asserted: CPU time of classify at a finer spacing / the default's front end
MAX_UNBINNED_RATIO = 4.0  # ... at a coarser spacing
EXTREMES = [
    pytest.param(axis, SPACING_RANGE_MM[axis][end], id=f"{name}={SPACING_RANGE_MM[axis][end]:g}mm")
    for axis, name in enumerate(("bscan", "axial", "ascan"))
    for end in (0, 1)
]


@pytest.fixture(scope="module")
def default_front_end_cpu_s(bundle, wide_volume) -> float:
    """Least process CPU seconds of ``sdk.maps.extract`` on the default wide volume (three runs after
    one): noise only adds time, so the least is the work."""
    sdk.maps.extract(wide_volume, bundle.normative)
    seconds = []
    for _ in range(3):
        start = time.process_time()
        sdk.maps.extract(wide_volume, bundle.normative)
        seconds.append(time.process_time() - start)
    return min(seconds)


@pytest.mark.parametrize("axis, spacing_mm", EXTREMES)
def test_classify_at_extreme_spacing(
    benchmark, bundle, wide_volume, default_front_end_cpu_s, axis, spacing_mm
):
    spacing = list(wide_volume.spacing_mm)
    spacing[axis] = spacing_mm
    volume = sdk.OCTVolume(wide_volume.data, spacing, wide_volume.laterality, wide_volume.protocol)
    cpu_s = []

    def classify():
        start = time.process_time()
        try:
            return classifier.classify(volume).gradable
        except InvalidVolume as refused:
            return str(refused)
        finally:
            cpu_s.append(time.process_time() - start)

    with sdk.Classifier(bundle, make_backend(bundle, "onnxruntime", precision="fp32")) as classifier:
        answer = benchmark.pedantic(classify, rounds=2, warmup_rounds=1)
    work_ratio = min(cpu_s) / default_front_end_cpu_s
    bound = MAX_BINNED_RATIO if spacing_mm < wide_volume.spacing_mm[axis] else MAX_UNBINNED_RATIO
    benchmark.extra_info.update(
        spacing_mm=spacing,
        answer=answer,
        within_target_s=benchmark.stats.stats.max <= MAX_CLASSIFY_S,
        cpu_over_default_front_end=round(work_ratio, 3),
    )
    assert work_ratio <= bound, (min(cpu_s), default_front_end_cpu_s)
