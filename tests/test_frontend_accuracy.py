"""The scan-time front end against phantom ground truth (issue 2's acceptance figures).

20 eyes at the default wide-field shape (128 x 496 x 512): every class, both eyes of each class.
Each figure is checked per eye, so one bad eye cannot hide behind a good average.
"""

import numpy as np
import pytest

import phantom
import sdk
from sdk.maps import geometry

KINDS = ("normal", "FI", "GE", "MY", "SS")
N_EYES = 20
MAX_BOUNDARY_MAE_PX = {"ILM": 1.5, "BM": 1.5, "RNFL_GCL": 2.5, "IPL_INL": 2.5}
MAX_MAP_MAE_UM = 6.0
MAX_CENTRE_ERROR_MM = 0.15


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


@pytest.mark.parametrize("surface", sdk.retina.SURFACES)
def test_boundary_error_outside_the_disc(results, surface):
    for eye, maps in results:
        seg = maps.segmentations[0]
        outside = ~eye.truth.disc_mask & ~seg.disc.mask
        error = np.abs(seg.surfaces[surface] - eye.truth.surfaces_px[surface])[outside]
        assert np.isfinite(error).all()
        assert error.mean() <= MAX_BOUNDARY_MAE_PX[surface], (eye.truth.label, surface, error.mean())


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
