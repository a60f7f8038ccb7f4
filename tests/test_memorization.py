"""Memorization: the estimator against hand-computed pools, proxies, selection, forget kinds, pool resume."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from memunlearn.data import subsample
from memunlearn.errors import ConfigError, ForgetSetError
from memunlearn.forget import ForgetContext, make_forget_set
from memunlearn.memorization import (
    available_proxies, compute_proxy, disattenuate, feldman_zhang, memorization_scores, partition_by_score,
    select_by_memorization, spearman_brown, split_half_reliability,
)
from memunlearn.memorization.compare import compare_proxies
from memunlearn.memorization.forget_kinds import entanglement_groups, parse_memorization_rule
from memunlearn.memorization.pool import build_pool, load_pool, member_path, pool_spec_for, subset_indices
from memunlearn.models import build_model
from memunlearn.training import TrainConfig, TrainingDynamics, train

# ---------------------------------------------------------------- estimator


def test_feldman_zhang_matches_hand_computed_pool():
    # 4 models, 4 examples; example 3 is in every subset (no estimate possible).
    masks = np.array([[1, 0, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1], [0, 0, 1, 1]], bool)
    correct = np.array([[1, 1, 1, 1], [1, 1, 0, 1], [0, 1, 1, 1], [1, 1, 1, 0]], bool)
    estimate = feldman_zhang(masks, correct)
    # ex 0: in models 0,1 (both right) − out models 2,3 (one right of two) = 1 − 0.5
    # ex 1: in 1,2 (right, right) − out 0,3 (right, right) = 0
    # ex 2: in 0,2,3 (all right) − out 1 (wrong) = 1
    np.testing.assert_allclose(estimate.scores[:3], [0.5, 0.0, 1.0])
    assert np.isnan(estimate.scores[3]) and estimate.n_undefined == 1
    # se(0) = sqrt(1·0/2 + 0.5·0.5/2) = sqrt(0.125); se(1) = se(2) = 0 (all proportions are 0 or 1)
    np.testing.assert_allclose(estimate.stderr[:3], [np.sqrt(0.125), 0.0, 0.0])
    np.testing.assert_array_equal(estimate.n_in, [2, 2, 3, 4])
    assert estimate.summary()["n_undefined"] == 1


def test_feldman_zhang_rejects_bad_shapes():
    with pytest.raises(ConfigError, match="one shape"):
        feldman_zhang(np.ones((3, 4), bool), np.ones((3, 5), bool))
    with pytest.raises(ConfigError, match="at least 2"):
        feldman_zhang(np.ones((1, 4), bool), np.ones((1, 4), bool))


def test_split_half_reliability_on_constructed_pools():
    # Alternating halves: models {0, 2} and {1, 3}; each half puts examples 0,1 in one model and 2,3 in the other.
    masks = np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], bool)
    # model 0 (half A) and model 1 (half B) see examples 0,1; models 2 (A) and 3 (B) see 2,3.
    agree = np.array([
        [1, 1, 0, 1],   # model 0: right on ex0, ex1, ex3
        [1, 1, 0, 1],   # model 1: same as model 0
        [0, 1, 1, 1],   # model 2: right on ex1, ex2, ex3
        [0, 1, 1, 1],   # model 3: same as model 2
    ], bool)
    # each half: mem = [1-0, 1-1, 1-0, 1-1] = [1, 0, 1, 0] → identical halves → ρ = 1
    assert split_half_reliability(masks, agree) == pytest.approx(1.0)
    disagree = agree.copy()
    disagree[1] = [0, 1, 0, 1]  # model 1 (half B) now wrong on ex0
    disagree[3] = [0, 0, 1, 1]  # model 3 (half B) now wrong on ex1, from which it was held out
    # half B: ex0 = 0-0 = 0, ex1 = 1-0 = 1, ex2 = 1-0 = 1, ex3 = 1-1 = 0 → [0, 1, 1, 0] vs A [1, 0, 1, 0]
    # ranks A: [3.5, 1.5, 3.5, 1.5], B: [1.5, 3.5, 3.5, 1.5] → ρ = 0
    assert split_half_reliability(masks, disagree) == pytest.approx(0.0)
    with pytest.raises(ConfigError, match="at least 4"):
        split_half_reliability(masks[:3], agree[:3])


def test_spearman_brown_and_disattenuation():
    assert spearman_brown(0.5) == pytest.approx(2 / 3)
    assert spearman_brown(1.0) == pytest.approx(1.0)
    assert disattenuate(0.4, 0.64, 1.0) == pytest.approx(0.5)
    assert np.isnan(disattenuate(0.4, -0.1, 1.0))


def test_compare_proxies_reports_raw_corrected_and_cost():
    from memunlearn.memorization.proxies import ProxyResult

    exact = np.array([0.0, 0.1, 0.5, 0.9, np.nan])
    proxy = ProxyResult("p", np.array([0.0, 0.2, 0.1, 0.9, 0.3]), 2.0, "model")
    result = compare_proxies(exact, 0.6, {"p": proxy}, 100.0)
    row = result["proxies"]["p"]
    assert row["rho"] == pytest.approx(0.8)  # NaN example left out; ranks [1,2,3,4] vs [1,3,2,4]
    assert result["reliability"] == pytest.approx(0.75)  # 2·0.6 / 1.6
    assert row["rho_corrected"] == pytest.approx(0.8 / np.sqrt(0.75))
    assert row["cost_fraction"] == pytest.approx(0.02)


def test_top_overlap_ignores_blocks_of_tied_exact_scores():
    from memunlearn.memorization.compare import top_overlap

    exact = np.array([0.9, 0.8] + [0.0] * 8)
    proxy = np.array([0.5] + [0.0] * 9)
    # the top 50% would be 5 examples, but only 2 exact scores are above the median (0): the
    # exact top set is {0, 1}; the proxy's top 2 are 0 and, among its tied zeros, index 9
    assert top_overlap(proxy, exact, fraction=0.5) == pytest.approx(0.5)
    assert np.isnan(top_overlap(proxy, np.zeros(10)))


# ---------------------------------------------------------------- proxies


@pytest.fixture(scope="module")
def flipped_case():
    """200 digits, 12 of them relabelled to another class; a tiny CNN trained on them."""
    from memunlearn import load_dataset

    data = subsample(load_dataset("digits"), n_train=200, n_test=100, seed=0)
    rng = np.random.default_rng(0)
    flipped = np.sort(rng.choice(len(data.train), 12, replace=False))
    labels = data.train.y.clone()
    labels[flipped] = (labels[flipped] + torch.from_numpy(rng.integers(1, 10, len(flipped)))) % 10
    data = data.with_train_labels(labels, "flipped")
    torch.set_num_threads(2)
    result = train(build_model("cnn", 1, 10, width=8, image_size=8, seed=0), data.train,
                   TrainConfig(epochs=12, lr=0.05, batch_size=32), "cpu")
    return data, result.model, result.dynamics, flipped


@pytest.mark.parametrize("name", available_proxies())
def test_each_proxy_scores_flipped_labels_higher(flipped_case, name):
    data, model, dynamics, flipped = flipped_case
    # few curvature directions and one hold-out epoch keep the test fast; the ranking survives
    result = compute_proxy(name, data, model, dynamics, "cpu", seed=0, curvature_directions=2, holdout_epochs=1)
    assert result.scores.shape == (len(data.train),) and np.isfinite(result.scores).all()
    clean = np.setdiff1d(np.arange(len(data.train)), flipped)
    assert result.scores[flipped].mean() > result.scores[clean].mean(), name


def test_dynamics_proxies_by_hand():
    from memunlearn.memorization.proxies import (
        binary_accuracy_score, confidence_score, forgetting_events_score, max_confidence_score,
    )

    dynamics = TrainingDynamics.empty(3, 2)
    dynamics.true_prob[:] = [[0.2, 0.9], [0.4, 1.0], [0.6, 0.8]]
    dynamics.max_prob[:] = [[0.5, 0.9], [0.5, 1.0], [0.6, 0.8]]
    dynamics.correct[:] = np.array([[1, 1], [0, 1], [1, 1]], bool)
    np.testing.assert_allclose(confidence_score(dynamics), [0.6, 0.1], atol=1e-6)
    np.testing.assert_allclose(max_confidence_score(dynamics), [1 - 1.6 / 3, 0.1], atol=1e-6)
    np.testing.assert_allclose(binary_accuracy_score(dynamics), [1 / 3, 0.0])
    np.testing.assert_allclose(forgetting_events_score(dynamics), [1.0, 0.0])


def test_proxy_without_what_it_needs_is_a_clear_error(flipped_case):
    data, model, dynamics, _ = flipped_case
    with pytest.raises(ConfigError, match="dynamics"):
        compute_proxy("confidence", data, model, None)
    with pytest.raises(ConfigError, match="unknown memorization proxy"):
        compute_proxy("oracle-vibes", data, model, dynamics)
    short = TrainingDynamics.empty(2, 5)
    with pytest.raises(ConfigError, match="cover 5 examples"):
        compute_proxy("confidence", data, model, short)


def test_memorization_scores_reads_npy_and_checks_length(tmp_path, flipped_case):
    data, model, dynamics, _ = flipped_case
    good = tmp_path / "scores.npy"
    np.save(good, np.arange(len(data.train), dtype=float))
    np.testing.assert_array_equal(memorization_scores(str(good), data, None, None), np.arange(len(data.train)))
    bad = tmp_path / "short.npy"
    np.save(bad, np.zeros(7))
    with pytest.raises(ConfigError, match="has 7 scores but the dataset has 200"):
        memorization_scores(str(bad), data, None, None)
    with pytest.raises(ConfigError, match="unknown memorization score source"):
        memorization_scores("psychic", data, model, dynamics)
    np.testing.assert_allclose(memorization_scores("confidence", data, model, dynamics),
                               1 - dynamics.true_prob.mean(0), atol=1e-6)


# ---------------------------------------------------------------- selection


def test_select_by_memorization_levels_and_ties():
    scores = np.array([0.5, 0.125, 0.5, 1.0, 0.125, 0.25, 0.75])  # binary fractions: exact distances
    # ranked low → high by (score, index): 1, 4, 5, 0, 2, 6, 3
    assert select_by_memorization(scores, "high", 2).tolist() == [3, 6]
    assert select_by_memorization(scores, "high", 3).tolist() == [2, 3, 6]  # 2 outranks 0 at the tie
    assert select_by_memorization(scores, "low", 1).tolist() == [1]  # 1 before 4 at the tie
    assert select_by_memorization(scores, "mid", 2).tolist() == [0, 2]  # median 0.5
    # next closest: 5 (0.25) and 6 (0.75) tie at distance 0.25; the lower score wins
    assert select_by_memorization(scores, "mid", 3).tolist() == [0, 2, 5]
    assert select_by_memorization(scores, "0.9", 1).tolist() == [3]


def test_select_mix_parts_are_disjoint_thirds():
    indices, parts = select_by_memorization(np.arange(9.0), "mix", 3, return_parts=True)
    assert {k: v.tolist() for k, v in parts.items()} == {"low": [0], "mid": [4], "high": [8]}
    scores = np.array([5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 0.0])
    indices, parts = select_by_memorization(scores, "mix", 5, return_parts=True)
    # sizes 2, 2, 1: low = scores 0, 1 (indices 9, 1); high = score 9 (index 2);
    # mid = the 2 of the rest closest to the median 4.5: scores 4, 5 (indices 7, 0)
    assert parts["low"].tolist() == [1, 9] and parts["high"].tolist() == [2] and parts["mid"].tolist() == [0, 7]
    assert indices.tolist() == [0, 1, 2, 7, 9]


def test_select_skips_nan_and_refuses_too_few():
    scores = np.array([np.nan, 0.2, 0.9, np.nan])
    assert select_by_memorization(scores, "high", 2).tolist() == [1, 2]
    with pytest.raises(ForgetSetError, match="larger pool"):
        select_by_memorization(scores, "high", 3)
    with pytest.raises(ConfigError, match="unknown memorization level"):
        select_by_memorization(scores, "extreme", 1)


def test_partition_by_score_tertiles_low_to_high():
    scores = np.array([0.4, 0.3, 0.0, 0.1, 0.0, 0.9, 0.3, 0.8])
    parts = partition_by_score([7, 5, 3, 1, 6, 0, 2], scores, 3)
    # forget set ranked by (score, index): 2 (0.0), 3 (0.1), 1 (0.3), 6 (0.3), 0 (0.4), 7 (0.8), 5 (0.9)
    # sizes 3, 2, 2 (the lower partitions take the remainder)
    assert [p.tolist() for p in parts] == [[1, 2, 3], [0, 6], [5, 7]]
    with pytest.raises(ConfigError, match="no memorization score"):
        partition_by_score([0, 1, 2], np.array([0.1, np.nan, 0.3]))
    with pytest.raises(ConfigError, match="into 3 partitions"):
        partition_by_score([0, 1], scores)


# ---------------------------------------------------------------- forget kinds


def test_parse_memorization_rule():
    assert parse_memorization_rule("high") == ("high", "confidence", 0.1)
    assert parse_memorization_rule("mix:exact:0.05") == ("mix", "exact", 0.05)
    assert parse_memorization_rule("low:0.2") == ("low", "confidence", 0.2)
    assert parse_memorization_rule("mid:scores.npy") == ("mid", "scores.npy", 0.1)


def test_memorization_forget_kind_mix_records_partitions(flipped_case):
    data, model, dynamics, flipped = flipped_case
    context = ForgetContext(lambda: (model, dynamics), "cpu")
    forget = make_forget_set("memorization:mix:confidence:0.105", data, seed=0, context=context)
    parts = forget.info["partitions"]
    assert len(forget) == 21 and [len(parts[k]) for k in ("low", "mid", "high")] == [7, 7, 7]
    assert sorted(parts["low"] + parts["mid"] + parts["high"]) == forget.indices.tolist()
    scores = 1 - dynamics.true_prob.mean(0)
    assert scores[parts["low"]].max() <= scores[parts["mid"]].min() <= scores[parts["high"]].min()
    high = make_forget_set("memorization:high:confidence:0.06", data, seed=0, context=context)
    assert len(np.intersect1d(high.indices, flipped)) >= 6  # most of the 12 mislabelled examples rank top
    assert "partitions" not in high.info


def test_memorization_forget_kind_from_file(tmp_path, flipped_case):
    data, *_ = flipped_case
    scores = np.zeros(len(data.train))
    scores[[4, 8, 15]] = [1.0, 2.0, 3.0]
    path = tmp_path / "scores.npy"
    np.save(path, scores)
    forget = make_forget_set(f"memorization:high:{path}:0.015", data, seed=0)  # no original model needed
    assert forget.indices.tolist() == [4, 8, 15]
    np.save(path, scores[:-1])
    with pytest.raises(ConfigError, match="199 scores but the dataset has 200"):
        make_forget_set(f"memorization:high:{path}", data, seed=0)


def test_entanglement_forget_kind(flipped_case):
    data, model, dynamics, _ = flipped_case
    context = ForgetContext(lambda: (model, dynamics), "cpu")
    low = make_forget_set("entanglement:low:10", data, seed=0, context=context)
    high = make_forget_set("entanglement:high:10", data, seed=0, context=context)
    assert len(low) == len(high) == 20 and not np.intersect1d(low.indices, high.indices).size
    with torch.no_grad():
        features = model.eval().features(data.train.x).numpy()
    distance = np.linalg.norm(features - features.mean(0), axis=1)
    assert distance[low.indices].max() <= distance[high.indices].min()
    with pytest.raises(ConfigError, match="low, mid, high or a group number"):
        make_forget_set("entanglement:mix", data, seed=0, context=context)
    # The official RUM groups (main_forget.py:224-226): of 10 groups, low = 2, mid = 8, high = 9.
    assert (low.info["group"], high.info["group"]) == (2, 9)
    nearest = make_forget_set("entanglement:0:10", data, seed=0, context=context)
    assert distance[nearest.indices].max() <= distance[low.indices].min()
    part = make_forget_set("entanglement:high:10:0.05", data, seed=0, context=context)
    assert len(part) == 10 and set(part.indices) <= set(high.indices)  # the group's 10 nearest the centroid
    assert distance[part.indices].max() <= distance[np.setdiff1d(high.indices, part.indices)].min()


def test_entanglement_groups_by_hand():
    features = np.array([[0.0], [10.0], [1.0], [-0.5], [-10.0], [0.2]])  # centroid 0.1167
    assert [g.tolist() for g in entanglement_groups(features, 3)] == [[5, 0], [3, 2], [1, 4]]  # nearest first
    # ⌊n/G⌋ per group, the farthest remainder in none (RUM surgical_plugins/cluster.py:186-189)
    assert [g.tolist() for g in entanglement_groups(np.vstack([features, [[30.0]]]), 3)] == [[2, 5], [0, 3], [1, 4]]


# ---------------------------------------------------------------- the pool


@pytest.fixture(scope="module")
def tiny_data():
    from memunlearn import load_dataset

    return subsample(load_dataset("digits"), n_train=120, n_test=40, seed=1)


def _tiny_spec(data, width=4):
    return pool_spec_for(data, "cnn", width, TrainConfig(epochs=2, lr=0.05, batch_size=32))


def test_subset_indices_are_seeded_and_sized():
    a = subset_indices(100, 0.7, seed=0, index=3)
    assert len(a) == 70 and len(np.unique(a)) == 70
    np.testing.assert_array_equal(a, subset_indices(100, 0.7, seed=0, index=3))
    assert not np.array_equal(a, subset_indices(100, 0.7, seed=0, index=4))


def test_pool_resumes_after_interruption(tmp_path, tiny_data):
    spec = _tiny_spec(tiny_data)
    pool_dir = tmp_path / "pool"
    trained = []

    def interrupt_after_two(result):
        trained.append(result["index"])
        if len(trained) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        build_pool(tiny_data, spec, 4, pool_dir=pool_dir, on_member=interrupt_after_two)
    assert trained == [0, 1]
    stamps = {k: os.stat(member_path(pool_dir, k)).st_mtime_ns for k in (0, 1)}
    (pool_dir / ".member-00002.safetensors.abc.tmp").write_bytes(b"half written")  # a killed write

    resumed = []
    pool = build_pool(tiny_data, spec, 4, pool_dir=pool_dir, on_member=lambda r: resumed.append(r["index"]))
    assert resumed == [2, 3] and pool.build["trained"] == 2 and pool.build["reused"] == 2
    assert {k: os.stat(member_path(pool_dir, k)).st_mtime_ns for k in (0, 1)} == stamps
    assert pool.masks.shape == (4, 120) and pool.train_logits.dtype == np.float16
    assert pool.test_logits.shape == (4, 40, 10)
    np.testing.assert_array_equal(pool.masks.sum(1), [84] * 4)

    member_path(pool_dir, 1).write_bytes(b"corrupt")  # a damaged member is trained again, not read
    again = []
    build_pool(tiny_data, spec, 4, pool_dir=pool_dir, on_member=lambda r: again.append(r["index"]))
    assert again == [1]


def test_pool_exact_scores_and_refusals(tmp_path, tiny_data):
    spec = _tiny_spec(tiny_data)
    pool_dir = tmp_path / "pool"
    pool = build_pool(tiny_data, spec, 4, pool_dir=pool_dir)
    model = build_model("cnn", 1, 10, width=4, image_size=8)
    scores = memorization_scores("exact", tiny_data, model, None, pool_dir=pool_dir, pool_size=4,
                                 train_config=spec.train)
    expected = feldman_zhang(pool.masks, pool.correct(tiny_data.train.y)).scores
    np.testing.assert_array_equal(np.isnan(scores), np.isnan(expected))
    np.testing.assert_allclose(scores[~np.isnan(scores)], expected[~np.isnan(expected)])
    with pytest.raises(ConfigError, match="was built for"):
        build_pool(tiny_data, _tiny_spec(tiny_data, width=8), 4, pool_dir=pool_dir)
    other = subsample(tiny_data, n_train=100, seed=0)
    with pytest.raises(ConfigError, match="was built for"):
        load_pool(pool_dir, other)
    with pytest.raises(ConfigError, match="lacks 2 of its 6 members"):
        load_pool(pool_dir, tiny_data, pool_size=6)
    with pytest.raises(ConfigError, match="unknown executor"):
        build_pool(tiny_data, spec, 4, pool_dir=pool_dir, executor="slurm")


# ---------------------------------------------------------------- CLI


def test_cli_memorization_bad_input_exits_2(tmp_path, capsys):
    from memunlearn.cli import main

    assert main(["memorization", "proxies", "--proxies", "confidence,nope", "--out", str(tmp_path / "p")]) == 2
    assert "unknown memorization proxy 'nope'" in capsys.readouterr().err
    assert main(["memorization", "pool", "--executor", "slurm"]) == 2
    assert "unknown executor" in capsys.readouterr().err
    short = tmp_path / "short.npy"
    np.save(short, np.zeros(3))
    out = tmp_path / "compare.json"
    assert main(["memorization", "compare", "--scores", str(short), "--out", str(out)]) == 2
    assert "has 3 scores but the dataset has 1437" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "p").exists()


def test_cli_memorization_pool_scores_compare(tmp_path, capsys):
    from memunlearn.cli import main

    common = ["--train-subset", "150", "--width", "4", "--epochs", "2", "--device", "cpu"]
    pool_args = ["--pool-size", "4", "--pool-dir", str(tmp_path / "pool")]
    assert main(["memorization", "pool", *common, *pool_args]) == 0
    assert "trained now: 4" in capsys.readouterr().out
    assert main(["memorization", "scores", *common, *pool_args, "--out", str(tmp_path / "exact.npy")]) == 0
    assert np.load(tmp_path / "exact.npy").shape == (150,)
    assert (tmp_path / "exact.json").exists() and (tmp_path / "exact.stderr.npy").exists()
    assert main(["memorization", "proxies", *common, "--proxies", "confidence,el2n", "--out", str(tmp_path / "px")]) == 0
    assert main(["memorization", "compare", *common, *pool_args, "--proxies", "confidence,el2n",
                 "--proxy-dir", str(tmp_path / "px"), "--out", str(tmp_path / "cmp.json"), "--json"]) == 0
    import json

    payload = json.loads((tmp_path / "cmp.json").read_text())
    assert set(payload["proxies"]) == {"confidence", "el2n"} and payload["pool_size"] == 4
    # a pool folder of another model is refused, and nothing is overwritten
    before = (tmp_path / "exact.npy").read_bytes()
    assert main(["memorization", "scores", "--train-subset", "150", "--width", "8", "--epochs", "2", *pool_args,
                 "--out", str(tmp_path / "exact.npy")]) == 2
    assert "was built for" in capsys.readouterr().err
    assert (tmp_path / "exact.npy").read_bytes() == before
