"""Bring your own data: torch Datasets and DataLoaders through as_examples, unlearn, localize,
evaluate and tune_method; materialised vs streamed; bad input; the documented notebook path."""

from __future__ import annotations

import math

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset, SubsetRandomSampler, TensorDataset

from memunlearn.data import Examples, StreamedExamples, as_examples
from memunlearn.errors import ConfigError
from memunlearn.evaluation import evaluate
from memunlearn.localization import localize
from memunlearn.methods import unlearn

X = torch.randn(60, 1, 4, 4, generator=torch.Generator().manual_seed(0))
Y = torch.arange(60) % 3
PER_EXAMPLE = 16 * 4 + 8  # bytes of one 1x4x4 float32 input and its int64 label


class Shifted(Dataset):
    """A map-style dataset with a transform (x + 1), labels as Python ints; counts its reads."""

    def __init__(self, x=X, y=Y):
        self.x, self.y, self.reads = x, y, 0

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        self.reads += 1
        return self.x[i] + 1, int(self.y[i])


class Items(Dataset):
    """A dataset returning whatever items it is given (for bad input)."""

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


class Stream(IterableDataset):
    def __iter__(self):
        return iter(zip(X, Y.tolist()))


def small_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten())
    net.add_module("fc", nn.Linear(64, 3))
    return net


def assert_same(examples, x, y):
    assert isinstance(examples, Examples)
    assert torch.equal(examples.x, x) and torch.equal(examples.y, y) and examples.y.dtype == torch.int64


def test_datasets_loaders_and_subsets_materialise_to_their_tensors():
    assert_same(as_examples(TensorDataset(X, Y.int())), X, Y)        # labels become int64
    assert_same(as_examples(Shifted()), X + 1, Y)                    # the dataset's transform is applied
    assert_same(as_examples(DataLoader(Shifted(), batch_size=7)), X + 1, Y)
    assert_same(as_examples(Subset(Shifted(), [5, 2, 9])), X[[5, 2, 9]] + 1, Y[[5, 2, 9]])
    assert_same(as_examples(Subset(TensorDataset(X, Y), [5, 2, 9])), X[[5, 2, 9]], Y[[5, 2, 9]])
    assert_same(as_examples(Stream()), X, Y)
    shuffled = as_examples(DataLoader(Shifted(), batch_size=8, shuffle=True))  # the loader's order, same examples
    order = shuffled.y.argsort(stable=True)
    assert sorted(shuffled.x.sum((1, 2, 3)).tolist()) == sorted((X + 1).sum((1, 2, 3)).tolist())
    assert torch.equal(shuffled.y[order], Y.sort(stable=True).values)
    examples = Examples(X, Y)
    assert as_examples(examples) is examples


def test_the_threshold_is_bytes_of_inputs_and_labels():
    assert isinstance(as_examples(Shifted(), max_in_memory=60 * PER_EXAMPLE), Examples)
    assert isinstance(as_examples(Shifted(), max_in_memory=60 * PER_EXAMPLE - 1), StreamedExamples)
    assert isinstance(as_examples(DataLoader(Shifted(), batch_size=7), max_in_memory=60 * PER_EXAMPLE - 1),
                      StreamedExamples)
    assert isinstance(as_examples(Shifted(), max_in_memory=None), Examples)
    with pytest.raises(ConfigError, match="IterableDataset is larger than max_in_memory"):
        as_examples(Stream(), max_in_memory=10 * PER_EXAMPLE)


def test_a_stream_gives_the_same_batches_and_reruns_transforms():
    data = Shifted()
    stream = as_examples(data, max_in_memory=0)
    memory = Examples(X + 1, Y)
    for shuffle in (False, True):
        got = list(stream.subset([3, 1, 4, 1, 5]).batches(2, shuffle, torch.Generator().manual_seed(7), True))
        want = list(memory.subset([3, 1, 4, 1, 5]).batches(2, shuffle, torch.Generator().manual_seed(7), True))
        assert all(torch.equal(a, b) for g, w in zip(got, want) for a, b in zip(g, w)) and len(got) == len(want)
    reads = data.reads
    list(stream.batches(16))
    assert data.reads == reads + 60  # every pass reads (and transforms) again


def test_a_loader_stream_keeps_its_collate_and_sampler():
    def collate(items):
        return torch.stack([x for x, _ in items]) * 10, torch.tensor([y for _, y in items])

    loader = DataLoader(Shifted(), batch_size=4, sampler=SubsetRandomSampler([8, 3, 5]), collate_fn=collate)
    stream = as_examples(loader, max_in_memory=0)
    assert isinstance(stream, StreamedExamples) and len(stream) == 3
    x, y = next(stream.batches(8))
    assert sorted(y.tolist()) == sorted(Y[[8, 3, 5]].tolist())
    assert sorted(x.sum((1, 2, 3)).tolist()) == pytest.approx(sorted(((X[[8, 3, 5]] + 1) * 10).sum((1, 2, 3)).tolist()))


