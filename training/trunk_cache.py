"""Frozen leading layers: their outputs computed once per eye, and the trainable rest of a network.

A network whose first ``frozen_layers`` modules of ``features`` keep their pretrained weights gives
the same outputs there in every network, every fold and every epoch. So they run once per eye and
map (:func:`frozen_outputs`), and training runs only the rest (:class:`Trainable`) on those outputs.
With torchvision's indices: 28 freezes the first 12 convolutions (blocks 1-4 and block 5's first
two) and trains conv5_3 and the head; 24 freezes blocks 1-4 and trains block 5.
"""

from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np
import torch
from torch import nn

from sdk.nets.vgg16 import VGG16

BATCH = 64


class Trainable(nn.Module):
    """The part of ``model`` after its first ``frozen_layers`` feature modules: input (batch, channels,
    h, w) = those layers' outputs, output logits (batch, num_classes). Shares ``model``'s parameters
    (training it trains ``model``); the frozen ones have requires_grad False."""

    def __init__(self, model: VGG16, frozen_layers: int):
        super().__init__()
        self.rest = model.features[frozen_layers:]
        self.pool, self.dropout, self.head = model.pool, model.dropout, model.head
        for p in model.features[:frozen_layers].parameters():
            p.requires_grad_(False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.pool(self.rest(z)).flatten(1)))


def trainable(model: VGG16, frozen_layers: int) -> nn.Module:
    """``model`` itself (nothing frozen) or its :class:`Trainable` part."""
    return Trainable(model, frozen_layers) if frozen_layers else model


def frozen_outputs(model: VGG16, frozen_layers: int, x: np.ndarray) -> np.ndarray:
    """Outputs of ``model.features[:frozen_layers]`` for images x (n, 3, height, width) float32: float32
    (n, channels, h, w), computed in batches without gradients, on every core: this runs before the
    training processes start, in a process that keeps one torch thread for itself while they run."""
    prefix = model.features[:frozen_layers].eval()
    with torch.inference_mode(), _all_cores():
        out = [
            prefix(torch.from_numpy(np.ascontiguousarray(b))).numpy()
            for b in np.array_split(x, max(1, -(-len(x) // BATCH)))
        ]
    return np.concatenate(out).astype(np.float32) if out else np.empty((0,), np.float32)


@contextmanager
def _all_cores():
    """torch's intra-op threads set to one per core inside the block, restored after it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
