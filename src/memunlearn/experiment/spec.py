"""Experiment specs: what to run, as a TOML file or a dictionary (SPEC §8).

A spec names the data, the model and its recipe, the forget sets, the methods with their
hyperparameters, the seeds, the evaluation, the executor and the tuning budget. Lists make a
sweep: several forget rules, several seeds, and a list as a method hyperparameter's value run
the cross product, one *cell* per (seed × forget rule × method × hyperparameters).

Example spec (every key is optional; these are the defaults except where noted)::

    [data]
    dataset = "digits"
    train_subset = 400          # default: the whole training set

    [model]                      # default: the dataset's recipe
    epochs = 5

    [forget]
    rules = ["iid:0.1", "classes:3,5"]

    [seeds]
    first = 0
    count = 3

    [methods]
    run = ["finetune", "del", "rum:none:finetune:salun"]

    [methods.finetune]
    lr = [0.01, 0.05]            # a list: one cell per value

    [methods."rum:none:finetune:salun"]   # a pipeline's own settings, per step (step1 = low ...)
    step3 = { epochs = 3 }

    [evaluation]
    noise_floor = true           # an independent retrain (another seed) against the oracle

    [executor]
    name = "local"
    workers = 1

    [requests]                   # deletion requests over time (default: one forget set)
    count = 5                    # 5 successive forget sets, each unlearned from the previous model

Example:
    >>> spec = spec_from_dict({"methods": {"run": ["finetune"], "finetune": {"lr": [0.01, 0.05]}}})
    >>> [cell.label for cell in spec.method_cells()]
    ['finetune[lr=0.01]', 'finetune[lr=0.05]']
"""

from __future__ import annotations

import copy
import itertools
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_FORGET = "iid:0.1"
DEFAULT_COST_CAP = 0.2  # the NeurIPS-2023 challenge's limit: 20% of the oracle's retrain time


@dataclass(frozen=True, eq=True)
class DataSpec:
    """Which data: a dataset name, where its files are, an optional stratified training subset,
    and an optional validation split held out of the training data (used instead of the test set
    to score methods, as tuning must)."""

    dataset: str = "digits"
    data_dir: str | None = None
    train_subset: int | None = None
    validation: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # the reader's own ([data.options]: imagefolder's image_size, ...)


@dataclass(frozen=True)
class ModelSpec:
    """Which model and training recipe (the original's, and so the oracle's); ``None`` = the
    dataset's recipe. ``lr``, ``batch_size``, ``weight_decay`` and ``final_lr_fraction`` (the
    cosine's floor as a fraction of lr) let a paper spec train as the paper's code does."""

    name: str | None = None
    width: int | None = None
    epochs: int | None = None
    fast: bool = False
    lr: float | None = None
    batch_size: int | None = None
    weight_decay: float | None = None
    final_lr_fraction: float | None = None

    def train_overrides(self) -> dict[str, Any]:
        """The training-recipe values this spec sets (the rest come from the dataset's recipe)."""
        return {k: getattr(self, k) for k in ("lr", "batch_size", "weight_decay", "final_lr_fraction")
                if getattr(self, k) is not None}


@dataclass(frozen=True)
class EvaluationSpec:
    """What is measured besides accuracies, ToW and the population attacks."""

    noise_floor: bool = True
    metrics: tuple[str, ...] = ()
    pool_size: int = 64  # U-LiRA's shadow models (the memorization pool)
    pool_fraction: float = 0.7
    pool_seed: int = 0
    neurips2023_models: int = 32  # N unlearned and N retrained models per cell (512 in the challenge)
    pool_keep_weights: bool | None = None  # members store weights; None = when ulira is asked for
    rmia_references: int = 4  # rmia's reference models per example (1, 2, 4, … up to it are reported)
    rmia_u_references: int = 4  # rmia-u's retrains without the forget set
    audit: bool = False  # the oracle-free audit of every model, calibrated against the oracle (auditing.py)
    audit_holdout: int = 0  # N training examples held out of every model: the audit's H and stop:METHOD's; 0 = test set


@dataclass(frozen=True)
class ExecutorSpec:
    name: str = "local"
    workers: int = 1
    ray_address: str | None = None


