"""Seeded SGD training with per-example training dynamics.

While it trains, :func:`train` keeps, for every training example and epoch, the true-label
probability, the max probability, the predictive entropy, whether the prediction was correct and
the example's cross-entropy loss, read off the forward pass it makes anyway (each example is in
exactly one step per epoch, so the epoch record is its loss at that step). Memorization proxies are computed from these later
at no extra pass.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
from torch import Tensor, nn

from .data.core import Examples
from .errors import ConfigError, DivergedError


# The recipe's settings that the `retrain` method takes as hyperparameters.
RECIPE_KEYS = ("epochs", "lr", "batch_size", "momentum", "weight_decay", "final_lr_fraction")


@dataclass(frozen=True)
class TrainConfig:
    """How a model is trained: SGD with momentum and a cosine schedule.

    ``fast`` turns on the CPU fast path (channels_last, and bf16 autocast where the CPU has
    native bf16); it changes numerics slightly, so it is off by default.
    """

    epochs: int = 30
    lr: float = 0.05
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    final_lr_fraction: float = 0.0
    seed: int = 0
    fast: bool = False

    def retrain_hparams(self) -> dict:
        """This recipe as the hyperparameters of the ``retrain`` method (what an oracle trains with).

        Example:
            >>> TrainConfig(epochs=5).retrain_hparams()["epochs"]
            5
        """
        return {k: getattr(self, k) for k in RECIPE_KEYS}

    def to_dict(self) -> dict:
        return asdict(self)

    def __post_init__(self) -> None:
        if self.epochs < 0 or self.lr <= 0 or self.batch_size <= 0:
            raise ConfigError(
                f"invalid training config: epochs={self.epochs}, lr={self.lr}, batch_size={self.batch_size}"
            )


@dataclass(frozen=True)
class Recipe:
    """A dataset's default model and training config (fits the training set, as in the papers)."""

    model: str
    width: int
    train: TrainConfig


# Chosen so the original model reaches ~100% training accuracy: only then is something memorized.
RECIPES: dict[str, Recipe] = {
    "digits": Recipe("cnn", 16, TrainConfig(epochs=20, lr=0.05, batch_size=64)),
    # A 2x1024 MLP: fits 10k-example subsets to 99.5-99.7% in ~30 s on 2 CPU cores (all 60k: 98.4% in 3 min).
    # The width-16 CNN that is as cheap stopped at 94-96% on 5k (nothing memorized; finetuning looked perfect).
    "fashion-mnist": Recipe("mlp", 1024, TrainConfig(epochs=30, lr=0.05, batch_size=128)),
    "mnist": Recipe("cnn", 16, TrainConfig(epochs=15, lr=0.05, batch_size=128)),
    "cifar10": Recipe("resnet18", 64, TrainConfig(epochs=50, lr=0.1, batch_size=128)),
    "cifar100": Recipe("resnet18", 64, TrainConfig(epochs=50, lr=0.1, batch_size=128)),
    "svhn": Recipe("vit", 128, TrainConfig(epochs=30, lr=0.05, batch_size=128)),
    "npz": Recipe("cnn", 32, TrainConfig(epochs=20, lr=0.05, batch_size=64)),
}


def recipe_for(dataset_name: str) -> Recipe:
    return RECIPES.get(dataset_name, RECIPES["npz"])


