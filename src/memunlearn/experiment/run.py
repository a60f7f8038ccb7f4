"""Running a spec: splits → cells (through an executor) → summary → results.json."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch

from .. import __version__
from ..checkpoints import cache_root
from ..io import check_cache_dir, check_output_dir, strict_json, write_json
from .cells import Cell, CellStore, cell_key, compute_cell
from .hparams import apply_tuned
from .metrics import floor_metrics
from .setup import Setting, Split, check_before_work, prepare_split, resolve_setting
from .spec import ExperimentSpec, MethodCell, check_spec, spec_from_dict
from .summary import summarise, versions

if TYPE_CHECKING:
    from . import RunConfig

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def run_experiment(
    spec: ExperimentSpec | RunConfig,
    out_dir: str | Path | None = None,
    log: Log = _quiet,
    command: str | None = None,
) -> dict[str, Any]:
    """Run every cell of ``spec`` (reusing finished ones) and, if ``out_dir``, write results.json.

    Args:
        spec: what to run (see :mod:`memunlearn.experiment.spec`); a legacy
            :class:`~memunlearn.experiment.RunConfig` is accepted too.
        out_dir: where to write ``results.json`` and ``forget_indices_seed{S}[_{i}].txt``; written
            only when every cell has finished, atomically, so a failed run leaves earlier results
            intact. Each cell is kept in the cache the moment it finishes.
        log: called with one line per stage and per cell (done / reused, ETA).
        command: the command line that started the run, recorded in results.json.

    Returns:
        The results dictionary (also what results.json holds): the spec, versions, per forget
        rule the per-seed rows and the summary (mean and 95% t-interval over seeds).

    Raises:
        MemunlearnError: bad configuration or data (CLI exit code 2).

    Example:
        >>> spec = spec_from_dict({"methods": {"run": ["finetune"]}})
        >>> results = run_experiment(spec, "runs/demo")  # doctest: +SKIP
    """
    if not isinstance(spec, ExperimentSpec):
        spec = spec.to_spec()
    # Every output and cache location is checked before any work, not after it.
    check_spec(spec)
    if out_dir is not None:
        check_output_dir(out_dir, "output directory", files=output_names(spec), inputs=spec_inputs(spec))
    check_cache_dir(spec.cache_dir)
    setting = resolve_setting(spec)
    check_before_work(spec, setting)
    start = time.perf_counter()
    torch.use_deterministic_algorithms(False)
    store = CellStore(cache_root(spec.cache_dir) / "cells")
    groups, all_forget_sets = [], []
    counts = {"cells": 0, "reused": 0, "computed": 0}
    method_cells = spec.method_cells()
    total = len(spec.forget) * len(spec.seeds) * len(method_cells)
    progress = _Progress(total, log)
    tuned = apply_tuned(spec, setting, log)
    requests = None
    if spec.requests.count is not None:  # deletion requests over time, beside the experiment's cells
        from .requests import RequestsRun

        requests = RequestsRun(spec, setting, store, log, lambda rule, seed: _indices_stem(spec, rule, seed))
    for rule in spec.forget:
        rows, forget_sets = [], []
        rule_cells = [with_tuned(m, tuned[rule]) for m in method_cells]
        for seed in spec.seeds:
            split = prepare_split(spec, setting, seed, rule, log)
            if requests is not None:
                requests.prepare(split)  # draws every request and its oracle before any unlearning
            cells = [Cell(seed, rule, m.entry, m.label, m.hparams, cell_key(setting, split, m.entry, m.hparams, spec))
                     for m in rule_cells]
            row = {**split.row, "methods": {}}
            if spec.evaluation.metrics:
                row["reference_metrics"] = floor_metrics(spec, setting, split)
            if spec.evaluation.audit:
                from .metrics import reference_audits

                row["audit"] = reference_audits(spec, setting, split)
            for cell, result, reused in _run_cells(cells, split, setting, spec, store):
                row["methods"][cell.label] = result
                counts["cells"] += 1
                counts["reused" if reused else "computed"] += 1
                progress.done(cell, result, reused)
            if split.rum_partitions is not None and split.rum_partitions.description:
                row["rum"] = split.rum_partitions.description
            if requests is not None:
                requests.run(split, rule_cells)
            if not rows:  # the report shows the first seed's most exposed forget examples as thumbnails
                thumbnails = _exposed_thumbnails(split, row)
            rows.append(row)
            forget_sets.append(split.forget_set)
            all_forget_sets.append((rule, split.forget_set))
        groups.append({
            "forget": rule,
            "forget_set": {"per_seed": {str(f.seed): {**f.to_dict(), "indices_file": _indices_stem(spec, rule, f.seed)
                                                      + ".txt"} for f in forget_sets}},
            "per_seed": rows,
            "summary": summarise(rows, [m.label for m in method_cells]),
            "tuned_hparams": tuned[rule],
        })
        if thumbnails:
            groups[-1]["thumbnails"] = {"seed": spec.seeds[0], "images": thumbnails}
        if spec.evaluation.audit:
            from ..auditing import audit_calibration

            groups[-1]["audit_calibration"] = audit_calibration(rows, groups[-1]["summary"],
                                                                [m.label for m in method_cells])
        if any(m.entry.startswith("stop:") for m in method_cells):
            from ..methods.stop_when_done import stop_summary

            groups[-1]["stop_when_done"] = stop_summary(rows, groups[-1]["summary"], [m.label for m in method_cells])
        if requests is not None:
            groups[-1]["requests"] = requests.group(rule, [m.label for m in method_cells])
    results = strict_json({
        "format": 2,
        "memunlearn_version": __version__,
        "spec": spec.to_dict(),
        "command": command,
        "setting": setting.describe(),
        "versions": versions(),
        "device": str(setting.device),
        "seeds": list(spec.seeds),
        "dataset": {
            "name": setting.dataset.name, "n_train": len(setting.dataset.train), "n_test": len(setting.dataset.test),
            "classes": setting.dataset.classes, "fingerprint": setting.dataset.fingerprint,
            "evaluated_on": "validation split" if spec.data.validation else "test set",
        },
        "groups": groups,
        "cells": counts,
        "wall_time": time.perf_counter() - start,
    })
    if out_dir is not None:
        out_dir = Path(out_dir)
        for rule, forget_set in all_forget_sets:
            forget_set.save(out_dir, stem=_indices_stem(spec, rule, forget_set.seed))
        if requests is not None:
            requests.save_indices(out_dir)
        write_json(out_dir / "results.json", results)
    return results


def _exposed_thumbnails(split: Split, row: dict[str, Any]) -> dict[str, str]:
    """Data URIs of the training images that any model's ``exposed`` list names (image data only)."""
    from .views import example_thumbnails

    images = getattr(split.dataset.train, "x", None)
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        return {}
    entries = [row.get("original"), row.get("noise_floor"), *row["methods"].values()]
    indices = {e["index"] for entry in entries if isinstance(entry, dict) for e in entry.get("exposed") or []}
    return example_thumbnails(images, indices)


