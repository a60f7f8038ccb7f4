"""Privacy evaluation: logit-scaled confidence, U-LiRA, the NeurIPS 2023 challenge score, drivers."""

from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
import torch

from memunlearn.errors import ConfigError
from memunlearn.privacy import (
    attack_metrics,
    challenge_final_score,
    challenge_forget_score,
    challenge_points,
    example_epsilon,
    fit_gaussians,
    gaussian_log_likelihood_ratio,
    logit_confidence,
    official_logit_confidence,
    ulira_from_statistics,
)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread: on 2 cores shared with other jobs, 2 threads made training 15x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --------------------------------------------------------------------------------------------
# logit-scaled confidence


def test_logit_confidence_is_log_p_true_minus_log_p_rest():
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
    labels = np.array([0, 2])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = [math.log(probs[0, 0]) - math.log(probs[0, 1] + probs[0, 2]),
                math.log(probs[1, 2]) - math.log(probs[1, 0] + probs[1, 1])]
    np.testing.assert_allclose(logit_confidence(logits, labels), expected, rtol=1e-12)
    np.testing.assert_allclose(official_logit_confidence(logits.astype(np.float32), labels), expected, rtol=1e-5)


def test_logit_confidence_never_saturates_but_the_official_one_does():
    logits = np.array([[1000.0, 0.0, -1000.0], [0.0, 1000.0, 0.0]], dtype=np.float32)
    exact = logit_confidence(logits, [0, 0])  # 1000 − logsumexp(0, −1000); 0 − logsumexp(1000, 0)
    assert exact[0] == pytest.approx(1000.0) and exact[1] == pytest.approx(-1000.0)
    official = official_logit_confidence(logits, [0, 0])
    assert official[0] == pytest.approx(-math.log(1e-45)) and official[1] == pytest.approx(math.log(1e-45))


def test_logit_confidence_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels must be in"):
        logit_confidence(np.zeros((2, 3)), [0, 3])


# --------------------------------------------------------------------------------------------
# U-LiRA: Gaussians, likelihood ratio, attack metrics


def test_gaussian_likelihood_ratio_by_hand():
    # IN samples 1, 2, 3 (mean 2, variance 1), OUT samples -2, 0, 2 (mean 0, variance 4).
    phi = np.array([[1.0], [2.0], [3.0], [-2.0], [0.0], [2.0]])
    is_in = np.array([[True], [True], [True], [False], [False], [False]])
    fit = fit_gaussians(phi, is_in, ~is_in, min_samples=3)
    assert (fit.mean_in[0], fit.var_in[0], fit.mean_out[0], fit.var_out[0]) == (2.0, 1.0, 0.0, 4.0)
    # log N(1; 2, 1) − log N(1; 0, 4) = [−½·log 2π − ½] − [−½·log 8π − ⅛] = ½·log 4 − ½ + ⅛
    by_hand = 0.5 * math.log(4) - 0.5 + 0.125
    lr = gaussian_log_likelihood_ratio(1.0, fit.mean_in[0], fit.var_in[0], fit.mean_out[0], fit.var_out[0])
    assert float(lr) == pytest.approx(by_hand, abs=1e-12)


def test_a_side_with_few_samples_uses_the_pooled_variance():
    # Example 0 has 2 IN samples (< min_samples = 4), example 1 has 5: both use per-example OUT
    # variances, and example 0's IN variance is the pooled Σ(n−1)s² / Σ(n−1) over both examples.
    phi = np.array([[0.0, 10.0], [2.0, 11.0], [5.0, 12.0], [5.0, 13.0], [5.0, 14.0],
                    [7.0, 0.0], [9.0, 0.0], [11.0, 2.0], [13.0, 4.0], [5.0, 6.0]])
    is_in = np.zeros_like(phi, dtype=bool)
    is_in[:2, 0] = True
    is_in[:5, 1] = True
    is_out = np.zeros_like(phi, dtype=bool)
    is_out[5:, :] = True
    fit = fit_gaussians(phi, is_in, is_out)
    pooled = (1 * np.var([0.0, 2.0], ddof=1) + 4 * np.var([10, 11, 12, 13, 14.0], ddof=1)) / (1 + 4)
    assert fit.pooled_var_in == pytest.approx(pooled)
    assert fit.var_in[0] == pytest.approx(pooled)
    assert fit.var_in[1] == pytest.approx(2.5)
    assert fit.var_out[0] == pytest.approx(np.var([7, 9, 11, 13, 5.0], ddof=1))


