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
    """What a fit did: epochs run, the best epoch (1-based) and its validation loss."""

    epochs: int
    best_epoch: int
    val_loss: float


def fit_network(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    settings: FitSettings,
    seed: int,
) -> FitLog:
    """Train ``model`` in place on images ``x`` (n, 3, height, width) float32 with class indices ``y``
    (n,), early-stopping on (x_val, y_val); on the CPU deterministic for a given seed and thread count.

    Only parameters with requires_grad are trained (frozen blocks stay as they are).
    """
    torch.manual_seed(seed)
    order = torch.Generator().manual_seed(seed)
    num_classes = model.head.out_features
    counts = np.bincount(y, minlength=num_classes)
    weight = torch.tensor(len(y) / (num_classes * np.maximum(counts, 1)), dtype=torch.float32)
    loss_fn = nn.CrossEntropyLoss(weight=weight.to(DEVICE))
    model.to(DEVICE, memory_format=torch.channels_last)
    x_t, y_t = _images(x), torch.as_tensor(y, dtype=torch.long, device=DEVICE)
    x_v, y_v = _images(x_val), torch.as_tensor(y_val, dtype=torch.long, device=DEVICE)
    optimiser = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad],
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
    )
    best_loss, best_epoch, best_state = float("inf"), 0, None
    epoch = 0
    for epoch in range(1, settings.max_epochs + 1):
        model.train()
        for batch in torch.randperm(len(y_t), generator=order).split(settings.batch_size):
            batch = batch.to(DEVICE)
            optimiser.zero_grad(set_to_none=True)
            loss_fn(model(x_t[batch]), y_t[batch]).backward()
            optimiser.step()
        val_loss = _loss(model, x_v, y_v, loss_fn)
        if val_loss < best_loss:
            best_loss, best_epoch = val_loss, epoch
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif epoch - best_epoch >= settings.patience:
            break
    model.load_state_dict(best_state)
    model.eval().cpu()
    return FitLog(epoch, best_epoch, best_loss)


def predict_proba(model: nn.Module, x: np.ndarray) -> np.ndarray:
    """Softmax probabilities (n, num_classes) float64 of images ``x`` (n, 3, height, width) float32."""
    model.eval().to(DEVICE)
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


def _images(x: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(np.ascontiguousarray(x)).to(DEVICE)
    return tensor.contiguous(memory_format=torch.channels_last)


def _loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn) -> float:
    model.eval()
    with torch.inference_mode():
        logits = torch.cat([model(batch) for batch in x.split(PREDICT_BATCH)])
    return float(loss_fn(logits, y))
