"""Which forget rules can make a sequence of deletion requests: checked by the spec before any work,
below both the spec (:mod:`.spec`) and the requests' run (:mod:`.requests`)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ConfigError

__all__ = ["SINGLE_SET_KINDS", "check_request_rules"]

# Forget kinds that make one forget set, not a sequence drawn from what is still retained.
SINGLE_SET_KINDS = {
    "full-class": "it removes every example of its classes at once, so a second request would find none left",
    "indices": "an index file names one fixed set, so a second request would forget the same examples again",
    "mislabeled": "it flips labels before the original model trains; the flipped examples are one forget set",
    "backdoor": "it poisons images before the original model trains; the poisoned examples are one forget set",
}


def check_request_rules(rules: Sequence[str], count: int, where: str = "--requests") -> None:
    """Refuse forget rules that cannot make ``count`` successive requests, before any work.

    Raises:
        ConfigError: ``count`` >= 2 with a ``full-class``, ``indices``, ``mislabeled`` or
            ``backdoor`` rule (each makes one forget set, not a sequence).

    Example:
        >>> check_request_rules(["iid:0.02"], 5)
        >>> check_request_rules(["full-class:3"], 1)
    """
    if count < 2:
        return
    for rule in rules:
        kind = rule.partition(":")[0]
        if kind in SINGLE_SET_KINDS:
            raise ConfigError(f"{where}: {count} requests of the forget rule {rule!r} cannot be drawn: "
                              f"{SINGLE_SET_KINDS[kind]}; use one request, or a rule such as iid:0.02")
