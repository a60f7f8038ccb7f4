"""An adversarial user's attack on every sub-command: ≥ 300 bad inputs, each classified.

Each case runs in-process (``memunlearn.cli.main``) in its own folder, with spies on every way
work can start (the training loop, ``backward``/``autograd.grad``, the model pool, the executors)
and an alarm of a few seconds. A case is *clean* when it exits 2 with one ``memunlearn: error``
line, no traceback, no work started and every file that existed before it byte for byte
unchanged. Otherwise it is counted under the first of: ``traceback``, ``work_started``
(a spy fired or the alarm rang), ``overwritten`` (a pre-existing file changed or vanished),
``wrong_exit`` (exit code other than 2, e.g. a silently accepted nonsense input), ``not_one_line``.

    PYTHONPATH=src python benchmarks/attack_bad_input.py            # writes benchmarks/results/attack_bad_input.json
    PYTHONPATH=src python benchmarks/attack_bad_input.py --only seed  # the cases whose id contains "seed"

Fixtures (a 1-epoch digits checkpoint, a finished run, a mask) are built first, with the spies off.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import pickle
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

RESULTS = Path(__file__).resolve().parent / "results"
ALARM_SECONDS = 8
FAST = ["--train-subset", "300", "--epochs", "1"]


class WorkStarted(BaseException):
    """Raised by a spy: the command reached training (or another expensive stage)."""


class Alarm(BaseException):
    pass


# ------------------------------------------------------------------------------------ fixtures


def build_fixtures(fx: Path) -> None:
    from memunlearn.cli import main

    fx.mkdir(parents=True, exist_ok=True)
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        assert main(["train", "--dataset", "digits", *FAST, "--out", str(fx / "model.safetensors")]) == 0, quiet.getvalue()
        assert main(["localize", "--checkpoint", str(fx / "model.safetensors"), "--budget", "0.3",
                     "--out", str(fx / "mask.safetensors")]) == 0, quiet.getvalue()
        assert main(["run", "--dataset", "digits", *FAST, "--methods", "finetune", "--no-noise-floor", "--no-tuned",
                     "--set", "finetune.epochs=1", "--out", str(fx / "run")]) == 0, quiet.getvalue()
        assert main(["unlearn", "--checkpoint", str(fx / "model.safetensors"), "--method", "finetune",
                     "--set", "finetune.epochs=1", "--out", str(fx / "unlearned")]) == 0, quiet.getvalue()
    labels = np.repeat(np.arange(3), 20)
    np.savez(fx / "small.npz", x_train=np.random.default_rng(0).random((60, 8, 8), dtype=np.float32),
             y_train=labels, x_test=np.random.default_rng(1).random((30, 8, 8), dtype=np.float32),
             y_test=np.repeat(np.arange(3), 10))
    (fx / "spec.toml").write_text('[data]\ndataset = "digits"\ntrain_subset = 300\n[model]\nepochs = 1\n'
                                  '[methods]\nrun = ["finetune"]\n')


def char_device(path: Path) -> None:
    """A character device (a copy of /dev/null's node) at ``path``, where the system allows it,
    else a FIFO; never the real /dev/null, which a buggy writer would replace."""
    import stat

    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (OSError, AttributeError):
        os.mkfifo(path)


def rewrite_checkpoint(source: Path, target: Path, **metadata_changes) -> None:
    """A copy of a checkpoint with its metadata changed (and a valid checksum)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from memunlearn.io import sha256_of_tensors

    tensors = load_file(str(source))
    with safe_open(str(source), framework="pt") as handle:
        header = handle.metadata()
    meta = json.loads(header["memunlearn"])
    meta.update(metadata_changes)
    save_file(tensors, str(target), metadata={"memunlearn": json.dumps(meta),
                                             "memunlearn_sha256": sha256_of_tensors(tensors)})


def write_mask(source: Path, target: Path, fill: bool | None = None, shape_bug: bool = False) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from memunlearn.io import sha256_of_tensors

    tensors = load_file(str(source))
    with safe_open(str(source), framework="pt") as handle:
        header = handle.metadata()
    if fill is not None:
        tensors = {k: torch.full_like(v, fill) for k, v in tensors.items()}
    if shape_bug:
        name = sorted(tensors)[0]
        tensors[name] = torch.ones(3, 3, dtype=torch.bool)
    save_file(tensors, str(target), metadata={**header, "memunlearn_sha256": sha256_of_tensors(tensors)})


# ---------------------------------------------------------------------------------------- cases

BIG = {"2^32": str(2**32), "2^63": str(2**63), "2^64": str(2**64), "10^30": str(10**30), "-1": "-1"}


def score_files(d: Path, n: int = 300) -> dict[str, Path]:
    """Bad score files (RUM and memorization forget sets need one score per training example)."""
    files = {}
    def put(name, writer):
        files[name] = d / f"{name}.npy"
        writer(files[name])
    put("short", lambda p: np.save(p, np.zeros(n - 1)))
    put("nan", lambda p: np.save(p, np.full(n, np.nan)))  # some NaN = "no score" (documented); all NaN = nothing
    put("inf", lambda p: np.save(p, np.r_[np.full(1, np.inf), np.zeros(n - 1)]))
    put("strings", lambda p: np.save(p, np.array(["a"] * n)))
    put("twod", lambda p: np.save(p, np.zeros((n, 2))))
    put("pickled", lambda p: p.write_bytes(pickle.dumps(list(range(n)))))
    put("objects", lambda p: np.save(p, np.array([1.0] * n, dtype=object), allow_pickle=True))
    put("garbage", lambda p: p.write_bytes(b"\x93NUMPY garbage" * 10))
    put("empty", lambda p: p.write_bytes(b""))
    put("bools", lambda p: np.save(p, np.zeros(n, dtype=bool)))
    files["missing"] = d / "missing.npy"
    return files


def index_files(d: Path) -> dict[str, Path]:
    files = {}
    def text(name, content):
        files[name] = d / f"{name}.txt"
        files[name].write_text(content)
    text("commas", "1,2,3\n")
    text("words", "one\ntwo\n")
    text("floats", "1.5\n2\n")
    text("huge", f"{2**70}\n")
    text("int64max", f"{2**63 - 1}\n")
    text("negative", "-3\n")
    text("duplicates", "4\n4\n")
    text("empty", "")
    text("comment-only", "# nothing\n")
    text("range", "100000\n")
    files["binary"] = d / "binary.txt"
    files["binary"].write_bytes(bytes(range(256)))
    for name, array in (("twod", np.zeros((2, 2), dtype=np.int64)), ("strings", np.array(["1", "2"])),
                        ("floats-npy", np.array([0.5, 1.5])), ("bools", np.array([True, False])),
                        ("uint64", np.array([2**64 - 1], dtype=np.uint64)), ("empty-npy", np.zeros(0, dtype=np.int64))):
        files[name] = d / f"{name}.npy"
        np.save(files[name], array)
    files["pickled-npy"] = d / "pickled-npy.npy"
    np.save(files["pickled-npy"], np.array([1, 2], dtype=object), allow_pickle=True)
    files["missing"] = d / "missing.txt"
    return files


def cases(fx: Path, work: Path) -> list[dict]:
    """Every case: id, argv (list), and an optional ``setup(case_dir)`` making its bad files."""
    ck, mask, run_dir = fx / "model.safetensors", fx / "mask.safetensors", fx / "run"
    res = run_dir / "results.json"
    out: list[dict] = []

    def add(cid, argv, setup=None):
        out.append({"id": cid, "argv": [str(a) for a in argv], "setup": setup})

    data_cmds = {
        "run": ["run", "--dataset", "digits", *FAST, "--methods", "finetune", "--no-tuned"],
        "rum": ["rum", "--dataset", "digits", *FAST, "--pipeline", "none,finetune,finetune"],
        "train": ["train", "--dataset", "digits", *FAST, "--out", "m.safetensors"],
        "tune": ["tune", "--dataset", "digits", *FAST, "--methods", "finetune", "--trials", "1", "--out", "h.toml"],
        "pool": ["memorization", "pool", "--dataset", "digits", *FAST, "--pool-size", "2"],
        "scores": ["memorization", "scores", "--dataset", "digits", *FAST, "--pool-size", "2", "--out", "s.npy"],
        "proxies": ["memorization", "proxies", "--dataset", "digits", *FAST, "--proxies", "confidence", "--out", "px"],
        "compare": ["memorization", "compare", "--dataset", "digits", *FAST, "--pool-size", "2", "--proxies", "confidence"],
    }
    ck_cmds = {
        "localize": ["localize", "--checkpoint", ck, "--out", "mask.safetensors"],
        "unlearn": ["unlearn", "--checkpoint", ck, "--method", "finetune", "--out", "u"],
    }
    every = {**data_cmds, **ck_cmds}

    # 6. abbreviations
    for name, base in every.items():
        add(f"abbrev/{name}/--epoch", [*base, "--epoch", "1"] if name in data_cmds else [*base, "--fas"])
        add(f"abbrev/{name}/--se", [*base, "--se", "1"])
    add("abbrev/report/--form", ["report", run_dir, "--form", "md"])
    add("abbrev/run/--no-noise", [*data_cmds["run"], "--no-noise", "--out", "o"])

    # 3. seeds out of range
    for name in ("run", "rum", "train", "proxies", "pool", "localize", "unlearn"):
        base = every[name]
        for label, value in BIG.items():
            flag = "--pool-seed" if name == "pool" else "--seed"
            add(f"seed/{name}/{label}", [*base, flag, value])
    for name in ("run", "rum"):
        add(f"seeds/{name}/10^12", [*every[name], "--seeds", str(10**12)])
        add(f"seeds/{name}/2^63-near", [*every[name], "--seed", str(2**63 - 2), "--seeds", "3"])
    add("seed/tune/tuning-seed-2^63", [*data_cmds["tune"], "--tuning-seed", str(2**63)])

    # 3. width / epochs / sizes
    for name in ("run", "rum", "train", "pool", "proxies", "tune"):
        base = every[name]
        add(f"width/{name}/10^7", [*base, "--width", str(10**7)])
        add(f"epochs/{name}/10^9", [*base, "--epochs", str(10**9)])
        add(f"train-subset/{name}/10^12", [*base, "--train-subset", str(10**12)])
        add(f"image-size/{name}/10^6", [*base, "--image-size", str(10**6)])
    for name in ("run", "unlearn", "rum"):
        add(f"set-epochs/{name}/10^9", [*every[name], "--set", "finetune.epochs=1000000000"])
        add(f"set-epochs/{name}/2^70", [*every[name], "--set", f"finetune.epochs={2**70}"])
        add(f"set-lr/{name}/nan", [*every[name], "--set", "finetune.lr=nan"])
        add(f"set-lr/{name}/string", [*every[name], "--set", "finetune.lr=fast"])
        add(f"set-unknown/{name}", [*every[name], "--set", "finetune.nosuch=1"])
        add(f"set-bad-syntax/{name}", [*every[name], "--set", "finetune"])
    for name in ("run", "pool", "scores", "compare"):
        add(f"workers/{name}/100000", [*every[name], "--workers", "100000"])
    add("pool-size/pool/10^9", [*data_cmds["pool"][:-2], "--pool-size", str(10**9)])
    add("subset-fraction/pool/2", [*data_cmds["pool"], "--subset-fraction", "2"])
    add("subset-fraction/pool/nan", [*data_cmds["pool"], "--subset-fraction", "nan"])
    add("member-threads/pool/10^6", [*data_cmds["pool"], "--member-threads", str(10**6)])
    add("requests/run/10^9", [*data_cmds["run"], "--requests", str(10**9)])
    add("trials/tune/10^9", [*data_cmds["tune"], "--trials", str(10**9)])
    add("validation/tune/10^9", [*data_cmds["tune"], "--validation", str(10**9)])
    add("cost-cap/tune/inf", [*data_cmds["tune"], "--cost-cap", "inf"])
    add("cost-cap/tune/nan", [*data_cmds["tune"], "--cost-cap", "nan"])
    add("test-fraction/run/2", [*data_cmds["run"], "--test-fraction", "2"])
    add("test-fraction/run/nan", [*data_cmds["run"], "--test-fraction", "nan"])
    add("batch-size/localize/10^12", [*ck_cmds["localize"], "--batch-size", str(10**12)])

    # 4. names
    for name in ("run", "rum", "train", "tune", "pool", "proxies"):
        base = every[name]
        add(f"model/{name}/empty", [*base, "--model", ""])
        add(f"model/{name}/nosuch", [*base, "--model", "nosuch"])
        add(f"dataset/{name}/empty", [*base, "--dataset", ""])
        add(f"dataset/{name}/nosuch", [*base, "--dataset", "nosuch"])
        add(f"device/{name}/tpu", [*base, "--device", "tpu"])
        add(f"data-dir/{name}/missing", [*base, "--data-dir", "no/such/dir"])
    for name in ("localize", "unlearn"):
        add(f"device/{name}/tpu", [*every[name], "--device", "tpu"])
        add(f"dataset/{name}/nosuch", [*every[name], "--dataset", "nosuch"])
    for value in ("", "nosuch", "rum:none:none:none", "finetune,finetune", "rum:foo", "rum", "rum:none:finetune",
                  ",", "vanilla:", "shuffle:none", "rum-f:finetune:finetune", "finetune,,", "retrain:finetune"):
        add(f"methods/run/{value or 'empty'}", [*data_cmds["run"][:-3], "--no-tuned", "--methods", value])
    for value in ("", "nosuch", "none,none,none", "finetune:salun", "none"):
        add(f"pipeline/rum/{value or 'empty'}", [*data_cmds["rum"][:-2], "--pipeline", value])
    add("variant/rum/nosuch", [*data_cmds["rum"], "--variant", "nosuch"])
    add("score/rum/nosuch", [*data_cmds["rum"], "--score", "nosuch"])
    add("rum-score/run/nosuch", [*data_cmds["run"][:-3], "--methods", "rum-f:finetune", "--rum-score", "nosuch"])
    add("metrics/run/nosuch", [*data_cmds["run"], "--metrics", "nosuch"])
    add("metrics/run/twice", [*data_cmds["run"], "--metrics", "ulira,ulira"])
    add("proxies/proxies/nosuch", [*data_cmds["proxies"], "--proxies", "nosuch"])
    add("proxies/proxies/empty", [*data_cmds["proxies"], "--proxies", ","])
    add("proxies/proxies/twice", [*data_cmds["proxies"][:-4], "--proxies", "confidence,confidence", "--out", "px"])
    add("executor/pool/nosuch", [*data_cmds["pool"], "--executor", "nosuch"])
    add("method/unlearn/empty", ["unlearn", "--checkpoint", ck, "--method", "", "--out", "u"])
    add("method/unlearn/nosuch", ["unlearn", "--checkpoint", ck, "--method", "nosuch", "--out", "u"])
    add("set/unlearn/other-method", [*ck_cmds["unlearn"], "--set", "salun.lr=0.1"])
    add("strategy/localize/nosuch", [*ck_cmds["localize"], "--strategy", "nosuch"])
    for value in ("0", "-1", "2", "nan", "1e-12", "inf"):
        add(f"budget/localize/{value}", [*ck_cmds["localize"], "--budget", value])
    for value in ("0", "nan", "5"):
        add(f"topk-fraction/localize/{value}", [*ck_cmds["localize"], "--topk-fraction", value])

    # 4. forget rules
    bad_rules = ["iid:", "iid:1e-9", "iid:0", "iid:1", "iid:abc", "iid:nan", "iid:-0.1", "classes:3,3", "classes:",
                 "classes:99", "classes:a", "classes:3:2", "full-class:", "full-class:3,3", "full-class:0,1,2,3,4,5,6,7,8,9",
                 "mislabeled:2", "mislabeled:", "nosuch:1", "", ":", "indices:", "memorization:",
                 "memorization:high:nosuchproxy", "memorization:nosuch", "memorization:high:confidence:2",
                 "entanglement:foo", "entanglement:high:1", "entanglement:high:x", "backdoor:2", "backdoor:0.1:99",
                 "backdoor:", "iid:0.1:0.2"]
    for name in ("run", "rum", "tune", "localize", "unlearn"):
        base = every[name]
        for rule in bad_rules if name in ("run", "localize") else bad_rules[::3]:
            add(f"forget/{name}/{rule or 'empty'}", [*base, "--forget", rule])
    for name in ("run", "tune"):
        add(f"forget/{name}/twice", [*every[name], "--forget", "iid:0.1", "--forget", "iid:0.1"])
        add(f"forget/{name}/two-bad", [*every[name], "--forget", "iid:0.1", "--forget", "memorization:high:nosuchproxy",
                                        "--forget", "iid:abc"])
        add(f"forget/{name}/good-then-bad-score-file", [*every[name], "--forget", "iid:0.1",
                                                         "--forget", "memorization:high:missing.npy"])

    # 2. score files
    for kind in ("short", "nan", "inf", "strings", "twod", "pickled", "objects", "garbage", "empty", "bools", "missing"):
        def setup(d, kind=kind):
            score_files(d)
        add(f"score-file/run-forget/{kind}", [*data_cmds["run"], "--forget", f"memorization:high:{kind}.npy"], setup)
        add(f"score-file/rum-score/{kind}", [*data_cmds["rum"], "--score", f"{kind}.npy"], setup)
        add(f"score-file/run-rum-score/{kind}", [*data_cmds["run"][:-3], "--methods", "rum-f:finetune",
                                                 "--rum-score", f"{kind}.npy"], setup)
        if kind in ("short", "nan", "strings", "garbage", "missing"):
            add(f"score-file/localize-forget/{kind}", [*ck_cmds["localize"], "--forget", f"memorization:high:{kind}.npy"], setup)
            add(f"score-file/compare-scores/{kind}", [*data_cmds["compare"], "--scores", f"{kind}.npy"], setup)
            add(f"score-file/mix/{kind}", [*data_cmds["rum"], "--forget", f"memorization:mix:{kind}.npy"], setup)

    # index files
    for kind in ("commas", "words", "floats", "huge", "int64max", "negative", "duplicates", "empty", "comment-only",
                 "range", "binary", "twod", "strings", "floats-npy", "bools", "uint64", "empty-npy", "pickled-npy",
                 "missing"):
        suffix = ".npy" if kind in ("twod", "strings", "floats-npy", "bools", "uint64", "empty-npy", "pickled-npy") else ".txt"
        def setup(d):
            index_files(d)
        add(f"index-file/run/{kind}", [*data_cmds["run"], "--forget", f"indices:{kind}{suffix}"], setup)
        if kind in ("commas", "twod", "strings", "huge", "binary", "missing"):
            add(f"index-file/unlearn/{kind}", [*ck_cmds["unlearn"], "--forget", f"indices:{kind}{suffix}"], setup)
            add(f"index-file/localize/{kind}", [*ck_cmds["localize"], "--forget", f"indices:{kind}{suffix}"], setup)

    # 3/4. checkpoints and masks
    def ck_variant(**changes):
        def setup(d):
            rewrite_checkpoint(ck, d / "bad.safetensors", **changes)
        return setup
    for label, changes in (("width-string", {"width": "wide"}), ("width-huge", {"width": 10**7}),
                           ("width-negative", {"width": -4}), ("model-unknown", {"model": "nosuch"}),
                           ("classes-string", {"num_classes": "ten"}), ("classes-zero", {"num_classes": 0}),
                           ("image-size-huge", {"image_size": 10**6}), ("no-model", {"model": None}),
                           ("other-dataset", {"dataset": "fashion-mnist"}), ("fingerprint", {"data_fingerprint": "00"}),
                           ("channels-3", {"in_channels": 3}), ("width-float", {"width": 16.5})):
        for name in ("localize", "unlearn"):
            argv = [a if a != str(ck) else "bad.safetensors" for a in map(str, ck_cmds[name])]
            add(f"checkpoint/{name}/{label}", argv, ck_variant(**changes))
    def garbage(d):
        (d / "bad.safetensors").write_bytes(b"\x00" * 64)
    def text_ck(d):
        (d / "bad.safetensors").write_text("hello")
    def truncated(d):
        (d / "bad.safetensors").write_bytes(ck.read_bytes()[:200])
    def npz_ck(d):
        shutil.copy(fx / "small.npz", d / "bad.safetensors")
    for label, setup in (("garbage", garbage), ("text", text_ck), ("truncated", truncated), ("npz", npz_ck),
                         ("missing", None)):
        for name in ("localize", "unlearn"):
            argv = [a if a != str(ck) else "bad.safetensors" for a in map(str, ck_cmds[name])]
            add(f"checkpoint/{name}/{label}", argv, setup)
    add("checkpoint/unlearn/other-dataset-npz", [*ck_cmds["unlearn"], "--dataset", "npz", "--data-dir", fx / "small.npz"])
    add("checkpoint/localize/other-dataset-npz", [*ck_cmds["localize"], "--dataset", "npz", "--data-dir", fx / "small.npz"])
    add("checkpoint/unlearn/mask-is-checkpoint", [*ck_cmds["unlearn"], "--mask", ck])
    add("checkpoint/unlearn/oracle-is-mask", [*ck_cmds["unlearn"], "--oracle", mask])
    add("checkpoint/unlearn/oracle-missing", [*ck_cmds["unlearn"], "--oracle", "none.safetensors"])
    add("checkpoint/unlearn/mask-missing", [*ck_cmds["unlearn"], "--mask", "none.safetensors"])
    add("checkpoint/unlearn/directory", ["unlearn", "--checkpoint", fx, "--method", "finetune", "--out", "u"])
    for label, kwargs in (("all-false", {"fill": False}), ("wrong-shape", {"shape_bug": True})):
        def setup(d, kwargs=kwargs):
            write_mask(mask, d / "m.safetensors", **kwargs)
        add(f"mask/unlearn/{label}", [*ck_cmds["unlearn"], "--mask", "m.safetensors"], setup)
        add(f"mask/localize-reference/{label}", [*ck_cmds["localize"], "--strategy", "random-channel",
                                                 "--reference", "m.safetensors"], setup)
    add("mask/unlearn/garbage", [*ck_cmds["unlearn"], "--mask", "g.safetensors"],
        lambda d: (d / "g.safetensors").write_bytes(b"garbage!" * 8))

    # 1. outputs onto inputs and odd outputs
    add("out/report/results.json", ["report", run_dir, "--out", res])
    add("out/report/results.json-md", ["report", run_dir, "--out", res, "--format", "md"])
    add("out/report/results-file-itself", ["report", res, "--out", res])
    add("out/report/fifo", ["report", run_dir, "--out", "pipe"], lambda d: os.mkfifo(d / "pipe"))
    add("out/report/char-device", ["report", run_dir, "--out", "null"], lambda d: char_device(d / "null"))
    add("out/report/dir-report-html-is-dir", ["report", run_dir, "--out", "o"], lambda d: (d / "o" / "report.html").mkdir(parents=True))
    add("out/localize/checkpoint", ["localize", "--checkpoint", ck, "--out", ck])
    add("out/localize/reference", ["localize", "--checkpoint", ck, "--strategy", "random-channel", "--reference", mask,
                                   "--out", mask])
    add("out/localize/fifo", ["localize", "--checkpoint", ck, "--out", "pipe"], lambda d: os.mkfifo(d / "pipe"))
    add("out/localize/char-device", ["localize", "--checkpoint", ck, "--out", "null"], lambda d: char_device(d / "null"))
    add("out/localize/dir", ["localize", "--checkpoint", ck, "--out", "adir"], lambda d: (d / "adir").mkdir())
    add("out/localize/under-file", ["localize", "--checkpoint", ck, "--out", Path(ck) / "m.safetensors"])
    add("out/unlearn/checkpoint-folder", ["unlearn", "--checkpoint", fx / "unlearned" / "model.safetensors",
                                          "--method", "finetune", "--out", fx / "unlearned"])
    add("out/unlearn/checkpoint-file", ["unlearn", "--checkpoint", ck, "--method", "finetune", "--out", ck])
    add("out/unlearn/mask-folder", ["unlearn", "--checkpoint", ck, "--method", "finetune", "--mask", "o/model.safetensors",
                                    "--out", "o"], lambda d: (shutil.copytree(fx / "unlearned", d / "o"),
                                                              shutil.copy(mask, d / "o" / "model.safetensors")))
    add("out/unlearn/evaluation-is-dir", [*ck_cmds["unlearn"][:-1], "o"], lambda d: (d / "o" / "evaluation.json").mkdir(parents=True))
    add("out/unlearn/model-is-dir", [*ck_cmds["unlearn"][:-1], "o"], lambda d: (d / "o" / "model.safetensors").mkdir(parents=True))
    add("out/unlearn/indices-is-dir", [*ck_cmds["unlearn"][:-1], "o"], lambda d: (d / "o" / "forget_indices.txt").mkdir(parents=True))
    add("out/unlearn/fifo", [*ck_cmds["unlearn"][:-1], "pipe"], lambda d: os.mkfifo(d / "pipe"))
    add("out/train/fifo", [*data_cmds["train"][:-1], "pipe"], lambda d: os.mkfifo(d / "pipe"))
    add("out/train/char-device", [*data_cmds["train"][:-1], "null"], lambda d: char_device(d / "null"))
    add("out/train/dir", [*data_cmds["train"][:-1], "adir"], lambda d: (d / "adir").mkdir())
    add("out/train/under-file", [*data_cmds["train"][:-1], "f/m.safetensors"], lambda d: (d / "f").write_text("x"))
    add("out/train/empty", [*data_cmds["train"][:-1], ""])
    add("out/run/spec-results-folder", ["run", res, "--out", run_dir])
    add("out/run/results-is-dir", [*data_cmds["run"], "--out", "o"], lambda d: (d / "o" / "results.json").mkdir(parents=True))
    add("out/run/report-is-dir", [*data_cmds["run"], "--out", "o"], lambda d: (d / "o" / "report.html").mkdir(parents=True))
    add("out/run/indices-is-dir", [*data_cmds["run"], "--out", "o"],
        lambda d: (d / "o" / "forget_indices_seed0.txt").mkdir(parents=True))
    add("out/run/indices-json-is-dir", [*data_cmds["run"], "--out", "o"],
        lambda d: (d / "o" / "forget_indices_seed0.json").mkdir(parents=True))
    add("out/run/fifo", [*data_cmds["run"], "--out", "pipe"], lambda d: os.mkfifo(d / "pipe"))
    add("out/run/file", [*data_cmds["run"], "--out", ck])
    add("out/run/spec-file", [*data_cmds["run"], "--out", fx / "spec.toml"])
    add("out/rum/results-is-dir", [*data_cmds["rum"], "--out", "o"], lambda d: (d / "o" / "results.json").mkdir(parents=True))
    add("out/rum/file", [*data_cmds["rum"], "--out", ck])
    add("out/tune/spec", ["tune", fx / "spec.toml", "--out", fx / "spec.toml"])
    add("out/tune/results", ["tune", res, "--out", res])
    add("out/run/hparams-file", ["run", *FAST, "--methods", "finetune", "--hparams", "h.toml", "--out", "h.toml"],
        lambda d: (d / "h.toml").write_text("[finetune]\nlr = 0.1\n"))
    add("out/tune/trials-is-dir", [*data_cmds["tune"]], lambda d: (d / "h.toml.trials.json").mkdir())
    add("out/tune/fifo", [*data_cmds["tune"][:-1], "pipe"], lambda d: os.mkfifo(d / "pipe"))
    add("out/tune/dir", [*data_cmds["tune"][:-1], "adir"], lambda d: (d / "adir").mkdir())
    add("out/scores/json-is-dir", data_cmds["scores"], lambda d: (d / "s.json").mkdir())
    add("out/scores/stderr-is-dir", data_cmds["scores"], lambda d: (d / "s.stderr.npy").mkdir())
    add("out/scores/fifo", [*data_cmds["scores"][:-1], "pipe.npy"], lambda d: os.mkfifo(d / "pipe.npy"))
    add("out/compare/scores-input", [*data_cmds["compare"], "--scores", "e.npy", "--out", "e.npy"],
        lambda d: np.save(d / "e.npy", np.zeros(300)))
    add("out/compare/dir", [*data_cmds["compare"], "--out", "adir"], lambda d: (d / "adir").mkdir())
    add("out/proxies/file-is-dir", data_cmds["proxies"], lambda d: (d / "px" / "confidence.npy").mkdir(parents=True))
    add("out/proxies/json-is-dir", data_cmds["proxies"], lambda d: (d / "px" / "proxies.json").mkdir(parents=True))
    add("out/proxies/file", [*data_cmds["proxies"][:-1], ck])
    add("out/pool/summary-is-dir", [*data_cmds["pool"], "--out", "adir"], lambda d: (d / "adir").mkdir())
    add("out/pool/pool-dir-file", [*data_cmds["pool"], "--pool-dir", ck])

    # 2. cache subfolders that are files
    for sub in ("checkpoints", "cells", "datasets", "pools"):
        def setup(d, sub=sub):
            (d / "c").mkdir()
            (d / "c" / sub).write_text("not a folder")
        for name in ("run", "train", "rum", "proxies"):
            add(f"cache/{name}/{sub}-is-file", [*every[name], "--cache-dir", "c"], setup)
    add("cache/run/cache-is-file", [*data_cmds["run"], "--cache-dir", ck])

    # 4. spec files
    specs = {
        "methods-run-string": '[methods]\nrun = "finetune"\n',
        "methods-run-empty": '[methods]\nrun = []\n',
        "methods-run-int": '[methods]\nrun = 3\n',
        "seeds-first-2^63": f'[methods]\nrun = ["finetune"]\n[seeds]\nfirst = {2**63 - 1}\n',
        "seeds-first-2^32": f'[methods]\nrun = ["finetune"]\n[seeds]\nfirst = {2**32}\n',
        "seeds-count-10^12": '[methods]\nrun = ["finetune"]\n[seeds]\ncount = 1000000000000\n',
        "seeds-list-huge": f'[methods]\nrun = ["finetune"]\n[seeds]\nlist = [{2**63 - 1}]\n',
        "model-width-10^7": '[methods]\nrun = ["finetune"]\n[model]\nwidth = 10000000\n',
        "model-epochs-10^9": '[methods]\nrun = ["finetune"]\n[model]\nepochs = 1000000000\n',
        "model-name-empty": '[methods]\nrun = ["finetune"]\n[model]\nname = ""\n',
        "finetune-epochs-10^9": '[methods]\nrun = ["finetune"]\n[methods.finetune]\nepochs = 1000000000\n',
        "data-train-subset-huge": f'[methods]\nrun = ["finetune"]\n[data]\ntrain_subset = {2**63 - 1}\n',
        "data-validation-huge": '[methods]\nrun = ["finetune"]\n[data]\nvalidation = 100000000\n',
        "executor-workers-10^5": '[methods]\nrun = ["finetune"]\n[executor]\nworkers = 100000\n',
        "tuning-space-low>high": '[methods]\nrun = ["finetune"]\n[tuning.space.finetune]\nlr = {low = 0.1, high = 0.01}\n',
        "tuning-space-unknown-param": '[methods]\nrun = ["finetune"]\n[tuning.space.finetune]\nnosuch = {low = 0.1, high = 1.0}\n',
        "tuning-space-unknown-method": '[methods]\nrun = ["finetune"]\n[tuning.space.nosuch]\nlr = {low = 0.1, high = 1.0}\n',
        "tuning-space-not-table": '[methods]\nrun = ["finetune"]\n[tuning.space]\nfinetune = 3\n',
        "tuning-space-list-low>high": '[methods]\nrun = ["finetune"]\n[tuning.space.finetune]\nlr = [0.1, 0.01]\n',
        "tuning-space-list-unknown": '[methods]\nrun = ["finetune"]\n[tuning.space.finetune]\nnosuch = [0.1, 1.0]\n',
        "tuning-trials-10^9": '[methods]\nrun = ["finetune"]\n[tuning]\ntrials = 1000000000\n',
        "forget-twice": '[methods]\nrun = ["finetune"]\n[forget]\nrules = ["iid:0.1", "iid:0.1"]\n',
        "forget-bad-rule": '[methods]\nrun = ["finetune"]\n[forget]\nrules = ["iid:0.1", "nosuch:1"]\n',
        "forget-two-bad": '[methods]\nrun = ["finetune"]\n[forget]\nrules = ["iid:abc", "classes:99"]\n',
        "pool-fraction-nan": '[methods]\nrun = ["finetune"]\n[evaluation]\npool_fraction = nan\n',
        "cost-cap-inf": '[methods]\nrun = ["finetune"]\n[tuning]\ncost_cap = inf\n',
        "requests-huge": '[methods]\nrun = ["finetune"]\n[requests]\ncount = 1000000000\n',
        "neurips-models-huge": '[methods]\nrun = ["finetune"]\n[evaluation]\nneurips2023_models = 1000000000\n',
        "pool-size-huge": '[methods]\nrun = ["finetune"]\n[evaluation]\npool_size = 1000000000\n',
        "not-toml": "this is = = not toml\n",
        "binary": None,
        "unknown-section": '[nosuch]\nx = 1\n',
        "hparams-file-missing": '[methods]\nrun = ["finetune"]\n[run]\nhparams_file = "none.toml"\n',
    }
    for label, text in specs.items():
        def setup(d, text=text):
            if text is None:
                (d / "s.toml").write_bytes(bytes(range(256)))
            else:
                (d / "s.toml").write_text('[data]\ntrain_subset = 300\n' + text if "[data]" not in text else text)
        add(f"spec/run/{label}", ["run", "s.toml", "--out", "o"], setup)
        if label in ("methods-run-string", "tuning-space-low>high", "tuning-space-list-low>high", "tuning-space-unknown-param", "seeds-first-2^63",
                     "tuning-trials-10^9", "forget-twice", "tuning-space-unknown-method", "tuning-space-not-table"):
            add(f"spec/tune/{label}", ["tune", "s.toml", "--out", "h.toml"], setup)

    # results files (report, and run RESULTS.json)
    def results_variant(change):
        def setup(d):
            raw = json.loads(res.read_text())
            change(raw)
            (d / "r.json").write_text(json.dumps(raw))
        return setup
    def set_summary(value):
        def change(raw):
            stats = raw["groups"][0]["summary"]
            first = next(iter(stats))
            key = next(iter(stats[first]))
            stats[first][key] = value
        return change
    def set_per_seed(value):
        def change(raw):
            row = raw["groups"][0]["per_seed"][0]["methods"]
            first = next(iter(row))
            metrics = row[first].get("metrics", row[first])
            metrics[next(iter(metrics))] = value
        return change
    variants = {
        "future-format": lambda raw: raw.update(format=99),
        "format-string": lambda raw: raw.update(format="two"),
        "summary-nan": set_summary(float("nan")),
        "summary-string": set_summary("high"),
        "summary-inf": set_summary(float("inf")),
        "summary-list": set_summary([1, 2]),
        "per-seed-nan": set_per_seed(float("nan")),
        "per-seed-string": set_per_seed("x"),
        "groups-dict": lambda raw: raw.update(groups={}),
        "groups-empty": lambda raw: raw.update(groups=[]),
        "spec-missing": lambda raw: raw.pop("spec"),
        "spec-methods-string": lambda raw: raw["spec"]["methods"].update(run="finetune"),
    }
    for label, change in variants.items():
        if label not in ("spec-missing", "spec-methods-string"):  # a report reads no spec
            add(f"results/report/{label}", ["report", "r.json", "--out", "o.html"], results_variant(change))
            add(f"results/report-md/{label}", ["report", "r.json", "--out", "o.md", "--format", "md"],
                results_variant(change))
        if label in ("future-format", "spec-missing", "spec-methods-string", "format-string"):
            add(f"results/run-again/{label}", ["run", "r.json", "--out", "o"], results_variant(change))
    def deep(d, depth=10000):
        (d / "r.json").write_text("[" * depth + "]" * depth)
    def deep_obj(d, depth=10000):
        (d / "r.json").write_text('{"a":' * depth + "1" + "}" * depth)
    for label, setup in (("nested-list", deep), ("nested-object", deep_obj),
                         ("empty", lambda d: (d / "r.json").write_text("")),
                         ("not-json", lambda d: (d / "r.json").write_text("{oops")),
                         ("list", lambda d: (d / "r.json").write_text("[1, 2]")),
                         ("binary", lambda d: (d / "r.json").write_bytes(bytes(range(256)))),
                         ("nan-literal", lambda d: (d / "r.json").write_text('{"format": NaN}')),
                         ("huge-int", lambda d: (d / "r.json").write_text('{"format": ' + "9" * 5000 + "}"))):
        add(f"results/report/{label}", ["report", "r.json", "--out", "o.html"], setup)
        add(f"results/run-again/{label}", ["run", "r.json", "--out", "o"], setup)
    add("results/report/missing", ["report", "none.json"])
    add("results/report/empty-dir", ["report", "e"], lambda d: (d / "e").mkdir())
    add("results/report/fifo", ["report", "p.json", "--out", "o.html"], lambda d: os.mkfifo(d / "p.json"))

    # data: npz / image folders with one class, bad labels
    def npz(name, **arrays):
        def setup(d):
            base = dict(np.load(fx / "small.npz"))
            base.update(arrays)
            np.savez(d / f"{name}.npz", **base)
        return setup
    npz_cases = {
        "one-class": {"y_train": np.zeros(60, dtype=np.int64), "y_test": np.zeros(30, dtype=np.int64)},
        "labels-huge": {"y_train": np.full(60, 2**62, dtype=np.int64)},
        "labels-uint64": {"y_train": np.full(60, 2**64 - 1, dtype=np.uint64)},
        "labels-negative": {"y_train": np.full(60, -1, dtype=np.int64)},
        "labels-float": {"y_train": np.linspace(0, 2, 60)},
        "labels-nan": {"y_train": np.full(60, np.nan)},
        "labels-strings": {"y_train": np.array(["a"] * 60)},
        "x-nan": {"x_train": np.full((60, 8, 8), np.nan, dtype=np.float32)},
        "x-strings": {"x_train": np.array([["a"] * 8] * 60)},
        "length-mismatch": {"y_train": np.zeros(59, dtype=np.int64)},
        "x-1d": {"x_train": np.zeros(60, dtype=np.float32)},
    }
    for label, arrays in npz_cases.items():
        for name in ("run", "train"):
            base = [a for a in every[name] if a not in ("--train-subset", "300")]
            add(f"npz/{name}/{label}", [*base, "--dataset", "npz", "--data-dir", f"{label}.npz"], npz(label, **arrays))
    def one_class_folder(d):
        from PIL import Image
        for split in ("train", "test"):
            (d / "imgs" / split / "cat").mkdir(parents=True)
            for i in range(4):
                Image.new("L", (8, 8), color=i * 30).save(d / "imgs" / split / "cat" / f"{i}.png")
    def empty_folder(d):
        (d / "imgs").mkdir()
    def not_images(d):
        for split in ("train", "test"):
            for cls in ("a", "b"):
                (d / "imgs" / split / cls).mkdir(parents=True)
                (d / "imgs" / split / cls / "x.png").write_text("not a png")
    for label, setup in (("one-class", one_class_folder), ("empty", empty_folder), ("not-images", not_images)):
        for name in ("run", "train"):
            base = [a for a in every[name] if a not in ("--train-subset", "300")]
            add(f"imagefolder/{name}/{label}", [*base, "--dataset", "imagefolder", "--data-dir", "imgs"], setup)

    # hparams files for run --hparams
    for label, text in (("missing", None), ("garbage", "=== not toml"), ("unknown-method", "[nosuch]\nlr = 0.1\n"),
                        ("bad-value", '[finetune]\nlr = "fast"\n')):
        def setup(d, text=text):
            if text is not None:
                (d / "hp.toml").write_text(text)
        add(f"hparams/run/{label}", [*data_cmds["run"], "--hparams", "hp.toml"], setup)
    return out


# ----------------------------------------------------------------------------------- running


def snapshot(root: Path) -> dict[str, str]:
    files = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                files[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


@contextlib.contextmanager
def spies(started: list[str]):
    import memunlearn.cli.memorization as cli_memorization
    import memunlearn.experiment.setup as setup_module
    import memunlearn.memorization.executors as executors
    import memunlearn.training as training

    def spy(name):
        def fire(*args, **kwargs):
            started.append(name)
            raise WorkStarted(name)
        return fire

    patches = [(training, "train"), (setup_module, "train"), (torch.autograd, "backward"), (torch.autograd, "grad"),
               (cli_memorization, "_build"), (executors, "get_executor")]
    saved = [(obj, name, getattr(obj, name)) for obj, name in patches]
    for obj, name in patches:
        setattr(obj, name, spy(f"{obj.__name__}.{name}"))
    try:
        yield
    finally:
        for obj, name, value in saved:
            setattr(obj, name, value)


# Cases where the input can make sense and a one-line warning saying what happens is the answer.
WARNING_OK = {f"results/{kind}/{label}" for kind in ("report", "report-md")
              for label in ("summary-nan", "summary-inf", "per-seed-nan")}


def _alarm(signum, frame):
    raise Alarm()


def run_case(case: dict, case_dir: Path, watched: Path) -> dict:
    from memunlearn.cli import main

    case_dir.mkdir(parents=True)
    if case["setup"] is not None:
        case["setup"](case_dir)
    before = snapshot(watched)
    started: list[str] = []
    stdout, stderr = io.StringIO(), io.StringIO()
    code, error, cwd = None, None, os.getcwd()
    os.chdir(case_dir)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(ALARM_SECONDS)
    start = time.perf_counter()
    try:
        with spies(started), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = main(case["argv"])
    except WorkStarted:
        pass
    except Alarm:
        started.append("alarm")
    except SystemExit as exc:
        code = exc.code
    except BaseException as exc:  # noqa: BLE001 - a traceback is what we count
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:300]
    finally:
        signal.alarm(0)
        os.chdir(cwd)
    seconds = time.perf_counter() - start
    after = snapshot(watched)
    changed = sorted(p for p, digest in before.items() if after.get(p) != digest)
    lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("memunlearn: error") or ": error:" in line]
    if error is not None or "Traceback" in stderr.getvalue():
        verdict = "traceback"
    elif started:
        verdict = "work_started"
    elif changed:
        verdict = "overwritten"
    elif code == 0 and case["id"] in WARNING_OK and any(line.startswith("memunlearn: warning:") for line in lines):
        verdict = "warned"  # where a warning saying what will happen is the documented answer
    elif code != 2:
        verdict = "wrong_exit"
    elif len(errors) != 1 or any("\n" in e for e in errors):
        verdict = "not_one_line"
    else:
        verdict = "clean"
    return {"id": case["id"], "argv": case["argv"], "verdict": verdict, "exit": code if isinstance(code, int) else None,
            "stderr_tail": lines[-1][:300] if lines else "", "exception": error, "work_started": started[:1],
            "changed": [os.path.relpath(p, watched) for p in changed], "seconds": round(seconds, 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run only the cases whose id contains this text")
    parser.add_argument("--out", default=str(RESULTS / "attack_bad_input.json"))
    parser.add_argument("--label", default=None, help="a name for this run, stored in the JSON (e.g. before/after)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="memunlearn-attack-"))
    os.environ["MEMUNLEARN_CACHE"] = str(root / "cache")
    fx = root / "fx"
    build_fixtures(fx)
    pristine = root / "fx-pristine"
    shutil.copytree(fx, pristine)
    all_cases = cases(fx, root)
    ids = [c["id"] for c in all_cases]
    assert len(ids) == len(set(ids)), [i for i in ids if ids.count(i) > 1]
    if args.only:
        all_cases = [c for c in all_cases if args.only in c["id"]]
    results = []
    start = time.perf_counter()
    for k, case in enumerate(all_cases):
        outcome = run_case(case, root / "cases" / f"{k:04d}", root)
        results.append(outcome)
        if snapshot(fx) != {str(fx / os.path.relpath(p, pristine)): d for p, d in snapshot(pristine).items()}:
            shutil.rmtree(fx)
            shutil.copytree(pristine, fx)
        if outcome["verdict"] != "clean":
            print(f"{outcome['verdict']:>13}  {case['id']}: {outcome['exception'] or outcome['stderr_tail']}"[:220],
                  file=sys.stderr, flush=True)
    counts = {v: sum(r["verdict"] == v for r in results)
              for v in ("clean", "warned", "traceback", "wrong_exit", "work_started", "overwritten", "not_one_line")}
    families = {}
    for r in results:
        family = r["id"].split("/")[0]
        families.setdefault(family, {"cases": 0, "clean": 0})
        families[family]["cases"] += 1
        families[family]["clean"] += r["verdict"] == "clean"
    payload = {"label": args.label, "cases": len(results), "counts": counts, "families": families,
               "wall_time": round(time.perf_counter() - start, 1), "alarm_seconds": ALARM_SECONDS,
               "command": "PYTHONPATH=src python benchmarks/attack_bad_input.py" + (f" {' '.join(argv or sys.argv[1:])}"),
               "results": results}
    from memunlearn.io import write_json

    write_json(args.out, payload)
    print(json.dumps({"cases": len(results), **counts}))
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
