"""The RUM/SalUn baselines against short transcriptions of their official update loops.

Each test runs our method and, in this file, the official loop (file:line cited) from the same
tiny model, data, seed and batch order for two epochs, and asserts that the parameters agree to
1e-5. Official code: RUM = kairanzhao/RUM@f593c9d, SalUn = OPTML-Group/Unlearn-Saliency@a6e89fd
(directory Classification/). The official hyperparameters are the parsers' defaults
(RUM arg_parser.py:55-64,83-84; SalUn Classification/arg_parser.py:69-78,116-124) and the README
commands' CIFAR-10 values; the update loops run with a larger lr and small batches so that two
epochs on 130 examples move the weights well beyond the tolerance.

Batch order: the official loaders are ``DataLoader(dataset, batch_size, shuffle=True)`` (RUM
main_forget.py:137-146, SalUn main_random.py:38-48: no drop_last, so the last batch is partial),
and SalUn's random labels come from ``torch.randint`` on the global RNG (RL.py:125). The
transcriptions draw each loader's permutation, lazily at its first batch as a DataLoader does,
and each random label, from one ``torch.Generator`` seeded as our run's, which replays our
method's stream of random numbers (a DataLoader's own sampler seeds a fresh generator from the
global RNG, a stream no library run can share).

Each test also runs recipe ``ours`` (the earlier defaults: per-batch cosine, other batch orders)
with the same explicit values and asserts that it does NOT agree: the comparison can fail.
"""

from __future__ import annotations

import copy
import itertools
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from memunlearn import Examples, unlearn
from memunlearn.localization import localize
from memunlearn.methods import METHODS, method_defaults

SEED = 3
CLASSES = 4
TOLERANCE = 1e-5
# The update loops' own values (both sides); everything else is each side's default.
LOOP = dict(epochs=2, lr=0.05, batch_size=16)


def official_args(**values) -> SimpleNamespace:
    """The official parsers' defaults (RUM arg_parser.py:55-64; SalUn Classification/arg_parser.py:69-85):
    momentum 0.9, weight decay 5e-4, no warm-up, MultiStepLR milestones 91,136, no l1-free epochs."""
    base = dict(momentum=0.9, weight_decay=5e-4, warmup=0, decreasing_lr="91,136", no_l1_epochs=0,
                num_classes=CLASSES, unlearn_lr=LOOP["lr"], unlearn_epochs=LOOP["epochs"],
                batch_size=LOOP["batch_size"])
    return SimpleNamespace(**{**base, **values})


def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, CLASSES))


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(130, 1, 4, 4, generator=generator)
    y = torch.randint(0, CLASSES, (130,), generator=generator)
    # 40 forget examples (batches of 16: 16, 16, 8) and 90 retain examples (5 × 16 + 10)
    return tiny_model(), Examples(x[:40], y[:40]), Examples(x[40:], y[40:])


def loader(examples: Examples, batch_size: int, generator: torch.Generator):
    """``DataLoader(TensorDataset(x, y), batch_size, shuffle=True)``: the permutation is drawn at
    the first batch; the last batch is partial (drop_last=False)."""
    order = torch.randperm(len(examples), generator=generator)
    for start in range(0, len(examples), batch_size):
        index = order[start:start + batch_size]
        yield examples.x[index], examples.y[index]


def optimizer_and_scheduler(model, args):
    """RUM unlearn/impl.py:217-222,252-255 (SalUn Classification/unlearn/impl.py:68-97)."""
    optimizer = torch.optim.SGD(model.parameters(), args.unlearn_lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    milestones = list(map(int, args.decreasing_lr.split(",")))  # impl.py:132
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)


def max_difference(a: nn.Module, b: nn.Module) -> float:
    return max(float((p - q).abs().max()) for p, q in zip(a.state_dict().values(), b.state_dict().values())
               if p.is_floating_point())


