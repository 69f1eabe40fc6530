"""The eight networks of a bundle per backend and precision, the stacker, and end-to-end classify.

torch runs on the GPU where torch sees one (FP32 and FP16, the eight networks replayed as one CUDA
graph), else on the CPU (FP32).
"""

import numpy as np
import pytest
import torch

import sdk
from sdk.backends import make_backend

NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch FP16 runs on an NVIDIA GPU only")
BACKENDS = [
    ("onnxruntime", "fp32"),
    ("onnxruntime", "fp16"),
    ("torch", "fp32"),
    pytest.param("torch", "fp16", marks=[pytest.mark.gpu, NO_CUDA]),
]


@pytest.mark.parametrize("backend_name, precision", BACKENDS)
def test_eight_networks(benchmark, bundle, network_input, backend_name, precision):
    backend = make_backend(bundle, backend_name, precision=precision)
    try:
        benchmark.extra_info.update(
            backend=backend.name, precision=backend.precision, device=backend.device, details=backend.details
        )
        stage1, stage2 = benchmark.pedantic(backend.run, args=(network_input,), rounds=3, warmup_rounds=1)
    finally:
        backend.close()
    assert stage1.shape == (4, 2) and stage2.shape == (4, 4)


def test_stacker(benchmark, bundle):
    features = np.random.default_rng(0).dirichlet(np.ones(5), size=4).reshape(1, 20)
    probabilities = benchmark(bundle.final_probabilities, features)
    assert probabilities.shape == (1, 5)


def test_classify_end_to_end(benchmark, bundle, wide_volume):
    with sdk.Classifier(bundle, make_backend(bundle, "onnxruntime", precision="fp32")) as classifier:
        dx = benchmark.pedantic(classifier.classify, args=(wide_volume,), rounds=3, warmup_rounds=1)
    benchmark.extra_info.update(timings_ms=dx.timings_ms)
    assert dx.gradable
