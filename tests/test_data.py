"""Each reader against tiny files written in the real on-disk formats, plus the cache and errors."""

import gzip
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from memunlearn.data import (
    RawData, Reader, available_datasets, load_dataset, register_dataset, subsample,
)
import memunlearn.data as data_module
from memunlearn.data import readers
from memunlearn.errors import ConfigError, DataError
from memunlearn.registry import Registry


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MEMUNLEARN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "datasets"


def assert_normalised(x: torch.Tensor) -> None:
    """Per-channel mean 0 and standard deviation 1."""
    assert x.dtype == torch.float32
    assert torch.allclose(x.mean(dim=(0, 2, 3)), torch.zeros(x.shape[1]), atol=1e-5)
    assert torch.allclose(x.std(dim=(0, 2, 3), correction=0), torch.ones(x.shape[1]), atol=1e-4)


# --- writers for the real formats ---------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(directory: Path, n_train: int = 30, n_test: int = 10, gz: bool = True) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 6, 5), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 6, 5), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8) % 10,
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        if gz:
            with gzip.open(directory / f"{name}.gz", "wb") as f:
                f.write(idx_bytes(array))
        else:
            (directory / name).write_bytes(idx_bytes(array))
    return arrays


def cifar_rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3072), dtype=np.uint8)


def write_pickle(path: Path, content: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(content, f, protocol=2)  # the archive's pickles are protocol 2 (Python 2)


def write_cifar10(directory: Path) -> dict[str, np.ndarray]:
    directory.mkdir(parents=True, exist_ok=True)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        batches[name] = cifar_rows(4, seed=i)
        # Bytes keys, as in the Python 2 pickles of the real archive.
        write_pickle(directory / name, {b"data": batches[name], b"labels": [i % 10, 1, 2, 3]})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    write_pickle(directory / "batches.meta", {b"label_names": names, b"num_vis": 3072})
    return batches


# --- digits -------------------------------------------------------------------------------------


def test_digits_fixed_split_and_normalisation():
    data = load_dataset("digits")
    assert (len(data.train), len(data.test)) == (1437, 360)
    assert data.input_shape == (1, 8, 8) and data.classes == [str(k) for k in range(10)]
    assert set(data.test.y.tolist()) == set(range(10))
    assert_normalised(data.train.x)
    assert load_dataset("digits").fingerprint == data.fingerprint  # split never depends on a seed


# --- IDX ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reads_images_labels_and_names(tmp_path, gz):
    arrays = write_idx_dir(tmp_path / "mnist", gz=gz)
    data = load_dataset("mnist", tmp_path / "mnist")
    assert (len(data.train), len(data.test), data.input_shape) == (30, 10, (1, 6, 5))
    assert data.train.y.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert data.classes == [str(k) for k in range(10)]
    assert_normalised(data.train.x)
    raw = readers.read_mnist(tmp_path / "mnist")
    assert np.array_equal(raw.x_test[:, 0], arrays["t10k-images-idx3-ubyte"])
    fashion = load_dataset("fashion-mnist", tmp_path / "mnist")
    assert fashion.classes[0] == "T-shirt/top" and fashion.classes[9] == "Ankle boot"


def test_idx_bad_magic_names_the_file(tmp_path):
    write_idx_dir(tmp_path)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(b"\x00\x00\x08\x03" + bytes(100))  # an image header on a label file
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz.*magic number 0x00000801 expected"):
        load_dataset("mnist", tmp_path)


def test_idx_truncated_data_and_truncated_gzip(tmp_path):
    arrays = write_idx_dir(tmp_path)
    with gzip.open(tmp_path / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(idx_bytes(arrays["t10k-images-idx3-ubyte"])[:-7])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is truncated"):
        load_dataset("mnist", tmp_path)
    whole = (tmp_path / "train-images-idx3-ubyte.gz").read_bytes()
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"cannot read .*train-images-idx3-ubyte\.gz"):
        load_dataset("mnist", tmp_path)


def test_idx_image_and_label_counts_must_match(tmp_path):
    write_idx_dir(tmp_path)
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_bytes(np.zeros(29, dtype=np.uint8)))
    with pytest.raises(DataError, match="30 images but 29 labels"):
        load_dataset("mnist", tmp_path)


