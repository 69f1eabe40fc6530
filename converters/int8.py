"""int8 merged stage models: ONNX Runtime static quantisation, calibrated on the training eyes, gated.

    x = calibration_inputs(checkpoint, "int8")           # converters.precision_gate: (n, 4, 3, H, W)
    quantise(fp32_file, x[0::2, m], int8_file)           # one map's merged model
    got = merged_outputs(int8_files, x_gate)             # then converters.precision_gate.gate

Quantisation (``onnxruntime.quantization.quantize_static``, QDQ format, after ONNX Runtime's
``quant_pre_process``): every convolution but the first gets int8 weights per output channel and
uint8 input and output activations with ranges from MinMax calibration. The first convolution (it
reads the normalised maps; little compute, but quantising its heavy-tailed deviation input moved a
stage-2 probability by 0.27 instead of 0.06 on the trained cpu-transfer bundle), the head (pooling,
linear layer, softmax), the model's input and outputs stay float32. Weights use 7 of their 8 bits
(``reduce_range``): x86 CPUs without VNNI multiply uint8 by int8 with an instruction (AVX2
``vpmaddubsw``) whose 16-bit sum of two products can saturate with full-range weights, so full-range
models could give different answers on different CPUs; 7-bit weights cannot saturate it.

Calibration eyes are the even-numbered half of the checkpoint's calibration sample
(``training.train.calibration_eyes``, class-stratified training eyes); the gate compares int8 with
the FP32 merged models in ONNX Runtime on the other half and on the golden eyes: per map and stage,
and for the final probabilities through the bundle's stacker.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from converters.onnx_export import onnx_outputs
from sdk.bundle import MERGED_OUTPUTS

QUANTISED_OPS = ("Conv",)
METHOD = (
    "converters.int8: onnxruntime quantize_static QDQ, every Conv but the first, int8 per-channel 7-bit "
    "weights, uint8 activations, MinMax calibration on half the checkpoint's calibration eyes"
)


def quantise(fp32_file: Path, x: np.ndarray, int8_file: Path) -> None:
    """Write the int8 QDQ model of the float32 ONNX model ``fp32_file`` (input "input"), calibrated on
    ``x`` (n, 3, H, W)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = int8_file.with_suffix(".prepared.onnx")  # shapes inferred, graph optimised: what is quantised
    quant_pre_process(str(fp32_file), str(prepared))
    try:
        graph = onnx.load(prepared).graph
        first = [n.name for n in graph.node if n.op_type in QUANTISED_OPS and graph.input[0].name in n.input]
        _quantize(prepared, x, int8_file, exclude=first)
    finally:
        prepared.unlink(missing_ok=True)


def _quantize(fp32_file: Path, x: np.ndarray, int8_file: Path, exclude: list[str]) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Feeds(CalibrationDataReader):
        def __init__(self):
            self._rows = iter(x)

        def get_next(self):
            row = next(self._rows, None)
            return None if row is None else {"input": row[None]}

    quantize_static(
        str(fp32_file),
        str(int8_file),
        Feeds(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(QUANTISED_OPS),
        nodes_to_exclude=exclude,
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        calibration_providers=["CPUExecutionProvider"],
    )


def merged_outputs(files: list[Path], x: np.ndarray) -> dict[str, np.ndarray]:
    """ONNX Runtime (CPU) probabilities of the merged models ``files`` (one per map, MAP_NAMES order)
    for x (n, 4, 3, H, W): {"stage1": (n, 4, 2), "stage2": (n, 4, 4)} float32."""
    per_map = [onnx_outputs(file, x[:, m], list(MERGED_OUTPUTS)) for m, file in enumerate(files)]
    return {
        name: np.stack([outputs[k] for outputs in per_map], axis=1).astype(np.float32)
        for k, name in enumerate(MERGED_OUTPUTS)
    }