def assert_matches_and_ours_does_not(method, data, official_model, **extra):
    model, forget, retain = data
    assert max_difference(official_model, model) > 1000 * TOLERANCE  # the loop moved the weights
    ours = unlearn(method, model, forget, retain, seed=SEED, device="cpu", **LOOP, **extra).model
    assert max_difference(ours, official_model) <= TOLERANCE
    earlier = unlearn(method, model, forget, retain, seed=SEED, device="cpu", recipe="ours", **LOOP, **extra).model
    assert max_difference(earlier, official_model) > 100 * TOLERANCE, "recipe 'ours' should differ from the official"


# RUM unlearn/FT.py ---------------------------------------------------------------------------------

def l1_regularization(model):
    """RUM unlearn/FT.py:15-19."""
    params_vec = []
    for param in model.parameters():
        params_vec.append(param.view(-1))
    return torch.linalg.norm(torch.cat(params_vec), ord=1)


def official_ft(model, retain, args, generator, with_l1=False):
    """RUM unlearn/impl.py:262-285 around FT_iter, unlearn/FT.py:22-33,88-118 (the non-ImageNet branch)."""
    criterion = nn.CrossEntropyLoss()
    optimizer, scheduler = optimizer_and_scheduler(model, args)
    for epoch in range(0, args.unlearn_epochs):
        model.train()
        for i, (image, target) in enumerate(loader(retain, args.batch_size, generator)):
            if epoch < args.unlearn_epochs - args.no_l1_epochs:
                current_alpha = args.alpha * (1 - epoch / (args.unlearn_epochs - args.no_l1_epochs))
            else:
                current_alpha = 0
            output_clean = model(image)
            loss = criterion(output_clean, target)
            if with_l1:
                loss += current_alpha * l1_regularization(model)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
    return model


def test_finetune_matches_rum_ft(data):
    model, forget, retain = data
    official = official_ft(copy.deepcopy(model), retain, official_args(alpha=0.0),
                           torch.Generator().manual_seed(SEED))
    assert_matches_and_ours_does_not("finetune", data, official)


def test_l1_sparse_matches_rum_ft_l1(data):
    """FT_prune = FT_l1 (unlearn/FT_prune.py:9-22, FT.py:151-155): α_e = α(1 − e/E) per epoch."""
    model, forget, retain = data
    gamma = 5e-3  # large enough that the penalty moves the weights beyond the tolerance in two epochs
    official = official_ft(copy.deepcopy(model), retain, official_args(alpha=gamma),
                           torch.Generator().manual_seed(SEED), with_l1=True)
    assert_matches_and_ours_does_not("l1-sparse", data, official, gamma=gamma)
    # the per-epoch decay itself: the per-step rule (recipe ours' l1_decay) alone differs
    ours_step = unlearn("l1-sparse", model, forget, retain, seed=SEED, device="cpu", gamma=gamma, l1_decay="step",
                        **LOOP).model
    assert max_difference(ours_step, official) > 10 * TOLERANCE


# RUM unlearn/GA.py ---------------------------------------------------------------------------------

def test_neggrad_matches_rum_ga(data):
    """GA (unlearn/GA.py:20-30,76-99): one pass of forget batches per epoch, minimising −CE."""
    model, forget, retain = data
    args = official_args(unlearn_lr=0.01)
    official, generator, norms = copy.deepcopy(model), torch.Generator().manual_seed(SEED), []
    criterion = nn.CrossEntropyLoss()
    optimizer, scheduler = optimizer_and_scheduler(official, args)
    for epoch in range(0, args.unlearn_epochs):
        official.train()
        for i, (image, target) in enumerate(loader(forget, args.batch_size, generator)):
            output_clean = official(image)
            loss = -criterion(output_clean, target)
            optimizer.zero_grad()
            loss.backward()
            norms.append(float(torch.cat([p.grad.reshape(-1) for p in official.parameters()]).norm()))
            optimizer.step()
        scheduler.step()
    # our guard (max_grad_norm = 5) never engaged here, so the defaults are compared as they are
    assert max(norms) < method_defaults("neggrad")["max_grad_norm"]
    assert max_difference(official, model) > 1000 * TOLERANCE
    ours = unlearn("neggrad", model, forget, retain, seed=SEED, device="cpu", **{**LOOP, "lr": 0.01}).model
    assert max_difference(ours, official) <= TOLERANCE
    earlier = unlearn("neggrad", model, forget, retain, seed=SEED, device="cpu", recipe="ours",
                      **{**LOOP, "lr": 0.01}).model
    assert max_difference(earlier, official) > 100 * TOLERANCE


