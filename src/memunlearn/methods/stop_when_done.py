"""Stop when done: end an epoch-based unlearning method as soon as a cheap estimate says the oracle's
behaviour is reached (issue 14, "beyond the papers").

The oracle (a model retrained without D_f) has never seen the forget set, so on D_f it behaves like
on held-out data: for an iid forget set its forget accuracy ≈ its accuracy on a validation set held
out of training; for a class-concentrated forget set ≈ its per-class validation accuracy on the
forget set's classes, weighted by the forget set's class mix. We do not have the oracle, so after
each epoch the CURRENT model's forget accuracy is compared with the CURRENT model's validation
estimate, and the method stops at the first check where

    forget accuracy ≤ validation estimate + tolerance.

The test is one-sided on purpose: a method that overshoots (forget accuracy falls below the estimate
in one epoch) has passed the point where more training helps; a two-sided test would then run to
``max_epochs``. The signed gap of every check is recorded, so an overshoot is visible.

The validation set must be held out of the training data. Retain examples cannot stand in for it:
they are training members, so their accuracy is training accuracy, not held-out accuracy.

Two ways to run a method "until done":

- ``restart``: run the method with ``epochs=k`` for k = check_every, 2·check_every, … and keep the
  first run that passes. Exact (the result IS the method at k epochs, with its own schedule) and
  works for every registered method that takes epochs, but costs the sum of all runs (about k²/2
  epochs for k·check_every epochs).
- ``truncate``: run the method once with ``epochs=max_epochs`` and stop after the first epoch that
  passes. Costs only the epochs actually run, but the result is the method's ``max_epochs``
  schedule cut short (its learning rate has not decayed), not the method at k epochs. It needs a
  per-epoch hook, which :func:`memunlearn.methods.base.train_epochs_ce` does not have; methods that
  take ``on_epoch_end`` (this issue's methods) and ``finetune`` (through a local copy of its loop,
  :func:`_finetune_with_hook`) support it. The change base.py needs: ``train_epochs_ce(...,
  on_epoch_end: EpochHook | None = None)`` calling it after each epoch and returning early on True;
  then every finetune-like method could pass it through.

The total cost records every epoch actually run (all restarts) and the accuracy checks (forward
passes over D_f and the validation set, counted in ``examples`` and listed as ``check_examples``).

Registration: the registry calls methods as ``(model, forget, retain, mask, **hyperparameters)``
and ``unlearn``/the experiment core pass no validation set, so a registered ``stop-when-done``
would fail every default run (``memunlearn run`` runs every registered method) and the
"defaults never diverge" contract. It is therefore registered only on request,
:func:`register_stop_when_done`, until the experiment core passes a validation split (one held out
of training, distinct from the split it scores on) to methods that declare they need one.
"""

from __future__ import annotations

import inspect
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

import torch
from torch import Tensor, nn

from ..data.core import Examples
from ..errors import ConfigError
from ..params import Choice, Float, Int
from ..training import accuracy, cosine_lr
from . import METHODS, available_methods, check_hparams, get_method, method_defaults, register_method
from .base import Cost, UnlearningRun, UnlearnResult

EpochHook = Callable[[int, nn.Module], bool]
"""``on_epoch_end(epochs_completed, model) -> stop?``: called after each epoch; True ends training."""

LrAt = Callable[[int, int, int], float]
"""``lr_at(epoch, step, total_steps)``: the learning rate of one step."""

NAME = "stop-when-done"
MODES = ("auto", "restart", "truncate")
TARGETS = ("auto", "iid", "classes")
CRITERIA = ("accuracy", "audit")


