"""``memunlearn localize``: compute a mask for a saved model and a forget set, print its sparsity."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import ConfigError
from ..io import check_output_file
from .common import FORGET_HELP, STRATEGIES_HELP, add_data_options, bounded_int, fraction_float, seed_int

# The localization strategies' top-h rules (checked against the library's list by the tests).
TOPK_RULES = ("auto", "out-channels", "row", "mean")


def add_checkpoint_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``localize`` and ``unlearn``: the model, its data, the forget set."""
    add_data_options(parser)
    # None = "read it from the checkpoint", so a model trained with `memunlearn train` needs no repeat.
    parser.set_defaults(dataset=None)
    parser.add_argument("--checkpoint", required=True, help="model file written by `memunlearn train` (.safetensors)")
    parser.add_argument("--forget", default="iid:0.1", help=FORGET_HELP)
    parser.add_argument("--seed", type=seed_int, default=0,
                        help="seed of the forget set and of the method (default 0)")


def load_checkpoint_and_data(args: argparse.Namespace):
    """The saved model, its dataset (as trained on) and the forget set; nothing is written.

    The dataset, data directory and training subset default to those recorded in the checkpoint.

    Raises:
        CheckpointError: unreadable, corrupt or damaged (checksum mismatch) checkpoint.
        ConfigError: a dataset that is not the one the model was trained on.
    """
    from ..checkpoints import load_model
    from ..experiment import RunConfig, resolve_setting
    from ..forget import make_forget_set

    from ..io import check_cache_dir

    check_cache_dir(getattr(args, "cache_dir", None))
    model, _, metadata = load_model(args.checkpoint)
    recorded_dataset = metadata.get("dataset")
    if args.dataset and recorded_dataset and args.dataset != recorded_dataset:
        raise ConfigError(f"{args.checkpoint} is a model of {recorded_dataset}, not of --dataset {args.dataset}; "
                          "pass the dataset it was trained on")
    dataset = args.dataset or recorded_dataset or "digits"
    data_dir = args.data_dir if args.data_dir is not None else metadata.get("data_dir")
    subset = args.train_subset if args.train_subset is not None else metadata.get("train_subset")
    setting = resolve_setting(RunConfig(dataset=dataset, data_dir=data_dir, train_subset=subset, device=args.device,
                                        model=metadata.get("model"), width=metadata.get("width")))
    recorded = metadata.get("data_fingerprint")
    if recorded and recorded != setting.dataset.fingerprint:
        raise ConfigError(
            f"{args.checkpoint} was trained on other data (fingerprint {recorded}, this {dataset} data is "
            f"{setting.dataset.fingerprint}); pass the --dataset/--data-dir/--train-subset it was trained with"
        )
    channels, _, size = setting.dataset.input_shape
    expected = (metadata.get("in_channels"), metadata.get("num_classes"), metadata.get("image_size"))
    if expected != (channels, setting.dataset.num_classes, size):
        raise ConfigError(
            f"{args.checkpoint} expects {expected[0]}-channel {expected[2]}px images and {expected[1]} classes, "
            f"but {dataset} has {channels}-channel {size}px images and {setting.dataset.num_classes} classes"
        )
    forget_set = make_forget_set(args.forget, setting.dataset, args.seed)
    return model, metadata, setting, forget_set


