"""The cheap attack tier (RMIA, offline LiRA, RMIA-U), the pool's stored weights, and the proxies
added with them (CSL, learning time, RUM's curvature). Digits, seconds."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.stats
import torch
from torch import nn

from memunlearn.errors import ConfigError, DamagedArtefactWarning
from memunlearn.privacy.tier import (
    fit_offline_a, lira_offline, rmia_likelihood_ratio, rmia_offline, rmia_scores_from_ratios, true_class_probability,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


# ------------------------------------------------------------------ transcriptions of the official code


def official_run_rmia(target_signals, out_signals, z_signals, z_out_signals, offline_a, gamma):
    """privacytrustlab/ml_privacy_meter, modules/attacks.py ``run_rmia`` (the lines after
    ``get_rmia_out_signals``), with the threshold ``ratios > 1.0`` as ``ratios > gamma``."""
    mean_out_x = np.mean(out_signals, axis=1)
    mean_x = (1 + offline_a) / 2 * mean_out_x + (1 - offline_a) / 2
    prob_ratio_x = target_signals.ravel() / mean_x
    mean_out_z = np.mean(z_out_signals, axis=1)
    mean_z = (1 + offline_a) / 2 * mean_out_z + (1 - offline_a) / 2
    prob_ratio_z = z_signals.ravel() / mean_z
    ratios = prob_ratio_x[:, np.newaxis] / prob_ratio_z
    return np.average(ratios > gamma, axis=1)


def official_generate_ours_offline(keep, scores, check_keep, check_scores, out_size=100000, fix_variance=True):
    """carlini/lira (google-research/lira), plot.py ``generate_ours_offline``, one augmentation."""
    dat_out = []
    for j in range(scores.shape[1]):
        dat_out.append(scores[~keep[:, j], j, :])
    out_size = min(min(map(len, dat_out)), out_size)
    dat_out = np.array([x[:out_size] for x in dat_out])
    mean_out = np.median(dat_out, 1)
    std_out = np.std(dat_out) if fix_variance else np.std(dat_out, 1)
    prediction, answers = [], []
    for ans, sc in zip(check_keep, check_scores):
        score = scipy.stats.norm.logpdf(sc, mean_out, std_out + 1e-30)
        prediction.extend(score.mean(1))
        answers.extend(ans)
    return prediction, answers


@pytest.mark.parametrize("gamma", [1.0, 2.0])
def test_rmia_matches_the_official_pairwise_formula(gamma):
    rng = np.random.default_rng(0)
    n, m, refs = 40, 60, 3
    target_x, target_z = rng.random(n), rng.random(m)
    out_x, out_z = rng.random((n, refs)), rng.random((m, refs))
    for a in (0.0, 0.3, 1.0):
        official = official_run_rmia(target_x, out_x, target_z, out_z, a, gamma)
        ours = rmia_offline(target_x, out_x.T, target_z, out_z.T, a, gamma)
        np.testing.assert_allclose(ours, official)


def test_rmia_by_hand():
    # Pr(x) = (1+a)/2 · 0.5 + (1−a)/2 at a = 0.5: 0.375 + 0.25 = 0.625 → LR = 0.5 / 0.625 = 0.8
    assert rmia_likelihood_ratio([0.5], [[0.5]], a=0.5)[0] == pytest.approx(0.8)
    # NaN = that model is not a reference for the example: x0 uses 0.2 and 0.4, x1 only 0.5
    lr = rmia_likelihood_ratio([0.6, 0.5], [[0.2, np.nan], [0.4, 0.5]], a=1.0)
    np.testing.assert_allclose(lr, [2.0, 1.0])
    # LR(x)/LR(z) > γ = 2 for z with LR(z) < 1 (x0) and for none (x1)
    np.testing.assert_allclose(rmia_scores_from_ratios(lr, [0.5, 0.9, 1.0, 3.0], gamma=2.0), [0.5, 0.0])
    with pytest.raises(ValueError, match="no reference"):
        rmia_likelihood_ratio([0.5], [[np.nan]], a=1.0)


def test_true_class_probability_with_temperature():
    logits = np.array([[2.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(true_class_probability(logits, [0, 1]), [np.exp(2) / (np.exp(2) + 1), 0.5])
    np.testing.assert_allclose(true_class_probability(logits, [0, 1], temperature=2.0),
                               [np.e / (np.e + 1), 0.5])
    stacked = true_class_probability(np.stack([logits, -logits]), [0, 1])
    assert stacked.shape == (2, 2) and stacked[1, 0] == pytest.approx(1 / (np.exp(2) + 1))


def test_fit_offline_a_is_the_official_grid_search():
    """ml_privacy_meter ``tune_offline_a``: a over np.arange(0, 1.1, 0.1), the first maximum of the AUC."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    t_in, t_out, t_z = rng.random(30) * 0.5 + 0.5, rng.random(30), rng.random(50)
    r_in, r_out, r_z = rng.random((1, 30)), rng.random((1, 30)), rng.random((1, 50))
    a, tried = fit_offline_a(t_in, r_in, t_out, r_out, t_z, r_z, gamma=1.0)
    expected_a, best = 0.0, 0.0
    for test_a in np.arange(0, 1.1, 0.1):
        scores = np.r_[official_run_rmia(t_in, r_in.T, t_z, r_z.T, test_a, 1.0),
                       official_run_rmia(t_out, r_out.T, t_z, r_z.T, test_a, 1.0)]
        value = roc_auc_score(np.r_[np.ones(30), np.zeros(30)], scores)
        assert tried[round(float(test_a), 1)] == pytest.approx(value)
        if value > best:
            best, expected_a = value, round(float(test_a), 1)
    assert a == expected_a


