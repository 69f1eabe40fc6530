"""The front end's work is bounded by the volume's size, not by its spacing: the default wide volume's
voxels (128 x 496 x 512) at the extreme spacings sdk.OCTVolume accepts, classified end to end.

Issue 11's target: every spacing OCTVolume accepts is either refused (a field of view too small for
the maps: InvalidVolume) or classified (graded or ungradable) within 2 s on the 2-core CPU; spacing
outside sdk.volume.SPACING_RANGE_MM is refused by OCTVolume itself (tests/test_volume.py). Wall time
depends on the machine and on what else it runs (a shared virtual machine's speed varied 2.5x within
an hour here), so the 2 s is reported (``extra_info``, README), and what is asserted is the work, as
process CPU time, within the run: classify at each extreme spacing within MAX_WORK_RATIO times the
CPU time of the default spacing's front end. A spacing whose work is not bounded (depth or A-scans
not binned) fails it; A-scans 0.5 mm apart, not binned, take about 2.3 times.
"""

import time

import pytest

import sdk
from sdk.backends import make_backend
from sdk.errors import InvalidVolume
from sdk.volume import SPACING_RANGE_MM

MAX_CLASSIFY_S = 2.0  # issue 11's target, reported
MAX_WORK_RATIO = 3.0  # asserted: CPU time of classify at any accepted spacing / the default's front end
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
    benchmark.extra_info.update(
        spacing_mm=spacing,
        answer=answer,
        within_target_s=benchmark.stats.stats.max <= MAX_CLASSIFY_S,
        cpu_over_default_front_end=round(work_ratio, 3),
    )
    assert work_ratio <= MAX_WORK_RATIO, (min(cpu_s), default_front_end_cpu_s)
