"""Options and parsing shared by several sub-commands.

Nothing here (or at the top of any ``cli`` module) imports torch: building the parser must stay
fast, so ``memunlearn --help`` answers at once. The name lists in help texts are therefore written
out here; ``tests/test_cli_help.py`` checks them against the registries.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError

DATASETS_HELP = "digits (default), fashion-mnist, mnist, cifar10, cifar100, svhn, npz, imagefolder"
MODELS_HELP = "cnn, mlp, resnet18 or vit"
# For --help without importing torch; tests/test_cli_help.py checks it against the proxy registry.
PROXIES = ("confidence", "max-confidence", "entropy", "binary-accuracy", "forgetting-events", "csl", "learning-time",
           "holdout-retraining", "loss-curvature", "loss-curvature-rum", "grad-norm", "el2n")
FORGET_HELP = (
    "iid[:FRAC] (default iid:0.1), classes:C1,C2[:FRAC], full-class:C1[,C2], mislabeled[:FRAC], indices:FILE, "
    "memorization:LEVEL[:SCORE[:FRAC]] (LEVEL low, mid, high or mix; SCORE exact, a proxy or FILE.npy), "
    "entanglement:LEVEL[:GROUPS], backdoor:FRAC[:TARGET]"
)
PROXIES_HELP = ", ".join(PROXIES)
# The papers' methods; the registry may hold more (the run's default is every registered method).
METHODS_HELP = "retrain, finetune, neggrad, neggrad+, random-label, l1-sparse, salun, scrub, ssd, del"
STRATEGIES_HELP = ("del, salun, magnitude, random-channel, shallowest, deepest, del-agnostic, and the ablation "
                   "param-grad, param-weighted-grad, channel-grad, channel-weighted-grad")


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (like every other memunlearn error), exit code 2.

    Long options must be typed in full (``allow_abbrev=False``): ``--epoch 3`` is an error, never
    silently ``--epochs 3``. Sub-command parsers are of this class too, so they inherit both.
    """

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_at_least(low: int, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < low:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
    return value


def bounded_int(kind: str, low: int = 1):
    """argparse type: an integer >= ``low`` and at most ``memunlearn.limits.MAXIMA[kind]``
    (``MEMUNLEARN_ALLOW_LARGE=1`` lifts the maximum).

    Example:
        >>> bounded_int("epochs")("20")
        20
    """
    from ..limits import ALLOW_LARGE_ENV, MAXIMA, large_allowed

    def parse(text: str) -> int:
        value = _int_at_least(low, text)
        if value > MAXIMA[kind] and not large_allowed():
            raise argparse.ArgumentTypeError(
                f"{value} is above the maximum {MAXIMA[kind]}; set {ALLOW_LARGE_ENV}=1 to allow it")
        return value

    parse.__name__ = f"{kind} value"
    return parse


def seed_int(text: str) -> int:
    """argparse type: a seed, an integer in [0, 2**32).

    Example:
        >>> seed_int("0")
        0
    """
    from ..limits import SEED_LIMIT

    value = _int_at_least(0, text)
    if value >= SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"a seed must be below 2**32 = {SEED_LIMIT}, got {text!r}")
    return value


def fraction_float(text: str) -> float:
    """argparse type: a number in (0, 1].

    Example:
        >>> fraction_float("0.3")
        0.3
    """
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


