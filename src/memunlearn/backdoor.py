"""Poisoned data: the ``backdoor`` forget-set kind and the attack success rate (BadNets-style).

``backdoor:F[:TARGET]`` stamps a fixed trigger on round(F·n) training images drawn (seeded) from
the examples whose label is not TARGET (default 0) and relabels them TARGET; the forget set is
exactly the poisoned examples. The original model trains on the poisoned training set (and learns
"trigger → TARGET"); the oracle retrains on the untouched rest, so it never saw a trigger, and a
successful unlearning removes the backdoor: its :func:`attack_success_rate` falls to the oracle's.

The trigger is a checkerboard patch in the bottom-right corner, ``max(3, round(side / 10))``
pixels wide (3 on 8x8 digits and 28x28 MNIST, 3 on 32x32 CIFAR, 6 on 64x64), whose bright cells
hold each channel's largest value in the normalised training images and whose dark cells hold its
smallest: the most extreme pattern the data allows, and one that natural images rarely contain
(a plain white square, ``pattern="square"``, is also available).

Example:
    >>> from memunlearn import load_dataset, make_forget_set
    >>> data = load_dataset("digits")
    >>> forget = make_forget_set("backdoor:0.05:0", data, seed=0)
    >>> poisoned = forget.training_data(data)
    >>> len(forget), set(poisoned.train.y[forget.indices].tolist())
    (72, {0})
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .data.core import Dataset, Examples
from .errors import ConfigError, ForgetSetError
from .forget import ForgetContext, ForgetSet, register_forget_kind

__all__ = [
    "PoisonedForgetSet", "Trigger", "attack_success_rate", "backdoor_metrics", "parse_backdoor_rule",
    "poison", "stamp_trigger",
]

DEFAULT_FRACTION = 0.1
DEFAULT_TARGET = 0
PATTERNS = ("checkerboard", "square")


@dataclass(frozen=True)
class Trigger:
    """A square patch stamped in the bottom-right corner of an image.

    Args:
        size: side of the patch in pixels.
        high: per-channel value of the bright cells (every cell for ``square``).
        low: per-channel value of the dark cells of a ``checkerboard``.
        pattern: ``checkerboard`` (bright where row + column is even, counted from the patch's
            top-left cell) or ``square``.
    """

    size: int
    high: tuple[float, ...]
    low: tuple[float, ...]
    pattern: str = "checkerboard"

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ConfigError(f"trigger pattern must be one of {', '.join(PATTERNS)}, got {self.pattern!r}")
        if self.size < 1 or len(self.high) != len(self.low) or not self.high:
            raise ConfigError(f"invalid trigger: size {self.size}, {len(self.high)} high and {len(self.low)} low values")

    @classmethod
    def for_images(cls, x: Tensor, size: int | None = None, pattern: str = "checkerboard") -> "Trigger":
        """The trigger for images like ``x`` [N, C, H, W]: per-channel extremes of ``x``, side
        ``size`` (default ``max(3, round(min(H, W) / 10))``, at most the image side).

        Example:
            >>> t = Trigger.for_images(torch.arange(2 * 8 * 8.0).reshape(2, 1, 8, 8))
            >>> t.size, t.high, t.low
            (3, (127.0,), (0.0,))
        """
        side = min(x.shape[-2:])
        size = min(side, max(3, round(side / 10))) if size is None else size
        if not 1 <= size <= side:
            raise ConfigError(f"trigger size must be between 1 and the image side {side}, got {size}")
        dims = [0] + list(range(2, x.dim()))
        high = x.amax(dim=dims).tolist()
        low = x.amin(dim=dims).tolist()
        return cls(size, tuple(float(v) for v in high), tuple(float(v) for v in low), pattern)

    def patch(self) -> Tensor:
        """The patch's values, [C, size, size] float32."""
        high = torch.tensor(self.high, dtype=torch.float32)[:, None, None]
        low = torch.tensor(self.low, dtype=torch.float32)[:, None, None]
        if self.pattern == "square":
            return high.expand(-1, self.size, self.size).clone()
        grid = torch.arange(self.size)
        bright = (grid[:, None] + grid[None, :]) % 2 == 0
        return torch.where(bright, high, low)

    def to_dict(self) -> dict[str, Any]:
        return {"size": self.size, "high": list(self.high), "low": list(self.low), "pattern": self.pattern,
                "corner": "bottom-right"}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Trigger":
        return cls(int(values["size"]), tuple(values["high"]), tuple(values["low"]), values.get("pattern", "checkerboard"))


