"""RUM step 1, refinement: a forget set → partitions ordered low → high memorization (SPEC §5)."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..errors import ConfigError
from ..forget import ForgetSet
from .constants import DEFAULT_PARTS


def partition_names(parts: int) -> tuple[str, ...]:
    """Names of ``parts`` partitions, lowest score first: low/mid/high for 3, else part1..partK.

    Example:
        >>> partition_names(3), partition_names(2)
        (('low', 'mid', 'high'), ('part1', 'part2'))
    """
    if parts == 3:
        return ("low", "mid", "high")
    return tuple(f"part{k + 1}" for k in range(parts))


def refine(
    forget_set_or_indices: ForgetSet | Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray | None = None,
    parts: int = DEFAULT_PARTS,
) -> dict[str, np.ndarray]:
    """Split a forget set into RUM's partitions, ordered low → high memorization.

    A ``memorization:mix`` forget set carries its three parts in ``info["partitions"]``; they are
    used as they are (the paper's setting). Otherwise the forget examples are cut into ``parts``
    groups by ``scores`` (tertiles by default, ties by (score, index); see
    :func:`memunlearn.memorization.partition_by_score`).

    Args:
        forget_set_or_indices: a :class:`ForgetSet`, or the training indices of the forget set.
        scores: one memorization score per TRAINING example, higher = more memorized; needed
            unless the forget set carries partitions.
        parts: the number of partitions K (default 3).

    Returns:
        ``{name: sorted training indices}`` in order low → high (names from :func:`partition_names`).

    Raises:
        ConfigError: no scores and no stored partitions, stored partitions that do not split the
            forget set exactly, or a ``parts`` that does not match them; score problems (length,
            NaN scores) from ``partition_by_score``.

    Example:
        >>> {k: v.tolist() for k, v in refine([0, 2, 4], np.array([0.9, 0, 0.1, 0, 0.5])).items()}
        {'low': [2], 'mid': [4], 'high': [0]}
    """
    stored = None
    if isinstance(forget_set_or_indices, ForgetSet):
        indices = np.asarray(forget_set_or_indices.indices, dtype=np.int64)
        stored = forget_set_or_indices.info.get("partitions")
    else:
        indices = np.asarray(forget_set_or_indices, dtype=np.int64).ravel()
    if stored is not None:
        partitions = {name: np.sort(np.asarray(part, dtype=np.int64)) for name, part in stored.items()}
        if len(partitions) != parts:
            raise ConfigError(
                f"the forget set carries {len(partitions)} partitions ({', '.join(partitions)}) but {parts} were asked for"
            )
        _check_exact_split(indices, partitions)
        return partitions
    if scores is None:
        raise ConfigError("RUM needs memorization scores to refine a forget set that carries no partitions")
    from ..memorization import partition_by_score

    groups = partition_by_score(indices, np.asarray(scores, dtype=np.float64), parts)
    return dict(zip(partition_names(parts), groups))


def _check_exact_split(indices: np.ndarray, partitions: Mapping[str, np.ndarray]) -> None:
    joined = np.concatenate([np.asarray(p, dtype=np.int64) for p in partitions.values()] or [np.array([], np.int64)])
    if len(np.unique(joined)) != len(joined):
        raise ConfigError("RUM partitions overlap: an example appears in more than one partition")
    if not np.array_equal(np.sort(joined), np.sort(indices)):
        raise ConfigError(
            f"RUM partitions ({len(joined)} examples) do not make up the forget set ({len(indices)} examples)"
        )
