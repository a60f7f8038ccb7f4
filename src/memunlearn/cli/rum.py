"""``memunlearn rum``: refine a forget set by memorization and unlearn it partition by partition.

A thin wrapper over :func:`memunlearn.experiment.run_experiment`: the pipeline becomes one
``--methods`` entry (``rum:none:finetune:salun``), optionally with baseline entries beside it.
"""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from .common import (FORGET_HELP, PROXIES_HELP, add_data_options, data_options, default_out_dir, seed_int,
                     bounded_int, parse_assignments, parse_list, stage_logger)

# RUM's variants and default score, written out so the parser imports nothing heavy (the tests
# check them against memunlearn.rum).
VARIANTS = ("vanilla", "shuffle", "rum-f", "rum")
DEFAULT_SCORE = "confidence"


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "rum",
        help="RUM: split the forget set by memorization, unlearn each part with its own method, low → high",
        description="Refine the forget set into low / mid / high memorization partitions (the parts of a "
        "memorization:mix set, else tertiles of --score) and run the pipeline sequentially, each step from the "
        "previous step's model, with retain set D minus the partitions processed so far. Scored against the "
        "oracle like `memunlearn run`. Example: memunlearn rum --forget memorization:mix --score confidence "
        "--pipeline none,finetune,salun --baselines",
    )
    add_data_options(parser)
    parser.add_argument("--forget", default="iid:0.1",
                        help=f"{FORGET_HELP} (memorization:mix[:SOURCE] carries its own partitions)")
    parser.add_argument("--score", default=DEFAULT_SCORE,
                        help=f"score whose tertiles split the forget set: exact, a proxy ({PROXIES_HELP}; default "
                        "confidence) or FILE.npy; ignored when the forget set carries partitions (memorization:mix)")
    parser.add_argument("--pipeline", required=True,
                        help="comma-separated methods low → high for --variant rum (none = leave that part alone), "
                        "e.g. none,finetune,salun; one method for the other variants")
    parser.add_argument("--variant", default="rum", help=f"one of {', '.join(VARIANTS)} (default rum)")
    parser.add_argument("--baselines", action="store_true",
                        help="also run vanilla, shuffle and rum-f with each method of the pipeline")
    parser.add_argument("--set", action="append", metavar="METHOD.PARAM=VALUE",
                        help="a method hyperparameter, used by every step of that method (repeatable); one step's "
                        "own: PIPELINE.stepK.PARAM=VALUE, e.g. rum:none:finetune:salun.step3.epochs=3")
    parser.add_argument("--seed", type=seed_int, default=0, help="first seed (default 0)")
    parser.add_argument("--seeds", type=bounded_int("seeds"), default=1,
                        help="number of seeds, each with its own oracle (default 1)")
    parser.add_argument("--out", help="output directory (default runs/<timestamp>)")
    parser.set_defaults(func=run)


def pipeline_entries(variant: str, pipeline: tuple[str, ...], baselines: bool) -> tuple[str, ...]:
    """The ``--methods`` entries of a ``memunlearn rum`` call.

    Example:
        >>> pipeline_entries("rum", ("none", "finetune"), baselines=True)
        ('rum:none:finetune', 'vanilla:finetune', 'shuffle:finetune', 'rum-f:finetune')
    """
    from ..rum import entry_name, parse_entry

    bad = [step for step in pipeline if ":" in step]
    if bad:
        raise ConfigError(f"--pipeline takes method names separated by commas, got {bad[0]!r}")
    entries = [entry_name(variant, pipeline)]
    parse_entry(entries[0])  # an unknown variant fails here, before anything trains
    if baselines:
        for method in dict.fromkeys(m for m in pipeline if m != "none"):
            baseline = [entry_name(v, [method]) for v in ("vanilla", "shuffle", "rum-f")]
            entries += [entry for entry in baseline if entry not in entries]
    return tuple(entries)


def run(args: argparse.Namespace) -> int:
    from ..experiment import RunConfig, run_experiment
    from ..report import print_results

    methods = pipeline_entries(args.variant, parse_list(args.pipeline), args.baselines)
    config = RunConfig(data_options=data_options(args), 
        dataset=args.dataset, data_dir=args.data_dir, model=args.model, width=args.width, forget=args.forget,
        methods=methods, seed=args.seed, seeds=args.seeds, epochs=args.epochs, train_subset=args.train_subset,
        hparams=parse_assignments(args.set), device=args.device, fast=args.fast, cache_dir=args.cache_dir,
        rum_score=args.score,
    )
    out_dir = args.out or default_out_dir()
    from .run import check_run_outputs

    check_run_outputs(config.to_spec(), out_dir)
    results = run_experiment(config, out_dir, log=stage_logger())
    print_results(results)
    for row in results["groups"][0]["per_seed"]:
        if "rum" in row:
            info = row["rum"]
            sizes = ", ".join(f"{k} {v}" for k, v in info["partition_sizes"].items())
            print(f"seed {row['seed']}: partitions ({info['source']} of {info['score']}): {sizes}")
    print(f"results written to {out_dir}/results.json")
    return 0
