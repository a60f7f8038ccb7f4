"""`memunlearn localize` and `memunlearn unlearn` end to end, and their handling of bad input."""

import json

import pytest
import torch

from memunlearn import build_model
from memunlearn.checkpoints import load_model, model_metadata, save_checkpoint
from memunlearn.cli import main
from memunlearn.localization import Mask

@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: a second thread only adds synchronisation, and other jobs share the cores."""
    torch.set_num_threads(1)



def tiny_checkpoint(path, digits, width=4, seed=0):
    """An (untrained) tiny model saved the way `memunlearn train` saves one, recording its data."""
    model = build_model("cnn", 1, 10, width=width, image_size=8, seed=seed)
    metadata = model_metadata("cnn", width, 1, 10, 8, dataset="digits", data_dir=None, train_subset=None,
                              data_fingerprint=digits.fingerprint)
    save_checkpoint(path, model, metadata=metadata)
    return path


@pytest.fixture
def checkpoint(tmp_path, digits):
    return tiny_checkpoint(tmp_path / "model.safetensors", digits)


def test_localize_writes_mask_and_prints_sparsity(tmp_path, checkpoint, capsys):
    out = tmp_path / "mask.safetensors"
    assert main(["localize", "--checkpoint", str(checkpoint), "--forget", "iid:0.1", "--strategy", "del",
                 "--budget", "0.2", "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "classifier.weight" in printed and "selected %" in printed and "20.0" in printed
    model, _, _ = load_model(checkpoint)
    mask = Mask.load(out).check_fits(model)
    total = sum(p.numel() for p in model.parameters())
    assert mask.selected == int(0.2 * total)
    assert mask.info["strategy"] == "del" and mask.info["forget"] == "iid:0.1"


def test_unlearn_with_mask_and_oracle(tmp_path, checkpoint, digits, capsys):
    mask_path = tmp_path / "mask.safetensors"
    assert main(["localize", "--checkpoint", str(checkpoint), "--strategy", "salun", "--budget", "0.3",
                 "--out", str(mask_path), "--device", "cpu"]) == 0
    oracle = tiny_checkpoint(tmp_path / "oracle.safetensors", digits, seed=1)
    out = tmp_path / "unlearned"
    assert main(["unlearn", "--checkpoint", str(checkpoint), "--method", "finetune", "--mask", str(mask_path),
                 "--forget", "iid:0.1", "--set", "finetune.epochs=1", "--oracle", str(oracle), "--out", str(out),
                 "--device", "cpu"]) == 0
    assert "unlearned" in capsys.readouterr().out
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["method"] == "finetune" and evaluation["hparams"]["epochs"] == 1
    assert 0 <= evaluation["vs_oracle"]["tow"] <= 1 and "tow_mia" in evaluation["vs_oracle"]
    assert evaluation["cost"]["steps"] > 0
    unlearned, _, metadata = load_model(out / "model.safetensors")
    original, _, _ = load_model(checkpoint)
    mask = Mask.load(mask_path)
    for (name, new), old in zip(unlearned.named_parameters(), original.parameters()):
        assert torch.equal(new[~mask[name]], old[~mask[name]]), name
    assert metadata["unlearned_with"] == "finetune" and metadata["model"] == "cnn"
    indices = (out / "forget_indices.txt").read_text().split()
    assert len(indices) == round(0.1 * len(digits.train))


def test_unlearn_del_without_mask(tmp_path, checkpoint):
    out = tmp_path / "del"
    assert main(["unlearn", "--checkpoint", str(checkpoint), "--method", "del", "--set", "del.epochs=1",
                 "--set", "del.budget=0.1", "--out", str(out), "--device", "cpu"]) == 0
    evaluation = json.loads((out / "evaluation.json").read_text())
    assert evaluation["cost"]["params_changed_fraction"] < 0.1 + 0.1  # the budget plus the classifier layer
    assert "vs_oracle" not in evaluation


def test_wrong_mask_shape_exits_2_and_writes_nothing(tmp_path, checkpoint, digits, capsys):
    wide = tiny_checkpoint(tmp_path / "wide.safetensors", digits, width=6)
    mask_path = tmp_path / "wide-mask.safetensors"
    assert main(["localize", "--checkpoint", str(wide), "--out", str(mask_path), "--device", "cpu"]) == 0
    capsys.readouterr()
    out = tmp_path / "existing"
    out.mkdir()
    (out / "evaluation.json").write_text("keep me")
    code = main(["unlearn", "--checkpoint", str(checkpoint), "--method", "finetune", "--mask", str(mask_path),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "does not fit the model" in err and "Traceback" not in err
    assert (out / "evaluation.json").read_text() == "keep me"
    assert sorted(p.name for p in out.iterdir()) == ["evaluation.json"]


def test_corrupt_checkpoint_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"this is not a checkpoint")
    for command in (["unlearn", "--method", "finetune", "--out", str(tmp_path / "x")],
                    ["localize", "--out", str(tmp_path / "m.safetensors")]):
        assert main([command[0], "--checkpoint", str(bad), *command[1:]]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "corrupt" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "m.safetensors").exists()


def test_bad_names_exit_2(tmp_path, checkpoint, capsys):
    cases = [
        (["unlearn", "--method", "nope"], "unknown method 'nope'"),
        (["unlearn", "--method", "del", "--set", "del.epoch=2"], "no hyperparameter"),
        (["unlearn", "--method", "del", "--set", "finetune.epochs=2"], "--method is 'del'"),
        (["localize", "--strategy", "nope"], "unknown localization strategy"),
        (["localize", "--budget", "2"], "budget"),
        (["localize", "--dataset", "digits", "--train-subset", "500"], "trained on other data"),
    ]
    for args, message in cases:
        out = tmp_path / "never"
        assert main([*args, "--checkpoint", str(checkpoint), "--out", str(out)]) == 2, args
        assert message in capsys.readouterr().err, args
        assert not out.exists()
