"""NegGrad+: descend on the retain loss while ascending on the forget loss (SPEC §3).

Official recipe: RUM's ``negative_grad`` (kairanzhao/RUM@f593c9d unlearn/neggrad.py:11-80,
optimizer and scheduler unlearn/impl.py:217-255): each epoch zips the shuffled retain batches with
``itertools.cycle`` of the forget loader (one shuffled pass of forget batches, repeated in the same
order, a new pass each epoch), batches of 256 for both, SGD momentum 0.9, weight decay 5e-4, a
constant rate, and the CIFAR-10 commands' lr 0.01 for 5 epochs (README.md:223) with α = 0.99 (the
first step of RUM's pipeline, main_rum_proxy.py:51).
"""

from __future__ import annotations

import itertools
import math
from typing import Iterator, Mapping

from torch import Tensor, nn

from ..data.core import Examples
from ..errors import unknown_name
from ..params import MAX_GRAD_NORM, SGD_PARAMS, Choice, Float
from . import Source, register_method
from .base import SCHEDULE, UnlearningRun, UnlearnResult

FORGET_CYCLES = ("per-epoch", "continuous")
FORGET_CYCLE = Choice(*FORGET_CYCLES, help="per-epoch: each epoch one shuffled pass of forget batches, repeated "
                                           "(official itertools.cycle); continuous: reshuffled on every pass, "
                                           "carried across epochs (this library's earlier order)")
OURS = {"epochs": 5, "lr": 0.02, "batch_size": 64, "schedule": "cosine", "forget_cycle": "continuous"}


def neggrad_plus(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    epochs: int = 5,
    lr: float = 0.01,
    beta: float = 0.99,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    max_grad_norm: float = 5.0,
    schedule: str = "constant",
    forget_cycle: str = "per-epoch",
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Per step minimise β·CE(retain batch) − (1−β)·CE(forget batch); forget batches are cycled.

    One epoch = one pass over the retain set. ``forget_cycle="per-epoch"`` (official): each epoch
    draws one shuffled pass of forget batches and repeats it in the same order as long as the
    retain batches last; ``"continuous"``: a forget pass is reshuffled whenever it runs out and the
    stream carries over from one epoch to the next. The forget term is an ascent: the step's
    gradient (both terms, one backward pass) is clipped to norm ≤ ``max_grad_norm`` (default 5;
    the official code has no such guard) as in :func:`~memunlearn.methods.neggrad.neggrad`; at a
    fitted model the retain term's gradient is far below that bound, so only a runaway ascent is
    affected. ``schedule``: ``constant`` (official) or ``cosine`` (per batch, to 0).
    """
    if forget_cycle not in FORGET_CYCLES:
        raise unknown_name("forget cycle", forget_cycle, FORGET_CYCLES)
    run = UnlearningRun("neggrad+", model, mask, device=device, seed=seed)
    optimizer = run.sgd(lr, momentum, weight_decay)
    continuous = run.endless_batches(forget, batch_size)
    total = epochs * math.ceil(len(retain) / batch_size)
    step = 0
    run.model.train()
    for _ in range(epochs):
        # zip draws the retain permutation first, then the forget one, as the official zip(r_loader, cycle(f_loader))
        forget_batches: Iterator = itertools.cycle(run.batches(forget, batch_size)) if forget_cycle == "per-epoch" \
            else continuous
        for (x_r, y_r), (x_f, y_f) in zip(run.batches(retain, batch_size), forget_batches):
            run.schedule(optimizer, schedule, lr, step, total)
            loss = beta * nn.functional.cross_entropy(run.model(x_r), y_r) - (1 - beta) * nn.functional.cross_entropy(
                run.model(x_f), y_f
            )
            run.step(optimizer, loss, len(y_r) + len(y_f), max_grad_norm)
            step += 1
    return run.finish(
        dict(epochs=epochs, lr=lr, beta=beta, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
             max_grad_norm=max_grad_norm, schedule=schedule, forget_cycle=forget_cycle)
    )


register_method(
    "neggrad+", neggrad_plus, params={
        **SGD_PARAMS, "beta": Float(low=0, high=1, search=(0.9, 0.999), help="weight of the retain loss"),
        "max_grad_norm": MAX_GRAD_NORM, "schedule": SCHEDULE, "forget_cycle": FORGET_CYCLE,
    },
    source=Source("kairanzhao/RUM", "f593c9d", "unlearn/neggrad.py", "11-80"),
    recipes={"ours": OURS},
    differences=(
        "each step's gradient is clipped to norm max_grad_norm=5 (the official code has none): a guard against a "
        "runaway ascent term (SPEC: defaults must not diverge)",
        "a mask is hard: frozen entries are restored bitwise after each step (the official code only multiplies "
        "the gradient by the mask, so weight decay still moves them)",
    ),
    equivalence="tests/test_official_baselines.py::test_neggrad_plus_matches_rum_negative_grad",
)
