"""Safetensors checkpoints, written atomically and keyed by what produced them.

A checkpoint's key is the hash of everything that determined it (data fingerprint, model,
training config, seed, training indices), so a repeated run reuses it and a changed setting
never picks up a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from .errors import CheckpointError
from .io import atomic_path, cache_root  # noqa: F401  (cache_root re-exported)

STATE_PREFIX = "state."


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
    """Save the model's state (and optional extra tensors) as safetensors, atomically."""
    tensors = {STATE_PREFIX + k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({k: v.detach().cpu().contiguous() for k, v in (extra or {}).items()})
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"memunlearn": json.dumps(metadata or {}, default=str)})
    return Path(path)


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint: (model state, extra tensors, metadata).

    Raises:
        CheckpointError: missing, unreadable or corrupt file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        tensors = load_file(str(path))

        with safe_open(str(path), framework="pt") as handle:
            raw_meta = (handle.metadata() or {}).get("memunlearn", "{}")
        metadata = json.loads(raw_meta)
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt ({exc}); delete it and re-run") from exc
    state = {k[len(STATE_PREFIX) :]: v for k, v in tensors.items() if k.startswith(STATE_PREFIX)}
    extra = {k: v for k, v in tensors.items() if not k.startswith(STATE_PREFIX)}
    return state, extra, metadata


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
    """Load the checkpoint at ``path`` if present and readable, else produce and save it.

    Returns (model, extra tensors, metadata, reused?). A corrupt cache entry is reproduced.
    """
    if path.is_file():
        try:
            state, extra, metadata = read_checkpoint(path)
            return load_into(build(), state).eval(), extra, metadata, True
        except CheckpointError:
            pass  # a corrupt or stale cache entry is simply reproduced and overwritten atomically
    model, extra, metadata = produce()
    save_checkpoint(path, model, extra, metadata)
    return model, extra, metadata, False


def model_metadata(model_name: str, width: int, in_channels: int, num_classes: int, image_size: int, **extra: Any) -> dict:
    """The architecture description stored in a checkpoint so :func:`load_model` can rebuild it."""
    return {"model": model_name, "width": width, "in_channels": in_channels, "num_classes": num_classes,
            "image_size": image_size, **extra}


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
    if "model" not in metadata:
        raise CheckpointError(f"checkpoint {path} has no architecture metadata; save it with `memunlearn train`")
    try:
        model = build_model(metadata["model"], metadata["in_channels"], metadata["num_classes"],
                            width=metadata["width"], image_size=metadata["image_size"])
    except (ConfigError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {path} describes an unknown architecture ({exc})") from exc
    return load_into(model, state, source=f"checkpoint {path}").eval(), extra, metadata
