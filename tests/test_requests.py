"""Deletion requests over time: K successive forget sets, each drawn from what is still retained,
each unlearned from the previous request's model and scored against an oracle retrained without
every request so far (memunlearn.experiment.requests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from memunlearn import load_dataset
from memunlearn.checkpoints import artefact_key
from memunlearn.cli import main
from memunlearn.data import subsample
from memunlearn.errors import ConfigError, ForgetSetError
from memunlearn.experiment import load_spec, resolve_setting, run_experiment, spec_from_dict, write_spec
from memunlearn.experiment import requests as requests_module
from memunlearn.experiment.requests import draw_requests, request_seed
from memunlearn.experiment.setup import train_cached
from memunlearn.forget import make_forget_set
from memunlearn.io import sha256_of_tensors
from memunlearn.rum import retain_indices_per_step

N_TRAIN = 300
EPOCHS = 3


@pytest.fixture(scope="module")
def small_digits():
    return subsample(load_dataset("digits"), n_train=N_TRAIN, seed=0)


def requests_spec(cache: Path, count: int = 3, methods: dict | None = None, **run):
    return spec_from_dict({
        "data": {"train_subset": N_TRAIN}, "model": {"epochs": EPOCHS}, "evaluation": {"noise_floor": False},
        "forget": {"rule": "iid:0.05"}, "requests": {"count": count},
        "methods": methods or {"run": ["finetune"], "finetune": {"epochs": 1}},
        "run": {"device": "cpu", "cache_dir": str(cache), "use_tuned": False, **run},
    })


def weights(model) -> str:
    return sha256_of_tensors(model.state_dict())


def comparable(records: list[dict]) -> list:
    """Everything in a sequence's records except timings (which no two runs share)."""
    return [(r["status"], r.get("metrics"), r.get("vs_oracle"), r.get("cost", {}).get("steps"),
             r.get("cumulative_cost", {}).get("examples"), r.get("key")) for r in records]


# ------------------------------------------------------------------------------------------------
# Drawing the sequence (no training)


def test_each_request_is_drawn_from_what_is_still_retained(small_digits):
    sets = draw_requests("iid:0.05", small_digits, seed=0, count=4)
    assert np.array_equal(sets[0].indices, make_forget_set("iid:0.05", small_digits, 0).indices)
    forgotten = np.concatenate([s.indices for s in sets])
    assert len(np.unique(forgotten)) == len(forgotten)  # no index forgotten twice
    retains = retain_indices_per_step(N_TRAIN, [s.indices for s in sets])
    remaining = N_TRAIN
    for forget_set, retain in zip(sets, retains):
        assert len(forget_set) == round(0.05 * remaining)  # a fraction of what is still retained
        assert len(retain) == remaining - len(forget_set)  # the retain set shrinks by exactly this request
        assert not np.isin(forget_set.indices, retain).any()
        remaining = len(retain)
    assert [len(s) for s in sets] == [15, 14, 14, 13]
    assert [s.seed for s in sets] == [request_seed(0, k) for k in range(1, 5)]
    assert sets[1].info["drawn_from"] == N_TRAIN - 15
    again = draw_requests("iid:0.05", small_digits, seed=0, count=4)
    assert [s.indices.tolist() for s in again] == [s.indices.tolist() for s in sets]


def test_class_rules_draw_within_their_classes_and_running_out_is_a_config_error(small_digits):
    labels = small_digits.train.y.numpy()
    sets = draw_requests("classes:3,5:0.05", small_digits, seed=0, count=3)
    assert all(np.isin(labels[s.indices], [3, 5]).all() for s in sets)
    assert len(np.unique(np.concatenate([s.indices for s in sets]))) == sum(len(s) for s in sets)
    # 45 of the ~60 examples of classes 3 and 5, then 15% of the 255 left: more than remain
    with pytest.raises(ConfigError, match=r"request 2 of the forget rule 'classes:3,5:0.15' \(seed 0\) cannot be "
                                          r"drawn from the 255 examples still retained"):
        draw_requests("classes:3,5:0.15", small_digits, seed=0, count=3)


def test_ranked_rules_rank_the_remainder_by_the_original_scores(small_digits, tmp_path):
    scores = np.random.default_rng(1).random(N_TRAIN)
    np.save(tmp_path / "scores.npy", scores)
    sets = draw_requests(f"memorization:high:{tmp_path / 'scores.npy'}:0.05", small_digits, seed=0, count=3)
    order = np.argsort(-scores)  # most memorized first
    start = 0
    for forget_set in sets:  # each request takes the next-highest block of what is left
        assert sorted(forget_set.indices.tolist()) == sorted(order[start:start + len(forget_set)].tolist())
        start += len(forget_set)
    assert [len(s) for s in sets] == [15, 14, 14]


