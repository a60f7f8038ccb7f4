"""The walk from a spec to results.json: which modules a run passes through, and how often a call
climbs back up a layer (issue 19).

It runs ``memunlearn run SPEC.toml`` in-process on a tiny digits experiment (one method, one seed,
no noise floor, a fresh cache, so the original model and the oracle are trained) under
``sys.setprofile`` and records every call from one package module into another, with the package
function on each side. Layers follow the stage order of the package's layout:

    0 base (io, errors, registry, params, the package root) → 1 data →
    2 models, training, checkpoints → 3 forget, backdoor → 4 memorization, localization → 5 methods, rum →
    6 evaluation, privacy → 7 experiment, tuning → 8 report → 9 cli

A *climb* is a call from a module into a module of a higher layer (a callback passed down, or a
lazy import reaching up). Not counted: a module's own code run by an import (and what it calls,
such as registrations), and a generator's resumptions (only its start). Counted within ``run_experiment`` (the experiment's own walk) and over the whole
command (CLI parsing and the report included):

- modules: package modules with at least one function run; functions: package functions run;
- stops: distinct package functions entered from another module;
- edges / climbs: distinct (calling function, called function) pairs across modules / going up a layer;
- module climbs: distinct (calling module, called module) pairs going up a layer;
- calls / climbing calls: the same crossings counted every time they happen.

The script measures the source tree it sits in (``src/`` next to ``benchmarks/``):

    python benchmarks/call_walk.py            # prints the counts and the climbing module pairs
    python benchmarks/call_walk.py --json walk.json
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import io
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src"
sys.path.insert(0, str(SOURCE))

PACKAGE = "memunlearn"
# The stage order is the import-graph test's (one table): tests/test_import_graph.py LAYERS.
_graph_spec = importlib.util.spec_from_file_location("_import_graph", ROOT / "tests" / "test_import_graph.py")
_graph = importlib.util.module_from_spec(_graph_spec)
_graph_spec.loader.exec_module(_graph)
layer = _graph.layer
GENERATORS = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
SPEC = """
[data]
dataset = "digits"
train_subset = 300

[model]
epochs = 2

[forget]
rules = ["iid:0.1"]

[seeds]
first = 0
count = 1

[methods]
run = ["finetune"]

[evaluation]
noise_floor = false

[run]
device = "cpu"
cache_dir = "{cache}"
"""


def module_of(filename: str, cache: dict[str, str | None]) -> str | None:
    """The package module a code object's file belongs to (None outside the package)."""
    if filename not in cache:
        path = Path(filename)
        try:
            parts = list(path.resolve().relative_to(SOURCE).with_suffix("").parts)
        except ValueError:
            parts = []
        if parts and parts[0] == PACKAGE:
            cache[filename] = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        else:
            cache[filename] = None
    return cache[filename]


class Walk:
    """The profile hook: cross-module calls between package functions, inside and outside run_experiment."""

    def __init__(self) -> None:
        self.files: dict[str, str | None] = {}
        self.scopes = {"run_experiment": Counter(), "command": Counter()}
        self.modules: dict[str, set[str]] = {"run_experiment": set(), "command": set()}
        self.functions: dict[str, set[tuple[str, str]]] = {"run_experiment": set(), "command": set()}
        self.inside = 0
        self.generators: set[int] = set()

    def __call__(self, frame, event, arg) -> None:
        if event != "call":
            if event == "return" and self.inside and frame.f_code.co_name == "run_experiment" \
                    and module_of(frame.f_code.co_filename, self.files) == f"{PACKAGE}.experiment.run":
                self.inside -= 1
            return
        code = frame.f_code
        callee = module_of(code.co_filename, self.files)
        if callee is None or code.co_name == "<module>":  # not the package, or a module's import
            return
        if code.co_flags & GENERATORS:  # a generator counts when it starts, not at each resumption
            if id(frame) in self.generators:
                return
            self.generators.add(id(frame))
        if code.co_name == "run_experiment" and callee == f"{PACKAGE}.experiment.run":
            self.inside += 1
        scopes = ["command", "run_experiment"] if self.inside else ["command"]
        for scope in scopes:
            self.modules[scope].add(callee)
            self.functions[scope].add((callee, _name(code)))
        caller_frame = frame.f_back
        while caller_frame is not None and module_of(caller_frame.f_code.co_filename, self.files) is None:
            caller_frame = caller_frame.f_back
        if caller_frame is None or caller_frame.f_code.co_name == "<module>":  # import-time registration
            return
        caller = module_of(caller_frame.f_code.co_filename, self.files)
        if caller == callee:
            return
        edge = (caller, _name(caller_frame.f_code), callee, _name(code))
        for scope in scopes:
            self.scopes[scope][edge] += 1

    def counts(self, scope: str) -> dict:
        edges = self.scopes[scope]
        climbs = {e: n for e, n in edges.items() if layer(e[2]) > layer(e[0])}
        module_climbs = Counter()
        for (caller, _, callee, _), n in climbs.items():
            module_climbs[(caller, callee)] += n
        return {
            "modules": len(self.modules[scope]),
            "functions": len(self.functions[scope]),
            "stops": len({(callee, function) for _, _, callee, function in edges}),
            "edges": len(edges),
            "climbs": len(climbs),
            "module_climbs": len(module_climbs),
            "calls": sum(edges.values()),
            "climbing_calls": sum(climbs.values()),
            "module_list": sorted(self.modules[scope]),
            "climbing_module_pairs": {f"{a} ({layer(a)}) -> {b} ({layer(b)})": n
                                      for (a, b), n in sorted(module_climbs.items())},
            "climbing_edges": sorted(f"{a}:{f} -> {b}:{g}" for a, f, b, g in climbs),
        }


def _name(code) -> str:
    return getattr(code, "co_qualname", code.co_name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="write the counts (and the climbing edges) to this file")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    from memunlearn.cli import main as cli_main

    with tempfile.TemporaryDirectory(prefix="call_walk_") as folder:
        spec = Path(folder) / "walk.toml"
        spec.write_text(SPEC.format(cache=Path(folder) / "cache"))
        walk = Walk()
        sys.setprofile(walk)
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                code = cli_main(["run", str(spec), "--out", str(Path(folder) / "out")])
        finally:
            sys.setprofile(None)
        if code not in (0, None):
            raise SystemExit(f"memunlearn run failed with exit code {code}")
        if not (Path(folder) / "out" / "results.json").is_file():
            raise SystemExit("memunlearn run wrote no results.json")
    report = {scope: walk.counts(scope) for scope in ("run_experiment", "command")}
    for scope, counts in report.items():
        print(f"{scope}: {counts['modules']} modules, {counts['functions']} functions, {counts['stops']} stops, {counts['edges']} cross-module edges, "
              f"{counts['climbs']} climbing edges ({counts['module_climbs']} module pairs), "
              f"{counts['calls']} cross-module calls, {counts['climbing_calls']} climbing calls")
        for pair, n in counts["climbing_module_pairs"].items():
            print(f"    {pair}: {n} calls")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
