"""Bad input, by class (issue 24): each case exits 2 with ONE line naming the problem, before any
training (a spy on every training entry point), and every file that existed before is unchanged.

The classes: outputs that would overwrite an input or are not regular files; files and names a
run needs, validated before the first training step; numbers out of range; silently accepted
nonsense; a full disk while writing; abbreviated long options.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from memunlearn.cli import main

FAST = ["--dataset", "digits", "--train-subset", "300", "--epochs", "1"]
BASE = ["run", *FAST, "--no-tuned", "--no-noise-floor"]
RUN = [*BASE, "--methods", "finetune"]
RUM = ["rum", *FAST, "--pipeline", "none,finetune,finetune"]


class TrainingStarted(BaseException):
    """Raised by the spies: the command reached training (it must not, on bad input)."""


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """An (untrained) digits checkpoint with the metadata `memunlearn train` writes, and a run
    folder with a results.json of a real run's shape (tests/test_report.py's synthetic results);
    neither needs training."""
    from test_report import synthetic_results

    from memunlearn.checkpoints import model_metadata, save_checkpoint
    from memunlearn.experiment import RunConfig, resolve_setting

    root = tmp_path_factory.mktemp("bad-input")
    setting = resolve_setting(RunConfig(dataset="digits", train_subset=300, cache_dir=str(root / "cache")))
    channels, _, size = setting.dataset.input_shape
    save_checkpoint(root / "model.safetensors", setting.build(0), metadata=model_metadata(
        setting.model_name, setting.width, channels, setting.dataset.num_classes, size, dataset="digits",
        data_dir=None, train_subset=300, data_fingerprint=setting.dataset.fingerprint))
    (root / "run").mkdir()
    (root / "run" / "results.json").write_text(json.dumps(synthetic_results()))
    return root


@pytest.fixture
def spied(monkeypatch):
    """Every way work starts raises TrainingStarted."""
    import memunlearn.cli.memorization as cli_memorization
    import memunlearn.experiment.setup as setup_module
    import memunlearn.memorization.executors as executors
    import memunlearn.training as training

    def spy(*args, **kwargs):
        raise TrainingStarted()

    for obj, name in ((training, "train"), (setup_module, "train"), (torch.autograd, "backward"),
                      (torch.autograd, "grad"), (cli_memorization, "_build"), (executors, "get_executor")):
        monkeypatch.setattr(obj, name, spy)


def _digests(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()}


def _assert_refused(argv, expected, root, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("MEMUNLEARN_CACHE", str(root / "cache"))
    monkeypatch.chdir(tmp_path)
    before = {**_digests(root), **_digests(tmp_path)}
    try:
        code = main([str(a) for a in argv])
    except TrainingStarted:
        pytest.fail(f"training started before the error: {argv}")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (code, err)
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert expected.lower() in lines[0].lower(), lines[0]
    after = {**_digests(root), **_digests(tmp_path)}
    assert {p: d for p, d in before.items() if after.get(p) != d} == {}, "a pre-existing file changed"


def _setup(tmp_path: Path, what: str | None) -> None:
    """Bad files, by name, in the case's own folder."""
    n = 300
    makers = {
        "scores-short": lambda: np.save(tmp_path / "s.npy", np.zeros(n - 1)),
        "scores-inf": lambda: np.save(tmp_path / "s.npy", np.r_[np.inf, np.zeros(n - 1)]),
        "scores-all-nan": lambda: np.save(tmp_path / "s.npy", np.full(n, np.nan)),
        "scores-strings": lambda: np.save(tmp_path / "s.npy", np.array(["a"] * n)),
        "scores-2d": lambda: np.save(tmp_path / "s.npy", np.zeros((n, 2))),
        "scores-pickled": lambda: np.save(tmp_path / "s.npy", np.array([1.0] * n, dtype=object), allow_pickle=True),
        "scores-garbage": lambda: (tmp_path / "s.npy").write_bytes(b"\x93NUMPY garbage"),
        "scores-empty": lambda: (tmp_path / "s.npy").write_bytes(b""),
        "indices-commas": lambda: (tmp_path / "i.txt").write_text("1,2,3\n"),
        "indices-huge": lambda: (tmp_path / "i.txt").write_text(f"{2**70}\n"),
        "indices-2d": lambda: np.save(tmp_path / "i.npy", np.zeros((2, 2), dtype=np.int64)),
        "indices-strings": lambda: np.save(tmp_path / "i.npy", np.array(["1", "2"])),
        "fifo": lambda: os.mkfifo(tmp_path / "pipe"),
        "results-is-dir": lambda: (tmp_path / "o" / "results.json").mkdir(parents=True),
        "report-is-dir": lambda: (tmp_path / "o" / "report.html").mkdir(parents=True),
        "indices-is-dir": lambda: (tmp_path / "o" / "forget_indices_seed0.txt").mkdir(parents=True),
        "evaluation-is-dir": lambda: (tmp_path / "o" / "evaluation.json").mkdir(parents=True),
        "spec-run-string": lambda: (tmp_path / "s.toml").write_text('[methods]\nrun = "finetune"\n'),
        "spec-space-low>high": lambda: (tmp_path / "s.toml").write_text(
            '[methods]\nrun = ["finetune"]\n[tuning.space.finetune]\nlr = [0.1, 0.01]\n'),
        "spec-space-unknown": lambda: (tmp_path / "s.toml").write_text(
            '[methods]\nrun = ["finetune"]\n[tuning.space.finetune]\nnosuch = [0.1, 1.0]\n'),
        "spec-seed-huge": lambda: (tmp_path / "s.toml").write_text(f'[seeds]\nfirst = {2**63 - 1}\n'),
        "spec-count-huge": lambda: (tmp_path / "s.toml").write_text('[seeds]\ncount = 1000000000000\n'),
        "spec-width-huge": lambda: (tmp_path / "s.toml").write_text('[model]\nwidth = 10000000\n'),
        "npz-one-class": lambda: np.savez(tmp_path / "d.npz", x_train=np.zeros((20, 8, 8), np.float32),
                                          y_train=np.zeros(20, np.int64), x_test=np.zeros((5, 8, 8), np.float32),
                                          y_test=np.zeros(5, np.int64)),
        "npz-huge-labels": lambda: np.savez(tmp_path / "d.npz", x_train=np.zeros((20, 8, 8), np.float32),
                                            y_train=np.full(20, 2**62), x_test=np.zeros((5, 8, 8), np.float32),
                                            y_test=np.zeros(5, np.int64)),
        "cache-checkpoints-file": lambda: ((tmp_path / "c").mkdir(), (tmp_path / "c" / "checkpoints").write_text("x")),
        "cache-cells-file": lambda: ((tmp_path / "c").mkdir(), (tmp_path / "c" / "cells").write_text("x")),
    }
    if what is not None:
        makers[what]()


