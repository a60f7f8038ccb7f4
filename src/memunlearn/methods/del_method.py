"""DEL: reset the localized entries to a fresh initialisation, then finetune them (SPEC §3)."""

from __future__ import annotations

import time
from typing import Mapping

import torch
from torch import Tensor, nn

from ..data.core import Examples
from ..localization import localize
from ..localization.strategies import TOPK_RULES
from ..models import classifier_layers
from ..params import BUDGET, FINAL_LR_FRACTION, SGD_PARAMS, Bool, Choice, Int, Text
from . import Source, register_method
from .base import UnlearningRun, UnlearnResult, epoch_cosine_lr, number_of_classes
from .retrain import fresh_initialisation

# The official code: reihaneh-torkzadehmahani/DEL-Unlearning at commit b1f732c.
DEL_REPO, DEL_COMMIT = "reihaneh-torkzadehmahani/DEL-Unlearning", "b1f732c"


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
    epochs: int = 30,
    lr: float = 0.015,
    batch_size: int = 128,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    final_lr_fraction: float = 0.01,
    drop_last: bool = True,
    train_classifier: bool = True,
    classifier_layer: str = "",
    strategy: str = "del",
    topk_rule: str = "auto",
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Reset the masked entries to a fresh seeded init, then train them (+ the classifier) on D_r.

    The defaults are the official recipe (DEL-Unlearning@b1f732c, scripts/run_unlearn.sh:5-6,37-38
    and unlearn.py:105-112,140-194,231-233): lr 0.015, batch 128, 30 epochs, SGD with momentum
    0.9 and no weight decay, cosine annealing stepped once per EPOCH to ``final_lr_fraction``·lr
    (torch's ``CosineAnnealingLR(T_max=epochs, eta_min=0.01·lr)``, so epoch e runs at
    0.01·lr + ½(lr − 0.01·lr)(1 + cos(πe/epochs)) and the last epoch stays above the floor), and
    the retain set shuffled every epoch with its trailing partial batch dropped (``drop_last``;
    a retain set smaller than one batch is trained as one batch). ``recipe="ours"`` is this
    library's earlier small-data recipe (lr 0.05, batch 64, 5 epochs, every batch kept).

    Without a ``mask``, the ``del`` mask at ``budget`` (default 0.3 of all entries) is computed on
    the forget set first; its time and its pass over D_f count in the cost. ``topk_rule`` is the
    mask's row score (``auto``: the official ViT rule, the plain row mean, for a model with
    attention layers; the official CNN rule, the mean of the ⌊0.1·C_out⌋ largest entries,
    otherwise; see :func:`memunlearn.localization.localize`). ``strategy`` swaps the
    localization for the DEL paper's ablation (``param-grad``, ``param-weighted-grad``,
    ``channel-grad``, ``channel-weighted-grad`` = ``del``) and controls (``random-channel``: random
    whole rows with ``del``'s per-layer counts; ``magnitude``, ``shallowest``, ``deepest``, ``salun``),
    each followed by the same reset and finetuning. The mask's per-layer density is reported in the
    result's ``details["mask"]``.

    The reset is θ' = (1−m)⊙θ + m⊙θ_init with θ_init a fresh draw of the architecture's own init
    (unlearn.py:105-112; the official θ_init is the model as constructed, before its weights
    were loaded). BatchNorm running statistics are kept, and updated by the finetuning (train
    mode), as in the official code.

    ``train_classifier`` makes the whole head trainable (the official code always does,
    unlearn.py:373-375); only its masked entries are reset. The head is the model's
    ``classifier`` layer (the ViT's: its final LayerNorm too); for another model, name it with
    ``classifier_layer`` (e.g. ``"fc"``), or the last Linear layer producing the logits is
    taken, with a warning. The layers used are recorded in the result's hparams as
    ``classifier_layers``.
    """

    start = time.perf_counter()
    mask_examples = 0
    details = {}
    if mask is None:
        mask = localize(model, forget, strategy, budget, device=device, seed=seed, topk_rule=topk_rule)
        mask_examples = len(forget) if strategy not in DATA_FREE_STRATEGIES else 0
        details["mask"] = {"strategy": strategy, "budget": budget, "topk_rule": mask.info.get("topk_rule"),
                           "per_layer": mask.per_layer()}
    mask_time = time.perf_counter() - start
    head = classifier_layers(model, classifier_layer, number_of_classes(model, forget)) if train_classifier else ()
    always = tuple(name for name, _ in model.named_parameters() if name.startswith(tuple(h + "." for h in head)))
    run = UnlearningRun("del", model, mask, always_trainable=always, device=device, seed=seed)
    reset_masked(run.model, fresh_initialisation(model, seed), {n: torch.as_tensor(m).bool() for n, m in mask.items()})
    run.examples += mask_examples
    finetune_per_epoch_cosine(run, retain, epochs, lr, batch_size, momentum, weight_decay, final_lr_fraction,
                              drop_last)
    result = run.finish(dict(budget=budget, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                             weight_decay=weight_decay, final_lr_fraction=final_lr_fraction, drop_last=drop_last,
                             train_classifier=train_classifier, classifier_layer=classifier_layer,
                             classifier_layers=list(head), strategy=strategy, topk_rule=topk_rule))
    result.cost.wall_time += mask_time
    result.details = details
    return result


def finetune_per_epoch_cosine(
    run: UnlearningRun,
    retain: Examples,
    epochs: int,
    lr: float,
    batch_size: int,
    momentum: float,
    weight_decay: float,
    final_lr_fraction: float,
    drop_last: bool,
) -> None:
    """DEL's finetuning loop (unlearn.py:140-194): per epoch a fresh shuffle of D_r, one SGD step
    per batch on the mean cross-entropy, the rate of :func:`epoch_cosine_lr` for the whole epoch.

    With ``drop_last`` a trailing partial batch is skipped (the official DataLoader's
    ``drop_last=True``, unlearning_datasets.py:271), unless it is the only batch.
    """
    optimizer = run.sgd(lr, momentum, weight_decay)
    run.model.train()
    for epoch in range(epochs):
        for group in optimizer.param_groups:
            group["lr"] = epoch_cosine_lr(lr, epoch, epochs, final_lr_fraction)
        for x, y in run.batches(retain, batch_size):
            if drop_last and len(y) < batch_size and len(retain) >= batch_size:
                continue
            run.step(optimizer, nn.functional.cross_entropy(run.model(x), y), len(y))


register_method(
    "del", del_unlearn, makes_own_mask=True,
    params={
        **SGD_PARAMS, "epochs": Int(low=0, search=(1, 10), help="finetuning epochs after the reset (0 = reset only)"),
        "budget": BUDGET, "final_lr_fraction": FINAL_LR_FRACTION,
        "drop_last": Bool(help="skip each epoch's trailing partial retain batch (the official DataLoader's drop_last)"),
        "train_classifier": Bool(help="train the whole classifier layer besides the masked entries"),
        "classifier_layer": Text(help="the head layer trained in full; empty = the model's classifier, else its last Linear"),
        "strategy": Choice(*ABLATION_STRATEGIES, help="the localization (del = channel-weighted-grad; the rest: the "
                           "DEL paper's ablation and controls)"),
        "topk_rule": Choice(*TOPK_RULES, help="the mask's row score: auto (mean for a transformer, else "
                            "out-channels), out-channels (top ⌊0.1·C_out⌋ mean), row, mean"),
    },
    source=Source(DEL_REPO, DEL_COMMIT, "unlearn.py", "105-194,231-233,364-376"),
    recipes={"ours": {"lr": 0.05, "batch_size": 64, "epochs": 5, "drop_last": False}},
    differences=(
        "mask: the gradient is summed over EVERY forget example (per-example sum); the official code sums "
        "per-batch means over shuffled batches of 128 and drops the partial one (generate_mask.py:80-96; "
        "unlearning_datasets.py:270), so its mask depends on the batch order (SPEC §2)",
        "mask: h = max(1, ⌊0.1·C_out⌋) and never more than the row; the official int(0.1·C_out) is 0 below ten "
        "output rows, which makes the row score NaN (generate_mask.py:112)",
        "mask: a tensor with one output row (a ViT's position embedding or class token) is scored per entry; the "
        "official rule scores it by one number, so all of it or none of it is selected (generate_mask.py:108-115; "
        "SPEC §3)",
        "mask: ties in the global ranking go to the earlier entry (a stable sort); the official argsort is not "
        "stable (generate_mask.py:144)",
        "a retain set smaller than one batch is trained as one batch rather than skipped by drop_last",
    ),
    equivalence="tests/test_official_del.py::test_reset_and_finetune_match_the_official_loop",
)
