"""One reader per on-disk format, each decoding to plain numpy arrays.

A reader never downloads: a missing file is a :class:`DataError` that names the files it
expected and how to obtain them. Images come back as [N, C, H, W] (uint8, or float32 for
``digits`` and float ``npz`` files) with int64 labels; :func:`memunlearn.data.load_dataset`
turns them into normalised tensors.
"""

from __future__ import annotations

import gzip
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np

from ..errors import DataError

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
CIFAR100_FILES = ["train", "test", "meta"]
SVHN_FILES = ["train_32x32.mat", "test_32x32.mat"]
SPLIT_SEED = 0  # fixed, so a dataset's train/test split never depends on the experiment seed


class RawData(NamedTuple):
    """Decoded arrays: images [N, C, H, W], int64 labels [N], and one name per class."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]


@dataclass(frozen=True)
class Reader:
    """How to decode one format.

    ``read(data_dir, **options)`` decodes the data. ``sources(data_dir, **options)``, when given,
    lists the files that ``read`` would decode (raising :class:`DataError` if any is missing); the
    decoded arrays are then cached, keyed by those files' names, sizes and modification times and
    by the options. ``options`` names every option the reader takes, with its default; a reader
    without options is called with ``data_dir`` alone.
    """

    read: Callable[..., RawData]
    sources: Callable[..., list[Path]] | None = None
    options: dict[str, Any] = field(default_factory=dict)


# --- digits: scikit-learn's bundled 8x8 digits, the embedded default -----------------------------


def read_digits(data_dir: Path | None = None) -> RawData:
    """scikit-learn's 1,797 8x8 digits scaled to [0, 1], split 80/20 (stratified, seed 0)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=SPLIT_SEED
    )
    return RawData(x_train, y_train, x_test, y_test, [str(k) for k in range(10)])


# --- MNIST and Fashion-MNIST: IDX files --------------------------------------------------------


