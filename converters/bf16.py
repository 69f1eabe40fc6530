"""bf16: the FP32 networks run in bfloat16 on the CPU (PyTorch / oneDNN), gated at conversion.

    x = calibration_inputs(checkpoint, "bf16")           # converters.precision_gate: (n, 4, 3, H, W)
    got, reference = outputs(networks, x, "bf16"), outputs(networks, x, "fp32")
    checks = gate("bf16", got, reference, stacker, tolerance)

A bf16 bundle ships no files of its own: the torch backend rounds the FP32 weights to bfloat16 at
load (:func:`sdk.backends.torch_backend.bf16_network`) and runs the convolutions in bfloat16,
channels-last, softmax in FP32 (:func:`sdk.backends.torch_backend.probabilities`); the same two
functions run here. The gate compares bf16 with PyTorch FP32 on all the checkpoint's calibration eyes
(nothing is calibrated) and the golden eyes, one eye at a time as the backend runs them, per map and
stage and on the final probabilities; the manifest declares bf16 (``tolerances.bf16``) only when it
passes. Where the converting CPU has no bfloat16 instructions PyTorch emulates them (slowly, with the
same rounding of weights and activations); the CPU is recorded with the checks.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from sdk.backends.torch_backend import bf16_network, probabilities
from sdk.bundle import MERGED_OUTPUTS
from sdk.cpu import bf16_unsupported, cpu_model

METHOD = (
    "converters.bf16: the fp32 weights rounded to bfloat16 at load, bfloat16 convolutions channels-last "
    "(PyTorch / oneDNN), softmax in float32; gated on the checkpoint's calibration eyes and the golden eyes"
)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def outputs(networks: list[tuple], x: np.ndarray, precision: str) -> dict[str, np.ndarray]:
    """Probabilities of ``networks`` (per map in MAP_NAMES order, its FP32 stage-1 and stage-2 VGG16 in
    eval mode, left unchanged) in ``precision`` ("fp32" or "bf16") for x (n, 4, 3, H, W), one eye at a
    time: {"stage1": (n, 4, 2), "stage2": (n, 4, 4)} float32."""
    dtype = DTYPES[precision]
    results = {name: [] for name in MERGED_OUTPUTS}
    with torch.inference_mode():
        for m, pair in enumerate(networks):
            for name, network in zip(MERGED_OUTPUTS, pair, strict=True):
                model = bf16_network(copy.deepcopy(network)) if precision == "bf16" else network
                rows = [probabilities(model, torch.from_numpy(eye[m : m + 1]), dtype)[0] for eye in x]
                results[name].append(torch.stack(rows).numpy())
    return {name: np.stack(per_map, axis=1).astype(np.float32) for name, per_map in results.items()}


def converting_cpu() -> dict:
    """The CPU the gate ran on, and whether it has bfloat16 instructions (else PyTorch emulated them)."""
    reason = bf16_unsupported()
    found = {"cpu": cpu_model(), "bf16_instructions": reason is None}
    return {**found, "emulated": reason} if reason else found
