"""Reports: the headline's verdict, tables that repeat results.json, bad input, and a real browser.

The synthetic results below have the shape of a real run's results.json (format 2 of the
experiment core, and the older single-rule format 1) with numbers chosen so the verdict is known:
``del`` sits inside the independent retrain's interval, ``finetune`` far outside it, ``scrub``
diverged on every seed and ``neggrad`` on one.
"""

from __future__ import annotations

import json
import re
from html import escape
import shutil
from pathlib import Path

import pytest

from memunlearn.errors import DataError
from memunlearn.evaluation import compare_to_oracle, mean_interval
from memunlearn.report import build_report, load_results, render_html, render_markdown, write_report
from memunlearn.report.document import Table
from memunlearn.report.plots import pareto_front
from memunlearn.report.sections import SECTIONS, SectionSpec, cell, indistinguishable, thresholds

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SEEDS = (0, 1, 2)
ORACLE = {"acc_forget": 0.80, "acc_retain": 0.97, "acc_test": 0.90, "mia_efficacy": 0.40, "loss_mia_auc": 0.60}
# per method: (offset added to every accuracy and to MIA-efficacy, time as a fraction of the oracle's)
OFFSETS = {"noise_floor": (0.02, 1.0), "del": (0.025, 0.15), "finetune": (0.15, 0.12), "neggrad": (0.30, 0.02)}
JITTER = (-0.01, 0.0, 0.01)


def _metrics(offset: float, jitter: float) -> dict[str, float]:
    return {k: min(1.0, v + offset + jitter) if k != "loss_mia_auc" else v for k, v in ORACLE.items()}


def _entry(method: str, seed: int) -> dict:
    offset, time_fraction = OFFSETS[method]
    metrics = _metrics(offset, JITTER[seed])
    return {"status": "ok", "metrics": metrics, "vs_oracle": compare_to_oracle(metrics, ORACLE),
            "cost": {"wall_time": 10 * time_fraction, "steps": 3, "examples": 100, "params_changed": 5,
                     "params_changed_fraction": 0.3},
            "time_fraction": time_fraction, "examples_fraction": time_fraction, "hparams": {"seed": seed}}


def _diverged(method: str, seed: int) -> dict:
    return {"status": "diverged", "error": f"{method} diverged: loss became nan at step 3; lower the learning rate",
            "hparams": {"seed": seed}}


def _summary(entries: list[dict]) -> dict:
    ok = [e for e in entries if e.get("status", "ok") == "ok"]
    out = {k: mean_interval(e["metrics"][k] for e in ok) for k in ORACLE}
    if any("vs_oracle" in e for e in ok):
        for k in ("gap_forget", "gap_retain", "gap_test", "gap_mia", "tow", "tow_mia"):
            out[k] = mean_interval(e["vs_oracle"][k] for e in ok)
    for k in ("time_fraction", "examples_fraction"):
        if any(k in e for e in ok):
            out[k] = mean_interval(e[k] for e in ok)
    return out


def _rows(original_offset: float = 0.1) -> list[dict]:
    rows = []
    for seed in SEEDS:
        original = _metrics(original_offset, JITTER[seed])
        rows.append({
            "seed": seed, "forget_size": 40, "retain_size": 360,
            "oracle": {"metrics": dict(ORACLE), "wall_time": 10.0},
            "original": {"metrics": original, "vs_oracle": compare_to_oracle(original, ORACLE), "wall_time": 10.0,
                         "train_accuracy": 1.0},
            "noise_floor": {**_entry("noise_floor", seed), "seed": seed + 1000},
            "methods": {"finetune": _entry("finetune", seed), "del": _entry("del", seed),
                        "neggrad": _entry("neggrad", seed) if seed else _diverged("neggrad", seed),
                        "scrub": _diverged("scrub", seed)},
        })
    return rows