def with_tuned(cell: MethodCell, tuned: dict[str, dict[str, Any]]) -> MethodCell:
    """``cell`` with tuned hyperparameters filled in under the ones the spec sets explicitly."""
    from ..rum import parse_entry

    if not tuned:
        return cell
    if cell.entry.startswith("stop:"):  # the base method's tuned values; its tuned epochs are the stop's budget
        base = {**tuned.get(cell.entry[len("stop:"):], {})}
        if "epochs" in base:
            base["max_epochs"] = base.pop("epochs")
        return replace(cell, hparams={**tuned.get(cell.label, base), **cell.hparams})
    if parse_entry(cell.entry) is None:  # values tuned for this very sweep value first, else for the method
        return replace(cell, hparams={**tuned.get(cell.label, tuned.get(cell.entry, {})), **cell.hparams})
    return replace(cell, hparams={m: {**tuned.get(m, {}), **values} for m, values in cell.hparams.items()})


def output_names(spec: ExperimentSpec) -> list[str]:
    """The files :func:`run_experiment` writes in its output directory (requests' indices aside)."""
    names = ["results.json"]
    for rule in spec.forget:
        for seed in spec.seeds:
            stem = _indices_stem(spec, rule, seed)
            names += [f"{stem}.txt", f"{stem}.json"]
    return names