def name_text(text: str) -> str:
    """argparse type: a non-empty name."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1.

    Example:
        >>> positive_int("3")
        3
    """
    return _int_at_least(1, text)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (seeds).

    Example:
        >>> non_negative_int("0")
        0
    """
    return _int_at_least(0, text)


def positive_float(text: str) -> float:
    """argparse type: a number > 0.

    Example:
        >>> positive_float("0.2")
        0.2
    """
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def add_data_options(parser: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The data and model options; ``defaults=False`` leaves unset options None (a spec fills them)."""
    group = parser.add_argument_group("data and model")
    group.add_argument("--dataset", type=name_text, default="digits" if defaults else None, help=DATASETS_HELP)
    group.add_argument("--data-dir", type=name_text, help="directory (or .npz file) holding the dataset's files")
    group.add_argument("--model", type=name_text, help=f"{MODELS_HELP} (default: the dataset's recipe)")
    group.add_argument("--width", type=bounded_int("width"),
                       help="model width (ResNet-18: 64 = the papers' model; default: the dataset's recipe; at most "
                       "1024 unless MEMUNLEARN_ALLOW_LARGE=1)")
    group.add_argument("--epochs", type=bounded_int("epochs"),
                       help="training epochs of the original model and the oracle (at most 10000 unless "
                       "MEMUNLEARN_ALLOW_LARGE=1)")
    group.add_argument("--train-subset", type=bounded_int("examples"), metavar="N",
                       help="use a stratified subset of N training examples")
    group.add_argument("--device", default="auto" if defaults else None, help="auto (CUDA when present), cpu or cuda")
    group.add_argument("--image-size", type=bounded_int("image_size"), metavar="N",
                       help="imagefolder: images are resized and centre-cropped to N x N (default 32)")
    group.add_argument("--channels", choices=("auto", "rgb", "grayscale"),
                       help="imagefolder: colour channels (default auto: grayscale when every image is)")
    group.add_argument("--test-fraction", type=fraction_float, metavar="F",
                       help="imagefolder without train/ and test/: the fraction of each class held out as the test set")
    group.add_argument("--fast", action="store_true", help="CPU/GPU fast path: channels_last and bf16 autocast where native")
    group.add_argument("--cache-dir", help="where checkpoints are cached (default $MEMUNLEARN_CACHE or ~/.cache/memunlearn)")


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The reader options given on the command line (only those set)."""
    given = {"image_size": getattr(args, "image_size", None), "channels": getattr(args, "channels", None),
             "test_fraction": getattr(args, "test_fraction", None)}
    return {k: v for k, v in given.items() if v is not None}


def parse_list(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(","))
    if not any(items):
        raise ConfigError(f"empty list {text!r}")
    if not all(items):
        raise ConfigError(f"the list {text!r} has an empty entry (two commas, or one at an end)")
    return items


def parse_assignments(assignments: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["finetune.lr=0.01", "neggrad+.beta=0.95"]`` → ``{"finetune": {"lr": 0.01}, ...}``.

    Values are Python literals where they parse as one, else strings (checked later against the
    method's declared hyperparameters). A pipeline step's setting is ``ENTRY.stepK.PARAM=VALUE``
    (``rum-f:neggrad+.step2.lr=0.01``); it lands in the pipeline's own table.

    Example:
        >>> parse_assignments(["finetune.lr=0.01", "del.epochs=abc"])
        {'finetune': {'lr': 0.01}, 'del': {'epochs': 'abc'}}
        >>> parse_assignments(["rum-f:neggrad+.step2.lr=0.01", "rum-f:neggrad+.recipe=ours"])
        {'rum-f:neggrad+': {'step2': {'lr': 0.01}, 'recipe': 'ours'}}
    """
    parsed: dict[str, dict[str, Any]] = {}
    for assignment in assignments or []:
        key, sep, value = assignment.partition("=")
        method, dot, name = key.rpartition(".")
        if not sep or not dot or not method or not name:
            raise ConfigError(f"--set expects METHOD.PARAM=VALUE, got {assignment!r}")
        try:
            parsed_value = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            parsed_value = value
        table = parsed
        if ":" in method and "." in method:  # ENTRY.stepK.PARAM: a pipeline step's setting
            entry, _, step = method.partition(".")
            if not step or "." in step:
                raise ConfigError(f"--set expects PIPELINE.stepK.PARAM=VALUE for a pipeline step, got {assignment!r}")
            table, method = parsed.setdefault(entry, {}), step
        if name in table.get(method, {}):
            raise ConfigError(f"--set gives {key} twice")
        table.setdefault(method, {})[name] = parsed_value
    return parsed


def merge_assignments(hparams: dict[str, dict[str, Any]], assignments: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``hparams`` (a spec's) with ``--set`` values on top; a pipeline's step tables merge key by key.

    Example:
        >>> merge_assignments({"rum-f:neggrad+": {"step2": {"lr": 0.1, "epochs": 3}}},
        ...                   {"rum-f:neggrad+": {"step2": {"lr": 0.2}}})
        {'rum-f:neggrad+': {'step2': {'lr': 0.2, 'epochs': 3}}}
    """
    merged = {k: {n: dict(v) if isinstance(v, dict) else v for n, v in values.items()} for k, values in hparams.items()}
    for method, values in assignments.items():
        table = merged.setdefault(method, {})
        for name, value in values.items():
            if isinstance(value, dict) and isinstance(table.get(name), dict):
                table[name].update(value)
            else:
                table[name] = value
    return merged


def default_out_dir(root: str = "runs") -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, suffix = Path(root) / stamp, 1
    while path.exists():
        path, suffix = Path(root) / f"{stamp}-{suffix}", suffix + 1
    return path


def stage_logger():
    """A ``log(line)`` for run_experiment: dim lines on a terminal, plain lines otherwise (stderr)."""
    if sys.stderr.isatty():
        from rich.console import Console

        console = Console(stderr=True)
        return lambda line: console.print(f"[dim]{line}[/dim]", highlight=False)
    return lambda line: print(line, file=sys.stderr, flush=True)