@dataclass(frozen=True)
class TuningSpec:
    """How ``memunlearn tune`` searches (SPEC §3): a cost cap as a fraction of the oracle's
    retrain time, the number of trials per method, the sampler, the tuning seed and the size of
    the validation split held out of the training data."""

    cost_cap: float = DEFAULT_COST_CAP
    trials: int = 12
    sampler: str = "tpe"
    seed: int = 1000
    validation: int = 500
    space: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class RequestsSpec:
    """Deletion requests over time (:mod:`memunlearn.experiment.requests`): ``count`` successive
    forget sets, each drawn by the forget rule from what is still retained and unlearned from the
    model the previous request produced; ``None`` = the experiment's one forget set only."""

    count: int | None = None


@dataclass(frozen=True)
class MethodCell:
    """One method entry with one combination of hyperparameters (a column of the sweep)."""

    entry: str
    hparams: dict[str, Any]
    label: str


@dataclass
class ExperimentSpec:
    """Everything that determines an experiment; recorded verbatim in results.json."""

    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    forget: tuple[str, ...] = (DEFAULT_FORGET,)
    seeds: tuple[int, ...] = (0,)
    methods: tuple[str, ...] = ()
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    evaluation: EvaluationSpec = field(default_factory=EvaluationSpec)
    executor: ExecutorSpec = field(default_factory=ExecutorSpec)
    tuning: TuningSpec = field(default_factory=TuningSpec)
    requests: RequestsSpec = field(default_factory=RequestsSpec)
    device: str = "auto"
    cache_dir: str | None = None
    rum_score: str = "confidence"
    hparams_file: str | None = None
    # the package's shipped tuned hyperparameters, when the setting matches; off by default: they were
    # tuned under recipe "ours", and a method runs its official recipe unless asked otherwise
    use_tuned: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain data, in the same layout as a TOML spec file (round-trips)."""
        methods: dict[str, Any] = {"run": list(self.methods)}
        methods.update({name: dict(values) for name, values in self.hparams.items()})
        payload = {
            "data": {k: v for k, v in _drop_none(asdict(self.data)).items() if v != {}},
            "model": _drop_none(asdict(self.model)),
            "forget": {"rules": list(self.forget)},
            "seeds": {"list": list(self.seeds)},
            "methods": methods,
            "evaluation": {**asdict(self.evaluation), "metrics": list(self.evaluation.metrics)},
            "executor": _drop_none(asdict(self.executor)),
            "tuning": asdict(self.tuning),
            "run": _drop_none({"device": self.device, "cache_dir": self.cache_dir, "rum_score": self.rum_score,
                               "hparams_file": self.hparams_file, "use_tuned": self.use_tuned}),
        }
        if self.requests.count is not None:
            payload["requests"] = {"count": self.requests.count}
        return payload

    def method_cells(self) -> list[MethodCell]:
        """Every (method entry × hyperparameter combination), in the order of ``methods``.

        A list as a hyperparameter's value is swept; the label names the swept values only, so an
        entry without a sweep keeps its plain name.
        """
        from ..rum import methods_in_entry, parse_entry

        cells = []
        for entry in self.methods:
            plain = parse_entry(entry) is None
            tables = {m: self.hparams.get(m, {}) for m in methods_in_entry(entry)}
            if not plain and entry in self.hparams:  # the pipeline's own table: recipe, step1 ...
                tables[entry] = self.hparams[entry]
            swept = [(path, value) for path, value in _leaves(tables) if isinstance(value, list)]
            for combo in itertools.product(*[v for _, v in swept]) if swept else [()]:
                hparams = copy.deepcopy(tables)
                for (path, _), value in zip(swept, combo):
                    _assign(hparams, path, value)
                suffix = ",".join(".".join(path[1:] if plain or path[0] == entry else path) + f"={value}"
                                  for (path, _), value in zip(swept, combo))
                label = f"{entry}[{suffix}]" if suffix else entry
                cells.append(MethodCell(entry, hparams[entry] if plain else hparams, label))
        return cells


def _leaves(tables: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(path, value) of every value in nested tables (a pipeline's step tables nest one deeper)."""
    out = []
    for key, value in tables.items():
        if isinstance(value, Mapping):
            out += _leaves(value, (*prefix, key))
        else:
            out.append(((*prefix, key), value))
    return out


