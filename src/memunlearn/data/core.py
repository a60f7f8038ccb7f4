"""In-memory example containers shared by every stage, and the adapter for users' own data.

Datasets here are small enough to live in memory as tensors, so batches are cut by
indexing instead of going through a DataLoader (several times faster on CPU).
:func:`as_examples` turns a user's torch ``Dataset`` or ``DataLoader`` into :class:`Examples`
(materialised once) or, when it is too large for memory, into :class:`StreamedExamples`.
"""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils import data as torch_data

from ..errors import ConfigError


@dataclass(frozen=True)
class Examples:
    """Inputs ``x`` [N, C, H, W] (float32, normalised) and integer labels ``y`` [N].

    Example:
        >>> ex = Examples(torch.zeros(4, 1, 8, 8), torch.tensor([0, 1, 0, 1]))
        >>> len(ex.subset([0, 2]))
        2
    """

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y):
            raise ValueError(f"x has {len(self.x)} examples but y has {len(self.y)}")

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> "Examples":
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return Examples(self.x[index], self.y[index])

    def with_labels(self, labels: Tensor) -> "Examples":
        return Examples(self.x, labels.to(self.y.dtype))

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        with_index: bool = False,
    ) -> Iterator[tuple[Tensor, ...]]:
        """Yield ``(x, y)`` batches (or ``(x, y, index)`` with ``with_index``)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        for start in range(0, n, batch_size):
            index = order[start : start + batch_size]
            if with_index:
                yield self.x[index], self.y[index], index
            else:
                yield self.x[index], self.y[index]


def concat(*parts: Examples) -> Examples:
    """Concatenate several example sets into one."""
    return Examples(torch.cat([p.x for p in parts]), torch.cat([p.y for p in parts]))


@dataclass
class Dataset:
    """A train/test split with its metadata, as returned by :func:`memunlearn.load_dataset`."""

    name: str
    train: Examples
    test: Examples
    classes: list[str]
    fingerprint: str = field(default="")

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = fingerprint_tensors(self.train.x, self.train.y, self.test.x, self.test.y)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def with_train_labels(self, labels: Tensor, tag: str) -> "Dataset":
        """A copy whose training labels are replaced (e.g. flipped for a mislabelled forget set)."""
        return Dataset(
            name=self.name,
            train=self.train.with_labels(labels),
            test=self.test,
            classes=self.classes,
            fingerprint=hashlib.sha256(f"{self.fingerprint}:{tag}".encode()).hexdigest()[:16],
        )

    def with_train_examples(self, x: Tensor, y: Tensor, tag: str) -> "Dataset":
        """A copy whose training images and labels are replaced (e.g. poisoned by a backdoor
        forget set), same number of examples; the test split is shared.

        The fingerprint hashes ``tag`` and the rows that differ from this dataset's (their
        indices, images and labels), so a cached model is reused only for the same change.

        Example:
            >>> data = Dataset("tiny", Examples(torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 0])),
            ...                Examples(torch.zeros(1, 1, 2, 2), torch.tensor([1])), ["a", "b"])
            >>> x = data.train.x.clone(); x[1] = 1.0
            >>> poisoned = data.with_train_examples(x, torch.tensor([0, 0, 0]), "poison")
            >>> poisoned.train.y.tolist(), poisoned.fingerprint != data.fingerprint
            ([0, 0, 0], True)
        """
        if x.shape != self.train.x.shape or y.shape != self.train.y.shape:
            raise ValueError(
                f"replacement training set {tuple(x.shape)} / {tuple(y.shape)} does not match "
                f"{tuple(self.train.x.shape)} / {tuple(self.train.y.shape)}"
            )
        y = y.to(self.train.y.dtype)
        x = x.to(self.train.x.dtype)
        changed = ((x != self.train.x).flatten(1).any(1) | (y != self.train.y)).nonzero().flatten()
        return Dataset(
            name=self.name,
            train=Examples(x, y),
            test=self.test,
            classes=self.classes,
            fingerprint=hashlib.sha256(
                f"{self.fingerprint}:{tag}:{fingerprint_tensors(changed, x[changed], y[changed])}".encode()
            ).hexdigest()[:16],
        )


def fingerprint_tensors(*tensors: Tensor) -> str:
    """A short content hash, used to key cached artefacts by the data that produced them."""
    digest = hashlib.sha256()
    for t in tensors:
        array = t.detach().cpu().contiguous().numpy()
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------------
# Users' own data: torch Datasets and DataLoaders

DEFAULT_MAX_IN_MEMORY = 2 * 1024**3  # bytes: 2 GiB of inputs and labels are materialised, more is streamed
_MATERIALISE_BATCH = 256


class StreamingError(ConfigError):
    """Something needs all of a streamed set's inputs or labels at once (``what``: ``x``, ``y``, ...)."""

    def __init__(self, what: str, size: int):
        self.what, self.size = what, size
        super().__init__(
            f"a streamed dataset ({size} examples, larger than max_in_memory) only gives batches, "
            f"not {what}; materialise it with memunlearn.data.as_examples(data, max_in_memory=None) "
            "if it fits in memory"
        )

    def __reduce__(self):  # pickles (e.g. from a worker process) with its fields
        return (StreamingError, (self.what, self.size))