@dataclass
class TrainingDynamics:
    """Per-epoch, per-example records from training forward passes, each [epochs, n].

    ``loss`` is the per-example cross-entropy of the training forward pass (the batch loss the
    optimizer stepped on is its mean over the batch), float64 for exact sums; it is None in
    dynamics saved by a memunlearn from before it was recorded.
    """

    true_prob: np.ndarray
    max_prob: np.ndarray
    entropy: np.ndarray
    correct: np.ndarray
    loss: np.ndarray | None = None

    @classmethod
    def empty(cls, epochs: int, n: int) -> "TrainingDynamics":
        f = lambda: np.zeros((epochs, n), dtype=np.float32)  # noqa: E731
        return cls(f(), f(), f(), np.zeros((epochs, n), dtype=bool), np.zeros((epochs, n), dtype=np.float64))

    def record(self, epoch: int, index: Tensor, logits: Tensor, labels: Tensor) -> None:
        with torch.no_grad():
            logits = logits.detach().float()
            probs = torch.softmax(logits, dim=1)
            i = index.numpy()
            self.true_prob[epoch, i] = probs.gather(1, labels[:, None]).squeeze(1).cpu().numpy()
            self.max_prob[epoch, i] = probs.max(dim=1).values.cpu().numpy()
            self.entropy[epoch, i] = (-(probs * torch.log(probs.clamp_min(1e-12))).sum(1)).cpu().numpy()
            self.correct[epoch, i] = (probs.argmax(1) == labels).cpu().numpy()
            if self.loss is not None:
                self.loss[epoch, i] = nn.functional.cross_entropy(logits, labels, reduction="none").double().cpu().numpy()

    def as_tensors(self) -> dict[str, Tensor]:
        tensors = {
            "dynamics.true_prob": torch.from_numpy(self.true_prob),
            "dynamics.max_prob": torch.from_numpy(self.max_prob),
            "dynamics.entropy": torch.from_numpy(self.entropy),
            "dynamics.correct": torch.from_numpy(self.correct.astype(np.uint8)),
        }
        if self.loss is not None:
            tensors["dynamics.loss"] = torch.from_numpy(np.ascontiguousarray(self.loss))
        return tensors

    @classmethod
    def from_tensors(cls, tensors: dict[str, Tensor]) -> "TrainingDynamics | None":
        if "dynamics.true_prob" not in tensors:
            return None
        loss = tensors.get("dynamics.loss")
        return cls(
            tensors["dynamics.true_prob"].numpy(),
            tensors["dynamics.max_prob"].numpy(),
            tensors["dynamics.entropy"].numpy(),
            tensors["dynamics.correct"].numpy().astype(bool),
            None if loss is None else loss.numpy().astype(np.float64),
        )


@dataclass
class TrainResult:
    model: nn.Module
    dynamics: TrainingDynamics | None
    wall_time: float
    steps: int
    examples_seen: int
    config: TrainConfig = field(default_factory=TrainConfig)


def get_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) picks CUDA when available, else the CPU."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but CUDA is not available; use --device cpu")
    return resolved


def cpu_has_native_bf16() -> bool:
    capability = torch.backends.cpu.get_cpu_capability().lower()
    return "amx" in capability or "bf16" in capability


def autocast_context(device: torch.device, fast: bool):
    """bf16 autocast for the fast path (CUDA always; CPU only where bf16 is native)."""
    if fast and (device.type == "cuda" or cpu_has_native_bf16()):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cosine_lr(base_lr: float, step: int, total_steps: int, final_fraction: float) -> float:
    """Cosine annealing from ``base_lr`` to ``final_fraction * base_lr`` over ``total_steps``."""
    if total_steps <= 1:
        return base_lr
    progress = min(step / (total_steps - 1), 1.0)
    floor = final_fraction * base_lr
    return floor + 0.5 * (base_lr - floor) * (1 + math.cos(math.pi * progress))


def check_finite(loss: Tensor, what: str, step: int) -> None:
    if not torch.isfinite(loss):
        raise DivergedError(what, step, float(loss.detach()))


