"""The scan-time front end against phantom ground truth.

20 eyes at the default wide-field shape (128 x 496 x 512): every class, both eyes of each class.
Each figure is checked per eye, so one bad eye cannot hide behind a good average. The limits are
what the segmentation achieves (README table) with a small margin: a +1 px shift of RNFL/GCL, or
of the ILM, fails them.
"""

import numpy as np
import pytest

import phantom
import sdk
from benchmarks.frontend_accuracy import disc_figures
from sdk.maps import geometry

KINDS = ("normal", "FI", "GE", "MY", "SS")
N_EYES = 20
MAX_BOUNDARY_MAE_PX = {"ILM": 0.6, "BM": 0.5, "RNFL_GCL": 1.75, "IPL_INL": 0.85}
MAX_MAP_MAE_UM = 4.5
MAX_CENTRE_ERROR_MM = 0.1
MAX_BMO_AREA_ERROR = 0.1  # mean segmented / true Bruch's-membrane-opening area per class within 10 %
MAX_BMO_OVALITY_ERROR = 0.05  # mean |segmented - true| ovality per class


@pytest.fixture(scope="module")
def results():
    out = []
    for i in range(N_EYES):
        kind = KINDS[i % 5]
        laterality = "OD" if (i // 5) % 2 == 0 else "OS"
        eye = phantom.make_eye(kind, seed=500 + i, laterality=laterality)
        out.append((eye, sdk.maps.extract(eye.volume)))
    return out


def test_cohort_covers_every_class_and_both_eyes(results):
    seen = {(eye.truth.label, eye.volume.laterality) for eye, _ in results}
    assert seen == {(k, lat) for k in KINDS for lat in ("OD", "OS")}


def test_every_phantom_eye_is_gradable(results):
    for eye, maps in results:
        assert maps.quality.gradable, (eye.truth.label, maps.quality.reasons)


def boundary_errors(eye, maps, surface, shift_px=0.0):
    """Signed error of ``surface`` (+ shift_px) outside the true and the found disc, px."""
    seg = maps.segmentations[0]
    outside = ~eye.truth.disc_mask & ~seg.disc.mask
    return (seg.surfaces[surface] + shift_px - eye.truth.surfaces_px[surface])[outside]


@pytest.mark.parametrize("surface", sdk.retina.SURFACES)
def test_boundary_error_outside_the_disc(results, surface):
    for eye, maps in results:
        error = np.abs(boundary_errors(eye, maps, surface))
        assert np.isfinite(error).all()
        assert error.mean() <= MAX_BOUNDARY_MAE_PX[surface], (eye.truth.label, surface, error.mean())


@pytest.mark.parametrize("surface", ["RNFL_GCL", "ILM"])
def test_a_one_pixel_shift_fails_the_limits(results, surface):
    worst = max(np.abs(boundary_errors(eye, maps, surface, 1.0)).mean() for eye, maps in results)
    assert worst > MAX_BOUNDARY_MAE_PX[surface]


@pytest.mark.parametrize("kind", KINDS)
def test_bmo_area_and_ovality_per_class(results, kind):
    """The disc found is Bruch's-membrane opening, whatever the cup: area and ovality of its ellipse
    against the phantom's true opening, as class means (every eye's figures: README, from
    python -m benchmarks.frontend_accuracy)."""
    ratios, ovality_errors = [], []
    for eye, maps in results:
        if eye.truth.label != kind:
            continue
        area, true_area, ovality, true_ovality = disc_figures(eye, maps.segmentations[0])
        ratios.append(area / true_area)
        ovality_errors.append(abs(ovality - true_ovality))
    assert abs(np.mean(ratios) - 1) <= MAX_BMO_AREA_ERROR, (kind, ratios)
    assert np.mean(ovality_errors) <= MAX_BMO_OVALITY_ERROR, (kind, ovality_errors)


def test_a_crescent_of_atrophy_stays_outside_the_opening():
    """A tilted myopic disc with a 0.72 mm temporal crescent of atrophy, where only a thin Bruch's
    membrane is left below the ONL and the choroid shines through (benchmarks.frontend_accuracy's
    worst eye, MY seed 1018, before the coarse BM became the fall below the outer complex's brightest
    level and the reference bent to BM's tilt: area 1.29 x, centre 0.18 mm off). Its opening within
    the per-class limits, on its own."""
    eye = phantom.make_eye("MY", seed=1018, laterality="OS")
    assert eye.params.atrophy[0].width_mm > 0.7
    seg = sdk.retina.segment(eye.volume)
    area, true_area, ovality, true_ovality = disc_figures(eye, seg)
    centre_error = np.hypot(*np.subtract(seg.disc.center_mm, eye.truth.disc_center_mm))
    assert abs(area / true_area - 1) <= MAX_BMO_AREA_ERROR, area / true_area
    assert abs(ovality - true_ovality) <= MAX_BMO_OVALITY_ERROR, (ovality, true_ovality)
    assert centre_error <= MAX_CENTRE_ERROR_MM, centre_error


def test_disc_and_fovea_centres(results):
    for eye, maps in results:
        seg = maps.segmentations[0]
        disc_error = np.hypot(*np.subtract(seg.disc.center_mm, eye.truth.disc_center_mm))
        fovea_error = np.hypot(*np.subtract(seg.fovea.center_mm, eye.truth.fovea_center_mm))
        assert disc_error <= MAX_CENTRE_ERROR_MM, (eye.truth.label, disc_error)
        assert fovea_error <= MAX_CENTRE_ERROR_MM, (eye.truth.label, fovea_error)


def test_thickness_maps_outside_the_disc(results):
    """The RNFL and GCC maps against the true thickness sampled at the same map pixels."""
    for eye, maps in results:
        seg = maps.segmentations[0]
        lat, spacing = eye.volume.laterality, eye.volume.spacing_mm
        for found, truth_um, centre, field in (
            (maps.rnfl_thickness, eye.truth.rnfl_thickness_um, seg.disc.center_mm, geometry.RNFL_FIELD_MM),
            (maps.gcc_thickness, eye.truth.gcc_thickness_um, seg.fovea.center_mm, geometry.GCC_FIELD_MM),
        ):
            y, x = geometry.map_positions_mm(centre, field, lat)
            truth_map = geometry.sample(truth_um, spacing, y, x)
            both = np.isfinite(found) & np.isfinite(truth_map)
            assert both.mean() > 0.75  # the disc takes up to a fifth of the RNFL map's field
            assert np.abs(found - truth_map)[both].mean() <= MAX_MAP_MAE_UM, (eye.truth.label, field)


def test_left_eyes_reach_the_maps_in_right_eye_orientation(results):
    """Column 0 is temporal for both eyes: the RNFL map is thin far temporal of the disc and the
    papillomacular side faces the fovea on the same side."""
    for eye, maps in results:
        gcc = maps.gcc_thickness
        nasal, temporal = np.nanmean(gcc[:, -30:]), np.nanmean(gcc[:, :30])
        assert nasal > temporal, (eye.truth.label, eye.volume.laterality)  # RNFL thickens towards the disc


COARSE_EYE = (32, 248, 128)  # B-scans 0.28 mm apart, A-scans 0.094 mm: the tests' small phantom


@pytest.mark.parametrize("kind", KINDS)
def test_the_disc_is_found_on_coarse_cubes(kind):
    """On cubes this coarse the contrasts inside the opening stay above half their median on some
    eyes (normal seeds 1 and 2, MY 1, SS 2 and 4 were missed before the coarse fallback); every eye
    must still get its disc, within about one B-scan of the true centre."""
    for seed in range(5):
        eye = phantom.make_eye(kind, seed=seed, shape=COARSE_EYE)
        disc = sdk.retina.segment(eye.volume).disc
        assert disc is not None, f"{kind} seed {seed}: no disc"
        error_mm = np.hypot(*np.subtract(disc.center_mm, eye.truth.disc_center_mm))
        assert error_mm < 0.3, f"{kind} seed {seed}: disc centre {error_mm:.2f} mm off"