def _require(directory: Path | None, names: list[str], what: str, how: str) -> list[Path]:
    """The paths of ``names`` in ``directory``, or a DataError saying what is missing and how to get it."""
    if directory is None:
        raise DataError(f"{what} needs --data-dir: a directory holding {', '.join(names)}; {how}")
    paths = [directory / name for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if not directory.is_dir():
        raise DataError(f"{what}: {directory} does not exist; expected {', '.join(names)} there; {how}")
    if len(missing) == len(names):
        raise DataError(f"{what}: {directory} holds none of {', '.join(names)}; {how}")
    if missing:
        raise DataError(f"{what}: {directory} lacks {', '.join(missing)} (expected {', '.join(names)}); {how}")
    return paths


def _idx_sources(directory: Path | None, what: str, how: str) -> list[Path]:
    if directory is not None:
        # Accept each file gzipped or not; report the .gz names when neither is there.
        found = [directory / f"{n}.gz" if (directory / f"{n}.gz").is_file() else directory / n for n in IDX_FILES]
        if all(p.is_file() for p in found):
            return found
    return _require(directory, [f"{n}.gz" for n in IDX_FILES], what, how + " (uncompressed files work too)")


def read_idx(path: Path, ndim: int) -> np.ndarray:
    """Decode one IDX file of unsigned bytes with ``ndim`` dimensions, checking its header.

    Example:
        >>> labels = read_idx(Path("train-labels-idx1-ubyte.gz"), ndim=1)  # doctest: +SKIP
    """
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            data = f.read()
    except (OSError, EOFError) as e:  # bad gzip header, or a gzip stream cut short
        raise DataError(f"cannot read {path}: {e}") from None
    # Header: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions,
    # then each dimension as a big-endian uint32.
    expected_magic = 0x0800 + ndim
    if len(data) < 4 or int.from_bytes(data[:4], "big") != expected_magic:
        found = f"0x{int.from_bytes(data[:4], 'big'):08x}" if len(data) >= 4 else "a file shorter than 4 bytes"
        raise DataError(
            f"{path} is not an IDX file of {ndim}-D unsigned bytes: "
            f"magic number 0x{expected_magic:08x} expected, found {found}"
        )
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{path} is truncated: its header is cut short")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    size = int(np.prod(dims))
    if len(data) - header_size != size:
        raise DataError(
            f"{path} is truncated or padded: header says {'x'.join(map(str, dims))} = {size} bytes, "
            f"found {len(data) - header_size}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(dims)


def _read_idx_dataset(paths: list[Path], classes: list[str]) -> RawData:
    train_images, train_labels, test_images, test_labels = (
        read_idx(path, ndim) for path, ndim in zip(paths, (3, 1, 3, 1))
    )
    for images, labels, split in ((train_images, train_labels, "train"), (test_images, test_labels, "t10k")):
        if len(images) != len(labels):
            raise DataError(f"the {split} IDX files disagree: {len(images)} images but {len(labels)} labels")
    # IDX images are grey: add the channel axis.
    return RawData(
        train_images[:, None], train_labels.astype(np.int64),
        test_images[:, None], test_labels.astype(np.int64),
        classes,
    )


FASHION_HOW = (
    "install them with `apt-get install -y dataset-fashion-mnist` (puts them in /usr/share/datasets/fashion-mnist), "
    "or pass --data-dir to any directory holding the four IDX files"
)
MNIST_HOW = "download the four IDX files from an MNIST mirror into one directory and pass it as --data-dir"


def fashion_mnist_sources(data_dir: Path | None) -> list[Path]:
    return _idx_sources(data_dir or FASHION_MNIST_DIR, "fashion-mnist", FASHION_HOW)


def read_fashion_mnist(data_dir: Path | None) -> RawData:
    """Fashion-MNIST (28x28 grey, 60,000/10,000) from IDX files; default /usr/share/datasets/fashion-mnist."""
    return _read_idx_dataset(fashion_mnist_sources(data_dir), FASHION_MNIST_CLASSES)


def mnist_sources(data_dir: Path | None) -> list[Path]:
    return _idx_sources(data_dir, "mnist", MNIST_HOW)


def read_mnist(data_dir: Path | None) -> RawData:
    """MNIST (28x28 grey, 60,000/10,000) from IDX files in ``data_dir``."""
    return _read_idx_dataset(mnist_sources(data_dir), [str(k) for k in range(10)])


# --- CIFAR-10 / CIFAR-100: the "python version" pickles ----------------------------------------


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and builtins only, so a crafted file cannot run code."""

    NUMPY_NAMES = {"_reconstruct", "ndarray", "dtype", "scalar", "_frombuffer"}

    def find_class(self, module: str, name: str):
        # _codecs.encode is how protocol-2 pickles written by Python 3 store bytes.
        if (module.split(".")[0] == "numpy" and name in self.NUMPY_NAMES) or (module, name) == ("_codecs", "encode"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _unpickle(path: Path) -> dict[str, object]:
    try:
        with open(path, "rb") as f:
            # The CIFAR pickles were written by Python 2: keys and names are bytes.
            content = _ArrayUnpickler(f, encoding="bytes").load()
    except Exception as e:  # pickle raises many types for a damaged file; all mean the same here
        raise DataError(f"cannot unpickle {path}: {type(e).__name__}: {e}") from None
    if not isinstance(content, dict):
        raise DataError(f"{path} holds a {type(content).__name__}, not the dict of a CIFAR batch")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in content.items()}


def _field(batch: dict[str, object], key: str, path: Path) -> object:
    if key not in batch:
        raise DataError(f"{path} has no {key!r} entry (found {', '.join(sorted(batch))})")
    return batch[key]


def _cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(path)
    data = np.asarray(_field(batch, "data", path))
    labels = np.asarray(_field(batch, label_key, path), dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{path}: 'data' should be N x 3072 uint8, found {'x'.join(map(str, data.shape))} {data.dtype}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels  # rows are stored channel-major (CHW)


def _names(path: Path, key: str) -> list[str]:
    names = _field(_unpickle(path), key, path)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]  # type: ignore[attr-defined]


def _pickle_dir(data_dir: Path | None, subdir: str, first_file: str) -> Path | None:
    """Accept the extracted archive's directory itself or its parent."""
    if data_dir is not None and not (data_dir / first_file).is_file() and (data_dir / subdir).is_dir():
        return data_dir / subdir
    return data_dir


CIFAR_HOW = "download the CIFAR \"python version\" archive ({}) and pass --data-dir to where it was extracted"


def cifar10_sources(data_dir: Path | None) -> list[Path]:
    directory = _pickle_dir(data_dir, "cifar-10-batches-py", "data_batch_1")
    return _require(directory, CIFAR10_FILES, "cifar10", CIFAR_HOW.format("cifar-10-python.tar.gz"))


def read_cifar10(data_dir: Path | None) -> RawData:
    """CIFAR-10 (32x32 RGB, 50,000/10,000) from ``cifar-10-batches-py`` or its parent directory."""
    paths = cifar10_sources(data_dir)
    train = [_cifar_batch(p, "labels") for p in paths[:5]]
    x_test, y_test = _cifar_batch(paths[5], "labels")
    x_train, y_train = np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])
    return RawData(x_train, y_train, x_test, y_test, _names(paths[6], "label_names"))


