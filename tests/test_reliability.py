"""Never lose work, never trust damaged state (issue 10): outputs checked before any work, diverged
weights recorded, every value validated, checksums on every artefact, locks, interrupts, permissions."""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from pathlib import Path

import pytest
import torch

from memunlearn import build_model
from memunlearn.checkpoints import cached, load_model, model_metadata, save_checkpoint
from memunlearn.cli import interrupted_message, main
from memunlearn.errors import CheckpointError, ConfigError, DamagedArtefactWarning, DivergedError, OutputError
from memunlearn.io import check_output_dir, check_output_file, json_checksum, sha256_of_tensors, write_json


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


def tiny(seed=0):
    return build_model("cnn", 1, 10, width=4, image_size=8, seed=seed)


def flip_data_byte(path: Path, offset_in_data: int = 17) -> None:
    """Change one byte of a safetensors file's tensor data, leaving its header intact."""
    raw = bytearray(path.read_bytes())
    header_length = struct.unpack("<Q", raw[:8])[0]
    raw[8 + header_length + offset_in_data] ^= 0xFF
    path.write_bytes(bytes(raw))


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


# ---------------------------------------------------------------- 1. outputs checked before any work


def test_output_checks_refuse_wrong_kind_unwritable_and_full(tmp_path, monkeypatch):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    with pytest.raises(OutputError, match="is a file, not a directory"):
        check_output_dir(a_file, "--out")
    with pytest.raises(OutputError, match=r"cannot be created: .*f is a file"):
        check_output_dir(a_file / "sub", "--out")  # a path under a file: refused even for root
    with pytest.raises(OutputError, match="is a directory; give a file path"):
        check_output_file(tmp_path, "--out")
    assert check_output_dir(tmp_path / "new" / "deeper", "--out") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists(), "a check creates nothing"
    # Read-only: tests run as root, where chmod does not stop writes, so os.access is made to say no.
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != read_only and real_access(p, mode, **kw))
    with pytest.raises(OutputError, match="is not writable"):
        check_output_file(read_only / "results.json", "--out")
    monkeypatch.setattr(os, "statvfs", lambda p: os.statvfs_result((4096, 4096, 100, 10, 10, 0, 0, 0, 0, 255)))
    with pytest.raises(OutputError, match="no space for --out"):
        check_output_dir(tmp_path / "x", "--out")


@pytest.mark.parametrize("case", ["run-out-file", "run-cache-under-file", "run-out-read-only", "train-out-dir",
                                  "localize-out-dir", "pool-dir-file", "proxies-out-file", "scores-out-dir"])
def test_cli_checks_every_output_before_any_work(tmp_path, monkeypatch, capsys, case):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    a_dir = tmp_path / "d"
    a_dir.mkdir()
    (a_dir / "x.npy").mkdir()
    fast = ["--epochs", "2", "--train-subset", "300", "--width", "4"]
    if case == "run-out-read-only":
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != a_dir and real_access(p, mode, **kw))
    argv = {
        "run-out-file": ["run", "--methods", "ssd", "--out", str(a_file), *fast],
        "run-cache-under-file": ["run", "--methods", "ssd", "--cache-dir", str(a_file / "cache"), *fast],
        "run-out-read-only": ["run", "--methods", "ssd", "--out", str(a_dir), *fast],
        "train-out-dir": ["train", "--out", str(a_dir), *fast],
        "localize-out-dir": ["localize", "--checkpoint", str(a_file), "--out", str(a_dir)],
        "pool-dir-file": ["memorization", "pool", "--pool-dir", str(a_file), "--pool-size", "2", *fast],
        "proxies-out-file": ["memorization", "proxies", "--out", str(a_file), *fast],
        "scores-out-dir": ["memorization", "scores", "--out", str(a_dir / "x.npy"), "--pool-size", "2", *fast],
    }[case]
    assert main(argv) == 2
    assert str(a_file if "file" in case else a_dir) in one_error_line(capsys)
    assert not (tmp_path / "cache" / "checkpoints").exists(), "something was trained before the check"


