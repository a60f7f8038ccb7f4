import pytest


@pytest.fixture(scope="session")
def digits():
    from memunlearn import load_dataset

    return load_dataset("digits")