# RUM unlearn/neggrad.py ----------------------------------------------------------------------------

def test_neggrad_plus_matches_rum_negative_grad(data):
    """negative_grad (unlearn/neggrad.py:11-54): zip(retain batches, cycle(forget batches)) per epoch."""
    model, forget, retain = data
    args = official_args(alpha=0.99, unlearn_lr=0.01)
    official, generator, norms = copy.deepcopy(model), torch.Generator().manual_seed(SEED), []
    criterion = nn.CrossEntropyLoss()
    optimizer, scheduler = optimizer_and_scheduler(official, args)
    for epoch in range(0, args.unlearn_epochs):
        official.train()
        r_loader, f_loader = loader(retain, args.batch_size, generator), loader(forget, args.batch_size, generator)
        for idx, ((input, target), (del_input, del_target)) in enumerate(zip(r_loader, itertools.cycle(f_loader))):
            output_clean = official(input)
            del_output_clean = official(del_input)
            r_loss = criterion(output_clean, target)
            del_loss = criterion(del_output_clean, del_target)
            loss = args.alpha * r_loss - (1 - args.alpha) * del_loss
            optimizer.zero_grad()
            loss.backward()
            norms.append(float(torch.cat([p.grad.reshape(-1) for p in official.parameters()]).norm()))
            optimizer.step()
        scheduler.step()
    assert max(norms) < method_defaults("neggrad+")["max_grad_norm"]  # our guard never engaged
    assert max_difference(official, model) > 1000 * TOLERANCE
    explicit = {**LOOP, "lr": 0.01}
    ours = unlearn("neggrad+", model, forget, retain, seed=SEED, device="cpu", **explicit).model
    assert max_difference(ours, official) <= TOLERANCE
    earlier = unlearn("neggrad+", model, forget, retain, seed=SEED, device="cpu", recipe="ours", **explicit).model
    assert max_difference(earlier, official) > 100 * TOLERANCE
    # the forget cycle alone: our earlier continuous reshuffled stream differs from the per-epoch cycle
    continuous = unlearn("neggrad+", model, forget, retain, seed=SEED, device="cpu", forget_cycle="continuous",
                         **explicit).model
    assert max_difference(continuous, official) > 10 * TOLERANCE


# SalUn Classification/unlearn/RL.py ----------------------------------------------------------------

def _apply_mask_to_grads(model, mask):
    """SalUn Classification/unlearn/RL.py:11-14."""
    for name, param in model.named_parameters():
        if param.grad is not None:
            param.grad *= mask[name]


def _restore_masked_params(model, mask, theta0, optimizer):
    """SalUn Classification/unlearn/RL.py:17-34."""
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name not in mask:
                continue
            mask_tensor = mask[name].to(device=param.device, dtype=param.dtype)
            inv_mask_tensor = 1 - mask_tensor
            if torch.count_nonzero(inv_mask_tensor) == 0:
                continue
            param.data.mul_(mask_tensor).add_(theta0[name].to(param.device) * inv_mask_tensor)
            state = optimizer.state.get(param, None)
            if state is not None and "momentum_buffer" in state:
                state["momentum_buffer"].mul_(mask_tensor)


