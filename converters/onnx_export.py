"""PyTorch classifier -> ONNX file that outputs class probabilities, and its check against PyTorch.

The exported graph is the model in eval mode, float32, followed by a softmax over the classes, with
static shapes: input (batch, channels, height, width) float32, output (batch, num_classes) float32
probabilities.

Exporter: torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``). It needs
only torch and onnx, writes one self-contained file at the requested opset and takes a fraction of
a second. torch's default (``dynamo=True``) exporter needs the extra ``onnxscript`` package, writes
the weights to a separate ``.data`` file unless told otherwise, and with torch 2.13 cannot produce
opset 17 for these networks (with onnxscript 0.7.2 its version conversion fails and it falls back
to opset 18). torch marks the TorchScript exporter deprecated; its two deprecation warnings are
silenced here.
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings

import numpy as np
import onnx
import torch
from torch import nn

# Deprecation notices the TorchScript-based exporter prints on every call (see the module docstring).
_EXPORTER_WARNINGS = ("You are using the legacy TorchScript-based ONNX export", "The feature will be removed")


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    input_hw: tuple[int, int] = (224, 224),
    batch: int = 1,
    input_name: str = "input",
    output_name: str = "probabilities",
    opset: int = 17,
) -> dict:
    """Export ``model`` (images -> logits) with a softmax appended, as a static-shape float32 ONNX file.

    ``model`` maps (batch, channels, height, width) float32 to logits (batch, num_classes); the
    channel count is read from its first ``nn.Conv2d``. The model itself is not changed (a float32
    eval-mode copy is exported). ``path`` is written atomically (overwritten if it exists) and
    checked with ``onnx.checker`` (full check, with shape inference).

    Returns :func:`describe_onnx` of the written file.
    """
    first_conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if first_conv is None:
        raise ValueError("model has no nn.Conv2d: cannot tell its input channel count")
    if batch < 1:
        raise ValueError(f"batch is {batch}: it must be >= 1")
    network = nn.Sequential(copy.deepcopy(model), nn.Softmax(dim=1)).float().eval()
    example = torch.zeros(batch, first_conv.in_channels, *input_hw)
    tmp_path = f"{os.fspath(path)}.tmp"
    try:
        with warnings.catch_warnings():
            for message in _EXPORTER_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
            torch.onnx.export(
                network,
                (example,),
                tmp_path,
                dynamo=False,
                opset_version=opset,
                input_names=[input_name],
                output_names=[output_name],
                do_constant_folding=True,
            )
        onnx.checker.check_model(tmp_path, full_check=True)
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
    return describe_onnx(path)


def describe_onnx(path: str | os.PathLike) -> dict:
    """What a manifest records about an ONNX file, read from the file itself.

    Returns ``{"input_name", "input_shape", "output_name", "output_shape", "opset", "sha256"}``:
    shapes as lists of ints, opset of the default ONNX domain, sha256 of the file bytes (hex).
    Expects one input and one output with static shapes.
    """
    proto = onnx.load(os.fspath(path), load_external_data=False)
    (inp,), (out,) = proto.graph.input, proto.graph.output
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    with open(path, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    return {
        "input_name": inp.name,
        "input_shape": [d.dim_value for d in inp.type.tensor_type.shape.dim],
        "output_name": out.name,
        "output_shape": [d.dim_value for d in out.type.tensor_type.shape.dim],
        "opset": opset,
        "sha256": sha256,
    }


def onnx_probabilities(onnx_path: str | os.PathLike, inputs) -> np.ndarray:
    """Run an exported model with ONNX Runtime on the CPU.

    ``inputs``: (n, channels, height, width) float32 array or tensor, n a multiple of the model's
    static batch size (it is run in chunks of that size). Returns (n, num_classes) float32.
    """
    return onnx_outputs(onnx_path, inputs)[0]


def onnx_outputs(onnx_path: str | os.PathLike, inputs, names=None) -> list[np.ndarray]:
    """Every output (or the outputs ``names``) of a one-input model run with ONNX Runtime on the CPU,
    each (n, ...) float32, for ``inputs`` as in :func:`onnx_probabilities`."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    x = np.asarray(inputs, dtype=np.float32)
    batch = inp.shape[0]
    if x.ndim != 4 or len(x) % batch:
        raise ValueError(
            f"inputs have shape {x.shape}: expected (n, channels, height, width) with n a multiple of "
            f"the model's batch size {batch}"
        )
    chunks = [session.run(names, {inp.name: x[i : i + batch]}) for i in range(0, len(x), batch)]
    return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]


def check_against_torch(model: nn.Module, onnx_path: str | os.PathLike, inputs) -> float:
    """Largest absolute difference between ONNX Runtime (CPU) and PyTorch class probabilities.

    ``model`` maps images to logits (PyTorch probabilities are their softmax, computed in eval
    mode on a copy); ``inputs`` as for :func:`onnx_probabilities`. Returns a probability
    difference in [0, 1].
    """
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
    reference = copy.deepcopy(model).float().eval()
    with torch.inference_mode():
        expected = torch.softmax(reference(x), dim=1).numpy()
    return float(np.max(np.abs(onnx_probabilities(onnx_path, x.numpy()) - expected)))
