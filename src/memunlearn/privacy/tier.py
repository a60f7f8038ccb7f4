"""The cheap per-example attack tier (SPEC §6): RMIA and offline LiRA from reference models' logits.

Pure numpy. The drivers in :mod:`.tier_drivers` pick the reference models (pool members that
never trained on an example, or retrains without the forget set) and the examples to score.

RMIA (Zarifzadeh, Liu, Shokri, "Low-cost high-power membership inference attacks", ICML 2024),
offline, as the official code computes it (privacytrustlab/ml_privacy_meter, ``run_rmia`` and
``tune_offline_a`` in its attacks module):

- Pr(x|θ) = softmax(z/T)_y, the true-label probability (temperature T, default 1);
- Pr(x) = (1+a)/2 · mean over OUT reference models of Pr(x|θ_ref) + (1−a)/2 (the offline
  correction: only models that did not train on x are available, and a linear map of their mean
  approximates the IN/OUT average);
- LR(x) = Pr(x|θ)/Pr(x), likewise LR(z) for population samples z (never trained on by anyone);
- score(x) = fraction of population samples z with LR(x)/LR(z) > γ. The official code compares
  with 1.0; SPEC fixes γ = 2 (the paper's value for the offline attack) as the default; both are
  ``gamma=``.
- ``a`` is fitted as the official ``tune_offline_a`` does: one reference model is attacked as if
  it were the target, with 1 other reference model, for a ∈ {0, 0.1, …, 1}; the a with the
  highest AUC (the first on ties) is kept.

Offline LiRA (Carlini et al. 2022), as the official plot script's ``generate_ours_offline`` with
``fix_variance=True``: per example, its first ``out_size`` OUT statistics (out_size = the smallest
OUT count over the scored examples), their median μ_out(x), ONE standard deviation σ of all those
values together (the fixed, global variance), and score(x) = −log N(φ(θ, x); μ_out(x), σ + 1e-30):
a model far from what never-trained models do, in either direction, looks like a member.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_GAMMA = 2.0
OFFICIAL_GAMMA = 1.0  # ml_privacy_meter's run_rmia: ``ratios > 1.0``
DEFAULT_TEMPERATURE = 1.0
DEFAULT_REFERENCES = 4
OFFLINE_A_GRID = tuple(np.round(np.arange(0, 1.1, 0.1), 1).tolist())  # tune_offline_a's np.arange(0, 1.1, 0.1)
LIRA_STD_GUARD = 1e-30


def true_class_probability(logits: Any, labels: Any, temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """softmax(z / T)_y in float64, over the last axis (logits [..., n, C], labels [n]).

    Example:
        >>> round(float(true_class_probability([[0.0, np.log(3.0)]], [1])[0]), 4)
        0.75
    """
    z = np.asarray(logits, dtype=np.float64) / float(temperature)
    y = np.asarray(labels, dtype=np.int64)
    if z.shape[-2:-1] != y.shape:
        raise ValueError(f"logits {z.shape} and labels {y.shape} do not match")
    z = z - z.max(axis=-1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=-1))
    true = np.take_along_axis(z, np.broadcast_to(y[:, None], z.shape[:-1] + (1,)), axis=-1)[..., 0]
    return np.exp(true - log_norm)


def rmia_likelihood_ratio(target: Any, references: Any, a: float) -> np.ndarray:
    """LR = Pr(x|θ) / Pr(x) with Pr(x) = (1+a)/2 · mean_ref Pr(x|θ_ref) + (1−a)/2.

    Args:
        target: [n] Pr(x|θ) of the target model.
        references: [R, n] Pr(x|θ_ref) of OUT reference models (NaN = not a reference for x).
        a: the offline parameter in [0, 1] (a = 1: Pr(x) is the OUT models' mean itself).

    Example:
        >>> float(rmia_likelihood_ratio([0.8], [[0.4], [0.6]], a=1.0)[0])  # 0.8 / 0.5
        1.6
    """
    target = np.asarray(target, dtype=np.float64)
    references = np.asarray(references, dtype=np.float64)
    if references.ndim != 2 or references.shape[1] != target.shape[0]:
        raise ValueError(f"references must be [models, {target.shape[0]}], got {references.shape}")
    if not 0 <= a <= 1:
        raise ValueError(f"the offline parameter a must be in [0, 1], got {a}")
    import warnings

    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column is reported just below
        mean_out = np.nanmean(references, axis=0)
    if np.isnan(mean_out).any():
        raise ValueError("an example has no reference model that never trained on it")
    return target / ((1 + a) / 2 * mean_out + (1 - a) / 2)


def rmia_scores_from_ratios(ratio_x: Any, ratio_z: Any, gamma: float = DEFAULT_GAMMA) -> np.ndarray:
    """score(x) = fraction of population samples z with LR(x) / LR(z) > γ.

    Computed by sorting (LR(z) > 0 always, so LR(x)/LR(z) > γ ⟺ LR(z) < LR(x)/γ), which equals the
    official pairwise ``np.average(ratio_x[:, None] / ratio_z > gamma, axis=1)``.

    Example:
        >>> rmia_scores_from_ratios([4.0, 1.0], [1.0, 1.5, 3.0], gamma=2.0).tolist()  # 4/1, 4/1.5 > 2
        [0.6666666666666666, 0.0]
    """
    ratio_x = np.asarray(ratio_x, dtype=np.float64)
    ratio_z = np.sort(np.asarray(ratio_z, dtype=np.float64))
    if ratio_z.size == 0:
        raise ValueError("RMIA needs at least one population sample z")
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    return np.searchsorted(ratio_z, ratio_x / gamma, side="left") / ratio_z.size


def rmia_offline(target_x: Any, references_x: Any, target_z: Any, references_z: Any, a: float,
                 gamma: float = DEFAULT_GAMMA) -> np.ndarray:
    """RMIA scores of examples x against population samples z (higher = member).

    Args:
        target_x, target_z: [n], [m] Pr(·|θ) of the target on x and on z.
        references_x, references_z: [R, n], [R', m] Pr(·|θ_ref) of OUT references (NaN = none).
        a: offline parameter; gamma: the pairwise threshold γ.

    Example:
        >>> rmia_offline([0.9, 0.2], [[0.3, 0.3]], [0.3, 0.3], [[0.3, 0.3]], a=1.0).tolist()
        [1.0, 0.0]
    """
    ratio_x = rmia_likelihood_ratio(target_x, references_x, a)
    ratio_z = rmia_likelihood_ratio(target_z, references_z, a)
    return rmia_scores_from_ratios(ratio_x, ratio_z, gamma)


def auc(scores_positive: Any, scores_negative: Any) -> float:
    """ROC AUC of positives vs negatives (ties count one half): the Mann–Whitney statistic.

    Example:
        >>> auc([3.0, 2.0], [2.0, 0.0])
        0.875
    """
    from scipy.stats import rankdata

    pos = np.asarray(scores_positive, dtype=np.float64)
    neg = np.asarray(scores_negative, dtype=np.float64)
    if not len(pos) or not len(neg):
        raise ValueError("AUC needs at least one positive and one negative")
    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def fit_offline_a(target_in: Any, references_in: Any, target_out: Any, references_out: Any, target_z: Any,
                  references_z: Any, gamma: float = DEFAULT_GAMMA,
                  grid: tuple[float, ...] = OFFLINE_A_GRID) -> tuple[float, dict[float, float]]:
    """The offline ``a`` with the best AUC when a reference model is attacked as the target
    (official ``tune_offline_a``): its members (IN) against its non-members (OUT).

    Returns:
        (a, {a: AUC for every a tried}); the first a of the grid wins a tie (strict ``>``).

    Example:
        >>> ref = [[0.5, 0.5, 0.5, 0.5]]
        >>> a, aucs = fit_offline_a([0.9, 0.8], [[0.5, 0.5]], [0.4, 0.5], [[0.5, 0.5]], [0.5, 0.4, 0.6, 0.5], ref,
        ...                         gamma=1.0)
        >>> a, aucs[0.0]
        (0.0, 1.0)
    """
    best, best_auc, tried = float(grid[0]), -1.0, {}
    for a in grid:
        value = auc(rmia_offline(target_in, references_in, target_z, references_z, a, gamma),
                    rmia_offline(target_out, references_out, target_z, references_z, a, gamma))
        tried[float(a)] = value
        if value > best_auc:
            best, best_auc = float(a), value
    return best, tried


def lira_offline(target: Any, references: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Offline LiRA with a fixed (global) variance: −log N(φ(x); median_out(x), σ + 1e-30).

    Args:
        target: [n] φ (logit-scaled confidence) of the target model on n examples.
        references: [R, n] φ of reference models; NaN where the model trained on the example
            (only OUT values are used). Per example its first ``out_size`` OUT values are kept,
            out_size = the smallest OUT count over the n examples (official ``generate_ours_offline``).

    Returns:
        (scores [n], higher = member; {"out_size", "std"}).

    Raises:
        ValueError: an example without any OUT value.

    Example:
        >>> s, fit = lira_offline([0.0, 3.0], [[0.0, 0.0], [2.0, 2.0]])
        >>> fit["out_size"], fit["std"], bool(s[1] > s[0])
        (2, 1.0, True)
    """
    target = np.asarray(target, dtype=np.float64)
    references = np.asarray(references, dtype=np.float64)
    if references.ndim != 2 or references.shape[1] != target.shape[0]:
        raise ValueError(f"references must be [models, {target.shape[0]}], got {references.shape}")
    out = ~np.isnan(references)
    counts = out.sum(axis=0)
    if len(counts) == 0 or counts.min() < 1:
        raise ValueError("offline LiRA needs, for every example, at least one reference model that never trained on it")
    out_size = int(counts.min())
    # the first out_size OUT values of each example, in model order
    order = np.argsort(~out, axis=0, kind="stable")[:out_size]
    values = np.take_along_axis(references, order, axis=0)  # [out_size, n]
    median = np.median(values, axis=0)
    std = float(np.std(values))
    scale = std + LIRA_STD_GUARD
    logpdf = -0.5 * np.log(2 * np.pi * scale**2) - 0.5 * ((target - median) / scale) ** 2
    return -logpdf, {"out_size": out_size, "std": std}


__all__ = [
    "DEFAULT_GAMMA", "DEFAULT_REFERENCES", "DEFAULT_TEMPERATURE", "OFFICIAL_GAMMA", "OFFLINE_A_GRID", "auc",
    "fit_offline_a", "lira_offline", "rmia_likelihood_ratio", "rmia_offline", "rmia_scores_from_ratios",
    "true_class_probability",
]