def _nested(path: Path, depth: int = 10_000) -> None:
    path.write_text("[" * depth + "]" * depth)


# (id, argv with {ck} {run} {res} {root} placeholders, setup, expected text in the one line)
CASES = [
    # 1. outputs never overwrite inputs; outputs are regular files
    ("report-out-results", ["report", "{run}", "--out", "{res}"], None, "is also an input"),
    ("report-out-results-md", ["report", "{run}", "--out", "{res}", "--format", "md"], None, "is also an input"),
    ("report-out-fifo", ["report", "{run}", "--out", "pipe"], "fifo", "named pipe"),
    ("localize-out-checkpoint", ["localize", "--checkpoint", "{ck}", "--out", "{ck}"], None, "is also an input"),
    ("localize-out-fifo", ["localize", "--checkpoint", "{ck}", "--out", "pipe"], "fifo", "named pipe"),
    ("unlearn-out-checkpoint-folder", ["unlearn", "--checkpoint", "{ck}", "--method", "finetune", "--out", "{root}"],
     None, "is also an input"),
    ("train-out-fifo", ["train", *FAST, "--out", "pipe"], "fifo", "named pipe"),
    ("run-out-results-again", ["run", "{res}", "--out", "{run}"], None, "overwritten"),
    # 2. every file and name a run needs, validated before the first training step
    *[(f"run-forget-{kind}", [*RUN, "--forget", "memorization:high:s.npy"], kind, "score file")
      for kind in ("scores-short", "scores-inf", "scores-all-nan", "scores-strings", "scores-2d", "scores-pickled",
                   "scores-garbage", "scores-empty")],
    *[(f"rum-score-{kind}", [*RUM, "--score", "s.npy"], kind, "score file")
      for kind in ("scores-short", "scores-inf", "scores-strings", "scores-garbage")],
    ("run-out-results-is-dir", [*RUN, "--out", "o"], "results-is-dir", "results.json is a directory"),
    ("run-out-report-is-dir", [*RUN, "--out", "o"], "report-is-dir", "report.html is a directory"),
    ("run-out-indices-is-dir", [*RUN, "--out", "o"], "indices-is-dir", "forget_indices_seed0.txt is a directory"),
    ("unlearn-out-evaluation-is-dir", ["unlearn", "--checkpoint", "{ck}", "--method", "finetune", "--out", "o"],
     "evaluation-is-dir", "evaluation.json is a directory"),
    ("run-cache-checkpoints-file", [*RUN, "--cache-dir", "c"], "cache-checkpoints-file", "is a file, not a folder"),
    ("train-cache-cells-file", ["train", *FAST, "--cache-dir", "c", "--out", "m.safetensors"], "cache-cells-file",
     "is a file, not a folder"),
    ("run-unknown-proxy", [*RUN, "--forget", "memorization:high:nosuchproxy"], None, "nosuchproxy"),
    ("run-second-rule-bad", [*RUN, "--forget", "iid:0.1", "--forget", "iid:abc"], None, "'abc' is not a fraction"),
    ("run-two-bad-rules", [*RUN, "--forget", "iid:abc", "--forget", "classes:99"], None, "2 bad forget rules"),
    # 3. numbers out of range
    ("run-seed-2^63", [*RUN, "--seed", str(2**63)], None, "below 2**32"),
    ("train-seed-2^64", ["train", *FAST, "--seed", str(2**64), "--out", "m.safetensors"], None, "below 2**32"),
    ("unlearn-seed-2^63", ["unlearn", "--checkpoint", "{ck}", "--method", "finetune", "--seed", str(2**63)], None,
     "below 2**32"),
    ("proxies-seed-2^63", ["memorization", "proxies", *FAST, "--seed", str(2**63), "--out", "px"], None, "below 2**32"),
    ("run-seeds-10^12", [*RUN, "--seeds", str(10**12)], None, "MEMUNLEARN_ALLOW_LARGE"),
    ("run-seeds-past-2^32", [*RUN, "--seed", str(2**32 - 2), "--seeds", "3"], None, "below 2**32"),
    ("train-width-10^7", ["train", *FAST, "--width", str(10**7), "--out", "m.safetensors"], None,
     "MEMUNLEARN_ALLOW_LARGE"),
    ("run-epochs-10^9", [*RUN, "--epochs", str(10**9)], None, "MEMUNLEARN_ALLOW_LARGE"),
    ("run-set-epochs-10^9", [*RUN, "--set", "finetune.epochs=1000000000"], None, "MEMUNLEARN_ALLOW_LARGE"),
    ("unlearn-set-epochs-10^9", ["unlearn", "--checkpoint", "{ck}", "--method", "finetune", "--set",
                                 "finetune.epochs=1000000000"], None, "MEMUNLEARN_ALLOW_LARGE"),
    ("run-set-int-overflow", [*RUN, "--set", f"finetune.batch_size={2**62}"], None, "at most 2**32"),
    ("run-workers-100000", [*RUN, "--workers", "100000"], None, "MEMUNLEARN_ALLOW_LARGE"),
    ("run-indices-huge", [*RUN, "--forget", "indices:i.txt"], "indices-huge", "out of range"),
    ("spec-seed-huge", ["run", "s.toml"], "spec-seed-huge", "below 2**32"),
    ("spec-count-huge", ["run", "s.toml"], "spec-count-huge", "MEMUNLEARN_ALLOW_LARGE"),
    ("spec-width-huge", ["run", "s.toml"], "spec-width-huge", "MEMUNLEARN_ALLOW_LARGE"),
    ("npz-huge-labels", ["train", "--dataset", "npz", "--data-dir", "d.npz", "--out", "m.safetensors"],
     "npz-huge-labels", "largest label"),
    # 4. silently accepted nonsense
    ("run-model-empty", [*RUN, "--model", ""], None, "must not be empty"),
    ("run-forget-empty-fraction", [*RUN, "--forget", "iid:"], None, "nothing after ':'"),
    ("run-forget-zero-examples", [*RUN, "--forget", "iid:1e-9"], None, "selects 0"),
    ("run-forget-class-twice", [*RUN, "--forget", "classes:3,3"], None, "listed twice"),
    ("run-forget-rule-twice", [*RUN, "--forget", "iid:0.1", "--forget", "iid:0.1"], None, "twice"),
    ("run-methods-all-none", [*BASE, "--methods", "rum:none:none:none"], None, "unlearns nothing"),
    ("run-methods-empty-entry", [*BASE, "--methods", "finetune,,"], None, "empty entry"),
    ("spec-methods-run-string", ["run", "s.toml"], "spec-run-string", "must be a list"),
    ("spec-space-low>high", ["run", "s.toml"], "spec-space-low>high", "empty"),
    ("spec-space-unknown", ["run", "s.toml"], "spec-space-unknown", "nosuch"),
    ("run-indices-commas", [*RUN, "--forget", "indices:i.txt"], "indices-commas", "no commas"),
    ("run-indices-2d", [*RUN, "--forget", "indices:i.npy"], "indices-2d", "1-D array of integers"),
    ("run-indices-strings", [*RUN, "--forget", "indices:i.npy"], "indices-strings", "1-D array of integers"),
    ("train-npz-one-class", ["train", "--dataset", "npz", "--data-dir", "d.npz", "--out", "m.safetensors"],
     "npz-one-class", "at least 2 classes"),
    ("localize-budget-selects-nothing", ["localize", "--checkpoint", "{ck}", "--budget", "1e-12", "--out", "m2"],
     None, "selects none"),
    ("unlearn-other-dataset", ["unlearn", "--checkpoint", "{ck}", "--method", "finetune", "--dataset",
                               "fashion-mnist"], None, "not of --dataset"),
    ("report-future-format", ["report", "r.json", "--out", "o.html"], "future", "newer than this memunlearn"),
    ("report-string-where-number", ["report", "r.json", "--out", "o.html"], "string-number",
     "should be a number"),
    ("report-nested", ["report", "r.json", "--out", "o.html"], "nested", "nested"),
    ("run-again-nested", ["run", "r.json"], "nested", "nested"),
    ("run-again-future-format", ["run", "r.json", "--out", "o"], "future", "newer than this memunlearn"),
    # 6. long options typed in full
    ("run-abbreviated-epochs", [*RUN, "--epoch", "3"], None, "unrecognized arguments: --epoch"),
    ("train-abbreviated-seed", ["train", *FAST, "--se", "3", "--out", "m.safetensors"], None, "--se"),
]


