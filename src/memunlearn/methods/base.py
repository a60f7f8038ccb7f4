"""Machinery every unlearning method shares: masks as hard constraints, steps, cost records.

A mask is a mapping from parameter name to a boolean tensor of the parameter's shape
(``memunlearn.localization.Mask`` is one). Masking the gradient alone is not enough:
momentum and weight decay would still move "frozen" entries. So after every optimizer step the
frozen entries are copied back from the original model, which keeps them bitwise identical.
"""

from __future__ import annotations

import copy
import itertools
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

from ..data.core import Examples
from ..errors import unknown_name
from ..localization.mask import validate_mask
from ..models import classifier_parameter_names
from ..params import Choice
from ..training import check_finite, cosine_lr, get_device


HEARTBEAT_SECONDS = 15.0
# The learning-rate schedules of the RUM/SalUn baselines. ``constant`` is their official code's: a
# MultiStepLR whose milestones (epochs 91 and 136) an unlearning run never reaches; ``cosine`` is
# this library's earlier per-batch cosine to ``final_lr_fraction``·lr (0 by default).
SCHEDULES = ("constant", "cosine")
SCHEDULE = Choice(*SCHEDULES, help="learning-rate schedule: constant (official RUM/SalUn code) or a per-batch "
                                   "cosine to 0 (this library's earlier default)")


@dataclass
class Cost:
    """What an unlearning run cost and how much of the model it touched."""

    wall_time: float = 0.0
    steps: int = 0
    examples: int = 0
    params_changed: int = 0
    params_changed_fraction: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class UnlearnResult:
    model: nn.Module
    method: str
    cost: Cost
    hparams: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # what else the method reports (e.g. its mask per layer)