def epoch_ce_training(
    run: UnlearningRun,
    examples: Examples,
    epochs: int,
    lr_at: LrAt,
    batch_size: int,
    momentum: float,
    weight_decay: float,
    *,
    class_weights: Tensor | None = None,
    on_epoch_end: EpochHook | None = None,
    after_epoch: Callable[[int], None] | None = None,
    loss_of: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> int:
    """Cross-entropy training of ``run.model`` on ``examples`` with a per-epoch hook; returns the
    number of epochs run.

    A copy of :func:`~memunlearn.methods.base.train_epochs_ce`'s loop (same optimizer, batch order
    and step accounting) with a learning-rate function instead of fixed schedules, optional class
    weights, ``on_epoch_end`` (stop early) and ``after_epoch(epoch)`` (a method's own action after
    an epoch it continues from, e.g. noise before the last epoch). ``loss_of(logits, labels)``, if
    given, replaces the (class-weighted) cross-entropy. Kept here because base.py is
    being edited elsewhere; see the module docstring for the base.py change that would replace it.
    """
    optimizer = run.sgd(lr_at(0, 0, 1), momentum, weight_decay)
    total = epochs * math.ceil(len(examples) / batch_size)
    step = 0
    run.model.train()
    for epoch in range(epochs):
        run.model.train()  # a hook's evaluation leaves the model as it found it; be explicit anyway
        for x, y in run.batches(examples, batch_size):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch, step, total)
            logits = run.model(x)
            loss = (loss_of(logits, y) if loss_of is not None
                    else nn.functional.cross_entropy(logits, y, weight=class_weights))
            run.step(optimizer, loss, len(y))
            step += 1
        if on_epoch_end is not None and on_epoch_end(epoch + 1, run.model):
            return epoch + 1
        if after_epoch is not None:
            after_epoch(epoch)
    return epochs


def _finetune_with_hook(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    on_epoch_end: EpochHook | None = None,
    **hparams: Any,
) -> UnlearnResult:
    """``finetune`` (same defaults, schedule and batch order; bitwise identical when never stopped)
    with a per-epoch hook. Its defaults are read from the registry, so they cannot drift."""
    values = {**method_defaults("finetune"), **hparams}
    seed, device = values.pop("seed", 0), values.pop("device", "auto")
    lr = values["lr"]
    run = UnlearningRun("finetune", model, mask, device=device, seed=seed)
    cosine = values.get("schedule") == "cosine"
    epoch_ce_training(run, retain, values["epochs"],
                      lambda epoch, step, total: cosine_lr(lr, step, total, 0.0) if cosine else lr,
                      values["batch_size"], values["momentum"], values["weight_decay"], on_epoch_end=on_epoch_end)
    return run.finish(values)


# Methods whose registered function has no hook but that have a hooked local copy here.
_HOOKED_COPIES: dict[str, Callable[..., UnlearnResult]] = {"finetune": _finetune_with_hook}


def hooked_method(name: str) -> Callable[..., UnlearnResult] | None:
    """The function that runs method ``name`` with an ``on_epoch_end`` hook, or None if there is none."""
    if name in _HOOKED_COPIES:
        return _HOOKED_COPIES[name]
    fn = get_method(name)
    return fn if "on_epoch_end" in inspect.signature(fn).parameters else None


@dataclass(frozen=True)
class Check:
    """One evaluation of the stopping criterion."""

    epoch: int
    forget_accuracy: float
    target_accuracy: float
    passed: bool
    verdict: str | None = None  # the audit's verdict (criterion "audit")
    retain_accuracy: float | None = None  # criterion "audit": the utility guard's measurement

    @property
    def gap(self) -> float:
        """Forget accuracy minus the held-out estimate (negative = below it: an overshoot)."""
        return self.forget_accuracy - self.target_accuracy

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gap": self.gap}


def target_kind(forget_labels: Tensor, validation_labels: Tensor) -> str:
    """``"classes"`` when the forget set's label distribution is far from the validation set's
    (total variation > 0.5, e.g. two of ten classes: 0.8), else ``"iid"`` (an iid 10% sample: ≈ 0.1).

    Example:
        >>> target_kind(torch.tensor([3, 5, 3, 5]), torch.arange(10).repeat(5))
        'classes'
        >>> target_kind(torch.arange(10), torch.arange(10).repeat(5))
        'iid'
    """
    classes = int(max(forget_labels.max(), validation_labels.max())) + 1
    forget_share = torch.bincount(forget_labels, minlength=classes).double() / len(forget_labels)
    validation_share = torch.bincount(validation_labels, minlength=classes).double() / len(validation_labels)
    return "classes" if 0.5 * float((forget_share - validation_share).abs().sum()) > 0.5 else "iid"


