"""Merged stage models: a map's two networks in one ONNX graph, their identical leading layers once."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from converters.__main__ import main as converters_main
from converters.fp16 import convert_to_fp16
from converters.onnx_export import export_onnx
from converters.shared_trunk import merge_stages
from sdk.backends import make_backend
from sdk.bundle import Bundle
from sdk.nets.vgg16 import VGG16, freeze_blocks, transfer_from

CONVS_PER_BLOCK = (2, 2, 3, 3, 3)
PX = 64


def stage_pair(frozen_blocks: int, seed: int = 0):
    """A stage-1 network and its stage-2 transfer whose blocks after ``frozen_blocks`` were changed."""
    torch.manual_seed(seed)
    stage1 = VGG16(2, width=0.125).eval()
    stage2 = transfer_from(stage1, 4).eval()
    kept = set(freeze_blocks(stage2, frozen_blocks))
    with torch.no_grad():
        for name, p in stage2.features.named_parameters():
            if f"features.{name}" not in kept:
                p.add_(0.01 * p.std() * torch.randn_like(p))
    return stage1, stage2


def run(path, x, outputs=None):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(outputs, {"input": x})


@pytest.mark.parametrize("frozen_blocks", [0, 2, 5])
def test_merged_model_shares_exactly_the_frozen_blocks(frozen_blocks, tmp_path):
    stage1, stage2 = stage_pair(frozen_blocks)
    export_onnx(stage1, tmp_path / "s1.onnx", input_hw=(PX, PX))
    export_onnx(stage2, tmp_path / "s2.onnx", input_hw=(PX, PX))
    merged, shared = merge_stages(onnx.load(tmp_path / "s1.onnx"), onnx.load(tmp_path / "s2.onnx"))
    assert shared == sum(CONVS_PER_BLOCK[:frozen_blocks])
    onnx.save(merged, tmp_path / "merged.onnx")
    x = np.random.default_rng(1).standard_normal((1, 3, PX, PX)).astype(np.float32)
    got1, got2 = run(tmp_path / "merged.onnx", x, ["stage1", "stage2"])
    np.testing.assert_allclose(got1, run(tmp_path / "s1.onnx", x)[0], atol=1e-6)
    np.testing.assert_allclose(got2, run(tmp_path / "s2.onnx", x)[0], atol=1e-6)
    n_convs = sum(node.op_type == "Conv" for node in merged.graph.node)
    assert n_convs == 2 * 13 - shared  # the shared convolutions are in the graph once


def test_fp16_models_merge_alike(tmp_path):
    stage1, stage2 = stage_pair(3)
    for name, net in (("s1", stage1), ("s2", stage2)):
        export_onnx(net, tmp_path / f"{name}.onnx", input_hw=(PX, PX))
        convert_to_fp16(tmp_path / f"{name}.onnx", tmp_path / f"{name}.fp16.onnx")
    merged, shared = merge_stages(onnx.load(tmp_path / "s1.fp16.onnx"), onnx.load(tmp_path / "s2.fp16.onnx"))
    assert shared == 7
    onnx.save(merged, tmp_path / "merged.fp16.onnx")
    x = np.random.default_rng(2).standard_normal((1, 3, PX, PX)).astype(np.float32)
    got2 = run(tmp_path / "merged.fp16.onnx", x, ["stage2"])[0]
    np.testing.assert_allclose(got2, run(tmp_path / "s2.fp16.onnx", x)[0], atol=1e-3)


def test_networks_with_nothing_in_common_share_nothing(tmp_path):
    export_onnx(VGG16(2, width=0.125), tmp_path / "a.onnx", input_hw=(PX, PX))
    export_onnx(VGG16(2, width=0.25), tmp_path / "b.onnx", input_hw=(PX, PX))
    merged, shared = merge_stages(onnx.load(tmp_path / "a.onnx"), onnx.load(tmp_path / "b.onnx"))
    assert shared == 0  # same operators, different shapes: nothing is shared, both are kept whole


def test_bundle_with_a_shared_trunk_runs_it_once_and_agrees_with_the_reference(tmp_path):
    checkpoint, bundle_dir = tmp_path / "checkpoint", tmp_path / "bundle"
    args = [
        "--width",
        "0.0625",
        "--input-px",
        str(PX),
        "--shared-trunk-blocks",
        "3",
        "--phantom-shape",
        "32",
        "248",
        "128",
    ]
    assert converters_main(["random-checkpoint", str(checkpoint), *args]) == 0
    assert (
        converters_main(["bundle", str(checkpoint), str(bundle_dir), "--phantom-shape", "32", "248", "128"])
        == 0
    )
    bundle = Bundle.load(bundle_dir)
    assert [spec.shared_conv_layers for spec in bundle.merged] == [7, 7, 7, 7]
    assert bundle.manifest["network"]["shared_trunk_blocks"] == 3
    x = bundle.golden()["inputs"][0]
    with (
        make_backend(bundle, "onnxruntime", "fp32") as fast,
        make_backend(bundle, "torch", "fp32") as reference,
    ):
        for got, expected in zip(fast.run(x), reference.run(x), strict=True):
            np.testing.assert_allclose(got, expected, atol=1e-4)
