"""What a sweep cell costs on top of calling the method directly (issue 11).

The same cells (digits, ``finetune`` at several learning rates) are run twice, interleaved, on one
split whose original and oracle are already cached: once as a plain loop of ``unlearn`` +
``evaluate`` + ``compare_to_oracle``, once through ``run_experiment`` (cell keys, locks, atomic
writes with checksums, summaries). The overhead is their difference per cell, reported with the
ratio, since absolute times depend on the machine's load.

    python benchmarks/cell_overhead.py --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace

import _common  # noqa: F401  (puts src/ on the path)

from memunlearn.evaluation import compare_to_oracle
from memunlearn.experiment import prepare_split, resolve_setting, run_experiment, spec_from_dict
from memunlearn.experiment.setup import evaluate_split
from memunlearn.methods import unlearn

LRS = [0.005, 0.01, 0.02, 0.03, 0.05]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-subset", type=int, default=600)
    args = parser.parse_args()
    cache = tempfile.mkdtemp(prefix="cell_overhead_")
    payload = {"data": {"train_subset": args.train_subset}, "model": {"epochs": 10},
               "evaluation": {"noise_floor": False}, "methods": {"run": ["finetune"], "finetune": {"lr": LRS,
                                                                                                    "epochs": 1}},
               "run": {"device": "cpu", "cache_dir": cache}}
    spec = spec_from_dict(payload)
    setting = resolve_setting(spec)
    split = prepare_split(spec, setting, 0, "iid:0.1", lambda line: None)  # caches the original and oracle
    direct, through = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for lr in LRS:
            result = unlearn("finetune", split.original, split.forget, split.retain, lr=lr, epochs=1, seed=0,
                             device="cpu")
            compare_to_oracle(evaluate_split(result.model, split.forget_set, split.forget, split.retain, split.test,
                                             setting.device, 0), split.oracle_metrics)
        direct.append((time.perf_counter() - start) / len(LRS))
        shutil.rmtree(f"{cache}/cells", ignore_errors=True)  # every cell computed again, none reused
        start = time.perf_counter()
        run_experiment(replace(spec))
        through.append((time.perf_counter() - start) / len(LRS))
    best_direct, best_through = min(direct), min(through)
    _common.save("cell_overhead_digits", {
        "cells": len(LRS), "repeats": args.repeats, "train_subset": args.train_subset,
        "direct_seconds_per_cell": direct, "sweep_seconds_per_cell": through,
        "overhead_seconds_per_cell": best_through - best_direct, "ratio": best_through / best_direct,
        "note": "best of the interleaved repeats; the sweep's time includes loading the data, the cached "
                "original and oracle and evaluating them once per run (split preparation), divided over the cells",
    })
    print(f"direct {best_direct:.3f} s/cell, sweep {best_through:.3f} s/cell, ratio {best_through / best_direct:.2f}")


if __name__ == "__main__":
    main()
