"""Search for a convolutional Fashion-MNIST recipe that fits the 10k stratified subset on a CPU.

Goal (issue 14): >= 99.5% training accuracy in <= 90 s wall on 2 cores, one training run with
memunlearn.train, so DEL's channel-level localization can be tested on a conv net at CPU scale.

Every run is a fresh subprocess (cold torch.compile with its own empty inductor cache; no dynamo
recompile limit shared between candidates) with torch.set_num_threads(THREADS). Candidates are
run interleaved, the order rotated each repeat, so a slow spell on the shared machine hits them
alike; each run records the 1-minute load average before and after, wall and CPU seconds, the
time of every epoch (a forward pre-hook timestamps each step), the per-epoch training accuracy
read off the training forward passes (train mode, as memunlearn records it) and the final
eval-mode train and test accuracy.

    python benchmarks/conv_recipe.py --phase fit                      # full recipes, accuracy + wall
    python benchmarks/conv_recipe.py --phase throughput --repeats 2   # 2-epoch runs: channels_last, compile
    python benchmarks/conv_recipe.py --steps cnn:16:128 --rounds 40    # step-interleaved plain/cl/compile

``--steps`` alternates single training steps of plain, channels_last, compiled and compiled +
channels_last copies of a model in one process, the ratio most robust to load spikes. Each phase
writes its section of benchmarks/results/conv_recipe_fashion-mnist.json (strict JSON,
NaN as null); the other sections already there are kept. ``--candidate NAME:key=value,...``
runs an ad-hoc candidate (keys: model, width, epochs, lr, batch_size, weight_decay, momentum,
final_lr_fraction, fast, compile) instead of a phase's list.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULT = HERE / "results" / "conv_recipe_fashion-mnist.json"
THREADS = 2
TARGET_TRAIN_ACC = 0.995
TARGET_WALL_S = 90.0


def cand(model="cnn", width=16, epochs=20, lr=0.05, batch_size=128, weight_decay=5e-4, momentum=0.9,
         final_lr_fraction=0.0, fast=False, compile=False) -> dict:
    return dict(model=model, width=width, epochs=epochs, lr=lr, batch_size=batch_size, weight_decay=weight_decay,
                momentum=momentum, final_lr_fraction=final_lr_fraction, fast=fast, compile=compile)


# Throughput: 2 epochs each (epoch 1 carries oneDNN / compile warm-up, epoch 2 is steady state).
THROUGHPUT = {
    "cnn16_b128": cand(width=16, epochs=2, batch_size=128),
    "cnn16_b128_cl": cand(width=16, epochs=2, batch_size=128, fast=True),
    "cnn16_b128_cl_compile": cand(width=16, epochs=2, batch_size=128, fast=True, compile=True),
}

# Fit: the full recipes (accuracy is deterministic given the seed; timing is one sample each).
FIT = {
    "cnn16_e20_lr0.1_b128_wd5e-5_cl": cand(width=16, epochs=20, lr=0.1, batch_size=128, weight_decay=5e-5, fast=True),
    "cnn3w32_e20_lr0.1_b128_wd5e-5_cl": cand(model="cnn3", width=32, epochs=20, lr=0.1, batch_size=128,
                                             weight_decay=5e-5, fast=True),
    "cnn3fw32_e15_lr0.05_b128_wd5e-5_cl": cand(model="cnn3f", width=32, epochs=15, lr=0.05, batch_size=128,
                                               weight_decay=5e-5, fast=True),
}

PHASES = {"throughput": THROUGHPUT, "fit": FIT}


# ------------------------------------------------------------------ one run (in a subprocess)


def run_one(spec: dict) -> dict:
    import torch

    torch.set_num_threads(THREADS)
    sys.path.insert(0, str(ROOT / "src"))
    from memunlearn import build_model, load_dataset
    from memunlearn.data import subsample
    from memunlearn.training import TrainConfig, accuracy, train

    if spec["model"] in ("cnn3", "cnn3f"):
        import conv_models  # noqa: F401  (registers cnn3, cnn3f)

    data = subsample(load_dataset("fashion-mnist"), n_train=10000, seed=0)
    config = TrainConfig(epochs=spec["epochs"], lr=spec["lr"], batch_size=spec["batch_size"],
                         momentum=spec["momentum"], weight_decay=spec["weight_decay"],
                         final_lr_fraction=spec["final_lr_fraction"], fast=spec["fast"], seed=0)
    load_before = os.getloadavg()[0]
    cpu0, t0 = time.process_time(), time.perf_counter()
    model = build_model(spec["model"], data.input_shape[0], data.num_classes, width=spec["width"],
                        image_size=data.input_shape[-1], seed=0)
    trained = torch.compile(model) if spec["compile"] else model
    stamps: list[float] = []
    trained.register_forward_pre_hook(lambda module, args: stamps.append(time.perf_counter()))
    result = train(trained, data.train, config, "cpu")
    total_s, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
    load_after = os.getloadavg()[0]
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    end = t0 + total_s
    bounds = [stamps[e * steps_per_epoch] for e in range(config.epochs)] + [end]
    epoch_s = [b - a for a, b in zip(bounds, bounds[1:])]
    steady = sorted(epoch_s[1:])[len(epoch_s[1:]) // 2] if len(epoch_s) > 1 else float("nan")
    # Eval on the uncompiled module (it shares the trained parameters): no eval-mode recompile.
    train_acc, test_acc = accuracy(model, data.train, "cpu"), accuracy(model, data.test, "cpu")
    curve = result.dynamics.correct.mean(axis=1).tolist()
    n = len(data.train) * config.epochs
    return {
        "wall_s": result.wall_time, "total_s": total_s, "cpu_s": cpu_s,
        "examples_per_s": n / result.wall_time, "epoch_s": epoch_s, "steady_epoch_s": steady,
        "first_epoch_extra_s": epoch_s[0] - steady if len(epoch_s) > 1 else float("nan"),
        "load_before": load_before, "load_after": load_after,
        "train_acc": train_acc, "test_acc": test_acc, "train_acc_per_epoch_running": curve,
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def run_steps(spec: dict) -> dict:
    """Step-interleaved throughput: plain, channels_last, compile, compile + channels_last of one model,
    one training step of each in turn on the same batches, so a load spike hits all four alike."""
    import torch
    from torch import nn

    torch.set_num_threads(THREADS)
    sys.path.insert(0, str(ROOT / "src"))
    from memunlearn import build_model, load_dataset
    from memunlearn.data import subsample

    if spec["model"] in ("cnn3", "cnn3f"):
        import conv_models  # noqa: F401
    data = subsample(load_dataset("fashion-mnist"), n_train=10000, seed=0)
    bs, rounds = spec["batch_size"], spec["rounds"]
    x_all, y_all = data.train.x, data.train.y
    variants, warmup_s = {}, {}
    for name, cl, comp in (("plain", False, False), ("channels_last", True, False), ("compile", False, True),
                           ("compile_channels_last", True, True)):
        model = build_model(spec["model"], 1, 10, width=spec["width"], image_size=28, seed=0)
        if cl:
            model = model.to(memory_format=torch.channels_last)
        net = torch.compile(model) if comp else model
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        variants[name] = (net, opt, cl)

    def step(name: str, i: int) -> float:
        net, opt, cl = variants[name]
        start = (i * bs) % (len(x_all) - bs)
        x, y = x_all[start:start + bs], y_all[start:start + bs]
        if cl:
            x = x.contiguous(memory_format=torch.channels_last)
        t = time.perf_counter()
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t

    for name in variants:  # first steps: compile (cold inductor cache) / oneDNN primitive creation
        warmup_s[name] = sum(step(name, i) for i in range(3))
    times: dict[str, list[float]] = {name: [] for name in variants}
    loads = [os.getloadavg()[0]]
    for i in range(rounds):
        for name in variants:
            times[name].append(step(name, 3 + i))
    loads.append(os.getloadavg()[0])
    med = {n: sorted(t)[len(t) // 2] for n, t in times.items()}
    return {
        "batch_size": bs, "rounds": rounds, "load": loads, "warmup_3_steps_s": warmup_s,
        "median_step_s": med, "epoch_s_from_median_step": {n: m * math.ceil(10000 / bs) for n, m in med.items()},
        "speed_vs_plain": {n: med["plain"] / m for n, m in med.items()},
        "step_s": times,
    }


# ------------------------------------------------------------------ orchestration


def parse_candidate(text: str) -> tuple[str, dict]:
    name, _, body = text.partition(":")
    kwargs = {}
    for item in filter(None, body.split(",")):
        key, _, value = item.partition("=")
        if key in ("fast", "compile"):
            kwargs[key] = value.lower() in ("1", "true", "yes")
        elif key == "model":
            kwargs[key] = value
        elif key in ("width", "epochs", "batch_size"):
            kwargs[key] = int(value)
        else:
            kwargs[key] = float(value)
    return name, cand(**kwargs)


def spawn(spec: dict, flag: str = "--one") -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))
    with tempfile.TemporaryDirectory(prefix="conv_recipe_inductor_") as cache:
        env["TORCHINDUCTOR_CACHE_DIR"] = cache  # cold compile every run: what a fresh run pays
        proc = subprocess.run([sys.executable, __file__, flag, json.dumps(spec)], env=env,
                              capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["exit %d" % proc.returncode]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def strict(value):
    """NaN and infinities as null, recursively (strict JSON)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def machine() -> dict:
    import torch

    return {
        "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
        "cpus": os.cpu_count(), "torch_threads": THREADS, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "processor": platform.processor() or platform.machine(),
        "bf16_autocast_on_fast_path": "amx" in torch.backends.cpu.get_cpu_capability().lower()
        or "bf16" in torch.backends.cpu.get_cpu_capability().lower(),
    }


