"""Drivers that train or unlearn the models the privacy attacks need, cached per model.

- :func:`ulira`: U-LiRA from the model pool. Each pool member k (trained on its subset S_k) draws
  a forget set F_k ⊂ S_k by the experiment's forget rule, unlearns it with the method
  (retain = S_k \\ F_k), and φ of the unlearned model on every training example is saved.
- :func:`neurips2023_score`: the NeurIPS 2023 challenge score of a method: N unlearned models
  from one original (different seeds) against N models retrained on the retain set.

Every unlearned or retrained model's result is written atomically to its own file as soon as it
is done, keyed by the hash of everything that produced it, so an interrupted run resumes and a
changed setting never reuses a stale file. Runs are sequential, in this process.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoints import artefact_key
from ..data.core import Dataset, Examples, fingerprint_tensors
from ..errors import ConfigError, ForgetSetError
from ..forget import ForgetContext, make_forget_set
from ..io import atomic_path, cache_root
from ..methods import check_hparams, unlearn
from ..training import RECIPE_KEYS, predict_logits
from .attack import DEFAULT_BOOTSTRAP, DEFAULT_FOLDS, MIN_SAMPLES, ULiRAAttack, ulira_from_statistics
from .challenge import ChallengeForgetScore, challenge_final_score, challenge_forget_score
from .confidence import logit_confidence, official_logit_confidence

RESULT_FORMAT = 2  # 2: methods default to their official recipes (issue 18)
NO_UNLEARNING = "none"  # the ceiling: the pool members themselves, nothing unlearned
FORGET_DRAWS = 10
STATISTICS = {"official": official_logit_confidence, "exact": logit_confidence}
# A reproduced pool member whose train logits differ from the stored float16 ones by more than
# this is reported (training on another device or thread count can differ slightly).
REPRODUCTION_TOLERANCE = 0.05


def derived_seed(*parts: int) -> int:
    """A 31-bit seed drawn from a sequence of integers (independent streams per purpose)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0] % (2**31 - 1))


def _save(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _load(path: Path, key: str, index: int, shapes: Mapping[str, tuple[int, ...]]) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """A cached result, or None when it is missing, unreadable or not this setting's model ``index``."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            arrays = {name: data[name] for name in data.files if name != "meta"}
    except (OSError, ValueError, KeyError, EOFError):
        return None
    if meta.get("key") != key or meta.get("index") != index:
        return None
    for name, shape in shapes.items():
        if name not in arrays or (shape and arrays[name].shape != shape):
            return None
    return arrays, meta


def _json_ready(value: Any) -> Any:
    """Strict JSON (RFC 8259): NaN and ±∞ become None, numpy values become Python ones."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return _json_ready(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --------------------------------------------------------------------------------------------
# U-LiRA from the model pool


@dataclass
class ULiRAReport:
    """What :func:`ulira` found and what it cost.

    Attributes:
        attack: the :class:`~memunlearn.privacy.attack.ULiRAAttack` (metrics with 95% intervals,
            per-example vulnerability indexed by training index, every case).
        setting: pool key, forget rule, method, resolved hyperparameters, seed, members, cache folder.
        cost: seconds spent unlearning (sum over members, including reused ones' recorded times),
            seconds spent obtaining member models, examples processed, gradient steps, how many
            members were computed now and how many reused.
        members: one record per member (forget size, seconds, examples, accuracies, reused).
    """

    attack: ULiRAAttack
    setting: dict[str, Any]
    cost: dict[str, Any]
    members: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, cases: bool = False) -> dict[str, Any]:
        """JSON-ready summary (strict JSON); ``cases=True`` adds every scored case."""
        out = {"metrics": self.attack.metrics, "attack_setting": self.attack.setting, "setting": self.setting,
               "cost": self.cost, "members": self.members,
               "per_example": {k: v.tolist() for k, v in self.attack.per_example.items()}}
        if cases:
            out["cases"] = {k: v.tolist() for k, v in self.attack.cases.items()}
        return _json_ready(out)


