"""Forget sets: which training examples to delete (SPEC §1).

A forget set is described by a rule string such as ``iid:0.1``, ``classes:0,6``,
``full-class:3``, ``mislabeled:0.05`` or ``indices:FILE``; other modules register more kinds
(memorization, entanglement) with :func:`register_forget_kind`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from .data.core import Dataset
from .errors import ConfigError, ForgetSetError, unknown_name
from .io import atomic_path, write_json

DEFAULT_FRACTION = 0.1


@dataclass
class ForgetSet:
    """The indices (into the training set) to forget, and the rule that chose them.

    ``train_labels`` is set only when the rule changed the training labels before training
    (``mislabeled``): the original model and the oracle then train on these labels.
    """

    indices: np.ndarray
    rule: str
    seed: int
    train_labels: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)
    # the per-example score (over the whole training set) that chose the set, when one did
    # (memorization rules); kept in memory only, for the report's view of exposed examples
    scores: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.indices)

    def retain_indices(self, n: int) -> np.ndarray:
        keep = np.ones(n, dtype=bool)
        keep[self.indices] = False
        return np.flatnonzero(keep)

    def training_data(self, dataset: Dataset) -> Dataset:
        """What the original model and the oracle train on: ``dataset`` with this rule's changes
        (flipped labels for ``mislabeled``; subclasses may change the images too)."""
        if self.train_labels is None:
            return dataset
        return dataset.with_train_labels(self.train_labels, f"{self.rule}:{self.seed}")

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "seed": self.seed, "size": len(self), **self.info}

    def save(self, directory: str | os.PathLike, stem: str = "forget_indices") -> Path:
        """Write the indices (one per line) and the rule beside them, atomically."""
        directory = Path(directory)
        path = directory / f"{stem}.txt"
        with atomic_path(path) as tmp:
            tmp.write_text("".join(f"{i}\n" for i in self.indices))
        write_json(directory / f"{stem}.json", self.to_dict())
        return path


@dataclass
class ForgetContext:
    """What a forget rule may need beyond the data: the original model and its training dynamics.

    ``original`` is called lazily (it may train the model) and returns ``(model, dynamics)``;
    rules that do not need it (iid, classes, ...) never call it.
    """

    original: Callable[[], tuple[Any, Any]] | None = None
    device: str = "auto"
    cache_dir: str | None = None

    def original_model(self, rule: str) -> tuple[Any, Any]:
        if self.original is None:
            raise ConfigError(f"{rule}: this forget-set kind needs the original model; run it through `memunlearn run`")
        return self.original()


ForgetRule = Callable[[Dataset, str, int, ForgetContext], ForgetSet]
_KINDS: dict[str, ForgetRule] = {}


def register_forget_kind(kind: str, rule: ForgetRule) -> None:
    """Register ``rule(dataset, argument, seed, context) -> ForgetSet`` under ``kind``."""
    _KINDS[kind] = rule


def available_forget_kinds() -> list[str]:
    _load_kind_modules()
    return sorted(_KINDS)


# Modules that register more kinds when imported (``import memunlearn`` no longer imports them).
_KIND_MODULES = ("memunlearn.memorization.forget_kinds", "memunlearn.backdoor")


def _load_kind_modules() -> None:
    import importlib

    for module in _KIND_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise


def make_forget_set(spec: str, dataset: Dataset, seed: int = 0, context: ForgetContext | None = None) -> ForgetSet:
    """Choose a forget set from a rule string.

    Args:
        spec: ``KIND[:ARGUMENT]``: ``iid[:FRACTION]``, ``classes:C1,C2[:FRACTION]``,
            ``full-class:C1[,C2...]``, ``mislabeled[:FRACTION]``, ``indices:FILE`` (one integer
            per line, or .npy), and kinds registered later (``memorization:LEVEL``, ...).
        dataset: the dataset whose training set the indices refer to.
        seed: seed of the random choice (the same seed gives the same set).
        context: the original model (lazily), for kinds that rank examples with it.

    Returns:
        A :class:`ForgetSet` with sorted, validated indices.

    Raises:
        ConfigError: unknown kind or malformed argument.
        ForgetSetError: invalid indices, or a set that leaves the retain set unusable.

    Example:
        >>> from memunlearn import load_dataset  # doctest: +SKIP
        >>> forget = make_forget_set("iid:0.1", load_dataset("digits"), seed=0)  # doctest: +SKIP
    """
    kind, colon, argument = spec.partition(":")
    if kind not in _KINDS:
        _load_kind_modules()
    if kind not in _KINDS:
        raise unknown_name("forget-set kind", kind, _KINDS)
    if colon and not argument.strip():
        raise ConfigError(f"forget rule {spec!r} has nothing after ':'; give a value (e.g. {kind}:0.1) or drop the ':'")
    forget = _KINDS[kind](dataset, argument, seed, context or ForgetContext())
    forget.indices = validate_indices(forget.indices, len(dataset.train), source=spec)
    check_retain_usable(forget, dataset, allow_emptied_classes=(kind == "full-class"))
    return forget


class _NeedsModel(Exception):
    """Raised by :func:`check_forget_rules`'s context: the rule needs the original model, so its
    remaining checks happen when it is drawn (its syntax, names and files were checked)."""


def check_forget_rules(rules: Iterable[str], dataset: Dataset, seed: int = 0) -> None:
    """Check every forget rule (syntax, names, files, sizes) before any training.

    Rules that rank examples with the original model (``memorization:high``, ...) are checked up to
    the point where they would need it; every other rule is drawn once and discarded.

    Raises:
        ConfigError: naming every bad rule (all of them in one line), or a rule given twice.

    Example:
        >>> from memunlearn import load_dataset  # doctest: +SKIP
        >>> check_forget_rules(["iid:0.1", "classes:3,5"], load_dataset("digits"))  # doctest: +SKIP
    """
    from .errors import MemunlearnError

    rules = list(rules)
    twice = [r for i, r in enumerate(rules) if r in rules[:i]]
    if twice:
        raise ConfigError(f"forget rule {twice[0]!r} is given twice")

    def needs_model():
        raise _NeedsModel()

    problems = []
    for rule in rules:
        try:
            make_forget_set(rule, dataset, seed, ForgetContext(original=needs_model))
        except _NeedsModel:
            pass
        except MemunlearnError as exc:
            problems.append(str(exc))
    if len(problems) == 1:
        raise ConfigError(problems[0])
    if problems:
        raise ConfigError(f"{len(problems)} bad forget rules: " + "; ".join(problems))


def validate_indices(values: Iterable[Any], n: int, source: str = "forget indices") -> np.ndarray:
    """Check that ``values`` are distinct integers in [0, n); return them sorted as int64.

    Raises:
        ForgetSetError: naming the offending values (non-integer, negative, out of range,
        duplicated) or saying the set is empty.
    """
    values = list(np.asarray(values, dtype=object).ravel()) if not isinstance(values, list) else values
    if not values:
        raise ForgetSetError(f"{source}: the forget set is empty")
    non_integer = [v for v in values if not _is_integer(v)]
    if non_integer:
        raise ForgetSetError(f"{source}: non-integer entries {_show(non_integer)}")
    as_int = [int(v) for v in values]
    beyond = [v for v in as_int if not 0 <= v < n]
    if beyond:  # checked as Python integers: one beyond int64 must not overflow
        raise ForgetSetError(f"{source}: indices out of range [0, {n - 1}]: {_show(beyond)}")
    indices = np.array(as_int, dtype=np.int64)
    out_of_range = indices[(indices < 0) | (indices >= n)]
    if len(out_of_range):
        raise ForgetSetError(
            f"{source}: indices out of range [0, {n - 1}]: {_show(out_of_range.tolist())}"
        )
    unique, counts = np.unique(indices, return_counts=True)
    if (counts > 1).any():
        raise ForgetSetError(f"{source}: duplicated indices {_show(unique[counts > 1].tolist())}")
    return unique


def check_retain_usable(forget: ForgetSet, dataset: Dataset, allow_emptied_classes: bool) -> None:
    """Refuse forget sets that leave nothing to retain, or silently empty a class."""
    n = len(dataset.train)
    if len(forget) >= n:
        raise ForgetSetError(f"{forget.rule}: the forget set covers the whole training set; nothing is retained")
    if allow_emptied_classes:
        return
    labels = dataset.train.y.numpy()
    retained = np.bincount(labels[forget.retain_indices(n)], minlength=dataset.num_classes)
    present = np.bincount(labels, minlength=dataset.num_classes)
    emptied = np.flatnonzero((retained == 0) & (present > 0))
    if len(emptied):
        raise ForgetSetError(
            f"{forget.rule}: the forget set removes every training example of class(es) "
            f"{emptied.tolist()}; use full-class:{','.join(map(str, emptied))} to delete whole classes"
        )


def read_index_file(path: str | os.PathLike) -> list[Any]:
    """Read forget indices from a .npy file or a text file (one integer per line, # comments)."""
    path = Path(path)
    if not path.is_file():
        raise ForgetSetError(f"forget index file {path} does not exist")
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except Exception as exc:  # numpy raises ValueError, OSError, EOFError, ... for a damaged file
            raise ForgetSetError(f"forget index file {path} is not a readable .npy array ({type(exc).__name__}: "
                                 f"{exc})") from None
        if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
            raise ForgetSetError(f"forget index file {path} should hold a 1-D array of integers, got {array.dtype} "
                                 f"of shape {array.shape}")
        return array.tolist()
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ForgetSetError(
            f"forget index file {path} is not a text file (one integer per line) or a .npy array"
        ) from None
    except OSError as exc:
        raise ForgetSetError(f"forget index file {path} cannot be read ({exc.strerror or exc})") from None
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if len(line.split()) != 1 or "," in line:
            raise ForgetSetError(f"forget index file {path}, line {number}: {line[:40]!r} is not one integer; "
                                 "the format is one index per line (no commas)")
        entries.append(line)
    return entries


def _is_integer(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return True
    if isinstance(value, (float, np.floating)):
        return float(value).is_integer()
    if isinstance(value, str):
        try:
            int(value.strip())
            return True
        except ValueError:
            return False
    return False


def _show(values: list[Any], limit: int = 8) -> str:
    shown = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values[:limit])
    return f"[{shown}{', ...' if len(values) > limit else ''}] ({len(values)} in all)"


def _fraction(argument: str, rule: str) -> float:
    if not argument:
        return DEFAULT_FRACTION
    try:
        fraction = float(argument)
    except ValueError:
        raise ConfigError(f"{rule}: {argument!r} is not a fraction") from None
    if not 0 < fraction < 1:
        raise ConfigError(f"{rule}: the fraction must be in (0, 1), got {fraction}")
    return fraction


def _classes(argument: str, dataset: Dataset, rule: str) -> list[int]:
    try:
        classes = [int(c) for c in argument.split(",") if c.strip()]
    except ValueError:
        raise ConfigError(f"{rule}: classes must be integers, e.g. classes:0,6") from None
    bad = [c for c in classes if not 0 <= c < dataset.num_classes]
    if not classes or bad:
        raise ConfigError(f"{rule}: classes must be in [0, {dataset.num_classes - 1}] (got {argument!r})")
    twice = sorted({c for c in classes if classes.count(c) > 1})
    if twice:
        raise ConfigError(f"{rule}:{argument}: class {twice[0]} is listed twice")
    return classes


def _size(fraction: float, n: int, rule: str) -> int:
    """How many of ``n`` examples ``fraction`` selects; refuses a fraction that selects none."""
    size = int(round(fraction * n))
    if size < 1:
        raise ConfigError(f"{rule}: a fraction of {fraction:g} selects 0 of the {n} training examples; "
                          f"the smallest useful fraction is {1 / n:.3g}")
    return size


def _iid(dataset: Dataset, argument: str, seed: int, context: ForgetContext) -> ForgetSet:
    fraction = _fraction(argument, "iid")
    n = len(dataset.train)
    size = _size(fraction, n, f"iid:{argument}")
    indices = np.random.default_rng(seed).choice(n, size=size, replace=False)
    return ForgetSet(indices, f"iid:{fraction}", seed, info={"fraction": fraction})


def _partial_classes(dataset: Dataset, argument: str, seed: int, context: ForgetContext) -> ForgetSet:
    class_part, _, fraction_part = argument.partition(":")
    classes = _classes(class_part, dataset, "classes")
    fraction = _fraction(fraction_part, "classes")
    size = _size(fraction, len(dataset.train), f"classes:{argument}")
    pool = np.flatnonzero(np.isin(dataset.train.y.numpy(), classes))
    if size >= len(pool):
        raise ForgetSetError(
            f"classes:{class_part}: {size} examples asked for but the classes have only {len(pool)}; "
            "use a smaller fraction or full-class"
        )
    indices = np.random.default_rng(seed).choice(pool, size=size, replace=False)
    return ForgetSet(indices, f"classes:{class_part}:{fraction}", seed, info={"classes": classes, "fraction": fraction})


def _full_class(dataset: Dataset, argument: str, seed: int, context: ForgetContext) -> ForgetSet:
    classes = _classes(argument, dataset, "full-class")
    indices = np.flatnonzero(np.isin(dataset.train.y.numpy(), classes))
    return ForgetSet(indices, f"full-class:{argument}", seed, info={"classes": classes})


def _mislabeled(dataset: Dataset, argument: str, seed: int, context: ForgetContext) -> ForgetSet:
    fraction = _fraction(argument, "mislabeled")
    n, k = len(dataset.train), dataset.num_classes
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(n, size=_size(fraction, n, f"mislabeled:{argument}"), replace=False))
    labels = dataset.train.y.clone()
    # a uniformly random OTHER class: shift by 1..k-1
    labels[indices] = (labels[indices] + torch.from_numpy(rng.integers(1, k, size=len(indices)))) % k
    return ForgetSet(
        indices, f"mislabeled:{fraction}", seed, train_labels=labels,
        info={"fraction": fraction, "original_labels": dataset.train.y[indices].tolist()},
    )


def _explicit(dataset: Dataset, argument: str, seed: int, context: ForgetContext) -> ForgetSet:
    if not argument:
        raise ConfigError("indices: give a file, e.g. --forget indices:forget.txt")
    values = read_index_file(argument)
    indices = validate_indices(values, len(dataset.train), source=f"forget index file {argument}")
    return ForgetSet(indices, f"indices:{argument}", seed, info={"file": str(argument)})


register_forget_kind("iid", _iid)
register_forget_kind("classes", _partial_classes)
register_forget_kind("full-class", _full_class)
register_forget_kind("mislabeled", _mislabeled)
register_forget_kind("indices", _explicit)
