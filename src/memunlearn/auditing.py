"""The oracle-free audit (SPEC §6): does the forget set still look like training data?

A user who deletes data never has the oracle (a model retrained without the forget set D_f):
retraining is what unlearning avoids. What they have is the unlearned model, D_f and held-out
data H of the same distribution that the model never trained on (a validation split, or the test
set). An exact unlearner's model has never seen D_f, so on D_f it behaves as on H. The audit
therefore asks whether D_f is distinguishable from H through the model, and answers:

- ``pass``: no test tells D_f from H at level α (Bonferroni over the tests);
- ``fail``: one does; ``direction`` says whether D_f still looks like training data
  (``memorized``: higher accuracy, lower loss, more "member" under the attack) or has been pushed
  past unseen data (``over-forgotten``: lower accuracy or higher loss than H, which an observer can
  detect as well, the "Streisand effect");
- ``other-distribution``: D_f is not distributed like H (a class H lacks, inputs a classifier
  tells apart from H's, e.g. a backdoor trigger, or labels that disagree with the inputs'
  neighbours, e.g. mislabeled examples), so "looks like H" is not what an exact unlearner's
  model would show, and no pass/fail verdict is given.

Every comparison is stratified by class, so a class-concentrated forget set is compared with H's
examples of the same classes, weighted by D_f's class mix:

- accuracy: the Cochran–Mantel–Haenszel test over per-class 2×2 tables (D_f/H × correct/wrong);
  the gap is acc(D_f) − Σ_c w_c acc_c(H), w_c = D_f's share of class c;
- loss: a stratified Mann–Whitney test (per-class U statistics summed, tie-corrected normal
  approximation); its effect is the stratified AUC P(loss_f < loss_h) (0.5 = indistinguishable);
  an unstratified two-sample Kolmogorov–Smirnov test is reported beside it;
- membership attack (pluggable, :data:`AUDIT_ATTACKS`): ``population`` trains a logistic
  regression on per-example features (φ = log p_y − log Σ_{c≠y} p_c, loss, entropy) to tell
  retain examples (members) from H (non-members), cross-fitted over folds of H so every H example
  is scored by a model that never saw it; D_f is scored by the same fold models. The stratified
  Mann–Whitney test compares D_f's scores with H's; the examples of D_f scoring above H's
  (1 − flag_rate) quantile are flagged as still looking like members, ranked by score (about
  flag_rate·|D_f| are expected by chance; a binomial p-value says whether there are more).

Power: the smallest accuracy gap the test detects (two-sided α, 80% power) is reported; above
``max_detectable_gap`` a warning says the forget set is too small to conclude "pass" with
confidence; a forget set so small that even a 50-point gap is undetectable is an error.

Example:
    >>> report = audit(model, forget, holdout, retain=retain)  # doctest: +SKIP
    >>> report.verdict, report.finding  # doctest: +SKIP
    ('fail', 'the forget set still looks memorized: ...')
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError
from .registry import Registry

AUDIT_FORMAT = 1
VERDICTS = ("pass", "fail", "other-distribution")
DEFAULT_ALPHA = 0.05
# The model-free distribution checks must not call an iid forget set "other": a strict level and
# a minimum effect.
DISTRIBUTION_ALPHA = 1e-3
MIN_INPUT_AUC = 0.65
MIN_LABEL_GAP = 0.15
MAX_UTILITY_DROP = 0.05  # held-out accuracy points below the original's that a passing model may lose
MIN_FORGET = 10
MIN_HOLDOUT = 10
MAX_OVERLAP_FRACTION = 0.01  # exact duplicates beyond this share of H: the wrong held-out data
POWER = 0.8


# ------------------------------------------------------------------------------------------------
# Two-sample tests, stratified by class (pure numpy/scipy)


def stratified_rank_test(forget_values: Any, forget_labels: Any, holdout_values: Any, holdout_labels: Any,
                         alternative: str = "two-sided") -> dict[str, Any]:
    """Stratified Mann–Whitney test: is ``forget_values`` stochastically larger than ``holdout_values``
    within classes?

    Per class c (with examples on both sides) U_c = #{(i, j): f_i > h_j} + ½ #{ties}; the test
    statistic is Σ U_c against its null mean Σ n_c m_c / 2 and tie-corrected variance
    Σ n_c m_c/12 · (N_c + 1 − Σ t(t²−1)/(N_c(N_c−1))). ``auc`` = Σ U_c / Σ n_c m_c.

    Returns:
        ``auc``, ``z``, ``p`` (for ``alternative``: ``two-sided`` or ``greater``), ``classes`` used
        and ``pairs``; ``p`` is None when no class has examples on both sides.

    Example:
        >>> r = stratified_rank_test([3.0, 4.0], [0, 0], [1.0, 2.0], [0, 0])
        >>> r["auc"]
        1.0
    """
    from scipy.stats import norm, rankdata

    f, fl = np.asarray(forget_values, dtype=np.float64), np.asarray(forget_labels)
    h, hl = np.asarray(holdout_values, dtype=np.float64), np.asarray(holdout_labels)
    u_sum = mean_sum = var_sum = pairs = 0.0
    classes = []
    for c in np.unique(fl):
        fc, hc = f[fl == c], h[hl == c]
        n, m = len(fc), len(hc)
        if n == 0 or m == 0:
            continue
        both = np.concatenate([fc, hc])
        ranks = rankdata(both)
        u = ranks[:n].sum() - n * (n + 1) / 2
        total = n + m
        _, ties = np.unique(both, return_counts=True)
        tie_term = (ties ** 3 - ties).sum() / (total * (total - 1)) if total > 1 else 0.0
        u_sum += u
        mean_sum += n * m / 2
        var_sum += n * m / 12 * (total + 1 - tie_term)
        pairs += n * m
        classes.append(int(c))
    if pairs == 0:
        return {"auc": None, "z": None, "p": None, "classes": classes, "pairs": 0}
    z = (u_sum - mean_sum) / math.sqrt(var_sum) if var_sum > 0 else 0.0
    p = float(2 * norm.sf(abs(z))) if alternative == "two-sided" else float(norm.sf(z))
    return {"auc": float(u_sum / pairs), "z": float(z), "p": min(p, 1.0), "classes": classes, "pairs": int(pairs)}


def stratified_proportion_test(forget_hits: Any, forget_labels: Any, holdout_hits: Any, holdout_labels: Any,
                               alternative: str = "two-sided") -> dict[str, Any]:
    """Cochran–Mantel–Haenszel test over per-class 2×2 tables: is the hit rate (accuracy) on the
    forget set different from held-out data's of the same classes?

    Returns:
        ``forget`` (its rate), ``holdout`` (Σ_c w_c rate_c(H), w_c = the forget set's class
        shares over the classes H has), ``gap`` (forget − holdout), ``z``, ``p`` (None when no
        class can be compared or every table is constant) and ``classes``.

    Example:
        >>> r = stratified_proportion_test([1, 1, 1, 1], [0, 0, 1, 1], [1, 0, 1, 0], [0, 0, 1, 1])
        >>> r["forget"], r["holdout"], r["gap"]
        (1.0, 0.5, 0.5)
    """
    from scipy.stats import norm

    f, fl = np.asarray(forget_hits, dtype=np.float64), np.asarray(forget_labels)
    h, hl = np.asarray(holdout_hits, dtype=np.float64), np.asarray(holdout_labels)
    observed = expected = variance = 0.0
    weighted_holdout = forget_count = 0.0
    forget_hits_used = 0.0
    classes = []
    for c in np.unique(fl):
        fc, hc = f[fl == c], h[hl == c]
        n, m = len(fc), len(hc)
        if n == 0 or m == 0:
            continue
        total, hits = n + m, fc.sum() + hc.sum()
        observed += fc.sum()
        expected += n * hits / total
        if total > 1:
            variance += n * m * hits * (total - hits) / (total ** 2 * (total - 1))
        weighted_holdout += n * hc.mean()
        forget_count += n
        forget_hits_used += fc.sum()
        classes.append(int(c))
    if forget_count == 0:
        return {"forget": None, "holdout": None, "gap": None, "z": None, "p": None, "classes": classes}
    forget_rate, holdout_rate = forget_hits_used / forget_count, weighted_holdout / forget_count
    if variance > 0:
        z = (observed - expected) / math.sqrt(variance)
        p = float(2 * norm.sf(abs(z))) if alternative == "two-sided" else float(norm.sf(z))
        p, z = min(p, 1.0), float(z)
    else:
        z, p = None, None
    return {"forget": float(forget_rate), "holdout": float(holdout_rate), "gap": float(forget_rate - holdout_rate),
            "z": z, "p": p, "classes": classes}


def mcnemar_drop(original_correct: Any, model_correct: Any) -> dict[str, Any]:
    """Did the model lose accuracy against the original on the same examples? McNemar's exact test,
    one-sided (the model right less often): b = original right and model wrong, c = the reverse,
    p = P(Binomial(b + c, ½) ≥ b).

    Example:
        >>> r = mcnemar_drop([1, 1, 1, 1, 0], [0, 0, 0, 1, 0])
        >>> round(r["drop"], 3), round(r["p"], 3)
        (0.6, 0.125)
    """
    from scipy.stats import binom

    before, after = np.asarray(original_correct, dtype=bool), np.asarray(model_correct, dtype=bool)
    b, c = int((before & ~after).sum()), int((~before & after).sum())
    p = float(binom.sf(b - 1, b + c, 0.5)) if b + c else 1.0
    return {"original_accuracy": float(before.mean()), "accuracy": float(after.mean()),
            "drop": float(before.mean() - after.mean()), "p": p}


def min_detectable_gap(holdout_rate: float, forget_size: int, holdout_size: float, alpha: float = DEFAULT_ALPHA,
                       power: float = POWER) -> float:
    """The smallest accuracy gap a two-sided level-``alpha`` test detects with probability ``power``
    (normal approximation): (z_{1−α/2} + z_power) · √(p(1−p)(1/n_f + 1/n_h)), p clipped to [0.05, 0.95].

    Example:
        >>> round(min_detectable_gap(0.9, 100, 1000), 3)
        0.088
    """
    from scipy.stats import norm

    p = min(max(holdout_rate, 0.05), 0.95)
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return float(z * math.sqrt(p * (1 - p) * (1 / forget_size + 1 / holdout_size)))


# ------------------------------------------------------------------------------------------------
# Per-example statistics of a model


@dataclass
class ExampleStats:
    """Per-example numbers of one model on one set: labels, correctness, loss, φ and entropy."""

    labels: np.ndarray
    correct: np.ndarray
    loss: np.ndarray
    phi: np.ndarray
    entropy: np.ndarray

    def features(self) -> np.ndarray:
        """The population attack's features, one row per example."""
        return np.column_stack([np.clip(self.phi, -50, 50), np.clip(self.loss, 0, 50), self.entropy])


