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


class OutputError(MemunlearnError, OSError):
    """An output or cache location that cannot be written (wrong kind, not writable, no space).

    Also an :class:`OSError`, so code that treats an unwritable cache as a soft failure keeps working.
    """


class DivergedError(MemunlearnError):
    """A training or unlearning run whose loss, weights or outputs stopped being finite.

    Args:
        what: the run (method name, "original (seed 0)", ...).
        step: the step at which the loss became non-finite, if that is how it was noticed.
        loss: that loss value.
        reason: what else was found instead (e.g. "3 weight entries of fc.weight are NaN or infinite").
    """

    def __init__(self, what: str, step: int | None = None, loss: float | None = None, reason: str | None = None):
        self.what, self.step, self.loss, self.reason = what, step, loss, reason
        found = reason if reason is not None else f"loss became {loss} at step {step}"
        super().__init__(f"{what} diverged: {found}; lower the learning rate or the number of epochs")

    def __reduce__(self):  # survives the trip back from a worker process with its message intact
        return type(self), (self.what, self.step, self.loss, self.reason)


class DamagedArtefactWarning(UserWarning):
    """A cached or user-supplied file whose contents do not match the checksum stored with it,
    or that has no checksum (written by an older memunlearn)."""


def unknown_name(kind: str, name: str, known) -> ConfigError:
    """The error for a name that is not in a registry, listing the known ones."""
    return ConfigError(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")
