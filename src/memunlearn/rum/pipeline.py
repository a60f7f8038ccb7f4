"""RUM's pipelines: steps (partition, method, hyperparameters), the four variants, the
``VARIANT:METHOD[:METHOD...]`` entries of ``memunlearn run --methods``, and per-step settings.

Each step of a pipeline may carry its own hyperparameters, named ``step1`` … ``stepK`` in the
order the steps run (low → high for ``rum`` and ``rum-f``). A pipeline's own table in a spec::

    [methods."rum-f:neggrad+"]
    recipe = "official"                           # default; "ours" = each step at its method's defaults
    step3 = { lr = 0.001, epochs = 10 }           # explicit values win over the recipe

or ``--set rum-f:neggrad+.step3.lr=0.001``. A step's value comes, highest first, from its step
table, the method's own table (``[methods.neggrad+]``, every step of that method), the pipeline's
recipe, the method's defaults. The official recipes (:data:`PIPELINE_RECIPES`) transcribe the
RUM code's scripts: RUM^F with NegGrad+ (main_rum_proxy.py:51-53) and RUM none → finetune → salun
(main_rum.py:50-51).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, unknown_name
from ..methods import OFFICIAL, Source, available_methods, check_hparams
from .constants import ALL, DEFAULT_PARTS, NONE, VARIANTS

RUM_REPO, RUM_COMMIT = "kairanzhao/RUM", "f593c9d"
OURS = "ours"
RECIPE = "recipe"


@dataclass(frozen=True)
class PipelineRecipe:
    """A pipeline's official per-step settings (one dict per step, in step order) and their source."""

    steps: tuple[dict[str, Any], ...]
    source: Source


# The pipelines whose official code fixes per-step settings. RUM^F NegGrad+: the official NG
# (unlearn/neggrad.py:42, loss = α·CE_r − (1−α)·CE_f) with α = memunlearn's neggrad+ ``beta``.
PIPELINE_RECIPES: dict[str, PipelineRecipe] = {
    "rum-f:neggrad+": PipelineRecipe(
        ({"beta": 0.99, "epochs": 5, "lr": 0.01}, {"beta": 0.97, "epochs": 5, "lr": 0.01},
         {"beta": 0.97, "epochs": 10, "lr": 0.001}),
        Source(RUM_REPO, RUM_COMMIT, "main_rum_proxy.py", "51-53"),
    ),
    "rum:none:finetune:salun": PipelineRecipe(
        ({}, {"epochs": 10, "lr": 0.1}, {"epochs": 5, "lr": 0.1}),
        Source(RUM_REPO, RUM_COMMIT, "main_rum.py", "50-51"),
    ),
}


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
    if methods and all(name == NONE for name in methods):
        raise ConfigError(f"the {variant} pipeline {entry_name(variant, methods)!r} unlearns nothing (every step is "
                          f"{NONE!r}); give a method for at least one step")
    expected = parts if variant == "rum" else 1
    if len(methods) != expected:
        what = f"one method per partition ({parts})" if variant == "rum" else "exactly one method"
        raise ConfigError(
            f"the {variant} pipeline {entry_name(variant, methods)!r} has {len(methods)} step(s) but takes {what}"
        )


def step_count(variant: str, methods: Sequence[str], parts: int = DEFAULT_PARTS) -> int:
    """How many steps a pipeline runs: one per partition, except ``vanilla`` (one step on all of D_f).

    Example:
        >>> step_count("rum-f", ["neggrad+"]), step_count("vanilla", ["finetune"])
        (3, 1)
    """
    return 1 if variant == "vanilla" else (len(methods) if variant == "rum" else parts)


def step_names(variant: str, methods: Sequence[str], parts: int = DEFAULT_PARTS) -> list[str]:
    """``step1`` … ``stepK``: the names a pipeline's per-step settings use, in running order."""
    return [f"step{k + 1}" for k in range(step_count(variant, methods, parts))]