def test_attack_metrics_by_hand():
    # positives 0.4, 0.3; negatives 0.3, -0.2, -0.4 (one tie across classes).
    scores = [0.4, 0.3, 0.3, -0.2, -0.4]
    labels = [1, 0, 1, 0, 0]
    m = attack_metrics(scores, labels, n_bootstrap=0)
    assert m["auc"]["value"] == pytest.approx(5.5 / 6)  # pairs won: 3 + (2 + ½ for the tie)
    assert m["accuracy"]["value"] == pytest.approx((1 + 2 / 3) / 2)  # threshold 0.3
    assert m["accuracy_at_zero"]["value"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["tpr_at_fpr_0.01"]["value"] == pytest.approx(0.5)  # only the 0.4 passes at FPR 0
    assert (m["positives"], m["negatives"]) == (2, 3)


def _synthetic_pool(shift: float, seed: int = 0, models: int = 48, examples: int = 60):
    """φ of unlearned models: per-example level + noise, + ``shift`` on the examples a model forgot."""
    rng = np.random.default_rng(seed)
    forgot = rng.random((models, examples)) < 0.3
    unseen = ~forgot & (rng.random((models, examples)) < 0.5)
    level = rng.normal(0, 3, size=examples)
    phi = level[None, :] + rng.normal(size=(models, examples)) + shift * forgot
    return phi, forgot, unseen


def test_ulira_separates_members_that_were_not_unlearned():
    phi, forgot, unseen = _synthetic_pool(shift=10.0)
    attack = ulira_from_statistics(phi, forgot, unseen, n_bootstrap=200)
    assert attack.metrics["accuracy"]["value"] > 0.99
    assert attack.metrics["accuracy_at_zero"]["value"] > 0.99
    assert attack.metrics["auc"]["value"] > 0.99
    assert attack.metrics["positives"] == attack.metrics["negatives"]  # balanced per target model
    per = attack.per_example
    assert np.all(np.diff(per["index"]) > 0) and per["accuracy"].min() > 0.9


def test_ulira_at_chance_when_in_and_out_are_one_distribution():
    phi, forgot, unseen = _synthetic_pool(shift=0.0)
    attack = ulira_from_statistics(phi, forgot, unseen, n_bootstrap=300)
    for name in ("accuracy_at_zero", "auc"):
        metric = attack.metrics[name]
        assert abs(metric["value"] - 0.5) < 0.05, name
        assert metric["low"] < 0.5 < metric["high"], name
    # the best-threshold accuracy is chosen on the cases themselves: slightly above 0.5, never below
    assert 0.5 <= attack.metrics["accuracy"]["value"] < 0.56


def test_ulira_explicit_split_scores_only_the_targets():
    phi, forgot, unseen = _synthetic_pool(shift=10.0)
    attack = ulira_from_statistics(phi, forgot, unseen, targets=[0, 1, 2], n_bootstrap=0)
    assert set(np.unique(attack.cases["member"])) <= {0, 1, 2}
    with pytest.raises(ValueError, match="both shadows and targets"):
        ulira_from_statistics(phi, forgot, unseen, targets=[0, 1], shadows=[1, 2, 3], n_bootstrap=0)


# --------------------------------------------------------------------------------------------
# The NeurIPS 2023 challenge score


def _official_port(unlearned: np.ndarray, retrained: np.ndarray) -> tuple[float, list[float]]:
    """google-deepmind/unlearning_evaluation metric.py (commit ffae0ff), transcribed with numpy in
    place of torch/CUDA: every threshold of both attack families compared against every model."""
    delta, cap, per_unit, buffer = 1e-5, 50, 100, 2.0
    pos_all = np.where(np.median(retrained, 0) > np.median(unlearned, 0), retrained, unlearned)
    neg_all = np.where(np.median(retrained, 0) > np.median(unlearned, 0), unlearned, retrained)
    epsilons = []
    for i in range(unlearned.shape[1]):
        pos, neg = pos_all[:, i], neg_all[:, i]
        pos_diff, neg_diff = pos.max() - pos.min(), neg.max() - neg.min()
        largest = pos_diff if pos_diff > neg_diff else neg_diff
        smallest = neg_diff if pos_diff > neg_diff else pos_diff
        with np.errstate(all="ignore"):
            if np.float64(smallest) / np.float64(largest) < 0.01:
                epsilons.append(cap)
                continue
        # double threshold: the peakier sample is "positive" inside [left, right]
        p, q = (neg, pos) if pos_diff >= neg_diff else (pos, neg)
        width = smallest
        lo, hi = p.min() + width - buffer, p.max() + buffer
        rights = np.linspace(lo, hi, num=int(np.ceil((hi - lo) * per_unit)))
        n_left = int(np.ceil(2 * buffer * per_unit))
        lefts = np.concatenate([np.linspace(r - width - buffer, r - width + buffer, num=n_left) for r in rights])
        rights = np.repeat(rights, n_left)
        inside_p = (lefts[None, :] <= p[:, None]) & (p[:, None] <= rights[None, :])
        inside_q = (lefts[None, :] <= q[:, None]) & (q[:, None] <= rights[None, :])
        tpr_d, fnr_d = inside_p.astype(np.float32).mean(0), (~inside_p).astype(np.float32).mean(0)
        fpr_d, tnr_d = inside_q.astype(np.float32).mean(0), (~inside_q).astype(np.float32).mean(0)
        # single threshold: predict "positive" at or above t
        both = np.concatenate([pos, neg])
        ts = np.linspace(both.min(), both.max(), int(np.ceil((both.max() - both.min()) * per_unit)))
        tpr_s = (pos[:, None] >= ts[None, :]).astype(np.float32).mean(0)
        fpr_s = (neg[:, None] >= ts[None, :]).astype(np.float32).mean(0)
        tnr_s = (neg[:, None] < ts[None, :]).astype(np.float32).mean(0)
        fnr_s = (pos[:, None] < ts[None, :]).astype(np.float32).mean(0)
        tpr, fnr = np.concatenate([tpr_d, tpr_s]), np.concatenate([fnr_d, fnr_s])
        fpr, tnr = np.concatenate([fpr_d, fpr_s]), np.concatenate([tnr_d, tnr_s])
        eps = np.zeros(len(tpr), dtype=np.float32)
        eps = np.where((fpr + fnr == 0) & (tpr + tnr == 2), np.float32(np.inf), eps)
        eps = np.where((eps == 0) & (fpr * fnr == 0), np.float32(np.nan), eps)
        with np.errstate(all="ignore"):
            value = np.clip(np.nanmax([np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr)], axis=0), 0, None)
        eps = np.where(eps == 0, value, eps)
        eps = eps[~np.isnan(eps)]
        assert eps.size
        epsilons.append(np.nanmax(eps))
    epsilons = np.clip(epsilons, 0, cap)
    max_epsilon = np.ceil(np.log(unlearned.shape[0] - 1))
    start, points, buckets = 0, 1, {}
    while start + 0.5 <= max_epsilon:
        buckets[start] = points
        points /= 2
        start += 0.5
    score = 0
    for e in epsilons:
        for bucket_start, bucket_points in buckets.items():
            if e < bucket_start + 0.5:
                score += bucket_points
                break
    return score / unlearned.shape[1], list(epsilons)


