"""The experiment core: spec → splits (original, forget set, oracle) → cells → summary → results.

The CLI (``memunlearn run``), the benchmarks and tuning all run experiments through
:func:`run_experiment`, so they share every cached original, oracle and finished cell.

Example:
    >>> from memunlearn.experiment import spec_from_dict, run_experiment
    >>> spec = spec_from_dict({"data": {"train_subset": 300}, "methods": {"run": ["finetune"]}})
    >>> results = run_experiment(spec, "runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .run import run_experiment
from .setup import Setting, Split, prepare_split, resolve_setting, train_cached
from .spec import (
    DataSpec, EvaluationSpec, ExecutorSpec, ExperimentSpec, MethodCell, ModelSpec, RequestsSpec, TuningSpec,
    check_spec, load_spec, spec_from_dict, write_spec,
)
from .summary import METRIC_NAMES, summarise, versions


def default_methods() -> tuple[str, ...]:
    """Every registered method but ``retrain``, in registry order (what ``memunlearn run`` runs by
    default): the independent retrain every table compares with is the retrain, named once (the
    noise floor); ``retrain`` stays available by name."""
    from ..methods import available_methods

    return tuple(m for m in available_methods() if m != "retrain")


@dataclass
class RunConfig:
    """The command line's view of a single-forget-rule experiment; :meth:`to_spec` makes the spec.

    Kept for notebooks and scripts written against earlier versions; new code builds an
    :class:`ExperimentSpec` (or a TOML file) directly.
    """

    dataset: str = "digits"
    data_dir: str | None = None
    model: str | None = None
    width: int | None = None
    forget: str = "iid:0.1"
    methods: tuple[str, ...] = field(default_factory=default_methods)
    seed: int = 0
    seeds: int = 1
    epochs: int | None = None
    train_subset: int | None = None
    hparams: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    fast: bool = False
    cache_dir: str | None = None
    rum_score: str = "confidence"
    noise_floor: bool = True
    data_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Check every setting before any work (numbers, names, duplicates, hyperparameter values).

        Raises:
            ConfigError: naming the setting and the value.
        """
        self.to_spec()

    def to_spec(self) -> ExperimentSpec:
        """The spec this configuration describes (checked: see :func:`check_spec`)."""
        from ..errors import ConfigError

        for name, value, low in (("seed", self.seed, 0), ("seeds", self.seeds, 1), ("width", self.width, 1),
                                 ("epochs", self.epochs, 1), ("train_subset", self.train_subset, 1)):
            if value is None and name in ("width", "epochs", "train_subset"):
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        duplicates = sorted({m for m in self.methods if list(self.methods).count(m) > 1})
        if duplicates:
            raise ConfigError(f"--methods lists {', '.join(map(repr, duplicates))} more than once")
        spec = ExperimentSpec(
            data=DataSpec(self.dataset, self.data_dir, self.train_subset, options=dict(self.data_options)),
            model=ModelSpec(self.model, self.width, self.epochs, self.fast),
            forget=(self.forget,), seeds=tuple(range(self.seed, self.seed + self.seeds)),
            methods=tuple(self.methods), hparams={k: dict(v) for k, v in self.hparams.items()},
            evaluation=EvaluationSpec(noise_floor=self.noise_floor),
            device=self.device, cache_dir=self.cache_dir, rum_score=self.rum_score,
        )
        check_spec(spec)
        return spec


__all__ = [
    "DataSpec", "EvaluationSpec", "ExecutorSpec", "ExperimentSpec", "METRIC_NAMES", "MethodCell", "ModelSpec",
    "RequestsSpec", "RunConfig", "Setting", "Split", "TuningSpec", "check_spec", "default_methods", "load_spec",
    "prepare_split", "resolve_setting", "run_experiment", "spec_from_dict", "summarise", "train_cached", "versions",
    "write_spec",
]
