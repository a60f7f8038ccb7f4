"""Localization: masks that say which parameter entries an unlearning method may change (SPEC §2).

Example:
    >>> from memunlearn.localization import localize, Mask  # doctest: +SKIP
    >>> mask = localize(model, forget, "del", budget=0.3)  # doctest: +SKIP
    >>> mask.density, mask.iou(localize(model, forget, "salun", budget=0.3))  # doctest: +SKIP
    >>> mask.save("del-mask.safetensors"); Mask.load("del-mask.safetensors")  # doctest: +SKIP
"""

from .mask import Mask
from .strategies import (
    CRITERIA, DEFAULT_BUDGETS, GRANULARITIES, TOPK_RULES, LocalizeOptions, accumulate_gradient,
    available_strategies, budget_count, gradient_scores, is_transformer, localize, register_strategy, resolve_topk_rule,
    row_scores, select_top, top_h,
)

__all__ = [
    "CRITERIA", "DEFAULT_BUDGETS", "GRANULARITIES", "TOPK_RULES", "LocalizeOptions", "Mask", "accumulate_gradient",
    "available_strategies", "budget_count", "gradient_scores", "is_transformer", "localize", "register_strategy",
    "resolve_topk_rule", "row_scores",
    "select_top", "top_h",
]