def _assign(tables: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tables = tables[key]
    tables[path[-1]] = value


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


# ------------------------------------------------------------------------------------------------
# Parsing: a TOML file or a dictionary → ExperimentSpec, with errors that name the key and line

_SECTIONS = ("data", "model", "forget", "seeds", "methods", "evaluation", "executor", "tuning", "requests", "run")


class _Where:
    """Finds the line of a key in the spec's text, for error messages."""

    def __init__(self, path: str | None, text: str | None):
        self.path, self.lines = path, (text or "").splitlines()

    def __call__(self, section: str, key: str | None = None) -> str:
        if self.path is None:
            return f"[{section}]" + (f" {key}" if key else "")
        line = self._find(section, key)
        place = f"{self.path}:{line}" if line else self.path
        return f"{place}: [{section}]" + (f" {key}" if key else "")

    def _find(self, section: str, key: str | None) -> int | None:
        current = None
        header = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]")
        for number, line in enumerate(self.lines, start=1):
            match = header.match(line)
            if match:
                current = match.group(1).replace('"', "").replace("'", "")
                if current == section if key is None else current == f"{section}.{key}":
                    return number
                continue
            if key is not None and current == section and re.match(rf"^\s*[\"']?{re.escape(key)}[\"']?\s*=", line):
                return number
        return None


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read a spec from a TOML file, or from a results.json (which carries the spec that made it).

    Raises:
        ConfigError: a missing or unreadable file, invalid TOML, unknown keys, wrong types or
            contradictory settings, each naming the key and the file line.

    Example:
        >>> spec = load_spec("benchmarks/specs/quick-digits.toml")  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"spec file {path} does not exist")
    text = path.read_text(errors="replace")
    if path.suffix == ".json":
        payload = read_json_file(path, "results file")
        if not isinstance(payload, dict) or "spec" not in payload:
            raise ConfigError(f"{path} carries no experiment spec (a results.json from memunlearn 0.2 or later does)")
        check_results_format(payload, path)
        if not isinstance(payload["spec"], Mapping):
            raise ConfigError(f"{path}: its 'spec' is a {type(payload['spec']).__name__}, not a table")
        return spec_from_dict(payload["spec"], source=str(path))
    try:
        payload = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return spec_from_dict(payload, source=str(path), text=text)


# The newest results.json layout this version reads (``format`` in results.json).
RESULTS_FORMAT = 2
MAX_JSON_DEPTH = 200


