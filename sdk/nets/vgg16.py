"""VGG16 for the 4 maps x 2 stages: torchvision's convolutional trunk with a small head.

The trunk (``features``) is torchvision's VGG16, configuration "D" without batch norm, with the same
module indices and parameter names (``features.0.weight`` ... ``features.28.bias``), so torchvision's
ImageNet file ``vgg16-397923af.pth`` loads into it (:func:`load_imagenet_features`).

The head is *not* torchvision's 4096-wide ``classifier`` (120 M parameters; eight networks run on the
instrument). It is global average pooling over the last feature map, dropout and one linear layer,
stored as ``head.weight`` (num_classes, 512) and ``head.bias`` (num_classes,): 1 k parameters for
stage 1 and 2 k for stage 2, beside the trunk's 14.7 M. :meth:`VGG16.forward` returns logits; the
class probabilities are their softmax (the ONNX export appends it).

Input: float32 (batch, 3, height, width), height and width >= 32 px (the trunk halves them five
times), normalised as for ImageNet when the ImageNet start is used. Output: (batch, num_classes).
"""

from __future__ import annotations

import copy
import os

import torch
from torch import nn

VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")
"""torchvision's configuration "D": conv output channels, "M" for a 2x2 max-pool."""

IN_CHANNELS = 3
MIN_INPUT_PX = 32


def scaled_channels(channels: int, width: float) -> int:
    """Channel count of a conv at ``width``: ``round(channels * width)``, half to even, at least 1.

    Width 0.125 gives 8, 16, 32, 64, 64 channels in blocks 1-5.
    """
    return max(1, round(channels * width))


