"""The experiment core: specs, sweeps of cells, resuming after kill -9, concurrent sweeps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memunlearn.errors import ConfigError
from memunlearn.experiment import load_spec, run_experiment, spec_from_dict, write_spec
from memunlearn.experiment.cells import CellStore

TINY = {
    "data": {"train_subset": 200},
    "model": {"epochs": 2},
    "evaluation": {"noise_floor": False},
}


def tiny_spec(cache: Path, **sections) -> dict:
    payload = {**TINY, **sections}
    payload["run"] = {"device": "cpu", "cache_dir": str(cache), **sections.get("run", {})}
    return payload


def test_spec_round_trip_through_toml_and_results(tmp_path):
    spec = spec_from_dict(tiny_spec(tmp_path, forget={"rules": ["iid:0.1", "classes:3,5"]}, seeds={"first": 2, "count": 2},
                                    methods={"run": ["finetune", "neggrad+"], "finetune": {"lr": [0.01, 0.05]},
                                             "neggrad+": {"beta": 0.95}}))
    path = write_spec(spec, tmp_path / "spec.toml")
    assert load_spec(path) == spec
    assert spec.seeds == (2, 3)
    (tmp_path / "results.json").write_text(json.dumps({"spec": spec.to_dict()}))
    assert load_spec(tmp_path / "results.json") == spec


def test_sweep_labels_name_only_the_swept_values():
    spec = spec_from_dict({"methods": {"run": ["finetune", "ssd", "rum:none:finetune:salun"],
                                       "finetune": {"lr": [0.01, 0.05], "epochs": 2}}})
    cells = spec.method_cells()
    assert [c.label for c in cells] == [
        "finetune[lr=0.01]", "finetune[lr=0.05]", "ssd",
        "rum:none:finetune:salun[finetune.lr=0.01]", "rum:none:finetune:salun[finetune.lr=0.05]",
    ]
    assert cells[0].hparams == {"lr": 0.01, "epochs": 2}
    assert cells[3].hparams == {"finetune": {"lr": 0.01, "epochs": 2}, "salun": {}}


@pytest.mark.parametrize("text, message", [
    ("[data]\ndataset = 'digits'\n[nonsense]\nx = 1\n", "spec.toml:3: [nonsense]: unknown section"),
    ("[data]\ndataset = 'digits'\ntrain_subsett = 5\n", "spec.toml:3: [data] train_subsett: unknown key"),
    ("[model]\nwidth = 'wide'\n", "spec.toml:2: [model] width: must be an integer"),
    ("[forget]\nrule = 'iid'\nrules = ['iid']\n", "give either rule or rules"),
    ("[seeds]\nlist = [0, 1]\ncount = 2\n", "give either list or first/count"),
    ("[seeds]\ncount = 0\n", "spec.toml:2: [seeds] count: must be an integer >= 1"),
    ("[methods]\nrun = ['finetune']\n[methods.ssd]\nselection = 5.0\n", "spec.toml:3: [methods] ssd: hyperparameters given for 'ssd'"),
    ("[methods]\nrun = ['finetune']\n[methods.finetune]\nlr = [0.1, -1]\n", "finetune.lr must be a number > 0, got -1"),
    ("[methods]\nrun = ['finetune', 'finetune']\n", "'finetune' is listed twice"),
    ("[methods]\nrun = ['nope']\n", "unknown method 'nope'"),
    ("[tuning]\ncost_cap = 0\n", "spec.toml:2: [tuning] cost_cap: must be > 0"),
    ("[data\n", "is not valid TOML"),
])
def test_spec_errors_name_the_key_and_line(tmp_path, text, message):
    path = tmp_path / "spec.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_spec(path)
    assert message in str(error.value)


def test_results_without_a_spec_are_refused(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"summary": {}}))
    with pytest.raises(ConfigError, match="carries no experiment spec"):
        load_spec(tmp_path / "results.json")


def test_cells_are_reused_and_a_damaged_cell_is_recomputed(tmp_path):
    spec = spec_from_dict(tiny_spec(tmp_path / "cache", methods={"run": ["ssd", "finetune"], "finetune": {"epochs": 1}}))
    first = run_experiment(spec, tmp_path / "a")
    assert first["cells"] == {"cells": 2, "reused": 0, "computed": 2}
    second = run_experiment(spec, tmp_path / "b")
    assert second["cells"] == {"cells": 2, "reused": 2, "computed": 0}
    assert second["groups"] == first["groups"]
    cell_files = sorted((tmp_path / "cache" / "cells").glob("*.json"))
    assert len(cell_files) == 2
    damaged = json.loads(cell_files[0].read_text())
    damaged["result"]["vs_oracle"]["tow"] = 0.123  # the content changed, the checksum did not
    cell_files[0].write_text(json.dumps(damaged))
    with pytest.warns(UserWarning, match="damaged"):
        third = run_experiment(spec, tmp_path / "c")
    assert third["cells"] == {"cells": 2, "reused": 1, "computed": 1}
    for label in ("ssd", "finetune"):
        assert third["groups"][0]["per_seed"][0]["methods"][label]["metrics"] == \
            first["groups"][0]["per_seed"][0]["methods"][label]["metrics"]


def test_results_json_is_strict_and_reruns(tmp_path):
    spec = spec_from_dict(tiny_spec(tmp_path / "cache", methods={"run": ["ssd"]}))
    run_experiment(spec, tmp_path / "out")
    text = (tmp_path / "out" / "results.json").read_text()
    payload = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert payload["groups"][0]["summary"]["methods"]["ssd"]["tow"]["half_width"] is None  # one seed: undefined
    assert load_spec(tmp_path / "out" / "results.json") == spec
    assert (tmp_path / "out" / "forget_indices_seed0.txt").is_file()


SWEEP_SCRIPT = """
import sys, torch
torch.set_num_threads(1)
from memunlearn.experiment import load_spec, run_experiment
results = run_experiment(load_spec(sys.argv[1]), sys.argv[2], log=lambda line: print(line, flush=True))
print("CELLS", results["cells"], flush=True)
"""


def _sweep(spec_path: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-c", SWEEP_SCRIPT, str(spec_path), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _metrics(results: dict) -> list:
    """Everything per cell except timings (which no two runs share)."""
    return [
        {label: (entry["status"], entry.get("metrics"), entry.get("vs_oracle"), entry["cost"]["steps"])
         for label, entry in row["methods"].items()}
        for group in results["groups"] for row in group["per_seed"]
    ]


def _sweep_spec(tmp_path: Path, cache: Path) -> Path:
    spec = spec_from_dict(tiny_spec(cache, methods={"run": ["finetune"], "finetune": {"epochs": 1, "lr": [0.01, 0.02, 0.03, 0.04, 0.05]}},
                                    seeds={"count": 2}))
    return write_spec(spec, tmp_path / f"spec-{cache.name}.toml")


def test_sweep_killed_with_sigkill_resumes_without_recomputing(tmp_path):
    cache = tmp_path / "cache"
    spec_path = _sweep_spec(tmp_path, cache)
    cells_dir = cache / "cells"
    kept: dict[str, bytes] = {}
    for kill_after in (1, 4, 7):  # kill at several points of the sweep
        process = _sweep(spec_path, tmp_path / "out")
        deadline = time.time() + 120
        while time.time() < deadline and len(list(cells_dir.glob("*.json"))) < kill_after and process.poll() is None:
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        for path in cells_dir.glob("*.json"):
            kept.setdefault(path.name, path.read_bytes())
        assert not (tmp_path / "out" / "results.json").exists()
    process = _sweep(spec_path, tmp_path / "out")
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert f"'reused': {len(kept)}" in output  # every cell finished before a kill was reused
    for name, content in kept.items():
        assert (cells_dir / name).read_bytes() == content, f"{name} was rewritten"
    resumed = json.loads((tmp_path / "out" / "results.json").read_text())
    fresh = _sweep(_sweep_spec(tmp_path, tmp_path / "fresh-cache"), tmp_path / "fresh-out")
    output, _ = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, output
    uninterrupted = json.loads((tmp_path / "fresh-out" / "results.json").read_text())
    assert _metrics(resumed) == _metrics(uninterrupted)


def test_two_concurrent_sweeps_on_one_cache_compute_each_cell_once(tmp_path):
    cache = tmp_path / "cache"
    spec_path = _sweep_spec(tmp_path, cache)
    first, second = _sweep(spec_path, tmp_path / "a"), _sweep(spec_path, tmp_path / "b")
    outputs = [p.communicate(timeout=300)[0] for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outputs
    a, b = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("a", "b"))
    assert a["cells"]["computed"] + b["cells"]["computed"] == a["cells"]["cells"] == 10
    assert _metrics(a) == _metrics(b)
    assert len(list(CellStore(cache / "cells").root.glob("*.json"))) == 10


def test_a_spec_reproduces_the_numbers_of_the_benchmark_loop_it_replaced(tmp_path, digits):
    """The removed benchmark scripts trained an original and an oracle per seed, ran each method on
    the split and scored it against the oracle, by hand. The same loop written out here must give
    exactly the numbers the spec-driven core records for the same small configuration."""
    from dataclasses import replace

    from memunlearn.data import subsample
    from memunlearn.evaluation import compare_to_oracle, evaluate
    from memunlearn.forget import make_forget_set
    from memunlearn.methods import unlearn
    from memunlearn.models import build_model
    from memunlearn.training import recipe_for, train

    spec = spec_from_dict(tiny_spec(tmp_path / "cache", forget={"rules": ["classes:3,5"]}, seeds={"list": [4]},
                                    methods={"run": ["finetune", "del"], "finetune": {"epochs": 1, "lr": 0.03},
                                             "del": {"epochs": 1}}, run={"use_tuned": False}))
    results = run_experiment(spec)
    row = results["groups"][0]["per_seed"][0]

    data = subsample(digits, n_train=200, seed=0)
    recipe = recipe_for("digits")
    config = replace(recipe.train, epochs=2, seed=4)

    def fresh():
        return build_model(recipe.model, 1, 10, width=recipe.width, image_size=8, seed=4)

    forget_set = make_forget_set("classes:3,5", data, seed=4)
    forget = data.train.subset(forget_set.indices)
    retain = data.train.subset(forget_set.retain_indices(len(data.train)))
    original = train(fresh(), data.train, config, "cpu").model
    oracle = train(fresh(), retain, config, "cpu").model
    oracle_metrics = evaluate(oracle, forget, retain, data.test, "cpu", 4)
    assert row["oracle"]["metrics"] == oracle_metrics
    for method, hparams in (("finetune", {"epochs": 1, "lr": 0.03}), ("del", {"epochs": 1})):
        model = unlearn(method, original, forget, retain, seed=4, device="cpu", **hparams).model
        metrics = evaluate(model, forget, retain, data.test, "cpu", 4)
        assert row["methods"][method]["metrics"] == metrics, method
        assert row["methods"][method]["vs_oracle"] == compare_to_oracle(metrics, oracle_metrics), method


# ---------------------------------------------------------------------------------------------
# The verdict and the per-class / per-example views are data in results.json


def _stat(mean: float, half: float | None = None, n: int = 3) -> dict:
    return {"mean": mean, "half_width": half, "n": n}


def _summary_row(tow: float, tow_mia: float, time_fraction: float | None = None, **extra) -> dict:
    row = {"tow": _stat(tow), "tow_mia": _stat(tow_mia), **{k: _stat(v) for k, v in extra.items()}}
    if time_fraction is not None:
        row["time_fraction"] = _stat(time_fraction)
    return row


def test_verdict_names_the_cheapest_inside_the_floor_or_the_closest_and_by_how_much():
    from memunlearn.experiment.summary import verdict

    floor = {"tow": _stat(0.99, 0.01), "tow_mia": _stat(0.98, 0.01)}  # bars: 0.98 and 0.97
    oracle = {"acc_forget": _stat(0.70), "acc_retain": _stat(1.0), "acc_test": _stat(0.95)}
    methods = {"slow": _summary_row(0.985, 0.975, 0.9), "fast": _summary_row(0.99, 0.99, 0.2),
               "far": _summary_row(0.95, 0.96, 0.1, acc_forget=0.9, acc_retain=0.99, acc_test=0.93)}
    v = verdict({"noise_floor": floor, "oracle": oracle, "original": _summary_row(0.9, 0.9), "methods": methods})
    assert v["status"] == "inside" and v["inside"] == ["fast", "slow"] and v["cheapest"] == "fast"
    assert v["bars"] == pytest.approx({"tow": 0.98, "tow_mia": 0.97})
    assert v["methods"]["far"]["short"] == pytest.approx({"tow": 0.03, "tow_mia": 0.01})
    assert v["methods"]["far"]["effect"] == pytest.approx({"forget": 0.2, "retain": -0.01, "test": -0.02})
    assert v["methods"]["far"]["closeness"] == pytest.approx(0.95 * 0.96)

    only_far = verdict({"noise_floor": floor, "original": _summary_row(0.9, 0.9), "methods": {"far": methods["far"]}})
    assert only_far["status"] == "none-inside" and only_far["cheapest"] is None
    assert only_far["closest"] == "far" and only_far["closest_short"] == pytest.approx({"tow": 0.03, "tow_mia": 0.01})

    vacuous = verdict({"noise_floor": floor, "original": _summary_row(0.99, 0.99), "methods": methods})
    assert vacuous["status"] == "vacuous" and vacuous["cheapest"] is None and vacuous["inside"] == ["fast", "slow"]
    assert verdict({"methods": methods})["status"] == "no-floor"


def test_verdict_flags_a_method_that_left_the_model_unchanged():
    from memunlearn.experiment.summary import summarise

    def entry(metrics, changed):
        return {"status": "ok", "metrics": metrics, "vs_oracle": {k: 0.9 for k in ("gap_forget", "gap_retain",
                "gap_test", "gap_mia", "tow", "tow_mia")}, "cost": {"params_changed_fraction": changed},
                "per_class": {"test": [1.0, 0.5], "forget": [None, 1.0]}}

    original = {"acc_forget": 1.0, "acc_retain": 1.0, "acc_test": 0.99, "mia_efficacy": 0.0, "loss_mia_auc": 0.53}
    moved = {**original, "acc_forget": 0.9}
    rows = [{"oracle": {"metrics": moved}, "original": {"metrics": original, "vs_oracle": entry(original, 0)["vs_oracle"]},
             "methods": {"same": entry({**original, "loss_mia_auc": 0.52}, 1.0), "frozen": entry(moved, 0.0),
                         "moved": entry(moved, 0.4)}} for _ in range(2)]
    summary = summarise(rows, ["same", "frozen", "moved"])
    v = summary["verdict"]
    assert v["unchanged"] == ["same", "frozen"]
    assert "equal the original model's on every seed" in v["methods"]["same"]["unchanged"]
    assert v["methods"]["frozen"]["unchanged"] == "it changed no parameter"
    assert v["methods"]["moved"]["unchanged"] is None
    assert summary["methods"]["moved"]["params_changed_fraction"]["mean"] == pytest.approx(0.4)
    assert summary["methods"]["moved"]["per_class"] == {"forget": [None, 1.0], "test": [1.0, 0.5]}


def test_exposed_examples_are_the_largest_margins_over_the_oracle_with_their_thumbnails():
    import base64
    import io

    import numpy as np
    import torch
    from PIL import Image

    from memunlearn.experiment.views import example_thumbnails, exposed_examples, model_views

    labels = torch.tensor([0, 1, 1, 0])
    mine = torch.tensor([[4.0, 0.0], [0.0, 4.0], [0.0, 0.1], [0.0, 3.0]])
    oracle = torch.tensor([[0.0, 0.0], [0.0, 4.0], [0.0, 0.0], [0.0, 3.0]])
    views = model_views({"forget": (mine, labels)}, 2)
    oracle_views = model_views({"forget": (oracle, labels)}, 2)
    assert views["per_class"]["forget"] == [0.5, 1.0]
    indices = np.array([10, 11, 12, 13])
    exposed = exposed_examples(views, oracle_views, indices, labels.numpy(), scores=np.linspace(0, 1, 20), k=2)
    assert [e["index"] for e in exposed] == [10, 12]  # margins ≈ 0.48 and 0.02; 11 and 13 match the oracle
    assert exposed[0]["margin"] == pytest.approx(exposed[0]["confidence"] - exposed[0]["oracle_confidence"])
    assert exposed[0]["memorization"] == pytest.approx(10 / 19) and exposed[0]["predicted"] == 0
    images = torch.randn(20, 1, 8, 8)
    uris = example_thumbnails(images, {10, 12})
    picture = Image.open(io.BytesIO(base64.b64decode(uris["10"].split(",", 1)[1])))
    assert picture.size == (8, 8) and picture.mode == "L"
    assert example_thumbnails(torch.randn(20, 30), {1}) == {}  # tabular data: no thumbnails