def example_stats(model: Any, examples: Any, device: Any = "auto") -> ExampleStats:
    """:class:`ExampleStats` of ``model`` on ``examples`` (eval mode, no gradients)."""
    import torch

    from .privacy.confidence import logit_confidence
    from .training import predict_logits

    with torch.no_grad():
        logits = predict_logits(model, examples, device).double()
    labels = examples.y.cpu()
    log_p = torch.log_softmax(logits, 1)
    loss = -log_p.gather(1, labels[:, None].long()).squeeze(1)
    entropy = -(log_p.exp() * log_p).sum(1)
    return ExampleStats(labels.numpy().astype(np.int64), (logits.argmax(1) == labels).numpy(), loss.numpy(),
                        logit_confidence(logits.numpy(), labels.numpy()), entropy.numpy())


# ------------------------------------------------------------------------------------------------
# Membership attacks that need no oracle (pluggable)


@dataclass
class AttackContext:
    """What an audit attack may use. ``forget``/``holdout``/``retain`` are the examples;
    ``*_stats`` the target model's per-example statistics on them; ``pool`` whatever the caller
    passed as ``pool=`` (a model pool for reference-model attacks), else None."""

    model: Any
    forget: Any
    holdout: Any
    retain: Any | None
    forget_stats: ExampleStats
    holdout_stats: ExampleStats
    retain_stats: ExampleStats | None
    seed: int
    device: Any
    pool: Any = None
    forget_indices: np.ndarray | None = None


