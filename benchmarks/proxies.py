"""Memorization proxies against exact Feldman–Zhang scores: Spearman ρ (raw and corrected) and cost.

Builds (or reuses) a pool of K models on random subsets (r = 0.7) of the training set, computes
the exact scores and their split-half reliability, then for each of ``--seeds`` original models
computes every proxy and its Spearman ρ against the exact scores. ρ is reported raw and corrected
for the pool's reliability (ρ / sqrt(Spearman–Brown(split-half ρ))); cost = the proxy's own wall
time as a fraction of the pool's compute time (sum of the members' wall times).

    python benchmarks/proxies.py --dataset digits --pool-size 64
    python benchmarks/proxies.py --dataset fashion-mnist --train-size 10000 --test-size 2000 \\
        --pool-size 64 --model mlp --width 1024 --epochs 30 --workers 2
"""

from __future__ import annotations

import time
from dataclasses import replace

import _common  # (also puts src/ on the path)
import numpy as np
import torch

from memunlearn import build_model, load_dataset
from memunlearn.data import subsample
from memunlearn.evaluation import mean_interval
from memunlearn.memorization import available_proxies, compute_proxy, spearman
from memunlearn.memorization.compare import compare_proxies
from memunlearn.memorization.estimator import feldman_zhang
from memunlearn.memorization.pool import build_pool, pool_spec_for, pool_summary
from memunlearn.training import accuracy, get_device, recipe_for, train