def read_json_file(path: str | Path, what: str = "JSON file") -> Any:
    """Parse a JSON file with errors a user can act on: invalid JSON, nesting deeper than
    :data:`MAX_JSON_DEPTH`, integers too long to convert (instead of RecursionError/ValueError).

    Raises:
        ConfigError: unreadable, invalid or absurdly nested JSON.
    """
    import json

    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} {path} ({type(exc).__name__}: {exc})") from None
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise ConfigError(f"{what} {path} is nested {depth} levels deep (at most {MAX_JSON_DEPTH}); it is not a "
                          "memunlearn file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit integer, ...
        raise ConfigError(f"{what} {path} cannot be read as JSON ({str(exc).split(';')[0]})") from None


def _json_depth(text: str) -> int:
    """The deepest nesting of brackets in JSON text, ignoring brackets inside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def check_results_format(payload: Mapping[str, Any], path: str | Path) -> None:
    """Refuse a results.json of a format newer than this version reads (or a format that is not an integer)."""
    version = payload.get("format", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"{path}: 'format' must be a positive integer, got {version!r}")
    if version > RESULTS_FORMAT:
        raise ConfigError(f"{path} is results format {version}, newer than this memunlearn reads ({RESULTS_FORMAT}); "
                          "upgrade memunlearn")


def spec_from_dict(payload: Mapping[str, Any], source: str | None = None, text: str | None = None) -> ExperimentSpec:
    """Build and check an :class:`ExperimentSpec` from a dictionary laid out like a spec file.

    Raises:
        ConfigError: unknown keys, wrong types, or contradictory settings.
    """
    where = _Where(source, text)
    unknown = sorted(set(payload) - set(_SECTIONS))
    if unknown:
        raise ConfigError(f"{where(unknown[0])}: unknown section; known: {', '.join(_SECTIONS)}")
    for name in payload:
        if not isinstance(payload[name], Mapping):
            raise ConfigError(f"{where(name)}: must be a table ([{name}])")

    def section(name: str, cls, rename: Mapping[str, str] | None = None) -> Any:
        values = dict(payload.get(name, {}))
        known = {f.name: f for f in fields(cls)}
        rename = rename or {}
        out = {}
        for key, value in values.items():
            target = rename.get(key, key)
            if target not in known:
                raise ConfigError(f"{where(name, key)}: unknown key; known: {', '.join(sorted(known))}")
            out[target] = _typed(value, known[target].type, where(name, key))  # type: ignore[arg-type]  # a str: annotations are postponed
        return cls(**out)

    data = section("data", DataSpec)
    model = section("model", ModelSpec)
    evaluation = section("evaluation", EvaluationSpec)
    executor = section("executor", ExecutorSpec)
    tuning = section("tuning", TuningSpec)
    requests = section("requests", RequestsSpec)
    forget = _forget_rules(payload.get("forget", {}), where)
    seeds = _seeds(payload.get("seeds", {}), where)
    methods, hparams = _methods(payload.get("methods", {}), where)
    run = dict(payload.get("run", {}))
    run_keys = {"device": "str", "cache_dir": "str | None", "rum_score": "str", "hparams_file": "str | None",
                "use_tuned": "bool"}
    for key in run:
        if key not in run_keys:
            raise ConfigError(f"{where('run', key)}: unknown key; known: {', '.join(run_keys)}")
        run[key] = _typed(run[key], run_keys[key], where("run", key))
    spec = ExperimentSpec(data=data, model=model, forget=forget, seeds=seeds, methods=methods, hparams=hparams,
                          evaluation=evaluation, executor=executor, tuning=tuning, requests=requests, **run)
    check_spec(spec, where)
    return spec


def _typed(value: Any, annotation: str, where: str) -> Any:
    """Check ``value`` against a dataclass field's annotation (as a string)."""
    optional = "None" in annotation
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{where}: must not be empty")
    base = annotation.replace(" | None", "").strip()
    if base.startswith("tuple"):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: must be a list of strings, got {value!r}")
        return tuple(value)
    if base.startswith("dict"):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: must be a table, got {value!r}")
        return {k: dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}
    expected = {"str": str, "int": int, "float": (int, float), "bool": bool}[base]
    if isinstance(value, bool) and base != "bool":
        raise ConfigError(f"{where}: must be {_article(base)}, got {value!r}")
    if not isinstance(value, expected):  # type: ignore[arg-type]  # mypy joins the table's types to object
        raise ConfigError(f"{where}: must be {_article(base)}, got {value!r}")
    return float(value) if base == "float" else value


def _article(base: str) -> str:
    return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false"}[base]


def _forget_rules(values: Mapping[str, Any], where) -> tuple[str, ...]:
    unknown = sorted(set(values) - {"rules", "rule"})
    if unknown:
        raise ConfigError(f"{where('forget', unknown[0])}: unknown key; known: rule, rules")
    if "rules" in values and "rule" in values:
        raise ConfigError(f"{where('forget', 'rule')}: give either rule or rules, not both")
    rules = values.get("rules", [values["rule"]] if "rule" in values else [DEFAULT_FORGET])
    if isinstance(rules, str):
        rules = [rules]
    if not isinstance(rules, list) or not rules or not all(isinstance(r, str) and r for r in rules):
        raise ConfigError(f"{where('forget', 'rules')}: must be a non-empty list of forget rules, e.g. [\"iid:0.1\"]")
    _no_duplicates(rules, where("forget", "rules"))
    return tuple(rules)


def _seeds(values: Mapping[str, Any], where) -> tuple[int, ...]:
    unknown = sorted(set(values) - {"first", "count", "list"})
    if unknown:
        raise ConfigError(f"{where('seeds', unknown[0])}: unknown key; known: first, count, list")
    if "list" in values:
        if "first" in values or "count" in values:
            raise ConfigError(f"{where('seeds', 'list')}: give either list or first/count, not both")
        seeds = values["list"]
        if not isinstance(seeds, list) or not seeds or not all(_is_int(s) and s >= 0 for s in seeds):
            raise ConfigError(f"{where('seeds', 'list')}: must be a non-empty list of integers >= 0")
        _no_duplicates(seeds, where("seeds", "list"))
        return tuple(seeds)
    first, count = values.get("first", 0), values.get("count", 1)
    if not _is_int(first) or first < 0:
        raise ConfigError(f"{where('seeds', 'first')}: must be an integer >= 0, got {first!r}")
    if not _is_int(count) or count < 1:
        raise ConfigError(f"{where('seeds', 'count')}: must be an integer >= 1, got {count!r}")
    from ..limits import check_at_most, check_seed

    check_at_most(count, "seeds", where("seeds", "count"))
    check_seed(first, where("seeds", "first"), count)
    return tuple(range(first, first + count))


def _methods(values: Mapping[str, Any], where) -> tuple[tuple[str, ...], dict[str, dict[str, Any]]]:
    from . import default_methods

    entries = values.get("run")
    if entries is None:
        entries = list(default_methods())
    if isinstance(entries, str):
        raise ConfigError(f"{where('methods', 'run')}: must be a list of method names, e.g. run = [{entries!r}], "
                          f"got the string {entries!r}")
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) and e for e in entries):
        raise ConfigError(f"{where('methods', 'run')}: must be a non-empty list of method names")
    _no_duplicates(entries, where("methods", "run"))
    hparams = {}
    for name, table in values.items():
        if name == "run":
            continue
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where('methods', name)}: hyperparameters of a method go in a table [methods.{name!r}]"
                              if "+" in name else f"{where('methods', name)}: must be a table [methods.{name}]")
        hparams[name] = dict(table)
    return tuple(entries), hparams


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_duplicates(values: list[Any], where: str) -> None:
    seen = [v for i, v in enumerate(values) if v in values[:i]]
    if seen:
        raise ConfigError(f"{where}: {seen[0]!r} is listed twice")


