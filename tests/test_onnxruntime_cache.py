"""Optimised CPU models cached on the device (sdk.backends.onnxruntime_cache), through the real ONNX
Runtime backend on a copy of the frozen fixture bundle (cpu target: four merged models)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sdk import cpu
from sdk.backends import make_backend
from sdk.backends import onnxruntime_cache as cache
from sdk.bundle import Bundle
from sdk.engines.cache import ENV_VAR, EngineCache
from tests.bundle_helpers import copy_fixture


@pytest.fixture
def bundle(tmp_path) -> Bundle:
    loaded = Bundle.load(copy_fixture(tmp_path), trusted_keys=())
    yield loaded
    loaded.close()


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    folder = tmp_path / "cache"
    folder.mkdir(mode=0o700)
    return folder


def run(bundle: Bundle, cache_dir, reads: list | None = None):
    """The backend's details["optimised_model_cache"] and its outputs on the first golden input;
    ``reads`` collects the bundle files read while the backend is made."""
    if reads is not None:
        read = bundle.read

        def counting(name):
            reads.append(str(name))
            return read(name)

        bundle.read = counting
    try:
        with make_backend(bundle, "onnxruntime", "fp32", cache_dir=cache_dir) as backend:
            return backend.details["optimised_model_cache"], backend.run(bundle.golden()["inputs"][0])
    finally:
        bundle.__dict__.pop("read", None)


def entries(cache_dir: Path) -> list[str]:
    return sorted(p.suffix for p in (cache_dir / cache.SUBFOLDER).iterdir() if not p.name.endswith(".lock"))


def test_a_hit_runs_the_saved_optimised_models_without_reading_the_bundles(bundle, cache_dir, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    _, reference = run(bundle, None)
    reads: list = []
    how, stored = run(bundle, cache_dir, reads)
    assert how == f"{cache_dir / cache.SUBFOLDER}: 4 stored"
    assert sum(name.endswith(".onnx") for name in reads) == 4
    assert entries(cache_dir) == [".engine"] * 4 + [".json"] * 4
    reads.clear()
    how, hit = run(bundle, cache_dir, reads)
    assert how == f"{cache_dir / cache.SUBFOLDER}: 4 hit"
    assert not any(name.endswith(".onnx") for name in reads)  # the entries stand for the checked bytes
    for outputs in (stored, hit):
        assert all(np.array_equal(a, b) for a, b in zip(outputs, reference, strict=True))


def test_a_damaged_entry_is_made_again_and_never_run(bundle, cache_dir):
    run(bundle, cache_dir)
    engine = sorted((cache_dir / cache.SUBFOLDER).glob("*.engine"))[0]
    data = bytearray(engine.read_bytes())
    data[len(data) // 2] ^= 0xFF
    engine.write_bytes(bytes(data))
    how, _ = run(bundle, cache_dir)
    assert sorted(how.split(": ")[1].split(", ")) == ["1 stored", "3 hit"]
    assert run(bundle, cache_dir)[0].endswith(": 4 hit")


def test_entries_are_keyed_by_the_cpu(bundle, cache_dir, tmp_path, monkeypatch):
    run(bundle, cache_dir)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Other CPU\nflags\t\t: fpu sse2 avx2\n")
    monkeypatch.setattr(cpu, "CPUINFO", cpuinfo)
    assert run(bundle, cache_dir)[0].endswith(": 4 stored")  # another CPU's layouts are not reused
    assert len(entries(cache_dir)) == 16


def test_no_cache_unless_a_folder_is_configured_and_none_others_may_write(bundle, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert run(bundle, None)[0] == f"off: no cache folder configured (--cache-dir or ${ENV_VAR})"
    assert not (tmp_path / "home").exists()
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    how, _ = run(bundle, shared)
    assert how == f"off: cache folder {shared} may be written by other users (mode drwxrwxrwx)"
    assert list(shared.iterdir()) == []
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env"))
    assert run(bundle, None)[0].endswith(": 4 stored")


def test_a_failed_store_keeps_the_session(bundle, cache_dir, monkeypatch):
    def full_disk(self, key, material, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(EngineCache, "_write", full_disk)
    how, outputs = run(bundle, cache_dir)
    assert how.endswith(": 4 not stored: [Errno 28] No space left on device")
    assert outputs[0].shape == (4, 2) and entries(cache_dir) == []
