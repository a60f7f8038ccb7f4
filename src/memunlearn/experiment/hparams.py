"""Tuned hyperparameter tables (hparams files, written by :func:`memunlearn.tuning.tune` or by hand):
reading and checking them, the tables the package ships, and applying them to a spec's methods.

It sits below both the experiment run (which applies the tables) and the tuning (which writes them),
so neither imports the other for it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["HparamsTable", "apply_tuned", "load_hparams", "shipped_hparams"]


# Recipe names (memunlearn.methods.OFFICIAL): a tuned value applies on top of the recipe it was tuned
# under, and values in a file without a recipe were tuned under the earlier defaults, recipe "ours".
OFFICIAL = "official"
EARLIER = "ours"


@dataclass(frozen=True)
class HparamsTable:
    """Tuned hyperparameters per (dataset, model, width, forget rule, method), from one file."""

    source: str
    entries: tuple[dict[str, Any], ...]

    def lookup(self, dataset: str, model: str, width: int, rule: str) -> dict[str, dict[str, Any]]:
        """The methods' hyperparameters tuned for this setting: the exact forget rule first, then one
        of the same kind and classes (``iid:0.2`` takes what was tuned for ``iid:0.1``), then one of
        the same kind (``classes:1,7`` takes what was tuned for ``classes:0,6``); {} if none."""
        matching = [e for e in self.entries if (e["dataset"], e["model"], e["width"]) == (dataset, model, width)]
        for same in (lambda r: r == rule, lambda r: _rule_kind(r) == _rule_kind(rule),
                     lambda r: r.partition(":")[0] == rule.partition(":")[0]):
            for entry in matching:
                if same(entry["forget"]):
                    return entry["methods"]
        return {}


def _rule_kind(rule: str) -> str:
    kind, _, argument = rule.partition(":")
    if kind in ("classes", "full-class"):  # the classes matter, the fraction less so
        return f"{kind}:{argument.split(':')[0]}"
    return kind


def load_hparams(path: str | Path) -> HparamsTable:
    """Read an hparams file written by :func:`tune` (or by hand), checking every value.

    Raises:
        ConfigError: a missing or malformed file, an unknown method or hyperparameter, or a value
            outside its declared range.
    """
    from ..methods import available_methods, check_hparams, method_recipes

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"hparams file {path} does not exist")
    try:
        payload = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"hparams file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(payload) - {"about", "setting"})
    if unknown:
        raise ConfigError(f"hparams file {path}: unknown section [{unknown[0]}]; known: about, setting")
    entries = []
    for number, entry in enumerate(payload.get("setting", []), start=1):
        where = f"hparams file {path}, setting #{number}"
        missing = [k for k in ("dataset", "model", "width", "forget", "methods") if k not in entry]
        if missing:
            raise ConfigError(f"{where}: missing {', '.join(missing)}")
        methods = {}
        for label, values in entry["methods"].items():
            method = label.split("[", 1)[0]  # a label such as del[strategy=param-grad]: values for that sweep value
            values = dict(values)
            if "recipe" not in values and method in available_methods() and EARLIER in method_recipes(method):
                values["recipe"] = EARLIER  # tuned before recipes existed, so under the earlier defaults
            try:  # checked with the recipe's values, but keeping only the file's (the recipe fills in the rest)
                checked = check_hparams(method, values)
                methods[label] = {k: checked[k] for k in values}
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        entries.append({**entry, "methods": methods})
    return HparamsTable(str(path), tuple(entries))


def shipped_hparams(dataset: str) -> HparamsTable | None:
    """The tuned hyperparameters the package ships for ``dataset`` (None if it ships none)."""
    resource = resources.files("memunlearn") / "tuned" / f"{dataset}.toml"
    if not resource.is_file():
        return None
    with resources.as_file(resource) as path:
        return load_hparams(path)


def apply_tuned(spec, setting, log: Callable[[str], None] = lambda line: None) -> dict[str, dict[str, dict[str, Any]]]:
    """Per forget rule, the hyperparameters each method runs with: tuned values (from the spec's
    hparams file, else the package's shipped file when the setting matches) under the spec's own.

    Returns:
        ``{rule: {method: hparams}}`` (the spec's explicit values win), plus a log line per use.
    """
    table = load_hparams(spec.hparams_file) if spec.hparams_file else (
        shipped_hparams(spec.data.dataset) if spec.use_tuned else None)
    merged: dict[str, dict[str, dict[str, Any]]] = {}
    for rule in spec.forget:
        tuned = table.lookup(spec.data.dataset, setting.model_name, setting.width, rule) if table else {}
        merged[rule] = {}
        for method, values in tuned.items():
            merged[rule][method] = dict(values)
        if tuned:
            recipes = sorted({values.get("recipe", OFFICIAL) for values in tuned.values()})
            log(f"{rule}: tuned hyperparameters for {', '.join(sorted(tuned))} from {table.source}, on top of "
                f"recipe {'/'.join(recipes)} (explicit values, a recipe included, win)")
    return merged