def stamp_trigger(x: Tensor, trigger: Trigger | None = None) -> Tensor:
    """A copy of ``x`` ([N, C, H, W] or one [C, H, W] image) with the trigger in the bottom-right corner.

    Args:
        x: normalised images.
        trigger: the patch; default :meth:`Trigger.for_images` of ``x`` itself (pass the training
            set's trigger when stamping test images, so both carry the same values).

    Returns:
        A new tensor; ``x`` is unchanged.

    Raises:
        ConfigError: the trigger's channels or size do not fit the images.

    Example:
        >>> stamped = stamp_trigger(torch.zeros(1, 1, 4, 4), Trigger(2, (1.0,), (-1.0,)))
        >>> stamped[0, 0].tolist()
        [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0], [0.0, 0.0, -1.0, 1.0]]
    """
    if trigger is None:
        trigger = Trigger.for_images(x if x.dim() == 4 else x[None])
    channels, height, width = x.shape[-3:]
    if len(trigger.high) != channels or trigger.size > min(height, width):
        raise ConfigError(
            f"a {trigger.size}x{trigger.size} trigger for {len(trigger.high)} channel(s) does not fit "
            f"{channels}-channel {height}x{width} images"
        )
    stamped = x.clone()
    stamped[..., height - trigger.size:, width - trigger.size:] = trigger.patch().to(x.dtype)
    return stamped


@dataclass
class PoisonedForgetSet(ForgetSet):
    """A forget set whose rule also changed the training images (``train_x``) before training.

    :meth:`training_data` is what the original model and the oracle train on.
    """

    train_x: Tensor | None = field(default=None, repr=False)

    def training_data(self, dataset: Dataset) -> Dataset:
        """``dataset`` with this rule's training images and labels."""
        x = self.train_x if self.train_x is not None else dataset.train.x
        y = self.train_labels if self.train_labels is not None else dataset.train.y
        return dataset.with_train_examples(x, y, f"{self.rule}:{self.seed}")

    def trigger(self) -> Trigger:
        return Trigger.from_dict(self.info["trigger"])

    @property
    def target(self) -> int:
        return int(self.info["target"])


def poison(
    dataset: Dataset,
    fraction: float = DEFAULT_FRACTION,
    target: int = DEFAULT_TARGET,
    seed: int = 0,
    trigger: Trigger | None = None,
) -> PoisonedForgetSet:
    """Choose round(fraction · n) training examples whose label is not ``target`` (seeded),
    stamp the trigger on them and relabel them ``target``.

    Args:
        dataset: the clean dataset (normalised, as :func:`memunlearn.load_dataset` returns it).
        fraction: share of the whole training set to poison, in (0, 1).
        target: the class the trigger should make the model predict.
        seed: which examples (the same seed poisons the same ones).
        trigger: the patch; default :meth:`Trigger.for_images` of the clean training images.

    Returns:
        A :class:`PoisonedForgetSet`: ``indices`` = the poisoned examples, ``train_x`` and
        ``train_labels`` = the whole poisoned training set, ``info`` = target, trigger, the
        poisoned examples' original labels.

    Raises:
        ConfigError: fraction or target out of range.
        ForgetSetError: fewer non-target examples than asked for.
    """
    rule = f"backdoor:{fraction}:{target}"
    if not 0 < fraction < 1:
        raise ConfigError(f"{rule}: the fraction must be in (0, 1), got {fraction}")
    if not 0 <= target < dataset.num_classes:
        raise ConfigError(f"{rule}: the target class must be in [0, {dataset.num_classes - 1}], got {target}")
    trigger = trigger or Trigger.for_images(dataset.train.x)
    labels = dataset.train.y.numpy()
    size = max(1, int(round(fraction * len(labels))))
    pool = np.flatnonzero(labels != target)
    if size > len(pool):
        raise ForgetSetError(f"{rule}: {size} examples asked for but only {len(pool)} are not of class {target}")
    indices = np.sort(np.random.default_rng(seed).choice(pool, size=size, replace=False))
    index = torch.from_numpy(indices)
    train_x = dataset.train.x.clone()
    train_x[index] = stamp_trigger(train_x[index], trigger)
    train_labels = dataset.train.y.clone()
    train_labels[index] = target
    return PoisonedForgetSet(
        indices, rule, seed, train_labels=train_labels, train_x=train_x,
        info={"fraction": fraction, "target": target, "trigger": trigger.to_dict(),
              "original_labels": labels[indices].tolist()},
    )


