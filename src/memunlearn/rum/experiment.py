"""RUM inside an experiment: the partitions of a run's forget set, computed once and only when
needed, and running one ``--methods`` pipeline entry."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from torch import nn

from ..data.core import Examples
from ..errors import ConfigError, unknown_name
from ..forget import ForgetSet
from .constants import DEFAULT_PARTS
from .pipeline import parse_entry
from .refine import partition_names, refine
from .run import PipelineResult, run_variant


def needs_scores(entries: Sequence[str]) -> bool:
    """Whether any entry refines by memorization (``rum``/``rum-f``; vanilla and shuffle do not)."""
    return any((parsed := parse_entry(e)) is not None and parsed[0] in ("rum", "rum-f") for e in entries)


def partitions_for_run(
    forget_set: ForgetSet,
    score: str,
    scores_fn,
    parts: int = DEFAULT_PARTS,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The partitions of an experiment's forget set and a description for results.json.

    A forget set that carries partitions (``memorization:mix``) uses them; otherwise the forget
    examples are cut into tertiles of ``score``, computed by ``scores_fn(score)`` only then.

    Args:
        forget_set: the run's forget set.
        score: the score source (``exact``, a proxy name or a .npy file) for tertiles.
        scores_fn: ``score → per-training-example scores``.
        parts: K.

    Returns:
        (partitions, {"source", "score", "partition_sizes"}).
    """
    if forget_set.info.get("partitions") is not None:
        partitions = refine(forget_set, parts=parts)
        source = {"source": "forget set parts", "score": forget_set.info.get("source", forget_set.rule)}
    else:
        partitions = refine(forget_set, scores_fn(score), parts=parts)
        source = {"source": "tertiles" if parts == 3 else f"{parts} quantile groups", "score": score}
    return partitions, {**source, "partition_sizes": {k: int(len(v)) for k, v in partitions.items()}}


def check_score_source(score: str) -> None:
    """Refuse an unknown score source before anything trains (``exact``, a proxy, or a .npy file).

    Raises:
        ConfigError: the source is none of these.
    """
    from ..memorization import EXACT, available_proxies

    if score == EXACT or score in available_proxies() or score.endswith(".npy"):
        return
    raise unknown_name("memorization score source", score, [EXACT, *available_proxies(), "FILE.npy"])


class RunPartitions:
    """The partitions of one seed's forget set, computed at most once and only when needed.

    ``vanilla`` and ``shuffle`` use only the forget set and the number of parts, so they never
    trigger a score computation (an exact score may need a whole model pool).

    Args:
        forget_set: the seed's forget set.
        score: the score source for tertiles (ignored when the forget set carries partitions).
        scores_fn: ``score → per-training-example scores`` (called lazily).
        parts: K.
    """

    def __init__(self, forget_set: ForgetSet, score: str, scores_fn, parts: int = DEFAULT_PARTS):
        self.forget_set, self.score, self.scores_fn, self.parts = forget_set, score, scores_fn, parts
        self.partitions: dict[str, np.ndarray] | None = None
        self.description: dict[str, Any] | None = None

    def for_variant(self, variant: str) -> dict[str, np.ndarray]:
        if variant in ("vanilla", "shuffle") and self.partitions is None:
            # only the union and the count matter to these two variants
            split = np.array_split(np.asarray(self.forget_set.indices, dtype=np.int64), self.parts)
            return dict(zip(partition_names(self.parts), split))
        if self.partitions is None:
            self.partitions, self.description = partitions_for_run(
                self.forget_set, self.score, self.scores_fn, self.parts)
        return self.partitions


def run_entry(
    entry: str,
    model: nn.Module,
    train_examples: Examples,
    partitions: RunPartitions,
    *,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
    device: str = "auto",
) -> PipelineResult:
    """Run one ``--methods`` pipeline entry such as ``rum:none:finetune:salun``.

    Every step of method M gets ``hparams[M]`` (the same ``--set M.PARAM=VALUE`` as plain M);
    ``hparams[entry]`` is the pipeline's own table: ``recipe`` and per-step ``step1`` … settings
    (``--set rum-f:neggrad+.step2.lr=0.01``), which win over ``hparams[M]``.

    Raises:
        ConfigError: a malformed entry (see :func:`parse_entry`, :func:`check_pipeline`).
    """
    parsed = parse_entry(entry)
    if parsed is None:
        raise ConfigError(f"{entry!r} is a plain method, not a pipeline entry VARIANT:METHOD[:METHOD...]")
    variant, methods = parsed
    return run_variant(variant, methods, model, train_examples, partitions.for_variant(variant),
                       hparams=hparams, seed=seed, device=device)
