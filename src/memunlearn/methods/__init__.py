"""Unlearning methods, one file each, registered by name (this registry is the only list).

Example:
    >>> from memunlearn.methods import unlearn  # doctest: +SKIP
    >>> result = unlearn("finetune", model, forget, retain, epochs=3)  # doctest: +SKIP
    >>> result.model, result.cost.wall_time  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

from torch import Tensor, nn

from ..data.core import Examples
from ..errors import ConfigError, unknown_name
from .base import Cost, UnlearningRun, UnlearnResult, validate_mask

MethodFn = Callable[..., UnlearnResult]
_METHODS: dict[str, MethodFn] = {}


def register_method(name: str, fn: MethodFn) -> MethodFn:
    """Register ``fn(model, forget, retain, mask=None, **hparams) -> UnlearnResult`` as ``name``."""
    if name in _METHODS:
        raise ValueError(f"method {name!r} is already registered")
    _METHODS[name] = fn
    return fn


def available_methods() -> list[str]:
    return list(_METHODS)


def get_method(name: str) -> MethodFn:
    if name not in _METHODS:
        raise unknown_name("method", name, _METHODS)
    return _METHODS[name]


def method_defaults(name: str) -> dict[str, Any]:
    """The documented default hyperparameters of a method (its keyword defaults)."""
    signature = inspect.signature(get_method(name))
    return {
        k: p.default
        for k, p in signature.parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
    }


def unlearn(
    name: str,
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    **hparams: Any,
) -> UnlearnResult:
    """Unlearn ``forget`` from ``model`` with the method ``name``; ``model`` is left untouched.

    Args:
        name: a registered method (see :func:`available_methods`).
        model: the original trained model.
        forget: the examples to forget.
        retain: the examples to keep.
        mask: optional hard constraint: entries where it is False stay bitwise identical.
        **hparams: the method's hyperparameters (see :func:`method_defaults`), plus ``seed`` and ``device``.

    Returns:
        :class:`UnlearnResult` with the new model and its :class:`Cost`.

    Raises:
        ConfigError: unknown method or hyperparameter.
        DivergedError: the method's loss became NaN or infinite.
        CheckpointError: a mask that does not fit the model.

    Example:
        >>> result = unlearn("finetune", model, forget, retain, epochs=2)  # doctest: +SKIP
    """
    fn = get_method(name)
    known = method_defaults(name)
    unknown = sorted(set(hparams) - set(known))
    if unknown:
        raise ConfigError(f"method {name!r} has no hyperparameter(s) {unknown}; it takes {sorted(known)}")
    return fn(model, forget, retain, mask=mask, **hparams)


# Importing the method modules registers them, in the order `memunlearn run` lists them.
from . import retrain, finetune, neggrad, neggrad_plus, random_label, l1_sparse, salun, scrub, ssd, del_method  # noqa: E402,F401,I001

__all__ = [
    "Cost", "UnlearnResult", "UnlearningRun", "available_methods", "get_method",
    "method_defaults", "register_method", "unlearn", "validate_mask",
]
