"""OCT glaucoma-type SDK: one 3-D OCT volume in, normal / FI / GE / MY / SS out.

Public names (see docs/ARCHITECTURE.md)::

    import sdk
    vol = sdk.read_volume("scan.dcm")  # or sdk.OCTVolume(array, spacing_mm=..., laterality="OD")
    seg = sdk.retina.segment(vol)
    maps = sdk.maps.extract(vol, normative)

Only numpy and scipy are imported here; readers and backends import their libraries when used.
"""

from importlib import import_module

from sdk.errors import (
    BackendUnavailable,
    BundleError,
    CohortError,
    FileError,
    InvalidVolume,
    OCTError,
    UnsupportedFormat,
    UnsupportedScan,
)
from sdk.volume import OCTVolume

__version__ = "0.1.0"

_LAZY = {
    "read_volume": ("sdk.io", "read_volume"),
    "io": ("sdk.io", None),
    "retina": ("sdk.retina", None),
    "maps": ("sdk.maps", None),
    "stacking": ("sdk.stacking", None),
    "Classifier": ("sdk.classifier", "Classifier"),
    "Diagnosis": ("sdk.diagnosis", "Diagnosis"),
    "report": ("sdk.report", None),
}


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'sdk' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


__all__ = [
    "OCTVolume",
    "OCTError",
    "InvalidVolume",
    "UnsupportedFormat",
    "UnsupportedScan",
    "BundleError",
    "BackendUnavailable",
    "CohortError",
    "FileError",
    "__version__",
    *_LAZY,
]