def held_out_estimate(correct: Tensor, validation_labels: Tensor, forget_labels: Tensor, kind: str) -> float:
    """The oracle's forget accuracy as estimated from validation correctness (a boolean per example).

    ``iid``: the validation accuracy. ``classes``: Σ_c w_c·acc_c over the forget set's classes c,
    w_c = share of D_f labelled c, acc_c = validation accuracy on class c.

    Raises:
        ConfigError: (``classes``) a forget class has no validation example.

    Example:
        >>> correct = torch.tensor([True, False, True, True])
        >>> held_out_estimate(correct, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 0, 1]), "classes")
        0.625
        >>> held_out_estimate(correct, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 0, 1]), "iid")
        0.75
    """
    if kind == "iid":
        return float(correct.double().mean())
    classes, counts = torch.unique(forget_labels, return_counts=True)
    missing = [int(c) for c in classes if not bool((validation_labels == c).any())]
    if missing:
        raise ConfigError(f"the validation set has no example of forget class(es) {missing}: no per-class estimate")
    return float(sum(int(n) / len(forget_labels) * correct[validation_labels == c].double().mean()
                     for c, n in zip(classes, counts)))


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def stop_when_done(
    method: str,
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    validation: Examples,
    mask: Mapping[str, Tensor] | None = None,
    *,
    tolerance: float = 0.01,
    max_epochs: int = 10,
    check_every: int = 1,
    mode: str = "auto",
    target: str = "auto",
    criterion: str = "accuracy",
    max_accuracy_drop: float = 0.02,
    seed: int = 0,
    device: str = "auto",
    **hparams: Any,
) -> UnlearnResult:
    """Run the epoch-based method ``method`` until its forget accuracy reaches the held-out estimate
    (``criterion="accuracy"``) or until the oracle-free audit passes (``criterion="audit"``).

    Args:
        method: a registered method that takes ``epochs``.
        model, forget, retain, mask: as for :func:`memunlearn.methods.unlearn`.
        validation: examples held out of the training data (never the test set used for scoring).
        tolerance: stop when forget accuracy ≤ estimate + tolerance.
        max_epochs: the most epochs; the last run (or epoch) is always checked.
        check_every: check after every this many epochs.
        mode: ``restart`` (exact, costs the sum of the runs), ``truncate`` (one run cut short; needs
            a hook) or ``auto`` (truncate where the method has a hook, else restart).
        target: ``iid`` (validation accuracy), ``classes`` (per-class validation accuracy weighted
            by the forget set's class mix) or ``auto`` (see :func:`target_kind`).
        criterion: ``accuracy`` (the one-sided accuracy test above) or ``audit``: stop at the first
            check where :func:`memunlearn.auditing.audit` of the model (D_f against ``validation``,
            retain as the attack's members) says ``pass`` and the model's accuracy on the audit's
            retain sample is at most ``max_accuracy_drop`` below the original's (the utility guard:
            a broken model's forget set also looks like unseen data); ``tolerance`` and ``target``
            are then unused.
        max_accuracy_drop: criterion ``audit``: the largest retain accuracy drop a passing check allows.
        **hparams: the method's other hyperparameters (not ``epochs``: this function chooses it).

    Returns:
        The chosen model; ``cost`` sums every epoch run and the checks; ``hparams`` records the base
        method and its hyperparameters, ``stopped_at_epoch``, ``reached`` (False: ``max_epochs``
        ran out first), ``epochs_run`` (all runs together), ``check_examples`` and every check.

    Raises:
        ConfigError: an unknown method, one without epochs, ``epochs`` among ``hparams``, an empty
            validation set, a bad option, or ``truncate`` for a method without a hook.

    Example:
        >>> result = stop_when_done("finetune", model, forget, retain, validation, tolerance=0.02)  # doctest: +SKIP
        >>> result.hparams["stopped_at_epoch"], result.cost.examples  # doctest: +SKIP
    """
    if not METHODS.entry(method).metadata["takes_epochs"]:
        raise ConfigError(f"{method!r} does not train for a number of epochs; stop-when-done has nothing to stop")
    if "epochs" in hparams:
        raise ConfigError("stop-when-done chooses the epochs itself; set max_epochs instead of epochs")
    if len(validation) == 0:
        raise ConfigError("stop-when-done needs a non-empty validation set held out of the training data")
    Float(low=0, high=1).check(NAME, "tolerance", tolerance)
    Int(low=1).check(NAME, "max_epochs", max_epochs)
    Int(low=1).check(NAME, "check_every", check_every)
    Choice(*MODES).check(NAME, "mode", mode)
    Choice(*TARGETS).check(NAME, "target", target)
    Choice(*CRITERIA).check(NAME, "criterion", criterion)
    Float(low=0, high=1).check(NAME, "max_accuracy_drop", max_accuracy_drop)
    hparams = check_hparams(method, hparams)
    hparams.pop("recipe", None)  # its values are filled in; the method functions take no recipe
    auditor = None
    if criterion == "audit":  # the audit's bad input (overlap, power) fails here, before any work
        from ..auditing import Auditor

        auditor = Auditor(forget, validation, retain, seed=seed, attack="population", original=model, device=device)
    kind = target_kind(forget.y, validation.y) if target == "auto" else target
    held_out_estimate(torch.ones(len(validation), dtype=torch.bool), validation.y, forget.y, kind)  # fail before work
    hooked = hooked_method(method)
    if mode == "truncate" and hooked is None:
        raise ConfigError(f"{method!r} has no per-epoch hook; use mode='restart' (exact, costs more)")
    used_mode = mode if mode != "auto" else ("truncate" if hooked is not None else "restart")
    check_at = set(range(check_every, max_epochs + 1, check_every)) | {max_epochs}

    start = time.perf_counter()
    checks: list[Check] = []
    baseline = None
    if auditor is not None:  # the original's audit: where the utility guard measures from
        report = auditor.audit(model, _model_device(model))
        baseline = Check(0, report.tests["accuracy"]["forget"], report.tests["accuracy"]["holdout"], False,
                         report.verdict, report.tests.get("retain_accuracy"))

    def check(epoch: int, candidate: nn.Module) -> bool:
        where = _model_device(candidate)
        if auditor is not None:
            report = auditor.audit(candidate, where)
            accuracy_test = report.tests["accuracy"]
            retain_accuracy = report.tests.get("retain_accuracy")
            useful = (retain_accuracy is None or baseline.retain_accuracy is None
                      or retain_accuracy >= baseline.retain_accuracy - max_accuracy_drop)
            checks.append(Check(epoch, accuracy_test["forget"], accuracy_test["holdout"],
                                report.verdict == "pass" and useful, report.verdict, retain_accuracy))
            return checks[-1].passed
        forget_accuracy = accuracy(candidate, forget, where)
        correct = _correct(candidate, validation, where)
        estimate = held_out_estimate(correct, validation.y, forget.y, kind)
        checks.append(Check(epoch, forget_accuracy, estimate, forget_accuracy <= estimate + tolerance))
        return checks[-1].passed

    if used_mode == "truncate":
        result = hooked(model, forget, retain, mask, lambda epoch, m: epoch in check_at and check(epoch, m),
                        epochs=max_epochs, seed=seed, device=device, **hparams)
        epochs_run = checks[-1].epoch if checks and checks[-1].passed else max_epochs
        steps, examples = result.cost.steps, result.cost.examples
    else:
        steps = examples = epochs_run = 0
        for epochs in sorted(check_at):
            result = get_method(method)(model, forget, retain, mask=mask, epochs=epochs, seed=seed, device=device,
                                        **hparams)
            steps, examples = steps + result.cost.steps, examples + result.cost.examples
            epochs_run += epochs
            if check(epochs, result.model):
                break
    per_check = len(forget) + len(validation) + (0 if auditor is None else auditor.audited_retain)
    check_examples = (len(checks) + (baseline is not None)) * per_check
    cost = Cost(time.perf_counter() - start, steps, examples + check_examples, result.cost.params_changed,
                result.cost.params_changed_fraction)
    record = dict(
        base_method=method, base_hparams=dict(result.hparams), tolerance=tolerance, max_epochs=max_epochs,
        check_every=check_every, mode=used_mode, target=kind, criterion=criterion,
        max_accuracy_drop=max_accuracy_drop if criterion == "audit" else None,
        original_check=baseline.to_dict() if baseline is not None else None, stopped_at_epoch=checks[-1].epoch,
        reached=checks[-1].passed, epochs_run=epochs_run, check_examples=check_examples,
        checks=[c.to_dict() for c in checks],
    )
    return UnlearnResult(result.model, NAME, cost, record)


