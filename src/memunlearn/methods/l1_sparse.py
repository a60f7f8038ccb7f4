"""ℓ1-sparse: finetune on the retain set with a decaying ℓ1 penalty (SPEC §3).

Official recipe: RUM's ``FT_prune`` = ``FT_l1`` (kairanzhao/RUM@f593c9d unlearn/FT_prune.py:9-22,
unlearn/FT.py:15-19,88-118,151-155; optimizer and scheduler unlearn/impl.py:217-255): CE on
shuffled retain batches of 256 plus α_e·‖θ‖₁ over all parameters, α_e = α(1 − e/E) constant within
epoch e (FT.py:97-102, ``--no-l1-epochs`` 0), SGD momentum 0.9, weight decay 5e-4, a constant
rate, and the README's CIFAR-10 command's lr 0.01 for 10 epochs (README.md:211). The command
leaves α as ``${alpha}``; the default γ₀ = 5e-4 is SPEC §3's.
"""

from __future__ import annotations

import math
from typing import Mapping

from torch import Tensor, nn

from ..data.core import Examples
from ..errors import unknown_name
from ..params import Choice, Float, SGD_PARAMS
from . import Source, register_method
from .base import SCHEDULE, UnlearningRun, UnlearnResult, train_epochs_ce

L1_DECAYS = ("epoch", "step")
L1_DECAY = Choice(*L1_DECAYS, help="epoch: γ₀(1 − e/E), constant within an epoch (official FT.py); "
                                   "step: γ₀(1 − t/T) per step (this library's earlier rule)")
OURS = {"epochs": 5, "lr": 0.02, "batch_size": 64, "schedule": "cosine", "l1_decay": "step"}


def l1_penalty(parameters, gamma0: float, step: int, total_steps: int):
    """γ_t‖θ‖₁ with γ_t = γ₀(1 − t/T), decaying linearly to 0 over the run (t, T: steps or epochs).

    Example:
        >>> import torch
        >>> float(l1_penalty([torch.tensor([1.0, -3.0])], 0.5, 1, 4))
        1.5
    """
    gamma = gamma0 * (1 - step / max(total_steps, 1))
    return gamma * sum(p.abs().sum() for p in parameters)


def l1_sparse(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    epochs: int = 10,
    lr: float = 0.01,
    gamma: float = 5e-4,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    l1_decay: str = "epoch",
    schedule: str = "constant",
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """CE on D_r + γ‖θ‖₁ over the trainable parameters, γ linear from ``gamma`` towards 0.

    ``l1_decay="epoch"`` (official): γ_e = γ₀(1 − e/E) for epoch e = 0…E−1 (the last epoch keeps
    γ₀/E); ``"step"``: γ_t = γ₀(1 − t/T) per step. Frozen parameters (a mask's) add a constant to
    the penalty and no gradient, so leaving them out changes nothing. ``schedule``: ``constant``
    (official) or ``cosine`` (per batch, to 0).
    """
    run = UnlearningRun("l1-sparse", model, mask, device=device, seed=seed)
    trainable = run.trainable_parameters()
    steps_per_epoch = max(1, math.ceil(len(retain) / batch_size))
    if l1_decay == "epoch":
        def penalty(step: int, total: int):
            return l1_penalty(trainable, gamma, step // steps_per_epoch, epochs)
    elif l1_decay == "step":
        def penalty(step: int, total: int):
            return l1_penalty(trainable, gamma, step, total)
    else:
        raise unknown_name("l1 decay", l1_decay, L1_DECAYS)
    train_epochs_ce(run, retain, epochs, lr, batch_size, momentum, weight_decay, extra_loss=penalty,
                    schedule=schedule)
    return run.finish(dict(epochs=epochs, lr=lr, gamma=gamma, batch_size=batch_size, momentum=momentum,
                           weight_decay=weight_decay, l1_decay=l1_decay, schedule=schedule))


register_method(
    "l1-sparse", l1_sparse, params={
        **SGD_PARAMS, "gamma": Float(low=0, search=(1e-5, 1e-3), log=True,
                                     help="initial L1 weight γ₀, decays linearly to 0"),
        "l1_decay": L1_DECAY, "schedule": SCHEDULE,
    },
    source=Source("kairanzhao/RUM", "f593c9d", "unlearn/FT.py", "15-19,88-118,151-155"),
    recipes={"ours": OURS},
    differences=(
        "γ₀ = 5e-4 (SPEC §3): the official command leaves --alpha to the user (its parser default 0.2 is the "
        "influence method's noise)",
        "a mask is hard: frozen entries are restored bitwise after each step (the official code only multiplies "
        "the gradient by the mask)",
    ),
    equivalence="tests/test_official_baselines.py::test_l1_sparse_matches_rum_ft_l1",
)