def summarise(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"errors": [r["error"] for r in runs]}
    walls = [r["wall_s"] for r in ok]
    best = min(ok, key=lambda r: r["wall_s"])
    median = sorted(walls)[len(walls) // 2]
    return {
        "runs": len(ok), "wall_s_best": best["wall_s"], "wall_s_median": median,
        "examples_per_s_best": best["examples_per_s"], "steady_epoch_s_best": min(r["steady_epoch_s"] for r in ok),
        "cpu_s_median": sorted(r["cpu_s"] for r in ok)[len(ok) // 2],
        "first_epoch_extra_s_median": sorted(r["first_epoch_extra_s"] for r in ok)[len(ok) // 2],
        "load_at_best": [best["load_before"], best["load_after"]],
        "train_acc": ok[0]["train_acc"], "test_acc": ok[0]["test_acc"],
        "train_acc_per_epoch_running": ok[0]["train_acc_per_epoch_running"],
        "meets_target": ok[0]["train_acc"] >= TARGET_TRAIN_ACC and median <= TARGET_WALL_S,
        **({"errors": [r["error"] for r in runs if "error" in r]} if len(ok) < len(runs) else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", choices=sorted(PHASES), default="fit")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these candidates of the phase")
    parser.add_argument("--candidate", action="append", default=[], metavar="NAME:k=v,...")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--section", help="result section (default: the phase)")
    parser.add_argument("--steps", nargs="*", metavar="MODEL:WIDTH:BATCH",
                        help="step-interleaved plain/channels_last/compile throughput of these models (own section)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--one-steps", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(strict(run_one(json.loads(args.one)))))
        return
    if args.one_steps:
        print(json.dumps(strict(run_steps(json.loads(args.one_steps)))))
        return
    if args.steps is not None:
        section = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "finished": None, "models": {}}
        for item in args.steps:
            model, width, batch = item.split(":")
            spec = {"model": model, "width": int(width), "batch_size": int(batch), "rounds": args.rounds}
            result = spawn(spec, "--one-steps")
            section["models"][item] = result
            print(item, json.dumps({k: result.get(k) for k in ("load", "warmup_3_steps_s", "median_step_s",
                                                                "speed_vs_plain")}, indent=None), flush=True)
        section["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
        write_section(args.section or "step_interleaved", section)
        return

    candidates = dict(parse_candidate(c) for c in args.candidate) if args.candidate else dict(PHASES[args.phase])
    if args.only:
        candidates = {k: candidates[k] for k in args.only}
    names = list(candidates)
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for repeat in range(args.repeats):
        order = names[repeat % len(names):] + names[:repeat % len(names)]
        for name in order:
            record = {"repeat": repeat, **spawn(candidates[name])}
            runs[name].append(record)
            if "error" in record:
                print(f"[{repeat}] {name:34s} ERROR {record['error']}", flush=True)
                continue
            print(f"[{repeat}] {name:34s} wall {record['wall_s']:6.1f}s (total {record['total_s']:6.1f}s, cpu "
                  f"{record['cpu_s']:6.1f}s) steady epoch {record['steady_epoch_s']:5.2f}s first+"
                  f"{record['first_epoch_extra_s']:5.2f}s  train {record['train_acc']:.4f} test "
                  f"{record['test_acc']:.4f}  load {record['load_before']:.2f}->{record['load_after']:.2f}", flush=True)

    section = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "repeats": args.repeats,
        "candidates": {name: {"command": " ".join([Path(sys.executable).name, *sys.argv]), "config": candidates[name],
                              "summary": summarise(runs[name]), "runs": runs[name]} for name in names},
    }
    write_section(args.section or args.phase, section)


def write_section(key: str, section: dict) -> None:
    """Put ``section`` under sections[key] of the result file; candidates of an earlier command kept."""
    payload = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    payload.update({
        "machine": machine(), "dataset": "fashion-mnist", "train_size": 10000, "test_size": 10000,
        "subset": "memunlearn.data.subsample(n_train=10000, seed=0)", "seed": 0,
        "target": {"train_acc": TARGET_TRAIN_ACC, "wall_s": TARGET_WALL_S, "threads": THREADS},
        "notes": payload.get("notes", {}),
    })
    previous = payload.setdefault("sections", {}).get(key, {})
    if "candidates" in section:
        for name, entry in previous.get("candidates", {}).items():
            if name not in section["candidates"]:
                section["candidates"][name] = {"command": previous.get("command"), **entry}
    payload["sections"][key] = section
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(strict(payload), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, RESULT)
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
