"""``memunlearn methods`` (the listing), recipes on the command line, and the shipped tuned values
(off by default, ``--tuned`` on top of recipe "ours"). All in-process."""

import json

import pytest

import memunlearn.experiment as experiment
from memunlearn.cli import build_parser, main
from memunlearn.errors import ConfigError
from memunlearn.methods import available_methods, describe_methods, method_defaults, register_method


def test_methods_lists_every_method_with_source_recipes_and_ranges(capsys):
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    for name in available_methods():
        assert f"\n{name}\n" in f"\n{text}\n"
    assert "source: kairanzhao/RUM@f593c9d:unlearn/FT.py:22-148" in text
    assert "recipe ours: epochs=5, lr=0.02, batch_size=64, schedule='cosine'" in text
    assert "    lr = 0.013: a number > 0" in text  # salun's official lr with its valid range
    assert "checked by: tests/test_official_baselines.py::test_salun_matches_salun_rl_under_its_mask" in text


def test_methods_json_is_the_library_listing(capsys):
    assert main(["methods", "salun", "neggrad", "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed == json.loads(json.dumps(describe_methods(["salun", "neggrad"])))
    salun, neggrad = listed
    assert salun["source"]["repo"] == "OPTML-Group/Unlearn-Saliency" and salun["source"]["commit"] == "a6e89fd"
    assert salun["recipes"]["ours"]["order"] == "mixed"
    assert neggrad["hyperparameters"]["lr"] == {"default": 1e-4, "range": "a number > 0",
                                                "help": "SGD learning rate", "searched": True}
    assert {k: v["default"] for k, v in neggrad["hyperparameters"].items()} == method_defaults("neggrad")


def test_methods_with_an_unknown_name_is_one_line_exit_2(capsys):
    assert main(["methods", "finetune", "nosuch"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip().count("\n") == 0 and "unknown method 'nosuch'; known: " in captured.err


@pytest.fixture
def no_experiment(monkeypatch):
    """Fail loudly if a command gets as far as running the experiment."""
    def refuse(*args, **kwargs):
        raise AssertionError("the experiment started")

    monkeypatch.setattr(experiment, "run_experiment", refuse)


@pytest.mark.parametrize("assignment, message", [
    ("finetune.recipe=nosuch", "unknown recipe 'nosuch' for method 'finetune'; known: official, ours"),
    ("finetune.recipe=[\"ours\",\"nosuch\"]", "unknown recipe 'nosuch' for method 'finetune'; known: official, ours"),
    ("finetune.beta=0.9", "no hyperparameter(s) ['beta']"),
])
def test_a_bad_recipe_is_one_line_exit_2_before_any_work(tmp_path, capsys, no_experiment, assignment, message):
    out = tmp_path / "never"
    code = main(["run", "--methods", "finetune", "--set", assignment, "--out", str(out), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert not out.exists()


def test_a_recipe_that_sets_an_undeclared_parameter_is_refused_at_registration():
    def method(model, forget, retain, mask=None, *, epochs: int = 1, lr: float = 0.1, seed=0, device="auto"):
        raise AssertionError("never run")

    with pytest.raises(ConfigError) as error:
        register_method("recipe-check", method, recipes={"ours": {"lrr": 0.2}}, no_public_code="a test")
    assert str(error.value) == "method 'recipe-check' recipe 'ours' sets 'lrr', which the method does not take; " \
                               "it takes epochs, lr"
    assert "recipe-check" not in available_methods()


def test_run_uses_the_shipped_tuned_values_only_when_asked():
    from memunlearn.cli.run import spec_from_options

    parser = build_parser()

    def spec_of(*options):
        args = parser.parse_args(["run", "--methods", "finetune", *options])
        return spec_from_options(experiment.ExperimentSpec(methods=("finetune",)), args)

    assert spec_of().use_tuned is False  # faithful by default: the official recipes
    assert spec_of("--tuned").use_tuned is True
    assert spec_of("--no-tuned").use_tuned is False  # still accepted
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["run", "--tuned", "--no-tuned"])
    assert stop.value.code == 2
    run_parser = parser._subparsers._group_actions[0].choices["run"]
    helps = {action.dest: action.help for action in run_parser._actions}
    assert "(the default;" in helps["no_tuned"] and "recipe 'ours'" in helps["tuned"]


def test_shipped_tuned_values_apply_on_top_of_recipe_ours_unless_a_recipe_is_named():
    from memunlearn.experiment import spec_from_dict
    from memunlearn.experiment.setup import resolve_setting
    from memunlearn.tuning import apply_tuned

    for explicit, expected in (({}, "ours"), ({"recipe": "official"}, "official")):
        spec = spec_from_dict({"methods": {"run": ["finetune"], "finetune": explicit}, "run": {"use_tuned": True}})
        tuned = apply_tuned(spec, resolve_setting(spec))["iid:0.1"]
        assert tuned["finetune"]["recipe"] == "ours"  # the shipped digits file was tuned under "ours"
        cell = experiment.run.with_tuned(spec.method_cells()[0], tuned)
        assert cell.hparams["recipe"] == expected  # the user's named recipe wins
    spec = spec_from_dict({"methods": {"run": ["finetune"]}})
    assert apply_tuned(spec, resolve_setting(spec)) == {"iid:0.1": {}}  # off by default
