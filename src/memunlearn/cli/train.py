"""``memunlearn train``: train a model with the dataset's recipe and save it as a checkpoint."""

from __future__ import annotations

import argparse

from ..io import check_cache_dir, check_output_file
from .common import add_data_options, data_options, seed_int


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model with the dataset's recipe and save it (safetensors)",
        description="Train the original model (with its per-example training dynamics) and save it. "
        "Example: memunlearn train --dataset digits --out runs/digits-model.safetensors",
    )
    add_data_options(parser)
    parser.add_argument("--seed", type=seed_int, default=0, help="seed of the initialisation and data order")
    parser.add_argument("--out", required=True, help="checkpoint path (.safetensors)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from ..checkpoints import model_metadata, save_checkpoint
    from ..experiment import RunConfig, resolve_setting
    from ..training import accuracy, train

    check_output_file(args.out, "--out")
    check_cache_dir(args.cache_dir)
    config = RunConfig(data_options=data_options(args), dataset=args.dataset, data_dir=args.data_dir, model=args.model, width=args.width,
                       epochs=args.epochs, train_subset=args.train_subset, device=args.device, fast=args.fast,
                       seed=args.seed)
    setting = resolve_setting(config)
    setting.build(args.seed)  # an unknown model, or one that does not fit the data, fails before training
    train_config = replace(setting.train_config, seed=args.seed)
    result = train(setting.build(args.seed), setting.dataset.train, train_config, setting.device, progress=True,
                   description=f"training {setting.model_name}")
    train_acc = accuracy(result.model, setting.dataset.train, setting.device)
    test_acc = accuracy(result.model, setting.dataset.test, setting.device)
    channels, _, size = setting.dataset.input_shape
    metadata = model_metadata(
        setting.model_name, setting.width, channels, setting.dataset.num_classes, size,
        dataset=setting.dataset.name, data_dir=args.data_dir, train_subset=args.train_subset,
        data_fingerprint=setting.dataset.fingerprint, train=train_config.to_dict(), wall_time=result.wall_time,
        train_accuracy=train_acc, test_accuracy=test_acc,
    )
    extra = result.dynamics.as_tensors() if result.dynamics is not None else {}
    save_checkpoint(args.out, result.model, extra, metadata)
    print(f"trained {setting.model_name} on {setting.dataset.name} in {result.wall_time:.1f}s: "
          f"train acc {100 * train_acc:.1f}%, test acc {100 * test_acc:.1f}% → {args.out}")
    return 0
