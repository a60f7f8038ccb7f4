"""Proxy quality against exact scores: the raw Spearman ρ (the headline), raw Pearson r and
cosine, the agreement of the low/mid/high tertiles RUM partitions by, and ρ corrected for the
measurements' noise, with the reliabilities the correction used. The exact scores' own split-half
reliability is reported beside them: a proxy cannot agree with exact scores better than two
halves of the pool agree with each other.

Example:
    >>> rows = compare_proxies(exact, half_rho, {"confidence": result}, pool_seconds)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .estimator import cosine, disattenuate, pearson, spearman, spearman_brown, tertile_agreement
from .proxies import ProxyResult
from .selection import select_by_memorization


def top_overlap(proxy_scores: np.ndarray, exact_scores: np.ndarray, fraction: float = 0.1) -> float:
    """Share of the exact top set that the proxy's own top set (same size) recovers.

    The top set is the ``fraction`` highest exact scores, but never more than the number of
    examples whose exact score is above the median: exact scores are often tied (on easy data
    most are exactly 0), and a tied block, ordered only by index, would make two rankings
    "agree" by their shared tie-breaking rather than by their scores. NaN if no exact score is
    above the median.

    Example:
        >>> top_overlap(np.array([4.0, 3, 2, 1, 0]), np.array([0.9, 0.1, 0.8, 0, 0]), fraction=0.4)
        0.5
    """
    finite = np.isfinite(exact_scores) & np.isfinite(proxy_scores)
    exact = np.where(finite, exact_scores, np.nan)
    proxy = np.where(finite, proxy_scores, np.nan)
    above_median = int((exact[finite] > np.median(exact[finite])).sum()) if finite.any() else 0
    size = min(max(1, int(round(fraction * finite.sum()))), above_median)
    if size == 0:
        return float("nan")
    chosen_exact = select_by_memorization(exact, "high", size)
    chosen_proxy = select_by_memorization(proxy, "high", size)
    return len(np.intersect1d(chosen_exact, chosen_proxy)) / size


CORRECTION = (
    "rho_corrected = rho / sqrt(exact_reliability * proxy_reliability) (Spearman's disattenuation); "
    "a proxy whose reliability was not measured (proxy_reliability null) is taken as noise-free, so its "
    "rho_corrected corrects for the exact scores' noise only"
)


def compare_proxies(
    exact_scores: np.ndarray,
    split_half: float,
    proxies: Mapping[str, ProxyResult],
    pool_seconds: float,
    top_fraction: float = 0.1,
    proxy_reliability: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Spearman ρ of each proxy against the exact scores (raw: the headline), the corrected ρ and
    the reliabilities it used, and each proxy's cost.

    The exact scores are noisy: two halves of the pool agree only at ``split_half``; the full
    pool's reliability is Spearman–Brown's 2ρ/(1+ρ). A proxy computed from one trained model is
    noisy too; its reliability (:func:`~memunlearn.memorization.estimator.retest_reliability`)
    is used where given, else the correction assumes 1 and the row says so
    (``proxy_reliability: None``). Cost is the proxy's own wall time as a fraction of the pool's
    compute time (sum of the members' wall times).

    Args:
        exact_scores: Feldman–Zhang scores (NaN = undefined, left out).
        split_half: the pool's split-half Spearman ρ.
        proxies: name → :class:`ProxyResult`.
        pool_seconds: the pool's compute time.
        top_fraction: size of the top set for :func:`top_overlap` (default 10%, the default forget size).
        proxy_reliability: name → the proxy's measured reliability, for the proxies where it is known.

    Returns:
        ``{"headline": "rho", "correction": <how rho_corrected is computed>, "split_half_reliability",
        "reliability" (the exact scores' full-pool reliability), "pool_seconds", "exact_zero_fraction",
        "top_fraction", "proxies": {name: {"rho", "pearson", "cosine", "rho_fraction_of_split_half",
        "tertile_agreement" (fraction in the same exact/proxy tertile, chance ≈ 1/3),
        "tertile_confusion" ([exact tertile][proxy tertile] counts), "rho_corrected",
        "exact_reliability", "proxy_reliability", "top_overlap", "seconds", "cost_fraction", "needs"}}}``.

    Example:
        >>> exact = np.array([0.0, 0.2, 0.5, 0.9])
        >>> result = ProxyResult("p", np.array([0.1, 0.3, 0.2, 0.8]), 1.0, "model")
        >>> row = compare_proxies(exact, 0.6, {"p": result}, 100.0)["proxies"]["p"]
        >>> round(row["rho"], 2), row["proxy_reliability"], row["cost_fraction"]
        (0.8, None, 0.01)
    """
    reliability = spearman_brown(split_half)
    measured = dict(proxy_reliability or {})
    rows = {}
    for name, result in proxies.items():
        rho = spearman(result.scores, exact_scores)
        own = measured.get(name)
        tertile = tertile_agreement(result.scores, exact_scores)
        rows[name] = {
            "rho": rho,
            "pearson": pearson(result.scores, exact_scores),
            "cosine": cosine(result.scores, exact_scores),
            "rho_fraction_of_split_half": rho / split_half if np.isfinite(split_half) and split_half > 0 else float("nan"),
            "tertile_agreement": tertile["agreement"],
            "tertile_confusion": tertile["confusion"],
            "rho_corrected": disattenuate(rho, reliability, 1.0 if own is None else own),
            "exact_reliability": reliability,
            "proxy_reliability": own,
            "top_overlap": top_overlap(result.scores, exact_scores, top_fraction),
            "seconds": result.seconds,
            "cost_fraction": result.seconds / pool_seconds if pool_seconds > 0 else float("nan"),
            "needs": result.needs,
        }
    finite = exact_scores[np.isfinite(exact_scores)]
    return {"headline": "rho", "correction": CORRECTION, "split_half_reliability": split_half,
            "reliability": reliability, "pool_seconds": pool_seconds,
            "exact_zero_fraction": float((finite == 0).mean()) if len(finite) else float("nan"),
            "top_fraction": top_fraction, "proxies": rows}