def test_files_get_umask_permissions_not_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        write_json(tmp_path / "results.json", {"a": 1})
        save_checkpoint(tmp_path / "m.safetensors", tiny())
    finally:
        os.umask(previous)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "m.safetensors").stat().st_mode & 0o777 == 0o644


# ---------------------------------------------------------------- 2. non-finite weights


def test_non_finite_weights_are_caught_after_a_method_and_before_evaluation(digits):
    from memunlearn.evaluation import evaluate
    from memunlearn.methods import unlearn

    forget, retain = digits.train.subset(range(30)), digits.train.subset(range(30, 300))
    with pytest.raises(DivergedError, match="diverged"):
        unlearn("finetune", tiny(), forget, retain, epochs=1, lr=1e6, batch_size=64, device="cpu")  # five steps (the official batches of 256 give two)
    broken = tiny()
    with torch.no_grad():
        broken.classifier.weight[0, 0] = float("inf")
    with pytest.raises(DivergedError, match="classifier.weight"):
        evaluate(broken, forget, retain, digits.test, "cpu")


def test_diverged_error_survives_pickling_from_a_worker():
    import pickle

    for error in (DivergedError("finetune", 3, float("nan")), DivergedError("ssd", reason="2 entries of w are NaN")):
        assert str(pickle.loads(pickle.dumps(error))) == str(error)


def test_run_records_a_method_whose_weights_overflow_as_diverged(tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--epochs", "2", "--train-subset", "300", "--width", "4", "--methods", "finetune",
                 "--set", "finetune.lr=1e6", "--set", "finetune.epochs=1", "--out", str(out), "--device", "cpu"]) == 0
    entry = json.loads((out / "results.json").read_text())["groups"][0]["per_seed"][0]["methods"]["finetune"]
    assert entry["status"] == "diverged" and "NaN or infinite" in entry["error"]


# ---------------------------------------------------------------- 3. every value validated


@pytest.mark.parametrize("args, message", [
    (["--methods", "finetune", "--set", "finetune.lr=abc"], "finetune.lr must be a number > 0, got 'abc'"),
    (["--methods", "finetune", "--set", "finetune.lr=-1"], "finetune.lr must be a number > 0, got -1"),
    (["--methods", "finetune", "--set", "finetune.batch_size=0"], "finetune.batch_size must be an integer >= 1"),
    (["--methods", "finetune", "--set", "finetune.epochs=0"], "finetune.epochs must be an integer >= 1, got 0"),
    (["--methods", "finetune", "--set", "finetune.epochs=-1"], "finetune.epochs must be an integer >= 1"),
    (["--methods", "del", "--set", "del.epochs=abc"], "del.epochs must be an integer >= 0, got 'abc'"),
    (["--methods", "finetune,finetune"], "--methods lists 'finetune' more than once"),
    (["--seed", "-1"], "argument --seed: must be an integer >= 0, got '-1'"),
    (["--width", "-4"], "argument --width: must be an integer >= 1, got '-4'"),
    (["--width", "0"], "argument --width: must be an integer >= 1, got '0'"),
    (["--train-subset", "0"], "argument --train-subset: must be an integer >= 1, got '0'"),
])
def test_bad_values_exit_2_in_one_line(tmp_path, capsys, args, message):
    assert main(["run", "--out", str(tmp_path / "never"), *args]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / "never").exists()


def test_other_commands_and_the_library_validate_too(tmp_path, capsys):
    binary = tmp_path / "forget.bin"
    binary.write_bytes(bytes(range(256)))
    assert main(["run", "--forget", f"indices:{binary}", "--out", str(tmp_path / "o")]) == 2
    assert "is not a text file" in one_error_line(capsys)
    assert main(["localize", "--checkpoint", "m.safetensors", "--out", "m.mask", "--batch-size", "0"]) == 2
    assert "--batch-size: must be an integer >= 1" in one_error_line(capsys)
    assert main(["unlearn", "--checkpoint", "m.safetensors", "--method", "finetune", "--set", "finetune.lr=abc"]) == 2
    assert "finetune.lr must be a number > 0" in one_error_line(capsys)
    from memunlearn.experiment import RunConfig

    for config in (RunConfig(width=0), RunConfig(train_subset=0), RunConfig(seed=-1), RunConfig(epochs=0),
                   RunConfig(methods=("finetune",), hparams={"finetune": {"lr": "abc"}})):
        with pytest.raises(ConfigError):
            config.validate()


