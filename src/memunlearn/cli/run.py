"""``memunlearn run``: the main job (train or reuse, forget, oracle, every method, report)."""

from __future__ import annotations

import argparse

from .common import (FORGET_HELP, METHODS_HELP, PROXIES_HELP, add_data_options, data_options, default_out_dir,
                     merge_assignments, bounded_int, seed_int, parse_assignments, parse_list, stage_logger)


# The main job: `memunlearn run` without a spec (`make run`). The forget set and the seeds are chosen
# so that on the embedded digits the original model is clearly distinguishable from the oracle and
# the methods differ (the README's "make run" paragraph gives the measurements).
MAIN_FORGET = "memorization:high:confidence:0.1"
MAIN_SEEDS = 3


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run an experiment: original model, forget set, oracle, every method, scored against the oracle",
        description="Train or reuse the original model, the oracle and an independent retrain (the noise floor), run "
        "every method (retrain only when named), print a table and what to conclude, write "
        "results.json and report.html. An experiment is a spec file (TOML) or the options below; a results.json "
        "runs again as it was. Examples: memunlearn run --forget full-class:3; memunlearn run --dataset fashion-mnist "
        "--train-subset 10000 --forget classes:0,6; "
        "memunlearn run benchmarks/specs/quick-digits.toml",
    )
    parser.add_argument("spec", nargs="?", metavar="SPEC",
                        help="a spec file (TOML) or a results.json to run again; options given below override it")
    add_data_options(parser, defaults=False)
    parser.add_argument("--forget", action="append", metavar="RULE",
                        help=f"a forget rule, repeatable (default {MAIN_FORGET}: the 10%% least confidently learned, most "
                        f"memorized examples): {FORGET_HELP.replace(' (default iid:0.1)', '')}")
    parser.add_argument("--methods",
                        help=f"comma-separated methods (default: all but retrain, whose role the independent retrain plays: "
                        f"{METHODS_HELP}); RUM pipelines as "
                        "VARIANT:METHOD[:METHOD...], e.g. rum:none:finetune:salun, rum-f:finetune, shuffle:finetune, "
                        "vanilla:finetune")
    parser.add_argument("--rum-score",
                        help="score whose tertiles split the forget set for rum/rum-f entries: exact, a proxy "
                        f"({PROXIES_HELP}; default confidence) or FILE.npy (a memorization:mix forget set uses its "
                        "own parts)")
    parser.add_argument("--set", action="append", metavar="METHOD.PARAM=VALUE",
                        help="a method hyperparameter (repeatable); a list such as [0.01,0.05] sweeps it; a "
                        "pipeline step's own: PIPELINE.stepK.PARAM=VALUE, e.g. rum-f:neggrad+.step3.lr=0.001")
    parser.add_argument("--hparams", metavar="FILE", help="tuned hyperparameters (from `memunlearn tune`) to use")
    tuned = parser.add_mutually_exclusive_group()
    tuned.add_argument("--tuned", action="store_true",
                       help="use the tuned hyperparameters the package ships for this setting (digits, Fashion-MNIST), "
                       "on top of recipe 'ours' they were tuned with unless --set METHOD.recipe=... names another")
    tuned.add_argument("--no-tuned", action="store_true",
                       help="each method's official recipe, not the shipped tuned values (the default; kept for "
                       "older command lines)")
    parser.add_argument("--metrics", help="extra metrics, comma-separated: ulira, neurips2023, rmia, lira-offline, rmia-u (a backdoor forget set always measures its attack success rate)")
    parser.add_argument("--no-noise-floor", action="store_true",
                        help="skip the independent retrain (another seed) that every table compares with")
    parser.add_argument("--seed", type=seed_int, help="first seed (default 0)")
    parser.add_argument("--seeds", type=bounded_int("seeds"), help=f"number of seeds, each with its own oracle (default {MAIN_SEEDS}: the fewest that give an interval)")
    parser.add_argument("--workers", type=bounded_int("workers"), help="cells run in this many local processes (default 1)")
    parser.add_argument("--requests", type=bounded_int("requests"), metavar="K",
                        help="deletion requests over time: K successive forget sets, each drawn by the forget rule "
                        "from what is still retained and unlearned from the previous request's model, each scored "
                        "against an oracle retrained without every request so far")
    parser.add_argument("--out", help="output directory (default runs/<timestamp>)")
    parser.set_defaults(func=run)


