"""sdk.OCTVolume: validation of voxels and metadata, with a specific error for each bad input."""

import numpy as np
import pytest

import sdk
from sdk.errors import InvalidVolume

SPACING = (0.07, 0.0039, 0.0234)


def test_valid_volume_keeps_a_read_only_view_without_copying():
    data = np.zeros((4, 64, 16), np.uint16)
    vol = sdk.OCTVolume(data, SPACING, "od", "wide")
    assert vol.laterality == "OD" and vol.protocol == "wide" and vol.shape == (4, 64, 16)
    assert np.shares_memory(vol.data, data)
    assert not vol.data.flags.writeable
    assert vol.extent_mm == pytest.approx((0.28, 64 * 0.0039, 16 * 0.0234))


@pytest.mark.parametrize("alias, expected", [("R", "OD"), ("left", "OS"), (" os ", "OS")])
def test_laterality_aliases(alias, expected):
    assert sdk.OCTVolume(np.zeros((2, 32, 8), np.uint8), SPACING, alias).laterality == expected


@pytest.mark.parametrize(
    "data, spacing, laterality, protocol, message",
    [
        (np.zeros((32, 8), np.uint8), SPACING, "OD", "wide", "must be 3-D"),
        (np.zeros((0, 32, 8), np.uint8), SPACING, "OD", "wide", "empty"),
        (np.zeros((2, 32, 8), np.int32), SPACING, "OD", "wide", "dtype int32 is not supported"),
        (np.zeros((2, 32, 8), np.complex64), SPACING, "OD", "wide", "dtype complex64"),
        (np.full((2, 32, 8), np.nan, np.float32), SPACING, "OD", "wide", "NaN or infinite"),
        (np.full((2, 32, 8), np.inf, np.float64), SPACING, "OD", "wide", "NaN or infinite"),
        (np.zeros((2, 4, 8), np.uint8), SPACING, "OD", "wide", "depth"),
        (np.zeros((2, 32, 8), np.uint8), None, "OD", "wide", "spacing_mm is missing"),
        (np.zeros((2, 32, 8), np.uint8), (0.07, 0.0039), "OD", "wide", "needs 3 values"),
        (np.zeros((2, 32, 8), np.uint8), (0.07, 0.0, 0.02), "OD", "wide", "axial spacing is 0.0"),
        (np.zeros((2, 32, 8), np.uint8), (0.07, -1, 0.02), "OD", "wide", "positive"),
        (np.zeros((2, 32, 8), np.uint8), (70, 3.9, 23), "OD", "wide", "millimetres"),
        (np.zeros((2, 32, 8), np.uint8), (0.07, 0.0039, 1000.0), "OD", "wide", "ascan spacing 1000 mm"),
        (np.zeros((2, 32, 8), np.uint8), (0.07, 0.0039, 0.6), "OD", "wide", "ascan spacing 0.6 mm is out"),
        (np.zeros((2, 32, 8), np.uint8), (1.5, 0.0039, 0.02), "OD", "wide", "bscan spacing 1.5 mm"),
        (np.zeros((2, 32, 8), np.uint8), (0.07, 0.03, 0.02), "OD", "wide", "axial spacing 0.03 mm"),
        (np.zeros((2, 32, 8), np.uint8), (0.07, 1e-5, 0.02), "OD", "wide", "axial spacing 1e-05 mm"),
        (np.zeros((2, 32, 8), np.uint8), (1e-4, 0.0039, 0.02), "OD", "wide", "bscan spacing 0.0001 mm"),
        (np.zeros((2, 32, 8), np.uint8), ("a", 1, 2), "OD", "wide", "not three numbers"),
        (np.zeros((2, 32, 8), np.uint8), SPACING, "right eye", "wide", "laterality 'right eye'"),
        (np.zeros((2, 32, 8), np.uint8), SPACING, None, "wide", "laterality None"),
        (np.zeros((2, 32, 8), np.uint8), SPACING, "OD", "angio", "protocol 'angio'"),
    ],
)
def test_bad_input_names_the_problem(data, spacing, laterality, protocol, message):
    with pytest.raises(InvalidVolume, match=message):
        sdk.OCTVolume(data, spacing, laterality, protocol)


def test_errors_share_one_base_class():
    assert issubclass(InvalidVolume, sdk.OCTError) and issubclass(sdk.BundleError, sdk.OCTError)


def test_sdk_imports_without_torch():
    import subprocess
    import sys

    code = "import sys, sdk, sdk.maps, sdk.retina, sdk.stacking, sdk.io; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
