"""Deletion requests over time: K successive forget sets, each unlearned from the model the
previous request produced (``memunlearn run --requests K``, or ``[requests] count = K`` in a spec).

Request k's forget set F_k is drawn by the experiment's forget rule from what is still retained,
D \\ (F_1 ∪ … ∪ F_{k−1}); request 1 is the experiment's own forget set. Request k's method starts
from the model request k−1 produced (request 1 from the original) and gets the retain set
D \\ (F_1 ∪ … ∪ F_k). After each request the model is scored as a cell is (accuracies, gaps, ToW,
ToW-MIA) against an oracle retrained with the oracle's recipe on D \\ (F_1 ∪ … ∪ F_k): one cached
oracle per seed and request, keyed by every index forgotten so far and shared by every method (the
first is the experiment's own oracle). Costs are added up over the requests and also given as a
fraction of the k-th oracle's retrain.

Forget sets belong to (seed, rule) and are drawn before any unlearning. Request k ≥ 2 draws with
seed :func:`request_seed`; a fraction in the rule (``iid:0.02``) is a fraction of what is still
retained. Ranked rules (``memorization``, ``entanglement``) rank with the ORIGINAL model: a
deletion request comes from users, not from the state of the model being unlearned. Rules that
make one set, not a sequence (``full-class``, ``indices``, ``mislabeled``, ``backdoor``), are
refused with two or more requests (:func:`check_request_rules`), and a sequence that runs out of
examples (``classes:3,5:0.2`` three times) is a :class:`~memunlearn.errors.ConfigError` before
anything is unlearned.

RUM entries (``rum:…``, ``rum-f:…``) refine each request's forget set by the run's score. A score
that comes from a model alone (``grad-norm``, ``el2n``, ``loss-curvature``,
``holdout-retraining``) is recomputed for request k ≥ 2 from the model request k−1 produced, on F_k
only. Scores read off the original's training (``confidence``, ...), exact scores (a model pool
trained on D) and score files are the original's; each request's record says which, and why.

Each (seed, rule, method, hyperparameters) sequence is a chain of cached results: request k's
result is keyed by everything that produced it, the previous request's key included, and written
atomically to the experiment's :class:`~memunlearn.experiment.cells.CellStore` the moment it
finishes, after its model (a checkpoint in the cache, deleted once the next request of the chain
has finished). A killed run resumes at the first unfinished request.

Example:
    >>> from memunlearn.experiment import spec_from_dict, run_experiment
    >>> spec = spec_from_dict({"forget": {"rule": "iid:0.02"}, "requests": {"count": 5},
    ...                        "methods": {"run": ["finetune"]}})
    >>> results = run_experiment(spec, "runs/requests")  # doctest: +SKIP
    >>> results["groups"][0]["requests"]["methods"]["finetune"]["summary"][4]["tow"]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from torch import nn

from .. import __version__
from ..checkpoints import artefact_key, load_into, read_checkpoint, save_checkpoint
from ..data import Dataset
from ..errors import CheckpointError, ConfigError, DamagedArtefactWarning, DivergedError, ForgetSetError
from ..evaluation import compare_to_oracle, mean_interval
from ..forget import ForgetContext, ForgetSet, check_retain_usable, make_forget_set
from ..io import strict_json
from ..methods import method_defaults, unlearn
from ..rum import RunPartitions, parse_entry, retain_indices_per_step, run_entry
from ..training import accuracy
from .cells import Cell, CellStore, _partitions
from .request_rules import SINGLE_SET_KINDS, check_request_rules  # noqa: F401  (their home)
from .setup import Setting, Split, evaluate_split, train_cached
from .spec import ExperimentSpec, MethodCell
from .summary import summarise_entries

# Bump when what a request computes changes, so old request results are not reused.
REQUESTS_FORMAT = 2  # 2: methods default to their official recipes (issue 18)

COST_SUMS = ("wall_time", "steps", "examples")


def request_seed(seed: int, request: int) -> int:
    """The seed of request ``request`` (its forget set's draw and its unlearning run).

    Request 1 uses the experiment's seed (it is the experiment's own forget set); later requests
    a seed derived from (seed, request), distinct for every pair.

    Example:
        >>> request_seed(3, 1), request_seed(3, 2) == request_seed(3, 2), request_seed(3, 2) != request_seed(4, 2)
        (3, True, True)
    """
    if request == 1:
        return seed
    return int(np.random.SeedSequence([seed, request]).generate_state(1)[0])


def draw_requests(
    rule: str,
    dataset: Dataset,
    seed: int,
    count: int,
    context: ForgetContext | None = None,
    first: ForgetSet | None = None,
) -> list[ForgetSet]:
    """``count`` disjoint forget sets: request k drawn by ``rule`` from what requests 1..k−1 left.

    Args:
        rule: the experiment's forget rule (``iid:0.02``, ``classes:3,5:0.05``,
            ``memorization:high:grad-norm:0.02``, ...).
        dataset: the training data the indices refer to.
        seed: the experiment's seed; request k draws with :func:`request_seed`.
        count: K, the number of requests.
        context: the original model, for rules that rank examples with it.
        first: request 1's forget set if already drawn (the experiment's own), else drawn here.

    Returns:
        K :class:`ForgetSet` objects with indices into ``dataset.train``; request k's ``info``
        records ``request`` and ``drawn_from`` (how many examples were still retained).

    Raises:
        ConfigError: a rule that cannot make a sequence, or request k that cannot be drawn from
            what is still retained (naming k and the remainder's size).

    Example:
        >>> sets = draw_requests("iid:0.1", data, seed=0, count=3)  # doctest: +SKIP
        >>> [len(s) for s in sets]  # 10% of 300, then of 270, then of 243  # doctest: +SKIP
        [30, 27, 24]
    """
    sets, error = draw_sequence(rule, dataset, seed, count, context, first)
    if error is not None:
        raise error
    return sets


def draw_sequence(
    rule: str,
    dataset: Dataset,
    seed: int,
    count: int,
    context: ForgetContext | None = None,
    first: ForgetSet | None = None,
) -> tuple[list[ForgetSet], ConfigError | None]:
    """:func:`draw_requests` as far as it goes: (the requests drawn, the error that stopped the
    sequence or None). A rule that makes one set, not a sequence, is still raised at once."""
    check_request_rules([rule], count)
    context = context or ForgetContext()
    n = len(dataset.train)
    sets = [first if first is not None else make_forget_set(rule, dataset, seed, context)]
    scores_memo: dict[str, np.ndarray] = {}
    for k in range(2, count + 1):
        forgotten = np.concatenate([s.indices for s in sets])
        remaining = np.setdiff1d(np.arange(n), forgotten)
        try:
            drawn = _draw_from(rule, dataset, remaining, seed, k, context, scores_memo)
            union = ForgetSet(np.sort(np.concatenate([forgotten, drawn.indices])), rule, seed)
            check_retain_usable(union, dataset, allow_emptied_classes=False)
        except (ConfigError, ForgetSetError) as exc:
            return sets, ConfigError(f"request {k} of the forget rule {rule!r} (seed {seed}) cannot be drawn from "
                                     f"the {len(remaining)} examples still retained: {exc}")
        sets.append(drawn)
    return sets, None


def _draw_from(rule: str, dataset: Dataset, remaining: np.ndarray, seed: int, k: int, context: ForgetContext,
               scores_memo: dict[str, np.ndarray]) -> ForgetSet:
    """Request k's forget set: ``rule`` applied to the examples ``remaining``, mapped back to D."""
    kind, _, argument = rule.partition(":")
    seed_k = request_seed(seed, k)
    if kind == "memorization":
        local, name, info = _memorization_within(argument, dataset, remaining, seed, context, scores_memo)
    else:
        tag = f"{dataset.fingerprint}:remaining:{artefact_key(indices=remaining.tolist())}"
        remainder = Dataset(dataset.name, dataset.train.subset(remaining), dataset.test, list(dataset.classes),
                            fingerprint=hashlib.sha256(tag.encode()).hexdigest()[:16])
        drawn = make_forget_set(rule, remainder, seed_k, context)
        local, name, info = drawn.indices, drawn.rule, dict(drawn.info)
    indices = np.sort(remaining[np.asarray(local, dtype=np.int64)])
    return ForgetSet(indices, name, seed_k, info={**info, "request": k, "drawn_from": int(len(remaining))})


def _memorization_within(argument: str, dataset: Dataset, remaining: np.ndarray, seed: int,
                         context: ForgetContext, scores_memo: dict[str, np.ndarray]):
    """``memorization:LEVEL[:SOURCE[:FRACTION]]`` among ``remaining``, scored on all of D by the
    original (the scores request 1 ranked by), so exact scores and score files keep their meaning."""
    from ..memorization import EXACT, load_score_file, memorization_scores, select_by_memorization
    from ..memorization.forget_kinds import parse_memorization_rule

    level, source, fraction = parse_memorization_rule(argument)
    rule = f"memorization:{level}:{source}:{fraction}"
    if source not in scores_memo:
        if source.endswith(".npy"):
            scores_memo[source] = load_score_file(source, len(dataset.train))
        else:
            model, dynamics = context.original_model(rule)
            scores_memo[source] = memorization_scores(source, dataset, model, dynamics, device=context.device,
                                                      cache_dir=context.cache_dir, seed=seed)
    scores = scores_memo[source][remaining]
    size = max(3 if level == "mix" else 1, int(round(fraction * len(remaining))))
    local, parts = select_by_memorization(scores, level, size, exact=source == EXACT, return_parts=True)
    info: dict[str, Any] = {"level": level, "source": source, "fraction": fraction,
                            "score_mean": {name: float(np.mean(scores[part])) for name, part in parts.items()}}
    if level == "mix":
        info["partitions"] = {name: remaining[part].tolist() for name, part in parts.items()}
    return local, rule, info


# ------------------------------------------------------------------------------------------------
# One (seed, rule): the forget sets and the oracles every method's sequence shares


@dataclass
class RequestOracle:
    """The k-th oracle: retrained on D \\ (F_1 ∪ … ∪ F_k), scored on request k's split."""

    metrics: dict[str, float]
    wall_time: float
    examples: int  # examples its training processed (epochs × retain size)
    forgotten_key: str  # artefact_key(indices=every index forgotten so far): the oracle's cache key part
    forgotten_accuracy: float  # its accuracy on F_1 ∪ … ∪ F_k
    reused: bool


@dataclass
class RequestPlan:
    """The forget sets of one (seed, rule), their retain sets and their oracles."""

    split: Split
    forget_sets: list[ForgetSet]
    retains: list[np.ndarray]  # D \ (F_1 ∪ … ∪ F_k), k = 1..K
    oracles: list[RequestOracle]
    count: int  # K asked for; fewer forget sets when request len(forget_sets) + 1 could not be drawn
    error: str | None = None  # why the sequence stops early (a rule that ranks with the original)
    original_scores: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.split.dataset.train)

    def remaining_before(self, k: int) -> np.ndarray:
        """D \\ (F_1 ∪ … ∪ F_{k−1}): what request k draws from and its pipelines' training set."""
        return np.arange(self.n) if k == 1 else self.retains[k - 2]

    def forgotten(self, k: int) -> np.ndarray:
        """F_1 ∪ … ∪ F_k, sorted."""
        return np.setdiff1d(np.arange(self.n), self.retains[k - 1])

    def describe(self, stem: str) -> list[dict[str, Any]]:
        rows = []
        for k, (forget_set, retain, oracle) in enumerate(zip(self.forget_sets, self.retains, self.oracles), start=1):
            rows.append({
                "request": k, "seed": forget_set.seed, "forget_size": len(forget_set), "retain_size": int(len(retain)),
                "forgotten_total": self.n - int(len(retain)), "forget_set": forget_set.to_dict(),
                "indices_file": f"{stem}_request{k}.txt",
                "oracle": {"metrics": oracle.metrics, "wall_time": oracle.wall_time, "examples": oracle.examples,
                           "forgotten_key": oracle.forgotten_key, "acc_forgotten_so_far": oracle.forgotten_accuracy,
                           "reused": oracle.reused},
            })
        if self.error is not None:
            rows.append({"request": len(rows) + 1, "error": self.error})
        return rows


