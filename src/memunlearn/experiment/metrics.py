"""Metrics an experiment asks for by name (``[evaluation] metrics = [...]``), one registry.

Accuracies, gaps, ToW and the population attacks are always computed. The metrics here cost more
or need something more, and declare it: U-LiRA needs the model pool (shadow models, shared with
memorization scores), the NeurIPS-2023 score needs N unlearned and N retrained models, ``rmia``
and ``lira-offline`` read the same pool's logits (no training beyond the pool), ``rmia-u`` needs
a few retrains without the forget set. (A backdoor
forget set's attack success rate is measured for every model without being asked for.) Each is computed inside its cell and cached with it;
the pool and the extra runs are artefacts of their own, built once and reused by every cell.

Register a metric with ``@METRICS.register(name, scope=..., needs="...")`` on a function
``fn(context: MetricContext) -> dict`` (strict-JSON values). ``scope="model"`` metrics score a model
(the unlearned one; the original and the oracle are scored too); ``scope="method"`` metrics score
the method itself through runs of their own, and ``retrain`` through the same machinery is their
measured floor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from torch import nn

from ..registry import Registry

if TYPE_CHECKING:  # annotations only: the spec checks metric names here, so this module must not import it back
    from .setup import Setting, Split
    from .spec import ExperimentSpec

MetricFn = Callable[["MetricContext"], dict[str, Any]]
METRICS: Registry[MetricFn] = Registry("metric")


@dataclass
class MetricContext:
    """What a metric may use: the experiment, the split, the cell's method and its result."""

    spec: ExperimentSpec
    setting: Setting
    split: Split
    method: str
    hparams: dict[str, Any]
    model: nn.Module | None  # the model to score (scope "model"); None where a metric runs the method itself


def available_metrics() -> list[str]:
    return METRICS.names()


def _pool(context: MetricContext):
    """The experiment's one model pool (U-LiRA's shadows, the attack tier's references, exact
    memorization): the setting's model and recipe; members keep weights when U-LiRA is asked for
    (it unlearns every member) unless ``[evaluation] pool_keep_weights`` says otherwise."""
    from ..memorization.pool import build_pool, pool_spec_for

    evaluation = context.spec.evaluation
    keep = evaluation.pool_keep_weights
    keep = "ulira" in evaluation.metrics if keep is None else keep
    pool_spec = pool_spec_for(context.split.dataset, context.setting.model_name, context.setting.width,
                              context.setting.train_config, subset_fraction=evaluation.pool_fraction,
                              seed=evaluation.pool_seed, keep_weights=keep)
    return build_pool(context.split.dataset, pool_spec, evaluation.pool_size,
                      cache_dir=context.setting.cache.parent, executor=context.spec.executor.name,
                      workers=context.spec.executor.workers, ray_address=context.spec.executor.ray_address,
                      device=str(context.setting.device))


@METRICS.register("ulira", scope="method", needs="the model pool ([evaluation] pool_size shadow models)")
def ulira_metric(context: MetricContext) -> dict[str, Any]:
    """U-LiRA (SPEC §6) of the cell's method on the experiment's forget rule, pool members as shadows."""
    from ..privacy import ulira

    pool = _pool(context)
    report = ulira(pool, context.split.dataset, context.split.rule, context.method, context.hparams,
                   seed=context.split.seed, cache_dir=context.setting.cache.parent, device=str(context.setting.device))
    return report.to_dict()


@METRICS.register("neurips2023", scope="method",
                  needs="[evaluation] neurips2023_models unlearned and retrained models")
def neurips2023_metric(context: MetricContext) -> dict[str, Any]:
    """The NeurIPS-2023 challenge score of the cell's method against retrained models (SPEC §6)."""
    from ..privacy import neurips2023_score

    retrain_hparams = context.setting.train_config.retrain_hparams()
    split = context.split
    method, hparams = context.method, dict(context.hparams)
    if method == "retrain":
        hparams = {**retrain_hparams, **hparams}
    report = neurips2023_score(split.original, split.forget, split.retain, split.test, method, hparams,
                               context.spec.evaluation.neurips2023_models, retrain_hparams=retrain_hparams,
                               forget_indices=split.forget_set.indices, seed=split.seed,
                               cache_dir=context.setting.cache.parent, device=str(context.setting.device))
    return report.to_dict()


def _recipe(context: MetricContext) -> dict[str, Any]:
    return {"model": context.setting.model_name, "width": context.setting.width,
            "train": context.setting.train_config}


@METRICS.register("rmia", scope="model",
                  needs="the model pool ([evaluation] pool_size members as reference models; their logits only)")
def rmia_metric(context: MetricContext) -> dict[str, Any]:
    """Offline RMIA (SPEC §6) of the model on the forget set vs held-out test examples, pool members
    that never trained on an example as its reference models (1, 2, 4, … up to rmia_references)."""
    from ..privacy import rmia_attack

    split = context.split
    report = rmia_attack(context.model, _pool(context), split.dataset, split.forget_set.indices,
                         n_references=context.spec.evaluation.rmia_references, seed=split.seed,
                         recipe=_recipe(context), device=str(context.setting.device))
    return report.to_dict()


@METRICS.register("lira-offline", scope="model",
                  needs="the model pool ([evaluation] pool_size members as OUT reference models; their logits only)")
def lira_offline_metric(context: MetricContext) -> dict[str, Any]:
    """Offline LiRA with a fixed variance (SPEC §6), OUT pool members as references."""
    from ..privacy import lira_offline_attack

    split = context.split
    report = lira_offline_attack(context.model, _pool(context), split.dataset, split.forget_set.indices,
                                 seed=split.seed, recipe=_recipe(context), device=str(context.setting.device))
    return report.to_dict()


