"""Shared inputs for the latency benchmarks: made once per session, outside the timed calls."""

import pytest

import phantom


@pytest.fixture(scope="session")
def wide_volume():
    """The default wide-field phantom volume: 128 B-scans x 496 x 512 A-scans, 12 x 9 mm."""
    return phantom.make_eye("FI", seed=11).volume
