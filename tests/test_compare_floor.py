"""benchmarks.compare's floor routes: each measures a real convolution and gives a rate in FLOP/s."""

import functools
import math

import numpy as np
import pytest

from benchmarks import compare

ROUTES = {
    "torch": compare.conv_flops,
    "torch_channels_last": functools.partial(compare.conv_flops, channels_last=True),
    "onnxruntime": compare.onnxruntime_conv_flops,
}


@pytest.mark.parametrize("route", ROUTES)
def test_each_convolution_route_gives_a_finite_rate(route, monkeypatch):
    timed = []
    real_measure = compare.measure

    def spy(function, rounds):
        timed.append(function)
        return real_measure(function, rounds)

    monkeypatch.setattr(compare, "measure", spy)
    rate = ROUTES[route](16, 12, rounds=2)
    assert math.isfinite(rate) and rate > 1e6  # a 16-channel 3 x 3 convolution, 12 x 12 px: MFLOP/s at least
    assert len(timed) == 1


def test_the_onnxruntime_route_times_the_convolution_torch_computes():
    import torch

    weight = np.random.default_rng(0).random((4, 4, 3, 3), dtype=np.float32)
    x = np.random.default_rng(1).random((1, 4, 6, 6), dtype=np.float32)
    got = compare.onnxruntime_conv_session(weight, 6).run(None, {"x": x})[0]
    expected = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight), padding=1).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
