"""SalUn: random-label unlearning restricted to the most salient weights (SPEC §3)."""

from __future__ import annotations

import time
from typing import Mapping

from torch import Tensor, nn

from ..data.core import Examples
from ..localization import localize
from ..params import BUDGET, SGD_PARAMS
from . import register_method
from .base import UnlearningRun, UnlearnResult, train_epochs_ce
from .random_label import RELABEL, relabelled_epochs


def salun(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    budget: float = 0.5,
    epochs: int = 5,
    lr: float = 0.02,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    relabel: str = "once-other",
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Random-label training on D_r ∪ relabelled D_f, changing only the ``salun`` mask's entries.

    Without a ``mask``, the saliency mask |Σ∇CE(D_f)| at ``budget`` (fraction of all entries,
    default 0.5) is computed first; its time and its pass over D_f count in the cost. A given
    mask is used as is (``budget`` is then ignored). ``relabel`` is random-label's: one draw over
    the other classes (``once-other``, SPEC §3) or, as SalUn's official code, a new draw over all
    classes every epoch (``every-epoch-all``).
    """

    start = time.perf_counter()
    mask_examples = 0
    if mask is None:
        mask = localize(model, forget, "salun", budget, device=device, seed=seed)
        mask_examples = len(forget)
    mask_time = time.perf_counter() - start
    run = UnlearningRun("salun", model, mask, device=device, seed=seed)
    run.examples += mask_examples
    epoch_examples = relabelled_epochs(run, forget, retain, relabel)
    train_epochs_ce(run, epoch_examples, epochs, lr, batch_size, momentum, weight_decay)
    result = run.finish(dict(budget=budget, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                             weight_decay=weight_decay, relabel=relabel))
    result.cost.wall_time += mask_time
    return result


register_method("salun", salun, params={**SGD_PARAMS, "budget": BUDGET.with_search((0.1, 0.9)), "relabel": RELABEL},
                makes_own_mask=True)
