import pytest
import torch


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own artefact cache, so none touches the home directory or another test."""
    monkeypatch.setenv("MEMUNLEARN_CACHE", str(tmp_path / "cache"))
    torch.set_num_threads(1)  # one thread per test process: much faster on 2 busy cores


@pytest.fixture(scope="session")
def digits():
    from memunlearn import load_dataset

    return load_dataset("digits")
