"""The shared artefacts of an experiment: data, original model, forget set, oracle, noise floor.

Each trained model is a cached artefact keyed by the hash of what produced it (data fingerprint,
model, width, training config, seed, training indices), so the CLI, the benchmarks and tuning
share originals and oracles, a repeated run reuses them, and a changed setting never picks up a
stale one.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch
from torch import nn

from ..checkpoints import artefact_key, cache_root, cached
from ..data import Dataset, load_dataset, subsample
from ..data.core import Examples
from ..evaluation import compare_to_oracle, evaluate
from ..forget import ForgetContext, ForgetSet, make_forget_set
from ..models import build_model
from ..training import TrainConfig, TrainingDynamics, accuracy, get_device, recipe_for, train, with_epochs
from .spec import ExperimentSpec

if TYPE_CHECKING:
    from . import RunConfig

# The independent retrain (the noise floor) uses the oracle's recipe with this seed offset.
NOISE_FLOOR_SEED_OFFSET = 1_000_003


@dataclass
class Setting:
    """The resolved data, model and recipe of an experiment."""

    dataset: Dataset
    model_name: str
    width: int
    train_config: TrainConfig
    cache: Path
    device: torch.device
    holdout: Examples | None = None  # [evaluation] audit_holdout: held out of every model's training

    def build(self, seed: int | None = None) -> nn.Module:
        return build_model(
            self.model_name, self.dataset.input_shape[0], self.dataset.num_classes,
            width=self.width, image_size=self.dataset.input_shape[-1], seed=seed,
        )

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_name, "width": self.width, "train": self.train_config.to_dict()}

    def key(self) -> str:
        """The hash of everything but the seed that determines a model trained in this setting."""
        return artefact_key(data=self.dataset.fingerprint, model=self.model_name, width=self.width,
                            train={k: v for k, v in self.train_config.to_dict().items() if k != "seed"},
                            **_init_version(self.model_name))


def hold_out_validation(dataset: Dataset, size: int, seed: int = 0) -> Dataset:
    """Move a stratified ``size`` examples of the training set into the evaluation split.

    The returned dataset trains on the rest and is scored on the held-out examples instead of the
    test set, as tuning must (the test set is never seen while choosing hyperparameters).
    """
    from ..data import _stratified_indices

    labels = dataset.train.y.numpy()
    held = np.sort(_stratified_indices(labels, size, np.random.default_rng(seed), "validation"))
    keep = np.setdiff1d(np.arange(len(labels)), held)
    tag = f"{dataset.fingerprint}:validation:{size}:{seed}"
    return Dataset(name=dataset.name, train=dataset.train.subset(keep), test=dataset.train.subset(held),
                   classes=list(dataset.classes), fingerprint=hashlib.sha256(tag.encode()).hexdigest()[:16])


def resolve_setting(spec: ExperimentSpec | RunConfig) -> Setting:
    """Load the data and fill in the dataset's recipe where the spec leaves it open.

    ``spec`` may also be a :class:`~memunlearn.experiment.RunConfig` (the command line's view).
    """
    if not isinstance(spec, ExperimentSpec):
        spec = spec.to_spec()
    dataset = load_dataset(spec.data.dataset, spec.data.data_dir, **spec.data.options)
    if spec.data.train_subset:
        dataset = subsample(dataset, n_train=spec.data.train_subset, seed=0)
    if spec.data.validation:
        dataset = hold_out_validation(dataset, spec.data.validation)
    holdout = None
    if spec.evaluation.audit_holdout:  # after the validation split: the audit's H is never the scoring split
        audit_split = hold_out_validation(dataset, spec.evaluation.audit_holdout, seed=1)
        holdout = audit_split.test
        dataset = Dataset(name=dataset.name, train=audit_split.train, test=dataset.test, classes=list(dataset.classes),
                          fingerprint=audit_split.fingerprint)
    recipe = recipe_for(spec.data.dataset)
    train_config = with_epochs(replace(recipe.train, fast=spec.model.fast, **spec.model.train_overrides()),
                               spec.model.epochs)
    return Setting(
        dataset, spec.model.name or recipe.model, spec.model.width or recipe.width, train_config,
        cache_root(spec.cache_dir) / "checkpoints", get_device(spec.device), holdout,
    )


def _init_version(model_name: str) -> dict[str, int]:
    """``{"init": N}`` for a model whose initialisation changed (its old cached models are not reused)."""
    from ..models import INIT_VERSIONS

    return {"init": INIT_VERSIONS[model_name]} if model_name in INIT_VERSIONS else {}


def check_before_work(spec: ExperimentSpec, setting: Setting) -> None:
    """Everything a run will need, checked before its first training step: the model can be built
    with this data, every forget rule (syntax, names, index and score files; all bad ones named
    together), and RUM's score file.

    Raises:
        MemunlearnError: naming the problem.
    """
    from ..forget import check_forget_rules
    from ..rum import needs_scores

    setting.build(0)  # an unknown model, or a width that does not fit the data
    check_forget_rules(spec.forget, setting.dataset, spec.seeds[0] if spec.seeds else 0)
    if needs_scores(spec.methods) and spec.rum_score.endswith(".npy"):
        from ..memorization import load_score_file

        load_score_file(spec.rum_score, len(setting.dataset.train))


def train_cached(
    setting: Setting, examples: Examples, dataset_tag: str, seed: int, role: str, extra_key: dict | None = None
) -> tuple[nn.Module, TrainingDynamics | None, float, bool]:
    """Train (or reuse) a model on ``examples``; returns (model, dynamics, wall time, reused?)."""
    train_config = replace(setting.train_config, seed=seed)
    key = artefact_key(
        role=role, data=dataset_tag, model=setting.model_name, width=setting.width,
        train=train_config.to_dict(), **_init_version(setting.model_name), **(extra_key or {}),
    )

    def produce():
        result = train(setting.build(seed), examples, train_config, setting.device, progress=True,
                       description=f"{role} (seed {seed})")
        extra = result.dynamics.as_tensors() if result.dynamics is not None else {}
        return result.model, extra, {"wall_time": result.wall_time, "steps": result.steps, "key": key}

    model, extra, metadata, reused = cached(setting.cache / f"{role}-{key}.safetensors", produce, setting.build)
    return model, TrainingDynamics.from_tensors(extra), float(metadata.get("wall_time", float("nan"))), reused


def evaluate_split(model: nn.Module, forget_set: ForgetSet, forget: Examples, retain: Examples, test: Examples,
                   device, seed: int, views: dict[str, Any] | None = None,
                   num_classes: int | None = None) -> dict[str, float]:
    """:func:`~memunlearn.evaluation.evaluate`, plus what the forget set's use case measures (the
    attack success rate of a backdoor forget set).

    ``views``, if given (with ``num_classes``), is filled from the same predictions with
    :func:`~memunlearn.experiment.views.model_views`: accuracy per class, the forget examples'
    true-label probabilities."""
    from ..backdoor import backdoor_metrics

    outputs: dict[str, Any] = {}
    metrics = {**evaluate(model, forget, retain, test, device, seed, outputs=outputs),
               **backdoor_metrics(model, forget_set, test, device)}
    if views is not None and num_classes:
        from .views import model_views

        views.update(model_views(outputs, num_classes))
    return metrics


@dataclass
class Split:
    """One (seed, forget rule) of an experiment: the forget set and the models every cell shares."""

    seed: int
    rule: str
    dataset: Dataset  # with the rule's label changes (mislabeled) applied
    forget_set: ForgetSet
    original: nn.Module
    dynamics: TrainingDynamics | None
    oracle: nn.Module
    oracle_metrics: dict[str, float]
    oracle_time: float
    oracle_examples: int  # examples the oracle's training processed: the load-independent cost unit
    row: dict[str, Any] = field(default_factory=dict)  # oracle, original and noise-floor entries
    rum_partitions: Any = None  # RUM's refinement of the forget set, made by the first pipeline cell that needs it
    oracle_views: dict[str, Any] = field(default_factory=dict)  # the oracle's per-class / per-example views

    def views_of(self, model: nn.Module, device) -> tuple[dict, dict]:
        """(metrics, views) of ``model`` on this split; views hold ``per_class`` and the ``exposed``
        forget examples (largest margin over the oracle's probability of the true label)."""
        from .views import exposed_examples

        views: dict[str, Any] = {}
        metrics = evaluate_split(model, self.forget_set, self.forget, self.retain, self.test, device, self.seed,
                                 views=views, num_classes=self.dataset.num_classes)
        out = {"per_class": views["per_class"]}
        if self.oracle_views and "forget_confidence" in views and len(self.forget_set):
            out["exposed"] = exposed_examples(views, self.oracle_views, self.forget_set.indices,
                                              self.forget.y.numpy(), self.forget_set.scores)
        return metrics, out

    @property
    def forget(self) -> Examples:
        return self.dataset.train.subset(self.forget_set.indices)

    @property
    def retain(self) -> Examples:
        return self.dataset.train.subset(self.forget_set.retain_indices(len(self.dataset.train)))

    @property
    def test(self) -> Examples:
        return self.dataset.test


def prepare_split(
    spec: ExperimentSpec, setting: Setting, seed: int, rule: str, log: Callable[[str], None]
) -> Split:
    """Forget set → original → oracle (→ independent retrain), each trained once and cached."""
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
    context = ForgetContext(lambda: original_for(dataset), str(setting.device), spec.cache_dir)
    forget_set = make_forget_set(rule, dataset, seed, context)
    dataset = forget_set.training_data(dataset)
    original, dynamics = original_for(dataset)
    retain_idx = forget_set.retain_indices(len(dataset.train))
    forget, retain, test = dataset.train.subset(forget_set.indices), dataset.train.subset(retain_idx), dataset.test
    forget_key = {"forget": artefact_key(indices=forget_set.indices.tolist())}

    oracle, _, oracle_time, reused = train_cached(setting, retain, dataset.fingerprint, seed, "oracle", forget_key)
    log(f"seed {seed}: oracle {'reused' if reused else f'retrained in {oracle_time:.1f}s'}")
    oracle_views: dict[str, Any] = {}
    oracle_metrics = evaluate_split(oracle, forget_set, forget, retain, test, setting.device, seed,
                                    views=oracle_views, num_classes=dataset.num_classes)
    split = Split(seed, rule, dataset, forget_set, original, dynamics, oracle, oracle_metrics, oracle_time,
                  setting.train_config.epochs * len(retain_idx), oracle_views=oracle_views)
    original_metrics, original_views = split.views_of(original, setting.device)
    row: dict[str, Any] = {
        "seed": seed, "forget_size": len(forget_set), "retain_size": len(retain_idx),
        "oracle": {"metrics": oracle_metrics, "wall_time": oracle_time, "per_class": oracle_views["per_class"]},
        "original": {
            "metrics": original_metrics, "vs_oracle": compare_to_oracle(original_metrics, oracle_metrics),
            "wall_time": trained["wall"], "train_accuracy": accuracy(original, dataset.train, setting.device),
            **original_views,
        },
    }
    if spec.evaluation.noise_floor:
        floor_seed = seed + NOISE_FLOOR_SEED_OFFSET
        independent, _, floor_time, reused = train_cached(setting, retain, dataset.fingerprint, floor_seed, "oracle",
                                                          forget_key)
        log(f"seed {seed}: independent retrain (noise floor) {'reused' if reused else f'trained in {floor_time:.1f}s'}")
        floor_metrics, floor_views = split.views_of(independent, setting.device)
        row["noise_floor"] = {
            "metrics": floor_metrics, "vs_oracle": compare_to_oracle(floor_metrics, oracle_metrics),
            "wall_time": floor_time, "time_fraction": floor_time / oracle_time, "examples_fraction": 1.0,
            "seed": floor_seed, **floor_views,
        }
    row["oracle"]["examples"] = split.oracle_examples
    split.row = row
    return split