def _group(rows: list[dict], rule: str = "iid:0.1") -> dict:
    summary = {"oracle": _summary([r["oracle"] for r in rows]), "original": _summary([r["original"] for r in rows])}
    if all("noise_floor" in r for r in rows):
        summary["noise_floor"] = _summary([r["noise_floor"] for r in rows])
    summary["methods"] = {}
    for method in rows[0]["methods"]:
        entries = [r["methods"][method] for r in rows]
        ok = [e for e in entries if e["status"] == "ok"]
        summary["methods"][method] = {**(_summary(ok) if ok else {}), "seeds_ok": len(ok), "seeds": len(rows)}
    per_seed = {str(s): {"rule": rule, "seed": s, "size": 40, "fraction": 0.1,
                         "indices_file": f"forget_indices_seed{s}.txt"} for s in SEEDS}
    return {"forget": rule, "forget_set": {"per_seed": per_seed}, "per_seed": rows, "summary": summary}


def _header() -> dict:
    return {
        "memunlearn_version": __import__("memunlearn").__version__,
        "command": "memunlearn run --train-subset 400 --seeds 3",
        "setting": {"model": "cnn", "width": 16, "train": {"epochs": 5, "lr": 0.05, "batch_size": 64}},
        "versions": {"memunlearn": __import__("memunlearn").__version__, "python": "3.11", "torch": "2.x"},
        "device": "cpu", "seeds": list(SEEDS),
        "dataset": {"name": "digits", "n_train": 400, "n_test": 360, "classes": [str(i) for i in range(10)]},
        "wall_time": 12.5,
    }


def synthetic_results(noise_floor: bool = True, original_offset: float = 0.1) -> dict:
    """Format 2 (the experiment core): groups of per-seed rows and a summary, the noise floor its own row."""
    rows = _rows(original_offset)
    if not noise_floor:
        for row in rows:
            del row["noise_floor"]
    spec = {"data": {"dataset": "digits", "train_subset": 400}, "seeds": {"list": list(SEEDS)},
            "methods": {"run": ["finetune", "del", "neggrad", "scrub"]}}
    return {"format": 2, **_header(), "spec": spec, "groups": [_group(rows)], "cells": {"cells": 12}}


def synthetic_results_v1(retrain_same_seed: bool = True) -> dict:
    """Format 1 (``memunlearn run`` before the experiment core): one rule, ``metrics.``-prefixed summary."""
    rows = _rows()
    for row in rows:
        del row["noise_floor"]
        if retrain_same_seed:  # the old `retrain` method reused the oracle's seed: a copy of the oracle
            row["methods"] = {"retrain": {**_entry("noise_floor", row["seed"]), "metrics": dict(ORACLE),
                                          "vs_oracle": compare_to_oracle(ORACLE, ORACLE)}, **row["methods"]}
    group = _group(rows)
    summary = group["summary"]
    for name in ["original", *summary["methods"]]:
        stats = summary["original"] if name == "original" else summary["methods"][name]
        for key in list(ORACLE):
            if key in stats:
                stats[f"metrics.{key}"] = stats.pop(key)
    return {**_header(), "config": {"dataset": "digits", "forget": "iid:0.1", "seeds": 3},
            "forget_set": {"rule": "iid:0.1", "per_seed": group["forget_set"]["per_seed"]},
            "per_seed": rows, "summary": summary}


def write_json(path: Path, payload) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))
    return path


# ---------------------------------------------------------------------------------------------
# What the report says


def test_tables_repeat_the_numbers_of_results_json():
    results = synthetic_results()
    report = build_report(results, figures=False)
    main = next(b for s in report.sections if s.key == "tables" for b in s.blocks if isinstance(b, Table))
    rows = {row[0]: dict(zip(main.header, row)) for row in main.rows}
    stats = results["groups"][0]["summary"]["methods"]["del"]
    assert rows["del"]["ToW"] == f"{stats['tow']['mean']:.3f} ± {stats['tow']['half_width']:.3f}"
    assert rows["del"]["Δforget (pp)"] == f"{100 * stats['gap_forget']['mean']:.1f} ± {100 * stats['gap_forget']['half_width']:.1f}"
    floor = results["groups"][0]["summary"]["noise_floor"]
    assert rows["independent retrain"]["ToW-MIA"] == f"{floor['tow_mia']['mean']:.3f} ± {floor['tow_mia']['half_width']:.3f}"
    # a method that failed on every seed is listed, not scored
    assert rows["scrub (failed 3/3)"]["ToW"] == "—"


