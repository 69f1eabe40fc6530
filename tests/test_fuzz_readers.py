"""Mutated files of every format are read consistently or refused with an sdk.errors exception, in
bounded memory (hypothesis drives benchmarks.fuzz_readers' mutations; about 30 s in all on 2 CPUs).

The 5,000-files-per-format measurement is ``python -m benchmarks.fuzz_readers --files 5000``.
"""

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks import fuzz_readers as fuzz

CAP_BYTES = fuzz.DEFAULT_CAP_BYTES
EXAMPLES = {"npz": 250, "npy": 250, "dicom": 150, "topcon": 250, "vol": 150, "e2e": 150}
mutation = st.tuples(st.sampled_from(fuzz.MUTATIONS), st.floats(0, 1), st.integers(0, 2**62))


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_mutated_files_are_read_consistently_or_refused_cleanly(name, folder):
    seeds = fuzz.SEEDS[name]()
    others = [seed.content for seed in seeds]
    fuzz.warm_up(name, seeds, folder, CAP_BYTES)  # each seed reads back; imports done before measuring

    @settings(
        max_examples=EXAMPLES[name], deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(index=st.integers(0, len(seeds) - 1), mutations=st.lists(mutation, min_size=1, max_size=4))
    def read_mutated(index, mutations):
        seed = seeds[index]
        content, changed = fuzz.mutate(seed.content, mutations, others)
        path = folder / f"{name}{seed.suffix}"
        path.write_bytes(content)
        outcome, detail, peak = fuzz.read_one(path, seed, CAP_BYTES)
        assert outcome != "other", f"{type(detail).__name__}: {detail}"
        if outcome == "accepted":
            assert fuzz.classify(detail, seed, changed) != "disagreement"
        assert peak <= 2 * CAP_BYTES

    read_mutated()


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_reading_a_volume_as_large_as_the_cap_peaks_under_twice_the_cap(name, folder):
    cap_bytes = 2 * 2**20
    peak, voxel_bytes = fuzz.peak_at_cap(name, cap_bytes, folder)
    assert voxel_bytes > 0.9 * cap_bytes and peak <= 2 * cap_bytes


def test_a_mutation_inside_the_pixels_is_told_from_one_outside():
    seed = fuzz.npy_seeds()[0]
    start, end = seed.pixels
    assert fuzz.touches([("flip", start, start + 1)], seed.pixels)
    assert fuzz.touches([("insert", end - 1, end - 1)], seed.pixels)
    assert not fuzz.touches([("flip", start - 1, start)], seed.pixels)
    assert not fuzz.touches(
        [("insert", start - 1, start - 1)], seed.pixels
    )  # shifts the pixels: must not read
