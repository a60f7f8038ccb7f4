"""Per-class and per-example views of a model on a split, for the report's heat map and gallery.

Computed from the same predictions as the metrics (:func:`~memunlearn.evaluation.evaluate` fills
them in), so they cost no extra inference:

- ``per_class``: accuracy per class on the forget, retain and test sets (``None`` for a class
  with no example in that set).
- the true-label probability of every forget example, kept in memory only: a method's
  *exposed* examples are the forget examples on which its probability of the true label exceeds
  the oracle's by the largest margin (what the model still knows about them that a retrain would
  not), recorded with :func:`exposed_examples`.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import torch

EXPOSED_PER_MODEL = 6  # forget examples recorded per model and seed
SPLITS = ("forget", "retain", "test")


def per_class_accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> list[float | None]:
    """Accuracy per class (``None`` where the set has no example of the class).

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
        >>> per_class_accuracy(logits, torch.tensor([0, 0, 1]), 3)
        [0.5, 0.0, None]
    """
    correct = (logits.argmax(1) == labels).float()
    out: list[float | None] = []
    for c in range(num_classes):
        mask = labels == c
        out.append(float(correct[mask].mean()) if bool(mask.any()) else None)
    return out


def model_views(outputs: dict[str, tuple[torch.Tensor, torch.Tensor]], num_classes: int) -> dict[str, Any]:
    """``{"per_class": {split: [...]}, "forget_confidence": array, "forget_predicted": array}``."""
    views: dict[str, Any] = {"per_class": {name: per_class_accuracy(*outputs[name], num_classes)
                                           for name in SPLITS if name in outputs}}
    if "forget" in outputs:
        logits, labels = outputs["forget"]
        views["forget_confidence"] = torch.softmax(logits.float(), 1).gather(1, labels[:, None]).squeeze(1).numpy()
        views["forget_predicted"] = logits.argmax(1).numpy()
    return views


def exposed_examples(views: dict[str, Any], oracle_views: dict[str, Any], forget_indices: np.ndarray,
                     labels: np.ndarray, scores: np.ndarray | None = None,
                     k: int = EXPOSED_PER_MODEL) -> list[dict[str, Any]]:
    """The ``k`` forget examples whose true-label probability most exceeds the oracle's.

    Each: the training-set ``index``, its ``label``, the model's ``predicted`` class, its
    ``confidence`` (probability of the true label), the oracle's, the ``margin`` between them and,
    when the forget set was chosen by a memorization score, that ``memorization`` score.
    """
    mine, oracle = views["forget_confidence"], oracle_views["forget_confidence"]
    margin = mine - oracle
    order = np.lexsort((np.arange(len(margin)), -margin))[:k]  # largest margin first, ties by position
    out = []
    for i in order:
        index = int(forget_indices[i])
        entry = {"index": index, "label": int(labels[i]), "predicted": int(views["forget_predicted"][i]),
                 "confidence": float(mine[i]), "oracle_confidence": float(oracle[i]), "margin": float(margin[i])}
        if scores is not None:
            entry["memorization"] = float(scores[index])
        out.append(entry)
    return out


def thumbnail(image: torch.Tensor) -> str | None:
    """A PNG ``data:`` URI of one image (C×H×W, any scale; min-max stretched), or None if it is not
    an image (1 or 3 channels, at least 4×4 pixels)."""
    from PIL import Image

    if image.dim() != 3 or image.shape[0] not in (1, 3) or min(image.shape[1:]) < 4:
        return None
    array = image.detach().float().cpu().numpy()
    low, high = float(array.min()), float(array.max())
    array = (array - low) / (high - low) if high > low else np.zeros_like(array)
    pixels = (255 * array).round().astype(np.uint8)
    picture = Image.fromarray(pixels[0], "L") if pixels.shape[0] == 1 else Image.fromarray(pixels.transpose(1, 2, 0), "RGB")
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def example_thumbnails(images: torch.Tensor, indices: set[int]) -> dict[str, str]:
    """``{str(index): data URI}`` for the given training-set indices (none for non-image data)."""
    out = {}
    for index in sorted(indices):
        uri = thumbnail(images[index])
        if uri is None:
            return {}
        out[str(index)] = uri
    return out
