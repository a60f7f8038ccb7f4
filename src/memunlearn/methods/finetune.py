"""Finetune: keep training on the retain set only (SPEC §3)."""

from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

from ..data.core import Examples
from ..params import SGD_PARAMS
from . import register_method
from .base import UnlearningRun, UnlearnResult, train_epochs_ce


def finetune(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    epochs: int = 5,
    lr: float = 0.02,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Cross-entropy on the retain set with a cosine schedule; forgetting comes from not seeing D_f."""
    run = UnlearningRun("finetune", model, mask, device=device, seed=seed)
    train_epochs_ce(run, retain, epochs, lr, batch_size, momentum, weight_decay)
    return run.finish(dict(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay))


register_method("finetune", finetune, params=SGD_PARAMS)