def test_headline_names_the_methods_inside_the_noise_floor_and_their_cost():
    results = load_results(synthetic_results())
    block = results.blocks[0]
    floor = results.raw["groups"][0]["summary"]["noise_floor"]
    assert thresholds(block) == pytest.approx({"tow": floor["tow"]["low"], "tow_mia": floor["tow_mia"]["low"]})
    verdict = {row.name: indistinguishable(block, row) for row in block.methods}
    assert verdict == {"del": True, "finetune": False, "neggrad": False, "scrub": False}
    headline = next(s for s in build_report(results, figures=False).sections if s.key == "headline")
    lead, criterion, *rest = [b.text for b in headline.blocks]
    assert lead == "Indistinguishable from retraining: del (15% of the oracle's time, 15% of its examples)."
    assert f"ToW ≥ {floor['tow']['low']:.3f} and ToW-MIA ≥ {floor['tow_mia']['low']:.3f}" in criterion
    failed = next(text for text in rest if text.startswith("Did not finish"))
    assert "scrub on 3 of 3 seeds (seed 0: diverged: scrub diverged: loss became nan" in failed
    assert "neggrad on 1 of 3 seeds" in failed


def test_headline_without_a_noise_floor_says_so_and_ranks_against_the_oracle():
    report = build_report(synthetic_results(noise_floor=False), figures=False)
    texts = [b.text for s in report.sections if s.key == "headline" for b in s.blocks]
    assert texts[0].startswith("Noise floor missing")
    assert "no independent retrain" in texts[1]
    assert texts[2].startswith("Against the oracle alone") and "del (ToW" in texts[2]


def test_no_verdict_when_the_original_model_meets_the_bar_too():
    report = build_report(synthetic_results(original_offset=0.02), figures=False)
    texts = [b.text for s in report.sections if s.key == "headline" for b in s.blocks]
    assert texts[0].startswith("No verdict: even the original model")
    assert "Within the interval: del" in texts[1]
    assert not any(t.startswith("Indistinguishable") for t in texts)


def test_results_without_the_new_fields_still_report_and_compute_the_verdict():
    """A results.json from before the verdict, per-class and exposed fields: the report computes the
    verdict with the experiment's own function and lists the per-class and per-example views as absent."""
    from memunlearn.experiment.summary import verdict
    from memunlearn.report.sections import block_verdict, method_lines

    results = synthetic_results()
    assert "verdict" not in results["groups"][0]["summary"]
    block = load_results(results).blocks[0]
    v = block_verdict(block)
    summary = results["groups"][0]["summary"]
    assert v == verdict(summary, results["groups"][0]["per_seed"])
    assert v["status"] == "inside" and v["cheapest"] == "del"
    lines = {line.name: line.text for line in method_lines(block)}
    assert lines["del"].startswith("inside the noise floor; forget +2.5, retain +2.3, test +2.5 pp vs oracle")  # retain capped at 100%
    assert lines["finetune"].startswith("outside the floor by ToW ")
    report = build_report(results, figures=False)
    missing = next(s for s in report.sections if s.key == "missing").blocks[1].items
    assert any(item.startswith("accuracy per class") for item in missing)
    assert not any(s.key in ("per-class", "exposed") for s in report.sections)


def test_a_method_that_left_the_model_unchanged_is_warned_about():
    results = synthetic_results()
    for row in results["groups"][0]["per_seed"]:
        row["methods"]["finetune"]["metrics"] = dict(row["original"]["metrics"])
    report = build_report(results, figures=False)
    texts = [b.text for s in report.sections if s.key == "headline" for b in s.blocks]
    assert any(t.startswith("Left the model unchanged") and "finetune (its accuracies and MIA-efficacy equal the "
               "original model's on every seed)" in t for t in texts)
    table = next(b for s in report.sections if s.key == "what-each-did" for b in s.blocks if isinstance(b, Table))
    assert any(row[0] == "! finetune" and row[1].startswith("left the model unchanged") for row in table.rows)