def test_lira_offline_matches_the_official_code():
    rng = np.random.default_rng(1)
    models, n = 12, 25
    keep = rng.random((models, n)) < 0.5
    keep[:, 0] = False  # one example no model trained on
    phi = rng.normal(size=(models, n)) + 2 * keep
    check = rng.normal(size=n)
    official, _ = official_generate_ours_offline(keep, phi[:, :, None], [np.zeros(n, bool)], check[None, :, None])
    references = np.where(keep, np.nan, phi)
    ours, fit = lira_offline(check, references)
    # the official sweep ranks by −prediction: our score (higher = member) is −logpdf
    np.testing.assert_allclose(ours, -np.asarray(official))
    assert fit["out_size"] == int((~keep).sum(axis=0).min())
    by_hand, _ = lira_offline([0.0, 3.0], [[0.0, 0.0], [2.0, 2.0]])  # median 1 and 1, σ = 1
    np.testing.assert_allclose(by_hand, 0.5 * np.log(2 * np.pi) + 0.5 * np.array([1.0, 4.0]))


# ------------------------------------------------------------------ the tier on digits


@pytest.fixture(scope="module")
def leaky_case(digits, tmp_path_factory):
    """Digits with 10% of the training labels replaced at random: the forget set. The original
    memorizes them (a leak to find); a retrain without them and an independent retrain (another
    seed) do not (the floor and the false-positive check). Every test label is replaced the same
    way, so the held-out negatives are exchangeable with the forget set: an attack's negatives
    must come from the forget set's distribution, or a retrain is told apart by distribution
    alone (offline LiRA's fixed variance does exactly that)."""
    from memunlearn.data.core import Dataset, Examples
    from memunlearn.memorization.pool import build_pool, pool_spec_for
    from memunlearn.models import build_model
    from memunlearn.training import TrainConfig, train

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = len(digits.train)
    forget = np.sort(rng.choice(n, n // 10, replace=False))
    labels = digits.train.y.clone()
    labels[forget] = torch.from_numpy((digits.train.y.numpy()[forget] + rng.integers(1, 10, len(forget))) % 10)
    test_labels = (digits.test.y + torch.from_numpy(rng.integers(1, 10, len(digits.test)))) % 10
    data = Dataset("digits", Examples(digits.train.x, labels), Examples(digits.test.x, test_labels), digits.classes,
                   fingerprint=f"{digits.fingerprint}-flipped")
    recipe = TrainConfig(epochs=20, lr=0.05, batch_size=32)
    spec = pool_spec_for(data, "mlp", 64, recipe, subset_fraction=0.5, keep_weights=True)
    pool = build_pool(data, spec, 16, pool_dir=tmp_path_factory.mktemp("pool"), device="cpu")
    retain = np.setdiff1d(np.arange(n), forget)

    def fit(examples, seed):
        model = build_model("mlp", 1, 10, width=64, image_size=8, seed=seed)
        train(model, examples, TrainConfig(**{**recipe.to_dict(), "seed": seed}), "cpu", record_dynamics=False)
        return model.eval()

    models = {"original": fit(data.train, 100), "oracle": fit(data.train.subset(retain), 101),
              "independent": fit(data.train.subset(retain), 102)}
    return data, pool, forget, models, recipe


def _auc(report):
    return report.metrics["auc"]


def test_rmia_finds_the_leak_and_passes_the_false_positive_check(leaky_case):
    from memunlearn.privacy import rmia_attack

    data, pool, forget, models, recipe = leaky_case
    reports = {name: rmia_attack(model, pool, data, forget, n_references=4, device="cpu", n_bootstrap=300)
               for name, model in models.items()}
    assert _auc(reports["original"])["low"] > 0.7
    assert reports["original"].metrics["tpr_at_fpr_0.01"]["value"] > 0.05
    for name in ("oracle", "independent"):  # the floor, and an independent retrain fed in as if unlearned
        auc = _auc(reports[name])
        assert auc["low"] <= 0.5 <= auc["high"], (name, auc)
    report = reports["original"]
    assert set(report.by_references) == {"1", "2", "4"} and 0 <= report.setting["a"] <= 1
    assert report.setting["a_fitted"] and len(report.setting["a_aucs"]) == 11
    assert report.per_example["index"].tolist() == forget.tolist()
    assert report.per_example["exposed"].mean() > reports["independent"].per_example["exposed"].mean()
    again = rmia_attack(models["original"], pool, data, forget, n_references=4, device="cpu", n_bootstrap=300)
    assert again.metrics == report.metrics  # seeded
    out = report.to_dict()
    assert out["attack"] == "rmia" and len(out["per_example"]["score"]) == len(forget)


def test_lira_offline_finds_the_leak_and_passes_the_false_positive_check(leaky_case):
    from memunlearn.privacy import lira_offline_attack

    data, pool, forget, models, _ = leaky_case
    reports = {name: lira_offline_attack(model, pool, data, forget, device="cpu", n_bootstrap=300)
               for name, model in models.items()}
    assert _auc(reports["original"])["low"] > 0.7
    for name in ("oracle", "independent"):
        auc = _auc(reports[name])
        assert auc["low"] <= 0.5 <= auc["high"], (name, auc)
    assert reports["original"].setting["n_references"] >= 1


def test_rmia_u_finds_the_leak_and_passes_the_false_positive_check(leaky_case, tmp_path):
    from memunlearn.privacy import retrained_references, rmia_u_attack

    data, _, forget, models, recipe = leaky_case
    references, cost = retrained_references(models["original"], data, forget, recipe.retrain_hparams(), 3,
                                            cache_dir=tmp_path, device="cpu")
    assert cost["computed"] == 3 and cost["retrain_seconds"] > 0
    reports = {name: rmia_u_attack(model, references, data, forget, device="cpu", n_bootstrap=300, cost=cost)
               for name, model in models.items()}
    assert _auc(reports["original"])["low"] > 0.7
    for name in ("oracle", "independent"):
        auc = _auc(reports[name])
        assert auc["low"] <= 0.5 <= auc["high"], (name, auc)
    again, cost_again = retrained_references(models["original"], data, forget, recipe.retrain_hparams(), 3,
                                             cache_dir=tmp_path, device="cpu")
    assert cost_again["reused"] == 3 and all(np.array_equal(a[0], b[0]) for a, b in zip(again, references))


def test_rmia_scores_public_function_and_recipe_refusal(leaky_case):
    from memunlearn.privacy import rmia_scores

    data, pool, forget, models, recipe = leaky_case
    heldout = np.arange(50)
    result = rmia_scores(models["original"], pool, data, train_indices=forget, test_indices=heldout, a=0.5,
                         recipe={"model": "mlp", "width": 64, "train": recipe}, device="cpu")
    assert result.train_scores.shape == forget.shape and result.test_scores.shape == heldout.shape
    assert len(np.intersect1d(result.population, heldout)) == 0 and result.a == 0.5
    from memunlearn.privacy.tier import auc

    assert auc(result.train_scores, result.test_scores) > 0.7
    with pytest.raises(ConfigError, match="another recipe") as info:
        rmia_scores(models["original"], pool, data, train_indices=forget, a=0.5,
                    recipe={"model": "mlp", "width": 64, "train": {**recipe.to_dict(), "epochs": 3}})
    assert "\n" not in str(info.value) and "epochs 20 vs 3" in str(info.value)
    from memunlearn.models import build_model

    with pytest.raises(ConfigError, match="cnn width 8"):
        rmia_scores(build_model("cnn", 1, 10, width=8, image_size=8), pool, data, train_indices=forget, a=0.5)


# ------------------------------------------------------------------ the pool keeps weights


def test_pool_stores_weights_and_privacy_reuses_them(leaky_case, monkeypatch):
    from memunlearn.privacy import drivers
    from memunlearn.training import predict_logits

    data, pool, _, _, _ = leaky_case
    assert pool.keeps_weights
    model = pool.member_model(3)
    logits = predict_logits(model, data.train, "cpu").numpy()
    np.testing.assert_allclose(logits, pool.train_logits[3].astype(np.float32), atol=1e-2, rtol=1e-3)

    def no_retraining(*args, **kwargs):
        raise AssertionError("a member with stored weights was retrained")

    monkeypatch.setattr(drivers, "reproduce_pool_member", no_retraining)
    again = drivers.pool_member(pool, data, 3, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))


def test_damaged_weights_are_refused_and_retrained(digits, tmp_path):
    from memunlearn.data.core import Dataset
    from memunlearn.memorization.pool import build_pool, pool_spec_for, weights_path
    from memunlearn.training import TrainConfig

    data = Dataset("digits", digits.train.subset(np.arange(200)), digits.test.subset(np.arange(40)), digits.classes)
    spec = pool_spec_for(data, "mlp", 16, TrainConfig(epochs=2, batch_size=32))
    pool = build_pool(data, spec, 2, pool_dir=tmp_path, device="cpu")
    assert not pool.keeps_weights and pool.member_model(0) is None
    from dataclasses import replace

    kept = build_pool(data, replace(spec, keep_weights=True), 2, pool_dir=tmp_path, device="cpu")
    assert kept.build["trained"] == 2 and kept.keeps_weights  # same key, members trained again with weights
    np.testing.assert_array_equal(kept.train_logits, pool.train_logits)  # ... to the same result
    path = weights_path(tmp_path, 1)
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.warns(DamagedArtefactWarning, match="damaged"):
        assert kept.member_model(1) is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedArtefactWarning)
        rebuilt = build_pool(data, replace(spec, keep_weights=True), 2, pool_dir=tmp_path, device="cpu")
    assert rebuilt.build["trained"] == 1 and rebuilt.member_model(1) is not None


