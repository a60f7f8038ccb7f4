"""Issue 14's methods: the NeurIPS 2023 challenge entries (uniform-contrastive, small-grad-reinit,
conv-transpose, noise-injection) and stop-when-done. Masks as hard constraints, direction of the
effect, exact cost records, and each method's defining step checked on a constructed case."""

import copy
import math

import pytest
import torch
from torch import nn

from memunlearn import Examples, build_model, load_dataset, train, unlearn
from memunlearn.data import subsample
from memunlearn.errors import ConfigError
from memunlearn.forget import make_forget_set
from memunlearn.localization import Mask
from memunlearn.methods import METHODS, available_methods, get_method, method_params, register_method
from memunlearn.methods.base import UnlearningRun
from memunlearn.methods.conv_transpose import transpose_kernels
from memunlearn.methods.noise_injection import balanced_class_weights, noise_injection
from memunlearn.methods.retrain import fresh_initialisation
from memunlearn.methods.small_grad_reinit import lowest_gradient_entries, selection_gradients, triangular_lr
from memunlearn.methods.stop_when_done import (
    _finetune_with_hook, held_out_estimate, register_stop_when_done, stop_when_done, target_kind,
)
from memunlearn.methods.uniform_contrastive import contrastive_forget_loss, uniform_kl
from memunlearn.params import Int
from memunlearn.training import TrainConfig, accuracy
from memunlearn.tuning import grid_values, search_space

NEW_METHODS = ("uniform-contrastive", "small-grad-reinit", "conv-transpose", "noise-injection")
# Settings under which each method visibly unlearns the tiny setup in a couple of epochs: the forget set
# is one batch at the default batch size, so uniform-contrastive gets smaller batches (more forget steps);
# the official rates (0.001-0.004, for CIFAR-10's 45k examples) barely move 360 examples in 2 epochs.
QUICK = {"uniform-contrastive": dict(epochs=3, batch_size=16, retain_lr=0.02),
         "small-grad-reinit": dict(epochs=2, lr=0.02), "conv-transpose": dict(epochs=2, lr=0.02)}


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup():
    """400 digits, 10% of their labels flipped and memorised by a small CNN; 200 held-out digits;
    the oracle (a retrain on the retain set) for the direction of each effect."""
    torch.set_num_threads(1)
    digits = subsample(load_dataset("digits"), n_train=400, n_test=200, seed=0)
    forget_set = make_forget_set("mislabeled:0.1", digits, seed=0)
    data = digits.with_train_labels(forget_set.train_labels, "mislabeled-test")
    forget = data.train.subset(forget_set.indices)
    retain = data.train.subset(forget_set.retain_indices(len(data.train)))
    model = build_model("cnn", 1, 10, width=8, image_size=8, seed=0)
    model = train(model, data.train, TrainConfig(epochs=30, lr=0.05, batch_size=32, seed=0), "cpu",
                  record_dynamics=False).model
    oracle = unlearn("retrain", model, forget, retain, epochs=30, device="cpu").model
    return model, forget, retain, data.test, oracle


