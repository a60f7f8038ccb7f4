"""Executors: the local process pool and Ray build the same model pool as one process does."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from memunlearn.data import subsample
from memunlearn.errors import ConfigError
from memunlearn.memorization.executors import available_executors, get_executor, threads_per_worker
from memunlearn.memorization.pool import build_pool, pool_spec_for
from memunlearn.training import TrainConfig


@pytest.fixture(scope="module")
def tiny():
    from memunlearn import load_dataset

    data = subsample(load_dataset("digits"), n_train=100, n_test=30, seed=2)
    return data, pool_spec_for(data, "cnn", 4, TrainConfig(epochs=2, lr=0.05, batch_size=32))


@pytest.fixture(scope="module")
def serial_pool(tiny, tmp_path_factory):
    data, spec = tiny
    return build_pool(data, spec, 2, pool_dir=tmp_path_factory.mktemp("serial"), workers=1, device="cpu")


def _assert_same_pool(a, b):
    """Identical, bit for bit: a member depends only on its index and the pool's spec (each
    trains with the spec's thread count, whatever the executor and the number of workers)."""
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.train_logits, b.train_logits)
    np.testing.assert_array_equal(a.test_logits, b.test_logits)


def test_threads_are_split_across_workers():
    assert threads_per_worker(1, cpus=2) == 2
    assert threads_per_worker(2, cpus=2) == 1
    assert threads_per_worker(3, cpus=2) == 1
    assert threads_per_worker(4, cpus=16) == 4


def test_local_executor_with_two_workers_gives_the_same_pool(tiny, serial_pool, tmp_path):
    data, spec = tiny
    parallel = build_pool(data, spec, 2, pool_dir=tmp_path / "parallel", workers=2, device="cpu")
    assert parallel.build["trained"] == 2 and parallel.build["workers"] == 2
    _assert_same_pool(serial_pool, parallel)


def test_unknown_executor_and_missing_ray(monkeypatch):
    assert available_executors() == ["local", "ray"]
    with pytest.raises(ConfigError, match="unknown executor 'slurm'; known: local, ray"):
        get_executor("slurm")
    with pytest.raises(ConfigError, match="at least 1"):
        get_executor("local", workers=0)
    with pytest.raises(ConfigError, match="only applies to --executor ray"):
        get_executor("local", ray_address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install memunlearn\[ray\]"):
        get_executor("ray")


def test_ray_executor_on_a_local_two_cpu_cluster(tiny, serial_pool, tmp_path):
    ray = pytest.importorskip("ray")
    data, spec = tiny
    try:
        pool = build_pool(data, spec, 2, pool_dir=tmp_path / "ray", executor="ray", workers=2, device="cpu")
        assert pool.build["executor"] == "ray" and pool.build["trained"] == 2
        _assert_same_pool(serial_pool, pool)
        assert not ray.is_initialized()  # the executor shuts down the cluster it started
    finally:
        if ray.is_initialized():
            ray.shutdown()