@pytest.mark.parametrize("rule", ["full-class:3", "mislabeled:0.05", "indices:forget.txt", "backdoor:0.05:0"])
def test_rules_that_make_one_set_cannot_make_a_sequence(rule):
    with pytest.raises(ConfigError, match=r"\[requests\] count: 2 requests of the forget rule .* cannot be drawn"):
        spec_from_dict({"forget": {"rule": rule}, "requests": {"count": 2}, "methods": {"run": ["finetune"]}})
    spec_from_dict({"forget": {"rule": rule}, "requests": {"count": 1}, "methods": {"run": ["finetune"]}})


@pytest.mark.parametrize("text, message", [
    ("[requests]\ncount = 0\n", "spec.toml:2: [requests] count: must be at least 1, got 0"),
    ("[requests]\ncount = -2\n", "spec.toml:2: [requests] count: must be at least 1, got -2"),
    ("[requests]\ncount = 'three'\n", "spec.toml:2: [requests] count: must be an integer"),
    ("[requests]\nkount = 3\n", "spec.toml:2: [requests] kount: unknown key; known: count"),
])
def test_requests_errors_in_a_spec_name_the_key_and_line(tmp_path, text, message):
    (tmp_path / "spec.toml").write_text(text)
    with pytest.raises(ConfigError) as error:
        load_spec(tmp_path / "spec.toml")
    assert message in str(error.value)


