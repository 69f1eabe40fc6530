"""The one place that turns maps into network input, with every constant it uses.

Each map is centred and scaled to roughly unit range (thickness in um around a typical normal
value; deviation z-scores clipped), masked pixels (disc, outside the scan) set to 0, resized to the
network's input size, and repeated on 3 channels (the networks start from 3-channel ImageNet
weights). The same function serves training and scan time, so there is no train/serve skew; its
constants are written into every bundle's manifest.
"""

from __future__ import annotations

import numpy as np

from sdk import ndimage
from sdk.maps.geometry import GCC_FIELD_MM, MAP_SIZE_PX, RNFL_FIELD_MM

MAP_NAMES = ("rnfl_thickness", "gcc_thickness", "rnfl_deviation", "gcc_deviation")
# (centre, scale): input = (value - centre) / scale
NORMALISATION = {
    "rnfl_thickness": (100.0, 50.0),  # um
    "gcc_thickness": (90.0, 30.0),  # um
    "rnfl_deviation": (0.0, 3.0),  # z-score
    "gcc_deviation": (0.0, 3.0),
}
CLIP = 4.0  # normalised values are clipped to [-CLIP, CLIP]
FILL_VALUE = 0.0  # masked pixels after normalisation
CHANNELS = 3


def to_network_input(maps: np.ndarray, input_hw=(MAP_SIZE_PX, MAP_SIZE_PX)) -> np.ndarray:
    """Network input of one eye.

    Parameters
    ----------
    maps : (4, 224, 224) float in MAP_NAMES order; NaN marks masked pixels.
    input_hw : (height, width) of the networks' input.

    Returns
    -------
    float32 (4, 3, height, width): one 3-channel image per map, in MAP_NAMES order.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape != (len(MAP_NAMES), MAP_SIZE_PX, MAP_SIZE_PX):
        raise ValueError(
            f"maps must be {(len(MAP_NAMES), MAP_SIZE_PX, MAP_SIZE_PX)} in {MAP_NAMES} order, "
            f"got {maps.shape}"
        )
    centre = np.array([NORMALISATION[n][0] for n in MAP_NAMES], np.float32)[:, None, None]
    scale = np.array([NORMALISATION[n][1] for n in MAP_NAMES], np.float32)[:, None, None]
    normalised = np.clip((maps - centre) / scale, -CLIP, CLIP)
    normalised = np.where(np.isfinite(normalised), normalised, FILL_VALUE).astype(np.float32)
    height, width = input_hw
    if (height, width) != (MAP_SIZE_PX, MAP_SIZE_PX):
        normalised = ndimage.zoom(
            normalised,
            (1, height / MAP_SIZE_PX, width / MAP_SIZE_PX),
            order=1,
            grid_mode=True,
            mode="nearest",
        )
    return np.repeat(normalised[:, None], CHANNELS, axis=1)


def preprocessing_constants(input_hw=(MAP_SIZE_PX, MAP_SIZE_PX)) -> dict:
    """Every constant between a volume's maps and the networks, for a bundle's manifest."""
    return {
        "map_names": list(MAP_NAMES),
        "map_size_px": MAP_SIZE_PX,
        "rnfl_field_mm": RNFL_FIELD_MM,
        "gcc_field_mm": GCC_FIELD_MM,
        "orientation": "OD: row 0 superior, column 0 temporal; OS eyes mirrored",
        "normalisation": {name: {"centre": c, "scale": s} for name, (c, s) in NORMALISATION.items()},
        "clip": CLIP,
        "fill_value": FILL_VALUE,
        "channels": CHANNELS,
        "input_hw": [int(input_hw[0]), int(input_hw[1])],
        "resize": "linear (scipy.ndimage.zoom order 1, grid_mode)",
    }
