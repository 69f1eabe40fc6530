"""``python -m benchmarks.compare [--width full] [--device cpu|cuda]``: one run, one process, side by side.

On the same bundle and the same wide-field phantom volume:

(a) a plain PyTorch-eager FP32 reference of the whole pipeline: the front end, then each of the eight
    VGG16s in eager mode one after the other, then the numpy stacker;
(b) the SDK, ``sdk.Classifier`` on ONNX Runtime (FP32);
(c) the SDK on TensorRT FP16, where TensorRT and a GPU exist;
(d) the compute floor: the multiply-adds of the networks (as the bundle runs them) at the fastest
    dense float32 rate this machine offers on all cores, the best of torch's matrix product (2048 and
    4096), torch's convolution on two VGG16 layer shapes (oneDNN on the CPU; channels-first and
    channels-last), ONNX Runtime's convolution on the same shapes, and numpy's matrix product
    (OpenBLAS, slowed where ``OPENBLAS_CORETYPE`` forces an older core type: the value is recorded);
    on CUDA torch's alone, TF32 off, and a second floor at the float16 throughput;
(e) with ``--device cuda``: the SDK on the torch backend, FP16 with the eight networks replayed as
    one CUDA graph, against (a) run on the GPU (FP32 eager), whole pipeline and networks alone; and
    the networks FP16 eager, to tell the two gains apart;
(f) on a CPU with bfloat16 instructions, bf16 with the weights rounded as the torch backend rounds
    them (``sdk.backends.torch_backend.bf16_network`` and ``probabilities`` on the bundle's FP32
    weights): the pipeline composed as (a) is, eight whole networks, for its speed, whether or not the
    bundle's gate allows bf16 (its probability difference from (a) is recorded); and where the bundle
    declares bf16 (``converters bundle --bf16`` passed its gate), the SDK itself, ``sdk.Classifier`` on
    the torch backend in bf16, which runs the layers a map's two networks share once.

``--bundle PATH`` runs it all on a given bundle (the trained one, say) instead of the bench bundle.

Prints the median of each over ``--rounds`` runs and the ratios, and writes them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

import phantom
import sdk
from sdk.backends import make_backend, stage_indices
from sdk.backends.torch_backend import (
    TorchBackend,
    bf16_network,
    float32_means_float32,
    fp32_networks,
    probabilities,
)
from sdk.cpu import bf16_unsupported, cpu_model
from sdk.engines.build import tensorrt_usable
from sdk.labels import CLASSES

MATMUL_SIZE = 2048


def measure(function, rounds: int) -> float:
    """Median wall time (s) of ``function()`` over ``rounds`` runs after one warm-up run."""
    function()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_flops(device: str, dtype: str = "float32", rounds: int = 5, size: int = MATMUL_SIZE) -> float:
    """Dense matrix-product throughput (FLOP/s) of this machine in ``dtype``, all cores or the GPU (torch)."""
    import torch

    float32_means_float32()
    a = torch.rand(size, size, device=device, dtype=getattr(torch, dtype))
    b = torch.rand(size, size, device=device, dtype=getattr(torch, dtype))

    def product():
        a @ b
        if device == "cuda":
            torch.cuda.synchronize()

    return 2 * size**3 / measure(product, rounds)


def conv_flops(channels: int, side_px: int, rounds: int = 5, channels_last: bool = False) -> float:
    """float32 throughput (FLOP/s) of torch's 3 x 3 convolution, ``channels`` in and out, on one
    ``side_px`` square image (on the CPU, oneDNN: the fastest route a VGG16 layer has here), the image
    and weights channels-first or, with ``channels_last``, channels-last (oneDNN's preferred layout)."""
    import torch

    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(1, channels, side_px, side_px).to(memory_format=layout)
    w = torch.rand(channels, channels, 3, 3).to(memory_format=layout)

    def convolve():
        with torch.no_grad():
            torch.nn.functional.conv2d(x, w, padding=1)

    return 2 * channels * channels * 9 * side_px * side_px / measure(convolve, rounds)


def onnxruntime_conv_session(weight: np.ndarray, side_px: int):
    """An ONNX Runtime session (CPU provider, all cores, full graph optimisation: its NCHWc kernels on
    x86) of one 3 x 3 convolution, padding 1, with ``weight`` (C, C, 3, 3) on a (1, C, side_px, side_px)
    input "x"."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from sdk.backends.onnxruntime_backend import import_onnxruntime

    ort = import_onnxruntime()
    shape = [1, weight.shape[1], side_px, side_px]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, weight.shape[0], side_px, side_px])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = os.cpu_count() or 1
    return ort.InferenceSession(onnx.ModelProto.SerializeToString(model), options, ["CPUExecutionProvider"])


def onnxruntime_conv_flops(channels: int, side_px: int, rounds: int = 5) -> float:
    """float32 throughput (FLOP/s) of ONNX Runtime's 3 x 3 convolution on one ``side_px`` square image,
    ``channels`` in and out (:func:`onnxruntime_conv_session`): the layers the SDK's backend runs, alone."""
    weight = np.random.default_rng(0).random((channels, channels, 3, 3), dtype=np.float32)
    session = onnxruntime_conv_session(weight, side_px)
    x = {"x": np.random.default_rng(1).random((1, channels, side_px, side_px), dtype=np.float32)}
    return 2 * channels * channels * 9 * side_px * side_px / measure(lambda: session.run(None, x), rounds)


def numpy_matmul_flops(rounds: int = 5) -> float:
    """float32 matrix-product throughput (FLOP/s) of numpy (its BLAS, all cores)."""
    a = np.random.default_rng(0).random((MATMUL_SIZE, MATMUL_SIZE), dtype=np.float32)
    return 2 * MATMUL_SIZE**3 / measure(lambda: a @ a, rounds)


def cpu_floor_rates() -> dict[str, float]:
    """FLOP/s of each float32 route the floor is the best of (keys name the route)."""
    return {
        f"torch_matmul_{MATMUL_SIZE}": matmul_flops("cpu"),
        f"torch_matmul_{2 * MATMUL_SIZE}": matmul_flops("cpu", rounds=3, size=2 * MATMUL_SIZE),
        "torch_conv3x3_256ch_56px": conv_flops(256, 56),
        "torch_conv3x3_512ch_28px": conv_flops(512, 28),
        "torch_channels_last_conv3x3_256ch_56px": conv_flops(256, 56, channels_last=True),
        "torch_channels_last_conv3x3_512ch_28px": conv_flops(512, 28, channels_last=True),
        "onnxruntime_conv3x3_256ch_56px": onnxruntime_conv_flops(256, 56),
        "onnxruntime_conv3x3_512ch_28px": onnxruntime_conv_flops(512, 28),
        f"numpy_matmul_{MATMUL_SIZE}": numpy_matmul_flops(),
    }


def network_macs(bundle) -> int:
    """Multiply-adds of one classification's network part: the bundle's eight VGG16s."""
    from sdk.nets.vgg16 import VGG16, count_macs

    width = float(bundle.manifest["network"]["width"])
    return sum(count_macs(VGG16(len(spec.classes), width=width), bundle.input_hw) for spec in bundle.models)


def one_by_one(bundle, precision: str, device: str = "cpu"):
    """The bundle's eight VGG16s whole, one after the other, nothing shared between a map's two:
    "fp32" on ``device`` (TF32 off), or "bf16" on the CPU with the weights rounded as the torch
    backend rounds them. Returns the callable giving stage-1 (4, 2) and stage-2 (4, 4) float32
    probabilities for one eye's input (4, 3, H, W) float32."""
    import torch

    float32_means_float32()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    models = [bf16_network(m) if precision == "bf16" else m.to(device) for m in fp32_networks(bundle)]
    pairs = stage_indices(bundle)

    def networks(x: np.ndarray):
        with torch.inference_mode():
            inputs = torch.from_numpy(x).to(device)
            return tuple(
                np.stack(
                    [
                        probabilities(models[p[k]], inputs[m : m + 1], dtype)[0].cpu().numpy()
                        for m, p in enumerate(pairs)
                    ]
                )
                for k in (0, 1)
            )

    return networks


def composed(bundle, volume, networks):
    """The callable giving the five class probabilities of ``volume``: front end, ``networks`` (as
    :func:`one_by_one` returns), stacker."""

    def run():
        maps = sdk.maps.extract(volume, bundle.normative)
        stage1, stage2 = networks(sdk.maps.to_network_input(maps.stack(), bundle.input_hw))
        return bundle.final_probabilities(bundle.stacking_features(stage1, stage2)[None])[0]

    return run


def sdk_run(results: dict, key: str, bundle, backend, volume, network_input, rounds: int, expected):
    """Median classify time under ``key``, the networks' median alone, and the largest probability
    difference from the reference ``expected`` (5,)."""
    with sdk.Classifier(bundle, backend) as clf:
        results[f"{key}_s"] = measure(lambda: clf.classify(volume), rounds)
        results[f"{key}_networks_s"] = measure(lambda: backend.run(network_input), rounds)
        dx = clf.classify(volume)
        results[f"{key}_front_end_s"] = dx.timings_ms["front_end"] / 1000.0
        results[f"{key}_max_probability_difference_vs_a"] = float(
            np.max(np.abs(np.array([dx.probabilities[c] for c in CLASSES]) - expected))
        )


def bf16_run(results: dict, bundle, volume, network_input, rounds: int, expected) -> None:
    """(f) where this CPU has bfloat16 instructions, else the reason under ``f_reason``."""
    reason = bf16_unsupported()
    results["f_bf16_pipeline_s"] = None
    if reason:
        results["f_reason"] = reason
        return
    networks = one_by_one(bundle, "bf16")
    run = composed(bundle, volume, networks)
    results["f_bf16_pipeline_s"] = measure(run, rounds)
    results["f_bf16_networks_s"] = measure(lambda: networks(network_input), rounds)
    results["f_bf16_max_probability_difference_vs_a"] = float(np.max(np.abs(run() - expected)))
    results["speedup_f_pipeline_over_a"] = results["a_pytorch_eager_s"] / results["f_bf16_pipeline_s"]
    if "bf16" not in bundle.derived_precisions():
        results["f_sdk_reason"] = f"bundle {bundle.bundle_id[:12]} does not declare bf16 (no passed gate)"
        return
    backend = TorchBackend(bundle, "bf16")
    sdk_run(results, "f_sdk_torch_bf16", bundle, backend, volume, network_input, rounds, expected)
    results["speedup_f_sdk_over_a"] = results["a_pytorch_eager_s"] / results["f_sdk_torch_bf16_s"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare", description=__doc__.splitlines()[0])
    parser.add_argument("--width", default="full", help='"full" (1.0) or a VGG16 channel scale, e.g. 0.25')
    parser.add_argument("--input-px", type=int, default=224)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=Path("out/compare.json"))
    parser.add_argument("--bundle", type=Path, help="run on this bundle instead of the bench bundle")
    args = parser.parse_args(argv)
    width = 1.0 if args.width == "full" else float(args.width)
    os.environ.setdefault("OCTC_BENCH_WIDTH", f"{width:g}")
    os.environ.setdefault("OCTC_BENCH_INPUT_PX", str(args.input_px))
    from benchmarks.conftest import bench_bundle_dir  # noqa: PLC0415 - reads the two variables above

    bundle = sdk.bundle.Bundle.load(args.bundle or bench_bundle_dir())
    volume = phantom.make_eye("FI", seed=11).volume
    results = {
        "machine": f"{platform.machine()} {cpu_model()} {os.cpu_count()} cores",
        "bundle": f"{bundle.bundle_id[:12]} ({args.bundle or 'bench bundle'})",
        "width": float(bundle.manifest["network"]["width"]),
        "input_px": bundle.input_hw[0],
        "device": args.device,
        "rounds": args.rounds,
    }

    network_input = sdk.maps.to_network_input(
        sdk.maps.extract(volume, bundle.normative).stack(), bundle.input_hw
    ).astype(np.float32)
    reference_networks = one_by_one(bundle, "fp32", args.device)
    reference = composed(bundle, volume, reference_networks)
    results["a_pytorch_eager_s"] = measure(reference, args.rounds)
    results["a_networks_s"] = measure(partial(reference_networks, network_input), args.rounds)
    expected = reference()
    del reference_networks, reference  # the eight FP32 networks' memory, before the SDK's

    ort = make_backend(bundle, "onnxruntime", precision="fp32")
    sdk_run(results, "b_sdk_onnxruntime", bundle, ort, volume, network_input, args.rounds, expected)
    usable, reason = tensorrt_usable()
    if usable:
        trt = make_backend(bundle, "tensorrt", precision="fp16")
        sdk_run(results, "c_sdk_tensorrt_fp16", bundle, trt, volume, network_input, args.rounds, expected)
    else:
        results["c_sdk_tensorrt_fp16_s"] = None
        results["c_reason"] = reason
    if args.device == "cpu":
        bf16_run(results, bundle, volume, network_input, args.rounds, expected)
    macs = network_macs(bundle)
    if args.device == "cpu":
        rates = cpu_floor_rates()
        results["floor_gflops_by_route"] = {route: round(rate / 1e9, 1) for route, rate in rates.items()}
        results["floor_route"] = max(rates, key=rates.get)
        results["openblas_coretype"] = os.environ.get("OPENBLAS_CORETYPE", "(not set)")
        flops = max(rates.values())
    else:
        flops = matmul_flops(args.device)
    results.update(network_gmacs=macs / 1e9, matmul_gflops=flops / 1e9, d_compute_floor_s=2 * macs / flops)
    results["speedup_b_over_a"] = results["a_pytorch_eager_s"] / results["b_sdk_onnxruntime_s"]
    results["networks_b_over_floor"] = results["b_sdk_onnxruntime_networks_s"] / results["d_compute_floor_s"]
    if args.device == "cuda":
        fp16 = TorchBackend(bundle, "fp16", device="cuda", cuda_graphs=True)
        results["e_device"] = fp16.device
        key = "e_sdk_torch_fp16_graphs"
        sdk_run(results, key, bundle, fp16, volume, network_input, args.rounds, expected)
        with TorchBackend(bundle, "fp16", device="cuda", cuda_graphs=False) as fp16_eager:
            results["e_networks_fp16_eager_s"] = measure(lambda: fp16_eager.run(network_input), args.rounds)
        half_flops = matmul_flops(args.device, "float16")
        results.update(matmul_fp16_gflops=half_flops / 1e9, d_compute_floor_fp16_s=2 * macs / half_flops)
        results["speedup_e_over_a"] = results["a_pytorch_eager_s"] / results["e_sdk_torch_fp16_graphs_s"]
        results["networks_speedup_e_over_a"] = (
            results["a_networks_s"] / results["e_sdk_torch_fp16_graphs_networks_s"]
        )
        results["networks_e_over_fp16_floor"] = (
            results["e_sdk_torch_fp16_graphs_networks_s"] / results["d_compute_floor_fp16_s"]
        )

    for key, value in results.items():
        print(f"{key:50s} {value:.4g}" if isinstance(value, float) else f"{key:50s} {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