def member_forget_indices(dataset: Dataset, subset: np.ndarray, rule: str, seed: int,
                          context: ForgetContext | None = None) -> np.ndarray:
    """F_k: the forget rule applied to a pool member's own training subset; training indices.

    The member's subset plays the part of the training set: ``iid:0.1`` is 10% of the subset,
    ``classes:0,6:0.1`` 10% of the subset drawn from those classes. ``indices:FILE`` keeps the
    listed examples that are in the subset. ``mislabeled`` is refused (the pool trained on clean
    labels). A random draw that the forget-set checks refuse (e.g. ``iid:0.5`` of a small subset
    that happens to take every example of a rare class) is redrawn from a seed derived from
    ``seed``, up to ``FORGET_DRAWS`` times: one unlucky member must not stop a run of hundreds.

    Raises:
        ConfigError: a rule that cannot apply to a subset.
        ForgetSetError: as :func:`~memunlearn.forget.make_forget_set` on the subset.
    """
    kind = rule.partition(":")[0]
    if kind == "mislabeled":
        raise ConfigError("U-LiRA cannot use a mislabeled forget set: the pool's members trained on the clean labels")
    if kind == "indices":
        return np.intersect1d(make_forget_set(rule, dataset, seed).indices, subset)
    tag = hashlib.sha256(np.ascontiguousarray(subset, dtype=np.int64).tobytes()).hexdigest()[:12]
    member_data = Dataset(dataset.name, dataset.train.subset(subset), dataset.test, dataset.classes,
                          fingerprint=f"{dataset.fingerprint}-subset-{tag}")
    refused: ForgetSetError | None = None
    for attempt in range(FORGET_DRAWS):
        try:
            draw_seed = seed if attempt == 0 else derived_seed(seed, attempt)
            return subset[make_forget_set(rule, member_data, draw_seed, context).indices]
        except ForgetSetError as exc:
            refused = exc
    assert refused is not None  # FORGET_DRAWS >= 1
    raise refused


def stored_pool_member(pool: Any, index: int, device: str = "auto") -> nn.Module | None:
    """Pool member ``index``'s model from the weights the pool stored (``keep_weights``), or None
    when the pool keeps none for it. Costs one file read, no training."""
    loader = getattr(pool, "member_model", None)
    if loader is None:
        return None
    try:
        return loader(index, device)
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"pool member {index}'s stored weights do not fit the pool's model ({exc}); "
                          "delete its weights file and build the pool again") from None


def pool_member(pool: Any, dataset: Dataset, index: int, device: str = "auto") -> nn.Module:
    """Pool member ``index``'s model: its stored weights when the pool keeps them, else trained
    again exactly as the pool trained it (:func:`reproduce_pool_member`)."""
    model = stored_pool_member(pool, index, device)
    return model if model is not None else reproduce_pool_member(pool, dataset, index, device)


def reproduce_pool_member(pool: Any, dataset: Dataset, index: int, device: str = "auto") -> nn.Module:
    """Train pool member ``index`` again, exactly as the pool trained it (same subset, init, order).

    A pool built without ``keep_weights`` stores logits, not weights (see
    :mod:`memunlearn.memorization.pool`), so this is how :func:`ulira` gets such a member's model.
    It costs one member's training.

    Raises:
        ConfigError: a pool whose ``info`` does not describe its model and recipe.
    """
    from ..memorization.pool import reproduce_member

    try:
        return reproduce_member(pool.info, dataset, index, device)
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"the pool's info does not say how its members were trained ({exc}); "
                          "pass member_model= to ulira()") from None


def _has_weights(pool: Any, index: int) -> bool:
    check = getattr(pool, "has_weights", None)
    return bool(check(index)) if check is not None else False


def _template_model(pool: Any) -> nn.Module | None:
    """An untrained model of the pool's architecture (retrain needs only that), if the pool says which."""
    from ..models import build_model

    info = pool.info
    if not all(k in info for k in ("model", "width", "dataset")):
        return None
    data = info["dataset"]
    return build_model(info["model"], data["in_channels"], data["num_classes"], width=info["width"],
                       image_size=data["image_size"], seed=0)


