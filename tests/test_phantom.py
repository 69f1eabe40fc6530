"""The phantom: determinism, scan geometry, laterality, truth, anatomy and phenotypes, cohort, export, show.

Anatomy and phenotype checks are statements about several seeds, computed from the phantom's truth
(surfaces, thickness maps, disc mask) or, for atrophy, from its voxels. Volumes are small: truth
statistics need en-face sampling, not depth, so they use a shallow depth.
"""

import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import phantom
import sdk
from phantom import PROTOCOL_EXTENT_MM, make_eye
from phantom.cohort import PAPER_N_GLAUCOMA, PAPER_N_NORMAL, TYPE_MIX, cohort
from phantom.export import load_truth, save_eye, truth_path
from phantom.eye import DEPTH_WINDOW_MM, TRUTH_SURFACES
from sdk.errors import FileError, InvalidVolume, UnsupportedFormat
from sdk.maps.geometry import sample
from sdk.retina import en_face_grid_mm
from sdk.volume import SPACING_RANGE_MM

SMALL = (24, 96, 64)  # (n_bscans, depth, n_ascans): quick volumes
TRUTH_SHAPE = (64, 48, 192)  # 0.14 x 0.06 mm en-face sampling of the wide field; depth does not matter
ATROPHY_SHAPE = (48, 496, 128)  # disc cube at full axial sampling, for voxel statistics
SEEDS = range(8)
ROOT = Path(__file__).resolve().parents[1]  # the CLIs run from the repository root
CP_RADIUS_MM = 1.7


# ----------------------------------------------------------------------------------------------------
# measurements on a phantom's truth, in OD orientation (angles: 0 temporal, 90 superior, 180 nasal)


def od_offsets_mm(eye, centre_mm):
    """(dy, dx) in mm of every A-scan from ``centre_mm`` in OD orientation (+dy inferior, +dx nasal)."""
    y, x = en_face_grid_mm(eye.volume.shape[::2], eye.volume.spacing_mm)
    mirror = 1.0 if eye.volume.laterality == "OD" else -1.0
    return y - centre_mm[0], (x - centre_mm[1]) * mirror


def od_angle_deg(dy, dx):
    return np.degrees(np.arctan2(-dy, -dx)) % 360


def quadrant_masks(angle_deg):
    """{T, S, N, I}: masks of OD angles (deg) in each 90-degree quadrant, T centred on 0."""
    centres = {"T": 0, "S": 90, "N": 180, "I": 270}
    return {name: (angle_deg - centre + 45) % 360 < 90 for name, centre in centres.items()}


def cp_profile_um(eye, radius_mm=CP_RADIUS_MM):
    """True RNFL thickness (um) at OD angles 0.5, 1.5 ... 359.5 deg on a circle about the disc: (360,)."""
    theta = np.radians(np.arange(360) + 0.5)
    mirror = 1.0 if eye.volume.laterality == "OD" else -1.0
    cy, cx = eye.truth.disc_center_mm
    y, x = cy - radius_mm * np.sin(theta), cx - mirror * radius_mm * np.cos(theta)
    return sample(eye.truth.rnfl_thickness_um, eye.volume.spacing_mm, y, x)


def pole_asymmetry(profile):
    """Largest |log(superior / inferior)| of 21-degree mean thicknesses mirrored about the horizontal,
    over angles 30 ... 150: 0 for a symmetric eye, 0.36 where one pole is 30 % thinner than the other."""
    smooth = np.convolve(np.r_[profile[-10:], profile, profile[:10]], np.ones(21) / 21, "valid")
    angles = np.arange(30, 151)
    return float(np.max(np.abs(np.log(smooth[angles] / smooth[360 - angles]))))


def disc_area_mm2(eye):
    s_y, _, s_x = eye.volume.spacing_mm
    return float(eye.truth.disc_mask.sum() * s_y * s_x)


def disc_ovality(eye):
    """Vertical / horizontal extent of the true disc (ratio of the mask's second moments' roots)."""
    y, x = en_face_grid_mm(eye.volume.shape[::2], eye.volume.spacing_mm)
    mask = eye.truth.disc_mask
    return float(np.std(y[mask]) / np.std(x[mask]))


