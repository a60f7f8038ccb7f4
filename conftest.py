"""Shared by the tests and the package's doctests (both collected by ``make test``)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test and doctest gets its own artefact cache, so none touches the home directory or another."""
    monkeypatch.setenv("MEMUNLEARN_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)  # one thread per test process: much faster on 2 busy cores
