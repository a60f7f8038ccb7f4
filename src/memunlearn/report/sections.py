"""The report's sections: one function per section, listed in :data:`SECTIONS`.

Each :class:`SectionSpec` has ``available(results)`` (does this file carry the data?) and
``build(results)`` (the :class:`~memunlearn.report.document.Section`, or ``None``). A new kind of
result plugs in as one more entry; sections whose data is absent are listed at the end of the
page under "Not in these results" (``absent``), so a reader knows what a fuller run would show.

Numbers in tables are the stored means and 95% half-widths, formatted, never recomputed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from .data import NOISE_FLOOR, Block, Results, Row, is_number
from .blocks import Code, Facts, Figure, Gallery, Heading, Section, Table, Text

TOW_KEYS = (("tow", "ToW"), ("tow_mia", "ToW-MIA"))
GAP_KEYS = (("gap_forget", "Δforget"), ("gap_retain", "Δretain"), ("gap_test", "Δtest"), ("gap_mia", "ΔMIA"))
# (header, statistic, shown as a percentage)
VS_ORACLE_COLUMNS = (
    ("Δforget (pp)", "gap_forget", True), ("Δretain (pp)", "gap_retain", True), ("Δtest (pp)", "gap_test", True),
    ("ΔMIA (pp)", "gap_mia", True), ("ToW", "tow", False), ("ToW-MIA", "tow_mia", False),
    ("time / oracle", "time_fraction", False), ("examples / oracle", "examples_fraction", False),
    ("params changed (%)", "params_changed_fraction", True),
)
ACCURACY_COLUMNS = (
    ("forget acc (%)", "acc_forget", True), ("retain acc (%)", "acc_retain", True), ("test acc (%)", "acc_test", True),
    ("MIA-efficacy (%)", "mia_efficacy", True), ("loss-MIA AUC", "loss_mia_auc", False),
)
BAND_LABEL = "independent retrain, 95% interval (noise floor)"
# False while building a report without figures (markdown): plots are skipped, not drawn and dropped.
DRAW: ContextVar[bool] = ContextVar("DRAW", default=True)


class _NoPlots:
    """Stands in for :mod:`memunlearn.report.plots` when figures are not wanted: every plot is empty."""

    def __getattr__(self, name: str) -> Callable[..., str]:
        return lambda *args, **kwargs: ""


def _plots() -> Any:
    if DRAW.get():
        from . import plots

        return plots
    return _NoPlots()


@dataclass
class SectionSpec:
    key: str
    available: Callable[[Results], bool]
    build: Callable[[Results], Section | None]
    figure: bool = False  # only figures: skipped in markdown
    absent: str | None = None  # what the "Not in these results" list says when unavailable


# ---------------------------------------------------------------------------------------------
# Formatting


def cell(row: Row | None, key: str, percent: bool) -> str:
    """``mean ± half-width`` as stored (percentages for accuracies and gaps); ``—`` when absent."""
    from .terminal import format_interval

    return "—" if row is None else format_interval(row.stats.get(key), percent)


def _percent(value: float) -> str:
    return "under 1%" if value < 0.01 else f"{100 * value:.0f}%"


def cost_phrase(fraction: float | None, examples: float | None = None) -> str:
    """``"15% of the oracle's time"`` (and of its examples processed, the load-independent unit)."""
    if fraction is None and examples is None:
        return "cost not recorded"
    if fraction is None:
        return f"{_percent(examples or 0.0)} of the oracle's examples"  # not None either (checked above)
    text = f"{_percent(fraction)} of the oracle's time"
    if examples is not None:
        text += f", {_percent(examples)} of its examples"
    return text


def row_cost(row: Row) -> str:
    return cost_phrase(row.mean("time_fraction"), row.mean("examples_fraction"))


def rows_table(rows: list[Row], columns: Iterable[tuple[str, str, bool]], caption: str = "",
               first: str = "method", emphasis: Iterable[str] = ()) -> Table:
    """One line per row, only the columns some row has."""
    columns = [c for c in columns if any(row.mean(c[1]) is not None for row in rows)]
    emphasis = set(emphasis)
    table = Table([first] + [header for header, _, _ in columns], [], caption)
    for i, row in enumerate(rows):
        table.rows.append([row.label] + [cell(row, key, pct) for _, key, pct in columns])
        if row.name in emphasis:
            table.emphasis.add(i)
    return table


def block_heading(results: Results, block: Block) -> list[Heading]:
    return [Heading(block.title)] if len(results.blocks) > 1 else []


# ---------------------------------------------------------------------------------------------
# The verdict: which methods are indistinguishable from retraining


def thresholds(block: Block) -> dict[str, float] | None:
    """Lower ends of the independent retrain's 95% intervals (its value if it has one seed)."""
    if block.retrain is None:
        return None
    out = {}
    for key, _ in TOW_KEYS:
        interval = block.retrain.interval(key)
        value = interval[0] if interval else block.retrain.mean(key)
        if value is not None:
            out[key] = value
    return out or None


def indistinguishable(block: Block, row: Row) -> bool:
    """ToW and ToW-MIA at or above the lower ends of the independent retrain's 95% intervals."""
    bars = thresholds(block)
    if not bars or row.seeds_ok == 0:
        return False
    return all((mean := row.mean(key)) is not None and mean >= bar for key, bar in bars.items())


def vacuous(block: Block) -> bool:
    """True when the original model (no unlearning) meets the bar too: then it separates nothing."""
    return block.original is not None and indistinguishable(block, block.original)


def passing(block: Block, rows: Iterable[Row]) -> set[str]:
    """Names of ``rows`` that meet the bar, or none when the bar is vacuous."""
    return set() if vacuous(block) else {row.name for row in rows if indistinguishable(block, row)}


def scored(block: Block) -> list[Row]:
    return [row for row in block.compared() if row.seeds_ok != 0 and row.mean("tow") is not None]


def closeness(row: Row) -> float:
    """ToW × ToW-MIA (:func:`memunlearn.experiment.summary.closeness`, the one definition)."""
    from ..experiment.summary import closeness as of_stats

    return of_stats(row.stats)


def describe(row: Row, cost: bool = True) -> str:
    parts = [f"ToW {cell(row, 'tow', False)}"]
    if row.mean("tow_mia") is not None:
        parts.append(f"ToW-MIA {cell(row, 'tow_mia', False)}")
    if cost:
        parts.append(row_cost(row))
    return f"{row.label} ({', '.join(parts)})"