def cifar100_sources(data_dir: Path | None) -> list[Path]:
    directory = _pickle_dir(data_dir, "cifar-100-python", "train")
    return _require(directory, CIFAR100_FILES, "cifar100", CIFAR_HOW.format("cifar-100-python.tar.gz"))


def read_cifar100(data_dir: Path | None) -> RawData:
    """CIFAR-100 with its 100 fine labels, from ``cifar-100-python`` or its parent directory."""
    train_path, test_path, meta_path = cifar100_sources(data_dir)
    x_train, y_train = _cifar_batch(train_path, "fine_labels")
    x_test, y_test = _cifar_batch(test_path, "fine_labels")
    return RawData(x_train, y_train, x_test, y_test, _names(meta_path, "fine_label_names"))


# --- SVHN: the cropped-digits .mat files -------------------------------------------------------


def svhn_sources(data_dir: Path | None) -> list[Path]:
    how = "download the SVHN cropped-digits files (format 2) train_32x32.mat and test_32x32.mat into --data-dir"
    return _require(data_dir, SVHN_FILES, "svhn", how)


def _svhn_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    try:
        mat = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as e:  # scipy raises several types for a file that is not a readable .mat
        raise DataError(f"cannot read {path} as a MATLAB file: {type(e).__name__}: {e}") from None
    if "X" not in mat or "y" not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "nothing"
        raise DataError(f"{path} should hold variables X and y, found {found}")
    x, y = mat["X"], mat["y"].reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DataError(f"{path}: X should be 32x32x3xN with N = {len(y)} labels, found {'x'.join(map(str, x.shape))}")
    y[y == 10] = 0  # SVHN stores digit 0 as label 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)).astype(np.uint8), y


def read_svhn(data_dir: Path | None) -> RawData:
    """SVHN cropped digits (32x32 RGB, 73,257/26,032) from train_32x32.mat and test_32x32.mat."""
    train_path, test_path = svhn_sources(data_dir)
    return RawData(*_svhn_split(train_path), *_svhn_split(test_path), [str(k) for k in range(10)])


# --- npz: the user's own arrays ----------------------------------------------------------------


def npz_sources(data_dir: Path | None) -> list[Path]:
    how = (
        "--data-dir should be a .npz file (or a directory holding exactly one) "
        "with x_train, y_train, x_test, y_test or x, y"
    )
    if data_dir is None:
        raise DataError(f"npz needs --data-dir; {how}")
    if data_dir.is_file():
        return [data_dir]
    files = sorted(data_dir.glob("*.npz")) if data_dir.is_dir() else []
    if len(files) != 1:
        found = "does not exist" if not data_dir.exists() else f"holds {len(files)} .npz files"
        raise DataError(f"npz: {data_dir} {found}; {how}")
    return files


