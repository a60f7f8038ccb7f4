"""memunlearn: memorization-aware machine unlearning for PyTorch classifiers.

The common job in one call::

    from memunlearn import load_dataset, make_forget_set, build_model, train, unlearn, evaluate
    data = load_dataset("digits")
    forget_set = make_forget_set("iid:0.1", data, seed=0)

The names below are imported on first use, so ``import memunlearn`` (and ``memunlearn --help``)
does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "audit": "auditing",
    "Dataset": "data", "Examples": "data", "load_dataset": "data",
    "compare_to_oracle": "evaluation", "evaluate": "evaluation", "tow": "evaluation", "tow_mia": "evaluation",
    "RunConfig": "experiment", "run_experiment": "experiment",
    "ForgetSet": "forget", "make_forget_set": "forget",
    "available_methods": "methods", "unlearn": "methods",
    "build_model": "models",
    "TrainConfig": "training", "train": "training",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
