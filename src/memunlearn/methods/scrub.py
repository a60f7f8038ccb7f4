"""SCRUB: a student that stays close to the teacher on D_r and moves away from it on D_f (SPEC §3)."""

from __future__ import annotations

import copy
import math
from typing import Mapping

import torch
from torch import Tensor, nn

from ..data.core import Examples
from ..params import LR, MAX_GRAD_NORM, SGD_PARAMS, Float, Int
from . import register_method
from .base import UnlearningRun, UnlearnResult


def distill_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL_T(teacher ‖ student) = T²·mean over the batch of KL(softmax(t/T) ‖ softmax(s/T)).

    Example:
        >>> logits = torch.tensor([[1.0, 2.0, 0.5]])
        >>> float(distill_kl(logits, logits, 4.0))
        0.0
    """
    log_student = nn.functional.log_softmax(student_logits / temperature, dim=1)
    teacher = nn.functional.softmax(teacher_logits / temperature, dim=1)
    return nn.functional.kl_div(log_student, teacher, reduction="sum") * temperature**2 / len(student_logits)


def scrub(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    epochs: int = 5,
    msteps: int = 2,
    lr: float = 0.02,
    alpha: float = 0.001,
    gamma: float = 0.99,
    temperature: float = 4.0,
    batch_size: int = 64,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    max_grad_norm: float = 5.0,
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """Teacher = frozen original, student starts at the original.

    For the first ``msteps`` epochs a max-step pass over D_f maximises KL_T(teacher‖student);
    every epoch a min-step pass over D_r minimises γ·CE + α·KL_T(teacher‖student). Defaults
    follow the official code (α=0.001, γ=0.99, T=4, msteps=2) with a learning rate for small data.

    The max-step is an ascent on an unbounded objective (KL → ∞ as the student's logits run away):
    its gradient is clipped to norm ≤ ``max_grad_norm`` (default 5), as in
    :func:`~memunlearn.methods.neggrad.neggrad`; the min-steps are not clipped. Without it SCRUB
    went NaN at step 44 at its defaults on Fashion-MNIST's MLP (10k subset).
    """
    run = UnlearningRun("scrub", model, mask, device=device, seed=seed)
    teacher = copy.deepcopy(model).to(run.device).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    optimizer = run.sgd(lr, momentum, weight_decay)
    per_forget, per_retain = math.ceil(len(forget) / batch_size), math.ceil(len(retain) / batch_size)
    total = min(msteps, epochs) * per_forget + epochs * per_retain
    step = 0
    for epoch in range(epochs):
        run.model.train()
        if epoch < msteps:
            for x, _ in run.batches(forget, batch_size):
                run.cosine(optimizer, lr, step, total)
                with torch.no_grad():
                    target = teacher(x)
                run.step(optimizer, -distill_kl(run.model(x), target, temperature), len(x), max_grad_norm)
                step += 1
        for x, y in run.batches(retain, batch_size):
            run.cosine(optimizer, lr, step, total)
            with torch.no_grad():
                target = teacher(x)
            logits = run.model(x)
            loss = gamma * nn.functional.cross_entropy(logits, y) + alpha * distill_kl(logits, target, temperature)
            run.step(optimizer, loss, len(x))
            step += 1
    return run.finish(dict(epochs=epochs, msteps=msteps, lr=lr, alpha=alpha, gamma=gamma, temperature=temperature,
                           batch_size=batch_size, momentum=momentum, weight_decay=weight_decay,
                           max_grad_norm=max_grad_norm))


register_method("scrub", scrub, params={
    **SGD_PARAMS, "lr": LR.with_search((1e-4, 2e-2)),
    "msteps": Int(low=0, search=(0, 5), help="epochs with a max-step over the forget set"),
    "alpha": Float(low=0, search=(1e-4, 1.0), log=True, help="weight of the KL term in the min-step"),
    "gamma": Float(low=0, search=(0.5, 1.0), help="weight of the CE term in the min-step"),
    "temperature": Float(low=0, low_open=True, help="distillation temperature"),
    "max_grad_norm": MAX_GRAD_NORM,
})