def check_spec(spec: ExperimentSpec, where=None) -> None:
    """Check names and values against the registries, before any work.

    Raises:
        ConfigError: unknown method, RUM variant, executor or score source; a hyperparameter the
            method does not take or a value outside its range (each value of a swept list is
            checked); non-positive sizes; a cost cap <= 0.
    """
    from ..rum import check_pipeline, check_score_source, methods_in_entry, needs_scores, parse_entry

    where = where or _Where(None, None)
    _check_numbers(spec, where)
    for entry in spec.methods:
        pipeline = parse_entry(entry)
        if entry.startswith("stop:"):
            _check_stop_entry(spec, entry, where)
        elif pipeline is None:
            from ..methods import get_method

            get_method(entry)
        else:
            check_pipeline(*pipeline)
    if needs_scores(spec.methods):
        check_score_source(spec.rum_score)
    run_methods = {m for entry in spec.methods for m in methods_in_entry(entry)}
    for method, values in spec.hparams.items():
        pipeline = parse_entry(method) if ":" in method else None
        if pipeline is not None:  # a pipeline's own table: its recipe and per-step settings (stop:METHOD is not one)
            from ..rum import step_settings

            if method not in spec.methods:
                raise ConfigError(f"{where('methods', method)}: settings given for the pipeline {method!r}, which is not "
                                  f"among the methods run ({', '.join(spec.methods)})")
            for key, value in values.items():  # one key at a time, so the error names its line
                try:
                    step_settings(*pipeline, {key: value})
                except ConfigError as exc:
                    raise ConfigError(f"{where(f'methods.{method}', key)}: {exc}") from None
            continue
        if method not in run_methods:
            raise ConfigError(f"{where('methods', method)}: hyperparameters given for {method!r}, which is not among "
                              f"the methods run ({', '.join(spec.methods)})")
        for key, value in values.items():
            if isinstance(value, list) and not value:
                raise ConfigError(f"{where(f'methods.{method}', key)}: an empty list sweeps nothing")
            try:
                for one in (value if isinstance(value, list) else [value]):
                    _check_method_hparams(method, {key: one})
            except ConfigError as exc:
                raise ConfigError(f"{where(f'methods.{method}', key)}: {exc}") from None
    for name, value in (("train_subset", spec.data.train_subset), ("validation", spec.data.validation)):
        if value is not None and value < 1:
            raise ConfigError(f"{where('data', name)}: must be at least 1, got {value}")
    for name, value in (("width", spec.model.width), ("epochs", spec.model.epochs), ("batch_size", spec.model.batch_size)):
        if value is not None and value < 1:
            raise ConfigError(f"{where('model', name)}: must be at least 1, got {value}")
    if spec.model.lr is not None and spec.model.lr <= 0:
        raise ConfigError(f"{where('model', 'lr')}: must be > 0, got {spec.model.lr}")
    if spec.model.weight_decay is not None and spec.model.weight_decay < 0:
        raise ConfigError(f"{where('model', 'weight_decay')}: must be >= 0, got {spec.model.weight_decay}")
    if spec.model.final_lr_fraction is not None and not 0 <= spec.model.final_lr_fraction <= 1:
        raise ConfigError(f"{where('model', 'final_lr_fraction')}: must be in [0, 1], got {spec.model.final_lr_fraction}")
    from .metrics import METRICS

    for name in spec.evaluation.metrics:
        if name not in METRICS:
            METRICS.get(name)  # the unknown-name error, listing the known metrics
    for name, low in (("pool_size", 2), ("neurips2023_models", 2), ("rmia_references", 1), ("rmia_u_references", 1)):
        if getattr(spec.evaluation, name) < low:
            raise ConfigError(f"{where('evaluation', name)}: must be at least {low}, got {getattr(spec.evaluation, name)}")
    if spec.evaluation.audit_holdout < 0:
        raise ConfigError(f"{where('evaluation', 'audit_holdout')}: must be at least 0, got {spec.evaluation.audit_holdout}")
    if not 0 < spec.evaluation.pool_fraction < 1:
        raise ConfigError(f"{where('evaluation', 'pool_fraction')}: must be in (0, 1), got {spec.evaluation.pool_fraction}")
    _no_duplicates(list(spec.evaluation.metrics), where("evaluation", "metrics"))
    if spec.executor.workers < 1:
        raise ConfigError(f"{where('executor', 'workers')}: must be at least 1, got {spec.executor.workers}")
    from ..memorization.executors import check_executor

    check_executor(spec.executor.name)
    if spec.requests.count is not None:
        if spec.requests.count < 1:
            raise ConfigError(f"{where('requests', 'count')}: must be at least 1, got {spec.requests.count}")
        from .request_rules import check_request_rules

        check_request_rules(spec.forget, spec.requests.count, where("requests", "count"))
    if spec.tuning.cost_cap <= 0:
        raise ConfigError(f"{where('tuning', 'cost_cap')}: must be > 0 (a fraction of the oracle's retrain time), "
                          f"got {spec.tuning.cost_cap}")
    if spec.tuning.trials < 1:
        raise ConfigError(f"{where('tuning', 'trials')}: must be at least 1, got {spec.tuning.trials}")
    if spec.tuning.sampler not in ("tpe", "grid", "random"):
        raise ConfigError(f"{where('tuning', 'sampler')}: must be tpe, grid or random, got {spec.tuning.sampler!r}")
    if spec.hparams_file is not None:
        from .hparams import load_hparams

        load_hparams(spec.hparams_file)  # a missing or malformed file stops here, before any work
    if spec.device not in ("auto", "cpu", "cuda") and not spec.device.startswith("cuda:"):
        raise ConfigError(f"{where('run', 'device')}: must be auto, cpu or cuda, got {spec.device!r}")
    if spec.tuning.space:
        from ..tuning import search_space

        for method, overrides in spec.tuning.space.items():
            if not isinstance(overrides, Mapping):
                raise ConfigError(f"{where('tuning.space', method)}: must be a table of [low, high] ranges or value lists")
            if method not in spec.methods:
                raise ConfigError(f"{where('tuning.space', method)}: [tuning.space] names {method!r}, which is not "
                                  f"among the methods ({', '.join(spec.methods)})")
            search_space(method, overrides)


