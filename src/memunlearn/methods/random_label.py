"""Random-label: train on the retain set plus the forget set with wrong labels (SPEC §3)."""

from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor, nn

from ..data.core import Examples, concat
from ..params import SGD_PARAMS
from . import register_method
from .base import UnlearningRun, UnlearnResult, number_of_classes, train_epochs_ce


def random_other_labels(labels: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """For each label, a class drawn uniformly from the OTHER ``num_classes - 1`` classes."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + shift) % num_classes


def relabelled_training_set(run: UnlearningRun, forget: Examples, retain: Examples) -> Examples:
    num_classes = number_of_classes(run.model, forget)
    return concat(retain, forget.with_labels(random_other_labels(forget.y, num_classes, run.generator)))


def random_label(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    epochs: int = 5,
    lr: float = 0.02,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Relabel each forget example once, at random over the other classes, then train CE on D_r ∪ D_f'."""
    run = UnlearningRun("random-label", model, mask, device=device, seed=seed)
    train_epochs_ce(run, relabelled_training_set(run, forget, retain), epochs, lr, batch_size, momentum, weight_decay)
    return run.finish(dict(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay))


register_method("random-label", random_label, params=SGD_PARAMS)