@torch.no_grad()
def _correct(model: nn.Module, examples: Examples, device: torch.device) -> Tensor:
    from ..training import predict_logits

    return predict_logits(model, examples, device).argmax(1) == examples.y


def stop_when_done_method(
    model: nn.Module,
    forget: Examples,
    retain: Examples,
    mask: Mapping[str, Tensor] | None = None,
    validation: Examples | None = None,
    *,
    base_method: str = "finetune",
    tolerance: float = 0.01,
    max_epochs: int = 10,
    check_every: int = 1,
    mode: str = "auto",
    target: str = "auto",
    seed: int = 0,
    device: str = "auto",
) -> UnlearnResult:
    """:func:`stop_when_done` in the registry's shape, with the base method's default hyperparameters.

    Raises:
        ConfigError: no ``validation`` set (it cannot be carved from the retain set: those are
            training members, so their accuracy is not held-out accuracy).
    """
    if validation is None:
        raise ConfigError(
            "stop-when-done needs a validation set held out of the training data (its accuracy estimates "
            "the oracle's forget accuracy; retain examples are training members and cannot serve): call "
            "memunlearn.methods.stop_when_done.stop_when_done(method, model, forget, retain, validation, ...)"
        )
    return stop_when_done(base_method, model, forget, retain, validation, mask, tolerance=tolerance,
                          max_epochs=max_epochs, check_every=check_every, mode=mode, target=target, seed=seed,
                          device=device)