def _check_numbers(spec: ExperimentSpec, where) -> None:
    """Seeds in range, sizes below their maxima, finite fractions (see :mod:`memunlearn.limits`)."""
    from ..limits import check_at_most, check_finite, check_hparam_sizes, check_seed

    if not spec.seeds:
        raise ConfigError(f"{where('seeds')}: no seed")
    check_at_most(len(spec.seeds), "seeds", where("seeds", "count"))
    for seed in spec.seeds:
        check_seed(seed, where("seeds"))
    check_seed(spec.tuning.seed, where("tuning", "seed"))
    check_seed(spec.evaluation.pool_seed, where("evaluation", "pool_seed"))
    for name, kind, value in (("width", "width", spec.model.width), ("epochs", "epochs", spec.model.epochs)):
        check_at_most(value, kind, where("model", name))
    if spec.model.name is not None and not spec.model.name.strip():
        raise ConfigError(f"{where('model', 'name')}: must not be empty")
    if not spec.data.dataset.strip():
        raise ConfigError(f"{where('data', 'dataset')}: must not be empty")
    if spec.data.data_dir is not None and not Path(spec.data.data_dir).expanduser().exists():
        raise ConfigError(f"{where('data', 'data_dir')}: {spec.data.data_dir} does not exist")
    for name in ("train_subset", "validation"):
        check_at_most(getattr(spec.data, name), "examples", where("data", name))
    check_at_most(spec.executor.workers, "workers", where("executor", "workers"))
    check_at_most(spec.evaluation.pool_size, "pool_size", where("evaluation", "pool_size"))
    check_at_most(spec.evaluation.neurips2023_models, "pool_size", where("evaluation", "neurips2023_models"))
    check_at_most(spec.tuning.trials, "trials", where("tuning", "trials"))
    check_at_most(spec.tuning.validation, "examples", where("tuning", "validation"))
    check_at_most(spec.requests.count, "requests", where("requests", "count"))
    check_finite(spec.tuning.cost_cap, where("tuning", "cost_cap"))
    check_finite(spec.evaluation.pool_fraction, where("evaluation", "pool_fraction"))
    _no_duplicates(list(spec.forget), where("forget", "rules"))
    for method, values in spec.hparams.items():
        check_hparam_sizes(method, values)


