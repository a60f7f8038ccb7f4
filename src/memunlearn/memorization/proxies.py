"""Memorization proxies: cheap per-example scores, each oriented so that higher = more memorized.

Seven proxies read the training dynamics recorded while the original model trained (no extra
pass): ``confidence``, ``max-confidence``, ``entropy``, ``binary-accuracy``,
``forgetting-events``, ``csl`` (cumulative sample loss) and ``learning-time``. Five need the
final model: ``holdout-retraining``, ``loss-curvature`` (Garg et al.'s estimator),
``loss-curvature-rum`` (RUM's code's variant), ``grad-norm`` and ``el2n``. Every proxy is registered by name, with what it needs, and timed.

Example:
    >>> result = compute_proxy("confidence", data, model, dynamics)  # doctest: +SKIP
    >>> result.scores.shape, result.seconds  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..data.core import Dataset
from ..errors import ConfigError
from ..registry import Registry
from ..training import TrainingDynamics, check_finite, get_device, predict_logits, recipe_for


@dataclass
class ProxyInputs:
    """What a proxy may read: the data, the original model and the dynamics of its training."""

    dataset: Dataset
    model: nn.Module | None
    dynamics: TrainingDynamics | None
    device: torch.device
    seed: int = 0
    batch_size: int = 256
    options: dict[str, Any] | None = None

    def option(self, name: str, default: Any) -> Any:
        return (self.options or {}).get(name, default)

    @property
    def original(self) -> nn.Module:
        """The model, for proxies that need it (``needs="model"``: they are given one)."""
        if self.model is None:
            raise ConfigError("this memorization proxy needs the original model")
        return self.model

    @property
    def recorded_dynamics(self) -> TrainingDynamics:
        """The training dynamics, for proxies that need them (``needs="dynamics"``)."""
        if self.dynamics is None:
            raise ConfigError("this memorization proxy needs the training dynamics of the original model")
        return self.dynamics


@dataclass
class ProxyResult:
    """A proxy's scores (one per training example, higher = more memorized) and its wall time."""

    name: str
    scores: np.ndarray
    seconds: float
    needs: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": self.seconds, "needs": self.needs, "n": int(len(self.scores))}


@dataclass(frozen=True)
class Proxy:
    fn: Callable[[ProxyInputs], np.ndarray]
    needs: str  # "dynamics" (free: read off the original training) or "model" (extra passes)
    description: str


PROXIES: Registry[Callable[[ProxyInputs], np.ndarray]] = Registry("memorization proxy")


def register_proxy(name: str, fn: Callable[[ProxyInputs], np.ndarray], needs: str, description: str) -> None:
    """Register ``fn(inputs) -> scores`` as a proxy (``needs`` is ``dynamics`` or ``model``).

    Raises:
        ConfigError: the name is taken or ``needs`` is neither.
    """
    if needs not in ("dynamics", "model"):
        raise ConfigError(f"a proxy needs 'dynamics' or 'model', got {needs!r}")
    PROXIES.register(name, fn, needs=needs, description=description)


def available_proxies() -> list[str]:
    """The registered proxy names, in registration order.

    Example:
        >>> "confidence" in available_proxies()
        True
    """
    return PROXIES.names()


def proxy_description(name: str) -> str:
    return get_proxy(name).description


