"""int8 merged stage models: ONNX Runtime static quantisation, calibrated on the training eyes, gated.

    x = calibration_inputs(checkpoint)                   # (n, 4, 3, H, W) from calibration.npz
    quantise(fp32_file, x[0::2, m], int8_file)           # one map's merged model
    checks = gate(fp32_files, int8_files, x_gate, stacker, tolerance)   # ValueError beyond it

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

import logging
from pathlib import Path

import numpy as np
import onnx

from converters.onnx_export import onnx_outputs
from converters.shared_trunk import OUTPUTS
from converters.verify import Agreement
from sdk.bundle import final_probabilities
from sdk.bundle import stacking_features as stack_features
from sdk.labels import STAGE1_CLASSES, STAGE2_CLASSES, stacking_features
from sdk.maps import MAP_NAMES
from training.checkpoint import CALIBRATION_FILE, Checkpoint
from training.data import network_inputs

QUANTISED_OPS = ("Conv",)
METHOD = (
    "converters.int8: onnxruntime quantize_static QDQ, every Conv but the first, int8 per-channel 7-bit "
    "weights, uint8 activations, MinMax calibration on half the checkpoint's calibration eyes"
)
MIN_CALIBRATION_EYES = 4  # 2 to calibrate, 2 more to gate

_LOG = logging.getLogger(__name__)


def calibration_inputs(checkpoint: Checkpoint) -> np.ndarray:
    """Network inputs (n, 4, 3, H, W) float32 of the checkpoint's calibration eyes, deviations from its
    normative database; ValueError if it keeps none (or too few)."""
    thickness = checkpoint.calibration_um
    if thickness is None or len(thickness) < MIN_CALIBRATION_EYES:
        found = 0 if thickness is None else len(thickness)
        raise ValueError(
            f"checkpoint {checkpoint.path} keeps {found} calibration eyes ({CALIBRATION_FILE}), int8 needs "
            f">= {MIN_CALIBRATION_EYES}: train it again with this version (python -m training.train), "
            "or convert without --int8"
        )
    return network_inputs(thickness, checkpoint.normative, checkpoint.input_hw)


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


def gate(fp32_files: list[Path], int8_files: list[Path], x: np.ndarray, stacker, tolerance: dict) -> dict:
    """Agreement of the int8 merged models with the FP32 ones on ``x`` (n, 4, 3, H, W): per map and
    stage, and the final probabilities. Returns the checks (``Agreement.to_dict`` per row); ValueError
    naming the first row beyond ``tolerance``."""
    n = len(x)
    classes = (STAGE1_CLASSES, STAGE2_CLASSES)
    got = {
        name: np.empty((n, len(MAP_NAMES), len(c)), np.float32)
        for name, c in zip(OUTPUTS, classes, strict=True)
    }
    reference = {name: np.empty_like(array) for name, array in got.items()}
    agreements = []
    for m, map_name in enumerate(MAP_NAMES):
        for results, file in ((reference, fp32_files[m]), (got, int8_files[m])):
            for name, output in zip(OUTPUTS, onnx_outputs(file, x[:, m], list(OUTPUTS)), strict=True):
                results[name][:, m] = output
        for stage, name in enumerate(OUTPUTS, start=1):
            agreements.append(
                Agreement.of(
                    f"{map_name}.stage{stage} int8 vs FP32", got[name][:, m], reference[name][:, m], tolerance
                )
            )
    final = [
        final_probabilities(stacker, stack_features(stacking_features(), r["stage1"], r["stage2"]))
        for r in (got, reference)
    ]
    agreements.append(Agreement.of("final int8 vs FP32", *final, tolerance))
    _LOG.info("%s", "; ".join(f"{a.name}: {a.summary()}" for a in agreements))
    for agreement in agreements:
        if not agreement.passed:
            raise ValueError(f"{agreement.name}: {agreement.summary()}; bundle not written")
    return {a.name: a.to_dict() for a in agreements}
