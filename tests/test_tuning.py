"""Tuning in the library: search spaces, the tuning split, every trial recorded, hparams files."""

from __future__ import annotations

import json

import pytest

from memunlearn.errors import ConfigError
from memunlearn.experiment import run_experiment, spec_from_dict
from memunlearn.params import Float, Int
from memunlearn.tuning import grid_values, load_hparams, search_space, shipped_hparams, tune


def test_every_method_declares_a_search_space_within_its_valid_range():
    from memunlearn.methods import available_methods, method_defaults, method_params

    for method in available_methods():
        params = method_params(method)
        assert set(params) == set(method_defaults(method))
        space = search_space(method)
        if method != "retrain":
            assert space, f"{method} declares nothing to search"
        for name, param in space.items():
            for value in grid_values(param):
                assert param.check(method, name, value) == value


def test_search_space_overrides_and_errors():
    assert search_space("finetune", {"lr": [0.001, 0.01]})["lr"].search == (0.001, 0.01)
    assert "epochs" not in search_space("finetune", {"epochs": False})
    with pytest.raises(ConfigError, match="has no hyperparameter 'gamma'"):
        search_space("finetune", {"gamma": [0.1, 0.2]})
    with pytest.raises(ConfigError, match="is empty"):
        search_space("finetune", {"lr": [0.1, 0.01]})
    with pytest.raises(ConfigError, match="must be a number > 0"):
        search_space("finetune", {"lr": [0.0, 0.01]})
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        search_space("nope")


def test_the_epochs_range_shrinks_to_what_the_cost_cap_affords():
    from memunlearn.tuning import _within_cost_cap

    space = search_space("finetune")
    assert _within_cost_cap(space, oracle_epochs=20, cost_cap=0.2)["epochs"].search == (1, 4)
    assert _within_cost_cap(space, oracle_epochs=100, cost_cap=0.2)["epochs"].search == (1, 10)
    assert _within_cost_cap(space, oracle_epochs=3, cost_cap=0.1)["epochs"].search == (1, 1)


def test_grid_values():
    assert grid_values(Float(search=(0.001, 0.1), log=True)) == [0.001, 0.01, 0.1]
    assert grid_values(Int(search=(1, 3))) == [1, 2, 3]


def tiny(cache, **extra):
    payload = {"data": {"train_subset": 400}, "model": {"epochs": 3}, "run": {"device": "cpu", "cache_dir": str(cache)},
               "evaluation": {"noise_floor": False}}
    payload.update(extra)
    return spec_from_dict(payload)


def test_tune_records_every_trial_scores_on_validation_and_respects_the_cap(tmp_path):
    spec = tiny(tmp_path / "cache", methods={"run": ["finetune"]},
                tuning={"trials": 10, "sampler": "grid", "validation": 100, "cost_cap": 0.7,
                        "space": {"finetune": {"epochs": [1, 2], "lr": [0.01, 0.1]}}})
    result = tune(spec, tmp_path / "hp.toml")
    trials = [t for t in result.trials if t["method"] == "finetune"]
    assert len(trials) == 6  # the 2×3 grid (lr geometric), each recorded; the grid ends before 10 trials
    assert {(t["hparams"]["epochs"], t["hparams"]["lr"]) for t in trials} == {
        (e, lr) for e in (1, 2) for lr in (0.01, 0.0316228, 0.1)}
    feasible = [t for t in trials if t["status"] == "ok" and t["within_cost_cap"]]
    best = max(feasible, key=lambda t: t["objective"])
    assert result.best["iid:0.1"]["finetune"] == best["hparams"]
    for t in trials:  # over the cap scores 0, within it ToW × ToW-MIA
        expected = t["tow"] * t["tow_mia"] if t["within_cost_cap"] else 0.0
        assert t["objective"] == pytest.approx(expected)
        assert t["within_cost_cap"] == (t["examples_fraction"] <= 0.7)
    assert result.setting["validation"] == 100 and result.setting["tuning_seed"] == 1000
    recorded = json.loads((tmp_path / "hp.toml.trials.json").read_text())
    assert len(recorded["trials"]) == 6
    table = load_hparams(tmp_path / "hp.toml")
    # the file records the recipe the values were tuned under (a file without one predates recipes: "ours")
    assert table.lookup("digits", "cnn", 16, "iid:0.1") == {"finetune": {"recipe": "official", **best["hparams"]}}
    assert table.lookup("digits", "cnn", 16, "iid:0.3") == {"finetune": {"recipe": "official", **best["hparams"]}}
    assert table.lookup("digits", "cnn", 16, "classes:0,6") == {}  # no class-concentrated entry tuned
    assert table.lookup("digits", "mlp", 16, "iid:0.1") == {}
    again = tune(spec)  # trials are cells: a repeated tuning reuses them all
    assert all(t["reused"] for t in again.trials)