def prepare_requests(spec: ExperimentSpec, setting: Setting, split: Split, log: Callable[[str], None]) -> RequestPlan:
    """Draw the split's K forget sets and train (or reuse) the K oracles, before any unlearning.

    A request that cannot be drawn here (the sequences of rules that need no model were drawn
    before anything trained, by :meth:`RequestsRun.check_draws`) ends the sequence: it is
    recorded in the plan and in every method's records as an ``error``, and the run goes on.

    The k-th oracle is :func:`~memunlearn.experiment.setup.train_cached` with the oracle's role,
    recipe and seed on D \\ (F_1 ∪ … ∪ F_k), keyed by every index forgotten so far: the first is
    the experiment's own oracle (same key), and every method's sequence shares them.
    """
    count = spec.requests.count or 1
    context = ForgetContext(lambda: (split.original, split.dynamics), str(setting.device), spec.cache_dir)
    forget_sets, error = draw_sequence(split.rule, split.dataset, split.seed, count, context, first=split.forget_set)
    if error is not None:
        log(f"seed {split.seed}: {error}; recorded, the sequence stops after request {len(forget_sets)}")
    n = len(split.dataset.train)
    retains = retain_indices_per_step(n, [s.indices for s in forget_sets])
    train, test = split.dataset.train, split.dataset.test
    oracles = []
    for k, (forget_set, retain_idx) in enumerate(zip(forget_sets, retains), start=1):
        forgotten = np.setdiff1d(np.arange(n), retain_idx)
        forgotten_key = artefact_key(indices=forgotten.tolist())
        retain = train.subset(retain_idx)
        model, _, wall, reused = train_cached(setting, retain, split.dataset.fingerprint, split.seed, "oracle",
                                              {"forget": forgotten_key})
        log(f"seed {split.seed}: oracle of request {k}/{count} ({len(forgotten)} examples forgotten so far) "
            f"{'reused' if reused else f'retrained in {wall:.1f}s'}")
        metrics = evaluate_split(model, forget_set, train.subset(forget_set.indices), retain, test, setting.device,
                                 split.seed)
        oracles.append(RequestOracle(metrics, wall, setting.train_config.epochs * len(retain_idx), forgotten_key,
                                     accuracy(model, train.subset(forgotten), setting.device), reused))
    return RequestPlan(split, forget_sets, retains, oracles, count, None if error is None else str(error))