@dataclass
class AttackScores:
    """Per-example membership scores (higher = more like a training member). ``holdout`` scores
    must come from an attack that was not fitted on those very examples, so that they show what
    unseen data scores (the audit's null)."""

    forget: np.ndarray
    holdout: np.ndarray
    details: dict[str, Any] = field(default_factory=dict)


AttackFn = Callable[[AttackContext], AttackScores]
AUDIT_ATTACKS: Registry[AttackFn] = Registry("audit attack")


def register_audit_attack(name: str, fn: AttackFn | None = None, *, needs: str = "") -> Any:
    """Register ``fn(context: AttackContext) -> AttackScores`` as the audit attack ``name``.

    A pool-based attack (RMIA, LiRA offline against reference models that never trained on D_f
    or H) registers here and reads its pool from ``context.pool``; ``audit(..., attack=name,
    pool=...)`` then uses it, and ``attack="auto"`` prefers it whenever a pool is given.
    """
    return AUDIT_ATTACKS.register(name, fn, needs=needs) if fn is not None else \
        (lambda f: AUDIT_ATTACKS.register(name, f, needs=needs))


@register_audit_attack("population", needs="the retain set (members) besides the held-out data")
def population_attack(context: AttackContext, folds: int = 5) -> AttackScores:
    """Logistic regression on (φ, loss, entropy): retain (members) vs held-out (non-members),
    cross-fitted over ``folds`` folds of H; each D_f example is scored by one fold's model
    (round robin), as each H example is, so both sides' scores have the same spread under the null."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if context.retain_stats is None:
        raise ConfigError("the population attack needs the retain set (training members) to learn what a member "
                          "looks like: pass retain=...")
    rng = np.random.default_rng(context.seed)
    holdout_x = context.holdout_stats.features()
    retain_x = context.retain_stats.features()
    members = retain_x[rng.permutation(len(retain_x))[:len(holdout_x)]]
    forget_x = context.forget_stats.features()
    holdout_scores = np.zeros(len(holdout_x))
    forget_scores = np.zeros(len(forget_x))
    folds = max(2, min(folds, len(holdout_x), len(members)))
    splitter = KFold(folds, shuffle=True, random_state=context.seed)
    member_folds = [test for _, test in KFold(folds, shuffle=True, random_state=context.seed + 1).split(members)]
    forget_fold = np.arange(len(forget_x)) % folds
    for k, (train_idx, test_idx) in enumerate(splitter.split(holdout_x)):
        member_train = np.setdiff1d(np.arange(len(members)), member_folds[k])
        x = np.concatenate([members[member_train], holdout_x[train_idx]])
        y = np.concatenate([np.ones(len(member_train)), np.zeros(len(train_idx))])
        classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, class_weight="balanced"))
        classifier.fit(x, y)
        holdout_scores[test_idx] = classifier.decision_function(holdout_x[test_idx])
        if (forget_fold == k).any():
            forget_scores[forget_fold == k] = classifier.decision_function(forget_x[forget_fold == k])
    return AttackScores(forget_scores, holdout_scores,
                        {"features": ["phi", "loss", "entropy"], "folds": folds, "members_used": len(members)})


def _choose_attack(attack: str, pool: Any, has_retain: bool) -> str | None:
    if attack != "auto":
        AUDIT_ATTACKS.entry(attack)  # the unknown-name error, listing the known attacks
        return attack
    if pool is not None:
        pooled = [name for name in AUDIT_ATTACKS.names() if name != "population"]
        if pooled:
            return pooled[0]
    return "population" if has_retain else None


# ------------------------------------------------------------------------------------------------
# Bad input and the model-free distribution checks


def _row_hashes(examples: Any) -> list[bytes]:
    x = examples.x.detach().cpu().contiguous().numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x.reshape(len(x), -1)]


def _duplicates(holdout_hashes: Sequence[bytes], other: Any) -> np.ndarray:
    seen = set(_row_hashes(other))
    return np.array([h in seen for h in holdout_hashes], dtype=bool)


def _flat(examples: Any) -> np.ndarray:
    return examples.x.detach().cpu().numpy().reshape(len(examples), -1).astype(np.float64)


def distribution_checks(forget: Any, holdout: Any, reference: Any | None = None, seed: int = 0) -> list[dict[str, Any]]:
    """Model-free checks that D_f is distributed like H (each a dict with ``check``, ``other`` and
    numbers): ``classes`` (every forget class has held-out examples), ``inputs`` (a logistic
    regression on the pixels, cross-validated, cannot tell D_f from H's examples of D_f's classes:
    stratified AUC below 0.65 or p ≥ 0.001), ``labels`` (D_f's labels agree with a 5-nearest-neighbour
    classifier fitted on ``reference`` — the retain set, else H leave-one-out — as often as H's do:
    gap below 0.15 or p ≥ 0.001)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    fy, hy = forget.y.cpu().numpy(), holdout.y.cpu().numpy()
    checks: list[dict[str, Any]] = []
    missing = sorted(int(c) for c in np.unique(fy) if not (hy == c).any())
    checks.append({"check": "classes", "other": bool(missing), "missing_classes": missing,
                   "forget_examples_in_missing": int(np.isin(fy, missing).sum())})
    # Inputs: D_f against H's examples of D_f's classes.
    keep = np.isin(hy, fy)
    fx, hx = _flat(forget), _flat(holdout)[keep]
    inputs: dict[str, Any] = {"check": "inputs", "other": False}
    if len(fx) >= 5 and len(hx) >= 5:
        x = np.concatenate([fx, hx])
        y = np.concatenate([np.ones(len(fx)), np.zeros(len(hx))])
        folds = StratifiedKFold(5, shuffle=True, random_state=seed)
        classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300, class_weight="balanced"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings on raw pixels are harmless here
            scores = cross_val_predict(classifier, x, y, cv=folds, method="decision_function")
        test = stratified_rank_test(scores[:len(fx)], fy, scores[len(fx):], hy[keep], alternative="greater")
        inputs.update(auc=test["auc"], p=test["p"],
                      other=bool(test["p"] is not None and test["p"] < DISTRIBUTION_ALPHA
                                 and test["auc"] >= MIN_INPUT_AUC))
    checks.append(inputs)
    # Labels: agreement with the inputs' nearest neighbours.
    labels: dict[str, Any] = {"check": "labels", "other": False}
    if len(hy) >= 6:
        k = 5
        if reference is not None and len(reference) >= k:
            rng = np.random.default_rng(seed)
            pick = rng.permutation(len(reference))[:5000]
            knn = KNeighborsClassifier(k).fit(_flat(reference)[pick], reference.y.cpu().numpy()[pick])
            forget_agree = knn.predict(fx) == fy
            holdout_agree = knn.predict(_flat(holdout)) == hy
            labels["reference"] = "retain"
        else:
            knn = KNeighborsClassifier(k + 1).fit(_flat(holdout), hy)
            forget_agree = knn.predict(fx) == fy
            neighbours = knn.kneighbors(_flat(holdout), return_distance=False)[:, 1:]  # leave itself out
            holdout_agree = np.array([np.bincount(hy[n]).argmax() == label for n, label in zip(neighbours, hy)])
            labels["reference"] = "held-out (leave one out)"
        test = stratified_proportion_test(forget_agree, fy, holdout_agree, hy, alternative="two-sided")
        labels.update(forget_agreement=test["forget"], holdout_agreement=test["holdout"], p=test["p"])
        labels["other"] = bool(test["gap"] is not None and test["p"] is not None and test["p"] < DISTRIBUTION_ALPHA
                               and -test["gap"] >= MIN_LABEL_GAP)
    checks.append(labels)
    return checks