@METRICS.register("rmia-u", scope="model",
                  needs="[evaluation] rmia_u_references models retrained without the forget set (shared by every method)")
def rmia_u_metric(context: MetricContext) -> dict[str, Any]:
    """RMIA whose reference models are retrains without the forget set (SPEC §6)."""
    from ..privacy import retrained_references, rmia_u_attack

    split = context.split
    references, cost = retrained_references(split.original, split.dataset, split.forget_set.indices,
                                            context.setting.train_config.retrain_hparams(),
                                            context.spec.evaluation.rmia_u_references, seed=split.seed,
                                            cache_dir=context.setting.cache.parent, device=str(context.setting.device))
    report = rmia_u_attack(context.model, references, split.dataset, split.forget_set.indices, seed=split.seed,
                           device=str(context.setting.device), cost=cost)
    return report.to_dict()


def floor_metrics(spec: ExperimentSpec, setting: Setting, split: Split) -> dict[str, dict[str, Any]]:
    """Each requested metric for the reference rows: scope "model" metrics of the original and the
    oracle, scope "method" metrics of ``retrain`` run through the same machinery (the floor)."""
    rows: dict[str, dict[str, Any]] = {"original": {}, "oracle": {}, "retrain": {}}
    for name in spec.evaluation.metrics:
        entry = METRICS.entry(name)
        if entry.metadata["scope"] == "model":
            for role, model in (("original", split.original), ("oracle", split.oracle)):
                rows[role][name] = entry.obj(MetricContext(spec, setting, split, role, {}, model))
        else:
            rows["retrain"][name] = entry.obj(MetricContext(spec, setting, split, "retrain", {}, None))
    return {role: values for role, values in rows.items() if values}


def cell_metrics(spec: ExperimentSpec, setting: Setting, split: Split, method: str, hparams: dict[str, Any],
                 model: nn.Module, pipeline: bool) -> dict[str, Any]:
    """Each requested metric for one cell's method and unlearned model."""
    values: dict[str, Any] = {}
    for name in spec.evaluation.metrics:
        entry = METRICS.entry(name)
        if (pipeline or method.startswith("stop:")) and entry.metadata["scope"] == "method":
            kind = "RUM pipelines" if pipeline else "stop: entries"
            values[name] = {"error": f"{name} runs a registered method; {kind} are not supported yet"}
            continue
        values[name] = entry.obj(MetricContext(spec, setting, split, method, hparams, model))
    return values


# ------------------------------------------------------------------------------------------------
# The oracle-free audit beside the oracle comparison ([evaluation] audit = true)


def audit_holdout(setting: Setting, split: Split):
    """The audit's held-out data H: ``[evaluation] audit_holdout`` examples held out of every
    model's training when set, else the scoring split (the test set, or ``[data] validation``)."""
    return setting.holdout if setting.holdout is not None else split.test


def _auditor(setting: Setting, split: Split):
    """The split's :class:`~memunlearn.auditing.Auditor` (data checks done once per split)."""
    auditor = getattr(split, "_auditor", None)
    if auditor is None:
        from ..auditing import Auditor, ranked_rule

        auditor = Auditor(split.forget, audit_holdout(setting, split), split.retain,
                          forget_indices=split.forget_set.indices, seed=split.seed, selected_by=ranked_rule(split.rule),
                          original=split.original, device=setting.device)
        split._auditor = auditor  # type: ignore[attr-defined]
    return auditor


def audit_model(setting: Setting, split: Split, model: nn.Module) -> dict[str, Any]:
    """The audit of one model on the split (strict JSON), with ``holdout`` naming H."""
    report = _auditor(setting, split).audit(model, setting.device)
    return {**report.to_dict(), "holdout": "audit_holdout" if setting.holdout is not None else "scoring split"}


def reference_audits(spec: ExperimentSpec, setting: Setting, split: Split) -> dict[str, Any]:
    """The audit of the original (it must fail: detection), the oracle and the independent retrain
    (they must pass: false positives), per split. The independent retrain is the cached model
    :func:`~memunlearn.experiment.setup.prepare_split` trained (reused, not retrained)."""
    from ..checkpoints import artefact_key
    from .setup import NOISE_FLOOR_SEED_OFFSET, train_cached

    models = {"original": split.original, "oracle": split.oracle}
    if spec.evaluation.noise_floor:
        forget_key = {"forget": artefact_key(indices=split.forget_set.indices.tolist())}
        models["noise_floor"] = train_cached(setting, split.retain, split.dataset.fingerprint,
                                             split.seed + NOISE_FLOOR_SEED_OFFSET, "oracle", forget_key)[0]
    return {role: audit_model(setting, split, model) for role, model in models.items()}


def ulira_agreement(audit: dict[str, Any], forget_indices, ulira: dict[str, Any]) -> dict[str, Any] | None:
    """The audit's flagged forget examples against U-LiRA's exposed ones (per-example attack
    accuracy above 0.5 over its cases), over the forget examples U-LiRA scored."""
    per_example = (ulira or {}).get("per_example") or {}
    if "index" not in per_example or "accuracy" not in per_example:
        return None
    scored = {int(i): a for i, a in zip(per_example["index"], per_example["accuracy"]) if a is not None}
    common = [int(i) for i in forget_indices if int(i) in scored]
    if not common:
        return {"scored": 0}
    flagged = {int(f["index"]) for f in audit.get("flagged", [])}
    exposed = {i for i in common if scored[i] > 0.5}
    both = len(flagged & exposed)
    return {"scored": len(common), "exposed": len(exposed), "flagged": len(flagged & set(common)), "both": both,
            "agreement": sum((i in flagged) == (i in exposed) for i in common) / len(common)}
