"""Today's code against the frozen fixture bundle (tests/fixtures/bundle, made by
tests/fixtures/make_bundle.py): preprocessing, normative deviation, networks and stacker must give
what was frozen, and the class and map order of the SDK, the manifest and the C header must agree.
A change to a normalisation constant, the class order or the map order fails here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import sdk
from converters.verify import check_golden_maps, verify
from sdk.bundle import Bundle
from sdk.labels import CLASSES
from sdk.maps import MAP_NAMES, to_network_input
from tests.bundle_helpers import FIXTURE, TEST_PUBLIC_KEY, manifest_of

REPO = Path(__file__).resolve().parents[1]
HEADER = REPO / "bindings" / "include" / "octclassify.h"
FROZEN_LABEL = "normal"  # what the fixture's random networks answer for its golden eye (MY phantom, OS)


@pytest.fixture(scope="module")
def bundle() -> Bundle:
    return Bundle.load(FIXTURE, trusted_keys=TEST_PUBLIC_KEY)


def test_the_fixture_is_small_signed_and_for_the_cpu():
    size = sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file())
    assert size < 1.5e6
    manifest = manifest_of(FIXTURE)
    assert manifest["target"] == "cpu" and manifest["preprocessing"]["input_hw"] == [32, 32]
    assert Bundle.load(FIXTURE, trusted_keys=TEST_PUBLIC_KEY).signer == "980b73b4c2ab7ba9"


def test_classes_and_maps_travel_in_the_manifest_in_the_sdks_order():
    manifest = manifest_of(FIXTURE)
    assert manifest["classes"] == list(CLASSES) == ["normal", "FI", "GE", "MY", "SS"]
    assert manifest["map_names"] == list(MAP_NAMES)
    assert manifest["stacker"]["features"] == list(sdk.labels.stacking_features())


def test_the_c_header_enum_is_the_sdks_class_order():
    text = HEADER.read_text()
    body = re.search(r"enum[^{;]*\{([^}]*OCTC_CLASS_NONE[^}]*)\}", text).group(1)  # the class enum
    values = {name: int(value) for name, value in re.findall(r"OCTC_CLASS_(\w+)\s*=\s*(-?\d+)", body)}
    count = re.search(r"OCTC_N_CLASSES\s*=\s*(\d+)", body)
    assert count is None or int(count.group(1)) == len(CLASSES)
    assert values.pop("NONE") == -1
    assert sorted(values, key=values.get) == [c.upper() for c in CLASSES]
    assert sorted(values.values()) == list(range(len(CLASSES)))


def test_preprocessing_reproduces_the_frozen_network_input(bundle):
    golden = bundle.golden()
    assert golden["maps"].shape == (1, len(MAP_NAMES), 224, 224)
    recomputed = np.stack([to_network_input(eye, bundle.input_hw) for eye in golden["maps"]])
    np.testing.assert_array_equal(recomputed, golden["inputs"])


def test_normative_deviation_reproduces_the_frozen_maps(bundle):
    checks = check_golden_maps(bundle, bundle.golden())
    assert [(c.name, c.passed, c.nan_mismatches) for c in checks] == [
        ("rnfl_deviation", True, 0),
        ("gcc_deviation", True, 0),
        ("network input", True, 0),
    ]
    assert max(c.max_abs for c in checks) == 0.0


def test_networks_and_stacker_reproduce_the_frozen_outputs(bundle):
    golden = bundle.golden()
    with sdk.backends.make_backend(bundle, "onnxruntime") as backend:
        stage1, stage2 = backend.run(golden["inputs"][0])
    np.testing.assert_allclose(stage1, golden["stage1"][0], atol=2e-6)
    np.testing.assert_allclose(stage2, golden["stage2"][0], atol=2e-6)
    features = bundle.stacking_features(stage1[None], stage2[None])
    np.testing.assert_allclose(features, golden["features"], atol=2e-6)
    probabilities = bundle.final_probabilities(features)
    np.testing.assert_allclose(probabilities, golden["probabilities"], atol=1e-5)
    assert CLASSES[int(np.argmax(golden["probabilities"][0]))] == FROZEN_LABEL


def test_verify_passes_on_the_fixture(bundle):
    result = verify(bundle)
    assert result.passed and result.signer == "980b73b4c2ab7ba9"
    assert max(row.max_abs for row in result.rows) < 1e-5
