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
    changed = [params_changed_fraction(e) for e in entries]
    if any(c is not None for c in changed):
        summary["params_changed_fraction"] = mean_interval(c for c in changed if c is not None)
    per_class = _per_class_means(entries)
    if per_class:
        summary["per_class"] = per_class
    return summary


def params_changed_fraction(entry: dict[str, Any]) -> float | None:
    """The fraction of parameter entries a method's run changed (its ``cost``), None if not recorded."""
    cost = entry.get("cost")
    value = cost.get("params_changed_fraction") if isinstance(cost, dict) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _per_class_means(entries: list[dict[str, Any]]) -> dict[str, list[float | None]]:
    """Per split, the mean over seeds of each class's accuracy (None where no seed has the class)."""
    tables = [e["per_class"] for e in entries if isinstance(e.get("per_class"), dict)]
    out: dict[str, list[float | None]] = {}
    for split in ("forget", "retain", "test"):
        lists = [t[split] for t in tables if isinstance(t.get(split), list)]
        if not lists:
            continue
        classes = max(len(values) for values in lists)
        means = []
        for c in range(classes):
            values = [v[c] for v in lists if c < len(v) and v[c] is not None]
            means.append(float(np.mean(values)) if values else None)
        out[split] = means
    return out


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
    result["verdict"] = verdict(result, rows)
    return result


# ------------------------------------------------------------------------------------------------
# The verdict: which methods are indistinguishable from retraining, at what cost (SPEC §6)

TOW_KEYS = ("tow", "tow_mia")
# what the table shows of a model; a method whose values all equal the original's did nothing visible
# (the loss-MIA AUC moves with any change of the weights, so it is not compared)
SHOWN_METRICS = ("acc_forget", "acc_retain", "acc_test", "mia_efficacy")
EFFECT_SPLITS = (("forget", "acc_forget"), ("retain", "acc_retain"), ("test", "acc_test"))


def _mean(stats: Any, key: str) -> float | None:
    stat = stats.get(key) if isinstance(stats, dict) else None
    value = stat.get("mean") if isinstance(stat, dict) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
        return float(value)
    return None


def closeness(stats: dict[str, Any]) -> float:
    """ToW × ToW-MIA of a summary row's means (1 = the oracle's numbers); ToW alone without ToW-MIA."""
    tow, tow_mia = _mean(stats, "tow"), _mean(stats, "tow_mia")
    return (tow or 0.0) * (1.0 if tow_mia is None else tow_mia)


def floor_bars(floor: dict[str, Any] | None) -> dict[str, float]:
    """The bars a method must reach: the lower ends of the independent retrain's 95% intervals of
    ToW and ToW-MIA (its mean when it has one seed, so no interval)."""
    bars: dict[str, float] = {}
    for key in TOW_KEYS:
        stat = (floor or {}).get(key)
        if not isinstance(stat, dict):
            continue
        mean, half = _mean(floor, key), stat.get("half_width")
        if mean is None:
            continue
        finite = isinstance(half, (int, float)) and not isinstance(half, bool) and np.isfinite(half)
        bars[key] = mean - half if finite else mean
    return bars


def _unchanged(label: str | None, stats: dict[str, Any], rows: list[dict[str, Any]] | None) -> str | None:
    """Why a method left the model as it was, or None: it changed no parameter on any seed, or
    every metric equals the original model's on every seed it finished."""
    if _mean(stats, "params_changed_fraction") == 0.0 and (stats["params_changed_fraction"].get("n") or 0) > 0:
        return "it changed no parameter"
    pairs = []
    for row in rows or []:
        entry = (row.get("methods") or {}).get(label) if label else None
        original = row.get("original")
        if isinstance(entry, dict) and entry.get("status", "ok") == "ok" and isinstance(original, dict):
            pairs.append((entry.get("metrics") or {}, original.get("metrics") or {}))
    if pairs:
        if all(m.get(k) == o.get(k) for m, o in pairs for k in SHOWN_METRICS):
            return "its accuracies and MIA-efficacy equal the original model's on every seed"
        return None
    if rows is None:  # no per-seed rows: compare the means
        original = stats.get("_original")
        if isinstance(original, dict) and all(_mean(stats, k) is not None and _mean(stats, k) == _mean(original, k)
                                              for k in SHOWN_METRICS):
            return "its mean accuracies and MIA-efficacy equal the original model's"
    return None


