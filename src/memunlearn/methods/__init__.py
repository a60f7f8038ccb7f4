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

from ..data.core import Examples, StreamingError, as_examples
from ..errors import ConfigError
from ..params import Bool, Float, Int, Param
from ..registry import Registry
from .base import Cost, UnlearningRun, UnlearnResult, validate_mask

MethodFn = Callable[..., UnlearnResult]
METHODS: Registry[MethodFn] = Registry("method")
# Every method takes these besides its own hyperparameters; they are not searched.
RUN_ARGUMENTS = ("seed", "device")


def _signature_defaults(fn: MethodFn) -> dict[str, Any]:
    return {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty
        and k not in RUN_ARGUMENTS
    }


def _param_from_default(default: Any) -> Param:
    if isinstance(default, bool):
        return Bool()
    if isinstance(default, int):
        return Int()
    return Float()


def register_method(
    name: str,
    fn: MethodFn | None = None,
    *,
    params: Mapping[str, Param] | None = None,
    takes_epochs: bool = True,
    makes_own_mask: bool = False,
) -> Any:
    """Register ``fn(model, forget, retain, mask=None, *, **hparams) -> UnlearnResult`` as ``name``.

    Used as ``register_method("name", fn, params=...)`` or as a decorator
    ``@register_method("name", params=...)``.

    Args:
        name: the method's name; registering it twice is an error.
        fn: the method; its keyword-only defaults are its default hyperparameters.
        params: a :class:`~memunlearn.params.Param` per hyperparameter (type, valid range, search
            range); omitted, each is typed from its default and unbounded, and not searched.
        takes_epochs: whether the method trains for a number of epochs (``epochs`` hyperparameter).
        makes_own_mask: whether the method computes its own mask when none is given (del, salun).

    Raises:
        ConfigError: ``name`` is already registered, or ``params`` does not match the signature.
    """
    def add(method: MethodFn) -> MethodFn:
        defaults = _signature_defaults(method)
        declared = dict(params) if params is not None else {k: _param_from_default(v) for k, v in defaults.items()}
        if set(declared) != set(defaults):
            raise ConfigError(
                f"method {name!r} declares parameters {sorted(declared)} but its signature has {sorted(defaults)}"
            )
        for key, param in declared.items():
            param.check(name, key, defaults[key])  # a default outside its own range is a bug
        return METHODS.register(name, method, params=declared, defaults=defaults,
                                takes_epochs=takes_epochs, makes_own_mask=makes_own_mask)

    return add if fn is None else add(fn)


def available_methods() -> list[str]:
    return METHODS.names()


def get_method(name: str) -> MethodFn:
    return METHODS.get(name)


def method_defaults(name: str) -> dict[str, Any]:
    """The documented default hyperparameters of a method (its keyword defaults)."""
    return dict(METHODS.entry(name).metadata["defaults"])


def method_params(name: str) -> dict[str, Param]:
    """Each hyperparameter's declaration (type, valid range, search range)."""
    return dict(METHODS.entry(name).metadata["params"])


def check_hparams(name: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``hparams`` for method ``name`` before any work; return them with their declared types.

    ``seed`` and ``device`` pass through unchecked.

    Raises:
        ConfigError: unknown method, unknown hyperparameter, or a value of the wrong type or range.

    Example:
        >>> check_hparams("finetune", {"lr": 0.01, "epochs": 2.0})
        {'lr': 0.01, 'epochs': 2}
    """
    params = method_params(name)
    unknown = sorted(set(hparams) - set(params) - set(RUN_ARGUMENTS))
    if unknown:
        raise ConfigError(f"method {name!r} has no hyperparameter(s) {unknown}; it takes {sorted(params)}")
    return {k: (v if k in RUN_ARGUMENTS else params[k].check(name, k, v)) for k, v in hparams.items()}


def unlearn(
    name: str,
    model: nn.Module,
    forget: Examples | Any,
    retain: Examples | Any,
    mask: Mapping[str, Tensor] | None = None,
    **hparams: Any,
) -> UnlearnResult:
    """Unlearn ``forget`` from ``model`` with the method ``name``; ``model`` is left untouched.

    Args:
        name: a registered method (see :func:`available_methods`).
        model: the original trained model.
        forget: the examples to forget: :class:`Examples`, or a torch ``Dataset`` or ``DataLoader``
            of ``(input, label)``, materialised once (or streamed when large) by
            :func:`~memunlearn.data.as_examples`.
        retain: the examples to keep (the same kinds).
        mask: optional hard constraint: entries where it is False stay bitwise identical.
        **hparams: the method's hyperparameters (see :func:`method_defaults`), plus ``seed`` and ``device``.

    Returns:
        :class:`UnlearnResult` with the new model and its :class:`Cost`.

    Raises:
        ConfigError: unknown method or hyperparameter; data that is not (input, integer label)
            pairs; a method that needs every example at once given a streamed set.
        DivergedError: the method's loss became NaN or infinite.
        CheckpointError: a mask that does not fit the model.

    Example:
        >>> result = unlearn("finetune", model, forget, retain, epochs=2)  # doctest: +SKIP
    """
    hparams = check_hparams(name, hparams)
    forget, retain = as_examples(forget, name="forget"), as_examples(retain, name="retain")
    try:
        return get_method(name)(model, forget, retain, mask=mask, **hparams)
    except StreamingError as exc:
        raise ConfigError(
            f"method {name!r} needs {exc.what}, which a streamed dataset ({exc.size} examples, "
            "over max_in_memory) cannot give: materialise it with memunlearn.data.as_examples(data, "
            "max_in_memory=None) if it fits in memory, or use a method that only iterates batches "
            "(docs/your-own-data.md lists them)"
        ) from None


# Importing the method modules registers them, in the order `memunlearn run` lists them.
from . import retrain, finetune, neggrad, neggrad_plus, random_label, l1_sparse, salun, scrub, ssd, del_method, uniform_contrastive, small_grad_reinit, conv_transpose, noise_injection, stop_when_done  # noqa: E402,F401,I001

__all__ = [
    "METHODS", "Cost", "UnlearnResult", "UnlearningRun", "available_methods", "check_hparams", "get_method",
    "method_defaults", "method_params", "register_method", "unlearn", "validate_mask",
]
