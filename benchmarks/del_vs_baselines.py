"""DEL against every baseline, the 2×2 localization ablation, and DEL's cost curve (issue 3).

For each forget rule (an iid 10% set and a 10% set drawn from two similar classes) and each seed
(each with its own original model and oracle), every method is scored against the oracle:
Δforget, Δretain, Δtest, ΔMIA, ToW, ToW-MIA, wall time / oracle retrain time, and the fraction of
parameter entries changed. Hyperparameters are chosen first, on a separate tuning seed, by ToW
computed with a VALIDATION split held out of the training data (never the test set); the whole
search is recorded. Then:

* the 2×2 ablation {param, channel} × {grad, weighted-grad} and the random-channel control, each
  paired with DEL's reset + finetune;
* DEL's cost curve: ToW / ToW-MIA against finetuning epochs and against the budget α;
* the mask computation time against one training epoch over the forget set.

The full-size run (the issue's setting) is one command on a GPU::

    python benchmarks/del_vs_baselines.py --width 64 --epochs 30 --seeds 3 --workers 1 --device cuda

A scaled-down CPU run (what fits 2 cores in an hour) is, e.g.::

    python benchmarks/del_vs_baselines.py --train-size 2000 --val-size 500 --test-size 2000 --width 16 \\
        --epochs 15 --method-epochs 5 --seeds 3 --workers 2 --tag _scaled

Results: ``benchmarks/results/del_vs_baselines{tag}.json`` (written after every phase, so an
interrupted run keeps what it finished) and a markdown rendering ``del_vs_baselines{tag}.md``.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path
from typing import Any

from _common import RESULTS, machine  # noqa: F401  (also puts src/ on sys.path)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from memunlearn.data import Dataset, load_dataset, subsample  # noqa: E402
from memunlearn.errors import DivergedError  # noqa: E402
from memunlearn.evaluation import compare_to_oracle, evaluate, mean_interval, tow  # noqa: E402
from memunlearn.experiment import Setting, train_cached  # noqa: E402
from memunlearn.forget import make_forget_set  # noqa: E402
from memunlearn.io import atomic_path, write_json  # noqa: E402
from memunlearn.localization import accumulate_gradient, gradient_scores, select_top  # noqa: E402
from memunlearn.localization.strategies import LocalizeOptions, get_strategy  # noqa: E402
from memunlearn.methods import method_defaults, unlearn  # noqa: E402
from memunlearn.checkpoints import cache_root  # noqa: E402
from memunlearn.training import TrainConfig, accuracy, get_device  # noqa: E402

BASELINES = ("finetune", "neggrad", "neggrad+", "random-label", "l1-sparse", "salun", "scrub", "ssd", "del")
ABLATION = ("param-grad", "param-weighted-grad", "channel-grad", "channel-weighted-grad")
EPOCH_METHODS = {"finetune", "neggrad", "neggrad+", "random-label", "l1-sparse", "salun", "scrub", "del"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--train-size", type=int, default=None, help="training examples (default: all but the validation split)")
    p.add_argument("--val-size", type=int, default=5000, help="validation examples held out of the training split")
    p.add_argument("--test-size", type=int, default=None, help="test examples (default: all)")
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--epochs", type=int, default=30, help="epochs of the original model and the oracle")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--forget", default="iid:0.1;classes:0,6:0.1", help="forget rules separated by ';'")
    p.add_argument("--methods", default=",".join(BASELINES))
    p.add_argument("--method-epochs", type=int, default=5, help="epochs of every epoch-based method")
    p.add_argument("--tune-lrs", default="0.01,0.03,0.1", help="learning rates searched per method")
    p.add_argument("--tune-ssd", default="1,3,10", help="SSD selection thresholds α searched")
    p.add_argument("--tune-seed", type=int, default=100, help="the seed used only for the hyperparameter search")
    p.add_argument("--no-tune", action="store_true", help="use the methods' defaults (lr) instead of searching")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--curve-epochs", default="1,2,5,10,20")
    p.add_argument("--curve-budgets", default="0.1,0.2,0.3,0.5")
    p.add_argument("--no-ablation", action="store_true")
    p.add_argument("--no-curve", action="store_true")
    p.add_argument("--no-retrain", action="store_true", help="skip the independent-retrain noise floor")
    p.add_argument("--workers", type=int, default=1, help="parallel processes (each uses --threads threads)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--tag", default="", help="suffix of the result file names")
    p.add_argument("--note", default="", help="free text recorded in the JSON (why this size was run)")
    return p.parse_args(argv)


# Setting ---------------------------------------------------------------------------------------

def build_setting(args: argparse.Namespace) -> tuple[Setting, Any]:
    """The data (train minus a held-out validation split, test), the model and the recipe."""
    full = load_dataset(args.dataset, args.data_dir)
    n_total = len(full.train)
    train_size = args.train_size or n_total - args.val_size
    data = subsample(full, n_train=min(n_total, train_size + args.val_size),
                     n_test=args.test_size if args.test_size else None, seed=0)
    order = np.random.default_rng(12345).permutation(len(data.train))
    val_idx, train_idx = np.sort(order[: args.val_size]), np.sort(order[args.val_size:])
    dataset = Dataset(f"{args.dataset}", data.train.subset(train_idx), data.test, data.classes,
                      fingerprint=f"{data.fingerprint}-trainval{args.val_size}")
    val = data.train.subset(val_idx)
    train_config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, momentum=0.9, weight_decay=5e-4)
    setting = Setting(dataset, args.model, args.width, train_config, cache_root(args.cache_dir) / "checkpoints",
                      get_device(args.device))
    return setting, val


def original(setting: Setting, seed: int):
    return train_cached(setting, setting.dataset.train, setting.dataset.fingerprint, seed, "original")


def split(setting: Setting, rule: str, seed: int):
    forget_set = make_forget_set(rule, setting.dataset, seed)
    train = setting.dataset.train
    forget = train.subset(forget_set.indices)
    retain = train.subset(forget_set.retain_indices(len(train)))
    oracle, _, oracle_time, _ = train_cached(
        setting, retain, setting.dataset.fingerprint, seed, "oracle",
        extra_key={"forget": rule, "indices": forget_set.indices.tolist()},
    )
    return forget_set, forget, retain, oracle, oracle_time


def method_hparams(args, method: str, chosen: dict[str, dict]) -> dict[str, Any]:
    hparams = dict(chosen.get(method, {}))
    if method in EPOCH_METHODS:
        hparams["epochs"] = args.method_epochs
    if method == "scrub":
        hparams["msteps"] = min(2, args.method_epochs)
    return hparams


def score(model, forget, retain, test, oracle_metrics, device, seed) -> dict[str, Any]:
    metrics = evaluate(model, forget, retain, test, device, seed)
    return {"metrics": metrics, "vs_oracle": compare_to_oracle(metrics, oracle_metrics)}


def run_method(method, model, forget, retain, test, oracle_metrics, oracle_time, device, seed, mask=None,
               extra_time=0.0, extra_examples=0, **hparams) -> dict[str, Any]:
    try:
        result = unlearn(method, model, forget, retain, mask=mask, seed=seed, device=str(device), **hparams)
    except DivergedError as exc:
        return {"status": "diverged", "error": str(exc), "hparams": hparams}
    cost = result.cost.to_dict()
    cost["wall_time"] += extra_time
    cost["examples"] += extra_examples
    return {"status": "ok", **score(result.model, forget, retain, test, oracle_metrics, device, seed),
            "cost": cost, "time_fraction": cost["wall_time"] / oracle_time,
            "hparams": {**method_defaults(method), **result.hparams}}


# Jobs (each runs in its own process) -----------------------------------------------------------

def init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def original_job(args, seed: int) -> dict[str, Any]:
    init_worker(args.threads)
    setting, val = build_setting(args)
    model, _, wall, reused = original(setting, seed)
    return {"seed": seed, "wall_time": wall, "reused": reused,
            "train_accuracy": accuracy(model, setting.dataset.train, setting.device),
            "val_accuracy": accuracy(model, val, setting.device),
            "test_accuracy": accuracy(model, setting.dataset.test, setting.device)}


def search_space(args, method: str) -> list[dict[str, Any]]:
    if method == "ssd":
        return [{"selection": float(a)} for a in args.tune_ssd.split(",")]
    return [{"lr": float(lr)} for lr in args.tune_lrs.split(",")]


def tune_job(args, rule: str) -> dict[str, Any]:
    """Pick each method's hyperparameters by ToW on the validation split, on the tuning seed."""
    init_worker(args.threads)
    setting, val = build_setting(args)
    seed = args.tune_seed
    model, _, _, _ = original(setting, seed)
    _, forget, retain, oracle, _ = split(setting, rule, seed)
    device = setting.device
    oracle_acc = {"forget": accuracy(oracle, forget, device), "retain": accuracy(oracle, retain, device),
                  "val": accuracy(oracle, val, device)}
    out: dict[str, Any] = {"seed": seed, "oracle": oracle_acc, "criterion": "ToW_val = (1-Δforget)(1-Δretain)(1-Δval)",
                           "methods": {}}
    for method in [m for m in args.methods.split(",") if m != "retrain"]:
        trials = []
        for candidate in search_space(args, method):
            hparams = {**method_hparams(args, method, {}), **candidate}
            try:
                result = unlearn(method, model, forget, retain, seed=seed, device=str(device), **hparams)
            except DivergedError as exc:
                trials.append({"hparams": candidate, "status": "diverged", "error": str(exc)})
                continue
            acc = {"forget": accuracy(result.model, forget, device), "retain": accuracy(result.model, retain, device),
                   "val": accuracy(result.model, val, device)}
            gaps = {k: abs(acc[k] - oracle_acc[k]) for k in acc}
            trials.append({"hparams": candidate, "status": "ok", "accuracy": acc,
                           "tow_val": tow(gaps["forget"], gaps["retain"], gaps["val"]),
                           "wall_time": result.cost.wall_time})
        ok = [t for t in trials if t["status"] == "ok"]
        best = max(ok, key=lambda t: t["tow_val"])["hparams"] if ok else {}
        out["methods"][method] = {"chosen": best, "trials": trials}
        print(f"[tune {rule}] {method}: chose {best}", flush=True)
    return out