class UnlearningRun:
    """A working copy of the model plus the bookkeeping a method needs.

    Args:
        name: the method's name (used in divergence errors).
        original: the model to unlearn from; it is never modified.
        mask: optional hard constraint; only entries where it is True may change.
        always_trainable: parameter names trainable in full regardless of the mask
            (DEL's classifier).
        device: where to compute; ``auto`` picks CUDA when present.
        seed: seeds torch's RNG and the data order.
    """

    def __init__(
        self,
        name: str,
        original: nn.Module,
        mask: Mapping[str, Tensor] | None = None,
        always_trainable: tuple[str, ...] = (),
        device: str | torch.device | None = "auto",
        seed: int = 0,
    ):
        self.name = name
        self.device = get_device(device)
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.model = copy.deepcopy(original).to(self.device)
        self.original_state = {n: p.detach().clone() for n, p in self.model.named_parameters()}
        self.steps = 0
        self.examples = 0
        self._start = self._last_heartbeat = time.perf_counter()
        self.allowed: dict[str, Tensor] | None = None
        if mask is not None:
            allowed = validate_mask(mask, self.model)
            for n in always_trainable:
                allowed[n] = torch.ones_like(allowed[n])
            self.allowed = {n: m.to(self.device) for n, m in allowed.items()}
            for n, p in self.model.named_parameters():
                p.requires_grad_(bool(self.allowed[n].any()))

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.model.parameters() if p.requires_grad]

    def sgd(self, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4) -> torch.optim.SGD:
        return torch.optim.SGD(self.trainable_parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)

    def step(
        self, optimizer: torch.optim.Optimizer, loss: Tensor, batch_examples: int, max_grad_norm: float | None = None
    ) -> None:
        """One gradient step on ``loss``, then re-impose the mask; stops on a non-finite loss.

        ``max_grad_norm``, if given, rescales the gradient (all trainable parameters together)
        to at most that norm before the step.
        """
        check_finite(loss, self.name, self.steps)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.trainable_parameters(), max_grad_norm)
        optimizer.step()
        self.enforce_mask()
        self.steps += 1
        self.examples += batch_examples
        self._heartbeat()

    def _heartbeat(self) -> None:
        """A progress line on stderr every HEARTBEAT_SECONDS of a long method (quick ones print nothing)."""
        now = time.perf_counter()
        if now - self._last_heartbeat >= HEARTBEAT_SECONDS:
            self._last_heartbeat = now
            print(f"{self.name}: {self.steps} steps, {self.examples} examples, {now - self._start:.0f}s",
                  file=sys.stderr, flush=True)

    @torch.no_grad()
    def enforce_mask(self) -> None:
        """Copy frozen entries back from the original: bitwise identical whatever the optimizer did."""
        if self.allowed is None:
            return
        for n, p in self.model.named_parameters():
            allowed = self.allowed[n]
            if p.requires_grad and not bool(allowed.all()):
                p.copy_(torch.where(allowed, p, self.original_state[n]))

    def batches(self, examples: Examples, batch_size: int, shuffle: bool = True) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in examples.batches(batch_size, shuffle=shuffle, generator=self.generator):
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def endless_batches(self, examples: Examples, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """Batches of ``examples``, reshuffled and cycled forever (for forget batches)."""
        for _ in itertools.count():
            yield from self.batches(examples, batch_size)

    def cosine(self, optimizer: torch.optim.Optimizer, base_lr: float, step: int, total: int, final: float = 0.0) -> None:
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(base_lr, step, total, final)

    def schedule(self, optimizer: torch.optim.Optimizer, schedule: str, base_lr: float, step: int, total: int,
                 final: float = 0.0) -> None:
        """Set the rate of step ``step`` of ``total``: ``constant`` keeps ``base_lr``; ``cosine`` anneals it."""
        if schedule == "cosine":
            self.cosine(optimizer, base_lr, step, total, final)
        elif schedule == "constant":
            for group in optimizer.param_groups:
                group["lr"] = base_lr
        else:
            raise unknown_name("learning-rate schedule", schedule, SCHEDULES)

    def finish(self, hparams: dict[str, Any]) -> UnlearnResult:
        """Measure what changed and package the result (model in eval mode, on the CPU).

        Raises:
            DivergedError: a weight became NaN or infinite (a finite last loss does not rule it out).
        """
        from ..training import check_weights_finite

        wall = time.perf_counter() - self._start
        check_weights_finite(self.model, self.name)
        changed = total = 0
        with torch.no_grad():
            for n, p in self.model.named_parameters():
                changed += int((p != self.original_state[n]).sum())
                total += p.numel()
        self.model.eval()
        for p in self.model.parameters():
            p.requires_grad_(True)
        cost = Cost(wall, self.steps, self.examples, changed, changed / max(total, 1))
        return UnlearnResult(self.model.cpu(), self.name, cost, hparams)


def train_epochs_ce(
    run: UnlearningRun,
    examples: Examples | Callable[[int], Examples],
    epochs: int,
    lr: float,
    batch_size: int,
    momentum: float,
    weight_decay: float,
    final_lr_fraction: float = 0.0,
    extra_loss=None,
    lr_per_epoch: bool = False,
    schedule: str = "cosine",
) -> None:
    """Cross-entropy training of ``run.model`` on ``examples`` (shuffled batches from ``run.generator``).

    ``schedule="cosine"`` (this function's default): the cosine is stepped every batch and reaches
    ``final_lr_fraction``·lr at the last step; with ``lr_per_epoch`` it is stepped once per epoch
    instead (:func:`epoch_cosine_lr`, the official DEL code's schedule), so the last epoch's rate
    stays above the floor. ``schedule="constant"``: lr throughout (the RUM/SalUn baselines' code).
    ``extra_loss(step, total_steps)``, if given, is added to each batch's loss (e.g. an L1 term).
    ``examples`` may be a function ``epoch -> Examples`` (each epoch the same size; e.g. forget
    labels redrawn every epoch); it is called once per epoch, in order.
    """
    examples_of = examples if callable(examples) else (lambda epoch: examples)
    first = examples_of(0)
    optimizer = run.sgd(lr, momentum, weight_decay)
    total = epochs * math.ceil(len(first) / batch_size)
    step = 0
    run.model.train()
    for epoch in range(epochs):
        for x, y in run.batches(first if epoch == 0 else examples_of(epoch), batch_size):
            if lr_per_epoch and schedule == "cosine":
                for group in optimizer.param_groups:
                    group["lr"] = epoch_cosine_lr(lr, epoch, epochs, final_lr_fraction)
            else:
                run.schedule(optimizer, schedule, lr, step, total, final_lr_fraction)
            loss = nn.functional.cross_entropy(run.model(x), y)
            if extra_loss is not None:
                loss = loss + extra_loss(step, total)
            run.step(optimizer, loss, len(y))
            step += 1


def epoch_cosine_lr(base_lr: float, epoch: int, epochs: int, final_fraction: float) -> float:
    """The rate of epoch ``epoch`` (from 0) under torch's ``CosineAnnealingLR(T_max=epochs,
    eta_min=final_fraction·base_lr)`` stepped once per epoch: the floor would be reached only at
    epoch ``epochs``, one past the last.

    Example:
        >>> [round(epoch_cosine_lr(1.0, e, 2, 0.0), 3) for e in range(2)]
        [1.0, 0.5]
    """
    floor = final_fraction * base_lr
    return floor + 0.5 * (base_lr - floor) * (1 + math.cos(math.pi * epoch / max(epochs, 1)))


def classifier_names(model: nn.Module, layer: str | None = None, num_classes: int | None = None) -> tuple[str, ...]:
    return tuple(classifier_parameter_names(model, layer, num_classes))


def number_of_classes(model: nn.Module, examples: Examples) -> int:
    """The model's output width, read from one eval-mode forward pass (the model's mode is kept)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        device = next(model.parameters()).device
        first, _ = next(iter(examples.batches(1)))  # works for in-memory and streamed examples alike
        width = int(model(first.to(device)).shape[1])
    model.train(was_training)
    return width