def test_tuning_never_scores_on_the_test_set(tmp_path, monkeypatch):
    from memunlearn.experiment.setup import Split

    seen_sizes = []
    real = Split.views_of  # how a cell scores its model (on the split's "test" examples)

    def spy(self, model, *args, **kwargs):
        seen_sizes.append(len(self.test))
        return real(self, model, *args, **kwargs)

    monkeypatch.setattr(Split, "views_of", spy)
    spec = tiny(tmp_path / "cache", methods={"run": ["ssd"]}, tuning={"trials": 1, "validation": 77})
    tune(spec)
    assert seen_sizes and set(seen_sizes) == {77}  # the cell and the original, both on the validation split


def test_run_uses_an_hparams_file_and_explicit_values_win(tmp_path):
    path = tmp_path / "hp.toml"
    path.write_text('[[setting]]\ndataset = "digits"\nmodel = "cnn"\nwidth = 16\nforget = "iid:0.1"\n'
                    '[setting.methods.finetune]\nepochs = 1\nlr = 0.03\n')
    spec = tiny(tmp_path / "cache", methods={"run": ["finetune"], "finetune": {"lr": 0.02}},
                run={"device": "cpu", "cache_dir": str(tmp_path / "cache"), "hparams_file": str(path)})
    results = run_experiment(spec)
    hparams = results["groups"][0]["per_seed"][0]["methods"]["finetune"]["hparams"]
    assert hparams["epochs"] == 1 and hparams["lr"] == 0.02
    # a file without a recipe was tuned under the earlier defaults: its values apply on top of recipe "ours"
    assert results["groups"][0]["tuned_hparams"] == {"finetune": {"epochs": 1, "lr": 0.03, "recipe": "ours"}}
    assert hparams["recipe"] == "ours" and hparams["batch_size"] == 64 and hparams["schedule"] == "cosine"
    # a recipe the user names wins: the tuned values then apply on top of it
    spec = tiny(tmp_path / "cache", methods={"run": ["finetune"], "finetune": {"lr": 0.02, "recipe": "official"}},
                run={"device": "cpu", "cache_dir": str(tmp_path / "cache"), "hparams_file": str(path)})
    hparams = run_experiment(spec)["groups"][0]["per_seed"][0]["methods"]["finetune"]["hparams"]
    assert hparams["recipe"] == "official" and hparams["epochs"] == 1 and hparams["batch_size"] == 256


@pytest.mark.parametrize("text, message", [
    ('[[setting]]\ndataset = "digits"\nmodel = "cnn"\nwidth = 16\nforget = "iid"\n[setting.methods.nope]\nlr = 1.0\n',
     "unknown method 'nope'"),
    ('[[setting]]\ndataset = "digits"\nmodel = "cnn"\nwidth = 16\nforget = "iid"\n[setting.methods.finetune]\nlr = -1.0\n',
     "finetune.lr must be a number > 0"),
    ('[[setting]]\ndataset = "digits"\n', "missing model, width, forget, methods"),
    ("[oops]\n", "unknown section [oops]"),
])
def test_bad_hparams_files_are_refused_before_any_work(tmp_path, text, message):
    path = tmp_path / "hp.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        spec_from_dict({"run": {"hparams_file": str(path)}})


def test_a_cost_cap_of_zero_and_pipelines_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="cost_cap: must be > 0"):
        spec_from_dict({"tuning": {"cost_cap": 0}})
    with pytest.raises(ConfigError, match="RUM pipeline"):
        tune(tiny(tmp_path, methods={"run": ["rum:none:finetune:salun"]}))


def test_shipped_hparams_are_valid_and_cover_both_forget_kinds():
    for dataset in ("digits", "fashion-mnist"):
        table = shipped_hparams(dataset)
        assert table is not None, dataset
        kinds = {entry["forget"].split(":")[0] for entry in table.entries}
        assert {"iid", "classes"} <= kinds


def test_hyperparameters_the_spec_sets_are_held_fixed_in_every_trial(tmp_path):
    spec = tiny(tmp_path / "cache", methods={"run": ["finetune"], "finetune": {"epochs": 1}},
                tuning={"trials": 5, "sampler": "grid", "validation": 100})
    result = tune(spec)
    assert len(result.trials) == 3  # only lr is searched: its 3-point grid
    assert all(t["hparams"]["epochs"] == 1 for t in result.trials)
    assert result.best["iid:0.1"]["finetune"]["epochs"] == 1
    swept = tune(tiny(tmp_path / "cache", methods={"run": ["finetune"], "finetune": {"lr": [0.01, 0.1]}},
                      tuning={"trials": 2, "sampler": "grid", "validation": 100}), tmp_path / "swept.toml")
    assert set(swept.best["iid:0.1"]) == {"finetune[lr=0.01]", "finetune[lr=0.1]"}  # each value tuned on its own
    assert {swept.best["iid:0.1"][k]["lr"] for k in swept.best["iid:0.1"]} == {0.01, 0.1}
    table = load_hparams(tmp_path / "swept.toml")
    assert set(table.lookup("digits", "cnn", 16, "iid:0.1")) == {"finetune[lr=0.01]", "finetune[lr=0.1]"}
