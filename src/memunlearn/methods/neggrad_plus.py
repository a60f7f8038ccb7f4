"""NegGrad+: descend on the retain loss while ascending on the forget loss (SPEC §3)."""

from __future__ import annotations

import math
from typing import Mapping

from torch import Tensor, nn

from ..data.core import Examples
from ..params import MAX_GRAD_NORM, SGD_PARAMS, Float
from . import register_method
from .base import UnlearningRun, UnlearnResult


def neggrad_plus(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    epochs: int = 5,
    lr: float = 0.02,
    beta: float = 0.99,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    max_grad_norm: float = 5.0,
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Per step minimise β·CE(retain batch) − (1−β)·CE(forget batch); forget batches are cycled.

    One epoch = one pass over the retain set. The forget term is an ascent: the step's gradient
    (both terms, one backward pass) is clipped to norm ≤ ``max_grad_norm`` (default 5) as in
    :func:`~memunlearn.methods.neggrad.neggrad`; at a fitted model the retain term's gradient is
    far below that bound, so only a runaway ascent is affected.
    """
    run = UnlearningRun("neggrad+", model, mask, device=device, seed=seed)
    optimizer = run.sgd(lr, momentum, weight_decay)
    forget_batches = run.endless_batches(forget, batch_size)
    total = epochs * math.ceil(len(retain) / batch_size)
    step = 0
    run.model.train()
    for _ in range(epochs):
        for x_r, y_r in run.batches(retain, batch_size):
            x_f, y_f = next(forget_batches)
            run.cosine(optimizer, lr, step, total)
            loss = beta * nn.functional.cross_entropy(run.model(x_r), y_r) - (1 - beta) * nn.functional.cross_entropy(
                run.model(x_f), y_f
            )
            run.step(optimizer, loss, len(y_r) + len(y_f), max_grad_norm)
            step += 1
    return run.finish(
        dict(epochs=epochs, lr=lr, beta=beta, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
             max_grad_norm=max_grad_norm)
    )


register_method("neggrad+", neggrad_plus, params={
    **SGD_PARAMS, "beta": Float(low=0, high=1, search=(0.9, 0.999), help="weight of the retain loss"),
    "max_grad_norm": MAX_GRAD_NORM,
})