def block_verdict(block: Block) -> dict[str, Any]:
    """The block's verdict: as the experiment stored it (results.json), else computed here by the
    same function (:func:`memunlearn.experiment.summary.verdict`) from the block's rows."""
    from ..experiment.summary import verdict

    if isinstance(block.extras.get("verdict"), Mapping) and block.extras["verdict"].get("methods") is not None:
        return block.extras["verdict"]
    summary: dict[str, Any] = {"methods": {row.name: {**row.stats, "seeds_ok": row.seeds_ok, "seeds": row.seeds}
                                           for row in block.compared()}}
    if block.retrain is not None:
        summary["noise_floor"] = block.retrain.stats
    if block.original is not None:
        summary["original"] = block.original.stats
    if block.oracle is not None:
        summary["oracle"] = block.oracle.stats
    runs = [r for r in block.per_seed if isinstance(r, Mapping) and isinstance(r.get("original"), Mapping)
            and isinstance(r.get("methods"), Mapping)]
    return verdict(summary, runs or None)


def _row(block: Block, name: str | None) -> Row | None:
    return next((row for row in block.methods if row.name == name), None)


def _short_phrase(short: Mapping[str, Any] | None) -> str:
    """``outside the floor by ToW 0.011, ToW-MIA 0.018`` (how far the means fall below the bars)."""
    parts = [f"{label} {short[key]:.3f}" for key, label in TOW_KEYS
             if short and is_number(short.get(key)) and short[key] > 0]
    return "outside the floor by " + ", ".join(parts) if parts else ""


def _pp(value: Any) -> str:
    if not is_number(value):
        return "—"
    points = 100 * value
    return "±0.0" if abs(points) < 0.05 else f"{points:+.1f}"


def effect_phrase(entry: Mapping[str, Any]) -> str:
    """``forget +2.1, retain −0.3, test −0.5 pp vs the oracle`` (accuracy differences, means)."""
    effect = entry.get("effect") or {}
    return (f"forget {_pp(effect.get('forget'))}, retain {_pp(effect.get('retain'))}, test {_pp(effect.get('test'))} "
            "pp vs oracle").replace("-", "−")


@dataclass
class MethodLine:
    """What one method did, in words: against the noise floor, to the accuracies, at what cost."""

    name: str
    kind: str  # inside, outside, unchanged or reference (the original model)
    status: str
    effect: str = ""
    cost: str = ""
    compact: tuple[str, str, str] = ("", "", "")  # status, effect, cost for a terminal's columns

    @property
    def text(self) -> str:
        return "; ".join(part for part in (self.status, self.effect, self.cost) if part)


def _compact(entry: Mapping[str, Any], status: str) -> tuple[str, str, str]:
    effect = entry.get("effect") or {}
    cost = [f"{entry[key]:.2f}× {what}" for key, what in (("time_fraction", "time"), ("examples_fraction", "examples"))
            if is_number(entry.get(key))]
    return (status, " / ".join(_pp(effect.get(k)).replace("-", "−") for k in ("forget", "retain", "test")),
            ", ".join(cost))


def method_lines(block: Block) -> list[MethodLine]:
    """One line per method (and the original model first), from the block's verdict."""
    v = block_verdict(block)
    lines = []
    if v.get("original") and block.original is not None:
        lines.append(MethodLine(block.original.name, "reference", "the gap unlearning has to close",
                                effect_phrase(v["original"]), compact=_compact(v["original"], "(the gap to close)")))
    for row in block.compared():
        entry = (v.get("methods") or {}).get(row.name)
        if not entry:
            continue
        if row.seeds_ok == 0:
            lines.append(MethodLine(row.label, "outside", "did not finish on any seed"))
            continue
        cost = cost_phrase(entry.get("time_fraction"), entry.get("examples_fraction"))
        if entry.get("unchanged"):
            lines.append(MethodLine(row.label, "unchanged", f"left the model unchanged ({entry['unchanged']})", "", cost,
                                    _compact(entry, "UNCHANGED: " + entry["unchanged"].removeprefix("its "))))
            continue
        inside = bool(entry.get("inside")) and v.get("status") != "vacuous"
        if entry.get("inside") and not inside:
            status = "within the floor, as is the original model (no verdict)"
        else:
            status = ("inside the noise floor" if inside else _short_phrase(entry.get("short"))
                      or "not compared with a noise floor")
        short = ", ".join(f"{label} {entry['short'][key]:.3f}" for key, label in TOW_KEYS
                          if is_number((entry.get("short") or {}).get(key)) and entry["short"][key] > 0)
        compact = ("inside" if inside else ("inside, as is the original" if entry.get("inside") else
                                            (f"short by {short}" if short else "—")))
        lines.append(MethodLine(row.label, "inside" if inside else "outside", status, effect_phrase(entry), cost,
                                _compact(entry, compact)))
    return lines


