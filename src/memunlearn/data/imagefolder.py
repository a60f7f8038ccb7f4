"""Image folders: one subfolder of PNG/JPEG files per class (the ImageNet / torchvision layout).

Two layouts are accepted in ``data_dir``:

- ``train/CLASS/*.png`` and ``test/CLASS/*.jpg`` (``val/`` stands in for ``test/`` when there is no
  ``test/``, as in ImageNet-100 copies): the given split, whose class sets must agree;
- ``CLASS/*.png`` directly: split into train and test by ``test_fraction`` (stratified, seeded by
  ``split_seed``, never by the experiment seed).

Class names are the folder names, sorted (``n01440764``, ... for ImageNet-100); label k is the k-th
name. Every image is decoded once with Pillow, EXIF-rotated, resized so its shorter side is
``image_size`` and centre-cropped to ``image_size`` x ``image_size`` (bicubic, antialiased), then
cached as .npy by :func:`memunlearn.data.load_dataset`. ``channels="auto"`` gives one channel when
every image is grey (R = G = B everywhere), else three. Hidden files and files with other
extensions are skipped; an unreadable image, an empty class or class sets that differ between
train and test are a :class:`~memunlearn.errors.DataError` naming the files or classes.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from .readers import SPLIT_SEED, RawData, Reader

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
TEST_FOLDERS = ("test", "val")
CHANNELS = ("auto", "rgb", "grayscale")
DEFAULT_OPTIONS: dict[str, Any] = {"image_size": 32, "channels": "auto", "test_fraction": 0.2, "split_seed": SPLIT_SEED}
LAYOUT_HOW = (
    "expected one subfolder of PNG/JPEG images per class, either directly in --data-dir "
    "(split by test_fraction) or under train/ and test/ (or val/)"
)
_SHOWN = 8  # how many offending files or classes a message names before "..."


@dataclass(frozen=True)
class FolderLayout:
    """What a scan of an image folder found: sorted class names and (file, label) per split.

    ``test`` is None when the folder has no train/test split of its own.
    """

    root: Path
    classes: list[str]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]] | None

    def files(self) -> list[Path]:
        return [path for path, _ in self.train + (self.test or [])]


def scan_image_folder(data_dir: Path | None) -> FolderLayout:
    """Find the classes and image files under ``data_dir`` without decoding anything.

    Raises:
        DataError: no such directory, no class folders, an empty class, or train and test
            folders with different classes (each named).

    Example:
        >>> layout = scan_image_folder(Path("imagenet100"))  # doctest: +SKIP
        >>> layout.classes[:2]  # doctest: +SKIP
        ['n01440764', 'n01443537']
    """
    if data_dir is None:
        raise DataError(f"imagefolder needs --data-dir; {LAYOUT_HOW}")
    if not data_dir.is_dir():
        raise DataError(f"imagefolder: {data_dir} is not a directory; {LAYOUT_HOW}")
    if (data_dir / "train").is_dir():
        test_dir = next((data_dir / name for name in TEST_FOLDERS if (data_dir / name).is_dir()), None)
        if test_dir is None:
            raise DataError(f"imagefolder: {data_dir} has train/ but neither test/ nor val/; {LAYOUT_HOW}")
        train, test = _class_files(data_dir / "train"), _class_files(test_dir)
        only_train, only_test = sorted(set(train) - set(test)), sorted(set(test) - set(train))
        if only_train or only_test:
            parts = [f"only in {split}/: {_show(names)}" for split, names in
                     (("train", only_train), (test_dir.name, only_test)) if names]
            raise DataError(f"imagefolder: {data_dir} has different classes in train/ and {test_dir.name}/: "
                            + "; ".join(parts))
        classes = sorted(train)
        return FolderLayout(data_dir, classes, _labelled(train, classes), _labelled(test, classes))
    found = _class_files(data_dir)
    classes = sorted(found)
    return FolderLayout(data_dir, classes, _labelled(found, classes), None)


def imagefolder_sources(data_dir: Path | None, **options: Any) -> list[Path]:
    """Every image file that :func:`read_imagefolder` would decode (keys the cache)."""
    _check_options(options)
    return scan_image_folder(data_dir).files()


def read_imagefolder(data_dir: Path | None, **options: Any) -> RawData:
    """Decode an image folder into uint8 [N, C, size, size] arrays (see the module docstring).

    Args:
        data_dir: the folder (either layout).
        **options: ``image_size`` (default 32), ``channels`` (``auto``, ``rgb``, ``grayscale``),
            ``test_fraction`` (0.2) and ``split_seed`` (0), the last two only for a folder
            without train/ and test/.

    Raises:
        ConfigError: an option out of range.
        DataError: a layout problem (see :func:`scan_image_folder`) or unreadable images (each named).
    """
    options = _check_options({**DEFAULT_OPTIONS, **options})
    layout = scan_image_folder(data_dir)
    size = options["image_size"]
    entries = layout.train + (layout.test or [])
    paths = [path for path, _ in entries]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # Pillow decodes without the GIL
        decoded = list(pool.map(lambda path: _try_decode(path, size), paths))
    failures = [f"{path} ({error})" for path, (_, error) in zip(paths, decoded) if error is not None]
    if failures:
        raise DataError(f"imagefolder: cannot read {len(failures)} image(s): {_show(failures)}")
    images = np.stack([image for image, _ in decoded if image is not None])  # [N, size, size, 3] (none failed)
    grey = bool((images[..., 0] == images[..., 1]).all() and (images[..., 1] == images[..., 2]).all())
    channels = options["channels"]
    if channels == "grayscale" or (channels == "auto" and grey):
        # ITU-R 601-2 luma, as Pillow's convert("L"); exact for images that are grey already
        luma = images.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        x = np.clip(np.rint(luma), 0, 255).astype(np.uint8)[:, None]
    else:
        x = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    y = np.array([label for _, label in entries], dtype=np.int64)
    if layout.test is not None:
        n_train = len(layout.train)
        return RawData(x[:n_train], y[:n_train], x[n_train:], y[n_train:], list(layout.classes))
    train_idx, test_idx = stratified_split(y, options["test_fraction"], options["split_seed"])
    if len(test_idx) == 0:
        raise DataError(
            f"imagefolder: {layout.root} has too few images per class to hold out test_fraction="
            f"{options['test_fraction']} of them; add images, raise test_fraction, or give train/ and test/"
        )
    return RawData(x[train_idx], y[train_idx], x[test_idx], y[test_idx], list(layout.classes))


def decode_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 [size, size, 3]: shorter side resized to ``size``, centre-cropped.

    Example:
        >>> decode_image(Path("cat.jpg"), 32).shape  # doctest: +SKIP
        (32, 32, 3)
    """
    from PIL import Image, ImageOps

    with Image.open(path) as image:
        image.draft("RGB", (size, size))  # JPEG: decode at the smallest DCT scale still >= size
        image = ImageOps.exif_transpose(image).convert("RGB")
        image = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.uint8)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices: round(fraction · n_c) of each class c go to test, at least one
    of each class stays in train.

    Example:
        >>> train, test = stratified_split(np.array([0] * 10 + [1] * 5), 0.2, seed=0)
        >>> len(train), len(test), np.bincount(np.array([0] * 10 + [1] * 5)[test]).tolist()
        (12, 3, [2, 1])
    """
    rng = np.random.default_rng(seed)
    test: list[np.ndarray] = []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        count = min(int(round(test_fraction * len(members))), len(members) - 1)
        test.append(members[:count])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64)
    keep = np.ones(len(labels), dtype=bool)
    keep[test_idx] = False
    return np.flatnonzero(keep), test_idx


def _class_files(directory: Path) -> dict[str, list[Path]]:
    """Class folder name -> its image files (sorted); DataError for no classes or empty ones."""
    classes = {
        entry.name: sorted(
            p for p in entry.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        for entry in sorted(directory.iterdir()) if entry.is_dir() and not entry.name.startswith(".")
    }
    if not classes:
        raise DataError(f"imagefolder: {directory} has no class subfolders; {LAYOUT_HOW}")
    empty = [name for name, files in classes.items() if not files]
    if empty:
        raise DataError(
            f"imagefolder: {len(empty)} class folder(s) in {directory} hold no PNG/JPEG image: {_show(empty)}"
        )
    return classes


def _labelled(files: dict[str, list[Path]], classes: list[str]) -> list[tuple[Path, int]]:
    return [(path, label) for label, name in enumerate(classes) for path in files[name]]


def _try_decode(path: Path, size: int) -> tuple[np.ndarray | None, str | None]:
    try:
        return decode_image(path, size), None
    except Exception as e:  # Pillow raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        return None, f"{type(e).__name__}: {e}"


def _check_options(options: dict[str, Any]) -> dict[str, Any]:
    size = options.get("image_size", DEFAULT_OPTIONS["image_size"])
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ConfigError(f"imagefolder: image_size must be a positive integer, got {size!r}")
    channels = options.get("channels", DEFAULT_OPTIONS["channels"])
    if channels not in CHANNELS:
        raise ConfigError(f"imagefolder: channels must be one of {', '.join(CHANNELS)}, got {channels!r}")
    fraction = options.get("test_fraction", DEFAULT_OPTIONS["test_fraction"])
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(f"imagefolder: test_fraction must be in (0, 1), got {fraction!r}")
    seed = options.get("split_seed", DEFAULT_OPTIONS["split_seed"])
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"imagefolder: split_seed must be a non-negative integer, got {seed!r}")
    return options


def _show(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return f"{shown}, ... ({len(items)} in all)" if len(items) > _SHOWN else shown


IMAGEFOLDER = Reader(read_imagefolder, imagefolder_sources, dict(DEFAULT_OPTIONS))
