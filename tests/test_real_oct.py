"""The front end on real B-scans against the devices' own boundaries (issue: front end on real tissue).

Each fixture of ../shared/real-oct/ is one real B-scan (three Heidelberg Spectralis peripapillary
circles, one Topcon 3D OCT-1000 macular B-scan) with the boundaries its device found. The B-scan
is repeated with independent noise into a small cube and segmented; errors are measured on the
A-scans where the device found the ILM with vitreous above it (tests/real_oct.py), in px.

Targets: ILM mean <= 1.5 px and 95th percentile <= 4 px; Bruch's membrane mean <= 2 px; outer RNFL
mean <= 3 px. A shift of our ILM by 1 px fails its limits on every gradable fixture (measured errors
are 1.0-1.2 px with a bias of -1 px: the devices place the ILM about 1 px deeper than the half-rise
of the log-scale edge). Targets not met are listed in NOT_MET with their figures (strict xfail: a
fix makes them fail until the list is updated).
"""

import numpy as np
import pytest

from tests import real_oct

pytestmark = pytest.mark.skipif(not real_oct.available(), reason="../shared/real-oct/ is not present")

TARGETS_PX = real_oct.TARGETS_PX
FOLDED = "heidelberg-circle-myopic-OD.vol"
# targets not met, with the figure measured (python -m benchmarks.real_oct_accuracy prints them all)
NOT_MET = {
    # the highly myopic scan's retina is folded by the top of the depth window and its inner layer is
    # split (schisis or a traction membrane): the device and we put the ILM on opposite sides
    (FOLDED, "ILM"): "ILM mean 7.7 px on the A-scans with vitreous above",
    (FOLDED, "BM"): "BM mean 12.7 px",
    (FOLDED, "RNFL_GCL"): "outer RNFL mean 16.9 px",
    # the device's BM is a smooth contour that sits on the RPE peak in one place and 6 px below the
    # steepest fall in another; ours is the steepest fall
    ("topcon-3doct1000-macula-OS-1bscan.fda", "BM"): "BM mean 2.39 px, bias -0.97 px",
}


@pytest.fixture(scope="module")
def measured():
    return {name: real_oct.errors(name) for name in real_oct.FIXTURES}


@pytest.mark.parametrize("name", real_oct.FIXTURES)
def test_fixtures_are_read_with_their_devices_boundaries(measured, name):
    fixture = measured[name][0]
    ilm, bm = fixture.boundaries_px["ILM"], fixture.boundaries_px["BM"]
    both = np.isfinite(ilm) & np.isfinite(bm)
    assert both.mean() > 0.7 and (bm[both] > ilm[both]).all()
    assert fixture.comparable().mean() > (0.4 if name == FOLDED else 0.99)


CASES = [
    pytest.param(
        name,
        surface,
        marks=[pytest.mark.xfail(strict=True, reason=f"target not met: {NOT_MET[name, surface]}")]
        if (name, surface) in NOT_MET
        else [],
    )
    for name in real_oct.FIXTURES
    for surface in ("ILM", "BM", "RNFL_GCL")
    if not (surface == "RNFL_GCL" and "topcon" in name)  # the .fda's contours hold no outer RNFL
]


@pytest.mark.parametrize("name, surface", CASES)
def test_boundary_against_the_device(measured, name, surface):
    error = np.abs(measured[name][2][surface])
    assert error.mean() <= TARGETS_PX[surface], error.mean()
    if surface == "ILM":
        assert np.percentile(error, 95) <= TARGETS_PX["ILM p95"]


@pytest.mark.parametrize("name", [n for n in real_oct.FIXTURES if n != FOLDED])
def test_a_one_pixel_shift_fails_the_ilm_limit(measured, name):
    """The limits are tight enough to see a 1 px error of our ILM."""
    shifted = np.abs(measured[name][2]["ILM"] - 1.0)
    assert shifted.mean() > TARGETS_PX["ILM"] or np.percentile(shifted, 95) > TARGETS_PX["ILM p95"]


def test_folded_retina_is_reported_ungradable(measured):
    quality = measured[FOLDED][1].quality
    assert not quality.gradable
    assert any("top of the depth window" in reason for reason in quality.reasons)


@pytest.mark.parametrize("name", [n for n in real_oct.FIXTURES if n != FOLDED])
def test_real_scans_are_not_refused_for_their_layers(measured, name):
    """The layers of a real scan stand out: boundary confidence and signal pass the quality gate
    (a cube of one B-scan repeated has no disc or fovea to find, so those reasons are expected)."""
    reasons = measured[name][1].quality.reasons
    assert [r for r in reasons if not r.startswith(("optic disc not found", "fovea not found"))] == []


def test_the_accuracy_table_marks_what_is_not_met(measured):
    """The rows of ``python -m benchmarks.real_oct_accuracy`` (the README's table) mark the misses
    this file expects: the folded scan's three surfaces (its ILM twice: mean and p95) and Topcon's
    Bruch's membrane."""
    from benchmarks import real_oct_accuracy

    misses = {name: real_oct_accuracy.row(*measured[name]).count("(not met)") for name in measured}
    assert misses == {
        name: {FOLDED: 4, "topcon-3doct1000-macula-OS-1bscan.fda": 1}.get(name, 0) for name in measured
    }
