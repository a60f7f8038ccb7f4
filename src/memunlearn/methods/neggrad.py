"""NegGrad: gradient ascent on the forget set (SPEC §3).

Official recipe: RUM's ``GA`` (kairanzhao/RUM@f593c9d unlearn/GA.py:20-123, optimizer and
scheduler unlearn/impl.py:217-255): one epoch = one pass over shuffled forget batches of 256, SGD
momentum 0.9, weight decay 5e-4, a constant rate (MultiStepLR milestones never reached), and the
README's CIFAR-10 command's lr 1e-4 for 5 epochs (README.md:217).
"""

from __future__ import annotations

import math
from typing import Mapping

from torch import Tensor, nn

from ..data.core import Examples
from ..params import LR, MAX_GRAD_NORM, SGD_PARAMS
from . import Source, register_method
from .base import SCHEDULE, UnlearningRun, UnlearnResult

OURS = {"epochs": 5, "lr": 0.01, "batch_size": 64, "schedule": "cosine"}


def neggrad(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    epochs: int = 5,
    lr: float = 1e-4,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    max_grad_norm: float = 5.0,
    schedule: str = "constant",
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Minimise −CE on the forget set (one epoch = one pass over D_f); the retain set is not used.

    Gradient ascent has no minimum: −CE → −∞ as the logits grow, and with momentum the steps grow
    with them until the loss is NaN (without a guard, NegGrad at its earlier defaults, lr 0.01,
    went NaN at step 36 on Fashion-MNIST's default 2x1024 MLP, 10k subset). So every ascent step's
    gradient is rescaled to norm ≤ ``max_grad_norm`` (default 5; the official code has no such
    guard), the standard remedy for exploding gradients: a guard rather than a regulariser, it caps
    runaway steps (gradient norms of 10² and more on the MLP) so a step moves the weights by at
    most lr·max_grad_norm before momentum; at the official lr of 1e-4 it rarely engages. A bound of
    1 also prevents the NaN but visibly weakened the ascent on small forget sets.
    Even bounded, ascent destroys the model if run too long: tune ``lr`` and ``epochs``.
    ``schedule``: ``constant`` (official) or ``cosine`` (per batch, to 0).
    """
    run = UnlearningRun("neggrad", model, mask, device=device, seed=seed)
    optimizer = run.sgd(lr, momentum, weight_decay)
    total = epochs * math.ceil(len(forget) / batch_size)
    step = 0
    run.model.train()
    for _ in range(epochs):
        for x, y in run.batches(forget, batch_size):
            run.schedule(optimizer, schedule, lr, step, total)
            run.step(optimizer, -nn.functional.cross_entropy(run.model(x), y), len(y), max_grad_norm)
            step += 1
    return run.finish(dict(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
                           max_grad_norm=max_grad_norm, schedule=schedule))


register_method(
    "neggrad", neggrad, params={
        **SGD_PARAMS, "lr": LR.with_search((1e-4, 1e-2)), "max_grad_norm": MAX_GRAD_NORM, "schedule": SCHEDULE,
    },
    source=Source("kairanzhao/RUM", "f593c9d", "unlearn/GA.py", "20-123"),
    recipes={"ours": OURS},
    differences=(
        "each ascent step's gradient is clipped to norm max_grad_norm=5 (the official code has none): a guard "
        "against the NaN that unbounded ascent reaches (SPEC: defaults must not diverge)",
        "a mask is hard: frozen entries are restored bitwise after each step (the official code only multiplies "
        "the gradient by the mask, so weight decay still moves them)",
    ),
    equivalence="tests/test_official_baselines.py::test_neggrad_matches_rum_ga",
)
