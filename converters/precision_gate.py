"""The gate a lower precision passes at conversion: its probabilities against FP32's on training eyes.

    x = calibration_inputs(checkpoint)                             # (n, 4, 3, H, W)
    checks = gate("int8", got, reference, stacker, tolerance)      # ValueError beyond the tolerance

``got`` and ``reference`` hold one precision's stage-1 (n, 4, 2) and stage-2 (n, 4, 4) probabilities
(keys "stage1", "stage2", maps in MAP_NAMES order) for the same inputs; the gate compares them per map
and stage, and the final probabilities through the bundle's stacker, with
:class:`converters.verify.Agreement` (largest difference, top class where the reference decides).
Used by :mod:`converters.int8` and :mod:`converters.bf16`.
"""

from __future__ import annotations

import logging

import numpy as np

from converters.verify import Agreement
from sdk.bundle import MERGED_OUTPUTS, final_probabilities
from sdk.bundle import stacking_features as stack_features
from sdk.labels import stacking_features
from sdk.maps import MAP_NAMES
from training.checkpoint import CALIBRATION_FILE, Checkpoint
from training.data import network_inputs

MIN_CALIBRATION_EYES = 4  # int8: 2 to calibrate, 2 more to gate

_LOG = logging.getLogger(__name__)


def calibration_inputs(checkpoint: Checkpoint, precision: str) -> np.ndarray:
    """Network inputs (n, 4, 3, H, W) float32 of the checkpoint's calibration eyes (class-stratified
    training eyes, ``training.train.calibration_eyes``), deviations from its normative database;
    ValueError naming ``precision`` if it keeps none (or too few)."""
    thickness = checkpoint.calibration_um
    if thickness is None or len(thickness) < MIN_CALIBRATION_EYES:
        found = 0 if thickness is None else len(thickness)
        raise ValueError(
            f"checkpoint {checkpoint.path} keeps {found} calibration eyes ({CALIBRATION_FILE}), {precision} "
            f"needs >= {MIN_CALIBRATION_EYES}: train it again with this version (python -m training.train), "
            f"or convert without --{precision}"
        )
    return network_inputs(thickness, checkpoint.normative, checkpoint.input_hw)


def gate(precision: str, got: dict, reference: dict, stacker, tolerance: dict) -> dict:
    """Agreement of ``precision``'s probabilities ``got`` with FP32's ``reference``: per map and stage,
    and the final probabilities. Returns the checks (``Agreement.to_dict`` per row); ValueError
    naming the first row beyond ``tolerance``."""
    agreements = [
        Agreement.of(
            f"{map_name}.stage{stage} {precision} vs FP32", got[name][:, m], reference[name][:, m], tolerance
        )
        for stage, name in enumerate(MERGED_OUTPUTS, start=1)
        for m, map_name in enumerate(MAP_NAMES)
    ]
    final = [
        final_probabilities(stacker, stack_features(stacking_features(), r["stage1"], r["stage2"]))
        for r in (got, reference)
    ]
    agreements.append(Agreement.of(f"final {precision} vs FP32", *final, tolerance))
    _LOG.info("%s", "; ".join(f"{a.name}: {a.summary()}" for a in agreements))
    for agreement in agreements:
        if not agreement.passed:
            raise ValueError(f"{agreement.name}: {agreement.summary()}; bundle not written")
    return {a.name: a.to_dict() for a in agreements}
