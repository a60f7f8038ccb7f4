"""`--help` is fast (the parsers import no torch) and lists every registered name."""

import subprocess
import sys

from memunlearn.cli import build_parser, main
from memunlearn.cli import common, localize, rum


def test_parsers_import_no_torch():
    code = ("import sys; from memunlearn.cli import build_parser; build_parser(); "
            "heavy = [m for m in ('torch', 'numpy', 'sklearn', 'rich') if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr


def test_help_lists_every_registered_name(capsys, monkeypatch):
    from memunlearn.data import available_datasets
    from memunlearn.forget import available_forget_kinds
    from memunlearn.localization import TOPK_RULES, available_strategies
    from memunlearn.memorization import available_proxies
    from memunlearn.methods import available_methods
    from memunlearn.models import available_models
    from memunlearn.rum import DEFAULT_SCORE, VARIANTS

    monkeypatch.setenv("COLUMNS", "100000")  # no wrapping (argparse breaks lines at hyphens)
    assert main(["run", "--help"]) == 0
    run_help = capsys.readouterr().out
    for name in available_datasets() + available_models() + available_proxies():
        assert name in run_help, f"{name} is missing from `memunlearn run --help`"
    # methods: the help names the papers' ones (others may be registered); none may be stale
    assert set(common.METHODS_HELP.split(", ")) <= set(available_methods())
    for kind in available_forget_kinds():
        assert f"{kind}:" in run_help or f"{kind}[" in run_help, f"forget kind {kind} is missing from --help"
    assert set(available_strategies()) == {s.strip() for s in common.STRATEGIES_HELP.replace(", and the ablation", ",")
                                           .split(",")}
    assert localize.TOPK_RULES == TOPK_RULES
    assert tuple(common.PROXIES) == tuple(available_proxies())
    assert rum.VARIANTS == VARIANTS and rum.DEFAULT_SCORE == DEFAULT_SCORE
    assert build_parser().prog == "memunlearn"
