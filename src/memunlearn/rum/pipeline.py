"""RUM's pipelines: steps (partition, method, hyperparameters), the four variants, and the
``VARIANT:METHOD[:METHOD...]`` entries of ``memunlearn run --methods``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, unknown_name
from ..methods import available_methods
from .constants import ALL, DEFAULT_PARTS, NONE, VARIANTS


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
