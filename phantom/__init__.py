"""Synthetic OCT volumes of the five classes (normal, FI, GE, MY, SS) with exact ground truth.

import phantom
eye = phantom.make_eye("FI", seed=3, laterality="OS")   # .volume (sdk.OCTVolume), .truth, .params
"""

from phantom.cohort import TYPE_MIX, EyeSpec, clinical_cohort, cohort, normative_eyes
from phantom.eye import DEFAULT_SHAPE, PROTOCOL_EXTENT_MM, Eye, Truth, make_eye
from phantom.params import GLAUCOMA_KINDS, KINDS, EyeParams

__all__ = [
    "make_eye",
    "cohort",
    "clinical_cohort",
    "normative_eyes",
    "EyeSpec",
    "TYPE_MIX",
    "Eye",
    "Truth",
    "EyeParams",
    "KINDS",
    "GLAUCOMA_KINDS",
    "DEFAULT_SHAPE",
    "PROTOCOL_EXTENT_MM",
]
