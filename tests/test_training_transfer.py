"""The frozen-trunk path of the cpu-transfer preset: cached outputs of the frozen layers give the whole
network's answer, training leaves the frozen layers at their pretrained weights, stage 2 starts from
stage 1's trained layers, and the compute-matched flat network takes stage 1 + stage 2's steps."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest
import torch

from sdk.errors import CohortError
from sdk.labels import CLASSES
from sdk.maps import MAP_NAMES, MAP_SIZE_PX, Normative
from sdk.nets.vgg16 import VGG16
from training.hierarchy import fit_stage_models, start_network
from training.inputs import FrozenInputs, MapInputs, make_inputs
from training.presets import PRESETS
from training.trunk_cache import frozen_outputs, trainable

SETTINGS = PRESETS["cpu-transfer"].network


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "vgg16-random.pth"
    torch.save({f"features.{k}": v for k, v in VGG16(2).features.state_dict().items()}, path)
    return path


def synthetic_maps(n, rng):
    """Thickness maps (n, 2, 224, 224) um whose level depends on the class, a disc hole in the middle."""
    labels = np.arange(n) % len(CLASSES)
    yy, xx = np.mgrid[:MAP_SIZE_PX, :MAP_SIZE_PX] - MAP_SIZE_PX / 2
    maps = 100.0 - 8 * labels[:, None, None, None] + rng.normal(0, 4, (n, 2, MAP_SIZE_PX, MAP_SIZE_PX))
    maps[:, 0, (yy / 25) ** 2 + (xx / 22) ** 2 < 1] = np.nan
    return maps.astype(np.float32), labels


def test_cpu_transfer_224_is_cpu_transfer_at_the_paper_s_input_size():
    wide = PRESETS["cpu-transfer-224"]
    assert wide.network.input_hw == (MAP_SIZE_PX, MAP_SIZE_PX) == (224, 224)
    assert dataclasses.replace(wide, name="cpu-transfer", network=SETTINGS) == PRESETS["cpu-transfer"]


@pytest.mark.parametrize("preset, side_px", [("cpu-transfer", 64), ("cpu-transfer-224", 224)])
def test_cached_frozen_outputs_give_the_whole_network_s_answer(weights, preset, side_px):
    settings = dataclasses.replace(PRESETS[preset].network, imagenet=weights)
    assert settings.input_hw == (side_px, side_px)
    model = start_network(5, settings, start_seed=3)
    x = np.random.default_rng(0).normal(0, 1, (2, 3, side_px, side_px)).astype(np.float32)
    z = frozen_outputs(model, settings.frozen_layers, x)
    assert z.shape == (2, 512, side_px // 16, side_px // 16)  # four 2 x 2 poolings before conv5_1
    with torch.inference_mode():
        whole = model.eval()(torch.from_numpy(x))
        split = trainable(model, settings.frozen_layers).eval()(torch.from_numpy(z))
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-5)


def test_frozen_outputs_run_on_every_core_and_restore_the_thread_count():
    """train.py keeps one torch thread in the main process for the training processes' sake; the
    frozen layers run before those start, on every core."""
    model = VGG16(2, width=1 / 16)
    seen = []
    model.features[0].register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        frozen_outputs(model, 4, np.zeros((2, 3, 32, 32), np.float32))
        assert seen == [os.cpu_count()] and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_frozen_training_keeps_the_pretrained_layers_and_transfers_the_rest(weights):
    rng = np.random.default_rng(1)
    thickness, labels = synthetic_maps(30, rng)
    normal = thickness[labels == 0]
    normative = Normative.fit(normal[:, 0], normal[:, 1])
    settings = dataclasses.replace(
        SETTINGS, imagenet=weights, fit=dataclasses.replace(SETTINGS.fit, max_epochs=2, patience=1)
    )
    inputs = make_inputs(thickness, labels, settings, normative)
    assert isinstance(inputs, FrozenInputs) and inputs.outputs.shape == (30, 4, 512, 4, 4)
    assert isinstance(make_inputs(thickness, labels, PRESETS["smoke"].network, None), MapInputs)
    with pytest.raises(CohortError, match="normative database fitted on separate normal eyes"):
        make_inputs(thickness, labels, settings, None)
    patients = np.array([f"p{i}" for i in range(30)])
    eyes = np.arange(30)
    models = fit_stage_models(inputs, labels, patients, eyes, ("transfer", "flat_matched"), settings, seed=0)
    pretrained = torch.load(weights, weights_only=True)
    for (name, map_name), model in models.networks.items():
        state = model.state_dict()
        for key in ("features.0.weight", "features.26.weight"):  # frozen
            assert torch.equal(state[key], pretrained[key]), (name, map_name, key)
        assert not torch.equal(state["features.28.weight"], pretrained["features.28.weight"]), name
    for map_name in MAP_NAMES:
        log = models.logs
        steps = log[("stage1", map_name)].steps + log[("stage2_transfer", map_name)].steps
        assert log[("flat_matched", map_name)].steps == steps
    features = models.features(eyes[:6], ("transfer", "flat_matched"))
    assert features["transfer"].shape == (6, 20) and np.isfinite(features["flat_matched"]).all()


@pytest.mark.slow
def test_the_paper_preset_trains_every_layer_at_224_px_from_the_pretrained_weights(weights):
    """What scripts/paper_gpu.sh runs on a GPU, on the CPU at its smallest: the paper preset's own
    network settings (full width, 224 x 224, nothing frozen) for one epoch on 10 eyes."""
    paper = PRESETS["paper"].network
    assert (paper.width, paper.input_hw, paper.frozen_layers) == (1.0, (224, 224), 0)
    rng = np.random.default_rng(2)
    thickness, labels = synthetic_maps(10, rng)
    normal = thickness[labels == 0]
    normative = Normative.fit(normal[:, 0], normal[:, 1])
    settings = dataclasses.replace(
        paper, imagenet=weights, fit=dataclasses.replace(paper.fit, max_epochs=1, patience=1, batch_size=4)
    )
    inputs = make_inputs(thickness, labels, settings, normative)
    assert isinstance(inputs, MapInputs)
    patients = np.array([f"p{i}" for i in range(10)])
    models = fit_stage_models(inputs, labels, patients, np.arange(10), ("transfer",), settings, seed=0)
    pretrained = torch.load(weights, weights_only=True)
    for (name, map_name), model in models.networks.items():
        state = model.state_dict()
        for key in ("features.0.weight", "features.14.weight", "features.28.weight"):
            assert not torch.equal(state[key], pretrained[key]), (name, map_name, key)  # trained
    assert len(models.networks) == 2 * len(MAP_NAMES)