def resolve_hparams(method: str, hparams: Mapping[str, Any] | None, recipe: Mapping[str, Any] | None) -> dict[str, Any]:
    """The method's hyperparameters as run: for ``retrain``, the pool's recipe unless overridden.

    Raises:
        ConfigError: unknown method or hyperparameter, or ``seed``/``device`` among them (the
            drivers seed every model themselves).
    """
    hparams = dict(hparams or {})
    taken = sorted({"seed", "device"} & set(hparams))
    if taken:
        raise ConfigError(f"{taken} are set by the driver for each model; pass seed=/device= to it instead")
    if method == NO_UNLEARNING:
        if hparams:
            raise ConfigError(f"method {NO_UNLEARNING!r} (no unlearning) takes no hyperparameters, got {sorted(hparams)}")
        return {}
    if method == "retrain" and recipe:
        hparams = {**{k: recipe[k] for k in RECIPE_KEYS if k in recipe}, **hparams}
    return check_hparams(method, hparams)


def ulira(
    pool: Any,
    dataset: Dataset,
    forget_rule: str,
    method: str,
    hparams: Mapping[str, Any] | None = None,
    *,
    member_model: Callable[[int], nn.Module] | None = None,
    members: Sequence[int] | None = None,
    targets: Sequence[int] | None = None,
    shadows: Sequence[int] | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    min_samples: int = MIN_SAMPLES,
    n_bootstrap: int = DEFAULT_BOOTSTRAP,
    bootstrap: str = "examples",
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    on_member: Callable[[dict[str, Any]], None] | None = None,
) -> ULiRAReport:
    """U-LiRA of ``method`` under ``forget_rule``, with the pool's members as shadow and target models.

    For each member k: F_k = the forget rule on k's own subset (:func:`member_forget_indices`),
    U_k = ``method`` applied to member k's model with forget F_k and retain S_k \\ F_k, and φ(U_k, x)
    for every training example x. Then IN(x) = {φ(U_k, x): x ∈ F_k}, OUT(x) = {φ(U_k, x): x ∉ S_k},
    and :func:`~memunlearn.privacy.attack.ulira_from_statistics` fits and scores them.

    ``method="retrain"`` is the floor: U_k is a fresh model trained on S_k \\ F_k with the pool's
    recipe (override with ``hparams``); it needs no member model. ``method="none"`` is the
    ceiling: U_k is member k itself, φ read from the pool's stored logits, at no cost.

    Args:
        pool: a :class:`~memunlearn.memorization.pool.ModelPool` (uses ``masks``, ``info["key"]``,
            and for the defaults ``info``'s model and recipe, ``train_logits`` for ``none``).
        dataset: the data the pool was built on.
        forget_rule: e.g. ``iid:0.1`` (of each member's subset) or ``classes:3,8:0.05``.
        method: a registered unlearning method, ``retrain`` (floor) or ``none`` (ceiling).
        hparams: the method's hyperparameters (``retrain`` defaults to the pool's recipe).
        member_model: ``k -> trained model of member k``; default :func:`pool_member` (the
            weights the pool stored with ``keep_weights``, else the member trained again).
        members: pool members to use (default all).
        targets, shadows: explicit split, as positions in ``members``; default k-fold cross-fitting.
        folds: cross-fitting folds.
        seed: seeds every F_k draw, every unlearning run, the split and the bootstrap.
        min_samples: see :func:`~memunlearn.privacy.attack.fit_gaussians`.
        n_bootstrap: resamples for the 95% intervals.
        bootstrap: ``examples`` or ``models``.
        cache_dir: cache root (default ``$MEMUNLEARN_CACHE``); results go under ``privacy/ulira/<key>``.
        device: where models run.
        on_member: called with each member's record as it finishes (progress).

    Returns:
        A :class:`ULiRAReport`.

    Raises:
        ConfigError: unknown method or hyperparameter, a pool without a key, a forget rule that
            cannot apply to a subset.
        DivergedError: a shadow's unlearning run diverged (the members finished before it stay cached).
        ValueError: too few members or samples to fit and score the attack.

    Example:
        >>> pool = load_pool("~/.cache/memunlearn/pools/digits-...", data)  # doctest: +SKIP
        >>> floor = ulira(pool, data, "iid:0.1", "retrain")  # doctest: +SKIP
        >>> report = ulira(pool, data, "iid:0.1", "finetune", {"epochs": 5})  # doctest: +SKIP
        >>> report.attack.metrics["auc"], floor.attack.metrics["auc"]  # doctest: +SKIP
    """
    pool_key = pool.info.get("key")
    if not pool_key:
        raise ConfigError("the pool has no key (pool.info['key']); U-LiRA keys its cached results by it")
    masks = np.asarray(pool.masks, dtype=bool)
    n = len(dataset.train)
    if masks.shape[1] != n:
        raise ConfigError(f"the pool's masks cover {masks.shape[1]} examples but the dataset has {n}")
    chosen = list(range(len(masks))) if members is None else [int(k) for k in members]
    if len(chosen) < 2 or min(chosen) < 0 or max(chosen) >= len(masks) or len(set(chosen)) != len(chosen):
        raise ConfigError(f"members must be at least 2 distinct pool members in [0, {len(masks) - 1}]")
    resolved = resolve_hparams(method, hparams, pool.info.get("train"))
    key = artefact_key(kind="ulira-member", format=RESULT_FORMAT, pool=pool_key, data=dataset.fingerprint,
                       rule=forget_rule, method=method, hparams=resolved, seed=seed, statistic="exact")
    directory = cache_root(cache_dir) / "privacy" / "ulira" / key
    labels = dataset.train.y.numpy()
    template = _template_model(pool) if method == "retrain" else None
    get_model = member_model or (lambda k: pool_member(pool, dataset, k, device))

    phi = np.empty((len(chosen), n))
    forgot = np.zeros((len(chosen), n), dtype=bool)
    records = []
    for row, k in enumerate(chosen):
        path = directory / f"member-{k:05d}.npz"
        cached = _load(path, key, k, {"phi": (n,), "forget_indices": ()})
        if cached is None:
            arrays, meta = _ulira_member(pool, dataset, k, forget_rule, method, resolved, seed, labels,
                                         get_model, member_model is None, template, device)
            meta.update(key=key, index=k)
            _save(path, arrays, meta)
            meta["reused"] = False
        else:
            arrays, meta = cached
            meta["reused"] = True
        phi[row] = arrays["phi"].astype(np.float64)
        forgot[row, arrays["forget_indices"]] = True
        record = {k2: v for k2, v in meta.items() if k2 != "key"}
        records.append(record)
        if on_member is not None:
            on_member(record)

    unseen = ~masks[chosen]
    attack = ulira_from_statistics(phi, forgot, unseen, targets=targets, shadows=shadows, folds=folds,
                                   min_samples=min_samples, n_bootstrap=n_bootstrap, bootstrap=bootstrap, seed=seed)
    cost = {
        "unlearn_seconds": float(sum(r["seconds"] for r in records)),
        "member_model_seconds": float(sum(r.get("member_seconds", 0.0) for r in records if not r["reused"])),
        "examples": int(sum(r["examples"] for r in records)),
        "steps": int(sum(r["steps"] for r in records)),
        "computed": sum(not r["reused"] for r in records), "reused": sum(r["reused"] for r in records),
    }
    setting = {"pool": pool_key, "pool_directory": str(getattr(pool, "directory", "")), "forget_rule": forget_rule,
               "method": method, "hparams": resolved, "seed": seed, "members": chosen, "cache": str(directory),
               "statistic": "logit confidence log p_y − log Σ_{c≠y} p_c (exact)"}
    return ULiRAReport(attack, setting, cost, records)


