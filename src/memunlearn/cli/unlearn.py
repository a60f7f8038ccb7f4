"""``memunlearn unlearn``: one method on a saved model (optionally with a saved mask); writes the
unlearned model and its evaluation."""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from ..io import check_output_dir
from .common import METHODS_HELP, default_out_dir, parse_assignments
from .localize import add_checkpoint_options, load_checkpoint_and_data, split_examples


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "unlearn", help="unlearn a forget set from a saved model with one method; write the model and its evaluation",
        description="Run one unlearning method on a saved model, optionally restricted to a saved mask, and write "
        "model.safetensors, evaluation.json and the forget indices. Example: memunlearn unlearn --checkpoint "
        "model.safetensors --method del --mask del-mask.safetensors --forget iid:0.1 --set del.epochs=3 --out runs/del",
    )
    add_checkpoint_options(parser)
    parser.add_argument("--method", required=True, help=f"a registered method: {METHODS_HELP}, ...")
    parser.add_argument("--mask", help="mask file from `memunlearn localize`: only its entries may change")
    parser.add_argument("--set", action="append", metavar="METHOD.PARAM=VALUE", help="a method hyperparameter (repeatable)")
    parser.add_argument("--oracle", help="a model retrained without the forget set (same forget rule and seed): "
                        "adds the gaps to it and ToW / ToW-MIA")
    parser.add_argument("--out", help="output directory (default runs/<timestamp>)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoints import load_model, save_checkpoint
    from ..evaluation import compare_to_oracle, evaluate
    from ..io import write_json
    from ..localization import Mask
    from ..methods import check_hparams, method_defaults, unlearn

    # Everything that can fail on bad input is checked before anything is computed or written.
    assignments = parse_assignments(args.set)
    others = sorted(set(assignments) - {args.method})
    if others:
        raise ConfigError(f"--set names method(s) {others}, but --method is {args.method!r}")
    hparams = check_hparams(args.method, assignments.get(args.method, {}))  # unknown method, names, values
    from ..experiment.run import rule_files
    from ..limits import check_hparam_sizes

    check_hparam_sizes(args.method, hparams)
    inputs = [args.checkpoint, args.mask, args.oracle, *rule_files(args.forget)]
    out = check_output_dir(args.out if args.out else default_out_dir(), "--out",
                           files=("model.safetensors", "evaluation.json", "forget_indices.txt", "forget_indices.json"),
                           inputs=inputs)
    model, metadata, setting, forget_set = load_checkpoint_and_data(args)
    mask = Mask.load(args.mask).check_fits(model) if args.mask else None
    if mask is not None and mask.selected == 0:
        raise ConfigError(f"the mask {args.mask} selects no parameter entry: nothing could change; "
                          "use a larger --budget in `memunlearn localize`")
    oracle = load_model(args.oracle)[0] if args.oracle else None
    if oracle is not None and [tuple(p.shape) for p in oracle.parameters()] != [tuple(p.shape) for p in model.parameters()]:
        raise ConfigError(f"the oracle {args.oracle} is a different architecture from {args.checkpoint}")
    forget, retain = split_examples(setting, forget_set)
    test = setting.dataset.test

    result = unlearn(args.method, model, forget, retain, mask=mask, **{"seed": args.seed, "device": args.device, **hparams})
    metrics = evaluate(result.model, forget, retain, test, setting.device, args.seed)
    evaluation = {
        "method": args.method, "hparams": {**method_defaults(args.method), **result.hparams, "seed": args.seed},
        "checkpoint": str(args.checkpoint), "mask": args.mask, "mask_info": dict(mask.info) if mask else None,
        "forget_set": forget_set.to_dict(), "dataset": setting.dataset.name, "metrics": metrics,
        "cost": result.cost.to_dict(),
        "original_metrics": evaluate(model, forget, retain, test, setting.device, args.seed),
    }
    if oracle is not None:
        oracle_metrics = evaluate(oracle, forget, retain, test, setting.device, args.seed)
        evaluation.update(oracle=str(args.oracle), oracle_metrics=oracle_metrics,
                          vs_oracle=compare_to_oracle(metrics, oracle_metrics))

    save_checkpoint(out / "model.safetensors", result.model, metadata={
        **metadata, "unlearned_with": args.method, "unlearn_hparams": evaluation["hparams"], "forget": forget_set.rule,
        "forget_seed": args.seed, "mask": args.mask,
    })
    forget_set.save(out)
    write_json(out / "evaluation.json", evaluation)
    print_evaluation(evaluation)
    print(f"unlearned model and evaluation written to {out}/")
    return 0


def print_evaluation(evaluation: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{evaluation['method']} · forget {evaluation['forget_set']['rule']} (accuracies in %)")
    for column in ("model", "forget acc", "retain acc", "test acc", "MIA-eff.", "ToW", "ToW-MIA"):
        table.add_column(column, justify="left" if column == "model" else "right")
    rows = [("original", evaluation["original_metrics"], None), ("unlearned", evaluation["metrics"], evaluation.get("vs_oracle"))]
    if "oracle_metrics" in evaluation:
        rows.append(("oracle", evaluation["oracle_metrics"], None))
    for name, m, vs in rows:
        table.add_row(name, *(f"{100 * m[k]:.1f}" for k in ("acc_forget", "acc_retain", "acc_test", "mia_efficacy")),
                      f"{vs['tow']:.3f}" if vs else "—", f"{vs['tow_mia']:.3f}" if vs else "—")
    cost = evaluation["cost"]
    Console(file=sys.stdout).print(table)
    print(f"cost: {cost['wall_time']:.2f}s, {cost['steps']} steps, {cost['examples']} examples, "
          f"{100 * cost['params_changed_fraction']:.1f}% of parameter entries changed")