# ------------------------------------------------------------------------------------------------
# One method's sequence of requests


def request_keys(plan: RequestPlan, cell: MethodCell, setting: Setting, spec: ExperimentSpec) -> list[str]:
    """The cache key of each request of ``cell``'s sequence; request k's includes request k−1's."""
    pipeline = parse_entry(cell.entry)
    rum_score = spec.rum_score if pipeline and pipeline[0] in ("rum", "rum-f") else None
    keys: list[str] = []
    previous = None
    for k, forget_set in enumerate(plan.forget_sets, start=1):
        previous = artefact_key(
            kind="request", format=REQUESTS_FORMAT, version=__version__, setting=setting.key(),
            data=plan.split.dataset.fingerprint, seed=plan.split.seed, entry=cell.entry, hparams=cell.hparams,
            rum_score=rum_score, refreshed=rum_score is not None and _refreshable(rum_score),
            device=setting.device.type, request=k, forget=artefact_key(indices=forget_set.indices.tolist()),
            previous=previous,
        )
        keys.append(previous)
    return keys


def _refreshable(source: str) -> bool:
    """Whether a score source is computed from a model alone (so from the current model)."""
    from ..memorization import available_proxies
    from ..memorization.proxies import get_proxy

    return source in available_proxies() and get_proxy(source).needs == "model"