# ------------------------------------------------------------------ proxies


def test_csl_and_learning_time_read_the_training_forward_passes(digits):
    from memunlearn.memorization import compute_proxy
    from memunlearn.models import build_model
    from memunlearn.training import TrainConfig, train

    examples = digits.train.subset(np.arange(200))
    model = build_model("mlp", 1, 10, width=32, image_size=8, seed=0)
    result = train(model, examples, TrainConfig(epochs=4, batch_size=32), "cpu")
    dynamics = result.dynamics
    # the recorded loss is the cross-entropy of the same forward pass: −log p_y of the recorded p_y
    np.testing.assert_allclose(dynamics.loss, -np.log(dynamics.true_prob.astype(np.float64)), rtol=1e-4, atol=1e-5)
    from memunlearn.data.core import Dataset

    data = Dataset("digits", examples, digits.test, digits.classes)
    csl = compute_proxy("csl", data, None, dynamics)
    np.testing.assert_allclose(csl.scores, dynamics.loss.sum(axis=0))
    learning = compute_proxy("learning-time", data, None, dynamics).scores
    assert set(np.unique(learning)) <= set(range(1, 6))
    still_wrong = ~dynamics.correct[-1]
    assert (learning[still_wrong] == 5).all() and (learning[~still_wrong] <= 4).all()
    dynamics.loss = None  # dynamics saved before losses were recorded
    with pytest.raises(ConfigError, match="older memunlearn"):
        compute_proxy("csl", data, None, dynamics)


