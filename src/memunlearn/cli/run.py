"""``memunlearn run``: the main job (train or reuse, forget, oracle, every method, report)."""

from __future__ import annotations

import argparse

from .common import (FORGET_HELP, METHODS_HELP, PROXIES_HELP, add_data_options, default_out_dir, non_negative_int,
                     parse_assignments, parse_list, positive_int, stage_logger)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="train (or reuse) a model, unlearn a forget set with several methods, score them against the oracle",
        description="Train or reuse the original model and the oracle, run every method, print a table and "
        "write results.json. Example: memunlearn run --dataset fashion-mnist --forget classes:0,6 --seeds 3",
    )
    add_data_options(parser)
    parser.add_argument("--forget", default="iid:0.1", help=FORGET_HELP)
    parser.add_argument("--methods",
                        help=f"comma-separated methods (default: every registered method: {METHODS_HELP}, ...); "
                        "RUM pipelines as "
                        "VARIANT:METHOD[:METHOD...], e.g. rum:none:finetune:salun, rum-f:finetune, shuffle:finetune, "
                        "vanilla:finetune")
    parser.add_argument("--rum-score", default="confidence",
                        help="score whose tertiles split the forget set for rum/rum-f entries: exact, a proxy "
                        f"({PROXIES_HELP}; default confidence) or FILE.npy (a memorization:mix forget set uses its "
                        "own parts)")
    parser.add_argument("--set", action="append", metavar="METHOD.PARAM=VALUE", help="a method hyperparameter (repeatable)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="first seed (default 0)")
    parser.add_argument("--seeds", type=positive_int, default=1,
                        help="number of seeds, each with its own oracle (default 1)")
    parser.add_argument("--out", help="output directory (default runs/<timestamp>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..experiment import DEFAULT_METHODS, RunConfig, run_experiment
    from ..report import print_results

    config = RunConfig(
        dataset=args.dataset, data_dir=args.data_dir, model=args.model, width=args.width, forget=args.forget,
        methods=parse_list(args.methods) if args.methods is not None else DEFAULT_METHODS, seed=args.seed,
        seeds=args.seeds, epochs=args.epochs, train_subset=args.train_subset, hparams=parse_assignments(args.set),
        device=args.device, fast=args.fast, cache_dir=args.cache_dir, rum_score=args.rum_score,
    )
    out_dir = args.out or default_out_dir()
    results = run_experiment(config, out_dir, log=stage_logger())
    print_results(results)
    print(f"results written to {out_dir}/results.json")
    return 0