@pytest.mark.parametrize("cid, argv, setup, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_before_any_work(cid, argv, setup, expected, fixtures, spied, capsys, monkeypatch,
                                              tmp_path):
    root = fixtures
    res = root / "run" / "results.json"
    if setup in ("future", "string-number"):
        raw = json.loads(res.read_text())
        if setup == "future":
            raw["format"] = 99
        else:
            next(iter(raw["groups"][0]["summary"].values()))["acc_test"]["mean"] = "high"
        (tmp_path / "r.json").write_text(json.dumps(raw))
    elif setup == "nested":
        _nested(tmp_path / "r.json")
    else:
        _setup(tmp_path, setup)
    names = {"ck": root / "model.safetensors", "run": root / "run", "res": res, "root": root}
    argv = [a.format(**names) if isinstance(a, str) else a for a in argv]
    _assert_refused(argv, expected, root, capsys, monkeypatch, tmp_path)


def test_nan_in_results_is_a_warning_saying_what_happens(fixtures, capsys, tmp_path):
    raw = json.loads((fixtures / "run" / "results.json").read_text())
    next(iter(raw["groups"][0]["summary"].values()))["acc_test"]["mean"] = float("nan")
    (tmp_path / "r.json").write_text(json.dumps(raw))  # NaN literal: not strict JSON
    assert main(["report", str(tmp_path / "r.json"), "--out", str(tmp_path / "o.html")]) == 0
    err = capsys.readouterr().err
    assert "memunlearn: warning:" in err and "n/a" in err and (tmp_path / "o.html").is_file()


