"""Probe (not part of the SDK): a bundle's merged stage models quantised to int8, speed and agreement.

    python docs/int8-probe/probe.py BUNDLE [N_MAPS]

ONNX Runtime ``quantize_static``: QDQ format, per-channel int8 weights, uint8 activations, only the
convolutions quantised (head and softmax stay float), calibrated on the bundle's golden inputs and
compared with the FP32 merged model on the same inputs (so the agreement is a best case).
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from sdk.bundle import Bundle


class Inputs(CalibrationDataReader):
    def __init__(self, x: np.ndarray, name: str):
        self._feeds = iter([{name: xi[None]} for xi in x])

    def get_next(self):
        return next(self._feeds, None)


def median_run_s(session, feed, rounds=5) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(path: str, n_maps: int) -> None:
    bundle = Bundle.load(path)
    inputs = bundle.golden()["inputs"]
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for m, spec in enumerate(bundle.merged[:n_maps]):
        x = inputs[:, m]
        int8 = Path(tempfile.mkdtemp()) / "int8.onnx"
        start = time.perf_counter()
        quantize_static(
            str(spec.files["fp32"]),
            str(int8),
            Inputs(x, spec.input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            op_types_to_quantize=["Conv"],
        )
        quantise_s = time.perf_counter() - start
        sessions = [
            ort.InferenceSession(str(f), options, providers=["CPUExecutionProvider"])
            for f in (spec.files["fp32"], int8)
        ]
        outputs = [[s.run(None, {spec.input_name: xi[None]}) for xi in x] for s in sessions]
        for k in range(2):
            fp32, q8 = (np.concatenate([o[k] for o in out]) for out in outputs)
            print(
                f"{spec.map_name} stage {k + 1}: max |dp| {np.abs(fp32 - q8).max():.4f}, "
                f"same top class {np.mean(fp32.argmax(1) == q8.argmax(1)):.0%} of {len(x)}"
            )
        fp32_s, int8_s = (median_run_s(s, {spec.input_name: x[:1]}) for s in sessions)
        print(f"{spec.map_name}: quantised in {quantise_s:.1f} s; FP32 {fp32_s:.4f} s, int8 {int8_s:.4f} s")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 4)