def test_missing_fashion_mnist_says_which_files_and_how(tmp_path):
    with pytest.raises(DataError) as error:
        load_dataset("fashion-mnist", tmp_path / "absent")
    message = str(error.value)
    assert "absent" in message and "does not exist" in message
    assert "train-images-idx3-ubyte.gz" in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "apt-get install -y dataset-fashion-mnist" in message and "--data-dir" in message
    write_idx_dir(tmp_path)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError, match="lacks t10k-labels-idx1-ubyte.gz"):
        load_dataset("fashion-mnist", tmp_path)
    with pytest.raises(DataError, match="mnist needs --data-dir"):
        load_dataset("mnist")


# --- CIFAR --------------------------------------------------------------------------------------


def test_cifar10_from_parent_dir_in_chw_order(tmp_path):
    batches = write_cifar10(tmp_path / "cifar-10-batches-py")
    data = load_dataset("cifar10", tmp_path)  # the parent of cifar-10-batches-py
    assert (len(data.train), len(data.test), data.input_shape) == (20, 4, (3, 32, 32))
    assert data.classes[0] == "airplane" and data.classes[9] == "truck"
    assert data.train.y[:4].tolist() == [0, 1, 2, 3] and data.test.y.tolist() == [5, 1, 2, 3]
    assert_normalised(data.train.x)
    raw = readers.read_cifar10(tmp_path / "cifar-10-batches-py")
    green = batches["data_batch_1"][0, 1024:2048].reshape(32, 32)
    assert np.array_equal(raw.x_train[0, 1], green)


def test_cifar100_fine_labels(tmp_path):
    directory = tmp_path / "cifar-100-python"
    directory.mkdir()
    write_pickle(directory / "train", {b"data": cifar_rows(6, 0), b"fine_labels": [0, 1, 2, 3, 4, 0]})
    write_pickle(directory / "test", {b"data": cifar_rows(2, 1), b"fine_labels": [4, 3]})
    write_pickle(directory / "meta", {b"fine_label_names": [b"apple", b"bear", b"cup", b"dolphin", b"eagle"]})
    data = load_dataset("cifar100", directory)
    assert data.classes == ["apple", "bear", "cup", "dolphin", "eagle"]
    assert data.test.y.tolist() == [4, 3] and data.input_shape == (3, 32, 32)


def test_cifar_missing_and_unpicklable(tmp_path):
    with pytest.raises(DataError, match=r"data_batch_1.*test_batch.*batches\.meta.*python version"):
        load_dataset("cifar10", tmp_path)
    write_cifar10(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"cannot unpickle .*test_batch"):
        load_dataset("cifar10", tmp_path)


def test_cifar_pickle_cannot_run_code(tmp_path):
    write_cifar10(tmp_path)
    write_pickle(tmp_path / "batches.meta", {b"label_names": os.system})  # a pickled callable
    with pytest.raises(DataError, match="refusing to load"):
        load_dataset("cifar10", tmp_path)


# --- SVHN ---------------------------------------------------------------------------------------


def test_svhn_mat_files_map_label_10_to_0(tmp_path):
    rng = np.random.default_rng(0)
    x_train = rng.integers(0, 256, (32, 32, 3, 12), dtype=np.uint8)
    y_train = (np.arange(12) % 10 + 1).reshape(-1, 1)  # labels 1..10, 10 meaning the digit 0
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x_train, "y": y_train})
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x_train[..., :5], "y": y_train[:5]})
    data = load_dataset("svhn", tmp_path)
    assert (len(data.train), len(data.test), data.input_shape) == (12, 5, (3, 32, 32))
    assert data.train.y.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2]
    assert_normalised(data.train.x)
    raw = readers.read_svhn(tmp_path)
    assert np.array_equal(raw.x_train[3, 2], x_train[:, :, 2, 3])  # image 3, blue channel, rows x columns


def test_svhn_missing_and_malformed(tmp_path):
    with pytest.raises(DataError, match=r"train_32x32\.mat, test_32x32\.mat.*cropped-digits"):
        load_dataset("svhn", tmp_path)
    (tmp_path / "train_32x32.mat").write_bytes(b"garbage")
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.ones((2, 1))})
    with pytest.raises(DataError, match=r"cannot read .*train_32x32\.mat"):
        load_dataset("svhn", tmp_path)