def verdict(summary: dict[str, Any], rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """What a summary lets a reader conclude, as data (the report and the table only word it).

    A method is *inside the noise floor* when its mean ToW and ToW-MIA both reach the lower ends of
    the independent retrain's 95% intervals; when the original model (no unlearning) is inside
    too, the bar separates nothing and no method is named (``status`` ``"vacuous"``).

    Returns:
        ``status`` (``inside``: some method is inside; ``none-inside``; ``vacuous``; ``no-floor``),
        ``bars`` (the ToW and ToW-MIA thresholds), ``floor_seeds``, ``inside`` (labels, cheapest
        first by time against the oracle's retrain), ``cheapest`` (the first of them; None when
        ``vacuous``),
        ``closest`` (when none is inside: the method whose largest shortfall below the bars is
        smallest, ties by ToW × ToW-MIA; without a floor, the highest ToW × ToW-MIA) with
        ``closest_short`` (how far its means fall below each bar), ``unchanged`` (labels of methods that left the model as it
        was) and, per method (and for ``original``), ``inside``, ``closeness`` (ToW × ToW-MIA),
        ``short`` (per bar, how far the mean falls below it; 0 when it reaches it), the cost
        (``time_fraction``, ``examples_fraction``, ``params_changed_fraction`` means), ``effect``
        (forget, retain and test accuracy minus the oracle's, means) and ``unchanged`` (why, or None).

    Example:
        >>> row = lambda tow, mia: {"tow": {"mean": tow, "half_width": None, "n": 1},
        ...                          "tow_mia": {"mean": mia, "half_width": None, "n": 1}}
        >>> v = verdict({"noise_floor": {"tow": {"mean": 0.99, "half_width": 0.01, "n": 3},
        ...                             "tow_mia": {"mean": 0.98, "half_width": 0.01, "n": 3}},
        ...              "original": row(0.9, 0.9), "methods": {"a": row(0.985, 0.975), "b": row(0.97, 0.99)}})
        >>> v["status"], v["cheapest"], v["methods"]["b"]["short"]["tow"]
        ('inside', 'a', 0.01)
    """
    floor = summary.get("noise_floor")
    bars = floor_bars(floor)
    oracle = summary.get("oracle") or {}
    methods = summary.get("methods") or {}

    def assess(label: str | None, stats: dict[str, Any]) -> dict[str, Any]:
        finished = stats.get("seeds_ok") != 0 and _mean(stats, "tow") is not None
        short = {key: round(max(0.0, bar - (_mean(stats, key) if _mean(stats, key) is not None else -np.inf)), 6)
                 if finished else None for key, bar in bars.items()}
        entry: dict[str, Any] = {
            "inside": bool(bars) and finished and all(v == 0 for v in short.values()),
            "closeness": closeness(stats) if finished else None,
            "short": short,
            "effect": {name: (None if _mean(stats, key) is None or _mean(oracle, key) is None
                              else _mean(stats, key) - _mean(oracle, key)) for name, key in EFFECT_SPLITS},
        }
        for key in ("time_fraction", "examples_fraction", "params_changed_fraction"):
            entry[key] = _mean(stats, key)
        if label is not None:
            entry["unchanged"] = _unchanged(label, {**stats, "_original": summary.get("original")}, rows) \
                if finished else None
        return entry

    per_method = {label: assess(label, stats) for label, stats in methods.items() if isinstance(stats, dict)}
    out: dict[str, Any] = {
        "bars": bars or None, "floor_seeds": (floor or {}).get("tow", {}).get("n") if isinstance(floor, dict) else None,
        "methods": per_method,
        "original": assess(None, summary["original"]) if isinstance(summary.get("original"), dict) else None,
        "unchanged": [label for label, entry in per_method.items() if entry.get("unchanged")],
        "inside": [], "cheapest": None, "closest": None, "closest_short": None,
    }
    scored = [label for label, entry in per_method.items() if entry["closeness"] is not None]

    def cost(label: str) -> tuple[float, float]:
        entry = per_method[label]
        return (entry["time_fraction"] if entry["time_fraction"] is not None else np.inf,
                entry["examples_fraction"] if entry["examples_fraction"] is not None else np.inf)

    out["inside"] = sorted((label for label in scored if per_method[label]["inside"]), key=cost)
    if not bars:
        out["status"] = "no-floor"
    elif out["original"] is not None and out["original"]["inside"]:
        out["status"] = "vacuous"  # doing nothing passes too: ``inside`` is listed, nothing is named cheapest
    else:
        out["status"] = "inside" if out["inside"] else "none-inside"
        out["cheapest"] = out["inside"][0] if out["inside"] else None
    if scored and not out["inside"]:
        if bars:  # the smallest largest shortfall below the bars; ties by ToW × ToW-MIA
            out["closest"] = min(scored, key=lambda label: (max(per_method[label]["short"].values()),
                                                            -per_method[label]["closeness"]))
            out["closest_short"] = per_method[out["closest"]]["short"]
        else:
            out["closest"] = max(scored, key=lambda label: per_method[label]["closeness"])
    return out


def versions() -> dict[str, str]:
    """The versions a result was computed with (recorded in every results.json)."""
    import scipy
    import sklearn

    return {
        "memunlearn": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
        "platform": platform.platform(), "cuda": str(torch.version.cuda),
    }
