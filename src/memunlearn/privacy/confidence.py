"""The per-example statistic both privacy attacks read off a model: logit-scaled confidence.

φ(model, x) = log p_y − log Σ_{c≠y} p_c (SPEC §6), the statistic of LiRA, U-LiRA and the NeurIPS
2023 unlearning challenge. Two implementations:

- :func:`logit_confidence`: exact. Since log p_c = z_c − logsumexp(z), φ = z_y − logsumexp_{c≠y} z_c,
  computed in float64 with no probability ever formed, so it never saturates.
- :func:`official_logit_confidence`: the challenge's own code (google-deepmind/unlearning_evaluation,
  metric.py, ``compute_logit_scaled_confidence``) transcribed operation for operation: softmax in
  the logits' dtype, then ``log(p_y + 1e-45) − log(Σ_{c≠y} p_c + 1e-45)``. The two agree to float
  rounding while the model is unsure, but with float32 logits the official one saturates once
  the true-class margin passes ≈ 87–104 (the other classes' probabilities underflow), so very
  confident models all get φ ≈ +103.6.

Both take numpy arrays or CPU tensors and import nothing heavier than numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# The official code's guard against log(0) (metric.py): it caps |φ| at about -log(1e-45) = 103.6.
OFFICIAL_LOG_GUARD = 1e-45


def _check(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must be [examples, classes] with at least 2 classes, got shape {z.shape}")
    if y.shape != (z.shape[0],):
        raise ValueError(f"labels must be one integer per example ({z.shape[0]}), got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got dtype {y.dtype}")
    if len(y) and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"labels must be in [0, {z.shape[1] - 1}], got values in [{y.min()}, {y.max()}]")
    return z, y.astype(np.int64)


def logit_confidence(logits: Any, labels: Any) -> np.ndarray:
    """φ = log p_y − log Σ_{c≠y} p_c per example, computed exactly from the logits.

    Args:
        logits: [n, C] scores (numpy array or CPU tensor, any float dtype), C ≥ 2.
        labels: [n] integer labels in [0, C).

    Returns:
        [n] float64 array; +large for a confident correct prediction, negative for a wrong one.

    Raises:
        ValueError: shapes that do not fit, fewer than 2 classes, labels out of range.

    Example:
        >>> round(float(logit_confidence([[2.0, 0.0, 0.0]], [0])[0]), 4)  # 2 − log(e⁰ + e⁰)
        1.3069
    """
    z, y = _check(logits, labels)
    z = z.astype(np.float64)
    rows = np.arange(len(y))
    true = z[rows, y]
    others = z.copy()
    others[rows, y] = -np.inf
    top = others.max(axis=1)
    return true - (top + np.log(np.exp(others - top[:, None]).sum(axis=1)))


def official_logit_confidence(logits: Any, labels: Any) -> np.ndarray:
    """The NeurIPS 2023 challenge's φ, operation for operation (saturates near ±103.6).

    metric.py subtracts the row maximum in the logits' own dtype, exponentiates in that dtype,
    converts to float64, normalises, and returns ``log(p_y + 1e-45) − log(Σ_{c≠y} p_c + 1e-45)``.
    Use it where the score must match the challenge's; use :func:`logit_confidence` otherwise.

    Args:
        logits: [n, C] scores; pass them in the dtype the model produced (float32 in the challenge).
        labels: [n] integer labels.

    Returns:
        [n] float64 array.

    Raises:
        ValueError: as :func:`logit_confidence`.

    Example:
        >>> big = np.array([[200.0, 0.0]], dtype=np.float32)
        >>> round(float(official_logit_confidence(big, [0])[0]), 1), float(logit_confidence(big, [0])[0])
        (103.6, 200.0)
    """
    z, y = _check(logits, labels)
    z = np.array(z, copy=True)
    z = z - np.max(z, axis=1, keepdims=True)
    probs = np.array(np.exp(z), dtype=np.float64)
    probs /= np.sum(probs, axis=1, keepdims=True)
    rows = np.arange(len(y))
    correct = probs[rows, y]
    probs[rows, y] = 0
    wrong = np.sum(probs, axis=1)
    return np.log(correct + OFFICIAL_LOG_GUARD) - np.log(wrong + OFFICIAL_LOG_GUARD)


__all__ = ["logit_confidence", "official_logit_confidence"]