def test_example_epsilon_by_hand():
    # Best attack: φ ≥ t with 3.0 < t ≤ 3.5 ... or 2.5 < t ≤ 3.0: FPR = FNR = 1/4, so
    # ε = log(1 − δ − ¼) − log ¼ = log 3 (minus δ's share); float32 as in the official code.
    eps = example_epsilon([2.5, 3.5, 4.5, 5.5], [0.0, 1.0, 2.0, 3.0])
    assert eps == pytest.approx(math.log(0.75 - 1e-5) - math.log(0.25), abs=1e-6)
    assert example_epsilon([10.0, 11, 12, 13], [0.0, 1, 2, 3]) == 50.0  # separated: ε = ∞ → 50
    assert example_epsilon([5.0, 5, 5, 5.001], [0.0, 1, 2, 3]) == 50.0  # range ratio < 1%


def test_challenge_score_worked_example():
    # Four forget examples, N = 4 models per side: ⌈ln 3⌉ = 2, so bins [0,.5) [.5,1) [1,1.5) [1.5,2)
    # are worth 1, ½, ¼, ⅛ and ε ≥ 2 is worth 0.
    retrained = np.array([[0.0, 0.0, 0.0, 0.0], [1, 1, 1, 1], [2, 2, 2, 2], [3, 3, 3, 3]])
    unlearned = np.array([[2.5, 0.0, 10.0, 5.0], [3.5, 1, 11, 5], [4.5, 2, 12, 5], [5.5, 3, 13, 5.001]])
    result = challenge_forget_score(unlearned, retrained)
    # ε = log 3 ≈ 1.10 → ¼; identical samples: ε = 0 → 1; separated: 50 → 0; peaky: 50 → 0.
    np.testing.assert_allclose(result.epsilons, [math.log(3), 0.0, 50.0, 50.0], atol=1e-4)
    assert result.points.tolist() == [0.25, 1.0, 0.0, 0.0]
    assert result.score == pytest.approx((0.25 + 1) / 4)
    final = challenge_final_score(result.score, [0.9, 0.9], [1.0, 1.0], [0.8, 0.8], [0.8, 0.8])
    assert final == pytest.approx(0.3125 * 0.9)
    port_score, port_eps = _official_port(unlearned, retrained)
    assert result.score == port_score and result.epsilons.tolist() == port_eps