def test_output_checks_refuse_devices_and_inputs(tmp_path):
    from memunlearn.errors import OutputError
    from memunlearn.io import check_output_dir, check_output_file

    try:
        os.mknod(tmp_path / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (OSError, AttributeError):
        pytest.skip("cannot make a character device here")
    with pytest.raises(OutputError, match="is a device"):
        check_output_file(tmp_path / "null", "--out")
    (tmp_path / "in.json").write_text("{}")
    with pytest.raises(OutputError, match="also an input"):
        check_output_file(tmp_path / "sub" / ".." / "in.json", "--out", inputs=[tmp_path / "in.json"])
    os.link(tmp_path / "in.json", tmp_path / "hard.json")
    with pytest.raises(OutputError, match="also an input"):  # a hard link is the same file
        check_output_file(tmp_path / "hard.json", "--out", inputs=[tmp_path / "in.json"])
    with pytest.raises(OutputError, match="in.json"):
        check_output_dir(tmp_path, "--out", files=["in.json"], inputs=[tmp_path / "in.json"])


# 5. a full disk: a clear error naming the path and the space needed; nothing half-written


def test_full_disk_while_saving_a_checkpoint_names_path_and_size(tmp_path, monkeypatch):
    import memunlearn.checkpoints as checkpoints
    from memunlearn.errors import OutputError
    from safetensors import SafetensorError

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)  # part of the file, then the disk is full
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(checkpoints, "save_file", full_disk)
    target = tmp_path / "cache" / "model.safetensors"
    with pytest.raises(OutputError, match=r"model.safetensors: no space left .*at least 3\.8 MiB needed"):
        checkpoints.save_checkpoint(target, torch.nn.Linear(1000, 1000))
    assert [p.name for p in target.parent.iterdir()] == []  # no temporary or partial file


