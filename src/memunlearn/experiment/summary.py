"""Summaries over seeds: mean and 95% t-interval of every metric, one naming for every row.

Every row kind (oracle, original, the noise floor, each method) is summarised under the same
names: ``acc_forget``, ``acc_retain``, ``acc_test``, ``mia_efficacy``, ``loss_mia_auc``, the gaps
to the oracle ``gap_*``, ``tow``, ``tow_mia``, and the cost against the oracle's retrain: ``time_fraction`` (wall time) and
``examples_fraction`` (examples processed, the load-independent unit), where they exist.
"""

from __future__ import annotations

import platform
from typing import Any, Iterable

import numpy as np
import torch

from .. import __version__
from ..evaluation import mean_interval

METRIC_NAMES = ("acc_forget", "acc_retain", "acc_test", "mia_efficacy", "loss_mia_auc")
OPTIONAL_METRICS = ("attack_success_rate",)  # only where the forget set measures it (backdoor)
ORACLE_NAMES = ("gap_forget", "gap_retain", "gap_test", "gap_mia", "tow", "tow_mia")


def summarise_entries(entries: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Mean and interval of each metric over ``entries`` (rows with ``metrics``/``vs_oracle``)."""
    entries = list(entries)
    summary: dict[str, Any] = {}
    for name in METRIC_NAMES:
        summary[name] = mean_interval(e["metrics"][name] for e in entries if "metrics" in e)
    for name in OPTIONAL_METRICS:
        if any(name in e.get("metrics", {}) for e in entries):
            summary[name] = mean_interval(e["metrics"][name] for e in entries if name in e.get("metrics", {}))
    if any("vs_oracle" in e for e in entries):
        for name in ORACLE_NAMES:
            summary[name] = mean_interval(e["vs_oracle"][name] for e in entries if "vs_oracle" in e)
    for name in ("time_fraction", "examples_fraction"):
        if any(name in e for e in entries):
            summary[name] = mean_interval(e[name] for e in entries if name in e)
    return summary


def summarise(rows: list[dict[str, Any]], labels: Iterable[str]) -> dict[str, Any]:
    """Per row kind and per method label, the summary over seeds (diverged seeds excluded)."""
    result: dict[str, Any] = {
        "oracle": summarise_entries(r["oracle"] for r in rows),
        "original": summarise_entries(r["original"] for r in rows),
    }
    if all("noise_floor" in r for r in rows):
        result["noise_floor"] = summarise_entries(r["noise_floor"] for r in rows)
    result["methods"] = {}
    for label in labels:
        ok = [r["methods"][label] for r in rows if r["methods"][label]["status"] == "ok"]
        result["methods"][label] = {**summarise_entries(ok), "seeds_ok": len(ok), "seeds": len(rows)}
    return result


def versions() -> dict[str, str]:
    """The versions a result was computed with (recorded in every results.json)."""
    import scipy
    import sklearn

    return {
        "memunlearn": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
        "platform": platform.platform(), "cuda": str(torch.version.cuda),
    }
