"""Datasets: decode once from local files, normalise, and hand back in-memory tensors.

Each format has a reader in :mod:`.readers` (image folders: :mod:`.imagefolder`), registered by
name in one :class:`~memunlearn.registry.Registry`. A reader may take options (``imagefolder``:
``image_size``, ``channels``, ...), passed as keywords to :func:`load_dataset`. Decoded arrays are
cached as .npy files keyed by the source files' names, sizes and modification times and by the
options, so a repeated load skips decoding (Fashion-MNIST: gzip + IDX parsing; image folders:
one Pillow decode per file) entirely. Nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..io import atomic_path, cache_root
from ..registry import Registry
from .core import DEFAULT_MAX_IN_MEMORY, Dataset, Examples, StreamedExamples, StreamingError, as_examples, concat
from .imagefolder import IMAGEFOLDER
from .readers import READERS, RawData, Reader

__all__ = [
    "DEFAULT_MAX_IN_MEMORY", "Dataset", "Examples", "RawData", "Reader", "StreamedExamples", "StreamingError",
    "as_examples", "available_datasets", "concat", "dataset_options", "load_dataset", "register_dataset", "subsample",
]

CACHE_FORMAT = 1  # bump when the cached layout changes, so old caches are never misread
_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_DATASETS: Registry[Reader] = Registry("dataset")
for _name, _reader in {**READERS, "imagefolder": IMAGEFOLDER}.items():
    _DATASETS.register(_name, _reader)


def register_dataset(name: str, reader: Reader | Callable[[Path | None], RawData]) -> None:
    """Make ``load_dataset(name)`` use ``reader`` (a thin wrapper over the dataset registry).

    Args:
        name: The dataset's name, as given to :func:`load_dataset` and the CLI.
        reader: A :class:`Reader` (cached when it has ``sources``; it may declare options), or a
            plain function ``data_dir -> RawData`` (not cached, no options).

    Raises:
        ConfigError: ``name`` is already registered.

    Example:
        >>> register_dataset("tiny", lambda d: RawData(x, y, x, y, ["a", "b"]))  # doctest: +SKIP
    """
    _DATASETS.register(name, reader if isinstance(reader, Reader) else Reader(reader))


def available_datasets() -> list[str]:
    """The registered dataset names, sorted.

    Returns:
        Names accepted by :func:`load_dataset`.

    Example:
        >>> "digits" in available_datasets()
        True
    """
    return sorted(_DATASETS)


def dataset_options(name: str) -> dict[str, Any]:
    """The options ``name`` takes, with their defaults (empty for most formats).

    Raises:
        ConfigError: ``name`` is not registered.

    Example:
        >>> dataset_options("imagefolder")["image_size"]
        32
        >>> dataset_options("digits")
        {}
    """
    return dict(_DATASETS.get(name).options)


def load_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    **options: Any,
) -> Dataset:
    """Load a dataset as float32 [N, C, H, W] tensors normalised per channel by the train split.

    Args:
        name: A registered dataset (see :func:`available_datasets`): ``digits``, ``fashion-mnist``,
            ``mnist``, ``cifar10``, ``cifar100``, ``svhn``, ``npz`` or ``imagefolder``.
        data_dir: Where the dataset's files are (for ``npz``: the .npz file). ``fashion-mnist``
            defaults to /usr/share/datasets/fashion-mnist; ``digits`` needs none.
        cache_dir: Where decoded arrays are cached; default ``$MEMUNLEARN_CACHE/datasets``,
            else ``~/.cache/memunlearn/datasets``.
        **options: The reader's own options (see :func:`dataset_options`); ``imagefolder`` takes
            ``image_size`` (default 32), ``channels`` (``auto``, ``rgb``, ``grayscale``),
            ``test_fraction`` (0.2) and ``split_seed`` (0). An option given as None means its
            default, so a caller can pass every option it knows unconditionally.

    Returns:
        A :class:`Dataset` with ``train``, ``test``, ``classes`` and a content ``fingerprint``.

    Raises:
        ConfigError: ``name`` is not registered, or it takes no option of that name.
        DataError: A file is missing (the message says which and how to get it) or malformed.

    Example:
        >>> data = load_dataset("digits")
        >>> len(data.train), len(data.test), data.input_shape
        (1437, 360, (1, 8, 8))
    """
    reader = _DATASETS.get(name)
    given = {key: value for key, value in options.items() if value is not None}
    unknown = sorted(set(given) - set(reader.options))
    if unknown:
        takes = ", ".join(sorted(reader.options)) or "none"
        raise ConfigError(f"dataset {name!r} has no option(s) {', '.join(unknown)}; it takes: {takes}")
    options = {**reader.options, **given}
    directory = Path(data_dir).expanduser() if data_dir is not None else None
    if reader.sources is None:
        raw = _checked(name, reader.read(directory, **options))
        fingerprint = _fingerprint(raw)
    else:
        folder = _cache_folder(name, reader.sources(directory, **options), cache_dir, options)
        cached = _read_cache(folder)
        if cached is None:
            raw = _checked(name, reader.read(directory, **options))
            fingerprint = _fingerprint(raw)
            _write_cache(folder, raw, fingerprint)
        else:
            raw, fingerprint = cached

    x_train = torch.tensor(raw.x_train, dtype=torch.float32)
    x_test = torch.tensor(raw.x_test, dtype=torch.float32)
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True, correction=0)
    std[std == 0] = 1.0  # a constant channel carries no information; leave it at zero
    return Dataset(
        name=name,
        train=Examples(x_train.sub_(mean).div_(std), torch.tensor(raw.y_train, dtype=torch.int64)),
        test=Examples(x_test.sub_(mean).div_(std), torch.tensor(raw.y_test, dtype=torch.int64)),
        classes=list(raw.classes),
        fingerprint=fingerprint,
    )


def subsample(dataset: Dataset, n_train: int | None = None, n_test: int | None = None, seed: int = 0) -> Dataset:
    """A stratified random subset of the train and/or test split, for quick tests and benchmarks.

    Args:
        dataset: The dataset to cut down.
        n_train: How many training examples to keep (all if None).
        n_test: How many test examples to keep (all if None).
        seed: Which subset; the same seed always picks the same examples.

    Returns:
        A :class:`Dataset` with the same classes, examples kept in their original order.

    Raises:
        ConfigError: A size is not positive or exceeds the split.

    Example:
        >>> small = subsample(load_dataset("digits"), n_train=200, n_test=100, seed=0)
        >>> len(small.train), len(small.test)
        (200, 100)
    """
    rng = np.random.default_rng(seed)
    train, test = dataset.train, dataset.test
    if n_train is not None:
        train = train.subset(_stratified_indices(train.y.numpy(), n_train, rng, "n_train"))
    if n_test is not None:
        test = test.subset(_stratified_indices(test.y.numpy(), n_test, rng, "n_test"))
    tag = f"{dataset.fingerprint}:subsample:{n_train}:{n_test}:{seed}"
    return Dataset(
        name=dataset.name, train=train, test=test, classes=list(dataset.classes),
        fingerprint=hashlib.sha256(tag.encode()).hexdigest()[:16],
    )


def _stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """``n`` indices drawn so that every class keeps (within one example) its share."""
    if not 0 < n <= len(labels):
        raise ConfigError(f"{what} must be between 1 and {len(labels)}, got {n}")
    shuffled = rng.permutation(len(labels))
    classes = labels[shuffled]
    counts = np.bincount(classes)
    # Rank of each shuffled example within its class; taking examples in order of how far
    # through their class they are draws every class at the same rate.
    by_class = np.argsort(classes, kind="stable")
    rank = np.empty(len(labels))
    rank[by_class] = np.arange(len(labels)) - np.repeat(np.cumsum(counts) - counts, counts)
    progress = (rank + 0.5) / counts[classes]
    return np.sort(shuffled[np.argsort(progress, kind="stable")[:n]])


def _checked(name: str, raw: RawData | tuple) -> RawData:
    """Check what a reader returned (registered readers may be the user's own)."""
    x_train, y_train, x_test, y_test, classes = raw
    raw = RawData._make([*(np.asarray(a) for a in (x_train, y_train, x_test, y_test)), list(classes)])
    for split in ("train", "test"):
        x, y = getattr(raw, f"x_{split}"), getattr(raw, f"y_{split}")
        if x.ndim != 4 or len(x) != len(y) or y.ndim != 1:
            raise DataError(f"{name}: {split} images should be [N, C, H, W] with N labels; got {x.shape} and {y.shape}")
        if len(y) == 0:
            raise DataError(f"{name}: the {split} split is empty")
        if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= len(raw.classes):
            raise DataError(f"{name}: {split} labels should be integers 0..{len(raw.classes) - 1}")
    if raw.x_train.shape[1:] != raw.x_test.shape[1:]:
        raise DataError(f"{name}: train images are {raw.x_train.shape[1:]} but test images are {raw.x_test.shape[1:]}")
    present = np.unique(raw.y_train)
    if len(present) < 2:
        raise DataError(f"{name}: the training set has {len(present)} class ({len(raw.classes)} named); a classifier "
                        "needs at least 2 classes with examples")
    for split in ("train", "test"):
        x = getattr(raw, f"x_{split}")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise DataError(f"{name}: the {split} images hold {int((~np.isfinite(x)).sum())} NaN or infinite values")
    return raw


def _fingerprint(raw: RawData) -> str:
    """A content hash of the decoded arrays (4x cheaper than hashing normalised floats)."""
    digest = hashlib.sha256()
    for array in (np.ascontiguousarray(getattr(raw, a)) for a in _ARRAYS):
        digest.update(f"{array.shape}{array.dtype}".encode())
        digest.update(array.data)
    return digest.hexdigest()[:16]


def _cache_folder(
    name: str, sources: list[Path], cache_dir: str | os.PathLike | None, options: dict[str, Any] | None = None
) -> Path:
    """The cache folder for ``name`` decoded from ``sources`` as they are now, with ``options``."""
    # Readers without options keep the key they had before options existed (their caches stay valid).
    stamp: list[Any] = [CACHE_FORMAT, name, sorted(options.items())] if options else [CACHE_FORMAT, name]
    for path in sources:
        stat = path.stat()
        stamp.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    key = hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:16]
    return _cache_root(cache_dir) / f"{name.replace('/', '_')}-{key}"


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    """``cache_dir``, else the artefact cache's ``datasets`` folder."""
    return Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "datasets"