def _why_original_scores(source: str) -> str:
    from ..memorization import EXACT

    if source == EXACT:
        return "exact scores come from a model pool trained on the training set, not from the current model"
    if source.endswith(".npy"):
        return "a score file is fixed"
    return f"{source} reads the training dynamics recorded while the original trained; an unlearned model has none"


class RequestSequence:
    """The K requests of one (seed, rule, method, hyperparameters), each cached as it finishes."""

    def __init__(self, plan: RequestPlan, cell: MethodCell, setting: Setting, spec: ExperimentSpec,
                 store: CellStore, log: Callable[[str], None]):
        self.plan, self.cell, self.setting, self.spec, self.store, self.log = plan, cell, setting, spec, store, log
        self.keys = request_keys(plan, cell, setting, spec)
        self.records: list[dict[str, Any]] = []
        self.model: nn.Module | None = None  # the model after request self.model_index
        self.model_index = 0
        self.computed = self.reused = 0

    def run(self) -> list[dict[str, Any]]:
        """Every request's record, reusing finished ones; a request that diverged, or could not be
        drawn (``error``), ends the sequence and the requests after it are recorded as ``skipped``."""
        count = self.plan.count
        for k in range(1, len(self.keys) + 1):
            key = self.keys[k - 1]
            record = self.store.load(key)
            reused = record is not None
            if record is None:
                with self.store.lock(key):
                    record = self.store.load(key)  # another run may have finished it while we waited
                    reused = record is not None
                    if record is None:
                        record = self._compute_and_keep(k)
            self.reused += reused
            if len(self.records) < k:
                self.records.append(record)
            self._log(k, record)
            if record["status"] != "ok":
                break
        else:
            if self.plan.error is not None:
                self.records.append({"request": len(self.keys) + 1, "status": "error", "error": self.plan.error})
        stopped = self.records[-1]
        if stopped["status"] != "ok":
            self.records += [{"request": j, "status": "skipped", "reason": f"request {stopped['request']} "
                              f"{stopped['status']}"} for j in range(stopped["request"] + 1, count + 1)]
        return self.records

    def _log(self, k: int, record: dict[str, Any]) -> None:
        what = record["status"] if record["status"] != "ok" else f"{record['cost']['wall_time']:.1f}s"
        self.log(f"request {k}/{self.plan.count} of {self.cell.label}, seed {self.plan.split.seed}, "
                 f"{self.plan.split.rule}: {what}")

    def _model_path(self, k: int) -> Path:
        return self.setting.cache / f"request-{self.keys[k - 1]}.safetensors"

    def _model_after(self, k: int) -> nn.Module:
        """The model request k produced: in memory, its checkpoint, or computed again."""
        if k == 0:
            return self.plan.split.original
        if self.model is not None and self.model_index == k:
            return self.model
        path = self._model_path(k)
        try:
            state, _, _ = read_checkpoint(path, require_checksum=True)
            return load_into(self.setting.build(), state, source=f"cached checkpoint {path}").eval()
        except CheckpointError as exc:
            if path.exists():
                warnings.warn(f"{exc}; computing request {k} again", DamagedArtefactWarning, stacklevel=2)
        with self.store.lock(self.keys[k - 1]):
            record = self._compute_and_keep(k)
        if record["status"] != "ok":
            raise DivergedError(f"{self.cell.label}, request {k} (computed again: its model was not kept)",
                                reason=record.get("error", record["status"]))
        self.records[k - 1] = record
        assert self.model is not None  # _compute_and_keep keeps the model it computed
        return self.model

    def _compute_and_keep(self, k: int) -> dict[str, Any]:
        """Compute request k; save its model, then its record; drop request k−1's model file."""
        previous = self._model_after(k - 1)
        record, model = compute_request(self.plan, self.cell, k, previous, self.records[: k - 1], self.keys,
                                        self.setting, self.spec)
        if model is not None:
            save_checkpoint(self._model_path(k), model, metadata={"key": self.keys[k - 1], "request": k})
            self.model, self.model_index = model, k
        self.store.save(Cell(self.plan.split.seed, self.plan.split.rule, self.cell.entry,
                             f"{self.cell.label} request {k}", self.cell.hparams, self.keys[k - 1]), record)
        if k > 1 and model is not None:
            self._model_path(k - 1).unlink(missing_ok=True)
        self.computed += 1
        return record


