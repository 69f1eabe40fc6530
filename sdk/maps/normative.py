"""Normative database: per-pixel mean and sd of the thickness maps of normal eyes, and deviation maps.

A deviation map is the z-score of each pixel against normal eyes, (thickness - mean) / sd: about
-1.64 is the 5th percentile of normal eyes and -2.33 the 1st (the yellow and red of a vendor's
significance map). Stored as plain arrays in an .npz (no pickle).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sdk.errors import BundleError, FileError
from sdk.files import write_atomically
from sdk.maps.geometry import GCC_FIELD_MM, MAP_SIZE_PX, RNFL_FIELD_MM

FORMAT_VERSION = 1
MIN_SD_UM = 2.0  # floor on the per-pixel sd, so a pixel where normals agree closely is not over-weighted
MIN_EYE_FRACTION = 0.5  # a pixel needs a measurement in at least half the normal eyes
Z_PERCENTILE_5 = -1.645
Z_PERCENTILE_1 = -2.326
_KEYS = ("rnfl_mean_um", "rnfl_sd_um", "gcc_mean_um", "gcc_sd_um")


@dataclass(frozen=True)
class Normative:
    """Per-pixel statistics of normal eyes, each (MAP_SIZE_PX, MAP_SIZE_PX) in micrometres; NaN
    where too few normal eyes had a measurement."""

    rnfl_mean_um: np.ndarray
    rnfl_sd_um: np.ndarray
    gcc_mean_um: np.ndarray
    gcc_sd_um: np.ndarray
    n_eyes: int

    @classmethod
    def fit(cls, rnfl_maps_um, gcc_maps_um) -> Normative:
        """Fit from the thickness maps of normal eyes: two sequences of (224, 224) arrays (NaN = masked)."""
        rnfl = np.asarray(rnfl_maps_um, dtype=np.float64)
        gcc = np.asarray(gcc_maps_um, dtype=np.float64)
        expected = (MAP_SIZE_PX, MAP_SIZE_PX)
        if rnfl.ndim != 3 or gcc.shape != rnfl.shape or rnfl.shape[1:] != expected:
            raise ValueError(f"need two equal stacks of {expected} maps, got {rnfl.shape} and {gcc.shape}")
        if rnfl.shape[0] < 2:
            raise ValueError(f"a normative database needs at least 2 normal eyes, got {rnfl.shape[0]}")
        empty = [i for i in range(rnfl.shape[0]) if np.isnan(rnfl[i]).all() or np.isnan(gcc[i]).all()]
        if empty:
            raise ValueError(f"normal eyes {empty} have no thickness values (ungradable): leave them out")
        (rnfl_mean, rnfl_sd), (gcc_mean, gcc_sd) = [_pixel_stats(stack) for stack in (rnfl, gcc)]
        return cls(rnfl_mean, rnfl_sd, gcc_mean, gcc_sd, n_eyes=int(rnfl.shape[0]))

    def deviation(self, rnfl_um: np.ndarray, gcc_um: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z-score maps of an eye's RNFL and GCC thickness maps (NaN where either is unknown)."""
        return ((rnfl_um - self.rnfl_mean_um) / self.rnfl_sd_um).astype(np.float32), (
            (gcc_um - self.gcc_mean_um) / self.gcc_sd_um
        ).astype(np.float32)

    def save(self, path, *, overwrite: bool = False) -> None:
        """Write an .npz of plain arrays (atomically; never over an existing file unless asked)."""
        arrays = {key: getattr(self, key).astype(np.float32) for key in _KEYS}
        arrays.update(
            format_version=np.int64(FORMAT_VERSION),
            n_eyes=np.int64(self.n_eyes),
            map_size_px=np.int64(MAP_SIZE_PX),
            rnfl_field_mm=np.float64(RNFL_FIELD_MM),
            gcc_field_mm=np.float64(GCC_FIELD_MM),
        )
        write_atomically(path, lambda file: np.savez(file, **arrays), overwrite=overwrite)

    @classmethod
    def load(cls, path) -> Normative:
        """Read a file written by ``save``; BundleError if it is not one, or was made for other maps."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {key: z[key] for key in z.files}
        except FileNotFoundError:
            raise FileError(f"normative file {path} does not exist") from None
        except (ValueError, OSError) as exc:
            raise BundleError(
                f"normative file {path} is not a readable .npz of plain arrays: {exc}"
            ) from None
        missing = [
            k
            for k in (*_KEYS, "format_version", "n_eyes", "map_size_px", "rnfl_field_mm", "gcc_field_mm")
            if k not in arrays
        ]
        if missing:
            raise BundleError(f"normative file {path} lacks {', '.join(missing)}")
        if int(arrays["format_version"]) != FORMAT_VERSION:
            raise BundleError(
                f"normative file {path} has format {int(arrays['format_version'])}; "
                f"this SDK reads format {FORMAT_VERSION}"
            )
        made_for = (int(arrays["map_size_px"]), float(arrays["rnfl_field_mm"]), float(arrays["gcc_field_mm"]))
        if made_for != (MAP_SIZE_PX, RNFL_FIELD_MM, GCC_FIELD_MM):
            raise BundleError(
                f"normative file {path} was made for maps (size px, RNFL mm, GCC mm) {made_for}, "
                f"this SDK makes {(MAP_SIZE_PX, RNFL_FIELD_MM, GCC_FIELD_MM)}"
            )
        for key in _KEYS:
            if arrays[key].shape != (MAP_SIZE_PX, MAP_SIZE_PX):
                raise BundleError(f"normative file {path}: {key} has shape {arrays[key].shape}")
        rnfl_mean, rnfl_sd, gcc_mean, gcc_sd = (arrays[k].astype(np.float32) for k in _KEYS)
        return cls(rnfl_mean, rnfl_sd, gcc_mean, gcc_sd, n_eyes=int(arrays["n_eyes"]))


def _pixel_stats(stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and floored sd of (n_eyes, H, W) thickness maps, NaN where data are too few."""
    count = np.isfinite(stack).sum(axis=0)
    enough = count >= max(2, MIN_EYE_FRACTION * stack.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nansum(stack, axis=0)
        mean = np.where(enough, total / np.maximum(count, 1), np.nan)
        squares = np.nansum((stack - mean) ** 2, axis=0)
        sd = np.sqrt(squares / np.maximum(count - 1, 1))
    sd = np.where(enough, np.maximum(sd, MIN_SD_UM), np.nan)
    return mean.astype(np.float32), sd.astype(np.float32)