def cup(eye):
    """(cup ratio, cup depth um) from the truth: the cup is where the ILM lies below the plane of
    Bruch's-membrane opening (the median BM depth on a 0.2 mm ring outside the disc)."""
    distance = np.hypot(*od_offsets_mm(eye, eye.truth.disc_center_mm))
    mask = eye.truth.disc_mask
    ring = ~mask & (distance < max(eye.truth.bmo_semi_axes_mm) + 0.2)
    bmo_plane_px = np.nanmedian(eye.truth.surfaces_px["BM"][ring])
    below_um = (eye.truth.surfaces_px["ILM"][mask] - bmo_plane_px) * eye.volume.spacing_mm[1] * 1000
    return float(np.sqrt(np.mean(below_um > 0))), float(below_um.max())


def truth_stats(eye):
    profile = cp_profile_um(eye)
    profile_quadrants = quadrant_masks(np.arange(360) + 0.5)
    fovea_distance = np.hypot(*od_offsets_mm(eye, eye.truth.fovea_center_mm))
    gcc = eye.truth.gcc_thickness_um
    cup_ratio, cup_depth_um = cup(eye)
    return {
        "rnfl_um": float(profile.mean()),
        **{name: float(profile[mask].mean()) for name, mask in profile_quadrants.items()},
        "asymmetry": pole_asymmetry(profile),
        "gcc_ring_um": float(np.nanmean(gcc[(fovea_distance > 0.75) & (fovea_distance < 2.5)])),
        "gcc_centre_um": float(np.nanmean(gcc[fovea_distance < 0.15])),
        "disc_area_mm2": disc_area_mm2(eye),
        "ovality": disc_ovality(eye),
        "cup_ratio": cup_ratio,
        "cup_depth_um": cup_depth_um,
    }


def hypertransmission(eye):
    """Mean voxel value 10-70 um below the true BM on a ring just outside the disc (0.05 to 0.3 disc
    radii), per OD quadrant, divided by the same measure 1.5 to 2.5 disc radii away. Missing RPE lets
    light through to the choroid, so peripapillary atrophy raises it."""
    truth, volume = eye.truth, eye.volume
    _, s_z, _ = volume.spacing_mm
    dy, dx = od_offsets_mm(eye, truth.disc_center_mm)
    rho = np.hypot(dy / truth.bmo_semi_axes_mm[0], dx / truth.bmo_semi_axes_mm[1])
    outside = np.isfinite(truth.surfaces_px["BM"])
    top = np.floor(np.where(outside, truth.surfaces_px["BM"], 0)).astype(int) + int(round(0.01 / s_z))
    depths = np.clip(
        top[:, None, :] + np.arange(int(round(0.06 / s_z)))[None, :, None], 0, volume.shape[1] - 1
    )
    below_bm = np.take_along_axis(volume.data, depths, axis=1).mean(axis=1)
    ring = outside & (rho > 1.05) & (rho < 1.3)
    reference = np.median(below_bm[outside & (rho > 1.5) & (rho < 2.5)])
    sectors = quadrant_masks(od_angle_deg(dy, dx))
    return {name: float(below_bm[ring & sector].mean() / reference) for name, sector in sectors.items()}


@pytest.fixture(scope="module")
def stats():
    """truth_stats of every class over SEEDS: {kind: {stat: array over seeds}}."""
    table = {}
    for kind in phantom.KINDS:
        rows = [truth_stats(make_eye(kind, seed, shape=TRUTH_SHAPE)) for seed in SEEDS]
        table[kind] = {key: np.array([row[key] for row in rows]) for key in rows[0]}
    return table


@pytest.fixture(scope="module")
def atrophy():
    """hypertransmission of normal, MY and SS disc cubes over SEEDS: {kind: {quadrant: array}}."""
    table = {}
    for kind in ("normal", "MY", "SS"):
        rows = [hypertransmission(make_eye(kind, s, protocol="disc", shape=ATROPHY_SHAPE)) for s in SEEDS]
        table[kind] = {q: np.array([row[q] for row in rows]) for q in "TSNI"}
    return table


