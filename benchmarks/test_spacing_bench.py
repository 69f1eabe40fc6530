"""The front end's work is bounded by the volume's size, not by its spacing: the default wide volume's
voxels (128 x 496 x 512) at the extreme spacings sdk.OCTVolume accepts, classified end to end.

Target: every spacing OCTVolume accepts is either refused (a field of view too small for the maps:
InvalidVolume) or classified (graded or ungradable) within 2 s on the 2-core CPU; spacing outside
sdk.volume.SPACING_RANGE_MM is refused by OCTVolume itself (tests/test_volume.py).
"""

import pytest

import sdk
from sdk.backends import make_backend
from sdk.errors import InvalidVolume
from sdk.volume import SPACING_RANGE_MM

MAX_CLASSIFY_S = 2.0
# A-scans 0.5 mm apart are not binned (binning starts below 40 um), so the default volume's 512
# A-scans are all traced with paths of up to 6 px steps: 2.3x the work of its own 0.0234 mm spacing
NOT_MET = {
    ("ascan", 1): "target not met: 2.44-2.51 s with the compiled path search, 3.2-3.4 s before (2-core Xeon, "
    "2026-12-01; other spacings 0.74-1.34 s)",
}
EXTREMES = [
    pytest.param(
        axis,
        SPACING_RANGE_MM[axis][end],
        id=f"{name}={SPACING_RANGE_MM[axis][end]:g}mm",
        marks=[pytest.mark.xfail(strict=True, reason=NOT_MET[name, end])] if (name, end) in NOT_MET else [],
    )
    for axis, name in enumerate(("bscan", "axial", "ascan"))
    for end in (0, 1)
]


@pytest.mark.parametrize("axis, spacing_mm", EXTREMES)
def test_classify_at_extreme_spacing(benchmark, bundle, wide_volume, axis, spacing_mm):
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
    benchmark.extra_info.update(spacing_mm=spacing, answer=answer)
    assert benchmark.stats.stats.max <= MAX_CLASSIFY_S
