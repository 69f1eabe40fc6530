"""sdk.backends: torch against onnxruntime on one bundle, thread safety, providers, auto's choice.

The bundle is made here from a random checkpoint (VGG16 width 1/16, 64 x 64 inputs, 2 small golden
eyes). The TensorRT backend runs twice: on CPU against the stand-in tensorrt and CUDA modules of
tests/test_engines.py (the wiring: engine cache, build, one TensorRTModel per network), and for
real where TensorRT and an NVIDIA GPU exist (skipped here with the reason).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from converters.bundle import DEFAULT_GOLDEN_EYES, build_bundle
from converters.random_checkpoint import make_random_checkpoint
from converters.verify import Agreement
from sdk.backends import make_backend
from sdk.backends.onnxruntime_backend import OnnxRuntimeBackend
from sdk.backends.tensorrt_backend import TensorRTBackend
from sdk.backends.torch_backend import TorchBackend
from sdk.bundle import Bundle
from sdk.engines import tensorrt_usable
from sdk.errors import BackendUnavailable, InvalidVolume
from tests.test_engines import fake_cudart, fake_tensorrt

REPO = Path(__file__).resolve().parents[1]
SMALL_EYE = (32, 248, 128)
TRT_USABLE, TRT_REASON = tensorrt_usable()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Bundle:
    folder = tmp_path_factory.mktemp("backends")
    checkpoint = make_random_checkpoint(
        folder / "checkpoint", width=1 / 16, input_hw=(64, 64), seed=2, n_normals=2, phantom_shape=SMALL_EYE
    )
    out = build_bundle(
        checkpoint, folder / "bundle", golden_eyes=DEFAULT_GOLDEN_EYES[1:3], phantom_shape=SMALL_EYE
    )
    return Bundle.load(out)


@pytest.fixture(scope="module")
def inputs(bundle) -> np.ndarray:
    """(6, 4, 3, 64, 64): the golden eyes and four noisy variants of them."""
    golden = bundle.golden()["inputs"]
    noise = np.random.default_rng(0).normal(0.0, 0.3, size=(4, *golden.shape[1:])).astype(np.float32)
    return np.concatenate([golden, golden[[0, 1, 0, 1]] + noise])


@pytest.fixture
def one_torch_thread():
    """torch's OpenMP threads slow down 100-fold beside other jobs on a 2-core machine."""
    threads = torch.get_num_threads()
    yield 1
    torch.set_num_threads(threads)


def run_all(backend, inputs) -> tuple[np.ndarray, np.ndarray]:
    outputs = [backend.run(x) for x in inputs]
    return np.stack([s1 for s1, _ in outputs]), np.stack([s2 for _, s2 in outputs])


def test_torch_and_onnxruntime_agree(bundle, inputs, one_torch_thread):
    with (
        make_backend(bundle, "torch", threads=one_torch_thread) as reference,
        make_backend(bundle, "onnxruntime") as ort,
    ):
        expected, got = run_all(reference, inputs), run_all(ort, inputs)
    difference = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected, strict=True))
    print(f"torch vs onnxruntime fp32: max abs probability difference {difference:.2e}")
    assert difference <= 1e-4
    assert expected[0].shape == (len(inputs), 4, 2) and expected[1].shape == (len(inputs), 4, 4)
    np.testing.assert_allclose(expected[1].sum(-1), 1.0, atol=1e-6)


def test_outputs_reproduce_golden(bundle):
    golden = bundle.golden()
    with make_backend(bundle, "onnxruntime", "fp16") as backend:
        stage1, stage2 = run_all(backend, golden["inputs"])
    assert np.max(np.abs(stage1 - golden["stage1"])) <= bundle.tolerances("fp16")["max_abs_probability"]
    assert np.max(np.abs(stage2 - golden["stage2"])) <= bundle.tolerances("fp16")["max_abs_probability"]


@pytest.mark.parametrize("name", ["onnxruntime", "torch"])
def test_one_backend_serves_several_threads(bundle, inputs, name, one_torch_thread):
    with make_backend(bundle, name, threads=one_torch_thread) as backend:
        serial = [backend.run(x) for x in inputs]
        results, errors = {}, []

        def work(worker: int) -> None:
            try:
                for repeat in range(3):
                    for i in np.random.default_rng(worker + 10 * repeat).permutation(len(inputs)):
                        results.setdefault((worker, repeat, int(i)), backend.run(inputs[i]))
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == [] and len(results) == 4 * 3 * len(inputs)
    for (_, _, i), (stage1, stage2) in results.items():
        np.testing.assert_allclose(stage1, serial[i][0], rtol=0, atol=1e-6)
        np.testing.assert_allclose(stage2, serial[i][1], rtol=0, atol=1e-6)


