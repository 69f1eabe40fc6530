"""Probe (not part of the SDK): why bf16 moved one eye's final probabilities by 0.076.

    python docs/bf16-probe/stacker_jump.py BUNDLE CHECKPOINT EYE

BUNDLE ships per-stage FP32 models (--target all); EYE indexes CHECKPOINT's calibration eyes. Prints
which pairwise (one-vs-one) SVMs of the stacker's calibrated members change sign between the FP32
and the bfloat16 stacking features of that eye, and the final P(normal), P(MY) along the straight
line between the two feature vectors: a jump there is a vote changing, not a steep function.
"""

import sys

import numpy as np
import torch
from probe import networks, run

from converters.int8 import calibration_inputs
from sdk.bundle import Bundle
from training.checkpoint import read_checkpoint

bundle = Bundle.load(sys.argv[1], trusted_keys=())
eye = int(sys.argv[3])
x = calibration_inputs(read_checkpoint(sys.argv[2]))[eye : eye + 1]
features = {}
for dtype in (torch.float32, torch.bfloat16):
    models = networks(bundle, dtype)
    stages = [np.stack(s) for s in zip(*(run(bundle, models, dtype, xi) for xi in x), strict=True)]
    features[dtype] = bundle.stacking_features(*stages)[0]
for m, svm in enumerate(bundle.stacker._svms):
    fp32, bf16 = (svm.ovo_values(features[d][None])[0] for d in (torch.float32, torch.bfloat16))
    names = [str(c) for c in bundle.stacker.classes_]  # the stacker's own (sorted) class order
    flips = [
        (f"{names[i]} vs {names[j]}", round(float(a), 4), round(float(b), 4))
        for (i, j), a, b in zip(svm.pairs, fp32, bf16, strict=True)
        if np.sign(a) != np.sign(b)
    ]
    print(f"calibrated member {m}: pairwise SVMs changing sign (pair, FP32 value, bf16 value): {flips}")
steps = np.linspace(0, 1, 11)
line = np.array([(1 - t) * features[torch.float32] + t * features[torch.bfloat16] for t in steps])
for t, p in zip(steps, bundle.final_probabilities(line), strict=True):
    print(f"t {t:.1f}: P(normal) {p[0]:.4f}, P(MY) {p[3]:.4f}")
