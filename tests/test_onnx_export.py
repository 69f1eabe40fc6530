"""converters.onnx_export and converters.fp16: ONNX export checked against PyTorch, FP16 against FP32.

The networks are VGG16 at width 0.125 on 64 x 64 inputs (fast on CPU), trained for 60 steps on a
toy task so that their weights and outputs are those of a working classifier, not of a fresh init.
Inputs are smooth random fields like thickness maps, normalised as ImageNet-started networks expect.

ONNX Runtime's CPU provider has no float16 kernels for these ops: it runs the FP16 file in float32
on the float16-rounded weights. So these tests check the FP16 graph and the effect of FP16 weights;
FP16 arithmetic is exercised where TensorRT or a GPU provider runs the file.
"""

import hashlib

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from scipy import ndimage

from converters.fp16 import convert_to_fp16
from converters.onnx_export import check_against_torch, export_onnx, onnx_probabilities
from sdk.errors import FileError
from sdk.nets.vgg16 import VGG16

HW = 64
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]


def toy_maps(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n smooth 64 x 64 "thickness maps" with a thin spot in one quadrant; the quadrant is the label.

    Returns inputs (n, 3, 64, 64) float32 (the map on 3 channels, ImageNet-normalised) and labels (n,).
    """
    field = ndimage.gaussian_filter(rng.standard_normal((n, HW, HW)), sigma=(0, 4, 4))
    low, high = field.min(axis=(1, 2), keepdims=True), field.max(axis=(1, 2), keepdims=True)
    field = 0.3 + 0.4 * (field - low) / (high - low)
    labels = rng.integers(0, 4, n)
    yy, xx = np.mgrid[0:HW, 0:HW] / HW
    cy, cx = (0.25 + 0.5 * (labels // 2))[:, None, None], (0.25 + 0.5 * (labels % 2))[:, None, None]
    field -= 0.3 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 0.1**2))
    return ((field[:, None] - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32), labels


@pytest.fixture(scope="module")
def trained_model() -> VGG16:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = VGG16(4, width=0.125)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # ~3 s; with 2 threads it is as fast alone but 10x slower beside other jobs
    try:
        for _ in range(60):
            x, y = toy_maps(16, rng)
            loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(x)), torch.from_numpy(y))
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


@pytest.fixture(scope="module")
def test_maps() -> tuple[np.ndarray, np.ndarray]:
    return toy_maps(200, np.random.default_rng(1))


@pytest.fixture(scope="module")
def onnx_files(trained_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    fp32 = export_onnx(trained_model, folder / "fp32.onnx", input_hw=(HW, HW))
    fp16 = convert_to_fp16(folder / "fp32.onnx", folder / "fp16.onnx")
    return folder / "fp32.onnx", fp32, folder / "fp16.onnx", fp16


def test_export_describes_a_static_float32_graph_ending_in_softmax(onnx_files):
    path, description, _, _ = onnx_files
    assert description == {
        "input_name": "input",
        "input_shape": [1, 3, HW, HW],
        "output_name": "probabilities",
        "output_shape": [1, 4],
        "opset": 17,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    model = onnx.load(path)
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.node[-1].op_type == "Softmax"
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT
        assert all(d.HasField("dim_value") for d in value.type.tensor_type.shape.dim)
    assert {t.data_type for t in model.graph.initializer} == {TensorProto.FLOAT}


def test_fp32_onnx_matches_torch(trained_model, onnx_files, test_maps):
    x, _ = test_maps
    assert check_against_torch(trained_model, onnx_files[0], x[:16]) <= 1e-4


def test_export_of_a_batch_leaves_the_model_as_it_was(tmp_path, test_maps):
    torch.manual_seed(1)
    model = VGG16(2, width=0.125)  # default init, training mode
    before = {k: v.clone() for k, v in model.state_dict().items()}
    description = export_onnx(model, tmp_path / "batch4.onnx", input_hw=(HW, HW), batch=4)
    assert description["input_shape"] == [4, 3, HW, HW] and description["output_shape"] == [4, 2]
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert check_against_torch(model, tmp_path / "batch4.onnx", test_maps[0][:8]) <= 1e-4
    with pytest.raises(ValueError, match="multiple of the model's batch size 4"):
        onnx_probabilities(tmp_path / "batch4.onnx", test_maps[0][:6])


def test_check_against_torch_sees_a_different_model(onnx_files, test_maps):
    torch.manual_seed(2)
    assert check_against_torch(VGG16(4, width=0.125), onnx_files[0], test_maps[0][:16]) > 0.1


def test_fp16_agrees_with_fp32_on_smooth_maps(onnx_files, test_maps):
    x, labels = test_maps
    p32 = onnx_probabilities(onnx_files[0], x)
    p16 = onnx_probabilities(onnx_files[2], x)
    assert p16.dtype == np.float32 and p16.shape == (200, 4)
    assert np.mean(p32.argmax(1) == labels) >= 0.9  # a working classifier, not random weights
    assert np.mean(p16.argmax(1) == p32.argmax(1)) >= 0.99
    assert np.max(np.abs(p16 - p32)) <= 1e-2


def test_fp16_file_holds_float16_weights_float32_io_and_softmax(onnx_files):
    fp32_path, fp32, fp16_path, fp16 = onnx_files
    assert {k: v for k, v in fp16.items() if k != "sha256"} == {
        k: v for k, v in fp32.items() if k != "sha256"
    }
    model = onnx.load(fp16_path)
    assert {t.data_type for t in model.graph.initializer} == {TensorProto.FLOAT16}
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    producers = {out: node for node in model.graph.node for out in node.output}
    softmax = producers["probabilities"]
    assert softmax.op_type == "Softmax"
    cast = producers[softmax.input[0]]
    assert cast.op_type == "Cast" and helper.get_attribute_value(cast.attribute[0]) == TensorProto.FLOAT
    assert fp16_path.stat().st_size < 0.55 * fp32_path.stat().st_size


def test_fp16_refuses_to_overwrite_or_to_read_a_missing_file(onnx_files, tmp_path):
    fp32_path, _, fp16_path, _ = onnx_files
    before = fp16_path.read_bytes()
    with pytest.raises(FileError, match="already exists"):
        convert_to_fp16(fp32_path, fp16_path)
    assert fp16_path.read_bytes() == before
    with pytest.raises(FileError, match="does not exist"):
        convert_to_fp16(tmp_path / "nowhere.onnx", tmp_path / "out.onnx")
    assert not (tmp_path / "out.onnx").exists()


def small_graph(last_op: str) -> onnx.ModelProto:
    """Conv, Relu, GlobalAveragePool, Flatten, Gemm, ``last_op``: float32 (1, 3, 8, 8) -> (1, 3)."""
    rng = np.random.default_rng(0)
    weights = {"w": rng.normal(size=(4, 3, 3, 3)), "b": rng.normal(size=4), "gw": rng.normal(size=(3, 4))}
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "gw"], ["logits"], transB=1),
        helper.make_node(last_op, ["logits"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_fp16_casts_a_float16_graph_output_back_to_float32(tmp_path):
    onnx.save(small_graph("Relu"), tmp_path / "relu.onnx")
    convert_to_fp16(tmp_path / "relu.onnx", tmp_path / "relu16.onnx")
    model = onnx.load(tmp_path / "relu16.onnx")
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert [n.op_type for n in model.graph.node][-2:] == ["Relu", "Cast"]
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    y32 = onnx_probabilities(tmp_path / "relu.onnx", x)
    y16 = onnx_probabilities(tmp_path / "relu16.onnx", x)
    assert y16.dtype == np.float32
    np.testing.assert_allclose(y16, y32, rtol=1e-2, atol=1e-2)


def test_fp16_refuses_ops_it_has_no_rule_for(tmp_path):
    onnx.save(small_graph("Sigmoid"), tmp_path / "sigmoid.onnx")
    with pytest.raises(ValueError, match=r"\['Sigmoid'\]"):
        convert_to_fp16(tmp_path / "sigmoid.onnx", tmp_path / "sigmoid16.onnx")
    assert not (tmp_path / "sigmoid16.onnx").exists()