def spec_from_options(base, args: argparse.Namespace, forget: tuple[str, ...] | None = None):
    """``base`` (a spec, or the defaults) with every option the user gave on the command line applied."""
    from dataclasses import replace

    from ..errors import ConfigError
    from ..experiment import check_spec

    data = replace(base.data, **{k: v for k, v in (("dataset", args.dataset), ("data_dir", args.data_dir),
                                                    ("train_subset", args.train_subset)) if v is not None})
    if args.dataset is not None and args.dataset != base.data.dataset and args.data_dir is None:
        data = replace(data, data_dir=None)
    if data_options(args):
        data = replace(data, options={**data.options, **data_options(args)})
    model = replace(base.model, **{k: v for k, v in (("name", args.model), ("width", args.width),
                                                      ("epochs", args.epochs)) if v is not None})
    if args.fast:
        model = replace(model, fast=True)
    spec = replace(base, data=data, model=model)
    if forget:
        spec = replace(spec, forget=forget)
    if getattr(args, "methods", None) is not None:
        methods = parse_list(args.methods)
        duplicates = sorted({m for m in methods if methods.count(m) > 1})
        if duplicates:
            raise ConfigError(f"--methods lists {', '.join(map(repr, duplicates))} more than once")
        spec = replace(spec, methods=methods)
    if getattr(args, "set", None):
        spec = replace(spec, hparams=merge_assignments(spec.hparams, parse_assignments(args.set)))
    for key, value in (("device", args.device), ("cache_dir", args.cache_dir),
                       ("rum_score", getattr(args, "rum_score", None)), ("hparams_file", getattr(args, "hparams", None))):
        if value is not None:
            spec = replace(spec, **{key: value})
    if getattr(args, "tuned", False):
        spec = replace(spec, use_tuned=True)
    if getattr(args, "no_tuned", False):
        spec = replace(spec, use_tuned=False)
    if getattr(args, "requests", None) is not None:
        spec = replace(spec, requests=replace(spec.requests, count=args.requests))
    check_spec(spec)
    return spec


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys
    from dataclasses import replace

    from ..errors import ConfigError
    from ..experiment import ExperimentSpec, load_spec, run_experiment
    from ..report import print_results, write_report

    base = load_spec(args.spec) if args.spec else ExperimentSpec(methods=_default_methods(), forget=(MAIN_FORGET,),
                                                                 seeds=tuple(range(MAIN_SEEDS)))
    spec = spec_from_options(base, args, forget=tuple(args.forget) if args.forget else None)
    if args.seed is not None or args.seeds is not None:
        first = args.seed if args.seed is not None else spec.seeds[0]
        spec = replace(spec, seeds=tuple(range(first, first + (args.seeds or len(spec.seeds)))))
    if args.metrics:
        spec = replace(spec, evaluation=replace(spec.evaluation, metrics=parse_list(args.metrics)))
    if args.no_noise_floor:
        spec = replace(spec, evaluation=replace(spec.evaluation, noise_floor=False))
    if args.workers:
        spec = replace(spec, executor=replace(spec.executor, workers=args.workers))
    if args.spec and args.out and not args.spec.endswith(".toml"):
        from pathlib import Path

        if Path(args.out).resolve() == Path(args.spec).resolve().parent:
            raise ConfigError("--out is the directory of the results.json being run again; give another one, "
                              "so the earlier results are not overwritten")
    out_dir = args.out or default_out_dir()
    check_run_outputs(spec, out_dir, [args.spec])
    command = "memunlearn " + shlex.join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith("memunlearn") else None
    results = run_experiment(spec, out_dir, log=stage_logger(), command=command)
    print_results(results)
    if spec.requests.count is not None:
        from ..experiment.requests import drift_lines

        print("\n".join(["deletion requests (request 1 > 2 > ...):", *drift_lines(results)]))
    report = write_report(results, f"{out_dir}/report.html")
    print(f"results written to {out_dir}/results.json, report to {report}")
    return 0


def check_run_outputs(spec, out_dir, inputs=()) -> None:
    """Before any work: every file the run writes in ``out_dir`` (results.json, report.html, the
    forget indices) can be written there and is none of the files it reads."""
    from ..experiment.run import output_names, spec_inputs
    from ..io import check_cache_dir, check_output_dir

    check_output_dir(out_dir, "--out", files=[*output_names(spec), "report.html"],
                     inputs=[*spec_inputs(spec), *(p for p in inputs if p)])
    check_cache_dir(spec.cache_dir)


def _default_methods() -> tuple[str, ...]:
    from ..experiment import default_methods

    return default_methods()
