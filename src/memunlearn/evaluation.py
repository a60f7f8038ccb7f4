"""Evaluation against the oracle (SPEC §6): accuracy gaps, ToW, membership inference.

All accuracies are fractions in [0, 1]; reports show them as percentages.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from .data.core import Examples, StreamedExamples, as_examples
from .errors import DivergedError
from .training import check_weights_finite, get_device, predict_logits

METRICS_FROM_ORACLE = ("gap_forget", "gap_retain", "gap_test", "gap_mia", "tow", "tow_mia")


def tow(gap_forget: float, gap_retain: float, gap_test: float) -> float:
    """Tug-of-war: (1 − Δf)(1 − Δr)(1 − Δt); 1 means the oracle's accuracies exactly.

    Example:
        >>> round(tow(0.1, 0.0, 0.05), 4)
        0.855
    """
    return (1 - gap_forget) * (1 - gap_retain) * (1 - gap_test)


def tow_mia(gap_mia: float, gap_retain: float, gap_test: float) -> float:
    """ToW with the forget-accuracy gap replaced by the MIA-efficacy gap."""
    return (1 - gap_mia) * (1 - gap_retain) * (1 - gap_test)


def true_label_probabilities(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return torch.softmax(logits, 1).gather(1, labels[:, None]).squeeze(1).numpy()


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    return nn.functional.cross_entropy(logits, labels, reduction="none").numpy()


def mia_efficacy(
    retain_confidence: np.ndarray,
    test_confidence: np.ndarray,
    forget_confidence: np.ndarray,
    seed: int = 0,
) -> float:
    """SalUn's MIA-efficacy: the fraction of the forget set an SVC attacker calls non-member.

    The attacker is an RBF SVC (C=3, gamma='auto') on the true-label probability, trained on
    |D_t| retain examples (members, label 1) against the test set (non-members, label 0), balanced.
    """
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    n = min(len(retain_confidence), len(test_confidence))
    members = rng.choice(retain_confidence, size=n, replace=False)
    non_members = rng.choice(test_confidence, size=n, replace=False)
    features = np.concatenate([members, non_members])[:, None]
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    attacker = SVC(C=3, gamma="auto", kernel="rbf").fit(features, labels)
    return float(1 - attacker.predict(forget_confidence[:, None]).mean())


def loss_mia(forget_loss: np.ndarray, test_loss: np.ndarray, seed: int = 0, folds: int = 5) -> dict[str, float]:
    """The NeurIPS 2023 challenge's simple MIA: logistic regression on the loss, forget vs test.

    Balanced by subsampling the larger side; cross-validated accuracy and AUC (0.5 = the attacker
    cannot tell the forget set from unseen data).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_validate

    rng = np.random.default_rng(seed)
    n = min(len(forget_loss), len(test_loss))
    folds = min(folds, n)
    if folds < 2:
        return {"loss_mia_accuracy": float("nan"), "loss_mia_auc": float("nan")}
    features = np.concatenate([rng.choice(forget_loss, n, replace=False), rng.choice(test_loss, n, replace=False)])
    labels = np.concatenate([np.ones(n), np.zeros(n)])
    scores = cross_validate(
        LogisticRegression(),
        features[:, None],
        labels,
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        scoring=("accuracy", "roc_auc"),
    )
    return {"loss_mia_accuracy": float(scores["test_accuracy"].mean()), "loss_mia_auc": float(scores["test_roc_auc"].mean())}


