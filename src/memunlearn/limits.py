"""Ranges of the numbers a user gives: seeds, sizes, widths, epochs, workers (checked before any work).

Seeds must lie in ``[0, 2**32)``: every random generator memunlearn seeds (numpy's legacy ones
included) takes such a seed, and derived seeds (the noise floor's, the pool's) stay in range of
torch's and numpy's generators.

Sizes have a sane maximum so that a typo (``--width 10000000``, ``--epochs 1000000000``) is an
error at once instead of an allocation of petabytes or a run that never ends. To go beyond a
maximum deliberately, set the environment variable ``MEMUNLEARN_ALLOW_LARGE=1``.

Example:
    >>> check_seed(7, "--seed")
    7
    >>> check_at_most(20, "epochs", "--epochs")
    20
"""

from __future__ import annotations

import math
import os
from typing import Any

from .errors import ConfigError

SEED_LIMIT = 2**32  # seeds are in [0, SEED_LIMIT)
ALLOW_LARGE_ENV = "MEMUNLEARN_ALLOW_LARGE"

# The largest value accepted without MEMUNLEARN_ALLOW_LARGE=1.
MAXIMA = {
    "width": 1024,  # channels of the first stage (ResNet-18's papers' model: 64)
    "epochs": 10_000,  # training or unlearning epochs
    "seeds": 10_000,  # number of seeds of a run
    "workers": 1024,  # local processes or Ray CPUs
    "threads": 1024,  # torch threads of a pool member
    "pool_size": 100_000,  # models of a memorization pool or of the NeurIPS-2023 metric
    "trials": 100_000,  # tuning trials per method and forget rule
    "requests": 10_000,  # successive deletion requests
    "image_size": 1024,  # pixels of an image side
    "batch_size": 2**20,  # examples per batch
    "examples": 10**9,  # training subset or validation split
}


def large_allowed() -> bool:
    """Whether ``MEMUNLEARN_ALLOW_LARGE`` lifts the maxima (any value but empty, 0 or false)."""
    return os.environ.get(ALLOW_LARGE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_seed(value: Any, what: str = "seed", count: int = 1) -> int:
    """``value`` (and ``value + count - 1``) as a seed in ``[0, 2**32)``.

    Raises:
        ConfigError: not an integer, negative, or too large.
    """
    if not is_int(value) or value < 0:
        raise ConfigError(f"{what} must be an integer >= 0, got {value!r}")
    if value + count - 1 >= SEED_LIMIT:
        last = f" (the last of {count} seeds is {value + count - 1})" if count > 1 else ""
        raise ConfigError(f"{what} must be below 2**32 = {SEED_LIMIT}, got {value}{last}")
    return value


def check_at_most(value: Any, kind: str, what: str) -> Any:
    """``value`` unless it exceeds the maximum for ``kind`` (see :data:`MAXIMA`).

    Raises:
        ConfigError: above the maximum, with how to go beyond it.
    """
    limit = MAXIMA[kind]
    if value is not None and is_int(value) and value > limit and not large_allowed():
        raise ConfigError(f"{what} is {value}, above the maximum {limit}; set {ALLOW_LARGE_ENV}=1 to allow it")
    return value


def check_finite(value: Any, what: str) -> Any:
    """``value`` unless it is a float NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, got {value}")
    return value


# No integer hyperparameter (a batch size, a number of steps, a seed) is this large on purpose.
INT_LIMIT = 2**32

# Hyperparameters whose size is a number of passes or steps: bounded like the model's epochs.
_EPOCH_LIKE = ("epochs", "steps", "iterations")


def check_hparam_sizes(method: str, values: dict[str, Any], what: str | None = None) -> None:
    """Refuse an epochs-like hyperparameter above the epochs maximum and non-finite numbers.

    Example:
        >>> check_hparam_sizes("finetune", {"epochs": 5, "lr": 0.1})
    """
    for key, value in values.items():
        for one in value if isinstance(value, list) else [value]:
            where = what or f"{method}.{key}"
            check_finite(one, where)
            if any(key == w or key.endswith("_" + w) for w in _EPOCH_LIKE):
                check_at_most(one, "epochs", where)
            if is_int(one) and abs(one) >= INT_LIMIT and not large_allowed():
                raise ConfigError(f"{where} is {one}, beyond any sensible integer setting (at most 2**32); set "
                                  f"{ALLOW_LARGE_ENV}=1 to allow it")
