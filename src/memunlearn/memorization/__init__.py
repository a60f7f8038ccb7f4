"""Memorization: the model pool, exact Feldman–Zhang scores, proxies and score-based selection.

The one call most users need is :func:`memorization_scores`: one score per training example,
higher = more memorized, either exact (from a cached, resumable pool of models trained on random
subsets) or from a cheap proxy. :func:`select_by_memorization` turns scores into forget sets
(SPEC §1) and :func:`partition_by_score` splits a forget set into RUM's partitions (SPEC §5).

Example:
    >>> from memunlearn import load_dataset  # doctest: +SKIP
    >>> scores = memorization_scores("confidence", data, model, dynamics)  # doctest: +SKIP
    >>> forget = select_by_memorization(scores, "high", size=100)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from torch import nn

from ..data.core import Dataset
from ..errors import ConfigError
from ..training import TrainConfig, TrainingDynamics
from .estimator import (
    MemorizationEstimate, disattenuate, feldman_zhang, spearman, spearman_brown, split_half_reliability,
)
from .executors import available_executors, get_executor
from .pool import (
    DEFAULT_POOL_SIZE, DEFAULT_SUBSET_FRACTION, ModelPool, PoolSpec, build_pool, load_pool, pool_spec_for,
    pool_summary,
)
from .proxies import ProxyResult, available_proxies, compute_proxy, register_proxy
from .selection import LEVELS, partition_by_score, rank_order, select_by_memorization

EXACT = "exact"


def infer_architecture(model: nn.Module | None) -> tuple[str | None, int | None]:
    """The registered model name and width of one of memunlearn's own models, else (None, None).

    Example:
        >>> from memunlearn.models import build_model
        >>> infer_architecture(build_model("cnn", 1, 10, width=8, image_size=8))
        ('cnn', 8)
    """
    from ..models import MLP, ResNet18, SmallCNN, SmallViT

    if model is None or not hasattr(model, "classifier"):
        return None, None
    features: int = model.classifier.in_features  # type: ignore[union-attr,assignment]  # a Linear in our models
    # classifier input width = width × this factor
    for cls, name, factor in ((SmallCNN, "cnn", 4), (ResNet18, "resnet18", 8), (SmallViT, "vit", 1), (MLP, "mlp", 1)):
        if isinstance(model, cls):
            return name, features // factor
    return None, None


def load_score_file(path: str | os.PathLike, n: int) -> np.ndarray:
    """Read per-example scores from a .npy file and check there is one per training example.

    Raises:
        ConfigError: missing or unreadable file, not 1-D, or a length other than ``n``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"score file {path} does not exist")
    try:
        scores = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError, ... for a damaged or pickled file
        raise ConfigError(f"score file {path} is not a readable .npy array ({type(exc).__name__}: {exc})") from None
    if not isinstance(scores, np.ndarray) or scores.ndim != 1 or not np.issubdtype(scores.dtype, np.number) \
            or np.issubdtype(scores.dtype, np.complexfloating):
        raise ConfigError(f"score file {path} should hold a 1-D array of real numbers, got "
                          f"{getattr(scores, 'dtype', type(scores).__name__)} {getattr(scores, 'shape', '')}")
    if len(scores) != n:
        raise ConfigError(f"score file {path} has {len(scores)} scores but the dataset has {n} training examples")
    scores = scores.astype(np.float64)
    infinite = int(np.isinf(scores).sum())
    if infinite:
        raise ConfigError(f"score file {path} has {infinite} infinite score(s); scores must be finite (NaN = no score)")
    if len(scores) and np.isnan(scores).all():
        raise ConfigError(f"score file {path} holds no score: every entry is NaN")
    return scores


def pool_for(
    dataset: Dataset,
    original_model: nn.Module | None = None,
    dynamics: TrainingDynamics | None = None,
    *,
    model_name: str | None = None,
    width: int | None = None,
    train_config: TrainConfig | None = None,
    subset_fraction: float = DEFAULT_SUBSET_FRACTION,
    pool_seed: int = 0,
) -> PoolSpec:
    """The pool spec that matches the original model: its architecture and, when the dynamics
    are given, its number of epochs; the dataset's recipe for everything else."""
    inferred_name, inferred_width = infer_architecture(original_model)
    epochs = dynamics.true_prob.shape[0] if (dynamics is not None and train_config is None) else None
    return pool_spec_for(dataset, model_name or inferred_name, width or inferred_width, train_config,
                         subset_fraction, pool_seed, epochs=epochs)


