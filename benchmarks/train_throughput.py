"""Training throughput (examples/s) of memunlearn.train against a bare PyTorch loop.

Same model, data, batch size and optimizer; memunlearn.train also records per-example dynamics
and runs the cosine schedule, so the gap is the cost of that bookkeeping. The CPU fast path
(channels_last, bf16 autocast where the CPU has native bf16) is measured as a third variant.

    python benchmarks/train_throughput.py --dataset fashion-mnist --train-size 10000 --epochs 2
"""

from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (puts src/ on the path)
import torch
from torch import nn

from memunlearn import build_model, load_dataset
from memunlearn.data import subsample
from memunlearn.training import TrainConfig, cpu_has_native_bf16, get_device, recipe_for, train


def bare_loop(model: nn.Module, examples, config: TrainConfig, device) -> float:
    """The plain PyTorch loop: shuffle, forward, CE, backward, SGD step. Returns seconds."""
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    start = time.perf_counter()
    for _ in range(config.epochs):
        for x, y in examples.batches(config.batch_size, shuffle=True, generator=generator):
            loss = nn.functional.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--model")
    parser.add_argument("--width", type=int)
    parser.add_argument("--train-size", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--name", default=None, help="result file name (default train_throughput_<dataset>)")
    args = parser.parse_args()

    data = load_dataset(args.dataset, args.data_dir)
    if args.train_size and args.train_size < len(data.train):
        data = subsample(data, n_train=args.train_size, seed=0)
    recipe = recipe_for(args.dataset)
    model_name, width = args.model or recipe.model, args.width or recipe.width
    device = get_device(args.device)
    config = TrainConfig(**{**recipe.train.to_dict(), "epochs": args.epochs})
    n_examples = len(data.train) * args.epochs

    def fresh():
        return build_model(model_name, data.input_shape[0], data.num_classes, width=width,
                           image_size=data.input_shape[-1], seed=0)

    variants = {
        "bare_pytorch_loop": lambda: bare_loop(fresh(), data.train, config, device),
        "memunlearn_train": lambda: train(fresh(), data.train, config, device).wall_time,
        "memunlearn_train_fast_path": lambda: train(fresh(), data.train, TrainConfig(**{**config.to_dict(), "fast": True}), device).wall_time,
    }
    variants["bare_pytorch_loop"]()  # warm-up (allocator, oneDNN kernel selection)
    # Round-robin, best of N: a slow spell on a shared machine then hits every variant alike.
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            times[name].append(run())
    figures = {}
    for name, seconds in times.items():
        best = min(seconds)
        figures[name] = {"seconds": seconds, "best_seconds": best, "examples_per_second": n_examples / best}
        print(f"{name:28s} {n_examples / best:9.0f} examples/s  (best of {args.repeats}: {best:.2f}s)")
    base = figures["bare_pytorch_loop"]["examples_per_second"]
    for name in figures:
        figures[name]["relative_to_bare"] = figures[name]["examples_per_second"] / base
    _common.save(args.name or f"train_throughput_{args.dataset}", {
        "dataset": args.dataset, "train_size": len(data.train), "epochs": args.epochs, "model": model_name,
        "width": width, "batch_size": config.batch_size, "device": str(device),
        "bf16_autocast_active_on_fast_path": device.type == "cuda" or cpu_has_native_bf16(),
        "variants": figures,
    })


if __name__ == "__main__":
    main()