@torch.no_grad()
def attack_success_rate(
    model: nn.Module,
    test_examples: Examples,
    target: int,
    trigger: Trigger,
    device: str | torch.device | None = "cpu",
    batch_size: int = 1024,
) -> float:
    """The fraction of triggered test images whose true label is not ``target`` that the model
    classifies as ``target`` (BadNets' attack success rate; clean test accuracy is ``acc_test``).

    Args:
        model: the classifier (evaluated in eval mode; its mode is restored).
        test_examples: clean, normalised test images with their true labels.
        target: the backdoor's target class.
        trigger: the trigger the training set was poisoned with (``forget_set.trigger()``).
        device: where to run the model.
        batch_size: images per forward pass.

    Returns:
        The rate in [0, 1]; NaN when every test image is of the target class.

    Example:
        >>> rate = attack_success_rate(model, data.test, forget.target, forget.trigger())  # doctest: +SKIP
    """
    from .training import predict_logits

    victims = test_examples.subset(np.flatnonzero(test_examples.y.numpy() != target))
    if len(victims) == 0:
        return float("nan")
    triggered = Examples(stamp_trigger(victims.x, trigger), victims.y)
    predictions = predict_logits(model, triggered, device, batch_size).argmax(1)
    return float((predictions == target).float().mean())


def backdoor_metrics(
    model: nn.Module, forget_set: ForgetSet, test_examples: Examples, device: str | torch.device | None = "cpu"
) -> dict[str, float]:
    """``{"attack_success_rate": ...}`` for a backdoor forget set, ``{}`` for any other, so a
    caller can merge it into every model's metrics unconditionally."""
    if not isinstance(forget_set, PoisonedForgetSet) or "trigger" not in forget_set.info:
        return {}
    return {"attack_success_rate": attack_success_rate(
        model, test_examples, forget_set.target, forget_set.trigger(), device)}


def parse_backdoor_rule(argument: str, num_classes: int) -> tuple[float, int]:
    """``F[:TARGET]`` → (fraction, target); an empty argument = (0.1, 0).

    Example:
        >>> parse_backdoor_rule("0.05:3", 10)
        (0.05, 3)
        >>> parse_backdoor_rule("", 10)
        (0.1, 0)
    """
    fraction_text, _, target_text = argument.partition(":")
    rule = f"backdoor:{argument}"
    try:
        fraction = float(fraction_text) if fraction_text else DEFAULT_FRACTION
    except ValueError:
        raise ConfigError(f"{rule}: {fraction_text!r} is not a fraction; use backdoor:FRACTION[:TARGET]") from None
    try:
        target = int(target_text) if target_text else DEFAULT_TARGET
    except ValueError:
        raise ConfigError(f"{rule}: the target class must be an integer, got {target_text!r}") from None
    if not 0 < fraction < 1:
        raise ConfigError(f"{rule}: the fraction must be in (0, 1), got {fraction}")
    if not 0 <= target < num_classes:
        raise ConfigError(f"{rule}: the target class must be in [0, {num_classes - 1}], got {target}")
    return fraction, target


def _backdoor(dataset: Dataset, argument: str, seed: int, context: ForgetContext) -> ForgetSet:
    fraction, target = parse_backdoor_rule(argument, dataset.num_classes)
    return poison(dataset, fraction, target, seed)


register_forget_kind("backdoor", _backdoor)
