"""Choosing examples by memorization score: levels (SPEC §1) and partitions (SPEC §5).

Ties are always broken by (score, index): of two examples with the same score the one with the
smaller training index ranks lower. Examples whose score is NaN (an exact score with no
estimate) are never selected.
"""

from __future__ import annotations

from typing import Literal, Sequence, overload

import numpy as np

from ..errors import ConfigError, ForgetSetError

LEVELS = ("low", "mid", "high", "mix")
EXACT_MID_LEVEL = 0.5  # the official RUM code's mid for exact scores: on real data most exact scores are ≈ 0


def _scores_array(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ConfigError(f"memorization scores must be a 1-D array, got shape {scores.shape}")
    return scores


def rank_order(scores: np.ndarray, candidates: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``candidates`` (default: every finite score) sorted low → high by (score, index).

    Example:
        >>> rank_order(np.array([0.2, 0.1, 0.2, np.nan])).tolist()
        [1, 0, 2]
    """
    scores = _scores_array(scores)
    if candidates is None:
        candidates = np.flatnonzero(np.isfinite(scores))
    candidates = np.asarray(candidates, dtype=np.int64)
    return candidates[np.lexsort((candidates, scores[candidates]))]


def _closest(scores: np.ndarray, candidates: np.ndarray, target: float, size: int) -> np.ndarray:
    """The ``size`` candidates closest to ``target``, ties by (score, index)."""
    distance = np.abs(scores[candidates] - target)
    order = np.lexsort((candidates, scores[candidates], distance))
    return candidates[order[:size]]


@overload
def select_by_memorization(scores: Sequence[float] | np.ndarray, level: str | float, size: int, *, exact: bool = ...,
                           return_parts: Literal[False] = ...) -> np.ndarray: ...
@overload
def select_by_memorization(scores: Sequence[float] | np.ndarray, level: str | float, size: int, *, exact: bool = ...,
                           return_parts: Literal[True]) -> tuple[np.ndarray, dict[str, np.ndarray]]: ...
def select_by_memorization(
    scores: Sequence[float] | np.ndarray,
    level: str | float,
    size: int,
    *,
    exact: bool = False,
    return_parts: bool = False,
) -> np.ndarray | tuple[np.ndarray, dict[str, np.ndarray]]:
    """Pick ``size`` training examples at a memorization level (SPEC §1).

    ``high`` = the top ``size`` scores, ``low`` = the bottom ``size``, ``mid`` = the ``size``
    closest to the level 0.5 for EXACT scores (as the official RUM code: more than half the
    exact scores are ≈ 0 on real data, so a median-based mid would equal low) and closest to the
    median for proxies (no fixed scale). ``mix`` = a third of each (sizes differ by at most one:
    the remainder goes to low, then mid), chosen as high first, then low, then mid among the
    rest by the same mid rule, so the parts never overlap. A number selects the ``size``
    examples closest to that score.

    Args:
        scores: one score per training example, higher = more memorized; NaN = no score.
        level: ``low``, ``mid``, ``high``, ``mix``, or a number.
        size: how many examples to select in all.
        exact: the scores are exact Feldman–Zhang scores (``mid`` = closest to 0.5), not a proxy's.
        return_parts: also return ``{"low": ..., "mid": ..., "high": ...}`` (for ``mix`` the three
            parts; for a single level, that level's indices under its own name).

    Returns:
        The selected indices, sorted ascending (plus the parts dict with ``return_parts``).

    Raises:
        ConfigError: unknown level or a size that is not positive.
        ForgetSetError: fewer examples with a finite score than ``size``.

    Example:
        >>> select_by_memorization(np.array([0.9, 0.1, 0.5, 0.3, 0.7]), "high", 2).tolist()
        [0, 4]
        >>> idx, parts = select_by_memorization(np.arange(9.0), "mix", 3, return_parts=True)
        >>> {k: v.tolist() for k, v in parts.items()}
        {'low': [0], 'mid': [4], 'high': [8]}
        >>> select_by_memorization(np.array([0.0, 0.0, 0.0, 0.4, 0.9]), "mid", 1, exact=True).tolist()
        [3]
    """
    scores = _scores_array(scores)
    size = int(size)
    if size < 1:
        raise ConfigError(f"the number of examples to select must be at least 1, got {size}")
    finite = np.flatnonzero(np.isfinite(scores))
    if size > len(finite):
        missing = len(scores) - len(finite)
        raise ForgetSetError(
            f"{size} examples asked for but only {len(finite)} have a memorization score"
            + (f" ({missing} have none: use a larger pool)" if missing else "")
        )
    ranked = rank_order(scores, finite)
    # the same target in a mix set as on its own: 0.5, or the median of ALL finite scores
    mid_target = EXACT_MID_LEVEL if exact else float(np.median(scores[finite]))
    parts: dict[str, np.ndarray]
    if isinstance(level, str) and level not in LEVELS:
        try:
            level = float(level)
        except ValueError:
            raise ConfigError(f"unknown memorization level {level!r}; use low, mid, high, mix or a number") from None
    if level == "high":
        parts = {"high": ranked[len(ranked) - size :]}
    elif level == "low":
        parts = {"low": ranked[:size]}
    elif level == "mid":
        parts = {"mid": _closest(scores, finite, mid_target, size)}
    elif level == "mix":
        if size < 3:
            raise ConfigError(f"a mix forget set needs at least 3 examples (one per level), got {size}")
        n_low, n_mid, n_high = (size // 3 + (i < size % 3) for i in range(3))
        high = ranked[len(ranked) - n_high :]
        low = ranked[:n_low]
        rest = ranked[n_low : len(ranked) - n_high]
        mid = _closest(scores, rest, mid_target, n_mid)
        parts = {"low": np.sort(low), "mid": np.sort(mid), "high": np.sort(high)}
    else:
        parts = {"mid": _closest(scores, finite, float(level), size)}
    parts = {name: np.sort(part) for name, part in parts.items()}
    indices = np.sort(np.concatenate(list(parts.values())))
    return (indices, parts) if return_parts else indices


def partition_by_score(
    indices: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    parts: int = 3,
) -> list[np.ndarray]:
    """Split a fixed forget set into ``parts`` groups by the score within it, low → high (RUM).

    The forget examples are ranked by (score, index) and cut into ``parts`` contiguous groups whose
    sizes differ by at most one (the lower groups take the remainder): tertiles by default.

    Args:
        indices: training indices of the forget set.
        scores: one score per TRAINING example (indexed by ``indices``), higher = more memorized.
        parts: the number of partitions (RUM's K, default 3).

    Returns:
        ``parts`` arrays of training indices (each sorted ascending), lowest scores first.

    Raises:
        ConfigError: ``parts`` < 1, more parts than examples, an index outside ``scores``, or a
            forget example whose score is NaN (no exact estimate: use a larger pool).

    Example:
        >>> [p.tolist() for p in partition_by_score([5, 1, 3, 0], np.array([0.4, 0.3, 0, 0.1, 0, 0.9]))]
        [[1, 3], [0], [5]]
    """
    scores = _scores_array(scores)
    indices = np.asarray(indices, dtype=np.int64).ravel()
    if parts < 1:
        raise ConfigError(f"the number of partitions must be at least 1, got {parts}")
    if len(indices) < parts:
        raise ConfigError(f"cannot split {len(indices)} forget examples into {parts} partitions")
    if len(indices) and (indices.min() < 0 or indices.max() >= len(scores)):
        raise ConfigError(f"forget indices reach {indices.max()} but there are only {len(scores)} scores")
    unscored = indices[~np.isfinite(scores[indices])]
    if len(unscored):
        raise ConfigError(
            f"{len(unscored)} forget examples have no memorization score (e.g. index {unscored[0]}: it was in every "
            "pool subset or in none); use a larger pool or a proxy"
        )
    ranked = rank_order(scores, indices)
    return [np.sort(group) for group in np.array_split(ranked, parts)]
