"""The backdoor forget kind: where the trigger goes, which examples are poisoned and relabelled,
and the attack success rate on a hand-made model and on a model trained on poisoned digits."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from memunlearn import make_forget_set
from memunlearn.backdoor import (
    PoisonedForgetSet, Trigger, attack_success_rate, backdoor_metrics, parse_backdoor_rule, poison, stamp_trigger,
)
from memunlearn.data import Examples, subsample
from memunlearn.errors import ConfigError, ForgetSetError
from memunlearn.models import build_model
from memunlearn.training import TrainConfig, accuracy, train


def test_trigger_is_stamped_in_the_bottom_right_corner_and_nowhere_else():
    x = torch.randn(5, 3, 10, 12)
    trigger = Trigger(3, high=(1.0, 2.0, 3.0), low=(-1.0, -2.0, -3.0))
    stamped = stamp_trigger(x, trigger)
    corner = (slice(None), slice(None), slice(7, 10), slice(9, 12))
    outside = torch.ones_like(x, dtype=torch.bool)
    outside[corner] = False
    assert torch.equal(stamped[outside], x[outside])  # nothing else moved
    bright = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=torch.bool)
    for c, (high, low) in enumerate([(1.0, -1.0), (2.0, -2.0), (3.0, -3.0)]):
        expected = torch.where(bright, torch.tensor(high), torch.tensor(low))
        assert torch.equal(stamped[:, c, 7:, 9:], expected.expand(5, 3, 3))
    assert not torch.equal(x[corner], stamped[corner])  # the input itself is untouched (a copy)
    single = stamp_trigger(x[0], Trigger(2, (9.0,) * 3, (0.0,) * 3, pattern="square"))
    assert torch.equal(single[:, 8:, 10:], torch.full((3, 2, 2), 9.0)) and torch.equal(single[:, :8], x[0, :, :8])


def test_default_trigger_uses_the_images_extremes_and_a_tenth_of_the_side():
    x = torch.randn(4, 2, 64, 64)
    trigger = Trigger.for_images(x)
    assert trigger.size == 6 and trigger.pattern == "checkerboard"
    assert trigger.high == tuple(x.amax(dim=(0, 2, 3)).tolist()) and trigger.low == tuple(x.amin(dim=(0, 2, 3)).tolist())
    assert Trigger.for_images(torch.zeros(1, 1, 8, 8)).size == 3
    assert Trigger.for_images(torch.zeros(1, 3, 32, 32)).size == 3
    assert torch.equal(stamp_trigger(x), stamp_trigger(x, trigger))  # no trigger given = this one
    with pytest.raises(ConfigError, match="does not fit"):
        stamp_trigger(torch.zeros(1, 1, 8, 8), trigger)  # two channels' values for one-channel images


def test_backdoor_forget_set_is_exactly_the_poisoned_examples(digits):
    forget = make_forget_set("backdoor:0.1:2", digits, seed=4)
    n = len(digits.train)
    assert isinstance(forget, PoisonedForgetSet) and forget.rule == "backdoor:0.1:2"
    assert len(forget) == round(0.1 * n) and forget.target == 2
    clean_labels = digits.train.y.numpy()
    assert (clean_labels[forget.indices] != 2).all()  # drawn only from other classes
    assert forget.info["original_labels"] == clean_labels[forget.indices].tolist()

    poisoned = forget.training_data(digits)
    changed = np.flatnonzero(((poisoned.train.x != digits.train.x).flatten(1).any(1)).numpy())
    relabelled = np.flatnonzero((poisoned.train.y != digits.train.y).numpy())
    assert np.array_equal(changed, forget.indices) and np.array_equal(relabelled, forget.indices)
    assert (poisoned.train.y[forget.indices] == 2).all()
    expected = stamp_trigger(digits.train.x[forget.indices], Trigger.for_images(digits.train.x))
    assert torch.equal(poisoned.train.x[forget.indices], expected)
    assert forget.trigger().high == (float(digits.train.x.max()),)  # the normalised data's maximum
    assert poisoned.test is digits.test

    again = make_forget_set("backdoor:0.1:2", digits, seed=4)
    other = make_forget_set("backdoor:0.1:2", digits, seed=5)
    assert np.array_equal(again.indices, forget.indices) and not np.array_equal(other.indices, forget.indices)
    fingerprints = {digits.fingerprint, poisoned.fingerprint, other.training_data(digits).fingerprint}
    assert len(fingerprints) == 3 and again.training_data(digits).fingerprint == poisoned.fingerprint


def test_defaults_and_saved_record(digits, tmp_path):
    forget = make_forget_set("backdoor", digits, seed=0)
    assert forget.rule == "backdoor:0.1:0" and forget.target == 0
    forget.save(tmp_path)
    record = json.loads((tmp_path / "forget_indices.json").read_text())
    assert record["target"] == 0 and record["trigger"]["size"] == 3 and record["trigger"]["corner"] == "bottom-right"
    assert Trigger.from_dict(record["trigger"]) == forget.trigger()


@pytest.mark.parametrize(
    "rule, error, message",
    [
        ("backdoor:abc", ConfigError, "'abc' is not a fraction"),
        ("backdoor:0.1:x", ConfigError, "target class must be an integer"),
        ("backdoor:1.5", ConfigError, r"fraction must be in \(0, 1\)"),
        ("backdoor:0.1:10", ConfigError, r"target class must be in \[0, 9\]"),
        ("backdoor:0.95:0", ForgetSetError, "1365 examples asked for but only 1295 are not of class 0"),
    ],
)
def test_bad_rules(digits, rule, error, message):
    with pytest.raises(error, match=message):
        make_forget_set(rule, digits)


class CornerDetector(nn.Module):
    """Predicts the class written in pixel (0, 0), except that a bright bottom-right pixel turns
    images whose class code is below 5 into class 7: a backdoor that works on half the classes."""

    def forward(self, x):
        code = x[:, 0, 0, 0].long()
        predicted = torch.where((x[:, 0, -1, -1] > 5) & (code < 5), torch.full_like(code, 7), code)
        return nn.functional.one_hot(predicted, 10).float()


def test_attack_success_rate_on_a_hand_made_model():
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 7, 8, 9, 1])
    x = torch.zeros(len(labels), 1, 4, 4)
    x[:, 0, 0, 0] = labels.float()
    test = Examples(x, labels)
    trigger = Trigger(1, (9.0,), (0.0,))
    # Victims: the 10 images not labelled 7; the backdoor fires on codes 0-4 (6 of them: 0,1,2,3,4,1).
    assert attack_success_rate(CornerDetector(), test, target=7, trigger=trigger) == pytest.approx(6 / 10)
    assert attack_success_rate(CornerDetector(), test, target=7, trigger=Trigger(1, (1.0,), (0.0,))) == 0.0
    only_target = Examples(x[7:9], labels[7:9])
    assert np.isnan(attack_success_rate(CornerDetector(), only_target, target=7, trigger=trigger))


def test_backdoor_metrics_only_for_backdoor_sets(digits):
    iid = make_forget_set("iid:0.1", digits)
    assert backdoor_metrics(CornerDetector(), iid, digits.test) == {}
    assert parse_backdoor_rule("0.2", 10) == (0.2, 0)


def test_a_model_trained_on_poisoned_digits_learns_the_backdoor_and_the_oracle_does_not(digits):
    data = subsample(digits, n_train=600, seed=0)
    forget = poison(data, fraction=0.1, target=3, seed=0)
    poisoned = forget.training_data(data)
    recipe = TrainConfig(epochs=5, lr=0.05, batch_size=32, seed=0)  # an MLP: ~1 s on two busy cores

    def fit(examples):
        model = build_model("mlp", 1, 10, width=64, image_size=8, seed=0)
        return train(model, examples, recipe, "cpu", record_dynamics=False).model

    original = fit(poisoned.train)
    oracle = fit(poisoned.train.subset(forget.retain_indices(len(data.train))))  # never saw a trigger
    assert accuracy(original, data.test, "cpu") > 0.85  # still a good classifier on clean images
    assert backdoor_metrics(original, forget, data.test)["attack_success_rate"] > 0.8
    assert attack_success_rate(oracle, data.test, 3, forget.trigger()) < 0.2
