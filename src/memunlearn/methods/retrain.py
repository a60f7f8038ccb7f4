"""Retrain: a fresh seeded initialisation trained on the retain set only — the oracle (SPEC §3)."""

from __future__ import annotations

import copy
from typing import Mapping

import torch
from torch import Tensor, nn

from ..data.core import Examples
from ..params import EPOCHS, FINAL_LR_FRACTION, SGD_PARAMS
from . import register_method
from .base import UnlearningRun, UnlearnResult, train_epochs_ce


def fresh_initialisation(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model`` re-initialised by the architecture's own init, drawn from ``seed``.

    A model with an ``init_weights()`` method (all of memunlearn's models: their constructors end
    with it) is reset by that method, so the reset and a newly built model agree by construction
    (ResNet-18: kaiming-normal convolutions, BatchNorm 1/0, as torchvision, and the stem's PyTorch
    default, as the official DEL model; SPEC §3). Any other
    model gets each submodule's ``reset_parameters()`` (or ``_reset_parameters()``, as in
    multi-head attention), and parameters no submodule resets are drawn from N(0, 0.02²).
    BatchNorm running statistics are reset with their module.

    Example:
        >>> fresh = fresh_initialisation(model, seed=1)  # doctest: +SKIP
    """
    fresh = copy.deepcopy(model).to("cpu")  # draw on the CPU generator, whatever the model's device
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed)
        init_weights = getattr(fresh, "init_weights", None)
        if callable(init_weights):
            init_weights()
            return fresh
        covered: set[int] = set()
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in module.parameters(recurse=False))
        for param in fresh.parameters():
            if id(param) not in covered:
                param.normal_(0.0, 0.02)
    return fresh


def retrain(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    epochs: int = 20,
    lr: float = 0.05,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    final_lr_fraction: float = 0.0,
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Train a fresh initialisation (seeded) on the retain set with the original recipe.

    ``memunlearn run`` passes the dataset recipe's epochs, lr, batch size, momentum and weight
    decay unless they are set explicitly. With a mask, only the masked entries are re-initialised
    and trained (a localized retrain); the rest stay those of ``model``.
    """
    run = UnlearningRun("retrain", model, mask, device=device, seed=seed)
    fresh = fresh_initialisation(model, seed).to(run.device)
    with torch.no_grad():
        if run.allowed is None:
            run.model.load_state_dict(fresh.state_dict())  # buffers too: a retrain starts from nothing
        else:
            for (name, param), new in zip(run.model.named_parameters(), fresh.parameters()):
                param.copy_(torch.where(run.allowed[name], new, param))
    train_epochs_ce(run, retain, epochs, lr, batch_size, momentum, weight_decay, final_lr_fraction)
    return run.finish(dict(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                           weight_decay=weight_decay, final_lr_fraction=final_lr_fraction))


register_method(
    "retrain", retrain,
    params={**SGD_PARAMS, "epochs": EPOCHS.with_search(None), "final_lr_fraction": FINAL_LR_FRACTION},
    no_public_code="the oracle, not a published method: a fresh initialisation trained on D_r with the dataset's own "
                   "training recipe (memunlearn run passes the recipe's epochs, lr, batch size, momentum, weight decay "
                   "and schedule), so it matches the original model's training by construction",
)
