"""Binary closing and opening of en-face masks (sdk.retina.morphology) against scipy.ndimage's, pixel
for pixel: random masks, shapes near and below the structure's size, masks touching every edge,
all-true and all-false, and the disc's ellipse at the spacings of every protocol."""

import numpy as np
import pytest
from scipy import ndimage

from sdk.retina import morphology
from sdk.retina.landmarks import DISC_CLOSING_MM, _ellipse_structure

SPACINGS = [(0.0703, 0.0039, 0.0234), (0.047, 0.0039, 0.0117), (0.12, 0.0039, 0.012), (0.02, 0.0039, 0.4)]


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("shape", [(128, 512), (9, 23), (3, 5), (40, 1), (1, 40)])
@pytest.mark.parametrize("density", [0.3, 0.5, 0.7])
def test_closing_and_opening_are_scipys(spacing, shape, density):
    structure = _ellipse_structure(DISC_CLOSING_MM, spacing)
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    noise = rng.random(shape)
    mask = (ndimage.gaussian_filter(noise, 1.5) if min(shape) > 3 else noise) > np.quantile(
        noise, 1 - density
    )
    expected_closing = ndimage.binary_closing(mask, structure, border_value=0)
    np.testing.assert_array_equal(morphology.closing(mask, structure), expected_closing)
    np.testing.assert_array_equal(
        morphology.opening(mask, structure), ndimage.binary_opening(mask, structure)
    )


@pytest.mark.parametrize("fill", [True, False])
def test_uniform_masks_are_scipys(fill):
    structure = _ellipse_structure(DISC_CLOSING_MM, SPACINGS[0])
    mask = np.full((30, 60), fill)
    np.testing.assert_array_equal(
        morphology.closing(mask, structure), ndimage.binary_closing(mask, structure, border_value=0)
    )
    np.testing.assert_array_equal(
        morphology.opening(mask, structure), ndimage.binary_opening(mask, structure)
    )


def test_structures_that_are_not_centred_runs_are_refused():
    mask = np.ones((8, 8), bool)
    with pytest.raises(ValueError, match="odd"):
        morphology.closing(mask, np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="one run"):
        morphology.closing(mask, np.array([[1, 0, 1]], bool))
    with pytest.raises(ValueError, match="symmetric"):
        morphology.closing(mask, np.array([[0, 1, 0], [1, 1, 1], [1, 1, 1]], bool))
