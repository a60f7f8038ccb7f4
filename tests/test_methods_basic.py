import copy

import pytest
import torch

from memunlearn import build_model, train, unlearn
from memunlearn.errors import CheckpointError, ConfigError, DivergedError
from memunlearn.forget import make_forget_set
from memunlearn.methods import available_methods
from memunlearn.training import TrainConfig, accuracy, predict_logits


@pytest.fixture(scope="module")
def split(digits):
    forget_set = make_forget_set("iid:0.1", digits, seed=0)
    forget = digits.train.subset(forget_set.indices)
    retain = digits.train.subset(forget_set.retain_indices(len(digits.train)))
    model = build_model("cnn", 1, 10, width=8, image_size=8, seed=0)
    result = train(model, digits.train, TrainConfig(epochs=12, lr=0.05, batch_size=64, seed=0), device="cpu")
    return result.model, forget, retain


def test_original_fits_training_set(split, digits):
    model, forget, _ = split
    assert accuracy(model, forget, "cpu") > 0.97


@pytest.mark.parametrize("method", ["finetune", "neggrad+", "random-label"])
def test_method_returns_new_model_and_cost(split, method):
    model, forget, retain = split
    before = copy.deepcopy(model.state_dict())
    result = unlearn(method, model, forget, retain, epochs=1, device="cpu")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "original model was modified"
    assert result.cost.steps > 0 and result.cost.examples >= len(retain)
    assert 0 < result.cost.params_changed_fraction <= 1
    assert result.cost.wall_time > 0


def forget_loss(model, forget):
    return float(torch.nn.functional.cross_entropy(predict_logits(model, forget, "cpu"), forget.y))


def test_forgetting_methods_move_forget_set_the_right_way(split):
    """random-label lowers forget accuracy; neggrad+ raises the forget loss well above finetune's
    (recipe "ours": batches of 64, lr 0.02; at the official batches of 256 two epochs are 6 steps)."""
    model, forget, retain = split
    relabelled = unlearn("random-label", model, forget, retain, epochs=2, device="cpu").model
    assert accuracy(relabelled, forget, "cpu") < accuracy(model, forget, "cpu")
    ascended = unlearn("neggrad+", model, forget, retain, epochs=2, beta=0.8, recipe="ours", device="cpu").model
    finetuned = unlearn("finetune", model, forget, retain, epochs=2, recipe="ours", device="cpu").model
    assert forget_loss(ascended, forget) > 1.2 * max(forget_loss(model, forget), forget_loss(finetuned, forget))


def test_same_seed_same_model(split):
    model, forget, retain = split
    a = unlearn("neggrad+", model, forget, retain, epochs=1, seed=4, device="cpu").model
    b = unlearn("neggrad+", model, forget, retain, epochs=1, seed=4, device="cpu").model
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_unknown_method_and_hparam(split):
    model, forget, retain = split
    with pytest.raises(ConfigError, match="unknown method 'nope'; known: .*finetune"):
        unlearn("nope", model, forget, retain)
    with pytest.raises(ConfigError, match="no hyperparameter"):
        unlearn("finetune", model, forget, retain, momentun=0.9)


def test_divergence_is_reported(split):
    model, forget, retain = split
    with pytest.raises(DivergedError, match="neggrad\\+ diverged"):
        unlearn("neggrad+", model, forget, retain, epochs=3, lr=1e6, beta=0.0, device="cpu")


def test_mask_of_wrong_shape_is_refused(split):
    model, forget, retain = split
    mask = {n: torch.ones_like(p, dtype=torch.bool) for n, p in model.named_parameters()}
    mask["classifier.weight"] = torch.ones(3, 3, dtype=torch.bool)
    with pytest.raises(CheckpointError, match="does not fit"):
        unlearn("finetune", model, forget, retain, mask=mask)


@pytest.mark.parametrize("method", ["finetune", "neggrad+", "random-label"])
def test_mask_is_a_hard_constraint(split, method):
    """Entries outside the mask stay bitwise identical, with momentum and weight decay on."""
    model, forget, retain = split
    generator = torch.Generator().manual_seed(0)
    mask = {n: torch.rand(p.shape, generator=generator) < 0.3 for n, p in model.named_parameters()}
    result = unlearn(method, model, forget, retain, mask=mask, epochs=1, momentum=0.9, weight_decay=0.1, device="cpu")
    original = dict(model.named_parameters())
    moved = 0
    for name, param in result.model.named_parameters():
        frozen = ~mask[name]
        assert torch.equal(param[frozen], original[name][frozen]), name
        moved += int((param[mask[name]] != original[name][mask[name]]).sum())
    assert moved > 0
    assert set(["finetune", "neggrad+", "random-label"]) <= set(available_methods())


def test_long_methods_print_a_heartbeat(digits, monkeypatch, capsys):
    """Unlearning shows progress in logs: a line every HEARTBEAT_SECONDS (here: every step)."""
    import memunlearn.methods.base as base
    from memunlearn import build_model
    from memunlearn.methods import unlearn

    monkeypatch.setattr(base, "HEARTBEAT_SECONDS", 0.0)
    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=0)
    unlearn("finetune", model, digits.train.subset(range(20)), digits.train.subset(range(20, 84)), epochs=1,
            batch_size=32, device="cpu")
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("finetune: 2 steps, 64 examples")
