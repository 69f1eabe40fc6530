"""Where the four maps lie on the retina, and the fields of view each protocol must cover.

Both maps are squares of ``MAP_SIZE_PX`` pixels in OD orientation: row 0 superior, column 0
temporal (a left eye's maps are mirrored left-right), so every eye reaches the networks the same
way round. The RNFL maps are centred on the optic disc (Bruch's-membrane opening), the GCC maps on
the fovea. Inside the disc the layers do not exist: those pixels are masked (NaN), as are pixels
outside the scanned field.
"""

from __future__ import annotations

import numpy as np

from sdk import ndimage
from sdk.errors import InvalidVolume

MAP_SIZE_PX = 224
RNFL_FIELD_MM = 5.0  # side of the RNFL maps' square, centred on the disc (holds the 3.46 mm circle)
GCC_FIELD_MM = 6.0  # side of the GCC maps' square, centred on the fovea (the macular cube's core)
# smallest field of view (y, x) in mm each protocol needs to hold its maps' landmarks
MIN_FIELD_MM = {"wide": (6.0, 9.0), "disc": (4.0, 4.0), "macula": (5.0, 5.0)}


def check_field_of_view(extent_mm, protocol: str) -> None:
    """Raise InvalidVolume if a volume of en-face extent (y, x) mm cannot hold its protocol's maps."""
    need_y, need_x = MIN_FIELD_MM[protocol]
    if extent_mm[0] < need_y or extent_mm[1] < need_x:
        what = {
            "wide": "both the optic disc and the macula",
            "disc": "the optic disc",
            "macula": "the macula",
        }[protocol]
        raise InvalidVolume(
            f"a {protocol!r} scan of {extent_mm[0]:.1f} x {extent_mm[1]:.1f} mm (B-scan axis x A-scan "
            f"axis) cannot hold {what}: at least {need_y:g} x {need_x:g} mm is needed; check spacing_mm "
            "and protocol"
        )


def map_positions_mm(centre_mm, field_mm: float, laterality: str):
    """(y, x) en-face mm positions of every map pixel: two (MAP_SIZE_PX, MAP_SIZE_PX) arrays."""
    offsets = (np.arange(MAP_SIZE_PX) + 0.5) * (field_mm / MAP_SIZE_PX) - field_mm / 2
    v, u = np.meshgrid(offsets, offsets, indexing="ij")
    mirror = 1.0 if laterality == "OD" else -1.0  # map column 0 is temporal
    return centre_mm[0] + v, centre_mm[1] + mirror * u


def sample(en_face: np.ndarray, spacing_mm, y_mm, x_mm) -> np.ndarray:
    """Bilinear sample of an en-face map (n_bscans, n_ascans) at (y, x) mm; NaN outside the scan or
    next to NaN samples."""
    rows = y_mm / spacing_mm[0] - 0.5
    cols = x_mm / spacing_mm[2] - 0.5
    coords = np.stack([rows, cols])
    invalid = ~np.isfinite(en_face)
    values = ndimage.map_coordinates(np.where(invalid, 0.0, en_face), coords, order=1, mode="nearest")
    touched = ndimage.map_coordinates(invalid.astype(np.float32), coords, order=1, mode="nearest") > 0
    n_b, n_a = en_face.shape
    outside = (rows < -0.5) | (rows > n_b - 0.5) | (cols < -0.5) | (cols > n_a - 0.5)
    return np.where(touched | outside, np.nan, values).astype(np.float32)


def inside_ellipse(y_mm, x_mm, centre_mm, semi_axes_mm) -> np.ndarray:
    """Boolean mask of positions inside an axis-aligned ellipse."""
    return ((y_mm - centre_mm[0]) / semi_axes_mm[0]) ** 2 + (
        (x_mm - centre_mm[1]) / semi_axes_mm[1]
    ) ** 2 < 1.0
