"""SalUn: random-label unlearning restricted to the most salient weights (SPEC §3).

Official recipe (OPTML-Group/Unlearn-Saliency@a6e89fd): the saliency mask of
Classification/generate_mask.py:14-82 (|Σ over forget batches of ∇(−CE)| in eval mode, the
largest half of all entries kept), then ``RL`` under that mask, its CIFAR-10/SVHN branch
(Classification/unlearn/RL.py:37-49,109-176; masked-out entries restored with their momentum
zeroed, RL.py:17-34): each epoch all forget batches with labels drawn over all classes, then all
retain batches; batches of 256, SGD momentum 0.9, weight decay 5e-4, a constant rate, and the
README's CIFAR-10 command: 10 epochs at lr 0.013 with the 0.5 mask (Classification/README.md).
"""

from __future__ import annotations

import time
from typing import Mapping

from torch import Tensor, nn

from ..data.core import Examples
from ..localization import localize
from ..params import BUDGET, SGD_PARAMS
from . import Source, register_method
from .base import SCHEDULE, UnlearningRun, UnlearnResult
from .random_label import ORDER, RELABEL, SALUN, random_label_training

OURS = {"epochs": 5, "lr": 0.02, "batch_size": 64, "schedule": "cosine", "relabel": "once-other", "order": "mixed"}


def salun(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    budget: float = 0.5,
    epochs: int = 10,
    lr: float = 0.013,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    relabel: str = "every-epoch-all",
    order: str = "forget-first",
    schedule: str = "constant",
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Random-label training (see :func:`~memunlearn.methods.random_label.random_label_training`),
    changing only the ``salun`` mask's entries.

    Without a ``mask``, the saliency mask |Σ∇CE(D_f)| at ``budget`` (fraction of all entries,
    default 0.5) is computed first; its time and its pass over D_f count in the cost. A given
    mask is used as is (``budget`` is then ignored). ``relabel``, ``order`` and ``schedule`` are
    random-label's; their defaults are SalUn's CIFAR-10 code.
    """

    start = time.perf_counter()
    mask_examples = 0
    if mask is None:
        mask = localize(model, forget, "salun", budget, device=device, seed=seed)
        mask_examples = len(forget)
    mask_time = time.perf_counter() - start
    run = UnlearningRun("salun", model, mask, device=device, seed=seed)
    run.examples += mask_examples
    random_label_training(run, forget, retain, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                          weight_decay=weight_decay, relabel=relabel, order=order, schedule=schedule)
    result = run.finish(dict(budget=budget, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                             weight_decay=weight_decay, relabel=relabel, order=order, schedule=schedule))
    result.cost.wall_time += mask_time
    return result


register_method(
    "salun", salun,
    params={**SGD_PARAMS, "budget": BUDGET.with_search((0.1, 0.9)), "relabel": RELABEL, "order": ORDER,
            "schedule": SCHEDULE},
    makes_own_mask=True,
    source=Source(*SALUN, "Classification/unlearn/RL.py", "37-176"),
    recipes={"ours": OURS},
    differences=(
        "the mask weighs every forget example the same (per-example losses summed); the official code sums "
        "per-batch means, so a trailing partial batch weighs more (SPEC §2)",
        "the mask keeps the LARGEST saliencies, as SalUn's generate_mask.py; RUM's copy keeps the smallest and "
        "steps the optimizer while accumulating (bugs, SPEC §2)",
        "random numbers come from the run's seeded generator, not the global RNG",
    ),
    equivalence="tests/test_official_baselines.py::test_salun_matches_salun_rl_under_its_mask",
)