RANKED_KINDS = ("memorization", "entanglement")


def ranked_rule(rule: str | None) -> str | None:
    """``rule`` when it selects the forget set by a ranking of the examples, else None.

    Example:
        >>> ranked_rule("memorization:high:confidence:0.1"), ranked_rule("iid:0.1")
        ('memorization:high:confidence:0.1', None)
    """
    return rule if rule is not None and rule.partition(":")[0] in RANKED_KINDS else None


def _other_finding(checks: list[dict[str, Any]]) -> str:
    reasons = []
    for check in checks:
        if not check["other"]:
            continue
        if check["check"] == "selection":
            reasons.append(f"the forget rule {check['rule']!r} selects examples by the model's own ranking, not a "
                           "sample of the data (even the oracle does worse on them than on held-out data)")
        elif check["check"] == "classes":
            reasons.append(f"the held-out data has no example of class(es) {check['missing_classes']} "
                           f"({check['forget_examples_in_missing']} forget examples; a removed class?)")
        elif check["check"] == "inputs":
            reasons.append(f"a classifier tells the forget inputs from held-out inputs of the same classes "
                           f"(AUC {check['auc']:.2f}; a trigger or another source?)")
        else:
            reasons.append(f"the forget labels agree with their inputs' nearest neighbours "
                           f"{100 * check['forget_agreement']:.0f}% of the time vs "
                           f"{100 * check['holdout_agreement']:.0f}% on held-out data (mislabeled or poisoned?)")
    return ("the forget set is not distributed like the held-out data, so looking like it is not what an "
            "exact unlearner shows; no pass/fail verdict: " + "; ".join(reasons))


# ------------------------------------------------------------------------------------------------
# The audit


