"""Fidelity to the papers' definitions (issue 9): each test fails on the behaviour it replaced."""

import pytest
import torch

from memunlearn import build_model
from memunlearn.localization import localize

GRADIENT_STRATEGIES = ("del", "salun", "del-agnostic", "param-grad", "param-weighted-grad", "channel-grad",
                       "channel-weighted-grad")


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.mark.parametrize("strategy", GRADIENT_STRATEGIES)
def test_gradient_masks_do_not_depend_on_the_batch_size(digits, strategy):
    """Every forget example weighs the same (SPEC §2): with |D_f| = 140 and batches of 128, summing
    per-batch MEANS let the trailing 12 examples weigh as much as the other 128."""
    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=0)
    forget = digits.train.subset(range(140))
    masks = [localize(model, forget, strategy, 0.3, batch_size=b, device="cpu", data=digits.train, seed=1)
             for b in (7, 128, len(forget))]
    assert masks[0].iou(masks[2]) >= 0.999, strategy
    assert masks[1].iou(masks[2]) >= 0.999, strategy


# The reset draws from the model's own init (SPEC §3) ----------------------------------------------

INIT_CASES = {  # small widths, but every tensor kind of the real models, several large enough for a std
    "cnn": dict(in_channels=1, width=16, image_size=8),
    "mlp": dict(in_channels=1, width=64, image_size=8),
    "resnet18": dict(in_channels=3, width=8, image_size=8),
    "vit": dict(in_channels=3, width=64, image_size=8),
}


@pytest.mark.parametrize("name", sorted(INIT_CASES))
def test_reset_draws_from_the_constructors_distribution(name):
    from memunlearn.methods.retrain import fresh_initialisation

    built = build_model(name, num_classes=10, seed=0, **INIT_CASES[name])
    trained = build_model(name, num_classes=10, seed=1, **INIT_CASES[name])
    with torch.no_grad():
        for param in trained.parameters():
            param.mul_(3.0).add_(0.5)  # "trained": nothing of the old values may leak into the reset
    reset = dict(fresh_initialisation(trained, seed=2).named_parameters())
    for pname, param in built.named_parameters():
        expected, got = param.detach(), reset[pname].detach()
        if torch.all(expected == expected.flatten()[0]):  # a constant init (zeros, ones) is reproduced exactly
            assert torch.equal(got, expected), f"{name}: {pname} should be constant {float(expected.flatten()[0])}"
            continue
        assert not torch.equal(got, expected), f"{name}: {pname} was not redrawn"
        if expected.numel() >= 4096:
            assert float(got.std()) == pytest.approx(float(expected.std()), rel=0.05), f"{name}: {pname}"
            assert abs(float(got.mean()) - float(expected.mean())) < 0.1 * float(expected.std()), f"{name}: {pname}"


def test_resnet18_init_is_torchvisions():
    """Convolutions kaiming-normal (fan_out, ReLU): std √(2 / (C_out·k²)); BatchNorm γ = 1, β = 0."""
    model = build_model("resnet18", 3, 10, width=8, image_size=8, seed=0)
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Conv2d) and module.weight.numel() >= 4096:
            c_out, _, k, _ = module.weight.shape
            assert float(module.weight.detach().std()) == pytest.approx((2 / (c_out * k * k)) ** 0.5, rel=0.05), name
        if isinstance(module, torch.nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0), name


def test_vit_layers_are_drawn_independently():
    """nn.TransformerEncoder clones one layer; the model's init (and so the reset) draws each anew."""
    from memunlearn.methods.retrain import fresh_initialisation

    model = build_model("vit", 3, 10, width=16, image_size=8, seed=0)
    for candidate in (model, fresh_initialisation(model, seed=1)):
        first, second = candidate.encoder.layers[0], candidate.encoder.layers[1]
        assert not torch.equal(first.self_attn.in_proj_weight, second.self_attn.in_proj_weight)
        assert not torch.equal(first.linear1.weight, second.linear1.weight)


def test_vit_head_includes_its_final_layernorm():
    from memunlearn.models import classifier_parameter_names

    vit = build_model("vit", 3, 10, width=16, image_size=8, seed=0)
    assert classifier_parameter_names(vit) == ["norm.weight", "norm.bias", "classifier.weight", "classifier.bias"]


# DEL: the official schedule, and the head of a user's own model -------------------------------------

def recorded_learning_rates(monkeypatch):
    """Patch UnlearningRun.step to record the rate of every step."""
    from memunlearn.methods.base import UnlearningRun

    rates, original_step = [], UnlearningRun.step

    def step(self, optimizer, loss, batch_examples, *args, **kwargs):
        rates.append(optimizer.param_groups[0]["lr"])
        return original_step(self, optimizer, loss, batch_examples, *args, **kwargs)

    monkeypatch.setattr(UnlearningRun, "step", step)
    return rates


