"""Every unlearning method: masks as hard constraints, direction of the effect, cost records (SPEC §3)."""

import copy
import math

import pytest
import torch

from memunlearn import build_model, train, unlearn
from memunlearn.forget import make_forget_set
from memunlearn.localization import Mask, localize
from memunlearn.methods import available_methods, method_defaults, method_recipes
from memunlearn.methods.l1_sparse import l1_penalty
from memunlearn.methods.retrain import fresh_initialisation
from memunlearn.methods.scrub import distill_kl
from memunlearn.methods.ssd import dampening_factor
from memunlearn.models import classifier_parameter_names
from memunlearn.training import TrainConfig, accuracy

# The contract tests loop over the registry, so a newly registered method cannot escape them.
ALL_METHODS = tuple(available_methods())
PAPERS_METHODS = ("retrain", "finetune", "neggrad", "neggrad+", "random-label", "l1-sparse", "salun", "scrub", "ssd", "del")

@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: a second thread only adds synchronisation, and other jobs share the cores."""
    torch.set_num_threads(1)



@pytest.fixture(scope="module")
def mislabelled(digits):
    """A model that memorised 10% flipped labels: forgetting them must lower its forget accuracy.

    (On clean digits the original and the oracle both classify the forget set almost perfectly,
    so no direction could be checked.)
    """
    torch.set_num_threads(1)  # set up before the per-test fixture runs
    forget_set = make_forget_set("mislabeled:0.1", digits, seed=0)
    data = digits.with_train_labels(forget_set.train_labels, "mislabeled-test")
    forget = data.train.subset(forget_set.indices)
    retain = data.train.subset(forget_set.retain_indices(len(data.train)))
    model = build_model("cnn", 1, 10, width=8, image_size=8, seed=0)
    model = train(model, data.train, TrainConfig(epochs=15, lr=0.05, batch_size=64, seed=0), "cpu",
                  record_dynamics=False).model
    return model, forget, retain


def hparams_for(method, **wanted):
    """The subset of ``wanted`` that ``method`` takes (SSD has no epochs, momentum or weight decay)."""
    return {k: v for k, v in wanted.items() if k in method_defaults(method)}


def test_every_method_is_registered():
    assert set(PAPERS_METHODS) <= set(ALL_METHODS)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_mask_is_a_hard_constraint(mislabelled, method):
    """Entries where the mask is 0 stay bitwise identical, with momentum and weight decay on."""
    model, forget, retain = mislabelled
    generator = torch.Generator().manual_seed(1)
    mask = {n: torch.rand(p.shape, generator=generator) < 0.3 for n, p in model.named_parameters()}
    extra = {"del": dict(train_classifier=False), "ssd": dict(selection=1.0)}.get(method, {})  # SSD: a low
    # threshold, so that it dampens something; DEL: the classifier is otherwise trainable in full.
    result = unlearn(method, model, forget, retain, mask=Mask(mask), device="cpu",
                     **hparams_for(method, epochs=1, momentum=0.9, weight_decay=0.1), **extra)
    original = dict(model.named_parameters())
    moved = 0
    for name, param in result.model.named_parameters():
        frozen = ~mask[name]
        assert torch.equal(param[frozen], original[name][frozen]), f"{method} moved frozen entries of {name}"
        moved += int((param[mask[name]] != original[name][mask[name]]).sum())
    assert moved > 0, f"{method} changed nothing inside the mask"
    assert result.cost.params_changed == moved


def test_del_trains_the_whole_classifier_but_nothing_else_outside_the_mask(mislabelled):
    model, forget, retain = mislabelled
    mask = localize(model, forget, "del", 0.2, device="cpu")
    result = unlearn("del", model, forget, retain, mask=mask, epochs=1, device="cpu", weight_decay=0.1)
    original = dict(model.named_parameters())
    classifier = set(classifier_parameter_names(model))
    for name, param in result.model.named_parameters():
        if name in classifier:
            continue
        assert torch.equal(param[~mask[name]], original[name][~mask[name]]), name
    assert any(not torch.equal(result.model.state_dict()[n], original[n]) for n in classifier)


def test_del_resets_masked_entries_to_the_seeded_init(mislabelled):
    """With no training (0 epochs) DEL is exactly θ' = (1−m)⊙θ_o + m⊙θ_init."""
    model, forget, retain = mislabelled
    mask = localize(model, forget, "del", 0.3, device="cpu")
    result = unlearn("del", model, forget, retain, mask=mask, epochs=0, seed=5, device="cpu")
    fresh = dict(fresh_initialisation(model, seed=5).named_parameters())
    for name, param in result.model.named_parameters():
        expected = torch.where(mask[name], fresh[name], dict(model.named_parameters())[name])
        assert torch.equal(param, expected), name
    assert result.cost.steps == 0


@pytest.mark.parametrize("method", ALL_METHODS)
def test_each_method_lowers_memorised_forget_accuracy(mislabelled, method):
    """The original fits the flipped labels; every method moves forget accuracy down, toward the oracle."""
    model, forget, retain = mislabelled
    before = accuracy(model, forget, "cpu")
    hparams = hparams_for(method, epochs=3 if method == "retrain" else 2)
    # Recipe "ours" where a method has one: two epochs were sized for its batches of 64 and lr 0.01-0.02
    # (the official batches of 256 give a quarter of the steps; neggrad's official lr 1e-4 barely moves).
    recipe = {"recipe": "ours"} if "ours" in method_recipes(method) else {}
    after = accuracy(unlearn(method, model, forget, retain, device="cpu", **recipe, **hparams).model, forget, "cpu")
    assert after < before - 0.1, f"{method}: forget accuracy {before:.3f} → {after:.3f}"