def official_rl(model, forget, retain, args, generator, mask=None):
    """SalUn RL, the CIFAR-10/SVHN branch (Classification/unlearn/RL.py:37-49,109-159) in impl.py:102-114's loop."""
    criterion = nn.CrossEntropyLoss()
    optimizer, scheduler = optimizer_and_scheduler(model, args)
    for epoch in range(0, args.unlearn_epochs):
        theta0 = None
        if mask:
            with torch.no_grad():
                theta0 = {name: param.detach().clone() for name, param in model.named_parameters() if name in mask}
        model.train()
        for i, (image, target) in enumerate(loader(forget, args.batch_size, generator)):
            target = torch.randint(0, args.num_classes, target.shape, generator=generator)  # RL.py:125, global RNG
            output_clean = model(image)
            loss = criterion(output_clean, target)
            optimizer.zero_grad()
            loss.backward()
            if mask:
                _apply_mask_to_grads(model, mask)
            optimizer.step()
            if mask:
                _restore_masked_params(model, mask, theta0, optimizer)
        for i, (image, target) in enumerate(loader(retain, args.batch_size, generator)):
            output_clean = model(image)
            loss = criterion(output_clean, target)
            optimizer.zero_grad()
            loss.backward()
            if mask:
                _apply_mask_to_grads(model, mask)
            optimizer.step()
            if mask:
                _restore_masked_params(model, mask, theta0, optimizer)
        scheduler.step()
    return model


def official_saliency_mask(model, forget, args, threshold=0.5):
    """SalUn Classification/generate_mask.py:14-82 (save_gradient_ratio) for one threshold."""
    optimizer = torch.optim.SGD(model.parameters(), args.unlearn_lr, momentum=args.momentum,
                                weight_decay=args.weight_decay)
    criterion = nn.CrossEntropyLoss()
    gradients = {}
    forget_loader = loader(forget, 256, torch.Generator().manual_seed(0))  # args.batch_size 256: one batch here
    model.eval()
    for name, param in model.named_parameters():
        gradients[name] = 0
    for i, (image, target) in enumerate(forget_loader):
        output_clean = model(image)
        loss = - criterion(output_clean, target)
        optimizer.zero_grad()
        loss.backward()
        with torch.no_grad():
            for name, param in model.named_parameters():
                if param.grad is not None:
                    gradients[name] += param.grad.data
    with torch.no_grad():
        for name in gradients:
            gradients[name] = torch.abs_(gradients[name])
    hard_dict = {}
    all_elements = - torch.cat([tensor.flatten() for tensor in gradients.values()])
    threshold_index = int(len(all_elements) * threshold)
    positions = torch.argsort(all_elements)
    ranks = torch.argsort(positions)
    start_index = 0
    for key, tensor in gradients.items():
        num_elements = tensor.numel()
        tensor_ranks = ranks[start_index: start_index + num_elements]
        threshold_tensor = torch.zeros_like(tensor_ranks)
        threshold_tensor[tensor_ranks < threshold_index] = 1
        hard_dict[key] = threshold_tensor.reshape(tensor.shape)
        start_index += num_elements
    model.zero_grad(set_to_none=True)
    return hard_dict, all_elements


def test_random_label_matches_salun_rl(data):
    """SalUn's RL without a mask (its random-label baseline): forget batches with labels over all
    classes, then retain batches."""
    model, forget, retain = data
    official = official_rl(copy.deepcopy(model), forget, retain, official_args(), torch.Generator().manual_seed(SEED))
    assert_matches_and_ours_does_not("random-label", data, official)


def test_salun_mask_matches_generate_mask(data):
    """The saliency mask at threshold 0.5 (the README's mask/with_0.5.pt), on a forget set that fits
    one batch, so that the official sum of batch means weighs every example the same as ours."""
    model, forget, _ = data
    official, scores = official_saliency_mask(copy.deepcopy(model), forget, official_args())
    # no tie at the threshold, so the ranking (unstable argsort vs our stable sort) decides nothing
    sorted_scores = torch.sort(scores).values
    cut = int(len(scores) * 0.5)
    assert sorted_scores[cut - 1] < sorted_scores[cut]
    ours = localize(model, forget, "salun", 0.5, device="cpu")
    for name, _ in model.named_parameters():
        assert torch.equal(ours[name], official[name].bool()), name
    # the mask keeps the largest saliencies: RUM's copy (generate_mask.py:91, no minus sign) keeps the smallest
    smallest = {n: ~m.bool() for n, m in official.items()}
    assert not any(torch.equal(ours[n], smallest[n]) for n in smallest)


