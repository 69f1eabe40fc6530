"""The front end's work is bounded by the volume's size, not by its spacing: the default wide volume's
voxels (128 x 496 x 512) at the extreme spacings sdk.OCTVolume accepts, classified end to end.

Issue 11's target: every spacing OCTVolume accepts is either refused (a field of view too small for
the maps: InvalidVolume) or classified (graded or ungradable) within 2 s on the 2-core CPU; spacing
outside sdk.volume.SPACING_RANGE_MM is refused by OCTVolume itself (tests/test_volume.py). Wall time
depends on the machine and on what else it runs (a shared virtual machine's speed varied 2.5x within
an hour here), so the 2 s is reported (``extra_info``, README), and what is asserted is the front
end's work, as process CPU time, within the run: ``sdk.maps.extract`` at each extreme spacing against
the default spacing's, within a bound that depends on which way the spacing goes. (Classify's own CPU
time is not the measure: where a spacing's answer is gradable the eight networks run too, the same
work at every spacing; axial 20 um became gradable with 459acda, 2.2 s in a CI run.)

- finer than the default on its axis (MAX_BINNED_RATIO): the front end bins such a volume to its
  working grid, which is no larger than the default's, so its work is no more than the default's
  plus the binning. Measured (2-core Intel Xeon, 2026-12-02): axial 0.5 um 0.67-0.80 times; the same
  volume with its depth left unbinned 3.15 times, which fails.
- coarser (MAX_UNBINNED_RATIO): nothing is binned, every sample is searched and the steps between
  A-scans reach their caps in pixels (layers.MAX_STEP_PX, COARSE_MAX_STEP), so the work follows the
  raw grid: A-scans 0.5 mm apart search twice the default's working A-scans and four times its
  coarse ones, measured 2.1-3.0 times (the last in the clean-clone CI run of 7d26140); axial 20 um
  1.35-1.59 times.
"""

import time

import pytest

import sdk
from sdk.backends import make_backend
from sdk.errors import InvalidVolume
from sdk.volume import SPACING_RANGE_MM

MAX_CLASSIFY_S = 2.0  # issue 11's target, reported
MAX_BINNED_RATIO = 1.5  # asserted: front-end CPU time at a finer spacing / at the default spacing
MAX_UNBINNED_RATIO = 4.0  # ... at a coarser spacing
EXTREMES = [
    pytest.param(axis, SPACING_RANGE_MM[axis][end], id=f"{name}={SPACING_RANGE_MM[axis][end]:g}mm")
    for axis, name in enumerate(("bscan", "axial", "ascan"))
    for end in (0, 1)
]


def front_end_cpu_s(volume, normative, runs: int) -> float:
    """Least process CPU seconds of ``sdk.maps.extract`` of ``volume`` over ``runs`` runs (refused
    with InvalidVolume counts too): noise only adds time, so the least is the work."""
    seconds = []
    for _ in range(runs):
        start = time.process_time()
        try:
            sdk.maps.extract(volume, normative)
        except InvalidVolume:
            pass
        seconds.append(time.process_time() - start)
    return min(seconds)


@pytest.fixture(scope="module")
def default_front_end_cpu_s(bundle, wide_volume) -> float:
    """:func:`front_end_cpu_s` of the default wide volume, three runs after one."""
    sdk.maps.extract(wide_volume, bundle.normative)
    return front_end_cpu_s(wide_volume, bundle.normative, runs=3)


@pytest.mark.parametrize("axis, spacing_mm", EXTREMES)
def test_classify_at_extreme_spacing(
    benchmark, bundle, wide_volume, default_front_end_cpu_s, axis, spacing_mm
):
    spacing = list(wide_volume.spacing_mm)
    spacing[axis] = spacing_mm
    volume = sdk.OCTVolume(wide_volume.data, spacing, wide_volume.laterality, wide_volume.protocol)

    def classify():
        try:
            return classifier.classify(volume).gradable
        except InvalidVolume as refused:
            return str(refused)

    with sdk.Classifier(bundle, make_backend(bundle, "onnxruntime", precision="fp32")) as classifier:
        answer = benchmark.pedantic(classify, rounds=2, warmup_rounds=1)
    work_ratio = front_end_cpu_s(volume, bundle.normative, runs=2) / default_front_end_cpu_s
    bound = MAX_BINNED_RATIO if spacing_mm < wide_volume.spacing_mm[axis] else MAX_UNBINNED_RATIO
    benchmark.extra_info.update(
        spacing_mm=spacing,
        answer=answer,
        within_target_s=benchmark.stats.stats.max <= MAX_CLASSIFY_S,
        cpu_over_default_front_end=round(work_ratio, 3),
    )
    assert work_ratio <= bound, (work_ratio, default_front_end_cpu_s)
