"""Random-label: train on the retain set plus the forget set with wrong labels (SPEC §3)."""

from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from ..data.core import Examples, concat
from ..errors import unknown_name
from ..params import SGD_PARAMS, Choice
from . import register_method
from .base import UnlearningRun, UnlearnResult, number_of_classes, train_epochs_ce

RELABEL_RULES = ("once-other", "every-epoch-all")
RELABEL = Choice(*RELABEL_RULES, help="once-other: one draw over the other classes (SPEC); "
                                     "every-epoch-all: a new draw each epoch over all classes (SalUn/RUM code)")


def random_other_labels(labels: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """For each label, a class drawn uniformly from the OTHER ``num_classes - 1`` classes."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator)
    return (labels + shift) % num_classes


def random_any_labels(labels: Tensor, num_classes: int, generator: torch.Generator) -> Tensor:
    """For each label, a class drawn uniformly from ALL ``num_classes`` classes (it may be the true one)."""
    return torch.randint(0, num_classes, labels.shape, generator=generator)


def relabelled_epochs(
    run: UnlearningRun, forget: Examples, retain: Examples, relabel: str = "once-other"
) -> Callable[[int], Examples]:
    """Each epoch's training set D_r ∪ D_f' (relabelled forget examples last), for :func:`train_epochs_ce`.

    ``once-other`` (SPEC §3): D_f is relabelled once, over the other classes, and every epoch
    sees the same labels. ``every-epoch-all`` (SalUn's and RUM's official code): new labels every
    epoch, drawn over all classes.
    """
    num_classes = number_of_classes(run.model, forget)
    if relabel == "once-other":
        fixed = concat(retain, forget.with_labels(random_other_labels(forget.y, num_classes, run.generator)))
        return lambda epoch: fixed
    if relabel == "every-epoch-all":
        return lambda epoch: concat(retain, forget.with_labels(random_any_labels(forget.y, num_classes, run.generator)))
    raise unknown_name("relabel rule", relabel, RELABEL_RULES)


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
    relabel: str = "once-other",
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Relabel the forget examples at random, then train CE on D_r ∪ D_f'.

    ``relabel="once-other"`` (default, SPEC §3): each forget example gets one random label among
    the OTHER classes for the whole run. ``relabel="every-epoch-all"``: as SalUn's and RUM's
    official code, labels are redrawn every epoch uniformly over ALL classes (so about 1/C of
    them are the true label).
    """
    run = UnlearningRun("random-label", model, mask, device=device, seed=seed)
    epoch_examples = relabelled_epochs(run, forget, retain, relabel)
    train_epochs_ce(run, epoch_examples, epochs, lr, batch_size, momentum, weight_decay)
    return run.finish(dict(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
                           relabel=relabel))


register_method("random-label", random_label, params={**SGD_PARAMS, "relabel": RELABEL})
