"""The NeurIPS 2023 unlearning-challenge score agrees with a transcription of the official code.

The transcription (below, each piece citing its lines) is of google-deepmind/unlearning_evaluation
@ ffae0ff: metric.py (φ, the per-example ε of both attack families, the points H and the forget
score F) and main.py (the utility-adjusted final score). It keeps the official torch code,
with two changes needed to run it at all: ``.cuda()`` is dropped (CPU), and ``assert thr_eps``
(metric.py:285, an assert on a numpy array, which raises ValueError for more than one element)
becomes ``assert thr_eps.size``. It additionally returns each example's ε and H, which the
official functions compute and sum without returning.

On synthetic φ samples covering every branch (overlapping, shifted, wider, peakier, a peaky
sample caught by the 1% range rule, a perfect separation, identical samples) the test asserts
the same ε per example, the same H, F and final score as :mod:`memunlearn.privacy.challenge`.
"""

import math

import numpy as np
import pytest
import torch

from memunlearn.privacy import official_logit_confidence
from memunlearn.privacy.challenge import challenge_final_score, challenge_forget_score

# metric.py:24-26
DELTA = 1e-05
EPSILON_CAP = 50
NUM_THRESHOLDS_PER_UNIT = 100


def compute_logit_scaled_confidence(logits, targets):
    """metric.py:29-61."""
    count = logits.shape[0]
    logits -= np.max(logits, axis=1, keepdims=True)
    probs = np.array(np.exp(logits), dtype=np.float64)
    probs /= np.sum(probs, axis=1, keepdims=True)
    prob_correct = probs[np.arange(count), targets[:count]]
    probs[np.arange(count), targets[:count]] = 0
    prob_wrong = np.sum(probs, axis=1)
    conf = np.log(prob_correct + 1e-45) - np.log(prob_wrong + 1e-45)
    return prob_correct, conf


def _get_double_threshold_rates(pos_confs_, neg_confs_):
    """metric.py:64-129."""
    pos_diff = pos_confs_.max() - pos_confs_.min()
    neg_diff = neg_confs_.max() - neg_confs_.min()
    smallest = neg_diff if pos_diff > neg_diff else pos_diff
    if pos_diff >= neg_diff:
        pos_confs_, neg_confs_ = neg_confs_, pos_confs_
    buffer = 2.0
    width = smallest
    min_ = (pos_confs_.min() + width - buffer).detach().cpu().numpy()
    max_ = (pos_confs_.max() + buffer).detach().cpu().numpy()
    num_right_thresholds = int(np.ceil((max_ - min_) * NUM_THRESHOLDS_PER_UNIT))
    right_thresholds_ = np.linspace(min_, max_, num=num_right_thresholds)
    width = width.detach().cpu().numpy()
    num_left_thresholds = int(np.ceil(2 * buffer * NUM_THRESHOLDS_PER_UNIT))
    thr_left_ = np.concatenate(
        [np.linspace(tr - width - buffer, tr - width + buffer, num=num_left_thresholds) for tr in right_thresholds_],
        axis=0,
    )
    thr_right_ = np.tile(np.reshape(right_thresholds_, (-1, 1)), (1, num_left_thresholds)).reshape((-1))
    thresholds_flat = [(l, r) for l, r in zip(thr_left_, thr_right_)]
    total_num_thresholds = len(thresholds_flat)
    num_models = pos_confs_.shape[0]
    thr_right_ = np.tile(np.expand_dims(thr_right_, 0), (num_models, 1))
    thr_left_ = np.tile(np.expand_dims(thr_left_, 0), (num_models, 1))
    pos_confs_ = torch.tile(pos_confs_[:, None], (1, total_num_thresholds))
    neg_confs_ = torch.tile(neg_confs_[:, None], (1, total_num_thresholds))
    thr_right_ = torch.from_numpy(thr_right_)
    thr_left_ = torch.from_numpy(thr_left_)

    def _is_pp(c):
        return torch.logical_and(torch.le(thr_left_, c), torch.le(c, thr_right_)).type(torch.float32)

    def _is_pn(c):
        return torch.logical_not(_is_pp(c)).type(torch.float32)

    tpr = torch.mean(_is_pp(pos_confs_), 0)
    fnr = torch.mean(_is_pn(pos_confs_), 0)
    fpr = torch.mean(_is_pp(neg_confs_), 0)
    tnr = torch.mean(_is_pn(neg_confs_), 0)
    return tpr, fnr, fpr, tnr, thresholds_flat