def split_examples(setting, forget_set):
    train = setting.dataset.train
    return train.subset(forget_set.indices), train.subset(forget_set.retain_indices(len(train)))


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "localize", help="compute a localization mask (which parameters to unlearn) and save it",
        description="Score the parameters of a saved model on a forget set, keep the top fraction, write the mask "
        "(safetensors) and print its per-layer sparsity. Example: memunlearn localize --checkpoint model.safetensors "
        "--forget iid:0.1 --strategy del --budget 0.3 --out del-mask.safetensors",
    )
    add_checkpoint_options(parser)
    parser.add_argument("--strategy", default="del", help=f"one of {STRATEGIES_HELP} (default del)")
    parser.add_argument("--budget", type=fraction_float,
                        help="fraction of ALL parameter entries to select (default: salun 0.5, the others 0.3)")
    parser.add_argument("--topk-rule", default="auto", choices=TOPK_RULES,
                        help="channel scores: mean of the top h=⌊f·C_out⌋ (out-channels, the official DEL code "
                        "for CNNs) or h=⌊f·row length⌋ (row) entries of each output row, or the plain row mean "
                        "(mean, the official ViT rule); auto (default) = mean for a transformer, else out-channels")
    parser.add_argument("--topk-fraction", type=fraction_float, default=0.1, help="f above (default 0.1)")
    parser.add_argument("--reference", help="random-channel: mask file whose per-layer counts to copy (default: the del mask)")
    parser.add_argument("--batch-size", type=bounded_int("batch_size"), default=128,
                        help="batch size of the gradient pass (default 128)")
    parser.add_argument("--out", required=True, help="mask file to write (.safetensors)")
    parser.set_defaults(func=run)


def sparsity_table(mask, title: str):
    """Rich table: one row per parameter tensor (selected, total, density) and a total row."""
    from rich.table import Table

    table = Table(title=title)
    for column in ("parameter", "shape", "selected", "total", "selected %"):
        table.add_column(column, justify="left" if column in ("parameter", "shape") else "right")
    for row in mask.per_layer():
        table.add_row(row["name"], "×".join(map(str, row["shape"])) or "scalar", f"{row['selected']:,}",
                      f"{row['total']:,}", f"{100 * row['density']:.1f}")
    table.add_row("[bold]all[/bold]", "", f"{mask.selected:,}", f"{mask.total:,}", f"{100 * mask.density:.1f}")
    return table


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..errors import unknown_name
    from ..localization import DEFAULT_BUDGETS, Mask, available_strategies, localize

    if args.strategy not in available_strategies():
        raise unknown_name("localization strategy", args.strategy, available_strategies())
    if args.budget is not None and not 0 < args.budget <= 1:
        raise ConfigError(f"--budget must be in (0, 1], got {args.budget}")
    if not 0 < args.topk_fraction <= 1:
        raise ConfigError(f"--topk-fraction must be in (0, 1], got {args.topk_fraction}")
    from ..experiment.run import rule_files

    check_output_file(args.out, "--out", inputs=[args.checkpoint, args.reference, *rule_files(args.forget)])
    model, _, setting, forget_set = load_checkpoint_and_data(args)
    total = sum(p.numel() for p in model.parameters())
    budget = args.budget if args.budget is not None else DEFAULT_BUDGETS.get(args.strategy, 0.3)
    if args.strategy != "random-channel" and int(budget * total) < 1:
        raise ConfigError(f"--budget {budget:g} of the model's {total} parameter entries selects none; "
                          f"give at least {1 / total:.3g}")
    forget, _ = split_examples(setting, forget_set)
    options: dict[str, Any] = {}
    if args.reference:
        options["reference"] = Mask.load(args.reference).check_fits(model)
        if options["reference"].selected == 0:
            raise ConfigError(f"--reference {args.reference} selects no parameter entry; a random-channel mask copying "
                              "its counts would select nothing")
    if args.strategy == "del-agnostic":
        options["data"] = setting.dataset.train
    mask = localize(model, forget, args.strategy, args.budget, batch_size=args.batch_size, device=args.device,
                    seed=args.seed, topk_rule=args.topk_rule, topk_fraction=args.topk_fraction, **options)
    if mask.selected == 0:
        raise ConfigError(f"the {args.strategy} mask with budget {budget:g} selects no parameter entry; nothing was "
                          "written: use a larger --budget")
    mask.info.update(checkpoint=str(args.checkpoint), forget=forget_set.rule, forget_seed=args.seed)
    mask.check_fits(model).save(args.out)
    Console(file=sys.stdout).print(sparsity_table(
        mask, f"{args.strategy} mask, budget {budget} · forget {forget_set.rule} ({len(forget)} examples) · "
        f"{mask.info['wall_time']:.2f}s"))
    print(f"mask written to {args.out}")
    return 0
