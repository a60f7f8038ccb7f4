"""Side by side: the same experiment run twice (e.g. tuned vs default hyperparameters), per forget
rule and method: ToW, ToW-MIA and cost in examples relative to the oracle, with 95% intervals, next
to the independent retrain (the noise floor). A small renderer for a table the report does not make.

    python benchmarks/compare_runs.py A/results.json B/results.json --names tuned default
"""

from __future__ import annotations

import argparse
import json


def cell(stat: dict | None) -> str:
    if not stat or stat.get("mean") is None:
        return "—"
    text = f"{stat['mean']:.3f}"
    return text if stat.get("half_width") is None else f"{text} ± {stat['half_width']:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs=2)
    parser.add_argument("--names", nargs=2, default=("A", "B"))
    args = parser.parse_args()
    runs = [json.load(open(path)) for path in args.results]
    a, b = args.names
    for group_a, group_b in zip(runs[0]["groups"], runs[1]["groups"]):
        sa, sb = group_a["summary"], group_b["summary"]
        floor = sa.get("noise_floor", {})
        print(f"#### forget set {group_a['forget']}\n")
        print(f"Noise floor (independent retrain): ToW {cell(floor.get('tow'))}, ToW-MIA {cell(floor.get('tow_mia'))}; "
              f"original model: ToW {cell(sa['original']['tow'])}, ToW-MIA {cell(sa['original']['tow_mia'])}.\n")
        print(f"| method | ToW ({a}) | ToW-MIA ({a}) | examples / oracle ({a}) | ToW ({b}) | ToW-MIA ({b}) | "
              f"examples / oracle ({b}) | diverged ({a} / {b}) |")
        print("|---|---|---|---|---|---|---|---|")
        for method, x in sa["methods"].items():
            y = sb["methods"].get(method, {})
            print(f"| {method} | {cell(x.get('tow'))} | {cell(x.get('tow_mia'))} | {cell(x.get('examples_fraction'))} | "
                  f"{cell(y.get('tow'))} | {cell(y.get('tow_mia'))} | {cell(y.get('examples_fraction'))} | "
                  f"{x['seeds'] - x['seeds_ok']}/{x['seeds']} / {y.get('seeds', 0) - y.get('seeds_ok', 0)}/{y.get('seeds', 0)} |")
        print()


if __name__ == "__main__":
    main()
