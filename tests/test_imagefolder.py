"""The imagefolder dataset against tiny PNG/JPEG folders written here: layouts, labels, options,
the cache, and every error case."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from memunlearn.data import imagefolder, load_dataset
from memunlearn.data.imagefolder import decode_image, read_imagefolder, stratified_split
from memunlearn.errors import ConfigError, DataError

# Unsorted on purpose: labels must follow the sorted folder names, not creation order.
CLASSES = ["n02", "n01", "n10"]


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("MEMUNLEARN_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "datasets"


def pixels(label: int, index: int, grey: bool = False) -> np.ndarray:
    """An 8x8 image whose values say which class and which file it is."""
    base = np.full((8, 8, 3), 20 * label + 3 * index, dtype=np.uint8)
    if not grey:
        base[..., 1] += 100  # a colour image: G differs from R and B
    return base


def write_class(folder: Path, label: int, count: int, grey: bool = False, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        image = pixels(label, i, grey)
        if i % 2:  # every other file a JPEG (lossy: only PNG values are checked exactly)
            Image.fromarray(image).save(folder / f"img{i}.JPEG", quality=95)
        else:
            Image.fromarray(image[..., 0] if grey else image, mode="L" if grey else "RGB").save(folder / f"img{i}.png")


def write_split_folder(root: Path, test_name: str = "test", grey: bool = False) -> None:
    for name in CLASSES:
        label = sorted(CLASSES).index(name)
        write_class(root / "train" / name, label, 4, grey)
        write_class(root / test_name / name, label, 2, grey, start=10)


def write_flat_folder(root: Path, per_class: tuple[int, ...] = (10, 5, 5)) -> None:
    for name, count in zip(CLASSES, per_class):
        write_class(root / name, sorted(CLASSES).index(name), count)


def test_train_test_folders_shapes_labels_and_sorted_classes(tmp_path):
    write_split_folder(tmp_path)
    (tmp_path / "train" / "n01" / "notes.txt").write_text("not an image")  # skipped
    (tmp_path / "train" / "n01" / ".hidden.png").write_bytes(b"junk")  # skipped
    data = load_dataset("imagefolder", tmp_path, image_size=8)
    assert data.classes == ["n01", "n02", "n10"]
    assert (len(data.train), len(data.test), data.input_shape) == (12, 6, (3, 8, 8))
    assert data.train.y.tolist() == [0] * 4 + [1] * 4 + [2] * 4 and data.test.y.tolist() == [0, 0, 1, 1, 2, 2]
    raw = read_imagefolder(tmp_path, image_size=8)
    assert raw.x_train.dtype == np.uint8 and raw.x_train.shape == (12, 3, 8, 8)
    # train/n02/img0.png is the 5th training image (label 1, file 0), decoded exactly
    assert np.array_equal(raw.x_train[4].transpose(1, 2, 0), pixels(1, 0))
    jpeg = raw.x_test[1].transpose(1, 2, 0).astype(int)  # test/n01/img11.JPEG
    assert np.abs(jpeg - pixels(0, 11)).max() <= 3


def test_val_folder_stands_in_for_test(tmp_path):
    write_split_folder(tmp_path, test_name="val")
    data = load_dataset("imagefolder", tmp_path, image_size=8)
    assert (len(data.train), len(data.test)) == (12, 6)


def test_image_size_resizes_and_non_square_images_are_centre_cropped(tmp_path):
    write_split_folder(tmp_path)
    assert load_dataset("imagefolder", tmp_path, image_size=4).input_shape == (3, 4, 4)
    assert load_dataset("imagefolder", tmp_path).input_shape == (3, 32, 32)  # the default size
    wide = np.tile((np.arange(16, dtype=np.uint8) * 10)[None, :, None], (8, 1, 3))  # 8 rows, 16 columns
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert np.array_equal(decode_image(tmp_path / "wide.png", 8), wide[:, 4:12])


def test_channels_auto_detects_grey_and_can_be_forced(tmp_path):
    write_split_folder(tmp_path / "grey", grey=True)
    write_split_folder(tmp_path / "colour")
    grey = load_dataset("imagefolder", tmp_path / "grey", image_size=8)
    assert grey.input_shape == (1, 8, 8)
    raw = read_imagefolder(tmp_path / "grey", image_size=8)
    assert np.array_equal(raw.x_train[4, 0], pixels(1, 0, grey=True)[..., 0])
    assert load_dataset("imagefolder", tmp_path / "grey", image_size=8, channels="rgb").input_shape == (3, 8, 8)
    colour = read_imagefolder(tmp_path / "colour", image_size=8, channels="grayscale")
    assert colour.x_train.shape == (12, 1, 8, 8)
    expected = np.rint(0.299 * 20 + 0.587 * 120 + 0.114 * 20)  # luma of train/n02/img0.png
    assert colour.x_train[4, 0, 0, 0] == expected


def test_single_folder_split_is_stratified_and_seeded(tmp_path):
    images = tmp_path / "images"
    write_flat_folder(images)
    data = load_dataset("imagefolder", images, image_size=8)
    assert data.classes == ["n01", "n02", "n10"]
    assert data.test.y.bincount().tolist() == [1, 2, 1]  # 20% of 5, 10, 5 images (n02 has 10)
    assert data.train.y.bincount().tolist() == [4, 8, 4]
    again = load_dataset("imagefolder", images, image_size=8, cache_dir=tmp_path / "other-cache")
    assert again.fingerprint == data.fingerprint  # the split never depends on anything but split_seed
    other = load_dataset("imagefolder", images, image_size=8, split_seed=1)
    assert other.fingerprint != data.fingerprint
    bigger = load_dataset("imagefolder", images, image_size=8, test_fraction=0.4)
    assert bigger.test.y.bincount().tolist() == [2, 4, 2]


def test_stratified_split_keeps_one_training_example_per_class():
    labels = np.array([0, 0, 1, 2, 2, 2, 2, 2])
    train, test = stratified_split(labels, 0.5, seed=0)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(8))
    assert set(labels[train].tolist()) == {0, 1, 2}  # class 1 has one image: it stays in train
    assert np.bincount(labels[test], minlength=3).tolist() == [1, 0, 2]


def test_second_load_reads_the_cache_and_options_key_it(tmp_path, cache, monkeypatch):
    write_split_folder(tmp_path / "images")
    first = load_dataset("imagefolder", tmp_path / "images", image_size=8)

    def refuse(path, size):
        raise AssertionError("decoded again instead of reading the cache")

    monkeypatch.setattr(imagefolder, "decode_image", refuse)
    second = load_dataset("imagefolder", tmp_path / "images", image_size=8)
    assert second.fingerprint == first.fingerprint and second.classes == first.classes
    assert len(list(cache.iterdir())) == 1
    monkeypatch.undo()
    monkeypatch.setenv("MEMUNLEARN_CACHE", str(tmp_path / "cache"))
    load_dataset("imagefolder", tmp_path / "images", image_size=4)  # another size: another entry
    write_class(tmp_path / "images" / "train" / "n01", 0, 1, start=20)  # a new file: another entry
    load_dataset("imagefolder", tmp_path / "images", image_size=8)
    assert len(list(cache.iterdir())) == 3


def test_unreadable_images_are_named(tmp_path):
    write_split_folder(tmp_path)
    (tmp_path / "train" / "n02" / "broken.png").write_bytes(b"\x89PNG not really")
    whole = (tmp_path / "test" / "n10" / "img11.JPEG").read_bytes()
    (tmp_path / "test" / "n10" / "img11.JPEG").write_bytes(whole[:40])  # cut short
    with pytest.raises(DataError, match=r"cannot read 2 image\(s\): .*train/n02/broken\.png .*test/n10/img11\.JPEG"):
        load_dataset("imagefolder", tmp_path, image_size=8)


def test_empty_classes_are_named(tmp_path):
    write_flat_folder(tmp_path / "images")
    (tmp_path / "images" / "n05").mkdir()
    (tmp_path / "images" / "n07").mkdir()
    (tmp_path / "images" / "n07" / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"2 class folder\(s\) in .* hold no PNG/JPEG image: n05, n07"):
        load_dataset("imagefolder", tmp_path / "images", image_size=8)


def test_train_and_test_must_have_the_same_classes(tmp_path):
    write_split_folder(tmp_path)
    write_class(tmp_path / "train" / "n99", 0, 2)
    write_class(tmp_path / "test" / "n42", 0, 2)
    with pytest.raises(DataError, match=r"different classes in train/ and test/: only in train/: n99; only in test/: n42"):
        load_dataset("imagefolder", tmp_path, image_size=8)


def test_layout_errors(tmp_path):
    with pytest.raises(DataError, match="imagefolder needs --data-dir"):
        load_dataset("imagefolder")
    with pytest.raises(DataError, match="absent is not a directory"):
        load_dataset("imagefolder", tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no class subfolders"):
        load_dataset("imagefolder", tmp_path / "empty")
    write_class(tmp_path / "only-train" / "train" / "n01", 0, 2)
    with pytest.raises(DataError, match="has train/ but neither test/ nor val/"):
        load_dataset("imagefolder", tmp_path / "only-train")
    write_class(tmp_path / "tiny" / "n01", 0, 1)  # one image per class: nothing to hold out
    write_class(tmp_path / "tiny" / "n02", 1, 1)
    with pytest.raises(DataError, match="too few images per class"):
        load_dataset("imagefolder", tmp_path / "tiny", image_size=8)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"image_size": 0}, "image_size must be a positive integer"),
        ({"image_size": 8.5}, "image_size must be a positive integer"),
        ({"channels": "cmyk"}, "channels must be one of auto, rgb, grayscale"),
        ({"test_fraction": 1.0}, r"test_fraction must be in \(0, 1\)"),
        ({"split_seed": -1}, "split_seed must be a non-negative integer"),
    ],
)
def test_bad_options(tmp_path, options, message):
    write_flat_folder(tmp_path / "images")
    with pytest.raises(ConfigError, match=message):
        load_dataset("imagefolder", tmp_path / "images", **options)