@torch.no_grad()
def check_weights_finite(model: nn.Module, what: str) -> None:
    """Raise :class:`DivergedError` if any floating-point parameter or buffer of ``model`` is NaN or infinite.

    A finite loss does not prove finite weights: the last step can overflow them.

    Example:
        >>> model = nn.Linear(2, 1)
        >>> check_weights_finite(model, "demo")
        >>> _ = model.weight.data.fill_(float("nan"))
        >>> check_weights_finite(model, "demo")
        Traceback (most recent call last):
        ...
        memunlearn.errors.DivergedError: demo diverged: 2 entries of weight are NaN or infinite; lower the learning rate or the number of epochs
    """
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise DivergedError(what, reason=f"{bad} entries of {name} are NaN or infinite")


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG and return a generator for data order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def train(
    model: nn.Module,
    examples: Examples,
    config: TrainConfig = TrainConfig(),
    device: str | torch.device | None = "auto",
    record_dynamics: bool = True,
    progress: bool = False,
    description: str = "training",
) -> TrainResult:
    """Train ``model`` in place on ``examples`` with seeded SGD + momentum + cosine schedule.

    Args:
        model: any classifier; it is moved to ``device``.
        examples: the training examples (index i of the dynamics = example i here).
        config: epochs, learning rate, batch size, momentum, weight decay, seed, fast path.
        device: ``auto`` picks CUDA when present.
        record_dynamics: keep per-example training dynamics (see :class:`TrainingDynamics`).
        progress: show a progress bar.
        description: name used in the progress bar and in a divergence error.

    Returns:
        A :class:`TrainResult` with the trained model (in eval mode), its dynamics and its cost.

    Raises:
        DivergedError: the loss became NaN or infinite.

    Example:
        >>> from memunlearn import load_dataset, build_model  # doctest: +SKIP
        >>> data = load_dataset("digits")  # doctest: +SKIP
        >>> result = train(build_model("cnn", 1, 10, image_size=8, seed=0), data.train)  # doctest: +SKIP
    """
    device = get_device(device)
    generator = seed_everything(config.seed)
    model.to(device)
    if config.fast:
        model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # accepted at run time; not in the stubs
    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(len(examples) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    dynamics = TrainingDynamics.empty(config.epochs, len(examples)) if record_dynamics else None
    loss_fn = nn.CrossEntropyLoss()
    step = 0
    start = time.perf_counter()
    with progress_bar(progress, description, total_steps) as advance:
        for epoch in range(config.epochs):
            model.train()
            for x, y, index in examples.batches(config.batch_size, shuffle=True, generator=generator, with_index=True):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                if config.fast:
                    x = x.contiguous(memory_format=torch.channels_last)
                for group in optimizer.param_groups:
                    group["lr"] = cosine_lr(config.lr, step, total_steps, config.final_lr_fraction)
                with autocast_context(device, config.fast):
                    logits = model(x)
                    loss = loss_fn(logits.float(), y)
                check_finite(loss, description, step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if dynamics is not None:
                    dynamics.record(epoch, index, logits, y)
                step += 1
                advance()
    model.eval()
    if config.fast:
        model.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]  # as above
    check_weights_finite(model, description)
    return TrainResult(model, dynamics, time.perf_counter() - start, step, step and len(examples) * config.epochs, config)


# Plain progress (stderr is not a terminal): a line at every tenth of the work, at most this often.
PLAIN_PROGRESS_MIN_SECONDS = 5.0


class PlainProgress:
    """Progress as plain lines on ``stream`` (for logs and CI, where a live bar shows nothing).

    A line at each tenth of the work (at most one per ``min_seconds``) and at the end:
    ``original (seed 0): 120/400 steps (30%), 4.1s, about 9.6s left``.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> progress = PlainProgress("demo", 4, stream=out, min_seconds=0)
        >>> for _ in range(4):
        ...     progress.advance()
        >>> out.getvalue().splitlines()[-1].startswith("demo: 4/4 steps (100%)")
        True
    """

    def __init__(self, description: str, total: int, stream=None, min_seconds: float = PLAIN_PROGRESS_MIN_SECONDS,
                 unit: str = "steps"):
        self.description, self.total, self.unit = description, max(int(total), 0), unit
        self.stream = stream if stream is not None else sys.stderr
        self.min_seconds = min_seconds
        self.done = 0
        self._start = self._last = time.perf_counter()
        self._next_tenth = 1

    def advance(self, count: int = 1) -> None:
        self.done += count
        now = time.perf_counter()
        finished = self.done >= self.total
        tenth = 10 * self.done // self.total if self.total else 10
        if finished or (tenth >= self._next_tenth and now - self._last >= self.min_seconds):
            self._next_tenth = tenth + 1
            self._last = now
            self.stream.write(self.line(now) + "\n")
            self.stream.flush()

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.perf_counter()) - self._start
        text = f"{self.description}: {self.done}/{self.total} {self.unit}"
        if self.total:
            text += f" ({100 * self.done // self.total}%)"
        text += f", {elapsed:.1f}s"
        if 0 < self.done < self.total:
            text += f", about {elapsed / self.done * (self.total - self.done):.1f}s left"
        return text


@contextlib.contextmanager
def progress_bar(enabled: bool, description: str, total: int):
    """Progress when ``enabled``: a rich bar on a terminal, plain lines on stderr otherwise
    (see :class:`PlainProgress`). Yields a function that advances it by one."""
    if not enabled:
        yield lambda: None
        return
    if not sys.stderr.isatty():
        plain = PlainProgress(description, total)
        yield plain.advance
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda: bar.advance(task)


@torch.no_grad()
def predict_logits(
    model: nn.Module, examples: Examples, device: str | torch.device | None = "auto", batch_size: int = 1024
) -> Tensor:
    """Eval-mode logits for every example, on the CPU, float32."""
    device = get_device(device)
    was_training = model.training
    model.eval().to(device)
    outputs = [model(x.to(device)).float().cpu() for x, _ in examples.batches(batch_size)]
    model.train(was_training)
    return torch.cat(outputs) if outputs else torch.zeros(0)


def accuracy(model: nn.Module, examples: Examples, device: str | torch.device | None = "auto") -> float:
    """Fraction of ``examples`` the model classifies correctly (eval mode)."""
    if len(examples) == 0:
        return float("nan")
    logits = predict_logits(model, examples, device)
    return float((logits.argmax(1) == examples.y).float().mean())


def with_epochs(config: TrainConfig, epochs: int | None) -> TrainConfig:
    return config if epochs is None else replace(config, epochs=epochs)
