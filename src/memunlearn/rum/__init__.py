"""RUM, the Refined-Unlearning Meta-algorithm (SPEC §5), one module per stage: :mod:`.refine`,
:mod:`.pipeline`, :mod:`.run` and :mod:`.experiment` (partitions of an experiment's forget set).

RUM first *refines* a forget set into partitions by a memorization score (low → mid → high), then
*meta-unlearns*: a pipeline of steps ``(partition, method, hyperparameters)`` applied one after the
other, each starting from the previous step's model. At step k the retain set is
D \\ (F_1 ∪ … ∪ F_k): partitions not processed yet are still part of the retain set, and a
partition already processed (even by a ``none`` step) never comes back into it.

Four variants (:func:`plan`):

- ``vanilla``: one method on the whole forget set (a single step; the plain method).
- ``shuffle``: a seeded random split of the forget set into as many parts as RUM uses, the same
  method on each part, sequentially (isolates the effect of splitting from that of the score).
- ``rum-f`` (RUM^F): the same method on each memorization partition, low → mid → high.
- ``rum``: a method per partition; the official example is ``none → finetune → salun``.

In ``memunlearn run --methods`` a pipeline is written ``VARIANT:METHOD[:METHOD...]`` (colons,
because ``--methods`` is comma-separated and method names such as ``neggrad+`` contain ``+``):
``rum:none:finetune:salun``, ``rum-f:finetune``, ``shuffle:neggrad+``, ``vanilla:salun``. Each
step may carry its own settings (``step1`` … in running order; :func:`step_settings`), and the
official per-step recipes of RUM's code ship as the defaults (:data:`PIPELINE_RECIPES`: RUM^F
NegGrad+ and RUM none → finetune → salun).

Example:
    >>> parts = {"low": np.array([0, 1]), "mid": np.array([2]), "high": np.array([3])}
    >>> [r.tolist() for r in retain_indices_per_step(6, list(parts.values()))]
    [[2, 3, 4, 5], [3, 4, 5], [4, 5]]
"""

from __future__ import annotations

import numpy as np  # noqa: F401  (the example above uses it)

from .constants import ALL, DEFAULT_PARTS, DEFAULT_SCORE, NONE, VARIANTS
from .experiment import RunPartitions, check_score_source, needs_scores, partitions_for_run, run_entry
from .pipeline import (PIPELINE_RECIPES, PipelineRecipe, Plan, Step, check_method_name, check_pipeline, entry_name,
                       is_pipeline_entry, methods_in_entry, parse_entry, plan, shuffle_split, step_names, step_settings)
from .refine import partition_names, refine
from .run import PipelineResult, retain_indices_per_step, run_pipeline, run_variant

__all__ = [
    "ALL", "DEFAULT_PARTS", "DEFAULT_SCORE", "NONE", "PIPELINE_RECIPES", "VARIANTS", "PipelineRecipe", "PipelineResult",
    "Plan", "RunPartitions", "Step", "step_names", "step_settings",
    "check_method_name", "check_pipeline", "check_score_source", "entry_name", "is_pipeline_entry", "methods_in_entry", "needs_scores",
    "parse_entry", "partition_names", "partitions_for_run", "plan", "refine", "retain_indices_per_step",
    "run_entry", "run_pipeline", "run_variant", "shuffle_split",
]