class StreamedExamples:
    """Examples read batch by batch from a map-style torch Dataset, for sets too large for memory.

    It has what methods that only iterate batches use: ``len``, :meth:`batches` (same order as
    :meth:`Examples.batches` for the same generator) and :meth:`subset`. ``x``, ``y``,
    ``with_labels`` and :func:`concat` need every example at once and raise :class:`StreamingError`.
    The dataset's transforms run on every pass, so random augmentation differs between passes.

    Args:
        dataset: a map-style torch Dataset whose items are ``(input tensor, integer label)``, or,
            with a ``collate_fn`` in ``loader_options``, whatever that collate turns into batches.
        indices: which of the dataset's items, in order (default: all).
        loader_options: passed to the DataLoader built for each pass (``collate_fn``,
            ``num_workers``, ``pin_memory``, ...).

    Example:
        >>> ds = torch_data.TensorDataset(torch.zeros(5, 1, 2, 2), torch.tensor([0, 1, 0, 1, 1]))
        >>> stream = StreamedExamples(ds)
        >>> [len(y) for _, y in stream.subset([0, 2, 4]).batches(2)]
        [2, 1]
    """

    def __init__(
        self,
        dataset: torch_data.Dataset,
        indices: Sequence[int] | np.ndarray | Tensor | None = None,
        loader_options: dict[str, Any] | None = None,
    ):
        self.dataset = dataset
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
        self.loader_options = dict(loader_options) if loader_options is not None else {"collate_fn": collate_pairs}

    def __len__(self) -> int:
        return len(self.dataset) if self.indices is None else len(self.indices)  # type: ignore[arg-type]  # map-style: sized

    def __repr__(self) -> str:
        return f"StreamedExamples({type(self.dataset).__name__}, {len(self)} examples)"

    def subset(self, indices: Sequence[int] | np.ndarray | Tensor) -> "StreamedExamples":
        positions = np.asarray(indices, dtype=np.int64).reshape(-1)
        chosen = positions if self.indices is None else self.indices[positions]
        return StreamedExamples(self.dataset, chosen, self.loader_options)

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        with_index: bool = False,
    ) -> Iterator[tuple[Tensor, ...]]:
        """Yield ``(x, y)`` batches (or ``(x, y, index)``, positions in this set) through a DataLoader."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        items = order.numpy() if self.indices is None else self.indices[order.numpy()]
        loader = torch_data.DataLoader(self.dataset, batch_size=batch_size, sampler=items.tolist(),
                                       **self.loader_options)
        start = 0
        for batch in loader:
            x, y = checked_batch(batch)
            if with_index:
                yield x, y, order[start : start + len(y)]
            else:
                yield x, y
            start += len(y)

    def with_labels(self, labels: Tensor) -> "Examples":
        raise StreamingError("its labels replaced (.with_labels)", len(self))

    @property
    def x(self) -> Tensor:
        raise StreamingError("every input at once (.x)", len(self))

    @property
    def y(self) -> Tensor:
        raise StreamingError("every label at once (.y)", len(self))


def as_examples(
    data: Any, *, max_in_memory: int | None = DEFAULT_MAX_IN_MEMORY, name: str = "data"
) -> Examples | StreamedExamples:
    """Accept a user's own data: Examples pass through; a torch Dataset or DataLoader of
    ``(input, integer label)`` is materialised into :class:`Examples` once, or streamed if too large.

    The size is estimated as (number of examples) × (bytes of one input as the dataset or loader
    produces it, after its transforms, + 8 bytes of label); up to ``max_in_memory`` it is read once
    into memory (peak: about twice that while the batches are joined). Random augmentation is
    therefore frozen: the materialised set holds one draw of it. A DataLoader is iterated as it is
    (its transforms, sampler, collate_fn and workers), so a shuffling loader gives a shuffled set.
    A ``TensorDataset`` of two tensors (or a ``Subset`` of one) is already in memory: its tensors
    are used directly, whatever ``max_in_memory``.
    A larger map-style dataset becomes :class:`StreamedExamples` (the DataLoader's collate_fn and
    workers are kept); a larger ``IterableDataset`` cannot be streamed (no random access).

    Args:
        data: :class:`Examples`, :class:`StreamedExamples`, a torch ``Dataset`` (map-style or
            iterable) or a ``DataLoader`` whose items/batches are ``(input tensor, integer label)``.
        max_in_memory: bytes (default 2 GiB); ``None`` always materialises, ``0`` streams every
            map-style dataset but a TensorDataset.
        name: what ``data`` is (``forget``, ``retain``, ...), for error messages.

    Returns:
        :class:`Examples` (labels int64), or :class:`StreamedExamples`.

    Raises:
        ConfigError: ``data`` is none of the above, is empty, yields something other than
            ``(tensor, integer label)`` pairs, inputs of different shapes, labels that are not
            non-negative integer class indices, a DataLoader with ``drop_last=True``, or an
            ``IterableDataset`` larger than ``max_in_memory``.

    Example:
        >>> ds = torch_data.TensorDataset(torch.randn(6, 1, 4, 4), torch.tensor([0, 1, 2, 0, 1, 2]))
        >>> ex = as_examples(torch_data.Subset(ds, [1, 3]))
        >>> ex.y.tolist(), tuple(ex.x.shape)
        ([1, 0], (2, 1, 4, 4))
        >>> class Doubled(torch_data.Dataset):  # a dataset with a transform
        ...     def __len__(self): return len(ds)
        ...     def __getitem__(self, i): return ds[i][0] * 2, int(ds[i][1])
        >>> type(as_examples(Doubled(), max_in_memory=0)).__name__
        'StreamedExamples'
    """
    if isinstance(data, (Examples, StreamedExamples)):
        return data
    try:
        if isinstance(data, torch_data.DataLoader):
            return _from_loader(data, max_in_memory)
        if isinstance(data, torch_data.IterableDataset):
            loader = torch_data.DataLoader(data, batch_size=_MATERIALISE_BATCH, collate_fn=collate_pairs)
            return _from_loader(loader, max_in_memory)
        if isinstance(data, torch_data.Dataset):
            return _from_map_dataset(data, max_in_memory)
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    raise ConfigError(
        f"{name}: expected memunlearn Examples, a torch Dataset or a DataLoader of (input, label) pairs, "
        f"got {type(data).__name__}; for tensors x, y use Examples(x, y) or TensorDataset(x, y)"
    )


def collate_pairs(items: Sequence[Any]) -> tuple[Tensor, Tensor]:
    """Stack dataset items ``(input tensor, integer label)`` into a batch, checking each item."""
    inputs, labels = [], []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ConfigError(f"dataset items should be (input, label) pairs, got {_describe(item)}")
        x, y = item
        if not isinstance(x, Tensor):
            raise ConfigError(f"dataset inputs should be tensors, got {type(x).__name__} "
                              "(add a transform such as torchvision's ToTensor())")
        inputs.append(x)
        labels.append(_label(y))
    shapes = {tuple(x.shape) for x in inputs}
    if len(shapes) > 1:
        raise ConfigError(f"dataset inputs have different shapes {sorted(shapes)[:2]}; resize them in a transform")
    return torch.stack(inputs), torch.tensor(labels, dtype=torch.int64)


def checked_batch(batch: Any) -> tuple[Tensor, Tensor]:
    """A loader's batch as ``(inputs, int64 labels)``, or a ConfigError naming what is wrong."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise ConfigError(f"batches should be (inputs, labels) pairs, got {_describe(batch)}")
    x, y = batch
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise ConfigError(f"batches should be (inputs, labels) tensors, got ({type(x).__name__}, {type(y).__name__})")
    if y.dtype == torch.bool or y.is_floating_point() or y.is_complex():
        raise ConfigError(f"labels should be integer class indices, got {y.dtype} "
                          "(one-hot or soft labels are not supported; whole numbers: convert with .long())")
    if y.dim() != 1 or len(y) != len(x):
        raise ConfigError(f"a batch of {len(x)} inputs should have {len(x)} labels, one per input; "
                          f"got labels of shape {tuple(y.shape)}")
    if len(y) and int(y.min()) < 0:
        raise ConfigError(f"labels should be class indices 0, 1, ...; got {int(y.min())}")
    return x, y.long()