def headline_blocks(block: Block) -> list[Any]:
    out: list[Any] = []
    rows = scored(block)
    v = block_verdict(block)
    bars = v.get("bars") or {}
    by_name = {row.name: row for row in block.methods}
    if block.retrain is not None and bars:
        within = [by_name[name] for name in v.get("inside") or [] if name in by_name]
        criterion = " and ".join(f"{label} ≥ {bars[key]:.3f}" for key, label in TOW_KEYS if key in bars)
        one_seed = block.retrain.interval("tow") is None
        no_verdict = v.get("status") == "vacuous"
        names = "; ".join(f"{r.label} ({row_cost(r)})" for r in within)
        if no_verdict:
            # Even doing nothing passes: naming methods "indistinguishable" would mislead.
            out.append(Text("No verdict: even the original model, before any unlearning, is within the independent "
                            "retrain's interval, so this bar separates nothing.", "lead"))
            out.append(Text("The forget set left little trace, or the interval is too wide (more seeds narrow it)."
                            + (f" Within the interval: {names}." if names else ""), "warn"))
        elif within:
            out.append(Text(f"Indistinguishable from retraining: {names}."
                            + (f" The cheapest: {within[0].label}." if len(within) > 1 else ""), "lead"))
        else:
            best = by_name.get(v.get("closest"))
            short = _short_phrase(v.get("closest_short"))
            out.append(Text("No method is indistinguishable from retraining here"
                            + (f"; closest: {describe(best)}" + (f", {short}" if short else "") + "." if best else "."),
                            "lead"))
        out.append(Text(
            f"Criterion: {criterion}, the lower end{'s' if len(bars) > 1 else ''} of the 95% interval"
            f"{'s' if len(bars) > 1 else ''} of an independent retrain (the oracle's recipe with another seed: "
            f"{describe(block.retrain, cost=False).removeprefix(block.retrain.label).strip(' ()')}; "
            f"{row_cost(block.retrain)})"
            + (" — it has one seed, so its value itself is the bar." if one_seed else ".")
        ))
        others = [r for r in rows if r not in within]
        if within and others and not no_verdict:
            out.append(Text("Not indistinguishable: " + "; ".join(
                describe(r, cost=False) for r in sorted(others, key=closeness, reverse=True)) + "."))
    else:
        out.append(Text("Noise floor missing: these results cannot say which methods are indistinguishable from "
                        "retraining.", "lead"))
        out.append(Text(f"Why: {block.retrain_note}."))
        if rows:
            best = sorted(rows, key=closeness, reverse=True)[:3]
            out.append(Text("Against the oracle alone (ToW × ToW-MIA, 1 = the oracle's numbers), the closest: "
                            + "; ".join(describe(r) for r in best) + "."))
    unchanged = [name for name in v.get("unchanged") or [] if name in by_name]
    if unchanged:
        reasons = (v.get("methods") or {})
        out.append(Text("Left the model unchanged (its numbers are the original model's, not unlearning): "
                        + "; ".join(f"{name} ({reasons[name]['unchanged']})" for name in unchanged)
                        + ". Check their hyperparameters for this setting.", "warn"))
    failed = [r for r in block.methods if r.failed]
    if failed:
        out.append(Text("Did not finish: " + "; ".join(
            f"{r.name} on {r.failed} of {r.seeds} seeds ({r.errors[0] if r.errors else 'no message'})" for r in failed)
            + (". Failed seeds are excluded from the statistics." if any(r.seeds_ok for r in failed) else "."), "warn"))
    if not block.compared():
        out.append(Text("These results hold no unlearning method.", "warn"))
    seeds = len(block.seeds)
    if seeds == 1:
        out.append(Text("One seed: no intervals; a single run cannot separate a method from seed noise.", "warn"))
    elif seeds == 2:
        out.append(Text("Two seeds: the 95% intervals use t = 12.7 and are very wide; use 3 or more seeds for conclusions.", "warn"))
    train = block.extras.get("original_train_accuracy")
    if train and train[0] < 0.98:
        out.append(Text(f"The original model fits only {100 * train[0]:.1f}% of its training set: little is memorized, "
                        "so plain finetuning can look deceptively good.", "warn"))
    return out


# ---------------------------------------------------------------------------------------------
# Sections


def setting_section(results: Results) -> Section:
    blocks: list[Any] = [Facts(list(results.setting))]
    if results.command:
        blocks.append(Code(results.command))
    if results.versions:
        keys = [k for k in ("memunlearn", "python", "torch", "numpy", "scipy", "scikit-learn", "cuda", "platform")
                if results.versions.get(k) not in (None, "None")]
        blocks.append(Text("Versions: " + " · ".join(f"{k} {results.versions[k]}" for k in keys), "note"))
    if results.spec:
        is_toml = results.raw.get("spec") is not None
        blocks.append(Code(results.spec, summary="spec (TOML: `memunlearn run SPEC.toml` runs it again)" if is_toml
                           else "configuration (as recorded in the results file)"))
    for warning in results.warnings:
        blocks.append(Text(warning, "warn"))
    if results.source:
        blocks.append(Text(f"Source: {results.source}", "note"))
    return Section("setting", "Setting", blocks)


def headline_section(results: Results) -> Section:
    blocks: list[Any] = []
    for block in results.blocks:
        blocks += block_heading(results, block) + headline_blocks(block)
    return Section("headline", "Headline", blocks)


MARKS = {"inside": "✓", "unchanged": "!", "outside": "", "reference": ""}


def methods_said_section(results: Results) -> Section:
    """One line per method: inside the noise floor or by how much not, what it did to forget,
    retain and test accuracy relative to the oracle, at what cost; a mark where it left the model
    unchanged."""
    blocks: list[Any] = []
    for block in results.blocks:
        lines = method_lines(block)
        if not lines:
            continue
        blocks += block_heading(results, block)
        table = Table(["method", "what it did (means over seeds)"], [], prose=True, caption=(
            "✓ inside the noise floor (ToW and ToW-MIA at or above the independent retrain's interval); "
            "! left the model unchanged. Accuracy differences are the method's minus the oracle's, in percentage "
            "points: a positive forget difference is what the model still remembers that a retrain would not."))
        for i, line in enumerate(lines):
            table.rows.append([f"{MARKS[line.kind]} {line.name}" if MARKS.get(line.kind) else line.name, line.text])
            if line.kind == "reference":
                table.emphasis.add(i)
        blocks.append(table)
    return Section("what-each-did", "What each method did", blocks)


def _has_per_class(results: Results) -> bool:
    return any(block.extras.get("per_class") for block in results.blocks)


def per_class_section(results: Results) -> Section:
    """Accuracy per class (a heat map per split) for the oracle, the original, the noise floor and
    each method, means over seeds as the experiment stored them."""
    plots = _plots()
    blocks: list[Any] = []
    for block in results.blocks:
        per_class = block.extras.get("per_class") or {}
        order = ["oracle", "original", NOISE_FLOOR] + [row.name for row in block.compared()]
        shown = {"oracle": "oracle", "original": "original (no unlearning)"}
        names = [name for name in order if name in per_class]
        if len(names) < 2:
            continue
        splits = [split for split in ("forget", "test") if any(per_class[n].get(split) for n in names)]
        if not splits:
            continue
        classes = block.extras.get("classes") or [str(c) for c in range(max(len(per_class[n][splits[0]] or [])
                                                                             for n in names))]
        panels = [(f"{split} set", [per_class[n].get(split) or [] for n in names]) for split in splits]
        title = f"Accuracy per class · {block.title}"
        blocks += block_heading(results, block)
        blocks.append(Figure(plots.heatmap([shown.get(n, n) for n in names], panels, classes, title), (
            "Accuracy per class (%, mean over seeds) on the forget set and the test set. Read each method's row "
            "against the oracle's (top): a forget-set cell brighter than the oracle's is a class the method still "
            "remembers; a darker test-set cell is collateral damage. Hatched: no forget example of that class.")))
        table = Table(["model", *[f"{split} · {c}" for split in splits for c in classes]], [],
                      collapsed=f"per-class accuracies (%) · {block.title}")
        for name in names:
            values = [per_class[name].get(split) or [] for split in splits]
            table.rows.append([shown.get(name, name), *[_num(100 * v if is_number(v) else None, 1)
                                                       for split_values in values for v in
                                                       (list(split_values) + [None] * (len(classes) - len(split_values)))]])
        blocks.append(table)
    return Section("per-class", "Accuracy per class", blocks)