def compute_request(plan: RequestPlan, cell: MethodCell, k: int, previous_model: nn.Module,
                    previous_records: list[dict[str, Any]], keys: list[str], setting: Setting,
                    spec: ExperimentSpec) -> tuple[dict[str, Any], nn.Module | None]:
    """Unlearn request k's forget set from ``previous_model`` and score it against the k-th oracle.

    Returns:
        (the request's record, the unlearned model; None when it diverged).
    """
    split = plan.split
    forget_set, retain_idx, oracle = plan.forget_sets[k - 1], plan.retains[k - 1], plan.oracles[k - 1]
    train, device = split.dataset.train, str(setting.device)
    forget, retain = train.subset(forget_set.indices), train.subset(retain_idx)
    seed_k = request_seed(split.seed, k)
    record: dict[str, Any] = {
        "request": k, "seed": seed_k, "forget_size": len(forget_set), "retain_size": int(len(retain_idx)),
        "forgotten_total": plan.n - int(len(retain_idx)), "key": keys[k - 1],
        "previous_key": keys[k - 2] if k > 1 else None,
    }
    pipeline = parse_entry(cell.entry)
    extra: dict[str, Any] = {}
    try:
        if pipeline is not None:
            result, extra = _pipeline_request(plan, cell, k, previous_model, setting, spec, seed_k)
            hparams = dict(result.hparams)
        else:
            hparams = {**cell.hparams}
            if cell.entry == "retrain":  # retrain = the oracle's recipe unless set
                hparams = {**setting.train_config.retrain_hparams(), **hparams}
            result = unlearn(cell.entry, previous_model, forget, retain, seed=seed_k, device=device, **hparams)
            hparams = {**method_defaults(cell.entry), **result.hparams}
        metrics = evaluate_split(result.model, forget_set, forget, retain, split.test, setting.device, split.seed)
    except DivergedError as exc:
        return strict_json({**record, "status": "diverged", "error": str(exc), "hparams": cell.hparams}), None
    cost = result.cost.to_dict()
    before = previous_records[-1]["cumulative_cost"] if k > 1 else {name: 0 for name in COST_SUMS}
    cumulative: dict[str, Any] = {name: before[name] + cost[name] for name in COST_SUMS}
    cumulative["time_fraction"] = cumulative["wall_time"] / oracle.wall_time
    cumulative["examples_fraction"] = cumulative["examples"] / oracle.examples
    cumulative["params_changed"], cumulative["params_changed_fraction"] = _params_changed(split.original, result.model)
    forgotten_accuracy = accuracy(result.model, train.subset(plan.forgotten(k)), setting.device)
    record.update({
        "status": "ok", "metrics": metrics, "vs_oracle": compare_to_oracle(metrics, oracle.metrics),
        "forgotten_so_far": {"size": record["forgotten_total"], "acc": forgotten_accuracy,
                             "oracle_acc": oracle.forgotten_accuracy,
                             "gap": abs(forgotten_accuracy - oracle.forgotten_accuracy)},
        "cost": cost, "time_fraction": cost["wall_time"] / oracle.wall_time,
        "examples_fraction": cost["examples"] / oracle.examples, "cumulative_cost": cumulative,
        "hparams": {**hparams, "seed": seed_k},
    })
    record.update(extra)
    record.update(result.details)
    return strict_json(record), result.model


