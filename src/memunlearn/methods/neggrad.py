"""NegGrad: gradient ascent on the forget set (SPEC §3)."""

from __future__ import annotations

import math
from typing import Mapping

from torch import Tensor, nn

from ..data.core import Examples
from ..params import LR, SGD_PARAMS
from . import register_method
from .base import UnlearningRun, UnlearnResult


def neggrad(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    epochs: int = 5,
    lr: float = 0.01,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Minimise −CE on the forget set (one epoch = one pass over D_f); the retain set is not used.

    Unbounded ascent destroys the model if run too long, so the defaults are short and gentle.
    """
    run = UnlearningRun("neggrad", model, mask, device=device, seed=seed)
    optimizer = run.sgd(lr, momentum, weight_decay)
    total = epochs * math.ceil(len(forget) / batch_size)
    step = 0
    run.model.train()
    for _ in range(epochs):
        for x, y in run.batches(forget, batch_size):
            run.cosine(optimizer, lr, step, total)
            run.step(optimizer, -nn.functional.cross_entropy(run.model(x), y), len(y))
            step += 1
    return run.finish(dict(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay))


register_method("neggrad", neggrad, params={**SGD_PARAMS, "lr": LR.with_search((1e-4, 1e-2))})
