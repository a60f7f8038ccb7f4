"""``memunlearn tune``: search each method's hyperparameters; write an hparams file `run` loads."""

from __future__ import annotations

import argparse
import shlex
import sys

from .common import (FORGET_HELP, METHODS_HELP, add_data_options, seed_int, positive_float,
                     bounded_int, stage_logger)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "tune",
        help="search each method's hyperparameters (Optuna) on a tuning seed and a validation split; write an hparams file",
        description="For each forget rule and method, search the method's declared space on a tuning seed and a "
        "validation split held out of the training data (never the test set), maximising ToW x ToW-MIA against "
        "that seed's oracle under a cost cap. Writes a TOML file that `memunlearn run --hparams FILE` loads, and "
        "FILE.trials.json with every trial. Example: memunlearn tune --dataset fashion-mnist --train-subset 10000 "
        "--forget iid:0.1 --forget classes:0,6 --out fmnist-hparams.toml",
    )
    parser.add_argument("spec", nargs="?", help="a spec file (TOML) or results.json; options below override it")
    add_data_options(parser, defaults=False)
    parser.add_argument("--forget", action="append", metavar="RULE",
                        help=f"a forget rule (repeatable; default iid:0.1): {FORGET_HELP}")
    parser.add_argument("--methods", help=f"comma-separated methods to tune (default: all but retrain: {METHODS_HELP})")
    parser.add_argument("--set", action="append", metavar="METHOD.PARAM=VALUE",
                        help="hold a hyperparameter fixed in every trial (repeatable), e.g. del.strategy=param-grad")
    parser.add_argument("--trials", type=bounded_int("trials"), help="trials per method and forget rule (default 12)")
    parser.add_argument("--cost-cap", type=positive_float,
                        help="largest cost, as a fraction of the oracle's retrain (examples processed; default 0.2)")
    parser.add_argument("--sampler", choices=("tpe", "grid", "random"), help="Optuna sampler (default tpe)")
    parser.add_argument("--tuning-seed", type=seed_int, help="the seed tuning runs on (default 1000)")
    parser.add_argument("--validation", type=bounded_int("examples"),
                        help="examples held out of the training set to score trials on (default 500)")
    parser.add_argument("--out", required=True, help="the hparams file to write (TOML)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..experiment import ExperimentSpec, default_methods, load_spec
    from ..tuning import tune
    from .run import spec_from_options

    base = load_spec(args.spec) if args.spec else ExperimentSpec(methods=default_methods())
    spec = spec_from_options(base, args, forget=tuple(args.forget) if args.forget else None)
    if not args.spec and args.methods is None:
        spec = replace(spec, methods=tuple(m for m in spec.methods if m != "retrain"))
    tuning = spec.tuning
    for key in ("trials", "cost_cap", "sampler", "validation"):
        if getattr(args, key) is not None:
            tuning = replace(tuning, **{key: getattr(args, key)})
    if args.tuning_seed is not None:
        tuning = replace(tuning, seed=args.tuning_seed)
    spec = replace(spec, tuning=tuning)
    from ..experiment import check_spec
    from ..experiment.run import spec_inputs
    from ..io import check_cache_dir, check_output_file

    check_spec(spec)
    inputs = [*spec_inputs(spec), args.spec]
    check_output_file(args.out, "--out", inputs=inputs)
    check_output_file(f"{args.out}.trials.json", "--out", inputs=inputs)
    check_cache_dir(spec.cache_dir)
    result = tune(spec, args.out, log=stage_logger(), command="memunlearn " + shlex.join(sys.argv[1:]))
    for rule, methods in result.best.items():
        for method, hparams in methods.items():
            cost = result.cost[rule][method]
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in hparams.items())
            print(f"{rule:>16}  {method:<13} {shown or '(defaults: no trial within the cost cap)'}  "
                  f"[{cost['trials']} trials, {cost['wall_time']:.0f}s, ToW×ToW-MIA {cost['best_objective']:.3f}]")
    print(f"hyperparameters written to {args.out} (every trial in {args.out}.trials.json)")
    return 0
