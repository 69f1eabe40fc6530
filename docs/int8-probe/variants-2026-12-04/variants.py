"""PYTHONPATH=. python variants.py CKPT FP32_BUNDLE VARIANT...: the int8 gate per quantisation variant
(the product's converters.int8 is "baseline"; the others change one option of quantize_static)."""

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from converters.bundle import TOLERANCES
from converters.int8 import QUANTISED_OPS, merged_outputs
from converters.precision_gate import calibration_inputs, gate
from sdk.bundle import Bundle
from training.checkpoint import read_checkpoint

ckpt = read_checkpoint(sys.argv[1])
bundle = Bundle.load(sys.argv[2])
fp32 = [Path(sys.argv[2]) / spec.files["fp32"] for spec in bundle.merged]
x = calibration_inputs(ckpt, "int8")
golden = bundle.golden()["inputs"]
x_gate = np.concatenate([x[1::2], golden])
print("calibration", len(x[0::2]), "gate", len(x_gate), flush=True)
reference = merged_outputs(fp32, x_gate)
work = Path(tempfile.mkdtemp())

VARIANTS = {
    "baseline": dict(method=CalibrationMethod.MinMax, reduce_range=True, exclude_last=0),
    "percentile": dict(method=CalibrationMethod.Percentile, reduce_range=True, exclude_last=0),
    "entropy": dict(method=CalibrationMethod.Entropy, reduce_range=True, exclude_last=0),
    "full-range": dict(method=CalibrationMethod.MinMax, reduce_range=False, exclude_last=0),
    "minmax-last3-fp32": dict(method=CalibrationMethod.MinMax, reduce_range=True, exclude_last=3),
    "percentile-last3-fp32": dict(method=CalibrationMethod.Percentile, reduce_range=True, exclude_last=3),
    "minmax-last1-fp32": dict(method=CalibrationMethod.MinMax, reduce_range=True, exclude_last=1),
}


class Feeds(CalibrationDataReader):
    def __init__(self, rows):
        self._rows = iter(rows)

    def get_next(self):
        row = next(self._rows, None)
        return None if row is None else {"input": row[None]}


for name in sys.argv[3:]:
    v = VARIANTS[name]
    files = []
    for m, f in enumerate(fp32):
        prepared = work / f"{m}.prepared.onnx"
        out = work / f"{name}.{m}.int8.onnx"
        quant_pre_process(str(f), str(prepared))
        graph = onnx.load(prepared).graph
        convs = [n for n in graph.node if n.op_type == "Conv"]
        first = [n.name for n in convs if graph.input[0].name in n.input]
        # merged models: the two stages' convs interleave; "last k" = the last k convs of each stage by order
        last = []
        if v["exclude_last"]:
            names = [n.name for n in convs]
            # stage split: convs reading from a shared node appear twice; take the last k per distinct prefix
            by_stage = {}
            for n in names:
                by_stage.setdefault(n.startswith("stage2"), []).append(n)
            for group in by_stage.values():
                last += group[-v["exclude_last"] :]
        extra = {"CalibPercentile": 99.99} if v["method"] == CalibrationMethod.Percentile else {}
        quantize_static(
            str(prepared),
            str(out),
            Feeds(x[0::2, m]),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTISED_OPS),
            nodes_to_exclude=first + last,
            per_channel=True,
            reduce_range=v["reduce_range"],
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=v["method"],
            calibration_providers=["CPUExecutionProvider"],
            extra_options=extra,
        )
        files.append(out)
        if m == 0:
            print(name, "excluded", first + last, flush=True)
    got = merged_outputs(files, x_gate)
    try:
        gate("int8", got, reference, ckpt.stacker, TOLERANCES["int8"])
        print(name, "PASSED")
    except ValueError as e:
        print(name, "FAILED:", e)
    for stage in ("stage1", "stage2"):
        print(
            name,
            stage,
            "max|dp| per map",
            np.round(np.abs(got[stage] - reference[stage]).max(axis=(0, 2)), 4),
            flush=True,
        )