def test_del_cosine_is_stepped_once_per_epoch_and_stays_above_the_floor(digits, monkeypatch):
    """The official code: CosineAnnealingLR(T_max=epochs, eta_min=0.01·lr), one scheduler step per epoch."""
    from memunlearn import unlearn

    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=0)
    forget, retain = digits.train.subset(range(20)), digits.train.subset(range(20, 100))  # 80 → 3 batches of 32
    rates = recorded_learning_rates(monkeypatch)
    unlearn("del", model, forget, retain, epochs=4, lr=0.1, batch_size=32, drop_last=False, device="cpu")
    reference_optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(reference_optimizer, T_max=4, eta_min=0.001)
    expected = []
    for _ in range(4):
        expected += [reference_optimizer.param_groups[0]["lr"]] * 3
        reference_optimizer.step()
        scheduler.step()
    assert rates == pytest.approx(expected)
    assert min(rates) > 0.001 * 1.5  # the last epoch is well above the floor


@pytest.mark.parametrize("method", ["finetune", "neggrad", "neggrad+", "random-label", "l1-sparse", "salun"])
def test_rum_salun_baselines_run_a_constant_rate_and_keep_the_cosine_as_an_option(digits, monkeypatch, method):
    """Official RUM/SalUn code: MultiStepLR(milestones 91,136) never reached, so a constant rate
    (RUM unlearn/impl.py:252-255, SalUn Classification/unlearn/impl.py:94-97); schedule=cosine is our
    earlier per-batch cosine to 0."""
    from memunlearn import unlearn

    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=0)
    forget, retain = digits.train.subset(range(20)), digits.train.subset(range(20, 100))
    rates = recorded_learning_rates(monkeypatch)
    unlearn(method, model, forget, retain, epochs=2, lr=0.1, batch_size=32, device="cpu")
    assert len(rates) >= 2 and set(rates) == {0.1}
    rates.clear()
    unlearn(method, model, forget, retain, epochs=2, lr=0.1, batch_size=32, schedule="cosine", device="cpu")
    assert len(set(rates)) == len(rates) >= 2 and rates[0] == 0.1 and rates[-1] < 0.1 / len(rates)


