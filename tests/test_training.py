import numpy as np
import pytest
import torch

from memunlearn import build_model, train
from memunlearn.data import Examples
from memunlearn.errors import DivergedError
from memunlearn.training import TrainConfig, cosine_lr


def test_cosine_schedule_endpoints():
    assert cosine_lr(0.1, 0, 100, 0.01) == pytest.approx(0.1)
    assert cosine_lr(0.1, 99, 100, 0.01) == pytest.approx(0.001)
    assert cosine_lr(0.1, 0, 100, 0.0) > cosine_lr(0.1, 50, 100, 0.0) > cosine_lr(0.1, 99, 100, 0.0)


def test_training_is_seeded_and_records_dynamics(digits):
    config = TrainConfig(epochs=3, lr=0.05, batch_size=128, seed=5)
    examples = digits.train.subset(np.arange(300))
    runs = [train(build_model("cnn", 1, 10, width=4, image_size=8, seed=5), examples, config, "cpu") for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(runs[0].model.state_dict().values(), runs[1].model.state_dict().values()))
    dynamics = runs[0].dynamics
    assert dynamics.true_prob.shape == (3, 300)
    assert np.all((dynamics.true_prob > 0) & (dynamics.true_prob <= dynamics.max_prob + 1e-6))
    assert np.array_equal(dynamics.true_prob, runs[1].dynamics.true_prob)
    # accuracy read off the forward passes rises as the model learns
    assert dynamics.correct[-1].mean() > dynamics.correct[0].mean()
    assert runs[0].steps == 3 * 3 and runs[0].examples_seen == 900


def test_nan_loss_stops_training():
    examples = Examples(torch.full((8, 1, 8, 8), float("nan")), torch.zeros(8, dtype=torch.long))
    with pytest.raises(DivergedError, match="training diverged"):
        train(build_model("cnn", 1, 10, width=4, image_size=8), examples, TrainConfig(epochs=1), "cpu")