def _ulira_member(pool: Any, dataset: Dataset, k: int, rule: str, method: str, hparams: dict[str, Any], seed: int,
                  labels: np.ndarray, get_model: Callable[[int], nn.Module], reproduced: bool,
                  template: nn.Module | None, device: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    subset = np.flatnonzero(pool.masks[k])
    model_cache: dict[str, Any] = {}

    def member() -> nn.Module:
        if "model" not in model_cache:
            start = time.perf_counter()
            model_cache["model"] = get_model(k)
            model_cache["seconds"] = time.perf_counter() - start
        return model_cache["model"]

    context = ForgetContext(original=lambda: (member(), None), device=device)
    forget_indices = member_forget_indices(dataset, subset, rule, derived_seed(seed, k, 1), context)
    retain_indices = np.setdiff1d(subset, forget_indices)
    meta: dict[str, Any] = {"forget_size": int(len(forget_indices)), "retain_size": int(len(retain_indices)),
                            "seconds": 0.0, "examples": 0, "steps": 0}
    if method == NO_UNLEARNING:
        logits = np.asarray(pool.train_logits[k], dtype=np.float32)
    else:
        model = template if template is not None else member()
        result = unlearn(method, model, dataset.train.subset(forget_indices), dataset.train.subset(retain_indices),
                         seed=derived_seed(seed, k, 2), device=device, **hparams)
        logits = predict_logits(result.model, dataset.train, device).numpy()
        meta.update(seconds=result.cost.wall_time, examples=int(result.cost.examples), steps=int(result.cost.steps),
                    test_accuracy=float((predict_logits(result.model, dataset.test, device).argmax(1) == dataset.test.y)
                                        .float().mean()))
    if "model" in model_cache:
        meta["member_seconds"] = model_cache["seconds"]
        meta["member_source"] = ("stored weights" if reproduced and _has_weights(pool, k) else
                                 "retrained" if reproduced else "member_model")
        if reproduced:
            stored = np.asarray(pool.train_logits[k], dtype=np.float32)
            original = predict_logits(model_cache["model"], dataset.train, device).numpy()
            meta["reproduction_max_logit_error"] = float(np.abs(original - stored).max())
            if meta["reproduction_max_logit_error"] > REPRODUCTION_TOLERANCE * max(1.0, float(np.abs(stored).max())):
                warnings.warn(f"pool member {k} ({meta['member_source']}) differs from the pool's stored logits by "
                              f"{meta['reproduction_max_logit_error']:.3g}; U-LiRA then attacks a slightly different member",
                              stacklevel=3)
    correct = logits.argmax(1) == labels
    meta.update(forget_accuracy=float(correct[forget_indices].mean()) if len(forget_indices) else None,
                retain_accuracy=float(correct[retain_indices].mean()) if len(retain_indices) else None)
    phi = logit_confidence(logits, labels).astype(np.float32)
    return {"phi": phi, "forget_indices": forget_indices.astype(np.int64)}, meta


# --------------------------------------------------------------------------------------------
# The NeurIPS 2023 challenge score


@dataclass
class NeurIPS2023Report:
    """The challenge score of one method and what went into it.

    Attributes:
        score: the final score F · (retain acc ratio) · (test acc ratio).
        forget: the :class:`~memunlearn.privacy.challenge.ChallengeForgetScore` (F, per-example ε and H).
        forget_indices: training indices of the forget examples, when given (aligned with ε).
        accuracy: mean retain / test / forget accuracy of the unlearned and of the retrained models.
        cost: seconds per unlearning and per retraining (means), their ratio, computed/reused counts.
        setting: method, hyperparameters, N, seed, statistic, cache folders.
    """

    score: float
    forget: ChallengeForgetScore
    forget_indices: np.ndarray | None
    accuracy: dict[str, float]
    cost: dict[str, Any]
    setting: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (strict JSON)."""
        return _json_ready({
            "score": self.score, "forget_score": self.forget.score, "n_models": self.forget.n_models,
            "max_epsilon": self.forget.max_epsilon, "accuracy": self.accuracy, "cost": self.cost,
            "setting": self.setting, "epsilons": self.forget.epsilons, "points": self.forget.points,
            "forget_indices": self.forget_indices,
        })


def model_fingerprint(model: nn.Module) -> str:
    """A content hash of a model's state (parameters and buffers)."""
    state = model.state_dict()
    return fingerprint_tensors(*[state[k].detach().float() for k in sorted(state)])


def _measure(made: tuple[nn.Module, float, dict[str, Any]], forget: Examples, retain: Examples, test: Examples,
             statistic: Callable, device: str) -> tuple[np.ndarray, dict[str, Any]]:
    """φ of a model on the forget set, and its accuracies, from ``(model, seconds, cost record)``."""
    model, seconds, extra = made

    def accuracy(logits: torch.Tensor, examples: Examples) -> float:
        return float((logits.argmax(1) == examples.y).float().mean())

    forget_logits = predict_logits(model, forget, device)
    record = {"seconds": seconds, **extra, "forget_accuracy": accuracy(forget_logits, forget),
              "retain_accuracy": accuracy(predict_logits(model, retain, device), retain),
              "test_accuracy": accuracy(predict_logits(model, test, device), test)}
    return statistic(forget_logits.numpy(), forget.y.numpy()), record


def neurips2023_score(
    original: nn.Module,
    forget: Examples,
    retain: Examples,
    test: Examples,
    method: str,
    hparams: Mapping[str, Any] | None = None,
    n_models: int = 512,
    *,
    retrained: Callable[[int], nn.Module] | Sequence[nn.Module] | None = None,
    retrained_tag: str | None = None,
    retrain_hparams: Mapping[str, Any] | None = None,
    forget_indices: Any = None,
    statistic: str = "official",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    device: str = "auto",
    on_model: Callable[[str, dict[str, Any]], None] | None = None,
) -> NeurIPS2023Report:
    """The NeurIPS 2023 unlearning challenge score of ``method`` (see :mod:`memunlearn.privacy.challenge`).

    Runs ``method`` N times from ``original`` (seeds drawn from ``seed``), and obtains N models
    retrained on ``retain``: by default :func:`~memunlearn.methods.unlearn` with ``retrain`` and
    ``retrain_hparams`` (give the original model's recipe: epochs, lr, batch size, ...), or
    ``retrained(i)`` / ``retrained[i]``. φ of every model on the forget set, and its retain,
    test and forget accuracies, are cached per model; the retrained ones under a key without the
    method, so every method scored against the same original and split shares them.

    Args:
        original: the trained model every unlearning run starts from.
        forget, retain, test: the examples (forget order = the order of the reported ε).
        method: a registered unlearning method.
        hparams: its hyperparameters.
        n_models: N per side (512 in the challenge; at least 2, and F is 0 by construction for N = 2).
        retrained: your own retrained models, as ``i -> model`` or a sequence of N models.
        retrained_tag: a name for ``retrained`` under which its results are cached (a callable is
            otherwise never cached: its code cannot be hashed); a sequence is keyed by content.
        retrain_hparams: hyperparameters of the default retraining.
        forget_indices: training indices of ``forget``, stored with the per-example ε.
        statistic: ``official`` (the challenge's φ, default) or ``exact`` (:func:`logit_confidence`).
        seed: base seed (model i of the unlearned side uses a seed drawn from (seed, i, 0), of the
            retrained side from (seed, i, 1)).
        cache_dir: cache root; results go under ``privacy/neurips2023/<key>``.
        device: where models run.
        on_model: called with ``("unlearned" | "retrained", record)`` as each model finishes.

    Returns:
        A :class:`NeurIPS2023Report`.

    Raises:
        ConfigError: unknown method, hyperparameter or statistic; N < 2; a sequence of retrained
            models of the wrong length.
        ValueError: see :func:`~memunlearn.privacy.challenge.challenge_forget_score`.

    Example:
        >>> report = neurips2023_score(model, forget, retain, test, "finetune", {"epochs": 1}, n_models=32,
        ...                            retrain_hparams={"epochs": 20})  # doctest: +SKIP
        >>> report.score, report.forget.score  # doctest: +SKIP
    """
    if statistic not in STATISTICS:
        raise ConfigError(f"unknown statistic {statistic!r}; use one of {sorted(STATISTICS)}")
    if method == NO_UNLEARNING:
        raise ConfigError(f"method {NO_UNLEARNING!r} is U-LiRA's ceiling; the challenge score needs an unlearning method")
    if n_models < 2:
        raise ConfigError(f"the challenge score needs at least 2 models per side, got n_models={n_models}")
    if retrained is not None and not callable(retrained) and len(retrained) != n_models:
        raise ConfigError(f"retrained holds {len(retrained)} models but n_models is {n_models}")
    resolved = resolve_hparams(method, hparams, None)
    resolved_retrain = resolve_hparams("retrain", retrain_hparams, None)
    data_key = {"original": model_fingerprint(original), "forget": fingerprint_tensors(forget.x, forget.y),
                "retain": fingerprint_tensors(retain.x, retain.y), "test": fingerprint_tensors(test.x, test.y)}
    root = cache_root(cache_dir) / "privacy" / "neurips2023"
    unlearned_key = artefact_key(kind="neurips2023-unlearned", format=RESULT_FORMAT, **data_key, method=method,
                                 hparams=resolved, seed=seed, statistic=statistic)
    if retrained is None:
        source: Any = {"retrain": resolved_retrain, "seed": seed}
    elif callable(retrained):
        source = {"tag": retrained_tag}
    else:
        source = {"models": [model_fingerprint(m) for m in retrained]}
    retrained_key = artefact_key(kind="neurips2023-retrained", format=RESULT_FORMAT, **data_key, source=source,
                                 statistic=statistic)
    cache_retrained = not (callable(retrained) and retrained_tag is None)
    measure = STATISTICS[statistic]

    def run_unlearning(i: int) -> tuple[nn.Module, float, dict]:
        result = unlearn(method, original, forget, retain, seed=derived_seed(seed, i, 0), device=device, **resolved)
        return result.model, result.cost.wall_time, {"examples": int(result.cost.examples), "steps": int(result.cost.steps)}

    def run_retraining(i: int) -> tuple[nn.Module, float, dict]:
        start = time.perf_counter()
        if retrained is None:
            result = unlearn("retrain", original, forget, retain, seed=derived_seed(seed, i, 1), device=device,
                             **resolved_retrain)
            return result.model, result.cost.wall_time, {"examples": int(result.cost.examples), "steps": int(result.cost.steps)}
        model = retrained(i) if callable(retrained) else retrained[i]
        return model, time.perf_counter() - start, {}

    sides: dict[str, tuple[np.ndarray, list[dict[str, Any]]]] = {}
    for side, key, make, cache in (("unlearned", unlearned_key, run_unlearning, True),
                                   ("retrained", retrained_key, run_retraining, cache_retrained)):
        phis, records = [], []
        for i in range(n_models):
            path = root / key / f"{side}-{i:05d}.npz"
            found = _load(path, key, i, {"phi": (len(forget),)}) if cache else None
            if found is not None:
                phi, record = found[0]["phi"].astype(np.float64), {**found[1], "reused": True}
            else:
                phi, record = _measure(make(i), forget, retain, test, measure, device)
                if cache:
                    _save(path, {"phi": phi}, {**record, "key": key, "index": i})
                record["reused"] = False
            record.pop("key", None)
            phis.append(phi)
            records.append(record)
            if on_model is not None:
                on_model(side, record)
        sides[side] = (np.stack(phis), records)

    forget_score = challenge_forget_score(sides["unlearned"][0], sides["retrained"][0])
    accuracy = {f"{side}_{part}": float(np.mean([r[f"{part}_accuracy"] for r in sides[side][1]]))
                for side in sides for part in ("retain", "test", "forget")}
    score = challenge_final_score(forget_score.score, accuracy["unlearned_retain"], accuracy["retrained_retain"],
                                  accuracy["unlearned_test"], accuracy["retrained_test"])
    unlearn_seconds = float(np.mean([r["seconds"] for r in sides["unlearned"][1]]))
    retrain_seconds = float(np.mean([r["seconds"] for r in sides["retrained"][1]]))
    cost = {"unlearn_seconds_mean": unlearn_seconds, "retrain_seconds_mean": retrain_seconds,
            "unlearn_fraction_of_retrain": unlearn_seconds / retrain_seconds if retrain_seconds > 0 else None,
            **{f"{side}_{state}": sum(r["reused"] == (state == "reused") for r in sides[side][1])
               for side in sides for state in ("computed", "reused")}}
    setting = {"method": method, "hparams": resolved, "n_models": n_models, "seed": seed, "statistic": statistic,
               "retrained": source, "cache": {"unlearned": str(root / unlearned_key),
                                              "retrained": str(root / retrained_key) if cache_retrained else None}}
    indices = None if forget_indices is None else np.asarray(forget_indices, dtype=np.int64)
    if indices is not None and len(indices) != len(forget):
        raise ConfigError(f"forget_indices has {len(indices)} entries but the forget set {len(forget)}")
    return NeurIPS2023Report(score, forget_score, indices, accuracy, cost, setting)


__all__ = [
    "NeurIPS2023Report", "ULiRAReport", "member_forget_indices", "model_fingerprint", "neurips2023_score",
    "pool_member", "reproduce_pool_member", "stored_pool_member", "resolve_hparams", "ulira",
]