def _pipeline_request(plan: RequestPlan, cell: MethodCell, k: int, previous_model: nn.Module, setting: Setting,
                      spec: ExperimentSpec, seed_k: int):
    """A RUM entry on request k: its steps train on D \\ (F_1 ∪ … ∪ F_{k−1}) minus the partitions
    processed so far; F_k is refined by the run's score (refreshed where it comes from a model)."""
    split = plan.split
    remaining = plan.remaining_before(k)
    forget_set = plan.forget_sets[k - 1]
    score_record: dict[str, Any] = {}
    if k == 1:  # the experiment's own forget set: the partitions its cells use
        partitions = _partitions(split, setting, spec.rum_score)
        score_record.update(scores_from="the original model", refreshed=False)
    else:
        def local(indices) -> np.ndarray:
            return np.searchsorted(remaining, np.asarray(indices, dtype=np.int64))

        info = dict(forget_set.info)
        if info.get("partitions") is not None:
            info["partitions"] = {name: local(part).tolist() for name, part in info["partitions"].items()}
        local_set = ForgetSet(local(forget_set.indices), forget_set.rule, forget_set.seed, info=info)

        def scores_for(source: str) -> np.ndarray:
            if _refreshable(source):
                from ..memorization import compute_proxy

                tag = f"{split.dataset.fingerprint}:request:{artefact_key(indices=forget_set.indices.tolist())}"
                forget_only = Dataset(split.dataset.name, split.dataset.train.subset(forget_set.indices),
                                      split.dataset.test, list(split.dataset.classes),
                                      fingerprint=hashlib.sha256(tag.encode()).hexdigest()[:16])
                proxy = compute_proxy(source, forget_only, previous_model, None, str(setting.device), split.seed)
                scores = np.full(len(remaining), np.nan)
                scores[local(forget_set.indices)] = proxy.scores
                score_record.update(scores_from=f"the model after request {k - 1}", refreshed=True,
                                    seconds=proxy.seconds)
                return scores
            score_record.update(scores_from="the original model", refreshed=False, reason=_why_original_scores(source))
            return _original_scores(plan, setting, source)[remaining]

        partitions = RunPartitions(local_set, spec.rum_score, scores_for)
    train = split.dataset.train if k == 1 else split.dataset.train.subset(remaining)
    result = run_entry(cell.entry, previous_model, train, partitions,
                       hparams=cell.hparams, seed=seed_k, device=str(setting.device))
    extra: dict[str, Any] = {"steps": result.step_records}
    if (parse_entry(cell.entry) or ("",))[0] in ("rum", "rum-f") and partitions.description is not None:
        extra["rum"] = partitions.description
        if partitions.description.get("source") != "forget set parts":
            extra["rum_score"] = {"source": spec.rum_score, **score_record}
    return result, extra


