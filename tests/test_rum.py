"""RUM (SPEC §5): refinement, sequential retain-set bookkeeping, variants, pipelines, run + CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from memunlearn.cli import main
from memunlearn.data.core import Examples
from memunlearn.errors import ConfigError
from memunlearn.experiment import RunConfig, run_experiment
from memunlearn.forget import ForgetSet, make_forget_set
from memunlearn.methods import METHODS, register_method
from memunlearn.methods.base import UnlearningRun
from memunlearn.models import build_model
from memunlearn.rum import (
    Step, check_pipeline, parse_entry, plan, refine, retain_indices_per_step, run_pipeline, shuffle_split,
)

PARTS = {"low": np.array([1, 5]), "mid": np.array([0]), "high": np.array([7, 9])}


# --- bookkeeping -----------------------------------------------------------------------------


def test_retain_set_of_each_step_hand_checked():
    # D = 0..9; F1 = {1, 5}, F2 = {0}, F3 = {7, 9}: step k keeps every partition not processed yet
    retains = retain_indices_per_step(10, list(PARTS.values()))
    assert [r.tolist() for r in retains] == [
        [0, 2, 3, 4, 6, 7, 8, 9],
        [2, 3, 4, 6, 7, 8, 9],
        [2, 3, 4, 6, 8],
    ]


@pytest.mark.parametrize("partitions, message", [
    ([np.array([1, 2]), np.array([2])], "overlap"),
    ([np.array([1, 1])], "overlap"),
    ([np.array([10])], "outside the training set"),
])
def test_retain_bookkeeping_refuses_bad_partitions(partitions, message):
    with pytest.raises(ConfigError, match=message):
        retain_indices_per_step(10, partitions)


def test_refine_by_scores_gives_tertiles_low_to_high():
    scores = np.array([0.5, 0.9, 0.0, 0.1, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6])
    # forget set {0, 2, 3, 5, 6, 8, 9}: by score 2(0.0) 3(0.1) 6(0.2) 8(0.4) 0(0.5) 9(0.6) 5(0.7)
    parts = refine([0, 2, 3, 5, 6, 8, 9], scores)
    assert list(parts) == ["low", "mid", "high"]
    assert {k: v.tolist() for k, v in parts.items()} == {"low": [2, 3, 6], "mid": [0, 8], "high": [5, 9]}


def test_refine_ties_broken_by_index():
    parts = refine([4, 3, 2, 1, 0, 5], np.zeros(6))
    assert {k: v.tolist() for k, v in parts.items()} == {"low": [0, 1], "mid": [2, 3], "high": [4, 5]}


def test_refine_uses_stored_mix_partitions_and_checks_them():
    forget_set = ForgetSet(np.array([0, 1, 5, 7, 9]), "memorization:mix", 0,
                           info={"partitions": {"low": [1, 5], "mid": [0], "high": [9, 7]}})
    parts = refine(forget_set, scores=np.arange(10.0)[::-1])  # stored parts win over scores
    assert {k: v.tolist() for k, v in parts.items()} == {"low": [1, 5], "mid": [0], "high": [7, 9]}
    broken = ForgetSet(np.array([0, 1, 5]), "memorization:mix", 0, info={"partitions": {"low": [1], "mid": [0], "high": [9]}})
    with pytest.raises(ConfigError, match="do not make up the forget set"):
        refine(broken)
    with pytest.raises(ConfigError, match="carries 3 partitions"):
        refine(forget_set, parts=2)
    with pytest.raises(ConfigError, match="needs memorization scores"):
        refine([0, 1, 2])


def test_mix_forget_set_partitions_are_its_parts(digits, tmp_path):
    scores = np.random.default_rng(0).random(len(digits.train))
    path = tmp_path / "scores.npy"
    np.save(path, scores)
    forget_set = make_forget_set(f"memorization:mix:{path}:0.05", digits, seed=0)
    parts = refine(forget_set)
    assert np.array_equal(np.sort(np.concatenate(list(parts.values()))), forget_set.indices)
    # every low example scores below every mid one, every mid below every high one
    assert scores[parts["low"]].max() < scores[parts["mid"]].min() <= scores[parts["mid"]].max() < scores[parts["high"]].min()


# --- variants and entries --------------------------------------------------------------------


def test_variants_step_lists():
    hp = {"finetune": {"epochs": 2}}
    vanilla = plan("vanilla", ["finetune"], PARTS, hparams=hp)
    assert [(s.partition, s.method, s.hparams) for s in vanilla.steps] == [("all", "finetune", {"epochs": 2})]
    assert vanilla.partitions["all"].tolist() == [0, 1, 5, 7, 9]
    rum_f = plan("rum-f", ["neggrad+"], PARTS)
    assert [(s.partition, s.method) for s in rum_f.steps] == [("low", "neggrad+"), ("mid", "neggrad+"), ("high", "neggrad+")]
    rum = plan("rum", ["none", "finetune", "salun"], PARTS, hparams=hp)
    # the official recipe of this pipeline (RUM main_rum.py:50-51) under the method's own values
    assert [(s.partition, s.method, s.hparams) for s in rum.steps] == [
        ("low", "none", {}), ("mid", "finetune", {"epochs": 2, "lr": 0.1}), ("high", "salun", {"epochs": 5, "lr": 0.1})]
    ours = plan("rum", ["none", "finetune", "salun"], PARTS, hparams={**hp, "rum:none:finetune:salun": {"recipe": "ours"}})
    assert [s.hparams for s in ours.steps] == [{}, {"epochs": 2}, {}]
    shuffle = plan("shuffle", ["finetune"], PARTS, seed=3)
    assert [s.partition for s in shuffle.steps] == ["shuffle1", "shuffle2", "shuffle3"]
    assert {s.method for s in shuffle.steps} == {"finetune"}
    assert sorted(np.concatenate(list(shuffle.partitions.values())).tolist()) == [0, 1, 5, 7, 9]


def test_official_rum_f_neggrad_plus_recipe_per_step():
    """RUM main_rum_proxy.py:51-53: NegGrad+ low → mid → high with α .99/.97/.97, epochs 5/5/10,
    lr .01/.01/.001 (α = the weight of the retain loss, unlearn/neggrad.py:42 = our beta)."""
    from memunlearn.rum import PIPELINE_RECIPES

    steps = plan("rum-f", ["neggrad+"], PARTS).steps
    assert [(s.hparams["beta"], s.hparams["epochs"], s.hparams["lr"]) for s in steps] == [
        (0.99, 5, 0.01), (0.97, 5, 0.01), (0.97, 10, 0.001)]
    assert str(PIPELINE_RECIPES["rum-f:neggrad+"].source) == "kairanzhao/RUM@f593c9d:main_rum_proxy.py:51-53"
    # other methods in RUM^F have no official per-step settings: each step runs the method's defaults
    assert [s.hparams for s in plan("rum-f", ["finetune"], PARTS).steps] == [{}, {}, {}]


def test_step_settings_win_over_method_settings_which_win_over_the_recipe():
    hp = {"neggrad+": {"lr": 0.05}, "rum-f:neggrad+": {"step2": {"lr": 0.2, "epochs": 1}}}
    steps = plan("rum-f", ["neggrad+"], PARTS, hparams=hp).steps
    assert [(s.hparams["lr"], s.hparams["epochs"], s.hparams["beta"]) for s in steps] == [
        (0.05, 5, 0.99), (0.2, 1, 0.97), (0.05, 10, 0.97)]
    shuffle = plan("shuffle", ["finetune"], PARTS, hparams={"shuffle:finetune": {"step3": {"epochs": 4}}}).steps
    assert [s.hparams for s in shuffle] == [{}, {}, {"epochs": 4}]


@pytest.mark.parametrize("table, message", [
    ({"step4": {"lr": 0.1}}, "has no step 'step4'; its steps are step1, step2, step3"),
    ({"low": {"lr": 0.1}}, "has no step 'low'"),
    ({"step1": {"alpha": 0.9}}, "step1 (neggrad+): method 'neggrad+' has no hyperparameter(s) ['alpha']"),
    ({"step2": {"lr": -1.0}}, "step2 (neggrad+)"),
    ({"recipe": "paper"}, "unknown recipe of pipeline 'rum-f:neggrad+' 'paper'; known: official, ours"),
])
def test_bad_step_settings_are_refused(table, message):
    with pytest.raises(ConfigError) as info:
        plan("rum-f", ["neggrad+"], PARTS, hparams={"rum-f:neggrad+": table})
    assert message in str(info.value)


def test_none_steps_and_vanilla_step_names():
    with pytest.raises(ConfigError, match="step1 is a none step: it takes no settings"):
        plan("rum", ["none", "finetune", "salun"], PARTS, hparams={"rum:none:finetune:salun": {"step1": {"lr": 0.1}}})
    with pytest.raises(ConfigError, match="its steps are step1 "):
        plan("vanilla", ["finetune"], PARTS, hparams={"vanilla:finetune": {"step2": {"lr": 0.1}}})


def test_spec_and_set_write_step_settings(tmp_path):
    from memunlearn.cli.common import merge_assignments, parse_assignments
    from memunlearn.experiment import load_spec, spec_from_dict

    path = tmp_path / "spec.toml"
    path.write_text('[methods]\nrun = ["rum-f:neggrad+"]\n\n[methods."rum-f:neggrad+"]\n'
                    'step3 = { lr = [0.001, 0.002] }\n\n[methods."rum-f:neggrad+".step1]\nepochs = 2\n')
    spec = load_spec(path)
    cells = spec.method_cells()
    assert [c.label for c in cells] == ["rum-f:neggrad+[step3.lr=0.001]", "rum-f:neggrad+[step3.lr=0.002]"]
    assert cells[0].hparams == {"neggrad+": {}, "rum-f:neggrad+": {"step3": {"lr": 0.001}, "step1": {"epochs": 2}}}
    merged = merge_assignments(spec.hparams, parse_assignments(["rum-f:neggrad+.step1.lr=0.3"]))
    assert merged["rum-f:neggrad+"]["step1"] == {"epochs": 2, "lr": 0.3}
    path.write_text('[methods]\nrun = ["rum-f:neggrad+"]\n\n[methods."rum-f:neggrad+".step5]\nlr = 0.1\n')
    with pytest.raises(ConfigError, match=r"spec.toml:4: \[methods.rum-f:neggrad\+\] step5: pipeline 'rum-f:neggrad\+' has no step 'step5'"):
        load_spec(path)
    with pytest.raises(ConfigError, match="not among the methods run"):
        spec_from_dict({"methods": {"run": ["finetune"], "rum-f:neggrad+": {"step1": {"lr": 0.1}}}})
    # an old spec (per-method tables only) still parses, and its cells carry no pipeline table
    old = spec_from_dict({"methods": {"run": ["rum:none:finetune:salun"], "finetune": {"epochs": 1}}})
    assert old.method_cells()[0].hparams == {"finetune": {"epochs": 1}, "salun": {}}


def test_shuffle_split_is_seeded_and_covers_the_forget_set():
    forget = np.arange(100, 130)
    a, b, c = (shuffle_split(forget, 3, seed) for seed in (0, 0, 1))
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert any(not np.array_equal(a[k], c[k]) for k in a)
    assert [len(v) for v in a.values()] == [10, 10, 10]
    assert np.array_equal(np.sort(np.concatenate(list(a.values()))), forget)


@pytest.mark.parametrize("entry, message", [
    ("rum:none:finetune", "has 2 step(s) but takes one method per partition (3)"),
    ("rum-f:finetune:salun", "takes exactly one method"),
    ("rum:none:finetune:bogus", "unknown method 'bogus'"),
    ("rumx:finetune", "unknown RUM variant 'rumx'"),
    ("rum:", "give the pipeline's methods"),
])
def test_bad_entries(entry, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_pipeline(*parse_entry(entry))


def test_entry_syntax():
    assert parse_entry("rum:none:neggrad+:salun") == ("rum", ["none", "neggrad+", "salun"])
    assert parse_entry("neggrad+") is None


# --- running pipelines -----------------------------------------------------------------------


def index_examples(n: int) -> Examples:
    """x[i] = i, so a method can tell which training examples it was given."""
    return Examples(torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1), torch.zeros(n, dtype=torch.int64))


def tiny_linear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(1, 2))


@pytest.fixture
def probe():
    """A test-only method: records what it gets and adds 1 to every parameter."""
    calls = []

    def rum_probe(model, forget, retain, mask=None, *, seed: int = 0, device: str = "auto", bump: float = 1.0):
        calls.append({"weight": float(model[1].weight[0, 0].detach()), "forget": sorted(forget.x.flatten().int().tolist()),
                      "retain": sorted(retain.x.flatten().int().tolist()), "mask": mask})
        run = UnlearningRun("_rum_probe", model, mask, device="cpu", seed=seed)
        with torch.no_grad():
            for p in run.model.parameters():
                p.add_(bump)
        run.steps, run.examples = 1, len(forget)
        return run.finish({"bump": bump})

    register_method("_rum_probe", rum_probe)
    yield calls
    METHODS.unregister("_rum_probe")


def test_steps_run_sequentially_with_shrinking_retain_sets(probe):
    model = tiny_linear()
    start = float(model[1].weight[0, 0].detach())
    steps = [Step("low", "_rum_probe"), Step("mid", "none"), Step("high", "_rum_probe", {"bump": 2.0})]
    result = run_pipeline(model, index_examples(10), PARTS, steps, seed=0, device="cpu")
    # step 3 started from step 1's model (+1), not from the original
    assert [c["weight"] for c in probe] == pytest.approx([start, start + 1])
    assert float(result.model[1].weight[0, 0].detach()) == pytest.approx(start + 3)
    assert float(model[1].weight[0, 0].detach()) == start, "the original model was modified"
    assert probe[0]["forget"] == [1, 5] and probe[0]["retain"] == [0, 2, 3, 4, 6, 7, 8, 9]
    # the mid partition was processed by `none` but left the retain set all the same
    assert probe[1]["forget"] == [7, 9] and probe[1]["retain"] == [2, 3, 4, 6, 8]
    assert [r["method"] for r in result.step_records] == ["_rum_probe", "none", "_rum_probe"]
    assert result.step_records[1]["cost"]["steps"] == 0 and result.step_records[1]["cost"]["wall_time"] == 0
    assert result.cost.steps == 2 and result.cost.examples == 4
    assert result.cost.wall_time == pytest.approx(sum(r["cost"]["wall_time"] for r in result.step_records))
    assert result.cost.params_changed == 4  # every entry of Linear(1, 2) (2 weights, 2 biases) moved


def test_none_steps_do_nothing_and_cost_nothing():
    model = tiny_linear()
    steps = [Step(p, "none") for p in PARTS]
    result = run_pipeline(model, index_examples(10), PARTS, steps)
    assert result.model is not model
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), result.model.state_dict().values()))
    assert result.cost.steps == result.cost.examples == result.cost.params_changed == 0


def test_masks_are_passed_per_partition(probe):
    mask = {"1.weight": torch.tensor([[True], [False]]), "1.bias": torch.tensor([False, False])}
    steps = [Step(p, "_rum_probe") for p in PARTS]
    model = tiny_linear()
    result = run_pipeline(model, index_examples(10), PARTS, steps, masks={"mid": mask})
    assert [c["mask"] is mask for c in probe] == [False, True, False]
    with pytest.raises(ConfigError, match="unknown RUM partition"):
        run_pipeline(model, index_examples(10), PARTS, steps, masks={"middle": mask})
    assert result.cost.params_changed == 4


@pytest.mark.parametrize("steps, message", [
    ([Step("low", "none"), Step("mid", "none")], "never processed: \\['high'\\]"),
    ([Step("low", "none"), Step("low", "none"), Step("mid", "none"), Step("high", "none")], "processed twice"),
    ([Step("lo", "none")], "unknown RUM partition 'lo'"),
    ([Step("low", "none"), Step("mid", "none"), Step("high", "bogus")], "unknown method 'bogus'"),
])
def test_pipeline_refuses_bad_steps(steps, message):
    with pytest.raises(ConfigError, match=message):
        run_pipeline(tiny_linear(), index_examples(10), PARTS, steps)


def test_del_step_computes_its_mask_on_its_partition(digits, monkeypatch):
    import memunlearn.methods.del_method as del_method

    seen = []
    real = del_method.localize

    def recording_localize(model, forget, strategy, budget, **kwargs):
        seen.append((strategy, len(forget)))
        return real(model, forget, strategy, budget, **kwargs)

    monkeypatch.setattr(del_method, "localize", recording_localize)
    parts = refine(np.arange(30), np.arange(len(digits.train), dtype=float))
    model = build_model("cnn", 1, 10, width=4, image_size=8, seed=0)
    steps = [Step("low", "none"), Step("mid", "del", {"epochs": 1}), Step("high", "del", {"epochs": 1})]
    result = run_pipeline(model, digits.train.subset(np.arange(200)), parts, steps, device="cpu")
    assert seen == [("del", 10), ("del", 10)]
    assert result.cost.steps > 0


# --- `memunlearn run` and `memunlearn rum` ---------------------------------------------------

TINY = dict(epochs=2, width=4, train_subset=300, device="cpu", hparams={"finetune": {"epochs": 1}})


def test_run_with_rum_entries(tmp_path):
    tiny = {**TINY, "hparams": {**TINY["hparams"], "rum:none:finetune:finetune": {"step3": {"epochs": 2}}}}
    config = RunConfig(methods=("finetune", "vanilla:finetune", "rum:none:finetune:finetune", "shuffle:finetune"), **tiny)
    results = run_experiment(config, tmp_path / "out")
    row = results["groups"][0]["per_seed"][0]
    # vanilla is the plain method run through the pipeline machinery: identical numbers
    assert row["methods"]["vanilla:finetune"]["metrics"] == row["methods"]["finetune"]["metrics"]
    assert row["rum"]["score"] == "confidence" and row["rum"]["source"] == "tertiles"
    assert sum(row["rum"]["partition_sizes"].values()) == row["forget_size"] == 30
    steps = row["methods"]["rum:none:finetune:finetune"]["steps"]
    assert [(s["partition"], s["method"], s["retain_size"]) for s in steps] == [
        ("low", "none", 290), ("mid", "finetune", 280), ("high", "finetune", 270)]
    assert steps[1]["hparams"]["epochs"] == 1  # --set finetune.epochs applies to every finetune step
    assert steps[2]["hparams"]["epochs"] == 2  # ... but a step's own setting wins for that step
    assert row["methods"]["rum:none:finetune:finetune"]["hparams"]["recipe"] == "official"
    shuffle = row["methods"]["shuffle:finetune"]
    assert [s["partition"] for s in shuffle["steps"]] == ["shuffle1", "shuffle2", "shuffle3"]
    assert "rum:none:finetune:finetune" in results["groups"][0]["summary"]["methods"]
    saved = json.loads((tmp_path / "out" / "results.json").read_text())
    assert saved["spec"]["run"]["rum_score"] == "confidence"


def test_rum_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "rum"
    code = main(["rum", "--out", str(out), "--device", "cpu", "--epochs", "2", "--width", "4", "--train-subset", "300",
                 "--forget", "memorization:mix:confidence:0.1", "--pipeline", "none,finetune,finetune", "--baselines",
                 "--set", "finetune.epochs=1"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "rum:none:finetune:finetune" in printed and "partitions (forget set parts of confidence)" in printed
    results = json.loads((out / "results.json").read_text())
    # a mix forget set is refined into its own three parts, not into tertiles of --score
    assert results["groups"][0]["per_seed"][0]["rum"]["partition_sizes"] == {"low": 10, "mid": 10, "high": 10}
    assert list(results["groups"][0]["summary"]["methods"]) == [
        "rum:none:finetune:finetune", "vanilla:finetune", "shuffle:finetune", "rum-f:finetune"]


@pytest.mark.parametrize("args, message", [
    (["rum", "--pipeline", "none,finetune,bogus"], "unknown method 'bogus'"),
    (["rum", "--pipeline", "none,finetune"], "has 2 step(s)"),
    (["rum", "--pipeline", "finetune", "--variant", "sideways"], "unknown RUM variant 'sideways'"),
    (["rum", "--pipeline", "none,finetune,salun", "--score", "vibes"], "unknown memorization score source 'vibes'"),
    (["run", "--methods", "finetune,rum-f:finetune:salun"], "takes exactly one method"),
    (["run", "--methods", "rum-f:neggrad+", "--set", "rum-f:neggrad+.step4.lr=0.1"],
     "pipeline 'rum-f:neggrad+' has no step 'step4'; its steps are step1, step2, step3"),
    (["run", "--methods", "rum-f:neggrad+", "--set", "rum-f:neggrad+.step2.alpha=0.9"],
     "step2 (neggrad+): method 'neggrad+' has no hyperparameter(s) ['alpha']"),
    (["rum", "--pipeline", "none,finetune,salun", "--set", "rum:none:finetune:salun.step1.epochs=2"],
     "step1 is a none step"),
])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "never"
    assert main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_bad_pipeline_from_the_shell(tmp_path):
    result = subprocess.run([sys.executable, "-m", "memunlearn", "rum", "--pipeline", "none,finetune",
                             "--out", str(tmp_path / "never")], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "has 2 step(s)" in result.stderr and "Traceback" not in result.stderr
