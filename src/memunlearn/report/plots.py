"""The report's figures, drawn with matplotlib's SVG backend into strings for inline ``<svg>``.

Every plot labels its axes with units, has a legend, and tells series apart by marker, line
style or hatch as well as colour (Okabe–Ito palette, its yellow swapped for wine, plus two of Tol's), so it reads in grayscale too. Text is
drawn as paths: the page needs no font.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # never open a window; figures are built with Figure() and saved as SVG

from matplotlib.artist import Artist  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from .data import Row  # noqa: E402

COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#882255", "#44AA99", "#999933")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", "p", ">", "h", "d")
HATCHES = ("", "///", "...", "xxx", "\\\\\\", "+++")
LINESTYLES = ("-", "--", "-.", ":")
BAND = "#bbbbbb"
RC: dict[Any, Any] = {  # rc keys; matplotlib types them as literals
    "svg.fonttype": "path", "svg.hashsalt": "memunlearn", "font.size": 10, "axes.titlesize": 11,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3,
    "legend.fontsize": 9, "legend.framealpha": 0.9,
}
_figure_counter = itertools.count()


def figure(width: float, height: float, ncols: int = 1, sharey: bool = False):
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = fig.subplots(1, ncols, sharey=sharey, squeeze=False)[0]
    return fig, list(axes)


def to_svg(fig: Figure, title: str) -> str:
    """The figure as an inline ``<svg>`` element with ids unique on the page and an accessible name."""
    buffer = io.StringIO()
    with matplotlib.rc_context(RC):
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    prefix = f"f{next(_figure_counter)}-"
    text = re.sub(r'\bid="', f'id="{prefix}', text)
    text = re.sub(r'(href="#|url\(#)', rf"\g<1>{prefix}", text)
    title = title.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
    return text.replace("<svg ", f'<svg role="img" aria-label="{title}" style="max-width:100%;height:auto" ', 1)


def _value(row: Row, key: str, scale: float = 1.0) -> tuple[float, float]:
    mean, half = row.mean(key), row.half_width(key)
    return (math.nan if mean is None else mean * scale), (0.0 if half is None else half * scale)


def interval_dots(
    rows: Sequence[Row], keys: Sequence[tuple[str, str]], bands: dict[str, tuple[float, float] | None],
    passes: set[str], band_label: str, title: str, reference: Row | None = None, scale: float = 1.0,
    target: float = 1.0, unit: str = "1 = oracle; unitless",
) -> str:
    """One panel per statistic: a dot with its 95% interval per row, the noise-floor band shaded.

    ``passes`` (row names) are drawn filled, the others hollow; ``reference`` (the original model)
    is drawn as a grey cross; ``target`` (the oracle's value: 1 for ToW, 0 for a gap) is dotted.
    Statistics are multiplied by ``scale`` (100 for percentages).
    """
    names = [row.label for row in rows] + ([reference.label] if reference else [])
    width = 9.5 if len(keys) <= 2 else 11.0
    fig, axes = figure(width, 1.1 + 0.3 * len(names), ncols=len(keys), sharey=True)
    positions = list(range(len(names)))[::-1]
    for panel, (ax, (key, label)) in enumerate(zip(axes, keys)):
        color, marker = COLORS[panel], MARKERS[panel]
        band = bands.get(key)
        if band is not None:
            band = (band[0] * scale, band[1] * scale)
            ax.axvspan(band[0], band[1], facecolor=BAND, alpha=0.45, hatch="///", edgecolor="#888888", lw=0)
        shown = [row for row in rows] + ([reference] if reference else [])
        values = []
        for y, row in zip(positions, shown):
            mean, half = _value(row, key, scale)
            if math.isnan(mean):
                ax.text(0.02, y, "no value", va="center", fontsize=8, transform=ax.get_yaxis_transform())
                continue
            if row is reference:
                ax.errorbar(mean, y, xerr=half, fmt="x", color="#555555", ms=8, capsize=3, lw=1.1)
            else:
                filled = row.name in passes
                ax.errorbar(mean, y, xerr=half, fmt=marker, color=color, ms=7, capsize=3, lw=1.3,
                            mfc=color if filled else "white", mec=color, mew=1.6)
            values.append((mean, half))
        ax.axvline(target, color="black", lw=0.8, ls=":")
        if values:
            if target >= max(m for m, _ in values):  # ToW-like: the oracle is the top
                low = min([m for m, _ in values] + ([band[0]] if band else []))
                step = scale / 10
                ax.set_xlim(max(0.0, math.floor((low - step / 2) / step) * step), target + 0.02 * scale)
            else:  # gap-like: the oracle is 0
                high = max([m + h for m, h in values] + ([band[1]] if band else []))
                ax.set_xlim(0.0, min(high * 1.05, scale) if high > 0 else scale * 0.1)
        ax.set_xlabel(f"{label} ({unit})")
        ax.set_title(label)
    axes[0].set_yticks(positions, names)
    handles: list[Artist] = [
        Line2D([], [], marker=MARKERS[0], color="#444444", ls="", mfc="#444444", label="indistinguishable (filled)"),
        Line2D([], [], marker=MARKERS[0], color="#444444", ls="", mfc="white", label="not (hollow)"),
        Line2D([], [], color="black", lw=0.8, ls=":", label="the oracle"),
    ]
    if any(bands.get(key) for key, _ in keys):
        handles.insert(0, Patch(facecolor=BAND, alpha=0.45, hatch="///", edgecolor="#888888", label=band_label))
    if reference is not None:
        handles.append(Line2D([], [], marker="x", color="#555555", ls="", label=reference.name))
    fig.legend(handles=handles, loc="outside lower center", ncols=3, frameon=False)
    return to_svg(fig, title)


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Names of the points no other point beats on both cost (lower) and quality (higher).

    Example:
        >>> pareto_front([("a", 1.0, 0.5), ("b", 2.0, 0.9), ("c", 3.0, 0.8), ("d", 0.5, 0.1)])
        ['d', 'a', 'b']
    """
    front, best = [], -math.inf
    for name, _cost, quality in sorted(points, key=lambda p: (p[1], -p[2])):
        if quality > best:
            front.append(name)
            best = quality
    return front


def _log_axis(ax) -> None:
    """A log x axis labelled 0.01, 0.02, 0.05, 0.1, ... instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def cost_vs_quality(
    rows: Sequence[Row], keys: Sequence[tuple[str, str]], bands: dict[str, tuple[float, float] | None],
    band_label: str, title: str, reference: Row | None = None,
) -> str:
    """ToW (and ToW-MIA) against time as a fraction of the oracle's retrain time, Pareto front marked.

    ``reference`` (the independent retrain) is drawn as a grey star, outside the front.
    """
    usable = [row for row in rows if (row.mean("time_fraction") or 0) > 0]
    fig, axes = figure(10.0, 4.9, ncols=len(keys))
    shown = usable + ([reference] if reference is not None and (reference.mean("time_fraction") or 0) > 0 else [])
    costs = [row.mean("time_fraction") or 0.0 for row in shown]  # all > 0 (filtered above)
    log = bool(costs) and max(costs) / min(costs) > 8
    style = {row.name: (COLORS[i % len(COLORS)], MARKERS[i % len(MARKERS)]) for i, row in enumerate(usable)}
    if reference is not None:
        style[reference.name] = ("#777777", "*")
    for ax, (key, label) in zip(axes, keys):
        band = bands.get(key)
        if band is not None:
            ax.axhspan(band[0], min(band[1], 1.02), facecolor=BAND, alpha=0.45, hatch="///", edgecolor="#888888", lw=0)
        points = [(row.name, row.mean("time_fraction") or 0.0, quality) for row in usable
                  if (quality := row.mean(key)) is not None]
        front = pareto_front(points)
        for row in shown:
            quality, half = _value(row, key)
            if math.isnan(quality):
                continue
            color, marker = style[row.name]
            on_front = row.name in front
            ax.errorbar(row.mean("time_fraction"), quality, yerr=half, fmt=marker, color=color,
                        ms=11 if marker == "*" else 8, capsize=3, lw=1, elinewidth=0.8, alpha=0.95,
                        mec="black" if on_front else color, mew=1.5 if on_front else 1, zorder=3)
        by_name = {name: (cost, quality) for name, cost, quality in points}
        xs = [by_name[name][0] for name in front]
        ys = [by_name[name][1] for name in front]
        if xs:
            ax.step(xs, ys, where="post", color="black", lw=1.2, ls="--", zorder=2)
        if log:
            _log_axis(ax)
        ax.axhline(1.0, color="black", lw=0.8, ls=":")
        qualities = [q for _, _, q in points] + ([band[0]] if band else [])
        if reference is not None and (reference_quality := reference.mean(key)) is not None:
            qualities.append(reference_quality)
        if qualities:
            ax.set_ylim(max(0.0, math.floor((min(qualities) - 0.05) * 10) / 10), 1.03)
        ax.set_xlabel("time / the oracle's retrain time" + (" (log scale)" if log else ""))
        ax.set_ylabel(f"{label} (1 = oracle)")
        ax.set_title(f"{label} against cost")
    handles: list[Artist] = [Line2D([], [], marker=style[row.name][1], color=style[row.name][0], ls="", ms=8,
                                    label=row.label) for row in shown]
    handles.append(Line2D([], [], color="black", lw=1.2, ls="--", label="Pareto front"))
    if any(bands.get(key) for key, _ in keys):
        handles.append(Patch(facecolor=BAND, alpha=0.45, hatch="///", edgecolor="#888888", label=band_label))
    fig.legend(handles=handles, loc="outside lower center", ncols=4, frameon=False)
    return to_svg(fig, title)


def curves(
    xs: Sequence[float], rows: Sequence[Row], keys: Sequence[tuple[str, str]], xlabel: str, title: str,
    bands: dict[str, tuple[float, float] | None], band_label: str,
) -> str:
    """Statistics against a setting (epochs, budget): one panel per statistic, mean line with its
    shaded 95% interval, the noise floor as a hatched grey band."""
    fig, axes = figure(9.5, 3.6, ncols=len(keys))
    for i, (ax, (key, label)) in enumerate(zip(axes, keys)):
        means = [_value(row, key)[0] for row in rows]
        halves = [_value(row, key)[1] for row in rows]
        color = COLORS[i]
        band = bands.get(key)
        if band is not None:
            ax.axhspan(band[0], min(band[1], 1.02), facecolor=BAND, alpha=0.45, hatch="///", edgecolor="#888888",
                       lw=0, label=band_label)
        ax.fill_between(xs, [m - h for m, h in zip(means, halves)], [m + h for m, h in zip(means, halves)],
                        color=color, alpha=0.18, lw=0, label="95% interval")
        ax.plot(xs, means, ls=LINESTYLES[i % len(LINESTYLES)], marker=MARKERS[i], color=color, label=f"{label} (mean)",
                lw=1.8, ms=7)
        ax.axhline(1.0, color="black", lw=0.8, ls=":", label="the oracle")
        ax.set_xticks(list(xs))
        finite = [m for m in means if not math.isnan(m)] + ([band[0]] if band else [])
        if finite:
            ax.set_ylim(max(0.0, math.floor((min(finite) - 0.1) * 10) / 10), 1.03)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{label} (1 = oracle; unitless)")
        ax.set_title(f"{label}")
        ax.legend(loc="lower right")
    return to_svg(fig, title)


def labelled_scatter(
    points: Sequence[tuple[str, float, float, float | None]], xlabel: str, ylabel: str, title: str, logx: bool = True,
) -> str:
    """One marker per named point (x, y, y's 95% half-width), each in the legend."""
    fig, (ax,) = figure(8.0, 4.2)
    for i, (name, x, y, half) in enumerate(points):
        ax.errorbar(x, y, yerr=half or 0.0, fmt=MARKERS[i % len(MARKERS)], color=COLORS[i % len(COLORS)], ms=8,
                    capsize=3, label=name)
    if logx and points and min(p[1] for p in points) > 0:
        ax.set_xscale("log")  # spans decades (1e-8 to 1e-2): powers of ten read best here
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    fig.legend(loc="outside right center", frameon=False)
    return to_svg(fig, title)


def bars(names: Sequence[str], means: Sequence[float], halves: Sequence[float | None], xlabel: str, title: str) -> str:
    """Horizontal bars with 95% intervals, each bar its own hatch."""
    fig, (ax,) = figure(7.5, 1.0 + 0.45 * len(names))
    ys = list(range(len(names)))[::-1]
    for i, (y, mean, half) in enumerate(zip(ys, means, halves)):
        ax.barh(y, mean, xerr=half or 0.0, color=COLORS[i % len(COLORS)], hatch=HATCHES[i % len(HATCHES)],
                edgecolor="white", capsize=3, label=names[i])
    ax.set_yticks(ys, names)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return to_svg(fig, title)


def heatmap(names: Sequence[str], panels: Sequence[tuple[str, Sequence[Sequence[float | None]]]],
            classes: Sequence[str], title: str, unit: str = "accuracy, %") -> str:
    """One panel per split: a model per row, a class per column, the cell coloured and annotated
    with its value (``None``: no example of that class, hatched). A sequential, colour-blind-safe
    map (cividis); the annotation colour follows the cell's lightness so it reads in grayscale."""
    import numpy as np

    rows, columns = len(names), len(classes)
    width = min(16.0, 2.2 + 0.42 * columns * len(panels) + 1.2 * len(panels))
    fig, axes = figure(width, 1.0 + 0.32 * rows, ncols=len(panels), sharey=True)
    image = None
    for ax, (label, values) in zip(axes, panels):
        grid = np.array([[np.nan if v is None else 100.0 * v for v in row] + [np.nan] * (columns - len(row))
                         for row in values], dtype=float)
        ax.set_facecolor("#e6e6e6")
        image = ax.imshow(grid, cmap="cividis", vmin=0, vmax=100, aspect="auto", interpolation="nearest")
        for (i, j), value in np.ndenumerate(grid):
            if np.isnan(value):
                ax.add_patch(_hatched(j, i))
                continue
            ax.text(j, i, f"{value:.0f}", ha="center", va="center", fontsize=7,
                    color="black" if value > 55 else "white")
        ax.set_xticks(range(columns), classes, fontsize=8)
        ax.set_xlabel("class")
        ax.set_title(label)
        ax.grid(False)
        for spine in ax.spines.values():
            spine.set_visible(False)
    axes[0].set_yticks(range(rows), names)
    if image is not None:
        bar = fig.colorbar(image, ax=axes, shrink=0.9, pad=0.01)
        bar.set_label(unit)
    return to_svg(fig, title)


def _hatched(x: int, y: int):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, hatch="///", edgecolor="#999999", lw=0)
