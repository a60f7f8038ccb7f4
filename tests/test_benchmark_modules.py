"""The benchmark scripts' helper modules import against the package as it is (they are not in the suite otherwise)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def registered_conv_models():
    """Load conv_models for one test and take its models out of the registry afterwards, so later
    tests (an unknown model's error lists the known ones) see the package's own models only."""
    from memunlearn.models import MODELS

    added = [name for name in ("cnn3", "cnn3f") if name not in MODELS.names()]
    yield _load("conv_models")
    for name in added:
        MODELS.unregister(name)


@pytest.mark.parametrize("image_size", [28, 27, 32, 9])
def test_conv_models_import_and_register_working_models(image_size, registered_conv_models):
    """conv_models registers cnn3 and cnn3f; the flattened head's input size matches two ceil-mode pools."""
    from memunlearn import build_model
    from memunlearn.models import MODELS

    assert {"cnn3", "cnn3f"} <= set(MODELS.names())
    for name in ("cnn3", "cnn3f"):
        model = build_model(name, in_channels=1, num_classes=10, width=4, image_size=image_size)
        assert model(torch.zeros(2, 1, image_size, image_size)).shape == (2, 10)
