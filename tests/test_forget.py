import numpy as np
import pytest

from memunlearn.errors import ConfigError, ForgetSetError
from memunlearn.forget import make_forget_set, read_index_file, validate_indices


def test_iid_size_seed_and_range(digits):
    n = len(digits.train)
    a = make_forget_set("iid:0.1", digits, seed=0)
    b = make_forget_set("iid:0.1", digits, seed=0)
    c = make_forget_set("iid:0.1", digits, seed=1)
    assert len(a) == round(0.1 * n)
    assert np.array_equal(a.indices, b.indices)
    assert not np.array_equal(a.indices, c.indices)
    assert np.all(np.diff(a.indices) > 0) and a.indices.min() >= 0 and a.indices.max() < n
    assert len(a.retain_indices(n)) == n - len(a)


def test_classes_draws_only_from_given_classes(digits):
    forget = make_forget_set("classes:3,5:0.05", digits, seed=0)
    labels = digits.train.y.numpy()[forget.indices]
    assert set(labels.tolist()) <= {3, 5}
    assert len(forget) == round(0.05 * len(digits.train))


def test_full_class_takes_every_example(digits):
    forget = make_forget_set("full-class:2", digits)
    assert np.array_equal(forget.indices, np.flatnonzero(digits.train.y.numpy() == 2))


def test_mislabeled_flips_exactly_the_forget_set(digits):
    forget = make_forget_set("mislabeled:0.05", digits, seed=3)
    original = digits.train.y
    changed = np.flatnonzero((forget.train_labels != original).numpy())
    assert np.array_equal(changed, forget.indices)  # every flipped label differs from the true one


def test_index_file_text_and_npy(digits, tmp_path):
    text = tmp_path / "forget.txt"
    text.write_text("# my forget set\n5\n3\n\n10\n")
    assert make_forget_set(f"indices:{text}", digits).indices.tolist() == [3, 5, 10]
    npy = tmp_path / "forget.npy"
    np.save(npy, np.array([7, 1]))
    assert make_forget_set(f"indices:{npy}", digits).indices.tolist() == [1, 7]


@pytest.mark.parametrize(
    "values, message",
    [
        ([1, 2, 2, 9, 9], r"duplicated indices \[2, 9\]"),
        ([0, -1], r"out of range .*\[-1\]"),
        ([0, 100], r"out of range .*\[100\]"),
        (["3", "x"], r"non-integer entries \['x'\]"),
        ([1.5], r"non-integer entries \[1.5\]"),
        ([], "empty"),
    ],
)
def test_validate_indices_names_offending_values(values, message):
    with pytest.raises(ForgetSetError, match=message):
        validate_indices(values, 100)


def test_bad_index_file_and_rules(digits, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("1\n2\nthree\n")
    with pytest.raises(ForgetSetError, match="three"):
        make_forget_set(f"indices:{bad}", digits)
    with pytest.raises(ForgetSetError, match="does not exist"):
        read_index_file(tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="unknown forget-set kind 'bogus'"):
        make_forget_set("bogus:1", digits)
    with pytest.raises(ConfigError, match="fraction"):
        make_forget_set("iid:1.5", digits)
    with pytest.raises(ConfigError, match=r"classes must be in \[0, 9\]"):
        make_forget_set("classes:12", digits)


def test_forget_set_that_empties_a_class_is_refused(digits, tmp_path):
    every_seven = np.flatnonzero(digits.train.y.numpy() == 7)
    path = tmp_path / "sevens.txt"
    path.write_text("\n".join(map(str, every_seven)))
    with pytest.raises(ForgetSetError, match=r"class\(es\) \[7\].*full-class:7"):
        make_forget_set(f"indices:{path}", digits)
