"""Localization strategies: which parameter entries to let an unlearning method change (SPEC §2).

Every strategy turns a model (and usually the forget set) into a :class:`Mask` that selects
exactly ⌊α·P⌋ of the model's P parameter entries. The gradient-based ones cost one forward and
backward pass over the forget set, in eval mode, and never take an optimizer step.

The DEL paper's 2×2 ablation is spelled ``{param,channel}-{grad,weighted-grad}``:

==========  ========================  =================================
name        per-entry score           granularity
==========  ========================  =================================
param-grad             |Σ_i ∇CE_i|      per entry (= SalUn's saliency)
param-weighted-grad    |θ ⊙ Σ_i ∇CE_i|  per entry
channel-grad           |Σ_i ∇CE_i|      top-h mean per output row
channel-weighted-grad  |θ ⊙ Σ_i ∇CE_i|  top-h mean per output row (= ``del``)
==========  ========================  =================================

A row's score follows the official DEL code (reihaneh-torkzadehmahani/DEL-Unlearning@b1f732c,
generate_mask.py:98-127): for CNNs the mean of the row's h = ⌊0.1·C_out⌋ largest entries
(``out-channels``), for transformers the plain mean of the row (``mean``); ``auto`` (the default)
picks ``mean`` for a model with attention layers and ``out-channels`` otherwise. A tensor with a
single output row (a position embedding, a class token) is scored per entry whatever the rule
(SPEC §3: the official rule would score the whole tensor by one number).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import Tensor, nn

from ..data.core import Examples, as_examples
from ..errors import ConfigError, unknown_name
from ..registry import Registry
from ..training import get_device
from .mask import Mask

TOPK_RULES = ("auto", "out-channels", "row", "mean")
AUTO = "auto"
GRANULARITIES = ("param", "channel")
CRITERIA = ("grad", "weighted-grad")


# Pure functions: the papers' formulas ---------------------------------------------------------

def top_h(c_out: int, row_length: int, rule: str = "out-channels", fraction: float = 0.1) -> int:
    """How many of a row's largest entries give the row its score.

    ``out-channels`` (the official DEL code for CNNs, generate_mask.py:111-113): h =
    max(1, ⌊fraction·C_out⌋) (the official ``int(0.1·C_out)`` is 0 below ten rows, which makes the
    score NaN; hence the max); ``row``: h = max(1, ⌊fraction·row_length⌋); ``mean`` (the official
    ViT rule, generate_mask.py:114-115): the whole row. Never more than the row has.

    Example:
        >>> top_h(64, 576), top_h(10, 64), top_h(64, 576, rule="row"), top_h(64, 576, rule="mean")
        (6, 1, 57, 576)
    """
    if rule not in TOPK_RULES or rule == AUTO:
        raise unknown_name("top-h rule", rule, [r for r in TOPK_RULES if r != AUTO])
    if not 0 < fraction <= 1:
        raise ConfigError(f"topk_fraction must be in (0, 1], got {fraction}")
    if rule == "mean":
        return row_length
    base = c_out if rule == "out-channels" else row_length
    return min(row_length, max(1, math.floor(fraction * base + 1e-9)))


def is_transformer(model: nn.Module) -> bool:
    """Whether ``model`` has attention layers (``nn.MultiheadAttention`` or a module whose class
    name ends in ``Attention``): the architectures the official DEL code scores by the row mean.

    Example:
        >>> is_transformer(nn.Linear(2, 2)), is_transformer(nn.TransformerEncoderLayer(8, 2))
        (False, True)
    """
    return any(isinstance(m, nn.MultiheadAttention) or type(m).__name__.endswith("Attention") for m in model.modules())


def resolve_topk_rule(model: nn.Module, rule: str) -> str:
    """``auto`` → ``mean`` for a transformer (the official ViT rule), ``out-channels`` otherwise;
    any other rule is returned as it is (after checking it).

    Raises:
        ConfigError: an unknown rule.
    """
    if rule not in TOPK_RULES:
        raise unknown_name("top-h rule", rule, TOPK_RULES)
    if rule != AUTO:
        return rule
    return "mean" if is_transformer(model) else "out-channels"


def row_scores(score: Tensor, rule: str = "out-channels", fraction: float = 0.1) -> Tensor:
    """Channel granularity: each output row gets the mean of its h largest entries, broadcast over it.

    Tensors with ≤ 1 dimension (biases, norm affines) keep their per-entry scores, as in the
    official code (generate_mask.py:119-120 leave them as |θ⊙G|), and so does a tensor with a
    single output row (a ViT's position embedding [1, tokens, width], its class token): scoring
    it by one number would select all of it or none of it (SPEC §3).

    Example:
        >>> row_scores(torch.tensor([[1.0, 5.0, 3.0], [2.0, 2.0, 0.0]])).tolist()
        [[5.0, 5.0, 5.0], [2.0, 2.0, 2.0]]
        >>> row_scores(torch.tensor([[1.0, 5.0, 3.0], [2.0, 2.0, 0.0]]), "mean").tolist()
        [[3.0, 3.0, 3.0], [1.3333333730697632, 1.3333333730697632, 1.3333333730697632]]
        >>> row_scores(torch.tensor([[[1.0, 5.0, 3.0]]])).tolist()
        [[[1.0, 5.0, 3.0]]]
    """
    if score.dim() <= 1 or score.shape[0] == 1:
        return score
    rows = score.reshape(score.shape[0], -1)
    h = top_h(rows.shape[0], rows.shape[1], rule, fraction)
    per_row = rows.mean(dim=1) if h == rows.shape[1] else rows.topk(h, dim=1).values.mean(dim=1)
    return per_row[:, None].expand_as(rows).reshape(score.shape)


def select_top(scores: Mapping[str, Tensor], budget: float, info: dict | None = None) -> Mask:
    """Select the ⌊α·P⌋ highest-scoring entries over all tensors (ties: earlier entry first).

    Args:
        scores: one score tensor per parameter (any shape); NaN counts as lowest.
        budget: α in [0, 1], the fraction of ALL entries to select.
        info: description stored in the mask.

    Returns:
        A :class:`Mask` with exactly ⌊α·P⌋ entries selected.

    Example:
        >>> m = select_top({"a": torch.tensor([3.0, 1.0]), "b": torch.tensor([2.0, 0.0])}, 0.5)
        >>> m["a"].tolist(), m["b"].tolist()
        ([True, False], [True, False])
    """
    check_budget(budget)
    names = list(scores)
    flat = torch.cat([scores[n].detach().reshape(-1).float().cpu() for n in names]) if names else torch.zeros(0)
    flat = torch.nan_to_num(flat, nan=-math.inf)
    k = budget_count(budget, flat.numel())
    chosen = torch.zeros(flat.numel(), dtype=torch.bool)
    # A stable sort makes the choice among equal scores (whole rows share one) deterministic.
    chosen[torch.sort(flat, descending=True, stable=True).indices[:k]] = True
    entries, start = {}, 0
    for n in names:
        size = scores[n].numel()
        entries[n] = chosen[start : start + size].reshape(scores[n].shape)
        start += size
    return Mask(entries, info)


def budget_count(budget: float, total: int) -> int:
    """⌊α·P⌋ (with a guard against 0.29·100 = 28.999…)."""
    return min(total, math.floor(budget * total + 1e-9))


def check_budget(budget: float) -> None:
    if not isinstance(budget, (int, float)) or not 0 <= budget <= 1:
        raise ConfigError(f"the budget is a fraction of all parameter entries in [0, 1], got {budget!r}")


def accumulate_gradient(
    model: nn.Module, examples: Examples, batch_size: int = 128, device: str | torch.device | None = "auto"
) -> dict[str, Tensor]:
    """G = ∇_θ Σ_i CE(x_i, y_i) over ``examples``, with BatchNorm in eval mode (running statistics).

    Every example weighs the same whatever ``batch_size`` is: each batch contributes the SUM of
    its per-example losses. (Summing per-batch means would let a trailing partial batch of 12
    count as much as a full one of 128.) In eval mode the examples do not interact, so G does
    not depend on how they are batched, up to float rounding.

    One forward and backward pass over ``examples``; ``model`` is left untouched (no ``.grad``,
    no optimizer step, no change of train/eval mode).

    Returns:
        Parameter name → summed gradient (CPU, float32); zeros for parameters the loss does not reach.
    """
    if len(examples) == 0:
        raise ConfigError("cannot localize on an empty set of examples")
    device = get_device(device)
    work = copy.deepcopy(model).to(device).eval()
    for param in work.parameters():
        param.requires_grad_(True)
    names = [n for n, _ in work.named_parameters()]
    params = [p for _, p in work.named_parameters()]
    total = [torch.zeros_like(p) for p in params]
    for x, y in examples.batches(batch_size):
        loss = nn.functional.cross_entropy(work(x.to(device)), y.to(device), reduction="sum")
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        for acc, g in zip(total, grads):
            if g is not None:
                acc.add_(g)
    return {n: g.float().cpu() for n, g in zip(names, total)}


def gradient_scores(
    model: nn.Module,
    gradient: Mapping[str, Tensor],
    criterion: str = "weighted-grad",
    granularity: str = "channel",
    topk_rule: str = AUTO,
    topk_fraction: float = 0.1,
) -> dict[str, Tensor]:
    """Per-entry scores from a summed gradient G: |G| (``grad``) or |θ ⊙ G| (``weighted-grad``).

    The absolute value is taken AFTER summing over examples. With ``granularity="channel"``, rows of
    tensors with ≥ 2 dims are scored by :func:`row_scores`, with ``topk_rule`` resolved for the
    model by :func:`resolve_topk_rule` (``auto``: ``mean`` for a transformer, else ``out-channels``).

    Example:
        >>> lin = nn.Linear(2, 2, bias=False)
        >>> _ = lin.weight.data.copy_(torch.tensor([[1.0, -2.0], [3.0, 0.5]]))
        >>> g = {"weight": torch.tensor([[1.0, 1.0], [-1.0, 4.0]])}
        >>> gradient_scores(lin, g, "weighted-grad", "param")["weight"].tolist()
        [[1.0, 2.0], [3.0, 2.0]]
    """
    if criterion not in CRITERIA:
        raise unknown_name("localization criterion", criterion, CRITERIA)
    if granularity not in GRANULARITIES:
        raise unknown_name("localization granularity", granularity, GRANULARITIES)
    topk_rule = resolve_topk_rule(model, topk_rule)
    scores = {}
    for name, param in model.named_parameters():
        g = gradient[name]
        s = (param.detach().float().cpu() * g).abs() if criterion == "weighted-grad" else g.abs()
        scores[name] = row_scores(s, topk_rule, topk_fraction) if granularity == "channel" else s
    return scores


# Strategies ------------------------------------------------------------------------------------

@dataclass
class LocalizeOptions:
    """Options a strategy may read (each uses only the ones it needs)."""

    batch_size: int = 128
    device: str = "auto"
    seed: int = 0
    topk_rule: str = AUTO
    topk_fraction: float = 0.1
    reference: Mapping[str, Tensor] | None = None
    data: Examples | None = None


StrategyFn = Callable[[nn.Module, Examples, float, LocalizeOptions], Mask]
STRATEGIES: Registry[StrategyFn] = Registry("localization strategy")


def register_strategy(name: str, fn: StrategyFn, default_budget: float = 0.3) -> StrategyFn:
    """Register ``fn(model, forget, budget, options) -> Mask`` as strategy ``name``.

    Raises:
        ConfigError: ``name`` is already registered.
    """
    check_budget(default_budget)
    return STRATEGIES.register(name, fn, default_budget=default_budget)


def available_strategies() -> list[str]:
    return STRATEGIES.names()


def get_strategy(name: str) -> StrategyFn:
    """The strategy function registered as ``name`` (ConfigError listing the known ones if none)."""
    return STRATEGIES.get(name)


def default_budget(name: str) -> float:
    """The budget α a strategy uses when none is given (``del`` 0.3, ``salun`` 0.5, others 0.3)."""
    return STRATEGIES.entry(name).metadata["default_budget"]


class _DefaultBudgets(Mapping[str, float]):
    """Strategy name → default budget, read from the registry."""

    def __getitem__(self, name: str) -> float:
        if name not in STRATEGIES:
            raise KeyError(name)
        return default_budget(name)

    def __iter__(self) -> Iterator[str]:
        return iter(STRATEGIES)

    def __len__(self) -> int:
        return len(STRATEGIES)


DEFAULT_BUDGETS: Mapping[str, float] = _DefaultBudgets()


def localize(
    model: nn.Module,
    forget: Examples | Any,
    strategy: str = "del",
    budget: float | None = None,
    *,
    batch_size: int = 128,
    device: str = "auto",
    seed: int = 0,
    topk_rule: str = AUTO,
    topk_fraction: float = 0.1,
    reference: Mapping[str, Tensor] | None = None,
    data: Examples | Any | None = None,
) -> Mask:
    """Choose which entries of ``model`` an unlearning method may change.

    Args:
        model: the trained model (left untouched).
        forget: the forget set (the gradient strategies make one forward+backward pass over it):
            :class:`Examples`, or a torch ``Dataset`` or ``DataLoader`` of ``(input, label)``
            (see :func:`~memunlearn.data.as_examples`; a large one is streamed).
        strategy: a registered name (see :func:`available_strategies`): ``del``, ``salun``,
            ``magnitude``, ``random-channel``, ``shallowest``, ``deepest``, ``del-agnostic``,
            ``param-grad``, ``param-weighted-grad``, ``channel-grad``, ``channel-weighted-grad``.
        budget: α, the fraction of ALL parameter entries to select; default per strategy
            (``del`` 0.3, ``salun`` 0.5, others 0.3). ``random-channel`` takes its budget from ``reference``.
        batch_size: batch size of the gradient pass.
        device: where to compute; ``auto`` picks CUDA when present.
        seed: seed of the random strategies and of ``del-agnostic``'s sample.
        topk_rule: channel granularity's row score: ``auto`` (default: ``mean`` for a model with
            attention layers, else ``out-channels``, as the official DEL code chooses by
            architecture), ``out-channels`` (mean of the h = max(1, ⌊f·C_out⌋) largest entries,
            the official CNN rule), ``row`` (h = max(1, ⌊f·row length⌋)) or ``mean`` (the plain
            row mean, the official ViT rule). Single-row tensors are scored per entry.
        topk_fraction: f above (default 0.1).
        reference: ``random-channel``: the mask whose per-layer counts to copy (default: the
            ``del`` mask at ``budget``).
        data: ``del-agnostic``: examples to sample from instead of the forget set (usually the
            whole training set); a sample of ``len(forget)`` of them is scored.

    Returns:
        A :class:`Mask` with exactly ⌊α·P⌋ entries selected; ``mask.info`` records the strategy,
        budget, options and the wall time of computing it.

    Raises:
        ConfigError: unknown strategy, a budget outside [0, 1], or a missing ``data``/bad option.
        CheckpointError: a ``reference`` mask that does not fit the model.

    Example:
        >>> mask = localize(model, forget, "del", budget=0.3)  # doctest: +SKIP
        >>> unlearn("del", model, forget, retain, mask=mask)  # doctest: +SKIP
    """
    strategy_fn = get_strategy(strategy)
    budget = default_budget(strategy) if budget is None else budget
    check_budget(budget)
    topk_rule = resolve_topk_rule(model, topk_rule)
    forget = as_examples(forget, name="forget")
    data = None if data is None else as_examples(data, name="data")
    options = LocalizeOptions(batch_size, device, seed, topk_rule, topk_fraction, reference, data)  # type: ignore[arg-type]  # streamed data iterates like Examples
    start = time.perf_counter()
    mask = strategy_fn(model, forget, budget, options)  # type: ignore[arg-type]  # as above
    mask.info = {
        "strategy": strategy, "budget": budget, "selected": mask.selected, "total": mask.total,
        "examples": len(forget), "seed": seed, "topk_rule": topk_rule, "topk_fraction": topk_fraction,
        **mask.info, "wall_time": time.perf_counter() - start,
    }
    return mask


def _gradient_strategy(granularity: str, criterion: str, agnostic: bool = False) -> StrategyFn:
    def strategy(model: nn.Module, forget: Examples, budget: float, options: LocalizeOptions) -> Mask:
        examples = forget
        if agnostic:
            if options.data is None:
                raise ConfigError("del-agnostic scores a sample of the training set: pass data=<training examples>")
            generator = torch.Generator().manual_seed(options.seed)
            size = min(len(forget), len(options.data))
            examples = options.data.subset(torch.randperm(len(options.data), generator=generator)[:size])
        gradient = accumulate_gradient(model, examples, options.batch_size, options.device)
        scores = gradient_scores(model, gradient, criterion, granularity, options.topk_rule, options.topk_fraction)
        return select_top(scores, budget, {"granularity": granularity, "criterion": criterion})

    return strategy


def _magnitude(model: nn.Module, forget: Examples, budget: float, options: LocalizeOptions) -> Mask:
    return select_top({n: p.detach().abs() for n, p in model.named_parameters()}, budget, {"criterion": "|theta|"})


def _random_channel(model: nn.Module, forget: Examples, budget: float, options: LocalizeOptions) -> Mask:
    """Random whole output rows, with the same number of entries per tensor as ``reference``."""
    if options.reference is None:
        reference, source = get_strategy("del")(model, forget, budget, options), "del"
    else:
        source = dict(getattr(options.reference, "info", {}) or {}).get("strategy", "given")
        reference = Mask(options.reference).check_fits(model)
    generator = torch.Generator().manual_seed(options.seed)
    entries = {}
    for name, param in model.named_parameters():
        count = int(reference[name].sum())
        if param.dim() >= 2:
            rows, row_length = param.shape[0], param[0].numel()
            chosen = torch.zeros(rows, row_length, dtype=torch.bool)
            order = torch.randperm(rows, generator=generator)
            full_rows, rest = divmod(count, row_length)
            chosen[order[:full_rows]] = True
            if rest:  # the reference's count need not be a whole number of rows: fill part of one more
                chosen[order[full_rows], :rest] = True
        else:
            chosen = torch.zeros(param.numel(), dtype=torch.bool)
            chosen[torch.randperm(param.numel(), generator=generator)[:count]] = True
        entries[name] = chosen.reshape(param.shape)
    return Mask(entries, {"reference": source})


def _by_depth(deepest: bool) -> StrategyFn:
    def strategy(model: nn.Module, forget: Examples, budget: float, options: LocalizeOptions) -> Mask:
        params = list(model.named_parameters())
        remaining = budget_count(budget, sum(p.numel() for _, p in params))
        entries = {n: torch.zeros(p.shape, dtype=torch.bool) for n, p in params}
        # Whole tensors in definition order from the input (or the output) side; the last one is
        # filled partially, by whole leading rows first, so the count is exactly ⌊α·P⌋.
        for name, param in reversed(params) if deepest else params:
            take = min(remaining, param.numel())
            entries[name].view(-1)[:take] = True
            remaining -= take
            if remaining == 0:
                break
        return Mask(entries, {"order": "output side first" if deepest else "input side first"})

    return strategy


register_strategy("del", _gradient_strategy("channel", "weighted-grad"), default_budget=0.3)
register_strategy("salun", _gradient_strategy("param", "grad"), default_budget=0.5)
register_strategy("magnitude", _magnitude)
register_strategy("random-channel", _random_channel)
register_strategy("shallowest", _by_depth(deepest=False))
register_strategy("deepest", _by_depth(deepest=True))
register_strategy("del-agnostic", _gradient_strategy("channel", "weighted-grad", agnostic=True))
for _granularity in GRANULARITIES:
    for _criterion in CRITERIA:
        register_strategy(f"{_granularity}-{_criterion}", _gradient_strategy(_granularity, _criterion))