def _check_stop_entry(spec: ExperimentSpec, entry: str, where: _Where) -> None:
    """``stop:METHOD`` needs held-out data distinct from the scoring split, and runs one forget set."""
    from ..methods.stop_when_done import stop_base

    try:
        stop_base(entry)
    except ConfigError as exc:
        raise ConfigError(f"{where('methods', 'run')}: {exc}") from None
    if spec.evaluation.audit_holdout < 1:
        raise ConfigError(f"{where('methods', 'run')}: {entry!r} stops on held-out data: set [evaluation] audit_holdout "
                          "= N (N training examples held out of every model, never the test set it is scored on)")
    if spec.requests.count is not None and spec.requests.count > 1:
        raise ConfigError(f"{where('methods', 'run')}: {entry!r} is not supported with [requests] yet")


def _check_method_hparams(method: str, values: dict[str, Any]) -> dict[str, Any]:
    if method.startswith("stop:"):
        from ..methods.stop_when_done import check_stop_hparams

        return check_stop_hparams(method, values)
    from ..methods import check_hparams

    return check_hparams(method, values)


def write_spec(spec: ExperimentSpec, path: str | Path) -> Path:
    """Write ``spec`` as a TOML file (atomically) that :func:`load_spec` reads back unchanged."""
    import tomli_w

    from ..io import atomic_path

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    with atomic_path(path) as tmp:
        tmp.write_text(tomli_w.dumps(clean(spec.to_dict())))
    return Path(path)
