"""RUM step 2, meta-unlearning: apply a pipeline sequentially, each step from the previous model,
step k with retain set D \\ (F_1 ∪ … ∪ F_k) (SPEC §5)."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..data.core import Examples
from ..errors import ConfigError, unknown_name
from ..methods import OFFICIAL, unlearn
from ..methods.base import Cost, UnlearnResult
from .constants import NONE
from .pipeline import PIPELINE_RECIPES, RECIPE, Step, check_method_name, entry_name, plan


def retain_indices_per_step(n: int, partitions: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The retain set of each step: D \\ (F_1 ∪ … ∪ F_k) for k = 1..K (SPEC §5).

    Args:
        n: the size of the training set D.
        partitions: F_1..F_K, in the order the steps process them.

    Returns:
        K sorted index arrays; partitions processed later are still in the earlier retain sets.

    Raises:
        ConfigError: overlapping partitions or indices outside [0, n).

    Example:
        >>> [r.tolist() for r in retain_indices_per_step(5, [np.array([4]), np.array([0, 2])])]
        [[0, 1, 2, 3], [1, 3]]
    """
    keep = np.ones(n, dtype=bool)
    seen = np.zeros(n, dtype=bool)
    retains = []
    for part in partitions:
        part = np.asarray(part, dtype=np.int64)
        if len(part) and (part.min() < 0 or part.max() >= n):
            raise ConfigError(f"a RUM partition holds indices outside the training set [0, {n - 1}]")
        if seen[part].any() or len(np.unique(part)) != len(part):
            raise ConfigError("RUM partitions overlap: an example appears in more than one partition")
        seen[part] = True
        keep[part] = False
        retains.append(np.flatnonzero(keep))
    return retains


@dataclass
class PipelineResult(UnlearnResult):
    """An :class:`UnlearnResult` whose cost is summed over the steps, plus one record per step."""

    step_records: list[dict[str, Any]] = field(default_factory=list)