def _original_scores(plan: RequestPlan, setting: Setting, source: str) -> np.ndarray:
    """The original model's scores on all of D (memoised per split)."""
    if source not in plan.original_scores:
        from ..memorization import memorization_scores

        split = plan.split
        plan.original_scores[source] = memorization_scores(
            source, split.dataset, split.original, split.dynamics, device=str(setting.device),
            cache_dir=str(setting.cache.parent), seed=split.seed)
    return plan.original_scores[source]


def _params_changed(before: nn.Module, after: nn.Module) -> tuple[int, float]:
    """Parameter entries that differ between ``before`` and ``after`` (count, fraction)."""
    after_params = dict(after.named_parameters())
    changed = total = 0
    for name, p in before.named_parameters():
        changed += int((p.detach().cpu() != after_params[name].detach().cpu()).sum())
        total += p.numel()
    return changed, changed / max(total, 1)


# ------------------------------------------------------------------------------------------------
# Summaries and the experiment-level driver


def summarise_requests(sequences: Sequence[Sequence[dict[str, Any]]], count: int) -> list[dict[str, Any]]:
    """Per request index, the mean and 95% interval over seeds of every metric (as a cell's
    summary), the per-request and cumulative cost, and the gap on everything forgotten so far;
    seeds whose request k did not finish (diverged, skipped) are left out of k's entry."""
    summary = []
    for k in range(1, count + 1):
        ok = [s[k - 1] for s in sequences if len(s) >= k and s[k - 1]["status"] == "ok"]
        entry: dict[str, Any] = {"request": k, **summarise_entries(ok), "seeds_ok": len(ok), "seeds": len(sequences)}
        for name in (*COST_SUMS, "time_fraction", "examples_fraction"):
            entry[f"cumulative_{name}"] = mean_interval(r["cumulative_cost"][name] for r in ok)
        entry["gap_forgotten_so_far"] = mean_interval(r["forgotten_so_far"]["gap"] for r in ok)
        summary.append(entry)
    return summary