def _label(y: Any) -> int:
    if isinstance(y, Tensor) and y.numel() == 1 and not (y.dtype == torch.bool or y.is_floating_point()):
        y = y.item()
    if isinstance(y, (bool, np.bool_)) or not isinstance(y, (int, np.integer)):
        raise ConfigError(f"labels should be integer class indices, got {_describe(y)}")
    if y < 0:
        raise ConfigError(f"labels should be class indices 0, 1, ...; got {y}")
    return int(y)


def _describe(value: Any) -> str:
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"{type(value).__name__} {value!r}"[:80]


def _tensor_pair(dataset: torch_data.Dataset) -> tuple[Tensor, Tensor] | None:
    """The (inputs, labels) behind a TensorDataset of two tensors, through any Subsets; else None."""
    if isinstance(dataset, torch_data.TensorDataset) and len(dataset.tensors) == 2:
        return dataset.tensors[0], dataset.tensors[1]
    if isinstance(dataset, torch_data.Subset):
        inner = _tensor_pair(dataset.dataset)
        if inner is not None:
            index = torch.as_tensor(np.asarray(dataset.indices, dtype=np.int64))
            return inner[0][index], inner[1][index]
    return None


def _from_map_dataset(dataset: torch_data.Dataset, max_in_memory: int | None) -> Examples | StreamedExamples:
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError("a map-style Dataset needs __len__ (or make it an IterableDataset)") from None
    if n == 0:
        raise ConfigError("the dataset is empty")
    pair = _tensor_pair(dataset)
    if pair is not None:
        x, y = checked_batch(pair)
        return Examples(x, y)
    x, _ = collate_pairs([dataset[0]])
    if max_in_memory is not None and n * (x.element_size() * x[0].numel() + 8) > max_in_memory:
        return StreamedExamples(dataset)
    loader = torch_data.DataLoader(dataset, batch_size=_MATERIALISE_BATCH, collate_fn=collate_pairs)
    return _materialise(iter(loader), None, None)


