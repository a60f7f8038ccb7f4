"""Random-label: train on the retain set plus the forget set with wrong labels (SPEC §3).

Official recipe: SalUn's ``RL`` without a mask, its CIFAR-10/SVHN branch
(OPTML-Group/Unlearn-Saliency@a6e89fd Classification/unlearn/RL.py:109-176, optimizer and
scheduler Classification/unlearn/impl.py:68-114, loaders Classification/main_random.py:38-48):
each epoch, first every forget batch with labels drawn uniformly over ALL classes
(``torch.randint`` per batch, RL.py:125), then every retain batch; both loaders shuffled, batches
of 256, the last one partial; SGD momentum 0.9, weight decay 5e-4, a constant rate, and the
arg_parser's unlearning defaults lr 0.01 for 10 epochs (Classification/arg_parser.py:69-72,116-124;
its README gives no random-label command).
"""

from __future__ import annotations

import math
from typing import Callable, Mapping

import torch
from torch import Tensor, nn

from ..data.core import Examples, concat
from ..errors import unknown_name
from ..params import SGD_PARAMS, Choice
from . import Source, register_method
from .base import SCHEDULE, UnlearningRun, UnlearnResult, number_of_classes, train_epochs_ce

SALUN = ("OPTML-Group/Unlearn-Saliency", "a6e89fd")
RELABEL_RULES = ("every-epoch-all", "once-other")
RELABEL = Choice(*RELABEL_RULES, help="every-epoch-all: new labels each epoch over all classes (SalUn/RUM code); "
                                     "once-other: one draw over the other classes (SPEC's earlier rule)")
ORDERS = ("forget-first", "mixed")
ORDER = Choice(*ORDERS, help="forget-first: each epoch all forget batches, then all retain batches (SalUn's "
                             "CIFAR-10 code); mixed: one shuffled set D_r ∪ D_f' (RUM's RL.py, our earlier order)")
# This library's defaults before the official recipes (recipe "ours").
OURS = {"epochs": 5, "lr": 0.02, "batch_size": 64, "schedule": "cosine", "relabel": "once-other", "order": "mixed"}


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

    ``once-other``: D_f is relabelled once, over the other classes, and every epoch sees the same
    labels. ``every-epoch-all`` (SalUn's and RUM's official code): new labels every epoch, drawn
    over all classes.
    """
    num_classes = number_of_classes(run.model, forget)
    if relabel == "once-other":
        fixed = concat(retain, forget.with_labels(random_other_labels(forget.y, num_classes, run.generator)))
        return lambda epoch: fixed
    if relabel == "every-epoch-all":
        return lambda epoch: concat(retain, forget.with_labels(random_any_labels(forget.y, num_classes, run.generator)))
    raise unknown_name("relabel rule", relabel, RELABEL_RULES)


def random_label_training(
    run: UnlearningRun, forget: Examples, retain: Examples, *, epochs: int, lr: float, batch_size: int,
    momentum: float, weight_decay: float, relabel: str, order: str, schedule: str,
) -> None:
    """The training loop random-label and SalUn share (SalUn's run carries its mask).

    ``order="forget-first"`` (SalUn's CIFAR-10 code): each epoch, the shuffled forget batches with
    new labels (``every-epoch-all``: drawn per batch over all classes, as RL.py:125; ``once-other``:
    the labels drawn once, over the other classes), then the shuffled retain batches. Random
    numbers come from ``run.generator`` in the official order: the forget permutation, each forget
    batch's labels, then the retain permutation. ``order="mixed"``: one shuffled set D_r ∪ D_f'
    per epoch (:func:`relabelled_epochs`).
    """
    if relabel not in RELABEL_RULES:
        raise unknown_name("relabel rule", relabel, RELABEL_RULES)
    if order == "mixed":
        train_epochs_ce(run, relabelled_epochs(run, forget, retain, relabel), epochs, lr, batch_size, momentum,
                        weight_decay, schedule=schedule)
        return
    if order != "forget-first":
        raise unknown_name("batch order", order, ORDERS)
    num_classes = number_of_classes(run.model, forget)
    if relabel == "once-other":
        forget = forget.with_labels(random_other_labels(forget.y, num_classes, run.generator))
    optimizer = run.sgd(lr, momentum, weight_decay)
    total = epochs * (math.ceil(len(forget) / batch_size) + math.ceil(len(retain) / batch_size))
    step = 0
    run.model.train()
    for _ in range(epochs):
        for part in (forget, retain):
            for x, y in run.batches(part, batch_size):
                if part is forget and relabel == "every-epoch-all":
                    y = random_any_labels(y, num_classes, run.generator).to(y.device)
                run.schedule(optimizer, schedule, lr, step, total)
                run.step(optimizer, nn.functional.cross_entropy(run.model(x), y), len(y))
                step += 1


def random_label(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    epochs: int = 10,
    lr: float = 0.01,
    batch_size: int = 256,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    relabel: str = "every-epoch-all",
    order: str = "forget-first",
    schedule: str = "constant",
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Relabel the forget examples at random, then train CE on them and D_r.

    ``relabel="every-epoch-all"`` (default, SalUn's and RUM's code): labels are redrawn every
    epoch uniformly over ALL classes (so about 1/C of them are the true label); ``"once-other"``:
    each forget example gets one random label among the OTHER classes for the whole run.
    ``order``: ``forget-first`` (default, SalUn's CIFAR-10 code) or ``mixed`` (see
    :func:`random_label_training`). ``schedule``: ``constant`` (official) or ``cosine``.
    """
    run = UnlearningRun("random-label", model, mask, device=device, seed=seed)
    random_label_training(run, forget, retain, epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum,
                          weight_decay=weight_decay, relabel=relabel, order=order, schedule=schedule)
    return run.finish(dict(epochs=epochs, lr=lr, batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
                           relabel=relabel, order=order, schedule=schedule))


register_method(
    "random-label", random_label,
    params={**SGD_PARAMS, "relabel": RELABEL, "order": ORDER, "schedule": SCHEDULE},
    source=Source(*SALUN, "Classification/unlearn/RL.py", "109-176"),
    recipes={"ours": OURS},
    differences=(
        "random numbers come from the run's seeded generator, not the global RNG (same distribution, reproducible)",
        "a mask is hard: frozen entries are restored bitwise after each step, weight decay included",
    ),
    equivalence="tests/test_official_baselines.py::test_random_label_matches_salun_rl",
)
