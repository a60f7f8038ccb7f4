"""The Feldman–Zhang subsampled memorization estimator and its reliability (SPEC §4).

Everything here is a pure function of two boolean matrices: which examples each pool model was
trained on (``masks`` [K, n]) and which examples each model classifies correctly (``correct``
[K, n]). That keeps the formulas unit-testable against hand-computed cases, apart from the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from ..errors import ConfigError


@dataclass
class MemorizationEstimate:
    """Per-example exact memorization scores and what they rest on.

    Attributes:
        scores: mem(i) = acc_in(i) − acc_out(i); NaN where ``undefined``.
        stderr: the standard error of each score (two independent binomial proportions).
        acc_in: fraction of the models trained WITH example i that classify it correctly.
        acc_out: the same over the models trained WITHOUT it.
        n_in: how many models saw example i.
        n_out: how many models did not.
        undefined: examples that were in every subset or in none (no estimate possible).
    """

    scores: np.ndarray
    stderr: np.ndarray
    acc_in: np.ndarray
    acc_out: np.ndarray
    n_in: np.ndarray
    n_out: np.ndarray
    undefined: np.ndarray

    @property
    def n_undefined(self) -> int:
        return int(self.undefined.sum())

    def summary(self) -> dict:
        finite = self.scores[~self.undefined]
        return {
            "n": int(len(self.scores)),
            "pool_size": int(self.n_in[0] + self.n_out[0]) if len(self.scores) else 0,
            "n_undefined": self.n_undefined,
            "mean": float(finite.mean()) if len(finite) else float("nan"),
            "median": float(np.median(finite)) if len(finite) else float("nan"),
            "mean_stderr": float(np.nanmean(self.stderr)) if len(finite) else float("nan"),
            "fraction_above_0.5": float((finite > 0.5).mean()) if len(finite) else float("nan"),
        }


def _check_pool_arrays(masks: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    masks = np.asarray(masks)
    correct = np.asarray(correct)
    if masks.ndim != 2 or masks.shape != correct.shape:
        raise ConfigError(
            f"subset masks and correctness must both be [K, n] boolean arrays of one shape; "
            f"got {masks.shape} and {correct.shape}"
        )
    if masks.shape[0] < 2:
        raise ConfigError(f"the memorization estimator needs a pool of at least 2 models, got {masks.shape[0]}")
    return masks.astype(bool), correct.astype(bool)


def feldman_zhang(masks: np.ndarray, correct: np.ndarray) -> MemorizationEstimate:
    """Feldman–Zhang memorization: accuracy on i of models trained with i minus without i.

    mem(i) = mean_{k: i∈S_k} 1[h_k(x_i)=y_i] − mean_{k: i∉S_k} 1[h_k(x_i)=y_i]. The standard error
    treats the two means as independent binomial proportions:
    se(i) = sqrt(a_in(1−a_in)/n_in + a_out(1−a_out)/n_out) (0 when both are 0 or 1: the plug-in
    estimate, which a larger pool refines).

    Args:
        masks: [K, n] bool, ``masks[k, i]`` = example i was in model k's training subset.
        correct: [K, n] bool, ``correct[k, i]`` = model k classifies example i correctly.

    Returns:
        A :class:`MemorizationEstimate`; examples that were in every subset or in none get NaN
        (counted in ``undefined``) instead of an error.

    Raises:
        ConfigError: the arrays are not [K, n] of one shape, or K < 2.

    Example:
        >>> masks = np.array([[1, 0], [1, 1], [0, 1], [0, 0]], bool)
        >>> correct = np.array([[1, 1], [1, 1], [0, 1], [0, 1]], bool)
        >>> feldman_zhang(masks, correct).scores.tolist()
        [1.0, 0.0]
    """
    masks, correct = _check_pool_arrays(masks, correct)
    n_in = masks.sum(axis=0)
    n_out = masks.shape[0] - n_in
    hits_in = (correct & masks).sum(axis=0)
    hits_out = (correct & ~masks).sum(axis=0)
    undefined = (n_in == 0) | (n_out == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc_in = np.where(n_in > 0, hits_in / np.maximum(n_in, 1), np.nan)
        acc_out = np.where(n_out > 0, hits_out / np.maximum(n_out, 1), np.nan)
        scores = acc_in - acc_out
        stderr = np.sqrt(acc_in * (1 - acc_in) / n_in + acc_out * (1 - acc_out) / n_out)
    scores[undefined] = np.nan
    stderr[undefined] = np.nan
    return MemorizationEstimate(scores, stderr, acc_in, acc_out, n_in, n_out, undefined)


def _finite_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The entries where both arrays are finite, or None when they cannot be correlated (fewer than
    3, or one side constant). Raises ConfigError for arrays of different lengths."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ConfigError(f"cannot correlate arrays of lengths {len(a)} and {len(b)}")
    keep = np.isfinite(a) & np.isfinite(b)
    if keep.sum() < 3 or np.ptp(a[keep]) == 0 or np.ptp(b[keep]) == 0:
        return None
    return a[keep], b[keep]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman ρ over the examples where both arrays are finite (NaN if fewer than 3).

    Example:
        >>> spearman(np.array([1.0, 2.0, 3.0, np.nan]), np.array([10.0, 30.0, 20.0, 5.0]))
        0.5
    """
    pairs = _finite_pairs(a, b)
    return float("nan") if pairs is None else float(spearmanr(*pairs).statistic)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r over the examples where both arrays are finite (NaN if fewer than 3 or constant).

    Example:
        >>> pearson(np.array([1.0, 2.0, 3.0, np.nan]), np.array([2.0, 4.0, 6.0, 0.0]))
        1.0
    """
    pairs = _finite_pairs(a, b)
    return float("nan") if pairs is None else float(np.clip(np.corrcoef(*pairs)[0, 1], -1.0, 1.0))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of the raw score vectors over the examples where both are finite (NaN if
    either is all zeros there). Not centred: it depends on where each score has its zero, which is
    how Ravikumar et al. report CSL's agreement with exact scores.

    Example:
        >>> round(cosine(np.array([1.0, 0.0, np.nan]), np.array([1.0, 1.0, 5.0])), 4)
        0.7071
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ConfigError(f"cannot compare arrays of lengths {len(a)} and {len(b)}")
    keep = np.isfinite(a) & np.isfinite(b)
    norm = np.linalg.norm(a[keep]) * np.linalg.norm(b[keep])
    if not keep.any() or norm == 0:
        return float("nan")
    return float(a[keep] @ b[keep] / norm)


def tertiles(scores: np.ndarray) -> np.ndarray:
    """Each example's tertile of ``scores``: 0 (low), 1 (mid), 2 (high); −1 where not finite.

    Examples are ranked with ties sharing their average rank, and cut at the thirds of the
    ranks, so tied scores always land in the same tertile (exact scores are often tied at 0;
    breaking those ties by index would make two rankings agree by accident).

    Example:
        >>> tertiles(np.array([0.0, 0.0, 0.0, 0.5, 0.9, 0.7, np.nan])).tolist()
        [0, 0, 0, 1, 2, 2, -1]
    """
    from scipy.stats import rankdata

    scores = np.asarray(scores, dtype=float)
    out = np.full(len(scores), -1, dtype=np.int64)
    keep = np.isfinite(scores)
    if keep.any():
        fraction = (rankdata(scores[keep], method="average") - 0.5) / keep.sum()  # in (0, 1)
        out[keep] = np.minimum((fraction * 3).astype(np.int64), 2)
    return out


def tertile_agreement(proxy_scores: np.ndarray, exact_scores: np.ndarray) -> dict:
    """How often a proxy puts an example in the same low/mid/high tertile as the exact scores
    (RUM's partitions), over the examples where both are finite.

    Returns:
        ``{"agreement": fraction in the same tertile (chance ≈ 1/3), "confusion": 3×3 counts
        [exact tertile][proxy tertile], "n": examples compared}``; agreement NaN when none.

    Example:
        >>> tertile_agreement(np.array([1.0, 2, 3, 4, 5, 6]), np.array([1.0, 2, 3, 4, 6, 5]))["agreement"]
        1.0
    """
    proxy_scores, exact_scores = np.asarray(proxy_scores, dtype=float), np.asarray(exact_scores, dtype=float)
    if proxy_scores.shape != exact_scores.shape:
        raise ConfigError(f"cannot compare arrays of lengths {len(proxy_scores)} and {len(exact_scores)}")
    keep = np.isfinite(proxy_scores) & np.isfinite(exact_scores)
    exact_t, proxy_t = tertiles(exact_scores[keep]), tertiles(proxy_scores[keep])
    confusion = np.zeros((3, 3), dtype=np.int64)
    np.add.at(confusion, (exact_t, proxy_t), 1)
    n = int(keep.sum())
    return {"agreement": float(np.trace(confusion) / n) if n else float("nan"), "confusion": confusion.tolist(), "n": n}


def split_half_reliability(masks: np.ndarray, correct: np.ndarray) -> float:
    """Spearman ρ between the scores of two halves of the pool (models 0,2,4,… vs 1,3,5,…).

    Alternating halves rather than first/second half keeps a pool that is still growing (or was
    built in two sessions) balanced. Examples undefined in either half are left out.

    Args:
        masks: [K, n] subset masks, K ≥ 4.
        correct: [K, n] correctness.

    Returns:
        ρ between the two half-pool estimates: the reliability of a K/2-model estimate.

    Raises:
        ConfigError: K < 4 or mismatched shapes.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> masks = rng.random((40, 50)) < 0.5
        >>> hard = np.arange(50) >= 25  # the last 25 examples are only right when trained on
        >>> correct = ~hard | masks
        >>> split_half_reliability(masks, correct) > 0.5
        True
    """
    masks, correct = _check_pool_arrays(masks, correct)
    if masks.shape[0] < 4:
        raise ConfigError(f"split-half reliability needs a pool of at least 4 models, got {masks.shape[0]}")
    first = feldman_zhang(masks[0::2], correct[0::2]).scores
    second = feldman_zhang(masks[1::2], correct[1::2]).scores
    return spearman(first, second)


def spearman_brown(half_reliability: float, factor: float = 2.0) -> float:
    """Reliability of a measurement ``factor`` times longer: r' = f·r / (1 + (f−1)·r).

    The split-half ρ describes a K/2-model estimate; the full pool's reliability is
    ``spearman_brown(ρ_half)`` (factor 2).

    Example:
        >>> round(spearman_brown(0.5), 4)
        0.6667
    """
    if not np.isfinite(half_reliability):
        return float("nan")
    return float(factor * half_reliability / (1 + (factor - 1) * half_reliability))


def retest_reliability(first: np.ndarray, second: np.ndarray) -> float:
    """A proxy's reliability: Spearman ρ between two independent computations of it (e.g. from two
    original models trained with different seeds). Feed it to :func:`disattenuate`.

    Example:
        >>> round(retest_reliability(np.array([0.1, 0.5, 0.3, 0.9]), np.array([0.2, 0.4, 0.1, 0.8])), 4)
        0.8
    """
    return spearman(first, second)


def disattenuate(rho: float, exact_reliability: float, proxy_reliability: float) -> float:
    """Correct a correlation for the noise of both measurements (Spearman's correction).

    ρ_corrected = ρ / sqrt(exact_reliability · proxy_reliability). The exact scores' reliability is
    the full pool's (Spearman–Brown of the split-half ρ); the proxy's is its retest reliability
    (:func:`retest_reliability`). Passing ``proxy_reliability=1`` corrects for the exact scores'
    noise only: a proxy computed from one trained model is NOT noise-free (another training seed
    gives other scores), so say so wherever such a value is shown. The value is not clipped, so
    noise in either estimate can push it above 1; NaN when a reliability is not positive.

    Example:
        >>> round(disattenuate(0.4, 0.64, 1.0), 4)
        0.5
        >>> round(disattenuate(0.4, 0.64, 0.25), 4)
        1.0
    """
    denominator = exact_reliability * proxy_reliability
    if not np.isfinite(rho) or not np.isfinite(denominator) or exact_reliability <= 0 or proxy_reliability <= 0:
        return float("nan")
    return float(rho / np.sqrt(denominator))