def register_stop_when_done() -> None:
    """Register ``stop-when-done`` (idempotent). Opt-in: see the module docstring for why it is not
    registered on import. Its ``base_method`` may be any epoch-based method registered by then."""
    if NAME in available_methods():
        return
    bases = tuple(n for n in available_methods() if METHODS.entry(n).metadata["takes_epochs"])
    register_method(NAME, stop_when_done_method, takes_epochs=False, params={
        "base_method": Choice(*bases, search=tuple(n for n in bases if hooked_method(n) is not None),
                              help="the epoch-based method to run until done"),
        "tolerance": Float(low=0, high=1, search=(0.0, 0.05), help="stop when forget acc <= estimate + tolerance"),
        "max_epochs": Int(low=1, help="the most epochs"),
        "check_every": Int(low=1, help="check the criterion after every this many epochs"),
        "mode": Choice(*MODES, help="restart (exact, costs the sum of the runs) or truncate (one run cut short)"),
        "target": Choice(*TARGETS, help="iid: validation accuracy; classes: per-class, weighted by D_f's classes"),
    }, no_public_code="this library's own: a stopping rule around another registered method (which keeps its own "
                      "source and recipe), with no published code to compare with")


# ------------------------------------------------------------------------------------------------
# ``stop:METHOD`` entries in experiment specs (issue 21)

STOP_PREFIX = "stop:"
STOP_OPTIONS = {
    "criterion": Choice(*CRITERIA, help="audit: stop when the oracle-free audit passes; accuracy: forget acc test"),
    "max_epochs": Int(low=1, help="the most epochs (default: the base method's fixed budget, its epochs)"),
    "check_every": Int(low=1, help="check after every this many epochs"),
    "mode": Choice(*MODES, help="restart (exact, costs the sum of the runs) or truncate (one run cut short)"),
    "tolerance": Float(low=0, high=1, help="criterion accuracy: stop when forget acc <= estimate + tolerance"),
    "max_accuracy_drop": Float(low=0, high=1, help="criterion audit: the largest retain accuracy drop a pass allows"),
    "target": Choice(*TARGETS, help="criterion accuracy: iid or classes estimate"),
}
STOP_DEFAULTS = {"criterion": "audit", "check_every": 1, "mode": "auto", "tolerance": 0.01, "target": "auto",
                 "max_accuracy_drop": 0.02}


def is_stop_entry(entry: str) -> bool:
    """Whether a spec's method entry is ``stop:METHOD`` (METHOD run until the audit passes).

    Example:
        >>> is_stop_entry("stop:finetune"), is_stop_entry("finetune")
        (True, False)
    """
    return entry.startswith(STOP_PREFIX)


def stop_base(entry: str) -> str:
    """The base method of ``stop:METHOD``, checked: registered and trained for a number of epochs.

    Raises:
        ConfigError: an unknown method, or one without epochs.
    """
    base = entry[len(STOP_PREFIX):].strip()
    if not METHODS.entry(base).metadata["takes_epochs"]:  # the unknown-name error lists the methods
        raise ConfigError(f"{entry!r}: {base!r} does not train for a number of epochs; stop: has nothing to stop "
                          "(use an epoch-based method such as stop:finetune)")
    return base


