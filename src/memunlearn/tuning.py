"""Hyperparameter search in the library (SPEC §3): ``memunlearn.tune`` and ``memunlearn tune``.

For each forget rule and each method, Optuna searches the method's declared space (see
:mod:`memunlearn.params`) on a *tuning seed* and a *validation split held out of the training
data*: never the test set, never an evaluation seed. The objective is ToW × ToW-MIA against the
tuning seed's oracle; a trial whose cost exceeds the cap (a fraction of the oracle's retrain, in
examples processed, which no machine load changes) scores 0. Every trial is recorded. Trials are
experiment cells, so they are cached: a tuning run that is interrupted, or repeated, reuses them.

The result is an hparams file (TOML) that ``memunlearn run --hparams FILE`` and specs load; the
package ships tuned files for digits and Fashion-MNIST's default recipe.

Example:
    >>> from memunlearn.experiment import spec_from_dict
    >>> spec = spec_from_dict({"methods": {"run": ["finetune"]}, "tuning": {"trials": 4}})
    >>> result = tune(spec, "hparams.toml")  # doctest: +SKIP
    >>> result.best["iid:0.1"]["finetune"]  # doctest: +SKIP
    {'epochs': 3, 'lr': 0.04}
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from . import __version__
from .errors import ConfigError
from .experiment.hparams import OFFICIAL, HparamsTable, apply_tuned, load_hparams, shipped_hparams  # noqa: F401  (their home)
from .params import Param


# ------------------------------------------------------------------------------------------------
# Search spaces


def search_space(method: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Param]:
    """The parameters of ``method`` that a search explores (those declared with a ``search`` range).

    ``overrides`` (from a spec's ``[tuning.space.METHOD]``) replace a range with ``[low, high]``, a
    list of values for a bool/choice parameter, or ``false`` to keep the default.

    Raises:
        ConfigError: an unknown method or parameter, or an empty or inverted range.

    Example:
        >>> sorted(search_space("finetune"))
        ['epochs', 'lr']
    """
    from .methods import method_params

    params = method_params(method)
    space = {name: p for name, p in params.items() if p.search is not None}
    for name, value in (overrides or {}).items():
        if name not in params:
            raise ConfigError(f"search space of {method!r}: it has no hyperparameter {name!r}; it takes {sorted(params)}")
        if value is False:
            space.pop(name, None)
            continue
        if not isinstance(value, list) or not value:
            raise ConfigError(f"search space of {method}.{name}: give [low, high] or a list of values, got {value!r}")
        param = params[name]
        if param.kind in ("int", "float"):
            if len(value) != 2:
                raise ConfigError(f"search space of {method}.{name}: give [low, high], got {value!r}")
            low, high = (param.check(method, name, v) for v in value)
            if not low < high:
                raise ConfigError(f"search space of {method}.{name}: the range [{low}, {high}] is empty")
            space[name] = param.with_search((low, high))
        else:
            space[name] = param.with_search(tuple(param.check(method, name, v) for v in value))
    return space


def _suggest(trial, method: str, name: str, param: Param) -> Any:
    label = f"{method}.{name}"
    if param.kind == "int":
        return trial.suggest_int(label, int(param.searched[0]), int(param.searched[1]), log=param.log)
    if param.kind == "float":
        return trial.suggest_float(label, float(param.searched[0]), float(param.searched[1]), log=param.log)
    return trial.suggest_categorical(label, list(param.searched))


def grid_values(param: Param, points: int = 3) -> list[Any]:
    """A small grid over a declared range: ``points`` values, geometric on a log scale.

    Example:
        >>> from memunlearn.params import Float, Int
        >>> grid_values(Float(search=(0.001, 0.1), log=True))
        [0.001, 0.01, 0.1]
        >>> grid_values(Int(search=(1, 10)))
        [1, 6, 10]
    """
    if param.kind in ("bool", "choice"):
        return list(param.searched)
    low, high = param.searched
    values = np.geomspace(low, high, points) if param.log else np.linspace(low, high, points)
    if param.kind == "int":
        return sorted({int(round(v)) for v in values})
    return [float(f"{v:.6g}") for v in values]


# ------------------------------------------------------------------------------------------------
# Tuning


@dataclass
class TuningResult:
    """Per forget rule and method: the best hyperparameters, and every trial."""

    best: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    cost: dict[str, dict[str, Any]] = field(default_factory=dict)
    setting: dict[str, Any] = field(default_factory=dict)


def tune(
    spec,
    out: str | Path | None = None,
    log: Callable[[str], None] = lambda line: None,
    command: str | None = None,
) -> TuningResult:
    """Search each method's hyperparameters for each forget rule of ``spec``.

    Args:
        spec: an :class:`~memunlearn.experiment.ExperimentSpec`: its data, model, forget rules and
            methods, and its ``tuning`` section (cost cap, trials, sampler, tuning seed, validation
            size, space overrides). Its seeds are NOT used: tuning runs on ``tuning.seed``.
        out: where to write the hparams TOML (and ``<out>.trials.json`` with every trial).
        log: called with one line per trial.
        command: the command line, recorded in the output.

    Returns:
        :class:`TuningResult`.

    Raises:
        ConfigError: an unknown method or parameter in the space, an empty range, a cost cap <= 0,
            or a RUM pipeline among the methods (tune its steps' methods instead).
    """
    import optuna

    from .experiment import check_spec, prepare_split, resolve_setting
    from .experiment.cells import Cell, CellStore, cell_key
    from .experiment.run import compute_or_reuse
    from .io import cache_root, check_output_file
    from .rum import parse_entry

    if out is not None:
        check_output_file(out, "hparams file")
    check_spec(spec)
    pipelines = [m for m in spec.methods if parse_entry(m) is not None]
    if pipelines:
        raise ConfigError(f"tune searches plain methods; {pipelines[0]!r} is a RUM pipeline: tune its methods instead")
    # Hyperparameters the spec sets are held fixed in every trial and not searched; a list (a sweep)
    # is tuned once per value, each under its own label (e.g. del[strategy=param-grad]).
    targets = spec.method_cells()
    spaces = {c.label: {k: p for k, p in search_space(c.entry, spec.tuning.space.get(c.entry)).items()
                        if k not in c.hparams} for c in targets}
    stray = sorted(set(spec.tuning.space) - set(spec.methods))
    if stray:
        raise ConfigError(f"[tuning.space] names {stray[0]!r}, which is not among the methods tuned")
    validation = spec.data.validation or spec.tuning.validation
    tuning_spec = replace(spec, data=replace(spec.data, validation=validation), seeds=(spec.tuning.seed,),
                          evaluation=replace(spec.evaluation, noise_floor=False))
    setting = resolve_setting(tuning_spec)
    from .experiment.setup import check_before_work

    check_before_work(tuning_spec, setting)
    spaces = {label: _within_cost_cap(space, setting.train_config.epochs, spec.tuning.cost_cap)
              for label, space in spaces.items()}
    store = CellStore(cache_root(spec.cache_dir) / "cells")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    result = TuningResult(setting={
        "dataset": spec.data.dataset, "train_subset": spec.data.train_subset, "model": setting.model_name,
        "width": setting.width, "train": setting.train_config.to_dict(), "validation": validation,
        "tuning_seed": spec.tuning.seed, "cost_cap": spec.tuning.cost_cap, "sampler": spec.tuning.sampler,
        "trials": spec.tuning.trials, "objective": "tow * tow_mia on the validation split",
        "cost_unit": "examples processed / the oracle's (load-independent)",
    })
    for rule in spec.forget:
        split = prepare_split(tuning_spec, setting, spec.tuning.seed, rule, log)
        result.best[rule] = {}
        for target in targets:
            method, label, fixed = target.entry, target.label, dict(target.hparams)
            start = time.perf_counter()
            space = spaces[label]
            records: list[dict[str, Any]] = []

            # called only within this iteration; the defaults bind its values (ruff B023)
            def objective(trial, fixed=fixed, method=method, space=space, rule=rule, split=split, label=label,
                          records=records) -> float:
                hparams = {**fixed, **{name: _suggest(trial, method, name, param) for name, param in space.items()}}
                cell = Cell(spec.tuning.seed, rule, method, method, hparams,
                            cell_key(setting, split, method, hparams, tuning_spec))
                entry, reused = compute_or_reuse(cell, split, setting, tuning_spec, store)
                record = {"forget": rule, "method": label, "trial": trial.number, "hparams": hparams,
                          "status": entry["status"], "reused": reused}
                score = 0.0
                if entry["status"] == "ok":
                    vs = entry["vs_oracle"]
                    within = entry["examples_fraction"] <= spec.tuning.cost_cap
                    score = vs["tow"] * vs["tow_mia"] if within else 0.0
                    record.update(tow=vs["tow"], tow_mia=vs["tow_mia"], examples_fraction=entry["examples_fraction"],
                                  time_fraction=entry["time_fraction"], within_cost_cap=within)
                record["objective"] = score
                records.append(record)
                log(f"tune {rule} {label} trial {trial.number + 1}/{spec.tuning.trials}: "
                    f"{_show(hparams)} → {score:.4f}{'' if record.get('within_cost_cap', True) else ' (over the cost cap)'}"
                    f"{' (reused)' if reused else ''}")
                return score

            sampler, n_trials = _sampler(spec.tuning.sampler, space, method, spec.tuning.seed, spec.tuning.trials)
            study = optuna.create_study(direction="maximize", sampler=sampler)
            if space:
                study.optimize(objective, n_trials=n_trials)
                best = records[study.best_trial.number]
            else:  # nothing to search (every parameter fixed): score the defaults once
                objective(optuna.trial.FixedTrial({}))
                best = records[0]
            result.trials.extend(records)
            result.best[rule][label] = dict(best["hparams"]) if best["objective"] > 0 else fixed
            result.cost.setdefault(rule, {})[label] = {
                "wall_time": time.perf_counter() - start, "trials": len(records),
                "reused": sum(r["reused"] for r in records), "best_objective": best["objective"],
            }
            log(f"tune {rule} {label}: best {_show(result.best[rule][label]) or 'the defaults'} "
                f"(ToW×ToW-MIA {best['objective']:.4f})")
    if out is not None:
        write_hparams(result, out, command)
    return result


def _within_cost_cap(space: dict[str, Param], oracle_epochs: float, cost_cap: float) -> dict[str, Param]:
    """Narrow an ``epochs`` range to what the cost cap can afford: an epoch costs at least one pass
    over the retain set, the oracle's retrain ``oracle_epochs`` of them, so more than
    cost_cap·oracle_epochs epochs is always over the cap and not worth a trial."""
    param = space.get("epochs")
    if param is None or param.kind != "int":
        return space
    affordable = max(int(param.searched[0]), int(cost_cap * oracle_epochs))
    if affordable >= param.searched[1]:
        return space
    return {**space, "epochs": param.with_search((int(param.searched[0]), affordable))}


def _sampler(name: str, space: Mapping[str, Param], method: str, seed: int, trials: int):
    import optuna

    if name == "grid":
        grid = {f"{method}.{k}": grid_values(p) for k, p in space.items()}
        size = math.prod(len(v) for v in grid.values()) if grid else 1
        return optuna.samplers.GridSampler(grid, seed=seed), min(trials, size)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed), trials
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, trials)), trials


def _show(hparams: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in hparams.items())


# ------------------------------------------------------------------------------------------------
# Hparams files: what tuning writes and `run` reads


def write_hparams(result: TuningResult, path: str | Path, command: str | None = None) -> Path:
    """Write the best hyperparameters as TOML and every trial beside it (``.trials.json``)."""
    import tomli_w

    from .io import atomic_path, write_json

    setting = result.setting
    payload = {
        "about": {
            "memunlearn": __version__, "command": command or "", "objective": setting["objective"],
            "cost_cap": setting["cost_cap"], "cost_unit": setting["cost_unit"], "tuning_seed": setting["tuning_seed"],
            "validation": setting["validation"], "train_subset": setting["train_subset"] or 0,
            "trials": setting["trials"], "sampler": setting["sampler"],
        },
        # Each method's recipe is written out: a file without one predates recipes (load_hparams).
        "setting": [
            {"dataset": setting["dataset"], "model": setting["model"], "width": setting["width"], "forget": rule,
             "methods": {m: {"recipe": OFFICIAL, **v} for m, v in methods.items() if v}}
            for rule, methods in result.best.items()
        ],
    }
    with atomic_path(path) as tmp:
        tmp.write_text(tomli_w.dumps(payload))
    write_json(Path(str(path) + ".trials.json"), {"setting": setting, "cost": result.cost, "trials": result.trials})
    return Path(path)


# ------------------------------------------------------------------------------------------------
# One method on the user's own model and data


@dataclass
class MethodTuning:
    """What :func:`tune_method` found: the best hyperparameters ({} = the defaults) and every trial."""

    method: str
    best: dict[str, Any]
    best_objective: float
    trials: list[dict[str, Any]]
    oracle_metrics: dict[str, float]


def tune_method(
    method: str,
    original,
    forget,
    retain,
    validation,
    oracle,
    *,
    oracle_examples: int,
    cost_cap: float = 0.2,
    trials: int = 12,
    sampler: str = "tpe",
    space: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
    seed: int = 0,
    device: str = "auto",
    log: Callable[[str], None] = lambda line: None,
) -> MethodTuning:
    """Search one method's declared space on your own model and splits, with :func:`tune`'s objective.

    Each trial runs ``unlearn(method, original, forget, retain, **hparams)`` and scores
    ToW × ToW-MIA of the result against ``oracle`` on (forget, retain, validation); a trial that
    diverges, or processes more than ``cost_cap · oracle_examples`` examples, scores 0.

    Args:
        method: a registered method (not a RUM pipeline).
        original: the trained model to unlearn from.
        forget, retain: the split (Examples, or torch Datasets/DataLoaders: materialised once for
            all trials by :func:`~memunlearn.data.as_examples`, or streamed when large).
        validation: held-out examples the models never trained on, in the test set's role; not
            your test set, or the tuned values are fitted to it.
        oracle: the model retrained without the forget set (on ``retain``).
        oracle_examples: examples the oracle's training processed (epochs × len(retain) for plain
            training): the cost unit, independent of machine load.
        cost_cap: the largest cost a trial may have, as a fraction of ``oracle_examples``.
        trials: how many trials Optuna runs (``grid`` stops early when its grid is done).
        sampler: ``tpe``, ``random`` or ``grid``.
        space: overrides of the declared search ranges, as in a spec's ``[tuning.space.METHOD]``.
        fixed: hyperparameters held fixed in every trial and not searched (e.g. ``classifier_layer``).
        seed: the sampler's seed and the methods' and attacks' seed.
        device: where to compute.
        log: called with one line per trial.

    Returns:
        :class:`MethodTuning`.

    Raises:
        ConfigError: an unknown method or hyperparameter, a bad range, a non-positive
            ``oracle_examples`` or ``cost_cap``, an unknown sampler, or data that is not
            (input, label) pairs.

    Example:
        >>> found = tune_method("finetune", model, forget, retain, validation, oracle,
        ...                     oracle_examples=20 * len(retain))  # doctest: +SKIP
        >>> unlearn("finetune", model, forget, retain, **found.best)  # doctest: +SKIP
    """
    import optuna

    from .data.core import as_examples
    from .errors import DivergedError
    from .evaluation import compare_to_oracle, evaluate
    from .methods import check_hparams, unlearn

    if oracle_examples <= 0 or cost_cap <= 0:
        raise ConfigError(f"oracle_examples and cost_cap must be > 0, got {oracle_examples} and {cost_cap}")
    if sampler not in ("tpe", "random", "grid"):
        raise ConfigError(f"sampler must be tpe, random or grid, got {sampler!r}")
    given = dict(fixed or {})
    checked = check_hparams(method, given)  # a named recipe fills in under each trial, it fixes nothing else
    fixed = {k: checked[k] for k in given}
    forget, retain, validation = (as_examples(d, name=n) for d, n in
                                  ((forget, "forget"), (retain, "retain"), (validation, "validation")))
    searched = {k: p for k, p in search_space(method, space).items() if k not in fixed}
    searched = _within_cost_cap(searched, oracle_examples / len(retain), cost_cap)
    oracle_metrics = evaluate(oracle, forget, retain, validation, device, seed)
    records: list[dict[str, Any]] = []

    def objective(trial) -> float:
        hparams = {**fixed, **{k: _suggest(trial, method, k, p) for k, p in searched.items()}}
        record: dict[str, Any] = {"trial": len(records), "hparams": hparams, "status": "ok"}
        try:
            result = unlearn(method, original, forget, retain, seed=seed, device=device, **hparams)
            vs = compare_to_oracle(evaluate(result.model, forget, retain, validation, device, seed), oracle_metrics)
        except DivergedError as exc:
            record.update(status="diverged", error=str(exc), objective=0.0)
        else:
            fraction = result.cost.examples / oracle_examples
            within = fraction <= cost_cap
            record.update(tow=vs["tow"], tow_mia=vs["tow_mia"], examples_fraction=fraction, within_cost_cap=within,
                          objective=vs["tow"] * vs["tow_mia"] if within else 0.0)
        records.append(record)
        log(f"tune {method} trial {len(records)}: {_show(hparams)} → {record['objective']:.4f}"
            f"{'' if record.get('within_cost_cap', True) else ' (over the cost cap)'}")
        return record["objective"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    chosen, n_trials = _sampler(sampler, searched, method, seed, trials)
    if searched:
        optuna.create_study(direction="maximize", sampler=chosen).optimize(objective, n_trials=n_trials)
    else:
        objective(optuna.trial.FixedTrial({}))
    best = max(records, key=lambda r: r["objective"])
    return MethodTuning(method, dict(best["hparams"]) if best["objective"] > 0 else dict(fixed),
                        best["objective"], records, oracle_metrics)


__all__ = [
    "HparamsTable", "MethodTuning", "TuningResult", "apply_tuned", "grid_values", "load_hparams", "search_space",
    "shipped_hparams", "tune", "tune_method", "write_hparams",
]
