"""SCRUB and SSD at their official recipes agree with short transcriptions of the official code.

Each test runs our method and a transcription of the official update (written here, the official
file:line cited at each piece) from the same model, data, seed and batch order, and compares the
parameters. The transcriptions are of:

- SCRUB: meghdadk/SCRUB @ 98ffb11, large_scale_unlearning.ipynb (the CIFAR-10 experiment; lines of
  the .ipynb file) and thirdparty/repdistiller/helper/loops.py, distiller_zoo/KD.py, helper/util.py;
- SSD: if-loops/selective-synaptic-dampening @ cdfdc0e, src/ssd.py, src/forget_random_strategies.py,
  src/forget_random_main.py.

Batch order: the official loaders are torch DataLoaders (SCRUB's shuffled by the global RNG,
SSD's unshuffled). The SCRUB transcription is handed loaders that draw each epoch's permutation
from a generator seeded as ours, in the order the official loop iterates them (forget, then
retain, each epoch), so both see the same batches; SSD's loaders are unshuffled in both.
Each test also checks that it can fail: the earlier defaults (recipe ``ours``) do not match.
"""

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, TensorDataset

from memunlearn import Examples, build_model, train, unlearn
from memunlearn.training import TrainConfig


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setting(digits):
    """A small BatchNorm CNN fitted to digits; 600 forget and ~800 retain examples, so that the
    official batch sizes (512 forget, 256 retain, 128 for SSD) give several batches, last ones partial."""
    torch.set_num_threads(1)
    data = digits.train
    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=0)
    model = train(model, data, TrainConfig(epochs=2, lr=0.05, batch_size=64, seed=0), "cpu",
                  record_dynamics=False).model
    forget, retain = data.subset(range(600)), data.subset(range(600, len(data)))
    return model, forget, retain


def max_difference(a: nn.Module, b: nn.Module) -> float:
    with torch.no_grad():
        return max(float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters()))


# ---------------------------------------------------------------- SCRUB: transcription of the official code

class DistillKL(nn.Module):
    """thirdparty/repdistiller/distiller_zoo/KD.py:7-17 (``size_average=False`` is ``reduction="sum"``)."""

    def __init__(self, T):
        super().__init__()
        self.T = T

    def forward(self, y_s, y_t):
        p_s = nn.functional.log_softmax(y_s / self.T, dim=1)
        p_t = nn.functional.softmax(y_t / self.T, dim=1)
        return nn.functional.kl_div(p_s, p_t, reduction="sum") * (self.T**2) / y_s.shape[0]


def official_adjust_learning_rate(epoch, opt, optimizer):
    """thirdparty/repdistiller/helper/util.py:22-30."""
    steps = sum(epoch > e for e in opt["lr_decay_epochs"])
    new_lr = opt["sgda_learning_rate"]
    if steps > 0:
        new_lr = opt["sgda_learning_rate"] * (opt["lr_decay_rate"] ** steps)
        for param_group in optimizer.param_groups:
            param_group["lr"] = new_lr
    return new_lr


def official_train_distill(model_s, model_t, loader, criterion_cls, criterion_div, optimizer, opt, split):
    """thirdparty/repdistiller/helper/loops.py:137-291 with opt.distill == 'kd' (loss_kd = 0, :190-191)."""
    model_s.train()  # :140-141
    model_t.eval()  # :143
    for input, target in loader:  # :161
        logit_s = model_s(input.float())  # :178
        with torch.no_grad():
            logit_t = model_t(input.float())  # :179-182
        loss_cls = criterion_cls(logit_s, target)  # :186
        loss_div = criterion_div(logit_s, logit_t)  # :187
        loss_kd = 0
        if split == "minimize":
            loss = opt["gamma"] * loss_cls + opt["alpha"] * loss_div + opt["beta"] * loss_kd  # :241-242
        elif split == "maximize":
            loss = -loss_div  # :243-244
        optimizer.zero_grad()  # :262-265
        loss.backward()
        optimizer.step()