def _from_loader(loader: torch_data.DataLoader, max_in_memory: int | None) -> Examples | StreamedExamples:
    if loader.drop_last:
        raise ConfigError("a DataLoader with drop_last=True would leave examples out; pass one without it")
    iterable = isinstance(loader.dataset, torch_data.IterableDataset)
    batches = iter(loader)
    first = next(batches, None)
    if first is None:
        raise ConfigError("the DataLoader yields no batches (an empty dataset?)")
    x, y = checked_batch(first)
    if iterable:
        return _materialise(batches, (x, y), max_in_memory)
    # A custom batch_sampler's length counts batches: estimate by the whole dataset instead.
    n = len(loader.sampler if loader.batch_size is not None else loader.dataset)  # type: ignore[arg-type]
    per_example = x.element_size() * x[0].numel() + 8 if len(x) else 8
    if max_in_memory is None or n * per_example <= max_in_memory:
        return _materialise(batches, (x, y), None)
    del batches  # stops the loader's workers before the stream starts its own
    return StreamedExamples(loader.dataset, _loader_indices(loader), _loader_options(loader))


def _loader_indices(loader: torch_data.DataLoader) -> np.ndarray | None:
    """The dataset items a loader visits, in one draw of its sampler (None: each item once)."""
    sampler = loader.sampler
    if loader.batch_size is None:  # a custom batch_sampler
        return np.asarray([i for batch in loader.batch_sampler for i in batch], dtype=np.int64)  # type: ignore[union-attr]  # set with batch_size None
    if isinstance(sampler, torch_data.SequentialSampler):
        return None
    if (isinstance(sampler, torch_data.RandomSampler) and not sampler.replacement
            and sampler.num_samples == len(loader.dataset)):  # type: ignore[arg-type]
        return None
    return np.asarray(list(sampler), dtype=np.int64)


def _loader_options(loader: torch_data.DataLoader) -> dict[str, Any]:
    """The parts of a loader a stream keeps (it chooses batch size and order itself)."""
    options: dict[str, Any] = {
        "collate_fn": loader.collate_fn, "num_workers": loader.num_workers, "pin_memory": loader.pin_memory,
        "timeout": loader.timeout, "worker_init_fn": loader.worker_init_fn,
    }
    if loader.num_workers > 0:
        options["multiprocessing_context"] = loader.multiprocessing_context
        options["prefetch_factor"] = loader.prefetch_factor
    return options


def _materialise(batches: Iterator[Any], first: tuple[Tensor, Tensor] | None, max_in_memory: int | None) -> Examples:
    """Join checked batches into Examples; stop with an error past ``max_in_memory`` (iterable sets)."""
    inputs: list[Tensor] = []
    labels: list[Tensor] = []
    size = 0
    for batch in itertools.chain([first] if first is not None else [], batches):
        x, y = checked_batch(batch)
        if inputs and x.shape[1:] != inputs[0].shape[1:]:
            raise ConfigError(f"inputs have different shapes {tuple(inputs[0].shape[1:])} and "
                              f"{tuple(x.shape[1:])}; resize them in a transform")
        size += x.element_size() * x.numel() + 8 * len(y)
        if max_in_memory is not None and size > max_in_memory:
            raise ConfigError(
                f"this IterableDataset is larger than max_in_memory ({max_in_memory} bytes) and cannot be "
                "streamed (no random access); use a map-style Dataset, or a larger max_in_memory"
            )
        inputs.append(x.detach().cpu())
        labels.append(y.cpu())
    if not labels or sum(len(y) for y in labels) == 0:
        raise ConfigError("the dataset is empty")
    return Examples(torch.cat(inputs), torch.cat(labels))
