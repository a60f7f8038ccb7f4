import math

import numpy as np
import pytest

from memunlearn.evaluation import compare_to_oracle, loss_mia, mean_interval, mia_efficacy, tow, tow_mia


def test_tow_hand_computed():
    assert tow(0.0, 0.0, 0.0) == 1.0
    assert tow(0.1, 0.02, 0.05) == pytest.approx(0.9 * 0.98 * 0.95)
    assert tow(1.0, 0.0, 0.0) == 0.0
    assert tow_mia(0.2, 0.1, 0.0) == pytest.approx(0.8 * 0.9)


def test_compare_to_oracle_uses_absolute_gaps():
    model = {"acc_forget": 0.9, "acc_retain": 0.95, "acc_test": 0.8, "mia_efficacy": 0.3}
    oracle = {"acc_forget": 0.8, "acc_retain": 1.0, "acc_test": 0.85, "mia_efficacy": 0.5}
    gaps = compare_to_oracle(model, oracle)
    assert gaps["gap_forget"] == pytest.approx(0.1)
    assert gaps["gap_retain"] == pytest.approx(0.05)
    assert gaps["gap_test"] == pytest.approx(0.05)
    assert gaps["gap_mia"] == pytest.approx(0.2)
    assert gaps["tow"] == pytest.approx(0.9 * 0.95 * 0.95)
    assert gaps["tow_mia"] == pytest.approx(0.8 * 0.95 * 0.95)


def test_mia_efficacy_on_separable_confidences():
    rng = np.random.default_rng(0)
    members = rng.uniform(0.95, 1.0, 200)  # retain: confident
    non_members = rng.uniform(0.0, 0.3, 200)  # test: unsure
    forget = np.array([0.99, 0.97, 0.05, 0.1])  # two look like members, two like non-members
    assert mia_efficacy(members, non_members, forget) == pytest.approx(0.5)
    assert mia_efficacy(members, non_members, np.array([0.01, 0.02])) == pytest.approx(1.0)
    assert mia_efficacy(members, non_members, np.array([0.999, 0.98])) == pytest.approx(0.0)


def test_loss_mia_separable_and_indistinguishable():
    rng = np.random.default_rng(0)
    separable = loss_mia(rng.uniform(0, 0.1, 300), rng.uniform(1, 2, 300))
    assert separable["loss_mia_auc"] == pytest.approx(1.0)
    assert separable["loss_mia_accuracy"] > 0.95
    same = loss_mia(rng.exponential(1.0, 2000), rng.exponential(1.0, 2000))
    assert abs(same["loss_mia_auc"] - 0.5) < 0.05


def test_mean_interval_matches_t_distribution():
    stat = mean_interval([0.8, 0.9, 1.0])
    # t_{0.975, 2} = 4.302653; std = 0.1; half = 4.302653 * 0.1 / sqrt(3)
    assert stat["mean"] == pytest.approx(0.9)
    assert stat["half_width"] == pytest.approx(4.302653 * 0.1 / math.sqrt(3), rel=1e-5)
    assert math.isnan(mean_interval([0.5])["half_width"])
    assert mean_interval([])["n"] == 0