def evaluate(
    model: nn.Module,
    forget: Examples | Any,
    retain: Examples | Any,
    test: Examples | Any,
    device: str | torch.device | None = "auto",
    seed: int = 0,
    outputs: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> dict[str, float]:
    """Accuracies on forget/retain/test, SVC MIA-efficacy and the loss-LR MIA of one model.

    Args:
        model: the model to evaluate (eval mode is used).
        forget, retain, test: the three example sets of the split: :class:`Examples`, or torch
            ``Dataset``/``DataLoader`` objects of ``(input, label)`` (see
            :func:`~memunlearn.data.as_examples`; large ones are streamed, in one pass each).
        device: where to run inference.
        seed: seed of the attacks' subsampling.
        outputs: if given, filled with ``{"forget"|"retain"|"test": (logits, labels)}``, the
            predictions the metrics were computed from (for per-class and per-example views).

    Returns:
        ``{"acc_forget", "acc_retain", "acc_test", "mia_efficacy", "loss_mia_accuracy", "loss_mia_auc"}``.

    Raises:
        DivergedError: the model has NaN or infinite weights, or produces NaN or infinite outputs
            (nothing about such a model can be scored).

    Example:
        >>> metrics = evaluate(model, forget, retain, data.test)  # doctest: +SKIP
    """
    what = f"the evaluated model ({type(model).__name__})"
    check_weights_finite(model, what)
    outputs = {} if outputs is None else outputs
    for name, data in (("forget", forget), ("retain", retain), ("test", test)):
        logits, labels = _logits_and_labels(model, as_examples(data, name=name), device)
        if not bool(torch.isfinite(logits).all()):
            bad = int((~torch.isfinite(logits)).any(1).sum())
            raise DivergedError(what, reason=f"its outputs are NaN or infinite on {bad} {name} examples")
        outputs[name] = (logits, labels)
    metrics = {f"acc_{name}": float((logits.argmax(1) == y).float().mean()) for name, (logits, y) in outputs.items()}
    confidence = {name: true_label_probabilities(*pair) for name, pair in outputs.items()}
    metrics["mia_efficacy"] = mia_efficacy(confidence["retain"], confidence["test"], confidence["forget"], seed)
    metrics.update(loss_mia(per_example_loss(*outputs["forget"]), per_example_loss(*outputs["test"]), seed))
    return metrics


@torch.no_grad()
def _logits_and_labels(
    model: nn.Module, examples: Examples | StreamedExamples, device: str | torch.device | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode logits and the labels they belong to; a streamed set gives both in one pass."""
    if isinstance(examples, Examples):
        return predict_logits(model, examples, device), examples.y
    device = get_device(device)
    was_training = model.training
    model.eval().to(device)
    logits, labels = [], []
    for x, y in examples.batches(1024):
        logits.append(model(x.to(device)).float().cpu())
        labels.append(y)
    model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def compare_to_oracle(metrics: Mapping[str, float], oracle: Mapping[str, float]) -> dict[str, float]:
    """Gaps to the oracle and the ToW scores built from them."""
    gaps = {
        "gap_forget": abs(metrics["acc_forget"] - oracle["acc_forget"]),
        "gap_retain": abs(metrics["acc_retain"] - oracle["acc_retain"]),
        "gap_test": abs(metrics["acc_test"] - oracle["acc_test"]),
        "gap_mia": abs(metrics["mia_efficacy"] - oracle["mia_efficacy"]),
    }
    gaps["tow"] = tow(gaps["gap_forget"], gaps["gap_retain"], gaps["gap_test"])
    gaps["tow_mia"] = tow_mia(gaps["gap_mia"], gaps["gap_retain"], gaps["gap_test"])
    return gaps


def mean_interval(values: Iterable[float], confidence: float = 0.95) -> dict[str, Any]:
    """Mean and two-sided Student-t interval; with one value the half-width is NaN.

    Example:
        >>> r = mean_interval([1.0, 2.0, 3.0])
        >>> r["mean"], round(r["half_width"], 4)
        (2.0, 2.4841)
    """
    from scipy import stats

    array = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    n = len(array)
    if n == 0:
        return {"mean": float("nan"), "half_width": float("nan"), "low": float("nan"), "high": float("nan"), "n": 0}
    mean = float(array.mean())
    if n == 1:
        half = float("nan")
    else:
        half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * array.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "half_width": half, "low": mean - half, "high": mean + half, "n": n}