def _has_exposed(results: Results) -> bool:
    return any(block.extras.get("exposed") for block in results.blocks)


def exposed_section(results: Results) -> Section:
    """The forget examples each model still exposes most: the largest margin of its probability of
    the true label over the oracle's, with thumbnails (image data) and memorization scores (when
    the forget set was chosen by one), on the first seed."""
    blocks: list[Any] = []
    for block in results.blocks:
        exposed = block.extras.get("exposed") or {}
        models = exposed.get("models") or {}
        if not models:
            continue
        thumbnails = block.extras.get("thumbnails") or {}
        classes = block.extras.get("classes") or []
        names = [n for n in ["original (no unlearning)", NOISE_FLOOR] + [r.name for r in block.compared()] if n in models]
        rows = []
        for name in names:
            items = []
            for e in models[name]:
                label, predicted = e.get("label"), e.get("predicted")

                def cls(c, classes=classes):
                    return classes[c] if isinstance(c, int) and 0 <= c < len(classes) else str(c)
                lines = [f"#{e.get('index')} · {cls(label)}" + (f" → {cls(predicted)}" if predicted != label else ""),
                         f"p {_num(e.get('confidence'), 2)} vs {_num(e.get('oracle_confidence'), 2)}"]
                if is_number(e.get("memorization")):
                    lines.append(f"mem. {e['memorization']:.2f}")
                items.append((thumbnails.get(str(e.get("index"))), "\n".join(lines)))
            rows.append((name, items))
        has_scores = any(is_number(e.get("memorization")) for items in models.values() for e in items)
        blocks += block_heading(results, block)
        blocks.append(Text(
            f"Seed {exposed.get('seed', '?')}: for each model, the forget examples whose probability of the true "
            "label most exceeds the oracle's (what the model still knows about them that a retrain would not). "
            "Under each: the training-set index, the label (→ the predicted class when it differs), the model's "
            "probability of the true label vs the oracle's"
            + (", and the memorization score that chose the forget set (higher = more memorized)." if has_scores else ".")
            + " A method that forgot well shows margins near those of the independent retrain.", "note"))
        blocks.append(Gallery(rows))
    return Section("exposed", "Forget examples still exposed", blocks)


def table_section(results: Results) -> Section:
    blocks: list[Any] = []
    for block in results.blocks:
        blocks += block_heading(results, block)
        rows = ([block.original] if block.original else []) + block.methods
        if block.retrain is not None and block.retrain not in block.methods:
            rows.insert(len(rows) - len(block.methods), block.retrain)
        emphasis = [block.retrain.name] if block.retrain else []
        blocks.append(rows_table(rows, VS_ORACLE_COLUMNS, emphasis=emphasis, caption=(
            "Against each seed's oracle: gaps in percentage points (pp), ToW and ToW-MIA (1 = the oracle's numbers), "
            "time (and examples processed) as a fraction of the oracle's retrain; mean ± 95% t-interval over seeds." +
            (" Highlighted: the independent retrain, the noise floor." if emphasis else ""))))
        acc_rows = ([block.oracle] if block.oracle else []) + rows
        if any(row.mean(key) is not None for row in block.methods for _, key, _ in ACCURACY_COLUMNS[1:]):
            blocks.append(rows_table(acc_rows, ACCURACY_COLUMNS, caption=(
                "Accuracies and membership inference (MIA-efficacy: fraction of the forget set an SVC attack calls "
                "non-member); mean ± 95% t-interval over seeds.")))
    return Section("tables", "Results", blocks)


def _bands(block: Block) -> dict[str, tuple[float, float] | None]:
    return {key: block.retrain.interval(key) if block.retrain else None for key, _ in TOW_KEYS}


def tow_plot_section(results: Results) -> Section:
    plots = _plots()

    blocks: list[Any] = []
    for block in results.blocks:
        rows = [row for row in block.compared()]
        if not rows:
            continue
        passes = passing(block, rows)
        title = f"ToW and ToW-MIA per method · {block.title}"
        blocks += block_heading(results, block)
        blocks.append(Figure(plots.interval_dots(rows, TOW_KEYS, _bands(block), passes, BAND_LABEL, title,
                                                 reference=block.original), (
            "ToW and ToW-MIA per method, mean and 95% interval over seeds (axes cut at 0 and 1.02). Shaded: the "
            "independent retrain's interval; filled markers meet the headline's criterion." if block.retrain else
            "ToW and ToW-MIA per method, mean and 95% interval over seeds (axes cut at 0 and 1.02). "
            "No noise floor in these results, so every marker is hollow.")))
    return Section("tow", "ToW and ToW-MIA", blocks)


def gaps_plot_section(results: Results) -> Section:
    plots = _plots()

    blocks: list[Any] = []
    for block in results.blocks:
        rows = block.compared()
        keys = [(k, label) for k, label in GAP_KEYS if any(row.mean(k) is not None for row in rows)]
        if not keys or not rows:
            continue
        passes = passing(block, rows)
        bands = {key: block.retrain.interval(key) if block.retrain else None for key, _ in keys}
        title = f"Gaps to the oracle per split · {block.title}"
        blocks += block_heading(results, block)
        blocks.append(Figure(plots.interval_dots(rows, keys, bands, passes, BAND_LABEL, title, reference=block.original,
                                                 scale=100.0, target=0.0, unit="percentage points"), (
            "Absolute gap to the oracle in accuracy on the forget, retain and test sets and in MIA-efficacy "
            "(0 = the oracle), mean and 95% interval over seeds." +
            (" Shaded: the independent retrain's interval, the gap that seed noise alone produces." if block.retrain else ""))))
    return Section("gaps", "Accuracy gaps per split", blocks)


