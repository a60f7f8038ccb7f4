"""Masks and localization strategies (SPEC §2): hand-checked scores, exact budgets, files, errors."""

import copy

import pytest
import torch
from torch import nn

from memunlearn import Examples, build_model
from memunlearn.errors import CheckpointError, ConfigError
from memunlearn.localization import (
    Mask, accumulate_gradient, available_strategies, budget_count, gradient_scores, localize, row_scores, select_top,
    top_h,
)

@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: a second thread only adds synchronisation, and other jobs share the cores."""
    torch.set_num_threads(1)



class TwoByTwo(nn.Module):
    """logits = W x + b: small enough to compute its gradients by hand."""

    def __init__(self):
        super().__init__()
        self.classifier = nn.Linear(2, 2)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.tensor([[1.0, 1.0], [2.0, 0.75]]))
            self.classifier.bias.copy_(torch.tensor([0.3, 0.3]))

    def forward(self, x):
        return self.classifier(x)


@pytest.fixture
def hand_case():
    # x = (1, 4): both logits are 5.3, softmax = (½, ½), label 0 → ∂CE/∂logits = (−½, ½),
    # so ∇W = [[−½, −2], [½, 2]] and ∇b = (−½, ½) for each copy of the example.
    examples = Examples(torch.tensor([[1.0, 4.0], [1.0, 4.0]]), torch.tensor([0, 0]))
    return TwoByTwo(), examples


def test_summed_gradient_by_hand(hand_case):
    model, examples = hand_case
    gradient = accumulate_gradient(model, examples, batch_size=1, device="cpu")  # two batches of one
    assert torch.allclose(gradient["classifier.weight"], torch.tensor([[-1.0, -4.0], [1.0, 4.0]]))
    assert torch.allclose(gradient["classifier.bias"], torch.tensor([-1.0, 1.0]))


def test_del_mask_by_hand(hand_case):
    model, examples = hand_case
    # |θ ⊙ G| = [[1, 4], [2, 3]] and bias |(0.3, 0.3) ⊙ (−1, 1)| = (0.3, 0.3). C_out = 2 → h = 1, so each row
    # scores its max: row 0 → 4, row 1 → 3. P = 6, α = 0.5 → 3 entries: row 0, then the first entry of row 1.
    mask = localize(model, examples, "del", 0.5, batch_size=1, device="cpu")
    assert mask["classifier.weight"].tolist() == [[True, True], [True, False]]
    assert mask["classifier.bias"].tolist() == [False, False]
    # SalUn's saliency |G| = [[1, 4], [1, 4]], bias (1, 1): the two 4s, then the first of the tied 1s.
    salun = localize(model, examples, "salun", 0.5, batch_size=1, device="cpu")
    assert salun["classifier.weight"].tolist() == [[True, True], [False, True]]
    assert salun["classifier.bias"].tolist() == [False, False]


def test_top_h_rule():
    assert top_h(64, 576) == 6  # ⌊0.1·64⌋
    assert top_h(10, 64) == 1  # max(1, ⌊1.0⌋)
    assert top_h(5, 100) == 1  # max(1, ⌊0.5⌋)
    assert top_h(1000, 64) == 64  # never more than the row has
    assert top_h(64, 576, rule="row") == 57  # ⌊0.1·576⌋
    assert top_h(64, 576, fraction=0.25) == 16
    with pytest.raises(ConfigError):
        top_h(64, 576, rule="columns")


def test_row_scores_top_h_mean_and_1d_entries():
    # 20 output rows, row i = (i, 0, 2i): h = ⌊0.1·20⌋ = 2 → mean of (2i, i) = 1.5·i on every entry of row i.
    i = torch.arange(20, dtype=torch.float32)
    score = torch.stack([i, torch.zeros(20), 2 * i], dim=1)
    expected = (1.5 * i)[:, None].expand(20, 3)
    assert torch.equal(row_scores(score), expected)
    # The `row` rule with f = 0.34 on rows of length 3: h = 1 → the row's max, 2i.
    assert torch.equal(row_scores(score, "row", 0.34), (2 * i)[:, None].expand(20, 3))
    # A conv weight is viewed as [C_out, rest].
    conv = torch.arange(2 * 2 * 2 * 2, dtype=torch.float32).reshape(2, 2, 2, 2)
    assert row_scores(conv).tolist() == [[[[7.0] * 2] * 2] * 2, [[[15.0] * 2] * 2] * 2]
    bias = torch.tensor([3.0, 1.0, 2.0])
    assert torch.equal(row_scores(bias), bias)  # ≤ 1-D: per-entry scores


def test_gradient_scores_take_abs_after_summing():
    lin = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[2.0, -1.0]]))
    gradient = {"weight": torch.tensor([[-3.0, 0.5]])}
    assert gradient_scores(lin, gradient, "grad", "param")["weight"].tolist() == [[3.0, 0.5]]
    assert gradient_scores(lin, gradient, "weighted-grad", "param")["weight"].tolist() == [[6.0, 0.5]]
    with pytest.raises(ConfigError, match="criterion"):
        gradient_scores(lin, gradient, "hessian", "param")


def test_global_budget_count_and_ties():
    scores = {"a": torch.tensor([[5.0, 5.0], [1.0, 1.0]]), "b": torch.tensor([5.0, 0.0, 2.0])}
    assert budget_count(0.29, 100) == 29  # not 28 from 28.999…
    for budget, count in ((0.0, 0), (0.3, 2), (0.5, 3), (1.0, 7)):
        assert select_top(scores, budget).selected == count
    # α = 0.3 of 7 → 2 entries among three tied 5s: the earliest ones, deterministically.
    mask = select_top(scores, 0.3)
    assert mask["a"].tolist() == [[True, True], [False, False]] and not mask["b"].any()
    with pytest.raises(ConfigError, match="budget"):
        select_top(scores, 1.5)


def test_eval_mode_batchnorm_and_model_untouched():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].running_mean.fill_(2.0)
        model[1].running_var.fill_(9.0)
    model.train()
    before = copy.deepcopy(model.state_dict())
    examples = Examples(torch.randn(8, 3), torch.randint(0, 2, (8,)))
    gradient = accumulate_gradient(model, examples, batch_size=8, device="cpu")
    eval_copy = copy.deepcopy(model).eval()
    loss = nn.functional.cross_entropy(eval_copy(examples.x), examples.y, reduction="sum")
    expected = torch.autograd.grad(loss, list(eval_copy.parameters()))
    for (name, _), g in zip(model.named_parameters(), expected):
        assert torch.allclose(gradient[name], g, atol=1e-6), name
    assert model.training, "the caller's train/eval mode must be kept"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "running statistics changed"
    assert all(p.grad is None for p in model.parameters())


@pytest.fixture(scope="module")
def tiny(digits):
    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=0)
    return model, digits.train.subset(range(40)), digits.train


@pytest.mark.parametrize("budget", [0.1, 0.37])
def test_every_strategy_selects_exactly_the_budget(tiny, budget):
    model, forget, train = tiny
    total = sum(p.numel() for p in model.parameters())
    for strategy in available_strategies():
        mask = localize(model, forget, strategy, budget, device="cpu", data=train)
        assert mask.selected == int(budget * total), strategy
        assert mask.info["strategy"] == strategy and "wall_time" in mask.info
        mask.check_fits(model)


def test_ablation_grid_and_named_strategies_agree(tiny):
    model, forget, _ = tiny
    for name in ("param-grad", "param-weighted-grad", "channel-grad", "channel-weighted-grad"):
        assert name in available_strategies()
    del_mask = localize(model, forget, "del", 0.3, device="cpu")
    assert del_mask.iou(localize(model, forget, "channel-weighted-grad", 0.3, device="cpu")) == 1.0
    salun = localize(model, forget, "salun", 0.3, device="cpu")
    assert salun.iou(localize(model, forget, "param-grad", 0.3, device="cpu")) == 1.0
    assert del_mask.iou(salun) < 1.0


def test_random_channel_copies_per_layer_counts_with_whole_rows(tiny):
    model, forget, _ = tiny
    reference = localize(model, forget, "del", 0.3, device="cpu")
    mask = localize(model, forget, "random-channel", 0.3, device="cpu", reference=reference, seed=3)
    params = dict(model.named_parameters())
    for name in reference:
        assert int(mask[name].sum()) == int(reference[name].sum()), name
        if params[name].dim() >= 2:
            rows = mask[name].reshape(mask[name].shape[0], -1)
            partial = [r for r in rows if r.any() and not r.all()]
            assert len(partial) <= 1, name  # whole rows, except at most one to hit the count exactly
    assert mask.iou(reference) < 1.0


def test_shallowest_and_deepest(tiny):
    model, forget, _ = tiny
    names = [n for n, _ in model.named_parameters()]
    shallow = localize(model, forget, "shallowest", 0.3)
    deep = localize(model, forget, "deepest", 0.3)
    assert shallow[names[0]].all() and not shallow[names[-1]].any()
    assert deep["classifier.weight"].all() and deep["classifier.bias"].all() and not deep[names[0]].any()


def test_del_agnostic_needs_data(tiny):
    model, forget, train = tiny
    with pytest.raises(ConfigError, match="data="):
        localize(model, forget, "del-agnostic", 0.3)
    agnostic = localize(model, forget, "del-agnostic", 0.3, data=train, seed=1)
    assert agnostic.info["examples"] == len(forget)


def test_unknown_strategy_and_bad_budget(tiny):
    model, forget, _ = tiny
    with pytest.raises(ConfigError, match="unknown localization strategy 'nope'; known: .*del"):
        localize(model, forget, "nope")
    with pytest.raises(ConfigError, match="budget"):
        localize(model, forget, "del", 1.2)


def test_default_budgets(tiny):
    model, forget, _ = tiny
    total = sum(p.numel() for p in model.parameters())
    assert localize(model, forget, "del").selected == int(0.3 * total)
    assert localize(model, forget, "salun").selected == int(0.5 * total)


def test_save_load_round_trip(tiny, tmp_path):
    model, forget, _ = tiny
    mask = localize(model, forget, "del", 0.3)
    path = mask.save(tmp_path / "sub" / "mask.safetensors")
    loaded = Mask.load(path).check_fits(model)
    assert list(loaded) == [n for n, _ in model.named_parameters()]
    assert all(torch.equal(loaded[n], mask[n]) for n in mask)
    assert loaded.info["strategy"] == "del" and loaded.info["budget"] == 0.3
    assert loaded.density == pytest.approx(mask.density) and loaded.sparsity == pytest.approx(1 - mask.density)
    rows = loaded.per_layer()
    assert sum(r["selected"] for r in rows) == loaded.selected and sum(r["total"] for r in rows) == loaded.total
    assert not list(tmp_path.glob("sub/.*.tmp")), "atomic write left a temporary file"


def test_mask_file_errors(tiny, tmp_path):
    model, _, _ = tiny
    with pytest.raises(CheckpointError, match="does not exist"):
        Mask.load(tmp_path / "missing.safetensors")
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00\x01 not a safetensors file")
    with pytest.raises(CheckpointError, match="corrupt"):
        Mask.load(corrupt)
    from memunlearn.checkpoints import save_checkpoint

    not_a_mask = save_checkpoint(tmp_path / "model.safetensors", model)
    with pytest.raises(CheckpointError, match="not a memunlearn mask"):
        Mask.load(not_a_mask)


def test_mismatch_errors(tiny):
    model, _, _ = tiny
    other = build_model("cnn", 1, 10, width=6, image_size=8, seed=0)
    with pytest.raises(CheckpointError, match="does not fit the model: .*body.0.0.weight has shape"):
        Mask.full(other).check_fits(model)
    partial = Mask({n: m for n, m in Mask.full(model).items() if n != "classifier.bias"})
    with pytest.raises(CheckpointError, match="no entry for \\['classifier.bias'\\]"):
        partial.check_fits(model)
    with pytest.raises(CheckpointError, match="different models"):
        partial.iou(Mask.full(model))


def test_iou_by_hand():
    a = Mask({"w": torch.tensor([[True, True], [False, False]]), "b": torch.tensor([True])})
    b = Mask({"w": torch.tensor([[True, False], [True, False]]), "b": torch.tensor([True])})
    assert a.iou(b) == pytest.approx(2 / 4)  # shared: w[0,0], b; union: w[0,0], w[0,1], w[1,0], b
    assert a.iou(a) == 1.0
    empty = Mask({"w": torch.zeros(2, 2, dtype=torch.bool), "b": torch.zeros(1, dtype=torch.bool)})
    assert empty.iou(empty) == 1.0