def test_challenge_score_matches_the_official_code_on_random_samples():
    rng = np.random.default_rng(3)
    models, examples = 8, 6
    retrained = rng.normal(0, 1, size=(models, examples))
    unlearned = rng.normal(0, 1, size=(models, examples)) * [1, 1, 0.5, 2, 1, 0.3] + [0, 0.5, 1, 2, -1, 0.2]
    result = challenge_forget_score(unlearned, retrained)
    port_score, port_eps = _official_port(unlearned, retrained)
    assert result.epsilons.tolist() == port_eps
    assert result.score == port_score
    assert len(set(result.points.tolist())) > 1  # the case exercises several bins


def test_challenge_points_cut_off_at_ceil_log_n_minus_1():
    # N = 512: ⌈ln 511⌉ = 7, so 14 bins of width ½ (SPEC's "⌈ln(N−1)⌉ bins" would be 7).
    points = challenge_points([0.0, 0.5, 3.49, 6.99, 7.0, 50.0], 512)
    assert points.tolist() == [1.0, 0.5, 2.0**-6, 2.0**-13, 0.0, 0.0]
    assert challenge_points([0.0], 2).tolist() == [0.0]  # N = 2: ⌈ln 1⌉ = 0, nothing scores


def test_privacy_doctests():
    import memunlearn.privacy as package
    from memunlearn.privacy import attack, challenge, confidence, drivers

    for module in (package, attack, challenge, confidence, drivers):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__


# --------------------------------------------------------------------------------------------
# Drivers, on a tiny hand-built pool of digits models


