"""Model-pool throughput (models/minute) with 1 vs 2 local workers and with Ray on 2 CPUs.

Each configuration builds a fresh pool of ``--pool-size`` models in its own temporary folder,
so nothing is reused; wall time runs from the call to the last member saved and so includes
starting the worker processes or the Ray cluster. ``member_seconds`` is the mean of the
members' own wall times (training + logits), which grows when workers compete for CPUs.

    python benchmarks/pool_scaling.py --dataset digits --pool-size 8 --epochs 10
"""

from __future__ import annotations

import tempfile
import time

import _common  # (also puts src/ on the path)
import numpy as np

from memunlearn import load_dataset
from memunlearn.data import subsample
from memunlearn.evaluation import mean_interval
from memunlearn.memorization.executors import available_cpus
from memunlearn.memorization.pool import build_pool, pool_spec_for
from memunlearn.training import recipe_for


def render(path: str) -> str:
    """The markdown table of one result file."""
    import json

    payload = json.loads(open(path).read())
    setting = payload["setting"]
    lines = [
        f"**{setting['dataset']}**: {setting['n_train']} train, {setting['model']} width {setting['width']}, "
        f"{setting['epochs']} epochs, K = {setting['pool_size']} per configuration, {setting['cpus']} CPUs, "
        f"{setting['repeats']} repeat(s).",
        "",
        f"Command: `{payload['command']}`",
        "",
        "| executor | workers | wall (s) | models / min | speed-up | mean member time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for row in payload["configs"].values():
        wall, rate = row["wall_seconds"], row["models_per_minute"]
        half = f" ± {rate['half_width']:.2f}" if np.isfinite(rate["half_width"]) else ""
        lines.append(f"| {row['executor']} | {row['workers']} | {wall['mean']:.1f} | {rate['mean']:.2f}{half} | "
                     f"{row['speedup_vs_first']:.2f}× | {row['member_seconds']['mean']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = _common.pool_benchmark_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--pool-size", type=int, default=8)
    parser.add_argument("--configs", default="local:1,local:2,ray:2", help="EXECUTOR:WORKERS list")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--name", help="result name (default pool_scaling_<dataset>)")
    parser.add_argument("--note", default="")
    args = parser.parse_args()
    if args.render:
        print("\n\n".join(render(path) for path in args.render))
        return

    data = load_dataset(args.dataset, args.data_dir)
    if args.train_size:
        data = subsample(data, n_train=args.train_size, seed=0)
    spec = pool_spec_for(data, args.model, args.width, recipe_for(args.dataset).train, epochs=args.epochs)
    print(f"{args.dataset}: {len(data.train)} train, {spec.model} width {spec.width}, {spec.train.epochs} epochs, "
          f"K={args.pool_size} per configuration, {available_cpus()} CPUs")
    rows = {}
    for config in args.configs.split(","):
        executor, _, workers = config.partition(":")
        walls, member_means = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as folder:
                start = time.perf_counter()
                pool = build_pool(data, spec, args.pool_size, pool_dir=folder, executor=executor,
                                  workers=int(workers or 1), device="cpu")
                walls.append(time.perf_counter() - start)
                member_means.append(float(np.mean([m["wall_time"] for m in pool.members])))
        rate = [60 * args.pool_size / w for w in walls]
        rows[config] = {"executor": executor, "workers": int(workers or 1), "wall_seconds": mean_interval(walls),
                        "models_per_minute": mean_interval(rate), "member_seconds": mean_interval(member_means)}
        print(f"{config:10s} {np.mean(walls):7.1f}s wall  {np.mean(rate):6.2f} models/min  "
              f"member {np.mean(member_means):.2f}s")
    base = rows[next(iter(rows))]["models_per_minute"]["mean"]
    for row in rows.values():
        row["speedup_vs_first"] = row["models_per_minute"]["mean"] / base
    _common.save(args.name or f"pool_scaling_{args.dataset}", {
        "setting": {"dataset": args.dataset, "n_train": len(data.train), "model": spec.model, "width": spec.width,
                    "epochs": spec.train.epochs, "pool_size": args.pool_size, "repeats": args.repeats,
                    "cpus": available_cpus(), "note": args.note},
        "configs": rows,
    })


if __name__ == "__main__":
    main()