def check_stop_hparams(entry: str, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """A ``stop:METHOD`` entry's hyperparameters: the stop options (:data:`STOP_OPTIONS`) and the
    base method's own (checked by its registry entry); ``epochs`` is refused (set max_epochs)."""
    base = stop_base(entry)
    given = dict(hparams)
    if "epochs" in given:
        raise ConfigError(f"{entry!r} chooses the epochs itself; set max_epochs (default: {base}'s epochs) instead")
    options = {k: STOP_OPTIONS[k].check(entry, k, given.pop(k)) for k in list(given) if k in STOP_OPTIONS}
    return {**options, **check_hparams(base, given)}


def stop_entry_defaults(entry: str) -> dict[str, Any]:
    """The defaults a ``stop:METHOD`` cell runs with: the stop options and the base method's defaults
    (``max_epochs`` = the base method's ``epochs``: its fixed budget)."""
    base = stop_base(entry)
    defaults = method_defaults(base)
    fixed = defaults.pop("epochs")
    return {**STOP_DEFAULTS, "max_epochs": fixed, **defaults}


def run_stop_entry(entry: str, model: nn.Module, forget: Examples, retain: Examples, validation: Examples | None,
                   mask: Mapping[str, Tensor] | None = None, *, seed: int = 0, device: str = "auto",
                   **hparams: Any) -> UnlearnResult:
    """Run ``stop:METHOD``: :func:`stop_when_done` of METHOD on ``validation`` (held out of training,
    handed over by the experiment core), by default until the audit passes, at most METHOD's own
    epochs. The result's ``details["stop"]`` records what the stop saved against the fixed budget:
    examples processed by training (and by the checks) vs METHOD at its fixed epochs.

    Raises:
        ConfigError: no validation set, an unknown or epoch-less base method, bad options.
    """
    if validation is None or len(validation) == 0:
        raise ConfigError(f"{entry!r} needs held-out data to stop on: set [evaluation] audit_holdout = N in the spec "
                          "(N training examples held out of every model's training)")
    base = stop_base(entry)
    values = check_stop_hparams(entry, hparams)
    options = {k: values.pop(k) for k in list(values) if k in STOP_OPTIONS}
    options.setdefault("max_epochs", method_defaults(base)["epochs"])
    fixed_epochs = options["max_epochs"]  # the fixed budget the stop is compared with
    options = {**STOP_DEFAULTS, **options}
    result = stop_when_done(base, model, forget, retain, validation, mask, seed=seed, device=device, **options,
                            **values)
    record = result.hparams
    training_examples = result.cost.examples - record["check_examples"]
    per_epoch = training_examples / max(record["epochs_run"], 1)
    fixed_examples = per_epoch * fixed_epochs
    result.details["stop"] = {
        "base_method": base, "criterion": record["criterion"], "stopped_at_epoch": record["stopped_at_epoch"],
        "reached": record["reached"], "fixed_epochs": fixed_epochs, "epochs_run": record["epochs_run"],
        "training_examples": training_examples, "check_examples": record["check_examples"],
        "fixed_budget_examples": fixed_examples,
        "examples_saved_fraction": 1 - result.cost.examples / fixed_examples if fixed_examples else None,
        "training_examples_saved_fraction": 1 - training_examples / fixed_examples if fixed_examples else None,
        "checks": record["checks"],
    }
    return result


def stop_summary(rows: list[dict[str, Any]], summary: dict[str, Any], labels: list[str]) -> dict[str, Any]:
    """Per ``stop:METHOD`` label of one forget rule: what stopping saved and what it cost in ToW.

    ``examples_saved_fraction`` (mean over seeds) = 1 − examples processed (training and checks)
    / the base method's examples at its fixed epochs (``max_epochs``; negative when the checks
    cost more than the epochs they saved), ``training_examples_saved_fraction`` the same without
    the checks; ``vs_fixed`` compares the mean ToW, ToW-MIA
    and examples / oracle with the base method's own cells when the spec runs it too.
    """
    from ..evaluation import mean_interval

    out: dict[str, Any] = {}
    for label in labels:
        if not is_stop_entry(label):
            continue
        records = [r["methods"][label]["stop"] for r in rows
                   if r["methods"][label].get("status") == "ok" and "stop" in r["methods"][label]]
        base = label.split("[")[0][len(STOP_PREFIX):]
        entry: dict[str, Any] = {
            "base_method": base,
            "examples_saved_fraction": mean_interval(r["examples_saved_fraction"] for r in records),
            "training_examples_saved_fraction": mean_interval(r["training_examples_saved_fraction"] for r in records),
            "stopped_at_epoch": [r["stopped_at_epoch"] for r in records],
            "reached": [r["reached"] for r in records],
            "fixed_epochs": records[0]["fixed_epochs"] if records else None,
        }
        methods = summary.get("methods") or {}
        if base in methods:
            entry["vs_fixed"] = {key: {"stop": (methods[label].get(key) or {}).get("mean"),
                                       "fixed": (methods[base].get(key) or {}).get("mean")}
                                 for key in ("tow", "tow_mia", "examples_fraction")}
        out[label] = entry
    return out
