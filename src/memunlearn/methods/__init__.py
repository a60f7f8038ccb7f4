"""Unlearning methods, one file each, registered by name (this registry is the only list).

Example:
    >>> from memunlearn.methods import unlearn  # doctest: +SKIP
    >>> result = unlearn("finetune", model, forget, retain, epochs=3)  # doctest: +SKIP
    >>> result.model, result.cost.wall_time  # doctest: +SKIP
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
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
# The recipe a method runs when none is named: its official code's defaults.
OFFICIAL = "official"


@dataclass(frozen=True)
class Source:
    """Where a method's official recipe comes from: a public repository, a commit, a file and lines.

    Example:
        >>> str(Source("kairanzhao/RUM", "f593c9d", "unlearn/FT.py", "14-60"))
        'kairanzhao/RUM@f593c9d:unlearn/FT.py:14-60'
    """

    repo: str
    commit: str
    file: str
    lines: str = ""

    def __str__(self) -> str:
        return f"{self.repo}@{self.commit}:{self.file}" + (f":{self.lines}" if self.lines else "")


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
    source: Source | None = None,
    no_public_code: str | None = None,
    recipes: Mapping[str, Mapping[str, Any]] | None = None,
    differences: tuple[str, ...] = (),
    equivalence: str | None = None,
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
        source: the official code whose recipe the signature's defaults transcribe (the
            ``official`` recipe).
        no_public_code: why there is no ``source`` (e.g. the method is this library's own); a
            registered method needs one or the other.
        recipes: other named recipes, each the hyperparameters it changes from the official
            defaults (e.g. ``{"ours": {"schedule": "cosine"}}``); ``recipe=NAME`` selects one.
        differences: what this library does differently from ``source`` on purpose, one line each.
        equivalence: the test (``tests/FILE.py::NAME``) that compares the method with a
            transcription of ``source``'s update loop.

    Raises:
        ConfigError: ``name`` is already registered, ``params`` does not match the signature, or a
            recipe names a hyperparameter the method does not have or a value out of its range.
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
        named = {OFFICIAL: {}, **{k: dict(v) for k, v in (recipes or {}).items()}}
        for recipe, values in named.items():
            for key, value in values.items():
                if key not in declared:
                    raise ConfigError(f"method {name!r} recipe {recipe!r} sets {key!r}, which the method does not "
                                      f"take; it takes {', '.join(sorted(declared))}")
                declared[key].check(name, key, value)
        return METHODS.register(name, method, params=declared, defaults=defaults,
                                takes_epochs=takes_epochs, makes_own_mask=makes_own_mask, source=source,
                                no_public_code=no_public_code, recipes=named, differences=tuple(differences),
                                equivalence=equivalence)

    return add if fn is None else add(fn)


def available_methods() -> list[str]:
    return METHODS.names()


def get_method(name: str) -> MethodFn:
    return METHODS.get(name)


def method_defaults(name: str) -> dict[str, Any]:
    """The documented default hyperparameters of a method (its keyword defaults)."""
    return dict(METHODS.entry(name).metadata["defaults"])


def method_recipes(name: str) -> dict[str, dict[str, Any]]:
    """Each named recipe of a method: the hyperparameters it changes from the official defaults."""
    return {k: dict(v) for k, v in METHODS.entry(name).metadata["recipes"].items()}


def method_params(name: str) -> dict[str, Param]:
    """Each hyperparameter's declaration (type, valid range, search range)."""
    return dict(METHODS.entry(name).metadata["params"])


def describe_method(name: str) -> dict[str, Any]:
    """What ``memunlearn methods`` lists for one method (plain data, JSON-ready): its source, its
    recipes, its deliberate differences, the test that checks it, and each hyperparameter's
    default, valid range and help.

    Raises:
        ConfigError: unknown method.

    Example:
        >>> info = describe_method("finetune")
        >>> info["recipes"]["official"], info["hyperparameters"]["schedule"]["default"]
        ({}, 'constant')
    """
    entry = METHODS.entry(name).metadata
    defaults, params = entry["defaults"], entry["params"]
    source = entry.get("source")
    return {
        "name": name,
        "source": None if source is None else {"repo": source.repo, "commit": source.commit, "file": source.file,
                                               "lines": source.lines, "text": str(source)},
        "no_public_code": entry.get("no_public_code"),
        "recipes": {k: dict(v) for k, v in entry["recipes"].items()},
        "differences": list(entry.get("differences", ())),
        "equivalence": entry.get("equivalence"),
        "hyperparameters": {
            key: {"default": defaults[key], "range": params[key].describe_range(), "help": params[key].help,
                  "searched": params[key].search is not None}
            for key in defaults
        },
    }


def describe_methods(names: list[str] | None = None) -> list[dict[str, Any]]:
    """:func:`describe_method` for each of ``names`` (default: every registered method, in registry order)."""
    return [describe_method(n) for n in (available_methods() if names is None else names)]


def check_hparams(name: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``hparams`` for method ``name`` before any work; return them with their declared types.

    ``recipe`` (default ``official``) names one of the method's recipes: its values fill in under
    the ones given, so explicit values win; a named recipe stays in the result (``recipe`` first),
    so checking the result again changes nothing and :func:`unlearn` records it. ``seed`` and
    ``device`` pass through unchecked.

    Raises:
        ConfigError: unknown method, unknown recipe, unknown hyperparameter, or a value of the wrong
            type or range.

    Example:
        >>> check_hparams("finetune", {"lr": 0.01, "epochs": 2.0})
        {'lr': 0.01, 'epochs': 2}
    """
    params = method_params(name)
    given = dict(hparams)
    named = "recipe" in given
    recipe = given.pop("recipe", OFFICIAL)
    recipes = method_recipes(name)
    if recipe not in recipes:
        raise ConfigError(f"unknown recipe {recipe!r} for method {name!r}; known: {', '.join(recipes)}")
    unknown = sorted(set(given) - set(params) - set(RUN_ARGUMENTS))
    if unknown:
        raise ConfigError(f"method {name!r} has no hyperparameter(s) {unknown}; it takes {sorted(params)} "
                          f"(and recipe: one of {', '.join(recipes)})")
    given = {**recipes[recipe], **given}
    checked = {k: (v if k in RUN_ARGUMENTS else params[k].check(name, k, v)) for k, v in given.items()}
    return {"recipe": recipe, **checked} if named else checked


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
    recipe = hparams.pop("recipe", OFFICIAL)
    forget, retain = as_examples(forget, name="forget"), as_examples(retain, name="retain")
    try:
        result = get_method(name)(model, forget, retain, mask=mask, **hparams)
        result.hparams = {"recipe": recipe, **result.hparams}
        return result
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
    "METHODS", "OFFICIAL", "Cost", "Source", "UnlearnResult", "UnlearningRun", "available_methods", "check_hparams",
    "describe_method", "describe_methods",
    "get_method", "method_defaults", "method_params", "method_recipes", "register_method", "unlearn", "validate_mask",
]
