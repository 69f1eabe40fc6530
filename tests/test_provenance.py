"""OCTVolume.provenance from the file, through Classifier.classify into the Diagnosis and the report."""

import numpy as np
import pytest

import phantom
import sdk
from sdk.io import read_volume, write_dicom, write_npz
from tests.bundle_helpers import FIXTURE

SHAPE = (32, 248, 128)  # a small wide-field phantom, as the fixture bundle's own golden eyes


@pytest.fixture(scope="module")
def classifier():
    with sdk.Classifier.load(FIXTURE, backend="onnxruntime") as clf:
        yield clf


def test_provenance_of_a_volume_given_as_an_array_is_the_caller():
    volume = sdk.OCTVolume(np.zeros((2, 32, 8), np.uint8), (0.1, 0.004, 0.02), "OS")
    assert volume.provenance == {"spacing_mm": "caller", "laterality": "caller", "protocol": "caller"}
    volume.provenance["laterality"] = "changed"  # a copy: the volume keeps its own
    assert volume.provenance["laterality"] == "caller"
    with pytest.raises(sdk.InvalidVolume, match="provenance"):
        sdk.OCTVolume(volume.data, volume.spacing_mm, "OS", provenance={"spacing_mm": 3})


def test_read_volume_records_where_each_value_came_from(tmp_path):
    eye = phantom.make_eye("GE", seed=1, shape=SHAPE)
    path = write_dicom(eye.volume, tmp_path / "eye.dcm")
    read = read_volume(path, laterality="OD")
    assert read.provenance == {
        "spacing_mm": "PixelSpacing (shared functional groups) and SpacingBetweenSlices "
        "(shared functional groups)",
        "laterality": "caller",
        "protocol": "ProtocolName",
        "file": str(path),
        "format": "dicom",
        "compression": "none (Explicit VR Little Endian)",
    }


def test_diagnosis_and_report_show_the_provenance(classifier, tmp_path):
    from matplotlib.figure import Figure

    from sdk.report import _text_panel

    path = write_npz(phantom.make_eye("FI", seed=2, shape=SHAPE).volume, tmp_path / "eye.npz")
    volume = read_volume(path)
    dx = classifier.classify(volume)
    assert dx.provenance == {"scan": volume.provenance}
    assert dx.to_dict()["provenance"]["scan"]["spacing_mm"] == "'spacing_mm' array"
    line = (
        "scan eye.npz: spacing_mm from 'spacing_mm' array, laterality from 'laterality' array, "
        "protocol from 'protocol' array; compression none"
    )
    assert dx.provenance_text == line
    ax = Figure().add_subplot()
    _text_panel(ax, dx)
    assert f"Source: {line}" in [text.get_text() for text in ax.texts]


def test_exam_diagnosis_keeps_both_cubes_provenance(classifier):
    disc = phantom.make_eye("MY", seed=3, protocol="disc", shape=(32, 248, 96)).volume
    macula = phantom.make_eye("MY", seed=3, protocol="macula", shape=(32, 248, 96)).volume
    dx = classifier.classify_exam(disc=disc, macula=macula)
    assert dx.provenance == {"disc": disc.provenance, "macula": macula.provenance}
    assert dx.provenance_text.startswith("disc (array): spacing_mm from caller")
