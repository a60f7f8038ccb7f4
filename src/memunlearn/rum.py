"""RUM, the Refined-Unlearning Meta-algorithm (SPEC §5).

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
``rum:none:finetune:salun``, ``rum-f:finetune``, ``shuffle:neggrad+``, ``vanilla:salun``.

Example:
    >>> parts = {"low": np.array([0, 1]), "mid": np.array([2]), "high": np.array([3])}
    >>> [r.tolist() for r in retain_indices_per_step(6, list(parts.values()))]
    [[2, 3, 4, 5], [3, 4, 5], [4, 5]]
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .data.core import Examples
from .errors import ConfigError, unknown_name
from .forget import ForgetSet
from .methods import available_methods, unlearn
from .methods.base import Cost, UnlearnResult

NONE = "none"
VARIANTS = ("vanilla", "shuffle", "rum-f", "rum")
DEFAULT_PARTS = 3
DEFAULT_SCORE = "confidence"
ALL = "all"


# ---------------------------------------------------------------------------------------------
# Refinement: forget set → partitions


def partition_names(parts: int) -> tuple[str, ...]:
    """Names of ``parts`` partitions, lowest score first: low/mid/high for 3, else part1..partK.

    Example:
        >>> partition_names(3), partition_names(2)
        (('low', 'mid', 'high'), ('part1', 'part2'))
    """
    if parts == 3:
        return ("low", "mid", "high")
    return tuple(f"part{k + 1}" for k in range(parts))


def refine(
    forget_set_or_indices: ForgetSet | Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray | None = None,
    parts: int = DEFAULT_PARTS,
) -> dict[str, np.ndarray]:
    """Split a forget set into RUM's partitions, ordered low → high memorization.

    A ``memorization:mix`` forget set carries its three parts in ``info["partitions"]``; they are
    used as they are (the paper's setting). Otherwise the forget examples are cut into ``parts``
    groups by ``scores`` (tertiles by default, ties by (score, index); see
    :func:`memunlearn.memorization.partition_by_score`).

    Args:
        forget_set_or_indices: a :class:`ForgetSet`, or the training indices of the forget set.
        scores: one memorization score per TRAINING example, higher = more memorized; needed
            unless the forget set carries partitions.
        parts: the number of partitions K (default 3).

    Returns:
        ``{name: sorted training indices}`` in order low → high (names from :func:`partition_names`).

    Raises:
        ConfigError: no scores and no stored partitions, stored partitions that do not split the
            forget set exactly, or a ``parts`` that does not match them; score problems (length,
            NaN scores) from ``partition_by_score``.

    Example:
        >>> {k: v.tolist() for k, v in refine([0, 2, 4], np.array([0.9, 0, 0.1, 0, 0.5])).items()}
        {'low': [2], 'mid': [4], 'high': [0]}
    """
    stored = None
    if isinstance(forget_set_or_indices, ForgetSet):
        indices = np.asarray(forget_set_or_indices.indices, dtype=np.int64)
        stored = forget_set_or_indices.info.get("partitions")
    else:
        indices = np.asarray(forget_set_or_indices, dtype=np.int64).ravel()
    if stored is not None:
        partitions = {name: np.sort(np.asarray(part, dtype=np.int64)) for name, part in stored.items()}
        if len(partitions) != parts:
            raise ConfigError(
                f"the forget set carries {len(partitions)} partitions ({', '.join(partitions)}) but {parts} were asked for"
            )
        _check_exact_split(indices, partitions)
        return partitions
    if scores is None:
        raise ConfigError("RUM needs memorization scores to refine a forget set that carries no partitions")
    from .memorization import partition_by_score

    groups = partition_by_score(indices, np.asarray(scores, dtype=np.float64), parts)
    return dict(zip(partition_names(parts), groups))


def _check_exact_split(indices: np.ndarray, partitions: Mapping[str, np.ndarray]) -> None:
    joined = np.concatenate([np.asarray(p, dtype=np.int64) for p in partitions.values()] or [np.array([], np.int64)])
    if len(np.unique(joined)) != len(joined):
        raise ConfigError("RUM partitions overlap: an example appears in more than one partition")
    if not np.array_equal(np.sort(joined), np.sort(indices)):
        raise ConfigError(
            f"RUM partitions ({len(joined)} examples) do not make up the forget set ({len(indices)} examples)"
        )


# ---------------------------------------------------------------------------------------------
# Pipelines: steps and variants


@dataclass
class Step:
    """One pipeline step: unlearn ``partition`` with ``method`` (``none`` = leave it alone)."""

    partition: str
    method: str
    hparams: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "method": self.method, "hparams": dict(self.hparams)}


@dataclass
class Plan:
    """What a variant runs: the partitions (in the order they are processed) and the steps."""

    variant: str
    partitions: dict[str, np.ndarray]
    steps: list[Step]

    def describe(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "partition_sizes": {name: int(len(p)) for name, p in self.partitions.items()},
            "steps": [step.to_dict() for step in self.steps],
        }


def check_method_name(name: str) -> None:
    """Raise the usual unknown-name error unless ``name`` is a registered method or ``none``."""
    if name != NONE and name not in available_methods():
        raise unknown_name("method", name, [*available_methods(), NONE])


def check_pipeline(variant: str, methods: Sequence[str], parts: int = DEFAULT_PARTS) -> None:
    """Check a variant name, its method names and its number of steps.

    ``rum`` takes one method per partition (``parts`` of them); the other variants take exactly one.

    Raises:
        ConfigError: unknown variant or method, or the wrong number of methods.

    Example:
        >>> check_pipeline("rum", ["none", "finetune", "finetune"])
    """
    if variant not in VARIANTS:
        raise unknown_name("RUM variant", variant, VARIANTS)
    methods = list(methods)
    for name in methods:
        check_method_name(name)
    expected = parts if variant == "rum" else 1
    if len(methods) != expected:
        what = f"one method per partition ({parts})" if variant == "rum" else "exactly one method"
        raise ConfigError(
            f"the {variant} pipeline {entry_name(variant, methods)!r} has {len(methods)} step(s) but takes {what}"
        )


def plan(
    variant: str,
    methods: Sequence[str],
    partitions: Mapping[str, np.ndarray],
    *,
    hparams: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 0,
) -> Plan:
    """The partitions and steps of a variant.

    Args:
        variant: ``vanilla``, ``shuffle``, ``rum-f`` or ``rum``.
        methods: ``rum``: one method (or ``none``) per partition, low → high; the others: one method.
        partitions: RUM's partitions, low → high (from :func:`refine`); ``vanilla`` and
            ``shuffle`` use only their union and their number.
        hparams: per method name, the hyperparameters every step of that method gets.
        seed: the seed of ``shuffle``'s random split.

    Returns:
        A :class:`Plan`. ``vanilla`` = one step on partition ``all``; ``shuffle`` = parts
        ``shuffle1..K`` (sizes as ``numpy.array_split`` of a seeded permutation) with the method on each.

    Raises:
        ConfigError: see :func:`check_pipeline`.

    Example:
        >>> parts = {"low": np.array([0]), "mid": np.array([1]), "high": np.array([2])}
        >>> p = plan("rum", ["none", "finetune", "salun"], parts)
        >>> [(s.partition, s.method) for s in p.steps]
        [('low', 'none'), ('mid', 'finetune'), ('high', 'salun')]
    """
    partitions = {name: np.sort(np.asarray(p, dtype=np.int64)) for name, p in partitions.items()}
    check_pipeline(variant, methods, len(partitions))
    hparams = hparams or {}
    forget = np.sort(np.concatenate(list(partitions.values())))

    def step(partition: str, method: str) -> Step:
        return Step(partition, method, dict(hparams.get(method, {})) if method != NONE else {})

    if variant == "vanilla":
        return Plan(variant, {ALL: forget}, [step(ALL, methods[0])])
    if variant == "shuffle":
        shuffled = shuffle_split(forget, len(partitions), seed)
        return Plan(variant, shuffled, [step(name, methods[0]) for name in shuffled])
    chosen = list(methods) * len(partitions) if variant == "rum-f" else list(methods)
    return Plan(variant, partitions, [step(name, method) for name, method in zip(partitions, chosen)])


def shuffle_split(forget_indices: np.ndarray, parts: int, seed: int) -> dict[str, np.ndarray]:
    """A seeded random split of the forget set into ``parts`` parts (``shuffle1``, ...).

    Sizes follow ``numpy.array_split`` (they differ by at most one, the first parts larger),
    the same sizes as the tertiles of :func:`refine`.

    Example:
        >>> {k: len(v) for k, v in shuffle_split(np.arange(7), 3, seed=0).items()}
        {'shuffle1': 3, 'shuffle2': 2, 'shuffle3': 2}
    """
    permuted = np.random.default_rng(seed).permutation(np.asarray(forget_indices, dtype=np.int64))
    return {f"shuffle{k + 1}": np.sort(part) for k, part in enumerate(np.array_split(permuted, parts))}


def entry_name(variant: str, methods: Sequence[str]) -> str:
    """The ``--methods`` entry of a pipeline, e.g. ``rum:none:finetune:salun``.

    Example:
        >>> entry_name("rum-f", ["neggrad+"])
        'rum-f:neggrad+'
    """
    return ":".join([variant, *methods])


def parse_entry(entry: str) -> tuple[str, list[str]] | None:
    """``VARIANT:METHOD[:METHOD...]`` → (variant, methods); None for a plain method name.

    Only the variant and the presence of steps are checked here; :func:`check_pipeline` checks the rest.

    Raises:
        ConfigError: a variant with no methods (``rum:``), or an unknown variant before a colon.

    Example:
        >>> parse_entry("rum:none:finetune:salun"), parse_entry("finetune")
        (('rum', ['none', 'finetune', 'salun']), None)
    """
    if ":" not in entry:
        return None
    variant, *methods = (part.strip() for part in entry.split(":"))
    if variant not in VARIANTS:
        raise unknown_name("RUM variant", variant, VARIANTS)
    if not methods or any(not m for m in methods):
        raise ConfigError(f"{entry!r}: give the pipeline's methods after the variant, e.g. rum:none:finetune:salun")
    return variant, methods


def is_pipeline_entry(entry: str) -> bool:
    return ":" in entry


def methods_in_entry(entry: str) -> list[str]:
    """The registered methods an entry runs (the method itself for a plain name; ``none`` dropped)."""
    parsed = parse_entry(entry)
    if parsed is None:
        return [entry]
    return [m for m in parsed[1] if m != NONE]


# ---------------------------------------------------------------------------------------------
# Meta-unlearning: running a pipeline


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
    """:func:`plan` + :func:`run_pipeline` in one call; the plan is recorded in ``hparams``.

    Example:
        >>> result = run_variant("rum", ["none", "finetune", "salun"], model, data.train, parts)  # doctest: +SKIP
    """
    chosen = plan(variant, methods, partitions, hparams=hparams, seed=seed)
    start = time.perf_counter()
    result = run_pipeline(model, train_examples, chosen.partitions, chosen.steps, seed=seed, device=device,
                          name=entry_name(variant, methods))
    result.hparams = {**chosen.describe(), "pipeline_wall_time": time.perf_counter() - start}
    return result


# ---------------------------------------------------------------------------------------------
# Partitions of an experiment's forget set (used by `memunlearn run`)


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
    from .memorization import EXACT, available_proxies

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

    Every step of method M gets ``hparams[M]`` (the same ``--set M.PARAM=VALUE`` as plain M).

    Raises:
        ConfigError: a malformed entry (see :func:`parse_entry`, :func:`check_pipeline`).
    """
    parsed = parse_entry(entry)
    if parsed is None:
        raise ConfigError(f"{entry!r} is a plain method, not a pipeline entry VARIANT:METHOD[:METHOD...]")
    variant, methods = parsed
    return run_variant(variant, methods, model, train_examples, partitions.for_variant(variant),
                       hparams=hparams, seed=seed, device=device)


__all__ = [
    "ALL", "DEFAULT_SCORE", "NONE", "VARIANTS", "PipelineResult", "Plan", "RunPartitions", "Step",
    "check_pipeline", "check_score_source", "entry_name", "is_pipeline_entry", "methods_in_entry", "needs_scores",
    "parse_entry", "partition_names", "partitions_for_run", "plan", "refine", "retain_indices_per_step",
    "run_entry", "run_pipeline", "run_variant", "shuffle_split",
]