@dataclass
class AuditReport:
    """What :func:`audit` found. ``to_dict()`` is strict JSON; ``summary_lines()`` the terminal text."""

    verdict: str
    direction: str | None
    finding: str
    alpha: float
    tests: dict[str, Any]
    distribution: list[dict[str, Any]]
    per_class: list[dict[str, Any]]
    flagged: list[dict[str, Any]]
    sizes: dict[str, int]
    power: dict[str, Any]
    attack: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def flagged_indices(self) -> list[int]:
        return [int(f["index"]) for f in self.flagged]

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        from .io import strict_json

        return strict_json({
            "format": AUDIT_FORMAT, "verdict": self.verdict, "direction": self.direction, "finding": self.finding,
            "alpha": self.alpha, "tests": self.tests, "distribution": self.distribution,
            "per_class": self.per_class, "flagged": self.flagged if top is None else self.flagged[:top],
            "flagged_count": len(self.flagged), "sizes": self.sizes, "power": self.power, "attack": self.attack,
            "warnings": list(self.warnings),
        })

    def summary_lines(self, top: int = 10) -> list[str]:
        def p(value: Any) -> str:
            return "-" if value is None else f"{value:.2g}"

        t = self.tests
        lines = [f"audit: {self.verdict.upper()} — {self.finding}"]
        acc = t["accuracy"]
        if acc.get("forget") is not None:
            lines.append(f"  accuracy: forget {100 * acc['forget']:.1f}% vs held-out {100 * acc['holdout']:.1f}% "
                         f"(same classes), gap {100 * acc['gap']:+.1f} points, p = {p(acc['p'])}")
        loss = t["loss"]
        if loss.get("auc") is not None:
            lines.append(f"  loss: P(forget loss < held-out loss) = {loss['auc']:.3f} (0.5 = alike), "
                         f"p = {p(loss['p'])}; KS p = {p(t['loss_ks']['p'])}")
        if "attack" in t:
            a = t["attack"]
            lines.append(f"  membership attack ({self.attack['name']}): AUC forget vs held-out {a['auc']:.3f}, "
                         f"p = {p(a['p'])}; {len(self.flagged)} of {self.sizes['forget']} forget examples flagged as "
                         f"members (about {a['expected_flags']:.1f} expected by chance, p = {p(a['flag_p'])})")
        utility = f"held-out accuracy {100 * t['holdout_accuracy']:.1f}%"
        if "retain_accuracy" in t:
            utility += f", retain accuracy {100 * t['retain_accuracy']:.1f}% (a sample)"
        if "utility" in t:
            utility += f"; the original's held-out accuracy {100 * t['utility']['original_accuracy']:.1f}%"
        lines.append(f"  utility: {utility}")
        lines.append(f"  power: smallest detectable accuracy gap {100 * self.power['min_detectable_gap']:.1f} points "
                     f"(|D_f| = {self.sizes['forget']}, |H| = {self.sizes['holdout']})")
        for row in self.per_class:
            if row["p"] is not None and row["p"] < self.alpha:
                lines.append(f"  class {row['class']}: forget acc {100 * row['acc_forget']:.1f}% vs "
                             f"{100 * row['acc_holdout']:.1f}%, loss AUC {row['loss_auc']:.2f} (p = {p(row['p'])})")
        if self.flagged:
            shown = ", ".join(f"{f['index']} ({f['score']:.2f})" for f in self.flagged[:top])
            lines.append(f"  most member-like forget examples (index, attack score): {shown}"
                         + (f", ... ({len(self.flagged) - top} more)" if len(self.flagged) > top else ""))
        lines.extend(f"  warning: {w}" for w in self.warnings)
        return lines


