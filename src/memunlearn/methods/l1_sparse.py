"""ℓ1-sparse: finetune on the retain set with a decaying ℓ1 penalty (SPEC §3)."""

from __future__ import annotations

from typing import Mapping

from torch import Tensor, nn

from ..data.core import Examples
from ..params import Float, SGD_PARAMS
from . import register_method
from .base import UnlearningRun, UnlearnResult, train_epochs_ce


def l1_penalty(parameters, gamma0: float, step: int, total_steps: int):
    """γ_t‖θ‖₁ with γ_t = γ₀(1 − t/T), decaying linearly to 0 over the run.

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
    epochs: int = 5,
    lr: float = 0.02,
    gamma: float = 5e-4,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """CE on D_r + γ_t‖θ‖₁ over the trainable parameters, γ_t linear from ``gamma`` to 0."""
    run = UnlearningRun("l1-sparse", model, mask, device=device, seed=seed)
    trainable = run.trainable_parameters()
    train_epochs_ce(run, retain, epochs, lr, batch_size, momentum, weight_decay,
                    extra_loss=lambda step, total: l1_penalty(trainable, gamma, step, total))
    return run.finish(dict(epochs=epochs, lr=lr, gamma=gamma, batch_size=batch_size, momentum=momentum,
                           weight_decay=weight_decay))


register_method("l1-sparse", l1_sparse, params={
    **SGD_PARAMS, "gamma": Float(low=0, search=(1e-5, 1e-3), log=True, help="initial L1 weight γ₀, decays linearly to 0"),
})