# --- npz ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, expected",
    [((40, 7, 6), (1, 7, 6)), ((40, 7, 6, 3), (3, 7, 6)), ((40, 2, 7, 6), (2, 7, 6))],
)
def test_npz_split_layout_and_image_layouts(tmp_path, shape, expected):
    x = np.random.default_rng(0).random(shape).astype(np.float64)
    y = np.arange(40) % 4
    np.savez(tmp_path / "mine.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    data = load_dataset("npz", tmp_path)  # a directory holding exactly one .npz
    assert (len(data.train), len(data.test), data.input_shape) == (30, 10, expected)
    assert data.classes == ["0", "1", "2", "3"] and data.test.y.tolist() == y[30:].tolist()
    assert_normalised(data.train.x)
    if len(shape) == 4 and shape[-1] == 3:
        raw = readers.read_npz(tmp_path / "mine.npz")
        assert np.array_equal(raw.x_test[2, 1], x[32, :, :, 1].astype(np.float32))


def test_npz_x_y_gets_a_fixed_stratified_split(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (50, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "xy.npz", x=x, y=np.repeat(np.arange(5), 10))
    data = load_dataset("npz", tmp_path / "xy.npz")
    assert (len(data.train), len(data.test)) == (40, 10)
    assert data.test.y.bincount().tolist() == [2] * 5
    assert load_dataset("npz", tmp_path / "xy.npz").fingerprint == data.fingerprint


def test_npz_rejects_bad_labels_and_keys(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((10, 4, 4)), y=np.linspace(0, 1, 10))
    with pytest.raises(DataError, match="integer class labels"):
        load_dataset("npz", tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", images=np.zeros((10, 4, 4)))
    with pytest.raises(DataError, match="should hold x_train, y_train, x_test, y_test or x, y; found images"):
        load_dataset("npz", tmp_path / "b.npz")
    with pytest.raises(DataError, match="holds 2 .npz files"):
        load_dataset("npz", tmp_path)


# --- cache --------------------------------------------------------------------------------------


def refuse_to_decode(data_dir):
    raise AssertionError("decoded again instead of reading the cache")


def test_second_load_reads_the_cache(tmp_path, cache, monkeypatch):
    write_idx_dir(tmp_path / "mnist")
    first = load_dataset("mnist", tmp_path / "mnist")
    (folder,) = cache.iterdir()
    assert {p.name for p in folder.iterdir()} == {"x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy", "meta.json"}
    monkeypatch.setattr(data_module, "_DATASETS", registry_with(mnist=Reader(refuse_to_decode, readers.mnist_sources)))
    second = load_dataset("mnist", tmp_path / "mnist")
    assert torch.equal(first.train.x, second.train.x) and first.fingerprint == second.fingerprint
    assert second.classes == first.classes


def test_corrupt_cache_is_rebuilt_and_changed_source_is_not_reused(tmp_path, cache):
    write_idx_dir(tmp_path / "mnist")
    first = load_dataset("mnist", tmp_path / "mnist")
    (folder,) = cache.iterdir()
    (folder / "x_train.npy").write_bytes(b"\x93NUMPY garbage")
    (folder / "meta.json").write_text("{not json")
    again = load_dataset("mnist", tmp_path / "mnist")
    assert torch.equal(first.train.x, again.train.x)
    assert np.load(folder / "x_train.npy").shape == (30, 1, 6, 5)  # rewritten
    later = time.time() + 10
    os.utime(tmp_path / "mnist" / "train-labels-idx1-ubyte.gz", (later, later))
    load_dataset("mnist", tmp_path / "mnist")
    assert len(list(cache.iterdir())) == 2


def test_explicit_cache_dir(tmp_path):
    write_idx_dir(tmp_path / "mnist")
    load_dataset("mnist", tmp_path / "mnist", cache_dir=tmp_path / "elsewhere")
    assert len(list((tmp_path / "elsewhere").iterdir())) == 1


# --- registry and subsample ---------------------------------------------------------------------


def test_unknown_name_lists_known_datasets():
    with pytest.raises(ConfigError, match=r"unknown dataset 'imagenet'; known: .*cifar10.*digits.*fashion-mnist"):
        load_dataset("imagenet")


def registry_with(**replaced: Reader) -> Registry:
    """A copy of the dataset registry (so a test never changes the real one), some readers replaced."""
    copy = Registry("dataset")
    for name in data_module._DATASETS:
        copy.register(name, replaced.get(name, data_module._DATASETS.get(name)))
    return copy


def test_register_plain_function_and_reject_duplicates(monkeypatch):
    monkeypatch.setattr(data_module, "_DATASETS", registry_with())
    x = np.arange(6 * 2 * 4 * 4, dtype=np.uint8).reshape(6, 2, 4, 4)
    y = np.array([0, 1, 0, 1, 0, 1])
    register_dataset("tiny", lambda data_dir: RawData(x, y, x[:2], y[:2], ["a", "b"]))
    assert "tiny" in available_datasets()
    data = load_dataset("tiny")
    assert data.input_shape == (2, 4, 4) and data.classes == ["a", "b"]
    assert_normalised(data.train.x)
    with pytest.raises(ConfigError, match="already registered"):
        register_dataset("tiny", lambda data_dir: None)
    register_dataset("bad", lambda data_dir: RawData(x, y + 5, x, y, ["a", "b"]))
    with pytest.raises(DataError, match="labels should be integers 0..1"):
        load_dataset("bad")


def test_the_dataset_registry_is_the_shared_registry_type():
    assert isinstance(data_module._DATASETS, Registry)
    assert available_datasets() == sorted(data_module._DATASETS.names())
    with pytest.raises(ConfigError, match="dataset 'digits' is already registered"):
        register_dataset("digits", lambda data_dir: None)


def test_options_reach_the_reader_and_key_the_cache(tmp_path, cache, monkeypatch):
    seen = []

    def read(data_dir, scale):
        seen.append(scale)
        x = np.full((4, 1, 2, 2), scale, dtype=np.float32) + np.arange(4, dtype=np.float32)[:, None, None, None]
        return RawData(x, np.array([0, 1, 0, 1]), x, np.array([0, 1, 0, 1]), ["a", "b"])

    (tmp_path / "source").write_text("x")
    reader = Reader(read, lambda data_dir, scale: [tmp_path / "source"], {"scale": 1})
    monkeypatch.setattr(data_module, "_DATASETS", registry_with())
    register_dataset("scaled", reader)
    assert data_module.dataset_options("scaled") == {"scale": 1}
    load_dataset("scaled")
    load_dataset("scaled", scale=None)  # None = the default: the same cache entry
    load_dataset("scaled", scale=3)
    load_dataset("scaled", scale=3)
    assert seen == [1, 3] and len(list(cache.iterdir())) == 2
    with pytest.raises(ConfigError, match=r"dataset 'scaled' has no option\(s\) size; it takes: scale"):
        load_dataset("scaled", size=2)
    with pytest.raises(ConfigError, match=r"dataset 'digits' has no option\(s\) image_size; it takes: none"):
        load_dataset("digits", image_size=32)


def test_subsample_is_stratified_and_seeded():
    data = load_dataset("digits")
    small = subsample(data, n_train=100, n_test=50, seed=3)
    assert (len(small.train), len(small.test)) == (100, 50)
    assert small.train.y.bincount().tolist() == [10] * 10 and small.classes == data.classes
    assert torch.equal(subsample(data, n_train=100, seed=3).train.x, small.train.x)
    assert not torch.equal(subsample(data, n_train=100, seed=4).train.x, small.train.x)
    assert len(subsample(data, n_train=100).test) == 360 and small.fingerprint != data.fingerprint
    with pytest.raises(ConfigError, match="n_train must be between 1 and 1437"):
        subsample(data, n_train=5000)


# --- the real Fashion-MNIST, where installed ----------------------------------------------------


@pytest.mark.skipif(not readers.FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_installed_fashion_mnist():
    data = load_dataset("fashion-mnist")
    assert (len(data.train), len(data.test), data.input_shape) == (60000, 10000, (1, 28, 28))
    assert data.train.y.bincount().tolist() == [6000] * 10
    start = time.perf_counter()
    again = load_dataset("fashion-mnist")
    assert time.perf_counter() - start < 2.0  # from the cache; typically ~0.15 s
    assert again.fingerprint == data.fingerprint