def cost_plot_section(results: Results) -> Section:
    plots = _plots()

    blocks: list[Any] = []
    for block in results.blocks:
        rows = [row for row in block.compared() if row.mean("time_fraction") and row.seeds_ok != 0]
        if len(rows) < 2:
            continue
        keys = [(k, label) for k, label in TOW_KEYS if any(row.mean(k) is not None for row in rows)]
        title = f"Quality against cost · {block.title}"
        blocks += block_heading(results, block)
        blocks.append(Figure(plots.cost_vs_quality(rows, keys, _bands(block), BAND_LABEL, title, reference=block.retrain), (
            "Each method's time as a fraction of the oracle's retrain time against ToW and ToW-MIA (mean, 95% "
            "interval). Outlined markers joined by the dashed line form the Pareto front: no other method is both "
            "cheaper and closer to the oracle." + (" Grey star: the independent retrain." if block.retrain else ""))))
    return Section("cost", "Cost against quality", blocks)


def _has(key: str) -> Callable[[Results], bool]:
    return lambda results: any(key in block.extras for block in results.blocks)


def curves_section(results: Results) -> Section:
    plots = _plots()

    blocks: list[Any] = []
    for block in results.blocks:
        blocks += block_heading(results, block)
        bars = thresholds(block)
        for key, xlabel, unit, name in (
            ("curve_epochs", "finetuning epochs after the reset", lambda x: f"{x:g} epochs", "epochs"),
            ("curve_budget", "budget α: parameters reset and finetuned (% of all entries)", lambda x: f"α = {x:g}%", "budget"),
        ):
            rows = block.extras.get(key)
            if not rows:
                continue
            xs = [float(row.name) * (100 if key == "curve_budget" else 1) for row in rows]
            labelled = [Row(unit(x), row.stats, row.seeds_ok, row.seeds, row.errors) for x, row in zip(xs, rows)]
            title = f"DEL: ToW and ToW-MIA against {name} · {block.title}"
            blocks.append(Figure(plots.curves(xs, rows, TOW_KEYS, xlabel, title, _bands(block), "independent retrain, 95%"),
                                 f"DEL's ToW and ToW-MIA (mean, shaded 95% interval over seeds) against its {name}"
                                 + ("; hatched grey: the independent retrain's interval." if block.retrain else ".")))
            blocks.append(rows_table(labelled, VS_ORACLE_COLUMNS, first=name))
            if bars:
                meeting = [(label.name, row) for label, row in zip(labelled, rows) if row.name in passing(block, rows)]
                if meeting:
                    cheapest = min(meeting, key=lambda m: m[1].mean("time_fraction") or math.inf)
                    blocks.append(Text(f"Cheapest {name} setting that meets the headline's criterion: {cheapest[0]} "
                                       f"({row_cost(cheapest[1])})."))
                else:
                    blocks.append(Text(f"No {name} setting tried meets the headline's criterion."))
    return Section("curves", "DEL: epoch and budget curves", blocks)


def ablation_section(results: Results) -> Section:
    plots = _plots()

    blocks: list[Any] = []
    for block in results.blocks:
        rows = block.extras.get("ablation")
        if not rows:
            continue
        blocks += block_heading(results, block)
        passes = passing(block, rows)
        title = f"Localization ablation · {block.title}"
        blocks.append(Figure(plots.interval_dots(rows, TOW_KEYS, _bands(block), passes, BAND_LABEL, title),
                             "Granularity {param, channel} × criterion {grad, weighted-grad}, and whole random channels "
                             "as a control; every mask resets and finetunes the same budget."))
        blocks.append(rows_table(rows, VS_ORACLE_COLUMNS, first="mask"))
    return Section("ablation", "Localization ablation (2×2 and random channels)", blocks)


def mask_section(results: Results) -> Section:
    plots = _plots()

    blocks: list[Any] = []
    for block in results.blocks:
        for method, layers in (block.extras.get("mask_layers") or {}).items():
            names = [str(layer.get("name", "?")) for layer in layers]
            density = [100 * float(layer.get("density", 0.0)) for layer in layers]
            title = f"Mask density per layer · {method} · {block.title}"
            blocks += block_heading(results, block)
            blocks.append(Figure(plots.bars(names, density, [None] * len(names),
                                            "entries selected (reset and finetuned), % of the layer", title),
                                 f"{method}'s mask on the first seed: the share of each parameter tensor it selects."))
            table = Table(["layer", "shape", "selected", "total", "density (%)"], [], collapsed=f"{method}: per-layer table")
            for layer in layers:
                table.rows.append([str(layer.get("name")), "×".join(map(str, layer.get("shape", []))),
                                   str(layer.get("selected", "—")), str(layer.get("total", "—")),
                                   f"{100 * float(layer.get('density', 0.0)):.1f}"])
            blocks.append(table)
    return Section("mask", "Mask sparsity per layer", blocks)


def rum_section(results: Results) -> Section:
    blocks: list[Any] = []
    for block in results.blocks:
        partitions = block.extras.get("rum_partitions")
        if not partitions:
            continue
        blocks += block_heading(results, block)
        names = sorted({name for p in partitions.values() for name in (p.get("partition_sizes") or {})},
                       key=["low", "mid", "high"].index if all(
                           n in ("low", "mid", "high") for p in partitions.values() for n in (p.get("partition_sizes") or {})) else str)
        means = block.extras.get("partition_score_means") or {}
        header = ["seed", "split by"] + [f"{n}: size" for n in names] + ([f"{n}: mean score" for n in names] if means else [])
        table = Table(header, [], "RUM's refinement of the forget set: partition sizes (and mean memorization score), per seed.")
        for seed, entry in partitions.items():
            sizes = entry.get("partition_sizes") or {}
            line = [seed, str(entry.get("source", "?")) + (f" ({entry.get('score')})" if entry.get("score") else "")]
            line += [str(sizes.get(n, "—")) for n in names]
            if means:
                line += [f"{means.get(seed, {}).get(n):.3f}" if is_number(means.get(seed, {}).get(n)) else "—" for n in names]
            table.rows.append(line)
        blocks.append(table)
    return Section("rum", "RUM partitions", blocks)