def assert_same_truth(a, b):
    assert a.label == b.label
    assert a.surfaces_px.keys() == b.surfaces_px.keys()
    for name in a.surfaces_px:
        np.testing.assert_array_equal(a.surfaces_px[name], b.surfaces_px[name])
    for field in ("disc_center_mm", "fovea_center_mm", "bmo_semi_axes_mm"):
        assert getattr(a, field) == getattr(b, field)
    for field in ("disc_mask", "rnfl_thickness_um", "gcc_thickness_um"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


# ----------------------------------------------------------------------------------------------------
# determinism, geometry, laterality, truth


def test_same_seed_gives_identical_eye():
    a, b = make_eye("FI", 3, shape=SMALL), make_eye("FI", 3, shape=SMALL)
    np.testing.assert_array_equal(a.volume.data, b.volume.data)
    assert a.params == b.params
    assert_same_truth(a.truth, b.truth)


def test_different_seeds_and_kinds_differ():
    a = make_eye("FI", 3, shape=SMALL)
    for other in (make_eye("FI", 4, shape=SMALL), make_eye("GE", 3, shape=SMALL)):
        assert other.params != a.params
        assert not np.array_equal(other.volume.data, a.volume.data)
        assert not np.array_equal(other.truth.surfaces_px["ILM"], a.truth.surfaces_px["ILM"])


@pytest.mark.parametrize("protocol", list(PROTOCOL_EXTENT_MM))
def test_shape_spacing_and_protocol(protocol):
    eye = make_eye("normal", 1, protocol=protocol, shape=SMALL)
    volume, truth = eye.volume, eye.truth
    assert volume.shape == SMALL and volume.data.dtype == np.uint8
    assert (volume.protocol, volume.laterality) == (protocol, "OD")
    extent_y, extent_x = PROTOCOL_EXTENT_MM[protocol]
    # 96 samples over the 1.93 mm window would be 20.1 um apart, more than any device: the depth
    # sampling stays at the device limit and the window is shallower
    np.testing.assert_allclose(volume.extent_mm, (extent_y, SMALL[1] * SPACING_RANGE_MM[1][1], extent_x))
    assert DEPTH_WINDOW_MM / SMALL[1] > SPACING_RANGE_MM[1][1]
    for array in (*truth.surfaces_px.values(), truth.disc_mask, truth.rnfl_thickness_um):
        assert array.shape == (SMALL[0], SMALL[2])
    centre = np.array([extent_y, extent_x]) / 2
    if protocol == "disc":  # the cube is centred on the disc, up to the fixation offset
        assert np.hypot(*(np.array(truth.disc_center_mm) - centre)) < 0.6
    if protocol == "macula":
        assert np.hypot(*(np.array(truth.fovea_center_mm) - centre)) < 0.6
    if protocol == "wide":  # both landmarks inside, the disc right of the fovea in a right eye
        for y, x in (truth.disc_center_mm, truth.fovea_center_mm):
            assert 0 < y < extent_y and 0 < x < extent_x
        assert truth.disc_center_mm[1] - truth.fovea_center_mm[1] > 3.5


def test_explicit_spacing_and_bad_arguments():
    spacing = (0.2, 0.005, 0.1)
    eye = make_eye("GE", 0, shape=(16, 300, 40), spacing_mm=spacing)
    assert eye.volume.spacing_mm == spacing and eye.volume.shape == (16, 300, 40)
    assert make_eye("GE", 0, laterality="l", shape=SMALL).volume.laterality == "OS"
    with pytest.raises(ValueError, match="kind"):
        make_eye("POAG", 0, shape=SMALL)
    with pytest.raises(ValueError, match="protocol"):
        make_eye("GE", 0, protocol="radial", shape=SMALL)
    with pytest.raises(InvalidVolume, match="laterality"):
        make_eye("GE", 0, laterality="both", shape=SMALL)


def test_os_volume_is_the_mirror_of_the_od_retina():
    # motion and the retina's tilt in the scan window belong to the scan, not to the eye
    still = {"axial_motion_px": 0.0, "lateral_jitter_mm": 0.0, "tilt_mm_per_mm": (0.0, 0.0)}
    od = make_eye("MY", 2, "OD", shape=SMALL, **still)
    os_ = make_eye("MY", 2, "OS", shape=SMALL, **still)
    assert od.params == os_.params and os_.volume.laterality == "OS"
    for name in TRUTH_SURFACES:
        np.testing.assert_allclose(
            os_.truth.surfaces_px[name], od.truth.surfaces_px[name][:, ::-1], atol=1e-6
        )
    np.testing.assert_array_equal(os_.truth.disc_mask, od.truth.disc_mask[:, ::-1])
    extent_x = od.volume.extent_mm[2]
    for field in ("disc_center_mm", "fovea_center_mm"):
        (y_od, x_od), (y_os, x_os) = getattr(od.truth, field), getattr(os_.truth, field)
        assert y_os == pytest.approx(y_od) and x_os == pytest.approx(extent_x - x_od)
    # the voxels (own speckle and noise) show the mirrored retina
    od_data, os_data = (e.volume.data.astype(float).ravel() for e in (od, os_))
    mirrored = np.corrcoef(os_data, od.volume.data[:, :, ::-1].astype(float).ravel())[0, 1]
    assert mirrored > 0.9 and mirrored > np.corrcoef(os_data, od_data)[0, 1] + 0.05


@pytest.mark.parametrize("kind", phantom.KINDS)
def test_truth_is_consistent(kind):
    eye = make_eye(kind, 5, shape=SMALL)
    truth, axial_um = eye.truth, eye.volume.spacing_mm[1] * 1000
    s = truth.surfaces_px
    assert truth.label == kind
    np.testing.assert_array_equal(truth.rnfl_thickness_um, (s["RNFL_GCL"] - s["ILM"]) * axial_um)
    np.testing.assert_array_equal(truth.gcc_thickness_um, (s["IPL_INL"] - s["ILM"]) * axial_um)
    assert truth.disc_mask.any() and np.isfinite(s["ILM"]).all()
    for array in (truth.rnfl_thickness_um, truth.gcc_thickness_um, s["RNFL_GCL"], s["IPL_INL"], s["BM"]):
        np.testing.assert_array_equal(np.isnan(array), truth.disc_mask)
    out = ~truth.disc_mask
    assert (s["ILM"][out] <= s["RNFL_GCL"][out]).all() and (s["RNFL_GCL"][out] <= s["IPL_INL"][out]).all()
    assert (s["IPL_INL"][out] < s["BM"][out]).all()
    assert 0 < s["ILM"].min() and np.nanmax(s["BM"]) < eye.volume.shape[1]
    y, x = en_face_grid_mm(eye.volume.shape[::2], eye.volume.spacing_mm)
    centroid = y[truth.disc_mask].mean(), x[truth.disc_mask].mean()
    np.testing.assert_allclose(centroid, truth.disc_center_mm, atol=0.25)


# ----------------------------------------------------------------------------------------------------
# anatomy of normal eyes (reference values: ../shared/reference/method-paper.md section 6)


def test_normal_peripapillary_rnfl(stats):
    normal = stats["normal"]
    assert 80 <= normal["rnfl_um"].mean() <= 120
    assert ((normal["rnfl_um"] > 65) & (normal["rnfl_um"] < 135)).all()
    # the two arcuate humps are thicker than the nasal quadrant, the inferior one than the temporal
    assert (normal["S"] > normal["N"]).all() and (normal["I"] > normal["N"]).all()
    assert normal["I"].mean() > normal["T"].mean() + 5


def test_normal_humps_thicker_than_temporal(stats):
    normal = stats["normal"]
    assert (normal["S"] > normal["T"] + 10).all() and (normal["I"] > normal["T"] + 10).all()


def test_normal_macula_and_disc(stats):
    normal = stats["normal"]
    assert ((normal["gcc_ring_um"] > 80) & (normal["gcc_ring_um"] < 130)).all()
    assert (normal["gcc_centre_um"] < 0.2 * normal["gcc_ring_um"]).all()  # foveal pit
    assert ((normal["disc_area_mm2"] > 1.2) & (normal["disc_area_mm2"] < 3.5)).all()
    assert (normal["asymmetry"] < 0.35).all()


# ----------------------------------------------------------------------------------------------------
# phenotypes (method-paper.md section 5b and 5e), as statements over SEEDS


def test_fi_one_pole_much_thinner(stats):
    fi = np.median(stats["FI"]["asymmetry"])
    assert fi > 0.3  # the notched pole is about 30 % thinner than the other, in the median eye
    assert fi > 1.8 * np.median(stats["normal"]["asymmetry"])
    assert fi > np.median(stats["GE"]["asymmetry"]) and fi > np.median(stats["SS"]["asymmetry"])


def test_ge_large_cup_and_diffuse_thinning(stats):
    ge, normal = stats["GE"], stats["normal"]
    assert np.median(ge["cup_ratio"]) > np.median(normal["cup_ratio"]) + 0.15
    assert np.median(ge["cup_depth_um"]) > np.median(normal["cup_depth_um"]) + 100
    for quadrant in "TSNI":  # thinner all round, not at one pole
        assert np.median(ge[quadrant]) < np.median(normal[quadrant])
    assert np.median(ge["asymmetry"]) < np.median(stats["FI"]["asymmetry"])
    assert np.median(ge["gcc_ring_um"]) < np.median(normal["gcc_ring_um"])


def test_my_oval_disc_and_temporal_crescent(stats, atrophy):
    assert np.median(stats["MY"]["ovality"]) > 1.2 > np.median(stats["normal"]["ovality"])
    crescent = atrophy["MY"]["T"] / atrophy["MY"]["N"]  # temporal vs nasal hypertransmission
    assert np.median(crescent) > 1.2 and np.mean(crescent > 1.1) >= 0.75  # 90 % of MY draws have one
    assert np.median(atrophy["normal"]["T"] / atrophy["normal"]["N"]) < 1.05


def test_ss_shallow_cup_and_atrophy_around(stats, atrophy):
    ss = stats["SS"]
    assert np.median(ss["cup_depth_um"]) < np.median(stats["normal"]["cup_depth_um"]) - 50
    assert np.median(ss["cup_depth_um"]) < np.median(stats["GE"]["cup_depth_um"]) - 200
    for quadrant in "TSI":
        assert np.median(atrophy["SS"][quadrant]) > np.median(atrophy["normal"][quadrant]) + 0.1


def test_ss_atrophy_reaches_the_nasal_side(atrophy):
    assert np.median(atrophy["SS"]["N"]) > np.median(atrophy["normal"]["N"]) + 0.1


# ----------------------------------------------------------------------------------------------------
# cohort


def test_cohort_size_mix_and_pairs():
    specs = cohort(grader_noise=0.0)
    assert len(specs) == PAPER_N_NORMAL + PAPER_N_GLAUCOMA
    kinds = Counter(s.kind for s in specs)
    assert kinds["normal"] == PAPER_N_NORMAL
    for kind, share in TYPE_MIX.items():
        assert abs(kinds[kind] - share * PAPER_N_GLAUCOMA) <= 1
    assert all(s.label == s.kind for s in specs)
    assert len({s.eye_id for s in specs}) == len(specs)
    patients = {}
    for s in specs:
        patients.setdefault(s.patient_id, []).append(s)
    for eyes in patients.values():  # one disc type and anatomy seed per patient, right eye first
        assert len({(e.kind, e.seed) for e in eyes}) == 1
        assert [e.laterality for e in eyes] == ["OD", "OS"][: len(eyes)]
    singles = [eyes[0].kind for eyes in patients.values() if len(eyes) == 1]
    assert sorted(singles) == sorted(kind for kind, n in kinds.items() if n % 2)  # odd counts only
    assert all(s.severity is None for s in specs if s.kind == "normal")
    assert all(0.15 <= s.severity <= 1.0 for s in specs if s.kind != "normal")


def test_cohort_grader_noise_and_determinism():
    specs = cohort(grader_noise=0.2, seed=7)
    glaucoma = [s for s in specs if s.kind != "normal"]
    swapped = np.mean([s.label != s.kind for s in glaucoma])
    assert 0.15 < swapped < 0.25
    assert all(s.label in phantom.GLAUCOMA_KINDS for s in glaucoma)
    assert all(s.label == "normal" for s in specs if s.kind == "normal")
    assert cohort(grader_noise=0.2, seed=7) == specs
    assert cohort(grader_noise=0.2, seed=8) != specs
    small = cohort(4, 6, seed=1, shape=SMALL)
    assert len(small) == 10 and Counter(s.kind for s in small)["normal"] == 4
    eye = small[-1].make()
    assert eye.volume.shape == SMALL and eye.volume.laterality == small[-1].laterality
    with pytest.raises(ValueError):
        cohort(0, 0)
    with pytest.raises(ValueError):
        cohort(grader_noise=1.5)


# ----------------------------------------------------------------------------------------------------
# export and files


@pytest.mark.parametrize("suffix", [".dcm", ".npz"])
def test_save_eye_round_trip(tmp_path, suffix):
    eye = make_eye("SS", 4, "OS", protocol="disc", shape=SMALL)
    volume_path, truth_file = save_eye(eye, tmp_path / f"eye{suffix}")
    assert truth_file == tmp_path / "eye.truth.npz" == truth_path(volume_path)
    read = sdk.read_volume(volume_path)
    np.testing.assert_array_equal(read.data, eye.volume.data)
    np.testing.assert_allclose(read.spacing_mm, eye.volume.spacing_mm, rtol=0, atol=1e-9)
    assert (read.laterality, read.protocol) == ("OS", "disc")
    assert_same_truth(load_truth(volume_path), eye.truth)
    assert_same_truth(load_truth(truth_file), eye.truth)
    with np.load(truth_file, allow_pickle=False) as archive:  # plain arrays only
        assert archive["surfaces_px"].shape == (4, SMALL[0], SMALL[2])


def test_save_eye_refuses_to_overwrite(tmp_path):
    eye = make_eye("normal", 0, shape=SMALL)
    path = tmp_path / "eye.npz"
    save_eye(eye, path)
    truth_file = truth_path(path)
    before = truth_file.read_bytes()
    with pytest.raises(FileError, match="overwrite"):
        save_eye(make_eye("GE", 0, shape=SMALL), path)
    assert truth_file.read_bytes() == before
    save_eye(make_eye("GE", 0, shape=SMALL), path, overwrite=True)
    assert load_truth(path).label == "GE"
    for wrong in ("eye.png", "eye.truth.npz"):
        with pytest.raises(UnsupportedFormat):
            save_eye(eye, tmp_path / wrong)
    with pytest.raises(FileError):
        load_truth(tmp_path / "missing.dcm")


def test_export_cli(tmp_path):
    out = tmp_path / "fi.dcm"
    command = [
        sys.executable,
        "-m",
        "phantom.export",
        "FI",
        "3",
        str(out),
        "--laterality",
        "OS",
        "--shape",
        "16",
        "64",
        "48",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.split() == [str(out), str(truth_path(out))]
    volume = sdk.read_volume(out)
    np.testing.assert_array_equal(volume.data, make_eye("FI", 3, "OS", shape=(16, 64, 48)).volume.data)
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 1 and "overwrite" in again.stderr


def test_significance_classes():
    from phantom.show import significance

    z = np.array([-3.0, -2.326, -2.0, -1.645, 0.0, np.nan])
    np.testing.assert_array_equal(significance(z), [0, 1, 1, 2, 2, np.nan])


def test_show_cli_writes_png_figures(tmp_path):
    pytest.importorskip("matplotlib")
    image_module = pytest.importorskip("PIL.Image")  # pillow comes with matplotlib

    out = tmp_path / "figures"
    command = [
        sys.executable,
        "-m",
        "phantom.show",
        "--out",
        str(out),
        "--seed",
        "2",
        "--shape",
        "48",
        "496",
        "192",
        "--normals",
        "3",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=True)
    written = [line for line in result.stdout.splitlines() if line]
    assert sorted(written) == sorted(str(out / f"{kind}_OD_seed2.png") for kind in phantom.KINDS)
    for path in written:
        with image_module.open(path) as image:
            image.verify()
            assert image.format == "PNG" and image.size[0] > 1000 and image.size[1] > 500
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    assert again.returncode == 1 and "--overwrite" in again.stderr
