"""The main job: original model → forget set → oracle → every method → evaluation → results.

:func:`run_experiment` is what ``memunlearn run`` calls; a notebook can call it directly.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import __version__
from .checkpoints import artefact_key, cache_root, cached
from .data import Dataset, load_dataset, subsample
from .errors import ConfigError, DivergedError
from .evaluation import METRICS_FROM_ORACLE, compare_to_oracle, evaluate, mean_interval
from .forget import ForgetContext, ForgetSet, make_forget_set
from .io import write_json
from .methods import available_methods, get_method, method_defaults, unlearn
from .models import build_model
from .training import TrainConfig, TrainingDynamics, accuracy, get_device, recipe_for, train, with_epochs

# Every built-in method, in the order the registry lists them (the registry is the one list).
DEFAULT_METHODS = tuple(available_methods())
METRIC_NAMES = ("acc_forget", "acc_retain", "acc_test", "mia_efficacy", "loss_mia_auc")


@dataclass
class RunConfig:
    """Everything that determines a run; recorded verbatim in results.json."""

    dataset: str = "digits"
    data_dir: str | None = None
    model: str | None = None
    width: int | None = None
    forget: str = "iid:0.1"
    methods: tuple[str, ...] = DEFAULT_METHODS
    seed: int = 0
    seeds: int = 1
    epochs: int | None = None
    train_subset: int | None = None
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    fast: bool = False
    cache_dir: str | None = None
    # RUM entries (rum:..., rum-f:...) cut a forget set without stored partitions into tertiles of this score
    rum_score: str = "confidence"

    def seed_list(self) -> list[int]:
        return [self.seed + i for i in range(self.seeds)]

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["methods"] = list(self.methods)
        return payload

    def validate(self) -> None:
        """Check every setting before any work (numbers, names, duplicates, hyperparameter values).

        Raises:
            ConfigError: naming the setting and the value.
        """
        for name, value, low in (("seed", self.seed, 0), ("seeds", self.seeds, 1), ("width", self.width, 1),
                                 ("epochs", self.epochs, 1), ("train_subset", self.train_subset, 1)):
            if value is None and name in ("width", "epochs", "train_subset"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        duplicates = sorted({m for m in self.methods if list(self.methods).count(m) > 1})
        if duplicates:
            raise ConfigError(f"--methods lists {', '.join(map(repr, duplicates))} more than once")
        from .methods import check_hparams
        from .rum import check_pipeline, check_score_source, methods_in_entry, needs_scores, parse_entry

        for method in self.methods:
            pipeline = parse_entry(method)  # RUM entries: VARIANT:METHOD[:METHOD...]
            if pipeline is None:
                get_method(method)
            else:
                check_pipeline(*pipeline)
        if needs_scores(self.methods):
            check_score_source(self.rum_score)
        methods_run = {m for entry in self.methods for m in methods_in_entry(entry)}
        for method, values in self.hparams.items():
            if method not in methods_run:
                raise ConfigError(f"hyperparameters given for {method!r}, which is not among the methods run")
            check_hparams(method, values)  # unknown names, wrong types, out-of-range values


@dataclass
class Setting:
    """The resolved data, model and recipe of a run."""

    dataset: Dataset
    model_name: str
    width: int
    train_config: TrainConfig
    cache: Path
    device: torch.device

    def build(self, seed: int | None = None) -> nn.Module:
        return build_model(
            self.model_name, self.dataset.input_shape[0], self.dataset.num_classes,
            width=self.width, image_size=self.dataset.input_shape[-1], seed=seed,
        )

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_name, "width": self.width, "train": self.train_config.to_dict()}


def resolve_setting(config: RunConfig) -> Setting:
    dataset = load_dataset(config.dataset, config.data_dir)
    if config.train_subset:
        dataset = subsample(dataset, n_train=config.train_subset, seed=0)
    recipe = recipe_for(config.dataset)
    train_config = with_epochs(replace(recipe.train, fast=config.fast), config.epochs)
    return Setting(
        dataset, config.model or recipe.model, config.width or recipe.width, train_config,
        cache_root(config.cache_dir) / "checkpoints", get_device(config.device),
    )


def train_cached(
    setting: Setting, examples, dataset_tag: str, seed: int, role: str, extra_key: dict | None = None
) -> tuple[nn.Module, TrainingDynamics | None, float, bool]:
    """Train (or reuse) a model on ``examples``; returns (model, dynamics, wall time, reused?)."""
    train_config = replace(setting.train_config, seed=seed)
    key = artefact_key(
        role=role, data=dataset_tag, model=setting.model_name, width=setting.width,
        train=train_config.to_dict(), **(extra_key or {}),
    )

    def produce():
        result = train(setting.build(seed), examples, train_config, setting.device, progress=sys.stderr.isatty(),
                       description=f"{role} (seed {seed})")
        extra = result.dynamics.as_tensors() if result.dynamics is not None else {}
        return result.model, extra, {"wall_time": result.wall_time, "steps": result.steps, "key": key}

    model, extra, metadata, reused = cached(setting.cache / f"{role}-{key}.safetensors", produce, setting.build)
    return model, TrainingDynamics.from_tensors(extra), float(metadata.get("wall_time", float("nan"))), reused


def run_seed(config: RunConfig, setting: Setting, seed: int, log: Callable[[str], None]) -> tuple[dict, ForgetSet]:
    dataset = setting.dataset
    trained: dict[str, Any] = {}

    def original_for(data: Dataset):
        if "model" not in trained:
            model, dynamics, wall, reused = train_cached(setting, data.train, data.fingerprint, seed, "original")
            log(f"seed {seed}: original model {'reused' if reused else f'trained in {wall:.1f}s'}")
            trained.update(model=model, dynamics=dynamics, wall=wall)
        return trained["model"], trained["dynamics"]

    # Rules that rank examples with the original model (memorization, ...) train it through the
    # context; rules that change labels (mislabeled) never call it, so it trains on their labels.
    context = ForgetContext(lambda: original_for(dataset), str(setting.device), config.cache_dir)
    forget_set = make_forget_set(config.forget, dataset, seed, context)
    if forget_set.train_labels is not None:
        dataset = dataset.with_train_labels(forget_set.train_labels, forget_set.rule + f":{seed}")
    original, _ = original_for(dataset)
    original_time = trained["wall"]
    retain_idx = forget_set.retain_indices(len(dataset.train))
    forget, retain, test = dataset.train.subset(forget_set.indices), dataset.train.subset(retain_idx), dataset.test

    oracle, _, oracle_time, reused = train_cached(
        setting, retain, dataset.fingerprint, seed, "oracle",
        extra_key={"forget": artefact_key(indices=forget_set.indices.tolist())},
    )
    log(f"seed {seed}: oracle {'reused' if reused else f'retrained in {oracle_time:.1f}s'}")

    row: dict[str, Any] = {"seed": seed, "forget_size": len(forget_set), "retain_size": len(retain_idx)}
    oracle_metrics = evaluate(oracle, forget, retain, test, setting.device, seed)
    original_metrics = evaluate(original, forget, retain, test, setting.device, seed)
    row["oracle"] = {"metrics": oracle_metrics, "wall_time": oracle_time}
    row["original"] = {
        "metrics": original_metrics, "vs_oracle": compare_to_oracle(original_metrics, oracle_metrics),
        "wall_time": original_time, "train_accuracy": accuracy(original, dataset.train, setting.device),
    }
    row["methods"] = {}
    from .rum import RunPartitions, methods_in_entry, parse_entry, run_entry

    def scores_for(source: str) -> np.ndarray:
        from .memorization import memorization_scores

        log(f"seed {seed}: RUM partitions from tertiles of {source} scores")
        return memorization_scores(source, dataset, original, trained["dynamics"], device=str(setting.device),
                                   cache_dir=config.cache_dir, seed=seed)

    # RUM entries share one refinement of the forget set per seed (computed only if an entry needs it)
    rum_partitions = RunPartitions(forget_set, config.rum_score, scores_for)
    for method in config.methods:
        hparams = {**config.hparams.get(method, {}), "seed": seed, "device": str(setting.device)}
        step_hparams = {m: dict(config.hparams.get(m, {})) for m in methods_in_entry(method)}
        if method == "retrain" or "retrain" in step_hparams:  # retrain = the oracle's recipe unless set
            recipe = setting.train_config
            for key in ("epochs", "lr", "batch_size", "momentum", "weight_decay", "final_lr_fraction"):
                hparams.setdefault(key, getattr(recipe, key))
                step_hparams.get("retrain", {}).setdefault(key, getattr(recipe, key))
        try:
            if parse_entry(method) is not None:
                result = run_entry(method, original, dataset.train, rum_partitions, hparams=step_hparams,
                                   seed=seed, device=str(setting.device))
            else:
                result = unlearn(method, original, forget, retain, **hparams)
        except DivergedError as exc:
            log(f"seed {seed}: {method} diverged ({exc})")
            row["methods"][method] = {"status": "diverged", "error": str(exc), "hparams": hparams}
            continue
        metrics = evaluate(result.model, forget, retain, test, setting.device, seed)
        row["methods"][method] = {
            "status": "ok", "metrics": metrics, "vs_oracle": compare_to_oracle(metrics, oracle_metrics),
            "cost": result.cost.to_dict(), "time_fraction": result.cost.wall_time / oracle_time,
            "hparams": {**(method_defaults(method) if parse_entry(method) is None else {}), **result.hparams,
                        "seed": seed},
        }
        if parse_entry(method) is not None:
            row["methods"][method]["steps"] = result.step_records
        log(f"seed {seed}: {method} done in {result.cost.wall_time:.1f}s")
    if rum_partitions.description is not None:
        row["rum"] = rum_partitions.description  # partition sizes and the score they came from
    return row, forget_set


def summarise(rows: list[dict], methods: tuple[str, ...]) -> dict[str, Any]:
    """Mean and 95% t-interval of every metric over seeds, per method (diverged seeds excluded)."""
    def collect(entries: list[dict]) -> dict[str, Any]:
        names = {f"metrics.{m}": ("metrics", m) for m in METRIC_NAMES}
        names.update({m: ("vs_oracle", m) for m in METRICS_FROM_ORACLE})
        summary = {
            label: mean_interval(e[group][m] for e in entries if group in e)
            for label, (group, m) in names.items()
        }
        summary["time_fraction"] = mean_interval(e["time_fraction"] for e in entries if "time_fraction" in e)
        return summary

    result = {
        "oracle": {m: mean_interval(r["oracle"]["metrics"][m] for r in rows) for m in METRIC_NAMES},
        "original": collect([r["original"] for r in rows]),
        "methods": {},
    }
    for method in methods:
        entries = [r["methods"][method] for r in rows if r["methods"][method]["status"] == "ok"]
        result["methods"][method] = {**collect(entries), "seeds_ok": len(entries), "seeds": len(rows)}
    return result


def versions() -> dict[str, str]:
    import scipy
    import sklearn

    return {
        "memunlearn": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
        "platform": platform.platform(), "cuda": str(torch.version.cuda),
    }


def run_experiment(config: RunConfig, out_dir: str | Path | None = None, log: Callable[[str], None] = lambda s: None) -> dict:
    """Run the whole experiment and (if ``out_dir``) write results.json and the forget indices.

    Args:
        config: what to run (dataset, model, forget rule, methods, seeds, ...).
        out_dir: where to write ``results.json`` and ``forget_indices_seed{S}.txt``; written only
            when every seed has finished, atomically, so a failed run leaves earlier results intact.
        log: called with one line per stage.

    Returns:
        The results dictionary (also what results.json holds).

    Raises:
        MemunlearnError: bad configuration or data (CLI exit code 2).

    Example:
        >>> results = run_experiment(RunConfig(methods=("finetune",)), "runs/demo")  # doctest: +SKIP
    """
    from .io import check_output_dir

    # Every output and cache location is checked before any work, not after it.
    if out_dir is not None:
        check_output_dir(out_dir, "--out")
    check_output_dir(cache_root(config.cache_dir), "cache directory")
    config.validate()
    setting = resolve_setting(config)
    start = time.perf_counter()
    torch.use_deterministic_algorithms(False)
    rows, forget_sets = [], []
    for seed in config.seed_list():
        row, forget_set = run_seed(config, setting, seed, log)
        rows.append(row)
        forget_sets.append(forget_set)
    results = {
        "memunlearn_version": __version__,
        "config": config.to_dict(),
        "setting": setting.describe(),
        "versions": versions(),
        "device": str(setting.device),
        "seeds": config.seed_list(),
        "dataset": {
            "name": setting.dataset.name, "n_train": len(setting.dataset.train), "n_test": len(setting.dataset.test),
            "classes": setting.dataset.classes, "fingerprint": setting.dataset.fingerprint,
        },
        "forget_set": {
            "rule": config.forget,
            "per_seed": {str(f.seed): {**f.to_dict(), "indices_file": f"forget_indices_seed{f.seed}.txt"} for f in forget_sets},
        },
        "per_seed": rows,
        "summary": summarise(rows, config.methods),
        "wall_time": time.perf_counter() - start,
    }
    if out_dir is not None:
        out_dir = Path(out_dir)
        for forget_set in forget_sets:
            forget_set.save(out_dir, stem=f"forget_indices_seed{forget_set.seed}")
        write_json(out_dir / "results.json", results)
    return results


from . import memorization as _memorization  # noqa: E402,F401  registers forget kinds