def test_requests_round_trip_through_a_spec_file(tmp_path):
    spec = requests_spec(tmp_path / "cache", count=4)
    assert load_spec(write_spec(spec, tmp_path / "spec.toml")) == spec
    assert spec.requests.count == 4
    assert "requests" not in spec_from_dict({"methods": {"run": ["finetune"]}}).to_dict()  # the usual shape


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_cli_requests_must_be_a_positive_integer(value, capsys):
    assert main(["run", "--requests", value]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "--requests" in lines[0] and "must be an integer >= 1" in lines[0]


def test_cli_refuses_a_sequence_of_a_single_set_rule_before_any_work(tmp_path, capsys):
    cache = tmp_path / "cache"
    assert main(["run", "--forget", "full-class:3", "--requests", "2", "--methods", "finetune",
                 "--cache-dir", str(cache), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "full-class:3" in lines[0]
    assert not (cache / "checkpoints").exists() and not (tmp_path / "out").exists()


def test_a_sequence_that_runs_out_stops_before_anything_trains(tmp_path):
    spec = spec_from_dict({
        "data": {"train_subset": N_TRAIN}, "forget": {"rule": "classes:3,5:0.15"}, "requests": {"count": 3},
        "methods": {"run": ["finetune"]}, "run": {"device": "cpu", "cache_dir": str(tmp_path / "cache")},
    })
    with pytest.raises(ConfigError, match="request 2 of the forget rule"):
        run_experiment(spec, tmp_path / "out")
    assert not list((tmp_path / "cache").glob("checkpoints/*.safetensors"))


# ------------------------------------------------------------------------------------------------
# End to end on digits


def test_requests_end_to_end(tmp_path, monkeypatch):
    oracle_calls, unlearn_calls = [], []
    real_train, real_unlearn = requests_module.train_cached, requests_module.unlearn

    def spy_train(setting, examples, tag, seed, role, extra_key=None):
        oracle_calls.append((examples, role, seed, extra_key))
        return real_train(setting, examples, tag, seed, role, extra_key)

    def spy_unlearn(name, model, forget, retain, **hparams):
        result = real_unlearn(name, model, forget, retain, **hparams)
        unlearn_calls.append((weights(model), weights(result.model)))
        return result

    monkeypatch.setattr(requests_module, "train_cached", spy_train)
    monkeypatch.setattr(requests_module, "unlearn", spy_unlearn)
    spec = requests_spec(tmp_path / "cache")
    results = run_experiment(spec, tmp_path / "out")
    group = results["groups"][0]
    requests = group["requests"]
    records = requests["methods"]["finetune"]["per_seed"]["0"]
    plan = requests["per_seed"]["0"]["requests"]
    assert requests["count"] == 3 and [r["request"] for r in records] == [1, 2, 3]
    assert all(r["status"] == "ok" for r in records)

    # The forget sets: saved beside the results, request 1 = the experiment's, disjoint.
    out = tmp_path / "out"
    files = [np.loadtxt(out / f"forget_indices_seed0_request{k}.txt", dtype=np.int64) for k in (1, 2, 3)]
    assert np.array_equal(files[0], np.loadtxt(out / "forget_indices_seed0.txt", dtype=np.int64))
    everything = np.concatenate(files)
    assert len(np.unique(everything)) == len(everything)
    retain_size = N_TRAIN
    for record, row, indices in zip(records, plan, files):
        assert record["forget_size"] == row["forget_size"] == len(indices)
        assert record["retain_size"] == row["retain_size"] == retain_size - len(indices)
        assert record["forgotten_total"] == N_TRAIN - record["retain_size"]
        retain_size = record["retain_size"]

    # The k-th oracle: the oracle's role and seed, trained on D minus every request so far.
    train = resolve_setting(spec).dataset.train
    assert len(oracle_calls) == 3
    for k, (examples, role, seed, extra_key) in enumerate(oracle_calls, start=1):
        forgotten = np.sort(np.concatenate(files[:k]))
        assert (role, seed) == ("oracle", 0)
        assert extra_key == {"forget": artefact_key(indices=forgotten.tolist())}
        assert plan[k - 1]["oracle"]["forgotten_key"] == extra_key["forget"]
        assert torch.equal(examples.x, train.subset(np.setdiff1d(np.arange(N_TRAIN), forgotten)).x)
        assert plan[k - 1]["oracle"]["examples"] == EPOCHS * records[k - 1]["retain_size"]
    assert plan[0]["oracle"]["reused"]  # the first is the experiment's own oracle (same key)
    assert plan[0]["oracle"]["metrics"] == group["per_seed"][0]["oracle"]["metrics"]

    # Request k starts from request k-1's model, request 1 from the original.
    setting = resolve_setting(spec)
    original, _, _, reused = train_cached(setting, train, setting.dataset.fingerprint, 0, "original")
    assert reused
    assert len(unlearn_calls) == 3
    assert unlearn_calls[0][0] == weights(original)
    assert unlearn_calls[1][0] == unlearn_calls[0][1] and unlearn_calls[2][0] == unlearn_calls[1][1]
    assert len({after for _, after in unlearn_calls}) == 3

    # Request 1 is the experiment's own cell; cumulative costs add up.
    assert records[0]["metrics"] == group["per_seed"][0]["methods"]["finetune"]["metrics"]
    for k, record in enumerate(records, start=1):
        cumulative = record["cumulative_cost"]
        for name in ("steps", "examples"):
            assert cumulative[name] == sum(r["cost"][name] for r in records[:k])
        assert cumulative["wall_time"] == pytest.approx(sum(r["cost"]["wall_time"] for r in records[:k]))
        oracle = plan[k - 1]["oracle"]
        assert cumulative["examples_fraction"] == pytest.approx(cumulative["examples"] / oracle["examples"])
        assert cumulative["time_fraction"] == pytest.approx(cumulative["wall_time"] / oracle["wall_time"])
        assert record["forgotten_so_far"]["size"] == sum(len(f) for f in files[:k])
    assert records[0]["forgotten_so_far"]["acc"] == pytest.approx(records[0]["metrics"]["acc_forget"])

    # The summary per request index.
    summary = requests["methods"]["finetune"]["summary"]
    assert [s["request"] for s in summary] == [1, 2, 3] and all(s["seeds_ok"] == 1 for s in summary)
    assert summary[2]["tow"]["mean"] == pytest.approx(records[2]["vs_oracle"]["tow"])
    assert summary[2]["cumulative_examples_fraction"]["mean"] == pytest.approx(
        records[2]["cumulative_cost"]["examples_fraction"])
    assert [s["request"] for s in requests["oracle"]["summary"]] == [1, 2, 3]
    assert requests["cells"] == {"computed": 3, "reused": 0}

    # Strict JSON; only the last model of the chain is kept; a second run reuses every request.
    text = (out / "results.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    kept = list((tmp_path / "cache" / "checkpoints").glob("request-*.safetensors"))
    assert [p.name for p in kept] == [f"request-{records[2]['key']}.safetensors"]
    again = run_experiment(spec, tmp_path / "again")
    assert again["groups"][0]["requests"]["cells"] == {"computed": 0, "reused": 3}
    assert again["groups"][0]["requests"]["methods"] == requests["methods"]
    assert len(unlearn_calls) == 3

    # Request 3's result lost: it needs request 2's model, whose file was dropped once request 3
    # finished, so the chain is computed again from the original, to the same numbers.
    (tmp_path / "cache" / "cells" / f"{records[2]['key']}.json").unlink()
    rebuilt = run_experiment(spec, tmp_path / "rebuilt")["groups"][0]["requests"]
    assert rebuilt["cells"] == {"computed": 3, "reused": 2}
    assert comparable(rebuilt["methods"]["finetune"]["per_seed"]["0"]) == comparable(records)
    assert [before for before, _ in unlearn_calls[3:]] == [before for before, _ in unlearn_calls[:3]]


def test_a_killed_sequence_resumes_at_the_first_unfinished_request(tmp_path, monkeypatch):
    real = requests_module.compute_request
    made: dict[int, str] = {}

    def interrupted(plan, cell, k, previous_model, *args):
        if k == 3:
            raise KeyboardInterrupt
        record, model = real(plan, cell, k, previous_model, *args)
        made[k] = weights(model)
        return record, model

    monkeypatch.setattr(requests_module, "compute_request", interrupted)
    spec = requests_spec(tmp_path / "cache")
    with pytest.raises(KeyboardInterrupt):
        run_experiment(spec, tmp_path / "out")
    assert not (tmp_path / "out" / "results.json").exists()
    assert len(list((tmp_path / "cache" / "checkpoints").glob("request-*.safetensors"))) == 1  # request 2's

    started_from: list[tuple[int, str]] = []

    def spy(plan, cell, k, previous_model, *args):
        started_from.append((k, weights(previous_model)))
        return real(plan, cell, k, previous_model, *args)

    monkeypatch.setattr(requests_module, "compute_request", spy)
    resumed = run_experiment(spec, tmp_path / "out")
    assert started_from == [(3, made[2])]  # only request 3 ran, from request 2's kept model
    assert resumed["groups"][0]["requests"]["cells"] == {"computed": 1, "reused": 2}

    fresh = run_experiment(requests_spec(tmp_path / "fresh-cache"), tmp_path / "fresh")
    resumed_records = resumed["groups"][0]["requests"]["methods"]["finetune"]["per_seed"]["0"]
    fresh_records = fresh["groups"][0]["requests"]["methods"]["finetune"]["per_seed"]["0"]
    assert comparable(resumed_records) == comparable(fresh_records)


def test_a_request_a_ranked_rule_cannot_draw_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    real = requests_module._draw_from

    def ranked_and_exhausted(rule, dataset, remaining, seed, k, context, scores_memo):
        context.original_model(rule)  # ranks with the original (so it cannot be drawn before it trains)
        if k == 3:
            raise ForgetSetError(f"{rule}: the forget set is empty")
        return real(rule, dataset, remaining, seed, k, context, scores_memo)

    monkeypatch.setattr(requests_module, "_draw_from", ranked_and_exhausted)
    spec = requests_spec(tmp_path / "cache", count=4)
    requests = run_experiment(spec, tmp_path / "out")["groups"][0]["requests"]
    records = requests["methods"]["finetune"]["per_seed"]["0"]
    assert [r["status"] for r in records] == ["ok", "ok", "error", "skipped"]
    assert "request 3 of the forget rule 'iid:0.05' (seed 0) cannot be drawn from the 271 examples still" \
        in records[2]["error"]
    assert records[3]["reason"] == "request 3 error"
    assert [s["seeds_ok"] for s in requests["methods"]["finetune"]["summary"]] == [1, 1, 0, 0]
    assert "error" in requests["per_seed"]["0"]["requests"][2]
    assert [s["request"] for s in requests["oracle"]["summary"]] == [1, 2, 3, 4]


@pytest.mark.parametrize("score, refreshed", [("grad-norm", [False, True, True]), ("confidence", [False] * 3)])
def test_rum_scores_from_the_model_alone_are_refreshed_per_request(tmp_path, score, refreshed):
    spec = requests_spec(tmp_path / "cache", methods={"run": ["rum-f:finetune"], "finetune": {"epochs": 1}},
                         rum_score=score)
    records = run_experiment(spec)["groups"][0]["requests"]["methods"]["rum-f:finetune"]["per_seed"]["0"]
    assert [r["status"] for r in records] == ["ok"] * 3
    assert [r["rum_score"]["refreshed"] for r in records] == refreshed
    if score == "grad-norm":
        assert records[1]["rum_score"]["scores_from"] == "the model after request 1"
    else:
        assert "training dynamics" in records[2]["rum_score"]["reason"]
    previous_retain = N_TRAIN
    for record in records:
        assert sum(record["rum"]["partition_sizes"].values()) == record["forget_size"]
        steps = record["steps"]  # each step's retain set also excludes the earlier requests
        assert steps[0]["retain_size"] == previous_retain - steps[0]["forget_size"]
        assert steps[-1]["retain_size"] == record["retain_size"]
        previous_retain = record["retain_size"]
