"""The command line end to end, and its handling of bad input (exit 2, one line, nothing written)."""

import contextlib
import io
import json
import subprocess

import pytest

from memunlearn.cli import main

TINY = ["--epochs", "4", "--methods", "finetune,neggrad+,random-label", "--set", "finetune.epochs=1", "--set", "neggrad+.epochs=1", "--set", "random-label.epochs=1"]


def run_cli(*args):
    """The command line in-process (no interpreter start-up per case): its exit code and what it printed."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(list(args))
    return subprocess.CompletedProcess(["memunlearn", *args], code, stdout.getvalue(), stderr.getvalue())


def test_run_end_to_end_tiny(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--out", str(out), "--device", "cpu", "--seeds", "1", "--forget", "iid:0.1", *TINY]) == 0
    printed = capsys.readouterr().out
    for method in ("finetune", "neggrad+", "random-label", "oracle"):
        assert method in printed
    results = json.loads((out / "results.json").read_text())
    assert results["spec"]["data"]["dataset"] == "digits"
    assert results["seeds"] == [0]
    assert set(results["groups"][0]["summary"]["methods"]) == {"finetune", "neggrad+", "random-label"}
    assert results["versions"]["torch"]
    indices = (out / "forget_indices_seed0.txt").read_text().split()
    assert len(indices) == results["groups"][0]["per_seed"][0]["forget_size"] == round(0.1 * results["dataset"]["n_train"])
    row = results["groups"][0]["per_seed"][0]["methods"]["finetune"]
    assert row["status"] == "ok" and 0 <= row["vs_oracle"]["tow"] <= 1
    assert row["time_fraction"] > 0


def test_run_defaults_are_the_main_job(monkeypatch, tmp_path):
    """`memunlearn run` with no spec: the main job's forget set and seeds, every method but retrain
    (the independent retrain is the noise floor, named once); retrain stays available by name."""
    import memunlearn.experiment as experiment
    from memunlearn.cli.run import MAIN_FORGET, MAIN_SEEDS

    seen = []

    def capture(spec, out_dir, **_):
        seen.append(spec)
        raise SystemExit(0)

    monkeypatch.setattr(experiment, "run_experiment", capture)
    for extra in ([], ["--methods", "retrain,finetune"]):
        with pytest.raises(SystemExit):
            main(["run", "--out", str(tmp_path / "x"), *extra])
    default, named = seen
    assert default.forget == (MAIN_FORGET,) and default.seeds == tuple(range(MAIN_SEEDS)) and MAIN_SEEDS >= 3
    assert "retrain" not in default.methods and {"finetune", "del", "scrub"} <= set(default.methods)
    assert default.evaluation.noise_floor
    assert named.methods == ("retrain", "finetune")


def strip_timings(value):
    if isinstance(value, dict):
        return {k: strip_timings(v) for k, v in value.items() if "time" not in k}
    if isinstance(value, list):
        return [strip_timings(v) for v in value]
    return value


def test_same_seed_gives_identical_results(tmp_path, monkeypatch):
    """Two runs with separate caches (so both really train) agree on every number but timings."""
    payloads = []
    for name in ("a", "b"):
        monkeypatch.setenv("MEMUNLEARN_CACHE", str(tmp_path / f"cache-{name}"))
        assert main(["run", "--out", str(tmp_path / name), "--device", "cpu", "--seeds", "1", *TINY[:2], "--methods", "finetune,neggrad+", *TINY[4:8]]) == 0
        payloads.append(strip_timings(json.loads((tmp_path / name / "results.json").read_text())))
    assert payloads[0]["groups"][0]["per_seed"] == payloads[1]["groups"][0]["per_seed"]
    assert payloads[0]["groups"][0]["summary"] == payloads[1]["groups"][0]["summary"]


def test_seeds_give_intervals(tmp_path):
    out = tmp_path / "seeds"
    assert main(["run", "--out", str(out), "--device", "cpu", "--seeds", "2", *TINY[:2], "--methods", "finetune", *TINY[4:6]]) == 0
    results = json.loads((out / "results.json").read_text())
    stat = results["groups"][0]["summary"]["methods"]["finetune"]["tow"]
    assert stat["n"] == 2 and stat["half_width"] == stat["half_width"]  # not NaN
    assert (out / "forget_indices_seed1.txt").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'; known: "),
        (["--model", "vgg"], "unknown model 'vgg'; known: cnn, mlp, resnet18, vit"),
        (["--methods", "finetune,bogus"], "unknown method 'bogus'; known: "),
        (["--forget", "iid:2"], "fraction must be in (0, 1)"),
        (["--dataset", "fashion-mnist", "--data-dir", "/nonexistent/dir"], "/nonexistent/dir"),
        (["--set", "finetune.lrr=1"], "no hyperparameter(s) ['lrr']"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, args, message):
    out = tmp_path / "never"
    result = run_cli("run", "--out", str(out), *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out / "results.json").exists()


def test_bad_forget_indices_exit_2_and_keep_earlier_results(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.json").write_text('{"earlier": true}')
    for content, message in [("1\n1\n", "duplicated indices [1]"), ("99999\n", "out of range"), ("a\n", "non-integer"),
                             ("", "empty")]:
        index_file = tmp_path / "forget.txt"
        index_file.write_text(content)
        result = run_cli("run", "--out", str(out), "--forget", f"indices:{index_file}")
        assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert json.loads((out / "results.json").read_text()) == {"earlier": True}


def test_diverging_method_is_recorded_not_scored(tmp_path):
    out = tmp_path / "div"
    assert main(["run", "--out", str(out), "--device", "cpu", "--seeds", "1", "--methods", "neggrad+,finetune", "--epochs", "4",
                 "--set", "neggrad+.lr=1e6", "--set", "neggrad+.beta=0.0", "--set", "finetune.epochs=1"]) == 0
    results = json.loads((out / "results.json").read_text())
    entry = results["groups"][0]["per_seed"][0]["methods"]["neggrad+"]
    assert entry["status"] == "diverged" and "metrics" not in entry and "diverged" in entry["error"]
    assert results["groups"][0]["summary"]["methods"]["neggrad+"]["seeds_ok"] == 0
    assert results["groups"][0]["per_seed"][0]["methods"]["finetune"]["status"] == "ok"


def test_train_writes_a_loadable_checkpoint(tmp_path):
    from memunlearn.checkpoints import load_model

    path = tmp_path / "model.safetensors"
    assert main(["train", "--out", str(path), "--epochs", "2", "--device", "cpu", "--width", "4"]) == 0
    model, extra, metadata = load_model(path)
    assert metadata["dataset"] == "digits" and metadata["model"] == "cnn" and metadata["width"] == 4
    assert extra["dynamics.true_prob"].shape[0] == 2  # per-epoch dynamics travel with the model
    result = run_cli("train", "--out", str(path), "--model", "nope")
    assert result.returncode == 2 and "unknown model" in result.stderr
    assert load_model(path)[2]["width"] == 4, "a failed train must not overwrite the checkpoint"