def seed_job(args, rule: str, seed: int, chosen: dict[str, dict]) -> dict[str, Any]:
    init_worker(args.threads)
    setting, _ = build_setting(args)
    device = setting.device
    model, _, original_time, _ = original(setting, seed)
    forget_set, forget, retain, oracle, oracle_time = split(setting, rule, seed)
    test = setting.dataset.test
    oracle_metrics = evaluate(oracle, forget, retain, test, device, seed)
    row: dict[str, Any] = {
        "rule": rule, "seed": seed, "forget_size": len(forget), "retain_size": len(retain),
        "forget_indices": forget_set.indices.tolist(),
        "oracle": {"metrics": oracle_metrics, "wall_time": oracle_time},
        "original": {**score(model, forget, retain, test, oracle_metrics, device, seed), "wall_time": original_time,
                     "train_accuracy": accuracy(model, setting.dataset.train, device)},
        "methods": {}, "ablation": {}, "curve_epochs": {}, "curve_budget": {},
    }
    args_oracle = (test, oracle_metrics, oracle_time, device, seed)

    def log(what: str, entry: dict) -> None:
        tow_text = f"ToW {entry['vs_oracle']['tow']:.3f} ToW-MIA {entry['vs_oracle']['tow_mia']:.3f}" if entry["status"] == "ok" else entry["status"]
        print(f"[{rule} seed {seed}] {what}: {tow_text}", flush=True)

    if not args.no_retrain:
        recipe = setting.train_config
        entry = run_method("retrain", model, forget, retain, *args_oracle[:4], seed + 1000, epochs=recipe.epochs,
                           lr=recipe.lr, batch_size=recipe.batch_size, momentum=recipe.momentum,
                           weight_decay=recipe.weight_decay)
        row["methods"]["retrain (independent seed)"] = entry
        log("retrain", entry)
    for method in args.methods.split(","):
        if method == "retrain":
            continue
        entry = run_method(method, model, forget, retain, *args_oracle, **method_hparams(args, method, chosen))
        row["methods"][method] = entry
        log(method, entry)

    # One gradient pass over the forget set serves every gradient-based mask below.
    start = time.perf_counter()
    gradient = accumulate_gradient(model, forget, 128, device)
    gradient_time = time.perf_counter() - start
    del_params = method_hparams(args, "del", chosen)
    masks = {}
    for name in ABLATION:
        granularity, criterion = name.split("-", 1)
        masks[name] = select_top(gradient_scores(model, gradient, criterion, granularity), 0.3, {"strategy": name})
    masks["random-channel"] = get_strategy("random-channel")(
        model, forget, 0.3, LocalizeOptions(seed=seed, reference=masks["channel-weighted-grad"]))
    one_epoch = unlearn("finetune", model, forget, forget, epochs=1, seed=seed, device=str(device)).cost.wall_time
    from memunlearn.localization import localize
    del_mask_time = localize(model, forget, "del", 0.3, device=str(device)).info["wall_time"]
    row["mask_timing"] = {"del_mask_seconds": del_mask_time, "gradient_pass_seconds": gradient_time,
                          "one_training_epoch_on_forget_seconds": one_epoch,
                          "ratio_mask_to_epoch": del_mask_time / one_epoch}
    if not args.no_ablation:
        reference = masks["channel-weighted-grad"]
        for name, mask in masks.items():
            if name == "channel-weighted-grad" and row["methods"].get("del", {}).get("status") == "ok":
                # The same mask, seed and schedule as the main table's `del` row: reuse that run.
                row["ablation"][name] = {**row["methods"]["del"], "mask_iou_with_del": 1.0}
                continue
            extra = 0.0 if name == "random-channel" else gradient_time
            entry = run_method("del", model, forget, retain, *args_oracle, mask=mask, extra_time=extra,
                               extra_examples=len(forget), **del_params)
            entry["mask_iou_with_del"] = mask.iou(reference)
            row["ablation"][name] = entry
            log(f"ablation {name}", entry)
    if not args.no_curve:
        del_mask = masks["channel-weighted-grad"]
        for epochs in [int(e) for e in args.curve_epochs.split(",")]:
            if epochs == del_params["epochs"] and "channel-weighted-grad" in row["ablation"]:
                row["curve_epochs"][str(epochs)] = row["ablation"]["channel-weighted-grad"]
                continue
            entry = run_method("del", model, forget, retain, *args_oracle, mask=del_mask, extra_time=gradient_time,
                               extra_examples=len(forget), **{**del_params, "epochs": epochs})
            row["curve_epochs"][str(epochs)] = entry
            log(f"del epochs={epochs}", entry)
        for budget in [float(b) for b in args.curve_budgets.split(",")]:
            if budget == 0.3 and "channel-weighted-grad" in row["ablation"]:
                row["curve_budget"][str(budget)] = row["ablation"]["channel-weighted-grad"]
                continue
            mask = select_top(gradient_scores(model, gradient, "weighted-grad", "channel"), budget)
            entry = run_method("del", model, forget, retain, *args_oracle, mask=mask, extra_time=gradient_time,
                               extra_examples=len(forget), **del_params)
            row["curve_budget"][str(budget)] = entry
            log(f"del budget={budget}", entry)
    return row