def get_proxy(name: str) -> Proxy:
    """The proxy ``name`` with what it needs.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    entry = PROXIES.entry(name)
    return Proxy(entry.obj, entry.metadata["needs"], entry.metadata["description"])


def compute_proxy(
    name: str,
    dataset: Dataset,
    model: nn.Module | None,
    dynamics: TrainingDynamics | None,
    device: str | torch.device = "auto",
    seed: int = 0,
    **options: Any,
) -> ProxyResult:
    """Compute one proxy for every training example of ``dataset``, timing it.

    Args:
        name: a registered proxy (see :func:`available_proxies`).
        dataset: the data the original model was trained on.
        model: the original (final) model; needed by the model-based proxies.
        dynamics: the per-example dynamics of its training; needed by the dynamics proxies.
        device: where model passes run (``auto`` = CUDA when present).
        seed: seed of any randomness (curvature directions, hold-out finetuning).
        **options: proxy options: ``holdout_epochs`` (30), ``holdout_lr`` (0.1),
            ``holdout_momentum`` (0.9), ``holdout_weight_decay`` (5e-4), ``holdout_patience`` (4),
            ``holdout_batch_size`` (the dataset recipe's), ``curvature_directions`` (10),
            ``curvature_step`` (1e-3), ``rum_curvature_step`` (0.01).

    Returns:
        A :class:`ProxyResult`; ``seconds`` is the proxy's own wall time (the original training,
        already paid, is not counted).

    Raises:
        ConfigError: unknown proxy, or the model/dynamics it needs is missing or does not fit.

    Example:
        >>> compute_proxy("el2n", data, model, None).scores  # doctest: +SKIP
    """
    proxy = get_proxy(name)
    n = len(dataset.train)
    if proxy.needs == "dynamics":
        if dynamics is None:
            raise ConfigError(
                f"proxy {name!r} reads the training dynamics of the original model, which were not recorded; "
                "retrain it with memunlearn (record_dynamics=True) or use a model-based proxy"
            )
        if dynamics.true_prob.shape[1] != n:
            raise ConfigError(
                f"proxy {name!r}: the training dynamics cover {dynamics.true_prob.shape[1]} examples but the "
                f"dataset has {n}; pass the dynamics of a model trained on this dataset"
            )
    elif model is None:
        raise ConfigError(f"proxy {name!r} needs the original model")
    inputs = ProxyInputs(dataset, model, dynamics, get_device(device), seed, options=options)
    start = time.perf_counter()
    scores = np.asarray(proxy.fn(inputs), dtype=np.float64)
    seconds = time.perf_counter() - start
    if scores.shape != (n,):
        raise AssertionError(f"proxy {name} returned shape {scores.shape}, expected ({n},)")
    return ProxyResult(name, scores, seconds, proxy.needs)


# ---------------------------------------------------------------- from the training dynamics


def confidence_score(dynamics: TrainingDynamics) -> np.ndarray:
    """1 − mean over epochs of the true-label probability (low confidence = memorized).

    Example:
        >>> d = TrainingDynamics.empty(2, 2); d.true_prob[:] = [[0.9, 0.2], [1.0, 0.4]]
        >>> confidence_score(d).round(2).tolist()
        [0.05, 0.7]
    """
    return 1.0 - dynamics.true_prob.mean(axis=0, dtype=np.float64)


def max_confidence_score(dynamics: TrainingDynamics) -> np.ndarray:
    """1 − mean over epochs of the largest predicted probability (whatever the class)."""
    return 1.0 - dynamics.max_prob.mean(axis=0, dtype=np.float64)


def entropy_score(dynamics: TrainingDynamics) -> np.ndarray:
    """Mean over epochs of the predictive entropy (nats)."""
    return dynamics.entropy.mean(axis=0, dtype=np.float64)


def binary_accuracy_score(dynamics: TrainingDynamics) -> np.ndarray:
    """1 − fraction of epochs in which the example was classified correctly."""
    return 1.0 - dynamics.correct.mean(axis=0, dtype=np.float64)


def forgetting_events_score(dynamics: TrainingDynamics) -> np.ndarray:
    """Toneva et al.'s forgetting events: correct → incorrect transitions between epochs.

    Following Toneva et al., an example never classified correctly is "forgotten infinitely
    often"; it gets the number of epochs, one more than any example can actually reach
    (at most ⌊epochs/2⌋ events).

    Example:
        >>> d = TrainingDynamics.empty(4, 3)
        >>> d.correct[:] = np.array([[1, 1, 0], [0, 1, 0], [1, 1, 0], [0, 1, 0]], bool)
        >>> forgetting_events_score(d).tolist()
        [2.0, 0.0, 4.0]
    """
    correct = dynamics.correct.astype(bool)
    events = (correct[:-1] & ~correct[1:]).sum(axis=0).astype(np.float64)
    events[~correct.any(axis=0)] = correct.shape[0]
    return events


def csl_score(dynamics: TrainingDynamics) -> np.ndarray:
    """Cumulative sample loss (Ravikumar et al., ICML 2025): the example's training loss summed
    over every step of training that saw it.

    Each example is in exactly one step per epoch, so this is the sum over epochs of the
    per-example cross-entropy recorded from the training forward pass (before that step's update;
    :class:`~memunlearn.training.TrainingDynamics` ``loss``). Free: no pass is added.

    Raises:
        ConfigError: dynamics without per-example losses (saved by an older memunlearn).

    Example:
        >>> d = TrainingDynamics.empty(3, 2); d.loss[:] = [[2.0, 1.0], [1.0, 0.5], [0.5, 0.1]]
        >>> csl_score(d).tolist()
        [3.5, 1.6]
    """
    if dynamics.loss is None:
        raise ConfigError("proxy 'csl' needs the per-example training losses, which these dynamics lack (saved by an "
                          "older memunlearn); delete the cached original model so it is trained again")
    return dynamics.loss.sum(axis=0, dtype=np.float64)


def learning_time_score(dynamics: TrainingDynamics) -> np.ndarray:
    """Learning time: the first epoch (counted from 1) from which the example stays correctly
    classified until the end of training; ``epochs + 1`` if it is misclassified at the last epoch.
    Later = harder to learn = more memorized.

    Example:
        >>> d = TrainingDynamics.empty(4, 3)
        >>> d.correct[:] = np.array([[1, 0, 1], [1, 1, 0], [1, 1, 1], [1, 1, 0]], bool)
        >>> learning_time_score(d).tolist()
        [1.0, 2.0, 5.0]
    """
    correct = dynamics.correct.astype(bool)
    epochs = correct.shape[0]
    # the last epoch at which it was wrong (−1 if never): it stays correct from the next one on
    wrong_at = np.where(~correct, np.arange(epochs)[:, None], -1).max(axis=0)
    return (wrong_at + 2).astype(np.float64)


# ---------------------------------------------------------------- from the final model


def el2n_score(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """EL2N: ‖softmax(f(x)) − onehot(y)‖₂ (Paul et al.), here of the FINAL model.

    Example:
        >>> el2n_score(torch.tensor([[0.0, 0.0]]), torch.tensor([0])).round(4).tolist()
        [0.7071]
    """
    probs = torch.softmax(logits.float(), dim=1)
    onehot = torch.nn.functional.one_hot(labels, probs.shape[1]).float()
    return torch.linalg.vector_norm(probs - onehot, dim=1).double().numpy()


def symmetric_kl(logits_p: torch.Tensor, logits_q: torch.Tensor) -> np.ndarray:
    """KL(p‖q) + KL(q‖p) per row, from logits.

    Example:
        >>> symmetric_kl(torch.zeros(1, 3), torch.zeros(1, 3)).tolist()
        [0.0]
    """
    log_p = torch.log_softmax(logits_p.double(), dim=1)
    log_q = torch.log_softmax(logits_q.double(), dim=1)
    return ((log_p.exp() - log_q.exp()) * (log_p - log_q)).sum(dim=1).clamp_min(0).numpy()


def _el2n(inputs: ProxyInputs) -> np.ndarray:
    logits = predict_logits(inputs.original, inputs.dataset.train, inputs.device)
    return el2n_score(logits, inputs.dataset.train.y)


def loss_has_plateaued(epoch_losses: list[float], patience: int) -> bool:
    """True when none of the last ``patience`` epoch losses improved on the best one before them.

    Example:
        >>> loss_has_plateaued([1.0, 0.8, 0.9, 0.85, 0.8, 0.81], patience=4)  # 0.8 is not below 0.8
        True
        >>> loss_has_plateaued([1.0, 0.8, 0.9, 0.85, 0.79], patience=4)
        False
    """
    if len(epoch_losses) <= patience:
        return False
    return min(epoch_losses[-patience:]) >= min(epoch_losses[:-patience])


def finetune_until_plateau(
    model: nn.Module,
    examples,
    *,
    max_epochs: int = 30,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    batch_size: int = 128,
    patience: int = 4,
    device: str | torch.device = "auto",
    seed: int = 0,
) -> list[float]:
    """Train ``model`` in place with constant-rate SGD until its epoch loss stops improving.

    The holdout-retraining proxy's official recipe (SPEC §4): SGD lr 0.1 (constant), momentum
    0.9, weight decay 5e-4, at most ``max_epochs`` epochs, stopping once the mean training loss of
    an epoch has not improved on the best for ``patience`` epochs (:func:`loss_has_plateaued`).

    Returns:
        The mean loss of every epoch run.

    Raises:
        DivergedError: the loss became NaN or infinite.
    """
    device = get_device(device)
    model.to(device).train()
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    epoch_losses: list[float] = []
    step = 0
    while len(epoch_losses) < max_epochs and not loss_has_plateaued(epoch_losses, patience):
        total = 0.0
        for x, y in examples.batches(batch_size, shuffle=True, generator=generator):
            loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
            check_finite(loss, "holdout-retraining", step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(y)
            step += 1
        epoch_losses.append(total / len(examples))
    model.eval()
    return epoch_losses


def _holdout_retraining(inputs: ProxyInputs) -> np.ndarray:
    """Symmetric KL between θ_o and a copy finetuned on held-out data (Carlini et al. 2019).

    The held-out data is the dataset's TEST split: it is the only data guaranteed to be outside
    the training set. The finetuned copy is used only to score the training examples and is then
    discarded, so no evaluation ever sees it. Finetuning follows the official recipe
    (:func:`finetune_until_plateau`); every setting is a ``holdout_*`` option.
    """
    finetuned = copy.deepcopy(inputs.original)
    finetune_until_plateau(
        finetuned, inputs.dataset.test,
        max_epochs=int(inputs.option("holdout_epochs", 30)), lr=float(inputs.option("holdout_lr", 0.1)),
        momentum=float(inputs.option("holdout_momentum", 0.9)),
        weight_decay=float(inputs.option("holdout_weight_decay", 5e-4)),
        batch_size=int(inputs.option("holdout_batch_size", recipe_for(inputs.dataset.name).train.batch_size)),
        patience=int(inputs.option("holdout_patience", 4)), device=inputs.device, seed=inputs.seed,
    )
    before = predict_logits(inputs.original, inputs.dataset.train, inputs.device)
    after = predict_logits(finetuned, inputs.dataset.train, inputs.device)
    return symmetric_kl(before, after)


def _grad_norm(inputs: ProxyInputs) -> np.ndarray:
    """‖∇_θ CE(f_θ(x_i), y_i)‖₂ over ALL parameters, per example, with torch.func (eval mode)."""
    from torch.func import functional_call, grad, vmap

    model = inputs.original.eval().to(inputs.device)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss(p, b, x, y):
        logits = functional_call(model, (p, b), (x.unsqueeze(0),))
        return nn.functional.cross_entropy(logits, y.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, None, 0, 0))
    norms = []
    for x, y in inputs.dataset.train.batches(inputs.batch_size):
        grads = per_example(params, buffers, x.to(inputs.device), y.to(inputs.device))
        squared = sum(g.flatten(1).pow(2).sum(1) for g in grads.values())
        norms.append(squared.sqrt().double().cpu())
    return torch.cat(norms).numpy()


def input_gradients(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∇_x CE(f(x), y) per example (the per-example losses are summed, so rows do not mix)."""
    x = x.detach().clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(model(x), y, reduction="sum")
    (gradient,) = torch.autograd.grad(loss, x)
    return gradient