def proxies_section(results: Results) -> Section:
    plots = _plots()

    proxies = results.extras["proxies"]
    columns = (("ρ vs exact", "rho", False), ("ρ corrected for noise", "rho_corrected", False),
               ("top-10% overlap", "top_overlap", False), ("seconds", "seconds", False),
               ("cost / exact", "cost_fraction", False))
    rows = [Row(name, {k: v for k, v in entry.items() if isinstance(v, dict)}) for name, entry in proxies.items()]
    table = rows_table(rows, columns, first="proxy", caption=(
        "Spearman ρ of each proxy against the exact (Feldman–Zhang) scores, mean ± 95% interval over seeds; "
        "cost as a fraction of the exact estimator's time."))
    for line, (name, entry) in zip(table.rows, proxies.items()):
        line[0] = name + (f" (needs {entry['needs']})" if entry.get("needs") else "")
    blocks: list[Any] = [table]
    points = [(row.name, row.mean("cost_fraction") if row.mean("cost_fraction") is not None else row.mean("seconds"),
               row.mean("rho"), row.half_width("rho")) for row in rows if row.mean("rho") is not None]
    points = [p for p in points if p[1] is not None and p[1] > 0]
    if points:
        by_fraction = all(row.mean("cost_fraction") is not None for row in rows)
        blocks.append(Figure(plots.labelled_scatter(
            points, "cost as a fraction of the exact estimator's time (log scale)" if by_fraction else "seconds (log scale)",
            "Spearman ρ against exact scores (unitless)", "Proxy quality against cost"),
            "Each proxy's ρ against exact memorization scores (95% interval) against its cost."))
    exact = results.extras.get("exact_summary")
    if isinstance(exact, Mapping):
        blocks.append(Facts([(k.replace("_", " "), f"{v:.4g}" if is_number(v) else str(v)) for k, v in exact.items()]))
    return Section("proxies", "Memorization proxies against exact scores", blocks)


def pool_section(results: Results) -> Section:
    plots = _plots()

    configs = results.extras["pool_configs"]
    rows = [Row(name, {k: dict(v) for k, v in entry.items() if isinstance(v, Mapping)}) for name, entry in configs.items()]
    table = rows_table(rows, (("wall (s)", "wall_seconds", False), ("models / minute", "models_per_minute", False),
                              ("s per model", "member_seconds", False)), first="executor:workers",
                       caption="Time to train the pool, mean ± 95% interval over repeats.")
    for line, entry in zip(table.rows, configs.values()):
        if is_number(entry.get("speedup_vs_first")):
            line.append(f"{entry['speedup_vs_first']:.2f}×")
    if all(is_number(entry.get("speedup_vs_first")) for entry in configs.values()):
        table.header.append("speed-up vs first")
    else:
        for line in table.rows:
            del line[len(table.header):]
    figure = Figure(plots.bars([r.name for r in rows], [r.mean("models_per_minute") or 0.0 for r in rows],
                               [r.half_width("models_per_minute") for r in rows], "models trained per minute",
                               "Model-pool throughput"), "Pool members trained per minute, 95% interval over repeats.")
    return Section("pool", "Model-pool throughput", [figure, table])


def throughput_section(results: Results) -> Section:
    table = Table(["variant", "best seconds", "examples / s", "relative to bare loop"], [],
                  "Training throughput, best of the repeats.")
    for name, entry in results.extras["throughput"].items():
        table.rows.append([name.replace("_", " "), _num(entry.get("best_seconds"), 2), _num(entry.get("examples_per_second"), 0),
                           _num(entry.get("relative_to_bare"), 2)])
    return Section("throughput", "Training throughput", [table])


def tuning_section(results: Results) -> Section:
    blocks: list[Any] = []
    for block in results.blocks:
        tuning = block.extras.get("tuning")
        if not isinstance(tuning, Mapping) or not isinstance(tuning.get("methods"), Mapping):
            continue
        blocks += block_heading(results, block)
        if tuning.get("criterion"):
            blocks.append(Text(f"Tuned on seed {tuning.get('seed', '?')} against {tuning['criterion']}.", "note"))
        table = Table(["method", "chosen", "trials", "best validation score", "failed trials"], [])
        for method, entry in tuning["methods"].items():
            trials = entry.get("trials") or []
            scores = [t.get("tow_val") for t in trials if is_number(t.get("tow_val"))]
            chosen = ", ".join(f"{k} {v}" for k, v in (entry.get("chosen") or {}).items()) or "—"
            table.rows.append([method, chosen, str(len(trials)), _num(max(scores), 3) if scores else "—",
                               str(sum(1 for t in trials if t.get("status", "ok") != "ok"))])
        blocks.append(table)
    return Section("tuning", "Hyperparameter search", blocks)


def per_seed_section(results: Results) -> Section:
    blocks: list[Any] = []
    for block in results.blocks:
        table = Table(["seed", "method", "status", "ToW", "ToW-MIA", "Δforget (pp)", "time (s)", "time / oracle"], [],
                      collapsed=f"per-seed values · {block.title}")
        for seed_row in block.per_seed:
            entries = dict(seed_row.get("methods") or {})
            if isinstance(seed_row.get("noise_floor"), Mapping):
                entries = {NOISE_FLOOR: seed_row["noise_floor"], **entries}
            for method, entry in entries.items():
                if not isinstance(entry, Mapping):
                    continue
                vs = entry.get("vs_oracle") or {}
                table.rows.append([
                    str(seed_row.get("seed", "?")), method, str(entry.get("status", "ok")), _num(vs.get("tow"), 3),
                    _num(vs.get("tow_mia"), 3), _num(100 * vs["gap_forget"] if is_number(vs.get("gap_forget")) else None, 1),
                    _num((entry.get("cost") or {}).get("wall_time", entry.get("wall_time")), 2),
                    _num(entry.get("time_fraction"), 3),
                ])
        if table.rows:
            blocks.append(table)
    return Section("per-seed", "Per-seed values", blocks)


def pending_section(key: str, what: str) -> SectionSpec:
    """A section whose data no results file carries yet: if a file does carry ``key``, say so."""

    def build(results: Results) -> Section:
        return Section(key, what, [Text(f"These results carry {key!r} data, which this version of the report does not "
                                        "draw yet; see the results file.", "warn")])

    return SectionSpec(key, lambda results: _find_key(results.raw, key), build, absent=what)


