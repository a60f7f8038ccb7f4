"""In-memory example containers shared by every stage.

Datasets here are small enough to live in memory as tensors, so batches are cut by
indexing instead of going through a DataLoader (several times faster on CPU).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor


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