def _read_cache(folder: Path) -> tuple[RawData, str] | None:
    """The cached arrays and fingerprint, or None when absent or unreadable (then rebuilt)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        arrays = [np.load(folder / f"{a}.npy", allow_pickle=False) for a in _ARRAYS]
        if [list(a.shape) for a in arrays] != meta["shapes"]:
            return None
        return RawData._make([*arrays, meta["classes"]]), meta["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError, EOFError):
        return None


def _write_cache(folder: Path, raw: RawData, fingerprint: str) -> None:
    """Save the arrays, then meta.json last: a folder without it is never read."""
    try:
        for name in _ARRAYS:
            with atomic_path(folder / f"{name}.npy") as tmp, open(tmp, "wb") as f:
                np.save(f, getattr(raw, name))
        shapes = [list(getattr(raw, a).shape) for a in _ARRAYS]
        meta = {"classes": list(raw.classes), "fingerprint": fingerprint, "shapes": shapes}
        with atomic_path(folder / "meta.json") as tmp:
            tmp.write_text(json.dumps(meta))
    except OSError as exc:  # an unwritable cache (a full disk, ...) only costs speed; the next load decodes again
        import warnings

        for name in _ARRAYS:  # no half-written cache entry is left behind
            with contextlib.suppress(OSError):
                (folder / f"{name}.npy").unlink()
        with contextlib.suppress(OSError):
            folder.rmdir()
        warnings.warn(f"the dataset cache was not written ({exc}); the data is decoded again next time", stacklevel=2)
