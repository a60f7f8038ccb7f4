"""Convolution transpose: swap the two spatial axes of every convolution kernel, then finetune on
the retain set (issue 14, "beyond the papers"). One of the NeurIPS 2023 unlearning challenge's
top-7 entries; the Deep Unlearn benchmark (which names it Convolution Transpose, CT) finds it among
the two most consistent methods it evaluated.

Source: github.com/xcadet/deepunlearn, ``munl/unlearning/kgltop5.py`` (class ``KGLTop5``,
``rotate_weight``: ``module.weight.swapaxes(2, 3)`` for every Conv2d, then cross-entropy on the
retain set with ``CosineAnnealingLR(T_max=epochs)`` stepped per epoch), read at commit 6830ff6;
Cadet et al., arXiv:2410.01276. Written from that reading, not copied.

Why it unlearns: a transposed kernel detects the mirrored pattern, so every learned feature is
scrambled at once while the weights keep their scale and statistics; the retain finetuning then
re-learns what the retain set supports, from a starting point that is not a random init.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from ..data.core import Examples
from ..params import SGD_PARAMS, Int
from . import Source, register_method
from .base import UnlearningRun, UnlearnResult, epoch_cosine_lr
from .stop_when_done import EpochHook, epoch_ce_training


@torch.no_grad()
def transpose_kernels(model: nn.Module, allowed: Mapping[str, Tensor] | None = None) -> list[str]:
    """Swap the spatial axes (H ↔ W) of every square Conv2d kernel in place; with ``allowed``, only
    the allowed entries take their transposed values. Returns the names of the weights changed
    (non-square kernels cannot be transposed in place and are skipped; 1×1 kernels do not change).

    Example:
        >>> conv = nn.Conv2d(1, 1, 2, bias=False)
        >>> _ = conv.weight.data.copy_(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]))
        >>> transpose_kernels(nn.Sequential(conv)), conv.weight.flatten().tolist()
        (['0.weight'], [1.0, 3.0, 2.0, 4.0])
    """
    changed = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d) or module.weight.shape[-1] != module.weight.shape[-2]:
            continue
        weight_name = f"{name}.weight" if name else "weight"
        transposed = module.weight.transpose(-1, -2)
        if allowed is not None:
            transposed = torch.where(allowed[weight_name], transposed, module.weight)
        module.weight.copy_(transposed.clone())
        if module.weight.shape[-1] > 1:
            changed.append(weight_name)
    return changed


def conv_transpose(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    on_epoch_end: EpochHook | None = None,
    *,
    epochs: int = 3,
    lr: float = 0.001,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Transpose every square convolution kernel (:func:`transpose_kernels`), then cross-entropy on
    D_r for ``epochs`` epochs, SGD with cosine annealing stepped once per epoch (to 0, which the last
    epoch never reaches; the source's ``CosineAnnealingLR(T_max=epochs)``).

    The defaults are the source's (kgltop5.py:46-50): 3 epochs, lr 0.001, batch 64, momentum 0.9,
    weight decay 5e-4; the recipe ``ours`` is this library's earlier default, lr 0.02 (for small
    data). The forget set is not used. A model
    without square convolutions (the MLP) is only finetuned. With a mask, only allowed entries are
    transposed and trained. ``on_epoch_end`` (stop-when-done) may stop early; ``epochs=0``
    transposes without training.
    """
    run = UnlearningRun("conv-transpose", model, mask, device=device, seed=seed)
    transpose_kernels(run.model, run.allowed)
    epoch_ce_training(run, retain, epochs, lambda epoch, step, total: epoch_cosine_lr(lr, epoch, epochs, 0.0),
                      batch_size, momentum, weight_decay, on_epoch_end=on_epoch_end)
    return run.finish(dict(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                           weight_decay=weight_decay))


register_method(
    "conv-transpose", conv_transpose,
    params={**SGD_PARAMS, "epochs": Int(low=0, search=(1, 10), help="finetuning epochs after the transposition (0 = none)")},
    source=Source("xcadet/deepunlearn", "6830ff6", "munl/unlearning/kgltop5.py", "45-116"),
    recipes={"ours": {"lr": 0.02}},
    differences=(
        ("non-square kernels are left as they are (the source swaps them too, turning k×l into l×k; every "
         "shipped model has square kernels); under a mask only allowed entries are transposed"),
    ),
    equivalence="tests/test_official_challenge_entries.py::test_conv_transpose_matches_the_official_kgltop5",
)
