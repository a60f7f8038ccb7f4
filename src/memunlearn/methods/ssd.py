"""Selective Synaptic Dampening: shrink the weights far more important to D_f than to D (SPEC §3)."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from ..data.core import Examples, concat
from ..params import BATCH_SIZE, Float
from . import Source, register_method
from .base import UnlearningRun, UnlearnResult


def squared_gradient_importance(
    model: nn.Module, examples: Examples, batch_size: int, device: torch.device
) -> dict[str, Tensor]:
    """I = mean over batches of (∇_θ CE_mean(batch))², in eval mode (running BN statistics untouched)."""
    model.eval()
    importance = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    # Entries a mask freezes entirely have requires_grad off; they are never dampened anyway.
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    batches = 0
    for x, y in examples.batches(batch_size):
        loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for name, g in zip(params, grads):
            if g is not None:
                importance[name].add_(g.detach() ** 2)
        batches += 1
    return {n: v / max(batches, 1) for n, v in importance.items()}


def dampening_factor(importance_all: Tensor, importance_forget: Tensor, dampening: float, selection: float) -> Tensor:
    """β = min(λ·I_D/I_f, 1) where I_f > α·I_D, else 1 (the factor each weight is multiplied by).

    Example:
        >>> dampening_factor(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([20.0, 5.0, 0.0]), 1.0, 10.0).tolist()
        [0.05000000074505806, 1.0, 1.0]
    """
    selected = importance_forget > selection * importance_all
    ratio = (dampening * importance_all / importance_forget.clamp_min(torch.finfo(importance_forget.dtype).tiny)).clamp(max=1.0)
    return torch.where(selected, ratio, torch.ones_like(ratio))


def ssd(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    dampening: float = 1.0,
    selection: float = 10.0,
    batch_size: int = 128,
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """No gradient step: importances I_D (on D = D_r ∪ D_f) and I_f (on D_f), then θ ← β⊙θ.

    ``dampening`` is the paper's λ (default 1), ``selection`` its α (default 10). With a mask only
    masked entries may be dampened. The cost records 0 steps and the examples of both passes.

    The defaults are the official recipe (if-loops/selective-synaptic-dampening @ cdfdc0e):
    ``ssd_tuning`` (src/forget_random_strategies.py:311-345) with λ = 1, α = 10
    (src/forget_random_main.py:147-148), exponent 1 and bound 1 (forget_random_strategies.py:326-331);
    importance = the mean over batches of the squared gradient of the batch-mean cross-entropy, in
    eval mode (src/ssd.py:151-180), over D_f and over the full training set D = D_r then D_f
    (forget_random_main.py:133-136), unshuffled batches of 128 (forget_random_main.py:57, 120);
    β = min(λ·I_D/I_f, 1) where I_f > α·I_D (src/ssd.py:199-217). The recipe ``ours`` (batches of
    64) is this library's earlier default.
    """
    run = UnlearningRun("ssd", model, mask, device=device, seed=seed)
    importance_all = squared_gradient_importance(run.model, concat(retain, forget), batch_size, run.device)
    importance_forget = squared_gradient_importance(run.model, forget, batch_size, run.device)
    run.examples += len(retain) + 2 * len(forget)
    with torch.no_grad():
        for name, param in run.model.named_parameters():
            factor = dampening_factor(importance_all[name], importance_forget[name], dampening, selection)
            if run.allowed is not None:
                factor = torch.where(run.allowed[name], factor, torch.ones_like(factor))
            param.mul_(factor)
    return run.finish(dict(dampening=dampening, selection=selection, batch_size=batch_size))


register_method(
    "ssd", ssd, takes_epochs=False,
    params={
        "dampening": Float(low=0, low_open=True, search=(0.1, 10.0), log=True,
                           help="λ: how strongly selected weights are damped"),
        "selection": Float(low=0, low_open=True, search=(1.0, 100.0), log=True, help="α: select weights with I_f > α·I_D"),
        "batch_size": BATCH_SIZE,
    },
    # ssd_tuning; also src/ssd.py:151-217 (importance, dampening), src/forget_random_main.py:57,120,133-148
    source=Source("if-loops/selective-synaptic-dampening", "cdfdc0e", "src/forget_random_strategies.py", "311-345"),
    recipes={"ours": {"batch_size": 64}},
    equivalence="tests/test_official_scrub_ssd.py::test_ssd_official_recipe_matches_a_transcription_of_the_official_code",
)