def random_split_reliability(masks: np.ndarray, correct: np.ndarray, splits: int, seed: int) -> list[float]:
    """Split-half ρ over ``splits`` random halves of the pool (the library uses alternating halves)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(splits):
        order = rng.permutation(len(masks))
        a, b = order[: len(order) // 2], order[len(order) // 2 :]
        values.append(spearman(feldman_zhang(masks[a], correct[a]).scores, feldman_zhang(masks[b], correct[b]).scores))
    return values


def _cell(stat: dict, digits: int = 3, scientific: bool = False) -> str:
    mean, half = stat["mean"], stat["half_width"]
    fmt = "{:.2e}" if scientific else f"{{:+.{digits}f}}"
    return fmt.format(mean) + ("" if not np.isfinite(half) else " ± " + ("{:.1e}" if scientific else f"{{:.{digits}f}}").format(half))


def render(path: str) -> str:
    """The markdown table of one result file (mean ± 95% t-interval over the original models' seeds)."""
    import json

    payload = json.loads(open(path).read())
    setting, pool = payload["setting"], payload["pool"]
    lines = [
        f"**{setting['dataset']}**: {setting['n_train']} train / {setting['n_test']} test, {setting['model']} width "
        f"{setting['width']}, {setting['train']['epochs']} epochs, K = {setting['pool_size']}, r = "
        f"{setting['subset_fraction']}; pool compute {pool['train_seconds']:.0f} s; mean member accuracy: subset "
        f"{pool['mean_subset_accuracy']:.3f}, held-out {pool['mean_held_out_accuracy']:.3f}; split-half ρ "
        f"{pool['split_half_reliability']:.3f} (20 random halves: {_cell(pool['random_half_reliability'])}); "
        f"full-pool reliability (Spearman–Brown) {pool['reliability_full_pool']:.3f}; "
        f"{pool['scores']['n_undefined']} undefined scores; "
        f"{100 * payload['per_seed'][0].get('exact_zero_fraction', float('nan')):.1f}% of exact scores exactly 0; original models' train accuracy "
        + ", ".join(f"{o['train_accuracy']:.3f}" for o in payload["original_models"]) + ".",
        "",
        f"Command: `{payload['command']}`",
        "",
        "| proxy | needs | Spearman ρ | ρ corrected | top overlap | seconds | cost / pool |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = sorted(payload["proxies"].items(), key=lambda item: -item[1]["rho"]["mean"])
    for name, row in rows:
        lines.append(f"| {name} | {row['needs']} | {_cell(row['rho'])} | {_cell(row['rho_corrected'])} | "
                     f"{_cell(row['top_overlap'], 2) if 'top_overlap' in row else 'n/a'} | {row['seconds']['mean']:.3f} | {_cell(row['cost_fraction'], scientific=True)} |")
    return "\n".join(lines)


def main() -> None:
    parser = _common.pool_benchmark_parser(__doc__)
    parser.add_argument("--test-size", type=int, help="stratified test subset (default: all)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, help="default: the dataset's recipe")
    parser.add_argument("--lr", type=float, help="default: the dataset's recipe")
    parser.add_argument("--pool-size", type=int, default=64)
    parser.add_argument("--subset-fraction", type=float, default=0.7)
    parser.add_argument("--executor", default="local")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3, help="original models (one per seed) whose proxies are compared")
    parser.add_argument("--proxies", default=",".join(available_proxies()))
    parser.add_argument("--threads", type=int, help="torch threads of this process (default: torch's)")
    parser.add_argument("--cpus", type=int, help="CPUs the pool's local workers share (default: all)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cache-dir")
    parser.add_argument("--name", help="result name (default proxies_<dataset>)")
    parser.add_argument("--note", default="", help="free text stored in the JSON (e.g. why this size)")
    args = parser.parse_args()
    if args.render:
        print("\n\n".join(render(path) for path in args.render))
        return
    if args.threads:
        torch.set_num_threads(args.threads)

    data = load_dataset(args.dataset, args.data_dir)
    if args.train_size or args.test_size:
        data = subsample(data, n_train=args.train_size, n_test=args.test_size, seed=0)
    recipe = recipe_for(args.dataset)
    train_config = replace(recipe.train, batch_size=args.batch_size or recipe.train.batch_size,
                           lr=args.lr or recipe.train.lr)
    spec = pool_spec_for(data, args.model, args.width, train_config, args.subset_fraction, seed=0, epochs=args.epochs)
    device = get_device(args.device)
    print(f"{args.dataset}: {len(data.train)} train / {len(data.test)} test, {spec.model} width {spec.width}, "
          f"{spec.train.epochs} epochs, K={args.pool_size}, r={spec.subset_fraction}")

    start = time.perf_counter()
    done = []

    def on_member(result: dict) -> None:
        done.append(result)
        print(f"  member {result['index']:3d}: {result['wall_time']:.1f}s, subset acc {result['subset_accuracy']:.3f}, "
              f"held-out acc {result['held_out_accuracy']:.3f}", flush=True)

    pool = build_pool(data, spec, args.pool_size, cache_dir=args.cache_dir, executor=args.executor,
                      workers=args.workers, device=str(device), cpus=args.cpus, on_member=on_member)
    pool_wall = time.perf_counter() - start
    labels = data.train.y.numpy()
    estimate = pool.estimate(labels)
    correct = pool.correct(labels)
    split_half = pool.reliability(labels)
    random_halves = random_split_reliability(pool.masks, correct, 20, seed=0)
    summary = pool_summary(pool, labels)
    print(f"pool: {len(pool)} models, {pool.train_seconds:.0f}s compute ({pool_wall:.0f}s wall this run), "
          f"split-half ρ {split_half:.3f} (random halves {np.mean(random_halves):.3f})")

    names = [p.strip() for p in args.proxies.split(",") if p.strip()]
    per_seed = []
    for seed in range(args.seeds):
        config = replace(spec.train, seed=seed)
        model = build_model(spec.model, data.input_shape[0], data.num_classes, width=spec.width,
                            image_size=data.input_shape[-1], seed=seed)
        trained = train(model, data.train, config, device)
        results = {name: compute_proxy(name, data, trained.model, trained.dynamics, device, seed) for name in names}
        comparison = compare_proxies(estimate.scores, split_half, results, pool.train_seconds)
        comparison["original"] = {"seed": seed, "train_seconds": trained.wall_time,
                                  "train_accuracy": accuracy(trained.model, data.train, device),
                                  "test_accuracy": accuracy(trained.model, data.test, device)}
        per_seed.append(comparison)
        print(f"seed {seed}: {100 * comparison['exact_zero_fraction']:.1f}% exact scores are 0; original train acc {comparison['original']['train_accuracy']:.3f}, "
              f"test acc {comparison['original']['test_accuracy']:.3f}")
        for name, row in comparison["proxies"].items():
            print(f"  {name:20s} ρ {row['rho']:+.3f}  corrected {row['rho_corrected']:+.3f}  "
                  f"top overlap {row['top_overlap']:.2f}  "
                  f"{row['seconds']:.3f}s = {row['cost_fraction']:.2e} of the pool")

    table = {
        name: {
            "rho": mean_interval(s["proxies"][name]["rho"] for s in per_seed),
            "rho_corrected": mean_interval(s["proxies"][name]["rho_corrected"] for s in per_seed),
            "top_overlap": mean_interval(s["proxies"][name]["top_overlap"] for s in per_seed),
            "seconds": mean_interval(s["proxies"][name]["seconds"] for s in per_seed),
            "cost_fraction": mean_interval(s["proxies"][name]["cost_fraction"] for s in per_seed),
            "needs": per_seed[0]["proxies"][name]["needs"],
        }
        for name in names
    }
    _common.save(args.name or f"proxies_{args.dataset}", {
        "setting": {
            "dataset": args.dataset, "n_train": len(data.train), "n_test": len(data.test), "model": spec.model,
            "width": spec.width, "train": spec.train.to_dict(), "pool_size": len(pool),
            "subset_fraction": spec.subset_fraction, "executor": args.executor, "workers": args.workers,
            "seeds": args.seeds, "device": str(device), "cpus": args.cpus, "threads": torch.get_num_threads(),
            "note": args.note,
        },
        "pool": {**summary, "wall_time_this_run": pool_wall, "random_half_reliability": mean_interval(random_halves),
                 "reliability_full_pool": per_seed[0]["reliability"] if per_seed else float("nan")},
        "original_models": [s["original"] for s in per_seed],
        "proxies": table,
        "per_seed": per_seed,
    })


if __name__ == "__main__":
    main()
