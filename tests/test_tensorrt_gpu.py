"""TensorRT on a real GPU: FP16 engines from small ONNX models against ONNX Runtime CPU, and the
engine cache with the real builder. Skipped, with the reason, where TensorRT or a GPU is missing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sdk.engines import TensorRTModel, build_bundle_engines, build_engine, tensorrt_usable
from sdk.engines.runtime import version_tuple
from sdk.errors import BackendUnavailable
from sdk.files import file_sha256
from tests.test_engines import INPUT_SHAPE, ort_probabilities, write_bundle, write_classifier_onnx

USABLE, REASON = tensorrt_usable()
pytestmark = [
    pytest.mark.tensorrt,
    pytest.mark.skipif(not USABLE, reason=f"needs TensorRT and an NVIDIA GPU: {REASON}"),
]
FP16_ATOL = 1e-2  # probabilities, FP16 engine vs FP32 ONNX Runtime


def trt_version() -> tuple[int, ...]:
    import tensorrt

    return version_tuple(tensorrt.__version__)


def inputs(n: int = 4, shape=INPUT_SHAPE) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.normal(size=shape).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("strategy", ["builder_flag", "strongly_typed"])
def test_engine_matches_onnxruntime(tmp_path, strategy):
    if strategy == "builder_flag" and trt_version() >= (11,):
        pytest.skip("TensorRT 11 has no FP16 builder flag")
    if strategy == "strongly_typed" and trt_version() < (10,):
        pytest.skip("strongly typed networks are used from TensorRT 10 on")
    fp32 = write_classifier_onnx(tmp_path / "model.onnx", seed=3)
    source = (
        fp32
        if strategy == "builder_flag"
        else write_classifier_onnx(tmp_path / "m.fp16.onnx", seed=3, fp16=True)
    )
    engine = build_engine(
        source, strategy=strategy, workspace_bytes=1 << 28, input_shapes={"input": INPUT_SHAPE}
    )
    with TensorRTModel(engine) as model:
        assert model.input_shape == INPUT_SHAPE and model.output_shape == (1, 2)
        for x in inputs():
            got = model.infer(x)
            assert got.dtype == np.float32 and got.shape == (1, 2)
            np.testing.assert_allclose(got, ort_probabilities(fp32, x), atol=FP16_ATOL)


def test_bundle_engines_match_onnxruntime_and_cache_round_trip(tmp_path):
    bundle = write_bundle(tmp_path / "bundle")
    cache_dir = tmp_path / "engines"
    engines = build_bundle_engines(bundle, cache_dir=cache_dir, workspace_bytes=1 << 28)
    shape = (1, 3, 32, 32)  # the fixture bundle's input
    for name, path in engines.items():
        with TensorRTModel(path) as model:
            for x in inputs(2, shape):
                expected = ort_probabilities(bundle / f"models/{name}.onnx", x)
                np.testing.assert_allclose(model.infer(x), expected, atol=FP16_ATOL)

    stamps = {name: path.stat().st_mtime_ns for name, path in engines.items()}
    assert build_bundle_engines(bundle, cache_dir=cache_dir) == engines  # hits: nothing rebuilt
    assert {name: path.stat().st_mtime_ns for name, path in engines.items()} == stamps

    damaged = engines["rnfl_thickness.stage1"]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    rebuilt = build_bundle_engines(bundle, cache_dir=cache_dir)["rnfl_thickness.stage1"]
    assert file_sha256(rebuilt) == json.loads(rebuilt.with_suffix(".json").read_text())["engine_sha256"]
    with TensorRTModel(rebuilt) as model:
        x = inputs(1, shape)[0]
        np.testing.assert_allclose(
            model.infer(x), ort_probabilities(bundle / "models/rnfl_thickness.stage1.onnx", x), atol=FP16_ATOL
        )


def test_dynamic_batch_onnx_is_pinned_to_the_manifest_shape(tmp_path):
    onnx_path = write_classifier_onnx(tmp_path / "dyn.onnx", input_shape=("N", *INPUT_SHAPE[1:]))
    strategy = "strongly_typed" if trt_version() >= (11,) else "builder_flag"
    engine = build_engine(onnx_path, strategy=strategy, input_shapes={"input": INPUT_SHAPE})
    with TensorRTModel(engine) as model:
        assert model.input_shape == INPUT_SHAPE
        x = inputs(1)[0]
        np.testing.assert_allclose(model.infer(x), ort_probabilities(onnx_path, x), atol=FP16_ATOL)


def test_bytes_that_are_not_an_engine_are_refused():
    with pytest.raises(BackendUnavailable, match="could not deserialize"):
        TensorRTModel(b"not a TensorRT engine" * 10)
