"""RUM against its baselines on a ``memorization:mix`` forget set, and the difficulty table (issue 4).

Stages (each writes its own JSON, so they can run in separate processes and an interrupted
benchmark keeps what it finished):

* ``scores``: the exact Feldman–Zhang scores from a model pool (K models, r = 0.7), saved as a
  .npy file, and every proxy's Spearman ρ against them on the seed-0 original model; the two
  proxies with the highest ρ are "the best two" → ``rum_{tag}_scores.json``.
* ``mix --source S``: forget set ``memorization:mix:S`` (S = exact, or a proxy), refined into its
  three parts (low / mid / high by S), then for each method M in finetune, neggrad+, salun:
  ``vanilla:M``, ``shuffle:M``, ``rum-f:M``, plus the RUM pipelines (official example
  ``none → finetune → salun``), every seed with its own original model and oracle →
  ``rum_{tag}_mix_{S}.json``.
* ``difficulty``: ToW / ToW-MIA of each method on ``memorization:low|mid|high:exact`` forget sets
  → ``rum_{tag}_difficulty.json``.
* ``report``: markdown tables from those JSON files → ``rum_{tag}.md`` beside them.

Everything goes through :func:`memunlearn.experiment.run_experiment` (the orchestration that
``memunlearn run`` / ``memunlearn rum`` use), so the numbers are what the CLI would print.

Scaled CPU run (what we ran; 2 shared cores, no GPU)::

    python benchmarks/rum.py --stage scores --pool-size 64 --pool-cache-dir /tmp/mu_bench_cache
    python benchmarks/rum.py --stage mix --source exact      # and --source P1, --source P2
    python benchmarks/rum.py --stage difficulty
    python benchmarks/rum.py --stage report

A larger run is the same commands with e.g. ``--dataset fashion-mnist --train-subset 10000
--pool-size 100 --workers 8 --device cuda --tag fmnist``, or ``--stage all`` to do everything in order.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from _common import RESULTS, save  # noqa: F401  (also puts src/ on sys.path)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from memunlearn.cli.common import parse_assignments  # noqa: E402
from memunlearn.experiment import RunConfig, resolve_setting, run_experiment, train_cached  # noqa: E402
from memunlearn.memorization import available_proxies, compute_proxy, memorization_scores, spearman  # noqa: E402

METHODS = ("finetune", "neggrad+", "salun")
RUM_PIPELINES = ("rum:none:finetune:salun", "rum:none:neggrad+:salun")
VARIANT_LABELS = {"vanilla": "vanilla", "shuffle": "shuffle", "rum-f": "RUM^F"}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage", required=True, choices=["scores", "mix", "difficulty", "report", "all"])
    parser.add_argument("--source", help="mix stage: exact or a proxy name (default: exact)")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir")
    parser.add_argument("--train-subset", type=int)
    parser.add_argument("--model", help="default: the dataset's recipe")
    parser.add_argument("--width", type=int, help="default: the dataset's recipe")
    parser.add_argument("--epochs", type=int, help="original / oracle / pool epochs (default: the recipe's)")
    parser.add_argument("--method-epochs", type=int, default=None, help="epochs of every unlearning method")
    parser.add_argument("--set", action="append", metavar="METHOD.PARAM=VALUE",
                        help="a method hyperparameter for every entry using that method (as in `memunlearn run`)")
    parser.add_argument("--fraction", type=float, default=0.1, help="forget-set fraction of the training set")
    parser.add_argument("--pool-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in this process")
    parser.add_argument("--cache-dir", default="/tmp/memunlearn-rum-bench")
    parser.add_argument("--pool-cache-dir", help="cache root of the model pool (default --cache-dir); pools are keyed by "
                        "data, model and recipe, so another benchmark's pool of the same setting is reused, not retrained")
    parser.add_argument("--tag", default="digits")
    parser.add_argument("--skip-proxies", default="", help="comma-separated proxies not to compute in the scores stage")
    return parser.parse_args(argv)


def base_config(args: argparse.Namespace, **changes: Any) -> RunConfig:
    hparams = {m: {"epochs": args.method_epochs} for m in METHODS} if args.method_epochs else {}
    for method, values in parse_assignments(args.set).items():
        hparams.setdefault(method, {}).update(values)
    return RunConfig(dataset=args.dataset, data_dir=args.data_dir, model=args.model, width=args.width,
                     epochs=args.epochs, train_subset=args.train_subset,
                     device=args.device, cache_dir=args.cache_dir, seeds=args.seeds, hparams=hparams, **changes)


def size_note(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "dataset": args.dataset, "train_subset": args.train_subset, "model": args.model or "recipe",
        "width": args.width or "recipe", "epochs": args.epochs or "recipe",
        "method_epochs": args.method_epochs or "method defaults", "forget_fraction": args.fraction,
        "pool_size": args.pool_size, "seeds": args.seeds, "device": args.device, "threads": args.threads,
        "method_hparams": parse_assignments(args.set),
    }


def exact_path(args: argparse.Namespace) -> Path:
    """Where the scores stage saves the exact scores: keyed by what they depend on (not the tag)."""
    name = (f"exact_{args.dataset}_n{args.train_subset or 'all'}_{args.model or 'recipe'}{args.width or ''}"
            f"_e{args.epochs or 'recipe'}_K{args.pool_size}.npy")
    return Path(args.cache_dir) / name


def source_arg(args: argparse.Namespace, source: str) -> str:
    """The forget-rule SOURCE for a score: the saved exact scores file, or the proxy's name."""
    return str(exact_path(args)) if source == "exact" else source


