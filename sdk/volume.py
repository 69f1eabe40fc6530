"""The SDK's one volume type, :class:`OCTVolume`, and its axis and coordinate conventions.

Axes of ``data`` (n_bscans, depth, n_ascans):

* axis 0, B-scan index (slow axis): superior -> inferior (B-scan 0 is the top of the en-face view);
* axis 1, depth: anterior (vitreous) -> posterior (choroid);
* axis 2, A-scan index (fast axis): left -> right of the en-face view as seen looking into the eye
  (fundus-photo orientation), so the optic disc lies right of the fovea in a right eye (OD) and left
  of it in a left eye (OS).

``spacing_mm`` = (bscan, axial, ascan) is the distance between neighbouring samples along each axis.
Sample ``i`` covers [i, i+1) * spacing and its centre is at (i + 0.5) * spacing, so the field of view
along an axis is n * spacing. En-face coordinates in mm are (y, x) = (along B-scans, along A-scans)
from the top-left corner.
"""

from __future__ import annotations

import math

import numpy as np

from sdk.errors import InvalidVolume, UnsupportedScan

LATERALITIES = ("OD", "OS")
PROTOCOLS = ("wide", "disc", "macula")
SUPPORTED_DTYPES = (np.uint8, np.uint16, np.float32, np.float64)
_LATERALITY_ALIASES = {"OD": "OD", "OS": "OS", "R": "OD", "L": "OS", "RIGHT": "OD", "LEFT": "OS"}
MIN_SAMPLES = (2, 32, 8)  # smallest n_bscans, depth, n_ascans a scan can be segmented with
PROVENANCE_KEYS = ("spacing_mm", "laterality", "protocol")  # what every volume says the source of
CALLER = "caller"  # the provenance of a value given to OCTVolume or read_volume by its caller
# (bscan, axial, ascan) spacing in mm that OCT devices of the retina produce: a value outside is a unit
# or order mistake in the metadata, and the front end's work is bounded only inside these limits
SPACING_RANGE_MM = ((0.001, 1.0), (0.0005, 0.02), (0.001, 0.5))


def normalise_laterality(laterality: str) -> str:
    """Return "OD" or "OS" for OD/OS/R/L/right/left (any case); raise InvalidVolume otherwise."""
    key = laterality.strip().upper() if isinstance(laterality, str) else None
    if key not in _LATERALITY_ALIASES:
        raise InvalidVolume(
            f"laterality {laterality!r} is not understood: use 'OD' (right eye) or 'OS' (left eye)"
        )
    return _LATERALITY_ALIASES[key]


def normalise_spacing(spacing_mm) -> tuple[float, float, float]:
    """Return spacing as three positive finite floats (bscan, axial, ascan) in mm, or raise."""
    if spacing_mm is None:
        raise InvalidVolume("spacing_mm is missing: give (bscan, axial, ascan) sample spacing in millimetres")
    try:
        values = tuple(float(v) for v in spacing_mm)
    except (TypeError, ValueError):
        raise InvalidVolume(
            f"spacing_mm {spacing_mm!r} is not three numbers (bscan, axial, ascan) in millimetres"
        ) from None
    if len(values) != 3:
        raise InvalidVolume(f"spacing_mm needs 3 values (bscan, axial, ascan) in mm, got {len(values)}")
    for name, v, (lo, hi) in zip(("bscan", "axial", "ascan"), values, SPACING_RANGE_MM, strict=True):
        if not math.isfinite(v) or v <= 0:
            raise InvalidVolume(f"spacing_mm {name} spacing is {v}: it must be a positive number of mm")
        if not lo <= v <= hi:
            raise InvalidVolume(
                f"spacing_mm {name} spacing {v:g} mm is outside what retinal OCT devices produce "
                f"({lo:g} to {hi:g} mm): is spacing_mm in (bscan, axial, ascan) order and in millimetres?"
            )
    return values