def test_onnxruntime_reports_providers_and_settings(bundle):
    with make_backend(bundle, "onnxruntime", "fp16", threads=2) as backend:
        assert (backend.name, backend.precision, backend.device) == ("onnxruntime", "fp16", "cpu")
        assert backend.details["providers"] == ["CPUExecutionProvider"]
        assert backend.details["providers_not_attached"] == []
        assert backend.details["intra_op_threads"] == 2
        assert backend.details["graph_optimization"] == "ORT_ENABLE_ALL"
        assert "fp16" in repr(backend) and bundle.bundle_id[:12] in repr(backend)


def test_providers_that_do_not_attach_are_reported(bundle, monkeypatch, caplog):
    """ONNX Runtime falls back to the CPU silently; the backend reads back what attached."""
    import onnxruntime as ort

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    real_session = ort.InferenceSession

    def cpu_session(path, options, providers, provider_options):
        return real_session(path, options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", cpu_session)
    with make_backend(bundle, "onnxruntime") as backend:
        assert backend.device == "cpu" and backend.details["providers"] == ["CPUExecutionProvider"]
        assert backend.details["providers_not_attached"] == ["CUDAExecutionProvider"]
    assert "did not attach CUDAExecutionProvider" in caplog.text


def test_a_provider_missing_from_the_build_is_unavailable(bundle):
    with pytest.raises(BackendUnavailable, match="has no CUDAExecutionProvider"):
        OnnxRuntimeBackend(bundle, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_auto_falls_back_to_onnxruntime_with_the_reason(bundle):
    if TRT_USABLE:
        pytest.skip(f"TensorRT is usable here ({TRT_REASON}): auto picks it")
    with make_backend(bundle) as backend:
        assert (backend.name, backend.precision) == ("onnxruntime", "fp32")
        assert backend.details["auto"].startswith("onnxruntime, not tensorrt: TensorRT is not usable here")
    with make_backend(bundle, "auto", "fp32") as backend:
        assert "fp16 only" in backend.details["auto"]


def test_auto_falls_back_when_tensorrt_fails_to_load(bundle, monkeypatch):
    def failing(*args, **kwargs):
        raise BackendUnavailable("engine build failed: out of memory")

    monkeypatch.setattr("sdk.engines.tensorrt_usable", lambda: (True, "TensorRT 10.3, 1 GPU"))
    monkeypatch.setattr(TensorRTBackend, "__init__", failing)
    with make_backend(bundle) as backend:
        assert backend.name == "onnxruntime"
        assert backend.details["auto"] == (
            "onnxruntime, not tensorrt: TensorRT is present but failed: engine build failed: out of memory"
        )


def test_requests_a_backend_cannot_serve(bundle):
    if not TRT_USABLE:
        with pytest.raises(BackendUnavailable, match="TensorRT is not usable here"):
            make_backend(bundle, "tensorrt")
    with pytest.raises(BackendUnavailable, match="the torch backend runs fp16 on CUDA only"):
        TorchBackend(bundle, "fp16", device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="sees no CUDA GPU for device 'cuda'"):
            TorchBackend(bundle, "fp32", device="cuda")
    with pytest.raises(BackendUnavailable, match="the tensorrt backend runs fp16, not 'fp32'"):
        make_backend(bundle, "tensorrt", "fp32")
    with pytest.raises(ValueError, match="backend 'openvino' is unknown"):
        make_backend(bundle, "openvino")
    with pytest.raises(ValueError, match="precision 'int4' is unknown"):
        make_backend(bundle, "onnxruntime", "int4")


def test_wrong_input_and_closed_backend(bundle):
    backend = make_backend(bundle, "onnxruntime")
    with pytest.raises(InvalidVolume, match=r"shape \(4, 3, 32, 32\).*\(4, 3, 64, 64\)"):
        backend.run(np.zeros((4, 3, 32, 32), np.float32))
    backend.close()
    backend.close()
    with pytest.raises(BackendUnavailable, match="closed"):
        backend.run(np.zeros((4, 3, 64, 64), np.float32))


def test_sdk_backends_import_no_torch_onnx_or_tensorrt(bundle):
    code = (
        "import sys\nimport numpy as np\nfrom sdk.bundle import Bundle\n"
        "from sdk.backends import make_backend\n"
        "b = make_backend(Bundle.load(sys.argv[1]), 'onnxruntime')\n"
        "b.run(np.zeros((4, 3, 64, 64), np.float32))\n"
        "loaded = {'torch', 'onnx', 'tensorrt'} & set(sys.modules); assert not loaded, loaded"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(bundle.path)], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_tensorrt_backend_wiring_with_stand_ins(bundle, inputs, monkeypatch, tmp_path, caplog):
    """The stand-in TensorRT 10.13 builds strongly typed from the FP16 ONNX and "runs" engines in
    ONNX Runtime, so the backend must match the onnxruntime FP16 backend."""
    from sdk.engines import runtime

    cudart = fake_cudart()
    cuda = type(sys)("cuda")
    cuda.bindings = type(sys)("cuda.bindings")
    cuda.bindings.runtime = cudart
    for name, module in (("cuda", cuda), ("cuda.bindings", cuda.bindings), ("cuda.bindings.runtime", cudart)):
        monkeypatch.setitem(sys.modules, name, module)
    trt = fake_tensorrt("10.13.2")
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    runtime.trt_logger.cache_clear()
    caplog.set_level("INFO")
    try:
        with make_backend(bundle, cache_dir=tmp_path) as backend:  # auto: "usable" now
            assert (backend.name, backend.precision, backend.device) == (
                "tensorrt",
                "fp16",
                "cuda (Fake Orin)",
            )
            assert backend.details["tensorrt"] == "10.13.2" and len(backend.details["engines"]) == 8
            got = run_all(backend, inputs)
        assert [b["onnx_sha256"] for b in trt.builds] == [
            bundle.files[m.files["fp16"].as_posix()].sha256 for m in bundle.models
        ]
        assert "this may take several minutes" in caplog.text
        with make_backend(bundle, "tensorrt", cache_dir=tmp_path) as again:  # from the cache: no new build
            assert len(trt.builds) == 8
            again.run(inputs[0])
        assert cudart.live == {}  # every buffer freed by close()
    finally:
        runtime.trt_logger.cache_clear()
    with make_backend(bundle, "onnxruntime", "fp16") as ort:
        expected = run_all(ort, inputs)
    # onnxruntime runs each map's merged stage model, fused a little differently: not bit for bit
    np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=1e-5)
    np.testing.assert_allclose(got[1], expected[1], rtol=0, atol=1e-5)


@pytest.mark.tensorrt
@pytest.mark.skipif(not TRT_USABLE, reason=f"needs TensorRT and an NVIDIA GPU: {TRT_REASON}")
def test_tensorrt_fp16_agrees_with_onnxruntime_fp32_on_the_gpu(bundle, inputs, tmp_path):
    with (
        make_backend(bundle, "tensorrt", cache_dir=tmp_path) as trt,
        make_backend(bundle, "onnxruntime") as ort,
    ):
        assert trt.name == "tensorrt" and trt.precision == "fp16"
        got, expected = run_all(trt, inputs), run_all(ort, inputs)
    for g, e in zip(got, expected, strict=True):  # (inputs, maps, classes)
        n_classes = g.shape[-1]
        agreement = Agreement.of(
            "tensorrt", g.reshape(-1, n_classes), e.reshape(-1, n_classes), bundle.tolerances("fp16")
        )
        assert agreement.passed, agreement.summary()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU visible to torch")
def test_torch_on_cuda_agrees_with_cpu(bundle, inputs):
    with make_backend(bundle, "torch") as gpu:
        assert gpu.device.startswith("cuda")
        got = run_all(gpu, inputs)
    with make_backend(bundle, "onnxruntime") as cpu:
        expected = run_all(cpu, inputs)
    for g, e in zip(got, expected, strict=True):
        assert np.max(np.abs(g - e)) <= 1e-4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU visible to torch")
def test_torch_cuda_fp16_with_graphs_agrees_with_fp32_and_with_eager(bundle, inputs):
    with (
        make_backend(bundle, "torch", "fp16") as graphs,
        TorchBackend(bundle, "fp16", cuda_graphs=False) as eager,
        make_backend(bundle, "onnxruntime") as ort,
    ):
        assert graphs.details["cuda_graphs"] and not eager.details["cuda_graphs"]
        got, same_kernels, expected = run_all(graphs, inputs), run_all(eager, inputs), run_all(ort, inputs)
    for g, s, e in zip(got, same_kernels, expected, strict=True):  # (inputs, maps, classes)
        n_classes = g.shape[-1]
        np.testing.assert_allclose(g, s, rtol=0, atol=1e-3)  # replayed graph = the eager FP16 passes
        agreement = Agreement.of(
            "torch fp16", g.reshape(-1, n_classes), e.reshape(-1, n_classes), bundle.tolerances("fp16")
        )
        assert agreement.passed, agreement.summary()