def test_streamed_unlearn_localize_and_evaluate_equal_materialised():
    model = small_model()
    stream = as_examples(Shifted(), max_in_memory=0)
    memory = Examples(X + 1, Y)
    forget, retain = list(range(0, 60, 6)), [i for i in range(60) if i % 6]
    hparams = dict(epochs=2, batch_size=8, device="cpu", seed=3)
    streamed = unlearn("finetune", model, stream.subset(forget), stream.subset(retain), **hparams)
    materialised = unlearn("finetune", model, memory.subset(forget), memory.subset(retain), **hparams)
    for a, b in zip(streamed.model.parameters(), materialised.model.parameters()):
        assert torch.equal(a, b)
    assert streamed.cost.examples == materialised.cost.examples
    mask_s = localize(model, stream.subset(forget), "del", 0.3, device="cpu")
    mask_m = localize(model, memory.subset(forget), "del", 0.3, device="cpu")
    assert all(torch.equal(mask_s[n], mask_m[n]) for n, _ in model.named_parameters())
    got = evaluate(model, stream.subset(forget), stream.subset(retain), stream, device="cpu")
    assert got == evaluate(model, memory.subset(forget), memory.subset(retain), memory, device="cpu")


def test_a_method_that_needs_every_input_names_itself_on_a_stream():
    stream = as_examples(Shifted(), max_in_memory=0)
    with pytest.raises(ConfigError, match=r"method 'random-label' needs every (input|label) at once.*as_examples"):
        unlearn("random-label", small_model(), stream.subset(range(6)), stream.subset(range(6, 60)), epochs=1,
                recipe="ours")  # the earlier order concatenates D_r and D_f; the official one streams both


@pytest.mark.parametrize("data, message", [
    ([1, 2, 3], "forget: expected memunlearn Examples, a torch Dataset or a DataLoader.*got list"),
    (X, "got Tensor; for tensors x, y use Examples"),
    (Items([(np.zeros((1, 4, 4)), 0)]), "inputs should be tensors, got ndarray"),
    (Items([X[0], X[1]]), r"forget: dataset items should be \(input, label\) pairs, got a torch.float32 tensor"),
    (Items([(X[0], 0.5)]), "labels should be integer class indices, got float 0.5"),
    (Items([(X[0], -1)]), "labels should be class indices 0, 1, ...; got -1"),
    (Items([(X[0], 0), (X[0, :, :2], 1)]), "different shapes"),
    (Items([]), "the dataset is empty"),
    (TensorDataset(X, nn.functional.one_hot(Y).float()), "labels should be integer class indices, got torch.float32"),
    (DataLoader(TensorDataset(X, Y), batch_size=7, drop_last=True), "drop_last=True would leave examples out"),
])
def test_bad_input_is_a_config_error_naming_the_problem(data, message):
    with pytest.raises(ConfigError, match=message):
        unlearn("finetune", small_model(), data, Examples(X, Y), epochs=1)


def _documented_snippet(number: int) -> str:
    text = (Path(__file__).resolve().parents[1] / "docs" / "your-own-data.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, re.S)[number]


def test_the_documented_notebook_path_runs(capsys):
    from memunlearn import TrainConfig, train

    train_set = TensorDataset(X, Y)
    test_set = TensorDataset(X[:20] + 0.1 * torch.randn(20, 1, 4, 4, generator=torch.Generator().manual_seed(1)),
                             Y[:20])
    model = train(small_model(), as_examples(train_set), TrainConfig(epochs=3), device="cpu").model
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the snippet names the head: no guessing warning
        exec(_documented_snippet(0), {"model": model, "make_model": small_model, "train_set": train_set,
                                      "test_set": test_set})
    tow, tow_mia = (float(v) for v in capsys.readouterr().out.split())
    assert math.isfinite(tow) and math.isfinite(tow_mia)  # the snippet ran to the end and printed two scores


def test_tune_method_searches_on_the_users_splits_under_the_cost_cap():
    from memunlearn.tuning import tune_method

    data = Shifted()
    forget, retain, validation = Subset(data, range(0, 12)), Subset(data, range(12, 48)), Subset(data, range(48, 60))
    model, oracle = small_model(0), small_model(1)
    found = tune_method("finetune", model, forget, retain, validation, oracle, oracle_examples=10 * 36,
                        cost_cap=0.2, sampler="grid", space={"lr": [0.01, 0.1]}, fixed={"batch_size": 16},
                        trials=20, device="cpu")
    assert data.reads == 60 + 3  # each set read once (plus one item probed for its size), not per trial
    assert {t["hparams"]["epochs"] for t in found.trials} == {1, 2}  # the cap affords 0.2 x 10 oracle epochs
    assert len(found.trials) == 6 and all(t["hparams"]["batch_size"] == 16 for t in found.trials)
    assert all(t["within_cost_cap"] and t["objective"] == t["tow"] * t["tow_mia"] for t in found.trials)
    assert found.best_objective == max(t["objective"] for t in found.trials) > 0
    over = tune_method("finetune", model, forget, retain, validation, oracle, oracle_examples=36,
                       cost_cap=0.5, sampler="grid", space={"lr": [0.01, 0.1]}, device="cpu")
    assert all(not t["within_cost_cap"] and t["objective"] == 0 for t in over.trials) and over.best == {}
