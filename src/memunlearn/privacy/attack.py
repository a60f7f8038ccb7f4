"""U-LiRA, the per-example unlearning membership attack (Hayes et al. 2024; SPEC §6): pure numpy.

Given K unlearned shadow models, for each training example x:

- IN(x): φ of the models that trained on x and then unlearned it (x ∈ F_k);
- OUT(x): φ of the models that never trained on x (x ∉ S_k), which went through unlearning of others.

The attacker fits one Gaussian to each side, per example, and scores an observation φ of a
target model by the log likelihood ratio log N(φ; μ_in, σ²_in) − log N(φ; μ_out, σ²_out):
positive = "this model trained on x and unlearned it", negative = "never saw x". A perfect
unlearner (retraining from scratch) makes IN and OUT the same distribution: accuracy and AUC 0.5.

Decisions where the paper and SPEC leave freedom (each is a keyword argument):

- Means are per-example sample means (LiRA's code uses medians; with few samples the mean is the
  less noisy of the two for Gaussian data).
- Variances are per-example (unbiased) when a side has at least ``min_samples`` = 4 samples;
  below that, the side's pooled within-example variance Σ(nᵢ−1)sᵢ² / Σ(nᵢ−1) over all examples
  with ≥ 2 samples. A 2- or 3-sample variance is so noisy (χ² with 1–2 degrees of freedom) that a
  near-zero estimate makes the likelihood ratio explode; LiRA's code uses a global variance for
  small shadow counts for the same reason. Variances are floored at ``VARIANCE_FLOOR``.
- An example is scored only when the shadows hold at least one IN and one OUT sample of it.
- Shadows vs targets: either an explicit split, or (default) k-fold cross-fitting: the members
  are split into ``folds`` groups, and each group is scored as targets by Gaussians fitted on
  the other groups, so every member is a target exactly once and never scores itself.
- Balance: per target model, the larger of its two case lists ("unlearned x" / "never saw x") is
  subsampled (seeded) to the size of the smaller. The metrics below do not depend on the class
  ratio in expectation; balancing only makes the case counts what the protocol says.
- Accuracy: balanced accuracy at the BEST threshold on the likelihood ratio, ``accuracy`` (the
  number Hayes et al. report; optimistic by O(1/√cases), which is why the retrain floor is
  measured with the same procedure), and at the Bayes threshold LR > 0, ``accuracy_at_zero``
  (no threshold is fitted to the evaluation cases).
- TPR at FPR α: the largest TPR of an ROC point with FPR ≤ α. With fewer than 1/α negative
  cases only FPR = 0 qualifies; ``negatives`` is reported so a reader can tell.
- 95% intervals: percentile bootstrap (default 1000 resamples) over clusters, by default the
  examples (all the cases of one example are resampled together, as they share its Gaussians),
  or the target models; the best threshold is re-chosen in every resample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

MIN_SAMPLES = 4
VARIANCE_FLOOR = 1e-6
DEFAULT_FOLDS = 5
DEFAULT_BOOTSTRAP = 1000
FPR_LEVELS = (0.01, 0.001)
METRICS = ("accuracy", "accuracy_at_zero", "auc", "tpr_at_fpr_0.01", "tpr_at_fpr_0.001")


@dataclass
class GaussianFit:
    """Per-example Gaussians of the IN and OUT samples (arrays of length n; NaN mean = no sample).

    ``var_in``/``var_out`` are the variances used for scoring: per-example where the side has at
    least ``min_samples`` samples, the side's pooled variance otherwise.
    """

    mean_in: np.ndarray
    var_in: np.ndarray
    count_in: np.ndarray
    mean_out: np.ndarray
    var_out: np.ndarray
    count_out: np.ndarray
    pooled_var_in: float
    pooled_var_out: float
    min_samples: int = MIN_SAMPLES

    @property
    def scorable(self) -> np.ndarray:
        """[n] bool: the examples with at least one IN and one OUT sample."""
        return (self.count_in > 0) & (self.count_out > 0)

    def separation(self) -> np.ndarray:
        """|μ_in − μ_out| / √((σ²_in + σ²_out)/2) per example: how far apart the two sides are."""
        with np.errstate(invalid="ignore"):
            return np.abs(self.mean_in - self.mean_out) / np.sqrt((self.var_in + self.var_out) / 2)


def _side(phi: np.ndarray, mask: np.ndarray, min_samples: int, side: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    count = mask.sum(axis=0)
    total = np.where(mask, phi, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
        squares = np.where(mask, (phi - mean[None, :]) ** 2, 0.0).sum(axis=0)
        var = np.where(count > 1, squares / (count - 1), np.nan)
    dof = np.clip(count - 1, 0, None)
    if dof.sum() == 0:
        raise ValueError(
            f"cannot estimate a variance for the {side} side: no example has 2 or more {side} samples; "
            "use more shadow models or a larger forget fraction"
        )
    pooled = max(float(squares[count > 1].sum() / dof.sum()), VARIANCE_FLOOR)
    used = np.where(count >= min_samples, var, pooled)
    return mean, np.maximum(used, VARIANCE_FLOOR), count, pooled


def fit_gaussians(phi: np.ndarray, in_mask: np.ndarray, out_mask: np.ndarray, min_samples: int = MIN_SAMPLES) -> GaussianFit:
    """Fit per-example IN and OUT Gaussians to shadow statistics.

    Args:
        phi: [K, n] statistic of K shadow models on n examples.
        in_mask: [K, n] bool, True where model k trained on example i and unlearned it.
        out_mask: [K, n] bool, True where model k never trained on example i.
        min_samples: a side with fewer samples than this uses the pooled variance.

    Returns:
        A :class:`GaussianFit`.

    Raises:
        ValueError: shapes that disagree, masks that overlap, non-finite φ where a mask is set,
            ``min_samples`` < 2, or a side where no example has 2 samples (no variance at all).

    Example:
        >>> phi = np.array([[1.0], [2.0], [3.0], [-2.0], [0.0], [2.0]])
        >>> is_in = np.array([[True], [True], [True], [False], [False], [False]])
        >>> fit = fit_gaussians(phi, is_in, ~is_in, min_samples=3)
        >>> float(fit.mean_in[0]), float(fit.var_in[0]), float(fit.mean_out[0]), float(fit.var_out[0])
        (2.0, 1.0, 0.0, 4.0)
    """
    phi = np.asarray(phi, dtype=np.float64)
    in_mask = np.asarray(in_mask, dtype=bool)
    out_mask = np.asarray(out_mask, dtype=bool)
    if phi.ndim != 2 or in_mask.shape != phi.shape or out_mask.shape != phi.shape:
        raise ValueError(f"phi, in_mask and out_mask must all be [models, examples]; got {phi.shape}, "
                         f"{in_mask.shape}, {out_mask.shape}")
    if (in_mask & out_mask).any():
        raise ValueError("a (model, example) pair cannot be both IN (unlearned) and OUT (never trained on)")
    if not np.isfinite(phi[in_mask | out_mask]).all():
        raise ValueError("phi has NaN or infinite values where a mask is set")
    if min_samples < 2:
        raise ValueError(f"min_samples must be at least 2 (a variance needs 2 samples), got {min_samples}")
    mean_in, var_in, count_in, pooled_in = _side(phi, in_mask, min_samples, "IN")
    mean_out, var_out, count_out, pooled_out = _side(phi, out_mask, min_samples, "OUT")
    return GaussianFit(mean_in, var_in, count_in, mean_out, var_out, count_out, pooled_in, pooled_out, min_samples)


def gaussian_log_likelihood_ratio(phi: Any, mean_in: Any, var_in: Any, mean_out: Any, var_out: Any) -> np.ndarray:
    """log N(φ; μ_in, σ²_in) − log N(φ; μ_out, σ²_out), elementwise (broadcasting).

    Example:
        >>> round(float(gaussian_log_likelihood_ratio(1.0, 2.0, 1.0, 0.0, 4.0)), 4)  # −½ + ½·log 4 + ⅛
        0.3181
    """
    phi, mean_in, var_in, mean_out, var_out = (np.asarray(v, dtype=np.float64) for v in (phi, mean_in, var_in, mean_out, var_out))
    log_in = -0.5 * (np.log(2 * np.pi * var_in) + (phi - mean_in) ** 2 / var_in)
    log_out = -0.5 * (np.log(2 * np.pi * var_out) + (phi - mean_out) ** 2 / var_out)
    return log_in - log_out


def _sorted_curve(scores: np.ndarray, labels: np.ndarray):
    """Sort once; return a function weights → (fpr, tpr) ROC points, scores descending, ties grouped."""
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores = scores[order]
    positive = labels[order].astype(np.float64)
    negative = 1.0 - positive
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores) != 0), len(sorted_scores) - 1]

    def curve(weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        w = np.ones(len(order)) if weights is None else weights[order]
        tp = np.cumsum(w * positive)[ends]
        fp = np.cumsum(w * negative)[ends]
        return np.r_[0.0, fp / fp[-1]], np.r_[0.0, tp / tp[-1]]

    return curve


def _metrics_from_curve(fpr: np.ndarray, tpr: np.ndarray, zero_tpr: float, zero_tnr: float) -> dict[str, float]:
    result = {
        "accuracy": float(np.max((tpr + 1 - fpr) / 2)),
        "accuracy_at_zero": (zero_tpr + zero_tnr) / 2,
        "auc": float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2)),
    }
    for level in FPR_LEVELS:
        result[f"tpr_at_fpr_{level}"] = float(tpr[fpr <= level + 1e-12].max())
    return result


def attack_metrics(
    scores: Any,
    labels: Any,
    groups: Any = None,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Membership-attack metrics of ``scores`` (higher = "member") with bootstrap intervals.

    Args:
        scores: [m] attack scores (U-LiRA: log likelihood ratios).
        labels: [m] 1 = positive case (unlearned x), 0 = negative (never saw x).
        groups: [m] cluster ids for the bootstrap (e.g. example index); None = resample cases.
        n_bootstrap: resamples for the intervals (0 = no intervals).
        confidence: interval level.
        seed: bootstrap seed.

    Returns:
        ``{metric: {"value", "low", "high"}}`` for ``accuracy`` (balanced, best threshold),
        ``accuracy_at_zero`` (balanced, score > 0 ⇒ positive), ``auc``, ``tpr_at_fpr_0.01`` and
        ``tpr_at_fpr_0.001``; plus ``positives``, ``negatives``, ``clusters`` and ``bootstrap``.

    Raises:
        ValueError: mismatched lengths, non-finite scores, labels not in {0, 1}, or a class with no case.

    Example:
        >>> m = attack_metrics([3.0, 2.0, 1.0, 0.0], [1, 1, 0, 0], n_bootstrap=0)
        >>> m["auc"]["value"], m["accuracy"]["value"]
        (1.0, 1.0)
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.shape != scores.shape:
        raise ValueError(f"scores and labels must be 1-D of the same length, got {scores.shape} and {labels.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("attack scores must be finite")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 (negative) or 1 (positive)")
    labels = labels.astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"attack metrics need both classes; got {positives} positive and {negatives} negative cases")
    if groups is None:
        cluster = np.arange(len(scores))
    else:
        groups = np.asarray(groups)
        if groups.shape != scores.shape:
            raise ValueError(f"groups must have one id per case, got shape {groups.shape}")
        cluster = np.unique(groups, return_inverse=True)[1]
    clusters = int(cluster.max()) + 1
    curve = _sorted_curve(scores, labels)
    above = scores > 0

    def compute(weights: np.ndarray | None) -> dict[str, float] | None:
        w = np.ones(len(scores)) if weights is None else weights
        pos, neg = w[labels].sum(), w[~labels].sum()
        if pos == 0 or neg == 0:
            return None
        fpr, tpr = curve(w)
        return _metrics_from_curve(fpr, tpr, float(w[labels & above].sum() / pos), float(w[~labels & ~above].sum() / neg))

    point = compute(None)
    assert point is not None  # both classes are present (checked above), so the full sample scores
    samples: dict[str, list[float]] = {k: [] for k in point}
    rng = np.random.default_rng(seed)
    for _ in range(n_bootstrap):
        counts = np.bincount(rng.integers(0, clusters, clusters), minlength=clusters).astype(np.float64)
        value = compute(counts[cluster])
        if value is not None:
            for k, v in value.items():
                samples[k].append(v)
    tail = (1 - confidence) / 2 * 100
    result: dict[str, Any] = {}
    for k, v in point.items():
        if samples[k]:
            low, high = np.percentile(samples[k], [tail, 100 - tail])
            result[k] = {"value": v, "low": float(low), "high": float(high)}
        else:
            result[k] = {"value": v, "low": math.nan, "high": math.nan}
    result.update(positives=positives, negatives=negatives, clusters=clusters,
                  bootstrap={"resamples": n_bootstrap, "confidence": confidence, "seed": seed})
    return result


@dataclass
class ULiRAAttack:
    """U-LiRA's result: metrics with intervals, per-example vulnerability and every scored case.

    Attributes:
        metrics: see :func:`attack_metrics`.
        per_example: arrays over the examples that had at least one case: ``index`` (column of
            φ, i.e. the training index when φ covers the training set), ``cases_in``,
            ``cases_out``, ``correct_in`` / ``correct_out`` (fraction of its IN / OUT cases the
            attack gets right at LR > 0; NaN without such a case), ``accuracy`` (the mean of the
            two when both exist, else the one that does), ``mean_lr_in`` / ``mean_lr_out``
            (its mean LR over IN / OUT cases) and ``separation`` (|μ_in − μ_out| / σ from the
            Gaussians fitted on all members, see :meth:`GaussianFit.separation`; the most stable
            per-example number when each example has few target cases).
        cases: ``score``, ``label`` (1 = unlearned x), ``example``, ``member`` per case.
        fit: the Gaussians fitted on ALL members (descriptive; scoring used held-out fits).
        setting: folds or explicit split, min_samples, balancing, bootstrap unit, seed.
    """

    metrics: dict[str, Any]
    per_example: dict[str, np.ndarray]
    cases: dict[str, np.ndarray]
    fit: GaussianFit
    setting: dict[str, Any] = field(default_factory=dict)


def _splits(members: int, targets: Sequence[int] | None, shadows: Sequence[int] | None, folds: int,
            rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    everyone = np.arange(members)
    if targets is not None:
        target = np.unique(np.asarray(targets, dtype=np.int64))
        shadow = np.setdiff1d(everyone, target) if shadows is None else np.unique(np.asarray(shadows, dtype=np.int64))
        for name, chosen in (("targets", target), ("shadows", shadow)):
            if len(chosen) == 0 or chosen.min() < 0 or chosen.max() >= members:
                raise ValueError(f"{name} must be a non-empty list of member positions in [0, {members - 1}]")
        if np.intersect1d(target, shadow).size:
            raise ValueError(f"members {np.intersect1d(target, shadow).tolist()} are both shadows and targets")
        return [(shadow, target)]
    if shadows is not None:
        raise ValueError("give targets together with shadows (or neither, for cross-fitting)")
    if not 2 <= folds <= members:
        raise ValueError(f"cross-fitting needs 2 <= folds <= members ({members}), got {folds}")
    groups = np.array_split(rng.permutation(members), folds)
    return [(np.setdiff1d(everyone, group), np.sort(group)) for group in groups]


def ulira_from_statistics(
    phi: Any,
    forgot: Any,
    unseen: Any,
    *,
    targets: Sequence[int] | None = None,
    shadows: Sequence[int] | None = None,
    folds: int = DEFAULT_FOLDS,
    min_samples: int = MIN_SAMPLES,
    balance: bool = True,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    bootstrap: str = "examples",
    seed: int = 0,
) -> ULiRAAttack:
    """Run U-LiRA on precomputed statistics of K unlearned models.

    Args:
        phi: [K, n] φ of unlearned model k on example i (see :func:`~memunlearn.privacy.logit_confidence`).
        forgot: [K, n] bool, example i was in model k's forget set F_k (trained on, then unlearned).
        unseen: [K, n] bool, example i was never in model k's training set S_k.
        targets: positions (rows) of the target models; None = k-fold cross-fitting.
        shadows: rows of the shadow models when ``targets`` is given (default: all other rows).
        folds: number of cross-fitting folds when ``targets`` is None.
        min_samples: per-example variance needs this many samples on a side (else pooled).
        balance: subsample each target's larger case list to its smaller one's size.
        n_bootstrap: bootstrap resamples for the 95% intervals.
        bootstrap: ``examples`` (resample examples with all their cases) or ``models`` (target models).
        seed: seed of the fold split, the balancing and the bootstrap.

    Returns:
        A :class:`ULiRAAttack`.

    Raises:
        ValueError: inconsistent shapes or splits, no scorable case, or an unknown bootstrap unit.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> forgot = rng.random((40, 30)) < 0.3
        >>> unseen = ~forgot & (rng.random((40, 30)) < 0.5)
        >>> phi = rng.normal(size=(40, 30)) + 4 * forgot  # an unlearner that forgot nothing
        >>> ulira_from_statistics(phi, forgot, unseen, n_bootstrap=0).metrics["auc"]["value"] > 0.9
        True
    """
    phi = np.asarray(phi, dtype=np.float64)
    forgot = np.asarray(forgot, dtype=bool)
    unseen = np.asarray(unseen, dtype=bool)
    if phi.ndim != 2 or forgot.shape != phi.shape or unseen.shape != phi.shape:
        raise ValueError(f"phi, forgot and unseen must all be [models, examples]; got {phi.shape}, {forgot.shape}, {unseen.shape}")
    if bootstrap not in ("examples", "models"):
        raise ValueError(f"bootstrap must be 'examples' or 'models', got {bootstrap!r}")
    rng = np.random.default_rng(seed)
    splits = _splits(len(phi), targets, shadows, folds, rng)
    scores, labels, examples, members = [], [], [], []
    for shadow, target in splits:
        fit = fit_gaussians(phi[shadow], forgot[shadow], unseen[shadow], min_samples)
        usable = fit.scorable
        for t in target:
            case_in = np.flatnonzero(forgot[t] & usable)
            case_out = np.flatnonzero(unseen[t] & usable)
            if balance:
                size = min(len(case_in), len(case_out))
                case_in = np.sort(rng.choice(case_in, size, replace=False))
                case_out = np.sort(rng.choice(case_out, size, replace=False))
            for chosen, label in ((case_in, 1), (case_out, 0)):
                lr = gaussian_log_likelihood_ratio(phi[t, chosen], fit.mean_in[chosen], fit.var_in[chosen],
                                                   fit.mean_out[chosen], fit.var_out[chosen])
                scores.append(lr)
                labels.append(np.full(len(chosen), label, dtype=np.int8))
                examples.append(chosen)
                members.append(np.full(len(chosen), t, dtype=np.int64))
    cases = {"score": np.concatenate(scores), "label": np.concatenate(labels),
             "example": np.concatenate(examples).astype(np.int64), "member": np.concatenate(members)}
    if not (cases["label"] == 1).any() or not (cases["label"] == 0).any():
        raise ValueError(
            "U-LiRA found no scorable target case on one side: the shadows need, for the forgotten "
            "examples, at least one IN and one OUT sample each; use more members or a larger forget set"
        )
    groups = cases["example"] if bootstrap == "examples" else cases["member"]
    metrics = attack_metrics(cases["score"], cases["label"], groups, n_bootstrap=n_bootstrap, seed=seed)
    full_fit = fit_gaussians(phi, forgot, unseen, min_samples)
    setting = {
        "split": "explicit" if targets is not None else f"{folds}-fold cross-fitting",
        "targets": None if targets is None else [int(t) for t in splits[0][1]],
        "min_samples": min_samples, "variance_floor": VARIANCE_FLOOR, "balance": balance,
        "bootstrap_unit": bootstrap, "seed": seed,
    }
    return ULiRAAttack(metrics, _per_example(cases, full_fit), cases, full_fit, setting)


def _per_example(cases: dict[str, np.ndarray], fit: GaussianFit) -> dict[str, np.ndarray]:
    index = np.unique(cases["example"])
    position = np.searchsorted(index, cases["example"])
    correct = (cases["score"] > 0) == (cases["label"] == 1)
    is_in = cases["label"] == 1

    def per(values: np.ndarray, where: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        count = np.bincount(position[where], minlength=len(index))
        total = np.bincount(position[where], weights=values[where], minlength=len(index))
        with np.errstate(invalid="ignore", divide="ignore"):
            return count, np.where(count > 0, total / count, np.nan)

    cases_in, correct_in = per(correct.astype(np.float64), is_in)
    cases_out, correct_out = per(correct.astype(np.float64), ~is_in)
    _, mean_lr_in = per(cases["score"], is_in)
    _, mean_lr_out = per(cases["score"], ~is_in)
    accuracy = np.where(np.isnan(correct_in), correct_out,
                        np.where(np.isnan(correct_out), correct_in, (correct_in + correct_out) / 2))
    return {"index": index, "cases_in": cases_in, "cases_out": cases_out, "correct_in": correct_in,
            "correct_out": correct_out, "accuracy": accuracy, "mean_lr_in": mean_lr_in,
            "mean_lr_out": mean_lr_out, "separation": fit.separation()[index]}


__all__ = [
    "GaussianFit", "METRICS", "MIN_SAMPLES", "ULiRAAttack", "attack_metrics", "fit_gaussians",
    "gaussian_log_likelihood_ratio", "ulira_from_statistics",
]
