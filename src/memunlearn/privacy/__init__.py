"""Privacy evaluation of unlearning: U-LiRA, the NeurIPS 2023 challenge score, and the cheap
per-example tier (RMIA, offline LiRA, RMIA-U; :mod:`.tier`, :mod:`.tier_drivers`) (SPEC §6).

The statistics and scores are pure numpy/scipy functions (:mod:`.confidence`, :mod:`.attack`,
:mod:`.challenge`); the drivers that produce the models they need (:func:`ulira`,
:func:`neurips2023_score`, in :mod:`.drivers`) load torch and the unlearning methods only when
first used.

Example:
    >>> from memunlearn.privacy import challenge_forget_score
    >>> challenge_forget_score([[0.0], [1.0], [2.0], [3.0]], [[10.0], [11.0], [12.0], [13.0]]).score
    0.0
"""

from __future__ import annotations

from typing import Any

from .attack import GaussianFit, ULiRAAttack, attack_metrics, fit_gaussians, gaussian_log_likelihood_ratio, ulira_from_statistics
from .challenge import (
    ChallengeForgetScore,
    challenge_final_score,
    challenge_forget_score,
    challenge_points,
    epsilon_table,
    example_epsilon,
)
from .confidence import logit_confidence, official_logit_confidence
from .tier import fit_offline_a, lira_offline, rmia_likelihood_ratio, rmia_offline, rmia_scores_from_ratios, true_class_probability
from .tier_drivers import (
    RMIAScores,
    TierAttack,
    check_pool_recipe,
    heldout_split,
    lira_offline_attack,
    retrained_references,
    rmia_attack,
    rmia_scores,
    rmia_u_attack,
)

_DRIVERS = ("NeurIPS2023Report", "ULiRAReport", "member_forget_indices", "neurips2023_score",
            "pool_member", "reproduce_pool_member", "stored_pool_member", "ulira")


def __getattr__(name: str) -> Any:
    if name in _DRIVERS:
        from . import drivers

        return getattr(drivers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ChallengeForgetScore", "GaussianFit", "ULiRAAttack", "attack_metrics", "challenge_final_score",
    "challenge_forget_score", "challenge_points", "epsilon_table", "example_epsilon", "fit_gaussians",
    "gaussian_log_likelihood_ratio", "logit_confidence", "official_logit_confidence", "ulira_from_statistics",
    "RMIAScores", "TierAttack", "check_pool_recipe", "fit_offline_a", "heldout_split", "lira_offline",
    "lira_offline_attack", "retrained_references", "rmia_attack", "rmia_likelihood_ratio", "rmia_offline",
    "rmia_scores", "rmia_scores_from_ratios", "rmia_u_attack", "true_class_probability",
    *_DRIVERS,
]