def _get_single_threshold_rates(pos_confs_, neg_confs_):
    """metric.py:132-162."""
    all_confs = torch.cat([pos_confs_, neg_confs_])
    min_val = all_confs.min()
    max_val = all_confs.max()
    num_thresholds = int(torch.ceil((max_val - min_val) * NUM_THRESHOLDS_PER_UNIT))
    thresholds_ = torch.linspace(min_val, max_val, num_thresholds)
    thresholds_flat = list(thresholds_.detach().cpu().numpy())
    num_models = pos_confs_.shape[0]
    thresholds_ = torch.tile(thresholds_[None, :], (num_models, 1))
    pos_confs_ = torch.tile(pos_confs_[:, None], (1, num_thresholds))
    neg_confs_ = torch.tile(neg_confs_[:, None], (1, num_thresholds))
    tpr = torch.mean((pos_confs_ >= thresholds_).type(torch.float32), 0)
    fpr = torch.mean((neg_confs_ >= thresholds_).type(torch.float32), 0)
    tnr = torch.mean((neg_confs_ < thresholds_).type(torch.float32), 0)
    fnr = torch.mean((pos_confs_ < thresholds_).type(torch.float32), 0)
    return tpr, fnr, fpr, tnr, thresholds_flat


def _get_epsilons(pos_confs, neg_confs, delta):
    """metric.py:165-301 (the debugging lists it also collects are left out)."""
    epsilons = []
    num_examples = pos_confs.shape[1]
    for i in range(num_examples):
        pos_confs_ = pos_confs[:, i].reshape(-1)
        neg_confs_ = neg_confs[:, i].reshape(-1)
        pos_diff = np.max(pos_confs_) - np.min(pos_confs_)
        neg_diff = np.max(neg_confs_) - np.min(neg_confs_)
        largest = pos_diff if pos_diff > neg_diff else neg_diff
        smallest = neg_diff if pos_diff > neg_diff else pos_diff
        if smallest / largest < 0.01:  # :188-200
            epsilons.append(EPSILON_CAP)
            continue
        pos_confs_ = torch.from_numpy(pos_confs_)
        neg_confs_ = torch.from_numpy(neg_confs_)
        tpr_d, fnr_d, fpr_d, tnr_d, tf_d = _get_double_threshold_rates(pos_confs_, neg_confs_)  # :206-208
        tpr_s, fnr_s, fpr_s, tnr_s, tf_s = _get_single_threshold_rates(pos_confs_, neg_confs_)  # :209-211
        tpr = torch.cat([tpr_d, tpr_s], 0)
        fnr = torch.cat([fnr_d, fnr_s], 0)
        fpr = torch.cat([fpr_d, fpr_s], 0)
        tnr = torch.cat([tnr_d, tnr_s], 0)
        total_num_thresholds = tpr.shape[0]
        thr_eps = torch.zeros(total_num_thresholds)
        fpr_fnr_both_zero = torch.eq(fpr + fnr, torch.zeros(total_num_thresholds))  # :225-235
        tpr_tnr_both_ones = torch.eq(tpr + tnr, 2 * torch.ones(total_num_thresholds))
        thr_eps = torch.where(fpr_fnr_both_zero * tpr_tnr_both_ones, torch.full(thr_eps.shape, np.inf), thr_eps)
        thr_eps_is_zero = torch.eq(thr_eps, torch.zeros_like(thr_eps))  # :242-248
        fpr_or_fnr_is_zero = torch.eq(fpr * fnr, torch.zeros_like(thr_eps))
        thr_eps = torch.where(thr_eps_is_zero * fpr_or_fnr_is_zero, torch.full(thr_eps.shape, np.nan), thr_eps)
        with np.errstate(divide="ignore", invalid="ignore"):  # :251-269 (log 0 and log of negatives, as there)
            thr_eps = torch.where(
                torch.eq(thr_eps, torch.zeros_like(thr_eps)),
                torch.from_numpy(np.clip(np.nanmax([
                    np.log(1 - delta - fpr.detach().cpu().numpy()) - np.log(fnr.detach().cpu().numpy()),
                    np.log(1 - delta - fnr.detach().cpu().numpy()) - np.log(fpr.detach().cpu().numpy()),
                ], axis=0), 0, None)),
                thr_eps,
            )
        keep_inds = [ind for ind, te in enumerate(thr_eps.detach().cpu().numpy()) if not np.isnan(te)]  # :272-276
        thr_eps = thr_eps.detach().cpu().numpy()[keep_inds]
        assert thr_eps.size, "Something went wrong, all thresholds gave nan epsilon..."  # :285, see the docstring
        thr_eps = np.array(thr_eps)
        epsilons.append(np.nanmax(thr_eps))
    epsilons = np.clip(epsilons, 0, EPSILON_CAP)
    return epsilons