def rum_find_z_and_regularizer(net, inputs, targets, h):
    """kairanzhao/RUM @ f593c9d, memorization_proxy/loss_curvature.py, find_z (lines 69-89) and
    regularizer (lines 92-117), transcribed (no device moves)."""
    criterion = nn.CrossEntropyLoss(reduction="none")
    inputs = inputs.clone().requires_grad_()
    loss_z = criterion(net.eval()(inputs), targets)
    loss_z.backward(torch.ones(targets.size()))
    grad = inputs.grad.data + 0.0
    z = torch.sign(grad).detach() + 0.0
    z = 1.0 * h * (z + 1e-7) / (z.reshape(z.size(0), -1).norm(dim=1)[:, None, None, None] + 1e-7)
    inputs.grad = None
    net.zero_grad()
    outputs_pos = net.eval()(inputs + z)
    outputs_orig = net.eval()(inputs)
    grad_diff = torch.autograd.grad(criterion(outputs_pos, targets) - criterion(outputs_orig, targets), inputs,
                                    grad_outputs=torch.ones(targets.size()), create_graph=False)[0]
    return grad_diff.reshape(grad_diff.size(0), -1).norm(dim=1)


def test_rum_curvature_matches_rums_code(digits):
    from memunlearn.memorization.proxies import RUM_CURVATURE_STEP, rum_loss_curvature_score
    from memunlearn.models import build_model

    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=0).double()
    x, y = digits.train.x[:16].double(), digits.train.y[:16]
    official = rum_find_z_and_regularizer(model, x, y, RUM_CURVATURE_STEP).numpy()
    ours = rum_loss_curvature_score(model, x, y)
    np.testing.assert_allclose(ours, official, rtol=1e-8, atol=1e-12)
    assert RUM_CURVATURE_STEP == 0.01 and (ours > 0).all()


