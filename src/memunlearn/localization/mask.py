"""The :class:`Mask` type: which parameter entries an unlearning method may change (SPEC §2).

A mask maps every parameter name of a model to a boolean tensor of that parameter's shape
(True = selected = may change). It is a read-only ``Mapping[str, Tensor]``, so it can be handed
straight to :func:`memunlearn.methods.unlearn` (``mask=``), which enforces it as a hard constraint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..errors import CheckpointError
from ..io import atomic_path, sha256_of_tensors

METADATA_KEY = "memunlearn_mask"
CHECKSUM_KEY = "memunlearn_sha256"


def validate_mask(mask: Mapping[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Check that ``mask`` has a boolean tensor of the right shape for every parameter.

    Raises:
        CheckpointError: names or shapes that do not fit the model.
    """
    params = dict(model.named_parameters())
    missing = sorted(set(params) - set(mask))
    unexpected = sorted(set(mask) - set(params))
    wrong = [n for n in params if n in mask and tuple(mask[n].shape) != tuple(params[n].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"no entry for {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unknown parameters {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}")
        if wrong:
            n = wrong[0]
            parts.append(f"{n} has shape {tuple(mask[n].shape)}, the model's is {tuple(params[n].shape)}")
        raise CheckpointError(
            f"the mask does not fit the model: {'; '.join(parts)}; compute it with `memunlearn localize` for this model"
        )
    return {n: mask[n].to(torch.bool) for n in params}


class Mask(Mapping):
    """Parameter name → boolean tensor; True marks the entries that may change.

    Args:
        entries: one boolean (or 0/1) tensor per parameter name, in the model's parameter order.
        info: free-form description of how the mask was made (strategy, budget, ...); saved with it.

    Example:
        >>> m = Mask({"w": torch.tensor([[True, False], [False, False]]), "b": torch.tensor([True, True])})
        >>> m.selected, m.total, m.density
        (3, 6, 0.5)
    """

    def __init__(self, entries: Mapping[str, Tensor], info: dict[str, Any] | None = None):
        self._entries = {name: torch.as_tensor(value).detach().to("cpu", torch.bool) for name, value in entries.items()}
        self.info: dict[str, Any] = dict(info or {})

    # Mapping interface -------------------------------------------------------------------
    def __getitem__(self, name: str) -> Tensor:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Mask({len(self)} tensors, {self.selected}/{self.total} entries selected, info={self.info})"

    # Constructors ------------------------------------------------------------------------
    @classmethod
    def full(cls, model: nn.Module, value: bool = True, info: dict[str, Any] | None = None) -> "Mask":
        """A mask selecting every entry of ``model`` (or none, with ``value=False``)."""
        return cls({n: torch.full(p.shape, value, dtype=torch.bool) for n, p in model.named_parameters()}, info)

    # Sizes -------------------------------------------------------------------------------
    @property
    def selected(self) -> int:
        """Number of selected (True) entries."""
        return sum(int(m.sum()) for m in self._entries.values())

    @property
    def total(self) -> int:
        """Number of entries (= the model's parameter count)."""
        return sum(m.numel() for m in self._entries.values())

    @property
    def density(self) -> float:
        """Fraction of entries selected (the budget α the mask realises)."""
        return self.selected / max(self.total, 1)

    @property
    def sparsity(self) -> float:
        """Fraction of entries NOT selected (1 − density)."""
        return 1.0 - self.density

    def per_layer(self) -> list[dict[str, Any]]:
        """One row per parameter tensor: name, shape, selected, total, density, sparsity.

        Example:
            >>> Mask({"w": torch.tensor([True, False])}).per_layer()[0]["density"]
            0.5
        """
        rows = []
        for name, m in self._entries.items():
            selected, total = int(m.sum()), m.numel()
            density = selected / max(total, 1)
            rows.append({"name": name, "shape": list(m.shape), "selected": selected, "total": total,
                         "density": density, "sparsity": 1.0 - density})
        return rows

    # Comparison --------------------------------------------------------------------------
    def iou(self, other: Mapping[str, Tensor]) -> float:
        """Intersection over union of the selected entries of two masks of the same model.

        Returns 1.0 when both masks select nothing.

        Raises:
            CheckpointError: the masks cover different parameters or shapes.

        Example:
            >>> a = Mask({"w": torch.tensor([True, True, False])})
            >>> b = Mask({"w": torch.tensor([True, False, True])})
            >>> round(a.iou(b), 4)
            0.3333
        """
        if set(self) != set(other):
            raise CheckpointError(
                f"cannot compare masks of different models: parameters {sorted(set(self) ^ set(other))[:3]} differ"
            )
        inter = union = 0
        for name, m in self._entries.items():
            o = torch.as_tensor(other[name]).to(torch.bool)
            if o.shape != m.shape:
                raise CheckpointError(f"cannot compare masks: {name} has shapes {tuple(m.shape)} and {tuple(o.shape)}")
            inter += int((m & o).sum())
            union += int((m | o).sum())
        return 1.0 if union == 0 else inter / union

    def check_fits(self, model: nn.Module) -> "Mask":
        """Check names and shapes against ``model``; returns the mask, its entries in the model's order.

        Raises:
            CheckpointError: a missing, unknown or wrongly shaped entry (the message names it).
        """
        validate_mask(self, model)
        # safetensors files list tensors alphabetically; per-layer reports read better in model order.
        self._entries = {name: self._entries[name] for name, _ in model.named_parameters()}
        return self

    # Files -------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the mask as safetensors (bool tensors + ``info`` and a checksum as metadata), atomically.

        Example:
            >>> mask.save("runs/del-mask.safetensors")  # doctest: +SKIP
        """
        tensors = {name: m.contiguous() for name, m in self._entries.items()}
        with atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(self.info, default=str),
                                                   CHECKSUM_KEY: sha256_of_tensors(tensors)})
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Mask":
        """Read a mask written by :meth:`save`.

        A mask without a checksum (an older memunlearn's) is accepted with a
        :class:`~memunlearn.errors.DamagedArtefactWarning`.

        Raises:
            CheckpointError: missing, unreadable, corrupt or non-boolean file, or entries that do
                not match the checksum stored with them.

        Example:
            >>> mask = Mask.load("runs/del-mask.safetensors")  # doctest: +SKIP
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"mask file {path} does not exist; write one with `memunlearn localize`")
        try:
            tensors = load_file(str(path))
            with safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            info = json.loads(metadata.get(METADATA_KEY, "{}"))
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"mask file {path} is unreadable or corrupt ({exc}); recompute it") from exc
        if METADATA_KEY not in metadata:
            raise CheckpointError(f"{path} is not a memunlearn mask (no mask metadata); write one with `memunlearn localize`")
        from ..checkpoints import verify_checksum

        verify_checksum(path, tensors, metadata.get(CHECKSUM_KEY), "mask file", require_checksum=False)
        wrong = [name for name, t in tensors.items() if t.dtype != torch.bool]
        if wrong:
            raise CheckpointError(f"mask file {path} has non-boolean entries {wrong[:3]}; recompute it")
        return cls(tensors, info)