def _images(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    """Images as [N, C, H, W] from N x H x W, N x H x W x C (C in 1, 3, 4) or N x C x H x W."""
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3, 4):
        x = x.transpose(0, 3, 1, 2)
    elif x.ndim != 4:
        raise DataError(f"{path}: {key} should be N x H x W, N x H x W x C or N x C x H x W, found shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{path}: {key} should hold numbers, found dtype {x.dtype}")
    return np.ascontiguousarray(x if x.dtype == np.uint8 else x.astype(np.float32))


def _labels(y: np.ndarray, path: Path, key: str) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer) or (y.ndim != 1 and y.shape[1:] != (1,)):
        raise DataError(f"{path}: {key} should be integer class labels 0..K-1, found {y.dtype} of shape {y.shape}")
    if len(y) and np.issubdtype(y.dtype, np.unsignedinteger) and int(y.max()) > np.iinfo(np.int64).max:
        raise DataError(f"{path}: {key} has labels beyond int64 (up to {int(y.max())}); classes must be numbered 0..K-1")
    y = y.reshape(-1).astype(np.int64)
    if len(y) and y.min() < 0:
        raise DataError(f"{path}: {key} has negative labels; classes must be numbered 0..K-1")
    return y


def read_npz(data_dir: Path | None) -> RawData:
    """Arrays ``x_train, y_train, x_test, y_test`` (or ``x, y``, split 80/20 with seed 0) from a .npz file."""
    (path,) = npz_sources(data_dir)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as e:  # zipfile / numpy raise several types for a damaged file
        raise DataError(f"cannot read {path} as a .npz file: {type(e).__name__}: {e}") from None
    if {"x_train", "y_train", "x_test", "y_test"} <= arrays.keys():
        split = [arrays[k] for k in ("x_train", "y_train", "x_test", "y_test")]
        x_train, x_test = _images(split[0], path, "x_train"), _images(split[2], path, "x_test")
        y_train, y_test = _labels(split[1], path, "y_train"), _labels(split[3], path, "y_test")
    elif {"x", "y"} <= arrays.keys():
        x, y = _images(arrays["x"], path, "x"), _labels(arrays["y"], path, "y")
        if len(x) != len(y):
            raise DataError(f"{path}: x has {len(x)} examples but y has {len(y)}")
        x_train, x_test, y_train, y_test = _split(x, y)
    else:
        found = ", ".join(arrays) or "nothing"
        raise DataError(f"{path} should hold x_train, y_train, x_test, y_test or x, y; found {found}")
    num_classes = int(max(y_train.max(initial=-1), y_test.max(initial=-1))) + 1
    if num_classes > MAX_CLASSES:
        raise DataError(f"{path}: the largest label is {num_classes - 1}; classes must be numbered 0..K-1 with K at most "
                        f"{MAX_CLASSES}")
    return RawData(x_train, y_train, x_test, y_test, [str(k) for k in range(num_classes)])


MAX_CLASSES = 100_000  # labels above this are a mistake, not a classification task


def _split(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """A fixed 80/20 split, stratified unless some class is too small for that."""
    from sklearn.model_selection import train_test_split

    if len(y) < 2:
        raise DataError(f"cannot split {len(y)} example(s) into train and test; give x_train, y_train, x_test, y_test")
    try:
        return train_test_split(x, y, test_size=0.2, stratify=y, random_state=SPLIT_SEED)
    except ValueError:  # a class with a single example cannot be stratified
        return train_test_split(x, y, test_size=0.2, random_state=SPLIT_SEED)


READERS: dict[str, Reader] = {
    "digits": Reader(read_digits),
    "fashion-mnist": Reader(read_fashion_mnist, fashion_mnist_sources),
    "mnist": Reader(read_mnist, mnist_sources),
    "cifar10": Reader(read_cifar10, cifar10_sources),
    "cifar100": Reader(read_cifar100, cifar100_sources),
    "svhn": Reader(read_svhn, svhn_sources),
    "npz": Reader(read_npz, npz_sources),
}