def _privacy_rows(group: Mapping[str, Any]) -> list[tuple[str, str, Mapping[str, Any]]]:
    """(seed, who, metric entry) for every U-LiRA / NeurIPS-2023 result in a results group."""
    rows = []
    for row in group.get("per_seed") or []:
        seed = str(row.get("seed", "?"))
        for metric in ("ulira", "neurips2023"):
            floor = ((row.get("reference_metrics") or {}).get("retrain") or {}).get(metric)
            if isinstance(floor, Mapping):
                rows.append((seed, f"retrain (floor) · {metric}", floor))
            for label, entry in (row.get("methods") or {}).items():
                if isinstance(entry, Mapping) and isinstance(entry.get(metric), Mapping):
                    rows.append((seed, f"{label} · {metric}", entry[metric]))
    return rows


def _has_privacy(results: Results) -> bool:
    return any(_privacy_rows(group) for group in results.raw.get("groups") or [])


def _interval(stat: Any) -> str:
    if not isinstance(stat, Mapping) or not is_number(stat.get("value")):
        return "—"
    text = f"{stat['value']:.3f}"
    if is_number(stat.get("low")) and is_number(stat.get("high")):
        text += f" [{stat['low']:.3f}, {stat['high']:.3f}]"
    return text


def privacy_section(results: Results) -> Section:
    """U-LiRA (accuracy, AUC, TPR at low FPR, with 95% intervals) and the NeurIPS-2023 score per method,
    next to ``retrain`` run through the same machinery (the floor)."""
    blocks: list[Any] = []
    for group in results.raw.get("groups") or []:
        rows = _privacy_rows(group)
        if not rows:
            continue
        blocks.append(Heading(f"forget set {group.get('forget', '?')}"))
        table = Table(["seed", "method · metric", "U-LiRA accuracy", "AUC", "TPR at 1% FPR", "TPR at 0.1% FPR",
                       "NeurIPS-2023 score"], [],
                      "Per-example membership attacks on the unlearned models: U-LiRA (shadow models from the pool; "
                      "95% bootstrap intervals) and the NeurIPS-2023 challenge score; retrain is the measured floor "
                      "(≈ 0.5 for U-LiRA).")
        for seed, who, entry in rows:
            metrics = entry.get("metrics") or {}
            if "error" in entry:
                table.rows.append([seed, who, str(entry["error"]), "—", "—", "—", "—"])
                continue
            table.rows.append([seed, who, _interval(metrics.get("accuracy")), _interval(metrics.get("auc")),
                               _interval(metrics.get("tpr_at_fpr_0.01")), _interval(metrics.get("tpr_at_fpr_0.001")),
                               _num(entry.get("score"), 3)])
        blocks.append(table)
    return Section("privacy", "Per-example privacy: U-LiRA and the NeurIPS-2023 score", blocks)


def _p(value: Any) -> str:
    return f"{value:.2g}" if is_number(value) else "—"


def audit_blocks(audit: Mapping[str, Any], top: int = 20) -> list[Any]:
    """One audit (:meth:`memunlearn.auditing.AuditReport.to_dict`): verdict, tests, per class, flags."""
    tests = audit.get("tests") or {}
    kind = "warn" if audit.get("verdict") != "pass" else "p"
    blocks: list[Any] = [Text(f"{str(audit.get('verdict', '?')).upper()}: {audit.get('finding', '')}", kind)]
    acc, loss, attack = tests.get("accuracy") or {}, tests.get("loss") or {}, tests.get("attack")
    rows = [["accuracy (CMH, per class)", f"forget {_num(acc.get('forget'), 3)} vs held-out {_num(acc.get('holdout'), 3)}",
             _p(acc.get("p"))],
            ["loss (stratified Mann–Whitney)", f"P(forget loss < held-out) = {_num(loss.get('auc'), 3)}", _p(loss.get("p"))],
            ["loss (Kolmogorov–Smirnov, pooled)", f"D = {_num((tests.get('loss_ks') or {}).get('statistic'), 3)}",
             _p((tests.get("loss_ks") or {}).get("p"))]]
    if isinstance(attack, Mapping):
        rows.append([f"membership attack ({(audit.get('attack') or {}).get('name')})",
                     (f"AUC {_num(attack.get('auc'), 3)}; {attack.get('flagged')} flagged, "
                      f"{_num(attack.get('expected_flags'), 1)} expected"), _p(attack.get("p"))])
    power = audit.get("power") or {}
    blocks.append(Table(["test", "effect", "p-value"], rows,
                        f"Forget set ({(audit.get('sizes') or {}).get('forget')}) vs held-out data "
                        f"({(audit.get('sizes') or {}).get('holdout')}); level {audit.get('alpha')} over the tests; "
                        f"smallest detectable accuracy gap {_num(power.get('min_detectable_gap'), 3)}."))
    per_class = audit.get("per_class") or []
    if per_class:
        blocks.append(Table(["class", "forget", "held-out", "forget acc", "held-out acc", "loss AUC", "p", "flagged"],
                            [[str(r.get("class")), str(r.get("forget")), str(r.get("holdout")),
                              _num(r.get("acc_forget"), 3), _num(r.get("acc_holdout"), 3), _num(r.get("loss_auc"), 3),
                              _p(r.get("p")), str(r.get("flagged", "—"))] for r in per_class],
                            "Per class (uncorrected p-values).", collapsed="per class"))
    flagged = audit.get("flagged") or []
    if flagged:
        blocks.append(Table(["index", "label", "attack score", "loss", "correct"],
                            [[str(f["index"]), str(f["label"]), _num(f["score"], 3), _num(f["loss"], 3),
                              "yes" if f["correct"] else "no"] for f in flagged[:top]],
                            f"Forget examples that still look like members, most member-like first "
                            f"({len(flagged)} flagged).", collapsed="flagged examples"))
    for check in audit.get("distribution") or []:
        if check.get("other"):
            blocks.append(Text(f"distribution check {check['check']!r}: the forget set differs from the held-out data",
                               "warn"))
    for line in audit.get("warnings") or []:
        blocks.append(Text(line, "note"))
    return blocks


def audit_report_html(audit: Mapping[str, Any]) -> str:
    """A self-contained report.html holding one audit (``memunlearn audit --out``)."""
    from .data import Results
    from .document import Report
    from .html import render_html

    results = Results(kind="audit", title=f"Audit of {audit.get('checkpoint', 'a model')}", raw=dict(audit))
    return render_html(Report(results, [Section("audit", "Oracle-free audit", audit_blocks(audit))]))


