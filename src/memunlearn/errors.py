"""Errors that memunlearn raises for problems the user can fix.

The CLI turns every :class:`MemunlearnError` into one line on stderr and exit code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MemunlearnError(Exception):
    """Base class: a problem with the user's input, data or configuration."""


class ConfigError(MemunlearnError, ValueError):
    """An unknown name, an out-of-range option, or options that do not fit together."""


class DataError(MemunlearnError):
    """A dataset that is missing, malformed, or does not match what was asked for."""


class ForgetSetError(MemunlearnError, ValueError):
    """Forget indices that are out of range, duplicated, non-integer or empty."""


class CheckpointError(MemunlearnError):
    """A checkpoint or mask file that cannot be read or does not fit the model."""


class DivergedError(MemunlearnError):
    """A training or unlearning run whose loss stopped being finite."""

    def __init__(self, what: str, step: int, loss: float):
        self.what, self.step, self.loss = what, step, loss
        super().__init__(
            f"{what} diverged: loss became {loss} at step {step}; "
            "lower the learning rate or the number of epochs"
        )


def unknown_name(kind: str, name: str, known) -> ConfigError:
    """The error for a name that is not in a registry, listing the known ones."""
    return ConfigError(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")
