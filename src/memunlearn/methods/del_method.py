"""DEL: reset the localized entries to a fresh initialisation, then finetune them (SPEC §3)."""

from __future__ import annotations

import time
from typing import Mapping

import torch
from torch import Tensor, nn

from ..data.core import Examples
from ..localization import localize
from ..models import classifier_layers
from ..params import BUDGET, FINAL_LR_FRACTION, SGD_PARAMS, Bool, Choice, Int, Text
from . import register_method
from .base import UnlearningRun, UnlearnResult, number_of_classes, train_epochs_ce
from .retrain import fresh_initialisation


def reset_masked(model: nn.Module, fresh: nn.Module, allowed: Mapping[str, Tensor]) -> None:
    """θ ← (1−m)⊙θ + m⊙θ_init, in place: only the masked entries take the fresh values."""
    fresh_params = dict(fresh.named_parameters())
    with torch.no_grad():
        for name, param in model.named_parameters():
            param.copy_(torch.where(allowed[name].to(param.device), fresh_params[name].to(param.device), param))


# The localizations DEL's reset + finetune can be paired with (the DEL paper's 2x2 ablation and controls).
ABLATION_STRATEGIES = ("del", "param-grad", "param-weighted-grad", "channel-grad", "channel-weighted-grad",
                       "random-channel", "salun", "magnitude", "shallowest", "deepest")
DATA_FREE_STRATEGIES = ("magnitude", "shallowest", "deepest")


def del_unlearn(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    budget: float = 0.3,
    epochs: int = 5,
    lr: float = 0.05,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    final_lr_fraction: float = 0.01,
    train_classifier: bool = True,
    classifier_layer: str = "",
    strategy: str = "del",
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Reset the masked entries to a fresh seeded init, then train them (+ the classifier) on D_r.

    Without a ``mask``, the ``del`` mask at ``budget`` (default 0.3 of all entries) is computed on
    the forget set first; its time and its pass over D_f count in the cost. ``strategy`` swaps the
    localization for the DEL paper's ablation (``param-grad``, ``param-weighted-grad``,
    ``channel-grad``, ``channel-weighted-grad`` = ``del``) and controls (``random-channel``: random
    whole rows with ``del``'s per-layer counts; ``magnitude``, ``shallowest``, ``deepest``, ``salun``),
    each followed by the same reset and finetuning. The mask's per-layer density is reported in the
    result's ``details["mask"]``.

    The schedule is the official one: SGD with momentum 0.9, no weight decay, and cosine annealing
    stepped once per EPOCH to ``final_lr_fraction``·lr (torch's ``CosineAnnealingLR(T_max=epochs,
    eta_min=0.01·lr)``), so epoch e runs at 0.01·lr + ½(lr − 0.01·lr)(1 + cos(πe/epochs)) and the
    last epoch stays above the floor. The official run is 30 epochs on CIFAR-10; the default
    epochs here are for small data.

    ``train_classifier`` makes the whole head trainable (the official code always does); only its
    masked entries are reset. The head is the model's ``classifier`` layer (the ViT's: its final
    LayerNorm too); for another model, name it with ``classifier_layer`` (e.g. ``"fc"``), or the
    last Linear layer producing the logits is taken, with a warning. The layers used are recorded
    in the result's hparams as ``classifier_layers``.
    """

    start = time.perf_counter()
    mask_examples = 0
    details = {}
    if mask is None:
        mask = localize(model, forget, strategy, budget, device=device, seed=seed)
        mask_examples = len(forget) if strategy not in DATA_FREE_STRATEGIES else 0
        details["mask"] = {"strategy": strategy, "budget": budget, "per_layer": mask.per_layer()}
    mask_time = time.perf_counter() - start
    head = classifier_layers(model, classifier_layer, number_of_classes(model, forget)) if train_classifier else ()
    always = tuple(name for name, _ in model.named_parameters() if name.startswith(tuple(h + "." for h in head)))
    run = UnlearningRun("del", model, mask, always_trainable=always, device=device, seed=seed)
    reset_masked(run.model, fresh_initialisation(model, seed), {n: torch.as_tensor(m).bool() for n, m in mask.items()})
    run.examples += mask_examples
    train_epochs_ce(run, retain, epochs, lr, batch_size, momentum, weight_decay, final_lr_fraction, lr_per_epoch=True)
    result = run.finish(dict(budget=budget, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                             weight_decay=weight_decay, final_lr_fraction=final_lr_fraction,
                             train_classifier=train_classifier, classifier_layer=classifier_layer,
                             classifier_layers=list(head), strategy=strategy))
    result.cost.wall_time += mask_time
    result.details = details
    return result


register_method("del", del_unlearn, makes_own_mask=True, params={
    **SGD_PARAMS, "epochs": Int(low=0, search=(1, 10), help="finetuning epochs after the reset (0 = reset only)"),
    "budget": BUDGET, "final_lr_fraction": FINAL_LR_FRACTION,
    "train_classifier": Bool(help="train the whole classifier layer besides the masked entries"),
    "classifier_layer": Text(help="the head layer trained in full; empty = the model's classifier, else its last Linear"),
    "strategy": Choice(*ABLATION_STRATEGIES, help="the localization (del = channel-weighted-grad; the rest: the "
                       "DEL paper's ablation and controls)"),
})