def compute_forget_score_from_confs(unlearned_confs, retrained_confs):
    """metric.py:304-349; also returns ε and each example's points (the official loop adds them up)."""
    _, forget_set_size = retrained_confs.shape
    retrain_means = np.median(retrained_confs, axis=0)
    unlearned_means = np.median(unlearned_confs, axis=0)
    retrain_is_positive = retrain_means > unlearned_means
    pos_confs = np.where(retrain_is_positive, retrained_confs, unlearned_confs)
    neg_confs = np.where(retrain_is_positive, unlearned_confs, retrained_confs)
    eps = _get_epsilons(pos_confs, neg_confs, delta=DELTA)
    num_models = unlearned_confs.shape[0]
    max_epsilon = np.ceil(np.log(num_models - 1))
    start_idx = 0
    bucket_size = 0.5
    end_idx = start_idx + bucket_size
    points = 1
    bucket_points = {}
    while end_idx <= max_epsilon:
        bucket_points[start_idx] = points
        points /= 2
        start_idx += bucket_size
        end_idx = start_idx + bucket_size
    forget_score = 0
    per_example = []
    for e in eps:
        earned = 0
        for start_idx, points in bucket_points.items():
            if e < start_idx + bucket_size:
                earned = points
                break
        forget_score += earned
        per_example.append(earned)
    forget_score /= forget_set_size
    return forget_score, eps, np.array(per_example)


def official_final_score(forget_score, u_r, u_t, r_r, r_t):
    """main.py:292-297 (means over models) and :337."""
    u_r_mean, u_t_mean = np.mean(u_r), np.mean(u_t)
    r_r_mean, r_t_mean = np.mean(r_r), np.mean(r_t)
    return forget_score * (u_r_mean / r_r_mean) * (u_t_mean / r_t_mean)


def synthetic_phi(models=16, seed=0):
    """φ of `models` unlearned and retrained models on 10 forget examples, one per branch of the code."""
    rng = np.random.default_rng(seed)
    retrained = rng.normal(2.0, 0.5, size=(models, 10))  # narrow samples keep the official grids small
    unlearned = rng.normal(2.0, 0.5, size=(models, 10))
    unlearned[:, 1] += 0.3  # shifted
    unlearned[:, 2] = 2.0 + 2.0 * (unlearned[:, 2] - 2.0)  # wider
    unlearned[:, 3] = 2.5 + 0.3 * (unlearned[:, 3] - 2.0)  # peakier: the interval family's case
    unlearned[:, 4] += 1.0  # far apart, still overlapping
    unlearned[:, 5] = 2.0 + 0.005 * rng.normal(size=models)  # peaky: range ratio < 1% → ε = 50
    unlearned[:, 6] = retrained[:, 6] + 20.0  # perfect separation: ε = ∞ → 50
    unlearned[:, 7] = retrained[:, 7]  # identical samples: ε = 0
    unlearned[:, 8] -= 0.6
    unlearned[:, 9] = 2.0 + 0.6 * (unlearned[:, 9] - 2.0) - 0.3
    return unlearned, retrained


@pytest.mark.parametrize("models", [8, 16])  # ε ≥ ⌈ln 7⌉ = 2 and ≥ ⌈ln 15⌉ = 3 score 0: 4 and 6 bins
def test_challenge_score_matches_a_transcription_of_the_official_code(models):
    unlearned, retrained = synthetic_phi(models)
    official_f, official_eps, official_points = compute_forget_score_from_confs(unlearned, retrained)
    ours = challenge_forget_score(unlearned, retrained)
    np.testing.assert_array_equal(ours.epsilons, official_eps.astype(np.float64))
    np.testing.assert_array_equal(ours.points, official_points)
    assert ours.score == official_f
    # the samples reach every kind of outcome: capped, zero, and several bins between
    assert official_eps[5] == official_eps[6] == 50 and official_eps[7] == 0
    assert len(set(official_points.tolist())) >= 4
    u_r, u_t = np.linspace(0.8, 0.9, models), np.linspace(0.7, 0.75, models)
    r_r, r_t = np.linspace(0.95, 1.0, models), np.linspace(0.76, 0.8, models)
    assert challenge_final_score(ours.score, u_r, r_r, u_t, r_t) == pytest.approx(
        official_final_score(official_f, u_r, u_t, r_r, r_t), rel=1e-12)


def test_challenge_score_can_fail():
    """The comparison is sharp: moving one example's unlearned sample changes its ε, H and F in both."""
    unlearned, retrained = (phi[:, 7:8] for phi in synthetic_phi(16))  # the identical samples
    moved = unlearned + 0.5
    official_f, official_eps, _ = compute_forget_score_from_confs(unlearned, retrained)
    moved_f, moved_eps, _ = compute_forget_score_from_confs(moved, retrained)
    assert moved_eps[0] > official_eps[0] and moved_f < official_f
    assert challenge_forget_score(moved, retrained).score == moved_f != official_f


def test_phi_matches_the_official_logit_scaled_confidence():
    rng = np.random.default_rng(1)
    logits = (rng.normal(size=(50, 10)) * 8).astype(np.float32)
    logits[0, 3] = 300.0  # saturation: the official φ stops near 103.6
    labels = rng.integers(0, 10, size=50)
    labels[0] = 3
    _, official = compute_logit_scaled_confidence(logits.copy(), labels)
    ours = official_logit_confidence(logits, labels)
    np.testing.assert_array_equal(ours, official)
    assert math.isclose(float(official[0]), 103.6, abs_tol=0.1)