def official_scrub(model, forget_loader, retain_loader, opt):
    """large_scale_unlearning.ipynb: teacher and student copies of the model (lines 647-648, 753-754),
    criteria and SGD (768-783), the epoch loop (820-836)."""
    model_t, model_s = copy.deepcopy(model), copy.deepcopy(model)
    criterion_cls = nn.CrossEntropyLoss()
    criterion_div = DistillKL(opt["kd_T"])
    optimizer = torch.optim.SGD(model_s.parameters(), lr=opt["sgda_learning_rate"], momentum=opt["sgda_momentum"],
                                weight_decay=opt["sgda_weight_decay"])
    for epoch in range(1, opt["sgda_epochs"] + 1):
        official_adjust_learning_rate(epoch, opt, optimizer)
        if epoch <= opt["msteps"]:
            official_train_distill(model_s, model_t, forget_loader, criterion_cls, criterion_div, optimizer, opt,
                                   "maximize")
        official_train_distill(model_s, model_t, retain_loader, criterion_cls, criterion_div, optimizer, opt,
                               "minimize")
    return model_s


# The notebook's settings, large_scale_unlearning.ipynb:726-744, and its loaders' batch sizes (678, 684).
OFFICIAL_SCRUB = dict(gamma=0.99, alpha=0.001, beta=0, msteps=2, kd_T=4, sgda_epochs=3, sgda_learning_rate=0.0005,
                      lr_decay_epochs=[3, 5, 9], lr_decay_rate=0.1, sgda_weight_decay=5e-4, sgda_momentum=0.9)
FORGET_BATCH, RETAIN_BATCH = 512, 256


class SeededLoader:
    """A shuffling loader whose permutations come from a shared generator, drawn when iterated."""

    def __init__(self, examples: Examples, batch_size: int, generator: torch.Generator):
        self.examples, self.batch_size, self.generator = examples, batch_size, generator

    def __iter__(self):
        return self.examples.batches(self.batch_size, shuffle=True, generator=self.generator)


def run_official_scrub(model, forget, retain, seed, forget_batch, retain_batch, **changes):
    opt = {**OFFICIAL_SCRUB, **changes}
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    return official_scrub(model, SeededLoader(forget, forget_batch, generator),
                          SeededLoader(retain, retain_batch, generator), opt)


def test_scrub_official_recipe_matches_a_transcription_of_the_official_loop(setting):
    model, forget, retain = setting
    ours = unlearn("scrub", model, forget, retain, seed=3, device="cpu").model
    official = run_official_scrub(model, forget, retain, 3, FORGET_BATCH, RETAIN_BATCH)
    moved = max_difference(official, model)
    assert moved > 1e-3, f"the official run barely moved the weights ({moved:.2e}): the comparison would say nothing"
    assert max_difference(ours, official) < 1e-5
    # It can fail: the earlier defaults (5 epochs, lr 0.02, batches of 64, cosine, clip 5) do not match.
    earlier = unlearn("scrub", model, forget, retain, recipe="ours", seed=3, device="cpu").model
    assert max_difference(earlier, official) > 1e-3


def test_scrub_step_schedule_and_max_steps_beyond_the_default_epochs(setting):
    """5 epochs, 3 max-step epochs and a larger rate: the rate drops ×0.1 after epoch 3 (util.py:22-30),
    the max-steps run in epochs 1-3 (notebook line 834) — both as the official loop."""
    model, forget, retain = setting
    ours = unlearn("scrub", model, forget, retain, epochs=5, msteps=3, lr=0.01, forget_batch_size=256,
                   retain_batch_size=128, seed=1, device="cpu").model
    official = run_official_scrub(model, forget, retain, 1, 256, 128, sgda_epochs=5, msteps=3,
                                  sgda_learning_rate=0.01)
    assert max_difference(official, model) > 1e-2
    assert max_difference(ours, official) < 1e-5
    # RUM's transcription's order (unlearn/scrub.py:146: epochs from 0, so msteps + 1 max-step epochs) differs.
    rum_order = run_official_scrub(model, forget, retain, 1, 256, 128, sgda_epochs=5, msteps=4,
                                   sgda_learning_rate=0.01)
    assert max_difference(ours, rum_order) > 1e-3


# ---------------------------------------------------------------- SSD: transcription of the official code