def test_compare_reports_pearson_cosine_tertiles_and_split_half():
    from memunlearn.memorization.compare import compare_proxies
    from memunlearn.memorization.estimator import cosine, pearson, tertile_agreement, tertiles
    from memunlearn.memorization.proxies import ProxyResult

    exact = np.array([0.0, 0.0, 0.1, 0.3, 0.5, 0.9])
    proxy = np.array([0.2, 0.1, 0.3, 0.9, 0.4, 0.8])
    assert tertiles(exact).tolist() == [0, 0, 1, 1, 2, 2]
    assert tertiles(proxy).tolist() == [0, 0, 1, 2, 1, 2]
    tert = tertile_agreement(proxy, exact)
    assert tert["agreement"] == pytest.approx(4 / 6) and np.trace(tert["confusion"]) == 4
    assert pearson(proxy, exact) == pytest.approx(np.corrcoef(proxy, exact)[0, 1])
    assert cosine(proxy, exact) == pytest.approx(proxy @ exact / np.linalg.norm(proxy) / np.linalg.norm(exact))
    row = compare_proxies(exact, 0.8, {"p": ProxyResult("p", proxy, 1.0, "dynamics")}, 10.0)["proxies"]["p"]
    assert row["tertile_agreement"] == pytest.approx(4 / 6)
    assert row["rho_fraction_of_split_half"] == pytest.approx(row["rho"] / 0.8)
    assert {"pearson", "cosine", "tertile_confusion"} <= set(row)