def loss_curvature_score(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, directions: int = 10, step: float = 1e-3,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Garg et al.'s input-loss curvature: mean over Rademacher v of ‖∇ℓ(x + h·v) − ∇ℓ(x)‖².

    A finite-difference Hessian-vector product: ∇ℓ(x + hv) − ∇ℓ(x) ≈ h·H v, so the mean of its
    squared norm over random ±1 directions estimates h²·‖H‖_F² (up to the input dimension);
    the ranking is what matters. ``model`` is used in eval mode.

    Example:
        >>> lin = nn.Linear(2, 2)
        >>> float(loss_curvature_score(lin, torch.zeros(1, 2), torch.tensor([0]))[0]) >= 0
        True
    """
    model.eval()
    base = input_gradients(model, x, y)
    total = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    for _ in range(directions):
        v = torch.randint(0, 2, x.shape, generator=generator, device="cpu").to(x.device, x.dtype) * 2 - 1
        diff = input_gradients(model, x + step * v, y) - base
        total += diff.flatten(1).double().pow(2).sum(1)
    return (total / directions).cpu().numpy()


# RUM's variant (kairanzhao/RUM @ f593c9d, memorization_proxy/loss_curvature.py): find_z (lines
# 69-89) takes z = h·(sign(∇ₓℓ) + 1e-7) / (‖sign(∇ₓℓ)‖₂ + 1e-7) per example, regularizer (lines
# 92-117) returns ‖∇ₓ[ℓ(x + z) − ℓ(x)]‖₂ per example with the model in eval mode; h defaults to
# 0.01 (arg_parser.py line 122, ``--h``). Its script records this at every training step
# (loss_curvature.py lines 273-284); here it is computed once on the final model.
RUM_CURVATURE_STEP = 0.01


def rum_loss_curvature_score(model: nn.Module, x: torch.Tensor, y: torch.Tensor, step: float = RUM_CURVATURE_STEP) -> np.ndarray:
    """RUM's code's curvature: ‖∇ₓℓ(x + z) − ∇ₓℓ(x)‖₂ along z = h·sign(∇ₓℓ(x)) / ‖sign(∇ₓℓ(x))‖₂.

    One deterministic direction (the gradient's sign, scaled to norm h), the norm rather than
    its square; transcribed from RUM's ``find_z`` and ``regularizer`` (see the comment above).

    Example:
        >>> lin = nn.Linear(2, 2)
        >>> float(rum_loss_curvature_score(lin, torch.zeros(1, 2), torch.tensor([0]))[0]) >= 0
        True
    """
    model.eval()
    base = input_gradients(model, x, y)
    sign = torch.sign(base)
    norm = sign.reshape(len(x), -1).norm(dim=1).reshape(-1, *([1] * (x.dim() - 1)))
    z = step * (sign + 1e-7) / (norm + 1e-7)
    diff = input_gradients(model, x + z, y) - base
    return diff.flatten(1).double().norm(dim=1).cpu().numpy()


def _rum_loss_curvature(inputs: ProxyInputs) -> np.ndarray:
    model = inputs.model.eval().to(inputs.device)
    step = float(inputs.option("rum_curvature_step", RUM_CURVATURE_STEP))
    return np.concatenate([
        rum_loss_curvature_score(model, x.to(inputs.device), y.to(inputs.device), step)
        for x, y in inputs.dataset.train.batches(inputs.batch_size)
    ])


def _loss_curvature(inputs: ProxyInputs) -> np.ndarray:
    """Curvature of the FINAL model (Garg et al. average it over training checkpoints, which
    would need an extra training run; the final model is what an unlearning user has)."""
    model = inputs.original.eval().to(inputs.device)
    generator = torch.Generator().manual_seed(inputs.seed)
    directions = int(inputs.option("curvature_directions", 10))
    step = float(inputs.option("curvature_step", 1e-3))
    return np.concatenate([
        loss_curvature_score(model, x.to(inputs.device), y.to(inputs.device), directions, step, generator)
        for x, y in inputs.dataset.train.batches(inputs.batch_size)
    ])


register_proxy("confidence", lambda i: confidence_score(i.recorded_dynamics), "dynamics",
               "1 − mean true-label probability over training epochs")
register_proxy("max-confidence", lambda i: max_confidence_score(i.recorded_dynamics), "dynamics",
               "1 − mean max probability over training epochs")
register_proxy("entropy", lambda i: entropy_score(i.recorded_dynamics), "dynamics",
               "mean predictive entropy over training epochs")
register_proxy("binary-accuracy", lambda i: binary_accuracy_score(i.recorded_dynamics), "dynamics",
               "1 − fraction of training epochs classified correctly")
register_proxy("forgetting-events", lambda i: forgetting_events_score(i.recorded_dynamics), "dynamics",
               "correct → incorrect transitions between epochs (never learned = epochs)")
register_proxy("csl", lambda i: csl_score(i.dynamics), "dynamics",
               "cumulative sample loss: per-example training loss summed over every step (Ravikumar et al.)")
register_proxy("learning-time", lambda i: learning_time_score(i.dynamics), "dynamics",
               "first epoch from which the example stays correctly classified")
register_proxy("holdout-retraining", _holdout_retraining, "model",
               "symmetric KL between θ_o and θ_o finetuned on the test split")
register_proxy("loss-curvature", _loss_curvature, "model",
               "input-space loss curvature of the final model (Garg et al.: 10 Rademacher probes, h = 1e-3)")
register_proxy("loss-curvature-rum", _rum_loss_curvature, "model",
               "input-space loss curvature as RUM's code computes it (gradient-sign direction, h = 0.01)")
register_proxy("grad-norm", _grad_norm, "model", "per-example parameter-gradient norm of the final model")
register_proxy("el2n", _el2n, "model", "‖softmax − onehot‖₂ of the final model")

