"""Finetune: keep training on the retain set only (SPEC §3).

Official recipe: RUM's ``FT`` (kairanzhao/RUM@f593c9d unlearn/FT.py:22-148, the optimizer and
scheduler of unlearn/impl.py:217-255): SGD on shuffled retain batches of 256, momentum 0.9, weight
decay 5e-4, a constant rate (the MultiStepLR milestones 91,136 are never reached), and the
README's CIFAR-10 command's lr 0.01 for 10 epochs (README.md:205).
"""

from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

from ..data.core import Examples
from ..params import SGD_PARAMS
from . import Source, register_method
from .base import SCHEDULE, UnlearningRun, UnlearnResult, train_epochs_ce

RUM = ("kairanzhao/RUM", "f593c9d")
# This library's defaults before the official recipes (recipe "ours"): a per-batch cosine to 0.
OURS = {"epochs": 5, "lr": 0.02, "batch_size": 64, "schedule": "cosine"}


def finetune(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    epochs: int = 10,
    lr: float = 0.01,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    schedule: str = "constant",
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Cross-entropy on the retain set; forgetting comes from not seeing D_f.

    ``schedule``: ``constant`` (official) or ``cosine`` (per batch, to 0).
    """
    run = UnlearningRun("finetune", model, mask, device=device, seed=seed)
    train_epochs_ce(run, retain, epochs, lr, batch_size, momentum, weight_decay, schedule=schedule)
    return run.finish(dict(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
                           schedule=schedule))


register_method(
    "finetune", finetune, params={**SGD_PARAMS, "schedule": SCHEDULE},
    source=Source(*RUM, "unlearn/FT.py", "22-148"),
    recipes={"ours": OURS},
    differences=("a mask is hard: frozen entries are restored bitwise after each step, so weight decay and momentum "
                 "cannot move them (the official code only multiplies the gradient by the mask)",),
    equivalence="tests/test_official_baselines.py::test_finetune_matches_rum_ft",
)