class OfficialParameterPerturber:
    """src/ssd.py:35-217 (ParameterPerturber), the parts ssd_tuning uses."""

    def __init__(self, model, opt, parameters):
        self.model, self.opt = model, opt
        self.lower_bound = parameters["lower_bound"]
        self.exponent = parameters["exponent"]
        self.dampening_constant = parameters["dampening_constant"]
        self.selection_weighting = parameters["selection_weighting"]

    def calc_importance(self, dataloader):
        """src/ssd.py:151-180 (the batch is (x, y) here; the official datasets yield (x, _, y))."""
        criterion = nn.CrossEntropyLoss()
        importances = {k: torch.zeros_like(p) for k, p in self.model.named_parameters()}  # :66-80
        for x, y in dataloader:
            self.opt.zero_grad()
            out = self.model(x)
            loss = criterion(out, y)
            loss.backward()
            for (k1, p), (k2, imp) in zip(self.model.named_parameters(), importances.items()):
                if p.grad is not None:
                    imp.data += p.grad.data.clone().pow(2)
        for _, imp in importances.items():
            imp.data /= float(len(dataloader))
        return importances

    def modify_weight(self, original_importance, forget_importance):
        """src/ssd.py:182-217."""
        with torch.no_grad():
            for (n, p), (oimp_n, oimp), (fimp_n, fimp) in zip(
                self.model.named_parameters(), original_importance.items(), forget_importance.items()
            ):
                oimp_norm = oimp.mul(self.selection_weighting)
                locations = torch.where(fimp > oimp_norm)
                weight = ((oimp.mul(self.dampening_constant)).div(fimp)).pow(self.exponent)
                update = weight[locations]
                min_locs = torch.where(update > self.lower_bound)
                update[min_locs] = self.lower_bound
                p[locations] = p[locations].mul(update)


def official_ssd(model, forget: Examples, retain: Examples, batch_size=128, dampening_constant=1, selection_weighting=10):
    """src/forget_random_main.py:120 (forget loader, batch 128, unshuffled), :133-136 (full train =
    retain then forget, batch args.b = 128 (:57), unshuffled), :147-148 (λ = 1, α = 10); then
    src/forget_random_strategies.py:311-345 (ssd_tuning)."""
    model = copy.deepcopy(model)
    forget_set, retain_set = TensorDataset(forget.x, forget.y), TensorDataset(retain.x, retain.y)
    forget_train_dl = DataLoader(forget_set, batch_size=batch_size)
    full_train_dl = DataLoader(ConcatDataset((retain_set, forget_set)), batch_size=batch_size)
    parameters = {"lower_bound": 1, "exponent": 1, "magnitude_diff": None, "min_layer": -1, "max_layer": -1,
                  "forget_threshold": 1, "dampening_constant": dampening_constant,
                  "selection_weighting": selection_weighting}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    ssd = OfficialParameterPerturber(model, optimizer, parameters)
    model = model.eval()
    sample_importances = ssd.calc_importance(forget_train_dl)
    original_importances = ssd.calc_importance(full_train_dl)
    ssd.modify_weight(original_importances, sample_importances)
    return model


def test_ssd_official_recipe_matches_a_transcription_of_the_official_code(setting):
    model, _, data = setting
    # 150 forget examples with shifted labels (more than one batch of 128): their gradients stand
    # out, so that the default α = 10 selects weights.
    forget = Examples(data.x[:150], (data.y[:150] + 1) % 10)
    retain = data.subset(range(150, len(data)))
    # α = 1 as well as the default 10, so that many weights are dampened and the comparison has teeth.
    for selection in (10.0, 1.0):
        official = official_ssd(model, forget, retain, selection_weighting=selection)
        ours = unlearn("ssd", model, forget, retain, selection=selection, device="cpu").model
        changed = sum(int((p != q).sum()) for p, q in zip(official.parameters(), model.parameters()))
        assert changed > 0, f"α = {selection}: the official code dampened nothing"
        assert max_difference(ours, official) < 1e-5, f"α = {selection}"
    # It can fail: the earlier default batch of 64 gives other importances, so other weights.
    earlier = unlearn("ssd", model, forget, retain, recipe="ours", selection=1.0, device="cpu").model
    assert max_difference(earlier, official) > 1e-4