class Auditor:
    """The data side of an audit, checked once: bad input, power and the distribution checks; then
    :meth:`audit` any number of models (stop-when-done audits after every epoch).

    Args:
        forget: the forget set D_f (:class:`~memunlearn.data.Examples`).
        holdout: held-out data H of the same distribution, never trained on.
        retain: the retain set (training members): the population attack's members and the
            check that H does not overlap the training data; None = no attack, no such check.
        alpha: the level of the verdict (Bonferroni over the tests).
        flag_rate: the share of H above the flag threshold (the flags' false-positive rate).
        max_detectable_gap: warn when the smallest detectable accuracy gap is larger.
        attack: ``auto`` (a pool attack when ``pool`` is given and one is registered, else
            ``population`` when ``retain`` is given), a name in :data:`AUDIT_ATTACKS`, or ``none``.
        forget_indices: the forget examples' indices in the training data (the flagged list names
            them); default their positions in ``forget``.
        original: the model before unlearning, when at hand: a model whose held-out accuracy fell
            more than ``max_utility_drop`` below the original's (McNemar's test on the same held-out
            examples, one-sided, at ``alpha``) fails with direction ``utility-lost``, since a model
            that lost its utility makes any forget set look unseen.
        selected_by: the forget rule when it ranks examples by the model (``memorization:...``,
            ``entanglement:...``): such a set is not a sample of the data distribution (the oracle
            itself does worse on the atypical examples than on held-out data), so it is reported
            as another distribution whatever the data checks find; see :func:`ranked_rule`.

    Raises:
        ConfigError: no or too little held-out data; H overlapping D_f or the training set (more
            than 1% of H exact duplicates; fewer are dropped with a warning); a forget set too small
            for the test's power; an unknown attack.
    """

    def __init__(self, forget: Any, holdout: Any, retain: Any | None = None, *, alpha: float = DEFAULT_ALPHA,
                 flag_rate: float = 0.05, max_detectable_gap: float = 0.1, attack: str = "auto", pool: Any = None,
                 forget_indices: Any = None, seed: int = 0, check_distribution: bool = True,
                 selected_by: str | None = None, original: Any = None, max_utility_drop: float = MAX_UTILITY_DROP,
                 device: Any = "auto"):
        from .data.core import as_examples

        if holdout is None or len(holdout) == 0:
            raise ConfigError("the audit needs held-out data the model never trained on (a validation split, or the "
                              "test set): none was given")
        if not 0 < alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
        if not 0 < flag_rate < 1:
            raise ConfigError(f"flag_rate must be in (0, 1), got {flag_rate}")
        forget = as_examples(forget, name="forget", max_in_memory=None)
        holdout = as_examples(holdout, name="holdout", max_in_memory=None)
        retain = as_examples(retain, name="retain", max_in_memory=None) if retain is not None else None
        if len(forget) < MIN_FORGET:
            raise ConfigError(f"the forget set has {len(forget)} examples; the audit needs at least {MIN_FORGET} to "
                              "test anything")
        self.warnings: list[str] = []
        hashes = _row_hashes(holdout)
        for other, what in ((forget, "the forget set"), (retain, "the training (retain) set")):
            if other is None:
                continue
            dup = _duplicates(hashes, other)
            if dup.any():
                if dup.mean() > MAX_OVERLAP_FRACTION:
                    raise ConfigError(f"{int(dup.sum())} of the {len(holdout)} held-out examples are also in {what}: "
                                      "held-out data must be data the model never trained on (use a validation "
                                      "split held out of training, or the test set)")
                keep = np.flatnonzero(~dup)
                holdout, hashes = holdout.subset(keep), [hashes[i] for i in keep]
                self.warnings.append(f"{int(dup.sum())} held-out example(s) duplicate {what} exactly; left out")
        if len(holdout) < MIN_HOLDOUT:
            raise ConfigError(f"only {len(holdout)} held-out examples; the audit needs at least {MIN_HOLDOUT}")
        self.forget, self.holdout, self.retain = forget, holdout, retain
        self.alpha, self.flag_rate, self.seed, self.pool = alpha, flag_rate, seed, pool
        self.forget_indices = (np.arange(len(forget)) if forget_indices is None
                               else np.asarray(forget_indices, dtype=np.int64))
        if len(self.forget_indices) != len(forget):
            raise ConfigError(f"forget_indices has {len(self.forget_indices)} entries for {len(forget)} forget examples")
        self.attack_name = None if attack == "none" else _choose_attack(attack, pool, retain is not None)
        # Power, from the class mix (H's effective size for the forget set's class weights).
        fy, hy = forget.y.numpy(), holdout.y.numpy()
        shares = {int(c): float((fy == c).mean()) for c in np.unique(fy)}
        counts = {c: int((hy == c).sum()) for c in shares}
        inverse = sum(w ** 2 / counts[c] for c, w in shares.items() if counts[c] > 0)
        effective = 1 / inverse if inverse > 0 else float(len(holdout))
        self.effective_holdout = effective
        worst = min_detectable_gap(0.5, len(forget), effective, alpha)
        if worst >= 0.5:
            raise ConfigError(f"the forget set ({len(forget)} examples against {len(holdout)} held-out) is too small for "
                              f"the audit's power: the smallest accuracy gap it could detect is {100 * worst:.0f} "
                              "points; give more forget or held-out examples")
        self.max_detectable_gap = max_detectable_gap
        self.distribution = (distribution_checks(forget, holdout, retain, seed) if check_distribution
                             else [])
        if selected_by is not None:
            self.distribution.insert(0, {"check": "selection", "other": True, "rule": selected_by})
        self.max_utility_drop = max_utility_drop
        self.original_correct = None
        if original is not None:
            self.original_correct = example_stats(original, holdout, device).correct
        self.other = any(c["other"] for c in self.distribution)

    @property
    def audited_retain(self) -> int:
        """Retain examples each :meth:`audit` scores (the population attack's members)."""
        if self.attack_name != "population" or self.retain is None:
            return 0
        return min(len(self.retain), len(self.holdout))

    def power(self, holdout_rate: float) -> dict[str, Any]:
        gap = min_detectable_gap(holdout_rate, len(self.forget), self.effective_holdout, self.alpha)
        return {"min_detectable_gap": gap, "power": POWER, "effective_holdout": self.effective_holdout,
                "enough": gap <= self.max_detectable_gap}

    def audit(self, model: Any, device: Any = "auto") -> AuditReport:
        """Audit ``model`` (see :func:`audit`)."""
        from scipy.stats import binomtest, ks_2samp

        warnings_out = list(self.warnings)
        f_stats = example_stats(model, self.forget, device)
        h_stats = example_stats(model, self.holdout, device)
        r_stats = None
        if self.attack_name == "population" and self.retain is not None:
            rng = np.random.default_rng(self.seed)
            sample = np.sort(rng.permutation(len(self.retain))[:len(self.holdout)])
            r_stats = example_stats(model, self.retain.subset(sample), device)
        tests: dict[str, Any] = {
            "accuracy": stratified_proportion_test(f_stats.correct, f_stats.labels, h_stats.correct, h_stats.labels),
            "loss": stratified_rank_test(-f_stats.loss, f_stats.labels, -h_stats.loss, h_stats.labels),
        }
        tests["holdout_accuracy"] = float(h_stats.correct.mean())
        if r_stats is not None:
            tests["retain_accuracy"] = float(r_stats.correct.mean())  # on the attack's retain sample
        ks = ks_2samp(f_stats.loss, h_stats.loss)
        tests["loss_ks"] = {"statistic": float(ks.statistic), "p": float(ks.pvalue), "stratified": False}
        attack_info: dict[str, Any] = {"name": self.attack_name}
        flagged: list[dict[str, Any]] = []
        forget_scores = None
        if self.attack_name is not None:
            context = AttackContext(model, self.forget, self.holdout, self.retain, f_stats, h_stats, r_stats,
                                    self.seed, device, self.pool, self.forget_indices)
            scores = AUDIT_ATTACKS.get(self.attack_name)(context)
            forget_scores = np.asarray(scores.forget, dtype=np.float64)
            holdout_scores = np.asarray(scores.holdout, dtype=np.float64)
            threshold = float(np.quantile(holdout_scores, 1 - self.flag_rate))
            is_flagged = forget_scores > threshold
            count = int(is_flagged.sum())
            expected = self.flag_rate * len(forget_scores)
            attack_test = stratified_rank_test(forget_scores, f_stats.labels, holdout_scores, h_stats.labels)
            tests["attack"] = {**attack_test, "threshold": threshold, "flag_rate": self.flag_rate,
                               "flagged": count, "expected_flags": expected,
                               "flag_p": float(binomtest(count, len(forget_scores), self.flag_rate,
                                                         alternative="greater").pvalue)}
            attack_info.update(scores.details)
            order = np.argsort(-forget_scores[is_flagged], kind="stable")
            positions = np.flatnonzero(is_flagged)[order]
            flagged = [{"index": int(self.forget_indices[i]), "label": int(f_stats.labels[i]),
                        "score": float(forget_scores[i]), "loss": float(f_stats.loss[i]),
                        "correct": bool(f_stats.correct[i])} for i in positions]
        per_class = self._per_class(f_stats, h_stats, forget_scores, tests.get("attack", {}).get("threshold"))
        power = self.power(tests["accuracy"]["holdout"] if tests["accuracy"]["holdout"] is not None else 0.5)
        if not power["enough"]:
            warnings_out.append(
                f"the forget set ({len(self.forget)} examples) is too small for this test's power: the smallest "
                f"accuracy gap it detects is {100 * power['min_detectable_gap']:.1f} points (alpha {self.alpha}, "
                f"{int(100 * POWER)}% power); a pass means little")
        if self.original_correct is not None:
            tests["utility"] = mcnemar_drop(self.original_correct, h_stats.correct)
        verdict, direction, finding = self._verdict(tests)
        sizes = {"forget": len(self.forget), "holdout": len(self.holdout),
                 "retain_used": 0 if r_stats is None else len(r_stats.labels)}
        return AuditReport(verdict, direction, finding, self.alpha, tests, self.distribution, per_class, flagged,
                           sizes, power, attack_info, warnings_out)

    def _verdict(self, tests: dict[str, Any]) -> tuple[str, str | None, str]:
        if self.other:
            return "other-distribution", None, _other_finding(self.distribution)
        utility = tests.get("utility")
        if utility is not None and utility["drop"] > self.max_utility_drop and utility["p"] < self.alpha:
            return "fail", "utility-lost", (
                f"the model lost its utility: held-out accuracy {100 * utility['accuracy']:.1f}% vs the original's "
                f"{100 * utility['original_accuracy']:.1f}% (McNemar p = {utility['p']:.2g}); a broken model makes any "
                "forget set look unseen, so its forgetting tests say nothing")
        names = [n for n in ("accuracy", "loss", "attack") if n in tests and tests[n].get("p") is not None]
        level = self.alpha / max(len(names), 1)
        rejected = [n for n in names if tests[n]["p"] < level]
        if not rejected:
            return "pass", None, (f"the forget set is indistinguishable from held-out data (no test below "
                                  f"{level:.3g}: alpha {self.alpha} over {len(names)} tests)")
        worst = min(rejected, key=lambda n: tests[n]["p"])
        effect = tests[worst]["gap"] if worst == "accuracy" else tests[worst]["auc"] - 0.5
        direction = "memorized" if effect > 0 else "over-forgotten"
        what = {"accuracy": "accuracy", "loss": "loss", "attack": "the membership attack"}
        text = ("still looks memorized" if direction == "memorized" else
                "looks less familiar than unseen data (over-forgotten, itself detectable)")
        return "fail", direction, (f"the forget set {text}: {', '.join(what[n] for n in rejected)} "
                                   f"{'tells' if len(rejected) == 1 else 'tell'} it from held-out data "
                                   f"(p = {tests[worst]['p']:.2g} < {level:.3g})")

    def _per_class(self, f: ExampleStats, h: ExampleStats, scores: np.ndarray | None,
                   threshold: float | None) -> list[dict[str, Any]]:
        rows = []
        for c in np.unique(f.labels):
            fm, hm = f.labels == c, h.labels == c
            loss = stratified_rank_test(-f.loss[fm], f.labels[fm], -h.loss[hm], h.labels[hm])
            rows.append({
                "class": int(c), "forget": int(fm.sum()), "holdout": int(hm.sum()),
                "acc_forget": float(f.correct[fm].mean()),
                "acc_holdout": float(h.correct[hm].mean()) if hm.any() else None,
                "loss_median_forget": float(np.median(f.loss[fm])),
                "loss_median_holdout": float(np.median(h.loss[hm])) if hm.any() else None,
                "loss_auc": loss["auc"], "p": loss["p"],
                "flagged": None if scores is None else int((scores[fm] > threshold).sum()),
            })
        return rows