def memorization_scores(
    source: str,
    dataset: Dataset,
    original_model: nn.Module | None,
    dynamics: TrainingDynamics | None,
    *,
    device: str = "auto",
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    pool_size: int | None = None,
    executor: str = "local",
    workers: int = 1,
    ray_address: str | None = None,
    model_name: str | None = None,
    width: int | None = None,
    train_config: TrainConfig | None = None,
    subset_fraction: float = DEFAULT_SUBSET_FRACTION,
    pool_seed: int = 0,
    pool_dir: str | os.PathLike | None = None,
) -> np.ndarray:
    """One memorization score per training example, higher = more memorized.

    Args:
        source: ``exact`` (Feldman–Zhang from a model pool, built or reused from the cache), a
            proxy name (see :func:`available_proxies`), or a path to a .npy file of scores.
        dataset: the data the original model was trained on.
        original_model: the trained original model (model-based proxies; its architecture is
            also the pool's).
        dynamics: its training dynamics (dynamics proxies; their epoch count is the pool's).
        device: ``auto`` = CUDA when present.
        cache_dir: cache root for the pool (default ``$MEMUNLEARN_CACHE``).
        seed: seed of a proxy's randomness (curvature directions, hold-out finetuning).
        pool_size: K for ``exact`` (default 100).
        executor: ``local`` or ``ray``, for building the pool.
        workers: parallel workers for the pool.
        ray_address: an existing Ray cluster to join.
        model_name, width, train_config: the pool members' architecture and recipe (default:
            those of ``original_model``, else the dataset's recipe).
        subset_fraction: r, the fraction of the training set each pool member sees (0.7).
        pool_seed: the pool's own seed. It is NOT ``seed``: the exact scores are a property of
            the data and the recipe, so every seed of an experiment shares one pool.
        pool_dir: an explicit pool folder (default: under the cache, keyed by what produced it).

    Returns:
        float64 array of length ``len(dataset.train)``; for ``exact``, NaN for examples that
        were in every pool subset or in none.

    Raises:
        ConfigError: unknown source/proxy/executor, a score file of the wrong length, a pool of
            other data or another model, or a proxy whose model or dynamics is missing.

    Example:
        >>> scores = memorization_scores("exact", data, model, dynamics, pool_size=64, workers=2)  # doctest: +SKIP
    """
    n = len(dataset.train)
    if source == EXACT:
        spec = pool_for(dataset, original_model, dynamics, model_name=model_name, width=width,
                        train_config=train_config, subset_fraction=subset_fraction, pool_seed=pool_seed)
        pool = build_pool(dataset, spec, pool_size or DEFAULT_POOL_SIZE, pool_dir=pool_dir, cache_dir=cache_dir,
                          executor=executor, workers=workers, ray_address=ray_address, device=device)
        scores = pool.estimate(dataset.train.y).scores
    elif source in available_proxies():
        scores = compute_proxy(source, dataset, original_model, dynamics, device, seed).scores
    elif source.endswith(".npy") or os.path.sep in source:
        scores = load_score_file(source, n)
    else:
        from ..errors import unknown_name

        raise unknown_name("memorization score source", source, [EXACT, *available_proxies(), "FILE.npy"])
    if len(scores) != n:
        raise ConfigError(f"{source}: {len(scores)} scores for {n} training examples")
    return scores


__all__ = [
    "DEFAULT_POOL_SIZE", "DEFAULT_SUBSET_FRACTION", "EXACT", "LEVELS", "MemorizationEstimate", "ModelPool",
    "PoolSpec", "ProxyResult", "available_executors", "available_proxies", "build_pool", "compute_proxy",
    "disattenuate", "feldman_zhang", "get_executor", "infer_architecture", "load_pool", "load_score_file",
    "memorization_scores", "partition_by_score", "pool_for", "pool_spec_for", "pool_summary", "rank_order",
    "register_proxy", "select_by_memorization", "spearman", "spearman_brown", "split_half_reliability",
]