class RequestsRun:
    """What :func:`~memunlearn.experiment.run_experiment` calls when a spec asks for requests.

    Args:
        spec, setting, store, log: the experiment's.
        stem: ``(rule, seed) → file stem`` of the experiment's forget-index files; request k's
            indices go to ``<stem>_request<k>.txt`` (and ``.json``).
    """

    def __init__(self, spec: ExperimentSpec, setting: Setting, store: CellStore, log: Callable[[str], None],
                 stem: Callable[[str, int], str]):
        self.spec, self.setting, self.store, self.log, self.stem = spec, setting, store, log, stem
        self.count = spec.requests.count or 1
        self.plans: dict[tuple[str, int], RequestPlan] = {}
        self.records: dict[tuple[str, int], dict[str, list[dict[str, Any]]]] = {}
        self.counts: dict[str, dict[str, int]] = {}  # per rule: requests computed and reused
        self.check_draws()

    def check_draws(self) -> None:
        """Draw every sequence whose rule needs no model now, before anything trains, so one that
        runs out of examples stops the run at once; rules that rank with the original model are
        drawn when their split is prepared (still before that split's unlearning)."""
        if self.count < 2:
            return

        def no_model() -> tuple[Any, Any]:
            raise _NeedsModel

        for rule in self.spec.forget:
            for seed in self.spec.seeds:
                try:
                    draw_requests(rule, self.setting.dataset, seed, self.count, ForgetContext(no_model))
                except _NeedsModel:
                    break

    def prepare(self, split: Split) -> None:
        self.plans[(split.rule, split.seed)] = prepare_requests(self.spec, self.setting, split, self.log)

    def run(self, split: Split, cells: Sequence[MethodCell]) -> None:
        """Every method's sequence on ``split`` (prepared first)."""
        plan = self.plans[(split.rule, split.seed)]
        per_label = self.records.setdefault((split.rule, split.seed), {})
        for cell in cells:
            sequence = RequestSequence(plan, cell, self.setting, self.spec, self.store, self.log)
            per_label[cell.label] = sequence.run()
            counts = self.counts.setdefault(split.rule, {"computed": 0, "reused": 0})
            counts["computed"] += sequence.computed
            counts["reused"] += sequence.reused

    def group(self, rule: str, labels: Sequence[str]) -> dict[str, Any]:
        """The ``requests`` entry of ``rule``'s group in results.json."""
        seeds = [seed for seed in self.spec.seeds if (rule, seed) in self.plans]
        plans = [self.plans[(rule, seed)] for seed in seeds]
        methods = {}
        for label in labels:
            per_seed = {str(seed): self.records[(rule, seed)][label] for seed in seeds}
            methods[label] = {"per_seed": per_seed, "summary": summarise_requests(list(per_seed.values()), self.count)}
        oracle_summary = [{"request": k, **summarise_entries({"metrics": p.oracles[k - 1].metrics}
                                                              for p in plans if len(p.oracles) >= k)}
                          for k in range(1, self.count + 1)]
        notes = ["request 1 is the experiment's forget set; request k draws by the forget rule from what requests "
                 "1..k-1 left (a fraction is of what is still retained) and starts from request k-1's model",
                 "vs_oracle compares with an oracle retrained on everything not forgotten so far"]
        if self.spec.evaluation.metrics:
            notes.append(f"[evaluation] metrics ({', '.join(self.spec.evaluation.metrics)}) are computed for the "
                         "experiment's cells only, not per request")
        return {
            "count": self.count,
            "per_seed": {str(seed): {"requests": plan.describe(self.stem(rule, seed))}
                         for seed, plan in zip(seeds, plans)},
            "oracle": {"summary": oracle_summary},
            "methods": methods,
            "cells": self.counts.get(rule, {"computed": 0, "reused": 0}),
            "notes": notes,
        }

    def save_indices(self, out_dir: str | Path) -> None:
        """Each request's forget indices (and rule) beside results.json."""
        for (rule, seed), plan in self.plans.items():
            for k, forget_set in enumerate(plan.forget_sets, start=1):
                forget_set.save(out_dir, stem=f"{self.stem(rule, seed)}_request{k}")


class _NeedsModel(Exception):
    """Raised by the pre-check's context: this rule can only be drawn once the original exists."""


def drift_lines(results: dict[str, Any]) -> list[str]:
    """One line per forget rule and method: ToW, ToW-MIA and the cumulative cost, request by request.

    Example:
        >>> first = {"tow": {"mean": 0.95}, "tow_mia": {"mean": 0.9}, "cumulative_examples_fraction": {"mean": 0.2}}
        >>> second = {"tow": {"mean": 0.93}, "tow_mia": {"mean": 0.88}, "cumulative_examples_fraction": {"mean": 0.41}}
        >>> group = {"forget": "iid:0.02", "requests": {"methods": {"finetune": {"summary": [first, second]}}}}
        >>> for line in drift_lines({"groups": [group]}):
        ...     print(line)
        iid:0.02, finetune: ToW 0.950 > 0.930; ToW-MIA 0.900 > 0.880; cumulative examples / k-th oracle 0.20 > 0.41
    """
    def show(entries: list[dict[str, Any]], name: str, digits: int) -> str:
        values = [(e.get(name) or {}).get("mean") for e in entries]
        return " > ".join("-" if v is None else f"{v:.{digits}f}" for v in values)

    lines = []
    for group in results.get("groups", []):
        for label, method in group.get("requests", {}).get("methods", {}).items():
            summary = method["summary"]
            lines.append(f"{group['forget']}, {label}: ToW {show(summary, 'tow', 3)}; ToW-MIA "
                         f"{show(summary, 'tow_mia', 3)}; cumulative examples / k-th oracle "
                         f"{show(summary, 'cumulative_examples_fraction', 2)}")
    return lines


__all__ = [
    "REQUESTS_FORMAT", "RequestOracle", "RequestPlan", "RequestSequence", "RequestsRun", "check_request_rules",
    "compute_request", "draw_requests", "draw_sequence", "drift_lines", "prepare_requests", "request_keys",
    "request_seed", "summarise_requests",
]