def audit(model: Any, forget: Any, holdout: Any, retain: Any | None = None, *, alpha: float = DEFAULT_ALPHA,
          flag_rate: float = 0.05, max_detectable_gap: float = 0.1, attack: str = "auto", pool: Any = None,
          forget_indices: Any = None, seed: int = 0, device: Any = "auto",
          selected_by: str | None = None, original: Any = None) -> AuditReport:
    """Is the forget set distinguishable from held-out data through ``model``? (No oracle needed.)

    Args:
        model: the (unlearned) model.
        forget: the forget set D_f (:class:`~memunlearn.data.Examples`, a torch Dataset or DataLoader).
        holdout: held-out data H of the same distribution that the model never trained on.
        retain: the retain set: the population attack's members, and H is checked against it for
            overlap with the training data.
        alpha, flag_rate, max_detectable_gap, attack, pool, forget_indices, seed, selected_by, original:
            see :class:`Auditor`.

    Returns:
        :class:`AuditReport`: ``verdict`` (``pass``, ``fail`` or ``other-distribution``),
        ``direction``, one-sentence ``finding``, every test with its p-value, per-class rows, the
        forget examples flagged as members (ranked), power and warnings.

    Raises:
        ConfigError: see :class:`Auditor`.

    Example:
        >>> report = audit(unlearned, forget, test, retain=retain)  # doctest: +SKIP
        >>> print("\\n".join(report.summary_lines()))  # doctest: +SKIP
    """
    auditor = Auditor(forget, holdout, retain, alpha=alpha, flag_rate=flag_rate,
                      max_detectable_gap=max_detectable_gap, attack=attack, pool=pool,
                      forget_indices=forget_indices, seed=seed, selected_by=selected_by, original=original,
                      device=device)
    report = auditor.audit(model, device)
    for line in report.warnings:
        warnings.warn(line, stacklevel=2)
    return report


