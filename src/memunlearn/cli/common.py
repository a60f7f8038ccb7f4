"""Options and parsing shared by several sub-commands."""

from __future__ import annotations

import argparse
import ast
import datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError


def add_data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data and model")
    group.add_argument("--dataset", default="digits", help="digits (default), fashion-mnist, mnist, cifar10, cifar100, svhn, npz")
    group.add_argument("--data-dir", help="directory (or .npz file) holding the dataset's files")
    group.add_argument("--model", help="resnet18, cnn or vit (default: the dataset's recipe)")
    group.add_argument("--width", type=int, help="model width (ResNet-18: 64 = the papers' model)")
    group.add_argument("--epochs", type=int, help="training epochs of the original model and the oracle")
    group.add_argument("--train-subset", type=int, metavar="N", help="use a stratified subset of N training examples")
    group.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    group.add_argument("--fast", action="store_true", help="CPU/GPU fast path: channels_last and bf16 autocast where native")
    group.add_argument("--cache-dir", help="where checkpoints are cached (default $MEMUNLEARN_CACHE or ~/.cache/memunlearn)")


def parse_list(text: str) -> tuple[str, ...]:
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    if not items:
        raise ConfigError(f"empty list {text!r}")
    return items


def parse_assignments(assignments: list[str] | None) -> dict[str, dict[str, Any]]:
    """``["finetune.lr=0.01", "neggrad+.beta=0.95"]`` → ``{"finetune": {"lr": 0.01}, ...}``."""
    parsed: dict[str, dict[str, Any]] = {}
    for assignment in assignments or []:
        key, sep, value = assignment.partition("=")
        method, dot, name = key.rpartition(".")
        if not sep or not dot or not method or not name:
            raise ConfigError(f"--set expects METHOD.PARAM=VALUE, got {assignment!r}")
        try:
            parsed_value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parsed_value = value
        parsed.setdefault(method, {})[name] = parsed_value
    return parsed


def default_out_dir(root: str = "runs") -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path, suffix = Path(root) / stamp, 1
    while path.exists():
        path, suffix = Path(root) / f"{stamp}-{suffix}", suffix + 1
    return path