class CustomNet(torch.nn.Module):
    """A user's own model: the head is called ``fc``, and a Linear layer of another width comes after
    it in module order (so "the last Linear" alone would pick the wrong one)."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU())
        self.fc = torch.nn.Linear(32, 10)
        self.aux = torch.nn.Linear(32, 5)  # an auxiliary head, not used for the logits

    def forward(self, x):
        return self.fc(self.body(x))


def test_del_finds_the_head_of_a_custom_model_and_says_which(digits):
    from memunlearn import unlearn
    from memunlearn.localization import Mask

    torch.manual_seed(0)
    model = CustomNet()
    forget, retain = digits.train.subset(range(20)), digits.train.subset(range(20, 100))
    nothing = Mask({n: torch.zeros(p.shape, dtype=torch.bool) for n, p in model.named_parameters()})
    with pytest.warns(UserWarning, match="taking 'fc' as its classifier"):
        result = unlearn("del", model, forget, retain, mask=nothing, epochs=1, device="cpu")
    assert result.hparams["classifier_layers"] == ["fc"]
    after = dict(result.model.named_parameters())
    for name, param in model.named_parameters():
        assert torch.equal(after[name], param) == (not name.startswith("fc.")), name
    # Naming the layer: no guess, no warning.
    named = unlearn("del", model, forget, retain, mask=nothing, epochs=1, classifier_layer="body.1", device="cpu")
    assert named.hparams["classifier_layers"] == ["body.1"]
    after = dict(named.model.named_parameters())
    assert not torch.equal(after["body.1.weight"], model.body[1].weight)
    assert torch.equal(after["fc.weight"], model.fc.weight)
    with pytest.raises(Exception, match="no layer 'head'"):
        unlearn("del", model, forget, retain, mask=nothing, epochs=1, classifier_layer="head", device="cpu")


# Memorization levels (SPEC §1) ------------------------------------------------------------------------

def test_exact_mid_is_closest_to_one_half_even_when_most_scores_are_zero():
    import numpy as np

    from memunlearn.memorization import select_by_memorization

    # 12 examples: 7 exact zeros (> 50%, as on real data), then 0.1, 0.4, 0.6, 0.5, 1.0.
    scores = np.array([0.0] * 7 + [0.1, 0.4, 0.6, 0.5, 1.0])
    # exact: 0.5 (index 10), then 0.4 and 0.6 tie at distance 0.1 and the lower score wins → 8
    assert select_by_memorization(scores, "mid", 2, exact=True).tolist() == [8, 10]
    # a proxy keeps the median (0.0 here): mid = low, which is why exact scores need the fixed level
    assert select_by_memorization(scores, "mid", 2).tolist() == [0, 1]
    # mix: low = two zeros, high = 1.0 and 0.6, mid = the rest closest to 0.5 (0.5, then 0.4)
    _, parts = select_by_memorization(scores, "mix", 6, exact=True, return_parts=True)
    assert {k: v.tolist() for k, v in parts.items()} == {"low": [0, 1], "mid": [8, 10], "high": [9, 11]}
    _, proxy_parts = select_by_memorization(scores, "mix", 6, return_parts=True)
    assert proxy_parts["mid"].tolist() == [2, 3]  # the median's zeros


def test_memorization_forget_kind_uses_the_exact_rule_only_for_exact_scores(digits, monkeypatch):
    import numpy as np

    import memunlearn.memorization as memorization
    from memunlearn.forget import ForgetContext, make_forget_set

    n = len(digits.train)
    scores = np.zeros(n)
    scores[:100] = np.linspace(0.01, 1.0, 100)  # > 90% zeros
    monkeypatch.setattr(memorization, "memorization_scores", lambda *args, **kwargs: scores)
    context = ForgetContext(original=lambda: (None, None))
    exact = make_forget_set("memorization:mid:exact:0.01", digits, seed=0, context=context)
    assert np.abs(scores[exact.indices] - 0.5).max() < 0.1
    proxy = make_forget_set("memorization:mid:confidence:0.01", digits, seed=0, context=context)
    assert np.all(scores[proxy.indices] == 0)


# The holdout-retraining proxy's official recipe (SPEC §4) ----------------------------------------------

def test_holdout_early_stopping_rule():
    from memunlearn.memorization.proxies import loss_has_plateaued

    assert not loss_has_plateaued([1.0, 0.9, 0.95, 0.91, 0.92], patience=4)  # only 4 epochs since the best
    assert loss_has_plateaued([1.0, 0.9, 0.95, 0.91, 0.92, 0.93], patience=4)
    assert not loss_has_plateaued([1.0, 0.9, 0.95, 0.91, 0.92, 0.89], patience=4)  # improved at the last one
    assert loss_has_plateaued([0.5, 0.5, 0.5, 0.5, 0.5], patience=4)  # equal is not an improvement


def test_holdout_finetuning_stops_after_four_epochs_without_improvement():
    from memunlearn import Examples
    from memunlearn.memorization.proxies import finetune_until_plateau

    torch.manual_seed(0)
    examples = Examples(torch.randn(20, 4), torch.randint(0, 3, (20,)))
    frozen = torch.nn.Linear(4, 3)
    # lr 0 on 20 copies of one example: every epoch has the same loss (whatever the shuffled order)
    # → the best is epoch 1; stop after 4 more.
    copies = Examples(examples.x[:1].repeat(20, 1), examples.y[:1].repeat(20))
    losses = finetune_until_plateau(frozen, copies, lr=0.0, batch_size=20, device="cpu")
    assert len(losses) == 5 and len(set(losses)) == 1
    # a convex problem at a small rate keeps improving: it runs to the epoch cap
    learning = torch.nn.Linear(4, 3)
    losses = finetune_until_plateau(learning, examples, max_epochs=12, lr=0.05, momentum=0.0, batch_size=20,
                                    device="cpu")
    assert len(losses) == 12 and all(b < a for a, b in zip(losses, losses[1:]))


def test_holdout_proxy_uses_the_official_defaults(digits, monkeypatch):
    import memunlearn.memorization.proxies as proxies

    seen = {}

    def spy(model, examples, **settings):
        seen.update(settings)
        return [0.0]

    monkeypatch.setattr(proxies, "finetune_until_plateau", spy)
    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=0)
    proxies.compute_proxy("holdout-retraining", digits, model, None, "cpu")
    assert {k: seen[k] for k in ("max_epochs", "lr", "momentum", "weight_decay", "patience")} == dict(
        max_epochs=30, lr=0.1, momentum=0.9, weight_decay=5e-4, patience=4)
    proxies.compute_proxy("holdout-retraining", digits, model, None, "cpu", holdout_lr=0.01, holdout_patience=2)
    assert seen["lr"] == 0.01 and seen["patience"] == 2  # every setting can be overridden


# random-label: SPEC's relabelling and the SalUn/RUM variant ------------------------------------------

@pytest.mark.parametrize("method", ["random-label", "salun"])
def test_relabel_once_over_other_classes_or_every_epoch_over_all(digits, monkeypatch, method):
    import memunlearn.methods.random_label as module  # salun trains through random-label's loop
    from memunlearn import unlearn

    real_training = module.train_epochs_ce
    forget_labels = []

    def recording(run, examples, *args, **kwargs):
        def recorded(epoch):
            epoch_set = examples(epoch)
            forget_labels.append(epoch_set.y[len(retain):].clone())  # the relabelled forget examples come last
            return epoch_set

        return real_training(run, recorded, *args, **kwargs)

    monkeypatch.setattr(module, "train_epochs_ce", recording)
    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=0)
    forget, retain = digits.train.subset(range(300)), digits.train.subset(range(300, 400))

    # relabel once over the other classes (SPEC's earlier rule, recipe "ours"; order mixed: the set is D_r ∪ D_f')
    unlearn(method, model, forget, retain, epochs=3, relabel="once-other", order="mixed", device="cpu")
    assert len(forget_labels) == 3
    assert all(torch.equal(labels, forget_labels[0]) for labels in forget_labels)
    assert not (forget_labels[0] == forget.y).any()
    assert len(forget_labels[0].unique()) == 10

    forget_labels.clear()
    result = unlearn(method, model, forget, retain, epochs=3, relabel="every-epoch-all", order="mixed", device="cpu")
    assert result.hparams["relabel"] == "every-epoch-all"
    assert len(forget_labels) == 3 and not torch.equal(forget_labels[0], forget_labels[1])
    hits = torch.stack([labels == forget.y for labels in forget_labels]).float().mean()
    assert 0.05 < float(hits) < 0.2  # over ALL classes: about 1/10 draw the true label


@pytest.mark.parametrize("method", ["random-label", "salun"])
def test_official_order_is_forget_batches_with_fresh_labels_then_retain_batches(digits, monkeypatch, method):
    """SalUn's CIFAR-10 branch (Classification/unlearn/RL.py:123-159): each epoch every forget batch,
    labels drawn per batch over ALL classes, then every retain batch; the default."""
    from memunlearn import unlearn
    from memunlearn.methods.base import UnlearningRun

    seen, original_step = [], UnlearningRun.step

    def step(self, optimizer, loss, batch_examples, *args, **kwargs):
        seen.append(batch_examples)
        return original_step(self, optimizer, loss, batch_examples, *args, **kwargs)

    monkeypatch.setattr(UnlearningRun, "step", step)
    import memunlearn.methods.random_label as random_label

    draws, real_draw = [], random_label.random_any_labels
    monkeypatch.setattr(random_label, "random_any_labels",
                        lambda *args: draws.append(real_draw(*args)) or draws[-1])
    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=0)
    forget, retain = digits.train.subset(range(300)), digits.train.subset(range(300, 400))
    result = unlearn(method, model, forget, retain, epochs=2, batch_size=128, device="cpu")
    assert result.hparams["order"] == "forget-first" and result.hparams["relabel"] == "every-epoch-all"
    assert seen == [128, 128, 44, 100] * 2  # the forget batches (the last one partial), then the retain batch
    assert [len(d) for d in draws] == [128, 128, 44] * 2  # one draw per forget batch, every epoch
    assert not torch.equal(torch.cat(draws[:3]), torch.cat(draws[3:]))
    assert set(torch.cat(draws).tolist()) == set(range(10))


# Proxy quality: raw ρ is the headline; a correction states the reliabilities it used -------------------

def test_compare_reports_raw_rho_and_labels_the_correction():
    import numpy as np

    from memunlearn.memorization.compare import compare_proxies
    from memunlearn.memorization.estimator import disattenuate, retest_reliability
    from memunlearn.memorization.proxies import ProxyResult

    exact = np.array([0.0, 0.1, 0.5, 0.9, 0.3])
    proxies = {name: ProxyResult(name, np.array([0.0, 0.2, 0.1, 0.9, 0.4]), 1.0, "dynamics")
               for name in ("measured", "unmeasured")}
    result = compare_proxies(exact, 0.6, proxies, 100.0, proxy_reliability={"measured": 0.5})
    assert result["headline"] == "rho" and "exact scores' noise only" in result["correction"]
    measured, unmeasured = result["proxies"]["measured"], result["proxies"]["unmeasured"]
    assert measured["rho"] == unmeasured["rho"] == pytest.approx(0.7)  # raw Spearman, uncorrected
    assert measured["exact_reliability"] == pytest.approx(0.75)  # Spearman-Brown of 0.6
    assert measured["proxy_reliability"] == 0.5 and unmeasured["proxy_reliability"] is None
    assert measured["rho_corrected"] == pytest.approx(0.7 / np.sqrt(0.75 * 0.5))
    assert unmeasured["rho_corrected"] == pytest.approx(0.7 / np.sqrt(0.75))
    # the proxy's reliability is never silently 1: disattenuate needs it spelled out
    with pytest.raises(TypeError):
        disattenuate(0.4, 0.64)
    assert retest_reliability(np.array([1.0, 2, 3, 4]), np.array([1.0, 3, 2, 4])) == pytest.approx(0.8)
