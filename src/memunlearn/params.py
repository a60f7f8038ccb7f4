"""Hyperparameter declarations: type, valid range and search range, in one place per method.

A method registers a :class:`Param` for each hyperparameter (its default stays in the function's
signature). The same declaration checks values a user gives (``--set``, an hparams file, a spec)
before any work, and defines the space that :func:`memunlearn.tune` searches.

Example:
    >>> lr = Float(low=0, low_open=True, search=(1e-3, 0.1), log=True)
    >>> lr.check("finetune", "lr", 0.01)
    0.01
    >>> lr.check("finetune", "lr", -1)
    Traceback (most recent call last):
    ...
    memunlearn.errors.ConfigError: finetune.lr must be a number > 0, got -1
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, the values it may take, and the range a search explores.

    Args:
        kind: ``"int"``, ``"float"``, ``"bool"``, ``"choice"`` or ``"text"`` (a free string, e.g. a layer name).
        low, high: valid bounds (inclusive unless ``low_open``/``high_open``); ``None`` = unbounded.
        choices: the allowed values of a ``"choice"`` parameter.
        search: ``(low, high)`` for a numeric parameter, or a tuple of values for a bool/choice one;
            ``None`` = not searched (tuning keeps the default).
        log: search on a log scale.
        help: one line for documentation and ``--help`` listings.
    """

    kind: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    search: tuple[Any, ...] | None = None
    log: bool = False
    help: str = ""

    @property
    def searched(self) -> tuple[Any, ...]:
        """The search range (or values); a ValueError for a parameter that is not searched."""
        if self.search is None:
            raise ValueError("this hyperparameter declares no search range")
        return self.search

    def describe_range(self) -> str:
        if self.kind == "bool":
            return "true or false"
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices or ()))
        if self.kind == "text":
            return "a string"
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '<='} {self.high:g}")
        what = "an integer" if self.kind == "int" else "a number"
        return what + (" " + " and ".join(parts) if parts else "")

    def check(self, method: str, name: str, value: Any) -> Any:
        """Return ``value`` as this parameter's type, or raise a ConfigError naming the problem."""
        given = value

        def fail() -> ConfigError:
            return ConfigError(f"{method}.{name} must be {self.describe_range()}, got {given!r}")

        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise fail()
        if self.kind == "choice":
            if value not in (self.choices or ()):
                raise fail()
            return value
        if self.kind == "text":
            if not isinstance(value, str):
                raise fail()
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail()
        if self.kind == "int":
            if isinstance(value, float) and not value.is_integer():
                raise fail()
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise fail()
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise fail()
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise fail()
        return value

    def with_search(self, search: tuple[Any, ...] | None, log: bool | None = None) -> "Param":
        """A copy with another search range (e.g. a method whose useful learning rates are smaller)."""
        return replace(self, search=search, log=self.log if log is None else log)


def Int(low: float | None = None, high: float | None = None, search: tuple[int, int] | None = None,
        log: bool = False, help: str = "") -> Param:
    return Param("int", low=low, high=high, search=search, log=log, help=help)


def Float(low: float | None = None, high: float | None = None, *, low_open: bool = False, high_open: bool = False,
          search: tuple[float, float] | None = None, log: bool = False, help: str = "") -> Param:
    return Param("float", low=low, high=high, low_open=low_open, high_open=high_open, search=search, log=log,
                 help=help)


def Bool(search: tuple[bool, ...] | None = None, help: str = "") -> Param:
    return Param("bool", search=search, help=help)


def Choice(*choices: Any, search: tuple[Any, ...] | None = None, help: str = "") -> Param:
    return Param("choice", choices=tuple(choices), search=search, help=help)


def Text(help: str = "") -> Param:
    """A free string (never searched), e.g. the name of a layer."""
    return Param("text", help=help)


# The parameters most methods share, declared once.
EPOCHS = Int(low=1, search=(1, 10), help="passes over the retain set")
LR = Float(low=0, low_open=True, search=(1e-3, 0.1), log=True, help="SGD learning rate")
BATCH_SIZE = Int(low=1, help="examples per batch")
MOMENTUM = Float(low=0, high=1, high_open=True, help="SGD momentum")
WEIGHT_DECAY = Float(low=0, help="SGD weight decay")
FINAL_LR_FRACTION = Float(low=0, high=1, help="the cosine schedule ends at this fraction of lr")
BUDGET = Float(low=0, high=1, low_open=True, search=(0.05, 0.6), help="fraction of all parameter entries in the mask")
MAX_GRAD_NORM = Float(low=0, low_open=True, help="gradient-norm clipping of the forget (ascent) term")

SGD_PARAMS = {"epochs": EPOCHS, "lr": LR, "batch_size": BATCH_SIZE, "momentum": MOMENTUM, "weight_decay": WEIGHT_DECAY}