# ---------------------------------------------------------------- 4. checksums on every artefact


def test_checksum_helpers_see_a_single_changed_byte():
    a = {"w": torch.arange(6, dtype=torch.float32), "m": torch.tensor([True, False])}
    b = {"w": torch.arange(6, dtype=torch.float32), "m": torch.tensor([True, True])}
    assert sha256_of_tensors(a) == sha256_of_tensors(dict(reversed(list(a.items()))))
    assert sha256_of_tensors(a) != sha256_of_tensors(b)
    assert json_checksum({"tow": 0.5}) != json_checksum({"tow": 0.50001})


def test_damaged_cached_checkpoint_is_reported_and_rebuilt_not_reused(tmp_path):
    calls = []

    def produce():
        calls.append(1)
        return tiny(seed=len(calls)), {"dynamics.x": torch.ones(3)}, {"n": len(calls)}

    path = tmp_path / "oracle-key.safetensors"
    cached(path, produce, tiny)
    flip_data_byte(path)  # the header (and so the file's structure) stays intact
    with pytest.warns(DamagedArtefactWarning, match=r"oracle-key.safetensors is damaged"):
        _, _, metadata, reused = cached(path, produce, tiny)
    assert not reused and metadata == {"n": 2}
    # NaN weights under a matching checksum are refused too
    nan_model = tiny()
    with torch.no_grad():
        nan_model.classifier.bias[0] = float("nan")
    save_checkpoint(path, nan_model)
    with pytest.warns(DamagedArtefactWarning, match="NaN or infinite weights"):
        assert cached(path, produce, tiny)[3] is False
    # an older checkpoint without a checksum is rebuilt by the cache
    from safetensors.torch import save_file

    save_file({"state." + k: v.contiguous() for k, v in tiny().state_dict().items()}, str(path))
    with pytest.warns(DamagedArtefactWarning, match="no checksum"):
        assert cached(path, produce, tiny)[3] is False
    assert len(calls) == 4