def test_cost_records(mislabelled):
    model, forget, retain = mislabelled
    batch = 64
    steps_per_retain_epoch = math.ceil(len(retain) / batch)
    finetune = unlearn("finetune", model, forget, retain, epochs=2, batch_size=batch, device="cpu").cost
    assert finetune.steps == 2 * steps_per_retain_epoch and finetune.examples == 2 * len(retain)
    neggrad = unlearn("neggrad", model, forget, retain, epochs=2, batch_size=batch, device="cpu").cost
    assert neggrad.steps == 2 * math.ceil(len(forget) / batch) and neggrad.examples == 2 * len(forget)
    scrub = unlearn("scrub", model, forget, retain, epochs=2, msteps=1, forget_batch_size=32, retain_batch_size=batch,
                    device="cpu").cost
    assert scrub.steps == math.ceil(len(forget) / 32) + 2 * steps_per_retain_epoch
    ssd = unlearn("ssd", model, forget, retain, device="cpu").cost
    assert ssd.steps == 0 and ssd.examples == len(retain) + 2 * len(forget) and ssd.wall_time > 0
    # DEL and SalUn without a mask compute one (a pass over D_f, counted) and change only about its budget.
    total = sum(p.numel() for p in model.parameters())
    classifier = sum(p.numel() for n, p in model.named_parameters() if n in classifier_parameter_names(model))
    del_cost = unlearn("del", model, forget, retain, epochs=1, budget=0.2, device="cpu").cost
    assert del_cost.examples == len(forget) + len(retain) // 128 * 128  # batches of 128, the partial one dropped
    assert 0 < del_cost.params_changed <= math.floor(0.2 * total) + classifier
    assert del_cost.params_changed_fraction == pytest.approx(del_cost.params_changed / total)
    salun = unlearn("salun", model, forget, retain, epochs=1, budget=0.25, device="cpu").cost
    assert salun.examples == len(forget) + len(retain) + len(forget)  # mask pass + D_r ∪ relabelled D_f
    assert 0 < salun.params_changed <= math.floor(0.25 * total)
    retrain = unlearn("retrain", model, forget, retain, epochs=1, device="cpu").cost
    assert retrain.params_changed_fraction > 0.99


def test_fresh_initialisation_is_seeded_and_fresh():
    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # "trained"
    a, b, c = (fresh_initialisation(model, s) for s in (3, 3, 4))
    for (name, p), pa, pb, pc in zip(model.named_parameters(), a.parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, p), name
        if p.dim() >= 2:
            assert not torch.equal(pa, pc), name
    vit = build_model("vit", 1, 10, width=16, image_size=8, seed=0)
    with torch.no_grad():
        vit.cls_token.fill_(5.0)
    fresh_vit = fresh_initialisation(vit, 0)
    assert fresh_vit.cls_token.abs().max() < 1.0  # parameters no module resets are redrawn too
    assert model.classifier.weight.min() > 0  # the original is untouched (all entries were shifted up by 1)


def test_retrain_is_deterministic_per_seed(mislabelled):
    model, forget, retain = mislabelled
    a = unlearn("retrain", model, forget, retain, epochs=1, seed=2, device="cpu").model
    b = unlearn("retrain", model, forget, retain, epochs=1, seed=2, device="cpu").model
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_original_model_is_never_modified(mislabelled):
    model, forget, retain = mislabelled
    before = copy.deepcopy(model.state_dict())
    for method in ("del", "ssd", "scrub"):
        unlearn(method, model, forget, retain, device="cpu", **hparams_for(method, epochs=1))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_l1_penalty_by_hand():
    params = [torch.tensor([1.0, -3.0]), torch.tensor([[0.5]])]
    # ‖θ‖₁ = 4.5; γ_t = 0.2·(1 − 1/4) = 0.15 → 0.675; at the last step γ → 0.
    assert float(l1_penalty(params, 0.2, 1, 4)) == pytest.approx(0.675)
    assert float(l1_penalty(params, 0.2, 4, 4)) == 0.0


def test_distill_kl_by_hand():
    student = torch.tensor([[0.0, 0.0]])
    teacher = torch.tensor([[math.log(3.0), 0.0]])  # T = 1: teacher probs (¾, ¼), student (½, ½)
    expected = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    assert float(distill_kl(student, teacher, 1.0)) == pytest.approx(expected, rel=1e-5)
    # T = 2 scales logits by ½ and the loss by T² = 4.
    teacher2 = torch.tensor([[2 * math.log(3.0), 0.0]])
    assert float(distill_kl(student, teacher2, 2.0)) == pytest.approx(4 * expected, rel=1e-5)


def test_ssd_dampening_by_hand():
    importance_all = torch.tensor([1.0, 1.0, 2.0, 0.0])
    importance_forget = torch.tensor([20.0, 5.0, 40.0, 0.0])
    # α = 10: entries 0 (20 > 10) and 2 (40 > 20) are selected; β = min(λ·I_D/I_f, 1) = 0.05 and 0.05·λ.
    assert dampening_factor(importance_all, importance_forget, 1.0, 10.0).tolist() == pytest.approx([0.05, 1, 0.05, 1])
    assert dampening_factor(importance_all, importance_forget, 4.0, 10.0).tolist() == pytest.approx([0.2, 1, 0.2, 1])
    assert dampening_factor(importance_all, importance_forget, 30.0, 10.0).tolist() == pytest.approx([1, 1, 1, 1])