def _has_audit(results: Results) -> bool:
    return any("audit_calibration" in group for group in results.raw.get("groups") or [])


def audit_section(results: Results) -> Section:
    """The oracle-free audit next to the oracle: agreement with the noise-floor verdict per cell
    (confusion table), false positives on retrains, detection on originals, per method."""
    blocks: list[Any] = []
    for group in results.raw.get("groups") or []:
        calibration = group.get("audit_calibration")
        if not isinstance(calibration, Mapping):
            continue
        blocks.append(Heading(f"forget set {group.get('forget', '?')}"))
        confusion = calibration.get("confusion") or {}
        blocks.append(Table(["oracle verdict \\ audit", "pass", "fail", "other-distribution"],
                            [[o, *(str((confusion.get(o) or {}).get(a, 0)) for a in ("pass", "fail", "other-distribution"))]
                             for o in ("indistinguishable", "distinguishable")],
                            f"Cells: the audit's verdict (no oracle) against the noise-floor verdict (ToW and ToW-MIA "
                            f"at the independent retrain's 95% lower ends). Agreement "
                            f"{_num(calibration.get('agreement'), 2)} over {calibration.get('cells_decided')} cells."))
        if calibration.get("original_meets_bar"):
            blocks.append(Text("The original model itself meets the noise-floor bar here, so the oracle's verdict "
                               "separates nothing and the agreement above is not informative.", "warn"))
        fp = calibration.get("false_positive_rate") or {}
        blocks.append(Text(f"False positives (retrains failing the audit): independent retrain "
                           f"{_num(fp.get('noise_floor'), 2)}, oracle {_num(fp.get('oracle'), 2)}; detection of the "
                           f"original: {_num(calibration.get('detection_rate_original'), 2)}."))
        methods = calibration.get("methods") or {}
        blocks.append(Table(["method", "noise-floor verdict", "audit pass rate", "agree"],
                            [[label, str(m.get("noise_floor_verdict")), _num(m.get("audit_pass_rate"), 2),
                              {True: "yes", False: "no"}.get(m.get("agree"), "—")] for label, m in methods.items()],
                            "Per method, over seeds."))
        stops = group.get("stop_when_done") or {}
        if stops:
            rows = []
            for label, stop in stops.items():
                vs = stop.get("vs_fixed") or {}
                rows.append([label, str(stop.get("stopped_at_epoch")), str(stop.get("fixed_epochs")),
                             _num((stop.get("examples_saved_fraction") or {}).get("mean"), 2),
                             _num((stop.get("training_examples_saved_fraction") or {}).get("mean"), 2),
                             f"{_num((vs.get('tow') or {}).get('stop'), 3)} vs {_num((vs.get('tow') or {}).get('fixed'), 3)}"])
            blocks.append(Table(["stop entry", "stopped at epoch", "fixed epochs", "examples saved", "training saved",
                                 "ToW stop vs fixed"], rows,
                                "Stop-when-done: stopped when the audit passed; saved = 1 − examples / the base "
                                "method's at its fixed epochs (with and without the audits' forward passes)."))
    return Section("audit", "Oracle-free audit, calibrated against the oracle", blocks)


def _find_key(value: Any, key: str, depth: int = 5) -> bool:
    if depth < 0:
        return False
    if isinstance(value, Mapping):
        return key in value or any(_find_key(v, key, depth - 1) for v in value.values())
    if isinstance(value, list):
        return any(_find_key(v, key, depth - 1) for v in value[:3])
    return False


def _num(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if is_number(value) else "—"


def _blocks_with_methods(results: Results) -> bool:
    return bool(results.blocks)


SECTIONS: list[SectionSpec] = [
    SectionSpec("setting", lambda r: True, setting_section),
    SectionSpec("headline", _blocks_with_methods, headline_section),
    SectionSpec("what-each-did", _blocks_with_methods, methods_said_section),
    SectionSpec("tables", _blocks_with_methods, table_section),
    SectionSpec("per-class", _has_per_class, per_class_section, figure=False,
                absent="accuracy per class (a heat map: results from this version's `memunlearn run`)"),
    SectionSpec("exposed", _has_exposed, exposed_section,
                absent="the forget examples still most exposed (results from this version's `memunlearn run`)"),
    SectionSpec("tow", _blocks_with_methods, tow_plot_section, figure=True),
    SectionSpec("gaps", _blocks_with_methods, gaps_plot_section, figure=True),
    SectionSpec("cost", _blocks_with_methods, cost_plot_section, figure=True),
    SectionSpec("curves", lambda r: _has("curve_epochs")(r) or _has("curve_budget")(r), curves_section,
                absent="DEL's epoch and budget curves (ToW against finetuning epochs and budget α)"),
    SectionSpec("ablation", _has("ablation"), ablation_section,
                absent="the 2×2 localization ablation (granularity × criterion, random-channel control)"),
    SectionSpec("mask", _has("mask_layers"), mask_section, absent="mask sparsity per layer"),
    SectionSpec("rum", _has("rum_partitions"), rum_section),
    pending_section("memorization_histograms", "memorization histograms of the forget set and its partitions"),
    SectionSpec("proxies", lambda r: "proxies" in r.extras, proxies_section),
    pending_section("proxy_scatter", "proxy-vs-exact scatter of per-example scores, with ρ"),
    SectionSpec("privacy", _has_privacy, privacy_section,
                absent="per-example privacy (U-LiRA, the NeurIPS-2023 score: [evaluation] metrics)"),
    SectionSpec("audit", _has_audit, audit_section),
    SectionSpec("pool", lambda r: "pool_configs" in r.extras, pool_section),
    SectionSpec("throughput", lambda r: "throughput" in r.extras, throughput_section),
    SectionSpec("tuning", _has("tuning"), tuning_section),
    SectionSpec("per-seed", lambda r: any(b.per_seed for b in r.blocks), per_seed_section),
]


def register_section(spec: SectionSpec, before: str | None = None) -> None:
    """Add a section (before the one keyed ``before``, else at the end); a duplicate key is an error."""
    from ..errors import ConfigError

    if any(existing.key == spec.key for existing in SECTIONS):
        raise ConfigError(f"report section {spec.key!r} is already registered")
    keys = [existing.key for existing in SECTIONS]
    SECTIONS.insert(keys.index(before) if before in keys else len(SECTIONS), spec)