def test_damaged_user_files_are_refused_old_ones_accepted_with_a_warning(tmp_path, digits, capsys):
    from safetensors.torch import save_file

    from memunlearn.localization import Mask

    metadata = model_metadata("cnn", 4, 1, 10, 8, dataset="digits", data_fingerprint=digits.fingerprint)
    model_path = save_checkpoint(tmp_path / "model.safetensors", tiny(), metadata=metadata)
    flip_data_byte(model_path)
    with pytest.raises(CheckpointError, match="is damaged"):
        load_model(model_path)
    assert main(["localize", "--checkpoint", str(model_path), "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "model.safetensors is damaged" in one_error_line(capsys)
    old = tmp_path / "old.safetensors"
    save_file({"state." + k: v.contiguous() for k, v in tiny().state_dict().items()}, str(old),
              metadata={"memunlearn": json.dumps(metadata)})
    with pytest.warns(DamagedArtefactWarning, match="no checksum"):
        load_model(old)

    mask_path = Mask.full(tiny()).save(tmp_path / "mask.safetensors")
    assert len(Mask.load(mask_path)) > 0
    flip_data_byte(mask_path, offset_in_data=0)
    with pytest.raises(CheckpointError, match="mask file .* is damaged"):
        Mask.load(mask_path)


def test_damaged_pool_member_is_reported_and_trained_again(tmp_path, digits):
    from memunlearn.data import subsample
    from memunlearn.memorization.pool import build_pool, member_path, pool_spec_for
    from memunlearn.training import TrainConfig

    data = subsample(digits, n_train=60, n_test=20, seed=1)
    spec = pool_spec_for(data, "cnn", 2, TrainConfig(epochs=1, lr=0.05, batch_size=32))
    first = build_pool(data, spec, 2, pool_dir=tmp_path / "pool", device="cpu")
    flip_data_byte(member_path(tmp_path / "pool", 1), offset_in_data=70)
    with pytest.warns(DamagedArtefactWarning, match="member-00001.safetensors is damaged"):
        again = build_pool(data, spec, 2, pool_dir=tmp_path / "pool", device="cpu")
    assert again.build["trained"] == 1 and again.build["reused"] == 1
    assert (again.train_logits == first.train_logits).all()  # retrained identically


# ---------------------------------------------------------------- 5. pool workers die with their parent

KILL_SCRIPT = """
import sys, time
from memunlearn import load_dataset
from memunlearn.data import subsample
from memunlearn.memorization.pool import build_pool, pool_spec_for
from memunlearn.training import TrainConfig
data = subsample(load_dataset("digits"), n_train=200, n_test=20, seed=0)
spec = pool_spec_for(data, "cnn", 4, TrainConfig(epochs=2000, lr=0.01, batch_size=32))
build_pool(data, spec, 4, pool_dir=sys.argv[1], workers=2, device="cpu")
"""


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_pool_workers_exit_when_the_parent_is_killed(tmp_path):
    import signal
    import subprocess
    import sys

    parent = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(tmp_path / "pool")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        workers: set[int] = set()
        while time.time() < deadline and len(workers) < 2:  # two workers (plus the resource tracker)
            time.sleep(0.5)
            workers = {pid for pid in _children(parent.pid)
                       if "spawn_main" in (Path("/proc") / str(pid) / "cmdline").read_bytes().decode(errors="replace")}
        assert len(workers) == 2, "the pool's worker processes never started"
        time.sleep(3)  # let them reach their initialiser
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.time() + 20
        while time.time() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "orphaned pool workers are still running"
    finally:
        if parent.poll() is None:
            parent.kill()


# ---------------------------------------------------------------- 6. locks: concurrent runs share work


def test_concurrent_builds_of_one_checkpoint_train_it_once(tmp_path):
    calls, results = [], []

    def produce():
        calls.append(1)
        time.sleep(0.5)
        return tiny(), {}, {}

    def worker():
        results.append(cached(tmp_path / "original-k.safetensors", produce, tiny)[3])

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and sorted(results) == [False, True]


def test_concurrent_builds_of_one_pool_train_each_member_once(tmp_path, digits):
    from memunlearn.data import subsample
    from memunlearn.memorization.pool import build_pool, pool_spec_for
    from memunlearn.training import TrainConfig

    data = subsample(digits, n_train=60, n_test=20, seed=1)
    spec = pool_spec_for(data, "cnn", 2, TrainConfig(epochs=40, lr=0.05, batch_size=32))
    builds = []

    def worker():
        builds.append(build_pool(data, spec, 4, pool_dir=tmp_path / "pool", device="cpu").build)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(b["trained"] for b in builds) == 4, builds


# ---------------------------------------------------------------- 7. interrupts say what was kept


def test_interrupt_lists_the_files_it_kept(tmp_path, monkeypatch, capsys):
    import memunlearn.experiment as experiment

    cache = tmp_path / "cache"

    def interrupted_run(config, out_dir, log, **kwargs):
        write_json(cache / "checkpoints" / "original-k.json", {})
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment, "run_experiment", interrupted_run)
    assert main(["run", "--methods", "finetune", "--out", str(tmp_path / "o"), "--cache-dir", str(cache)]) == 130
    err = capsys.readouterr().err
    assert "kept 1 complete file" in err and "original-k.json" in err and "nothing was written" not in err
    assert interrupted_message([]) == "memunlearn: interrupted; nothing was written"


# ---------------------------------------------------------------- 8. progress without a terminal


def test_training_prints_plain_progress_when_stderr_is_not_a_terminal(digits, capsys):
    from memunlearn.training import TrainConfig, train

    train(tiny(), digits.train.subset(range(64)), TrainConfig(epochs=4, batch_size=16), "cpu", progress=True,
          description="demo")
    lines = capsys.readouterr().err.splitlines()
    assert lines and lines[-1].startswith("demo: 16/16 steps (100%)")