def spec_inputs(spec: ExperimentSpec) -> list[str]:
    """Every file ``spec`` reads: hparams file, RUM score file, forget rules' index and score files."""
    inputs = [spec.hparams_file, spec.rum_score if spec.rum_score.endswith(".npy") else None]
    for rule in spec.forget:
        inputs += rule_files(rule)
    return [p for p in inputs if p]


def rule_files(rule: str) -> list[str]:
    """The files a forget rule reads (``indices:FILE``, a score file in ``memorization:...:FILE.npy``).

    Example:
        >>> rule_files("indices:f.txt"), rule_files("memorization:high:s.npy:0.1"), rule_files("iid:0.1")
        (['f.txt'], ['s.npy'], [])
    """
    kind, _, argument = rule.partition(":")
    if kind == "indices":
        return [argument] if argument else []
    return [part for part in argument.split(":") if part.endswith(".npy")]


def _indices_stem(spec: ExperimentSpec, rule: str, seed: int) -> str:
    if len(spec.forget) == 1:
        return f"forget_indices_seed{seed}"
    return f"forget_indices_{spec.forget.index(rule)}_seed{seed}"


def _run_cells(cells: list[Cell], split: Split, setting: Setting, spec: ExperimentSpec, store: CellStore):
    """Yield (cell, result, reused) for each cell, computing only those not already stored."""
    pending = []
    for cell in cells:
        stored = store.load(cell.key)
        if stored is not None:
            yield cell, stored, True
        else:
            pending.append(cell)
    if not pending:
        return
    if spec.executor.workers == 1 and spec.executor.name == "local":
        for cell in pending:
            yield (cell, *compute_or_reuse(cell, split, setting, spec, store))
        return
    from ..memorization.executors import get_executor

    shared = {"spec": spec.to_dict()}
    with get_executor(spec.executor.name, spec.executor.workers, spec.executor.ray_address) as executor:
        for cell, (result, reused) in executor.map(_cell_task, pending, shared=shared):
            yield cell, result, reused


def compute_or_reuse(cell: Cell, split: Split, setting: Setting, spec: ExperimentSpec,
                      store: CellStore) -> tuple[dict[str, Any], bool]:
    with store.lock(cell.key):
        stored = store.load(cell.key)  # another sweep may have finished it while we waited
        if stored is not None:
            return stored, True
        result = compute_cell(cell, split, setting, spec)
        store.save(cell, result)
        return result, False


_WORKER_STATE: dict[str | tuple[int, str], Any] = {}  # "setting", and (seed, rule) -> its split


def _cell_task(cell: Cell, shared: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A cell in a worker process: rebuild its split from the cache (memoised per process)."""
    spec = spec_from_dict(shared["spec"])
    if "setting" not in _WORKER_STATE:
        _WORKER_STATE["setting"] = resolve_setting(spec)
    setting = _WORKER_STATE["setting"]
    key = (cell.seed, cell.rule)
    if key not in _WORKER_STATE:
        _WORKER_STATE[key] = prepare_split(spec, setting, cell.seed, cell.rule, _quiet)
    store = CellStore(cache_root(spec.cache_dir) / "cells")
    return compute_or_reuse(cell, _WORKER_STATE[key], setting, spec, store)


class _Progress:
    """One line per finished cell: how many are done, how many were reused, and an ETA."""

    def __init__(self, total: int, log: Log):
        self.total, self.log = total, log
        self.done_count = self.reused = 0
        self.computed_time = 0.0
        self.start = time.perf_counter()

    def done(self, cell: Cell, result: dict[str, Any], reused: bool) -> None:
        self.done_count += 1
        self.reused += reused
        computed = self.done_count - self.reused
        elapsed = time.perf_counter() - self.start
        remaining = self.total - self.done_count
        eta = f", ETA {_duration(elapsed / computed * remaining)}" if computed and remaining else ""
        status = result.get("status")
        what = "reused" if reused else ("diverged" if status == "diverged" else
                                         f"{result.get('cost', {}).get('wall_time', 0):.1f}s")
        self.log(f"cell {self.done_count}/{self.total} ({self.reused} reused{eta}): {cell.label}, seed {cell.seed}, "
                 f"{cell.rule}: {what}")


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
