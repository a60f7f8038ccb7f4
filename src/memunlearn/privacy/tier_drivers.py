"""The cheap attack tier against a model: ``rmia``, ``lira-offline`` and ``rmia-u`` (SPEC §6).

Each attack scores ONE model (an unlearned model, the original, the oracle) on its forget set D_f
(the positives: trained on, then unlearned) against held-out examples of the same classes (the
negatives: never trained on), and reports AUC, balanced accuracy and TPR at 1% and 0.1% FPR with
bootstrap intervals, and every forget example's score. Scoring the oracle (a retrain without
D_f) the same way gives the retrain floor; scoring an independent retrain (another seed) as if it
were unlearned is the false-positive check, which must come out at chance.

- ``rmia`` and ``lira-offline`` take their reference models from the model pool: for each
  example, pool members that never trained on it (OUT), chosen at random (seeded); the pool's
  stored logits are all they read, so they cost no training beyond the pool.
- ``rmia-u`` takes as reference models R retrains on D \\ D_f (the world a perfect unlearner
  should be indistinguishable from); they are trained once per split and cached. Its offline
  parameter cannot be fitted the official way (no retrain is OUT for the examples another
  retrain trained on) and defaults to a = 0, the first point of the official grid: Pr(x) =
  (1 + mean_ref)/2 keeps LR(x) bounded when the retrains give x a tiny probability. a = 1 (Pr(x)
  = the retrains' mean) does not: on digits with memorized mislabeled examples it dropped the
  original's AUC from 0.96 to 0.70, while every a in [0, 0.6] gave 0.96 (tests/test_attack_tier.py
  fixture). Pass ``a=`` (e.g. the pool-fitted one of ``rmia``) to change it.

The held-out examples come from the test split, which is cut in two halves (seeded): the
negatives are the first half's examples of the forget set's classes, the population samples z of
RMIA the whole second half. Reference models must share the target's recipe: a pool built with
another model, width or training recipe is refused (:func:`check_pool_recipe`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from .attack import DEFAULT_BOOTSTRAP, attack_metrics
from .confidence import logit_confidence
from .tier import (
    DEFAULT_GAMMA, DEFAULT_REFERENCES, DEFAULT_TEMPERATURE, fit_offline_a, lira_offline, rmia_offline,
    true_class_probability,
)

RESULT_FORMAT = 1
A_FIT_EXAMPLES = 2000  # IN and OUT examples each when fitting a on a reference model
EXPOSURE_FPR = 0.01


def _json_ready(value: Any) -> Any:
    from .drivers import _json_ready as ready

    return ready(value)


@dataclass
class TierAttack:
    """One attack of the tier on one model.

    Attributes:
        name: ``rmia``, ``lira-offline`` or ``rmia-u``.
        metrics: :func:`~memunlearn.privacy.attack.attack_metrics` of the forget set (positives)
            against the held-out negatives: ``auc``, ``accuracy``, ``tpr_at_fpr_0.01``,
            ``tpr_at_fpr_0.001``, each with ``value``/``low``/``high``, and the case counts.
        per_example: ``index`` (training indices of the forget set), ``score`` (higher =
            member), ``exposed`` (score above the negatives' 99th percentile: flagged at 1% FPR).
        setting: references, a, γ, temperature, seed, the negatives and population sizes.
        cost: seconds of the attack itself, and of training its references (rmia-u).
        by_references: RMIA's metrics for fewer reference models (1, 2, 4, …), from the same draws.
    """

    name: str
    metrics: dict[str, Any]
    per_example: dict[str, np.ndarray]
    setting: dict[str, Any]
    cost: dict[str, Any]
    by_references: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (strict JSON)."""
        return _json_ready({"attack": self.name, "metrics": self.metrics, "setting": self.setting, "cost": self.cost,
                            "by_references": self.by_references,
                            "per_example": {k: np.asarray(v).tolist() for k, v in self.per_example.items()}})


@dataclass
class RMIAScores:
    """RMIA scores of a target on chosen training and test examples (see :func:`rmia_scores`).

    Attributes:
        train_scores, test_scores: score per requested example (fraction of population z beaten by γ).
        a: the offline parameter used; a_aucs: the AUC of every a tried when it was fitted.
        population: test indices used as population samples z.
        n_references: reference models per example.
    """

    train_scores: np.ndarray
    test_scores: np.ndarray
    a: float
    a_aucs: dict[float, float] | None
    population: np.ndarray
    n_references: int
    gamma: float
    temperature: float
    short: int = 0  # scored examples with fewer OUT pool members than n_references (they use those they have)


def check_pool_recipe(info: Mapping[str, Any], model: str | None = None, width: int | None = None,
                      train: Mapping[str, Any] | Any = None) -> None:
    """Refuse reference models trained with another recipe than the target (one line).

    Args:
        info: the pool's ``info`` (pool.json).
        model, width: the target's architecture (None = not checked).
        train: the target's training recipe (a TrainConfig or its dict; None = not checked);
            the seed is not compared.

    Raises:
        ConfigError: naming both recipes.

    Example:
        >>> check_pool_recipe({"model": "mlp", "width": 64}, "mlp", 64)
        >>> check_pool_recipe({"model": "mlp", "width": 64}, "cnn", 16)
        Traceback (most recent call last):
        ...
        memunlearn.errors.ConfigError: the reference models (the pool) were trained as mlp width 64, the target as cnn width 16; reference models must share the target's recipe: build the pool with the target's model and recipe
    """
    theirs = f"{info.get('model')} width {info.get('width')}"
    ours = f"{model} width {width}"
    if (model is not None and model != info.get("model")) or (width is not None and width != info.get("width")):
        raise ConfigError(f"the reference models (the pool) were trained as {theirs}, the target as {ours}; "
                          "reference models must share the target's recipe: build the pool with the target's model "
                          "and recipe")
    if train is not None:
        target = train.to_dict() if hasattr(train, "to_dict") else dict(train)
        pool_train = dict(info.get("train") or {})
        differ = sorted(k for k in set(target) | set(pool_train) if k != "seed" and target.get(k) != pool_train.get(k))
        if differ:
            what = ", ".join(f"{k} {pool_train.get(k)!r} vs {target.get(k)!r}" for k in differ)
            raise ConfigError(f"the reference models (the pool) were trained with another recipe than the target "
                              f"({what}, pool vs target); build the pool with the target's recipe")


def _check_target_architecture(target: Any, info: Mapping[str, Any]) -> None:
    from torch import nn

    if isinstance(target, nn.Module):
        from ..memorization import infer_architecture

        name, width = infer_architecture(target)
        if name is not None:
            check_pool_recipe(info, name, width)


def _target_logits(target: Any, dataset: Any, device: str) -> tuple[np.ndarray, np.ndarray]:
    """(train logits [n, C], test logits [m, C]) of a model, or of a given pair of arrays."""
    from torch import nn

    if isinstance(target, nn.Module):
        from ..training import predict_logits

        return (predict_logits(target, dataset.train, device).numpy(),
                predict_logits(target, dataset.test, device).numpy())
    if isinstance(target, (tuple, list)) and len(target) == 2:
        return np.asarray(target[0], dtype=np.float32), np.asarray(target[1], dtype=np.float32)
    raise ConfigError("the target must be a model or a (train_logits, test_logits) pair")


def heldout_split(test_labels: Any, forget_labels: Any, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(negatives, population): the test split cut in two seeded halves; the negatives are the
    first half's examples of the classes the forget set has, the population the whole second half.

    Raises:
        ConfigError: no test example of the forget set's classes, or a test split under 4 examples.

    Example:
        >>> neg, pop = heldout_split(np.array([0, 1, 0, 1, 2, 2, 0, 1]), np.array([0, 0]), seed=0)
        >>> set(np.array([0, 1, 0, 1, 2, 2, 0, 1])[neg].tolist()), len(pop)
        ({0}, 4)
    """
    test_labels = np.asarray(test_labels)
    if len(test_labels) < 4:
        raise ConfigError(f"the attack tier needs a test split of at least 4 examples, got {len(test_labels)}")
    order = np.random.default_rng([seed, 0x7E57]).permutation(len(test_labels))
    first, second = np.sort(order[: len(order) // 2]), np.sort(order[len(order) // 2:])
    negatives = first[np.isin(test_labels[first], np.unique(np.asarray(forget_labels)))]
    if len(negatives) == 0:
        raise ConfigError("no held-out test example shares a class with the forget set; the attack has no negatives")
    return negatives, second


def _reference_rows(out: np.ndarray, n_references: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """[R, n] pool rows: for each example (column of ``out`` [K, n]), R random members that are
    OUT for it; −1 where an example has fewer than R OUT members (it then uses those it has).

    Raises:
        ConfigError: an example that every pool member trained on.
    """
    available = out.sum(axis=0)
    if len(available) and available.min() < 1:
        raise ConfigError(f"{what}: an example was in every pool member's subset, so no reference model never "
                          "trained on it; build a larger pool")
    keys = rng.random(out.shape)
    keys[~out] = np.inf
    order = np.argsort(keys, axis=0, kind="stable")[:n_references]
    return np.where(np.take_along_axis(keys, order, axis=0) < np.inf, order, -1)


def _gather(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """values [K, n] at rows [R, n] → [R, n], NaN where a row is −1 (no such reference)."""
    taken = np.take_along_axis(values, np.maximum(rows, 0), axis=0).astype(np.float64)
    return np.where(rows >= 0, taken, np.nan)


def _short(rows: np.ndarray) -> int:
    """How many examples have fewer reference models than asked for."""
    return int((rows < 0).any(axis=0).sum())


def _pool_probabilities(pool: Any, labels_train: np.ndarray, labels_test: np.ndarray, train_indices: np.ndarray,
                        test_indices: np.ndarray, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    train = true_class_probability(np.asarray(pool.train_logits[:, train_indices], dtype=np.float32),
                                   labels_train[train_indices], temperature)
    test = true_class_probability(np.asarray(pool.test_logits[:, test_indices], dtype=np.float32),
                                  labels_test[test_indices], temperature)
    return train, test


def fit_a_on_pool(pool: Any, dataset: Any, population: np.ndarray, *, member: int = 0, gamma: float = DEFAULT_GAMMA,
                  temperature: float = DEFAULT_TEMPERATURE, seed: int = 0,
                  examples: int = A_FIT_EXAMPLES) -> tuple[float, dict[float, float]]:
    """Fit RMIA's offline ``a`` by attacking pool member ``member`` with 1 other member as its
    reference (official ``tune_offline_a``): up to ``examples`` of its members and of its
    non-members from the training set, against the population ``population`` (test indices)."""
    labels_train, labels_test = dataset.train.y.numpy(), dataset.test.y.numpy()
    masks = np.asarray(pool.masks, dtype=bool)
    if len(masks) < 2:
        raise ConfigError("fitting RMIA's offline a needs a pool of at least 2 members")
    rng = np.random.default_rng([seed, 0xA])
    inside, outside = np.flatnonzero(masks[member]), np.flatnonzero(~masks[member])
    if not len(inside) or not len(outside):
        raise ConfigError(f"pool member {member} has no members or no non-members to fit a on")
    inside = np.sort(rng.choice(inside, min(examples, len(inside)), replace=False))
    outside = np.sort(rng.choice(outside, min(examples, len(outside)), replace=False))
    others = np.setdiff1d(np.arange(len(masks)), [member])

    def side(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, _ = _pool_probabilities(pool, labels_train, labels_test, indices, population[:0], temperature)
        out = ~masks[others][:, indices]
        if (out.sum(axis=0) == 0).any():  # an example every other member trained on cannot be scored
            keep = out.sum(axis=0) > 0
            indices, probs, out = indices[keep], probs[:, keep], out[:, keep]
        rows = _reference_rows(out, 1, rng, "fitting a")
        return probs[member], _gather(probs[others], rows)

    t_in, r_in = side(inside)
    t_out, r_out = side(outside)
    _, z = _pool_probabilities(pool, labels_train, labels_test, inside[:0], population, temperature)
    rows_z = _reference_rows(np.ones((len(others), len(population)), bool), 1, rng, "fitting a")
    return fit_offline_a(t_in, r_in, t_out, r_out, z[member], _gather(z[others], rows_z), gamma)


def rmia_scores(
    target: Any,
    pool: Any,
    dataset: Any,
    *,
    train_indices: Sequence[int] | np.ndarray = (),
    test_indices: Sequence[int] | np.ndarray = (),
    population: Sequence[int] | np.ndarray | None = None,
    n_references: int = DEFAULT_REFERENCES,
    a: float | None = None,
    gamma: float = DEFAULT_GAMMA,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = 0,
    recipe: Mapping[str, Any] | None = None,
    device: str = "auto",
) -> RMIAScores:
    """Offline RMIA scores of ``target`` on training and/or test examples, pool members as references.

    The public entry point for anything that wants RMIA scores (the oracle-free audit, your own
    analysis). For each example, ``n_references`` pool members that never trained on it are drawn
    (seeded); Pr(x) is their mean true-label probability, corrected by ``a``.

    Args:
        target: an ``nn.Module`` or a ``(train_logits [n, C], test_logits [m, C])`` pair.
        pool: a :class:`~memunlearn.memorization.pool.ModelPool` on ``dataset`` (its stored logits are read).
        dataset: the data the pool was built on (labels; the target's logits when it is a model).
        train_indices: training examples to score.
        test_indices: test examples to score (e.g. held-out data the target never saw).
        population: test indices used as population samples z (default: every test example not in
            ``test_indices``).
        n_references: reference models per example (default 4).
        a: the offline parameter; None = fitted on pool member 0 (:func:`fit_a_on_pool`).
        gamma: the pairwise threshold γ (default 2).
        temperature: softmax temperature T of Pr(x|θ) (default 1).
        seed: seeds the reference draws and the fit of ``a``.
        recipe: ``{"model", "width", "train"}`` of the target, checked against the pool's; a model
            target's architecture is checked in any case.
        device: where a model target runs.

    Returns:
        :class:`RMIAScores`.

    Raises:
        ConfigError: a pool of another recipe, indices out of range, an empty population, too few
            OUT members for an example.

    Example:
        >>> result = rmia_scores(model, pool, data, train_indices=forget, test_indices=heldout)  # doctest: +SKIP
        >>> result.train_scores.mean(), result.test_scores.mean()  # doctest: +SKIP
    """
    info = pool.info
    if recipe is not None:
        check_pool_recipe(info, recipe.get("model"), recipe.get("width"), recipe.get("train"))
    _check_target_architecture(target, info)
    if n_references < 1:
        raise ConfigError(f"RMIA needs at least 1 reference model, got {n_references}")
    n, m = len(dataset.train), len(dataset.test)
    train_indices = np.asarray(train_indices, dtype=np.int64)
    test_indices = np.asarray(test_indices, dtype=np.int64)
    for name, indices, size in (("train_indices", train_indices, n), ("test_indices", test_indices, m)):
        if len(indices) and (indices.min() < 0 or indices.max() >= size):
            raise ConfigError(f"{name} must be in [0, {size - 1}]")
    if pool.masks.shape[1] != n or pool.test_logits.shape[1] != m:
        raise ConfigError("the pool was not built on this dataset (its logits cover other examples)")
    population = (np.setdiff1d(np.arange(m), test_indices) if population is None
                  else np.asarray(population, dtype=np.int64))
    if not len(population):
        raise ConfigError("RMIA needs population samples z (test examples not scored); none are left")
    train_logits, test_logits = _target_logits(target, dataset, device)
    labels_train, labels_test = dataset.train.y.numpy(), dataset.test.y.numpy()
    a_aucs = None
    if a is None:
        a, a_aucs = fit_a_on_pool(pool, dataset, population, gamma=gamma, temperature=temperature, seed=seed)
    rng = np.random.default_rng([seed, 0x4EF])
    masks = np.asarray(pool.masks, dtype=bool)
    ref_train, ref_test = _pool_probabilities(pool, labels_train, labels_test, train_indices,
                                              np.concatenate([test_indices, population]), temperature)
    rows_train = _reference_rows(~masks[:, train_indices], n_references, rng, "RMIA")
    rows_test = _reference_rows(np.ones(ref_test.shape, bool), n_references, rng, "RMIA")
    target_train = true_class_probability(train_logits[train_indices], labels_train[train_indices], temperature)
    both = np.concatenate([test_indices, population])
    target_test = true_class_probability(test_logits[both], labels_test[both], temperature)
    refs_test = _gather(ref_test, rows_test)
    k = len(test_indices)
    target_x = np.concatenate([target_train, target_test[:k]])
    refs_x = np.concatenate([_gather(ref_train, rows_train), refs_test[:, :k]], axis=1)
    scores = rmia_offline(target_x, refs_x, target_test[k:], refs_test[:, k:], a, gamma)
    return RMIAScores(scores[: len(train_indices)], scores[len(train_indices):], float(a), a_aucs, population,
                      n_references, gamma, temperature, _short(rows_train))


def _metrics(name: str, positive: np.ndarray, negative: np.ndarray, n_bootstrap: int, seed: int) -> dict[str, Any]:
    if not len(positive) or not len(negative):
        raise ConfigError(f"{name}: the attack needs forget examples and held-out negatives")
    scores = np.concatenate([positive, negative])
    labels = np.r_[np.ones(len(positive), np.int8), np.zeros(len(negative), np.int8)]
    return attack_metrics(scores, labels, n_bootstrap=n_bootstrap, seed=seed)


def _per_example(forget: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> dict[str, np.ndarray]:
    threshold = np.quantile(negative, 1 - EXPOSURE_FPR)
    return {"index": forget, "score": positive, "exposed": positive > threshold}


def reference_counts(n_references: int) -> list[int]:
    """The reference counts RMIA reports: powers of 2 below ``n_references``, and it.

    Example:
        >>> reference_counts(4), reference_counts(6), reference_counts(1)
        ([1, 2, 4], [1, 2, 4, 6], [1])
    """
    counts = [2**i for i in range(8) if 2**i < n_references]
    return counts + [n_references]


def rmia_attack(
    target: Any,
    pool: Any,
    dataset: Any,
    forget_indices: Sequence[int] | np.ndarray,
    *,
    n_references: int = DEFAULT_REFERENCES,
    a: float | None = None,
    gamma: float = DEFAULT_GAMMA,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = 0,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    recipe: Mapping[str, Any] | None = None,
    device: str = "auto",
) -> TierAttack:
    """``rmia``: offline RMIA of ``target`` on its forget set vs held-out negatives, pool members
    as references; metrics for ``n_references`` and for 1, 2, 4, … fewer (``by_references``)."""
    start = time.perf_counter()
    forget = np.asarray(forget_indices, dtype=np.int64)
    labels_test = dataset.test.y.numpy()
    negatives, population = heldout_split(labels_test, dataset.train.y.numpy()[forget], seed)
    by_references, result = {}, None
    fitted, a_aucs = a, None
    for count in reference_counts(n_references):
        result = rmia_scores(target, pool, dataset, train_indices=forget, test_indices=negatives, population=population,
                             n_references=count, a=fitted, gamma=gamma, temperature=temperature, seed=seed,
                             recipe=recipe, device=device)
        if fitted is None:
            fitted, a_aucs = result.a, result.a_aucs
        by_references[str(count)] = {**_metrics("rmia", result.train_scores, result.test_scores, n_bootstrap, seed),
                                     "short_references": result.short}
    metrics = by_references[str(n_references)]
    setting = {"n_references": n_references, "a": fitted, "a_fitted": a is None,
               "a_aucs": {str(k): v for k, v in a_aucs.items()} if a is None else None, "gamma": gamma,
               "temperature": temperature, "seed": seed, "negatives": int(len(negatives)),
               "population": int(len(population)), "references": "pool members that never trained on the example",
               "pool": pool.info.get("key")}
    return TierAttack("rmia", metrics, _per_example(forget, result.train_scores, result.test_scores), setting,
                      {"seconds": time.perf_counter() - start}, by_references)


def lira_offline_attack(
    target: Any,
    pool: Any,
    dataset: Any,
    forget_indices: Sequence[int] | np.ndarray,
    *,
    n_references: int | None = None,
    seed: int = 0,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    recipe: Mapping[str, Any] | None = None,
    device: str = "auto",
) -> TierAttack:
    """``lira-offline``: offline LiRA with a fixed global variance (:func:`~memunlearn.privacy.tier.lira_offline`)
    of ``target`` on its forget set vs held-out negatives, OUT pool members as references
    (``n_references`` per example, default: the smallest OUT count over the scored examples)."""
    start = time.perf_counter()
    info = pool.info
    if recipe is not None:
        check_pool_recipe(info, recipe.get("model"), recipe.get("width"), recipe.get("train"))
    _check_target_architecture(target, info)
    forget = np.asarray(forget_indices, dtype=np.int64)
    labels_train, labels_test = dataset.train.y.numpy(), dataset.test.y.numpy()
    negatives, _ = heldout_split(labels_test, labels_train[forget], seed)
    train_logits, test_logits = _target_logits(target, dataset, device)
    masks = np.asarray(pool.masks, dtype=bool)
    out_train = ~masks[:, forget]
    count = n_references if n_references is not None else int(out_train.sum(axis=0).min()) if len(forget) else 0
    if count < 1:
        raise ConfigError("lira-offline: some forget example was in every pool member's subset; use a larger pool")
    rng = np.random.default_rng([seed, 0x11A])
    rows_train = _reference_rows(out_train, count, rng, "lira-offline")
    rows_test = _reference_rows(np.ones((len(masks), len(negatives)), bool), count, rng, "lira-offline")
    phi_train = np.stack([logit_confidence(np.asarray(z[forget], np.float32), labels_train[forget]) for z in pool.train_logits])
    phi_test = np.stack([logit_confidence(np.asarray(z[negatives], np.float32), labels_test[negatives])
                         for z in pool.test_logits])
    target_phi = np.concatenate([logit_confidence(train_logits[forget], labels_train[forget]),
                                 logit_confidence(test_logits[negatives], labels_test[negatives])])
    references = np.concatenate([_gather(phi_train, rows_train), _gather(phi_test, rows_test)], axis=1)
    scores, fit = lira_offline(target_phi, references)
    positive, negative = scores[: len(forget)], scores[len(forget):]
    setting = {"n_references": count, "std": fit["std"], "statistic": "logit confidence (exact)", "seed": seed,
               "negatives": int(len(negatives)), "variance": "fixed (one standard deviation over all OUT values)",
               "pool": info.get("key")}
    return TierAttack("lira-offline", _metrics("lira-offline", positive, negative, n_bootstrap, seed),
                      _per_example(forget, positive, negative), setting, {"seconds": time.perf_counter() - start})


def _save(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    from ..io import atomic_path

    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def retrained_references(
    original: Any,
    dataset: Any,
    forget_indices: Sequence[int] | np.ndarray,
    retrain_hparams: Mapping[str, Any],
    n_models: int = DEFAULT_REFERENCES,
    *,
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    on_model: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, Any]]:
    """``n_models`` models retrained on D \\ D_f (``retrain`` with ``retrain_hparams``, seeds drawn
    from (seed, i, 0x4E7)), as (train logits on the forget set, test logits) pairs, cached per model
    under ``privacy/rmia-u/<key>`` so every method of a split shares them.

    Returns:
        (references, cost) where cost has ``retrain_seconds`` (sum, reused ones' recorded times
        included), ``computed`` and ``reused``.
    """
    from ..checkpoints import artefact_key
    from ..data.core import fingerprint_tensors
    from ..io import cache_root
    from ..methods import unlearn
    from ..training import predict_logits
    from .drivers import _load, derived_seed, model_fingerprint, resolve_hparams

    forget = np.asarray(forget_indices, dtype=np.int64)
    retain = np.setdiff1d(np.arange(len(dataset.train)), forget)
    hparams = resolve_hparams("retrain", retrain_hparams, None)
    key = artefact_key(kind="rmia-u-retrained", format=RESULT_FORMAT, template=model_fingerprint(original),
                       data=dataset.fingerprint, labels=fingerprint_tensors(dataset.train.y),
                       forget=hashlib.sha256(forget.tobytes()).hexdigest(), hparams=hparams, seed=seed)
    directory = cache_root(cache_dir) / "privacy" / "rmia-u" / key
    references, seconds, computed = [], 0.0, 0
    for i in range(n_models):
        path = directory / f"retrained-{i:05d}.npz"
        found = _load(path, key, i, {"forget_logits": (), "test_logits": ()})
        if found is not None:
            arrays, meta = found
        else:
            result = unlearn("retrain", original, dataset.train.subset(forget), dataset.train.subset(retain),
                             seed=derived_seed(seed, i, 0x4E7), device=device, **hparams)
            arrays = {"forget_logits": predict_logits(result.model, dataset.train.subset(forget), device).numpy(),
                      "test_logits": predict_logits(result.model, dataset.test, device).numpy()}
            meta = {"key": key, "index": i, "seconds": result.cost.wall_time}
            _save(path, arrays, meta)
            computed += 1
        seconds += float(meta.get("seconds", 0.0))
        references.append((arrays["forget_logits"], arrays["test_logits"]))
        if on_model is not None:
            on_model({"index": i, "reused": found is not None, "seconds": meta.get("seconds")})
    return references, {"retrain_seconds": seconds, "computed": computed, "reused": n_models - computed,
                        "cache": str(directory)}


def rmia_u_attack(
    target: Any,
    references: Sequence[tuple[np.ndarray, np.ndarray]],
    dataset: Any,
    forget_indices: Sequence[int] | np.ndarray,
    *,
    a: float = 0.0,
    gamma: float = DEFAULT_GAMMA,
    temperature: float = DEFAULT_TEMPERATURE,
    seed: int = 0,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    device: str = "auto",
    cost: Mapping[str, Any] | None = None,
) -> TierAttack:
    """``rmia-u``: RMIA whose reference models are retrains without the forget set.

    Args:
        target: the model to score (or its (train_logits, test_logits) pair).
        references: per retrain, (logits on the forget set in ``forget_indices`` order, test
            logits), as :func:`retrained_references` returns.
        a: the offline parameter (default 0; see the module docstring).
        gamma, temperature, seed, n_bootstrap: as :func:`rmia_attack`.
        cost: the references' training cost, reported with the attack's.
    """
    start = time.perf_counter()
    if not references:
        raise ConfigError("rmia-u needs at least 1 retrained reference model")
    forget = np.asarray(forget_indices, dtype=np.int64)
    labels_train, labels_test = dataset.train.y.numpy(), dataset.test.y.numpy()
    negatives, population = heldout_split(labels_test, labels_train[forget], seed)
    train_logits, test_logits = _target_logits(target, dataset, device)
    forget_labels = labels_train[forget]
    ref_forget = np.stack([true_class_probability(f, forget_labels, temperature) for f, _ in references])
    ref_test = np.stack([true_class_probability(t, labels_test, temperature) for _, t in references])
    target_forget = true_class_probability(train_logits[forget], forget_labels, temperature)
    target_test = true_class_probability(test_logits, labels_test, temperature)
    target_x = np.concatenate([target_forget, target_test[negatives]])
    refs_x = np.concatenate([ref_forget, ref_test[:, negatives]], axis=1)
    scores = rmia_offline(target_x, refs_x, target_test[population], ref_test[:, population], a, gamma)
    positive, negative = scores[: len(forget)], scores[len(forget):]
    setting = {"n_references": len(references), "a": a, "gamma": gamma, "temperature": temperature, "seed": seed,
               "negatives": int(len(negatives)), "population": int(len(population)),
               "references": "models retrained without the forget set"}
    return TierAttack("rmia-u", _metrics("rmia-u", positive, negative, n_bootstrap, seed),
                      _per_example(forget, positive, negative), setting,
                      {"seconds": time.perf_counter() - start, **dict(cost or {})})


__all__ = [
    "RMIAScores", "TierAttack", "check_pool_recipe", "fit_a_on_pool", "heldout_split", "lira_offline_attack",
    "reference_counts", "retrained_references", "rmia_attack", "rmia_scores", "rmia_u_attack",
]
