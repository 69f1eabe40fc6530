"""Fit one stage network with early stopping, and run it; the processes that train in parallel.

Runs on the GPU when torch sees one (``DEVICE``), else on the CPU. Efficient on a CPU: tensors and
the model in channels-last memory order (about twice the speed of the default order for these
convolutions here), denormals flushed to zero, the training set held in memory, and the four maps'
networks trained in parallel processes of one torch thread each (:func:`training_pool`): on a shared
2-core machine, one process with 2 intra-op threads slowed down more than ten-fold whenever another
program took a core, as its threads wait on each other. The loss is cross-entropy weighted by inverse
class frequency, so a rare class (SS, normal eyes in stage 1) counts as much as a common one; the
same rule for every network. Models live on the CPU between calls.
"""

from __future__ import annotations

import os
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context

import numpy as np
import torch
from torch import nn

PREDICT_BATCH = 256
CHANNELS_LAST_MIN_PX = 32
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class FitSettings:
    """How a network is trained: AdamW, at most ``max_epochs`` passes over the training eyes,
    stopping after ``patience`` epochs without a lower validation loss; the weights of the best
    epoch are kept."""

    max_epochs: int
    patience: int
    batch_size: int
    learning_rate: float
    weight_decay: float


@dataclass(frozen=True)
class FitLog:
    """What a fit did: epochs run, the best epoch (1-based), its validation loss, and the optimiser
    steps taken (batches)."""

    epochs: int
    best_epoch: int
    val_loss: float
    steps: int = 0


def fit_network(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    settings: FitSettings,
    seed: int,
    max_steps: int | None = None,
) -> FitLog:
    """Train ``model`` in place on inputs ``x`` (n, channels, height, width) float32 (images, or a frozen
    trunk's outputs) with class indices ``y`` (n,), early-stopping on (x_val, y_val); on the CPU
    deterministic for a given seed and thread count.

    max_steps : instead of early stopping, exactly this many optimiser steps (batches), over as many
    epochs as they take; the weights of the epoch with the lowest validation loss are kept either way.
    Only parameters with requires_grad are trained (frozen blocks stay as they are).
    """
    torch.manual_seed(seed)
    order = torch.Generator().manual_seed(seed)
    num_classes = model.head.out_features
    counts = np.bincount(y, minlength=num_classes)
    weight = torch.tensor(len(y) / (num_classes * np.maximum(counts, 1)), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weight.to(DEVICE))
    model.to(DEVICE, memory_format=_memory_format(x))
    x_t, y_t = _images(x), torch.as_tensor(y, dtype=torch.long, device=DEVICE)
    x_v, y_v = _images(x_val), torch.as_tensor(y_val, dtype=torch.long, device=DEVICE)
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
    )
    best_loss, best_epoch, best_state = float("inf"), 0, None
    epoch = steps = 0
    max_epochs = settings.max_epochs if max_steps is None else 10**9
    while epoch < max_epochs and (max_steps is None or steps < max_steps):
        epoch += 1
        model.train()
        for batch in torch.randperm(len(y_t), generator=order).split(settings.batch_size):
            if max_steps is not None and steps == max_steps:
                break
            batch = batch.to(DEVICE)
            optimiser.zero_grad(set_to_none=True)
            loss_fn(model(x_t[batch]), y_t[batch]).backward()
            optimiser.step()
            steps += 1
        val_loss = _loss(model, x_v, y_v, loss_fn)
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif max_steps is None and epoch - best_epoch >= settings.patience:
            break
    model.load_state_dict(best_state)
    model.eval().cpu()
    return FitLog(epoch, best_epoch, best_loss, steps)


def predict_proba(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Softmax probabilities (n, num_classes) float64 of inputs ``x`` (n, channels, height, width) float32."""
    model.eval().to(DEVICE, memory_format=_memory_format(x))
    with torch.inference_mode():
        out = [torch.softmax(model(batch), dim=1).cpu() for batch in _images(x).split(PREDICT_BATCH)]
    model.cpu()
    return torch.cat(out).double().numpy() if out else np.empty((0, model.head.out_features))


def configure_torch(threads: int | None) -> None:
    """Intra-op threads (None: torch's default, one per core) and denormals flushed to zero (tiny
    weights and gradients in denormal form slow CPU arithmetic many-fold)."""
    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)


def default_workers() -> int:
    """Processes to train in: one per core on a CPU; one (this process) with a GPU."""
    return 1 if DEVICE.type == "cuda" else os.cpu_count() or 1


def training_pool(workers: int) -> Executor | None:
    """A pool of ``workers`` processes with one torch thread each, or None (train in this process)
    for one worker. Use as ``with training_pool(n) as pool`` only when it is not None."""
    if workers <= 1:
        return None
    return ProcessPoolExecutor(
        workers, mp_context=get_context("spawn"), initializer=configure_torch, initargs=(1,)
    )


def _memory_format(x) -> torch.memory_format:
    """Channels-last for images (about twice as fast here), the default order for the small spatial
    maps of a frozen trunk's outputs (channels-last is about half as fast at 4 x 4 px)."""
    return torch.channels_last if x.shape[-1] >= CHANNELS_LAST_MIN_PX else torch.contiguous_format


def _images(x: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(x)).to(DEVICE)
    return tensor.contiguous(memory_format=_memory_format(x))


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> float:
    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(batch) for batch in x.split(PREDICT_BATCH)])
    return float(loss_fn(logits, y))