class OCTVolume:
    """One 3-D OCT volume: voxels, sample spacing, eye and scan protocol.

    Parameters
    ----------
    data : array (n_bscans, depth, n_ascans) of uint8, uint16, float32 or float64
        Linear or log-scaled reflectivity. Not copied: the volume keeps a read-only view.
    spacing_mm : (bscan, axial, ascan) sample spacing in millimetres.
    laterality : "OD" (right eye) or "OS" (left eye); R/L are accepted.
    protocol : "wide" (disc and macula in one cube), "disc" or "macula".
    provenance : where the metadata came from, {name: source} with at least the PROVENANCE_KEYS
        (e.g. {"spacing_mm": "@PARAM_SCAN_04", ...}), plus what else a reader records (the file,
        its format, "compression": "lossy ..." for lossy-compressed voxels). Keys left out read as
        "caller". :attr:`provenance` returns a copy.
    """

    __slots__ = ("data", "spacing_mm", "laterality", "protocol", "_provenance")

    def __init__(self, data, spacing_mm, laterality: str, protocol: str = "wide", *, provenance=None):
        array = np.asarray(data)
        _check_array(array)
        view = array.view()
        view.flags.writeable = False
        self.data = view
        self.spacing_mm = normalise_spacing(spacing_mm)
        self.laterality = normalise_laterality(laterality)
        if protocol not in PROTOCOLS:
            raise InvalidVolume(f"protocol {protocol!r} is unknown: use one of {', '.join(PROTOCOLS)}")
        self.protocol = protocol
        self._provenance = _check_provenance(provenance)

    @property
    def provenance(self) -> dict[str, str]:
        """{name: where it came from} for spacing_mm, laterality, protocol and what the reader adds."""
        return dict(self._provenance)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_bscans, depth, n_ascans)."""
        return self.data.shape

    @property
    def extent_mm(self) -> tuple[float, float, float]:
        """Field of view (bscan, axial, ascan) in mm: number of samples times spacing."""
        return tuple(n * s for n, s in zip(self.data.shape, self.spacing_mm, strict=True))

    def __repr__(self) -> str:
        ey, ez, ex = self.extent_mm
        return (
            f"OCTVolume(shape={self.shape}, dtype={self.data.dtype}, extent_mm=({ey:.2f}, {ez:.3f}, "
            f"{ex:.2f}), laterality={self.laterality!r}, protocol={self.protocol!r})"
        )


def _check_provenance(provenance) -> tuple[tuple[str, str], ...]:
    given = {} if provenance is None else provenance
    if not isinstance(given, dict) or not all(isinstance(v, str) for v in (*given, *given.values())):
        raise InvalidVolume(f"provenance {provenance!r} is not a dict of strings {{name: source}}")
    return tuple({**dict.fromkeys(PROVENANCE_KEYS, CALLER), **given}.items())


def _check_array(array: np.ndarray) -> None:
    if array.dtype == object or array.dtype.type not in SUPPORTED_DTYPES:
        raise InvalidVolume(
            f"voxel dtype {array.dtype} is not supported: use uint8, uint16, float32 or float64"
        )
    if array.ndim != 3:
        raise InvalidVolume(
            f"volume must be 3-D (n_bscans, depth, n_ascans), got {array.ndim}-D with shape {array.shape}"
        )
    if array.size == 0:
        raise InvalidVolume(f"volume is empty (shape {array.shape})")
    if array.shape[0] == 1:
        raise UnsupportedScan(
            f"volume has 1 B-scan of {array.shape[1]} x {array.shape[2]} samples: a single B-scan (a line "
            "or circle scan) is not a volume; the method needs a raster cube of the optic disc, the "
            "macula, or both in one wide cube",
            pattern="single B-scan",
            shape=array.shape,
        )
    for name, n, n_min in zip(("n_bscans", "depth", "n_ascans"), array.shape, MIN_SAMPLES, strict=True):
        if n < n_min:
            raise InvalidVolume(
                f"volume has {n} samples along {name} (shape {array.shape}); at least {n_min} are needed"
            )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        n_bad = int(array.size - np.count_nonzero(np.isfinite(array)))
        raise InvalidVolume(f"volume has {n_bad} NaN or infinite voxels; every voxel must be finite")
