"""Cells: one seed × forget rule × method × hyperparameters, computed once and kept.

A cell's result is written atomically, with a checksum, to ``<cache>/cells/<key>.json`` the
moment it finishes; the key is the hash of everything that produced it. A sweep killed at any
moment and started again reuses every finished cell and never reads a half-written or damaged
one (a checksum mismatch is reported and the cell recomputed). A per-cell lock makes a second
sweep on the same cache wait for a cell the first is computing, then reuse it.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..checkpoints import artefact_key
from ..errors import DivergedError
from ..evaluation import compare_to_oracle
from ..io import FileLock, atomic_path, json_checksum, strict_json
from ..methods import UnlearnResult, method_defaults, unlearn
from ..rum import RunPartitions, parse_entry, run_entry
from .setup import Setting, Split
from .spec import ExperimentSpec

AUDIT_FORMAT = 2  # in the key of cells that carry an audit; bump when the audit changes

# Bump when what a cell computes changes, so old cells are not reused.
CELL_FORMAT = 2  # 2: official recipes by default (issue 18); per-class accuracies and exposed forget examples


@dataclass(frozen=True)
class Cell:
    """What one cell runs; ``key`` identifies its result in the cache."""

    seed: int
    rule: str
    entry: str
    label: str
    hparams: dict[str, Any]
    key: str

    def describe(self) -> dict[str, Any]:
        return {"seed": self.seed, "forget": self.rule, "method": self.entry, "label": self.label,
                "hparams": self.hparams}


def cell_key(setting: Setting, split: Split, entry: str, hparams: dict[str, Any], spec: ExperimentSpec) -> str:
    """The hash of everything that determines a cell's result."""
    pipeline = parse_entry(entry)
    evaluation = spec.evaluation
    extra = {"metrics": list(evaluation.metrics), "pool": [evaluation.pool_size, evaluation.pool_fraction,
                                                          evaluation.pool_seed],
             "neurips2023_models": evaluation.neurips2023_models} if evaluation.metrics else None
    if extra is not None and {"rmia", "rmia-u"} & set(evaluation.metrics):
        extra["attack_tier"] = [evaluation.rmia_references, evaluation.rmia_u_references]
    return artefact_key(
        format=CELL_FORMAT, version=__version__, setting=setting.key(), data=split.dataset.fingerprint,
        seed=split.seed, forget=artefact_key(indices=split.forget_set.indices.tolist()), entry=entry,
        hparams=hparams, rum_score=spec.rum_score if pipeline and pipeline[0] in ("rum", "rum-f") else None,
        device=setting.device.type, metrics=extra,
        **({"audit": [AUDIT_FORMAT, evaluation.audit_holdout]} if evaluation.audit else {}),
    )


class CellStore:
    """The cache directory of finished cells."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def load(self, key: str) -> dict[str, Any] | None:
        """The finished cell's result, or None if absent or damaged (a damaged one is reported)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            stored = json.loads(path.read_text())
            result = stored["result"]
            intact = stored.get("sha256") == json_checksum(result)
        except (OSError, ValueError, KeyError, TypeError):
            intact = False
        if not intact:
            warnings.warn(f"cell result {path} is damaged (checksum mismatch); computing it again", stacklevel=2)
            return None
        return result

    def save(self, cell: Cell, result: dict[str, Any]) -> None:
        payload = {"key": cell.key, "cell": cell.describe(), "result": result, "sha256": json_checksum(result)}
        with atomic_path(self.path(cell.key)) as tmp:
            tmp.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")

    def lock(self, key: str) -> FileLock:
        """The cell's lock: a second sweep computing the same cell waits on it, then reuses the cell."""
        return FileLock(self.path(key))


def compute_cell(cell: Cell, split: Split, setting: Setting, spec: ExperimentSpec) -> dict[str, Any]:
    """Run the cell's method on its split and score it against the oracle (and by the spec's metrics)."""
    from .metrics import cell_metrics

    rum_score = spec.rum_score
    device = str(setting.device)
    pipeline = parse_entry(cell.entry)
    hparams: dict[str, Any]
    result: UnlearnResult  # a PipelineResult (a subclass, with step_records) for a pipeline
    try:
        if pipeline is not None:
            partitions = _partitions(split, setting, rum_score)
            result = run_entry(cell.entry, split.original, split.dataset.train, partitions, hparams=cell.hparams,
                               seed=split.seed, device=device)
            hparams = dict(result.hparams)
        elif cell.entry.startswith("stop:"):
            from ..methods.stop_when_done import run_stop_entry, stop_entry_defaults

            result = run_stop_entry(cell.entry, split.original, split.forget, split.retain,
                                    setting.holdout, seed=split.seed, device=device, **cell.hparams)
            hparams = {**stop_entry_defaults(cell.entry), **cell.hparams}
        else:
            hparams = {**cell.hparams}
            if cell.entry == "retrain":  # retrain = the oracle's recipe unless set
                hparams = {**setting.train_config.retrain_hparams(), **hparams}
            result = unlearn(cell.entry, split.original, split.forget, split.retain, seed=split.seed, device=device,
                             **hparams)
            hparams = {**method_defaults(cell.entry), **result.hparams}
        metrics, views = split.views_of(result.model, setting.device)
        extra = cell_metrics(spec, setting, split, cell.entry, cell.hparams, result.model, pipeline is not None)
        if spec.evaluation.audit:
            from .metrics import audit_model, ulira_agreement

            extra["audit"] = audit_model(setting, split, result.model)
            if isinstance(extra.get("ulira"), dict):
                extra["audit"]["vs_ulira"] = ulira_agreement(extra["audit"], split.forget_set.indices, extra["ulira"])
    except DivergedError as exc:
        return {"status": "diverged", "error": str(exc), "hparams": strict_json(cell.hparams)}
    entry: dict[str, Any] = {
        "status": "ok", "metrics": metrics, "vs_oracle": compare_to_oracle(metrics, split.oracle_metrics),
        "cost": result.cost.to_dict(), "time_fraction": result.cost.wall_time / split.oracle_time,
        "examples_fraction": result.cost.examples / split.oracle_examples,
        "hparams": {**hparams, "seed": split.seed}, **views,
    }
    entry.update(extra)
    entry.update(result.details)
    if pipeline is not None:
        entry["steps"] = result.step_records  # type: ignore[attr-defined]  # a PipelineResult here
        entry["rum"] = _partitions(split, setting, rum_score).description
    return strict_json(entry)


def _partitions(split: Split, setting: Setting, rum_score: str) -> RunPartitions:
    """RUM's refinement of the split's forget set, shared by every pipeline cell of the split."""
    cached = split.rum_partitions
    if cached is None:
        def scores_for(source: str) -> np.ndarray:
            from ..memorization import memorization_scores

            return memorization_scores(source, split.dataset, split.original, split.dynamics,
                                       device=str(setting.device), cache_dir=str(setting.cache.parent),
                                       seed=split.seed)

        cached = RunPartitions(split.forget_set, rum_score, scores_for)
        split.rum_partitions = cached
    return cached