def test_a_retrain_with_the_oracles_own_seed_is_not_taken_as_the_noise_floor():
    results = load_results(synthetic_results_v1(retrain_same_seed=True))
    assert results.blocks[0].retrain is None
    assert "reproduces the oracle exactly" in results.blocks[0].retrain_note


def test_format_1_results_read_like_format_2():
    old, new = load_results(synthetic_results_v1(retrain_same_seed=False)), load_results(synthetic_results(False))
    old_del = next(r for r in old.blocks[0].methods if r.name == "del")
    new_del = next(r for r in new.blocks[0].methods if r.name == "del")
    assert old_del.stats == new_del.stats
    assert [r.label for r in old.blocks[0].methods] == [r.label for r in new.blocks[0].methods]


def test_markdown_and_html_show_the_same_tables():
    report = build_report(synthetic_results())
    html, markdown = render_html(report), render_markdown(report)
    tables = [b for s in report.sections for b in s.blocks if isinstance(b, Table)]
    assert tables
    for table in tables:
        for i, row in enumerate(table.rows):
            cells = [f"**{c}**" if j == 0 and i in table.emphasis else c for j, c in enumerate(row)]
            assert "| " + " | ".join(cells) + " |" in markdown
            assert "<tr" in html and "".join(f"<td>{escape(c, quote=True)}</td>" for c in row) in html


