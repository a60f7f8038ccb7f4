"""The ``memorization`` and ``entanglement`` forget-set kinds (SPEC §1), registered on import.

- ``memorization:LEVEL[:SOURCE[:FRACTION]]``: LEVEL is low, mid, high, mix (or a number: the
  examples closest to that score); SOURCE is ``confidence`` (default), ``exact``, any proxy, or a
  .npy file of scores; FRACTION of the training set (default 0.1). ``mid`` is the examples closest
  to 0.5 for ``exact`` scores and closest to the median otherwise (a .npy file counts as a proxy:
  its scale is unknown; for exact scores saved to a file, ask for level 0.5 instead of mid).
  A ``mix`` set records its three parts in ``ForgetSet.info["partitions"]`` (RUM's partitions).
- ``entanglement:LEVEL[:GROUPS]``: the original model's penultimate features, sorted by distance
  to their global centroid and cut into GROUPS contiguous groups (default 15); low = the group
  nearest the centroid, mid = group ⌊G/2⌋ (the middle one), high = the farthest group.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.core import Dataset
from ..errors import ConfigError
from ..forget import DEFAULT_FRACTION, ForgetContext, ForgetSet, register_forget_kind
from ..training import get_device

DEFAULT_SOURCE = "confidence"
DEFAULT_GROUPS = 15


def _parse_fraction(text: str, rule: str) -> float:
    try:
        fraction = float(text)
    except ValueError:
        raise ConfigError(f"{rule}: {text!r} is not a fraction") from None
    if not 0 < fraction < 1:
        raise ConfigError(f"{rule}: the fraction must be in (0, 1), got {fraction}")
    return fraction


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def parse_memorization_rule(argument: str) -> tuple[str, str, float]:
    """``LEVEL[:SOURCE[:FRACTION]]`` → (level, source, fraction).

    A source that is a file path may itself contain ':' only if a fraction follows it.

    Example:
        >>> parse_memorization_rule("mix:exact:0.05")
        ('mix', 'exact', 0.05)
        >>> parse_memorization_rule("high")
        ('high', 'confidence', 0.1)
    """
    level, _, rest = argument.partition(":")
    if not level:
        raise ConfigError("memorization: give a level, e.g. --forget memorization:high (low, mid, high, mix)")
    source, fraction = rest, DEFAULT_FRACTION
    head, sep, tail = rest.rpartition(":")
    if sep:
        source, fraction = head, _parse_fraction(tail, f"memorization:{argument}")
    elif _is_number(rest):  # memorization:high:0.05 = the default source at 5%
        source, fraction = "", _parse_fraction(rest, f"memorization:{argument}")
    return level, source or DEFAULT_SOURCE, fraction


def _memorization(dataset: Dataset, argument: str, seed: int, context: ForgetContext) -> ForgetSet:
    from . import EXACT, LEVELS, load_score_file, memorization_scores, select_by_memorization

    level, source, fraction = parse_memorization_rule(argument)
    rule = f"memorization:{level}:{source}:{fraction}"
    if level not in LEVELS:
        try:
            float(level)
        except ValueError:
            raise ConfigError(f"{rule}: unknown level {level!r}; use low, mid, high, mix or a number") from None
    n = len(dataset.train)
    if source.endswith(".npy"):
        scores = load_score_file(source, n)  # checked before the original model is trained
    else:
        from ..rum import check_score_source

        check_score_source(source)  # an unknown proxy fails here, before the original model is trained
        if int(round(fraction * n)) < 1:
            raise ConfigError(f"{rule}: a fraction of {fraction:g} selects 0 of the {n} training examples")
        model, dynamics = context.original_model(rule)
        scores = memorization_scores(source, dataset, model, dynamics, device=context.device,
                                     cache_dir=context.cache_dir, seed=seed)
    size = max(3 if level == "mix" else 1, int(round(fraction * n)))
    indices, parts = select_by_memorization(scores, level, size, exact=source == EXACT, return_parts=True)
    info = {
        "level": level, "source": source, "fraction": fraction,
        "score_mean": {name: float(np.mean(scores[part])) for name, part in parts.items()},
    }
    if level == "mix":
        info["partitions"] = {name: part.tolist() for name, part in parts.items()}
    return ForgetSet(indices, rule, seed, info=info)


@torch.no_grad()
def penultimate_features(model: torch.nn.Module, x: torch.Tensor, device: str = "auto", batch_size: int = 512) -> torch.Tensor:
    """``model.features(x)`` in eval mode, batched, on the CPU."""
    device = get_device(device)
    model = model.eval().to(device)
    return torch.cat([model.features(x[i : i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(x), batch_size)])


def entanglement_groups(features: torch.Tensor | np.ndarray, groups: int = DEFAULT_GROUPS) -> list[np.ndarray]:
    """Sort examples by Euclidean distance to the features' centroid (ties by index) and cut
    into ``groups`` contiguous groups, nearest first (sizes differ by at most one).

    Example:
        >>> f = np.array([[0.0], [10.0], [1.0], [-0.5], [-10.0], [0.2]])
        >>> [g.tolist() for g in entanglement_groups(f, 3)]
        [[0, 5], [2, 3], [1, 4]]
    """
    features = np.asarray(features, dtype=np.float64)
    distance = np.linalg.norm(features - features.mean(axis=0, keepdims=True), axis=1)
    order = np.lexsort((np.arange(len(distance)), distance))
    return [np.sort(group) for group in np.array_split(order, groups)]


def _entanglement(dataset: Dataset, argument: str, seed: int, context: ForgetContext) -> ForgetSet:
    level, _, groups_text = argument.partition(":")
    rule = f"entanglement:{argument}"
    if level not in ("low", "mid", "high"):
        raise ConfigError(f"{rule}: the level must be low, mid or high (e.g. entanglement:high:15)")
    try:
        groups = int(groups_text) if groups_text else DEFAULT_GROUPS
    except ValueError:
        raise ConfigError(f"{rule}: the number of groups must be an integer, got {groups_text!r}") from None
    if not 2 <= groups <= len(dataset.train):
        raise ConfigError(f"{rule}: the number of groups must be between 2 and {len(dataset.train)}, got {groups}")
    model, _ = context.original_model(rule)
    features = penultimate_features(model, dataset.train.x, context.device)
    cut = entanglement_groups(features, groups)
    chosen = {"low": 0, "mid": groups // 2, "high": groups - 1}[level]
    return ForgetSet(cut[chosen], f"entanglement:{level}:{groups}", seed,
                     info={"level": level, "groups": groups, "group": chosen})


register_forget_kind("memorization", _memorization)
register_forget_kind("entanglement", _entanglement)
