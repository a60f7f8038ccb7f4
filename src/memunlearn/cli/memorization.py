"""``memunlearn memorization pool|scores|proxies|compare``: the model pool, exact scores and proxies.

    memunlearn memorization pool --dataset digits --pool-size 64 --workers 2
    memunlearn memorization scores --dataset digits --pool-size 64 --out runs/digits-exact.npy
    memunlearn memorization proxies --dataset digits --out runs/digits-proxies
    memunlearn memorization compare --dataset digits --pool-size 64 --out runs/digits-compare.json

Every sub-command checks its input (proxy names, executor, Ray, score files, an existing pool
folder) and every output location (--out, --pool-dir, the cache) before any training, and writes
its outputs only at the end, atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import atomic_path, check_cache_dir, check_output_dir, check_output_file, write_json
from .common import (PROXIES_HELP, add_data_options, bounded_int, data_options, fraction_float, parse_list, seed_int,
                     stage_logger)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "memorization", help="model pool, exact memorization scores, proxies and their agreement",
        description="Build a model pool (K models on random subsets), compute exact Feldman–Zhang memorization "
        "scores, compute proxies, and compare them. Example: memunlearn memorization compare --dataset digits "
        "--pool-size 64",
    )
    commands = parser.add_subparsers(dest="memorization_command", required=True, metavar="ACTION")
    helps = {
        "pool": "build or resume a model pool",
        "scores": "exact memorization scores from the pool → .npy (+ .json summary)",
        "proxies": "memorization proxies of the original model → one .npy each (+ proxies.json with costs)",
        "compare": "Spearman ρ, Pearson r, cosine and tertile agreement of each proxy with exact scores, beside "
                   "the exact scores' split-half reliability, and each proxy's cost",
    }
    for name, text in helps.items():
        sub = commands.add_parser(name, help=text, description=text)
        add_data_options(sub)
        sub.add_argument("--seed", type=seed_int, default=0,
                         help="seed of the original model and of proxy randomness")
        if name in ("pool", "scores", "compare"):
            _add_pool_options(sub)
        if name in ("proxies", "compare"):
            sub.add_argument("--proxies", help=f"comma-separated proxies (default: all): {PROXIES_HELP}")
        if name == "compare":
            sub.add_argument("--proxy-dir", help="read proxies from a `memorization proxies` folder instead of computing them")
            sub.add_argument("--scores", help="exact scores (.npy from `memorization scores`) instead of the pool's")
            sub.add_argument("--out", help="write the comparison as JSON here")
            sub.add_argument("--json", action="store_true", help="print JSON instead of the table")
        elif name == "scores":
            sub.add_argument("--out", required=True, help="scores file (.npy); a .json summary is written beside it")
        elif name == "proxies":
            sub.add_argument("--out", required=True, help="output folder: <proxy>.npy and proxies.json")
        else:
            sub.add_argument("--out", help="also write the pool summary as JSON here")
        sub.set_defaults(func=_ACTIONS[name])


def _add_pool_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model pool")
    group.add_argument("--pool-size", type=bounded_int("pool_size"), default=None, help="K, the number of pool models (default 100)")
    group.add_argument("--subset-fraction", type=fraction_float, default=0.7, help="r, fraction of the training set per model (0.7)")
    group.add_argument("--pool-seed", type=seed_int, default=0, help="the pool's own seed (default 0)")
    group.add_argument("--pool-dir", help="pool folder (default: in the cache, keyed by data, model and recipe)")
    group.add_argument("--executor", default="local", help="local (default: a process pool) or ray")
    group.add_argument("--workers", type=bounded_int("workers"), default=1, help="parallel workers (local processes or Ray CPUs)")
    group.add_argument("--member-threads", type=bounded_int("threads"), default=1,
                       help="torch threads each member trains with (default 1); part of the pool's key, so a "
                       "member's result never depends on --workers")
    group.add_argument("--ray-address", help="join this Ray cluster instead of starting a local one")
    group.add_argument("--keep-weights", action="store_true",
                       help="also store each member's trained weights (checksummed safetensors), so privacy attacks "
                       "that unlearn members (U-LiRA) load them instead of retraining; costs disk")


def _setting(args: argparse.Namespace):
    from ..experiment import RunConfig, resolve_setting

    setting = resolve_setting(RunConfig(data_options=data_options(args),
        dataset=args.dataset, data_dir=args.data_dir, model=args.model, width=args.width, epochs=args.epochs,
        train_subset=args.train_subset, device=args.device, fast=args.fast, cache_dir=args.cache_dir, seed=args.seed,
    ))
    setting.build(0)  # an unknown model, or one that does not fit the data, fails before any training
    return setting


def _proxy_names(args: argparse.Namespace) -> list[str]:
    from ..memorization import available_proxies
    from ..memorization.proxies import get_proxy

    names = list(parse_list(args.proxies)) if args.proxies else available_proxies()
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"--proxies lists {twice[0]!r} more than once")
    for name in names:
        get_proxy(name)  # unknown names fail here, before any training
    return names


def _check_pool_options(args: argparse.Namespace) -> None:
    from ..memorization.executors import check_executor

    check_executor(args.executor)
    if args.pool_dir:
        check_output_dir(args.pool_dir, "--pool-dir")
    if args.ray_address and args.executor != "ray":
        raise ConfigError("--ray-address only applies to --executor ray")
    if args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    if args.pool_size is not None and args.pool_size < 2:
        raise ConfigError(f"--pool-size must be at least 2, got {args.pool_size}")


def _check_outputs(args: argparse.Namespace, *files: str | Path | None, inputs=()) -> None:
    """Every output location of the command, before any work: the cache and the given files
    (regular files, none of them an input)."""
    check_cache_dir(args.cache_dir)
    for path in files:
        if path is not None:
            check_output_file(path, "--out", inputs=inputs)


def member_progress(result: dict) -> str:
    """One line per finished pool member: which, how long, k of K, and the time left.

    Example:
        >>> member_progress({"index": 3, "wall_time": 2.0, "held_out_accuracy": 0.9, "trained_this_run": 2,
        ...                  "present": 6, "pool_size": 10, "elapsed": 4.0})
        'member 3 done in 2.0s (held-out acc 0.900): 6 of 10 in the pool, 2 trained this run, about 8s left'
    """
    text = (f"member {result['index']} done in {result['wall_time']:.1f}s "
            f"(held-out acc {result['held_out_accuracy']:.3f})")
    if "present" in result:
        left = result["pool_size"] - result["present"]
        text += f": {result['present']} of {result['pool_size']} in the pool, {result['trained_this_run']} trained this run"
        if left:
            text += f", about {result['elapsed'] / max(result['trained_this_run'], 1) * left:.0f}s left"
    return text


def _build(args: argparse.Namespace, setting, log):
    from ..memorization import DEFAULT_POOL_SIZE
    from ..memorization.pool import build_pool, pool_spec_for

    spec = pool_spec_for(setting.dataset, setting.model_name, setting.width, setting.train_config,
                         args.subset_fraction, args.pool_seed, threads=args.member_threads,
                         keep_weights=args.keep_weights)
    size = args.pool_size or DEFAULT_POOL_SIZE

    def on_member(result: dict) -> None:
        log(member_progress(result))

    return build_pool(setting.dataset, spec, size, pool_dir=args.pool_dir, cache_dir=args.cache_dir,
                      executor=args.executor, workers=args.workers, ray_address=args.ray_address,
                      device=str(setting.device), on_member=on_member)


def run_pool(args: argparse.Namespace) -> int:
    from ..memorization.pool import pool_summary

    _check_pool_options(args)
    _check_outputs(args, args.out)
    setting = _setting(args)
    pool = _build(args, setting, stage_logger())
    summary = pool_summary(pool, setting.dataset.train.y.numpy())
    if args.out:
        write_json(args.out, summary)
    build = pool.build
    print(f"pool of {len(pool)} {summary['model']} (width {summary['width']}) models on {setting.dataset.name} "
          f"in {pool.directory}")
    print(f"  trained now: {build['trained']}, reused: {build['reused']}, wall {build['wall_time']:.1f}s"
          + (f" ({build['models_per_minute']:.1f} models/min with {args.executor} × {args.workers})" if build["trained"] else ""))
    print(f"  mean accuracy: subset {summary['mean_subset_accuracy']:.3f}, held-out {summary['mean_held_out_accuracy']:.3f}, "
          f"test {summary['mean_test_accuracy']:.3f}; split-half reliability {summary['split_half_reliability']:.3f}")
    return 0


def run_scores(args: argparse.Namespace) -> int:
    _check_pool_options(args)
    out = Path(args.out)
    if out.suffix != ".npy":
        raise ConfigError(f"--out should name a .npy file, got {out}")
    _check_outputs(args, out, out.with_suffix(".stderr.npy"), out.with_suffix(".json"))
    setting = _setting(args)
    pool = _build(args, setting, stage_logger())
    labels = setting.dataset.train.y.numpy()
    estimate = pool.estimate(labels)
    reliability = pool.reliability(labels) if len(pool) >= 4 else float("nan")
    from ..memorization import spearman_brown

    summary = {
        "dataset": setting.dataset.name, "fingerprint": setting.dataset.fingerprint, "n_train": len(labels),
        "pool_dir": str(pool.directory), "pool_size": len(pool), "pool_seconds": pool.train_seconds,
        "split_half_reliability": reliability, "reliability": spearman_brown(reliability),
        **estimate.summary(), "stderr_file": out.with_suffix(".stderr.npy").name,
    }
    _save_npy(out, estimate.scores)
    _save_npy(out.with_suffix(".stderr.npy"), estimate.stderr)
    write_json(out.with_suffix(".json"), summary)
    print(f"exact scores of {len(labels)} examples from {len(pool)} models → {out} "
          f"(mean {summary['mean']:.3f}, {summary['n_undefined']} undefined, split-half ρ {reliability:.3f})")
    return 0


def _save_npy(path: Path, array) -> None:
    import numpy as np

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def _original(args: argparse.Namespace, setting, log):
    from ..experiment import train_cached

    model, dynamics, wall, reused = train_cached(setting, setting.dataset.train, setting.dataset.fingerprint,
                                                 args.seed, "original")
    log(f"original model {'reused' if reused else f'trained in {wall:.1f}s'}")
    return model, dynamics, wall


def _compute_proxies(args: argparse.Namespace, names: list[str], setting, log) -> tuple[dict, dict]:
    from ..memorization import compute_proxy

    model, dynamics, wall = _original(args, setting, log)
    results = {}
    start = time.perf_counter()
    for k, name in enumerate(names, 1):
        results[name] = compute_proxy(name, setting.dataset, model, dynamics, setting.device, args.seed)
        log(f"proxy {k} of {len(names)}: {name} in {results[name].seconds:.2f}s "
            f"({time.perf_counter() - start:.1f}s so far)")
    return results, {"seed": args.seed, "train_seconds": wall}


def run_proxies(args: argparse.Namespace) -> int:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    names = _proxy_names(args)
    check_output_dir(args.out, "--out", files=[*(f"{name}.npy" for name in names), "proxies.json"])
    _check_outputs(args)
    setting = _setting(args)
    results, original = _compute_proxies(args, names, setting, stage_logger())
    out = Path(args.out)
    for name, result in results.items():
        _save_npy(out / f"{name}.npy", result.scores)
    write_json(out / "proxies.json", {
        "dataset": setting.dataset.name, "fingerprint": setting.dataset.fingerprint,
        "n_train": len(setting.dataset.train), "original": original,
        "proxies": {name: result.to_dict() for name, result in results.items()},
    })
    table = Table(title=f"memorization proxies on {setting.dataset.name}")
    for column in ("proxy", "needs", "seconds", "mean", "file"):
        table.add_column(column)
    for name, result in results.items():
        table.add_row(name, result.needs, f"{result.seconds:.3f}", f"{np.nanmean(result.scores):.4g}", f"{out / name}.npy")
    Console().print(table)
    return 0


def _load_proxy_dir(directory: str, names: list[str], n: int) -> dict:
    from ..memorization import load_score_file
    from ..memorization.proxies import ProxyResult, get_proxy

    folder = Path(directory)
    try:
        costs = json.loads((folder / "proxies.json").read_text()).get("proxies", {})
    except (OSError, ValueError):
        costs = {}
    results = {}
    for name in names:
        scores = load_score_file(folder / f"{name}.npy", n)
        results[name] = ProxyResult(name, scores, float(costs.get(name, {}).get("seconds", float("nan"))), get_proxy(name).needs)
    return results


def run_compare(args: argparse.Namespace) -> int:
    from ..memorization import load_score_file
    from ..memorization.compare import compare_proxies

    names = _proxy_names(args)
    _check_pool_options(args)
    proxy_files = [Path(args.proxy_dir) / f"{name}.npy" for name in names] if args.proxy_dir else []
    _check_outputs(args, args.out, inputs=[args.scores, *proxy_files])
    log = stage_logger()
    setting = _setting(args)
    n = len(setting.dataset.train)
    # Files given by the user are checked before anything is trained.
    given_scores = load_score_file(args.scores, n) if args.scores else None
    proxies = _load_proxy_dir(args.proxy_dir, names, n) if args.proxy_dir else None
    pool = _build(args, setting, log)
    labels = setting.dataset.train.y.numpy()
    exact = given_scores if given_scores is not None else pool.estimate(labels).scores
    split_half = pool.reliability(labels) if len(pool) >= 4 else float("nan")
    if proxies is None:
        proxies, _ = _compute_proxies(args, names, setting, log)
    comparison = compare_proxies(exact, split_half, proxies, pool.train_seconds)
    comparison.update({"dataset": setting.dataset.name, "n_train": n, "pool_dir": str(pool.directory),
                       "pool_size": len(pool), "exact_source": args.scores or "pool"})
    if args.out:
        write_json(args.out, comparison)
    if args.json:
        print(json.dumps(comparison, indent=2, default=float))
        return 0
    _print_comparison(comparison)
    return 0


def _print_comparison(comparison: dict[str, Any]) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    table = Table(title=(
        f"proxies vs exact memorization ({comparison['dataset']}, K={comparison['pool_size']}; split-half ρ "
        f"{_number(comparison['split_half_reliability'], '{:.3f}')}, full-pool reliability "
        f"{_number(comparison['reliability'], '{:.3f}')})"
    ))
    for column in ("proxy", "Spearman ρ", "ρ / split-half", "Pearson r", "cosine", "tertiles", "ρ corrected",
                   "top overlap", "seconds", "cost / pool"):
        table.add_column(column, justify="left" if column == "proxy" else "right")
    for name, row in sorted(comparison["proxies"].items(), key=lambda item: -np.nan_to_num(item[1]["rho"], nan=-9)):
        table.add_row(name, _number(row["rho"], "{:+.3f}"), _number(row.get("rho_fraction_of_split_half"), "{:.2f}"),
                      _number(row.get("pearson"), "{:+.3f}"), _number(row.get("cosine"), "{:+.3f}"),
                      _number(row.get("tertile_agreement"), "{:.2f}"), _number(row["rho_corrected"], "{:+.3f}"),
                      _number(row["top_overlap"], "{:.2f}"), _number(row["seconds"], "{:.3f}"),
                      _number(row["cost_fraction"], "{:.2e}"))
    Console(file=sys.stdout).print(table)


def _number(value: float, fmt: str) -> str:
    import math

    return "n/a" if value is None or not math.isfinite(value) else fmt.format(value)


_ACTIONS = {"pool": run_pool, "scores": run_scores, "proxies": run_proxies, "compare": run_compare}

__all__ = ["add_parser"]