def test_html_is_one_self_contained_file():
    html = render_html(synthetic_results())
    assert "<script" not in html and "<link" not in html and "@import" not in html and "@font-face" not in html
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:)""", html), "a reference to another file"
    assert not re.search(r"url\((?!#)", html), "a CSS url() that is not a local SVG reference"
    assert html.count("<svg") >= 3
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids)), "ids repeat across inline SVGs: references would cross figures"


def test_pareto_front_by_hand():
    points = [("cheap-bad", 0.1, 0.5), ("mid", 0.3, 0.8), ("dominated", 0.4, 0.7), ("tie-slower", 0.5, 0.8),
              ("best", 1.0, 0.95)]
    assert pareto_front(points) == ["cheap-bad", "mid", "best"]


def test_cells_format_like_the_terminal_table():
    from memunlearn.report import format_interval
    from memunlearn.report.data import Row

    stat = {"mean": 0.87312, "half_width": 0.03124, "n": 3}
    assert cell(Row("m", {"tow": stat}), "tow", False) == format_interval(stat, False) == "0.873 ± 0.031"
    assert cell(Row("m", {"tow": {"mean": None, "half_width": None, "n": 0}}), "tow", False) == "—"
    assert format_interval({"mean": None, "half_width": None, "n": 0}, True) == "—"  # strict JSON's null


def test_mask_sparsity_section_reads_mask_per_layer_rows():
    results = synthetic_results()
    layers = [{"name": "conv1.weight", "shape": [16, 1, 3, 3], "selected": 36, "total": 144, "density": 0.25,
               "sparsity": 0.75}, {"name": "classifier.weight", "shape": [10, 16], "selected": 160, "total": 160,
                                   "density": 1.0, "sparsity": 0.0}]
    results["groups"][0]["per_seed"][0]["methods"]["del"]["mask"] = {"per_layer": layers}
    report = build_report(results)
    mask = next(s for s in report.sections if s.key == "mask")
    assert "<svg" in mask.blocks[0].svg
    assert [row[0] for row in mask.blocks[1].rows] == ["conv1.weight", "classifier.weight"]
    assert mask.blocks[1].rows[0][-1] == "25.0"


def test_new_sections_plug_in(monkeypatch):
    from memunlearn.report.document import Section, Text

    sections = list(SECTIONS) + [
        SectionSpec("extra", lambda r: True, lambda r: Section("extra", "An extra section", [Text("extra text")])),
        SectionSpec("later", lambda r: False, lambda r: None, absent="a section whose data is absent"),
    ]
    monkeypatch.setattr("memunlearn.report.sections.SECTIONS", sections)
    markdown = render_markdown(synthetic_results())
    assert "### An extra section" in markdown and "extra text" in markdown
    assert "- a section whose data is absent" in markdown


@pytest.mark.parametrize("name, sections", [
    ("del_vs_baselines_cpu.json", {"headline", "tables", "curves", "ablation", "tuning"}),
    ("proxies_digits.json", {"proxies"}),
    ("pool_scaling_digits.json", {"pool"}),
    ("rum_digits_mix_exact.json", {"headline", "tables", "rum"}),
    ("rum_digits_difficulty.json", {"headline", "tables"}),
    ("train_throughput_fashion-mnist.json", {"throughput"}),
])
def test_benchmark_results_have_their_sections(name, sections):
    path = Path(__file__).parent.parent / "benchmarks" / "results" / name
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout")
    report = build_report(path, figures=False)
    assert sections <= {s.key for s in report.sections}


# ---------------------------------------------------------------------------------------------
# Bad input: one line, exit code 2, nothing written


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    old_shape = {"memunlearn_version": "0.0.1", "per_seed": [], "summary": {"methods": {"finetune": {"ToW": 0.9}}}}
    empty_groups = {**synthetic_results(), "groups": []}
    (tmp_path / "empty-dir").mkdir()
    (tmp_path / "empty.json").write_text("")
    (tmp_path / "bad.json").write_text('{"summary": ')
    return {
        "directory without results": tmp_path / "empty-dir",
        "missing file": tmp_path / "nothing.json",
        "empty file": tmp_path / "empty.json",
        "not JSON": tmp_path / "bad.json",
        "JSON list": write_json(tmp_path / "list.json", [1, 2]),
        "unknown shape": write_json(tmp_path / "other.json", {"hello": 1}),
        "older version's shape": write_json(tmp_path / "old" / "results.json", old_shape),
        "no forget-set groups": write_json(tmp_path / "nogroups.json", empty_groups),
    }


@pytest.mark.parametrize("case", ["directory without results", "missing file", "empty file", "not JSON", "JSON list",
                                  "unknown shape", "older version's shape", "no forget-set groups"])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, case):
    from memunlearn.cli import main

    path = _bad_inputs(tmp_path)[case]
    with pytest.raises(DataError):
        load_results(path)
    assert main(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("memunlearn: error: ") and "\n" not in err and "Traceback" not in err
    assert not list(tmp_path.rglob("*.html"))


def test_a_failed_method_shows_in_the_report_instead_of_breaking_it(tmp_path):
    results = synthetic_results()
    for row in results["groups"][0]["per_seed"]:
        row["methods"]["del"] = _diverged("del", row["seed"])
    results["groups"][0]["summary"]["methods"]["del"] = {"seeds_ok": 0, "seeds": 3}
    markdown = render_markdown(results)
    assert "| del (failed 3/3) | — |" in markdown
    assert "No method is indistinguishable from retraining here" in markdown


def test_cli_writes_next_to_results_json_and_md_on_request(tmp_path, capsys):
    from memunlearn.cli import main

    run_dir = tmp_path / "run"
    write_json(run_dir / "results.json", synthetic_results())
    assert main(["report", str(run_dir), "--format", "md"]) == 0
    assert (run_dir / "report.md").read_text().startswith("## digits · cnn · forget iid:0.1")
    assert main(["report", str(run_dir / "results.json"), "--out", str(tmp_path / "elsewhere" / "r.html")]) == 0
    assert (tmp_path / "elsewhere" / "r.html").read_text().startswith("<!DOCTYPE html>")
    assert "report written to" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# In a real browser


def check_in_browser(html_path: Path, screenshot: Path) -> dict:
    """Open a report in headless Chromium: console errors, images, SVG sizes, headline, tables."""
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (make test installs it when run as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1366, "height": 768})
            errors, requests = [], []
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("request", lambda request: requests.append(request.url)
                    if not request.url.startswith(("file:", "data:")) else None)
            page.goto(html_path.as_uri())
            found = {
                "images": page.eval_on_selector_all("img", "els => els.map(e => [e.complete, e.naturalWidth])"),
                "svgs": page.eval_on_selector_all("body svg:not(svg svg)", """els => els.map(e => {
                    const r = e.getBoundingClientRect(); return [r.width, r.height]; })"""),
                "headline": page.inner_text("#headline"),
                "tables": page.eval_on_selector_all("table:not(.gallery)", "els => els.map(e => e.querySelector('thead').innerText)"),
                "title": page.title(),
                "sections": page.eval_on_selector_all("section", "els => els.map(e => e.id)"),
                "thumbnails": page.eval_on_selector_all("#exposed img", "els => els.map(e => e.naturalWidth)"),
            }
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    print(f"report screenshot: {screenshot}")
    assert errors == [], f"console errors: {errors}"
    assert requests == [], f"the page asked the network for {requests}"
    assert all(complete and width > 0 for complete, width in found["images"]), found["images"]
    assert found["svgs"] and all(w > 0 and h > 0 for w, h in found["svgs"]), found["svgs"]
    return found


def test_report_in_a_real_browser(tmp_path):
    report = build_report(synthetic_results())
    out = tmp_path / "report.html"
    out.write_text(render_html(report))
    found = check_in_browser(out, tmp_path / "report.png")
    assert "Indistinguishable from retraining: del" in found["headline"]
    tables = [b for s in report.sections for b in s.blocks if isinstance(b, Table)]
    assert len(found["tables"]) == len(tables)
    assert len(found["svgs"]) == sum(1 for s in report.sections for b in s.blocks if hasattr(b, "svg"))


def test_report_of_a_real_tiny_run_in_a_browser(tmp_path):
    import torch

    from memunlearn.experiment import RunConfig, run_experiment

    torch.set_num_threads(1)
    config = RunConfig(train_subset=150, epochs=10, methods=("finetune", "del"), seeds=2,
                       hparams={"finetune": {"epochs": 1}, "del": {"epochs": 1}})
    run_experiment(config, tmp_path / "run")
    out = write_report(tmp_path / "run")
    assert out == tmp_path / "run" / "report.html"
    found = check_in_browser(out, tmp_path / "run" / "report.png")
    assert "retraining" in found["headline"]
    assert any("ToW" in header for header in found["tables"])
    assert "digits" in found["title"]
    # the per-class heat map and the exposed forget examples, with their 8×8 thumbnails inline
    assert {"what-each-did", "per-class", "exposed"} <= set(found["sections"])
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    group = results["groups"][0]
    exposed = group["per_seed"][0]["methods"]["del"]["exposed"]
    assert len(found["thumbnails"]) >= len(exposed) > 0 and set(found["thumbnails"]) == {8}
    assert len(group["summary"]["oracle"]["per_class"]["test"]) == 10
    assert group["summary"]["verdict"]["status"] in ("inside", "none-inside", "vacuous")


def test_privacy_section_shows_ulira_with_intervals_and_the_retrain_floor(tmp_path):
    """The U-LiRA results of a run (benchmarks/results/ulira_digits.json) appear as a table with the
    same numbers, the retrain floor first."""
    import json

    from memunlearn.report import write_report

    source = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "ulira_digits.json"
    raw = json.loads(source.read_text())
    row = raw["groups"][0]["per_seed"][0]
    out = write_report(source, tmp_path / "ulira.md", fmt="md")
    text = out.read_text()
    assert "### Per-example privacy: U-LiRA and the NeurIPS-2023 score" in text
    floor = row["reference_metrics"]["retrain"]["ulira"]["metrics"]["auc"]
    assert "retrain (floor) · ulira | " in text and f"{floor['value']:.3f} [{floor['low']:.3f}, {floor['high']:.3f}]" in text
    for label, entry in row["methods"].items():
        accuracy = entry["ulira"]["metrics"]["accuracy"]
        assert f"| {label} · ulira | {accuracy['value']:.3f} [{accuracy['low']:.3f}, {accuracy['high']:.3f}]" in text
