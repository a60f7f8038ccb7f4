"""Strategies, proxies and models live in the shared Registry (issue 11): a duplicate is an error,
metadata travels with the entry, and the old public functions still work."""

import pytest

from memunlearn.errors import ConfigError
from memunlearn.localization import DEFAULT_BUDGETS, available_strategies, register_strategy
from memunlearn.localization.strategies import STRATEGIES, default_budget, get_strategy
from memunlearn.memorization.proxies import PROXIES, available_proxies, get_proxy, register_proxy
from memunlearn.models import MODELS, available_models, build_model, default_width, register_model
from memunlearn.registry import Registry


def test_each_registry_is_the_shared_type():
    assert all(isinstance(registry, Registry) for registry in (STRATEGIES, PROXIES, MODELS))


def test_duplicate_names_are_errors():
    with pytest.raises(ConfigError, match="localization strategy 'del' is already registered"):
        register_strategy("del", get_strategy("salun"))
    with pytest.raises(ConfigError, match="memorization proxy 'confidence' is already registered"):
        register_proxy("confidence", lambda inputs: None, "dynamics", "again")
    with pytest.raises(ConfigError, match="model 'cnn' is already registered"):
        register_model("cnn", lambda *args: None)


def test_metadata_travels_with_the_entry():
    assert STRATEGIES.entry("salun").metadata["default_budget"] == default_budget("salun") == 0.5
    assert DEFAULT_BUDGETS["salun"] == 0.5
    assert DEFAULT_BUDGETS["del"] == 0.3 and set(DEFAULT_BUDGETS) == set(available_strategies())
    assert PROXIES.entry("confidence").metadata["needs"] == get_proxy("confidence").needs == "dynamics"
    assert get_proxy("el2n").needs == "model" and available_proxies()[0] == "confidence"
    assert default_width("resnet18") == 64 and default_width("mlp") == 512
    assert available_models() == sorted(MODELS.names())


def test_registering_and_unknown_names(monkeypatch):
    register_model("tiny-test-model", lambda in_channels, num_classes, width, image_size: "built", default_width=3)
    try:
        assert build_model("tiny-test-model") == "built" and "tiny-test-model" in available_models()
    finally:
        MODELS.unregister("tiny-test-model")
    with pytest.raises(ConfigError, match="unknown model 'nope'; known: cnn"):
        build_model("nope")
    with pytest.raises(ConfigError, match="unknown memorization proxy 'nope'"):
        get_proxy("nope")
    with pytest.raises(ConfigError, match="a proxy needs 'dynamics' or 'model'"):
        register_proxy("new-proxy", lambda inputs: None, "magic", "bad needs")
