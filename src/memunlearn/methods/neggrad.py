"""NegGrad: gradient ascent on the forget set (SPEC §3)."""

from __future__ import annotations

import math
from typing import Mapping

from torch import Tensor, nn

from ..data.core import Examples
from ..params import LR, MAX_GRAD_NORM, SGD_PARAMS
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
    max_grad_norm: float = 5.0,
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Minimise −CE on the forget set (one epoch = one pass over D_f); the retain set is not used.

    Gradient ascent has no minimum: −CE → −∞ as the logits grow, and with momentum the steps grow
    with them until the loss is NaN (without a guard, NegGrad at its defaults went NaN at step 36
    on Fashion-MNIST's default 2x1024 MLP, 10k subset). So every ascent step's gradient is rescaled
    to norm ≤ ``max_grad_norm`` (default 5), the standard remedy for exploding gradients: a guard
    rather than a regulariser, it caps runaway steps (gradient norms of 10² and more on the MLP)
    so a step moves the weights by at most lr·max_grad_norm before momentum. A bound of 1 also
    prevents the NaN but visibly weakened the ascent on small forget sets.
    Even bounded, ascent destroys the model if run too long: tune ``lr`` and ``epochs``.
    """
    run = UnlearningRun("neggrad", model, mask, device=device, seed=seed)
    optimizer = run.sgd(lr, momentum, weight_decay)
    total = epochs * math.ceil(len(forget) / batch_size)
    step = 0
    run.model.train()
    for _ in range(epochs):
        for x, y in run.batches(forget, batch_size):
            run.cosine(optimizer, lr, step, total)
            run.step(optimizer, -nn.functional.cross_entropy(run.model(x), y), len(y), max_grad_norm)
            step += 1
    return run.finish(dict(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
                           max_grad_norm=max_grad_norm))


register_method("neggrad", neggrad, params={
    **SGD_PARAMS, "lr": LR.with_search((1e-4, 1e-2)), "max_grad_norm": MAX_GRAD_NORM,
})