# ---------------------------------------------------------------------------------------------


def stage_scores(args: argparse.Namespace) -> dict:
    config = base_config(args)
    setting = resolve_setting(config)
    data = setting.dataset
    original, dynamics, _, _ = train_cached(setting, data.train, data.fingerprint, config.seed, "original")
    start = time.perf_counter()
    from memunlearn.memorization import build_pool, pool_for

    spec = pool_for(data, original, dynamics)
    pool_cache = args.pool_cache_dir or args.cache_dir
    pool = build_pool(data, spec, args.pool_size, cache_dir=pool_cache, workers=args.workers, device=args.device,
                      on_member=lambda m: print(f"pool member done: {m.get('index', '?')} ({m.get('wall_time', 0):.1f}s)",
                                                flush=True))
    estimate = pool.estimate(data.train.y)
    pool_seconds = time.perf_counter() - start
    exact = estimate.scores
    # the same call `memunlearn` makes (reuses the pool just built)
    assert np.allclose(exact, memorization_scores("exact", data, original, dynamics, cache_dir=pool_cache,
                                                  pool_size=args.pool_size, device=args.device), equal_nan=True)
    np.save(exact_path(args), exact)
    reliability = pool.reliability(data.train.y) if len(pool) >= 4 else float("nan")
    proxies = {}
    skip = set(filter(None, args.skip_proxies.split(",")))
    for name in available_proxies():
        if name in skip:
            continue
        result = compute_proxy(name, data, original, dynamics, args.device, 0)
        proxies[name] = {"rho": spearman(result.scores, exact), "seconds": result.seconds}
        print(f"{name:20s} ρ = {proxies[name]['rho']:+.3f}  ({result.seconds:.2f}s)")
    ranked = sorted((p for p in proxies if np.isfinite(proxies[p]["rho"])), key=lambda p: -proxies[p]["rho"])
    payload = {
        "size": size_note(args), "pool_seconds": pool_seconds, "pool_train_seconds": pool.train_seconds,
        "pool_build": pool.build, "exact_scores_file": str(exact_path(args)),
        "exact_summary": estimate.summary(), "split_half_reliability": reliability,
        "proxies": proxies, "best_two": ranked[:2],
    }
    save(f"rum_{args.tag}_scores", payload)
    print(f"best two proxies by Spearman ρ against exact: {ranked[:2]}; split-half ρ of the pool {reliability:.3f}")
    return payload


def run_config(args: argparse.Namespace, forget: str, methods: tuple[str, ...], log_name: str) -> dict:
    config = base_config(args, forget=forget, methods=methods)
    start = time.perf_counter()
    results = run_experiment(config, log=lambda line: print(f"[{log_name}] {line}", flush=True))
    print(f"[{log_name}] finished in {time.perf_counter() - start:.0f}s", flush=True)
    return results


def condensed(results: dict) -> dict:
    """Per method entry: ToW, ToW-MIA, accuracies and time fraction as mean ± 95% half-width."""
    keys = ("tow", "tow_mia", "metrics.acc_forget", "metrics.acc_retain", "metrics.acc_test",
            "metrics.mia_efficacy", "time_fraction")
    out = {}
    for entry, stats in results["summary"]["methods"].items():
        out[entry] = {k: stats[k] for k in keys} | {"seeds_ok": stats["seeds_ok"]}
    out["original"] = {k: results["summary"]["original"][k] for k in keys if k in results["summary"]["original"]}
    return out


def stage_mix(args: argparse.Namespace) -> dict:
    source = args.source or "exact"
    if source == "exact" and not exact_path(args).exists():
        raise SystemExit(f"run --stage scores first (no {exact_path(args)})")
    methods = tuple(f"{variant}:{m}" for m in METHODS for variant in ("vanilla", "shuffle", "rum-f")) + RUM_PIPELINES
    forget = f"memorization:mix:{source_arg(args, source)}:{args.fraction}"
    results = run_config(args, forget, methods, f"mix {source}")
    partitions = {str(r["seed"]): r.get("rum") for r in results["per_seed"]}
    score_means = {s: f.get("score_mean") for s, f in results["forget_set"]["per_seed"].items()}
    payload = {"size": size_note(args), "source": source, "forget_rule": forget, "summary": condensed(results),
               "partitions": partitions, "partition_score_means": score_means, "results": results}
    save(f"rum_{args.tag}_mix_{source}", payload)
    print(markdown_mix(payload))
    return payload


