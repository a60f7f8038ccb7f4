"""Read a results file into the one shape that every report section reads.

Two families of files exist: a run's ``results.json`` (``memunlearn run``; also nested inside the
RUM benchmarks) and the benchmark files in ``benchmarks/results/`` (DEL vs baselines with curves and
the ablation, proxies vs exact scores, RUM, pool scaling, training throughput). :func:`load_results`
recognises each, checks it, and returns :class:`Results`: a header (setting, command, versions),
one :class:`Block` per forget set (rows of per-method statistics, each a mean and 95% interval
exactly as stored), and the extra data some sections plot. Anything it cannot read is a
:class:`~memunlearn.errors.DataError` with one line saying what was expected.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError

# Statistics a row may carry, by the canonical name used everywhere in the report.
STAT_KEYS = (
    "acc_forget", "acc_retain", "acc_test", "mia_efficacy", "loss_mia_auc",
    "gap_forget", "gap_retain", "gap_test", "gap_mia", "tow", "tow_mia",
    "time_fraction", "examples_fraction", "params_changed_fraction",
)
# The row name of the noise floor when results carry it as its own row kind (format 2).
NOISE_FLOOR = "independent retrain"
# The names under which an independent retrain (the noise floor) appears among the methods.
RETRAIN_PREFIXES = ("retrain", "independent retrain", "oracle-seed", "noise floor")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass
class Row:
    """One line of a table: a method (or the original model, the oracle, a mask, a schedule).

    ``stats`` maps a name from :data:`STAT_KEYS` to the stored ``{"mean", "half_width", "n", ...}``.
    """

    name: str
    stats: dict[str, dict[str, Any]]
    seeds_ok: int | None = None
    seeds: int | None = None
    errors: list[str] = field(default_factory=list)

    def mean(self, key: str) -> float | None:
        stat = self.stats.get(key)
        if not stat or not is_number(stat.get("mean")):
            return None
        return float(stat["mean"])

    def half_width(self, key: str) -> float | None:
        stat = self.stats.get(key)
        if not stat or not is_number(stat.get("half_width")):
            return None
        return float(stat["half_width"])

    def interval(self, key: str) -> tuple[float, float] | None:
        mean, half = self.mean(key), self.half_width(key)
        return None if mean is None or half is None else (mean - half, mean + half)

    @property
    def failed(self) -> int:
        """Seeds that did not finish (diverged or failed)."""
        if self.seeds is None or self.seeds_ok is None:
            return 0
        return self.seeds - self.seeds_ok

    @property
    def label(self) -> str:
        if self.failed and self.seeds:
            return f"{self.name} (failed {self.failed}/{self.seeds})"
        return self.name


@dataclass
class Block:
    """One forget set's results: the table of methods against its oracle."""

    title: str
    rule: str | None
    methods: list[Row]
    original: Row | None = None
    oracle: Row | None = None
    retrain: Row | None = None
    retrain_note: str | None = None
    seeds: list[Any] = field(default_factory=list)
    per_seed: list[Mapping[str, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def compared(self) -> list[Row]:
        """The unlearning methods proper: every row except retrains."""
        return [row for row in self.methods if not is_retrain_name(row.name)]


@dataclass
class Results:
    """What a report shows, read from one results file."""

    kind: str
    title: str
    source: str | None = None
    setting: list[tuple[str, str]] = field(default_factory=list)
    command: str | None = None
    spec: str | None = None
    versions: dict[str, Any] = field(default_factory=dict)
    blocks: list[Block] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)


def is_retrain_name(name: str) -> bool:
    return name.lower().startswith(RETRAIN_PREFIXES)


def load_results(results_or_path: Mapping[str, Any] | str | Path) -> Results:
    """Read a results dictionary, a results file, or a run directory (holding ``results.json``).

    Args:
        results_or_path: what ``run_experiment`` returned, or the path of its ``results.json``
            (or of the directory that holds it), or of a benchmark's JSON.

    Returns:
        The :class:`Results` every report section reads.

    Raises:
        DataError: no results there, a file that is not JSON, or JSON of a shape no section reads
            (for example a results.json written by an incompatible version).

    Example:
        >>> load_results({"command": "x"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        memunlearn.errors.DataError: results is not a memunlearn results file...
    """
    source = None
    if isinstance(results_or_path, Mapping):
        raw = dict(results_or_path)
    else:
        path = Path(results_or_path)
        if path.is_dir():
            if not (path / "results.json").is_file():
                raise DataError(f"no results.json in {path}: pass a finished run's directory or a results file")
            path = path / "results.json"
        elif not path.is_file():
            raise DataError(f"no such results file: {path}")
        source = str(path)
        raw = read_json(path)
    label = source or "results"
    for predicate, parse in PARSERS:
        if predicate(raw):
            results = parse(raw, label)
            results.source, results.raw = source, raw
            return results
    keys = ", ".join(sorted(raw)[:8]) or "none"
    if raw.get("memunlearn_version"):
        raise DataError(
            f"{label} was written by memunlearn {raw['memunlearn_version']} in a shape this version does not read "
            f"(top-level keys: {keys}); regenerate it with this version's `memunlearn run`"
        )
    raise DataError(
        f"{label} is not a memunlearn results file: expected a run's results.json (with summary and per_seed) "
        f"or a benchmark's JSON; its top-level keys are {keys}"
    )


def read_json(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if not text.strip():
        raise DataError(f"{path} is empty: the run that writes it did not finish")
    try:
        raw = json.loads(text)  # NaN/Infinity from older writers are accepted; null is the strict form
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path} holds a JSON {type(raw).__name__}, not a results object")
    return raw


# ---------------------------------------------------------------------------------------------
# Rows and statistics


def canonical_stats(stats: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Keep the interval statistics, named without the ``metrics.`` prefix runs use."""
    out = {}
    for key, value in stats.items():
        name = key.removeprefix("metrics.")
        if isinstance(value, Mapping) and "mean" in value:
            out[name] = dict(value)
    return out


def row_from_summary(name: str, stats: Any, errors: list[str] | None = None) -> Row:
    if not isinstance(stats, Mapping):
        raise DataError(f"summary row {name!r} is a {type(stats).__name__}, not a table of statistics")
    seeds_ok, seeds = stats.get("seeds_ok"), stats.get("seeds")
    return Row(name, canonical_stats(stats), seeds_ok if isinstance(seeds_ok, int) else None,
               seeds if isinstance(seeds, int) else None, errors or [])


def seed_errors(per_seed: list[Mapping[str, Any]], method: str, group: str = "methods") -> list[str]:
    """``"seed S: status: message"`` for each seed on which ``method`` did not finish."""
    errors = []
    for row in per_seed:
        entry = (row.get(group) or {}).get(method)
        if isinstance(entry, Mapping) and entry.get("status", "ok") != "ok":
            message = str(entry.get("error") or "no message recorded").splitlines()[0]
            errors.append(f"seed {row.get('seed', '?')}: {entry.get('status')}: {message}")
    return errors


def split_retrain(methods: list[Row], per_seed: list[Mapping[str, Any]]) -> tuple[Row | None, str | None]:
    """The independent retrain (noise floor) among ``methods``, or why there is none."""
    candidates = [row for row in methods if is_retrain_name(row.name)]
    if not candidates:
        return None, (
            "these results have no independent retrain (the oracle's recipe with another seed), so the noise "
            "floor is missing"
        )
    for row in sorted(candidates, key=lambda r: "independent" not in r.name):
        if row.seeds_ok == 0 or row.mean("tow") is None:
            continue
        if _same_as_oracle(row, per_seed):
            continue
        return row, None
    names = ", ".join(repr(row.name) for row in candidates)
    return None, (
        f"the {names} row reproduces the oracle exactly (every gap is 0 on every seed: it used the oracle's own "
        "seed), so it measures no noise; the noise floor (a retrain with another seed) is missing"
    )


def _same_as_oracle(row: Row, per_seed: list[Mapping[str, Any]]) -> bool:
    gaps = ("gap_forget", "gap_retain", "gap_test", "gap_mia")
    per_seed_gaps = [
        entry["vs_oracle"] for seed_row in per_seed
        if isinstance(entry := (seed_row.get("methods") or {}).get(row.name), Mapping)
        and isinstance(entry.get("vs_oracle"), Mapping)
    ]
    if per_seed_gaps:
        return all(gap.get(g, 0) == 0 for gap in per_seed_gaps for g in gaps)
    return all(row.mean(g) in (0.0, None) for g in gaps) and row.mean("tow") == 1.0


# ---------------------------------------------------------------------------------------------
# A run's results.json


def _is_run(raw: Mapping[str, Any]) -> bool:
    return "per_seed" in raw and "summary" in raw


def _parse_run(raw: Mapping[str, Any], label: str) -> Results:
    block = run_block(raw, label, title=f"forget set {raw.get('forget_set', {}).get('rule', '?')}")
    results = Results(kind="run", title=_run_title(raw), blocks=[block])
    results.setting = run_setting(raw)
    results.command = raw.get("command") if isinstance(raw.get("command"), str) else equivalent_command(raw)
    results.spec = _spec_text(raw)
    results.versions = dict(raw.get("versions") or {})
    results.warnings = version_warnings(raw, label)
    return results


def run_block(raw: Mapping[str, Any], label: str, title: str) -> Block:
    """The table of one run's results.json (format 1: one forget rule), checked for its shape."""
    return summary_block(raw.get("summary"), raw.get("per_seed"), (raw.get("forget_set") or {}).get("rule"), title,
                         label, raw.get("memunlearn_version", "an unknown version"), list(raw.get("seeds") or []))


def summary_block(summary: Any, per_seed: Any, rule: str | None, title: str, label: str, version: str,
                  seeds: list[Any]) -> Block:
    """A block from a summary (``oracle``, ``original``, optional ``noise_floor``, ``methods``) and its per-seed rows."""
    if not isinstance(summary, Mapping) or not isinstance(summary.get("methods"), Mapping) or not isinstance(per_seed, list):
        raise DataError(
            f"{label} (memunlearn {version}) has a different shape: expected summary.methods and a per_seed list; "
            "regenerate it with this version's `memunlearn run`"
        )
    methods = []
    for name, stats in summary["methods"].items():
        row = row_from_summary(name, stats, seed_errors(per_seed, name))
        if not row.stats and row.seeds_ok != 0:
            known = ", ".join(sorted(stats)[:6]) if isinstance(stats, Mapping) else type(stats).__name__
            raise DataError(
                f"{label} (memunlearn {version}) has a different shape: summary.methods[{name!r}] holds {known}, "
                "none of the statistics this report reads (tow, tow_mia, accuracies with mean and half_width); "
                "regenerate it with this version's `memunlearn run`"
            )
        methods.append(row)
    original = row_from_summary("original (no unlearning)", summary["original"]) if isinstance(summary.get("original"), Mapping) else None
    oracle = None
    if isinstance(summary.get("oracle"), Mapping):
        oracle = row_from_summary("oracle (retrain, same seed)", summary["oracle"])
    retrain: Row | None
    if isinstance(summary.get("noise_floor"), Mapping) and canonical_stats(summary["noise_floor"]):
        retrain, note = row_from_summary(NOISE_FLOOR, summary["noise_floor"]), None
    else:
        retrain, note = split_retrain(methods, per_seed)
    if not seeds:
        seeds = [r.get("seed") for r in per_seed if isinstance(r, Mapping)]
    block = Block(title=title, rule=rule, methods=methods, original=original, oracle=oracle, retrain=retrain,
                  retrain_note=note, seeds=seeds, per_seed=per_seed)
    train_acc = [r["original"]["train_accuracy"] for r in per_seed
                 if is_number((r.get("original") or {}).get("train_accuracy"))]
    if train_acc:
        block.extras["original_train_accuracy"] = (min(train_acc), max(train_acc))
    stored = summary.get("verdict")
    if isinstance(stored, Mapping) and (retrain is None or retrain.name == NOISE_FLOOR):
        block.extras["verdict"] = dict(stored)  # computed by the experiment (results.json); else the report computes it
    per_class = {}
    for name, stats in (("oracle", summary.get("oracle")), ("original", summary.get("original")),
                        (NOISE_FLOOR, summary.get("noise_floor")), *summary["methods"].items()):
        if isinstance(stats, Mapping) and isinstance(stats.get("per_class"), Mapping):
            per_class[name] = dict(stats["per_class"])
    if per_class:
        block.extras["per_class"] = per_class
    exposed = _exposed(per_seed)
    if exposed:
        block.extras["exposed"] = exposed
    partitions = {str(r.get("seed")): r["rum"] for r in per_seed if isinstance(r.get("rum"), Mapping)}
    if partitions:
        block.extras["rum_partitions"] = partitions
    masks = _mask_layers(per_seed)
    if masks:
        block.extras["mask_layers"] = masks
    return block


def _exposed(per_seed: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The first seed's most exposed forget examples per model (``exposed`` lists), if recorded."""
    for seed_row in per_seed[:1]:
        if not isinstance(seed_row, Mapping):
            return {}
        entries = {"original (no unlearning)": seed_row.get("original"), NOISE_FLOOR: seed_row.get("noise_floor"),
                   **(seed_row.get("methods") or {})}
        lists = {name: [e for e in entry["exposed"] if isinstance(e, Mapping)] for name, entry in entries.items()
                 if isinstance(entry, Mapping) and isinstance(entry.get("exposed"), list)}
        if lists:
            return {"seed": seed_row.get("seed"), "models": lists}
    return {}


def _mask_layers(per_seed: list[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per-layer mask rows (``Mask.per_layer()``) recorded by a method on the first seed, if any."""
    found = {}
    for seed_row in per_seed[:1]:
        for name, entry in (seed_row.get("methods") or {}).items():
            mask = entry.get("mask") if isinstance(entry, Mapping) else None
            layers = mask.get("per_layer") if isinstance(mask, Mapping) else None
            if isinstance(layers, list) and layers and all(isinstance(layer, Mapping) for layer in layers):
                found[name] = layers
    return found


def _run_title(raw: Mapping[str, Any]) -> str:
    dataset = (raw.get("dataset") or {}).get("name") or (raw.get("config") or {}).get("dataset", "?")
    model = (raw.get("setting") or {}).get("model", "?")
    rule = (raw.get("forget_set") or {}).get("rule", "?")
    return f"{dataset} · {model} · forget {rule}"


def run_setting(raw: Mapping[str, Any]) -> list[tuple[str, str]]:
    dataset = raw.get("dataset") or {}
    setting = raw.get("setting") or {}
    train = setting.get("train") or {}
    seeds = raw.get("seeds") or []
    lines = []
    if dataset:
        lines.append(("dataset", f"{dataset.get('name', '?')}: {dataset.get('n_train', '?')} training, "
                                 f"{dataset.get('n_test', '?')} test examples, {len(dataset.get('classes') or []) or '?'} classes"))
    if setting:
        recipe = ", ".join(f"{k} {train[k]}" for k in ("epochs", "lr", "batch_size") if k in train)
        lines.append(("model", f"{setting.get('model', '?')} width {setting.get('width', '?')}" + (f"; {recipe}" if recipe else "")))
    forget = raw.get("forget_set") or {}
    if forget:
        sizes = sorted({v["size"] for v in (forget.get("per_seed") or {}).values() if isinstance(v, Mapping) and v.get("size") is not None})
        lines.append(("forget rule", f"{forget.get('rule', '?')}" + (f" ({', '.join(map(str, sizes))} examples)" if sizes else "")))
    if seeds:
        lines.append(("seeds", f"{', '.join(map(str, seeds))} (each with its own oracle; intervals are 95% Student-t over {len(seeds)} seed{'s' if len(seeds) != 1 else ''})"))
    if raw.get("device"):
        lines.append(("device", str(raw["device"])))
    if is_number(raw.get("wall_time")):
        lines.append(("wall time", f"{raw['wall_time']:.1f} s"))
    return lines


def equivalent_command(raw: Mapping[str, Any]) -> str | None:
    """The ``memunlearn run`` command line equivalent to a run's recorded config."""
    config = raw.get("config")
    if not isinstance(config, Mapping):
        return None
    flags = {"dataset": "--dataset", "data_dir": "--data-dir", "model": "--model", "width": "--width",
             "forget": "--forget", "seed": "--seed", "seeds": "--seeds", "epochs": "--epochs",
             "train_subset": "--train-subset", "device": "--device", "rum_score": "--rum-score"}
    parts = ["memunlearn run"]
    for key, flag in flags.items():
        value = config.get(key)
        if value is not None and value is not False:
            parts.append(f"{flag} {value}")
    if config.get("methods"):
        parts.append("--methods " + ",".join(map(str, config["methods"])))
    for method, values in (config.get("hparams") or {}).items():
        for name, value in (values or {}).items():
            parts.append(f"--set {method}.{name}={value}")
    if config.get("fast"):
        parts.append("--fast")
    return " ".join(parts)


def _spec_text(raw: Mapping[str, Any]) -> str | None:
    """The spec as TOML (what ``memunlearn run SPEC.toml`` reads), else the recorded config as JSON."""
    spec = raw.get("spec") if raw.get("spec") is not None else raw.get("config")
    if spec is None or isinstance(spec, str):
        return spec
    if raw.get("spec") is not None and isinstance(spec, Mapping):
        try:
            import tomli_w

            return tomli_w.dumps(_drop_none(spec))
        except (ImportError, TypeError, ValueError):
            pass
    return json.dumps(spec, indent=2, default=str)


def _drop_none(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value


def version_warnings(raw: Mapping[str, Any], label: str) -> list[str]:
    from .. import __version__

    written = raw.get("memunlearn_version") or (raw.get("versions") or {}).get("memunlearn") or (raw.get("machine") or {}).get("memunlearn")
    if written and written != __version__:
        return [f"{label} was written by memunlearn {written}; this report is memunlearn {__version__}"]
    return []


def _parse_groups(raw: Mapping[str, Any], label: str) -> Results:
    """Format 2 (the experiment core): one group per forget rule, each with per-seed rows and a summary."""
    groups, version = raw.get("groups"), raw.get("memunlearn_version", "an unknown version")
    if not isinstance(groups, list) or not all(isinstance(g, Mapping) for g in groups):
        raise DataError(f"{label} (memunlearn {version}) has a different shape: 'groups' is not a list of forget-set groups")
    if not groups:
        raise DataError(f"{label} holds no results: its list of forget-set groups is empty")
    rules = [str(g.get("forget", "?")) for g in groups]
    blocks = [summary_block(g.get("summary"), g.get("per_seed"), rule, f"forget set {rule}", label, version,
                            list(raw.get("seeds") or [])) for g, rule in zip(groups, rules)]
    for block, group in zip(blocks, groups):
        thumbnails = group.get("thumbnails")
        if isinstance(thumbnails, Mapping) and isinstance(thumbnails.get("images"), Mapping):
            block.extras["thumbnails"] = {str(k): v for k, v in thumbnails["images"].items()
                                          if isinstance(v, str) and v.startswith("data:image/png;base64,")}
        classes = (raw.get("dataset") or {}).get("classes")
        if isinstance(classes, list):
            block.extras["classes"] = [str(c) for c in classes]
    dataset = (raw.get("dataset") or {}).get("name", "?")
    model = (raw.get("setting") or {}).get("model", "?")
    title = f"{dataset} · {model} · forget {rules[0]}" if len(rules) == 1 else f"{dataset} · {model} · {len(rules)} forget sets"
    results = Results(kind="run", title=title, blocks=blocks)
    results.setting = run_setting(raw)
    sizes = []
    for group in groups:
        per_seed = (group.get("forget_set") or {}).get("per_seed") or {}
        sizes.append(sorted({v["size"] for v in per_seed.values() if isinstance(v, Mapping) and v.get("size") is not None}))
    forget_line = "; ".join(rule + (f" ({', '.join(map(str, size))} examples)" if size else "") for rule, size in zip(rules, sizes))
    results.setting.insert(min(2, len(results.setting)), ("forget rule" if len(rules) == 1 else "forget rules", forget_line))
    evaluated_on = (raw.get("dataset") or {}).get("evaluated_on")
    if evaluated_on:
        results.setting.append(("evaluated on", str(evaluated_on)))
    results.command = raw.get("command") if isinstance(raw.get("command"), str) else None
    results.spec = _spec_text(raw)
    results.versions = dict(raw.get("versions") or {})
    results.warnings = version_warnings(raw, label)
    return results


# ---------------------------------------------------------------------------------------------
# Benchmark files


def _is_del_benchmark(raw: Mapping[str, Any]) -> bool:
    return isinstance(raw.get("rows"), list) and isinstance(raw.get("summary"), Mapping) and all(
        isinstance(v, Mapping) and "methods" in v for v in raw["summary"].values()
    ) and bool(raw["summary"])


def _parse_del_benchmark(raw: Mapping[str, Any], label: str) -> Results:
    results = _benchmark_header(raw, "DEL vs baselines", label)
    for rule, summary in raw["summary"].items():
        per_seed = [row for row in raw["rows"] if isinstance(row, Mapping) and row.get("rule") == rule]
        methods = [row_from_summary(name, stats, seed_errors(per_seed, name)) for name, stats in summary["methods"].items()]
        original = row_from_summary("original (no unlearning)", summary["original"]) if isinstance(summary.get("original"), Mapping) else None
        oracle = None
        if isinstance(summary.get("oracle_acc_forget"), Mapping):
            oracle = Row("oracle (retrain, same seed)", {"acc_forget": dict(summary["oracle_acc_forget"])})
        retrain, note = split_retrain(methods, per_seed)
        block = Block(title=f"forget set {rule}", rule=rule, methods=methods, original=original, oracle=oracle,
                      retrain=retrain, retrain_note=note, seeds=sorted({r.get("seed") for r in per_seed}),
                      per_seed=per_seed)
        for key in ("ablation", "curve_epochs", "curve_budget"):
            if isinstance(summary.get(key), Mapping) and summary[key]:
                block.extras[key] = [row_from_summary(name, stats, seed_errors(per_seed, name, key))
                                     for name, stats in summary[key].items()]
        if isinstance(summary.get("mask_timing"), Mapping):
            block.extras["mask_timing"] = summary["mask_timing"]
        train_acc = summary.get("original_train_accuracy")
        if isinstance(train_acc, Mapping) and is_number(train_acc.get("mean")):
            block.extras["original_train_accuracy"] = (train_acc["mean"], train_acc["mean"])
        tuning = (raw.get("tuning") or {}).get(rule)
        if isinstance(tuning, Mapping):
            block.extras["tuning"] = tuning
        results.blocks.append(block)
    return results


def _benchmark_header(raw: Mapping[str, Any], what: str, label: str) -> Results:
    results = Results(kind="benchmark", title=what)
    results.command = raw.get("command") if isinstance(raw.get("command"), str) else None
    results.versions = dict(raw.get("machine") or raw.get("versions") or {})
    if raw.get("setting_text"):
        results.setting.append(("setting", str(raw["setting_text"])))
    elif isinstance(raw.get("setting"), Mapping) and raw["setting"].get("note"):
        results.setting.append(("note", str(raw["setting"]["note"])))
    if raw.get("note") and raw.get("note") != raw.get("setting_text"):
        results.setting.append(("note", str(raw["note"])))
    if is_number(raw.get("wall_time")):
        results.setting.append(("wall time", f"{raw['wall_time']:.0f} s"))
    if isinstance(raw.get("args"), Mapping):
        results.spec = json.dumps(raw["args"], indent=2, default=str)
    results.warnings = version_warnings(raw, label)
    return results


def _is_nested_run(raw: Mapping[str, Any]) -> bool:
    return isinstance(raw.get("results"), Mapping) and _is_run(raw["results"])


def _parse_nested_run(raw: Mapping[str, Any], label: str) -> Results:
    """A RUM benchmark: one run's results.json inside, plus how the forget set was partitioned."""
    inner = _parse_run(raw["results"], label)
    results = _benchmark_header(raw, f"RUM · {inner.title}", label)
    results.setting = inner.setting + results.setting
    results.versions = results.versions or inner.versions
    results.spec = inner.spec
    results.blocks = inner.blocks
    if isinstance(raw.get("partition_score_means"), Mapping):
        results.blocks[0].extras["partition_score_means"] = raw["partition_score_means"]
    return results


def _is_levels(raw: Mapping[str, Any]) -> bool:
    return isinstance(raw.get("levels"), Mapping) and bool(raw["levels"]) and all(
        isinstance(level, Mapping) and isinstance(level.get("results"), Mapping) for level in raw["levels"].values()
    )


def _parse_levels(raw: Mapping[str, Any], label: str) -> Results:
    """RUM's difficulty benchmark: one run per memorization level of the forget set."""
    results = _benchmark_header(raw, "Unlearning difficulty by memorization level", label)
    for level, entry in raw["levels"].items():
        inner = entry["results"]
        if not _is_run(inner):
            raise DataError(f"{label}: level {level!r} holds no run results (summary and per_seed)")
        results.blocks.append(run_block(inner, label, title=f"memorization level {level}: forget set {entry.get('forget_rule', '?')}"))
        if not results.setting or results.setting[0][0] != "dataset":
            results.setting = run_setting(inner) + results.setting
    return results


def _is_proxies(raw: Mapping[str, Any]) -> bool:
    proxies = raw.get("proxies")
    return isinstance(proxies, Mapping) and bool(proxies) and all(
        isinstance(p, Mapping) and "rho" in p for p in proxies.values()
    )


def _parse_proxies(raw: Mapping[str, Any], label: str) -> Results:
    """Memorization proxies against exact scores: Spearman ρ and cost per proxy."""
    results = _benchmark_header(raw, "Memorization proxies vs exact scores", label)
    setting = (raw.get("setting") if isinstance(raw.get("setting"), Mapping) else raw.get("size")) or {}
    if setting.get("dataset"):
        results.setting.insert(0, ("dataset", f"{setting.get('dataset')} ({setting.get('n_train', '?')} training examples), "
                                              f"model {setting.get('model', '?')} width {setting.get('width', '?')}"))
    if setting.get("pool_size"):
        results.setting.insert(1, ("model pool", f"{setting['pool_size']} models on {setting.get('subset_fraction', '?')} subsets"))
    proxies = {}
    for name, entry in raw["proxies"].items():
        # Each value is either an interval over seeds or a single number (one seed).
        proxies[name] = {k: (dict(v) if isinstance(v, Mapping) else {"mean": v, "half_width": None, "n": 1})
                         for k, v in entry.items() if isinstance(v, Mapping) or is_number(v)}
        if isinstance(entry.get("needs"), str):
            proxies[name]["needs"] = entry["needs"]
    results.extras["proxies"] = proxies
    if isinstance(raw.get("exact_summary"), Mapping):
        results.extras["exact_summary"] = raw["exact_summary"]
    return results


def _is_pool_scaling(raw: Mapping[str, Any]) -> bool:
    configs = raw.get("configs")
    return isinstance(configs, Mapping) and bool(configs) and all(
        isinstance(c, Mapping) and "models_per_minute" in c for c in configs.values()
    )


def _parse_pool_scaling(raw: Mapping[str, Any], label: str) -> Results:
    results = _benchmark_header(raw, "Model-pool throughput", label)
    setting = raw.get("setting") or {}
    if setting:
        results.setting.insert(0, ("setting", f"{setting.get('dataset', '?')} ({setting.get('n_train', '?')} examples), "
                                              f"{setting.get('model', '?')} width {setting.get('width', '?')}, "
                                              f"{setting.get('epochs', '?')} epochs, pool of {setting.get('pool_size', '?')}, "
                                              f"{setting.get('repeats', '?')} repeats, {setting.get('cpus', '?')} CPUs"))
    results.extras["pool_configs"] = raw["configs"]
    return results


def _is_throughput(raw: Mapping[str, Any]) -> bool:
    variants = raw.get("variants")
    return isinstance(variants, Mapping) and bool(variants) and all(
        isinstance(v, Mapping) and "examples_per_second" in v for v in variants.values()
    )


def _parse_throughput(raw: Mapping[str, Any], label: str) -> Results:
    results = _benchmark_header(raw, "Training throughput", label)
    results.setting.insert(0, ("setting", f"{raw.get('dataset', '?')}, {raw.get('train_size', '?')} examples, "
                                          f"{raw.get('model', '?')} width {raw.get('width', '?')}, batch {raw.get('batch_size', '?')}, "
                                          f"device {raw.get('device', '?')}"))
    results.extras["throughput"] = raw["variants"]
    return results


PARSERS = [
    (lambda raw: "groups" in raw, lambda raw, label: _parse_groups(raw, label)),
    (_is_run, _parse_run),
    (_is_nested_run, _parse_nested_run),
    (_is_levels, _parse_levels),
    (_is_del_benchmark, _parse_del_benchmark),
    (_is_proxies, _parse_proxies),
    (_is_pool_scaling, _parse_pool_scaling),
    (_is_throughput, _parse_throughput),
]
