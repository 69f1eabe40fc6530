"""Probe (not part of the SDK): a bundle's eight networks in PyTorch bfloat16 on the CPU.

    python docs/bf16-probe/probe.py BUNDLE [CHECKPOINT]

Each network rebuilt from its FP32 ONNX file (as the torch backend does), then run in FP32 and in
bfloat16 (weights and activations, channels_last: oneDNN's AMX kernels on CPUs that have them) on
the bundle's golden inputs. Prints the largest probability difference from the golden PyTorch FP32
probabilities, the top-class agreement, and the eight networks' median time on one eye. With the
bundle's CHECKPOINT (one with calibration.npz), bfloat16 is also compared with FP32 on its
calibration eyes and the golden eyes, per network and for the final probabilities, against the gate
``converters bundle --int8`` applies (converters.bundle.TOLERANCES["int8"]).
"""

import statistics
import sys
import time

import numpy as np
import torch

from sdk.backends import stage_indices
from sdk.backends.torch_backend import state_dict_from_onnx
from sdk.bundle import Bundle
from sdk.nets.vgg16 import VGG16


def networks(bundle: Bundle, dtype) -> list:
    width = float(bundle.manifest["network"]["width"])
    models = []
    for spec in bundle.models:
        model = VGG16(len(spec.classes), width=width)
        model.load_state_dict(
            {k: torch.from_numpy(v) for k, v in state_dict_from_onnx(bundle.read(spec.files["fp32"])).items()}
        )
        models.append(model.eval().to(dtype).to(memory_format=torch.channels_last))
    return models


def run(bundle: Bundle, models: list, dtype, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stage-1 (4, 2) and stage-2 (4, 4) probabilities for one eye's input x (4, 3, H, W)."""
    inputs = torch.from_numpy(x).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = [
            [torch.softmax(models[k](inputs[m : m + 1]).float(), dim=1)[0].numpy() for k in pair]
            for m, pair in enumerate(stage_indices(bundle))
        ]
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out])


def main(path: str) -> None:
    bundle = Bundle.load(path)
    golden = bundle.golden()
    for dtype in (torch.float32, torch.bfloat16):
        models = networks(bundle, dtype)
        stage1, stage2 = (
            np.stack(s) for s in zip(*(run(bundle, models, dtype, x) for x in golden["inputs"]), strict=True)
        )
        for name, got, expected in (
            ("stage 1", stage1, golden["stage1"]),
            ("stage 2", stage2, golden["stage2"]),
        ):
            same = np.mean(got.argmax(-1) == expected.argmax(-1))
            print(f"{dtype} {name}: max |dp| {np.abs(got - expected).max():.2e}, same top class {same:.0%}")
        times = []
        for _ in range(5):
            start = time.perf_counter()
            run(bundle, models, dtype, golden["inputs"][0])
            times.append(time.perf_counter() - start)
        print(f"{dtype}: eight networks, median of 5: {statistics.median(times):.4f} s")


def gate(path: str, checkpoint: str) -> None:
    from converters.bundle import TOLERANCES
    from converters.int8 import calibration_inputs
    from converters.verify import Agreement
    from sdk.maps import MAP_NAMES
    from training.checkpoint import read_checkpoint

    bundle = Bundle.load(path)
    x = np.concatenate([calibration_inputs(read_checkpoint(checkpoint)), bundle.golden()["inputs"]])
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        models = networks(bundle, dtype)
        results[dtype] = [
            np.stack(s) for s in zip(*(run(bundle, models, dtype, xi) for xi in x), strict=True)
        ]
    tolerance = TOLERANCES["int8"]
    for k, stage in enumerate(("stage1", "stage2")):
        for m, map_name in enumerate(MAP_NAMES):
            got, want = results[torch.bfloat16][k][:, m], results[torch.float32][k][:, m]
            print(f"{map_name}.{stage} bf16 vs FP32:", Agreement.of("", got, want, tolerance).summary())
    final = [bundle.final_probabilities(bundle.stacking_features(*results[d])) for d in results]
    print("final bf16 vs FP32:", Agreement.of("", final[1], final[0], tolerance).summary())
    worst = int(np.abs(final[1] - final[0]).max(1).argmax())
    features = [bundle.stacking_features(*results[d])[worst] for d in results]
    print(
        f"eye {worst} of {len(x)}: features differ by at most {np.abs(features[1] - features[0]).max():.4f}, "
        f"final probabilities FP32 {np.round(final[0][worst], 3)} bf16 {np.round(final[1][worst], 3)}"
    )


if __name__ == "__main__":
    main(sys.argv[1])
    if len(sys.argv) > 2:
        gate(sys.argv[1], sys.argv[2])