class VGG16(nn.Module):
    """VGG16 trunk (torchvision names) + global-average-pool, dropout, linear head.

    Parameters
    ----------
    num_classes : number of outputs (2 for stage 1, 4 for stage 2).
    width : scale of every conv's channel count (see :func:`scaled_channels`); 1.0 is VGG16 and the
        only width the ImageNet weights fit. Smaller widths are for CPU experiments.
    dropout : drop probability before the linear layer, in training mode only.

    Initialisation follows torchvision: convs He-normal (fan_out, ReLU) with zero bias; the linear
    layer normal(0, 0.01) with zero bias.
    """

    def __init__(self, num_classes: int, width: float = 1.0, dropout: float = 0.5):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes is {num_classes}: a classifier needs at least 2 classes")
        if not width > 0:
            raise ValueError(f"width is {width}: it scales channel counts and must be > 0")
        self.num_classes = num_classes
        self.width = width
        self.dropout_p = dropout
        layers: list[nn.Module] = []
        in_channels = IN_CHANNELS
        for c in VGG16_CONFIG:
            if isinstance(c, str):  # "M"
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                out_channels = scaled_channels(c, width)
                layers += [
                    nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                    nn.ReLU(inplace=True),
                ]
                in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(in_channels, num_classes)
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:  # every conv here has one
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, 0.0, 0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 3, height, width) float32, height and width >= 32 px -> logits (batch, num_classes)."""
        return self.forward_from(x, 0)

    def forward_from(self, z: torch.Tensor, start: int) -> torch.Tensor:
        """Logits (batch, num_classes) from ``z``, the output of ``features[:start]`` (the input itself
        for 0): the rest of the features, pooling, dropout and the head."""
        z = self.pool(self.features[start:](z)).flatten(1)
        return self.head(self.dropout(z))


def shared_prefix(a: VGG16, b: VGG16) -> int:
    """How many leading ``features`` modules ``a`` and ``b`` hold in common: the same kind of layer
    with bitwise-equal parameters (the frozen trunk of a pretrained pair, or stage 2's layers kept at
    stage 1's), so that ``a.features[:n]`` computes what ``b.features[:n]`` would."""
    n = 0
    for m, k in zip(a.features, b.features, strict=True):
        same_kind = type(m) is type(k) and repr(m) == repr(k)
        ours, theirs = list(m.parameters()), list(k.parameters())
        if not (same_kind and len(ours) == len(theirs) and all(map(torch.equal, ours, theirs))):
            break
        n += 1
    return n


def load_imagenet_features(model: VGG16, path: str | os.PathLike) -> int:
    """Load the trunk of torchvision's ImageNet VGG16 file (``vgg16-397923af.pth``) into ``model``.

    Every ``features.*`` tensor of ``model`` must be in the file with the same shape; the file's
    ``classifier.*`` tensors are ignored (this model has its own head). Only width 1.0 fits.

    Returns the number of tensors loaded (26: 13 conv weights and 13 biases).
    Raises ValueError naming the missing file, the first missing key or the first shape mismatch.
    """
    if not os.path.isfile(path):
        raise ValueError(
            f"ImageNet weights file {os.fspath(path)!r} does not exist: give the path of torchvision's "
            "vgg16-397923af.pth"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    wanted = model.features.state_dict()
    for name, tensor in wanted.items():
        key = f"features.{name}"
        if key not in state:
            raise ValueError(f"{os.fspath(path)!r} has no tensor {key!r}: it is not a torchvision VGG16 file")
        if state[key].shape != tensor.shape:
            raise ValueError(
                f"{key} is {tuple(state[key].shape)} in {os.fspath(path)!r} but {tuple(tensor.shape)} "
                f"in the model (width {model.width}): ImageNet weights fit width 1.0 only"
            )
    model.features.load_state_dict({name: state[f"features.{name}"] for name in wanted})
    return len(wanted)


def transfer_from(stage1_model: VGG16, num_classes: int) -> VGG16:
    """Stage 2 start ("hierarchical transfer learning"): a new VGG16 with a copy of the stage-1 trunk.

    The new model has the same width and dropout, features equal to (and independent of) the
    stage-1 model's, every parameter trainable, and a freshly initialised head for ``num_classes``.
    ``stage1_model`` is not changed.
    """
    model = VGG16(num_classes, width=stage1_model.width, dropout=stage1_model.dropout_p)
    model.features = copy.deepcopy(stage1_model.features)
    for p in model.features.parameters():
        p.requires_grad_(True)
    return model


def freeze_blocks(model: VGG16, n_blocks: int) -> list[str]:
    """Freeze VGG blocks 1..n_blocks (every conv up to the n-th max-pool); unfreeze the later ones.

    ``n_blocks`` 0 unfreezes the whole trunk, 5 freezes all of it; the head is left as it is. The
    trunk has no batch norm, so frozen blocks behave the same in train and eval mode.
    Returns the names of the frozen parameters (e.g. ``features.0.weight``).
    """
    pool_indices = [i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d)]  # 4, 9, ... 30
    if not 0 <= n_blocks <= len(pool_indices):
        raise ValueError(f"n_blocks is {n_blocks}: VGG16 has blocks 1..{len(pool_indices)}, use 0 to 5")
    end = pool_indices[n_blocks - 1] if n_blocks else -1
    frozen = []
    for name, p in model.features.named_parameters():
        trainable = int(name.split(".")[0]) > end
        p.requires_grad_(trainable)
        if not trainable:
            frozen.append(f"features.{name}")
    return frozen


def count_macs(model: VGG16, input_hw: tuple[int, int]) -> int:
    """Multiply-accumulates of one forward pass of one image of ``input_hw`` (height, width) px.

    Counts convolutions (out_h * out_w * out_channels * in_channels/groups * kernel_h * kernel_w)
    and the linear head (in_features * out_features), from the layer shapes; bias adds, ReLU,
    pooling and softmax are not counted. VGG16 (width 1) at 224 x 224: 15.35 G in the trunk
    (15.47 G with torchvision's 4096-wide classifier instead of this head).
    """
    h, w = input_hw
    if h < MIN_INPUT_PX or w < MIN_INPUT_PX:
        raise ValueError(f"input is {h} x {w} px: VGG16 needs at least {MIN_INPUT_PX} x {MIN_INPUT_PX} px")
    macs = 0
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            if isinstance(m.padding, str):
                raise ValueError(f"a conv has padding {m.padding!r}: the count needs it in pixels")
            (kh, kw), (sh, sw), (ph, pw) = m.kernel_size, m.stride, m.padding
            h, w = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
            macs += h * w * m.out_channels * (m.in_channels // m.groups) * kh * kw
        elif isinstance(m, nn.MaxPool2d):
            size, stride = m.kernel_size, m.stride
            if not (isinstance(size, int) and isinstance(stride, int)):
                raise TypeError(f"a max-pool has size {size}, stride {stride}: the count needs one int each")
            h, w = (h - size) // stride + 1, (w - size) // stride + 1
    return macs + model.head.in_features * model.head.out_features