def test_full_disk_while_writing_json_or_npy(tmp_path, monkeypatch):
    from memunlearn.errors import OutputError
    from memunlearn.io import atomic_path, write_json

    (tmp_path / "r.json").write_text('{"old": 1}')
    real_write = Path.write_text

    def full(self, text, *args, **kwargs):
        real_write(self, text[:10])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OutputError, match="r.json: no space left"):
        write_json(tmp_path / "r.json", {"new": 2})
    monkeypatch.undo()
    assert (tmp_path / "r.json").read_text() == '{"old": 1}'  # the earlier result is intact
    import memunlearn.io as io_module

    monkeypatch.setattr(io_module, "_free_bytes", lambda path: 0)  # numpy's message on a full disk has no errno
    with pytest.raises(OutputError, match=r"x.npy: no space left .*at least 976.6 KiB needed"):
        with atomic_path(tmp_path / "x.npy"):
            raise OSError("1000000 requested and 131056 written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_full_disk_while_caching_a_dataset_warns_and_leaves_nothing(tmp_path, monkeypatch):
    import warnings

    import memunlearn.data as data

    real = np.save
    calls = []

    def full(handle, array, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(handle, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", full)
    raw = data.RawData(np.zeros((4, 1, 2, 2), np.float32), np.array([0, 1, 0, 1]), np.zeros((2, 1, 2, 2), np.float32),
                       np.array([0, 1]), ["a", "b"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data._write_cache(tmp_path / "entry", raw, "f")
    assert any("no space left" in str(w.message) for w in caught)
    assert not (tmp_path / "entry").exists()  # no half-written cache entry


def test_large_values_are_allowed_with_the_documented_variable(monkeypatch):
    from memunlearn.cli.common import bounded_int

    with pytest.raises(Exception, match="MEMUNLEARN_ALLOW_LARGE=1"):
        bounded_int("epochs")("1000000000")
    monkeypatch.setenv("MEMUNLEARN_ALLOW_LARGE", "1")
    assert bounded_int("epochs")("1000000000") == 10**9