def run_pipeline(
    model: nn.Module,
    train_examples: Examples,
    partitions: Mapping[str, np.ndarray],
    steps: Sequence[Step],
    *,
    seed: int = 0,
    device: str = "auto",
    masks: Mapping[str, Mapping[str, Tensor]] | None = None,
    name: str = "pipeline",
) -> PipelineResult:
    """Apply ``steps`` one after the other, each starting from the previous step's model.

    Step k unlearns its partition F_k (the forget set it gets) with retain set
    D \\ (F_1 ∪ … ∪ F_k). A ``none`` step trains nothing and costs nothing, but its partition
    still leaves the retain set of every later step. ``model`` is never modified.

    Args:
        model: the original trained model.
        train_examples: the whole training set D (partitions index into it).
        partitions: name → training indices.
        steps: the pipeline; every partition must be processed by exactly one step.
        seed: every step's seed (its data order and any random init).
        device: where the methods compute.
        masks: optional partition name → mask, passed to that partition's method (a localized
            step); methods that make their own mask (``del``, ``salun``) compute it from the
            partition they are given when none is passed.
        name: the method name recorded in the result (e.g. ``rum:none:finetune:salun``).

    Returns:
        :class:`PipelineResult`: the final model; cost = wall time, steps and examples summed
        over the steps, parameters changed counted between ``model`` and the final model;
        ``step_records`` = per step its partition, method, sizes, hyperparameters and cost.

    Raises:
        ConfigError: a step naming an unknown partition or method, a partition processed
            twice or never, a mask for an unknown partition, or an unknown hyperparameter.
        DivergedError: a step's loss became non-finite.

    Example:
        >>> p = plan("rum", ["none", "finetune", "salun"], refine(forget_set, scores))  # doctest: +SKIP
        >>> result = run_pipeline(model, data.train, p.partitions, p.steps, seed=0)  # doctest: +SKIP
    """
    order = [step.partition for step in steps]
    unknown = [p for p in order if p not in partitions]
    if unknown:
        raise unknown_name("RUM partition", unknown[0], partitions)
    twice = sorted({p for p in order if order.count(p) > 1})
    missing = [p for p in partitions if p not in order]
    if twice or missing:
        raise ConfigError(
            "every RUM partition must be processed by exactly one step"
            + (f"; processed twice: {twice}" if twice else "") + (f"; never processed: {missing}" if missing else "")
        )
    for step in steps:
        check_method_name(step.method)
    masks = dict(masks or {})
    stray = sorted(set(masks) - set(partitions))
    if stray:
        raise ConfigError(f"masks given for unknown RUM partition(s) {stray}; the partitions are {list(partitions)}")

    n = len(train_examples)
    retains = retain_indices_per_step(n, [partitions[p] for p in order])
    current = model
    records: list[dict[str, Any]] = []
    total = Cost()
    for step, retain_idx in zip(steps, retains):
        forget_idx = np.asarray(partitions[step.partition], dtype=np.int64)
        record: dict[str, Any] = {
            "partition": step.partition, "method": step.method, "forget_size": int(len(forget_idx)),
            "retain_size": int(len(retain_idx)), "hparams": dict(step.hparams),
        }
        if step.method == NONE:
            record["cost"] = Cost().to_dict()
            records.append(record)
            continue
        result = unlearn(
            step.method, current, train_examples.subset(forget_idx), train_examples.subset(retain_idx),
            mask=masks.get(step.partition), seed=seed, device=device, **step.hparams,
        )
        current = result.model
        record["hparams"] = {**result.hparams}
        record["cost"] = result.cost.to_dict()
        records.append(record)
        total.wall_time += result.cost.wall_time
        total.steps += result.cost.steps
        total.examples += result.cost.examples

    if current is model:  # only `none` steps: hand back a copy, never the caller's model itself
        current = copy.deepcopy(model).cpu().eval()
    total.params_changed, total.params_changed_fraction = _changed(model, current)
    return PipelineResult(current, name, total, {"steps": [s.to_dict() for s in steps]}, step_records=records)


@torch.no_grad()
def _changed(before: nn.Module, after: nn.Module) -> tuple[int, float]:
    changed = total = 0
    after_params = dict(after.named_parameters())
    for name, p in before.named_parameters():
        q = after_params[name]
        changed += int((p.detach().cpu() != q.detach().cpu()).sum())
        total += p.numel()
    return changed, changed / max(total, 1)


def run_variant(
    variant: str,
    methods: Sequence[str],
    model: nn.Module,
    train_examples: Examples,
    partitions: Mapping[str, np.ndarray],
    *,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    device: str = "auto",
) -> PipelineResult:
    """:func:`plan` + :func:`run_pipeline` in one call; the plan is recorded in ``hparams``, with
    the pipeline's recipe and, for an official one, its source.

    ``hparams``: per method name the values every step of that method gets, and under the entry
    name (``rum-f:neggrad+``) the pipeline's ``recipe`` and ``step1`` … settings (see :func:`plan`).

    Example:
        >>> result = run_variant("rum", ["none", "finetune", "salun"], model, data.train, parts)  # doctest: +SKIP
    """
    chosen = plan(variant, methods, partitions, hparams=hparams, seed=seed)
    start = time.perf_counter()
    result = run_pipeline(model, train_examples, chosen.partitions, chosen.steps, seed=seed, device=device,
                          name=entry_name(variant, methods))
    entry = entry_name(variant, methods)
    recipe = dict((hparams or {}).get(entry, {})).get(RECIPE, OFFICIAL)
    official = PIPELINE_RECIPES.get(entry) if recipe == OFFICIAL else None
    result.hparams = {**chosen.describe(), "recipe": recipe, **({"recipe_source": str(official.source)} if official else {}),
                      "pipeline_wall_time": time.perf_counter() - start}
    return result
