"""The NeurIPS 2023 machine-unlearning challenge's score, as its official code computes it.

Source: google-deepmind/unlearning_evaluation, ``metric.py`` (``_get_epsilons``,
``_get_double_threshold_rates``, ``_get_single_threshold_rates``,
``compute_forget_score_from_confs``) and ``main.py`` (the utility adjustment), commit
ffae0fff4c3e9523b22618c47df6c26e4eebe0df ("Open-sourcing A: unlearning competition evaluation code").

What the official code does, per forget example z, given φ of N unlearned and N retrained models:

1. The "positive" sample is whichever of the two has the larger MEDIAN φ (ties: the unlearned).
2. If the narrower sample's range (max − min) is below 1% of the wider one's, ε = 50 at once
   (a very peaky unlearned distribution is taken as a failure).
3. Otherwise two families of attacks are enumerated on a grid of 100 thresholds per unit of φ:
   - single thresholds t from min to max of both samples (``ceil(range·100)`` of them):
     predict positive when φ ≥ t;
   - intervals [l, r] (predict "the peakier sample", i.e. the one with the smaller range, when
     l ≤ φ ≤ r): r on a grid from min+w−2 to max+2 of the peakier sample (w = its range; about
     400 points), and for each r, 400 values of l from r−w−2 to r−w+2.
4. For each attack, with FPR, FNR as float32 fractions of the N models:
   FPR = FNR = 0 ⇒ ε = ∞ (perfect separation); exactly one of them 0 ⇒ the attack is discarded
   ("insufficient samples"); otherwise
   ε = max(0, log(1 − δ − FPR) − log FNR, log(1 − δ − FNR) − log FPR), δ = 1e-5, in float32
   (an attack where both terms are NaN, e.g. FPR = 1, is discarded too).
   The example's ε is the largest over the attacks, clipped to [0, 50].
5. Points H = 2^−⌊ε/0.5⌋ if ε < ⌈ln(N − 1)⌉, else 0 (bins of width 0.5; with N = 512,
   ⌈ln 511⌉ = 7, so 14 bins worth 1, ½, …, 2⁻¹³). F = mean of H over the forget set.
6. Final score = F · (mean retain acc of the unlearned models / that of the retrained ones)
                   · (mean test acc of the unlearned / that of the retrained).

Where this module and SPEC §6 differ from each other or from the literal official code:

- SPEC says "0 beyond ⌈ln(N−1)⌉ bins"; the official cut-off is ε ≥ ⌈ln(N−1)⌉, i.e. after
  2·⌈ln(N−1)⌉ bins of width 0.5. The official code wins here.
- SPEC does not mention steps 1–2, the discarded one-sided-zero attacks, the interval family,
  the 0.01 grid or the float32 rates; all are done as the official code does them.
- The official code stops with ``assert thr_eps`` when every attack was discarded; on a numpy
  array of more than one element that assert itself raises ValueError, so the published file
  cannot run as-is (it also needs CUDA: every tensor is moved with ``.cuda()``). Here the intent
  is kept: an example whose every attack is discarded raises ValueError naming it.
- Single thresholds come from ``torch.linspace`` there and from ``numpy.linspace`` here: the grid
  points can differ in the last bit, which changes a rate only for a φ lying exactly on a grid point.
- The official φ is :func:`~memunlearn.privacy.official_logit_confidence` (saturates near 103.6);
  the driver uses it by default.
- Rates are computed by counting (sorted samples, searchsorted) and ε by a table over the
  (N+1)² possible (true-positive, false-positive) counts, instead of the official dense
  [models × thresholds] comparisons: the same numbers, in milliseconds per example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
INTERVAL_BUFFER = 2.0  # official `buffer`
LEFT_THRESHOLDS = int(np.ceil(2 * INTERVAL_BUFFER * THRESHOLDS_PER_UNIT))
PEAKY_RATIO = 0.01
BIN_WIDTH = 0.5


def epsilon_table(n_models: int, delta: float = DELTA) -> np.ndarray:
    """ε of an attack by its counts: [k, j] for k of N positives and j of N negatives predicted positive.

    NaN marks an attack the official code discards; ∞ a perfect separation (k = N, j = 0).
    Arithmetic is float32 as in the official code (its rates are float32 means of 0/1 tensors).

    Example:
        >>> t = epsilon_table(4)
        >>> round(float(t[3, 1]), 4), bool(np.isnan(t[4, 1])), float(t[4, 0])  # log(0.75−δ) − log 0.25
        (1.0986, True, inf)
    """
    counts = np.arange(n_models + 1, dtype=np.float32)
    n = np.float32(n_models)
    tpr = (counts / n)[:, None] * np.ones((1, n_models + 1), dtype=np.float32)
    fnr = ((n - counts) / n)[:, None] * np.ones((1, n_models + 1), dtype=np.float32)
    fpr = (counts / n)[None, :] * np.ones((n_models + 1, 1), dtype=np.float32)
    tnr = ((n - counts) / n)[None, :] * np.ones((n_models + 1, 1), dtype=np.float32)
    keep = np.float32(1 - delta)  # official: `1 - delta - fpr`, a Python float against float32
    with np.errstate(all="ignore"):
        first = np.log(keep - fpr) - np.log(fnr)
        second = np.log(keep - fnr) - np.log(fpr)
        value = np.clip(np.fmax(first, second), 0, None)
    perfect = (fpr + fnr == 0) & (tpr + tnr == 2)
    one_sided = fpr * fnr == 0
    return np.where(perfect, np.float32(np.inf), np.where(one_sided, np.float32(np.nan), value)).astype(np.float32)


def _count_at_least(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return len(sorted_values) - np.searchsorted(sorted_values, thresholds, side="left")


def _single_threshold_counts(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    both = np.concatenate([positive, negative])
    low, high = both.min(), both.max()
    thresholds = np.linspace(low, high, int(np.ceil((high - low) * THRESHOLDS_PER_UNIT)))
    return _count_at_least(np.sort(positive), thresholds), _count_at_least(np.sort(negative), thresholds)


def _interval_counts(positive: np.ndarray, negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pos_range = positive.max() - positive.min()
    neg_range = negative.max() - negative.min()
    width = neg_range if pos_range > neg_range else pos_range
    peaky, other = (negative, positive) if pos_range >= neg_range else (positive, negative)
    low = peaky.min() + width - INTERVAL_BUFFER
    high = peaky.max() + INTERVAL_BUFFER
    right = np.linspace(low, high, num=int(np.ceil((high - low) * THRESHOLDS_PER_UNIT)))
    left = np.linspace(right - width - INTERVAL_BUFFER, right - width + INTERVAL_BUFFER, num=LEFT_THRESHOLDS, axis=1)

    def inside(values: np.ndarray) -> np.ndarray:
        ordered = np.sort(values)
        at_most_right = np.searchsorted(ordered, right, side="right")[:, None]
        below_left = np.searchsorted(ordered, left, side="left")
        return np.maximum(at_most_right - below_left, 0).ravel()

    return inside(peaky), inside(other)


def example_epsilon(positive: Any, negative: Any, delta: float = DELTA, table: np.ndarray | None = None) -> float:
    """The official per-example ε between two samples of φ (the official ``_get_epsilons`` body).

    Args:
        positive: [N] φ of the sample with the larger median (the official "pos_confs").
        negative: [N] φ of the other sample.
        delta: δ of the (ε, δ) bound.
        table: :func:`epsilon_table` for N, to reuse across examples.

    Returns:
        ε in [0, 50].

    Raises:
        ValueError: samples of different sizes, fewer than 2 models, non-finite values, or every
            attack discarded (the official code's failed assert).

    Example:
        >>> round(example_epsilon([2.5, 3.5, 4.5, 5.5], [0.0, 1.0, 2.0, 3.0]), 4)  # best: FPR = FNR = ¼
        1.0986
    """
    positive = np.asarray(positive, dtype=np.float64).ravel()
    negative = np.asarray(negative, dtype=np.float64).ravel()
    if positive.shape != negative.shape or len(positive) < 2:
        raise ValueError(f"need two samples of the same size (at least 2 models), got {positive.shape} and {negative.shape}")
    if not (np.isfinite(positive).all() and np.isfinite(negative).all()):
        raise ValueError("φ samples must be finite")
    n = len(positive)
    table = epsilon_table(n, delta) if table is None else table
    pos_range = positive.max() - positive.min()
    neg_range = negative.max() - negative.min()
    largest = pos_range if pos_range > neg_range else neg_range
    smallest = neg_range if pos_range > neg_range else pos_range
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.float64(smallest) / np.float64(largest)  # 0/0 = NaN: not below 1%, as in the official code
    if ratio < PEAKY_RATIO:
        return EPSILON_CAP
    hits = np.zeros((n + 1) * (n + 1), dtype=bool)
    for tp, fp in (_interval_counts(positive, negative), _single_threshold_counts(positive, negative)):
        hits[tp * (n + 1) + fp] = True
    values = table.ravel()[hits]
    values = values[~np.isnan(values)]
    if values.size == 0:
        raise ValueError("every attack was discarded (FPR or FNR is 0 for each threshold); "
                         "the official code stops here too (its `assert thr_eps`)")
    return float(np.clip(values.max(), 0, EPSILON_CAP))


def challenge_points(epsilons: Any, n_models: int) -> np.ndarray:
    """H per example: 2^−⌊ε/0.5⌋ for ε < ⌈ln(N − 1)⌉, else 0 (the official bucket loop).

    Example:
        >>> challenge_points([0.0, 0.49, 0.5, 6.99, 7.0], n_models=512).tolist() == [1, 1, 0.5, 2**-13, 0]
        True
    """
    if n_models < 2:
        raise ValueError(f"the challenge score needs at least 2 models per side, got {n_models}")
    eps = np.asarray(epsilons, dtype=np.float64)
    max_epsilon = math.ceil(math.log(n_models - 1))
    bins = np.floor(eps / BIN_WIDTH)
    return np.where(eps < max_epsilon, BIN_WIDTH ** np.minimum(bins, 2 * max_epsilon), 0.0)


@dataclass
class ChallengeForgetScore:
    """F and its per-example parts.

    Attributes:
        score: F = mean of ``points``.
        epsilons: [n] per-example ε in [0, 50].
        points: [n] per-example H.
        retrained_is_positive: [n] which sample had the larger median.
        n_models: N.
        max_epsilon: ⌈ln(N − 1)⌉; ε at or above it scores 0.
    """

    score: float
    epsilons: np.ndarray
    points: np.ndarray
    retrained_is_positive: np.ndarray
    n_models: int
    max_epsilon: int


def challenge_forget_score(unlearned: Any, retrained: Any, delta: float = DELTA) -> ChallengeForgetScore:
    """F of the challenge from φ of N unlearned and N retrained models on the forget set.

    Args:
        unlearned: [N, n] φ of each unlearned model on each forget example.
        retrained: [N, n] φ of each retrained model on each forget example.
        delta: δ (the challenge's 1e-5).

    Returns:
        A :class:`ChallengeForgetScore`.

    Raises:
        ValueError: shapes that differ or are not 2-D, N < 2, non-finite φ, or an example whose
            every attack is discarded.

    Example:
        >>> r = challenge_forget_score([[0.0], [1.0], [2.0], [3.0]], [[0.0], [1.0], [2.0], [3.0]])
        >>> r.score, float(r.epsilons[0])  # identical samples: no attack beats chance
        (1.0, 0.0)
    """
    unlearned = np.asarray(unlearned, dtype=np.float64)
    retrained = np.asarray(retrained, dtype=np.float64)
    if unlearned.ndim != 2 or unlearned.shape != retrained.shape:
        raise ValueError(f"unlearned and retrained φ must both be [models, examples] of one shape, "
                         f"got {unlearned.shape} and {retrained.shape}")
    n_models, n_examples = unlearned.shape
    if n_models < 2 or n_examples == 0:
        raise ValueError(f"need at least 2 models and 1 example, got {n_models} models and {n_examples} examples")
    retrained_is_positive = np.median(retrained, axis=0) > np.median(unlearned, axis=0)
    positive = np.where(retrained_is_positive, retrained, unlearned)
    negative = np.where(retrained_is_positive, unlearned, retrained)
    table = epsilon_table(n_models, delta)
    epsilons = np.empty(n_examples)
    for i in range(n_examples):
        try:
            epsilons[i] = example_epsilon(positive[:, i], negative[:, i], delta, table)
        except ValueError as exc:
            raise ValueError(f"forget example {i}: {exc}") from None
    points = challenge_points(epsilons, n_models)
    return ChallengeForgetScore(float(points.sum() / n_examples), epsilons, points, retrained_is_positive,
                                n_models, math.ceil(math.log(n_models - 1)))


def challenge_final_score(
    forget_score: float,
    unlearned_retain_accuracy: Any,
    retrained_retain_accuracy: Any,
    unlearned_test_accuracy: Any,
    retrained_test_accuracy: Any,
) -> float:
    """F · (retain acc_U / retain acc_R) · (test acc_U / test acc_R); accuracies are averaged over models.

    Each accuracy may be one number or one per model (the official code averages per side).

    Example:
        >>> challenge_final_score(0.5, [0.9, 0.7], 1.0, 0.8, [0.8, 0.8])
        0.4
    """
    def mean(values: Any) -> float:
        return float(np.mean(np.asarray(values, dtype=np.float64)))

    return (forget_score * (mean(unlearned_retain_accuracy) / mean(retrained_retain_accuracy))
            * (mean(unlearned_test_accuracy) / mean(retrained_test_accuracy)))


__all__ = [
    "DELTA", "EPSILON_CAP", "ChallengeForgetScore", "challenge_final_score", "challenge_forget_score",
    "challenge_points", "epsilon_table", "example_epsilon",
]