def conv_weights(model):
    return [f"{name}.weight" for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def test_registered_with_search_spaces_inside_their_ranges():
    assert set(NEW_METHODS) <= set(available_methods())
    assert "stop-when-done" not in available_methods()  # opt-in: it needs a validation set
    for method in NEW_METHODS:
        space = search_space(method)
        assert space, method
        for name, param in space.items():
            for value in grid_values(param):
                assert param.check(method, name, value) == value


@pytest.mark.parametrize("method", NEW_METHODS)
def test_each_method_moves_forget_accuracy_toward_the_oracle(setup, method):
    model, forget, retain, test, oracle = setup
    target = accuracy(oracle, forget, "cpu")
    before = accuracy(model, forget, "cpu")
    result = unlearn(method, model, forget, retain, device="cpu", **QUICK.get(method, dict(epochs=2)))
    after = accuracy(result.model, forget, "cpu")
    assert before == 1.0 and target < 0.2
    assert abs(after - target) < abs(before - target) - 0.3, f"{method}: {before:.2f} → {after:.2f} ({target:.2f})"
    assert accuracy(result.model, test, "cpu") > 0.6


@pytest.mark.parametrize("method", NEW_METHODS)
def test_mask_is_a_hard_constraint(setup, method):
    """Entries where the mask is 0 stay bitwise identical, with momentum and weight decay on and
    through each method's own weight edits (re-initialisation, transposition, noise)."""
    model, forget, retain, _, _ = setup
    generator = torch.Generator().manual_seed(1)
    mask = {n: torch.rand(p.shape, generator=generator) < 0.3 for n, p in model.named_parameters()}
    result = unlearn(method, model, forget, retain, mask=Mask(mask), device="cpu", epochs=1, momentum=0.9,
                     weight_decay=0.1)
    original = dict(model.named_parameters())
    moved = 0
    for name, param in result.model.named_parameters():
        assert torch.equal(param[~mask[name]], original[name][~mask[name]]), f"{method} moved frozen entries of {name}"
        moved += int((param[mask[name]] != original[name][mask[name]]).sum())
    assert moved > 0
    assert result.cost.params_changed == moved


def test_cost_records(setup):
    model, forget, retain, _, _ = setup
    f, r, batch, epochs = len(forget), len(retain), 16, 2
    per_retain = math.ceil(r / batch)
    forget_batches = math.ceil(f / batch)
    uc = unlearn("uniform-contrastive", model, forget, retain, epochs=epochs, batch_size=batch, device="cpu").cost
    # uniform pass over D_f, then per epoch: forget batches paired with as many retain batches, a retain pass
    assert uc.steps == forget_batches + epochs * (min(forget_batches, per_retain) + per_retain)
    assert uc.examples == f + epochs * (f + min(r, forget_batches * batch) + r)
    sgr = unlearn("small-grad-reinit", model, forget, retain, epochs=epochs, batch_size=batch, device="cpu").cost
    assert sgr.steps == epochs * per_retain and sgr.examples == 2 * f + epochs * r  # gradient pass: D_f + |D_f| retain
    for method in ("conv-transpose", "noise-injection"):
        cost = unlearn(method, model, forget, retain, epochs=epochs, batch_size=batch, device="cpu").cost
        assert cost.steps == epochs * per_retain and cost.examples == epochs * r, method
        assert cost.wall_time > 0


def test_uniform_and_contrastive_losses_by_hand():
    # p = (3/4, 1/4): KL(u‖p) = ½·log(½/¾) + ½·log(½/¼) = ½·log(4/3)
    assert float(uniform_kl(torch.tensor([[math.log(3.0), 0.0]]))) == pytest.approx(0.5 * math.log(4 / 3), rel=1e-5)
    # similarities (1, 0): −mean(log softmax) = −½[(1 − log(1+e)) + (0 − log(1+e))] = log(1+e) − ½
    loss = contrastive_forget_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 1.0)
    assert float(loss) == pytest.approx(math.log(1 + math.e) - 0.5, rel=1e-5)
    # the temperature divides the similarities
    hot = contrastive_forget_loss(torch.tensor([[2.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), 2.0)
    assert float(hot) == pytest.approx(float(loss), rel=1e-6)


def test_uniform_stage_pushes_forget_outputs_toward_uniform(setup):
    """Against a control whose uniform stage does nothing (the rest of one epoch, at a negligible
    rate, moves only BatchNorm statistics in both)."""
    model, forget, retain, _, _ = setup

    def kl_after(uniform_lr):
        result = unlearn("uniform-contrastive", model, forget, retain, epochs=1, batch_size=16,
                         uniform_lr=uniform_lr, retain_lr=1e-9, forget_lr=1e-9, device="cpu")
        with torch.no_grad():
            return float(uniform_kl(result.model(forget.x)))

    assert kl_after(0.05) < 0.8 * kl_after(1e-9)


def test_lowest_gradient_entries_on_a_constructed_gradient():
    generator = torch.Generator().manual_seed(0)
    magnitudes = torch.randperm(40, generator=generator).float() + 1  # distinct |g| = 1..40
    signs = torch.where(torch.rand(40, generator=generator) < 0.5, -1.0, 1.0)
    gradient = (magnitudes * signs).view(5, 8)
    chosen = lowest_gradient_entries(gradient, 0.3)
    assert torch.equal(chosen, gradient.abs() <= 12)  # 30% of 40 = the 12 smallest magnitudes
    allowed = torch.arange(40).view(5, 8) % 2 == 0  # 20 allowed: 30% = 6, the 6 smallest among them
    chosen = lowest_gradient_entries(gradient, 0.3, allowed)
    expected = torch.zeros(40, dtype=torch.bool)
    allowed_index = torch.nonzero(allowed.flatten()).flatten()
    expected[allowed_index[gradient.flatten()[allowed_index].abs().argsort()[:6]]] = True
    assert torch.equal(chosen, expected.view(5, 8))
    assert lowest_gradient_entries(torch.ones(10), 0.25).sum() == 2  # round(2.5) = 2, as the source's round()


def test_small_grad_reinit_resets_exactly_the_lowest_gradient_30_percent_per_conv_layer(setup):
    model, forget, retain, _, _ = setup
    result = unlearn("small-grad-reinit", model, forget, retain, epochs=0, seed=3, device="cpu")
    gradients = selection_gradients(copy.deepcopy(model), forget, retain, 64, torch.Generator().manual_seed(3),
                                    torch.device("cpu"))
    fresh = dict(fresh_initialisation(model, 3).named_parameters())
    original = dict(model.named_parameters())
    convs = set(conv_weights(model))
    for name, param in result.model.named_parameters():
        if name not in convs:
            assert torch.equal(param, original[name]), name
            continue
        chosen = lowest_gradient_entries(gradients[name], 0.3)
        assert int(chosen.sum()) == round(0.3 * param.numel())
        assert torch.equal(param, torch.where(chosen, fresh[name], original[name])), name
    assert result.cost.steps == 0 and result.cost.examples == 2 * len(forget)


def test_small_grad_reinit_damps_the_gradient_of_the_kept_entries(setup):
    """damping 0 (no momentum, no weight decay): the kept conv entries cannot move, the fresh ones do."""
    model, forget, retain, _, _ = setup
    kept = unlearn("small-grad-reinit", model, forget, retain, epochs=0, device="cpu").model
    trained = unlearn("small-grad-reinit", model, forget, retain, epochs=1, damping=0.0, momentum=0.0,
                      weight_decay=0.0, device="cpu").model
    original, reset = dict(model.named_parameters()), dict(kept.named_parameters())
    for name, param in trained.named_parameters():
        if name in conv_weights(model):
            fresh_entries = reset[name] != original[name]
            assert torch.equal(param[~fresh_entries], original[name][~fresh_entries]), name
            assert bool((param[fresh_entries] != reset[name][fresh_entries]).any()), name
    assert not torch.equal(trained.classifier.weight, model.classifier.weight)  # other layers train normally


def test_triangular_schedule():
    assert [triangular_lr(1.0, e, 1) for e in range(1)] == [1.0]
    assert [triangular_lr(1.0, e, 2) for e in range(2)] == [1.0, 0.5]
    assert [round(triangular_lr(0.3, e, 4), 4) for e in range(4)] == [0.15, 0.3, 0.2, 0.1]


def test_conv_transpose_swaps_kernel_axes_only_where_allowed(setup):
    model, forget, retain, _, _ = setup
    original = dict(model.named_parameters())
    result = unlearn("conv-transpose", model, forget, retain, epochs=0, device="cpu")
    for name, param in result.model.named_parameters():
        expected = original[name].transpose(-1, -2) if name in conv_weights(model) else original[name]
        assert torch.equal(param, expected), name
    assert result.cost.steps == 0
    allowed = {n: torch.rand(p.shape, generator=torch.Generator().manual_seed(2)) < 0.5 for n, p in original.items()}
    edited = copy.deepcopy(model)
    transpose_kernels(edited, allowed)
    for name, param in edited.named_parameters():
        if name in conv_weights(model):
            assert torch.equal(param, torch.where(allowed[name], original[name].transpose(-1, -2), original[name]))


def test_noise_injection_noises_the_stem_then_again_before_the_last_epoch(setup):
    model, forget, retain, _, _ = setup
    original = dict(model.named_parameters())
    stem = conv_weights(model)[0]
    result = unlearn("noise-injection", model, forget, retain, epochs=0, seed=4, device="cpu")
    for name, param in result.model.named_parameters():
        if name == stem:
            assert 0.4 < float((param - original[name]).detach().std()) < 0.8  # std 0.6 on 72 entries
        else:
            assert torch.equal(param, original[name]), name
    every = unlearn("noise-injection", model, forget, retain, epochs=0, layers="all", device="cpu").model
    weights = {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    for name, param in every.named_parameters():
        assert torch.equal(param, original[name]) == (name not in weights), name
    # with a zero learning rate the stem is exactly θ + N(0, 0.6²) + N(0, 0.05²), the second draw after epoch 1 of 3
    still = noise_injection(model, forget, retain, epochs=3, lr=0.0, momentum=0.0, weight_decay=0.0,
                            final_noise_std=0.05, seed=4, device="cpu").model
    generator = torch.Generator().manual_seed(4)
    expected = original[stem].detach().clone()
    expected += torch.randn(expected.shape, generator=generator) * 0.6
    expected += torch.randn(expected.shape, generator=generator) * 0.05
    assert torch.equal(dict(still.named_parameters())[stem], expected)


def test_docstring_examples():
    import doctest

    from memunlearn.methods import (
        conv_transpose, noise_injection, small_grad_reinit, stop_when_done, uniform_contrastive,
    )

    for module in (uniform_contrastive, small_grad_reinit, conv_transpose, noise_injection, stop_when_done):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0, module.__name__


def test_balanced_class_weights():
    weights = balanced_class_weights(torch.tensor([0, 0, 0, 1, 2, 2]), 4)
    assert weights.tolist() == pytest.approx([6 / 9, 2.0, 1.0, 0.0])


# ---------------------------------------------------------------- stop-when-done


class Threshold(nn.Module):
    """Class 0 when the input's first value exceeds the parameter t, else class 1."""

    def __init__(self):
        super().__init__()
        self.t = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        v = x.flatten(1)[:, 0]
        return torch.stack([v - self.t, self.t - v], dim=1)


def scripted(model, forget, retain, mask=None, on_epoch_end=None, *, epochs: int = 5, seed: int = 0,
             device: str = "auto"):
    """A stand-in epoch method: each epoch raises t by 0.1 and counts one step over the retain set."""
    run = UnlearningRun("_scripted", model, mask, device="cpu", seed=seed)
    for epoch in range(epochs):
        with torch.no_grad():
            run.model.t += 0.1
        run.steps += 1
        run.examples += len(retain)
        if on_epoch_end is not None and on_epoch_end(epoch + 1, run.model):
            break
    return run.finish(dict(epochs=epochs))


@pytest.fixture
def constructed():
    """Forget inputs (i + ½)/20, i < 20, all labelled 0: after k epochs (t = 0.1k) forget accuracy is
    1 − 0.1k. The validation set is 70% correct whatever t is. So the criterion (forget accuracy ≤
    0.7 + 0.01) first holds after epoch 3."""
    register_method("_scripted", scripted, params={"epochs": Int(low=1)})
    forget = Examples(((torch.arange(20) + 0.5) / 20).view(20, 1, 1, 1), torch.zeros(20, dtype=torch.long))
    validation = Examples(torch.tensor([2.0] * 7 + [-1.0] * 3).view(10, 1, 1, 1), torch.zeros(10, dtype=torch.long))
    retain = Examples(torch.zeros(8, 1, 1, 1), torch.zeros(8, dtype=torch.long))
    yield Threshold(), forget, retain, validation
    METHODS.unregister("_scripted")


@pytest.mark.parametrize("mode", ["truncate", "restart"])
def test_stop_when_done_stops_at_the_first_passing_epoch_and_pays_for_every_epoch(constructed, mode):
    model, forget, retain, validation = constructed
    result = stop_when_done("_scripted", model, forget, retain, validation, tolerance=0.01, max_epochs=8,
                            mode=mode, target="iid")
    record = result.hparams
    assert [c["epoch"] for c in record["checks"]] == [1, 2, 3]
    assert [round(c["forget_accuracy"], 6) for c in record["checks"]] == [0.9, 0.8, 0.7]
    assert [c["passed"] for c in record["checks"]] == [False, False, True]
    assert record["stopped_at_epoch"] == 3 and record["reached"] and record["mode"] == mode
    assert float(result.model.t.detach()) == pytest.approx(0.3)
    epochs_run = 3 if mode == "truncate" else 1 + 2 + 3  # restart: runs of 1, 2 and 3 epochs
    checks = 3 * (len(forget) + len(validation))
    assert record["epochs_run"] == epochs_run and record["check_examples"] == checks
    assert result.cost.steps == epochs_run
    assert result.cost.examples == epochs_run * len(retain) + checks
    assert float(model.t.detach()) == 0.0  # the original is untouched


def test_stop_when_done_check_every_and_running_out(constructed):
    model, forget, retain, validation = constructed
    every_two = stop_when_done("_scripted", model, forget, retain, validation, max_epochs=8, check_every=2,
                               mode="truncate", target="iid")
    assert [c["epoch"] for c in every_two.hparams["checks"]] == [2, 4] and every_two.cost.steps == 4
    short = stop_when_done("_scripted", model, forget, retain, validation, max_epochs=2, mode="truncate",
                           target="iid")
    assert not short.hparams["reached"] and short.hparams["stopped_at_epoch"] == 2 and short.cost.steps == 2
    assert short.hparams["checks"][-1]["gap"] == pytest.approx(0.1)


def test_stop_when_done_targets():
    assert target_kind(torch.tensor([3, 5] * 10), torch.arange(10).repeat(10)) == "classes"
    assert target_kind(torch.arange(10).repeat(2), torch.arange(10).repeat(10)) == "iid"
    correct = torch.tensor([True, True, False, False, True, False])
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    assert held_out_estimate(correct, labels, torch.tensor([1, 2, 2, 2]), "iid") == pytest.approx(0.5)
    # per class: acc_1 = 0, acc_2 = ½; forget mix ¼ class 1, ¾ class 2
    assert held_out_estimate(correct, labels, torch.tensor([1, 2, 2, 2]), "classes") == pytest.approx(0.375)
    with pytest.raises(ConfigError, match=r"no example of forget class\(es\) \[7\]"):
        held_out_estimate(correct, labels, torch.tensor([7]), "classes")


def test_stop_when_done_refuses_what_it_cannot_do(setup, constructed):
    model, forget, retain, test, _ = setup
    with pytest.raises(ConfigError, match="chooses the epochs itself"):
        stop_when_done("finetune", model, forget, retain, test, epochs=3)
    with pytest.raises(ConfigError, match="does not train for a number of epochs"):
        stop_when_done("ssd", model, forget, retain, test)
    with pytest.raises(ConfigError, match="no per-epoch hook"):
        stop_when_done("neggrad+", model, forget, retain, test, mode="truncate")
    with pytest.raises(ConfigError, match="non-empty validation"):
        stop_when_done("finetune", model, forget, retain, test.subset([]))


def test_finetune_with_hook_is_finetune_when_never_stopped(setup):
    model, forget, retain, _, _ = setup
    hooked = _finetune_with_hook(model, forget, retain, None, lambda epoch, m: False, epochs=2, device="cpu")
    plain = unlearn("finetune", model, forget, retain, epochs=2, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(hooked.model.state_dict().values(), plain.model.state_dict().values()))
    assert (hooked.cost.steps, hooked.cost.examples) == (plain.cost.steps, plain.cost.examples)


def test_stop_when_done_on_a_real_method_records_every_epoch(setup):
    model, forget, retain, validation, _ = setup
    result = stop_when_done("small-grad-reinit", model, forget, retain, validation, tolerance=0.05, max_epochs=4,
                            batch_size=64, device="cpu")
    record = result.hparams
    stopped = record["stopped_at_epoch"]
    assert record["mode"] == "truncate" and record["target"] == "iid" and len(record["checks"]) == stopped
    assert result.cost.steps == stopped * math.ceil(len(retain) / 64)
    assert result.cost.examples == 2 * len(forget) + stopped * len(retain) + stopped * (len(forget) + len(validation))
    if record["reached"]:
        assert accuracy(result.model, forget, "cpu") <= record["checks"][-1]["target_accuracy"] + 0.05


def test_registered_stop_when_done_needs_a_validation_set(setup):
    model, forget, retain, validation, _ = setup
    register_stop_when_done()
    try:
        register_stop_when_done()  # idempotent
        params = method_params("stop-when-done")
        assert "conv-transpose" in params["base_method"].choices and search_space("stop-when-done")
        method = get_method("stop-when-done")
        with pytest.raises(ConfigError, match="needs a validation set held out of the training data"):
            method(model, forget, retain)
        result = method(model, forget, retain, None, validation, base_method="conv-transpose", max_epochs=2,
                        device="cpu")
        assert result.method == "stop-when-done" and result.hparams["base_method"] == "conv-transpose"
    finally:
        METHODS.unregister("stop-when-done")