def step_settings(
    variant: str,
    methods: Sequence[str],
    table: Mapping[str, Any] | None,
    parts: int = DEFAULT_PARTS,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A pipeline's own table → (the recipe's settings per step, the explicit settings per step).

    ``table`` holds ``recipe`` (``official``, the default, or ``ours``: no per-step settings)
    and ``step1`` … ``stepK`` tables. Every setting is checked against the step's method.

    Raises:
        ConfigError: a step the pipeline does not have, a setting for a ``none`` step, a setting
            the step's method does not declare or a value out of its range, or an unknown recipe;
            each names the problem and the valid choices.

    Example:
        >>> recipe, explicit = step_settings("rum-f", ["neggrad+"], {"step3": {"lr": 0.002}})
        >>> recipe[2]["lr"], explicit[2]
        (0.001, {'lr': 0.002})
    """
    entry = entry_name(variant, methods)
    names = step_names(variant, methods, parts)
    per_step = _step_methods(variant, methods, len(names))
    table = dict(table or {})
    recipe_name = table.pop(RECIPE, OFFICIAL)
    if recipe_name not in (OFFICIAL, OURS):
        raise unknown_name(f"recipe of pipeline {entry!r}", str(recipe_name), (OFFICIAL, OURS))
    official = PIPELINE_RECIPES.get(entry)
    recipe = [dict(values) for values in official.steps] if official and recipe_name == OFFICIAL else [{} for _ in names]
    explicit: list[dict[str, Any]] = [{} for _ in names]
    for key, values in table.items():
        if key not in names:
            raise ConfigError(f"pipeline {entry!r} has no step {key!r}; its steps are {', '.join(names)} "
                              f"(and {RECIPE}: {OFFICIAL} or {OURS})")
        if not isinstance(values, Mapping):
            raise ConfigError(f"pipeline {entry!r} {key}: must be a table of settings, e.g. {key} = {{ lr = 0.01 }}")
        k = names.index(key)
        method = per_step[k]
        if method == NONE and values:
            raise ConfigError(f"pipeline {entry!r} {key} is a none step: it takes no settings")
        for name, value in values.items():
            try:
                for one in (value if isinstance(value, list) else [value]):
                    check_hparams(method, {name: one})
            except ConfigError as exc:
                raise ConfigError(f"pipeline {entry!r} {key} ({method}): {exc}") from None
        explicit[k] = dict(values)
    return recipe, explicit


def _step_methods(variant: str, methods: Sequence[str], count: int) -> list[str]:
    return list(methods) if variant == "rum" else [methods[0]] * count


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
        hparams: per method name, the hyperparameters every step of that method gets; under the
            pipeline's entry name (``rum-f:neggrad+``), its own table: ``recipe`` and per-step
            settings ``step1`` … (see :func:`step_settings`). Highest first: the step's
            settings, the method's, the pipeline recipe's, the method's defaults.
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
    recipe, explicit = step_settings(variant, methods, hparams.get(entry_name(variant, methods)), len(partitions))

    def step(k: int, partition: str, method: str) -> Step:
        if method == NONE:
            return Step(partition, method, {})
        return Step(partition, method, {**recipe[k], **dict(hparams.get(method, {})), **explicit[k]})

    if variant == "vanilla":
        return Plan(variant, {ALL: forget}, [step(0, ALL, methods[0])])
    if variant == "shuffle":
        shuffled = shuffle_split(forget, len(partitions), seed)
        return Plan(variant, shuffled, [step(k, name, methods[0]) for k, name in enumerate(shuffled)])
    chosen = list(methods) * len(partitions) if variant == "rum-f" else list(methods)
    return Plan(variant, partitions, [step(k, name, method) for k, (name, method) in enumerate(zip(partitions, chosen))])


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
    if ":" not in entry or entry.startswith("stop:"):  # stop:METHOD is one method run until done, not a pipeline
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
