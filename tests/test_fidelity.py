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
