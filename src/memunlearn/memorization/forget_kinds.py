"""The ``memorization`` and ``entanglement`` forget-set kinds (SPEC §1), registered on import.

- ``memorization:LEVEL[:SOURCE[:FRACTION]]``: LEVEL is low, mid, high, mix (or a number: the
  examples closest to that score); SOURCE is ``confidence`` (default), ``exact``, any proxy, or a
  .npy file of scores; FRACTION of the training set (default 0.1). ``mid`` is the examples closest
  to 0.5 for ``exact`` scores and closest to the median otherwise (a .npy file counts as a proxy:
  its scale is unknown; for exact scores saved to a file, ask for level 0.5 instead of mid).
  A ``mix`` set records its three parts in ``ForgetSet.info["partitions"]`` (RUM's partitions).
- ``entanglement:LEVEL[:GROUPS[:FRACTION]]`` (RUM's ES): the original model's penultimate
  features, sorted by distance to their global centroid and cut into GROUPS contiguous groups of
  ⌊n/GROUPS⌋ examples (default 15; the last n mod GROUPS examples, the farthest, form no group),
  as the official RUM code does (kairanzhao/RUM@f593c9d, surgical_plugins/cluster.py:159-189).
  The levels are the official groups (main_forget.py:224-226, 242-247): of 15, low = group 3,
  mid = group 12, high = group 14 (numbered from 0, nearest first); for another number G, low =
  ⌊G/5⌋, mid = ⌊4G/5⌋, high = G − 1 (the same rule). LEVEL may also be a group number
  (``entanglement:0:15`` = the group nearest the centroid, this library's earlier ``low``).
  FRACTION (of the training set) takes only that many of the group's examples, nearest the
  centroid first (the official ``n_sample``, cluster.py:193: 3000 of CIFAR-10's groups of 3333).
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
    return ForgetSet(indices, rule, seed, info=info, scores=np.asarray(scores, dtype=float))


@torch.no_grad()
def penultimate_features(model: torch.nn.Module, x: torch.Tensor, device: str = "auto", batch_size: int = 512) -> torch.Tensor:
    """``model.features(x)`` in eval mode, batched, on the CPU."""
    target = get_device(device)
    model = model.eval().to(target)
    return torch.cat([model.features(x[i : i + batch_size].to(target)).float().cpu()  # type: ignore[operator]  # our models define features()
                      for i in range(0, len(x), batch_size)])


def entanglement_groups(features: torch.Tensor | np.ndarray, groups: int = DEFAULT_GROUPS) -> list[np.ndarray]:
    """Sort examples by Euclidean distance to the features' centroid (ties by index) and cut
    into ``groups`` contiguous groups of ⌊n/groups⌋ examples, nearest first, each in that order
    (nearest first); the last n mod groups examples belong to no group (the official
    ``get_fs_dist_only``, RUM surgical_plugins/cluster.py:184-189).

    Example:
        >>> f = np.array([[0.0], [10.0], [1.0], [-0.5], [-10.0], [0.2], [30.0]])
        >>> [g.tolist() for g in entanglement_groups(f, 3)]
        [[2, 5], [0, 3], [1, 4]]
    """
    features = np.asarray(features, dtype=np.float64)
    distance = np.linalg.norm(features - features.mean(axis=0, keepdims=True), axis=1)
    order = np.lexsort((np.arange(len(distance)), distance))
    size = len(order) // groups
    return [order[k * size:(k + 1) * size] for k in range(groups)]


def entanglement_level_group(level: str, groups: int) -> int:
    """The group a level names: the official RUM groups 3/12/14 of 15 (main_forget.py:224-226),
    ⌊G/5⌋, ⌊4G/5⌋ and G − 1 in general; a number names that group.

    Example:
        >>> [entanglement_level_group(level, 15) for level in ("low", "mid", "high", "0")]
        [3, 12, 14, 0]
    """
    official = {"low": groups // 5, "mid": (4 * groups) // 5, "high": groups - 1}
    if level in official:
        return official[level]
    try:
        group = int(level)
    except ValueError:
        raise ConfigError(f"entanglement: the level must be low, mid, high or a group number 0..{groups - 1}, "
                          f"got {level!r} (e.g. entanglement:high:15)") from None
    if not 0 <= group < groups:
        raise ConfigError(f"entanglement: group {group} does not exist; the groups are 0..{groups - 1}")
    return group


def _entanglement(dataset: Dataset, argument: str, seed: int, context: ForgetContext) -> ForgetSet:
    level, _, rest = argument.partition(":")
    groups_text, _, fraction_text = rest.partition(":")
    rule = f"entanglement:{argument}"
    try:
        groups = int(groups_text) if groups_text else DEFAULT_GROUPS
    except ValueError:
        raise ConfigError(f"{rule}: the number of groups must be an integer, got {groups_text!r}") from None
    if not 2 <= groups <= len(dataset.train):
        raise ConfigError(f"{rule}: the number of groups must be between 2 and {len(dataset.train)}, got {groups}")
    if level not in ("low", "mid", "high") and not level.isdigit():
        raise ConfigError(f"{rule}: the level must be low, mid, high or a group number (e.g. entanglement:high:15)")
    try:
        chosen = entanglement_level_group(level, groups)
    except ConfigError as exc:
        raise ConfigError(f"{rule}: {str(exc).removeprefix('entanglement: ')}") from None
    fraction = _parse_fraction(fraction_text, rule) if fraction_text else None
    model, _ = context.original_model(rule)
    features = penultimate_features(model, dataset.train.x, context.device)
    group = entanglement_groups(features, groups)[chosen]
    if fraction is not None:
        size = max(1, int(round(fraction * len(dataset.train))))
        if size > len(group):
            raise ConfigError(f"{rule}: {size} examples asked of a group of {len(group)}; "
                              f"use a fraction of at most {len(group) / len(dataset.train):.4f} or fewer groups")
        group = group[:size]
    name = f"entanglement:{level}:{groups}" + (f":{fraction}" if fraction is not None else "")
    return ForgetSet(np.sort(group), name, seed,
                     info={"level": level, "groups": groups, "group": chosen, "fraction": fraction})


register_forget_kind("memorization", _memorization)
register_forget_kind("entanglement", _entanglement)