def test_salun_matches_salun_rl_under_its_mask(data):
    """SalUn = its mask, then RL under it (frozen entries restored and their momentum zeroed)."""
    model, forget, retain = data
    args = official_args()
    mask, _ = official_saliency_mask(copy.deepcopy(model), forget, args)
    official = official_rl(copy.deepcopy(model), forget, retain, args, torch.Generator().manual_seed(SEED), mask)
    assert_matches_and_ours_does_not("salun", data, official)
    frozen = {n: mask[n] == 0 for n in mask}
    for (name, before), after in zip(model.named_parameters(), official.parameters()):
        assert torch.equal(after[frozen[name]], before[frozen[name]])  # the official code keeps them too


# The official hyperparameters --------------------------------------------------------------------

OFFICIAL_DEFAULTS = {
    # RUM README.md:205 (FT: --unlearn_lr 0.01 --unlearn_epochs 10), arg_parser.py:55-58 (batch 256, 0.9, 5e-4)
    "finetune": dict(epochs=10, lr=0.01, batch_size=256, momentum=0.9, weight_decay=5e-4, schedule="constant"),
    # RUM README.md:217 (GA: --unlearn_lr 0.0001 --unlearn_epochs 5)
    "neggrad": dict(epochs=5, lr=1e-4, batch_size=256, momentum=0.9, weight_decay=5e-4, schedule="constant"),
    # RUM README.md:223 (NG: lr 0.01, 5 epochs), main_rum_proxy.py:51 (--alpha 0.99)
    "neggrad+": dict(epochs=5, lr=0.01, beta=0.99, batch_size=256, momentum=0.9, weight_decay=5e-4,
                     schedule="constant", forget_cycle="per-epoch"),
    # SalUn Classification/arg_parser.py:69-72,116-124 (no README command for random-label)
    "random-label": dict(epochs=10, lr=0.01, batch_size=256, momentum=0.9, weight_decay=5e-4,
                         relabel="every-epoch-all", order="forget-first", schedule="constant"),
    # SalUn Classification/README.md (RL --unlearn_epochs 10 --unlearn_lr 0.013 --mask_path mask/with_0.5.pt)
    "salun": dict(budget=0.5, epochs=10, lr=0.013, batch_size=256, momentum=0.9, weight_decay=5e-4,
                  relabel="every-epoch-all", order="forget-first", schedule="constant"),
    # RUM README.md:211 (FT_prune: lr 0.01, 10 epochs), FT.py:97-102 (per-epoch decay)
    "l1-sparse": dict(epochs=10, lr=0.01, batch_size=256, momentum=0.9, weight_decay=5e-4, l1_decay="epoch",
                      schedule="constant"),
}


@pytest.mark.parametrize("method", sorted(OFFICIAL_DEFAULTS))
def test_defaults_are_the_official_recipe_with_its_source(method):
    defaults = method_defaults(method)
    assert {k: defaults[k] for k in OFFICIAL_DEFAULTS[method]} == OFFICIAL_DEFAULTS[method]
    entry = METHODS.entry(method).metadata
    assert entry["source"].repo in ("kairanzhao/RUM", "OPTML-Group/Unlearn-Saliency") and entry["source"].lines
    assert entry["equivalence"].startswith("tests/test_official_baselines.py::")
    assert entry["equivalence"].split("::")[1] in globals()  # names a test of this file
    assert "ours" in entry["recipes"] and entry["differences"]