# ------------------------------------------------------------------------------------------------
# Calibration against the oracle (an experiment's results)


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def noise_floor_bars(summary: dict[str, Any]) -> dict[str, float] | None:
    """The noise-floor verdict's bar: the lower ends of the independent retrain's 95% intervals of
    ToW and ToW-MIA (its mean with one seed), the rule the report's verdict uses."""
    floor = summary.get("noise_floor")
    if not floor:
        return None
    bars = {}
    for key in ("tow", "tow_mia"):
        stat = floor.get(key) or {}
        value = _finite(stat.get("low"))
        bars[key] = value if value is not None else _finite(stat.get("mean"))
    return {k: v for k, v in bars.items() if v is not None} or None


def _meets(values: dict[str, Any], bars: dict[str, float]) -> bool:
    return all(_finite(values.get(k)) is not None and values[k] >= bar for k, bar in bars.items())


def audit_calibration(rows: Sequence[dict[str, Any]], summary: dict[str, Any], labels: Sequence[str]) -> dict[str, Any]:
    """How the audit's verdicts agree with the oracle's, over one forget rule's cells.

    The oracle's verdict of a cell: ``indistinguishable`` when its ToW and ToW-MIA reach the
    noise-floor bar (:func:`noise_floor_bars`), else ``distinguishable``; of a method: the same
    rule on its mean over seeds. Returns the confusion table over cells (oracle verdict × audit
    verdict), the agreement over cells the audit gave a pass/fail verdict, per method the
    noise-floor verdict against the audit's pass rate, and the reference rows: false positives
    (independent retrains and oracles that fail the audit) and detections (originals that fail).
    """
    bars = noise_floor_bars(summary)
    out: dict[str, Any] = {"bars": bars, "rule": "oracle verdict: ToW and ToW-MIA >= the noise floor's 95% lower ends"}
    confusion: dict[str, dict[str, int]] = {o: {a: 0 for a in VERDICTS} for o in ("indistinguishable",
                                                                                   "distinguishable")}
    agree = decided = 0
    methods: dict[str, Any] = {}
    for label in labels:
        verdicts = []
        for row in rows:
            entry = row["methods"].get(label) or {}
            if entry.get("status") != "ok" or "audit" not in entry:
                continue
            verdict = entry["audit"]["verdict"]
            verdicts.append(verdict)
            if bars is None:
                continue
            oracle = "indistinguishable" if _meets(entry["vs_oracle"], bars) else "distinguishable"
            confusion[oracle][verdict] += 1
            if verdict != "other-distribution":
                decided += 1
                agree += (oracle == "indistinguishable") == (verdict == "pass")
        method_summary = (summary.get("methods") or {}).get(label) or {}
        means = {k: (method_summary.get(k) or {}).get("mean") for k in ("tow", "tow_mia")}
        methods[label] = {
            "noise_floor_verdict": None if bars is None else
            ("indistinguishable" if _meets(means, bars) else "distinguishable"),
            "audit_pass_rate": verdicts.count("pass") / len(verdicts) if verdicts else None,
            "audit_verdicts": verdicts,
        }
        if methods[label]["noise_floor_verdict"] is not None and verdicts and "other-distribution" not in verdicts:
            majority = verdicts.count("pass") * 2 > len(verdicts)
            methods[label]["agree"] = majority == (methods[label]["noise_floor_verdict"] == "indistinguishable")
    out.update(confusion=confusion, cells_decided=decided, agreement=agree / decided if decided else None,
               methods=methods)
    references: dict[str, Any] = {}
    for role in ("noise_floor", "oracle", "original"):
        found = [row["audit"][role]["verdict"] for row in rows if role in (row.get("audit") or {})]
        decided_role = [v for v in found if v != "other-distribution"]
        references[role] = {"verdicts": found, "fail_rate": decided_role.count("fail") / len(decided_role)
                            if decided_role else None}
    out["false_positive_rate"] = {role: references[role]["fail_rate"] for role in ("noise_floor", "oracle")}
    out["detection_rate_original"] = references["original"]["fail_rate"]
    out["references"] = references
    if bars is not None and rows and all("original" in r for r in rows):
        original_summary = summary.get("original") or {}
        out["original_meets_bar"] = _meets({k: (original_summary.get(k) or {}).get("mean") for k in bars}, bars)
    return out


__all__ = [
    "AUDIT_ATTACKS",
    "VERDICTS",
    "AttackContext",
    "AttackScores",
    "AuditReport",
    "Auditor",
    "ExampleStats",
    "audit",
    "audit_calibration",
    "distribution_checks",
    "example_stats",
    "mcnemar_drop",
    "min_detectable_gap",
    "noise_floor_bars",
    "population_attack",
    "ranked_rule",
    "register_audit_attack",
    "stratified_proportion_test",
    "stratified_rank_test",
]
