"""Front-end latency: volume -> segmentation -> the four maps (target <= 1.0 s on the 2-core CPU)."""

import sdk


def test_segment(benchmark, wide_volume):
    seg = benchmark.pedantic(sdk.retina.segment, args=(wide_volume,), rounds=5, warmup_rounds=1)
    assert seg.quality.gradable


def test_maps_extract(benchmark, wide_volume):
    maps = benchmark.pedantic(sdk.maps.extract, args=(wide_volume,), rounds=5, warmup_rounds=1)
    assert maps.quality.gradable