@pytest.fixture(scope="module")
def tiny_pool(digits):
    from memunlearn.data.core import Dataset
    from memunlearn.memorization.pool import ModelPool
    from memunlearn.models import build_model
    from memunlearn.training import TrainConfig, predict_logits, train

    torch.set_num_threads(1)  # module fixtures run before the per-test one above
    n, members = 300, 10
    data = Dataset("digits", digits.train.subset(np.arange(n)), digits.test.subset(np.arange(150)), digits.classes)
    rng = np.random.default_rng(0)
    masks = np.zeros((members, n), dtype=bool)
    recipe = TrainConfig(epochs=20, lr=0.05, batch_size=32)
    models = []
    for k in range(members):
        masks[k, rng.choice(n, n // 2, replace=False)] = True
        model = build_model("mlp", 1, 10, width=64, image_size=8, seed=k)
        train(model, data.train.subset(np.flatnonzero(masks[k])), TrainConfig(**{**recipe.to_dict(), "seed": k}),
              "cpu", record_dynamics=False)
        models.append(model.eval())
    logits = np.stack([predict_logits(m, data.train, "cpu").numpy() for m in models]).astype(np.float16)
    info = {"key": "tiny-test-pool", "model": "mlp", "width": 64, "train": recipe.to_dict(),
            "dataset": {"in_channels": 1, "num_classes": 10, "image_size": 8}}
    pool = ModelPool(directory=None, info=info, masks=masks, train_logits=logits,
                     test_logits=np.zeros((members, 0, 10), np.float16), members=[])
    return pool, data, models


def test_ulira_driver_measures_floor_and_ceiling_and_resumes(tiny_pool):
    from memunlearn.privacy import ulira

    pool, data, models = tiny_pool
    options = dict(folds=5, n_bootstrap=200, device="cpu")
    ceiling = ulira(pool, data, "iid:0.5", "none", **options)  # the members themselves
    floor = ulira(pool, data, "iid:0.5", "retrain", member_model=lambda k: models[k], **options)
    auc_ceiling, auc_floor = ceiling.attack.metrics["auc"], floor.attack.metrics["auc"]
    assert auc_ceiling["low"] > 0.55
    assert abs(auc_floor["value"] - 0.5) < 0.07
    assert auc_ceiling["value"] > auc_floor["value"] + 0.05
    assert floor.cost["computed"] == len(pool) and floor.cost["examples"] > 0 and floor.cost["unlearn_seconds"] > 0
    for record in floor.members:  # F_k comes from member k's own subset
        assert record["forget_size"] == 75 and record["retain_size"] == 75

    def no_model(k):
        raise AssertionError("a cached member was recomputed")

    again = ulira(pool, data, "iid:0.5", "retrain", member_model=no_model, **options)
    assert again.cost["reused"] == len(pool) and again.cost["computed"] == 0
    assert again.attack.metrics == floor.attack.metrics
    other_seed = ulira(pool, data, "iid:0.5", "retrain", member_model=lambda k: models[k], **{**options, "seed": 1})
    assert other_seed.cost["computed"] == len(pool)  # a changed setting never reuses a stale file
    report = floor.to_dict()
    assert report["per_example"]["index"] == floor.attack.per_example["index"].tolist()


def test_ulira_driver_refuses_what_cannot_apply(tiny_pool):
    from memunlearn.privacy import member_forget_indices, ulira

    pool, data, _ = tiny_pool
    with pytest.raises(ConfigError, match="mislabeled"):
        ulira(pool, data, "mislabeled:0.1", "retrain", device="cpu")
    with pytest.raises(ConfigError, match="set by the driver"):
        ulira(pool, data, "iid:0.1", "finetune", {"seed": 3}, device="cpu")
    subset = np.flatnonzero(pool.masks[0])
    chosen = member_forget_indices(data, subset, "classes:3,8:0.05", seed=0)
    assert set(chosen) <= set(subset) and set(data.train.y[chosen].tolist()) <= {3, 8}
    assert len(chosen) == round(0.05 * len(subset))


def test_reproduce_pool_member_matches_the_pool(digits, tmp_path):
    from memunlearn.data.core import Dataset
    from memunlearn.memorization.pool import build_pool, pool_spec_for
    from memunlearn.privacy import reproduce_pool_member
    from memunlearn.training import TrainConfig, predict_logits

    data = Dataset("digits", digits.train, digits.test.subset(np.arange(50)), digits.classes)  # digits' own strides
    # a CNN on digits' channels_last-like strides, reproduced under another thread count: the pool's
    # own member training (threads, standard strides) must be what the reproduction runs
    spec = pool_spec_for(data, model="cnn", width=4, train_config=TrainConfig(epochs=15, batch_size=32))
    pool = build_pool(data, spec, pool_size=2, pool_dir=tmp_path / "pool", device="cpu")
    torch.set_num_threads(2)
    model = reproduce_pool_member(pool, data, 1, device="cpu")
    logits = predict_logits(model, data.train, "cpu").numpy()
    np.testing.assert_allclose(logits, pool.train_logits[1].astype(np.float32), atol=2e-2, rtol=2e-3)


def test_neurips2023_driver_scores_and_resumes(tiny_pool):
    from memunlearn.privacy import neurips2023_score

    _, data, models = tiny_pool
    original = models[0]
    trained_on = np.flatnonzero(tiny_pool[0].masks[0])
    forget, retain = data.train.subset(trained_on[:12]), data.train.subset(trained_on[12:])
    calls = []
    options = dict(n_models=3, retrain_hparams={"epochs": 10, "batch_size": 32}, device="cpu",
                   forget_indices=trained_on[:12], on_model=lambda side, record: calls.append(side))
    report = neurips2023_score(original, forget, retain, data.test, "finetune", {"epochs": 1}, **options)
    assert report.forget.epsilons.shape == (12,) and calls.count("unlearned") == calls.count("retrained") == 3
    acc = report.accuracy
    assert report.score == pytest.approx(report.forget.score * acc["unlearned_retain"] / acc["retrained_retain"]
                                         * acc["unlearned_test"] / acc["retrained_test"])
    assert report.cost["unlearned_computed"] == 3 and report.cost["retrained_computed"] == 3
    again = neurips2023_score(original, forget, retain, data.test, "finetune", {"epochs": 1}, **options)
    assert again.cost["unlearned_reused"] == 3 and again.cost["retrained_reused"] == 3
    assert again.score == report.score
    other = neurips2023_score(original, forget, retain, data.test, "neggrad", {"epochs": 1}, **options)
    assert other.cost["unlearned_computed"] == 3 and other.cost["retrained_reused"] == 3  # oracles are shared
    assert report.to_dict()["forget_indices"] == trained_on[:12].tolist()
