"""Safetensors checkpoints, written atomically and keyed by what produced them.

A checkpoint's key is the hash of everything that determined it (data fingerprint, model,
training config, seed, training indices), so a repeated run reuses it and a changed setting
never picks up a stale one. Every checkpoint carries the SHA-256 of its tensors: a cached one
that no longer matches (damaged bytes, truncation) is reported and trained again, and a
user-supplied one is refused. A per-checkpoint lock makes a second process that needs the same
artefact wait for the first and reuse its result instead of training it twice.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import warnings

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .errors import CheckpointError, DamagedArtefactWarning
from .io import FileLock, atomic_path, cache_root, sha256_of_tensors  # noqa: F401  (cache_root re-exported)

STATE_PREFIX = "state."
# safetensors header metadata: the user's metadata (JSON) and the checksum of every tensor
METADATA_KEY = "memunlearn"
CHECKSUM_KEY = "memunlearn_sha256"


def artefact_key(**parts: Any) -> str:
    """A stable short hash of JSON-serialisable ``parts``."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    extra: dict[str, Tensor] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Path:
    """Save the model's state (and optional extra tensors) as safetensors, atomically, with the
    SHA-256 of all its tensors in the header."""
    tensors = {STATE_PREFIX + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({k: v.detach().cpu().contiguous() for k, v in (extra or {}).items()})
    header = {METADATA_KEY: json.dumps(metadata or {}, default=str), CHECKSUM_KEY: sha256_of_tensors(tensors)}
    size = sum(t.numel() * t.element_size() for t in tensors.values())
    with atomic_path(path, size_hint=size) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return Path(path)


def read_checkpoint(
    path: str | os.PathLike, require_checksum: bool = False
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint: (model state, extra tensors, metadata), verified against its checksum.

    Args:
        path: the .safetensors file.
        require_checksum: refuse a file without a checksum (the cache does: it rebuilds such
            files); otherwise such a file (an older memunlearn's) is accepted with a
            :class:`~memunlearn.errors.DamagedArtefactWarning`.

    Raises:
        CheckpointError: missing, unreadable or corrupt file; tensors that do not match the stored
            checksum; NaN or infinite weights.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        metadata = json.loads(header.get(METADATA_KEY, "{}"))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({exc})") from exc
    verify_checksum(path, tensors, header.get(CHECKSUM_KEY), "checkpoint", require_checksum)
    state = {k[len(STATE_PREFIX) :]: v for k, v in tensors.items() if k.startswith(STATE_PREFIX)}
    extra = {k: v for k, v in tensors.items() if not k.startswith(STATE_PREFIX)}
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"checkpoint {path} has NaN or infinite weights (in {bad[:3]})")
    return state, extra, metadata


def verify_checksum(path: Path, tensors: dict[str, Tensor], stored: str | None, what: str,
                    require_checksum: bool) -> None:
    """Compare ``tensors`` with the checksum ``stored`` in ``path``'s header.

    Raises:
        CheckpointError: a mismatch, or no checksum when ``require_checksum``.
    """
    if stored is None:
        if require_checksum:
            raise CheckpointError(f"{what} {path} has no checksum (written by an older memunlearn)")
        warnings.warn(f"{what} {path} has no checksum (written by an older memunlearn); its contents cannot be "
                      "verified", DamagedArtefactWarning, stacklevel=3)
        return
    if sha256_of_tensors(tensors) != stored:
        raise CheckpointError(f"{what} {path} is damaged: its tensors do not match the checksum stored with them")


def load_into(model: nn.Module, state: dict[str, Tensor], source: str = "checkpoint") -> nn.Module:
    """Load ``state`` into ``model``, with a clear error when names or shapes differ."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong_shape:
        details = []
        if missing:
            details.append(f"missing {missing[:5]}")
        if unexpected:
            details.append(f"unexpected {unexpected[:5]}")
        if wrong_shape:
            k = wrong_shape[0]
            details.append(f"shape of {k}: {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
        raise CheckpointError(
            f"{source} does not match the model ({'; '.join(details)}); "
            "check --model/--width/--dataset against the ones it was trained with"
        )
    model.load_state_dict(state)
    return model


def cached(
    path: Path,
    produce: Callable[[], tuple[nn.Module, dict[str, Tensor], dict[str, Any]]],
    build: Callable[[], nn.Module],
) -> tuple[nn.Module, dict[str, Tensor], dict[str, Any], bool]:
    """Load the checkpoint at ``path`` if present and intact, else produce and save it.

    A second process (or thread) asking for the same ``path`` meanwhile waits for the first to
    finish, then reuses its checkpoint. An entry that is unreadable, truncated, damaged (checksum
    mismatch), without a checksum, or with non-finite weights is reported with a
    :class:`~memunlearn.errors.DamagedArtefactWarning` naming the file, and produced again.

    Returns:
        (model, extra tensors, metadata, reused?).
    """
    path = Path(path)
    with FileLock(path):
        if path.is_file():
            try:
                state, extra, metadata = read_checkpoint(path, require_checksum=True)
                return load_into(build(), state, source=f"cached checkpoint {path}").eval(), extra, metadata, True
            except CheckpointError as exc:
                warnings.warn(f"{exc}; producing it again", DamagedArtefactWarning, stacklevel=2)
        model, extra, metadata = produce()
        save_checkpoint(path, model, extra, metadata)
        return model, extra, metadata, False


def model_metadata(model_name: str, width: int, in_channels: int, num_classes: int, image_size: int, **extra: Any) -> dict:
    """The architecture description stored in a checkpoint so :func:`load_model` can rebuild it."""
    return {"model": model_name, "width": width, "in_channels": in_channels, "num_classes": num_classes,
            "image_size": image_size, **extra}


def check_architecture_metadata(metadata: dict[str, Any], path: str | os.PathLike) -> None:
    """The architecture a checkpoint describes must be plausible before a model is built from it:
    integer sizes in range (a width of 10**7 would try to allocate petabytes).

    Raises:
        CheckpointError: naming the bad entry.
    """
    from .limits import MAXIMA, large_allowed

    if not isinstance(metadata.get("model"), str) or not metadata["model"]:
        raise CheckpointError(f"checkpoint {path}: its metadata 'model' should be a model name, got {metadata.get('model')!r}")
    limits = {"width": (1, MAXIMA["width"]), "in_channels": (1, 64), "num_classes": (2, 100_000),
              "image_size": (1, MAXIMA["image_size"])}
    for key, (low, high) in limits.items():
        value = metadata.get(key)
        if key == "width" and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (value > high and not large_allowed()):
            raise CheckpointError(f"checkpoint {path}: its metadata {key!r} should be an integer in [{low}, {high}], got "
                                  f"{value!r}; it was not written by `memunlearn train`, or was edited")


def load_model(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Tensor], dict[str, Any]]:
    """Rebuild a model saved with architecture metadata (see :func:`model_metadata`).

    Returns:
        (model in eval mode, extra tensors, metadata).

    Raises:
        CheckpointError: unreadable file, no architecture metadata, or weights that do not fit.

    Example:
        >>> model, _, meta = load_model("runs/x/model.safetensors")  # doctest: +SKIP
    """
    from .errors import ConfigError
    from .models import build_model

    state, extra, metadata = read_checkpoint(path)
    if not isinstance(metadata, dict) or "model" not in metadata:
        raise CheckpointError(f"checkpoint {path} has no architecture metadata; save it with `memunlearn train`")
    check_architecture_metadata(metadata, path)
    try:
        model = build_model(metadata["model"], metadata["in_channels"], metadata["num_classes"],
                            width=metadata["width"], image_size=metadata["image_size"])
    except (ConfigError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} describes an unknown architecture ({exc})") from exc
    return load_into(model, state, source=f"checkpoint {path}").eval(), extra, metadata