def phase_one_packed(job: tuple) -> Any:
    args, kind, rule, *rest = job
    if kind == "tune":
        return tune_job(args, rule)
    init_worker(args.threads)
    setting, _ = build_setting(args)
    return split(setting, rule, rest[0])[-1]  # trains (or reuses) the oracle; returns its wall time


def seed_job_packed(job: tuple) -> dict[str, Any]:
    return seed_job(*job)


# Summaries -------------------------------------------------------------------------------------

STATS = ("gap_forget", "gap_retain", "gap_test", "gap_mia", "tow", "tow_mia")


def summarise_entries(entries: list[dict]) -> dict[str, Any]:
    ok = [e for e in entries if e.get("status") == "ok"]
    summary = {k: mean_interval(e["vs_oracle"][k] for e in ok) for k in STATS}
    summary["acc_forget"] = mean_interval(e["metrics"]["acc_forget"] for e in ok)
    summary["time_fraction"] = mean_interval(e["time_fraction"] for e in ok)
    summary["params_changed_fraction"] = mean_interval(e["cost"]["params_changed_fraction"] for e in ok)
    summary["seeds_ok"], summary["seeds"] = len(ok), len(entries)
    return summary


def summarise(rows: list[dict]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for rule in sorted({r["rule"] for r in rows}):
        these = [r for r in rows if r["rule"] == rule]
        block: dict[str, Any] = {
            "oracle_acc_forget": mean_interval(r["oracle"]["metrics"]["acc_forget"] for r in these),
            "original": summarise_entries([{**r["original"], "status": "ok", "time_fraction": float("nan"),
                                            "cost": {"params_changed_fraction": 0.0}} for r in these]),
            "original_train_accuracy": mean_interval(r["original"]["train_accuracy"] for r in these),
            "mask_timing": {k: mean_interval(r["mask_timing"][k] for r in these) for k in these[0]["mask_timing"]},
        }
        for section in ("methods", "ablation", "curve_epochs", "curve_budget"):
            names = list(these[0][section])
            block[section] = {n: summarise_entries([r[section][n] for r in these]) for n in names}
        out[rule] = block
    return out


def fmt(stat: dict, percent: bool = False) -> str:
    if not stat or stat.get("n", 0) == 0 or math.isnan(stat["mean"]):
        return "—"
    scale = 100 if percent else 1
    digits = 1 if percent else 3
    text = f"{stat['mean'] * scale:.{digits}f}"
    if not math.isnan(stat["half_width"]):
        text += f" ± {stat['half_width'] * scale:.{digits}f}"
    return text


def table(rows: dict[str, dict], first: str) -> list[str]:
    lines = [f"| {first} | Δforget (%) | Δretain (%) | Δtest (%) | ΔMIA (%) | ToW | ToW-MIA | time / oracle | params changed (%) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, s in rows.items():
        label = name if s["seeds_ok"] == s["seeds"] else f"{name} (diverged {s['seeds'] - s['seeds_ok']}/{s['seeds']})"
        lines.append(f"| {label} | {fmt(s['gap_forget'], True)} | {fmt(s['gap_retain'], True)} | {fmt(s['gap_test'], True)} | "
                     f"{fmt(s['gap_mia'], True)} | {fmt(s['tow'])} | {fmt(s['tow_mia'])} | {fmt(s['time_fraction'])} | "
                     f"{fmt(s['params_changed_fraction'], True)} |")
    return lines


def markdown(payload: dict) -> str:
    lines = [f"Command: `{payload['command']}`", "", f"Setting: {payload['setting_text']}", ""]
    for rule, block in payload.get("summary", {}).items():
        lines += [f"### Forget set `{rule}`", "",
                  f"Original model: training accuracy {fmt(block['original_train_accuracy'], True)}%; "
                  f"oracle forget accuracy {fmt(block['oracle_acc_forget'], True)}%.", ""]
        lines += table({"original (no unlearning)": block["original"], **block["methods"]}, "method")
        if block["ablation"]:
            lines += ["", "2×2 localization ablation and random-channel control (each mask α=0.3, then DEL's reset + finetune):", ""]
            lines += table(block["ablation"], "mask")
        if block["curve_epochs"]:
            lines += ["", "DEL cost curve over finetuning epochs (α=0.3):", ""]
            lines += table({f"{k} epochs": v for k, v in block["curve_epochs"].items()}, "schedule")
            lines += ["", "DEL cost curve over the budget α:", ""]
            lines += table({f"α={k}": v for k, v in block["curve_budget"].items()}, "budget")
        t = block["mask_timing"]
        lines += ["", f"Mask computation (`del`, one forward+backward pass over D_f): {fmt(t['del_mask_seconds'])} s; "
                  f"one training epoch over D_f: {fmt(t['one_training_epoch_on_forget_seconds'])} s; "
                  f"ratio {fmt(t['ratio_mask_to_epoch'])}.", ""]
    return "\n".join(lines) + "\n"


def save_all(args, payload: dict) -> None:
    payload["summary"] = summarise(payload["rows"]) if payload["rows"] else {}
    path = RESULTS / f"del_vs_baselines{args.tag}.json"
    write_json(path, payload)
    with atomic_path(RESULTS / f"del_vs_baselines{args.tag}.md") as tmp:
        tmp.write_text(markdown(payload))
    print(f"wrote {path}", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rules = [r for r in args.forget.split(";") if r]
    seeds = list(range(args.seeds))
    setting, val = build_setting(args)
    payload: dict[str, Any] = {
        "machine": machine(), "command": "python " + " ".join(sys.argv), "args": vars(args), "note": args.note,
        "setting_text": (f"{args.dataset}, {len(setting.dataset.train)} training examples (+{len(val)} held-out "
                         f"validation), {len(setting.dataset.test)} test examples; {args.model} width {args.width}; "
                         f"original/oracle: {args.epochs} epochs SGD lr {args.lr} batch {args.batch_size}, no augmentation; "
                         f"methods: {args.method_epochs} epochs; seeds {seeds}; tuning seed {args.tune_seed}"),
        "sizes": {"train": len(setting.dataset.train), "val": len(val), "test": len(setting.dataset.test)},
        "originals": [], "tuning": {}, "rows": [],
    }
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        payload["originals"] = pool.starmap(original_job, [(args, s) for s in [args.tune_seed, *seeds]])
        print("originals:", payload["originals"], flush=True)
        save_all(args, payload)
        # The oracles do not depend on the hyperparameters: train them while the search runs.
        jobs = [("tune", rule) for rule in rules if not args.no_tune]
        jobs += [("oracle", rule, seed) for seed in seeds for rule in rules]
        for job, result in zip(jobs, pool.imap(phase_one_packed, [(args, *job) for job in jobs])):
            if job[0] == "tune":
                payload["tuning"][job[1]] = result
                save_all(args, payload)
        chosen = {rule: {m: v["chosen"] for m, v in payload["tuning"][rule]["methods"].items()}
                  if rule in payload["tuning"] else {} for rule in rules}
        jobs = [(args, rule, seed, chosen[rule]) for seed in seeds for rule in rules]
        for row in pool.imap_unordered(seed_job_packed, jobs):
            payload["rows"].append(row)
            payload["rows"].sort(key=lambda r: (r["rule"], r["seed"]))
            save_all(args, payload)  # after every (rule, seed): an interrupted run keeps what it finished
    payload["wall_time"] = time.perf_counter() - start
    save_all(args, payload)
    print(markdown(payload))
    return 0


if __name__ == "__main__":
    sys.exit(main())