def stage_difficulty(args: argparse.Namespace) -> dict:
    if not exact_path(args).exists():
        raise SystemExit(f"run --stage scores first (no {exact_path(args)})")
    levels = {}
    for level in ("low", "mid", "high"):
        forget = f"memorization:{level}:{source_arg(args, 'exact')}:{args.fraction}"
        results = run_config(args, forget, METHODS, f"difficulty {level}")
        means = {s: f.get("score_mean") for s, f in results["forget_set"]["per_seed"].items()}
        levels[level] = {"forget_rule": forget, "summary": condensed(results), "score_mean": means, "results": results}
    payload = {"size": size_note(args), "levels": levels}
    save(f"rum_{args.tag}_difficulty", payload)
    print(markdown_difficulty(payload))
    return payload


# ---------------------------------------------------------------------------------------------


def cell(stat: dict | None, percent: bool = False) -> str:
    if not stat or not stat.get("n"):
        return "—"
    scale = 100 if percent else 1
    mean, half = stat["mean"] * scale, stat.get("half_width", float("nan"))
    fmt = "{:.1f}" if percent else "{:.3f}"
    text = fmt.format(mean)
    if half == half:
        text += " ± " + fmt.format(half * scale)
    return text


def markdown_mix(payload: dict) -> str:
    summary = payload["summary"]
    lines = [f"**Forget set `{payload['forget_rule'].split(':')[0]}:mix` by {payload['source']} scores** "
             f"(ToW / ToW-MIA, mean ± 95% t-interval over {payload['size']['seeds']} seeds)", "",
             "| Method | vanilla | shuffle | RUM^F |", "|---|---|---|---|"]
    for metric in ("tow", "tow_mia"):
        for m in METHODS:
            row = [cell(summary.get(f"{v}:{m}", {}).get(metric)) for v in ("vanilla", "shuffle", "rum-f")]
            lines.append(f"| {m} ({'ToW' if metric == 'tow' else 'ToW-MIA'}) | " + " | ".join(row) + " |")
    lines += ["", "| RUM pipeline (low → mid → high) | ToW | ToW-MIA | time / oracle |", "|---|---|---|---|"]
    for entry in RUM_PIPELINES:
        stats = summary.get(entry, {})
        steps = " → ".join(entry.split(":")[1:])
        lines.append(f"| {steps} | {cell(stats.get('tow'))} | {cell(stats.get('tow_mia'))} | {cell(stats.get('time_fraction'))} |")
    original = summary.get("original", {})
    lines.append(f"| (original model, no unlearning) | {cell(original.get('tow'))} | {cell(original.get('tow_mia'))} | — |")
    return "\n".join(lines)


def markdown_difficulty(payload: dict) -> str:
    lines = ["| Method | low | mid | high |", "|---|---|---|---|"]
    for metric in ("tow", "tow_mia"):
        for m in (*METHODS, "original"):
            row = [cell(payload["levels"][lvl]["summary"].get(m, {}).get(metric)) for lvl in ("low", "mid", "high")]
            lines.append(f"| {m} ({'ToW' if metric == 'tow' else 'ToW-MIA'}) | " + " | ".join(row) + " |")
    return "\n".join(lines)


def stage_report(args: argparse.Namespace) -> str:
    parts = []
    scores_file = RESULTS / f"rum_{args.tag}_scores.json"
    if scores_file.exists():
        scores = json.loads(scores_file.read_text())
        parts.append("| Proxy | Spearman ρ vs exact | seconds |\n|---|---|---|")
        for name, p in sorted(scores["proxies"].items(), key=lambda kv: -(kv[1]["rho"] if kv[1]["rho"] == kv[1]["rho"] else -9)):
            parts[-1] += f"\n| {name} | {p['rho']:+.3f} | {p['seconds']:.2f} |"
    for path in sorted(RESULTS.glob(f"rum_{args.tag}_mix_*.json")):
        parts.append(markdown_mix(json.loads(path.read_text())))
    difficulty = RESULTS / f"rum_{args.tag}_difficulty.json"
    if difficulty.exists():
        parts.append(markdown_difficulty(json.loads(difficulty.read_text())))
    text = "\n\n".join(parts) + "\n"
    (RESULTS / f"rum_{args.tag}.md").write_text(text)
    print(text)
    return text


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.stage in ("scores", "all"):
        best = stage_scores(args)["best_two"]
    if args.stage == "mix":
        stage_mix(args)
    if args.stage == "all":
        for source in ("exact", *best):
            stage_mix(replace_source(args, source))
    if args.stage in ("difficulty", "all"):
        stage_difficulty(args)
    if args.stage in ("report", "all"):
        stage_report(args)


def replace_source(args: argparse.Namespace, source: str) -> argparse.Namespace:
    copy = argparse.Namespace(**vars(args))
    copy.source = source
    return copy


if __name__ == "__main__":
    main(sys.argv[1:])
